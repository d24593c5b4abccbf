# Shared by the benchmark scripts (sourced): waiting for targets, and
# running pgbench workloads against targets in alternating rounds.

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
# hits them alike; appends "round workload target tps latency_ms" lines.
run_rounds() {
  local results=$1 rounds=$2 seconds=$3 targets=$4
  shift 4
  local round w name args t target port report tps lat
  for round in $(seq "$rounds"); do
    for w in "$@"; do
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
}
