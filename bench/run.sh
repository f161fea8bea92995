#!/usr/bin/env bash
# run.sh: `make bench`. Starts a throwaway PostgreSQL, lakeproxy and PgBouncer (Debian's
# package; both in transaction pooling with the same pool size, all of it opened at start), and
# runs pgbench against each and directly, alternating targets within each repeat. Writes a
# Markdown table and a PNG chart to bench/results/: median TPS, average and p99 latency, TPS
# ratio lakeproxy/PgBouncer, and each proxy's CPU microseconds per transaction (from
# /proc/PID/stat before and after), lakeproxy with row-level-security attributes injected (RLS
# on/off TPS ratio), and lakeproxy with statistics off (the cost of statistics: TPS and CPU
# ratios). Ratios are taken within each repeat and their median reported, with their range.
#   bench/run.sh [-d SECONDS] [-r REPEATS] [-c CLIENTS] [-p POOL_SIZE] [-w WORKLOADS]
#                [-t TARGETS] [-L] [-T] [-E]
# lakeproxy runs as it ships: statistics on, no query log; -L: it also writes every query to
# the JSON query log in a file (bench/stats.sh compares the two). -T: PostgreSQL has TLS on and
# both proxies reach it over TLS, as they reach Lakebase (clients reach the proxies in plain
# TCP; pgbench direct uses TLS too); BENCH_SERVER_TLS=1 does the same. -E: clients reach both
# proxies, and PostgreSQL direct, over TLS (BENCH_CLIENT_TLS=1 does the same); with -T too,
# TLS on both sides.
# WORKLOADS is a comma list of: simple, extended, prepared, tpcb, connect, c1000, rows
# (rows: 1,000-row results, bench/rows.sql)
# TARGETS is a comma list of: direct, lakeproxy, lakeproxy_rls, lakeproxy_nostats, pgbouncer
# (all by default); fewer targets give more repeats in the same time, for a closer comparison
# (-t lakeproxy,pgbouncer). Ratios need both their targets.
# A quick run: bench/run.sh -d 5 -r 1 (about two minutes).
# Every pool is opened at start, five of POOL_SIZE (lakeproxy's two databases in each of its two
# processes, and PgBouncer's), within the bench PostgreSQL's 400 connections: POOL_SIZE up to 70.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=10 REPEATS=3 CLIENTS=20 POOL=20 WORKLOADS=simple,extended,prepared,tpcb,connect,c1000,rows
# lakeproxy_rls: lakeproxy with row-level-security attributes injected (database bench_rls),
# two tenants (users) at once, half the clients each
# lakeproxy_nostats: a second lakeproxy with statistics off (lakeproxy itself keeps them), for
# the cost of statistics
TARGETS="direct lakeproxy lakeproxy_rls lakeproxy_nostats pgbouncer"
STATS="{ enabled: true }" STATS_SAID="statistics on, no query log (as it ships)"
ALL_TARGETS=$TARGETS
while getopts "d:r:c:p:w:t:LTE" o; do
    case $o in
        d) DURATION=$OPTARG ;; r) REPEATS=$OPTARG ;; c) CLIENTS=$OPTARG ;;
        p) POOL=$OPTARG ;; w) WORKLOADS=$OPTARG ;; t) TARGETS=${OPTARG//,/ } ;; L) STATS="{ log: QUERY_LOG }" STATS_SAID="statistics on, every query logged to a file" ;; T) export BENCH_SERVER_TLS=1 ;; E) export BENCH_CLIENT_TLS=1 ;; *) exit 2 ;;
    esac
done
for target in $TARGETS; do
    [[ " $ALL_TARGETS " == *" $target "* ]] ||
        { echo "bench: unknown target $target (one of: ${ALL_TARGETS// /, })" >&2; exit 2; }
done
command -v pgbouncer >/dev/null || { echo "bench: apt-get install pgbouncer" >&2; exit 1; }
[ -x ./lakeproxy ] || make lakeproxy
ulimit -n 8192 2>/dev/null || true

source bench/lib.sh
BUILD_SAID=$(lakeproxy_build_said)
bench_pg_start lakeproxy-bench
bench_pgbench_init

# lakeproxy_yaml PORT: the configuration of a lakeproxy on PORT, but its stats section.
lakeproxy_yaml() {
    bench_listen_yaml "$1"
    cat <<YAML
log: { level: warning }
limits: { max_clients: 2000 }
databases:
YAML
    bench_db_yaml bench "$(bench_pool_yaml "$POOL")"
    # the same, under row-level security: two attributes injected at every checkout, every
    # statement through the guard
    bench_db_yaml bench_rls "$(bench_pool_yaml "$POOL")"
    cat <<YAML
users:
  lp_server: { password: server-secret, attributes: { tenant_id: "1" } }
  tenant2: { password: server-secret, attributes: { tenant_id: "2" } }
rls: { prefix: app, databases: [bench_rls], attributes: { tenant_id: attribute, user: user } }
YAML
}
lpport=$(bash tests/lib/free_port.sh)
lakeproxy_yaml "$lpport" >"$T/lakeproxy.yaml"
lp2port=$(bash tests/lib/free_port.sh)
lakeproxy_yaml "$lp2port" >"$T/nostats.yaml"
echo "stats: ${STATS/QUERY_LOG/$T/queries.jsonl}" >>"$T/lakeproxy.yaml"
echo "stats: { enabled: false }" >>"$T/nostats.yaml"
./lakeproxy -c "$T/lakeproxy.yaml" 2>"$T/lakeproxy.log" &
lp_pid=$!
bench_pids+=("$lp_pid")
./lakeproxy -c "$T/nostats.yaml" 2>"$T/nostats.log" &
lp2_pid=$!
bench_pids+=("$lp2_pid")

pbport=$(bash tests/lib/free_port.sh)
bench_pgbouncer_config "$pbport" "$POOL"
if [ "$(id -u)" = 0 ]; then
    chown postgres "$T/pgbouncer.ini" "$T/userlist.txt"
    runuser -u postgres -- sh -c "ulimit -n 8192; exec pgbouncer $T/pgbouncer.ini" 2>"$T/pgbouncer.log" &
else
    pgbouncer "$T/pgbouncer.ini" 2>"$T/pgbouncer.log" &
fi
bench_pids+=($!)
sleep 1
pb_pid=$(pgrep -n -f "pgbouncer $T/pgbouncer.ini")



# pgbench arguments of a workload; $2 divides its clients (for the two-tenant RLS target).
workload_args() {
    local n=$CLIENTS share=${2:-1}
    [ "$1" = c1000 ] && n=1000
    n=$((n / share))
    case $1 in
        simple | c1000) echo "-S -M simple -c $n" ;;
        extended) echo "-S -M extended -c $n" ;;
        prepared) echo "-S -M prepared -c $n" ;;
        tpcb) echo "-M simple -c $n" ;;
        connect) echo "-S -M simple -C -c $n" ;;
        rows) echo "-M simple -c $n -f $BENCH_ROWS_SQL" ;;
    esac
}

