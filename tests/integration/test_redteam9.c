/* test_redteam9.c: red-team attacks on the reset barrier (commit fd1c00e): what a client with
 * startup settings pipelines behind a statement that may RESET a setting waits until its
 * server owes it nothing. Each runs the same steps against PostgreSQL directly and through a
 * lakeproxy (session or transaction pooling, sidebyside.h), and expects PostgreSQL's answers
 * from both; a wait is bounded (WAIT_MS) so a hang is reported, not left to the suite's
 * timeout. Found: COPY FROM STDIN held at the barrier (fixed: only statements wait); a
 * statement run while a cancel was on its way (fixed: the barrier waits for the cancel). */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "sidebyside.h"
#include "tcprelay.h"

TestSuite(redteam9, .timeout = 120);

#define STARTUP_OPTS "options='-c DateStyle=ISO,DMY -c TimeZone=Asia/Tokyo'"
/* what psql, pg_restore and most drivers send at startup: a setting all the same */
#define PSQL_LIKE "application_name=psql"
#define WAIT_MS 5000

/* Runs sql as the PostgreSQL superuser in lp_test; fails the test unless it succeeded. */
static void admin_sql(const char *sql)
{
    PGconn *adm = pg_admin("lp_test");
    PGresult *r = PQexec(adm, sql);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK, "admin: %s: %s", sql, PQerrorMessage(adm));
    PQclear(r);
    PQfinish(adm);
}

static const char date_sql[] = "SELECT '01/02/2024'::date::text";

/* The next result within WAIT_MS: *hung when none came (the connection is then of no use). */
static PGresult *result_within(PGconn *c, bool *hung)
{
    *hung = false;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    PQflush(c);
    while (PQisBusy(c)) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long left =
            WAIT_MS - ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0) {
            *hung = true;
            return NULL;
        }
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        if (poll(&pfd, 1, (int)left) > 0 && !PQconsumeInput(c))
            break;
    }
    return PQgetResult(c);
}

/* Runs sql, a COPY FROM STDIN (simple Query, or extended when ext), sends data, and expects
 * it to complete within WAIT_MS. */
static bool copy_in(const struct target *t, PGconn *c, const char *sql, bool ext, const char *data)
{
    bool hung;
    int sent = ext ? PQsendQueryParams(c, sql, 0, NULL, NULL, NULL, NULL, 0) : PQsendQuery(c, sql);
    cr_assert(sent, "%s: %s", t->name, PQerrorMessage(c));
    PGresult *r = result_within(c, &hung);
    cr_assert(!hung, "%s: no CopyInResponse to %s", t->name, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_IN, "%s: %s: %s", t->name, sql, PQerrorMessage(c));
    PQclear(r);
    cr_assert_eq(PQputCopyData(c, data, (int)strlen(data)), 1);
    cr_assert_eq(PQputCopyEnd(c, NULL), 1);
    r = result_within(c, &hung);
    cr_expect(!hung,
              "%s: %s: the copy's end was never answered within %d ms (its CopyData held by "
              "the reset barrier?)",
              t->name, sql, WAIT_MS);
    if (hung)
        return false;
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: COPY: %s", t->name, PQerrorMessage(c));
    PQclear(r);
    while ((r = PQgetResult(c)))
        PQclear(r);
    return true;
}

#define EXPECT_VALUE(t, c, sql, want)                                                              \
    do {                                                                                           \
        char *v_ = value_of((t), (c), (sql));                                                      \
        cr_expect_str_eq(v_, (want), "%s: %s gave %s, not %s", (t)->name, (sql), v_, (want));      \
        free(v_);                                                                                  \
    } while (0)

/* ---- 1. COPY FROM STDIN whose text says DEFAULT/RESET (a table's name) ---- */

static void copy_into_defaults_table(const struct target *t)
{
    admin_sql("CREATE TABLE IF NOT EXISTS rt9_user_defaults (x int)");
    admin_sql("GRANT ALL ON rt9_user_defaults TO PUBLIC");
    admin_sql("TRUNCATE rt9_user_defaults");
    PGconn *c = open_with(t, PSQL_LIKE);
    if (copy_in(t, c, "COPY rt9_user_defaults FROM STDIN", false, "1\n2\n"))
        EXPECT_VALUE(t, c, "SELECT count(*)::text FROM rt9_user_defaults", "2");
    PQfinish(c);
}

IN_BOTH_MODES(redteam9, copy_into_a_table_whose_name_says_default, copy_into_defaults_table)

