/* test_faults.c: server faults under load. PostgreSQL killed with SIGKILL and restarted, a
 * server connection reset in the middle of a large result, and the server's host name moving
 * to another address on reload. Clients get errors only for the transactions in flight,
 * nothing hangs, and the pool recovers by itself. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "buf.h"
#include "harness.h"
#include "proto.h"
#include "rawproto.h"
#include "tcprelay.h"

#define MAX_WAIT_MS 2000
/* Any query returns within the pool wait plus this (a hang fails the test). */
#define RETURN_MARGIN_S 3.0

static struct proxy px;
static struct pg_private pg;
static char yaml[8192];

/* A database entry of transaction pooling towards host:port. */
static void add_db_mode(const char *name, const char *host, int port, int size, int min,
                        const char *mode)
{
    char entry[512];
    snprintf(entry, sizeof(entry),
             "  %s:\n    host: %s\n    port: %d\n    dbname: lp_test\n"
             "    user: lp_server\n    password: server-secret\n    tls: disable\n"
             "    pool:\n      mode: %s\n      size: %d\n      min: %d\n"
             "      max_wait_ms: %d\n      connect_timeout_ms: 1000\n",
             name, host, port, mode, size, min, MAX_WAIT_MS);
    yaml_add_database(yaml, sizeof(yaml), entry);
}

static void add_db(const char *name, const char *host, int port, int size, int min)
{
    add_db_mode(name, host, port, size, min, "transaction");
}

/* The default configuration with alice as admin, plus database name towards host:port. */
static void make_yaml(int port, const char *name, const char *host, int pgport, int size, int min)
{
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, MAX_WAIT_MS,
                       "admin:\n  users: [alice]\n");
    add_db(name, host, pgport, size, min);
}

static void stop_all(void)
{
    proxy_stop(&px);
    pg_private_stop(&pg);
}

TestSuite(faults, .fini = stop_all, .timeout = 90);

static PGconn *connect_ok(const char *db)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", db, NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* ---- load: clients running short transactions, recording every failure with its time ---- */

#define LOAD_CLIENTS 4
#define MAX_ERRORS 64

struct failure {
    double at, took;
    char state[6];
    char msg[160];
};

struct loader {
    pthread_t th;
    const char *db;
    const char *stmts[4]; /* one transaction, NULL-terminated */
    volatile int *stop;
    pthread_mutex_t mu;
    char notice[160]; /* the last notice or error that arrived outside a query */
    double last_ok, max_took;
    int oks, n_errors, done;
    struct failure errors[MAX_ERRORS];
};

/* Records one failed statement or login. */
static void note_failure(struct loader *l, double at, double took, const char *state,
                         const char *msg)
{
    pthread_mutex_lock(&l->mu);
    if (l->n_errors < MAX_ERRORS) {
        struct failure *f = &l->errors[l->n_errors];
        f->at = at;
        f->took = took;
        snprintf(f->state, sizeof(f->state), "%s", state);
        snprintf(f->msg, sizeof(f->msg), "%s", msg);
    }
    l->n_errors++;
    pthread_mutex_unlock(&l->mu);
}

/* libpq hands errors that arrive between queries (a FATAL before a close) to this. */
static void keep_notice(void *arg, const char *msg)
{
    struct loader *l = arg;
    pthread_mutex_lock(&l->mu);
    snprintf(l->notice, sizeof(l->notice), "%s", msg);
    pthread_mutex_unlock(&l->mu);
}

/* Runs sql, timing it; false (recorded) when it failed. */
static bool timed_exec(struct loader *l, PGconn *c, const char *sql)
{
    double t0 = now_s();
    PGresult *r = PQexec(c, sql);
    double t1 = now_s();
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    pthread_mutex_lock(&l->mu);
    if (t1 - t0 > l->max_took)
        l->max_took = t1 - t0;
    pthread_mutex_unlock(&l->mu);
    /* libpq drops the SQLSTATE of the FATAL error that precedes a closed connection */
    if (!ok && !state && PQstatus(c) == CONNECTION_BAD)
        state = "lost";
    char msg[400];
    pthread_mutex_lock(&l->mu); /* a connection closed while idle: the error came earlier */
    snprintf(msg, sizeof(msg), "%s%s", state && strcmp(state, "lost") == 0 ? l->notice : "",
             PQerrorMessage(c));
    pthread_mutex_unlock(&l->mu);
    if (!ok)
        note_failure(l, t1, t1 - t0, state ? state : "", msg);
    PQclear(r);
    return ok;
}

