// Shadow read comparison, and the shadow half of a plan.
#include <gtest/gtest.h>

#include "routing/router.h"
#include "routing/shadow.h"
#include "routing/writes_in_flight.h"

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

TEST(ShadowPlan, TheShadowedTablesKeyWhenTheReadReadsOnlyThatTable) {
  auto config = ParseConfig(
      "[backends.old]\n[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\n"
      "key = [\"id\"]\nshadow_sample = 1.0\nphase = \"shadow-read\"\n",
      "shadow.toml");
  ASSERT_TRUE(config.ok());
  TableCounterRegistry counters;
  Router router(*config, {}, counters);
  PlanPtr plan = router.PlanFor("SELECT title FROM channels WHERE id = 1");
  EXPECT_EQ(plan->shadow->key, std::vector<std::string>{"id"});
  EXPECT_EQ(plan->shadow->tables, std::vector<std::string>{"public.channels"});
  EXPECT_TRUE(router.PlanFor("SELECT c.title FROM channels c JOIN posts p ON p.channel_id = c.id")
                  ->shadow->key.empty())
      << "a row of the result is not one row of channels";
}

TEST(TraceKeys, KeyColumnsInTheResultOrKeysPinnedByTheWhereClause) {
  const std::vector<std::string> id{"id"};
  EXPECT_EQ(
      TraceKeys("SELECT id, title FROM channels WHERE id BETWEEN 1 AND 20 ORDER BY id", id, {})
          .columns,
      id);
  EXPECT_EQ(TraceKeys("SELECT c.* FROM channels c", id, {}).columns, id);
  EXPECT_EQ(TraceKeys("SELECT title FROM channels WHERE id = 7", id, {}).pinned,
            std::vector<std::string>{"7"});
  EXPECT_EQ(
      TraceKeys("SELECT title FROM channels WHERE $1 = id AND title <> ''", id, {"12"}).pinned,
      std::vector<std::string>{"12"});
  EXPECT_EQ(TraceKeys("SELECT title FROM channels WHERE id IN (1, 2)", id, {}).pinned,
            (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(TraceKeys("SELECT title FROM channels WHERE id = '5'::int", id, {}).pinned,
            std::vector<std::string>{"5"});
  EXPECT_EQ(TraceKeys("SELECT n FROM pairs WHERE b = 2 AND a = 1", {"a", "b"}, {}).pinned,
            std::vector<std::string>{"(1,2)"});
  // Rows that other rows shape, or that are not the table's own.
  EXPECT_TRUE(TraceKeys("SELECT sum(n) FROM channels WHERE id > 3", id, {}).empty());
  EXPECT_TRUE(TraceKeys("SELECT id, sum(n) OVER (ORDER BY id) FROM channels", id, {}).empty());
  EXPECT_TRUE(TraceKeys("SELECT id, count(*) FROM channels GROUP BY id", id, {}).empty());
  EXPECT_TRUE(TraceKeys("SELECT n AS id FROM channels", id, {}).empty()) << "not the key";
  EXPECT_TRUE(TraceKeys("SELECT id FROM channels UNION SELECT 1", id, {}).empty());
  EXPECT_TRUE(TraceKeys("SELECT title FROM channels WHERE id = 1 OR id = 2", id, {}).empty());
  // Which rows come back depends on other rows.
  EXPECT_TRUE(TraceKeys("SELECT id, n FROM channels ORDER BY n DESC LIMIT 10", id, {}).empty());
  EXPECT_TRUE(
      TraceKeys("SELECT id FROM channels WHERE n > (SELECT avg(n) FROM channels)", id, {}).empty());
  EXPECT_TRUE(
      TraceKeys("WITH c AS (SELECT * FROM channels LIMIT 5) SELECT * FROM c", id, {}).empty());
  EXPECT_TRUE(TraceKeys("SELECT title FROM channels WHERE id = $1", id, {std::nullopt}).empty())
      << "a binary parameter";
}

TEST(DifferingKeys, TheKeysOfRowsOneSideLacks) {
  ResultSet a = Rows({{"1", "a"}, {"2", "b"}, {"3", "c"}});
  ResultSet b = Rows({{"1", "a"}, {"2", "B"}, {"3", "c"}, {"4", "d"}});
  EXPECT_EQ(DifferingKeys(a, b, {0}), (std::vector<std::string>{"2", "4"}));
  ResultSet reordered = Rows({{"3", "c"}, {"1", "a"}, {"2", "b"}});
  EXPECT_TRUE(DifferingKeys(a, reordered, {0}).empty())
      << "the same rows in another order: no write's key explains it";
  EXPECT_EQ(DifferingKeys(a, b, {0, 1}), (std::vector<std::string>{"(2,B)", "(2,b)", "(4,d)"}));
}

TEST(WritesInFlight, AKeyIsInFlightUntilReleasedAndExplainsReadsBegunBefore) {
  WritesInFlight record;
  const auto t0 = WritesInFlight::Clock::now();
  EXPECT_TRUE(record.Quiet("t", t0));
  WritesInFlight::Hold hold = record.NewHold();
  hold.Add({{"t", "1"}, {"t", "2"}});
  EXPECT_TRUE(record.Writing("t", "1"));
  EXPECT_FALSE(record.Writing("t", "3"));
  EXPECT_TRUE(record.Writing("t"));
  EXPECT_TRUE(record.Explains("t", "1", WritesInFlight::Clock::now()));
  EXPECT_FALSE(record.Explains("t", "3", t0));
  EXPECT_FALSE(record.Quiet("t", t0));
  {
    WritesInFlight::Hold other = record.NewHold();
    other.Add({{"t", "1"}});
  }  // released when it goes
  EXPECT_TRUE(record.Writing("t", "1")) << "still held by the first";
  hold.Release();
  EXPECT_FALSE(record.Writing("t", "1"));
  EXPECT_TRUE(record.Explains("t", "1", t0)) << "settled after the reads began";
  const auto t1 = WritesInFlight::Clock::now() + std::chrono::milliseconds(1);
  EXPECT_FALSE(record.Explains("t", "1", t1));
  EXPECT_FALSE(record.Quiet("t", t0));
  EXPECT_TRUE(record.Quiet("t", t1));

  // A key of nullopt (no key) holds the whole table.
  WritesInFlight::Hold whole = record.NewHold();
  whole.Add({{"t", std::nullopt}});
  EXPECT_TRUE(record.Writing("t", "99"));
  EXPECT_TRUE(record.Explains("t", "99", t1));
}

TEST(WritesInFlight, AHoldIsCommittingFromCommittingUntilReleased) {
  WritesInFlight record;
  using Keys = std::vector<std::optional<std::string>>;
  WritesInFlight::Hold a = record.NewHold(), b = record.NewHold();
  a.Add({{"t", "1"}});
  b.Add({{"t", "1"}, {"t", "2"}});
  EXPECT_FALSE(record.Committing("t", Keys{"1"})) << "held, not committing";
  a.Committing();
  EXPECT_TRUE(record.Committing("t", Keys{"2", "1"}));
  EXPECT_FALSE(record.Committing("t", Keys{"2"})) << "b holds 2 but is not committing";
  EXPECT_TRUE(record.Committing("t", Keys{std::nullopt})) << "any key of t";
  EXPECT_FALSE(record.Committing("u", Keys{std::nullopt}));
  // Added after Committing: committing too, and released alike.
  a.Add({{"t", "3"}});
  a.AddTable("u");
  EXPECT_TRUE(record.Committing("t", Keys{"3"}));
  EXPECT_TRUE(record.Committing("u", Keys{"9"})) << "all of u";
  WritesInFlight::Hold moved = std::move(a);
  moved.Release();
  EXPECT_FALSE(record.Committing("t", Keys{"1", "3", std::nullopt}));
  EXPECT_FALSE(record.Committing("u", Keys{std::nullopt}));
  b.Committing();
  EXPECT_TRUE(record.Committing("t", Keys{"2"})) << "the counts stayed whole";
  b.Release();
  EXPECT_FALSE(record.Committing("t", Keys{std::nullopt}));
}

TEST(WritesInFlight, TheRecordIsBoundedAndForgottenKeysCountAsSettledThen) {
  WritesInFlight record;
  const auto t0 = WritesInFlight::Clock::now();
  for (size_t i = 0; i <= WritesInFlight::kMaxKeysPerTable; i += 1000) {
    WritesInFlight::Hold hold = record.NewHold();
    std::vector<std::pair<std::string, std::optional<std::string>>> keys;
    for (size_t k = i; k < i + 1000; ++k) keys.emplace_back("t", std::to_string(k));
    hold.Add(keys);
  }
  EXPECT_LE(record.KeysOnRecord("t"), WritesInFlight::kMaxKeysPerTable);
  EXPECT_TRUE(record.Explains("t", "5", t0)) << "forgotten, but settled after t0";
  EXPECT_FALSE(record.Explains("t", "5", WritesInFlight::Clock::now() + std::chrono::seconds(1)));

  // A transaction past kMaxHeldKeys holds the whole table.
  WritesInFlight::Hold big = record.NewHold();
  std::vector<std::pair<std::string, std::optional<std::string>>> keys;
  for (size_t k = 0; k <= WritesInFlight::kMaxHeldKeys; ++k)
    keys.emplace_back("u", std::to_string(k));
  big.Add(keys);
  EXPECT_TRUE(record.Writing("u", "not written"));
  EXPECT_LE(record.KeysOnRecord("u"), WritesInFlight::kMaxHeldKeys);
}

}  // namespace
}  // namespace pgshift::routing
