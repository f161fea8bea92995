/* test_qtrack.c: matching query records to server replies, driven message by message on a
 * client with no socket: a pipeline deeper than the records kept is counted as untracked (never
 * misattributed) and recording resumes once its replies have passed; Syncs PostgreSQL ignores
 * during copy-in do not shift later records; statements of one simple Query count apart; each
 * portal, named or not, counts under the statement it was bound to. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "objects.h"
#include "params.h"
#include "qtrack.h"
#include "stats.h"

static struct worker w;
static struct client c;

static void setup(void)
{
    memset(&w, 0, sizeof(w));
    memset(&c, 0, sizeof(c));
    w.stats = stats_new(100, 256, NULL);
    cr_assert_not_null(w.stats);
    c.w = &w;
}

static void teardown(void)
{
    qtrack_free(&c);
    stats_free(w.stats);
}

/* Sends client message type with body (len bytes) through the tracker. */
static void client_msg(uint8_t type, const void *body, size_t len)
{
    if (qtrack_wants_client_msg(&c, type))
        qtrack_client_msg(&c, type, (uint32_t)len, body);
}

static void query(const char *sql)
{
    client_msg('Q', sql, strlen(sql) + 1);
}

/* Parse of sql as statement stmt ("": the unnamed one). */
static void parse_as(const char *stmt, const char *sql)
{
    struct buf b;
    buf_init(&b);
    buf_put_str(&b, stmt);
    buf_put_str(&b, sql);
    buf_put_u16(&b, 0);
    client_msg('P', b.data, b.len);
    buf_free(&b);
}

/* Bind of statement stmt to portal portal (each "" for the unnamed one). */
static void bind_as(const char *portal, const char *stmt)
{
    struct buf b;
    buf_init(&b);
    buf_put_str(&b, portal);
    buf_put_str(&b, stmt);
    buf_put_u16(&b, 0);
    buf_put_u16(&b, 0);
    buf_put_u16(&b, 0);
    client_msg('B', b.data, b.len);
    buf_free(&b);
}

/* Parse and Bind of the unnamed statement and portal for sql. */
static void parse_bind(const char *sql)
{
    parse_as("", sql);
    bind_as("", "");
}

/* Execute of portal portal, no row limit. */
static void execute_portal(const char *portal)
{
    struct buf b;
    buf_init(&b);
    buf_put_str(&b, portal);
    buf_put_u32(&b, 0);
    client_msg('E', b.data, b.len);
    buf_free(&b);
}

static void execute(void)
{
    execute_portal("");
}

static void sync_msg(void)
{
    client_msg('S', "", 0);
}

/* A server message relayed to the client. */
static void server_msg(uint8_t type, const char *body)
{
    size_t len = body ? strlen(body) + 1 : 0;
    if (type == 'Z')
        len = 1;
    qtrack_server_msg(&c, type, (uint32_t)len, (const uint8_t *)body);
}

/* The calls and rows counted for the text sql, once the relay has settled (the messages so
 * far came in one read). */
static uint64_t calls_of(const char *sql, uint64_t *rows)
{
    qtrack_settle(&c);
    const struct stats_fp *f = stats_find(w.stats, stats_fingerprint(w.stats, sql, true));
    if (rows)
        *rows = f ? f->rows : 0;
    return f ? f->calls : 0;
}

Test(qtrack, a_pipeline_deeper_than_the_cap_counts_the_rest_untracked_and_resumes, .init = setup,
     .fini = teardown)
{
    enum { N = 40000 }; /* Execute + Sync each: 80,000 records, more than the 65,536 kept */
    parse_bind("SELECT 1");
    for (int i = 0; i < N; i++) {
        execute();
        sync_msg();
    }
    query("SELECT a FROM late"); /* behind the gap: not recorded either */
    for (int i = 0; i < N; i++) {
        server_msg('D', NULL);
        server_msg('C', "SELECT 1");
        server_msg('Z', "I");
    }
    server_msg('C', "SELECT 1");
    server_msg('Z', "I");
    uint64_t rows;
    uint64_t tracked = calls_of("SELECT 1", &rows);
    cr_expect_eq(tracked, 32768);
    cr_expect_eq(rows, 32768);
    cr_expect_eq(tracked + w.queries_untracked, N + 1, "every query counted once");
    cr_expect_eq(calls_of("SELECT a FROM late", NULL), 0);
    query("SELECT b FROM again"); /* the gap has passed: recorded again */
    server_msg('D', NULL);
    server_msg('C', "SELECT 1");
    server_msg('Z', "I");
    cr_expect_eq(calls_of("SELECT b FROM again", &rows), 1);
    cr_expect_eq(rows, 1);
}

/* A finished query is accounted for once the relay that saw its end has sent on (settle), not
 * before; one finished after it accounts for it too; the figures are those of its end. */
Test(qtrack, a_finished_query_is_accounted_for_at_the_settle_after_its_end, .init = setup,
     .fini = teardown)
{
    query("SELECT 1 FROM one");
    server_msg('D', NULL);
    server_msg('C', "SELECT 1");
    server_msg('Z', "I");
    uint64_t fp = stats_fingerprint(w.stats, "SELECT 1 FROM one", true);
    const struct stats_fp *f = stats_find(w.stats, fp);
    cr_assert_not_null(f, "the text was analysed when it was sent");
    cr_expect_eq(f->calls, 0, "accounted for before the relay sent the replies on");
    query("SELECT 1 FROM two");
    server_msg('C', "SELECT 0");
    server_msg('Z', "I");
    cr_expect_eq(f->calls, 1, "the next query's end accounts for the one before");
    cr_expect_eq(f->rows, 1);
    uint64_t rows;
    cr_expect_eq(calls_of("SELECT 1 FROM two", &rows), 1);
    cr_expect_eq(rows, 0);
    cr_expect_eq(calls_of("SELECT 1 FROM one", NULL), 1, "counted once");
}

