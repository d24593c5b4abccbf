// Migration phases (SPEC section 2), in their order.
#pragma once

#include <array>
#include <optional>
#include <string_view>
#include <utility>

namespace pgshift::routing {

enum class Phase { kOldOnly, kDualWrite, kShadowRead, kNewPrimary, kNewOnly };

// Every phase with its configuration name, in phase order.
inline constexpr std::array<std::pair<std::string_view, Phase>, 5> kPhaseNames = {{
    {"old-only", Phase::kOldOnly},
    {"dual-write", Phase::kDualWrite},
    {"shadow-read", Phase::kShadowRead},
    {"new-primary", Phase::kNewPrimary},
    {"new-only", Phase::kNewOnly},
}};

std::string_view PhaseName(Phase phase);
std::optional<Phase> PhaseFromName(std::string_view name);

// Whether new is the authoritative side in `phase` (SPEC section 2): reads
// are served from it and writes decided there.
inline bool ReadsFromNew(Phase phase) {
  return phase == Phase::kNewPrimary || phase == Phase::kNewOnly;
}

// Whether writes to the table are mirrored to the other side in `phase`.
inline bool MirrorsWrites(Phase phase) {
  return phase == Phase::kDualWrite || phase == Phase::kShadowRead || phase == Phase::kNewPrimary;
}

}  // namespace pgshift::routing
