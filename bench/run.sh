#!/usr/bin/env bash
# pgshift's passthrough benchmark: direct PostgreSQL vs pgbouncer (session
# mode, when installed) vs pgshift, measured side by side in one run, with
# the targets alternating in rounds so that drift hits all of them alike.
#
#   bench/run.sh [--seconds N] [--rounds N] [--scale N]
#
# Prints tps and mean latency per workload and target, the ratios to direct,
# and the resident memory of pgshift and pgbouncer holding 200 idle clients.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=10 rounds=3 scale=10
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    *) echo "usage: bench/run.sh [--seconds N] [--rounds N] [--scale N]" >&2; exit 2 ;;
  esac
done

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target pgshift >/dev/null

out=$root/bench/out
rm -rf "$out"
mkdir -p "$out"
pg_port=55610 shift_port=55611 bouncer_port=55612

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup() {
  [ -n "${shift_pid:-}" ] && kill "$shift_pid" 2>/dev/null || true
  [ -f "$out/pgbouncer.pid" ] && kill "$(cat "$out/pgbouncer.pid")" 2>/dev/null || true
  scripts/pg-cluster.sh stop "$out/pg" || true
}
trap cleanup EXIT

scripts/pg-cluster.sh start "$out/pg" "$pg_port"
pgbench -h 127.0.0.1 -p $pg_port -U postgres -i -s "$scale" -q postgres >/dev/null 2>&1

cat >"$out/pgshift.toml" <<TOML
[proxy]
listen = "127.0.0.1:$shift_port"
max_clients = 1000
[backends.old]
host = "127.0.0.1"
port = $pg_port
sslmode = "disable"
TOML
build/pgshift serve --config "$out/pgshift.toml" --log-level warning 2>"$out/pgshift.log" &
shift_pid=$!

targets="direct:$pg_port pgshift:$shift_port"
if command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ]; then
  bouncer=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
  [ "$(id -u)" -eq 0 ] && chown -R postgres "$out"
  cat >"$out/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$pg_port
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $out/userlist.txt
pool_mode = session
max_client_conn = 1000
default_pool_size = 250
logfile = $out/pgbouncer.log
pidfile = $out/pgbouncer.pid
INI
  echo '"postgres" ""' >"$out/userlist.txt"
  [ "$(id -u)" -eq 0 ] && chown postgres "$out/pgbouncer.ini" "$out/userlist.txt"
  as_postgres "$bouncer" -d "$out/pgbouncer.ini" >/dev/null 2>&1
  targets="direct:$pg_port pgbouncer:$bouncer_port pgshift:$shift_port"
fi
for t in $targets; do
  port=${t#*:}
  for _ in $(seq 100); do
    psql -h 127.0.0.1 -p "$port" -U postgres -Atc "SELECT 1" postgres >/dev/null 2>&1 && break
    sleep 0.1
  done
done

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
for round in $(seq "$rounds"); do
  for w in "${workloads[@]}"; do
    name=${w%%|*} args=${w#*|}
    for t in $targets; do
      target=${t%%:*} port=${t#*:}
      # shellcheck disable=SC2086
      report=$(pgbench -h 127.0.0.1 -p "$port" -U postgres -n -T "$seconds" $args postgres 2>&1)
      tps=$(awk '/^tps/ {print $3}' <<<"$report")
      lat=$(awk '/^latency average/ {print $4}' <<<"$report")
      printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$target" "${tps:-0}" "${lat:-0}" >>"$results"
      echo "round $round $name $target: tps ${tps:-?} latency ${lat:-?} ms" >&2
    done
  done
done

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
echo "## Passthrough ($rounds rounds x ${seconds}s per workload and target, pgbench scale $scale, $(nproc) cores)"
echo
awk -F'\t' -v order="$(for t in $targets; do printf '%s ' "${t%%:*}"; done)" '
  { tps[$2 SUBSEP $3] += $4; lat[$2 SUBSEP $3] += $5; n[$2 SUBSEP $3]++;
    if (!($2 in seen)) { seen[$2] = 1; names[++nn] = $2 } }
  END {
    nt = split(order, t, " ")
    printf "| workload |"
    for (i = 1; i <= nt; i++) printf " %s tps | %s ms |", t[i], t[i]
    for (i = 2; i <= nt; i++) printf " %s / direct |", t[i]
    printf "\n|---|"
    for (i = 1; i <= nt; i++) printf "---:|---:|"
    for (i = 2; i <= nt; i++) printf "---:|"
    printf "\n"
    for (k = 1; k <= nn; k++) {
      w = names[k]; printf "| %s |", w
      for (i = 1; i <= nt; i++) { key = w SUBSEP t[i]; printf " %.0f | %.3f |", tps[key]/n[key], lat[key]/n[key] }
      d = tps[w SUBSEP t[1]] / n[w SUBSEP t[1]]
      for (i = 2; i <= nt; i++) { key = w SUBSEP t[i]; printf " %.2f |", (tps[key]/n[key]) / d }
      printf "\n"
    }
  }' "$results"
echo
echo "## Resident memory with 200 idle clients"
echo
echo "| proxy | RSS before (KiB) | RSS with 200 clients (KiB) | per client (KiB) |"
echo "|---|---:|---:|---:|"
for m in "${mem_lines[@]}"; do
  IFS='|' read -r name b a <<<"$m"
  echo "| $name | $b | $a | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", (a - b) / 200 }') |"
done
