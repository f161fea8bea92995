/* test_redteam24.c: red-team round 24 against TLS AND CLIENT AUTHENTICATION UNDER RELOAD, and
 * startup negotiation: a SIGHUP that changes a user's password or removes the user while that
 * user is mid-SCRAM (the client-final computed for the old password sent after the reload),
 * idle in a session, or authenticated and queued for a server; a reload that makes TLS
 * required with plaintext clients connected and logging in, or certificates required, or a
 * client certificate revoked (client_crl) while handshakes are pending; reloads to a missing
 * certificate or a key that does not match, which must be refused whole (the old certificate
 * and the old TLS policy kept); direct TLS (a ClientHello with ALPN "postgresql" as the first
 * bytes, as PostgreSQL 17's sslnegotiation=direct sends); GSSENCRequest then SSLRequest; odd
 * protocol versions and malformed startup packets; clients stalled before, inside and after the TLS
 * handshake and mid-SCRAM (limits.login_timeout_s must close them, others unaffected); and
 * whether any of it (refused reload files included) puts a password, verifier or proof into
 * the log. Each test asserts the SAFE behaviour (no login without valid credentials under the
 * CURRENT configuration, no plaintext session where TLS is required, no secret in the log, no
 * crash or hang): a failing test is a finding.
 *
 * Findings:
 * - a_handshake_held_open_across_a_crl_reload_cannot_use_the_revoked_certificate (high): a
 *   client that sent its SSLRequest (and got 'S') before a reload adding listen.tls.client_crl
 *   completes the handshake afterwards with the revoked certificate and logs in (carol, trust:
 *   ReadyForQuery; the log says "login carol@app TLS"); alice's gets its SCRAM request, so the
 *   client_cert: require gate passed. A fresh handshake after the reload is refused, as the
 *   README promises. client.c handle_ssl_request binds the SSL to w->client_tls at the
 *   SSLRequest; worker.c worker_reload swaps w->client_tls but the SSL keeps the old SSL_CTX
 *   (old verify store, no CRL), and nothing compares generations: start_auth takes
 *   auth_cfg_gen only at the StartupMessage, after the handshake, so reloaded_during_login
 *   never sees it. Holding connections at 'S' (up to limits.login_timeout_s, 60 s by default,
 *   renewed continuously) defeats revocation, and a CA rotation (client_ca) the same way.
 * - a_reload_requiring_tls_leaves_no_plaintext_session (medium): after a reload to
 *   listen.tls.client_tls: require, a plaintext session opened before goes on serving queries
 *   (README: "Clients the new file would not let in are closed with 57P01"; the new file lets
 *   no TCP client in without TLS). worker.c refused_by_reload checks entry, login path,
 *   admin, rls, allow:, masking and pool mode, but neither c->tls nor the TLS policy.
 * - a_reload_requiring_client_certificates_leaves_no_session_without_one (medium, same
 *   cause): after a reload to client_cert: require, a TLS session without a certificate goes
 *   on (refused_by_reload never looks at c->cert_verified).
 * - logins_stalled_at_any_step_are_closed_by_the_login_timeout (low): with login_timeout_s 1,
 *   a client that stalls after 'S' (no ClientHello) or mid-handshake is closed after 6.0 s, not
 *   about 1 s (silent, half-startup and mid-SCRAM stalls: about 1 s). login_timeout_cb ->
 *   client_fail queues a FATAL into the TLS filter whose handshake never finished, and
 *   conn.c conn_close_after_flush waits FLUSH_TIMEOUT_S (5 s) for it to flush; the socket and
 *   its SSL outlive the timeout by 5 s each (n_clients is released at once).
 *
 * Held: a client-final computed for the old password (alice, password:) or for a user the
 * reload removed (bob, password_scram:) fails (08006), and so does one begun before a reload
 * that changed nothing of its user; after the reload the old password opens nothing (app,
 * app_md5, app_plain, the console; plaintext and TLS; a fresh SCRAM exchange 28P01), the new
 * one does, and an idle session outlives the change (README); a user removed while
 * authenticated and queued for a server is told 57P01 and never served when the server frees
 * up; a plaintext login mid-SCRAM when TLS becomes required fails; reloads naming a missing
 * certificate or a key that is not the certificate's are refused whole (the old certificate
 * serves, TLS stays optional) and logged; a new handshake with a certificate revoked by a
 * reload is refused; a TLS ClientHello with ALPN "postgresql" as the first bytes (direct TLS)
 * is answered at once and never logs in, with TLS optional or required; GSSENCRequest 'N' then
 * SSLRequest 'S' logs in over TLS, GSSENCRequest then a plaintext startup is refused 28000
 * under client_tls: require; protocol 3.99 and 3.65535 are negotiated down then SCRAM, 2.0,
 * 4.0 and malformed startup packets get an error at once; silent, half-startup and mid-SCRAM
 * stalls are closed within about 1 s while a normal login goes through; refused reload files
 * carrying a password in odd places (under password_scram, in a broken verifier, an
 * unterminated quote, a flow sequence) never quote it in the log; the log never held a
 * password, bob's verifier keys or a client proof. */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "buf.h"
