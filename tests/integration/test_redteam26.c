/* test_redteam26.c: red-team round 26 against column masking: pipelines of masked and unmasked
 * batches read late (one client, and two masking classes sharing one server), re-Parse of the
 * unnamed statement between Bind and Execute with Describes of statement and portal, portals
 * fetched in parts across Syncs and Flushes inside a transaction, another class's statement
 * names, errors carrying row values (unique, deferred unique, exclusion, check, not-null,
 * partition routing), RETURNING of writes, whole-row / JSON / aggregate / LATERAL / SETOF
 * record tricks, COPY ... TO STDOUT of queries, and simple-protocol multi-statement strings
 * with search_path games. Each test asserts the SAFE behaviour: a failing test is a finding.
 * RT26_DEBUG=1 prints every message read.
 *
 * Finding (multiple_inheritance_other_parent_reads_masked_rows): a rule on a table's column
 * (rt26_mia.x) does not mask the same rows read through another parent of one of its children:
 * rt26_mic INHERITS (rt26_mia, rt26_mib), so SELECT x FROM rt26_mib (or SELECT *, or the whole
 * row b / row_to_json(b)) returns rt26_mic's and its child rt26_mig's values unmasked.
 * PostgreSQL names rt26_mib as the rows' origin, and the masking family of a rule's table (its
 * parents and every child of those) never includes a child's other parents. The reverse (a
 * rule on the child of two parents) masks both parents. A pure-projection view over the other
 * parent (rt26_mibv) leaks the same way, and so does COPY (SELECT * FROM rt26_mib) TO STDOUT;
 * UPDATE rt26_mib SET x = ... writes rt26_mic's masked column, which masked clients may not.
 *
 * Finding (new_child_named_like_an_older_relation_elsewhere): the "newer than the masking
 * catalog" refusal of whole rows and COPY TO for a relation made after the catalog's last
 * read compares relation names only (masksql.c msql_is_newer_relation: the catalog's 'n'
 * list holds relnames without schemas). A new child of a masked table named like an older
 * relation in another schema (public.rt26_nc beside rt26x.rt26_nc) is not taken for new:
 * COPY public.rt26_nc TO STDOUT sends its masked column unmasked (in every protocol, as COPY
 * never starts a catalog read) and SELECT k FROM public.rt26_nc k sends the whole row once,
 * until the catalog is read again (catalog_refresh_s). A child with a fresh name (rt26_nd) is
 * refused. The masked client can plant the colliding name itself
 * (a_name_planted_by_the_client_hides_a_new_child: its own schema and table, both allowed,
 * named as the administrator's next child or monthly partition will be, then read once). */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "maskcheck.h"
#include "rawproto.h"

static struct proxy px;

#define RT26_YAML                                                                                  \
    "  rtm: {auth: trust}\n"                                                                       \
    "  rtu: {auth: trust, groups: [auditors]}\n"                                                   \
    "groups:\n"                                                                                    \
    "  auditors: {role: auditor}\n"                                                                \
    "masking:\n"                                                                                   \
    "  databases: [app]\n"                                                                         \
    "  rules:\n"                                                                                   \
    "    - {column: public.customers.email, function: email, unless: {groups: [auditors]}}\n"      \
    "    - {column: public.customers.ssn, function: last4, unless: {groups: [auditors]}}\n"        \
    "    - {column: public.customers.salary, function: redact, unless: {groups: [auditors]}}\n"    \
    "    - {column: public.accounts_eu.iban, function: redact, unless: {groups: [auditors]}}\n"    \
    "    - {column: public.rt26_acct.ssn, function: last4, unless: {groups: [auditors]}}\n"        \
    "    - {column: public.rt26_part.ssn, function: last4, unless: {groups: [auditors]}}\n"        \
    "    - {column: public.rt26_mia.x, function: redact, unless: {groups: [auditors]}}\n"          \
    "    - {column: public.rt26_mif.y, function: redact, unless: {groups: [auditors]}}\n"          \
    "    - {column: public.rt26_np.ssn, function: last4, unless: {groups: [auditors]}}\n"

/* rt26_acct: a masked ssn under unique (immediate and deferred), exclusion, check and not-null
 * constraints, so that writes to its other columns fail with errors about its rows;
 * rt26_part: partitioned by a masked column (routing errors quote the key). */
static void make_objects(void)
{
    mask_admin_sql("DO $$ BEGIN PERFORM pg_advisory_xact_lock(2626); "
                   "IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'rt26_acct') THEN "
                   "CREATE TABLE rt26_acct (id int PRIMARY KEY, owner text, owner2 text, "
                   "ssn text NOT NULL, note text NOT NULL CHECK (note <> 'bad'), "
                   "CONSTRAINT rt26_u1 UNIQUE (owner, ssn), "
                   "CONSTRAINT rt26_u2 UNIQUE (owner2, ssn) DEFERRABLE INITIALLY DEFERRED); "
                   "INSERT INTO rt26_acct VALUES (1, 'a', 'a', '111-22-3333', 'n'), "
                   "(2, 'b', 'b', '111-22-3333', 'n'), (3, 'c', 'c', '444-55-6666', 'n'); "
                   "GRANT SELECT, INSERT, UPDATE, DELETE ON rt26_acct TO PUBLIC; "
                   "CREATE TABLE rt26_part (id int, ssn text) PARTITION BY LIST (ssn); "
                   "CREATE TABLE rt26_part1 PARTITION OF rt26_part FOR VALUES IN ('111-22-3333'); "
                   "INSERT INTO rt26_part VALUES (1, '111-22-3333'); "
                   "GRANT SELECT, INSERT, UPDATE, DELETE ON rt26_part, rt26_part1 TO PUBLIC; "
                   "END IF; END $$");
    /* multiple inheritance: rt26_mic inherits a masked parent (rt26_mia) and an unmasked
     * one (rt26_mib), rt26_mig inherits rt26_mic; rt26_mif (masked) inherits two parents */
    mask_admin_sql(
        "DO $$ BEGIN PERFORM pg_advisory_xact_lock(2626); "
        "IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'rt26_mia') THEN "
        "CREATE TABLE rt26_mia (id int, x text); CREATE TABLE rt26_mib (id int, x text); "
        "CREATE TABLE rt26_mic () INHERITS (rt26_mia, rt26_mib); "
        "CREATE TABLE rt26_mig () INHERITS (rt26_mic); "
        "INSERT INTO rt26_mic VALUES (1, 'mi-secret-1'); "
        "INSERT INTO rt26_mig VALUES (3, 'mi-secret-3'); "
        "INSERT INTO rt26_mib VALUES (9, 'plain'); "
        "CREATE TABLE rt26_mid (id int, y text); CREATE TABLE rt26_mie (id int, y text); "
        "CREATE TABLE rt26_mif () INHERITS (rt26_mid, rt26_mie); "
        "INSERT INTO rt26_mif VALUES (2, 'mi-secret-2'); "
        "CREATE VIEW rt26_mibv AS SELECT id, x AS contact FROM rt26_mib; "
        "GRANT SELECT ON rt26_mia, rt26_mib, rt26_mic, rt26_mig, rt26_mid, rt26_mie, "
        "rt26_mif, rt26_mibv TO PUBLIC; "
        "END IF; END $$");
}

