# lib.sh: what the bench scripts share (sourced). A throwaway PostgreSQL with the test schema
# in $T/pg (bench_pg_start sets pgport), killed with the processes in $bench_pids on exit; the
# CPU time of a process; the median of numbers on stdin ("-" entries skipped, "-" if none) and
# of paired ratios; pgbench tables, a lakeproxy database entry and a whole lakeproxy
# configuration towards that PostgreSQL. With BENCH_SERVER_TLS=1 PostgreSQL has TLS on (a test
# certificate, tests/lib/mkcerts.sh) and both proxies reach it over TLS (lakeproxy's tls:
# require, PgBouncer's server_tls_sslmode = require), as they reach Lakebase. With
# BENCH_CLIENT_TLS=1 clients reach both proxies (and PostgreSQL direct) over TLS: the proxies
# serve the same certificate (lakeproxy's listen.tls, PgBouncer's client_tls_sslmode =
# require) and PGSSLMODE=require is exported.

bench_pids=()
# the rows workload's script: a 1,000-row result (a whole path: pgbench may run elsewhere)
BENCH_ROWS_SQL=$PWD/bench/rows.sql

bench_cleanup() {
    for p in "${bench_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    bash tests/lib/pg_tmp.sh stop "$T/pg"
    rm -rf "$T"
}

# bench_pg_start PREFIX: a temporary directory T (/tmp/PREFIX.XXXXXX) and PostgreSQL in it.
bench_pg_start() {
    T=$(mktemp -d "/tmp/$1.XXXXXX")
    chmod 755 "$T"
    trap bench_cleanup EXIT
    pgport=$(bash tests/lib/free_port.sh)
    local certs=""
    if [ -n "${BENCH_SERVER_TLS:-}${BENCH_CLIENT_TLS:-}" ]; then
        certs=$T/certs
        bash tests/lib/mkcerts.sh "$certs"
        [ "$(id -u)" != 0 ] || chown -R postgres "$certs" # (the proxies run as postgres)
    fi
    [ -z "${BENCH_CLIENT_TLS:-}" ] || export PGSSLMODE=require
    bash tests/lib/pg_tmp.sh start "$T/pg" "$pgport" ${certs:+"$certs"}
    bash tests/lib/pg_tmp.sh psql "$T/pg" -d postgres -f tests/lib/setup.sql >/dev/null
    export PGPASSWORD=server-secret
}

# lakeproxy_build_said: which build ./lakeproxy is, in words (make bench makes the
# profile-guided one).
lakeproxy_build_said() {
    if [ -x build/pgo/lakeproxy ] && cmp -s ./lakeproxy build/pgo/lakeproxy; then
        echo "built with make PGO=1 (profile-guided)"
    else
        echo "built with make (-O2 and link-time optimisation, no profile)"
    fi
}

# schedstat_ns PID FIELD: field FIELD of /proc/PID/task/*/schedstat summed over its threads.
schedstat_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk -v f="$2" '{s += $f} END {printf "%.0f\n", s}'; }

# cpu_ns PID: nanoseconds its threads have run (the scheduler's own account, not 10 ms ticks).
cpu_ns() { schedstat_ns "$1" 1; }

# wait_ns PID: nanoseconds its threads were ready to run but waited for a CPU.
wait_ns() { schedstat_ns "$1" 2; }

# cpu_ticks PID: "USER SYSTEM", the clock ticks it has spent in user space and in the kernel
# (/proc/PID/stat's utime and stime), for the kernel's share of its CPU.
cpu_ticks() { awk '{print $14, $15}' /proc/"$1"/stat 2>/dev/null; }

# paired A B COL: A's figure in column COL over B's in the same repeat, the median of those
# ratios and, with more than one repeat, their range and in how many repeats the ratio was 1
# or more: "0.97 (0.91-1.05, 3/7 >= 1)". Pairing within a
# repeat cancels the drift of the machine between repeats. The figures come from the global
# associative array res: per target, one line of numbers per repeat ("-" where none).
paired() {
    paste -d' ' <(echo -n "${res[$1]:-}" | awk -v c="$3" '{print $c}') \
        <(echo -n "${res[$2]:-}" | awk -v c="$3" '{print $c}') |
        awk '$1 != "-" && $2 != "-" && $2 > 0 {print $1 / $2}' | sort -g |
        awk '{v[NR] = $1} END {
            if (!NR) { print "-"; exit }
            m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            for (i = 1; i <= NR; i++) at_least += v[i] >= 1
            if (NR == 1) printf "%.2f", m
            else printf "%.2f (%.2f-%.2f, %d/%d >= 1)", m, v[1], v[NR], at_least, NR }'
}

