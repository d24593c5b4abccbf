#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// Parse ('P'): prepare a statement ("" is the unnamed one).
struct Parse {
  static constexpr char kType = frontend::kParse;
  std::string statement;
  std::string sql;
  std::vector<int32_t> parameter_types;  // OIDs; 0 = unspecified
  static absl::StatusOr<Parse> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const Parse&) const = default;
};

}  // namespace pgshift::protocol
