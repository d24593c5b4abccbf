#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// ParameterStatus ('S', backend): a run-time parameter's current value.
struct ParameterStatus {
  static constexpr char kType = backend::kParameterStatus;
  std::string name;
  std::string value;
  static absl::StatusOr<ParameterStatus> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const ParameterStatus&) const = default;
};

}  // namespace pgshift::protocol
