// What a libpq client sees through pgshift is what it sees connected directly.
#include <gtest/gtest.h>
#include <poll.h>

#include <chrono>
#include <thread>

#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"

namespace pgshift::testing {
namespace {

using Clock = std::chrono::steady_clock;

class Passthrough : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(proxy_.ok()); }
  PgConn Direct(const std::string& extra = "") { return PgConn(Cluster().ConnInfo(extra)); }
  PgConn Proxied(const std::string& extra = "") { return PgConn(proxy_.ConnInfo(extra)); }

  PgshiftProcess proxy_{Cluster().port()};
};

TEST_F(Passthrough, ErrorsCarryTheSameFields) {
  PgConn direct = Direct(), proxied = Proxied();
  ASSERT_TRUE(direct.ok()) << direct.error();
  ASSERT_TRUE(proxied.ok()) << proxied.error();
  ASSERT_TRUE(direct.Ok("CREATE TABLE IF NOT EXISTS uniq (id int PRIMARY KEY)"));
  ASSERT_TRUE(direct.Ok("INSERT INTO uniq VALUES (1) ON CONFLICT DO NOTHING"));
  for (const char* sql : {"SELECT 1/0", "SELECT * FROM no_such_table", "SELEC 1",
                          "SELECT 1 FROM pg_class WHERE nocolumn = 1",
                          "INSERT INTO uniq VALUES (1)", "SELECT 'abc'::int"}) {
    PgError expected = ErrorOf(direct.Exec(sql).get());
    PgError got = ErrorOf(proxied.Exec(sql).get());
    EXPECT_FALSE(expected.sqlstate.empty()) << sql;
    EXPECT_EQ(got, expected) << sql;
  }
  PgError unique = ErrorOf(proxied.Exec("INSERT INTO uniq VALUES (1)").get());
  EXPECT_EQ(unique.sqlstate, "23505");
  EXPECT_EQ(unique.detail, "Key (id)=(1) already exists.");
  EXPECT_EQ(ErrorOf(proxied.Exec("SELECT * FROM no_such_table").get()).position, "15");
  EXPECT_EQ(proxied.Value("SELECT 'still usable'"), "still usable");
}

TEST_F(Passthrough, NoticesArriveAsDirect) {
  PgConn direct = Direct(), proxied = Proxied();
  const char* sql =
      "DO $$ BEGIN RAISE NOTICE 'hello %', 42 USING DETAIL = 'd', HINT = 'h'; "
      "RAISE WARNING 'careful'; END $$";
  ASSERT_TRUE(direct.Ok(sql));
  ASSERT_TRUE(proxied.Ok(sql));
  ASSERT_EQ(proxied.notices().size(), 2u);
  EXPECT_EQ(proxied.notices(), direct.notices());
  EXPECT_EQ(proxied.notices()[0].message, "hello 42");
  EXPECT_EQ(proxied.notices()[0].hint, "h");
}

TEST_F(Passthrough, StartupParametersAndBackendKeyDataAreTheBackends) {
  PgConn direct = Direct("application_name=pgshift_test"),
         proxied = Proxied("application_name=pgshift_test");
  ASSERT_TRUE(proxied.ok()) << proxied.error();
  for (const char* name : {"server_version", "server_encoding", "client_encoding", "DateStyle",
                           "TimeZone", "integer_datetimes", "standard_conforming_strings",
                           "application_name", "IntervalStyle", "is_superuser",
                           "session_authorization", "default_transaction_read_only",
                           "in_hot_standby"}) {
    const char* expected = PQparameterStatus(direct.get(), name);
    const char* got = PQparameterStatus(proxied.get(), name);
    ASSERT_NE(expected, nullptr) << name;
    ASSERT_NE(got, nullptr) << name;
    EXPECT_STREQ(got, expected) << name;
  }
  EXPECT_EQ(std::to_string(PQbackendPID(proxied.get())), proxied.Value("SELECT pg_backend_pid()"))
      << "the client is told the real backend pid";
  ASSERT_TRUE(proxied.Ok("SET application_name = 'renamed'"));
  EXPECT_STREQ(PQparameterStatus(proxied.get(), "application_name"), "renamed");
}

