#include "routing/rewrite.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>

#include "common/strings.h"
#include "routing/expression_tree.h"
#include "routing/written_columns.h"

namespace pgshift::routing {

namespace {

using Node = PgQuery__Node;

bool Empty(const char* s) { return s == nullptr || *s == '\0'; }

const char* StringOf(const Node* node) {
  return node->node_case == PG_QUERY__NODE__NODE_STRING ? node->string->sval : nullptr;
}

class Rewriter {
 public:
  explicit Rewriter(const std::vector<TableRename>& renames) : renames_(renames) {}

  absl::Status Run(ParseTree& tree) {
    for (size_t i = 0; i < tree.get()->n_stmts; ++i) {
      if (Node* stmt = tree.get()->stmts[i]->stmt) WalkNode(stmt);
      if (!status_.ok()) return status_;
    }
    return status_;
  }

 private:
  // A table a statement's columns can be qualified by, at one query level.
  struct Binding {
    std::string refname;
    const TableRename* rename = nullptr;  // null: not a migrating table
  };
  // One FROM-list entry, for expanding `*` in order.
  struct Frame {
    std::vector<Binding> bindings;
    bool star_expandable = true;  // false with USING/NATURAL joins or unnamed items
  };

  void Fail(std::string message) {
    if (status_.ok()) status_ = absl::FailedPreconditionError(std::move(message));
  }
  void Check(const absl::Status& s) {
    if (!s.ok()) Fail(std::string(s.message()));
  }

  const TableRename* Match(const PgQuery__RangeVar* rv) const {
    if (!Empty(rv->catalogname)) return nullptr;
    if (Empty(rv->schemaname) && InCteScope(rv->relname)) return nullptr;
    std::string_view schema = Empty(rv->schemaname) ? "public" : rv->schemaname;
    for (const TableRename& r : renames_) {
      if (r.old_schema == schema && r.old_name == rv->relname) return &r;
    }
    return nullptr;
  }

  bool InCteScope(const char* name) const {
    for (const std::string& s : ctes_) {
      if (s == name) return true;
    }
    return false;
  }

  // Renames a table reference; `alias_back` gives an unaliased one its old
  // name as alias, so that columns qualified by that name still resolve.
  void RenameRangeVar(PgQuery__RangeVar* rv, bool alias_back) {
    const TableRename* r = Match(rv);
    if (r == nullptr) return;
    if (alias_back && rv->alias == nullptr) {
      rv->alias = static_cast<PgQuery__Alias*>(std::malloc(sizeof(PgQuery__Alias)));
      pg_query__alias__init(rv->alias);
      SetString(&rv->alias->aliasname, r->old_name);
    }
    SetString(&rv->schemaname, r->new_schema);
    SetString(&rv->relname, r->new_name);
  }

  Binding BindingFor(const PgQuery__RangeVar* rv) const {
    Binding b;
    b.refname = rv->alias != nullptr ? rv->alias->aliasname : rv->relname;
    b.rename = Match(rv);
    return b;
  }

  // Registers a FROM item's bindings (before any renaming).
  void Bind(Frame& frame, const Node* item) {
    switch (item->node_case) {
      case PG_QUERY__NODE__NODE_RANGE_VAR:
        frame.bindings.push_back(BindingFor(item->range_var));
        break;
      case PG_QUERY__NODE__NODE_RANGE_SUBSELECT:
        if (item->range_subselect->alias != nullptr) {
          frame.bindings.push_back({item->range_subselect->alias->aliasname, nullptr});
        } else {
          frame.star_expandable = false;
        }
        break;
      case PG_QUERY__NODE__NODE_RANGE_FUNCTION:
        if (item->range_function->alias != nullptr) {
          frame.bindings.push_back({item->range_function->alias->aliasname, nullptr});
        } else {
          frame.star_expandable = false;
        }
        break;
      case PG_QUERY__NODE__NODE_JOIN_EXPR: {
        const PgQuery__JoinExpr* join = item->join_expr;
        if (join->is_natural || join->n_using_clause > 0 || join->alias != nullptr) {
          frame.star_expandable = false;
        }
        if (join->larg) Bind(frame, join->larg);
        if (join->rarg) Bind(frame, join->rarg);
        break;
      }
      default:
        frame.star_expandable = false;
        break;
    }
  }

