/* test_redteam19.c: red-team round 19 on DATA CORRECTNESS and SAFETY when server connections
 * FAIL under the pooler: backends terminated (pg_terminate_backend from a direct connection)
 * or timed out by the server (idle_in_transaction_session_timeout) inside open transactions,
 * mid-COPY, during a pipeline of several Syncs, under a statement with a side effect that
 * cannot be rolled back (nextval), between uses of named prepared statements of two clients
 * sharing one server, in session pooling with session state, and a client vanishing
 * mid-transaction. Each test asserts the SAFE behaviour ("no lost, duplicated or altered row,
 * no COMMIT reported that did not happen, no statement run twice, no reply or statement of
 * another client, no hang"): a failing test is a finding.
 *
 * Found (transaction pooling; server.c loss_for_client treats a lost batch as "one statement
 * that opened its transaction" whenever the server was idle ('I') before it and one Sync or
 * query was in flight, though the batch itself may have opened a block with BEGIN):
 *  - a batch "BEGIN; INSERT ...; <backend dies>" (one simple query, or one extended batch as
 *    pgjdbc sends with autocommit off) gets ERROR + ReadyForQuery 'I' and the client stays; its
 *    COMMIT is then answered COMMIT (with a 25P01 warning): success for a transaction that was
 *    lost (begin_lost_in_*_then_commit);
 *  - what the client pipelined behind such a batch and lakeproxy held back (a batch that may
 *    RESET a startup setting) is run afterwards on a new server, outside the block: half of the
 *    client's transaction commits on its own (pipelined_behind_a_lost_block_with_reset);
 *  - the lost-statement error always says "its transaction did not complete", also when the
 *    batch had committed (lost_statement_error_does_not_deny_a_committed_block);
 *  - clients without rls: session-level SET statement_timeout / default_transaction_isolation
 *    stays on the server for the next client and is gone on a replacement server
 *    (carried_settings_survive_a_killed_server_plain; with rls: it held).
 * Fixed: a lost batch counts as one failed statement only when it runs one statement that
 * cannot open a block (server.c loss_for_client, lone_batch: not BEGIN/START, one statement,
 * one Execute); else the client is closed. The error of a lost statement says its outcome is
 * unknown. After a transaction in which a client without rls: may have changed a setting the
 * server does not report, lakeproxy reads those settings back (pipeline.c settings_in_doubt):
 * the client keeps what PostgreSQL kept, and the next client gets its own.
 * Test fixes: kills reach only this test's pool (its log's backend pids), and markers of
 * queries to kill are unique per test (tests run side by side on one PostgreSQL).
 * Held: COMMIT after a kill or idle_in_transaction_session_timeout inside a block, killed COPY,
 * pipelines of several Syncs, no retry of a killed statement with a side effect (nextval) under
 * checkout settings, named statements of two clients over killed servers, session state in
 * session pooling, clients vanishing mid-transaction, settings reported in a lost statement,
 * statements redefined or closed in a lost batch, held-back blocks, restart of PostgreSQL. */
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
#include "rawproto.h"

static struct proxy px;

static void start_txn1(void)
{
    proxy_start_with(&px, "transaction", 1, 3000, NULL);
}
static void start_txn2(void)
{
    proxy_start_with(&px, "transaction", 2, 3000, NULL);
}
static void start_session2(void)
{
    proxy_start_with(&px, "session", 2, 3000, NULL);
}
static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(redteam19, .timeout = 60);

/* ---- helpers ------------------------------------------------------------------------- */

static PGconn *client(const char *extra)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", extra);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* Waits (at most 5 s) until the backend pid is gone from pg_stat_activity. */
static void wait_backend_gone(PGconn *adm, const char *pid)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", pid);
    for (double end = now_s() + 5; now_s() < end;) {
        if (pg_long(adm, sql) == 0)
            return;
        usleep(20 * 1000);
    }
    cr_assert_fail("backend %s did not go away", pid);
}

/* Terminates the backend pid and waits until it is gone. */
static void terminate_pid(PGconn *adm, const char *pid)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%s)", pid);
    pg_exec_ok(adm, sql);
    wait_backend_gone(adm, pid);
}

/* Waits (at most 5 s) for an active backend whose query holds marker (and, when sleeping,
 * has reached its pg_sleep: what comes before it in the statement has run), terminates it;
 * its pid (malloc'd). */
static char *terminate_when(PGconn *adm, const char *marker, bool sleeping)
{
    char sql[400];
    snprintf(sql, sizeof(sql),
             "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%%%s%%' "
             "AND pid <> pg_backend_pid() %s LIMIT 1",
             marker, sleeping ? "AND wait_event = 'PgSleep'" : "");
    for (double end = now_s() + 5; now_s() < end;) {
        char *pid = query_value(adm, sql);
        if (pid) {
            terminate_pid(adm, pid);
            return pid;
        }
        usleep(10 * 1000);
    }
    cr_assert_fail("no active backend ran %s", marker);
    return NULL;
}

static char *terminate_active(PGconn *adm, const char *marker)
{
    return terminate_when(adm, marker, false);
}

static char *terminate_sleeping(PGconn *adm, const char *marker)
{
    return terminate_when(adm, marker, true);
}

/* The backend pids of every server connection this test's lakeproxy opened (its log says
 * "backend pid N" at each login), as a list for SQL's IN: "0" when none. */
static void pool_pids(char *out, size_t outsz)
{
    FILE *f = fopen(px.log, "r");
    char line[1024];
    size_t n = (size_t)snprintf(out, outsz, "0");
    while (f && fgets(line, sizeof(line), f)) {
        const char *at = strstr(line, "backend pid ");
        unsigned pid;
        if (at && sscanf(at, "backend pid %u", &pid) == 1 && n + 16 < outsz)
            n += (size_t)snprintf(out + n, outsz - n, ",%u", pid);
    }
    if (f)
        fclose(f);
}

/* Terminates every backend of this test's pool (idle pooled ones too), and only those: other
 * tests run beside this one on the same PostgreSQL. */
