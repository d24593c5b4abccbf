#include "migration/verify.h"

#include <atomic>
#include <chrono>

#include "common/json.h"
#include "common/strings.h"
#include "migration/range_ledger.h"
#include "migration/state_store.h"
#include "migration/table_pair.h"
#include "migration/verify_keyless.h"
#include "migration/verify_range.h"

namespace pgshift::migration {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kRangeKind = "verify_range";

struct Connections {
  PgClient old_db, new_db;  // new_db is old's database again when there is one
};

absl::StatusOr<Connections> Connect(const routing::Config& config) {
  auto old_db = PgClient::Connect(config, config.old_backend, "old", "pgshift verify");
  if (!old_db.ok()) return old_db.status();
  const routing::BackendConfig& new_backend =
      config.new_backend ? *config.new_backend : config.old_backend;
  auto new_db =
      PgClient::Connect(config, new_backend, config.new_backend ? "new" : "old", "pgshift verify");
  if (!new_db.ok()) return new_db.status();
  return Connections{std::move(*old_db), std::move(*new_db)};
}

// A range's report, kept in its row until every range is done.
std::string RangeResult(const VerifyReport& r) {
  return StrCat("{\"rows\":", r.rows, ",\"ranges\":", r.ranges,
                ",\"ranges_by_row\":", r.ranges_by_row, ",\"missing\":", JsonArray(r.missing),
                ",\"extra\":", JsonArray(r.extra), ",\"different\":", JsonArray(r.different),
                ",\"repaired\":", r.repaired ? "true" : "false", ",\"done\":true}");
}

// One worker: its own connections, comparing the ranges it claims.
absl::Status Work(const routing::Config& config, const TablePair& pair,
                  const VerifyOptions& options, int worker, const std::atomic<bool>& stop) {
  auto connections = Connect(config);
  if (!connections.ok()) return connections.status();
  RangeLedger ledger(connections->old_db, pair.config->name, kRangeKind, WorkerName(worker),
                     options.lease_seconds);
  return WorkRanges(
      ledger, stop, stderr, "verify", worker == 0, [&](const WorkRange& range) -> absl::Status {
        auto report = VerifyRange(options, pair, connections->old_db, connections->new_db, range,
                                  [&] { return ledger.RenewIfDue(range); });
        if (!report.ok()) return report.status();
        return ledger.Save(range, RangeResult(*report));
      });
}

// The whole table's report: every range's, summed, keys in key order.
absl::StatusOr<VerifyReport> SumRanges(PgClient& db, const std::string& table) {
  const std::vector<std::optional<std::string>> params{table, std::string(kRangeKind)};
  auto sums = db.Exec(
      "SELECT sum((detail->>'rows')::bigint), sum((detail->>'ranges')::bigint), "
      "sum((detail->>'ranges_by_row')::bigint), coalesce(bool_and((detail->>'repaired')::boolean) "
      "FILTER (WHERE detail->'missing' <> '[]' OR detail->'extra' <> '[]' OR detail->'different' "
      "<> '[]'), false) FROM pgshift_state WHERE table_name = $1 AND kind = $2",
      params);
  if (!sums.ok()) return sums.status();
  VerifyReport report;
  report.table = table;
  const Row& r = sums->rows[0];
  ParseInt(r[0].value_or("0"), report.rows);
  ParseInt(r[1].value_or("0"), report.ranges);
  ParseInt(r[2].value_or("0"), report.ranges_by_row);
  report.repaired = r[3] == "t";
  for (auto [name, keys] :
       {std::pair{"missing", &report.missing}, std::pair{"extra", &report.extra},
        std::pair{"different", &report.different}}) {
    // Each range's detail read once: a reference to it per key would
    // read its whole (TOASTed) value again for every key.
    auto listed = db.Exec(
        StrCat("WITH pgshift_ranges AS MATERIALIZED (SELECT (detail->>'range')::bigint AS range, "
               "detail->'",
               name,
               "' AS keys FROM pgshift_state WHERE table_name = $1 AND kind = $2) SELECT e.value "
               "FROM pgshift_ranges, pg_catalog.jsonb_array_elements_text(keys) WITH ORDINALITY "
               "e(value, n) ORDER BY range, e.n"),
        params);
    if (!listed.ok()) return listed.status();
    for (const Row& key : listed->rows) keys->push_back(key[0].value_or(""));
  }
  return report;
}

std::string EventDetail(const VerifyReport& r) {
  return StrCat("{\"rows\":", r.rows, ",\"ranges\":", r.ranges, ",\"missing\":", r.missing.size(),
                ",\"extra\":", r.extra.size(), ",\"different\":", r.different.size(),
                ",\"repaired\":", r.repaired ? "true" : "false", "}");
}

}  // namespace

