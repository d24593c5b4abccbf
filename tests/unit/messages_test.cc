// Every message codec: encode, frame it from byte-by-byte input, decode, and
// get the same value back; truncated bodies are rejected, never misread.
#include <gtest/gtest.h>

#include "protocol/frame.h"
#include "protocol/messages/authentication.h"
#include "protocol/messages/backend_key_data.h"
#include "protocol/messages/bind.h"
#include "protocol/messages/close.h"
#include "protocol/messages/command_complete.h"
#include "protocol/messages/copy.h"
#include "protocol/messages/data_row.h"
#include "protocol/messages/describe.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/execute.h"
#include "protocol/messages/function_call.h"
#include "protocol/messages/negotiate_protocol_version.h"
#include "protocol/messages/notification_response.h"
#include "protocol/messages/parameter_description.h"
#include "protocol/messages/parameter_status.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/password.h"
#include "protocol/messages/query.h"
#include "protocol/messages/ready_for_query.h"
#include "protocol/messages/row_description.h"
#include "protocol/messages/startup.h"
#include "protocol/wire.h"

namespace pgshift::protocol {
namespace {

// A representative value of each message, with every field set.
template <typename T> T Sample();
template <> Query Sample() { return {"SELECT 1; SELECT 'x'"}; }
template <> Parse Sample() { return {"stmt1", "SELECT $1::int, $2", {23, 0}}; }
template <> Bind Sample() {
  return {"portal", "stmt1", {0, 1}, {std::string("42"), std::nullopt, std::string("\0\1", 2)}, {1}};
}
template <> Describe Sample() { return {Target::kPortal, "portal"}; }
template <> Execute Sample() { return {"portal", 100}; }
template <> Close Sample() { return {Target::kStatement, "stmt1"}; }
template <> Sync Sample() { return {}; }
template <> Flush Sample() { return {}; }
template <> Terminate Sample() { return {}; }
template <> CopyData Sample() { return {std::string("1\tone\n2\ttwo\n\0", 13)}; }
template <> CopyDone Sample() { return {}; }
template <> CopyFail Sample() { return {"client gave up"}; }
template <> CopyInResponse Sample() { return {0, {0, 0, 0}}; }
template <> CopyOutResponse Sample() { return {1, {1, 1}}; }
template <> CopyBothResponse Sample() { return {0, {}}; }
template <> FunctionCall Sample() { return {1598, {0}, {std::string("abc"), std::nullopt}, 0}; }
template <> FunctionCallResponse Sample() { return {std::string("result")}; }
template <> Authentication Sample() {
  Authentication a;
  a.code = Authentication::kSasl;
  a.mechanisms = {"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"};
  return a;
}
template <> PasswordMessage Sample() { return {"md5abcdef"}; }
template <> SaslInitialResponse Sample() { return {"SCRAM-SHA-256", std::string("n,,n=,r=abc")}; }
template <> SaslResponse Sample() { return {"c=biws,r=abc,p=xyz"}; }
template <> BackendKeyData Sample() { return {12345, -98765}; }
template <> ParameterStatus Sample() { return {"client_encoding", "UTF8"}; }
template <>
ReadyForQuery Sample() {
  return {TransactionStatus::kInBlock};
}
template <> ErrorResponse Sample() {
  return ErrorResponse(ErrorFields::Make("ERROR", "22012", "division by zero", "some detail"));
}
template <> NoticeResponse Sample() {
  return NoticeResponse(ErrorFields::Make("NOTICE", "00000", "hello"));
}
template <> RowDescription Sample() {
  return {{{"id", 16384, 1, 23, 4, -1, 0}, {"title", 16384, 2, 25, -1, -1, 1}}};
}
template <> DataRow Sample() { return {{std::string("1"), std::nullopt, std::string("")}}; }
template <> CommandComplete Sample() { return {"INSERT 0 3"}; }
template <> ParameterDescription Sample() { return {{23, 25, 1043}}; }
template <> NotificationResponse Sample() { return {4242, "channel", "payload"}; }
template <> NegotiateProtocolVersion Sample() { return {0, {"_pq_.unknown"}}; }
template <> ParseComplete Sample() { return {}; }
template <> BindComplete Sample() { return {}; }
template <> CloseComplete Sample() { return {}; }
template <> NoData Sample() { return {}; }
template <> EmptyQueryResponse Sample() { return {}; }
template <> PortalSuspended Sample() { return {}; }

const TypeSet kAnyType(std::string_view(
    "QPBDECSHFXdcfpRKSZTDCIEN123ntsAGHWdcVv"));

template <typename T>
class MessageCodecTest : public ::testing::Test {};

using AllMessages = ::testing::Types<
    Query, Parse, Bind, Describe, Execute, Close, Sync, Flush, Terminate, CopyData, CopyDone,
    CopyFail, CopyInResponse, CopyOutResponse, CopyBothResponse, FunctionCall,
    FunctionCallResponse, Authentication, PasswordMessage, SaslInitialResponse, SaslResponse,
    BackendKeyData, ParameterStatus, ReadyForQuery, ErrorResponse, NoticeResponse, RowDescription,
    DataRow, CommandComplete, ParameterDescription, NotificationResponse,
    NegotiateProtocolVersion, ParseComplete, BindComplete, CloseComplete, NoData,
    EmptyQueryResponse, PortalSuspended>;
TYPED_TEST_SUITE(MessageCodecTest, AllMessages);

TYPED_TEST(MessageCodecTest, RoundTripsThroughByteByByteFraming) {
  const TypeParam original = Sample<TypeParam>();
  std::string wire;
  original.Encode(wire);
  ASSERT_EQ(wire[0], TypeParam::kType);
  ASSERT_EQ(static_cast<size_t>(ReadBigEndian32(wire.data() + 1)) + 1, wire.size());
  for (size_t n = 0; n < wire.size(); ++n) {
    auto size = CompleteMessageSize(std::string_view(wire).substr(0, n), kAnyType, 1 << 20);
    ASSERT_TRUE(size.ok());
    EXPECT_EQ(*size, 0u) << "complete after only " << n << " bytes";
  }
  auto size = CompleteMessageSize(wire + "trailing", kAnyType, 1 << 20);
  ASSERT_TRUE(size.ok());
  ASSERT_EQ(*size, wire.size());
  auto decoded = TypeParam::Decode(std::string_view(wire).substr(kHeaderSize));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, original);
}

TYPED_TEST(MessageCodecTest, TruncatedBodyIsRejectedOrDifferent) {
  const TypeParam original = Sample<TypeParam>();
  std::string wire;
  original.Encode(wire);
  std::string_view payload = std::string_view(wire).substr(kHeaderSize);
  for (size_t n = 0; n < payload.size(); ++n) {
    auto decoded = TypeParam::Decode(payload.substr(0, n));
    EXPECT_TRUE(!decoded.ok() || !(*decoded == original)) << "prefix of " << n << " bytes";
  }
}

TEST(MessageCodecs, NegativeCountsAreMalformed) {
  std::string bind;
  MessageWriter(bind, 'B').CString("").CString("").Int16(-1);
  EXPECT_FALSE(Bind::Decode(std::string_view(bind).substr(kHeaderSize)).ok());
  std::string row;
  MessageWriter(row, 'D').Int16(1).Int32(-2);
  EXPECT_FALSE(DataRow::Decode(std::string_view(row).substr(kHeaderSize)).ok());
  std::string row_too_long;
  MessageWriter(row_too_long, 'D').Int16(1).Int32(1000).Bytes("short");
  EXPECT_FALSE(DataRow::Decode(std::string_view(row_too_long).substr(kHeaderSize)).ok());
  EXPECT_FALSE(ReadyForQuery::Decode("X").ok());
  EXPECT_FALSE(Describe::Decode(std::string_view("Qname\0", 6)).ok());
  EXPECT_FALSE(Query::Decode("no terminator").ok());
  EXPECT_FALSE(Query::Decode(std::string_view("a\0b\0", 4)).ok()) << "trailing bytes";
}

TEST(StartupPackets, EachKindRoundTrips) {
  StartupMessage start;
  start.Set("user", "app");
  start.Set("database", "db");
  start.Set("client_encoding", "LATIN1");
  std::string wire;
  start.Encode(wire);
  ASSERT_EQ(*CompleteStartupPacketSize(wire), wire.size());
  auto parsed = ParseStartupPacket(wire);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(std::get<StartupMessage>(*parsed), start);
  EXPECT_EQ(std::get<StartupMessage>(*parsed).Get("client_encoding"), "LATIN1");

  for (auto packet : {StartupPacket(SslRequest{}), StartupPacket(GssEncRequest{}),
                      StartupPacket(CancelRequest{77, -5})}) {
    std::string bytes;
    std::visit([&](const auto& p) { p.Encode(bytes); }, packet);
    auto back = ParseStartupPacket(bytes);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(back->index(), packet.index());
  }
  std::string cancel;
  CancelRequest{77, -5}.Encode(cancel);
  EXPECT_EQ(std::get<CancelRequest>(*ParseStartupPacket(cancel)), (CancelRequest{77, -5}));
}

TEST(StartupPackets, BadLengthsAndVersionsAreRejected) {
  std::string tiny("\0\0\0\3", 4);
  EXPECT_FALSE(CompleteStartupPacketSize(tiny).ok());
  std::string huge("\0\0\x27\x11", 4);  // 10001 bytes
  EXPECT_FALSE(CompleteStartupPacketSize(huge).ok());
  std::string partial("\0\0\0\x10\0\3", 6);
  EXPECT_EQ(*CompleteStartupPacketSize(partial), 0u);
  StartupMessage v2;
  v2.protocol_version = 2 << 16;
  std::string wire;
  v2.Encode(wire);
  auto parsed = ParseStartupPacket(wire);
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("unsupported frontend protocol 2.0"),
            absl::string_view::npos);
  std::string unterminated;
  MessageWriter(unterminated, 0).Int32(kProtocolVersion3).Bytes("user");
  EXPECT_FALSE(ParseStartupPacket(unterminated).ok());
}

}  // namespace
}  // namespace pgshift::protocol
