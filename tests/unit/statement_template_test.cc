// Statement templates: constants taken out by the scanner, and put back
// into the texts of the plan the template shares.
#include "routing/statement_template.h"

#include <gtest/gtest.h>

#include "routing/router.h"

namespace pgshift::routing {
namespace {

TEST(StatementTemplate, ConstantsBecomeParametersAfterTheStatementsOwn) {
  auto t = MakeTemplate("UPDATE pgbench_accounts SET abalance = abalance + -2380 WHERE aid = 57417");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->text, "UPDATE pgbench_accounts SET abalance = abalance + -$1 WHERE aid = $2");
  EXPECT_EQ(t->constants, (std::vector<std::string_view>{"2380", "57417"}));
  EXPECT_EQ(t->first, 1);

  auto mixed = MakeTemplate("SELECT $2, 'it''s', E'\\n', 1.5e3 FROM t WHERE a = $1 LIMIT 10");
  ASSERT_TRUE(mixed);
  EXPECT_EQ(mixed->text, "SELECT $2, $3, $4, $5 FROM t WHERE a = $1 LIMIT $6");
  EXPECT_EQ(mixed->constants,
            (std::vector<std::string_view>{"'it''s'", "E'\\n'", "1.5e3", "10"}));
  EXPECT_EQ(mixed->first, 3);
}

TEST(StatementTemplate, TypedLiteralsStayAndTextsWithoutConstantsHaveNone) {
  auto t = MakeTemplate("SELECT interval '1 day', date '2026-01-01', x::text FROM t WHERE y = 'a'");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->text, "SELECT interval '1 day', date '2026-01-01', x::text FROM t WHERE y = $1");
  EXPECT_FALSE(MakeTemplate("SELECT a FROM t WHERE b = $1"));
  EXPECT_FALSE(MakeTemplate("SELECT 'unterminated"));
}

TEST(StatementTemplate, FillingPutsTheConstantsWhereTheirPlaceholdersWent) {
  TemplateText text;
  ASSERT_TRUE(text.Split("SELECT $3, $1, $10, '$3' FROM t WHERE a = $4", 3, 2));
  EXPECT_EQ(text.Fill({"'x'", "42"}), "SELECT 'x', $1, $10, '$3' FROM t WHERE a = 42");
}

