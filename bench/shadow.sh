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

seconds=10 rounds=3 scale=10
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    *) echo "usage: bench/shadow.sh [--seconds N] [--rounds N] [--scale N]" >&2; exit 2 ;;
  esac
done

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target pgshift >/dev/null

out=$(mktemp -d /tmp/pgshift-bench-shadow.XXXXXX)
chmod 755 "$out"
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
  cat >"$out/$name.toml" <<TOML
[proxy]
listen = "127.0.0.1:$port"
max_clients = 1000
[backends.old]
port = $pg_port
dbname = "postgres"
user = "postgres"
sslmode = "disable"
[[tables]]
name = "pgbench_accounts"
new_name = "accounts_v2"
phase = "$phase"
key = ["aid"]
columns = { abalance = "balance" }
shadow_sample = $sample
TOML
  build/pgshift serve --config "$out/$name.toml" --log-level warning 2>"$out/$name.log" &
  pids="$pids $!"
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
awk -F'\t' '
  { tps[$2 SUBSEP $3] += $4; lat[$2 SUBSEP $3] += $5; n[$2 SUBSEP $3]++;
    if (!($2 in seen)) { seen[$2] = 1; names[++nn] = $2 } }
  END {
    split("dual-write shadow-0.1 shadow-1.0", t, " ")
    printf "| workload |"
    for (i = 1; i <= 3; i++) printf " %s tps | %s ms |", t[i], t[i]
    printf " shadow-0.1 / dual-write | shadow-1.0 / dual-write |\n|---|"
    for (i = 1; i <= 3; i++) printf "---:|---:|"
    printf "---:|---:|\n"
    for (k = 1; k <= nn; k++) {
      w = names[k]; printf "| %s |", w
      for (i = 1; i <= 3; i++) { key = w SUBSEP t[i]; printf " %.0f | %.3f |", tps[key]/n[key], lat[key]/n[key] }
      d = tps[w SUBSEP t[1]] / n[w SUBSEP t[1]]
      for (i = 2; i <= 3; i++) { key = w SUBSEP t[i]; printf " %.2f |", (tps[key]/n[key]) / d }
      printf "\n"
    }
  }' "$results"
echo
echo "Shadow mismatches logged: $shadow_counts"
