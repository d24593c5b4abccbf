// A pipelined mirror (mirror_apply = "pipelined") in the client's
// transaction: the client has the reply before new has answered the apply,
// whose outcome is collected by the next step that depends on it.
#include "tests/unit/mirror_coordinator_fixture.h"

namespace pgshift::proxy {
namespace {

class PipelinedMirrorTest : public MirrorCoordinatorTest {
 protected:
  PipelinedMirrorTest() { InClientTransaction(); }

  Step Control(routing::TransactionKind kind) {
    Step step;
    step.target = BackendId::kOld;
    step.transaction = kind;
    step.opens = true;
    // As the planner gives them (MarkStep).
    if (kind != routing::TransactionKind::kRollback) step.fail_probe = refusals_.Reserve();
    return step;
  }
  Step Read(BackendId server) {
    Step step;
    step.target = server;
    step.opens = true;
    return step;
  }
  // The error a step's stand-in is answered with, if it was given one.
  std::optional<ErrorFields> StandIn(const Step& step) {
    return refusals_.Take(StrCat("relation \"", Refusals::ProbeName(step.fail_probe), "\""));
  }
  static constexpr const char* kEarlier =
      "pgshift: the mirror of an earlier write in this transaction to public.channels on server "
      "new failed";
};

TEST_F(PipelinedMirrorTest, TheClientHasTheReplyBeforeNewHasAnsweredTheApply) {
  port_.Defer(kApply);
  Mirror(Write(), routing::MirrorErrorPolicy::kFail);
  EXPECT_EQ(port_.client, Reply("INSERT 0 1", TransactionStatus::kInBlock));
  EXPECT_TRUE(writes_.Writing("public.channels", "1"));
  // A read on old does not wait for it (the port flags any wait).
  Step read = Read(BackendId::kOld);
  EXPECT_TRUE(RunToEnd(mirror_.Collect(read)));
  port_.FinishDeferred();
  // The COMMIT collects it, then prepares the mirror before old commits.
  port_.ran = {};
  CommitAnswered();
  EXPECT_EQ(port_.ran[kNew], (Statements{"PREPARE TRANSACTION " + QuoteLiteral(Prepared()),
                                         "COMMIT PREPARED " + QuoteLiteral(Prepared())}));
  EXPECT_FALSE(writes_.Writing("public.channels", "1"));
}

TEST_F(PipelinedMirrorTest, UnderFailAFailedApplyFailsTheNextWriteAndAbortsOld) {
  port_.FailNext(BackendId::kNew, kApply);
  Mirror(Write(), routing::MirrorErrorPolicy::kFail);
  EXPECT_EQ(port_.client, Reply("INSERT 0 1", TransactionStatus::kInBlock))
      << "the failure is not known yet";
  port_.client.clear();
  port_.ran = {};
  Mirror(Write(), routing::MirrorErrorPolicy::kFail, "2");
  EXPECT_TRUE(port_.ran[kNew].empty()) << "the second write is not applied";
  ASSERT_EQ(port_.ran[kOld].size(), 1u);
  EXPECT_TRUE(Contains(port_.ran[kOld][0], "transaction aborted")) << port_.ran[kOld][0];
  std::optional<ErrorFields> e = ClientError(port_.client);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sqlstate(), "23514") << "the mirror's own SQLSTATE, for the client's retry logic";
  EXPECT_TRUE(Contains(e->message(), kEarlier)) << e->message();
  EXPECT_TRUE(Contains(e->message(), "scripted failure")) << e->message();
  EXPECT_EQ(transaction_.reported, TransactionStatus::kFailed);
}

TEST_F(PipelinedMirrorTest, UnderFailAFailedApplyFailsTheCommitAndBothSidesRollBack) {
  port_.FailNext(BackendId::kNew, kApply);
  Mirror(Write(), routing::MirrorErrorPolicy::kFail);
  port_.ran = {};
  Step commit = Commit();
  std::shared_ptr<MirrorBatch> batch;
  EXPECT_FALSE(StartCommit(commit, batch)) << "the COMMIT's stand-in is sent";
  EXPECT_EQ(port_.ran[kNew], Statements{"ROLLBACK"});
  EXPECT_EQ(port_.ran[kOld], Statements{"ROLLBACK"});
  EXPECT_FALSE(transaction_.mirrors(BackendId::kNew));
  std::optional<ErrorFields> e = StandIn(commit);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sqlstate(), "23514");
  EXPECT_TRUE(Contains(e->message(), "failed, so the transaction was rolled back: scripted"))
      << e->message();
}

// Under fail, a transaction whose apply failed cannot commit: every later
// statement that collects fails (transaction control in its stand-in's
// words, ROLLBACK TO too), until the client's ROLLBACK ends it.
TEST_F(PipelinedMirrorTest, UnderFailAFailedApplyFailsEveryLaterControlStatementButRollback) {
  port_.FailNext(BackendId::kNew, kApply);
  Mirror(Write(), routing::MirrorErrorPolicy::kFail);
  port_.ran = {};
  Step read = Read(BackendId::kOld);
  EXPECT_TRUE(RunToEnd(mirror_.Collect(read))) << "a read on old goes on";
  for (routing::TransactionKind kind :
       {routing::TransactionKind::kSavepoint, routing::TransactionKind::kRollbackTo,
        routing::TransactionKind::kRelease}) {
    Step control = Control(kind);
    EXPECT_FALSE(RunToEnd(mirror_.Collect(control)));
    std::optional<ErrorFields> e = StandIn(control);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->sqlstate(), "23514");
    EXPECT_TRUE(Contains(e->message(), kEarlier)) << e->message();
    EXPECT_TRUE(Contains(e->message(), "so the transaction cannot commit: scripted failure"))
        << e->message();
  }
  EXPECT_TRUE(port_.ran[kOld].empty()) << "each stand-in aborts old's transaction itself";
  Step rollback = Control(routing::TransactionKind::kRollback);
  EXPECT_TRUE(RunToEnd(mirror_.Collect(rollback)));
  EXPECT_FALSE(mirror_.apply_failed());
}

