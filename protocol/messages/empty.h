// Messages that carry no payload: the type byte is the whole message.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/strings.h"
#include "protocol/wire.h"

namespace pgshift::protocol {

template <char Type>
struct EmptyMessage {
  static constexpr char kType = Type;
  static absl::StatusOr<EmptyMessage> Decode(std::string_view payload) {
    if (!payload.empty()) {
      return absl::InvalidArgumentError(
          StrCat("unexpected payload in message type '", std::string(1, Type), "'"));
    }
    return EmptyMessage{};
  }
  void Encode(std::string& out) const { MessageWriter(out, kType); }
  bool operator==(const EmptyMessage&) const = default;
};

// Frontend.
using Sync = EmptyMessage<'S'>;
using Flush = EmptyMessage<'H'>;
using Terminate = EmptyMessage<'X'>;
using CopyDone = EmptyMessage<'c'>;  // both directions
// Backend.
using ParseComplete = EmptyMessage<'1'>;
using BindComplete = EmptyMessage<'2'>;
using CloseComplete = EmptyMessage<'3'>;
using NoData = EmptyMessage<'n'>;
using EmptyQueryResponse = EmptyMessage<'I'>;
using PortalSuspended = EmptyMessage<'s'>;

}  // namespace pgshift::protocol