static void start_rt26(void)
{
    make_objects();
    proxy_start_with(&px, "transaction", 2, 10000, RT26_YAML);
}

/* One server only: clients of both masking classes compete for it. */
static void start_rt26_one(void)
{
    make_objects();
    proxy_start_with(&px, "transaction", 1, 10000, RT26_YAML);
}

static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(redteam26, .init = start_rt26, .fini = stop_proxy, .timeout = 120);

/* ---- raw protocol helpers ---- */

struct seen {
    int rows, errors, suspended, zs, masked_ssn;
    bool closed;
    char first_err[256];
};

/* Reads every message up to the zs-th ReadyForQuery (or a close/timeout), expecting no secret
 * in any of them (nor a real salary in binary, when check_bin). Counts the DataRows holding a
 * masked SSN ("****3333"). */
static struct seen read_all(int fd, int zs, bool check_bin, const char *what)
{
    static unsigned char body[1 << 20];
    struct seen sn = {0};
    size_t len;
    int t;
    while (sn.zs < zs && (t = raw_read_msg(fd, body, sizeof(body), &len, 8000)) >= 0) {
        const char *s =
            strcmp(what, "exempt pipeline") == 0 ? NULL : mask_find_secret((const char *)body, len);
        cr_expect(!s, "[%s] message '%c' leaks \"%s\"", what, t, s ? s : "");
        if (check_bin && t == 'D')
            cr_expect(!mask_has_binary_salary(body, len), "[%s] DataRow holds a real salary", what);
        if (getenv("RT26_DEBUG"))
            fprintf(stderr, "RT26 [%.50s] %c %.*s\n", what, t,
                    t == 'E' || t == 'N' || t == 'D' || t == 'A' || t == 'd'
                        ? (int)(len > 200 ? 200 : len)
                        : 0,
                    (const char *)body);
        sn.rows += t == 'D';
        sn.suspended += t == 's';
        sn.zs += t == 'Z';
        if (t == 'D' && memmem(body, len, "****", 4))
            sn.masked_ssn++;
        if (t == 'E') {
            for (size_t i = 0; i < len && !sn.errors;) {
                char code = (char)body[i++];
                if (!code)
                    break;
                const char *v = (const char *)body + i;
                if (code == 'M')
                    snprintf(sn.first_err, sizeof(sn.first_err), "%s", v);
                i += strlen(v) + 1;
            }
            sn.errors++;
        }
    }
    if (sn.zs < zs)
        sn.closed = true;
    return sn;
}

static void send_buf_ok(int fd, struct buf *b)
{
    cr_assert(raw_send(fd, b));
}

/* ---- SQL attempts through libpq ---- */

/* Drains a COPY OUT, expecting no secret in it. */
static void drain_copy(PGconn *c, const char *sql)
{
    char *row;
    int n;
    while ((n = PQgetCopyData(c, &row, 0)) > 0) {
        const char *s = mask_find_secret(row, (size_t)n);
        cr_expect(!s, "[%s] COPY data leaks \"%s\": %.*s", sql, s ? s : "", n, row);
        PQfreemem(row);
    }
}

/* Expects no secret in any field of r's error (detail, hint, context, where ...). */
static void expect_error_fields_clean(const PGresult *r, const char *sql)
{
    static const int fields[] = {
        PG_DIAG_MESSAGE_PRIMARY, PG_DIAG_MESSAGE_DETAIL, PG_DIAG_MESSAGE_HINT, PG_DIAG_CONTEXT,
        PG_DIAG_INTERNAL_QUERY,  PG_DIAG_SCHEMA_NAME,    PG_DIAG_TABLE_NAME,   PG_DIAG_COLUMN_NAME,
        PG_DIAG_CONSTRAINT_NAME, PG_DIAG_DATATYPE_NAME};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const char *v = PQresultErrorField(r, fields[i]);
        const char *s = v ? mask_find_secret(v, strlen(v)) : NULL;
        cr_expect(!s, "[%s] error field '%c' leaks \"%s\": %s", sql, fields[i], s ? s : "", v);
    }
}

static int notices_leaked;

static void notice_rx(void *arg, const PGresult *r)
{
    const char *sql = arg;
    const char *m = PQresultErrorMessage(r);
    if (mask_find_secret(m, strlen(m))) {
        notices_leaked++;
        cr_expect(false, "[%s] notice leaks: %s", sql ? sql : "?", m);
    }
}

static PGconn *login(const char *user)
{
    PGconn *c = proxy_connect(&px, user, "pw", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "login as %s failed: %s", user, PQerrorMessage(c));
    PQsetNoticeReceiver(c, notice_rx, NULL);
    return c;
}

/* Runs sql as the masked client in the simple protocol, then in the extended one with text and
 * then binary results: refused or run, but never a secret in rows, errors, notices or COPY data.
 * Returns c, or a new login when the attempt closed it. */
static PGconn *attempt(PGconn *c, const char *sql)
{
    for (int mode = 0; mode < 3; mode++) {
        PQsetNoticeReceiver(c, notice_rx, (void *)sql);
        PGresult *r =
            mode == 0 ? PQexec(c, sql) : PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, mode - 1);
        for (; r; r = PQgetResult(c)) {
            if (PQresultStatus(r) == PGRES_COPY_OUT)
                drain_copy(c, sql);
            mask_expect_no_secret(r, sql);
            expect_error_fields_clean(r, sql);
            if (mode == 2)
                for (int i = 0; i < PQntuples(r); i++)
                    for (int j = 0; j < PQnfields(r); j++)
                        cr_expect(
                            !mask_has_binary_salary((const unsigned char *)PQgetvalue(r, i, j),
                                                    (size_t)PQgetlength(r, i, j)),
                            "[%s] binary row %d column %d holds a real salary", sql, i, j);
            if (getenv("RT26_DEBUG"))
                fprintf(stderr, "RT26 mode %d [%s]: %s %s (%d rows) %s\n", mode, sql,
                        PQresStatus(PQresultStatus(r)), PQcmdStatus(r), PQntuples(r),
                        PQresultErrorMessage(r));
            PQclear(r);
        }
        PQclear(PQexec(c, "ROLLBACK"));
        if (PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = login("rtm");
        }
    }
    return c;
}

