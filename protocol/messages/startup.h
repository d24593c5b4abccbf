// Startup-phase packets: no type byte, told apart by their version code.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace pgshift::protocol {

inline constexpr int32_t kProtocolVersion3 = 196608;  // 3.0
inline constexpr int32_t kCancelRequestCode = 80877102;
inline constexpr int32_t kSslRequestCode = 80877103;
inline constexpr int32_t kGssEncRequestCode = 80877104;

struct StartupMessage {
  int32_t protocol_version = kProtocolVersion3;
  std::vector<std::pair<std::string, std::string>> parameters;

  // The value of `name`, or "" when absent.
  std::string_view Get(std::string_view name) const;
  void Set(std::string_view name, std::string_view value);

  static absl::StatusOr<StartupMessage> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const StartupMessage&) const = default;
};

struct SslRequest {
  static absl::StatusOr<SslRequest> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const SslRequest&) const = default;
};

struct GssEncRequest {
  static absl::StatusOr<GssEncRequest> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const GssEncRequest&) const = default;
};

struct CancelRequest {
  int32_t process_id = 0;
  int32_t secret_key = 0;
  static absl::StatusOr<CancelRequest> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const CancelRequest&) const = default;
};

using StartupPacket = std::variant<StartupMessage, SslRequest, GssEncRequest, CancelRequest>;

// `packet` is a whole startup-phase packet, length word included.
absl::StatusOr<StartupPacket> ParseStartupPacket(std::string_view packet);

}  // namespace pgshift::protocol
