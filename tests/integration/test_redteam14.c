/* test_redteam14.c: red team 14: the admin console, authentication (SCRAM edge cases, TLS
 * required) and bounds (startup-phase floods, named statements). Each test asserts the safe
 * behaviour: a failing test is a finding. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
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

/* carol (trust) is the only admin; alice (password) and bob (SCRAM verifier) are not. */
static void start_rt(void)
{
    proxy_start_with(&px, "transaction", 2, 5000, "admin:\n  users: [carol]\n");
}
static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(redteam14, .init = start_rt, .fini = stop_proxy, .timeout = 120);

static bool proxy_alive(void)
{
    return px.pid > 0 && kill(px.pid, 0) == 0;
}

static void expect_app_works(const char *why)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_expect(PQstatus(c) == CONNECTION_OK, "%s: app login failed: %s", why, PQerrorMessage(c));
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, "SELECT 1");
        cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", why, PQerrorMessage(c));
        PQclear(r);
    }
    PQfinish(c);
}

/* Reads messages until an AuthenticationOk (1), an ErrorResponse or EOF (0), or an
 * authentication request other than OK (its code + 100, data into data). */
static int next_auth(int fd, unsigned char *data, size_t datasz, size_t *dlen)
{
    unsigned char body[8192];
    size_t len;
    for (;;) {
        int t = raw_read_msg(fd, body, sizeof(body), &len, 5000);
        if (t == 'R' && len >= 4) {
            uint32_t code = (uint32_t)body[0] << 24 | (uint32_t)body[1] << 16 |
                            (uint32_t)body[2] << 8 | body[3];
            if (code == 0)
                return 1;
            if (data) {
                *dlen = len - 4 < datasz ? len - 4 : datasz;
                memcpy(data, body + 4, *dlen);
            }
            return 100 + (int)code;
        }
        if (t == 'E' || t < 0)
            return 0;
    }
}

/* ---- 1. admin console ---- */

Test(redteam14, non_admins_with_valid_passwords_are_refused_the_console)
{
    char state[6], msg[256];
    cr_expect_not(raw_login(px.port, "alice", "alice-secret", "lakeproxy", state, msg, 256),
                  "alice (not in admin.users) reached the console");
    cr_expect_not(raw_login(px.port, "bob", "bob-secret", "lakeproxy", state, msg, 256),
                  "bob (not in admin.users) reached the console");
    /* a wrong password for the admin itself (trust: none asked) is beside the point; a name
     * that differs only by case or padding is no admin */
    cr_expect_not(raw_login(px.port, "Carol", "", "lakeproxy", state, msg, 256));
    cr_expect_not(raw_login(px.port, "carol ", "", "lakeproxy", state, msg, 256));
    /* user named like the console, no database: the database defaults to the user's name */
    cr_expect_not(raw_login(px.port, "lakeproxy", "x", "", state, msg, 256));
}

static const char *const odd_commands[] = {
    "SHOW POOLS; SHUTDOWN",
    "SHOW HELP;SHUTDOWN",
    "PAUSE app; RESUME",
    "SHUTDOWN -- now",
    "SHUTDOWN /* now */",
    "/* x */ SHUTDOWN",
    "-- x\nSHUTDOWN",
    "select 1; SHUTDOWN",
    "SHUTDOWN now",
    "SHUTDOWN 1",
    "SHUTDOWN\xc2\xa0",
    "PAUSE app extra",
    "PAUSE app 5",
    "PAUSE \"app\" ; PAUSE",
    "KILL",
    "BEGIN; SHUTDOWN; COMMIT",
    "SHOW POOLS 5",
    "\"SHUTDOWN\"",
    "PAUSE 'app''; SHUTDOWN'",
};

Test(redteam14, odd_admin_spellings_run_nothing)
{
    PGconn *adm = proxy_connect(&px, "carol", "x", "lakeproxy", NULL);
    cr_assert(PQstatus(adm) == CONNECTION_OK, "%s", PQerrorMessage(adm));
    for (size_t i = 0; i < sizeof(odd_commands) / sizeof(odd_commands[0]); i++) {
        PGresult *r = PQexec(adm, odd_commands[i]);
        cr_expect_eq(PQresultStatus(r), PGRES_FATAL_ERROR, "admin command [%s] was accepted",
                     odd_commands[i]);
        PQclear(r);
        cr_assert(proxy_alive(), "lakeproxy exited after [%s]", odd_commands[i]);
    }
    usleep(300000);
    cr_assert(proxy_alive(), "lakeproxy shut down");
    PGresult *r = PQexec(adm, "SHOW POOLS");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(adm));
    int col = PQfnumber(r, "paused");
    for (int i = 0; i < PQntuples(r); i++)
        cr_expect_str_eq(PQgetvalue(r, i, col), "no", "a pool was paused by an odd command");
    PQclear(r);
    PQfinish(adm);
    expect_app_works("after odd admin commands");
}

