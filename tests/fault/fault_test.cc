// Faults under load, across two servers: pgbench's TPC-B tables all in
// dual-write (history without a key), pgshift killed with SIGKILL or the new
// server stopped at once (pg_ctl -m immediate) while transactions commit,
// aimed at the two-phase window on purpose: a deferred trigger on old slows
// each COMMIT while the test arms it, and the fault is sent as soon as new's
// pg_prepared_xacts shows a mirror prepared. Afterwards nothing acknowledged
// is lost and old equals new, row for row, with no prepared transaction
// left behind.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "tests/support/pg.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"

namespace pgshift::testing {
namespace {

using namespace std::chrono_literals;

// New's copies of pgbench's tables (abalance renamed balance).
constexpr const char* kNewSchema =
    "DROP TABLE IF EXISTS accounts_v2, branches_v2, tellers_v2, history_v2;"
    "CREATE TABLE accounts_v2 (aid int PRIMARY KEY, bid int, balance int, filler char(84));"
    "CREATE TABLE branches_v2 (bid int PRIMARY KEY, bbalance int, filler char(88));"
    "CREATE TABLE tellers_v2 (tid int PRIMARY KEY, bid int, tbalance int, filler char(84));"
    "CREATE TABLE history_v2 (tid int, bid int, aid int, delta int, mtime timestamp, "
    "filler char(22));";

// On old: each COMMIT that updated a branch sleeps while fault_arm says so.
constexpr const char* kSlowCommit =
    "CREATE TABLE fault_arm (armed bool NOT NULL); INSERT INTO fault_arm VALUES (false);"
    "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
    "IF (SELECT armed FROM fault_arm) THEN PERFORM pg_sleep(0.4); END IF; RETURN NULL; END$$;"
    "CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE ON pgbench_branches "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();";

// What must be equal on both sides, table by table: an md5 of every row in
// order (history, which has no key, by all its columns).
const std::vector<std::pair<std::string, std::string>> kSameRows = {
    {"SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts",
     "SELECT md5(string_agg(aid || ':' || balance, ',' ORDER BY aid)) FROM accounts_v2"},
    {"SELECT md5(string_agg(bid || ':' || bbalance, ',' ORDER BY bid)) FROM pgbench_branches",
     "SELECT md5(string_agg(bid || ':' || bbalance, ',' ORDER BY bid)) FROM branches_v2"},
    {"SELECT md5(string_agg(tid || ':' || tbalance, ',' ORDER BY tid)) FROM pgbench_tellers",
     "SELECT md5(string_agg(tid || ':' || tbalance, ',' ORDER BY tid)) FROM tellers_v2"},
    {"SELECT count(*) || md5(string_agg(concat_ws(':', tid, bid, aid, delta, mtime), ',' "
     "ORDER BY tid, bid, aid, delta, mtime)) FROM pgbench_history",
     "SELECT count(*) || md5(string_agg(concat_ws(':', tid, bid, aid, delta, mtime), ',' "
     "ORDER BY tid, bid, aid, delta, mtime)) FROM history_v2"},
};

class Faults : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Durable commits, as production runs them (the test clusters are
    // otherwise set up for speed): a crash must not take back a commit, nor
    // reuse the transaction id of one whose records never reached the WAL.
    old_ = new PgCluster("max_connections = 100\nsynchronous_commit = on");
    new_ = new PgCluster(
        "max_prepared_transactions = 20\nmax_connections = 100\n"
        "synchronous_commit = on");
  }
  static void TearDownTestSuite() {
    delete old_;
    delete new_;
    old_ = new_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(old_->ok() && new_->ok());
    std::string out;
    ASSERT_EQ(CaptureCommand("pgbench -i -s 1 -q -h 127.0.0.1 -p " + std::to_string(old_->port()) +
                                 " -U postgres postgres 2>&1",
                             out),
              0)
        << out;
    ASSERT_TRUE(
        Old().Ok("DROP TABLE IF EXISTS fault_arm, pgshift_divergence CASCADE; "
                 "DROP FUNCTION IF EXISTS slow_commit() CASCADE;"));
    ASSERT_TRUE(Old().Ok(kSlowCommit));
    PgConn fresh = New();
    ASSERT_TRUE(fresh.Ok(kNewSchema)) << fresh.error();
    ASSERT_TRUE(fresh.Ok("DROP TABLE IF EXISTS pgshift_divergence"));
    // Through psql's COPY: the two servers do not see each other.
    for (const auto& [from, to] :
         std::vector<std::pair<std::string, std::string>>{{"pgbench_accounts", "accounts_v2"},
                                                          {"pgbench_branches", "branches_v2"},
                                                          {"pgbench_tellers", "tellers_v2"}}) {
      ASSERT_EQ(CaptureCommand("psql -X -q -h 127.0.0.1 -p " + std::to_string(old_->port()) +
                                   " -U postgres postgres -c '\\copy " + from +
                                   " TO STDOUT' | psql -X -q -h 127.0.0.1 -p " +
                                   std::to_string(new_->port()) + " -U postgres postgres -c " +
                                   "'\\copy " + to + " FROM STDIN' 2>&1",
                               out),
                0)
          << out;
    }
    ASSERT_EQ(Differences(), "") << "the copy";
  }
  void TearDown() override {
    proxy_.reset();
    // A test that failed midway may leave the old server's trigger armed
    // or new stopped.
    new_->Restart();
    Old().Ok("UPDATE fault_arm SET armed = false");
  }