/* One load client: its transaction in a loop, reconnecting when the connection is gone. */
static void *loader_main(void *arg)
{
    struct loader *l = arg;
    PGconn *c = NULL;
    while (!*l->stop) {
        if (!c || PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            double t0 = now_s();
            c = proxy_connect(&px, "alice", "alice-secret", l->db, "connect_timeout=10");
            if (PQstatus(c) != CONNECTION_OK) {
                note_failure(l, now_s(), now_s() - t0, "login", PQerrorMessage(c));
                usleep(50000);
                continue;
            }
            PQsetNoticeProcessor(c, keep_notice, l);
        }
        bool ok = true;
        for (int i = 0; ok && l->stmts[i]; i++)
            ok = timed_exec(l, c, l->stmts[i]);
        if (!ok && PQstatus(c) == CONNECTION_OK)
            timed_exec(l, c, "ROLLBACK"); /* whatever the failure left open */
        pthread_mutex_lock(&l->mu);
        if (ok) {
            l->oks++;
            l->last_ok = now_s();
        }
        pthread_mutex_unlock(&l->mu);
        usleep(5000);
    }
    PQfinish(c);
    pthread_mutex_lock(&l->mu);
    l->done = 1;
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void txn_load_start(struct loader *ls, int n, const char *db, const char *const *stmts,
                           volatile int *stop)
{
    for (int i = 0; i < n; i++) {
        memset(&ls[i], 0, sizeof(ls[i]));
        ls[i].db = db;
        memcpy(ls[i].stmts, stmts, sizeof(ls[i].stmts));
        ls[i].stop = stop;
        pthread_mutex_init(&ls[i].mu, NULL);
        cr_assert_eq(pthread_create(&ls[i].th, NULL, loader_main, &ls[i]), 0);
    }
}

/* Stops the load; every client must finish its statement in time (else it hangs). */
static void txn_load_stop(struct loader *ls, int n, volatile int *stop)
{
    *stop = 1;
    double deadline = now_s() + MAX_WAIT_MS / 1000.0 + RETURN_MARGIN_S;
    for (int i = 0; i < n; i++) {
        int done = 0;
        while (!done && now_s() < deadline) {
            pthread_mutex_lock(&ls[i].mu);
            done = ls[i].done;
            pthread_mutex_unlock(&ls[i].mu);
            if (!done)
                usleep(20000);
        }
        cr_assert(done, "load client %d hangs in a query", i);
        pthread_join(ls[i].th, NULL);
    }
}

/* Is sqlstate one a client may see when its server dies or cannot be reached? */
static bool outage_sqlstate(const char *s)
{
    return strcmp(s, "08006") == 0 || strcmp(s, "08P01") == 0 || strcmp(s, "57P01") == 0 ||
           strcmp(s, "53300") == 0 || strcmp(s, "57P02") == 0 || strcmp(s, "57P03") == 0;
}

/* Every failure of every load client fell in [from, to], with a clear SQLSTATE (logins: a
 * message), and no statement took longer than the pool wait plus the margin. */
static void expect_failures_within(struct loader *ls, int n, double from, double to)
{
    for (int i = 0; i < n; i++) {
        cr_expect_leq(ls[i].max_took, MAX_WAIT_MS / 1000.0 + RETURN_MARGIN_S,
                      "client %d waited %.1f s for a statement", i, ls[i].max_took);
        for (int k = 0; k < ls[i].n_errors && k < MAX_ERRORS; k++) {
            const struct failure *f = &ls[i].errors[k];
            cr_expect(f->at >= from && f->at <= to,
                      "client %d failed at %+.2f s, outside the outage [%+.2f, %+.2f]: %s %s", i,
                      f->at - from, 0.0, to - from, f->state, f->msg);
            if (strcmp(f->state, "login") == 0)
                cr_expect(f->msg[0], "a failed login without a message");
            else if (strcmp(f->state, "lost") == 0) /* closed, but told why first */
                cr_expect(strstr(f->msg, "FATAL:"), "closed without an error: %s", f->msg);
            else
                cr_expect(outage_sqlstate(f->state), "client %d: unexpected SQLSTATE '%s': %s", i,
                          f->state, f->msg);
        }
    }
}

/* Waits until every load client has completed a transaction after t; returns when the last
 * did, or 0 past the deadline. */
static double wait_all_ok_after(struct loader *ls, int n, double t, double deadline)
{
    for (;;) {
        double latest = 0;
        int behind = 0;
        for (int i = 0; i < n; i++) {
            pthread_mutex_lock(&ls[i].mu);
            if (ls[i].last_ok <= t)
                behind++;
            else if (ls[i].last_ok > latest)
                latest = ls[i].last_ok;
            pthread_mutex_unlock(&ls[i].mu);
        }
        if (!behind)
            return latest;
        if (now_s() > deadline)
            return 0;
        usleep(20000);
    }
}

/* ---- 1. PostgreSQL killed with SIGKILL under load, restarted on the same port ---- */

Test(faults, postgres_killed_and_restarted_under_load)
{
    static const char *const txn[4] = {"BEGIN", "UPDATE items SET name = name WHERE id = 7",
                                       "COMMIT", NULL};
    struct loader ls[LOAD_CLIENTS];
    volatile int stop = 0;
    pg_private_start(&pg, "127.0.0.1");
    int port = free_port();
    make_yaml(port, "crash", "127.0.0.1", pg.port, 4, 0);
    proxy_start_yaml(&px, port, yaml);
    PGconn *sleeper = connect_ok("crash");
    txn_load_start(ls, LOAD_CLIENTS, "crash", txn, &stop);
    cr_assert_neq(wait_all_ok_after(ls, LOAD_CLIENTS, now_s(), now_s() + 10), 0,
                  "the load did not get going");
    usleep(500000);

    /* one transaction in flight when the server dies: its statement fails, the connection stays */
    cr_assert(PQsendQuery(sleeper, "SELECT pg_sleep(30)"));
    usleep(300000);
    double t_kill = now_s();
    pg_private_kill9(&pg);
    PGresult *r = query_result_within(sleeper, MAX_WAIT_MS / 1000.0 + RETURN_MARGIN_S);
    cr_assert(r, "the statement in flight hangs after the server died");
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
    cr_expect(state && outage_sqlstate(state), "SQLSTATE %s: %s", state ? state : "(none)",
              PQerrorMessage(sleeper));
    PQclear(r);
    cr_expect(PQstatus(sleeper) == CONNECTION_OK,
              "the client connection was closed for a failed single-statement transaction");

    usleep(2000000);
    pg_private_restart(&pg);
    double t_up = now_s();
    double back = wait_all_ok_after(ls, LOAD_CLIENTS, t_up, t_up + 15);
    cr_assert_neq(back, 0, "the load did not recover within 15 s of the restart");
    cr_log_info("kill -9: every load client served again %.2f s after the restart", back - t_up);
    free(query_value(sleeper, "BEGIN"));
    char *one = query_value(sleeper, "SELECT 1");
    cr_expect_str_eq(one, "1");
    free(one);
    free(query_value(sleeper, "COMMIT"));
    PQfinish(sleeper);
    usleep(1000000); /* errors after this point would be late ones */
    txn_load_stop(ls, LOAD_CLIENTS, &stop);
    expect_failures_within(ls, LOAD_CLIENTS, t_kill, back);
    int errors = 0;
    for (int i = 0; i < LOAD_CLIENTS; i++)
        errors += ls[i].n_errors;
    cr_log_info("kill -9: %d failed statements or logins during the outage", errors);
    PGconn *direct = pg_private_admin(&pg, "lp_test");
    cr_assert(PQstatus(direct) == CONNECTION_OK, "%s", PQerrorMessage(direct));
    expect_live_servers(&px, "alice", "alice-secret", direct, "crash");
    PQfinish(direct);
}

/* ---- 2. a server connection reset in the middle of a large result ---- */

/* Starts lakeproxy with database db (a pool of size, in pool mode) reaching the shared
 * PostgreSQL through a TCP relay, which the test can cut or slow down; returns the relay. */
static struct tcp_relay *start_through_relay_mode(const char *db, int size, const char *mode)
{
    int relay_port = free_port(), port = free_port();
    struct tcp_relay *relay = tcp_relay_start("127.0.0.1", relay_port, atoi(env_need("LP_PGPORT")));
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, MAX_WAIT_MS,
                       "admin:\n  users: [alice]\n");
    add_db_mode(db, "127.0.0.1", relay_port, size, 0, mode);
    proxy_start_yaml(&px, port, yaml);
    return relay;
}

