/* rawproto.c: raw-socket clients for protocol tests: logins, messages, errors. */
#include "harness.h"

#include <criterion/criterion.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "auth.h"
#include "buf.h"
#include "proto.h"

int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool raw_read_full(int fd, unsigned char *p, size_t n, int timeout_ms)
{
    while (n > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) <= 0)
            return false;
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

int raw_read_msg(int fd, unsigned char *buf, size_t bufsz, size_t *len, int timeout_ms)
{
    unsigned char hdr[5];
    if (!raw_read_full(fd, hdr, 5, timeout_ms))
        return -1;
    uint32_t l =
        ((uint32_t)hdr[1] << 24) | ((uint32_t)hdr[2] << 16) | ((uint32_t)hdr[3] << 8) | hdr[4];
    if (l < 4 || l - 4 > bufsz)
        return -1;
    *len = l - 4;
    if (!raw_read_full(fd, buf, *len, timeout_ms))
        return -1;
    return hdr[0];
}

const char *raw_error_sqlstate(const unsigned char *body, size_t len)
{
    static char state[6];
    struct pg_error e;
    state[0] = '\0';
    if (proto_parse_error(body, len, &e))
        snprintf(state, sizeof(state), "%s", e.sqlstate);
    return state;
}

bool raw_send(int fd, struct buf *b)
{
    bool ok = !b->failed && write(fd, b->data, b->len) == (ssize_t)b->len;
    buf_reset(b);
    return ok;
}

/* Answers one authentication request; false when the exchange cannot go on. */
static bool raw_auth_step(int fd, struct scram_client *sc, const char *password,
                          const unsigned char *body, size_t len)
{
    struct buf b;
    uint32_t code;
    const uint8_t *data;
    size_t dlen;
    char *out = NULL;
    const char *err;
    bool ok = true;
    buf_init(&b);
    proto_parse_auth(body, len, &code, &data, &dlen);
    if (code == AUTH_REQ_CLEARTEXT) {
        proto_password(&b, password);
    } else if (code == AUTH_REQ_SASL) {
        ok = scram_client_first(sc, "", password, NULL, &out);
        if (ok)
            proto_sasl_initial(&b, "SCRAM-SHA-256", out, strlen(out));
    } else if (code == AUTH_REQ_SASL_CONTINUE) {
        ok = scram_client_final(sc, (const char *)data, dlen, &out, &err);
        if (ok)
            proto_sasl_response(&b, out, strlen(out));
    }
    if (ok && b.len)
        ok = raw_send(fd, &b);
    free(out);
    buf_free(&b);
    return ok;
}

/* A socket to port that has sent a startup packet for user and db. */
static int raw_start(int port, const char *user, const char *db)
{
    int fd = raw_connect(port);
    struct buf b;
    cr_assert(fd >= 0, "cannot connect to port %d", port);
    buf_init(&b);
    struct startup_param params[] = {{"user", user}, {"database", db}};
    proto_startup(&b, params, 2);
    raw_send(fd, &b);
    buf_free(&b);
    return fd;
}

bool raw_login(int port, const char *user, const char *password, const char *db, char sqlstate[6],
               char *msg, size_t msgsz)
{
    int fd = raw_start(port, user, db);
    struct scram_client sc = {0};
    unsigned char body[65536];
    size_t len;
    bool ok = false;
    sqlstate[0] = msg[0] = '\0';
    for (;;) {
        int t = raw_read_msg(fd, body, sizeof(body), &len, 10000);
        if (t == 'R' && raw_auth_step(fd, &sc, password ? password : "", body, len))
            continue;
        if (t == 'E') {
            struct pg_error e;
            if (proto_parse_error(body, len, &e)) {
                snprintf(sqlstate, 6, "%s", e.sqlstate);
                snprintf(msg, msgsz, "%s", e.message);
            }
            break;
        }
        if (t == 'Z')
            ok = true;
        if (t == 'Z' || t < 0 || t == 'R')
            break;
    }
    scram_client_free(&sc);
    close(fd);
    return ok;
}

bool raw_scram_salt(int port, const char *user, const char *db, char *out, size_t outsz)
{
    int fd = raw_start(port, user, db);
    struct scram_client sc = {0};
    unsigned char body[4096];
    size_t len;
    bool found = false;
    for (int t; !found && (t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) == 'R';) {
        uint32_t code;
        const uint8_t *data;
        size_t dlen;
        proto_parse_auth(body, len, &code, &data, &dlen);
        if (code == AUTH_REQ_SASL_CONTINUE) { /* "r=...,s=<salt>,i=..." */
            char first[512];
            snprintf(first, sizeof(first), "%.*s", (int)dlen, (const char *)data);
            const char *s = strstr(first, ",s=");
            found = s != NULL;
            if (found)
                snprintf(out, outsz, "%.*s", (int)strcspn(s + 3, ","), s + 3);
        } else if (!raw_auth_step(fd, &sc, "not the password", body, len)) {
            break;
        }
    }
    scram_client_free(&sc);
    close(fd);
    return found;
}

int raw_session(int port, const char *user, const char *db)
{
    return raw_session_app(port, user, db, NULL);
}

