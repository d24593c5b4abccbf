#include "routing/column_transform.h"

#include <algorithm>

#include "common/strings.h"
#include "routing/config.h"
#include "routing/parse_tree.h"

namespace pgshift::routing {

namespace {

// What `msg` contains that a transform may not, or "" when nothing; the
// column names it reads go to `reads`.
std::string Forbidden(const ProtoMessage* msg, std::vector<std::string>& reads) {
  if (Is(msg, pg_query__column_ref__descriptor)) {
    auto ref = reinterpret_cast<const PgQuery__ColumnRef*>(msg);
    if (ref->n_fields != 1 || ref->fields[0]->node_case != PG_QUERY__NODE__NODE_STRING) {
      return "a qualified or * column reference (name the other side's columns alone)";
    }
    reads.emplace_back(ref->fields[0]->string->sval);
    return "";
  }
  if (Is(msg, pg_query__sub_link__descriptor)) return "a subquery";
  if (Is(msg, pg_query__param_ref__descriptor)) return "a parameter";
  if (Is(msg, pg_query__func_call__descriptor)) {
    auto call = reinterpret_cast<const PgQuery__FuncCall*>(msg);
    if (call->over != nullptr) return "a window function";
    if (call->agg_star || call->agg_distinct || call->n_agg_order > 0 || call->agg_filter) {
      return "an aggregate";
    }
  }
  std::string found;
  ForEachChild(msg, [&](const char*, const ProtoMessage* child) {
    if (found.empty()) found = Forbidden(child, reads);
  });
  return found;
}

}  // namespace

absl::StatusOr<ColumnTransform> ParseColumnTransform(std::string_view column,
                                                     std::string_view expression) {
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(StrCat("the expression for ", column, ": ", why));
  };
  absl::StatusOr<ParseTree> tree = ParseTree::Parse(StrCat("SELECT ", expression));
  if (!tree.ok()) return invalid(MessageOf(tree.status()));
  const PgQuery__ParseResult* parsed = tree->get();
  const PgQuery__SelectStmt* select =
      parsed->n_stmts == 1 && parsed->stmts[0]->stmt->node_case == PG_QUERY__NODE__NODE_SELECT_STMT
          ? parsed->stmts[0]->stmt->select_stmt
          : nullptr;
  if (select == nullptr || select->n_target_list != 1 || select->n_from_clause > 0 ||
      select->where_clause != nullptr || select->n_group_clause > 0 ||
      select->having_clause != nullptr || select->n_sort_clause > 0 ||
      select->limit_count != nullptr || select->n_distinct_clause > 0 ||
      select->with_clause != nullptr || select->op != PG_QUERY__SET_OPERATION__SETOP_NONE ||
      select->n_window_clause > 0 || select->n_values_lists > 0 || select->into_clause != nullptr ||
      select->n_locking_clause > 0) {
    return invalid("must be one expression (no FROM, WHERE, list or statement)");
  }
  const PgQuery__ResTarget* target = select->target_list[0]->res_target;
  if (target->name != nullptr && *target->name != '\0') {
    return invalid("must be one expression, without AS");
  }
  ColumnTransform out;
  out.column = std::string(column);
  if (std::string why = Forbidden(&target->val->base, out.reads); !why.empty()) {
    return invalid(StrCat("may not contain ", why));
  }
  std::sort(out.reads.begin(), out.reads.end());
  out.reads.erase(std::unique(out.reads.begin(), out.reads.end()), out.reads.end());
  absl::StatusOr<std::string> text = tree->Deparse();
  if (!text.ok()) return invalid(MessageOf(text.status()));
  constexpr std::string_view kSelect = "SELECT ";
  if (text->compare(0, kSelect.size(), kSelect) != 0) return invalid("cannot be written back");
  out.expression = StrCat("(", text->substr(kSelect.size()), ")");
  return out;
}

std::string TransformTypesSql(const std::vector<ColumnTransform>& transforms,
                              std::string_view table) {
  std::string types, values, nulls;
  for (size_t i = 0; i < transforms.size(); ++i) {
    types += StrCat(i ? ", " : "", "pg_catalog.format_type(pg_catalog.pg_typeof(pgshift_", i,
                    ")::pg_catalog.oid, NULL)");
    values += StrCat(i ? ", " : "", transforms[i].expression, " AS pgshift_", i);
    nulls += StrCat(i ? ", " : "", "NULL");
  }
  // The NULL row takes each expression's type, so one row answers even
  // for a table without rows.
  return StrCat("SELECT ", types, " FROM (SELECT ", values, " FROM ", table,
                " WHERE false UNION ALL SELECT ", nulls, ") pgshift_values LIMIT 1");
}

std::vector<std::string> TransformProbeSql(const std::vector<ColumnTransform>& transforms,
                                           std::string_view table,
                                           const std::vector<std::string>& types) {
  std::string columns;
  for (size_t i = 0; i < transforms.size() && i < types.size(); ++i) {
    columns += StrCat(i ? ", " : "", "ADD COLUMN pgshift_", i, " ", types[i],
                      " GENERATED ALWAYS AS ", transforms[i].expression, " STORED");
  }
  return {StrCat("CREATE TEMPORARY TABLE pgshift_transform_probe (LIKE ", table, ")"),
          StrCat("ALTER TABLE pgshift_transform_probe ", columns)};
}

std::vector<std::pair<std::string, std::string>> TransformConflicts(const TableConfig& t) {
  std::vector<std::pair<std::string, std::string>> out;
  auto is_key = [&](const std::string& column) {
    return std::find(t.key.begin(), t.key.end(), column) != t.key.end();
  };
  auto computes_key = [&](const std::string& column) {
    return StrCat("of ", t.name, " computes key column ", column,
                  ", which must be copied or renamed: rows are found by their key on both sides");
  };
  for (const ColumnTransform& c : t.new_columns) {
    auto from = std::find_if(t.columns.begin(), t.columns.end(),
                             [&](const auto& rename) { return rename.second == c.column; });
    if (is_key(from != t.columns.end() ? from->first : c.column)) {
      out.emplace_back("new_columns", computes_key(c.column));
    } else if (from != t.columns.end()) {
      out.emplace_back("new_columns",
                       StrCat("of ", t.name, " computes ", c.column,
                              ", which columns also fills from ", from->first, " by rename"));
    }
  }
  for (const ColumnTransform& c : t.old_columns) {
    if (is_key(c.column)) {
      out.emplace_back("old_columns", computes_key(c.column));
    } else if (t.columns.contains(c.column)) {
      out.emplace_back("old_columns",
                       StrCat("of ", t.name, " computes ", c.column, ", which columns renames to ",
                              t.columns.at(c.column)));
    }
  }
  return out;
}

std::string TransformsRefusePhase(const TableConfig& t) {
  if ((t.new_columns.empty() && t.old_columns.empty()) ||
      static_cast<int>(t.phase) <= static_cast<int>(Phase::kShadowRead)) {
    return "";
  }
  return StrCat("\"", PhaseName(t.phase), "\" is not available to ", t.name,
                " yet: a table with new_columns or old_columns goes as far as shadow-read; "
                "pgshift does not yet verify such a table with new authoritative, nor test "
                "its writes on new against a load");
}

const ColumnTransform* FindTransform(const std::vector<ColumnTransform>& transforms,
                                     std::string_view column) {
  for (const ColumnTransform& t : transforms) {
    if (t.column == column) return &t;
  }
  return nullptr;
}

}  // namespace pgshift::routing
