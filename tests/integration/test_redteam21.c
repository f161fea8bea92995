/* test_redteam21.c: red-team round 21 against OPERATIONS UNDER TRAFFIC, for data correctness:
 * COPY FROM STDIN / COPY TO STDOUT (megabytes, streamed in pieces) across SIGHUP and admin
 * RELOADs that change pool size, pool mode and masking rules, across PAUSE/RESUME, and across
 * SIGTERM and the console's SHUTDOWN; PAUSE while clients are mid-pipeline; PAUSE then a
 * reload that removes the paused database; the wait queue and its timeout (53300 naming the
 * pool) across PAUSE/RESUME and reloads; a reload that switches a database between session
 * and transaction pooling while its clients are connected; the console's SHOWs while clients
 * pipeline. Each test asserts the SAFE behaviour (no lost, duplicated or altered row, no
 * COMMIT reported that did not happen, no reply of another client, no hang, clear errors with
 * a SQLSTATE, the proxy keeps running): a failing test is a finding.
 *
 * Findings:
 * - session_client_keeps_its_session_across_a_reload_to_transaction_mode: a reload that switches
 *   a database from session to transaction pooling turns its connected session clients into
 *   transaction clients at once: pool_mode_of (poolmode.h) reads the mode from p->db, which
 *   worker.c retarget_pool points at the new entry; at the client's next idle ReadyForQuery
 *   server.c active_verdict releases the server (mode->shares_servers), it is retired (its
 *   generation), and the next transaction runs on a fresh server with only the settings
 *   lakeproxy tracked. Session-level SETs session pooling never tracked (search_path, custom
 *   settings), temporary tables, SQL PREPAREs, cursors, LISTENs vanish without a word: the
 *   client's INSERT lands in public.<table> instead of its own schema's. (The other way,
 *   transaction -> session, keeps the carried search_path: held.)
 * - waiter_queued_during_pause_gets_the_wait_timeout_after_resume: a client that queued while
 *   the pool was paused gets no wait timer (pool.c enqueue returns before arming it when
 *   p->paused), and RESUME (pool_set_paused -> hand_out_idle) never arms one: when the pool
 *   stays busy it waits for good instead of 53300 after pool.max_wait_ms.
 * - waiter_queued_before_pause_is_held_not_timed_out: a client already waiting when PAUSE
 *   comes keeps its timer; its server is freed during the PAUSE but held back, and the client
 *   is disconnected with FATAL 53300 "no server connection available ... (pool.size 1)"
 *   though the README says PAUSE holds transactions "without timeout" (pool_set_paused(true)
 *   does not stop the waiters' timers).
 * - reload_lowering_max_wait_applies_to_clients_already_waiting: "pool sizes and timeouts apply
 *   at once" (README), but the waiters' timers keep the duration enqueue armed them with:
 *   after a reload from 20 s to 300 ms a waiter still waits 20 s (retarget_pool re-arms none).
 *
 * Held: COPY FROM STDIN (4 MB in pieces ending mid-row) and COPY TO STDOUT (read slowly)
 * across SIGHUP/RELOAD of pool size and mode, masking rules that exempt the client,
 * PAUSE/RESUME of one and every pool, RECONNECT: every row once, unaltered, the right count;
 * SIGTERM mid-COPY IN lets it finish whole, then exits 0; SHUTDOWN mid-COPY OUT delivers every
 * row; masking newly applying mid-COPY fails it whole (no row committed); PAUSE mid-pipeline
 * of two clients on one server: each its own replies in order; PAUSE then a reload removing
 * the database: both its clients told 57P01 at once, no COMMIT, no row; a reload shrinking a
 * full pool serves the waiters FIFO; transaction -> session keeps carried settings; every
 * console SHOW, PAUSE/RESUME, RELOAD between pipelined batches of four clients. */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct proxy px;
static char yaml[16384];

#define ADMIN "admin:\n  users: [carol]\n"

static void start_mode(const char *mode, int size, int max_wait_ms)
{
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, mode, size, max_wait_ms, ADMIN);
    proxy_start_yaml(&px, port, yaml);
}
static void start_txn2(void)
{
    start_mode("transaction", 2, 5000);
}
static void start_txn1(void)
{
    start_mode("transaction", 1, 500);
}
static void start_txn1_long(void)
{
    start_mode("transaction", 1, 5000);
}
static void start_session2(void)
{
    start_mode("session", 2, 3000);
}
static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(redteam21, .fini = stop_proxy, .timeout = 90);

/* ---- helpers ------------------------------------------------------------------------- */

