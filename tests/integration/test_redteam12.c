/* test_redteam12.c: red-team round 12 against lakeproxy's promise that no secret (password,
 * token, client secret) and no literal value of a client's query reaches any of its outputs:
 * the log (at level debug), the JSON query log, the admin console (every SHOW) and /metrics.
 * Each test sends unique markers as values (literals, parameters, startup values, tokens,
 * secrets echoed by a workspace) and asserts the SAFE behaviour: no marker anywhere. A failing
 * test is a finding. Found: a workspace's error message is logged and shown by SHOW CREDENTIALS
 * verbatim (token.c token_http_failure / token_error_message), so an endpoint that echoes the
 * client secret, the workspace OAuth token or a client's own token puts it in the log (the
 * three a_*_echoed_* tests fail), and a failing token command's first stderr line is logged
 * and shown the same way (command.c report; a_secret_a_failing_token_command_* fails).
 * Everything else held. */

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "rawproto.h"

TestSuite(redteam12, .timeout = 120);

static struct proxy px;
static char qlog[400];
static int http_port;
static char admin_user[32] = "alice", admin_pw[32] = "alice-secret";

/* ---- where markers must never appear ---- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    size_t got;
    while ((got = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n < 4096)
            s = realloc(s, cap *= 2);
    }
    s[n] = '\0';
    fclose(f);
    return s;
}

/* Every admin SHOW, all cells, one line per row. */
static char *admin_dump(void)
{
    static const char *const cmds[] = {"SHOW CLIENTS",     "SHOW SERVERS",  "SHOW STATS",
                                       "SHOW CONFIG",      "SHOW POOLS",    "SHOW DATABASES",
                                       "SHOW QUERIES 500", "SHOW PUSHDOWN", "SHOW VERSION",
                                       "SHOW CREDENTIALS", "SHOW HELP"};
    struct buf b;
    buf_init(&b);
    PGconn *adm = proxy_connect(&px, admin_user, admin_pw, "lakeproxy", NULL);
    cr_assert(PQstatus(adm) == CONNECTION_OK, "admin: %s", PQerrorMessage(adm));
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        PGresult *r = PQexec(adm, cmds[i]);
        buf_put_bytes(&b, cmds[i], strlen(cmds[i]));
        buf_put_bytes(&b, "\n", 1);
        for (int row = 0; row < PQntuples(r); row++) {
            for (int col = 0; col < PQnfields(r); col++) {
                const char *v = PQgetvalue(r, row, col);
                buf_put_bytes(&b, v, strlen(v));
                buf_put_bytes(&b, "|", 1);
            }
            buf_put_bytes(&b, "\n", 1);
        }
        const char *e = PQresultErrorMessage(r);
        buf_put_bytes(&b, e, strlen(e));
        PQclear(r);
    }
    PQfinish(adm);
    buf_put_bytes(&b, "", 1);
    char *out = strdup((const char *)b.data);
    buf_free(&b);
    return out;
}

/* The line of text holding at (for the failure message). */
static void context_of(const char *text, const char *at, char *out, size_t outsz)
{
    const char *start = at, *end = at;
    while (start > text && start[-1] != '\n' && at - start < 200)
        start--;
    while (*end && *end != '\n' && end - at < 200)
        end++;
    snprintf(out, outsz, "%.*s", (int)(end - start), start);
}

static void expect_absent_in(const char *what, const char *text, const char *marker)
{
    const char *at = strcasestr(text, marker);
    char ctx[520] = "";
    if (at)
        context_of(text, at, ctx, sizeof(ctx));
    cr_expect(at == NULL, "marker %s appears in %s: %s", marker, what, ctx);
}

/* Waits for the query log to hold a record of a statement naming tag (a table): every
 * record queued before it is then written too. */
static void sync_query_log(PGconn *c, const char *tag)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT 1 FROM %s", tag); /* (fingerprints ignore aliases) */
    PQclear(PQexec(c, sql));
    if (qlog[0])
        cr_assert(wait_file_line(qlog, tag, 5000), "the query log never logged %s", tag);
}

/* No marker of markers (NULL-terminated) in the log, the query log, the console or metrics. */
static void expect_nowhere(const char *const *markers)
{
    usleep(200 * 1000);
    char *log = slurp(px.log), *q = qlog[0] ? slurp(qlog) : strdup("");
    char *adm = admin_dump();
    int status = 0;
    char *metrics = http_port ? http_get(http_port, "/metrics", &status) : NULL;
    for (const char *const *m = markers; *m; m++) {
        expect_absent_in("lakeproxy's log", log, *m);
        expect_absent_in("the query log", q, *m);
        expect_absent_in("the admin console", adm, *m);
        if (metrics)
            expect_absent_in("/metrics", metrics, *m);
    }
    free(log);
    free(q);
    free(adm);
    free(metrics);
}

/* ---- lakeproxy: app (transaction pooling), sapp (session pooling), query log, metrics ---- */

static void start_logged(void)
{
    static char yaml[16384];
    char extra[800];
    snprintf(qlog, sizeof(qlog), "%s/rt12-queries-%d.jsonl", env_need("LP_TEST_DIR"), getpid());
    unlink(qlog);
    http_port = free_port();
    snprintf(extra, sizeof(extra),
             "admin:\n  users: [alice]\n  http: 127.0.0.1:%d\nstats:\n  log: %s\n  slow_ms: 0\n",
             http_port, qlog);
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 10000, extra);
    char entry[600];
    snprintf(entry, sizeof(entry),
             "  sapp:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n"
             "    user: lp_server\n    password: server-secret\n    tls: disable\n"
             "    pool:\n      mode: session\n      size: 2\n",
             env_need("LP_PGPORT"));
    yaml_add_database(yaml, sizeof(yaml), entry);
    proxy_start_yaml(&px, port, yaml);
}

