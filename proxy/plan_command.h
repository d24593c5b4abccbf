// `pgshift plan`: the dry-run of a flip from the command line, on the
// statements the application really sent (routing/dry_run.h plans them).
// With coordination the shapes are every instance's, flushed to
// pgshift_fingerprints; without, the running instance's, read from its
// admin console (SHOW QUERIES). The target phase's catalog is read from
// the servers, as a reload into it would.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proxy/asio.h"
#include "proxy/coordinator.h"
#include "routing/config.h"
#include "routing/dry_run.h"
#include "routing/query_fingerprints.h"

namespace pgshift::proxy {

struct RecordedShapes {
  std::vector<routing::QueryFingerprints::Row> rows;
  std::string source;  // where they were read, for the report
  // The running instance's phases (SHOW TABLES), read with its shapes:
  // they, not the file's, are what a flip starts from.
  std::optional<SharedPhases> phases;
  size_t left_out = 0;  // shapes KeepSeenSince left out
};

// The statement shapes recorded by the fleet (coordination on) or by the
// instance `file` describes (its admin_listen, as its first admin user,
// with PGPASSWORD when set, else the user's password in the file).
absl::StatusOr<RecordedShapes> ReadRecordedShapes(const routing::Config& file,
                                                  asio::ssl::context& tls);

// Leaves out the shapes last seen before `now - since` (plan --since: a
// statement the application stopped sending need not hold a flip), counts
// them in `left_out` and says so in `source`. A shape with no time of its
// own is kept.
void KeepSeenSince(RecordedShapes& shapes, absl::Duration since, absl::Time now);

struct FlipPlan {
  std::string table;  // as configured
  routing::Phase from = routing::Phase::kOldOnly;
  routing::Phase to = routing::Phase::kOldOnly;
  std::string source;
  // Why the flip itself would be refused (its phase step, or the target's
  // catalog: the new table missing or unreachable); then no statement is
  // planned. Its guard rails are `pgshift status`'s.
  std::string flip_refused;
  std::vector<routing::DryRunRow> rows;  // refused first
  size_t left_out = 0;                   // shapes older than plan --since

  size_t refused() const;
  // Nothing the application sends would be refused, nor the flip itself.
  bool clean() const { return flip_refused.empty() && refused() == 0; }
};

// Plans `shapes` under `running` with `table` moved to `to`.
absl::StatusOr<FlipPlan> PlanFlip(const routing::Config& running, std::string_view table,
                                  routing::Phase to, RecordedShapes shapes,
                                  asio::ssl::context& tls);

// For a terminal: a block per statement shape, refused first.
std::string PlanText(const FlipPlan& plan);
// For scripts.
std::string PlanJson(const FlipPlan& plan);

}  // namespace pgshift::proxy