static void terminate_pool_backends(PGconn *adm)
{
    char pids[4096], sql[4300];
    pool_pids(pids, sizeof(pids));
    snprintf(sql, sizeof(sql),
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN (%s)", pids);
    pg_exec_ok(adm, sql);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE pid IN (%s)", pids);
    for (double end = now_s() + 5; now_s() < end;) {
        if (pg_long(adm, sql) == 0)
            return;
        usleep(20 * 1000);
    }
}

static bool is_conn_failure(const char *state)
{
    return strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
           strcmp(state, "25P03") == 0;
}

/* Runs sql with a bound wait (a hang fails the test); the last result, its SQLSTATE in state. */
static ExecStatusType exec_bounded(PGconn *c, const char *sql, double timeout_s, char state[6],
                                   char *msg, size_t msgsz)
{
    state[0] = 0;
    if (msg)
        msg[0] = 0;
    if (!PQsendQuery(c, sql)) {
        snprintf(state, 6, "%s", "SEND");
        if (msg)
            snprintf(msg, msgsz, "%s", PQerrorMessage(c));
        return PGRES_FATAL_ERROR;
    }
    PGresult *r = query_result_within(c, timeout_s);
    cr_assert(r != NULL || PQstatus(c) != CONNECTION_OK, "no answer to %s within %.0f s", sql,
              timeout_s);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    snprintf(state, 6, "%s", s ? s : "");
    if (msg)
        snprintf(msg, msgsz, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    PQclear(r);
    return st;
}

/* ---- 1. COMMIT after the backend of an open transaction died -------------------------- */

/* A client inside BEGIN inserted a row; its backend is terminated while it is idle in the
 * transaction. Its COMMIT must not be reported as done (the row is gone), and whatever it
 * gets must come in bounded time. */
static void commit_after_kill(const char *table)
{
    PGconn *adm = pg_admin("lp_test");
    char sql[256], state[6], msg[256];
    pg_owned_table(adm, table, "v int");
    PGconn *c = client(NULL);
    cr_assert_str_eq(query_sqlstate(c, "BEGIN"), "");
    snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (1)", table);
    cr_assert_str_eq(query_sqlstate(c, sql), "");
    char *pid = query_value(c, "SELECT pg_backend_pid()");
    terminate_pid(adm, pid);
    free(pid);
    usleep(100 * 1000); /* the proxy sees its server close */
    ExecStatusType st = exec_bounded(c, "COMMIT", 5, state, msg, sizeof(msg));
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    long rows = pg_long(adm, sql);
    cr_expect(st != PGRES_COMMAND_OK,
              "COMMIT reported success after the transaction's backend was killed "
              "(rows in %s: %ld)",
              table, rows);
    cr_expect_eq(rows, 0, "the killed transaction's row is in %s", table);
    PQfinish(c);
    /* the pool serves the next client */
    c = client(NULL);
    EXPECT_QUERY_VALUE(c, "SELECT 'next'", "next", "the pool did not recover");
    PQfinish(c);
    snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
    pg_exec_ok(adm, sql);
    PQfinish(adm);
}

Test(redteam19, commit_after_backend_killed_in_transaction_txn1, .init = start_txn1,
     .fini = stop_proxy)
{
    commit_after_kill("lp_rt19_commit1");
}

Test(redteam19, commit_after_backend_killed_in_transaction_session, .init = start_session2,
     .fini = stop_proxy)
{
    commit_after_kill("lp_rt19_commit2");
}

/* The server itself ends the transaction's session (idle_in_transaction_session_timeout,
 * FATAL 25P03) while the client thinks; its COMMIT must not succeed on another server. */
Test(redteam19, commit_after_idle_in_transaction_timeout_is_not_success, .init = start_txn1,
     .fini = stop_proxy)
{
    PGconn *adm = pg_admin("lp_test");
    char state[6], msg[256];
    pg_owned_table(adm, "lp_rt19_idle", "v int");
    PGconn *c = client(NULL);
    cr_assert_str_eq(query_sqlstate(c, "BEGIN"), "");
    cr_assert_str_eq(query_sqlstate(c, "SET LOCAL idle_in_transaction_session_timeout = '200ms'"),
                     "");
    cr_assert_str_eq(query_sqlstate(c, "INSERT INTO lp_rt19_idle VALUES (1)"), "");
    char *pid = query_value(c, "SELECT pg_backend_pid()");
    wait_backend_gone(adm, pid); /* the server ended it by itself */
    free(pid);
    usleep(100 * 1000);
    ExecStatusType st = exec_bounded(c, "COMMIT", 5, state, msg, sizeof(msg));
    long rows = pg_long(adm, "SELECT count(*) FROM lp_rt19_idle");
    cr_expect(st != PGRES_COMMAND_OK,
              "COMMIT reported success after the server ended the transaction (rows: %ld)", rows);
    cr_expect_eq(rows, 0);
    PQfinish(c);
    pg_exec_ok(adm, "DROP TABLE lp_rt19_idle");
    PQfinish(adm);
}

/* A second statement of the transaction after the kill must fail too (not run on a fresh
 * server outside the transaction, as an autocommit statement). */
Test(redteam19, statement_after_kill_in_transaction_does_not_run_outside_it, .init = start_txn1,
     .fini = stop_proxy)
{
    PGconn *adm = pg_admin("lp_test");
    char state[6], msg[256];
    pg_owned_table(adm, "lp_rt19_after", "v int");
    PGconn *c = client(NULL);
    cr_assert_str_eq(query_sqlstate(c, "BEGIN"), "");
    cr_assert_str_eq(query_sqlstate(c, "INSERT INTO lp_rt19_after VALUES (1)"), "");
    char *pid = query_value(c, "SELECT pg_backend_pid()");
    terminate_pid(adm, pid);
    free(pid);
    usleep(100 * 1000);
    ExecStatusType st =
        exec_bounded(c, "INSERT INTO lp_rt19_after VALUES (2)", 5, state, msg, sizeof(msg));
    if (PQstatus(c) == CONNECTION_OK)
        (void)exec_bounded(c, "COMMIT", 5, state, msg, sizeof(msg));
    long rows = pg_long(adm, "SELECT count(*) FROM lp_rt19_after");
    cr_expect(st != PGRES_COMMAND_OK,
              "a statement of the killed transaction was reported done (rows now: %ld)", rows);
    cr_expect_eq(rows, 0, "rows of the killed transaction were written: %ld", rows);
    PQfinish(c);
    pg_exec_ok(adm, "DROP TABLE lp_rt19_after");
    PQfinish(adm);
}

/* ---- 2. a side effect that cannot be rolled back is never run twice ------------------- */

/* Two clients with different startup settings (application_name, TimeZone) share one
 * server, so a checkout carries lakeproxy's own settings ahead of the client's statement. The
 * backend is killed while the statement (nextval, then a sleep) runs: the client gets an error
 * and the sequence moved once: no retry of what already ran. */
Test(redteam19, killed_statement_with_side_effect_is_not_retried, .init = start_txn1,
     .fini = stop_proxy)
{
    PGconn *adm = pg_admin("lp_test");
    pg_exec_ok(adm, "DROP SEQUENCE IF EXISTS lp_rt19_seq");
    pg_exec_ok(adm, "CREATE SEQUENCE lp_rt19_seq");
    pg_exec_ok(adm, "ALTER SEQUENCE lp_rt19_seq OWNER TO lp_server");
    PGconn *a = client("application_name=lp_rt19_a options='-c TimeZone=Asia/Tokyo'");
    PGconn *b = client("application_name=lp_rt19_b options='-c TimeZone=America/Lima'");
    EXPECT_QUERY_VALUE(b, "SELECT current_setting('TimeZone')", "America/Lima", "b's zone");
    for (int round = 0; round < 2; round++) {
        /* the server last served b: a's checkout sets a's settings first */
        EXPECT_QUERY_VALUE(b, "SELECT 1", "1", "b");
        cr_assert(PQsendQuery(a, "SELECT nextval('lp_rt19_seq'), pg_sleep(2) /*lp_rt19_sfx*/"));
        free(terminate_sleeping(adm, "lp_rt19_sfx"));
        PGresult *r = query_result_within(a, 6);
        cr_assert(r != NULL || PQstatus(a) != CONNECTION_OK, "a hangs after its backend died");
        cr_expect(PQresultStatus(r) != PGRES_TUPLES_OK,
                  "the killed statement returned rows (%s): it ran again",
                  r ? PQgetvalue(r, 0, 0) : "");
        const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        cr_expect(s == NULL || is_conn_failure(s), "unclear error %s: %s", s ? s : "",
                  r ? PQresultErrorMessage(r) : "");
        PQclear(r);
        long last = pg_long(adm, "SELECT last_value FROM lp_rt19_seq");
        cr_expect_eq(last, round + 1, "nextval ran %ld times for %d statements", last, round + 1);
        if (PQstatus(a) != CONNECTION_OK) {
            PQfinish(a);
            a = client("application_name=lp_rt19_a options='-c TimeZone=Asia/Tokyo'");
        }
        EXPECT_QUERY_VALUE(a, "SELECT current_setting('TimeZone')", "Asia/Tokyo",
                           "a's zone on its replacement server");
        EXPECT_QUERY_VALUE(b, "SELECT current_setting('TimeZone')", "America/Lima",
                           "b's zone after a's server died");
        EXPECT_QUERY_VALUE(a, "SELECT current_setting('application_name')", "lp_rt19_a", "a");
    }
    PQfinish(a);
    PQfinish(b);
    pg_exec_ok(adm, "DROP SEQUENCE lp_rt19_seq");
    PQfinish(adm);
}

/* ---- 3. named prepared statements of two clients over a replaced server --------------- */

static void expect_prepared(PGconn *c, const char *name, const char *want, const char *what)
{
    PGresult *r = PQexecPrepared(c, name, 0, NULL, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        /* at most one failure for the loss of the server, then it must serve */
        const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cr_expect(s && is_conn_failure(s), "%s: %s (%s)", what, PQresultErrorMessage(r),
                  s ? s : "");
        PQclear(r);
        r = PQexecPrepared(c, name, 0, NULL, NULL, NULL, 0);
    }
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", what, PQresultErrorMessage(r));
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        cr_expect_str_eq(PQgetvalue(r, 0, 0), want, "%s ran another text", what);
    PQclear(r);
}

static void prepare_ok(PGconn *c, const char *name, const char *sql)
{
    PGresult *r = PQprepare(c, name, sql, 0, NULL);
    const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && s && is_conn_failure(s)) {
        /* a server killed a moment ago, not yet seen closed by lakeproxy: once */
        PQclear(r);
        r = PQprepare(c, name, sql, 0, NULL);
    }
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
    PQclear(r);
}

static void prepared_over_kills(void)
{
    PGconn *adm = pg_admin("lp_test");
    PGconn *a = client("application_name=lp_rt19_pa");
    PGconn *b = client("application_name=lp_rt19_pb options='-c DateStyle=SQL,DMY'");
    prepare_ok(a, "s", "SELECT 'A:' || to_char(1, '9')");
    prepare_ok(b, "s", "SELECT 'B:' || to_char(2, '9')");
    prepare_ok(a, "d", "SELECT '03/04/2024'::date::text");
    prepare_ok(b, "d", "SELECT '03/04/2024'::date::text");
    for (int k = 0; k < 3; k++) {
        expect_prepared(a, "s", "A: 1", "a's s");
        expect_prepared(b, "s", "B: 2", "b's s");
        expect_prepared(a, "d", "2024-03-04", "a's d (ISO, MDY)");
        expect_prepared(b, "d", "03/04/2024", "b's d (SQL, DMY)");
        terminate_pool_backends(adm);
        if (k == 1) {
            /* killed while a holds the server in a transaction, b waiting */
            cr_assert_str_eq(query_sqlstate(a, "BEGIN"), "");
            expect_prepared(a, "s", "A: 1", "a's s in a transaction");
            cr_assert(PQsendPrepare(b, "t", "SELECT 'B:t'", 0, NULL));
            terminate_pool_backends(adm);
            PGresult *r = query_result_within(b, 6);
            cr_assert(r != NULL || PQstatus(b) != CONNECTION_OK, "b hangs");
            PQclear(r);
            if (PQstatus(a) == CONNECTION_OK)
                PQclear(PQexec(a, "ROLLBACK"));
            if (PQstatus(a) != CONNECTION_OK) {
                PQfinish(a);
                a = client("application_name=lp_rt19_pa");
                prepare_ok(a, "s", "SELECT 'A:' || to_char(1, '9')");
                prepare_ok(a, "d", "SELECT '03/04/2024'::date::text");
            }
            expect_prepared(b, "t", "B:t", "b's t prepared while a's server died");
        }
    }
    expect_prepared(b, "s", "B: 2", "b's s at the end");
    expect_prepared(a, "s", "A: 1", "a's s at the end");
    expect_prepared(b, "d", "03/04/2024", "b's d at the end");
    PQfinish(a);
    PQfinish(b);
    PQfinish(adm);
}

Test(redteam19, named_statements_of_two_clients_survive_killed_servers_txn1, .init = start_txn1,
     .fini = stop_proxy)
{
    prepared_over_kills();
}

Test(redteam19, named_statements_of_two_clients_survive_killed_servers_txn2, .init = start_txn2,
     .fini = stop_proxy)
{
    prepared_over_kills();
}

/* ---- 4. a pipeline of several Syncs with the backend killed in its middle -------------- */

static int read_msg(int fd, unsigned char *body, size_t sz, size_t *len)
{
    return raw_read_msg(fd, body, sz, len, 6000);
}

/* Batch 1 inserts 1 (committed, answered), batch 2 sleeps (killed), batch 3 inserts 2. The
 * client must be told of each batch that ran, and what it is told ran must be in the table:
 * row 1 once, row 2 present exactly when its CommandComplete reached the client. */
static void pipeline_kill(const char *table)
{
    PGconn *adm = pg_admin("lp_test");
    char sql[256];
    pg_owned_table(adm, table, "v int");
    int fd = raw_session(px.port, "carol", "app");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (1)", table);
    raw_put_parse(&b, "", sql);
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    snprintf(sql, sizeof(sql), "SELECT pg_sleep(2) /*%s_sleep*/", table); /* (its own marker:
                                                                          tests run side by side) */
    raw_put_parse(&b, "", sql);
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (2)", table);
    raw_put_parse(&b, "", sql);
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    snprintf(sql, sizeof(sql), "%s_sleep", table);
    free(terminate_sleeping(adm, sql));
    unsigned char body[8192];
    size_t len;
    int inserts_done = 0, rfq = 0, errors = 0, t;
    char err_state[6] = "";
    double t0 = now_s();
    while (rfq < 3 && (t = read_msg(fd, body, sizeof(body), &len)) >= 0) {
        if (t == 'C' && strncmp((char *)body, "INSERT", 6) == 0)
            inserts_done++;
        else if (t == 'Z')
            rfq++;
        else if (t == 'E') {
            errors++;
            if (!err_state[0])
                snprintf(err_state, sizeof(err_state), "%s", raw_error_sqlstate(body, len));
        }
    }
    cr_expect(now_s() - t0 < 6, "the pipeline hung after its backend died");
    cr_expect_geq(errors, 1, "no error for the killed batch");
    cr_expect(is_conn_failure(err_state), "unclear error for the killed batch: %s", err_state);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE v = 1", table);
    long one = pg_long(adm, sql);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE v = 2", table);
    long two = pg_long(adm, sql);
    cr_expect_eq(one, 1, "row 1 (the committed batch) is there %ld times", one);
    cr_expect_eq(two, inserts_done - 1,
                 "row 2 is there %ld times, the client was told of %d INSERTs (incl. row 1)", two,
                 inserts_done);
    cr_expect_geq(inserts_done, 1, "the first batch's INSERT was not reported");
    /* the connection, if kept, is in sync: a query gets its own answer */
    if (rfq == 3) {
        raw_query(fd, "SELECT 'lp_rt19_after_pipe'");
        bool seen = false;
        while ((t = read_msg(fd, body, sizeof(body), &len)) >= 0 && t != 'Z')
            if (t == 'D' && memmem(body, len, "lp_rt19_after_pipe", 18))
                seen = true;
        cr_expect(seen, "the query after the pipeline did not get its own row");
    }
    buf_free(&b);
    close(fd);
    snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
    pg_exec_ok(adm, sql);
    PQfinish(adm);
}

Test(redteam19, pipeline_of_three_syncs_killed_in_the_middle_txn1, .init = start_txn1,
     .fini = stop_proxy)
{
    pipeline_kill("lp_rt19_pipe1");
}

Test(redteam19, pipeline_of_three_syncs_killed_in_the_middle_session, .init = start_session2,
     .fini = stop_proxy)
{
    pipeline_kill("lp_rt19_pipe2");
}

/* ---- 5. mid-COPY ---------------------------------------------------------------------- */

Test(redteam19, copy_killed_midway_is_not_reported_done, .init = start_txn1, .fini = stop_proxy)
{
    PGconn *adm = pg_admin("lp_test");
    pg_owned_table(adm, "lp_rt19_copy", "v int");
    PGconn *c = client(NULL);
    PGresult *r = PQexec(c, "COPY lp_rt19_copy FROM STDIN /*lp_rt19_cp*/");
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_IN, "%s", PQerrorMessage(c));
    PQclear(r);
    cr_assert_eq(PQputCopyData(c, "1\n2\n", 4), 1);
    cr_assert_eq(PQflush(c), 0);
    free(terminate_active(adm, "lp_rt19_cp"));
    usleep(100 * 1000);
    (void)PQputCopyData(c, "3\n", 2);
    (void)PQputCopyEnd(c, NULL);
    r = query_result_within(c, 5);
    cr_expect(r != NULL || PQstatus(c) != CONNECTION_OK, "the COPY hangs");
    cr_expect(PQresultStatus(r) != PGRES_COMMAND_OK, "a killed COPY was reported done");
    PQclear(r);
    long rows = pg_long(adm, "SELECT count(*) FROM lp_rt19_copy");
    cr_expect_eq(rows, 0, "%ld rows of a killed COPY", rows);
    PQfinish(c);
    c = client(NULL);
    EXPECT_QUERY_VALUE(c, "SELECT 'ok'", "ok", "the pool did not recover after the COPY");
    PQfinish(c);
    pg_exec_ok(adm, "DROP TABLE lp_rt19_copy");
    PQfinish(adm);
}

