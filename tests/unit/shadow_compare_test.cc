// Shadow read comparison, and the shadow half of a plan.
#include <gtest/gtest.h>

#include "routing/router.h"
#include "routing/shadow.h"

namespace pgshift::routing {
namespace {

ResultSet Rows(std::vector<std::vector<std::optional<std::string>>> rows) {
  ResultSet r;
  r.columns = {{"id", 23}, {"title", 25}};
  r.rows = std::move(rows);
  return r;
}

TEST(CompareResults, MultisetsUnlessOrdered) {
  ResultSet a = Rows({{"1", "a"}, {"2", "b"}, {"2", "b"}});
  ResultSet b = Rows({{"2", "b"}, {"1", "a"}, {"2", "b"}});
  EXPECT_TRUE(CompareResults(a, b, false).match);
  Comparison ordered = CompareResults(a, b, true);
  EXPECT_FALSE(ordered.match);
  EXPECT_EQ(ordered.reason, "rows differ (in order)");
  ResultSet fewer = Rows({{"1", "a"}, {"2", "b"}});
  Comparison c = CompareResults(a, fewer, false);
  EXPECT_FALSE(c.match) << "duplicates count";
  EXPECT_EQ(c.only_authoritative, std::vector<std::string>{"(2,b)"});
  EXPECT_TRUE(c.only_other.empty());
  ResultSet nulls = Rows({{"1", std::nullopt}});
  EXPECT_EQ(CompareResults(nulls, Rows({{"1", "NULL"}}), false).only_authoritative,
            std::vector<std::string>{"(1,NULL)"});
}

TEST(CompareResults, ColumnsAndErrors) {
  ResultSet a = Rows({{"1", "a"}});
  ResultSet renamed = a;
  renamed.columns[1].name = "name";
  EXPECT_EQ(CompareResults(a, renamed, false).reason, "columns differ (names or types)");
  ResultSet failed;
  failed.error_sqlstate = "42P01";
  failed.error_message = "relation does not exist";
  EXPECT_EQ(CompareResults(a, failed, false).reason,
            "the other side failed: 42P01 relation does not exist");
  EXPECT_TRUE(CompareResults(failed, failed, false).match);
}

TEST(ShadowPlan, ReadsOfShadowedTablesGetTheOtherSidesStatement) {
  auto config = ParseConfig(
      "[backends.old]\n[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\n"
      "columns = { title = \"name\" }\nshadow_sample = 0.5\nphase = \"shadow-read\"\n",
      "shadow.toml");
  ASSERT_TRUE(config.ok());
  TableCounterRegistry counters;
  Router router(*config, {}, counters);
  PlanPtr plan = router.PlanFor("SELECT title FROM channels WHERE id = $1 ORDER BY title");
  ASSERT_TRUE(plan->shadow);
  EXPECT_EQ(plan->sql, "SELECT title FROM channels WHERE id = $1 ORDER BY title");
  EXPECT_EQ(plan->shadow->sql,
            "SELECT name AS title FROM public.channels_v2 channels WHERE id = $1 ORDER BY name");
  EXPECT_TRUE(plan->shadow->ordered);
  EXPECT_EQ(plan->shadow->sample, 0.5);
  EXPECT_FALSE(plan->shadow->fingerprint.empty());
  EXPECT_EQ(plan->shadow->fingerprint,
            router.PlanFor("SELECT title FROM channels WHERE id = 7 ORDER BY title")->shadow->fingerprint)
      << "constants do not change the fingerprint";
  EXPECT_FALSE(router.PlanFor("UPDATE channels SET title = 'x'")->shadow) << "writes are not shadowed";
}

TEST(ShadowPlan, AReadCallingAVolatileFunctionIsSkippedWithTheReason) {
  auto config = ParseConfig(
      "[backends.old]\n[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\n"
      "shadow_sample = 1.0\nphase = \"shadow-read\"\n",
      "shadow.toml");
  ASSERT_TRUE(config.ok());
  TableCounterRegistry counters;
  Catalog catalog;
  catalog.volatile_functions = {"random", "my_counter"};
  Router router(*config, catalog, counters);
  PlanPtr plan = router.PlanFor("SELECT id FROM channels WHERE id > (SELECT my_counter())");
  ASSERT_TRUE(plan->shadow);
  EXPECT_EQ(plan->shadow->skip_reason, "it calls my_counter(), which PostgreSQL marks volatile");
  EXPECT_FALSE(router.PlanFor("SELECT id, random() FROM channels")->shadow->skip_reason.empty());
  EXPECT_TRUE(
      router.PlanFor("SELECT id, lower(title), now() FROM channels")->shadow->skip_reason.empty())
      << "immutable and stable functions are compared";

  Router unread(*config, {}, counters);
  EXPECT_FALSE(unread.PlanFor("SELECT nextval('s') FROM channels")->shadow->skip_reason.empty())
      << "without the catalog, the common built-in volatile functions stand in";
}

}  // namespace
}  // namespace pgshift::routing
