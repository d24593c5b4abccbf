#include "migration/state_store.h"

#include "common/json.h"
#include "common/strings.h"
#include "routing/state_schema.h"

namespace pgshift::migration {

absl::Status StateStore::Ensure() {
  absl::Status table = db_.Run(routing::kCreateStateTable);
  if (!table.ok()) return table;
  return db_.Run(routing::kCreateCheckpointIndex);
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
  auto sweep = db_.Exec(
      "SELECT detail->'sweep'->>'old_xid', detail->'sweep'->>'copy_xid', "
      "coalesce((detail->'sweep'->>'read')::bigint, 0), k.value FROM "
      "pgshift_state LEFT JOIN LATERAL jsonb_array_elements_text(detail->'sweep'->'after') WITH "
      "ORDINALITY k(value, n) ON true WHERE table_name = $1 AND kind = 'backfill_checkpoint' AND "
      "detail ? 'sweep' ORDER BY k.n",
      {table});
  if (!sweep.ok()) return sweep.status();
  if (!sweep->rows.empty()) {
    int64_t read = 0;
    ParseInt(sweep->rows[0][2].value_or("0"), read);
    c.sweep =
        PendingSweep{{}, sweep->rows[0][0].value_or(""), sweep->rows[0][1].value_or(""), read};
    for (const Row& r : sweep->rows) {
      if (r[3]) c.sweep->after.push_back(*r[3]);
    }
  }
  return c;
}

absl::Status StateStore::SaveCheckpoint(const std::string& table, const Checkpoint& c) {
  std::string sweep;
  if (c.sweep) {
    sweep =
        StrCat(",\"sweep\":{\"after\":", JsonArray(c.sweep->after),
               ",\"old_xid\":", JsonString(c.sweep->old_xid),
               ",\"copy_xid\":", JsonString(c.sweep->copy_xid), ",\"read\":", c.sweep->read, "}");
  }
  std::string detail =
      StrCat("{\"last_key\":", JsonArray(c.last_key), ",\"rows\":", c.rows,
             ",\"done\":", c.done ? "true" : "false", ",\"rate\":", c.rate, sweep, "}");
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
