/* test_redteam27.c: red-team round 27 against THE HELD RESET (commit 3df7f7a, server.c
 * can_drain, hold_reset, reset_when_settled, cancel_settled, on_reset_done): a client that
 * leaves while a cancel it sent is on its way to PostgreSQL no longer costs its server; the
 * server reads and drops the replies the client was owed, waits for the cancel connection to
 * settle (a timed-out cancel marks it cancel_adrift: closed, never reused), then sends ROLLBACK
 * and DISCARD ALL and goes back to the pool. And its neighbours: the cancel barrier
 * (client.c active_inspect, cancel_wait), the local 57014 answer for a queued statement
 * (client.c cancel_queued_query), a departing client's last messages (leaves_after_input).
 *
 * Attacks: a departed client's late cancel (the relay delays it 0.3 to 1.4 s, around
 * pool.connect_timeout_ms 1 s) against the next client's statement on the reused server, in
 * transaction and session pooling, and two departing clients in a row on one server; the
 * session state a departing client left (custom and ordinary settings, a prepared statement,
 * a temporary table, an advisory lock, LISTEN) and an open transaction begun in the drained
 * statements (idle in it when the cancel lands, or cut by it); autocommit statements sent
 * before leaving run exactly once; statements pipelined behind a cancel on its way when the
 * client leaves (session and transaction pooling); a cancel timed out after its client left;
 * extended-protocol batches (with and without Sync), unread COPY TO STDOUT and large results
 * left behind; row-level-security tenants in turn on a held server; a storm of 16 clients
 * cancelling and leaving at once over pool.size 2; the local 57014 of a queued statement
 * with statements pipelined behind and another queued client. Each test asserts the SAFE
 * behaviour: a failing test is a finding.
 *
 * Finding (1, 3 runs of the file, 15 tests each):
 * - a_doomed_held_server_does_not_keep_the_pool_slot_while_a_lock_waits (low, 3 of 3 runs):
 *   transaction pooling, pool.size 1. A client's statement waits for a table lock another
 *   session holds; the client cancels it, the cancel does not reach PostgreSQL within
 *   pool.connect_timeout_ms (1 s; the relay holds it 7 s) and the client leaves. server.c
 *   marks the server cancel_adrift (it will be closed, never reused), but hold_reset keeps it
 *   in SV_RESETTING, untimed (event_del of its timer), waiting for the departed statement's
 *   ReadyForQuery: cancel_settled only calls reset_when_settled once internal_pending is 0.
 *   The pool's only slot stays taken until the lock is freed or the late cancel finally
 *   lands: the next client waited past 3 s (served 3.7 s after asking when the cancel came
 *   at 5 s; with the lock held for good and the cancel lost, until pool.max_wait_ms fails
 *   every client of the pool). Before 3df7f7a such a server was closed at once (the cancel
 *   was on its way when the client left), freeing the slot. Expected: a held server whose
 *   cancel went adrift, with no client, is closed at once (cancel_unanswered-style, as the
 *   read-back and liveness check do), not drained for nothing.
 *   Fixed: cancel_settled hands every held server to reset_when_settled, which closes one
 *   that must retire (cancel_adrift) at once and resets the others once their replies are in.
 *   The test also needed the relay to delay each connection in its own thread
 *   (tests/lib/tcprelay.c): its acceptor used to sleep, so the replacement server's login
 *   waited behind the held cancel and the test failed on the code before 3df7f7a too.
 *
 * Held (15 tests, 3 runs each, no intermittent result): a departed client's cancel landing
 * 0.3/0.7/0.95/1.05/1.4 s late never cut the next client's statement (transaction and session
 * pooling), nor did two departing clients in a row on one server (3 rounds); a timed-out
 * cancel retires its server (another backend serves the next client, the old backend goes);
 * the reset really runs: a custom setting, work_mem, a prepared statement, a temporary table,
 * an advisory lock, LISTEN and an open transaction (idle in it when the cancel lands) are gone
 * for the next client of the reused server, the transaction's INSERT rolled back and the
 * autocommit INSERT run once; a transaction cut by the cancel is rolled back, statements
 * behind it never run (3 rounds); an INSERT sent behind a cancel on its way, then leaving,
 * runs once (session and transaction pooling); extended batches (with and without Sync),
 * unread COPY TO STDOUT and large results, a BEGIN; SET LOCAL; sleep batch left with a cancel
 * on its way: the next client is served within 3 s on a clean session; RLS tenants taking
 * turns on a held server (session and transaction pooling) each see only their own tenant;
 * 16 clients cancelling and leaving at once over pool.size 2 (3 rounds): served at once
 * after, at most 2 servers (SHOW SERVERS), none still running, both serving in parallel;
 * a queued statement cancelled (57014 locally) then leaving: only it is dropped, the one
 * pipelined behind and another queued client's run once; a held server whose statement
 * waits for a lock is freed by its cancel arriving in time. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "proto.h"
#include "rawproto.h"
#include "tcprelay.h"

TestSuite(redteam27, .timeout = 60);

#define ADMIN "admin:\n  users: [alice]\n"
#include "poolfix.h"

/* ---- fixtures: database rz reaches PostgreSQL through a TCP relay ---- */