/* ---- 6. session pooling: session state never silently lost --------------------------- */

Test(redteam19, session_state_is_not_silently_lost_with_the_server, .init = start_session2,
     .fini = stop_proxy)
{
    PGconn *adm = pg_admin("lp_test");
    char state[6], msg[256];
    PGconn *c = client(NULL);
    cr_assert_str_eq(query_sqlstate(c, "SET lp_rt19.x = 'kept'"), "");
    cr_assert_str_eq(query_sqlstate(c, "CREATE TEMP TABLE lp_rt19_tmp (v int)"), "");
    prepare_ok(c, "p", "SELECT current_setting('lp_rt19.x', true)");
    char *pid = query_value(c, "SELECT pg_backend_pid()");
    terminate_pid(adm, pid);
    free(pid);
    usleep(100 * 1000);
    for (int i = 0; i < 2 && PQstatus(c) == CONNECTION_OK; i++) {
        ExecStatusType st = exec_bounded(c, "SELECT current_setting('lp_rt19.x', true)", 5, state,
                                         msg, sizeof(msg));
        cr_expect(st != PGRES_TUPLES_OK,
                  "a session pooled client's session silently changed server (try %d)", i);
    }
    PQfinish(c);
    PQfinish(adm);
}

/* ---- 7. a client vanishing mid-transaction ------------------------------------------- */

