/* test_redteam8.c: red-team attacks on RESET returning a client to its startup settings
 * (commit bfdde28). Each runs the same steps against PostgreSQL directly and through a
 * lakeproxy (session or transaction pooling), and expects PostgreSQL's answers from both. The
 * attacks that found a documented limit (a read-back cut short by the client's own
 * lock_timeout) are on the branch redteam8-open. */
#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "sidebyside.h"

TestSuite(redteam8, .timeout = 180);

#define STARTUP_OPTS "options='-c DateStyle=ISO,DMY -c TimeZone=Asia/Tokyo'"

#define EXPECT_VALUE(t, c, sql, want, ...)                                                         \
    do {                                                                                           \
        char why_[256];                                                                            \
        snprintf(why_, sizeof(why_), __VA_ARGS__);                                                 \
        char *v_ = value_of((t), (c), (sql));                                                      \
        cr_expect_str_eq(v_, (want), "%s: %s gave %s, not %s: %s", (t)->name, (sql), v_, (want),   \
                         why_);                                                                    \
        free(v_);                                                                                  \
    } while (0)

/* The first notification c receives within 3 s (PQfreemem it), or NULL. */
static PGnotify *notification_within_3s(PGconn *c)
{
    PGnotify *note = NULL;
    for (int i = 0; i < 100 && !note; i++) {
        PQconsumeInput(c);
        note = PQnotifies(c);
        if (!note)
            usleep(30000);
    }
    return note;
}

/* Prepares sql as name on c (PQprepare), or fails the test. */
static void prepare(const struct target *t, PGconn *c, const char *name, const char *sql)
{
    PGresult *r = PQprepare(c, name, sql, 0, NULL);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", t->name, PQerrorMessage(c));
    PQclear(r);
}

static const char date_sql[] = "SELECT '01/02/2024'::date::text";

/* A fresh table (one date column) open to all, then COPY sql of one row "01/02/2024" into
 * it on c; its value read back, as c's DateStyle reads the row, is expected to be want. */
static void copy_one_date(const struct target *t, PGconn *c, const char *table, const char *sql,
                          const char *want)
{
    char q[256];
    PGconn *adm = pg_admin("lp_test");
    snprintf(q, sizeof(q), "CREATE TABLE IF NOT EXISTS %s (d date)", table);
    run_sql(t, adm, q);
    snprintf(q, sizeof(q), "GRANT ALL ON %s TO PUBLIC", table);
    run_sql(t, adm, q);
    snprintf(q, sizeof(q), "TRUNCATE %s", table);
    run_sql(t, adm, q);
    PQfinish(adm);
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_IN, "%s: %s", t->name, PQerrorMessage(c));
    PQclear(r);
    cr_assert_eq(PQputCopyData(c, "01/02/2024\n", 11), 1);
    cr_assert_eq(PQputCopyEnd(c, NULL), 1);
    r = PQgetResult(c);
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: COPY: %s", t->name, PQerrorMessage(c));
    PQclear(r);
    while ((r = PQgetResult(c)))
        PQclear(r);
    snprintf(q, sizeof(q), "SELECT d::text FROM %s", table);
    EXPECT_VALUE(t, c, q, want, "the COPY's row");
}

/* ---- 1. session pooling: a RESET must not cost the client its server session ---- */

static void reset_keeps_session(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    run_sql(t, c, "CREATE TEMP TABLE rt8_tmp (x int)");
    run_sql(t, c, "INSERT INTO rt8_tmp VALUES (42)");
    run_sql(t, c, "PREPARE rt8_named AS SELECT 7");
    char *pid = value_of(t, c, "SELECT pg_backend_pid()::text");
    run_sql(t, c, "SET DateStyle = 'German'");
    run_sql(t, c, "RESET DateStyle");
    EXPECT_VALUE(t, c, "SHOW DateStyle", "ISO, DMY", "after RESET");
    EXPECT_VALUE(t, c, "SELECT pg_backend_pid()::text", pid,
                 "the session's backend changed under the client");
    EXPECT_VALUE(t, c, "SELECT x::text FROM rt8_tmp", "42", "the temp table went");
    EXPECT_VALUE(t, c, "EXECUTE rt8_named", "7", "the prepared statement went");
    free(pid);
    PQfinish(c);
}

Test(redteam8, session_reset_keeps_the_clients_server_session)
{
    on_postgresql_and_through("session", 2, reset_keeps_session);
}

