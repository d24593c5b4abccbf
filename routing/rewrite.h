// Rewriting statements for the new side: table and column names are
// changed in the parse tree, which is then deparsed. The application keeps
// seeing its own column names: `*` over a table with renamed columns is
// expanded from the new table's columns, and renamed columns in select lists
// and RETURNING are aliased back. A table whose columns change shape
// (column transforms) keeps old's shape the same way: its derived columns
// are read through their expressions, and its writes set new's computed
// columns.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "routing/column_transform.h"
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
  // Column transforms, when the table has them. `derived`: old's columns
  // that new does not store, computed from new's row (old_columns); a read
  // that names one reads its expression, aliased to its name. `computed`:
  // new's columns computed from old's row (new_columns), which a write
  // naming old's columns sets from the values it writes.
  const std::vector<ColumnTransform>* derived = nullptr;
  const std::vector<ColumnTransform>* computed = nullptr;
  // Old's column types, in old_columns' order, when read from its catalog.
  const std::vector<std::string>* old_types = nullptr;

  bool HasTransforms() const {
    return (derived != nullptr && !derived->empty()) || (computed != nullptr && !computed->empty());
  }
  // The old_columns expression of `column`, an old column new does not store.
  const ColumnTransform* Derived(std::string_view column) const {
    return derived != nullptr ? FindTransform(*derived, column) : nullptr;
  }
  std::string OldTable() const { return old_schema + "." + old_name; }
  // A derived column's expression as SQL, cast to old's type of the column
  // where known, so that a read on new gives the type (and a parameter
  // compared with it is taken as) old's.
  std::string DerivedSql(const ColumnTransform& t) const {
    if (old_columns != nullptr && old_types != nullptr &&
        old_types->size() == old_columns->size()) {
      for (size_t i = 0; i < old_columns->size(); ++i) {
        if ((*old_columns)[i] == t.column && !(*old_types)[i].empty()) {
          return "CAST(" + t.expression + " AS " + (*old_types)[i] + ")";
        }
      }
    }
    return t.expression;
  }
  // An old column's name on new.
  std::string NewName(const std::string& column) const {
    auto renamed = columns.find(column);
    return renamed == columns.end() ? column : renamed->second;
  }
};

// Edits every statement of `tree` for `renames`. Fails (FailedPrecondition,
// with a message naming the table) when a statement cannot be rewritten
// faithfully, e.g. `*` over a join with USING that involves a renamed table.
absl::Status RewriteTree(ParseTree& tree, const std::vector<TableRename>& renames);

}  // namespace pgshift::routing
