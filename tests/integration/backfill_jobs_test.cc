// backfill and verify shared by several workers (--jobs) and several
// commands, as on several machines: key ranges claimed under leases in
// pgshift_state. A killed command's ranges are taken over once their
// leases expire, from their last saved batch; a worker whose range was
// taken over undoes its batch; two verify commands share one run and each
// report the whole table. (Under load, every key kind: key_kinds_test.)
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>

#include "routing/state_schema.h"
#include "tests/integration/backfill_tables.h"

namespace pgshift::testing {
namespace {

constexpr const char* kRanges = "FROM pgshift_state WHERE kind = 'backfill_range'";

// Waits up to 20 s for `sql` on `db` to give `want`.
bool WaitFor(PgConn& db, const std::string& sql, const std::string& want) {
  for (int i = 0; i < 400; ++i) {
    if (db.Value(sql) == want) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// Waits up to 60 s for the log of a command started in the background to
// say `what`.
bool WaitForLog(const std::string& log, const std::string& what) {
  for (int i = 0; i < 1200; ++i) {
    if (ReadFile(log).find(what) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// A killed command's connections are gone: its ranges are taken over at
// once, not when their leases expire (an hour here: the command under
// `timeout` would fail first), each from its last saved batch.
TEST(BackfillJobs, AKilledCommandsRangesAreTakenOverAtOnce) {
  TwoServers servers("jobs_killed");
  ASSERT_TRUE(servers.new_cluster.ok());
  PgConn old_db = servers.Old();
  const std::string log = servers.dir + "/first.log";
  // Slow, so that it is killed in the middle of two ranges.
  const pid_t first = StartInBackground(servers.Command("backfill") +
                                            " --jobs 2 --batch 100 --batch-seconds 0 --rate 1000 "
                                            "--lease-seconds 3600",
                                        log);
  ASSERT_TRUE(WaitFor(old_db,
                      std::string("SELECT count(*) ") + kRanges +
                          " AND (detail->>'rows')::int > 0 AND detail->>'holder' IS NOT NULL",
                      "2"))
      << ReadFile(log);
  EXPECT_EQ(old_db.Value(std::string("SELECT count(*) ") + kRanges), "8") << "four a worker";
  ASSERT_EQ(kill(first, SIGKILL), 0);
  WaitForExit(first, 10000);
  std::string out;
  // status sums the ranges' checkpoints.
  CaptureCommand(PgshiftBinary() + " status --config " + servers.dir + "/two.toml", out);
  EXPECT_NE(out.find(" of 8 key ranges done"), std::string::npos) << out;
  ASSERT_EQ(CaptureCommand("timeout 120 " + servers.Command("backfill"), out), 0) << out;
  EXPECT_NE(out.find("8 key ranges"), std::string::npos) << "it joins the split\n" << out;
  EXPECT_NE(out.find("resumes after key"), std::string::npos) << out;
  EXPECT_EQ(
      old_db.Value(std::string("SELECT count(*) ") + kRanges + " AND detail->>'done' = 'true'"),
      "8");
  EXPECT_EQ(old_db.Value("SELECT detail->>'rows_read' FROM pgshift_state WHERE kind = 'backfill'"),
            "20000");
  PgConn new_db = servers.New();
  EXPECT_EQ(new_db.Value("SELECT count(*) FROM channels_v2"), "20000");
  ASSERT_EQ(CaptureCommand(servers.Command("verify"), out), 0) << out;
  EXPECT_NE(out.find(" 0 differences"), std::string::npos) << out;
}

// Another worker holds the range now (this one's lease had expired, say):
// the worker's next batch fails its check, is rolled back on both sides,
// and the worker goes on. That holder's connection is alive (it is the
// worker's own here), so the worker waits for its lease to expire, takes
// the range back and resumes from the last batch saved.
TEST(BackfillJobs, AWorkerWhoseRangeWasTakenOverUndoesItsBatchAndGoesOn) {
  TwoServers servers("jobs_taken");
  ASSERT_TRUE(servers.new_cluster.ok());
  PgConn old_db = servers.Old();
  const std::string log = servers.dir + "/backfill.log";
  const pid_t pid = StartInBackground(
      servers.Command("backfill") + " --batch 100 --batch-seconds 0 --rate 2000 --lease-seconds 2",
      log);
  ASSERT_TRUE(WaitFor(old_db, std::string("SELECT (detail->>'rows')::int > 0 ") + kRanges, "t"))
      << ReadFile(log);
  Exec(old_db, std::string("UPDATE pgshift_state SET detail = detail || "
                           "'{\"holder\":\"elsewhere:1:0\"}' WHERE kind = 'backfill_range'"));
  ASSERT_TRUE(WaitForLog(log, "done: 20000 rows read")) << ReadFile(log);
  WaitForExit(pid, 10000);
  const std::string said = ReadFile(log);
  EXPECT_NE(said.find("range 1 of 1 of public.channels is held by elsewhere:1:0 now"),
            std::string::npos)
      << said;
  EXPECT_NE(said.find("waiting for 1 ranges that other workers hold"), std::string::npos) << said;
  EXPECT_NE(said.find("resumes after key"), std::string::npos) << said;
  PgConn new_db = servers.New();
  EXPECT_EQ(new_db.Value("SELECT count(*) FROM channels_v2"), "20000");
  std::string out;
  ASSERT_EQ(CaptureCommand(servers.Command("verify"), out), 0) << out;
}

// An error that would come back on every try (new refuses a row) fails
// the command at once, naming it, and lets the range go: it is not taken
// for a range taken over, to be waited for and tried again.
TEST(BackfillJobs, ALastingErrorFailsTheCommandAndFreesItsRange) {
  TwoServers servers("jobs_error");
  ASSERT_TRUE(servers.new_cluster.ok());
  PgConn new_db = servers.New();
  Exec(new_db, "ALTER TABLE channels_v2 ADD CONSTRAINT no_777 CHECK (id <> 777)");
  std::string out;
  const int status =
      CaptureCommand("timeout 60 " + servers.Command("backfill") + " --jobs 2 --batch 100", out);
  EXPECT_NE(status, 0) << out;
  EXPECT_NE(status, 124) << "it waited instead of failing\n" << out;
  EXPECT_NE(out.find("no_777"), std::string::npos) << out;
  EXPECT_EQ(out.find("is held by"), std::string::npos) << out;
  PgConn old_db = servers.Old();
  EXPECT_EQ(old_db.Value(std::string("SELECT count(*) ") + kRanges +
                         " AND detail->>'holder' IS NOT NULL"),
            "0");
}

// An earlier pgshift kept one checkpoint per table: it becomes a plan of
// one range, and the backfill resumes from it.
TEST(BackfillJobs, AnEarlierCheckpointIsResumed) {
  TwoServers servers("jobs_upgrade");
  ASSERT_TRUE(servers.new_cluster.ok());
  PgConn old_db = servers.Old();
  Exec(old_db, routing::kCreateStateTable);
  Exec(old_db,
       "INSERT INTO pgshift_state (table_name, kind, detail) VALUES ('public.channels', "
       "'backfill_checkpoint', '{\"last_key\":[\"15000\"],\"rows\":15000,\"done\":false}')");
  std::string out;
  ASSERT_EQ(CaptureCommand(servers.Command("backfill"), out), 0) << out;
  EXPECT_NE(out.find("resumes after key 15000 (15000 rows read before)"), std::string::npos) << out;
  PgConn new_db = servers.New();
  EXPECT_EQ(new_db.Value("SELECT min(id)::text || ' ' || count(*) FROM channels_v2"), "15001 5000");
}

// Two verify commands at once, as from two machines: one run, split into
// ranges they share; each reports the whole table, and the run is
// recorded once.
TEST(VerifyJobs, TwoCommandsShareOneRunAndEachReportsTheWholeTable) {
  TwoServers servers("jobs_verify");
  ASSERT_TRUE(servers.new_cluster.ok());
  std::string out;
  ASSERT_EQ(CaptureCommand(servers.Command("backfill") + " --jobs 2", out), 0) << out;
  PgConn new_db = servers.New();
  Exec(new_db,
       "DELETE FROM channels_v2 WHERE id IN (1, 2, 3); UPDATE channels_v2 SET name = 'x' WHERE id "
       "= 15000; INSERT INTO channels_v2 VALUES (30000, 'extra', now())");
  const std::string command = servers.Command("verify") + " --jobs 2 --chunk 500";
  const std::string log = servers.dir + "/verify.log";
  const pid_t other = StartInBackground(command, log);
  EXPECT_EQ(CaptureCommand(command, out), 1) << out;
  ASSERT_TRUE(WaitForLog(log, "differences")) << ReadFile(log);
  WaitForExit(other, 10000);
  for (const std::string& report : {out, ReadFile(log)}) {
    EXPECT_NE(report.find("20000 rows in "), std::string::npos) << report;
    EXPECT_NE(report.find(", 5 differences"), std::string::npos) << report;
    EXPECT_NE(report.find("missing in new (3): 1 2 3"), std::string::npos) << report;
    EXPECT_NE(report.find("extra in new (1): 30000"), std::string::npos) << report;
    EXPECT_NE(report.find("different (1): 15000"), std::string::npos) << report;
  }
  PgConn old_db = servers.Old();
  EXPECT_EQ(old_db.Value("SELECT count(*) FROM pgshift_state WHERE kind = 'verify_range'"), "8");
  EXPECT_EQ(old_db.Value("SELECT count(*) || ' ' || max(detail->>'missing') FROM pgshift_state "
                         "WHERE kind = 'verify'"),
            "1 3");
  ASSERT_EQ(CaptureCommand(command + " --repair", out), 0) << out;
  EXPECT_NE(out.find("5 differences, repaired"), std::string::npos) << out;
  ASSERT_EQ(CaptureCommand(command, out), 0) << out;
  EXPECT_NE(out.find(" 0 differences"), std::string::npos) << out;
  EXPECT_EQ(old_db.Value("SELECT count(*) FROM pgshift_state WHERE kind = 'verify'"), "3");
}

// A range that takes longer than a lease (--rate slows it here) keeps its
// lease while its worker compares it: a second command waits for it
// rather than taking it over, and both report the whole table.
TEST(VerifyJobs, ALongRangeKeepsItsLease) {
  TwoServers servers("jobs_lease");
  ASSERT_TRUE(servers.new_cluster.ok());
  std::string out;
  ASSERT_EQ(CaptureCommand(servers.Command("backfill"), out), 0) << out;
  const std::string command =
      servers.Command("verify") + " --chunk 500 --rate 4000 --lease-seconds 2";
  const std::string log = servers.dir + "/first.log";
  const pid_t first = StartInBackground(command, log);
  PgConn old_db = servers.Old();
  ASSERT_TRUE(WaitFor(old_db,
                      "SELECT count(*) FROM pgshift_state WHERE kind = 'verify_range' AND "
                      "detail->>'holder' IS NOT NULL",
                      "1"));
  EXPECT_EQ(CaptureCommand(command, out), 0) << out;
  ASSERT_TRUE(WaitForLog(log, "differences")) << ReadFile(log);
  WaitForExit(first, 10000);
  for (const std::string& report : {out, ReadFile(log)}) {
    EXPECT_EQ(report.find("is held by"), std::string::npos) << report;
    EXPECT_NE(report.find("20000 rows in "), std::string::npos) << report;
  }
  EXPECT_NE(out.find("waiting for 1 ranges that other workers hold"), std::string::npos) << out;
}

}  // namespace
}  // namespace pgshift::testing
