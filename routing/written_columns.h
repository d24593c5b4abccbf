// Writes on new that name old's columns: an INSERT's implied column list;
// and writes to a table whose columns change shape, while new is
// authoritative (new-primary, new-only). The application names old's
// columns; new stores its own. A column the write sets that old_columns
// derives is not stored on new: its value reaches new through the
// new_columns expressions that read it. And every new column computed from
// a column the write sets is computed again from the row as written, as
// the mirror computes it while old is authoritative. A write whose value
// would have nowhere to go is refused, naming the column.
#pragma once

#include <pg_query/pg_query.pb-c.h>

#include <functional>
#include <string_view>

#include "absl/status/status.h"
#include "routing/rewrite.h"

namespace pgshift::routing {

// The values each row of an INSERT's VALUES or SELECT gives, as written;
// 0 when that is not known from the statement itself (a `*`, a UNION).
size_t ValuesPerRow(const PgQuery__InsertStmt* s);

// An INSERT without a column list fills the table's first columns in
// order: the old table's, as the application knows it. When the new table
// orders them differently, or its columns change shape, the list (old's
// names) is written out; `values` is ValuesPerRow before the SELECT was
// rewritten.
absl::Status NameInsertedColumns(const TableRename& r, PgQuery__InsertStmt* s, size_t values);

// An UPDATE's SET list, or ON CONFLICT DO UPDATE's: `walk` puts each item's
// value in new's terms (as the rewriter does any expression), names become
// new's, derived columns give way to the computed columns that read them.
// `refname` is what the target row is known by, for the columns a computed
// column reads that the write leaves as they are.
absl::Status RewriteSetList(const TableRename& r, std::string_view refname, size_t* count,
                            PgQuery__Node*** items,
                            const std::function<void(PgQuery__Node*)>& walk);

// An INSERT's column list (old's names) and its VALUES rows, likewise.
absl::Status RewriteInsertColumns(const TableRename& r, PgQuery__InsertStmt* s);

}  // namespace pgshift::routing
