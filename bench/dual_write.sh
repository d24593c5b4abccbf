#!/usr/bin/env bash
# Row mirroring's cost: pgbench TPC-B with its four tables in dual-write to
# *_v2 tables (pgbench_accounts' abalance renamed balance), on one database
# and with the _v2 tables on a second server, against pgshift passthrough
# (no tables configured) and direct PostgreSQL, measured side by side in one
# run, targets alternating round by round.
#
#   bench/dual_write.sh [--seconds N] [--rounds N] [--scale N]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
parse_options bench/dual_write.sh "$@"

build_pgshift

out=$(make_out_dir dual)
old_port=55840 new_port=55841
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  scripts/pg-cluster.sh stop "$out/old" || true
  scripts/pg-cluster.sh stop "$out/new" || true
  rm -rf "$out"
}
trap cleanup EXIT
scripts/pg-cluster.sh start "$out/old" $old_port
scripts/pg-cluster.sh start "$out/new" $new_port "max_prepared_transactions = 100"
pgbench -h 127.0.0.1 -p $old_port -U postgres -i -s "$scale" -q postgres >/dev/null 2>&1

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

targets="direct:$old_port"
port=55842
order="direct"
for t in "passthrough|" "dual-write-one-db|$tables" "dual-write-two-servers|$second_server$tables"; do
  name=${t%%|*} extra=${t#*|}
  start_pgshift "$name" $port $old_port "$extra"
  targets="$targets $name:$port"
  order="$order $name"
  port=$((port + 1))
  if [ -n "${PGSHIFT_BASELINE:-}" ]; then
    start_pgshift "before-$name" $port $old_port "$extra" "$PGSHIFT_BASELINE"
    targets="$targets before-$name:$port"
    order="$order before-$name"
    port=$((port + 1))
  fi
done
wait_for_targets "$targets"

workloads=(
  "tpcb-prepared-4c|-M prepared -c 4 -j 2"
  "tpcb-simple-4c|-c 4 -j 2"
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
echo "mirror failures logged: $failures"