static void stop_proxy(void)
{
    proxy_stop(&px);
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static PGconn *client(const char *db, const char *extra)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", db, extra);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

static void run_all(PGconn *c, const char *const *sqls)
{
    for (const char *const *s = sqls; *s; s++)
        PQclear(PQexec(c, *s));
}

/* 1. Literal values in utility statements, odd spellings of constants, comments. */
static const char *const utility_sqls[] = {
    "SET search_path = rtmka01, public",
    "SET TIME ZONE 'rtmka02'",
    "COPY (SELECT 1) TO STDOUT (FORMAT csv, NULL rtmka03)",
    "COPY (SELECT 1) TO STDOUT WITH NULL AS 'rtmka04' CSV",
    "CREATE TEMP TABLE rt12_t1 (a int) WITH (fillfactor = 70, autovacuum_enabled = rtmka05)",
    "CREATE TEMP TABLE rt12_t2 (a text DEFAULT 'rtmka06')",
    "COMMENT ON TABLE rt12_t2 IS 'rtmka07'",
    "NOTIFY rt12chan, 'rtmka08'",
    "DO $$ BEGIN PERFORM 'rtmka09'; END $$",
    "DO LANGUAGE plpgsql $x$ BEGIN RAISE NOTICE 'rtmka10'; END $x$",
    "PREPARE rt12p AS SELECT 'rtmka11'::text",
    "EXECUTE rt12p",
    "SELECT U&'rtmka12\\0041' UESCAPE '\\'",
    "SELECT E'rtmka13\\n\\x41\\''",
    "SELECT $tag$rtmka14$tag$",
    "SELECT 1 /* rtmka15 /* nested */ still */ + 2 -- rtmka16\n",
    "SELECT 'rtmka17' || 'x'; SELECT 'rtmka18'; SET application_name TO DEFAULT",
    "SELECT 'a'\n 'rtmka19'",
    "SELECT xmlparse(content 'rtmka20')",
    "SELECT N'rtmka21', B'1011', X'ABCD', 98765432101234, 4.2e-7",
    "SELECT interval 'rtmka22'",
    "SELECT * FROM items WHERE name = ANY('{rtmka23}') LIMIT 1",
    "ALTER ROLE lp_nosuch SET search_path = rtmka24",
    "CREATE TEMP SEQUENCE rt12_s START 31415926",
    "ALTER SYSTEM SET work_mem = 'rtmka25'",
    "CREATE ROLE rt12_nobody PASSWORD 'rtmka26'",
    "ALTER USER lp_nosuch WITH ENCRYPTED PASSWORD 'rtmka27'",
    "CREATE TEMP TABLE rt12_t3 (a text CHECK (a <> 'rtmka28'))",
    "EXPLAIN (FORMAT json) SELECT * FROM items WHERE name = 'rtmka29'",
    "SELECT set_config('rt12.x', 'rtmka30', false)",
    "CREATE TEMP VIEW rt12_v AS SELECT 'rtmka31'::text AS a",
    "DECLARE rt12c CURSOR WITH HOLD FOR SELECT 'rtmka32'",
    "VALUES ('rtmka33'), ('x')",
    "CREATE FUNCTION pg_temp.rt12f() RETURNS text LANGUAGE sql AS 'SELECT ''rtmka34'''",
    "SELECT extract(rtmka35 from now())",
    "SELECT 'rtmka36'::int",
    "SELECT * FROM items WHERE name = 'rtmka37'; SELECT 'rtmka38'",
    "CREATE TEMP TABLE rt12_t4 (a int) PARTITION BY LIST (a)",
    "CREATE TEMP TABLE rt12_t5 PARTITION OF rt12_t4 FOR VALUES IN (27182818)",
    "LOAD 'rtmka39'",
    "SECURITY LABEL ON TABLE items IS 'rtmka40'",
    "CREATE TYPE pg_temp.rt12e AS ENUM ('rtmka41')",
    "SELECT 1 AS x WHERE 'rtmka42' LIKE 'rtmka43%' ESCAPE '!'",
    NULL};
static const char *const utility_markers[] = {
    "rtmka01",        "rtmka02", "rtmka03", "rtmka04", "rtmka05",  "rtmka06", "rtmka07",
    "rtmka08",        "rtmka09", "rtmka10", "rtmka11", "rtmka12",  "rtmka13", "rtmka14",
    "rtmka15",        "rtmka16", "rtmka17", "rtmka18", "rtmka19",  "rtmka20", "rtmka21",
    "98765432101234", "rtmka22", "rtmka23", "rtmka24", "31415926", "rtmka25", "rtmka26",
    "rtmka27",        "rtmka28", "rtmka29", "rtmka30", "rtmka31",  "rtmka32", "rtmka33",
    "rtmka34",        "rtmka36", "rtmka37", "rtmka38", "27182818", "rtmka39", "rtmka40",
    "rtmka41",        "rtmka42", "rtmka43", NULL};

/* Two tests of steps (given the database: "app", transaction pooling; "sapp", session),
 * each then asserting that no marker reached any output. */
#define IN_BOTH_MODES_NOWHERE(name, steps, markers)                                                \
    Test(redteam12, name##_txn, .init = start_logged, .fini = stop_proxy)                          \
    {                                                                                              \
        steps("app");                                                                              \
        expect_nowhere(markers);                                                                   \
    }                                                                                              \
    Test(redteam12, name##_session, .init = start_logged, .fini = stop_proxy)                      \
    {                                                                                              \
        steps("sapp");                                                                             \
        expect_nowhere(markers);                                                                   \
    }

static void utility_statements(const char *db)
{
    PGconn *c = client(db, NULL);
    run_all(c, utility_sqls);
    sync_query_log(c, strcmp(db, "app") == 0 ? "rt12_sync_a" : "rt12_sync_b");
    PQfinish(c);
}

IN_BOTH_MODES_NOWHERE(literals_of_utility_statements_reach_no_output, utility_statements,
                      utility_markers)

/* 2. Server errors and notices that quote a value; a client that leaves right after sending
 * (its statements drained behind it). */
static const char *const error_sqls[] = {
    "SELECT 'rtmkb01'::int",
    "SELECT 'rtmkb02'::date",
    "CREATE TEMP TABLE rt12_u (k text PRIMARY KEY, v int CHECK (v < 10))",
    "INSERT INTO rt12_u VALUES ('rtmkb03', 1)",
    "INSERT INTO rt12_u VALUES ('rtmkb03', 2)",
    "INSERT INTO rt12_u VALUES ('rtmkb04', 99)",
    "DO $$ BEGIN RAISE EXCEPTION 'rtmkb05' USING DETAIL = 'rtmkb06', HINT = 'rtmkb07'; END $$",
    "DO $$ BEGIN RAISE NOTICE 'rtmkb08'; RAISE WARNING 'rtmkb09'; END $$",
    "SELECT 1/0 FROM (VALUES ('rtmkb10')) v(x) WHERE x = 'rtmkb10'",
    "SELECT pg_catalog.set_config('rtmkb11', 'x', false)",
    "SELECT jsonb '{rtmkb12'",
    "SELECT to_number('rtmkb13', '999')",
    "SELECT repeat('rtmkb14', 3)::numeric",
    "BEGIN",
    "SELECT 'rtmkb15'::int",
    "SELECT 'rtmkb16'",
    "ROLLBACK",
    NULL};
static const char *const error_markers[] = {
    "rtmkb01", "rtmkb02", "rtmkb03", "rtmkb04", "rtmkb05", "rtmkb06", "rtmkb07",
    "rtmkb08", "rtmkb09", "rtmkb10", "rtmkb11", "rtmkb12", "rtmkb13", "rtmkb14",
    "rtmkb15", "rtmkb16", "rtmkb17", "rtmkb18", "rtmkb19", "rtmkb20", NULL};

static void errors_then_leave(const char *db)
{
    PGconn *c = client(db, NULL);
    run_all(c, error_sqls);
    PGresult *r = PQexec(c, "COPY rt12_u FROM STDIN");
    if (PQresultStatus(r) == PGRES_COPY_IN) {
        PQputCopyData(c, "rtmkb17\trtmkb18\n", 16);
        PQputCopyEnd(c, NULL);
        PGresult *x;
        while ((x = PQgetResult(c)))
            PQclear(x);
    }
    PQclear(r);
    sync_query_log(c, "rt12_sync_c");
    PQfinish(c);
    /* a client that sends failing statements and leaves at once */
    int fd = raw_session(px.port, "carol", db);
    cr_assert(fd >= 0);
    raw_query(fd, "SELECT 'rtmkb19'::int");
    raw_query(fd, "SELECT pg_sleep(0.2), 'rtmkb20'::int");
    close(fd);
    usleep(600 * 1000);
}

IN_BOTH_MODES_NOWHERE(server_errors_quoting_values_reach_no_output, errors_then_leave,
                      error_markers)

/* 3. Startup values the server or lakeproxy refuses, in both modes. */
Test(redteam12, refused_startup_values_reach_no_output, .init = start_logged, .fini = stop_proxy)
{
    static const char *const opts[] = {"options='-c DateStyle=rtmkc01'",
                                       "options='-c lock_timeout=rtmkc02'",
                                       "options='-c rtmkc03.x=1'",
                                       "options='-c work_mem=rtmkc04'",
                                       "options='-c statement_timeout=rtmkc05'",
                                       "options='-c client_encoding=rtmkc06'",
                                       "options='-c IntervalStyle=rtmkc07'",
                                       "options='-c TimeZone=rtmkc08/x/y'",
                                       "options='-c search_path=rtmkc09'",
                                       NULL};
    static const char *const markers[] = {"rtmkc01", "rtmkc02", "rtmkc03", "rtmkc04", "rtmkc05",
                                          "rtmkc06", "rtmkc07", "rtmkc08", NULL};
    const char *dbs[] = {"app", "sapp"};
    for (int d = 0; d < 2; d++)
        for (const char *const *o = opts; *o; o++) {
            PGconn *c = proxy_connect(&px, "alice", "alice-secret", dbs[d], *o);
            if (PQstatus(c) == CONNECTION_OK)
                PQclear(PQexec(c, "SELECT 1"));
            PQfinish(c);
        }
    /* a raw startup with an unknown parameter whose name and value are markers */
    int fd = raw_connect(px.port);
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    buf_put_u32(&b, 0);
    buf_put_u32(&b, 196608);
    const char *kv[] = {"user", "carol", "database", "app", "rtmkc10", "rtmkc11", NULL};
    for (const char **p = kv; *p; p++)
        buf_put_str(&b, *p);
    buf_put_bytes(&b, "", 1);
    uint32_t len = htonl((uint32_t)b.len);
    memcpy(b.data, &len, 4);
    raw_send(fd, &b);
    buf_free(&b);
    unsigned char msg[2048];
    size_t n;
    raw_read_msg(fd, msg, sizeof(msg), &n, 3000);
    close(fd);
    static const char *const more[] = {"rtmkc10", "rtmkc11", NULL};
    expect_nowhere(markers);
    expect_nowhere(more);
}

/* 4. Text that does not parse, huge texts, scripts of many statements, long identifiers. */
Test(redteam12, unparsed_and_huge_texts_reach_no_output, .init = start_logged, .fini = stop_proxy)
{
    PGconn *c = client("app", NULL);
    static const char *const sqls[] = {"SELEC 'rtmkd01'",
                                       "SELECT 'rtmkd02",
                                       "SELECT 1 FROM items WHERE name = 'rtmkd03' AND",
                                       "SELECT /* rtmkd04 unterminated",
                                       "SELECT $a$rtmkd05$b$",
                                       "SELECT 'rtmkd06' ) (",
                                       NULL};
    run_all(c, sqls);
    /* a 1 MiB literal */
    size_t big = 1 << 20;
    char *sql = malloc(big + 64);
    strcpy(sql, "SELECT length('rtmkd07");
    size_t at = strlen(sql);
    memset(sql + at, 'x', big);
    strcpy(sql + at + big, "')");
    PQclear(PQexec(c, sql));
    /* a script of 100 statements */
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < 100; i++) {
        char one[64];
        snprintf(one, sizeof(one), "SELECT 'rtmkd08_%d';", i);
        buf_put_bytes(&b, one, strlen(one));
    }
    buf_put_bytes(&b, "SELECT 'rtmkd09' WHERE false", strlen("SELECT 'rtmkd09' WHERE false") + 1);
    PQclear(PQexec(c, (const char *)b.data));
    buf_free(&b);
    /* a literal past the parser's depth guard */
    buf_init(&b);
    for (int i = 0; i < 3000; i++)
        buf_put_bytes(&b, "(", 1);
    buf_put_bytes(&b, "'rtmkd10'", 9);
    for (int i = 0; i < 3000; i++)
        buf_put_bytes(&b, ")", 1);
    buf_put_bytes(&b, "", 1);
    snprintf(sql, big, "SELECT %s", (const char *)b.data);
    PQclear(PQexec(c, sql));
    buf_free(&b);
    /* a very long quoted identifier beside a literal */
    char ident[2000];
    memset(ident, 'i', sizeof(ident) - 1);
    ident[sizeof(ident) - 1] = '\0';
    snprintf(sql, big, "SELECT 'rtmkd11' AS \"%s\"", ident);
    PQclear(PQexec(c, sql));
    free(sql);
    sync_query_log(c, "rt12_sync_d");
    PQfinish(c);
    static const char *const markers[] = {"rtmkd01", "rtmkd02", "rtmkd03", "rtmkd04",
                                          "rtmkd05", "rtmkd06", "rtmkd07", "rtmkd08",
                                          "rtmkd09", "rtmkd10", "rtmkd11", NULL};
    expect_nowhere(markers);
}

/* A Bind of stmt to portal with one parameter, value, in text or binary format. */
static void put_bind_one(struct buf *b, const char *portal, const char *stmt, bool binary,
                         const char *value)
{
    buf_msg_start(b, 'B');
    buf_put_str(b, portal);
    buf_put_str(b, stmt);
    buf_put_u16(b, binary ? 1 : 0);
    if (binary)
        buf_put_u16(b, 1);
    buf_put_u16(b, 1);
    buf_put_u32(b, (uint32_t)strlen(value));
    buf_put_bytes(b, value, strlen(value));
    buf_put_u16(b, 0);
    buf_msg_finish(b);
}

/* 5. The extended protocol: parameter values (good and refused by the type's input), named
 * statements and portals, a failing Bind, a Describe. */
static void extended_protocol(const char *db)
{
    int fd = raw_session(px.port, "carol", db);
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    /* Parse "rt12s" of SELECT $1::int + 0, then Bind with the value rtmke01 (refused) */
    buf_msg_start(&b, 'P');
    buf_put_str(&b, "rt12s");
    buf_put_str(&b, "SELECT $1::int + 0, 'rtmke02'");
    buf_put_u16(&b, 0);
    buf_msg_finish(&b);
    put_bind_one(&b, "rt12portal", "rt12s", false, "rtmke01");
    raw_put_execute(&b, "rt12portal");
    raw_put_empty(&b, 'S');
    /* a good Bind with a text parameter */
    raw_put_parse(&b, "", "SELECT length($1::text) WHERE $1 <> 'rtmke03'");
    put_bind_one(&b, "", "", false, "rtmke04");
    buf_msg_start(&b, 'D');
    buf_put_bytes(&b, "P", 1);
    buf_put_str(&b, "");
    buf_msg_finish(&b);
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    /* binary parameter of a wrong length for int4 */
    raw_put_parse(&b, "", "SELECT $1::int4");
    put_bind_one(&b, "", "", true, "rtmke05");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    /* Execute of an unknown portal and Describe of an unknown statement, named as markers */
    raw_put_execute(&b, "rtmke06");
    raw_put_empty(&b, 'S');
    buf_msg_start(&b, 'D');
    buf_put_bytes(&b, "S", 1);
    buf_put_str(&b, "rtmke07");
    buf_msg_finish(&b);
    raw_put_empty(&b, 'S');
    raw_put_parse(&b, "", "SELEC 'rtmke08'");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    unsigned char msg[8192];
    size_t n;
    int zs = 0, type;
    while (zs < 6 && (type = raw_read_msg(fd, msg, sizeof(msg), &n, 5000)) > 0)
        zs += type == 'Z';
    raw_query(fd, "SELECT 1 FROM rt12_sync_e");
    while ((type = raw_read_msg(fd, msg, sizeof(msg), &n, 5000)) > 0 && type != 'Z')
        ;
    close(fd);
    if (qlog[0])
        cr_assert(wait_file_line(qlog, "rt12_sync_e", 5000), "the query log logged nothing");
}

static const char *const ext_markers[] = {"rtmke01", "rtmke02", "rtmke03", "rtmke04",
                                          "rtmke05", "rtmke08", NULL};

IN_BOTH_MODES_NOWHERE(extended_protocol_values_reach_no_output, extended_protocol, ext_markers)

/* 6. A session that reads text otherwise than the parser (standard_conforming_strings off,
 * SJIS), from startup or by SET, pipelined behind the SET too. */
static void text_read_otherwise(const char *db)
{
    PGconn *c = client(db, "options='-c standard_conforming_strings=off'");
    PQclear(PQexec(c, "SELECT 'a\\' , rtmkf01 --'"));
    PQclear(PQexec(c, "SELECT 'a\\' , 'x' AS rtmkf02, '--'"));
    PQfinish(c);
    c = client(db, NULL);
    PQclear(PQexec(c, "SET standard_conforming_strings = off"));
    PQclear(PQexec(c, "SELECT 'a\\' , rtmkf03 --'"));
    PQclear(PQexec(c, "RESET standard_conforming_strings"));
    /* pipelined behind the SET, in one round trip */
    PQsendQuery(c, "SET standard_conforming_strings = off");
    PQsendQuery(c, "SELECT 'a\\' , rtmkf04 --'");
    PGresult *r;
    for (int i = 0; i < 2; i++)
        while ((r = PQgetResult(c)))
            PQclear(r);
    PQclear(PQexec(c, "SET standard_conforming_strings = on"));
    sync_query_log(c, "rt12_sync_f");
    PQfinish(c);
}

static const char *const scs_markers[] = {"rtmkf01", "rtmkf02", "rtmkf03", "rtmkf04", NULL};

IN_BOTH_MODES_NOWHERE(text_read_otherwise_reaches_no_output, text_read_otherwise, scs_markers)

/* 7. Malformed protocol messages that carry markers, a cancel request, a password message
 * where none is asked for, an unknown SASL mechanism. */
static void send_raw_msg(int fd, char type, const char *body, size_t len)
{
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, (uint8_t)type);
    buf_put_bytes(&b, body, len);
    buf_msg_finish(&b);
    raw_send(fd, &b);
    buf_free(&b);
}

static void drain(int fd)
{
    unsigned char msg[4096];
    size_t n;
    while (raw_read_msg(fd, msg, sizeof(msg), &n, 1500) > 0)
        ;
}

Test(redteam12, malformed_messages_reach_no_output, .init = start_logged, .fini = stop_proxy)
{
    const char *dbs[] = {"app", "sapp"};
    for (int d = 0; d < 2; d++) {
        int fd = raw_session(px.port, "carol", dbs[d]);
        cr_assert(fd >= 0);
        send_raw_msg(fd, 'Q', "SELECT 'rtmkg01'", 16); /* no terminator */
        drain(fd);
        close(fd);
        fd = raw_session(px.port, "carol", dbs[d]);
        send_raw_msg(fd, 'j', "rtmkg02", 7); /* an unknown type */
        drain(fd);
        close(fd);
        fd = raw_session(px.port, "carol", dbs[d]);
        send_raw_msg(fd, 'P', "rtmkg03\0SELECT 'rtmkg04'", 24); /* cut short */
        drain(fd);
        close(fd);
        fd = raw_session(px.port, "carol", dbs[d]);
        send_raw_msg(fd, 'p', "rtmkg05", 8); /* a password nobody asked for */
        drain(fd);
        close(fd);
        fd = raw_session(px.port, "carol", dbs[d]);
        send_raw_msg(fd, 'F', "rtmkg06rtmkg06rtmkg06", 21); /* a broken FunctionCall */
        drain(fd);
        close(fd);
    }
    /* SCRAM with an unknown mechanism and a garbage client-first-message */
    for (int i = 0; i < 2; i++) {
        int fd = raw_connect(px.port);
        struct buf b;
        buf_init(&b);
        buf_put_u32(&b, 0);
        buf_put_u32(&b, 196608);
        buf_put_str(&b, "user");
        buf_put_str(&b, "bob");
        buf_put_str(&b, "database");
        buf_put_str(&b, "app");
        buf_put_bytes(&b, "", 1);
        uint32_t len = htonl((uint32_t)b.len);
        memcpy(b.data, &len, 4);
        raw_send(fd, &b);
        buf_free(&b);
        unsigned char msg[2048];
        size_t n;
        raw_read_msg(fd, msg, sizeof(msg), &n, 3000);
        buf_init(&b);
        buf_msg_start(&b, 'p');
        buf_put_str(&b, i == 0 ? "rtmkg07-MECH" : "SCRAM-SHA-256");
        const char *first = i == 0 ? "rtmkg08" : "n,,n=bob,r=rtmkg09nonce,rtmkg10=x";
        buf_put_u32(&b, (uint32_t)strlen(first));
        buf_put_bytes(&b, first, strlen(first));
        buf_msg_finish(&b);
        raw_send(fd, &b);
        buf_free(&b);
        drain(fd);
        close(fd);
    }
    /* a password login with a wrong password that is a marker, to every kind of user */
    const char *users[] = {"alice", "bob", "nosuchuser"};
    for (int i = 0; i < 3; i++) {
        PGconn *c = proxy_connect(&px, users[i], "rtmkg11", "app", NULL);
        PQfinish(c);
    }
    /* a cancel request for a made-up key */
    int fd = raw_connect(px.port);
    struct buf b;
    buf_init(&b);
    buf_put_u32(&b, 16);
    buf_put_u32(&b, 80877102);
    buf_put_u32(&b, 0x7274ABCDu);
    buf_put_u32(&b, 0x31415926u);
    raw_send(fd, &b);
    buf_free(&b);
    drain(fd);
    close(fd);
    static const char *const markers[] = {"rtmkg01", "rtmkg02", "rtmkg03", "rtmkg04",
                                          "rtmkg05", "rtmkg06", "rtmkg07", "rtmkg08",
                                          "rtmkg09", "rtmkg10", "rtmkg11", NULL};
    expect_nowhere(markers);
}

/* ---- 8. Tokens and client secrets a workspace echoes in its answers ---- */

/* A workspace that answers every request as its mode file says, echoing what it was sent
 * (the bearer token, the HTTP Basic client id and secret, the body) into its answers, as a
 * misbehaving or hostile endpoint may. Modes: "me401" (SCIM /Me: 401 quoting the bearer
 * token), "oidc400" (/oidc/v1/token: 400 quoting the client secret), "db403" (OAuth answers a
 * workspace token, the database credential endpoint 403 quoting it), "badjson" (200 with a
 * text that is no JSON, quoting all), "oidc_token_bad" (/oidc/v1/token answers a JSON whose
 * access_token is the echoed secret with a bad token_type). */
static const char echo_ws_py[] =
    "import base64, json, os, ssl, sys, threading\n"
    "from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n"
    "state, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]\n"
    "class H(BaseHTTPRequestHandler):\n"
    "    def log_message(self, *a): pass\n"
    "    def answer(self, code, body, ctype='application/json'):\n"
    "        b = body.encode()\n"
    "        self.send_response(code)\n"
    "        self.send_header('Content-Type', ctype)\n"
    "        self.send_header('Content-Length', str(len(b)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(b)\n"
    "    def handle_any(self):\n"
    "        n = int(self.headers.get('Content-Length') or 0)\n"
    "        body = self.rfile.read(n).decode('latin-1') if n else ''\n"
    "        auth = self.headers.get('Authorization') or ''\n"
    "        said = auth\n"
    "        if auth.startswith('Basic '):\n"
    "            said = base64.b64decode(auth[6:]).decode('latin-1')\n"
    "        elif auth.startswith('Bearer '):\n"
    "            said = auth[7:]\n"
    "        try:\n"
    "            mode = open(os.path.join(state, 'mode')).read().strip()\n"
    "        except OSError:\n"
    "            mode = 'me401'\n"
    "        with open(os.path.join(state, 'seen'), 'a') as f:\n"
    "            f.write(self.path + '\\n')\n"
    "        p = self.path\n"
    "        if mode == 'badjson':\n"
    "            return self.answer(200, '<html>you sent ' + said + ' ' + body + '</html>', "
    "'text/html')\n"
    "        if mode == 'badjson401':\n"
    "            return self.answer(401, 'denied: ' + said + ' ' + body, 'text/plain')\n"
    "        if p.startswith('/oidc/v1/token'):\n"
    "            if mode == 'oidc400':\n"
    "                return self.answer(400, json.dumps({'error': 'invalid_client', "
    "'error_description': 'client authentication failed for ' + said}))\n"
    "            if mode == 'oidc_token_bad':\n"
    "                return self.answer(200, json.dumps({'access_token': said, 'token_type': "
    "'weird ' + said, 'expires_in': 3600}))\n"
    "            return self.answer(200, json.dumps({'access_token': 'wsTOKENrtmkh03wsTOKEN', "
    "'token_type': 'Bearer', 'expires_in': 3600}))\n"
    "        if p.startswith('/api/2.0/database/credentials'):\n"
    "            return self.answer(403, json.dumps({'error_code': 'PERMISSION_DENIED', 'message': "
    "'token ' + said + ' may not read ' + body}))\n"
    "        if p.startswith('/api/2.0/preview/scim/v2/Me'):\n"
    "            return self.answer(401, json.dumps({'message': 'Invalid access token: ' + "
    "said}))\n"
    "        return self.answer(404, json.dumps({'message': 'no such path ' + said}))\n"
    "    do_GET = handle_any\n"
    "    do_POST = handle_any\n"
    "srv = ThreadingHTTPServer(('127.0.0.1', 0), H)\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "ctx.load_cert_chain(cert, key)\n"
    "srv.socket = ctx.wrap_socket(srv.socket, server_side=True)\n"
    "tmp = os.path.join(state, 'port.tmp')\n"
    "open(tmp, 'w').write(str(srv.server_address[1]))\n"
    "os.rename(tmp, os.path.join(state, 'port'))\n"
    "srv.serve_forever()\n";

static pid_t ws_pid;
static char ws_state[400];
static int ws_port;

static void ws_mode(const char *mode)
{
    char path[450];
    snprintf(path, sizeof(path), "%s/mode", ws_state);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(mode, f);
    fclose(f);
}

static void ws_start(const char *mode)
{
    snprintf(ws_state, sizeof(ws_state), "%s/rt12ws-XXXXXX", env_need("LP_TEST_DIR"));
    cr_assert(mkdtemp(ws_state));
    ws_mode(mode);
    char script[450], cert[400], key[400], portf[450], log[450];
    snprintf(script, sizeof(script), "%s/echo_ws.py", ws_state);
    FILE *f = fopen(script, "w");
    cr_assert(f);
    fputs(echo_ws_py, f);
    fclose(f);
    snprintf(cert, sizeof(cert), "%s/server.crt", env_need("LP_CERTS"));
    snprintf(key, sizeof(key), "%s/server.key", env_need("LP_CERTS"));
    snprintf(portf, sizeof(portf), "%s/port", ws_state);
    snprintf(log, sizeof(log), "%s/ws.log", ws_state);
    ws_pid = fork();
    cr_assert(ws_pid >= 0);
    if (ws_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout))
            _exit(126);
        execl("/usr/bin/python3", "python3", script, ws_state, cert, key, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200 && access(portf, F_OK) != 0; i++)
        usleep(50000);
    char *p = slurp(portf);
    ws_port = atoi(p);
    free(p);
    cr_assert_gt(ws_port, 0, "the echoing workspace did not start; see %s", log);
}

