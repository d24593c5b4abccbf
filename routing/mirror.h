// Row mirroring on one database: a write to a table in a mirrored phase
// becomes one statement whose writable CTEs run the client's write with
// RETURNING of the full row and apply those rows to the other side, upsert
// by key (INSERT, UPDATE) or delete by key (DELETE). It commits or fails
// with the client's statement and costs no extra round trip.
//
//   WITH pgshift_rows AS (<client's write> RETURNING <target>.*),
//        pgshift_mirror AS (INSERT INTO <mirror> (...) SELECT ... FROM pgshift_rows
//                           ON CONFLICT (<key>) DO UPDATE SET ...)
//   SELECT <client's RETURNING list> FROM pgshift_rows AS <target>
//
// The server then answers as for a SELECT; the proxy turns that back into
// what the client's write would have answered (see ResultShape).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "routing/parse_tree.h"

namespace pgshift::routing {

// What the client's statement would have answered, where the rewritten one
// answers differently: the proxy edits the reply to match.
struct ResultShape {
  // Command tag to give instead of the server's "SELECT n": "INSERT",
  // "UPDATE" or "DELETE" (empty: the server's tag stands).
  std::string tag;
  // The client's statement returns no rows: drop RowDescription and
  // DataRows from the result, and answer Describe with NoData.
  bool no_rows = false;

  bool shaped() const { return !tag.empty() || no_rows; }
};

struct MirrorSpec {
  std::string table;  // the authoritative table, "schema.name", as the statement names it now
  std::string mirror_schema, mirror_name;
  // Columns of the authoritative table written to the mirror, with the
  // mirror's name for each.
  std::vector<std::pair<std::string, std::string>> columns;
  // Key columns (authoritative names); empty: the table has no key, so only
  // INSERT can be mirrored.
  std::vector<std::string> key;
  std::string phase;  // for refusals
};

// Rewrites statement `index` of `tree` (an INSERT, UPDATE or DELETE whose
// target is spec.table) to mirror its rows, and says how its reply must be
// shaped. Fails with FailedPrecondition, naming the table and phase, for
// what cannot be mirrored safely.
absl::Status MirrorStatement(ParseTree& tree, size_t index, const MirrorSpec& spec,
                             ResultShape& shape);

// TRUNCATE of spec.table also truncates the mirror, in the same statement.
absl::Status MirrorTruncate(ParseTree& tree, size_t index, const MirrorSpec& spec);

// "name" as a SQL identifier, always quoted.
std::string QuoteIdent(std::string_view name);

}  // namespace pgshift::routing
