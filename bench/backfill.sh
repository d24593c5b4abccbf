#!/usr/bin/env bash
# Backfill and verify throughput: pgshift backfill against a plain
# INSERT ... SELECT on one database and against a COPY pipe across two
# servers, and verify's seconds per million rows, measured in one run.
#
#   bench/backfill.sh [--rows N] [--batch N]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

rows=1000000 batch=5000
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    *) echo "usage: bench/backfill.sh [--rows N] [--batch N]" >&2; exit 2 ;;
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

results=()
measure() {  # label seconds
  results+=("$1|$2|$(awk -v r="$rows" -v s="$2" 'BEGIN { printf "%.0f", r / s }')")
}

# One database.
q $old_port "CREATE TABLE plain_copy $new_table"
t=$(now); q $old_port "INSERT INTO plain_copy SELECT id, title, created_at, payload FROM channels"
measure "INSERT ... SELECT, one database" "$(since "$t")"
q $old_port "CREATE TABLE channels_v2 $new_table"
t=$(now); build/pgshift backfill --config "$out/one.toml" --table channels --batch "$batch" >/dev/null
measure "pgshift backfill --batch $batch, one database" "$(since "$t")"
t=$(now); build/pgshift verify --config "$out/one.toml" --table channels --chunk 10000 >/dev/null
verify_one=$(since "$t")

# Across servers.
q $new_port "CREATE TABLE plain_copy $new_table"
t=$(now)
psql -X -h 127.0.0.1 -p $old_port -U postgres -d postgres -Atq \
  -c "COPY (SELECT id, title, created_at, payload FROM channels) TO STDOUT" |
  psql -X -h 127.0.0.1 -p $new_port -U postgres -d postgres -Atq -c "COPY plain_copy FROM STDIN"
measure "COPY pipe, across servers" "$(since "$t")"
q $new_port "CREATE TABLE channels_v2 $new_table"
q $old_port "DELETE FROM pgshift_state"
t=$(now); build/pgshift backfill --config "$out/two.toml" --table channels --batch "$batch" >/dev/null
measure "pgshift backfill --batch $batch, across servers" "$(since "$t")"
t=$(now); build/pgshift verify --config "$out/two.toml" --table channels --chunk 10000 >/dev/null
verify_two=$(since "$t")

echo
echo "## Backfill and verify ($rows rows, $(nproc) cores)"
echo
echo "| copy | seconds | rows/s |"
echo "|---|---:|---:|"
for r in "${results[@]}"; do
  IFS='|' read -r label s rate <<<"$r"
  echo "| $label | $s | $rate |"
done
echo
echo "| verify (--chunk 10000) | seconds | seconds per million rows |"
echo "|---|---:|---:|"
for v in "one database|$verify_one" "across servers|$verify_two"; do
  IFS='|' read -r label s <<<"$v"
  echo "| $label | $s | $(awk -v s="$s" -v r="$rows" 'BEGIN { printf "%.2f", s * 1000000 / r }') |"
done