/* RESET ALL / DISCARD ALL / SET TO DEFAULT: the same check, with a session variable. */
static void reset_all_keeps_session(const struct target *t)
{
    static const char *const resets[] = {"RESET ALL", "SET TIME ZONE DEFAULT",
                                         "SET DateStyle TO DEFAULT"};
    for (size_t i = 0; i < sizeof(resets) / sizeof(resets[0]); i++) {
        PGconn *c = open_with(t, STARTUP_OPTS);
        run_sql(t, c, "SELECT pg_advisory_lock(880088)");
        char *pid = value_of(t, c, "SELECT pg_backend_pid()::text");
        run_sql(t, c, "SET DateStyle = 'German'");
        run_sql(t, c, "SET TimeZone = 'UTC'");
        run_sql(t, c, resets[i]);
        EXPECT_VALUE(t, c, "SELECT pg_backend_pid()::text", pid, "after %s", resets[i]);
        EXPECT_VALUE(t, c,
                     "SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND "
                     "objid = 880088 AND pid = pg_backend_pid()",
                     "1", "the advisory lock went after %s", resets[i]);
        free(pid);
        PQfinish(c);
    }
}

Test(redteam8, session_reset_all_and_to_default_keep_the_session)
{
    on_postgresql_and_through("session", 2, reset_all_keeps_session);
}

/* ---- 2. pipelined: RESET, then (a separate, later transaction) a query ---- */

static char *pipeline_value(const struct target *t, PGconn *c)
{
    char *v = NULL;
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        cr_expect(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: pipeline: %s", t->name,
                  PQresultErrorMessage(r));
        if (st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !v)
            v = strdup(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    return v;
}

static void expect_sync(const struct target *t, PGconn *c)
{
    PGresult *r = PQgetResult(c);
    cr_expect_eq(PQresultStatus(r), PGRES_PIPELINE_SYNC, "%s: expected a sync, got %s", t->name,
                 PQresStatus(PQresultStatus(r)));
    PQclear(r);
}

/* The next pipelined query's first value is want, then its Sync comes (why: what it shows). */
static void expect_pipelined(const struct target *t, PGconn *c, const char *want, const char *why)
{
    char *v = pipeline_value(t, c);
    cr_expect_str_eq(v ? v : "(none)", want, "%s: %s", t->name, why);
    free(v);
    expect_sync(t, c);
}

/* A query pipelined behind a RESET, in a transaction of its own, reads under the startup
 * value the RESET returned to (lakeproxy holds it at the reset barrier until the setting is
 * read back and set again). */
static void pipelined_reset_then_query(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    run_sql(t, c, "SET DateStyle = 'German'");
    cr_assert(PQenterPipelineMode(c));
    send_pipelined(c, "RESET DateStyle");
    cr_assert(PQpipelineSync(c)); /* its transaction ends here */
    send_pipelined(c, date_sql);
    cr_assert(PQpipelineSync(c));
    free(pipeline_value(t, c));
    expect_sync(t, c);
    expect_pipelined(t, c, "2024-02-01",
                     "a query in a transaction after the RESET's, pipelined, reads the date under "
                     "the startup DateStyle DMY");
    cr_assert(PQexitPipelineMode(c), "%s: %s", t->name, PQerrorMessage(c));
    EXPECT_VALUE(t, c, date_sql, "2024-02-01", "after the pipeline");
    PQfinish(c);
}

IN_BOTH_MODES(redteam8, pipelined_reset_then_a_later_transaction, pipelined_reset_then_query)

/* The same with a named statement prepared before, and a RESET ALL among other statements of
 * the batch: the barrier is armed by the Bind of a statement whose text may reset. */
static void pipelined_prepared_reset_then_query(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    prepare(t, c, "rt8_reset_all", "RESET ALL");
    run_sql(t, c, "SET DateStyle = 'German'");
    cr_assert(PQenterPipelineMode(c));
    send_pipelined(c, "SELECT 1");
    cr_assert(PQsendQueryPrepared(c, "rt8_reset_all", 0, NULL, NULL, NULL, 0));
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, date_sql);
    cr_assert(PQpipelineSync(c));
    free(pipeline_value(t, c));
    free(pipeline_value(t, c));
    expect_sync(t, c);
    expect_pipelined(t, c, "2024-02-01",
                     "a query pipelined behind a prepared RESET ALL reads the date under the "
                     "startup DateStyle DMY");
    cr_assert(PQexitPipelineMode(c), "%s: %s", t->name, PQerrorMessage(c));
    PQfinish(c);
}

IN_BOTH_MODES(redteam8, pipelined_prepared_reset_then_a_later_transaction,
              pipelined_prepared_reset_then_query)

/* Inside a transaction block the barrier lifts once the RESET is answered: the pipeline goes
 * on (statements in the RESET's own transaction read by the server's default: a documented
 * limit, so only what follows the COMMIT is compared), and nothing waits for good. */
