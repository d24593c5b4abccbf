#include "protocol/messages/query.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<Query> Query::Decode(std::string_view payload) {
  MessageReader r(payload);
  Query m;
  m.sql = std::string(r.ReadCString());
  if (!r.done()) return r.Malformed("Query");
  return m;
}

void Query::Encode(std::string& out) const { MessageWriter(out, kType).CString(sql); }

}  // namespace pgshift::protocol
