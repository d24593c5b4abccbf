// TLS toward clients (when tls_cert and tls_key are set) and toward the
// backend (sslmode).
#include <gtest/gtest.h>

#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"

namespace pgshift::testing {
namespace {

TEST(Tls, ClientsConnectOverTls) {
  std::string dir = MakeTempDir("pgshift-tls");
  ASSERT_EQ(RunCommand("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
                       "-keyout " + dir + "/proxy.key -out " + dir + "/proxy.crt"),
            0);
  PgshiftProcess proxy(Cluster().port(), "tls_cert = \"" + dir + "/proxy.crt\"\ntls_key = \"" +
                                             dir + "/proxy.key\"");
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();
  PgConn tls(proxy.ConnInfo("sslmode=require"));
  ASSERT_TRUE(tls.ok()) << tls.error();
  EXPECT_EQ(PQsslInUse(tls.get()), 1);
  EXPECT_EQ(tls.Value("SELECT 'over tls'"), "over tls");
  // Large results cross TLS intact.
  EXPECT_EQ(tls.Value("SELECT length(string_agg(g::text, ',')) FROM generate_series(1, 200000) g"),
            "1288894");
  PgConn plain(proxy.ConnInfo("sslmode=disable"));
  ASSERT_TRUE(plain.ok()) << "TLS is offered, not required";
  EXPECT_EQ(PQsslInUse(plain.get()), 0);
  RemoveTree(dir);
}

TEST(Tls, RequiredTlsFailsWhenNotConfigured) {
  PgshiftProcess proxy(Cluster().port());
  ASSERT_TRUE(proxy.ok());
  PgConn conn(proxy.ConnInfo("sslmode=require"));
  EXPECT_FALSE(conn.ok());
  EXPECT_NE(conn.error().find("server does not support SSL"), std::string::npos) << conn.error();
}

TEST(Tls, BackendConnectionUsesTlsWhenRequired) {
  // tls_user may only log in over TLS (hostssl in pg_hba.conf).
  PgshiftProcess proxy(Cluster().port(), "", "user = \"tls_user\"\nsslmode = \"require\"");
  ASSERT_TRUE(proxy.ok());
  PgConn conn(proxy.ConnInfo());
  ASSERT_TRUE(conn.ok()) << conn.error();
  EXPECT_EQ(conn.Value("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"), "t");
  PgshiftProcess plain(Cluster().port(), "", "user = \"tls_user\"\nsslmode = \"disable\"");
  PgConn refused(plain.ConnInfo());
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.error().find("pg_hba.conf rejects connection"), std::string::npos)
      << refused.error();
}

}  // namespace
}  // namespace pgshift::testing
