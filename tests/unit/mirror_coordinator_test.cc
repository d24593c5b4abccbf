// The mirror coordinator driven through a scripted port, no sockets: what it
// runs on each server, in order, and what the client is told, when the
// mirror succeeds and when it fails under each on_mirror_error policy.
#include "tests/unit/mirror_coordinator_fixture.h"

namespace pgshift::proxy {
namespace {

TEST_F(MirrorCoordinatorTest, AWriteOutsideATransactionIsPreparedOnTheMirrorBeforeOldCommits) {
  Mirror(Write(), routing::MirrorErrorPolicy::kFail);
  EXPECT_EQ(port_.ran[kOld], (Statements{"BEGIN", "SELECT pg_catalog.txid_current()", "COMMIT"}));
  EXPECT_EQ(port_.ran[kNew],
            (Statements{"BEGIN", kApply, "PREPARE TRANSACTION " + QuoteLiteral(Prepared()),
                        "COMMIT PREPARED " + QuoteLiteral(Prepared())}));
  EXPECT_EQ(port_.client, Reply("INSERT 0 1", TransactionStatus::kIdle))
      << "the client is told idle, as if pgshift had begun nothing";
  EXPECT_EQ(transaction_.reported, TransactionStatus::kIdle);
  EXPECT_TRUE(mirror_.keys().empty());
}

// A shadow read's difference on a key is explained while the key's write
// is in flight: from its answer on old, before either side commits it,
// until both have.
TEST_F(MirrorCoordinatorTest, AWritesKeysAreInFlightUntilBothSidesCommitted) {
  std::vector<std::string> writing_at;
  port_.on_run = [&](BackendId server, const std::string& sql) {
    if (writes_.Writing("public.channels", "7")) {
      writing_at.push_back(StrCat(routing::BackendName(server), ": ", sql));
    }
  };
  const auto before = routing::WritesInFlight::Clock::now();
  Mirror(Write(), routing::MirrorErrorPolicy::kFail, "7");
  EXPECT_EQ(writing_at,
            (Statements{"new: BEGIN", "new: APPLY public.channels",
                        "new: PREPARE TRANSACTION " + QuoteLiteral(Prepared()), "old: COMMIT",
                        "new: COMMIT PREPARED " + QuoteLiteral(Prepared())}));
  EXPECT_FALSE(writes_.Writing("public.channels", "7"));
  EXPECT_TRUE(writes_.Explains("public.channels", "7", before)) << "settled since";
  EXPECT_FALSE(writes_.Explains("public.channels", "7", routing::WritesInFlight::Clock::now()));
  EXPECT_FALSE(writes_.Explains("public.channels", "8", before)) << "another key";

  // In the client's transaction: until its COMMIT is settled on both.
  writing_at.clear();
  InClientTransaction();
  Mirror(Write(), routing::MirrorErrorPolicy::kFail, "7");
  EXPECT_TRUE(writes_.Writing("public.channels", "7"));
  CommitAnswered();
  EXPECT_EQ(writing_at.back(), "new: COMMIT PREPARED " + QuoteLiteral(Prepared()));
  EXPECT_FALSE(writes_.Writing("public.channels", "7"));
}

// From just before old commits until new has: old shows the write, new
// does not yet.
TEST_F(MirrorCoordinatorTest, AWritesKeysAreCommittingFromOldsCommitUntilTheMirrors) {
  const std::vector<std::optional<std::string>> key{"7"};
  std::vector<std::string> committing_at;
  port_.on_run = [&](BackendId server, const std::string& sql) {
    if (writes_.Committing("public.channels", key)) {
      committing_at.push_back(StrCat(routing::BackendName(server), ": ", sql));
    }
  };
  Mirror(Write(), routing::MirrorErrorPolicy::kFail, "7");
  EXPECT_EQ(committing_at,
            (Statements{"old: COMMIT", "new: COMMIT PREPARED " + QuoteLiteral(Prepared())}));
  EXPECT_FALSE(writes_.Committing("public.channels", key));

  // In the client's transaction: once the mirror is prepared, before the
  // client's COMMIT goes to old.
  committing_at.clear();
  InClientTransaction();
  Mirror(Write(), routing::MirrorErrorPolicy::kFail, "7");
  EXPECT_FALSE(writes_.Committing("public.channels", key));
  Step commit = Commit();
  std::shared_ptr<MirrorBatch> batch;
  EXPECT_TRUE(StartCommit(commit, batch));
  EXPECT_TRUE(writes_.Committing("public.channels", key));
  EXPECT_FALSE(writes_.Committing("public.channels", {std::string("8")}));
  ASSERT_TRUE(batch);
  batch->outcome = MirrorBatch::Outcome::kSucceeded;
  RunToEnd(mirror_.Settle(old(), *batch));
  EXPECT_EQ(committing_at, (Statements{"new: COMMIT PREPARED " + QuoteLiteral(Prepared())}));
  EXPECT_FALSE(writes_.Committing("public.channels", key));
}

// A DELETE on new does not see a row whose insert old committed and new has
// only prepared: it waits until that insert has committed on new too.
TEST_F(MirrorCoordinatorTest, ADeleteWaitsForACommittingWriteOfItsKeys) {
  config_->proxy.mirror_lock_timeout_s = 10;  // a wait that never ends fails the test
  routing::WritesInFlight::Hold insert = writes_.NewHold();
  insert.Add({{"public.channels", "7"}});
  insert.Committing();
  port_.on_pause = [&] {
    if (port_.pauses == 3) insert.Release();
  };
  std::vector<int> applied_after;
  port_.on_run = [&](BackendId, const std::string& sql) {
    if (sql == kApply) applied_after.push_back(port_.pauses);
  };
  Mirror(Write(), routing::MirrorErrorPolicy::kFail, "8", /*deletes=*/true);
  EXPECT_EQ(applied_after, std::vector<int>{0}) << "another key does not wait";
  Mirror(Write(), routing::MirrorErrorPolicy::kFail, "7", /*deletes=*/false);
  EXPECT_EQ(applied_after, (std::vector<int>{0, 0})) << "an upsert waits on new's own locks";
  Mirror(Write(), routing::MirrorErrorPolicy::kFail, "7", /*deletes=*/true);
  EXPECT_EQ(applied_after, (std::vector<int>{0, 0, 3}));
}

TEST_F(MirrorCoordinatorTest, ADeleteWaitsForACommittingWriteAtMostMirrorLockTimeout) {
  config_->proxy.mirror_lock_timeout_s = 0.005;
  routing::WritesInFlight::Hold insert = writes_.NewHold();
  insert.Add({{"public.channels", "7"}});
  insert.Committing();
  port_.on_pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(1)); };
  Mirror(Write(), routing::MirrorErrorPolicy::kFail, "7", /*deletes=*/true);
  EXPECT_GE(port_.pauses, 2);
  EXPECT_EQ(port_.ran[kOld], (Statements{"BEGIN", "SELECT pg_catalog.txid_current()", "ROLLBACK"}));
  EXPECT_TRUE(port_.ran[kNew].empty()) << "nothing was applied";
  std::optional<ErrorFields> error = ClientError(port_.client);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->sqlstate(), "55P03");
  EXPECT_TRUE(Contains(error->message(),
                       "waited more than mirror_lock_timeout (0.005 s) for an earlier write of the "
                       "same rows to commit on server new"))
      << error->message();
}

