#include "routing/mirror.h"

#include <cstdlib>
#include <cstring>

#include "common/strings.h"

namespace pgshift::routing {

namespace {

using Node = PgQuery__Node;

absl::Status Refuse(const MirrorSpec& spec, std::string_view why) {
  return absl::FailedPreconditionError(
      StrCat("pgshift: cannot mirror this write to ", spec.table, " in phase ", spec.phase, ": ",
             why));
}

const std::string* MirrorColumn(const MirrorSpec& spec, const std::string& column) {
  for (const MirroredColumn& c : spec.columns) {
    if (c.computed.empty() && c.source == column) return &c.mirror;
  }
  return nullptr;
}

// A column's value in a row of the authoritative table, named `ref`
// ("pgshift_rows." or empty).
std::string ValueOf(const MirroredColumn& c, std::string_view ref) {
  return c.computed.empty() ? StrCat(ref, QuoteIdent(c.source)) : c.computed;
}

bool IsKey(const MirrorSpec& spec, std::string_view column) {
  for (const std::string& k : spec.key) {
    if (k == column) return true;
  }
  return false;
}

// The statement that applies the written rows to the mirror. On one
// database they are the CTE pgshift_rows, under the authoritative names;
// on another server, $1 as a JSON array of rows under the mirror's names.
absl::StatusOr<std::string> MirrorSql(const MirrorSpec& spec, PgQuery__Node__NodeCase kind,
                                      bool remote) {
  std::string target = StrCat(QuoteIdent(spec.mirror_schema), ".", QuoteIdent(spec.mirror_name));
  std::string source = remote ? StrCat("pg_catalog.json_populate_recordset(NULL::", target,
                                       ", $1::pg_catalog.json) AS pgshift_rows")
                              : "pgshift_rows";
  // A column's value in the source rows.
  auto from = [remote](const MirroredColumn& c) {
    return remote ? QuoteIdent(c.mirror) : ValueOf(c, "");
  };
  std::vector<MirroredColumn> keys;
  for (const std::string& k : spec.key) {
    const std::string* m = MirrorColumn(spec, k);
    if (m == nullptr) return Refuse(spec, StrCat("key column ", k, " has no column in the mirror"));
    keys.push_back({k, "", *m});
  }
  if (kind == PG_QUERY__NODE__NODE_DELETE_STMT) {
    std::string where;
    for (const MirroredColumn& k : keys) {
      where = StrCat(where, where.empty() ? "" : " AND ", "pgshift_m.", QuoteIdent(k.mirror),
                     " = pgshift_rows.", from(k));
    }
    return StrCat("DELETE FROM ", target, " AS pgshift_m USING ", source, " WHERE ", where);
  }
  std::string into, select, update;
  for (const MirroredColumn& c : spec.columns) {
    into = StrCat(into, into.empty() ? "" : ", ", QuoteIdent(c.mirror));
    select = StrCat(select, select.empty() ? "" : ", ", from(c));
    if (!c.computed.empty() || !IsKey(spec, c.source)) {
      update = StrCat(update, update.empty() ? "" : ", ", QuoteIdent(c.mirror), " = excluded.",
                      QuoteIdent(c.mirror));
    }
  }
  // The rows carry their identity values from the authoritative side.
  std::string sql = StrCat("INSERT INTO ", target, " (", into, ") OVERRIDING SYSTEM VALUE SELECT ",
                           select, " FROM ", source);
  if (keys.empty()) return sql;
  std::string conflict;
  for (const MirroredColumn& k : keys) {
    conflict = StrCat(conflict, conflict.empty() ? "" : ", ", QuoteIdent(k.mirror));
  }
  return StrCat(sql, " ON CONFLICT (", conflict, ") DO ",
                update.empty() ? "NOTHING" : StrCat("UPDATE SET ", update));
}

// The two columns a write mirrored to another server returns after the
// client's own: the key as text (as verify prints keys) and the row as
// JSON under the mirror's column names.
absl::StatusOr<std::string> RemoteColumns(const MirrorSpec& spec, const std::string& refname) {
  std::string ref = StrCat(QuoteIdent(refname), ".");
  std::string key;
  if (spec.key.empty()) {
    key = "NULL::pg_catalog.text";
  } else if (spec.key.size() == 1) {
    key = StrCat(ref, QuoteIdent(spec.key[0]), "::pg_catalog.text");
  } else {
    for (const std::string& k : spec.key) {
      key = StrCat(key, key.empty() ? "pg_catalog.concat('(', " : ", ',', ", ref, QuoteIdent(k));
    }
    key += ", ')')";
  }
  // json_build_object takes at most 100 arguments: wide rows are built in
  // chunks and merged.
  constexpr size_t kChunk = 50;
  std::vector<std::string> chunks;
  for (size_t i = 0; i < spec.columns.size(); ++i) {
    if (i % kChunk == 0) chunks.emplace_back();
    const MirroredColumn& c = spec.columns[i];
    chunks.back() = StrCat(chunks.back(), chunks.back().empty() ? "" : ", ", QuoteLiteral(c.mirror),
                           ", ", ValueOf(c, ref));
  }
  std::string row;
  if (chunks.size() <= 1) {
    row = StrCat("pg_catalog.json_build_object(", chunks.empty() ? "" : chunks[0], ")");
  } else {
    for (const std::string& c : chunks) {
      row = StrCat(row, row.empty() ? "(" : " OPERATOR(pg_catalog.||) ",
                   "pg_catalog.jsonb_build_object(", c, ")");
    }
    row += ")::pg_catalog.json";
  }
  return StrCat(key, " AS pgshift_key, ", row, " AS pgshift_row");
}

// A column reference in RETURNING that names another table than the target.
bool NamesOtherTable(const ProtoMessage* msg, const std::string& refname) {
  if (Is(msg, pg_query__column_ref__descriptor)) {
    auto ref = reinterpret_cast<const PgQuery__ColumnRef*>(msg);
    if (ref->n_fields == 1 && ref->fields[0]->node_case == PG_QUERY__NODE__NODE_A_STAR) return true;
    if (ref->n_fields >= 2 && ref->fields[ref->n_fields - 2]->node_case == PG_QUERY__NODE__NODE_STRING &&
        refname != ref->fields[ref->n_fields - 2]->string->sval) {
      return true;
    }
    return false;
  }
  bool found = false;
  ForEachChild(msg, [&](const char*, const ProtoMessage* child) {
    found = found || NamesOtherTable(child, refname);
  });
  return found;
}

Node* TargetStar(const std::string& refname) {
  auto* ref = static_cast<PgQuery__ColumnRef*>(std::malloc(sizeof(PgQuery__ColumnRef)));
  pg_query__column_ref__init(ref);
  ref->n_fields = 2;
  ref->fields = static_cast<Node**>(std::malloc(2 * sizeof(Node*)));
  ref->fields[0] = MakeStringNode(refname);
  auto* star = static_cast<PgQuery__AStar*>(std::malloc(sizeof(PgQuery__AStar)));
  pg_query__a__star__init(star);
  auto* star_node = static_cast<Node*>(std::malloc(sizeof(Node)));
  pg_query__node__init(star_node);
  star_node->node_case = PG_QUERY__NODE__NODE_A_STAR;
  star_node->a_star = star;
  ref->fields[1] = star_node;
  auto* ref_node = static_cast<Node*>(std::malloc(sizeof(Node)));
  pg_query__node__init(ref_node);
  ref_node->node_case = PG_QUERY__NODE__NODE_COLUMN_REF;
  ref_node->column_ref = ref;
  auto* target = static_cast<PgQuery__ResTarget*>(std::malloc(sizeof(PgQuery__ResTarget)));
  pg_query__res_target__init(target);
  target->val = ref_node;
  target->location = -1;
  auto* node = static_cast<Node*>(std::malloc(sizeof(Node)));
  pg_query__node__init(node);
  node->node_case = PG_QUERY__NODE__NODE_RES_TARGET;
  node->res_target = target;
  return node;
}

// Prepends `count` CTE nodes to `with`, taking ownership of them.
void PrependCtes(PgQuery__WithClause* with, Node** ctes, size_t count) {
  if (count == 0) return;
  auto* merged = static_cast<Node**>(std::malloc((count + with->n_ctes) * sizeof(Node*)));
  std::memcpy(merged, ctes, count * sizeof(Node*));
  std::memcpy(merged + count, with->ctes, with->n_ctes * sizeof(Node*));
  std::free(with->ctes);
  with->ctes = merged;
  with->n_ctes += count;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const RemoteMirror>> MakeRemoteMirror(const MirrorSpec& spec,
                                                                     const TableConfig& table,
                                                                     PgQuery__Node__NodeCase kind) {
  auto remote = std::make_shared<RemoteMirror>();
  remote->table = table.name;
  remote->phase = spec.phase;
  remote->on_error = table.on_mirror_error;
  remote->pipelined = table.mirror_apply == MirrorApply::kPipelined;
  remote->deletes = kind == PG_QUERY__NODE__NODE_DELETE_STMT;
  if (kind == PG_QUERY__NODE__NODE_TRUNCATE_STMT) {
    remote->truncate = true;
    remote->apply_sql =
        StrCat("TRUNCATE ", QuoteIdent(spec.mirror_schema), ".", QuoteIdent(spec.mirror_name));
    return remote;
  }
  absl::StatusOr<std::string> sql = MirrorSql(spec, kind, true);
  if (!sql.ok()) return sql.status();
  remote->apply_sql = *std::move(sql);
  return remote;
}

std::string QuoteIdent(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string QuoteQualified(std::string_view table) {
  size_t dot = table.find('.');
  if (dot == std::string_view::npos) return QuoteIdent(table);
  return StrCat(QuoteIdent(table.substr(0, dot)), ".", QuoteIdent(table.substr(dot + 1)));
}

absl::Status MirrorStatement(ParseTree& tree, size_t index, const MirrorSpec& spec,
                             ResultShape& shape) {
  PgQuery__RawStmt* raw = tree.get()->stmts[index];
  Node* stmt = raw->stmt;
  PgQuery__RangeVar* relation = nullptr;
  size_t* n_returning = nullptr;
  Node*** returning = nullptr;
  PgQuery__WithClause** with = nullptr;
  bool joins_other_tables = false;
  switch (stmt->node_case) {
    case PG_QUERY__NODE__NODE_INSERT_STMT: {
      PgQuery__InsertStmt* s = stmt->insert_stmt;
      relation = s->relation;
      n_returning = &s->n_returning_list;
      returning = &s->returning_list;
      with = &s->with_clause;
      shape.tag = "INSERT";
      if (s->on_conflict_clause != nullptr) {
        for (size_t i = 0; i < s->on_conflict_clause->n_target_list; ++i) {
          const Node* t = s->on_conflict_clause->target_list[i];
          if (t->node_case == PG_QUERY__NODE__NODE_RES_TARGET && IsKey(spec, t->res_target->name)) {
            return Refuse(spec, StrCat("it changes key column ", t->res_target->name));
          }
        }
      }
      break;
    }
    case PG_QUERY__NODE__NODE_UPDATE_STMT: {
      PgQuery__UpdateStmt* s = stmt->update_stmt;
      if (spec.key.empty()) return Refuse(spec, "the table has no key to find its rows by");
      for (size_t i = 0; i < s->n_target_list; ++i) {
        const Node* t = s->target_list[i];
        if (t->node_case == PG_QUERY__NODE__NODE_RES_TARGET && IsKey(spec, t->res_target->name)) {
          return Refuse(spec, StrCat("it changes key column ", t->res_target->name));
        }
      }
      relation = s->relation;
      n_returning = &s->n_returning_list;
      returning = &s->returning_list;
      with = &s->with_clause;
      joins_other_tables = s->n_from_clause > 0;
      shape.tag = "UPDATE";
      break;
    }
    case PG_QUERY__NODE__NODE_DELETE_STMT: {
      PgQuery__DeleteStmt* s = stmt->delete_stmt;
      if (spec.key.empty()) return Refuse(spec, "the table has no key to find its rows by");
      relation = s->relation;
      n_returning = &s->n_returning_list;
      returning = &s->returning_list;
      with = &s->with_clause;
      joins_other_tables = s->n_using_clause > 0;
      shape.tag = "DELETE";
      break;
    }
    default:
      return Refuse(spec, "only INSERT, UPDATE and DELETE are mirrored");
  }
  if (relation == nullptr || QualifiedName(relation->schemaname, relation->relname) != spec.table) {
    return Refuse(spec, "the table is written inside WITH, where its rows cannot be mirrored");
  }
  const std::string refname =
      relation->alias != nullptr ? relation->alias->aliasname : relation->relname;
  if (joins_other_tables) {
    for (size_t i = 0; i < *n_returning; ++i) {
      if (NamesOtherTable(&(*returning)[i]->base, refname)) {
        return Refuse(spec, "its RETURNING names other tables than the one written");
      }
    }
  }

  std::string frame_sql;
  if (spec.remote) {
    absl::StatusOr<std::string> columns = RemoteColumns(spec, refname);
    if (!columns.ok()) return columns.status();
    frame_sql = StrCat("WITH pgshift_rows AS (SELECT) SELECT ", *columns,
                       " FROM pgshift_rows AS ", QuoteIdent(refname));
  } else {
    absl::StatusOr<std::string> mirror = MirrorSql(spec, stmt->node_case, false);
    if (!mirror.ok()) return mirror.status();
    frame_sql = StrCat("WITH pgshift_rows AS (SELECT), pgshift_mirror AS (", *mirror,
                       ") SELECT FROM pgshift_rows AS ", QuoteIdent(refname));
  }
  absl::StatusOr<ParseTree> frame = ParseTree::Parse(frame_sql);
  if (!frame.ok()) return absl::InternalError(StrCat("mirror statement: ", MessageOf(frame.status())));
  PgQuery__RawStmt* frame_raw = frame->get()->stmts[0];
  PgQuery__SelectStmt* outer = frame_raw->stmt->select_stmt;
  PgQuery__CommonTableExpr* rows_cte = outer->with_clause->ctes[0]->common_table_expr;

  // The client's RETURNING list becomes the outer select list (before
  // pgshift's own columns, if any), evaluated over the returned rows under
  // the target's name; the write returns its full rows.
  shape.no_rows = *n_returning == 0;
  auto* targets = static_cast<Node**>(
      std::malloc((*n_returning + outer->n_target_list) * sizeof(Node*)));
  // (memcpy wants real pointers even for no bytes; empty lists are null.)
  if (*n_returning > 0) std::memcpy(targets, *returning, *n_returning * sizeof(Node*));
  if (outer->n_target_list > 0) {
    std::memcpy(targets + *n_returning, outer->target_list, outer->n_target_list * sizeof(Node*));
  }
  std::free(outer->target_list);
  std::free(*returning);
  outer->target_list = targets;
  outer->n_target_list += *n_returning;
  *returning = static_cast<Node**>(std::malloc(sizeof(Node*)));
  (*returning)[0] = TargetStar(refname);
  *n_returning = 1;
  // Data-modifying CTEs must be at the top level: the client's own WITH
  // moves up in front of ours.
  if (*with != nullptr) {
    PrependCtes(outer->with_clause, (*with)->ctes, (*with)->n_ctes);
    outer->with_clause->recursive = outer->with_clause->recursive || (*with)->recursive;
    (*with)->n_ctes = 0;
    std::free((*with)->ctes);
    (*with)->ctes = nullptr;
    protobuf_c_message_free_unpacked(&(*with)->base, nullptr);
    *with = nullptr;
  }
  // The write goes inside pgshift_rows, the frame into the client's tree.
  protobuf_c_message_free_unpacked(&rows_cte->ctequery->base, nullptr);
  rows_cte->ctequery = stmt;
  raw->stmt = frame_raw->stmt;
  frame_raw->stmt = nullptr;
  return absl::OkStatus();
}

absl::Status MirrorTruncate(ParseTree& tree, size_t index, const MirrorSpec& spec) {
  Node* stmt = tree.get()->stmts[index]->stmt;
  if (stmt->node_case != PG_QUERY__NODE__NODE_TRUNCATE_STMT) {
    return Refuse(spec, "not a TRUNCATE");
  }
  absl::StatusOr<ParseTree> frame = ParseTree::Parse(StrCat(
      "TRUNCATE ", QuoteIdent(spec.mirror_schema), ".", QuoteIdent(spec.mirror_name)));
  if (!frame.ok()) return absl::InternalError(StrCat("mirror statement: ", MessageOf(frame.status())));
  PgQuery__TruncateStmt* mirror = frame->get()->stmts[0]->stmt->truncate_stmt;
  PgQuery__TruncateStmt* truncate = stmt->truncate_stmt;
  auto* relations = static_cast<Node**>(
      std::malloc((truncate->n_relations + 1) * sizeof(Node*)));
  std::memcpy(relations, truncate->relations, truncate->n_relations * sizeof(Node*));
  relations[truncate->n_relations] = mirror->relations[0];
  mirror->n_relations = 0;
  std::free(truncate->relations);
  truncate->relations = relations;
  ++truncate->n_relations;
  return absl::OkStatus();
}

}  // namespace pgshift::routing
