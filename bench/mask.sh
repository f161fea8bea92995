#!/usr/bin/env bash
# mask.sh: the cost of column masking (part of `make bench`). Starts a throwaway PostgreSQL
# and lakeproxy with two masking rules, and reads a 100,000-row table (two masked columns of
# five) through lakeproxy as a masked user and as an exempt one, alternating, several times.
# Reports median lakeproxy CPU per result (the scheduler's nanoseconds), the median of each
# run's masked/exempt CPU ratio (the goal: at most 1.5; a masked run and the exempt run after
# it are a pair, so the machine's drift cancels) and the TPS of each, and appends them to
# bench/results/.
# -I: instead, count lakeproxy's user-space instructions per result under callgrind (the same
# whatever else the machine does): RESULTS masked results, then RESULTS exempt ones; -k DIR
# keeps the two profiles (masked.callgrind, exempt.callgrind) for callgrind_annotate.
#   bench/mask.sh [-r REPEATS] [-t RESULTS_PER_RUN] [-o OUTPUT.md] [-I [-k DIR]]
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=5 RESULTS=20 OUT="" INSTR="" KEEP=""
while getopts "r:t:o:Ik:" o; do
    case $o in
        r) REPEATS=$OPTARG ;; t) RESULTS=$OPTARG ;; o) OUT=$OPTARG ;; I) INSTR=1 ;;
        k) KEEP=$OPTARG ;; *) exit 2 ;;
    esac
done
[ -x ./lakeproxy ] || make lakeproxy

source bench/lib.sh
bench_pg_start lakeproxy-maskbench
psql -q "host=127.0.0.1 port=$pgport dbname=lp_test user=lp_server" <<'SQL'
CREATE TABLE mask_bench (id int PRIMARY KEY, name text, email text, ssn text, note text);
INSERT INTO mask_bench SELECT g, 'customer ' || g, 'user' || g || '@example.com',
    lpad((g % 1000)::text, 3, '0') || '-' || lpad((g % 100)::text, 2, '0') || '-' || lpad(g::text, 4, '0'),
    repeat('n', 20) FROM generate_series(1, 100000) g;
ANALYZE mask_bench;
SQL

lpport=$(bash tests/lib/free_port.sh)
{
    cat <<YAML
listen: { host: 127.0.0.1, port: $lpport }
log: { level: warning }
databases:
YAML
    bench_db_yaml bench "{ mode: transaction, size: 4 }"
    cat <<YAML
users:
  masked: { password: server-secret }
  exempt: { password: server-secret }
masking:
  rules:
    - { column: public.mask_bench.email, function: email, unless: { users: [exempt] } }
    - { column: public.mask_bench.ssn, function: last4, unless: { users: [exempt] } }
stats: { enabled: false }
YAML
} >"$T/lakeproxy.yaml"
if [ -n "$INSTR" ]; then
    command -v valgrind >/dev/null || { echo "bench: apt-get install valgrind" >&2; exit 1; }
    valgrind --tool=callgrind --callgrind-out-file="$T/cg.out" \
        ./lakeproxy -c "$T/lakeproxy.yaml" 2>"$T/lakeproxy.log" &
else
    ./lakeproxy -c "$T/lakeproxy.yaml" 2>"$T/lakeproxy.log" &
fi
lp_pid=$!
bench_pids+=("$lp_pid")
for _ in $(seq 100); do pg_isready -q -h 127.0.0.1 -p "$lpport" && break; sleep 0.2; done
echo "SELECT * FROM mask_bench;" >"$T/q.sql"

# run USER -> "tps cpu_us_per_result"
run() {
    local before after out tps
    before=$(cpu_ns "$lp_pid")
    out=$(cd "$T" && pgbench -n -f q.sql -t $((RESULTS / 2)) -c 2 -j 2 \
        "host=127.0.0.1 port=$lpport dbname=bench user=$1" 2>&1)
    after=$(cpu_ns "$lp_pid")
    echo "$out" | grep -q "number of failed transactions: 0" || { echo "$out" >&2; exit 1; }
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    awk -v t="$tps" -v a="$after" -v b="$before" -v n="$RESULTS" \
        'BEGIN { printf "%.2f %.0f\n", t, (a - b) / 1e3 / n }'
}

# instructions USER -> lakeproxy's instructions per result (callgrind's counters zeroed
# before, dumped after)
instructions() {
    callgrind_control -z "$lp_pid" >/dev/null
    (cd "$T" && pgbench -n -f q.sql -t $((RESULTS / 2)) -c 2 -j 2 \
        "host=127.0.0.1 port=$lpport dbname=bench user=$1" >/dev/null 2>&1)
    callgrind_control -d "$lp_pid" >/dev/null
    local dump
    dump=$(ls -t "$T"/cg.out.* | head -n 1)
    if [ -n "$KEEP" ]; then mkdir -p "$KEEP" && cp "$dump" "$KEEP/$1.callgrind"; fi
    awk -v n="$RESULTS" '/^(summary|totals):/ { printf "%.0f\n", $2 / n; exit }' "$dump"
}

run masked >/dev/null # warm-up: the catalog read, caches
if [ -n "$INSTR" ]; then
    run exempt >/dev/null
    m=$(instructions masked)
    e=$(instructions exempt)
    report=$(cat <<MD

## Column masking under callgrind: lakeproxy's user-space instructions per 100,000-row result (5 columns, 2 masked), $RESULTS results each

| client | instructions per result | per row | masked/exempt |
|---|---|---|---|
| exempt (rows pass untouched) | $e | $((e / 100000)) | |
| masked (email, ssn rewritten) | $m | $((m / 100000)) | $(awk -v a="$m" -v b="$e" 'BEGIN { printf "%.2f", a / b }') |
MD
)
    echo "$report"
    if [ -n "$OUT" ]; then echo "$report" >>"$OUT"; fi
    exit 0
fi
masked="" exempt="" ratios=""
for r in $(seq "$REPEATS"); do
    m=$(run masked)
    e=$(run exempt)
    echo "run $r: masked $m, exempt $e (tps, lakeproxy CPU us per 100k-row result)"
    masked+="$m"$'\n'
    exempt+="$e"$'\n'
    ratios+=$(awk -v a="${m#* }" -v b="${e#* }" 'BEGIN { if (b > 0) printf "%.4f", a / b }')$'\n'
done
m_tps=$(echo -n "$masked" | awk '{print $1}' | median)
m_cpu=$(echo -n "$masked" | awk '{print $2}' | median)
e_tps=$(echo -n "$exempt" | awk '{print $1}' | median)
e_cpu=$(echo -n "$exempt" | awk '{print $2}' | median)
ratio=$(echo -n "$ratios" | median | awk '{ printf "%.2f", $1 }')
report=$(cat <<MD

## Column masking: a 100,000-row result (5 columns, 2 masked), $RESULTS results x $REPEATS runs, medians

| client | results/s | lakeproxy CPU us per result | CPU masked/exempt (median of pairs) |
|---|---|---|---|
| exempt (rows pass untouched) | $e_tps | $e_cpu | |
| masked (email, ssn rewritten) | $m_tps | $m_cpu | $ratio (goal: at most 1.5) |
MD
)
echo "$report"
if [ -n "$OUT" ]; then echo "$report" >>"$OUT"; fi
