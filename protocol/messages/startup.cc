#include "protocol/messages/startup.h"

#include "common/strings.h"
#include "protocol/wire.h"

namespace pgshift::protocol {

namespace {

absl::Status ExpectCodeOnly(MessageReader& r, int32_t code, std::string_view name) {
  if (r.ReadInt32() != code || !r.done()) return r.Malformed(name);
  return absl::OkStatus();
}

void EncodeCode(std::string& out, int32_t code) { MessageWriter(out, 0).Int32(code); }

}  // namespace

std::string_view StartupMessage::Get(std::string_view name) const {
  for (const auto& [k, v] : parameters) {
    if (k == name) return v;
  }
  return {};
}

void StartupMessage::Set(std::string_view name, std::string_view value) {
  for (auto& [k, v] : parameters) {
    if (k == name) {
      v = std::string(value);
      return;
    }
  }
  parameters.emplace_back(std::string(name), std::string(value));
}

absl::StatusOr<StartupMessage> StartupMessage::Decode(std::string_view payload) {
  MessageReader r(payload);
  StartupMessage m;
  m.protocol_version = r.ReadInt32();
  // Name/value pairs, closed by an empty name.
  while (r.ok()) {
    std::string_view name = r.ReadCString();
    if (!r.ok() || name.empty()) break;
    std::string_view value = r.ReadCString();
    m.parameters.emplace_back(std::string(name), std::string(value));
  }
  if (!r.done()) return r.Malformed("startup packet");
  return m;
}

void StartupMessage::Encode(std::string& out) const {
  MessageWriter w(out, 0);
  w.Int32(protocol_version);
  for (const auto& [k, v] : parameters) w.CString(k).CString(v);
  w.Byte(0);
}

absl::StatusOr<SslRequest> SslRequest::Decode(std::string_view payload) {
  MessageReader r(payload);
  if (auto s = ExpectCodeOnly(r, kSslRequestCode, "SSLRequest"); !s.ok()) return s;
  return SslRequest{};
}
void SslRequest::Encode(std::string& out) const { EncodeCode(out, kSslRequestCode); }

absl::StatusOr<GssEncRequest> GssEncRequest::Decode(std::string_view payload) {
  MessageReader r(payload);
  if (auto s = ExpectCodeOnly(r, kGssEncRequestCode, "GSSENCRequest"); !s.ok()) return s;
  return GssEncRequest{};
}
void GssEncRequest::Encode(std::string& out) const { EncodeCode(out, kGssEncRequestCode); }

absl::StatusOr<CancelRequest> CancelRequest::Decode(std::string_view payload) {
  MessageReader r(payload);
  CancelRequest m;
  if (r.ReadInt32() != kCancelRequestCode) return r.Malformed("CancelRequest");
  m.process_id = r.ReadInt32();
  m.secret_key = r.ReadInt32();
  if (!r.done()) return r.Malformed("CancelRequest");
  return m;
}

void CancelRequest::Encode(std::string& out) const {
  MessageWriter(out, 0).Int32(kCancelRequestCode).Int32(process_id).Int32(secret_key);
}

absl::StatusOr<StartupPacket> ParseStartupPacket(std::string_view packet) {
  if (packet.size() < 8) return absl::InvalidArgumentError("invalid length of startup packet");
  std::string_view payload = packet.substr(4);
  int32_t code = ReadBigEndian32(payload.data());
  switch (code) {
    case kSslRequestCode: return SslRequest::Decode(payload);
    case kGssEncRequestCode: return GssEncRequest::Decode(payload);
    case kCancelRequestCode: return CancelRequest::Decode(payload);
    default:
      break;
  }
  if ((code >> 16) != 3) {
    return absl::FailedPreconditionError(StrCat(
        "unsupported frontend protocol ", code >> 16, ".", code & 0xffff,
        ": server supports 3.0 to 3.0"));
  }
  return StartupMessage::Decode(payload);
}

}  // namespace pgshift::protocol
