/* http.c: HTTPS requests on the event loop for credential providers: evhttp over a verifying
 * OpenSSL bufferevent, one connection per request, a deadline for the whole exchange and a
 * bound on the answer's size. Answers are wiped once handed over (they carry tokens). */
#include "http.h"

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"

struct http_request {
    struct event_base *base;
    struct evhttp_connection *conn;
    struct evhttp_request *req;
    struct bufferevent *bev;
    struct event *deadline;
    http_done_fn done;
    void *arg;
    int timeout_ms;
    enum evhttp_request_error error;
    bool failed;
};

/* Frees the connection and the request object (never from inside an evhttp callback). */
static void request_free(struct http_request *r)
{
    if (r->deadline)
        event_free(r->deadline);
    if (r->conn)
        evhttp_connection_free(r->conn); /* frees a request still queued on it, silently */
    free(r);
}

static void request_free_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    request_free(arg);
}

/* Frees r on the next loop turn: evhttp still uses the connection after its callbacks. */
static void request_free_later(struct http_request *r)
{
    struct timeval now = {0, 0};
    if (event_base_once(r->base, -1, EV_TIMEOUT, request_free_cb, r, &now) != 0)
        request_free(r); /* cannot defer (out of memory): free now rather than leak */
}

/* Hands the outcome to the owner exactly once. */
static void finish(struct http_request *r, int status, const char *body, size_t len,
                   const char *err)
{
    http_done_fn done = r->done;
    r->done = NULL;
    if (r->deadline)
        event_del(r->deadline);
    if (done)
        done(r->arg, status, body, len, err);
}

/* Explains a transport failure, with the certificate problem when there was one. */
static void describe_failure(struct http_request *r, char *out, size_t outsz)
{
    SSL *ssl = r->bev ? bufferevent_openssl_get_ssl(r->bev) : NULL;
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    unsigned long tls_err = r->bev ? bufferevent_get_openssl_error(r->bev) : 0;
    if (verify != X509_V_OK) {
        snprintf(out, outsz, "TLS certificate verification failed: %s",
                 X509_verify_cert_error_string(verify));
        return;
    }
    if (tls_err) {
        char e[200];
        ERR_error_string_n(tls_err, e, sizeof(e));
        snprintf(out, outsz, "TLS error: %s", e);
        return;
    }
    switch (r->error) {
    case EVREQ_HTTP_TIMEOUT: snprintf(out, outsz, "timed out"); break;
    case EVREQ_HTTP_EOF: snprintf(out, outsz, "connection closed before an answer"); break;
    case EVREQ_HTTP_INVALID_HEADER: snprintf(out, outsz, "invalid HTTP answer"); break;
    case EVREQ_HTTP_DATA_TOO_LONG: snprintf(out, outsz, "answer too large"); break;
    default: snprintf(out, outsz, "could not connect"); break;
    }
}

static void on_error(enum evhttp_request_error error, void *arg)
{
    struct http_request *r = arg;
    r->error = error;
    r->failed = true;
}

static void on_done(struct evhttp_request *req, void *arg)
{
    struct http_request *r = arg;
    char err[300];
    r->req = NULL; /* evhttp frees it after this callback */
    if (!req || r->failed || evhttp_request_get_response_code(req) == 0) {
        describe_failure(r, err, sizeof(err));
        finish(r, 0, NULL, 0, err);
    } else {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        unsigned char *body = evbuffer_pullup(in, -1);
        if (!body)
            len = 0; /* (out of memory: read as an empty body) */
        finish(r, evhttp_request_get_response_code(req), body ? (const char *)body : "", len, NULL);
        if (body)
            OPENSSL_cleanse(body, len);
    }
    request_free_later(r);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct http_request *r = arg;
    char err[64];
    snprintf(err, sizeof(err), "no answer within %d ms", r->timeout_ms);
    finish(r, 0, NULL, 0, err);
    request_free(r); /* not inside evhttp: the queued request goes with the connection */
}

/* Host header value: host, with the port when it is not 443. */
static void host_header(const char *host, int port, char *out, size_t outsz)
{
    bool v6 = strchr(host, ':') != NULL;
    if (port == 443)
        snprintf(out, outsz, v6 ? "[%s]" : "%s", host);
    else
        snprintf(out, outsz, v6 ? "[%s]:%d" : "%s:%d", host, port);
}

