/* http.h: one HTTPS request at a time on the event loop (libevent evhttp over an OpenSSL
 * bufferevent), for the Databricks token endpoints. The certificate is always verified. */
#ifndef LAKEPROXY_HTTP_H
#define LAKEPROXY_HTTP_H

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stddef.h>

struct http_request;

/* Called once per request. status is the HTTP status, or 0 with err set when no answer came
 * (connection, TLS, timeout, too large). body is the answer (not NUL-terminated), wiped after
 * the call returns. The request handle is invalid once this is called. */
typedef void (*http_done_fn)(void *arg, int status, const char *body, size_t len, const char *err);

struct http_options {
    const char *method;        /* "GET" or "POST" */
    const char *url;           /* https://host[:port]/path */
    const char *authorization; /* value of the Authorization header, or NULL */
    const char *content_type;  /* for a body, or NULL */
    const char *body;          /* NULL for none */
    size_t body_len;
    int timeout_ms;  /* the whole exchange */
    size_t max_body; /* longer answers fail with "answer too large" */
};

/* Starts a request; NULL with err filled when it cannot even start (bad URL, TLS set-up).
 * ctx must verify peers (tls_connect_ctx with TLS_VERIFY_FULL). */
struct http_request *http_start(struct event_base *base, struct evdns_base *dns, SSL_CTX *ctx,
                                const struct http_options *o, http_done_fn done, void *arg,
                                char *err, size_t errsz);

/* Abandons a request that has not completed: done is never called. */
void http_cancel(struct http_request *r);

#endif