  // The FROM items' own table references get aliased back when renamed.
  void RenameFromItem(Node* item) {
    if (item->node_case == PG_QUERY__NODE__NODE_RANGE_VAR) {
      RenameRangeVar(item->range_var, true);
    } else if (item->node_case == PG_QUERY__NODE__NODE_JOIN_EXPR) {
      if (item->join_expr->larg) RenameFromItem(item->join_expr->larg);
      if (item->join_expr->rarg) RenameFromItem(item->join_expr->rarg);
      if (item->join_expr->quals) WalkNode(item->join_expr->quals);
    } else {
      WalkNode(item);
    }
  }

  // The migrating table a column reference resolves to, innermost query
  // level first, and the index of its column-name field.
  struct Resolved {
    const TableRename* rename;
    size_t column_field;
    std::string refname;  // what the table is known by where the column is named
    // Unqualified, found past a query level with a table whose columns
    // pgshift does not know: that table may have the column itself.
    bool uncertain = false;
  };
  std::optional<Resolved> Resolve(const PgQuery__ColumnRef* ref) const {
    size_t n = ref->n_fields;
    if (n == 0 || n > 3) return std::nullopt;
    for (size_t i = 0; i < n; ++i) {
      if (StringOf(ref->fields[i]) == nullptr) return std::nullopt;  // `*`
    }
    const char* column = StringOf(ref->fields[n - 1]);
    bool past_unknown = false;
    for (auto frame = frames_.rbegin(); frame != frames_.rend(); ++frame) {
      for (const Binding& b : frame->bindings) {
        if (n >= 2 && b.refname != StringOf(ref->fields[n - 2])) continue;
        if (n == 3 && (b.rename == nullptr || b.rename->old_schema != StringOf(ref->fields[0]))) {
          continue;
        }
        if (b.rename != nullptr &&
            (b.rename->columns.contains(column) || b.rename->Derived(column) != nullptr)) {
          return Resolved{b.rename, n - 1, b.refname, n == 1 && past_unknown};
        }
        if (n >= 2) return std::nullopt;  // found its table; the column is not renamed
        if (b.rename != nullptr && b.rename->old_columns != nullptr &&
            std::find(b.rename->old_columns->begin(), b.rename->old_columns->end(), column) !=
                b.rename->old_columns->end()) {
          return std::nullopt;  // this table's own column, under its own name
        }
      }
      for (const Binding& b : frame->bindings) {
        past_unknown = past_unknown || b.rename == nullptr || b.rename->old_columns == nullptr;
      }
    }
    return std::nullopt;
  }

  // An old column's expression over new's row, its columns qualified by
  // `refname`; null (and the rewrite fails) if it does not parse, which the
  // configuration's own check makes unreachable.
  Node* DerivedValue(const TableRename& r, const ColumnTransform& t, std::string_view refname) {
    absl::StatusOr<Node*> expr = ParseExpression(r.DerivedSql(t), refname);
    if (!expr.ok()) {
      Fail(StrCat("pgshift cannot read old_columns.", t.column, ": ", MessageOf(expr.status())));
      return nullptr;
    }
    return *expr;
  }

  // An unqualified name that a reshaped table's new columns would take
  // on new, though on old it means something else (an output column's
  // alias, a column of an outer query's table): the rewrite would change
  // what it reads.
  void RefuseNewOnlyName(const PgQuery__ColumnRef* ref) {
    if (ref->n_fields != 1 || StringOf(ref->fields[0]) == nullptr) return;
    const std::string column = StringOf(ref->fields[0]);
    for (const Frame& frame : frames_) {
      for (const Binding& b : frame.bindings) {
        const TableRename* r = b.rename;
        if (r == nullptr || !r->HasTransforms() || r->new_columns == nullptr ||
            r->old_columns == nullptr) {
          continue;
        }
        auto has = [&](const std::vector<std::string>& v) {
          return std::find(v.begin(), v.end(), column) != v.end();
        };
        if (has(*r->new_columns) && !has(*r->old_columns)) {
          Fail(StrCat("pgshift cannot read ", column, " on new as on old: ", r->new_schema, ".",
                      r->new_name, " has a column of that name, which ", r->OldTable(),
                      " does not; qualify the column or choose another alias"));
          return;
        }
      }
    }
  }

