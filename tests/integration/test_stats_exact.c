/* test_stats_exact.c: SHOW QUERIES call and row counts stay exact where the wire makes it hard:
 * several statements in one simple Query (one call each, rows from each CommandComplete), a
 * libpq pipeline of 1,000 queries sent before any reply is read, an error in the middle of a
 * pipeline (the statements PostgreSQL skips are no calls), COPY FROM STDIN through the extended
 * protocol (the Syncs PostgreSQL ignores during copy-in must not shift later records) and
 * COPY TO STDOUT (rows from its CommandComplete). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct proxy px;
static char table[64]; /* this test's own table, made by the superuser */

/* Transaction pooling (pool of 2), alice an admin, statistics on (aggregates only). */
static void start(void)
{
    proxy_start_with(&px, "transaction", 2, 10000, "admin:\n  users: [alice]\n");
    snprintf(table, sizeof(table), "stats_exact_%d", (int)getpid());
    PGconn *pg = pg_admin("lp_test");
    char sql[200];
    snprintf(sql, sizeof(sql), "CREATE TABLE %s (n int); GRANT ALL ON %s TO PUBLIC", table, table);
    PGresult *r = PQexec(pg, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(pg));
    PQclear(r);
    PQfinish(pg);
}

static void stop(void)
{
    proxy_stop(&px);
    PGconn *pg = pg_admin("lp_test");
    char sql[100];
    snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", table);
    PQclear(PQexec(pg, sql));
    PQfinish(pg);
}

static PGconn *alice(const char *db)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", db, NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* The row of SHOW QUERIES 1000 whose query is q: its column col as a number, -1 when absent. */
static long long show_queries_value(const char *q, const char *col)
{
    PGconn *admin = alice("lakeproxy");
    long long v = admin_show_queries_value(admin, 1000, q, col);
    PQfinish(admin);
    return v;
}

/* Prints SHOW QUERIES (query, calls, errors, rows) to stderr, to tell what went wrong. */
static void dump_queries(void)
{
    PGconn *admin = alice("lakeproxy");
    PGresult *r = PQexec(admin, "SHOW QUERIES 1000");
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++)
        fprintf(stderr, "  [%s] calls %s errors %s rows %s\n",
                PQgetvalue(r, i, PQfnumber(r, "query")), PQgetvalue(r, i, PQfnumber(r, "calls")),
                PQgetvalue(r, i, PQfnumber(r, "errors")), PQgetvalue(r, i, PQfnumber(r, "rows")));
    PQclear(r);
    PQfinish(admin);
}

/* calls and rows of q in SHOW QUERIES are exactly calls and rows. */
static void expect_counts(const char *q, long long calls, long long rows)
{
    long long got_calls = show_queries_value(q, "calls");
    long long got_rows = show_queries_value(q, "rows");
    if (got_calls != calls || got_rows != rows) {
        fprintf(stderr, "SHOW QUERIES, looking for [%s]:\n", q);
        dump_queries();
    }
    cr_expect_eq(got_calls, calls, "%s: %lld calls, expected %lld", q, got_calls, calls);
    cr_expect_eq(got_rows, rows, "%s: %lld rows, expected %lld", q, got_rows, rows);
}

/* Runs sql (one simple Query) and reads every result; returns the number of results. */
static int exec_all(PGconn *c, const char *sql)
{
    cr_assert(PQsendQuery(c, sql), "%s", PQerrorMessage(c));
    int n = 0;
    PGresult *r;
    while ((r = PQgetResult(c))) {
        n++;
        PQclear(r);
    }
    return n;
}

TestSuite(stats_exact, .init = start, .fini = stop, .timeout = 120);

