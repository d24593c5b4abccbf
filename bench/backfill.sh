#!/usr/bin/env bash
# Backfill and verify throughput: pgshift backfill against a plain
# INSERT ... SELECT on one database and against a COPY pipe across two
# servers, with one worker and with --jobs 2, and verify's seconds per
# million rows (one worker and two), measured in one run.
#
#   [PGSHIFT_BASELINE=/path/to/older/pgshift] bench/backfill.sh [--rows N] [--batch N] [--rounds N]
#
# Each round runs the six copies in turn (tables emptied first); the
# figures are means over the rounds, each backfill as a ratio of the rate
# of the plain copy beside it, and --jobs 2 as a ratio of one worker.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

rows=1000000 batch=5000 rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "usage: bench/backfill.sh [--rows N] [--batch N] [--rounds N]" >&2; exit 2 ;;
  esac
done

build_pgshift

out=$(make_out_dir backfill)
old_port=55810 new_port=55811
cleanup() {
  scripts/pg-cluster.sh stop "$out/old" || true
  scripts/pg-cluster.sh stop "$out/new" || true
  rm -rf "$out"
}
trap cleanup EXIT
scripts/pg-cluster.sh start "$out/old" $old_port
scripts/pg-cluster.sh start "$out/new" $new_port
q() { psql -X -h 127.0.0.1 -p "$1" -U postgres -d postgres -v ON_ERROR_STOP=1 -Atq -c "$2"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

new_table="(id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL, payload text)"
q $old_port "CREATE TABLE channels (id bigserial PRIMARY KEY, title text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(), payload text);
  INSERT INTO channels (title, payload) SELECT 'channel ' || g, md5(g::text) || md5((g + 1)::text)
  FROM generate_series(1, $rows) g"
q $old_port "VACUUM ANALYZE channels"

config() {  # file [new-port]
  {
    echo "[backends.old]"
    echo "port = $old_port"
    echo 'dbname = "postgres"'
    echo 'user = "postgres"'
    echo 'sslmode = "disable"'
    if [ -n "${2:-}" ]; then
      echo "[backends.new]"
      echo "port = $2"
      echo 'dbname = "postgres"'
      echo 'user = "postgres"'
      echo 'sslmode = "disable"'
    fi
    echo '[[tables]]'
    echo 'name = "channels"'
    echo 'new_name = "channels_v2"'
    echo 'key = ["id"]'
    echo 'columns = { title = "name" }'
    echo 'phase = "dual-write"'
  } >"$1"
}
config "$out/one.toml"
config "$out/two.toml" $new_port

# seconds LABEL SECONDS: one measurement, kept per label.
declare -A total runs
seconds() {
  total[$1]=$(awk -v a="${total[$1]:-0}" -v b="$2" 'BEGIN { print a + b }')
  runs[$1]=$((${runs[$1]:-0} + 1))
}
fresh() {  # port table: the table empty, as each round starts
  q "$1" "DROP TABLE IF EXISTS $2; CREATE TABLE $2 $new_table"
}

# backfills SIDE PORT: pgshift's copy with one worker and with two (and
# PGSHIFT_BASELINE's, an older build's, with one: "before").
backfills() {
  local variants="1 2" jobs binary
  [ -n "${PGSHIFT_BASELINE:-}" ] && variants="$variants before"
  for jobs in $variants; do
    binary=build/pgshift
    [ "$jobs" = before ] && binary=$PGSHIFT_BASELINE
    fresh "$2" channels_v2
    q $old_port "DROP TABLE IF EXISTS pgshift_state"
    t=$(now)
    if [ "$jobs" = before ]; then
      "$binary" backfill --config "$out/$1.toml" --table channels --batch "$batch" >/dev/null
    else
      "$binary" backfill --config "$out/$1.toml" --table channels --batch "$batch" \
        --jobs "$jobs" >/dev/null
    fi
    seconds "backfill-$1-$jobs" "$(since "$t")"
  done
}

for round in $(seq "$rounds"); do
  # One database.
  fresh $old_port plain_copy
  t=$(now); q $old_port "INSERT INTO plain_copy SELECT id, title, created_at, payload FROM channels"
  seconds insert-select "$(since "$t")"
  backfills one $old_port
  # Across servers.
  fresh $new_port plain_copy
  t=$(now)
  psql -X -h 127.0.0.1 -p $old_port -U postgres -d postgres -Atq \
    -c "COPY (SELECT id, title, created_at, payload FROM channels) TO STDOUT" |
    psql -X -h 127.0.0.1 -p $new_port -U postgres -d postgres -Atq -c "COPY plain_copy FROM STDIN"
  seconds copy-pipe "$(since "$t")"
  backfills two $new_port
  echo "round $round done" >&2
done
declare -A verify
for jobs in 1 2; do
  for side in one two; do
    t=$(now)
    build/pgshift verify --config "$out/$side.toml" --table channels --chunk 10000 \
      --jobs $jobs >/dev/null
    verify[$side-$jobs]=$(since "$t")
  done
done

mean() { awk -v a="${total[$1]}" -v n="${runs[$1]}" 'BEGIN { printf "%.2f", a / n }'; }
row() {  # label key [base-key]
  local s ratio=""
  s=$(mean "$2")
  [ -n "${3:-}" ] && ratio=$(awk -v a="$(mean "$3")" -v b="$s" 'BEGIN { printf "%.2f", a / b }')
  echo "| $1 | $s | $(awk -v r="$rows" -v s="$s" 'BEGIN { printf "%.0f", r / s }') | $ratio |"
}

echo
echo "## Backfill and verify ($rows rows, $rounds rounds, $(nproc) cores)"
echo
echo "| copy | seconds (mean) | rows/s | rate / its baseline |"
echo "|---|---:|---:|---:|"
row "INSERT ... SELECT, one database" insert-select
row "pgshift backfill --batch $batch, one database" backfill-one-1 insert-select
row "pgshift backfill --batch $batch --jobs 2, one database" backfill-one-2 insert-select
row "COPY pipe, across servers" copy-pipe
row "pgshift backfill --batch $batch, across servers" backfill-two-1 copy-pipe
row "pgshift backfill --batch $batch --jobs 2, across servers" backfill-two-2 copy-pipe
if [ -n "${PGSHIFT_BASELINE:-}" ]; then
  row "before: backfill --batch $batch, one database" backfill-one-before insert-select
  row "before: backfill --batch $batch, across servers" backfill-two-before copy-pipe
fi
echo
echo "| verify (--chunk 10000) | seconds | seconds per million rows |"
echo "|---|---:|---:|"
for v in "one database|one-1" "one database, --jobs 2|one-2" "across servers|two-1" \
  "across servers, --jobs 2|two-2"; do
  IFS='|' read -r label key <<<"$v"
  s=${verify[$key]}
  echo "| $label | $s | $(awk -v s="$s" -v r="$rows" 'BEGIN { printf "%.2f", s * 1000000 / r }') |"
done
# The goals, and what a second worker gives, on one line.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "backfill / its baseline (goal 0.60): one database $(ratio "$(mean insert-select)" \
"$(mean backfill-one-1)"), across servers $(ratio "$(mean copy-pipe)" "$(mean backfill-two-1)");" \
  "--jobs 2 / --jobs 1 speed-up: backfill one database $(ratio "$(mean backfill-one-1)" \
"$(mean backfill-one-2)"), across servers $(ratio "$(mean backfill-two-1)" "$(mean backfill-two-2)")," \
  "verify one database $(ratio "${verify[one-1]}" "${verify[one-2]}"), across servers" \
  "$(ratio "${verify[two-1]}" "${verify[two-2]}")"
