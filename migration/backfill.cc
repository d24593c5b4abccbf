#include "migration/backfill.h"

#include <atomic>
#include <chrono>
#include <optional>

#include "common/strings.h"
#include "migration/backfill_range.h"

namespace pgshift::migration {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kRangeKind = "backfill_range";

// A worker's connections: old, and new across servers.
struct Connections {
  PgClient old_db;
  std::optional<PgClient> new_db;

  PgClient* new_side() { return new_db ? &*new_db : nullptr; }
};

absl::StatusOr<Connections> Connect(const routing::Config& config) {
  auto old_db = PgClient::Connect(config, config.old_backend, "old", "pgshift backfill");
  if (!old_db.ok()) return old_db.status();
  Connections connections{std::move(*old_db), std::nullopt};
  if (config.new_backend) {
    auto new_db = PgClient::Connect(config, *config.new_backend, "new", "pgshift backfill");
    if (!new_db.ok()) return new_db.status();
    connections.new_db.emplace(std::move(*new_db));
  }
  return connections;
}

// Rows read and copied over every range of the table.
struct Totals {
  int64_t read = 0, copied = 0;
};

absl::StatusOr<Totals> SumRanges(PgClient& db, const std::string& table) {
  auto r = db.Exec(
      "SELECT coalesce(sum((detail->>'rows')::bigint), 0), coalesce(sum((detail->>'copied')::"
      "bigint), 0) FROM pgshift_state WHERE table_name = $1 AND kind = $2",
      {table, std::string(kRangeKind)});
  if (!r.ok()) return r.status();
  Totals totals;
  ParseInt(r->rows[0][0].value_or("0"), totals.read);
  ParseInt(r->rows[0][1].value_or("0"), totals.copied);
  return totals;
}

// One worker: its own connections and pace, copying the ranges it claims.
absl::Status Work(const routing::Config& config, const TablePair& pair,
                  const BackfillOptions& options, std::FILE* out, int worker,
                  const std::atomic<bool>& stop) {
  auto connections = Connect(config);
  if (!connections.ok()) return connections.status();
  RangeLedger ledger(connections->old_db, pair.config->name, kRangeKind, WorkerName(worker),
                     options.lease_seconds);
  BatchPace pace(options, out, connections->old_db, pair.config->name);
  const RangeWorker context{out, connections->old_db, connections->new_side(), pair, ledger, pace,
                            stop};
  return WorkRanges(ledger, stop, out, "backfill", worker == 0,
                    [&](const WorkRange& range) { return CopyRange(context, range); });
}

// --restart: each range's stopped batch is swept first (later sweeps
// remove only their own batches' copies), then the plan is forgotten.
absl::Status Restart(Connections& main, const TablePair& pair, const BackfillOptions& options,
                     std::FILE* out, RangeLedger& ledger) {
  std::atomic<bool> stop = false;
  BatchPace pace(options, out, main.old_db, pair.config->name);
  const RangeWorker context{out, main.old_db, main.new_side(), pair, ledger, pace, stop};
  while (true) {
    auto claimed = ledger.Claim();
    if (!claimed.ok()) return claimed.status();
    if (!*claimed) break;
    if (absl::Status s = SweepStoppedBatch(context, **claimed); !s.ok()) return s;
  }
  return ledger.Clear();
}

}  // namespace

absl::Status Backfill(const routing::Config& config, const std::string& table,
                      const BackfillOptions& given, std::FILE* out) {
  auto main = Connect(config);
  if (!main.ok()) return main.status();
  PgClient& new_side = main->new_db ? *main->new_db : main->old_db;
  auto pair = ResolveTable(config, table, main->old_db, new_side);
  if (!pair.ok()) return pair.status();
  const std::string& name = pair->config->name;
  if (pair->new_is_authoritative) {
    return absl::FailedPreconditionError(
        StrCat(name, " is in phase ", routing::PhaseName(pair->config->phase),
               ": new is authoritative, and backfill copies old into new; it is meant for "
               "dual-write"));
  }
  if (std::string note = KeySortNote(*pair); !note.empty()) {
    std::fprintf(out, "pgshift backfill: %s\n", note.c_str());
  }
  if (!pair->same_database) {
    std::fprintf(out, "pgshift backfill: %s: rows travel by COPY in %s\n", name.c_str(),
                 pair->binary_copy
                     ? "binary format"
                     : "text format (binary needs every column pair of one type of "
                       "PostgreSQL's own, not reg*, on servers of one major version)");
  }
  // Each worker keeps to its share of --rate; a progress bar is one
  // worker's.
  BackfillOptions options = given;
  options.rate = given.rate / static_cast<double>(given.jobs);
  options.progress_bar = given.progress_bar && given.jobs == 1;
  StateStore state(main->old_db);
  if (absl::Status s = state.Ensure(); !s.ok()) return s;
  RangeLedger ledger(main->old_db, name, kRangeKind, WorkerName(0), options.lease_seconds);
  if (options.restart) {
    if (absl::Status s = Restart(*main, *pair, options, out, ledger); !s.ok()) return s;
  }
  // Four ranges a worker, so that workers that finish early share the rest.
  auto ranges = ledger.Plan(*pair, options.jobs > 1 ? 4 * options.jobs : 1, false);
  if (!ranges.ok()) return ranges.status();
  auto standing = ledger.Standing();
  if (!standing.ok()) return standing.status();
  if (standing->done == standing->total && standing->recorded) {
    auto totals = SumRanges(main->old_db, name);
    if (!totals.ok()) return totals.status();
    std::fprintf(out,
                 "pgshift backfill: %s was already copied (%lld rows); --restart copies it "
                 "again\n",
                 name.c_str(), static_cast<long long>(totals->read));
    return absl::OkStatus();
  }
  if (*ranges > 1 || options.jobs > 1) {
    std::fprintf(out, "pgshift backfill: %s: %lld key ranges (%lld done), %lld workers here\n",
                 name.c_str(), static_cast<long long>(*ranges),
                 static_cast<long long>(standing->done), static_cast<long long>(options.jobs));
  }
  const auto started = Clock::now();
  if (absl::Status s = RunWorkers(options.jobs,
                                  [&](int worker, const std::atomic<bool>& stop) {
                                    return Work(config, *pair, options, out, worker, stop);
                                  });
      !s.ok()) {
    return s;
  }
  auto totals = SumRanges(main->old_db, name);
  if (!totals.ok()) return totals.status();
  double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  auto recorded = ledger.RecordOnce(
      "backfill", StrCat("{\"rows_read\":", totals->read, ",\"rows_copied\":", totals->copied,
                         ",\"seconds\":", seconds, ",\"ranges\":", *ranges, "}"));
  if (!recorded.ok()) return recorded.status();
  if (options.progress_bar) std::fputc('\n', out);
  std::fprintf(out,
               "pgshift backfill: %s done: %lld rows read, %lld copied (the rest new already "
               "had), %.1f s\n",
               name.c_str(), static_cast<long long>(totals->read),
               static_cast<long long>(totals->copied), seconds);
  return absl::OkStatus();
}

}  // namespace pgshift::migration
