#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// RowDescription ('T'): the columns of the rows that follow.
struct RowDescription {
  static constexpr char kType = backend::kRowDescription;
  struct Field {
    std::string name;
    int32_t table_oid = 0;
    int16_t column_number = 0;
    int32_t type_oid = 0;
    int16_t type_size = 0;
    int32_t type_modifier = -1;
    int16_t format = 0;
    bool operator==(const Field&) const = default;
  };
  std::vector<Field> fields;
  static absl::StatusOr<RowDescription> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const RowDescription&) const = default;
};

}  // namespace pgshift::protocol
