// Rewriting for new when a table changes shape (column transforms): reads
// of old's columns through old_columns, in old's shape; writes that name
// old's columns set new's computed columns through new_columns; a write
// that would lose its value is refused, naming the column.
#include <gtest/gtest.h>

#include "routing/rewrite.h"

namespace pgshift::routing {
namespace {

// items (id, sku, price_cents int, full_name text, legacy text) becomes
// items_v2 (id, code, price numeric, first_name, last_name, slug).
class RewriteTransforms : public ::testing::Test {
 protected:
  RewriteTransforms() {
    computed_ = {Transform("price", "price_cents / 100.0"),
                 Transform("first_name", "split_part(full_name, ' ', 1)"),
                 Transform("last_name", "split_part(full_name, ' ', 2)"),
                 Transform("slug", "lower(full_name)")};
    derived_ = {Transform("price_cents", "(price * 100)::int"),
                Transform("full_name", "first_name || ' ' || last_name"),
                Transform("legacy", "'none'::text")};
    TableRename r{"public", "items", "public", "items_v2", {{"sku", "code"}}, &new_columns_};
    r.old_columns = &old_columns_;
    r.derived = &derived_;
    r.computed = &computed_;
    renames_ = {r};
  }

  static ColumnTransform Transform(std::string_view column, std::string_view expression) {
    absl::StatusOr<ColumnTransform> t = ParseColumnTransform(column, expression);
    EXPECT_TRUE(t.ok()) << t.status();
    return *t;
  }

  std::string Rewrite(std::string_view sql) {
    auto tree = ParseTree::Parse(sql);
    EXPECT_TRUE(tree.ok()) << tree.status();
    absl::Status status = RewriteTree(*tree, renames_);
    if (!status.ok()) {
      EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
      return "ERROR: " + std::string(status.message());
    }
    auto out = tree->Deparse();  // which parses its own output again
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : "";
  }