  PgConn Old() { return PgConn(old_->ConnInfo()); }
  PgConn New() { return PgConn(new_->ConnInfo()); }

  void StartProxy(const std::string& on_mirror_error) {
    std::string tables;
    for (const auto& [name, renamed, key] :
         std::vector<std::tuple<std::string, std::string, std::string>>{
             {"pgbench_accounts", "accounts_v2", "aid"},
             {"pgbench_branches", "branches_v2", "bid"},
             {"pgbench_tellers", "tellers_v2", "tid"},
             {"pgbench_history", "history_v2", ""}}) {
      tables += "[[tables]]\nname = \"" + name + "\"\nnew_name = \"" + renamed +
                "\"\nphase = \"dual-write\"\non_mirror_error = \"" + on_mirror_error + "\"\n";
      if (!key.empty()) tables += "key = [\"" + key + "\"]\n";
      if (name == "pgbench_accounts") tables += "columns = { abalance = \"balance\" }\n";
    }
    proxy_ = std::make_unique<PgshiftProcess>(
        old_->port(),
        "deployment = \"faults\"\nrecovery_interval = 0.2\nrecovery_min_age = 0\n"
        "mirror_lock_timeout = 1\nconnect_timeout = 2",
        "dbname = \"postgres\"\nuser = \"postgres\"",
        "[backends.new]\nhost = \"127.0.0.1\"\nport = " + std::to_string(new_->port()) +
            "\ndbname = \"postgres\"\nuser = \"postgres\"\n" + tables);
    ASSERT_TRUE(proxy_->ok()) << proxy_->LogEnd();
  }

  // pgbench's TPC-B through pgshift for `seconds`, in the background.
  std::thread Pgbench(int seconds, std::string& output, int& status) {
    const std::string command = "pgbench -n -c 4 -j 2 -T " + std::to_string(seconds) +
                                " -h 127.0.0.1 -p " + std::to_string(proxy_->port()) +
                                " -U postgres postgres 2>&1";
    return std::thread([command, &output, &status] { status = CaptureCommand(command, output); });
  }

