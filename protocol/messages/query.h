#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// Query ('Q'): a simple-protocol query string, possibly several statements.
struct Query {
  static constexpr char kType = frontend::kQuery;
  std::string sql;
  static absl::StatusOr<Query> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const Query&) const = default;
};

}  // namespace pgshift::protocol
