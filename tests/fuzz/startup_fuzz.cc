// The startup phase: a packet's length check and its parse (StartupMessage,
// SSLRequest, GSSENCRequest, CancelRequest, or a refusal), on arbitrary
// bytes. Never a crash; a length the check accepts is never beyond the input
// nor beyond the limit.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protocol/frame.h"
#include "protocol/messages/startup.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto length = pgshift::protocol::CompleteStartupPacketSize(input);
  if (!length.ok() || *length == 0) return 0;
  if (*length > input.size() || *length > pgshift::protocol::kMaxStartupPacketSize) std::abort();
  auto packet = pgshift::protocol::ParseStartupPacket(input.substr(0, *length));
  if (auto* start =
          packet.ok() ? std::get_if<pgshift::protocol::StartupMessage>(&*packet) : nullptr) {
    (void)start->Get("user");
  }
  return 0;
}
