#include "routing/shadow.h"

#include <pg_query.h>

#include <algorithm>
#include <map>

#include "common/strings.h"
#include "routing/parse_tree.h"

namespace pgshift::routing {

namespace {

using Row = std::vector<std::optional<std::string>>;

std::string Image(const Row& row) {
  std::string out = "(";
  for (size_t i = 0; i < row.size(); ++i) {
    out = StrCat(out, i ? "," : "", row[i] ? *row[i] : "NULL");
  }
  return out + ")";
}

std::string KeyOf(const Row& row, const std::vector<size_t>& key_columns) {
  if (key_columns.size() == 1) {
    const auto& v = row[key_columns[0]];
    return v ? *v : "";
  }
  std::string out = "(";
  for (size_t i = 0; i < key_columns.size(); ++i) {
    const auto& v = row[key_columns[i]];
    out = StrCat(out, i ? "," : "", v ? *v : "");
  }
  return out + ")";
}

// The name a select-list entry's column gets, when it is a plain
// reference to a column ("" otherwise; "*" for *).
std::string ColumnNamed(const PgQuery__ResTarget& t) {
  if (t.val == nullptr || t.val->node_case != PG_QUERY__NODE__NODE_COLUMN_REF) return "";
  const PgQuery__ColumnRef* ref = t.val->column_ref;
  if (ref->n_fields == 0) return "";
  const PgQuery__Node* last = ref->fields[ref->n_fields - 1];
  if (last->node_case == PG_QUERY__NODE__NODE_A_STAR) return "*";
  if (last->node_case != PG_QUERY__NODE__NODE_STRING) return "";
  const std::string column = last->string->sval;
  const std::string alias = t.name != nullptr ? t.name : "";
  return alias.empty() || alias == column ? column : "";
}

// Whether `msg` holds a subquery anywhere.
bool HasSubquery(const ProtoMessage* msg) {
  if (msg == nullptr) return false;
  if (Is(msg, pg_query__sub_link__descriptor)) return true;
  bool found = false;
  ForEachChild(
      msg, [&](const char*, const ProtoMessage* child) { found = found || HasSubquery(child); });
  return found;
}

// Whether an entry's value may depend on other rows than its own: a
// window function or a subquery.
bool DependsOnOtherRows(const PgQuery__ResTarget& t) {
  const PgQuery__Node* v = t.val;
  if (v == nullptr || v->node_case == PG_QUERY__NODE__NODE_SUB_LINK) return true;
  return v->node_case == PG_QUERY__NODE__NODE_FUNC_CALL && v->func_call->over != nullptr;
}

std::vector<std::string> KeyColumns(const PgQuery__SelectStmt& s,
                                    const std::vector<std::string>& key) {
  bool star = false;
  std::vector<std::string> named;
  for (size_t i = 0; i < s.n_target_list; ++i) {
    if (s.target_list[i]->node_case != PG_QUERY__NODE__NODE_RES_TARGET) return {};
    const PgQuery__ResTarget& t = *s.target_list[i]->res_target;
    if (DependsOnOtherRows(t)) return {};
    std::string column = ColumnNamed(t);
    star = star || column == "*";
    if (!column.empty()) named.push_back(column);
    // Another value under a key column's name would pass for the key.
    const std::string alias = t.name != nullptr ? t.name : "";
    if (column.empty() && std::find(key.begin(), key.end(), alias) != key.end()) return {};
  }
  for (const std::string& k : key) {
    if (!star && std::find(named.begin(), named.end(), k) == named.end()) return {};
  }
  return key;
}

// The text of a constant or parameter (under casts), when there is one.
std::optional<std::string> ValueOf(const PgQuery__Node* n,
                                   const std::vector<std::optional<std::string>>& params) {
  while (n != nullptr && n->node_case == PG_QUERY__NODE__NODE_TYPE_CAST) n = n->type_cast->arg;
  if (n == nullptr) return std::nullopt;
  if (n->node_case == PG_QUERY__NODE__NODE_PARAM_REF) {
    const size_t i = static_cast<size_t>(n->param_ref->number) - 1;
    return i < params.size() ? params[i] : std::nullopt;
  }
  if (n->node_case != PG_QUERY__NODE__NODE_A_CONST || n->a_const->isnull) return std::nullopt;
  const PgQuery__AConst* c = n->a_const;
  switch (c->val_case) {
    case PG_QUERY__A__CONST__VAL_IVAL: return StrCat(c->ival->ival);
    case PG_QUERY__A__CONST__VAL_FVAL: return std::string(c->fval->fval);
    case PG_QUERY__A__CONST__VAL_SVAL: return std::string(c->sval->sval);
    default: return std::nullopt;
  }
}

// The key column an expression names, if it is one.
std::string KeyColumnOf(const PgQuery__Node* n, const std::vector<std::string>& key) {
  if (n == nullptr || n->node_case != PG_QUERY__NODE__NODE_COLUMN_REF) return "";
  const PgQuery__ColumnRef* ref = n->column_ref;
  const PgQuery__Node* last = ref->n_fields ? ref->fields[ref->n_fields - 1] : nullptr;
  if (last == nullptr || last->node_case != PG_QUERY__NODE__NODE_STRING) return "";
  std::string column = last->string->sval;
  return std::find(key.begin(), key.end(), column) != key.end() ? column : "";
}

// Values the WHERE clause's top-level conjuncts give each key column
// (`column = value`, `value = column`, `column IN (values)`).
void PinnedValues(const PgQuery__Node* n, const std::vector<std::string>& key,
                  const std::vector<std::optional<std::string>>& params,
                  std::map<std::string, std::vector<std::string>>& out) {
  if (n == nullptr) return;
  if (n->node_case == PG_QUERY__NODE__NODE_BOOL_EXPR &&
      n->bool_expr->boolop == PG_QUERY__BOOL_EXPR_TYPE__AND_EXPR) {
    for (size_t i = 0; i < n->bool_expr->n_args; ++i)
      PinnedValues(n->bool_expr->args[i], key, params, out);
    return;
  }
  if (n->node_case != PG_QUERY__NODE__NODE_A_EXPR) return;
  const PgQuery__AExpr* e = n->a_expr;
  if (e->n_name != 1 || e->name[0]->node_case != PG_QUERY__NODE__NODE_STRING ||
      std::string_view(e->name[0]->string->sval) != "=") {
    return;
  }
  if (e->kind == PG_QUERY__A__EXPR__KIND__AEXPR_OP) {
    std::string column = KeyColumnOf(e->lexpr, key);
    std::optional<std::string> value = ValueOf(e->rexpr, params);
    if (column.empty()) {
      column = KeyColumnOf(e->rexpr, key);
      value = ValueOf(e->lexpr, params);
    }
    if (!column.empty() && value && !out.contains(column)) out[column] = {*value};
    return;
  }
  if (e->kind == PG_QUERY__A__EXPR__KIND__AEXPR_IN && e->rexpr != nullptr &&
      e->rexpr->node_case == PG_QUERY__NODE__NODE_LIST) {
    std::string column = KeyColumnOf(e->lexpr, key);
    if (column.empty() || out.contains(column)) return;
    std::vector<std::string> values;
    for (size_t i = 0; i < e->rexpr->list->n_items; ++i) {
      std::optional<std::string> v = ValueOf(e->rexpr->list->items[i], params);
      if (!v) return;
      values.push_back(*v);
    }
    out[column] = std::move(values);
  }
}

}  // namespace

std::vector<std::string> DifferingKeys(const ResultSet& a, const ResultSet& b,
                                       const std::vector<size_t>& key_columns) {
  std::vector<std::string> keys;
  auto fits = [&](const Row& r) {
    return std::all_of(key_columns.begin(), key_columns.end(),
                       [&](size_t i) { return i < r.size(); });
  };
  std::map<Row, int64_t> count;
  for (const Row& r : a.rows) ++count[r];
  for (const Row& r : b.rows) --count[r];
  for (const auto& [row, n] : count) {
    if (n != 0 && fits(row)) keys.push_back(KeyOf(row, key_columns));
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

KeyTrace TraceKeys(std::string_view sql, const std::vector<std::string>& key,
                   const std::vector<std::optional<std::string>>& params) {
  KeyTrace trace;
  if (key.empty()) return trace;
  absl::StatusOr<ParseTree> parsed = ParseTree::Parse(sql);
  if (!parsed.ok()) return trace;
  const PgQuery__ParseResult* tree = parsed->get();
  const PgQuery__Node* stmt = tree->n_stmts == 1 ? tree->stmts[0]->stmt : nullptr;
  const PgQuery__SelectStmt* s =
      stmt != nullptr && stmt->node_case == PG_QUERY__NODE__NODE_SELECT_STMT ? stmt->select_stmt
                                                                             : nullptr;
  // Which rows it returns must depend on each row alone: no other rows
  // through a subquery, a CTE, a LIMIT or OFFSET (a write to one row can
  // push another out of the window).
  if (s != nullptr && s->op == PG_QUERY__SET_OPERATION__SETOP_NONE && s->n_from_clause == 1 &&
      s->from_clause[0]->node_case == PG_QUERY__NODE__NODE_RANGE_VAR && s->with_clause == nullptr &&
      s->limit_count == nullptr && s->limit_offset == nullptr &&
      !HasSubquery(reinterpret_cast<const ProtoMessage*>(s->where_clause))) {
    if (s->n_group_clause == 0 && s->having_clause == nullptr && s->n_window_clause == 0 &&
        s->n_distinct_clause == 0) {
      trace.columns = KeyColumns(*s, key);
    }
    if (trace.columns.empty()) {
      std::map<std::string, std::vector<std::string>> values;
      PinnedValues(s->where_clause, key, params, values);
      if (values.size() == key.size() && key.size() == 1) {
        trace.pinned = values.begin()->second;
      } else if (values.size() == key.size()) {
        std::string composite = "(";
        for (size_t i = 0; i < key.size() && !composite.empty(); ++i) {
          const std::vector<std::string>& v = values[key[i]];
          composite = v.size() == 1 ? StrCat(composite, i ? "," : "", v[0]) : "";
        }
        if (!composite.empty()) trace.pinned = {composite + ")"};
      }
    }
  }
  return trace;
}

Comparison CompareResults(const ResultSet& a, const ResultSet& b, bool ordered) {
  Comparison c;
  if (!a.error_sqlstate.empty() || !b.error_sqlstate.empty()) {
    if (a.error_sqlstate == b.error_sqlstate) return c;
    c.match = false;
    c.reason = a.error_sqlstate.empty()
                   ? StrCat("the other side failed: ", b.error_sqlstate, " ", b.error_message)
               : b.error_sqlstate.empty()
                   ? StrCat("the authoritative side failed: ", a.error_sqlstate, " ",
                            a.error_message)
                   : StrCat("different errors: ", a.error_sqlstate, " and ", b.error_sqlstate);
    return c;
  }
  if (a.columns != b.columns) {
    c.match = false;
    c.reason = "columns differ (names or types)";
    return c;
  }
  if (ordered) {
    if (a.rows == b.rows) return c;
    c.match = false;
    c.reason = "rows differ (in order)";
    for (size_t i = 0; i < std::max(a.rows.size(), b.rows.size()); ++i) {
      const bool in_a = i < a.rows.size(), in_b = i < b.rows.size();
      if (in_a && in_b && a.rows[i] == b.rows[i]) continue;
      if (in_a && c.only_authoritative.size() < 5) c.only_authoritative.push_back(Image(a.rows[i]));
      if (in_b && c.only_other.size() < 5) c.only_other.push_back(Image(b.rows[i]));
    }
    return c;
  }
  std::map<Row, int64_t> count;
  for (const Row& r : a.rows) ++count[r];
  for (const Row& r : b.rows) --count[r];
  for (const auto& [row, n] : count) {
    if (n == 0) continue;
    c.match = false;
    if (n > 0 && c.only_authoritative.size() < 5) c.only_authoritative.push_back(Image(row));
    if (n < 0 && c.only_other.size() < 5) c.only_other.push_back(Image(row));
  }
  if (!c.match) c.reason = "rows differ";
  return c;
}

std::string Fingerprint(const std::string& sql) {
  PgQueryFingerprintResult r = pg_query_fingerprint(sql.c_str());
  std::string out = (r.error == nullptr && r.fingerprint_str != nullptr) ? r.fingerprint_str : "";
  pg_query_free_fingerprint_result(r);
  return out;
}

std::string Normalize(const std::string& sql) {
  PgQueryNormalizeResult r = pg_query_normalize(sql.c_str());
  std::string out = (r.error == nullptr && r.normalized_query != nullptr) ? r.normalized_query : sql;
  pg_query_free_normalize_result(r);
  return out;
}

}  // namespace pgshift::routing
