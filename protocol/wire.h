// Byte-level reading and writing of PostgreSQL protocol 3.0 messages.
//
// Every message is `type:u8 length:i32 payload`, where length counts itself
// but not the type byte. Startup-phase packets have no type byte. Integers are
// big-endian; strings are NUL-terminated.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace pgshift::protocol {

// Reads fields from one message payload. Any read past the end, or a string
// without its terminator, marks the reader failed; callers check ok() once at
// the end instead of after every field.
class MessageReader {
 public:
  explicit MessageReader(std::string_view payload) : data_(payload) {}

  uint8_t ReadByte();
  int16_t ReadInt16();
  int32_t ReadInt32();
  std::string_view ReadCString();
  std::string_view ReadBytes(size_t n);
  // An Int32 length followed by that many bytes; -1 is SQL NULL (nullopt).
  std::optional<std::string_view> ReadNullableBytes();
  std::string_view ReadRest();

  size_t remaining() const { return data_.size() - pos_; }
  bool ok() const { return ok_; }
  // ok() and every byte consumed: what a strict codec requires.
  bool done() const { return ok_ && pos_ == data_.size(); }
  // The error a codec returns when !done(); names the message.
  absl::Status Malformed(std::string_view message_name) const;

 private:
  std::string_view data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// Appends one message to a string. The length is patched in by Finish(), so
// fields are written in order without computing the size first.
class MessageWriter {
 public:
  // `type` 0 writes a startup-phase packet (no type byte).
  MessageWriter(std::string& out, char type);
  ~MessageWriter() { Finish(); }
  MessageWriter(const MessageWriter&) = delete;
  MessageWriter& operator=(const MessageWriter&) = delete;

  MessageWriter& Byte(uint8_t v);
  MessageWriter& Int16(int16_t v);
  MessageWriter& Int32(int32_t v);
  MessageWriter& CString(std::string_view s);
  MessageWriter& Bytes(std::string_view s);
  MessageWriter& NullableBytes(const std::optional<std::string>& v);
  void Finish();

 private:
  std::string& out_;
  size_t length_at_;
  bool finished_ = false;
};

inline int32_t ReadBigEndian32(const char* p) {
  auto b = reinterpret_cast<const unsigned char*>(p);
  return static_cast<int32_t>((uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) |
                              (uint32_t{b[2]} << 8) | uint32_t{b[3]});
}

void WriteBigEndian32(char* p, int32_t v);

}  // namespace pgshift::protocol