TEST_F(Passthrough, ClientEncodingSetAtStartupIsHonoured) {
  PgConn direct = Direct("client_encoding=LATIN1"), proxied = Proxied("client_encoding=LATIN1");
  ASSERT_TRUE(proxied.ok()) << proxied.error();
  EXPECT_STREQ(PQparameterStatus(proxied.get(), "client_encoding"), "LATIN1");
  EXPECT_EQ(proxied.Value("SHOW client_encoding"), "LATIN1");
  // U+00E9 comes back as the single LATIN1 byte 0xE9, as it does directly.
  std::string sql = "SELECT chr(233)";
  EXPECT_EQ(proxied.Value(sql), std::string("\xe9"));
  EXPECT_EQ(proxied.Value(sql), direct.Value(sql));
}

TEST_F(Passthrough, CopyInAndOutOfAHundredThousandRows) {
  PgConn proxied = Proxied(), direct = Direct();
  ASSERT_TRUE(proxied.Ok("DROP TABLE IF EXISTS copy_rows"));
  ASSERT_TRUE(proxied.Ok("CREATE TABLE copy_rows (id int, label text)"));
  PgResult start = proxied.Exec("COPY copy_rows FROM STDIN");
  ASSERT_EQ(PQresultStatus(start.get()), PGRES_COPY_IN);
  std::string chunk;
  for (int i = 1; i <= 100000; ++i) {
    chunk += std::to_string(i) + "\trow " + std::to_string(i) + "\n";
    if (chunk.size() > 60000 || i == 100000) {
      ASSERT_EQ(PQputCopyData(proxied.get(), chunk.data(), static_cast<int>(chunk.size())), 1);
      chunk.clear();
    }
  }
  ASSERT_EQ(PQputCopyEnd(proxied.get(), nullptr), 1);
  PgResult done(PQgetResult(proxied.get()));
  EXPECT_EQ(PQresultStatus(done.get()), PGRES_COMMAND_OK) << PQerrorMessage(proxied.get());
  EXPECT_STREQ(PQcmdTuples(done.get()), "100000");
  while (PgResult(PQgetResult(proxied.get()))) {
  }
  EXPECT_EQ(direct.Value("SELECT count(*) FROM copy_rows"), "100000");

  auto copy_out = [](PgConn& conn) {
    PgResult r = conn.Exec("COPY (SELECT * FROM copy_rows ORDER BY id) TO STDOUT");
    EXPECT_EQ(PQresultStatus(r.get()), PGRES_COPY_OUT);
    std::string all;
    char* buf = nullptr;
    int n;
    while ((n = PQgetCopyData(conn.get(), &buf, 0)) > 0) {
      all.append(buf, static_cast<size_t>(n));
      PQfreemem(buf);
    }
    EXPECT_EQ(n, -1);
    PgResult end(PQgetResult(conn.get()));
    EXPECT_EQ(PQresultStatus(end.get()), PGRES_COMMAND_OK);
    while (PgResult(PQgetResult(conn.get()))) {
    }
    return all;
  };
  std::string through = copy_out(proxied);
  EXPECT_EQ(std::count(through.begin(), through.end(), '\n'), 100000);
  EXPECT_TRUE(through == copy_out(direct)) << "COPY TO STDOUT differs from direct";

  // A COPY the client abandons fails cleanly and leaves the session usable.
  PgResult again = proxied.Exec("COPY copy_rows FROM STDIN");
  ASSERT_EQ(PQresultStatus(again.get()), PGRES_COPY_IN);
  PQputCopyData(proxied.get(), "1\tx\n", 4);
  PQputCopyEnd(proxied.get(), "client changed its mind");
  PgResult failed(PQgetResult(proxied.get()));
  EXPECT_EQ(ErrorOf(failed.get()).sqlstate, "57014");
  while (PgResult(PQgetResult(proxied.get()))) {
  }
  EXPECT_EQ(proxied.Value("SELECT count(*) FROM copy_rows"), "100000");
}