#include "harness.h"
#include "proto.h"
#include "rawproto.h"

static struct proxy px;
static char yaml[16384];

#define ADMIN "admin:\n  users: [carol]\n"
#define BOB_STORED "3uknSB7++pvC7T1B4UG79zfjZD45qLZojqNZGgCT1+E="
#define BOB_SERVER "PAKRpsZo74bh6Y2UXxqig2ueBAwZ9VeAONmAlD7d52o="

static void start_mode(const char *mode, int size, int max_wait_ms, const char *extra)
{
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, mode, size, max_wait_ms, extra);
    proxy_start_yaml(&px, port, yaml);
}
static void start_session2(void)
{
    start_mode("session", 2, 5000, ADMIN);
}
static void start_session1(void)
{
    start_mode("session", 1, 8000, ADMIN);
}
static void start_short_login(void)
{
    start_mode("session", 2, 5000, ADMIN "limits:\n  login_timeout_s: 1\n");
}
static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(redteam24, .init = start_session2, .fini = stop_proxy, .timeout = 60);

/* ---- helpers ---- */

static bool proxy_alive(void)
{
    return px.pid > 0 && kill(px.pid, 0) == 0;
}

/* s with every occurrence of what replaced by with (into out). */
static void replaced(char *out, size_t outsz, const char *s, const char *what, const char *with)
{
    size_t o = 0, wl = strlen(what);
    while (*s && o + strlen(with) + 1 < outsz) {
        if (strncmp(s, what, wl) == 0) {
            o += (size_t)snprintf(out + o, outsz - o, "%s", with);
            s += wl;
        } else {
            out[o++] = *s++;
        }
    }
    out[o] = '\0';
}

/* s without the text from the line starting with from up to (not including) until. */
static void cut(char *out, size_t outsz, const char *s, const char *from, const char *until)
{
    const char *a = strstr(s, from);
    cr_assert(a, "no %s in the configuration", from);
    const char *b = strstr(a + strlen(from), until);
    cr_assert(b, "no %s after %s", until, from);
    snprintf(out, outsz, "%.*s%s", (int)(a - s), s, b);
}

/* yaml with listen.tls.client_tls: require. */
static void tls_required(char *out, size_t outsz, const char *s)
{
    replaced(out, outsz, s, "server.key\n", "server.key\n    client_tls: require\n");
}

/* Reads messages until an authentication request (its code + 100, data into data; 100 is
 * AuthenticationOk), an ErrorResponse (0, its SQLSTATE into state), ReadyForQuery ('Z') or
 * EOF / timeout (-1). */
static int next_step(int fd, unsigned char *data, size_t datasz, size_t *dlen, char state[6],
                     int timeout_ms)
{
    unsigned char body[8192];
    size_t len;
    if (state)
        state[0] = '\0';
    for (;;) {
        int t = raw_read_msg(fd, body, sizeof(body), &len, timeout_ms);
        if (t == 'R' && len >= 4) {
            uint32_t code = (uint32_t)body[0] << 24 | (uint32_t)body[1] << 16 |
                            (uint32_t)body[2] << 8 | body[3];
            if (data && dlen) {
                *dlen = len - 4 < datasz ? len - 4 : datasz;
                memcpy(data, body + 4, *dlen);
            }
            return 100 + (int)code;
        }
        if (t == 'E') {
            if (state)
                snprintf(state, 6, "%s", raw_error_sqlstate(body, len));
            return 0;
        }
        if (t == 'Z')
            return 'Z';
        if (t < 0)
            return -1;
    }
}

/* A SCRAM exchange as user to db up to the client-final made with password (not sent): the
 * socket, the final in *final. fd may be one already past its startup (-1: a new one). */
static int scram_upto_final(int fd, const char *user, const char *password, const char *db,
                            char **final)
{
    if (fd < 0) {
        fd = raw_connect(px.port);
        cr_assert(fd >= 0);
    }
    raw_send_startup(fd, user, db);
    cr_assert_eq(next_step(fd, NULL, 0, NULL, NULL, 5000), 100 + AUTH_REQ_SASL,
                 "no SASL request for %s", user);
    struct scram_client sc = {0};
    char *first = NULL;
    cr_assert(scram_client_first(&sc, "", password, NULL, &first));
    struct buf b;
    buf_init(&b);
    proto_sasl_initial(&b, "SCRAM-SHA-256", first, strlen(first));
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    free(first);
    unsigned char data[2048];
    size_t dlen = 0;
    cr_assert_eq(next_step(fd, data, sizeof(data) - 1, &dlen, NULL, 5000),
                 100 + AUTH_REQ_SASL_CONTINUE);
    const char *err = NULL;
    cr_assert(scram_client_final(&sc, (const char *)data, dlen, final, &err), "%s", err);
    scram_client_free(&sc);
    return fd;
}

