// One migrating table as the migration commands see it: its old and new
// tables, the columns both have (renames applied), its key, and SQL
// fragments built from them.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "migration/pg_client.h"
#include "routing/config.h"

namespace pgshift::migration {

struct TablePair {
  const routing::TableConfig* config = nullptr;
  bool same_database = true;         // no [backends.new]
  bool new_is_authoritative = false;  // new-primary, new-only
  std::string old_table, new_table;  // quoted "schema"."name"
  // Column pairs, quoted, in the old table's order, then the new columns
  // computed from old's row (new_columns): for those, old_columns holds
  // the expression over old's columns, cast to new's type where old knows
  // it.
  std::vector<std::string> old_columns, new_columns;
  // Their types (format_type), pair by pair; a computed column's old type
  // is new's when cast, else empty.
  std::vector<std::string> old_types, new_types;
  std::vector<size_t> computed;  // indexes of the computed pairs
  // old_columns as backfill copies them: a computed one uncast, so that
  // new's rules put it into its column as they do for a mirrored write.
  std::vector<std::string> old_copied;
  // Every pair of columns is of one type of PostgreSQL's own whose binary
  // form means the same on either server (not reg*), and both servers of
  // one major version: rows can travel in COPY's binary format.
  bool binary_copy = false;
  // Old's columns (not generated) with no counterpart on new and read by
  // no new_columns expression: not copied.
  std::vector<std::string> dropped;
  std::vector<std::string> old_key, new_key;  // quoted
  std::vector<std::string> key_types;         // for casting keys given as text
  std::vector<std::string> new_key_types;     // the new table's, for keys cast there
  // The key as ORDER BY and range comparisons take it on each side: with
  // COLLATE "C" on its text columns when some key column sorts otherwise
  // on the two sides (named in key_sort_differs, with both collations).
  std::vector<std::string> old_key_order, new_key_order;
  std::vector<std::string> key_sort_differs;

  // old_copied as a select list over old's table: each computed one named
  // OldName(i), so that a query over that select can name it.
  std::string OldSelect() const;
  std::string OldName(size_t i) const;
  bool IsComputed(size_t i) const;

  // "a", "b" for one side's columns or key.
  static std::string List(const std::vector<std::string>& names, std::string_view prefix = "");
  // ($first::t1, $first+1::t2): a key given as text parameters.
  std::string KeyParams(int first) const;
  // Keys as one parameter: a JSON array of arrays of each key column's
  // text. Never an array literal or SQL text, so that no character of a
  // key (a backslash, a quote, a comma, a brace) means anything else.
  static std::string KeysJson(const std::vector<std::vector<std::string>>& keys);
  // The rows of those keys, typed as the new table's key (`new_side`) or
  // the old one's: "SELECT (e->>0)::t1, ... FROM jsonb_array_elements($param)".
  // `with_text`: each array has one more element, selected as text.
  std::string KeysFromJson(int param, bool new_side, bool with_text = false) const;
  // md5 of the row's paired columns, comparable across the two sides.
  static std::string RowHash(const std::vector<std::string>& columns);
};

// When the key sorts otherwise on the two sides, what that costs, for
// people (empty when it does not).
std::string KeySortNote(const TablePair& pair);

// A key given as text, for people: "5", or "(5,a)" for a composite key.
std::string KeyText(const std::vector<std::string>& key);

// Finds `name` ("channels" or "public.channels") among the configured
// tables and reads both tables' columns. Fails naming the table when it is
// not configured, has no key (unless `keyless_ok`), or a key column has no
// counterpart.
absl::StatusOr<TablePair> ResolveTable(const routing::Config& config, std::string_view name,
                                       PgClient& old_db, PgClient& new_db, bool keyless_ok = false);

}  // namespace pgshift::migration
