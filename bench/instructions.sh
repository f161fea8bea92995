#!/usr/bin/env bash
# instructions.sh: user-space instructions per transaction of lakeproxy and PgBouncer, counted
# by valgrind's callgrind (instructions, not seconds: repeatable whatever else the machine
# does). Each proxy runs under callgrind twice, serving pgbench -S -t SHORT and -t LONG per
# client; the difference of the two totals divided by the difference in transactions is the
# cost of one transaction without start-up and logins. Kernel time (system calls) is not
# counted: see the CPU figures of bench/run.sh for that.
#   bench/instructions.sh [-s SHORT] [-l LONG] [-M simple|extended|prepared] [-S|-N] [-B] [-C]
#                         [-F] [-k DIR]
# -B: pgbench's TPC-B-like transaction (seven statements) instead of select-only.
# -S: lakeproxy with statistics on and the query log written to a file (default: off).
# -N: lakeproxy with statistics on and no query log (lakeproxy's default).
# -C: also simulate the first-level caches (32 KiB each, as on these machines) and print the
# instruction and data cache misses per transaction: a proxy woken between other processes'
# work starts cold, so the code and data a transaction touches cost more than its instructions.
# -F: also print each proxy's code footprint: the KiB of code (64-byte lines, libraries
# included) run in at least one transaction in five. A proxy woken between other processes'
# work fetches that code again on each wake-up, so it costs more than its instruction count.
# -k DIR: keep lakeproxy's callgrind profiles of both runs in DIR (for callgrind_annotate;
# their difference per function is the cost of the extra transactions).
set -euo pipefail
cd "$(dirname "$0")/.."
SHORT=500 LONG=2500 MODE=simple CLIENTS=4 POOL=4 STATS=off KEEP= CACHE= FOOT= SCRIPT=--builtin=select-only
while getopts "s:l:M:SNBCFk:" o; do
    case $o in
        s) SHORT=$OPTARG ;; l) LONG=$OPTARG ;; M) MODE=$OPTARG ;; S) STATS="on, logged" ;; N) STATS="on, no log" ;;
        B) SCRIPT=--builtin=tpcb-like ;;
        C) CACHE=--cache-sim=yes ;;
        F) FOOT="--dump-instr=yes --compress-pos=no" ;;
        k) KEEP=$OPTARG ;; *) exit 2 ;;
    esac
done
command -v valgrind >/dev/null || { echo "bench: apt-get install valgrind" >&2; exit 1; }
command -v pgbouncer >/dev/null || { echo "bench: apt-get install pgbouncer" >&2; exit 1; }
[ -x ./lakeproxy ] || make lakeproxy

source bench/lib.sh
bench_pg_start lakeproxy-instr
pgbench -i -s 2 -q "host=127.0.0.1 port=$pgport dbname=lp_test user=lp_server" >/dev/null 2>&1
chmod 1777 "$T" # (sticky: lakeproxy refuses a configuration anyone could replace)

lpport=$(bash tests/lib/free_port.sh)
if [ "$STATS" = "on, logged" ]; then
    bench_lakeproxy_yaml "$lpport" "$POOL" "{ log: $T/queries.jsonl }"
elif [ "$STATS" = "on, no log" ]; then
    bench_lakeproxy_yaml "$lpport" "$POOL" "{ enabled: true }"
else
    bench_lakeproxy_yaml "$lpport" "$POOL" "{ enabled: false }"
fi
pbport=$(bash tests/lib/free_port.sh)
bench_pgbouncer_config "$pbport" "$POOL"
as_user=()
[ "$(id -u)" = 0 ] && as_user=(runuser -u postgres --)

# total_instructions NAME PORT TXNS CMD...: runs CMD under callgrind, pgbench against PORT,
# then stops it; prints callgrind's totals (instructions, then with -C: data reads and
# writes, first-level instruction, data-read and data-write misses, and the last level's).
total_instructions() {
    local name=$1 port=$2 txns=$3 out="$T/$1.$3.callgrind"
    shift 3
    # shellcheck disable=SC2086
    "${as_user[@]}" valgrind --tool=callgrind $CACHE $FOOT --callgrind-out-file="$out" "$@" 2>"$T/$name.log" &
    local pid=$!
    for _ in $(seq 100); do
        pg_isready -q -h 127.0.0.1 -p "$port" && break
        sleep 0.2
    done
    pgbench -n "$SCRIPT" -M "$MODE" -c $CLIENTS -j 2 -t "$txns" \
        "host=127.0.0.1 port=$port dbname=bench user=lp_server" >"$T/$name.pgbench" 2>&1
    pkill -INT -P "$pid" 2>/dev/null || kill -INT "$pid"
    pkill -INT -f "callgrind-out-file=$out" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    awk '/^totals:/ {$1 = ""; print}' "$out"
}

