#include "migration/round_trip.h"

#include <algorithm>

#include "common/strings.h"
#include "routing/mirror.h"

namespace pgshift::migration {

std::string RoundTripSql(const routing::TableConfig& t, const TablePair& pair, double percent) {
  // New's row from old's, as backfill computes it, beside old's key and
  // old's values of the derived columns.
  std::string inner;
  auto add = [&](const std::string& item) { inner += StrCat(inner.empty() ? "" : ", ", item); };
  std::string key;
  for (size_t i = 0; i < pair.old_key.size(); ++i) {
    add(StrCat(pair.old_key[i], " AS \"pgshift_k_", i, "\""));
    key += StrCat(i ? ", " : "", "\"pgshift_k_", i, "\"::text");
  }
  std::string report;
  for (size_t j = 0; j < t.old_columns.size(); ++j) {
    const routing::ColumnTransform& d = t.old_columns[j];
    add(StrCat(routing::QuoteIdent(d.column), " AS \"pgshift_o_", j, "\""));
    const std::string old_value = StrCat("\"pgshift_o_", j, "\"");
    report += StrCat(j ? ", " : "", "CASE WHEN ", old_value, " IS DISTINCT FROM ", d.expression,
                     " THEN pg_catalog.format('%s %L, back %L', ", QuoteLiteral(d.column), ", ",
                     old_value, ", ", d.expression, ") END");
  }
  for (size_t i = 0; i < pair.old_columns.size(); ++i) {
    add(StrCat(pair.old_columns[i], " AS ", pair.new_columns[i]));
  }
  if (report.empty()) report = "NULL";
  return StrCat(
      "WITH pgshift_rows AS MATERIALIZED (SELECT pg_catalog.concat_ws(',', ", key,
      ") AS pgshift_key, pg_catalog.concat_ws('; ', ", report, ") AS pgshift_report FROM (SELECT ",
      inner, " FROM ", pair.old_table, " TABLESAMPLE SYSTEM (", percent,
      ") LIMIT 1000) pgshift_new) SELECT (SELECT "
      "pg_catalog.count(*) FROM pgshift_rows), (SELECT pg_catalog.count(*) FROM pgshift_rows "
      "WHERE pgshift_report <> ''), (SELECT pg_catalog.string_agg('key ' || pgshift_key || ': ' "
      "|| pgshift_report, ' | ') FROM (SELECT * FROM pgshift_rows WHERE pgshift_report <> '' "
      "LIMIT 5) pgshift_examples)");
}

absl::StatusOr<RoundTrip> CheckRoundTrip(const routing::TableConfig& t, const TablePair& pair,
                                         PgClient& old_db) {
  RoundTrip out;
  for (const routing::ColumnTransform& up : t.new_columns) {
    for (const std::string& read : up.reads) {
      const std::string quoted = routing::QuoteIdent(read);
      bool copied = false;
      for (size_t i = 0; i < pair.old_columns.size(); ++i) {
        copied = copied || (!pair.IsComputed(i) && pair.old_columns[i] == quoted);
      }
      if (!copied && routing::FindTransform(t.old_columns, read) == nullptr &&
          std::find(out.one_way.begin(), out.one_way.end(), read) == out.one_way.end()) {
        out.one_way.push_back(read);
      }
    }
  }
  if (t.old_columns.empty()) return out;
  // About a thousand rows, wherever they are in the table.
  auto size = old_db.Exec(
      "SELECT GREATEST(c.reltuples, 0)::float8 FROM pg_catalog.pg_class c WHERE c.oid "
      "= $1::pg_catalog.regclass",
      {pair.old_table});
  if (!size.ok()) return size.status();
  const double rows = std::stod(size->rows.at(0).at(0).value_or("0"));
  const double percent = rows <= 1000 ? 100 : std::max(0.001, 100 * 1000 / rows);
  auto checked = old_db.Exec(RoundTripSql(t, pair, percent));
  if (!checked.ok()) return checked.status();
  const auto& row = checked->rows.at(0);
  out.sampled = std::stoll(row.at(0).value_or("0"));
  out.differing = std::stoll(row.at(1).value_or("0"));
  out.examples = row.at(2).value_or("");
  return out;
}

}  // namespace pgshift::migration
