#include "protocol/messages/parameter_status.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<ParameterStatus> ParameterStatus::Decode(std::string_view payload) {
  MessageReader r(payload);
  ParameterStatus m;
  m.name = std::string(r.ReadCString());
  m.value = std::string(r.ReadCString());
  if (!r.done()) return r.Malformed("ParameterStatus");
  return m;
}

void ParameterStatus::Encode(std::string& out) const {
  MessageWriter(out, kType).CString(name).CString(value);
}

}  // namespace pgshift::protocol