Test(stats_exact, each_statement_of_a_simple_query_is_one_call_with_its_own_rows)
{
    PGconn *c = alice("app");
    char sql[300];
    for (int i = 0; i < 3; i++) {
        snprintf(sql, sizeof(sql),
                 "SELECT id FROM items WHERE id <= %d; SELECT name FROM items WHERE id = %d;"
                 "INSERT INTO %s SELECT g FROM generate_series(1, %d) g",
                 3, 10 + i, table, 5);
        cr_expect_eq(exec_all(c, sql), 3);
    }
    /* the error stops the Query: the statement after it never runs, so it is no call */
    snprintf(sql, sizeof(sql),
             "SELECT id FROM items WHERE id < 3 AND name <> 'x'; SELECT 1/0 AS boom;"
             "SELECT id, name FROM items WHERE id > 990");
    cr_expect_eq(exec_all(c, sql), 2);
    PQfinish(c);
    expect_counts("SELECT id FROM items WHERE id <= $1", 3, 9);
    expect_counts("SELECT name FROM items WHERE id = $1", 3, 3);
    char ins[200];
    snprintf(ins, sizeof(ins), "INSERT INTO %s SELECT g FROM generate_series($1, $2) g", table);
    expect_counts(ins, 3, 15); /* rows affected, from INSERT 0 5 */
    expect_counts("SELECT id FROM items WHERE id < $1 AND name <> $2", 1, 2);
    expect_counts("SELECT $1/$2 AS boom", 1, 0);
    cr_expect_eq(show_queries_value("SELECT $1/$2 AS boom", "errors"), 1);
    cr_expect_eq(show_queries_value("SELECT id, name FROM items WHERE id > $1", "calls"), -1,
                 "a statement skipped after an error is no call");
}

/* Drivers parse the same text again and again as the unnamed statement: each execution counts
 * under its own text when two texts take turns, and when one repeats. */
Test(stats_exact, unnamed_statements_taking_turns_count_under_their_own_text)
{
    PGconn *c = alice("app");
    const char *a = "SELECT id FROM items WHERE id <= $1 ORDER BY id";
    const char *b = "SELECT name FROM items WHERE id = $1";
    const char *order = "aabab"
                        "ba"; /* a: 4 calls of 2 rows, b: 3 calls of 1 row */
    for (const char *o = order; *o; o++) {
        const char *param = *o == 'a' ? "2" : "5";
        PGresult *r = PQexecParams(c, *o == 'a' ? a : b, 1, NULL, &param, NULL, NULL, 0);
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
        cr_expect_eq(PQntuples(r), *o == 'a' ? 2 : 1);
        PQclear(r);
    }
    PQfinish(c);
    expect_counts(a, 4, 8);
    expect_counts(b, 3, 3);
}

/* 1,000 queries each with its Sync, all sent before any reply is read: every one counted. */
Test(stats_exact, a_pipeline_of_a_thousand_queries_is_counted_exactly)
{
    PGconn *c = alice("app");
    cr_assert(PQenterPipelineMode(c), "%s", PQerrorMessage(c));
    enum { N = 1000 };
    for (int i = 0; i < N; i++) {
        char v[16];
        snprintf(v, sizeof(v), "%d", i % 1000 + 1);
        const char *params[1] = {v};
        cr_assert(PQsendQueryParams(c, "SELECT id, name FROM items WHERE id = $1", 1, NULL, params,
                                    NULL, NULL, 0),
                  "%s", PQerrorMessage(c));
        cr_assert(PQpipelineSync(c), "%s", PQerrorMessage(c));
    }
    int rows = 0, syncs = 0;
    while (syncs < N) {
        PGresult *r = PQgetResult(c);
        if (!r)
            continue; /* the end of one query's results */
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC)
            syncs++;
        else if (PQresultStatus(r) == PGRES_TUPLES_OK)
            rows += PQntuples(r);
        else
            cr_assert_fail("unexpected result: %s", PQresultErrorMessage(r));
        PQclear(r);
    }
    cr_expect_eq(rows, N);
    cr_assert(PQexitPipelineMode(c), "%s", PQerrorMessage(c));
    PQfinish(c);
    expect_counts("SELECT id, name FROM items WHERE id = $1", N, N);
}

/* Sends sql with one text parameter in pipeline mode (no Sync). */
static void pipeline_send(PGconn *c, const char *sql, const char *param)
{
    const char *params[1] = {param};
    cr_assert(PQsendQueryParams(c, sql, 1, NULL, params, NULL, NULL, 0), "%s", PQerrorMessage(c));
}

/* An error in the middle of a pipeline: the query that failed is a call with an error, those
 * PostgreSQL skips up to the Sync are no calls, and counting goes on after the Sync. */
