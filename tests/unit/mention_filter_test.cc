// The plan cache and the fast path's table-mention filter.
#include <gtest/gtest.h>

#include <thread>

#include "routing/lru_cache.h"
#include "routing/mention_filter.h"

namespace pgshift::routing {
namespace {

TEST(LruCache, HitsReturnTheSameValue) {
  LruCache<std::shared_ptr<int>> cache(10);
  int made = 0;
  auto make = [&](std::string_view) -> absl::StatusOr<std::shared_ptr<int>> {
    return std::make_shared<int>(++made);
  };
  auto first = cache.Get("SELECT 1", make);
  auto second = cache.Get("SELECT 1", make);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->get(), second->get()) << "one shared value";
  EXPECT_EQ(made, 1);
  EXPECT_EQ(cache.hits(), 1u);
  EXPECT_EQ(cache.misses(), 1u);
}

TEST(LruCache, EvictsTheLeastRecentlyUsed) {
  LruCache<int> cache(2);
  int made = 0;
  auto make = [&](std::string_view) -> absl::StatusOr<int> { return ++made; };
  ASSERT_TRUE(cache.Get("SELECT 1", make).ok());
  ASSERT_TRUE(cache.Get("SELECT 2", make).ok());
  ASSERT_TRUE(cache.Get("SELECT 1", make).ok());  // 1 is now the most recent
  ASSERT_TRUE(cache.Get("SELECT 3", make).ok());  // evicts 2
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(*cache.Get("SELECT 1", make), 1) << "1 stayed";
  EXPECT_EQ(*cache.Get("SELECT 2", make), 4) << "2 was evicted and made again";
}

TEST(LruCache, KeepsItsEntriesWithinMaxBytes) {
  LruCache<std::string> cache(100, 1000, [](const std::string& v) { return v.size(); });
  auto make = [](std::string_view) -> absl::StatusOr<std::string> { return std::string(300, 'v'); };
  for (std::string key : {"a", "b", "c", "d"}) ASSERT_TRUE(cache.Get(key, make).ok());
  EXPECT_EQ(cache.size(), 3u) << "a fourth 301-byte entry would pass 1000 bytes";
  EXPECT_EQ(cache.bytes(), 903u);
  EXPECT_FALSE(cache.Find("a")) << "the least recently used went";
  auto huge = [](std::string_view) -> absl::StatusOr<std::string> {
    return std::string(2000, 'h');
  };
  ASSERT_TRUE(cache.Get("h", huge).ok()) << "too large to keep is still made";
  EXPECT_FALSE(cache.Find("h"));
  EXPECT_EQ(cache.size(), 3u) << "and evicts nothing";
}

TEST(LruCache, FailuresAreNotCached) {
  LruCache<int> cache(10);
  auto fail = [](std::string_view) -> absl::StatusOr<int> {
    return absl::InvalidArgumentError("no");
  };
  EXPECT_FALSE(cache.Get("SELEC 1", fail).ok());
  EXPECT_EQ(cache.size(), 0u);
}

TEST(LruCache, SharedBetweenThreads) {
  LruCache<std::string> cache(64);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < 200; ++i) {
        std::string key = "SELECT * FROM posts WHERE id = " + std::to_string((i + t) % 100);
        auto v = cache.Get(key, [](std::string_view k) -> absl::StatusOr<std::string> {
          return std::string(k);
        });
        ASSERT_TRUE(v.ok());
        ASSERT_EQ(*v, key);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(cache.size(), 64u);
}

ConfigPtr Config(std::string_view tables) {
  auto c = ParseConfig(std::string("[backends.old]\n") + std::string(tables), "filter.toml");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

TEST(TableMentionFilter, PassesStatementsThatNameNoConfiguredTable) {
  TableMentionFilter filter(*Config(
      "[[tables]]\nname = \"public.channels\"\nnew_name = \"app.channels_v2\"\nphase = "
      "\"old-only\"\n"));
  EXPECT_FALSE(filter.MayMention("SELECT abalance FROM pgbench_accounts WHERE aid = $1"));
  EXPECT_FALSE(filter.MayMention("BEGIN"));
  EXPECT_TRUE(filter.MayMention("SELECT * FROM channels"));
  EXPECT_TRUE(filter.MayMention("select * from CHANNELS"));
  EXPECT_TRUE(filter.MayMention("SELECT * FROM \"Channels\""));
  EXPECT_TRUE(filter.MayMention("SELECT * FROM app.channels_v2"));
  EXPECT_TRUE(filter.MayMention("SELECT 'channels are fun'")) << "errs toward a parse";
  EXPECT_TRUE(filter.MayMention("SELECT * FROM U&\"\\0063hannels\"")) << "escaped identifiers";
}

TEST(TableMentionFilter, OfSomeTablesFindsOnlyThose) {
  ConfigPtr config = Config(
      "[[tables]]\nname = \"counters\"\nnew_name = \"counters_v2\"\nphase = \"dual-write\"\n"
      "[[tables]]\nname = \"totals\"\nnew_name = \"totals_v2\"\nphase = \"old-only\"\n");
  TableMentionFilter filter(*config, {"public.counters"});
  EXPECT_TRUE(filter.MayMention("UPDATE Counters_V2 SET n = 1"));
  EXPECT_FALSE(filter.MayMention("UPDATE totals SET n = 1"));
  EXPECT_TRUE(filter.MayMention("TRUNCATE totals CASCADE")) << "counters is mirrored";
  TableMentionFilter none(*config, {});
  EXPECT_FALSE(none.MayMention("UPDATE counters SET n = 1"));
}

TEST(TableMentionFilter, NoTablesNothingToFind) {
  TableMentionFilter filter(*Config(""));
  EXPECT_FALSE(filter.MayMention("SELECT * FROM channels"));
}

}  // namespace
}  // namespace pgshift::routing
