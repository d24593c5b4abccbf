// The backfill and verify commands' side of pgshift_state
// (routing/state_schema.h): checkpoints and the record of finished runs.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "migration/pg_client.h"

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

struct Checkpoint {
  std::vector<std::string> last_key;  // as text, in key order
  int64_t rows = 0;                   // rows read so far
  bool done = false;
  int64_t rate = 0;  // rows a second when it was saved, for pgshift status's ETA
  std::optional<PendingSweep> sweep;
};

class StateStore {
 public:
  explicit StateStore(PgClient& db) : db_(db) {}

  // Creates pgshift_state if it is missing.
  absl::Status Ensure();
  absl::StatusOr<std::optional<Checkpoint>> LoadCheckpoint(const std::string& table);
  // Meant to run inside the transaction that copied the batch.
  absl::Status SaveCheckpoint(const std::string& table, const Checkpoint& checkpoint);
  absl::Status ClearCheckpoint(const std::string& table);
  // Appends an event (kind "backfill", "verify", ...) with a JSON detail.
  absl::Status Record(const std::string& table, const std::string& kind, const std::string& json);

 private:
  PgClient& db_;
};

}  // namespace pgshift::migration
