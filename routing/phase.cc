#include "routing/phase.h"

#include <array>
#include <utility>

namespace pgshift::routing {

namespace {

constexpr std::array<std::pair<Phase, std::string_view>, 5> kNames = {{
    {Phase::kOldOnly, "old-only"},
    {Phase::kDualWrite, "dual-write"},
    {Phase::kShadowRead, "shadow-read"},
    {Phase::kNewPrimary, "new-primary"},
    {Phase::kNewOnly, "new-only"},
}};

}  // namespace

std::string_view PhaseName(Phase phase) {
  for (const auto& [p, name] : kNames) {
    if (p == phase) return name;
  }
  return "unknown";
}

std::optional<Phase> PhaseFromName(std::string_view name) {
  for (const auto& [p, n] : kNames) {
    if (n == name) return p;
  }
  return std::nullopt;
}

}  // namespace pgshift::routing
