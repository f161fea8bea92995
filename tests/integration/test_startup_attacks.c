/* test_startup_attacks.c: what a client may try before it is logged in, and while its
 * settings are put in place (red team 6's attacks that held, kept as regression tests):
 * replication and settings smuggled in the startup packet, plaintext behind an SSLRequest,
 * protocol 3.2, spellings of the admin console's name, and a failed attribute injection
 * leaving settings for the next client. */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "proto.h"
#include "rawproto.h"

static struct proxy px;

static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(startup, .fini = stop_proxy, .timeout = 60);

/* What the proxy answers first to a startup packet with the given parameters: the
 * authentication request code (>= 0), or -1 with the ErrorResponse's SQLSTATE and message. */
static int first_answer(int port, const struct startup_param *params, size_t n, char state[6],
                        char *msg, size_t msgsz)
{
    int fd = raw_connect(port);
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    proto_startup(&b, params, n);
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    unsigned char body[4096];
    size_t len;
    state[0] = msg[0] = '\0';
    int t = raw_read_msg(fd, body, sizeof(body), &len, 5000);
    int code = -2;
    if (t == 'R' && len >= 4) {
        code = (int)(((uint32_t)body[0] << 24) | ((uint32_t)body[1] << 16) |
                     ((uint32_t)body[2] << 8) | body[3]);
    } else if (t == 'E') {
        struct pg_error e;
        if (proto_parse_error(body, len, &e)) {
            snprintf(state, 6, "%s", e.sqlstate);
            snprintf(msg, msgsz, "%s", e.message);
        }
        code = -1;
    }
    close(fd);
    return code;
}

static void start_rls_txn(void)
{
    static char yaml[16384];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 1, 5000,
                       "  t1: {password: pw, attributes: {tenant_id: \"1\"}}\n"
                       "rls:\n  prefix: app\n  databases: [app]\n  switch_role: true\n"
                       "  default_role: lp_tenant\n"
                       "  attributes: {tenant_id: attribute, user: user, locale: option}\n");
    proxy_start_yaml(&px, port, yaml);
}

/* Logs in as trust user carol with extra startup parameters; returns the socket after
 * ReadyForQuery, or -1 with the error's SQLSTATE in state. */
static int trust_login(const struct startup_param *extra, size_t n, char state[6])
{
    struct startup_param params[16] = {{"user", "carol"}, {"database", "app"}};
    for (size_t i = 0; i < n; i++)
        params[2 + i] = extra[i];
    int fd = raw_connect(px.port);
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    proto_startup(&b, params, 2 + n);
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    unsigned char body[8192];
    size_t len;
    state[0] = '\0';
    for (;;) {
        int t = raw_read_msg(fd, body, sizeof(body), &len, 5000);
        if (t == 'Z')
            return fd;
        if (t == 'E') {
            snprintf(state, 6, "%s", raw_error_sqlstate(body, len));
            close(fd);
            return -1;
        }
        if (t < 0) {
            snprintf(state, 6, "EOF");
            close(fd);
            return -1;
        }
    }
}

/* The first column of the first row of sql on fd ("ERROR:<state>" on an error). */
static void raw_value(int fd, const char *sql, char *out, size_t outsz)
{
    raw_query(fd, sql);
    unsigned char body[8192];
    size_t len;
    out[0] = '\0';
    for (;;) {
        int t = raw_read_msg(fd, body, sizeof(body), &len, 5000);
        if (t == 'D' && len >= 6) {
            int32_t l = (int32_t)(((uint32_t)body[2] << 24) | ((uint32_t)body[3] << 16) |
                                  ((uint32_t)body[4] << 8) | body[5]);
            snprintf(out, outsz, "%.*s", l < 0 ? 0 : l, (const char *)body + 6);
        } else if (t == 'E') {
            snprintf(out, outsz, "ERROR:%s", raw_error_sqlstate(body, len));
        } else if (t == 'Z' || t < 0) {
            return;
        }
    }
}

/* Settings a client may not choose at startup are refused, whatever their spelling: replication
 * (walsender commands would bypass the guards), role and session_authorization, row_security,
 * server options, protected RLS attributes, and encodings or string syntax the guards do not
 * read alike. */
