#include "protocol/messages/notification_response.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<NotificationResponse> NotificationResponse::Decode(std::string_view payload) {
  MessageReader r(payload);
  NotificationResponse m;
  m.process_id = r.ReadInt32();
  m.channel = std::string(r.ReadCString());
  m.payload = std::string(r.ReadCString());
  if (!r.done()) return r.Malformed("NotificationResponse");
  return m;
}

void NotificationResponse::Encode(std::string& out) const {
  MessageWriter(out, kType).Int32(process_id).CString(channel).CString(payload);
}

}  // namespace pgshift::protocol