static struct tcp_relay *relay;

/* (connections to PostgreSQL of pool rz, a cancel's too, time out after 1 s: poolfix.h) */

/* lakeproxy with database rz (pool of size in mode) reached through a relay the test can slow
 * down; extra is appended to the configuration (users, rls:). */
static void start_rz(const char *mode, int size, const char *extra)
{
    relay = start_relayed_rz(mode, size, extra, 10000, NULL);
}
static void start_rz_txn1(void)
{
    start_rz("transaction", 1, NULL);
}
static void start_rz_txn2(void)
{
    start_rz("transaction", 2, NULL);
}
static void start_rz_session1(void)
{
    start_rz("session", 1, NULL);
}
static void start_rz_rls_session1(void)
{
    start_rz("session", 1, RZ_RLS_TENANTS);
}
static void start_rz_rls_txn1(void)
{
    start_rz("transaction", 1, RZ_RLS_TENANTS);
}
static void stop_rz(void)
{
    stop_relayed(&relay);
}

/* alice (password) on rz */
static PGconn *alice_rz(void)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "rz", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* a raw session of carol (trust) on db, with its BackendKeyData */
static void raw_keyed(struct rawsess *s, const char *db)
{
    cr_assert(raw_keyed_try(px.port, s, db), "raw login of carol failed");
}

/* One query on a raw session, its replies read: its first value (into row). */
static void raw_one(int fd, const char *sql, char *row, size_t rowsz)
{
    char states[128];
    raw_query(fd, sql);
    cr_assert(raw_replies(fd, 1, states, sizeof(states), row, rowsz, 5000), "%s unanswered", sql);
    cr_assert_str_eq(states, "", "%s failed", sql);
    size_t n = strlen(row);
    if (n > 0 && row[n - 1] == '|')
        row[n - 1] = '\0';
}

/* The cancel of session v, sent on its way: once lakeproxy has routed it (its connection to
 * the relay accepted, the relay holding it for the delay set before), later connections go
 * through without delay. The cancel's descriptor is closed: nobody waits for its answer. */
static void cancel_routed(const struct rawsess *v)
{
    int cfd = raw_cancel_async(px.port, v->pid, v->key);
    cr_assert(cfd >= 0);
    usleep(150 * 1000); /* routed: its connection to the relay is up */
    tcp_relay_delay_connects(relay, 0);
    close(cfd);
}

/* A fresh table owned by lp_server with one text column v. */
static void fresh_table(PGconn *adm, const char *name)
{
    pg_owned_table(adm, name, "v text");
}

/* count(*) of rows of table where v = val */
static long rows_with(PGconn *adm, const char *table, const char *val)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE v = '%s'", table, val);
    return pg_long(adm, sql);
}

/* Waits up to timeout_s for backend pid to be gone from pg_stat_activity: true when gone. */
static bool backend_gone(PGconn *adm, const char *pid, double timeout_s)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", pid);
    double t0 = now_s();
    while (now_s() - t0 < timeout_s) {
        if (pg_long(adm, sql) == 0)
            return true;
        usleep(50 * 1000);
    }
    return false;
}

/* The backend pids of pool rz's servers as the admin console lists them (SHOW SERVERS),
 * comma-separated into out: how many. (PostgreSQL is shared with a test running alongside:
 * its own view of lp_server backends is not this proxy's.) */
static int rz_servers(char *out, size_t outsz)
{
    PGconn *adm = proxy_connect(&px, "alice", "alice-secret", "lakeproxy", NULL);
    cr_assert(PQstatus(adm) == CONNECTION_OK, "%s", PQerrorMessage(adm));
    PGresult *r = PQexec(adm, "SHOW SERVERS");
    cr_assert(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(adm));
    int db = PQfnumber(r, "database"), pid = PQfnumber(r, "backend_pid"), n = 0;
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < PQntuples(r); i++) {
        if (strcmp(PQgetvalue(r, i, db), "rz") != 0)
            continue;
        o += (size_t)snprintf(out + o, outsz - o, "%s%s", n ? "," : "", PQgetvalue(r, i, pid));
        n++;
    }
    PQclear(r);
    PQfinish(adm);
    return n;
}

