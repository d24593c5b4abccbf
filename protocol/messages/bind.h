#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// Bind ('B'): a portal from a prepared statement and parameter values.
struct Bind {
  static constexpr char kType = frontend::kBind;
  std::string portal;
  std::string statement;
  std::vector<int16_t> parameter_formats;  // 0 text, 1 binary
  std::vector<std::optional<std::string>> parameters;  // nullopt = NULL
  std::vector<int16_t> result_formats;
  static absl::StatusOr<Bind> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const Bind&) const = default;
};

}  // namespace pgshift::protocol