/* The extended protocol, and a Query with a NUL in the middle, run no admin command. */
Test(redteam14, extended_protocol_and_embedded_nul_run_no_admin_command)
{
    int fd = raw_session(px.port, "carol", "lakeproxy");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "", "SHUTDOWN");
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_parse(&b, "s1", "PAUSE");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    cr_expect_str_neq(raw_expect_error(fd), "", "no error for an extended-protocol SHUTDOWN");
    /* "SHOW HELP\0SHUTDOWN\0": only what precedes the first NUL may run */
    buf_msg_start(&b, 'Q');
    buf_put_bytes(&b, "SHOW HELP\0SHUTDOWN", 18);
    buf_put_u8(&b, 0);
    buf_msg_finish(&b);
    cr_assert(raw_send(fd, &b));
    usleep(500000);
    cr_expect(proxy_alive(), "lakeproxy shut down");
    buf_free(&b);
    close(fd);
    PGconn *adm = proxy_connect(&px, "carol", "x", "lakeproxy", NULL);
    cr_assert(PQstatus(adm) == CONNECTION_OK, "%s", PQerrorMessage(adm));
    PGresult *r = PQexec(adm, "SHOW POOLS");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(adm));
    int col = PQfnumber(r, "paused");
    for (int i = 0; i < PQntuples(r); i++)
        cr_expect_str_eq(PQgetvalue(r, i, col), "no", "a pool was paused by a Parse");
    PQclear(r);
    PQfinish(adm);
    expect_app_works("after extended-protocol admin messages");
}

/* SHOW QUERIES and SHOW CLIENTS never show another client's literals or password. */
Test(redteam14, admin_output_holds_no_other_clients_secrets)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", "application_name=rt14app");
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    static const char *const qs[] = {
        "SELECT 'rt14sA'",
        "SELECT E'rt14sB\\n'",
        "SELECT $$rt14sC$$",
        "SELECT $q$rt14sD$q$",
        "SELECT U&'rt14sE'",
        "SELECT 1 WHERE 'x' IN ('rt14sF', 'y')",
        "SELECT 4111111111111111",
        "SELECT X'DEADBEEF'",
        "SELECT date '2024-01-01', interval 'rt14sG'",
        "SELECT 1; SELECT 'rt14sH'",
        "DO $$BEGIN PERFORM 'rt14sI'; END$$",
        "SET application_name = 'rt14sJ'",
        "SELECT set_config('my.x', 'rt14sK', false)",
        "ALTER ROLE nosuchrole PASSWORD 'rt14sL'",
        "CREATE ROLE rt14role PASSWORD 'rt14sM'",
        "PREPARE rt14p AS SELECT $1::text; EXECUTE rt14p('rt14sN')",
        "SELECT 'rt14sO' /* rt14sP */",
    };
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
        PQclear(PQexec(c, qs[i]));
    const char *pv[] = {"rt14sQ"};
    PQclear(PQexecParams(c, "SELECT $1::text", 1, NULL, pv, NULL, NULL, 0));
    PGconn *adm = proxy_connect(&px, "carol", "x", "lakeproxy", NULL);
    cr_assert(PQstatus(adm) == CONNECTION_OK, "%s", PQerrorMessage(adm));
    static const char *const shows[] = {"SHOW QUERIES 100", "SHOW CLIENTS", "SHOW PUSHDOWN",
                                        "SHOW CONFIG",      "SHOW STATS",   "SHOW SERVERS",
                                        "SHOW DATABASES"};
    for (size_t s = 0; s < sizeof(shows) / sizeof(shows[0]); s++) {
        PGresult *r = PQexec(adm, shows[s]);
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(adm));
        for (int i = 0; i < PQntuples(r); i++)
            for (int j = 0; j < PQnfields(r); j++) {
                const char *v = PQgetvalue(r, i, j);
                cr_expect(!strstr(v, "rt14s") && !strstr(v, "4111111111111111") &&
                              !strstr(v, "DEADBEEF") && !strstr(v, "secret"),
                          "%s shows a literal: %s", shows[s], v);
            }
        PQclear(r);
    }
    PQfinish(adm);
    PQexec(c, "DROP ROLE IF EXISTS rt14role");
    PQfinish(c);
}

