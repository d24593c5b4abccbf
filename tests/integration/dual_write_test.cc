// Row mirroring through pgshift with real clients, on both topologies: new
// tables next to the old ones in the same database, and on a second
// PostgreSQL server. `channels` is mirrored to channels_v2 (title renamed
// name). The client sees exactly what it would see without pgshift, and
// every written row lands, identical, on both sides.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <thread>

#include "protocol/messages/bind.h"
#include "protocol/messages/data_row.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/execute.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/query.h"
#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"

namespace pgshift::testing {
namespace {

// Old tables with a serial id, a default of now() and a trigger that draws
// random(): values only the old side can produce, which the mirror must copy.
constexpr const char* kOldSchema =
    "DROP TABLE IF EXISTS channels, tags, posts, pgshift_divergence CASCADE;"
    "CREATE TABLE channels (id serial PRIMARY KEY, title text NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT clock_timestamp(), salt text);"
    "CREATE OR REPLACE FUNCTION salt() RETURNS trigger LANGUAGE plpgsql AS"
    "  $$BEGIN IF NEW.salt IS NULL THEN NEW.salt := md5(random()::text); END IF;"
    "  RETURN NEW; END$$;"
    "CREATE TRIGGER salt BEFORE INSERT ON channels FOR EACH ROW EXECUTE FUNCTION salt();"
    "INSERT INTO channels (id, title, created_at, salt) VALUES"
    "  (1, 'a', '2026-01-01 10:00+00', 's1'), (2, 'b', '2026-01-02 10:00+00', 's2'),"
    "  (3, 'c', '2026-01-03 10:00+00', 's3');"
    "SELECT setval('channels_id_seq', 3);"
    "CREATE TABLE tags (label text);"
    "CREATE TABLE posts (id serial PRIMARY KEY, channel_id int, body text);"
    "INSERT INTO posts (channel_id, body) VALUES (1, 'p1'), (2, 'p2');";

// The new tables, holding the same rows (as a backfill would have left them).
constexpr const char* kNewSchema =
    "DROP TABLE IF EXISTS channels_v2, tags_v2 CASCADE;"
    "CREATE TABLE channels_v2 (id int PRIMARY KEY, name text NOT NULL CHECK (name <> 'forbidden'),"
    "  created_at timestamptz NOT NULL, salt text, extra int DEFAULT 7);"
    "INSERT INTO channels_v2 (id, name, created_at, salt) VALUES"
    "  (1, 'a', '2026-01-01 10:00+00', 's1'), (2, 'b', '2026-01-02 10:00+00', 's2'),"
    "  (3, 'c', '2026-01-03 10:00+00', 's3');"
    "CREATE TABLE tags_v2 (label text);";

enum class Topology { kOneDatabase, kTwoServers };

std::string Name(const ::testing::TestParamInfo<Topology>& info) {
  return info.param == Topology::kOneDatabase ? "OneDatabase" : "TwoServers";
}

class DualWrite : public ::testing::TestWithParam<Topology> {
 protected:
  static void SetUpTestSuite() {
    PgConn admin(Cluster().ConnInfo("dbname=postgres"));
    admin.Ok("CREATE DATABASE mirror_db");
  }
  static void TearDownTestSuite() {
    delete new_cluster_;
    new_cluster_ = nullptr;
  }
  // The second server, started for the first test that needs it; it allows
  // prepared transactions and logs every statement.
  static PgCluster& NewCluster() {
    if (new_cluster_ == nullptr) {
      new_cluster_ = new PgCluster("max_prepared_transactions = 10\nlog_statement = 'all'");
      PgConn admin(new_cluster_->ConnInfo("dbname=postgres"));
      admin.Ok("CREATE DATABASE mirror_db");
    }
    return *new_cluster_;
  }
  bool two_servers() const { return GetParam() == Topology::kTwoServers; }

