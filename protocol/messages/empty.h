// Messages that carry no payload: the type byte is the whole message.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/strings.h"
#include "protocol/message_type.h"
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
using Sync = EmptyMessage<frontend::kSync>;
using Flush = EmptyMessage<frontend::kFlush>;
using Terminate = EmptyMessage<frontend::kTerminate>;
using CopyDone = EmptyMessage<frontend::kCopyDone>;  // both directions
// Backend.
using ParseComplete = EmptyMessage<backend::kParseComplete>;
using BindComplete = EmptyMessage<backend::kBindComplete>;
using CloseComplete = EmptyMessage<backend::kCloseComplete>;
using NoData = EmptyMessage<backend::kNoData>;
using EmptyQueryResponse = EmptyMessage<backend::kEmptyQueryResponse>;
using PortalSuspended = EmptyMessage<backend::kPortalSuspended>;

}  // namespace pgshift::protocol