/* The same by the extended protocol (PQsendQueryParams: Parse, Bind, Describe, Execute, Sync). */
static void copy_extended_reset_comment(const struct target *t)
{
    admin_sql("CREATE TABLE IF NOT EXISTS rt9_plain (x int)");
    admin_sql("GRANT ALL ON rt9_plain TO PUBLIC");
    admin_sql("TRUNCATE rt9_plain");
    PGconn *c = open_with(t, STARTUP_OPTS);
    if (copy_in(t, c, "COPY rt9_plain FROM STDIN /* after a password reset */", true, "7\n"))
        EXPECT_VALUE(t, c, "SELECT count(*)::text FROM rt9_plain", "1");
    PQfinish(c);
}

IN_BOTH_MODES(redteam9, extended_copy_whose_text_says_reset, copy_extended_reset_comment)

/* ---- 2. pg_restore --single-transaction / psql -1 -f dump.sql: a column DEFAULT, then COPY
 * in the same transaction block (the barrier is armed again at each batch of the block) ---- */

static void copy_in_block_after_default(const struct target *t)
{
    admin_sql("DROP TABLE IF EXISTS rt9_restored");
    PGconn *c = open_with(t, PSQL_LIKE);
    run_sql(t, c, "BEGIN");
    run_sql(t, c, "CREATE TABLE rt9_restored (id int, note text DEFAULT 'none')");
    bool ok = copy_in(t, c, "COPY rt9_restored (id) FROM STDIN", false, "1\n2\n3\n");
    if (ok) {
        run_sql(t, c, "COMMIT");
        EXPECT_VALUE(t, c, "SELECT count(*)::text FROM rt9_restored", "3");
        run_sql(t, c, "DROP TABLE rt9_restored");
    }
    PQfinish(c);
}

IN_BOTH_MODES(redteam9, copy_in_a_block_after_a_column_default, copy_in_block_after_default)

static void copy_in_block_after_insert_default(const struct target *t)
{
    admin_sql("CREATE TABLE IF NOT EXISTS rt9_plain (x int DEFAULT 5)");
    admin_sql("GRANT ALL ON rt9_plain TO PUBLIC");
    admin_sql("TRUNCATE rt9_plain");
    PGconn *c = open_with(t, PSQL_LIKE);
    run_sql(t, c, "BEGIN");
    run_sql(t, c, "INSERT INTO rt9_plain DEFAULT VALUES");
    run_sql(t, c, "SELECT 1"); /* even a statement between */
    bool ok = copy_in(t, c, "COPY rt9_plain FROM STDIN", false, "9\n");
    if (ok) {
        run_sql(t, c, "COMMIT");
        EXPECT_VALUE(t, c, "SELECT count(*)::text FROM rt9_plain", "2");
    }
    PQfinish(c);
}

IN_BOTH_MODES(redteam9, copy_in_a_block_after_insert_default_values,
              copy_in_block_after_insert_default)

/* ---- 3. errors in the batch that armed the barrier ---- */

static void expect_pipeline_value(const struct target *t, PGconn *c, const char *want,
                                  const char *what)
{
    bool hung;
    char *v = NULL;
    bool err = false;
    PGresult *r;
    while ((r = result_within(c, &hung)) != NULL) {
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !v)
            v = strdup(PQgetvalue(r, 0, 0));
        if (PQresultStatus(r) == PGRES_FATAL_ERROR || PQresultStatus(r) == PGRES_PIPELINE_ABORTED)
            err = true;
        PQclear(r);
    }
    cr_expect(!hung, "%s: %s: no answer within %d ms", t->name, what, WAIT_MS);
    if (want)
        cr_expect_str_eq(v ? v : (err ? "(error)" : "(none)"), want, "%s: %s", t->name, what);
    else
        cr_expect(err, "%s: %s: expected an error", t->name, what);
    free(v);
}

static void expect_sync(const struct target *t, PGconn *c, const char *what)
{
    bool hung;
    PGresult *r = result_within(c, &hung);
    cr_expect(!hung, "%s: %s: no Sync within %d ms", t->name, what, WAIT_MS);
    cr_expect_eq(PQresultStatus(r), PGRES_PIPELINE_SYNC, "%s: %s: expected a sync, got %s", t->name,
                 what, PQresStatus(PQresultStatus(r)));
    PQclear(r);
}

