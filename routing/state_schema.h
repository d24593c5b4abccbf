// pgshift_state, the migration's record in the old database, shared by the
// proxy (phase changes, guard rails) and the backfill and verify commands.
// One row per event: kind 'phase' (detail: from, to, forced,
// config_checksum), 'backfill', 'verify' (detail: rows, missing, extra,
// different, repaired); and one 'backfill_checkpoint' row per table,
// updated in place.
#pragma once

namespace pgshift::routing {

inline constexpr const char* kCreateStateTable =
    "CREATE TABLE IF NOT EXISTS pgshift_state ("
    " id bigserial PRIMARY KEY,"
    " table_name text NOT NULL,"
    " kind text NOT NULL,"
    " detail jsonb NOT NULL DEFAULT '{}',"
    " recorded_at timestamptz NOT NULL DEFAULT now())";

inline constexpr const char* kCreateCheckpointIndex =
    "CREATE UNIQUE INDEX IF NOT EXISTS pgshift_state_checkpoint"
    " ON pgshift_state (table_name) WHERE kind = 'backfill_checkpoint'";

// The divergence log, on the authoritative side: a key whose mirror to the
// other server failed under on_mirror_error = "log" (or whose mirror commit
// failed), written in the client's own transaction. verify --repair fixes
// the rows and clears their entries.
// Named by schema wherever pgshift writes or reads it: on a client's
// connection its search_path, or a temporary table of the same name, must
// not capture or break the log.
#define PGSHIFT_DIVERGENCE_TABLE "public.pgshift_divergence"
inline constexpr const char* kDivergenceTable = PGSHIFT_DIVERGENCE_TABLE;
inline constexpr const char* kCreateDivergenceTable =
    "CREATE TABLE IF NOT EXISTS " PGSHIFT_DIVERGENCE_TABLE " ("
    " id bigserial PRIMARY KEY,"
    " table_name text NOT NULL,"
    " key text,"
    " error text NOT NULL,"
    " recorded_at timestamptz NOT NULL DEFAULT now())";

}  // namespace pgshift::routing
