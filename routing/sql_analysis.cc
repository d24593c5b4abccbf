#include "routing/sql_analysis.h"

#include <cstring>
#include <memory>

#include "common/strings.h"
#include "routing/parse_tree.h"

namespace pgshift::routing {

namespace {

using Message = ProtoMessage;

// Walks one statement, sorting every table reference into reads or writes.
class TableCollector {
 public:
  explicit TableCollector(StatementInfo& info) : info_(info) {}

  void Walk(const Message* msg) {
    MarkTargets(msg);
    if (Is(msg, pg_query__func_call__descriptor)) RecordFunction(msg);
    if (Is(msg, pg_query__range_var__descriptor)) {
      Record(reinterpret_cast<const PgQuery__RangeVar*>(msg));
      return;
    }
    if (const PgQuery__WithClause* with = WithClauseOf(msg)) {
      WalkWithScope(msg, with);
      return;
    }
    ForEachChild(msg, [&](const char*, const Message* child) { Walk(child); });
  }

 private:
  void RecordFunction(const Message* msg) {
    const auto* call = reinterpret_cast<const PgQuery__FuncCall*>(msg);
    if (call->n_funcname == 0) return;
    const PgQuery__Node* last = call->funcname[call->n_funcname - 1];
    if (last->node_case == PG_QUERY__NODE__NODE_STRING && last->string->sval != nullptr) {
      info_.functions.insert(last->string->sval);
    }
  }

  // Relations a statement writes are known from the statement node, before
  // its children are visited.
  void MarkTargets(const Message* msg) {
    auto target = [&](const PgQuery__RangeVar* rv) {
      if (rv != nullptr) targets_.insert(rv);
    };
    if (Is(msg, pg_query__insert_stmt__descriptor)) {
      target(reinterpret_cast<const PgQuery__InsertStmt*>(msg)->relation);
    } else if (Is(msg, pg_query__update_stmt__descriptor)) {
      target(reinterpret_cast<const PgQuery__UpdateStmt*>(msg)->relation);
    } else if (Is(msg, pg_query__delete_stmt__descriptor)) {
      target(reinterpret_cast<const PgQuery__DeleteStmt*>(msg)->relation);
    } else if (Is(msg, pg_query__merge_stmt__descriptor)) {
      target(reinterpret_cast<const PgQuery__MergeStmt*>(msg)->relation);
    } else if (Is(msg, pg_query__copy_stmt__descriptor)) {
      auto copy = reinterpret_cast<const PgQuery__CopyStmt*>(msg);
      if (copy->is_from) target(copy->relation);
    } else if (Is(msg, pg_query__into_clause__descriptor)) {
      target(reinterpret_cast<const PgQuery__IntoClause*>(msg)->rel);
    } else if (Is(msg, pg_query__truncate_stmt__descriptor) ||
               Is(msg, pg_query__create_stmt__descriptor) ||
               Is(msg, pg_query__alter_table_stmt__descriptor) ||
               Is(msg, pg_query__index_stmt__descriptor) ||
               Is(msg, pg_query__rename_stmt__descriptor) ||
               Is(msg, pg_query__view_stmt__descriptor) ||
               Is(msg, pg_query__create_seq_stmt__descriptor) ||
               Is(msg, pg_query__alter_seq_stmt__descriptor) ||
               Is(msg, pg_query__grant_stmt__descriptor)) {
      // The relation these name ("relation", "view", "sequence", or each of
      // "relations"/"objects") is their subject.
      ForEachChild(msg, [&](const char* name, const Message* child) {
        if ((std::strcmp(name, "relation") == 0 || std::strcmp(name, "view") == 0 ||
             std::strcmp(name, "sequence") == 0) &&
            Is(child, pg_query__range_var__descriptor)) {
          target(reinterpret_cast<const PgQuery__RangeVar*>(child));
        } else if ((std::strcmp(name, "relations") == 0 || std::strcmp(name, "objects") == 0) &&
                   Is(child, pg_query__node__descriptor)) {
          auto node = reinterpret_cast<const PgQuery__Node*>(child);
          if (node->node_case == PG_QUERY__NODE__NODE_RANGE_VAR) target(node->range_var);
        }
      });
    } else if (Is(msg, pg_query__drop_stmt__descriptor)) {
      RecordDroppedTables(reinterpret_cast<const PgQuery__DropStmt*>(msg));
    }
  }

  void Record(const PgQuery__RangeVar* rv) {
    bool unqualified = rv->schemaname == nullptr || *rv->schemaname == '\0';
    if (unqualified && InCteScope(rv->relname)) return;  // a CTE, not a table
    std::string name = QualifiedName(rv->schemaname, rv->relname);
    if (targets_.contains(rv)) {
      info_.writes.insert(name);
      info_.reads.erase(name);
    } else if (!info_.writes.contains(name)) {
      info_.reads.insert(name);
    }
  }