static void attempt_all(const char *const *sqls, size_t n)
{
    PGconn *c = login("rtm");
    for (size_t i = 0; i < n; i++)
        c = attempt(c, sqls[i]);
    char *v = query_value(c, "SELECT 'still usable'");
    cr_expect_str_eq(v, "still usable");
    free(v);
    PQfinish(c);
}

/* ---- attacks: pipelines and the protocol ---- */

/* Forty rounds of a masked, an unmasked and a named binary masked statement, each in its own
 * portal, with a Sync after every third round and Flushes between: all sent before anything is
 * read, read only once everything piled up. */
Test(redteam26, a_pipeline_of_masked_and_unmasked_batches_read_late)
{
    int fd = raw_session(px.port, "rtm", "app");
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "nb", "SELECT salary, ssn, id FROM customers ORDER BY id");
    int syncs = 0;
    int16_t bin[1] = {1};
    for (int i = 0; i < 40; i++) {
        raw_put_parse(&b, "", "SELECT id, email, ssn, salary FROM customers ORDER BY id");
        raw_put_bind(&b, "", "");
        raw_put_execute(&b, "");
        raw_put_parse(&b, "", "SELECT id, name FROM customers ORDER BY id");
        raw_put_bind(&b, "", "");
        raw_put_execute(&b, "");
        mask_put_bind_fmt(&b, "pb", "nb", bin, 1);
        raw_put_execute_n(&b, "pb", 2);
        raw_put_execute_n(&b, "pb", 0);
        raw_put_close(&b, 'P', "pb");
        if (i % 3 == 2) {
            raw_put_empty(&b, 'S');
            syncs++;
        } else {
            raw_put_empty(&b, 'H');
        }
    }
    raw_put_empty(&b, 'S');
    syncs++;
    send_buf_ok(fd, &b);
    usleep(500 * 1000); /* replies pile up unread */
    struct seen sn = read_all(fd, syncs, true, "late pipeline");
    cr_expect(!sn.closed, "connection closed or timed out after %d of %d syncs", sn.zs, syncs);
    cr_expect(sn.errors == 0, "error: %s", sn.first_err);
    cr_expect(sn.rows == 40 * 9, "rows %d", sn.rows);
    cr_expect(sn.masked_ssn >= 40 * 3, "masked ssn rows %d", sn.masked_ssn);
    buf_free(&b);
    close(fd);
}

/* One server, a masked and an exempt client each pipelining the same statements without
 * reading: the server changes hands between their transactions many times; the masked client
 * must get only masked rows. */
Test(redteam26, two_masking_classes_pipelining_over_one_server, .init = start_rt26_one)
{
    int m = raw_session(px.port, "rtm", "app");
    int u = raw_session(px.port, "rtu", "app");
    struct buf bm, bu;
    buf_init(&bm);
    buf_init(&bu);
    for (int i = 0; i < 30; i++) {
        struct buf *b = &bm;
        for (int k = 0; k < 2; k++, b = &bu) {
            raw_put_parse(b, "", "SELECT id, email, ssn, salary FROM customers ORDER BY id");
            raw_put_bind(b, "", "");
            raw_put_execute(b, "");
            raw_put_empty(b, 'S');
            raw_put_query(b, "SELECT ssn, salary FROM customers; SELECT email FROM customers");
        }
    }
    /* interleave the sends in chunks so both clients' batches are in flight together */
    send_buf_ok(u, &bu);
    send_buf_ok(m, &bm);
    struct seen su = read_all(u, 60, false, "exempt pipeline");
    struct seen sm = read_all(m, 60, true, "masked pipeline");
    cr_expect(!sm.closed, "masked client closed after %d of 60 replies", sm.zs);
    cr_expect(sm.errors == 0, "masked error: %s", sm.first_err);
    cr_expect(sm.rows == 30 * 9, "masked rows %d", sm.rows);
    cr_expect(su.rows == 30 * 9, "exempt rows %d (errors %d: %s)", su.rows, su.errors,
              su.first_err);
    buf_free(&bm);
    buf_free(&bu);
    close(m);
    close(u);
}

/* The unnamed statement parsed again (unmasked text) between the Bind of a masked portal and its
 * Execute, Describes of the statement and of both portals in between, binary formats. */
Test(redteam26, unnamed_statement_reparsed_between_bind_and_execute)
{
    int fd = raw_session(px.port, "rtm", "app");
    struct buf b;
    buf_init(&b);
    int16_t bin[1] = {1}, mixed[4] = {1, 0, 1, 1};
    raw_put_parse(&b, "", "SELECT id, ssn, email, salary FROM customers ORDER BY id");
    mask_put_bind_fmt(&b, "p1", "", mixed, 4);
    mask_put_bind_fmt(&b, "", "", bin, 1);
    raw_put_parse(&b, "", "SELECT id, name FROM customers ORDER BY id");
    raw_put_describe(&b, 'S', "");
    mask_put_bind_fmt(&b, "p2", "", bin, 1);
    raw_put_describe(&b, 'P', "p2");
    raw_put_execute_n(&b, "p1", 1);
    raw_put_describe(&b, 'P', "p2");
    raw_put_execute_n(&b, "", 1);
    raw_put_execute_n(&b, "p2", 0);
    raw_put_execute_n(&b, "p1", 0);
    raw_put_execute_n(&b, "", 0);
    raw_put_empty(&b, 'S');
    send_buf_ok(fd, &b);
    struct seen sn = read_all(fd, 1, true, "reparsed unnamed");
    cr_expect(sn.errors == 0, "error: %s", sn.first_err);
    cr_expect(sn.rows == 9, "rows %d", sn.rows);
    buf_free(&b);
    close(fd);
}

/* A portal bound inside a transaction block, fetched a row at a time across Syncs and Flushes,
 * with an unmasked portal executed between, a Close of the statement it came from, and a SQL
 * cursor over the same rows fetched by FETCH in the simple protocol in between. */
