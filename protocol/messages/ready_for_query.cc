#include "protocol/messages/ready_for_query.h"

#include "protocol/wire.h"

namespace pgshift::protocol {

absl::StatusOr<ReadyForQuery> ReadyForQuery::Decode(std::string_view payload) {
  MessageReader r(payload);
  ReadyForQuery m;
  m.status = static_cast<TransactionStatus>(r.ReadByte());
  if (!r.done() ||
      (m.status != TransactionStatus::kIdle && m.status != TransactionStatus::kInBlock &&
       m.status != TransactionStatus::kFailed)) {
    return r.Malformed("ReadyForQuery");
  }
  return m;
}

void ReadyForQuery::Encode(std::string& out) const {
  MessageWriter(out, kType).Byte(static_cast<uint8_t>(status));
}

}  // namespace pgshift::protocol
