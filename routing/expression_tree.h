// Column transforms' expressions as parse-tree nodes, for the rewriter to
// put where a statement on new names a column that new does not store:
// an old column's `old_columns` expression in a read, a new column's
// `new_columns` expression in a write. The nodes are allocated as the
// parse tree's own are, so a tree they are placed in frees them.
#pragma once

#include <pg_query/pg_query.pb-c.h>

#include <functional>
#include <string_view>

#include "absl/status/statusor.h"

namespace pgshift::routing {

// `expression` (one SQL expression, as a transform holds it) as a node the
// caller owns.
absl::StatusOr<PgQuery__Node*> ParseExpression(std::string_view expression);

// The same, its column references qualified by `refname`: a transform's
// expression placed where the row it reads is known by that name.
absl::StatusOr<PgQuery__Node*> ParseExpression(std::string_view expression,
                                               std::string_view refname);

// A deep copy of `node`.
PgQuery__Node* CopyNode(const PgQuery__Node* node);

// Frees a node the caller owns, with everything under it.
void FreeNode(PgQuery__Node* node);

// Replaces each unqualified column reference in `expr` (a transform names
// only the other side's columns, unqualified) by what `replace` gives for
// its name, which `expr` then owns; null leaves the reference as it is.
void ReplaceColumns(PgQuery__Node* expr,
                    const std::function<PgQuery__Node*(std::string_view column)>& replace);

// `refname.column` (`refname.*` when column is empty), and a select-list
// or SET item `val AS name` (no name when empty).
PgQuery__Node* MakeColumnRef(std::string_view refname, std::string_view column);
PgQuery__Node* MakeResTarget(PgQuery__Node* val, std::string_view name);

// Whether a select-list item is `*` or `name.*`.
bool IsStar(const PgQuery__ResTarget* target);

// Whether evaluating `node` twice gives the same value and does nothing
// else: a constant or parameter, a column, casts of those.
bool IsPlainValue(const PgQuery__Node* node);

}  // namespace pgshift::routing
