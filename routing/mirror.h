// Row mirroring: a write to a table in a mirrored phase runs with RETURNING
// of the full rows, and those rows are applied to the other side, upsert by
// key (INSERT, UPDATE) or delete by key (DELETE).
//
// On one database the mirror is a second writable CTE of the same
// statement, so it commits or fails with it and costs no round trip:
//
//   WITH pgshift_rows AS (<client's write> RETURNING <target>.*),
//        pgshift_mirror AS (INSERT INTO <mirror> (...) SELECT ... FROM pgshift_rows
//                           ON CONFLICT (<key>) DO UPDATE SET ...)
//   SELECT <client's RETURNING list> FROM pgshift_rows AS <target>
//
// Across servers the statement instead returns two more columns, the row's
// key as text and the row as JSON named for the mirror; the session strips
// them from the reply and applies them on the other server (RemoteMirror).
//
// The server then answers as for a SELECT; the proxy turns that back into
// what the client's write would have answered (see ResultShape).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "routing/config.h"
#include "routing/parse_tree.h"

namespace pgshift::routing {

struct TableCounters;

// A write mirrored to another server, applied there by the session once the
// authoritative side has answered, in a transaction that follows the
// client's.
struct RemoteMirror {
  std::string table;  // as configured, for the divergence log and messages
  std::string phase;
  // Run on the mirror server with $1 a JSON array of the rows (none for
  // TRUNCATE).
  std::string apply_sql;
  bool truncate = false;
  MirrorErrorPolicy on_error = MirrorErrorPolicy::kFail;
  // Inside a client transaction its apply is collected later (config.h).
  bool pipelined = true;
  // A DELETE: before it is applied, earlier writes of its keys that the
  // authoritative side committed must have committed on the mirror too
  // (routing/writes_in_flight.h says why).
  bool deletes = false;
};

// What the client's statement would have answered, where the rewritten one
// answers differently: the proxy edits the reply to match.
struct ResultShape {
  // Command tag to give instead of the server's "SELECT n": "INSERT",
  // "UPDATE" or "DELETE" (empty: the server's tag stands).
  std::string tag;
  // The client's statement returns no rows: drop RowDescription and
  // DataRows from the result, and answer Describe with NoData.
  bool no_rows = false;
  // Mirrored to another server: unless it is a TRUNCATE, the result's last
  // two columns (pgshift_key, pgshift_row) are pgshift's, taken out of the
  // reply and applied there.
  std::shared_ptr<const RemoteMirror> remote;
  // A statement of pgshift's own: nothing of its result reaches the client.
  bool hidden = false;
  // A mirrored write: the rows of its result count toward this table's
  // TableCounters::rows_written.
  TableCounters* counts_rows = nullptr;

  bool shaped() const { return !tag.empty() || no_rows || remote || hidden; }
  bool strips_mirror_columns() const { return remote && !remote->truncate; }
};

// One column of the mirror a mirrored write fills: from the authoritative
// row's column, or computed from that row (a column transform).
struct MirroredColumn {
  std::string source;    // the authoritative column; empty when computed
  std::string computed;  // parenthesised SQL over the authoritative row's columns
  std::string mirror;    // the mirror's column
};

struct MirrorSpec {
  std::string table;  // the authoritative table, "schema.name", as the statement names it now
  std::string mirror_schema, mirror_name;
  // The mirror's columns written, each with where its value comes from.
  std::vector<MirroredColumn> columns;
  // Key columns (authoritative names); empty: the table has no key, so only
  // INSERT can be mirrored.
  std::vector<std::string> key;
  std::string phase;  // for refusals
  // The mirror is on another server: the statement returns the rows
  // instead of applying them (see RemoteMirror).
  bool remote = false;
};

// A RemoteMirror for writes to spec.table (configured as `table`), with its
// apply statement for `kind` (INSERT, UPDATE, DELETE or TRUNCATE).
absl::StatusOr<std::shared_ptr<const RemoteMirror>> MakeRemoteMirror(const MirrorSpec& spec,
                                                                     const TableConfig& table,
                                                                     PgQuery__Node__NodeCase kind);

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
// A configured table's "schema.name", each part quoted.
std::string QuoteQualified(std::string_view table);

}  // namespace pgshift::routing