static struct tcp_relay *start_through_relay(const char *db, int size)
{
    return start_through_relay_mode(db, size, "transaction");
}

/* PQcancel of c's running query, asserted to succeed. */
static void send_cancel(PGconn *c)
{
    PGcancel *cancel = PQgetCancel(c);
    char err[256];
    cr_assert(PQcancel(cancel, err, sizeof(err)), "%s", err);
    PQfreeCancel(cancel);
}

Test(faults, server_connection_cut_in_the_middle_of_a_result)
{
    struct tcp_relay *relay = start_through_relay("cut", 4);
    /* two bystanders hold transactions open, each on its own server connection */
    PGconn *b[2];
    char *pid[2];
    for (int i = 0; i < 2; i++) {
        b[i] = connect_ok("cut");
        free(query_value(b[i], "BEGIN"));
        pid[i] = query_value(b[i], "SELECT pg_backend_pid()");
    }
    PGconn *a = connect_ok("cut");
    tcp_relay_cut_after(relay, 4 << 20);
    double t0 = now_s();
    PGresult *r = PQexec(a, "SELECT repeat('x', 1000) FROM generate_series(1, 40000)");
    double took = now_s() - t0;
    cr_expect_eq(tcp_relay_cuts(relay), 1, "the relay did not cut the connection");
    cr_expect_eq(PQresultStatus(r), PGRES_FATAL_ERROR, "a cut result reported as %s with %d rows",
                 PQresStatus(PQresultStatus(r)), PQntuples(r));
    cr_expect_lt(took, 10.0, "the cut result took %.1f s to fail", took);
    cr_log_info("cut mid-result: error after %.2f s: %s", took, PQerrorMessage(a));
    PQclear(r);
    for (int i = 0; i < 2; i++) { /* the bystanders never noticed */
        char *again = query_value(b[i], "SELECT pg_backend_pid()");
        cr_expect_str_eq(again, pid[i]);
        free(again);
        free(query_value(b[i], "COMMIT"));
        free(pid[i]);
        PQfinish(b[i]);
    }
    if (PQstatus(a) != CONNECTION_OK) { /* cut inside a message: the client had to go */
        PQfinish(a);
        a = connect_ok("cut");
    }
    char *n = query_value(a, "SELECT count(*) FROM generate_series(1, 40000)");
    cr_expect_str_eq(n, "40000", "the pool serves again on a fresh server");
    free(n);
    PQfinish(a);
    PGconn *direct = pg_admin("lp_test");
    expect_live_servers(&px, "alice", "alice-secret", direct, "cut");
    PQfinish(direct);
    tcp_relay_stop(relay);
}

