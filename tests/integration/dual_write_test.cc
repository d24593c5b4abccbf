// Row mirroring on one database, through pgshift with real clients:
// `channels` in dual-write (renamed channels_v2, title renamed name), and
// the client sees exactly what it would see without pgshift while every
// written row lands, identical, on both sides.
#include <gtest/gtest.h>

#include <memory>

#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"

namespace pgshift::testing {
namespace {

// Old tables with a serial id, a default of now() and a trigger that draws
// random(): values only the old side can produce, which the mirror must copy.
constexpr const char* kSchema =
    "DROP TABLE IF EXISTS channels, channels_v2, tags, tags_v2, posts CASCADE;"
    "CREATE TABLE channels (id serial PRIMARY KEY, title text NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT clock_timestamp(), salt text);"
    "CREATE OR REPLACE FUNCTION salt() RETURNS trigger LANGUAGE plpgsql AS"
    "  $$BEGIN NEW.salt := md5(random()::text); RETURN NEW; END$$;"
    "CREATE TRIGGER salt BEFORE INSERT ON channels FOR EACH ROW EXECUTE FUNCTION salt();"
    "CREATE TABLE channels_v2 (id int PRIMARY KEY, name text NOT NULL CHECK (name <> 'forbidden'),"
    "  created_at timestamptz NOT NULL, salt text, extra int DEFAULT 7);"
    "INSERT INTO channels (title) VALUES ('a'), ('b'), ('c');"
    "INSERT INTO channels_v2 (id, name, created_at, salt)"
    "  SELECT id, title, created_at, salt FROM channels;"
    "CREATE TABLE tags (label text);"
    "CREATE TABLE tags_v2 (label text);"
    "CREATE TABLE posts (id serial PRIMARY KEY, channel_id int, body text);"
    "INSERT INTO posts (channel_id, body) VALUES (1, 'p1'), (2, 'p2');";

// Rows of old and new that differ (the renames applied), as "id" strings.
constexpr const char* kDifferences =
    "SELECT count(*) FROM ((SELECT id, title, created_at, salt FROM channels"
    "  EXCEPT SELECT id, name, created_at, salt FROM channels_v2)"
    " UNION ALL (SELECT id, name, created_at, salt FROM channels_v2"
    "  EXCEPT SELECT id, title, created_at, salt FROM channels)) d";

class DualWrite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    PgConn admin(Cluster().ConnInfo("dbname=postgres"));
    admin.Ok("CREATE DATABASE mirror_one");
  }
  void SetUp() override {
    PgConn direct = Direct();
    ASSERT_TRUE(direct.ok()) << direct.error();
    PgResult r = direct.Exec(kSchema);
    ASSERT_EQ(PQresultStatus(r.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(r.get());
    proxy_ = std::make_unique<PgshiftProcess>(Cluster().port(), "",
                                              "dbname = \"mirror_one\"\nuser = \"postgres\"",
                                              Tables(phase_));
    ASSERT_TRUE(proxy_->ok()) << proxy_->log();
  }
  static std::string Tables(const std::string& phase) {
    return "[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\nkey = [\"id\"]\n"
           "columns = { title = \"name\" }\nphase = \"" +
           phase +
           "\"\n"
           "[[tables]]\nname = \"tags\"\nnew_name = \"tags_v2\"\nphase = \"dual-write\"\n";
  }
  PgConn Client() { return PgConn(proxy_->ConnInfo("dbname=mirror_one")); }
  PgConn Direct() { return PgConn(Cluster().ConnInfo("dbname=mirror_one")); }
  std::string Differences() { return Direct().Value(kDifferences).value_or("error"); }

  std::string phase_ = "dual-write";
  std::unique_ptr<PgshiftProcess> proxy_;
};

TEST_F(DualWrite, InsertsLandOnBothSidesWithTheOldSidesValues) {
  PgConn client = Client();
  PgResult r = client.Exec("INSERT INTO channels (title) VALUES ('d'), ('e')");
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(r.get());
  EXPECT_STREQ(PQcmdStatus(r.get()), "INSERT 0 2");
  EXPECT_EQ(PQnfields(r.get()), 0);
  EXPECT_EQ(Direct().Value("SELECT count(*) FROM channels_v2 WHERE id IN (4, 5)"), "2");
  EXPECT_EQ(Differences(), "0") << "serial ids, defaults and trigger values agree";
}

TEST_F(DualWrite, ReturningGivesTheClientItsOwnColumns) {
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
  EXPECT_EQ(Differences(), "0");
}

TEST_F(DualWrite, UpdatesAndDeletesFollowByKey) {
  PgConn client = Client();
  PgResult none = client.Exec("UPDATE channels SET title = 'z' WHERE id = 99");
  EXPECT_STREQ(PQcmdStatus(none.get()), "UPDATE 0");
  PgResult from = client.Exec(
      "UPDATE channels c SET title = p.body FROM posts p WHERE p.channel_id = c.id");
  ASSERT_EQ(PQresultStatus(from.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(from.get());
  EXPECT_STREQ(PQcmdStatus(from.get()), "UPDATE 2");
  EXPECT_EQ(Direct().Value("SELECT name FROM channels_v2 WHERE id = 2"), "p2");
  PgResult del = client.Exec("DELETE FROM channels USING posts WHERE posts.channel_id = channels.id");
  EXPECT_STREQ(PQcmdStatus(del.get()), "DELETE 2");
  EXPECT_EQ(Direct().Value("SELECT count(*) FROM channels_v2"), "1");
  // A row not backfilled yet is created by an update.
  ASSERT_TRUE(Direct().Ok("DELETE FROM channels_v2"));
  ASSERT_TRUE(client.Ok("UPDATE channels SET title = 'back' WHERE id = 3"));
  EXPECT_EQ(Direct().Value("SELECT name FROM channels_v2 WHERE id = 3"), "back");
  EXPECT_EQ(Differences(), "0");
}

TEST_F(DualWrite, UpsertsBothArmsAndTheClientsOwnCtes) {
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
  EXPECT_EQ(Direct().Value("SELECT count(*) FROM posts"), "1");
  EXPECT_EQ(Direct().Value("SELECT count(*) FROM channels_v2 WHERE name = 'p1'"), "1");
  EXPECT_EQ(Differences(), "0");
}

TEST_F(DualWrite, PreparedWritesDescribeAsTheyWouldDirectly) {
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
  const char* id[] = {"2"};
  PgResult deleted = PgResult(PQexecParams(
      client.get(), "DELETE FROM channels WHERE id = $1 RETURNING title", 1, nullptr, id, nullptr,
      nullptr, 0));
  EXPECT_EQ(RowsOf(deleted.get()), (Rows{{"b"}})) << PQresultErrorMessage(deleted.get());
  EXPECT_STREQ(PQcmdStatus(deleted.get()), "DELETE 1");
  EXPECT_EQ(Differences(), "0");
}

TEST_F(DualWrite, MultiStatementQueriesKeepEveryTag) {
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

TEST_F(DualWrite, AFailingMirrorFailsTheWholeStatement) {
  PgConn client = Client();
  PgResult r = client.Exec("INSERT INTO channels (title) VALUES ('fine'), ('forbidden')");
  EXPECT_EQ(ErrorOf(r.get()).sqlstate, "23514") << "the new table's check constraint";
  EXPECT_EQ(Direct().Value("SELECT count(*) FROM channels"), "3") << "old is not written either";
  EXPECT_EQ(Differences(), "0");
}

TEST_F(DualWrite, WhatCannotBeMirroredIsRefusedAndNothingIsWritten) {
  PgConn client = Client();
  PgResult key = client.Exec("UPDATE channels SET id = id + 100");
  EXPECT_EQ(ErrorOf(key.get()).sqlstate, "0A000");
  EXPECT_EQ(ErrorOf(key.get()).message,
            "pgshift: cannot mirror this write to public.channels in phase dual-write: it "
            "changes key column id");
  PgResult copy = client.Exec("COPY channels (title) FROM STDIN");
  EXPECT_EQ(ErrorOf(copy.get()).sqlstate, "0A000");
  EXPECT_NE(ErrorOf(copy.get()).message.find("copy on public.channels in phase dual-write"),
            std::string::npos)
      << ErrorOf(copy.get()).message;
  // A table without a key: inserts are mirrored, updates refused.
  PgResult tag = client.Exec("INSERT INTO tags VALUES ('t1')");
  EXPECT_STREQ(PQcmdStatus(tag.get()), "INSERT 0 1") << PQresultErrorMessage(tag.get());
  EXPECT_EQ(Direct().Value("SELECT count(*) FROM tags_v2"), "1");
  PgResult update = client.Exec("UPDATE tags SET label = 't2'");
  EXPECT_EQ(ErrorOf(update.get()).message,
            "pgshift: cannot mirror this write to public.tags in phase dual-write: the table has "
            "no key to find its rows by");
  EXPECT_EQ(Direct().Value("SELECT label FROM tags"), "t1");
  // TRUNCATE empties both, in one statement.
  PgResult truncate = client.Exec("TRUNCATE channels, tags");
  ASSERT_EQ(PQresultStatus(truncate.get()), PGRES_COMMAND_OK)
      << PQresultErrorMessage(truncate.get());
  EXPECT_EQ(Direct().Value("SELECT (SELECT count(*) FROM channels_v2) + (SELECT count(*) FROM "
                           "tags_v2)"),
            "0");
}

class NewPrimary : public DualWrite {
 protected:
  NewPrimary() { phase_ = "new-primary"; }
};

TEST_F(NewPrimary, WritesRunOnNewAndAreMirroredBackToOld) {
  PgConn client = Client();
  PgResult r = client.Exec("INSERT INTO channels (id, title, created_at) VALUES (20, 'n20', now()) "
                           "RETURNING title, extra");
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(r.get());
  EXPECT_EQ(RowsOf(r.get()), (Rows{{"n20", "7"}})) << "the new side's default";
  EXPECT_EQ(Direct().Value("SELECT title FROM channels WHERE id = 20"), "n20");
  ASSERT_TRUE(client.Ok("UPDATE channels SET title = 'renamed' WHERE id = 1"));
  ASSERT_TRUE(client.Ok("DELETE FROM channels WHERE id = 2"));
  EXPECT_EQ(Direct().Value("SELECT title FROM channels WHERE id = 1"), "renamed");
  EXPECT_EQ(Direct().Value("SELECT count(*) FROM channels WHERE id = 2"), "0");
  EXPECT_EQ(client.Value("SELECT extra FROM channels WHERE id = 1"), "7") << "reads come from new";
}

}  // namespace
}  // namespace pgshift::testing
