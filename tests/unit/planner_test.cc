// The planner driven by client bytes, with a context of its own and no
// sockets: which link each message goes to, what it is rewritten to, what
// reply is expected, and what pgshift must do around the step.
#include "proxy/session/planner.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "common/strings.h"
#include "protocol/messages/bind.h"
#include "protocol/messages/close.h"
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
  // Channels in `phase` (none configured when empty), posts in old-only;
  // with `coordinated`, the planner consults `gate`.
  PlannerFixture(std::string_view phase, bool second_server, std::string_view proxy = "",
                 bool coordinated = false)
      : gate_(coordinated ? &gate : nullptr) {
    std::string toml = StrCat("[proxy]\n", proxy, "\n[backends.old]\n");
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
    settings->router = std::make_shared<routing::Router>(*config, Catalog(), counters);
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

  static routing::Catalog Catalog() {
    return routing::Catalog{{{"public.channels", {"id", "title", "created_at"}}},
                            {{"public.channels_v2", {"id", "name", "created_at"}}}};
  }

  // Settings of generation `generation` with channels in `phase`.
  void Install(std::string_view phase, uint64_t generation) {
    auto config = std::make_shared<routing::Config>(*settings_->config);
    config->tables[0].phase = *routing::PhaseFromName(phase);
    auto settings = std::make_shared<Settings>(*settings_);
    settings->config = config;
    settings->router = std::make_shared<routing::Router>(config, Catalog(), counters);
    settings->generation = generation;
    settings_ = settings;
  }

  std::string input_;
  routing::CoordinationGate gate;
  routing::CoordinationGate* gate_;
  routing::TableCounterRegistry counters;
  SettingsPtr settings_;
  std::array<Link, 2> links;
  ClientTransaction transaction;
  routing::SessionSettings client_settings;
  Refusals refusals;
  Planner planner{
      PlannerContext{settings_, links, transaction, client_settings, refusals, nullptr, 1, gate_}};
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

// Parse of `sql` as the named statement `name`.
std::string Prepare(std::string_view name, std::string_view sql) {
  std::string out;
  protocol::Parse{std::string(name), std::string(sql), {}}.Encode(out);
  return out;
}

// The refusal probe `n` stands for.
std::optional<protocol::ErrorFields> RefusalOf(Refusals& refusals, uint64_t n) {
  return refusals.Take(StrCat("relation \"", Refusals::ProbeName(n), "\" does not exist"));
}

TEST(Planner, StatementsPastClientStateMaxBytesAreRefusedUntilSomeAreClosed) {
  PlannerFixture f("dual-write", false, "client_state_max_bytes = 2048");
  const std::string sql =
      StrCat("SELECT id FROM channels WHERE title = '", std::string(300, 'x'), "'");
  int kept = 0;
  for (; kept < 20; ++kept) {
    std::vector<Step*> steps = f.Plan(Prepare(StrCat("s", kept), sql) + Sync());
    ASSERT_EQ(steps.size(), 1u);
    if (Bytes(*steps[0]).find("pgshift refusal") != std::string::npos) break;
  }
  EXPECT_GE(kept, 2) << "statements under the limit are kept";
  EXPECT_LT(kept, 8) << "about 2 kB of 300-byte texts";
  std::optional<protocol::ErrorFields> refusal = RefusalOf(f.refusals, 1);
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->sqlstate(), "54000");
  EXPECT_NE(refusal->message().find("above client_state_max_bytes (2048 bytes)"), std::string::npos)
      << refusal->message();
  // Closing one makes room for another.
  std::string close;
  protocol::Close{protocol::Target::kStatement, "s0"}.Encode(close);
  f.Plan(close + Sync());
  std::vector<Step*> steps = f.Plan(Prepare("again", sql) + Sync());
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(Bytes(*steps[0]).find("pgshift refusal"), std::string::npos);
}

