#include "protocol/messages/authentication.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

Authentication Authentication::Md5Password(std::string salt) {
  Authentication a;
  a.code = kMd5Password;
  a.salt = std::move(salt);
  return a;
}

Authentication Authentication::Sasl(std::vector<std::string> mechanisms) {
  Authentication a;
  a.code = kSasl;
  a.mechanisms = std::move(mechanisms);
  return a;
}

Authentication Authentication::SaslContinue(std::string data) {
  Authentication a;
  a.code = kSaslContinue;
  a.data = std::move(data);
  return a;
}

Authentication Authentication::SaslFinal(std::string data) {
  Authentication a;
  a.code = kSaslFinal;
  a.data = std::move(data);
  return a;
}

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
