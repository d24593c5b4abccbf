#include "protocol/messages/error_response.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

template <char Type>
absl::StatusOr<FieldMessage<Type>> FieldMessage<Type>::Decode(std::string_view payload) {
  MessageReader r(payload);
  FieldMessage m;
  while (r.ok()) {
    char code = static_cast<char>(r.ReadByte());
    if (!r.ok() || code == 0) break;
    m.fields.emplace_back(code, std::string(r.ReadCString()));
  }
  if (!r.done()) return r.Malformed(Type == 'E' ? "ErrorResponse" : "NoticeResponse");
  return m;
}

template <char Type>
void FieldMessage<Type>::Encode(std::string& out) const {
  MessageWriter w(out, kType);
  for (const auto& [code, value] : fields) w.Byte(static_cast<uint8_t>(code)).CString(value);
  w.Byte(0);
}

template struct FieldMessage<backend::kErrorResponse>;
template struct FieldMessage<backend::kNoticeResponse>;

}  // namespace pgshift::protocol
