// The backfill and verify commands' side of pgshift_state
// (routing/state_schema.h): backfill's checkpoints, one per key range
// (migration/range_ledger.h), and the record of finished runs.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "migration/pg_client.h"
#include "migration/range_ledger.h"

namespace pgshift::migration {

// The sweep for rows deleted during a batch (backfill.cc), saved with the
// checkpoint that moves past the batch: a backfill stopped before the sweep
// ran it runs it first when it resumes.
struct PendingSweep {
  std::vector<std::string> after;  // the batch's keys: (after, Checkpoint::last_key]
  std::string old_xid;             // the batch's transaction on old
  std::string copy_xid;            // across servers, its transaction on new (xid8)
  int64_t read = 0;                // rows it read: taken back if it is copied again
};

// A backfill range's progress, saved with each batch in the range's row.
struct Checkpoint {
  std::vector<std::string> last_key;  // as text, in key order; empty: none read yet
  int64_t rows = 0;                   // rows read so far
  int64_t copied = 0;                 // of those, inserted into new
  bool done = false;
  int64_t rate = 0;  // rows a second when it was saved, for pgshift status's ETA
  std::optional<PendingSweep> sweep;
};

// The checkpoint as the JSON merged into its range's detail.
std::string CheckpointJson(const Checkpoint& checkpoint);

class StateStore {
 public:
  explicit StateStore(PgClient& db) : db_(db) {}

  // Creates pgshift_state if it is missing; an earlier pgshift's single
  // checkpoint of a table becomes a plan of one range.
  absl::Status Ensure();
  // Range `id`'s checkpoint (`ledger` on the same database).
  absl::StatusOr<Checkpoint> LoadCheckpoint(RangeLedger& ledger, int64_t id);
  // Appends an event (kind "backfill", "verify", ...) with a JSON detail.
  absl::Status Record(const std::string& table, const std::string& kind, const std::string& json);

 private:
  PgClient& db_;
};

}  // namespace pgshift::migration