  void SetUp() override {
    if (two_servers()) {
      ASSERT_TRUE(NewCluster().ok());
    }
    PgConn old = Old();
    ASSERT_TRUE(old.ok()) << old.error();
    PgResult r = old.Exec(two_servers() ? kOldSchema : std::string(kOldSchema) + kNewSchema);
    ASSERT_EQ(PQresultStatus(r.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(r.get());
    if (two_servers()) {
      PgConn fresh = New();
      ASSERT_TRUE(fresh.ok()) << fresh.error();
      ASSERT_TRUE(fresh.Ok(kNewSchema)) << fresh.error();
      ASSERT_TRUE(fresh.Ok("DROP TABLE IF EXISTS pgshift_divergence"));
    }
    StartProxy();
  }
  void StartProxy() {
    proxy_ = std::make_unique<PgshiftProcess>(Cluster().port(), ProxySettings(),
                                              "dbname = \"mirror_db\"\nuser = \"postgres\"",
                                              Config(phase_));
    ASSERT_TRUE(proxy_->ok()) << proxy_->LogEnd();
  }
  // `apply`: channels' mirror_apply (empty: the default, pipelined).
  std::string Config(const std::string& phase, const std::string& on_error = "fail",
                     const std::string& apply = "") const {
    std::string backends;
    if (two_servers()) {
      backends = "[backends.new]\nhost = \"127.0.0.1\"\nport = " +
                 std::to_string(NewCluster().port()) +
                 "\ndbname = \"mirror_db\"\nuser = \"postgres\"\n";
    }
    return backends +
           "[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\nkey = [\"id\"]\n"
           "columns = { title = \"name\" }\nshadow_sample = 1.0\nphase = \"" +
           phase + "\"\non_mirror_error = \"" + on_error + "\"\n" +
           (apply.empty() ? "" : "mirror_apply = \"" + apply + "\"\n") +
           "[[tables]]\nname = \"tags\"\nnew_name = \"tags_v2\"\nphase = \"dual-write\"\n";
  }
  // Rewrites the configuration and reloads it; true when it was applied.
  bool Reconfigure(const std::string& phase, const std::string& on_error = "fail",
                   const std::string& apply = "") {
    proxy_->RewriteConfig(ProxySettings(), "dbname = \"mirror_db\"\nuser = \"postgres\"",
                          Config(phase, on_error, apply));
    return proxy_->Reload().find("config_reloaded") != std::string::npos;
  }
  std::string ProxySettings() const {
    // Leftover prepared mirrors are looked for often and resolved at any
    // age, so tests see it done (and every test runs beside it).
    return "metrics_listen = \"127.0.0.1:" + std::to_string(metrics_port_) + "\"\ndeployment = \"" +
           deployment_ + "\"\nrecovery_interval = " + recovery_interval_ + "\n" +
           "mirror_lock_timeout = 1\nrecovery_min_age = " + recovery_min_age_ +
           "\nwrite_audit_interval = 0.2\n" + extra_settings_;
  }
  std::string extra_settings_;  // more of [proxy]
  std::string deployment_ = "dualwrite";
  std::string recovery_min_age_ = "0";
  std::string recovery_interval_ = "0.2";
  // A per-table counter of channels from /metrics, once it is at least
  // `at_least` (or after a few seconds).
  int64_t Metric(const std::string& name, int64_t at_least = 0) {
    int64_t value = -1;
    for (int i = 0; i < 200; ++i) {
      std::string text = HttpExchange(metrics_port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
      std::string key = "pgshift_table_" + name + "_total{table=\"public.channels\"} ";
      size_t at = text.find(key);
      value = at == std::string::npos ? -1 : std::stoll(text.substr(at + key.size()));
      if (value >= at_least) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return value;
  }
  // `pgshift verify --repair` of channels; its exit status, output in `out`.
  int RepairChannels(std::string& out) {
    return CaptureCommand(PgshiftBinary() + " verify --repair --config " + proxy_->dir() +
                              "/pgshift.toml --table channels",
                          out);
  }
  PgConn Client() { return PgConn(proxy_->ConnInfo("dbname=mirror_db")); }
  PgConn Old() { return PgConn(Cluster().ConnInfo("dbname=mirror_db")); }
  PgConn New() {
    return PgConn((two_servers() ? NewCluster() : Cluster()).ConnInfo("dbname=mirror_db"));
  }
  // Rows of channels on old and of channels_v2 on new that the other side
  // lacks (as EXCEPT ALL both ways would count them), renames applied.
  std::string Differences() {
    if (two_servers()) {
      // A client's COMMIT answers once old has committed; new commits its
      // prepared mirror right after. Compare once it has.
      for (int i = 0; i < 250 && New().Value("SELECT count(*) FROM pg_prepared_xacts") != "0"; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    PgResult old = Old().Exec("SELECT id, title, created_at, salt FROM channels");
    PgResult fresh = New().Exec("SELECT id, name, created_at, salt FROM channels_v2");
    if (PQresultStatus(old.get()) != PGRES_TUPLES_OK ||
        PQresultStatus(fresh.get()) != PGRES_TUPLES_OK) {
      return "error";
    }
    Rows a = RowsOf(old.get()), b = RowsOf(fresh.get());
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    Rows only_a, only_b;
    std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(only_a));
    std::set_difference(b.begin(), b.end(), a.begin(), a.end(), std::back_inserter(only_b));
    return std::to_string(only_a.size() + only_b.size());
  }

  static PgCluster* new_cluster_;
  const int metrics_port_ = FreePort();
  std::string phase_ = "dual-write";
  std::unique_ptr<PgshiftProcess> proxy_;
};
PgCluster* DualWrite::new_cluster_ = nullptr;

INSTANTIATE_TEST_SUITE_P(Topologies, DualWrite,
                         ::testing::Values(Topology::kOneDatabase, Topology::kTwoServers), Name);

TEST_P(DualWrite, InsertsLandOnBothSidesWithTheOldSidesValues) {
  PgConn client = Client();
  PgResult r = client.Exec("INSERT INTO channels (title) VALUES ('d'), ('e')");
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(r.get());
  EXPECT_STREQ(PQcmdStatus(r.get()), "INSERT 0 2");
  EXPECT_EQ(PQnfields(r.get()), 0);
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id IN (4, 5)"), "2");
  EXPECT_EQ(Differences(), "0") << "serial ids, defaults and trigger values agree";
  EXPECT_EQ(client.Value("SELECT count(*) FROM channels"), "5") << "the session goes on";
}

TEST_P(DualWrite, ReturningGivesTheClientItsOwnColumns) {
  PgConn client = Client();
  PgResult r = client.Exec(
      "INSERT INTO channels AS c (title) VALUES ('x') RETURNING c.id, upper(title), title || '!' "
      "AS shout, 42");
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(r.get());
  EXPECT_STREQ(PQcmdStatus(r.get()), "INSERT 0 1");
  EXPECT_EQ(ColumnsOf(r.get()), (std::vector<std::string>{"id", "upper", "shout", "?column?"}));
  EXPECT_EQ(RowsOf(r.get()), (Rows{{"4", "X", "x!", "42"}}));
  PgResult star = client.Exec("UPDATE channels SET title = 'y' WHERE id = 4 RETURNING *");
  EXPECT_STREQ(PQcmdStatus(star.get()), "UPDATE 1");
  EXPECT_EQ(ColumnsOf(star.get()), (std::vector<std::string>{"id", "title", "created_at", "salt"}));
  // Binary results, as a driver may ask for them.
  const char* id[] = {"4"};
  PgResult binary = PgResult(PQexecParams(client.get(),
                                          "UPDATE channels SET title = 'z' WHERE id = $1 "
                                          "RETURNING id",
                                          1, nullptr, id, nullptr, nullptr, 1));
  ASSERT_EQ(PQresultStatus(binary.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(binary.get());
  ASSERT_EQ(PQnfields(binary.get()), 1);
  EXPECT_EQ(PQgetlength(binary.get(), 0, 0), 4) << "an int4 in binary";
  EXPECT_EQ(Differences(), "0");
}

TEST_P(DualWrite, UpdatesAndDeletesFollowByKey) {
  PgConn client = Client();
  PgResult none = client.Exec("UPDATE channels SET title = 'z' WHERE id = 99");
  EXPECT_STREQ(PQcmdStatus(none.get()), "UPDATE 0");
  PgResult from = client.Exec(
      "UPDATE channels c SET title = p.body FROM posts p WHERE p.channel_id = c.id");
  ASSERT_EQ(PQresultStatus(from.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(from.get());
  EXPECT_STREQ(PQcmdStatus(from.get()), "UPDATE 2");
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 2"), "p2");
  PgResult del = client.Exec("DELETE FROM channels USING posts WHERE posts.channel_id = channels.id");
  EXPECT_STREQ(PQcmdStatus(del.get()), "DELETE 2");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2"), "1");
  // A row not backfilled yet is created by an update.
  ASSERT_TRUE(New().Ok("DELETE FROM channels_v2"));
  ASSERT_TRUE(client.Ok("UPDATE channels SET title = 'back' WHERE id = 3"));
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 3"), "back");
  EXPECT_EQ(Differences(), "0");
}

TEST_P(DualWrite, UpsertsBothArmsAndTheClientsOwnCtes) {
  PgConn client = Client();
  PgResult upsert = client.Exec(
      "INSERT INTO channels (id, title) VALUES (1, 'one'), (10, 'ten') ON CONFLICT (id) DO "
      "UPDATE SET title = excluded.title || '+' RETURNING id, title");
  ASSERT_EQ(PQresultStatus(upsert.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(upsert.get());
  EXPECT_STREQ(PQcmdStatus(upsert.get()), "INSERT 0 2");
  EXPECT_EQ(RowsOf(upsert.get()), (Rows{{"1", "one+"}, {"10", "ten"}}));
  PgResult with = client.Exec(
      "WITH moved AS (DELETE FROM posts WHERE id = 1 RETURNING body) "
      "INSERT INTO channels (title) SELECT body FROM moved");
  ASSERT_EQ(PQresultStatus(with.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(with.get());
  EXPECT_STREQ(PQcmdStatus(with.get()), "INSERT 0 1");
  EXPECT_EQ(Old().Value("SELECT count(*) FROM posts"), "1");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE name = 'p1'"), "1");
  EXPECT_EQ(Differences(), "0");
}

TEST_P(DualWrite, PreparedWritesDescribeAsTheyWouldDirectly) {
  PgConn client = Client();
  PgResult prepared = PgResult(
      PQprepare(client.get(), "ins", "INSERT INTO channels (title) VALUES ($1)", 1, nullptr));
  ASSERT_EQ(PQresultStatus(prepared.get()), PGRES_COMMAND_OK)
      << PQresultErrorMessage(prepared.get());
  PgResult described = PgResult(PQdescribePrepared(client.get(), "ins"));
  EXPECT_EQ(PQnfields(described.get()), 0) << "NoData, as for an INSERT";
  EXPECT_EQ(PQnparams(described.get()), 1);
  for (const char* title : {"p", "q", "r"}) {
    const char* values[] = {title};
    PgResult r = PgResult(PQexecPrepared(client.get(), "ins", 1, values, nullptr, nullptr, 0));
    ASSERT_EQ(PQresultStatus(r.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(r.get());
    EXPECT_STREQ(PQcmdStatus(r.get()), "INSERT 0 1");
  }
  PgResult returning = PgResult(PQprepare(
      client.get(), "del", "DELETE FROM channels WHERE id = $1 RETURNING title", 1, nullptr));
  PgResult shape = PgResult(PQdescribePrepared(client.get(), "del"));
  EXPECT_EQ(ColumnsOf(shape.get()), (std::vector<std::string>{"title"}));
  const char* id[] = {"2"};
  PgResult deleted = PgResult(PQexecPrepared(client.get(), "del", 1, id, nullptr, nullptr, 0));
  EXPECT_EQ(RowsOf(deleted.get()), (Rows{{"b"}})) << PQresultErrorMessage(deleted.get());
  EXPECT_STREQ(PQcmdStatus(deleted.get()), "DELETE 1");
  EXPECT_EQ(Differences(), "0");
}

TEST_P(DualWrite, StatementsPreparedBeforeAPhaseFlipFollowTheNewPhase) {
  ASSERT_TRUE(Reconfigure("old-only")) << proxy_->LogEnd();
  PgConn client = Client();
  PgResult prepared = PgResult(PQprepare(
      client.get(), "upd", "UPDATE channels SET title = $1 WHERE id = $2 RETURNING id", 2, nullptr));
  ASSERT_EQ(PQresultStatus(prepared.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(prepared.get());
  const char* before[] = {"before", "1"};
  PgResult r = PgResult(PQexecPrepared(client.get(), "upd", 2, before, nullptr, nullptr, 0));
  EXPECT_EQ(RowsOf(r.get()), (Rows{{"1"}})) << PQresultErrorMessage(r.get());
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 1"), "a") << "old-only: not mirrored";

  ASSERT_TRUE(Reconfigure("dual-write")) << proxy_->LogEnd();
  const char* after[] = {"after", "1"};
  r = PgResult(PQexecPrepared(client.get(), "upd", 2, after, nullptr, nullptr, 0));
  EXPECT_EQ(RowsOf(r.get()), (Rows{{"1"}})) << PQresultErrorMessage(r.get());
  EXPECT_STREQ(PQcmdStatus(r.get()), "UPDATE 1");
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 1"), "after")
      << "prepared again under dual-write, so mirrored";
  PgResult described = PgResult(PQdescribePrepared(client.get(), "upd"));
  EXPECT_EQ(ColumnsOf(described.get()), (std::vector<std::string>{"id"}));
  const char* again[] = {"again", "1"};
  r = PgResult(PQexecPrepared(client.get(), "upd", 2, again, nullptr, nullptr, 0));
  EXPECT_STREQ(PQcmdStatus(r.get()), "UPDATE 1") << PQresultErrorMessage(r.get());
  EXPECT_EQ(Differences(), "0");
  // The client's own DEALLOCATE and Parse of the same name still work.
  EXPECT_TRUE(client.Ok("DEALLOCATE upd")) << client.error();
  prepared = PgResult(PQprepare(client.get(), "upd", "SELECT 1", 0, nullptr));
  EXPECT_EQ(PQresultStatus(prepared.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(prepared.get());
}

// COPY FROM STDIN, the same rows on both sides.
PgResult Copy(PgConn& client, const std::string& sql, const std::string& data) {
  PgResult start = client.Exec(sql);
  if (PQresultStatus(start.get()) != PGRES_COPY_IN) return start;
  PQputCopyData(client.get(), data.data(), static_cast<int>(data.size()));
  PQputCopyEnd(client.get(), nullptr);
  PgResult last;
  while (PGresult* r = PQgetResult(client.get())) last = PgResult(r);
  return last;
}

TEST_P(DualWrite, CopyFromStdinLandsTheSameRowsOnBothSides) {
  PgConn client = Client();
  PgResult r = Copy(client, "COPY channels (title, salt) FROM STDIN", "x1\ts1\nx2\t\\N\n");
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(r.get());
  EXPECT_STREQ(PQcmdStatus(r.get()), "COPY 2");
  EXPECT_EQ(New().Value("SELECT string_agg(name, ',' ORDER BY id) FROM channels_v2 WHERE id > 3"),
            "x1,x2");
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE salt IS NOT NULL"), "5")
      << "old's trigger ran";
  // Every column, in CSV.
  r = Copy(client, "COPY channels FROM STDIN (FORMAT csv)", "60,c60,2026-02-01 00:00+00,s60\n");
  EXPECT_STREQ(PQcmdStatus(r.get()), "COPY 1") << PQresultErrorMessage(r.get());
  EXPECT_EQ(Differences(), "0");
  // Bad data: an error, and nothing written on either side.
  r = Copy(client, "COPY channels (id, title) FROM STDIN", "61\tok\nnot-a-number\tx\n");
  EXPECT_EQ(ErrorOf(r.get()).sqlstate, "22P02");
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = 61"), "0");
  // In a transaction, undone with it.
  ASSERT_TRUE(client.Ok("BEGIN"));
  r = Copy(client, "COPY channels (id, title) FROM STDIN", "62\tin tx\n");
  EXPECT_STREQ(PQcmdStatus(r.get()), "COPY 1") << PQresultErrorMessage(r.get());
  ASSERT_TRUE(client.Ok("ROLLBACK"));
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = 62"), "0");
  EXPECT_EQ(Differences(), "0");
  EXPECT_EQ(client.Value("SELECT count(*) FROM channels"), "6") << "the session goes on";
}

// Runs `statements` as one extended-protocol batch ending in a single Sync,
// as pgjdbc sends a transaction's BEGIN with its first statement; the error
// message of each statement ("" when it succeeded).
std::vector<std::string> Pipelined(PgConn& client, const std::vector<std::string>& statements) {
  std::vector<std::string> errors;
  if (PQenterPipelineMode(client.get()) != 1) return {"no pipeline mode"};
  for (const std::string& sql : statements) {
    PQsendQueryParams(client.get(), sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0);
  }
  PQpipelineSync(client.get());
  for (size_t i = 0; i < statements.size(); ++i) {
    PgResult r(PQgetResult(client.get()));
    ExecStatusType status = PQresultStatus(r.get());
    errors.push_back(status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK
                         ? ""
                         : std::string(PQresultErrorMessage(r.get())) + "(" +
                               PQresStatus(status) + ")");
    while (PGresult* rest = PQgetResult(client.get())) PQclear(rest);  // the NULL after each
  }
  PgResult sync(PQgetResult(client.get()));
  EXPECT_EQ(PQresultStatus(sync.get()), PGRES_PIPELINE_SYNC);
  PQexitPipelineMode(client.get());
  return errors;
}

TEST_P(DualWrite, WritesNoStatementShowsAreCountedAsUnexplainedChanges) {
  // Started again once the fixture's own writes are published, so that
  // the count begins after them.
  proxy_.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  StartProxy();
  ASSERT_TRUE(
      Old().Ok("CREATE OR REPLACE FUNCTION sneak() RETURNS void LANGUAGE sql AS "
               "$$ INSERT INTO channels (title) VALUES ('hidden') $$"));
  {
    PgConn client = Client();
    ASSERT_TRUE(client.Ok("INSERT INTO channels (title) VALUES ('d'), ('e'), ('f')"));
    ASSERT_TRUE(client.Ok("UPDATE channels SET title = title || '!' WHERE title IN ('d', 'e')"));
    ASSERT_TRUE(client.Ok("DELETE FROM channels WHERE title = 'f'"));
    // COPY's rows count too (its INSERT is a statement of pgshift's own).
    PgResult copied = Copy(client, "COPY channels (title) FROM STDIN", "g\nh\n");
    EXPECT_STREQ(PQcmdStatus(copied.get()), "COPY 2") << PQresultErrorMessage(copied.get());
    // A read to pgshift: what the function writes is never mirrored.
    ASSERT_TRUE(client.Ok("SELECT sneak()"));
  }  // a session that ends publishes its counts at once
  {
    // pgjdbc's row limit of 1 on a write without RETURNING: answered as
    // directly (not PortalSuspended), every row mirrored and counted.
    RawClient raw(proxy_->port());
    ASSERT_FALSE(raw.Login("postgres", "", {{"database", "mirror_db"}}));
    std::string batch;
    protocol::Parse{"", "INSERT INTO channels (title) VALUES ('i'), ('j')", {}}.Encode(batch);
    protocol::Bind{}.Encode(batch);
    protocol::Execute{"", 1}.Encode(batch);
    protocol::Sync{}.Encode(batch);
    ASSERT_TRUE(raw.Send(batch));
    std::string seen;
    while (std::optional<RawClient::Message> m = raw.Read()) {
      seen.push_back(m->type);
      if (m->type == 'C') seen += "(" + m->payload.substr(0, m->payload.size() - 1) + ")";
      if (m->type == 'Z') break;
    }
    EXPECT_EQ(seen, "12C(INSERT 0 2)Z");
  }
  ASSERT_TRUE(Old().Ok("UPDATE channels SET title = 'direct' WHERE title = 'hidden'"));
  EXPECT_EQ(Metric("rows_written", 10), 10);
  auto unexplained = [&] {
    std::string text = HttpExchange(metrics_port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    const std::string key = "pgshift_table_unexplained_changes{table=\"public.channels\"} ";
    size_t at = text.find(key);
    return at == std::string::npos ? -1 : std::stoll(text.substr(at + key.size()));
  };
  int64_t seen = -1;
  for (int i = 0; i < 150 && (seen = unexplained()) < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // a few more rounds
  EXPECT_EQ(unexplained(), 2) << "the function's insert and the direct update, nothing of pgshift's"
                              << proxy_->LogEnd();
  EXPECT_EQ(Differences(), "1") << "the hidden row is on old only";
}

TEST_P(DualWrite, BeginPipelinedWithTheFirstWriteIsTheClientsTransaction) {
  PgConn client = Client();
  const std::vector<std::string> ok(2, "");
  // BEGIN and the write in one batch, then the application rolls back.
  EXPECT_EQ(Pipelined(client, {"BEGIN", "INSERT INTO channels (id, title) VALUES (70, 'r')"}), ok);
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_INTRANS);
  EXPECT_TRUE(client.notices().empty()) << "no BEGIN of pgshift's before the client's";
  EXPECT_EQ(Pipelined(client, {"UPDATE channels SET title = 'r2' WHERE id = 1"}),
            std::vector<std::string>{""});
  ASSERT_TRUE(client.Ok("ROLLBACK")) << client.error();
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = 70 OR title = 'r2'"), "0");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id = 70 OR name = 'r2'"), "0");
  // START TRANSACTION in the batch, a second write in it, committed: on both.
  EXPECT_EQ(Pipelined(client, {"START TRANSACTION", "INSERT INTO channels (id, title) VALUES (71, 'c')",
                               "UPDATE channels SET title = 'c2' WHERE id = 2"}),
            std::vector<std::string>(3, ""));
  ASSERT_TRUE(client.Ok("COMMIT")) << client.error();
  EXPECT_EQ(New().Value("SELECT string_agg(name, ',' ORDER BY id) FROM channels_v2 WHERE id IN (2, 71)"),
            "c2,c");
  // A failed statement aborts the client's transaction: rolled back on both.
  EXPECT_EQ(Pipelined(client, {"BEGIN", "INSERT INTO channels (id, title) VALUES (72, 'f')"}), ok);
  EXPECT_FALSE(client.Ok("INSERT INTO channels (id, title) VALUES (72, 'dup')"));
  ASSERT_TRUE(client.Ok("ROLLBACK")) << client.error();
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = 72"), "0");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id = 72"), "0");
  // Savepoints sent as extended batches, as pgjdbc's setSavepoint() and
  // rollback(savepoint) send them: undone on both exactly after it.
  EXPECT_EQ(Pipelined(client, {"BEGIN", "INSERT INTO channels (id, title) VALUES (74, 's')"}), ok);
  EXPECT_EQ(Pipelined(client, {"SAVEPOINT jdbc_savepoint_0"}), std::vector<std::string>{""});
  EXPECT_EQ(Pipelined(client, {"INSERT INTO channels (id, title) VALUES (75, 'after')"}),
            std::vector<std::string>{""});
  EXPECT_EQ(Pipelined(client, {"ROLLBACK TO SAVEPOINT jdbc_savepoint_0"}),
            std::vector<std::string>{""});
  EXPECT_EQ(Pipelined(client, {"COMMIT"}), std::vector<std::string>{""});
  EXPECT_EQ(New().Value("SELECT string_agg(id::text, ',') FROM channels_v2 WHERE id IN (74, 75)"),
            "74");
  EXPECT_EQ(Old().Value("SELECT string_agg(id::text, ',') FROM channels WHERE id IN (74, 75)"),
            "74");
  // BEGIN, the write and COMMIT in one batch (libpq's pipeline mode, no
  // Sync between): committed on both. Across servers the mirror applies
  // before the COMMIT, which then prepares it as any COMMIT does.
  EXPECT_EQ(Pipelined(client, {"BEGIN", "INSERT INTO channels (id, title) VALUES (73, 'b')",
                               "UPDATE channels SET title = 'b2' WHERE id = 73", "COMMIT"}),
            std::vector<std::string>(4, ""));
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_IDLE);
  EXPECT_EQ(Old().Value("SELECT title FROM channels WHERE id = 73"), "b2");
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 73"), "b2");
  // ... and ROLLBACK in it undoes both sides; ROLLBACK TO SAVEPOINT exactly
  // what followed the savepoint.
  EXPECT_EQ(
      Pipelined(client, {"BEGIN", "INSERT INTO channels (id, title) VALUES (76, 'x')", "ROLLBACK"}),
      std::vector<std::string>(3, ""));
  EXPECT_EQ(
      Pipelined(client, {"BEGIN", "INSERT INTO channels (id, title) VALUES (77, 'kept')",
                         "SAVEPOINT s", "INSERT INTO channels (id, title) VALUES (78, 'undone')",
                         "ROLLBACK TO SAVEPOINT s", "RELEASE s", "COMMIT"}),
      std::vector<std::string>(7, ""));
  EXPECT_EQ(Old().Value("SELECT string_agg(id::text, ',' ORDER BY id) FROM channels WHERE id "
                        "BETWEEN 76 AND 78"),
            "77");
  EXPECT_EQ(New().Value("SELECT string_agg(id::text, ',' ORDER BY id) FROM channels_v2 WHERE id "
                        "BETWEEN 76 AND 78"),
            "77");
  // A write that fails skips the rest of its batch, the COMMIT included,
  // as it would directly: the client's transaction is aborted, not committed.
  std::vector<std::string> failed =
      Pipelined(client, {"BEGIN", "INSERT INTO channels (id, title) VALUES (79, 'f')",
                         "INSERT INTO channels (id, title) VALUES (79, 'dup')", "COMMIT"});
  ASSERT_EQ(failed.size(), 4u);
  EXPECT_EQ(failed[1], "");
  EXPECT_NE(failed[2].find("duplicate key"), std::string::npos) << failed[2];
  EXPECT_NE(failed[3].find("PGRES_PIPELINE_ABORTED"), std::string::npos) << failed[3];
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_INERROR);
  ASSERT_TRUE(client.Ok("ROLLBACK")) << client.error();
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = 79"), "0");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id = 79"), "0");
  // Outside a transaction block the write and the COMMIT after it are one
  // implicit transaction, which pgshift cannot split: refused across
  // servers, with nothing applied on either side.
  std::vector<std::string> implicit =
      Pipelined(client, {"INSERT INTO channels (id, title) VALUES (80, 'i')", "COMMIT"});
  ASSERT_EQ(implicit.size(), 2u);
  if (two_servers()) {
    EXPECT_NE(implicit[1].find("outside a transaction block must end (Sync)"), std::string::npos)
        << implicit[1];
    EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = 80"), "0");
  } else {
    EXPECT_EQ(implicit[1], "");
    EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = 80"), "1");
  }
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_IDLE);
  EXPECT_EQ(Differences(), "0");
  EXPECT_EQ(client.Value("SELECT count(*) FROM channels WHERE id > 3"), two_servers() ? "4" : "5")
      << "the session goes on";
}

// pgjdbc, the way enterprise applications send transactions: autoCommit
// off, rollback, savepoints, batches, server-side prepared statements
// (tests/jdbc/MirrorTransactions.java compares both sides after each).
TEST_P(DualWrite, PgjdbcTransactionsAreTheApplicationsOnBothSides) {
  const std::string jar = "/usr/share/java/postgresql.jar";
  ASSERT_EQ(access(jar.c_str(), R_OK), 0) << jar << ": scripts/install-deps.sh installs pgjdbc";
  std::string out;
  int status = CaptureCommand(
      "java -cp " + jar + " " PGSHIFT_SOURCE_DIR "/tests/jdbc/MirrorTransactions.java " +
          std::to_string(proxy_->port()) + " " + std::to_string(Cluster().port()) + " " +
          std::to_string((two_servers() ? NewCluster() : Cluster()).port()) + " 2>&1",
      out);
  EXPECT_EQ(status, 0) << out << proxy_->LogEnd();
  EXPECT_EQ(Differences(), "0");
}

// One simple Query; each statement's tag, or its error's SQLSTATE and
// message, in order.
std::vector<std::string> Statements(PgConn& client, const std::string& sql) {
  std::vector<std::string> out;
  if (!PQsendQuery(client.get(), sql.c_str())) return {client.error()};
  while (PGresult* r = PQgetResult(client.get())) {
    if (PQresultStatus(r) == PGRES_FATAL_ERROR) {
      PgError e = ErrorOf(r);
      out.push_back(e.sqlstate + " " + e.message);
    } else {
      out.push_back(PQcmdStatus(r));
    }
    PQclear(r);
  }
  return out;
}

// Transaction control inside a multi-statement Query, as drivers and
// scripts send it: each statement in the client's transaction on both
// servers, COMMIT through the two-phase commit, ROLLBACK leaving nothing,
// a failure stopping the Query where PostgreSQL would.
TEST_P(DualWrite, TransactionControlInsideAQueryIsTheClientsOnBothSides) {
  PgConn client = Client();
  EXPECT_EQ(Statements(client, "BEGIN; INSERT INTO channels (id, title) VALUES (80, 'q'); COMMIT"),
            (std::vector<std::string>{"BEGIN", "INSERT 0 1", "COMMIT"}));
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_IDLE);
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 80"), "q");
  EXPECT_EQ(Statements(client,
                       "BEGIN; INSERT INTO channels (id, title) VALUES (81, 'r'); "
                       "UPDATE channels SET title = 'r2' WHERE id = 1; ROLLBACK"),
            (std::vector<std::string>{"BEGIN", "INSERT 0 1", "UPDATE 1", "ROLLBACK"}));
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = 81 OR title = 'r2'"), "0");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id = 81 OR name = 'r2'"), "0");
  // In a transaction begun earlier: a statement, then COMMIT, in one Query.
  ASSERT_TRUE(client.Ok("BEGIN"));
  ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (82, 's')"));
  EXPECT_EQ(Statements(client, "SELECT 1; COMMIT"),
            (std::vector<std::string>{"SELECT 1", "COMMIT"}));
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 82"), "s");
  ASSERT_TRUE(client.Ok("BEGIN"));
  ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (83, 't')"));
  EXPECT_EQ(Statements(client, "SELECT 1; ROLLBACK"),
            (std::vector<std::string>{"SELECT 1", "ROLLBACK"}));
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id = 83"), "0");
  // A failed statement stops the Query; the transaction is left aborted, and
  // its ROLLBACK leaves nothing on either side.
  EXPECT_EQ(Statements(client,
                       "BEGIN; INSERT INTO channels (id, title) VALUES (84, 'u'); "
                       "INSERT INTO channels (id, title) VALUES (84, 'dup'); COMMIT"),
            (std::vector<std::string>{
                "BEGIN", "INSERT 0 1",
                "23505 duplicate key value violates unique constraint \"channels_pkey\""}));
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_INERROR);
  ASSERT_TRUE(client.Ok("ROLLBACK"));
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = 84"), "0");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id = 84"), "0");
  // A mirror that fails (new's CHECK) fails its statement and stops the
  // Query; across servers, pipelined, the COMMIT that collects it fails and
  // both sides roll back.
  std::vector<std::string> failed = Statements(
      client, "BEGIN; INSERT INTO channels (id, title) VALUES (85, 'forbidden'); COMMIT");
  if (two_servers()) {
    ASSERT_EQ(failed.size(), 3u) << ::testing::PrintToString(failed);
    EXPECT_EQ(failed[1], "INSERT 0 1");
    EXPECT_EQ(failed[2].rfind("23514 pgshift: the mirror of a write in this transaction to "
                              "public.channels on server new failed, so the transaction was "
                              "rolled back: new row for relation \"channels_v2\"",
                              0),
              0u)
        << failed[2];
    EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_IDLE);
  } else {
    ASSERT_EQ(failed.size(), 2u) << ::testing::PrintToString(failed);
    EXPECT_EQ(failed[1].substr(0, 5), "23514") << failed[1];
    EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_INERROR);
    ASSERT_TRUE(client.Ok("ROLLBACK"));
  }
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = 85"), "0");
  // Outside a transaction block, statements before a COMMIT commit with it;
  // before a ROLLBACK they are one implicit transaction with it, which
  // pgshift cannot split across servers: refused there, nothing applied.
  EXPECT_EQ(Statements(client, "INSERT INTO channels (id, title) VALUES (86, 'v'); COMMIT"),
            (std::vector<std::string>{"INSERT 0 1", "COMMIT"}));
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 86"), "v");
  std::vector<std::string> implicit =
      Statements(client, "INSERT INTO channels (id, title) VALUES (87, 'w'); ROLLBACK");
  if (two_servers()) {
    ASSERT_EQ(implicit.size(), 1u);
    EXPECT_NE(implicit[0].find("0A000 pgshift: with two servers, this query runs statements "
                               "outside a transaction block and then ROLLBACK"),
              std::string::npos)
        << implicit[0];
  } else {
    EXPECT_EQ(implicit, (std::vector<std::string>{"INSERT 0 1", "ROLLBACK"}));
  }
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = 87"), "0");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id = 87"), "0");
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_IDLE);
  EXPECT_EQ(Differences(), "0");
}

// The client's own two-phase commit: a transaction with a write mirrored to
// a second server cannot be prepared there (COMMIT PREPARED could not finish
// its mirror): refused, never half prepared. Where the transaction ran on
// one server, it is prepared there, and COMMIT PREPARED finds it.
TEST_P(DualWrite, TheClientsPrepareTransactionIsNeverHalfApplied) {
  if (!two_servers()) GTEST_SKIP() << "old's cluster has no prepared transactions";
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("BEGIN"));
  ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (90, 'p')"));
  PgResult refused = client.Exec("PREPARE TRANSACTION 'app_tx_1'");
  EXPECT_EQ(ErrorOf(refused.get()).sqlstate, "0A000");
  EXPECT_NE(ErrorOf(refused.get())
                .message.find("PREPARE TRANSACTION would prepare it on server "
                              "old alone"),
            std::string::npos)
      << ErrorOf(refused.get()).message;
  ASSERT_TRUE(client.Ok("ROLLBACK"));
  EXPECT_EQ(New().Value("SELECT count(*) FROM pg_prepared_xacts"), "0");
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = 90"), "0");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id = 90"), "0");
  // channels moved to new: a transaction on new alone is prepared there, and
  // COMMIT PREPARED, outside any transaction, goes where it was prepared.
  phase_ = "new-only";
  proxy_.reset();
  StartProxy();
  PgConn fresh_client = Client();
  ASSERT_TRUE(fresh_client.Ok("BEGIN"));
  ASSERT_TRUE(
      fresh_client.Ok("INSERT INTO channels (id, title, created_at) VALUES (91, 'n', now())"))
      << fresh_client.error();
  ASSERT_TRUE(fresh_client.Ok("PREPARE TRANSACTION 'app_tx_2'")) << fresh_client.error();
  EXPECT_EQ(New().Value("SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'app_tx_2'"), "1");
  ASSERT_TRUE(fresh_client.Ok("COMMIT PREPARED 'app_tx_2'")) << fresh_client.error();
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 91"), "n");
  PgResult unknown = fresh_client.Exec("ROLLBACK PREPARED 'app_tx_none'");
  EXPECT_EQ(ErrorOf(unknown.get()).sqlstate, "42704") << "as PostgreSQL says it";
}

