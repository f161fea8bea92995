#!/usr/bin/env bash
# syscalls.sh: system calls per transaction of lakeproxy and PgBouncer, by kind, counted by the
# kernel's syscall tracepoints (perf stat -p, so the proxies run at full speed, unlike strace).
# Most of a pooler's CPU is kernel time spent in these calls (see bench/run.sh's CPU figures),
# so their count is what the user-space work of bench/instructions.sh does not show.
#   bench/syscalls.sh [-d SECONDS] [-r REPEATS] [-c CLIENTS] [-M simple|extended|prepared] [-B|-R] [-S]
# Also each proxy's context switches per transaction: "(sleeps)", the times it waited for an
# event and was woken, and "(preempted)" (not counted in the total); and the machine's TCP
# segments, pure and delayed ACKs and IP bytes per transaction ("(tcp-segments)" and so on:
# nstat's counters over the run, client to proxy and proxy to server together, the same for
# both proxies when neither sends anything extra).
# Statistics are off in lakeproxy (-S: on, without a query log, as by default); both proxies pool POOL (4) server connections in transaction
# mode. Prints, per proxy, the median over repeats of each kind's calls per transaction.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=5 REPEATS=3 CLIENTS=20 POOL=4 MODE=simple SCRIPT=--builtin=select-only STATS="{ enabled: false }"
source bench/lib.sh
bench_perf_opts "$@"
perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1 ||
    { echo "bench: perf cannot read the syscall tracepoints here (run as root)" >&2; exit 1; }
bench_two_proxies lakeproxy-sysc "$POOL" "$STATS"

# count NAME PID PORT REPEAT: one pgbench run against PORT while perf counts PID's system
# calls; writes "kind calls-per-transaction" lines to $T/sc.NAME.REPEAT.
count() {
    local pid=$2 port=$3 out="$T/sc.$1.$4"
    pgbench -n "$SCRIPT" -M "$MODE" -c "$CLIENTS" -j 2 -T 1 \
        "host=127.0.0.1 port=$port dbname=bench user=lp_server" >/dev/null 2>&1 # warm the pool
    local sw0
    sw0=$(switches "$pid")
    nstat -a -s -z >"$T/nstat.0"
    perf stat -x, -e 'syscalls:sys_enter_*' -p "$pid" -o "$T/perf.csv" &
    local perf_pid=$!
    sleep 0.2
    local txns
    txns=$(pgbench -n "$SCRIPT" -M "$MODE" -c "$CLIENTS" -j 2 -T "$SECS" \
        "host=127.0.0.1 port=$port dbname=bench user=lp_server" 2>/dev/null |
        awk '/number of transactions actually processed/ {print $NF}')
    kill -INT "$perf_pid"
    wait "$perf_pid" 2>/dev/null || true
    nstat -a -s -z >"$T/nstat.1"
    awk -F, -v n="$txns" '$3 ~ /sys_enter_/ && $1 > 0 {
        sub(/syscalls:sys_enter_/, "", $3); printf "%s %.3f\n", $3, $1 / n }' "$T/perf.csv" >"$out"
    local total
    total=$(awk '{s += $2} END {printf "%.3f", s}' "$out")
    echo "total $total" >>"$out"
    # (not system calls: each sleep is a wake-up to pay for, dearer than a call on a VM)
    paste <(echo "$sw0") <(switches "$pid") | awk -v n="$txns" '{
        printf "(sleeps) %.3f\n(preempted) %.3f\n", ($3 - $1) / n, ($4 - $2) / n }' >>"$out"
    tcp_counts "$txns" >>"$out"
}

# tcp_counts TXNS: the machine's TCP segments, pure and delayed ACKs and IP bytes between
# $T/nstat.0 and $T/nstat.1, per transaction.
tcp_counts() {
    awk -v n="$1" 'NR == FNR {was[$1] = $2; next}
        $1 == "TcpOutSegs" {k = "(tcp-segments)"} $1 == "TcpExtTCPPureAcks" {k = "(tcp-pure-acks)"}
        $1 == "TcpExtDelayedACKs" {k = "(tcp-delayed-acks)"} $1 == "IpExtOutOctets" {k = "(ip-bytes)"}
        k {printf "%s %.3f\n", k, ($2 - was[$1]) / n; k = ""}' "$T/nstat.0" "$T/nstat.1"
}

# switches PID: "VOLUNTARY INVOLUNTARY", the context switches of its threads so far (a
# voluntary one is a sleep, in epoll_wait, until an event wakes it).
switches() {
    cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt/ {v += $2} /^nonvoluntary_ctxt/ {n += $2}
        END {print v, n}'
}

bench_in_turns count

bench_median_table sc 18 call \
    "system calls per TRANSACTION-KIND ($MODE protocol, $CLIENTS clients, pool $POOL, median of $REPEATS runs of ${SECS}s)"