/* ---- 2. authentication ---- */

/* A password message that is no SASLInitialResponse (cleartext, md5, another mechanism)
 * when SCRAM was asked for never logs in. */
Test(redteam14, non_scram_answers_to_a_scram_request_fail)
{
    for (int k = 0; k < 5; k++) {
        int fd = raw_connect(px.port);
        cr_assert(fd >= 0);
        raw_send_startup(fd, "alice", "app");
        int a = next_auth(fd, NULL, 0, NULL);
        cr_assert_eq(a, 100 + AUTH_REQ_SASL, "expected a SASL request, got %d", a);
        struct buf b;
        buf_init(&b);
        if (k == 0)
            proto_password(&b, "alice-secret");
        else if (k == 1)
            proto_password(&b, "md500000000000000000000000000000000");
        else if (k == 2)
            proto_sasl_initial(&b, "PLAIN", "\0alice\0alice-secret", 19);
        else if (k == 3)
            proto_sasl_initial(&b, "SCRAM-SHA-256-PLUS",
                               "p=tls-server-end-point,,n=,r=abcdefghijklmnop", 46);
        else
            proto_sasl_initial(&b, "SCRAM-SHA-256", "p=tls-server-end-point,,n=,r=abcdefghijk", 41);
        cr_assert(raw_send(fd, &b));
        buf_free(&b);
        cr_expect_eq(next_auth(fd, NULL, 0, NULL), 0, "variant %d was not refused", k);
        close(fd);
    }
}

/* One SCRAM exchange up to the client-final; returns the socket (the final not sent), the
 * client-final in *final. client_first is sent as given (NULL: built from nonce). */
static int scram_upto_final(const char *user, const char *password, const char *nonce, char **final)
{
    int fd = raw_connect(px.port);
    cr_assert(fd >= 0);
    raw_send_startup(fd, user, "app");
    cr_assert_eq(next_auth(fd, NULL, 0, NULL), 100 + AUTH_REQ_SASL);
    struct scram_client sc = {0};
    char *first = NULL;
    cr_assert(scram_client_first(&sc, "", password, nonce, &first));
    struct buf b;
    buf_init(&b);
    proto_sasl_initial(&b, "SCRAM-SHA-256", first, strlen(first));
    cr_assert(raw_send(fd, &b));
    free(first);
    unsigned char data[2048];
    size_t dlen = 0;
    cr_assert_eq(next_auth(fd, data, sizeof(data) - 1, &dlen), 100 + AUTH_REQ_SASL_CONTINUE);
    const char *err = NULL;
    cr_assert(scram_client_final(&sc, (const char *)data, dlen, final, &err), "%s", err);
    scram_client_free(&sc);
    buf_free(&b);
    return fd;
}

static int send_final(int fd, const char *final)
{
    raw_send_sasl_response(fd, final);
    return next_auth(fd, NULL, 0, NULL);
}

/* A client-final captured from a good login, replayed with the same client nonce, fails: the
 * server nonce is fresh each time. So does a final whose proof was made for another nonce. */