  // Arms the slow COMMIT and waits (up to 10 s) until new holds a prepared
  // mirror: a COMMIT is then between the mirror's PREPARE and its COMMIT
  // PREPARED.
  bool AwaitTwoPhaseWindow() {
    if (!Old().Ok("UPDATE fault_arm SET armed = true")) return false;
    for (int i = 0; i < 1000; ++i) {
      if (New().Value("SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'pgshift_%'") != "0") {
        return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  void Disarm() { Old().Ok("UPDATE fault_arm SET armed = false"); }

  // Waits (up to 15 s) until recovery has left no prepared transaction on new.
  std::string PreparedLeft() {
    std::string left;
    for (int i = 0; i < 300; ++i) {
      left = New()
                 .Value("SELECT coalesce(string_agg(gid, ','), '') FROM pg_prepared_xacts")
                 .value_or("?");
      if (left.empty()) break;
      std::this_thread::sleep_for(50ms);
    }
    return left;
  }

  // The tables whose rows differ between old and new ("" when none do).
  std::string Differences() {
    std::string differ;
    PgConn old = Old(), fresh = New();
    for (const auto& [on_old, on_new] : kSameRows) {
      if (old.Value(on_old) != fresh.Value(on_new))
        differ += on_old.substr(on_old.rfind(' ') + 1) + " ";
    }
    return differ;
  }

  static PgCluster* old_;
  static PgCluster* new_;
  std::unique_ptr<PgshiftProcess> proxy_;
};
PgCluster* Faults::old_ = nullptr;
PgCluster* Faults::new_ = nullptr;

// pgshift is killed four times under load, twice at a random moment and
// twice with a COMMIT in the two-phase window; each time a new pgshift
// starts. Whatever was prepared on new follows what old did with it.
TEST_F(Faults, PgshiftKilledUnderLoadLeavesOldEqualToNew) {
  for (int round = 0; round < 4; ++round) {
    StartProxy("fail");
    std::string output;
    int status = 0;
    std::thread load = Pgbench(20, output, status);
    if (round % 2 == 1) {
      EXPECT_TRUE(AwaitTwoPhaseWindow()) << "no mirror was ever prepared";
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(800 + 300 * round));
    }
    proxy_->Kill();
    load.join();  // its clients lose their connections
    Disarm();
    EXPECT_NE(output.find("processed"), std::string::npos) << output;
  }
  StartProxy("fail");  // recovers at start what the last one left
  EXPECT_EQ(PreparedLeft(), "") << proxy_->LogEnd();
  EXPECT_EQ(Differences(), "");
  EXPECT_NE(Old().Value("SELECT count(*) FROM pgbench_history"), "0") << "the load ran";
}

// The new server stops at once with a COMMIT in the two-phase window and
// comes back 1.5 s later, under on_mirror_error = "log": the load never sees
// an error, every key that differs afterwards is in the divergence log, and
// verify --repair makes every table equal, history (which has no key) as a
// multiset of rows.
TEST_F(Faults, NewStoppedUnderLoadWithLogLosesNothingTheLogCannotRepair) {
  StartProxy("log");
  std::string output;
  int status = -1;
  std::thread load = Pgbench(8, output, status);
  ASSERT_TRUE(AwaitTwoPhaseWindow());
  ASSERT_TRUE(new_->Stop());
  Disarm();
  std::this_thread::sleep_for(1500ms);
  ASSERT_TRUE(new_->Restart());
  load.join();
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(output.find("error"), std::string::npos) << output;
  EXPECT_EQ(PreparedLeft(), "") << proxy_->LogEnd();
  // Each account that differs is logged.
  PgResult differing = New().Exec("SELECT aid, balance FROM accounts_v2 ORDER BY aid");
  Rows new_rows = RowsOf(differing.get());
  PgResult old_result = Old().Exec("SELECT aid, abalance FROM pgbench_accounts ORDER BY aid");
  Rows old_rows = RowsOf(old_result.get());
  ASSERT_EQ(new_rows.size(), old_rows.size());
  std::string logged = Old()
                           .Value(
                               "SELECT ',' || string_agg(key, ',') || ',' FROM "
                               "pgshift_divergence WHERE table_name = 'public.pgbench_accounts'")
                           .value_or("");
  int differ = 0;
  for (size_t i = 0; i < old_rows.size(); ++i) {
    if (old_rows[i] == new_rows[i]) continue;
    ++differ;
    EXPECT_NE(logged.find("," + old_rows[i][0] + ","), std::string::npos)
        << "account " << old_rows[i][0] << " differs and is not logged";
  }
  for (const char* table :
       {"pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"}) {
    std::string out;
    CaptureCommand(PgshiftBinary() + " verify --repair --config " + proxy_->dir() +
                       "/pgshift.toml --table " + table + " 2>&1",
                   out);
  }
  EXPECT_EQ(Differences().find("pgbench_accounts"), std::string::npos) << differ << " differed";
  EXPECT_EQ(Differences().find("pgbench_branches"), std::string::npos);
  EXPECT_EQ(Differences().find("pgbench_tellers"), std::string::npos);
  EXPECT_EQ(Differences().find("pgbench_history"), std::string::npos);
}

// Old's backend dies (SIGKILL: no FATAL is sent) while the client's COMMIT
// is in flight there, its mirror prepared on new. The client cannot know
// whether it committed: it gets 08006, as a direct connection's client
// would, never a definite error; new's prepared mirror is left to
// recovery, which follows what old did (here, after old's crash restart,
// the transaction never committed: rolled back).
TEST_F(Faults, OldLostDuringCommitIsAnUnknownOutcomeLeftToRecovery) {
  StartProxy("fail");
  PgConn client(proxy_->ConnInfo("dbname=postgres"));
  ASSERT_TRUE(client.Ok("BEGIN"));
  ASSERT_TRUE(client.Ok("UPDATE pgbench_branches SET bbalance = bbalance + 7 WHERE bid = 1"))
      << client.error();
  ASSERT_TRUE(Old().Ok("UPDATE fault_arm SET armed = true"));
  ASSERT_TRUE(PQsendQuery(client.get(), "COMMIT"));
  ASSERT_TRUE(AwaitTwoPhaseWindow());
  ASSERT_EQ(kill(PQbackendPID(client.get()), SIGKILL), 0) << "old's backend, by its pid";
  PgResult commit(PQgetResult(client.get()));
  EXPECT_EQ(ErrorOf(commit.get()).sqlstate, "08006") << ErrorOf(commit.get()).message;
  // Old restarts after a backend's crash; then recovery rolls new's back.
  for (int i = 0; i < 200 && !Old().ok(); ++i) std::this_thread::sleep_for(50ms);
  Disarm();
  EXPECT_EQ(PreparedLeft(), "") << proxy_->LogEnd();
  EXPECT_EQ(Differences(), "") << Old().Value("SELECT bbalance FROM pgbench_branches").value_or("?")
                               << " on old, "
                               << New().Value("SELECT bbalance FROM branches_v2").value_or("?")
                               << " on new";
  EXPECT_NE(proxy_->log().find("action=\"rolled back\""), std::string::npos) << proxy_->LogEnd();
}

// One client's TPC-B transaction (pgbench's), as separate statements;
// "" when it committed, else the error.
std::string TpcbTransaction(PgConn& c, std::mt19937& random) {
  const int aid = std::uniform_int_distribution<int>(1, 100000)(random);
  const int tid = std::uniform_int_distribution<int>(1, 10)(random);
  const int delta = std::uniform_int_distribution<int>(-5000, 5000)(random);
  const std::string a = std::to_string(aid), t = std::to_string(tid), d = std::to_string(delta);
  for (const std::string& sql :
       {std::string("BEGIN"),
        "UPDATE pgbench_accounts SET abalance = abalance + " + d + " WHERE aid = " + a,
        "SELECT abalance FROM pgbench_accounts WHERE aid = " + a,
        "UPDATE pgbench_tellers SET tbalance = tbalance + " + d + " WHERE tid = " + t,
        "UPDATE pgbench_branches SET bbalance = bbalance + " + d + " WHERE bid = 1",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (" + t + ", 1, " + a +
            ", " + d + ", CURRENT_TIMESTAMP)",
        std::string("END")}) {
    PgResult r = c.Exec(sql);
    ExecStatusType s = PQresultStatus(r.get());
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) continue;
    std::string error = c.ok() ? ErrorOf(r.get()).sqlstate + " " + ErrorOf(r.get()).message
                               : std::string("connection lost");
    if (c.ok()) c.Ok("ROLLBACK");
    return error.empty() ? "failed" : error;
  }
  return "";
}

// Under on_mirror_error = "fail" the new server stops at once mid-load:
// while it is down writes fail with an error that says why, they succeed
// again within seconds of its return with no restart or reload of pgshift,
// and old equals new at the end with no repair.
TEST_F(Faults, NewStoppedUnderLoadWithFailRefusesThenRecovers) {
  StartProxy("fail");
  std::atomic<bool> running{true};
  std::atomic<int> committed{0}, committed_after_return{0};
  std::atomic<bool> back{false};
  std::vector<std::string> errors;
  std::mutex errors_mutex;
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937 random(c);
      std::unique_ptr<PgConn> conn;
      while (running) {
        if (!conn || !conn->ok())
          conn = std::make_unique<PgConn>(proxy_->ConnInfo("dbname=postgres"));
        std::string error = TpcbTransaction(*conn, random);
        if (error.empty()) {
          ++committed;
          if (back) ++committed_after_return;
        } else {
          std::lock_guard lock(errors_mutex);
          errors.push_back(error);
        }
      }
    });
  }
  ASSERT_TRUE(AwaitTwoPhaseWindow());
  ASSERT_TRUE(new_->Stop());
  Disarm();
  std::this_thread::sleep_for(1500ms);
  const int before_return = committed;
  ASSERT_TRUE(new_->Restart());
  back = true;
  for (int i = 0; i < 100 && committed_after_return < 20; ++i) std::this_thread::sleep_for(100ms);
  running = false;
  for (std::thread& t : clients) t.join();
  EXPECT_GE(committed_after_return, 20)
      << "writes succeed again once new is back; " << before_return << " committed before";
  ASSERT_FALSE(errors.empty()) << "new was down: mirrored writes must have failed";
  for (const std::string& e : errors) {
    EXPECT_TRUE(e.find("server new") != std::string::npos || e.find("25P02") == 0)
        << "a clear error names the mirror server: " << e;
  }
  EXPECT_EQ(PreparedLeft(), "") << proxy_->LogEnd();
  EXPECT_EQ(Differences(), "") << proxy_->LogEnd();
}

}  // namespace
}  // namespace pgshift::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