Test(redteam26, portal_fetched_in_parts_across_syncs_and_flushes)
{
    int fd = raw_session(px.port, "rtm", "app");
    struct buf b;
    buf_init(&b);
    raw_query(fd, "BEGIN");
    read_all(fd, 1, false, "begin");
    int16_t bin[1] = {1};
    raw_put_parse(&b, "m", "SELECT salary, ssn, email FROM customers ORDER BY id");
    raw_put_parse(&b, "u", "SELECT id, name FROM customers ORDER BY id");
    mask_put_bind_fmt(&b, "pm", "m", bin, 1);
    raw_put_bind(&b, "pu", "u");
    raw_put_close(&b, 'S', "m");
    raw_put_execute_n(&b, "pm", 1);
    raw_put_empty(&b, 'H');
    send_buf_ok(fd, &b);
    usleep(100 * 1000);
    raw_put_execute_n(&b, "pu", 1);
    raw_put_execute_n(&b, "pm", 1);
    raw_put_empty(&b, 'S');
    raw_put_query(&b, "DECLARE k CURSOR FOR SELECT ssn, salary FROM customers ORDER BY id; "
                      "FETCH 1 FROM k");
    raw_put_describe(&b, 'P', "pu");
    raw_put_execute_n(&b, "pm", 1);
    raw_put_execute_n(&b, "pu", 0);
    raw_put_empty(&b, 'S');
    raw_put_bind(&b, "pf", "u");
    raw_put_query(&b, "FETCH ALL FROM k");
    raw_put_execute_n(&b, "pm", 0);
    raw_put_empty(&b, 'S');
    send_buf_ok(fd, &b);
    struct seen sn = read_all(fd, 4, true, "parts across syncs");
    cr_expect(sn.errors == 0, "error: %s", sn.first_err);
    cr_expect(sn.rows == 3 + 3 + 3, "rows %d", sn.rows);
    /* the SQL cursor executed as a protocol portal, binary, in parts */
    raw_put_query(&b, "DECLARE kb BINARY CURSOR FOR SELECT salary, ssn FROM customers");
    raw_put_parse(&b, "", "FETCH 2 FROM kb");
    mask_put_bind_fmt(&b, "", "", bin, 1);
    raw_put_execute_n(&b, "", 1);
    raw_put_execute_n(&b, "", 0);
    raw_put_describe(&b, 'P', "kb");
    raw_put_execute_n(&b, "kb", 0);
    raw_put_empty(&b, 'S');
    raw_put_query(&b, "COMMIT");
    send_buf_ok(fd, &b);
    sn = read_all(fd, 3, true, "binary cursor in parts");
    buf_free(&b);
    close(fd);
}

/* An exempt client prepares statements and a held cursor over the masked columns on the only
 * server; the masked client tries the same names, and prepares its own under one of them. */
Test(redteam26, another_classes_names_on_one_server, .init = start_rt26_one)
{
    int u = raw_session(px.port, "rtu", "app");
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "q", "SELECT ssn, email, salary FROM customers");
    raw_put_parse(&b, "q2", "SELECT ssn, email, salary FROM customers");
    raw_put_empty(&b, 'S');
    raw_put_query(&b, "DECLARE h CURSOR WITH HOLD FOR SELECT ssn, email FROM customers");
    send_buf_ok(u, &b);
    read_all(u, 2, false, "exempt prepares");

    int m = raw_session(px.port, "rtm", "app");
    raw_put_parse(&b, "q", "SELECT id, name FROM customers");
    raw_put_bind(&b, "", "q");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    raw_put_describe(&b, 'S', "q2");
    raw_put_bind(&b, "", "q2");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    raw_put_query(&b, "EXECUTE q2");
    raw_put_query(&b, "FETCH ALL FROM h");
    raw_put_query(&b, "MOVE BACKWARD ALL IN h; FETCH ALL FROM h");
    raw_put_describe(&b, 'P', "h");
    raw_put_execute(&b, "h");
    raw_put_empty(&b, 'S');
    send_buf_ok(m, &b);
    struct seen sn = read_all(m, 6, true, "other class's names");
    cr_expect(sn.rows == 3, "masked client got %d rows (only its own q's 3 expected)", sn.rows);
    close(m);
    close(u);
    buf_free(&b);
}

/* ---- attacks: values in errors and notices ---- */

Test(redteam26, constraint_and_routing_errors_quote_no_masked_value)
{
    static const char *const sqls[] = {
        /* unique (owner, ssn): the DETAIL quotes the key with the masked ssn */
        "UPDATE rt26_acct SET owner = 'a' WHERE id = 2",
        /* deferred: the error comes with COMMIT */
        "BEGIN; UPDATE rt26_acct SET owner2 = 'a' WHERE id = 2; COMMIT",
        "BEGIN; SET CONSTRAINTS ALL IMMEDIATE; UPDATE rt26_acct SET owner2 = 'a' WHERE id = 2",
        "BEGIN; UPDATE rt26_acct SET owner2 = 'a' WHERE id = 2; SET CONSTRAINTS rt26_u2 "
        "IMMEDIATE",
        /* check and not-null: "Failing row contains (...)" */
        "UPDATE rt26_acct SET note = 'bad' WHERE id = 1",
        "UPDATE rt26_acct SET note = NULL WHERE id = 1",
        "UPDATE rt26_acct SET note = 'bad'",
        "INSERT INTO rt26_acct (id, owner, note) VALUES (9, 'z', 'n')",
        "INSERT INTO rt26_acct (id, note) SELECT id, note FROM rt26_acct",
        "UPDATE rt26_acct SET id = 1 WHERE id = 2",
        /* partition routing quotes the partition key */
        "UPDATE rt26_part SET id = 2",
        "INSERT INTO rt26_part (id) VALUES (5)",
        "UPDATE rt26_part1 SET id = id",
        /* an expression over the masked column that fails (division, cast, overflow) */
        "SELECT salary / 0 FROM customers",
        "SELECT id FROM customers WHERE salary / 0 = 1",
        "SELECT id FROM customers WHERE 1 / (salary - 12345) = 1",
        "SELECT id FROM customers WHERE ssn::int = 0",
        "SELECT id FROM customers WHERE salary::int2 = 0",
        "SELECT id FROM customers WHERE ssn::regclass IS NULL",
        "SELECT id FROM customers WHERE ssn = 'x'::regclass::text",
        "SELECT id FROM customers WHERE email::json IS NULL",
        "SELECT id FROM customers WHERE ssn IN (SELECT ssn FROM customers)",
        "SELECT id FROM customers WHERE salary = ANY('{1,2}'::int2[])",
        "SELECT id FROM customers WHERE salary IN (1, 'x')",
        /* RAISE through DO or a function, notices */
        "DO $$ DECLARE r record; BEGIN FOR r IN SELECT ssn FROM customers LOOP RAISE NOTICE "
        "'%', r.ssn; END LOOP; END $$",
        "DO $$ BEGIN RAISE EXCEPTION '%', (SELECT string_agg(ssn, ',') FROM customers); END $$",
        "SELECT pg_notify('rt26', ssn) FROM customers",
        "NOTIFY rt26, 'x'",
    };
    attempt_all(sqls, sizeof(sqls) / sizeof(sqls[0]));
    cr_expect(notices_leaked == 0, "%d notices leaked", notices_leaked);
}

