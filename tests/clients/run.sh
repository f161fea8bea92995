#!/usr/bin/env bash
# run.sh: real clients through lakeproxy: psql, pgbench, psycopg 3, pgjdbc, node-postgres and
# Postgres.js.
# Needs the environment tests/run_all.sh sets (LP_BIN, LP_PGPORT, LP_CERTS, LP_TEST_DIR). Ends with
# "clients: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${LP_BIN:?run through make check}" "${LP_PGPORT:?}" "${LP_CERTS:?}" "${LP_TEST_DIR:?}"

dir="$LP_TEST_DIR/clients"
mkdir -p "$dir"
port=$(bash tests/lib/free_port.sh)
# database NAME MODE SIZE: a database entry of the test PostgreSQL's lp_test
database() {
    cat <<YAML
  $1:
    host: 127.0.0.1
    port: $LP_PGPORT
    dbname: lp_test
    user: lp_server
    password: server-secret
    tls: disable
    pool: {mode: $2, size: $3, max_wait_ms: 30000}
YAML
}
cat >"$dir/lakeproxy.yaml" <<YAML
listen:
  host: 127.0.0.1
  port: $port
  unix_socket_dir: $dir
  tls:
    cert: $LP_CERTS/server.crt
    key: $LP_CERTS/server.key
admin:
  users: [alice]
databases:
$(database app session 25)
$(database app_txn transaction 4)
$(database app_rls transaction 4)
users:
  alice:
    password: alice-secret
  mallory:
    password: mallory-secret
  tenant3:
    password: tenant3-secret
    attributes: {tenant_id: "3"}
  tenant7:
    password: tenant7-secret
    attributes: {tenant_id: "7"}
rls:
  prefix: app
  databases: [app_rls]
  switch_role: true
  default_role: lp_tenant
  attributes: {tenant_id: attribute}
masking:
  databases: [app_txn]
  rules:
    - {column: public.customers.email, function: email, unless: {users: [alice]}}
    - {column: public.customers.ssn, function: last4, unless: {users: [alice]}}
YAML
"$LP_BIN" -c "$dir/lakeproxy.yaml" 2>"$dir/lakeproxy.log" &
proxy=$!
trap 'kill $proxy 2>/dev/null; wait $proxy 2>/dev/null' EXIT
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.05
done

passed=0
failed=0
check() { # check NAME COMMAND...: runs the command, counts and reports it
    local name=$1; shift
    if "$@" >"$dir/out.txt" 2>&1; then
        passed=$((passed + 1)); echo "ok - $name"; last=ok
    else
        failed=$((failed + 1)); echo "not ok - $name"; last=failed; sed 's/^/    /' "$dir/out.txt" | tail -n 20
    fi
}

export PGPASSWORD=alice-secret
uri="postgresql://alice@127.0.0.1:$port/app"

psql_count() { [ "$(psql -X -At "$uri?sslmode=$1" -c 'SELECT count(*) FROM items')" = 1000 ]; }
check "psql reads a table through the proxy" psql_count disable
check "psql over TLS (sslmode=require)" psql_count require
psql_unix() { # psql -h DIR, as for PostgreSQL's own socket; pgbench too
    psql -X -h "$dir" -p "$port" -U alice -d app -c '\conninfo' | grep -q "via socket in \"$dir\"" &&
        [ "$(psql -X -At -h "$dir" -p "$port" -U alice -d app_txn -c 'SELECT count(*) FROM items')" = 1000 ] &&
        echo 'SELECT count(*) FROM items;' >"$dir/unix.sql" &&
        pgbench -n -f "$dir/unix.sql" -t 50 -c 2 -h "$dir" -p "$port" -U alice app_txn
}
check "psql and pgbench over the Unix socket (listen.unix_socket_dir)" psql_unix
psql_script() {
    psql -X -q -At -v ON_ERROR_STOP=1 "$uri" <<'SQL' | tr '\n' ' ' | grep -q '^3 6 t $'
CREATE TEMP TABLE t (a int);
\copy t FROM stdin
1
2
3
\.
SELECT count(*) FROM t;
SELECT sum(a) FROM t;
SELECT current_setting('application_name') = 'psql';
SQL
}
check "psql script with \\copy and application_name" psql_script
psql_wrong_password() {
    ! PGPASSWORD=wrong psql -X -At "$uri" -c 'SELECT 1' 2>"$dir/err.txt" &&
        grep -q 'password authentication failed for user "alice"' "$dir/err.txt"
}
check "psql with a wrong password is refused clearly" psql_wrong_password

pgbench_init() { pgbench -i -s 1 -q "$uri"; }
check "pgbench -i through the proxy" pgbench_init
pgbench_select() {
    pgbench -S -c 20 -j 2 -T 10 -n "$uri" >"$dir/pgbench.txt" 2>&1 || return 1
    cat "$dir/pgbench.txt"
    grep -q 'number of failed transactions: 0 ' "$dir/pgbench.txt" &&
        ! grep -qi 'error' "$dir/pgbench.txt"
}
check "pgbench -S -c 20 -T 10: no failed transaction" pgbench_select
grep -E '^tps' "$dir/pgbench.txt" | sed 's/^/    /'
pgbench_extended() { pgbench -S -M extended -c 8 -j 2 -t 200 -n "$uri"; }
check "pgbench -S -M extended" pgbench_extended

