#include "protocol/messages/copy.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<CopyData> CopyData::Decode(std::string_view payload) {
  return CopyData{std::string(payload)};
}

void CopyData::Encode(std::string& out) const { MessageWriter(out, kType).Bytes(data); }

absl::StatusOr<CopyFail> CopyFail::Decode(std::string_view payload) {
  MessageReader r(payload);
  CopyFail m;
  m.message = std::string(r.ReadCString());
  if (!r.done()) return r.Malformed("CopyFail");
  return m;
}

void CopyFail::Encode(std::string& out) const { MessageWriter(out, kType).CString(message); }

template <char Type>
absl::StatusOr<CopyResponse<Type>> CopyResponse<Type>::Decode(std::string_view payload) {
  MessageReader r(payload);
  CopyResponse m;
  m.format = static_cast<int8_t>(r.ReadByte());
  int16_t n = r.ReadInt16();
  for (int16_t i = 0; i < n && r.ok(); ++i) m.column_formats.push_back(r.ReadInt16());
  if (n < 0 || !r.done()) return r.Malformed("CopyResponse");
  return m;
}

template <char Type>
void CopyResponse<Type>::Encode(std::string& out) const {
  MessageWriter w(out, kType);
  w.Byte(static_cast<uint8_t>(format)).Int16(static_cast<int16_t>(column_formats.size()));
  for (int16_t f : column_formats) w.Int16(f);
}

template struct CopyResponse<backend::kCopyInResponse>;
template struct CopyResponse<backend::kCopyOutResponse>;
template struct CopyResponse<backend::kCopyBothResponse>;

}  // namespace pgshift::protocol