Test(redteam19, client_vanishing_mid_transaction_leaves_nothing_to_the_next, .init = start_txn1,
     .fini = stop_proxy)
{
    PGconn *adm = pg_admin("lp_test");
    pg_owned_table(adm, "lp_rt19_gone", "v int");
    for (int k = 0; k < 3; k++) {
        int fd = raw_session(px.port, "carol", "app");
        cr_assert(fd >= 0);
        struct buf b;
        buf_init(&b);
        unsigned char body[4096];
        size_t len;
        int t;
        raw_query(fd, "BEGIN; INSERT INTO lp_rt19_gone VALUES (1); "
                      "LOCK TABLE lp_rt19_gone IN ACCESS EXCLUSIVE MODE");
        while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) >= 0 && t != 'Z')
            ;
        cr_assert_eq(t, 'Z');
        if (k == 1) {
            /* a pipeline left in flight: the next statement would commit */
            raw_put_parse(&b, "", "INSERT INTO lp_rt19_gone VALUES (2)");
            raw_put_bind(&b, "", "");
            raw_put_execute(&b, "");
            raw_put_parse(&b, "", "SELECT pg_sleep(0.3)");
            raw_put_bind(&b, "", "");
            raw_put_execute(&b, "");
            raw_send(fd, &b);
        } else if (k == 2) {
            raw_query(fd, "INSERT INTO lp_rt19_gone VALUES (3)");
        }
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
        buf_free(&b);
        PGconn *c = proxy_connect_within(&px, "alice", "alice-secret", "app", 5000);
        cr_assert(PQstatus(c) == CONNECTION_OK);
        char state[6], msg[256];
        ExecStatusType st =
            exec_bounded(c, "SELECT count(*) FROM lp_rt19_gone", 5, state, msg, sizeof(msg));
        cr_expect_eq(st, PGRES_TUPLES_OK, "round %d: the next client: %s", k, msg);
        EXPECT_QUERY_VALUE(c, "SELECT count(*) FROM lp_rt19_gone", "0",
                           "round %d: half a transaction of a vanished client is visible", k);
        EXPECT_QUERY_VALUE(c, "SELECT now() = statement_timestamp()", "t",
                           "round %d: the next client runs inside the vanished one's "
                           "transaction",
                           k);
        PQfinish(c);
    }
    long rows = pg_long(adm, "SELECT count(*) FROM lp_rt19_gone");
    cr_expect_eq(rows, 0, "%ld rows of vanished transactions were committed", rows);
    pg_exec_ok(adm, "DROP TABLE lp_rt19_gone");
    PQfinish(adm);
}