static PGconn *client(void)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* The suite's configuration of the running proxy, with the first `old` replaced by `new`
 * (old NULL: as it is) and `extra` (NULL: the console's admin list) appended. */
static void conf_edited(char *out, size_t outsz, const char *mode, int size, int max_wait_ms,
                        const char *extra, const char *old, const char *new)
{
    static char base[16384];
    proxy_default_yaml(base, sizeof(base), px.port, mode, size, max_wait_ms, extra ? extra : ADMIN);
    char *at = old ? strstr(base, old) : NULL;
    cr_assert(!old || at, "no \"%s\" in the configuration", old);
    if (at)
        snprintf(out, outsz, "%.*s%s%s", (int)(at - base), base, new, at + strlen(old));
    else
        snprintf(out, outsz, "%s", base);
}

/* Reloads y by SIGHUP; it must be taken (an attack on a refused file tests nothing). */
static void reload_taken(const char *y)
{
    int refused = file_count_lines(px.log, "reload refused");
    int taken = file_count_lines(px.log, "configuration reloaded");
    proxy_reload_yaml(&px, y);
    cr_assert_eq(file_count_lines(px.log, "reload refused"), refused,
                 "the new file was refused (see %s)", px.log);
    cr_assert_gt(file_count_lines(px.log, "configuration reloaded"), taken, "no reload");
}

/* Writes y and has the console RELOAD it; it must be taken. */
static void console_reload_taken(PGconn *adm, const char *y)
{
    int refused = file_count_lines(px.log, "reload refused");
    int taken = file_count_lines(px.log, "configuration reloaded");
    FILE *f = fopen(px.conf, "w");
    cr_assert_not_null(f);
    fputs(y, f);
    fclose(f);
    admin_ok(adm, "RELOAD");
    cr_assert(wait_file_line(px.log, "configuration reloaded", 3000));
    cr_assert_eq(file_count_lines(px.log, "reload refused"), refused, "refused (see %s)", px.log);
    cr_assert_gt(file_count_lines(px.log, "configuration reloaded"), taken, "no reload");
}

#define MASK_RULES                                                                                 \
    "masking:\n  databases: [app]\n  rules:\n"                                                     \
    "    - {column: public.customers.email, function: email}\n"
/* rules that change the masking section but leave alice unmasked */
#define MASK_RULES_EXEMPT_ALICE                                                                    \
    "masking:\n  databases: [app]\n  rules:\n"                                                     \
    "    - {column: public.customers.email, function: email, unless: {users: [alice]}}\n"

/* The i-th operation run in the middle of a COPY: reloads (SIGHUP, console) that change the
 * pool's size and mode and the masking section (alice stays unmasked), and PAUSE/RESUME of
 * the pool and of every pool. */
static void operation(PGconn *adm, int i)
{
    static char y[16384];
    switch (i % 8) {
    case 0:
        conf_edited(y, sizeof(y), "transaction", 3, 5000, NULL, NULL, NULL);
        reload_taken(y);
        break;
    case 1:
        conf_edited(y, sizeof(y), "transaction", 2, 5000, ADMIN MASK_RULES_EXEMPT_ALICE, NULL,
                    NULL);
        console_reload_taken(adm, y);
        break;
    case 2:
        admin_ok(adm, "PAUSE app");
        usleep(100 * 1000);
        admin_ok(adm, "RESUME app");
        break;
    case 3:
        conf_edited(y, sizeof(y), "transaction", 1, 2000, NULL, NULL, NULL);
        reload_taken(y);
        break;
    case 4:
        admin_ok(adm, "PAUSE");
        admin_ok(adm, "RESUME");
        break;
    case 5:
        conf_edited(y, sizeof(y), "session", 2, 5000, NULL, NULL, NULL);
        console_reload_taken(adm, y);
        break;
    case 6:
        conf_edited(y, sizeof(y), "transaction", 2, 5000, NULL, NULL, NULL);
        reload_taken(y);
        break;
    case 7: admin_ok(adm, "RECONNECT app"); break;
    }
}

/* Row i of the COPY tests: "i\t<96 characters derived from i>\n", as the server's
 * repeat(md5(i::text), 3) has it. */
#define COPY_ROWS 40000 /* about 4 MB */
#define COPY_CHECK                                                                                 \
    "SELECT count(*) FILTER (WHERE s = repeat(md5(v::text), 3))::text || '/' || "                  \
    "count(DISTINCT v)::text || '/' || count(*)::text || '/' || coalesce(sum(v), 0)::text FROM "

static void expect_all_rows(PGconn *adm, const char *table, const char *what)
{
    char sql[512], want[128];
    snprintf(sql, sizeof(sql), COPY_CHECK "%s", table);
    snprintf(want, sizeof(want), "%d/%d/%d/%lld", COPY_ROWS, COPY_ROWS, COPY_ROWS,
             (long long)COPY_ROWS * (COPY_ROWS + 1) / 2);
    char *v = query_value(adm, sql);
    cr_expect_str_eq(v, want, "%s: good/distinct/rows/sum are %s, not %s", what, v, want);
    free(v);
}

/* The rows first..last (inclusive) of the COPY data, into b (of bsz bytes); its length. The
 * server computes the same text: md5 through libpq is not at hand here, so it is read back. */
static size_t copy_chunk(PGconn *direct, int first, int last, char *b, size_t bsz)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT string_agg(g::text || E'\\t' || repeat(md5(g::text), 3) || E'\\n', '' "
             "ORDER BY g) FROM generate_series(%d, %d) g",
             first, last);
    char *v = query_value(direct, sql);
    size_t n = strlen(v);
    cr_assert_lt(n, bsz);
    memcpy(b, v, n);
    free(v);
    return n;
}