static void error_in_reset_batch(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    run_sql(t, c, "SET DateStyle = 'German'");
    cr_assert(PQenterPipelineMode(c));
    send_pipelined(c, "RESET DateStyle");
    send_pipelined(c, "SELECT 1/0");
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, date_sql);
    cr_assert(PQpipelineSync(c));
    expect_pipeline_value(t, c, "(none)", "RESET");
    expect_pipeline_value(t, c, NULL, "1/0");
    expect_sync(t, c, "first batch");
    /* the RESET's implicit transaction failed: rolled back, DateStyle German again */
    expect_pipeline_value(t, c, "01.02.2024", "date after a failed batch with RESET");
    expect_sync(t, c, "second batch");
    cr_assert(PQexitPipelineMode(c));
    PQfinish(c);
}

IN_BOTH_MODES(redteam9, an_error_after_the_reset_in_its_batch, error_in_reset_batch)

static void failed_block_then_rollback(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    run_sql(t, c, "SET DateStyle = 'German'");
    cr_assert(PQenterPipelineMode(c));
    send_pipelined(c, "BEGIN");
    send_pipelined(c, "RESET DateStyle");
    send_pipelined(c, "SELECT 1/0");
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, "SELECT 2");
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, "ROLLBACK");
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, date_sql);
    cr_assert(PQpipelineSync(c));
    expect_pipeline_value(t, c, "(none)", "BEGIN");
    expect_pipeline_value(t, c, "(none)", "RESET");
    expect_pipeline_value(t, c, NULL, "1/0");
    expect_sync(t, c, "first");
    expect_pipeline_value(t, c, NULL, "SELECT 2 in a failed block");
    expect_sync(t, c, "second");
    expect_pipeline_value(t, c, "(none)", "ROLLBACK");
    expect_sync(t, c, "third");
    expect_pipeline_value(t, c, "01.02.2024", "after ROLLBACK");
    expect_sync(t, c, "fourth");
    cr_assert(PQexitPipelineMode(c));
    PQfinish(c);
}

IN_BOTH_MODES(redteam9, a_failed_block_with_a_reset_then_rollback, failed_block_then_rollback)

/* statement_timeout cuts the batch after the RESET */
static void timeout_in_reset_batch(const struct target *t)
{
    PGconn *c = open_with(t, "options='-c DateStyle=ISO,DMY -c statement_timeout=300'");
    run_sql(t, c, "SET DateStyle = 'German'");
    cr_assert(PQenterPipelineMode(c));
    send_pipelined(c, "RESET DateStyle");
    send_pipelined(c, "SELECT pg_sleep(2)");
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, date_sql);
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, "RESET DateStyle");
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, date_sql);
    cr_assert(PQpipelineSync(c));
    expect_pipeline_value(t, c, "(none)", "RESET");
    expect_pipeline_value(t, c, NULL, "pg_sleep cut by statement_timeout");
    expect_sync(t, c, "first");
    expect_pipeline_value(t, c, "01.02.2024", "after the timeout");
    expect_sync(t, c, "second");
    expect_pipeline_value(t, c, "(none)", "RESET again");
    expect_sync(t, c, "third");
    expect_pipeline_value(t, c, "2024-02-01", "after a RESET that went through");
    expect_sync(t, c, "fourth");
    cr_assert(PQexitPipelineMode(c));
    PQfinish(c);
}

IN_BOTH_MODES(redteam9, statement_timeout_in_the_reset_batch, timeout_in_reset_batch)

/* ---- 4. Flush without Sync behind the barrier ---- */

static void flush_behind_reset(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    run_sql(t, c, "SET DateStyle = 'German'");
    cr_assert(PQenterPipelineMode(c));
    send_pipelined(c, "RESET DateStyle");
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, date_sql);
    cr_assert(PQsendFlushRequest(c));
    expect_pipeline_value(t, c, "(none)", "RESET");
    expect_sync(t, c, "first");
    bool hung;
    PGresult *r = result_within(c, &hung);
    cr_expect(!hung, "%s: a flushed query behind a RESET: no answer within %d ms", t->name,
              WAIT_MS);
    if (!hung) {
        cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", t->name, PQerrorMessage(c));
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            cr_expect_str_eq(PQgetvalue(r, 0, 0), "2024-02-01", "%s: flushed query", t->name);
        PQclear(r);
        r = result_within(c, &hung); /* NULL: the end of that query */
        PQclear(r);
        cr_assert(PQpipelineSync(c));
        expect_sync(t, c, "last");
        cr_assert(PQexitPipelineMode(c));
    }
    PQfinish(c);
}