  void RewriteColumnRef(Node* node) {
    PgQuery__ColumnRef* ref = node->column_ref;
    std::optional<Resolved> r = Resolve(ref);
    if (!r) return RefuseNewOnlyName(ref);
    if (r->uncertain && r->rename->HasTransforms()) {
      return Fail(StrCat("pgshift cannot tell which table's ", StringOf(ref->fields[0]),
                         " this subquery reads: on new ", r->rename->OldTable(),
                         " computes it; qualify the column (", r->refname, ".",
                         StringOf(ref->fields[0]), ")"));
    }
    if (const ColumnTransform* t = r->rename->Derived(StringOf(ref->fields[r->column_field]))) {
      // The node takes the expression's content.
      Node* value = DerivedValue(*r->rename, *t, r->refname);
      if (value == nullptr) return;
      protobuf_c_message_free_unpacked(&ref->base, nullptr);
      *node = *value;
      std::free(value);
      return;
    }
    Node* field = ref->fields[r->column_field];
    SetString(&field->string->sval, r->rename->columns.at(field->string->sval));
    if (ref->n_fields == 3) {
      // schema.table.column: the table is now known by its alias (its old name).
      protobuf_c_message_free_unpacked(&ref->fields[0]->base, nullptr);
      ref->fields[0] = ref->fields[1];
      ref->fields[1] = ref->fields[2];
      ref->n_fields = 2;
    }
  }

  std::string OldColumnName(const TableRename& r, const std::string& new_column) const {
    for (const auto& [from, to] : r.columns) {
      if (to == new_column) return from;
    }
    return new_column;
  }

  // Whether `*` over a binding is spelled out: its columns are renamed or
  // change shape.
  static bool Reshaped(const Binding& b) {
    return b.rename != nullptr && (!b.rename->columns.empty() || b.rename->HasTransforms());
  }

  // `refname.*` for one binding, spelled out when its columns are renamed.
  void ExpandBinding(const Binding& b, std::vector<Node*>& out) {
    if (!Reshaped(b)) {
      out.push_back(MakeResTarget(MakeColumnRef(b.refname, ""), ""));
      return;
    }
    if (b.rename->HasTransforms()) return ExpandInOldShape(b, out);
    if (b.rename->new_columns == nullptr) {
      Fail(StrCat("pgshift cannot expand * over ", b.rename->old_schema, ".", b.rename->old_name,
                  ": the columns of ", b.rename->new_schema, ".", b.rename->new_name,
                  " could not be read from its backend's catalog"));
      return;
    }
    for (const std::string& column : *b.rename->new_columns) {
      std::string old = OldColumnName(*b.rename, column);
      out.push_back(MakeResTarget(MakeColumnRef(b.refname, column), old == column ? "" : old));
    }
  }

  // `refname.*` for a table whose columns change shape: old's columns, in
  // old's order, the derived ones through their expressions, so that the
  // application sees the table it knows.
  void ExpandInOldShape(const Binding& b, std::vector<Node*>& out) {
    const TableRename& r = *b.rename;
    if (r.old_columns == nullptr) {
      Fail(StrCat("pgshift cannot expand * over ", r.OldTable(), ": its columns could not be ",
                  "read from old's catalog; list the columns"));
      return;
    }
    for (const std::string& column : *r.old_columns) {
      if (const ColumnTransform* t = r.Derived(column)) {
        Node* value = DerivedValue(r, *t, b.refname);
        if (value == nullptr) return;
        out.push_back(MakeResTarget(value, column));
        continue;
      }
      std::string on_new = r.NewName(column);
      if (r.new_columns != nullptr &&
          std::find(r.new_columns->begin(), r.new_columns->end(), on_new) == r.new_columns->end()) {
        Fail(StrCat("pgshift cannot expand * over ", r.OldTable(), ": its column ", column,
                    " is not on ", r.new_schema, ".", r.new_name,
                    " and old_columns does not compute it; list the columns"));
        return;
      }
      out.push_back(
          MakeResTarget(MakeColumnRef(b.refname, on_new), on_new == column ? "" : column));
    }
  }