median() { { grep -v '^-$' || true; } | sort -g | awk '{a[NR]=$1} END{if(!NR)print "-"; else print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# bench_pgbench_init: pgbench's tables (scale 10) in lp_test of the bench PostgreSQL.
bench_pgbench_init() {
    pgbench -i -s 10 -q "host=127.0.0.1 port=$pgport dbname=lp_test user=lp_server" >/dev/null 2>&1
}

# bench_db_yaml NAME POOL: a lakeproxy database entry NAME towards lp_test of the bench
# PostgreSQL as lp_server, with POOL (a YAML flow mapping) as its pool settings.
bench_db_yaml() {
    cat <<YAML
  $1:
    host: 127.0.0.1
    port: $pgport
    dbname: lp_test
    user: lp_server
    password: server-secret
    tls: $([ -n "${BENCH_SERVER_TLS:-}" ] && echo require || echo disable)
    pool: $2
YAML
}

# bench_pool_yaml POOL: the pool settings of a bench database, POOL server connections in
# transaction pooling, all opened at start (min), as PgBouncer's min_pool_size opens its own
# (bench_pgbouncer_config). Without it PgBouncer opens servers lazily and holds fewer than its
# pool size under a long queue (15 of 20 at 1,000 clients), so the two proxies would not be
# compared at the same number of server connections.
bench_pool_yaml() { echo "{ mode: transaction, size: $1, min: $1, max_wait_ms: 60000 }"; }

# bench_listen_yaml PORT: lakeproxy's listen section, on 127.0.0.1:PORT (with TLS under
# BENCH_CLIENT_TLS).
bench_listen_yaml() {
    local tls=""
    [ -z "${BENCH_CLIENT_TLS:-}" ] || tls=", tls: { cert: $T/certs/server.crt, key: $T/certs/server.key }"
    echo "listen: { host: 127.0.0.1, port: $1$tls }"
}

# bench_lakeproxy_yaml PORT POOL STATS: $T/lakeproxy.yaml for a lakeproxy on PORT serving
# database bench (bench_db_yaml) in transaction pooling with POOL server connections to user
# lp_server; STATS is its stats setting (a YAML flow mapping).
bench_lakeproxy_yaml() {
    cat >"$T/lakeproxy.yaml" <<YAML
$(bench_listen_yaml "$1")
log: { level: warning }
limits: { max_clients: 2000 }
databases:
$(bench_db_yaml bench "$(bench_pool_yaml "$2")")
users:
  lp_server: { password: server-secret }
stats: $3
YAML
}

# bench_pgbouncer_config PORT POOL: $T/pgbouncer.ini and its userlist for PgBouncer on PORT in
# transaction pooling with POOL server connections to lp_test of the bench PostgreSQL, all
# kept open (min_pool_size: see bench_pool_yaml).
bench_pgbouncer_config() {
    cat >"$T/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$pgport dbname=lp_test user=lp_server password=server-secret
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $1
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $T/userlist.txt
pool_mode = transaction
default_pool_size = $2
min_pool_size = $2
max_client_conn = 2000
query_wait_timeout = 60
INI
    [ -z "${BENCH_SERVER_TLS:-}" ] || echo "server_tls_sslmode = require" >>"$T/pgbouncer.ini"
    [ -z "${BENCH_CLIENT_TLS:-}" ] || printf 'client_tls_sslmode = require\nclient_tls_cert_file = %s\nclient_tls_key_file = %s\n' \
        "$T/certs/server.crt" "$T/certs/server.key" >>"$T/pgbouncer.ini"
    echo '"lp_server" "server-secret"' >"$T/userlist.txt"
}

# bench_two_proxies PREFIX POOL [STATS]: bench_pg_start PREFIX with pgbench's tables, then
# lakeproxy (its stats section STATS, default off) and PgBouncer, each pooling POOL server
# connections in transaction mode, run
# as postgres when root; sets lpport, pbport, lp_pid and pb_pid once both answer. Both may
# hold 2,000 clients (max_clients, and file descriptors for PgBouncer's one per socket).
bench_two_proxies() {
    ulimit -n 8192 2>/dev/null || true
    bench_pg_start "$1"
    bench_pgbench_init
    chmod 1777 "$T" # (sticky: lakeproxy refuses a configuration anyone could replace)
    lpport=$(bash tests/lib/free_port.sh)
    bench_lakeproxy_yaml "$lpport" "$2" "${3:-"{ enabled: false }"}"
    pbport=$(bash tests/lib/free_port.sh)
    bench_pgbouncer_config "$pbport" "$2"
    local as_user=()
    [ "$(id -u)" = 0 ] && as_user=(runuser -u postgres --)
    "${as_user[@]}" ./lakeproxy -c "$T/lakeproxy.yaml" 2>"$T/lakeproxy.log" &
    bench_pids+=($!)
    # (runuser's login session resets the open-file limit: PgBouncer raises it itself here)
    "${as_user[@]}" sh -c "ulimit -n 8192 2>/dev/null; exec pgbouncer $T/pgbouncer.ini" 2>"$T/pgbouncer.log" &
    bench_pids+=($!)
    local port
    for port in "$lpport" "$pbport"; do
        for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
    done
    lp_pid=$(pgrep -n -f "lakeproxy -c $T/lakeproxy.yaml")
    pb_pid=$(pgrep -n -f "pgbouncer $T/pgbouncer.ini")
    bench_pids+=("$lp_pid" "$pb_pid")
}

# bench_perf_opts ARGS...: the options of bench/syscalls.sh and bench/kprofile.sh into SECS
# (-d), REPEATS (-r), CLIENTS (-c), MODE (-M), SCRIPT (-B: TPC-B-like; -R: bench/rows.sql, a
# 1,000-row result, as bench/run.sh's rows workload) and STATS (-S: on);
# the caller sets their defaults first. Then checks for perf and PgBouncer, and ./lakeproxy.
bench_perf_opts() {
    local o OPTIND=1
    while getopts "d:r:c:M:BRS" o; do
        case $o in
            d) SECS=$OPTARG ;; r) REPEATS=$OPTARG ;; c) CLIENTS=$OPTARG ;; M) MODE=$OPTARG ;;
            B) SCRIPT=--builtin=tpcb-like ;;
            R) SCRIPT=-f$BENCH_ROWS_SQL ;;
            S) STATS="{ enabled: true }" ;;
            *) exit 2 ;;
        esac
    done
    command -v perf >/dev/null || { echo "bench: apt-get install linux-perf" >&2; exit 1; }
    command -v pgbouncer >/dev/null || { echo "bench: apt-get install pgbouncer" >&2; exit 1; }
    [ -x ./lakeproxy ] || make lakeproxy
}

