// The analysis corpus: statements with the kind and tables PostgreSQL's
// parser says they have. Unqualified names are public; write targets are in
// writes only; CTE names are not tables.
#include <gtest/gtest.h>

#include "routing/sql_analysis.h"

namespace pgshift::routing {
namespace {

struct Case {
  std::string sql;
  std::string kind;
  std::set<std::string> reads;
  std::set<std::string> writes;
  friend void PrintTo(const Case& c, std::ostream* os) { *os << c.sql; }
};

const std::vector<Case>& Corpus() {
  static const std::vector<Case> corpus = {
      // Reads.
      {"SELECT 1", "read", {}, {}},
      {"SELECT * FROM channels", "read", {"public.channels"}, {}},
      {"select id from CHANNELS", "read", {"public.channels"}, {}},
      {"SELECT * FROM \"Channels\"", "read", {"public.Channels"}, {}},
      {"SELECT * FROM app.channels", "read", {"app.channels"}, {}},
      {"SELECT * FROM \"my schema\".\"my table\"", "read", {"my schema.my table"}, {}},
      {"SELECT * FROM mydb.public.channels", "read", {"public.channels"}, {}},
      {"SELECT c.* FROM channels c JOIN posts p ON p.channel_id = c.id", "read",
       {"public.channels", "public.posts"}, {}},
      {"SELECT * FROM channels LEFT JOIN posts USING (id) RIGHT JOIN comments USING (id)", "read",
       {"public.channels", "public.posts", "public.comments"}, {}},
      {"SELECT * FROM channels, posts, comments", "read",
       {"public.channels", "public.posts", "public.comments"}, {}},
      {"SELECT * FROM channels CROSS JOIN LATERAL (SELECT * FROM posts WHERE channel_id = channels.id) p",
       "read", {"public.channels", "public.posts"}, {}},
      {"SELECT * FROM channels WHERE id IN (SELECT channel_id FROM posts)", "read",
       {"public.channels", "public.posts"}, {}},
      {"SELECT * FROM channels WHERE EXISTS (SELECT 1 FROM posts WHERE posts.channel_id = channels.id)",
       "read", {"public.channels", "public.posts"}, {}},
      {"SELECT (SELECT count(*) FROM posts) AS n", "read", {"public.posts"}, {}},
      {"SELECT * FROM (SELECT * FROM (SELECT * FROM comments) a) b", "read", {"public.comments"}, {}},
      {"SELECT id FROM channels UNION SELECT id FROM posts", "read",
       {"public.channels", "public.posts"}, {}},
      {"SELECT id FROM channels UNION ALL SELECT id FROM posts EXCEPT SELECT id FROM comments", "read",
       {"public.channels", "public.posts", "public.comments"}, {}},
      {"SELECT id FROM channels INTERSECT SELECT channel_id FROM posts", "read",
       {"public.channels", "public.posts"}, {}},
      {"(SELECT id FROM channels ORDER BY id LIMIT 1) UNION (SELECT id FROM posts)", "read",
       {"public.channels", "public.posts"}, {}},
      {"VALUES (1, 'a'), (2, 'b')", "read", {}, {}},
      {"SELECT * FROM generate_series(1, 10)", "read", {}, {}},
      {"SELECT * FROM channels c, generate_series(1, c.id)", "read", {"public.channels"}, {}},
      {"SELECT now(), current_user, version()", "read", {}, {}},
      {"SELECT * FROM channels FOR UPDATE", "read", {"public.channels"}, {}},
      {"SELECT * FROM channels FOR SHARE SKIP LOCKED", "read", {"public.channels"}, {}},
      {"SELECT * FROM ONLY channels", "read", {"public.channels"}, {}},
      {"SELECT * FROM channels TABLESAMPLE SYSTEM (10)", "read", {"public.channels"}, {}},
      {"SELECT * FROM channels WHERE title = $1 AND id > $2", "read", {"public.channels"}, {}},
      {"SELECT count(*) FILTER (WHERE id > 1) OVER (PARTITION BY title) FROM channels", "read",
       {"public.channels"}, {}},
      {"SELECT * FROM channels WHERE id = ANY (ARRAY(SELECT post_id FROM comments))", "read",
       {"public.channels", "public.comments"}, {}},
      {"SELECT CASE WHEN EXISTS (SELECT 1 FROM posts) THEN 1 END", "read", {"public.posts"}, {}},
      {"SELECT * FROM pg_catalog.pg_class", "read", {"pg_catalog.pg_class"}, {}},
      {"TABLE channels", "read", {"public.channels"}, {}},
      {"DECLARE c CURSOR FOR SELECT * FROM posts", "read", {"public.posts"}, {}},
      // CTEs.
      {"WITH c AS (SELECT * FROM channels) SELECT * FROM c", "read", {"public.channels"}, {}},
      {"WITH a AS (SELECT * FROM posts), b AS (SELECT * FROM a) SELECT * FROM b", "read",
       {"public.posts"}, {}},
      {"WITH channels AS (SELECT 1 AS id) SELECT * FROM channels", "read", {}, {}},
      {"WITH channels AS (SELECT 1 AS id) SELECT * FROM public.channels", "read",
       {"public.channels"}, {}},
      {"WITH x AS (SELECT * FROM channels) SELECT * FROM posts WHERE id IN (SELECT id FROM x)",
       "read", {"public.channels", "public.posts"}, {}},
      // A non-recursive CTE cannot see itself: "posts" inside it is the table.
      {"WITH posts AS (SELECT * FROM posts WHERE id > 1) SELECT * FROM posts", "read",
       {"public.posts"}, {}},
      {"WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT * FROM t",
       "read", {}, {}},
      {"WITH RECURSIVE tree AS (SELECT id FROM comments WHERE id = 1 UNION ALL SELECT c.id FROM "
       "comments c JOIN tree ON c.post_id = tree.id) SELECT * FROM tree",
       "read", {"public.comments"}, {}},
      {"WITH moved AS (DELETE FROM posts WHERE id < 10 RETURNING *) SELECT count(*) FROM moved",
       "read", {}, {"public.posts"}},
      {"WITH n AS (INSERT INTO channels (title) VALUES ('x') RETURNING id) INSERT INTO posts "
       "(channel_id, body) SELECT id, 'b' FROM n",
       "insert", {}, {"public.channels", "public.posts"}},
      {"WITH u AS (UPDATE channels SET title = 'y' WHERE id = 1 RETURNING id) SELECT * FROM u JOIN "
       "posts ON posts.channel_id = u.id",
       "read", {"public.posts"}, {"public.channels"}},
      {"SELECT * FROM (WITH inner_cte AS (SELECT * FROM comments) SELECT * FROM inner_cte) s", "read",
       {"public.comments"}, {}},
      {"WITH a AS (SELECT 1) SELECT * FROM (WITH b AS (SELECT * FROM a) SELECT * FROM b) s, "
       "channels",
       "read", {"public.channels"}, {}},
      {"WITH a AS MATERIALIZED (SELECT * FROM channels) SELECT * FROM a", "read",
       {"public.channels"}, {}},
      // INSERT.
      {"INSERT INTO channels (title) VALUES ('a')", "insert", {}, {"public.channels"}},
      {"INSERT INTO channels (title) VALUES ($1) RETURNING id, created_at", "insert", {},
       {"public.channels"}},
      {"INSERT INTO channels VALUES (DEFAULT, 'a', now())", "insert", {}, {"public.channels"}},
      {"INSERT INTO channels DEFAULT VALUES", "insert", {}, {"public.channels"}},
      {"INSERT INTO channels_v2 SELECT id, title, created_at FROM channels", "insert",
       {"public.channels"}, {"public.channels_v2"}},
      {"INSERT INTO posts (channel_id, body) SELECT id, 'x' FROM channels WHERE id IN (SELECT "
       "post_id FROM comments)",
       "insert", {"public.channels", "public.comments"}, {"public.posts"}},
      {"INSERT INTO channels (id, title) VALUES (1, 'a') ON CONFLICT DO NOTHING", "insert", {},
       {"public.channels"}},
      {"INSERT INTO channels (id, title) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET title = "
       "EXCLUDED.title",
       "insert", {}, {"public.channels"}},
      {"INSERT INTO channels AS c (id, title) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET title = "
       "(SELECT body FROM posts LIMIT 1) WHERE c.id > 0",
       "insert", {"public.posts"}, {"public.channels"}},
      {"INSERT INTO app.\"Audit Log\" (msg) VALUES ('x')", "insert", {}, {"app.Audit Log"}},
      {"INSERT INTO channels (title) SELECT title FROM channels", "insert", {}, {"public.channels"}},
      // UPDATE.
      {"UPDATE channels SET title = 'b' WHERE id = 1", "update", {}, {"public.channels"}},
      {"UPDATE channels SET title = $1 WHERE id = $2 RETURNING *", "update", {},
       {"public.channels"}},
      {"UPDATE posts SET body = c.title FROM channels c WHERE c.id = posts.channel_id", "update",
       {"public.channels"}, {"public.posts"}},
      {"UPDATE posts p SET body = 'x' FROM channels c JOIN comments m ON m.post_id = c.id WHERE "
       "p.id = m.post_id",
       "update", {"public.channels", "public.comments"}, {"public.posts"}},
      {"UPDATE channels SET title = (SELECT max(body) FROM posts) WHERE id IN (SELECT channel_id "
       "FROM posts)",
       "update", {"public.posts"}, {"public.channels"}},
      {"UPDATE ONLY app.channels SET title = upper(title)", "update", {}, {"app.channels"}},
      {"WITH ids AS (SELECT id FROM channels) UPDATE posts SET body = 'z' WHERE channel_id IN "
       "(SELECT id FROM ids)",
       "update", {"public.channels"}, {"public.posts"}},
      {"UPDATE channels SET title = 'c' WHERE CURRENT OF cur", "update", {}, {"public.channels"}},
      // DELETE.
      {"DELETE FROM comments WHERE id = 1", "delete", {}, {"public.comments"}},
      {"DELETE FROM comments RETURNING id, body", "delete", {}, {"public.comments"}},
      {"DELETE FROM comments c USING posts p WHERE c.post_id = p.id AND p.channel_id = 3", "delete",
       {"public.posts"}, {"public.comments"}},
      {"DELETE FROM posts WHERE channel_id NOT IN (SELECT id FROM channels)", "delete",
       {"public.channels"}, {"public.posts"}},
      {"DELETE FROM ONLY comments", "delete", {}, {"public.comments"}},
      // MERGE.
      {"MERGE INTO channels_v2 t USING channels s ON t.id = s.id WHEN MATCHED THEN UPDATE SET name "
       "= s.title WHEN NOT MATCHED THEN INSERT (id, name, created_at) VALUES (s.id, s.title, "
       "s.created_at)",
       "merge", {"public.channels"}, {"public.channels_v2"}},
      {"MERGE INTO posts p USING (SELECT * FROM comments) c ON p.id = c.post_id WHEN MATCHED THEN "
       "DELETE",
       "merge", {"public.comments"}, {"public.posts"}},
      // COPY.
      {"COPY channels FROM STDIN", "copy", {}, {"public.channels"}},
      {"COPY channels (id, title) FROM STDIN WITH (FORMAT csv)", "copy", {}, {"public.channels"}},
      {"COPY channels TO STDOUT", "copy", {"public.channels"}, {}},
      {"COPY (SELECT * FROM posts JOIN comments ON comments.post_id = posts.id) TO STDOUT", "copy",
       {"public.posts", "public.comments"}, {}},
      {"COPY app.posts FROM STDIN (FORMAT binary)", "copy", {}, {"app.posts"}},
      // TRUNCATE.
      {"TRUNCATE channels", "truncate", {}, {"public.channels"}},
      {"TRUNCATE TABLE posts, app.comments RESTART IDENTITY CASCADE", "truncate", {},
       {"public.posts", "app.comments"}},
      // DDL.
      {"CREATE TABLE t (id int)", "ddl", {}, {"public.t"}},
      {"CREATE TABLE app.t (id int REFERENCES channels (id))", "ddl", {"public.channels"},
       {"app.t"}},
      {"ALTER TABLE channels ADD COLUMN x int", "ddl", {}, {"public.channels"}},
      {"ALTER TABLE posts ADD CONSTRAINT fk FOREIGN KEY (channel_id) REFERENCES channels (id)", "ddl",
       {"public.channels"}, {"public.posts"}},
      {"ALTER TABLE channels RENAME COLUMN title TO name", "ddl", {}, {"public.channels"}},
      {"ALTER TABLE channels RENAME TO channels_old", "ddl", {}, {"public.channels"}},
      {"DROP TABLE channels", "ddl", {}, {"public.channels"}},
      {"DROP TABLE IF EXISTS app.posts, comments CASCADE", "ddl", {},
       {"app.posts", "public.comments"}},
      {"DROP VIEW channel_view", "ddl", {}, {"public.channel_view"}},
      {"CREATE INDEX ON posts (channel_id)", "ddl", {}, {"public.posts"}},
      {"CREATE UNIQUE INDEX CONCURRENTLY i ON app.comments (post_id, id)", "ddl", {},
       {"app.comments"}},
      {"CREATE VIEW channel_view AS SELECT * FROM channels", "ddl", {"public.channels"},
       {"public.channel_view"}},
      {"CREATE TABLE archive AS SELECT * FROM posts", "ddl", {"public.posts"}, {"public.archive"}},
      {"SELECT * INTO archive2 FROM comments", "ddl", {"public.comments"}, {"public.archive2"}},
      {"CREATE SEQUENCE s", "ddl", {}, {"public.s"}},
      {"ALTER SEQUENCE app.s RESTART", "ddl", {}, {"app.s"}},
      {"CREATE SCHEMA app", "ddl", {}, {}},
      {"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "ddl", {}, {}},
      {"COMMENT ON TABLE channels IS 'c'", "ddl", {}, {}},
      {"GRANT SELECT ON channels TO app", "ddl", {}, {"public.channels"}},
      {"GRANT USAGE ON SCHEMA app TO app", "ddl", {}, {}},
      {"REFRESH MATERIALIZED VIEW mv", "ddl", {"public.mv"}, {}},
      // Transaction control.
      {"BEGIN", "transaction", {}, {}},
      {"BEGIN ISOLATION LEVEL REPEATABLE READ", "transaction", {}, {}},
      {"START TRANSACTION READ ONLY", "transaction", {}, {}},
      {"COMMIT", "transaction", {}, {}},
      {"ROLLBACK", "transaction", {}, {}},
      {"SAVEPOINT s1", "transaction", {}, {}},
      {"ROLLBACK TO SAVEPOINT s1", "transaction", {}, {}},
      {"RELEASE s1", "transaction", {}, {}},
      {"PREPARE TRANSACTION 'x'", "transaction", {}, {}},
      {"COMMIT PREPARED 'x'", "transaction", {}, {}},
      // Session commands.
      {"SET search_path = app, public", "session", {}, {}},
      {"SET LOCAL statement_timeout = '1s'", "session", {}, {}},
      {"RESET ALL", "session", {}, {}},
      {"SHOW server_version", "session", {}, {}},
      {"PREPARE q (int) AS SELECT * FROM channels WHERE id = $1", "session", {"public.channels"}, {}},
      {"EXECUTE q (1)", "session", {}, {}},
      {"DEALLOCATE q", "session", {}, {}},
      {"DEALLOCATE ALL", "session", {}, {}},
      {"LISTEN events", "session", {}, {}},
      {"UNLISTEN *", "session", {}, {}},
      {"NOTIFY events, 'payload'", "session", {}, {}},
      {"DISCARD ALL", "session", {}, {}},
      {"FETCH 10 FROM c", "session", {}, {}},
      {"CLOSE c", "session", {}, {}},
      // Other.
      {"EXPLAIN SELECT * FROM channels", "read", {"public.channels"}, {}},
      {"EXPLAIN ANALYZE DELETE FROM posts WHERE id = 1", "delete", {}, {"public.posts"}},
      {"DO $$ BEGIN PERFORM 1; END $$", "other", {}, {}},
      {"CALL do_something(1)", "other", {}, {}},
      {"LOCK TABLE channels IN ACCESS EXCLUSIVE MODE", "other", {"public.channels"}, {}},
      {"VACUUM ANALYZE posts", "other", {"public.posts"}, {}},
      {"CHECKPOINT", "other", {}, {}},
  };
  return corpus;
}

class AnalysisCorpus : public ::testing::TestWithParam<Case> {};

TEST_P(AnalysisCorpus, KindAndTables) {
  const Case& c = GetParam();
  auto result = AnalyzeSql(c.sql);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->size(), 1u);
  const StatementInfo& info = (*result)[0];
  EXPECT_EQ(StatementKindName(info.kind), c.kind);
  EXPECT_EQ(info.reads, c.reads);
  EXPECT_EQ(info.writes, c.writes);
}

INSTANTIATE_TEST_SUITE_P(Statements, AnalysisCorpus, ::testing::ValuesIn(Corpus()));

TEST(AnalysisCorpusSize, HasAtLeastAHundredStatements) { EXPECT_GE(Corpus().size(), 100u); }

TEST(Analysis, SplitsMultiStatementQueries) {
  auto result = AnalyzeSql(
      "BEGIN; INSERT INTO channels (title) VALUES ('a;b'); SELECT * FROM posts;COMMIT");
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->size(), 4u);
  EXPECT_EQ((*result)[0].sql, "BEGIN");
  EXPECT_EQ((*result)[1].sql, " INSERT INTO channels (title) VALUES ('a;b')");
  EXPECT_EQ((*result)[1].writes, std::set<std::string>{"public.channels"});
  EXPECT_EQ((*result)[2].sql, " SELECT * FROM posts");
  EXPECT_EQ((*result)[3].sql, "COMMIT");
  EXPECT_EQ((*result)[3].kind, StatementKind::kTransaction);
}

TEST(Analysis, FunctionsCalledAreNamedByTheLastPartOfTheirName) {
  auto infos = AnalyzeSql(
      "WITH w AS (SELECT pg_catalog.random() r) SELECT Upper(title), count(*) FROM channels, w "
      "WHERE id IN (SELECT nextval('s')) GROUP BY 1");
  ASSERT_TRUE(infos.ok()) << infos.status();
  EXPECT_EQ((*infos)[0].functions, (std::set<std::string>{"random", "upper", "count", "nextval"}));
}

TEST(Analysis, EmptyQueryHasNoStatements) {
  auto result = AnalyzeSql("  ;  ");
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->empty());
}

