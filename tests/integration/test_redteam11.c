/* test_redteam11.c: red-team round 11 against column masking (the masking guard's predicate
 * rules, the test budget, COPY, cursors, the extended protocol). Each test asserts the SAFE
 * behaviour: a failing test is a finding.
 *
 * Findings: the guard takes CURRENT_SCHEMA (an SQLValueFunction) for a constant comparand
 * (masksql_expr.c is_constant), but its value follows search_path, which set_config (allowed
 * with a constant setting name) changes row by row inside one statement, and SET LOCAL changes
 * between rewinds of a scroll cursor: one counted test then tries any number of guesses. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "maskcheck.h"
#include "rawproto.h"

static struct proxy px;

#define RT11_YAML                                                                                  \
    "  mallory: {password: pw}\n"                                                                  \
    "  audra: {password: pw, groups: [auditors]}\n"                                                \
    "  rtm: {auth: trust}\n"                                                                       \
    "groups:\n"                                                                                    \
    "  auditors: {role: auditor}\n"                                                                \
    "masking:\n"                                                                                   \
    "  databases: [app]\n"                                                                         \
    "  rules:\n"                                                                                   \
    "    - {column: public.customers.email, function: email, unless: {roles: [auditor]}}\n"        \
    "    - {column: public.customers.ssn, function: last4, unless: {groups: [auditors]}}\n"        \
    "    - {column: public.customers.salary, function: redact, unless: {users: [audra]}}\n"        \
    "    - {column: public.accounts_eu.iban, function: redact, unless: {users: [audra]}}\n"        \
    "    - {column: public.vip_notes.body, function: redact, unless: {users: [audra]}}\n"          \
    "    - {column: public.notes.body, function: last4, unless: {users: [audra]}}\n"

static void start_rt11(void)
{
    proxy_start_with(&px, "transaction", 2, 10000, RT11_YAML);
}

/* masking.max_tests_per_second: 5 (bursts of 10). */
static void start_rt11_slow(void)
{
    proxy_start_with(&px, "transaction", 2, 10000, RT11_YAML "  max_tests_per_second: 5\n");
}

static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(redteam11, .init = start_rt11, .fini = stop_proxy, .timeout = 120);

static PGconn *login(const char *user)
{
    return mask_login(&px, user);
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
              "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

/* Expects no secret in any field of r (message, detail, hint, context, values). */
static void expect_clean(const PGresult *r, const char *sql)
{
    static const int fields[] = {PG_DIAG_MESSAGE_PRIMARY, PG_DIAG_MESSAGE_DETAIL,
                                 PG_DIAG_MESSAGE_HINT,    PG_DIAG_CONTEXT,
                                 PG_DIAG_INTERNAL_QUERY,  PG_DIAG_COLUMN_NAME};
    mask_expect_no_secret(r, sql);
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const char *v = PQresultErrorField(r, fields[i]);
        cr_expect(!v || !mask_find_secret(v, strlen(v)), "[%s] error field %c leaks: %s", sql,
                  fields[i], v ? v : "");
    }
}

/* Runs sql in the simple and the extended protocol: it must fail (any error) or, when
 * may_run, run; never a secret in what comes back. */
static PGconn *attempt(PGconn *c, const char *user, const char *sql, bool may_run)
{
    for (int ext = 0; ext <= 1; ext++) {
        PGresult *r = ext ? PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0) : PQexec(c, sql);
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_OUT) {
            char *row;
            int n;
            while ((n = PQgetCopyData(c, &row, 0)) > 0) {
                cr_expect(!mask_find_secret(row, (size_t)n), "[%s] COPY leaks", sql);
                PQfreemem(row);
            }
        }
        expect_clean(r, sql);
        bool ran = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_COPY_OUT;
        if (!may_run)
            cr_expect(!ran, "[%s] (%s) should be refused", sql, ext ? "extended" : "simple");
        PQclear(r);
        for (PGresult *more; (more = PQgetResult(c));) {
            expect_clean(more, sql);
            PQclear(more);
        }
        PQclear(PQexec(c, "ROLLBACK"));
        if (PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = login(user);
        }
    }
    return c;
}

