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

/* Lines of the file at path that contain needle. */
static int count_lines_with(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[2048];
    int n = 0;
    while (f && fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return n;
}

/* New logins refused (here: the role's connection limit) while the pool's one server goes on
 * serving its clients in turn: the pool waits longer after each refusal (100 ms, doubling up
 * to 5 s). A server going back to the pool does not cut that short; only a login that works
 * does. */
Test(server_down, refused_logins_back_off_while_another_server_serves)
{
    PGconn *pg = pg_admin("lp_test");
    PQclear(PQexec(pg, "DROP ROLE IF EXISTS lp_limited"));
    cr_assert_str_eq(query_sqlstate(pg, "CREATE ROLE lp_limited LOGIN PASSWORD 'limited-secret' "
                                        "CONNECTION LIMIT 1"),
                     "");
    static char yaml[8192];
    char entry[512];
    int port = free_port();
    snprintf(entry, sizeof(entry),
             "  lim:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n"
             "    user: lp_limited\n    password: limited-secret\n    tls: disable\n"
             "    pool:\n      mode: transaction\n      size: 3\n      max_wait_ms: 10000\n",
             env_need("LP_PGPORT"));
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 5000, NULL);
    yaml_add_database(yaml, sizeof(yaml), entry);
    struct proxy lim;
    proxy_start_yaml(&lim, port, yaml);
    PGconn *c[2];
    for (int i = 0; i < 2; i++) {
        c[i] = proxy_connect(&lim, "alice", "alice-secret", "lim", NULL);
        cr_assert(PQstatus(c[i]) == CONNECTION_OK, "%s", PQerrorMessage(c[i]));
    }
    /* in turn, one client holds the server in a transaction while the other waits for one
     * (the pool tries to open a second, refused), then gets it when the first commits */
    int turns = 0;
    for (double end = now_s() + 3; now_s() < end; turns++) {
        PGconn *holder = c[turns % 2], *waiter = c[(turns + 1) % 2];
        cr_assert_str_eq(query_sqlstate(holder, "BEGIN"), "");
        cr_assert(PQsendQuery(waiter, "SELECT 'served'"));
        usleep(40 * 1000);
        cr_assert_str_eq(query_sqlstate(holder, "COMMIT"), "");
        char *v = sent_query_value(waiter);
        cr_expect_str_eq(v, "served");
        free(v);
    }
    int refused = count_lines_with(lim.log, "login failed");
    /* backing off: about 5 attempts in 3 s (at 0.1, 0.3, 0.7, 1.5 and 3.1 s); without the
     * back-off kept, one about every 0.1-0.15 s */
    cr_expect_geq(refused, 1, "no login was refused: the test did not run as meant");
    cr_expect_leq(refused, 10, "%d refused logins in 3 s (%d turns)", refused, turns);
    for (int i = 0; i < 2; i++)
        PQfinish(c[i]);
    proxy_stop(&lim);
    PQclear(PQexec(pg, "DROP ROLE lp_limited"));
    PQfinish(pg);
}
