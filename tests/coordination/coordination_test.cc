// Several pgshift instances, one migration (SPEC section 9): the phases live
// in the old database, every instance holds a lease, and a flip is fenced.
// Real instances in front of two real servers, counters incremented through
// all of them while the phase moves back and forth: no client error, no
// increment lost, old equal to new. A flip that cannot drain is aborted and
// nothing changes; an instance cut off from the coordinator stops serving
// mirrored tables and the flip goes on without it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "tests/support/pg.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"

namespace pgshift::testing {
namespace {

constexpr int kRows = 10;

// Forwards TCP connections to a port until Cut(): from then on it forwards
// nothing, in either direction, and new connections are accepted and left
// silent (a network that drops everything). Restore() forwards again for
// new connections.
class TcpRelay {
 public:
  explicit TcpRelay(int target) : target_(target), port_(FreePort()) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    listen(listener_, 16);
    accepter_ = std::thread([this] { Accept(); });
  }
  ~TcpRelay() {
    stop_ = true;
    accepter_.join();
    for (std::thread& t : pumps_) t.join();
    close(listener_);
  }
  int port() const { return port_; }
  void Cut() { cut_ = true; }
  void Restore() { cut_ = false; }

 private:
  void Accept() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int client = accept(listener_, nullptr, nullptr);
      if (client < 0) continue;
      if (cut_) {
        silent_.push_back(client);  // accepted, never answered
        continue;
      }
      int server = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(target_));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        close(client);
        close(server);
        continue;
      }
      pumps_.emplace_back([this, client, server] { Pump(client, server); });
    }
    for (int fd : silent_) close(fd);
  }
  void Pump(int a, int b) {
    char buffer[65536];
    bool open = true;
    while (open && !stop_) {
      if (cut_) {  // holds whatever comes, forwards nothing
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      if (poll(p, 2, 50) <= 0) continue;
      for (int i = 0; i < 2 && open; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t n = read(p[i].fd, buffer, sizeof buffer);
        if (n <= 0 || write(i == 0 ? b : a, buffer, static_cast<size_t>(n)) != n) open = false;
      }
    }
    close(a);
    close(b);
  }

  const int target_;
  const int port_;
  int listener_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<bool> cut_{false};
  std::vector<int> silent_;
  std::vector<std::thread> pumps_;
  std::thread accepter_;
};

// Clients incrementing counters through every instance, half in explicit
// transactions that stay open a little while and increment totals too,
// half on their own; what was acknowledged is counted.
class CounterLoad {
 public:
  void Start(const std::vector<std::string>& conninfos, int per_instance) {
    for (const std::string& conninfo : conninfos) {
      for (int i = 0; i < per_instance; ++i) {
        threads_.emplace_back([this, conninfo, i] { Run(conninfo, i); });
      }
    }
  }
  void Stop() {
    stop_ = true;
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }
  int64_t acknowledged() const { return acknowledged_.load(); }
  // Acknowledged explicit transactions, which increment totals too.
  int64_t totals() const { return totals_.load(); }
  std::vector<std::string> errors() {
    std::lock_guard<std::mutex> lock(mutex_);
    return errors_;
  }