/* Streams the COPY_ROWS rows into c (in COPY FROM STDIN), in pieces of `per` rows, calling
 * between(i) after piece i (when not NULL). */
static void stream_rows(PGconn *c, PGconn *direct, int per, void (*between)(int, void *), void *arg)
{
    static char chunk[1 << 20];
    for (int i = 0, first = 1; first <= COPY_ROWS; i++, first += per) {
        int last = first + per - 1 > COPY_ROWS ? COPY_ROWS : first + per - 1;
        size_t n = copy_chunk(direct, first, last, chunk, sizeof(chunk));
        /* split each piece in two writes, one ending mid-row */
        size_t half = n / 2 + 7;
        cr_assert_eq(PQputCopyData(c, chunk, (int)half), 1, "%s", PQerrorMessage(c));
        cr_assert_eq(PQflush(c), 0);
        usleep(5 * 1000);
        cr_assert_eq(PQputCopyData(c, chunk + half, (int)(n - half)), 1, "%s", PQerrorMessage(c));
        cr_assert_eq(PQflush(c), 0);
        if (between)
            between(i, arg);
    }
}

static void operate_between(int i, void *arg)
{
    operation(arg, i);
}

/* The next result on c (pipeline mode: one PQgetResult), waiting up to timeout_s; NULL on
 * timeout or a lost connection. */
static PGresult *pipe_next(PGconn *c, double timeout_s)
{
    return wait_not_busy(c, timeout_s) ? PQgetResult(c) : NULL;
}

/* The first result of the query sent on c (the rest read and dropped), waiting up to
 * timeout_s; NULL when none came (a lost connection's error is a result). */
static PGresult *first_result_within(PGconn *c, double timeout_s)
{
    PGresult *first = pipe_next(c, timeout_s), *r;
    if (!first)
        return NULL;
    while ((r = pipe_next(c, 1)))
        PQclear(r);
    return first;
}

/* ---- 1. COPY FROM STDIN across reloads, PAUSE/RESUME ---------------------------------- */

/* A COPY of 40,000 rows (about 4 MB) streamed in pieces that end mid-row, while the pool is
 * resized (3, 1, 2) and switched to session pooling and back by SIGHUP and RELOAD, masking
 * rules that exempt the client come, the pool (and every pool) is paused and resumed, and
 * RECONNECTed: every row arrives once, unaltered, and COPY reports the count. */
Test(redteam21, copy_in_across_reloads_and_pause_keeps_every_row, .init = start_txn2)
{
    PGconn *direct = pg_admin("lp_test");
    pg_owned_table(direct, "rt21_copy_in", "v int, s text");
    PGconn *adm = proxy_console(&px, "carol", "unused"), *c = client();
    PGresult *r = PQexec(c, "COPY rt21_copy_in (v, s) FROM STDIN");
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_IN, "%s", PQerrorMessage(c));
    PQclear(r);
    stream_rows(c, direct, 4000, operate_between, adm);
    cr_assert_eq(PQputCopyEnd(c, NULL), 1);
    r = query_result_within(c, 10);
    cr_assert_not_null(r, "the COPY hangs");
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
    char want[32];
    snprintf(want, sizeof(want), "%d", COPY_ROWS);
    cr_expect_str_eq(PQcmdTuples(r), want, "COPY's count");
    PQclear(r);
    expect_all_rows(direct, "rt21_copy_in", "copy in across reloads");
    EXPECT_QUERY_VALUE(c, "SELECT 'after'", "after", "the client goes on");
    PQfinish(c);
    PQfinish(adm);
    pg_exec_ok(direct, "DROP TABLE rt21_copy_in");
    PQfinish(direct);
}

/* ---- 2. COPY TO STDOUT across reloads, PAUSE/RESUME ----------------------------------- */

/* Reads c's COPY OUT, running operation(adm, k) every `every` rows; checks each row is the
 * next one, unaltered; the rows read. */
static int read_copy_out(PGconn *c, PGconn *adm, int every)
{
    int rows = 0, ops = 0;
    char want[256];
    for (;;) {
        char *line = NULL;
        int n = PQgetCopyData(c, &line, 0);
        if (n < 0)
            break;
        rows++;
        snprintf(want, sizeof(want), "%d\t", rows);
        cr_assert(strncmp(line, want, strlen(want)) == 0 && n == (int)strlen(want) + 97,
                  "row %d is \"%.40s\" (%d bytes)", rows, line, n);
        PQfreemem(line);
        if (adm && rows % every == 0)
            operation(adm, ops++);
    }
    return rows;
}

