#!/usr/bin/env bash
# stats.sh: what query statistics cost, part by part. Starts a throwaway PostgreSQL and four
# lakeproxy processes that differ only in their stats section: off; on without a query log
# (the default); on with every query logged to a file in /tmp (this machine's disk); on with the
# log on tmpfs (/dev/shm). Runs pgbench -S against each in turn, each repeat starting one
# variant later, and prints per variant: median TPS, lakeproxy's CPU per transaction (all its
# threads), the whole machine's CPU per transaction (/proc/stat: PostgreSQL, pgbench and the
# kernel's writeback and interrupts included), and the median of the per-repeat ratios to "off"
# with their range. The machine column shows what a log's disk writes cost outside lakeproxy.
#   bench/stats.sh [-d SECONDS] [-r REPEATS] [-c CLIENTS] [-M simple|extended]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=6 REPEATS=5 CLIENTS=20 MODE=simple
while getopts "d:r:c:M:" o; do
    case $o in
        d) DURATION=$OPTARG ;; r) REPEATS=$OPTARG ;; c) CLIENTS=$OPTARG ;; M) MODE=$OPTARG ;;
        *) exit 2 ;;
    esac
done
[ -x ./lakeproxy ] || make lakeproxy
[ -d /dev/shm ] || { echo "bench: no /dev/shm" >&2; exit 1; }

source bench/lib.sh
bench_pg_start lakeproxy-stats
bench_pgbench_init
chmod 1777 "$T" # (sticky: lakeproxy refuses a configuration anyone could replace)
SHM=$(mktemp -d /dev/shm/lakeproxy-stats.XXXXXX)
chmod 777 "$SHM"
trap 'rm -rf "$SHM"; bench_cleanup' EXIT

variants=(off nolog file tmpfs)
declare -A port pid
as_user=()
[ "$(id -u)" = 0 ] && as_user=(runuser -u postgres --)
for v in "${variants[@]}"; do
    case $v in
        off) section="{ enabled: false }" ;;
        nolog) section="{ enabled: true }" ;;
        file) section="{ log: $T/queries.jsonl }" ;;
        tmpfs) section="{ log: $SHM/queries.jsonl }" ;;
    esac
    port[$v]=$(bash tests/lib/free_port.sh)
    bench_lakeproxy_yaml "${port[$v]}" "$CLIENTS" "$section"
    mv "$T/lakeproxy.yaml" "$T/$v.yaml"
    "${as_user[@]}" ./lakeproxy -c "$T/$v.yaml" 2>"$T/$v.log" &
    bench_pids+=($!)
done
sleep 1
for v in "${variants[@]}"; do
    pid[$v]=$(pgrep -n -f "lakeproxy -c $T/$v.yaml")
    bench_pids+=("${pid[$v]}")
done

# machine_ticks: clock ticks all CPUs spent busy (not idle, not waiting for I/O).
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# run VARIANT: one pgbench run; prints "tps lakeproxy_us/txn machine_us/txn".
run() {
    local v=$1 c0 c1 m0 m1 out n
    c0=$(cpu_ns "${pid[$v]}")
    m0=$(machine_ticks)
    out=$(pgbench -n -S -M "$MODE" -c "$CLIENTS" -j 2 -T "$DURATION" \
        "host=127.0.0.1 port=${port[$v]} dbname=bench user=lp_server" 2>&1) || true
    m1=$(machine_ticks)
    c1=$(cpu_ns "${pid[$v]}")
    n=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
    [ -n "$n" ] && [ "$n" -gt 0 ] || { echo "bench: pgbench through $v failed" >&2; exit 1; }
    awk -v c="$((c1 - c0))" -v m="$((m1 - m0))" -v n="$n" -v d="$DURATION" \
        -v hz="$(getconf CLK_TCK)" 'BEGIN {
        printf "%.0f %.2f %.2f\n", n / d, c / 1e3 / n, m / hz * 1e6 / n }'
}

echo "pgbench -S -M $MODE -c $CLIENTS, ${DURATION}s x $REPEATS runs, variants taking turns"
for v in "${variants[@]}"; do run "$v" >/dev/null; done # warm-up: pools, caches, the log file
declare -A res=()
for r in $(seq "$REPEATS"); do
    for i in "${!variants[@]}"; do
        v=${variants[(i + r - 1) % ${#variants[@]}]}
        line=$(run "$v")
        res[$v]+="$line"$'\n'
        echo "run $r $v: $line (tps lakeproxy_us/txn machine_us/txn)"
    done
done

echo
echo "| statistics | TPS | lakeproxy CPU us/txn | machine CPU us/txn | TPS / off | lakeproxy CPU / off | machine CPU / off |"
echo "|---|---|---|---|---|---|---|"
for v in "${variants[@]}"; do
    row="| $v"
    for col in 1 2 3; do
        row+=" | $(echo -n "${res[$v]}" | awk -v c=$col '{print $c}' | median)"
    done
    for col in 1 2 3; do
        if [ "$v" = off ]; then row+=" |"; else row+=" | $(paired "$v" off "$col")"; fi
    done
    echo "$row |"
done
