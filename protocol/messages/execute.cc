#include "protocol/messages/execute.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<Execute> Execute::Decode(std::string_view payload) {
  MessageReader r(payload);
  Execute m;
  m.portal = std::string(r.ReadCString());
  m.max_rows = r.ReadInt32();
  if (!r.done()) return r.Malformed("Execute");
  return m;
}

void Execute::Encode(std::string& out) const {
  MessageWriter(out, kType).CString(portal).Int32(max_rows);
}

}  // namespace pgshift::protocol
