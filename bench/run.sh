#!/usr/bin/env bash
# pgshift's passthrough and routing benchmark: direct PostgreSQL vs
# pgbouncer (session mode, when installed) vs pgshift, measured side by side
# in one run, with the targets alternating in rounds so that drift hits all
# of them alike. pgshift runs three times over:
#   pgshift           no configured tables (pure passthrough)
#   pgshift-loaded    the demo's tables configured as migrating; pgbench's
#                     own tables are untouched (the fast path)
#   pgshift-new-only  pgbench_accounts in new-only, moved to accounts_v2
#                     with abalance renamed balance (every statement on it
#                     planned and rewritten)
#
#   bench/run.sh [--seconds N] [--rounds N] [--scale N]
#
# PGSHIFT_BASELINE=/path/to/an/older/pgshift adds before-* targets;
# PGSHIFT_VARIANTS="name=/path ..." adds other builds as passthrough targets.
#
# Prints tps and mean latency per workload and target, the ratios to direct,
# and the resident memory of pgshift and pgbouncer holding 200 idle clients.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=bench/lib.sh
. bench/lib.sh

parse_options bench/run.sh "$@"

build_pgshift

out=$root/bench/out
rm -rf "$out"
mkdir -p "$out"
pg_port=55610 shift_port=55611 bouncer_port=55612 loaded_port=55613 new_only_port=55614

cleanup() {
  for pid in ${pids:-}; do kill "$pid" 2>/dev/null || true; done
  [ -f "$out/pgbouncer.pid" ] && kill "$(cat "$out/pgbouncer.pid")" 2>/dev/null || true
  scripts/pg-cluster.sh stop "$out/pg" || true
}
trap cleanup EXIT

scripts/pg-cluster.sh start "$out/pg" "$pg_port"
pgbench -h 127.0.0.1 -p $pg_port -U postgres -i -s "$scale" -q postgres >/dev/null 2>&1

# The new home of pgbench_accounts, for the new-only run: the same rows,
# abalance renamed.
psql -h 127.0.0.1 -p $pg_port -U postgres -q postgres <<'SQL' >/dev/null
CREATE TABLE accounts_v2 AS SELECT aid, bid, abalance AS balance, filler FROM pgbench_accounts;
ALTER TABLE accounts_v2 ADD PRIMARY KEY (aid);
VACUUM ANALYZE accounts_v2;
SQL

start_pgshift pgshift $shift_port $pg_port ""
shift_pid=$!
start_pgshift pgshift-loaded $loaded_port $pg_port '
[[tables]]
name = "channels"
new_name = "channels_v2"
phase = "new-only"
columns = { title = "name" }
[[tables]]
name = "posts"
new_name = "posts_v2"
phase = "new-only"
[[tables]]
name = "comments"
new_name = "comments_v2"
phase = "dual-write"'
start_pgshift pgshift-new-only $new_only_port $pg_port '
[[tables]]
name = "pgbench_accounts"
new_name = "accounts_v2"
phase = "new-only"
key = ["aid"]
columns = { abalance = "balance" }'

shift_targets="pgshift:$shift_port pgshift-loaded:$loaded_port pgshift-new-only:$new_only_port"
if [ -n "${PGSHIFT_BASELINE:-}" ]; then
  # The same passthrough and new-only targets on the older binary.
  start_pgshift before-pgshift $((pg_port + 10)) $pg_port "" "$PGSHIFT_BASELINE"
  start_pgshift before-pgshift-new-only $((pg_port + 11)) $pg_port "$(sed -n '/^\[\[tables\]\]/,$p' "$out/pgshift-new-only.toml")" "$PGSHIFT_BASELINE"
  shift_targets="$shift_targets before-pgshift:$((pg_port + 10)) before-pgshift-new-only:$((pg_port + 11))"
fi
# PGSHIFT_VARIANTS="name=/path/to/pgshift ...": other builds of pgshift (another
# Boost, io_uring) as passthrough targets of their own.
variant_port=$((pg_port + 20))
for variant in ${PGSHIFT_VARIANTS:-}; do
  start_pgshift "${variant%%=*}" $variant_port $pg_port "" "${variant#*=}"
  shift_targets="$shift_targets ${variant%%=*}:$variant_port"
  variant_port=$((variant_port + 1))
done
targets="direct:$pg_port $shift_targets"
if start_pgbouncer $bouncer_port $pg_port; then
  targets="direct:$pg_port pgbouncer:$bouncer_port $shift_targets"
fi
wait_for_targets "$targets"

# The new-only target must really answer from accounts_v2.
psql -h 127.0.0.1 -p $pg_port -U postgres -qc "UPDATE accounts_v2 SET balance = -4242 WHERE aid = 1" postgres
seen=$(psql -h 127.0.0.1 -p $new_only_port -U postgres -Atc "SELECT abalance FROM pgbench_accounts WHERE aid = 1" postgres)
[ "$seen" = "-4242" ] || { echo "pgshift-new-only does not answer from accounts_v2 (got '$seen')" >&2; exit 1; }
psql -h 127.0.0.1 -p $pg_port -U postgres -qc "UPDATE accounts_v2 SET balance = 0 WHERE aid = 1" postgres

# workload name, then pgbench arguments
workloads=(
  "select-simple-1c|-S -M simple -c 1 -j 1"
  "select-prepared-1c|-S -M prepared -c 1 -j 1"
  "select-simple-8c|-S -M simple -c 8 -j 2"
  "select-prepared-8c|-S -M prepared -c 8 -j 2"
  "tpcb-4c|-M prepared -c 4 -j 2"
)

results=$out/raw.tsv
: >"$results"
run_rounds "$results" "$rounds" "$seconds" "$targets" "${workloads[@]}"

# Resident memory with 200 idle clients: pgbench sessions that sleep.
echo '\sleep 8 s' >"$out/idle.sql"
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
idle_memory() {  # pid port -> "before after"
  local pid=$1 port=$2 before after
  before=$(rss_kib "$pid")
  pgbench -h 127.0.0.1 -p "$port" -U postgres -n -c 200 -j 2 -T 6 -f "$out/idle.sql" postgres >/dev/null 2>&1 &
  local bench=$!
  sleep 4
  after=$(rss_kib "$pid")
  wait $bench || true
  echo "$before $after"
}
mem_lines=()
read -r b a <<<"$(idle_memory "$shift_pid" $shift_port)"
mem_lines+=("pgshift|$b|$a")
if [ -f "$out/pgbouncer.pid" ]; then
  read -r b a <<<"$(idle_memory "$(cat "$out/pgbouncer.pid")" $bouncer_port)"
  mem_lines+=("pgbouncer|$b|$a")
fi

echo
echo "## Passthrough and routing ($rounds rounds x ${seconds}s per workload and target, pgbench scale $scale, $(nproc) cores)"
echo
print_table "$results" "$(for t in $targets; do printf '%s ' "${t%%:*}"; done)" direct
echo
echo "## Resident memory with 200 idle clients"
echo
echo "| proxy | RSS before (KiB) | RSS with 200 clients (KiB) | per client (KiB) |"
echo "|---|---:|---:|---:|"
for m in "${mem_lines[@]}"; do
  IFS='|' read -r name b a <<<"$m"
  echo "| $name | $b | $a | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", (a - b) / 200 }') |"
done
