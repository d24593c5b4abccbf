#include "protocol/messages/command_complete.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<CommandComplete> CommandComplete::Decode(std::string_view payload) {
  MessageReader r(payload);
  CommandComplete m;
  m.tag = std::string(r.ReadCString());
  if (!r.done()) return r.Malformed("CommandComplete");
  return m;
}

void CommandComplete::Encode(std::string& out) const { MessageWriter(out, kType).CString(tag); }

}  // namespace pgshift::protocol
