#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// What Describe and Close name: a prepared statement or a portal.
enum class Target : char { kStatement = 'S', kPortal = 'P' };

// Describe ('D', frontend).
struct Describe {
  static constexpr char kType = frontend::kDescribe;
  Target target = Target::kStatement;
  std::string name;
  static absl::StatusOr<Describe> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const Describe&) const = default;
};

// Reads the target byte and name shared by Describe and Close.
bool ReadTargetAndName(std::string_view payload, Target& target, std::string& name);

}  // namespace pgshift::protocol