Test(stats_exact, queries_skipped_after_an_error_in_a_pipeline_are_no_calls)
{
    PGconn *c = alice("app");
    cr_assert(PQenterPipelineMode(c), "%s", PQerrorMessage(c));
    pipeline_send(c, "SELECT id FROM items WHERE id <= $1::int", "2");
    pipeline_send(c, "SELECT 10 / $1::int AS ratio", "0");
    pipeline_send(c, "SELECT name FROM items WHERE id <= $1::int", "4");
    pipeline_send(c, "SELECT name FROM items WHERE id <= $1::int", "4");
    cr_assert(PQpipelineSync(c));
    pipeline_send(c, "SELECT id, name FROM items WHERE id <= $1::int", "3");
    cr_assert(PQpipelineSync(c));
    int syncs = 0, errors = 0, aborted = 0;
    while (syncs < 2) {
        PGresult *r = PQgetResult(c);
        if (!r)
            continue;
        syncs += PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        errors += PQresultStatus(r) == PGRES_FATAL_ERROR;
        aborted += PQresultStatus(r) == PGRES_PIPELINE_ABORTED;
        PQclear(r);
    }
    cr_expect_eq(errors, 1);
    cr_expect_eq(aborted, 2);
    cr_assert(PQexitPipelineMode(c));
    free(query_value(c, "SELECT 'after the pipeline' AS marker"));
    PQfinish(c);
    expect_counts("SELECT id FROM items WHERE id <= $1::int", 1, 2);
    expect_counts("SELECT $2 / $1::int AS ratio", 1, 0);
    cr_expect_eq(show_queries_value("SELECT $2 / $1::int AS ratio", "errors"), 1);
    cr_expect_eq(show_queries_value("SELECT name FROM items WHERE id <= $1::int", "calls"), -1,
                 "queries skipped after an error are no calls");
    expect_counts("SELECT id, name FROM items WHERE id <= $1::int", 1, 3);
    expect_counts("SELECT $1 AS marker", 1, 1);
}

/* COPY FROM STDIN through Parse/Bind/Execute: libpq sends a Sync with the Execute (PostgreSQL
 * ignores it during copy-in) and another after CopyDone; the queries after it keep their own
 * rows. COPY TO STDOUT counts the rows of its CommandComplete. */
Test(stats_exact, an_extended_copy_in_keeps_later_queries_in_step)
{
    PGconn *c = alice("app");
    char sql[200];
    snprintf(sql, sizeof(sql), "COPY %s FROM STDIN", table);
    for (int round = 0; round < 3; round++) {
        PGresult *r = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);
        cr_assert_eq(PQresultStatus(r), PGRES_COPY_IN, "%s", PQerrorMessage(c));
        PQclear(r);
        cr_assert_eq(PQputCopyData(c, "1\n2\n3\n4\n", 8), 1);
        cr_assert_eq(PQputCopyEnd(c, NULL), 1);
        while ((r = PQgetResult(c))) {
            cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
            PQclear(r);
        }
        for (int k = 1; k <= 2; k++) {
            char q[100];
            snprintf(q, sizeof(q), "SELECT id FROM items WHERE id BETWEEN 1 AND %d", 5 * k);
            r = PQexec(c, q);
            cr_expect_eq(PQntuples(r), 5 * k);
            PQclear(r);
        }
    }
    snprintf(sql, sizeof(sql), "COPY (SELECT id FROM items WHERE id <= 7) TO STDOUT");
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_OUT, "%s", PQerrorMessage(c));
    PQclear(r);
    char *line;
    int lines = 0;
    while (PQgetCopyData(c, &line, 0) > 0) {
        lines++;
        PQfreemem(line);
    }
    while ((r = PQgetResult(c)))
        PQclear(r);
    cr_expect_eq(lines, 7);
    free(query_value(c, "SELECT 'done' AS marker"));
    PQfinish(c);
    snprintf(sql, sizeof(sql), "COPY %s FROM STDIN", table);
    expect_counts(sql, 3, 12);
    expect_counts("SELECT id FROM items WHERE id BETWEEN $1 AND $2", 6, 45);
    expect_counts("COPY (SELECT id FROM items WHERE id <= $1) TO STDOUT", 1, 7);
    expect_counts("SELECT $1 AS marker", 1, 1);
}
