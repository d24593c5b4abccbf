// Installing phases, from a reload or from the coordinator (SPEC section
// 9): the shadow evidence each phase change starts, joining the
// coordinator at start, and what the coordinator asks of the server.
#include "common/strings.h"
#include "proxy/flip.h"
#include "proxy/log.h"
#include "proxy/server.h"
#include "proxy/session.h"

namespace pgshift::proxy {

absl::flat_hash_map<std::string, ShadowEvidence> Server::ShadowEvidenceFor(
    const std::vector<PhaseChange>& changes) {
  absl::MutexLock lock(&install_mutex_);
  absl::flat_hash_map<std::string, ShadowEvidence> evidence;
  for (const PhaseChange& c : changes) {
    const routing::TableCounters& n = table_counters_.For(c.table);
    auto base = shadow_baseline_.find(c.table);
    ShadowEvidence e{n.shadow_compared.load(), n.shadow_persistent.load(), n.refused.load()};
    if (base != shadow_baseline_.end()) {
      e.compared -= base->second.compared;
      e.persistent -= base->second.persistent;
      e.refused -= base->second.refused;
    }
    evidence[c.table] = e;
  }
  return evidence;
}

void Server::NotePhaseChanges(const std::vector<PhaseChange>& changes) {
  for (const PhaseChange& c : changes) {
    // The evidence for the next guard rail counts from here.
    const routing::TableCounters& n = table_counters_.For(c.table);
    shadow_baseline_[c.table] = {n.shadow_compared.load(), n.shadow_persistent.load(),
                                 n.refused.load()};
    LogEvent(LogLevel::kInfo, "phase_changed",
             {{"table", c.table},
              {"from", routing::PhaseName(c.from)},
              {"to", routing::PhaseName(c.to)},
              {"forced", c.forced ? "true" : "false"}});
  }
}

void Server::Install(routing::ConfigPtr next, routing::Catalog catalog, MirrorReadiness mirroring) {
  SettingsPtr current = settings();
  std::vector<PhaseChange> changes = PhaseChanges(*current->config, *next);
  NotePhaseChanges(changes);
  SettingsPtr installed = MakeSettings(std::move(next), current->generation + 1, std::move(catalog),
                                       table_counters_, mirroring);
  {
    absl::MutexLock lock(&settings_mutex_);
    settings_ = installed;
  }
  std::vector<std::string> tables;
  for (const PhaseChange& c : changes) tables.push_back(c.table);
  gate_.PhasesChanged(tables, installed->generation);
  generation_.store(installed->generation, std::memory_order_release);
}

absl::StatusOr<routing::ConfigPtr> Server::JoinCoordinator(routing::ConfigPtr file) {
  CoordinatorHost& host = *this;
  coordinator_ = std::make_unique<Coordinator>(host, gate_, *backend_tls_, file);
  absl::MutexLock lock(&install_mutex_);
  file_config_ = file;
  absl::StatusOr<SharedPhases> joined = coordinator_->Join();
  if (absl::IsAlreadyExists(joined.status())) return joined.status();
  if (!joined.ok()) {
    LogEvent(LogLevel::kError, "coordinator_unreachable",
             {{"instance", coordinator_->instance_id()},
              {"reason", MessageOf(joined.status())},
              {"consequence", "no configured table is served until it can be reached"}});
    return file;
  }
  gate_.Synced();
  shared_phases_ = *joined;
  routing::ConfigPtr running = WithSharedPhases(*file, shared_phases_);
  // The file keeps a table with transforms at dual-write (routing/config.cc);
  // the fleet's phase must too.
  for (const routing::TableConfig& t : running->tables) {
    std::string why = routing::TransformsRefusePhase(t);
    if (!why.empty())
      return absl::FailedPreconditionError(StrCat("pgshift: the coordinator's ", why));
  }
  for (const PhaseChange& c : PhaseChanges(*file, *running)) {
    LogEvent(LogLevel::kWarning, "phase_file_differs",
             {{"table", c.table},
              {"file", routing::PhaseName(c.from)},
              {"coordinator", routing::PhaseName(c.to)},
              {"reason", "the coordinator's phases are followed"}});
  }
  LogEvent(LogLevel::kInfo, "coordinator_joined", {{"instance", coordinator_->instance_id()}});
  return running;
}

void Server::InstallSharedPhases(const SharedPhases& phases) {
  absl::MutexLock lock(&install_mutex_);
  if (!file_config_) return;
  shared_phases_ = phases;
  routing::ConfigPtr running = WithSharedPhases(*file_config_, shared_phases_);
  SettingsPtr current = settings();
  if (PhaseChanges(*current->config, *running).empty() &&
      current->config->unconfigured_migrating == running->unconfigured_migrating) {
    return;
  }
  Install(running, current->router->catalog(), current->mirroring);
  LogEvent(LogLevel::kInfo, "phases_installed",
           {{"generation", StrCat(generation_.load())}, {"from", "coordinator"}});
}

ShadowEvidence Server::LocalEvidence(const std::string& table) {
  PhaseChange c{table};
  return ShadowEvidenceFor({c})[table];
}

std::string Server::DescribeSession(uint64_t session) const {
  std::shared_ptr<Session> found;
  {
    absl::MutexLock lock(&sessions_mutex_);
    auto it = sessions_.find(session);
    if (it != sessions_.end()) found = it->second.lock();
  }
  if (!found) return StrCat("session ", session);
  ClientRow row = found->Describe();
  return StrCat("session ", session, " (client ", row.client, ", user ", row.user, ")");
}

absl::Status Server::SetPhase(std::string_view table, std::string_view phase) {
  if (!coordinator_) {
    return absl::FailedPreconditionError(
        "SET PHASE proposes a flip to coordinated instances, and [coordination] is not enabled: "
        "edit the table's phase in the file and RELOAD");
  }
  std::optional<routing::Phase> to = routing::PhaseFromName(phase);
  if (!to) return absl::InvalidArgumentError(StrCat("unknown phase \"", phase, "\""));
  auto next = WithTablePhase(*settings()->config, table, *to);
  if (!next.ok()) return next.status();
  return Apply(*next, /*from_file=*/false);
}

absl::StatusOr<FlipPlan> Server::ExplainPhase(std::string_view table, std::string_view phase) {
  std::optional<routing::Phase> to = routing::PhaseFromName(phase);
  if (!to) return absl::InvalidArgumentError(StrCat("unknown phase \"", phase, "\""));
  SettingsPtr current = settings();
  return PlanFlip(*current->config, table, *to,
                  {table_counters_.fingerprints().Rows(), "this instance's", std::nullopt, 0},
                  *backend_tls_);
}

}  // namespace pgshift::proxy
