// The proxy's side of pgshift_state (routing/state_schema.h): the guard
// rails a reload must pass, the record of every applied phase change, and
// at start-up a report of where each table stands.
#pragma once

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "proxy/asio.h"
#include "routing/config.h"

namespace pgshift::proxy {

struct PhaseChange {
  std::string table;
  routing::Phase from = routing::Phase::kOldOnly;
  routing::Phase to = routing::Phase::kOldOnly;
  bool forced = false;
};

// The tables whose phase `next` changes from `running` (a table absent
// from a file is old-only).
std::vector<PhaseChange> PhaseChanges(const routing::Config& running, const routing::Config& next);

// Since a table entered its phase: shadow reads compared and persistently
// mismatched (in shadow-read, the evidence for the guard rail into
// new-primary), and statements on it refused.
struct ShadowEvidence {
  uint64_t compared = 0;
  uint64_t persistent = 0;
  uint64_t refused = 0;
};

// Guard rails for `changes` (SPEC section 6): a table may move forward into
// shadow-read only when a verify with zero differences was recorded after
// it entered dual-write; into new-primary only when at least
// min_shadow_compared shadow reads were compared since it entered
// shadow-read (`evidence`) and at most max_shadow_mismatch_rate of them
// mismatched. force = true overrides, and says so in the log. When they
// pass, the changes are recorded (with next's checksum) unless `record` is
// false (a coordinated flip records itself). Returns FailedPrecondition
// naming the table and the reason when a rail refuses.
absl::Status GuardAndRecord(const routing::Config& next, const std::vector<PhaseChange>& changes,
                            const absl::flat_hash_map<std::string, ShadowEvidence>& evidence,
                            asio::ssl::context& tls, bool record = true);

// One guard rail of a phase change, judged.
struct RailVerdict {
  enum State { kMet, kNotMet, kUnknown };
  std::string rail;  // what it asks, for people
  State state = kMet;
  std::string why;      // why it is not met (or not known); "" when met
  std::string numbers;  // what it judged, when it counts something
};

// Every guard rail of `change` under `next` (those GuardAndRecord applies),
// each judged, for `pgshift status` and SHOW STATUS. `evidence` null: the
// shadow evidence is not known here (kUnknown).
std::vector<RailVerdict> JudgeRails(
    const routing::Config& next, const PhaseChange& change,
    const absl::flat_hash_map<std::string, ShadowEvidence>* evidence, asio::ssl::context& tls);

// At start: compares each table's last recorded phase with the
// configuration, logs where each stands, and records the ones that differ.
void ReportAndRecordAtStart(const routing::Config& config, asio::ssl::context& tls);

// A recorded phase change (no checksum: a digest of a file holding
// passwords is not for a page).
struct PhaseRecord {
  std::string at, table, from, to;
  bool forced = false;
};
// The recorded phase changes, newest first (at most 200), without
// creating pgshift_state: for the status page.
absl::StatusOr<std::vector<PhaseRecord>> ReadPhaseHistory(const routing::Config& config,
                                                          asio::ssl::context& tls);

// The recorded events, newest first, for SHOW HISTORY: when, table, event,
// detail.
absl::StatusOr<std::vector<std::vector<std::string>>> ReadHistory(const routing::Config& config,
                                                                 asio::ssl::context& tls);

}  // namespace pgshift::proxy