TEST_F(Passthrough, NotificationsCarryTheNotifiersRealPid) {
  PgConn listener = Proxied(), notifier = Proxied();
  ASSERT_TRUE(listener.Ok("LISTEN pgshift_channel"));
  std::string notifier_pid = *notifier.Value("SELECT pg_backend_pid()");
  ASSERT_TRUE(notifier.Ok("NOTIFY pgshift_channel, 'hello'"));
  PGnotify* n = nullptr;
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (n == nullptr && Clock::now() < deadline) {
    pollfd pfd{PQsocket(listener.get()), POLLIN, 0};
    poll(&pfd, 1, 100);
    PQconsumeInput(listener.get());
    n = PQnotifies(listener.get());
  }
  ASSERT_NE(n, nullptr) << "no notification within 10 s";
  EXPECT_STREQ(n->relname, "pgshift_channel");
  EXPECT_STREQ(n->extra, "hello");
  EXPECT_EQ(std::to_string(n->be_pid), notifier_pid);
  PQfreemem(n);
}

TEST_F(Passthrough, CancelStopsARunningQuery) {
  PgConn proxied = Proxied();
  ASSERT_TRUE(PQsendQuery(proxied.get(), "SELECT pg_sleep(30)"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto start = Clock::now();
  PGcancel* cancel = PQgetCancel(proxied.get());
  char errbuf[256];
  ASSERT_TRUE(PQcancel(cancel, errbuf, sizeof errbuf)) << errbuf;
  PQfreeCancel(cancel);
  PgResult r(PQgetResult(proxied.get()));
  auto elapsed = Clock::now() - start;
  EXPECT_EQ(ErrorOf(r.get()).sqlstate, "57014");
  EXPECT_EQ(ErrorOf(r.get()).message, "canceling statement due to user request");
  EXPECT_LT(elapsed, std::chrono::seconds(10)) << "hang guard";
  while (PgResult(PQgetResult(proxied.get()))) {
  }
  EXPECT_EQ(proxied.Value("SELECT 'after cancel'"), "after cancel");
}

TEST_F(Passthrough, TerminatedBackendGivesTheClientAnError) {
  PgConn proxied = Proxied(), direct = Direct();
  std::string pid = *proxied.Value("SELECT pg_backend_pid()");
  ASSERT_EQ(direct.Value("SELECT pg_terminate_backend(" + pid + ")"), "t");
  auto start = Clock::now();
  PgResult r = proxied.Exec("SELECT 1");
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10)) << "hang guard";
  EXPECT_EQ(PQresultStatus(r.get()), PGRES_FATAL_ERROR);
  EXPECT_NE(proxied.error().find("terminating connection due to administrator command"),
            std::string::npos)
      << proxied.error();
  EXPECT_EQ(PQstatus(proxied.get()), CONNECTION_BAD);
  EXPECT_EQ(Proxied().Value("SELECT 'others unaffected'"), "others unaffected");
}