/* ---- what held: each attempt refused (or an error of PostgreSQL's), or run masked ---- */

static const char *const refused_attempts[] = {
    /* implicit text -> regclass cast would print the value in "relation ... does not exist" */
    "SELECT id FROM customers WHERE ssn = 'pg_class'::regclass",
    "SELECT id FROM customers WHERE ssn IN ('pg_class'::regclass)",
    /* operators that test many values at once */
    "SELECT id FROM customers WHERE ssn SIMILAR TO '___-__-[0-4]%'",
    "SELECT id FROM customers WHERE ssn ~ '^1'",
    "SELECT id FROM customers WHERE email @@ 'ada | grace | zoe'",
    "SELECT id FROM customers WHERE email @@ to_tsquery('ada:* | grace:*')",
    "SELECT id FROM customers WHERE salary <@ "
    "'{[1,2],[12345,12346],[23456,23457]}'::int4multirange",
    "SELECT id FROM customers WHERE ssn OPERATOR(pg_catalog.~~) '__4%'",
    "SELECT id FROM customers WHERE ssn LIKE ANY ('{__4%}')",
    "SELECT id FROM customers WHERE ssn ~~ ALL ('{__4%}'::text[])",
    "SELECT id FROM customers WHERE ROW(ssn) IN (ROW('a'), ROW('b'), ROW('c'), ROW('d'), ROW('e'))",
    "SELECT id FROM customers WHERE ssn = ANY (string_to_array('a,b,c,d,e', ','))",
    "SELECT id FROM customers WHERE ssn = ANY ('{a,b}' || '{c,d,e}'::text[])",
    /* VALUES / set operations / row references lose or carry the origin */
    "SELECT x FROM customers c, LATERAL (VALUES (c.email)) v(x)",
    "WITH RECURSIVE r AS (SELECT email FROM customers UNION ALL SELECT email FROM r WHERE false) "
    "SELECT * FROM r",
    "SELECT (SELECT c) FROM customers c",
    "SELECT s.e FROM (SELECT email AS e, id FROM customers) s ORDER BY s",
    "SELECT id, lag(email) OVER () FROM customers",
    /* sort / group oracles by position, alias, star, window */
    "SELECT id, ssn FROM customers ORDER BY 2",
    "SELECT * FROM (SELECT ssn FROM customers) s ORDER BY 1",
    "SELECT DISTINCT * FROM (SELECT ssn FROM customers) s",
    "SELECT email AS name FROM customers ORDER BY name",
    "SELECT DISTINCT ON (2) id, ssn FROM customers ORDER BY 2",
    "SELECT id, row_number() OVER w FROM customers WINDOW w AS (ORDER BY ssn)",
    "SELECT email FROM customers GROUP BY GROUPING SETS ((id, email))",
    /* joins that compare with generated guesses */
    "SELECT id FROM customers NATURAL JOIN (SELECT generate_series(0, 100000) AS salary) g",
    "SELECT c.id, g.salary FROM customers c JOIN (SELECT generate_series(0, 100000) AS salary) g "
    "USING (salary)",
    "SELECT g FROM generate_series(0, 100000) g, LATERAL (SELECT id FROM customers "
    "WHERE salary = g) s",
    /* MERGE */
    "MERGE INTO scratch s USING (SELECT email FROM customers) c ON false WHEN NOT MATCHED THEN "
    "INSERT VALUES (c.email)",
    "MERGE INTO scratch s USING customers c ON s.v = c.email WHEN MATCHED THEN DELETE",
    "MERGE INTO scratch s USING customers c ON c.ssn > '4' WHEN NOT MATCHED THEN INSERT VALUES "
    "('x')",
    /* COPY of a materialized view, TABLE, a sibling partition */
    "COPY mv_mat TO STDOUT",
    "COPY mv_mat TO STDOUT (FORMAT binary)",
    "COPY (TABLE mv_mat) TO STDOUT",
    "COPY (TABLE customers) TO STDOUT (FORMAT binary)",
    "COPY (SELECT * FROM mv_all) TO STDOUT",
    "COPY accounts_us TO STDOUT",
    "COPY customers (email) TO STDOUT",
    "SELECT lower(tax_id) FROM mv_mat",
    "SELECT t FROM mv_mat t",
    /* SQL-text readers and statistics, wherever they hide */
    "CREATE DOMAIN pg_temp.rtd AS int CHECK ((query_to_xml('select ssn from customers', true, "
    "true, '')::text)::int > 0)",
    "CREATE TEMP TABLE rt_chk (x int CHECK ((table_to_xml('customers', true, true, '')::text)"
    "::int > 0))",
    "SELECT ts_rewrite('a'::tsquery, 'SELECT email::tsquery, ''x''::tsquery FROM customers')",
    "SELECT database_to_xml(true, true, '')",
    "SELECT schema_to_xml('public', true, true, '')",
    "SELECT crosstab2('SELECT name, email, ssn FROM customers')",
    "SELECT * FROM pg_catalog.pg_stats WHERE tablename = 'customers'",
    "SELECT * FROM pg_stats_ext",
    "SELECT * FROM pg_stats_ext_exprs",
};

