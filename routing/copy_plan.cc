// A mirrored COPY FROM, planned as the statements that stage and mirror
// its rows.
#include "common/strings.h"
#include "protocol/error_fields.h"
#include "routing/parse_tree.h"
#include "routing/router.h"

namespace pgshift::routing {

// COPY ... FROM into a table whose writes are mirrored: the rows are staged
// in a temporary table and written with a mirrored INSERT, in one Query
// (PostgreSQL runs the COPY in its place among the statements, so it stays
// one implicit transaction):
//
//   CREATE TABLE pg_temp.pgshift_copy AS SELECT <columns> FROM <table> WITH NO DATA;
//   COPY pg_temp.pgshift_copy (<columns>) FROM STDIN ...;
//   INSERT INTO <table> (<columns>) SELECT <columns> FROM pg_temp.pgshift_copy;
//   DROP TABLE pg_temp.pgshift_copy
//
// The client sees only the COPY's replies. Defaults, serials and triggers
// of the table apply at the INSERT, as they would at the COPY.
PlanPtr Router::CopyPlan(ParseTree& tree, const TableConfig& table) const {
  PgQuery__CopyStmt* copy = tree.get()->stmts[0]->stmt->copy_stmt;
  auto refused = [&](std::string why) {
    auto plan = std::make_shared<Plan>();
    plan->refusal = Refusal{std::string(protocol::sqlstate::kFeatureNotSupported),
                            StrCat("pgshift: cannot mirror COPY into ", table.name, " in phase ",
                                   PhaseName(table.phase), ": ", why)};
    plan->refused_tables.push_back(&counters_.For(table.name));
    return plan;
  };
  if (!copy->is_from || copy->relation == nullptr || copy->query != nullptr) {
    return refused("only COPY ... FROM is mirrored");
  }
  std::string columns;
  if (copy->n_attlist > 0) {
    for (size_t i = 0; i < copy->n_attlist; ++i) {
      const PgQuery__Node* a = copy->attlist[i];
      if (a->node_case != PG_QUERY__NODE__NODE_STRING) return refused("unexpected column list");
      columns = StrCat(columns, i ? ", " : "", QuoteIdent(a->string->sval));
    }
  } else {
    // The table's columns as the client knows them.
    auto known = catalog_.old_tables.find(table.name);
    if (known == catalog_.old_tables.end()) {
      return refused("its columns could not be read from the catalog");
    }
    for (const std::string& c : known->second) {
      columns = StrCat(columns, columns.empty() ? "" : ", ", QuoteIdent(c));
    }
  }
  const char* schema = copy->relation->schemaname;
  std::string target = StrCat(QuoteIdent(schema != nullptr && *schema != '\0' ? schema : "public"),
                              ".", QuoteIdent(copy->relation->relname));
  SetString(&copy->relation->schemaname, "pg_temp");
  SetString(&copy->relation->relname, "pgshift_copy");
  absl::StatusOr<std::string> staged_copy = tree.Deparse();
  if (!staged_copy.ok()) return refused(std::string(MessageOf(staged_copy.status())));
  const std::string text =
      StrCat("CREATE TABLE ", kCopyStaging, " AS SELECT ", columns, " FROM ", target,
             " WITH NO DATA; ", *staged_copy, "; INSERT INTO ", target, " (", columns, ") SELECT ",
             columns, " FROM ", kCopyStaging, "; DROP TABLE ", kCopyStaging);
  PlanPtr expanded = PlanText(text);  // pgshift's text: not a shape the client sent
  if (expanded->refusal) return expanded;
  auto plan = std::make_shared<Plan>(*expanded);
  plan->shapes.resize(4);
  for (size_t i : {0, 2, 3}) plan->shapes[i].hidden = true;
  plan->copies_in = true;
  plan->shadow.reset();
  return plan;
}

}  // namespace pgshift::routing
