// What recognising a statement costs: the fast path's filter, a full parse
// and analysis with libpg_query, and a routing plan made (parse, analysis,
// rewrite, deparse) or found in the plan cache, by text or by template.
#include <benchmark/benchmark.h>

#include "routing/router.h"
#include "routing/sql_analysis.h"

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

// The demo tables, and pgbench_accounts, all in new-only with renames.
ConfigPtr MigratingConfig() {
  return *ParseConfig(
      "[backends.old]\n"
      "[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\nphase = \"new-only\"\n"
      "columns = { title = \"name\" }\n"
      "[[tables]]\nname = \"posts\"\nnew_name = \"posts_v2\"\nphase = \"new-only\"\n"
      "[[tables]]\nname = \"comments\"\nnew_name = \"comments_v2\"\nphase = \"new-only\"\n"
      "[[tables]]\nname = \"pgbench_accounts\"\nnew_name = \"accounts_v2\"\nphase = \"new-only\"\n"
      "columns = { abalance = \"balance\" }\n",
      "bench.toml");
}

void BM_FilterUntouchedStatement(benchmark::State& state) {
  TableMentionFilter filter(*MigratingConfig());
  const char* sql = "SELECT balance FROM users WHERE id = $1";
  for (auto _ : state) benchmark::DoNotOptimize(filter.MayMention(sql));
}
BENCHMARK(BM_FilterUntouchedStatement);

void BM_AnalyzeUncached(benchmark::State& state) {
  const char* sql = kStatements[state.range(0)];
  for (auto _ : state) benchmark::DoNotOptimize(AnalyzeSql(sql));
}
BENCHMARK(BM_AnalyzeUncached)->DenseRange(0, 3);

// Plans made every time: a plan cache of size 0.
void BM_PlanUncached(benchmark::State& state) {
  auto config = std::make_shared<Config>(*MigratingConfig());
  config->proxy.plan_cache_size = 0;
  TableCounterRegistry counters;
  Router router(config, {}, counters);
  const char* sql = kStatements[state.range(0)];
  for (auto _ : state) benchmark::DoNotOptimize(router.PlanFor(sql));
}
BENCHMARK(BM_PlanUncached)->DenseRange(0, 3);

void BM_PlanCached(benchmark::State& state) {
  TableCounterRegistry counters;
  Router router(MigratingConfig(), {}, counters);
  const char* sql = kStatements[state.range(0)];
  for (auto _ : state) benchmark::DoNotOptimize(router.PlanFor(sql));
}
BENCHMARK(BM_PlanCached)->DenseRange(0, 3);

// Simple-protocol statements: a new constant every time, so the plan is
// found by the statement's template and its constants are put back.
const char* kSimpleStatements[] = {
    "SELECT abalance FROM pgbench_accounts WHERE aid = ",
    "UPDATE pgbench_accounts SET abalance = abalance + -2380 WHERE aid = ",
};

void BM_PlanByTemplate(benchmark::State& state) {
  TableCounterRegistry counters;
  Router router(MigratingConfig(), {}, counters);
  std::vector<std::string> texts;
  for (int i = 0; i < 1000; ++i) {
    texts.push_back(std::string(kSimpleStatements[state.range(0)]) + std::to_string(10000 + i));
  }
  size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(router.PlanFor(texts[i++ % texts.size()]));
}
BENCHMARK(BM_PlanByTemplate)->DenseRange(0, 1);

void BM_TemplateOnly(benchmark::State& state) {
  std::string sql = std::string(kSimpleStatements[state.range(0)]) + "57417";
  for (auto _ : state) benchmark::DoNotOptimize(MakeTemplate(sql));
}
BENCHMARK(BM_TemplateOnly)->DenseRange(0, 1);

}  // namespace
}  // namespace pgshift::routing