Test(redteam11, predicate_sort_copy_merge_and_reader_attempts_are_refused)
{
    PGconn *c = login("mallory");
    for (size_t i = 0; i < sizeof(refused_attempts) / sizeof(refused_attempts[0]); i++)
        c = attempt(c, "mallory", refused_attempts[i], false);
    PQfinish(c);
}

static const char *const masked_attempts[] = {
    "SELECT x FROM customers c CROSS JOIN LATERAL (SELECT c.email) s(x)",
    "SELECT * FROM customers c, LATERAL (SELECT c.ssn AS y) s",
    "SELECT * FROM mv_mat",
    "EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF) SELECT email, ssn FROM customers",
    "SELECT id, email FROM customers GROUP BY id",
    "SELECT id FROM customers WHERE ssn < 'x'::\"char\"",
};

Test(redteam11, lateral_explain_and_grouped_outputs_stay_masked)
{
    PGconn *c = login("mallory");
    for (size_t i = 0; i < sizeof(masked_attempts) / sizeof(masked_attempts[0]); i++)
        c = attempt(c, "mallory", masked_attempts[i], true);
    PQfinish(c);
}

/* The guard's verdict is not shared between texts that differ only in literals: a prefix
 * pattern, an array literal or an ordinal that passed does not let a bad one through. */
Test(redteam11, a_verdict_is_never_reused_for_other_literals)
{
    PGconn *c = login("mallory");
    static const char *const pairs[][2] = {
        {"SELECT id FROM customers WHERE ssn LIKE '1%'",
         "SELECT id FROM customers WHERE ssn LIKE '__4%'"},
        {"SELECT id FROM customers WHERE ssn = ANY ('{a}')",
         "SELECT id FROM customers WHERE ssn = ANY ('{a,b,c,d,e,f,111-22-3333}')"},
        {"SELECT id, ssn FROM customers ORDER BY 1", "SELECT id, ssn FROM customers ORDER BY 2"},
        {"SELECT set_config('application_name', 'x', true)",
         "SELECT set_config('enable_seqscan', 'off', true)"},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        for (int ext = 0; ext <= 1; ext++) {
            PGresult *r = ext ? PQexecParams(c, pairs[i][0], 0, NULL, NULL, NULL, NULL, 0)
                              : PQexec(c, pairs[i][0]);
            cr_expect(PQresultStatus(r) == PGRES_TUPLES_OK, "[%s]: %s", pairs[i][0],
                      PQresultErrorMessage(r));
            PQclear(r);
            r = ext ? PQexecParams(c, pairs[i][1], 0, NULL, NULL, NULL, NULL, 0)
                    : PQexec(c, pairs[i][1]);
            cr_expect(PQresultStatus(r) == PGRES_FATAL_ERROR, "[%s] after [%s] ran", pairs[i][1],
                      pairs[i][0]);
            expect_clean(r, pairs[i][1]);
            PQclear(r);
            if (PQstatus(c) != CONNECTION_OK) {
                PQfinish(c);
                c = login("mallory");
            }
        }
    }
    PQfinish(c);
}

