#!/usr/bin/env bash
# Fenced flips under load: pgbench TPC-B across two servers through three
# coordinated pgshift instances (one pgbench per instance), while pgbench's
# four tables flip between shadow-read and new-primary (which side takes
# their writes first) every few seconds. Prints how long each flip held new
# transactions on the tables (p50, p99, max, from pgshift_state's held_ms),
# the throughput of the same run without flips beside it, and any client
# error.
#
#   bench/coordination.sh [--seconds N] [--rounds N] [--scale N]
#   (--rounds: flips per round trip shadow-read -> new-primary -> shadow-read)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
parse_options bench/coordination.sh "$@"
flips=$((rounds * 2))
[ "$seconds" -ge $((flips * 2 + 4)) ] || seconds=$((flips * 2 + 4))

build_pgshift

out=$(make_out_dir coordination)
old_port=55870 new_port=55871
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/pg-cluster.sh stop "$out/old" || true
  scripts/pg-cluster.sh stop "$out/new" || true
  [ -n "${KEEP:-}" ] || rm -rf "$out"
}
trap cleanup EXIT
scripts/pg-cluster.sh start "$out/old" $old_port "max_prepared_transactions = 100"
scripts/pg-cluster.sh start "$out/new" $new_port "max_prepared_transactions = 100"
pgbench -h 127.0.0.1 -p $old_port -U postgres -i -s "$scale" -q postgres >/dev/null 2>&1

v2_schema="
CREATE TABLE accounts_v2 (aid int PRIMARY KEY, bid int, balance int, filler char(84));
CREATE TABLE branches_v2 (bid int PRIMARY KEY, bbalance int, filler char(88));
CREATE TABLE tellers_v2 (tid int PRIMARY KEY, bid int, tbalance int, filler char(84));
CREATE TABLE history_v2 (hid bigserial PRIMARY KEY, tid int, bid int, aid int, delta int,
                         mtime timestamp, filler char(22));"
psql -X -h 127.0.0.1 -p $new_port -U postgres -q postgres -c "$v2_schema"
# history's key comes from a sequence on whichever side takes the writes:
# odd numbers on old, even ones on new, so the two never hand out the same.
psql -X -h 127.0.0.1 -p $old_port -U postgres -q postgres \
  -c "ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY" \
  -c "ALTER SEQUENCE pgbench_history_hid_seq INCREMENT BY 2 RESTART WITH 1"
psql -X -h 127.0.0.1 -p $new_port -U postgres -q postgres \
  -c "ALTER SEQUENCE history_v2_hid_seq INCREMENT BY 2 RESTART WITH 2"
for t in accounts branches tellers; do
  psql -X -h 127.0.0.1 -p $old_port -U postgres -q postgres -c "\\copy pgbench_${t} TO STDOUT" |
    psql -X -h 127.0.0.1 -p $new_port -U postgres -q postgres -c "\\copy ${t}_v2 FROM STDIN"
done
psql -X -h 127.0.0.1 -p $new_port -U postgres -q postgres -c "VACUUM ANALYZE"

# tables PHASE: the four tables in PHASE (force: the guard rails are not
# what is measured).
tables() {
  local t
  for t in accounts:aid branches:bid tellers:tid history:hid; do
    printf '[[tables]]\nname = "pgbench_%s"\nnew_name = "%s_v2"\nkey = ["%s"]\nphase = "%s"\nforce = true\n%s\n' \
      "${t%%:*}" "${t%%:*}" "${t#*:}" "$1" \
      "$([ "${t%%:*}" = accounts ] && echo 'columns = { abalance = "balance" }')"
  done
}
instance() {  # instance NAME PHASE
  printf '[coordination]\nenabled = true\ninstance_id = "%s"\n\n[backends.new]\nport = %s\ndbname = "postgres"\nuser = "postgres"\nsslmode = "disable"\n\n%s' \
    "$1" $new_port "$(tables "$2")"
}
ports=""
port=55872
PGSHIFT_LOG_LEVEL=info  # the flips' verdicts are read from a's log
for name in a b c; do
  start_pgshift "$name" $port $old_port "$(instance $name shadow-read)"
  ports="$ports $port"
  port=$((port + 1))
done
targets=""
for p in $ports; do targets="$targets x:$p"; done
wait_for_targets "$targets"
a_pid=$(echo "$pids" | awk '{print $1}')

# load LABEL: pgbench TPC-B through each instance for $seconds; the total tps.
load() {
  local p total=0 tps
  for p in $ports; do
    pgbench -h 127.0.0.1 -p "$p" -U postgres -c 2 -j 1 -T "$seconds" -n postgres \
      >"$out/$1-$p.txt" 2>&1 &
  done
  if [ "$1" = flips ]; then
    sleep 2
    local i phase=new-primary
    for i in $(seq "$flips"); do
      local before
      before=$(grep -c "event=config_reloaded\|event=config_rejected" "$out/a.log" || true)
      local from
      from=$([ $phase = new-primary ] && echo shadow-read || echo new-primary)
      sed -i "s/^phase = \"$from\"/phase = \"$phase\"/" "$out/a.toml"
      kill -HUP "$a_pid"
      for _ in $(seq 200); do
        [ "$(grep -c "event=config_reloaded\|event=config_rejected" "$out/a.log" || true)" -gt "$before" ] && break
        sleep 0.05
      done
      grep "event=config_reloaded\|event=config_rejected" "$out/a.log" | tail -1 |
        grep "config_rejected" >&2 || true
      phase=$([ $phase = new-primary ] && echo shadow-read || echo new-primary)
      sleep 1.5
    done
  fi
  wait $(jobs -p) 2>/dev/null || true
  for p in $ports; do
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out/$1-$p.txt" | head -1)
    total=$(echo "$total + ${tps:-0}" | bc -l)
  done
  echo "$total"
}
steady=$(load steady)
flipping=$(load flips)
errors=$(grep -h "aborted\|ERROR\|error" "$out"/steady-*.txt "$out"/flips-*.txt | grep -vc "^number of failed" || true)

holds=$(psql -X -h 127.0.0.1 -p $old_port -U postgres -Atq postgres -c "
  SELECT DISTINCT ON (detail->>'flip') (detail->>'held_ms')::int FROM pgshift_state
  WHERE kind = 'phase' AND detail ? 'flip' ORDER BY detail->>'flip'" | sort -n)
count=$(echo "$holds" | grep -c . || true)
pct() { echo "$holds" | awk -v p="$1" -v n="$count" 'NR == int((n - 1) * p) + 1 {print; exit}'; }
differ=$(for t in accounts branches tellers; do
  a=$(psql -X -h 127.0.0.1 -p $old_port -U postgres -Atq postgres -c "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM (SELECT * FROM pgbench_$t) t")
  b=$(psql -X -h 127.0.0.1 -p $new_port -U postgres -Atq postgres -c "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM (SELECT * FROM ${t}_v2) t")
  [ "$a" = "$b" ] || echo "$t"
done)

echo
echo "## Fenced flips under TPC-B, three instances ($seconds s per run, scale $scale, $(nproc) cores)"
echo
echo "| run | tps (3 x pgbench -c 2) | ratio |"
echo "|---|---:|---:|"
echo "| steady (no flips) | $steady | 1.00 |"
echo "| $count flips shadow-read <-> new-primary | $flipping | $(echo "scale=2; $flipping / $steady" | bc -l) |"
echo
echo "hold per flip (ms): p50 $(pct 0.5), p99 $(pct 0.99), max $(echo "$holds" | tail -1) (of $count)"
echo "client errors: $errors; tables differing between old and new: ${differ:-none}"
