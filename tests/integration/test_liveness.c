/* test_liveness.c: a pooled server connection that went silent while idle (here: its backend
 * stopped with SIGSTOP, so TCP stays open and nothing answers, as after a silent network drop)
 * is found out by the liveness check (pool.check_after_s) before it serves a client: the client
 * gets a fresh connection and never notices. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "procinfo.h"

static struct proxy px;

static void start_checking(void)
{
    static char yaml[8192], edited[8192];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 1, 10000,
                       "admin:\n  users: [alice]\n");
    const char *at = strstr(yaml, "      max_wait_ms: 10000\n"); /* database app's pool */
    cr_assert_not_null(at);
    size_t head = (size_t)(at - yaml) + strlen("      max_wait_ms: 10000\n");
    snprintf(edited, sizeof(edited),
             "%.*s      check_after_s: 1\n      connect_timeout_ms: 1000\n%s", (int)head, yaml,
             yaml + head);
    proxy_start_yaml(&px, port, edited);
}
static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(liveness, .init = start_checking, .fini = stop_proxy, .timeout = 60);

Test(liveness, a_silent_idle_server_is_replaced_before_a_client_uses_it)
{
    PGconn *a = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(a) == CONNECTION_OK, "%s", PQerrorMessage(a));
    char *pid = query_value(a, "SELECT pg_backend_pid()");
    PQfinish(a);
    cr_assert_eq(kill(atoi(pid), SIGSTOP), 0, "cannot stop backend %s", pid);
    usleep(1500000); /* idle past check_after_s */
    double t0 = now_s();
    PGconn *b = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(b) == CONNECTION_OK, "%s", PQerrorMessage(b));
    char *v = query_value(b, "SELECT pg_backend_pid()");
    double took = now_s() - t0;
    kill(atoi(pid), SIGCONT);
    cr_expect_str_neq(v, pid, "served by a new connection, not the silent one");
    cr_expect_lt(took, 5.0, "the check gave up after connect_timeout_ms (took %.1f s)", took);
    cr_expect_geq(file_count_lines(px.log, "liveness check"), 1, "the log says why");
    free(v);
    free(pid);
    PQfinish(b);
}

Test(liveness, a_healthy_idle_server_is_kept)
{
    PGconn *a = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(a) == CONNECTION_OK, "%s", PQerrorMessage(a));
    char *first = query_value(a, "SELECT pg_backend_pid()");
    usleep(1500000);
    char *second = query_value(a, "SELECT pg_backend_pid()");
    cr_expect_str_eq(first, second, "the check passed and the same server served again");
    free(first);
    free(second);
    PQfinish(a);
}

/* Sends q on c without waiting for its answer. */
static void send_query(PGconn *c, const char *q)
{
    cr_assert(PQsendQuery(c, q), "%s", PQerrorMessage(c));
}

/* The first value of c's answer to the query sent last, as a number. */
static long long answer_number(PGconn *c)
{
    char *v = sent_query_value(c);
    long long n = atoll(v);
    free(v);
    return n;
}

/* A client whose server failed its liveness check keeps its place: it is served before the
 * clients that came after it, not sent to the back of the line. */
Test(liveness, a_client_whose_server_fails_the_check_keeps_its_place_in_line)
{
    PGconn *a = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(a) == CONNECTION_OK, "%s", PQerrorMessage(a));
    free(query_value(a, "CREATE SEQUENCE IF NOT EXISTS lp_live_turns"));
    char *pid = query_value(a, "SELECT pg_backend_pid()");
    cr_assert_eq(kill(atoi(pid), SIGSTOP), 0, "cannot stop backend %s", pid);
    usleep(1500000); /* idle past check_after_s */
    PGconn *b = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(b) == CONNECTION_OK, "%s", PQerrorMessage(b));
    send_query(a, "SELECT nextval('lp_live_turns')"); /* takes the silent server: checked */
    usleep(100000);
    send_query(b, "SELECT nextval('lp_live_turns')");
    expect_clients_waiting(&px, "alice", "alice-secret", "app", 1); /* b, behind a */
    long long turn_a = answer_number(a), turn_b = answer_number(b);
    kill(atoi(pid), SIGCONT);
    cr_expect_lt(turn_a, turn_b, "the client that came later was served first");
    free(pid);
    PQfinish(a);
    PQfinish(b);
}

/* Column col of database db's row in the admin console's SHOW STATS, as a number. */
static long long stats_number(PGconn *adm, const char *db, const char *col)
{
    PGresult *r = PQexec(adm, "SHOW STATS");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(adm));
    int fdb = PQfnumber(r, "database"), fcol = PQfnumber(r, col);
    cr_assert(fdb >= 0 && fcol >= 0, "no column %s", col);
    long long v = -1;
    for (int i = 0; i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, fdb), db) == 0)
            v = atoll(PQgetvalue(r, i, fcol));
    PQclear(r);
    cr_assert_geq(v, 0, "no row for %s", db);
    return v;
}

