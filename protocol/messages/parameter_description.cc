#include "protocol/messages/parameter_description.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<ParameterDescription> ParameterDescription::Decode(std::string_view payload) {
  MessageReader r(payload);
  ParameterDescription m;
  int16_t n = r.ReadInt16();
  for (int16_t i = 0; i < n && r.ok(); ++i) m.types.push_back(r.ReadInt32());
  if (n < 0 || !r.done()) return r.Malformed("ParameterDescription");
  return m;
}

void ParameterDescription::Encode(std::string& out) const {
  MessageWriter w(out, kType);
  w.Int16(static_cast<int16_t>(types.size()));
  for (int32_t oid : types) w.Int32(oid);
}

}  // namespace pgshift::protocol
