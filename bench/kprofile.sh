#!/usr/bin/env bash
# kprofile.sh: where each proxy's CPU goes, kernel included, per transaction: perf samples
# (the cpu-clock software event, so it works on a VM without hardware counters) of lakeproxy
# and PgBouncer taken in turns while pgbench runs against each, sorted into what the kernel
# does for the proxy (waking the process at the other end of a socket, switching tasks,
# entering and leaving system calls, the rest) and the user space each runs (its own code,
# libevent, libc). bench/instructions.sh counts the user-space instructions alone; this shows
# how much of the whole they are.
#   bench/kprofile.sh [-d SECONDS] [-r REPEATS] [-c CLIENTS] [-M simple|extended|prepared] [-B|-R] [-S]
# Statistics are off in lakeproxy (-S: on, without a query log, as by default); both proxies
# pool POOL (20) server connections in transaction mode, as in bench/run.sh. Prints the median
# over repeats of each part in microseconds per transaction. Also, not CPU: "(waited-for-cpu)",
# the time per transaction the proxy was ready to run but waited for a core, and
# "(waited-share-%)", that time as a share of the run (2 cores shared with PostgreSQL's backends,
# each its own scheduling group, and pgbench: on TPC-B-like each proxy waits most of the run,
# so its TPS follows its CPU per transaction).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=5 REPEATS=3 CLIENTS=20 POOL=20 MODE=simple SCRIPT=--builtin=select-only STATS="{ enabled: false }"
source bench/lib.sh
bench_perf_opts "$@"
perf record -e cpu-clock -o /dev/null -- true >/dev/null 2>&1 ||
    { echo "bench: perf cannot sample here (run as root)" >&2; exit 1; }
bench_two_proxies lakeproxy-kprof "$POOL" "$STATS"

# share DATA ARGS...: "percent name" lines of perf report over DATA (no call graphs).
share() {
    local data=$1
    shift
    perf report -i "$data" --stdio -g none "$@" 2>/dev/null |
        awk '/^ +[0-9.]+%/ {sub(/%/, "", $1); print $1, $NF}' # (with --children: inclusive)
}

# sample NAME PID PORT REPEAT: one pgbench run against PORT while perf samples PID; writes
# "part microseconds-per-transaction" lines to $T/kp.NAME.REPEAT.
sample() {
    local pid=$2 port=$3 data="$T/perf.$1.$4" out="$T/kp.$1.$4"
    pgbench -n "$SCRIPT" -M "$MODE" -c "$CLIENTS" -j 2 -T 1 \
        "host=127.0.0.1 port=$port dbname=bench user=lp_server" >/dev/null 2>&1 # warm the pool
    perf record -e cpu-clock -F 2000 -g -p "$pid" -o "$data" >/dev/null 2>&1 &
    local perf_pid=$!
    sleep 0.3
    local txns cpu0 cpu1 wait0 wait1 t0 t1
    cpu0=$(cpu_ns "$pid") wait0=$(wait_ns "$pid") t0=$(date +%s%N)
    txns=$(pgbench -n "$SCRIPT" -M "$MODE" -c "$CLIENTS" -j 2 -T "$SECS" \
        "host=127.0.0.1 port=$port dbname=bench user=lp_server" 2>/dev/null |
        awk '/number of transactions actually processed/ {print $NF}')
    cpu1=$(cpu_ns "$pid") wait1=$(wait_ns "$pid") t1=$(date +%s%N)
    kill -INT "$perf_pid"
    wait "$perf_pid" 2>/dev/null || true
    # the samples' total, in nanoseconds of CPU (cpu-clock counts time)
    local ns
    ns=$(perf report -i "$data" --stdio -g none 2>/dev/null |
        awk '/Event count \(approx.\)/ {n = $NF} END {print n}')
    local us_per=$(awk -v ns="$ns" -v n="$txns" 'BEGIN {printf "%.6f", ns / 1000 / n / 100}')
    {
        # inclusive shares of the kernel paths (a sample under two of them counts in both)
        share "$data" --children --sort sym | awk -v k="$us_per" '
            $2 == "sock_def_readable" {w = $1} $2 == "finish_task_switch.isra.0" {s = $1}
            $2 == "do_syscall_64" {e = $1}
            END {printf "kernel:wake-peer %.2f\nkernel:switch-task %.2f\n", w * k, s * k
                 printf "kernel:all-syscalls %.2f\n", e * k}'
        share "$data" --no-children --sort dso | awk -v k="$us_per" -v me="$1" '
            $2 == "[kernel.kallsyms]" {t = "kernel:total"} $2 == me {t = "user:own-code"}
            $2 ~ /^libevent/ {t = "user:libevent"} $2 ~ /^libc[.-]/ {t = "user:libc+syscall-stubs"}
            {p[t ? t : "user:other"] += $1; t = ""}
            END {split("kernel:total user:own-code user:libevent user:libc+syscall-stubs " \
                       "user:other", order, " ")
                 for (i = 1; i <= 5; i++) printf "%s %.2f\n", order[i], p[order[i]] * k}'
        awk -v ns="$ns" -v n="$txns" 'BEGIN {printf "total(samples) %.2f\n", ns / 1000 / n}'
        awk -v a="$cpu1" -v b="$cpu0" -v n="$txns" 'BEGIN {printf "total(schedstat) %.2f\n", (a - b) / 1000 / n}'
        # (not CPU: time the proxy was ready to run but waited for a core, per transaction and
        # as a share of the run; when it is large, TPS follows the proxy's CPU per transaction)
        awk -v a="$wait1" -v b="$wait0" -v n="$txns" -v t="$((t1 - t0))" 'BEGIN {
            printf "(waited-for-cpu) %.2f\n(waited-share-%%) %.1f\n", (a - b) / 1000 / n, 100 * (a - b) / t}'
    } >"$out"
    rm -f "$data"
}

bench_in_turns sample

bench_median_table kp 28 part \
    "proxy CPU in microseconds per TRANSACTION-KIND, by part ($MODE protocol, $CLIENTS clients, pool $POOL, median of $REPEATS runs of ${SECS}s; perf cpu-clock samples)"