/* A client that waited, was handed a server that then failed its liveness check, and waited
 * again for a fresh one waited once: SHOW STATS counts one wait, not two (the second would
 * also count the first's time again). */
Test(liveness, a_client_whose_server_fails_the_check_counts_one_wait)
{
    PGconn *a = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(a) == CONNECTION_OK, "%s", PQerrorMessage(a));
    PGconn *adm = proxy_connect(&px, "alice", "alice-secret", "lakeproxy", NULL);
    cr_assert(PQstatus(adm) == CONNECTION_OK, "%s", PQerrorMessage(adm));
    char *pid = query_value(a, "SELECT pg_backend_pid()"); /* the pool's one server */
    long long waits = stats_number(adm, "app", "total_wait_count");
    long long wait_us = stats_number(adm, "app", "total_wait_us");
    free(query_value(adm, "PAUSE app"));
    cr_assert_eq(kill(atoi(pid), SIGSTOP), 0, "cannot stop backend %s", pid);
    usleep(1500000); /* idle past check_after_s */
    double t0 = now_s();
    send_query(a, "SELECT pg_backend_pid()"); /* waits: the pool is paused */
    expect_clients_waiting(&px, "alice", "alice-secret", "app", 1);
    usleep(300000);                       /* a first wait long enough to tell twice from once */
    free(query_value(adm, "RESUME app")); /* handed the silent server, checked, then a fresh */
    char *v = sent_query_value(a);
    long long took_us = (long long)((now_s() - t0) * 1e6);
    kill(atoi(pid), SIGCONT);
    cr_expect_str_neq(v, pid, "served by a fresh server");
    cr_expect_eq(stats_number(adm, "app", "total_wait_count"), waits + 1, "one client waited once");
    long long counted = stats_number(adm, "app", "total_wait_us") - wait_us;
    cr_expect_leq(counted, took_us, "%lld us of waiting counted in %lld us", counted, took_us);
    cr_expect_geq(counted, took_us / 4, "the wait is counted (%lld us of %lld)", counted, took_us);
    free(v);
    free(pid);
    PQfinish(a);
    PQfinish(adm);
}

/* A client checked out the server that holds its unnamed statement keeps the statement there
 * (no Close, no second Parse), unless a query of the proxy's own ran on it meanwhile: the
 * liveness check is one (";"), and a simple Query drops the unnamed statement. The client's
 * Bind "" must then find its statement prepared again, not "does not exist". */
Test(liveness, a_checked_server_prepares_the_clients_unnamed_statement_again)
{
    PGconn *a = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(a) == CONNECTION_OK, "%s", PQerrorMessage(a));
    PGresult *r = PQprepare(a, "", "SELECT 'unnamed of a ' || $1::text", 1, NULL);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(a));
    PQclear(r);
    const char *params[1] = {"1"};
    r = PQexecPrepared(a, "", 1, params, NULL, NULL, 0); /* its own server, statement kept */
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(a));
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "unnamed of a 1");
    PQclear(r);
    usleep(1500000); /* idle past check_after_s: the next checkout runs the check first */
    params[0] = "2";
    r = PQexecPrepared(a, "", 1, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "after the check: %s", PQerrorMessage(a));
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "unnamed of a 2");
    PQclear(r);
    PQfinish(a);
}

/* Sends sql on c and waits at most limit_s seconds for its answer without blocking (a silent
 * server must not hang the test); returns the seconds it took, or a negative number. */
static double answer_within(PGconn *c, const char *sql, double limit_s)
{
    double t0 = now_s();
    cr_assert(PQsendQuery(c, sql));
    while (now_s() - t0 < limit_s) { /* PQconsumeInput never blocks; then a short sleep */
        cr_assert(PQconsumeInput(c) || PQstatus(c) == CONNECTION_BAD);
        if (!PQisBusy(c) || PQstatus(c) == CONNECTION_BAD)
            return now_s() - t0;
        usleep(50000);
    }
    return -1;
}

/* A server that stops answering just as it is checked out to a client whose settings differ
 * (here its backend stopped right after serving another client, well within check_after_s, so
 * no liveness check runs): lakeproxy's own SET gets no answer. After connect_timeout_ms that
 * server goes, and the client, none of whose messages it had, asks the pool again and is
 * served by a new connection, with its own settings, never knowing. */
Test(liveness, a_server_silent_during_the_proxys_settings_is_replaced_in_time)
{
    PGconn *a = proxy_connect(&px, "alice", "alice-secret", "app", "application_name=first");
    cr_assert(PQstatus(a) == CONNECTION_OK, "%s", PQerrorMessage(a));
    PGconn *b = proxy_connect(&px, "alice", "alice-secret", "app", "application_name=second");
    cr_assert(PQstatus(b) == CONNECTION_OK, "%s", PQerrorMessage(b));
    char *pid = query_value(a, "SELECT pg_backend_pid()"); /* the pool's one server, set for a */
    cr_assert_eq(kill(atoi(pid), SIGSTOP), 0, "cannot stop backend %s", pid);
    double took = answer_within(b, "SELECT current_setting('application_name')", 6);
    kill(atoi(pid), SIGCONT);
    cr_assert_geq(took, 0, "no answer in 6 s: the client waits on a silent server");
    PGresult *r = PQgetResult(b);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(b));
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "second", "served with its own settings");
    PQclear(r);
    cr_expect_geq(file_count_lines(px.log, "no answer to lakeproxy's session settings"), 1,
                  "the log says why the server went");
    free(pid);
    PQfinish(b);
    PQfinish(a);
}

