#include "protocol/messages/parse.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<Parse> Parse::Decode(std::string_view payload) {
  MessageReader r(payload);
  Parse m;
  m.statement = std::string(r.ReadCString());
  m.sql = std::string(r.ReadCString());
  int16_t n = r.ReadInt16();
  for (int16_t i = 0; i < n && r.ok(); ++i) m.parameter_types.push_back(r.ReadInt32());
  if (n < 0 || !r.done()) return r.Malformed("Parse");
  return m;
}

void Parse::Encode(std::string& out) const {
  MessageWriter w(out, kType);
  w.CString(statement).CString(sql).Int16(static_cast<int16_t>(parameter_types.size()));
  for (int32_t oid : parameter_types) w.Int32(oid);
}

}  // namespace pgshift::protocol
