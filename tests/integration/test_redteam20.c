/* test_redteam20.c: red-team round 20 on (1) the worker's memo of text shapes (sqlkey.c
 * sqlkey_memo_shape, client.c look_up_query_shape, pipeline.c scan_statement, policy.c's use of
 * client_query_facts): keyword-scan facts found for one client's text reused for another
 * client's text of the same shape (numbers for constants), and the reserved lp_ statement names
 * the policy check refuses; (2) per-query statistics and the query log under pipelining and in
 * error paths: calls, errors, SQLSTATE of statements of one multi-statement Query and of
 * pipelined Queries, and literal values (strings, numbers) never reaching the query log,
 * SHOW QUERIES or /metrics (errors that quote the value, text the parser cannot parse, invalid
 * UTF-8, very long texts, COPY, DO blocks, EXECUTE arguments, extended-protocol parameters).
 * Each test asserts the SAFE behaviour: a failing test is a finding.
 *
 * Found:
 *  - clients without rls: a prepared statement name written as a Unicode-escaped identifier
 *    (PREPARE / EXECUTE / DEALLOCATE U&"\006Cp_...", also with UESCAPE) passes lakeproxy's
 *    reserved-name check, which parses the text only when it holds the bytes "lp_"
 *    (guard.c guard_mentions_reserved_prefix, used by guard_uses_reserved_name and by
 *    pipeline_text_facts for the memo's TEXT_RESERVED_PREFIX, which policy.c
 *    policy_check_client_msg trusts); PostgreSQL reads the name as lp_<hash>, one of
 *    lakeproxy's statements on the shared server. A client runs, drops and replaces another
 *    client's statement; the victim's next use fails with 42P05 "already exists"
 *    (u_amp_escaped_lakeproxy_statement_names_are_reserved). Fixed: the reserved-name check
 *    parses also a text that holds "u&" (guard_mentions_reserved_prefix, whose answer the
 *    memo's facts follow: letters, '&' and '_' are still a fact of the shape);
 *  - the same through dynamic SQL: DO $$ EXECUTE 'DEAL' || 'LOCATE ' || chr(108) || 'p_<hash>';
 *    EXECUTE 'PREPARE ' || chr(108) || 'p_<hash>(text) AS <other text>' $$ (the hash read from
 *    pg_prepared_statements) replaces another client's statement on the shared server without
 *    any keyword lakeproxy scans for: the victim's next EXECUTE of its own statement returns the
 *    attacker's result ("hijacked still"), no error
 *    (dynamic_sql_cannot_make_another_clients_statement_run_other_text). Cause: lakeproxy
 *    learns of DEALLOCATE/PREPARE only from the text (pipeline.c text_marks). Fixed: a DO block
 *    or a CALL retires its server when its client lets go (TEXT_RETIRES, as LISTEN), so what
 *    its code did there reaches no other client. A function the client created is still out of
 *    sight (README: clients of one pool without row-level security or masking share a role and
 *    must trust each other with it; the RLS guard refuses DO).
 *
 * Held: facts of a number-only shape primed by another client (BEGIN in the same shape keeps
 * its block and server; DEALLOCATE ALL / DISCARD ALL primed by another client still free and
 * drop the second client's names; 1.5 / 1e5 / 15 in the shape); by reading sqlkey.c
 * memo_matches and the keyword scans, a matching text differs only inside number constants
 * (digits, '.', e/E, +/-) whose first and last bytes are of the same kind, which no keyword
 * scan can see, so no test could make the memo give one client's facts to a text they are
 * wrong for. Statistics: a multi-statement Query with an error (skipped statements are no
 * calls, the SQLSTATE on its own statement), simple Queries pipelined in one write, extended
 * pipelines of several Syncs, a statement refused by lakeproxy mid-pipeline (the rest of its
 * segment skipped, no record), a Query inside an extended batch, COPY FROM STDIN failing inside
 * a multi-statement Query, an opaque (standard_conforming_strings off) multi-statement Query
 * pipelined with later Queries; no literal in the query log, SHOW QUERIES or /metrics from
 * errors quoting values, unparseable text, invalid UTF-8, an 8 kB text, dollar / E'' / U&''
 * strings, DO/RAISE, COPY in and out, PREPARE/EXECUTE arguments, comments, extended
 * parameters, a pipeline error. A LISTEN hidden in dynamic SQL does not reach the next client.
 * Note: records are keyed by libpg_query's fingerprint, which ignores column aliases and
 * constants: "SELECT 1 AS a" and "SELECT 1 AS b" share one row, shown with the first text seen
 * (even one that was skipped behind an error and never ran); tests tell statements apart by
 * column references. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "procinfo.h"
#include "rawproto.h"

static struct proxy px;
static char log_path[400];
static int http_port;

/* Transaction pooling with ONE server (every client shares it), alice an admin, the query
 * log on, /metrics on. */