Test(startup, settings_smuggled_at_startup_are_refused, .init = start_rls_txn)
{
    static const char *const refused[][2] = {
        {"replication", "database"},
        {"replication", "true"},
        {"options", "-c role=lp_server"},
        {"options", "--role=lp_server"},
        {"options", "-crole=lp_server"},
        {"options", "-c session_authorization=lp_server"},
        {"options", "-c row_security=off"},
        {"options", "-c app.tenant_id=7"},
        {"options", "-c APP.tenant_id=7"},
        {"options", "-c app.user=t1"},
        {"options", "-c\tapp.tenant_id=7"},
        {"app.tenant_id", "7"},
        {"role", "lp_server"},
        {"Options", "-c role=lp_server"},
        {"options", "-B 8"},
        {"options", "-c search_path=public -c role=lp_server"},
        {"client_encoding", "SJIS"},
        {"options", "-c client_encoding=s-j-i-s"},
        {"standard_conforming_strings", "off"},
        {"options", "-c standard_conforming_strings=of"},
    };
    char state[6];
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        struct startup_param p[] = {{refused[i][0], refused[i][1]}};
        int fd = trust_login(p, 1, state);
        char who[256] = "";
        if (fd >= 0) {
            raw_value(fd,
                      "SELECT current_user || '|' || current_setting('app.tenant_id') || '|' || "
                      "current_setting('row_security')",
                      who, sizeof(who));
            close(fd);
        }
        cr_expect(fd < 0, "%s=%s was accepted: %s", refused[i][0], refused[i][1], who);
    }
    /* escaped whitespace keeps a single word: a value, not a second setting */
    struct startup_param esc[] = {{"options", "-c application_name=x\\ -c\\ role=lp_server"}};
    int fd = trust_login(esc, 1, state);
    cr_assert(fd >= 0, "%s", state);
    char v[256];
    raw_value(fd, "SELECT current_user || '|' || current_setting('application_name')", v,
              sizeof(v));
    cr_expect_str_eq(v, "lp_tenant|x -c role=lp_server");
    close(fd);
    /* duplicate user: the first one is who logs in; nothing else of it reaches the server */
    struct startup_param dup[] = {{"user", "t1"}, {"options", "-c app.locale=fr"}};
    fd = trust_login(dup, 2, state);
    cr_assert(fd >= 0, "%s", state);
    raw_value(fd,
              "SELECT current_user || '|' || current_setting('app.user') || '|' || "
              "current_setting('app.tenant_id') || '|' || current_setting('app.locale')",
              v, sizeof(v));
    cr_expect_str_eq(v, "lp_tenant|carol||fr");
    close(fd);
}

/* Sends the 8-byte request code on fd, then what follows; returns the one-byte answer. */
static int request_answer(int fd, uint32_t code, const struct startup_param *behind, size_t n)
{
    struct buf b;
    buf_init(&b);
    buf_put_u32(&b, 8);
    buf_put_u32(&b, code);
    if (behind)
        proto_startup(&b, behind, n);
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    unsigned char c = 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 3000) != 1 || read(fd, &c, 1) != 1)
        return -1;
    return c;
}

/* Plaintext sent behind an SSLRequest (or after a GSSENCRequest refused) is not taken as
 * the start of a TLS session's data (the CVE-2021-23214 class). */
Test(startup, plaintext_behind_an_ssl_request_is_refused, .init = start_rls_txn)
{
    struct startup_param params[] = {{"user", "carol"}, {"database", "app"}};
    int fd = raw_connect(px.port);
    int a = request_answer(fd, PROTO_SSL_REQUEST, params, 2);
    cr_expect(a != 'S', "the proxy answered S to an SSLRequest with plaintext behind it");
    close(fd);
    fd = raw_connect(px.port);
    a = request_answer(fd, PROTO_GSSENC_REQUEST, NULL, 0);
    cr_expect_eq(a, 'N');
    a = request_answer(fd, PROTO_SSL_REQUEST, params, 2);
    cr_expect(a != 'S', "after GSSENC: S to an SSLRequest with plaintext behind it");
    close(fd);
}

static void start_admin(void)
{
    proxy_start_with(&px, "transaction", 2, 3000, "admin:\n  users: [carol]\n");
}