# per_txn NAME PORT CMD...: instructions per transaction, then with -C the first-level
# instruction and data (read and write) cache misses per transaction.
per_txn() {
    local name=$1 port=$2
    shift 2
    local a b
    a=$(total_instructions "$name" "$port" "$SHORT" "$@")
    b=$(total_instructions "$name" "$port" "$LONG" "$@")
    awk -v a="$a" -v b="$b" -v n="$(((LONG - SHORT) * CLIENTS))" 'BEGIN {
        split(a, x); split(b, y); printf "%.0f", (y[1] - x[1]) / n
        if (length(y) >= 7) printf " %.1f %.1f", (y[4] - x[4]) / n, (y[5] + y[6] - x[5] - x[6]) / n
        print "" }'
}

# footprint NAME: the KiB of code NAME ran in at least one transaction in five: 64-byte lines
# holding an instruction whose count grew by a fifth of the extra transactions or more from
# the short run to the long one (callgrind's per-instruction counts, positions uncompressed).
# Positions are offsets within each object (the program, each library), so an instruction is
# its object's name and its offset; callgrind numbers objects per file, and names each number
# once (on an ob= or cob= line), so the names are read per file.
footprint() {
    awk -v n="$(((LONG - SHORT) * CLIENTS))" '
        function hex(h, v, i) {
            v = 0; h = tolower(substr(h, 3))
            for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
            return v
        }
        # the object number of an ob= or cob= line, learning its name when the line gives it
        function object(line, id, rest) {
            sub(/^c?ob=\(/, "", line); id = line; sub(/\).*/, "", id)
            rest = line; sub(/^[0-9]+\) ?/, "", rest)
            if (rest != "") name[id] = rest
            return id
        }
        FNR == 1 { sign = (NR == 1) ? -1 : 1; delete name; ob = "" }
        /^ob=/ { ob = object($0); next }
        /^cob=/ { object($0); next }
        /^calls=/ { skip = 1; next }     # the next line is the call'\''s inclusive cost
        /^0x/ { if (!skip) d[name[ob] SUBSEP $1] += sign * $3; skip = 0 }
        END {
            for (k in d) if (d[k] >= n / 5) {
                split(k, part, SUBSEP)
                hot[part[1] SUBSEP int(hex(part[2]) / 64)] = 1
            }
            for (l in hot) lines++
            printf "%.1f", lines * 64 / 1024
        }' "$T/$1.$SHORT.callgrind" "$T/$1.$LONG.callgrind"
}

lp=$(per_txn lakeproxy "$lpport" ./lakeproxy -c "$T/lakeproxy.yaml")
[ -n "$FOOT" ] && lp_foot=$(footprint lakeproxy)
if [ -n "$KEEP" ]; then
    mkdir -p "$KEEP" && cp "$T"/lakeproxy.*.callgrind "$KEEP/"
fi
pb=$(per_txn pgbouncer "$pbport" pgbouncer "$T/pgbouncer.ini")
[ -n "$FOOT" ] && pb_foot=$(footprint pgbouncer)
kind="pgbench -S"
[ "$SCRIPT" = --builtin=tpcb-like ] && kind="TPC-B-like"
read -r lp lp_i1 lp_d1 <<<"$lp"
read -r pb pb_i1 pb_d1 <<<"$pb"
echo "user-space instructions per $kind transaction ($MODE protocol, $CLIENTS clients," \
    "pool $POOL): lakeproxy (statistics $STATS; $(lakeproxy_build_said)) $lp, PgBouncer $(pgbouncer --version | head -n1 | awk '{print $2}')" \
    "$pb, ratio $(awk -v a="$lp" -v b="$pb" 'BEGIN{printf "%.2f", a/b}')"
if [ -n "$CACHE" ]; then
    echo "first-level cache misses per transaction (instruction, data): lakeproxy $lp_i1, $lp_d1;" \
        "PgBouncer $pb_i1, $pb_d1"
fi
if [ -n "$FOOT" ]; then
    echo "code run in at least one transaction in five (KiB, libraries included): lakeproxy $lp_foot," \
        "PgBouncer $pb_foot"
fi