/* Waits up to timeout_s until pool rz has at most max servers and none of their backends
 * runs anything: true when so. */
static bool servers_quiet(PGconn *adm, int max, double timeout_s)
{
    double t0 = now_s();
    while (now_s() - t0 < timeout_s) {
        char pids[512], sql[700];
        int n = rz_servers(pids, sizeof(pids));
        if (n <= max) {
            if (n == 0)
                return true;
            snprintf(sql, sizeof(sql),
                     "SELECT count(*) FROM pg_stat_activity WHERE pid IN (%s) AND state <> 'idle'",
                     pids);
            if (pg_long(adm, sql) == 0)
                return true;
        }
        usleep(100 * 1000);
    }
    return false;
}

/* ---- 1. a departed client's late cancel against the next client ---- */

/* A client runs a short statement, cancels it (the relay makes the cancel reach PostgreSQL d ms
 * late: before, around and past pool.connect_timeout_ms) and leaves at once. The next client's
 * statement on the pool's only server must never be cut by that cancel. */
Test(redteam27, a_departed_clients_late_cancel_never_hits_the_next_client_txn,
     .init = start_rz_txn1, .fini = stop_rz)
{
    static const int delays[] = {300, 700, 950, 1050, 1400};
    PGconn *b = alice_rz();
    for (size_t i = 0; i < sizeof(delays) / sizeof(delays[0]); i++) {
        struct rawsess v;
        raw_keyed(&v, "rz");
        char row[64];
        raw_one(v.fd, "SELECT 'warm'", row, sizeof(row));
        tcp_relay_delay_connects(relay, delays[i]);
        raw_query(v.fd, "SELECT pg_sleep(0.2)");
        usleep(50 * 1000);
        cancel_routed(&v);
        close(v.fd);
        PGresult *r = PQexec(b, "SELECT 'b', pg_sleep(1.5)");
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cr_expect_str_eq(st ? st : "", "",
                         "delay %d ms: the departed client's cancel hit the "
                         "next client: %s",
                         delays[i], PQresultErrorMessage(r));
        PQclear(r);
    }
    PQfinish(b);
    cr_expect(proxy_alive());
}

/* The same in session pooling: the next client logs in once the departed one's server is
 * reset, and runs at once. */