static void pipelined_reset_inside_a_block(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    run_sql(t, c, "SET DateStyle = 'German'");
    cr_assert(PQenterPipelineMode(c));
    send_pipelined(c, "BEGIN");
    send_pipelined(c, "RESET DateStyle");
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, "SELECT 'in the block'");
    send_pipelined(c, "COMMIT");
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, date_sql);
    cr_assert(PQpipelineSync(c));
    free(pipeline_value(t, c));
    free(pipeline_value(t, c));
    expect_sync(t, c);
    char *v = pipeline_value(t, c);
    cr_expect_str_eq(v ? v : "(none)", "in the block", "%s", t->name);
    free(v);
    free(pipeline_value(t, c));
    expect_sync(t, c);
    expect_pipelined(t, c, "2024-02-01", "after the COMMIT");
    cr_assert(PQexitPipelineMode(c), "%s: %s", t->name, PQerrorMessage(c));
    PQfinish(c);
}

IN_BOTH_MODES(redteam8, a_pipeline_behind_a_reset_inside_a_block_goes_on,
              pipelined_reset_inside_a_block)

/* A COPY FROM STDIN whose own text may reset (here a comment says so) arms the barrier: its
 * copy data must still go through, or the server and lakeproxy wait for each other. */
static void copy_behind_a_reset_word(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    copy_one_date(t, c, "rt8_copy2", "COPY rt8_copy2 FROM STDIN -- a default, not a reset",
                  "2024-02-01");
    PQfinish(c);
}

IN_BOTH_MODES(redteam8, copy_data_passes_a_reset_barrier, copy_behind_a_reset_word)

/* ---- 3. RESET in an explicit transaction, ROLLBACK TO SAVEPOINT, COMMIT ---- */

static void reset_in_savepoints(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    run_sql(t, c, "SET DateStyle = 'German'");
    run_sql(t, c, "BEGIN");
    run_sql(t, c, "SAVEPOINT a");
    run_sql(t, c, "RESET DateStyle");
    run_sql(t, c, "ROLLBACK TO SAVEPOINT a");
    run_sql(t, c, "COMMIT");
    EXPECT_VALUE(t, c, "SHOW DateStyle", "German, DMY", "a RESET undone by ROLLBACK TO");
    run_sql(t, c, "BEGIN");
    run_sql(t, c, "SAVEPOINT a");
    run_sql(t, c, "RESET DateStyle");
    run_sql(t, c, "RELEASE SAVEPOINT a");
    run_sql(t, c, "COMMIT");
    EXPECT_VALUE(t, c, "SHOW DateStyle", "ISO, DMY", "a RESET released and committed");
    const char *ds = PQparameterStatus(c, "DateStyle");
    cr_expect_str_eq(ds ? ds : "(none)", "ISO, DMY", "%s: told", t->name);
    /* RESET one, SET another in the same query */
    run_sql(t, c, "SET DateStyle = 'German'");
    run_sql(t, c, "RESET DateStyle; SET TimeZone = 'America/New_York'");
    EXPECT_VALUE(t, c, "SHOW DateStyle", "ISO, DMY", "RESET with a SET of another");
    EXPECT_VALUE(t, c, "SHOW TimeZone", "America/New_York", "RESET with a SET of another");
    run_sql(t, c, "RESET TimeZone; SET DateStyle = 'SQL'");
    EXPECT_VALUE(t, c, "SHOW DateStyle", "SQL, DMY", "SET with a RESET of another");
    EXPECT_VALUE(t, c, "SHOW TimeZone", "Asia/Tokyo", "SET with a RESET of another");
    /* SET then RESET, RESET then SET in one query */
    run_sql(t, c, "SET TimeZone = 'UTC'; RESET TimeZone");
    EXPECT_VALUE(t, c, "SHOW TimeZone", "Asia/Tokyo", "SET then RESET");
    run_sql(t, c, "RESET TimeZone; SET TimeZone = 'UTC'");
    EXPECT_VALUE(t, c, "SHOW TimeZone", "UTC", "RESET then SET");
    PQfinish(c);
}

IN_BOTH_MODES(redteam8, reset_with_savepoints_and_other_settings, reset_in_savepoints)

/* ---- 4. settings the server does not report (statement_timeout ...) ---- */

static void reset_unreported(const struct target *t)
{
    PGconn *c = open_with(t, "options='-c statement_timeout=123s -c lock_timeout=7s'");
    EXPECT_VALUE(t, c, "SHOW statement_timeout", "123s", "startup");
    run_sql(t, c, "SET statement_timeout = '5s'");
    run_sql(t, c, "RESET statement_timeout");
    EXPECT_VALUE(t, c, "SHOW statement_timeout", "123s", "RESET of a startup statement_timeout");
    run_sql(t, c, "RESET ALL");
    EXPECT_VALUE(t, c, "SHOW lock_timeout", "7s", "RESET ALL, lock_timeout");
    EXPECT_VALUE(t, c, "SHOW statement_timeout", "123s", "RESET ALL, statement_timeout");
    PQfinish(c);
}

IN_BOTH_MODES(redteam8, reset_of_an_unreported_startup_setting, reset_unreported)

/* ---- 5. application_name and client_encoding ---- */

