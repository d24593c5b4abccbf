// The session's small parts, no sockets: a link's queue of expected replies
// and its batch state, what each server is to the client's transaction, the
// wake-up the session's coroutines wait on, and bringing new to the
// client's settings (through a scripted port).
#include <gtest/gtest.h>

#include "common/strings.h"
#include "proxy/session/client_transaction.h"
#include "proxy/session/link.h"
#include "proxy/session/settings_sync.h"
#include "proxy/session/wakeup.h"
#include "proxy/shadow_runner.h"
#include "tests/unit/scripted_port.h"

namespace pgshift::proxy {
namespace {

using protocol::TransactionStatus;
using routing::BackendId;

ReplyUnit MirroredUnit() {
  ReplyUnit unit;
  unit.shape.remote = std::make_shared<routing::RemoteMirror>();
  return unit;
}

TEST(LinkExpect, AQueryClosesItsCycleAtOnce) {
  Link link;
  Link::Queued queued = link.Expect(ExpectedReply{}, nullptr);
  EXPECT_TRUE(queued.closes);
  EXPECT_EQ(queued.mirror, nullptr);
  EXPECT_EQ(link.forward_pending, 1u);
  EXPECT_EQ(link.replies.size(), 1u);
}

// An extended batch's Execute and Sync, planned in later steps, join the
// reply its Parse opened: one cycle, closed by the Sync.
TEST(LinkExpect, AnOpenBatchTakesTheRepliesThatJoinIt) {
  Link link;
  ExpectedReply opened;
  opened.open = true;
  opened.units.resize(1);
  EXPECT_FALSE(link.Expect(std::move(opened), nullptr).closes);
  ExpectedReply execute;
  execute.open = true;
  execute.joins_open = true;
  execute.units.resize(1);
  EXPECT_FALSE(link.Expect(std::move(execute), nullptr).closes);
  ExpectedReply sync;
  sync.joins_open = true;
  EXPECT_TRUE(link.Expect(std::move(sync), nullptr).closes);
  ASSERT_EQ(link.replies.size(), 1u) << "one cycle";
  EXPECT_EQ(link.replies.front().units.size(), 2u);
  EXPECT_FALSE(link.replies.front().open);
  EXPECT_EQ(link.forward_pending, 1u);
}

// Each mirrored result gets its own place in the batch, once, and a batch
// spanning steps keeps the one its first step attached.
TEST(LinkExpect, MirroredResultsGetAPlaceEachInTheFirstBatch) {
  Link link;
  auto first = std::make_shared<MirrorBatch>();
  auto second = std::make_shared<MirrorBatch>();
  ExpectedReply opened;
  opened.open = true;
  opened.units.push_back(MirroredUnit());
  link.Expect(std::move(opened), first);
  ExpectedReply more;
  more.joins_open = true;
  more.units.push_back(MirroredUnit());
  ReplyUnit describe = MirroredUnit();
  describe.describe = true;
  more.units.push_back(describe);
  Link::Queued queued = link.Expect(std::move(more), second);
  EXPECT_TRUE(queued.closes);
  EXPECT_EQ(queued.mirror, first);
  EXPECT_EQ(first->rows.size(), 2u) << "a Describe's answer has no rows";
  EXPECT_TRUE(second->rows.empty());
  const std::vector<ReplyUnit>& units = link.replies.front().units;
  EXPECT_EQ(units[0].mirror_index, 0);
  EXPECT_EQ(units[1].mirror_index, 1);
  EXPECT_EQ(units[2].mirror_index, -1);
}

TEST(LinkExpect, AJoiningReplyWithNoOpenBatchStartsItsOwnCycle) {
  Link link;
  link.Expect(ExpectedReply{}, nullptr);
  ExpectedReply sync;
  sync.joins_open = true;
  link.Expect(std::move(sync), nullptr);
  EXPECT_EQ(link.replies.size(), 2u);
  EXPECT_EQ(link.forward_pending, 2u);
}

// Only written bytes move a link in and out of a batch, and only a
// connected one.
TEST(LinkState, ABatchIsOpenFromItsFirstMessageSentToItsSync) {
  Link link;
  link.Sent(BatchEffect::kOpens);
  EXPECT_TRUE(link.absent()) << "nothing is sent to an absent link";
  link.state = Link::State::kReady;
  link.Sent(BatchEffect::kNone);
  EXPECT_FALSE(link.in_batch());
  link.Sent(BatchEffect::kOpens);
  EXPECT_TRUE(link.in_batch());
  EXPECT_TRUE(link.ready()) << "a link in a batch is connected";
  link.Sent(BatchEffect::kNone);
  EXPECT_TRUE(link.in_batch()) << "COPY data, say, leaves the batch open";
  link.Sent(BatchEffect::kCloses);
  EXPECT_FALSE(link.in_batch());
  EXPECT_TRUE(link.ready());
}

TEST(ClientTransactionTest, OneServerWritesTheOtherMirrorsUntilItsMirrorEnds) {
  ClientTransaction t;
  t.Wrote(BackendId::kOld);
  t.Mirrored(BackendId::kNew);
  EXPECT_TRUE(t.wrote(BackendId::kOld));
  EXPECT_FALSE(t.wrote(BackendId::kNew));
  EXPECT_TRUE(t.mirrors(BackendId::kNew));
  t.MirrorEnded(BackendId::kOld);
  EXPECT_TRUE(t.wrote(BackendId::kOld)) << "the writer is not a mirror";
  t.MirrorEnded(BackendId::kNew);
  EXPECT_FALSE(t.mirrors(BackendId::kNew));
  t.commit_requested = true;
  t.End();
  EXPECT_FALSE(t.wrote(BackendId::kOld));
  EXPECT_FALSE(t.commit_requested);
}

TEST(ClientTransactionTest, WhatWasSentDecidesUntilItIsAnswered) {
  ClientTransaction t;
  EXPECT_FALSE(t.open());
  t.sent = ClientTransaction::Sent::kBegun;  // pgjdbc's BEGIN, in the batch of the write
  EXPECT_TRUE(t.open());
  t.reported = TransactionStatus::kInBlock;
  t.sent = ClientTransaction::Sent::kEnded;  // a COMMIT sent, not yet answered
  EXPECT_FALSE(t.open());
  t.sent = ClientTransaction::Sent::kAsReported;
  EXPECT_TRUE(t.open());
  t.reported = TransactionStatus::kFailed;
  EXPECT_TRUE(t.open());
}

// Two coroutines waiting at once each wake when their own condition holds,
// and neither wakes the other in turn.
TEST(ShadowBytesTest, HoldersShareTheWorkersBudgetAndGiveBackWhenTheyGo) {
  auto budget = std::make_shared<ShadowBytes::Budget>();
  budget->limit = 1000;
  ShadowBytes capture(budget);
  EXPECT_TRUE(capture.Take(600));
  {
    ShadowBytes reading(budget);
    EXPECT_FALSE(reading.Take(500)) << "the worker holds 600 of 1000";
    EXPECT_TRUE(reading.Take(400));
    EXPECT_EQ(budget->held, 1000u);
  }
  EXPECT_EQ(budget->held, 600u) << "given back when the holder goes";
  ShadowBytes queued = std::move(capture);  // a capture's bytes go with its job
  EXPECT_EQ(budget->held, 600u);
  queued.Release();
  EXPECT_EQ(budget->held, 0u);
}

TEST(PrettySizeTest, WritesSizesAsPgSizePrettyDoes) {
  EXPECT_EQ(PrettySize(0), "0 bytes");
  EXPECT_EQ(PrettySize(10239), "10239 bytes");
  EXPECT_EQ(PrettySize(10240), "10 kB");
  EXPECT_EQ(PrettySize(uint64_t{300} << 20), "300 MB");
  EXPECT_EQ(PrettySize(uint64_t{256} << 30), "256 GB");
}

TEST(WakeupTest, EveryWaiterChecksItsOwnConditionAfterANotify) {
  asio::io_context io;
  Wakeup wake(io.get_executor());
  bool a = false, b = false;
  int done = 0;
  auto wait = [&](bool& flag) -> awaitable<void> {
    co_await wake.Until([&] { return flag; });
    ++done;
  };
  asio::co_spawn(io, wait(a), asio::detached);
  asio::co_spawn(io, wait(b), asio::detached);
  EXPECT_EQ(io.poll(), 2u) << "both started and wait";
  EXPECT_EQ(io.poll(), 0u) << "nothing runs until a Notify";
  a = true;
  wake.Notify();
  io.poll();
  EXPECT_EQ(done, 1);
  EXPECT_EQ(io.poll(), 0u) << "the other waits again, quietly";
  b = true;
  wake.Notify();
  io.poll();
  EXPECT_EQ(done, 2);
}

class SettingsSyncTest : public ::testing::Test {
 protected:
  SettingsSyncTest() {
    fresh_.server = BackendId::kNew;
    fresh_.name = "new";
    fresh_.state = Link::State::kReady;
  }
  void Set(std::string key, std::string sql, bool in_transaction = false) {
    client_.Record({routing::SettingChange::kSession, std::move(key), std::move(sql), false},
                   in_transaction);
  }
  ScriptedPort port_;
  routing::SessionSettings client_;
  Link fresh_;
  SettingsSync sync_{port_, client_, 1};
};

TEST_F(SettingsSyncTest, OnlyNewIsEverBehindAndNeverInTheClientsBatch) {
  EXPECT_FALSE(sync_.Behind(fresh_));
  Set("timezone", "SET TimeZone = 'UTC'");
  EXPECT_TRUE(sync_.Behind(fresh_));
  fresh_.Sent(BatchEffect::kOpens);
  EXPECT_FALSE(sync_.Behind(fresh_)) << "nothing of pgshift's inside the client's batch";
  Link old;
  old.state = Link::State::kReady;
  EXPECT_FALSE(sync_.Behind(old)) << "old ran the client's own SET";
}

TEST_F(SettingsSyncTest, OutsideATransactionOneQueryGivesNewTheSessionsSettings) {
  Set("timezone", "SET TimeZone = 'UTC'");
  Set("search_path", "SET search_path = app");
  RunToEnd(sync_.Sync(fresh_));
  EXPECT_EQ(port_.ran[1],
            (std::vector<std::string>{"RESET ALL;\nSET TimeZone = 'UTC';\nSET search_path = app"}))
      << "whatever new had before, it gets the session's state";
  EXPECT_FALSE(sync_.Behind(fresh_));
  RunToEnd(sync_.Sync(fresh_));
  EXPECT_EQ(port_.ran[1].size(), 1u) << "once";
}

// The one Query fails as a whole: each then runs alone, so that only the
// failing one is missing.
TEST_F(SettingsSyncTest, ASettingNewRefusesCostsOnlyItself) {
  Set("timezone", "SET TimeZone = 'UTC'");
  Set("search_path", "SET search_path = app");
  port_.FailNext(BackendId::kNew, "SET search_path", "3F000");
  port_.FailNext(BackendId::kNew, "SET search_path", "3F000");
  RunToEnd(sync_.Sync(fresh_));
  EXPECT_EQ(port_.ran[1], (std::vector<std::string>{
                              "RESET ALL;\nSET TimeZone = 'UTC';\nSET search_path = app",
                              "RESET ALL", "SET TimeZone = 'UTC'", "SET search_path = app"}));
  EXPECT_FALSE(sync_.Behind(fresh_));
}

// In a transaction new has joined, only the transaction's changes it has
// not run yet.
TEST_F(SettingsSyncTest, InATransactionOnlyItsNewChangesRun) {
  fresh_.transaction_status = TransactionStatus::kInBlock;
  Set("work_mem", "SET work_mem = '8MB'", true);
  RunToEnd(sync_.Sync(fresh_));
  Set("timezone", "SET TimeZone = 'UTC'", true);
  RunToEnd(sync_.Sync(fresh_));
  EXPECT_EQ(port_.ran[1],
            (std::vector<std::string>{"SET work_mem = '8MB'", "SET TimeZone = 'UTC'"}));
}

}  // namespace
}  // namespace pgshift::proxy
