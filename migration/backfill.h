// pgshift backfill: copies the old table's rows into the new one in key
// order, a batch per transaction, resumable from a checkpoint in
// pgshift_state (one per key range, migration/range_ledger.h, which
// several workers and commands share), and safe while pgshift mirrors
// writes:
//  - a row new already has is never overwritten (only keys new lacks are
//    inserted; a batch that meets a mirrored insert of one runs again with
//    ON CONFLICT DO NOTHING): it came from a mirrored write, so it is as
//    new as old's or newer;
//  - a row deleted meanwhile is never brought back: the batch's rows are
//    read FOR KEY SHARE, so none is deleted while copied; and once no
//    snapshot older than the batch remains (a delete with one would miss
//    the copy), the copies of rows gone from old are removed.
// Plain UPDATEs are not blocked (KEY SHARE allows them); their mirrored
// upsert wins over the copy whichever commits first.
#pragma once

#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "routing/config.h"

namespace pgshift::migration {

struct BackfillOptions {
  int64_t batch = 1000;  // rows in the first batch, and the fewest in one
  // The batch size adapts so that a batch (its rows locked) takes about
  // this long; 0 keeps every batch at `batch` rows.
  double batch_seconds = 0.5;
  double rate = 0;             // rows per second at most; 0: no limit
  // Pressure signal: pause while more sessions than this wait on locks in
  // the old database.
  int64_t max_lock_waits = 5;
  bool restart = false;  // forget the checkpoints and copy from the start
  // Workers in this process. The first command splits the table into key
  // ranges (four a worker when more than one); later commands, on this
  // machine or others, join that split and share its ranges.
  int64_t jobs = 1;
  // A range whose worker saves no batch for this long is taken over.
  int64_t lease_seconds = 60;
  bool progress_bar = false;   // a progress bar (a terminal) instead of a log line per batch
};

// Runs the backfill of `table`; progress goes to `out`.
absl::Status Backfill(const routing::Config& config, const std::string& table,
                      const BackfillOptions& options, std::FILE* out);

}  // namespace pgshift::migration
