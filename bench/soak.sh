#!/usr/bin/env bash
# soak.sh: `make soak`. 2,000 pgbench clients over 20 server connections (transaction pooling)
# at full speed for SOAK_SECONDS (default 600): half select-only in the extended protocol, half
# simple-update in the simple protocol. (Not -M prepared: pgbench prepares with a blocking
# PQprepare, so with more clients than servers one pgbench thread waits for a server that its
# own idle-in-transaction clients hold, and deadlocks; PgBouncer does the same.) lakeproxy's
# RSS and open descriptors are sampled every SOAK_SAMPLE seconds (default 10) into
# bench/results/soak-<stamp>.csv. Fails (exit 1) unless
#   - pgbench reports no error and no failed transaction,
#   - RSS after warm-up (SOAK_WARMUP seconds, default 60) never grows more than 10% above its
#     value at the end of warm-up,
#   - once the clients have left, lakeproxy's descriptors other than its server connections
#     return to what they were before the clients came (within 30 s).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TOTAL=${SOAK_SECONDS:-600}
SAMPLE=${SOAK_SAMPLE:-10}
WARMUP=${SOAK_WARMUP:-60}
CLIENTS=${SOAK_CLIENTS:-2000}
POOL=${SOAK_POOL:-20}
[ -x ./lakeproxy ] || make lakeproxy
ulimit -n $((CLIENTS * 2 + 1000))

source bench/lib.sh
bench_pg_start lakeproxy-soak
bench_pgbench_init

lpport=$(bash tests/lib/free_port.sh)
{
    echo "listen: { host: 127.0.0.1, port: $lpport }"
    echo "log: { level: warning }"
    echo "limits: { max_clients: $((CLIENTS + 100)) }"
    echo "databases:"
    bench_db_yaml bench "{ mode: transaction, size: $POOL, max_wait_ms: 120000 }"
    echo "users:"
    echo "  lp_server: { password: server-secret }"
} >"$T/lakeproxy.yaml"
./lakeproxy -c "$T/lakeproxy.yaml" 2>"$T/lakeproxy.log" &
lp_pid=$!
bench_pids+=("$lp_pid")
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$lpport") 2>/dev/null && break
    sleep 0.1
done

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$lp_pid/status"; }
all_fds() { find "/proc/$lp_pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
# lakeproxy's descriptors minus its established connections to PostgreSQL.
client_fds() {
    local all servers
    all=$(all_fds)
    servers=$(ss -tnpH state established dst "127.0.0.1:$pgport" | grep -c "pid=$lp_pid," || true)
    echo $((all - servers))
}

base_fds=$(client_fds)
base_rss=$(rss_kb)
mkdir -p bench/results
csv="bench/results/soak-$(date -u +%Y%m%d-%H%M%S).csv"
echo "seconds,rss_kb,fds,client_fds" >"$csv"
echo "soak: $CLIENTS clients over $POOL server connections for ${SECONDS_TOTAL}s; samples in $csv"

# run_pgbench NAME ARGS...: half the clients in the background (pid in $!), output in $T/NAME.out
run_pgbench() {
    local name=$1
    shift
    pgbench -n -c $((CLIENTS / 2)) -j 1 -T "$SECONDS_TOTAL" "$@" \
        "host=127.0.0.1 port=$lpport dbname=bench user=lp_server" >"$T/$name.out" 2>&1 &
}
start=$(date +%s)
run_pgbench select -S -M extended
pb1=$!
run_pgbench update -N -M simple
pb2=$!
bench_pids+=("$pb1" "$pb2")

# Samples every SAMPLE seconds while pgbench runs.
while kill -0 "$pb1" 2>/dev/null || kill -0 "$pb2" 2>/dev/null; do
    echo "$(($(date +%s) - start)),$(rss_kb),$(all_fds),$(client_fds)" >>"$csv"
    for _ in $(seq "$SAMPLE"); do
        { kill -0 "$pb1" 2>/dev/null || kill -0 "$pb2" 2>/dev/null; } || break
        sleep 1
    done
done
rc=0
wait "$pb1" || rc=1
wait "$pb2" || rc=1

fail=0
out=$(cat "$T/select.out" "$T/update.out")
errors=$(echo "$out" | awk '/number of failed transactions:/ {s += $5}
    /^pgbench: error|aborted/ {s++} END {print s + 0}')
tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | awk '{s += $1} END {printf "%.0f", s}')
txns=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' |
    awk '{s += $1} END {print s + 0}')
echo "soak: $txns transactions, $tps TPS in all, $errors errors (pgbench exit status ${rc})"
if [ "$errors" -ne 0 ] || [ "$rc" -ne 0 ]; then
    fail=1
    grep -hiE 'error|abort|fail' "$T/select.out" "$T/update.out" | head -n 5 || true
fi

# RSS: the sample at the end of warm-up is the reference; no later sample more than 10% above.
read -r ref peak last < <(awk -F, -v w="$WARMUP" 'NR > 1 && $1 >= w {
        if (ref == "") ref = $2; if ($2 > peak) peak = $2; last = $2 }
    END {print (ref == "" ? 0 : ref), peak + 0, last + 0}' "$csv")
if [ "$ref" -eq 0 ]; then
    echo "soak: no sample after the ${WARMUP}s warm-up (SOAK_SECONDS too short)"
    fail=1
else
    growth=$(awk -v r="$ref" -v p="$peak" 'BEGIN {printf "%.1f", (p - r) * 100 / r}')
    echo "soak: RSS before clients ${base_rss} kB; after warm-up ${ref} kB," \
        "peak ${peak} kB (+${growth}%), last ${last} kB"
    if awk -v r="$ref" -v p="$peak" 'BEGIN {exit !(p > r * 1.10)}'; then
        echo "soak: FAIL: RSS grew more than 10% after warm-up"
        fail=1
    fi
fi

# Descriptors: back to the count before the clients came, within 30 s.
fds=$(client_fds)
for _ in $(seq 300); do
    [ "$fds" -le "$base_fds" ] && break
    sleep 0.1
    fds=$(client_fds)
done
echo "soak: descriptors besides server connections: $base_fds before, $fds after the clients left"
echo "soak: RSS after the clients left: $(rss_kb) kB"
if [ "$fds" -gt "$base_fds" ]; then
    echo "soak: FAIL: descriptors did not return to their baseline"
    fail=1
fi
kill -0 "$lp_pid" 2>/dev/null || { echo "soak: FAIL: lakeproxy died"; fail=1; }
[ "$fail" -eq 0 ] && echo "soak: PASS" || echo "soak: FAIL"
exit "$fail"
