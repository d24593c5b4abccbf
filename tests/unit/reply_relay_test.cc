// The reply relay driven by server bytes and a fake session, no sockets:
// what the client is sent, what is held with a mirror, what pgshift keeps.
// Every case is fed whole and byte by byte (the way a slow socket splits
// it), and both must give the same.
#include "proxy/session/reply_relay.h"

#include <gtest/gtest.h>

#include "protocol/messages/command_complete.h"
#include "protocol/messages/data_row.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/ready_for_query.h"
#include "protocol/messages/row_description.h"

namespace pgshift::proxy {
namespace {

using protocol::TransactionStatus;

struct FakeSession : ReplyRelay::Listener {
  void OnInternalAnswered() override { ++internal; }
  void OnClientAnswered(const ExpectedReply& reply, TransactionStatus status,
                        bool was_forwarded) override {
    ++client;
    failed = reply.failed;
    last_status = status;
    forwarded = was_forwarded;
  }
  int internal = 0;
  int client = 0;
  bool failed = false;
  bool forwarded = false;
  TransactionStatus last_status = TransactionStatus::kIdle;
};

std::string RowDescription(std::initializer_list<const char*> names) {
  protocol::RowDescription d;
  for (const char* n : names) d.fields.push_back({.name = n, .type_oid = 25});
  std::string out;
  d.Encode(out);
  return out;
}
std::string DataRow(std::initializer_list<const char*> values) {
  protocol::DataRow row;
  for (const char* v : values) row.values.emplace_back(v);
  std::string out;
  row.Encode(out);
  return out;
}
std::string Complete(const char* tag) {
  std::string out;
  protocol::CommandComplete{tag}.Encode(out);
  return out;
}
std::string Ready(TransactionStatus status) {
  std::string out;
  protocol::ReadyForQuery{status}.Encode(out);
  return out;
}
std::string Error(std::string_view code, std::string_view message) {
  std::string out;
  protocol::ErrorResponse(protocol::ErrorFields::Make("ERROR", code, message)).Encode(out);
  return out;
}
template <typename Message>
std::string Empty() {
  std::string out;
  Message{}.Encode(out);
  return out;
}

std::string Join(const ForwardList& list) {
  std::string out;
  for (const auto& b : list.buffers()) out.append(static_cast<const char*>(b.data()), b.size());
  return out;
}

// One link's relay, fed the way its pump feeds it.
class RelayHarness {
 public:
  explicit RelayHarness(size_t chunk) : chunk_(chunk) { link.name = "old"; }

  // What the client is sent for `server_bytes`.
  std::string Feed(std::string_view server_bytes) {
    ReplyRelay relay(link, refusals, nullptr, session);
    protocol::FrameDecoder decoder(protocol::kBackendTypes, 1 << 20);
    std::string pending, sent;
    for (size_t at = 0; at < server_bytes.size(); at += chunk_) {
      pending.append(server_bytes.substr(at, chunk_));
      relay.Reset();
      auto used = decoder.Decode(pending, relay);
      EXPECT_TRUE(used.ok()) << used.status();
      EXPECT_EQ(relay.error, "");
      sent += Join(relay.out);
      pending.erase(0, *used);
    }
    EXPECT_EQ(pending, "");
    return sent;
  }

  // Expects a mirrored write's result (`tag`; rows for the client only
  // with RETURNING); the batch its rows and replies go to.
  std::shared_ptr<MirrorBatch> ExpectMirroredWrite(const char* tag, bool returning) {
    ExpectedReply& expected = link.replies.emplace_back();
    ReplyUnit& unit = expected.units.emplace_back();
    unit.shape.tag = tag;
    unit.shape.no_rows = !returning;
    unit.shape.remote = std::make_shared<routing::RemoteMirror>();
    unit.mirror_index = 0;
    expected.mirror = std::make_shared<MirrorBatch>();
    expected.mirror->rows.emplace_back();
    return expected.mirror;
  }

  Link link;
  Refusals refusals;
  FakeSession session;

