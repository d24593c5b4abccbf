#include "routing/dry_run.h"

#include <algorithm>

#include "common/strings.h"

namespace pgshift::routing {

namespace {

std::string Mirrored(const Plan& plan) {
  if (plan.mirrors_remotely) {
    return "rows applied on the other server in the client's transaction (two-phase commit)";
  }
  for (const ResultShape& shape : plan.shapes) {
    if (shape.counts_rows != nullptr) return "in the same statement (one database)";
  }
  return "";
}

}  // namespace

const char* Verdict(const DryRunRow& row) {
  return row.refused ? "refused" : (row.detail.empty() ? "as sent" : "rewritten");
}

std::vector<DryRunRow> DryRun(ConfigPtr target, const Catalog& catalog, const std::string& table,
                              const std::vector<QueryFingerprints::Row>& shapes) {
  // Its own counters: planning for the dry-run counts nothing the
  // instance reports.
  TableCounterRegistry scratch;
  Router router(target, catalog, scratch);
  std::vector<DryRunRow> rows;
  for (const QueryFingerprints::Row& shape : shapes) {
    if (std::find(shape.tables.begin(), shape.tables.end(), table) == shape.tables.end()) continue;
    PlanPtr plan = router.PlanFor(shape.normalized);
    DryRunRow row;
    row.shape = shape;
    row.server = std::string(BackendName(plan->server));
    if (plan->refusal) {
      row.refused = true;
      row.detail = plan->refusal->message;
    } else {
      row.mirrored = Mirrored(*plan);
      if (plan->shadow) {
        row.shadowed =
            StrCat("on ", BackendName(plan->shadow->server), " at sample ", plan->shadow->sample);
      }
      if (plan->rewritten) row.detail = plan->sql;
    }
    rows.push_back(std::move(row));
  }
  std::sort(rows.begin(), rows.end(), [](const DryRunRow& a, const DryRunRow& b) {
    return a.refused != b.refused ? a.refused : a.shape.executions > b.shape.executions;
  });
  return rows;
}

}  // namespace pgshift::routing
