// SIGHUP: a valid file applies to what starts after it; a bad file or a
// refused phase step keeps the running configuration, with the reason logged.
#include <signal.h>

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"

namespace pgshift::testing {
namespace {

std::string Users(const std::vector<std::string>& names) {
  std::string toml;
  for (const auto& n : names) toml += "[[users]]\nname = \"" + n + "\"\npassword = \"" + n + "_pw\"\n";
  return toml;
}

std::string Channels(const std::string& phase) {
  return "[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\nkey = [\"id\"]\nphase = \"" +
         phase + "\"\n";
}

constexpr const char* kScram = "auth_method = \"scram-sha-256\"";
constexpr const char* kBackend = "user = \"postgres\"";

TEST(Reload, NewUsersCanLogInAfterSighup) {
  PgshiftProcess proxy(Cluster().port(), kScram, kBackend, Users({"alice"}));
  ASSERT_TRUE(proxy.ok());
  PgConn alice(proxy.ConnInfo("user=alice password=alice_pw"));
  ASSERT_TRUE(alice.ok()) << alice.error();
  EXPECT_FALSE(PgConn(proxy.ConnInfo("user=bob password=bob_pw")).ok());

  proxy.RewriteConfig(kScram, kBackend, Users({"alice", "bob"}));
  std::string verdict = proxy.Reload();
  EXPECT_NE(verdict.find("event=config_reloaded"), std::string::npos) << verdict;
  EXPECT_NE(verdict.find("generation=1"), std::string::npos) << verdict;
  PgConn bob(proxy.ConnInfo("user=bob password=bob_pw"));
  EXPECT_TRUE(bob.ok()) << bob.error();
  EXPECT_EQ(alice.Value("SELECT 'alice still here'"), "alice still here");
}

// A SIGHUP while pgshift is still starting (here: waiting on a silent
// second server for the new table's columns) is handled once it runs,
// neither lost nor fatal.
TEST(Reload, ASighupDuringStartupIsHandledOnceRunning) {
  SilentListener silent;
  ASSERT_NE(silent.port(), 0);
  std::string silent_new = "[backends.new]\nhost = \"127.0.0.1\"\nport = " +
                           std::to_string(silent.port()) + "\ndbname = \"postgres\"\nuser = \"postgres\"\nsslmode = \"disable\"\n";
  PgshiftProcess proxy(Cluster().port(), "connect_timeout = 1", "",
                       silent_new + Channels("dual-write"), [&silent](pid_t pid) {
                         EXPECT_TRUE(silent.AwaitConnection(20000)) << "pgshift never reached new";
                         kill(pid, SIGHUP);
                       });
  ASSERT_TRUE(proxy.ok()) << "pgshift did not survive the SIGHUP";
  bool handled = false;
  for (int i = 0; i < 1500 && !handled; ++i) {
    handled = proxy.log().find("event=config_re") != std::string::npos;
    if (!handled) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(handled) << proxy.LogEnd();
  EXPECT_TRUE(PgConn(proxy.ConnInfo()).ok());
}

TEST(Reload, InvalidFileKeepsTheRunningConfiguration) {
  PgshiftProcess proxy(Cluster().port(), kScram, kBackend, Users({"alice"}));
  ASSERT_TRUE(proxy.ok());
  proxy.RewriteConfig(kScram + std::string("\nmax_clientz = 5"), kBackend, Users({"alice"}));
  std::string verdict = proxy.Reload();
  EXPECT_NE(verdict.find("event=config_rejected"), std::string::npos) << verdict;
  EXPECT_NE(verdict.find("unknown key \\\"proxy.max_clientz\\\""), std::string::npos) << verdict;
  EXPECT_NE(verdict.find("pgshift.toml:5:"), std::string::npos) << verdict;

  proxy.WriteRawConfig("[proxy\nthis is not toml");
  verdict = proxy.Reload();
  EXPECT_NE(verdict.find("event=config_rejected"), std::string::npos) << verdict;
  EXPECT_TRUE(PgConn(proxy.ConnInfo("user=alice password=alice_pw")).ok())
      << "the running configuration still serves";
}

TEST(Reload, PhaseStepsFollowTheOrder) {
  PgshiftProcess proxy(Cluster().port(), "", "", Channels("old-only"));
  ASSERT_TRUE(proxy.ok());
  proxy.RewriteConfig("", "", Channels("shadow-read"));
  std::string verdict = proxy.Reload();
  EXPECT_NE(verdict.find("event=config_rejected"), std::string::npos) << verdict;
  EXPECT_NE(verdict.find("old-only -> shadow-read skips dual-write"), std::string::npos) << verdict;

  proxy.RewriteConfig("", "", Channels("dual-write"));
  verdict = proxy.Reload();
  EXPECT_NE(verdict.find("event=config_reloaded"), std::string::npos) << verdict;
  EXPECT_NE(proxy.log().find("event=phase_changed table=public.channels from=old-only to=dual-write"),
            std::string::npos);

  proxy.RewriteConfig("", "", Channels("new-only") + "force = true\n");
  verdict = proxy.Reload();
  EXPECT_NE(verdict.find("event=config_reloaded"), std::string::npos) << verdict;
  EXPECT_NE(proxy.log().find("from=dual-write to=new-only forced=true"), std::string::npos);

  proxy.RewriteConfig("", "", Channels("dual-write"));
  verdict = proxy.Reload();
  EXPECT_NE(verdict.find("new-only -> dual-write leaves new-only"), std::string::npos) << verdict;
}

TEST(Reload, SettingsBoundAtStartAskForARestart) {
  PgshiftProcess proxy(Cluster().port(), "");
  ASSERT_TRUE(proxy.ok());
  proxy.RewriteConfig("admin_listen = \"127.0.0.1:7001\"", "", "");
  std::string verdict = proxy.Reload();
  EXPECT_NE(verdict.find("event=config_reloaded"), std::string::npos) << verdict;
  EXPECT_NE(proxy.log().find(
                "event=config_needs_restart key=proxy.admin_listen running=unset file=127.0.0.1:7001"),
            std::string::npos)
      << proxy.LogEnd();
}

// log_format = "json": every line one JSON object with the text line's
// fields (values escaped, so a user name cannot forge a field), and a
// reload switches the format at once.
TEST(Logs, JsonLinesCarryTheSameFieldsAndAReloadSwitchesFormat) {
  const std::string json = std::string(kScram) + "\nlog_format = \"json\"";
  PgshiftProcess proxy(Cluster().port(), json, kBackend, Users({"alice"}));
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();
  EXPECT_FALSE(PgConn(proxy.ConnInfo("user=alice password=wrong application_name=x")).ok());
  EXPECT_TRUE(proxy.AwaitLog("\"event\":\"auth_failed\",\"client\":\"127.0.0.1:")) << proxy.log();
  EXPECT_TRUE(proxy.AwaitLog("\"user\":\"alice\",\"method\":\"scram-sha-256\"")) << proxy.log();
  EXPECT_FALSE(PgConn(proxy.ConnInfo("user='al\\\"ice' password=x")).ok());
  EXPECT_TRUE(proxy.AwaitLog("\"user\":\"al\\\"ice\"")) << proxy.log();
  std::string log = proxy.log();
  size_t lines = 0;
  for (size_t at = 0; at < log.size();) {
    size_t end = log.find('\n', at);
    std::string line = log.substr(at, end - at);
    at = end == std::string::npos ? log.size() : end + 1;
    if (line.empty()) continue;
    ++lines;
    EXPECT_EQ(line.rfind("{\"time\":\"", 0), 0u) << line;
    EXPECT_EQ(line.back(), '}') << line;
    EXPECT_NE(line.find("\",\"level\":\""), std::string::npos) << line;
  }
  EXPECT_GE(lines, 3u) << log;

  proxy.RewriteConfig(kScram, kBackend, Users({"alice"}));
  std::string verdict = proxy.Reload();
  EXPECT_NE(verdict.find(" INFO event=config_reloaded file="), std::string::npos) << verdict;
}

}  // namespace
}  // namespace pgshift::testing
