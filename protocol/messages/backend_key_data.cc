#include "protocol/messages/backend_key_data.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<BackendKeyData> BackendKeyData::Decode(std::string_view payload) {
  MessageReader r(payload);
  BackendKeyData m;
  m.process_id = r.ReadInt32();
  m.secret_key = r.ReadInt32();
  if (!r.done()) return r.Malformed("BackendKeyData");
  return m;
}

void BackendKeyData::Encode(std::string& out) const {
  MessageWriter(out, kType).Int32(process_id).Int32(secret_key);
}

}  // namespace pgshift::protocol