/* ---- attacks: SQL shapes ---- */

Test(redteam26, returning_of_writes_over_masked_tables)
{
    static const char *const sqls[] = {
        "UPDATE customers SET name = name WHERE id = 1 RETURNING *",
        "UPDATE customers SET name = name WHERE id = 1 RETURNING ssn, email, salary",
        "UPDATE customers SET name = name RETURNING customers",
        "UPDATE customers SET name = name RETURNING customers.*",
        "UPDATE customers c SET name = name RETURNING c",
        "UPDATE customers c SET name = name RETURNING row_to_json(c)",
        "UPDATE customers SET name = name RETURNING lower(ssn)",
        "UPDATE customers SET name = ssn WHERE id = 1 RETURNING name",
        "UPDATE customers SET name = name FROM customers d WHERE d.id = customers.id "
        "RETURNING d.*",
        "DELETE FROM customers WHERE id = 1 RETURNING *",
        "DELETE FROM customers WHERE id = 1 RETURNING customers",
        "DELETE FROM vip_customers RETURNING *",
        "WITH u AS (UPDATE customers SET name = name RETURNING *) SELECT * FROM u",
        "WITH u AS (UPDATE customers SET name = name RETURNING ssn) SELECT upper(ssn) FROM u",
        "WITH u AS (DELETE FROM customers RETURNING *) SELECT u FROM u",
        "WITH u AS (DELETE FROM customers RETURNING ssn AS x) SELECT x || '' FROM u",
        "WITH u AS (DELETE FROM customers RETURNING *) INSERT INTO scratch SELECT ssn FROM u",
        "INSERT INTO scratch (v) VALUES ('x') RETURNING (SELECT ssn FROM customers LIMIT 1)",
        "INSERT INTO scratch (v) SELECT name FROM customers RETURNING *",
        "UPDATE scratch SET v = v FROM customers c RETURNING c.ssn",
        "UPDATE scratch SET v = v FROM customers c RETURNING c",
        "DELETE FROM scratch USING customers c RETURNING c.*",
        "UPDATE rt26_acct SET owner = owner RETURNING *",
        "UPDATE rt26_part SET id = id RETURNING *",
        "UPDATE accounts SET region = region RETURNING *",
        "UPDATE accounts SET region = 'us' WHERE region = 'eu' RETURNING iban",
    };
    attempt_all(sqls, sizeof(sqls) / sizeof(sqls[0]));
}

Test(redteam26, whole_rows_json_aggregates_lateral_and_setof_record)
{
    static const char *const sqls[] = {
        "SELECT to_jsonb(c) FROM customers c",
        "SELECT row_to_json(c.*) FROM customers c",
        "SELECT json_agg(c) FROM customers c",
        "SELECT jsonb_agg(c ORDER BY id) FILTER (WHERE id > 0) FROM customers c",
        "SELECT array_agg(ssn) FROM customers",
        "SELECT string_agg(email, ',') FROM customers",
        "SELECT string_agg(DISTINCT ssn, ',') FROM customers",
        "SELECT max(salary) FROM customers",
        "SELECT first_value(ssn) OVER (ORDER BY id) FROM customers",
        "SELECT c FROM (SELECT * FROM customers) c",
        "WITH w AS (SELECT * FROM customers) SELECT w FROM w",
        "WITH w AS (SELECT * FROM customers) SELECT to_json(w) FROM w",
        "WITH w(a, b, e) AS (SELECT id, name, email FROM customers) SELECT lower(e) FROM w",
        "SELECT ARRAY(SELECT c FROM customers c)",
        "SELECT ARRAY(SELECT ssn FROM customers)",
        "SELECT (SELECT c FROM customers c LIMIT 1)",
        "SELECT jsonb_populate_record(NULL::customers, to_jsonb(c)) FROM customers c",
        "SELECT * FROM json_to_recordset((SELECT json_agg(c) FROM customers c)) AS x(ssn text)",
        "SELECT * FROM jsonb_each_text((SELECT to_jsonb(c) FROM customers c LIMIT 1))",
        "SELECT * FROM unnest((SELECT array_agg(ssn) FROM customers)) u",
        "SELECT * FROM ROWS FROM (json_to_record((SELECT row_to_json(c) FROM customers c LIMIT "
        "1))) AS x(ssn text)",
        "SELECT t FROM customers AS t(a, b, c, d, e)",
        "SELECT t.* FROM customers AS t(a, b, c, d, e)",
        "SELECT lower(d) FROM customers AS t(a, b, c, d, e)",
        "SELECT v FROM customers c, LATERAL (SELECT c.*) v",
        "SELECT x.* FROM customers c, LATERAL (SELECT c.ssn OFFSET 0) x(v)",
        "SELECT upper(x.v) FROM customers c, LATERAL (SELECT c.ssn OFFSET 0) x(v)",
        "SELECT v FROM customers c CROSS JOIN LATERAL (SELECT c) s(v)",
        "SELECT t.v FROM customers c, LATERAL (VALUES (c.ssn), (c.email)) t(v)",
        "SELECT * FROM customers c, LATERAL (VALUES (c.salary)) t(v)",
        "SELECT * FROM (VALUES (1)) v(x), LATERAL (SELECT ssn FROM customers) s",
        "SELECT j FROM (customers c JOIN items i USING (id)) j",
        "SELECT j.* FROM (customers c JOIN items i USING (id)) AS j(a, b, e, s, p, n)",
        "SELECT x FROM (SELECT email AS x FROM customers FULL JOIN (SELECT 'z'::text AS email) t "
        "USING (email)) s",
        "SELECT e FROM (customers FULL JOIN (SELECT 'z'::text AS email) t USING (email)) "
        "AS j(e)",
        "SELECT * FROM customers NATURAL FULL JOIN (SELECT 'z'::text AS email) t",
        "SELECT id, g2 FROM customers NATURAL JOIN (SELECT g AS salary, g AS g2 FROM "
        "generate_series(12340, 12350) g) s",
        "SELECT COALESCE(ssn) FROM customers",
        "SELECT NULLIF(ssn, '') FROM customers",
        "SELECT GREATEST(email, '') FROM customers",
        "SELECT xmlelement(name x, email) FROM customers",
        "SELECT xmlforest(ssn) FROM customers",
        "SELECT ssn IS NULL, ssn IS DOCUMENT FROM customers",
        "SELECT format('%s', c) FROM customers c",
        "SELECT c.ssn FROM customers c GROUP BY ROLLUP (c.ssn)",
        "SELECT ssn FROM customers GROUP BY GROUPING SETS ((ssn), ())",
        "SELECT DISTINCT ssn FROM customers",
        "SELECT * FROM rt26_acct a, LATERAL (SELECT a.ssn) s(v)",
        "TABLE customers",
        "SELECT * FROM customers FOR UPDATE",
        "SELECT * FROM ONLY customers TABLESAMPLE SYSTEM (100)",
        "SELECT * FROM accounts_all",
        "SELECT * FROM accounts WHERE region = 'eu'",
    };
    attempt_all(sqls, sizeof(sqls) / sizeof(sqls[0]));
}

