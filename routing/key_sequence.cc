#include "routing/key_sequence.h"

#include "absl/strings/str_replace.h"
#include "common/strings.h"
#include "routing/mirror.h"

namespace pgshift::routing {

std::optional<KeySequenceCheck> KeySequenceCheckFor(const TableConfig& t, bool on_new) {
  if (t.key.size() != 1) return std::nullopt;
  KeySequenceCheck check;
  check.key = t.key[0];
  if (on_new) {
    if (auto renamed = t.columns.find(check.key); renamed != t.columns.end()) {
      check.key = renamed->second;
    }
  }
  check.table = on_new ? t.new_name : t.name;
  check.sql = StrCat(
      "SELECT s.name, n.next::text, m.max::text FROM (SELECT pg_catalog.pg_get_serial_sequence(",
      QuoteLiteral(QuoteQualified(check.table)), ", ", QuoteLiteral(check.key),
      ") AS name) s "
      "LEFT JOIN LATERAL (SELECT CASE WHEN q.last_value IS NULL THEN q.start_value ELSE "
      "q.last_value + q.increment_by END AS next FROM pg_catalog.pg_sequences q WHERE "
      "pg_catalog.format('%I.%I', q.schemaname, q.sequencename) = s.name) n ON true "
      "LEFT JOIN LATERAL (SELECT max(",
      QuoteIdent(check.key), ") AS max FROM ", QuoteQualified(check.table),
      " WHERE s.name IS NOT NULL) m ON true");
  return check;
}

std::string KeySequenceBehind(const KeySequenceCheck& check,
                              const std::vector<std::optional<std::string>>& row,
                              std::string_view side) {
  int64_t next = 0, max = 0;
  if (row.size() < 3 || !row[0] || !row[1] || !row[2] || !ParseInt(*row[1], next) ||
      !ParseInt(*row[2], max) || next > max) {
    return "";
  }
  return StrCat("its key sequence ", *row[0], " on ", side, " would hand out ", next, " next, but ",
                check.table, " already holds ", check.key, " ", max, "; first run SELECT setval('",
                absl::StrReplaceAll(*row[0], {{"'", "''"}}), "', ", max, ") on ", side);
}

}  // namespace pgshift::routing