static void stop_ws_and_proxy(void)
{
    if (ws_pid > 0) {
        kill(ws_pid, SIGTERM);
        waitpid(ws_pid, NULL, 0);
        ws_pid = 0;
    }
    proxy_stop(&px);
}

#define CLIENT_SECRET "clientSECRETrtmkh01clientSECRET"

/* lakeproxy with database "lake" (databricks credentials from the echoing workspace; clients
 * log in with their own token when client_auth is set), console user carol, metrics on. */
static void start_with_ws(bool token_clients)
{
    static char yaml[8192];
    setenv("LP_RT12_CLIENT_SECRET", CLIENT_SECRET, 1);
    http_port = free_port();
    qlog[0] = '\0';
    snprintf(admin_user, sizeof(admin_user), "carol");
    snprintf(admin_pw, sizeof(admin_pw), "unused");
    int port = free_port();
    const char *certs = env_need("LP_CERTS");
    snprintf(yaml, sizeof(yaml),
             "listen: {host: 127.0.0.1, port: %d, tls: {cert: %s/server.crt, key: %s/server.key}}\n"
             "log: {level: debug}\n"
             "admin: {users: [carol], http: '127.0.0.1:%d'}\n"
             "databases:\n"
             "  lake:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n"
             "    user: lp_rot18\n    tls: disable\n%s"
             "    pool: {mode: transaction, size: 2, max_wait_ms: 3000}\n"
             "    credentials:\n      provider: databricks\n"
             "      workspace: https://127.0.0.1:%d\n"
             "      client_id: rtmkh02-client\n      client_secret_env: LP_RT12_CLIENT_SECRET\n"
             "      ca_file: %s/ca.crt\n      timeout_ms: 2000\n      instance: lp-instance\n"
             "users:\n  carol: {auth: trust}\n",
             port, certs, certs, http_port, env_need("LP_PGPORT"),
             token_clients ? "    client_auth: databricks_token\n" : "", ws_port, certs);
    proxy_start_yaml(&px, port, yaml);
}

