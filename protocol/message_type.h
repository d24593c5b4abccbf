// The type byte of each protocol 3.0 message, by direction: several letters
// mean one message from the client and another from the server ('D' is
// Describe one way and DataRow the other), so each direction has its own
// names. The message codecs' kType are these.
#pragma once

namespace pgshift::protocol {

namespace frontend {
inline constexpr char kQuery = 'Q';
inline constexpr char kParse = 'P';
inline constexpr char kBind = 'B';
inline constexpr char kExecute = 'E';
inline constexpr char kDescribe = 'D';
inline constexpr char kClose = 'C';
inline constexpr char kSync = 'S';
inline constexpr char kFlush = 'H';
inline constexpr char kFunctionCall = 'F';
inline constexpr char kTerminate = 'X';
inline constexpr char kCopyData = 'd';
inline constexpr char kCopyDone = 'c';
inline constexpr char kCopyFail = 'f';
// PasswordMessage, SASLInitialResponse and SASLResponse share it.
inline constexpr char kPassword = 'p';
}  // namespace frontend

namespace backend {
inline constexpr char kAuthentication = 'R';
inline constexpr char kBackendKeyData = 'K';
inline constexpr char kParameterStatus = 'S';
inline constexpr char kReadyForQuery = 'Z';
inline constexpr char kRowDescription = 'T';
inline constexpr char kDataRow = 'D';
inline constexpr char kCommandComplete = 'C';
inline constexpr char kEmptyQueryResponse = 'I';
inline constexpr char kErrorResponse = 'E';
inline constexpr char kNoticeResponse = 'N';
inline constexpr char kParseComplete = '1';
inline constexpr char kBindComplete = '2';
inline constexpr char kCloseComplete = '3';
inline constexpr char kNoData = 'n';
inline constexpr char kParameterDescription = 't';
inline constexpr char kPortalSuspended = 's';
inline constexpr char kNotificationResponse = 'A';
inline constexpr char kCopyInResponse = 'G';
inline constexpr char kCopyOutResponse = 'H';
inline constexpr char kCopyBothResponse = 'W';
inline constexpr char kCopyData = 'd';
inline constexpr char kCopyDone = 'c';
inline constexpr char kFunctionCallResponse = 'V';
inline constexpr char kNegotiateProtocolVersion = 'v';
}  // namespace backend

// The answers to an SSLRequest or GSSENCRequest.
inline constexpr char kEncryptionAccepted = 'S';
inline constexpr char kEncryptionRefused = 'N';

// A ReadyForQuery's transaction status byte.
enum class TransactionStatus : char {
  kIdle = 'I',         // outside a transaction block
  kInBlock = 'T',      // in a transaction block
  kFailed = 'E',       // in a failed block: statements are refused until it ends
};

}  // namespace pgshift::protocol
