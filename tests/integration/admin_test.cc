// The admin console through psql, and /metrics over HTTP.
#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"

namespace pgshift::testing {
namespace {

class Admin : public ::testing::Test {
 protected:
  static std::string Tables(const std::string& channels_phase, const std::string& extra = "",
                            const std::string& posts_phase = "old-only") {
    return "[[users]]\nname = \"ops\"\npassword = \"ops_pw\"\nadmin = true\n"
           "[[users]]\nname = \"app\"\npassword = \"app_pw\"\n"
           "[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\nphase = \"" +
           channels_phase + "\"\nkey = [\"id\"]\ncolumns = { title = \"name\" }\n" + extra +
           "[[tables]]\nname = \"app.posts\"\nnew_name = \"app.posts_v2\"\nphase = \"" +
           posts_phase + "\"\n";
  }
  std::string ProxySettings() const {
    return "auth_method = \"scram-sha-256\"\nadmin_listen = \"127.0.0.1:" +
           std::to_string(admin_port_) + "\"\nmetrics_listen = \"127.0.0.1:" +
           std::to_string(metrics_port_) + "\"";
  }
  // psql against the console; returns its exit code, output in `out`.
  int Psql(const std::string& user, const std::string& command, std::string& out) {
    return CaptureCommand("PGPASSWORD=" + user + "_pw PGCONNECT_TIMEOUT=10 psql -X -h 127.0.0.1 -p " +
                              std::to_string(admin_port_) + " -U " + user +
                              " -d pgshift -At -F '|' -c '" + command + "'",
                          out);
  }
  void SetUp() override { ASSERT_TRUE(proxy_.ok()) << proxy_.LogEnd(); }