/* After the client-final: did the login get AuthenticationOk (true)? state gets the SQLSTATE
 * of the error when one came. */
static bool final_logs_in(int fd, const char *final, char state[6])
{
    raw_send_sasl_response(fd, final);
    int a;
    while ((a = next_step(fd, NULL, 0, NULL, state, 5000)) == 100 + AUTH_REQ_SASL_FINAL)
        ;
    return a == 100 + AUTH_REQ_OK;
}

static bool login_ok(const char *user, const char *password, const char *db, const char *extra)
{
    PGconn *c = proxy_connect(&px, user, password, db, extra);
    bool ok = PQstatus(c) == CONNECTION_OK;
    PQfinish(c);
    return ok;
}

/* The log holds none of the test's secrets: passwords, bob's verifier keys, what the
 * refused reloads carried, nor a SCRAM proof given (proof, may be NULL). */
static void expect_log_clean(const char *proof)
{
    static const char *const secrets[] = {
        "alice-secret",  "bob-secret",   "server-secret", "md5-secret", "plain-secret",
        "alice-rotated", "Rt24-Leak-Me", BOB_STORED,      BOB_SERVER,
    };
    for (size_t i = 0; i < sizeof(secrets) / sizeof(*secrets); i++)
        cr_expect_eq(file_count_lines(px.log, secrets[i]), 0, "the log (%s) holds \"%s\"", px.log,
                     secrets[i]);
    if (proof)
        cr_expect_eq(file_count_lines(px.log, proof), 0, "the log holds a client proof");
}

/* ---- 1. authentication across reloads ---- */

/* alice (password:) and bob (password_scram:) are mid-SCRAM, their client-first answered,
 * when a reload changes alice's password and removes bob. The client-finals made for the
 * old credentials must not log in: the proof was checked against what the configuration no
 * longer holds. New logins with the old passwords fail; alice's new one works. */
Test(redteam24, a_reload_mid_scram_refuses_proofs_for_the_old_credentials)
{
    char *fa = NULL, *fb = NULL, *fc = NULL, state[6];
    int a = scram_upto_final(-1, "alice", "alice-secret", "app", &fa);
    int b = scram_upto_final(-1, "bob", "bob-secret", "app", &fb);
    /* alice's old password to another database: refused as well */
    int c = scram_upto_final(-1, "alice", "alice-secret", "app_md5", &fc);
    char step1[16384], next[16384];
    replaced(step1, sizeof(step1), yaml, "alice-secret", "alice-rotated");
    cut(next, sizeof(next), step1, "  bob:\n", "  carol:\n");
    proxy_reload_yaml(&px, next);

    cr_expect_not(final_logs_in(a, fa, state), "alice's proof for the old password logged in");
    cr_expect(strcmp(state, "08006") == 0 || strcmp(state, "28P01") == 0,
              "alice: expected 08006 or 28P01, got \"%s\"", state);
    cr_expect_not(final_logs_in(b, fb, state), "removed bob's proof logged in");
    cr_expect(strcmp(state, "08006") == 0 || strcmp(state, "28P01") == 0,
              "bob: expected 08006 or 28P01, got \"%s\"", state);
    cr_expect_not(final_logs_in(c, fc, state), "a login begun before the reload logged in");
    close(a);
    close(b);
    close(c);

    cr_expect_not(login_ok("alice", "alice-secret", "app", NULL),
                  "the old password logs in after the reload");
    cr_expect_not(login_ok("bob", "bob-secret", "app", NULL), "removed bob logs in");
    cr_expect(login_ok("alice", "alice-rotated", "app", NULL), "the new password fails");
    cr_expect(proxy_alive());
    expect_log_clean(NULL);
    free(fa);
    free(fb);
    free(fc);
}

/* A reload that leaves a user's login alone (another user's password rotated, a pool resized)
 * does not fail the login that user has under way: bob's exchange, begun before, finishes and
 * his session serves, while alice's, whose password the same reload changed, is refused. */
Test(redteam24, a_reload_that_leaves_the_user_alone_lets_the_login_under_way_finish)
{
    char *fa = NULL, *fb = NULL, state[6] = "";
    int a = scram_upto_final(-1, "alice", "alice-secret", "app", &fa);
    int b = scram_upto_final(-1, "bob", "bob-secret", "app", &fb);
    char step1[16384], next[16384];
    replaced(step1, sizeof(step1), yaml, "alice-secret", "alice-rotated");
    replaced(next, sizeof(next), step1, "size: 2", "size: 3");
    cr_assert(strcmp(next, step1) != 0, "the pool size is in the file");
    proxy_reload_yaml(&px, next);

    cr_expect(final_logs_in(b, fb, state),
              "bob's login failed across a reload that left him "
              "alone: %s",
              state);
    raw_query(b, "SELECT 41 + 1");
    int errors = 0, rows = 0;
    cr_expect_eq(raw_count_replies(b, 1, &errors, &rows), 1, "bob's session serves");
    cr_expect_eq(errors, 0);
    cr_expect_not(final_logs_in(a, fa, state), "alice's proof for the old password logged in");
    cr_expect_str_eq(state, "08006", "alice: expected 08006 (connect again)");
    close(a);
    close(b);
    expect_log_clean(NULL);
    free(fa);
    free(fb);
}

