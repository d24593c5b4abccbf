#include "protocol/messages/describe.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

bool ReadTargetAndName(std::string_view payload, Target& target, std::string& name) {
  MessageReader r(payload);
  char t = static_cast<char>(r.ReadByte());
  name = std::string(r.ReadCString());
  target = static_cast<Target>(t);
  return r.done() && (t == 'S' || t == 'P');
}

absl::StatusOr<Describe> Describe::Decode(std::string_view payload) {
  Describe m;
  if (!ReadTargetAndName(payload, m.target, m.name)) {
    return MessageReader(payload).Malformed("Describe");
  }
  return m;
}

void Describe::Encode(std::string& out) const {
  MessageWriter(out, kType).Byte(static_cast<uint8_t>(target)).CString(name);
}

}  // namespace pgshift::protocol
