#!/usr/bin/python3
"""mock_workspace.py: a test-only mock of the Databricks workspace HTTPS endpoints.

This file owns the fake workspace that lakeproxy's credential tests talk to:
  POST /oidc/v1/token                   OAuth M2M client-credentials (HTTP Basic client auth)
  POST /api/2.0/database/credentials    Lakebase provisioned database tokens
  POST /api/2.0/postgres/credentials    Lakebase autoscaling database tokens
  GET  /api/2.0/preview/scim/v2/Me      who a bearer token is (from DIR/users.json)
and the state directory DIR through which tests steer and observe it:
  DIR/ready       written (atomically) once the server listens; removed on a clean exit
  DIR/mode        read on every request: ok | 500 | 401 | badjson | missing | huge |
                  timeout | slow:N  (missing file = ok)
  DIR/users.json  read on every /Me request: {token: {"userName", "groups", "expires"?}}
  DIR/calls.json  rewritten (atomically) before each answer: per-endpoint and failure counts
  DIR/tokens.log  one line per issued database token: issued expiry sha256-prefix

With --pg-dsn/--pg-role, each issued database token becomes the role's PostgreSQL password
(ALTER ROLE ... PASSWORD ... VALID UNTIL ...) before the answer is sent.

Standard library only, plus psycopg 3 when --pg-dsn is given. Never logs tokens or secrets.
Usage: /usr/bin/python3 mock_workspace.py --port P --cert CERT --key KEY --state DIR [options]
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import ssl
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_REQUEST_BODY = 1 << 20
HUGE_BODY_SIZE = 20 * 1024 * 1024
TIMEOUT_HOLD_SECONDS = 60.0
POLL_STEP = 0.1
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
ENDPOINT_RE = re.compile(r"^projects/[^/]+/branches/[^/]+/endpoints/[^/]+$")
JWT_HEADER = base64.urlsafe_b64encode(b'{"alg":"RS256","kid":"mock","typ":"JWT"}').rstrip(b"=").decode()

# (method, path) -> endpoint kind; the kind names the counter and the handler method.
ROUTES = {
    ("POST", "/oidc/v1/token"): "oidc",
    ("POST", "/api/2.0/database/credentials"): "database_credentials",
    ("POST", "/api/2.0/postgres/credentials"): "postgres_credentials",
    ("GET", "/api/2.0/preview/scim/v2/Me"): "me",
}
FAILURE_MODES = ("500", "401", "badjson", "missing", "huge", "timeout")


def log(msg):
    sys.stderr.write("mock_workspace: %s\n" % msg)
    sys.stderr.flush()


def rfc3339(unix_time):
    dt = datetime.fromtimestamp(unix_time, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def random_urlsafe(n):
    return secrets.token_urlsafe(n)[:n] if n > 0 else ""


def make_db_token(size):
    """A JWT-looking token of exactly size characters from [A-Za-z0-9_-.], starting "eyJ"."""
    rest = size - len(JWT_HEADER) - 2
    if rest < 8:
        return ("eyJ" + random_urlsafe(size))[:size]
    sig_len = min(342, rest // 3)
    return JWT_HEADER + "." + random_urlsafe(rest - sig_len) + "." + random_urlsafe(sig_len)


def fingerprint(token):
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def atomic_write(path, text):
    tmp = "%s.%d.%d.tmp" % (path, os.getpid(), threading.get_ident())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def parse_mode(text):
    """(name, delay) for the text of DIR/mode; name "invalid" for anything unknown."""
    if text in ("", "ok"):
        return "ok", 0.0
    if text in FAILURE_MODES:
        return text, 0.0
    if text.startswith("slow:"):
        try:
            delay = float(text[5:])
        except ValueError:
            return "invalid", 0.0
        return ("slow", delay) if delay >= 0 else ("invalid", 0.0)
    return "invalid", 0.0


class StateDir:
    """The files in DIR that tests use to steer and observe the mock."""

    def __init__(self, path):
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.lock = threading.Lock()
        self.counts = dict.fromkeys(("oidc", "database_credentials", "postgres_credentials", "me", "failed"), 0)

    def file(self, name):
        return os.path.join(self.path, name)

    def read_mode(self):
        try:
            with open(self.file("mode")) as f:
                return f.read().strip()
        except FileNotFoundError:
            return "ok"

    def read_users(self):
        try:
            with open(self.file("users.json")) as f:
                users = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log("users.json unreadable (%s); treating as empty" % type(e).__name__)
            return {}
        return users if isinstance(users, dict) else {}

    def record_call(self, kind, failed):
        with self.lock:
            if kind is not None:
                self.counts[kind] += 1
            if failed:
                self.counts["failed"] += 1
            atomic_write(self.file("calls.json"), json.dumps(self.counts) + "\n")

    def log_token(self, issued, expiry, token):
        with open(self.file("tokens.log"), "a") as f:
            f.write("%.3f %.3f %s\n" % (issued, expiry, fingerprint(token)))

    def write_ready(self, port):
        atomic_write(self.file("ready"), json.dumps({"port": port, "pid": os.getpid()}) + "\n")

    def remove_ready(self):
        try:
            os.unlink(self.file("ready"))
        except FileNotFoundError:
            pass


class RolePassword:
    """Makes each new database token the PostgreSQL password of one role (--pg-dsn/--pg-role)."""

    def __init__(self, dsn, role):
        import psycopg  # only needed on this path
        from psycopg import sql

        self.psycopg, self.sql, self.dsn, self.role = psycopg, sql, dsn, role

    def set(self, token, expiry):
        sql = self.sql
        stmt = sql.SQL("ALTER ROLE {} PASSWORD {} VALID UNTIL {}").format(
            sql.Identifier(self.role), sql.Literal(token), sql.Literal(rfc3339(expiry)))
        with self.psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(stmt)


class Issuer:
    """Issues and remembers OAuth access tokens; issues database tokens."""

    def __init__(self, args, state):
        self.args, self.state = args, state
        self.lock = threading.Lock()
        self.access_tokens = {}  # token -> expiry (unix time)
        self.role = RolePassword(args.pg_dsn, args.pg_role) if args.pg_dsn else None

    def issue_access_token(self):
        token = secrets.token_urlsafe(64)
        now = time.time()
        with self.lock:
            self.access_tokens = {t: e for t, e in self.access_tokens.items() if e > now}
            self.access_tokens[token] = now + self.args.oauth_lifetime
        return token

    def access_token_valid(self, token):
        with self.lock:
            expiry = self.access_tokens.get(token)
        return expiry is not None and expiry > time.time()

    def issue_db_token(self):
        """(token, expiry); raises if the role password cannot be set."""
        with self.lock:  # serialised so the newest token is the role's password
            token = make_db_token(self.args.token_size)
            issued = time.time()
            expiry = issued + self.args.lifetime
            if self.role is not None:
                self.role.set(token, expiry)
                log("ALTER ROLE %s: password set, valid until %s" % (self.args.pg_role, rfc3339(expiry)))
            self.state.log_token(issued, expiry, token)
        return token, expiry


def unauthenticated(kind, why):
    if kind == "oidc":
        return 401, {"error": "invalid_client", "error_description": why}
    return 401, {"error_code": "UNAUTHENTICATED", "message": why}


def invalid(kind, why):
    if kind == "oidc":
        return 400, {"error": "invalid_request", "error_description": why}
    return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": why}


def missing_token_payload(kind):
    soon = rfc3339(time.time() + 3600)
    return {
        "oidc": {"token_type": "Bearer", "expires_in": 3600},
        "database_credentials": {"expiration_time": soon},
        "postgres_credentials": {"expire_time": soon},
        "me": {"id": "mock-user", "active": True},
    }[kind]


def huge_body():
    head = b'{"token": "'
    tail = b'", "expiration_time": "2099-01-01T00:00:00.000Z"}'
    return head + b"A" * (HUGE_BODY_SIZE - len(head) - len(tail)) + tail


def stable_id(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock_workspace/1"
    timeout = 30

    # ---- plumbing ----------------------------------------------------------------------

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def log_request(self, code="-", size="-"):
        log("%s %s %s" % (self.command, self.route_path(), code))

    def log_message(self, fmt, *args):
        log(fmt % args)

    def route_path(self):
        return urllib.parse.urlsplit(self.path).path[:200]

    def read_body(self):
        """The request body as bytes, or None when it is too large or unreadable."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length < 0 or length > MAX_REQUEST_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def send_body(self, status, body, content_type="application/json"):
        self.close_connection = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError as e:  # the client went away mid-answer
            log("%s %s: client closed early (%s)" % (self.command, self.route_path(), type(e).__name__))

    def answer(self, kind, status, payload, failure_mode=False):
        self.server.state.record_call(kind, failure_mode or status >= 400)
        self.send_body(status, json.dumps(payload).encode())

    def wait(self, seconds, until_mode_changes_from=None):
        """Sleeps in small steps; stops early on shutdown or when DIR/mode changes."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.server.stopping.is_set():
            if until_mode_changes_from and self.server.state.read_mode() != until_mode_changes_from:
                return
            time.sleep(min(POLL_STEP, max(0.0, deadline - time.monotonic())))

    # ---- dispatch ----------------------------------------------------------------------

    def dispatch(self, method):
        kind = ROUTES.get((method, self.route_path()))
        body = self.read_body()
        if kind is None:
            return self.answer(None, 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "no such endpoint"})
        if body is None:
            return self.answer(kind, 413, {"error_code": "INVALID_PARAMETER_VALUE", "message": "bad request body size"})
        mode_text = self.server.state.read_mode()
        mode, delay = parse_mode(mode_text)
        if mode == "slow":
            self.wait(delay)
        elif mode != "ok":
            return self.fail(kind, mode, mode_text)
        status, payload = getattr(self, "handle_" + kind)(body)
        self.answer(kind, status, payload)

    def fail(self, kind, mode, mode_text):
        if mode == "timeout":
            return self.hold(kind, mode_text)
        if mode == "huge":
            self.server.state.record_call(kind, True)
            return self.send_body(200, huge_body())
        if mode == "badjson":
            self.server.state.record_call(kind, True)
            return self.send_body(200, b'{"token": "abc')
        if mode == "missing":
            return self.answer(kind, 200, missing_token_payload(kind), failure_mode=True)
        if mode == "401":
            return self.answer(kind, *unauthenticated(kind, "mock: mode 401"))
        if mode == "invalid":
            log("unknown mode in DIR/mode; answering 500")
        self.answer(kind, 500, {"error_code": "INTERNAL_ERROR", "message": "mock failure"})

    def hold(self, kind, mode_text):
        """Mode timeout: never answer; keep the connection until the mode changes or 60 s."""
        self.server.state.record_call(kind, True)
        started = time.monotonic()
        self.wait(TIMEOUT_HOLD_SECONDS, until_mode_changes_from=mode_text)
        self.close_connection = True
        log("%s %s - (mode timeout: closed without answering after %.1f s)"
            % (self.command, self.route_path(), time.monotonic() - started))

    # ---- credentials -------------------------------------------------------------------

    def basic_auth_ok(self):
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:].strip(), validate=True)
        except ValueError:
            return False
        args = self.server.args
        expected = ("%s:%s" % (args.client_id, args.client_secret)).encode()
        return hmac.compare_digest(given, expected)

    def bearer(self):
        header = self.headers.get("Authorization", "")
        return header[7:].strip() if header.startswith("Bearer ") else ""

    def json_body(self, body):
        try:
            value = json.loads(body or b"null")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    # ---- endpoints: each returns (status, payload) ----------------------------------------

    def handle_oidc(self, body):
        if not self.basic_auth_ok():
            return unauthenticated("oidc", "Client authentication failed")
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return invalid("oidc", "Content-Type must be application/x-www-form-urlencoded")
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if form.get("grant_type") != ["client_credentials"]:
            return invalid("oidc", "grant_type must be client_credentials")
        if form.get("scope") != ["all-apis"]:
            return invalid("oidc", "scope must be all-apis")
        token = self.server.issuer.issue_access_token()
        expires_in = max(1, int(self.server.args.oauth_lifetime))
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}

    def handle_database_credentials(self, body):
        if not self.server.issuer.access_token_valid(self.bearer()):
            return unauthenticated("database_credentials", "Invalid access token")
        req = self.json_body(body)
        if req is None:
            return invalid("database_credentials", "body must be a JSON object")
        if not isinstance(req.get("request_id"), str) or not UUID_RE.match(req["request_id"]):
            return invalid("database_credentials", "request_id must be a UUID")
        names = req.get("instance_names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            return invalid("database_credentials", "instance_names must be a non-empty list of strings")
        return self.issue("expiration_time")

    def handle_postgres_credentials(self, body):
        if not self.server.issuer.access_token_valid(self.bearer()):
            return unauthenticated("postgres_credentials", "Invalid access token")
        req = self.json_body(body)
        if req is None:
            return invalid("postgres_credentials", "body must be a JSON object")
        if not isinstance(req.get("endpoint"), str) or not ENDPOINT_RE.match(req["endpoint"]):
            return invalid("postgres_credentials", "endpoint must be projects/P/branches/B/endpoints/E")
        # the real API takes ttl as a protobuf Duration in JSON: a string such as "900s"
        ttl = req.get("ttl")
        if ttl is not None and not (isinstance(ttl, str) and re.fullmatch(r"[0-9]+s", ttl)
                                    and 300 <= int(ttl[:-1]) <= 3600):
            return invalid("postgres_credentials", "ttl must be a duration from \"300s\" to \"3600s\"")
        return self.issue("expire_time")

    def issue(self, expiry_key):
        try:
            token, expiry = self.server.issuer.issue_db_token()
        except Exception as e:  # ALTER ROLE failed: report without the statement (it holds the token)
            sqlstate = getattr(getattr(e, "diag", None), "sqlstate", None)
            log("ALTER ROLE failed: %s (SQLSTATE %s)" % (type(e).__name__, sqlstate or "none"))
            return 500, {"error_code": "INTERNAL_ERROR", "message": "mock could not set the role password"}
        return 200, {"token": token, expiry_key: rfc3339(expiry)}

    def handle_me(self, body):
        user = self.server.state.read_users().get(self.bearer())
        if not isinstance(user, dict):
            return unauthenticated("me", "Invalid access token")
        expires = user.get("expires")
        if isinstance(expires, (int, float)) and expires <= time.time():
            return unauthenticated("me", "Access token expired")
        name = str(user.get("userName", ""))
        groups = [{"display": g, "value": stable_id("group:" + g)}
                  for g in user.get("groups", []) if isinstance(g, str)]
        return 200, {"id": stable_id("user:" + name), "userName": name, "active": True, "groups": groups}


class MockServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that does the TLS handshake in each connection's own thread."""

    daemon_threads = True

    def __init__(self, args, state, issuer, ssl_context):
        self.args, self.state, self.issuer, self.ssl_context = args, state, issuer, ssl_context
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", args.port), Handler)

    def finish_request(self, request, client_address):
        request.settimeout(Handler.timeout)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log("TLS handshake failed: %s" % type(e).__name__)
            return
        try:
            Handler(tls, client_address, self)
        finally:
            tls.close()

    def handle_error(self, request, client_address):
        log("connection error: %s" % type(sys.exc_info()[1]).__name__)


