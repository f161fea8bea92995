/* tcprelay.c: a loopback TCP relay for fault tests, with a trap that resets one connection
 * in the middle of a large transfer. */
#include "tcprelay.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define RELAY_MAX_PAIRS 128

struct tcp_relay {
    int listen_fd, target_port;
    pthread_t acceptor;
    volatile int stop;
    pthread_mutex_t mu;
    int fds[RELAY_MAX_PAIRS][2]; /* open pairs (client side, target side); -1 when free */
    int live;                    /* pair threads still running */
    long long cut_after;         /* the trap: 0 when not armed */
    int cuts;
    int connect_delay_ms; /* new connections wait this long before reaching the target */
    bool mut_armed;       /* a mutation of the target's messages (tcp_relay_mutate) */
    struct relay_mutation mut;
    unsigned char *mut_needle, *mut_inject; /* (owned copies) */
    int mut_skip, mut_left, mut_sprung;
};

/* Messages of the target up to this size are held whole while a mutation is armed (to be
 * matched); larger ones stream past unmatched. */
#define MUT_HOLD_MAX (1u << 20)

/* A pair's reading of the target's stream as messages. */
struct down_state {
    unsigned char hdr[5];
    int hdr_have;
    uint32_t body_left;
    bool holding;       /* the current message is held whole (msg) */
    unsigned char *msg; /* header and body of a held message */
    size_t msg_len, msg_cap;
    bool swallow, dribble, close;
};

struct pair_arg {
    struct tcp_relay *r;
    int slot;
    int delay_ms; /* before connecting to the target */
};

/* Closes a socket so that the peer sees a reset, not an orderly end. */
static void close_with_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* Ends pair slot: reset when cut, else an orderly close; frees the slot. */
static void pair_close(struct tcp_relay *r, int slot, bool cut)
{
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < 2; i++) {
        if (r->fds[slot][i] < 0)
            continue; /* (the target not reached) */
        if (cut)
            close_with_reset(r->fds[slot][i]);
        else
            close(r->fds[slot][i]);
        r->fds[slot][i] = -1;
    }
    r->live--;
    pthread_mutex_unlock(&r->mu);
}

/* Has this pair carried enough towards the client to spring the trap? Springs it once. */
static bool trap_springs(struct tcp_relay *r, long long down)
{
    bool cut = false;
    pthread_mutex_lock(&r->mu);
    if (r->cut_after > 0 && down >= r->cut_after) {
        r->cut_after = 0;
        r->cuts++;
        cut = true;
    }
    pthread_mutex_unlock(&r->mu);
    return cut;
}

/* Writes n bytes at p to fd whole (one byte a write when dribbling, nothing when
 * swallowing): false on failure. */
