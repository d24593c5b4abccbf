// Routing by phase, through pgshift with real clients: `channels` in
// new-only (renamed channels_v2, column title renamed name), on the old
// server's own database and on a second server. What the client sees through
// pgshift is compared with what the new table holds, read directly.
#include <gtest/gtest.h>

#include <memory>
#include <thread>

#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"

namespace pgshift::testing {
namespace {

// The stale old table, the new one with a renamed column and one more
// column, and an untouched table.
constexpr const char* kOldSchema =
    "DROP TABLE IF EXISTS channels, posts;"
    "CREATE TABLE channels (id serial PRIMARY KEY, title text NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT now());"
    "INSERT INTO channels (title) VALUES ('old-a'), ('old-b');"
    "CREATE TABLE posts (id serial PRIMARY KEY, channel_id int, body text);"
    "INSERT INTO posts (channel_id, body) VALUES (1, 'p1'), (3, 'p3');";
constexpr const char* kNewSchema =
    "DROP TABLE IF EXISTS channels_v2;"
    "CREATE TABLE channels_v2 (id serial PRIMARY KEY, name text NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT now(), rank int NOT NULL DEFAULT 7);"
    "INSERT INTO channels_v2 (id, name) VALUES (1, 'new-a'), (2, 'new-b'), (3, 'new-c');"
    "SELECT setval('channels_v2_id_seq', 3);";

std::string ChannelsTable(const std::string& phase) {
  return "[[users]]\nname = \"postgres\"\nadmin = true\n"
         "[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\nkey = [\"id\"]\n"
         "columns = { title = \"name\" }\nmin_shadow_compared = 0\nphase = \"" +
         phase +
         "\"\n"
         "[[tables]]\nname = \"comments\"\nnew_name = \"comments_v2\"\nphase = \"old-only\"\n";
}

void CreateDatabase(int port, const std::string& db) {
  PgConn admin("host=127.0.0.1 port=" + std::to_string(port) + " dbname=postgres user=postgres");
  ASSERT_TRUE(admin.ok()) << admin.error();
  admin.Ok("CREATE DATABASE " + db);
}

void RunSql(int port, const std::string& db, const std::string& sql) {
  PgConn c("host=127.0.0.1 port=" + std::to_string(port) + " dbname=" + db + " user=postgres");
  ASSERT_TRUE(c.ok()) << c.error();
  PgResult r = c.Exec(sql);
  ASSERT_TRUE(PQresultStatus(r.get()) == PGRES_COMMAND_OK ||
              PQresultStatus(r.get()) == PGRES_TUPLES_OK)
      << PQresultErrorMessage(r.get());
}

// ---------------------------------------------------------------------------
// One database: channels_v2 lives next to channels.

class OneDatabase : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { CreateDatabase(Cluster().port(), "routing_one"); }
  void SetUp() override {
    RunSql(Cluster().port(), "routing_one", std::string(kOldSchema) + kNewSchema);
    proxy_ = std::make_unique<PgshiftProcess>(
        Cluster().port(), Proxy(), "dbname = \"routing_one\"\nuser = \"postgres\"",
        ChannelsTable(phase_));
    ASSERT_TRUE(proxy_->ok()) << proxy_->LogEnd();
  }
  std::string Proxy() const {
    return "admin_listen = \"127.0.0.1:" + std::to_string(admin_port_) +
           "\"\nmetrics_listen = \"127.0.0.1:" + std::to_string(metrics_port_) + "\"";
  }
  PgConn Client() { return PgConn(proxy_->ConnInfo("dbname=routing_one")); }
  PgConn Direct() { return PgConn(Cluster().ConnInfo("dbname=routing_one")); }

