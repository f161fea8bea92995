/* test_server_down.c: when the server cannot be reached, clients wait up to max_wait_ms and
 * then get a clear error naming the pool and the cause; when it comes back, pooling resumes by
 * itself. A small TCP relay in the test stands between lakeproxy and PostgreSQL, so the test
 * can take "the server" away and bring it back. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static struct proxy px;
static int relay_port;

struct relay_thread {
    int listen_fd;
    int target_port;
    volatile int stop;
};

/* Copies bytes both ways between two sockets until either closes. */
static void pipe_pair(int a, int b)
{
    char buf[16384];
    struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, 1000) < 0)
            return;
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP)))
                continue;
            ssize_t n = read(p[i].fd, buf, sizeof(buf));
            if (n <= 0 || write(p[1 - i].fd, buf, (size_t)n) != n)
                return;
        }
    }
}

static void *serve_one(void *arg)
{
    int c = (int)(intptr_t)arg;
    int s = raw_connect(atoi(env_need("LP_PGPORT")));
    if (s >= 0) {
        pipe_pair(c, s);
        close(s);
    }
    close(c);
    return NULL;
}

static void *relay_main(void *arg)
{
    struct relay_thread *r = arg;
    while (!r->stop) {
        struct pollfd p = {.fd = r->listen_fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int c = accept(r->listen_fd, NULL, NULL);
        pthread_t t;
        if (c >= 0 && pthread_create(&t, NULL, serve_one, (void *)(intptr_t)c) == 0)
            pthread_detach(t);
    }
    return NULL;
}

/* Starts relaying relay_port -> PostgreSQL. */
static void relay_start(struct relay_thread *r, pthread_t *th)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)relay_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    r->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(r->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    cr_assert_eq(bind(r->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(r->listen_fd, 64), 0);
    r->stop = 0;
    cr_assert_eq(pthread_create(th, NULL, relay_main, r), 0);
}

static void start_behind_relay(void)
{
    static char yaml[8192], tail[512];
    int port = free_port();
    relay_port = free_port();
    snprintf(tail, sizeof(tail),
             "  down:\n    host: 127.0.0.1\n    port: %d\n    dbname: lp_test\n"
             "    user: lp_server\n    password: server-secret\n    tls: disable\n"
             "    pool:\n      mode: transaction\n      size: 2\n      max_wait_ms: 1500\n",
             relay_port);
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 1500, NULL);
    /* the extra database goes under databases:, before users: */
    char *users = strstr(yaml, "users:\n");
    cr_assert(users);
    char rest[4096];
    snprintf(rest, sizeof(rest), "%s", users);
    snprintf(users, sizeof(yaml) - (size_t)(users - yaml), "%s%s", tail, rest);
    proxy_start_yaml(&px, port, yaml);
}
static void stop_proxy(void) { proxy_stop(&px); }

TestSuite(server_down, .init = start_behind_relay, .fini = stop_proxy, .timeout = 60);

Test(server_down, unreachable_server_gives_a_clear_error_after_the_wait)
{
    double t0 = now_s();
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "down", NULL);
    double took = now_s() - t0;
    cr_expect(PQstatus(c) == CONNECTION_BAD);
    cr_expect(strstr(PQerrorMessage(c), "could not connect to the server of pool \"down\""), "%s",
              PQerrorMessage(c));
    cr_expect(strstr(PQerrorMessage(c), "Connection refused"), "%s", PQerrorMessage(c));
    cr_expect(took >= 1.4 && took < 5, "waited %.2f s", took);
    PQfinish(c);
    /* other databases are not affected */
    c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_expect(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PQfinish(c);
}

struct late_arg {
    const struct proxy *p;
    int ok;
    char err[256];
};

static void *late_login(void *arg)
{
    struct late_arg *a = arg;
    PGconn *c = proxy_connect(a->p, "alice", "alice-secret", "down", NULL);
    a->ok = PQstatus(c) == CONNECTION_OK;
    if (a->ok) {
        PGresult *r = PQexec(c, "SELECT 7");
        a->ok = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "7") == 0;
        PQclear(r);
    }
    snprintf(a->err, sizeof(a->err), "%s", PQerrorMessage(c));
    PQfinish(c);
    return NULL;
}

Test(server_down, pooling_resumes_when_the_server_comes_back)
{
    struct late_arg a = {.p = &px};
    pthread_t client, relay;
    struct relay_thread r = {0};
    cr_assert_eq(pthread_create(&client, NULL, late_login, &a), 0);
    usleep(400 * 1000); /* the client is waiting; connect attempts fail and back off */
    relay_start(&r, &relay);
    pthread_join(client, NULL);
    cr_expect(a.ok, "the waiting client was not served once the server came back: %s", a.err);
    r.stop = 1;
    pthread_join(relay, NULL);
    close(r.listen_fd);
}
