#!/usr/bin/env bash
# pg_tmp.sh: a throwaway PostgreSQL cluster for tests, the demo and the benchmark.
#   pg_tmp.sh start DIR PORT [CERTDIR]   initdb into DIR/pgdata, listen on 127.0.0.1:PORT
#                                        (TLS on with CERTDIR/server.{crt,key} when given)
#   pg_tmp.sh stop DIR                   stop it (the caller removes DIR)
#   pg_tmp.sh restart DIR                start a stopped (or crashed) cluster in DIR again
#   pg_tmp.sh psql DIR [psql args]       psql as the superuser over the cluster's socket
# PG_TMP_LISTEN (default 127.0.0.1) lists the loopback addresses to listen on, comma-separated.
# PostgreSQL refuses to run as root: as root, the cluster runs as the postgres user.
set -euo pipefail

pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    local dir=$1 port=$2 certdir=${3:-}
    local bin; bin=$(pg_bindir)
    [ -n "$bin" ] || { echo "pg_tmp.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
    mkdir -p "$dir/pgdata" "$dir/sock"
    chmod 755 "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir/pgdata" "$dir/sock"; fi
    as_pg "$bin/initdb" -D "$dir/pgdata" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    {
        echo "port = $port"
        echo "listen_addresses = '${PG_TMP_LISTEN:-127.0.0.1}'"
        echo "unix_socket_directories = '$dir/sock'"
        echo "max_connections = 400"
        echo "fsync = off"
        echo "synchronous_commit = off"
        echo "full_page_writes = off"
        echo "shared_buffers = 128MB"
    } | as_pg tee -a "$dir/pgdata/postgresql.conf" >/dev/null
    if [ -n "$certdir" ]; then
        install -m 0600 "$certdir/server.crt" "$dir/pgdata/server.crt"
        install -m 0600 "$certdir/server.key" "$dir/pgdata/server.key"
        if [ "$(id -u)" = 0 ]; then chown postgres "$dir/pgdata/server.crt" "$dir/pgdata/server.key"; fi
        echo "ssl = on" | as_pg tee -a "$dir/pgdata/postgresql.conf" >/dev/null
    fi
    # md5 and cleartext logins for the server-side authentication tests; SCRAM for the rest.
    {
        echo "local all all trust"
        echo "host all lp_md5 127.0.0.1/32 md5"
        echo "host all lp_plain 127.0.0.1/32 password"
        echo "host all all 127.0.0.0/8 scram-sha-256"
    } | as_pg tee "$dir/pgdata/pg_hba.conf" >/dev/null
    chmod a+rwx "$dir" # pg_ctl writes the log as postgres
    as_pg "$bin/pg_ctl" -D "$dir/pgdata" -l "$dir/postgres.log" -w -t 60 start >/dev/null \
        || { cat "$dir/postgres.log" >&2; exit 1; }
}

restart() {
    local dir=$1
    local bin; bin=$(pg_bindir)
    as_pg "$bin/pg_ctl" -D "$dir/pgdata" -l "$dir/postgres.log" -w -t 60 start >/dev/null
}

stop() {
    local dir=$1
    local bin; bin=$(pg_bindir)
    [ -f "$dir/pgdata/postmaster.pid" ] || return 0
    as_pg "$bin/pg_ctl" -D "$dir/pgdata" -m immediate -w stop >/dev/null 2>&1 || true
}

run_psql() {
    local dir=$1; shift
    psql -X -q -v ON_ERROR_STOP=1 -h "$dir/sock" -p "$(sed -n 's/^port = //p' "$dir/pgdata/postgresql.conf" | tail -n1)" -U postgres "$@"
}

case "${1:-}" in
    start) start "$2" "$3" "${4:-}" ;;
    stop) stop "$2" ;;
    restart) restart "$2" ;;
    psql) d=$2; shift 2; run_psql "$d" "$@" ;;
    *) echo "usage: $0 start DIR PORT [CERTDIR] | stop DIR | restart DIR | psql DIR [args]" >&2; exit 2 ;;
esac
