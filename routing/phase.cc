#include "routing/phase.h"

namespace pgshift::routing {

std::string_view PhaseName(Phase phase) {
  for (const auto& [name, p] : kPhaseNames) {
    if (p == phase) return name;
  }
  return "unknown";
}

std::optional<Phase> PhaseFromName(std::string_view name) {
  for (const auto& [n, p] : kPhaseNames) {
    if (n == name) return p;
  }
  return std::nullopt;
}

}  // namespace pgshift::routing
