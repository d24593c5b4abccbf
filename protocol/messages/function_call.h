#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// FunctionCall ('F'): the legacy fast-path call of a function by OID.
struct FunctionCall {
  static constexpr char kType = frontend::kFunctionCall;
  int32_t function_oid = 0;
  std::vector<int16_t> argument_formats;
  std::vector<std::optional<std::string>> arguments;
  int16_t result_format = 0;
  static absl::StatusOr<FunctionCall> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const FunctionCall&) const = default;
};

// FunctionCallResponse ('V'): its result.
struct FunctionCallResponse {
  static constexpr char kType = backend::kFunctionCallResponse;
  std::optional<std::string> result;
  static absl::StatusOr<FunctionCallResponse> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const FunctionCallResponse&) const = default;
};

}  // namespace pgshift::protocol
