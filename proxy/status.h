// `pgshift status` and the admin console's SHOW STATUS: where each table
// stands (phase and since when, backfill, last verify, shadow reads) and
// its next step (each guard rail judged, and the command that moves it on),
// the way Vitess's `Workflow show` gives its hints.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "proxy/asio.h"
#include "proxy/migration_state.h"
#include "routing/config.h"

namespace pgshift::proxy {

struct BackfillProgress {
  int64_t rows = 0;
  bool done = false;
  std::string last_key;     // the checkpoint's key, as JSON
  std::string largest_key;  // old's largest key now, as text
  int64_t estimate = 0;     // old's rows by its statistics
  int64_t rate = 0;         // rows a second when the checkpoints were saved
  std::string saved_at;
  int64_t ranges = 0, ranges_done = 0;  // the key ranges workers share
};

struct VerifyResult {
  std::string at;
  int64_t rows = 0, missing = 0, extra = 0, different = 0;
  bool repaired = false;
};

struct TableStatus {
  std::string table;
  routing::Phase phase = routing::Phase::kOldOnly;
  std::string since;  // when pgshift_state last recorded it entering its phase
  std::optional<BackfillProgress> backfill;
  std::optional<VerifyResult> verify;
  std::optional<ShadowEvidence> shadow;  // since it entered its phase; unknown here when absent
  std::optional<routing::Phase> next;    // none after new-only
  std::vector<RailVerdict> rails;        // of the step into `next`
  std::string command;                   // what to run next
};

// How an operator moves a table on: through the coordinator, or by
// editing `config_path` and reloading.
struct StatusContext {
  std::string config_path;
  // Per table, shadow compared and persistent since it entered its phase
  // (across the fleet with coordination); null when not known here.
  const absl::flat_hash_map<std::string, ShadowEvidence>* evidence = nullptr;
};

// Reads every configured table's status (`config` with the phases in
// force) from old's pgshift_state and catalogs; judges the next step's
// guard rails as a reload or `pgshift phase` would.
absl::StatusOr<std::vector<TableStatus>> ReadStatus(const routing::Config& config,
                                                    const StatusContext& context,
                                                    asio::ssl::context& tls);

// For a terminal: a block per table.
std::string StatusText(const std::vector<TableStatus>& tables);
// For scripts: {"tables":[...]}.
std::string StatusJson(const std::vector<TableStatus>& tables);
// Its [...] alone.
std::string StatusTablesJson(const std::vector<TableStatus>& tables);
// SHOW STATUS's columns, and one row per table.
std::vector<std::string> StatusColumns();
std::vector<std::vector<std::string>> StatusRows(const std::vector<TableStatus>& tables);

}  // namespace pgshift::proxy
