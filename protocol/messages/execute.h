#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// Execute ('E', frontend): run a portal, up to max_rows (0 = all).
struct Execute {
  static constexpr char kType = frontend::kExecute;
  std::string portal;
  int32_t max_rows = 0;
  static absl::StatusOr<Execute> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const Execute&) const = default;
};

}  // namespace pgshift::protocol
