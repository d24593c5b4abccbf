#include "routing/written_columns.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "common/strings.h"
#include "routing/expression_tree.h"

namespace pgshift::routing {

namespace {

using Node = PgQuery__Node;

bool Reads(const ColumnTransform& t, const std::string& column) {
  return std::binary_search(t.reads.begin(), t.reads.end(), column);
}

// A value a write gives a column, and whether it was, as the client wrote
// it, a plain value (IsPlainValue): one that may be placed more than once.
struct WrittenValue {
  const Node* value;
  bool plain;
};
using Written = std::map<std::string, WrittenValue>;

// The computed columns a write of `written` (old's names) sets: those that
// read a written column, or every one for a new row (`every`); and whether
// each derived column written reaches one of them.
absl::StatusOr<std::vector<const ColumnTransform*>> Recomputed(
    const TableRename& r, const std::vector<std::string>& written, bool every = false) {
  std::vector<const ColumnTransform*> out;
  if (r.computed != nullptr) {
    for (const ColumnTransform& t : *r.computed) {
      if (every || std::any_of(written.begin(), written.end(),
                               [&](const std::string& w) { return Reads(t, w); })) {
        out.push_back(&t);
      }
    }
  }
  for (const std::string& w : written) {
    const ColumnTransform* derived = r.Derived(w);
    if (derived == nullptr) continue;
    if (std::none_of(out.begin(), out.end(),
                     [&](const ColumnTransform* t) { return Reads(*t, w); })) {
      return absl::FailedPreconditionError(StrCat(
          "pgshift cannot write ", r.OldTable(), ".", w, " while new is authoritative: new does ",
          "not store it (old_columns computes it as ", derived->expression,
          ") and no new_columns expression takes a value from it, so the write would be lost"));
    }
  }
  return out;
}

// `t`'s expression over the written row: a written column is its value
// (copied; counted in `uses`), one left unwritten is what the row holds on
// new, read through `refname` (none for an INSERT, which must write it).
absl::StatusOr<Node*> ComputedValue(const TableRename& r, const ColumnTransform& t,
                                    const Written& written, std::string_view refname,
                                    std::map<std::string, int>& uses) {
  for (const std::string& column : t.reads) {
    if (!written.contains(column) && refname.empty()) {
      return absl::FailedPreconditionError(StrCat("pgshift: name ", r.OldTable(), ".", column,
                                                  " in this INSERT too: new computes ", t.column,
                                                  " from it (new_columns: ", t.expression, ")"));
    }
  }
  absl::StatusOr<Node*> expr = ParseExpression(t.expression);
  if (!expr.ok()) return expr.status();
  absl::Status failed;
  ReplaceColumns(*expr, [&](std::string_view name) -> Node* {
    std::string column(name);
    if (auto value = written.find(column); value != written.end()) {
      ++uses[column];
      return CopyNode(value->second.value);
    }
    if (const ColumnTransform* d = r.Derived(column)) {
      absl::StatusOr<Node*> current = ParseExpression(r.DerivedSql(*d), refname);
      if (current.ok()) return *current;
      failed = current.status();
      return nullptr;
    }
    return MakeColumnRef(refname, r.NewName(column));
  });
  if (!failed.ok()) {
    FreeNode(*expr);
    return failed;
  }
  return expr;
}

// A value placed more than once must give the same each time.
absl::Status CheckUses(const TableRename& r, const Written& written,
                       const std::map<std::string, int>& uses) {
  for (const auto& [column, count] : uses) {
    int placed = count + (r.Derived(column) == nullptr ? 1 : 0);
    if (placed > 1 && !written.at(column).plain) {
      return absl::FailedPreconditionError(
          StrCat("pgshift: the value written to ", r.OldTable(), ".", column,
                 " is used by several of new's columns; give it as a constant or a parameter, ",
                 "so that it is computed once"));
    }
  }
  return absl::OkStatus();
}

// The computed values for one written row; on failure none is kept.
absl::StatusOr<std::vector<Node*>> ComputedValues(
    const TableRename& r, const std::vector<const ColumnTransform*>& recompute,
    const Written& written, std::string_view refname) {
  std::vector<Node*> values;
  std::map<std::string, int> uses;
  absl::Status status;
  for (const ColumnTransform* t : recompute) {
    absl::StatusOr<Node*> value = ComputedValue(r, *t, written, refname, uses);
    if (!value.ok()) {
      status = value.status();
      break;
    }
    values.push_back(*value);
  }
  if (status.ok()) status = CheckUses(r, written, uses);
  if (!status.ok()) {
    for (Node* v : values) FreeNode(v);
    return status;
  }
  return values;
}

void ReplaceArray(size_t* count, Node*** items, const std::vector<Node*>& out) {
  std::free(*items);
  *items = static_cast<Node**>(std::malloc(std::max<size_t>(out.size(), 1) * sizeof(Node*)));
  if (!out.empty()) std::memcpy(*items, out.data(), out.size() * sizeof(Node*));
  *count = out.size();
}

absl::Status ComputedNameFree(const TableRename& r, const std::vector<std::string>& written,
                              const std::vector<const ColumnTransform*>& recompute) {
  for (const ColumnTransform* t : recompute) {
    for (const std::string& w : written) {
      if (r.Derived(w) == nullptr && r.NewName(w) == t->column) {
        return absl::FailedPreconditionError(
            StrCat("pgshift: this write sets ", r.OldTable(), ".", w, ", which is ", t->column,
                   " on new, and new_columns computes ", t->column, " too"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

size_t ValuesPerRow(const PgQuery__InsertStmt* s) {
  if (s->select_stmt == nullptr || s->select_stmt->node_case != PG_QUERY__NODE__NODE_SELECT_STMT) {
    return 0;
  }
  const PgQuery__SelectStmt* select = s->select_stmt->select_stmt;
  if (select->n_values_lists > 0) {
    const Node* row = select->values_lists[0];
    return row->node_case == PG_QUERY__NODE__NODE_LIST ? row->list->n_items : 0;
  }
  if (select->op != PG_QUERY__SET_OPERATION__SETOP_NONE) return 0;
  for (size_t i = 0; i < select->n_target_list; ++i) {
    const Node* t = select->target_list[i];
    if (t->node_case == PG_QUERY__NODE__NODE_RES_TARGET && IsStar(t->res_target)) return 0;
  }
  return select->n_target_list;
}

absl::Status NameInsertedColumns(const TableRename& r, PgQuery__InsertStmt* s, size_t values) {
  if (s->select_stmt == nullptr || r.old_columns == nullptr) {
    return absl::OkStatus();  // DEFAULT VALUES; unknown
  }
  std::vector<std::string> wanted;  // the old columns under their new names
  for (const std::string& column : *r.old_columns) {
    wanted.push_back(r.NewName(column));
  }
  if (!r.HasTransforms() && r.new_columns != nullptr && r.new_columns->size() >= wanted.size() &&
      std::equal(wanted.begin(), wanted.end(), r.new_columns->begin())) {
    return absl::OkStatus();  // the same order: nothing to say
  }
  if (values == 0 || values > r.old_columns->size()) {
    return absl::FailedPreconditionError(StrCat(
        "pgshift: name the columns of this INSERT into ", r.old_schema, ".", r.old_name,
        ": its new table ", r.new_schema, ".", r.new_name, " orders its columns differently"));
  }
  s->cols = static_cast<Node**>(std::malloc(values * sizeof(Node*)));
  s->n_cols = values;
  for (size_t i = 0; i < values; ++i) {
    // Old names: the renames are applied to the list as to any other.
    s->cols[i] = MakeResTarget(nullptr, (*r.old_columns)[i]);
  }
  return absl::OkStatus();
}

absl::Status RewriteSetList(const TableRename& r, std::string_view refname, size_t* count,
                            Node*** items, const std::function<void(Node*)>& walk) {
  Written written;
  std::vector<std::string> names;
  for (size_t i = 0; i < *count; ++i) {
    if ((*items)[i]->node_case != PG_QUERY__NODE__NODE_RES_TARGET) continue;
    const PgQuery__ResTarget* t = (*items)[i]->res_target;
    if (t->name == nullptr) continue;
    bool whole = t->n_indirection == 0 && t->val != nullptr &&
                 t->val->node_case != PG_QUERY__NODE__NODE_MULTI_ASSIGN_REF;
    std::vector<std::string> one = {t->name};
    absl::StatusOr<std::vector<const ColumnTransform*>> touched = Recomputed(r, one);
    const bool feeds = r.Derived(t->name) != nullptr || (touched.ok() && !touched->empty());
    if (feeds && whole && t->val->node_case == PG_QUERY__NODE__NODE_SET_TO_DEFAULT) {
      return absl::FailedPreconditionError(
          StrCat("pgshift: give ", r.OldTable(), ".", t->name,
                 " a value, not DEFAULT: new computes columns from it"));
    }
    if (!whole && feeds) {
      return absl::FailedPreconditionError(StrCat("pgshift: set ", r.OldTable(), ".", t->name,
                                                  " on its own, as a whole column (SET ", t->name,
                                                  " = value): new computes columns from it"));
    }
    if (whole) written[t->name] = {t->val, IsPlainValue(t->val)};
    names.push_back(t->name);
  }
  for (size_t i = 0; i < *count; ++i) walk((*items)[i]);
  absl::StatusOr<std::vector<const ColumnTransform*>> recompute = Recomputed(r, names);
  if (!recompute.ok()) return recompute.status();
  if (absl::Status free = ComputedNameFree(r, names, *recompute); !free.ok()) return free;
  absl::StatusOr<std::vector<Node*>> values = ComputedValues(r, *recompute, written, refname);
  if (!values.ok()) return values.status();
  std::vector<Node*> out;
  for (size_t i = 0; i < *count; ++i) {
    Node* item = (*items)[i];
    if (item->node_case == PG_QUERY__NODE__NODE_RES_TARGET && item->res_target->name != nullptr) {
      PgQuery__ResTarget* t = item->res_target;
      if (r.Derived(t->name) != nullptr) {
        FreeNode(item);
        continue;
      }
      SetString(&t->name, r.NewName(t->name));
    }
    out.push_back(item);
  }
  for (size_t i = 0; i < recompute->size(); ++i) {
    out.push_back(MakeResTarget((*values)[i], (*recompute)[i]->column));
  }
  ReplaceArray(count, items, out);
  return absl::OkStatus();
}

absl::Status RewriteInsertColumns(const TableRename& r, PgQuery__InsertStmt* s) {
  std::vector<std::string> names;
  for (size_t i = 0; i < s->n_cols; ++i) {
    const PgQuery__ResTarget* t = s->cols[i]->res_target;
    if (t->n_indirection > 0) {
      return absl::FailedPreconditionError(StrCat("pgshift: insert ", r.OldTable(), ".", t->name,
                                                  " as a whole column: its table changes shape"));
    }
    names.push_back(t->name);
  }
  // A new row: every computed column, from the values the INSERT gives.
  absl::StatusOr<std::vector<const ColumnTransform*>> recompute = Recomputed(r, names, true);
  if (!recompute.ok()) return recompute.status();
  if (absl::Status free = ComputedNameFree(r, names, *recompute); !free.ok()) return free;
  auto keep = [&](size_t i) { return r.Derived(names[i]) == nullptr; };
  if (!recompute->empty()) {
    const PgQuery__SelectStmt* select =
        s->select_stmt != nullptr && s->select_stmt->node_case == PG_QUERY__NODE__NODE_SELECT_STMT
            ? s->select_stmt->select_stmt
            : nullptr;
    if (select == nullptr || select->n_values_lists == 0) {
      return absl::FailedPreconditionError(StrCat(
          "pgshift: write the rows of this INSERT into ", r.OldTable(), " as VALUES: new computes ",
          (*recompute)[0]->column, " from the columns it sets"));
    }
    for (size_t row = 0; row < select->n_values_lists; ++row) {
      PgQuery__List* list = select->values_lists[row]->list;
      if (list->n_items != names.size()) {
        return absl::FailedPreconditionError(StrCat("pgshift: each row of this INSERT into ",
                                                    r.OldTable(),
                                                    " must give every column it names"));
      }
      Written written;
      for (size_t i = 0; i < names.size(); ++i) {
        if (list->items[i]->node_case == PG_QUERY__NODE__NODE_SET_TO_DEFAULT &&
            std::any_of(recompute->begin(), recompute->end(),
                        [&](const ColumnTransform* t) { return Reads(*t, names[i]); })) {
          return absl::FailedPreconditionError(
              StrCat("pgshift: give ", r.OldTable(), ".", names[i],
                     " a value, not DEFAULT: new computes columns from it"));
        }
        written[names[i]] = {list->items[i], IsPlainValue(list->items[i])};
      }
      absl::StatusOr<std::vector<Node*>> values = ComputedValues(r, *recompute, written, "");
      if (!values.ok()) return values.status();
      std::vector<Node*> out;
      for (size_t i = 0; i < names.size(); ++i) {
        if (keep(i)) {
          out.push_back(list->items[i]);
        } else {
          FreeNode(list->items[i]);
        }
      }
      out.insert(out.end(), values->begin(), values->end());
      ReplaceArray(&list->n_items, &list->items, out);
    }
  } else if (!std::all_of(names.begin(), names.end(),
                          [&](const std::string& n) { return r.Derived(n) == nullptr; })) {
    return absl::InternalError(
        "a derived column with nothing recomputed");  // Recomputed refuses it
  }
  std::vector<Node*> cols;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!keep(i)) {
      FreeNode(s->cols[i]);
      continue;
    }
    SetString(&s->cols[i]->res_target->name, r.NewName(names[i]));
    cols.push_back(s->cols[i]);
  }
  for (const ColumnTransform* t : *recompute) cols.push_back(MakeResTarget(nullptr, t->column));
  ReplaceArray(&s->n_cols, &s->cols, cols);
  return absl::OkStatus();
}

}  // namespace pgshift::routing