IN_BOTH_MODES(redteam9, a_flush_without_sync_behind_a_reset, flush_behind_reset)

/* ---- 5. a client that leaves while held at the barrier: the one server serves the next ---- */

static void leave_at_barrier(const struct target *t)
{
    for (int i = 0; i < 3; i++) {
        PGconn *c = open_with(t, STARTUP_OPTS);
        run_sql(t, c, "SET DateStyle = 'German'");
        cr_assert(PQenterPipelineMode(c));
        send_pipelined(c, "RESET DateStyle");
        send_pipelined(c, "SELECT pg_sleep(0.2)");
        cr_assert(PQpipelineSync(c));
        send_pipelined(c, date_sql);
        cr_assert(PQpipelineSync(c));
        PQflush(c);
        PQfinish(c); /* Terminate behind the held message */
    }
    PGconn *o = open_with(t, STARTUP_OPTS);
    EXPECT_VALUE(t, o, date_sql, "2024-02-01");
    EXPECT_VALUE(t, o, "SHOW DateStyle", "ISO, DMY");
    PQfinish(o);
}

IN_BOTH_MODES(redteam9, a_client_leaves_held_at_the_barrier, leave_at_barrier)

/* ---- 6. the server dies while the client is held ---- */

static void server_dies_at_barrier(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    char *pid = value_of(t, c, "SELECT pg_backend_pid()::text");
    cr_assert(PQenterPipelineMode(c));
    send_pipelined(c, "RESET DateStyle");
    send_pipelined(c, "SELECT pg_sleep(1)");
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, date_sql);
    cr_assert(PQpipelineSync(c));
    PQflush(c);
    usleep(200000);
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%s)", pid);
    PGconn *adm = pg_admin("lp_test");
    PGresult *r = PQexec(adm, sql);
    PQclear(r);
    PQfinish(adm);
    free(pid);
    /* whatever comes, it comes: no wait for good */
    bool hung = false;
    for (int i = 0; i < 10 && !hung; i++) {
        r = result_within(c, &hung);
        if (!r && PQstatus(c) == CONNECTION_BAD)
            break;
        PQclear(r);
        if (PQstatus(c) == CONNECTION_BAD)
            break;
    }
    cr_expect(!hung, "%s: held client never told its server died", t->name);
    PQfinish(c);
}

IN_BOTH_MODES(redteam9, the_server_dies_while_a_client_is_held, server_dies_at_barrier)

/* ---- 7. a client with no startup settings never waits; one with application_name (psql)
 * pipelining statements that say DEFAULT: answers in order ---- */

static void many_default_batches(const struct target *t)
{
    admin_sql("CREATE TABLE IF NOT EXISTS rt9_plain (x int DEFAULT 5)");
    admin_sql("GRANT ALL ON rt9_plain TO PUBLIC");
    admin_sql("TRUNCATE rt9_plain");
    PGconn *c = open_with(t, PSQL_LIKE);
    cr_assert(PQenterPipelineMode(c));
    for (int i = 0; i < 200; i++) {
        send_pipelined(c, "INSERT INTO rt9_plain VALUES (DEFAULT)");
        cr_assert(PQpipelineSync(c));
    }
    for (int i = 0; i < 200; i++) {
        expect_pipeline_value(t, c, "(none)", "insert");
        expect_sync(t, c, "insert");
    }
    cr_assert(PQexitPipelineMode(c));
    EXPECT_VALUE(t, c, "SELECT count(*)::text FROM rt9_plain", "200");
    PQfinish(c);
}

IN_BOTH_MODES(redteam9, many_pipelined_batches_that_say_default, many_default_batches)

/* ---- 8. RESET by a simple Query with several statements, then COPY in the same Query
 * string... and LISTEN behind a RESET (notification still arrives) ---- */

static void listen_behind_reset(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    run_sql(t, c, "SET DateStyle = 'German'");
    cr_assert(PQenterPipelineMode(c));
    send_pipelined(c, "RESET DateStyle");
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, "LISTEN rt9_chan");
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, date_sql);
    cr_assert(PQpipelineSync(c));
    expect_pipeline_value(t, c, "(none)", "RESET");
    expect_sync(t, c, "1");
    expect_pipeline_value(t, c, "(none)", "LISTEN");
    expect_sync(t, c, "2");
    expect_pipeline_value(t, c, "2024-02-01", "date after RESET, LISTEN");
    expect_sync(t, c, "3");
    cr_assert(PQexitPipelineMode(c));
    PQfinish(c);
}

