#!/usr/bin/env bash
# run.sh: `make bench`. Starts a throwaway PostgreSQL, lakeproxy and PgBouncer (same pool mode
# and size), runs pgbench against each and directly, alternating targets, and writes a
# Markdown table to bench/results/: median TPS, average latency, ratio to PgBouncer, and each
# proxy's CPU microseconds per transaction (from /proc/PID/stat before and after).
#   bench/run.sh [-d SECONDS] [-r REPEATS] [-c CLIENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=10 REPEATS=3 CLIENTS=10
while getopts "d:r:c:" o; do
    case $o in d) DURATION=$OPTARG ;; r) REPEATS=$OPTARG ;; c) CLIENTS=$OPTARG ;; *) exit 2 ;; esac
done
command -v pgbouncer >/dev/null || { echo "bench: apt-get install pgbouncer" >&2; exit 1; }
[ -x ./lakeproxy ] || make lakeproxy

T=$(mktemp -d /tmp/lakeproxy-bench.XXXXXX)
chmod 755 "$T"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    bash tests/lib/pg_tmp.sh stop "$T/pg"
    rm -rf "$T"
}
trap cleanup EXIT

pgport=$(bash tests/lib/free_port.sh)
bash tests/lib/pg_tmp.sh start "$T/pg" "$pgport"
bash tests/lib/pg_tmp.sh psql "$T/pg" -d postgres -f tests/lib/setup.sql >/dev/null
export PGPASSWORD=server-secret
pgbench -i -s 10 -q "host=127.0.0.1 port=$pgport dbname=lp_test user=lp_server" >/dev/null 2>&1

lpport=$(bash tests/lib/free_port.sh)
cat >"$T/lakeproxy.yaml" <<YAML
listen: { host: 127.0.0.1, port: $lpport }
log: { level: warning }
databases:
  bench:
    host: 127.0.0.1
    port: $pgport
    dbname: lp_test
    user: lp_server
    password: server-secret
    tls: disable
    pool: { mode: session, size: $CLIENTS }
users:
  lp_server: { password: server-secret }
YAML
./lakeproxy -c "$T/lakeproxy.yaml" 2>"$T/lakeproxy.log" &
lp_pid=$!
pids+=("$lp_pid")

pbport=$(bash tests/lib/free_port.sh)
cat >"$T/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$pgport dbname=lp_test user=lp_server password=server-secret
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pbport
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $T/userlist.txt
pool_mode = session
default_pool_size = $CLIENTS
max_client_conn = 2000
INI
echo '"lp_server" "server-secret"' >"$T/userlist.txt"
if [ "$(id -u)" = 0 ]; then
    chown postgres "$T/pgbouncer.ini" "$T/userlist.txt"
    runuser -u postgres -- pgbouncer "$T/pgbouncer.ini" 2>"$T/pgbouncer.log" &
else
    pgbouncer "$T/pgbouncer.ini" 2>"$T/pgbouncer.log" &
fi
pids+=($!)
sleep 1
pb_pid=$(pgrep -n -f "pgbouncer $T/pgbouncer.ini")

# CPU ticks (user + system) of a process.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

run_one() { # run_one TARGET PORT PID MODE -> "tps lat_ms cpu_us_per_txn"
    local port=$2 pid=$3 mode=$4
    local before after out tps lat txns cpu=""
    [ -n "$pid" ] && before=$(cpu_ticks "$pid")
    out=$(pgbench -n -S -M "$mode" -c "$CLIENTS" -j 2 -T "$DURATION" \
        "host=127.0.0.1 port=$port dbname=$([ "$1" = direct ] && echo lp_test || echo bench) user=lp_server" 2>&1)
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    lat=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
    txns=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
    if [ -n "$pid" ]; then
        after=$(cpu_ticks "$pid")
        cpu=$(awk -v a="$after" -v b="$before" -v hz="$hz" -v n="$txns" 'BEGIN{printf "%.1f", (a-b)/hz*1e6/n}')
    fi
    echo "$tps $lat ${cpu:--}"
}

median() { sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

out="bench/results/$(date -u +%Y%m%d-%H%M%S).md"
{
    echo "# lakeproxy bench $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "pgbench -S, $CLIENTS clients, ${DURATION}s x $REPEATS runs (medians), session pooling, $(nproc) cores"
    echo
    echo "| workload | target | TPS | avg latency ms | proxy CPU us/txn | TPS vs PgBouncer |"
    echo "|---|---|---|---|---|---|"
} >"$out"
for mode in simple extended prepared; do
    declare -A tps lat cpu
    for target in direct lakeproxy pgbouncer; do tps[$target]=""; lat[$target]=""; cpu[$target]=""; done
    for r in $(seq "$REPEATS"); do
        for target in direct lakeproxy pgbouncer; do
            case $target in
                direct) res=$(run_one direct "$pgport" "" "$mode") ;;
                lakeproxy) res=$(run_one lakeproxy "$lpport" "$lp_pid" "$mode") ;;
                pgbouncer) res=$(run_one pgbouncer "$pbport" "$pb_pid" "$mode") ;;
            esac
            read -r t l c <<<"$res"
            tps[$target]+="$t "; lat[$target]+="$l "; cpu[$target]+="$c "
            echo "run $r $mode $target: tps=$t latency=${l}ms cpu_us/txn=$c"
        done
    done
    pb=$(echo "${tps[pgbouncer]}" | tr ' ' '\n' | grep . | median)
    for target in direct lakeproxy pgbouncer; do
        mt=$(echo "${tps[$target]}" | tr ' ' '\n' | grep . | median)
        ml=$(echo "${lat[$target]}" | tr ' ' '\n' | grep . | median)
        mc=-
        [ "$target" = direct ] || mc=$(echo "${cpu[$target]}" | tr ' ' '\n' | grep . | median)
        ratio=$(awk -v a="$mt" -v b="$pb" 'BEGIN{printf "%.2f", a/b}')
        echo "| select-only -M $mode | $target | $mt | $ml | $mc | $ratio |" >>"$out"
    done
    unset tps lat cpu
done
echo
cat "$out"
echo "written to $out"
