// Column transforms: a column of one side computed from the other side's
// row, so that a table can change shape as it moves (price_cents int
// becomes price numeric, full_name splits in two). `new_columns` compute
// new's columns from old's row; `old_columns` compute old's from new's.
//
// Each is one SQL expression, parsed with PostgreSQL's grammar at load and
// written back from its parse tree, so that nothing of its text can reach
// past it in the statements pgshift builds around it. It may name only the
// other side's columns, unqualified: it is evaluated wherever that row is
// (in a mirror's CTE, in the RETURNING of a write, in backfill's and
// verify's reads of the table).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace pgshift::routing {

struct ColumnTransform {
  std::string column;              // the column it computes
  std::string expression;          // parenthesised SQL, as deparsed
  std::vector<std::string> reads;  // the other side's columns it names, sorted, once each

  bool operator==(const ColumnTransform&) const = default;
};

// Parses `expression`, which computes `column`. Fails with
// InvalidArgument and the reason (the parser's message, or what it may
// not contain: several expressions, a qualified or `*` column, a
// subquery, a parameter, an aggregate or window call).
absl::StatusOr<ColumnTransform> ParseColumnTransform(std::string_view column,
                                                     std::string_view expression);

// Asking the server that holds `table` (quoted "schema"."name") whether it
// computes each of `transforms` as one value of a row, the same in every
// session (mirrors, backfill and verify evaluate it in different ones):
// TransformTypesSql reads the expressions' types (one row, format_type
// each); then, inside a transaction that is rolled back, the statements
// of TransformProbeSql give a temporary copy of the table's columns each
// expression as a stored generated column of its type, which PostgreSQL
// allows only for an immutable expression over the row's own columns (no
// set-returning function, aggregate, window call, subquery or whole-row
// reference), and names what is wrong in its own words.
std::string TransformTypesSql(const std::vector<ColumnTransform>& transforms,
                              std::string_view table);
std::vector<std::string> TransformProbeSql(const std::vector<ColumnTransform>& transforms,
                                           std::string_view table,
                                           const std::vector<std::string>& types);

struct TableConfig;

// What one table's transforms may not do, each as (its key, the reason,
// naming the table): compute a key column (rows are found by key on both
// sides, so it is copied or renamed), or a column a rename also fills.
std::vector<std::pair<std::string, std::string>> TransformConflicts(const TableConfig& t);

// Why `t`'s phase is not available to it with its transforms, or "": past
// shadow-read new is authoritative, which needs verify to read new's rows
// through old_columns, not built yet.
std::string TransformsRefusePhase(const TableConfig& t);

// The transform computing `column` among `transforms`, or null.
const ColumnTransform* FindTransform(const std::vector<ColumnTransform>& transforms,
                                     std::string_view column);

}  // namespace pgshift::routing