/* ---- 8. a transaction block opened and lost within one batch ------------------------- */

/* Reads a raw connection's answers up to ReadyForQuery: its status byte, 0 at EOF/timeout;
 * counts CommandCompletes with tag prefix and ErrorResponses, keeping the first SQLSTATE. */
static int raw_until_ready(int fd, const char *tag, int *tags, int *errors, char state[6])
{
    unsigned char body[8192];
    size_t len;
    int t;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 6000)) >= 0) {
        if (t == 'C' && strncmp((char *)body, tag, strlen(tag)) == 0)
            (*tags)++;
        else if (t == 'E') {
            (*errors)++;
            if (!state[0])
                snprintf(state, 6, "%s", raw_error_sqlstate(body, len));
        } else if (t == 'Z')
            return len >= 1 ? body[0] : '?';
    }
    return 0;
}

/* The batch opens a transaction block (BEGIN), writes, and its backend dies before the batch
 * ends. On PostgreSQL the client is disconnected; through lakeproxy it must at least not be
 * able to COMMIT "successfully" as if its transaction were intact (README: "A client inside a
 * transaction is disconnected with 08006 instead, so that it cannot carry on as if its
 * transaction were intact"): a COMMIT that gets CommandComplete without an error tells the
 * application its transaction committed, and the INSERT it sent is not there. */
static void begin_lost_in_batch(const char *table, bool extended)
{
    PGconn *adm = pg_admin("lp_test");
    char sql[256];
    pg_owned_table(adm, table, "v int");
    int fd = raw_session(px.port, "carol", "app");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (1)", table);
    if (extended) { /* as pgjdbc with autocommit off: BEGIN goes with the first statement */
        raw_put_parse(&b, "", "BEGIN");
        raw_put_bind(&b, "", "");
        raw_put_execute(&b, "");
        raw_put_parse(&b, "", sql);
        raw_put_bind(&b, "", "");
        raw_put_execute(&b, "");
        raw_put_parse(&b, "", "SELECT pg_terminate_backend(pg_backend_pid())");
        raw_put_bind(&b, "", "");
        raw_put_execute(&b, "");
        raw_put_empty(&b, 'S');
        cr_assert(raw_send(fd, &b));
    } else {
        char q[512];
        snprintf(q, sizeof(q), "BEGIN; %s; SELECT pg_terminate_backend(pg_backend_pid())", sql);
        raw_query(fd, q);
    }
    int tags = 0, errors = 0;
    char state[6] = "";
    int st = raw_until_ready(fd, "INSERT", &tags, &errors, state);
    cr_expect_geq(errors, 1, "no error for the lost batch");
    if (st) { /* kept connected: what it does next must not look like a committed block */
        cr_expect(is_conn_failure(state), "unclear error %s", state);
        int commits = 0, cerrors = 0;
        char cstate[6] = "";
        raw_query(fd, "COMMIT");
        int st2 = raw_until_ready(fd, "COMMIT", &commits, &cerrors, cstate);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
        long rows = pg_long(adm, sql);
        cr_expect(!(st2 && commits == 1 && cerrors == 0),
                  "after its backend died inside the block it opened (status '%c' after the "
                  "error), the client's COMMIT was answered COMMIT without an error; rows "
                  "written: %ld (the INSERT it was told of: %d)",
                  st, rows, tags);
    }
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    cr_expect_eq(pg_long(adm, sql), 0);
    buf_free(&b);
    close(fd);
    snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
    pg_exec_ok(adm, sql);
    PQfinish(adm);
}

Test(redteam19, begin_lost_in_one_simple_query_then_commit, .init = start_txn1, .fini = stop_proxy)
{
    begin_lost_in_batch("lp_rt19_blk1", false);
}

Test(redteam19, begin_lost_in_one_extended_batch_then_commit, .init = start_txn1,
     .fini = stop_proxy)
{
    begin_lost_in_batch("lp_rt19_blk2", true);
}

/* ---- 9. what the client was told of its settings matches the server's after a loss ---- */

/* A statement that SETs a reported setting (PostgreSQL tells the client at once, by
 * ParameterStatus) and is then lost with its server: lakeproxy keeps the client, and its next
 * transaction runs with the settings of before (README). The client's view (libpq's
 * PQparameterStatus, which decodes text by client_encoding and which drivers read dates by)
 * must then say what the server runs, or the client reads its rows wrongly. */
static void setting_lost(const char *name, const char *value, const char *show)
{
    PGconn *c = client(NULL);
    char before[64], q[256], state[6], msg[256];
    snprintf(before, sizeof(before), "%s", PQparameterStatus(c, name));
    snprintf(q, sizeof(q), "SET %s = '%s'; SELECT pg_terminate_backend(pg_backend_pid())", name,
             value);
    ExecStatusType st = exec_bounded(c, q, 5, state, msg, sizeof(msg));
    cr_expect(st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK, "the lost batch succeeded");
    if (PQstatus(c) == CONNECTION_OK) {
        const char *told = PQparameterStatus(c, name);
        char *runs = query_value(c, show);
        cr_expect_str_eq(told ? told : "(none)", runs ? runs : "(none)",
                         "%s: the client was told %s (before: %s) but its next transaction runs "
                         "%s",
                         name, told ? told : "(none)", before, runs ? runs : "(none)");
        free(runs);
    }
    PQfinish(c);
}

Test(redteam19, timezone_set_in_a_lost_statement_matches_what_the_client_was_told,
     .init = start_txn1, .fini = stop_proxy)
{
    setting_lost("TimeZone", "Asia/Tokyo", "SHOW TimeZone");
}

Test(redteam19, client_encoding_set_in_a_lost_statement_matches_what_the_client_was_told,
     .init = start_txn1, .fini = stop_proxy)
{
    setting_lost("client_encoding", "LATIN1", "SHOW client_encoding");
}

Test(redteam19, datestyle_set_in_a_lost_statement_matches_what_the_client_was_told,
     .init = start_txn1, .fini = stop_proxy)
{
    setting_lost("DateStyle", "SQL, DMY", "SHOW DateStyle");
}

/* ---- 10. a statement redefined in a lost batch --------------------------------------- */

/* Reads up to ReadyForQuery; the first DataRow's first value into row (or "" ), the first
 * SQLSTATE into state; the status byte, 0 at EOF. */
