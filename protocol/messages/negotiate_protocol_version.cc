#include "protocol/messages/negotiate_protocol_version.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<NegotiateProtocolVersion> NegotiateProtocolVersion::Decode(
    std::string_view payload) {
  MessageReader r(payload);
  NegotiateProtocolVersion m;
  m.newest_minor_version = r.ReadInt32();
  int32_t n = r.ReadInt32();
  for (int32_t i = 0; i < n && r.ok(); ++i) m.unrecognized_options.emplace_back(r.ReadCString());
  if (n < 0 || !r.done()) return r.Malformed("NegotiateProtocolVersion");
  return m;
}

void NegotiateProtocolVersion::Encode(std::string& out) const {
  MessageWriter w(out, kType);
  w.Int32(newest_minor_version).Int32(static_cast<int32_t>(unrecognized_options.size()));
  for (const auto& o : unrecognized_options) w.CString(o);
}

}  // namespace pgshift::protocol
