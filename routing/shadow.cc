#include "routing/shadow.h"

#include <pg_query.h>

#include <algorithm>
#include <map>

#include "common/strings.h"

namespace pgshift::routing {

namespace {

using Row = std::vector<std::optional<std::string>>;

std::string Image(const Row& row) {
  std::string out = "(";
  for (size_t i = 0; i < row.size(); ++i) {
    out = StrCat(out, i ? "," : "", row[i] ? *row[i] : "NULL");
  }
  return out + ")";
}

}  // namespace

Comparison CompareResults(const ResultSet& a, const ResultSet& b, bool ordered) {
  Comparison c;
  if (!a.error_sqlstate.empty() || !b.error_sqlstate.empty()) {
    if (a.error_sqlstate == b.error_sqlstate) return c;
    c.match = false;
    c.reason = a.error_sqlstate.empty()
                   ? StrCat("the other side failed: ", b.error_sqlstate, " ", b.error_message)
               : b.error_sqlstate.empty()
                   ? StrCat("the authoritative side failed: ", a.error_sqlstate, " ",
                            a.error_message)
                   : StrCat("different errors: ", a.error_sqlstate, " and ", b.error_sqlstate);
    return c;
  }
  if (a.columns != b.columns) {
    c.match = false;
    c.reason = "columns differ (names or types)";
    return c;
  }
  if (ordered) {
    if (a.rows == b.rows) return c;
    c.match = false;
    c.reason = "rows differ (in order)";
    for (size_t i = 0; i < std::max(a.rows.size(), b.rows.size()); ++i) {
      const bool in_a = i < a.rows.size(), in_b = i < b.rows.size();
      if (in_a && in_b && a.rows[i] == b.rows[i]) continue;
      if (in_a && c.only_authoritative.size() < 5) c.only_authoritative.push_back(Image(a.rows[i]));
      if (in_b && c.only_other.size() < 5) c.only_other.push_back(Image(b.rows[i]));
    }
    return c;
  }
  std::map<Row, int64_t> count;
  for (const Row& r : a.rows) ++count[r];
  for (const Row& r : b.rows) --count[r];
  for (const auto& [row, n] : count) {
    if (n == 0) continue;
    c.match = false;
    if (n > 0 && c.only_authoritative.size() < 5) c.only_authoritative.push_back(Image(row));
    if (n < 0 && c.only_other.size() < 5) c.only_other.push_back(Image(row));
  }
  if (!c.match) c.reason = "rows differ";
  return c;
}

std::string Fingerprint(const std::string& sql) {
  PgQueryFingerprintResult r = pg_query_fingerprint(sql.c_str());
  std::string out = (r.error == nullptr && r.fingerprint_str != nullptr) ? r.fingerprint_str : "";
  pg_query_free_fingerprint_result(r);
  return out;
}

std::string Normalize(const std::string& sql) {
  PgQueryNormalizeResult r = pg_query_normalize(sql.c_str());
  std::string out = (r.error == nullptr && r.normalized_query != nullptr) ? r.normalized_query : sql;
  pg_query_free_normalize_result(r);
  return out;
}

}  // namespace pgshift::routing