TEST(Planner, SettingChangesPastClientStateMaxBytesAreRefused) {
  PlannerFixture f("dual-write", true, "client_state_max_bytes = 2048");
  int kept = 0;
  for (; kept < 20; ++kept) {
    std::vector<Step*> steps =
        f.Plan(Query(StrCat("SET app.setting", kept, " = '", std::string(300, 'v'), "'")));
    ASSERT_EQ(steps.size(), 1u);
    if (Bytes(*steps[0]).find("pgshift refusal") != std::string::npos) break;
  }
  EXPECT_GE(kept, 2);
  EXPECT_LT(kept, 8);
  std::optional<protocol::ErrorFields> refusal = RefusalOf(f.refusals, 1);
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->sqlstate(), "54000");
  EXPECT_LT(f.client_settings.bytes(), 2048u);
  // What frees is never refused, however full.
  std::vector<Step*> steps = f.Plan(Query("DISCARD ALL"));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(Bytes(*steps[0]).find("pgshift refusal"), std::string::npos);
}

TEST(Planner, SettingChangesPastTheMostKeptAreRefused) {
  PlannerFixture f("dual-write", true);
  ASSERT_TRUE(f.Plan(Query("BEGIN")).size() == 1);
  f.transaction.reported = TransactionStatus::kInBlock;
  std::string many;
  for (size_t i = 0; i <= routing::SessionSettings::kMaxChanges; ++i) many += "SET LOCAL a.b = 1;";
  std::vector<Step*> steps = f.Plan(Query(many));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_NE(Bytes(*steps[0]).find("pgshift refusal"), std::string::npos);
  std::optional<protocol::ErrorFields> refusal = RefusalOf(f.refusals, 1);
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->sqlstate(), "54000");
  EXPECT_NE(refusal->message().find("above the 10000 pgshift keeps"), std::string::npos)
      << refusal->message();
  EXPECT_EQ(f.client_settings.changes(), 0u);
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

// BEGIN, a mirrored write and COMMIT in one extended batch, as libpq's
// pipeline mode sends them: the batch ends with pgshift's Sync before the
// COMMIT's Execute, so that the mirror is applied (in the client's
// transaction) before the COMMIT prepares it; that Sync's ReadyForQuery
// reaches the client only if the batch failed, which skips the rest.
TEST(Planner, TransactionControlAfterAMirroredWriteInOneBatchWaitsForTheMirror) {
  PlannerFixture f("dual-write", true);
  std::vector<Step*> steps =
      f.Plan(Extended("BEGIN") + Extended("INSERT INTO channels (id, title) VALUES (1, 'a')") +
             Extended("COMMIT") + Sync());
  std::string sent;
  for (Step* s : steps) sent += Bytes(*s);
  EXPECT_EQ(sent.find("pgshift refusal"), std::string::npos);
  const auto split = std::find_if(steps.begin(), steps.end(), [](const Step* s) {
    return s->transaction == routing::TransactionKind::kCommit;
  });
  ASSERT_NE(split, steps.end());
  ASSERT_NE(split, steps.begin());
  const Step& before = **(split - 1);
  const Step& commit = **split;
  EXPECT_TRUE(Bytes(before).ends_with(Sync())) << "pgshift's Sync ends the first part";
  EXPECT_EQ(before.batch, BatchEffect::kCloses);
  ASSERT_FALSE(before.replies.empty());
  const ExpectedReply& first = before.replies.back();
  EXPECT_FALSE(first.open);
  EXPECT_TRUE(first.continues) << "its ReadyForQuery is not the client's";
  EXPECT_NE(first.group, 0u);
  for (auto s = split; s != steps.end(); ++s) {
    EXPECT_EQ((*s)->skip_if_failed, first.group)
        << "a failed first part skips the rest, the client's Sync included";
  }
  EXPECT_TRUE(commit.opens);
  EXPECT_EQ(commit.batch, BatchEffect::kOpens);
  EXPECT_NE(commit.fail_probe, 0u);
  std::string execute;
  protocol::Execute{"", 0}.Encode(execute);
  EXPECT_EQ(Bytes(commit), execute) << "only the COMMIT's Execute is left for after the mirror";
  EXPECT_TRUE(sent.ends_with(Sync()));
  size_t syncs = 0;
  for (size_t at = sent.find(Sync()); at != std::string::npos; at = sent.find(Sync(), at + 1)) {
    ++syncs;
  }
  EXPECT_EQ(syncs, 2u) << "pgshift's and the client's";
  bool mirrored_before_commit = false;
  for (auto s = steps.begin(); s != split; ++s) mirrored_before_commit |= (*s)->mirrored;
  EXPECT_TRUE(mirrored_before_commit);
}

