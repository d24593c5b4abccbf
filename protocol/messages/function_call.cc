#include "protocol/messages/function_call.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<FunctionCall> FunctionCall::Decode(std::string_view payload) {
  MessageReader r(payload);
  FunctionCall m;
  m.function_oid = r.ReadInt32();
  int16_t nf = r.ReadInt16();
  for (int16_t i = 0; i < nf && r.ok(); ++i) m.argument_formats.push_back(r.ReadInt16());
  int16_t na = r.ReadInt16();
  for (int16_t i = 0; i < na && r.ok(); ++i) {
    auto v = r.ReadNullableBytes();
    m.arguments.push_back(v ? std::optional<std::string>(*v) : std::nullopt);
  }
  m.result_format = r.ReadInt16();
  if (nf < 0 || na < 0 || !r.done()) return r.Malformed("FunctionCall");
  return m;
}

void FunctionCall::Encode(std::string& out) const {
  MessageWriter w(out, kType);
  w.Int32(function_oid).Int16(static_cast<int16_t>(argument_formats.size()));
  for (int16_t f : argument_formats) w.Int16(f);
  w.Int16(static_cast<int16_t>(arguments.size()));
  for (const auto& a : arguments) w.NullableBytes(a);
  w.Int16(result_format);
}

absl::StatusOr<FunctionCallResponse> FunctionCallResponse::Decode(std::string_view payload) {
  MessageReader r(payload);
  FunctionCallResponse m;
  if (auto v = r.ReadNullableBytes()) m.result = std::string(*v);
  if (!r.done()) return r.Malformed("FunctionCallResponse");
  return m;
}

void FunctionCallResponse::Encode(std::string& out) const {
  MessageWriter(out, kType).NullableBytes(result);
}

}  // namespace pgshift::protocol
