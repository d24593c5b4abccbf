// The status page on metrics_listen, in a real browser: pgshift with a
// table in dual-write and one in shadow-read, some traffic, then GET /
// loaded in headless Chromium (installed by scripts/install-deps.sh), whose
// rendered DOM shows each table's phase and the counters SHOW TABLES
// shows; a screenshot is kept (status_page.png in the test's working
// directory), not compared.
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"

namespace pgshift::testing {
namespace {

constexpr const char* kChromium = "/usr/bin/chromium";

std::string Http(int port, const std::string& path) {
  return HttpExchange(port, "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n");
}

// A column of SHOW TABLES's row for `table`, from the admin console.
std::string ShowTablesValue(int admin_port, const std::string& table, const std::string& column) {
  PgConn console("host=127.0.0.1 port=" + std::to_string(admin_port) +
                 " dbname=pgshift user=postgres sslmode=disable");
  PgResult r = console.Exec("SHOW TABLES");
  const int c = PQfnumber(r.get(), column.c_str());
  const int name = PQfnumber(r.get(), "table");
  for (int i = 0; c >= 0 && name >= 0 && i < PQntuples(r.get()); ++i) {
    if (table == PQgetvalue(r.get(), i, name)) return PQgetvalue(r.get(), i, c);
  }
  return "?";
}

TEST(StatusPage, ABrowserShowsEachTablesPhaseAndCountersAsShowTablesDoes) {
  PgConn admin(Cluster().ConnInfo("dbname=postgres"));
  admin.Ok("CREATE DATABASE status_page");
  PgConn direct(Cluster().ConnInfo("dbname=status_page"));
  ASSERT_TRUE(direct.Ok(
      "CREATE TABLE channels (id serial PRIMARY KEY, title text);"
      "CREATE TABLE channels_v2 (id int PRIMARY KEY, title text);"
      "CREATE TABLE posts (id int PRIMARY KEY, body text);"
      "INSERT INTO posts SELECT g, 'post ' || g FROM generate_series(1, 100) g;"
      "CREATE TABLE posts_v2 AS SELECT * FROM posts; ALTER TABLE posts_v2 ADD PRIMARY KEY (id);"))
      << direct.error();
  const int admin_port = FreePort(), metrics_port = FreePort();
  PgshiftProcess proxy(
      Cluster().port(),
      "admin_listen = \"127.0.0.1:" + std::to_string(admin_port) +
          "\"\nmetrics_listen = \"127.0.0.1:" + std::to_string(metrics_port) + "\"",
      "dbname = \"status_page\"\nuser = \"postgres\"",
      "[[users]]\nname = \"postgres\"\nadmin = true\n"
      "[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\nkey = [\"id\"]\n"
      "phase = \"dual-write\"\n"
      "[[tables]]\nname = \"posts\"\nnew_name = \"posts_v2\"\nkey = [\"id\"]\n"
      "phase = \"shadow-read\"\nshadow_sample = 1.0\n");
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();
  PgConn app(proxy.ConnInfo("dbname=status_page"));
  for (int i = 1; i <= 20; ++i) {
    ASSERT_TRUE(app.Ok("INSERT INTO channels (title) VALUES ('c" + std::to_string(i) + "')"))
        << app.error();
  }
  for (int i = 1; i <= 30; ++i) {
    ASSERT_TRUE(app.Value("SELECT body FROM posts WHERE id = " + std::to_string(i))) << app.error();
  }
  // Shadow reads are compared off the client's path: wait for all 30.
  for (int i = 0; i < 100 && ShowTablesValue(admin_port, "public.posts", "shadow_compared") != "30";
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(ShowTablesValue(admin_port, "public.posts", "shadow_compared"), "30");

  // The data, for scripts.
  const std::string json = Http(metrics_port, "/status.json");
  EXPECT_NE(json.find("200 OK"), std::string::npos) << json;
  EXPECT_NE(json.find("{\"table\":\"public.channels\",\"phase\":\"dual-write\""), std::string::npos)
      << json;
  EXPECT_NE(json.find("{\"table\":\"public.posts\",\"phase\":\"shadow-read\""), std::string::npos)
      << json;
  EXPECT_NE(json.find("\"history\":[{\"at\":"), std::string::npos) << json;
  EXPECT_NE(json.find("\"rates\":{\"interval_s\":10,\"tables\":{"), std::string::npos) << json;
  // No digest of the configuration (it holds passwords) and no SQL text.
  EXPECT_EQ(json.find("config_checksum"), std::string::npos) << json;
  EXPECT_EQ(json.find("SELECT"), std::string::npos) << json;
  // The page: self-contained, nothing fetched from elsewhere.
  const std::string page = Http(metrics_port, "/");
  EXPECT_NE(page.find("Content-Type: text/html"), std::string::npos) << page.substr(0, 200);
  EXPECT_NE(page.find("fetch('status.json'"), std::string::npos);
  for (const char* external : {" src=", " href=", "@import", "url("}) {
    EXPECT_EQ(page.find(external), std::string::npos) << external;
  }

  // In a browser: the script renders /status.json (virtual time lets its
  // fetch finish before the DOM is dumped).
  ASSERT_EQ(access(kChromium, X_OK), 0) << "scripts/install-deps.sh installs chromium";
  const std::string url = "http://127.0.0.1:" + std::to_string(metrics_port) + "/";
  const std::string browser = std::string(kChromium) +
                              " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage "
                              "--no-first-run --virtual-time-budget=5000 ";
  std::string dom;
  ASSERT_EQ(CaptureCommand(browser + "--dump-dom " + url + " 2>/dev/null", dom), 0) << dom;
  EXPECT_NE(dom.find("public.channels <span class=\"phase\">dual-write</span>"), std::string::npos)
      << dom;
  EXPECT_NE(dom.find("public.posts <span class=\"phase\">shadow-read</span>"), std::string::npos)
      << dom;
  const std::string compared = ShowTablesValue(admin_port, "public.posts", "shadow_compared");
  const std::string persistent = ShowTablesValue(admin_port, "public.posts", "shadow_persistent");
  EXPECT_NE(dom.find(compared + " compared, " + persistent + " persistent mismatches"),
            std::string::npos)
      << "SHOW TABLES: " << compared << " compared, " << persistent << " persistent; " << dom;
  EXPECT_NE(dom.find("[not met] a clean verify since dual-write"), std::string::npos) << dom;
  // Each table's counters since start, as SHOW TABLES counts them.
  for (const char* table : {"public.channels", "public.posts"}) {
    auto value = [&](const char* column) { return ShowTablesValue(admin_port, table, column); };
    const std::string since_start =
        value("rows_written") + " rows written, " + value("mirror_failures") +
        " mirror failures; shadow reads: " + value("shadow_compared") + " compared, " +
        value("shadow_persistent") + " persistent, " + value("shadow_dropped") + " dropped";
    EXPECT_NE(dom.find(since_start), std::string::npos)
        << table << ": " << since_start << " in " << dom;
  }
  EXPECT_EQ(ShowTablesValue(admin_port, "public.channels", "rows_written"), "20");
  // Each table's own phase changes, in its box.
  EXPECT_NE(dom.find(": none → dual-write</td>"), std::string::npos) << dom;
  EXPECT_NE(dom.find(": none → shadow-read</td>"), std::string::npos) << dom;
  std::string screenshot;
  EXPECT_EQ(CaptureCommand(
                browser + "--window-size=1200,1000 --screenshot=status_page.png " + url + " 2>&1",
                screenshot),
            0)
      << screenshot;
  EXPECT_GT(ReadFile("status_page.png").size(), 1000u) << screenshot;
}

}  // namespace
}  // namespace pgshift::testing