ConfigPtr Config(std::string_view phase) {
  auto config = ParseConfig(
      "[backends.old]\n[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\n"
      "key = [\"id\"]\ncolumns = { title = \"name\" }\nphase = \"" +
          std::string(phase) + "\"\n",
      "template.toml");
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

Catalog Columns() {
  return {{{"public.channels", {"id", "title"}}}, {{"public.channels_v2", {"id", "name"}}}};
}

TEST(StatementTemplate, StatementsDifferingInConstantsShareOnePlan) {
  TableCounterRegistry counters;
  Router router(Config("new-only"), Columns(), counters);
  PlanPtr a = router.PlanFor("SELECT title FROM channels WHERE id = 7");
  PlanPtr b = router.PlanFor("SELECT title FROM channels WHERE id = 123456");
  EXPECT_EQ(a->sql, "SELECT name AS title FROM public.channels_v2 channels WHERE id = 7");
  EXPECT_EQ(b->sql, "SELECT name AS title FROM public.channels_v2 channels WHERE id = 123456");
  EXPECT_TRUE(b->rewritten);
  EXPECT_EQ(router.cached_plans(), 1u) << "one template plan for both";
  EXPECT_FALSE(b->fill);
  // A statement a parameter cannot replace a constant in is planned as it is.
  PlanPtr typed = router.PlanFor("SELECT title::varchar(10) FROM channels WHERE id = 1");
  EXPECT_EQ(typed->sql,
            "SELECT name::varchar(10) AS title FROM public.channels_v2 channels WHERE id = 1");
}

TEST(StatementTemplate, MirroredWritesGetTheirConstantsBack) {
  TableCounterRegistry counters;
  Router router(Config("dual-write"), Columns(), counters);
  PlanPtr plan = router.PlanFor("UPDATE channels SET title = 'it''s' WHERE id = 9");
  ASSERT_FALSE(plan->refusal) << plan->refusal->message;
  EXPECT_EQ(plan->sql,
            "WITH pgshift_rows AS (UPDATE channels SET title = 'it''s' WHERE id = 9 RETURNING "
            "channels.*), pgshift_mirror AS (INSERT INTO public.channels_v2 (id, name) OVERRIDING "
            "SYSTEM VALUE SELECT id, title FROM pgshift_rows ON CONFLICT (id) DO UPDATE SET name "
            "= excluded.name) SELECT FROM pgshift_rows channels");
  EXPECT_EQ(plan->shapes[0].tag, "UPDATE");
  // Not rewritten: the client's own text.
  Router old_only(Config("old-only"), Columns(), counters);
  EXPECT_EQ(old_only.PlanFor("SELECT 1 FROM channels WHERE id = 5")->sql,
            "SELECT 1 FROM channels WHERE id = 5");
}

TEST(StatementTemplate, MirroredWritesCarryTheirNumbersAsTypedParameters) {
  TableCounterRegistry counters;
  Router router(Config("dual-write"), Columns(), counters);
  PlanPtr plan = router.PlanFor(
      "UPDATE channels SET title = 'x' || -5 || 2.5 || 9000000000 || 2147483648 WHERE id = 9");
  ASSERT_TRUE(plan->parameterized) << plan->sql;
  const ParameterizedText& p = *plan->parameterized;
  EXPECT_EQ(p.sql,
            "WITH pgshift_rows AS (UPDATE channels SET title = ((('x' || (- $1)) || $2) || $3) "
            "|| 2147483648 WHERE id = $4 RETURNING channels.*), pgshift_mirror "
            "AS (INSERT INTO public.channels_v2 (id, name) OVERRIDING SYSTEM VALUE SELECT id, "
            "title FROM pgshift_rows ON CONFLICT (id) DO UPDATE SET name = excluded.name) SELECT "
            "FROM pgshift_rows channels")
      << "strings and 2147483648 (int4 when negated) stay as written";
  EXPECT_EQ(p.types, (std::vector<int32_t>{23, 1700, 20, 23}));
  EXPECT_EQ(p.values, (std::vector<std::string>{"5", "2.5", "9000000000", "9"}));
  // Positions in ORDER BY, GROUP BY and DISTINCT ON name output columns.
  PlanPtr ordered = router.PlanFor(
      "INSERT INTO channels (title) SELECT DISTINCT ON (1) body FROM posts GROUP BY 1 "
      "ORDER BY 1 LIMIT 3");
  ASSERT_TRUE(ordered->parameterized);
  EXPECT_NE(ordered->parameterized->sql.find("DISTINCT ON (1)"), std::string::npos);
  EXPECT_NE(ordered->parameterized->sql.find("GROUP BY 1 ORDER BY 1 LIMIT $1"), std::string::npos)
      << ordered->parameterized->sql;
  // Reads, writes with nothing numeric, and statements planned by their
  // text (a type modifier cannot be a parameter) are sent as they are.
  EXPECT_FALSE(router.PlanFor("UPDATE channels SET title = 'y'::varchar(3) WHERE id = 9")
                   ->parameterized);
  EXPECT_FALSE(router.PlanFor("UPDATE channels SET title = 'a' WHERE title = 'b'")->parameterized);
  Router new_only(Config("new-only"), Columns(), counters);
  EXPECT_FALSE(new_only.PlanFor("SELECT title FROM channels WHERE id = 7")->parameterized);
}

TEST(StatementTemplate, NumericConstantsHaveTheirWrittenTypes) {
  EXPECT_EQ(NumericConstantType("7"), 23);
  EXPECT_EQ(NumericConstantType("2147483647"), 23);
  EXPECT_EQ(NumericConstantType("2147483649"), 20);
  EXPECT_EQ(NumericConstantType("99999999999999999999"), 1700);
  EXPECT_EQ(NumericConstantType("1e3"), 1700);
  EXPECT_EQ(NumericConstantType(".5"), 1700);
  EXPECT_EQ(NumericConstantType("'7'"), 0);
  EXPECT_EQ(NumericConstantType("9223372036854775808"), 0);
}

}  // namespace
}  // namespace pgshift::routing
