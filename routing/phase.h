// Migration phases (SPEC section 2), in their order.
#pragma once

#include <optional>
#include <string_view>

namespace pgshift::routing {

enum class Phase { kOldOnly, kDualWrite, kShadowRead, kNewPrimary, kNewOnly };

std::string_view PhaseName(Phase phase);
std::optional<Phase> PhaseFromName(std::string_view name);

}  // namespace pgshift::routing
