// Changing a phase with coordination on (SPEC section 9): the proposer's
// side of a fenced flip (coordinator.h says how one goes), the fleet's
// evidence for the guard rails, and `pgshift phase`.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "proxy/asio.h"
#include "proxy/coordinator.h"
#include "proxy/migration_state.h"
#include "routing/config.h"

namespace pgshift::proxy {

// `file` with the fleet's phases in place of its own.
// Tables the fleet has past old-only that `file` lacks are listed in
// Config::unconfigured_migrating.
routing::ConfigPtr WithSharedPhases(const routing::Config& file, const SharedPhases& phases);

// With coordination, a reloaded file's proposals: `file` with the fleet's
// phases wherever its phase is what `previous` (the file last accepted)
// said.
routing::ConfigPtr ProposedPhases(const routing::Config& file, const routing::Config& previous,
                                  const SharedPhases& phases);

// `running` with `table` (as configured, or unqualified) moved to `to`
// (NotFound when it is not configured).
absl::StatusOr<routing::ConfigPtr> WithTablePhase(const routing::Config& running,
                                                  std::string_view table, routing::Phase to);

// The configuration a flip of `table` to `to` would run, for its dry-run:
// FailedPrecondition ("the flip itself would be refused: ...") when the
// phase-step rules refuse it.
absl::StatusOr<routing::ConfigPtr> TargetOfFlip(const routing::Config& running,
                                                std::string_view table, routing::Phase to);

// Proposes `changes` (from the fleet's phases) as one fenced flip on
// behalf of `proposer`, and waits for its outcome: Ok once committed;
// FailedPrecondition naming the instance that held it when it was aborted,
// or why it could not be proposed. `next` carries the proposed phases (its
// checksum is recorded) and the coordination settings.
absl::Status ProposeFlip(const routing::Config& next, const std::vector<PhaseChange>& changes,
                         const std::string& proposer, asio::ssl::context& tls);

// The guard rails' evidence for `changes`' tables, summed over every
// instance's flushes since each table entered the phase it is in.
absl::StatusOr<absl::flat_hash_map<std::string, ShadowEvidence>> FleetEvidence(
    const routing::Config& config, const std::vector<PhaseChange>& changes,
    asio::ssl::context& tls);

// `pgshift phase`: moves `table` to `to` through the coordinator, as a
// reload of an instance would (phase steps, guard rails with the fleet's
// evidence, a fenced flip), without an instance of its own.
absl::Status ChangePhase(const routing::Config& file, const std::string& table, routing::Phase to,
                         asio::ssl::context& tls);

}  // namespace pgshift::proxy
