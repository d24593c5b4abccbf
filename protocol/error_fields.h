// The field list shared by ErrorResponse and NoticeResponse, and the errors
// pgshift itself raises.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgshift::protocol {

// Field codes (PostgreSQL "Error and Notice Message Fields").
namespace field {
inline constexpr char kSeverity = 'S';
inline constexpr char kSeverityNonLocalized = 'V';
inline constexpr char kSqlState = 'C';
inline constexpr char kMessage = 'M';
inline constexpr char kDetail = 'D';
inline constexpr char kHint = 'H';
inline constexpr char kPosition = 'P';
}  // namespace field

// SQLSTATEs pgshift raises itself.
namespace sqlstate {
inline constexpr std::string_view kProtocolViolation = "08P01";
inline constexpr std::string_view kConnectionFailure = "08006";
inline constexpr std::string_view kCannotConnectNow = "57P03";
inline constexpr std::string_view kAdminShutdown = "57P01";
inline constexpr std::string_view kTooManyConnections = "53300";
inline constexpr std::string_view kInvalidPassword = "28P01";
inline constexpr std::string_view kInvalidAuthorization = "28000";
inline constexpr std::string_view kFeatureNotSupported = "0A000";
inline constexpr std::string_view kSyntaxError = "42601";
inline constexpr std::string_view kObjectNotInPrerequisiteState = "55000";
inline constexpr std::string_view kLockNotAvailable = "55P03";
inline constexpr std::string_view kSerializationFailure = "40001";
inline constexpr std::string_view kInvalidStatementName = "26000";
inline constexpr std::string_view kProgramLimitExceeded = "54000";
}  // namespace sqlstate

struct ErrorFields {
  std::vector<std::pair<char, std::string>> fields;

  // The value of field `code`, or "" when absent.
  std::string_view Get(char code) const;
  std::string_view sqlstate() const { return Get(field::kSqlState); }
  std::string_view message() const { return Get(field::kMessage); }

  // A pgshift-raised error or notice: severity (e.g. "FATAL"), SQLSTATE, message.
  static ErrorFields Make(std::string_view severity, std::string_view sqlstate,
                          std::string_view message, std::string_view detail = {});

  bool operator==(const ErrorFields&) const = default;
};

}  // namespace pgshift::protocol