/* Red team round 8: a cancel request is routed to the server its client holds, then carried
 * by a connection of its own; if the client's query ends and the server passes to another
 * client before PostgreSQL receives it, it cancelled that other client's query. Now a server
 * with a cancel on its way serves nobody else until PostgreSQL has taken it. The relay makes
 * the cancel's connection reach PostgreSQL 0.6 s late. */
Test(faults, a_late_cancel_never_cancels_another_clients_query)
{
    struct tcp_relay *relay = start_through_relay("cx", 1);
    PGconn *a = connect_ok("cx"), *b = connect_ok("cx");
    free(query_value(a, "SELECT 1")); /* the pool's one server, through the relay */
    tcp_relay_delay_connects(relay, 600);
    cr_assert(PQsendQuery(a, "SELECT pg_sleep(0.2)"));
    usleep(50 * 1000);
    send_cancel(a);                                              /* routed now, arrives late */
    cr_assert(PQsendQuery(b, "SELECT 'b done', pg_sleep(0.8)")); /* waits for the server */
    PGresult *r;
    while ((r = PQgetResult(a)))
        PQclear(r);
    char got[256] = "", state[6] = "";
    while ((r = PQgetResult(b))) {
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
            snprintf(got, sizeof(got), "%s", PQgetvalue(r, 0, 0));
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (st)
            snprintf(state, sizeof(state), "%s", st);
        PQclear(r);
    }
    cr_expect_str_eq(got, "b done", "another client's cancel reached this query (%s)", state);
    PQfinish(a);
    PQfinish(b);
    tcp_relay_stop(relay);
}

