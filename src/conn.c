/* conn.c: helpers shared by client and server connections: sending, direct reads, closing,
 * deferred free. */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "config.h"
#include "monotime.h"
#include "relay.h"

#define FLUSH_TIMEOUT_S 5
/* At most this much is read per read event (libevent: 4 KB, after an ioctl asking how much). */
#define CONN_READ_CHUNK 16384

void conn_tune_tcp(int fd, const struct tcp_config *t)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (t->keepalive_idle_s > 0) {
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &t->keepalive_idle_s, sizeof(int));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &t->keepalive_interval_s, sizeof(int));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &t->keepalive_count, sizeof(int));
    }
    if (t->user_timeout_ms > 0) {
        unsigned int ms = (unsigned int)t->user_timeout_ms;
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
    }
}

struct evbuffer *conn_input(const struct bufferevent *bev)
{
    return bev->input;
}

struct evbuffer *conn_output(const struct bufferevent *bev)
{
    return bev->output;
}

bool conn_send(struct bufferevent *bev, struct buf *b)
{
    if (!conn_queue(bev, b))
        return false;
    conn_flush(bev);
    return true;
}

/* What a socket under a TLS filter may hold to be written: a few TLS records (16 KiB each). */
enum { CONN_TLS_SOCKET_BACKLOG = 64 * 1024 };

void conn_bound_tls_socket(struct bufferevent *sock)
{
    bufferevent_setwatermark(sock, EV_WRITE, 0, CONN_TLS_SOCKET_BACKLOG);
}

bool conn_queue(struct bufferevent *bev, struct buf *b)
{
    return !b->failed && bufferevent_write(bev, b->data, b->len) == 0;
}

void conn_send_last(struct bufferevent *bev, struct buf *b)
{
    if (!b->failed)
        conn_write(bev, b->data, b->len);
}

static void direct_read_cb(evutil_socket_t fd, short what, void *arg);

/* Is bev's read event direct_read_cb's (conn_read_direct)? The callback is read in place, as
 * event_get_callback would return it (event_struct.h publishes it): that call, through the
 * PLT, ran several times per transaction. */
static bool reads_direct(const struct bufferevent *bev)
{
    return bev->ev_read.ev_evcallback.evcb_cb_union.evcb_callback == direct_read_cb;
}

static void tls_read_cb(evutil_socket_t fd, short what, void *arg);

/* Does bev read through conn itself (conn_read_direct or conn_tls_direct)? */
static bool reads_itself(const struct bufferevent *bev)
{
    void (*cb)(evutil_socket_t, short, void *) =
        bev->ev_read.ev_evcallback.evcb_cb_union.evcb_callback;
    return cb == direct_read_cb || cb == tls_read_cb;
}

/* TLS sessions that conn reads and writes itself (conn_tls_direct), by socket descriptor: the
 * socket bufferevent that carries each, and its SSL. */
struct direct_tls {
    struct bufferevent *bev;
    SSL *ssl;
};
static struct direct_tls *dtls;
static size_t dtls_n;

/* The SSL conn reads and writes bev through, or NULL (plain, or a libevent TLS filter). */
static SSL *tls_of(const struct bufferevent *bev)
{
    evutil_socket_t fd = bev->ev_read.ev_fd;
    return fd >= 0 && (size_t)fd < dtls_n && dtls[fd].bev == bev ? dtls[fd].ssl : NULL;
}

/* Makes room in dtls for descriptor fd. */
static bool dtls_room(evutil_socket_t fd)
{
    if ((size_t)fd < dtls_n)
        return true;
    size_t n = dtls_n ? dtls_n : 64;
    while (n <= (size_t)fd)
        n *= 2;
    struct direct_tls *more = realloc(dtls, n * sizeof(*more));
    if (!more)
        return false;
    memset(more + dtls_n, 0, (n - dtls_n) * sizeof(*more));
    dtls = more;
    dtls_n = n;
    return true;
}

