// pgshift backfill and verify against real PostgreSQL: a backfill of 200k
// rows while writes run through pgshift in dual-write, a backfill killed
// with SIGKILL and resumed, and verify finding and repairing injected
// differences, on one database (backfill_across_test.cc: across servers).
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <memory>
#include <random>
#include <thread>

#include "tests/integration/backfill_tables.h"
#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"

namespace pgshift::testing {
namespace {

constexpr int kRows = 200000;

class Backfill : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    PgConn admin(Cluster().ConnInfo("dbname=postgres"));
    admin.Ok("CREATE DATABASE backfill_one");
  }
  void SetUp() override {
    PgConn direct = Direct();
    ASSERT_TRUE(direct.ok()) << direct.error();
    Exec(direct, Schema(kRows) + kNewTable);
    proxy_ = std::make_unique<PgshiftProcess>(Cluster().port(), "",
                                              "dbname = \"backfill_one\"\nuser = \"postgres\"",
                                              kTables);
    ASSERT_TRUE(proxy_->ok()) << proxy_->LogEnd();
  }
  PgConn Direct() { return PgConn(Cluster().ConnInfo("dbname=backfill_one")); }
  std::string Command(const std::string& what) const {
    return PgshiftBinary() + " " + what + " --config " + proxy_->dir() + "/pgshift.toml --table channels";
  }

  std::unique_ptr<PgshiftProcess> proxy_;
};

TEST_F(Backfill, CopiesEverythingWhileWritesRunThroughPgshift) {
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0}, errors{0};
  std::thread load([&] {
    PgConn app(proxy_->ConnInfo("dbname=backfill_one"));
    std::mt19937 random(7);
    std::uniform_int_distribution<int> id(1, kRows);
    while (!stop.load()) {
      std::string sql;
      switch (random() % 3) {
        case 0: sql = "INSERT INTO channels (title) VALUES ('new')"; break;
        case 1:
          sql = "UPDATE channels SET title = title || '+', updated_at = clock_timestamp() WHERE id = " +
                std::to_string(id(random));
          break;
        default: sql = "DELETE FROM channels WHERE id = " + std::to_string(id(random)); break;
      }
      if (app.Ok(sql)) {
        ++writes;
      } else {
        ++errors;
      }
    }
  });
  std::string out;
  int status = CaptureCommand(Command("backfill") + " --batch 2000", out);
  stop = true;
  load.join();
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("done: "), std::string::npos) << out;
  EXPECT_GT(writes.load(), 50) << "the load ran alongside";
  EXPECT_EQ(errors.load(), 0);

  ASSERT_EQ(CaptureCommand(Command("verify"), out), 0) << out;
  EXPECT_NE(out.find(" 0 differences"), std::string::npos) << out;
  EXPECT_EQ(Direct().Value(kExceptAll), "0") << "an independent comparison agrees";
  EXPECT_EQ(Direct().Value("SELECT count(*) FROM pgshift_state WHERE kind = 'verify' AND "
                           "(detail->>'missing')::int + (detail->>'extra')::int + "
                           "(detail->>'different')::int = 0"),
            "1")
      << "the verify is recorded";
}