static bool emit(struct down_state *ds, int fd, const unsigned char *p, size_t n)
{
    if (ds->swallow)
        return true;
    while (n > 0) {
        ssize_t w = write(fd, p, ds->dribble ? 1 : n);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Does held message m[0..n) spring the armed mutation? Takes it (a copy into *out, its needle
 * and inject pointing to a fresh copy the caller frees) when so. */
static bool mutation_springs(struct tcp_relay *r, const unsigned char *m, size_t n,
                             struct relay_mutation *out, unsigned char **inject)
{
    bool springs = false;
    pthread_mutex_lock(&r->mu);
    if (r->mut_armed && (!r->mut.type || r->mut.type == (char)m[0])) {
        size_t nl = r->mut.needle_len;
        springs = !r->mut_needle || memmem(m, n, r->mut_needle, nl) != NULL;
        if (springs && r->mut_skip > 0) {
            r->mut_skip--;
            springs = false;
        }
    }
    if (springs) {
        *out = r->mut;
        *inject = malloc(r->mut.inject_len + 1);
        if (r->mut.inject_len)
            memcpy(*inject, r->mut_inject, r->mut.inject_len);
        r->mut_sprung++;
        if (--r->mut_left <= 0)
            r->mut_armed = false;
    }
    pthread_mutex_unlock(&r->mu);
    return springs;
}

/* A whole held message m[0..n) towards the connecting side fd: mutated when it springs the
 * mutation. False when fd failed. */
static bool held_message(struct tcp_relay *r, struct down_state *ds, int fd, const unsigned char *m,
                         size_t n)
{
    struct relay_mutation mu;
    unsigned char *inj = NULL;
    if (!mutation_springs(r, m, n, &mu, &inj))
        return emit(ds, fd, m, n);
    /* one write for the whole output: lakeproxy reads it in one go */
    size_t total = n + mu.inject_len;
    unsigned char *o = malloc(total + 1), *q = o;
    if (mu.action != RM_AFTER && mu.inject_len) {
        memcpy(q, inj, mu.inject_len);
        q += mu.inject_len;
    }
    if (mu.action != RM_REPLACE) {
        memcpy(q, m, n);
        q += n;
    }
    if (mu.action == RM_AFTER && mu.inject_len) {
        memcpy(q, inj, mu.inject_len);
        q += mu.inject_len;
    }
    free(inj);
    for (int waited = 0; waited < mu.pause_ms && !r->stop; waited += 10)
        usleep(10 * 1000);
    if (mu.then == RM_DRIBBLE) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        ds->dribble = true;
    }
    bool ok = emit(ds, fd, o, (size_t)(q - o));
    free(o);
    if (ok && mu.flood > 0) {
        unsigned char fill[65536];
        memset(fill, mu.flood_byte, sizeof(fill));
        for (long long left = mu.flood; ok && left > 0 && !r->stop; left -= (long long)sizeof(fill))
            ok = emit(ds, fd, fill, left < (long long)sizeof(fill) ? (size_t)left : sizeof(fill));
    }
    if (mu.then == RM_SWALLOW)
        ds->swallow = true;
    else if (mu.then == RM_CLOSE)
        ds->close = true;
    return ok;
}

static void hold_append(struct down_state *ds, const unsigned char *p, size_t n)
{
    if (ds->msg_len + n > ds->msg_cap) {
        ds->msg_cap = (ds->msg_len + n) * 2;
        ds->msg = realloc(ds->msg, ds->msg_cap);
        cr_assert(ds->msg);
    }
    memcpy(ds->msg + ds->msg_len, p, n);
    ds->msg_len += n;
}

/* Passes p[0..n) read from the target on to fd, message by message: held whole (and maybe
 * mutated) when a mutation is armed as the message begins, else streamed (in one write with
 * the streamed bytes around it). False when fd failed or the mutation closes the connection. */
static bool down_feed(struct tcp_relay *r, struct down_state *ds, int fd, const unsigned char *p,
                      size_t n)
{
    const unsigned char *span = p; /* streamed bytes not yet written: span[0..span_n) */
    size_t span_n = 0;
    while (n > 0 && !ds->close) {
        if (ds->hdr_have == 0) { /* a message begins */
            pthread_mutex_lock(&r->mu);
            ds->holding = r->mut_armed;
            pthread_mutex_unlock(&r->mu);
            ds->msg_len = 0;
        }
        bool was_holding = ds->holding;
        size_t k;
        if (ds->hdr_have < 5) {
            k = 5 - (size_t)ds->hdr_have < n ? 5 - (size_t)ds->hdr_have : n;
            memcpy(ds->hdr + ds->hdr_have, p, k);
            ds->hdr_have += (int)k;
            if (ds->holding)
                hold_append(ds, p, k);
            if (ds->hdr_have == 5) {
                uint32_t len = (uint32_t)ds->hdr[1] << 24 | (uint32_t)ds->hdr[2] << 16 |
                               (uint32_t)ds->hdr[3] << 8 | ds->hdr[4];
                ds->body_left = len >= 4 ? len - 4 : 0;
                if (ds->holding && ds->body_left > MUT_HOLD_MAX) { /* too big: streams */
                    if ((span_n && !emit(ds, fd, span, span_n)) ||
                        !emit(ds, fd, ds->msg, ds->msg_len))
                        return false;
                    span_n = 0;
                    ds->holding = false;
                }
            }
        } else {
            k = ds->body_left < n ? ds->body_left : n;
            if (ds->holding)
                hold_append(ds, p, k);
            ds->body_left -= (uint32_t)k;
        }
        if (!was_holding) {
            if (span_n == 0)
                span = p;
            span_n += k;
        }
        p += k;
        n -= k;
        if (ds->hdr_have == 5 && ds->body_left == 0) { /* a whole message */
            ds->hdr_have = 0;
            if (ds->holding) {
                if (span_n && !emit(ds, fd, span, span_n))
                    return false;
                span_n = 0;
                if (!held_message(r, ds, fd, ds->msg, ds->msg_len))
                    return false;
            }
            ds->holding = false;
        }
    }
    if (span_n && !emit(ds, fd, span, span_n))
        return false;
    return !ds->close;
}

/* Copies bytes both ways between the two sockets of a pair until either closes, the relay
 * stops, or the trap cuts it. */
static void *pair_main(void *arg)
{
    struct pair_arg *pa = arg;
    struct tcp_relay *r = pa->r;
    int slot = pa->slot, delay_ms = pa->delay_ms;
    free(pa);
    /* (in this connection's thread: the ones accepted after it are not held up) */
    for (int waited = 0; waited < delay_ms && !r->stop; waited += 10)
        usleep(10 * 1000);
    int t = r->stop ? -1 : raw_connect(r->target_port);
    pthread_mutex_lock(&r->mu);
    r->fds[slot][1] = t;
    pthread_mutex_unlock(&r->mu);
    if (t < 0) {
        pair_close(r, slot, false);
        return NULL;
    }
    int fd[2] = {r->fds[slot][0], t};
    char buf[16384];
    long long down = 0;
    bool cut = false;
    struct down_state ds = {0};
    struct pollfd p[2] = {{.fd = fd[0], .events = POLLIN}, {.fd = fd[1], .events = POLLIN}};
    while (!r->stop && !cut) {
        int n = poll(p, 2, 100);
        if (n < 0)
            break;
        bool done = false;
        for (int i = 0; i < 2 && !done && n > 0; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t got = read(fd[i], buf, sizeof(buf));
            if (got <= 0)
                done = true;
            else if (i == 1)
                done = !down_feed(r, &ds, fd[0], (const unsigned char *)buf, (size_t)got);
            else
                done = write(fd[1 - i], buf, (size_t)got) != got;
            if (!done && i == 1)
                cut = trap_springs(r, down += got);
        }
        if (done)
            break;
    }
    free(ds.msg);
    pair_close(r, slot, cut);
    return NULL;
}

/* Starts a thread relaying accepted connection c to the target, which it reaches delay_ms
 * later. */
static void pair_start(struct tcp_relay *r, int c, int delay_ms)
{
    int slot = -1;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < RELAY_MAX_PAIRS && slot < 0; i++)
        if (r->fds[i][0] < 0)
            slot = i;
    if (slot >= 0) {
        r->fds[slot][0] = c;
        r->fds[slot][1] = -1; /* (connected by the pair's thread) */
        r->live++;
    }
    pthread_mutex_unlock(&r->mu);
    struct pair_arg *pa = slot >= 0 ? malloc(sizeof(*pa)) : NULL;
    pthread_t th;
    if (pa) {
        *pa = (struct pair_arg){r, slot, delay_ms};
        if (pthread_create(&th, NULL, pair_main, pa) == 0) {
            pthread_detach(th);
            return;
        }
        free(pa);
    }
    if (slot >= 0)
        pair_close(r, slot, false);
    else
        close(c);
}