/* Only the exact name "lakeproxy" is the console, and only for admins. */
Test(startup, only_admins_reach_the_console_whatever_the_spelling, .init = start_admin)
{
    char state[6], msg[256];
    cr_expect_not(raw_login(px.port, "alice", "alice-secret", "lakeproxy", state, msg, 256));
    cr_expect_str_eq(state, "28000", "%s", msg);
    static const char *const spellings[] = {"Lakeproxy",     "LAKEPROXY",  "lakeproxy ",
                                            "\"lakeproxy\"", " lakeproxy", "lakeproxy\t"};
    for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
        bool in = raw_login(px.port, "alice", "alice-secret", spellings[i], state, msg, 256);
        cr_expect(!in && strcmp(state, "3D000") == 0, "[%s]: %s %s", spellings[i], state, msg);
    }
    /* the database name defaults to the user name: a user named lakeproxy is no admin */
    struct startup_param p[] = {{"user", "lakeproxy"}};
    int code = first_answer(px.port, p, 1, state, msg, sizeof(msg));
    cr_expect_eq(code, 10, "a mock SCRAM exchange for an unknown user (got %d %s)", code, state);
}

/* A 3.2 startup with a _pq_ option is negotiated down to 3.0 (4-byte cancel key). */
Test(startup, protocol_3_2_is_negotiated_down, .init = start_rls_txn)
{
    int fd = raw_connect(px.port);
    struct buf b;
    buf_init(&b);
    buf_put_u32(&b, 0); /* the length, set below */
    buf_put_u32(&b, (3u << 16) | 2u);
    const char *kv[] = {"user", "carol", "database", "app", "_pq_.test_option", "x", ""};
    for (int i = 0; kv[i][0]; i++)
        buf_put_str(&b, kv[i]);
    buf_put_u8(&b, 0);
    uint32_t n = (uint32_t)b.len;
    b.data[0] = (uint8_t)(n >> 24), b.data[1] = (uint8_t)(n >> 16), b.data[2] = (uint8_t)(n >> 8),
    b.data[3] = (uint8_t)n;
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    unsigned char body[4096];
    size_t len;
    int t = raw_read_msg(fd, body, sizeof(body), &len, 5000);
    cr_expect_eq(t, 'v', "NegotiateProtocolVersion first (got %c)", t);
    bool ready = false;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) > 0)
        if (t == 'K')
            cr_expect_eq(len, 8, "a 3.0 BackendKeyData");
        else if (t == 'Z' && (ready = true))
            break;
    cr_expect(ready);
    close(fd);
}

/* A client whose attribute injection fails leaves none of its settings to the next client. */
Test(startup, a_failed_injection_leaves_no_setting_for_the_next_client, .init = start_rls_txn)
{
    char state[6], v[512];
    struct startup_param bad[] = {
        {"options", "-c app.locale=\xff\xfe -c search_path=pg_temp,evil -c TimeZone=Asia/Tokyo "
                    "-c default_transaction_read_only=on -c statement_timeout=7777"}};
    struct startup_param prime[] = {{"application_name", "prime"}};
    int fd = trust_login(prime, 1, state); /* the pool learns its parameters */
    cr_assert(fd >= 0, "%s", state);
    close(fd);
    usleep(200 * 1000);
    fd = trust_login(bad, 1, state);
    cr_assert(fd >= 0, "%s", state);
    raw_value(fd, "SELECT 1", v, sizeof(v));
    close(fd);
    struct startup_param none[] = {{"application_name", "next"}};
    fd = trust_login(none, 1, state);
    cr_assert(fd >= 0, "%s", state);
    raw_value(fd,
              "SELECT current_setting('search_path') || '|' || current_setting('TimeZone') || '|' "
              "|| current_setting('default_transaction_read_only') || '|' || "
              "current_setting('statement_timeout') || '|' || "
              "coalesce(current_setting('app.locale', true), '-')",
              v, sizeof(v));
    cr_assert(v[0] && strncmp(v, "ERROR", 5) != 0, "the next client's query: %s", v);
    cr_expect(strstr(v, "evil") == NULL && strstr(v, "Tokyo") == NULL &&
                  strstr(v, "7777") == NULL && strstr(v, "|on|") == NULL,
              "the next client runs with the previous client's settings: %s", v);
    close(fd);
}