/* Adds headers and body to the request. */
static bool fill_request(struct evhttp_request *req, const struct http_options *o, const char *host)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    bool ok = evhttp_add_header(h, "Host", host) == 0 &&
              evhttp_add_header(h, "Accept", "application/json") == 0 &&
              evhttp_add_header(h, "User-Agent", "lakeproxy/" LAKEPROXY_VERSION) == 0 &&
              evhttp_add_header(h, "Connection", "close") == 0;
    if (ok && o->authorization)
        ok = evhttp_add_header(h, "Authorization", o->authorization) == 0;
    if (ok && o->body) {
        char n[32];
        snprintf(n, sizeof(n), "%zu", o->body_len);
        ok = evhttp_add_header(h, "Content-Type", o->content_type) == 0 &&
             evhttp_add_header(h, "Content-Length", n) == 0 &&
             evbuffer_add(evhttp_request_get_output_buffer(req), o->body, o->body_len) == 0;
    }
    return ok;
}

/* Opens the TLS connection object for uri's host; fills r->bev and r->conn. */
static bool open_connection(struct http_request *r, struct evdns_base *dns, SSL_CTX *ctx,
                            const char *host, int port, char *err, size_t errsz)
{
    SSL *ssl = tls_connect_ssl(ctx, TLS_VERIFY_FULL, host);
    if (!ssl) {
        snprintf(err, errsz, "cannot set up TLS for %s", host);
        return false;
    }
    r->bev = bufferevent_openssl_socket_new(r->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!r->bev) {
        SSL_free(ssl);
        snprintf(err, errsz, "out of memory");
        return false;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(r->bev, 1);
    r->conn = evhttp_connection_base_bufferevent_new(r->base, dns, r->bev, host, (uint16_t)port);
    if (!r->conn) {
        bufferevent_free(r->bev);
        r->bev = NULL;
        snprintf(err, errsz, "out of memory");
        return false;
    }
    return true;
}

struct http_request *http_start(struct event_base *base, struct evdns_base *dns, SSL_CTX *ctx,
                                const struct http_options *o, http_done_fn done, void *arg,
                                char *err, size_t errsz)
{
    struct evhttp_uri *uri = evhttp_uri_parse(o->url);
    const char *scheme = uri ? evhttp_uri_get_scheme(uri) : NULL;
    const char *host = uri ? evhttp_uri_get_host(uri) : NULL;
    struct http_request *r = NULL;
    char hosthdr[300], target[2048];
    if (!uri || !scheme || strcmp(scheme, "https") != 0 || !host || !*host) {
        snprintf(err, errsz, "not an https:// URL");
        goto fail;
    }
    int port = evhttp_uri_get_port(uri) > 0 ? evhttp_uri_get_port(uri) : 443;
    const char *path = evhttp_uri_get_path(uri), *query = evhttp_uri_get_query(uri);
    snprintf(target, sizeof(target), "%s%s%s", path && *path ? path : "/", query ? "?" : "",
             query ? query : "");
    host_header(host, port, hosthdr, sizeof(hosthdr));
    r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    r->base = base;
    r->done = done;
    r->arg = arg;
    r->timeout_ms = o->timeout_ms;
    if (!open_connection(r, dns, ctx, host, port, err, errsz))
        goto fail;
    evhttp_connection_set_max_body_size(r->conn, (ev_ssize_t)o->max_body);
    evhttp_connection_set_max_headers_size(r->conn, 64 * 1024);
    evhttp_connection_set_retries(r->conn, 0);
    r->req = evhttp_request_new(on_done, r);
    r->deadline = evtimer_new(base, on_deadline, r);
    struct timeval tv = {o->timeout_ms / 1000, (o->timeout_ms % 1000) * 1000};
    if (!r->req || !r->deadline || evtimer_add(r->deadline, &tv) != 0) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    evhttp_request_set_error_cb(r->req, on_error);
    enum evhttp_cmd_type cmd = strcmp(o->method, "GET") == 0 ? EVHTTP_REQ_GET : EVHTTP_REQ_POST;
    if (!fill_request(r->req, o, hosthdr)) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    if (evhttp_make_request(r->conn, r->req, cmd, target) != 0) {
        r->req = NULL; /* evhttp_make_request frees it on failure */
        snprintf(err, errsz, "cannot send the request");
        goto fail;
    }
    evhttp_uri_free(uri);
    return r;
fail:
    if (r && r->req)
        evhttp_request_free(r->req);
    if (r)
        request_free(r);
    if (uri)
        evhttp_uri_free(uri);
    return NULL;
}

void http_cancel(struct http_request *r)
{
    if (!r)
        return;
    r->done = NULL;
    request_free(r);
}