int raw_session_app(int port, const char *user, const char *db, const char *app)
{
    int fd = raw_connect(port);
    struct buf b;
    unsigned char body[4096];
    size_t len;
    int t;
    cr_assert(fd >= 0);
    buf_init(&b);
    struct startup_param params[] = {
        {"user", user}, {"database", db}, {"application_name", app ? app : ""}};
    proto_startup(&b, params, app ? 3 : 2);
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) != 'Z')
        cr_assert(t >= 0 && t != 'E', "raw login failed");
    return fd;
}

void raw_query(int fd, const char *sql)
{
    struct buf b;
    buf_init(&b);
    proto_query(&b, sql);
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
}

const char *raw_expect_error(int fd)
{
    static unsigned char body[65536];
    size_t len;
    int t;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) >= 0)
        if (t == 'E')
            return raw_error_sqlstate(body, len);
    return "";
}

void raw_put_parse(struct buf *b, const char *name, const char *sql)
{
    buf_msg_start(b, 'P');
    buf_put_str(b, name);
    buf_put_str(b, sql);
    buf_put_u16(b, 0);
    buf_msg_finish(b);
}

void raw_put_bind(struct buf *b, const char *portal, const char *stmt)
{
    buf_msg_start(b, 'B');
    buf_put_str(b, portal);
    buf_put_str(b, stmt);
    buf_put_u16(b, 0);
    buf_put_u16(b, 0);
    buf_put_u16(b, 0);
    buf_msg_finish(b);
}

void raw_put_execute(struct buf *b, const char *portal)
{
    raw_put_execute_n(b, portal, 0);
}

void raw_put_execute_n(struct buf *b, const char *portal, uint32_t max_rows)
{
    buf_msg_start(b, 'E');
    buf_put_str(b, portal);
    buf_put_u32(b, max_rows);
    buf_msg_finish(b);
}

void raw_put_describe(struct buf *b, char kind, const char *name)
{
    buf_msg_start(b, 'D');
    buf_put_u8(b, (uint8_t)kind);
    buf_put_str(b, name);
    buf_msg_finish(b);
}

void raw_put_close(struct buf *b, char kind, const char *name)
{
    buf_msg_start(b, 'C');
    buf_put_u8(b, (uint8_t)kind);
    buf_put_str(b, name);
    buf_msg_finish(b);
}

void raw_put_empty(struct buf *b, char type)
{
    buf_msg_start(b, (uint8_t)type);
    buf_msg_finish(b);
}

void raw_put_query(struct buf *b, const char *sql)
{
    buf_msg_start(b, 'Q');
    buf_put_str(b, sql);
    buf_msg_finish(b);
}

void raw_put_pbe(struct buf *b, const char *sql)
{
    raw_put_parse(b, "", sql);
    raw_put_bind(b, "", "");
    raw_put_execute(b, "");
}

void raw_put_copy_data(struct buf *b, const void *p, size_t n)
{
    buf_msg_start(b, 'd');
    buf_put_bytes(b, p, n);
    buf_msg_finish(b);
}

void raw_put_copy_str(struct buf *b, const char *s)
{
    raw_put_copy_data(b, s, strlen(s));
}

int raw_count_replies(int fd, int ready, int *errors, int *rows)
{
    int seen = 0, type;
    unsigned char msg[8192];
    size_t len;
    *errors = *rows = 0;
    while (seen < ready && (type = raw_read_msg(fd, msg, sizeof(msg), &len, 5000)) > 0) {
        seen += type == 'Z';
        *errors += type == 'E';
        *rows += type == 'D';
    }
    return seen;
}

int raw_answer_byte(int fd)
{
    unsigned char c = 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 3000) != 1 || read(fd, &c, 1) != 1)
        return -1;
    return c;
}

void raw_send_request(int fd, uint32_t code)
{
    unsigned char req[8] = {0, 0, 0, 8, code >> 24, code >> 16, code >> 8, code};
    cr_assert_eq(send(fd, req, 8, MSG_NOSIGNAL), 8);
}

void raw_send_sasl_response(int fd, const char *text)
{
    struct buf b;
    buf_init(&b);
    proto_sasl_response(&b, text, strlen(text));
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
}

void raw_send_startup(int fd, const char *user, const char *db)
{
    struct startup_param params[] = {{"user", user}, {"database", db}};
    struct buf b;
    buf_init(&b);
    proto_startup(&b, params, 2);
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
}

uint32_t raw_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

bool raw_keyed_try(int port, struct rawsess *s, const char *db)
{
    memset(s, 0, sizeof(*s));
    s->fd = raw_connect(port);
    if (s->fd < 0)
        return false;
    struct buf b;
    buf_init(&b);
    struct startup_param p[] = {{"user", "carol"}, {"database", db}};
    proto_startup(&b, p, 2);
    bool ok = raw_send(s->fd, &b);
    buf_free(&b);
    unsigned char body[4096];
    size_t len;
    int t;
    bool keyed = false;
    while (ok && (t = raw_read_msg(s->fd, body, sizeof(body), &len, 5000)) >= 0) {
        if (t == 'K' && len == 8) {
            s->pid = raw_be32(body);
            s->key = raw_be32(body + 4);
            keyed = true;
        } else if (t == 'Z') {
            return keyed;
        } else if (t == 'E') {
            return false;
        }
    }
    return false;
}