/* COPY (40,000 rows) TO STDOUT read slowly while the same operations run: every row arrives
 * once, in order and unaltered, and COPY reports the count. */
Test(redteam21, copy_out_across_reloads_and_pause_delivers_every_row, .init = start_txn2)
{
    PGconn *adm = proxy_console(&px, "carol", "unused"), *c = client();
    char sql[256];
    snprintf(sql, sizeof(sql),
             "COPY (SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, %d) g) TO STDOUT",
             COPY_ROWS);
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_OUT, "%s", PQerrorMessage(c));
    PQclear(r);
    int rows = read_copy_out(c, adm, 5000);
    cr_expect_eq(rows, COPY_ROWS, "rows read");
    r = query_result_within(c, 10);
    cr_assert_not_null(r, "the COPY's end hangs");
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
    PQclear(r);
    EXPECT_QUERY_VALUE(c, "SELECT 'after'", "after", "the client goes on");
    PQfinish(c);
    PQfinish(adm);
}

/* ---- 3. COPY and the shutdown drain --------------------------------------------------- */

static void sigterm_once(int i, void *arg)
{
    (void)arg;
    if (i == 2) {
        kill(px.pid, SIGTERM);
        cr_assert(wait_file_line(px.log, "received SIGTERM", 3000), "no drain");
    }
}

/* SIGTERM in the middle of an autocommit COPY FROM STDIN: the drain lets the COPY (an open
 * transaction) finish, or fails it cleanly; never a COPY reported done with rows missing, or
 * failed with rows committed. lakeproxy then exits 0. */
Test(redteam21, sigterm_during_copy_in_lets_it_finish_whole, .init = start_txn2)
{
    PGconn *direct = pg_admin("lp_test");
    pg_owned_table(direct, "rt21_copy_term", "v int, s text");
    PGconn *c = client();
    PGresult *r = PQexec(c, "COPY rt21_copy_term (v, s) FROM STDIN");
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_IN, "%s", PQerrorMessage(c));
    PQclear(r);
    stream_rows(c, direct, 5000, sigterm_once, NULL);
    cr_assert_eq(PQputCopyEnd(c, NULL), 1);
    r = query_result_within(c, 10);
    cr_assert_not_null(r, "the COPY hangs");
    long rows = pg_long(direct, "SELECT count(*) FROM rt21_copy_term");
    if (PQresultStatus(r) == PGRES_COMMAND_OK)
        expect_all_rows(direct, "rt21_copy_term", "COPY reported done during the drain");
    else
        cr_expect_eq(rows, 0, "a failed COPY (%s) left %ld rows", PQresultErrorMessage(r), rows);
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "the drain must let an open COPY finish: %s",
                 PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    proxy_expect_exit_0(&px, 5000);
    pg_exec_ok(direct, "DROP TABLE rt21_copy_term");
    PQfinish(direct);
}

/* The console's SHUTDOWN while a client reads a large COPY TO STDOUT: it gets every row and
 * the COPY's end (or an error: never a short COPY reported done), and lakeproxy exits 0. */
Test(redteam21, shutdown_during_copy_out_never_truncates_it, .init = start_txn2)
{
    PGconn *adm = proxy_console(&px, "carol", "unused"), *c = client();
    char sql[256];
    snprintf(sql, sizeof(sql),
             "COPY (SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, %d) g) TO STDOUT",
             COPY_ROWS);
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_OUT, "%s", PQerrorMessage(c));
    PQclear(r);
    usleep(100 * 1000);
    admin_ok(adm, "SHUTDOWN");
    int rows = read_copy_out(c, NULL, 0);
    r = query_result_within(c, 10);
    cr_assert_not_null(r, "the COPY's end hangs");
    if (PQresultStatus(r) == PGRES_COMMAND_OK)
        cr_expect_eq(rows, COPY_ROWS, "COPY reported done after %d rows", rows);
    cr_expect_eq(rows, COPY_ROWS, "the drain cut the COPY: %d rows, then %s", rows,
                 PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    PQfinish(adm);
    proxy_expect_exit_0(&px, 5000);
}

/* ---- 4. PAUSE and the wait queue ------------------------------------------------------ */

/* A client that asked for a server while the pool was paused waits without a timeout (the
 * README); once RESUME lets the waiters go, it waits as every other client does: at most
 * pool.max_wait_ms (500), then 53300 naming the pool. Here the only server stays in a
 * transaction: the waiter must not wait for good. */
