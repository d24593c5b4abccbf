// The tables the backfill tests copy: channels on old, channels_v2 (title
// renamed name) on new, the configuration pairing them, and helpers.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"

namespace pgshift::testing {

inline std::string Schema(int rows) {
  return "DROP TABLE IF EXISTS channels, channels_v2, pgshift_state;"
         "CREATE TABLE channels (id serial PRIMARY KEY, title text NOT NULL,"
         "  updated_at timestamptz NOT NULL DEFAULT clock_timestamp());"
         "INSERT INTO channels (title) SELECT 'channel ' || g FROM generate_series(1, " +
         std::to_string(rows) + ") g;";
}
constexpr const char* kNewTable =
    "DROP TABLE IF EXISTS channels_v2;"
    "CREATE TABLE channels_v2 (id int PRIMARY KEY, name text NOT NULL, updated_at timestamptz "
    "NOT NULL);";
constexpr const char* kTables =
    "[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\nkey = [\"id\"]\n"
    "columns = { title = \"name\" }\nphase = \"dual-write\"\n";

// Rows in one table and not the other, both ways, counted with duplicates.
constexpr const char* kExceptAll =
    "SELECT (SELECT count(*) FROM (SELECT id, title, updated_at FROM channels EXCEPT ALL "
    "SELECT id, name, updated_at FROM channels_v2) a) + (SELECT count(*) FROM (SELECT id, name, "
    "updated_at FROM channels_v2 EXCEPT ALL SELECT id, title, updated_at FROM channels) b)";

inline void Exec(PgConn& db, const std::string& sql) {
  PgResult r = db.Exec(sql);
  ASSERT_TRUE(PQresultStatus(r.get()) == PGRES_COMMAND_OK ||
              PQresultStatus(r.get()) == PGRES_TUPLES_OK)
      << PQresultErrorMessage(r.get());
}

// Starts `command` in the background, logging to `log`; its pid.
inline pid_t StartInBackground(const std::string& command, const std::string& log) {
  std::string pid_text;
  EXPECT_EQ(CaptureCommand("(" + command + " > " + log + " 2>&1 & echo $!)", pid_text), 0);
  return static_cast<pid_t>(std::stoi(pid_text));
}

// Starts `command` (a backfill) in the background, logging to `log`, and
// waits until it says it waits for an older transaction (the test holds
// one open): it has committed a batch and not swept it. Its pid.
inline pid_t StartUntilItWaits(const std::string& command, const std::string& log) {
  const pid_t pid = StartInBackground(command, log);
  bool waiting = false;
  for (int i = 0; i < 200 && !waiting; ++i) {
    waiting =
        ReadFile(log).find("waiting for 1 transactions older than its writes") != std::string::npos;
    if (!waiting) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(waiting) << ReadFile(log);
  return pid;
}

// Kills `command` (a backfill) between a batch's commit and its sweep: a
// transaction of `writer`'s, older than the batch, holds it there while
// `meanwhile` runs; that transaction ends once the backfill is gone.
template <typename Meanwhile>
void KillBeforeItsSweep(PgConn& writer, const std::string& command, const std::string& log,
                        Meanwhile meanwhile) {
  Exec(writer,
       "CREATE TABLE IF NOT EXISTS side_writes (x int); BEGIN; INSERT INTO side_writes VALUES (1)");
  const pid_t pid = StartUntilItWaits(command + " --batch-seconds 0", log);
  if (::testing::Test::HasFailure()) return;
  meanwhile();
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  WaitForExit(pid, 10000);
  Exec(writer, "COMMIT");
}

// Across servers: old's database `db` (the shared cluster) holds channels
// with 20000 rows, a second cluster the empty channels_v2, and a
// configuration naming both.
struct TwoServers {
  explicit TwoServers(const std::string& db) : db(db) {
    PgConn admin(Cluster().ConnInfo("dbname=postgres"));
    admin.Ok("CREATE DATABASE " + db);
    PgConn old_side = Old();
    Exec(old_side, Schema(20000));
    PgConn new_side = New();
    Exec(new_side, kNewTable);
    WriteFile(dir + "/two.toml",
              "[backends.old]\nport = " + std::to_string(Cluster().port()) + "\ndbname = \"" + db +
                  "\"\nuser = \"postgres\"\nsslmode = \"disable\"\n[backends.new]\nport = " +
                  std::to_string(new_cluster.port()) +
                  "\ndbname = \"postgres\"\nuser = \"postgres\"\nsslmode = \"disable\"\n" +
                  kTables);
  }
  ~TwoServers() { RemoveTree(dir); }
  PgConn Old() const { return PgConn(Cluster().ConnInfo("dbname=" + db)); }
  PgConn New() const { return PgConn(new_cluster.ConnInfo("dbname=postgres")); }
  // `pgshift WHAT --config ... --table channels`.
  std::string Command(const std::string& what) const {
    return PgshiftBinary() + " " + what + " --config " + dir + "/two.toml --table channels";
  }

  const std::string db;
  PgCluster new_cluster;
  const std::string dir = MakeTempDir("pgshift-backfill");
};

}  // namespace pgshift::testing
