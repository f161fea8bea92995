/* tcprelay.c: a loopback TCP relay for fault tests, with a trap that resets one connection
 * in the middle of a large transfer. */
#include "tcprelay.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
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
            done = got <= 0 || write(fd[1 - i], buf, (size_t)got) != got;
            if (!done && i == 1)
                cut = trap_springs(r, down += got);
        }
        if (done)
            break;
    }
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
    free(r);
}