TEST_F(MirrorCoordinatorTest, RecoveryLeavesAPreparedMirrorToItsSessionUntilItIsSettled) {
  Mirror(Write(), routing::MirrorErrorPolicy::kFail);
  EXPECT_EQ(port_.prepared_while_registered, true);
  EXPECT_FALSE(SettlingMirrors::Get().Contains(Prepared()));
}

TEST_F(MirrorCoordinatorTest, TheMirrorsStatementsWaitForLocksAtMostMirrorLockTimeout) {
  auto config = std::make_shared<routing::Config>(*settings_->config);
  config->proxy.mirror_lock_timeout_s = 2.5;
  auto settings = std::make_shared<Settings>(*settings_);
  settings->config = config;
  settings_ = settings;
  const std::string bound = StrCat(
      "SELECT pg_catalog.set_config('pgshift.lock_timeout', "
      "pg_catalog.current_setting('lock_timeout'), true), "
      "pg_catalog.set_config('lock_timeout', ",
      QuoteLiteral("2500ms"), ", true)");
  const std::string restore =
      "SELECT pg_catalog.set_config('lock_timeout', "
      "pg_catalog.current_setting('pgshift.lock_timeout'), true)";
  // pgshift's own transaction: it ends with the setting.
  Mirror(Write(), routing::MirrorErrorPolicy::kFail);
  EXPECT_EQ(port_.ran[kNew],
            (Statements{"BEGIN", bound, kApply, "PREPARE TRANSACTION " + QuoteLiteral(Prepared()),
                        "COMMIT PREPARED " + QuoteLiteral(Prepared())}));
  // The client's: its own lock_timeout comes back after the write.
  port_.ran = {};
  InClientTransaction();
  Mirror(Write(), routing::MirrorErrorPolicy::kLog);
  EXPECT_EQ(port_.ran[kNew], (Statements{"BEGIN", "SAVEPOINT pgshift_mirror", bound, kApply,
                                         restore, "RELEASE SAVEPOINT pgshift_mirror"}));
}

