// The planner driven by client bytes, with a context of its own and no
// sockets: which link each message goes to, what it is rewritten to, what
// reply is expected, and what pgshift must do around the step.
#include "proxy/session/planner.h"

#include <gtest/gtest.h>

#include "protocol/messages/bind.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/execute.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/query.h"

namespace pgshift::proxy {
namespace {

using protocol::TransactionStatus;
using routing::BackendId;

std::string Query(std::string_view sql) {
  std::string out;
  protocol::Query{std::string(sql)}.Encode(out);
  return out;
}
// Parse, Bind and Execute of `sql` on the unnamed statement and portal.
std::string Extended(std::string_view sql) {
  std::string out;
  protocol::Parse{"", std::string(sql), {}}.Encode(out);
  protocol::Bind{}.Encode(out);
  protocol::Execute{"", 0}.Encode(out);
  return out;
}
std::string Sync() {
  std::string out;
  protocol::Sync{}.Encode(out);
  return out;
}

std::string Bytes(const Step& step) {
  std::string out;
  for (const auto& b : step.bytes.buffers()) {
    out.append(static_cast<const char*>(b.data()), b.size());
  }
  return out;
}

class PlannerFixture {
 public:
  // Channels in `phase` (none configured when empty), posts in old-only.
  PlannerFixture(std::string_view phase, bool second_server) {
    std::string toml = "[backends.old]\n";
    if (second_server) toml += "[backends.new]\nport = 5433\n";
    if (!phase.empty()) {
      toml += "[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\nkey = [\"id\"]\n";
      toml += "columns = { title = \"name\" }\nphase = \"" + std::string(phase) + "\"\n";
      toml += "[[tables]]\nname = \"posts\"\nnew_name = \"posts_v2\"\nphase = \"old-only\"\n";
    }
    auto config = routing::ParseConfig(toml, "planner.toml");
    EXPECT_TRUE(config.ok()) << config.status();
    auto settings = std::make_shared<Settings>();
    settings->config = *config;
    settings->router = std::make_shared<routing::Router>(
        *config,
        routing::Catalog{{{"public.channels", {"id", "title", "created_at"}}},
                         {{"public.channels_v2", {"id", "name", "created_at"}}}},
        counters);
    settings_ = settings;
    links[0].name = "old";
    links[1].server = BackendId::kNew;
    links[1].name = "new";
  }

  // The steps planned for `bytes`, read at once. (Steps refer to the
  // bytes read, which are kept as the client buffer would be.)
  std::vector<Step*> Plan(std::string_view bytes) {
    planner.Reset();
    input_ = std::string(bytes);
    protocol::FrameDecoder decoder(protocol::kFrontendTypes, 1 << 20);
    auto used = decoder.Decode(input_, planner);
    EXPECT_TRUE(used.ok()) << used.status();
    std::vector<Step*> steps;
    for (Step& step : planner) steps.push_back(&step);
    return steps;
  }

  std::string input_;
  routing::TableCounterRegistry counters;
  SettingsPtr settings_;
  std::array<Link, 2> links;
  ClientTransaction transaction;
  routing::SessionSettings client_settings;
  Refusals refusals;
  Planner planner{
      PlannerContext{settings_, links, transaction, client_settings, refusals, nullptr, 1}};
};

TEST(Planner, WithoutConfiguredTablesEverythingStreamsToOld) {
  PlannerFixture f("", false);
  std::string bytes = Query("SELECT 1") + Extended("SELECT 2") + Sync();
  std::vector<Step*> steps = f.Plan(bytes);
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0]->target, BackendId::kOld);
  EXPECT_EQ(Bytes(*steps[0]), bytes);
  ASSERT_EQ(steps[0]->replies.size(), 2u);  // the Query's, and the batch's at its Sync
  EXPECT_FALSE(steps[0]->replies[0].open);
  EXPECT_TRUE(steps[0]->replies[1].joins_open);
  EXPECT_EQ(f.planner.queries(), 2u);
}

