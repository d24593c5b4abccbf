// The 'p' family a client sends during authentication. Which one a 'p'
// carries depends on what the server asked for, so each has its own codec.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

struct PasswordMessage {
  static constexpr char kType = frontend::kPassword;
  std::string password;  // cleartext or "md5..." hash
  static absl::StatusOr<PasswordMessage> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const PasswordMessage&) const = default;
};

struct SaslInitialResponse {
  static constexpr char kType = frontend::kPassword;
  std::string mechanism;
  std::optional<std::string> data;  // absent is encoded as length -1
  static absl::StatusOr<SaslInitialResponse> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const SaslInitialResponse&) const = default;
};

struct SaslResponse {
  static constexpr char kType = frontend::kPassword;
  std::string data;
  static absl::StatusOr<SaslResponse> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const SaslResponse&) const = default;
};

}  // namespace pgshift::protocol