TEST_F(Passthrough, SixtyFourMebibyteValueRoundTrips) {
  PgConn proxied = Proxied();
  std::string big(64 << 20, 'a');
  for (size_t i = 0; i < big.size(); i += 4093) big[i] = static_cast<char>('a' + i % 26);
  const char* values[] = {big.c_str()};
  PgResult r(PQexecParams(proxied.get(), "SELECT $1::text, md5($1::text)", 1, nullptr, values,
                          nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << PQerrorMessage(proxied.get());
  ASSERT_EQ(static_cast<size_t>(PQgetlength(r.get(), 0, 0)), big.size());
  EXPECT_TRUE(std::string_view(PQgetvalue(r.get(), 0, 0), big.size()) == big);
  PgConn direct = Direct();
  PgResult d(PQexecParams(direct.get(), "SELECT md5($1::text)", 1, nullptr, values, nullptr,
                          nullptr, 0));
  EXPECT_STREQ(PQgetvalue(r.get(), 0, 1), PQgetvalue(d.get(), 0, 0));
}

// Runs a pipeline of extended-protocol queries, one of which fails, and
// returns a transcript of every result libpq hands back.
std::vector<std::string> RunPipeline(PgConn& conn) {
  std::vector<std::string> transcript;
  PGconn* c = conn.get();
  EXPECT_EQ(PQenterPipelineMode(c), 1);
  PQsendPrepare(c, "double_it", "SELECT $1::int * 2", 1, nullptr);
  for (int i = 0; i < 50; ++i) {
    std::string v = std::to_string(i);
    const char* params[] = {v.c_str()};
    if (i == 25) PQsendQueryParams(c, "SELECT 1/0", 0, nullptr, nullptr, nullptr, nullptr, 0);
    if (i == 35) PQpipelineSync(c);  // 25..34 are aborted by the error
    PQsendQueryPrepared(c, "double_it", 1, params, nullptr, nullptr, 0);
  }
  PQpipelineSync(c);
  int syncs = 0;
  while (syncs < 2) {
    PgResult r(PQgetResult(c));
    if (!r) continue;  // end of one query's results
    ExecStatusType st = PQresultStatus(r.get());
    if (st == PGRES_PIPELINE_SYNC) {
      ++syncs;
      transcript.push_back("sync");
    } else if (st == PGRES_TUPLES_OK) {
      transcript.push_back(std::string("row ") + PQgetvalue(r.get(), 0, 0));
    } else {
      transcript.push_back(std::string(PQresStatus(st)) + " " + ErrorOf(r.get()).sqlstate);
    }
  }
  EXPECT_EQ(PQexitPipelineMode(c), 1);
  return transcript;
}

TEST_F(Passthrough, PipelinedExtendedProtocolMatchesDirect) {
  PgConn direct = Direct(), proxied = Proxied();
  std::vector<std::string> expected = RunPipeline(direct);
  std::vector<std::string> got = RunPipeline(proxied);
  EXPECT_EQ(got, expected);
  EXPECT_GT(got.size(), 50u);
  EXPECT_NE(std::find(got.begin(), got.end(), "PGRES_FATAL_ERROR 22012"), got.end());
  EXPECT_NE(std::find(got.begin(), got.end(), "PGRES_PIPELINE_ABORTED "), got.end());
}

TEST_F(Passthrough, PreparedStatementsDescribeAsDirect) {
  PgConn direct = Direct(), proxied = Proxied();
  for (PgConn* c : {&direct, &proxied}) {
    PgResult p(PQprepare(c->get(), "q", "SELECT $1::int AS n, now() AS t, $2::text AS s", 2,
                         nullptr));
    ASSERT_EQ(PQresultStatus(p.get()), PGRES_COMMAND_OK);
  }
  PgResult dd(PQdescribePrepared(direct.get(), "q"));
  PgResult pd(PQdescribePrepared(proxied.get(), "q"));
  ASSERT_EQ(PQnfields(pd.get()), 3);
  ASSERT_EQ(PQnparams(pd.get()), 2);
  for (int i = 0; i < 3; ++i) {
    EXPECT_STREQ(PQfname(pd.get(), i), PQfname(dd.get(), i));
    EXPECT_EQ(PQftype(pd.get(), i), PQftype(dd.get(), i));
  }
  for (int i = 0; i < 2; ++i) EXPECT_EQ(PQparamtype(pd.get(), i), PQparamtype(dd.get(), i));
  const char* params[] = {"7", "seven"};
  PgResult r(PQexecPrepared(proxied.get(), "q", 2, params, nullptr, nullptr, 0));
  EXPECT_STREQ(PQgetvalue(r.get(), 0, 0), "7");
  EXPECT_STREQ(PQgetvalue(r.get(), 0, 2), "seven");
}

TEST_F(Passthrough, MultiStatementQueriesAndCommandTags) {
  PgConn proxied = Proxied();
  ASSERT_TRUE(proxied.Ok("DROP TABLE IF EXISTS tags; CREATE TABLE tags (id int)"));
  PGconn* c = proxied.get();
  ASSERT_TRUE(PQsendQuery(c, "INSERT INTO tags VALUES (1),(2),(3); UPDATE tags SET id = id + 1 "
                             "WHERE id > 1; DELETE FROM tags WHERE id = 4; SELECT count(*) FROM tags"));
  std::vector<std::string> tags;
  while (PgResult r = PgResult(PQgetResult(c))) tags.push_back(PQcmdStatus(r.get()));
  EXPECT_EQ(tags, (std::vector<std::string>{"INSERT 0 3", "UPDATE 2", "DELETE 1", "SELECT 1"}));
  EXPECT_EQ(proxied.Value("BEGIN; INSERT INTO tags VALUES (9); COMMIT; SELECT count(*) FROM tags"),
            "3");
  EXPECT_EQ(PQtransactionStatus(c), PQTRANS_IDLE);
}

}  // namespace
}  // namespace pgshift::testing
