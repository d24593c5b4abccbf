#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pgshift::protocol {

// ReadyForQuery ('Z'): the end of a query cycle, with the transaction state.
struct ReadyForQuery {
  static constexpr char kType = 'Z';
  static constexpr char kIdle = 'I';
  static constexpr char kInTransaction = 'T';
  static constexpr char kFailedTransaction = 'E';
  char status = kIdle;
  static absl::StatusOr<ReadyForQuery> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const ReadyForQuery&) const = default;
};

}  // namespace pgshift::protocol