  // DROP TABLE/VIEW/... names its objects as lists of identifiers.
  void RecordDroppedTables(const PgQuery__DropStmt* drop) {
    if (drop->remove_type != PG_QUERY__OBJECT_TYPE__OBJECT_TABLE &&
        drop->remove_type != PG_QUERY__OBJECT_TYPE__OBJECT_VIEW &&
        drop->remove_type != PG_QUERY__OBJECT_TYPE__OBJECT_MATVIEW &&
        drop->remove_type != PG_QUERY__OBJECT_TYPE__OBJECT_FOREIGN_TABLE) {
      return;
    }
    for (size_t i = 0; i < drop->n_objects; ++i) {
      const PgQuery__Node* obj = drop->objects[i];
      if (obj->node_case != PG_QUERY__NODE__NODE_LIST) continue;
      const PgQuery__List* parts = obj->list;
      std::vector<const char*> names;
      for (size_t k = 0; k < parts->n_items; ++k) {
        if (parts->items[k]->node_case == PG_QUERY__NODE__NODE_STRING) {
          names.push_back(parts->items[k]->string->sval);
        }
      }
      if (names.size() == 1) info_.writes.insert(QualifiedName(nullptr, names[0]));
      if (names.size() >= 2) {
        info_.writes.insert(QualifiedName(names[names.size() - 2], names.back()));
      }
    }
  }

  static const PgQuery__WithClause* WithClauseOf(const Message* msg) {
    if (Is(msg, pg_query__select_stmt__descriptor)) {
      return reinterpret_cast<const PgQuery__SelectStmt*>(msg)->with_clause;
    }
    if (Is(msg, pg_query__insert_stmt__descriptor)) {
      return reinterpret_cast<const PgQuery__InsertStmt*>(msg)->with_clause;
    }
    if (Is(msg, pg_query__update_stmt__descriptor)) {
      return reinterpret_cast<const PgQuery__UpdateStmt*>(msg)->with_clause;
    }
    if (Is(msg, pg_query__delete_stmt__descriptor)) {
      return reinterpret_cast<const PgQuery__DeleteStmt*>(msg)->with_clause;
    }
    if (Is(msg, pg_query__merge_stmt__descriptor)) {
      return reinterpret_cast<const PgQuery__MergeStmt*>(msg)->with_clause;
    }
    return nullptr;
  }

  // A non-recursive WITH makes each CTE visible to the ones after it and to
  // the statement body; a recursive one makes all of them visible everywhere.
  void WalkWithScope(const Message* msg, const PgQuery__WithClause* with) {
    size_t depth = scope_.size();
    std::vector<const PgQuery__CommonTableExpr*> ctes;
    for (size_t i = 0; i < with->n_ctes; ++i) {
      if (with->ctes[i]->node_case == PG_QUERY__NODE__NODE_COMMON_TABLE_EXPR) {
        ctes.push_back(with->ctes[i]->common_table_expr);
      }
    }
    if (with->recursive) {
      for (auto* cte : ctes) scope_.push_back(cte->ctename);
    }
    for (auto* cte : ctes) {
      if (cte->ctequery != nullptr) Walk(&cte->ctequery->base);
      if (!with->recursive) scope_.push_back(cte->ctename);
    }
    ForEachChild(msg, [&](const char* name, const Message* child) {
      if (std::strcmp(name, "with_clause") != 0) Walk(child);
    });
    scope_.resize(depth);
  }

  bool InCteScope(const char* name) const {
    for (const std::string& s : scope_) {
      if (s == name) return true;
    }
    return false;
  }