static int raw_row_until_ready(int fd, char *row, size_t rowsz, char state[6])
{
    unsigned char body[8192];
    size_t len;
    int t;
    row[0] = state[0] = 0;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 6000)) >= 0) {
        if (t == 'D' && !row[0] && len >= 6) {
            int32_t n = (int32_t)((uint32_t)body[2] << 24 | (uint32_t)body[3] << 16 |
                                  (uint32_t)body[4] << 8 | body[5]);
            if (n >= 0 && (size_t)n + 6 <= len)
                snprintf(row, rowsz, "%.*s", (int)n, (char *)body + 6);
        } else if (t == 'E' && !state[0])
            snprintf(state, 6, "%s", raw_error_sqlstate(body, len));
        else if (t == 'Z')
            return len >= 1 ? body[0] : '?';
    }
    return 0;
}

/* The client closes its statement s and parses it again with a new text in one batch, runs
 * it (rows of the new text come back), and the batch's last statement loses the server. The
 * client was told CloseComplete and ParseComplete: a Bind of s afterwards must run the new
 * text (or fail), never the old one. */
Test(redteam19, statement_redefined_in_a_lost_batch_never_runs_the_old_text, .init = start_txn1,
     .fini = stop_proxy)
{
    int fd = raw_session(px.port, "carol", "app");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    char row[128], state[6];
    raw_put_parse(&b, "s", "SELECT 'old'::text");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    cr_assert_eq(raw_row_until_ready(fd, row, sizeof(row), state), 'I');
    cr_assert_str_eq(state, "");
    raw_put_close(&b, 'S', "s");
    raw_put_parse(&b, "s", "SELECT 'new'::text");
    raw_put_bind(&b, "", "s");
    raw_put_execute(&b, "");
    raw_put_parse(&b, "", "SELECT pg_terminate_backend(pg_backend_pid())");
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    int st = raw_row_until_ready(fd, row, sizeof(row), state);
    cr_expect_str_eq(row, "new", "the redefined statement's rows in the batch");
    if (st) {
        for (int i = 0; i < 2; i++) {
            raw_put_bind(&b, "", "s");
            raw_put_execute(&b, "");
            raw_put_empty(&b, 'S');
            cr_assert(raw_send(fd, &b));
            st = raw_row_until_ready(fd, row, sizeof(row), state);
            cr_expect(strcmp(row, "old") != 0,
                      "Bind of s ran the text the client closed and replaced (try %d)", i);
            if (!st)
                break;
        }
    }
    buf_free(&b);
    close(fd);
}

/* The same with a second client sharing the server, which holds the old text under its own
 * name s: each client's s runs its own text after the loss. */
Test(redteam19, statement_closed_in_a_lost_batch_then_reprepared_runs_the_clients_text,
     .init = start_txn1, .fini = stop_proxy)
{
    int fd = raw_session(px.port, "carol", "app");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    char row[128], state[6];
    raw_put_parse(&b, "s", "SELECT 'one'::text");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    cr_assert_eq(raw_row_until_ready(fd, row, sizeof(row), state), 'I');
    /* Close s and lose the server in the same batch */
    raw_put_close(&b, 'S', "s");
    raw_put_parse(&b, "", "SELECT pg_terminate_backend(pg_backend_pid())");
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    int st = raw_row_until_ready(fd, row, sizeof(row), state);
    if (st) {
        /* told CloseComplete: s is gone; a new Parse of s must be accepted and run its text */
        raw_put_parse(&b, "s", "SELECT 'two'::text");
        raw_put_bind(&b, "", "s");
        raw_put_execute(&b, "");
        raw_put_empty(&b, 'S');
        cr_assert(raw_send(fd, &b));
        st = raw_row_until_ready(fd, row, sizeof(row), state);
        cr_expect(strcmp(row, "one") != 0, "Bind of s ran the closed text");
        cr_expect_str_eq(row, "two", "s closed (CloseComplete told) then parsed again: %s", state);
    }
    buf_free(&b);
    close(fd);
}

/* ---- 11. what a client pipelined behind a lost block ---------------------------------- */

/* In one write: a query that opens a block, writes row 1 and loses the server; then INSERT of
 * row 2 and COMMIT, meant inside that block. On PostgreSQL nothing is written (the connection
 * is gone). Through lakeproxy, row 2 must not be committed on its own: half of the client's
 * transaction. reset: the first query also RESETs a setting the client gave at startup (what
 * follows it then waits for its answer, README). */
static void pipelined_behind_lost_block(const char *table, bool reset)
{
    PGconn *adm = pg_admin("lp_test");
    char sql[512];
    pg_owned_table(adm, table, "v int");
    int fd = raw_session_app(px.port, "carol", "app", "lp_rt19_app");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    snprintf(sql, sizeof(sql),
             "BEGIN; INSERT INTO %s VALUES (1); %sSELECT pg_terminate_backend(pg_backend_pid())",
             table, reset ? "RESET application_name; " : "");
    proto_query(&b, sql);
    snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (2)", table);
    proto_query(&b, sql);
    proto_query(&b, "COMMIT");
    cr_assert(raw_send(fd, &b));
    int answers = 0, tags = 0, errors = 0;
    char state[6] = "";
    while (answers < 3 && raw_until_ready(fd, "INSERT", &tags, &errors, state))
        answers++;
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE v = 2", table);
    long two = pg_long(adm, sql);
    cr_expect_eq(two, 0,
                 "row 2, sent inside the block whose server was lost, was committed on its own "
                 "(%d answers, %d errors, first %s)",
                 answers, errors, state);
    buf_free(&b);
    close(fd);
    snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
    pg_exec_ok(adm, sql);
    PQfinish(adm);
}

Test(redteam19, pipelined_behind_a_lost_block_plain, .init = start_txn1, .fini = stop_proxy)
{
    pipelined_behind_lost_block("lp_rt19_pbl1", false);
}

Test(redteam19, pipelined_behind_a_lost_block_with_reset, .init = start_txn1, .fini = stop_proxy)
{
    pipelined_behind_lost_block("lp_rt19_pbl2", true);
}

/* ---- 12. PostgreSQL restarted under open transactions and prepared statements --------- */

static struct pg_private rs_pg;
static void stop_rs(void)
{
    proxy_stop(&px);
    pg_private_stop(&rs_pg);
}

static PGconn *rs_client(const char *extra)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "rs", extra);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* Runs c's prepared s (one failure for the outage allowed, retried up to 5 s while the pool
 * reconnects): its value. */
static char *prepared_value_after_outage(PGconn *c, const char *name)
{
    for (double end = now_s() + 5; now_s() < end;) {
        PGresult *r = PQexecPrepared(c, name, 0, NULL, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            char *v = strdup(PQgetvalue(r, 0, 0));
            PQclear(r);
            return v;
        }
        const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cr_assert(s && is_conn_failure(s), "%s: %s", name, PQresultErrorMessage(r));
        PQclear(r);
        cr_assert(PQstatus(c) == CONNECTION_OK, "disconnected");
        usleep(100 * 1000);
    }
    cr_assert_fail("%s never ran after the restart", name);
    return NULL;
}

