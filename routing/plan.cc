#include "routing/router.h"

namespace pgshift::routing {

void Plan::Count() const {
  if (fingerprint != nullptr) fingerprint->Seen(refusal.has_value());
  if (refusal) {
    for (TableCounters* t : refused_tables) t->refused.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  for (TableCounters* t : reads) t->reads.fetch_add(1, std::memory_order_relaxed);
  for (TableCounters* t : writes_to) t->writes.fetch_add(1, std::memory_order_relaxed);
}

const absl::flat_hash_set<std::string>& VolatileBuiltins() {
  static const absl::flat_hash_set<std::string> builtins{"random",
                                                         "setseed",
                                                         "gen_random_uuid",
                                                         "nextval",
                                                         "setval",
                                                         "currval",
                                                         "lastval",
                                                         "clock_timestamp",
                                                         "timeofday",
                                                         "statement_timestamp",
                                                         "pg_sleep",
                                                         "pg_sleep_for",
                                                         "pg_sleep_until",
                                                         "set_config",
                                                         "txid_current",
                                                         "pg_current_xact_id",
                                                         "pg_advisory_lock",
                                                         "pg_advisory_xact_lock",
                                                         "pg_try_advisory_lock",
                                                         "pg_try_advisory_xact_lock",
                                                         "pg_advisory_unlock",
                                                         "pg_advisory_lock_shared",
                                                         "pg_notify",
                                                         "dblink",
                                                         "lo_import",
                                                         "lo_export",
                                                         "pg_read_file",
                                                         "pg_stat_reset"};
  return builtins;
}

namespace {

size_t ShapesBytes(const std::vector<ResultShape>& shapes) {
  size_t n = shapes.size() * sizeof(ResultShape);
  for (const ResultShape& shape : shapes) {
    if (shape.remote) n += sizeof(RemoteMirror) + shape.remote->apply_sql.size();
  }
  return n;
}

}  // namespace

size_t PlanBytes(const PlanPtr& plan) {
  if (!plan) return 0;
  const Plan& p = *plan;
  size_t n = sizeof(Plan) + p.sql.size() + p.prepares.size() + p.gid.size() + ShapesBytes(p.shapes);
  if (p.refusal) n += p.refusal->message.size();
  if (p.shadow) {
    n += sizeof(ShadowPlan) + p.shadow->sql.size() + 2 * p.shadow->table.size() +
         sizeof(std::string) * (p.shadow->tables.size() + p.shadow->key.size()) +
         p.shadow->fingerprint.size() + p.shadow->normalized.size();
  }
  for (const PlanPart& part : p.parts)
    n += sizeof(PlanPart) + part.sql.size() + ShapesBytes(part.shapes);
  for (const QueryStatement& s : p.statements) n += sizeof(QueryStatement) + s.sql.size();
  if (p.fill) {
    // Its texts split at the constants: about the plan's texts again.
    n += sizeof(PlanTemplate) + p.sql.size() + (p.shadow ? p.shadow->sql.size() : 0);
    for (const PlanPart& part : p.parts) n += part.sql.size();
  }
  if (p.parameterized) {
    n += p.parameterized->sql.size() + p.parameterized->types.size() * sizeof(int32_t);
    for (const std::string& v : p.parameterized->values) n += sizeof(v) + v.size();
  }
  n += (p.reads.size() + p.writes_to.size() + p.refused_tables.size()) * sizeof(TableCounters*);
  return n;
}

}  // namespace pgshift::routing