/* A binary cursor fetched in parts, and a SQL cursor run by the protocol's Execute (a portal
 * the client never bound): masked like any result. */
Test(redteam11, cursors_binary_and_executed_by_the_protocol_are_masked)
{
    PGconn *c = login("mallory");
    exec_ok(c, "BEGIN");
    exec_ok(c, "DECLARE bc BINARY CURSOR FOR SELECT email, ssn, salary FROM customers");
    for (int i = 0; i < 3; i++) {
        PGresult *r = PQexec(c, "FETCH 1 FROM bc");
        cr_expect(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
        expect_clean(r, "FETCH 1 FROM bc");
        PQclear(r);
    }
    exec_ok(c, "COMMIT");
    PQfinish(c);

    int fd = raw_session(px.port, "rtm", "app");
    raw_query(fd, "BEGIN; DECLARE rc CURSOR FOR SELECT id, email, ssn, salary FROM customers");
    unsigned char body[65536];
    size_t len;
    int t;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) != 'Z')
        cr_assert(t >= 0 && t != 'E', "DECLARE failed");
    struct buf b;
    buf_init(&b);
    raw_put_execute(&b, "rc");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    int rows = 0;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) != 'Z' && t >= 0) {
        cr_expect(!mask_find_secret((const char *)body, len),
                  "message '%c' of an Execute of a SQL cursor leaks", t);
        rows += t == 'D';
    }
    cr_expect(t == 'Z');
    cr_expect(rows == 0 || rows == 3, "rows %d", rows);
    close(fd);
}

/* ---- findings ---- */

/* CURRENT_SCHEMA passes as a constant comparand, but set_config changes search_path for each
 * row of one statement: a single counted test tries every guess the client names as a
 * schema (schemas are the one thing a masked client may create freely). Here a dictionary
 * of guesses holding the real SSNs reads which row has which, in one statement. */
Test(redteam11, one_test_through_current_schema_tries_one_guess_only)
{
    PGconn *c = login("mallory");
    exec_ok(c, "BEGIN");
    static const char *const guesses[] = {"rt11_a", "111-22-3333", "rt11_b", "444-55-6666",
                                          "rt11_c"};
    char sql[4096];
    for (size_t i = 0; i < sizeof(guesses) / sizeof(guesses[0]); i++) {
        snprintf(sql, sizeof(sql), "CREATE SCHEMA \"%s\"", guesses[i]);
        exec_ok(c, sql);
    }
    const char *attack =
        "SELECT g, s.id FROM pg_catalog.unnest(ARRAY['rt11_a', '111-22-3333', 'rt11_b', "
        "'444-55-6666', 'rt11_c']) g, LATERAL (SELECT id, g AS gg FROM public.customers c "
        "WHERE c.ssn = CURRENT_SCHEMA OFFSET 0) s "
        "WHERE pg_catalog.set_config('search_path', pg_catalog.quote_ident(g), true) IS NOT NULL";
    PGresult *r = PQexec(c, attack);
    int confirmed = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        for (int i = 0; i < PQntuples(r); i++)
            confirmed += strstr(PQgetvalue(r, i, 0), "-") != NULL;
    cr_expect(PQresultStatus(r) != PGRES_TUPLES_OK,
              "one statement (one counted test) tried 5 guesses through CURRENT_SCHEMA and "
              "confirmed %d real SSNs",
              confirmed);
    PQclear(r);
    PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
}

