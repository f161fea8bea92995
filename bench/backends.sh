#!/usr/bin/env bash
# backends.sh: what each proxy costs PostgreSQL. On a small machine PostgreSQL's backends are
# the largest user of CPU, so a proxy that makes them work harder lowers TPS even when its own
# CPU per transaction is the same. Starts a throwaway PostgreSQL, lakeproxy (statistics off)
# and PgBouncer (transaction pooling, the same pool size), runs pgbench -S against each in
# turn, and prints per run: TPS, the proxy's CPU per transaction, and the CPU per transaction
# of the backends serving it (utime + stime of their processes, in clock ticks of 10 ms: runs
# of a few seconds are needed), of pgbench itself, and of the whole machine (/proc/stat, with
# the share of time its CPUs sat idle). With -s, the backends' system calls per transaction as well
# (strace -c, which slows them: TPS and CPU of those runs are not comparable).
# With many clients (-c 1000) give runs -d 30 or more: pgbench's clock includes its logins.
# lakeproxy runs with statistics off unless -S (on, without a query log, as it ships).
# -B: TPC-B-like transactions (pgbench's default script) instead of select-only.
#   bench/backends.sh [-d SECONDS] [-r REPEATS] [-c CLIENTS] [-p POOL] [-M simple|extended] [-s] [-S] [-B]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=4 REPEATS=3 CLIENTS=20 POOL=20 MODE=simple STRACE=0 STATS="{ enabled: false }" SCRIPT=-S
while getopts "d:r:c:p:M:sSB" o; do
    case $o in
        d) DURATION=$OPTARG ;; r) REPEATS=$OPTARG ;; c) CLIENTS=$OPTARG ;; p) POOL=$OPTARG ;;
        M) MODE=$OPTARG ;; s) STRACE=1 ;; S) STATS="{ enabled: true }" ;; B) SCRIPT=--builtin=tpcb-like ;; *) exit 2 ;;
    esac
done
command -v pgbouncer >/dev/null || { echo "bench: apt-get install pgbouncer" >&2; exit 1; }
[ "$STRACE" = 0 ] || command -v strace >/dev/null || { echo "bench: apt-get install strace" >&2; exit 1; }
[ -x ./lakeproxy ] || make lakeproxy

source bench/lib.sh
bench_two_proxies lakeproxy-backends "$POOL" "$STATS"

# backend_ticks: clock ticks the bench user's backends have run (the proxies' servers).
backend_ticks() {
    local s=0 p
    for p in $(pgrep -f "postgres: lp_server"); do
        s=$((s + $(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || echo 0)))
    done
    echo "$s"
}

# run TARGET PORT PID: one pgbench run through a proxy; prints its line.
run() {
    local name=$1 port=$2 pid=$3 b0 b1 c0 c1 out n tps sys=""
    b0=$(backend_ticks)
    c0=$(cpu_ns "$pid")
    local sp="" backends
    backends=$(pgrep -f "postgres: lp_server" | sed 's/^/-p /' | tr '\n' ' ' || true)
    if [ "$STRACE" = 1 ] && [ -n "$backends" ]; then # (none yet before the first run)
        # shellcheck disable=SC2086
        strace -c -f $backends -o "$T/$name.strace" 2>/dev/null &
        sp=$!
        sleep 0.5
    fi
    local m0 m1
    m0=$(machine_ticks)
    # (times: the CPU pgbench used, as "user system" lines of the shell's children)
    out=$(bash -c 'pgbench "$@" 2>&1; times' - -n "$SCRIPT" -M "$MODE" -c "$CLIENTS" -j 2 \
        -T "$DURATION" "host=127.0.0.1 port=$port dbname=bench user=lp_server") || true
    m1=$(machine_ticks)
    if [ -n "$sp" ]; then
        kill -INT "$sp" 2>/dev/null || true
        wait "$sp" || true
    fi
    c1=$(cpu_ns "$pid")
    b1=$(backend_ticks)
    n=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    [ -n "$n" ] && [ "$n" -gt 0 ] || { echo "$name: pgbench failed" >&2; return; }
    if [ -n "$sp" ]; then
        sys=$(awk -v n="$n" '$NF ~ /^(epoll_wait|recvfrom|sendto)$/ {
                c = ($4 ~ /^[0-9]+$/) ? $4 : $3; printf " %s/txn %.2f", $NF, c / n }' \
            "$T/$name.strace")
    fi
    local pgb
    pgb=$(echo "$out" | tail -n 1 | awk '{ s = 0; for (i = 1; i <= NF; i++) {
        split($i, a, "m"); s += a[1] * 60 + a[2] } printf "%.3f", s }')
    awk -v name="$name" -v tps="$tps" -v c="$((c1 - c0))" -v b="$((b1 - b0))" -v n="$n" \
        -v hz="$(getconf CLK_TCK)" -v sys="$sys" -v pgb="$pgb" -v m0="$m0" -v m1="$m1" 'BEGIN {
        split(m0, x, " "); split(m1, y, " "); busy = (y[1] - x[1]) / hz; idle = (y[2] - x[2]) / hz
        printf "%-9s tps %8.0f  proxy us/txn %5.1f  backends us/txn %5.1f  pgbench us/txn %5.1f" \
            "  machine busy us/txn %5.1f idle %2.0f%%%s\n", name, tps, c / 1e3 / n,
            b / hz * 1e6 / n, pgb * 1e6 / n, busy * 1e6 / n, 100 * idle / (busy + idle), sys }'
}

# machine_ticks: "busy idle" clock ticks of all CPUs so far (/proc/stat; iowait counts as idle).
machine_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $5 + $6; exit }' /proc/stat
}

echo "pgbench $SCRIPT -M $MODE -c $CLIENTS, pool $POOL, ${DURATION}s runs, alternating; lakeproxy stats: $STATS"
for t in lakeproxy pgbouncer; do # warm-up, not shown
    run "$t" "$([ $t = lakeproxy ] && echo "$lpport" || echo "$pbport")" \
        "$([ $t = lakeproxy ] && echo "$lp_pid" || echo "$pb_pid")" >/dev/null
done
for r in $(seq "$REPEATS"); do
    run lakeproxy "$lpport" "$lp_pid"
    run pgbouncer "$pbport" "$pb_pid"
done