def make_ssl_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def parse_args(argv):
    p = argparse.ArgumentParser(description="Test-only mock of the Databricks workspace endpoints.")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--state", required=True, help="state directory (ready, mode, users.json, calls.json, tokens.log)")
    p.add_argument("--lifetime", type=positive_float, default=3600.0, help="database token lifetime, seconds")
    p.add_argument("--oauth-lifetime", type=positive_float, default=3600.0, help="OAuth access token lifetime, seconds")
    p.add_argument("--token-size", type=int, default=4096, help="database token length, characters")
    p.add_argument("--client-id", default="lp-client")
    p.add_argument("--client-secret", default="lp-secret")
    p.add_argument("--pg-dsn", help="when given, ALTER ROLE --pg-role PASSWORD <token> on each issue")
    p.add_argument("--pg-role")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        p.error("--port must be 1..65535")
    if args.token_size < 16:
        p.error("--token-size must be at least 16")
    if bool(args.pg_dsn) != bool(args.pg_role):
        p.error("--pg-dsn and --pg-role go together")
    return args


def main(argv):
    args = parse_args(argv)
    state = StateDir(args.state)
    state.remove_ready()
    server = MockServer(args, state, Issuer(args, state), make_ssl_context(args.cert, args.key))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    port = server.server_address[1]  # the one the system chose when --port 0
    state.write_ready(port)
    log("listening on https://127.0.0.1:%d (pid %d)" % (port, os.getpid()))
    while not stop.wait(0.5):
        pass
    server.stopping.set()
    server.shutdown()
    server.server_close()
    state.remove_ready()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
