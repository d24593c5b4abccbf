// Authentication ('R'): one message type, told apart by its Int32 code.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

struct Authentication {
  static constexpr char kType = backend::kAuthentication;
  enum Code : int32_t {
    kOk = 0,
    kKerberosV5 = 2,
    kCleartextPassword = 3,
    kMd5Password = 5,
    kGss = 7,
    kGssContinue = 8,
    kSspi = 9,
    kSasl = 10,
    kSaslContinue = 11,
    kSaslFinal = 12,
  };

  int32_t code = kOk;
  std::string salt;                     // kMd5Password: 4 bytes
  std::vector<std::string> mechanisms;  // kSasl
  std::string data;                     // kSaslContinue, kSaslFinal, GSS

  static Authentication Md5Password(std::string salt);
  static Authentication Sasl(std::vector<std::string> mechanisms);
  static Authentication SaslContinue(std::string data);
  static Authentication SaslFinal(std::string data);

  static absl::StatusOr<Authentication> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const Authentication&) const = default;
};

}  // namespace pgshift::protocol
