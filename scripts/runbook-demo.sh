#!/usr/bin/env bash
# Plays docs/runbook.md end to end on a throwaway demo database: channels,
# then posts, then comments go from old-only through dual-write, backfill,
# verify, shadow-read and new-primary, while a write load runs through
# pgshift the whole time. Fails if the load sees a single error or a final
# verify finds a difference.
#
#   scripts/runbook-demo.sh [--keep]     (--keep leaves the cluster running)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

keep=${1:-}
build=${PGSHIFT_BUILD:-build}
[ -x "$build/pgshift" ] || {
  scripts/install-deps.sh
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" --target pgshift
}
work=$(mktemp -d /tmp/pgshift-runbook.XXXXXX)
chmod 755 "$work"  # the server runs as postgres
# Below the kernel's ephemeral range (32768 and up), so that no client
# connection's local port can hold one of them.
pg_port=$((21700 + RANDOM % 200)) proxy_port=$((21900 + RANDOM % 50)) admin_port=$((21950 + RANDOM % 50))
pgbench_pid="" pgshift_pid=""

cleanup() {
  local status=$?
  if [ "$status" -ne 0 ] && [ -s "$work/pgshift.log" ]; then
    echo "-- pgshift's log (the run failed):" >&2
    tail -n 40 "$work/pgshift.log" >&2
  fi
  [ -n "$pgbench_pid" ] && kill "$pgbench_pid" 2>/dev/null || true
  [ -n "$pgshift_pid" ] && kill "$pgshift_pid" 2>/dev/null && wait "$pgshift_pid" 2>/dev/null || true
  scripts/pg-cluster.sh stop "$work/pg" || true
  if [ "$keep" = "--keep" ]; then echo "kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }
sql() { PGPASSWORD=app psql -X -h 127.0.0.1 -p "$pg_port" -U app -d app -v ON_ERROR_STOP=1 -Atq "$@"; }
admin() { PGPASSWORD=app psql -X -h 127.0.0.1 -p "$admin_port" -U app -d pgshift -At -F ' | ' -c "$1"; }

say "A throwaway database with the demo tables"
scripts/pg-cluster.sh start "$work/pg" "$pg_port"
psql -X -h 127.0.0.1 -p "$pg_port" -U postgres -q -c "CREATE ROLE app LOGIN PASSWORD 'app'" \
  -c "CREATE DATABASE app OWNER app"
sql -f conf/demo-schema.sql

# The demo configuration on this run's ports; phases are set per step.
config=$work/pgshift.toml
phases=(old-only old-only old-only)  # channels posts comments
write_config() {
  sed -e "s/127.0.0.1:6432/127.0.0.1:$proxy_port/" -e "s/127.0.0.1:6433/127.0.0.1:$admin_port/" \
      -e "/metrics_listen/d" -e "s/port = 54320/port = $pg_port/" conf/demo.toml |
    awk -v p1="${phases[0]}" -v p2="${phases[1]}" -v p3="${phases[2]}" '
      /^phase = / { n++; print "phase = \"" (n == 1 ? p1 : n == 2 ? p2 : p3) "\""; next } { print }' \
      >"$config"
}
write_config
"$build/pgshift" serve --config "$config" --log-level warning 2>"$work/pgshift.log" &
pgshift_pid=$!
serving=no
for _ in $(seq 100); do
  if PGPASSWORD=app psql -X -h 127.0.0.1 -p "$proxy_port" -U app -d app -Atc "SELECT 1" >/dev/null 2>&1; then
    serving=yes
    break
  fi
  sleep 0.1
done
[ "$serving" = yes ] || { echo "pgshift is not serving on port $proxy_port" >&2; exit 1; }

say "The application's write load, through pgshift, for the whole migration"
cat >"$work/load.sql" <<'SQL'
\set c random(1, 20)
\set p random(1, 500)
\set k random(1, 5000)
INSERT INTO channels (title) VALUES ('load channel');
UPDATE channels SET title = title || '.' WHERE id = :c;
INSERT INTO posts (channel_id, body) VALUES (:c, 'load post');
UPDATE posts SET body = 'edited ' || :p WHERE id = :p;
INSERT INTO comments (post_id, author, body) VALUES (:p, 'load', 'load comment');
UPDATE comments SET body = 'edited ' || :k WHERE id = :k;
SELECT c.title, count(*) FROM channels c JOIN posts p ON p.channel_id = c.id WHERE c.id = :c GROUP BY 1;
SELECT count(*), max(body) FROM comments WHERE post_id = :p;
SQL
PGPASSWORD=app pgbench -h 127.0.0.1 -p "$proxy_port" -U app -n -c 2 -j 1 -T 3600 -R 100 \
  -f "$work/load.sql" app >"$work/pgbench.log" 2>&1 &
pgbench_pid=$!
sleep 2

set_phase() {  # table-index phase [extra sql]
  phases[$1]=$2
  write_config
  admin "RELOAD" >/dev/null
  admin "SHOW TABLES" | awk -F ' [|] ' -v t="$3" '$1 == t { print "   " $1 ": " $3 " (reads " $4 ", writes " $5 ", refused " $6 ")" }'
}

tables=(channels posts comments)
for i in 0 1 2; do
  t=${tables[$i]}
  say "$t: dual-write, then backfill"
  set_phase "$i" dual-write "public.$t"
  "$build/pgshift" backfill --config "$config" --table "$t" --batch 500 | tail -1

  say "$t: verify, then shadow-read (the guard rail wants the clean verify)"
  "$build/pgshift" verify --config "$config" --table "$t"
  set_phase "$i" shadow-read "public.$t"

  say "$t: shadow reads compared until the guard rail into new-primary is satisfied"
  for _ in $(seq 150); do
    compared=$(admin "SHOW TABLES" | awk -F ' [|] ' -v t="public.$t" '$1 == t { print $12 }')
    [ "${compared:-0}" -ge 20 ] && break
    sleep 0.2
  done
  admin "SHOW TABLES" | awk -F ' [|] ' -v t="public.$t" '$1 == t { print "   compared " $12 ", matched " $13 ", mismatched " $14 }'

  say "$t: new-primary; first the new table gets its own ids, past old's"
  sql -c "SELECT setval(pg_get_serial_sequence('${t}_v2', 'id'), (SELECT max(id) + 1000000 FROM $t))" >/dev/null
  set_phase "$i" new-primary "public.$t"
  sleep 2
done

say "Stop the load; every table verifies clean"
# (SIGTERM: a background job of a script ignores SIGINT.) pgbench reports
# each failed statement as it happens.
kill -TERM "$pgbench_pid"
wait "$pgbench_pid" 2>/dev/null || true
pgbench_pid=""
if grep -qiE "aborted|error" "$work/pgbench.log"; then
  echo "the load saw errors:" >&2
  cat "$work/pgbench.log" >&2
  exit 1
fi
echo "the load saw no error; rows it added: $(sql -c "SELECT (SELECT count(*) FROM channels_v2 WHERE name = 'load channel') + (SELECT count(*) FROM posts_v2 WHERE body = 'load post') + (SELECT count(*) FROM comments_v2 WHERE body = 'load comment')")"
status=0
for t in "${tables[@]}"; do
  "$build/pgshift" verify --config "$config" --table "$t" || status=1
done

say "History"
admin "SHOW HISTORY" | head -20
exit $status
