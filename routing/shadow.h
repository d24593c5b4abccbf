// Shadow reads: the comparison of a read's result on its authoritative side
// with the same read on the other side (SPEC section 5.4), as pure data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
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

// The key (one value per key column, in the key's order) of each row that
// one side has and the other lacks, as mirrored writes name keys (one
// column: its text; several: "(a,b)"). `key_columns`: where the key's
// columns are in the results. None when the same rows differ only in their
// order (ties, or collations that differ): no write's key explains that.
std::vector<std::string> DifferingKeys(const ResultSet& authoritative, const ResultSet& other,
                                       const std::vector<size_t>& key_columns);

// Where the keys of a read's rows can be found, so that a difference in
// its result can be traced to keys of the table it reads.
struct KeyTrace {
  // The result columns (output names) carrying `key`, in its order: each
  // row is one row of the table, unchanged by others (a plain SELECT from
  // that one table naming every key column, or *; no grouping, windows,
  // subqueries in the select list or set operations).
  std::vector<std::string> columns;
  // Else, the keys its WHERE clause pins every row to (key = constant or
  // parameter, IN a list of constants), as mirrored writes name them.
  std::vector<std::string> pinned;
  bool empty() const { return columns.empty() && pinned.empty(); }
};
// `params`: the read's parameters in text form (nullopt: NULL or binary).
KeyTrace TraceKeys(std::string_view sql, const std::vector<std::string>& key,
                   const std::vector<std::optional<std::string>>& params);

// libpg_query's fingerprint of a statement (equal for statements that
// differ only in constants), hex; empty when it cannot be computed.
std::string Fingerprint(const std::string& sql);

// The statement with its constants replaced by $n (libpg_query's
// normalization), for reports that must not carry the data; `sql` itself
// when it cannot be normalized.
std::string Normalize(const std::string& sql);

}  // namespace pgshift::routing