// Outside a transaction block the write is in the batch's implicit
// transaction, which a Sync of pgshift's would end: refused, in place.
TEST(Planner, TransactionControlAfterAnImplicitMirroredWriteInOneBatchIsRefused) {
  PlannerFixture f("dual-write", true);
  std::vector<Step*> steps = f.Plan(Extended("INSERT INTO channels (id, title) VALUES (1, 'a')") +
                                    Extended("COMMIT") + Sync());
  std::string sent;
  for (Step* s : steps) sent += Bytes(*s);
  EXPECT_NE(sent.find("pgshift refusal"), std::string::npos);
}

// BEGIN; INSERT ...; COMMIT in one Query, with a second server: each
// statement is a Query of its own in one group, so the write is mirrored in
// the client's transaction and the COMMIT goes through two-phase commit;
// only the last statement's ReadyForQuery reaches the client, and a failed
// one skips the rest.
TEST(Planner, AQueryWithTransactionControlIsSplitAtEachStatement) {
  PlannerFixture f("dual-write", true);
  std::vector<Step*> steps =
      f.Plan(Query("BEGIN; INSERT INTO channels (id, title) VALUES (1, 'a'); COMMIT"));
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(Bytes(*steps[0]), Query("BEGIN"));
  EXPECT_EQ(steps[0]->transaction, routing::TransactionKind::kBegin);
  EXPECT_EQ(steps[0]->skip_if_failed, 0u);
  EXPECT_TRUE(steps[1]->mirrored);
  EXPECT_TRUE(steps[1]->in_client_transaction) << "the BEGIN before it is the client's";
  EXPECT_NE(Bytes(*steps[1]).find("channels"), std::string::npos);
  EXPECT_EQ(steps[2]->transaction, routing::TransactionKind::kCommit);
  EXPECT_NE(steps[2]->fail_probe, 0u) << "its two-phase commit may fail in its place";
  const uint64_t group = steps[0]->replies[0].group;
  EXPECT_NE(group, 0u);
  for (size_t k = 0; k < 3; ++k) {
    ASSERT_EQ(steps[k]->replies.size(), 1u);
    EXPECT_EQ(steps[k]->replies[0].group, group);
    EXPECT_EQ(steps[k]->replies[0].continues, k < 2) << k;
    EXPECT_EQ(steps[k]->skip_if_failed, k > 0 ? group : 0u) << k;
  }
  EXPECT_EQ(f.transaction.sent, ClientTransaction::Sent::kEnded);
  EXPECT_EQ(f.planner.queries(), 1u) << "one Query of the client's";
}

TEST(Planner, AStatementThenCommitInATransactionIsSplitToo) {
  PlannerFixture f("dual-write", true);
  f.transaction.reported = TransactionStatus::kInBlock;
  f.transaction.Wrote(BackendId::kOld);
  std::vector<Step*> steps = f.Plan(Query("SELECT 1; COMMIT"));
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(Bytes(*steps[0]), Query("SELECT 1"));
  EXPECT_EQ(steps[1]->transaction, routing::TransactionKind::kCommit);
  EXPECT_EQ(steps[1]->target, BackendId::kOld) << "the server written on commits last";
}

