// pgshift_state, the migration's record in the old database, shared by the
// proxy (phase changes, guard rails) and the backfill and verify commands.
// One row per event: kind 'phase' (detail: from, to, forced,
// config_checksum), 'backfill', 'verify' (detail: rows, missing, extra,
// different, repaired); and backfill's and verify's key ranges, one row
// each (kinds 'backfill_range', 'verify_range'), updated in place.
#pragma once

namespace pgshift::routing {

inline constexpr const char* kCreateStateTable =
    "CREATE TABLE IF NOT EXISTS pgshift_state ("
    " id bigserial PRIMARY KEY,"
    " table_name text NOT NULL,"
    " kind text NOT NULL,"
    " detail jsonb NOT NULL DEFAULT '{}',"
    " recorded_at timestamptz NOT NULL DEFAULT now())";

// Backfill's and verify's key ranges (migration/range_ledger.h): one row
// per range, numbered from 0 in key order.
inline constexpr const char* kCreateRangeIndex =
    "CREATE UNIQUE INDEX IF NOT EXISTS pgshift_state_range"
    " ON pgshift_state (table_name, kind, ((detail->>'range')::bigint))"
    " WHERE kind IN ('backfill_range', 'verify_range')";
// Before ranges, a table's backfill kept one checkpoint, kind
// 'backfill_checkpoint': it becomes a plan of one range (recorded if
// done: that pgshift recorded it).
inline constexpr const char* kUpgradeCheckpoints =
    "UPDATE pgshift_state SET kind = 'backfill_range', detail = detail ||"
    " '{\"range\":0,\"count\":1,\"lower\":[],\"upper\":[],\"holder\":null}' ||"
    " jsonb_build_object('recorded', coalesce((detail->>'done')::boolean, false))"
    " WHERE kind = 'backfill_checkpoint'";

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

// Coordination (SPEC section 9). Each table's phase as the fleet runs it
// (`generation`: the flip that set it), and the flip under way, if any:
// `flip` numbers it, `pending_phase` is where it goes.
inline constexpr const char* kCreatePhasesTable =
    "CREATE TABLE IF NOT EXISTS pgshift_phases ("
    " table_name text PRIMARY KEY,"
    " phase text NOT NULL,"
    " generation bigint NOT NULL DEFAULT 0,"
    " changed_at timestamptz NOT NULL DEFAULT now(),"
    " pending_phase text,"
    " flip bigint,"
    " flip_by text,"
    " flip_started timestamptz)";
inline constexpr const char* kCreateFlipSequence = "CREATE SEQUENCE IF NOT EXISTS pgshift_flip";
// One row per instance: its lease, the flips it applied (`generation`) and
// acknowledged (drained for), and what holds it when it has not.
inline constexpr const char* kCreateInstancesTable =
    "CREATE TABLE IF NOT EXISTS pgshift_instances ("
    " instance_id text PRIMARY KEY,"
    " address text NOT NULL,"
    " version text NOT NULL,"
    " generation bigint NOT NULL DEFAULT 0,"
    " lease_expires timestamptz NOT NULL,"
    " sessions int NOT NULL DEFAULT 0,"
    " acknowledged bigint NOT NULL DEFAULT 0,"
    " holding text,"
    " run text,"                         // the process holding the id: one at a time
    " tables text NOT NULL DEFAULT '',"  // the tables its file configures, comma-separated
    " started_at timestamptz NOT NULL DEFAULT now())";
// pgshift_instances as an earlier pgshift made it, brought up to date:
// altered only when a column is missing, so that the usual connection
// takes no lock on it.
inline constexpr const char* kUpgradeInstancesTable =
    "DO $$ BEGIN"
    " IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'pgshift_instances'::regclass"
    " AND attname = 'tables' AND NOT attisdropped) THEN"
    " ALTER TABLE pgshift_instances ADD COLUMN IF NOT EXISTS run text,"
    " ADD COLUMN IF NOT EXISTS tables text NOT NULL DEFAULT '';"
    " END IF; END $$";
// The guard rails' evidence from every instance: shadow reads compared and
// persistently mismatched, and statements refused, since the table entered
// the phase of flip `entered`, one row per process run (`run`), so that a
// restart adds to it.
inline constexpr const char* kCreateEvidenceTable =
    "CREATE TABLE IF NOT EXISTS pgshift_evidence ("
    " run text NOT NULL,"
    " instance_id text NOT NULL,"
    " table_name text NOT NULL,"
    " entered bigint NOT NULL,"
    " compared bigint NOT NULL,"
    " persistent bigint NOT NULL,"
    " refused bigint NOT NULL DEFAULT 0,"
    " flushed_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (run, table_name, entered))";
// The statements on configured tables each instance has seen, by shape
// (routing/query_fingerprints.h), one row per process run and shape: what
// the dry-run of a flip replays, from every instance.
inline constexpr const char* kCreateFingerprintsTable =
    "CREATE TABLE IF NOT EXISTS pgshift_fingerprints ("
    " run text NOT NULL,"
    " instance_id text NOT NULL,"
    " fingerprint text NOT NULL,"
    " query text NOT NULL,"
    " tables text NOT NULL,"
    " writes boolean NOT NULL,"
    " executions bigint NOT NULL,"
    " refused bigint NOT NULL,"
    " last_seen timestamptz NOT NULL,"
    " flushed_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (run, fingerprint))";
// Every instance LISTENs here; a proposal, an acknowledgement and a flip's
// end NOTIFY it.
inline constexpr const char* kCoordinationChannel = "pgshift_coordination";

}  // namespace pgshift::routing
