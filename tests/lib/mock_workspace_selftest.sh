#!/usr/bin/env bash
# mock_workspace_selftest.sh: proves tests/lib/mock_workspace.py behaves as the tests expect.
# Starts the mock over TLS on a free loopback port with a throwaway self-signed certificate and
# drives every endpoint and failure mode with curl. No PostgreSQL needed, unless
# MOCK_SELFTEST_PG=1: then it also starts a throwaway cluster (tests/lib/pg_tmp.sh) and checks
# that --pg-dsn/--pg-role make only the newest database token log in, until it expires.
# Ends with "mock_workspace selftest: N passed, M failed"; exits non-zero on any failure.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
MOCK=$HERE/mock_workspace.py

T=$(mktemp -d /tmp/mock-workspace-selftest.XXXXXX)
chmod 755 "$T"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    [ -d "$T/pg" ] && bash "$HERE/pg_tmp.sh" stop "$T/pg" >/dev/null 2>&1
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

passed=0
failed=0
check() { # check NAME COMMAND...: one test, passes when COMMAND succeeds
    local name=$1; shift
    if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name"; fi
}
jget() { # jget FILE EXPR: evaluates EXPR with j = the JSON in FILE; prints it
    "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null
}
is() { [ "$1" = "$2" ] || { echo "  got '$1', want '$2'" >&2; return 1; }; }
not() { ! "$@"; }
absent() { # absent FILE STRING...: none of the STRINGs occurs in FILE
    local f=$1 s; shift
    for s in "$@"; do ! grep -qF -- "$s" "$f" || { echo "  '$s' found in $f" >&2; return 1; }; done
}

# ---- certificate, mock start -----------------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1 \
    || { echo "openssl failed"; exit 1; }

start_mock() { # start_mock STATEDIR [options]: starts a mock, waits for STATEDIR/ready; sets PORT, MPID
    local dir=$1; shift
    PORT=$(bash "$HERE/free_port.sh")
    mkdir -p "$dir"
    "$PY" "$MOCK" --port "$PORT" --cert "$T/cert.pem" --key "$T/key.pem" --state "$dir" "$@" \
        2>>"$dir/mock.log" &
    MPID=$!
    PIDS+=("$MPID")
    local i
    for i in $(seq 100); do [ -f "$dir/ready" ] && return 0; sleep 0.1; done
    echo "mock did not become ready:"; cat "$dir/mock.log"; exit 1
}

S=$T/state
start_mock "$S"
BASE=https://127.0.0.1:$PORT
CURL=(curl -s --cacert "$T/cert.pem" -o "$T/body" -w '%{http_code}')
MODE=ok
set_mode() { MODE=$1; echo "$1" > "$S/mode"; }
note() { # note KIND STATUS: one request calls.json should count (to a file: callers run in $(...))
    local f=0
    if [ "$MODE" != ok ] && [ "${MODE%%:*}" != slow ] || [ "$2" -ge 400 ] || [ "$2" = 000 ]; then f=1; fi
    echo "${1:--} $f" >> "$T/expected_calls"
}
want() { # want KIND: how many requests calls.json should count as KIND
    if [ "$1" = failed ]; then awk '$2 == 1' "$T/expected_calls" | wc -l
    else awk -v k="$1" '$1 == k' "$T/expected_calls" | wc -l; fi
}
oidc() { # oidc [curl args]: POST /oidc/v1/token as CLIENT (id:secret, "none": no auth); prints the status
    local code client=${CLIENT:-lp-client:lp-secret} auth=()
    [ "$client" = none ] || auth=(-u "$client")
    code=$("${CURL[@]}" "${auth[@]}" -d grant_type=client_credentials -d scope=all-apis \
        "$@" "$BASE/oidc/v1/token")
    note oidc "$code"; echo "$code"
}
dbcred() { # dbcred BODY [curl args]
    local body=$1 code; shift
    code=$("${CURL[@]}" -H 'Content-Type: application/json' -d "$body" "$@" "$BASE/api/2.0/database/credentials")
    note database_credentials "$code"; echo "$code"
}
pgcred() { # pgcred BODY [curl args]
    local body=$1 code; shift
    code=$("${CURL[@]}" -H 'Content-Type: application/json' -d "$body" "$@" "$BASE/api/2.0/postgres/credentials")
    note postgres_credentials "$code"; echo "$code"
}
me() { # me TOKEN
    local code
    code=$("${CURL[@]}" -H "Authorization: Bearer $1" "$BASE/api/2.0/preview/scim/v2/Me")
    note me "$code"; echo "$code"
}
uuid() { cat /proc/sys/kernel/random/uuid; }
dbbody() { echo "{\"request_id\":\"$(uuid)\",\"instance_names\":[\"lp-instance\"]}"; }
EP='projects/p1/branches/main/endpoints/ep-1'
ntokens() { [ -f "$S/tokens.log" ] && wc -l < "$S/tokens.log" || echo 0; }