/* Sends a CancelRequest for raw session v and returns without waiting for its answer. */
static void cancel_and_go(const struct rawsess *v)
{
    int cfd = raw_cancel_async(px.port, v->pid, v->key);
    cr_assert(cfd >= 0);
    close(cfd);
}

/* In pool mode, a raw session sends query (one that is still running when it leaves, or one
 * whose answer it reads first), a CancelRequest without waiting for it, and closes; the
 * cancel reaches PostgreSQL 0.4 s late (a TCP relay). The next client must get the same server
 * (the departed client's replies drained, the reset held until PostgreSQL took the cancel),
 * and soon: the cancel cut a running query short. */
static void expect_cancel_and_leave_keeps_server(const char *mode, const char *query, bool answered)
{
    struct tcp_relay *relay = start_through_relay_mode("cl", 1, mode);
    PGconn *first = connect_ok("cl");
    char *pid = query_value(first, "SELECT pg_backend_pid()::text"); /* the pool's one server */
    PQfinish(first);
    tcp_relay_delay_connects(relay, 400);
    struct rawsess v;
    cr_assert(raw_keyed_try(px.port, &v, "cl"));
    struct buf b;
    buf_init(&b);
    proto_query(&b, query);
    cr_assert(raw_send(v.fd, &b));
    buf_free(&b);
    if (answered) {
        char states[64], rows[64];
        cr_assert(raw_replies(v.fd, 1, states, sizeof(states), rows, sizeof(rows), 5000));
    } else
        usleep(100 * 1000); /* running */
    cancel_and_go(&v);
    usleep(50 * 1000); /* routed: on its way to PostgreSQL */
    close(v.fd);
    double t0 = now_s();
    PGconn *next = connect_ok("cl");
    char *got = query_value(next, "SELECT pg_backend_pid()::text");
    cr_expect_str_eq(got, pid, "the server was closed, not kept");
    cr_expect_lt(now_s() - t0, 2.5, "the query was not cancelled");
    cr_expect_eq(file_count_lines(px.log, "client left in the middle"), 0);
    free(got);
    free(pid);
    PQfinish(next);
    tcp_relay_stop(relay);
}

/* A client that cancels its query and leaves at once (what a client-side timeout does) cost
 * its server: it was closed, as the cancel was still on its way. Now the server reads what
 * the client was owed, waits for PostgreSQL to take the cancel, resets, and serves the next. */
Test(faults, a_client_that_cancels_and_leaves_keeps_its_server)
{
    expect_cancel_and_leave_keeps_server("transaction", "SELECT pg_sleep(5)", false);
}

/* The same in session pooling for a cancel with nothing left to cancel (its query answered
 * before the client sent it: a timeout that fired as the answer came). */
Test(faults, a_session_client_that_cancels_nothing_and_leaves_keeps_its_server)
{
    expect_cancel_and_leave_keeps_server("session", "SELECT 1", true);
}

/* A cancel request that PostgreSQL has not taken within pool.connect_timeout_ms (1 s here) may
 * still arrive: its server serves nobody else, it is closed when its client is done with it.
 * The relay holds the cancel 1.6 s, so it lands while the next client's query runs: on the
 * old server that query was cancelled. */
