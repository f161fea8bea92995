#!/usr/bin/env bash
# demo.sh [PORT]: `make demo`. Installs missing packages (as root: need_packages.sh), builds
# lakeproxy, starts a throwaway PostgreSQL with the demo schema and lakeproxy with
# conf/demo.yaml, prints connection strings, and stays in the foreground until Ctrl-C or
# SIGTERM, then removes everything.
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT=${1:-6432}
bash tests/lib/need_packages.sh install demo
make -s lakeproxy # (after the packages: the build needs their headers)

T=$(mktemp -d /tmp/lakeproxy-demo.XXXXXX)
chmod 755 "$T"
proxy=""
cleanup() {
    trap - EXIT
    trap '' INT TERM # ignored while cleaning up: make forwards a SIGTERM to this script again
    set +e # every step runs, whatever the one before returned (lakeproxy's exit status after
           # Ctrl-C, which reaches it too, used to end the clean-up before PostgreSQL stopped)
    [ -n "$proxy" ] && kill "$proxy" 2>/dev/null
    [ -n "$proxy" ] && wait "$proxy" 2>/dev/null
    bash tests/lib/pg_tmp.sh stop "$T/pg"
    rm -rf "$T"
    echo "demo: stopped, removed $T"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

if (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; then
    echo "demo: port $PORT is taken; try make demo PORT=N" >&2
    exit 1
fi
PGPORT=54329
(exec 3<>/dev/tcp/127.0.0.1/$PGPORT) 2>/dev/null && PGPORT=$(bash tests/lib/free_port.sh)
echo "demo: starting PostgreSQL on 127.0.0.1:$PGPORT in $T"
bash tests/lib/pg_tmp.sh start "$T/pg" "$PGPORT"
bash tests/lib/pg_tmp.sh psql "$T/pg" -d postgres -f conf/demo.sql >/dev/null

sed -e "s/^  port: 6432$/  port: $PORT/" -e "s/^    port: 54329$/    port: $PGPORT/" \
    conf/demo.yaml >"$T/demo.yaml"
chmod 600 "$T/demo.yaml" # (it holds the demo's passwords: lakeproxy warns of a file others can read)
export LP_PGSOCK="$T/pg/sock" LP_PGPORT="$PGPORT" # for the demo token service (mint_token.sh)
./lakeproxy -c "$T/demo.yaml" &
proxy=$!
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
    kill -0 "$proxy" 2>/dev/null || { echo "demo: lakeproxy failed to start" >&2; exit 1; }
    sleep 0.05
done

cat <<INFO

lakeproxy is running on 127.0.0.1:$PORT in front of a throwaway PostgreSQL.
Connection strings (one per demo user):

  postgresql://alice:alice-demo@127.0.0.1:$PORT/demo       (all rows, unmasked: alice only)
  postgresql://alice:alice-demo@127.0.0.1:$PORT/demo_rotating   (server password: a token
      rotated every 48 s; watch it with SHOW CREDENTIALS)
  postgresql://ada:ada-demo@127.0.0.1:$PORT/demo_rls       (row-level security: tenant 1)
  postgresql://grace:grace-demo@127.0.0.1:$PORT/demo_rls   (row-level security: tenant 2)
  postgresql://bob:bob-demo@127.0.0.1:$PORT/demo_masked    (column masking: email, ssn masked)
  postgresql://alice:alice-demo@127.0.0.1:$PORT/demo_masked  (column masking: alice is exempt)

Admin console (SHOW POOLS, SHOW CLIENTS, SHOW SERVERS, SHOW STATS, SHOW CONFIG,
SHOW CREDENTIALS, RELOAD, PAUSE, RESUME, SHUTDOWN):

  postgresql://alice:alice-demo@127.0.0.1:$PORT/lakeproxy

Try:
  psql postgresql://alice:alice-demo@127.0.0.1:$PORT/demo -c 'SELECT * FROM customers'
  psql postgresql://alice:alice-demo@127.0.0.1:$PORT/lakeproxy -c 'SHOW POOLS'
  # the same query, two tenants, different rows; forging the tenant is refused (42501):
  psql postgresql://ada:ada-demo@127.0.0.1:$PORT/demo_rls -c 'SELECT id, tenant_id, name FROM customers'
  psql postgresql://grace:grace-demo@127.0.0.1:$PORT/demo_rls -c 'SELECT id, tenant_id, name FROM customers'
  psql postgresql://ada:ada-demo@127.0.0.1:$PORT/demo_rls -c "SET app.tenant_id = '2'"
  # a tenant cannot step around the policy through the unprotected entry (28000, its allow:):
  psql postgresql://ada:ada-demo@127.0.0.1:$PORT/demo -c 'SELECT * FROM customers'
  psql postgresql://alice:alice-demo@127.0.0.1:$PORT/lakeproxy -c 'SHOW CREDENTIALS'
  # masked and unmasked side by side; an expression over a masked column is refused (42501):
  psql postgresql://bob:bob-demo@127.0.0.1:$PORT/demo_masked -c 'SELECT name, email, ssn FROM customers'
  psql postgresql://alice:alice-demo@127.0.0.1:$PORT/demo_masked -c 'SELECT name, email, ssn FROM customers'
  psql postgresql://bob:bob-demo@127.0.0.1:$PORT/demo_masked -c 'SELECT upper(email) FROM customers'
  pgbench -i postgresql://alice:alice-demo@127.0.0.1:$PORT/demo && \\
    pgbench -S -c 10 -T 5 postgresql://alice:alice-demo@127.0.0.1:$PORT/demo

Ctrl-C stops lakeproxy and PostgreSQL and removes $T.
INFO
wait "$proxy"
