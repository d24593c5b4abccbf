#!/usr/bin/env bash
# Row mirroring's cost: pgbench TPC-B with its four tables in dual-write to
# *_v2 tables (pgbench_accounts' abalance renamed balance), on one database
# and with the _v2 tables on a second server, against pgshift passthrough
# (no tables configured), pgbouncer (session mode) and direct PostgreSQL;
# and what one would use instead on one database: direct, with an AFTER
# trigger per table upserting each row into its _v2 table (no proxy; on a
# cluster of its own, so its triggers slow no other target). Measured side
# by side in one run, targets alternating round by round. Across servers
# also with mirror_apply = "sync" (the apply awaited at each write), and
# the CPU each process spends per transaction.
#
#   bench/dual_write.sh [--seconds N] [--rounds N] [--scale N]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
parse_options bench/dual_write.sh "$@"

build_pgshift

out=$(make_out_dir dual)
old_port=55840 new_port=55841 trig_port=55848 bouncer_port=55849
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  [ -f "$out/pgbouncer.pid" ] && kill "$(cat "$out/pgbouncer.pid")" 2>/dev/null || true
  scripts/pg-cluster.sh stop "$out/trig" || true
  scripts/pg-cluster.sh stop "$out/old" || true
  scripts/pg-cluster.sh stop "$out/new" || true
  rm -rf "$out"
}
trap cleanup EXIT
scripts/pg-cluster.sh start "$out/old" $old_port
scripts/pg-cluster.sh start "$out/new" $new_port "max_prepared_transactions = 100"
scripts/pg-cluster.sh start "$out/trig" $trig_port
for port in $old_port $trig_port; do
  pgbench -h 127.0.0.1 -p $port -U postgres -i -s "$scale" -q postgres >/dev/null 2>&1
done

# The _v2 tables, filled as a backfill would leave them: next to the old
# ones, and on the second server.
v2_schema="
CREATE TABLE accounts_v2 (aid int PRIMARY KEY, bid int, balance int, filler char(84));
CREATE TABLE branches_v2 (bid int PRIMARY KEY, bbalance int, filler char(88));
CREATE TABLE tellers_v2 (tid int PRIMARY KEY, bid int, tbalance int, filler char(84));
CREATE TABLE history_v2 (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));"
psql -X -h 127.0.0.1 -p $old_port -U postgres -q postgres <<SQL
$v2_schema
INSERT INTO accounts_v2 SELECT * FROM pgbench_accounts;
INSERT INTO branches_v2 SELECT * FROM pgbench_branches;
INSERT INTO tellers_v2 SELECT * FROM pgbench_tellers;
VACUUM ANALYZE;
SQL
psql -X -h 127.0.0.1 -p $new_port -U postgres -q postgres -c "$v2_schema"
for t in accounts branches tellers; do
  psql -X -h 127.0.0.1 -p $old_port -U postgres -q postgres -c "\\copy ${t}_v2 TO STDOUT" |
    psql -X -h 127.0.0.1 -p $new_port -U postgres -q postgres -c "\\copy ${t}_v2 FROM STDIN"
done
psql -X -h 127.0.0.1 -p $new_port -U postgres -q postgres -c "VACUUM ANALYZE"

# The trigger alternative (as pgroll keeps a new column written): each
# write of an old table upserts (or deletes) the row in its _v2 table, in
# the same transaction.
psql -X -h 127.0.0.1 -p $trig_port -U postgres -q postgres <<SQL
$v2_schema
INSERT INTO accounts_v2 SELECT * FROM pgbench_accounts;
INSERT INTO branches_v2 SELECT * FROM pgbench_branches;
INSERT INTO tellers_v2 SELECT * FROM pgbench_tellers;
CREATE FUNCTION mirror_accounts() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
  IF TG_OP = 'DELETE' THEN DELETE FROM accounts_v2 WHERE aid = OLD.aid; RETURN NULL; END IF;
  INSERT INTO accounts_v2 VALUES (NEW.aid, NEW.bid, NEW.abalance, NEW.filler)
    ON CONFLICT (aid) DO UPDATE SET bid = EXCLUDED.bid, balance = EXCLUDED.balance,
      filler = EXCLUDED.filler;
  RETURN NULL;
