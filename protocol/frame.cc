#include "protocol/frame.h"

#include <algorithm>

#include "common/strings.h"
#include "protocol/message_type.h"
#include "protocol/wire.h"

namespace pgshift::protocol {

const TypeSet kFrontendTypes("QPBDECSHFXdcf");
const TypeSet kBackendTypes("RKSZTDCIEN123ntsAGHWdcVv");

namespace {

std::string PrintableType(char type) {
  unsigned char u = static_cast<unsigned char>(type);
  if (u >= 0x20 && u < 0x7f) return StrCat("'", std::string(1, type), "'");
  return StrCat(static_cast<int>(u));
}

}  // namespace

absl::StatusOr<size_t> CheckHeader(std::string_view header, const TypeSet& allowed,
                                   size_t max_message_size) {
  char type = header[0];
  if (!allowed.contains(type)) {
    return absl::InvalidArgumentError(
        StrCat("invalid message type ", PrintableType(type)));
  }
  int32_t length = ReadBigEndian32(header.data() + 1);
  if (length < 4 || static_cast<size_t>(length) > max_message_size) {
    return absl::InvalidArgumentError(StrCat(
        "invalid message length ", length, " for message type ", PrintableType(type),
        " (limit ", max_message_size, ")"));
  }
  return static_cast<size_t>(length) + 1;
}

absl::StatusOr<size_t> CompleteMessageSize(std::string_view input, const TypeSet& allowed,
                                           size_t max_message_size) {
  if (input.size() < kHeaderSize) return 0;
  absl::StatusOr<size_t> size = CheckHeader(input, allowed, max_message_size);
  if (!size.ok()) return size.status();
  return input.size() >= *size ? *size : 0;
}

absl::StatusOr<size_t> CompleteStartupPacketSize(std::string_view input) {
  if (input.size() < 4) return 0;
  int32_t length = ReadBigEndian32(input.data());
  if (length < 8 || static_cast<size_t>(length) > kMaxStartupPacketSize) {
    return absl::InvalidArgumentError(
        StrCat("invalid length of startup packet: ", length));
  }
  return input.size() >= static_cast<size_t>(length) ? static_cast<size_t>(length) : 0;
}

absl::StatusOr<size_t> FrameDecoder::Decode(std::string_view input, FrameHandler& handler) {
  size_t pos = 0;
  while (pos < input.size()) {
    if (stream_remaining_ > 0) {
      size_t n = std::min(stream_remaining_, input.size() - pos);
      handler.OnStreamed(input.substr(pos, n));
      pos += n;
      stream_remaining_ -= n;
      continue;
    }
    std::string_view rest = input.substr(pos);
    if (rest.size() < kHeaderSize) break;
    absl::StatusOr<size_t> size = CheckHeader(rest, allowed_, max_message_size_);
    if (!size.ok()) return size.status();
    char type = rest[0];
    if (!whole_pending_ && handler.OnHeader(type, *size) == Delivery::kStream) {
      stream_remaining_ = *size;
      continue;
    }
    if (rest.size() < *size) {
      whole_pending_ = true;
      break;
    }
    whole_pending_ = false;
    handler.OnWhole(type, rest.substr(0, *size));
    pos += *size;
  }
  return pos;
}

std::string_view FrontendMessageName(char type) {
  switch (type) {
    case frontend::kQuery: return "Query";
    case frontend::kParse: return "Parse";
    case frontend::kBind: return "Bind";
    case frontend::kDescribe: return "Describe";
    case frontend::kExecute: return "Execute";
    case frontend::kClose: return "Close";
    case frontend::kSync: return "Sync";
    case frontend::kFlush: return "Flush";
    case frontend::kFunctionCall: return "FunctionCall";
    case frontend::kTerminate: return "Terminate";
    case frontend::kCopyData: return "CopyData";
    case frontend::kCopyDone: return "CopyDone";
    case frontend::kCopyFail: return "CopyFail";
    case frontend::kPassword: return "PasswordMessage";
    default: return "unknown";
  }
}

std::string_view BackendMessageName(char type) {
  switch (type) {
    case backend::kAuthentication: return "Authentication";
    case backend::kBackendKeyData: return "BackendKeyData";
    case backend::kParameterStatus: return "ParameterStatus";
    case backend::kReadyForQuery: return "ReadyForQuery";
    case backend::kRowDescription: return "RowDescription";
    case backend::kDataRow: return "DataRow";
    case backend::kCommandComplete: return "CommandComplete";
    case backend::kEmptyQueryResponse: return "EmptyQueryResponse";
    case backend::kErrorResponse: return "ErrorResponse";
    case backend::kNoticeResponse: return "NoticeResponse";
    case backend::kParseComplete: return "ParseComplete";
    case backend::kBindComplete: return "BindComplete";
    case backend::kCloseComplete: return "CloseComplete";
    case backend::kNoData: return "NoData";
    case backend::kParameterDescription: return "ParameterDescription";
    case backend::kPortalSuspended: return "PortalSuspended";
    case backend::kNotificationResponse: return "NotificationResponse";
    case backend::kCopyInResponse: return "CopyInResponse";
    case backend::kCopyOutResponse: return "CopyOutResponse";
    case backend::kCopyBothResponse: return "CopyBothResponse";
    case backend::kCopyData: return "CopyData";
    case backend::kCopyDone: return "CopyDone";
    case backend::kFunctionCallResponse: return "FunctionCallResponse";
    case backend::kNegotiateProtocolVersion: return "NegotiateProtocolVersion";
    default: return "unknown";
  }
}

}  // namespace pgshift::protocol
