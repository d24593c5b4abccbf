// pgshift backfill and verify across two servers: copies, verify and
// repair, and a backfill stopped at each point of a batch's commits and
// resumed, losing no row and keeping no row deleted meanwhile.
#include <gtest/gtest.h>
#include <signal.h>

#include <string>

#include "tests/integration/backfill_tables.h"
#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"

namespace pgshift::testing {
namespace {

// Across servers: the new table on a second PostgreSQL.
TEST(BackfillAcrossServers, CopiesAndVerifies) {
  TwoServers servers("backfill_two");
  ASSERT_TRUE(servers.new_cluster.ok());
  PgConn new_db = servers.New();
  auto run = [&](const std::string& what, std::string& out) {
    return CaptureCommand(servers.Command(what), out);
  };
  std::string out;
  ASSERT_EQ(run("backfill --batch 100", out), 0) << out;
  EXPECT_EQ(new_db.Value("SELECT count(*) FROM channels_v2"), "20000");
  EXPECT_NE(out.find("rows travel by COPY in binary format"), std::string::npos) << out;
  // 100 rows take far less than --batch-seconds (0.5): the batches grow.
  EXPECT_NE(out.find("rows=100 copied=100 last_key=100 "), std::string::npos) << out;
  EXPECT_NE(out.find("rows=300 copied=200 last_key=300 "), std::string::npos) << out;
  EXPECT_NE(out.find("next_batch=3200"), std::string::npos) << out;
  ASSERT_EQ(run("verify", out), 0) << out;
  Exec(new_db,
       "UPDATE channels_v2 SET name = 'x' WHERE id = 12345; DELETE FROM channels_v2 WHERE id = 1");
  EXPECT_EQ(run("verify --repair", out), 0) << out;
  EXPECT_NE(out.find("missing in new (1): 1"), std::string::npos) << out;
  EXPECT_NE(out.find("different (1): 12345"), std::string::npos) << out;
  EXPECT_EQ(new_db.Value("SELECT name FROM channels_v2 WHERE id = 12345"), "channel 12345");
}

// The same across servers, where the sweep removes only the rows its
// batch's transaction on new inserted: that transaction is saved with the
// checkpoint too.
TEST(BackfillAcrossServers, AKilledBackfillSweepsItsLastBatchWhenItResumes) {
  TwoServers servers("backfill_swept");
  ASSERT_TRUE(servers.new_cluster.ok());
  PgConn old_db = servers.Old();
  PgConn new_db = servers.New();
  const std::string command = servers.Command("backfill") + " --batch 5000";
  PgConn writer = servers.Old();
  KillBeforeItsSweep(writer, command, servers.dir + "/log", [&] {
    Exec(old_db, "DELETE FROM channels WHERE id = 7");
    EXPECT_EQ(new_db.Value("SELECT count(*) FROM channels_v2 WHERE id = 7"), "1");
  });
  ASSERT_FALSE(HasFailure());
  std::string out;
  ASSERT_EQ(CaptureCommand(command, out), 0) << out;
  EXPECT_NE(out.find("sweeps its last batch first"), std::string::npos) << out;
  EXPECT_EQ(new_db.Value("SELECT count(*) FROM channels_v2 WHERE id = 7"), "0");
  EXPECT_EQ(new_db.Value("SELECT count(*) FROM channels_v2"), "19999");
}

// The batch a killed run left to sweep names a transaction on new that is
// still open (here the test's own, standing in for a copy whose commit
// has not ended): the next run neither sweeps nor copies, says why, and
// keeps the checkpoint; once that transaction ends, it goes on.
TEST(BackfillAcrossServers, AStoppedBatchWhoseCopyIsStillOpenOnNewWaitsForIt) {
  TwoServers servers("backfill_open");
  ASSERT_TRUE(servers.new_cluster.ok());
  PgConn old_db = servers.Old();
  PgConn new_db = servers.New();
  const std::string command = servers.Command("backfill") + " --batch 5000";
  PgConn writer = servers.Old();
  KillBeforeItsSweep(writer, command, servers.dir + "/log", [] {});
  ASSERT_FALSE(HasFailure());
  PgConn open = servers.New();
  Exec(open, "BEGIN");
  const std::string xid = open.Value("SELECT pg_current_xact_id()::text").value_or("");
  const std::string sweep = "detail->'sweep'->>'copy_xid'";
  const std::string checkpoint = "FROM pgshift_state WHERE kind = 'backfill_range'";
  Exec(old_db, "UPDATE pgshift_state SET detail = jsonb_set(detail, '{sweep,copy_xid}', '\"" + xid +
                   "\"') WHERE kind = 'backfill_range'");
  // Its checkpoint; who holds the range changes.
  const std::string saved =
      "SELECT (detail - 'holder' - 'lease_until' - 'backend' - 'backend_start')::text ";
  const std::string before = old_db.Value(saved + checkpoint).value_or("");
  std::string out;
  EXPECT_NE(CaptureCommand(command, out), 0) << out;
  EXPECT_NE(out.find("(transaction " + xid + ") is still open on new"), std::string::npos) << out;
  EXPECT_EQ(old_db.Value(saved + checkpoint), before) << "the checkpoint stays";
  EXPECT_EQ(old_db.Value("SELECT " + sweep + " " + checkpoint), xid);
  Exec(open, "COMMIT");
  ASSERT_EQ(CaptureCommand(command, out), 0) << out;
  EXPECT_NE(out.find("sweeps its last batch first"), std::string::npos) << out;
  EXPECT_EQ(new_db.Value("SELECT count(*) FROM channels_v2"), "20000");
}

// Killed while old records a batch's checkpoint (a lock holds it there):
// neither side has committed the batch, and nothing of it stays on new,
// not even the copy of a row whose delete waited for the batch.
TEST(BackfillAcrossServers, AKilledBackfillLeavesNothingOfABatchOldDidNotCommit) {
  TwoServers servers("backfill_held");
  ASSERT_TRUE(servers.new_cluster.ok());
  PgConn old_db = servers.Old();
  PgConn new_db = servers.New();
  std::string out;
  // The backfill pauses before its first batch while a session waits on
  // a lock (--max-lock-waits 0): pgshift_state is locked then, once it has
  // claimed its range, and the lock is let go.
  PgConn holder = servers.Old();
  Exec(holder, "CREATE TABLE side_lock (x int)");
  Exec(holder, "BEGIN; LOCK TABLE side_lock");
  PgConn waiter = servers.Old();
  ASSERT_EQ(PQsendQuery(waiter.get(), "SELECT count(*) FROM side_lock"), 1);
  const std::string log = servers.dir + "/log";
  const pid_t pid = StartInBackground(
      servers.Command("backfill") + " --batch 5000 --batch-seconds 0 --max-lock-waits 0", log);
  for (int i = 0; i < 200 && ReadFile(log).find("pausing:") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_NE(ReadFile(log).find("pausing:"), std::string::npos) << ReadFile(log);
  PgConn locker = servers.Old();
  Exec(locker, "BEGIN; LOCK TABLE pgshift_state IN SHARE MODE");
  Exec(holder, "COMMIT");
  while (PGresult* r = PQgetResult(waiter.get())) PQclear(r);
  const std::string held =
      "SELECT count(*) FROM pg_stat_activity WHERE datname = 'backfill_held' AND "
      "wait_event_type = 'Lock' AND query LIKE 'UPDATE pgshift_state SET detail = detail ||%'";
  for (int i = 0; i < 200 && old_db.Value(held) != "1"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(old_db.Value(held), "1") << ReadFile(log);
  // A delete of one of the batch's rows waits for the batch.
  PgConn deleter = servers.Old();
  ASSERT_EQ(PQsendQuery(deleter.get(), "DELETE FROM channels WHERE id = 7"), 1);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  WaitForExit(pid, 10000);
  // Its backend on old, still waiting for the lock, finds within a second
  // or two that the backfill is gone (client_connection_check_interval)
  // and rolls the batch back: the delete goes through while the lock is
  // still held.
  bool deleted = false;
  for (int i = 0; i < 200 && !deleted; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_EQ(PQconsumeInput(deleter.get()), 1);
    deleted = PQisBusy(deleter.get()) == 0;
  }
  EXPECT_TRUE(deleted) << "the killed backfill's backend still holds the batch's rows";
  Exec(locker, "COMMIT");
  while (PGresult* r = PQgetResult(deleter.get())) PQclear(r);
  EXPECT_EQ(old_db.Value("SELECT count(*) FROM channels WHERE id = 7"), "0");
  EXPECT_EQ(new_db.Value("SELECT count(*) FROM channels_v2"), "0") << ReadFile(log);
  ASSERT_EQ(CaptureCommand(servers.Command("backfill") + " --batch 5000", out), 0) << out;
  EXPECT_EQ(new_db.Value("SELECT count(*) FROM channels_v2 WHERE id = 7"), "0");
  EXPECT_EQ(new_db.Value("SELECT count(*) FROM channels_v2"), "19999");
}

// new refuses to commit a batch old has recorded (a deferred check here,
// with a SQLSTATE a batch is retried on before old commits): the run stops,
// and the next finds that copy never committed and copies the batch again.
TEST(BackfillAcrossServers, ABatchNewDidNotCommitIsCopiedAgain) {
  TwoServers servers("backfill_refused");
  ASSERT_TRUE(servers.new_cluster.ok());
  PgConn new_db = servers.New();
  Exec(new_db,
       "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION "
       "'new refuses this commit' USING ERRCODE = 'serialization_failure'; END $$;"
       "CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON channels_v2 DEFERRABLE "
       "INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.id = 7) EXECUTE FUNCTION refuse()");
  std::string out;
  EXPECT_NE(CaptureCommand(servers.Command("backfill") + " --batch 5000", out), 0) << out;
  EXPECT_NE(out.find("the batch's copy could not be committed on new"), std::string::npos) << out;
  EXPECT_EQ(out.find("retried"), std::string::npos) << "not retried past old's commit: " << out;
  EXPECT_EQ(new_db.Value("SELECT count(*) FROM channels_v2"), "0");
  Exec(new_db, "DROP TRIGGER refuse_commit ON channels_v2");
  ASSERT_EQ(CaptureCommand(servers.Command("backfill") + " --batch 5000", out), 0) << out;
  EXPECT_NE(out.find("copies its last batch again"), std::string::npos) << out;
  EXPECT_NE(out.find("done: 20000 rows read"), std::string::npos) << out;
  EXPECT_EQ(new_db.Value("SELECT count(*) FROM channels_v2"), "20000");
  ASSERT_EQ(CaptureCommand(servers.Command("verify"), out), 0) << out;
}

}  // namespace
}  // namespace pgshift::testing
