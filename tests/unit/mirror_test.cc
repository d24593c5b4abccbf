// Mirrored writes on one database: the statement each client write becomes,
// and how its reply is reshaped.
#include <gtest/gtest.h>

#include "routing/router.h"

namespace pgshift::routing {
namespace {

struct Fixture {
  // `channels_extra`: more settings of channels' [[tables]] entry.
  explicit Fixture(std::string_view phase, bool two_servers = false,
                   std::string_view channels_extra = "")
      : router(Config(phase, two_servers, channels_extra), Columns(), counters) {}
  static ConfigPtr Config(std::string_view phase, bool two_servers = false,
                          std::string_view channels_extra = "") {
    auto config = ParseConfig(
        std::string("[backends.old]\n") + (two_servers ? "[backends.new]\nport = 5433\n" : "") +
            "[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\nkey = [\"id\"]\n"
            "columns = { title = \"name\" }\nphase = \"" +
            std::string(phase) + "\"\n" + std::string(channels_extra) +
            "[[tables]]\nname = \"tags\"\nnew_name = \"tags_v2\"\nphase = \"dual-write\"\n",
        "mirror.toml");
    EXPECT_TRUE(config.ok()) << config.status();
    return *config;
  }
  static Catalog Columns() {
    return {{{"public.channels", {"id", "title", "created_at", "gone"}},
             {"public.tags", {"label"}}},
            {{"public.channels_v2", {"id", "name", "created_at", "extra"}},
             {"public.tags_v2", {"label"}}}};
  }
  TableCounterRegistry counters;
  Router router;
};

constexpr const char* kUpsert =
    "pgshift_mirror AS (INSERT INTO public.channels_v2 (id, name, created_at) OVERRIDING SYSTEM "
    "VALUE SELECT id, title, "
    "created_at FROM pgshift_rows ON CONFLICT (id) DO UPDATE SET name = excluded.name, created_at "
    "= excluded.created_at)";

TEST(Mirror, InsertBecomesOneStatementWithItsMirror) {
  Fixture f("dual-write");
  PlanPtr plan = f.router.PlanFor("INSERT INTO channels (title) VALUES ($1)");
  ASSERT_FALSE(plan->refusal) << plan->refusal->message;
  EXPECT_EQ(plan->server, BackendId::kOld);
  EXPECT_EQ(plan->sql, std::string("WITH pgshift_rows AS (INSERT INTO channels (title) VALUES ($1) "
                                   "RETURNING channels.*), ") +
                           kUpsert + " SELECT FROM pgshift_rows channels");
  ASSERT_EQ(plan->shapes.size(), 1u);
  EXPECT_EQ(plan->shapes[0].tag, "INSERT");
  EXPECT_TRUE(plan->shapes[0].no_rows);
}

TEST(Mirror, ReturningIsEvaluatedOverTheWrittenRows) {
  Fixture f("dual-write");
  PlanPtr plan = f.router.PlanFor(
      "WITH src AS (SELECT 'x' AS t) INSERT INTO channels AS c (title) SELECT t FROM src "
      "RETURNING c.id, upper(title)");
  ASSERT_FALSE(plan->refusal) << plan->refusal->message;
  EXPECT_EQ(plan->sql,
            "WITH src AS (SELECT 'x' AS t), pgshift_rows AS (INSERT INTO channels AS c (title) "
            "SELECT t FROM src RETURNING c.*), pgshift_mirror AS (INSERT INTO public.channels_v2 "
            "(id, name, created_at) OVERRIDING SYSTEM VALUE SELECT id, title, created_at FROM "
            "pgshift_rows ON CONFLICT "
            "(id) DO UPDATE SET name = excluded.name, created_at = excluded.created_at) SELECT "
            "c.id, upper(title) FROM pgshift_rows c");
  EXPECT_FALSE(plan->shapes[0].no_rows);
}

TEST(Mirror, DeleteMirrorsByKey) {
  Fixture f("shadow-read");
  PlanPtr plan = f.router.PlanFor("DELETE FROM channels WHERE id = 1");
  ASSERT_FALSE(plan->refusal) << plan->refusal->message;
  EXPECT_EQ(plan->sql,
            "WITH pgshift_rows AS (DELETE FROM channels WHERE id = 1 RETURNING channels.*), "
            "pgshift_mirror AS (DELETE FROM public.channels_v2 pgshift_m USING pgshift_rows WHERE "
            "pgshift_m.id = pgshift_rows.id) SELECT FROM pgshift_rows channels");
  EXPECT_EQ(plan->shapes[0].tag, "DELETE");
}

TEST(Mirror, NewPrimaryWritesNewAndMirrorsBackToOld) {
  Fixture f("new-primary");
  PlanPtr plan = f.router.PlanFor("UPDATE channels SET title = 'x' WHERE id = 1 RETURNING title");
  ASSERT_FALSE(plan->refusal) << plan->refusal->message;
  EXPECT_EQ(plan->sql,
            "WITH pgshift_rows AS (UPDATE public.channels_v2 channels SET name = 'x' WHERE id = 1 "
            "RETURNING channels.*), pgshift_mirror AS (INSERT INTO public.channels (id, title, "
            "created_at) OVERRIDING SYSTEM VALUE SELECT id, name, created_at FROM pgshift_rows ON "
            "CONFLICT (id) DO UPDATE "
            "SET title = excluded.title, created_at = excluded.created_at) SELECT name AS title "
            "FROM pgshift_rows channels");
}

TEST(Mirror, TruncateTakesTheMirrorAlong) {
  Fixture f("dual-write");
  PlanPtr plan = f.router.PlanFor("TRUNCATE channels RESTART IDENTITY");
  ASSERT_FALSE(plan->refusal) << plan->refusal->message;
  EXPECT_EQ(plan->sql, "TRUNCATE channels, public.channels_v2 RESTART IDENTITY");
}

TEST(Mirror, MultiStatementQueriesShapeEachWrite) {
  Fixture f("dual-write");
  PlanPtr plan = f.router.PlanFor("SELECT 1; UPDATE channels SET title = 'y'; SELECT 2");
  ASSERT_EQ(plan->shapes.size(), 3u);
  EXPECT_FALSE(plan->shapes[0].shaped());
  EXPECT_EQ(plan->shapes[1].tag, "UPDATE");
  EXPECT_FALSE(plan->shapes[2].shaped());
}

TEST(Mirror, RefusesWhatItCannotMirror) {
  Fixture f("dual-write");
  auto refusal = [&](std::string_view sql) {
    PlanPtr plan = f.router.PlanFor(sql);
    return plan->refusal ? plan->refusal->message : "(not refused)";
  };
  EXPECT_EQ(refusal("UPDATE channels SET id = 2 WHERE id = 1"),
            "pgshift: cannot mirror this write to public.channels in phase dual-write: it changes "
            "key column id");
  EXPECT_EQ(refusal("DELETE FROM tags"),
            "pgshift: cannot mirror this write to public.tags in phase dual-write: the table has "
            "no key to find its rows by");
  EXPECT_EQ(refusal("WITH d AS (DELETE FROM channels RETURNING id) SELECT * FROM d"),
            "pgshift: cannot mirror this write to public.channels in phase dual-write: the table "
            "is written inside WITH, where its rows cannot be mirrored");
  EXPECT_EQ(refusal("UPDATE channels c SET title = p.body FROM posts p RETURNING p.id"),
            "pgshift: cannot mirror this write to public.channels in phase dual-write: its "
            "RETURNING names other tables than the one written");
  EXPECT_EQ(refusal("MERGE INTO channels c USING tags t ON c.title = t.label WHEN MATCHED THEN "
                    "DELETE"),
            "pgshift: cannot mirror merge on public.channels in phase dual-write; use INSERT, "
            "UPDATE or DELETE");
  EXPECT_EQ(refusal("SELECT 1; COPY channels FROM STDIN"),
            "pgshift: cannot mirror copy on public.channels in phase dual-write; use INSERT, "
            "UPDATE or DELETE");
  EXPECT_EQ(refusal("PREPARE w AS UPDATE channels SET title = $1"),
            "pgshift: cannot mirror a write to public.channels in phase dual-write prepared with "
            "SQL PREPARE; send it as it is, or prepare it with the protocol's Parse message (as "
            "drivers do)");
  EXPECT_EQ(refusal("INSERT INTO tags VALUES ('x')"), "(not refused)");
}

// COPY FROM is staged in a temporary table and written by a mirrored
// INSERT; only the COPY's own replies reach the client.
TEST(Mirror, CopyIsStagedAndWrittenByAMirroredInsert) {
  Fixture f("dual-write");
  PlanPtr plan = f.router.PlanFor("COPY channels (title) FROM STDIN WITH (FORMAT csv)");
  ASSERT_FALSE(plan->refusal) << plan->refusal->message;
  EXPECT_TRUE(plan->copies_in);
  EXPECT_EQ(plan->sql,
            "CREATE TABLE pg_temp.pgshift_copy AS SELECT title FROM public.channels WITH NO DATA; "
            "COPY pg_temp.pgshift_copy(title) FROM STDIN CSV; "
            "WITH pgshift_rows AS (INSERT INTO public.channels (title) SELECT title FROM "
            "pg_temp.pgshift_copy RETURNING channels.*), pgshift_mirror AS (INSERT INTO "
            "public.channels_v2 (id, name, created_at) OVERRIDING SYSTEM VALUE SELECT id, title, "
            "created_at FROM pgshift_rows ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
            "created_at = excluded.created_at) SELECT FROM pgshift_rows channels; "
            "DROP TABLE pg_temp.pgshift_copy");
  ASSERT_EQ(plan->shapes.size(), 4u);
  EXPECT_TRUE(plan->shapes[0].hidden);
  EXPECT_FALSE(plan->shapes[1].shaped()) << "the COPY's own tag";
  EXPECT_TRUE(plan->shapes[2].hidden);
  EXPECT_TRUE(plan->shapes[3].hidden);
  // Without a column list, the table's columns as the client knows them.
  PlanPtr all = f.router.PlanFor("COPY channels FROM STDIN");
  EXPECT_EQ(all->sql.substr(0, 97),
            "CREATE TABLE pg_temp.pgshift_copy AS SELECT id, title, created_at, gone FROM "
            "public.channels WITH");
  EXPECT_FALSE(f.router.PlanFor("COPY channels TO STDOUT")->copies_in);
}

TEST(Mirror, NeedsBothCatalogs) {
  TableCounterRegistry counters;
  Router router(Fixture::Config("dual-write"), {}, counters);
  PlanPtr plan = router.PlanFor("INSERT INTO channels (title) VALUES ('x')");
  ASSERT_TRUE(plan->refusal);
  EXPECT_EQ(plan->refusal->message,
            "pgshift: cannot mirror writes to public.channels in phase dual-write: the columns of "
            "public.channels could not be read from its backend's catalog");
}

// Across servers the write returns its rows (key as text, row as JSON under
// the mirror's names) after the client's own columns, and the session
// applies them on the other server.
TEST(Mirror, AcrossServersTheWriteReturnsItsRowsForTheSession) {
  Fixture f("dual-write", true);
  PlanPtr plan = f.router.PlanFor("INSERT INTO channels AS c (title) VALUES ($1) RETURNING c.id");
  ASSERT_FALSE(plan->refusal) << plan->refusal->message;
  EXPECT_EQ(plan->server, BackendId::kOld);
  EXPECT_TRUE(plan->mirrors_remotely);
  EXPECT_EQ(plan->sql,
            "WITH pgshift_rows AS (INSERT INTO channels AS c (title) VALUES ($1) RETURNING c.*) "
            "SELECT c.id, c.id::pg_catalog.text AS pgshift_key, pg_catalog.json_build_object('id', "
            "c.id, 'name', "
            "c.title, 'created_at', c.created_at) AS pgshift_row FROM pgshift_rows c");
  ASSERT_EQ(plan->shapes.size(), 1u);
  const ResultShape& shape = plan->shapes[0];
  EXPECT_EQ(shape.tag, "INSERT");
  EXPECT_FALSE(shape.no_rows);
  ASSERT_TRUE(shape.strips_mirror_columns());
  EXPECT_EQ(shape.remote->table, "public.channels");
  EXPECT_EQ(shape.remote->apply_sql,
            "INSERT INTO \"public\".\"channels_v2\" (\"id\", \"name\", \"created_at\") OVERRIDING "
            "SYSTEM VALUE SELECT \"id\", \"name\", \"created_at\" FROM "
            "pg_catalog.json_populate_recordset(NULL::\"public\".\"channels_v2\", "
            "$1::pg_catalog.json) AS pgshift_rows "
            "ON CONFLICT (\"id\") DO UPDATE SET \"name\" = excluded.\"name\", \"created_at\" = "
            "excluded.\"created_at\"");
}

TEST(Mirror, ATablesMirrorApplyReachesItsWrites) {
  Fixture f("dual-write", true, "mirror_apply = \"sync\"\n");
  PlanPtr sync = f.router.PlanFor("INSERT INTO channels (title) VALUES ('a')");
  ASSERT_TRUE(sync->shapes[0].remote);
  EXPECT_FALSE(sync->shapes[0].remote->pipelined);
  PlanPtr pipelined = f.router.PlanFor("INSERT INTO tags (label) VALUES ('a')");
  ASSERT_TRUE(pipelined->shapes[0].remote);
  EXPECT_TRUE(pipelined->shapes[0].remote->pipelined) << "the default";
  PlanPtr both = f.router.PlanFor("TRUNCATE tags, channels");
  ASSERT_TRUE(both->shapes[0].remote);
  EXPECT_FALSE(both->shapes[0].remote->pipelined) << "pipelined only if every table is";
}

TEST(Mirror, AcrossServersDeletesAndTruncatesAreAppliedByKey) {
  Fixture f("shadow-read", true);
  PlanPtr del = f.router.PlanFor("DELETE FROM channels WHERE id = 3");
  ASSERT_FALSE(del->refusal) << del->refusal->message;
  ASSERT_TRUE(del->shapes[0].strips_mirror_columns());
  EXPECT_TRUE(del->shapes[0].no_rows);
  EXPECT_EQ(del->shapes[0].remote->apply_sql,
            "DELETE FROM \"public\".\"channels_v2\" AS pgshift_m USING "
            "pg_catalog.json_populate_recordset(NULL::\"public\".\"channels_v2\", "
            "$1::pg_catalog.json) AS pgshift_rows "
            "WHERE pgshift_m.\"id\" = pgshift_rows.\"id\"");
  PlanPtr truncate = f.router.PlanFor("TRUNCATE channels");
  ASSERT_FALSE(truncate->refusal) << truncate->refusal->message;
  EXPECT_EQ(truncate->sql, "TRUNCATE channels");
  ASSERT_TRUE(truncate->shapes[0].remote);
  EXPECT_FALSE(truncate->shapes[0].strips_mirror_columns());
  EXPECT_EQ(truncate->shapes[0].remote->apply_sql, "TRUNCATE \"public\".\"channels_v2\"");
  PlanPtr two = f.router.PlanFor("TRUNCATE channels, tags");
  ASSERT_TRUE(two->shapes[0].remote);
  EXPECT_EQ(two->shapes[0].remote->apply_sql,
            "TRUNCATE \"public\".\"channels_v2\", \"public\".\"tags_v2\"");
  EXPECT_EQ(two->shapes[0].remote->table, "public.channels, public.tags");
}

TEST(Mirror, AcrossServersNewPrimaryWritesNewAndReturnsOldsRows) {
  Fixture f("new-primary", true);
  PlanPtr plan = f.router.PlanFor("UPDATE channels SET title = 'x' WHERE id = 1");
  ASSERT_FALSE(plan->refusal) << plan->refusal->message;
  EXPECT_EQ(plan->server, BackendId::kNew);
  EXPECT_EQ(plan->sql,
            "WITH pgshift_rows AS (UPDATE public.channels_v2 channels SET name = 'x' WHERE id = 1 "
            "RETURNING channels.*) SELECT channels.id::pg_catalog.text AS pgshift_key, "
            "pg_catalog.json_build_object('id', channels.id, 'title', channels.name, 'created_at', "
            "channels.created_at) AS pgshift_row FROM pgshift_rows channels");
  EXPECT_EQ(plan->shapes[0].remote->apply_sql.substr(0, 46),
            "INSERT INTO \"public\".\"channels\" (\"id\", \"title\"");
}

// new_columns: the mirror's column is computed from the written row, in
// place of any copied by name.
TEST(Mirror, AComputedColumnIsWrittenFromTheAuthoritativeRow) {
  Fixture f("dual-write", false, "new_columns = { extra = \"upper(gone) || '!'\" }\n");
  PlanPtr plan = f.router.PlanFor("UPDATE channels SET gone = 'x' WHERE id = 1");
  ASSERT_FALSE(plan->refusal) << plan->refusal->message;
  EXPECT_EQ(plan->sql,
            "WITH pgshift_rows AS (UPDATE channels SET gone = 'x' WHERE id = 1 RETURNING "
            "channels.*), pgshift_mirror AS (INSERT INTO public.channels_v2 (id, name, "
            "created_at, extra) OVERRIDING SYSTEM VALUE SELECT id, title, created_at, "
            "upper(gone) || '!' FROM pgshift_rows ON CONFLICT (id) DO UPDATE SET name = "
            "excluded.name, created_at = excluded.created_at, extra = excluded.extra) SELECT FROM "
            "pgshift_rows channels");

  Fixture remote("dual-write", true, "new_columns = { extra = \"upper(gone) || '!'\" }\n");
  PlanPtr across = remote.router.PlanFor("INSERT INTO channels AS c (gone) VALUES ('y')");
  ASSERT_FALSE(across->refusal) << across->refusal->message;
  EXPECT_EQ(across->sql,
            "WITH pgshift_rows AS (INSERT INTO channels AS c (gone) VALUES ('y') RETURNING c.*) "
            "SELECT c.id::pg_catalog.text AS pgshift_key, pg_catalog.json_build_object('id', "
            "c.id, 'name', c.title, 'created_at', c.created_at, 'extra', upper(gone) || '!') AS "
            "pgshift_row FROM pgshift_rows c");
  EXPECT_NE(across->shapes[0].remote->apply_sql.find(
                "(\"id\", \"name\", \"created_at\", \"extra\") OVERRIDING SYSTEM VALUE SELECT "
                "\"id\", \"name\", \"created_at\", \"extra\" FROM"),
            std::string::npos)
      << across->shapes[0].remote->apply_sql;
}

TEST(Mirror, TransactionControlIsKnownByKind) {
  Fixture f("dual-write", true);
  EXPECT_EQ(f.router.PlanFor("BEGIN")->transaction, TransactionKind::kBegin);
  EXPECT_EQ(f.router.PlanFor("commit")->transaction, TransactionKind::kCommit);
  EXPECT_EQ(f.router.PlanFor("END")->transaction, TransactionKind::kCommit);
  EXPECT_EQ(f.router.PlanFor("ROLLBACK")->transaction, TransactionKind::kRollback);
  EXPECT_EQ(f.router.PlanFor("SAVEPOINT a")->transaction, TransactionKind::kSavepoint);
  EXPECT_EQ(f.router.PlanFor("RELEASE a")->transaction, TransactionKind::kRelease);
  EXPECT_EQ(f.router.PlanFor("SELECT 1")->transaction, TransactionKind::kNone);
}

}  // namespace
}  // namespace pgshift::routing
