// Reading whole messages where each must be seen complete: startup and
// authentication, and pgshift's own queries. (The relay streams instead.)
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "protocol/frame.h"
#include "proxy/asio.h"
#include "proxy/packet_buffer.h"
#include "proxy/stream.h"

namespace pgshift::proxy {

// Limit for one message during startup and authentication.
inline constexpr size_t kMaxAuthMessageSize = 64 * 1024;

// One whole message (header included). A transport error comes back in `ec`
// with an empty result; a bad header as an error status.
awaitable<absl::StatusOr<std::string>> ReadWholeMessage(
    Stream& stream, PacketBuffer& buffer, const protocol::TypeSet& allowed, error_code& ec,
    size_t max_message_size = kMaxAuthMessageSize);

// One startup-phase packet (no type byte), length word included.
awaitable<absl::StatusOr<std::string>> ReadStartupPacket(Stream& stream, PacketBuffer& buffer,
                                                         error_code& ec);

}  // namespace pgshift::proxy