# pgbench_as WORKLOAD SECONDS PORT DB USER SHARE LOGPREFIX: one pgbench run, its output.
pgbench_as() {
    # shellcheck disable=SC2046
    (cd "$T" && pgbench -n $(workload_args "$1" "$6") -j 2 -T "$2" -l --sampling-rate=0.2 \
        --log-prefix="$7" "host=127.0.0.1 port=$3 dbname=$4 user=$5" 2>&1) || true
}

# run_one WORKLOAD TARGET -> "tps avg_ms p99_ms cpu_us_per_txn kernel_percent errors" ("-"
# where not measured)
run_one() {
    local wl=$1 target=$2 port db pid="" before after ticks0 ticks1 out tps lat txns p99 cpu=- kern=-
    case $target in
        direct) port=$pgport db=lp_test ;;
        lakeproxy) port=$lpport db=bench pid=$lp_pid ;;
        lakeproxy_rls) port=$lpport db=bench_rls pid=$lp_pid ;;
        lakeproxy_nostats) port=$lp2port db=bench pid=$lp2_pid ;;
        pgbouncer) port=$pbport db=bench pid=$pb_pid ;;
    esac
    if [ "$wl" = c1000 ] && [ "$target" = direct ]; then
        echo "- - - - - ok" # PostgreSQL here allows 400 connections: that is what poolers are for
        return
    fi
    rm -f "$T"/pgbench_log*
    local secs=$DURATION
    # 1,000 SCRAM logins take pgbench itself several seconds before the clock starts
    [ "$wl" = c1000 ] && [ "$secs" -lt 20 ] && secs=20
    [ -n "$pid" ] && before=$(cpu_ns "$pid") && ticks0=$(cpu_ticks "$pid")
    if [ "$target" = lakeproxy_rls ]; then
        # two tenants at once, half the clients each: servers pass between tenants, so the
        # injection is needed whenever a server changes hands
        pgbench_as "$wl" "$secs" "$port" "$db" lp_server 2 pgbench_log >"$T/t1.out" &
        pgbench_as "$wl" "$secs" "$port" "$db" tenant2 2 pgbench_log2 >"$T/t2.out"
        wait
        out=$(cat "$T/t1.out" "$T/t2.out")
    else
        out=$(pgbench_as "$wl" "$secs" "$port" "$db" lp_server 1 pgbench_log)
    fi
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | awk '{s+=$1} END {if (NR) print s}')
    lat=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' |
        awk '{s+=$1} END {if (NR) printf "%.3f", s/NR}')
    txns=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' |
        awk '{s+=$1} END {if (NR) print s}')
    p99=$(cat "$T"/pgbench_log* 2>/dev/null | awk '{print $3}' | sort -n |
        awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; if (NR) printf "%.3f", a[i]/1000; else print "-"}')
    if [ -n "$pid" ] && [ -n "$txns" ] && [ "$txns" -gt 0 ]; then
        after=$(cpu_ns "$pid")
        cpu=$(awk -v a="$after" -v b="$before" -v n="$txns" 'BEGIN{printf "%.1f", (a-b)/1e3/n}')
        ticks1=$(cpu_ticks "$pid")
        kern=$(echo "$ticks0 $ticks1" |
            awk '{u = $3 - $1; k = $4 - $2; if (u + k > 0) printf "%.0f", 100 * k / (u + k); else print "-"}')
    fi
    local errs=ok
    if echo "$out" | grep -qiE 'error|abort'; then
        errs=errors
        echo "bench: $wl via $target reported errors:" >&2
        echo "$out" | grep -iE 'error|abort' | head -n 3 >&2
    fi
    echo "${tps:--} ${lat:--} ${p99:--} $cpu $kern $errs"
}

