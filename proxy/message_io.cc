#include "proxy/message_io.h"

namespace pgshift::proxy {

namespace {

template <typename SizeFn>
awaitable<absl::StatusOr<std::string>> ReadFramed(Stream& stream, PacketBuffer& buffer,
                                                  error_code& ec, SizeFn complete_size) {
  while (true) {
    absl::StatusOr<size_t> size = complete_size(buffer.data());
    if (!size.ok()) co_return size.status();
    if (*size > 0) {
      std::string message(buffer.data().substr(0, *size));
      buffer.Consume(*size);
      co_return message;
    }
    size_t n = co_await stream.ReadSome(buffer.PrepareRead(), ec);
    if (ec) co_return std::string();
    buffer.Commit(n);
  }
}

}  // namespace

awaitable<absl::StatusOr<std::string>> ReadWholeMessage(Stream& stream, PacketBuffer& buffer,
                                                        const protocol::TypeSet& allowed,
                                                        error_code& ec, size_t max_message_size) {
  return ReadFramed(stream, buffer, ec, [&allowed, max_message_size](std::string_view data) {
    return protocol::CompleteMessageSize(data, allowed, max_message_size);
  });
}

awaitable<absl::StatusOr<std::string>> ReadStartupPacket(Stream& stream, PacketBuffer& buffer,
                                                         error_code& ec) {
  return ReadFramed(stream, buffer, ec, protocol::CompleteStartupPacketSize);
}

}  // namespace pgshift::proxy
