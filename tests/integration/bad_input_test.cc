// Bad input costs only the session that sent it: an ErrorResponse and its
// connection. The process and every other session carry on.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "protocol/messages/negotiate_protocol_version.h"
#include "protocol/messages/query.h"
#include "protocol/messages/startup.h"
#include "protocol/wire.h"
#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"

namespace pgshift::testing {
namespace {

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(proxy_.ok());
    ASSERT_TRUE(bystander_.ok()) << bystander_.error();
    ASSERT_TRUE(bystander_.Ok("BEGIN"));
    ASSERT_TRUE(bystander_.Ok("CREATE TEMP TABLE witness AS SELECT 1 AS x"));
  }
  void TearDown() override {
    // The session that was open all along is intact, mid-transaction.
    EXPECT_EQ(bystander_.Value("SELECT x FROM witness"), "1");
    EXPECT_TRUE(bystander_.Ok("COMMIT"));
    EXPECT_EQ(PgConn(proxy_.ConnInfo()).Value("SELECT 'new sessions work'"), "new sessions work");
    EXPECT_EQ(proxy_.Stop(), 0) << proxy_.LogEnd();
  }

  // A logged-in raw session.
  std::unique_ptr<RawClient> Session(const std::string& app = "bad_input") {
    auto c = std::make_unique<RawClient>(proxy_.port());
    EXPECT_EQ(c->Login("postgres", "", {{"application_name", app}}), std::nullopt);
    return c;
  }

  static std::string Header(char type, int32_t length) {
    std::string h(1, type);
    h.append(4, '\0');
    protocol::WriteBigEndian32(h.data() + 1, length);
    return h;
  }

  void ExpectProtocolViolation(RawClient& c, const std::string& message_part) {
    auto error = c.ReadError();
    ASSERT_TRUE(error) << "no ErrorResponse before the connection closed";
    EXPECT_EQ(error->sqlstate(), "08P01");
    EXPECT_EQ(error->Get('S'), "FATAL");
    EXPECT_NE(error->message().find(message_part), std::string_view::npos) << error->message();
    EXPECT_TRUE(c.WaitForClose());
  }

  PgshiftProcess proxy_{Cluster().port(), "max_message_size = 1048576"};
  PgConn bystander_{proxy_.ConnInfo()};
};

TEST_F(BadInput, LengthBelowFour) {
  auto c = Session();
  c->Send(Header('Q', 3));
  ExpectProtocolViolation(*c, "invalid message length 3");
}

TEST_F(BadInput, LengthAboveTheLimitIsRefusedBeforeTheBody) {
  auto c = Session();
  c->Send(Header('Q', 2 * 1048576));  // no body follows: the header alone is refused
  ExpectProtocolViolation(*c, "invalid message length 2097152");
  auto d = Session();
  d->Send(Header('P', 0x7fffffff));
  ExpectProtocolViolation(*d, "(limit 1048576)");
}

TEST_F(BadInput, UnknownMessageType) {
  auto c = Session();
  std::string msg;
  protocol::MessageWriter(msg, 'z').Int32(7);
  c->Send(msg);
  ExpectProtocolViolation(*c, "invalid message type 'z'");
  auto d = Session();
  d->Send(std::string("\x01\0\0\0\x04", 5));
  ExpectProtocolViolation(*d, "invalid message type 1");
}

TEST_F(BadInput, MessagesBeforeTheBadOneAreNotHalfApplied) {
  auto c = Session();
  std::string msg;
  protocol::Query{"SELECT 1"}.Encode(msg);
  msg += Header('Q', 1);
  c->Send(msg);
  ExpectProtocolViolation(*c, "invalid message length 1");
}

