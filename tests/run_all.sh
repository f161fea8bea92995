#!/usr/bin/env bash
# run_all.sh: `make check`. Starts one throwaway PostgreSQL, runs the unit, integration and
# real-client suites, stops PostgreSQL, and ends with one "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/rel}
ROOT=$(pwd)

T=$(mktemp -d /tmp/lakeproxy-check.XXXXXX)
chmod 755 "$T"
cleanup() {
    bash tests/lib/pg_tmp.sh stop "$T/pg" >/dev/null 2>&1
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

passed=0
failed=0
# Adds the counts of criterion's closing "Synthesis" line in file $2 (suite name $1); a runner
# that exited non-zero ($3) counts as one more failure even when every test passed.
count_criterion() {
    local line
    line=$(sed 's/\x1b\[[0-9;]*m//g' "$2" | grep 'Synthesis: Tested:' | tail -n 1)
    if [ -z "$line" ]; then
        echo "$1: no test summary (crashed?)"; failed=$((failed + 1)); return
    fi
    local p f c
    p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
    f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
    c=$(echo "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
    passed=$((passed + p)); failed=$((failed + f + c))
    echo "$1: $p passed, $((f + c)) failed"
    if [ "${3:-0}" != 0 ] && [ $((f + c)) -eq 0 ]; then
        echo "$1: the test runner exited with status $3"; failed=$((failed + 1))
    fi
}

# Names the failures again, just above the closing line, so that the tail of a CI log shows them.
list_failures() {
    [ "$failed" -eq 0 ] && return
    echo
    echo "failed:"
    # each failed test with the assertion lines just above it (criterion prints those first)
    sed 's/\x1b\[[0-9;]*m//g' "$T"/unit.out "$T"/integration.out 2>/dev/null | awk '
        /^\[----\] *$/ { next }
        /^\[----\] Warning! The test/ { print; n = 0; next }
        /^\[----\]/ { if (n < 12) held[n++] = $0; next }
        /^\[FAIL\] / { for (i = 0; i < n; i++) print held[i]; print; n = 0; next }
        { n = 0 }' | head -n 40
    [ -s "$T/stop-failures.txt" ] && head -n 24 "$T/stop-failures.txt"
    # a failed client check, with the failed steps it names (indented under it)
    grep -aE '^not ok|^    not ok' "$T/clients.out" 2>/dev/null | head -n 16
}

if [ "${SANITIZE:-}" = 1 ]; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=16
    export LSAN_OPTIONS=suppressions=$ROOT/tests/lsan.supp
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi

echo "== unit tests"
"$BUILD/test_unit" -j2 2>&1 | tee "$T/unit.out"
count_criterion unit "$T/unit.out" "${PIPESTATUS[0]}"

echo "== starting a throwaway PostgreSQL"
bash tests/lib/mkcerts.sh "$T/certs"
PGPORT_TEST=$(bash tests/lib/free_port.sh)
if ! bash tests/lib/pg_tmp.sh start "$T/pg" "$PGPORT_TEST" "$T/certs"; then
    echo "could not start PostgreSQL"; echo "$passed passed, $((failed + 1)) failed"; exit 1
fi
bash tests/lib/pg_tmp.sh psql "$T/pg" -d postgres -f tests/lib/setup.sql

export LP_TEST_DIR="$T" LP_PGPORT="$PGPORT_TEST" LP_PGSOCK="$T/pg/sock" LP_CERTS="$T/certs"
export LP_BIN="$ROOT/$BUILD/lakeproxy" LP_ROOT="$ROOT"

echo "== integration tests"
# FILTER=suite/* runs only those integration tests (for development; make check runs all)
"$BUILD/test_integration" -j2 ${FILTER:+--filter "$FILTER"} 2>&1 | tee "$T/integration.out"
count_criterion integration "$T/integration.out" "${PIPESTATUS[0]}"
# a lakeproxy that exited badly (crash, sanitizer or valgrind report) fails its test, but
# criterion does not count a failure in a suite's .fini: tests/lib/harness.c lists them here
if [ -s "$T/stop-failures.txt" ]; then
    n=$(grep -vc '^ ' "$T/stop-failures.txt")
    echo "integration: $n lakeproxy processes stopped badly:"
    cat "$T/stop-failures.txt"
    for f in "$T"/proxy-*/valgrind.log; do
        [ -s "$f" ] && { echo "== $f"; head -n 60 "$f"; }
    done
    failed=$((failed + n))
fi
if [ -n "${FILTER:-}" ]; then list_failures; echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; fi

echo "== real clients (psql, pgbench, psycopg, pgjdbc, node-postgres, Postgres.js)"
bash tests/clients/run.sh 2>&1 | tee "$T/clients.out"
line=$(grep -E '^clients: [0-9]+ passed, [0-9]+ failed' "$T/clients.out" | tail -n 1)
if [ -n "$line" ]; then
    p=$(echo "$line" | sed -n 's/clients: \([0-9]*\) passed.*/\1/p')
    f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed/\1/p')
    passed=$((passed + p)); failed=$((failed + f))
else
    echo "clients: no summary"; failed=$((failed + 1))
fi

list_failures
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
