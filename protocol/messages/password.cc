#include "protocol/messages/password.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<PasswordMessage> PasswordMessage::Decode(std::string_view payload) {
  MessageReader r(payload);
  PasswordMessage m;
  m.password = std::string(r.ReadCString());
  if (!r.done()) return r.Malformed("password packet");
  return m;
}

void PasswordMessage::Encode(std::string& out) const { MessageWriter(out, kType).CString(password); }

absl::StatusOr<SaslInitialResponse> SaslInitialResponse::Decode(std::string_view payload) {
  MessageReader r(payload);
  SaslInitialResponse m;
  m.mechanism = std::string(r.ReadCString());
  if (auto data = r.ReadNullableBytes()) m.data = std::string(*data);
  if (!r.done()) return r.Malformed("SASLInitialResponse");
  return m;
}

void SaslInitialResponse::Encode(std::string& out) const {
  MessageWriter(out, kType).CString(mechanism).NullableBytes(data);
}

absl::StatusOr<SaslResponse> SaslResponse::Decode(std::string_view payload) {
  return SaslResponse{std::string(payload)};
}

void SaslResponse::Encode(std::string& out) const { MessageWriter(out, kType).Bytes(data); }

}  // namespace pgshift::protocol