/* Waits until the log has n lines holding needle (at most ms). */
static bool wait_log_count(const char *needle, int n, int ms)
{
    for (int i = 0; i < ms / 50; i++) {
        if (file_count_lines(px.log, needle) >= n)
            return true;
        usleep(50000);
    }
    return false;
}

Test(redteam12, a_client_secret_echoed_by_the_oauth_endpoint_is_never_logged,
     .fini = stop_ws_and_proxy)
{
    ws_start("oidc400");
    start_with_ws(false);
    cr_assert(wait_log_count("refresh failed", 1, 8000), "no refresh failed; see %s", px.log);
    static const char *const markers[] = {"rtmkh01", NULL};
    expect_nowhere(markers);
}

Test(redteam12, a_workspace_token_echoed_by_the_credential_endpoint_is_never_logged,
     .fini = stop_ws_and_proxy)
{
    ws_start("db403");
    start_with_ws(false);
    cr_assert(wait_log_count("refresh failed", 1, 8000), "no refresh failed; see %s", px.log);
    static const char *const markers[] = {"rtmkh03", "rtmkh01", NULL};
    expect_nowhere(markers);
}

Test(redteam12, secrets_echoed_in_answers_that_are_no_json_are_never_logged,
     .fini = stop_ws_and_proxy)
{
    ws_start("badjson");
    start_with_ws(false);
    cr_assert(wait_log_count("refresh failed", 1, 8000), "no refresh failed; see %s", px.log);
    ws_mode("badjson401");
    cr_assert(wait_log_count("refresh failed", 2, 8000), "no second refresh; see %s", px.log);
    ws_mode("oidc_token_bad");
    cr_assert(wait_log_count("refresh failed", 3, 8000), "no third refresh; see %s", px.log);
    static const char *const markers[] = {"rtmkh01", NULL};
    expect_nowhere(markers);
}