IN_BOTH_MODES(redteam9, listen_behind_a_reset, listen_behind_reset)

/* ---- 9. the COPY held at the barrier, its client gone: does the pool's one server come back
 * for the next client? (PostgreSQL: each connection is its own) ---- */

static void held_copy_then_next_client(const struct target *t)
{
    admin_sql("CREATE TABLE IF NOT EXISTS rt9_user_defaults (x int)");
    admin_sql("GRANT ALL ON rt9_user_defaults TO PUBLIC");
    PGconn *c = open_with(t, PSQL_LIKE);
    bool hung;
    cr_assert(PQsendQuery(c, "COPY rt9_user_defaults FROM STDIN"));
    PGresult *r = result_within(c, &hung);
    cr_assert(!hung && PQresultStatus(r) == PGRES_COPY_IN, "%s", t->name);
    PQclear(r);
    cr_assert_eq(PQputCopyData(c, "1\n", 2), 1);
    PQflush(c);
    PQfinish(c); /* leaves in the middle of its copy: PostgreSQL rolls it back */
    PGconn *o = open_with(t, NULL);
    cr_assert(PQsendQuery(o, "SELECT 'served'"));
    r = result_within(o, &hung);
    cr_expect(!hung, "%s: the next client (no startup settings) got no server within %d ms",
              t->name, WAIT_MS);
    if (!hung) {
        cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", t->name, PQerrorMessage(o));
        PQclear(r);
        while ((r = PQgetResult(o)))
            PQclear(r);
    }
    PQfinish(o);
}

Test(redteam9, txn_a_copy_held_at_the_barrier_keeps_the_pools_server_after_its_client_left)
{
    on_postgresql_and_through("transaction", 1, held_copy_then_next_client);
}

/* ---- 10. a cancel on its way while the client is held ---- */

/* Reads c's results up to its next pipeline sync, whatever they are. */
static void skip_to_sync(const struct target *t, PGconn *c)
{
    bool hung;
    PGresult *r;
    for (int nulls = 0; nulls < 16; nulls++) {
        while ((r = result_within(c, &hung)) != NULL) {
            bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
            PQclear(r);
            if (sync)
                return;
        }
        cr_assert(!hung, "%s: no Sync within %d ms", t->name, WAIT_MS);
    }
    cr_assert_fail("%s: no Sync after 16 results", t->name);
}

/* A cancel request lakeproxy has routed but PostgreSQL has not taken yet keeps the server from
 * reading the client's settings back (the cancel could cut that short). What the client
 * pipelined behind its RESET must wait for the cancel too, not run under the server's default
 * meanwhile. The relay makes the cancel reach PostgreSQL 0.8 s late, after the 0.3 s batch
 * (directly, it cancels the sleep). */
static void cancel_on_its_way_at_barrier(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    EXPECT_VALUE(t, c, "SHOW DateStyle", "ISO, DMY"); /* (its server, reached at once) */
    if (t->relay)
        tcp_relay_delay_connects(t->relay, 800);
    cr_assert(PQenterPipelineMode(c));
    send_pipelined(c, "RESET DateStyle");
    send_pipelined(c, "SELECT pg_sleep(0.3)");
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, date_sql);
    cr_assert(PQpipelineSync(c));
    cr_assert_eq(PQflush(c), 0);
    usleep(50 * 1000);
    PGcancel *k = PQgetCancel(c);
    char err[256];
    cr_assert(PQcancel(k, err, sizeof(err)), "%s: %s", t->name, err);
    PQfreeCancel(k);
    skip_to_sync(t, c); /* (cancelled directly, not through the relay) */
    expect_pipeline_value(t, c, "2024-02-01", "date pipelined behind a RESET and a cancel");
    expect_sync(t, c, "second batch");
    cr_assert(PQexitPipelineMode(c));
    EXPECT_VALUE(t, c, date_sql, "2024-02-01");
    PQfinish(c);
}

Test(redteam9, txn_a_cancel_on_its_way_while_held_at_the_barrier)
{
    on_postgresql_and_through_relay("transaction", 1, cancel_on_its_way_at_barrier);
}

Test(redteam9, session_a_cancel_on_its_way_while_held_at_the_barrier)
{
    on_postgresql_and_through_relay("session", 1, cancel_on_its_way_at_barrier);
}
