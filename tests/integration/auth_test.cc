// Clients authenticate to pgshift; pgshift authenticates to PostgreSQL with
// the backend's own credentials.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "protocol/messages/password.h"
#include "protocol/messages/startup.h"
#include "protocol/scram.h"
#include "protocol/wire.h"
#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"

namespace pgshift::testing {
namespace {

std::string User(const std::string& name, const std::string& password) {
  return "[[users]]\nname = \"" + name + "\"\npassword = \"" + password + "\"\n";
}

TEST(Auth, ScramOnBothSides) {
  // The client proves "app_pw" to pgshift; pgshift logs in to PostgreSQL as
  // scram_user, which pg_hba.conf holds to scram-sha-256.
  PgshiftProcess proxy(Cluster().port(), "auth_method = \"scram-sha-256\"",
                       "user = \"scram_user\"\npassword = \"scram_user_pw\"", User("app", "app_pw"));
  ASSERT_TRUE(proxy.ok());
  PgConn conn(proxy.ConnInfo("user=app password=app_pw"));
  ASSERT_TRUE(conn.ok()) << conn.error() << proxy.LogEnd();
  EXPECT_EQ(conn.Value("SELECT current_user"), "scram_user");

  PgConn wrong(proxy.ConnInfo("user=app password=nope"));
  EXPECT_FALSE(wrong.ok());
  EXPECT_NE(wrong.error().find("password authentication failed for user \"app\""), std::string::npos)
      << wrong.error();
  RawClient raw(proxy.port());
  auto error = raw.Login("app", "nope");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->sqlstate(), "28P01");
  RawClient unknown(proxy.port());
  error = unknown.Login("nobody", "nope");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->sqlstate(), "28P01") << "an unknown user looks like a wrong password";
  EXPECT_NE(proxy.log().find("event=auth_failed"), std::string::npos);
}

// A server that answers SCRAM's client-final-message with AuthenticationOk,
// never proving (SASLFinal) that it knows the password: a server that is
// not the one configured. pgshift refuses the login.
TEST(Auth, ABackendThatSkipsTheScramSignatureIsRefused) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  socklen_t length = sizeof(address);
  getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
  const int port = ntohs(address.sin_port);
  bool skipped_final = false;
  std::thread impostor([&] {
    int fd = accept(listener, nullptr, nullptr);
    if (fd < 0) return;
    auto read_exactly = [fd](size_t n) {
      std::string out(n, '\0');
      size_t got = 0;
      while (got < n) {
        ssize_t r = recv(fd, out.data() + got, n - got, 0);
        if (r <= 0) return std::string();
        got += static_cast<size_t>(r);
      }
      return out;
    };
    auto send_all = [fd](const std::string& bytes) { send(fd, bytes.data(), bytes.size(), 0); };
    auto auth = [](int32_t code, const std::string& data) {
      std::string m = "R" + std::string(8, '\0') + data;
      protocol::WriteBigEndian32(m.data() + 1, static_cast<int32_t>(m.size() - 1));
      protocol::WriteBigEndian32(m.data() + 5, code);
      return m;
    };
    // An SSLRequest (sslmode prefer) gets N; then the StartupMessage.
    std::string head = read_exactly(8);
    if (head.size() == 8 && protocol::ReadBigEndian32(head.data() + 4) == 80877103) {
      send_all("N");
      head = read_exactly(4);
      read_exactly(static_cast<size_t>(protocol::ReadBigEndian32(head.data())) - 4);
    } else if (head.size() == 8) {
      read_exactly(static_cast<size_t>(protocol::ReadBigEndian32(head.data())) - 8);
    }
    send_all(auth(10, std::string("SCRAM-SHA-256") + '\0' + '\0'));
    std::string type = read_exactly(5);
    std::string initial =
        read_exactly(static_cast<size_t>(protocol::ReadBigEndian32(type.data() + 1)) - 4);
    size_t nonce_at = initial.find("r=");
    std::string nonce = nonce_at == std::string::npos ? "" : initial.substr(nonce_at + 2);
    send_all(auth(11, "r=" + nonce + "impostor,s=c2FsdHNhbHQ=,i=4096"));
    type = read_exactly(5);
    if (type.size() == 5) {
      read_exactly(static_cast<size_t>(protocol::ReadBigEndian32(type.data() + 1)) - 4);
      std::string ready = "Z" + std::string(4, '\0') + "I";
      protocol::WriteBigEndian32(ready.data() + 1, 5);
      send_all(auth(0, "") + ready);
      skipped_final = true;
    }
    read_exactly(1);  // until pgshift hangs up
    close(fd);
  });
  PgshiftProcess proxy(port, "", "user = \"postgres\"\npassword = \"pw\"");
  ASSERT_TRUE(proxy.ok());
  PgConn conn(proxy.ConnInfo());
  EXPECT_FALSE(conn.ok());
  EXPECT_NE(conn.error().find("the server ended SCRAM without proving it knows the password"),
            std::string::npos)
      << conn.error();
  impostor.join();
  close(listener);
  EXPECT_TRUE(skipped_final) << "the impostor got as far as its AuthenticationOk";
}

