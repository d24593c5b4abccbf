#include "routing/hidden_writes.h"

#include "common/strings.h"
#include "routing/mirror.h"

namespace pgshift::routing {

std::string HiddenWritePathsSql(const std::string& table) {
  const std::string t = StrCat("pg_catalog.to_regclass(", QuoteLiteral(QuoteQualified(table)), ")");
  const std::string depends_on_table =
      StrCat("d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = ", t);
  return StrCat(
      // A foreign key of the table with an action: its parent's deletes or
      // updates write the table.
      "SELECT 'foreign key', pg_catalog.format('%I on %s (ON %s from %s)', c.conname, "
      "c.conrelid::pg_catalog.regclass, pg_catalog.concat_ws(', ', CASE c.confdeltype WHEN 'c' "
      "THEN 'DELETE CASCADE' WHEN 'n' THEN 'DELETE SET NULL' WHEN 'd' THEN 'DELETE SET DEFAULT' "
      "END, CASE c.confupdtype WHEN 'c' THEN 'UPDATE CASCADE' WHEN 'n' THEN 'UPDATE SET NULL' "
      "WHEN 'd' THEN 'UPDATE SET DEFAULT' END), c.confrelid::pg_catalog.regclass), "
      "n.nspname || '.' || p.relname "
      "FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class p ON p.oid = c.confrelid "
      "JOIN pg_catalog.pg_namespace n ON n.oid = p.relnamespace "
      "WHERE c.contype = 'f' AND c.conrelid = ",
      t,
      " AND (c.confdeltype IN ('c', 'n', 'd') OR c.confupdtype IN ('c', 'n', 'd')) "
      // Triggers on the table, and on any table whose function depends on
      // it. A BEFORE ROW trigger of the table itself changes only the row
      // being written, which the mirror takes as written (RETURNING).
      "UNION ALL SELECT 'trigger', pg_catalog.format('%I on %s', g.tgname, "
      "g.tgrelid::pg_catalog.regclass), NULL FROM pg_catalog.pg_trigger g "
      "WHERE NOT g.tgisinternal AND g.tgenabled <> 'D' AND ((g.tgrelid = ",
      t,
      " AND g.tgtype & 3 <> 3) OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = "
      "'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = g.tgfoid AND ",
      depends_on_table,
      ")) "
      // Rules on the table, and rules elsewhere whose action names it.
      "UNION ALL SELECT 'rule', pg_catalog.format('%I on %s', r.rulename, "
      "r.ev_class::pg_catalog.regclass), NULL FROM pg_catalog.pg_rewrite r "
      "WHERE r.rulename <> '_RETURN' AND (r.ev_class = ",
      t,
      " OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = "
      "'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid AND ",
      depends_on_table,
      ")) "
      // Views over it that take writes (automatically updatable, or by
      // INSTEAD OF triggers or rules).
      "UNION ALL SELECT 'view', v.oid::pg_catalog.regclass::text, NULL "
      "FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class v ON v.oid = r.ev_class "
      "WHERE r.rulename = '_RETURN' AND v.relkind = 'v' AND "
      "pg_catalog.pg_relation_is_updatable(v.oid, true) & 28 <> 0 AND EXISTS (SELECT 1 FROM "
      "pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND "
      "d.objid = r.oid AND ",
      depends_on_table, ") ORDER BY 1, 2");
}

namespace {

// `name` as the catalog of old (or new) names it: a table mirrored too.
bool MirroredTable(const Config& config, const std::string& name, bool on_new) {
  for (const TableConfig& t : config.tables) {
    if ((on_new ? t.new_name : t.name) == name && MirrorsWrites(t.phase)) return true;
  }
  return false;
}

HiddenWritePath PathOf(const std::string& kind, const std::string& what,
                       const std::optional<std::string>& parent) {
  if (kind == "foreign key") {
    return {StrCat("foreign key ", what), StrCat("mirror ", parent.value_or("its parent"),
                                                 " too (in the same phase), or drop the action")};
  }
  if (kind == "trigger") {
    return {StrCat("trigger ", what),
            "disable it on one side (ALTER TABLE ... DISABLE TRIGGER), or make it leave the "
            "table alone"};
  }
  if (kind == "rule") return {StrCat("rule ", what), "drop it, or write the table by its name"};
  return {StrCat("updatable view ", what), "write the table by its name, not through the view"};
}

}  // namespace

std::vector<HiddenWritePath> HiddenWritePathsOf(
    const Config& config, const std::vector<std::vector<std::optional<std::string>>>& rows,
    bool on_new) {
  std::vector<HiddenWritePath> paths;
  for (const auto& row : rows) {
    const std::string kind = row[0].value_or("");
    if (kind == "foreign key" && row[2] && MirroredTable(config, *row[2], on_new)) continue;
    paths.push_back(PathOf(kind, row[1].value_or(""), row[2]));
  }
  return paths;
}

std::optional<std::string> TruncateCascadeRefusal(const PgQuery__Node* stmt, const Config& config) {
  if (stmt == nullptr || stmt->node_case != PG_QUERY__NODE__NODE_TRUNCATE_STMT ||
      stmt->truncate_stmt->behavior != PG_QUERY__DROP_BEHAVIOR__DROP_CASCADE) {
    return std::nullopt;
  }
  std::string mirrored;
  for (const TableConfig& t : config.tables) {
    if (!MirrorsWrites(t.phase)) continue;
    mirrored += StrCat(mirrored.empty() ? "" : ", ", t.name, " (", PhaseName(t.phase), ")");
  }
  for (const auto& [name, phase] : config.unconfigured_migrating) {
    if (!MirrorsWrites(phase)) continue;
    mirrored += StrCat(mirrored.empty() ? "" : ", ", name, " (", PhaseName(phase), ")");
  }
  if (mirrored.empty()) return std::nullopt;
  return StrCat("pgshift: TRUNCATE ... CASCADE may empty a table whose writes pgshift mirrors (",
                mirrored,
                ") without naming it, and its mirror would not follow; name every table to "
                "truncate, without CASCADE");
}

std::string DescribeHiddenWritePaths(const std::vector<HiddenWritePath>& paths) {
  std::string out;
  for (const HiddenWritePath& p : paths) {
    out += StrCat(out.empty() ? "" : "; ", p.what, " (", p.remedy, ")");
  }
  return out;
}

}  // namespace pgshift::routing