/* README: "A changed password alone ends no session, as in PostgreSQL"; but from the reload
 * on, the old password opens nothing, over plaintext or TLS, to any database or the console;
 * and a proof computed for the old password after the reload (a new exchange) fails too. */
Test(redteam24, an_idle_session_outlives_a_password_change_but_the_old_password_opens_nothing)
{
    PGconn *idle = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(idle) == CONNECTION_OK, "%s", PQerrorMessage(idle));
    char next[16384];
    replaced(next, sizeof(next), yaml, "alice-secret", "alice-rotated");
    proxy_reload_yaml(&px, next);
    EXPECT_QUERY_VALUE(idle, "SELECT 'kept'", "kept", "the idle session was dropped");
    static const char *const dbs[] = {"app", "app_md5", "app_plain", "lakeproxy"};
    for (size_t i = 0; i < 4; i++) {
        cr_expect_not(login_ok("alice", "alice-secret", dbs[i], "sslmode=disable"),
                      "old password logs into %s in plaintext", dbs[i]);
        cr_expect_not(login_ok("alice", "alice-secret", dbs[i], "sslmode=require"),
                      "old password logs into %s over TLS", dbs[i]);
    }
    char *f = NULL, state[6];
    int fd = scram_upto_final(-1, "alice", "alice-secret", "app", &f);
    cr_expect_not(final_logs_in(fd, f, state), "a fresh exchange with the old password");
    cr_expect_str_eq(state, "28P01");
    close(fd);
    cr_expect(login_ok("alice", "alice-rotated", "app", "sslmode=require"));
    PQfinish(idle);
    expect_log_clean(f);
    free(f);
}

/* A client authenticated and queued for a server (session pool of 1, held by carol) when a
 * reload removes its user: README, "Clients the new file would not let in are closed with
 * 57P01". It must never get ReadyForQuery, not even once carol's server frees up. */
Test(redteam24, a_removed_user_queued_for_a_server_is_never_served, .init = start_session1)
{
    PGconn *holder = proxy_connect(&px, "carol", "x", "app", NULL);
    cr_assert(PQstatus(holder) == CONNECTION_OK, "%s", PQerrorMessage(holder));
    char *f = NULL, state[6];
    int fd = scram_upto_final(-1, "bob", "bob-secret", "app", &f);
    cr_assert(final_logs_in(fd, f, state), "bob's honest login failed (%s)", state);
    /* queued: no ReadyForQuery while carol holds the only server */
    cr_assert_eq(next_step(fd, NULL, 0, NULL, state, 300), -1, "bob was not queued");
    char next[16384];
    cut(next, sizeof(next), yaml, "  bob:\n", "  carol:\n");
    proxy_reload_yaml(&px, next);
    PQfinish(holder); /* the server is free now */
    int r = next_step(fd, NULL, 0, NULL, state, 3000);
    cr_expect_neq(r, 'Z', "removed bob was served by the freed server");
    cr_expect_eq(r, 0, "removed bob was not told why (%d)", r);
    cr_expect_str_eq(state, "57P01");
    close(fd);
    cr_expect(proxy_alive());
    free(f);
}

/* ---- 2. TLS policy and certificates across reloads ---- */

/* A reload to client_tls: require while a plaintext client is logged in and another is
 * mid-SCRAM in plaintext. README: "SIGHUP reloads the YAML file without dropping a connection
 * the new file still allows ... Clients the new file would not let in are closed with 57P01":
 * the new file lets no TCP client in without TLS, so the plaintext session must not go on
 * (as the TLS session does); the plaintext login under way must not complete. */
Test(redteam24, a_reload_requiring_tls_leaves_no_plaintext_session)
{
    PGconn *plain = proxy_connect(&px, "carol", "x", "app", "sslmode=disable");
    cr_assert(PQstatus(plain) == CONNECTION_OK, "%s", PQerrorMessage(plain));
    PGconn *tls = proxy_connect(&px, "carol", "x", "app", "sslmode=require");
    cr_assert(PQstatus(tls) == CONNECTION_OK, "%s", PQerrorMessage(tls));
    char *f = NULL, state[6];
    int mid = scram_upto_final(-1, "alice", "alice-secret", "app", &f);
    char next[16384];
    tls_required(next, sizeof(next), yaml);
    proxy_reload_yaml(&px, next);
    cr_expect_not(final_logs_in(mid, f, state),
                  "a plaintext login finished after TLS became required");
    close(mid);
    cr_expect_not(login_ok("carol", "x", "app", "sslmode=disable"), "a new plaintext login");
    EXPECT_QUERY_VALUE(tls, "SELECT 'tls kept'", "tls kept", "the TLS session was dropped");
    expect_session_closed(plain, "TLS is now required (listen.tls.client_tls: require)");
    PQfinish(tls);
    free(f);
}