  // A select list or RETURNING list: `*` expanded where it covers renamed
  // columns, renamed columns aliased back to the names the client knows.
  void RewriteTargetList(size_t* count, Node*** items) {
    std::vector<Node*> out;
    bool changed = false;
    for (size_t i = 0; i < *count; ++i) {
      Node* item = (*items)[i];
      if (item->node_case != PG_QUERY__NODE__NODE_RES_TARGET) {
        out.push_back(item);
        continue;
      }
      PgQuery__ResTarget* target = item->res_target;
      if (std::optional<std::vector<Node*>> expanded = ExpandStar(target)) {
        protobuf_c_message_free_unpacked(&item->base, nullptr);
        out.insert(out.end(), expanded->begin(), expanded->end());
        changed = true;
        continue;
      }
      if (Empty(target->name)) {
        const PgQuery__ColumnRef* ref = LabelColumn(target->val);
        if (ref != nullptr && Resolve(ref)) {
          SetString(&target->name, StringOf(ref->fields[ref->n_fields - 1]));
        }
      }
      if (target->val != nullptr) WalkNode(target->val);
      out.push_back(item);
    }
    if (!changed) return;
    std::free(*items);
    *items = static_cast<Node**>(std::malloc(std::max<size_t>(out.size(), 1) * sizeof(Node*)));
    if (!out.empty()) std::memcpy(*items, out.data(), out.size() * sizeof(Node*));
    *count = out.size();
  }

  // The column an unnamed select-list item takes its label from, as
  // PostgreSQL labels it: a column reference, through casts and COLLATE.
  static const PgQuery__ColumnRef* LabelColumn(const Node* node) {
    while (node != nullptr) {
      switch (node->node_case) {
        case PG_QUERY__NODE__NODE_COLUMN_REF: return node->column_ref;
        case PG_QUERY__NODE__NODE_TYPE_CAST: node = node->type_cast->arg; break;
        case PG_QUERY__NODE__NODE_COLLATE_CLAUSE: node = node->collate_clause->arg; break;
        default: return nullptr;
      }
    }
    return nullptr;
  }

  // The replacement for `*` or `name.*`, when it covers renamed columns.
  std::optional<std::vector<Node*>> ExpandStar(const PgQuery__ResTarget* target) {
    if (!IsStar(target) || frames_.empty()) return std::nullopt;
    const PgQuery__ColumnRef* ref = target->val->column_ref;
    const Frame& frame = frames_.back();
    std::vector<Node*> out;
    if (ref->n_fields == 1) {
      bool any = false;
      for (const Binding& b : frame.bindings) any = any || Reshaped(b);
      if (!any) return std::nullopt;
      if (!frame.star_expandable) {
        for (const Binding& b : frame.bindings) {
          if (Reshaped(b)) {
            Fail(StrCat("pgshift cannot expand * over ", b.rename->old_schema, ".",
                        b.rename->old_name,
                        " here (a join with USING or NATURAL, or an unnamed FROM item); "
                        "list the columns"));
            break;
          }
        }
        return std::nullopt;
      }
      for (const Binding& b : frame.bindings) ExpandBinding(b, out);
      return out;
    }
    if (ref->n_fields == 2 && StringOf(ref->fields[0]) != nullptr) {
      for (auto f = frames_.rbegin(); f != frames_.rend(); ++f) {
        for (const Binding& b : f->bindings) {
          if (b.refname != StringOf(ref->fields[0])) continue;
          if (!Reshaped(b)) return std::nullopt;
          ExpandBinding(b, out);
          return out;
        }
      }
    }
    return std::nullopt;
  }

  void RenameTargetColumns(const TableRename* r, size_t count, Node** items) {
    if (r == nullptr) return;
    for (size_t i = 0; i < count; ++i) {
      if (items[i]->node_case != PG_QUERY__NODE__NODE_RES_TARGET) continue;
      PgQuery__ResTarget* t = items[i]->res_target;
      if (!Empty(t->name) && r->columns.contains(t->name)) {
        SetString(&t->name, r->columns.at(t->name));
      }
    }
  }

  void WalkWith(PgQuery__WithClause* with) {
    if (with == nullptr) return;
    std::vector<PgQuery__CommonTableExpr*> ctes;
    for (size_t i = 0; i < with->n_ctes; ++i) {
      if (with->ctes[i]->node_case == PG_QUERY__NODE__NODE_COMMON_TABLE_EXPR) {
        ctes.push_back(with->ctes[i]->common_table_expr);
      }
    }
    if (with->recursive) {
      for (auto* cte : ctes) ctes_.push_back(cte->ctename);
    }
    for (auto* cte : ctes) {
      if (cte->ctequery != nullptr) WalkNode(cte->ctequery);
      if (!with->recursive) ctes_.push_back(cte->ctename);
    }
  }