TEST(Analysis, SyntaxErrorsCarryPostgresMessage) {
  auto result = AnalyzeSql("SELEC 1");
  ASSERT_FALSE(result.ok());
  EXPECT_NE(std::string(result.status().message()).find("syntax error at or near \"SELEC\""),
            std::string::npos)
      << result.status();
}

TEST(PreparedStatementUse, NamesWhatIsPreparedRunOrDropped) {
  using Use = PreparedStatementUse;
  auto use = [](std::string_view sql) -> std::string {
    auto u = PreparedStatementUseOf(sql);
    if (!u) return "none";
    switch (u->kind) {
      case Use::kPrepare: return "prepare " + u->name;
      case Use::kExecute: return "execute " + u->name;
      case Use::kDeallocate: return "deallocate " + u->name;
    }
    return "?";
  };
  EXPECT_EQ(use("PREPARE p (int) AS SELECT $1"), "prepare p");
  EXPECT_EQ(use("execute \"P\"(1, 'x')"), "execute P");
  EXPECT_EQ(use("DEALLOCATE PREPARE p"), "deallocate p");
  EXPECT_EQ(use("DEALLOCATE ALL"), "deallocate ");
  EXPECT_EQ(use("DISCARD ALL"), "deallocate ");
  EXPECT_EQ(use("DISCARD PLANS"), "none");
  EXPECT_EQ(use("EXECUTE p; EXECUTE q"), "none");
  EXPECT_EQ(use("SELECT 'execute p'"), "none");
}

}  // namespace
}  // namespace pgshift::routing