TEST(Planner, AQueryOnAMovedTableGoesToNewRewritten) {
  PlannerFixture f("new-only", true);
  std::vector<Step*> steps = f.Plan(Query("SELECT title FROM channels WHERE id = 1"));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0]->target, BackendId::kNew);
  EXPECT_NE(Bytes(*steps[0]).find("channels_v2"), std::string::npos);
  EXPECT_EQ(steps[0]->replies.size(), 1u);
  EXPECT_TRUE(steps[0]->opens);
}

TEST(Planner, UntouchedTextStaysOnOldAsSent) {
  PlannerFixture f("new-only", true);
  std::vector<Step*> steps = f.Plan(Query("SELECT * FROM users"));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0]->target, BackendId::kOld);
  EXPECT_EQ(Bytes(*steps[0]), Query("SELECT * FROM users"));
}

TEST(Planner, ARefusedStatementIsReplacedByItsProbe) {
  PlannerFixture f("new-only", false);
  std::vector<Step*> steps = f.Plan(Query("ALTER TABLE channels ADD COLUMN x int"));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_NE(Bytes(*steps[0]).find("pgshift refusal"), std::string::npos);
  EXPECT_EQ(Bytes(*steps[0]).find("ALTER"), std::string::npos);
  EXPECT_FALSE(f.refusals.empty());
  EXPECT_EQ(steps[0]->replies.size(), 1u);  // answered in the Query's place
}

TEST(Planner, AnExtendedBatchForTwoServersIsRefusedAtTheSecond) {
  PlannerFixture f("new-only", true);
  std::string bytes = Extended("SELECT title FROM channels") + Extended("SELECT * FROM users");
  std::vector<Step*> steps = f.Plan(bytes + Sync());
  std::string sent;
  for (Step* s : steps) {
    EXPECT_EQ(s->target, BackendId::kNew) << "one batch, one server";
    sent += Bytes(*s);
  }
  EXPECT_NE(sent.find("pgshift refusal"), std::string::npos);
  EXPECT_FALSE(f.planner.in_batch()) << "the Sync ends the batch";
}

TEST(Planner, AMirroredWriteOutsideATransactionIsPgshiftsToWrap) {
  PlannerFixture f("dual-write", true);
  std::vector<Step*> steps = f.Plan(Query("INSERT INTO channels (id, title) VALUES (1, 'a')"));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0]->target, BackendId::kOld);
  EXPECT_TRUE(steps[0]->mirrored);
  EXPECT_FALSE(steps[0]->in_client_transaction);
  EXPECT_TRUE(steps[0]->opens) << "pgshift may begin its own transaction before it";
  ASSERT_EQ(steps[0]->replies.size(), 1u);
  ASSERT_EQ(steps[0]->replies[0].units.size(), 1u);
  EXPECT_TRUE(steps[0]->replies[0].units[0].shape.remote);
  EXPECT_EQ(steps[0]->replies[0].units[0].shape.tag, "INSERT");
}

// pgjdbc with autoCommit off sends BEGIN in the batch of the first
// statement: the write is the client's transaction's, not one of pgshift's.
TEST(Planner, ABeginAheadOfAMirroredWriteInOneBatchMakesItTheClients) {
  PlannerFixture f("dual-write", true);
  std::vector<Step*> steps = f.Plan(
      Extended("BEGIN") + Extended("INSERT INTO channels (id, title) VALUES (1, 'a')") + Sync());
  bool mirrored = false;
  for (Step* s : steps) {
    if (!s->mirrored) continue;
    mirrored = true;
    EXPECT_TRUE(s->in_client_transaction);
  }
  EXPECT_TRUE(mirrored);
  EXPECT_EQ(f.transaction.sent, ClientTransaction::Sent::kBegun);
}