  void WalkSelect(PgQuery__SelectStmt* s) {
    size_t cte_depth = ctes_.size();
    WalkWith(s->with_clause);
    if (s->op != PG_QUERY__SET_OPERATION__SETOP_NONE) {
      if (s->larg) WalkSelect(s->larg);
      if (s->rarg) WalkSelect(s->rarg);
      WalkChildren(&s->base, {"with_clause", "larg", "rarg"});
      ctes_.resize(cte_depth);
      return;
    }
    Frame frame;
    for (size_t i = 0; i < s->n_from_clause; ++i) Bind(frame, s->from_clause[i]);
    frames_.push_back(std::move(frame));
    for (size_t i = 0; i < s->n_from_clause; ++i) RenameFromItem(s->from_clause[i]);
    RewriteTargetList(&s->n_target_list, &s->target_list);
    WalkChildren(&s->base, {"with_clause", "from_clause", "target_list"});
    frames_.pop_back();
    ctes_.resize(cte_depth);
  }

  void WalkInsert(PgQuery__InsertStmt* s) {
    size_t cte_depth = ctes_.size();
    WalkWith(s->with_clause);
    const TableRename* r = s->relation ? Match(s->relation) : nullptr;
    const size_t values = ValuesPerRow(s);  // before a `*` in it is spelled out
    // The target is not visible in the statement's own SELECT or VALUES.
    if (s->select_stmt) WalkNode(s->select_stmt);
    if (r != nullptr && s->n_cols == 0) Check(NameInsertedColumns(*r, s, values));
    if (r != nullptr && r->HasTransforms()) {
      Check(RewriteInsertColumns(*r, s));
    } else {
      RenameTargetColumns(r, s->n_cols, s->cols);
    }
    Frame frame;
    if (s->relation) {
      frame.bindings.push_back(BindingFor(s->relation));
      frame.bindings.push_back({"excluded", r});
    }
    frames_.push_back(std::move(frame));
    if (PgQuery__OnConflictClause* conflict = s->on_conflict_clause) {
      if (conflict->infer != nullptr && r != nullptr) {
        for (size_t i = 0; i < conflict->infer->n_index_elems; ++i) {
          Node* elem = conflict->infer->index_elems[i];
          if (elem->node_case == PG_QUERY__NODE__NODE_INDEX_ELEM &&
              !Empty(elem->index_elem->name) && r->columns.contains(elem->index_elem->name)) {
            SetString(&elem->index_elem->name, r->columns.at(elem->index_elem->name));
          }
        }
      }
      if (r != nullptr && r->HasTransforms()) {
        Check(RewriteSetList(*r, BindingFor(s->relation).refname, &conflict->n_target_list,
                             &conflict->target_list, [this](Node* item) { WalkNode(item); }));
        WalkChildren(&conflict->base, {"target_list"});
      } else {
        RenameTargetColumns(r, conflict->n_target_list, conflict->target_list);
        WalkChildren(&conflict->base, {});
      }
    }
    // Only the target binding: "excluded" is for ON CONFLICT alone.
    frames_.back().bindings.resize(s->relation ? 1 : 0);
    RewriteTargetList(&s->n_returning_list, &s->returning_list);
    frames_.pop_back();
    if (s->relation) RenameRangeVar(s->relation, true);
    ctes_.resize(cte_depth);
  }

  void WalkUpdate(PgQuery__UpdateStmt* s) {
    size_t cte_depth = ctes_.size();
    WalkWith(s->with_clause);
    const TableRename* r = s->relation ? Match(s->relation) : nullptr;
    Frame frame;
    if (s->relation) frame.bindings.push_back(BindingFor(s->relation));
    for (size_t i = 0; i < s->n_from_clause; ++i) Bind(frame, s->from_clause[i]);
    frames_.push_back(std::move(frame));
    for (size_t i = 0; i < s->n_from_clause; ++i) RenameFromItem(s->from_clause[i]);
    if (r != nullptr && r->HasTransforms()) {
      Check(RewriteSetList(*r, BindingFor(s->relation).refname, &s->n_target_list, &s->target_list,
                           [this](Node* item) { WalkNode(item); }));
    } else {
      RenameTargetColumns(r, s->n_target_list, s->target_list);
      for (size_t i = 0; i < s->n_target_list; ++i) WalkNode(s->target_list[i]);
    }
    if (s->where_clause) WalkNode(s->where_clause);
    RewriteTargetList(&s->n_returning_list, &s->returning_list);
    frames_.pop_back();
    if (s->relation) RenameRangeVar(s->relation, true);
    ctes_.resize(cte_depth);
  }

