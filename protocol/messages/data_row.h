#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// DataRow ('D', backend): one row's column values; nullopt is NULL.
struct DataRow {
  static constexpr char kType = backend::kDataRow;
  std::vector<std::optional<std::string>> values;
  static absl::StatusOr<DataRow> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const DataRow&) const = default;
};

}  // namespace pgshift::protocol