TEST_P(DualWrite, MultiStatementQueriesKeepEveryTag) {
  PgConn client = Client();
  ASSERT_TRUE(PQsendQuery(client.get(),
                          "INSERT INTO channels (title) VALUES ('m'); UPDATE channels SET title = "
                          "'n' WHERE title = 'm'; SELECT count(*) FROM channels; DELETE FROM "
                          "channels WHERE title = 'n'"));
  std::vector<std::string> tags;
  while (PGresult* r = PQgetResult(client.get())) {
    tags.push_back(PQcmdStatus(r));
    PQclear(r);
  }
  EXPECT_EQ(tags, (std::vector<std::string>{"INSERT 0 1", "UPDATE 1", "SELECT 1", "DELETE 1"}));
  EXPECT_EQ(Differences(), "0");
}

// On one database a simple-protocol write is sent on a statement pgshift
// prepares once per connection, its numeric constants as parameters. What
// the client sees must not change: types, ORDER BY positions and type
// modifiers as written, errors, and statements dropped by the client.
TEST_P(DualWrite, SimpleWritesAnswerAsWrittenWhenPreparedByPgshift) {
  ASSERT_TRUE(Old().Ok("DROP FUNCTION IF EXISTS shout(int)"));
  PgConn client = Client();
  const std::string count_statements =
      "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'pgshift\\_statement\\_%'";
  for (int id : {1, 2, 3}) {
    PgResult r = client.Exec("UPDATE channels SET title = title || '+' WHERE id = " +
                             std::to_string(id));
    ASSERT_EQ(PQresultStatus(r.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(r.get());
    EXPECT_STREQ(PQcmdStatus(r.get()), "UPDATE 1");
  }
  EXPECT_EQ(client.Value(count_statements), two_servers() ? "0" : "1")
      << "one statement for the three executions (one database only)";

  // Constants keep the types PostgreSQL gives them as written.
  PgResult typed = client.Exec(
      "UPDATE channels SET title = -2147483648 || '/' || 2.50 || '/' || 4000000000 WHERE id = 3 "
      "RETURNING title, pg_typeof(-2147483648)::text, pg_typeof(4000000000)::text, "
      "pg_typeof(2.50)::text, 7 AS seven");
  ASSERT_EQ(PQresultStatus(typed.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(typed.get());
  EXPECT_STREQ(PQcmdStatus(typed.get()), "UPDATE 1");
  EXPECT_EQ(ColumnsOf(typed.get()),
            (std::vector<std::string>{"title", "pg_typeof", "pg_typeof", "pg_typeof", "seven"}));
  EXPECT_EQ(RowsOf(typed.get()),
            (Rows{{"-2147483648/2.50/4000000000", "integer", "bigint", "numeric", "7"}}));
  // A position in ORDER BY names a column; a type modifier stays one.
  PgResult ordered = client.Exec(
      "INSERT INTO channels (title) SELECT body FROM posts ORDER BY 1 DESC LIMIT 1 RETURNING title");
  ASSERT_EQ(PQresultStatus(ordered.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(ordered.get());
  EXPECT_EQ(RowsOf(ordered.get()), (Rows{{"p2"}}));
  PgResult cut = client.Exec(
      "UPDATE channels SET title = 'abcdef'::varchar(3) WHERE id = 1 RETURNING title");
  ASSERT_EQ(PQresultStatus(cut.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(cut.get());
  EXPECT_EQ(RowsOf(cut.get()), (Rows{{"abc"}}));

  // A statement PostgreSQL cannot prepare fails as the client's would, and
  // works once it can.
  const std::string missing = "UPDATE channels SET title = shout(5) WHERE id = 2";
  PgResult direct = Old().Exec("SELECT shout(5)");
  PgResult failed = client.Exec(missing);
  EXPECT_EQ(ErrorOf(failed.get()).sqlstate, "42883");
  EXPECT_EQ(ErrorOf(failed.get()).message, ErrorOf(direct.get()).message);
  ASSERT_TRUE(Old().Ok("CREATE FUNCTION shout(int) RETURNS text LANGUAGE sql AS "
                       "$$SELECT $1::text || '!'$$"));
  PgResult works = client.Exec(missing);
  EXPECT_STREQ(PQcmdStatus(works.get()), "UPDATE 1") << PQresultErrorMessage(works.get());
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 2"), "5!");

  // Two Queries of one template sent together, the first preparing a
  // statement whose Parse fails: the second goes as text and fails with its
  // own error, not for want of the statement.
  RawClient raw(proxy_->port());
  ASSERT_FALSE(raw.Login("postgres", "", {{"database", "mirror_db"}}));
  std::string both;
  protocol::Query{"UPDATE channels SET title = nothing(1) WHERE id = 1"}.Encode(both);
  protocol::Query{"UPDATE channels SET title = nothing(2) WHERE id = 2"}.Encode(both);
  ASSERT_TRUE(raw.Send(both));
  for (int i = 0; i < 2; ++i) {
    std::optional<protocol::ErrorFields> error = raw.ReadError();
    ASSERT_TRUE(error);
    EXPECT_EQ(error->sqlstate(), "42883") << error->message();
  }

  // In an aborted transaction, the error the client would get.
  ASSERT_TRUE(client.Ok("BEGIN"));
  EXPECT_FALSE(client.Ok("SELECT 1/0"));
  PgResult aborted = client.Exec("UPDATE channels SET title = 'x' WHERE id = 1");
  EXPECT_EQ(ErrorOf(aborted.get()).sqlstate, "25P02");
  ASSERT_TRUE(client.Ok("ROLLBACK"));

  // DISCARD ALL drops pgshift's statements too: they are prepared again.
  ASSERT_TRUE(client.Ok("DISCARD ALL"));
  EXPECT_EQ(client.Value(count_statements), "0");
  PgResult again = client.Exec("UPDATE channels SET title = 'again' WHERE id = 1");
  EXPECT_STREQ(PQcmdStatus(again.get()), "UPDATE 1") << PQresultErrorMessage(again.get());
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 1"), "again");
  // A DEALLOCATE pgshift cannot see (built inside a DO block) costs one
  // execution its statement; the next prepares it again.
  ASSERT_TRUE(client.Ok("DO $$BEGIN EXECUTE 'DEALLO' || 'CATE ALL'; END$$")) << client.error();
  PgResult lost = client.Exec("UPDATE channels SET title = 'again' WHERE id = 2");
  if (!two_servers()) {
    EXPECT_EQ(ErrorOf(lost.get()).sqlstate, "26000");
  }
  PgResult found = client.Exec("UPDATE channels SET title = 'again' WHERE id = 3");
  EXPECT_STREQ(PQcmdStatus(found.get()), "UPDATE 1") << PQresultErrorMessage(found.get());
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 3"), "again");
  EXPECT_EQ(Differences(), "0");
}

// A connection keeps at most 256 of pgshift's statements: once full, the
// one used least recently is closed to make room, so a template that comes
// late is prepared too.
TEST_P(DualWrite, AFullSetOfPreparedWritesMakesRoomForNewOnes) {
  if (two_servers()) GTEST_SKIP() << "one database only";
  PgConn client = Client();
  for (int i = 0; i < 300; ++i) {
    // A string stays in the text: each of these is a statement of its own.
    ASSERT_TRUE(client.Ok("UPDATE channels SET title = 'n" + std::to_string(i) + "' WHERE id = 1"))
        << client.error();
  }
  ASSERT_TRUE(client.Ok("UPDATE channels SET title = title WHERE id = 2")) << client.error();
  EXPECT_EQ(client.Value("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE "
                         "'pgshift\\_statement\\_%'"),
            "256");
  EXPECT_EQ(client.Value("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE "
                         "'%title = title%'"),
            "1")
      << "the late template is prepared";
  EXPECT_EQ(client.Value("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE "
                         "'%''n0''%'"),
            "0")
      << "the least used went";
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 1"), "n299");
  EXPECT_EQ(Differences(), "0");
}

// The mirror's writes run under the client's settings, as they do on one
// database: a trigger on the new table reads one.
TEST_P(DualWrite, TheMirrorRunsUnderTheClientsSettings) {
  ASSERT_TRUE(New().Ok(
      "CREATE OR REPLACE FUNCTION extra() RETURNS trigger LANGUAGE plpgsql AS"
      "  $$BEGIN NEW.extra := coalesce(current_setting('app.extra', true), '7')::int;"
      "  RETURN NEW; END$$;"
      "CREATE TRIGGER extra BEFORE INSERT OR UPDATE ON channels_v2 FOR EACH ROW"
      "  EXECUTE FUNCTION extra()"));
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("SET app.extra = '11'"));
  ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (10, 'session')"));
  ASSERT_TRUE(client.Ok("BEGIN"));
  ASSERT_TRUE(client.Ok("SET LOCAL app.extra = '12'"));
  ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (11, 'local')"));
  ASSERT_TRUE(client.Ok("COMMIT"));
  ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (12, 'after')"));
  EXPECT_EQ(Differences(), "0");
  PgResult extras = New().Exec("SELECT id, extra FROM channels_v2 WHERE id >= 10 ORDER BY id");
  EXPECT_EQ(RowsOf(extras.get()), (Rows{{"10", "11"}, {"11", "12"}, {"12", "11"}}))
      << PQresultErrorMessage(extras.get());
}

TEST_P(DualWrite, AFailingMirrorFailsTheWholeStatement) {
  PgConn client = Client();
  PgResult r = client.Exec("INSERT INTO channels (title) VALUES ('fine'), ('forbidden')");
  PgError e = ErrorOf(r.get());
  EXPECT_EQ(e.sqlstate, "23514") << "the new table's check constraint";
  if (two_servers()) {
    EXPECT_EQ(e.message.rfind("pgshift: the mirror of this write to public.channels on server new "
                              "failed, so the write was rolled back: new row for relation "
                              "\"channels_v2\" violates check constraint",
                              0),
              0u)
        << e.message;
  }
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels"), "3") << "old is not written either";
  EXPECT_EQ(Differences(), "0");
  // Inside a transaction the client's statement fails as any would (across
  // servers with mirror_apply = "sync"; pipelined, see
  // APipelinedMirrorsFailureFailsTheNextStatementThatCollectsIt).
  ASSERT_TRUE(Reconfigure("dual-write", "fail", "sync")) << proxy_->LogEnd();
  ASSERT_TRUE(client.Ok("BEGIN"));
  ASSERT_TRUE(client.Ok("INSERT INTO channels (title) VALUES ('kept')"));
  ASSERT_TRUE(client.Ok("SAVEPOINT s"));
  EXPECT_FALSE(client.Ok("UPDATE channels SET title = 'forbidden' WHERE id = 1"));
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_INERROR);
  ASSERT_TRUE(client.Ok("ROLLBACK TO SAVEPOINT s")) << client.error();
  ASSERT_TRUE(client.Ok("COMMIT")) << client.error();
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE title = 'kept'"), "1");
  EXPECT_EQ(Differences(), "0");
}

TEST_P(DualWrite, TransactionsAndSavepointsEndAlikeOnBothSides) {
  PgConn client = Client();
  for (const char* sql :
       {"BEGIN", "INSERT INTO channels (title) VALUES ('t1')", "SAVEPOINT s",
        "INSERT INTO channels (title) VALUES ('t2')", "UPDATE channels SET title = 'gone' WHERE id = 1",
        "ROLLBACK TO SAVEPOINT s", "SAVEPOINT s2", "INSERT INTO channels (title) VALUES ('t3')",
        "RELEASE SAVEPOINT s2", "DELETE FROM channels WHERE id = 2", "COMMIT"}) {
    ASSERT_TRUE(client.Ok(sql)) << sql << ": " << client.error();
  }
  EXPECT_EQ(Old().Value("SELECT string_agg(title, ',' ORDER BY id) FROM channels"), "a,c,t1,t3");
  EXPECT_EQ(Differences(), "0");
  // A savepoint taken before the first mirrored write.
  for (const char* sql : {"BEGIN", "SAVEPOINT early", "INSERT INTO channels (title) VALUES ('t4')",
                          "ROLLBACK TO SAVEPOINT early", "INSERT INTO channels (title) VALUES ('t5')",
                          "COMMIT"}) {
    ASSERT_TRUE(client.Ok(sql)) << sql << ": " << client.error();
  }
  ASSERT_TRUE(client.Ok("BEGIN"));
  ASSERT_TRUE(client.Ok("INSERT INTO channels (title) VALUES ('never')"));
  ASSERT_TRUE(client.Ok("ROLLBACK"));
  EXPECT_EQ(Old().Value("SELECT string_agg(title, ',' ORDER BY id) FROM channels"),
            "a,c,t1,t3,t5");
  EXPECT_EQ(Differences(), "0");
  // The extended protocol, with an implicit transaction per Sync.
  const char* title[] = {"x1"};
  PgResult r = PgResult(PQexecParams(client.get(), "INSERT INTO channels (title) VALUES ($1)", 1,
                                     nullptr, title, nullptr, nullptr, 0));
  EXPECT_STREQ(PQcmdStatus(r.get()), "INSERT 0 1") << PQresultErrorMessage(r.get());
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_IDLE);
  EXPECT_EQ(Differences(), "0");
}

TEST_P(DualWrite, EightClientsOnOverlappingKeysLeaveBothSidesEqual) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([this, t, &failures] {
      PgConn client = Client();
      if (!client.ok()) {
        ++failures;
        return;
      }
      std::mt19937 random(static_cast<unsigned>(t));
      // Deadlocks between overlapping keys are PostgreSQL's to report.
      auto run = [&](const std::string& sql) {
        PgResult r = client.Exec(sql);
        if (PQresultStatus(r.get()) == PGRES_COMMAND_OK) return true;
        if (ErrorOf(r.get()).sqlstate != "40P01") {
          ++failures;
          ADD_FAILURE() << sql << ": " << PQresultErrorMessage(r.get());
        }
        return false;
      };
      for (int i = 0; i < 40; ++i) {
        int key = 1 + static_cast<int>(random() % 6);
        std::string k = std::to_string(key);
        switch (random() % 5) {
          case 0:
            run("UPDATE channels SET title = title || '" + std::to_string(t) + "' WHERE id = " + k);
            break;
          case 1:
            run("INSERT INTO channels (id, title) VALUES (" + k + ", 'i" + std::to_string(t) +
                "') ON CONFLICT (id) DO UPDATE SET title = excluded.title");
            break;
          case 2:
            run("DELETE FROM channels WHERE id = " + k);
            break;
          case 3:
            // A transaction of two writes (transaction control in queries
            // of its own, as pgshift asks with two servers).
            if (run("BEGIN") && run("UPDATE channels SET title = 'tx' WHERE id = " + k) &&
                run("UPDATE channels SET salt = md5(random()::text) WHERE id = " +
                    std::to_string(1 + (key % 6)))) {
              run("COMMIT");
            }
            break;
          default:
            run("UPDATE channels SET title = 'all' WHERE id % 2 = " + std::to_string(key % 2));
        }
        if (PQtransactionStatus(client.get()) != PQTRANS_IDLE) run("ROLLBACK");
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(Differences(), "0");
}

// A row inserted and committed on the authoritative side is visible there
// before its mirror commits on the other server: a delete of it that
// reaches the mirror in between must wait for that insert, not miss it.
TEST_P(DualWrite, ADeleteRacingAnInsertOfTheSameKeyIsAppliedAfterIt) {
  // New's commits (and so its COMMIT PREPARED) wait 20 ms before they
  // flush, which leaves the race open every time.
  struct SlowCommits {
    explicit SlowCommits(PgConn conn) : c(std::move(conn)) {
      set = c.Ok("ALTER SYSTEM SET fsync = on") && c.Ok("ALTER SYSTEM SET commit_delay = 20000") &&
            c.Ok("ALTER SYSTEM SET commit_siblings = 0") && c.Ok("SELECT pg_reload_conf()");
    }
    ~SlowCommits() {
      c.Ok("ALTER SYSTEM RESET fsync");
      c.Ok("ALTER SYSTEM RESET commit_delay");
      c.Ok("ALTER SYSTEM RESET commit_siblings");
      c.Ok("SELECT pg_reload_conf()");
    }
    PgConn c;
    bool set = false;
  };
  std::optional<SlowCommits> slow;
  if (two_servers()) {
    slow.emplace(New());
    ASSERT_TRUE(slow->set);
    // The reload reaches new sessions a moment later.
    for (int i = 0; i < 200 && New().Value("SHOW commit_delay") != "20000"; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(New().Value("SHOW commit_delay"), "20000");
  }
  constexpr int kFirst = 100, kKeys = 20;
  std::atomic<int> failures{0};
  std::thread inserter([&] {
    PgConn client = Client();
    for (int key = kFirst; key < kFirst + kKeys; ++key) {
      // Every other key in a transaction of the client's.
      const bool in_transaction = key % 2 == 0;
      if ((in_transaction && !client.Ok("BEGIN")) ||
          !client.Ok("INSERT INTO channels (id, title) VALUES (" + std::to_string(key) +
                     ", 'i')") ||
          (in_transaction && !client.Ok("COMMIT"))) {
        ++failures;
      }
      // The deleter is waiting for the next key, not settling its last.
      std::this_thread::sleep_for(std::chrono::milliseconds(60));
    }
  });
  // Deletes each key as soon as its insert is visible on the authoritative
  // side.
  PgConn client = Client();
  for (int key = kFirst; key < kFirst + kKeys; ++key) {
    const std::string sql = "DELETE FROM channels WHERE id = " + std::to_string(key);
    for (int attempt = 0; attempt < 5000; ++attempt) {
      PgResult r = client.Exec(sql);
      if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
        ADD_FAILURE() << PQresultErrorMessage(r.get());
        break;
      }
      if (std::string_view(PQcmdTuples(r.get())) == "1") break;
    }
  }
  inserter.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id >= " + std::to_string(kFirst)),
            "0");
  EXPECT_EQ(Differences(), "0");
}

TEST_P(DualWrite, WhatCannotBeMirroredIsRefusedAndNothingIsWritten) {
  PgConn client = Client();
  PgResult key = client.Exec("UPDATE channels SET id = id + 100");
  EXPECT_EQ(ErrorOf(key.get()).sqlstate, "0A000");
  EXPECT_EQ(ErrorOf(key.get()).message,
            "pgshift: cannot mirror this write to public.channels in phase dual-write: it "
            "changes key column id");
  PgResult ddl = client.Exec("ALTER TABLE channels ADD COLUMN x int");
  EXPECT_EQ(ErrorOf(ddl.get()).sqlstate, "0A000");
  PgResult merge = client.Exec(
      "MERGE INTO channels c USING posts p ON c.id = p.channel_id WHEN MATCHED THEN DELETE");
  EXPECT_EQ(ErrorOf(merge.get()).message,
            "pgshift: cannot mirror merge on public.channels in phase dual-write; use INSERT, "
            "UPDATE or DELETE");
  // A table without a key: inserts are mirrored, updates refused.
  PgResult tag = client.Exec("INSERT INTO tags VALUES ('t1')");
  EXPECT_STREQ(PQcmdStatus(tag.get()), "INSERT 0 1") << PQresultErrorMessage(tag.get());
  EXPECT_EQ(New().Value("SELECT count(*) FROM tags_v2"), "1");
  PgResult update = client.Exec("UPDATE tags SET label = 't2'");
  EXPECT_EQ(ErrorOf(update.get()).message,
            "pgshift: cannot mirror this write to public.tags in phase dual-write: the table has "
            "no key to find its rows by");
  EXPECT_EQ(Old().Value("SELECT label FROM tags"), "t1");
  // TRUNCATE empties both.
  PgResult truncate = client.Exec("TRUNCATE channels, tags");
  ASSERT_EQ(PQresultStatus(truncate.get()), PGRES_COMMAND_OK)
      << PQresultErrorMessage(truncate.get());
  EXPECT_EQ(New().Value("SELECT (SELECT count(*) FROM channels_v2) + (SELECT count(*) FROM "
                        "tags_v2)"),
            "0");
  EXPECT_EQ(Differences(), "0");
}

// ---------------------------------------------------------------------------
// Across servers only: the mirror's own failures, and its two-phase commit.
// (On one database the mirror is part of the client's statement.)

class AcrossServers : public DualWrite {};

INSTANTIATE_TEST_SUITE_P(Topologies, AcrossServers, ::testing::Values(Topology::kTwoServers), Name);

// Notifications from old (LISTEN runs there) arrive while new streams a
// result of megabyte rows: each reaches the client between whole messages,
// never inside a half-relayed DataRow, and the two pumps never write to the
// client at once.
TEST_P(AcrossServers, TheServerNotAnsweringWaitsForTheOthersMessageToEnd) {
  phase_ = "new-only";
  proxy_.reset();
  StartProxy();
  ASSERT_TRUE(
      New().Ok("INSERT INTO channels_v2 (id, name, created_at) SELECT g, repeat('x', "
               "1048576), now() FROM generate_series(100, 129) g"));
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("LISTEN pgshift_test"));
  std::atomic<bool> reading{true};
  std::thread notifier([&] {
    PgConn old = Old();
    while (reading.load()) old.Ok("NOTIFY pgshift_test, 'between'");
  });
  int rows_whole = 0;
  for (int round = 0; round < 3; ++round) {
    PgResult r = client.Exec("SELECT name FROM channels WHERE id >= 100 ORDER BY id");
    EXPECT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << client.error();
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) break;
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      rows_whole += PQgetlength(r.get(), i, 0) == 1048576 ? 1 : 0;
    }
  }
  reading = false;
  notifier.join();
  EXPECT_EQ(rows_whole, 90);
  PQconsumeInput(client.get());
  int notifications = 0;
  while (PGnotify* n = PQnotifies(client.get())) {
    notifications += std::string(n->extra) == "between" ? 1 : 0;
    PQfreemem(n);
  }
  EXPECT_GT(notifications, 0) << "old's notifications reach the client";
  EXPECT_EQ(client.Value("SELECT 1"), "1") << "the session goes on";
}

// A write whose mirror would make the session hold more than
// mirror_max_bytes fails with 54000 and lands on neither side; smaller
// writes go on as before, on the same session.
TEST_P(AcrossServers, AWriteWhoseMirrorWouldPassMirrorMaxBytesFailsOnBothSides) {
  extra_settings_ = "mirror_max_bytes = 65536";
  proxy_.reset();
  StartProxy();
  PgConn client = Client();
  const std::string big =
      "INSERT INTO channels (id, title) SELECT g, repeat('t', 200) FROM generate_series(1000, "
      "1999) g";
  PgResult r = client.Exec(big);
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_FATAL_ERROR);
  EXPECT_STREQ(PQresultErrorField(r.get(), PG_DIAG_SQLSTATE), "54000");
  const std::string message = PQresultErrorMessage(r.get());
  EXPECT_NE(message.find("above mirror_max_bytes (64 kB)"), std::string::npos) << message;
  EXPECT_NE(message.find("public.channels"), std::string::npos) << message;
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id >= 1000"), "0");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id >= 1000"), "0");

  // In a transaction: the statement fails, the transaction with it.
  ASSERT_TRUE(client.Ok("BEGIN"));
  ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (900, 'kept until rollback')"));
  r = client.Exec(big);
  EXPECT_STREQ(PQresultErrorField(r.get(), PG_DIAG_SQLSTATE), "54000");
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_INERROR);
  ASSERT_TRUE(client.Ok("ROLLBACK"));
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id >= 900"), "0");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id >= 900"), "0");

  ASSERT_TRUE(
      client.Ok("INSERT INTO channels (id, title) SELECT g, 'small' FROM "
                "generate_series(1000, 1019) g"))
      << client.error();
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id >= 1000"), "20");
  EXPECT_EQ(Differences(), "0");
}

