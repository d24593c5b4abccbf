#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// BackendKeyData ('K'): the process id and secret key a client cancels with.
struct BackendKeyData {
  static constexpr char kType = backend::kBackendKeyData;
  int32_t process_id = 0;
  int32_t secret_key = 0;
  static absl::StatusOr<BackendKeyData> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const BackendKeyData&) const = default;
};

}  // namespace pgshift::protocol
