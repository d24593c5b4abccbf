// Rewriting for the new side: each statement's expected deparsed form. The
// expectations were checked by hand against the rules: tables renamed and
// aliased back to their old names, renamed columns renamed, `*` expanded and
// renamed columns aliased back in select lists and RETURNING.
#include <gtest/gtest.h>

#include "routing/rewrite.h"

namespace pgshift::routing {
namespace {

const std::vector<std::string> kChannelsV2Columns = {"id", "name", "created_at"};

std::vector<TableRename> Renames() {
  return {
      {"public", "channels", "public", "channels_v2", {{"title", "name"}}, &kChannelsV2Columns},
      {"public", "posts", "public", "posts_v2", {}, nullptr},
  };
}

std::string Rewrite(std::string_view sql) {
  auto tree = ParseTree::Parse(sql);
  EXPECT_TRUE(tree.ok()) << tree.status();
  absl::Status status = RewriteTree(*tree, Renames());
  if (!status.ok()) return "ERROR: " + std::string(status.message());
  auto out = tree->Deparse();
  EXPECT_TRUE(out.ok()) << out.status();
  // Deparsed text must parse again.
  EXPECT_TRUE(ParseTree::Parse(*out).ok()) << *out;
  return *out;
}

struct Case {
  const char* sql;
  const char* rewritten;
};

const Case kCases[] = {
    // Plain reads: table renamed and aliased back, column renamed and aliased back.
    {"SELECT title FROM channels WHERE id = 1",
     "SELECT name AS title FROM public.channels_v2 channels WHERE id = 1"},
    {"SELECT c.title FROM channels c WHERE c.title = 'x'",
     "SELECT c.name AS title FROM public.channels_v2 c WHERE c.name = 'x'"},
    {"SELECT title AS t FROM channels", "SELECT name AS t FROM public.channels_v2 channels"},
    {"SELECT channels.title FROM public.channels",
     "SELECT channels.name AS title FROM public.channels_v2 channels"},
    {"SELECT public.channels.title FROM public.channels",
     "SELECT channels.name AS title FROM public.channels_v2 channels"},
    // `*` expanded from the new table's columns.
    {"SELECT * FROM channels",
     "SELECT channels.id, channels.name AS title, channels.created_at FROM public.channels_v2 "
     "channels"},
    {"SELECT c.* FROM channels c", "SELECT c.id, c.name AS title, c.created_at FROM "
                                   "public.channels_v2 c"},
    // A table without column renames keeps its `*`.
    {"SELECT * FROM posts WHERE id = $1", "SELECT * FROM public.posts_v2 posts WHERE id = $1"},
    // Joins with untouched tables, expanded in FROM order.
    {"SELECT * FROM users u JOIN channels c ON c.owner = u.id",
     "SELECT u.*, c.id, c.name AS title, c.created_at FROM users u JOIN public.channels_v2 c ON "
     "c.owner = u.id"},
    {"SELECT p.body, c.title FROM posts p JOIN channels c ON c.id = p.channel_id ORDER BY title",
     "SELECT p.body, c.name AS title FROM public.posts_v2 p JOIN public.channels_v2 c ON c.id = "
     "p.channel_id ORDER BY name"},
    // Subqueries see the outer query's tables; CTEs of the same name are not tables.
    {"SELECT id FROM posts WHERE channel_id IN (SELECT id FROM channels WHERE title = $1)",
     "SELECT id FROM public.posts_v2 posts WHERE channel_id IN (SELECT id FROM "
     "public.channels_v2 channels WHERE name = $1)"},
    {"WITH channels AS (SELECT 1 AS title) SELECT title FROM channels",
     "WITH channels AS (SELECT 1 AS title) SELECT title FROM channels"},
    {"WITH c AS (SELECT title FROM channels) SELECT title FROM c",
     "WITH c AS (SELECT name AS title FROM public.channels_v2 channels) SELECT title FROM c"},
    {"SELECT x.title FROM (SELECT title FROM channels) x",
     "SELECT x.title FROM (SELECT name AS title FROM public.channels_v2 channels) x"},
    {"SELECT title FROM channels UNION SELECT 'a'",
     "SELECT name AS title FROM public.channels_v2 channels UNION SELECT 'a'"},
    // Writes, with RETURNING.
    {"INSERT INTO channels (title) VALUES ($1) RETURNING id, title",
     "INSERT INTO public.channels_v2 AS channels (name) VALUES ($1) RETURNING id, name AS title"},
    {"INSERT INTO channels (id, title) VALUES (1, 'a') RETURNING *",
     "INSERT INTO public.channels_v2 AS channels (id, name) VALUES (1, 'a') RETURNING "
     "channels.id, channels.name AS title, channels.created_at"},
    {"INSERT INTO channels (id, title) VALUES (1, 'a') ON CONFLICT (title) DO UPDATE SET title "
     "= excluded.title",
     "INSERT INTO public.channels_v2 AS channels (id, name) VALUES (1, 'a') ON CONFLICT (name) "
     "DO UPDATE SET name = excluded.name"},
    {"INSERT INTO channels (title) SELECT title FROM channels WHERE id = 1",
     "INSERT INTO public.channels_v2 AS channels (name) SELECT name AS title FROM "
     "public.channels_v2 channels WHERE id = 1"},
    {"UPDATE channels SET title = upper(title) WHERE id = $1 RETURNING title",
     "UPDATE public.channels_v2 channels SET name = upper(name) WHERE id = $1 RETURNING name AS "
     "title"},
    {"UPDATE channels c SET title = p.body FROM posts p WHERE p.channel_id = c.id",
     "UPDATE public.channels_v2 c SET name = p.body FROM public.posts_v2 p WHERE p.channel_id = "
     "c.id"},
    {"DELETE FROM channels WHERE title LIKE 'x%' RETURNING *",
     "DELETE FROM public.channels_v2 channels WHERE name LIKE 'x%' RETURNING channels.id, "
     "channels.name AS title, channels.created_at"},
    {"DELETE FROM channels USING posts WHERE posts.channel_id = channels.id",
     "DELETE FROM public.channels_v2 channels USING public.posts_v2 posts WHERE "
     "posts.channel_id = channels.id"},
    // Other statements that name the table.
    {"COPY channels (id, title) FROM STDIN", "COPY public.channels_v2(id, name) FROM STDIN"},
    {"TRUNCATE channels", "TRUNCATE public.channels_v2"},
    {"SELECT count(*) FROM channels", "SELECT count(*) FROM public.channels_v2 channels"},
    // Untouched statements come back equal.
    {"SELECT * FROM users WHERE title = 1", "SELECT * FROM users WHERE title = 1"},
    // `*` over a USING join cannot be spelled out faithfully.
    {"SELECT * FROM channels JOIN posts USING (id)",
     "ERROR: pgshift cannot expand * over public.channels here (a join with USING or NATURAL, or "
     "an unnamed FROM item); list the columns"},
};

TEST(Rewrite, Corpus) {
  for (const Case& c : kCases) EXPECT_EQ(Rewrite(c.sql), c.rewritten) << c.sql;
}

TEST(Rewrite, StarNeedsTheCatalog) {
  std::vector<TableRename> renames = Renames();
  renames[0].new_columns = nullptr;
  auto tree = ParseTree::Parse("SELECT * FROM channels");
  ASSERT_TRUE(tree.ok());
  absl::Status status = RewriteTree(*tree, renames);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("public.channels_v2"), std::string_view::npos) << status;
}

TEST(Rewrite, SwappedColumnNamesAreNotRenamedTwice) {
  std::vector<std::string> columns = {"a", "b"};
  std::vector<TableRename> renames = {
      {"public", "t", "public", "t2", {{"a", "b"}, {"b", "a"}}, &columns}};
  auto tree = ParseTree::Parse("SELECT *, a FROM t WHERE b = 1");
  ASSERT_TRUE(tree.ok());
  ASSERT_TRUE(RewriteTree(*tree, renames).ok());
  EXPECT_EQ(*tree->Deparse(), "SELECT t.a AS b, t.b AS a, b AS a FROM public.t2 t WHERE a = 1");
}

// An INSERT without a column list means the old table's columns in their
// order; when the new table orders them otherwise, the list is written out.
TEST(Rewrite, InsertsWithoutAColumnListNameTheOldColumns) {
  std::vector<std::string> old_columns = {"id", "title", "created_at"};
  std::vector<std::string> new_columns = {"id", "created_at", "name", "extra"};
  std::vector<TableRename> renames = {
      {"public", "channels", "public", "channels_v2", {{"title", "name"}}, &new_columns}};
  renames[0].old_columns = &old_columns;
  auto rewrite = [&](std::string_view sql) -> std::string {
    auto tree = ParseTree::Parse(sql);
    EXPECT_TRUE(tree.ok());
    absl::Status status = RewriteTree(*tree, renames);
    if (!status.ok()) return "ERROR: " + std::string(status.message());
    return *tree->Deparse();
  };
  EXPECT_EQ(rewrite("INSERT INTO channels VALUES (1, 'a'), (2, 'b')"),
            "INSERT INTO public.channels_v2 AS channels (id, name) VALUES (1, 'a'), (2, 'b')");
  EXPECT_EQ(rewrite("INSERT INTO channels SELECT 3, 'c', now()"),
            "INSERT INTO public.channels_v2 AS channels (id, name, created_at) SELECT 3, 'c', now()");
  EXPECT_EQ(rewrite("INSERT INTO channels DEFAULT VALUES"),
            "INSERT INTO public.channels_v2 AS channels DEFAULT VALUES");
  // `*` over the same columns reordered: counted as written, not as spelled out.
  std::vector<std::string> reordered = {"id", "created_at", "name"};
  renames[0].new_columns = &reordered;
  for (const char* sql : {"INSERT INTO channels SELECT * FROM channels",
                          "INSERT INTO channels SELECT 1, 'x' UNION SELECT 2, 'y'"}) {
    EXPECT_EQ(rewrite(sql),
              "ERROR: pgshift: name the columns of this INSERT into public.channels: its new "
              "table public.channels_v2 orders its columns differently")
        << sql;
  }
  renames[0].new_columns = &new_columns;
  // The same order (more columns after them): left as written.
  new_columns = {"id", "name", "created_at", "extra"};
  EXPECT_EQ(rewrite("INSERT INTO channels VALUES (1, 'a')"),
            "INSERT INTO public.channels_v2 AS channels VALUES (1, 'a')");
}

}  // namespace
}  // namespace pgshift::routing
