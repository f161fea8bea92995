#!/usr/bin/env bash
# need_packages.sh install|list demo|check: the Debian packages `make demo` (the build and a
# PostgreSQL server) or `make check` (those, the test framework and the real clients) need, in
# one list that .ci/run installs too. install: as root, apt-get installs the missing ones; as
# another user it names them and fails. list: prints them all.
set -euo pipefail
DEMO="build-essential pkg-config ca-certificates openssl
      libevent-dev libssl-dev libpq-dev libyaml-dev libjansson-dev libunistring-dev
      libpg-query-dev libprotobuf-c-dev libsystemd-dev postgresql postgresql-contrib"
CHECK="$DEMO libcriterion-dev python3 python3-psycopg pgbouncer gnuplot-nox curl systemd iproute2
       clang-format default-jdk-headless libpostgresql-jdbc-java"

case "${1:-} ${2:-}" in
    "list demo" | "install demo") want=$DEMO ;;
    "list check" | "install check") want=$CHECK ;;
    *) echo "usage: need_packages.sh install|list demo|check" >&2; exit 2 ;;
esac
if [ "$1" = list ]; then
    echo $want
    exit 0
fi

missing=""
for p in $want; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
# node-postgres's and Postgres.js's tests run on node (NodeSource's on some machines, else Debian's)
[ "$2" = check ] && ! command -v npm >/dev/null && missing="$missing nodejs npm"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "make $2: missing packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
    exit 1
fi
echo "make $2: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
