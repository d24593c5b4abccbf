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

// sslmode verify-ca and verify-full check the server's certificate as libpq
// does. The test cluster's is self-signed for CN=localhost.
TEST(Tls, VerifyingModesCheckTheServersCertificate) {
  std::string own_ca = Cluster().dir() + "/data/server.crt";
  std::string dir = MakeTempDir("pgshift-tls");
  ASSERT_EQ(RunCommand("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other "
                       "-keyout " + dir + "/other.key -out " + dir + "/other.crt"),
            0);
  std::string other_ca = dir + "/other.crt";
  auto attempt = [](const std::string& backend) {
    PgshiftProcess proxy(Cluster().port(), "", "user = \"tls_user\"\n" + backend);
    EXPECT_TRUE(proxy.ok()) << proxy.LogEnd();
    PgConn conn(proxy.ConnInfo());
    if (!conn.ok()) return conn.error();
    return std::string(conn.Value("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                           .value_or("error"));
  };
  EXPECT_EQ(attempt("sslmode = \"verify-ca\"\nsslrootcert = \"" + own_ca + "\""), "t");
  EXPECT_EQ(attempt("host = \"localhost\"\nsslmode = \"verify-full\"\nsslrootcert = \"" + own_ca +
                    "\""),
            "t");
  std::string wrong_host =
      attempt("sslmode = \"verify-full\"\nsslrootcert = \"" + own_ca + "\"");
  EXPECT_NE(wrong_host.find("the server's certificate is not accepted (sslmode verify-full"),
            std::string::npos)
      << wrong_host;
  EXPECT_NE(wrong_host.find("IP address mismatch"), std::string::npos) << wrong_host;
  std::string wrong_ca = attempt("sslmode = \"verify-ca\"\nsslrootcert = \"" + other_ca + "\"");
  EXPECT_NE(wrong_ca.find("the server's certificate is not accepted (sslmode verify-ca"),
            std::string::npos)
      << wrong_ca;
  RemoveTree(dir);
}

}  // namespace
}  // namespace pgshift::testing
