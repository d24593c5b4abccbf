// Shutdown and cancel keys: how sessions end.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include "protocol/messages/startup.h"
#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/raw_client.h"

namespace pgshift::testing {
namespace {

using Clock = std::chrono::steady_clock;

TEST(Shutdown, IdleSessionsCloseAndTransactionsFinish) {
  PgshiftProcess proxy(Cluster().port(), "shutdown_timeout = 20");
  ASSERT_TRUE(proxy.ok());
  PgConn setup(Cluster().ConnInfo());
  ASSERT_TRUE(setup.Ok("DROP TABLE IF EXISTS shutdown_rows; CREATE TABLE shutdown_rows (id int)"));
  PgConn idle(proxy.ConnInfo()), busy(proxy.ConnInfo());
  ASSERT_TRUE(busy.Ok("BEGIN"));
  ASSERT_TRUE(busy.Ok("INSERT INTO shutdown_rows VALUES (1)"));
  kill(proxy.pid(), SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  // The idle session was closed with PostgreSQL's shutdown error.
  PgResult r = idle.Exec("SELECT 1");
  EXPECT_NE(PQresultStatus(r.get()), PGRES_TUPLES_OK);
  EXPECT_NE(idle.error().find("terminating connection due to administrator command"),
            std::string::npos)
      << idle.error();
  // The session in a transaction may finish it; then it is closed.
  EXPECT_TRUE(busy.Ok("INSERT INTO shutdown_rows VALUES (2)"));
  EXPECT_TRUE(busy.Ok("COMMIT"));
  EXPECT_EQ(proxy.Stop(), 0) << proxy.LogEnd();
  EXPECT_EQ(setup.Value("SELECT count(*) FROM shutdown_rows"), "2");
  EXPECT_FALSE(busy.Ok("SELECT 1"));
  // No new clients during or after shutdown.
  EXPECT_FALSE(PgConn(proxy.ConnInfo()).ok());
}

TEST(Shutdown, TimeoutEndsSessionsThatDoNotFinish) {
  PgshiftProcess proxy(Cluster().port(), "shutdown_timeout = 0.5");
  ASSERT_TRUE(proxy.ok());
  PgConn setup(Cluster().ConnInfo());
  ASSERT_TRUE(setup.Ok("DROP TABLE IF EXISTS stuck_rows; CREATE TABLE stuck_rows (id int)"));
  PgConn stuck(proxy.ConnInfo());
  ASSERT_TRUE(stuck.Ok("BEGIN"));
  ASSERT_TRUE(stuck.Ok("INSERT INTO stuck_rows VALUES (1)"));
  auto start = Clock::now();
  EXPECT_EQ(proxy.Stop(), 0) << proxy.LogEnd();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10)) << "hang guard";
  EXPECT_NE(proxy.log().find("event=shutdown_timeout"), std::string::npos);
  // The open transaction was never committed.
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (setup.Value("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in%'") != "0" &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(setup.Value("SELECT count(*) FROM stuck_rows"), "0");
}

TEST(Cancel, UnknownKeysAreIgnored) {
  PgshiftProcess proxy(Cluster().port());
  ASSERT_TRUE(proxy.ok());
  PgConn victim(proxy.ConnInfo());
  ASSERT_TRUE(PQsendQuery(victim.get(), "SELECT pg_sleep(0.5), 'finished'"));
  // A CancelRequest with the right pid but a wrong key must not cancel.
  RawClient c(proxy.port());
  std::string out;
  protocol::CancelRequest{PQbackendPID(victim.get()), 12345}.Encode(out);
  c.Send(out);
  EXPECT_TRUE(c.WaitForClose());
  PgResult r(PQgetResult(victim.get()));
  EXPECT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << PQerrorMessage(victim.get());
  while (PgResult(PQgetResult(victim.get()))) {
  }
  EXPECT_NE(proxy.log().find("event=cancel_ignored"), std::string::npos);
}

}  // namespace
}  // namespace pgshift::testing

namespace pgshift::testing {
namespace {

TEST(Shutdown, SigintIsGracefulToo) {
  PgshiftProcess proxy(Cluster().port());
  ASSERT_TRUE(proxy.ok());
  PgConn idle(proxy.ConnInfo());
  ASSERT_TRUE(idle.ok());
  kill(proxy.pid(), SIGINT);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (proxy.log().find("event=stopped") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_NE(proxy.log().find("event=shutdown_started signal=SIGINT"), std::string::npos);
  EXPECT_FALSE(idle.Ok("SELECT 1"));
  EXPECT_NE(idle.error().find("terminating connection due to administrator command"),
            std::string::npos);
  // "stopped" is logged just before the process exits: a SIGTERM now could
  // still find it.
  EXPECT_EQ(proxy.AwaitExit(), 0) << proxy.LogEnd();
}

}  // namespace
}  // namespace pgshift::testing