Test(redteam14, scram_replay_and_spliced_finals_fail)
{
    const char *nonce = "cnonceRT14cnonceRT14abcd";
    char *good = NULL, *again = NULL;
    int fd = scram_upto_final("bob", "bob-secret", nonce, &good);
    int a = send_final(fd, good);
    cr_assert_eq(a, 100 + AUTH_REQ_SASL_FINAL, "the honest login failed (%d)", a);
    close(fd);
    fd = scram_upto_final("bob", "bob-secret", nonce, &again);
    cr_expect_str_neq(good, again, "the server nonce repeated");
    cr_expect_eq(send_final(fd, good), 0, "a replayed client-final logged in");
    close(fd);
    /* splice: this exchange's nonce, the old proof */
    char *fresh = NULL;
    fd = scram_upto_final("bob", "bob-secret", nonce, &fresh);
    char spliced[1024];
    const char *oldp = strstr(good, ",p="), *newp = strstr(fresh, ",p=");
    cr_assert(oldp && newp);
    snprintf(spliced, sizeof(spliced), "%.*s%s", (int)(newp - fresh), fresh, oldp);
    cr_expect_eq(send_final(fd, spliced), 0, "a spliced client-final logged in");
    close(fd);
    /* channel binding flag swapped to y with the n proof */
    char *f4 = NULL;
    fd = scram_upto_final("bob", "bob-secret", nonce, &f4);
    char swapped[1024];
    snprintf(swapped, sizeof(swapped), "c=eSws%s", f4 + 6);
    cr_expect_eq(send_final(fd, swapped), 0, "a final with a swapped binding flag logged in");
    close(fd);
    /* wrong password for bob, and a user's proof used for another user */
    char *f5 = NULL;
    fd = scram_upto_final("bob", "alice-secret", nonce, &f5);
    cr_expect_eq(send_final(fd, f5), 0, "a wrong password logged in");
    close(fd);
    free(good);
    free(again);
    free(fresh);
    free(f4);
    free(f5);
}

/* listen.tls.client_tls: require; no plaintext login whatever the request sequence. */
static void start_tls_required(void)
{
    static char yaml[16384], out[16384];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 5000,
                       "admin:\n  users: [carol]\n");
    char *at = strstr(yaml, "server.key\n");
    cr_assert(at);
    at += strlen("server.key\n");
    snprintf(out, sizeof(out), "%.*s    client_tls: require\n%s", (int)(at - yaml), yaml, at);
    proxy_start_yaml(&px, port, out);
}

Test(redteam14, tls_required_has_no_plaintext_way_in, .init = start_tls_required)
{
    static const char *const users[] = {"carol", "alice"};
    static const char *const dbs[] = {"app", "lakeproxy"};
    for (int u = 0; u < 2; u++)
        for (int d = 0; d < 2; d++)
            for (int seq = 0; seq < 3; seq++) {
                int fd = raw_connect(px.port);
                cr_assert(fd >= 0);
                if (seq == 1) {
                    raw_send_request(fd, PROTO_GSSENC_REQUEST);
                    cr_expect_eq(raw_answer_byte(fd), 'N');
                } else if (seq == 2) { /* negotiated once, as PostgreSQL does: the second ends it */
                    raw_send_request(fd, PROTO_GSSENC_REQUEST);
                    cr_expect_eq(raw_answer_byte(fd), 'N');
                    raw_send_request(fd, PROTO_GSSENC_REQUEST);
                    cr_expect_eq(raw_answer_byte(fd), 'E', "a second GSSENCRequest was answered");
                    close(fd);
                    continue;
                }
                raw_send_startup(fd, users[u], dbs[d]);
                int a = next_auth(fd, NULL, 0, NULL);
                cr_expect_eq(a, 0, "%s@%s seq %d: plaintext login got auth answer %d", users[u],
                             dbs[d], seq, a);
                close(fd);
            }
    PGconn *c = proxy_connect(&px, "carol", "x", "app", "sslmode=disable");
    cr_expect(PQstatus(c) != CONNECTION_OK, "libpq sslmode=disable logged in");
    PQfinish(c);
    c = proxy_connect(&px, "carol", "x", "app", "sslmode=require");
    cr_expect(PQstatus(c) == CONNECTION_OK, "TLS login failed: %s", PQerrorMessage(c));
    PQfinish(c);
}

/* A cancel request with keys made up cancels nothing: another client's sleep finishes. */
Test(redteam14, guessed_cancel_keys_cancel_nothing)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    cr_assert(PQsendQuery(c, "SELECT pg_sleep(1.5)"));
    usleep(200000);
    int pid = PQbackendPID(c);
    for (uint32_t k = 0; k < 300; k++) {
        int fd = raw_connect(px.port);
        if (fd < 0)
            continue;
        struct buf b;
        buf_init(&b);
        uint32_t p = k < 100 ? (uint32_t)pid : k < 200 ? k : 0;
        proto_cancel_request(&b, p, k < 200 ? k : 0xffffffffu - k);
        raw_send(fd, &b);
        buf_free(&b);
        close(fd);
    }
    PGresult *r = PQgetResult(c);
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "the sleep was cancelled: %s",
                 PQerrorMessage(c));
    PQclear(r);
    while ((r = PQgetResult(c)))
        PQclear(r);
    PQfinish(c);
}