static void reset_appname_encoding(const struct target *t)
{
    PGconn *c = open_with(t, "application_name=rt8app client_encoding=LATIN1");
    run_sql(t, c, "SET application_name = 'other'");
    run_sql(t, c, "RESET application_name");
    EXPECT_VALUE(t, c, "SHOW application_name", "rt8app", "RESET application_name");
    const char *an = PQparameterStatus(c, "application_name");
    cr_expect_str_eq(an ? an : "(none)", "rt8app", "%s: told application_name", t->name);
    run_sql(t, c, "SET client_encoding = 'UTF8'");
    run_sql(t, c, "RESET client_encoding");
    EXPECT_VALUE(t, c, "SHOW client_encoding", "LATIN1", "RESET client_encoding");
    const char *ce = PQparameterStatus(c, "client_encoding");
    cr_expect_str_eq(ce ? ce : "(none)", "LATIN1", "%s: told client_encoding", t->name);
    EXPECT_VALUE(t, c, "SELECT convert_to(chr(233), 'LATIN1')::text", "\\xe9", "é in latin1");
    PQfinish(c);
}

IN_BOTH_MODES(redteam8, reset_of_application_name_and_client_encoding, reset_appname_encoding)

/* ---- 6. several clients over one server, transaction pooling ---- */

static void many_clients_one_server(const struct target *t)
{
    enum { N = 4 };
    static const char *const opts[N] = {"options='-c DateStyle=ISO,DMY'",
                                        "options='-c DateStyle=ISO,YMD'", NULL,
                                        "options='-c DateStyle=SQL,DMY'"};
    static const char *const want[N] = {"2024-02-01", "2001-02-24", "2024-01-02", "01/02/2024"};
    PGconn *c[N];
    for (int i = 0; i < N; i++)
        c[i] = open_with(t, opts[i]);
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < N; i++) {
            run_sql(t, c[i], "SET DateStyle = 'German'");
            run_sql(t, c[i], round % 2 ? "RESET ALL" : "RESET DateStyle");
        }
        for (int i = 0; i < N; i++) {
            /* (YMD reads 01/02/24 as 2001-02-24) */
            char *v = value_of(t, c[i], i == 1 ? "SELECT '01/02/24'::date::text" : date_sql);
            cr_expect_str_eq(v, want[i], "%s: client %d round %d read %s", t->name, i, round, v);
            free(v);
        }
    }
    for (int i = 0; i < N; i++)
        PQfinish(c[i]);
}

Test(redteam8, txn_several_clients_reset_over_one_server)
{
    on_postgresql_and_through("transaction", 1, many_clients_one_server);
}

/* ---- 7. a client that leaves right after a RESET (session pooling, 1 server) ---- */

static void leave_after_reset(const struct target *t)
{
    for (int i = 0; i < 5; i++) {
        PGconn *c = open_with(t, STARTUP_OPTS);
        run_sql(t, c, "SET DateStyle = 'German'");
        cr_assert(PQsendQuery(c, "RESET DateStyle"));
        if (i % 2) { /* leave without reading the answer */
            PQfinish(c);
        } else {
            PGresult *r;
            while ((r = PQgetResult(c)))
                PQclear(r);
            PQfinish(c);
        }
        PGconn *o = open_with(t, NULL);
        EXPECT_VALUE(t, o, "SHOW DateStyle", "ISO, MDY", "the next client, round %d", i);
        EXPECT_VALUE(t, o, date_sql, "2024-01-02", "the next client, round %d", i);
        PQfinish(o);
    }
}

IN_BOTH_MODES(redteam8, client_leaves_right_after_a_reset, leave_after_reset)

/* ---- 8. LISTEN: a notification pending at COMMIT after a RESET (session pooling) ---- */

static void notify_after_reset(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    PGconn *n = open_with(t, NULL);
    run_sql(t, c, "LISTEN rt8chan");
    run_sql(t, c, "SET DateStyle = 'German'");
    run_sql(t, c, "BEGIN");
    run_sql(t, c, "RESET DateStyle");
    run_sql(t, n, "NOTIFY rt8chan, 'hello'");
    run_sql(t, c, "COMMIT");
    PGnotify *note = notification_within_3s(c);
    cr_expect(note != NULL, "%s: the notification was not delivered", t->name);
    if (note) {
        cr_expect_str_eq(note->extra, "hello", "%s", t->name);
        PQfreemem(note);
    }
    EXPECT_VALUE(t, c, "SHOW DateStyle", "ISO, DMY", "after COMMIT");
    PQfinish(n);
    PQfinish(c);
}

Test(redteam8, session_notification_pending_at_a_resets_commit_is_delivered)
{
    on_postgresql_and_through("session", 3, notify_after_reset);
}

/* ---- 9. extended protocol: unnamed statement after a RESET (documented limit) ---- */