Test(faults, a_cancel_that_may_still_arrive_retires_its_server)
{
    struct tcp_relay *relay = start_through_relay("cz", 1);
    PGconn *a = connect_ok("cz"), *b = connect_ok("cz");
    char *pid = query_value(a, "SELECT pg_backend_pid()::text"); /* the pool's one server */
    tcp_relay_delay_connects(relay, 1600);
    cr_assert(PQsendQuery(a, "SELECT pg_sleep(1.3)"));
    usleep(100 * 1000);
    send_cancel(a); /* returns when lakeproxy gives up on it, after 1 s */
    PGresult *r;
    while ((r = PQgetResult(a)))
        PQclear(r);
    tcp_relay_delay_connects(relay, 0); /* (the next server's connection is held until 1.7 s) */
    r = PQexec(b, "SELECT pg_backend_pid()::text, pg_sleep(1)");
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect_str_eq(st ? st : "", "", "a late cancel hit the next client: %s",
                     PQresultErrorMessage(r));
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        cr_expect_str_neq(PQgetvalue(r, 0, 0), pid, "the server served another client");
    PQclear(r);
    free(pid);
    PQfinish(a);
    PQfinish(b);
    tcp_relay_stop(relay);
}

/* As PostgreSQL does, lakeproxy closes a cancel request's connection once the cancel has
 * reached the server: PQcancel returning means the query is being cancelled, and the client's
 * next query cannot be hit by it. The relay makes the cancel reach PostgreSQL 0.4 s late. */
Test(faults, pqcancel_returns_once_the_cancel_has_reached_postgresql)
{
    struct tcp_relay *relay = start_through_relay("cy", 1);
    PGconn *a = connect_ok("cy");
    free(query_value(a, "SELECT 1"));
    tcp_relay_delay_connects(relay, 400);
    cr_assert(PQsendQuery(a, "SELECT pg_sleep(5)"));
    usleep(100 * 1000);
    double t0 = now_s();
    send_cancel(a);
    double took = now_s() - t0;
    cr_expect_geq(took, 0.35, "PQcancel returned after %.3f s, before the cancel arrived", took);
    PGresult *r = PQgetResult(a);
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect_str_eq(st ? st : "", "57014");
    cr_expect_lt(now_s() - t0, 2.0, "the query was not cancelled");
    PQclear(r);
    while ((r = PQgetResult(a)))
        PQclear(r);
    PQfinish(a);
    tcp_relay_stop(relay);
}

/* ---- 3. the server's host name moves to another address; SIGHUP ---- */

static void write_hosts(const char *path, const char *addr)
{
    FILE *f = fopen(path, "w"); /* in place: the bind mount follows the inode */
    cr_assert(f, "cannot write %s", path);
    fprintf(f, "127.0.0.1 localhost\n%s lpfaults.test\n", addr);
    fclose(f);
}

/* Polls until lakeproxy holds want connections to ip:port (true) or timeout_s passes. */
static bool wait_sockets(const char *ip, int port, int want, double timeout_s)
{
    double deadline = now_s() + timeout_s;
    while (proxy_server_sockets(&px, ip, port) != want) {
        if (now_s() > deadline)
            return false;
        usleep(50000);
    }
    return true;
}

Test(faults, host_name_moving_to_another_address_on_reload)
{
    static const char *const txn[4] = {"SELECT inet_server_addr()", NULL, NULL, NULL};
    char hosts[300];
    struct loader ls[2];
    volatile int stop = 0;
    pg_private_start(&pg, "127.0.0.1,127.0.0.2");
    int port = free_port();
    snprintf(hosts, sizeof(hosts), "%s/hosts-%d", env_need("LP_TEST_DIR"), port);
    write_hosts(hosts, "127.0.0.1");
    make_yaml(port, "named", "lpfaults.test", pg.port, 3, 2);
    proxy_start_yaml_hosts(&px, port, yaml, hosts);
    PGconn *c = connect_ok("named");
    char *addr = query_value(c, "SELECT inet_server_addr()");
    cr_expect_str_eq(addr, "127.0.0.1");
    free(addr);
    cr_assert(wait_sockets("127.0.0.1", pg.port, 2, 5), "pool.min servers not opened");
    txn_load_start(ls, 2, "named", txn, &stop);
    usleep(300000);

    write_hosts(hosts, "127.0.0.2");
    double t_reload = now_s();
    proxy_reload_yaml(&px, yaml);
    cr_expect(wait_sockets("127.0.0.1", pg.port, 0, 5),
              "connections to the old address were kept: %d left",
              proxy_server_sockets(&px, "127.0.0.1", pg.port));
    cr_log_info("DNS change: old connections retired %.2f s after SIGHUP", now_s() - t_reload);
    addr = query_value(c, "SELECT inet_server_addr()");
    cr_expect_str_eq(addr, "127.0.0.2", "a new server connection went to the old address");
    free(addr);
    cr_expect_geq(proxy_server_sockets(&px, "127.0.0.2", pg.port), 1);
    PQfinish(c);
    txn_load_stop(ls, 2, &stop);
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(ls[i].n_errors, 0, "a client saw an error: %s %s", ls[i].errors[0].state,
                     ls[i].errors[0].msg);
        cr_expect_gt(ls[i].oks, 0);
    }
}