/* ---- 3. bounds ---- */

/* Writes b over and over to fd (non-blocking, never reading) for up to secs or max bytes. */
static size_t flood_unread(int fd, const void *data, size_t len, double secs, size_t max)
{
    size_t sent = 0;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    double end = now_s() + secs;
    while (now_s() < end && sent < max) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            if ((size_t)n < len) {
                /* finish the partial write to keep packets aligned */
                size_t off = (size_t)n;
                while (off < len && now_s() < end) {
                    ssize_t m = send(fd, (const char *)data + off, len - off, MSG_NOSIGNAL);
                    if (m > 0) {
                        off += (size_t)m;
                        sent += (size_t)m;
                    } else if (m < 0 && errno != EAGAIN) {
                        return sent;
                    } else {
                        struct pollfd p = {.fd = fd, .events = POLLOUT};
                        poll(&p, 1, 50);
                    }
                }
            }
        } else if (n < 0 && errno != EAGAIN) {
            break;
        } else {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            poll(&p, 1, 50);
        }
    }
    return sent;
}

/* GSSENCRequests one after another, their 'N' never read: PostgreSQL takes one; lakeproxy
 * answers each, so its output must stay bounded (or it must stop reading). */
Test(redteam14, a_gssenc_request_flood_that_never_reads_costs_bounded_memory)
{
    expect_app_works("warm-up");
    long base = proxy_status_kb(&px, "VmRSS");
    int fd = raw_connect(px.port);
    cr_assert(fd >= 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    static unsigned char chunk[8 * 8192];
    for (int i = 0; i < 8192; i++) {
        unsigned char req[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30};
        memcpy(chunk + 8 * i, req, 8);
    }
    size_t sent = flood_unread(fd, chunk, sizeof(chunk), 8.0, (size_t)2 << 30);
    long rss = proxy_status_kb(&px, "VmRSS");
    cr_log_info("gssenc flood: %zu bytes sent, RSS +%ld kB", sent, rss - base);
    cr_expect_lt(rss - base, 64 * 1024, "RSS grew by %ld kB (%zu bytes of GSSENCRequests sent)",
                 rss - base, sent);
    cr_expect_lt(sent, (size_t)64 << 20, "lakeproxy took %zu bytes of GSSENCRequests", sent);
    double t0 = now_s();
    expect_app_works("during the flood");
    cr_expect_lt(now_s() - t0, 3.0, "another client waited %.1f s", now_s() - t0);
    close(fd);
}

/* Thousands of named prepared statements of 1 KB each: memory stays bounded (README: up to
 * 16 MiB of statement text per client). */
Test(redteam14, many_named_statements_cost_bounded_memory)
{
    expect_app_works("warm-up");
    long base = proxy_status_kb(&px, "VmRSS");
    int fd = raw_session(px.port, "carol", "app");
    cr_assert(fd >= 0);
    char sql[1200], name[32];
    char pad[1001];
    memset(pad, 'x', 1000);
    pad[1000] = 0;
    struct buf b;
    buf_init(&b);
    unsigned char body[4096];
    size_t len;
    int errors = 0;
    for (int i = 0; i < 60000; i++) {
        snprintf(name, sizeof(name), "rt14_%d", i);
        snprintf(sql, sizeof(sql), "SELECT %d AS n, '%s' AS pad", i, pad);
        raw_put_parse(&b, name, sql);
        if (i % 200 == 199) {
            raw_put_empty(&b, 'S');
            cr_assert(raw_send(fd, &b));
            int t;
            while ((t = raw_read_msg(fd, body, sizeof(body), &len, 10000)) != 'Z') {
                if (t < 0)
                    break;
                if (t == 'E')
                    errors++;
            }
            if (t < 0) {
                cr_log_info("connection ended after %d statements", i);
                break;
            }
        }
    }
    long rss = proxy_status_kb(&px, "VmRSS");
    cr_log_info("60000 named statements: RSS +%ld kB, %d errors", rss - base, errors);
    cr_expect_lt(rss - base, 48 * 1024, "RSS grew by %ld kB for one client's statements",
                 rss - base);
    buf_free(&b);
    close(fd);
    expect_app_works("after the statements");
}

/* ---- 3b. the same flood inside TLS ---- */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/time.h>

/* A TLS session to the proxy (SSLRequest, 'S', handshake); NULL when any step fails. */
static SSL *tls_open(int fd, SSL_CTX **ctxp)
{
    unsigned char req[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    if (send(fd, req, 8, MSG_NOSIGNAL) != 8 || raw_answer_byte(fd) != 'S')
        return NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    if (!ssl || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1) {
        SSL_free(ssl);
        SSL_CTX_free(ctx);
        return NULL;
    }
    *ctxp = ctx;
    return ssl;
}

/* GSSENCRequests (and SSLRequests) sent inside TLS after the handshake, the answers never
 * read: the proxy answered each 'N' into the TLS layer's plaintext output. Now the first
 * repeat ends the connection (as PostgreSQL's), and the writes fail. */
static void tls_negotiation_flood(uint32_t code, const char *what)
{
    signal(SIGPIPE, SIG_IGN); /* (SSL_write to a connection the proxy closed) */
    expect_app_works("warm-up");
    long base = proxy_status_kb(&px, "VmRSS"), peak = base;
    int fd = raw_connect(px.port);
    cr_assert(fd >= 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    SSL_CTX *ctx = NULL;
    SSL *ssl = tls_open(fd, &ctx);
    cr_assert(ssl, "no TLS session");
    struct timeval tv = {0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    static unsigned char chunk[8 * 2048];
    for (int i = 0; i < 2048; i++) {
        unsigned char req[8] = {0, 0, 0, 8, code >> 24, code >> 16, code >> 8, code};
        memcpy(chunk + 8 * i, req, 8);
    }
    size_t sent = 0;
    double end = now_s() + 45;
    int stalls = 0;
    while (now_s() < end && sent < ((size_t)4 << 30)) {
        int n = SSL_write(ssl, chunk, sizeof(chunk));
        if (n > 0) {
            sent += (size_t)n;
            stalls = 0;
        } else {
            int e = SSL_get_error(ssl, n);
            if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL || e == SSL_ERROR_ZERO_RETURN)
                break;         /* the proxy closed the connection: good */
            if (++stalls > 10) /* the proxy stopped reading: good */
                break;
        }
        long rss = proxy_status_kb(&px, "VmRSS");
        if (rss > peak)
            peak = rss;
        if (peak - base > 96 * 1024)
            break;
    }
    cr_log_info("%s flood inside TLS: %zu bytes sent, RSS peak +%ld kB", what, sent, peak - base);
    cr_expect_lt(peak - base, 64 * 1024,
                 "%s inside TLS, answers unread: RSS grew by %ld kB (%zu bytes sent)", what,
                 peak - base, sent);
    double t0 = now_s();
    expect_app_works("during the TLS flood");
    cr_expect_lt(now_s() - t0, 3.0, "another client waited %.1f s", now_s() - t0);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
}

Test(redteam14, a_gssenc_flood_inside_tls_costs_bounded_memory)
{
    tls_negotiation_flood(PROTO_GSSENC_REQUEST, "GSSENCRequest");
}

Test(redteam14, an_ssl_request_flood_inside_tls_costs_bounded_memory)
{
    tls_negotiation_flood(PROTO_SSL_REQUEST, "SSLRequest");
}

/* A Parse declaring 65,535 parameter types and a Bind carrying 65,535 values (about 600 KB),
 * then one whose count promises more than it carries: answered (or refused) promptly, the
 * proxy alive and other clients served. */
Test(redteam14, huge_parameter_counts_are_handled)
{
    int fd = raw_session(px.port, "carol", "app");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, 'P');
    buf_put_str(&b, "rt14big");
    buf_put_str(&b, "SELECT $1::int + $65535::int");
    buf_put_u16(&b, 65535);
    for (int i = 0; i < 65535; i++)
        buf_put_u32(&b, 23);
    buf_msg_finish(&b);
    buf_msg_start(&b, 'B');
    buf_put_str(&b, "");
    buf_put_str(&b, "rt14big");
    buf_put_u16(&b, 0);
    buf_put_u16(&b, 65535);
    for (int i = 0; i < 65535; i++) {
        buf_put_u32(&b, 1);
        buf_put_u8(&b, '7');
    }
    buf_put_u16(&b, 0);
    buf_msg_finish(&b);
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    unsigned char body[4096];
    size_t len;
    int t, rows = 0;
    double t0 = now_s();
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 20000)) != 'Z' && t >= 0)
        rows += t == 'D';
    cr_expect_eq(t, 'Z', "no ReadyForQuery after a 65535-parameter Bind");
    cr_expect_eq(rows, 1);
    cr_expect_lt(now_s() - t0, 10.0);
    /* a Bind that says 65535 values and carries 3 */
    buf_msg_start(&b, 'B');
    buf_put_str(&b, "");
    buf_put_str(&b, "rt14big");
    buf_put_u16(&b, 65535);
    buf_put_u16(&b, 65535);
    buf_put_u16(&b, 65535);
    for (int i = 0; i < 3; i++) {
        buf_put_u32(&b, 0x7fffffff);
    }
    buf_msg_finish(&b);
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    raw_send(fd, &b);
    (void)raw_expect_error(fd);
    buf_free(&b);
    close(fd);
    cr_expect(proxy_alive(), "lakeproxy died");
    expect_app_works("after huge parameter counts");
}