TEST_F(Backfill, AKilledBackfillResumesFromItsCheckpoint) {
  std::string pid_text;
  ASSERT_EQ(
      CaptureCommand("(" + Command("backfill") + " --batch 1000 --batch-seconds 0 --rate 40000 > " +
                         proxy_->dir() + "/backfill.log 2>&1 & echo $!)",
                     pid_text),
      0);
  pid_t pid = static_cast<pid_t>(std::stoi(pid_text));
  // Wait for a few batches, then kill it without warning.
  for (int i = 0; i < 200; ++i) {
    if (ReadFile(proxy_->dir() + "/backfill.log").find("rows=20000 ") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto copied = Direct().Value("SELECT count(*) FROM channels_v2");
  ASSERT_TRUE(copied);
  EXPECT_GE(std::stoi(*copied), 20000);
  EXPECT_LT(std::stoi(*copied), kRows) << "killed before the end";
  auto checkpoint = Direct().Value(
      "SELECT detail->'last_key'->>0 FROM pgshift_state WHERE kind = 'backfill_range'");
  ASSERT_TRUE(checkpoint);
  EXPECT_EQ(*checkpoint, Direct().Value("SELECT max(id) FROM channels_v2"))
      << "the checkpoint commits with its batch";

  std::string out;
  ASSERT_EQ(CaptureCommand(Command("backfill") + " --batch 5000", out), 0) << out;
  EXPECT_NE(out.find("resumes after key " + *checkpoint), std::string::npos) << out;
  EXPECT_NE(out.find("copied"), std::string::npos) << out;
  EXPECT_EQ(Direct().Value(kExceptAll), "0");
  ASSERT_EQ(CaptureCommand(Command("backfill"), out), 0) << out;
  EXPECT_NE(out.find("was already copied"), std::string::npos) << out;
}

// A transaction that has written but runs no statement holds no snapshot,
// yet may hold a mirrored delete that missed a batch's copy (its statement
// began before the batch committed): each batch waits for it to end.
TEST_F(Backfill, EachBatchWaitsForTransactionsThatHaveWritten) {
  PgConn writer = Direct();
  Exec(writer,
       "CREATE TABLE IF NOT EXISTS side_writes (x int); BEGIN; INSERT INTO side_writes "
       "VALUES (1)");
  const std::string log = proxy_->dir() + "/backfill.log";
  const pid_t pid = StartUntilItWaits(Command("backfill") + " --batch 50000", log);
  EXPECT_EQ(kill(pid, 0), 0) << "still running";
  EXPECT_EQ(ReadFile(log).find("done:"), std::string::npos) << ReadFile(log);
  Exec(writer, "COMMIT");
  for (int i = 0; i < 600 && kill(pid, 0) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(ReadFile(log).find("done:"), std::string::npos) << ReadFile(log);
  EXPECT_EQ(Direct().Value(kExceptAll), "0");
  Exec(writer, "DROP TABLE side_writes");
}

// Killed after a batch committed but before its sweep ran (held here by a
// transaction older than the batch): a row deleted meanwhile, whose copy
// only that sweep would remove, is swept when the backfill resumes.
TEST_F(Backfill, AKilledBackfillSweepsItsLastBatchWhenItResumes) {
  PgConn writer = Direct();
  PgConn direct = Direct();
  KillBeforeItsSweep(
      writer, Command("backfill") + " --batch 50000", proxy_->dir() + "/backfill.log", [&] {
        // Deleted on old alone (as a delete whose mirror
        // missed the copy would leave it).
        Exec(direct, "DELETE FROM channels WHERE id = 7");
        EXPECT_EQ(direct.Value("SELECT count(*) FROM channels_v2 WHERE id = 7"), "1");
      });
  ASSERT_FALSE(HasFailure());
  std::string out;
  ASSERT_EQ(CaptureCommand(Command("backfill") + " --batch 50000", out), 0) << out;
  EXPECT_NE(out.find("sweeps its last batch first"), std::string::npos) << out;
  EXPECT_EQ(direct.Value("SELECT count(*) FROM channels_v2 WHERE id = 7"), "0");
  EXPECT_EQ(direct.Value(kExceptAll), "0");
  Exec(writer, "DROP TABLE side_writes");
}

TEST_F(Backfill, VerifyFindsEachKindOfDifferenceAndRepairFixesThem) {
  std::string out;
  ASSERT_EQ(CaptureCommand(Command("backfill") + " --batch 50000", out), 0) << out;
  PgConn direct = Direct();
  Exec(direct,
       "DELETE FROM channels_v2 WHERE id IN (3, 150000);"
       "INSERT INTO channels_v2 VALUES (900001, 'stray', now());"
       "UPDATE channels_v2 SET name = 'tampered' WHERE id = 77777;"
       "UPDATE channels_v2 SET updated_at = updated_at + interval '1 second' WHERE id = 5;");
  EXPECT_EQ(CaptureCommand(Command("verify") + " --json --chunk 5000", out), 1) << out;
  EXPECT_NE(out.find("\"missing\":[\"150000\",\"3\"]"), std::string::npos) << out;
  EXPECT_NE(out.find("\"extra\":[\"900001\"]"), std::string::npos) << out;
  EXPECT_NE(out.find("\"different\":[\"5\",\"77777\"]"), std::string::npos) << out;

  ASSERT_EQ(CaptureCommand(Command("verify") + " --repair", out), 0) << out;
  EXPECT_NE(out.find("5 differences, repaired"), std::string::npos) << out;
  EXPECT_EQ(direct.Value(kExceptAll), "0");
  ASSERT_EQ(CaptureCommand(Command("verify"), out), 0) << out;
  EXPECT_NE(out.find(" 0 differences"), std::string::npos) << out;
}

// A mirrored insert of a key the batch is copying, committed while the
// batch waits on it: the batch's plain insert fails (23505), runs again
// with ON CONFLICT DO NOTHING, and the mirrored row stays.
TEST_F(Backfill, AMirroredInsertCommittedDuringTheBatchWinsItsKey) {
  PgConn mirror = Direct();
  Exec(mirror, "BEGIN; INSERT INTO channels_v2 VALUES (150000, 'from the mirror', now())");
  std::string pid_text;
  const std::string log = proxy_->dir() + "/backfill.log";
  ASSERT_EQ(
      CaptureCommand("(" + Command("backfill") + " --batch 200000 > " + log + " 2>&1 & echo $!)",
                     pid_text),
      0);
  pid_t pid = static_cast<pid_t>(std::stoi(pid_text));
  PgConn watch = Direct();
  bool waiting = false;
  for (int i = 0; i < 400 && !waiting; ++i) {
    waiting = watch.Value(
                  "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                  "AND query LIKE 'WITH batch%'") == "1";
    if (!waiting) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_TRUE(waiting) << ReadFile(log);
  Exec(mirror, "COMMIT");
  for (int i = 0; i < 600 && ReadFile(log).find("done:") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid, SIGKILL);  // were it still running
  const std::string out = ReadFile(log);
  EXPECT_NE(out.find("done: 200000 rows read, 199999 copied"), std::string::npos) << out;
  EXPECT_EQ(Direct().Value("SELECT name FROM channels_v2 WHERE id = 150000"), "from the mirror");
}

// A key of two columns: copied, compared and repaired by both.
TEST_F(Backfill, TwoColumnKeysAreCopiedVerifiedAndRepaired) {
  PgConn direct = Direct();
  Exec(direct,
       "DROP TABLE IF EXISTS memberships, memberships_v2;"
       "CREATE TABLE memberships (channel_id int, user_id int, role text,"
       "  PRIMARY KEY (channel_id, user_id));"
       "INSERT INTO memberships SELECT c, u, 'member' FROM generate_series(1, 30) c,"
       "  generate_series(1, 100) u;"
       "CREATE TABLE memberships_v2 (channel_id int, user_id int, role text,"
       "  PRIMARY KEY (channel_id, user_id));");
  const std::string config = proxy_->dir() + "/memberships.toml";
  std::string text = ReadFile(proxy_->dir() + "/pgshift.toml");
  text += "\n[[tables]]\nname = \"memberships\"\nnew_name = \"memberships_v2\"\n"
          "key = [\"channel_id\", \"user_id\"]\nphase = \"dual-write\"\n";
  WriteFile(config, text);
  const std::string command = " --config " + config + " --table memberships";
  std::string out;
  ASSERT_EQ(CaptureCommand(PgshiftBinary() + " backfill --batch 700" + command, out), 0) << out;
  EXPECT_EQ(direct.Value("SELECT count(*) FROM memberships_v2"), "3000");
  EXPECT_NE(out.find("done: 3000 rows read"), std::string::npos)
      << "each batch goes on after the last key of the one before, every column of it\n"
      << out;
  Exec(direct,
       "DELETE FROM memberships_v2 WHERE (channel_id, user_id) IN ((2, 7), (30, 100));"
       "INSERT INTO memberships_v2 VALUES (99, 1, 'stray');"
       "UPDATE memberships_v2 SET role = 'owner' WHERE (channel_id, user_id) = (5, 10);");
  EXPECT_EQ(CaptureCommand(PgshiftBinary() + " verify --json --chunk 500" + command, out), 1)
      << out;
  EXPECT_NE(out.find("\"missing\":[\"(2,7)\",\"(30,100)\"]"), std::string::npos) << out;
  EXPECT_NE(out.find("\"extra\":[\"(99,1)\"]"), std::string::npos) << out;
  EXPECT_NE(out.find("\"different\":[\"(5,10)\"]"), std::string::npos) << out;
  ASSERT_EQ(CaptureCommand(PgshiftBinary() + " verify --repair" + command, out), 0) << out;
  const std::string except_all =
      "SELECT (SELECT count(*) FROM (SELECT * FROM memberships EXCEPT ALL SELECT * FROM "
      "memberships_v2) a) + (SELECT count(*) FROM (SELECT * FROM memberships_v2 EXCEPT ALL "
      "SELECT * FROM memberships) b)";
  EXPECT_EQ(direct.Value(except_all), "0");
  EXPECT_EQ(direct.Value("SELECT count(*) FROM memberships_v2"), "3000");
  // More keys than one repair statement takes, and NULLs.
  Exec(direct, "UPDATE memberships SET role = NULL WHERE user_id = 50;"
               "DELETE FROM memberships_v2 WHERE channel_id <= 15;");
  ASSERT_EQ(CaptureCommand(PgshiftBinary() + " verify --repair" + command, out), 0) << out;
  EXPECT_NE(out.find("1515 differences, repaired"), std::string::npos) << out;
  EXPECT_EQ(direct.Value(except_all), "0");
  Exec(direct, "DROP TABLE memberships, memberships_v2");
}

TEST_F(Backfill, ClearErrorsForWhatCannotBeDone) {
  std::string out;
  EXPECT_NE(CaptureCommand(PgshiftBinary() + " backfill --config " + proxy_->dir() +
                               "/pgshift.toml --table nosuch",
                           out),
            0);
  EXPECT_NE(out.find("table public.nosuch is not in the configuration's [[tables]]"),
            std::string::npos)
      << out;
  // A key that allows NULL names no row for sure: refused, saying which column.
  Exec(*std::make_unique<PgConn>(Cluster().ConnInfo("dbname=backfill_one")),
       "DROP TABLE IF EXISTS tags, tags_v2;"
       "CREATE TABLE tags (channel_id int NOT NULL, label text, UNIQUE (channel_id, label));"
       "CREATE TABLE tags_v2 (LIKE tags INCLUDING ALL);"
       "INSERT INTO tags VALUES (1, 'a'), (1, NULL), (2, NULL);");
  const std::string tags = proxy_->dir() + "/tags.toml";
  WriteFile(tags, ReadFile(proxy_->dir() + "/pgshift.toml") +
                      "\n[[tables]]\nname = \"tags\"\nnew_name = \"tags_v2\"\n"
                      "key = [\"channel_id\", \"label\"]\nphase = \"dual-write\"\n");
  EXPECT_NE(CaptureCommand(PgshiftBinary() + " backfill --config " + tags + " --table tags", out),
            0);
  EXPECT_NE(out.find("key column label of public.tags allows NULL: a key must name every row"),
            std::string::npos)
      << out;
  Exec(*std::make_unique<PgConn>(Cluster().ConnInfo("dbname=backfill_one")),
       "DROP TABLE tags, tags_v2; DROP TABLE channels_v2");
  EXPECT_NE(CaptureCommand(Command("verify"), out), 0);
  EXPECT_NE(out.find("table public.channels_v2 does not exist on backend old"), std::string::npos)
      << out;
}

TEST_F(Backfill, GuardRailsWantACleanVerifyAndTheHistoryIsKept) {
  int admin_port = FreePort();
  const std::string proxy_settings = "admin_listen = \"127.0.0.1:" + std::to_string(admin_port) + "\"";
  const std::string backend = "dbname = \"backfill_one\"\nuser = \"postgres\"";
  const std::string users = "[[users]]\nname = \"postgres\"\nadmin = true\n";
  auto phase = [&](const std::string& p, const std::string& extra = "") {
    std::string t = kTables;
    t.replace(t.find("dual-write"), 10, p);
    return users + t + extra;
  };
  proxy_ = std::make_unique<PgshiftProcess>(Cluster().port(), proxy_settings, backend,
                                            phase("dual-write"));
  ASSERT_TRUE(proxy_->ok()) << proxy_->LogEnd();
  EXPECT_NE(proxy_->log().find("event=phase_state table=public.channels phase=dual-write"),
            std::string::npos)
      << proxy_->LogEnd();

  proxy_->RewriteConfig(proxy_settings, backend, phase("shadow-read"));
  std::string verdict = proxy_->Reload();
  EXPECT_NE(verdict.find("public.channels cannot move to shadow-read: no verify with zero "
                         "differences was recorded since it entered dual-write"),
            std::string::npos)
      << verdict;
  std::string out;
  EXPECT_EQ(CaptureCommand(Command("verify"), out), 1) << "nothing copied yet: " << out;
  EXPECT_NE(proxy_->Reload().find("event=config_rejected"), std::string::npos);

  ASSERT_EQ(CaptureCommand(Command("backfill") + " --batch 50000", out), 0) << out;
  ASSERT_EQ(CaptureCommand(Command("verify"), out), 0) << out;
  verdict = proxy_->Reload();
  EXPECT_NE(verdict.find("event=config_reloaded"), std::string::npos) << verdict;

  // Back to dual-write (always allowed), and forward again: the verify now
  // predates the latest entry into dual-write, so only force moves it.
  proxy_->RewriteConfig(proxy_settings, backend, phase("dual-write"));
  EXPECT_NE(proxy_->Reload().find("event=config_reloaded"), std::string::npos);
  proxy_->RewriteConfig(proxy_settings, backend, phase("shadow-read"));
  EXPECT_NE(proxy_->Reload().find("event=config_rejected"), std::string::npos);
  proxy_->RewriteConfig(proxy_settings, backend, phase("shadow-read", "force = true\n"));
  EXPECT_NE(proxy_->Reload().find("event=config_reloaded"), std::string::npos);
  EXPECT_NE(proxy_->log().find("event=guard_rail_overridden table=public.channels"),
            std::string::npos);

  ASSERT_EQ(CaptureCommand("psql -X -h 127.0.0.1 -p " + std::to_string(admin_port) +
                               " -U postgres -d pgshift -At -F '|' -c 'SHOW HISTORY'",
                           out),
            0)
      << out;
  for (const char* event :
       {"|public.channels|phase|{\"to\": \"shadow-read\", \"from\": \"dual-write\", \"forced\": true",
        "|public.channels|verify|", "|public.channels|backfill|"}) {
    EXPECT_NE(out.find(event), std::string::npos) << event << " in " << out;
  }
  // A restarted pgshift says where each table stands.
  ASSERT_EQ(proxy_->Stop(), 0);
  PgshiftProcess restarted(Cluster().port(), "", backend, phase("shadow-read"));
  ASSERT_TRUE(restarted.ok()) << restarted.LogEnd();
  EXPECT_NE(restarted.log().find("event=phase_state table=public.channels phase=shadow-read since="),
            std::string::npos)
      << restarted.LogEnd();
}

// pgshift status and SHOW STATUS: where the table stands, each guard rail
// of its next step, and the command that moves it on, at each step of the
// runbook; the command it gives is the one that then works.
TEST_F(Backfill, StatusSaysWhereTheTableStandsAndWhatToRunNext) {
  int admin_port = FreePort();
  const std::string proxy_settings =
      "admin_listen = \"127.0.0.1:" + std::to_string(admin_port) + "\"";
  const std::string backend = "dbname = \"backfill_one\"\nuser = \"postgres\"";
  const std::string users = "[[users]]\nname = \"postgres\"\nadmin = true\n";
  auto phase = [&](const std::string& p) {
    std::string t = kTables;
    t.replace(t.find("dual-write"), 10, p);
    return users + t;
  };
  proxy_ = std::make_unique<PgshiftProcess>(Cluster().port(), proxy_settings, backend,
                                            phase("dual-write"));
  ASSERT_TRUE(proxy_->ok()) << proxy_->LogEnd();
  auto show_status = [&] {
    std::string out;
    EXPECT_EQ(CaptureCommand("psql -X -h 127.0.0.1 -p " + std::to_string(admin_port) +
                                 " -U postgres -d pgshift -At -F '|' -c 'SHOW STATUS'",
                             out),
              0)
        << out;
    return out;
  };

  std::string out;
  ASSERT_EQ(CaptureCommand(Command("status"), out), 0) << out;
  for (const char* line :
       {"public.channels: dual-write since ", "backfill: not started (old holds about ",
        "largest key 200000)", "verify:   none recorded", "next:     shadow-read",
        "[met] no write reaches it unseen",
        "[not met] a clean verify since dual-write: no verify with zero differences",
        "run:      pgshift backfill --config "}) {
    EXPECT_NE(out.find(line), std::string::npos) << line << " in " << out;
  }

  ASSERT_EQ(CaptureCommand(Command("backfill") + " --batch 50000", out), 0) << out;
  ASSERT_EQ(CaptureCommand(Command("status"), out), 0) << out;
  EXPECT_NE(out.find("backfill: done: 200000 rows"), std::string::npos) << out;
  EXPECT_NE(out.find("run:      pgshift verify --config "), std::string::npos) << out;
  ASSERT_EQ(CaptureCommand(Command("verify"), out), 0) << out;
  ASSERT_EQ(CaptureCommand(Command("status") + " --json", out), 0) << out;
  for (const char* field :
       {"\"phase\":\"dual-write\"", "\"done\":true", "\"largest_key\":\"200000\"",
        "\"verify\":{\"at\":", "\"missing\":0,\"extra\":0,\"different\":0",
        "{\"rail\":\"a clean verify since dual-write\",\"state\":\"met\"",
        "\"command\":\"set phase = \\\"shadow-read\\\" for public.channels in "}) {
    EXPECT_NE(out.find(field), std::string::npos) << field << " in " << out;
  }
  out = show_status();
  EXPECT_NE(out.find("public.channels|dual-write|"), std::string::npos) << out;
  EXPECT_NE(out.find("clean, 200000 rows"), std::string::npos) << out;
  EXPECT_NE(out.find("|shadow-read|[met] no write reaches it unseen; [met] a clean verify"),
            std::string::npos)
      << out;

  // As it says: the phase in the file, and a reload.
  proxy_->RewriteConfig(proxy_settings, backend, phase("shadow-read"));
  EXPECT_NE(proxy_->Reload().find("event=config_reloaded"), std::string::npos);
  out = show_status();
  EXPECT_NE(out.find("public.channels|shadow-read|"), std::string::npos) << out;
  EXPECT_NE(out.find("|0 compared, 0 persistent mismatches (rate 0) since it entered shadow-read|"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("[not met] shadow reads compared, few mismatched: 0 compared "
                     "(min_shadow_compared "),
            std::string::npos)
      << out;
  // Without coordination the CLI asks the running instance for its counts.
  ASSERT_EQ(CaptureCommand(Command("status"), out), 0) << out;
  EXPECT_NE(out.find("[not met] shadow reads compared, few mismatched: 0 compared "
                     "(min_shadow_compared 1000)"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("run:      let the application read through pgshift: only 0 shadow reads "
                     "were compared since it entered shadow-read"),
            std::string::npos)
      << out;
}

}  // namespace
}  // namespace pgshift::testing