/* A server whose backend ends (here: terminated by an administrator) during lakeproxy's
 * settings for a client is replaced the same way: the client, none of whose messages it had,
 * is served by a new connection instead of being told the server closed. */
Test(liveness, a_server_lost_during_the_proxys_settings_is_replaced)
{
    PGconn *a = proxy_connect(&px, "alice", "alice-secret", "app", "application_name=first");
    cr_assert(PQstatus(a) == CONNECTION_OK, "%s", PQerrorMessage(a));
    PGconn *b = proxy_connect(&px, "alice", "alice-secret", "app", "application_name=second");
    cr_assert(PQstatus(b) == CONNECTION_OK, "%s", PQerrorMessage(b));
    char *pid = query_value(a, "SELECT pg_backend_pid()");
    cr_assert_eq(kill(atoi(pid), SIGSTOP), 0, "cannot stop backend %s", pid);
    cr_assert(PQsendQuery(b, "SELECT current_setting('application_name')"));
    usleep(300000); /* b's checkout: lakeproxy's SET waits in the stopped backend's socket */
    PGconn *su = pg_admin("lp_test");
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%d, 0)", atoi(pid));
    PQclear(PQexec(su, sql)); /* (does not wait: the backend ends once it runs again) */
    kill(atoi(pid), SIGCONT);
    PGresult *r = PQgetResult(b);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(b));
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "second", "served with its own settings");
    PQclear(r);
    while ((r = PQgetResult(b)))
        PQclear(r);
    free(pid);
    PQfinish(su);
    PQfinish(b);
    PQfinish(a);
}

/* ... and when the server it asked again for goes the same way, the client is told (08006)
 * rather than asking again and again: settings that end each server they reach must not
 * loop through the pool. Two servers, both silent. */
Test(liveness, a_client_whose_settings_lose_two_servers_is_told)
{
    static char yaml[8192], edited[8192];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 10000, "");
    const char *at = strstr(yaml, "      max_wait_ms: 10000\n");
    cr_assert_not_null(at);
    size_t head = (size_t)(at - yaml) + strlen("      max_wait_ms: 10000\n");
    snprintf(edited, sizeof(edited), "%.*s      connect_timeout_ms: 1000\n%s", (int)head, yaml,
             yaml + head);
    struct proxy two;
    proxy_start_yaml(&two, port, edited);
    PGconn *a1 = proxy_connect(&two, "alice", "alice-secret", "app", "application_name=first");
    PGconn *a2 = proxy_connect(&two, "alice", "alice-secret", "app", "application_name=first");
    PGconn *b = proxy_connect(&two, "alice", "alice-secret", "app", "application_name=second");
    cr_assert(PQstatus(a1) == CONNECTION_OK && PQstatus(a2) == CONNECTION_OK &&
              PQstatus(b) == CONNECTION_OK);
    PQclear(PQexec(a1, "BEGIN")); /* both servers in use at once: the pool opens two */
    PQclear(PQexec(a2, "BEGIN"));
    char *p1 = query_value(a1, "SELECT pg_backend_pid()");
    char *p2 = query_value(a2, "SELECT pg_backend_pid()");
    cr_assert_str_neq(p1, p2);
    PQclear(PQexec(a1, "COMMIT"));
    PQclear(PQexec(a2, "COMMIT"));
    cr_assert_eq(kill(atoi(p1), SIGSTOP), 0);
    cr_assert_eq(kill(atoi(p2), SIGSTOP), 0);
    double took = answer_within(b, "SELECT 1", 8);
    kill(atoi(p1), SIGCONT);
    kill(atoi(p2), SIGCONT);
    cr_assert_geq(took, 0, "no answer in 8 s");
    PGresult *r = PQgetResult(b);
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    cr_expect_str_eq(st ? st : "", "08006", "%s", PQerrorMessage(b));
    cr_expect(strstr(PQerrorMessage(b), "pool.connect_timeout_ms") != NULL, "%s",
              PQerrorMessage(b));
    cr_expect_eq(file_count_lines(two.log, "no answer to lakeproxy's session settings"), 2,
                 "it asked again once, not more");
    PQclear(r);
    PQfinish(b);
    b = proxy_connect(&two, "alice", "alice-secret", "app", "application_name=third");
    char *v = query_value(b, "SELECT current_setting('application_name')");
    cr_expect_str_eq(v, "third", "the pool serves again");
    free(v);
    free(p1);
    free(p2);
    PQfinish(b);
    PQfinish(a1);
    PQfinish(a2);
    proxy_stop(&two);
}