static void start(void)
{
    static char yaml[8192];
    char extra[800];
    snprintf(log_path, sizeof(log_path), "%s/rt20-queries-%d.jsonl", env_need("LP_TEST_DIR"),
             (int)getpid());
    unlink(log_path);
    http_port = free_port();
    snprintf(extra, sizeof(extra),
             "admin:\n  users: [alice]\n  http: 127.0.0.1:%d\nstats:\n  log: %s\n", http_port,
             log_path);
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 1, 10000, extra);
    proxy_start_yaml(&px, port, yaml);
}

static void stop(void)
{
    proxy_stop(&px);
}

TestSuite(redteam20, .init = start, .fini = stop, .timeout = 90);

static PGconn *alice(const char *db)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", db, NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

static void ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

static void prepare(PGconn *c, const char *name, const char *sql)
{
    PGresult *r = PQprepare(c, name, sql, 1, NULL);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(r);
}

/* ---- 1. the memo of text shapes and reserved names ------------------------------------ */

/* The reserved-name check looks for the bytes "lp_"; PostgreSQL also reads U&"\006Cp_..." (and
 * U&"!006Cp_..." UESCAPE '!') as a name that begins with lp_. No client may drop, replace or run
 * lakeproxy's statements so: another client's statement must keep running its own text. */
Test(redteam20, u_amp_escaped_lakeproxy_statement_names_are_reserved)
{
    PGconn *victim = alice("app"), *attacker = alice("app");
    prepare(victim, "rt20_mine", "SELECT $1::text || ' from victim'");
    char *v = prepared_value(victim, "rt20_mine", "hello");
    cr_assert_str_eq(v, "hello from victim");
    free(v);
    char *name = query_value(attacker, "SELECT name FROM pg_prepared_statements "
                                       "WHERE statement LIKE '%from victim%' LIMIT 1");
    cr_assert(name && strncmp(name, "lp_", 3) == 0, "the proxy's name: %s", name ? name : "-");
    char sql[300];
    static const char *const forms[] = {
        "DEALLOCATE U&\"\\006Cp_%s\"",
        "PREPARE U&\"\\006Cp_%s\"(text) AS SELECT 'hijacked ' || $1",
        "EXECUTE U&\"\\006cp_%s\"('x')",
        "PREPARE U&\"!006Cp_%s\" UESCAPE '!' (text) AS SELECT 'hijacked ' || $1",
    };
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        snprintf(sql, sizeof(sql), forms[i], name + 3);
        /* in a block: a lone DEALLOCATE could be answered by lakeproxy itself */
        char block[400];
        snprintf(block, sizeof(block), "BEGIN; %s; COMMIT", sql);
        const char *qs = query_sqlstate(attacker, block);
        cr_expect_str_eq(qs, "42501", "%s was not refused as a reserved name (sqlstate '%s')", sql,
                         qs);
        if (PQtransactionStatus(attacker) != PQTRANS_IDLE)
            PQclear(PQexec(attacker, "ROLLBACK"));
        if (strncmp(sql, "DEALLOCATE", 10) == 0)
            continue; /* (the extended protocol: refused at its Parse, unrun) */
        PGresult *r = PQprepare(attacker, "", sql, 0, NULL);
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cr_expect_str_eq(st ? st : "", "42501", "Parse of %s was not refused", sql);
        PQclear(r);
    }
    v = prepared_value(victim, "rt20_mine", "still");
    cr_expect_str_eq(v, "still from victim", "the victim's statement did not run its own text: %s",
                     v);
    free(v);
    free(name);
    PQfinish(victim);
    PQfinish(attacker);
}

/* A shape whose constants are numbers, primed by one client, then sent by another with other
 * numbers: the second still gets what its own text says. With BEGIN in it, its block stays
 * open on its server (another client's statement cannot run there in between). */
