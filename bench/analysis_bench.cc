// What recognising a statement costs: the fast path's filter, a cached
// analysis, and a full parse with libpg_query.
#include <benchmark/benchmark.h>

#include "routing/analysis_cache.h"

namespace pgshift::routing {
namespace {

const char* kStatements[] = {
    "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
    "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, "
    "CURRENT_TIMESTAMP)",
    "SELECT c.title, count(*) FROM channels c JOIN posts p ON p.channel_id = c.id WHERE c.id IN "
    "(SELECT channel_id FROM comments WHERE author = $1) GROUP BY 1 ORDER BY 2 DESC LIMIT 10",
};

ConfigPtr DemoConfig() {
  return *ParseConfig(
      "[backends.old]\n"
      "[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\nphase = \"old-only\"\n"
      "[[tables]]\nname = \"posts\"\nnew_name = \"posts_v2\"\nphase = \"old-only\"\n"
      "[[tables]]\nname = \"comments\"\nnew_name = \"comments_v2\"\nphase = \"old-only\"\n",
      "bench.toml");
}

void BM_FilterUntouchedStatement(benchmark::State& state) {
  TableMentionFilter filter(*DemoConfig());
  for (auto _ : state) benchmark::DoNotOptimize(filter.MayMention(kStatements[0]));
}
BENCHMARK(BM_FilterUntouchedStatement);

void BM_AnalyzeUncached(benchmark::State& state) {
  const char* sql = kStatements[state.range(0)];
  for (auto _ : state) benchmark::DoNotOptimize(AnalyzeSql(sql));
}
BENCHMARK(BM_AnalyzeUncached)->DenseRange(0, 3);

void BM_AnalyzeCached(benchmark::State& state) {
  AnalysisCache cache(1000);
  const char* sql = kStatements[state.range(0)];
  for (auto _ : state) benchmark::DoNotOptimize(cache.Get(sql));
}
BENCHMARK(BM_AnalyzeCached)->DenseRange(0, 3);

}  // namespace
}  // namespace pgshift::routing
