#include "migration/range_ledger.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/cord.h"
#include "common/json.h"
#include "common/strings.h"
#include "migration/state_store.h"

namespace pgshift::migration {

namespace {

// A plan of this many sampled keys per range, at least this many in all.
constexpr int64_t kSamplePerRange = 1000;
constexpr int64_t kSampleLeast = 10000;

// Over a range's pgshift_state row: whether it is done, and whether a
// worker holds it: its lease is live and its connection to this database
// too (a killed command's range is free at once; one on a machine that
// vanished, once the lease expires).
constexpr const char* kDone = "coalesce((detail->>'done')::boolean, false)";
constexpr const char* kHeld =
    "(detail->>'holder' IS NOT NULL AND (detail->>'lease_until')::timestamptz >= now() AND "
    "EXISTS (SELECT FROM pg_catalog.pg_stat_activity pgshift_worker WHERE pgshift_worker.pid = "
    "(detail->>'backend')::int AND (pgshift_worker.backend_start IS NULL OR "
    "pgshift_worker.backend_start = (detail->>'backend_start')::timestamptz)))";

}  // namespace

namespace {
constexpr char kTakenOverPayload[] = "pgshift/range_taken_over";
}  // namespace

bool TakenOver(const absl::Status& status) {
  return status.GetPayload(kTakenOverPayload).has_value();
}

std::string WorkRange::Name() const { return StrCat("range ", number + 1, " of ", count); }

std::string WorkerName(int worker) {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return StrCat(host, ":", getpid(), ":", worker);
}

absl::Status RangeLedger::LockPlan() {
  return db_.Run(
      "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgshift ranges'), "
      "pg_catalog.hashtext($1 || '/' || $2))",
      {table_, kind_});
}

absl::StatusOr<std::vector<std::vector<std::string>>> RangeLedger::SampleBounds(
    const TablePair& pair, int64_t count) {
  std::vector<std::vector<std::string>> bounds;
  if (count <= 1) return bounds;
  // Statistics, or the table's size at 100 bytes a row before any ANALYZE.
  auto estimate = db_.Exec(
      "SELECT CASE WHEN reltuples > 0 THEN reltuples ELSE pg_catalog.pg_relation_size(oid) / 100 "
      "END::bigint FROM pg_catalog.pg_class WHERE oid = $1::pg_catalog.regclass",
      {pair.old_table});
  if (!estimate.ok()) return estimate.status();
  int64_t rows = 0;
  if (!estimate->rows.empty() && estimate->rows[0][0]) ParseInt(*estimate->rows[0][0], rows);
  const int64_t wanted = std::max(kSampleLeast, kSamplePerRange * count);
  const double percent =
      rows > wanted
          ? std::max(0.001, 100.0 * static_cast<double>(wanted) / static_cast<double>(rows))
          : 100.0;
  std::string keys;
  for (size_t i = 0; i < pair.old_key.size(); ++i) {
    keys = StrCat(keys, i ? ", " : "", pair.old_key[i], "::text AS pgshift_key_", i);
  }
  // Every (sample / count)-th sampled key, in key order, is a bound.
  const std::string order = TablePair::List(pair.old_key_order);
  auto sampled = db_.Exec(
      StrCat("SELECT ", keys, " FROM (SELECT ", TablePair::List(pair.old_key),
             ", pg_catalog.row_number() OVER (ORDER BY ", order,
             ") AS pgshift_n, pg_catalog.count(*) OVER () AS pgshift_total FROM ", pair.old_table,
             " TABLESAMPLE SYSTEM ($1::float8)) pgshift_sample WHERE pgshift_n % "
             "greatest(pgshift_total "
             "/ $2::bigint, 1) = 0 AND pgshift_n < pgshift_total ORDER BY ",
             order, " LIMIT $2::bigint - 1"),
      {StrCat(percent), StrCat(count)});
  if (!sampled.ok()) return sampled.status();
  for (const Row& row : sampled->rows) {
    std::vector<std::string> key;
    for (const auto& value : row) key.push_back(value.value_or(""));
    bounds.push_back(std::move(key));
  }
  return bounds;
}

absl::StatusOr<int64_t> RangeLedger::Plan(const TablePair& pair, int64_t count,
                                          bool replace_stale) {
  // Whether a plan is there, and whether it is still being worked on.
  const std::string existing = StrCat(
      "SELECT count(*), coalesce(bool_or(coalesce((detail->>'recorded')::boolean, false)), "
      "false) OR (coalesce(max(recorded_at) < now() - pg_catalog.make_interval(secs => $3), "
      "false) AND NOT coalesce(bool_or(",
      kHeld, "), false)) FROM pgshift_state WHERE table_name = $1 AND kind = $2");
  const std::vector<std::optional<std::string>> params{table_, kind_, StrCat(lease_seconds_)};
  auto found = db_.Exec(existing, params);
  if (!found.ok()) return found.status();
  auto joinable = [&](const QueryRows& r, int64_t& n) {
    ParseInt(*r.rows[0][0], n);
    return n > 0 && !(replace_stale && *r.rows[0][1] == "t");
  };
  int64_t planned = 0;
  if (joinable(*found, planned)) return planned;
  // Sampled outside the lock: a command that loses the race to plan has
  // only read a little.
  auto bounds = SampleBounds(pair, count);
  if (!bounds.ok()) return bounds.status();
  if (absl::Status s = db_.Run("BEGIN"); !s.ok()) return s;
  auto rollback = [&](absl::Status s) {
    db_.Run("ROLLBACK").IgnoreError();
    return s;
  };
  if (absl::Status s = LockPlan(); !s.ok()) return rollback(s);
  found = db_.Exec(existing, params);
  if (!found.ok()) return rollback(found.status());
  if (joinable(*found, planned)) {
    if (absl::Status s = db_.Run("COMMIT"); !s.ok()) return s;
    return planned;
  }
  if (absl::Status s =
          db_.Run("DELETE FROM pgshift_state WHERE table_name = $1 AND kind = $2", {table_, kind_});
      !s.ok()) {
    return rollback(s);
  }
  const int64_t ranges = static_cast<int64_t>(bounds->size()) + 1;
  for (int64_t n = 0; n < ranges; ++n) {
    const std::vector<std::string> none;
    const auto& lower = n == 0 ? none : (*bounds)[static_cast<size_t>(n - 1)];
    const auto& upper = n + 1 == ranges ? none : (*bounds)[static_cast<size_t>(n)];
    std::string detail =
        StrCat("{\"range\":", n, ",\"count\":", ranges, ",\"lower\":", JsonArray(lower),
               ",\"upper\":", JsonArray(upper), ",\"holder\":null,\"done\":false}");
    if (absl::Status s = StateStore(db_).Record(table_, kind_, detail); !s.ok()) {
      return rollback(s);
    }
  }
  if (absl::Status s = db_.Run("COMMIT"); !s.ok()) return s;
  return ranges;
}

absl::StatusOr<std::vector<std::string>> RangeLedger::TextArray(int64_t id,
                                                                const std::string& path) {
  auto rows = db_.Exec(
      "SELECT e.value FROM pgshift_state, pg_catalog.jsonb_array_elements_text(detail #> "
      "$2::text[]) WITH ORDINALITY e(value, n) WHERE id = $1 AND pg_catalog.jsonb_typeof(detail "
      "#> $2::text[]) = 'array' ORDER BY e.n",
      {StrCat(id), path});
  if (!rows.ok()) return rows.status();
  std::vector<std::string> out;
  for (const Row& r : rows->rows) out.push_back(r[0].value_or(""));
  return out;
}

absl::StatusOr<std::optional<WorkRange>> RangeLedger::Claim() {
  auto claimed = db_.Exec(
      StrCat("UPDATE pgshift_state s SET detail = s.detail || pg_catalog.jsonb_build_object("
             "'holder', $3::text, 'lease_until', now() + pg_catalog.make_interval(secs => $4), "
             "'backend', pg_catalog.pg_backend_pid(), 'backend_start', (SELECT backend_start FROM "
             "pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid())), "
             "recorded_at = now() FROM (SELECT id FROM pgshift_state WHERE table_name = $1 AND "
             "kind = $2 AND NOT ",
             kDone, " AND NOT ", kHeld,
             " ORDER BY (detail->>'range')::bigint LIMIT 1 FOR UPDATE SKIP LOCKED) pgshift_next "
             "WHERE s.id = pgshift_next.id RETURNING s.id, s.detail->>'range', "
             "s.detail->>'count'"),
      {table_, kind_, holder_, StrCat(lease_seconds_)});
  if (!claimed.ok()) return claimed.status();
  if (claimed->rows.empty()) return std::optional<WorkRange>();
  renewed_ = std::chrono::steady_clock::now();
  WorkRange range;
  const Row& r = claimed->rows[0];
  ParseInt(r[0].value_or("0"), range.id);
  ParseInt(r[1].value_or("0"), range.number);
  ParseInt(r[2].value_or("0"), range.count);
  auto lower = TextArray(range.id, "{lower}");
  if (!lower.ok()) return lower.status();
  auto upper = TextArray(range.id, "{upper}");
  if (!upper.ok()) return upper.status();
  range.lower = std::move(*lower);
  range.upper = std::move(*upper);
  return std::optional<WorkRange>(std::move(range));
}

absl::Status RangeLedger::Save(const WorkRange& range, const std::string& detail) {
  // By name and by connection: two hosts may name two workers alike. The
  // lease runs from now, not from the start of the batch's transaction.
  auto saved = db_.Exec(
      "UPDATE pgshift_state SET detail = detail || $3::jsonb || pg_catalog.jsonb_build_object("
      "'lease_until', pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $4)), "
      "recorded_at = now() WHERE "
      "id = $1 AND detail->>'holder' = $2 AND (detail->>'backend')::int = "
      "pg_catalog.pg_backend_pid() RETURNING 1",
      {StrCat(range.id), holder_, detail, StrCat(lease_seconds_)});
  if (!saved.ok()) return saved.status();
  if (!saved->rows.empty()) {
    renewed_ = std::chrono::steady_clock::now();
    return absl::OkStatus();
  }
  auto holder =
      db_.Exec("SELECT detail->>'holder' FROM pgshift_state WHERE id = $1", {StrCat(range.id)});
  std::string now_held = "nobody (the plan was removed)";
  if (holder.ok() && !holder->rows.empty()) now_held = holder->rows[0][0].value_or("nobody");
  absl::Status taken = absl::AbortedError(
      StrCat(range.Name(), " of ", table_, " is held by ", now_held,
             " now: this worker's lease expired (", lease_seconds_,
             " s without renewing it), so it leaves the range to that worker and undoes what it "
             "had not saved"));
  taken.SetPayload(kTakenOverPayload, absl::Cord("1"));
  return taken;
}

absl::Status RangeLedger::RenewIfDue(const WorkRange& range) {
  if (std::chrono::steady_clock::now() - renewed_ < std::chrono::seconds(lease_seconds_) / 3) {
    return absl::OkStatus();
  }
  return Save(range, "{}");
}

absl::Status RangeLedger::Release(const WorkRange& range) {
  return db_.Run(
      "UPDATE pgshift_state SET detail = detail || '{\"holder\":null}', recorded_at = now() "
      "WHERE id = $1 AND detail->>'holder' = $2 AND (detail->>'backend')::int = "
      "pg_catalog.pg_backend_pid()",
      {StrCat(range.id), holder_});
}

absl::StatusOr<RangeStanding> RangeLedger::Standing() {
  auto r =
      db_.Exec(StrCat("SELECT count(*), count(*) FILTER (WHERE ", kDone,
                      "), count(*) FILTER (WHERE NOT ", kDone, " AND ", kHeld,
                      "), (min((detail->>'lease_until')::timestamptz) FILTER (WHERE NOT ", kDone,
                      " AND ", kHeld,
                      "))::text, coalesce(bool_or(coalesce((detail->>'recorded')::boolean, "
                      "false)), false) FROM pgshift_state WHERE table_name = $1 AND kind = $2"),
               {table_, kind_});
  if (!r.ok()) return r.status();
  const Row& row = r->rows[0];
  RangeStanding standing;
  ParseInt(row[0].value_or("0"), standing.total);
  ParseInt(row[1].value_or("0"), standing.done);
  ParseInt(row[2].value_or("0"), standing.held);
  standing.next_expiry = row[3].value_or("");
  standing.recorded = row[4] == "t";
  return standing;
}

absl::Status RangeLedger::Clear() {
  if (absl::Status s = db_.Run("BEGIN"); !s.ok()) return s;
  auto rollback = [&](absl::Status s) {
    db_.Run("ROLLBACK").IgnoreError();
    return s;
  };
  if (absl::Status s = LockPlan(); !s.ok()) return rollback(s);
  // Locked first: a worker saving a batch now (its lease expired, its save
  // not) is waited for, and then seen.
  if (absl::Status s =
          db_.Run("SELECT FROM pgshift_state WHERE table_name = $1 AND kind = $2 FOR UPDATE",
                  {table_, kind_});
      !s.ok()) {
    return rollback(s);
  }
  auto held = db_.Exec(StrCat("SELECT detail->>'range', detail->>'holder', detail->>'lease_until' "
                              "FROM pgshift_state WHERE table_name = $1 AND kind = $2 AND NOT ",
                              kDone,
                              " AND detail->>'holder' IS NOT NULL AND (detail->>'holder' <> $3 "
                              "OR (detail->>'backend')::int <> pg_catalog.pg_backend_pid()) "
                              "ORDER BY (detail->>'range')::bigint LIMIT 1"),
                       {table_, kind_, holder_});
  if (!held.ok()) return rollback(held.status());
  if (!held->rows.empty()) {
    const Row& r = held->rows[0];
    int64_t number = 0;
    ParseInt(r[0].value_or("0"), number);
    return rollback(absl::FailedPreconditionError(
        StrCat("range ", number + 1, " of ", table_, " is held by ", r[1].value_or(""),
               " (lease until ", r[2].value_or(""),
               "): stop that command, or wait for its lease to expire, and start over again")));
  }
  if (absl::Status s =
          db_.Run("DELETE FROM pgshift_state WHERE table_name = $1 AND kind = $2", {table_, kind_});
      !s.ok()) {
    return rollback(s);
  }
  return db_.Run("COMMIT");
}

absl::StatusOr<bool> RangeLedger::RecordOnce(const std::string& event_kind,
                                             const std::string& detail) {
  if (absl::Status s = db_.Run("BEGIN"); !s.ok()) return s;
  auto rollback = [&](absl::Status s) {
    db_.Run("ROLLBACK").IgnoreError();
    return s;
  };
  if (absl::Status s = LockPlan(); !s.ok()) return rollback(s);
  auto standing = Standing();
  if (!standing.ok()) return rollback(standing.status());
  if (standing->total == 0 || standing->done < standing->total || standing->recorded) {
    if (absl::Status s = db_.Run("COMMIT"); !s.ok()) return s;
    return false;
  }
  if (absl::Status s = db_.Run(
          "UPDATE pgshift_state SET detail = detail || '{\"recorded\":true}' WHERE table_name = "
          "$1 AND kind = $2",
          {table_, kind_});
      !s.ok()) {
    return rollback(s);
  }
  if (absl::Status s = StateStore(db_).Record(table_, event_kind, detail); !s.ok()) {
    return rollback(s);
  }
  if (absl::Status s = db_.Run("COMMIT"); !s.ok()) return s;
  return true;
}

absl::Status WorkRanges(RangeLedger& ledger, const std::atomic<bool>& stop, std::FILE* out,
                        std::string_view command, bool say_waiting,
                        const std::function<absl::Status(const WorkRange&)>& work) {
  bool said_waiting = false;
  while (!stop) {
    auto claimed = ledger.Claim();
    if (!claimed.ok()) return claimed.status();
    if (*claimed) {
      said_waiting = false;
      absl::Status worked = work(**claimed);
      if (TakenOver(worked)) {
        std::fprintf(out, "pgshift %.*s: %s\n", static_cast<int>(command.size()), command.data(),
                     std::string(MessageOf(worked)).c_str());
        continue;
      }
      absl::Status released = ledger.Release(**claimed);
      if (!worked.ok()) return worked;
      if (!released.ok()) return released;
      continue;
    }
    auto standing = ledger.Standing();
    if (!standing.ok()) return standing.status();
    if (standing->total == 0) {
      return absl::FailedPreconditionError(StrCat("the key ranges of ", ledger.table(),
                                                  " were removed meanwhile (by a --restart?)"));
    }
    if (standing->done == standing->total) return absl::OkStatus();
    if (!said_waiting && say_waiting) {
      std::fprintf(out,
                   "pgshift %.*s: %s: waiting for %lld ranges that other workers hold (the "
                   "first lease ends at %s; this one then takes it over)\n",
                   static_cast<int>(command.size()), command.data(), ledger.table().c_str(),
                   static_cast<long long>(standing->held), standing->next_expiry.c_str());
      std::fflush(out);
    }
    said_waiting = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return absl::CancelledError("stopped: another worker failed");
}

absl::Status RunWorkers(int64_t jobs,
                        const std::function<absl::Status(int, const std::atomic<bool>&)>& worker) {
  std::atomic<bool> stop = false;
  std::vector<absl::Status> results(static_cast<size_t>(jobs));
  std::vector<std::thread> threads;
  for (int i = 0; i < jobs; ++i) {
    threads.emplace_back([&, i] {
      absl::Status& result = results[static_cast<size_t>(i)];
      result = worker(i, stop);
      if (!result.ok()) stop = true;
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::Status& result : results) {
    if (!result.ok() && !absl::IsCancelled(result)) return result;
  }
  return absl::OkStatus();
}

}  // namespace pgshift::migration