# bench_median_table PREFIX WIDTH LABEL TITLE: TITLE (after "per TRANSACTION-KIND"), then
# per name (first column of $T/PREFIX.TARGET.N: "name figure" lines; LABEL heads the column),
# the median over repeats of lakeproxy's and PgBouncer's figures, names padded to WIDTH.
bench_median_table() {
    local name lp pb kind="pgbench -S"
    [ "$SCRIPT" = --builtin=tpcb-like ] && kind="TPC-B-like"
    [ "$SCRIPT" = "-f$BENCH_ROWS_SQL" ] && kind="1,000-row"
    echo "$4" | sed "s/TRANSACTION-KIND/$kind transaction/"
    printf "%-${2}s %10s %10s\n" "$3" lakeproxy pgbouncer
    cat "$T/$1".lakeproxy.* "$T/$1".pgbouncer.* | awk '!seen[$1]++ {print $1}' | while read -r name; do
        lp=$(cat "$T/$1".lakeproxy.* | awk -v c="$name" '$1 == c {print $2}' | median)
        pb=$(cat "$T/$1".pgbouncer.* | awk -v c="$name" '$1 == c {print $2}' | median)
        printf "%-${2}s %10s %10s\n" "$name" "$lp" "$pb"
    done
}

# bench_in_turns FN: FN TARGET PID PORT REPEAT for lakeproxy and PgBouncer, REPEATS times,
# each repeat starting with the other one (whichever runs second finds the machine warmer).
bench_in_turns() {
    local r lp=(lakeproxy "$lp_pid" "$lpport") pb=(pgbouncer "$pb_pid" "$pbport")
    for r in $(seq "$REPEATS"); do
        if [ $((r % 2)) = 1 ]; then
            "$1" "${lp[@]}" "$r" && "$1" "${pb[@]}" "$r"
        else
            "$1" "${pb[@]}" "$r" && "$1" "${lp[@]}" "$r"
        fi
    done
}