 private:
  void Run(const std::string& conninfo, int seed) {
    PgConn c(conninfo);
    if (!c.ok()) return Error("connect: " + c.error());
    std::mt19937 random(static_cast<unsigned>(seed * 7919 + conninfo.size()));
    bool in_transaction = seed % 2 == 0;
    while (!stop_) {
      const std::string id = std::to_string(1 + static_cast<int>(random() % kRows));
      const std::string update = "UPDATE counters SET n = n + 1 WHERE id = " + id;
      if (!in_transaction) {
        PgResult r = c.Exec(update);
        if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return Error(ErrorOf(r.get()).message);
        ++acknowledged_;
        continue;
      }
      PgResult begin = c.Exec("BEGIN");
      PgResult r = c.Exec(update);
      if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
        Error(ErrorOf(r.get()).sqlstate + " " + ErrorOf(r.get()).message);
        c.Exec("ROLLBACK");
        return;
      }
      // Long enough for a flip to find it in flight; then a second table
      // of the same flip.
      PgResult pause = c.Exec("SELECT pg_sleep(0.02)");
      PgResult total = c.Exec("UPDATE totals SET n = n + 1 WHERE id = " + id);
      if (PQresultStatus(total.get()) != PGRES_COMMAND_OK) {
        Error(ErrorOf(total.get()).sqlstate + " " + ErrorOf(total.get()).message);
        c.Exec("ROLLBACK");
        return;
      }
      PgResult commit = c.Exec("COMMIT");
      if (PQresultStatus(commit.get()) != PGRES_COMMAND_OK ||
          std::string(PQcmdStatus(commit.get())) != "COMMIT") {
        return Error("COMMIT: " + ErrorOf(commit.get()).message);
      }
      ++acknowledged_;
      ++totals_;
    }
  }
  void Error(const std::string& what) {
    std::lock_guard<std::mutex> lock(mutex_);
    errors_.push_back(what);
  }

  std::atomic<bool> stop_{false};
  std::atomic<int64_t> acknowledged_{0};
  std::atomic<int64_t> totals_{0};
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::vector<std::string> errors_;
};

