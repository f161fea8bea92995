/* conn.c: helpers shared by client and server connections: sending, direct reads, TLS run on
 * the socket itself (conn_tls_accept, conn_tls_connect), closing, deferred free. */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
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

bool conn_queue(struct bufferevent *bev, struct buf *b)
{
    return !b->failed && bufferevent_write(bev, b->data, b->len) == 0;
}

void conn_send_last(struct bufferevent *bev, struct buf *b)
{
    if (!b->failed)
        conn_write(bev, b->data, b->len);
}

static void socket_read_cb(evutil_socket_t fd, short what, void *arg);

/* Does bev read through conn itself (conn_read_direct, conn_tls_accept, conn_tls_connect)? Its
 * read event's callback is read in place, as event_get_callback would return it
 * (event_struct.h publishes it): that call, through the PLT, ran several times per
 * transaction. */
static bool reads_itself(const struct bufferevent *bev)
{
    return bev->ev_read.ev_evcallback.evcb_cb_union.evcb_callback == socket_read_cb;
}

/* TLS sessions that conn reads and writes itself (conn_tls_accept, conn_tls_connect), by socket
 * descriptor: the socket bufferevent that carries each, and its SSL. */
struct direct_tls {
    struct bufferevent *bev;
    SSL *ssl;
};
static struct direct_tls *dtls;
static size_t dtls_n;

SSL *conn_tls(const struct bufferevent *bev)
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
    SSL *ssl = conn_tls(bev);
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
    return reads_itself(bev) && !conn_tls(bev) ? bev->ev_read.ev_fd : -1; /* (event_get_fd's) */
}

/* A TLS record holds at most this much (RFC 8446 5.1, RFC 5246 6.2.1). */
enum { TLS_RECORD_MAX = 16384 };

/* Writes what bev's output holds through its SSL until the socket takes no more, a record of
 * up to TLS_RECORD_MAX bytes per SSL_write: the output's chains are often a message each, and
 * a record each would cost a record's encryption and framing per message. False on a TLS or
 * socket error (reported to bev's event callback). */
