// Backfill's work on one key range (migration/range_ledger.h): batch by
// batch from the range's checkpoint, with the safety properties backfill.h
// describes. backfill.cc hands ranges to its workers.
#pragma once

#include <atomic>
#include <cstdio>

#include "absl/status/status.h"
#include "migration/backfill_pace.h"
#include "migration/pg_client.h"
#include "migration/range_ledger.h"
#include "migration/state_store.h"
#include "migration/table_pair.h"

namespace pgshift::migration {

// What one worker copies with: its own connections, its ledger (holding
// its name), its pace, and the command's stop flag.
struct RangeWorker {
  std::FILE* out;
  PgClient& old_db;
  PgClient* new_db;  // null on one database
  const TablePair& pair;
  RangeLedger& ledger;
  BatchPace& pace;
  const std::atomic<bool>& stop;  // another worker failed: stop between batches
};

// Copies the claimed `range` to its end and marks it done. Fails with
// TakenOver (range_ledger.h) when another worker took the range over (its lease expired).
absl::Status CopyRange(const RangeWorker& worker, const WorkRange& range);
// Only finishes the sweep of a batch the last run stopped before (for
// --restart, which then forgets the range).
absl::Status SweepStoppedBatch(const RangeWorker& worker, const WorkRange& range);

}  // namespace pgshift::migration
