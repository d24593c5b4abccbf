#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"
#include "protocol/messages/describe.h"

namespace pgshift::protocol {

// Close ('C', frontend): drop a prepared statement or portal.
struct Close {
  static constexpr char kType = frontend::kClose;
  Target target = Target::kStatement;
  std::string name;
  static absl::StatusOr<Close> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const Close&) const = default;
};

}  // namespace pgshift::protocol