static void unnamed_after_reset(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    run_sql(t, c, "SET DateStyle = 'German'");
    PGresult *r = PQexecParams(c, "RESET DateStyle", 0, NULL, NULL, NULL, NULL, 0);
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", t->name, PQerrorMessage(c));
    PQclear(r);
    const char *p[1] = {"01/02/2024"};
    r = PQexecParams(c, "SELECT $1::date::text", 1, NULL, p, NULL, NULL, 0);
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", t->name, PQerrorMessage(c));
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        cr_expect_str_eq(PQgetvalue(r, 0, 0), "2024-02-01", "%s", t->name);
    PQclear(r);
    /* COPY after a RESET */
    run_sql(t, c, "SET DateStyle = 'German'");
    run_sql(t, c, "RESET DateStyle");
    copy_one_date(t, c, "rt8_copy", "COPY rt8_copy FROM STDIN", "2024-02-01");
    PQfinish(c);
}

Test(redteam8, session_extended_reset_then_params_and_copy)
{
    on_postgresql_and_through("session", 1, unnamed_after_reset);
}

Test(redteam8, txn_extended_reset_then_params)
{
    on_postgresql_and_through("transaction", 1, unnamed_after_reset);
}

/* ---- 10. SET to the server's default, then RESET: the server reports nothing ---- */

static void set_default_then_reset(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    run_sql(t, c, "SET DateStyle = 'ISO, MDY'"); /* the server's default, by a SET */
    EXPECT_VALUE(t, c, date_sql, "2024-01-02", "SET to MDY");
    run_sql(t, c, "RESET DateStyle");
    EXPECT_VALUE(t, c, "SHOW DateStyle", "ISO, DMY", "RESET after a SET to the server's default");
    EXPECT_VALUE(t, c, date_sql, "2024-02-01", "RESET after a SET to the server's default");
    const char *ds = PQparameterStatus(c, "DateStyle");
    cr_expect_str_eq(ds ? ds : "(none)", "ISO, DMY", "%s: DateStyle told", t->name);
    PQfinish(c);
}

IN_BOTH_MODES(redteam8, set_to_the_servers_default_then_reset, set_default_then_reset)

/* ---- 11. an RLS client's RESET (the guard carries it) ---- */

static void start_rls(struct proxy *p, const char *mode, int size)
{
    static char yaml[16384];
    char extra[4096];
    int port = free_port();
    snprintf(extra, sizeof(extra),
             "  t2: {password: pw, attributes: {tenant_id: \"2\"}}\n"
             "rls:\n  prefix: app\n  databases: [app]\n  switch_role: true\n"
             "  default_role: lp_tenant\n"
             "  attributes: {tenant_id: attribute, user: user, locale: option}\n");
    proxy_default_yaml(yaml, sizeof(yaml), port, mode, size, 20000, extra);
    proxy_start_yaml(p, port, yaml);
}

static void rls_reset(const char *mode)
{
    struct proxy p;
    start_rls(&p, mode, 1);
    struct target t = {.p = &p, .name = mode};
    for (int round = 0; round < 3; round++) {
        PGconn *c =
            proxy_connect(&p, "t2", "pw", "app", "options='-c DateStyle=ISO,DMY -c app.locale=fr'");
        cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
        char *pid = value_of(&t, c, "SELECT pg_backend_pid()::text");
        run_sql(&t, c, "SET DateStyle = 'German'");
        run_sql(&t, c, round == 2 ? "SET DateStyle TO DEFAULT" : "RESET DateStyle");
        EXPECT_VALUE(&t, c, "SHOW DateStyle", "ISO, DMY", "an RLS client's RESET, round %d", round);
        EXPECT_VALUE(&t, c, date_sql, "2024-02-01", "round %d", round);
        EXPECT_VALUE(&t, c,
                     "SELECT count(*) || '|' || current_setting('app.tenant_id') || '|' || "
                     "current_setting('app.locale') || '|' || current_user FROM rls_docs",
                     "100|2|fr|lp_tenant", "round %d", round);
        if (strcmp(mode, "session") == 0)
            EXPECT_VALUE(&t, c, "SELECT pg_backend_pid()::text", pid, "round %d", round);
        free(pid);
        PQfinish(c);
    }
    proxy_stop(&p);
}

Test(redteam8, txn_rls_client_reset)
{
    rls_reset("transaction");
}

Test(redteam8, session_rls_client_reset)
{
    rls_reset("session");
}

/* ---- 12. session pooling, 1 server: a RESET must not give the client's server away ---- */

struct login_arg {
    const struct proxy *p;
    PGconn *c;
};

static void *login_thread(void *arg)
{
    struct login_arg *l = arg;
    l->c = proxy_connect(l->p, "alice", "alice-secret", "app", NULL);
    return NULL;
}

