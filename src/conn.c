/* conn.c: helpers shared by client and server connections: sending, closing, deferred free. */
#include "conn.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>

#define FLUSH_TIMEOUT_S 5

bool conn_send(struct bufferevent *bev, struct buf *b)
{
    if (b->failed || bufferevent_write(bev, b->data, b->len) != 0)
        return false;
    conn_flush(bev);
    return true;
}

void conn_send_last(struct bufferevent *bev, struct buf *b)
{
    if (!b->failed)
        conn_write(bev, b->data, b->len);
}

void conn_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) == 0 || bufferevent_get_underlying(bev))
        return;
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd >= 0) { /* libevent keeps the front of a socket's output frozen outside its own
                      write callback; thaw it for this write */
        evbuffer_unfreeze(out, 1);
        evbuffer_write(out, fd);
        evbuffer_freeze(out, 1);
    }
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(bev, EV_WRITE);
}

void conn_write(struct bufferevent *bev, const void *data, size_t len)
{
    bufferevent_write(bev, data, len);
    conn_flush(bev);
}

void conn_write_done(struct bufferevent *bev)
{
    if (!bufferevent_get_underlying(bev) &&
        evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
}

short conn_initial_events(struct bufferevent *bev)
{
    return bufferevent_get_underlying(bev) ? EV_READ | EV_WRITE : EV_READ;
}

static void flush_write_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_free(bev);
}

static void flush_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)what;
    (void)arg;
    bufferevent_free(bev);
}

/* Closes a plain socket bufferevent once its output is written (or after a timeout). */
static void close_plain_after_flush(struct bufferevent *bev)
{
    struct timeval tv = {FLUSH_TIMEOUT_S, 0};
    bufferevent_disable(bev, EV_READ);
    bufferevent_setcb(bev, NULL, flush_write_cb, flush_event_cb, NULL);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_set_timeouts(bev, NULL, &tv);
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        bufferevent_free(bev);
        return;
    }
    bufferevent_enable(bev, EV_WRITE);
}

/* A TLS filter whose output has gone into the socket's buffer: add close_notify, free the
 * filter and its SSL, and let the socket flush the records on its own. Filters are created
 * without BEV_OPT_CLOSE_ON_FREE so that freeing one does not drop the socket's pending data.
 * Runs on a later loop turn: libevent's TLS filter may still be using the SSL in the
 * callback that decided to close. */
static void finish_tls(void *arg)
{
    struct bufferevent *tls = arg;
    struct bufferevent *under = bufferevent_get_underlying(tls);
    SSL *ssl = bufferevent_openssl_get_ssl(tls);
    bool flushed = evbuffer_get_length(bufferevent_get_output(tls)) == 0;
    if (flushed && ssl && SSL_is_init_finished(ssl))
        SSL_shutdown(ssl);
    ERR_clear_error();
    bufferevent_free(tls);
    SSL_free(ssl);
    if (flushed)
        close_plain_after_flush(under);
    else
        bufferevent_free(under);
}

/* Schedules finish_tls once, silencing the filter until then. */
static void finish_tls_later(struct bufferevent *tls)
{
    bufferevent_setcb(tls, NULL, NULL, NULL, NULL);
    bufferevent_disable(tls, EV_READ | EV_WRITE);
    conn_defer(bufferevent_get_base(tls), finish_tls, tls);
}

static void tls_flush_write_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        finish_tls_later(bev);
}

static void tls_flush_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)what;
    (void)arg;
    finish_tls_later(bev);
}

void conn_close_after_flush(struct bufferevent *bev)
{
    if (!bufferevent_get_underlying(bev)) {
        close_plain_after_flush(bev);
        return;
    }
    struct timeval tv = {FLUSH_TIMEOUT_S, 0};
    bufferevent_disable(bev, EV_READ);
    bufferevent_setcb(bev, NULL, tls_flush_write_cb, tls_flush_event_cb, NULL);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_set_timeouts(bev, NULL, &tv);
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        finish_tls_later(bev);
        return;
    }
    bufferevent_enable(bev, EV_WRITE);
}

struct deferred {
    void (*fn)(void *);
    void *arg;
};

static void deferred_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct deferred *d = arg;
    d->fn(d->arg);
    free(d);
}

void conn_defer(struct event_base *base, void (*fn)(void *), void *arg)
{
    struct deferred *d = malloc(sizeof(*d));
    struct timeval zero = {0, 0};
    if (!d) {
        fn(arg); /* out of memory: run now rather than leak */
        return;
    }
    d->fn = fn;
    d->arg = arg;
    if (event_base_once(base, -1, EV_TIMEOUT, deferred_cb, d, &zero) != 0) {
        free(d);
        fn(arg);
    }
}

void conn_format_addr(const struct sockaddr *sa, char *out, size_t outsz)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    } else if (sa->sa_family == AF_UNIX) {
        snprintf(out, outsz, "unix");
        return;
    }
    snprintf(out, outsz, "%s:%d", host, port);
}
