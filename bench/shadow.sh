#!/usr/bin/env bash
# Shadow reads' cost: pgbench select-only and TPC-B through pgshift with
# pgbench_accounts (moved to accounts_v2, abalance renamed balance) in
# dual-write, in shadow-read at sample 0.1, and at 1.0; on one database and
# with accounts_v2 on a second server (targets x-*), measured side by side
# in one run, targets alternating round by round. Afterwards, per shadow
# target, what became of the sampled reads: the share compared, and the
# counts of each verdict.
#
#   bench/shadow.sh [--seconds N] [--rounds N] [--scale N]
#
# PGSHIFT_BASELINE=/path/to/an/older/pgshift adds before-* shadow targets.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

parse_options bench/shadow.sh "$@"

build_pgshift

out=$(make_out_dir shadow)
pg_port=55820 new_port=55830
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  scripts/pg-cluster.sh stop "$out/pg" || true
  scripts/pg-cluster.sh stop "$out/new" || true
  rm -rf "$out"
}
trap cleanup EXIT
scripts/pg-cluster.sh start "$out/pg" $pg_port
scripts/pg-cluster.sh start "$out/new" $new_port "max_prepared_transactions = 100"
# One database: postgres holds pgbench's tables and accounts_v2. Across
# servers: old's database "across" holds pgbench's tables, the second
# server accounts_v2 (separate, so one topology's writes never make the
# other's sides differ).
v2_schema="CREATE TABLE accounts_v2 (aid int PRIMARY KEY, bid int, balance int, filler char(84));"
psql -X -h 127.0.0.1 -p $pg_port -U postgres -q postgres -c "CREATE DATABASE across"
for db in postgres across; do
  pgbench -h 127.0.0.1 -p $pg_port -U postgres -i -s "$scale" -q $db >/dev/null 2>&1
done
psql -X -h 127.0.0.1 -p $pg_port -U postgres -q postgres <<SQL
$v2_schema
INSERT INTO accounts_v2 SELECT * FROM pgbench_accounts;
VACUUM ANALYZE accounts_v2;
SQL
psql -X -h 127.0.0.1 -p $new_port -U postgres -q postgres -c "$v2_schema"
psql -X -h 127.0.0.1 -p $pg_port -U postgres -q across -c "\\copy pgbench_accounts TO STDOUT" |
  psql -X -h 127.0.0.1 -p $new_port -U postgres -q postgres -c "\\copy accounts_v2 FROM STDIN"
psql -X -h 127.0.0.1 -p $new_port -U postgres -q postgres -c "VACUUM ANALYZE accounts_v2"
# Every table in shared buffers before the first round, so the first target
# to read one does not pay for the cache.
for db in postgres across; do
  psql -X -h 127.0.0.1 -p $pg_port -U postgres -q $db -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
    -c "SELECT pg_prewarm(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')" >/dev/null
done
psql -X -h 127.0.0.1 -p $new_port -U postgres -q postgres -c "CREATE EXTENSION pg_prewarm" \
  -c "SELECT pg_prewarm('accounts_v2'), pg_prewarm('accounts_v2_pkey')" >/dev/null

targets=""
port=55832
metrics_port=55850
for t in "dual-write|dual-write|0|" "shadow-0.1|shadow-read|0.1|" "shadow-1.0|shadow-read|1.0|" \
  "x-dual-write|dual-write|0|x" "x-shadow-0.1|shadow-read|0.1|x" "x-shadow-1.0|shadow-read|1.0|x"; do
  IFS='|' read -r name phase sample across <<<"$t"
  new_backend="" old_dbname=postgres
  if [ -n "$across" ]; then
    old_dbname=across
    new_backend="[backends.new]
host = \"127.0.0.1\"
port = $new_port
dbname = \"postgres\"
user = \"postgres\"
sslmode = \"disable\""
  fi
  binaries="build/pgshift"
  case "$name" in *shadow*) [ -n "${PGSHIFT_BASELINE:-}" ] && binaries="$binaries $PGSHIFT_BASELINE" ;; esac
  for binary in $binaries; do
    target=$name
    [ "$binary" = build/pgshift ] || target=before-$name
    proxy_extra="metrics_listen = \"127.0.0.1:$metrics_port\""
    start_pgshift "$target" $port $pg_port "$new_backend