TEST_F(BadInput, ClientVanishesMidMessage) {
  PgConn direct(Cluster().ConnInfo());
  auto sessions = [&] {
    return direct.Value("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'vanisher'");
  };
  {
    auto c = Session("vanisher");
    EXPECT_EQ(sessions(), "1");
    std::string partial = Header('Q', 1000) + "SELECT 'half";
    c->Send(partial);
  }  // closed with 990 bytes of the message unsent
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (sessions() != "0" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(sessions(), "0") << "the backend connection is released";
}

// What is no startup packet is logged and the connection closed without a
// word, as the postmaster does.
TEST_F(BadInput, StartupPacketTooLongIsClosedWithoutAnAnswer) {
  RawClient c(proxy_.port());
  std::string packet(4, '\0');
  protocol::WriteBigEndian32(packet.data(), 20000);
  c.Send(packet);
  EXPECT_EQ(c.Read(), std::nullopt) << "no ErrorResponse";
  EXPECT_TRUE(c.WaitForClose());
  EXPECT_NE(proxy_.LogEnd().find("event=invalid_startup_packet"), std::string::npos);
}

// node-postgres's quick disconnect: connect, send Terminate at once.
TEST_F(BadInput, TerminateInPlaceOfAStartupGetsNoError) {
  RawClient c(proxy_.port());
  c.Send(Header('X', 4));
  EXPECT_EQ(c.Read(), std::nullopt) << "no ErrorResponse";
  EXPECT_TRUE(c.WaitForClose());
}

// The startup message and the first Query in one write: both answered.
TEST_F(BadInput, StartupAndQueryInOneWriteAreBothAnswered) {
  RawClient c(proxy_.port());
  protocol::StartupMessage start;
  start.Set("user", "postgres");
  std::string out;
  start.Encode(out);
  protocol::Query{"SELECT 42"}.Encode(out);
  c.Send(out);
  int ready = 0;
  std::string row;
  while (ready < 2) {
    auto m = c.Read();
    ASSERT_TRUE(m) << "the Query went unanswered";
    if (m->type == 'Z') ++ready;
    if (m->type == 'D') row = m->payload;
    ASSERT_NE(m->type, 'E') << m->payload;
  }
  EXPECT_NE(row.find("42"), std::string::npos);
}

// A client asking for protocol 3.2 (PostgreSQL 18's libpq with
// max_protocol_version=latest) and an option pgshift does not know is told
// 3.0 and carries on in it.
TEST_F(BadInput, NewerMinorVersionsAreNegotiatedDownTo30) {
  RawClient c(proxy_.port());
  protocol::StartupMessage start;
  start.protocol_version = (3 << 16) | 2;
  start.Set("user", "postgres");
  start.Set("_pq_.future_option", "on");
  std::string out;
  start.Encode(out);
  c.Send(out);
  auto first = c.Read();
  ASSERT_TRUE(first);
  ASSERT_EQ(first->type, 'v') << first->payload;
  auto negotiated = protocol::NegotiateProtocolVersion::Decode(first->payload);
  ASSERT_TRUE(negotiated.ok());
  EXPECT_EQ(negotiated->newest_minor_version, 0);
  EXPECT_EQ(negotiated->unrecognized_options, std::vector<std::string>{"_pq_.future_option"});
  std::optional<RawClient::Message> m;
  while ((m = c.Read()) && m->type != 'Z') ASSERT_NE(m->type, 'E') << m->payload;
  ASSERT_TRUE(m) << "login did not finish";
  std::string query;
  protocol::Query{"SELECT 1"}.Encode(query);
  c.Send(query);
  while ((m = c.Read()) && m->type != 'Z') ASSERT_NE(m->type, 'E') << m->payload;
  EXPECT_TRUE(m);
}

TEST_F(BadInput, UnsupportedProtocolVersion) {
  RawClient c(proxy_.port());
  protocol::StartupMessage v2;
  v2.protocol_version = 2 << 16;
  v2.Set("user", "postgres");
  std::string out;
  v2.Encode(out);
  c.Send(out);
  auto error = c.ReadError();
  ASSERT_TRUE(error);
  EXPECT_EQ(error->sqlstate(), "0A000");
  EXPECT_NE(error->message().find("unsupported frontend protocol 2.0"), std::string_view::npos);
}

TEST_F(BadInput, NoUserName) {
  RawClient c(proxy_.port());
  protocol::StartupMessage start;
  start.Set("database", "postgres");
  std::string out;
  start.Encode(out);
  c.Send(out);
  auto error = c.ReadError();
  ASSERT_TRUE(error);
  EXPECT_EQ(error->sqlstate(), "28000");
}

TEST_F(BadInput, PasswordMessageOutsideAuthentication) {
  auto c = Session();
  std::string msg;
  protocol::MessageWriter(msg, 'p').CString("sneaky");
  c->Send(msg);
  ExpectProtocolViolation(*c, "invalid message type 'p'");
}

TEST_F(BadInput, EncryptionRequestsAnsweredNWithoutTls) {
  RawClient c(proxy_.port());
  std::string gss, ssl;
  protocol::GssEncRequest{}.Encode(gss);
  c.Send(gss);
  EXPECT_EQ(c.ReadByte(), 'N');
  EXPECT_EQ(c.Login("postgres"), std::nullopt) << "startup proceeds after the N";

  RawClient d(proxy_.port());
  protocol::SslRequest{}.Encode(ssl);
  d.Send(ssl);
  EXPECT_EQ(d.ReadByte(), 'N');
  d.Send(ssl);  // a second request of the same kind is a violation
  ExpectProtocolViolation(d, "duplicate encryption request");

  // libpq's order with gssencmode=prefer: GSS refused, then TLS.
  RawClient e(proxy_.port());
  e.Send(gss);
  EXPECT_EQ(e.ReadByte(), 'N');
  e.Send(ssl);
  EXPECT_EQ(e.ReadByte(), 'N');
  EXPECT_EQ(e.Login("postgres"), std::nullopt) << "startup proceeds after both";
}

TEST(MaxClients, RefusesTheClientOverTheLimitWith53300) {
  PgshiftProcess proxy(Cluster().port(), "max_clients = 3");
  ASSERT_TRUE(proxy.ok());
  std::vector<std::unique_ptr<PgConn>> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(std::make_unique<PgConn>(proxy.ConnInfo()));
    ASSERT_TRUE(open.back()->ok()) << open.back()->error();
  }
  RawClient over(proxy.port());
  auto error = over.Login("postgres");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->sqlstate(), "53300");
  EXPECT_EQ(error->message(), "sorry, too many clients already");
  PgConn libpq(proxy.ConnInfo());
  EXPECT_NE(libpq.error().find("sorry, too many clients already"), std::string::npos);
  EXPECT_NE(proxy.log().find("max_clients (3) reached"), std::string::npos);
  open.pop_back();
  // The slot is released when that session's coroutine finishes.
  bool admitted = false;
  for (int i = 0; i < 200 && !admitted; ++i) {
    admitted = PgConn(proxy.ConnInfo()).ok();
    if (!admitted) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(admitted);
  EXPECT_EQ(open[0]->Value("SELECT 'still here'"), "still here");
}