END \$\$;
CREATE FUNCTION mirror_branches() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
  IF TG_OP = 'DELETE' THEN DELETE FROM branches_v2 WHERE bid = OLD.bid; RETURN NULL; END IF;
  INSERT INTO branches_v2 VALUES (NEW.bid, NEW.bbalance, NEW.filler)
    ON CONFLICT (bid) DO UPDATE SET bbalance = EXCLUDED.bbalance, filler = EXCLUDED.filler;
  RETURN NULL;
END \$\$;
CREATE FUNCTION mirror_tellers() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
  IF TG_OP = 'DELETE' THEN DELETE FROM tellers_v2 WHERE tid = OLD.tid; RETURN NULL; END IF;
  INSERT INTO tellers_v2 VALUES (NEW.tid, NEW.bid, NEW.tbalance, NEW.filler)
    ON CONFLICT (tid) DO UPDATE SET bid = EXCLUDED.bid, tbalance = EXCLUDED.tbalance,
      filler = EXCLUDED.filler;
  RETURN NULL;
END \$\$;
CREATE FUNCTION mirror_history() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO history_v2 VALUES (NEW.tid, NEW.bid, NEW.aid, NEW.delta, NEW.mtime, NEW.filler);
  RETURN NULL;
END \$\$;
CREATE TRIGGER mirror AFTER INSERT OR UPDATE OR DELETE ON pgbench_accounts
  FOR EACH ROW EXECUTE FUNCTION mirror_accounts();
CREATE TRIGGER mirror AFTER INSERT OR UPDATE OR DELETE ON pgbench_branches
  FOR EACH ROW EXECUTE FUNCTION mirror_branches();
CREATE TRIGGER mirror AFTER INSERT OR UPDATE OR DELETE ON pgbench_tellers
  FOR EACH ROW EXECUTE FUNCTION mirror_tellers();
CREATE TRIGGER mirror AFTER INSERT ON pgbench_history
  FOR EACH ROW EXECUTE FUNCTION mirror_history();
VACUUM ANALYZE;
SQL

tables='
[[tables]]
name = "pgbench_accounts"
new_name = "accounts_v2"
phase = "dual-write"
key = ["aid"]
columns = { abalance = "balance" }
[[tables]]
name = "pgbench_branches"
new_name = "branches_v2"
phase = "dual-write"
key = ["bid"]
[[tables]]
name = "pgbench_tellers"
new_name = "tellers_v2"
phase = "dual-write"
key = ["tid"]
[[tables]]
name = "pgbench_history"
new_name = "history_v2"
phase = "dual-write"'
second_server="
[backends.new]
port = $new_port
dbname = \"postgres\"
user = \"postgres\"
sslmode = \"disable\""

targets="direct:$old_port direct-triggers:$trig_port"
order="direct direct-triggers"
if start_pgbouncer $bouncer_port $old_port; then
  targets="$targets pgbouncer:$bouncer_port"
  order="$order pgbouncer"
