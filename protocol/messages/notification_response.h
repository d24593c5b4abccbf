#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// NotificationResponse ('A'): a NOTIFY, with the notifying backend's pid.
struct NotificationResponse {
  static constexpr char kType = backend::kNotificationResponse;
  int32_t process_id = 0;
  std::string channel;
  std::string payload;
  static absl::StatusOr<NotificationResponse> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const NotificationResponse&) const = default;
};

}  // namespace pgshift::protocol
