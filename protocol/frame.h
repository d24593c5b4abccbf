// Incremental framing of protocol 3.0 messages.
//
// The decoder never trusts a length: a header is checked (type allowed in
// this direction, 4 <= length <= limit) before any byte of the body is
// awaited, and nothing is allocated from a declared length. Bodies arrive in
// whatever pieces the socket delivers.
#pragma once

#include <bitset>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pgshift::protocol {

// PostgreSQL's own limits (PQ_LARGE_MESSAGE_LIMIT, MAX_STARTUP_PACKET_LENGTH).
inline constexpr size_t kDefaultMaxMessageSize = size_t{1} << 30;
inline constexpr size_t kMaxStartupPacketSize = 10000;
inline constexpr size_t kHeaderSize = 5;

// The message type bytes one side may send.
class TypeSet {
 public:
  constexpr TypeSet(std::string_view types) {
    for (char c : types) bits_.set(static_cast<unsigned char>(c));
  }
  bool contains(char type) const { return bits_.test(static_cast<unsigned char>(type)); }

 private:
  std::bitset<256> bits_;
};

// What a client may send once the session is established (the 'p' family is
// only legal during authentication and is handled there).
extern const TypeSet kFrontendTypes;
// What a server may send at any time.
extern const TypeSet kBackendTypes;

// Checks the 5-byte header at `header`; returns the total message size
// (type byte included) or an error naming the problem.
absl::StatusOr<size_t> CheckHeader(std::string_view header, const TypeSet& allowed,
                                   size_t max_message_size);

// For a buffer that begins at a message boundary: the size of the first
// message when it is complete, 0 when more bytes are needed.
absl::StatusOr<size_t> CompleteMessageSize(std::string_view input, const TypeSet& allowed,
                                           size_t max_message_size);

// Startup-phase packets (StartupMessage, SSLRequest, GSSENCRequest,
// CancelRequest) have no type byte. Same contract as CompleteMessageSize.
absl::StatusOr<size_t> CompleteStartupPacketSize(std::string_view input);

// How the decoder should deliver a message whose header it has just read.
enum class Delivery {
  kWhole,   // buffer it and hand it over complete (header included)
  kStream,  // pass its bytes on as they arrive, never buffering the body
};

// Receives what the decoder finds. Decoding knows nothing of what is done
// with the messages.
class FrameHandler {
 public:
  virtual ~FrameHandler() = default;
  virtual Delivery OnHeader(char type, size_t message_size) = 0;
  virtual void OnWhole(char type, std::string_view message) = 0;
  // Consecutive pieces of streamed messages, header included, in order.
  virtual void OnStreamed(std::string_view bytes) = 0;
};

class FrameDecoder {
 public:
  FrameDecoder(const TypeSet& allowed, size_t max_message_size)
      : allowed_(allowed), max_message_size_(max_message_size) {}

  // Reports every complete or streamable piece of `input` to the handler and
  // returns how many bytes were used. Unused bytes (the start of a message
  // the handler wants whole) must be passed again, with more appended.
  absl::StatusOr<size_t> Decode(std::string_view input, FrameHandler& handler);

  // True when the decoder is between messages.
  bool at_boundary() const { return stream_remaining_ == 0 && !whole_pending_; }
  // True while part of a streamed message has been handed on and the rest
  // has not: the receiving side is in the middle of a message.
  bool streaming() const { return stream_remaining_ > 0; }

 private:
  const TypeSet& allowed_;
  size_t max_message_size_;
  size_t stream_remaining_ = 0;  // bytes of the current streamed message still to come
  bool whole_pending_ = false;   // OnHeader said kWhole; waiting for the rest
};

// Human-readable message name for logs, e.g. "Query" or "DataRow".
std::string_view FrontendMessageName(char type);
std::string_view BackendMessageName(char type);

}  // namespace pgshift::protocol