read -ra targets <<<"$TARGETS"
# one short run per target first, not counted: pools filled, caches and the database's pages
# warm (otherwise whichever target runs first pays for them)
for target in "${targets[@]}"; do
    (DURATION=2 run_one simple "$target") >/dev/null # (a subshell: run_one waits for its jobs)
done

mkdir -p bench/results
stamp=$(date -u +%Y%m%d-%H%M%S)
out="bench/results/$stamp.md"
dat="$T/chart.dat"
{
    echo "# lakeproxy bench $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "pgbench against PostgreSQL directly, lakeproxy and PgBouncer $(pgbouncer --version | head -n1 | awk '{print $2}'),"
    echo "both in transaction pooling with $POOL server connections$([ -n "${BENCH_SERVER_TLS:-}" ] && echo ", over TLS (TLS to PostgreSQL for direct too)")$([ -n "${BENCH_CLIENT_TLS:-}" ] && echo ", clients over TLS (to PostgreSQL direct too)"); $CLIENTS clients unless the"
    echo "workload says otherwise; ${DURATION}s x $REPEATS runs, medians; $(nproc) cores, one machine."
    echo "lakeproxy: $STATS_SAID; lakeproxy_nostats: statistics off; $BUILD_SAID."
    echo "Ratios are the median of the ratios within each run (the targets take turns, each run"
    echo "starting one target later), with their range over the runs in brackets and in how many"
    echo "runs the ratio was 1 or more (for TPS, lakeproxy ahead or level; for CPU and p99 latency,"
    echo "lakeproxy using as much or more, as slow or slower). Of it in the kernel: the share of the proxy's CPU time spent in"
    echo "system calls (sending and receiving on the sockets), from its utime and stime."
    echo
    echo "| workload | target | TPS | avg latency ms | p99 latency ms | proxy CPU us/txn | of it in the kernel | lakeproxy/PgBouncer: TPS, CPU, p99 |"
    echo "|---|---|---|---|---|---|---|---|"
} >"$out"

