/* test_abuse.c: hostile clients against a running proxy: slowloris logins (a byte at a time)
 * and a flood of connections that never speak are closed after limits.login_timeout_s, and
 * every other client keeps working meanwhile. */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "proto.h"

static struct proxy px;

static void start_short_login(void)
{
    static char yaml[8192];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 5000,
                       "limits:\n  login_timeout_s: 2\n  max_clients: 2000\n");
    proxy_start_yaml(&px, port, yaml);
}
static void stop_proxy(void) { proxy_stop(&px); }

TestSuite(abuse, .init = start_short_login, .fini = stop_proxy, .timeout = 60);

/* Has the proxy closed fd (EOF, possibly after an ErrorResponse)? Waits up to ms. */
static bool closed_by_proxy(int fd, int ms)
{
    char buf[4096];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, ms) > 0) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            return true;
    }
    return false;
}

/* One query through the proxy as alice; the time it took. */
static double timed_query(void)
{
    double t0 = now_s();
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    char *v = query_value(c, "SELECT 'ok'");
    cr_expect_str_eq(v, "ok");
    free(v);
    PQfinish(c);
    return now_s() - t0;
}

Test(abuse, slowloris_logins_are_closed_and_others_keep_working)
{
    enum { N = 50 };
    int fds[N];
    struct buf b;
    struct startup_param params[] = {{"user", "alice"}, {"database", "app"}};
    buf_init(&b);
    proto_startup(&b, params, 2);
    for (int i = 0; i < N; i++)
        cr_assert((fds[i] = raw_connect(px.port)) >= 0);
    double start = now_s();
    size_t sent = 0;
    while (now_s() - start < 3.5) { /* a byte per client every 250 ms: never a whole packet */
        for (int i = 0; i < N && sent < b.len - 1; i++)
            if (fds[i] >= 0 && send(fds[i], b.data + sent, 1, MSG_NOSIGNAL) != 1) {
                close(fds[i]);
                fds[i] = -1;
            }
        sent++;
        cr_expect_lt(timed_query(), 1.0, "a normal client waits for nobody");
        usleep(250000);
    }
    int closed = 0;
    for (int i = 0; i < N; i++)
        closed += fds[i] < 0 || closed_by_proxy(fds[i], 2000);
    cr_expect_eq(closed, N, "every slow login was closed after login_timeout_s: %d of %d", closed,
                 N);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    buf_free(&b);
}

Test(abuse, a_flood_of_silent_connections_is_closed_and_others_keep_working)
{
    enum { N = 500 };
    int *fds = calloc(N, sizeof(int));
    for (int i = 0; i < N; i++)
        cr_assert((fds[i] = raw_connect(px.port)) >= 0, "connection %d", i);
    cr_expect_lt(timed_query(), 1.0, "a normal client gets in while %d sockets sit silent", N);
    sleep(3);
    int closed = 0;
    for (int i = 0; i < N; i++) {
        closed += closed_by_proxy(fds[i], 100);
        close(fds[i]);
    }
    cr_expect_eq(closed, N, "silent connections closed after login_timeout_s: %d of %d", closed,
                 N);
    cr_expect_lt(timed_query(), 1.0);
    free(fds);
}