Test(redteam8, session_reset_does_not_lose_the_server_to_a_waiting_client)
{
    struct proxy p;
    static char yaml[8192];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "session", 1, 3000, NULL);
    proxy_start_yaml(&p, port, yaml);
    struct target t = {.p = &p, .name = "session"};
    PGconn *a = open_with(&t, STARTUP_OPTS);
    run_sql(&t, a, "SET DateStyle = 'German'");
    /* b logs in and waits for the pool's one server, which a holds for its session */
    struct login_arg l = {.p = &p};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, login_thread, &l), 0);
    usleep(500000);
    run_sql(&t, a, "RESET DateStyle");
    EXPECT_VALUE(&t, a, "SHOW DateStyle", "ISO, DMY", "a, after its RESET, with b waiting");
    EXPECT_VALUE(&t, a, "SELECT 'still a session'", "still a session", "a's next query");
    PQfinish(a);
    pthread_join(th, NULL);
    cr_expect(PQstatus(l.c) == CONNECTION_OK, "b: %s", PQerrorMessage(l.c));
    PQfinish(l.c);
    proxy_stop(&p);
}

/* ---- 13. a cancel right after a RESET (the read-back may be running) ---- */

static void cancel_after_reset(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    for (int i = 0; i < 30; i++) {
        run_sql(t, c, "SET DateStyle = 'German'");
        cr_assert(PQsendQuery(c, "RESET DateStyle"));
        PGresult *r;
        while ((r = PQgetResult(c)))
            PQclear(r);
        PGcancel *k = PQgetCancel(c);
        char err[256];
        PQcancel(k, err, sizeof(err));
        PQfreeCancel(k);
        usleep(i * 1000);
        EXPECT_VALUE(t, c, "SHOW DateStyle", "ISO, DMY", "round %d", i);
    }
    PQfinish(c);
}

Test(redteam8, txn_cancel_right_after_a_reset)
{
    on_postgresql_and_through("transaction", 1, cancel_after_reset);
}

/* ---- 14. client_encoding changed to a non-default, then RESET (the server reports it) ---- */

static void reset_encoding_reported(const struct target *t)
{
    PGconn *c = open_with(t, "client_encoding=LATIN1 options='-c DateStyle=ISO,DMY'");
    run_sql(t, c, "SET client_encoding = 'WIN1252'");
    run_sql(t, c, "SET DateStyle = 'German'");
    run_sql(t, c, "RESET client_encoding");
    EXPECT_VALUE(t, c, "SHOW client_encoding", "LATIN1", "RESET client_encoding");
    const char *ce = PQparameterStatus(c, "client_encoding");
    cr_expect_str_eq(ce ? ce : "(none)", "LATIN1", "%s: told client_encoding", t->name);
    EXPECT_VALUE(t, c, "SELECT length(convert_to(chr(233), 'LATIN1'))::text", "1", "latin1");
    EXPECT_VALUE(t, c, "SELECT chr(233)", "\xe9", "é sent in LATIN1");
    run_sql(t, c, "RESET ALL");
    EXPECT_VALUE(t, c, "SHOW DateStyle", "ISO, DMY", "RESET ALL");
    EXPECT_VALUE(t, c, "SELECT chr(233)", "\xe9", "é sent in LATIN1 after RESET ALL");
    PQfinish(c);
}

IN_BOTH_MODES(redteam8, reset_of_a_reported_client_encoding, reset_encoding_reported)

/* ---- 15. a protocol-level named statement kept across a RESET (session pooling) ---- */

static void named_statement_across_reset(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    prepare(t, c, "rt8_ps", "SELECT $1::int + 1");
    PGresult *r;
    run_sql(t, c, "SET DateStyle = 'German'");
    run_sql(t, c, "RESET DateStyle");
    const char *p[1] = {"41"};
    r = PQexecPrepared(c, "rt8_ps", 1, p, NULL, NULL, 0);
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", t->name, PQerrorMessage(c));
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        cr_expect_str_eq(PQgetvalue(r, 0, 0), "42", "%s", t->name);
    PQclear(r);
    EXPECT_VALUE(t, c, "SELECT count(*)::text FROM pg_prepared_statements", "1",
                 "the statement on the session's server");
    PQfinish(c);
}

Test(redteam8, session_named_statement_across_a_reset)
{
    on_postgresql_and_through("session", 1, named_statement_across_reset);
}

/* ---- 16. pipeline: RESET, an error, then queries (results in order, nothing lost) ---- */