TEST_F(PipelinedMirrorTest, AFailedApplyIsNeitherUndoneNorLoggedWhenTheClientRollsBack) {
  port_.FailNext(BackendId::kNew, kApply);
  Mirror(Write(), routing::MirrorErrorPolicy::kLog);
  Step rollback = Control(routing::TransactionKind::kRollback);
  EXPECT_TRUE(RunToEnd(mirror_.Collect(rollback)));
  EXPECT_EQ(port_.ran[kOld], Statements{"SELECT pg_catalog.txid_current()"})
      << "no divergence logged: nothing will stand";
  EXPECT_EQ(port_.ran[kNew], (Statements{"BEGIN", "SAVEPOINT pgshift_mirror", kApply}))
      << "nothing undone on new: its ROLLBACK follows";
  EXPECT_TRUE(mirror_.keys().empty());
}

// A step to new fails there (its transaction failed) and aborts old's;
// the COMMIT after it still fails in pgshift's words, not PostgreSQL's
// silent ROLLBACK of an aborted transaction.
// A COMMIT sent to new, the mirror's server (a statement prepared while
// the phases were others), fails there: it never commits the writer alone.
TEST_F(PipelinedMirrorTest, UnderFailACommitSentToTheMirrorsServerFails) {
  port_.FailNext(BackendId::kNew, kApply);
  Mirror(Write(), routing::MirrorErrorPolicy::kFail);
  Step commit = Commit();
  commit.target = BackendId::kNew;
  EXPECT_FALSE(RunToEnd(mirror_.Collect(commit)));
  EXPECT_TRUE(StandIn(commit));
  // And a client's PREPARE TRANSACTION fails too.
  Step prepare = Control(routing::TransactionKind::kPrepare);
  EXPECT_FALSE(RunToEnd(mirror_.Collect(prepare)));
  EXPECT_TRUE(StandIn(prepare));
}

TEST_F(PipelinedMirrorTest, UnderFailAStepToNewAfterAFailedApplyAbortsOldAndTheCommitStillFails) {
  port_.FailNext(BackendId::kNew, kApply);
  Mirror(Write(), routing::MirrorErrorPolicy::kFail);
  port_.ran = {};
  Step on_new = Read(BackendId::kNew);
  EXPECT_TRUE(RunToEnd(mirror_.Collect(on_new))) << "it fails on new, whose transaction failed";
  ASSERT_EQ(port_.ran[kOld].size(), 1u);
  EXPECT_TRUE(Contains(port_.ran[kOld][0], "transaction aborted")) << port_.ran[kOld][0];
  old().transaction_status = TransactionStatus::kFailed;
  Step commit = Commit();
  std::shared_ptr<MirrorBatch> batch;
  EXPECT_FALSE(StartCommit(commit, batch));
  std::optional<ErrorFields> e = StandIn(commit);
  ASSERT_TRUE(e);
  EXPECT_TRUE(Contains(e->message(), "failed, so the transaction was rolled back")) << e->message();
}

// A keys' failed apply leaves nothing of it on the mirror: its keys are
// not the transaction's (logged once, not again if the commit fails).
TEST_F(PipelinedMirrorTest, UnderLogAFailedApplysKeysAreNotTheTransactionsMirroredKeys) {
  Mirror(Write(), routing::MirrorErrorPolicy::kLog, "1");
  port_.FailNext(BackendId::kNew, kApply);
  Mirror(Write(), routing::MirrorErrorPolicy::kLog, "2");
  Mirror(Write(), routing::MirrorErrorPolicy::kLog, "3");
  ASSERT_EQ(mirror_.keys().size(), 2u);
  EXPECT_EQ(mirror_.keys()[0].second, "1");
  EXPECT_EQ(mirror_.keys()[1].second, "3");
}

TEST_F(PipelinedMirrorTest, UnderLogAFailedApplyIsUndoneOnNewAloneAtTheNextWrite) {
  port_.FailNext(BackendId::kNew, kApply);
  Mirror(Write(), routing::MirrorErrorPolicy::kLog);
  EXPECT_EQ(port_.ran[kOld], Statements{"SELECT pg_catalog.txid_current()"}) << "not known yet";
  Mirror(Write(), routing::MirrorErrorPolicy::kLog, "2");
  EXPECT_EQ(port_.ran[kNew],
            (Statements{"BEGIN", "SAVEPOINT pgshift_mirror", kApply,
                        "ROLLBACK TO SAVEPOINT pgshift_mirror", "RELEASE SAVEPOINT pgshift_mirror",
                        "SAVEPOINT pgshift_mirror", kApply, "RELEASE SAVEPOINT pgshift_mirror"}));
  EXPECT_EQ(port_.ran[kOld], (Statements{"SELECT pg_catalog.txid_current()", Divergence()}))
      << "logged in the client's transaction";
  EXPECT_EQ(port_.client, Reply("INSERT 0 1", TransactionStatus::kInBlock) +
                              Reply("INSERT 0 1", TransactionStatus::kInBlock));
  Step commit = Commit();
  std::shared_ptr<MirrorBatch> batch;
  EXPECT_TRUE(StartCommit(commit, batch)) << "the transaction commits";
}

}  // namespace
}  // namespace pgshift::proxy