// Statements outside a transaction block that a ROLLBACK (or BEGIN, or
// SAVEPOINT) follows are one implicit transaction with it: refused, never
// committed on their own.
TEST(Planner, StatementsOfAnImplicitTransactionAreNotSplitFromItsRollback) {
  PlannerFixture f("dual-write", true);
  for (const char* sql : {"INSERT INTO channels (id, title) VALUES (1, 'a'); ROLLBACK",
                          "SELECT 1; BEGIN; INSERT INTO channels (id, title) VALUES (1, 'a')",
                          "INSERT INTO channels (id, title) VALUES (1, 'a'); SAVEPOINT s"}) {
    std::vector<Step*> steps = f.Plan(Query(sql));
    std::string sent;
    for (Step* s : steps) sent += Bytes(*s);
    EXPECT_NE(sent.find("pgshift refusal"), std::string::npos) << sql;
    EXPECT_EQ(sent.find("INSERT"), std::string::npos) << sql;
    f.transaction.sent = ClientTransaction::Sent::kAsReported;
  }
  // A COMMIT after them commits them, as separate Queries would.
  std::vector<Step*> steps =
      f.Plan(Query("INSERT INTO channels (id, title) VALUES (1, 'a'); COMMIT"));
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_TRUE(steps[0]->mirrored);
  EXPECT_FALSE(steps[0]->in_client_transaction) << "pgshift wraps it, as any write alone";
}

TEST(Planner, OnOneServerAQueryWithTransactionControlIsNotSplit) {
  PlannerFixture f("dual-write", false);
  std::string query = Query("BEGIN; INSERT INTO channels (id, title) VALUES (1, 'a'); COMMIT");
  std::vector<Step*> steps = f.Plan(query);
  ASSERT_EQ(steps.size(), 1u);
  ASSERT_EQ(steps[0]->replies.size(), 1u);
  EXPECT_FALSE(steps[0]->replies[0].continues);
}

// The client's PREPARE TRANSACTION gets a stand-in (refused at run time if
// the other server is in the transaction); COMMIT PREPARED carries its
// identifier so the session can find where it was prepared. Neither runs
// on the other server first.
TEST(Planner, TheClientsTwoPhaseCommitIsKnownByItsIdentifier) {
  PlannerFixture f("dual-write", true);
  f.transaction.reported = TransactionStatus::kInBlock;
  std::vector<Step*> steps = f.Plan(Query("PREPARE TRANSACTION 'x1'"));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0]->transaction, routing::TransactionKind::kPrepare);
  EXPECT_EQ(steps[0]->gid, "x1");
  EXPECT_NE(steps[0]->fail_probe, 0u);
  EXPECT_EQ(steps[0]->on_other_link_first, "");
  EXPECT_EQ(f.transaction.sent, ClientTransaction::Sent::kEnded);
  f.transaction.reported = TransactionStatus::kIdle;
  f.transaction.sent = ClientTransaction::Sent::kAsReported;
  steps = f.Plan(Query("COMMIT PREPARED 'x1'"));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0]->transaction, routing::TransactionKind::kCommitPrepared);
  EXPECT_EQ(steps[0]->gid, "x1");
  EXPECT_EQ(steps[0]->on_other_link_first, "");
}

// New was lost inside a transaction (its link broken, its status failed):
// the client's next BEGIN goes to old, not to the server that is gone.
TEST(Planner, TransactionControlNeverGoesToALostServer) {
  PlannerFixture f("dual-write", true);
  f.links[1].state = Link::State::kBroken;
  f.links[1].transaction_status = TransactionStatus::kFailed;
  std::vector<Step*> steps = f.Plan(Query("BEGIN"));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0]->target, BackendId::kOld);
}

