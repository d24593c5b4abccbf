#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// ParameterDescription ('t'): the parameter type OIDs of a statement.
struct ParameterDescription {
  static constexpr char kType = backend::kParameterDescription;
  std::vector<int32_t> types;
  static absl::StatusOr<ParameterDescription> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const ParameterDescription&) const = default;
};

}  // namespace pgshift::protocol
