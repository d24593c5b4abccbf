#include "migration/state_store.h"

#include "common/json.h"
#include "common/strings.h"
#include "routing/state_schema.h"

namespace pgshift::migration {

absl::Status StateStore::Ensure() {
  for (const char* ddl :
       {routing::kCreateStateTable, routing::kCreateRangeIndex, routing::kUpgradeCheckpoints}) {
    if (absl::Status s = db_.Run(ddl); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<Checkpoint> StateStore::LoadCheckpoint(RangeLedger& ledger, int64_t id) {
  auto rows = db_.Exec(
      "SELECT coalesce((detail->>'rows')::bigint, 0), coalesce((detail->>'copied')::bigint, 0), "
      "coalesce((detail->>'done')::boolean, false), pg_catalog.jsonb_typeof(detail->'sweep') = "
      "'object', detail->'sweep'->>'old_xid', detail->'sweep'->>'copy_xid', "
      "coalesce((detail->'sweep'->>'read')::bigint, 0) FROM pgshift_state WHERE id = $1",
      {StrCat(id)});
  if (!rows.ok()) return rows.status();
  Checkpoint c;
  if (rows->rows.empty()) return c;
  const Row& r = rows->rows[0];
  ParseInt(r[0].value_or("0"), c.rows);
  ParseInt(r[1].value_or("0"), c.copied);
  c.done = r[2] == "t";
  auto last_key = ledger.TextArray(id, "{last_key}");
  if (!last_key.ok()) return last_key.status();
  c.last_key = std::move(*last_key);
  if (r[3] == "t") {
    PendingSweep sweep{{}, r[4].value_or(""), r[5].value_or(""), 0};
    ParseInt(r[6].value_or("0"), sweep.read);
    auto after = ledger.TextArray(id, "{sweep,after}");
    if (!after.ok()) return after.status();
    sweep.after = std::move(*after);
    c.sweep = std::move(sweep);
  }
  return c;
}

std::string CheckpointJson(const Checkpoint& c) {
  std::string sweep = "null";
  if (c.sweep) {
    sweep = StrCat(
        "{\"after\":", JsonArray(c.sweep->after), ",\"old_xid\":", JsonString(c.sweep->old_xid),
        ",\"copy_xid\":", JsonString(c.sweep->copy_xid), ",\"read\":", c.sweep->read, "}");
  }
  return StrCat("{\"last_key\":", JsonArray(c.last_key), ",\"rows\":", c.rows,
                ",\"copied\":", c.copied, ",\"done\":", c.done ? "true" : "false",
                ",\"rate\":", c.rate, ",\"sweep\":", sweep, "}");
}

absl::Status StateStore::Record(const std::string& table, const std::string& kind,
                                const std::string& json) {
  return db_.Run("INSERT INTO pgshift_state (table_name, kind, detail) VALUES ($1, $2, $3::jsonb)",
                 {table, kind, json});
}

}  // namespace pgshift::migration
