#include "migration/state_store.h"

#include <cstdio>

#include "common/strings.h"

namespace pgshift::migration {

std::string JsonString(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string JsonArray(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out = StrCat(out, i ? "," : "", JsonString(items[i]));
  return out + "]";
}

absl::Status StateStore::Ensure() {
  absl::Status table = db_.Run(
      "CREATE TABLE IF NOT EXISTS pgshift_state ("
      " id bigserial PRIMARY KEY,"
      " table_name text NOT NULL,"
      " kind text NOT NULL,"
      " detail jsonb NOT NULL DEFAULT '{}',"
      " recorded_at timestamptz NOT NULL DEFAULT now())");
  if (!table.ok()) return table;
  return db_.Run(
      "CREATE UNIQUE INDEX IF NOT EXISTS pgshift_state_checkpoint"
      " ON pgshift_state (table_name) WHERE kind = 'backfill_checkpoint'");
}

absl::StatusOr<std::optional<Checkpoint>> StateStore::LoadCheckpoint(const std::string& table) {
  auto rows = db_.Exec(
      "SELECT coalesce((detail->>'rows')::bigint, 0), coalesce((detail->>'done')::boolean, false), "
      "k.value FROM pgshift_state "
      "LEFT JOIN LATERAL jsonb_array_elements_text(detail->'last_key') WITH ORDINALITY k(value, n) "
      "ON true WHERE table_name = $1 AND kind = 'backfill_checkpoint' ORDER BY k.n",
      {table});
  if (!rows.ok()) return rows.status();
  if (rows->rows.empty()) return std::nullopt;
  Checkpoint c;
  int64_t n = 0;
  ParseInt(*rows->rows[0][0], n);
  c.rows = n;
  c.done = *rows->rows[0][1] == "t";
  for (const Row& r : rows->rows) {
    if (r[2]) c.last_key.push_back(*r[2]);
  }
  return c;
}

absl::Status StateStore::SaveCheckpoint(const std::string& table, const Checkpoint& c) {
  std::string detail = StrCat("{\"last_key\":", JsonArray(c.last_key), ",\"rows\":", c.rows,
                              ",\"done\":", c.done ? "true" : "false", "}");
  return db_.Run(
      "INSERT INTO pgshift_state (table_name, kind, detail) VALUES ($1, 'backfill_checkpoint', "
      "$2::jsonb) ON CONFLICT (table_name) WHERE kind = 'backfill_checkpoint' DO UPDATE SET "
      "detail = excluded.detail, recorded_at = now()",
      {table, detail});
}

absl::Status StateStore::ClearCheckpoint(const std::string& table) {
  return db_.Run("DELETE FROM pgshift_state WHERE table_name = $1 AND kind = 'backfill_checkpoint'",
                 {table});
}

absl::Status StateStore::Record(const std::string& table, const std::string& kind,
                                const std::string& json) {
  return db_.Run("INSERT INTO pgshift_state (table_name, kind, detail) VALUES ($1, $2, $3::jsonb)",
                 {table, kind, json});
}

}  // namespace pgshift::migration
