#include "protocol/messages/data_row.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<DataRow> DataRow::Decode(std::string_view payload) {
  MessageReader r(payload);
  DataRow m;
  int16_t n = r.ReadInt16();
  for (int16_t i = 0; i < n && r.ok(); ++i) {
    auto v = r.ReadNullableBytes();
    m.values.push_back(v ? std::optional<std::string>(*v) : std::nullopt);
  }
  if (n < 0 || !r.done()) return r.Malformed("DataRow");
  return m;
}

void DataRow::Encode(std::string& out) const {
  MessageWriter w(out, kType);
  w.Int16(static_cast<int16_t>(values.size()));
  for (const auto& v : values) w.NullableBytes(v);
}

}  // namespace pgshift::protocol