/* The same with ranges: every row's salary placed among many thresholds by one statement. */
Test(redteam11, one_test_through_current_schema_cannot_bisect_every_row)
{
    PGconn *c = login("mallory");
    exec_ok(c, "BEGIN");
    char sql[8192] = "", list[4096] = "";
    for (int k = 10000; k <= 40000; k += 2000) {
        snprintf(sql, sizeof(sql), "CREATE SCHEMA \"%d\"", k);
        exec_ok(c, sql);
        size_t l = strlen(list);
        snprintf(list + l, sizeof(list) - l, "%s'%d'", l ? "," : "", k);
    }
    exec_ok(c, "SET LOCAL search_path = \"10000\""); /* the planner reads it once, as an int */
    snprintf(sql, sizeof(sql),
             "SELECT s.id, pg_catalog.min(g::int) FROM pg_catalog.unnest(ARRAY[%s]) g, LATERAL "
             "(SELECT id, g AS gg FROM public.customers c WHERE c.salary < CURRENT_SCHEMA::int "
             "OFFSET 0) s WHERE pg_catalog.set_config('search_path', pg_catalog.quote_ident(g), "
             "true) IS NOT NULL GROUP BY s.id ORDER BY s.id",
             list);
    PGresult *r = PQexec(c, sql);
    char got[256] = "";
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        for (int i = 0; i < PQntuples(r); i++) {
            size_t l = strlen(got);
            snprintf(got + l, sizeof(got) - l, "id %s < %s; ", PQgetvalue(r, i, 0),
                     PQgetvalue(r, i, 1));
        }
    cr_expect(PQresultStatus(r) != PGRES_TUPLES_OK,
              "one statement (one counted test) placed every salary among 16 thresholds: %s", got);
    PQclear(r);
    PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
}

/* A scroll cursor's test is counted once, at DECLARE; rewound (MOVE ABSOLUTE 0) after each
 * SET LOCAL search_path, it tests CURRENT_SCHEMA's new value each time, uncounted: 40 guesses
 * under a budget of 5 a second (bursts of 10). */
Test(redteam11, a_rewound_cursor_does_not_test_past_the_budget, .init = start_rt11_slow)
{
    PGconn *c = login("mallory");
    exec_ok(c, "BEGIN");
    char sql[256];
    for (int i = 0; i < 40; i++) {
        snprintf(sql, sizeof(sql), "CREATE SCHEMA \"rt11_g%d\"", i);
        exec_ok(c, sql);
    }
    exec_ok(c, "CREATE SCHEMA \"111-22-3333\"");
    PGresult *r = PQexec(c, "DECLARE rw SCROLL CURSOR FOR SELECT id FROM customers "
                            "WHERE ssn = CURRENT_SCHEMA");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) { /* (as since the fix: not a constant) */
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cr_expect_str_eq(st ? st : "", "42501", "DECLARE: %s", PQerrorMessage(c));
        PQclear(r);
        PQclear(PQexec(c, "ROLLBACK"));
        PQfinish(c);
        return;
    }
    PQclear(r);
    int answered = 0;
    bool confirmed = false;
    for (int i = 0; i <= 40 && PQtransactionStatus(c) == PQTRANS_INTRANS; i++) {
        if (i < 40)
            snprintf(sql, sizeof(sql), "SET LOCAL search_path = \"rt11_g%d\"", i);
        else
            snprintf(sql, sizeof(sql), "SET LOCAL search_path = \"111-22-3333\"");
        PQclear(PQexec(c, sql));
        PQclear(PQexec(c, "MOVE ABSOLUTE 0 IN rw"));
        r = PQexec(c, "FETCH ALL FROM rw");
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            answered++;
            confirmed |= i == 40 && PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "1") == 0;
        }
        PQclear(r);
    }
    cr_expect(answered <= 12 && !confirmed,
              "a rewound cursor answered %d guesses (budget: bursts of 10) and %s the real SSN",
              answered, confirmed ? "confirmed" : "did not confirm");
    PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
}