absl::StatusOr<VerifyReport> Verify(const routing::Config& config, const std::string& table,
                                    const VerifyOptions& options) {
  auto main = Connect(config);
  if (!main.ok()) return main.status();
  auto pair = ResolveTable(config, table, main->old_db, main->new_db, true);
  if (!pair.ok()) return pair.status();
  const std::string& name = pair->config->name;
  if (std::string note = KeySortNote(*pair); !note.empty()) {
    std::fprintf(stderr, "pgshift verify: %s\n", note.c_str());
  }
  StateStore state(main->old_db);
  if (absl::Status s = state.Ensure(); !s.ok()) return s;
  if (pair->old_key.empty()) {
    if (options.jobs > 1) {
      std::fprintf(stderr, "pgshift verify: %s has no key to split by: one worker compares it\n",
                   name.c_str());
    }
    auto report = VerifyKeyless(options, *pair, main->old_db, main->new_db);
    if (!report.ok()) return report.status();
    if (absl::Status s = state.Record(name, "verify", EventDetail(*report)); !s.ok()) return s;
    return report;
  }
  const auto started = Clock::now();
  // A run under way (saved to within a lease) is joined; a finished or
  // abandoned one is replaced: its results are old.
  RangeLedger ledger(main->old_db, name, kRangeKind, WorkerName(0), options.lease_seconds);
  auto ranges = ledger.Plan(*pair, options.jobs > 1 ? 4 * options.jobs : 1, true);
  if (!ranges.ok()) return ranges.status();
  // Each worker keeps to its share of --rate.
  VerifyOptions each = options;
  each.rate = options.rate / static_cast<double>(options.jobs);
  if (absl::Status s = RunWorkers(options.jobs,
                                  [&](int worker, const std::atomic<bool>& stop) {
                                    return Work(config, *pair, each, worker, stop);
                                  });
      !s.ok()) {
    return s;
  }
  auto report = SumRanges(main->old_db, name);
  if (!report.ok()) return report.status();
  report->seconds = std::chrono::duration<double>(Clock::now() - started).count();
  auto recorded = ledger.RecordOnce("verify", EventDetail(*report));
  if (!recorded.ok()) return recorded.status();
  return report;
}

void PrintReport(const VerifyReport& r, bool json, std::FILE* out) {
  if (json) {
    std::fprintf(out,
                 "{\"table\":%s,\"rows\":%lld,\"ranges\":%lld,\"ranges_by_row\":%lld,"
                 "\"missing\":%s,\"extra\":%s,\"different\":%s,\"repaired\":%s,\"seconds\":%.3f}\n",
                 JsonString(r.table).c_str(), static_cast<long long>(r.rows),
                 static_cast<long long>(r.ranges), static_cast<long long>(r.ranges_by_row),
                 JsonArray(r.missing).c_str(), JsonArray(r.extra).c_str(),
                 JsonArray(r.different).c_str(), r.repaired ? "true" : "false", r.seconds);
    return;
  }
  std::fprintf(out,
               "pgshift verify: %s: %lld rows in %lld ranges (%lld compared row by row), %zu "
               "differences%s (%.1f s)\n",
               r.table.c_str(), static_cast<long long>(r.rows), static_cast<long long>(r.ranges),
               static_cast<long long>(r.ranges_by_row), r.differences(),
               r.repaired ? ", repaired" : "", r.seconds);
  auto list = [&](const char* what, const std::vector<std::string>& keys) {
    if (keys.empty()) return;
    std::string shown;
    for (size_t i = 0; i < keys.size() && i < 20; ++i) shown = StrCat(shown, i ? " " : "", keys[i]);
    std::fprintf(out, "  %s (%zu): %s%s\n", what, keys.size(), shown.c_str(),
                 keys.size() > 20 ? " ..." : "");
  };
  list("missing in new", r.missing);
  list("extra in new", r.extra);
  list("different", r.different);
}

}  // namespace pgshift::migration