/* Ends bev's TLS session: close_notify (best effort), the SSL freed, its entry cleared. */
static void release_tls(struct bufferevent *bev)
{
    SSL *ssl = tls_of(bev);
    if (!ssl)
        return;
    if (SSL_is_init_finished(ssl))
        SSL_shutdown(ssl);
    ERR_clear_error();
    SSL_free(ssl);
    dtls[bev->ev_read.ev_fd] = (struct direct_tls){0};
}

int conn_plain_fd(struct bufferevent *bev)
{
    return reads_direct(bev) ? bev->ev_read.ev_fd : -1; /* (event_get_fd's field) */
}

/* Drains n bytes from the front of a socket's output, which libevent keeps frozen. */
static void drain_output(struct evbuffer *out, size_t n)
{
    evbuffer_unfreeze(out, 1);
    evbuffer_drain(out, n);
    evbuffer_freeze(out, 1);
}

/* Writes what bev's output holds through its SSL until the socket takes no more; false on a
 * TLS or socket error (reported to bev's event callback). */
static bool tls_write_out(struct bufferevent *bev, SSL *ssl)
{
    struct evbuffer *out = bev->output;
    struct evbuffer_iovec v;
    while (evbuffer_peek(out, -1, NULL, &v, 1) >= 1 && v.iov_len > 0) {
        ERR_clear_error();
        int n = SSL_write(ssl, v.iov_base, v.iov_len > INT_MAX ? INT_MAX : (int)v.iov_len);
        if (n > 0) {
            drain_output(out, (size_t)n);
            continue;
        }
        int e = SSL_get_error(ssl, n);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
            break;
        bufferevent_disable(bev, EV_READ | EV_WRITE);
        bufferevent_trigger_event(bev, BEV_EVENT_WRITING | BEV_EVENT_ERROR,
                                  BEV_TRIG_DEFER_CALLBACKS);
        return false;
    }
    return true;
}