check "ready file names the port" is "$(jget "$S/ready" 'j["port"]')" "$PORT"

# ---- OAuth -----------------------------------------------------------------------------
check "oidc: right secret -> 200" is "$(oidc)" 200
check "oidc: token_type Bearer" is "$(jget "$T/body" 'j["token_type"]')" Bearer
check "oidc: access_token 64+ url-safe chars" \
    "$PY" -c 'import json,re,sys; t=json.load(open(sys.argv[1]))["access_token"]; sys.exit(not re.fullmatch(r"[A-Za-z0-9_-]{64,}",t))' "$T/body"
check "oidc: expires_in 3600" is "$(jget "$T/body" 'j["expires_in"]')" 3600
AT=$(jget "$T/body" 'j["access_token"]')
check "oidc: wrong secret -> 401" is "$(CLIENT=lp-client:nope oidc)" 401
check "oidc: 401 says invalid_client" is "$(jget "$T/body" 'j["error"]')" invalid_client
check "oidc: no client auth -> 401" is "$(CLIENT=none oidc)" 401
check "oidc: wrong grant_type -> 400" is "$(oidc -d grant_type=password)" 400
check "oidc: wrong scope -> 400" is "$(oidc -d scope=sql)" 400
check "oidc: JSON content type -> 400" is "$(oidc -H 'Content-Type: application/json')" 400

