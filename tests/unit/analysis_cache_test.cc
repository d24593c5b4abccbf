// The analysis cache and the fast path's table-mention filter.
#include <gtest/gtest.h>

#include <thread>

#include "routing/analysis_cache.h"

namespace pgshift::routing {
namespace {

TEST(AnalysisCache, HitsReturnTheSameAnalysis) {
  AnalysisCache cache(10);
  auto first = cache.Get("SELECT * FROM channels");
  ASSERT_TRUE(first.ok());
  auto second = cache.Get("SELECT * FROM channels");
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(first->get(), second->get()) << "one shared analysis";
  EXPECT_EQ(cache.hits(), 1u);
  EXPECT_EQ(cache.misses(), 1u);
  EXPECT_EQ((**second)[0].reads, std::set<std::string>{"public.channels"});
}

TEST(AnalysisCache, EvictsTheLeastRecentlyUsed) {
  AnalysisCache cache(2);
  ASSERT_TRUE(cache.Get("SELECT 1").ok());
  ASSERT_TRUE(cache.Get("SELECT 2").ok());
  ASSERT_TRUE(cache.Get("SELECT 1").ok());  // 1 is now the most recent
  ASSERT_TRUE(cache.Get("SELECT 3").ok());  // evicts 2
  EXPECT_EQ(cache.size(), 2u);
  uint64_t misses = cache.misses();
  ASSERT_TRUE(cache.Get("SELECT 1").ok());
  EXPECT_EQ(cache.misses(), misses) << "1 stayed";
  ASSERT_TRUE(cache.Get("SELECT 2").ok());
  EXPECT_EQ(cache.misses(), misses + 1) << "2 was evicted";
}

TEST(AnalysisCache, SyntaxErrorsAreNotCached) {
  AnalysisCache cache(10);
  EXPECT_FALSE(cache.Get("SELEC 1").ok());
  EXPECT_EQ(cache.size(), 0u);
}

TEST(AnalysisCache, SharedBetweenThreads) {
  AnalysisCache cache(64);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < 200; ++i) {
        auto a = cache.Get("SELECT * FROM posts WHERE id = " + std::to_string((i + t) % 100));
        ASSERT_TRUE(a.ok());
        ASSERT_EQ((**a)[0].reads.size(), 1u);
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

TEST(TableMentionFilter, NoTablesNothingToFind) {
  TableMentionFilter filter(*Config(""));
  EXPECT_FALSE(filter.MayMention("SELECT * FROM channels"));
}

}  // namespace
}  // namespace pgshift::routing