void conn_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bev->output;
    relay_settle(out); /* a run the relay holds back for out leaves first */
    if (evbuffer_get_length(out) == 0)
        return;
    SSL *ssl = tls_of(bev);
    if (ssl) {
        if (tls_write_out(bev, ssl) && evbuffer_get_length(out) > 0)
            bufferevent_enable(bev, EV_WRITE);
        return;
    }
    evutil_socket_t fd = conn_plain_fd(bev);
    if (fd < 0 && bufferevent_get_underlying(bev))
        return; /* TLS: the filter writes */
    if (fd < 0)
        fd = bufferevent_getfd(bev);
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
    if (!bufferevent_get_underlying(bev) && evbuffer_get_length(conn_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
}

short conn_initial_events(struct bufferevent *bev)
{
    return bufferevent_get_underlying(bev) ? EV_READ | EV_WRITE : EV_READ;
}

/* How much one read may add to bev's input, which holds len bytes: a chunk, or less to stay
 * under bev's read limit (0 when the buffer is already at or above it). The limit lives in
 * bev's read high watermark field, set by conn_read_direct and not through
 * bufferevent_setwatermark, which would hook a callback to the input that runs on every change
 * of it. */
static size_t read_room(struct bufferevent *bev, size_t len)
{
    size_t high = bev->wm_read.high;
    if (high == 0 || (high > len && high - len >= CONN_READ_CHUNK))
        return CONN_READ_CHUNK;
    return high > len ? high - len : 0;
}

/* Fast paths of read callbacks (conn_take_fn), by read callback: one per kind of connection,
 * set once, used by the event loop's thread only. */
enum { TAKERS_MAX = 4 };
static struct {
    bufferevent_data_cb readcb;
    conn_take_fn take;
} takers[TAKERS_MAX];

static void set_taker(bufferevent_data_cb readcb, conn_take_fn take)
{
    for (int i = 0; i < TAKERS_MAX; i++)
        if (takers[i].readcb == readcb || !takers[i].readcb) {
            takers[i].readcb = readcb;
            takers[i].take = take;
            return;
        }
}

static conn_take_fn taker_of(bufferevent_data_cb readcb)
{
    for (int i = 0; i < TAKERS_MAX && takers[i].readcb; i++)
        if (takers[i].readcb == readcb)
            return takers[i].take;
    return NULL;
}

/* Stops reading and reports what, as libevent's own read callback does on EOF or error. */
static void read_failed(struct bufferevent *bev, short what)
{
    bufferevent_disable(bev, EV_READ);
    bufferevent_trigger_event(bev, what, 0);
}

/* Is read event ev added (to the loop: pending), as event_pending(ev, EV_READ, NULL) would
 * say of a read event? Its flag is read in place (event_struct.h publishes it): the call ran
 * several times per transaction. */
static bool read_event_added(const struct event *ev)
{
    return (ev->ev_evcallback.evcb_flags & EVLIST_INSERTED) != 0; /* (ev_flags) */
}

void conn_read_resume(struct bufferevent *bev)
{
    struct event *ev = &bev->ev_read;
    if (!reads_itself(bev) || !(bev->enabled & EV_READ) || /* (bufferevent_get_enabled's) */
        read_event_added(ev) || read_room(bev, evbuffer_get_length(bev->input)) == 0)
        return;
    event_add(ev, evutil_timerisset(&bev->timeout_read) ? &bev->timeout_read : NULL);
}

void conn_set_read_limit(struct bufferevent *bev, size_t limit)
{
    if (bev->wm_read.high == limit) /* (where both kinds keep it) */
        return;
    if (!reads_itself(bev)) {
        bufferevent_setwatermark(bev, EV_READ, 0, limit);
        return;
    }
    bev->wm_read.high = limit;
    conn_read_resume(bev);
}

bool conn_keep_input(struct bufferevent *bev, const uint8_t *p, size_t n)
{
    struct evbuffer *in = conn_input(bev);
    evbuffer_unfreeze(in, 0); /* libevent keeps the end of a socket's input frozen */
    int added = evbuffer_add(in, p, n);
    evbuffer_freeze(in, 0);
    return added == 0;
}

/* Hands bytes p[0..n) just read (had: bytes the input held before) to the read callback's
 * fast path; else (declined) into the input buffer, then the read callback. */
static void deliver_read(struct bufferevent *bev, const uint8_t *p, size_t n, size_t had)
{
    if (bev->readcb && had + n >= bev->wm_read.low) {
        conn_take_fn take = taker_of(bev->readcb);
        if (take && take(bev->cbarg, p, n))
            return;
    }
    if (!conn_keep_input(bev, p, n)) {
        errno = ENOMEM;
        read_failed(bev, BEV_EVENT_READING | BEV_EVENT_ERROR);
        return;
    }
    bufferevent_trigger(bev, EV_READ, 0);
}

/* The read event of a plain socket bufferevent after conn_read_direct: one recv(), offered to
 * the read callback's fast path; else (declined) into the input buffer, then the read
 * callback (subject to the low watermark), as libevent would. At the read limit the
 * event is taken off (reads stay enabled) until conn_read_resume. */
static void direct_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bufferevent *bev = arg;
    if (what == EV_TIMEOUT) {
        read_failed(bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
        return;
    }
    struct evbuffer *in = bev->input;
    size_t had = evbuffer_get_length(in);
    size_t room = read_room(bev, had);
    if (room == 0) {
        event_del(&bev->ev_read);
        return;
    }
    uint8_t chunk[CONN_READ_CHUNK];
    ssize_t n = recv(fd, chunk, room, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        read_failed(bev, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR));
        return;
    }
    monotime_hold(); /* what this read sets off shares one clock reading */
    deliver_read(bev, chunk, (size_t)n, had);
    monotime_release();
}