[[tables]]
name = \"pgbench_accounts\"
new_name = \"accounts_v2\"
phase = \"$phase\"
key = [\"aid\"]
columns = { abalance = \"balance\" }
shadow_sample = $sample" "$binary"
    targets="$targets $target:$port"
    port=$((port + 1))
    metrics_port=$((metrics_port + 1))
  done
done
wait_for_targets "$targets"

workloads=(
  "select-prepared-4c|-S -M prepared -c 4 -j 2"
  "tpcb-prepared-4c|-M prepared -c 4 -j 2"
)
results=$out/raw.tsv
: >"$results"
run_rounds "$results" "$rounds" "$seconds" "$targets" "${workloads[@]}"
sleep 5 # the last comparisons finish

# shadow_counts PORT: "name=value ..." of the table's shadow counters.
shadow_counts() {
  curl -s "http://127.0.0.1:$1/metrics" |
    awk '/^pgshift_table_shadow_.*pgbench_accounts/ {
           name = $1; sub(/^pgshift_table_shadow_/, "", name); sub(/_total.*/, "", name)
           v[name] = $2 }
         END {
           sampled = v["compared"] + v["unstable"] + v["dropped"] + v["skipped"]
           printf "| %d | %.1f%% | %.1f%% | %d | %d | %d | %d | %d |", sampled,
             sampled ? 100 * v["compared"] / sampled : 0, sampled ? 100 * v["dropped"] / sampled : 0,
             v["matched"], v["transient"], v["persistent"], v["unstable"], v["skipped"] }'
}

echo
echo "## Shadow reads ($rounds rounds x ${seconds}s, pgbench scale $scale, $(nproc) cores)"
echo
echo "One database:"
echo
before=""
[ -n "${PGSHIFT_BASELINE:-}" ] && before=" before-shadow-0.1 before-shadow-1.0"
print_table "$results" "dual-write shadow-0.1 shadow-1.0$before" dual-write
echo
echo "Across servers (accounts_v2 on a second server, on the same machine):"
echo
print_table "$results" "x-dual-write x-shadow-0.1 x-shadow-1.0${before//before-/before-x-}" x-dual-write
echo
echo "Sampled reads (both workloads, every round):"
echo
echo "| target | sampled | compared | dropped | matched | transient | persistent | unstable | skipped |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
metrics_port=55850
for t in $targets; do
  name=${t%%:*}
  case "$name" in *shadow*) echo "| $name $(shadow_counts $metrics_port)" ;; esac
  metrics_port=$((metrics_port + 1))
done
echo
for t in $targets; do
  name=${t%%:*}
  n=$(grep -c "event=shadow_mismatch" "$out/$name.log" || true)
  if [ "$n" -gt 0 ]; then
    echo "$name: $n mismatches logged, the first:"
    grep -m 2 "event=shadow_mismatch" "$out/$name.log" | cut -c1-600
  fi
  n=$(grep -c "event=shadow_dropped" "$out/$name.log" || true)
  if [ "$n" -gt 0 ]; then
    echo "$name: drops by reason:"
    grep -o 'event=shadow_dropped.*' "$out/$name.log" | sed 's/.*reason=//' | sort | uniq -c
    if [ -n "${PGSHIFT_DROP_TIMES:-}" ]; then # per second, with PGSHIFT_LOG_LEVEL=debug
      grep 'event=shadow_dropped' "$out/$name.log" | cut -c12-19 | uniq -c | head -40
      grep 'event=shadow_compared' "$out/$name.log" | cut -c12-19 | uniq -c | head -60
    fi
  fi
  n=$(grep -c "event=shadow_unavailable" "$out/$name.log" || true)
  if [ "$n" -gt 0 ]; then
    echo "$name: shadow connections failed $n times, the first:"
    grep -m 1 "event=shadow_unavailable" "$out/$name.log" | cut -c1-400
  fi
done