Test(redteam12, a_client_token_echoed_by_scim_me_is_never_logged, .fini = stop_ws_and_proxy)
{
    ws_start("me401");
    start_with_ws(true);
    const char *tok = "clientTOKENrtmkh04clientTOKEN";
    PGconn *c = proxy_connect(&px, "ana@example.com", tok, "lake", "sslmode=require");
    cr_expect(PQstatus(c) != CONNECTION_OK);
    PQfinish(c);
    ws_mode("badjson401");
    const char *tok2 = "clientTOKENrtmkh05clientTOKEN";
    c = proxy_connect(&px, "ana@example.com", tok2, "lake", "sslmode=require");
    PQfinish(c);
    static const char *const markers[] = {"rtmkh04", "rtmkh05", NULL};
    expect_nowhere(markers);
}

/* ---- 9. Refusals of the row-level-security guard that quote a statement's constants ---- */

static void start_rls(void)
{
    static char yaml[16384];
    char extra[1200];
    snprintf(qlog, sizeof(qlog), "%s/rt12-rls-queries-%d.jsonl", env_need("LP_TEST_DIR"), getpid());
    unlink(qlog);
    http_port = free_port();
    snprintf(extra, sizeof(extra),
             "  t1: {password: pw, attributes: {tenant_id: \"1\"}}\n"
             "admin:\n  users: [alice]\n  http: 127.0.0.1:%d\nstats:\n  log: %s\n"
             "rls:\n  prefix: app\n  databases: [app]\n  switch_role: true\n"
             "  default_role: lp_tenant\n"
             "  attributes: {tenant_id: attribute, user: user}\n",
             http_port, qlog);
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 1, 20000, extra);
    proxy_start_yaml(&px, port, yaml);
}