/* Replaces bev's output buffer by one without callbacks (data and frozen front kept): libevent
 * watches a socket's output with a callback that only schedules write events, which
 * conn_flush does itself, yet every addition and removal ran it. The bufferevent frees the
 * new buffer as its own. */
static void drop_output_callbacks(struct bufferevent *bev)
{
    struct evbuffer *fresh = evbuffer_new();
    if (!fresh)
        return; /* keep the old one: slower, not wrong */
    struct evbuffer *old = bev->output;
    evbuffer_unfreeze(old, 1);
    if (evbuffer_add_buffer(fresh, old) != 0) {
        evbuffer_freeze(old, 1);
        evbuffer_free(fresh);
        return;
    }
    evbuffer_freeze(fresh, 1);
    bev->output = fresh;
    evbuffer_free(old);
}

void conn_read_direct(struct bufferevent *bev, size_t limit, conn_take_fn take)
{
    if (take && bev->readcb)
        set_taker(bev->readcb, take);
    evutil_socket_t fd = bufferevent_getfd(bev);
    struct event *ev = &bev->ev_read;
    if (fd < 0 || bufferevent_get_underlying(bev) || bufferevent_openssl_get_ssl(bev) ||
        event_get_callback(ev) == direct_read_cb)
        return;
    if (bev->wm_read.high) /* libevent's watermark callback off, and its suspension lifted */
        bufferevent_setwatermark(bev, EV_READ, 0, 0);
    bev->wm_read.high = limit; /* read_room's, alone: see there */
    /* swap the callback of libevent's read event, keeping whether it is added (reads enabled
     * and not suspended) */
    bool pending = read_event_added(ev);
    event_del(ev);
    event_assign(ev, bufferevent_get_base(bev), fd, EV_READ | EV_PERSIST | EV_FINALIZE,
                 direct_read_cb, bev);
    if (pending)
        event_add(ev, evutil_timerisset(&bev->timeout_read) ? &bev->timeout_read : NULL);
    drop_output_callbacks(bev);
}

/* The read event of a socket bufferevent after conn_tls_direct: one SSL_read (one TLS
 * record) into a chunk, then as direct_read_cb. What the SSL still holds decrypted (a record
 * larger than the room) brings this callback back on the next loop turn. */
static void tls_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct bufferevent *bev = arg;
    if (what == EV_TIMEOUT) {
        read_failed(bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
        return;
    }
    SSL *ssl = tls_of(bev);
    size_t had = evbuffer_get_length(bev->input);
    size_t room = read_room(bev, had);
    if (!ssl || room == 0) {
        event_del(&bev->ev_read);
        return;
    }
    uint8_t chunk[CONN_READ_CHUNK];
    ERR_clear_error();
    int n = SSL_read(ssl, chunk, (int)room);
    if (n <= 0) {
        int e = SSL_get_error(ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            return;
        if (e == SSL_ERROR_WANT_WRITE) { /* (a key update waits for the socket to take it) */
            bufferevent_enable(bev, EV_WRITE);
            return;
        }
        read_failed(bev, BEV_EVENT_READING |
                             (e == SSL_ERROR_ZERO_RETURN ? BEV_EVENT_EOF : BEV_EVENT_ERROR));
        return;
    }
    if (SSL_pending(ssl) > 0) /* (before delivering: bev may be closed by what it sets off) */
        event_active(&bev->ev_read, EV_READ, 1);
    monotime_hold();
    deliver_read(bev, chunk, (size_t)n, had);
    monotime_release();
}

/* The write event of a socket bufferevent after conn_tls_direct: what the socket would not
 * take before, through the SSL; the write callback once all of it is out. */
static void tls_write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct bufferevent *bev = arg;
    if (what == EV_TIMEOUT) {
        bufferevent_disable(bev, EV_WRITE);
        bufferevent_trigger_event(bev, BEV_EVENT_WRITING | BEV_EVENT_TIMEOUT, 0);
        return;
    }
    SSL *ssl = tls_of(bev);
    if (!ssl || !tls_write_out(bev, ssl))
        return;
    if (bev->enabled & EV_READ) /* (a read may have waited for this: SSL_read's own write) */
        event_active(&bev->ev_read, EV_READ, 1);
    if (evbuffer_get_length(bev->output) == 0)
        bufferevent_trigger(bev, EV_WRITE, 0);
}

