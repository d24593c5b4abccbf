#include "protocol/wire.h"

#include <cstring>

#include "common/strings.h"

namespace pgshift::protocol {

uint8_t MessageReader::ReadByte() {
  if (!ok_ || remaining() < 1) {
    ok_ = false;
    return 0;
  }
  return static_cast<uint8_t>(data_[pos_++]);
}

int16_t MessageReader::ReadInt16() {
  if (!ok_ || remaining() < 2) {
    ok_ = false;
    return 0;
  }
  auto b = reinterpret_cast<const unsigned char*>(data_.data() + pos_);
  pos_ += 2;
  return static_cast<int16_t>((b[0] << 8) | b[1]);
}

int32_t MessageReader::ReadInt32() {
  if (!ok_ || remaining() < 4) {
    ok_ = false;
    return 0;
  }
  int32_t v = ReadBigEndian32(data_.data() + pos_);
  pos_ += 4;
  return v;
}

std::string_view MessageReader::ReadCString() {
  if (!ok_) return {};
  size_t end = data_.find('\0', pos_);
  if (end == std::string_view::npos) {
    ok_ = false;
    return {};
  }
  std::string_view s = data_.substr(pos_, end - pos_);
  pos_ = end + 1;
  return s;
}

std::string_view MessageReader::ReadBytes(size_t n) {
  if (!ok_ || remaining() < n) {
    ok_ = false;
    return {};
  }
  std::string_view s = data_.substr(pos_, n);
  pos_ += n;
  return s;
}

std::optional<std::string_view> MessageReader::ReadNullableBytes() {
  int32_t len = ReadInt32();
  if (!ok_) return std::nullopt;
  if (len == -1) return std::nullopt;
  if (len < -1) {
    ok_ = false;
    return std::nullopt;
  }
  return ReadBytes(static_cast<size_t>(len));
}

std::string_view MessageReader::ReadRest() {
  if (!ok_) return {};
  std::string_view s = data_.substr(pos_);
  pos_ = data_.size();
  return s;
}

absl::Status MessageReader::Malformed(std::string_view message_name) const {
  return absl::InvalidArgumentError(
      StrCat("invalid ", message_name, " message format"));
}

void WriteBigEndian32(char* p, int32_t v) {
  auto u = static_cast<uint32_t>(v);
  p[0] = static_cast<char>(u >> 24);
  p[1] = static_cast<char>(u >> 16);
  p[2] = static_cast<char>(u >> 8);
  p[3] = static_cast<char>(u);
}

MessageWriter::MessageWriter(std::string& out, char type) : out_(out) {
  if (type != 0) out_.push_back(type);
  length_at_ = out_.size();
  out_.append(4, '\0');
}

MessageWriter& MessageWriter::Byte(uint8_t v) {
  out_.push_back(static_cast<char>(v));
  return *this;
}

MessageWriter& MessageWriter::Int16(int16_t v) {
  auto u = static_cast<uint16_t>(v);
  out_.push_back(static_cast<char>(u >> 8));
  out_.push_back(static_cast<char>(u));
  return *this;
}

MessageWriter& MessageWriter::Int32(int32_t v) {
  char b[4];
  WriteBigEndian32(b, v);
  out_.append(b, 4);
  return *this;
}

MessageWriter& MessageWriter::CString(std::string_view s) {
  out_.append(s);
  out_.push_back('\0');
  return *this;
}

MessageWriter& MessageWriter::Bytes(std::string_view s) {
  out_.append(s);
  return *this;
}

MessageWriter& MessageWriter::NullableBytes(const std::optional<std::string>& v) {
  if (!v) return Int32(-1);
  Int32(static_cast<int32_t>(v->size()));
  return Bytes(*v);
}

void MessageWriter::Finish() {
  if (finished_) return;
  finished_ = true;
  WriteBigEndian32(out_.data() + length_at_,
                   static_cast<int32_t>(out_.size() - length_at_));
}

}  // namespace pgshift::protocol