Test(redteam21, waiter_queued_during_pause_gets_the_wait_timeout_after_resume, .init = start_txn1)
{
    PGconn *a = client(), *b = client(), *adm = proxy_console(&px, "carol", "unused");
    free(query_value(a, "BEGIN"));
    free(query_value(a, "SELECT 1")); /* a holds the only server */
    admin_ok(adm, "PAUSE app");
    cr_assert(PQsendQuery(b, "SELECT 'b ran'"));
    usleep(800 * 1000); /* longer than max_wait_ms: paused, so no timeout yet */
    struct pollfd pfd = {.fd = PQsocket(b), .events = POLLIN};
    cr_expect_eq(poll(&pfd, 1, 0), 0, "a paused waiter was answered");
    admin_ok(adm, "RESUME app");
    double t0 = now_s();
    PGresult *r = first_result_within(b, 4);
    cr_expect_not_null(r, "after RESUME the waiter waited %.1f s and more for a busy pool",
                       now_s() - t0);
    if (r) {
        cr_expect_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE) ?: "", "53300", "%s",
                         PQresultErrorMessage(r));
        cr_expect(strstr(PQresultErrorMessage(r), "\"app\""), "names the pool: %s",
                  PQresultErrorMessage(r));
        PQclear(r);
    }
    free(query_value(a, "COMMIT"));
    PQfinish(a);
    PQfinish(b);
    PQfinish(adm);
}

/* "Pool sizes and timeouts apply at once" (README): a reload that lowers pool.max_wait_ms
 * from 20 s to 300 ms while a client waits for the pool's only server (held in a
 * transaction): the waiter gets 53300 naming the pool within a few seconds, not 20 s later. */
Test(redteam21, reload_lowering_max_wait_applies_to_clients_already_waiting)
{
    start_mode("transaction", 1, 20000);
    PGconn *a = client(), *b = client();
    free(query_value(a, "BEGIN"));
    free(query_value(a, "SELECT 1"));
    cr_assert(PQsendQuery(b, "SELECT 'b ran'"));
    usleep(200 * 1000);
    static char y[16384];
    conf_edited(y, sizeof(y), "transaction", 1, 300, NULL, NULL, NULL);
    reload_taken(y);
    double t0 = now_s();
    PGresult *r = first_result_within(b, 4);
    cr_expect_not_null(r, "a waiter kept the old 20 s wait after a reload set 300 ms (%.1f s)",
                       now_s() - t0);
    if (r) {
        cr_expect_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE) ?: "", "53300", "%s",
                         PQresultErrorMessage(r));
        PQclear(r);
    }
    free(query_value(a, "COMMIT"));
    PQfinish(a);
    PQfinish(b);
}

/* Two clients pipeline five Syncs each (libpq pipeline mode) into a pool of one server in
 * transaction pooling; the pool is paused in the middle of their pipelines and resumed: each
 * gets exactly its own replies, in order, none lost or doubled. */
Test(redteam21, pause_mid_pipeline_gives_each_client_its_own_replies, .init = start_txn1_long)
{
    enum { N = 5 };
    PGconn *adm = proxy_console(&px, "carol", "unused"), *c[2] = {client(), client()};
    char sql[128];
    for (int k = 0; k < 2; k++) {
        cr_assert(PQenterPipelineMode(c[k]));
        for (int i = 0; i < N; i++) {
            snprintf(sql, sizeof(sql), "SELECT 'c%d-%d' FROM pg_sleep(0.05)", k, i);
            cr_assert(PQsendQueryParams(c[k], sql, 0, NULL, NULL, NULL, NULL, 0));
            cr_assert(PQpipelineSync(c[k]));
        }
        cr_assert_eq(PQflush(c[k]), 0);
    }
    usleep(120 * 1000);
    admin_ok(adm, "PAUSE app");
    usleep(400 * 1000);
    admin_ok(adm, "RESUME app");
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < N; i++) {
            PGresult *r = pipe_next(c[k], 5);
            cr_assert_not_null(r, "client %d: no reply %d", k, i);
            cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "client %d reply %d: %s", k, i,
                         PQresultErrorMessage(r));
            snprintf(sql, sizeof(sql), "c%d-%d", k, i);
            cr_expect_str_eq(PQgetvalue(r, 0, 0), sql, "client %d got another reply", k);
            PQclear(r);
            r = pipe_next(c[k], 5); /* the end of that query */
            cr_expect_null(r);
            PQclear(r);
            r = pipe_next(c[k], 5);
            cr_assert_eq(PQresultStatus(r), PGRES_PIPELINE_SYNC, "client %d sync %d", k, i);
            PQclear(r);
        }
        cr_assert(PQexitPipelineMode(c[k]));
        EXPECT_QUERY_VALUE(c[k], "SELECT 'after'", "after", "client %d goes on", k);
        PQfinish(c[k]);
    }
    PQfinish(adm);
}

/* PAUSE app with one client in a transaction and one waiting (paused); a reload removes app:
 * both are told 57P01 in bounded time (never left waiting for good on a pool nobody can
 * resume by its old name), no COMMIT of the open transaction is reported, and the proxy
 * serves the other databases. */
