#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// ReadyForQuery ('Z'): the end of a query cycle, with the transaction state.
struct ReadyForQuery {
  static constexpr char kType = backend::kReadyForQuery;
  TransactionStatus status = TransactionStatus::kIdle;
  static absl::StatusOr<ReadyForQuery> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const ReadyForQuery&) const = default;
};

}  // namespace pgshift::protocol