TEST_F(MirrorCoordinatorTest, UnderFailAFailedApplyRollsBothSidesBackAndFailsTheWrite) {
  port_.FailNext(BackendId::kNew, kApply);
  Mirror(Write(), routing::MirrorErrorPolicy::kFail);
  EXPECT_EQ(port_.ran[kOld], (Statements{"BEGIN", "SELECT pg_catalog.txid_current()", "ROLLBACK"}));
  EXPECT_EQ(port_.ran[kNew], (Statements{"BEGIN", kApply, "ROLLBACK"}));
  std::optional<ErrorFields> e = ClientError(port_.client);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sqlstate(), "23514");
  EXPECT_TRUE(Contains(e->message(),
                       "the mirror of this write to public.channels on "
                       "server new failed, so the write was rolled back"))
      << e->message();
  EXPECT_EQ(transaction_.reported, TransactionStatus::kIdle);
}

TEST_F(MirrorCoordinatorTest, UnderLogAFailedApplyLetsTheWriteCommitWithItsKeysLogged) {
  port_.FailNext(BackendId::kNew, kApply);
  Mirror(Write(), routing::MirrorErrorPolicy::kLog);
  EXPECT_EQ(port_.ran[kOld],
            (Statements{"BEGIN", "SELECT pg_catalog.txid_current()", Divergence(), "COMMIT"}));
  EXPECT_EQ(port_.ran[kNew], (Statements{"BEGIN", kApply, "ROLLBACK"}));
  EXPECT_EQ(port_.client, Reply("INSERT 0 1", TransactionStatus::kIdle));
}

// Its batch began before pgshift could open a transaction around it, so
// the write has committed on old by the time its mirror fails.
TEST_F(MirrorCoordinatorTest, AWriteThatCommittedOnItsOwnHasItsKeysLoggedUnderEitherPolicy) {
  for (auto policy : {routing::MirrorErrorPolicy::kFail, routing::MirrorErrorPolicy::kLog}) {
    SCOPED_TRACE(policy == routing::MirrorErrorPolicy::kFail ? "fail" : "log");
    port_.ran = {};
    port_.client.clear();
    port_.FailNext(BackendId::kNew, kApply);
    Mirror(Write(/*opens=*/false), policy);
    EXPECT_EQ(port_.ran[kOld], Statements{Divergence()});
    EXPECT_EQ(port_.ran[kNew], (Statements{"BEGIN", kApply, "ROLLBACK"}));
    std::optional<ErrorFields> e = ClientError(port_.client);
    if (policy == routing::MirrorErrorPolicy::kLog) {
      EXPECT_EQ(port_.client, Reply("INSERT 0 1", TransactionStatus::kIdle));
      continue;
    }
    // Under fail the client is not told the write was mirrored.
    ASSERT_TRUE(e);
    EXPECT_TRUE(Contains(e->message(), "committed on server old on its own")) << e->message();
    EXPECT_TRUE(Contains(e->message(), "its keys are in pgshift_divergence")) << e->message();
  }
}

TEST_F(MirrorCoordinatorTest, AWriteThatCommittedOnItsOwnIsCommittedOnTheMirror) {
  Mirror(Write(/*opens=*/false), routing::MirrorErrorPolicy::kFail);
  EXPECT_TRUE(port_.ran[kOld].empty());
  EXPECT_EQ(port_.ran[kNew], (Statements{"BEGIN", kApply, "COMMIT"}));
  EXPECT_EQ(port_.client, Reply("INSERT 0 1", TransactionStatus::kIdle));
}

TEST_F(MirrorCoordinatorTest, AWriteWhoseRowsPassMirrorMaxBytesIsRolledBackAndFails) {
  config_->proxy.mirror_max_bytes = 4096;
  std::shared_ptr<MirrorBatch> batch =
      Mirror(Write(), routing::MirrorErrorPolicy::kLog, std::string(5000, 'k'));
  EXPECT_TRUE(batch->rows[0].json.empty()) << "what it held is let go at once";
  EXPECT_TRUE(batch->held.empty());
  EXPECT_EQ(port_.ran[kOld], (Statements{"BEGIN", "SELECT pg_catalog.txid_current()", "ROLLBACK"}));
  EXPECT_TRUE(port_.ran[kNew].empty()) << "nothing is applied on the mirror";
  std::optional<ErrorFields> e = ClientError(port_.client);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sqlstate(), "54000");
  EXPECT_TRUE(Contains(e->message(), "would hold 5"));
  EXPECT_TRUE(Contains(e->message(), "above mirror_max_bytes (4096 bytes)")) << e->message();
  EXPECT_TRUE(Contains(e->message(), "so the write was rolled back")) << e->message();
  EXPECT_EQ(transaction_.reported, TransactionStatus::kIdle);
}

