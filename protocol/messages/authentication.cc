#include "protocol/messages/authentication.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<Authentication> Authentication::Decode(std::string_view payload) {
  MessageReader r(payload);
  Authentication m;
  m.code = r.ReadInt32();
  switch (m.code) {
    case kMd5Password:
      m.salt = std::string(r.ReadBytes(4));
      break;
    case kSasl:
      while (r.ok()) {
        std::string_view mech = r.ReadCString();
        if (!r.ok() || mech.empty()) break;
        m.mechanisms.emplace_back(mech);
      }
      break;
    default:
      m.data = std::string(r.ReadRest());
      break;
  }
  if (!r.done()) return r.Malformed("Authentication");
  return m;
}

void Authentication::Encode(std::string& out) const {
  MessageWriter w(out, kType);
  w.Int32(code);
  switch (code) {
    case kMd5Password:
      w.Bytes(salt);
      break;
    case kSasl:
      for (const auto& mech : mechanisms) w.CString(mech);
      w.Byte(0);
      break;
    default:
      w.Bytes(data);
      break;
  }
}

}  // namespace pgshift::protocol