// A client that keeps preparing statements gets 54000 past
// client_state_max_bytes, naming the setting; DEALLOCATE makes room again.
TEST_P(AcrossServers, PreparedStatementsPastClientStateMaxBytesAreRefused) {
  extra_settings_ = "client_state_max_bytes = 8192";
  proxy_.reset();
  StartProxy();
  PgConn client = Client();
  const std::string sql =
      "SELECT title FROM channels WHERE title <> '" + std::string(1000, 'x') + "' AND id = $1";
  int prepared = 0;
  PgResult refused;
  for (; prepared < 20; ++prepared) {
    PgResult r(
        PQprepare(client.get(), ("s" + std::to_string(prepared)).c_str(), sql.c_str(), 0, nullptr));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      refused = std::move(r);
      break;
    }
  }
  ASSERT_LT(prepared, 20);
  EXPECT_GE(prepared, 4);
  EXPECT_STREQ(PQresultErrorField(refused.get(), PG_DIAG_SQLSTATE), "54000");
  EXPECT_NE(std::string(PQresultErrorMessage(refused.get())).find("client_state_max_bytes"),
            std::string::npos);
  const char* one = "1";
  PgResult executed(PQexecPrepared(client.get(), "s0", 1, &one, nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(executed.get()), PGRES_TUPLES_OK) << client.error();
  EXPECT_STREQ(PQgetvalue(executed.get(), 0, 0), "a") << "what was kept still works";
  ASSERT_TRUE(client.Ok("DEALLOCATE s0"));
  PgResult again(PQprepare(client.get(), "again", sql.c_str(), 0, nullptr));
  EXPECT_EQ(PQresultStatus(again.get()), PGRES_COMMAND_OK) << client.error();
}