TEST(Planner, APortalBoundBeforeAFlipIsRefusedWhenExecutedAfterIt) {
  PlannerFixture f("shadow-read", true, "", true);
  f.gate.Synced();
  f.gate.Renewed(routing::CoordinationGate::Clock::now() + std::chrono::hours(1));
  std::string bound;
  protocol::Parse{"s", "UPDATE channels SET title = 'x' WHERE id = 1", {}}.Encode(bound);
  protocol::Bind{"p", "s", {}, {}, {}}.Encode(bound);
  f.Plan(bound);
  // The flip to new-primary, installed between the Bind and the Execute:
  // the portal was planned to write old first.
  const std::string table = f.settings_->config->tables[0].name;
  f.gate.PhasesChanged({table}, 1);
  f.Install("new-primary", 1);
  std::string execute;
  protocol::Execute{"p", 0}.Encode(execute);
  std::vector<Step*> steps = f.Plan(execute + Sync());
  ASSERT_FALSE(steps.empty());
  EXPECT_NE(Bytes(*steps[0]).find("pgshift refusal"), std::string::npos);
  auto refusal =
      f.refusals.Take(StrCat("relation \"", Refusals::ProbeName(1), "\" does not exist"));
  ASSERT_TRUE(refusal.has_value());
  EXPECT_EQ(refusal->sqlstate(), "40001");
  EXPECT_NE(refusal->message().find(table), std::string::npos);
}

// A pipelined COMMIT; UPDATE: the UPDATE was planned under the entries the
// committed transaction held, so they stay until the read's steps have run.
TEST(Planner, ATransactionThatEndsWhileItsReadsStepsRunLeavesTheGateAfterThem) {
  PlannerFixture f("shadow-read", true, "", true);
  f.gate.Synced();
  f.gate.Renewed(routing::CoordinationGate::Clock::now() + std::chrono::hours(1));
  f.Plan(Query("UPDATE channels SET title = 'x' WHERE id = 1"));
  const std::string table = f.settings_->config->tables[0].name;
  f.gate.Fence(1, {table});
  routing::CoordinationGate::Holder holder;
  EXPECT_FALSE(f.gate.TryAcknowledge(&holder)) << "in flight";
  f.planner.EndTransaction();  // its COMMIT answered, a later step not yet run
  EXPECT_FALSE(f.gate.TryAcknowledge(&holder)) << "a step planned under it is still to run";
  f.planner.StepsRun();
  f.planner.EndTransaction();
  EXPECT_TRUE(f.gate.TryAcknowledge(&holder));
}

// A lease that lapsed during a transaction cannot vouch for what it did
// before: a flip may have gone on without this instance meanwhile.
TEST(Planner, ATransactionIsRefusedOnceTheLeaseLapsedDuringIt) {
  PlannerFixture f("shadow-read", true, "", true);
  f.gate.Synced();
  const auto now = routing::CoordinationGate::Clock::now();
  f.gate.Renewed(now + std::chrono::hours(1), now);
  f.Plan(Query("UPDATE channels SET title = 'x' WHERE id = 1"));
  EXPECT_TRUE(f.refusals.empty());
  f.gate.Renewed(now + std::chrono::hours(3), now + std::chrono::hours(2));  // after a lapse
  std::vector<Step*> steps = f.Plan(Query("UPDATE channels SET title = 'y' WHERE id = 2"));
  ASSERT_FALSE(steps.empty());
  auto refusal =
      f.refusals.Take(StrCat("relation \"", Refusals::ProbeName(1), "\" does not exist"));
  ASSERT_TRUE(refusal.has_value());
  EXPECT_EQ(refusal->sqlstate(), "40001");
  EXPECT_NE(refusal->message().find("lease lapsed during this transaction"), std::string::npos)
      << refusal->message();
}

TEST(Planner, AMalformedMessageIsAnError) {
  PlannerFixture f("new-only", true);
  std::string bind = {protocol::frontend::kBind, 0, 0, 0, 5, 'x'};  // no terminator
  f.Plan(bind);
  EXPECT_NE(f.planner.error(), "");
}

}  // namespace
}  // namespace pgshift::proxy
