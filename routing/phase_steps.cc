// The phase step rules of SPEC section 2 (CheckPhaseSteps, config.h).
#include <string>
#include <vector>

#include "common/strings.h"
#include "routing/config.h"

namespace pgshift::routing {

namespace {

const TableConfig* FindTable(const Config& c, const std::string& name) {
  for (const TableConfig& t : c.tables) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

// Why a step of one table from `before` is refused, or "" when it is
// allowed.
std::string RefusedStep(const std::string& table, const TableConfig* from, Phase before,
                        const TableConfig* to) {
  Phase after = to ? to->phase : Phase::kOldOnly;
  std::string step = StrCat("table \"", table, "\": ", PhaseName(before), " -> ", PhaseName(after),
                            to ? "" : " (removed from the file)");
  if (before == Phase::kNewOnly && after != Phase::kNewOnly) {
    return StrCat(step, " leaves new-only, and old is stale by then");
  }
  if (static_cast<int>(after) > static_cast<int>(before) + 1) {
    return StrCat(step, " skips ", PhaseName(static_cast<Phase>(static_cast<int>(before) + 1)));
  }
  if (from && to && before != Phase::kOldOnly && after != Phase::kOldOnly) {
    if (from->new_name != to->new_name) {
      return StrCat(step, " changes new_name from ", from->new_name, " to ", to->new_name,
                    " while the table is migrating");
    }
    if (from->key != to->key) return StrCat(step, " changes key while the table is migrating");
  }
  return "";
}

}  // namespace

absl::Status CheckPhaseSteps(const Config& running, const Config& next) {
  std::vector<std::string> refusals;
  auto check = [&](const std::string& name, const TableConfig* from, const TableConfig* to) {
    std::string why = RefusedStep(name, from, running.PhaseOf(name), to);
    if (!why.empty() && !(to && to->force)) {
      refusals.push_back(StrCat(why, "; set force = true on the table to allow it"));
    }
  };
  for (const TableConfig& t : next.tables) check(t.name, FindTable(running, t.name), &t);
  for (const TableConfig& t : running.tables) {
    if (FindTable(next, t.name) == nullptr) check(t.name, &t, nullptr);
  }
  // As the file is refused (ReadTable), so is a step by SET PHASE; force
  // does not help, the reads it needs are not built.
  for (const TableConfig& t : next.tables) {
    if (std::string why = TransformsRefusePhase(t); !why.empty()) refusals.push_back(why);
  }
  if (refusals.empty()) return absl::OkStatus();
  std::string message;
  for (const std::string& r : refusals) message += message.empty() ? r : "\n" + r;
  return absl::FailedPreconditionError(message);
}

}  // namespace pgshift::routing