// A shadow read whose results would pass the worker's shadow_max_bytes is
// not compared (counted skipped, never mismatched); the client gets its
// rows as always.
TEST_P(AcrossServers, ShadowReadsPastShadowMaxBytesAreSkipped) {
  extra_settings_ = "shadow_max_bytes = 16384";
  phase_ = "shadow-read";
  ASSERT_TRUE(
      Old().Ok("INSERT INTO channels (id, title) SELECT g, repeat('r', 100) FROM "
               "generate_series(100, 399) g"));
  ASSERT_TRUE(
      New().Ok("INSERT INTO channels_v2 (id, name, created_at) SELECT g, repeat('r', 100), "
               "now() FROM generate_series(100, 399) g"));
  proxy_.reset();
  StartProxy();
  PgConn client = Client();
  PgResult r = client.Exec("SELECT id, title FROM channels WHERE id >= 100");
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << client.error();
  EXPECT_EQ(PQntuples(r.get()), 300);
  EXPECT_EQ(Metric("shadow_skipped", 1), 1);
  ASSERT_EQ(client.Value("SELECT title FROM channels WHERE id = 1"), "a");
  EXPECT_EQ(Metric("shadow_compared", 1), 1) << "a small read is compared";
  EXPECT_EQ(Metric("shadow_persistent"), 0);
  EXPECT_EQ(Metric("shadow_skipped"), 1);
}

// A mismatch waiting for its recheck holds up no other comparison: the
// reads after it are compared at once, on the other connections of the
// worker's pool, and the mismatch is counted when its recheck comes.
TEST_P(AcrossServers, ComparisonsGoOnWhileARecheckWaits) {
  extra_settings_ = "shadow_recheck_delay = 3";
  phase_ = "shadow-read";
  proxy_.reset();
  StartProxy();
  ASSERT_TRUE(New().Ok("UPDATE channels_v2 SET name = 'tampered' WHERE id = 2"));
  PgConn client = Client();  // one session: one worker, one runner
  EXPECT_EQ(client.Value("SELECT title FROM channels WHERE id = 2"), "b");
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(client.Value("SELECT title FROM channels WHERE id = 1"), "a");
  }
  EXPECT_EQ(Metric("shadow_matched", 6), 6) << "compared while the mismatch waits";
  EXPECT_EQ(Metric("shadow_persistent"), 0) << "its recheck is 3 s away";
  EXPECT_EQ(Metric("shadow_persistent", 1), 1);
}

// pgshift's own SQL on the client's connections names pg_catalog's
// functions and types by schema: a search_path that puts the client's own
// schema first cannot capture the mirror's json_populate_recordset.
TEST_P(AcrossServers, TheClientsSearchPathCannotCapturePgshiftsOwnSql) {
  const std::string capture =
      "CREATE SCHEMA IF NOT EXISTS capture; CREATE OR REPLACE FUNCTION "
      "capture.json_populate_recordset(base anyelement, from_json json) RETURNS SETOF anyelement "
      "LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured'; END$$";
  ASSERT_TRUE(New().Ok(capture));
  struct Cleanup {
    std::function<void()> run;
    ~Cleanup() { run(); }
  } cleanup{[&] { New().Ok("DROP SCHEMA capture CASCADE"); }};
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("SET search_path = capture, pg_catalog, public"));
  ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (95, 'path')")) << client.error();
  ASSERT_TRUE(client.Ok("BEGIN"));
  ASSERT_TRUE(client.Ok("UPDATE channels SET title = 'path2' WHERE id = 95")) << client.error();
  ASSERT_TRUE(client.Ok("COMMIT")) << client.error();
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 95"), "path2");
  EXPECT_EQ(Differences(), "0");
}

