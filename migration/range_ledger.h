// The key ranges that backfill and verify workers share (--jobs, and
// commands run on several machines at once): a table's key space split
// into ranges, one pgshift_state row each (kind "backfill_range" or
// "verify_range"), which a worker claims with FOR UPDATE SKIP LOCKED and
// holds under a lease. Each save of its progress renews the lease and
// checks that the worker still holds the range, inside the transaction
// that did the work. A range whose worker's connection to the database
// has gone (the command was killed) is claimed again at once; one whose
// lease has expired (its machine vanished, or it is stuck), then.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "migration/pg_client.h"
#include "migration/table_pair.h"

namespace pgshift::migration {

struct WorkRange {
  int64_t id = 0;                  // its pgshift_state row
  int64_t number = 0;              // from 0, in key order
  int64_t count = 0;               // ranges in the plan
  std::vector<std::string> lower;  // exclusive, as text; empty: from the first key
  std::vector<std::string> upper;  // inclusive, as text; empty: to the last key

  std::string Name() const;  // "range 3 of 8"
};

// The table's ranges of one kind, as a whole.
struct RangeStanding {
  int64_t total = 0;
  int64_t done = 0;
  // Ranges not done that another worker holds, and the soonest their
  // leases expire (text, as the server gives it).
  int64_t held = 0;
  std::string next_expiry;
  bool recorded = false;  // the finished plan's event is recorded
};

class RangeLedger {
 public:
  // `kind`: "backfill_range" or "verify_range"; `holder` names this
  // worker (host, process, thread) wherever the range is shown.
  RangeLedger(PgClient& db, std::string table, std::string kind, std::string holder,
              int64_t lease_seconds)
      : db_(db),
        table_(std::move(table)),
        kind_(std::move(kind)),
        holder_(std::move(holder)),
        lease_seconds_(lease_seconds) {}

  // Splits old's key space into `count` ranges of about as many rows each
  // (bounds from a sample of old's keys), unless a plan is there: the
  // first command to come splits, the others join its plan. With
  // `replace_stale`, a finished plan, or one no worker holds a range of and
  // nobody has saved to within a lease, is replaced (verify: its results
  // are old). Returns the plan's number of ranges.
  absl::StatusOr<int64_t> Plan(const TablePair& pair, int64_t count, bool replace_stale);
  // The next range neither done nor held (a lapsed lease is not held), or
  // none.
  absl::StatusOr<std::optional<WorkRange>> Claim();
  // Merges `detail` (a JSON object) into the range's and renews the lease;
  // fails (TakenOver), naming the range and its holder, when this worker
  // (its name and its connection) no longer holds it. Run it inside the
  // transaction whose work it records, on the connection that claimed.
  absl::Status Save(const WorkRange& range, const std::string& detail);
  // Renews the lease alone, between pieces of long work, once a third of
  // it has passed since the last save.
  absl::Status RenewIfDue(const WorkRange& range);
  // Lets the range go (its work saved, or given up).
  absl::Status Release(const WorkRange& range);
  absl::StatusOr<RangeStanding> Standing();
  // Removes the plan; fails when another worker holds a range of it, its
  // lease expired or not (claim the free ranges first).
  absl::Status Clear();
  // Once every range is done, true for exactly one caller, which records
  // event `event_kind` with `detail` in the same transaction; false when
  // ranges remain or another recorded it.
  absl::StatusOr<bool> RecordOnce(const std::string& event_kind, const std::string& detail);
  // The JSON array at `path` ("{last_key}", "{sweep,after}") of the
  // range's detail, as text.
  absl::StatusOr<std::vector<std::string>> TextArray(int64_t id, const std::string& path);

  const std::string& table() const { return table_; }
  const std::string& kind() const { return kind_; }

 private:
  // Serialises planning and recording among the commands on the table.
  absl::Status LockPlan();
  absl::StatusOr<std::vector<std::vector<std::string>>> SampleBounds(const TablePair& pair,
                                                                     int64_t count);

  PgClient& db_;
  const std::string table_;
  const std::string kind_;
  const std::string holder_;
  const int64_t lease_seconds_;
  std::chrono::steady_clock::time_point renewed_;  // the last claim or save
};

// "host:pid:worker": one worker of this process.
std::string WorkerName(int worker);

// The range was taken over from this worker (RangeLedger::Save): its
// uncommitted work is undone, and it goes on with another range.
bool TakenOver(const absl::Status& status);

// One worker's loop: claims ranges and runs `work` on each until every
// range is done. A range another worker holds is waited for (`out` says
// so once, when `say_waiting`), and taken over once its lease expires.
// `work` failing with TakenOver means the range was taken over from it:
// the worker goes on with another. Stops early when `stop` is set.
absl::Status WorkRanges(RangeLedger& ledger, const std::atomic<bool>& stop, std::FILE* out,
                        std::string_view command, bool say_waiting,
                        const std::function<absl::Status(const WorkRange&)>& work);

// Runs `jobs` workers, each on its own thread: `worker(i, stop)`. The
// first to fail sets `stop` for the others; its error is the result.
absl::Status RunWorkers(int64_t jobs,
                        const std::function<absl::Status(int, const std::atomic<bool>&)>& worker);

}  // namespace pgshift::migration