Test(redteam20, begin_in_a_shape_primed_by_another_client_keeps_the_block)
{
    PGconn *a = alice("app"), *b = alice("app");
    for (int i = 0; i < 3; i++) {
        ok(a, "SELECT 1 AS rt20_memo_pad_column_a, 1.5 AS x, 1e5 AS y; BEGIN");
        ok(a, "COMMIT");
    }
    ok(b, "SELECT 22 AS rt20_memo_pad_column_a, 2.75 AS x, 3e7 AS y; BEGIN");
    cr_expect_eq(PQtransactionStatus(b), PQTRANS_INTRANS);
    char *t1 = query_value(b, "SELECT txid_current()::text");
    /* a's query must wait for b's server (a pool of one) */
    cr_assert(PQsendQuery(a, "SELECT 7 AS rt20_memo_other"));
    PGresult *r = query_result_within(a, 0.3);
    cr_expect_null(r, "another client ran on a server inside b's block");
    if (r)
        PQclear(r);
    char *t2 = query_value(b, "SELECT txid_current()::text");
    cr_expect_str_eq(t1, t2, "b's block lost its transaction");
    ok(b, "COMMIT");
    r = query_result_within(a, 5);
    cr_expect_not_null(r);
    PQclear(r);
    while ((r = PQgetResult(a)))
        PQclear(r);
    free(t1);
    free(t2);
    PQfinish(a);
    PQfinish(b);
}

/* DEALLOCATE ALL / DISCARD ALL in a shape primed by a client that had no prepared statement:
 * another client's statements still run afterwards (lakeproxy prepares them again). */
Test(redteam20, deallocate_in_a_primed_shape_keeps_prepared_statements_working)
{
    PGconn *a = alice("app"), *b = alice("app");
    for (int i = 0; i < 3; i++) {
        ok(a, "SELECT 1 AS rt20_memo_dealloc_pad, 2 AS n; DEALLOCATE ALL");
        ok(a, "DISCARD ALL");
    }
    prepare(b, "rt20_b1", "SELECT $1::text || ' b1'");
    char *v = prepared_value(b, "rt20_b1", "x");
    cr_expect_str_eq(v, "x b1");
    free(v);
    ok(b, "SELECT 31 AS rt20_memo_dealloc_pad, 42 AS n; DEALLOCATE ALL");
    /* (not alone in its Query: lakeproxy keeps b's names, unsure, by design) the name is free
     * again for b, as on PostgreSQL, and runs its new text */
    prepare(b, "rt20_b1", "SELECT $1::text || ' b1 again'");
    v = prepared_value(b, "rt20_b1", "y");
    cr_expect_str_eq(v, "y b1 again");
    free(v);
    prepare(b, "rt20_b2", "SELECT $1::text || ' b2'");
    ok(b, "DISCARD ALL");
    v = prepared_value(b, "rt20_b2", "z");
    cr_expect(strstr(v, "does not exist") != NULL, "DISCARD ALL dropped b's names: %s", v);
    free(v);
    /* prepared anew, each runs on the shared server (the server's cache was dropped too) */
    prepare(b, "rt20_b3", "SELECT $1::text || ' b3'");
    v = prepared_value(b, "rt20_b3", "w");
    cr_expect_str_eq(v, "w b3");
    free(v);
    prepare(a, "rt20_a1", "SELECT $1::text || ' b3'");
    v = prepared_value(a, "rt20_a1", "q");
    cr_expect_str_eq(v, "q b3");
    free(v);
    PQfinish(a);
    PQfinish(b);
}

/* ---- 2. statistics and the query log ------------------------------------------------- */

/* The whole query log (malloc'd), after waiting for a line holding marker. */
static char *read_log(const char *marker)
{
    cr_assert(wait_file_line(log_path, marker, 5000), "no log line with %s", marker);
    FILE *f = fopen(log_path, "r");
    cr_assert(f);
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    size_t n;
    while ((n = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2)
            s = realloc(s, cap *= 2);
    }
    s[len] = '\0';
    fclose(f);
    return s;
}

/* The body of GET path from the admin HTTP port (malloc'd). */
static char *rt20_http_get(const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char req[200];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
    cr_assert_eq(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 20, len = 0;
    char *s = malloc(cap);
    ssize_t k;
    while (len < cap - 1 && (k = read(fd, s + len, cap - 1 - len)) > 0)
        len += (size_t)k;
    s[len] = '\0';
    close(fd);
    return s;
}

/* Every row of SHOW QUERIES 1000, all columns, as one text (malloc'd). */
static char *show_queries_text(void)
{
    PGconn *adm = alice("lakeproxy");
    PGresult *r = PQexec(adm, "SHOW QUERIES 1000");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(adm));
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    s[0] = '\0';
    for (int i = 0; i < PQntuples(r); i++)
        for (int j = 0; j < PQnfields(r); j++) {
            const char *v = PQgetvalue(r, i, j);
            size_t n = strlen(v);
            while (len + n + 2 > cap)
                s = realloc(s, cap *= 2);
            memcpy(s + len, v, n);
            len += n;
            s[len++] = '|';
            s[len] = '\0';
        }
    PQclear(r);
    PQfinish(adm);
    return s;
}