// A SASLResponse that is not one ends that login with 08P01, nothing more.
TEST(Auth, AMalformedScramResponseIsAProtocolViolation) {
  PgshiftProcess proxy(Cluster().port(), "auth_method = \"scram-sha-256\"", "user = \"postgres\"",
                       User("app", "app_pw"));
  ASSERT_TRUE(proxy.ok());
  RawClient raw(proxy.port());
  protocol::StartupMessage start;
  start.Set("user", "app");
  std::string out;
  start.Encode(out);
  protocol::SaslInitialResponse{std::string(protocol::kScramSha256), "n,,n=,r=abcdef"}.Encode(out);
  ASSERT_TRUE(raw.Send(out));
  for (int i = 0; i < 2; ++i) {  // the SASL request, then SASLContinue
    auto m = raw.Read();
    ASSERT_TRUE(m);
    ASSERT_EQ(m->type, 'R');
  }
  ASSERT_TRUE(raw.Send(std::string("p\0\0\0\4", 5)));  // no body at all
  auto error = raw.ReadError();
  ASSERT_TRUE(error) << proxy.LogEnd();
  EXPECT_EQ(error->sqlstate(), "08P01");
  PgConn after(proxy.ConnInfo("user=app password=app_pw"));
  EXPECT_TRUE(after.ok()) << after.error() << proxy.LogEnd();
}

// A backend that asks for the password in clear text gets it only over TLS
// sslmode verified, or under prefer/require with a warning (once).
TEST(Auth, ACleartextPasswordGoesOnlyWhereSslmodeAllows) {
  PgshiftProcess refused(
      Cluster().port(), "",
      "user = \"clear_user\"\npassword = \"clear_user_pw\"\nsslmode = \"disable\"");
  ASSERT_TRUE(refused.ok());
  PgConn no(refused.ConnInfo());
  EXPECT_FALSE(no.ok());
  EXPECT_NE(no.error().find("in clear text"), std::string::npos) << no.error();
  PgshiftProcess warned(
      Cluster().port(), "",
      "user = \"clear_user\"\npassword = \"clear_user_pw\"\nsslmode = \"prefer\"");
  ASSERT_TRUE(warned.ok());
  for (int i = 0; i < 2; ++i) {
    PgConn yes(warned.ConnInfo());
    ASSERT_TRUE(yes.ok()) << yes.error();
    EXPECT_EQ(yes.Value("SELECT current_user"), "clear_user");
  }
  const std::string log = warned.log();
  const size_t first = log.find("event=cleartext_password");
  EXPECT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("event=cleartext_password", first + 1), std::string::npos) << "once";
}

TEST(Auth, ScramVerifierInTheConfig) {
  std::string verifier = protocol::ScramVerifier::FromPassword("ops_pw").ToString();
  PgshiftProcess proxy(Cluster().port(), "auth_method = \"scram-sha-256\"", "user = \"postgres\"",
                       User("ops", verifier));
  ASSERT_TRUE(proxy.ok());
  PgConn ops(proxy.ConnInfo("user=ops password=ops_pw"));
  ASSERT_TRUE(ops.ok()) << ops.error();
  EXPECT_EQ(ops.Value("SELECT current_user"), "postgres");
  EXPECT_FALSE(PgConn(proxy.ConnInfo("user=ops password=ops_pwx")).ok());
}

