// verify and verify --repair of a table mirrored without a key (an
// append-only log such as pgbench_history): the two sides are compared as
// multisets of whole rows.
#pragma once

#include "absl/status/statusor.h"
#include "migration/pg_client.h"
#include "migration/table_pair.h"
#include "migration/verify.h"

namespace pgshift::migration {

// Rows are bucketed by the first byte of their hash (md5 of the paired
// columns, as keyed verify hashes them), each bucket's count and checksum
// compared inside each database; a bucket that differs is compared row
// hash by row hash, and what still differs a moment later is reported: a
// row missing on new (as many times as it is missing), extra on new. The
// work is one pass over each table and one more per differing bucket;
// memory holds the row hashes of the differing buckets.
// --repair inserts on the mirror the copies it lacks (read from the
// authoritative side) and deletes the copies it has too many of, in one
// transaction.
absl::StatusOr<VerifyReport> VerifyKeyless(const VerifyOptions& options, const TablePair& pair,
                                           PgClient& old_db, PgClient& new_db);

}  // namespace pgshift::migration