static bool tls_write_out(struct bufferevent *bev, SSL *ssl)
{
    struct evbuffer *out = bev->output;
    uint8_t record[TLS_RECORD_MAX];
    size_t len;
    while ((len = evbuffer_get_length(out)) > 0) {
        struct evbuffer_iovec v;
        size_t want = len < TLS_RECORD_MAX ? len : TLS_RECORD_MAX;
        if (evbuffer_peek(out, -1, NULL, &v, 1) < 1)
            break;
        const void *p = v.iov_base;
        if (v.iov_len < want) { /* gather a whole record (a retry sees the same front bytes);
                                   a frozen front is not copied out: thawed for it */
            evbuffer_unfreeze(out, 1);
            ev_ssize_t got = evbuffer_copyout(out, record, want);
            evbuffer_freeze(out, 1);
            if (got != (ev_ssize_t)want)
                want = v.iov_len; /* (cannot be) */
            else
                p = record;
        } else {
            want = v.iov_len > INT_MAX ? INT_MAX : v.iov_len;
        }
        ERR_clear_error();
        int n = SSL_write(ssl, p, (int)want);
        if (n > 0) {
            relay_drain_front(out, (size_t)n);
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

/* Writes bev's output through its SSL (once the handshake is done: until then it waits), the
 * write event on for what the socket does not take. */
static void tls_flush(struct bufferevent *bev, SSL *ssl)
{
    if (SSL_is_init_finished(ssl) && tls_write_out(bev, ssl) &&
        evbuffer_get_length(bev->output) > 0)
        bufferevent_enable(bev, EV_WRITE);
}

void conn_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bev->output;
    relay_settle(out); /* a run the relay holds back for out leaves first */
    if (evbuffer_get_length(out) == 0)
        return;
    evutil_socket_t fd = -1;
    if (reads_itself(bev)) {
        SSL *ssl = conn_tls(bev);
        if (ssl) {
            tls_flush(bev, ssl);
            return;
        }
        fd = bev->ev_read.ev_fd;
    } else {
        fd = bufferevent_getfd(bev);
    }
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
    if (evbuffer_get_length(conn_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
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

/* Is event ev added (to the loop: pending), as event_pending(ev, EV_READ or EV_WRITE, NULL)
 * would say of a bufferevent's read or write event? Its flag is read in place (event_struct.h
 * publishes it): the call ran several times per transaction. */
static bool event_added(const struct event *ev)
{
    return (ev->ev_evcallback.evcb_flags & EVLIST_INSERTED) != 0; /* (ev_flags) */
}

void conn_read_resume(struct bufferevent *bev)
{
    struct event *ev = &bev->ev_read;
    if (!reads_itself(bev) || !(bev->enabled & EV_READ) || /* (bufferevent_get_enabled's) */
        event_added(ev) || read_room(bev, evbuffer_get_length(bev->input)) == 0)
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

/* One recv() of at most room bytes from bev's plain socket fd into chunk: the bytes read, 0
 * when there are none yet, -1 after reporting EOF or an error. */
static ssize_t read_plain(struct bufferevent *bev, evutil_socket_t fd, uint8_t *chunk, size_t room)
{
    ssize_t n = recv(fd, chunk, room, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0) {
        read_failed(bev, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR));
        return -1;
    }
    return n;
}

/* One SSL_read of bev's TLS session into chunk (CONN_READ_CHUNK, a whole TLS record, whatever
 * the read limit's room: the SSL keeps nothing decrypted, which only a read event brings back;
 * the limit is passed by less than a record): the bytes read, 0 when there are none yet, -1
 * after reporting EOF (close_notify) or an error. */
static ssize_t read_tls(struct bufferevent *bev, SSL *ssl, uint8_t *chunk)
{
    ERR_clear_error();
    int n = SSL_read(ssl, chunk, CONN_READ_CHUNK);
    if (n > 0) {
        if (SSL_pending(ssl) > 0) /* (not expected: see above; now, as bev may close later) */
            event_active(&bev->ev_read, EV_READ, 1);
        return n;
    }
    int e = SSL_get_error(ssl, n);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    if (e == SSL_ERROR_WANT_WRITE) { /* (a key update waits for the socket to take it) */
        bufferevent_enable(bev, EV_WRITE);
        return 0;
    }
    read_failed(bev,
                BEV_EVENT_READING | (e == SSL_ERROR_ZERO_RETURN ? BEV_EVENT_EOF : BEV_EVENT_ERROR));
    return -1;
}

/* Moves the TLS handshake of conn_tls_accept or conn_tls_connect on, from either event: the write
 * event is on while the handshake waits to write, off otherwise. Once done, what bev's output holds
 * goes out and BEV_EVENT_CONNECTED is reported (last: the event callback may free bev); a failed
 * handshake is reported as a read error. */
static void tls_handshake_step(struct bufferevent *bev, SSL *ssl)
{
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_WRITE) {
        bufferevent_enable(bev, EV_WRITE);
        return;
    }
    bufferevent_disable(bev, EV_WRITE);
    if (e == SSL_ERROR_WANT_READ)
        return;
    if (e != SSL_ERROR_NONE) {
        read_failed(bev, BEV_EVENT_READING | BEV_EVENT_ERROR);
        return;
    }
    event_active(&bev->ev_read, EV_READ, 1); /* (records that came with the last flight) */
    tls_flush(bev, ssl);
    bufferevent_trigger_event(bev, BEV_EVENT_CONNECTED, 0);
}

/* The read event of a socket bufferevent that conn reads itself: one recv() (plain) or one
 * SSL_read (conn_tls_accept, conn_tls_connect; the handshake first), offered to the read
 * callback's fast path; else (declined) into the input buffer, then the read callback
 * (subject to the low watermark), as libevent would. At the read limit the event is taken off
 * (reads stay enabled) until conn_read_resume. */
static void socket_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bufferevent *bev = arg;
    if (what == EV_TIMEOUT) {
        read_failed(bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
        return;
    }
    SSL *ssl = conn_tls(bev);
    if (ssl && !SSL_is_init_finished(ssl)) {
        tls_handshake_step(bev, ssl);
        return;
    }
    size_t had = evbuffer_get_length(bev->input);
    size_t room = read_room(bev, had);
    if (room == 0) {
        event_del(&bev->ev_read);
        return;
    }
    uint8_t chunk[CONN_READ_CHUNK];
    ssize_t n = ssl ? read_tls(bev, ssl, chunk) : read_plain(bev, fd, chunk, room);
    if (n <= 0)
        return;
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

/* Makes socket_read_cb bev's read event on descriptor fd, keeping whether the event is added
 * (reads enabled and not suspended). */
static void own_read_event(struct bufferevent *bev, evutil_socket_t fd)
{
    struct event *ev = &bev->ev_read;
    bool pending = event_added(ev);
    event_del(ev);
    event_assign(ev, bufferevent_get_base(bev), fd, EV_READ | EV_PERSIST | EV_FINALIZE,
                 socket_read_cb, bev);
    if (pending)
        event_add(ev, evutil_timerisset(&bev->timeout_read) ? &bev->timeout_read : NULL);
}

void conn_read_direct(struct bufferevent *bev, size_t limit, conn_take_fn take)
{
    if (take && bev->readcb)
        set_taker(bev->readcb, take);
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0 || reads_itself(bev))
        return;
    if (bev->wm_read.high) /* libevent's watermark callback off, and its suspension lifted */
        bufferevent_setwatermark(bev, EV_READ, 0, 0);
    bev->wm_read.high = limit; /* read_room's, alone: see there */
    own_read_event(bev, fd);
    drop_output_callbacks(bev);
}

/* The write event of a socket bufferevent whose TLS conn runs: the handshake, or what the
 * socket would not take before, through the SSL; the write callback once the output is down
 * to the write low watermark, as libevent's. */
static void tls_write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct bufferevent *bev = arg;
    if (what == EV_TIMEOUT) {
        bufferevent_disable(bev, EV_WRITE);
        bufferevent_trigger_event(bev, BEV_EVENT_WRITING | BEV_EVENT_TIMEOUT, 0);
        return;
    }
    SSL *ssl = conn_tls(bev);
    if (ssl && !SSL_is_init_finished(ssl)) {
        tls_handshake_step(bev, ssl);
        return;
    }
    if (!ssl || !tls_write_out(bev, ssl))
        return;
    if (bev->enabled & EV_READ) /* (a read may have waited for this: SSL_read's own write) */
        event_active(&bev->ev_read, EV_READ, 1);
    if (evbuffer_get_length(bev->output) <= bev->wm_write.low)
        bufferevent_trigger(bev, EV_WRITE, 0);
}

/* Makes conn run ssl on bev's socket fd from now on: reads (socket_read_cb, at most limit
 * bytes of input; take the read callback's fast path) and writes (conn_flush, tls_write_cb),
 * the bufferevent's callbacks and enabled events kept; its output loses its callbacks. */
static void take_tls(struct bufferevent *bev, evutil_socket_t fd, SSL *ssl, size_t limit,
                     conn_take_fn take)
{
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    dtls[fd] = (struct direct_tls){bev, ssl};
    if (take && bev->readcb)
        set_taker(bev->readcb, take);
    if (bev->wm_read.high || bev->wm_read.low) /* (as conn_read_direct) */
        bufferevent_setwatermark(bev, EV_READ, 0, 0);
    bev->wm_read.high = limit;
    own_read_event(bev, fd);
    bool writing = event_added(&bev->ev_write);
    event_del(&bev->ev_write);
    event_assign(&bev->ev_write, bufferevent_get_base(bev), fd, EV_WRITE | EV_PERSIST | EV_FINALIZE,
                 tls_write_cb, bev);
    if (writing)
        event_add(&bev->ev_write,
                  evutil_timerisset(&bev->timeout_write) ? &bev->timeout_write : NULL);
    drop_output_callbacks(bev);
}

/* Starts TLS session ssl on bev's plain socket, run by conn from now on (conn_tls_accept,
 * conn_tls_connect): false when it cannot be. */
static bool start_tls(struct bufferevent *bev, SSL *ssl, size_t limit, conn_take_fn take)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0 || reads_itself(bev) || evbuffer_get_length(bev->input) > 0 ||
        evbuffer_get_length(bev->output) > 0 || !dtls_room(fd) || !SSL_set_fd(ssl, fd))
        return false;
    take_tls(bev, fd, ssl, limit, take);
    bufferevent_enable(bev, EV_READ);
    return true;
}

bool conn_tls_accept(struct bufferevent *bev, SSL *ssl, size_t limit, conn_take_fn take)
{
    if (!start_tls(bev, ssl, limit, take))
        return false;
    SSL_set_accept_state(ssl); /* (the client speaks first) */
    return true;
}

bool conn_tls_connect(struct bufferevent *bev, SSL *ssl, size_t limit, conn_take_fn take)
{
    if (!start_tls(bev, ssl, limit, take))
        return false;
    SSL_set_connect_state(ssl);
    event_active(&bev->ev_read, EV_READ, 1); /* the ClientHello, on the next loop turn */
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

void conn_close_after_flush(struct bufferevent *bev)
{
    SSL *ssl = conn_tls(bev);
    if (ssl && !SSL_is_init_finished(ssl)) { /* nothing can reach the peer before TLS is up */
        free_socket(bev);
        return;
    }
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