/* ---- a server that says AuthenticationOk in the middle of SCRAM ---- */

/* Reads one message of type from fd (5 s at most); false when it is not that. */
static bool read_type(int fd, char type)
{
    unsigned char body[4096];
    size_t len;
    return raw_read_msg(fd, body, sizeof(body), &len, 5000) == type;
}

/* Plays a PostgreSQL that someone in the middle stands in for: it asks for SCRAM, takes the
 * client-first-message, and then says AuthenticationOk without any server signature (and
 * answers each Query after that with a SELECT 1's CommandComplete, as if it ran). */
static void *impostor_server(void *arg)
{
    int lfd = *(int *)arg;
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    unsigned char hdr[8], rest[4096];
    bool ok = recv(fd, hdr, 4, MSG_WAITALL) == 4;
    uint32_t len = ok ? ((uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3]) : 0;
    ok = ok && len >= 8 && len - 4 <= sizeof(rest) &&
         recv(fd, rest, len - 4, MSG_WAITALL) == (ssize_t)(len - 4);
    struct buf b;
    buf_init(&b);
    static const char mechanisms[] = "SCRAM-SHA-256\0";
    proto_auth(&b, AUTH_REQ_SASL, mechanisms, sizeof(mechanisms));
    ok = ok && raw_send(fd, &b) && read_type(fd, 'p');
    buf_free(&b);
    buf_init(&b);
    proto_auth(&b, AUTH_REQ_OK, NULL, 0);
    proto_param_status(&b, "server_version", "16.0");
    proto_param_status(&b, "client_encoding", "UTF8");
    proto_param_status(&b, "standard_conforming_strings", "on");
    proto_backend_key(&b, 4242, 4242);
    proto_ready(&b, 'I');
    ok = ok && raw_send(fd, &b);
    buf_free(&b);
    unsigned char body[8192];
    size_t n;
    int type;
    while (ok && (type = raw_read_msg(fd, body, sizeof(body), &n, 1000)) > 0 && type != 'X') {
        buf_init(&b); /* then it answers whatever it is sent, as a server would a SET */
        if (type == 'Q') {
            buf_msg_start(&b, 'C');
            buf_put_str(&b, "SELECT 1");
            buf_msg_finish(&b);
        }
        if (type == 'Q' || type == 'S')
            proto_ready(&b, 'I');
        ok = b.len == 0 || raw_send(fd, &b);
        buf_free(&b);
    }
    close(fd);
    return NULL;
}

/* lakeproxy refuses a server that ends SCRAM with AuthenticationOk before proving, by its
 * signature, that it knows the password (red team 6): under tls: prefer or require someone in
 * the middle could otherwise stand in for PostgreSQL. libpq refuses it the same way. */
Test(faults, a_server_that_skips_the_scram_signature_is_refused)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(lfd >= 0);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t salen = sizeof(sa);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &salen), 0);
    cr_assert_eq(listen(lfd, 4), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, impostor_server, &lfd), 0);
    int port = free_port();
    make_yaml(port, "impostor", "127.0.0.1", ntohs(sa.sin_port), 1, 0);
    proxy_start_yaml(&px, port, yaml);
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "impostor", NULL);
    cr_expect(PQstatus(c) != CONNECTION_OK, "a client was served by a server that never proved it "
                                            "knows the password");
    cr_log_info("impostor: %s", PQerrorMessage(c));
    PQfinish(c);
    pthread_join(th, NULL);
    close(lfd);
    cr_expect_geq(file_count_lines(px.log, "without proving it knows the password"), 1,
                  "the log says why");
}