/* A pipeline of Parse/Bind/Execute of a large result without Sync or Flush, never read:
 * lakeproxy's memory stays bounded. */
Test(redteam14, an_unsynced_pipeline_never_read_costs_bounded_memory)
{
    expect_app_works("warm-up");
    long base = proxy_status_kb(&px, "VmRSS"), peak = base;
    int fd = raw_session(px.port, "carol", "app");
    cr_assert(fd >= 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "rt14s", "SELECT repeat('x', 1000) FROM generate_series(1, 20000)");
    for (int i = 0; i < 200; i++) {
        raw_put_bind(&b, "", "rt14s");
        raw_put_execute(&b, "");
    }
    size_t sent = flood_unread(fd, b.data, b.len, 8.0, (size_t)64 << 20);
    for (double end = now_s() + 3; now_s() < end; usleep(250000)) {
        long rss = proxy_status_kb(&px, "VmRSS");
        if (rss > peak)
            peak = rss;
    }
    cr_log_info("unsynced pipeline: %zu bytes sent, RSS peak +%ld kB", sent, peak - base);
    cr_expect_lt(peak - base, 64 * 1024, "RSS grew by %ld kB", peak - base);
    double t0 = now_s();
    expect_app_works("during the unsynced pipeline");
    cr_expect_lt(now_s() - t0, 3.0);
    buf_free(&b);
    close(fd);
}

