#!/usr/bin/env bash
# A throwaway PostgreSQL cluster in a local folder, for the demo and the
# benchmark: pg-cluster.sh start DIR PORT [EXTRA_CONF] | stop DIR
# EXTRA_CONF (lines for postgresql.conf) applies when the cluster is made.
# As root, the server runs as the postgres user (initdb refuses root).
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
action=$1 dir=$(realpath -m "$2")

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
  start)
    port=$3
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      mkdir -p "$dir"
      [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
      as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
      cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 300
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
${4:-}
CONF
    fi
    as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null
    ;;
  stop)
    [ -f "$dir/data/postmaster.pid" ] && as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  *)
    echo "usage: pg-cluster.sh start DIR PORT [EXTRA_CONF] | stop DIR" >&2
    exit 2
    ;;
esac
