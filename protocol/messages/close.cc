#include "protocol/messages/close.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<Close> Close::Decode(std::string_view payload) {
  Close m;
  if (!ReadTargetAndName(payload, m.target, m.name)) {
    return MessageReader(payload).Malformed("Close");
  }
  return m;
}

void Close::Encode(std::string& out) const {
  MessageWriter(out, kType).Byte(static_cast<uint8_t>(target)).CString(name);
}

}  // namespace pgshift::protocol