// Past the limit, a write that committed on its own cannot be undone: its
// keys are still logged, and the client told so.
TEST_F(MirrorCoordinatorTest, AWriteThatCommittedOnItsOwnPastMirrorMaxBytesHasItsKeysLogged) {
  config_->proxy.mirror_max_bytes = 2048;
  std::shared_ptr<MirrorBatch> batch;
  Step step = Write(/*opens=*/false);
  EXPECT_TRUE(RunToEnd(mirror_.BeforeStep(step, batch)));
  Answered(*batch, routing::MirrorErrorPolicy::kFail);
  batch->KeepRow(0, std::string(4000, 'j'), std::string("2"));
  ASSERT_TRUE(batch->too_large());
  RunToEnd(mirror_.Settle(old(), *batch));
  EXPECT_TRUE(port_.ran[kNew].empty());
  ASSERT_EQ(port_.ran[kOld].size(), 1u);
  EXPECT_TRUE(Contains(port_.ran[kOld][0],
                       StrCat(QuoteLiteral("public.channels"), ", ", QuoteLiteral("2"))))
      << "the key past the limit is logged too: " << port_.ran[kOld][0];
  std::optional<ErrorFields> e = ClientError(port_.client);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sqlstate(), "54000");
  EXPECT_TRUE(Contains(e->message(), "committed on server old on its own")) << e->message();
  EXPECT_TRUE(Contains(e->message(), "its keys are in pgshift_divergence")) << e->message();
}

TEST_F(MirrorCoordinatorTest, TheKeysATransactionMirroredCountAgainstMirrorMaxBytes) {
  config_->proxy.mirror_max_bytes = 4096;
  InClientTransaction();
  Mirror(Write(), routing::MirrorErrorPolicy::kFail, std::string(1500, 'a'));
  Mirror(Write(), routing::MirrorErrorPolicy::kFail, std::string(1500, 'b'));
  EXPECT_EQ(mirror_.keys().size(), 2u);
  EXPECT_FALSE(ClientError(port_.client));
  port_.ran = {};
  port_.client.clear();
  // Alone it would fit; with the two keys before it, it does not.
  Mirror(Write(), routing::MirrorErrorPolicy::kFail, std::string(1500, 'c'));
  EXPECT_TRUE(port_.ran[kNew].empty());
  ASSERT_EQ(port_.ran[kOld].size(), 1u);
  EXPECT_TRUE(Contains(port_.ran[kOld][0], "transaction aborted")) << "old's transaction fails too";
  std::optional<ErrorFields> e = ClientError(port_.client);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sqlstate(), "54000");
  EXPECT_TRUE(Contains(e->message(), "with the keys this transaction mirrored before it"))
      << e->message();
  EXPECT_EQ(transaction_.reported, TransactionStatus::kFailed);
}

TEST_F(MirrorCoordinatorTest, InTheClientsTransactionTheMirrorJoinsItAndCommitsWithIt) {
  InClientTransaction();
  Mirror(Write(), routing::MirrorErrorPolicy::kLog);
  EXPECT_EQ(port_.ran[kOld], Statements{"SELECT pg_catalog.txid_current()"});
  EXPECT_EQ(port_.ran[kNew], (Statements{"BEGIN", "SAVEPOINT pgshift_mirror", kApply,
                                         "RELEASE SAVEPOINT pgshift_mirror"}));
  EXPECT_EQ(port_.client, Reply("INSERT 0 1", TransactionStatus::kInBlock));
  EXPECT_TRUE(transaction_.mirrors(BackendId::kNew));
  ASSERT_EQ(mirror_.keys().size(), 1u);
  EXPECT_EQ(mirror_.keys()[0].first, "public.channels");

  // COMMIT: the mirror is prepared before old commits, and committed after.
  port_.ran = {};
  Step commit = Commit();
  std::shared_ptr<MirrorBatch> batch;
  EXPECT_TRUE(StartCommit(commit, batch));
  ASSERT_TRUE(batch);
  EXPECT_EQ(port_.ran[kNew], Statements{"PREPARE TRANSACTION " + QuoteLiteral(Prepared())});
  batch->outcome = MirrorBatch::Outcome::kSucceeded;
  RunToEnd(mirror_.Settle(old(), *batch));
  EXPECT_EQ(port_.ran[kNew], (Statements{"PREPARE TRANSACTION " + QuoteLiteral(Prepared()),
                                         "COMMIT PREPARED " + QuoteLiteral(Prepared())}));
  EXPECT_TRUE(port_.ran[kOld].empty()) << "the client's COMMIT is old's";
  EXPECT_TRUE(mirror_.keys().empty());
  EXPECT_FALSE(transaction_.mirrors(BackendId::kNew));
}