class Coordination : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    old_ = new PgCluster("max_prepared_transactions = 20");
    new_ = new PgCluster("max_prepared_transactions = 20");
  }
  static void TearDownTestSuite() {
    delete old_;
    delete new_;
  }

  void SetUp() override {
    static int tests = 0;
    db_ = "coordination_" + std::to_string(++tests);
    for (auto [cluster, suffix] : {std::pair{old_, ""}, std::pair{new_, "_v2"}}) {
      PgConn admin(cluster->ConnInfo("dbname=postgres"));
      ASSERT_TRUE(admin.Ok("CREATE DATABASE " + db_)) << admin.error();
      PgConn c(cluster->ConnInfo("dbname=" + db_));
      for (std::string table : {"counters", "totals"}) {
        table += suffix;
        ASSERT_TRUE(c.Ok("CREATE TABLE " + table + " (id int PRIMARY KEY, n bigint NOT NULL);" +
                         "INSERT INTO " + table + " SELECT g, 0 FROM generate_series(1, " +
                         std::to_string(kRows) + ") g"))
            << c.error();
      }
    }
  }

  // The [coordination] and the table, in `phase`; `coordinator_port`, when
  // given, is where this instance reaches the coordinator.
  std::string Toml(const std::string& id, const std::string& phase, int coordinator_port = 0) {
    return "[[users]]\nname = \"postgres\"\nadmin = true\n\n[coordination]\nenabled = true\n"
           "instance_id = \"" +
           id + "\"\nlease_timeout = 2\ncutover_timeout = 2\npoll_interval = 0.2\n" +
           (coordinator_port ? "port = " + std::to_string(coordinator_port) + "\n" : "") +
           "\n[backends.new]\nhost = \"127.0.0.1\"\nport = " + std::to_string(new_->port()) +
           "\ndbname = \"" + db_ + "\"\nuser = \"postgres\"\n\n" + Table("counters", phase) +
           (with_totals_ ? Table("totals", phase) : "");
  }
  std::string Table(const std::string& name, const std::string& phase) {
    return "[[tables]]\nname = \"" + name + "\"\nnew_name = \"" + name +
           "_v2\"\nkey = [\"id\"]\nphase = \"" + phase + "\"\n" + table_extra_ + "\n";
  }
  std::string ProxySettings(int metrics_port, int admin_port) {
    return "metrics_listen = \"127.0.0.1:" + std::to_string(metrics_port) +
           "\"\nadmin_listen = \"127.0.0.1:" + std::to_string(admin_port) +
           "\"\nrecovery_interval = 0.2\nrecovery_min_age = 0\n";
  }
  std::string OldSettings() { return "dbname = \"" + db_ + "\"\nuser = \"postgres\""; }

  struct Instance {
    std::string id;
    int metrics_port = FreePort();
    int admin_port = FreePort();
    int coordinator_port = 0;
    PgConn Console() const {
      return PgConn("host=127.0.0.1 port=" + std::to_string(admin_port) +
                    " dbname=pgshift user=postgres sslmode=disable");
    }
    std::unique_ptr<PgshiftProcess> process;
  };
  Instance& Start(const std::string& id, const std::string& phase, int coordinator_port = 0) {
    auto instance = std::make_unique<Instance>();
    instance->id = id;
    instance->coordinator_port = coordinator_port;
    instance->process = std::make_unique<PgshiftProcess>(
        old_->port(), ProxySettings(instance->metrics_port, instance->admin_port), OldSettings(),
        Toml(id, phase, coordinator_port));
    EXPECT_TRUE(instance->process->ok()) << instance->process->LogEnd();
    instances_.push_back(std::move(instance));
    return *instances_.back();
  }
  // Edits `instance`'s file to `phase` and reloads it: its verdict's line.
  std::string Flip(Instance& instance, const std::string& phase) {
    instance.process->RewriteConfig(ProxySettings(instance.metrics_port, instance.admin_port),
                                    OldSettings(),
                                    Toml(instance.id, phase, instance.coordinator_port));
    return instance.process->Reload(20000);
  }
  // The phase `instance` serves the table under, from its metrics.
  std::string PhaseOf(const Instance& instance) {
    std::string text =
        HttpExchange(instance.metrics_port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    for (const char* phase : {"old-only", "dual-write", "shadow-read", "new-primary", "new-only"}) {
      if (text.find("pgshift_table_phase{table=\"public.counters\",phase=\"" + std::string(phase) +
                    "\"} 1") != std::string::npos) {
        return phase;
      }
    }
    return "unknown";
  }
  // Within 10 s (a cut-off instance may first wait out a login that hung).
  bool AllServe(const std::string& phase) {
    for (int i = 0; i < 200; ++i) {
      bool all = true;
      for (const auto& instance : instances_) all = all && PhaseOf(*instance) == phase;
      if (all) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  PgConn Old() { return PgConn(old_->ConnInfo("dbname=" + db_)); }
  PgConn New() { return PgConn(new_->ConnInfo("dbname=" + db_)); }
  std::string Sum(PgConn& c, const std::string& table) {
    return c.Value("SELECT coalesce(sum(n), 0) FROM " + table).value_or("?");
  }
  Rows Counters(PgConn& c, const std::string& table) {
    PgResult r = c.Exec("SELECT id, n FROM " + table + " ORDER BY id");
    return RowsOf(r.get());
  }

  // Shadow comparisons of the table counted by `instance`, from its metrics.
  int64_t Compared(const Instance& instance) {
    std::string text =
        HttpExchange(instance.metrics_port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    std::string key = "pgshift_table_shadow_compared_total{table=\"public.counters\"} ";
    size_t at = text.find(key);
    return at == std::string::npos ? -1 : std::stoll(text.substr(at + key.size()));
  }
  // `pgshift phase` on `instance`'s file: its exit status and output.
  int PhaseCommand(const Instance& instance, const std::string& phase, std::string& output) {
    return CaptureCommand(PgshiftBinary() + " phase --config " + instance.process->dir() +
                              "/pgshift.toml --table counters --to " + phase,
                          output);
  }

  static PgCluster* old_;
  static PgCluster* new_;
  std::string table_extra_ = "force = true\n";  // the table's other settings
  bool with_totals_ = true;  // the files of instances started next configure totals
  std::string db_;
  std::vector<std::unique_ptr<Instance>> instances_;
};

PgCluster* Coordination::old_ = nullptr;
PgCluster* Coordination::new_ = nullptr;

TEST_F(Coordination, FlipsUnderLoadThroughThreeInstancesLoseNoIncrement) {
  Instance& a = Start("a", "dual-write");
  Start("b", "dual-write");
  Start("c", "dual-write");
  ASSERT_TRUE(AllServe("dual-write"));
  CounterLoad load;
  std::vector<std::string> conninfos;
  for (const auto& instance : instances_) {
    conninfos.push_back(instance->process->ConnInfo("dbname=" + db_));
  }
  load.Start(conninfos, 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  for (const char* phase : {"shadow-read", "new-primary", "shadow-read", "new-primary"}) {
    std::string verdict = Flip(a, phase);
    EXPECT_NE(verdict.find("config_reloaded"), std::string::npos) << phase << ": " << verdict;
    EXPECT_TRUE(AllServe(phase)) << phase;
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
  }
  load.Stop();
  EXPECT_EQ(load.errors(), std::vector<std::string>{});
  EXPECT_GT(load.acknowledged(), 0);
  PgConn old_side = Old();
  PgConn new_side = New();
  EXPECT_EQ(Sum(old_side, "counters"), std::to_string(load.acknowledged()));
  EXPECT_EQ(Sum(new_side, "counters_v2"), std::to_string(load.acknowledged()));
  EXPECT_EQ(Counters(old_side, "counters"), Counters(new_side, "counters_v2"));
  EXPECT_EQ(Sum(old_side, "totals"), std::to_string(load.totals()));
  EXPECT_EQ(Sum(new_side, "totals_v2"), std::to_string(load.totals()));
  EXPECT_EQ(Counters(old_side, "totals"), Counters(new_side, "totals_v2"));
  // Each flip's record (one per table) names the instances that took part.
  PgConn record = Old();
  EXPECT_EQ(record.Value("SELECT count(*) FROM pgshift_state WHERE kind = 'phase' AND "
                         "detail->'instances' = '[\"a\", \"b\", \"c\"]'::jsonb"),
            "8");
  EXPECT_EQ(record.Value("SELECT phase FROM pgshift_phases WHERE table_name = 'public.counters'"),
            "new-primary");
  // What the application sent, by shape, from every instance: each flushes
  // its own within a round; together they count every increment.
  const std::string shape =
      "FROM pgshift_fingerprints WHERE query LIKE 'UPDATE counters SET n = n + $_ WHERE id = $_'";
  const std::string expected = std::to_string(load.acknowledged());
  std::string flushed;
  for (int i = 0; i < 100 && flushed != expected; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    flushed = record.Value("SELECT sum(executions) " + shape).value_or("");
  }
  EXPECT_EQ(flushed, expected);
  EXPECT_EQ(record.Value("SELECT count(DISTINCT instance_id) || ' ' || min(tables) || ' ' || "
                         "bool_and(writes) " +
                         shape),
            "3 public.counters true");
  // The dry-run of the next flip replays the whole fleet's statements.
  std::string plan;
  EXPECT_EQ(CaptureCommand(PgshiftBinary() + " plan --config " + a.process->dir() +
                               "/pgshift.toml --table counters --to new-only",
                           plan),
            0)
      << plan;
  EXPECT_NE(plan.find("public.counters: new-primary -> new-only\nrecorded: every instance's, "
                      "flushed to pgshift_fingerprints\n"),
            std::string::npos)
      << plan;
  EXPECT_NE(plan.find("rewritten (write, " + expected + " seen, last "), std::string::npos) << plan;
  EXPECT_NE(plan.find("): UPDATE counters SET n = n + $1 WHERE id = $2\n  served by new\n"),
            std::string::npos)
      << plan;
  // A shape last seen a month ago (a monthly job's, or one the application
  // stopped sending) still counts, unless --since leaves it out; then the
  // plan says how many it left out.
  ASSERT_TRUE(record.Ok(
      "INSERT INTO pgshift_fingerprints (run, instance_id, fingerprint, query, tables, writes, "
      "executions, refused, last_seen) VALUES ('gone', 'a', 'f-gone', 'SELECT id, n FROM counters "
      "WHERE id = $1', 'public.counters', false, 5, 0, now() - interval '30 days')"));
  const std::string plan_command = PgshiftBinary() + " plan --config " + a.process->dir() +
                                   "/pgshift.toml --table counters --to new-only";
  EXPECT_EQ(CaptureCommand(plan_command + " --since 168h", plan), 0) << plan;
  EXPECT_EQ(plan.find("SELECT id, n FROM counters"), std::string::npos) << plan;
  EXPECT_NE(plan.find("flushed to pgshift_fingerprints; 1 shape last seen before "),
            std::string::npos)
      << plan;
  EXPECT_NE(plan.find(" left out (--since 168h)\n"), std::string::npos) << plan;
  EXPECT_EQ(CaptureCommand(plan_command, plan), 0) << plan;
  EXPECT_EQ(plan.find("left out"), std::string::npos) << plan;
  EXPECT_NE(plan.find("(read, 5 seen, last "), std::string::npos) << plan;
  EXPECT_NE(plan.find("SELECT id, n FROM counters WHERE id = $1"), std::string::npos) << plan;
}

TEST_F(Coordination, AFlipThatCannotDrainIsAbortedAndNothingChanges) {
  Instance& a = Start("a", "dual-write");
  Instance& b = Start("b", "dual-write");
  ASSERT_TRUE(AllServe("dual-write"));
  PgConn open(b.process->ConnInfo("dbname=" + db_));
  ASSERT_TRUE(open.Ok("BEGIN"));
  ASSERT_TRUE(open.Ok("UPDATE counters SET n = n + 1 WHERE id = 1"));
  std::string verdict = Flip(a, "shadow-read");
  EXPECT_NE(verdict.find("config_rejected"), std::string::npos) << verdict;
  EXPECT_NE(verdict.find("aborted"), std::string::npos) << verdict;
  EXPECT_NE(verdict.find("instance b"), std::string::npos) << verdict;
  EXPECT_NE(verdict.find("in a transaction on public.counters"), std::string::npos) << verdict;
  EXPECT_TRUE(AllServe("dual-write"));
  PgConn state = Old();
  EXPECT_EQ(state.Value("SELECT phase || ' ' || coalesce(flip::text, 'none') FROM pgshift_phases "
                        "WHERE table_name = 'public.counters'"),
            "dual-write none");
  EXPECT_EQ(state.Value("SELECT detail->>'to' FROM pgshift_state WHERE kind = 'flip_aborted' "
                        "AND table_name = 'public.counters'"),
            "shadow-read");
  // The transaction that held it goes on, under the phase it began in.
  EXPECT_TRUE(open.Ok("COMMIT")) << open.error();
  PgConn old_side = Old();
  PgConn new_side = New();
  EXPECT_EQ(Counters(old_side, "counters"), Counters(new_side, "counters_v2"));
  EXPECT_EQ(Sum(old_side, "counters"), "1");
  // A client that goes away inside its transaction holds nothing either.
  {
    PgConn gone(b.process->ConnInfo("dbname=" + db_));
    ASSERT_TRUE(gone.Ok("BEGIN"));
    ASSERT_TRUE(gone.Ok("UPDATE counters SET n = n + 1 WHERE id = 1"));
  }
  // Drained now, the same flip goes through (from b's console this time).
  PgConn console = b.Console();
  EXPECT_TRUE(console.Ok("SET PHASE counters TO shadow-read")) << console.error();
  EXPECT_TRUE(AllServe("shadow-read"));
  PgResult instances = console.Exec("SHOW INSTANCES");
  Rows rows = RowsOf(instances.get());
  ASSERT_EQ(rows.size(), 2u) << console.error();
  EXPECT_EQ(rows[0][0], "a");
  EXPECT_EQ(rows[1][0], "b");
  EXPECT_EQ(rows[1][5], "yes");  // live
}

// Two processes under one id would acknowledge flips for each other: the
// second is refused at start, naming the first. A clean exit gives the
// lease up.
TEST_F(Coordination, TwoInstancesCannotShareAnId) {
  Instance& a = Start("a", "dual-write");
  ASSERT_TRUE(AllServe("dual-write"));
  const std::string first = ReadFile(a.process->dir() + "/pgshift.toml");
  const std::string port = std::to_string(a.process->port());
  std::string second = first;
  second.replace(second.find("127.0.0.1:" + port), 10 + port.size(),
                 "127.0.0.1:" + std::to_string(FreePort()));
  const std::string path = a.process->dir() + "/second.toml";
  WriteFile(path, second);
  std::string output;
  EXPECT_NE(CaptureCommand(PgshiftBinary() + " serve --config " + path, output), 0);
  EXPECT_NE(output.find("coordination.instance_id \\\"a\\\" is held by the instance at"),
            std::string::npos)
      << output;
  EXPECT_EQ(a.process->Stop(), 0);
  PgConn old_side = Old();
  EXPECT_EQ(old_side.Value("SELECT lease_expires <= now() FROM pgshift_instances WHERE "
                           "instance_id = 'a'"),
            "t")
      << "a clean exit gives the lease up";
}

// An instance whose file lacks a table would serve it straight to old and
// acknowledge its flip all the same: the flip is refused, naming it.
TEST_F(Coordination, AFlipOfATableALiveInstanceLacksIsRefused) {
  Instance& a = Start("a", "dual-write");
  with_totals_ = false;
  Start("b", "dual-write");
  ASSERT_TRUE(AllServe("dual-write"));
  PgConn old_side = Old();
  std::string tables;
  for (int i = 0; i < 100 && tables != "public.counters"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    tables =
        old_side.Value("SELECT tables FROM pgshift_instances WHERE instance_id = 'b'").value_or("");
  }
  ASSERT_EQ(tables, "public.counters");
  PgConn console = a.Console();
  EXPECT_FALSE(console.Ok("SET PHASE totals TO shadow-read"));
  EXPECT_NE(console.error().find("instance b does not configure public.totals"), std::string::npos)
      << console.error();
  EXPECT_EQ(old_side.Value("SELECT phase FROM pgshift_phases WHERE table_name = 'public.totals'"),
            "dual-write");
  EXPECT_TRUE(console.Ok("SET PHASE counters TO shadow-read")) << console.error();
  EXPECT_TRUE(AllServe("shadow-read"));
}

// An instance whose file lacks a table the fleet has in a mirrored phase
// refuses statements on it (on old alone they would bypass the mirror),
// and serves it, mirrored, once its file names the table.
TEST_F(Coordination, AnInstanceWhoseFileLacksAMigratingTableRefusesIt) {
  Start("a", "dual-write");
  with_totals_ = false;
  Instance& b = Start("b", "dual-write");
  ASSERT_TRUE(AllServe("dual-write"));
  PgConn app(b.process->ConnInfo("dbname=" + db_));
  PgResult refused = app.Exec("UPDATE totals SET n = n + 1 WHERE id = 1");
  PgError error = ErrorOf(refused.get());
  EXPECT_EQ(error.sqlstate, "57P03");
  EXPECT_NE(error.message.find("public.totals is in dual-write in the coordinated migration"),
            std::string::npos)
      << error.message;
  EXPECT_TRUE(app.Ok("UPDATE counters SET n = n + 1 WHERE id = 1")) << app.error();
  with_totals_ = true;
  EXPECT_NE(Flip(b, "dual-write").find("event=config_reloaded"), std::string::npos)
      << b.process->LogEnd();
  EXPECT_TRUE(app.Ok("UPDATE totals SET n = n + 1 WHERE id = 1")) << app.error();
  PgConn old_side = Old();
  PgConn new_side = New();
  EXPECT_EQ(Sum(old_side, "totals"), "1");
  EXPECT_EQ(Sum(new_side, "totals_v2"), "1");
  EXPECT_EQ(Sum(old_side, "counters"), "1");
  EXPECT_EQ(Sum(new_side, "counters_v2"), "1");
}

// A transaction that touched only tables a flip left alone goes on under
// the new phases when it reaches the flipped table afterwards.
TEST_F(Coordination, ATransactionOnAnotherTableGoesOnUnderTheNewPhaseAfterAFlip) {
  Instance& a = Start("a", "dual-write");
  ASSERT_TRUE(AllServe("dual-write"));
  PgConn app(a.process->ConnInfo("dbname=" + db_));
  ASSERT_TRUE(app.Ok("BEGIN"));
  ASSERT_TRUE(app.Ok("UPDATE totals SET n = n + 1 WHERE id = 1")) << app.error();
  PgConn console = a.Console();
  ASSERT_TRUE(console.Ok("SET PHASE counters TO shadow-read")) << console.error();
  EXPECT_TRUE(AllServe("shadow-read"));
  EXPECT_TRUE(app.Ok("UPDATE counters SET n = n + 1 WHERE id = 1")) << app.error();
  EXPECT_TRUE(app.Ok("COMMIT")) << app.error();
  PgConn old_side = Old();
  PgConn new_side = New();
  EXPECT_EQ(Sum(old_side, "counters") + Sum(old_side, "totals"), "11");
  EXPECT_EQ(Sum(new_side, "counters_v2") + Sum(new_side, "totals_v2"), "11");
}

// pgshift_instances as the first coordinating pgshift made it (no run, no
// tables) is brought up to date, and the fleet works on it.
TEST_F(Coordination, AnInstancesTableFromAnEarlierVersionIsUpgraded) {
  PgConn old_side = Old();
  ASSERT_TRUE(old_side.Ok(
      "CREATE TABLE pgshift_instances (instance_id text PRIMARY KEY, address text NOT NULL, "
      "version text NOT NULL, generation bigint NOT NULL DEFAULT 0, lease_expires timestamptz "
      "NOT NULL, sessions int NOT NULL DEFAULT 0, acknowledged bigint NOT NULL DEFAULT 0, "
      "holding text, started_at timestamptz NOT NULL DEFAULT now())"))
      << old_side.error();
  Instance& a = Start("a", "dual-write");
  Start("b", "dual-write");
  ASSERT_TRUE(AllServe("dual-write"));
  PgConn console = a.Console();
  EXPECT_TRUE(console.Ok("SET PHASE counters TO shadow-read")) << console.error();
  EXPECT_TRUE(AllServe("shadow-read"));
  EXPECT_EQ(
      old_side.Value("SELECT string_agg(instance_id || ' ' || tables, '; ' ORDER BY instance_id) "
                     "FROM pgshift_instances"),
      "a public.counters,public.totals; b public.counters,public.totals");
}

TEST_F(Coordination, ACutOffInstanceStopsServingMirroredTablesAndTheFlipGoesOnWithoutIt) {
  TcpRelay relay(old_->port());
  Instance& a = Start("a", "dual-write");
  Instance& c = Start("c", "dual-write", relay.port());
  ASSERT_TRUE(AllServe("dual-write"));
  PgConn client(c.process->ConnInfo("dbname=" + db_));
  ASSERT_TRUE(client.Ok("UPDATE counters SET n = n + 1 WHERE id = 2")) << client.error();
  relay.Cut();
  // Within lease_timeout (2 s) it refuses: its own lease ends three
  // quarters of it after its last renewal, which came before the cut.
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  PgResult refused = client.Exec("UPDATE counters SET n = n + 1 WHERE id = 2");
  EXPECT_EQ(ErrorOf(refused.get()).sqlstate, "57P03");
  EXPECT_NE(ErrorOf(refused.get())
                .message.find("cannot confirm the migration phase of "
                              "public.counters (dual-write)"),
            std::string::npos)
      << ErrorOf(refused.get()).message;
  // A table pgshift does not migrate is served as ever.
  EXPECT_EQ(client.Value("SELECT 1"), "1");
  // Its lease has expired on the coordinator too: the flip goes on without it.
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  std::string verdict = Flip(a, "shadow-read");
  EXPECT_NE(verdict.find("config_reloaded"), std::string::npos) << verdict;
  PgConn state = Old();
  EXPECT_EQ(state.Value("SELECT detail->>'instances' FROM pgshift_state WHERE kind = 'phase' "
                        "ORDER BY id DESC LIMIT 1"),
            "[\"a\"]");
  EXPECT_EQ(PhaseOf(c), "dual-write");
  PgResult still = client.Exec("UPDATE counters SET n = n + 1 WHERE id = 2");
  EXPECT_EQ(ErrorOf(still.get()).sqlstate, "57P03");
  // Back in touch, it takes the new phase before it serves the table again.
  relay.Restore();
  EXPECT_TRUE(AllServe("shadow-read")) << c.process->LogEnd();
  EXPECT_TRUE(client.Ok("UPDATE counters SET n = n + 1 WHERE id = 2")) << client.error();
  PgConn old_side = Old();
  PgConn new_side = New();
  EXPECT_EQ(Counters(old_side, "counters"), Counters(new_side, "counters_v2"));
  EXPECT_EQ(Sum(old_side, "counters"), "2");
}

TEST_F(Coordination, TheGuardRailJudgesEveryInstancesShadowReadsAndKeepsThemPastARestart) {
  table_extra_ = "shadow_sample = 1.0\nmin_shadow_compared = 20\n";
  Instance& a = Start("a", "shadow-read");
  Instance& b = Start("b", "shadow-read");
  ASSERT_TRUE(AllServe("shadow-read"));
  auto read_through = [&](const Instance& instance, int times) {
    PgConn client(instance.process->ConnInfo("dbname=" + db_));
    for (int i = 0; i < times; ++i) {
      ASSERT_EQ(client.Value("SELECT n FROM counters WHERE id = 1"), "0") << client.error();
    }
  };
  auto flushed = [&](int64_t expected) {
    PgConn state = Old();
    for (int i = 0; i < 100; ++i) {
      if (state.Value("SELECT sum(compared) FROM pgshift_evidence") == std::to_string(expected)) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  read_through(a, 12);
  ASSERT_TRUE(flushed(12));
  std::string output;
  EXPECT_EQ(PhaseCommand(a, "new-primary", output), 1) << output;
  EXPECT_NE(output.find("only 12 shadow reads were compared since it entered shadow-read "
                        "(min_shadow_compared = 20)"),
            std::string::npos)
      << output;
  read_through(b, 12);
  ASSERT_TRUE(flushed(24));
  EXPECT_EQ(Compared(a), 12);  // each instance alone is short of 20
  EXPECT_EQ(Compared(b), 12);
  // Each instance shows the fleet's evidence beside its own.
  PgConn console = a.Console();
  bool shown = false;
  for (int i = 0; i < 50 && !shown; ++i) {
    PgResult tables = console.Exec("SHOW TABLES");
    int column = PQfnumber(tables.get(), "fleet_shadow_compared");
    ASSERT_GE(column, 0) << console.error();
    shown = std::string(PQgetvalue(tables.get(), 0, column)) == "24";
    if (!shown) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(shown);
  // pgshift status judges the rail on the fleet's counts and names the flip.
  ASSERT_EQ(CaptureCommand(
                PgshiftBinary() + " status --config " + a.process->dir() + "/pgshift.toml", output),
            0)
      << output;
  for (const char* line :
       {"public.counters: shadow-read since ",
        "shadow:   24 compared, 0 persistent mismatches (rate 0) since it entered shadow-read",
        "[met] shadow reads compared, few mismatched: 24 compared (min_shadow_compared 20)",
        "run:      pgshift phase --config "}) {
    EXPECT_NE(output.find(line), std::string::npos) << line << " in " << output;
  }
  EXPECT_NE(output.find("--table public.counters --to new-primary"), std::string::npos) << output;
  // b's comparisons outlive it; its lease goes with it.
  EXPECT_EQ(b.process->Stop(), 0);
  instances_.erase(instances_.begin() + 1);
  EXPECT_EQ(PhaseCommand(a, "new-primary", output), 0) << output;
  EXPECT_TRUE(AllServe("new-primary"));
  // a's file still says shadow-read: reloading it (for any other change)
  // does not take the fleet back.
  std::string verdict = a.process->Reload(20000);
  EXPECT_NE(verdict.find("config_reloaded"), std::string::npos) << verdict;
  EXPECT_EQ(PhaseOf(a), "new-primary");
  PgConn state = Old();
  EXPECT_EQ(state.Value("SELECT detail->>'instances' FROM pgshift_state WHERE kind = 'phase' "
                        "ORDER BY id DESC LIMIT 1"),
            "[\"a\"]");
}

}  // namespace
}  // namespace pgshift::testing
