/* test_server_down.c: when the server cannot be reached, clients wait up to max_wait_ms and
 * then get a clear error naming the pool and the cause; when it comes back, pooling resumes by
 * itself. A small TCP relay in the test stands between lakeproxy and PostgreSQL, so the test
 * can take "the server" away and bring it back. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "tcprelay.h"

static struct proxy px;
static int relay_port;

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
    yaml_add_database(yaml, sizeof(yaml), tail);
    proxy_start_yaml(&px, port, yaml);
}
static void stop_proxy(void)
{
    proxy_stop(&px);
}

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
    pthread_t client;
    cr_assert_eq(pthread_create(&client, NULL, late_login, &a), 0);
    usleep(400 * 1000); /* the client is waiting; connect attempts fail and back off */
    struct tcp_relay *r = tcp_relay_start("127.0.0.1", relay_port, atoi(env_need("LP_PGPORT")));
    pthread_join(client, NULL);
    cr_expect(a.ok, "the waiting client was not served once the server came back: %s", a.err);
    tcp_relay_stop(r);
}