TEST(Planner, ACommitAcrossServersGetsAStandInThatCanFailInItsPlace) {
  PlannerFixture f("dual-write", true);
  f.transaction.reported = TransactionStatus::kInBlock;
  f.transaction.Wrote(BackendId::kOld);
  std::vector<Step*> steps = f.Plan(Query("COMMIT"));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0]->target, BackendId::kOld) << "the server written on commits last";
  EXPECT_EQ(steps[0]->transaction, routing::TransactionKind::kCommit);
  EXPECT_NE(steps[0]->fail_probe, 0u);
  EXPECT_NE(steps[0]->fail_with.find("pgshift refusal"), std::string::npos);
  EXPECT_EQ(steps[0]->on_other_link_first, "COMMIT");
  EXPECT_EQ(f.transaction.sent, ClientTransaction::Sent::kEnded);
  EXPECT_TRUE(f.transaction.commit_requested);
}

TEST(Planner, TheServerWrittenOnCommitsLast) {
  PlannerFixture f("new-only", true);
  f.transaction.reported = TransactionStatus::kInBlock;
  f.links[0].transaction_status = TransactionStatus::kInBlock;
  f.links[1].transaction_status = TransactionStatus::kInBlock;
  f.transaction.Wrote(BackendId::kNew);
  std::vector<Step*> steps = f.Plan(Query("COMMIT"));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0]->target, BackendId::kNew);
  EXPECT_EQ(steps[0]->on_other_link_first, "COMMIT") << "old commits first";
}

TEST(Planner, AnExtendedBatchIsOneReplyWithAUnitPerResult) {
  PlannerFixture f("new-only", true);
  std::vector<Step*> steps = f.Plan(Extended("SELECT title FROM channels") + Sync());
  std::vector<ExpectedReply*> replies;
  for (Step* s : steps) {
    for (ExpectedReply& r : s->replies) replies.push_back(&r);
  }
  ASSERT_EQ(replies.size(), 1u) << "the Execute's result and the Sync share one cycle";
  EXPECT_FALSE(replies[0]->open);
  EXPECT_TRUE(replies[0]->joins_open);
  EXPECT_EQ(replies[0]->units.size(), 1u);
  // Split over two reads, the Sync's reply joins the batch the first left open.
  steps = f.Plan(Extended("SELECT title FROM channels"));
  ASSERT_EQ(steps.size(), 1u);
  ASSERT_EQ(steps[0]->replies.size(), 1u);
  EXPECT_TRUE(steps[0]->replies[0].open);
  steps = f.Plan(Sync());
  ASSERT_EQ(steps.size(), 1u);
  ASSERT_EQ(steps[0]->replies.size(), 1u);
  EXPECT_TRUE(steps[0]->replies[0].joins_open);
  EXPECT_FALSE(steps[0]->replies[0].open);
  EXPECT_TRUE(steps[0]->replies[0].units.empty());
}

TEST(Planner, ATransactionWritesOnOneServerOnly) {
  PlannerFixture f("new-only", true);
  f.transaction.reported = TransactionStatus::kInBlock;
  f.transaction.Wrote(BackendId::kOld);
  std::vector<Step*> steps = f.Plan(Query("UPDATE channels SET title = 'b' WHERE id = 1"));
  std::string sent;
  for (Step* s : steps) sent += Bytes(*s);
  EXPECT_NE(sent.find("pgshift refusal"), std::string::npos);
  EXPECT_EQ(sent.find("UPDATE"), std::string::npos);
  EXPECT_FALSE(f.transaction.wrote(BackendId::kNew));
}

TEST(Planner, TransactionControlAfterAMirroredWriteInOneBatchIsRefused) {
  PlannerFixture f("dual-write", true);
  f.transaction.reported = TransactionStatus::kInBlock;
  std::vector<Step*> steps = f.Plan(Extended("INSERT INTO channels (id, title) VALUES (1, 'a')") +
                                    Extended("COMMIT") + Sync());
  std::string sent;
  for (Step* s : steps) sent += Bytes(*s);
  EXPECT_NE(sent.find("pgshift refusal"), std::string::npos);
}

TEST(Planner, AMalformedMessageIsAnError) {
  PlannerFixture f("new-only", true);
  std::string bind = {protocol::frontend::kBind, 0, 0, 0, 5, 'x'};  // no terminator
  f.Plan(bind);
  EXPECT_NE(f.planner.error(), "");
}

}  // namespace
}  // namespace pgshift::proxy