  StatementInfo& info_;
  std::set<const PgQuery__RangeVar*> targets_;
  std::vector<std::string> scope_;  // CTE names visible here
};

StatementKind KindOf(const PgQuery__Node* node) {
  switch (node->node_case) {
    case PG_QUERY__NODE__NODE_SELECT_STMT:
      return node->select_stmt->into_clause ? StatementKind::kDdl : StatementKind::kRead;
    case PG_QUERY__NODE__NODE_DECLARE_CURSOR_STMT:
      return StatementKind::kRead;
    case PG_QUERY__NODE__NODE_INSERT_STMT:
      return StatementKind::kInsert;
    case PG_QUERY__NODE__NODE_UPDATE_STMT:
      return StatementKind::kUpdate;
    case PG_QUERY__NODE__NODE_DELETE_STMT:
      return StatementKind::kDelete;
    case PG_QUERY__NODE__NODE_MERGE_STMT:
      return StatementKind::kMerge;
    case PG_QUERY__NODE__NODE_COPY_STMT:
      return StatementKind::kCopy;
    case PG_QUERY__NODE__NODE_TRUNCATE_STMT:
      return StatementKind::kTruncate;
    case PG_QUERY__NODE__NODE_TRANSACTION_STMT:
      return StatementKind::kTransaction;
    case PG_QUERY__NODE__NODE_EXPLAIN_STMT:
      // EXPLAIN ANALYZE runs its statement: it is what it explains.
      return node->explain_stmt->query ? KindOf(node->explain_stmt->query) : StatementKind::kOther;
    case PG_QUERY__NODE__NODE_VARIABLE_SET_STMT:
    case PG_QUERY__NODE__NODE_VARIABLE_SHOW_STMT:
    case PG_QUERY__NODE__NODE_PREPARE_STMT:
    case PG_QUERY__NODE__NODE_EXECUTE_STMT:
    case PG_QUERY__NODE__NODE_DEALLOCATE_STMT:
    case PG_QUERY__NODE__NODE_LISTEN_STMT:
    case PG_QUERY__NODE__NODE_UNLISTEN_STMT:
    case PG_QUERY__NODE__NODE_NOTIFY_STMT:
    case PG_QUERY__NODE__NODE_DISCARD_STMT:
    case PG_QUERY__NODE__NODE_FETCH_STMT:
    case PG_QUERY__NODE__NODE_CLOSE_PORTAL_STMT:
      return StatementKind::kSession;
    default:
      break;
  }
  // DDL by the name of its node: CreateStmt, AlterTableStmt, DropStmt, ...
  const Message* inner = nullptr;
  ForEachChild(&node->base, [&](const char*, const Message* child) { inner = child; });
  if (inner == nullptr) return StatementKind::kOther;
  std::string_view name = inner->descriptor->short_name;
  for (std::string_view prefix : {"Create", "Alter", "Drop", "Rename", "Comment", "Grant",
                                  "Index", "View", "Rule", "Reindex", "Cluster",
                                  "RefreshMatView", "SecLabel"}) {
    if (name.starts_with(prefix)) return StatementKind::kDdl;
  }
  return StatementKind::kOther;
}

}  // namespace

std::string_view StatementKindName(StatementKind kind) {
  switch (kind) {
    case StatementKind::kRead: return "read";
    case StatementKind::kInsert: return "insert";
    case StatementKind::kUpdate: return "update";
    case StatementKind::kDelete: return "delete";
    case StatementKind::kMerge: return "merge";
    case StatementKind::kCopy: return "copy";
    case StatementKind::kTruncate: return "truncate";
    case StatementKind::kDdl: return "ddl";
    case StatementKind::kTransaction: return "transaction";
    case StatementKind::kSession: return "session";
    case StatementKind::kOther: return "other";
  }
  return "other";
}

std::vector<StatementInfo> AnalyzeTree(const ParseTree& tree) {
  std::vector<StatementInfo> statements;
  for (size_t i = 0; i < tree.get()->n_stmts; ++i) {
    const PgQuery__RawStmt* raw = tree.get()->stmts[i];
    StatementInfo info;
    info.sql = tree.StatementText(i);
    if (raw->stmt != nullptr) {
      info.kind = KindOf(raw->stmt);
      TableCollector(info).Walk(&raw->stmt->base);
    }
    statements.push_back(std::move(info));
  }
  return statements;
}

std::optional<PreparedStatementUse> PreparedStatementUseOf(std::string_view sql) {
  absl::StatusOr<ParseTree> tree = ParseTree::Parse(sql);
  if (!tree.ok() || tree->get()->n_stmts != 1 || tree->get()->stmts[0]->stmt == nullptr) {
    return std::nullopt;
  }
  const PgQuery__Node* node = tree->get()->stmts[0]->stmt;
  using Use = PreparedStatementUse;
  switch (node->node_case) {
    case PG_QUERY__NODE__NODE_PREPARE_STMT:
      return Use{Use::kPrepare, node->prepare_stmt->name};
    case PG_QUERY__NODE__NODE_EXECUTE_STMT:
      return Use{Use::kExecute, node->execute_stmt->name};
    case PG_QUERY__NODE__NODE_DEALLOCATE_STMT:
      // DEALLOCATE ALL has no name.
      return Use{Use::kDeallocate,
                 node->deallocate_stmt->name ? node->deallocate_stmt->name : ""};
    case PG_QUERY__NODE__NODE_DISCARD_STMT:
      if (node->discard_stmt->target != PG_QUERY__DISCARD_MODE__DISCARD_ALL) return std::nullopt;
      return Use{Use::kDeallocate, ""};
    default:
      return std::nullopt;
  }
}

absl::StatusOr<std::vector<StatementInfo>> AnalyzeSql(std::string_view sql) {
  absl::StatusOr<ParseTree> tree = ParseTree::Parse(sql);
  if (!tree.ok()) return tree.status();
  return AnalyzeTree(*tree);
}

}  // namespace pgshift::routing
