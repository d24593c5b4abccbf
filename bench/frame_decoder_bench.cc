// How fast the frame decoder walks a result stream, as the relay does for
// every byte a backend sends: streamed DataRows and a whole ReadyForQuery.
#include <benchmark/benchmark.h>

#include "protocol/frame.h"
#include "protocol/messages/data_row.h"
#include "protocol/messages/ready_for_query.h"

namespace pgshift::protocol {
namespace {

class Counting : public FrameHandler {
 public:
  Delivery OnHeader(char type, size_t) override {
    return type == backend::kReadyForQuery ? Delivery::kWhole : Delivery::kStream;
  }
  void OnWhole(char, std::string_view m) override { bytes += m.size(); }
  void OnStreamed(std::string_view b) override { bytes += b.size(); }
  size_t bytes = 0;
};

void BM_DecodeResultStream(benchmark::State& state) {
  std::string input;
  const size_t value_size = static_cast<size_t>(state.range(0));
  while (input.size() < 64 * 1024) {
    DataRow{{std::string(value_size, 'x'), std::string("42"), std::nullopt}}.Encode(input);
  }
  ReadyForQuery{TransactionStatus::kIdle}.Encode(input);
  Counting handler;
  for (auto _ : state) {
    FrameDecoder decoder(kBackendTypes, kDefaultMaxMessageSize);
    auto used = decoder.Decode(input, handler);
    benchmark::DoNotOptimize(used);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * input.size()));
}
BENCHMARK(BM_DecodeResultStream)->Arg(8)->Arg(100)->Arg(2000);

}  // namespace
}  // namespace pgshift::protocol
