// The frame decoder fed arbitrary bytes in arbitrary chunks: whatever the
// chunking, it reports the same messages (or the same error) as when the
// whole input arrives at once, and never reads past what it was given.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocol/frame.h"

namespace {

using pgshift::protocol::Delivery;

// Records every message, streamed or whole, as one string; asks for types
// alternately whole and streamed, decided by the type byte.
class Recorder : public pgshift::protocol::FrameHandler {
 public:
  Delivery OnHeader(char type, size_t) override {
    return (static_cast<unsigned char>(type) & 1) ? Delivery::kWhole : Delivery::kStream;
  }
  void OnWhole(char, std::string_view message) override { seen.append(message); }
  void OnStreamed(std::string_view bytes) override { seen.append(bytes); }
  std::string seen;
};

// Feeds `input` in pieces whose sizes come from `sizes`; returns what the
// handler saw and whether decoding failed.
std::pair<std::string, bool> Decode(std::string_view input, std::string_view sizes,
                                    const pgshift::protocol::TypeSet& types) {
  pgshift::protocol::FrameDecoder decoder(types, 1 << 20);
  Recorder recorder;
  std::string pending;
  size_t at = 0, next_size = 0;
  while (at < input.size()) {
    size_t n = sizes.empty() ? input.size()
                             : 1 + static_cast<unsigned char>(sizes[next_size++ % sizes.size()]);
    n = std::min(n, input.size() - at);
    pending.append(input.substr(at, n));
    at += n;
    auto used = decoder.Decode(pending, recorder);
    if (!used.ok()) return {recorder.seen, true};
    if (*used > pending.size()) std::abort();
    pending.erase(0, *used);
  }
  return {recorder.seen, false};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // First byte: how many of the following bytes give chunk sizes.
  const size_t split = std::min<size_t>(data[0], size - 1);
  std::string_view sizes(reinterpret_cast<const char*>(data) + 1, split);
  std::string_view input(reinterpret_cast<const char*>(data) + 1 + split, size - 1 - split);
  for (const auto* types :
       {&pgshift::protocol::kFrontendTypes, &pgshift::protocol::kBackendTypes}) {
    auto whole = Decode(input, "", *types);
    auto chunked = Decode(input, sizes, *types);
    // An error may come earlier in a stream cut short, never differ in
    // what was delivered before it.
    if (!whole.second && !chunked.second && whole.first != chunked.first) std::abort();
    if (whole.first.substr(0, chunked.first.size()) !=
        chunked.first.substr(0, whole.first.size())) {
      std::abort();
    }
  }
  return 0;
}