static void *acceptor_main(void *arg)
{
    struct tcp_relay *r = arg;
    while (!r->stop) {
        struct pollfd p = {.fd = r->listen_fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int c = accept(r->listen_fd, NULL, NULL);
        pthread_mutex_lock(&r->mu);
        int delay_ms = r->connect_delay_ms;
        pthread_mutex_unlock(&r->mu);
        if (c >= 0)
            pair_start(r, c, delay_ms);
    }
    return NULL;
}

struct tcp_relay *tcp_relay_start(const char *listen_ip, int listen_port, int target_port)
{
    struct tcp_relay *r = calloc(1, sizeof(*r));
    cr_assert(r);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)listen_port)};
    cr_assert_eq(inet_pton(AF_INET, listen_ip, &sa.sin_addr), 1, "bad address %s", listen_ip);
    int one = 1;
    r->target_port = target_port;
    memset(r->fds, -1, sizeof(r->fds));
    pthread_mutex_init(&r->mu, NULL);
    r->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(r->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    cr_assert_eq(bind(r->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0,
                 "relay cannot listen on %s:%d", listen_ip, listen_port);
    cr_assert_eq(listen(r->listen_fd, 64), 0);
    cr_assert_eq(pthread_create(&r->acceptor, NULL, acceptor_main, r), 0);
    return r;
}

void tcp_relay_delay_connects(struct tcp_relay *r, int ms)
{
    pthread_mutex_lock(&r->mu);
    r->connect_delay_ms = ms;
    pthread_mutex_unlock(&r->mu);
}

void tcp_relay_cut_after(struct tcp_relay *r, long long bytes)
{
    pthread_mutex_lock(&r->mu);
    r->cut_after = bytes;
    pthread_mutex_unlock(&r->mu);
}

void tcp_relay_mutate(struct tcp_relay *r, const struct relay_mutation *m)
{
    pthread_mutex_lock(&r->mu);
    free(r->mut_needle);
    free(r->mut_inject);
    r->mut = *m;
    r->mut.needle_len = m->needle && !m->needle_len ? strlen(m->needle) : m->needle_len;
    r->mut_needle = NULL;
    if (m->needle) {
        r->mut_needle = malloc(r->mut.needle_len + 1);
        memcpy(r->mut_needle, m->needle, r->mut.needle_len);
    }
    r->mut_inject = malloc(m->inject_len + 1);
    if (m->inject_len)
        memcpy(r->mut_inject, m->inject, m->inject_len);
    r->mut.needle = (const char *)r->mut_needle;
    r->mut.inject = r->mut_inject;
    r->mut_skip = m->skip;
    r->mut_left = m->times > 0 ? m->times : 1;
    r->mut_sprung = 0;
    r->mut_armed = true;
    pthread_mutex_unlock(&r->mu);
}

void tcp_relay_mutate_off(struct tcp_relay *r)
{
    pthread_mutex_lock(&r->mu);
    r->mut_armed = false;
    pthread_mutex_unlock(&r->mu);
}

int tcp_relay_sprung(struct tcp_relay *r)
{
    pthread_mutex_lock(&r->mu);
    int n = r->mut_sprung;
    pthread_mutex_unlock(&r->mu);
    return n;
}

bool tcp_relay_wait_sprung(struct tcp_relay *r, int n, int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        if (tcp_relay_sprung(r) >= n)
            return true;
        if (waited >= timeout_ms)
            return false;
        usleep(10 * 1000);
    }
}

int tcp_relay_cuts(struct tcp_relay *r)
{
    pthread_mutex_lock(&r->mu);
    int n = r->cuts;
    pthread_mutex_unlock(&r->mu);
    return n;
}

void tcp_relay_stop(struct tcp_relay *r)
{
    r->stop = 1;
    pthread_join(r->acceptor, NULL);
    close(r->listen_fd);
    int live = 1;
    for (int i = 0; i < 500 && live > 0; i++) { /* each pair notices within its poll */
        pthread_mutex_lock(&r->mu);
        for (int k = 0; k < RELAY_MAX_PAIRS; k++) /* unblocks a pair stuck in write() */
            for (int j = 0; j < 2; j++)
                if (r->fds[k][j] >= 0)
                    shutdown(r->fds[k][j], SHUT_RDWR);
        live = r->live;
        pthread_mutex_unlock(&r->mu);
        if (live > 0)
            usleep(10000);
    }
    cr_assert_eq(live, 0, "relay threads did not stop");
    pthread_mutex_destroy(&r->mu);
    free(r->mut_needle);
    free(r->mut_inject);
    free(r);
}