  void WalkDelete(PgQuery__DeleteStmt* s) {
    size_t cte_depth = ctes_.size();
    WalkWith(s->with_clause);
    Frame frame;
    if (s->relation) frame.bindings.push_back(BindingFor(s->relation));
    for (size_t i = 0; i < s->n_using_clause; ++i) Bind(frame, s->using_clause[i]);
    frames_.push_back(std::move(frame));
    for (size_t i = 0; i < s->n_using_clause; ++i) RenameFromItem(s->using_clause[i]);
    if (s->where_clause) WalkNode(s->where_clause);
    RewriteTargetList(&s->n_returning_list, &s->returning_list);
    frames_.pop_back();
    if (s->relation) RenameRangeVar(s->relation, true);
    ctes_.resize(cte_depth);
  }

  void WalkCopy(PgQuery__CopyStmt* s) {
    if (s->relation) {
      if (const TableRename* r = Match(s->relation)) {
        if (r->HasTransforms()) {
          Fail(StrCat("pgshift cannot COPY ", r->OldTable(), " on new: its columns change ",
                      "shape there; COPY (SELECT ...) TO reads it through its transforms"));
          return;
        }
        for (size_t i = 0; i < s->n_attlist; ++i) {
          Node* col = s->attlist[i];
          if (StringOf(col) != nullptr && r->columns.contains(col->string->sval)) {
            SetString(&col->string->sval, r->columns.at(col->string->sval));
          }
        }
      }
      RenameRangeVar(s->relation, false);
    }
    if (s->query) WalkNode(s->query);
  }

  void WalkNode(Node* node) {
    switch (node->node_case) {
      case PG_QUERY__NODE__NODE_SELECT_STMT: return WalkSelect(node->select_stmt);
      case PG_QUERY__NODE__NODE_INSERT_STMT: return WalkInsert(node->insert_stmt);
      case PG_QUERY__NODE__NODE_UPDATE_STMT: return WalkUpdate(node->update_stmt);
      case PG_QUERY__NODE__NODE_DELETE_STMT: return WalkDelete(node->delete_stmt);
      case PG_QUERY__NODE__NODE_COPY_STMT: return WalkCopy(node->copy_stmt);
      case PG_QUERY__NODE__NODE_RANGE_VAR: return RenameRangeVar(node->range_var, false);
      case PG_QUERY__NODE__NODE_COLUMN_REF: return RewriteColumnRef(node);
      default: WalkChildren(&node->base, {});
    }
  }

  // Visits the Node children of any message, skipping the named fields.
  void WalkChildren(ProtoMessage* msg, std::initializer_list<std::string_view> skip) {
    ForEachChild(msg, [&](const char* field, const ProtoMessage* child) {
      for (std::string_view s : skip) {
        if (s == field) return;
      }
      auto* mutable_child = const_cast<ProtoMessage*>(child);
      if (Is(child, pg_query__node__descriptor)) {
        WalkNode(reinterpret_cast<Node*>(mutable_child));
      } else if (Is(child, pg_query__select_stmt__descriptor)) {
        WalkSelect(reinterpret_cast<PgQuery__SelectStmt*>(mutable_child));
      } else if (Is(child, pg_query__range_var__descriptor)) {
        RenameRangeVar(reinterpret_cast<PgQuery__RangeVar*>(mutable_child), false);
      } else {
        WalkChildren(mutable_child, {});
      }
    });
  }

  const std::vector<TableRename>& renames_;
  std::vector<Frame> frames_;
  std::vector<std::string> ctes_;
  absl::Status status_;
};

}  // namespace

absl::Status RewriteTree(ParseTree& tree, const std::vector<TableRename>& renames) {
  if (renames.empty()) return absl::OkStatus();
  return Rewriter(renames).Run(tree);
}

}  // namespace pgshift::routing