Test(redteam21, pause_then_reload_removing_the_database_ends_its_clients, .init = start_txn1)
{
    PGconn *direct = pg_admin("lp_test");
    pg_owned_table(direct, "rt21_removed", "v int");
    PGconn *a = client(), *b = client(), *adm = proxy_console(&px, "carol", "unused");
    free(query_value(a, "BEGIN"));
    free(query_value(a, "INSERT INTO rt21_removed VALUES (1)"));
    admin_ok(adm, "PAUSE app");
    cr_assert(PQsendQuery(b, "INSERT INTO rt21_removed VALUES (2)"));
    usleep(200 * 1000);
    static char y[16384];
    conf_edited(y, sizeof(y), "transaction", 1, 500, NULL, "  app:\n", "  app_gone:\n");
    console_reload_taken(adm, y);
    PGresult *r = first_result_within(b, 4);
    cr_expect(r == NULL ? PQstatus(b) == CONNECTION_BAD : PQresultStatus(r) != PGRES_COMMAND_OK,
              "the paused waiter of a removed database was served or left waiting");
    if (r)
        cr_expect_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE) ?: "", "57P01", "%s",
                         PQresultErrorMessage(r));
    PQclear(r);
    r = PQexec(a, "COMMIT");
    cr_expect_neq(PQresultStatus(r), PGRES_COMMAND_OK, "COMMIT reported on a removed database");
    PQclear(r);
    PQfinish(a);
    PQfinish(b);
    for (int i = 0; i < 50 && pg_long(direct, "SELECT count(*) FROM pg_stat_activity WHERE "
                                              "query LIKE 'INSERT INTO rt21_removed%' AND "
                                              "state <> 'idle'") > 0;
         i++)
        usleep(20 * 1000);
    cr_expect_eq(pg_long(direct, "SELECT count(*) FROM rt21_removed"), 0,
                 "a row of a client told it failed was committed");
    PGconn *o = proxy_connect(&px, "alice", "alice-secret", "app_md5", NULL);
    cr_expect(PQstatus(o) == CONNECTION_OK, "%s", PQerrorMessage(o));
    EXPECT_QUERY_VALUE(o, "SELECT 'other db'", "other db", "other databases serve");
    PQfinish(o);
    PQfinish(adm);
    pg_exec_ok(direct, "DROP TABLE rt21_removed");
    PQfinish(direct);
}

/* A reload that newly masks the client in the middle of its COPY FROM STDIN: the README has a
 * masked client whose transaction was open over the reload disconnected. The COPY must then
 * fail whole: not reported done, no row of it committed, and the proxy serves. */
Test(redteam21, copy_in_when_masking_newly_applies_fails_whole, .init = start_txn2)
{
    PGconn *direct = pg_admin("lp_test");
    pg_owned_table(direct, "rt21_copy_mask", "v int, s text");
    PGconn *adm = proxy_console(&px, "carol", "unused"), *c = client();
    PGresult *r = PQexec(c, "COPY rt21_copy_mask (v, s) FROM STDIN");
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_IN, "%s", PQerrorMessage(c));
    PQclear(r);
    static char chunk[1 << 20];
    size_t n = copy_chunk(direct, 1, 3000, chunk, sizeof(chunk));
    cr_assert_eq(PQputCopyData(c, chunk, (int)n), 1);
    cr_assert_eq(PQflush(c), 0);
    static char y[16384];
    conf_edited(y, sizeof(y), "transaction", 2, 5000, ADMIN MASK_RULES, NULL, NULL);
    console_reload_taken(adm, y);
    n = copy_chunk(direct, 3001, 6000, chunk, sizeof(chunk));
    bool sent = PQputCopyData(c, chunk, (int)n) == 1 && PQflush(c) == 0;
    sent = sent && PQputCopyEnd(c, NULL) == 1;
    r = first_result_within(c, 5);
    cr_expect(r || PQstatus(c) == CONNECTION_BAD, "the COPY hangs");
    cr_expect(!r || PQresultStatus(r) != PGRES_COMMAND_OK, "a COPY over the reload reported done");
    PQclear(r);
    cr_expect_eq(pg_long(direct, "SELECT count(*) FROM rt21_copy_mask"), 0,
                 "rows of a failed COPY were committed");
    PQfinish(c);
    c = client();
    EXPECT_QUERY_VALUE(c, "SELECT 'after'", "after", "the proxy serves");
    PQfinish(c);
    PQfinish(adm);
    pg_exec_ok(direct, "DROP TABLE rt21_copy_mask");
    PQfinish(direct);
}

/* A client already waiting for the pool's only server when PAUSE comes: the server is freed
 * during the PAUSE, but the pool is paused, so it is not handed out. PAUSE "holds new
 * transactions (they wait, without timeout)" (README): the waiter is held, and served on
 * RESUME; it must not be disconnected with 53300 "no server connection available ...
 * (pool.size 1)" while a server sits idle because of the PAUSE. */