/* The CN of the certificate lakeproxy presents to a new TLS login ("" when none). */
static void presented_cn(char *out, size_t outsz)
{
    out[0] = '\0';
    PGconn *c = proxy_connect(&px, "carol", "x", "app", "sslmode=require");
    SSL *ssl = PQstatus(c) == CONNECTION_OK ? PQsslStruct(c, "OpenSSL") : NULL;
    X509 *x = ssl ? SSL_get1_peer_certificate(ssl) : NULL;
    if (x)
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)outsz);
    X509_free(x);
    PQfinish(c);
}

/* Reloads that would require TLS and also name a missing certificate, or a key that is not
 * the certificate's, are refused whole: the running certificate still serves, plaintext
 * clients are still let in (the old policy), and the log says the reload was refused. */
Test(redteam24, a_refused_tls_reload_keeps_the_old_certificate_and_policy)
{
    const char *certs = env_need("LP_CERTS");
    char from[400], to[400], req[16384], next[16384], cn[128];
    tls_required(req, sizeof(req), yaml);
    for (int k = 0; k < 2; k++) {
        if (k == 0) {
            snprintf(from, sizeof(from), "%s/server.crt", certs);
            snprintf(to, sizeof(to), "%s/no-such-dir/server.crt", certs);
        } else {
            snprintf(from, sizeof(from), "%s/server.key", certs);
            snprintf(to, sizeof(to), "%s/rogue.key", certs);
        }
        replaced(next, sizeof(next), req, from, to);
        int refused = file_count_lines(px.log, "reload refused");
        proxy_reload_yaml(&px, next);
        cr_expect_gt(file_count_lines(px.log, "reload refused"), refused,
                     "variant %d: the reload was not refused", k);
        presented_cn(cn, sizeof(cn));
        cr_expect_str_eq(cn, "localhost", "variant %d: the running certificate is gone", k);
        cr_expect(login_ok("carol", "x", "app", "sslmode=disable"),
                  "variant %d: half of a refused reload applied (TLS now required)", k);
    }
    cr_expect(proxy_alive());
}

/* yaml with listen.tls.client_ca (the test CA), client_cert: mode, and more listen.tls lines. */
static void with_client_ca(char *out, size_t outsz, const char *s, const char *mode,
                           const char *more)
{
    char lines[1024];
    snprintf(lines, sizeof(lines), "server.key\n    client_ca: %s/ca.crt\n    client_cert: %s\n%s",
             env_need("LP_CERTS"), mode, more);
    replaced(out, outsz, s, "server.key\n", lines);
}

/* Starts lakeproxy (session pooling) with client_ca and client_cert: mode. */
static void start_with_client_cert(const char *mode)
{
    int port = free_port();
    char base[16384];
    proxy_default_yaml(base, sizeof(base), port, "session", 2, 5000, ADMIN);
    with_client_ca(yaml, sizeof(yaml), base, mode, "");
    proxy_start_yaml(&px, port, yaml);
}
static void start_client_ca_optional(void)
{
    start_with_client_cert("optional");
}
static void start_client_cert_required(void)
{
    start_with_client_cert("require");
}

/* The same for client_cert: require: a TLS session without a certificate, made while
 * certificates were optional, must not go on once the new file requires one. */
Test(redteam24, a_reload_requiring_client_certificates_leaves_no_session_without_one,
     .init = start_client_ca_optional)
{
    PGconn *nocert = proxy_connect(&px, "carol", "x", "app",
                                   "sslmode=require sslcert=/nonexistent sslkey=/nonexistent");
    cr_assert(PQstatus(nocert) == CONNECTION_OK, "%s", PQerrorMessage(nocert));
    char next[16384];
    replaced(next, sizeof(next), yaml, "client_cert: optional", "client_cert: require");
    proxy_reload_yaml(&px, next);
    cr_expect_not(
        login_ok("carol", "x", "app", "sslmode=require sslcert=/nonexistent sslkey=/nonexistent"),
        "a new login without a certificate");
    expect_session_closed(nocert, "a client certificate is now required");
}

/* A session whose certificate a reload revokes (listen.tls.client_crl) is closed with 57P01:
 * the new file would not let it in. A session with a certificate the new file still trusts
 * goes on. */
