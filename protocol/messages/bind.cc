#include "protocol/messages/bind.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

namespace {

bool ReadFormats(MessageReader& r, std::vector<int16_t>& formats) {
  int16_t n = r.ReadInt16();
  for (int16_t i = 0; i < n && r.ok(); ++i) formats.push_back(r.ReadInt16());
  return n >= 0;
}

void WriteFormats(MessageWriter& w, const std::vector<int16_t>& formats) {
  w.Int16(static_cast<int16_t>(formats.size()));
  for (int16_t f : formats) w.Int16(f);
}

}  // namespace

absl::StatusOr<Bind> Bind::Decode(std::string_view payload) {
  MessageReader r(payload);
  Bind m;
  m.portal = std::string(r.ReadCString());
  m.statement = std::string(r.ReadCString());
  bool counts_ok = ReadFormats(r, m.parameter_formats);
  int16_t n = r.ReadInt16();
  for (int16_t i = 0; i < n && r.ok(); ++i) {
    auto value = r.ReadNullableBytes();
    m.parameters.push_back(value ? std::optional<std::string>(*value) : std::nullopt);
  }
  counts_ok = counts_ok && n >= 0 && ReadFormats(r, m.result_formats);
  if (!counts_ok || !r.done()) return r.Malformed("Bind");
  return m;
}

void Bind::Encode(std::string& out) const {
  MessageWriter w(out, kType);
  w.CString(portal).CString(statement);
  WriteFormats(w, parameter_formats);
  w.Int16(static_cast<int16_t>(parameters.size()));
  for (const auto& p : parameters) w.NullableBytes(p);
  WriteFormats(w, result_formats);
}

}  // namespace pgshift::protocol
