#include "protocol/messages/row_description.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<RowDescription> RowDescription::Decode(std::string_view payload) {
  MessageReader r(payload);
  RowDescription m;
  int16_t n = r.ReadInt16();
  for (int16_t i = 0; i < n && r.ok(); ++i) {
    Field f;
    f.name = std::string(r.ReadCString());
    f.table_oid = r.ReadInt32();
    f.column_number = r.ReadInt16();
    f.type_oid = r.ReadInt32();
    f.type_size = r.ReadInt16();
    f.type_modifier = r.ReadInt32();
    f.format = r.ReadInt16();
    m.fields.push_back(std::move(f));
  }
  if (n < 0 || !r.done()) return r.Malformed("RowDescription");
  return m;
}

void RowDescription::Encode(std::string& out) const {
  MessageWriter w(out, kType);
  w.Int16(static_cast<int16_t>(fields.size()));
  for (const Field& f : fields) {
    w.CString(f.name).Int32(f.table_oid).Int16(f.column_number).Int32(f.type_oid);
    w.Int16(f.type_size).Int32(f.type_modifier).Int16(f.format);
  }
}

}  // namespace pgshift::protocol
