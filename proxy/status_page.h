// The status page on metrics_listen: GET / (one self-contained HTML page,
// no external assets, a small script that renders /status.json and
// refreshes it) and GET /status.json (the same data for scripts): per table
// its phase and the timeline of its phase changes, rates over the last
// minutes, the backfill, the last verify, shadow reads and the next step's
// guard rails. Read-only; no SQL text and no secrets.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "proxy/status.h"

namespace pgshift::proxy {

class Server;

// Every table's status as this instance sees it: its phases, and the
// shadow evidence since each phase began (the fleet's with coordination).
// For SHOW STATUS and the page. Reads the database: not on main_.
absl::StatusOr<std::vector<TableStatus>> ReadServerStatus(Server& server);

// {"tables":[...],"history":[...],"rates":{...}}; history is the phase
// changes in pgshift_state, newest first. Read at most every few seconds,
// whoever asks.
std::string StatusPageJson(Server& server);

std::string_view StatusPageHtml();

}  // namespace pgshift::proxy
