#include "routing/router.h"

namespace pgshift::routing {

void Plan::Count() const {
  if (refusal) {
    for (TableCounters* t : refused_tables) t->refused.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  for (TableCounters* t : reads) t->reads.fetch_add(1, std::memory_order_relaxed);
  for (TableCounters* t : writes_to) t->writes.fetch_add(1, std::memory_order_relaxed);
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
    n += sizeof(ShadowPlan) + p.shadow->sql.size() + p.shadow->table.size() +
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