fi
# shellcheck disable=SC2001
sync_tables=$(sed 's/^phase = "dual-write"$/&\nmirror_apply = "sync"/' <<<"$tables")
port=55850  # (55848 and 55849 are the trigger cluster and pgbouncer)
for t in "passthrough|" "dual-write-one-db|$tables" "dual-write-two-servers|$second_server$tables" \
  "dual-write-two-servers-sync|$second_server$sync_tables"; do
  name=${t%%|*} extra=${t#*|}
  start_pgshift "$name" $port $old_port "$extra"
  targets="$targets $name:$port"
  order="$order $name"
  cpu_pids[$name]="pgshift=${pgshift_pid[$name]} old=$(postmaster_pid "$out/old")"
  [[ $name == *two-servers* ]] && cpu_pids[$name]+=" new=$(postmaster_pid "$out/new")"
  port=$((port + 1))
  if [ -n "${PGSHIFT_BASELINE:-}" ] && [[ $name != *-sync ]]; then
    start_pgshift "before-$name" $port $old_port "$extra" "$PGSHIFT_BASELINE"
    cpu_pids[before-$name]=${cpu_pids[$name]/${pgshift_pid[$name]}/${pgshift_pid[before-$name]}}
    targets="$targets before-$name:$port"
    order="$order before-$name"
    port=$((port + 1))
  fi
done
wait_for_targets "$targets"

workloads=(
  "tpcb-prepared-4c|-M prepared -c 4 -j 2"
  "tpcb-simple-4c|-c 4 -j 2"
  "tpcb-prepared-1c|-M prepared -c 1"
)
results=$out/raw.tsv
: >"$results"
run_rounds "$results" "$rounds" "$seconds" "$targets" "${workloads[@]}"

# (The targets share old's tables, so old and either _v2 copy differ by
# the other targets' writes: the check is that no mirror failed.)
failures=$(cat "$out"/*dual-write-*.log | grep -c "mirror_failed\|mirror_commit_failed" || true)

echo
echo "## Dual-write TPC-B ($rounds rounds x ${seconds}s, pgbench scale $scale, $(nproc) cores)"
echo
print_table "$results" "$order" passthrough
echo
print_cpu_table "$results"
echo
echo "mirror failures logged: $failures"
# The goal of mirroring on one database: through pgshift it costs no more
# than the proxy hop itself, against triggers.
awk -F'\t' '{ tps[$2 SUBSEP $3] += $4; n[$2 SUBSEP $3]++; w[$2] = 1 }
  END { for (k in w) {
    d = tps[k SUBSEP "direct"] / n[k SUBSEP "direct"]
    t = tps[k SUBSEP "direct-triggers"] / n[k SUBSEP "direct-triggers"]
    m = tps[k SUBSEP "dual-write-one-db"] / n[k SUBSEP "dual-write-one-db"]
    if ((k SUBSEP "pgbouncer") in n) {
      b = tps[k SUBSEP "pgbouncer"] / n[k SUBSEP "pgbouncer"]
      printf "%s: pgshift dual-write / triggers %.2f, pgbouncer / direct %.2f\n", k, m / t, b / d
    } else {
      printf "%s: pgshift dual-write / triggers %.2f (no pgbouncer)\n", k, m / t
    }
  } }' "$results"
# The goals across servers: TPC-B at 4 clients at least 0.60 of
# passthrough; at one client, no more added latency than one round trip to
# new per transaction (a SELECT 1 straight to new, at one client).
rtt=$(pgbench -h 127.0.0.1 -p $new_port -U postgres -n -T 3 -c 1 -f <(echo "SELECT 1") postgres 2>&1 |
  awk '/^latency average/ {print $4}')
awk -F'\t' -v rtt="$rtt" '{ tps[$2 SUBSEP $3] += $4; lat[$2 SUBSEP $3] += $5; n[$2 SUBSEP $3]++ }
  function mean(a, k) { return a[k] / n[k] }
  END {
    p = "tpcb-prepared-4c"; q = "tpcb-prepared-1c"
    printf "across servers: %s two-servers / passthrough %.2f (sync %.2f); %s added latency %.3f ms (sync %.3f), one round trip to new %.3f ms\n",
      p, mean(tps, p SUBSEP "dual-write-two-servers") / mean(tps, p SUBSEP "passthrough"),
      mean(tps, p SUBSEP "dual-write-two-servers-sync") / mean(tps, p SUBSEP "passthrough"),
      q, mean(lat, q SUBSEP "dual-write-two-servers") - mean(lat, q SUBSEP "passthrough"),
      mean(lat, q SUBSEP "dual-write-two-servers-sync") - mean(lat, q SUBSEP "passthrough"), rtt
  }' "$results"