// pgshift's own statements on a connection (its BEGIN, the mirror's rows,
// its COMMIT) leave the client's unnamed prepared statement there alone.
TEST_P(AcrossServers, TheClientsUnnamedStatementOutlivesPgshiftsOwn) {
  PgConn client = Client();
  PgResult prepared =
      PgResult(PQprepare(client.get(), "", "SELECT count(*) FROM posts", 0, nullptr));
  ASSERT_EQ(PQresultStatus(prepared.get()), PGRES_COMMAND_OK)
      << PQresultErrorMessage(prepared.get());
  // (A Query would drop the unnamed statement itself: the write is a
  // named statement's.)
  PgResult update = PgResult(
      PQprepare(client.get(), "upd", "UPDATE channels SET title = $1 WHERE id = 1", 1, nullptr));
  ASSERT_EQ(PQresultStatus(update.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(update.get());
  const char* title[] = {"between"};
  PgResult updated =
      PgResult(PQexecPrepared(client.get(), "upd", 1, title, nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(updated.get()), PGRES_COMMAND_OK)
      << PQresultErrorMessage(updated.get());
  PgResult executed =
      PgResult(PQexecPrepared(client.get(), "", 0, nullptr, nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(executed.get()), PGRES_TUPLES_OK)
      << PQresultErrorMessage(executed.get());
  EXPECT_EQ(RowsOf(executed.get()), (Rows{{"2"}}));
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 1"), "between");
}

// On a second server the new table may keep the old one's name; each
// side's columns are its own (here new has one more, old one new lacks).
TEST_P(AcrossServers, ANewTableOnTheSecondServerMayKeepTheOldName) {
  ASSERT_TRUE(Old().Ok("DROP TABLE IF EXISTS moved; CREATE TABLE moved (id serial PRIMARY KEY,"
                       " title text, legacy text DEFAULT 'l')"));
  ASSERT_TRUE(New().Ok("DROP TABLE IF EXISTS moved; CREATE TABLE moved (id int PRIMARY KEY,"
                       " title text, extra int DEFAULT 7)"));
  std::string backends = "[backends.new]\nhost = \"127.0.0.1\"\nport = " +
                         std::to_string(NewCluster().port()) +
                         "\ndbname = \"mirror_db\"\nuser = \"postgres\"\n";
  PgshiftProcess proxy(Cluster().port(), "", "dbname = \"mirror_db\"\nuser = \"postgres\"",
                       backends +
                           "[[tables]]\nname = \"moved\"\nnew_name = \"moved\"\nkey = [\"id\"]\n"
                           "phase = \"dual-write\"\n");
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();
  PgConn client(proxy.ConnInfo("dbname=mirror_db"));
  PgResult r = client.Exec("INSERT INTO moved (title) VALUES ('a'), ('b') RETURNING *");
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(r.get());
  EXPECT_EQ(ColumnsOf(r.get()), (std::vector<std::string>{"id", "title", "legacy"}));
  PgResult copied = New().Exec("SELECT id, title, extra FROM moved ORDER BY id");
  EXPECT_EQ(RowsOf(copied.get()), (Rows{{"1", "a", "7"}, {"2", "b", "7"}}));
}

// A driver may give result formats column by column; pgshift's two mirror
// columns are added to the list (as text) and taken out of the rows.
TEST_P(AcrossServers, ResultFormatsGivenPerColumnCoverTheMirrorColumns) {
  RawClient raw(proxy_->port());
  ASSERT_FALSE(raw.Login("postgres", "", {{"database", "mirror_db"}}));
  std::string batch;
  protocol::Parse{"ins", "INSERT INTO channels (id, title) VALUES ($1, $2) RETURNING id, title",
                  {}}
      .Encode(batch);
  protocol::Bind bind;
  bind.statement = "ins";
  bind.parameters = {"40", "formats"};
  bind.result_formats = {1, 0};  // id in binary, title as text
  bind.Encode(batch);
  protocol::Execute{"", 0}.Encode(batch);
  protocol::Sync{}.Encode(batch);
  ASSERT_TRUE(raw.Send(batch));
  std::string types;
  std::optional<protocol::DataRow> row;
  std::string tag;
  while (std::optional<RawClient::Message> m = raw.Read()) {
    types.push_back(m->type);
    if (m->type == 'D') row = *protocol::DataRow::Decode(m->payload);
    if (m->type == 'C') tag = m->payload.substr(0, m->payload.size() - 1);
    if (m->type == 'E') ADD_FAILURE() << protocol::ErrorResponse::Decode(m->payload)->message();
    if (m->type == 'Z') break;
  }
  EXPECT_EQ(types, "12DCZ");
  ASSERT_TRUE(row);
  ASSERT_EQ(row->values.size(), 2u) << "pgshift's columns are taken out";
  EXPECT_EQ(row->values[0], std::string("\0\0\0\x28", 4)) << "40 as a binary int4";
  EXPECT_EQ(row->values[1], "formats");
  EXPECT_EQ(tag, "INSERT 0 1");
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 40"), "formats");
  EXPECT_EQ(Differences(), "0");
}

// pgjdbc executes a statement it expects no rows from with a row limit of
// 1; a mirrored write's rows come back as its result, so the limit must not
// cut them short. With a RETURNING of the client's it is refused instead.
TEST_P(AcrossServers, AMirroredWriteUnderARowLimitIsMirroredWhole) {
  RawClient raw(proxy_->port());
  ASSERT_FALSE(raw.Login("postgres", "", {{"database", "mirror_db"}}));
  auto run = [&raw](const std::string& sql) {
    std::string batch;
    protocol::Parse{"", sql, {}}.Encode(batch);
    protocol::Bind{}.Encode(batch);
    protocol::Execute{"", 1}.Encode(batch);
    protocol::Sync{}.Encode(batch);
    EXPECT_TRUE(raw.Send(batch));
    std::string seen;  // message types, and the tag or error
    while (std::optional<RawClient::Message> m = raw.Read()) {
      seen.push_back(m->type);
      if (m->type == 'C') seen += "(" + m->payload.substr(0, m->payload.size() - 1) + ")";
      if (m->type == 'E') {
        seen += "(" + std::string(protocol::ErrorResponse::Decode(m->payload)->sqlstate()) + ")";
      }
      if (m->type == 'Z') break;
    }
    return seen;
  };
  EXPECT_EQ(run("INSERT INTO channels (id, title) VALUES (50, 'a'), (51, 'b'), (52, 'c')"),
            "12C(INSERT 0 3)Z");
  EXPECT_EQ(New().Value("SELECT string_agg(id::text, ',' ORDER BY id) FROM channels_v2 "
                        "WHERE id >= 50"),
            "50,51,52");
  EXPECT_EQ(run("INSERT INTO channels (id, title) VALUES (53, 'd'), (54, 'e') RETURNING id"),
            "12E(0A000)Z")
      << "refused at the Execute, after its Parse and Bind";
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id >= 53"), "0");
  EXPECT_EQ(Differences(), "0");
}

// The message types a client reads up to ReadyForQuery, each error's
// message and the transaction status.
std::string RepliesUntilReady(RawClient& raw) {
  std::string seen;
  while (std::optional<RawClient::Message> m = raw.Read()) {
    seen.push_back(m->type);
    if (m->type == 'E') seen += protocol::ErrorResponse::Decode(m->payload)->message();
    if (m->type == 'Z') {
      seen += m->payload;
      break;
    }
  }
  return seen;
}

// A mirrored write after the COMMIT in the same extended batch (no Sync
// between) runs in the batch's implicit transaction: it is mirrored too.
TEST_P(AcrossServers, AWriteAfterACommitInTheSameBatchIsMirrored) {
  RawClient raw(proxy_->port());
  ASSERT_FALSE(raw.Login("postgres", "", {{"database", "mirror_db"}}));
  auto run = [&raw](std::vector<std::string> statements) {
    std::string batch;
    for (const std::string& sql : statements) {
      protocol::Parse{"", sql, {}}.Encode(batch);
      protocol::Bind{}.Encode(batch);
      protocol::Execute{"", 0}.Encode(batch);
    }
    protocol::Sync{}.Encode(batch);
    if (!raw.Send(batch)) return std::string();
    return RepliesUntilReady(raw);
  };
  EXPECT_EQ(run({"BEGIN", "INSERT INTO channels (id, title) VALUES (200, 'in')", "COMMIT",
                 "INSERT INTO channels (id, title) VALUES (201, 'after')",
                 "DELETE FROM channels WHERE id = 1"}),
            "12C12C12C12C12CZI");
  EXPECT_EQ(run({"BEGIN", "INSERT INTO channels (id, title) VALUES (202, 'undone')", "ROLLBACK",
                 "UPDATE channels SET title = 'after rollback' WHERE id = 2"}),
            "12C12C12C12CZI");
  EXPECT_EQ(Old().Value("SELECT string_agg(id || title, ',' ORDER BY id) FROM channels "
                        "WHERE id IN (1, 2, 200, 201, 202)"),
            "2after rollback,200in,201after");
  EXPECT_EQ(Differences(), "0");
}

// BEGIN, a mirrored write and COMMIT in one extended batch, the batch cut
// into two socket writes at each message boundary and in the middle of
// each message: however the reads split it, the client sees one batch's
// replies and the row is committed on both sides.
TEST_P(AcrossServers, ABatchEndingInCommitIsCommittedOnBothHoweverItIsRead) {
  RawClient raw(proxy_->port());
  ASSERT_FALSE(raw.Login("postgres", "", {{"database", "mirror_db"}}));
  auto batch_for = [](int id) {
    std::string batch;
    std::vector<size_t> cuts;
    for (const std::string& sql :
         {std::string("BEGIN"),
          "INSERT INTO channels (id, title) VALUES (" + std::to_string(id) + ", 'split')",
          std::string("COMMIT")}) {
      for (int k = 0; k < 3; ++k) {
        const size_t start = batch.size();
        if (k == 0) protocol::Parse{"", sql, {}}.Encode(batch);
        if (k == 1) protocol::Bind{}.Encode(batch);
        if (k == 2) protocol::Execute{"", 0}.Encode(batch);
        cuts.push_back(start + (batch.size() - start) / 2);
        cuts.push_back(batch.size());
      }
    }
    protocol::Sync{}.Encode(batch);
    return std::pair{batch, cuts};
  };
  const size_t cuts = batch_for(0).second.size();
  for (size_t k = 0; k < cuts; ++k) {
    const int id = 100 + static_cast<int>(k);
    auto [batch, at] = batch_for(id);
    ASSERT_TRUE(raw.Send(std::string_view(batch).substr(0, at[k])));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_TRUE(raw.Send(std::string_view(batch).substr(at[k])));
    EXPECT_EQ(RepliesUntilReady(raw), "12C12C12CZI") << "cut at byte " << at[k];
  }
  const std::string all = std::to_string(cuts);
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE title = 'split'"), all);
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE name = 'split'"), all);
  EXPECT_EQ(New().Value("SELECT count(*) FROM pg_prepared_xacts"), "0");
  EXPECT_EQ(Differences(), "0");
}

// Under fail, a mirror that fails before the COMMIT of its own batch fails
// the batch: the COMMIT is skipped, and nothing is left on either side.
TEST_P(AcrossServers, AFailingMirrorBeforeTheCommitInItsBatchSkipsTheCommit) {
  PgConn client = Client();
  std::vector<std::string> errors = Pipelined(
      client, {"BEGIN", "INSERT INTO channels (id, title) VALUES (90, 'forbidden')", "COMMIT"});
  ASSERT_EQ(errors.size(), 3u);
  const std::string all = errors[0] + errors[1] + errors[2];
  EXPECT_NE(all.find("channels_v2"), std::string::npos) << all;
  EXPECT_NE(errors[2], "") << "the COMMIT did not run";
  EXPECT_NE(PQtransactionStatus(client.get()), PQTRANS_INTRANS);
  ASSERT_TRUE(client.Ok("ROLLBACK")) << client.error();
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = 90"), "0");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id = 90"), "0");
  EXPECT_EQ(client.Value("SELECT count(*) FROM channels WHERE id = 90"), "0")
      << "the session goes on";
}

TEST_P(AcrossServers, UnderLogAFailingMirrorLetsTheWriteStandAndLogsItsKeys) {
  ASSERT_TRUE(Reconfigure("dual-write", "log")) << proxy_->LogEnd();
  PgConn client = Client();
  // The client's own objects of the same names cannot capture pgshift's
  // statements on its connection.
  ASSERT_TRUE(client.Ok("CREATE TEMP TABLE pgshift_divergence (table_name text, key text, "
                        "error text)"))
      << client.error();
  PgResult r = client.Exec("INSERT INTO channels (id, title) VALUES (30, 'fine'), (31, 'forbidden')");
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(r.get());
  EXPECT_STREQ(PQcmdStatus(r.get()), "INSERT 0 2");
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id IN (30, 31)"), "2");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id IN (30, 31)"), "0");
  EXPECT_EQ(Old().Value("SELECT string_agg(table_name || ':' || key, ',' ORDER BY key) FROM "
                        "pgshift_divergence"),
            "public.channels:30,public.channels:31");
  // Inside a transaction the mirror's failure is undone on new alone, and
  // the transaction carries on.
  for (const char* sql : {"BEGIN", "INSERT INTO channels (id, title) VALUES (32, 'ok')",
                          "UPDATE channels SET title = 'forbidden' WHERE id = 1",
                          "INSERT INTO channels (id, title) VALUES (33, 'ok')", "COMMIT"}) {
    ASSERT_TRUE(client.Ok(sql)) << sql << ": " << client.error();
  }
  EXPECT_EQ(New().Value("SELECT string_agg(id::text, ',' ORDER BY id) FROM channels_v2 WHERE "
                        "id > 30"),
            "32,33");
  EXPECT_EQ(Old().Value("SELECT count(*) FROM pgshift_divergence WHERE key = '1'"), "1");
  EXPECT_EQ(Old().Value("SELECT title FROM channels WHERE id = 1"), "forbidden");
  EXPECT_EQ(client.Value("SELECT count(*) FROM pg_temp.pgshift_divergence"), "0");
  EXPECT_EQ(Metric("mirror_failures", 2), 2) << "the INSERT's and the UPDATE's";

  // Once new can take the rows, verify --repair copies them and clears
  // their keys from the log.
  ASSERT_TRUE(New().Ok("ALTER TABLE channels_v2 DROP CONSTRAINT channels_v2_name_check"));
  std::string out;
  EXPECT_EQ(RepairChannels(out), 0) << out;
  EXPECT_EQ(Old().Value("SELECT count(*) FROM pgshift_divergence"), "0") << out;
  EXPECT_EQ(Differences(), "0");
}

// A write in an extended batch that was already under way outside a
// transaction (its first statement reached old in an earlier read) commits
// on old on its own, before its mirror runs. When the mirror then fails,
// the write is never silently unmirrored: its key is logged under either
// policy, and under fail the client is not told the batch succeeded.
TEST_P(AcrossServers, AWriteThatCommittedOnItsOwnIsNeverSilentlyUnmirrored) {
  auto split_batch = [](PgConn& client, const std::string& insert) {
    std::vector<std::string> errors;
    EXPECT_EQ(PQenterPipelineMode(client.get()), 1);
    PQsendQueryParams(client.get(), "SELECT 1", 0, nullptr, nullptr, nullptr, nullptr, 0);
    EXPECT_EQ(PQflush(client.get()), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // read by pgshift on its own
    PQsendQueryParams(client.get(), insert.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0);
    PQpipelineSync(client.get());
    for (int i = 0; i < 2; ++i) {
      PgResult r(PQgetResult(client.get()));
      ExecStatusType status = PQresultStatus(r.get());
      errors.push_back(status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK
                           ? ""
                           : std::string(PQresStatus(status)) + ": " +
                                 PQresultErrorMessage(r.get()));
      while (PGresult* rest = PQgetResult(client.get())) PQclear(rest);
    }
    PgResult sync(PQgetResult(client.get()));
    EXPECT_EQ(PQresultStatus(sync.get()), PGRES_PIPELINE_SYNC);
    PQexitPipelineMode(client.get());
    return errors;
  };
  PgConn client = Client();
  std::vector<std::string> failed =
      split_batch(client, "INSERT INTO channels (id, title) VALUES (50, 'forbidden')");
  ASSERT_EQ(failed.size(), 2u);
  EXPECT_NE(failed[0].find("committed on server old on its own"), std::string::npos) << failed[0];
  EXPECT_NE(failed[0].find("its keys are in pgshift_divergence"), std::string::npos) << failed[0];
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = 50"), "1");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id = 50"), "0");
  EXPECT_EQ(Old().Value("SELECT string_agg(key, ',') FROM pgshift_divergence"), "50");
  EXPECT_EQ(client.Value("SELECT title FROM channels WHERE id = 50"), "forbidden")
      << "the session goes on";

  ASSERT_TRUE(Reconfigure("dual-write", "log")) << proxy_->LogEnd();
  PgConn logged = Client();
  EXPECT_EQ(split_batch(logged, "INSERT INTO channels (id, title) VALUES (51, 'forbidden')"),
            (std::vector<std::string>{"", ""}));
  EXPECT_EQ(Old().Value("SELECT string_agg(key, ',' ORDER BY key) FROM pgshift_divergence"),
            "50,51");
  // And one that its mirror takes is on both sides.
  EXPECT_EQ(split_batch(logged, "INSERT INTO channels (id, title) VALUES (52, 'fine')"),
            (std::vector<std::string>{"", ""}));
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 52"), "fine");
}

TEST_P(AcrossServers, WithTheNewServerDownFailFailsTheWriteAndLogKeepsIt) {
  struct Restart {
    ~Restart() { EXPECT_TRUE(NewCluster().Restart()); }
  } restart_at_the_end;
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (40, 'before')"));
  // fail, new going away in the middle of a transaction: the client's next
  // write fails, and so does the transaction, on both sides.
  ASSERT_TRUE(client.Ok("BEGIN"));
  ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (41, 'in tx')"));
  ASSERT_TRUE(NewCluster().Stop());
  PgResult r = client.Exec("INSERT INTO channels (id, title) VALUES (42, 'during')");
  PgError e = ErrorOf(r.get());
  // (Pipelined, the first write's apply may have been lost with new: the
  // error is then that one's.)
  EXPECT_TRUE(e.sqlstate == "08006" || e.sqlstate == "57P01") << e.sqlstate;
  EXPECT_NE(e.message.find("write to public.channels on server new failed"), std::string::npos)
      << e.message;
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_INERROR);
  ASSERT_TRUE(client.Ok("ROLLBACK"));
  // And outside a transaction, new still down.
  r = client.Exec("INSERT INTO channels (id, title) VALUES (43, 'alone')");
  EXPECT_EQ(ErrorOf(r.get()).sqlstate, "08006");
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id > 40"), "0") << "nothing kept";
  EXPECT_EQ(Old().Value("SELECT count(*) FROM pgshift_divergence"), "0") << "nothing logged";
  EXPECT_EQ(client.Value("SELECT title FROM channels WHERE id = 40"), "before")
      << "the session goes on";

  // log: the writes stand, and every key is logged, including those
  // mirrored before new went away in the middle of the transaction.
  ASSERT_TRUE(NewCluster().Restart());
  ASSERT_TRUE(Reconfigure("dual-write", "log")) << proxy_->LogEnd();
  PgConn logged = Client();
  ASSERT_TRUE(logged.Ok("BEGIN"));
  ASSERT_TRUE(logged.Ok("INSERT INTO channels (id, title) VALUES (44, 'mirrored')"));
  ASSERT_TRUE(NewCluster().Stop());
  ASSERT_TRUE(logged.Ok("INSERT INTO channels (id, title) VALUES (45, 'not mirrored')"))
      << logged.error();
  ASSERT_TRUE(logged.Ok("COMMIT")) << logged.error();
  PgResult kept = logged.Exec("INSERT INTO channels (id, title) VALUES (46, 'x'), (47, 'y')");
  EXPECT_STREQ(PQcmdStatus(kept.get()), "INSERT 0 2") << PQresultErrorMessage(kept.get());
  EXPECT_EQ(Old().Value("SELECT string_agg(id::text, ',' ORDER BY id) FROM channels WHERE id > 40"),
            "44,45,46,47");
  EXPECT_EQ(Old().Value("SELECT string_agg(key, ',' ORDER BY key) FROM pgshift_divergence"),
            "44,45,46,47");
  // Back up: mirroring resumes in the same session.
  ASSERT_TRUE(NewCluster().Restart());
  ASSERT_TRUE(logged.Ok("UPDATE channels SET title = 'after' WHERE id = 40")) << logged.error();
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 40"), "after");
}