Test(redteam27, a_departed_clients_late_cancel_never_hits_the_next_client_session,
     .init = start_rz_session1, .fini = stop_rz)
{
    static const int delays[] = {300, 700, 950, 1050, 1400};
    for (size_t i = 0; i < sizeof(delays) / sizeof(delays[0]); i++) {
        struct rawsess v;
        raw_keyed(&v, "rz");
        tcp_relay_delay_connects(relay, delays[i]);
        raw_query(v.fd, "SELECT pg_sleep(0.2)");
        usleep(50 * 1000);
        cancel_routed(&v);
        close(v.fd);
        PGconn *b = alice_rz();
        PGresult *r = PQexec(b, "SELECT 'b', pg_sleep(1.5)");
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cr_expect_str_eq(st ? st : "", "",
                         "delay %d ms: the departed client's cancel hit the "
                         "next client: %s",
                         delays[i], PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(b);
    }
    cr_expect(proxy_alive());
}

/* Two clients in a row leave the only server (session pooling) with a cancel still on its
 * way; the third must run untouched, and the pool must serve it within a few seconds. */
Test(redteam27, two_departing_clients_in_a_row_then_a_third_runs_untouched,
     .init = start_rz_session1, .fini = stop_rz)
{
    for (int round = 0; round < 3; round++) {
        struct rawsess v1, v2;
        raw_keyed(&v1, "rz");
        tcp_relay_delay_connects(relay, 700);
        raw_query(v1.fd, "SELECT pg_sleep(2)");
        usleep(50 * 1000);
        int c1 = raw_cancel_async(px.port, v1.pid, v1.key);
        cr_assert(c1 >= 0);
        usleep(100 * 1000);
        close(v1.fd);
        raw_keyed(&v2, "rz"); /* served once the first one's server is reset */
        raw_query(v2.fd, "SELECT pg_sleep(0.1)");
        usleep(20 * 1000);
        int c2 = raw_cancel_async(px.port, v2.pid, v2.key);
        cr_assert(c2 >= 0);
        usleep(150 * 1000);
        tcp_relay_delay_connects(relay, 0);
        close(v2.fd);
        double t0 = now_s();
        PGconn *c = alice_rz();
        PGresult *r = PQexec(c, "SELECT 'c', pg_sleep(1.2)");
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cr_expect_str_eq(st ? st : "", "", "round %d: a departed client's cancel hit the third: %s",
                         round, PQresultErrorMessage(r));
        cr_expect_lt(now_s() - t0, 4.5, "round %d: the third waited %.2f s", round, now_s() - t0);
        PQclear(r);
        PQfinish(c);
        close(c1);
        close(c2);
    }
}

/* ---- 2. the reset really runs ---- */

/* Session pooling: a client leaves session state behind (a custom and an ordinary setting,
 * a prepared statement, a temporary table, an advisory lock, LISTEN), then pipelines an
 * autocommit INSERT, BEGIN, an INSERT in that transaction and a short sleep, cancels (the
 * cancel lands 0.5 s late, when the transaction is idle) and leaves. The next client of the
 * reused server sees none of it; the autocommit row is there once, the transaction's is not. */
Test(redteam27, state_and_open_transaction_left_behind_a_held_reset_are_gone,
     .init = start_rz_session1, .fini = stop_rz)
{
    PGconn *adm = pg_admin("lp_test");
    fresh_table(adm, "rt27_w");
    struct rawsess v;
    raw_keyed(&v, "rz");
    char pid[32], row[64];
    raw_one(v.fd, "SELECT pg_backend_pid()", pid, sizeof(pid));
    static const char *const state[] = {
        "SET rt27.secret = 'leak'",        "SET work_mem = '7MB'",
        "PREPARE rt27p AS SELECT 42",      "CREATE TEMP TABLE rt27tmp (x int)",
        "SELECT pg_advisory_lock(272727)", "LISTEN rt27chan",
    };
    for (size_t i = 0; i < sizeof(state) / sizeof(state[0]); i++)
        raw_one(v.fd, state[i], row, sizeof(row));
    tcp_relay_delay_connects(relay, 500);
    static const char *const tail[] = {
        "INSERT INTO rt27_w VALUES ('auto')",
        "BEGIN",
        "INSERT INTO rt27_w VALUES ('txn')",
        "SELECT pg_sleep(0.1)",
    };
    cr_assert(raw_send_queries(v.fd, tail, 4));
    usleep(20 * 1000);
    cancel_routed(&v);
    close(v.fd);
    PGconn *b = alice_rz();
    PQsetNoticeProcessor(b, quiet, NULL);
    char *bpid = query_value(b, "SELECT pg_backend_pid()::text");
    cr_log_info("departed on backend %s, next client on %s", pid, bpid);
    EXPECT_QUERY_VALUE(b, "SELECT coalesce(current_setting('rt27.secret', true), '')", "",
                       "a custom setting leaked");
    EXPECT_QUERY_VALUE(b, "SHOW work_mem", "4MB", "work_mem leaked");
    EXPECT_QUERY_VALUE(b, "SELECT count(*) FROM pg_prepared_statements", "0",
                       "a prepared statement leaked");
    EXPECT_QUERY_VALUE(b, "SELECT count(*) FROM pg_listening_channels()", "0", "LISTEN leaked");
    EXPECT_QUERY_VALUE(b, "SELECT to_regclass('pg_temp.rt27tmp') IS NULL", "t",
                       "a temporary table leaked");
    EXPECT_QUERY_VALUE(b,
                       "SELECT current_setting('transaction_isolation') || now()::text = "
                       "current_setting('transaction_isolation') || statement_timestamp()::text",
                       "t", "the next client runs inside the departed client's transaction");
    cr_expect_eq(
        pg_long(adm,
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 272727"),
        0, "the advisory lock is still held");
    cr_expect_eq(rows_with(adm, "rt27_w", "auto"), 1, "the autocommit INSERT did not run once");
    cr_expect_eq(rows_with(adm, "rt27_w", "txn"), 0,
                 "the departed client's open transaction was committed");
    free(bpid);
    PQfinish(b);
    PQfinish(adm);
}

/* Transaction pooling: the cancel lands while the drained statements' transaction runs (a
 * 3 s sleep inside BEGIN): the autocommit INSERT ran once, the transaction's INSERT and the
 * one behind it (25P02) did not, and the next client is served within a few seconds. */
Test(redteam27, a_transaction_cut_by_the_cancel_of_a_departed_client_is_rolled_back,
     .init = start_rz_txn1, .fini = stop_rz)
{
    PGconn *adm = pg_admin("lp_test");
    fresh_table(adm, "rt27_x");
    for (int round = 0; round < 3; round++) {
        struct rawsess v;
        raw_keyed(&v, "rz");
        char row[64];
        raw_one(v.fd, "SELECT 'warm'", row, sizeof(row));
        tcp_relay_delay_connects(relay, 400);
        static const char *const tail[] = {
            "INSERT INTO rt27_x VALUES ('auto')",  "BEGIN",
            "INSERT INTO rt27_x VALUES ('txn')",   "SELECT pg_sleep(3)",
            "INSERT INTO rt27_x VALUES ('after')", "COMMIT",
        };
        cr_assert(raw_send_queries(v.fd, tail, 6));
        usleep(100 * 1000);
        cancel_routed(&v);
        close(v.fd);
        double t0 = now_s();
        PGconn *b = alice_rz();
        EXPECT_QUERY_VALUE(b, "SELECT 'served'", "served", "round %d", round);
        cr_expect_lt(now_s() - t0, 2.5, "round %d: the next client waited %.2f s", round,
                     now_s() - t0);
        PQfinish(b);
        cr_expect_eq(rows_with(adm, "rt27_x", "auto"), round + 1,
                     "round %d: the autocommit INSERT did not run once", round);
        cr_expect_eq(rows_with(adm, "rt27_x", "txn"), 0, "round %d: the cut transaction committed",
                     round);
        cr_expect_eq(rows_with(adm, "rt27_x", "after"), 0, "round %d: a statement behind ran",
                     round);
    }
    PQfinish(adm);
}

/* ---- 3. statements behind a cancel on its way, when the client leaves ---- */

/* A client runs a sleep, cancels it (the cancel 0.4 s late), sends an autocommit INSERT right
 * behind (held at the cancel barrier) and closes its socket. PostgreSQL runs what a client
 * sent before it left (lakeproxy: leaves_after_input, "PostgreSQL runs what a client sent
 * before it left"): the INSERT must run once. mode: the pooling of rz. */
static void statement_behind_cancel_then_leave(const char *table)
{
    PGconn *adm = pg_admin("lp_test");
    fresh_table(adm, table);
    for (int round = 0; round < 3; round++) {
        struct rawsess v;
        raw_keyed(&v, "rz");
        char row[64], sql[128];
        raw_one(v.fd, "SELECT 'warm'", row, sizeof(row));
        tcp_relay_delay_connects(relay, 400);
        raw_query(v.fd, "SELECT pg_sleep(3)");
        usleep(100 * 1000);
        int cfd = raw_cancel_async(px.port, v.pid, v.key);
        cr_assert(cfd >= 0);
        usleep(100 * 1000); /* routed: on its way */
        tcp_relay_delay_connects(relay, 0);
        snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES ('r%d')", table, round);
        raw_query(v.fd, sql);
        usleep(20 * 1000);
        close(v.fd);
        cr_expect_geq(raw_wait_eof(cfd, 3), 0, "round %d: the cancel never settled", round);
        close(cfd);
        PGconn *b = alice_rz();
        EXPECT_QUERY_VALUE(b, "SELECT 'served'", "served", "round %d", round);
        PQfinish(b);
        char val[16];
        snprintf(val, sizeof(val), "r%d", round);
        double t0 = now_s();
        while (rows_with(adm, table, val) == 0 && now_s() - t0 < 3)
            usleep(50 * 1000);
        cr_expect_eq(rows_with(adm, table, val), 1,
                     "round %d: the INSERT sent before leaving ran %ld times, want 1", round,
                     rows_with(adm, table, val));
    }
    PQfinish(adm);
}

Test(redteam27, a_statement_sent_behind_a_cancel_then_leaving_runs_once_txn, .init = start_rz_txn1,
     .fini = stop_rz)
{
    statement_behind_cancel_then_leave("rt27_bt");
}

Test(redteam27, a_statement_sent_behind_a_cancel_then_leaving_runs_once_session,
     .init = start_rz_session1, .fini = stop_rz)
{
    statement_behind_cancel_then_leave("rt27_bs");
}

/* ---- 4. a cancel that times out after its client left ---- */

/* The cancel reaches PostgreSQL 1.6 s late (pool.connect_timeout_ms is 1 s): the server it
 * was for must be closed, never serve the next client, and its backend must go. */
Test(redteam27, a_cancel_timed_out_after_its_client_left_retires_the_server, .init = start_rz_txn1,
     .fini = stop_rz)
{
    PGconn *adm = pg_admin("lp_test");
    struct rawsess v;
    raw_keyed(&v, "rz");
    char pid[32];
    raw_one(v.fd, "SELECT pg_backend_pid()", pid, sizeof(pid));
    tcp_relay_delay_connects(relay, 1600);
    raw_query(v.fd, "SELECT pg_sleep(0.3)");
    usleep(50 * 1000);
    cancel_routed(&v);
    close(v.fd);
    PGconn *b = alice_rz();
    PGresult *r = PQexec(b, "SELECT pg_backend_pid()::text, pg_sleep(2)");
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect_str_eq(st ? st : "", "", "the late cancel hit the next client: %s",
                     PQresultErrorMessage(r));
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        cr_expect_str_neq(PQgetvalue(r, 0, 0), pid, "the server of the adrift cancel was reused");
    PQclear(r);
    cr_expect(backend_gone(adm, pid, 5), "backend %s of the retired server lives on", pid);
    PQfinish(b);
    PQfinish(adm);
}

/* ---- 5. what else a departing client leaves behind ---- */

/* Extended-protocol batches (with a Sync, and without one), an unread COPY TO STDOUT and an
 * unread large result, each with a cancel on its way as the client leaves: whatever happens
 * to its server, the next client is served within a few seconds, on a clean session. */
Test(redteam27, extended_batches_copy_and_large_results_left_with_a_cancel_on_its_way,
     .init = start_rz_txn1, .fini = stop_rz)
{
    for (int kind = 0; kind < 5; kind++) {
        struct rawsess v;
        raw_keyed(&v, "rz");
        char row[64];
        raw_one(v.fd, "SET application_name = 'rt27_left'", row, sizeof(row));
        tcp_relay_delay_connects(relay, 400);
        struct buf b;
        buf_init(&b);
        switch (kind) {
        case 0: /* a whole batch */
            raw_put_parse(&b, "", "SELECT pg_sleep(3)");
            raw_put_bind(&b, "", "");
            raw_put_execute(&b, "");
            raw_put_empty(&b, 'S');
            break;
        case 1: /* no Sync yet */
            raw_put_parse(&b, "s1", "SELECT pg_sleep(3)");
            raw_put_bind(&b, "", "s1");
            raw_put_execute(&b, "");
            raw_put_empty(&b, 'H');
            break;
        case 2: /* copy out, unread */
            raw_put_query(&b, "COPY (SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g) "
                              "TO STDOUT");
            raw_put_query(&b, "SELECT pg_sleep(3)");
            break;
        case 3: /* a large result, unread */
            raw_put_query(&b, "SELECT repeat('y', 1000) FROM generate_series(1, 5000)");
            raw_put_query(&b, "SELECT pg_sleep(3)");
            break;
        default: /* a simple query whose batch opened a transaction, then a sleep */
            raw_put_query(&b, "BEGIN; SET LOCAL work_mem = '9MB'; SELECT pg_sleep(3)");
            break;
        }
        cr_assert(raw_send(v.fd, &b));
        buf_free(&b);
        usleep(150 * 1000);
        cancel_routed(&v);
        close(v.fd);
        double t0 = now_s();
        PGconn *c = alice_rz();
        EXPECT_QUERY_VALUE(c,
                           "SELECT current_setting('application_name') || '/' || "
                           "current_setting('work_mem') || '/' || "
                           "(SELECT count(*) FROM pg_prepared_statements)",
                           "/4MB/0", "kind %d: the next session is not clean", kind);
        cr_expect_lt(now_s() - t0, 3.0, "kind %d: the next client waited %.2f s", kind,
                     now_s() - t0);
        PQfinish(c);
    }
    cr_expect(proxy_alive());
}

/* ---- 6. row-level security tenants in turn ---- */

struct canceller {
    PGconn *c;
    bool ok;
    char err[256];
};

static void *cancel_main(void *arg)
{
    struct canceller *k = arg;
    PGcancel *cn = PQgetCancel(k->c);
    k->ok = cn && PQcancel(cn, k->err, sizeof(k->err));
    if (cn)
        PQfreeCancel(cn);
    return NULL;
}

#define PROBE                                                                                      \
    "SELECT coalesce(current_setting('app.tenant_id', true), 'NULL') || '/' || "                   \
    "(SELECT count(*) FROM rls_docs) || '/' || current_user"

static PGconn *tenant(int t)
{
    char user[8];
    snprintf(user, sizeof(user), "t%d", t);
    PGconn *c = proxy_connect(&px, user, "pw", "rz", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s: %s", user, PQerrorMessage(c));
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

/* Tenant 1 runs a statement, cancels it (PQcancel in a thread: it returns when the cancel
 * arrived, 0.4 s late) and leaves meanwhile; tenant 2, next on the only server, must see its
 * own tenant and rows only, as tenant 1 must after it. */
static void tenants_in_turn(void)
{
    for (int round = 0; round < 4; round++) {
        int leaving = 1 + round % 2, next = 2 - round % 2;
        PGconn *a = tenant(leaving);
        char *mine = query_value(a, PROBE);
        cr_log_info("round %d: tenant %d sees %s", round, leaving, mine);
        free(mine);
        tcp_relay_delay_connects(relay, 400);
        cr_assert(PQsendQuery(a, "SELECT pg_sleep(3)"));
        usleep(100 * 1000);
        struct canceller k = {.c = a};
        pthread_t th;
        pthread_create(&th, NULL, cancel_main, &k);
        usleep(150 * 1000);
        tcp_relay_delay_connects(relay, 0);
        /* leave without a Terminate, as a killed client does */
        shutdown(PQsocket(a), SHUT_RDWR);
        pthread_join(th, NULL);
        PQfinish(a);
        PGconn *b = tenant(next);
        char want[64];
        snprintf(want, sizeof(want), "%d/100/lp_tenant", next);
        EXPECT_QUERY_VALUE(b, PROBE, want, "round %d: tenant %d after tenant %d", round, next,
                           leaving);
        PQfinish(b);
    }
}

Test(redteam27, rls_tenants_in_turn_on_a_held_server_session, .init = start_rz_rls_session1,
     .fini = stop_rz)
{
    tenants_in_turn();
}

Test(redteam27, rls_tenants_in_turn_on_a_held_server_txn, .init = start_rz_rls_txn1,
     .fini = stop_rz)
{
    tenants_in_turn();
}

/* ---- 7. a storm of clients cancelling and leaving ---- */

#define STORM 16

/* 16 clients over pool.size 2 each send a 2 s sleep, cancel it (cancels 0.3 s late; most are
 * for queued statements, answered locally) and leave, all at once, three times. Afterwards a
 * normal client is served within a few seconds, no more than 2 backends exist, and none runs
 * anything once the storm settled. */
Test(redteam27, a_storm_of_clients_cancelling_and_leaving_loses_no_server, .init = start_rz_txn2,
     .fini = stop_rz)
{
    PGconn *adm = pg_admin("lp_test");
    for (int round = 0; round < 3; round++) {
        struct rawsess v[STORM];
        for (int i = 0; i < STORM; i++)
            raw_keyed(&v[i], "rz");
        tcp_relay_delay_connects(relay, 300);
        for (int i = 0; i < STORM; i++)
            raw_query(v[i].fd, "SELECT pg_sleep(2)");
        usleep(100 * 1000);
        int cfd[STORM];
        for (int i = 0; i < STORM; i++)
            cfd[i] = raw_cancel_async(px.port, v[i].pid, v[i].key);
        usleep(20 * 1000);
        for (int i = 0; i < STORM; i++)
            close(v[i].fd);
        usleep(100 * 1000);
        tcp_relay_delay_connects(relay, 0);
        for (int i = 0; i < STORM; i++)
            if (cfd[i] >= 0)
                close(cfd[i]);
        double t0 = now_s();
        PGconn *c = alice_rz();
        EXPECT_QUERY_VALUE(c, "SELECT 'served'", "served", "round %d: no server", round);
        cr_expect_lt(now_s() - t0, 3.0, "round %d: the next client waited %.2f s", round,
                     now_s() - t0);
        PQfinish(c);
        cr_expect(servers_quiet(adm, 2, 5),
                  "round %d: more than 2 servers, or a backend still runs a departed statement",
                  round);
        char pids[512];
        int n = rz_servers(pids, sizeof(pids));
        cr_expect_leq(n, 2, "round %d: %d servers for pool.size 2 (%s)", round, n, pids);
    }
    /* both servers serve at once */
    PGconn *c1 = alice_rz(), *c2 = alice_rz();
    double t0 = now_s();
    cr_assert(PQsendQuery(c1, "SELECT pg_sleep(0.5)"));
    cr_assert(PQsendQuery(c2, "SELECT pg_sleep(0.5)"));
    PGresult *r;
    while ((r = PQgetResult(c1)))
        PQclear(r);
    while ((r = PQgetResult(c2)))
        PQclear(r);
    cr_expect_lt(now_s() - t0, 0.95, "the two servers do not both serve (%.2f s)", now_s() - t0);
    PQfinish(c1);
    PQfinish(c2);
    PQfinish(adm);
    cr_expect(proxy_alive());
}

/* ---- 8. the local 57014 of a queued statement ---- */

/* Two clients queue for the only server (transaction pooling) behind a holder. The first
 * pipelines two INSERTs, has the first cancelled (answered 57014 locally) and leaves; the
 * second pipelines one. The cancelled INSERT never runs, the one behind it and the other
 * client's run once. */
Test(redteam27, a_queued_cancel_then_leaving_drops_only_the_cancelled_statement, .init = start_txn1,
     .fini = stop_proxy)
{
    PGconn *adm = pg_admin("lp_test");
    fresh_table(adm, "rt27_q");
    PGconn *holder = alice();
    cr_assert(PQsendQuery(holder, "SELECT pg_sleep(1)"));
    usleep(150 * 1000);
    struct rawsess x, y;
    raw_keyed(&x, "app");
    raw_keyed(&y, "app");
    static const char *const xs[] = {"INSERT INTO rt27_q VALUES ('x1')",
                                     "INSERT INTO rt27_q VALUES ('x2')"};
    cr_assert(raw_send_queries(x.fd, xs, 2));
    raw_query(y.fd, "INSERT INTO rt27_q VALUES ('y1')");
    usleep(100 * 1000);
    int cfd = raw_cancel_async(px.port, x.pid, x.key);
    cr_assert(cfd >= 0);
    cr_expect_geq(raw_wait_eof(cfd, 3), 0, "the cancel connection stayed open");
    close(cfd);
    char states[64], rows[64];
    cr_expect(raw_replies(x.fd, 1, states, sizeof(states), rows, sizeof(rows), 5000));
    cr_expect_str_eq(states, "57014|", "the queued INSERT was not answered 57014 alone");
    close(x.fd); /* (all read: a FIN, not a reset) */
    cr_expect(raw_replies(y.fd, 1, states, sizeof(states), rows, sizeof(rows), 5000));
    cr_expect_str_eq(states, "", "the other queued client's INSERT failed");
    struct outcome o;
    outcome_of(holder, &o);
    cr_expect_str_eq(o.state, "", "the holder: %s", o.msg);
    double t0 = now_s();
    while (rows_with(adm, "rt27_q", "x2") == 0 && now_s() - t0 < 3)
        usleep(50 * 1000);
    cr_expect_eq(rows_with(adm, "rt27_q", "x1"), 0, "the cancelled INSERT ran");
    cr_expect_eq(rows_with(adm, "rt27_q", "x2"), 1, "the INSERT behind it did not run once");
    cr_expect_eq(rows_with(adm, "rt27_q", "y1"), 1, "the other client's INSERT did not run once");
    close(y.fd);
    PQfinish(holder);
    PQfinish(adm);
}

/* ---- 9. a held server whose cancel never arrives ---- */

/* A raw session's statement waits for a lock on table that another session holds; it
 * cancels it, the relay holding the cancel delay_ms, and leaves (after pause_ms). The next
 * client must be served within 3 s, the lock still held. */
static void expect_lock_waiter_cancels_and_leaves(const char *table, int delay_ms, int pause_ms)
{
    PGconn *adm = pg_admin("lp_test");
    fresh_table(adm, table);
    PGconn *locker = pg_admin("lp_test");
    pg_exec_ok(locker, "BEGIN");
    char sql[128];
    snprintf(sql, sizeof(sql), "LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", table);
    pg_exec_ok(locker, sql);
    struct rawsess v;
    raw_keyed(&v, "rz");
    char row[64];
    raw_one(v.fd, "SELECT 'warm'", row, sizeof(row));
    tcp_relay_delay_connects(relay, delay_ms);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    raw_query(v.fd, sql); /* waits for the lock */
    usleep(100 * 1000);
    cancel_routed(&v);
    close(v.fd);
    usleep((useconds_t)pause_ms * 1000);
    double t0 = now_s();
    PGconn *b = alice_rz();
    cr_assert(PQsendQuery(b, "SELECT 'served'"));
    bool served = wait_not_busy(b, 3.0);
    double waited = now_s() - t0;
    pg_exec_ok(locker, "COMMIT");
    struct outcome o;
    outcome_of(b, &o);
    cr_expect(served, "the next client waited %.2f s (served only once the lock was freed)",
              waited);
    cr_expect_str_eq(o.value, "served", "%s", o.msg);
    PQfinish(b);
    PQfinish(locker);
    PQfinish(adm);
}

/* The cancel does not reach PostgreSQL within pool.connect_timeout_ms (the relay holds it
 * 7 s). The server is then doomed (cancel_adrift: it will be closed, never reused), yet it
 * waited for the statement's reply, which only comes when the lock is freed: the pool's only
 * slot must not be held by it meanwhile (the next client is served within a few seconds, as
 * when the server was closed at once). 1.2 s after leaving, the cancel has timed out. */
Test(redteam27, a_doomed_held_server_does_not_keep_the_pool_slot_while_a_lock_waits,
     .init = start_rz_txn1, .fini = stop_rz)
{
    expect_lock_waiter_cancels_and_leaves("rt27_lk", 7000, 1200);
}

/* The same with a cancel that arrives in time (0.4 s late): it ends the lock wait, and the
 * next client is served on the kept server at once, the lock still held by the other
 * session. */
Test(redteam27, a_held_server_whose_statement_waits_for_a_lock_is_freed_by_its_cancel,
     .init = start_rz_txn1, .fini = stop_rz)
{
    expect_lock_waiter_cancels_and_leaves("rt27_lk2", 400, 0);
}