Test(redteam21, waiter_queued_before_pause_is_held_not_timed_out, .init = start_txn1)
{
    PGconn *a = client(), *b = client(), *adm = proxy_console(&px, "carol", "unused");
    free(query_value(a, "BEGIN"));
    free(query_value(a, "SELECT 1"));
    cr_assert(PQsendQuery(b, "SELECT 'b ran'")); /* waits for a's server */
    usleep(100 * 1000);
    admin_ok(adm, "PAUSE app");
    free(query_value(a, "COMMIT")); /* the server is idle now, held by the PAUSE */
    usleep(900 * 1000);             /* longer than max_wait_ms (500) */
    admin_ok(adm, "RESUME app");
    PGresult *r = first_result_within(b, 4);
    cr_assert_not_null(r, "the waiter hangs after RESUME");
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "a waiter held by PAUSE was failed: %s",
                 PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(a);
    PQfinish(b);
    PQfinish(adm);
}

/* A reload shrinks the pool (2 -> 1) while both servers are in transactions and three
 * clients wait in line: the freed server serves them in the order they asked (FIFO), each
 * gets its own answer, and none is dropped while the other server stays busy. */
Test(redteam21, reload_shrinking_the_pool_serves_waiters_in_order)
{
    start_mode("transaction", 2, 5000);
    PGconn *a = client(), *b = client(), *w[3];
    free(query_value(a, "BEGIN"));
    free(query_value(a, "SELECT 1"));
    free(query_value(b, "BEGIN"));
    free(query_value(b, "SELECT 1"));
    char sql[128];
    for (int i = 0; i < 3; i++) {
        w[i] = client();
        snprintf(sql, sizeof(sql), "SELECT %d, clock_timestamp()::text", i);
        cr_assert(PQsendQuery(w[i], sql));
        usleep(100 * 1000);
    }
    static char y[16384];
    conf_edited(y, sizeof(y), "transaction", 1, 5000, NULL, NULL, NULL);
    reload_taken(y);
    free(query_value(a, "COMMIT")); /* one server for the three, b's stays busy */
    char when[3][64];
    for (int i = 0; i < 3; i++) {
        PGresult *r = first_result_within(w[i], 4);
        cr_assert_not_null(r, "waiter %d hangs", i);
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "waiter %d: %s", i,
                     PQresultErrorMessage(r));
        cr_expect_eq(atoi(PQgetvalue(r, 0, 0)), i, "waiter %d got another's answer", i);
        snprintf(when[i], sizeof(when[i]), "%s", PQgetvalue(r, 0, 1));
        PQclear(r);
    }
    cr_expect(strcmp(when[0], when[1]) < 0 && strcmp(when[1], when[2]) < 0,
              "served out of order: %s, %s, %s", when[0], when[1], when[2]);
    free(query_value(b, "COMMIT"));
    for (int i = 0; i < 3; i++)
        PQfinish(w[i]);
    PQfinish(a);
    PQfinish(b);
}

/* ---- 5. pool mode switched by a reload ------------------------------------------------ */

/* A client of a session-pooled database set a session setting (search_path to its own
 * schema, a custom setting) and made a temporary table; a reload switches the database to
 * transaction pooling. The README promises busy servers are replaced "when their client lets
 * go": a session client lets go when it leaves. Its session must go on whole, or it must be
 * told (an error, 57P01): never go on silently without its settings, with its INSERTs landing
 * in another schema's table of the same name. */
Test(redteam21, session_client_keeps_its_session_across_a_reload_to_transaction_mode,
     .init = start_session2)
{
    PGconn *direct = pg_admin("lp_test");
    pg_exec_ok(direct, "DROP SCHEMA IF EXISTS rt21_own CASCADE");
    pg_exec_ok(direct, "CREATE SCHEMA rt21_own AUTHORIZATION lp_server");
    pg_owned_table(direct, "rt21_own.rt21_mode", "v int");
    pg_owned_table(direct, "public.rt21_mode", "v int");
    PGconn *c = client();
    free(query_value(c, "SET search_path TO rt21_own, public"));
    free(query_value(c, "SET rt21.marker = 'mine'"));
    free(query_value(c, "CREATE TEMP TABLE rt21_tmp (v int)"));
    free(query_value(c, "INSERT INTO rt21_mode VALUES (1)"));
    static char y[16384];
    conf_edited(y, sizeof(y), "transaction", 2, 3000, NULL, NULL, NULL);
    reload_taken(y);
    /* (the first transaction after the reload may still run on the old server) */
    PGresult *r = PQexec(c, "SELECT 1");
    PQclear(r);
    r = PQexec(c, "INSERT INTO rt21_mode VALUES (2)");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    cr_expect_eq(pg_long(direct, "SELECT count(*) FROM public.rt21_mode"), 0,
                 "the session's INSERT landed in public.rt21_mode: its search_path was lost "
                 "without a word");
    if (ok) {
        char *v = query_value(c, "SELECT coalesce(current_setting('rt21.marker', true), '')");
        cr_expect_str_eq(v, "mine", "the session's setting is gone");
        free(v);
        cr_expect_str_eq(query_sqlstate(c, "SELECT count(*) FROM rt21_tmp"), "",
                         "the session's temporary table is gone");
        cr_expect_eq(pg_long(direct, "SELECT count(*) FROM rt21_own.rt21_mode"), 2);
    }
    PQfinish(c);
    pg_exec_ok(direct, "DROP SCHEMA rt21_own CASCADE");
    pg_exec_ok(direct, "DROP TABLE public.rt21_mode");
    PQfinish(direct);
}

