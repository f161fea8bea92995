#!/usr/bin/env bash
# train.sh: the training run of `make PGO=1` (profile-guided optimisation). Serves pgbench's
# workloads (select-only in each protocol, TPC-B-like, a two-tenant row-level-security
# database, and logins) through LAKEPROXY, a build instrumented with -fprofile-generate, which
# writes its profile (.gcda files beside its objects) when it exits. The final build then lays
# out and inlines its code for the paths a transaction takes; code the training never ran is
# built as without a profile (-fprofile-partial-training), not shrunk.
#   bench/train.sh LAKEPROXY [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
LP=$(realpath "$1")
SECS=${2:-4}
command -v pgbench >/dev/null || { echo "train: apt-get install postgresql-contrib" >&2; exit 1; }

source bench/lib.sh
bench_pg_start lakeproxy-train
pgbench -i -s 2 -q "host=127.0.0.1 port=$pgport dbname=lp_test user=lp_server" >/dev/null 2>&1

lpport=$(bash tests/lib/free_port.sh)
{
    cat <<YAML
listen: { host: 127.0.0.1, port: $lpport }
log: { level: warning }
databases:
$(bench_db_yaml bench "$(bench_pool_yaml 4)")
$(bench_db_yaml bench_rls "$(bench_pool_yaml 4)")
users:
  lp_server: { password: server-secret, attributes: { tenant_id: "1" } }
  tenant2: { password: server-secret, attributes: { tenant_id: "2" } }
rls: { prefix: app, databases: [bench_rls], attributes: { tenant_id: attribute, user: user } }
stats: { enabled: true }
YAML
} >"$T/lakeproxy.yaml"
# (as the user that owns the build, so that the profile it writes stays writable)
"$LP" -c "$T/lakeproxy.yaml" 2>"$T/lakeproxy.log" &
lp_pid=$!
bench_pids+=("$lp_pid")
for _ in $(seq 100); do
    pg_isready -q -h 127.0.0.1 -p "$lpport" && break
    sleep 0.2
done

# run DB USER ARGS...: pgbench for SECS seconds through lakeproxy; fails on a failed one
run() {
    local db=$1 user=$2
    shift 2
    pgbench -n "$@" -c 8 -j 2 -T "$SECS" "host=127.0.0.1 port=$lpport dbname=$db user=$user" \
        >"$T/pgbench.out" 2>&1 || { cat "$T/pgbench.out" >&2; exit 1; }
    awk -v w="$db $*" '/^tps/ {printf "train: %s: %d TPS\n", w, $3}' "$T/pgbench.out"
}
for mode in simple extended prepared; do
    run bench lp_server -S -M "$mode"
done
run bench lp_server
run bench_rls tenant2 -S -M extended
run bench_rls lp_server -S -M simple
run bench lp_server -S -C

kill -INT "$lp_pid"
wait "$lp_pid" || true
