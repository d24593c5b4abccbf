#include "protocol/error_fields.h"

namespace pgshift::protocol {

std::string_view ErrorFields::Get(char code) const {
  for (const auto& [c, v] : fields) {
    if (c == code) return v;
  }
  return {};
}

ErrorFields ErrorFields::Make(std::string_view severity, std::string_view sqlstate,
                              std::string_view message, std::string_view detail) {
  ErrorFields e;
  e.fields = {{field::kSeverity, std::string(severity)},
              {field::kSeverityNonLocalized, std::string(severity)},
              {field::kSqlState, std::string(sqlstate)},
              {field::kMessage, std::string(message)}};
  if (!detail.empty()) e.fields.emplace_back(field::kDetail, std::string(detail));
  return e;
}

}  // namespace pgshift::protocol
