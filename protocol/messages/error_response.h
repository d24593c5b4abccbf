#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "protocol/error_fields.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// ErrorResponse ('E') and NoticeResponse ('N') share one body.
template <char Type>
struct FieldMessage : ErrorFields {
  static constexpr char kType = Type;
  FieldMessage() = default;
  explicit FieldMessage(ErrorFields f) : ErrorFields(std::move(f)) {}
  static absl::StatusOr<FieldMessage> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const FieldMessage&) const = default;
};

using ErrorResponse = FieldMessage<backend::kErrorResponse>;
using NoticeResponse = FieldMessage<backend::kNoticeResponse>;

extern template struct FieldMessage<backend::kErrorResponse>;
extern template struct FieldMessage<backend::kNoticeResponse>;

}  // namespace pgshift::protocol