# tps_of TARGET: its median TPS in this workload for the chart, 0 when not measured
tps_of() {
    local v=${med[$1,1]:--}
    echo "${v/-/0}"
}

IFS=, read -ra wls <<<"$WORKLOADS"
for wl in "${wls[@]}"; do
    declare -A res=()
    for r in $(seq "$REPEATS"); do
        # each repeat starts one target later: none always runs first, or after the same one
        for i in "${!targets[@]}"; do
            target=${targets[(i + r - 1) % ${#targets[@]}]}
            line=$(run_one "$wl" "$target")
            res[$target]+="$line"$'\n'
            echo "run $r $wl $target: $line (tps avg_ms p99_ms cpu_us/txn kernel% errors)"
        done
    done
    declare -A med=()
    for target in $TARGETS; do
        for col in 1 2 3 4 5; do
            med[$target,$col]=$(echo -n "${res[$target]}" | awk -v c=$col '{print $c}' | median)
        done
    done
    ratio="TPS $(paired lakeproxy pgbouncer 1), CPU $(paired lakeproxy pgbouncer 4), p99 $(paired lakeproxy pgbouncer 3)"
    rls_ratio=$(paired lakeproxy_rls lakeproxy 1)
    stats_ratio=$(paired lakeproxy lakeproxy_nostats 1)
    cpu_ratio=$(paired lakeproxy lakeproxy_nostats 4)
    nostats_ratio=$(paired lakeproxy_nostats pgbouncer 1)
    nostats_cpu=$(paired lakeproxy_nostats pgbouncer 4)
    for target in $TARGETS; do
        r=""
        [ "$target" = lakeproxy ] && r=$ratio
        [ "$target" = lakeproxy_rls ] && r="RLS on/off: $rls_ratio"
        [ "$target" = lakeproxy_nostats ] &&
            r="stats on/off: TPS $stats_ratio, CPU $cpu_ratio; stats off/PgBouncer: TPS $nostats_ratio, CPU $nostats_cpu"
        note=$(echo -n "${res[$target]}" | grep -q ' errors$' && echo " (errors)" || true)
        kern=${med[$target,5]}
        [ "$kern" = - ] || kern+=%
        echo "| $wl | $target | ${med[$target,1]}$note | ${med[$target,2]} | ${med[$target,3]} | ${med[$target,4]} | $kern | $r |" >>"$out"
    done
    echo "$wl $(tps_of direct) $(tps_of lakeproxy) $(tps_of pgbouncer) $(tps_of lakeproxy_rls)" >>"$dat"
    unset res med
done

if command -v gnuplot >/dev/null; then
    gnuplot <<GP 2>/dev/null && echo "![TPS per workload]($stamp.png)" >>"$out"
set terminal png size 900,480
set output "bench/results/$stamp.png"
set title "pgbench TPS: direct, lakeproxy, PgBouncer (transaction pooling, $POOL server connections)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set ylabel "transactions per second"
set key top right
set yrange [0:*]
plot "$dat" using 2:xtic(1) title "direct", "" using 3 title "lakeproxy", "" using 4 title "PgBouncer", "" using 5 title "lakeproxy + RLS"
GP
fi
echo
cat "$out"
echo "written to $out"