Test(redteam26, copy_to_stdout_of_queries_and_multi_statement_strings)
{
    static const char *const sqls[] = {
        "COPY (SELECT ssn FROM customers) TO STDOUT",
        "COPY (SELECT * FROM customers) TO STDOUT WITH (FORMAT csv, HEADER)",
        "COPY (TABLE customers) TO STDOUT",
        "COPY (SELECT * FROM vip_customers) TO STDOUT",
        "COPY (SELECT * FROM mv_all) TO STDOUT",
        "COPY (SELECT contact FROM customer_contacts) TO STDOUT",
        "COPY (SELECT * FROM accounts_all) TO STDOUT",
        "COPY (SELECT * FROM accounts) TO STDOUT",
        "COPY accounts_eu TO STDOUT",
        "COPY rt26_part TO STDOUT",
        "COPY (SELECT * FROM rt26_part) TO STDOUT",
        "COPY (WITH w AS (SELECT * FROM customers) SELECT * FROM w) TO STDOUT",
        "COPY (UPDATE customers SET name = name RETURNING *) TO STDOUT",
        "COPY (DELETE FROM rt26_acct RETURNING ssn) TO STDOUT",
        "COPY (SELECT id FROM customers NATURAL JOIN (SELECT 1 AS x) s) TO STDOUT",
        "COPY customers (id, ssn) TO STDOUT WITH (FORMAT binary)",
        "SELECT 1; COPY customers TO STDOUT",
        "SELECT name FROM customers; COPY (SELECT email FROM customers) TO STDOUT; SELECT 2",
        "SELECT 1; SELECT lower(ssn) FROM customers",
        "SET search_path = pg_catalog; SELECT * FROM public.customers",
        "SET search_path = pg_temp, public; SELECT ssn, email FROM customers; RESET search_path",
        "CREATE TEMP TABLE rt26tmp AS SELECT 1 AS x; SET search_path = pg_temp, public; "
        "SELECT * FROM customers",
        "BEGIN; SET LOCAL search_path = information_schema, public; SELECT ssn FROM customers; "
        "COMMIT",
        "SELECT set_config('search_path', 'pg_temp,public', false); SELECT * FROM customers",
        "PREPARE rt26p AS SELECT * FROM customers; EXECUTE rt26p",
        "PREPARE rt26q AS SELECT lower(ssn) FROM customers; EXECUTE rt26q",
        "DECLARE rk CURSOR WITH HOLD FOR SELECT * FROM customers; FETCH ALL FROM rk; "
        "CLOSE rk",
        "BEGIN; DECLARE rk2 SCROLL CURSOR FOR SELECT ssn, salary FROM customers; "
        "FETCH LAST FROM rk2; FETCH PRIOR FROM rk2; FETCH ABSOLUTE 1 FROM rk2; COMMIT",
        "EXPLAIN (ANALYZE, VERBOSE, COSTS OFF) SELECT * FROM customers WHERE ssn = "
        "'000-00-3333'",
        "EXPLAIN (VERBOSE, GENERIC_PLAN) SELECT * FROM customers WHERE ssn = $1",
    };
    attempt_all(sqls, sizeof(sqls) / sizeof(sqls[0]));
}

/* ---- attacks: operator spellings, ordinals, statistics, SQL-text runners ---- */

Test(redteam26, pattern_operators_ordinals_statistics_and_text_runners_are_refused)
{
    static const struct mask_attempt_case cases[] = {
        /* LIKE spelled as its operators: every row's every position tested at once */
        {"SELECT id FROM customers WHERE ssn ~~ '__1%'", true},
        {"SELECT id FROM customers WHERE ssn OPERATOR(pg_catalog.~~) '__1%'", true},
        {"SELECT id FROM customers WHERE ssn ~~* '%2-3%'", true},
        {"SELECT id FROM customers WHERE ssn !~~ '%2-3%'", true},
        {"SELECT id FROM customers WHERE ssn ~ '2-3'", true},
        {"SELECT id FROM customers WHERE ssn OPERATOR(pg_catalog.~) '2-3'", true},
        {"SELECT id FROM customers WHERE ssn SIMILAR TO '%2-3%'", true},
        {"SELECT id FROM customers WHERE ssn ^@ '11'", true},
        {"SELECT id FROM customers WHERE ssn LIKE ANY ('{%2-3%}')", true},
        {"SELECT id FROM customers WHERE ssn LIKE U&'\\005F\\005F1%'", true},
        {"SELECT id FROM customers WHERE ssn LIKE '1' || '%'", true},
        {"SELECT id FROM customers WHERE ssn LIKE '%3' COLLATE \"C\"", true},
        {"SELECT id FROM customers WHERE email ~>=~ 'b'", true},
        {"SELECT id FROM customers WHERE salary % 2 = 0", true},
        {"SELECT id FROM customers WHERE salary & 1 = 1", true},
        /* sorting and grouping by position, DISTINCT over * */
        {"SELECT id, name, salary FROM customers ORDER BY 3", true},
        {"SELECT * FROM customers ORDER BY 5 DESC", true},
        {"SELECT salary, count(*) FROM customers GROUP BY 1", true},
        {"SELECT DISTINCT ON (3) id, name, ssn FROM customers", true},
        {"SELECT DISTINCT * FROM customers", true},
        {"SELECT id FROM (TABLE customers INTERSECT TABLE customers) s", true},
        {"SELECT * FROM customers c ORDER BY c", true},
        {"SELECT * FROM (SELECT id, salary FROM customers ORDER BY 2 LIMIT 1) s", true},
        /* planner statistics under every name */
        {"SELECT * FROM pg_catalog.\"pg_stats\"", true},
        {"SELECT * FROM pg_stats_ext", true},
        {"SELECT * FROM pg_stats_ext_exprs", true},
        {"SELECT * FROM pg_catalog.pg_statistic_ext_data", true},
        {"SELECT * FROM pg_cursors", true},
        /* built-ins and contrib functions that run SQL text */
        {"SELECT * FROM ts_stat('SELECT to_tsvector(''simple'', ssn) FROM customers')", true},
        {"SELECT ts_rewrite('a'::tsquery, 'SELECT to_tsquery(''simple'', ''a''), "
         "to_tsquery(''simple'', ssn) FROM customers')",
         true},
        {"SELECT * FROM crosstab2('SELECT name, ''a'', ssn FROM customers')", true},
        {"SELECT * FROM public.crosstab3('SELECT name, ''a'', ssn FROM customers')", true},
        {"SELECT * FROM connectby('customers', 'ssn', 'id', '1', 0) AS t(a text, b text, l "
         "int)",
         true},
        {"SELECT query_to_xml_and_xmlschema('select ssn from customers', true, false, '')", true},
        {"SELECT schema_to_xml('public', true, false, '')", true},
        {"SELECT database_to_xml(true, false, '')", true},
        /* tests the guard must still allow (a plain constant comparison, a prefix) */
        {"SELECT id FROM customers WHERE ssn OPERATOR(pg_catalog.<) '2'", false},
        {"SELECT id FROM customers WHERE ssn LIKE '1%' ESCAPE ''", false},
    };
    mask_attempts_run(&px, "rtm", cases, sizeof(cases) / sizeof(cases[0]));
}