  std::vector<std::string> old_columns_ = {"id", "sku", "price_cents", "full_name", "legacy"};
  std::vector<std::string> new_columns_ = {"id",         "code",      "price",
                                           "first_name", "last_name", "slug"};
  std::vector<ColumnTransform> computed_, derived_;
  std::vector<TableRename> renames_;
};

TEST_F(RewriteTransforms, ReadsSeeOldsColumnsThroughTheirExpressions) {
  EXPECT_EQ(Rewrite("SELECT price_cents FROM items WHERE id = 1"),
            "SELECT CAST(items.price * 100 AS int) AS price_cents FROM public.items_v2 items WHERE "
            "id = 1");
  // `*` in old's shape and order, not new's.
  EXPECT_EQ(
      Rewrite("SELECT * FROM items"),
      "SELECT items.id, items.code AS sku, CAST(items.price * 100 AS int) AS price_cents, "
      "(items.first_name || ' ') || items.last_name AS full_name, 'none'::text AS legacy FROM "
      "public.items_v2 items");
  EXPECT_EQ(
      Rewrite("SELECT i.full_name, count(*) FROM items i WHERE i.price_cents > $1 "
              "GROUP BY i.full_name ORDER BY full_name"),
      "SELECT (i.first_name || ' ') || i.last_name AS full_name, count(*) FROM "
      "public.items_v2 i WHERE CAST(i.price * 100 AS int) > $1 GROUP BY (i.first_name || ' ') "
      "|| i.last_name ORDER BY (i.first_name || ' ') || i.last_name");
  EXPECT_EQ(Rewrite("SELECT price_cents::text, sku FROM public.items"),
            "SELECT CAST(items.price * 100 AS int)::text AS price_cents, code AS sku FROM "
            "public.items_v2 items");
  EXPECT_EQ(
      Rewrite("SELECT o.id FROM orders o JOIN items ON items.id = o.item AND price_cents > 5"),
      "SELECT o.id FROM orders o JOIN public.items_v2 items ON items.id = o.item AND "
      "CAST(items.price * 100 AS int) > 5");
}

// A name whose table pgshift cannot be sure of is not rewritten: the read
// is refused (its shadow skipped) rather than read otherwise on new.
TEST_F(RewriteTransforms, ANameThatMightMeanAnotherColumnIsRefused) {
  EXPECT_EQ(Rewrite("SELECT id FROM items WHERE id IN (SELECT item_id FROM order_lines WHERE "
                    "price_cents > 1000)"),
            "ERROR: pgshift cannot tell which table's price_cents this subquery reads: on new "
            "public.items computes it; qualify the column (items.price_cents)");
  EXPECT_EQ(Rewrite("SELECT id FROM items i WHERE id IN (SELECT item_id FROM order_lines o WHERE "
                    "o.price_cents > i.price_cents)"),
            "SELECT id FROM public.items_v2 i WHERE id IN (SELECT item_id FROM order_lines o WHERE "
            "o.price_cents > CAST(i.price * 100 AS int))");
  // On old `price` is the output column; on new items_v2 has its own.
  EXPECT_EQ(Rewrite("SELECT price_cents / 100 AS price, count(*) FROM items GROUP BY price"),
            "ERROR: pgshift cannot read price on new as on old: public.items_v2 has a column of "
            "that name, which public.items does not; qualify the column or choose another alias");
}

// Where old's column types are known, a derived column reads as old's type.
TEST_F(RewriteTransforms, ADerivedColumnIsReadAsOldsType) {
  std::vector<std::string> types = {"integer", "text", "integer", "character varying(100)", "text"};
  renames_[0].old_types = &types;
  EXPECT_EQ(Rewrite("SELECT full_name FROM items WHERE full_name = $1"),
            "SELECT CAST((items.first_name || ' ') || items.last_name AS varchar(100)) AS "
            "full_name FROM public.items_v2 items WHERE CAST((items.first_name || ' ') || "
            "items.last_name AS varchar(100)) = $1");
}

TEST_F(RewriteTransforms, WritesSetNewsComputedColumns) {
  EXPECT_EQ(Rewrite("UPDATE items SET price_cents = $1 WHERE id = $2 RETURNING price_cents"),
            "UPDATE public.items_v2 items SET price = $1 / 100.0 WHERE id = $2 RETURNING "
            "CAST(items.price * 100 AS int) AS price_cents");
  EXPECT_EQ(Rewrite("UPDATE items SET full_name = $1, sku = 'x' WHERE id = 3"),
            "UPDATE public.items_v2 items SET code = 'x', first_name = split_part($1, ' ', 1), "
            "last_name = split_part($1, ' ', 2), slug = lower($1) WHERE id = 3");
  // A value over the row reads the row as it is on new.
  EXPECT_EQ(
      Rewrite("UPDATE items SET price_cents = price_cents + 1"),
      "UPDATE public.items_v2 items SET price = (CAST(items.price * 100 AS int) + 1) / 100.0");
  EXPECT_EQ(
      Rewrite("INSERT INTO items (id, sku, price_cents, full_name) VALUES ($1, $2, $3, $4), "
              "(5, 'b', 250, 'Ann Lee')"),
      "INSERT INTO public.items_v2 AS items (id, code, price, first_name, last_name, slug) "
      "VALUES ($1, $2, $3 / 100.0, split_part($4, ' ', 1), split_part($4, ' ', 2), lower($4)), "
      "(5, 'b', 250 / 100.0, split_part('Ann Lee', ' ', 1), split_part('Ann Lee', ' ', 2), "
      "lower('Ann Lee'))");
  // Without a column list: old's columns, in old's order.
  EXPECT_EQ(
      Rewrite("INSERT INTO items VALUES (1, 'a', 100, 'Bo Ek')"),
      "INSERT INTO public.items_v2 AS items (id, code, price, first_name, last_name, slug) "
      "VALUES (1, 'a', 100 / 100.0, split_part('Bo Ek', ' ', 1), split_part('Bo Ek', ' ', 2), "
      "lower('Bo Ek'))");
  EXPECT_EQ(Rewrite("INSERT INTO items (id, price_cents, full_name) VALUES (1, 100, 'Bo Ek') ON "
                    "CONFLICT (id) DO UPDATE SET full_name = excluded.full_name RETURNING *"),
            "INSERT INTO public.items_v2 AS items (id, price, first_name, last_name, slug) VALUES "
            "(1, 100 / 100.0, split_part('Bo Ek', ' ', 1), split_part('Bo Ek', ' ', 2), lower('Bo "
            "Ek')) ON CONFLICT "
            "(id) DO UPDATE SET first_name = split_part((excluded.first_name || ' ') || "
            "excluded.last_name, ' ', 1), last_name = split_part((excluded.first_name || ' ') || "
            "excluded.last_name, ' ', 2), slug = lower((excluded.first_name || ' ') || "
            "excluded.last_name) RETURNING items.id, items.code AS sku, CAST(items.price * 100 AS "
            "int) AS price_cents, (items.first_name || ' ') || items.last_name AS full_name, "
            "'none'::text AS legacy");
}

TEST_F(RewriteTransforms, AWriteThatWouldLoseItsValueIsRefusedNamingTheColumn) {
  const std::string lost =
      "ERROR: pgshift cannot write public.items.legacy while new is authoritative: new does not "
      "store it (old_columns computes it as ('none'::text)) and no new_columns expression takes a "
      "value from it, so the write would be lost";
  EXPECT_EQ(Rewrite("UPDATE items SET legacy = 'y' WHERE id = 1"), lost);
  EXPECT_EQ(Rewrite("INSERT INTO items VALUES (1, 'a', 100, 'Bo Ek', 'x')"), lost);
  EXPECT_EQ(Rewrite("UPDATE items SET full_name = upper($1)"),
            "ERROR: pgshift: the value written to public.items.full_name is used by several of "
            "new's columns; give it as a constant or a parameter, so that it is computed once");
  EXPECT_EQ(Rewrite("INSERT INTO items (id, price_cents) SELECT 1, 2"),
            "ERROR: pgshift: write the rows of this INSERT into public.items as VALUES: new "
            "computes price from the columns it sets");
  // A new row gets every computed column, so it names what they read.
  EXPECT_EQ(Rewrite("INSERT INTO items (id, price_cents) VALUES (1, 2)"),
            "ERROR: pgshift: name public.items.full_name in this INSERT too: new computes "
            "first_name from it (new_columns: (split_part(full_name, ' ', 1)))");
  EXPECT_EQ(Rewrite("UPDATE items SET full_name = DEFAULT"),
            "ERROR: pgshift: give public.items.full_name a value, not DEFAULT: new computes "
            "columns from it");
  EXPECT_EQ(Rewrite("INSERT INTO items (id, full_name) VALUES (1, DEFAULT)"),
            "ERROR: pgshift: give public.items.full_name a value, not DEFAULT: new computes "
            "columns from it");
  EXPECT_EQ(Rewrite("COPY items FROM STDIN"),
            "ERROR: pgshift cannot COPY public.items on new: its columns change shape there; COPY "
            "(SELECT ...) TO reads it through its transforms");
  EXPECT_EQ(Rewrite("UPDATE items SET (price_cents, sku) = (SELECT 1, 'a')"),
            "ERROR: pgshift: set public.items.price_cents on its own, as a whole column (SET "
            "price_cents = value): new computes columns from it");
}

}  // namespace
}  // namespace pgshift::routing
