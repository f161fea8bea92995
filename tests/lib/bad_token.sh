#!/usr/bin/env bash
# bad_token.sh MODEFILE ROLE LIFETIME_S: a token command that misbehaves on demand, for tests of
# how lakeproxy copes with bad provider answers. MODEFILE holds one of: ok (mint a real token
# with mint_token.sh), badjson, missing, huge, slow, empty, crash, expired, forever, leaky.
set -uo pipefail
mode=$(cat "$1" 2>/dev/null || echo ok)
case "$mode" in
ok) exec bash "$(dirname "$0")/mint_token.sh" "$2" "$3" ;;
badjson) printf '{"token": "abc"' ;;
missing) printf '{"expires_in": 60}\n' ;;
huge) head -c 200000 /dev/zero | tr '\0' 'a' ;;
slow) sleep 30 ;;
empty) ;;
expired) printf '{"token": "abc", "expiration_time": "2000-01-01T00:00:00Z"}\n' ;;
forever) printf '{"token": "abc", "expiration_time": "9999-12-31T23:59:59Z"}\n' ;;
leaky) printf '{"token" "Sup3rS3cret-token"}\n' ;;
crash) echo "segfault in token helper" >&2; kill -SEGV $$ ;;
esac
