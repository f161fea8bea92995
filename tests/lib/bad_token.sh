#!/usr/bin/env bash
# bad_token.sh MODEFILE ROLE LIFETIME_S: a token command that misbehaves on demand, for tests of
# how lakeproxy copes with bad provider answers. MODEFILE holds one of: ok (mint a real token
# with mint_token.sh), badjson, missing, huge, slow, empty, crash.
set -uo pipefail
mode=$(cat "$1" 2>/dev/null || echo ok)
case "$mode" in
ok) exec bash "$(dirname "$0")/mint_token.sh" "$2" "$3" ;;
badjson) printf '{"token": "abc"' ;;
missing) printf '{"expires_in": 60}\n' ;;
huge) head -c 200000 /dev/zero | tr '\0' 'a' ;;
slow) sleep 30 ;;
empty) ;;
crash) echo "segfault in token helper" >&2; kill -SEGV $$ ;;
esac
