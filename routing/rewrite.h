// Rewriting statements for the new side: table and column names are
// changed in the parse tree, which is then deparsed. The application keeps
// seeing its own column names: `*` over a table with renamed columns is
// expanded from the new table's columns, and renamed columns in select lists
// and RETURNING are aliased back.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "routing/parse_tree.h"

namespace pgshift::routing {

struct TableRename {
  std::string old_schema, old_name;  // as the application names it
  std::string new_schema, new_name;
  std::map<std::string, std::string> columns;  // old column -> new column
  // The new table's columns in attribute order, when read from its catalog;
  // null when unknown, which makes `*` over renamed columns an error.
  const std::vector<std::string>* new_columns = nullptr;
  // The old table's, likewise: an INSERT without a column list means them,
  // in their order, which the new table may not share.
  const std::vector<std::string>* old_columns = nullptr;
};

// Edits every statement of `tree` for `renames`. Fails (FailedPrecondition,
// with a message naming the table) when a statement cannot be rewritten
// faithfully, e.g. `*` over a join with USING that involves a renamed table.
absl::Status RewriteTree(ParseTree& tree, const std::vector<TableRename>& renames);

}  // namespace pgshift::routing
