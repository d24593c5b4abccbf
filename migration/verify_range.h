// verify's work on one key range (migration/range_ledger.h): checksummed
// chunks, the keys that differ compared again, and with --repair copied
// again. verify.cc hands ranges to its workers and sums their reports.
#pragma once

#include <functional>

#include "absl/status/statusor.h"
#include "migration/pg_client.h"
#include "migration/range_ledger.h"
#include "migration/table_pair.h"
#include "migration/verify.h"

namespace pgshift::migration {

// `between` runs after each checksummed chunk and before the repair (a
// worker renews its lease there); its failure ends the range's work.
absl::StatusOr<VerifyReport> VerifyRange(const VerifyOptions& options, const TablePair& pair,
                                         PgClient& old_db, PgClient& new_db, const WorkRange& range,
                                         const std::function<absl::Status()>& between);

}  // namespace pgshift::migration