Test(redteam24, a_reload_revoking_a_certificate_closes_the_sessions_that_used_it,
     .init = start_client_cert_required)
{
    const char *certs = env_need("LP_CERTS");
    char revoked[1000], good[1000], next[16384], crl[400];
    snprintf(revoked, sizeof(revoked),
             "sslmode=require sslcert=%s/revoked.crt sslkey=%s/revoked.key", certs, certs);
    snprintf(good, sizeof(good), "sslmode=require sslcert=%s/client.crt sslkey=%s/client.key",
             certs, certs);
    PGconn *was_trusted = proxy_connect(&px, "carol", "x", "app", revoked);
    cr_assert(PQstatus(was_trusted) == CONNECTION_OK, "%s", PQerrorMessage(was_trusted));
    PGconn *trusted = proxy_connect(&px, "carol", "x", "app", good);
    cr_assert(PQstatus(trusted) == CONNECTION_OK, "%s", PQerrorMessage(trusted));
    snprintf(crl, sizeof(crl), "client_cert: require\n    client_crl: %s/ca.crl", certs);
    replaced(next, sizeof(next), yaml, "client_cert: require", crl);
    proxy_reload_yaml(&px, next);
    expect_session_closed(was_trusted, "its client certificate does not verify under the new");
    EXPECT_QUERY_VALUE(trusted, "SELECT 'still trusted'", "still trusted",
                       "the session of a certificate still trusted was closed");
    PQfinish(trusted);
}

/* A certificate withdrawn by a reload (listen.tls.client_crl, README: "refuses the
 * certificates it revokes at the handshake ... read again at each reload") must be refused
 * at every handshake after that reload, including one whose SSLRequest came before it: a
 * holder of a leaked certificate opens connections, sends SSLRequest, gets 'S' and waits; the
 * operator revokes the certificate and reloads; the held connections then complete the
 * handshake with the revoked certificate. None may log in. */
Test(redteam24, a_handshake_held_open_across_a_crl_reload_cannot_use_the_revoked_certificate,
     .init = start_client_cert_required)
{
    const char *certs = env_need("LP_CERTS");
    int fds[2];
    for (int i = 0; i < 2; i++)
        fds[i] = raw_connect_tls_accepted(px.port);
    char next[16384], crl[400], extra[1000];
    snprintf(crl, sizeof(crl), "client_cert: require\n    client_crl: %s/ca.crl", certs);
    replaced(next, sizeof(next), yaml, "client_cert: require", crl);
    proxy_reload_yaml(&px, next);
    snprintf(extra, sizeof(extra), "sslmode=require sslcert=%s/revoked.crt sslkey=%s/revoked.key",
             certs, certs);
    cr_expect_not(login_ok("carol", "x", "app", extra),
                  "a new handshake with the revoked certificate logged in (the reload's CRL)");
    for (int i = 0; i < 2; i++) {
        char crt[400], key[400], state[6] = "";
        snprintf(crt, sizeof(crt), "%s/revoked.crt", certs);
        snprintf(key, sizeof(key), "%s/revoked.key", certs);
        SSL *ssl = raw_ssl_connect(fds[i], crt, key, 4);
        int t = -1;
        if (ssl) {
            raw_ssl_send_startup(ssl, i ? "alice" : "carol", "app");
            while ((t = raw_ssl_read_msg(ssl, state, NULL)) >= 0 && t != 'Z' && t != 'E' &&
                   !(t == 'R' && i == 1))
                ;
        }
        cr_expect(t != 'Z' && !(t == 'R' && i == 1),
                  "connection %d: the revoked certificate passed after the reload (%c)", i,
                  t > 0 ? t : '-');
        if (ssl)
            raw_ssl_close(ssl);
        close(fds[i]);
    }
    cr_expect(proxy_alive());
}

/* ---- 3. startup negotiation ---- */

/* A TLS ClientHello with ALPN "postgresql" as the very first bytes (PostgreSQL 17's
 * sslnegotiation=direct): README promises only the SSLRequest way. Whatever the answer, it
 * comes at once (no hang), never as a login, and with client_tls: require it never leads to a
 * plaintext session. The proxy serves on. */
