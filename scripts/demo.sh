#!/usr/bin/env bash
# Installs dependencies, builds pgshift, starts a throwaway PostgreSQL in
# ./demo-data with channels/posts/comments (and their empty *_v2 tables),
# and runs pgshift in front of it with conf/demo.toml. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target pgshift

pg_port=54320
scripts/pg-cluster.sh start demo-data "$pg_port"
trap 'scripts/pg-cluster.sh stop "$root/demo-data"' EXIT
if [ "$(psql -h 127.0.0.1 -p $pg_port -U postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = 'app'")" = 0 ]; then
  psql -h 127.0.0.1 -p $pg_port -U postgres -q -c "CREATE ROLE app LOGIN PASSWORD 'app'" \
    -c "CREATE DATABASE app OWNER app"
  psql -h 127.0.0.1 -p $pg_port -U app -d app -q -v ON_ERROR_STOP=1 -f conf/demo-schema.sql
fi

cat <<MSG

pgshift demo: PostgreSQL on 127.0.0.1:$pg_port, pgshift on 127.0.0.1:6432.
Connect through pgshift with:

  PGPASSWORD=app psql -h 127.0.0.1 -p 6432 -U app app

Then try: SELECT c.title, count(*) FROM channels c JOIN posts p ON p.channel_id = c.id GROUP BY 1;

Admin console:  PGPASSWORD=app psql -h 127.0.0.1 -p 6433 -U app pgshift -c 'SHOW TABLES'
Metrics:        curl -s http://127.0.0.1:9930/metrics
Ctrl-C stops pgshift and the demo database.

MSG
# In the background with signals forwarded, so that however the script is
# stopped, pgshift shuts down and the EXIT trap stops the database.
build/pgshift serve --config conf/demo.toml &
pgshift_pid=$!
trap 'kill -TERM $pgshift_pid 2>/dev/null || true' INT TERM
wait $pgshift_pid || true
wait $pgshift_pid 2>/dev/null || true