// Connections that never finish logging in: closed at login_timeout, and
// never more than max_logins at once (the next is closed at once); a
// client that logs in holds no such slot. max_clients counts only clients
// that authenticated, so the silent ones crowd out no one.
TEST(LoginLimits, SlowAndSilentLoginsAreBoundedInTimeAndNumber) {
  const int admin_port = FreePort();
  PgshiftProcess proxy(Cluster().port(),
                       "login_timeout = 1\nmax_logins = 2\nmax_clients = 2\n"
                       "auth_method = \"scram-sha-256\"\nadmin_max_clients = 1\n"
                       "admin_listen = \"127.0.0.1:" +
                           std::to_string(admin_port) + "\"",
                       "user = \"postgres\"",
                       "[[users]]\nname = \"app\"\npassword = \"pw\"\nadmin = true\n");
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();
  // The start-up check's own connection is gone by now.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // Silent, and one that stops at the password request.
  RawClient silent(proxy.port(), 5000);
  RawClient stuck(proxy.port(), 5000);
  protocol::StartupMessage start;
  start.Set("user", "app");
  std::string packet;
  start.Encode(packet);
  ASSERT_TRUE(stuck.Send(packet));
  auto asked = stuck.Read();
  ASSERT_TRUE(asked) << proxy.LogEnd();
  EXPECT_EQ(asked->type, 'R');
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  RawClient third(proxy.port(), 5000);
  EXPECT_EQ(third.Read(), std::nullopt) << "over max_logins: closed without a word";
  EXPECT_TRUE(silent.WaitForClose()) << "login_timeout closes the silent one";
  EXPECT_TRUE(stuck.WaitForClose()) << "and the one that never answered";
  EXPECT_TRUE(proxy.AwaitLog("event=login_timeout")) << proxy.LogEnd();
  EXPECT_TRUE(proxy.AwaitLog("event=logins_full")) << proxy.LogEnd();
  // Authenticated clients hold no login slot: more than max_logins at once.
  PgConn a(proxy.ConnInfo("user=app password=pw"));
  PgConn b(proxy.ConnInfo("user=app password=pw"));
  ASSERT_TRUE(a.ok()) << a.error();
  ASSERT_TRUE(b.ok()) << b.error();
  // A third is refused by max_clients, after authenticating.
  PgConn c(proxy.ConnInfo("user=app password=pw"));
  EXPECT_NE(c.error().find("sorry, too many clients already"), std::string::npos) << c.error();
  // The admin console has its own cap.
  RawClient console(admin_port, 5000);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  RawClient second_console(admin_port, 5000);
  EXPECT_EQ(second_console.Read(), std::nullopt) << "over admin_max_clients";
  EXPECT_NE(proxy.log().find("admin_max_clients (1) reached"), std::string::npos);
  EXPECT_EQ(a.Value("SELECT 'still here'"), "still here");
}

