#!/usr/bin/env bash
# mint_token.sh ROLE LIFETIME_S [LOGFILE]: a stand-in token service for tests and the demo, run
# by lakeproxy's `command` credential provider. It makes a random 4 KB token, makes it ROLE's
# only password until it expires (as Lakebase checks a token at login only), appends
# "<unix time> <sha256 prefix>" to LOGFILE, and prints {"token": ..., "expires_in": LIFETIME_S}.
# Connects to the PostgreSQL at $LP_PGSOCK:$LP_PGPORT as postgres. If $LP_MINT_FAIL names an
# existing file, it fails instead (a provider outage); if $LP_MINT_LATE names an existing
# file, it prints a new token without making it the password (a server that does not take a
# new token yet: the previous one still works).
set -euo pipefail
role=$1
life=$2
log=${3:-/dev/null}
if [ -n "${LP_MINT_FAIL:-}" ] && [ -e "$LP_MINT_FAIL" ]; then
    echo "token service unavailable (test outage)" >&2
    exit 3
fi
tok=$(head -c 3072 /dev/urandom | base64 -w0 | tr '+/' '-_') # 4096 characters, no padding
until=$(date -u -d "+${life} seconds" '+%Y-%m-%d %H:%M:%S+00')
if [ -z "${LP_MINT_LATE:-}" ] || [ ! -e "$LP_MINT_LATE" ]; then
    psql -h "$LP_PGSOCK" -p "$LP_PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qX \
        -c "ALTER ROLE \"$role\" PASSWORD '$tok' VALID UNTIL '$until'" >/dev/null
fi
echo "$(date +%s) $(printf %s "$tok" | sha256sum | head -c 8)" >>"$log"
printf '{"token": "%s", "expires_in": %s}\n' "$tok" "$life"