static void note_app(void *arg, const struct stats_table *t)
{
    snprintf(arg, 64, "%s", t->app);
}

/* A query counts under the application_name its client had when it finished, even when a
 * ParameterStatus relayed in the same read (SET application_name) changes it before the
 * settle. */
Test(qtrack, a_query_counts_under_the_application_name_it_finished_with, .init = setup,
     .fini = teardown)
{
    param_put(&c.wanted, "application_name", "before");
    query("SELECT a FROM items");
    server_msg('D', NULL);
    server_msg('C', "SELECT 1");
    server_msg('Z', "I");
    param_put(&c.wanted, "application_name", "after"); /* the same read, before the settle */
    qtrack_settle(&c);
    char app[64] = "";
    stats_each_table(w.stats, note_app, app);
    cr_expect_str_eq(app, "before");
    param_clear(&c.wanted);
}

/* libpq's extended COPY FROM STDIN: Execute and Sync, CopyInResponse, CopyData, CopyDone and
 * Sync; PostgreSQL answers only the second Sync. */
Test(qtrack, syncs_ignored_during_copy_in_do_not_shift_later_queries, .init = setup,
     .fini = teardown)
{
    for (int round = 0; round < 3; round++) {
        parse_bind("COPY t FROM STDIN");
        execute();
        sync_msg();
        server_msg('1', NULL);
        server_msg('2', NULL);
        server_msg('G', NULL);
        client_msg('d', "1\n", 2);
        client_msg('c', "", 0);
        sync_msg();
        server_msg('C', "COPY 4");
        server_msg('Z', "I");
        query("SELECT id FROM items WHERE id < 3");
        server_msg('T', NULL);
        server_msg('D', NULL);
        server_msg('D', NULL);
        server_msg('C', "SELECT 2");
        server_msg('Z', "I");
    }
    uint64_t rows;
    cr_expect_eq(calls_of("COPY t FROM STDIN", &rows), 3);
    cr_expect_eq(rows, 12, "rows from the COPY tag");
    cr_expect_eq(calls_of("SELECT id FROM items WHERE id < 3", &rows), 3);
    cr_expect_eq(rows, 6);
}

/* Three statements in one Query; the second fails, so the third never runs. */
Test(qtrack, statements_of_one_query_count_apart_until_an_error, .init = setup, .fini = teardown)
{
    query("SELECT a FROM t; UPDATE t SET a = 1 WHERE b = 2; SELECT c FROM u");
    server_msg('T', NULL);
    server_msg('D', NULL);
    server_msg('C', "SELECT 1");
    server_msg('C', "UPDATE 7");
    server_msg('T', NULL);
    server_msg('C', "SELECT 0");
    server_msg('Z', "I");
    query("SELECT a FROM t; UPDATE t SET a = 1 WHERE b = 3; SELECT c FROM u");
    server_msg('T', NULL);
    server_msg('C', "SELECT 0");
    static const char err[] = "SERROR\0C40001\0Mboom\0";
    qtrack_server_msg(&c, 'E', sizeof(err), (const uint8_t *)err);
    server_msg('Z', "I");
    uint64_t rows;
    cr_expect_eq(calls_of("SELECT a FROM t", &rows), 2);
    cr_expect_eq(rows, 1);
    cr_expect_eq(calls_of("UPDATE t SET a = 1 WHERE b = 2", &rows), 2);
    cr_expect_eq(rows, 7, "rows from the UPDATE tag");
    const struct stats_fp *u =
        stats_find(w.stats, stats_fingerprint(w.stats, "UPDATE t SET a = 1 WHERE b = 2", true));
    cr_expect_eq(u->errors, 1);
    cr_expect_eq(calls_of("SELECT c FROM u", NULL), 1, "skipped after the error: no call");
    cr_expect_eq(w.queries_skipped, 1);
}

/* Named and unnamed statements and portals at once: each Execute counts under the text of the
 * statement its portal was bound to, and a portal bound again counts under its new one. */
Test(qtrack, each_portal_counts_under_the_statement_it_was_bound_to, .init = setup,
     .fini = teardown)
{
    parse_as("s1", "SELECT a FROM named");
    parse_as("", "SELECT b FROM unnamed");
    bind_as("p1", "s1");
    bind_as("", "");
    execute_portal("");
    execute_portal("p1");
    sync_msg();
    bind_as("p1", ""); /* p1 now runs the unnamed statement, the unnamed portal s1 */
    bind_as("", "s1");
    execute_portal("p1");
    execute_portal("");
    execute_portal("");
    sync_msg();
    for (int i = 0; i < 5; i++) {
        server_msg('D', NULL);
        server_msg('C', "SELECT 1");
        if (i == 1 || i == 4)
            server_msg('Z', "I");
    }
    cr_expect_eq(calls_of("SELECT a FROM named", NULL), 3);
    cr_expect_eq(calls_of("SELECT b FROM unnamed", NULL), 2);
}