Test(redteam19, restart_under_open_transactions_and_prepared_statements, .fini = stop_rs)
{
    pg_private_start(&rs_pg, "127.0.0.1");
    static char yaml[8192];
    char entry[512];
    int port = free_port();
    snprintf(entry, sizeof(entry),
             "  rs:\n    host: 127.0.0.1\n    port: %d\n    dbname: lp_test\n"
             "    user: lp_server\n    password: server-secret\n    tls: disable\n"
             "    pool:\n      mode: transaction\n      size: 2\n"
             "      max_wait_ms: 4000\n      connect_timeout_ms: 1000\n",
             rs_pg.port);
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 3000, NULL);
    yaml_add_database(yaml, sizeof(yaml), entry);
    proxy_start_yaml(&px, port, yaml);
    PGconn *a = rs_client("options='-c TimeZone=Asia/Tokyo'");
    PGconn *b = rs_client(NULL);
    char *bzone = query_value(b, "SHOW TimeZone");
    cr_assert_str_eq(query_sqlstate(b, "CREATE TABLE lp_rt19_rs (v int)"), "");
    PGconn *radm = pg_private_admin(&rs_pg, "lp_test"); /* the cluster may run without fsync */
    pg_exec_ok(radm, "CHECKPOINT");
    PQfinish(radm);
    prepare_ok(a, "s", "SELECT current_setting('TimeZone') || ':A'");
    prepare_ok(b, "s", "SELECT current_setting('TimeZone') || ':B'");
    cr_assert_str_eq(query_sqlstate(b, "BEGIN"), "");
    cr_assert_str_eq(query_sqlstate(b, "INSERT INTO lp_rt19_rs VALUES (1)"), "");
    pg_private_kill9(&rs_pg);
    pg_private_restart(&rs_pg);
    char state[6], msg[256];
    ExecStatusType st = exec_bounded(b, "COMMIT", 6, state, msg, sizeof(msg));
    cr_expect(st != PGRES_COMMAND_OK, "COMMIT of a transaction lost in the restart succeeded");
    char *v = prepared_value_after_outage(a, "s");
    cr_expect_str_eq(v, "Asia/Tokyo:A", "a's statement or zone after the restart");
    free(v);
    if (PQstatus(b) != CONNECTION_OK) {
        PQfinish(b);
        b = rs_client(NULL);
        prepare_ok(b, "s", "SELECT current_setting('TimeZone') || ':B'");
    }
    v = prepared_value_after_outage(b, "s");
    char want[96];
    snprintf(want, sizeof(want), "%s:B", bzone);
    cr_expect_str_eq(v, want, "b's statement or zone after the restart");
    free(v);
    EXPECT_QUERY_VALUE(a, "SELECT count(*) FROM lp_rt19_rs", "0", "the lost transaction's row");
    EXPECT_QUERY_VALUE(a, "SHOW TimeZone", "Asia/Tokyo", "a's zone");
    free(bzone);
    PQfinish(a);
    PQfinish(b);
}

/* ---- 13. held-back messages of a client that leaves, or whose block fails ------------- */

/* Three queries in one write, the first RESETting a startup setting (what follows waits for
 * its answer), then the client leaves (Terminate) or stays. PostgreSQL's outcome: the block
 * commits both rows (ok), or, when the first query fails inside the block, none. Through
 * lakeproxy the outcome must be the same: never one row without the other. */
static void held_back(const char *table, bool fail_first, bool leave)
{
    PGconn *adm = pg_admin("lp_test");
    char sql[512];
    pg_owned_table(adm, table, "v int");
    int fd = raw_session_app(px.port, "carol", "app", "lp_rt19_held");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    snprintf(sql, sizeof(sql), "BEGIN; INSERT INTO %s VALUES (1); RESET application_name%s", table,
             fail_first ? "; SELECT 1/0" : "");
    proto_query(&b, sql);
    snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (2)", table);
    proto_query(&b, sql);
    proto_query(&b, "COMMIT");
    if (leave)
        raw_put_empty(&b, 'X');
    cr_assert(raw_send(fd, &b));
    int answers = 0, tags = 0, errors = 0;
    char state[6] = "";
    if (!leave)
        while (answers < 3 && raw_until_ready(fd, "INSERT", &tags, &errors, state))
            answers++;
    close(fd);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    long rows = -1;
    /* a leaving client's statements finish after it left: wait (bounded) for the outcome */
    for (double end = now_s() + 3; now_s() < end; usleep(50 * 1000)) {
        rows = pg_long(adm, sql);
        if (!leave || rows == (fail_first ? 0 : 2))
            break;
    }
    cr_expect_eq(rows, fail_first ? 0 : 2, "rows written: %ld (answers %d, errors %d, %s)", rows,
                 answers, errors, state);
    buf_free(&b);
    snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
    pg_exec_ok(adm, sql);
    PQfinish(adm);
}

Test(redteam19, held_back_block_commits_whole, .init = start_txn1, .fini = stop_proxy)
{
    held_back("lp_rt19_hb1", false, false);
}

Test(redteam19, held_back_block_failing_writes_nothing, .init = start_txn1, .fini = stop_proxy)
{
    held_back("lp_rt19_hb2", true, false);
}

Test(redteam19, held_back_block_of_a_leaving_client_commits_whole, .init = start_txn1,
     .fini = stop_proxy)
{
    held_back("lp_rt19_hb3", false, true);
}

Test(redteam19, held_back_failing_block_of_a_leaving_client_writes_nothing, .init = start_txn1,
     .fini = stop_proxy)
{
    held_back("lp_rt19_hb4", true, true);
}

/* The same held back by a named statement instead of a RESET: batch 1 opens a block, parses a
 * named statement (whose answer the next batch's Bind of a name waits for, in transaction
 * pooling) and loses its server; batch 2 binds a statement prepared earlier that writes row 2,
 * batch 3 commits. As a pipelining driver sends a transaction. */
Test(redteam19, pipelined_behind_a_lost_block_named_statements, .init = start_txn1,
     .fini = stop_proxy)
{
    PGconn *adm = pg_admin("lp_test");
    pg_owned_table(adm, "lp_rt19_pbn", "v int");
    int fd = raw_session(px.port, "carol", "app");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    char row[64], state[6];
    raw_put_parse(&b, "ins2", "INSERT INTO lp_rt19_pbn VALUES (2)");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    cr_assert_eq(raw_row_until_ready(fd, row, sizeof(row), state), 'I');
    /* batch 1 */
    raw_put_parse(&b, "", "BEGIN");
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_parse(&b, "ins1", "INSERT INTO lp_rt19_pbn VALUES (1)");
    raw_put_bind(&b, "", "ins1");
    raw_put_execute(&b, "");
    raw_put_parse(&b, "", "SELECT pg_terminate_backend(pg_backend_pid())");
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    /* batch 2 */
    raw_put_bind(&b, "", "ins2");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    /* batch 3 */
    raw_put_parse(&b, "", "COMMIT");
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    int answers = 0, tags = 0, errors = 0;
    state[0] = 0;
    while (answers < 3 && raw_until_ready(fd, "INSERT", &tags, &errors, state))
        answers++;
    long two = pg_long(adm, "SELECT count(*) FROM lp_rt19_pbn WHERE v = 2");
    long one = pg_long(adm, "SELECT count(*) FROM lp_rt19_pbn WHERE v = 1");
    cr_expect(two == 0 && one == 0,
              "rows 1: %ld, 2: %ld written of a block whose server was lost (answers %d, "
              "errors %d, first %s)",
              one, two, answers, errors, state);
    buf_free(&b);
    close(fd);
    pg_exec_ok(adm, "DROP TABLE lp_rt19_pbn");
    PQfinish(adm);
}