Test(redteam12, rls_guard_refusals_reach_no_output, .init = start_rls, .fini = stop_proxy)
{
    PGconn *c = proxy_connect(&px, "t1", "pw", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PQsetNoticeProcessor(c, quiet, NULL);
    static const char *const sqls[] = {
        "SELECT set_config('app.tenant_id', 'rtmki01', false)",
        "SELECT set_config('rtmki02.x', 'v', false)",
        "SELECT set_config('standard_conforming_strings', 'rtmki03', false)",
        "DO $$ BEGIN PERFORM 'rtmki04'; END $$",
        "SELEC 'rtmki05'",
        "SELECT query_to_xml('select ''rtmki06''', true, true, '')",
        "SET app.tenant_id = 'rtmki07'",
        "SELECT set_config(E'app\\x2etenant_id', 'rtmki08', false)",
        "SELECT set_config('rtmki09\"x', 'v', false)",
        "SELECT set_config('app.rtmki10', 'v', true)",
        "SELECT * FROM rls_docs WHERE body = 'rtmki11' AND pg_cancel_backend(1) AND body = "
        "'rtmki12'",
        "PREPARE lp_rtmki13 AS SELECT 'rtmki14'",
        "SELECT pg_catalog.set_config('rtmki15', 'rtmki16', false) FROM pg_settings",
        "ALTER ROLE lp_tenant SET app.tenant_id = 'rtmki17'",
        "CREATE FUNCTION pg_temp.f() RETURNS text LANGUAGE sql AS 'SELECT ''rtmki18'''",
        NULL};
    run_all(c, sqls);
    sync_query_log(c, "rt12_sync_i");
    PQfinish(c);
    static const char *const markers[] = {"rtmki01", "rtmki02", "rtmki03", "rtmki04", "rtmki05",
                                          "rtmki06", "rtmki07", "rtmki08", "rtmki09", "rtmki11",
                                          "rtmki12", "rtmki14", "rtmki15", "rtmki16", "rtmki17",
                                          "rtmki18", NULL};
    expect_nowhere(markers);
}

/* ---- 10. A token command that fails after writing its token (or a secret) to stderr ---- */
Test(redteam12, a_secret_a_failing_token_command_wrote_to_stderr_is_never_logged,
     .fini = stop_proxy)
{
    static char yaml[8192];
    int port = free_port();
    http_port = free_port();
    qlog[0] = '\0';
    snprintf(admin_user, sizeof(admin_user), "carol");
    snprintf(admin_pw, sizeof(admin_pw), "unused");
    const char *certs = env_need("LP_CERTS");
    /* the secret is in a file the command reads (the command line itself is configuration) */
    char secret_file[400];
    snprintf(secret_file, sizeof(secret_file), "%s/rt12-secret-%d", env_need("LP_TEST_DIR"), port);
    FILE *f = fopen(secret_file, "w");
    cr_assert(f);
    fputs("token tokSECRETrtmkj01 rejected\n", f);
    fclose(f);
    chmod(secret_file, 0644);
    snprintf(yaml, sizeof(yaml),
             "listen: {host: 127.0.0.1, port: %d, tls: {cert: %s/server.crt, key: %s/server.key}}\n"
             "log: {level: debug}\n"
             "admin: {users: [carol], http: '127.0.0.1:%d'}\n"
             "databases:\n"
             "  lake:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n"
             "    user: lp_rot18\n    tls: disable\n"
             "    pool: {mode: transaction, size: 2, max_wait_ms: 3000}\n"
             "    credentials:\n      provider: command\n"
             "      shell: \"cat %s >&2; exit 3\"\n"
             "      timeout_ms: 2000\n"
             "users:\n  carol: {auth: trust}\n",
             port, certs, certs, http_port, env_need("LP_PGPORT"), secret_file);
    proxy_start_yaml(&px, port, yaml);
    cr_assert(wait_log_count("refresh failed", 1, 8000), "no refresh failed; see %s", px.log);
    static const char *const markers[] = {"rtmkj01", NULL};
    expect_nowhere(markers);
}
