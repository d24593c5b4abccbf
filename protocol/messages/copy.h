// The COPY sub-protocol.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// CopyData ('d', both directions): a chunk of the data stream.
struct CopyData {
  static constexpr char kType = backend::kCopyData;
  std::string data;
  static absl::StatusOr<CopyData> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const CopyData&) const = default;
};

// CopyFail ('f', frontend): the client aborts COPY FROM STDIN.
struct CopyFail {
  static constexpr char kType = frontend::kCopyFail;
  std::string message;
  static absl::StatusOr<CopyFail> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const CopyFail&) const = default;
};

// CopyInResponse ('G'), CopyOutResponse ('H'), CopyBothResponse ('W') share
// one body: overall format and per-column formats.
template <char Type>
struct CopyResponse {
  static constexpr char kType = Type;
  int8_t format = 0;  // 0 text, 1 binary
  std::vector<int16_t> column_formats;
  static absl::StatusOr<CopyResponse> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const CopyResponse&) const = default;
};

using CopyInResponse = CopyResponse<backend::kCopyInResponse>;
using CopyOutResponse = CopyResponse<backend::kCopyOutResponse>;
using CopyBothResponse = CopyResponse<backend::kCopyBothResponse>;

extern template struct CopyResponse<backend::kCopyInResponse>;
extern template struct CopyResponse<backend::kCopyOutResponse>;
extern template struct CopyResponse<backend::kCopyBothResponse>;

}  // namespace pgshift::protocol