/* EXPECT_QUERY_VALUE, naming the value found. */
#define EXPECT_SHOWN(c, sql, want, what)                                                           \
    do {                                                                                           \
        char *v_ = query_value((c), (sql));                                                        \
        cr_expect_str_eq(v_ ? v_ : "(no row)", (want), "%s: %s gives %s, not %s", (what), (sql),   \
                         v_ ? v_ : "(no row)", (want));                                            \
        free(v_);                                                                                  \
    } while (0)

/* ---- 14. settings that follow the client survive the loss of its server --------------- */

static void start_rls_txn1(void)
{
    static char yaml[16384];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 1, 5000,
                       "  t1: {password: pw, attributes: {tenant_id: \"1\"}}\n"
                       "  t2: {password: pw, attributes: {tenant_id: \"2\"}}\n"
                       "rls:\n  prefix: app\n  databases: [app]\n  switch_role: true\n"
                       "  default_role: lp_tenant\n"
                       "  attributes: {tenant_id: attribute, user: user}\n");
    proxy_start_yaml(&px, port, yaml);
}

/* Session-level SETs that lakeproxy carries from server to server for a client under rls:
 * (README: statement_timeout, lock_timeout, the default transaction modes) must be in force on
 * the server that replaces a killed one, and never on another client's: a client that made
 * itself read-only must not write after its server was replaced. */
static void carried_over_kill(const char *u1, const char *pw1, const char *u2, const char *pw2,
                              const char *table)
{
    PGconn *adm = pg_admin("lp_test");
    char sql[160];
    pg_owned_table(adm, table, "v int");
    snprintf(sql, sizeof(sql), "GRANT ALL ON %s TO PUBLIC", table);
    pg_exec_ok(adm, sql);
    PGconn *c = proxy_connect(&px, u1, pw1, "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PGconn *other = proxy_connect(&px, u2, pw2, "app", NULL);
    cr_assert(PQstatus(other) == CONNECTION_OK, "%s", PQerrorMessage(other));
    char *dflt = query_value(other, "SHOW statement_timeout");
    cr_assert_str_eq(query_sqlstate(c, "SET default_transaction_read_only = on"), "");
    cr_assert_str_eq(query_sqlstate(c, "SET statement_timeout = '4321ms'"), "");
    cr_assert_str_eq(query_sqlstate(c, "SET default_transaction_isolation = 'repeatable read'"),
                     "");
    EXPECT_SHOWN(c, "SHOW default_transaction_read_only", "on", "before");
    EXPECT_SHOWN(c, "SHOW statement_timeout", "4321ms", "before");
    EXPECT_SHOWN(c, "SHOW default_transaction_isolation", "repeatable read", "before");
    /* another client uses the (only) server in between */
    EXPECT_SHOWN(other, "SHOW default_transaction_read_only", "off", "the other client");
    EXPECT_SHOWN(other, "SHOW statement_timeout", dflt, "the other client");
    EXPECT_SHOWN(other, "SHOW default_transaction_isolation", "read committed", "the other client");
    EXPECT_SHOWN(c, "SHOW statement_timeout", "4321ms", "back from the other client");
    terminate_pool_backends(adm);
    char state[6], msg[256];
    (void)exec_bounded(c, "SELECT 1", 5, state, msg, sizeof(msg)); /* may fail once */
    cr_assert(PQstatus(c) == CONNECTION_OK);
    EXPECT_SHOWN(c, "SHOW default_transaction_read_only", "on", "after the kill");
    EXPECT_SHOWN(c, "SHOW statement_timeout", "4321ms", "after the kill");
    EXPECT_SHOWN(c, "SHOW default_transaction_isolation", "repeatable read", "after the kill");
    snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (1)", table);
    cr_expect_str_eq(query_sqlstate(c, sql), "25006",
                     "a read-only client wrote after its server was replaced");
    EXPECT_SHOWN(other, "SHOW default_transaction_read_only", "off", "the other, after");
    EXPECT_SHOWN(other, "SHOW statement_timeout", dflt, "the other, after");
    free(dflt);
    PQfinish(c);
    PQfinish(other);
    snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
    pg_exec_ok(adm, sql);
    PQfinish(adm);
}

Test(redteam19, carried_settings_survive_a_killed_server_rls, .init = start_rls_txn1,
     .fini = stop_proxy)
{
    carried_over_kill("t1", "pw", "t2", "pw", "lp_rt19_ro1");
}

/* The same for clients without rls: (nothing documents that their session-level SETs of
 * unreported settings stay on the server for the next client). */
Test(redteam19, carried_settings_survive_a_killed_server_plain, .init = start_txn1,
     .fini = stop_proxy)
{
    carried_over_kill("alice", "alice-secret", "bob", "bob-secret", "lp_rt19_ro2");
}

/* ---- 15. the error of a lost statement does not deny a COMMIT that happened ------------ */

/* One query commits a block, then loses its server. The client was sent COMMIT's
 * CommandComplete, and the row is there; the error that follows must not tell it that "its
 * transaction did not complete" (an application retrying on that writes the row twice). */
Test(redteam19, lost_statement_error_does_not_deny_a_committed_block, .init = start_txn1,
     .fini = stop_proxy)
{
    PGconn *adm = pg_admin("lp_test");
    pg_owned_table(adm, "lp_rt19_den", "v int");
    PGconn *c = client(NULL);
    char state[6], msg[512];
    ExecStatusType st = exec_bounded(c,
                                     "BEGIN; INSERT INTO lp_rt19_den VALUES (1); COMMIT; "
                                     "SELECT pg_terminate_backend(pg_backend_pid())",
                                     5, state, msg, sizeof(msg));
    long rows = pg_long(adm, "SELECT count(*) FROM lp_rt19_den");
    cr_expect_eq(rows, 1, "the committed block's row");
    cr_expect(st != PGRES_TUPLES_OK, "the lost statement succeeded");
    cr_expect(rows == 0 || strstr(msg, "did not complete") == NULL,
              "the block committed (%ld row), yet the client is told: %s", rows, msg);
    PQfinish(c);
    pg_exec_ok(adm, "DROP TABLE lp_rt19_den");
    PQfinish(adm);
}