# ---- Lakebase provisioned --------------------------------------------------------------
AUTH=(-H "Authorization: Bearer $AT")
check "database: bearer + uuid -> 200" is "$(dbcred "$(dbbody)" "${AUTH[@]}")" 200
TOK1=$(jget "$T/body" 'j["token"]')
check "database: token is 4096 chars" is "${#TOK1}" 4096
check "database: token looks like a JWT" "$PY" -c 'import re,sys; sys.exit(not re.fullmatch(r"eyJ[A-Za-z0-9_.-]+", sys.argv[1]))' "$TOK1"
check "database: expiration_time is RFC 3339 UTC, about now + 3600 s" "$PY" -c '
import json,sys,time
from datetime import datetime
s=json.load(open(sys.argv[1]))["expiration_time"]
assert s.endswith("Z") and len(s)==24, s
t=datetime.strptime(s,"%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
sys.exit(not abs(t-(time.time()+3600))<30)' "$T/body"
check "database: second call -> 200" is "$(dbcred "$(dbbody)" "${AUTH[@]}")" 200
TOK2=$(jget "$T/body" 'j["token"]')
check "database: tokens differ" test "$TOK1" != "$TOK2"
check "database: no bearer -> 401" is "$(dbcred "$(dbbody)")" 401
check "database: 401 says UNAUTHENTICATED" is "$(jget "$T/body" 'j["error_code"]')" UNAUTHENTICATED
check "database: unknown bearer -> 401" is "$(dbcred "$(dbbody)" -H 'Authorization: Bearer nope')" 401
check "database: basic auth -> 401" is "$(dbcred "$(dbbody)" -u lp-client:lp-secret)" 401
check "database: request_id not a uuid -> 400" \
    is "$(dbcred '{"request_id":"abc","instance_names":["i"]}' "${AUTH[@]}")" 400
check "database: 400 says INVALID_PARAMETER_VALUE" is "$(jget "$T/body" 'j["error_code"]')" INVALID_PARAMETER_VALUE
check "database: empty instance_names -> 400" \
    is "$(dbcred "{\"request_id\":\"$(uuid)\",\"instance_names\":[]}" "${AUTH[@]}")" 400
check "database: no request_id -> 400" is "$(dbcred '{"instance_names":["i"]}' "${AUTH[@]}")" 400
check "database: not JSON -> 400" is "$(dbcred 'instance_names=i' "${AUTH[@]}")" 400

# ---- Lakebase autoscaling --------------------------------------------------------------
check "postgres: endpoint -> 200" is "$(pgcred "{\"endpoint\":\"$EP\"}" "${AUTH[@]}")" 200
check "postgres: has expire_time" "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(not (len(j["token"])==4096 and j["expire_time"].endswith("Z")))' "$T/body"
check "postgres: ttl \"3600s\" -> 200" is "$(pgcred "{\"endpoint\":\"$EP\",\"ttl\":\"3600s\"}" "${AUTH[@]}")" 200
check "postgres: ttl \"10s\" -> 400" is "$(pgcred "{\"endpoint\":\"$EP\",\"ttl\":\"10s\"}" "${AUTH[@]}")" 400
check "postgres: ttl 600 (a number) -> 400" is "$(pgcred "{\"endpoint\":\"$EP\",\"ttl\":600}" "${AUTH[@]}")" 400
check "postgres: bad endpoint -> 400" is "$(pgcred '{"endpoint":"projects/p/endpoints/e"}' "${AUTH[@]}")" 400
check "postgres: no bearer -> 401" is "$(pgcred "{\"endpoint\":\"$EP\"}")" 401

# ---- SCIM Me ---------------------------------------------------------------------------
cat > "$S/users.json" <<EOF
{"user-tok-1": {"userName": "alice@example.com", "groups": ["analysts", "admins"]},
 "user-tok-old": {"userName": "bob@example.com", "groups": [], "expires": $(($(date +%s) - 10))}}
EOF
check "me: known token -> 200" is "$(me user-tok-1)" 200
check "me: userName" is "$(jget "$T/body" 'j["userName"]')" alice@example.com
check "me: groups" is "$(jget "$T/body" '",".join(g["display"] for g in j["groups"])')" analysts,admins
check "me: active, has ids" is "$(jget "$T/body" 'j["active"] and bool(j["id"]) and all(g["value"] for g in j["groups"])')" True
check "me: unknown token -> 401" is "$(me user-tok-2)" 401
check "me: expired token -> 401" is "$(me user-tok-old)" 401

# ---- anything else ---------------------------------------------------------------------
code=$("${CURL[@]}" "$BASE/api/2.0/nothing"); note "" "$code"
check "unknown path -> 404" is "$code" 404
code=$("${CURL[@]}" "$BASE/oidc/v1/token"); note "" "$code"
check "GET on a POST endpoint -> 404" is "$code" 404

# ---- failure modes ---------------------------------------------------------------------
issued=$(ntokens)
set_mode 500
check "mode 500: database -> 500" is "$(dbcred "$(dbbody)" "${AUTH[@]}")" 500
check "mode 500: INTERNAL_ERROR" is "$(jget "$T/body" 'j["error_code"]')" INTERNAL_ERROR
check "mode 500: oidc -> 500" is "$(oidc)" 500
check "mode 500: me -> 500" is "$(me user-tok-1)" 500
set_mode 401
check "mode 401: oidc with right secret -> 401" is "$(oidc)" 401
check "mode 401: postgres with good bearer -> 401" is "$(pgcred "{\"endpoint\":\"$EP\"}" "${AUTH[@]}")" 401
set_mode badjson
check "mode badjson: database -> 200" is "$(dbcred "$(dbbody)" "${AUTH[@]}")" 200
check "mode badjson: truncated body" is "$(cat "$T/body")" '{"token": "abc'
check "mode badjson: not valid JSON" test -z "$(jget "$T/body" 'j')"
set_mode missing
check "mode missing: database -> 200" is "$(dbcred "$(dbbody)" "${AUTH[@]}")" 200
check "mode missing: database lacks token" is "$(jget "$T/body" '"token" not in j and "expiration_time" in j')" True
check "mode missing: oidc -> 200" is "$(oidc)" 200
check "mode missing: oidc lacks access_token" is "$(jget "$T/body" '"access_token" not in j')" True
set_mode huge
out=$(curl -s --cacert "$T/cert.pem" -o "$T/body" -D "$T/headers" -w '%{http_code} %{size_download}' \
    -H 'Content-Type: application/json' -d "$(dbbody)" "${AUTH[@]}" "$BASE/api/2.0/database/credentials")
note database_credentials "${out%% *}"
check "mode huge: 200 with 20 MB" is "$out" "200 20971520"
check "mode huge: Content-Length sent" grep -qi '^content-length: 20971520' "$T/headers"
set_mode timeout
start=$(date +%s.%N)
"${CURL[@]}" --max-time 2 -H 'Content-Type: application/json' -d "$(dbbody)" "${AUTH[@]}" \
    "$BASE/api/2.0/database/credentials" >/dev/null
rc=$?
note database_credentials 000
check "mode timeout: curl --max-time 2 times out (rc 28)" is "$rc" 28
# A held request ends soon after the mode changes: start one, then switch back to ok.
"${CURL[@]}" --max-time 20 -d x "$BASE/api/2.0/preview/scim/v2/Me" -X GET >/dev/null 2>&1 &
held=$!
note me 000
sleep 0.5
set_mode ok
start=$(date +%s.%N)
wait "$held"; rc=$?
check "mode timeout: held connection closed without an answer once mode changes" \
    "$PY" -c 'import sys; sys.exit(not (sys.argv[1] != "0" and float(sys.argv[3]) - float(sys.argv[2]) < 3))' \
    "$rc" "$start" "$(date +%s.%N)"
set_mode slow:1
start=$(date +%s.%N)
check "mode slow:1: database -> 200" is "$(dbcred "$(dbbody)" "${AUTH[@]}")" 200
check "mode slow:1: took >= 1 s" "$PY" -c 'import sys; sys.exit(not float(sys.argv[2]) - float(sys.argv[1]) >= 1.0)' "$start" "$(date +%s.%N)"
check "mode slow:1: answered a real token" is "$(jget "$T/body" 'len(j["token"])')" 4096
check "failure modes issued no tokens (slow did)" is "$(ntokens)" $((issued + 1))
set_mode bogus
check "unknown mode -> 500" is "$(dbcred "$(dbbody)" "${AUTH[@]}")" 500
set_mode ok
rm -f "$S/mode"

# ---- concurrency -----------------------------------------------------------------------
issued=$(ntokens)
par=()
for i in $(seq 20); do
    curl -s --cacert "$T/cert.pem" -o "$T/par.$i" -w '%{http_code}\n' -H 'Content-Type: application/json' \
        -d "$(dbbody)" "${AUTH[@]}" "$BASE/api/2.0/database/credentials" > "$T/par.$i.code" &
    par+=($!)
done
wait "${par[@]}" # not a bare wait: the mock is a child too
for i in $(seq 20); do note database_credentials "$(cat "$T/par.$i.code")"; done
check "20 parallel requests -> 20 x 200" is "$(cat "$T"/par.*.code | sort | uniq -c | tr -s ' ')" " 20 200"
check "20 parallel requests -> 20 distinct tokens" \
    is "$(for i in $(seq 20); do jget "$T/par.$i" 'j["token"]'; done | sort -u | wc -l)" 20
check "tokens.log has one line per issued token" is "$(ntokens)" $((issued + 20))

# ---- counters, logs --------------------------------------------------------------------
sleep 0.2
for k in oidc database_credentials postgres_credentials me failed; do
    check "calls.json $k = $(want "$k")" is "$(jget "$S/calls.json" "j['$k']")" "$(want "$k")"
done
check "tokens.log lines are: issued expiry sha256-prefix" \
    "$PY" -c '
import hashlib,sys
lines=open(sys.argv[1]).read().split("\n")[:-1]
ok=all(len(f)==3 and float(f[1])>float(f[0]) and len(f[2])==8 and int(f[2],16)>=0 for f in (l.split() for l in lines))
ok=ok and hashlib.sha256(sys.argv[2].encode()).hexdigest()[:8] in [l.split()[2] for l in lines]
sys.exit(not ok)' "$S/tokens.log" "$TOK1"
check "log: one line per request" grep -q 'POST /api/2.0/database/credentials 200' "$S/mock.log"
check "mock.log: no secrets or tokens" absent "$S/mock.log" "${AT:0:40}" "${TOK1:50:40}" "${TOK2:50:40}" user-tok lp-secret
check "tokens.log: no tokens" absent "$S/tokens.log" "${TOK1:50:40}" "${TOK2:50:40}"
check "state dir: no stray temp files" is "$(ls "$S" | grep -c tmp)" 0

# ---- lifetimes, token size, SIGTERM ----------------------------------------------------
kill -TERM "$MPID"; wait "$MPID"; rc=$?
check "SIGTERM: exit status 0" is "$rc" 0
check "SIGTERM: ready removed" test ! -e "$S/ready"

S2=$T/state2
start_mock "$S2" --lifetime 2.5 --oauth-lifetime 1 --token-size 100 --client-id c2 --client-secret s2
BASE=https://127.0.0.1:$PORT
code=$("${CURL[@]}" -u c2:s2 -d grant_type=client_credentials -d scope=all-apis "$BASE/oidc/v1/token")
check "custom client: oidc 200" is "$code" 200
check "oauth lifetime 1: expires_in 1" is "$(jget "$T/body" 'j["expires_in"]')" 1
AT2=$(jget "$T/body" 'j["access_token"]')
code=$("${CURL[@]}" -d "$(dbbody)" -H "Authorization: Bearer $AT2" "$BASE/api/2.0/database/credentials")
check "token size 100: 200" is "$code" 200
check "token size 100: length 100" is "$(jget "$T/body" 'len(j["token"])')" 100
check "lifetime 2.5: expiry about now + 2.5 s" "$PY" -c '
import json,sys,time
from datetime import datetime
t=datetime.strptime(json.load(open(sys.argv[1]))["expiration_time"],"%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
sys.exit(not abs(t-(time.time()+2.5))<1)' "$T/body"
sleep 1.2
code=$("${CURL[@]}" -d "$(dbbody)" -H "Authorization: Bearer $AT2" "$BASE/api/2.0/database/credentials")
check "expired access token -> 401" is "$code" 401
kill -TERM "$MPID"; wait "$MPID"

# ---- optional: --pg-dsn against a throwaway PostgreSQL ---------------------------------
if [ "${MOCK_SELFTEST_PG:-0}" = 1 ]; then
    PGPORT=$(bash "$HERE/free_port.sh")
    bash "$HERE/pg_tmp.sh" start "$T/pg" "$PGPORT" || { echo "PostgreSQL did not start"; exit 1; }
    bash "$HERE/pg_tmp.sh" psql "$T/pg" -c "CREATE ROLE lp_tok LOGIN"
    S3=$T/state3
    start_mock "$S3" --lifetime 4 --pg-dsn "host=$T/pg/sock port=$PGPORT user=postgres dbname=postgres" \
        --pg-role lp_tok
    BASE=https://127.0.0.1:$PORT
    "${CURL[@]}" -u lp-client:lp-secret -d grant_type=client_credentials -d scope=all-apis \
        "$BASE/oidc/v1/token" >/dev/null
    AT3=$(jget "$T/body" 'j["access_token"]')
    login() { PGPASSWORD=$1 psql -X -q -w -h 127.0.0.1 -p "$PGPORT" -U lp_tok -d postgres -Atc 'select 1' >/dev/null 2>&1; }
    code=$("${CURL[@]}" -d "$(dbbody)" -H "Authorization: Bearer $AT3" "$BASE/api/2.0/database/credentials")
    P1=$(jget "$T/body" 'j["token"]')
    check "pg: first token issued" is "$code" 200
    check "pg: first token logs in" login "$P1"
    check "pg: rolvaliduntil set" is "$(bash "$HERE/pg_tmp.sh" psql "$T/pg" -Atc \
        "select rolvaliduntil > now() and rolvaliduntil < now() + interval '10 s' from pg_roles where rolname='lp_tok'")" t
    code=$("${CURL[@]}" -d "{\"endpoint\":\"$EP\"}" -H "Authorization: Bearer $AT3" "$BASE/api/2.0/postgres/credentials")
    P2=$(jget "$T/body" 'j["token"]')
    check "pg: second token issued" is "$code" 200
    check "pg: second token logs in" login "$P2"
    check "pg: first token no longer logs in" not login "$P1"
    echo 500 > "$S3/mode"
    "${CURL[@]}" -d "$(dbbody)" -H "Authorization: Bearer $AT3" "$BASE/api/2.0/database/credentials" >/dev/null
    rm -f "$S3/mode"
    check "pg: a failure mode leaves the password alone" login "$P2"
    sleep 4.5
    check "pg: token no longer logs in after expiry" not login "$P2"
    check "pg: ALTER ROLE logged" grep -q "ALTER ROLE lp_tok: password set" "$S3/mock.log"
    check "pg: mock.log has no token" absent "$S3/mock.log" "${P1:50:40}" "${P2:50:40}"
    kill -TERM "$MPID"; wait "$MPID"
fi

echo "mock_workspace selftest: $passed passed, $failed failed"
[ "$failed" = 0 ]