  std::string phase_ = "new-only";
  int admin_port_ = FreePort();
  int metrics_port_ = FreePort();
  std::unique_ptr<PgshiftProcess> proxy_;
};

TEST_F(OneDatabase, SelectStarShowsNewRowsUnderTheApplicationsNames) {
  PgConn client = Client();
  PgConn direct = Direct();
  ASSERT_TRUE(client.ok()) << client.error();
  PgResult through = client.Exec("SELECT * FROM channels ORDER BY id");
  ASSERT_EQ(PQresultStatus(through.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(through.get());
  PgResult truth = direct.Exec("SELECT id, name, created_at, rank FROM channels_v2 ORDER BY id");
  EXPECT_EQ(ColumnsOf(through.get()),
            (std::vector<std::string>{"id", "title", "created_at", "rank"}));
  EXPECT_EQ(RowsOf(through.get()), RowsOf(truth.get()));
  EXPECT_EQ(client.Value("SELECT title FROM public.channels WHERE id = 2"), "new-b");
  EXPECT_EQ(client.Value("SELECT \"title\" FROM \"channels\" c WHERE c.title LIKE 'new-c'"),
            "new-c");
}

TEST_F(OneDatabase, WritesWithReturningLandInTheNewTable) {
  PgConn client = Client();
  PgConn direct = Direct();
  PgResult inserted =
      client.Exec("INSERT INTO channels (title) VALUES ('made'), ('also') RETURNING id, title");
  ASSERT_EQ(PQresultStatus(inserted.get()), PGRES_TUPLES_OK)
      << PQresultErrorMessage(inserted.get());
  EXPECT_STREQ(PQcmdStatus(inserted.get()), "INSERT 0 2");
  EXPECT_EQ(ColumnsOf(inserted.get()), (std::vector<std::string>{"id", "title"}));
  EXPECT_EQ(RowsOf(inserted.get()), (Rows{{"4", "made"}, {"5", "also"}}));
  EXPECT_EQ(direct.Value("SELECT name FROM channels_v2 WHERE id = 4"), "made");
  EXPECT_EQ(direct.Value("SELECT count(*) FROM channels"), "2") << "old is not written";

  PgResult updated = client.Exec("UPDATE channels SET title = title || '!' WHERE id = 4 RETURNING *");
  EXPECT_STREQ(PQcmdStatus(updated.get()), "UPDATE 1");
  EXPECT_EQ(ColumnsOf(updated.get()),
            (std::vector<std::string>{"id", "title", "created_at", "rank"}));
  EXPECT_EQ(RowsOf(updated.get())[0][1], "made!");

  PgResult deleted = client.Exec("DELETE FROM channels WHERE title LIKE 'also%'");
  EXPECT_STREQ(PQcmdStatus(deleted.get()), "DELETE 1");
  EXPECT_EQ(direct.Value("SELECT count(*) FROM channels_v2"), "4");
}

TEST_F(OneDatabase, PreparedStatementsDescribeWithTheApplicationsNames) {
  PgConn client = Client();
  PgConn direct = Direct();
  PgResult prepared = PgResult(PQprepare(client.get(), "by_id",
                                         "SELECT title, id FROM channels WHERE id = $1", 1, nullptr));
  ASSERT_EQ(PQresultStatus(prepared.get()), PGRES_COMMAND_OK)
      << PQresultErrorMessage(prepared.get());
  PgResult described = PgResult(PQdescribePrepared(client.get(), "by_id"));
  ASSERT_EQ(PQnfields(described.get()), 2);
  EXPECT_STREQ(PQfname(described.get(), 0), "title");
  EXPECT_EQ(PQnparams(described.get()), 1);
  for (const char* id : {"1", "3"}) {
    const char* values[] = {id};
    PgResult row = PgResult(PQexecPrepared(client.get(), "by_id", 1, values, nullptr, nullptr, 0));
    ASSERT_EQ(PQresultStatus(row.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(row.get());
    EXPECT_EQ(std::string(PQgetvalue(row.get(), 0, 0)),
              direct.Value(std::string("SELECT name FROM channels_v2 WHERE id = ") + id));
  }
  // The unnamed statement, with parameters, writing.
  const char* values[] = {"via-params"};
  PgResult inserted = PgResult(PQexecParams(
      client.get(), "INSERT INTO channels (title) VALUES ($1) RETURNING title", 1, nullptr,
      values, nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(inserted.get()), PGRES_TUPLES_OK)
      << PQresultErrorMessage(inserted.get());
  EXPECT_STREQ(PQfname(inserted.get(), 0), "title");
  EXPECT_EQ(direct.Value("SELECT count(*) FROM channels_v2 WHERE name = 'via-params'"), "1");
  // A statement on an untouched table, prepared in the same session.
  PgResult posts = PgResult(PQprepare(client.get(), "posts", "SELECT body FROM posts WHERE id = $1",
                                      1, nullptr));
  ASSERT_EQ(PQresultStatus(posts.get()), PGRES_COMMAND_OK);
  const char* one[] = {"1"};
  PgResult body = PgResult(PQexecPrepared(client.get(), "posts", 1, one, nullptr, nullptr, 0));
  EXPECT_EQ(RowsOf(body.get()), (Rows{{"p1"}}));
}

TEST_F(OneDatabase, JoinsWithUntouchedTablesAreOneRewrittenStatement) {
  PgConn client = Client();
  PgResult joined = client.Exec(
      "SELECT c.title, p.body FROM channels c JOIN posts p ON p.channel_id = c.id ORDER BY p.id");
  ASSERT_EQ(PQresultStatus(joined.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(joined.get());
  EXPECT_EQ(RowsOf(joined.get()), (Rows{{"new-a", "p1"}, {"new-c", "p3"}}));
  PgResult star = client.Exec("SELECT * FROM posts p JOIN channels c ON c.id = p.channel_id "
                              "ORDER BY p.id LIMIT 1");
  EXPECT_EQ(ColumnsOf(star.get()), (std::vector<std::string>{"id", "channel_id", "body", "id",
                                                             "title", "created_at", "rank"}));
  // Several statements in one Query: each is routed, all run.
  ASSERT_TRUE(PQsendQuery(client.get(),
                          "SELECT title FROM channels WHERE id = 1; SELECT body FROM posts WHERE "
                          "id = 2; SELECT 'channels'"));
  std::vector<Rows> results;
  while (PGresult* r = PQgetResult(client.get())) {
    results.push_back(RowsOf(r));
    PQclear(r);
  }
  EXPECT_EQ(results, (std::vector<Rows>{{{"new-a"}}, {{"p3"}}, {{"channels"}}}));
}

TEST_F(OneDatabase, RefusalsNameTheTableAndPhaseAndAbortLikeAnyError) {
  PgConn client = Client();
  PgConn direct = Direct();
  PgResult ddl = client.Exec("ALTER TABLE channels ADD COLUMN x int");
  PgError e = ErrorOf(ddl.get());
  EXPECT_EQ(e.sqlstate, "0A000");
  EXPECT_EQ(e.message,
            "pgshift: DDL on public.channels is refused in phase new-only; change the old and new "
            "tables directly");
  EXPECT_EQ(direct.Value("SELECT count(*) FROM information_schema.columns WHERE column_name = 'x'"),
            "0");
  // Inside a transaction the refusal aborts it, as a server error would.
  ASSERT_TRUE(client.Ok("BEGIN"));
  ASSERT_TRUE(client.Ok("INSERT INTO posts (body) VALUES ('in-tx')"));
  EXPECT_FALSE(client.Ok("DROP TABLE channels"));
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_INERROR);
  PgResult next = client.Exec("SELECT 1");
  EXPECT_EQ(ErrorOf(next.get()).sqlstate, "25P02");
  ASSERT_TRUE(client.Ok("ROLLBACK"));
  EXPECT_EQ(direct.Value("SELECT count(*) FROM posts WHERE body = 'in-tx'"), "0");
  // In the extended protocol, at Parse.
  PgResult prepared = PgResult(
      PQprepare(client.get(), "bad", "ALTER TABLE channels DROP COLUMN title", 0, nullptr));
  EXPECT_EQ(ErrorOf(prepared.get()).sqlstate, "0A000") << PQresultErrorMessage(prepared.get());
  EXPECT_EQ(client.Value("SELECT title FROM channels WHERE id = 1"), "new-a")
      << "the session carries on";
  EXPECT_EQ(ErrorOf(client.Exec("SELECT * FROM channels JOIN posts USING (id)").get()).message,
            "pgshift cannot expand * over public.channels here (a join with USING or NATURAL, or "
            "an unnamed FROM item); list the columns");
}

// An INSERT without a column list means the application's table's columns;
// a new table that orders them otherwise gets them named.
TEST_F(OneDatabase, InsertsWithoutAColumnListLandInTheRightColumns) {
  RunSql(Cluster().port(), "routing_one",
         "DROP TABLE channels_v2; CREATE TABLE channels_v2 (id int PRIMARY KEY,"
         " created_at timestamptz NOT NULL DEFAULT now(), rank int NOT NULL DEFAULT 7,"
         " name text NOT NULL)");
  std::string verdict = proxy_->Reload();  // the catalog is read again
  ASSERT_NE(verdict.find("config_reloaded"), std::string::npos) << verdict;
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("INSERT INTO channels VALUES (10, 'ten')")) << client.error();
  ASSERT_TRUE(client.Ok("INSERT INTO channels SELECT 11, 'eleven', '2026-01-01'")) << client.error();
  PgResult rows = Direct().Exec("SELECT id, name, rank FROM channels_v2 ORDER BY id");
  EXPECT_EQ(RowsOf(rows.get()), (Rows{{"10", "ten", "7"}, {"11", "eleven", "7"}}));
  PgResult star = client.Exec("INSERT INTO channels SELECT * FROM channels");
  PgError e = ErrorOf(star.get());
  EXPECT_EQ(e.sqlstate, "0A000");
  EXPECT_NE(e.message.find("name the columns of this INSERT into public.channels"),
            std::string::npos)
      << e.message;
}

TEST_F(OneDatabase, SyntaxErrorsAreThePostgresOnes) {
  PgConn client = Client();
  PgConn direct = Direct();
  const std::string bad = "SELECT title FROM channels WHER id = 1";
  EXPECT_EQ(ErrorOf(client.Exec(bad).get()), ErrorOf(direct.Exec(bad).get()));
}

TEST_F(OneDatabase, CountersAndMetricsFollowTheTraffic) {
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("SELECT * FROM channels"));
  ASSERT_TRUE(client.Ok("SELECT title FROM channels WHERE id = 1"));
  ASSERT_TRUE(client.Ok("INSERT INTO channels (title) VALUES ('n')"));
  EXPECT_FALSE(client.Ok("ALTER TABLE channels ADD COLUMN y int"));
  ASSERT_TRUE(client.Ok("SELECT * FROM posts"));
  std::string out;
  ASSERT_EQ(CaptureCommand("psql -X -h 127.0.0.1 -p " + std::to_string(admin_port_) +
                               " -U postgres -d pgshift -At -F '|' -c 'SHOW TABLES'",
                           out),
            0)
      << out;
  EXPECT_NE(out.find("public.channels|public.channels_v2|new-only|2|1|1|"), std::string::npos)
      << out;
  out = HttpExchange(metrics_port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(out.find("pgshift_table_reads_total{table=\"public.channels\"} 2"), std::string::npos)
      << out;
  EXPECT_NE(out.find("pgshift_table_refused_total{table=\"public.channels\"} 1"),
            std::string::npos)
      << out;
}

class OneDatabaseDualWrite : public OneDatabase {
 protected:
  OneDatabaseDualWrite() { phase_ = "dual-write"; }
};

TEST_F(OneDatabaseDualWrite, ReadsStayOnOldAndWritesReachBothSides) {
  PgConn client = Client();
  EXPECT_EQ(client.Value("SELECT title FROM channels WHERE id = 1"), "old-a");
  PgResult write = client.Exec("UPDATE channels SET title = 'x' WHERE id = 1");
  EXPECT_STREQ(PQcmdStatus(write.get()), "UPDATE 1") << PQresultErrorMessage(write.get());
  EXPECT_EQ(Direct().Value("SELECT title FROM channels WHERE id = 1"), "x");
  EXPECT_EQ(Direct().Value("SELECT name FROM channels_v2 WHERE id = 1"), "x");
}

class OneDatabaseReload : public OneDatabase {
 protected:
  OneDatabaseReload() { phase_ = "shadow-read"; }
};

TEST_F(OneDatabaseReload, OpenTransactionsFinishUnderThePhasesTheyBeganWith) {
  PgConn in_tx = Client();
  ASSERT_TRUE(in_tx.Ok("BEGIN"));
  EXPECT_EQ(in_tx.Value("SELECT title FROM channels WHERE id = 1"), "old-a");

  proxy_->RewriteConfig(Proxy(), "dbname = \"routing_one\"\nuser = \"postgres\"",
                        ChannelsTable("new-primary"));
  std::string verdict = proxy_->Reload();
  ASSERT_NE(verdict.find("event=config_reloaded"), std::string::npos) << verdict;

  EXPECT_EQ(Client().Value("SELECT title FROM channels WHERE id = 1"), "new-a")
      << "a new transaction takes the new phase";
  EXPECT_EQ(in_tx.Value("SELECT title FROM channels WHERE id = 1"), "old-a")
      << "the open transaction keeps the phase it began with";
  ASSERT_TRUE(in_tx.Ok("COMMIT"));
  EXPECT_EQ(in_tx.Value("SELECT title FROM channels WHERE id = 1"), "new-a");

  // A bad file and a refused step both keep the running phases.
  proxy_->WriteRawConfig("[proxy\nnot toml");
  EXPECT_NE(proxy_->Reload().find("event=config_rejected"), std::string::npos);
  proxy_->RewriteConfig(Proxy(), "dbname = \"routing_one\"\nuser = \"postgres\"",
                        ChannelsTable("new-only") +
                            "[[tables]]\nname = \"posts\"\nnew_name = \"posts\"\n"
                            "phase = \"shadow-read\"\n");
  verdict = proxy_->Reload();
  EXPECT_NE(verdict.find("event=config_rejected"), std::string::npos) << verdict;
  EXPECT_EQ(Client().Value("SELECT title FROM channels WHERE id = 1"), "new-a");
}

// A table moves into a mirrored phase only while nothing writes it
// without a statement naming it: a foreign key's cascade from a parent
// that is not mirrored, a trigger, a rule elsewhere that writes it, an
// updatable view over it. Each is named; force = true accepts the drift,
// and says so. TRUNCATE ... CASCADE is refused while a table is mirrored.
TEST_F(OneDatabase, WritesNoStatementShowsKeepATableOutOfMirroredPhases) {
  RunSql(Cluster().port(), "routing_one",
         "DROP TABLE IF EXISTS posts_v2, inbox CASCADE;"
         "CREATE TABLE posts_v2 (id int PRIMARY KEY, channel_id int, body text);"
         "ALTER TABLE posts ADD CONSTRAINT posts_channel FOREIGN KEY (channel_id) "
         "  REFERENCES channels ON DELETE CASCADE NOT VALID;"
         "CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS "
         "  'BEGIN RETURN NEW; END';"
         "CREATE TRIGGER posts_touch AFTER UPDATE ON posts FOR EACH ROW EXECUTE FUNCTION touch();"
         "CREATE TABLE inbox (body text);"
         "CREATE RULE inbox_to_posts AS ON INSERT TO inbox DO ALSO "
         "  INSERT INTO posts (body) VALUES (NEW.body);"
         "CREATE VIEW recent_posts AS SELECT * FROM posts;"
         "CREATE VIEW posts_inbox AS SELECT p.id, i.body FROM posts p JOIN inbox i ON true;"
         "CREATE OR REPLACE FUNCTION posts_inbox_insert() RETURNS trigger LANGUAGE plpgsql AS "
         "  'BEGIN INSERT INTO posts (body) VALUES (NEW.body); RETURN NEW; END';"
         "CREATE TRIGGER posts_inbox_insert INSTEAD OF INSERT ON posts_inbox FOR EACH ROW "
         "  EXECUTE FUNCTION posts_inbox_insert();");
  const std::string backend = "dbname = \"routing_one\"\nuser = \"postgres\"";
  auto posts = [](const std::string& extra) {
    return "[[tables]]\nname = \"posts\"\nnew_name = \"posts_v2\"\nkey = [\"id\"]\n"
           "phase = \"dual-write\"\n" +
           extra;
  };
  proxy_->RewriteConfig(Proxy(), backend, ChannelsTable("new-only") + posts(""));
  std::string verdict = proxy_->Reload();
  EXPECT_NE(verdict.find("event=config_rejected"), std::string::npos) << verdict;
  for (const char* named :
       {"public.posts cannot move to dual-write: writes reach it without a statement naming it",
        "foreign key posts_channel on posts (ON DELETE CASCADE from channels) (mirror "
        "public.channels too",
        "trigger posts_touch on posts (disable it on one side", "rule inbox_to_posts on inbox",
        "updatable view posts_inbox (write the table by its name",
        "updatable view recent_posts (write the table by its name"}) {
    EXPECT_NE(verdict.find(named), std::string::npos) << named << "\n" << verdict;
  }
  PgConn client = Client();
  EXPECT_TRUE(client.Ok("TRUNCATE inbox CASCADE"))
      << "no table is mirrored yet: " << client.error();

  // Forced: the move is made, and the log says what was accepted.
  proxy_->RewriteConfig(Proxy(), backend, ChannelsTable("new-only") + posts("force = true\n"));
  verdict = proxy_->Reload();
  ASSERT_NE(verdict.find("event=config_reloaded"), std::string::npos) << verdict;
  EXPECT_NE(proxy_->log().find("event=guard_rail_overridden table=public.posts to=dual-write "
                               "reason=\"writes reach it without a statement naming it"),
            std::string::npos)
      << proxy_->log();
  PgConn after = Client();
  EXPECT_FALSE(after.Ok("TRUNCATE inbox CASCADE"));
  EXPECT_NE(after.error().find("TRUNCATE ... CASCADE may empty a table whose writes pgshift "
                               "mirrors (public.posts (dual-write))"),
            std::string::npos)
      << after.error();
  EXPECT_TRUE(after.Ok("TRUNCATE inbox")) << after.error();

  // Once the paths are gone, the move needs no force.
  RunSql(Cluster().port(), "routing_one",
         "ALTER TABLE posts DROP CONSTRAINT posts_channel;"
         "ALTER TABLE posts DISABLE TRIGGER posts_touch;"  // disabled on this side
         "DROP RULE inbox_to_posts ON inbox; DROP VIEW recent_posts, posts_inbox;");
  proxy_->RewriteConfig(Proxy(), backend, ChannelsTable("new-only"));
  ASSERT_NE(proxy_->Reload().find("event=config_reloaded"), std::string::npos);
  proxy_->RewriteConfig(Proxy(), backend, ChannelsTable("new-only") + posts(""));
  verdict = proxy_->Reload();
  EXPECT_NE(verdict.find("event=config_reloaded"), std::string::npos) << verdict;
}

// The side that takes writes over hands out keys from its own sequence:
// they must be past the keys the mirror brought it.
TEST_F(OneDatabaseReload, TakingOverWritesWantsTheKeySequencePastTheKeys) {
  RunSql(Cluster().port(), "routing_one",
         "INSERT INTO channels_v2 (id, name) VALUES (50, 'mirrored')");
  const std::string backend = "dbname = \"routing_one\"\nuser = \"postgres\"";
  proxy_->RewriteConfig(Proxy(), backend, ChannelsTable("new-primary"));
  std::string verdict = proxy_->Reload();
  EXPECT_NE(verdict.find("event=config_rejected"), std::string::npos) << verdict;
  EXPECT_NE(verdict.find("public.channels cannot move to new-primary: its key sequence "
                         "public.channels_v2_id_seq on old would hand out 4 next, but "
                         "public.channels_v2 already holds id 50; first run SELECT "
                         "setval('public.channels_v2_id_seq', 50) on old"),
            std::string::npos)
      << verdict;
  RunSql(Cluster().port(), "routing_one", "SELECT setval('channels_v2_id_seq', 50)");
  verdict = proxy_->Reload();
  ASSERT_NE(verdict.find("event=config_reloaded"), std::string::npos) << verdict;
  PgConn client = Client();
  EXPECT_EQ(client.Value("INSERT INTO channels (title) VALUES ('on new') RETURNING id"), "51");

  // And back: old's sequence must pass the keys new handed out.
  proxy_->RewriteConfig(Proxy(), backend, ChannelsTable("shadow-read"));
  verdict = proxy_->Reload();
  EXPECT_NE(verdict.find("public.channels cannot move to shadow-read: its key sequence "
                         "public.channels_id_seq on old would hand out 3 next, but "
                         "public.channels already holds id 51"),
            std::string::npos)
      << verdict;
  proxy_->RewriteConfig(Proxy(), backend,
                        ChannelsTable("shadow-read").insert(
                            ChannelsTable("shadow-read").find("phase ="), "force = true\n"));
  verdict = proxy_->Reload();
  EXPECT_NE(verdict.find("event=config_reloaded"), std::string::npos) << verdict;
  EXPECT_NE(proxy_->log().find("event=guard_rail_overridden"), std::string::npos);
}

// An SQL-level PREPARE made before a phase change is prepared again under
// the new phase when next executed.
TEST_F(OneDatabaseReload, SqlPreparedStatementsFollowAPhaseChange) {
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("PREPARE r AS SELECT title FROM channels WHERE id = 1")) << client.error();
  EXPECT_EQ(client.Value("EXECUTE r"), "old-a");
  proxy_->RewriteConfig(Proxy(), "dbname = \"routing_one\"\nuser = \"postgres\"",
                        ChannelsTable("new-primary"));
  std::string verdict = proxy_->Reload();
  ASSERT_NE(verdict.find("event=config_reloaded"), std::string::npos) << verdict;
  EXPECT_EQ(client.Value("EXECUTE r"), "new-a");
  EXPECT_EQ(client.Value("EXECUTE r"), "new-a");
  EXPECT_EQ(client.Value("SELECT count(*) FROM pg_prepared_statements WHERE name = 'r'"), "1");
}

TEST_F(OneDatabaseReload, MovingToATableThatDoesNotExistIsRefused) {
  proxy_->RewriteConfig(Proxy(), "dbname = \"routing_one\"\nuser = \"postgres\"",
                        ChannelsTable("new-primary") +
                            "[[tables]]\nname = \"posts\"\nnew_name = \"posts_v9\"\n"
                            "phase = \"dual-write\"\n");
  std::string verdict = proxy_->Reload();
  EXPECT_NE(verdict.find("event=config_rejected"), std::string::npos) << verdict;
  EXPECT_NE(verdict.find("public.posts cannot move to dual-write: cannot read the columns of "
                         "public.posts_v9 on backend old"),
            std::string::npos)
      << verdict;
}

// ---------------------------------------------------------------------------
// A second server: channels_v2 lives on its own PostgreSQL.

class SecondServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    new_cluster_ = new PgCluster();
    ASSERT_TRUE(new_cluster_->ok());
    CreateDatabase(Cluster().port(), "routing_two");
    CreateDatabase(new_cluster_->port(), "routing_two");
  }
  static void TearDownTestSuite() {
    delete new_cluster_;
    new_cluster_ = nullptr;
  }
  void SetUp() override {
    RunSql(Cluster().port(), "routing_two", kOldSchema);
    RunSql(new_cluster_->port(), "routing_two", kNewSchema);
    std::string backends = "[backends.new]\nhost = \"127.0.0.1\"\nport = " +
                           std::to_string(new_cluster_->port()) +
                           "\ndbname = \"routing_two\"\nuser = \"postgres\"\n";
    proxy_ = std::make_unique<PgshiftProcess>(Cluster().port(), "",
                                              "dbname = \"routing_two\"\nuser = \"postgres\"",
                                              backends + ChannelsTable("new-only"));
    ASSERT_TRUE(proxy_->ok()) << proxy_->LogEnd();
  }
  PgConn Client() { return PgConn(proxy_->ConnInfo("dbname=routing_two")); }
  PgConn Old() { return PgConn(Cluster().ConnInfo("dbname=routing_two")); }
  PgConn New() { return PgConn(new_cluster_->ConnInfo("dbname=routing_two")); }

  static PgCluster* new_cluster_;
  std::unique_ptr<PgshiftProcess> proxy_;
};
PgCluster* SecondServer::new_cluster_ = nullptr;

TEST_F(SecondServer, ChannelsAreServedByTheNewServer) {
  PgConn client = Client();
  ASSERT_TRUE(client.ok()) << client.error();
  PgResult through = client.Exec("SELECT * FROM channels ORDER BY id");
  ASSERT_EQ(PQresultStatus(through.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(through.get());
  PgResult truth = New().Exec("SELECT id, name, created_at, rank FROM channels_v2 ORDER BY id");
  EXPECT_EQ(ColumnsOf(through.get()),
            (std::vector<std::string>{"id", "title", "created_at", "rank"}));
  EXPECT_EQ(RowsOf(through.get()), RowsOf(truth.get()));
  // Untouched tables stay on old, in the same session, in both protocols.
  EXPECT_EQ(client.Value("SELECT body FROM posts WHERE id = 1"), "p1");
  PgResult inserted = client.Exec("INSERT INTO channels (title) VALUES ('far') RETURNING id, title");
  EXPECT_EQ(RowsOf(inserted.get()), (Rows{{"4", "far"}})) << PQresultErrorMessage(inserted.get());
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 4"), "far");
  EXPECT_EQ(Old().Value("SELECT count(*) FROM channels"), "2");
  const char* id[] = {"2"};
  PgResult by_params = PgResult(PQexecParams(client.get(), "SELECT title FROM channels WHERE id = $1",
                                             1, nullptr, id, nullptr, nullptr, 0));
  EXPECT_EQ(RowsOf(by_params.get()), (Rows{{"new-b"}}));
  PgResult posts = PgResult(PQexecParams(client.get(), "SELECT body FROM posts WHERE channel_id = $1",
                                         1, nullptr, id, nullptr, nullptr, 0));
  EXPECT_EQ(PQntuples(posts.get()), 0);
  ASSERT_EQ(PQresultStatus(posts.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(posts.get());
}

TEST_F(SecondServer, StatementsNeedingBothServersAreRefused) {
  PgConn client = Client();
  PgResult joined = client.Exec("SELECT c.title FROM channels c JOIN posts p ON p.channel_id = c.id");
  PgError e = ErrorOf(joined.get());
  EXPECT_EQ(e.sqlstate, "0A000");
  EXPECT_EQ(e.message,
            "pgshift: this statement needs tables that are answered by different servers: "
            "public.channels (new-only, on new), public.posts (not migrating, on old)");
  EXPECT_EQ(client.Value("SELECT 1"), "1") << "the session carries on";
}

TEST_F(SecondServer, AQueryOfSeveralStatementsIsRoutedStatementByStatement) {
  PgConn client = Client();
  auto results = [&](const std::string& sql) {
    EXPECT_TRUE(PQsendQuery(client.get(), sql.c_str()));
    std::vector<std::string> out;
    while (PGresult* r = PQgetResult(client.get())) {
      out.push_back(PQresultStatus(r) == PGRES_FATAL_ERROR ? ErrorOf(r).sqlstate
                                                           : PQcmdStatus(r) + std::string(" ") +
                                                                 (PQntuples(r) ? PQgetvalue(r, 0, 0) : ""));
      PQclear(r);
    }
    return out;
  };
  EXPECT_EQ(results("SELECT title FROM channels WHERE id = 1; SELECT body FROM posts WHERE id = 1; "
                    "SELECT 'x'; SELECT title FROM channels WHERE id = 2"),
            (std::vector<std::string>{"SELECT 1 new-a", "SELECT 1 p1", "SELECT 1 x",
                                      "SELECT 1 new-b"}));
  // A failing part ends the Query: what follows on the other server never runs.
  EXPECT_EQ(results("SELECT title FROM channels WHERE id = 1 / 0; INSERT INTO posts (body) VALUES "
                    "('never')"),
            (std::vector<std::string>{"22012"}));
  EXPECT_EQ(Old().Value("SELECT count(*) FROM posts WHERE body = 'never'"), "0");
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_IDLE);
  // A write followed by a part on the other server could not be undone.
  EXPECT_EQ(results("INSERT INTO posts (body) VALUES ('w'); SELECT title FROM channels"),
            (std::vector<std::string>{"0A000"}));
  EXPECT_EQ(Old().Value("SELECT count(*) FROM posts WHERE body = 'w'"), "0");
}

TEST_F(SecondServer, TransactionsFollowTheClientOnBothServers) {
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("BEGIN"));
  ASSERT_TRUE(client.Ok("SELECT * FROM posts"));
  ASSERT_TRUE(client.Ok("INSERT INTO channels (title) VALUES ('rolled back')"));
  EXPECT_EQ(client.Value("SELECT count(*) FROM channels WHERE title = 'rolled back'"), "1");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE name = 'rolled back'"), "0")
      << "not committed yet";
  ASSERT_TRUE(client.Ok("ROLLBACK"));
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE name = 'rolled back'"), "0");

  ASSERT_TRUE(client.Ok("BEGIN"));
  ASSERT_TRUE(client.Ok("UPDATE channels SET title = 'kept' WHERE id = 1"));
  ASSERT_TRUE(client.Ok("SELECT body FROM posts"));
  ASSERT_TRUE(client.Ok("COMMIT"));
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_IDLE);
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 1"), "kept");
  EXPECT_EQ(client.Value("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in%'"),
            "0");
}

TEST_F(SecondServer, ATransactionWritesOnOneServerOnly) {
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("BEGIN"));
  ASSERT_TRUE(client.Ok("INSERT INTO posts (body) VALUES ('first')"));
  PgResult second = client.Exec("INSERT INTO channels (title) VALUES ('second')");
  PgError e = ErrorOf(second.get());
  EXPECT_EQ(e.sqlstate, "0A000");
  EXPECT_EQ(e.message,
            "pgshift: this transaction has written on server old; a write on server new would "
            "make one transaction span two servers");
  EXPECT_EQ(PQtransactionStatus(client.get()), PQTRANS_INERROR);
  ASSERT_TRUE(client.Ok("ROLLBACK"));
  EXPECT_EQ(Old().Value("SELECT count(*) FROM posts WHERE body = 'first'"), "0");
  EXPECT_EQ(New().Value("SELECT count(*) FROM channels_v2 WHERE name = 'second'"), "0");
  // Outside a transaction each statement is its own.
  ASSERT_TRUE(client.Ok("INSERT INTO posts (body) VALUES ('first')"));
  ASSERT_TRUE(client.Ok("INSERT INTO channels (title) VALUES ('second')"));
}

TEST_F(SecondServer, PreparedStatementsFollowTheServerTheyWerePreparedOn) {
  PgConn client = Client();
  PgResult a = PgResult(PQprepare(client.get(), "ch", "SELECT title FROM channels WHERE id = $1",
                                  1, nullptr));
  PgResult b = PgResult(PQprepare(client.get(), "po", "SELECT body FROM posts WHERE id = $1", 1,
                                  nullptr));
  ASSERT_EQ(PQresultStatus(a.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(a.get());
  ASSERT_EQ(PQresultStatus(b.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(b.get());
  for (int round = 0; round < 3; ++round) {
    const char* one[] = {"1"};
    PgResult ch = PgResult(PQexecPrepared(client.get(), "ch", 1, one, nullptr, nullptr, 0));
    PgResult po = PgResult(PQexecPrepared(client.get(), "po", 1, one, nullptr, nullptr, 0));
    EXPECT_EQ(RowsOf(ch.get()), (Rows{{"new-a"}})) << PQresultErrorMessage(ch.get());
    EXPECT_EQ(RowsOf(po.get()), (Rows{{"p1"}})) << PQresultErrorMessage(po.get());
  }
  PgResult described = PgResult(PQdescribePrepared(client.get(), "ch"));
  EXPECT_STREQ(PQfname(described.get(), 0), "title");
}

TEST_F(SecondServer, APipelineMixingServersIsRefusedAtTheSwitch) {
  PgConn client = Client();
  ASSERT_EQ(PQenterPipelineMode(client.get()), 1);
  const char* id[] = {"1"};
  ASSERT_EQ(PQsendQueryParams(client.get(), "SELECT body FROM posts WHERE id = $1", 1, nullptr, id,
                              nullptr, nullptr, 0),
            1);
  ASSERT_EQ(PQsendQueryParams(client.get(), "SELECT title FROM channels WHERE id = $1", 1, nullptr,
                              id, nullptr, nullptr, 0),
            1);
  ASSERT_EQ(PQpipelineSync(client.get()), 1);
  // Results of one query end with a null; the pipeline's with its sync.
  std::vector<std::string> seen;
  for (int i = 0; i < 6; ++i) {
    PGresult* r = PQgetResult(client.get());
    if (r == nullptr) {
      seen.push_back("end");
      continue;
    }
    ExecStatusType status = PQresultStatus(r);
    seen.push_back(status == PGRES_FATAL_ERROR ? ErrorOf(r).sqlstate : PQresStatus(status));
    if (status == PGRES_FATAL_ERROR) {
      EXPECT_NE(ErrorOf(r).message.find("send a Sync between them"), std::string::npos)
          << ErrorOf(r).message;
    }
    PQclear(r);
    if (status == PGRES_PIPELINE_SYNC) break;
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"PGRES_TUPLES_OK", "end", "0A000", "end",
                                            "PGRES_PIPELINE_SYNC"}));
  ASSERT_EQ(PQexitPipelineMode(client.get()), 1) << PQerrorMessage(client.get());
  EXPECT_EQ(client.Value("SELECT title FROM channels WHERE id = 1"), "new-a");
}

// SQL-level PREPARE: EXECUTE and DEALLOCATE go where the PREPARE went.
TEST_F(SecondServer, SqlPreparedStatementsRunWhereTheyWerePrepared) {
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("PREPARE ch AS SELECT title FROM channels WHERE id = $1")) << client.error();
  ASSERT_TRUE(client.Ok("PREPARE po AS SELECT body FROM posts WHERE id = $1")) << client.error();
  EXPECT_EQ(client.Value("EXECUTE ch(1)"), "new-a");
  EXPECT_EQ(client.Value("EXECUTE po(1)"), "p1");
  ASSERT_TRUE(client.Ok("BEGIN"));
  EXPECT_EQ(client.Value("EXECUTE po(1)"), "p1");
  EXPECT_EQ(client.Value("EXECUTE ch(2)"), "new-b");
  ASSERT_TRUE(client.Ok("COMMIT"));
  ASSERT_TRUE(client.Ok("DEALLOCATE ch")) << client.error();
  PgResult gone = client.Exec("EXECUTE ch(1)");
  EXPECT_EQ(ErrorOf(gone.get()).sqlstate, "26000");
  ASSERT_TRUE(client.Ok("PREPARE ch AS SELECT title FROM channels WHERE id = $1")) << client.error();
  ASSERT_TRUE(client.Ok("DEALLOCATE ALL")) << client.error();
  ASSERT_TRUE(client.Ok("PREPARE ch AS SELECT title FROM channels WHERE id = $1"))
      << "DEALLOCATE ALL dropped it on new too: " << client.error();
  EXPECT_EQ(client.Value("EXECUTE ch(2)"), "new-b");
}

// One prepared while old served the table moves to new with it.
TEST_F(SecondServer, SqlPreparedStatementsMoveServerWithTheirTable) {
  std::string backends = "[backends.new]\nhost = \"127.0.0.1\"\nport = " +
                         std::to_string(new_cluster_->port()) +
                         "\ndbname = \"routing_two\"\nuser = \"postgres\"\n";
  const std::string backend = "dbname = \"routing_two\"\nuser = \"postgres\"";
  proxy_ = std::make_unique<PgshiftProcess>(Cluster().port(), "", backend,
                                            backends + ChannelsTable("shadow-read"));
  ASSERT_TRUE(proxy_->ok()) << proxy_->LogEnd();
  PgConn client = Client();
  ASSERT_TRUE(client.Ok("PREPARE r AS SELECT title FROM channels WHERE id = 1")) << client.error();
  EXPECT_EQ(client.Value("EXECUTE r"), "old-a");
  proxy_->RewriteConfig("", backend, backends + ChannelsTable("new-primary"));
  std::string verdict = proxy_->Reload();
  ASSERT_NE(verdict.find("event=config_reloaded"), std::string::npos) << verdict;
  EXPECT_EQ(client.Value("EXECUTE r"), "new-a");
  EXPECT_EQ(client.Value("SELECT count(*) FROM pg_prepared_statements WHERE name = 'r'"), "0")
      << "dropped on old";
  ASSERT_TRUE(client.Ok("DEALLOCATE r")) << client.error();
}

// SET and the like run on old; a read served by new sees them too, as it
// would on a direct connection: committed session changes, the current
// transaction's changes and BEGIN's modes, whichever protocol set them.
TEST_F(SecondServer, TheClientsSettingsReachTheNewServer) {
  PgConn client = Client();
  ASSERT_TRUE(client.ok()) << client.error();
  auto on_new = [&](const std::string& name) {
    return client.Value("SELECT current_setting('" + name + "') FROM channels WHERE id = 1");
  };
  auto on_old = [&](const std::string& name) {
    return client.Value("SELECT current_setting('" + name + "')");
  };
  // Set before new is connected, then while it is.
  ASSERT_TRUE(client.Ok("SET TIME ZONE 'Pacific/Auckland'"));
  ASSERT_TRUE(client.Ok("SET app.tenant = '42'; SET search_path TO pg_catalog, public"));
  EXPECT_EQ(on_new("TimeZone"), "Pacific/Auckland");
  EXPECT_EQ(on_new("app.tenant"), "42");
  EXPECT_EQ(on_new("search_path"), "pg_catalog, public");
  PgResult extended = PgResult(PQexecParams(client.get(), "SET datestyle TO 'SQL, DMY'", 0,
                                            nullptr, nullptr, nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(extended.get()), PGRES_COMMAND_OK);
  ASSERT_TRUE(client.Ok("RESET TimeZone"));
  EXPECT_EQ(on_new("DateStyle"), "SQL, DMY");
  EXPECT_EQ(on_new("TimeZone"), on_old("TimeZone"));

  // A transaction's changes: undone by ROLLBACK, kept by COMMIT; SET LOCAL
  // only for the transaction.
  ASSERT_TRUE(client.Ok("BEGIN"));
  ASSERT_TRUE(client.Ok("SET app.tenant = '7'"));
  ASSERT_TRUE(client.Ok("SET LOCAL statement_timeout = '5s'"));
  EXPECT_EQ(on_new("app.tenant"), "7");
  EXPECT_EQ(on_new("statement_timeout"), "5s");
  ASSERT_TRUE(client.Ok("ROLLBACK"));
  EXPECT_EQ(on_new("app.tenant"), "42");
  EXPECT_EQ(on_new("statement_timeout"), "0");
  ASSERT_TRUE(client.Ok("BEGIN"));
  EXPECT_EQ(on_new("app.tenant"), "42") << "new in the transaction before the change";
  ASSERT_TRUE(client.Ok("SET app.tenant = '8'"));
  ASSERT_TRUE(client.Ok("SET LOCAL lock_timeout = '3s'"));
  EXPECT_EQ(on_new("app.tenant"), "8");
  EXPECT_EQ(on_new("lock_timeout"), "3s");
  ASSERT_TRUE(client.Ok("COMMIT"));
  EXPECT_EQ(on_new("app.tenant"), "8");
  EXPECT_EQ(on_new("lock_timeout"), "0");

  ASSERT_TRUE(client.Ok("BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY"));
  ASSERT_TRUE(client.Ok("SELECT 1"));
  EXPECT_EQ(on_new("transaction_isolation"), "serializable");
  EXPECT_EQ(on_new("transaction_read_only"), "on");
  ASSERT_TRUE(client.Ok("COMMIT"));
  EXPECT_EQ(on_new("transaction_isolation"), "read committed");

  // A change new refuses is logged; the others still reach it.
  ASSERT_TRUE(Old().Ok("DO $$ BEGIN CREATE ROLE pgshift_only_on_old; "
                       "EXCEPTION WHEN duplicate_object THEN NULL; END $$"));
  ASSERT_TRUE(client.Ok("SET ROLE pgshift_only_on_old"));
  ASSERT_TRUE(client.Ok("SET app.tenant = '9'"));
  EXPECT_EQ(on_new("app.tenant"), "9");
  EXPECT_NE(proxy_->log().find("event=setting_not_applied"), std::string::npos)
      << proxy_->LogEnd();
  EXPECT_NE(proxy_->log().find("pgshift_only_on_old"), std::string::npos);

  // DISCARD ALL puts both back as they were at login.
  ASSERT_TRUE(client.Ok("DISCARD ALL"));
  EXPECT_EQ(on_new("app.tenant"), "");
  EXPECT_EQ(on_new("DateStyle"), on_old("DateStyle"));
  EXPECT_EQ(on_new("search_path"), on_old("search_path"));
  EXPECT_EQ(client.Value("SELECT current_user FROM channels WHERE id = 1"), "postgres");
}

TEST_F(SecondServer, ShadowReadsCompareAcrossServers) {
  // channels in shadow-read: served by old, a copy of every read compared on new.
  RunSql(Cluster().port(), "routing_two",
         "UPDATE channels SET title = 'new-' || chr(96 + id); INSERT INTO channels (id, title) "
         "VALUES (3, 'new-c')");
  int metrics_port = FreePort();
  std::string backends = "[backends.new]\nhost = \"127.0.0.1\"\nport = " +
                         std::to_string(new_cluster_->port()) +
                         "\ndbname = \"routing_two\"\nuser = \"postgres\"\n";
  std::string tables = ChannelsTable("shadow-read");
  tables.insert(tables.find("phase ="), "shadow_sample = 1.0\n");
  // A long recheck delay, so that the test can make a difference go away
  // in between.
  proxy_ = std::make_unique<PgshiftProcess>(
      Cluster().port(),
      "metrics_listen = \"127.0.0.1:" + std::to_string(metrics_port) +
          "\"\nshadow_recheck_delay = 1.5",
      "dbname = \"routing_two\"\nuser = \"postgres\"", backends + tables);
  ASSERT_TRUE(proxy_->ok()) << proxy_->LogEnd();
  auto metric = [&](const std::string& name) {
    std::string text = HttpExchange(metrics_port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    std::string key = "pgshift_table_shadow_" + name + "_total{table=\"public.channels\"} ";
    size_t at = text.find(key);
    return at == std::string::npos ? -1 : std::stoll(text.substr(at + key.size()));
  };
  PgConn client = Client();
  EXPECT_EQ(client.Value("SELECT title FROM channels WHERE id = 1"), "new-a");
  ASSERT_TRUE(New().Ok("UPDATE channels_v2 SET name = 'drift' WHERE id = 2"));
  EXPECT_EQ(client.Value("SELECT title FROM channels WHERE id = 2"), "new-b") << "served by old";
  for (int i = 0; i < 100 && metric("compared") < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(metric("compared"), 2);
  EXPECT_EQ(metric("matched"), 1);
  EXPECT_EQ(metric("persistent"), 1) << "still different when read again: persistent";
  EXPECT_EQ(metric("transient"), 0);
  EXPECT_NE(proxy_->log().find("only in old: (new-b); only in new: (drift)"), std::string::npos)
      << proxy_->LogEnd();

  // A difference that is gone when read again (as a write committed on old
  // and not yet on new would be) is transient, not a mismatch.
  ASSERT_TRUE(New().Ok("UPDATE channels_v2 SET name = 'late' WHERE id = 3"));
  EXPECT_EQ(client.Value("SELECT title FROM channels WHERE id = 3"), "new-c");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the first read has run
  ASSERT_TRUE(New().Ok("UPDATE channels_v2 SET name = 'new-c' WHERE id = 3"));
  for (int i = 0; i < 200 && metric("compared") < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(metric("compared"), 3);
  EXPECT_EQ(metric("transient"), 1);
  EXPECT_EQ(metric("persistent"), 1) << "unchanged";
}

}  // namespace
}  // namespace pgshift::testing