TEST_P(AcrossServers, TheMirrorIsPreparedBeforeOldCommitsAndLeftoversAreResolvedAtStart) {
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (50, 'implicit')"));
  for (const char* sql : {"BEGIN", "INSERT INTO channels (id, title) VALUES (51, 'explicit')",
                          "COMMIT"}) {
    ASSERT_TRUE(client.Ok(sql)) << sql << ": " << client.error();
  }
  // The mirror's COMMIT PREPARED follows old's commit in the background
  // (Differences waits for it).
  EXPECT_EQ(Differences(), "0");
  std::string log = ReadFile(NewCluster().dir() + "/log");
  EXPECT_NE(log.find("PREPARE TRANSACTION E'pgshift_dualwrite_old_"), std::string::npos);
  EXPECT_NE(log.find("COMMIT PREPARED E'pgshift_dualwrite_old_"), std::string::npos);
  EXPECT_EQ(New().Value("SELECT count(*) FROM pg_prepared_xacts"), "0");

  // A crash between old's commit and new's COMMIT PREPARED leaves a
  // prepared mirror behind: the next start commits it when old committed,
  // and rolls it back when old did not.
  proxy_.reset();
  PgConn old = Old();
  std::string committed = old.Value("BEGIN; INSERT INTO channels (id, title, created_at, salt) "
                                    "VALUES (52, 'c', '2026-01-01', 's') RETURNING txid_current()")
                              .value_or("?");
  ASSERT_TRUE(old.Ok("COMMIT"));
  std::string aborted = old.Value("BEGIN; SELECT txid_current()").value_or("?");
  ASSERT_TRUE(old.Ok("ROLLBACK"));
  for (const auto& [id, xid] : {std::pair{"52", committed}, std::pair{"53", aborted}}) {
    PgConn fresh = New();
    ASSERT_TRUE(fresh.Ok(std::string("BEGIN; INSERT INTO channels_v2 (id, name, created_at, salt) "
                                     "VALUES (") +
                         id + ", 'c', '2026-01-01', 's')"));
    ASSERT_TRUE(fresh.Ok("PREPARE TRANSACTION 'pgshift_old_" + xid + "'")) << fresh.error();
  }
  StartProxy();
  EXPECT_EQ(New().Value("SELECT count(*) FROM pg_prepared_xacts"), "0") << proxy_->LogEnd();
  EXPECT_EQ(New().Value("SELECT string_agg(id::text, ',') FROM channels_v2 WHERE id > 51"), "52");
  EXPECT_NE(proxy_->log().find("prepared_mirror_resolved"), std::string::npos);
  EXPECT_EQ(Differences(), "0");
}

// The new server comes back from a crash holding prepared mirrors (and
// their row locks): the running pgshift resolves those whose outcome it
// knows within its recovery interval, without a restart or reload; one
// whose outcome it cannot know, or another deployment's, stays (reported),
// and no client waits behind its locks longer than mirror_lock_timeout.
TEST_P(AcrossServers, LeftoverMirrorsAreResolvedWhileRunningWhenTheirOutcomeIsKnown) {
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (63, 'mirrored')"));
  PgConn old = Old();
  std::string committed = old.Value(
                                 "BEGIN; INSERT INTO channels (id, title, created_at, salt) "
                                 "VALUES (60, 'c', '2026-01-01', 's') RETURNING txid_current()")
                              .value_or("?");
  ASSERT_TRUE(old.Ok("COMMIT"));
  std::string aborted = old.Value("BEGIN; SELECT txid_current()").value_or("?");
  ASSERT_TRUE(old.Ok("ROLLBACK"));
  const std::string future = std::to_string(std::stoll(committed) + 1000000);
  const std::string ours_committed = "pgshift_dualwrite_old_" + committed;
  const std::string ours_aborted = "pgshift_dualwrite_old_" + aborted;
  const std::string ours_unknown = "pgshift_dualwrite_old_" + future;
  const std::string theirs = "pgshift_otherteam_old_" + committed;
  for (const auto& [sql, gid] :
       {std::pair{std::string("INSERT INTO channels_v2 (id, name, created_at, salt) "
                              "VALUES (60, 'c', '2026-01-01', 's')"),
                  ours_committed},
        std::pair{std::string("INSERT INTO channels_v2 (id, name, created_at, salt) "
                              "VALUES (61, 'c', '2026-01-01', 's')"),
                  ours_aborted},
        std::pair{std::string("UPDATE channels_v2 SET name = 'locked' WHERE id = 63"),
                  ours_unknown},
        std::pair{std::string("INSERT INTO channels_v2 (id, name, created_at, salt) "
                              "VALUES (62, 'c', '2026-01-01', 's')"),
                  theirs}}) {
    PgConn fresh = New();
    ASSERT_TRUE(fresh.Ok("BEGIN")) << fresh.error();
    ASSERT_TRUE(fresh.Ok(sql)) << fresh.error();
    ASSERT_TRUE(fresh.Ok("PREPARE TRANSACTION '" + gid + "'")) << fresh.error();
  }
  struct Cleanup {
    std::function<void()> run;
    ~Cleanup() { run(); }
  } cleanup{[&] {
    PgConn fresh = New();
    for (const std::string& gid : {ours_unknown, theirs}) {
      fresh.Ok("ROLLBACK PREPARED '" + gid + "'");
    }
  }};
  ASSERT_TRUE(NewCluster().Restart());  // crash recovery brings them back
  auto prepared = [&] {
    return New()
        .Value("SELECT string_agg(gid, ',' ORDER BY gid) FROM pg_prepared_xacts")
        .value_or("");
  };
  for (int i = 0; i < 250 && prepared() != ours_unknown + "," + theirs; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(prepared(), ours_unknown + "," + theirs) << proxy_->LogEnd();
  EXPECT_EQ(New().Value("SELECT string_agg(id::text, ',') FROM channels_v2 WHERE id IN (60, 61)"),
            "60");
  // Reported by whichever run saw them (one may be under way across new's
  // restart): waited for.
  const std::string unknown_reported =
      "event=prepared_mirror_unresolved backend=new transaction=" + ours_unknown;
  const std::string theirs_reported = "event=prepared_mirror_unresolved backend=new transaction=" +
                                      theirs + " reason=\"deployment otherteam's, not this one's";
  for (int i = 0; i < 500 && (proxy_->log().find(theirs_reported) == std::string::npos ||
                              proxy_->log().find(unknown_reported) == std::string::npos);
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_NE(proxy_->log().find(unknown_reported), std::string::npos) << proxy_->LogEnd();
  EXPECT_NE(proxy_->log().find(theirs_reported), std::string::npos)
      << "another deployment's is reported, never touched: " << proxy_->LogEnd();

  // A write whose mirror needs the row the unknown one holds: under fail it
  // fails after mirror_lock_timeout, on both sides, and the session goes on.
  PgResult r = client.Exec("UPDATE channels SET title = 'waits' WHERE id = 63");
  PgError e = ErrorOf(r.get());
  EXPECT_EQ(e.sqlstate, "55P03") << e.message;
  EXPECT_NE(e.message.find("lock timeout"), std::string::npos) << e.message;
  EXPECT_EQ(Old().Value("SELECT title FROM channels WHERE id = 63"), "mirrored");
  EXPECT_EQ(client.Value("SELECT title FROM channels WHERE id = 63"), "mirrored");
  ASSERT_TRUE(client.Ok("UPDATE channels SET title = 'free' WHERE id = 60")) << client.error();
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 60"), "free");
}

// New comes back from a crash holding a prepared mirror (and its row
// locks): the first session that reaches new again has recovery run at
// once, not at the next recovery_interval (an hour here).
TEST_P(AcrossServers, ReachingNewAgainResolvesItsLeftoversAtOnce) {
  recovery_interval_ = "3600";
  proxy_.reset();
  StartProxy();
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (96, 'before')"))
      << client.error();
  PgConn old = Old();
  const std::string xid = old.Value(
                                 "BEGIN; INSERT INTO channels (id, title, created_at, salt) "
                                 "VALUES (97, 'left', '2026-01-01', 's') RETURNING txid_current()")
                              .value_or("?");
  ASSERT_TRUE(old.Ok("COMMIT"));
  const std::string gid = "pgshift_dualwrite_old_" + xid;
  PgConn fresh = New();
  ASSERT_TRUE(
      fresh.Ok("BEGIN; INSERT INTO channels_v2 (id, name, created_at, salt) "
               "VALUES (97, 'left', '2026-01-01', 's')"));
  ASSERT_TRUE(fresh.Ok("PREPARE TRANSACTION '" + gid + "'")) << fresh.error();
  ASSERT_TRUE(NewCluster().Stop());
  ASSERT_TRUE(NewCluster().Restart());  // crash recovery brings it back
  // The session's next mirrored write finds new lost, and reaches it again.
  client.Ok("UPDATE channels SET title = 'after' WHERE id = 96");
  ASSERT_TRUE(client.Ok("UPDATE channels SET title = 'after' WHERE id = 96")) << client.error();
  std::optional<std::string> left;
  for (int i = 0; i < 150 && left != "0"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    left = New().Value("SELECT count(*) FROM pg_prepared_xacts WHERE gid = '" + gid + "'");
  }
  EXPECT_EQ(left, "0") << proxy_->LogEnd();
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 97"), "left");
  EXPECT_EQ(Differences(), "0");
}

// A prepared mirror younger than recovery_min_age may be another
// instance's, between old's COMMIT and its own COMMIT PREPARED: recovery
// leaves it, unreported, and resolves it once it is old enough.
TEST_P(AcrossServers, AYoungLeftoverIsLeftToTheInstanceThatMaySettleIt) {
  recovery_min_age_ = "3600";
  ASSERT_TRUE(Reconfigure("dual-write")) << proxy_->LogEnd();
  // A recovery run that began under the settings before the reload (no
  // minimum age) may still be listing prepared transactions: let it end.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  PgConn old = Old();
  std::string xid = old.Value(
                           "BEGIN; INSERT INTO channels (id, title, created_at, salt) "
                           "VALUES (70, 'c', '2026-01-01', 's') RETURNING txid_current()")
                        .value_or("?");
  ASSERT_TRUE(old.Ok("COMMIT"));
  const std::string gid = "pgshift_dualwrite_old_" + xid;
  PgConn fresh = New();
  ASSERT_TRUE(fresh.Ok("BEGIN; INSERT INTO channels_v2 (id, name, created_at, salt) "
                       "VALUES (70, 'c', '2026-01-01', 's')"))
      << fresh.error();
  ASSERT_TRUE(fresh.Ok("PREPARE TRANSACTION '" + gid + "'")) << fresh.error();
  std::this_thread::sleep_for(std::chrono::seconds(1));  // five recovery intervals
  EXPECT_EQ(New().Value("SELECT count(*) FROM pg_prepared_xacts WHERE gid = '" + gid + "'"), "1");
  EXPECT_EQ(proxy_->log().find("transaction=" + gid), std::string::npos) << proxy_->LogEnd();

  recovery_min_age_ = "0";
  ASSERT_TRUE(Reconfigure("dual-write")) << proxy_->LogEnd();
  EXPECT_EQ(New().Value("SELECT count(*) FROM pg_prepared_xacts WHERE gid = '" + gid + "'"), "0");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id = 70"), "1");
  EXPECT_NE(proxy_->log().find("event=prepared_mirror_resolved backend=new transaction=" + gid),
            std::string::npos)
      << proxy_->LogEnd();
}

// Renaming the deployment while its prepared mirrors are left would orphan
// them (recovery resolves only its own): the reload is refused, naming one.
TEST_P(AcrossServers, TheDeploymentIsNotRenamedWhileItsPreparedMirrorsAreLeft) {
  const std::string gid = "pgshift_dualwrite_old_" +
                          std::to_string(std::stoll(Old().Value("SELECT txid_current()").value_or(
                                             "0")) + 1000000);  // an outcome never known
  PgConn fresh = New();
  ASSERT_TRUE(fresh.Ok("BEGIN; INSERT INTO channels_v2 (id, name, created_at, salt) "
                       "VALUES (71, 'c', '2026-01-01', 's')"))
      << fresh.error();
  ASSERT_TRUE(fresh.Ok("PREPARE TRANSACTION '" + gid + "'")) << fresh.error();
  deployment_ = "renamed";
  EXPECT_FALSE(Reconfigure("dual-write"));
  EXPECT_NE(proxy_->log().find("proxy.deployment cannot change from dualwrite to renamed while "
                               "dualwrite's prepared mirror " +
                               gid + " is left on server new"),
            std::string::npos)
      << proxy_->LogEnd();
  ASSERT_TRUE(New().Ok("ROLLBACK PREPARED '" + gid + "'"));
  EXPECT_TRUE(Reconfigure("dual-write")) << proxy_->LogEnd();
}

// A recovery run stuck on a server that stopped answering (its
// postmaster frozen: the run's login waits for connect_timeout, 10 s)
// neither keeps pgshift from shutting down nor keeps it running.
TEST_P(AcrossServers, ShutdownDoesNotWaitForAStuckRecoveryRun) {
  ASSERT_TRUE(NewCluster().Pause());
  struct Thaw {
    ~Thaw() { NewCluster().Resume(); }
  } thaw;
  // A run starts every 0.2 s: one is waiting on new's login by now.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_EQ(proxy_->Stop(5000), 0) << proxy_->LogEnd();
}

// mirror_apply = "pipelined" (the default): a write in the client's
// transaction answers once old has; its apply on new is collected by the
// next statement that depends on it. Under fail a failed apply fails that
// statement and each later one that depends on it, and the transaction
// cannot commit (like a deferred constraint).
TEST_P(AcrossServers, APipelinedMirrorsFailureFailsTheNextStatementThatCollectsIt) {
  PgConn client = Client();
  auto error_of = [&](const std::string& sql) {
    PgResult r = client.Exec(sql);
    return ErrorOf(r.get());
  };
  const std::string earlier =
      "pgshift: the mirror of an earlier write in this transaction to public.channels on server "
      "new failed";
  // The next mirrored write fails; a read on old before it goes on.
  for (const char* sql : {"BEGIN", "INSERT INTO channels (id, title) VALUES (40, 'ok')",
                          "UPDATE channels SET title = 'forbidden' WHERE id = 1"}) {
    ASSERT_TRUE(client.Ok(sql)) << sql << ": " << client.error();
  }
  EXPECT_EQ(client.Value("SELECT count(*) FROM channels WHERE id = 40"), "1");
  PgError e = error_of("INSERT INTO channels (id, title) VALUES (41, 'ok')");
  EXPECT_EQ(e.sqlstate, "23514") << "the mirror's own SQLSTATE";
  EXPECT_EQ(e.message.rfind(earlier, 0), 0u) << e.message;
  EXPECT_NE(e.message.find("violates check constraint"), std::string::npos) << e.message;
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_INERROR);
  ASSERT_TRUE(client.Ok("ROLLBACK"));
  // A SAVEPOINT after it fails too.
  for (const char* sql : {"BEGIN", "UPDATE channels SET title = 'forbidden' WHERE id = 1"}) {
    ASSERT_TRUE(client.Ok(sql)) << sql << ": " << client.error();
  }
  e = error_of("SAVEPOINT s");
  EXPECT_EQ(e.message.rfind(earlier, 0), 0u) << e.message;
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_INERROR);
  ASSERT_TRUE(client.Ok("ROLLBACK"));
  // So does a ROLLBACK TO: only ROLLBACK ends the transaction.
  for (const char* sql :
       {"BEGIN", "SAVEPOINT s", "UPDATE channels SET title = 'forbidden' WHERE id = 1"}) {
    ASSERT_TRUE(client.Ok(sql)) << sql << ": " << client.error();
  }
  e = error_of("ROLLBACK TO SAVEPOINT s");
  EXPECT_EQ(e.message.rfind(earlier, 0), 0u) << e.message;
  EXPECT_EQ(error_of("SELECT 1").sqlstate, "25P02");
  ASSERT_TRUE(client.Ok("ROLLBACK"));
  for (const char* sql :
       {"BEGIN", "INSERT INTO channels (id, title) VALUES (42, 'ok')", "COMMIT"}) {
    ASSERT_TRUE(client.Ok(sql)) << sql << ": " << client.error();
  }
  // The COMMIT fails, and both sides roll back.
  for (const char* sql : {"BEGIN", "INSERT INTO channels (id, title) VALUES (43, 'ok')",
                          "UPDATE channels SET title = 'forbidden' WHERE id = 1"}) {
    ASSERT_TRUE(client.Ok(sql)) << sql << ": " << client.error();
  }
  e = error_of("COMMIT");
  EXPECT_EQ(e.sqlstate, "23514");
  EXPECT_EQ(e.message.rfind("pgshift: the mirror of a write in this transaction to public.channels "
                            "on server new failed, so the transaction was rolled back",
                            0),
            0u)
      << e.message;
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_IDLE);
  EXPECT_EQ(Old().Value("SELECT string_agg(id::text, ',') FROM channels WHERE id >= 40"), "42");
  EXPECT_EQ(Old().Value("SELECT title FROM channels WHERE id = 1"), "a");
  EXPECT_EQ(Differences(), "0");
  EXPECT_EQ(Metric("mirror_failures", 4), 4);
  EXPECT_EQ(client.Value("SELECT 1"), "1") << "the session goes on";
}

