#include "protocol/frame.h"

#include <algorithm>

#include "common/strings.h"
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
    case 'Q': return "Query";
    case 'P': return "Parse";
    case 'B': return "Bind";
    case 'D': return "Describe";
    case 'E': return "Execute";
    case 'C': return "Close";
    case 'S': return "Sync";
    case 'H': return "Flush";
    case 'F': return "FunctionCall";
    case 'X': return "Terminate";
    case 'd': return "CopyData";
    case 'c': return "CopyDone";
    case 'f': return "CopyFail";
    case 'p': return "PasswordMessage";
    default: return "unknown";
  }
}

std::string_view BackendMessageName(char type) {
  switch (type) {
    case 'R': return "Authentication";
    case 'K': return "BackendKeyData";
    case 'S': return "ParameterStatus";
    case 'Z': return "ReadyForQuery";
    case 'T': return "RowDescription";
    case 'D': return "DataRow";
    case 'C': return "CommandComplete";
    case 'I': return "EmptyQueryResponse";
    case 'E': return "ErrorResponse";
    case 'N': return "NoticeResponse";
    case '1': return "ParseComplete";
    case '2': return "BindComplete";
    case '3': return "CloseComplete";
    case 'n': return "NoData";
    case 't': return "ParameterDescription";
    case 's': return "PortalSuspended";
    case 'A': return "NotificationResponse";
    case 'G': return "CopyInResponse";
    case 'H': return "CopyOutResponse";
    case 'W': return "CopyBothResponse";
    case 'd': return "CopyData";
    case 'c': return "CopyDone";
    case 'V': return "FunctionCallResponse";
    case 'v': return "NegotiateProtocolVersion";
    default: return "unknown";
  }
}

}  // namespace pgshift::protocol