static void direct_tls_attempt(const char *what)
{
    int fd = raw_connect(px.port);
    cr_assert(fd >= 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    cr_assert(ctx);
    static const unsigned char alpn[] = "\x0apostgresql";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    struct timeval tv = {4, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    double t0 = now_s();
    int ok = SSL_connect(ssl);
    double took = now_s() - t0;
    cr_expect_lt(took, 3.0, "%s: the direct TLS attempt hung %.1f s", what, took);
    if (ok == 1) { /* taken: then it must be a real TLS session asking for a password */
        raw_ssl_send_startup(ssl, "alice", "app");
        unsigned char hdr[9];
        int n = SSL_read(ssl, hdr, sizeof(hdr));
        cr_expect(n < 9 || hdr[0] != 'R' || hdr[8] != 0, "%s: AuthenticationOk without a password",
                  what);
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    ERR_clear_error();
}

Test(redteam24, direct_tls_is_answered_at_once_and_never_logs_in)
{
    direct_tls_attempt("TLS optional");
    cr_expect(proxy_alive());
    char next[16384];
    tls_required(next, sizeof(next), yaml);
    proxy_reload_yaml(&px, next);
    direct_tls_attempt("TLS required");
    cr_expect(proxy_alive());
    cr_expect(login_ok("carol", "x", "app", "sslmode=require"), "the proxy stopped serving");
}

/* GSSENCRequest ('N'), then SSLRequest ('S') and a TLS session as libpq's gssencmode=prefer
 * does: the login proceeds (SCRAM asked for) with TLS required; the same GSSENCRequest then a
 * plaintext startup is refused (28000) before any password is asked for. */
Test(redteam24, gssenc_then_ssl_negotiates_and_gssenc_then_plaintext_is_refused)
{
    char next[16384], state[6];
    tls_required(next, sizeof(next), yaml);
    proxy_reload_yaml(&px, next);
    int fd = raw_connect(px.port);
    cr_assert(fd >= 0);
    raw_send_request(fd, PROTO_GSSENC_REQUEST);
    cr_expect_eq(raw_answer_byte(fd), 'N');
    raw_send_request(fd, PROTO_SSL_REQUEST);
    cr_expect_eq(raw_answer_byte(fd), 'S', "SSLRequest after a refused GSSENCRequest");
    SSL *ssl = raw_ssl_connect(fd, NULL, NULL, 4);
    cr_expect(ssl, "TLS handshake after GSSENC 'N' failed");
    if (ssl) {
        cr_expect(raw_ssl_send_startup(ssl, "alice", "app"));
        int32_t code = -1;
        int t = raw_ssl_read_msg(ssl, NULL, &code);
        cr_expect(t == 'R' && code == AUTH_REQ_SASL, "no SCRAM request over TLS");
        raw_ssl_close(ssl);
    }
    close(fd);

    fd = raw_connect(px.port);
    cr_assert(fd >= 0);
    raw_send_request(fd, PROTO_GSSENC_REQUEST);
    cr_expect_eq(raw_answer_byte(fd), 'N');
    raw_send_startup(fd, "alice", "app");
    cr_expect_eq(next_step(fd, NULL, 0, NULL, state, 3000), 0,
                 "a plaintext startup after GSSENC 'N' was not refused");
    cr_expect_str_eq(state, "28000");
    close(fd);
}

/* Odd startup packets: each gets an answer at once (an error, or a protocol negotiation and
 * then authentication as usual), never a login without a password, and the proxy serves on. */
Test(redteam24, odd_startup_packets_are_answered_and_never_log_in)
{
    struct {
        const char *what;
        uint32_t version;
        const char *params; /* name\0value\0...\0 as sent (plen bytes: the literal's own NUL
                               is the terminator when counted) */
        size_t plen;
        bool negotiates; /* a NegotiateProtocolVersion then the login's SASL request */
    } v[] = {
        {"3.99", 0x00030063u, "user\0alice\0database\0app\0", 25, true},
        {"3.65535", 0x0003ffffu, "user\0alice\0database\0app\0", 25, true},
        {"2.0", 0x00020000u, "user\0carol\0database\0app\0", 25, false},
        {"4.0", 0x00040000u, "user\0carol\0database\0app\0", 25, false},
        {"no terminator", 0x00030000u, "user\0carol\0database\0app", 24, false},
        {"user without value", 0x00030000u, "user\0", 5, false},
        {"empty user", 0x00030000u, "user\0\0database\0app\0\0", 20, false},
        {"bytes after terminator", 0x00030000u, "user\0carol\0\0junk", 16, false},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++) {
        unsigned char pkt[256];
        size_t len = 8 + v[i].plen;
        pkt[0] = (unsigned char)(len >> 24);
        pkt[1] = (unsigned char)(len >> 16);
        pkt[2] = (unsigned char)(len >> 8);
        pkt[3] = (unsigned char)len;
        pkt[4] = (unsigned char)(v[i].version >> 24);
        pkt[5] = (unsigned char)(v[i].version >> 16);
        pkt[6] = (unsigned char)(v[i].version >> 8);
        pkt[7] = (unsigned char)v[i].version;
        memcpy(pkt + 8, v[i].params, v[i].plen);
        int fd = raw_connect(px.port);
        cr_assert(fd >= 0);
        cr_assert_eq(send(fd, pkt, len, MSG_NOSIGNAL), (ssize_t)len);
        unsigned char body[4096];
        size_t blen;
        double t0 = now_s();
        int t = raw_read_msg(fd, body, sizeof(body), &blen, 3000);
        if (v[i].negotiates) {
            cr_expect_eq(t, 'v', "%s: no NegotiateProtocolVersion (%d)", v[i].what, t);
            cr_expect_eq(next_step(fd, NULL, 0, NULL, NULL, 3000), 100 + AUTH_REQ_SASL,
                         "%s: no SCRAM request after the negotiation", v[i].what);
        } else {
            cr_expect_eq(t, 'E', "%s: no ErrorResponse (%d)", v[i].what, t);
            cr_expect_lt(now_s() - t0, 2.0, "%s: answered late", v[i].what);
        }
        close(fd);
    }
    cr_expect(proxy_alive());
    cr_expect(login_ok("carol", "x", "app", NULL), "the proxy stopped serving");
}

/* ---- 4. stalls ---- */

/* Clients that stall at each step of a login (nothing sent; half a startup packet; after 'S'
 * without a ClientHello; inside the TLS handshake; mid-SCRAM after the server-first) are
 * closed by limits.login_timeout_s (1 s here), while a normal login goes through meanwhile. */
Test(redteam24, logins_stalled_at_any_step_are_closed_by_the_login_timeout,
     .init = start_short_login)
{
    int fds[5];
    fds[0] = raw_connect(px.port);
    fds[1] = raw_connect(px.port);
    cr_assert(fds[0] >= 0 && fds[1] >= 0);
    cr_assert_eq(send(fds[1], "\0\0\0\x40\0\x03", 6, MSG_NOSIGNAL), 6);
    fds[2] = raw_connect_tls_accepted(px.port);
    fds[3] = raw_connect_tls_accepted(px.port);
    cr_assert_eq(send(fds[3], "\x16\x03\x01\x02\x00\x01", 6, MSG_NOSIGNAL), 6); /* half a hello */
    char *f = NULL;
    fds[4] = scram_upto_final(-1, "alice", "alice-secret", "app", &f);
    double t0 = now_s();
    cr_expect(login_ok("alice", "alice-secret", "app", "sslmode=require"),
              "a normal login failed while others stalled");
    /* each must be closed by the login timeout (1 s) plus slack; measured per socket */
    static const char *const steps[] = {"silent", "half a startup packet",
                                        "after 'S', no ClientHello", "mid-handshake", "mid-SCRAM"};
    double closed_at[5] = {0};
    int open = 5;
    while (open > 0 && now_s() - t0 < 12.0) {
        struct pollfd pfd[5];
        for (int i = 0; i < 5; i++)
            pfd[i] = (struct pollfd){.fd = closed_at[i] > 0 ? -1 : fds[i], .events = POLLIN};
        if (poll(pfd, 5, 100) <= 0)
            continue;
        for (int i = 0; i < 5; i++) {
            char junk[4096];
            if (closed_at[i] == 0 && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
                recv(fds[i], junk, sizeof(junk), 0) <= 0) {
                closed_at[i] = now_s() - t0;
                open--;
            }
        }
    }
    for (int i = 0; i < 5; i++) {
        cr_expect(closed_at[i] > 0 && closed_at[i] < 2.5,
                  "the login stalled %s was closed after %.1f s (0: still open after 12 s) with "
                  "login_timeout_s 1",
                  steps[i], closed_at[i]);
        close(fds[i]);
    }
    /* the stalled SCRAM client's final, sent late, logs in nobody (its socket is gone) */
    cr_expect(proxy_alive());
    free(f);
}

/* ---- 5. secrets ---- */

/* Refused reload files that carry secrets in odd places (a plaintext password put under
 * password_scram, a password in an integer or enum field, a YAML error on a password line)
 * are logged as file:line:column errors that never quote the secret. */
Test(redteam24, refused_reload_files_never_log_the_secrets_they_carry)
{
    static const char *const bad_users[] = {
        "  dave:\n    password_scram: \"Rt24-Leak-Me\"\n",
        "  dave:\n    password_scram: \"SCRAM-SHA-256$4096:Rt24-Leak-Me$x:y\"\n",
        "  dave:\n    password: \"Rt24-Leak-Me\n",
        "  dave:\n    password: Rt24-Leak-Me: more\n",
        "  dave:\n    password: Rt24-Leak-Me\n    password_scram: Rt24-Leak-Me\n",
        "  dave:\n    password: [Rt24-Leak-Me\n",
    };
    char next[16384];
    for (size_t i = 0; i < sizeof(bad_users) / sizeof(*bad_users); i++) {
        int refused = file_count_lines(px.log, "reload refused");
        /* dave's entry goes right after carol's, the last user */
        snprintf(next, sizeof(next), "%s", yaml);
        char *users_end = strstr(next, "  carol:\n    auth: trust\n");
        cr_assert(users_end);
        users_end += strlen("  carol:\n    auth: trust\n");
        char tail[16384];
        snprintf(tail, sizeof(tail), "%s", users_end);
        snprintf(users_end, sizeof(next) - (size_t)(users_end - next), "%s%s", bad_users[i], tail);
        proxy_reload_yaml(&px, next);
        cr_expect_gt(file_count_lines(px.log, "reload refused"), refused,
                     "bad file %zu was not refused", i);
    }
    cr_expect(login_ok("alice", "alice-secret", "app", NULL), "the running configuration went");
    expect_log_clean(NULL);
}