bool raw_replies(int fd, int ready, char *states, size_t statesz, char *rows, size_t rowsz,
                 int timeout_ms)
{
    unsigned char body[8192];
    size_t len;
    int t, seen = 0;
    states[0] = rows[0] = '\0';
    while (seen < ready && (t = raw_read_msg(fd, body, sizeof(body), &len, timeout_ms)) >= 0) {
        if (t == 'Z')
            seen++;
        else if (t == 'E')
            snprintf(states + strlen(states), statesz - strlen(states), "%s|",
                     raw_error_sqlstate(body, len));
        else if (t == 'D' && len >= 6) {
            uint32_t l = raw_be32(body + 2);
            if (l != 0xffffffffu && l < 100 && 6 + l <= len)
                snprintf(rows + strlen(rows), rowsz - strlen(rows), "%.*s|", (int)l,
                         (const char *)body + 6);
        }
    }
    return seen == ready;
}

bool raw_ssl_send_startup(SSL *ssl, const char *user, const char *db)
{
    struct startup_param params[] = {{"user", user}, {"database", db}};
    struct buf b;
    buf_init(&b);
    proto_startup(&b, params, 2);
    bool ok = !b.failed && SSL_write(ssl, b.data, (int)b.len) == (int)b.len;
    buf_free(&b);
    return ok;
}

SSL *raw_ssl_connect(int fd, const char *crt, const char *key, int timeout_s)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    cr_assert(ctx);
    if (crt)
        cr_assert_eq(SSL_CTX_use_certificate_file(ctx, crt, SSL_FILETYPE_PEM), 1, "%s", crt);
    if (key)
        cr_assert_eq(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1, "%s", key);
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* (the session holds it) */
    cr_assert(ssl);
    SSL_set_fd(ssl, fd);
    struct timeval tv = {timeout_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (SSL_connect(ssl) != 1) {
        raw_ssl_close(ssl);
        return NULL;
    }
    return ssl;
}

void raw_ssl_close(SSL *ssl)
{
    SSL_free(ssl);
    ERR_clear_error();
}

/* Reads n bytes into p (NULL: dropped) from ssl; false when the session ends first. */
static bool ssl_read_exactly(SSL *ssl, unsigned char *p, size_t n)
{
    unsigned char junk[4096];
    for (size_t got = 0; got < n;) {
        size_t want = n - got;
        if (!p && want > sizeof(junk))
            want = sizeof(junk);
        int k = SSL_read(ssl, p ? p + got : junk, (int)want);
        if (k <= 0)
            return false;
        got += (size_t)k;
    }
    return true;
}

int raw_ssl_read_msg(SSL *ssl, char state[6], int32_t *first_int)
{
    unsigned char hdr[5], body[4096];
    if (!ssl_read_exactly(ssl, hdr, 5))
        return -1;
    uint32_t total =
        (uint32_t)hdr[1] << 24 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 8 | hdr[4];
    if (total < 4)
        return -1;
    size_t len = total - 4, keep = len < sizeof(body) ? len : sizeof(body);
    if (!ssl_read_exactly(ssl, body, keep) || !ssl_read_exactly(ssl, NULL, len - keep))
        return -1;
    if (hdr[0] == 'E' && state)
        snprintf(state, 6, "%s", raw_error_sqlstate(body, keep));
    if (first_int)
        *first_int = keep >= 4 ? (int32_t)((uint32_t)body[0] << 24 | (uint32_t)body[1] << 16 |
                                           (uint32_t)body[2] << 8 | body[3])
                               : -1;
    return hdr[0];
}

int raw_connect_tls_accepted(int port)
{
    int fd = raw_connect(port);
    cr_assert(fd >= 0);
    raw_send_request(fd, PROTO_SSL_REQUEST);
    cr_assert_eq(raw_answer_byte(fd), 'S');
    return fd;
}

int raw_cancel_async(int port, uint32_t pid, uint32_t key)
{
    int fd = raw_connect(port);
    if (fd < 0)
        return -1;
    struct buf b;
    buf_init(&b);
    proto_cancel_request(&b, pid, key);
    if (!raw_send(fd, &b)) {
        close(fd);
        fd = -1;
    }
    buf_free(&b);
    return fd;
}

double raw_wait_eof(int fd, double timeout_s)
{
    double t0 = now_s();
    struct pollfd pf = {fd, POLLIN, 0};
    char junk[512];
    while (now_s() - t0 < timeout_s) {
        if (poll(&pf, 1, 50) > 0) {
            ssize_t n = recv(fd, junk, sizeof(junk), 0);
            if (n <= 0)
                return now_s() - t0;
        }
    }
    return -1;
}

bool raw_send_queries(int fd, const char *const *sqls, int n)
{
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < n; i++)
        raw_put_query(&b, sqls[i]);
    bool ok = raw_send(fd, &b);
    buf_free(&b);
    return ok;
}