static void pipelined_reset_error(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    run_sql(t, c, "SET DateStyle = 'German'");
    cr_assert(PQenterPipelineMode(c));
    send_pipelined(c, "RESET DateStyle");
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, "SELECT 1/0");
    cr_assert(PQpipelineSync(c));
    send_pipelined(c, "SELECT 'third'");
    cr_assert(PQpipelineSync(c));
    PGresult *r;
    r = PQgetResult(c);
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: RESET", t->name);
    PQclear(r);
    cr_expect(PQgetResult(c) == NULL);
    expect_sync(t, c);
    r = PQgetResult(c);
    cr_expect_eq(PQresultStatus(r), PGRES_FATAL_ERROR, "%s: 1/0", t->name);
    PQclear(r);
    cr_expect(PQgetResult(c) == NULL);
    expect_sync(t, c);
    char *v = pipeline_value(t, c);
    cr_expect_str_eq(v ? v : "(none)", "third", "%s", t->name);
    free(v);
    expect_sync(t, c);
    cr_assert(PQexitPipelineMode(c), "%s: %s", t->name, PQerrorMessage(c));
    EXPECT_VALUE(t, c, "SHOW DateStyle", "ISO, DMY", "after the pipeline");
    PQfinish(c);
}

IN_BOTH_MODES(redteam8, pipelined_reset_then_an_error, pipelined_reset_error)

/* ---- 18. concurrent clients, 1 server, transaction pooling: no setting crosses over ---- */

struct stress_arg {
    const struct proxy *p;
    const char *opts, *want;
    int bad;
    char first_bad[256];
};