 private:
  size_t chunk_;
};

class ReplyRelayTest : public ::testing::TestWithParam<size_t> {};
INSTANTIATE_TEST_SUITE_P(Splits, ReplyRelayTest, ::testing::Values(1 << 20, 1),
                         [](const auto& info) { return info.param == 1 ? "ByteByByte" : "Whole"; });

TEST_P(ReplyRelayTest, AnUnshapedReplyPassesUnchanged) {
  RelayHarness h(GetParam());
  h.link.replies.emplace_back();
  std::string reply = RowDescription({"a"}) + DataRow({"1"}) + Complete("SELECT 1") +
                      Ready(TransactionStatus::kIdle);
  EXPECT_EQ(h.Feed(reply), reply);
  EXPECT_TRUE(h.link.replies.empty());
  EXPECT_EQ(h.session.client, 1);
  EXPECT_TRUE(h.session.forwarded);
}

TEST_P(ReplyRelayTest, AMirroredInsertIsHeldWithItsRowsAndItsOwnTag) {
  RelayHarness h(GetParam());
  std::shared_ptr<MirrorBatch> batch = h.ExpectMirroredWrite("INSERT", false);

  std::string sent = h.Feed(RowDescription({"pgshift_key", "pgshift_row"}) +
                            DataRow({"1", R"({"id":1})"}) + DataRow({"2", R"({"id":2})"}) +
                            Complete("SELECT 2") + Ready(TransactionStatus::kInBlock));
  EXPECT_EQ(sent, "");  // until the mirror is settled
  EXPECT_EQ(batch->held, Complete("INSERT 0 2") + Ready(TransactionStatus::kInBlock));
  EXPECT_EQ(batch->rows[0].json, R"([{"id":1},{"id":2})");
  EXPECT_EQ(batch->rows[0].count, 2u);
  ASSERT_EQ(batch->rows[0].keys.size(), 2u);
  EXPECT_EQ(batch->rows[0].keys[1], "2");
  EXPECT_EQ(batch->outcome, MirrorBatch::Outcome::kSucceeded);
  EXPECT_EQ(batch->status, TransactionStatus::kInBlock);
  EXPECT_FALSE(h.session.forwarded);
}

TEST_P(ReplyRelayTest, AMirroredUpdateWithReturningKeepsTheClientsColumns) {
  RelayHarness h(GetParam());
  std::shared_ptr<MirrorBatch> batch = h.ExpectMirroredWrite("UPDATE", true);

  h.Feed(RowDescription({"id", "pgshift_key", "pgshift_row"}) + DataRow({"7", "7", "{}"}) +
         Complete("SELECT 1") + Ready(TransactionStatus::kInBlock));
  EXPECT_EQ(batch->held, RowDescription({"id"}) + DataRow({"7"}) + Complete("UPDATE 1") +
                             Ready(TransactionStatus::kInBlock));
}

TEST_P(ReplyRelayTest, AFailedMirroredWriteIsMarkedFailed) {
  RelayHarness h(GetParam());
  ExpectedReply& expected = h.link.replies.emplace_back();
  expected.mirror = std::make_shared<MirrorBatch>();
  auto batch = expected.mirror;
  h.Feed(Error("23505", "duplicate key") + Ready(TransactionStatus::kFailed));
  EXPECT_EQ(batch->outcome, MirrorBatch::Outcome::kFailed);
  EXPECT_EQ(batch->held, Error("23505", "duplicate key") + Ready(TransactionStatus::kFailed));
}

TEST_P(ReplyRelayTest, ARefusalProbesErrorIsReplacedByTheRefusal) {
  RelayHarness h(GetParam());
  h.link.replies.emplace_back();
  uint64_t n = h.refusals.Add(protocol::ErrorFields::Make(
      "ERROR", "0A000", "pgshift: table public.posts is in phase new-only"));
  std::string probe =
      Error("42P01", std::string("relation \"") + Refusals::ProbeName(n) + "\" does not exist");
  std::string sent = h.Feed(probe + Ready(TransactionStatus::kIdle));
  EXPECT_EQ(sent, Error("0A000", "pgshift: table public.posts is in phase new-only") +
                      Ready(TransactionStatus::kIdle));
  EXPECT_TRUE(h.refusals.empty());
  EXPECT_TRUE(h.session.failed);
}

TEST_P(ReplyRelayTest, AnErrorNamingAnUnknownProbeIsTheServers) {
  RelayHarness h(GetParam());
  uint64_t n = h.refusals.Add(protocol::ErrorFields::Make("ERROR", "0A000", "refused"));
  // Another process's nonce, and this one's with a number not pending.
  for (std::string name : {std::string("pgshift refusal 0 1"), Refusals::ProbeName(n + 1)}) {
    h.link.replies.emplace_back();
    std::string other = Error("42P01", "relation \"" + name + "\" does not exist");
    EXPECT_EQ(h.Feed(other + Ready(TransactionStatus::kIdle)),
              other + Ready(TransactionStatus::kIdle));
  }
  EXPECT_FALSE(h.refusals.empty());
}

// A COMMIT's stand-in is numbered when planned and given its error just
// before it is sent, with other refusals added in between.
TEST(Refusals, AReservedRefusalSetLateIsNotTrimmedAway) {
  Refusals refusals;
  uint64_t commit = refusals.Reserve();
  for (size_t i = 0; i < Refusals::kMaxPending; ++i) {
    refusals.Add(protocol::ErrorFields::Make("ERROR", "0A000", "refused"));
  }
  refusals.Set(commit, protocol::ErrorFields::Make("ERROR", "08006", "mirror lost"));
  auto taken = refusals.Take("relation \"" + Refusals::ProbeName(commit) + "\" does not exist");
  ASSERT_TRUE(taken);
  EXPECT_EQ(taken->sqlstate(), "08006");
}

TEST_P(ReplyRelayTest, PgshiftsOwnExchangeIsKeptForPgshift) {
  RelayHarness h(GetParam());
  auto internal = std::make_shared<InternalReply>();
  h.link.replies.emplace_back().internal = internal;
  h.link.replies.emplace_back();  // the client's, after it
  std::string client = Complete("SET") + Ready(TransactionStatus::kInBlock);
  std::string sent = h.Feed(RowDescription({"txid_current"}) + DataRow({"742"}) + DataRow({"743"}) +
                            Complete("SELECT 2") + Ready(TransactionStatus::kInBlock) + client);
  EXPECT_EQ(sent, client);
  EXPECT_TRUE(internal->done);
  EXPECT_EQ(internal->value, "742");
  EXPECT_FALSE(internal->error);
  EXPECT_EQ(h.session.internal, 1);
  EXPECT_EQ(h.link.transaction_status, TransactionStatus::kInBlock);
}

TEST_P(ReplyRelayTest, AnInternalErrorIsKeptNotSent) {
  RelayHarness h(GetParam());
  auto internal = std::make_shared<InternalReply>();
  h.link.replies.emplace_back().internal = internal;
  EXPECT_EQ(h.Feed(Error("40001", "could not serialize") + Ready(TransactionStatus::kFailed)), "");
  ASSERT_TRUE(internal->error);
  EXPECT_EQ(internal->error->sqlstate(), "40001");
}

TEST_P(ReplyRelayTest, AQueryOnPgshiftsPreparedStatementAnswersAsAQuery) {
  RelayHarness h(GetParam());
  h.link.statements["key"] = Link::ServerStatement{"pgshift_statement_1", false, 1};
  ExpectedReply& expected = h.link.replies.emplace_back();
  expected.statement_key = "key";
  expected.prepares = true;
  std::string result = RowDescription({"a"}) + DataRow({"1"}) + Complete("SELECT 1");
  std::string sent = h.Feed(Empty<protocol::ParseComplete>() + Empty<protocol::BindComplete>() +
                            result + Ready(TransactionStatus::kIdle));
  EXPECT_EQ(sent, result + Ready(TransactionStatus::kIdle));
  EXPECT_TRUE(h.link.statements.at("key").parsed);
}

TEST_P(ReplyRelayTest, APreparedStatementWhoseParseFailedIsForgotten) {
  RelayHarness h(GetParam());
  h.link.statements["key"] = Link::ServerStatement{"pgshift_statement_1", false, 1};
  ExpectedReply& expected = h.link.replies.emplace_back();
  expected.statement_key = "key";
  expected.prepares = true;
  h.Feed(Error("42P01", "relation does not exist") + Ready(TransactionStatus::kIdle));
  EXPECT_FALSE(h.link.statements.contains("key"));
}

TEST_P(ReplyRelayTest, TheMiddlePartOfASplitQueryIsNotTheClientsReadyForQuery) {
  RelayHarness h(GetParam());
  h.link.replies.emplace_back().continues = true;
  EXPECT_EQ(h.Feed(Complete("INSERT 0 1") + Ready(TransactionStatus::kIdle)),
            Complete("INSERT 0 1"));
  EXPECT_FALSE(h.session.forwarded);
  // Failed, it ends the Query.
  h.link.replies.emplace_back().continues = true;
  std::string failed = Error("23505", "duplicate key") + Ready(TransactionStatus::kIdle);
  EXPECT_EQ(h.Feed(failed), failed);
  EXPECT_TRUE(h.session.forwarded);
}

}  // namespace
}  // namespace pgshift::proxy