TEST(Auth, BackendReusesTheClientsPasswordWhenItHasNone) {
  PgshiftProcess proxy(Cluster().port(), "auth_method = \"scram-sha-256\"", "",
                       User("scram_user", "scram_user_pw"));
  ASSERT_TRUE(proxy.ok());
  PgConn reuse(proxy.ConnInfo("user=scram_user password=scram_user_pw"));
  ASSERT_TRUE(reuse.ok()) << reuse.error();
  EXPECT_EQ(reuse.Value("SELECT current_user"), "scram_user");
}

TEST(Auth, Md5OnBothSides) {
  PgshiftProcess proxy(Cluster().port(), "auth_method = \"md5\"",
                       "user = \"md5_user\"\npassword = \"md5_user_pw\"", User("app", "app_pw"));
  ASSERT_TRUE(proxy.ok());
  PgConn conn(proxy.ConnInfo("user=app password=app_pw"));
  ASSERT_TRUE(conn.ok()) << conn.error();
  EXPECT_EQ(conn.Value("SELECT current_user"), "md5_user");
  RawClient raw(proxy.port());
  auto error = raw.Login("app", "wrong");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->sqlstate(), "28P01");
  EXPECT_EQ(error->message(), "password authentication failed for user \"app\"");
}

TEST(Auth, BackendRefusalReachesTheClientVerbatim) {
  PgshiftProcess proxy(Cluster().port(), "", "user = \"scram_user\"\npassword = \"wrong\"");
  ASSERT_TRUE(proxy.ok());
  RawClient raw(proxy.port());
  auto error = raw.Login("anyone");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->sqlstate(), "28P01");
  EXPECT_EQ(error->message(), "password authentication failed for user \"scram_user\"");
}

TEST(Auth, MissingBackendPasswordNamesTheSetting) {
  PgshiftProcess proxy(Cluster().port(), "", "user = \"scram_user\"");
  ASSERT_TRUE(proxy.ok());
  RawClient raw(proxy.port());
  auto error = raw.Login("anyone");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->sqlstate(), "08006");
  EXPECT_NE(error->message().find("set backends.old.password"), std::string_view::npos)
      << error->message();
}

TEST(Auth, TrustWithUsersListedRefusesOthers) {
  PgshiftProcess proxy(Cluster().port(), "", "", User("postgres", ""));
  ASSERT_TRUE(proxy.ok());
  EXPECT_TRUE(PgConn(proxy.ConnInfo()).ok());
  RawClient raw(proxy.port());
  auto error = raw.Login("stranger");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->sqlstate(), "28000");
  EXPECT_NE(error->message().find("\"stranger\""), std::string_view::npos);
}

TEST(Auth, BackendLoginErrorsReachTheClient) {
  PgshiftProcess proxy(Cluster().port());
  ASSERT_TRUE(proxy.ok());
  // PostgreSQL's own error, verbatim.
  PgConn conn(proxy.ConnInfo("dbname=no_such_db"));
  EXPECT_FALSE(conn.ok());
  EXPECT_NE(conn.error().find("database \"no_such_db\" does not exist"), std::string::npos)
      << conn.error();
}

TEST(Auth, UnreachableBackendIsAConnectionError) {
  int dead_port = FreePort();  // nothing listens there
  PgshiftProcess proxy(dead_port, "connect_timeout = 2");
  ASSERT_TRUE(proxy.ok());
  RawClient raw(proxy.port());
  auto error = raw.Login("app");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->sqlstate(), "08006");
  EXPECT_EQ(error->message(), "pgshift: could not connect to backend old (127.0.0.1:" +
                                  std::to_string(dead_port) + "): Connection refused");
  EXPECT_NE(proxy.log().find("event=backend_login_failed"), std::string::npos);
}

}  // namespace
}  // namespace pgshift::testing