// Out of file descriptors, accept fails with EMFILE while the connection
// stays queued: pgshift waits a moment instead of spinning, says so once
// per interval, and takes the queued clients once descriptors are free.
TEST(LoginLimits, RunningOutOfFileDescriptorsBacksOff) {
  PgshiftProcess proxy(Cluster().port());
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();
  std::string out;
  ASSERT_EQ(CaptureCommand("prlimit --pid " + std::to_string(proxy.pid()) + " --nofile=64:64", out),
            0)
      << out;
  std::vector<std::unique_ptr<RawClient>> flood;
  for (int i = 0; i < 80; ++i) flood.push_back(std::make_unique<RawClient>(proxy.port(), 2000));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const std::string log = proxy.log();
  size_t said = 0;
  for (size_t at = log.find("event=accept_failed"); at != std::string::npos;
       at = log.find("event=accept_failed", at + 1)) {
    ++said;
  }
  EXPECT_EQ(said, 1u) << "once per interval, not per attempt\n" << proxy.LogEnd();
  flood.clear();
  bool served = false;
  for (int i = 0; i < 100 && !served; ++i) {
    served = PgConn(proxy.ConnInfo()).ok();
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(served) << proxy.LogEnd();
}

}  // namespace
}  // namespace pgshift::testing

namespace pgshift::testing {
namespace {

TEST(BackendFailure, SilentBackendHitsTheConnectTimeout) {
  SilentListener silent;
  ASSERT_NE(silent.port(), 0);
  PgshiftProcess proxy(silent.port(), "connect_timeout = 1", "sslmode = \"disable\"");
  ASSERT_TRUE(proxy.ok());
  RawClient c(proxy.port());
  auto start = std::chrono::steady_clock::now();
  auto error = c.Login("app");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10)) << "hang guard";
  ASSERT_TRUE(error);
  EXPECT_EQ(error->sqlstate(), "08006");
  EXPECT_NE(error->message().find("timeout expired"), std::string_view::npos) << error->message();
}

TEST(BackendFailure, KilledBackendLeavesTheClientAnError) {
  // SIGKILL makes the postmaster restart every backend, so this test has a
  // cluster of its own.
  PgCluster cluster;
  ASSERT_TRUE(cluster.ok());
  PgshiftProcess proxy(cluster.port());
  ASSERT_TRUE(proxy.ok());
  PgConn victim(proxy.ConnInfo());
  ASSERT_TRUE(victim.ok());
  std::string pid = *victim.Value("SELECT pg_backend_pid()");
  ASSERT_EQ(kill(std::stoi(pid), SIGKILL), 0);
  PgResult r = victim.Exec("SELECT 1");
  EXPECT_EQ(PQresultStatus(r.get()), PGRES_FATAL_ERROR);
  EXPECT_NE(victim.error().find("pgshift: lost the connection to backend old"), std::string::npos)
      << victim.error();
  EXPECT_NE(proxy.log().find("event=backend_lost"), std::string::npos);
  // pgshift serves new sessions once PostgreSQL has recovered.
  bool recovered = false;
  for (int i = 0; i < 200 && !recovered; ++i) {
    recovered = PgConn(proxy.ConnInfo()).Value("SELECT 'back'") == "back";
    if (!recovered) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(recovered);
}

}  // namespace
}  // namespace pgshift::testing
