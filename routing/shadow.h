// Shadow reads: the comparison of a read's result on its authoritative side
// with the same read on the other side (SPEC section 5.4), as pure data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pgshift::routing {

// What one side answered.
struct ResultSet {
  struct Column {
    std::string name;
    int32_t type_oid = 0;
    bool operator==(const Column&) const = default;
  };
  std::vector<Column> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;  // text form; nullopt = NULL
  std::string error_sqlstate;  // set when the side failed
  std::string error_message;

  // What keeping a row costs, about: its DataRow message and a value each.
  static size_t RowBytes(size_t message_size, size_t values) {
    return message_size + values * sizeof(std::optional<std::string>);
  }
};

struct Comparison {
  bool match = true;
  std::string reason;  // why not: "columns differ", "rows differ", an error on one side
  // Up to five rows of each side that the other lacks, as text images.
  std::vector<std::string> only_authoritative, only_other;
};

// Rows compared as multisets, or as sequences when `ordered` (the query
// has ORDER BY); columns by name and type; values by their text form. Two
// errors match when their SQLSTATEs do; an error and rows never match.
Comparison CompareResults(const ResultSet& authoritative, const ResultSet& other, bool ordered);

// libpg_query's fingerprint of a statement (equal for statements that
// differ only in constants), hex; empty when it cannot be computed.
std::string Fingerprint(const std::string& sql);

// The statement with its constants replaced by $n (libpg_query's
// normalization), for reports that must not carry the data; `sql` itself
// when it cannot be normalized.
std::string Normalize(const std::string& sql);

}  // namespace pgshift::routing