/* The other way: a transaction-pooled client set its search_path (lakeproxy carries it from
 * server to server, README); a reload switches the database to session pooling. Its next
 * server must get the setting too: its INSERTs land in its own schema's table. */
Test(redteam21, transaction_client_keeps_its_settings_across_a_reload_to_session_mode,
     .init = start_txn2)
{
    PGconn *direct = pg_admin("lp_test");
    pg_exec_ok(direct, "DROP SCHEMA IF EXISTS rt21_own_t CASCADE");
    pg_exec_ok(direct, "CREATE SCHEMA rt21_own_t AUTHORIZATION lp_server");
    pg_owned_table(direct, "rt21_own_t.rt21_mode_t", "v int");
    pg_owned_table(direct, "public.rt21_mode_t", "v int");
    PGconn *c = client();
    free(query_value(c, "SET search_path TO rt21_own_t, public"));
    free(query_value(c, "INSERT INTO rt21_mode_t VALUES (1)"));
    static char y[16384];
    conf_edited(y, sizeof(y), "session", 2, 3000, NULL, NULL, NULL);
    reload_taken(y);
    for (int i = 0; i < 2; i++) {
        PGresult *r = PQexec(c, "INSERT INTO rt21_mode_t VALUES (2)");
        cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
        PQclear(r);
    }
    EXPECT_QUERY_VALUE(c, "SHOW search_path", "rt21_own_t, public", "the setting is lost");
    cr_expect_eq(pg_long(direct, "SELECT count(*) FROM public.rt21_mode_t"), 0,
                 "the client's INSERT landed in public.rt21_mode_t");
    cr_expect_eq(pg_long(direct, "SELECT count(*) FROM rt21_own_t.rt21_mode_t"), 3);
    PQfinish(c);
    pg_exec_ok(direct, "DROP SCHEMA rt21_own_t CASCADE");
    pg_exec_ok(direct, "DROP TABLE public.rt21_mode_t");
    PQfinish(direct);
}

/* ---- 6. the console's SHOWs while clients pipeline ------------------------------------ */

/* Four clients pipeline queries tagged with their own number while the console runs every
 * SHOW, PAUSE/RESUME and RELOAD between their batches: each client gets its own replies, in
 * order, and the console answers each command. */
Test(redteam21, console_shows_while_clients_pipeline_give_nobody_another_reply, .init = start_txn2)
{
    enum { K = 4, N = 20 };
    static const char *const shows[] = {
        "SHOW POOLS",     "SHOW CLIENTS", "SHOW SERVERS", "SHOW STATS", "SHOW CONFIG",
        "SHOW DATABASES", "SHOW QUERIES", "PAUSE app",    "RESUME app", "RELOAD"};
    PGconn *adm = proxy_console(&px, "carol", "unused"), *c[K];
    char sql[128];
    for (int k = 0; k < K; k++) {
        c[k] = client();
        cr_assert(PQenterPipelineMode(c[k]));
    }
    for (int round = 0; round < 3; round++) {
        for (int k = 0; k < K; k++) {
            for (int i = 0; i < N; i++) {
                snprintf(sql, sizeof(sql), "SELECT 'k%d-r%d-i%d'", k, round, i);
                cr_assert(PQsendQueryParams(c[k], sql, 0, NULL, NULL, NULL, NULL, 0));
                if (i % 4 == 3)
                    cr_assert(PQpipelineSync(c[k]));
            }
            cr_assert_eq(PQflush(c[k]), 0);
        }
        for (size_t s = 0; s < sizeof(shows) / sizeof(shows[0]); s++) {
            PGresult *r = PQexec(adm, shows[s]);
            cr_expect(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK,
                      "%s: %s", shows[s], PQerrorMessage(adm));
            PQclear(r);
        }
        for (int k = 0; k < K; k++)
            for (int i = 0; i < N; i++) {
                PGresult *r = pipe_next(c[k], 5);
                cr_assert_not_null(r, "client %d round %d: no reply %d", k, round, i);
                cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
                snprintf(sql, sizeof(sql), "k%d-r%d-i%d", k, round, i);
                cr_expect_str_eq(PQgetvalue(r, 0, 0), sql, "client %d got another reply", k);
                PQclear(r);
                cr_expect_null(pipe_next(c[k], 5));
                if (i % 4 == 3) {
                    r = pipe_next(c[k], 5);
                    cr_assert_eq(PQresultStatus(r), PGRES_PIPELINE_SYNC);
                    PQclear(r);
                }
            }
    }
    for (int k = 0; k < K; k++)
        PQfinish(c[k]);
    PQfinish(adm);
}