static void *stress_thread(void *arg)
{
    struct stress_arg *a = arg;
    PGconn *c = proxy_connect(a->p, "alice", "alice-secret", "app", a->opts);
    if (PQstatus(c) != CONNECTION_OK) {
        a->bad++;
        snprintf(a->first_bad, sizeof(a->first_bad), "login: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    static const char *const steps[] = {"SET DateStyle = 'German'",   "RESET DateStyle",
                                        "SET DateStyle = 'ISO, YMD'", "RESET ALL",
                                        "SET DateStyle = 'SQL, DMY'", "SET DateStyle TO DEFAULT"};
    for (int i = 0; i < 60; i++) {
        PGresult *r = PQexec(c, steps[i % 6]);
        PQclear(r);
        if (i % 2 == 0)
            continue;
        r = PQexec(c, "SELECT '01/02/2024'::date::text || ' ' || current_setting('DateStyle')");
        const char *v =
            PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : PQerrorMessage(c);
        if (strcmp(v, a->want) != 0 && !a->bad++)
            snprintf(a->first_bad, sizeof(a->first_bad), "step %d (%s): %s", i, steps[i % 6], v);
        PQclear(r);
    }
    PQfinish(c);
    return NULL;
}

Test(redteam8, txn_concurrent_resets_over_one_server)
{
    struct proxy p;
    start_mode(&p, "transaction", 1);
    struct stress_arg a[4] = {
        {.p = &p, .opts = "options='-c DateStyle=ISO,DMY'", .want = "2024-02-01 ISO, DMY"},
        {.p = &p, .opts = NULL, .want = "2024-01-02 ISO, MDY"},
        {.p = &p, .opts = "options='-c DateStyle=SQL,DMY'", .want = "01/02/2024 SQL, DMY"},
        {.p = &p,
         .opts = "options='-c DateStyle=Postgres,DMY'",
         .want = "01-02-2024 Postgres, DMY"},
    };
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, stress_thread, &a[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(a[i].bad, 0, "client %d: %d wrong, first %s", i, a[i].bad, a[i].first_bad);
    proxy_stop(&p);
}

/* ---- review of session 35: the read-back's own state ---- */

/* Transaction pooling, one server. A client that SET DateStyle to the server's default
 * (reset_blind) comes back to a server that holds that value without a SET of the session
 * (another client's link RESET it there, so pg_settings.source is 'default'): lakeproxy must
 * set it again at the link, or the read-back at the end of the client's transaction takes
 * source <> 'session' for a RESET and puts the client back to its startup DateStyle although
 * it never RESET anything (review of session 35). */
static void set_to_default_survives_another_client(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    run_sql(t, c, "SET DateStyle = 'ISO, MDY'"); /* the server's default, by a SET */
    EXPECT_VALUE(t, c, date_sql, "2024-01-02", "SET to the server's default");
    PGconn *other = open_with(t, NULL); /* takes the one server: its link RESETs DateStyle */
    EXPECT_VALUE(t, other, date_sql, "2024-01-02", "a client of the server's defaults");
    PQfinish(other);
    EXPECT_VALUE(t, c, date_sql, "2024-01-02", "back on the server after another client");
    EXPECT_VALUE(t, c, date_sql, "2024-01-02", "the next transaction (no RESET was run)");
    EXPECT_VALUE(t, c, "SHOW DateStyle", "ISO, MDY", "no RESET was run");
    const char *ds = PQparameterStatus(c, "DateStyle");
    cr_expect_str_eq(ds ? ds : "(none)", "ISO, MDY", "%s: DateStyle the client was told", t->name);
    PQfinish(c);
}

Test(redteam8, txn_a_set_to_the_servers_default_is_not_taken_for_a_reset_on_another_link)
{
    on_postgresql_and_through("transaction", 1, set_to_default_survives_another_client);
}

/* Starts p (session pooling, 3 servers) and a client of it (t) of startup DateStyle DMY that
 * runs first, SETs DateStyle and RESETs it while its read-back is held: *admin, on PostgreSQL
 * directly, holds a lock on pg_settings until its ROLLBACK. */
static PGconn *reset_with_read_back_held(struct proxy *p, const struct target *t, const char *first,
                                         PGconn **admin)
{
    start_mode(p, "session", 3);
    PGconn *c = open_with(t, STARTUP_OPTS);
    run_sql(t, c, first);
    run_sql(t, c, "SET DateStyle = 'German'");
    *admin = pg_admin("lp_test");
    run_sql(t, *admin, "BEGIN");
    run_sql(t, *admin, "LOCK TABLE pg_catalog.pg_settings IN ACCESS EXCLUSIVE MODE");
    run_sql(t, c, "RESET DateStyle"); /* its read-back waits for the lock */
    return c;
}

/* Session pooling: a notification that arrives while lakeproxy reads back a client's RESET
 * reaches the LISTENing client (the read-back's reader dropped it). The read-back is held by a lock
 * on pg_settings taken directly on PostgreSQL while another client NOTIFYs; PostgreSQL sends the
 * notification just before the read-back's ReadyForQuery. */
Test(redteam8, session_a_notification_during_a_reset_read_back_is_delivered)
{
    struct proxy p;
    struct target t = {.p = &p, .name = "session"};
    PGconn *admin, *c = reset_with_read_back_held(&p, &t, "LISTEN rv35chan", &admin);
    usleep(200 * 1000);
    PGconn *n = pg_admin("lp_test");
    run_sql(&t, n, "NOTIFY rv35chan, 'hello'");
    usleep(200 * 1000);
    run_sql(&t, admin, "ROLLBACK");
    PGnotify *note = notification_within_3s(c);
    cr_expect(note != NULL, "the notification sent during the read-back was lost");
    if (note)
        PQfreemem(note);
    EXPECT_VALUE(&t, c, "SHOW DateStyle", "ISO, DMY", "after the RESET");
    PQfinish(n);
    PQfinish(admin);
    PQfinish(c);
    proxy_stop(&p);
}

/* Session pooling: a client that SET DateStyle to the server's default (reset_blind) is read
 * back only after a statement that may RESET, not after every transaction: a read-back is a
 * simple Query, which drops the client's unnamed prepared statement, and libpq's
 * PQprepare(conn, "", ...) then PQexecPrepared(conn, "", ...) failed on every call. */
static void unnamed_statement_after_set_to_default(const struct target *t)
{
    PGconn *c = open_with(t, STARTUP_OPTS);
    run_sql(t, c, "SET DateStyle = 'ISO, MDY'");
    PGresult *r = PQprepare(c, "", "SELECT 41 + 1", 0, NULL);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", t->name, PQerrorMessage(c));
    PQclear(r);
    r = PQexecPrepared(c, "", 0, NULL, NULL, NULL, 0);
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK,
                 "%s: the unnamed statement was dropped between its Parse and its Bind: %s",
                 t->name, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

Test(redteam8, session_unnamed_statement_survives_a_set_to_the_servers_default)
{
    on_postgresql_and_through("session", 1, unnamed_statement_after_set_to_default);
}

/* Session pooling: a cancel request that comes while the client's server reads back its RESET
 * (SV_READBACK) is parked as c->cancel_wanted for the query the client sent meanwhile, and
 * goes when the read-back ends (a session client is never linked again: the query ran to its
 * end). On PostgreSQL the cancel stops it. */
Test(redteam8, session_a_cancel_during_a_reset_read_back_cancels_the_next_query)
{
    struct proxy p;
    struct target t = {.p = &p, .name = "session"};
    PGconn *admin, *c = reset_with_read_back_held(&p, &t, "SELECT 1", &admin);
    cr_assert(PQsendQuery(c, "SELECT pg_sleep(4)"), "%s", PQerrorMessage(c));
    usleep(300 * 1000); /* the query waits in lakeproxy behind the read-back */
    double t0 = now_s();
    PGcancel *cancel = PQgetCancel(c);
    char err[256];
    cr_assert(PQcancel(cancel, err, sizeof(err)), "cancel failed: %s", err);
    PQfreeCancel(cancel);
    usleep(100 * 1000);
    run_sql(&t, admin, "ROLLBACK");
    PGresult *r = PQgetResult(c);
    double took = now_s() - t0;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect_str_eq(state ? state : "(none)", "57014",
                     "the query cancelled while the read-back ran was not cancelled");
    cr_expect_lt(took, 2.5, "the cancelled query ran %.1fs", took);
    PQclear(r);
    while ((r = PQgetResult(c)))
        PQclear(r);
    PQfinish(admin);
    PQfinish(c);
    proxy_stop(&p);
}