TEST_F(MirrorCoordinatorTest, UnderLogAFailedApplyInTheClientsTransactionIsUndoneOnTheMirrorAlone) {
  pipelined_ = false;  // mirror_apply = "sync": at the write
  InClientTransaction();
  port_.FailNext(BackendId::kNew, kApply);
  Mirror(Write(), routing::MirrorErrorPolicy::kLog);
  EXPECT_EQ(port_.ran[kNew], (Statements{"BEGIN", "SAVEPOINT pgshift_mirror", kApply,
                                         "ROLLBACK TO SAVEPOINT pgshift_mirror",
                                         "RELEASE SAVEPOINT pgshift_mirror"}));
  EXPECT_EQ(port_.ran[kOld], (Statements{"SELECT pg_catalog.txid_current()", Divergence()}))
      << "logged in the client's transaction";
  EXPECT_EQ(port_.client, Reply("INSERT 0 1", TransactionStatus::kInBlock));
  EXPECT_TRUE(mirror_.keys().empty()) << "nothing of it is on the mirror";
}

TEST_F(MirrorCoordinatorTest, UnderFailAPrepareThatFailsFailsTheCommitOnBothSides) {
  InClientTransaction();
  Mirror(Write(), routing::MirrorErrorPolicy::kFail);
  port_.ran = {};
  port_.FailNext(BackendId::kNew, "PREPARE TRANSACTION", "53100");
  Step commit = Commit();
  std::shared_ptr<MirrorBatch> batch;
  EXPECT_FALSE(StartCommit(commit, batch)) << "the COMMIT's stand-in is sent";
  EXPECT_FALSE(batch);
  EXPECT_EQ(port_.ran[kNew],
            (Statements{"PREPARE TRANSACTION " + QuoteLiteral(Prepared()), "ROLLBACK"}));
  EXPECT_EQ(port_.ran[kOld], Statements{"ROLLBACK"});
  std::optional<ErrorFields> refusal =
      refusals_.Take(StrCat("relation \"", Refusals::ProbeName(commit.fail_probe), "\""));
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->sqlstate(), "53100");
  EXPECT_TRUE(Contains(refusal->message(),
                       "could not be committed, so the transaction "
                       "was rolled back"))
      << refusal->message();
}

TEST_F(MirrorCoordinatorTest, UnderLogAPrepareThatFailsLetsTheCommitStandWithTheKeysLogged) {
  InClientTransaction();
  Mirror(Write(), routing::MirrorErrorPolicy::kLog);
  port_.ran = {};
  port_.FailNext(BackendId::kNew, "PREPARE TRANSACTION");
  Step commit = Commit();
  std::shared_ptr<MirrorBatch> batch;
  EXPECT_TRUE(StartCommit(commit, batch));
  EXPECT_FALSE(batch) << "nothing is left to finish on the mirror";
  EXPECT_EQ(port_.ran[kNew],
            (Statements{"PREPARE TRANSACTION " + QuoteLiteral(Prepared()), "ROLLBACK"}));
  EXPECT_EQ(port_.ran[kOld], Statements{Divergence()}) << "in the transaction the COMMIT ends";
}

TEST_F(MirrorCoordinatorTest, ACommitOfAFailedTransactionRollsTheMirrorBack) {
  InClientTransaction();
  Mirror(Write(), routing::MirrorErrorPolicy::kFail);
  port_.ran = {};
  old().transaction_status = TransactionStatus::kFailed;
  Step commit = Commit();
  std::shared_ptr<MirrorBatch> batch;
  EXPECT_TRUE(StartCommit(commit, batch));
  EXPECT_FALSE(batch);
  EXPECT_EQ(port_.ran[kNew], Statements{"ROLLBACK"});
  EXPECT_TRUE(port_.ran[kOld].empty());
  EXPECT_FALSE(transaction_.mirrors(BackendId::kNew));
}

}  // namespace
}  // namespace pgshift::proxy
