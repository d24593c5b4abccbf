#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// CommandComplete ('C', backend): the command tag, e.g. "INSERT 0 3".
struct CommandComplete {
  static constexpr char kType = backend::kCommandComplete;
  std::string tag;
  static absl::StatusOr<CommandComplete> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const CommandComplete&) const = default;
};

}  // namespace pgshift::protocol