bool conn_tls_direct(struct bufferevent **bevp, conn_take_fn take)
{
    struct bufferevent *tls = *bevp, *under = bufferevent_get_underlying(tls);
    SSL *ssl = bufferevent_openssl_get_ssl(tls);
    if (!under || !ssl || !SSL_is_init_finished(ssl) || SSL_pending(ssl) > 0 ||
        evbuffer_get_length(tls->input) > 0 || evbuffer_get_length(tls->output) > 0 ||
        evbuffer_get_length(under->input) > 0 || evbuffer_get_length(under->output) > 0)
        return false;
    evutil_socket_t fd = bufferevent_getfd(under);
    if (fd < 0 || !dtls_room(fd))
        return false;
    bufferevent_data_cb readcb = tls->readcb, writecb = tls->writecb;
    bufferevent_event_cb eventcb = tls->errorcb;
    void *cbarg = tls->cbarg;
    bufferevent_setcb(tls, NULL, NULL, NULL, NULL);
    bufferevent_free(tls);      /* (made without BEV_OPT_CLOSE_ON_FREE: the SSL and socket stay) */
    if (!SSL_set_fd(ssl, fd)) { /* (libevent's BIO over under goes, under stays) */
        SSL_free(ssl);
        bufferevent_setcb(under, NULL, NULL, eventcb, cbarg);
        bufferevent_trigger_event(under, BEV_EVENT_ERROR, BEV_TRIG_DEFER_CALLBACKS);
        *bevp = under;
        return true;
    }
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    dtls[fd] = (struct direct_tls){under, ssl};
    bufferevent_setwatermark(under, EV_READ | EV_WRITE, 0, 0);
    bufferevent_setcb(under, readcb, writecb, eventcb, cbarg);
    if (take && readcb)
        set_taker(readcb, take);
    struct event_base *base = bufferevent_get_base(under);
    event_del(&under->ev_read);
    event_assign(&under->ev_read, base, fd, EV_READ | EV_PERSIST | EV_FINALIZE, tls_read_cb, under);
    event_del(&under->ev_write);
    event_assign(&under->ev_write, base, fd, EV_WRITE | EV_PERSIST | EV_FINALIZE, tls_write_cb,
                 under);
    under->enabled = 0;
    bufferevent_enable(under, EV_READ);
    drop_output_callbacks(under);
    *bevp = under;
    return true;
}

/* Frees a socket bufferevent, and its TLS session when conn reads and writes it. */
static void free_socket(struct bufferevent *bev)
{
    release_tls(bev);
    bufferevent_free(bev);
}

static void flush_write_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (evbuffer_get_length(conn_output(bev)) == 0)
        free_socket(bev);
}

static void flush_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)what;
    (void)arg;
    free_socket(bev);
}

/* Closes a plain socket bufferevent once its output is written (or after a timeout). */
static void close_plain_after_flush(struct bufferevent *bev)
{
    struct timeval tv = {FLUSH_TIMEOUT_S, 0};
    bufferevent_disable(bev, EV_READ);
    bufferevent_setcb(bev, NULL, flush_write_cb, flush_event_cb, NULL);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_set_timeouts(bev, NULL, &tv);
    if (evbuffer_get_length(conn_output(bev)) == 0) {
        free_socket(bev);
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
    bool flushed = evbuffer_get_length(conn_output(tls)) == 0;
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
    if (evbuffer_get_length(conn_output(bev)) == 0)
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
    if (evbuffer_get_length(conn_output(bev)) == 0) {
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