/* Objects a masked client could make to test or hold masked values out of the guard's sight:
 * a foreign key to a masked column (each INSERT a free, uncounted guess), a partition or child
 * of a masked table (its rows sort among the real ones), an implicit cast into its own enum
 * (the masked value would go through enum_in, whose error quotes it), statistics objects, a
 * domain with a check, a policy. */
Test(redteam26, objects_that_would_test_masked_columns_are_refused)
{
    mask_admin_sql("DROP TABLE IF EXISTS rt26_fk, rt26_fk2, rt26_kid, rt26_kid2, rt26_kid3; "
                   "DROP TYPE IF EXISTS rt26_e CASCADE");
    static const struct mask_attempt_case cases[] = {
        {"CREATE TABLE rt26_fk (o text, s text, FOREIGN KEY (o, s) REFERENCES rt26_acct "
         "(owner, ssn))",
         true},
        {"CREATE TABLE rt26_fk2 (o text, s text, FOREIGN KEY (o, s) REFERENCES "
         "public.rt26_acct (owner, ssn) DEFERRABLE)",
         true},
        {"CREATE TABLE rt26_kid PARTITION OF accounts FOR VALUES IN ('fr')", true},
        {"CREATE TABLE rt26_kid2 PARTITION OF rt26_part FOR VALUES IN ('999')", true},
        {"CREATE TABLE rt26_kid3 () INHERITS (rt26_acct)", true},
        {"CREATE CAST (text AS rt26_e) WITH INOUT AS IMPLICIT", true},
        {"CREATE STATISTICS rt26_st (mcv) ON ssn, name FROM customers", true},
        {"CREATE POLICY rt26_pol ON customers USING (true)", true},
        {"CREATE DOMAIN rt26_d AS text CHECK (VALUE::int > 0)", true},
        {"CREATE OPERATOR === (leftarg = text, rightarg = text, function = texteq)", true},
        {"CREATE SCHEMA rt26_sch CREATE TABLE t (x int)", true},
        {"ALTER TABLE rt26_acct ADD CONSTRAINT rt26_c CHECK (ssn::int > 0)", true},
    };
    PGconn *c = mask_login(&px, "rtm");
    pg_exec_ok(c, "CREATE TYPE rt26_e AS ENUM ('a')");
    PQfinish(c);
    mask_attempts_run(&px, "rtm", cases, sizeof(cases) / sizeof(cases[0]));
    /* had one of them been made, a guess through it must still not be answered */
    mask_admin_sql("DROP TABLE IF EXISTS rt26_fk, rt26_fk2, rt26_kid, rt26_kid2, rt26_kid3; "
                   "DROP TYPE IF EXISTS rt26_e CASCADE");
}

/* ---- strict_predicates: every test of a masked column refused, however spelled ---- */

static void start_rt26_strict(void)
{
    make_objects();
    proxy_start_with(&px, "transaction", 2, 10000, RT26_YAML "  strict_predicates: true\n");
}

Test(redteam26, strict_predicates_refuse_every_spelling_of_a_test, .init = start_rt26_strict)
{
    static const struct mask_attempt_case cases[] = {
        {"SELECT id FROM customers WHERE ssn = '111-22-3333'", true},
        {"SELECT id FROM customers WHERE ssn IS NULL", true},
        {"SELECT id FROM customers WHERE ssn IS NOT NULL", true},
        {"SELECT id FROM customers WHERE ROW(ssn) IS NULL", true},
        {"SELECT id FROM customers WHERE (ssn, id) = ('x', 1)", true},
        {"SELECT id FROM customers WHERE ssn IS NOT DISTINCT FROM 'x'", true},
        {"SELECT id FROM customers WHERE NOT (ssn <> 'x')", true},
        {"SELECT id FROM customers WHERE ssn OPERATOR(pg_catalog.<) '2'", true},
        {"SELECT id FROM customers WHERE ssn NOT LIKE '1%'", true},
        {"SELECT EXISTS (SELECT 1 FROM customers WHERE ssn = 'x')", true},
        {"SELECT id FROM customers c JOIN items i ON c.ssn = 'x'", true},
        {"SELECT count(*) FROM customers HAVING min(ssn) = 'x'", true},
        {"SELECT id FROM customers WHERE salary BETWEEN SYMMETRIC 1 AND 2", true},
        {"SELECT id FROM customers WHERE ssn IS NORMALIZED", true},
        {"SELECT id FROM customers WHERE (SELECT ssn) = 'x'", true},
        {"SELECT id FROM customers c WHERE c.ssn > '' LIMIT 1", true},
        {"SELECT id FROM customers c WHERE c IS NULL", true},
        {"SELECT id FROM customers c WHERE c = c", true},
        {"SELECT id FROM mv_renamed WHERE tax_id = 'x'", true},
        {"SELECT id FROM customers WHERE num_nulls(ssn) = 0", true},
        {"SELECT id FROM rt26_acct WHERE (owner, ssn) IN (('a', '111-22-3333'))", true},
        {"UPDATE rt26_acct SET note = note WHERE ssn = '111-22-3333'", true},
        {"DELETE FROM rt26_acct WHERE ssn LIKE '1%'", true},
        {"SELECT id FROM customers FETCH FIRST 1 ROW ONLY", false},
    };
    mask_attempts_run(&px, "rtm", cases, sizeof(cases) / sizeof(cases[0]));
}

