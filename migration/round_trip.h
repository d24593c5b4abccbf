// The round trip of a table's column transforms, checked on a sample of
// old's rows before new becomes authoritative: each old column that
// old_columns derives must come back as it was from new's row computed by
// new_columns (down(up(row)) = row), and every old column new_columns
// reads must have a way back (copied to new, or derived). Otherwise
// new-primary would write other values, or none, back to old.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "migration/pg_client.h"
#include "migration/table_pair.h"

namespace pgshift::migration {

struct RoundTrip {
  int64_t sampled = 0;
  int64_t differing = 0;
  // Up to five differing rows: "key 7: full_name 'A B C', back 'A B'".
  std::string examples;
  // Old columns new_columns reads that have no way back.
  std::vector<std::string> one_way;
};

// The query, over at most 1000 rows of old sampled at `percent`: one row
// of (sampled, differing, examples). Run on old, where new's row is
// computed as backfill computes it (TablePair's computed pairs).
std::string RoundTripSql(const routing::TableConfig& t, const TablePair& pair, double percent);

absl::StatusOr<RoundTrip> CheckRoundTrip(const routing::TableConfig& t, const TablePair& pair,
                                         PgClient& old_db);

}  // namespace pgshift::migration