/* Transaction pooling, 2 servers: two clients each send the header (and a few bytes) of a
 * 1 MiB Query and then nothing. Such a message takes a server on its header; PostgreSQL has
 * seen nothing, so none of its timeouts (idle_in_transaction_session_timeout) applies. Another
 * client's SELECT 1 must still be served (the stalled holders let go of their servers). */
static void start_small_pool(void)
{
    proxy_start_with(&px, "transaction", 2, 30000, "admin:\n  users: [carol]\n");
}

Test(redteam14, half_sent_large_queries_do_not_hold_the_pool_for_ever, .init = start_small_pool)
{
    int fds[2];
    for (int i = 0; i < 2; i++) {
        fds[i] = raw_session(px.port, "carol", "app");
        cr_assert(fds[i] >= 0);
        unsigned char hdr[5 + 64] = {'Q', 0, 0x10, 0, 4};
        memcpy(hdr + 5, "SELECT '", 8);
        memset(hdr + 13, 'x', sizeof(hdr) - 13);
        cr_assert_eq(send(fds[i], hdr, sizeof(hdr), MSG_NOSIGNAL), (ssize_t)sizeof(hdr));
    }
    usleep(500000);
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    double t0 = now_s();
    cr_assert(PQsendQuery(c, "SELECT 1"));
    PGresult *r = query_result_within(c, 25.0);
    double took = now_s() - t0;
    cr_expect(r && PQresultStatus(r) == PGRES_TUPLES_OK,
              "SELECT 1 not served within 25 s while two clients stall half-way through large "
              "queries (%s)",
              r ? PQresultErrorMessage(r) : "no answer");
    cr_log_info("SELECT 1 behind two stalled large queries: %.1f s", took);
    if (r)
        PQclear(r);
    PQfinish(c);
    close(fds[0]);
    close(fds[1]);
}