/* ---- catalog families: multiple inheritance ---- */

/* A rule on rt26_mia.x masks the rows of its child rt26_mic (and grandchild rt26_mig) read
 * through rt26_mia or the child itself; but rt26_mic also inherits rt26_mib, and PostgreSQL
 * returns the same rows through rt26_mib with rt26_mib as their origin. The family lakeproxy
 * masks (the rule table's parents, and every child of those) does not reach a child's other
 * parents. A rule on a child of two parents (rt26_mif.y) must mask both parents' reads. */
Test(redteam26, multiple_inheritance_other_parent_reads_masked_rows)
{
    static const struct mask_attempt_case cases[] = {
        {"SELECT x FROM rt26_mia", false},
        {"SELECT x FROM rt26_mic", false},
        {"SELECT id, x FROM rt26_mib", false},
        {"SELECT * FROM rt26_mib", false},
        {"SELECT b.x FROM rt26_mib b WHERE b.id < 5", false},
        {"SELECT b FROM rt26_mib b", true},
        {"SELECT row_to_json(b) FROM rt26_mib b", true},
        {"SELECT id, contact FROM rt26_mibv", false},
        {"COPY (SELECT * FROM rt26_mib) TO STDOUT", true},
        {"SELECT y FROM rt26_mid", false},
        {"SELECT y FROM rt26_mie", false},
        {"SELECT y FROM rt26_mif", false},
    };
    mask_attempts_run(&px, "rtm", cases, sizeof(cases) / sizeof(cases[0]));
    /* writing the masked column through the other parent (a guess planted among the real
     * values, README: masked clients cannot write masked columns), rolled back */
    PGconn *c = login("rtm");
    pg_exec_ok(c, "BEGIN");
    PGresult *r = PQexec(c, "UPDATE rt26_mib SET x = 'guess' WHERE id = 1");
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect(PQresultStatus(r) == PGRES_FATAL_ERROR && st && strcmp(st, "42501") == 0,
              "UPDATE rt26_mib SET x (the masked rt26_mia.x of rt26_mic's rows) was not refused: "
              "%s %s",
              PQcmdStatus(r), PQresultErrorMessage(r));
    PQclear(r);
    PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
}

/* ---- the masking catalog's "newer relation" check ---- */

/* A child of a masked table made after the masking catalog's last read must have its whole
 * rows and COPY TO refused until the catalog is read again (README, red team 13). lakeproxy
 * tells a new relation by its name alone (the catalog's list of relation names, schemas
 * left out): a new child named like an older relation of another schema (rt26x.rt26_nc) is
 * taken for that one, and COPY public.rt26_nc TO STDOUT or SELECT k FROM public.rt26_nc k
 * then carry the child's masked values unmasked. */
Test(redteam26, new_child_named_like_an_older_relation_elsewhere)
{
    mask_admin_sql("DROP TABLE IF EXISTS public.rt26_nc, public.rt26_nd; "
                   "CREATE TABLE IF NOT EXISTS rt26_np (id int, ssn text); "
                   "GRANT SELECT ON rt26_np TO PUBLIC; "
                   "CREATE SCHEMA IF NOT EXISTS rt26x; "
                   "CREATE TABLE IF NOT EXISTS rt26x.rt26_nc (z int)");
    PGconn *c = login("rtm");
    /* a result naming rt26_np waits for the catalog read that knows it: read now */
    PGresult *r = PQexec(c, "SELECT ssn FROM rt26_np");
    cr_assert(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    mask_admin_sql("CREATE TABLE public.rt26_nc () INHERITS (rt26_np); "
                   "INSERT INTO public.rt26_nc VALUES (1, '111-22-3333 nc-secret'); "
                   "GRANT SELECT ON public.rt26_nc TO PUBLIC; "
                   "CREATE TABLE public.rt26_nd () INHERITS (rt26_np); "
                   "INSERT INTO public.rt26_nd VALUES (2, '444-55-6666 nd-secret'); "
                   "GRANT SELECT ON public.rt26_nd TO PUBLIC");
    static const char *const sqls[] = {
        "COPY public.rt26_nc TO STDOUT",
        "SELECT k FROM public.rt26_nc k",
        "COPY public.rt26_nd TO STDOUT",
        "SELECT k FROM public.rt26_nd k",
    };
    for (size_t i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++)
        c = attempt(c, sqls[i]);
    PQfinish(c);
    mask_admin_sql("DROP TABLE IF EXISTS public.rt26_nc, public.rt26_nd");
}

/* The same, with the older name planted by the masked client itself: a table of its own, in a
 * schema of its own (both allowed), named as the administrator will name a new child (monthly
 * partitions have names anyone can foretell), read once so that the catalog lists its name. */
Test(redteam26, a_name_planted_by_the_client_hides_a_new_child)
{
    mask_admin_sql("DROP TABLE IF EXISTS public.rt26_nf; DROP SCHEMA IF EXISTS rt26y CASCADE; "
                   "CREATE TABLE IF NOT EXISTS rt26_np (id int, ssn text); "
                   "GRANT SELECT ON rt26_np TO PUBLIC");
    PGconn *c = login("rtm");
    pg_exec_ok(c, "CREATE SCHEMA rt26y");
    pg_exec_ok(c, "CREATE TABLE rt26y.rt26_nf (z int)");
    PGresult *r = PQexec(c, "SELECT z FROM rt26y.rt26_nf"); /* an unknown OID: a catalog read */
    cr_assert(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    mask_admin_sql("CREATE TABLE public.rt26_nf () INHERITS (rt26_np); "
                   "INSERT INTO public.rt26_nf VALUES (1, '777-88-9999 nf-secret'); "
                   "GRANT SELECT ON public.rt26_nf TO PUBLIC");
    c = attempt(c, "COPY public.rt26_nf TO STDOUT");
    c = attempt(c, "COPY (SELECT * FROM public.rt26_nf) TO STDOUT");
    PQfinish(c);
    mask_admin_sql("DROP TABLE IF EXISTS public.rt26_nf; DROP SCHEMA IF EXISTS rt26y CASCADE");
}
