// The streaming frame decoder: partial input, whole vs streamed delivery,
// and the headers it must refuse before reading any body.
#include <gtest/gtest.h>

#include "protocol/frame.h"
#include "protocol/messages/data_row.h"
#include "protocol/messages/query.h"
#include "protocol/messages/ready_for_query.h"
#include "protocol/wire.h"

namespace pgshift::protocol {
namespace {

// Records what the decoder reports; wants only the types in `whole` whole.
class Recorder : public FrameHandler {
 public:
  explicit Recorder(std::string whole) : whole_(std::move(whole)) {}
  Delivery OnHeader(char type, size_t size) override {
    headers.push_back({type, size});
    return whole_.find(type) != std::string::npos ? Delivery::kWhole : Delivery::kStream;
  }
  void OnWhole(char, std::string_view message) override {
    wholes.emplace_back(message);
    all.append(message);
  }
  void OnStreamed(std::string_view bytes) override {
    ++streamed_pieces;
    all.append(bytes);
  }
  std::vector<std::pair<char, size_t>> headers;
  std::vector<std::string> wholes;
  std::string all;
  int streamed_pieces = 0;

 private:
  std::string whole_;
};

std::string SampleStream() {
  std::string s;
  Query{"SELECT 1"}.Encode(s);
  DataRow{{std::string(1000, 'x'), std::nullopt}}.Encode(s);
  ReadyForQuery{TransactionStatus::kIdle}.Encode(s);
  Query{""}.Encode(s);
  return s;
}

const TypeSet kTypes("QDZ");

// Feeds `input` in pieces of `step` bytes, keeping unconsumed bytes as a
// socket reader would.
void Feed(FrameDecoder& decoder, Recorder& r, const std::string& input, size_t step) {
  std::string pending;
  for (size_t i = 0; i < input.size(); i += step) {
    pending.append(input.substr(i, step));
    auto used = decoder.Decode(pending, r);
    ASSERT_TRUE(used.ok()) << used.status();
    pending.erase(0, *used);
  }
  EXPECT_TRUE(pending.empty());
}

TEST(FrameDecoder, PassesEveryByteOnceWhateverThePieceSize) {
  std::string input = SampleStream();
  for (size_t step : {size_t{1}, size_t{2}, size_t{5}, size_t{7}, size_t{64}, input.size()}) {
    Recorder r("Z");
    FrameDecoder decoder(kTypes, 1 << 20);
    Feed(decoder, r, input, step);
    EXPECT_EQ(r.all, input) << "step " << step;
    ASSERT_EQ(r.headers.size(), 4u) << "step " << step;
    EXPECT_EQ(r.headers[1], (std::pair<char, size_t>{'D', 1 + 4 + 2 + 4 + 1000 + 4}));
    ASSERT_EQ(r.wholes.size(), 1u);
    EXPECT_EQ(r.wholes[0], std::string("Z\0\0\0\5I", 6));
    EXPECT_TRUE(decoder.at_boundary());
  }
}

TEST(FrameDecoder, StreamsLargeBodiesWithoutWaitingForThem) {
  std::string input = SampleStream();
  Recorder r("");
  FrameDecoder decoder(kTypes, 1 << 20);
  // Header and first 100 bytes of the DataRow only.
  size_t query_size = 1 + 4 + 9;
  auto used = decoder.Decode(input.substr(0, query_size + 100), r);
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(*used, query_size + 100) << "streamed bytes are consumed at once";
  EXPECT_TRUE(decoder.streaming());
  EXPECT_FALSE(decoder.at_boundary());
}

TEST(FrameDecoder, RefusesLengthsBelowFourOrAboveTheLimit) {
  for (int32_t length : {0, 3, -1, 1025}) {
    std::string bad("Q");
    bad.append(4, '\0');
    WriteBigEndian32(bad.data() + 1, length);
    Recorder r("");
    FrameDecoder decoder(kTypes, 1024);
    auto used = decoder.Decode(bad, r);
    ASSERT_FALSE(used.ok()) << length;
    EXPECT_NE(used.status().message().find("invalid message length"), absl::string_view::npos);
    EXPECT_TRUE(r.headers.empty()) << "no header is reported for a refused length";
  }
}

TEST(FrameDecoder, RefusesTypesNotAllowedInThisDirection) {
  std::string msg;
  MessageWriter(msg, 'z').Int32(1);
  Recorder r("");
  FrameDecoder decoder(kTypes, 1024);
  auto used = decoder.Decode(msg, r);
  ASSERT_FALSE(used.ok());
  EXPECT_NE(used.status().message().find("invalid message type 'z'"), absl::string_view::npos);
}

TEST(FrameDecoder, ReportsMessagesBeforeABadHeader) {
  std::string input;
  Query{"SELECT 1"}.Encode(input);
  input.append("z\0\0\0\4", 5);
  Recorder r("Q");
  FrameDecoder decoder(kTypes, 1024);
  EXPECT_FALSE(decoder.Decode(input, r).ok());
  EXPECT_EQ(r.wholes.size(), 1u);
}

TEST(FrameSets, DirectionsAcceptTheirOwnTypes) {
  for (char c : std::string("QPBDECSHFXdcf")) EXPECT_TRUE(kFrontendTypes.contains(c)) << c;
  for (char c : std::string("RKSZTDCIEN123ntsAGHWdcVv")) EXPECT_TRUE(kBackendTypes.contains(c)) << c;
  for (char c : std::string("pZTz\0", 5)) EXPECT_FALSE(kFrontendTypes.contains(c)) << int(c);
  EXPECT_EQ(FrontendMessageName('P'), "Parse");
  EXPECT_EQ(BackendMessageName('D'), "DataRow");
}

}  // namespace
}  // namespace pgshift::protocol
