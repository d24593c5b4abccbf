// The dry-run of a flip (EXPLAIN PHASE): every statement shape the
// application sent to a table, planned under the phase it would move to,
// with what the router would do with it — refuse it (and in which words),
// rewrite it, which server answers it, how its writes are mirrored, whether
// its reads are shadowed. The same router that serves statements plans
// them, so what the dry-run says is what the flip would do.
#pragma once

#include <string>
#include <vector>

#include "routing/config.h"
#include "routing/query_fingerprints.h"
#include "routing/router.h"

namespace pgshift::routing {

struct DryRunRow {
  QueryFingerprints::Row shape;
  bool refused = false;
  std::string server;    // "old" or "new"
  std::string mirrored;  // how its writes reach the other side; empty: not
  std::string shadowed;  // where its reads are compared; empty: not
  // The refusal's message, or the text sent in the client's place when it
  // is rewritten (constants as $n); empty when it is sent as written.
  std::string detail;
};

// "refused", "rewritten" or "as sent".
const char* Verdict(const DryRunRow& row);

// `shapes` that name `table` (as configured), planned under `target`.
std::vector<DryRunRow> DryRun(ConfigPtr target, const Catalog& catalog, const std::string& table,
                              const std::vector<QueryFingerprints::Row>& shapes);

}  // namespace pgshift::routing