check "psycopg 3 scenarios" /usr/bin/python3 tests/clients/psycopg_basic.py \
    "host=127.0.0.1 port=$port dbname=app user=alice password=alice-secret"

# transaction pooling: 20 clients over 4 server connections
txn_uri="postgresql://alice@127.0.0.1:$port/app_txn"
pgbench_txn() { # pgbench_txn MODE [extra args]: no failed transaction
    local mode=$1; shift
    pgbench -n -M "$mode" -c 20 -j 2 -T 5 "$@" "$txn_uri" >"$dir/pgbench.txt" 2>&1 || return 1
    grep -q 'number of failed transactions: 0 ' "$dir/pgbench.txt" &&
        ! grep -qi 'error' "$dir/pgbench.txt"
}
check "transaction pooling: pgbench -S -M prepared, 20 clients over 4 servers" pgbench_txn prepared -S
grep -E '^tps' "$dir/pgbench.txt" | sed 's/^/    /'
check "transaction pooling: pgbench TPC-B-like -M extended" pgbench_txn extended
check "transaction pooling: psycopg 3 with prepared statements" /usr/bin/python3 \
    tests/clients/psycopg_txn.py "host=127.0.0.1 port=$port dbname=app_txn user=alice password=alice-secret"
check "column masking: psycopg 3 (simple, prepared, binary, server-side cursor)" \
    /usr/bin/python3 tests/clients/psycopg_masking.py \
    "host=127.0.0.1 port=$port dbname=app_txn user=mallory password=mallory-secret" \
    "host=127.0.0.1 port=$port dbname=app_txn user=alice password=alice-secret"

jdbc_scenarios() { # pgjdbc: named statements, batches, fetch size, TLS, masking
    [ -r /usr/share/java/postgresql.jar ] ||
        { echo "no pgjdbc (apt-get install libpostgresql-jdbc-java default-jdk-headless)"; return 1; }
    java -cp /usr/share/java/postgresql.jar tests/clients/JdbcScenarios.java 127.0.0.1 "$port"
}
check "transaction pooling: JDBC (pgjdbc) scenarios" jdbc_scenarios
[ "$last" = ok ] && sed -n 's/^ok - /    &/p' "$dir/out.txt"

federation_counted() { # the JDBC scans above: once per portal, not per fetch of 100 rows
    local admin="postgresql://alice@127.0.0.1:$port/lakeproxy"
    psql -X -At -F '|' "$admin" -c 'SHOW PUSHDOWN' >"$dir/pushdown.txt" || return 1
    psql -X -At -F '|' "$admin" -c 'SHOW QUERIES 100' >"$dir/queries.txt" || return 1
    # database, reads, filtered_pct, unfiltered_reads, unfiltered_rows, rows
    local pd q
    pd=$(awk -F'|' '$2 == "items" && $3 == "jdbc-federation" {print $1, $4, $5, $6, $7, $11}' \
        "$dir/pushdown.txt")
    # calls and rows of the filtered scan's fingerprint
    q=$(awk -F'|' '$2 ~ /IS NOT NULL/ {print $4, $6}' "$dir/queries.txt")
    echo "SHOW PUSHDOWN: $pd; SHOW QUERIES (filtered scan): $q"
    [ "$pd" = "app_txn 5 60.0 2 2000 3797" ] && [ "$q" = "3 1797" ]
}
check "statistics: Spark-like JDBC scans counted once per portal (SHOW PUSHDOWN, SHOW QUERIES)" \
    federation_counted
[ "$last" = ok ] && sed 's/^/    /' "$dir/out.txt"

node_scenarios() { # node-postgres: named statements, pg-cursor (Flush), TLS, masking
    [ -d tests/clients/node/node_modules/pg-cursor ] ||
        { echo "no node-postgres (npm ci --prefix tests/clients/node, as .ci/run does)"; return 1; }
    node tests/clients/node/scenarios.js 127.0.0.1 "$port"
}
check "transaction pooling: node-postgres (pg, pg-cursor) scenarios" node_scenarios
[ "$last" = ok ] && sed -n 's/^ok - /    &/p' "$dir/out.txt"
postgresjs_scenarios() { # Postgres.js: prepared by default, pipelined, batches, cursors, COPY
    [ -d tests/clients/node/node_modules/postgres ] ||
        { echo "no Postgres.js (npm ci --prefix tests/clients/node, as .ci/run does)"; return 1; }
    timeout 180 node tests/clients/node/postgresjs.js 127.0.0.1 "$port"
}
check "transaction pooling: Postgres.js (prepare: true, its default) scenarios" postgresjs_scenarios
[ "$last" = ok ] && sed -n 's/^ok - /    &/p' "$dir/out.txt"

