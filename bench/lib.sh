# Shared by the benchmark scripts (sourced): waiting for targets, and
# running pgbench workloads against targets in alternating rounds.

# parse_options USAGE "$@": --seconds, --rounds and --scale into $seconds,
# $rounds and $scale (defaults 10, 3, 10).
parse_options() {
  local usage=$1
  shift
  seconds=10 rounds=3 scale=10
  while [ $# -gt 0 ]; do
    case "$1" in
      --seconds) seconds=$2; shift 2 ;;
      --rounds) rounds=$2; shift 2 ;;
      --scale) scale=$2; shift 2 ;;
      *) echo "usage: $usage [--seconds N] [--rounds N] [--scale N]" >&2; exit 2 ;;
    esac
  done
}

# Installs what is missing and builds pgshift (optimised, with symbols).
build_pgshift() {
  scripts/install-deps.sh
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build --target pgshift >/dev/null
}

# A fresh folder for one run's clusters, configs and logs ($1 names it).
make_out_dir() {
  local dir
  dir=$(mktemp -d "/tmp/pgshift-bench-$1.XXXXXX")
  chmod 755 "$dir"
  echo "$dir"
}

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_pgbouncer PORT PG_PORT: pgbouncer (session mode) on PORT in front of
# postgres@PG_PORT, its files in $out; false when it is not installed.
start_pgbouncer() {
  local bouncer
  bouncer=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
  [ -x "$bouncer" ] || return 1
  [ "$(id -u)" -eq 0 ] && chown -R postgres "$out"
  cat >"$out/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$2
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $1
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
}

# start_pgshift NAME PORT OLD_PORT EXTRA_TOML [BINARY]: pgshift (build/pgshift,
# or BINARY) in the background, listening on PORT in front of
# postgres@OLD_PORT, with EXTRA_TOML added to its config; config and log go
# in $out, its pid is added to $pids. $proxy_extra, when set, goes into
# [proxy]; $old_dbname, when set, names old's database (else postgres).
#
# PGSHIFT_BASELINE=/path/to/an/older/pgshift makes the scripts run it too,
# as "before-*" targets in the same rounds: a change measured before and
# after in one run.
start_pgshift() {
  cat >"$out/$1.toml" <<TOML
[proxy]
listen = "127.0.0.1:$2"
max_clients = 1000
${proxy_extra:-}
[backends.old]
host = "127.0.0.1"
port = $3
dbname = "${old_dbname:-postgres}"
user = "postgres"
sslmode = "disable"
$4
TOML
  "${5:-build/pgshift}" serve --config "$out/$1.toml" --log-level "${PGSHIFT_LOG_LEVEL:-warning}" 2>"$out/$1.log" &
  pids="${pids:-} $!"
  pgshift_pid[$1]=$!
}

# Process ids whose CPU run_rounds charges to a target, per target name:
# "label=pid ...". A PostgreSQL cluster is charged through its postmaster,
# whose children's time counts once they have exited (cutime, cstime).
declare -A pgshift_pid cpu_pids

postmaster_pid() { head -1 "$1/data/postmaster.pid"; }

# CPU ticks of `pid`, its exited children included.
cpu_ticks() {
  awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# Waits until each "name:port" of $1 answers a query.
wait_for_targets() {
  local t
  for t in $1; do
    for _ in $(seq 100); do
      psql -h 127.0.0.1 -p "${t#*:}" -U postgres -Atc "SELECT 1" postgres >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
}

# run_rounds RESULTS ROUNDS SECONDS "name:port ..." "workload|pgbench args" ...
# Each round runs every workload against every target in turn, so drift
# hits them alike; appends "round workload target tps latency_ms" lines,
# and for a target in cpu_pids "cpu round workload target label ms" lines
# to RESULTS.cpu: each process's CPU milliseconds per transaction.
run_rounds() {
  local results=$1 rounds=$2 seconds=$3 targets=$4
  shift 4
  local round w name args t target port report tps lat
  for round in $(seq "$rounds"); do
    for w in "$@"; do
      name=${w%%|*} args=${w#*|}
      for t in $targets; do
        target=${t%%:*} port=${t#*:}
        local -A before=()
        local cpu
        for cpu in ${cpu_pids[$target]:-}; do before[$cpu]=$(cpu_ticks "${cpu#*=}"); done
        # shellcheck disable=SC2086
        report=$(pgbench -h 127.0.0.1 -p "$port" -U postgres -n -T "$seconds" $args postgres 2>&1)
        tps=$(awk '/^tps/ {print $3}' <<<"$report")
        lat=$(awk '/^latency average/ {print $4}' <<<"$report")
        printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$target" "${tps:-0}" "${lat:-0}" >>"$results"
        sleep 0.2  # the backends exit, and their time reaches the postmaster
        local done_tx
        done_tx=$(awk '/^number of transactions actually processed/ {print $NF}' <<<"$report")
        for cpu in ${cpu_pids[$target]:-}; do
          awk -v a="${before[$cpu]}" -v b="$(cpu_ticks "${cpu#*=}")" -v hz="$(getconf CLK_TCK)" \
            -v n="${done_tx:-0}" -v pre="$round\t$name\t$target\t${cpu%%=*}" \
            'BEGIN { if (n > 0) printf "%s\t%.3f\n", pre, (b - a) * 1000 / hz / n }' \
            >>"$results.cpu"
        done
        echo "round $round $name $target: tps ${tps:-?} latency ${lat:-?} ms" >&2
      done
    done
  done
}

# print_cpu_table RESULTS: mean CPU milliseconds per transaction of each
# process charged to a target (run_rounds' RESULTS.cpu).
print_cpu_table() {
  [ -s "$1.cpu" ] || return 0
  echo "| workload | target | process | CPU ms per transaction |"
  echo "|---|---|---|---:|"
  awk -F'\t' '{ k = $2 " | " $3 " | " $4; s[k] += $5; n[k]++; if (!(k in seen)) { seen[k] = 1; o[++m] = k } }
    END { for (i = 1; i <= m; i++) printf "| %s | %.3f |\n", o[i], s[o[i]] / n[o[i]] }' "$1.cpu"
}

# print_table RESULTS "target ..." BASE: a markdown table of the mean tps
# and latency of each workload on each target (in that order), then the
# tps of every later target as a ratio to BASE's.
print_table() {
  awk -F'\t' -v order="$2" -v base="$3" '
    { tps[$2 SUBSEP $3] += $4; lat[$2 SUBSEP $3] += $5; n[$2 SUBSEP $3]++;
      if (!($2 in seen)) { seen[$2] = 1; names[++nn] = $2 } }
    END {
      nt = split(order, t, " ")
      for (i = 1; i <= nt; i++) if (t[i] == base) b = i
      printf "| workload |"
      for (i = 1; i <= nt; i++) printf " %s tps | %s ms |", t[i], t[i]
      for (i = b + 1; i <= nt; i++) printf " %s / %s |", t[i], base
      printf "\n|---|"
      for (i = 1; i <= nt; i++) printf "---:|---:|"
      for (i = b + 1; i <= nt; i++) printf "---:|"
      printf "\n"
      for (k = 1; k <= nn; k++) {
        w = names[k]; printf "| %s |", w
        for (i = 1; i <= nt; i++) { key = w SUBSEP t[i]; printf " %.0f | %.3f |", tps[key]/n[key], lat[key]/n[key] }
        d = tps[w SUBSEP t[b]] / n[w SUBSEP t[b]]
        for (i = b + 1; i <= nt; i++) { key = w SUBSEP t[i]; printf " %.2f |", (tps[key]/n[key]) / d }
        printf "\n"
      }
    }' "$1"
}