static void expect_no_secret(const char *where, const char *text)
{
    static const char *const secrets[] = {"rt20sec", "RT20SEC", "987654321", "424242"};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        const char *at = strstr(text, secrets[i]);
        cr_expect_null(at, "%s holds the literal %s: ...%.200s", where, secrets[i],
                       at ? (at > text + 100 ? at - 100 : text) : "");
    }
}

/* Runs sql as one simple Query and reads every result. */
static void run_all(PGconn *c, const char *sql)
{
    cr_assert(PQsendQuery(c, sql), "%s", PQerrorMessage(c));
    PGresult *r;
    while ((r = PQgetResult(c))) {
        if (PQresultStatus(r) == PGRES_COPY_OUT) {
            char *line;
            while (PQgetCopyData(c, &line, 0) > 0)
                PQfreemem(line);
        } else if (PQresultStatus(r) == PGRES_COPY_IN) {
            PQputCopyData(c, "rt20sec_copy_in_data\n", 21);
            PQputCopyEnd(c, NULL);
        }
        PQclear(r);
    }
}

Test(redteam20, literals_never_reach_the_log_show_queries_or_metrics)
{
    PGconn *c = alice("app");
    char big[9000];
    int n = snprintf(big, sizeof(big), "SELECT 'rt20sec_long' AS a, 987654321 AS b");
    while (n < 8000)
        n += snprintf(big + n, sizeof(big) - (size_t)n, ", 424242 + 987654321 AS c%d", n);
    const char *texts[] = {
        "SELECT 'rt20sec_cast'::int", /* 22P02 quoting it */
        "SELECT 987654321::smallint", /* out of range */
        "SELECT 1 AS rt20_a; SELECT 'rt20sec_mid'::int; SELECT 'rt20sec_skipped'",
        "SELECT 'rt20sec_unparsed' FROM WHERE 987654321", /* syntax error */
        "SELECT 'rt20sec_bad_utf8 \xff\xfe' AS rt20_utf", /* 22021 */
        "SELECT $$rt20sec_dollar$$ AS d, $t$rt20sec_tagged$t$ AS e",
        "SELECT E'rt20sec_escape\\n' AS e, U&'rt20sec_uamp' AS f, x'424242' AS g",
        "DO $$BEGIN PERFORM 'rt20sec_do'; RAISE EXCEPTION 'rt20sec_raise %', 987654321; END$$",
        "COPY (SELECT 'rt20sec_copy_out' AS x, 987654321) TO STDOUT",
        "CREATE TEMP TABLE rt20_copy_t (t text); COPY rt20_copy_t FROM STDIN",
        "PREPARE rt20_p1(text) AS SELECT 'rt20sec_prep' || $1; EXECUTE rt20_p1('rt20sec_exec'); "
        "DEALLOCATE rt20_p1",
        "SET application_name = 'rt20_app'; SET statement_timeout = 987654321; RESET ALL",
        "SELECT 1 AS rt20_b /* rt20sec_comment */ -- rt20sec_line\n",
        "SELECT 'rt20sec_unterminated",
        "SELECT 424242 AS n WHERE 'RT20SEC_upper' <> ''",
        big,
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        run_all(c, texts[i]);
    /* extended protocol: parameters and an error quoting one */
    const char *params[1] = {"rt20sec_param"};
    PGresult *r = PQexecParams(c, "SELECT $1::int AS rt20_ext", 1, NULL, params, NULL, NULL, 0);
    PQclear(r);
    r = PQexecParams(c, "SELECT $1::text AS rt20_ext2", 1, NULL, params, NULL, NULL, 0);
    PQclear(r);
    /* a pipeline: an error mid-way, statements skipped behind it */
    cr_assert(PQenterPipelineMode(c));
    PQsendQueryParams(c, "SELECT 'rt20sec_pipe1'::int AS rt20_pipe", 0, NULL, NULL, NULL, NULL, 0);
    PQsendQueryParams(c, "SELECT 'rt20sec_pipe2' AS rt20_pipe2", 0, NULL, NULL, NULL, NULL, 0);
    PQpipelineSync(c);
    PQsendQueryParams(c, "SELECT rt20_pipe3 FROM (VALUES (987654321)) v(rt20_pipe3)", 0, NULL, NULL,
                      NULL, NULL, 0);
    PQpipelineSync(c);
    for (int syncs = 0; syncs < 2;) {
        r = PQgetResult(c);
        if (!r)
            continue;
        syncs += PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
    }
    cr_assert(PQexitPipelineMode(c));
    ok(c, "SELECT rt20_lit_end FROM (VALUES (1)) v(rt20_lit_end)");
    PQfinish(c);

    char *log = read_log("rt20_lit_end");
    expect_no_secret("the query log", log);
    cr_expect(strstr(log, "SELECT rt20_pipe3 FROM") != NULL,
              "the pipeline's last query was logged");
    free(log);
    char *show = show_queries_text();
    expect_no_secret("SHOW QUERIES", show);
    free(show);
    char *metrics = rt20_http_get("/metrics");
    cr_expect(strstr(metrics, "200") != NULL, "/metrics answered: %.100s", metrics);
    expect_no_secret("/metrics", metrics);
    free(metrics);
}

/* The log line of the query whose normalised text contains q: its "key" value as a string
 * into out ("" when absent); returns how many lines hold q. */
static int log_field(const char *log, const char *q, const char *key, char *out, size_t outsz)
{
    int count = 0;
    out[0] = '\0';
    for (const char *line = log; *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char *l = strndup(line, len);
        if (strstr(l, q)) {
            count++;
            char pat[64];
            snprintf(pat, sizeof(pat), "\"%s\":", key);
            const char *at = strstr(l, pat);
            if (at) {
                at += strlen(pat);
                size_t k = 0;
                while (at[k] && at[k] != ',' && at[k] != '}' && k + 1 < outsz) {
                    out[k] = at[k];
                    k++;
                }
                out[k] = '\0';
            }
        }
        free(l);
        line = eol ? eol + 1 : line + len;
    }
    return count;
}

/* Simple Queries pipelined (all sent before any answer is read), the second of three
 * statements of the middle one failing: each statement is one record with its own SQLSTATE;
 * the statement PostgreSQL skips behind the error is none; the Queries after it count. */
Test(redteam20, pipelined_simple_queries_with_an_error_are_recorded_exactly)
{
    /* three Query messages written in one go, before any answer is read */
    const char *qs[] = {
        "SELECT rt20_pq_one FROM generate_series(1, 3) rt20_pq_one",
        "SELECT rt20_pq_two FROM (VALUES (2)) v(rt20_pq_two); "
        "SELECT 1/rt20_pq_div FROM (VALUES (0)) v(rt20_pq_div); "
        "SELECT rt20_pq_skipped FROM (VALUES (4)) v(rt20_pq_skipped)",
        "SELECT rt20_pq_three FROM generate_series(1, 5) rt20_pq_three",
    };
    int fd = raw_session(px.port, "carol", "app");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < 3; i++)
        raw_put_query(&b, qs[i]);
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    int errors, tuples;
    cr_expect_eq(raw_count_replies(fd, 3, &errors, &tuples), 3);
    cr_expect_eq(errors, 1);
    cr_expect_eq(tuples, 3 + 1 + 5);
    close(fd);
    PGconn *c = alice("app");
    ok(c, "SELECT rt20_pq_end FROM (VALUES (1)) v(rt20_pq_end)");
    PQfinish(c);

    char *log = read_log("rt20_pq_end");
    char v[64];
    cr_expect_eq(log_field(log, "rt20_pq_one FROM", "rows", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "3");
    cr_expect_eq(log_field(log, "rt20_pq_two FROM", "rows", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "1");
    cr_expect_eq(log_field(log, "rt20_pq_div FROM", "sqlstate", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "\"22012\"");
    cr_expect_eq(log_field(log, "rt20_pq_two FROM", "sqlstate", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "null", "the statement before the error succeeded");
    cr_expect_eq(log_field(log, "rt20_pq_skipped FROM", "rows", v, sizeof(v)), 0,
                 "a statement skipped behind an error is no query");
    cr_expect_eq(log_field(log, "rt20_pq_three FROM", "rows", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "5");
    cr_expect_eq(log_field(log, "rt20_pq_three FROM", "sqlstate", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "null", "the Query after the failed one succeeded");
    free(log);
    PGconn *adm = alice("lakeproxy");
    cr_expect_eq(admin_show_queries_value(adm, 1000,
                                          "SELECT $1/rt20_pq_div FROM (VALUES ($2)) v(rt20_pq_div)",
                                          "errors"),
                 1);
    cr_expect_eq(admin_show_queries_value(
                     adm, 1000, "SELECT $1/rt20_pq_div FROM (VALUES ($2)) v(rt20_pq_div)", "calls"),
                 1);
    cr_expect_eq(
        admin_show_queries_value(
            adm, 1000, "SELECT rt20_pq_skipped FROM (VALUES ($1)) v(rt20_pq_skipped)", "calls"),
        -1);
    PQfinish(adm);
}

/* An extended pipeline of three Syncs: ok; error then skipped; ok. Each Sync's statements
 * are recorded with their own SQLSTATE and rows, in order. */
Test(redteam20, extended_pipeline_of_syncs_records_each_statement)
{
    PGconn *c = alice("app");
    cr_assert(PQenterPipelineMode(c));
    PQsendQueryParams(c, "SELECT rt20_xs_a FROM generate_series(1, 2) rt20_xs_a", 0, NULL, NULL,
                      NULL, NULL, 0);
    PQpipelineSync(c);
    PQsendQueryParams(c, "SELECT 1/rt20_xs_err FROM (VALUES (0)) v(rt20_xs_err)", 0, NULL, NULL,
                      NULL, NULL, 0);
    PQsendQueryParams(c, "SELECT rt20_xs_skipped FROM (VALUES (1)) v(rt20_xs_skipped)", 0, NULL,
                      NULL, NULL, NULL, 0);
    PQpipelineSync(c);
    PQsendQueryParams(c, "SELECT rt20_xs_b FROM generate_series(1, 4) rt20_xs_b", 0, NULL, NULL,
                      NULL, NULL, 0);
    PQsendQueryParams(c, "SELECT rt20_xs_err2::int FROM (VALUES ('x')) v(rt20_xs_err2)", 0, NULL,
                      NULL, NULL, NULL, 0);
    PQpipelineSync(c);
    for (int syncs = 0; syncs < 3;) {
        PGresult *r = PQgetResult(c);
        if (!r)
            continue;
        syncs += PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
    }
    cr_assert(PQexitPipelineMode(c));
    ok(c, "SELECT rt20_xs_end FROM (VALUES (1)) v(rt20_xs_end)");
    PQfinish(c);
    char *log = read_log("rt20_xs_end");
    char v[64];
    cr_expect_eq(log_field(log, "SELECT rt20_xs_a ", "rows", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "2");
    cr_expect_eq(log_field(log, "/rt20_xs_err ", "sqlstate", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "\"22012\"");
    cr_expect_eq(log_field(log, "SELECT rt20_xs_skipped ", "rows", v, sizeof(v)), 0);
    cr_expect_eq(log_field(log, "SELECT rt20_xs_b ", "rows", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "4");
    cr_expect_eq(log_field(log, "SELECT rt20_xs_b ", "sqlstate", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "null");
    cr_expect_eq(log_field(log, "SELECT rt20_xs_err2:", "sqlstate", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "\"22P02\"");
    free(log);
}

/* The same through dynamic SQL in a DO block whose text names neither DEALLOCATE nor lp_: the
 * victim's statement must still run its own text (or at least fail), never the attacker's. */
Test(redteam20, dynamic_sql_cannot_make_another_clients_statement_run_other_text)
{
    PGconn *victim = alice("app"), *attacker = alice("app");
    prepare(victim, "rt20_dyn", "SELECT $1::text || ' from the dyn victim'");
    char *v = prepared_value(victim, "rt20_dyn", "hello");
    cr_assert_str_eq(v, "hello from the dyn victim");
    free(v);
    char *name = query_value(attacker, "SELECT name FROM pg_prepared_statements "
                                       "WHERE statement LIKE '%dyn victim%' LIMIT 1");
    cr_assert(name && strncmp(name, "lp_", 3) == 0);
    char sql[600];
    snprintf(sql, sizeof(sql),
             "DO $$BEGIN EXECUTE 'DEAL' || 'LOCATE ' || chr(108) || 'p_%s'; "
             "EXECUTE 'PREPARE ' || chr(108) || 'p_%s(text) AS SELECT ''hijacked '' || $1'; "
             "END$$",
             name + 3, name + 3);
    const char *qs = query_sqlstate(attacker, sql);
    v = prepared_value(victim, "rt20_dyn", "still");
    cr_expect(strstr(v, "hijacked") == NULL,
              "the victim's statement ran the attacker's text: %s (the DO block: '%s')", v, qs);
    free(v);
    free(name);
    PQfinish(victim);
    PQfinish(attacker);
}

/* A pipeline segment in which lakeproxy itself refuses a statement (a reserved name): the
 * statements behind it in the segment are skipped as PostgreSQL would skip them, are no
 * calls in the statistics, and the next segment runs and is counted. */
Test(redteam20, a_statement_refused_by_lakeproxy_mid_pipeline_skips_its_segment)
{
    PGconn *c = alice("app");
    cr_assert(PQenterPipelineMode(c));
    PQsendQueryParams(c, "SELECT rt20_rf_a FROM generate_series(1, 2) rt20_rf_a", 0, NULL, NULL,
                      NULL, NULL, 0);
    PQsendQueryParams(c, "PREPARE lp_rt20_refused AS SELECT 1", 0, NULL, NULL, NULL, NULL, 0);
    PQsendQueryParams(c, "SELECT rt20_rf_b FROM generate_series(1, 3) rt20_rf_b", 0, NULL, NULL,
                      NULL, NULL, 0);
    PQpipelineSync(c);
    PQsendQueryParams(c, "SELECT rt20_rf_c FROM generate_series(1, 4) rt20_rf_c", 0, NULL, NULL,
                      NULL, NULL, 0);
    PQpipelineSync(c);
    int st[16], n = 0;
    for (int syncs = 0; syncs < 2 && n < 16;) {
        PGresult *r = PQgetResult(c);
        if (!r)
            continue;
        st[n++] = PQresultStatus(r);
        syncs += PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
    }
    cr_assert(PQexitPipelineMode(c));
    cr_assert_eq(n, 6, "results: %d", n);
    cr_expect_eq(st[0], PGRES_TUPLES_OK);
    cr_expect_eq(st[1], PGRES_FATAL_ERROR);
    cr_expect_eq(st[2], PGRES_PIPELINE_ABORTED, "the statement behind the refusal ran");
    cr_expect_eq(st[3], PGRES_PIPELINE_SYNC);
    cr_expect_eq(st[4], PGRES_TUPLES_OK);
    ok(c, "SELECT rt20_rf_end FROM (VALUES (1)) v(rt20_rf_end)");
    PQfinish(c);
    char *log = read_log("rt20_rf_end");
    char v[64];
    cr_expect_eq(log_field(log, "SELECT rt20_rf_a ", "rows", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "2");
    cr_expect_eq(log_field(log, "SELECT rt20_rf_b ", "rows", v, sizeof(v)), 0,
                 "a statement skipped behind the refusal is no query");
    cr_expect_eq(log_field(log, "SELECT rt20_rf_c ", "rows", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "4");
    free(log);
}

/* COPY FROM STDIN inside a multi-statement Query, its data failing: the COPY's record has the
 * error's SQLSTATE, the statement behind it is skipped (no record), the next Query counts. */
Test(redteam20, copy_failing_inside_a_multi_statement_query_is_recorded_exactly)
{
    PGconn *c = alice("app");
    cr_assert(PQsendQuery(c, "SELECT rt20_cp_before FROM generate_series(1, 2) rt20_cp_before; "
                             "COPY (SELECT 1) TO STDOUT; "
                             "CREATE TEMP TABLE rt20_cp_t (n int); COPY rt20_cp_t FROM STDIN; "
                             "SELECT rt20_cp_skipped FROM generate_series(1, 3) rt20_cp_skipped"));
    int errors = 0;
    PGresult *r;
    while ((r = PQgetResult(c))) {
        if (PQresultStatus(r) == PGRES_COPY_IN) {
            cr_assert_eq(PQputCopyData(c, "1\nrt20sec_bad\n", 14), 1);
            cr_assert_eq(PQputCopyEnd(c, NULL), 1);
        } else if (PQresultStatus(r) == PGRES_COPY_OUT) {
            char *line;
            while (PQgetCopyData(c, &line, 0) > 0)
                PQfreemem(line);
        }
        errors += PQresultStatus(r) == PGRES_FATAL_ERROR;
        PQclear(r);
    }
    cr_expect_eq(errors, 1);
    PGresult *q = PQexec(c, "SELECT rt20_cp_after FROM generate_series(1, 5) rt20_cp_after");
    cr_expect_eq(PQntuples(q), 5);
    PQclear(q);
    ok(c, "SELECT rt20_cp_end FROM (VALUES (1)) v(rt20_cp_end)");
    PQfinish(c);
    char *log = read_log("rt20_cp_end");
    char v[64];
    cr_expect_eq(log_field(log, "SELECT rt20_cp_before ", "rows", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "2");
    cr_expect_eq(log_field(log, "COPY rt20_cp_t FROM STDIN", "sqlstate", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "\"22P02\"");
    cr_expect_eq(log_field(log, "SELECT rt20_cp_skipped ", "rows", v, sizeof(v)), 0);
    cr_expect_eq(log_field(log, "SELECT rt20_cp_after ", "rows", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "5");
    expect_no_secret("the query log", log);
    free(log);
}

/* A simple Query sent in the middle of an extended batch (before its Sync), then an error
 * in a second batch: every answer reaches the client in order, each statement is one record
 * with its own rows, and the connection goes on. */
Test(redteam20, a_query_inside_an_extended_batch_is_recorded_in_step)
{
    int fd = raw_session(px.port, "carol", "app");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "", "SELECT rt20_mx_a FROM generate_series(1, 2) rt20_mx_a");
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_query(&b, "SELECT rt20_mx_q FROM generate_series(1, 3) rt20_mx_q");
    raw_put_empty(&b, 'S');
    raw_put_parse(&b, "", "SELECT 1/rt20_mx_err FROM (VALUES (0)) v(rt20_mx_err)");
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_parse(&b, "", "SELECT rt20_mx_skipped FROM generate_series(1, 7) rt20_mx_skipped");
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    raw_put_query(&b, "SELECT rt20_mx_end FROM generate_series(1, 4) rt20_mx_end");
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    int errors, rows, ready = raw_count_replies(fd, 4, &errors, &rows);
    cr_expect_eq(ready, 4, "ReadyForQuery: %d", ready);
    cr_expect_eq(errors, 1);
    cr_expect_eq(rows, 2 + 3 + 4);
    close(fd);
    char *log = read_log("rt20_mx_end");
    char v[64];
    cr_expect_eq(log_field(log, "SELECT rt20_mx_a ", "rows", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "2");
    cr_expect_eq(log_field(log, "SELECT rt20_mx_q ", "rows", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "3");
    cr_expect_eq(log_field(log, "/rt20_mx_err ", "sqlstate", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "\"22012\"");
    cr_expect_eq(log_field(log, "SELECT rt20_mx_skipped ", "rows", v, sizeof(v)), 0);
    cr_expect_eq(log_field(log, "SELECT rt20_mx_end ", "rows", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "4");
    free(log);
}

/* A multi-statement Query lakeproxy cannot read (standard_conforming_strings off and a
 * backslash: counted as one opaque statement) with an error in its middle, pipelined with the
 * next Query: the next Query's record keeps its own rows and SQLSTATE, and no literal of the
 * opaque text is logged. */
Test(redteam20, an_opaque_multi_statement_query_keeps_later_records_in_step)
{
    int fd = raw_session(px.port, "carol", "app");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    raw_put_query(&b, "SET standard_conforming_strings = off");
    raw_put_query(&b, "SELECT 'rt20sec_a\\\\' AS x FROM generate_series(1, 2); "
                      "SELECT 'rt20sec_b\\\\' AS y FROM generate_series(1, 3); "
                      "SELECT 1/0; SELECT 'rt20sec_c\\\\' AS z");
    raw_put_query(&b, "SELECT rt20_oq_next FROM generate_series(1, 4) rt20_oq_next");
    raw_put_query(&b, "SELECT 1/rt20_oq_err FROM (VALUES (0)) v(rt20_oq_err)");
    raw_put_query(&b, "RESET standard_conforming_strings");
    raw_put_query(&b, "SELECT rt20_oq_end FROM generate_series(1, 6) rt20_oq_end");
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    int errors, rows, ready = raw_count_replies(fd, 6, &errors, &rows);
    cr_expect_eq(ready, 6);
    cr_expect_eq(errors, 2);
    cr_expect_eq(rows, 2 + 3 + 4 + 6);
    close(fd);
    char *log = read_log("rt20_oq_end");
    char v[64];
    cr_expect_eq(log_field(log, "SELECT rt20_oq_next ", "rows", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "4");
    cr_expect_eq(log_field(log, "SELECT rt20_oq_next ", "sqlstate", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "null");
    cr_expect_eq(log_field(log, "/rt20_oq_err ", "sqlstate", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "\"22012\"");
    cr_expect_eq(log_field(log, "/rt20_oq_err ", "rows", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "0");
    cr_expect_eq(log_field(log, "SELECT rt20_oq_end ", "rows", v, sizeof(v)), 1);
    cr_expect_str_eq(v, "6");
    expect_no_secret("the query log", log);
    free(log);
}

/* LISTEN run by dynamic SQL (a DO block whose text does not say LISTEN) stays on the shared
 * server after its client's transaction: the next client there must not receive the
 * notifications of a channel it never listened to. */
Test(redteam20, a_hidden_listen_does_not_deliver_notifications_to_the_next_client)
{
    PGconn *a = alice("app");
    ok(a, "DO $$BEGIN EXECUTE 'LIS' || 'TEN rt20_dyn_ch'; END$$");
    PQfinish(a);
    PGconn *b = alice("app");
    ok(b, "BEGIN");
    ok(b, "SELECT 1 AS rt20_listen_b");
    PGconn *pg = pg_admin("lp_test");
    PGresult *r = PQexec(pg, "NOTIFY rt20_dyn_ch, 'rt20 payload for a listener'");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(pg));
    PQclear(r);
    PQfinish(pg);
    ok(b, "COMMIT");
    ok(b, "SELECT 2 AS rt20_listen_b2");
    PQconsumeInput(b);
    PGnotify *n = PQnotifies(b);
    cr_expect_null(n, "client b received a notification of channel %s: %s", n ? n->relname : "",
                   n ? n->extra : "");
    if (n)
        PQfreemem(n);
    PQfinish(b);
}
