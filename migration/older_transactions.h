// Waiting out the transactions that may not see a write of pgshift's: a
// client statement whose snapshot predates it, on one database, writes
// the mirror table as its snapshot shows it (backfill's copies, repair's
// rows), so the commands wait for such transactions to end before they
// look again, much as CREATE INDEX CONCURRENTLY does.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "migration/pg_client.h"

namespace pgshift::migration {

// Waits until every client transaction on `db`'s database whose snapshot
// is older than transaction `xid`, or that has written (a statement that
// has run holds no snapshot any more, yet commits its work later), has
// ended. After 2 s it says once on `out` what `command` is waiting for.
// The workers holding ranges of kind `peers` of `table` in pgshift_state
// (on `db`) are not waited for: each works on its own keys.
absl::Status WaitForOlderTransactions(PgClient& db, const std::string& xid, std::FILE* out,
                                      std::string_view command, const std::string& table = "",
                                      const std::string& peers = "");

}  // namespace pgshift::migration