# red team 29: driver features (psycopg pipelines, cursors, COPY, cancel, settings, LISTEN,
# a chaos run, TLS channel binding; pgjdbc query modes, portals, cancel, batches, admin console)
# FINDING checks fail until fixed: see the comments marked FINDING in the two files
check "red team 29: psycopg 3 driver features under masking, row-level security and pooling" \
    /usr/bin/python3 tests/clients/redteam29.py "$port"
[ "$last" = ok ] || grep -a '^not ok' "$dir/out.txt" | sed 's/^/    /'
redteam29_jdbc() {
    [ -r /usr/share/java/postgresql.jar ] ||
        { echo "no pgjdbc (apt-get install libpostgresql-jdbc-java default-jdk-headless)"; return 1; }
    java -cp /usr/share/java/postgresql.jar tests/clients/Redteam29.java 127.0.0.1 "$port"
}
check "red team 29: pgjdbc driver features under masking, row-level security and pooling" redteam29_jdbc

psql_meta_commands() { # \d and friends (catalog queries psql writes) under RLS and masking
    local q='\dt
\d rls_docs
\d+ customers
\df
\dn
\du
\l
\dv
\di'
    PGPASSWORD=tenant3-secret psql -X -v ON_ERROR_STOP=1 \
        "postgresql://tenant3@127.0.0.1:$port/app_rls" <<<"$q" >"$dir/meta.txt" 2>&1 &&
        grep -q 'tenant_id' "$dir/meta.txt" &&
        PGPASSWORD=mallory-secret psql -X -v ON_ERROR_STOP=1 \
            "postgresql://mallory@127.0.0.1:$port/app_txn" <<<"$q" >>"$dir/meta.txt" 2>&1 &&
        grep -q 'email' "$dir/meta.txt"
}
check "psql meta-commands (\\d, \\df, \\l ...) under row-level security and masking" \
    psql_meta_commands
[ "$last" = ok ] || sed 's/^/    /' "$dir/meta.txt" | grep -i -B2 -A2 error | head -20

psql_admin() { # psql prints the admin console's result sets like any table
    psql -X "postgresql://alice@127.0.0.1:$port/lakeproxy" -c 'SHOW POOLS' >"$dir/admin.txt" &&
        grep -q 'app_txn' "$dir/admin.txt" && grep -q 'pool_mode' "$dir/admin.txt"
}
check "psql on the admin console: SHOW POOLS" psql_admin
sed 's/^/    /' "$dir/admin.txt"

systemd_verify() { # the unit file, ExecStart pointed at this build, passes systemd's checks
    command -v systemd-analyze >/dev/null || { echo "no systemd-analyze (apt-get install systemd)"; return 1; }
    sed "s#/usr/local/bin/lakeproxy#$LP_BIN#g" systemd/lakeproxy.service >"$dir/lakeproxy.service"
    SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$dir/lakeproxy.service" &&
        systemd-analyze security --offline=true --threshold=20 "$dir/lakeproxy.service" \
            >"$dir/security.txt" 2>&1
    local rc=$?
    grep -a 'Overall exposure' "$dir/security.txt"
    return $rc
}
check "systemd-analyze verify systemd/lakeproxy.service (and its exposure score)" systemd_verify
grep -a 'Overall exposure' "$dir/security.txt" | sed 's/^/    /'

make_install_twice() { # an upgrade's make install keeps the administrator's configuration
    local d="$dir/destdir" conf="$dir/destdir/etc/lakeproxy/lakeproxy.yaml"
    rm -rf "$d"
    env -u MAKEFLAGS -u MAKELEVEL make -s install INSTALL_BIN="$LP_BIN" DESTDIR="$d" PREFIX=/usr \
        >"$dir/install.txt" 2>&1 || return 1
    [ -x "$d/usr/bin/lakeproxy" ] && cmp -s conf/lakeproxy.yaml "$conf" &&
        [ "$(stat -c %a "$conf")" = 640 ] &&
        grep -q '^ExecStart=/usr/bin/lakeproxy ' "$d/lib/systemd/system/lakeproxy.service" || return 1
    echo "# the administrator's edit" >>"$conf"
    cp "$conf" "$dir/edited.yaml"
    env -u MAKEFLAGS -u MAKELEVEL make -s install INSTALL_BIN="$LP_BIN" DESTDIR="$d" PREFIX=/usr \
        >>"$dir/install.txt" 2>&1 || return 1
    cmp -s "$dir/edited.yaml" "$conf" && cmp -s conf/lakeproxy.yaml "$conf.example" &&
        grep -q "kept $conf as it is" "$dir/install.txt"
}
check "make install into a DESTDIR, twice: the second keeps the edited configuration" \
    make_install_twice
[ "$last" = ok ] || sed 's/^/    /' "$dir/install.txt" | head -n 20

stop_proxy() { # SIGTERM: a clean exit, and under SANITIZE=1 no leak or error report
    kill -TERM "$proxy" && wait "$proxy"
}
check "lakeproxy exits cleanly on SIGTERM after all of the above" stop_proxy
trap - EXIT
echo "clients: $passed passed, $failed failed"