// The other failure points of a pipelined mirror, under each policy: new's
// PREPARE TRANSACTION fails (a deferred constraint there), new is lost
// before old's COMMIT, and new is lost after it (its COMMIT PREPARED
// fails; recovery finishes the mirror).
TEST_P(AcrossServers, APipelinedMirrorsPrepareAndCommitFailuresFollowThePolicy) {
  PgConn fresh = New();
  ASSERT_TRUE(fresh.Ok(
      "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
      "IF NEW.name = 'deferred' THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; "
      "END $$; CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT OR UPDATE ON channels_v2 "
      "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()"))
      << fresh.error();
  // Old's COMMIT takes two seconds for 'slow' rows: new can be lost after
  // its PREPARE and before its COMMIT PREPARED.
  ASSERT_TRUE(Old().Ok(
      "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
      "IF NEW.title = 'slow' THEN PERFORM pg_sleep(2); END IF; RETURN NULL; END $$; "
      "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON channels DEFERRABLE INITIALLY "
      "DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()"));
  int id = 100;
  for (const std::string policy : {"fail", "log"}) {
    SCOPED_TRACE(policy);
    ASSERT_TRUE(Reconfigure("dual-write", policy)) << proxy_->LogEnd();
    PgConn client = Client();
    // PREPARE fails: under fail the COMMIT fails and nothing is kept;
    // under log it commits with its key logged.
    const std::string prepared = std::to_string(id++);
    ASSERT_TRUE(client.Ok("BEGIN"));
    ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (" + prepared + ", 'deferred')"))
        << client.error();
    PgResult r = client.Exec("COMMIT");
    if (policy == "fail") {
      PgError e = ErrorOf(r.get());
      EXPECT_EQ(e.sqlstate, "P0001");
      EXPECT_NE(e.message.find("could not be committed, so the transaction was rolled back: "
                               "refused at commit"),
                std::string::npos)
          << e.message;
      EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = " + prepared), "0");
    } else {
      EXPECT_EQ(PQresultStatus(r.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(r.get());
      EXPECT_EQ(
          Old().Value("SELECT count(*) FROM pgshift_divergence WHERE key = '" + prepared + "'"),
          "1");
    }
    EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id = " + prepared), "0");

    // New lost before old's COMMIT (its backend ended while the
    // transaction is open there).
    const std::string before = std::to_string(id++);
    ASSERT_TRUE(client.Ok("BEGIN"));
    ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (" + before + ", 'ok')"));
    const std::string in_transaction =
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'mirror_db' AND state LIKE 'idle "
        "in transaction%'";
    for (int i = 0; i < 250 && New().Value(in_transaction) != "1"; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the apply answers
    }
    auto backends_lost = [&] {
      const std::string log = proxy_->log();
      size_t n = 0;
      for (size_t at = log.find("event=backend_lost"); at != std::string::npos;
           at = log.find("event=backend_lost", at + 1)) {
        ++n;
      }
      return n;
    };
    const size_t lost_before = backends_lost();
    ASSERT_EQ(New().Value("SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                          "WHERE datname = 'mirror_db' AND state LIKE 'idle in transaction%'"),
              "1");
    // (Once pgshift has seen it: a PREPARE written to the closed socket
    // would end the session, a limit listed in the closing note.)
    for (int i = 0; i < 250 && backends_lost() == lost_before; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    r = client.Exec("COMMIT");
    if (policy == "fail") {
      EXPECT_EQ(ErrorOf(r.get()).sqlstate.substr(0, 2), "08") << ErrorOf(r.get()).message;
      EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = " + before), "0");
    } else {
      EXPECT_EQ(PQresultStatus(r.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(r.get());
      EXPECT_EQ(Old().Value("SELECT count(*) FROM pgshift_divergence WHERE key = '" + before + "'"),
                "1");
    }
    EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id = " + before), "0");

    // New lost after old's COMMIT began: old commits, and the prepared
    // mirror is committed by recovery once new is back.
    const std::string after = std::to_string(id++);
    ASSERT_TRUE(client.Ok("BEGIN"));
    ASSERT_TRUE(client.Ok("INSERT INTO channels (id, title) VALUES (" + after + ", 'slow')"));
    std::thread commit([&] { r = client.Exec("COMMIT"); });
    for (int i = 0; i < 190 && New().Value("SELECT count(*) FROM pg_prepared_xacts") != "1"; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(New().Value("SELECT count(*) FROM pg_prepared_xacts"), "1")
        << "prepared before old commits";
    ASSERT_TRUE(NewCluster().Stop());
    commit.join();
    EXPECT_EQ(PQresultStatus(r.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(r.get());
    EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = " + after), "1");
    ASSERT_TRUE(NewCluster().Restart());
    for (int i = 0;
         i < 250 && New().Value("SELECT count(*) FROM channels_v2 WHERE id = " + after) != "1";
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE id = " + after), "1")
        << proxy_->LogEnd();
    EXPECT_EQ(client.Value("SELECT 1"), "1") << "the session goes on";
  }
  EXPECT_NE(proxy_->log().find("mirror_commit_failed"), std::string::npos);
  EXPECT_NE(proxy_->log().find("prepared_mirror_resolved"), std::string::npos);
  ASSERT_TRUE(Old().Ok("DELETE FROM pgshift_divergence"));
  ASSERT_TRUE(Old().Ok("DELETE FROM channels WHERE id >= 100"));
  ASSERT_TRUE(New().Ok("DELETE FROM channels_v2 WHERE id >= 100"));
  EXPECT_EQ(Differences(), "0");
}

// A new server that does not allow prepared transactions: pgshift says so
// at start, commits the mirror after old, and logs every key whose mirror
// commit fails (here, a deferred constraint that only COMMIT checks).
TEST(MirrorWithoutPreparedTransactions, SaysSoAtStartAndLogsKeysWhoseCommitFails) {
  PgCluster fresh;  // max_prepared_transactions = 0, PostgreSQL's default
  ASSERT_TRUE(fresh.ok());
  PgConn admin(Cluster().ConnInfo("dbname=postgres"));
  admin.Ok("CREATE DATABASE mirror_no2pc");
  PgConn old(Cluster().ConnInfo("dbname=mirror_no2pc"));
  ASSERT_TRUE(old.Ok("DROP TABLE IF EXISTS channels, pgshift_divergence; "
                     "CREATE TABLE channels (id int PRIMARY KEY, title text)"));
  PgConn(fresh.ConnInfo("dbname=postgres")).Ok("CREATE DATABASE mirror_no2pc");
  PgConn fresh_db(fresh.ConnInfo("dbname=mirror_no2pc"));
  ASSERT_TRUE(fresh_db.Ok(
      "CREATE TABLE channels_v2 (id int PRIMARY KEY, name text,"
      "  CONSTRAINT one_name UNIQUE (name) DEFERRABLE INITIALLY DEFERRED)"));
  PgshiftProcess proxy(Cluster().port(), "", "dbname = \"mirror_no2pc\"\nuser = \"postgres\"",
                       "[backends.new]\nhost = \"127.0.0.1\"\nport = " +
                           std::to_string(fresh.port()) +
                           "\ndbname = \"mirror_no2pc\"\nuser = \"postgres\"\n"
                           "[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\n"
                           "key = [\"id\"]\ncolumns = { title = \"name\" }\n"
                           "phase = \"dual-write\"\non_mirror_error = \"log\"\n");
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();
  EXPECT_NE(proxy.log().find("event=two_phase_commit_unavailable backend=new"), std::string::npos)
      << proxy.LogEnd();
  PgConn client(proxy.ConnInfo("dbname=mirror_no2pc"));
  ASSERT_TRUE(client.Ok("INSERT INTO channels VALUES (1, 'a')")) << client.error();
  EXPECT_EQ(fresh_db.Value("SELECT name FROM channels_v2 WHERE id = 1"), "a");
  // The mirror's COMMIT fails on new's deferred constraint, after old has
  // committed: the write stands, and its key is logged.
  for (const char* sql : {"BEGIN", "INSERT INTO channels VALUES (2, 'a')", "COMMIT"}) {
    ASSERT_TRUE(client.Ok(sql)) << sql << ": " << client.error();
  }
  ASSERT_EQ(client.Value("SELECT 1"), "1");  // after the mirror's commit
  EXPECT_EQ(old.Value("SELECT count(*) FROM channels"), "2");
  EXPECT_EQ(fresh_db.Value("SELECT count(*) FROM channels_v2"), "1");
  EXPECT_EQ(old.Value("SELECT string_agg(key, ',') FROM pgshift_divergence"), "2");
  EXPECT_NE(proxy.log().find("event=mirror_commit_failed"), std::string::npos) << proxy.LogEnd();
}

class NewPrimary : public DualWrite {
 protected:
  NewPrimary() { phase_ = "new-primary"; }
};

INSTANTIATE_TEST_SUITE_P(Topologies, NewPrimary,
                         ::testing::Values(Topology::kOneDatabase, Topology::kTwoServers), Name);

TEST_P(NewPrimary, WritesRunOnNewAndAreMirroredBackToOld) {
  PgConn client = Client();
  // (Salts given: old's trigger would fill in a missing one as the mirror
  // inserts the row there.)
  PgResult r = client.Exec("INSERT INTO channels (id, title, created_at, salt) VALUES (20, 'n20', "
                           "now(), 's') RETURNING title, extra");
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(r.get());
  EXPECT_EQ(RowsOf(r.get()), (Rows{{"n20", "7"}})) << "the new side's default";
  EXPECT_EQ(Old().Value("SELECT title FROM channels WHERE id = 20"), "n20");
  ASSERT_TRUE(client.Ok("UPDATE channels SET title = 'renamed' WHERE id = 1"));
  ASSERT_TRUE(client.Ok("DELETE FROM channels WHERE id = 2"));
  for (const char* sql : {"BEGIN", "INSERT INTO channels (id, title, created_at, salt) VALUES (21, "
                                   "'n21', now(), 's')",
                          "SAVEPOINT s", "UPDATE channels SET title = 'no' WHERE id = 21",
                          "ROLLBACK TO s", "COMMIT"}) {
    ASSERT_TRUE(client.Ok(sql)) << sql << ": " << client.error();
  }
  EXPECT_EQ(Old().Value("SELECT title FROM channels WHERE id = 1"), "renamed");
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels WHERE id = 2"), "0");
  EXPECT_EQ(Old().Value("SELECT title FROM channels WHERE id = 21"), "n21");
  EXPECT_EQ(client.Value("SELECT extra FROM channels WHERE id = 1"), "7") << "reads come from new";
  EXPECT_EQ(Differences(), "0");
  // Reads are shadow-compared against old (shadow_sample = 1.0): the read
  // of `extra`, a column only new has, differs; one of `title` agrees.
  EXPECT_EQ(client.Value("SELECT title FROM channels WHERE id = 21"), "n21");
  EXPECT_EQ(Metric("shadow_compared", 2), 2);
  EXPECT_EQ(Metric("shadow_matched"), 1);
  EXPECT_EQ(Metric("shadow_persistent"), 1);
  // One reload back to shadow-read is the rollback: old answers, with
  // every row new took meanwhile. Its id sequence must first pass the ids
  // new handed out (the guard rail checks).
  ASSERT_FALSE(Reconfigure("shadow-read"));
  ASSERT_TRUE(Old().Ok("SELECT setval('channels_id_seq', 21)"));
  ASSERT_TRUE(Reconfigure("shadow-read")) << proxy_->LogEnd();
  PgConn after = Client();
  EXPECT_EQ(after.Value("SELECT title FROM channels WHERE id = 21"), "n21");
  ASSERT_TRUE(after.Ok("INSERT INTO channels (id, title) VALUES (22, 'back on old')"))
      << after.error();
  EXPECT_EQ(Differences(), "0");
}

// Under new-primary across servers the mirror writes to old, and a failed
// mirror's keys are logged on new, the authoritative side, where verify
// --repair clears them.
class NewPrimaryAcrossServers : public NewPrimary {};

INSTANTIATE_TEST_SUITE_P(Topologies, NewPrimaryAcrossServers,
                         ::testing::Values(Topology::kTwoServers), Name);

TEST_P(NewPrimaryAcrossServers, UnderLogAFailedMirrorIsLoggedOnNewAndRepairClearsIt) {
  ASSERT_TRUE(Old().Ok("ALTER TABLE channels ADD CONSTRAINT old_refuses CHECK (title <> 'no')"));
  ASSERT_TRUE(Reconfigure("new-primary", "log")) << proxy_->LogEnd();
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("UPDATE channels SET title = 'no' WHERE id = 3")) << client.error();
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 3"), "no");
  EXPECT_EQ(Old().Value("SELECT title FROM channels WHERE id = 3"), "c");
  EXPECT_EQ(New().Value("SELECT string_agg(table_name || ':' || key, ',') FROM pgshift_divergence"),
            "public.channels:3");

  ASSERT_TRUE(Old().Ok("ALTER TABLE channels DROP CONSTRAINT old_refuses"));
  std::string out;
  EXPECT_EQ(RepairChannels(out), 0) << out;
  EXPECT_EQ(Old().Value("SELECT title FROM channels WHERE id = 3"), "no") << out;
  EXPECT_EQ(New().Value("SELECT count(*) FROM pgshift_divergence"), "0") << out;
  EXPECT_EQ(Differences(), "0");
}

}  // namespace
}  // namespace pgshift::testing
