#!/usr/bin/env bash
# Shadow reads' cost on one database: pgbench select-only and TPC-B through
# pgshift with pgbench_accounts (moved to accounts_v2, abalance renamed
# balance) in dual-write, in shadow-read at sample 0.1, and at 1.0,
# measured side by side in one run, targets alternating round by round.
#
#   bench/shadow.sh [--seconds N] [--rounds N] [--scale N]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

parse_options bench/shadow.sh "$@"

build_pgshift

out=$(make_out_dir shadow)
pg_port=55820
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  scripts/pg-cluster.sh stop "$out/pg" || true
  rm -rf "$out"
}
trap cleanup EXIT
scripts/pg-cluster.sh start "$out/pg" $pg_port
pgbench -h 127.0.0.1 -p $pg_port -U postgres -i -s "$scale" -q postgres >/dev/null 2>&1
psql -X -h 127.0.0.1 -p $pg_port -U postgres -q postgres <<'SQL'
CREATE TABLE accounts_v2 AS SELECT aid, bid, abalance AS balance, filler FROM pgbench_accounts;
ALTER TABLE accounts_v2 ADD PRIMARY KEY (aid);
VACUUM ANALYZE accounts_v2;
SQL

targets=""
port=55821
for t in "dual-write|dual-write|0" "shadow-0.1|shadow-read|0.1" "shadow-1.0|shadow-read|1.0"; do
  IFS='|' read -r name phase sample <<<"$t"
  start_pgshift "$name" $port $pg_port "
[[tables]]
name = \"pgbench_accounts\"
new_name = \"accounts_v2\"
phase = \"$phase\"
key = [\"aid\"]
columns = { abalance = \"balance\" }
shadow_sample = $sample"
  targets="$targets $name:$port"
  port=$((port + 1))
done
wait_for_targets "$targets"

workloads=(
  "select-prepared-4c|-S -M prepared -c 4 -j 2"
  "tpcb-prepared-4c|-M prepared -c 4 -j 2"
)
results=$out/raw.tsv
: >"$results"
run_rounds "$results" "$rounds" "$seconds" "$targets" "${workloads[@]}"
shadow_counts=$(grep -h "shadow" "$out"/shadow-*.log | grep -c "shadow_mismatch" || true)

echo
echo "## Shadow reads ($rounds rounds x ${seconds}s, pgbench scale $scale, $(nproc) cores, one database)"
echo
print_table "$results" "dual-write shadow-0.1 shadow-1.0" dual-write
echo
echo "Shadow mismatches logged: $shadow_counts"