  int admin_port_ = FreePort();
  int metrics_port_ = FreePort();
  PgshiftProcess proxy_{Cluster().port(), ProxySettings(), "user = \"postgres\"",
                        Tables("dual-write")};
};

TEST_F(Admin, ShowTablesAndConfig) {
  std::string out;
  ASSERT_EQ(Psql("ops", "SHOW TABLES", out), 0) << out;
  EXPECT_NE(out.find("public.channels|public.channels_v2|dual-write|0|0|0|id|title->name|0|fail|false"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("app.posts|app.posts_v2|old-only"), std::string::npos) << out;
  ASSERT_EQ(Psql("ops", "show config;", out), 0) << out;
  EXPECT_NE(out.find("proxy.auth_method|scram-sha-256"), std::string::npos) << out;
  EXPECT_NE(out.find("backends.old.user|postgres"), std::string::npos) << out;
  EXPECT_EQ(out.find("_pw"), std::string::npos) << "no password is shown: " << out;
}

TEST_F(Admin, ShowClientsAndStats) {
  PgConn app(proxy_.ConnInfo("user=app password=app_pw application_name=admin_test"));
  ASSERT_TRUE(app.ok()) << app.error();
  ASSERT_TRUE(app.Ok("SELECT 1"));
  ASSERT_TRUE(app.Ok("BEGIN"));
  std::string out;
  ASSERT_EQ(Psql("ops", "SHOW CLIENTS", out), 0) << out;
  std::string pid = std::to_string(PQbackendPID(app.get()));
  EXPECT_NE(out.find("|app|postgres|" + pid + "|off|idle in transaction|"), std::string::npos)
      << out;
  ASSERT_TRUE(app.Ok("COMMIT"));
  ASSERT_EQ(Psql("ops", "SHOW CLIENTS", out), 0) << out;
  EXPECT_NE(out.find("|app|postgres|" + pid + "|off|idle|3|"), std::string::npos) << out;
  ASSERT_EQ(Psql("ops", "SHOW STATS", out), 0) << out;
  EXPECT_NE(out.find("sessions|1"), std::string::npos) << out;
  EXPECT_NE(out.find("queries_total|3"), std::string::npos) << out;
}

TEST_F(Admin, ShowQueriesListsWhatTheApplicationSentByShape) {
  PgConn app(proxy_.ConnInfo("user=app password=app_pw"));
  ASSERT_TRUE(app.ok()) << app.error();
  // Planned and counted whether or not the tables exist here.
  app.Ok("SELECT title FROM channels WHERE id = 1");
  app.Ok("SELECT title FROM channels WHERE id = 22");
  app.Ok("TRUNCATE channels CASCADE");  // refused while channels is mirrored
  app.Ok("SELECT 'secret' FROM users");
  std::string out;
  ASSERT_EQ(Psql("ops", "SHOW QUERIES", out), 0) << out;
  EXPECT_NE(out.find("|public.channels|read|2|0|"), std::string::npos) << out;
  EXPECT_NE(out.find("|SELECT title FROM channels WHERE id = $1"), std::string::npos) << out;
  EXPECT_NE(out.find("|public.channels|write|0|1|"), std::string::npos) << out;
  EXPECT_EQ(out.find("users"), std::string::npos) << "only configured tables: " << out;
  EXPECT_EQ(out.find("= 22"), std::string::npos) << "no constants: " << out;
}

// The dry-run lists what a flip would refuse, and the flip then refuses it
// in the same words.
TEST_F(Admin, ExplainPhaseShowsWhatAFlipWouldRefuseBeforeIt) {
  PgConn app(proxy_.ConnInfo("user=app password=app_pw"));
  ASSERT_TRUE(app.ok()) << app.error();
  app.Ok("TRUNCATE app.posts CASCADE");  // old-only: sent as written
  app.Ok("SELECT * FROM app.posts WHERE id = 7");
  std::string out;
  ASSERT_EQ(Psql("ops", "EXPLAIN PHASE posts TO dual-write", out), 0) << out;
  const std::string refused_line = "refused|old|write|1|TRUNCATE app.posts CASCADE|||";
  size_t at = out.find(refused_line);
  ASSERT_NE(at, std::string::npos) << out;
  const std::string message =
      out.substr(at + refused_line.size(), out.find('\n', at) - at - refused_line.size());
  EXPECT_NE(out.find("as sent|old|read|1|SELECT * FROM app.posts WHERE id = $1|||"),
            std::string::npos)
      << out;
  ASSERT_EQ(Psql("ops", "SHOW TABLES", out), 0) << out;
  EXPECT_NE(out.find("app.posts|app.posts_v2|old-only|"), std::string::npos)
      << "the dry-run changes nothing: " << out;
  EXPECT_NE(Psql("ops", "EXPLAIN PHASE posts TO new-only", out), 0);
  EXPECT_NE(out.find("the flip itself would be refused"), std::string::npos) << out;

  proxy_.RewriteConfig(ProxySettings(), "user = \"postgres\"",
                       Tables("dual-write", "", "dual-write"));
  ASSERT_EQ(Psql("ops", "RELOAD", out), 0) << out;
  PgResult truncate = app.Exec("TRUNCATE app.posts CASCADE");
  EXPECT_EQ(ErrorOf(truncate.get()).message, message);
}

TEST_F(Admin, OnlyAdminsGetIn) {
  std::string out;
  EXPECT_NE(Psql("app", "SHOW TABLES", out), 0);
  EXPECT_NE(out.find("user \"app\" may not use the admin console"), std::string::npos) << out;
  EXPECT_NE(proxy_.log().find("event=admin_refused"), std::string::npos);
}

// Under trust the console takes only this host's connections, unless
// admin_auth_method says otherwise.
TEST(AdminTrust, OnlyFromThisHostUnlessAdminAuthMethodSaysSo) {
  std::string address;
  CaptureCommand("hostname -I | awk '{print $1}'", address);
  while (!address.empty() && std::isspace(static_cast<unsigned char>(address.back()))) {
    address.pop_back();
  }
  if (address.empty() || address.find(':') != std::string::npos || address.starts_with("127.")) {
    GTEST_SKIP() << "no IPv4 address besides loopback";
  }
  const int port = FreePort();
  const std::string kAdmin = "[[users]]\nname = \"postgres\"\nadmin = true\n";
  auto psql = [&](const std::string& host, std::string& out) {
    return CaptureCommand("PGCONNECT_TIMEOUT=10 psql -X -h " + host + " -p " +
                              std::to_string(port) + " -U postgres -d pgshift -At -c 'SHOW TABLES'",
                          out);
  };
  std::string out;
  {
    PgshiftProcess proxy(Cluster().port(),
                         "admin_listen = \"0.0.0.0:" + std::to_string(port) + "\"", "", kAdmin);
    ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();
    EXPECT_EQ(psql("127.0.0.1", out), 0) << out;
    EXPECT_NE(psql(address, out), 0);
    EXPECT_NE(out.find("takes trust logins only from this host"), std::string::npos) << out;
  }
  PgshiftProcess proxy(
      Cluster().port(),
      "admin_listen = \"0.0.0.0:" + std::to_string(port) + "\"\nadmin_auth_method = \"trust\"", "",
      kAdmin);
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();
  EXPECT_EQ(psql(address, out), 0) << out;
}

// pgshift whose new server never answers (reloads wait on it up to
// `connect_timeout` seconds), with an admin console on `admin_port`.
std::unique_ptr<PgshiftProcess> ProxyBeforeASilentServer(const SilentListener& silent,
                                                         int admin_port, int connect_timeout) {
  return std::make_unique<PgshiftProcess>(
      Cluster().port(),
      "connect_timeout = " + std::to_string(connect_timeout) +
          "\nrecovery_interval = 3600\nadmin_listen = \"127.0.0.1:" + std::to_string(admin_port) +
          "\"",
      "user = \"postgres\"",
      "[[users]]\nname = \"postgres\"\nadmin = true\n[backends.new]\nport = " +
          std::to_string(silent.port()) +
          "\nsslmode = \"disable\"\ndbname = \"postgres\"\nuser = \"postgres\"\n"
          "[[tables]]\nname = \"slow\"\nnew_name = \"slow_v2\"\n"
          "phase = \"old-only\"\n");
}

// A RELOAD whose catalog reads wait on a server that never answers (up to
// connect_timeout) holds up no new client: it runs off the accepting thread.
TEST(AdminReload, ASlowReloadHoldsUpNoClient) {
  SilentListener silent;
  ASSERT_NE(silent.port(), 0);
  const int admin_port = FreePort();
  std::unique_ptr<PgshiftProcess> started = ProxyBeforeASilentServer(silent, admin_port, 8);
  PgshiftProcess& proxy = *started;
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();
  std::atomic<bool> reloaded{false};
  std::thread reload([&] {
    std::string out;
    CaptureCommand("PGCONNECT_TIMEOUT=30 psql -X -h 127.0.0.1 -p " + std::to_string(admin_port) +
                       " -U postgres -d pgshift -c RELOAD",
                   out);
    reloaded = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  PgConn client(proxy.ConnInfo());
  EXPECT_TRUE(client.ok()) << client.error();
  EXPECT_EQ(client.Value("SELECT 'served'"), "served");
  EXPECT_FALSE(reloaded.load()) << "served while the reload still waited on the silent server";
  // Console commands run on the reload's thread: this one answers after it.
  std::string out;
  EXPECT_EQ(CaptureCommand("psql -X -h 127.0.0.1 -p " + std::to_string(admin_port) +
                               " -U postgres -d pgshift -At -c 'SHOW STATS'",
                           out),
            0)
      << out;
  reload.join();
}

// SIGTERM while a RELOAD waits on a silent server and another console
// command is queued behind it: the queued command never runs (the
// background thread stops), and pgshift still exits, once the running
// reload gives up (connect_timeout).
TEST(AdminReload, ShutdownDoesNotWaitForQueuedConsoleCommands) {
  SilentListener silent;
  ASSERT_NE(silent.port(), 0);
  const int admin_port = FreePort();
  std::unique_ptr<PgshiftProcess> started = ProxyBeforeASilentServer(silent, admin_port, 4);
  PgshiftProcess& proxy = *started;
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();
  auto console = [admin_port](const std::string& command) {
    return std::thread([admin_port, command] {
      std::string out;
      CaptureCommand("PGCONNECT_TIMEOUT=30 psql -X -h 127.0.0.1 -p " + std::to_string(admin_port) +
                         " -U postgres -d pgshift -c '" + command + "'",
                     out);
    });
  };
  std::thread reload = console("RELOAD");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::thread stats = console("SHOW STATS");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(proxy.Stop(15000), 0) << proxy.LogEnd();
  reload.join();
  stats.join();
}

TEST_F(Admin, UnknownCommandsNameTheHelp) {
  std::string out;
  EXPECT_NE(Psql("ops", "SHOW EVERYTHING", out), 0);
  EXPECT_NE(out.find("unknown command \"SHOW EVERYTHING\"; SHOW HELP lists the commands"),
            std::string::npos)
      << out;
  ASSERT_EQ(Psql("ops", "SHOW HELP", out), 0) << out;
  EXPECT_NE(out.find("RELOAD|"), std::string::npos) << out;
}

TEST_F(Admin, ReloadAppliesOrRefusesWithTheReason) {
  // Into shadow-read needs a clean verify on record, which this database
  // cannot show (backends.old has no dbname): refused, then forced.
  proxy_.RewriteConfig(ProxySettings(), "user = \"postgres\"", Tables("shadow-read"));
  std::string out;
  EXPECT_NE(Psql("ops", "RELOAD", out), 0);
  EXPECT_NE(out.find("public.channels cannot move to shadow-read: cannot look for a verify in "
                     "pgshift_state: backends.old needs dbname and user"),
            std::string::npos)
      << out;
  proxy_.RewriteConfig(ProxySettings(), "user = \"postgres\"",
                       Tables("shadow-read", "force = true\n"));
  ASSERT_EQ(Psql("ops", "RELOAD", out), 0) << out;
  EXPECT_NE(proxy_.log().find("event=guard_rail_overridden table=public.channels"),
            std::string::npos);
  ASSERT_EQ(Psql("ops", "SHOW TABLES", out), 0) << out;
  EXPECT_NE(out.find("public.channels|public.channels_v2|shadow-read"), std::string::npos) << out;

  proxy_.RewriteConfig(ProxySettings(), "user = \"postgres\"", Tables("new-only"));
  EXPECT_NE(Psql("ops", "RELOAD", out), 0);
  EXPECT_NE(out.find("shadow-read -> new-only skips new-primary"), std::string::npos) << out;
  ASSERT_EQ(Psql("ops", "SHOW TABLES", out), 0) << out;
  EXPECT_NE(out.find("|shadow-read|"), std::string::npos) << "the running config stays: " << out;
}

TEST_F(Admin, MetricsOverHttp) {
  PgConn app(proxy_.ConnInfo("user=app password=app_pw"));
  ASSERT_TRUE(app.ok()) << app.error();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(app.Ok("SELECT 1"));
  std::string response = HttpExchange(metrics_port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(response.starts_with("HTTP/1.1 200 OK\r\n")) << response;
  EXPECT_NE(response.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(response.find("\npgshift_sessions 1\n"), std::string::npos) << response;
  EXPECT_NE(response.find("\npgshift_query_duration_seconds_count 5\n"), std::string::npos)
      << response;
  EXPECT_NE(response.find("pgshift_query_duration_seconds_bucket{le=\"+Inf\"} 5\n"),
            std::string::npos);
  EXPECT_NE(response.find("pgshift_table_phase{table=\"public.channels\",phase=\"dual-write\"} 1"),
            std::string::npos);
  EXPECT_NE(response.find("pgshift_table_phase{table=\"public.channels\",phase=\"old-only\"} 0"),
            std::string::npos);
  EXPECT_TRUE(
      HttpExchange(metrics_port_, "GET /nosuch HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
  EXPECT_TRUE(HttpExchange(metrics_port_, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
}

// conf/grafana/pgshift-dashboard.json queries only metrics that /metrics
// serves: a renamed metric cannot leave a panel silently empty.
TEST_F(Admin, TheGrafanaDashboardQueriesOnlyMetricsPgshiftServes) {
  std::ifstream file(PGSHIFT_SOURCE_DIR "/conf/grafana/pgshift-dashboard.json");
  ASSERT_TRUE(file.good());
  const std::string dashboard((std::istreambuf_iterator<char>(file)),
                              std::istreambuf_iterator<char>());
  // Every query of a panel ("expr") or of a variable ("definition"), and
  // the metric names in it.
  std::set<std::string> names;
  int queries = 0;
  for (const std::string key : {"\"expr\":", "\"definition\":"}) {
    for (size_t at = dashboard.find(key); at != std::string::npos;
         at = dashboard.find(key, at + 1)) {
      size_t begin = dashboard.find_first_not_of(" \n", at + key.size());
      if (begin == std::string::npos || dashboard[begin] != '"') continue;
      ++queries;
      // The JSON string up to its closing quote (\" inside it escapes one).
      std::string text;
      for (size_t i = begin + 1; i < dashboard.size() && dashboard[i] != '"'; ++i) {
        if (dashboard[i] == '\\') ++i;
        text += dashboard[i];
      }
      for (size_t m = text.find("pgshift_"); m != std::string::npos;
           m = text.find("pgshift_", m + 1)) {
        size_t end = m;
        while (end < text.size() && ((text[end] >= 'a' && text[end] <= 'z') || text[end] == '_')) {
          ++end;
        }
        names.insert(text.substr(m, end - m));
        m = end - 1;
      }
    }
  }
  EXPECT_GE(queries, 20);
  EXPECT_GE(names.size(), 15u);
  const std::string served =
      HttpExchange(metrics_port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  for (const std::string& name : names) {
    // Declared (a gauge may have no sample yet), or a histogram's series.
    const bool found = served.find("\n# TYPE " + name + " ") != std::string::npos ||
                       served.find("\n" + name + "{") != std::string::npos ||
                       served.find("\n" + name + " ") != std::string::npos;
    EXPECT_TRUE(found) << name << " is queried by the dashboard but not served";
  }
}

}  // namespace
}  // namespace pgshift::testing
