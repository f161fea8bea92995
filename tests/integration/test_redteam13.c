/* test_redteam13.c: red-team round 13 against column masking, on the PROTOCOL side: binary
 * and mixed result formats, portals fetched in parts and interleaved, an unnamed statement
 * re-bound after a Describe, statements, portals and held cursors left on a server by a client
 * of another masking class (transaction pooling, one server), pipelines racing the masking
 * catalog read, COPY (binary, extended), FunctionCall, composite/array/domain/whole-row
 * results, functions returning SETOF the table, views made after the catalog was read,
 * NOTIFY payloads, error and notice fields, and the masked value's length. Each test asserts
 * the SAFE behaviour: a failing test is a finding. RT13_DEBUG=1 prints every message read.
 *
 * Finding (relation_added_after_the_catalog_read_copy_and_select): COPY ... TO STDOUT of a
 * child table or partition of a masked table created after the masking catalog's last read
 * (COPY rt13_kid TO STDOUT, COPY rt13_kid (id, ssn), COPY (SELECT * FROM rt13_kid)) sends the
 * masked column unmasked. masksql_dml.c msql_check_copy refuses COPY TO only for a relation
 * name in the policy's masked-table list (msql_is_masked_table: the rules' tables and the
 * catalog's last read), and COPY output has no RowDescription, so maskwire's backstop (an
 * unknown table OID waits for a catalog read) never runs: the leak lasts until the next read
 * (catalog_refresh_s, 30 s, or any masked result naming the new OID). The same window opens
 * to whole-row references (relation_added_after_the_catalog_read_whole_row_and_notify:
 * SELECT k::text / row_to_json(k) / k FROM rt13_kid3 k): masksql_scope.c marks a relation
 * masked by name only (msql_is_masked_table), so the whole-row refusal does not apply, and the
 * result column is computed (origin 0) or a whole row (attnum 0), which maskwire passes. */
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

#define RT13_YAML                                                                                  \
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
    "    - {column: public.rt13_dcust.ssn, function: last4, unless: {groups: [auditors]}}\n"       \
    "    - {column: public.rt13_dcust.tags, function: redact, unless: {groups: [auditors]}}\n"     \
    "    - {column: public.rt13_base.ssn, function: last4, unless: {groups: [auditors]}}\n"        \
    "    - {column: public.rt13_part.ssn, function: last4, unless: {groups: [auditors]}}\n"

static void make_objects(void)
{
    mask_admin_sql("DO $$ BEGIN PERFORM pg_advisory_xact_lock(1313); "
                   "IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'rt13_dom') THEN "
                   "CREATE DOMAIN rt13_dom AS text; END IF; "
                   "IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'rt13_dcust') THEN "
                   "CREATE TABLE rt13_dcust (id int, ssn rt13_dom, tags text[]); "
                   "INSERT INTO rt13_dcust VALUES (1, '111-22-3333', '{111-22-3333,x}'); "
                   "GRANT SELECT ON rt13_dcust TO PUBLIC; END IF; "
                   "IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'rt13_base') THEN "
                   "CREATE TABLE rt13_base (id int, ssn text); "
                   "INSERT INTO rt13_base VALUES (1, '111-22-3333'); "
                   "GRANT SELECT ON rt13_base TO PUBLIC; "
                   "CREATE TABLE rt13_part (id int, ssn text) PARTITION BY LIST (id); "
                   "CREATE TABLE rt13_part1 PARTITION OF rt13_part FOR VALUES IN (1); "
                   "INSERT INTO rt13_part VALUES (1, '111-22-3333'); "
                   "GRANT SELECT ON rt13_part, rt13_part1 TO PUBLIC; END IF; END $$");
    mask_admin_sql("DO $$ BEGIN PERFORM pg_advisory_xact_lock(1313); "
                   "IF NOT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'rt13_all') THEN "
                   "CREATE FUNCTION rt13_all() RETURNS SETOF customers LANGUAGE sql "
                   "STABLE AS 'SELECT * FROM customers'; END IF; END $$");
}

static void start_rt13(void)
{
    make_objects();
    proxy_start_with(&px, "transaction", 2, 10000, RT13_YAML);
}

/* One server only: clients of both masking classes compete for it. */
static void start_rt13_one(void)
{
    make_objects();
    proxy_start_with(&px, "transaction", 1, 10000, RT13_YAML);
}

static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(redteam13, .init = start_rt13, .fini = stop_proxy, .timeout = 120);

/* ---- raw protocol helpers ---- */

struct seen {
    int rows, errors, suspended, notifies, copy;
    char first_err[256];
};

/* Reads every message up to the zs-th ReadyForQuery (or a close/timeout), expecting no secret
 * in any of them (nor a real salary in binary, when check_bin). */
static struct seen read_all(int fd, int zs, bool check_bin, const char *what)
{
    static unsigned char body[1 << 20];
    struct seen sn = {0};
    size_t len;
    int t;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 8000)) >= 0) {
        const char *s = mask_find_secret((const char *)body, len);
        cr_expect(!s, "[%s] message '%c' leaks \"%s\"", what, t, s ? s : "");
        if (check_bin && t == 'D')
            cr_expect(!mask_has_binary_salary(body, len), "[%s] DataRow holds a real salary", what);
        if (getenv("RT13_DEBUG"))
            fprintf(stderr, "RT13 [%.60s] %c %.*s\n", what, t,
                    t == 'E' || t == 'N' || t == 'D' || t == 'A' || t == 'd'
                        ? (int)(len > 200 ? 200 : len)
                        : 0,
                    (const char *)body);
        sn.rows += t == 'D';
        sn.suspended += t == 's';
        sn.notifies += t == 'A';
        sn.copy += t == 'd';
        if (t == 'E') {
            {
                /* keep the message field */
                for (size_t i = 0; i < len;) {
                    char code = (char)body[i++];
                    if (!code)
                        break;
                    const char *v = (const char *)body + i;
                    if (code == 'M')
                        snprintf(sn.first_err, sizeof(sn.first_err), "%s", v);
                    i += strlen(v) + 1;
                }
            }
            sn.errors++;
        }
        if (t == 'E' && getenv("RT13_DEBUG"))
            fprintf(stderr, "RT13M [%.60s] %s\n", what, sn.first_err);
        if (t == 'Z' && --zs == 0)
            break;
    }
    return sn;
}

static void send_buf_ok(int fd, struct buf *b)
{
    cr_assert(raw_send(fd, b));
}

/* ---- attacks ---- */

/* Per-column binary and text formats, a Describe of the statement first (text formats there),
 * then the portal fetched one row at a time (PortalSuspended), then re-bound all binary. */
Test(redteam13, binary_and_mixed_formats_fetched_in_parts)
{
    int fd = raw_session(px.port, "rtm", "app");
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "", "SELECT id, email, ssn, salary FROM customers ORDER BY id");
    raw_put_describe(&b, 'S', "");
    int16_t mixed[4] = {1, 0, 1, 1};
    mask_put_bind_fmt(&b, "", "", mixed, 4);
    raw_put_execute_n(&b, "", 1);
    raw_put_execute_n(&b, "", 1);
    raw_put_execute_n(&b, "", 0);
    int16_t bin[1] = {1};
    mask_put_bind_fmt(&b, "", "", bin, 1);
    raw_put_describe(&b, 'P', "");
    raw_put_execute_n(&b, "", 2);
    raw_put_execute_n(&b, "", 0);
    raw_put_empty(&b, 'S');
    send_buf_ok(fd, &b);
    struct seen sn = read_all(fd, 1, true, "mixed formats");
    cr_expect(sn.errors == 0, "error: %s", sn.first_err);
    cr_expect(sn.rows == 6, "rows %d", sn.rows);
    cr_expect(sn.suspended == 3, "suspended %d", sn.suspended);
    buf_free(&b);
    close(fd);
}

/* Two named portals of differently shaped statements, fetched in alternation in one pipeline:
 * each Execute's rows must be masked under its own portal's description. */
Test(redteam13, interleaved_portals_of_different_shapes)
{
    int fd = raw_session(px.port, "rtm", "app");
    struct buf b;
    buf_init(&b);
    raw_query(fd, "BEGIN");
    read_all(fd, 1, false, "begin");
    raw_put_parse(&b, "a", "SELECT id, name FROM customers ORDER BY id");
    raw_put_parse(&b, "b", "SELECT ssn, email, salary FROM customers ORDER BY id");
    int16_t t0[1] = {0}, t1[1] = {1};
    mask_put_bind_fmt(&b, "pa", "a", t1, 1);
    mask_put_bind_fmt(&b, "pb", "b", t0, 1);
    mask_put_bind_fmt(&b, "pc", "b", t1, 1);
    for (int i = 0; i < 3; i++) {
        raw_put_execute_n(&b, "pa", 1);
        raw_put_execute_n(&b, "pb", 1);
        raw_put_execute_n(&b, "pc", 1);
    }
    raw_put_empty(&b, 'S');
    send_buf_ok(fd, &b);
    struct seen sn = read_all(fd, 1, true, "interleaved portals");
    cr_expect(sn.errors == 0, "error: %s", sn.first_err);
    cr_expect(sn.rows == 9, "rows %d", sn.rows);
    raw_query(fd, "COMMIT");
    read_all(fd, 1, false, "commit");
    buf_free(&b);
    close(fd);
}

/* A SQL cursor (declared BINARY) executed by the protocol's Execute with max_rows, formats
 * from the cursor itself, not from a Bind. */
Test(redteam13, binary_sql_cursor_executed_in_parts)
{
    int fd = raw_session(px.port, "rtm", "app");
    raw_query(fd, "BEGIN; DECLARE bc BINARY CURSOR FOR SELECT ssn, salary, email FROM customers");
    struct seen sn = read_all(fd, 1, true, "declare");
    cr_assert(sn.errors == 0, "%s", sn.first_err);
    struct buf b;
    buf_init(&b);
    raw_put_describe(&b, 'P', "bc");
    raw_put_execute_n(&b, "bc", 1);
    raw_put_execute_n(&b, "bc", 1);
    raw_put_execute_n(&b, "bc", 0);
    raw_put_empty(&b, 'S');
    send_buf_ok(fd, &b);
    sn = read_all(fd, 1, true, "binary cursor execute");
    cr_expect(sn.errors == 0 || sn.rows == 0, "rows with error");
    buf_free(&b);
    close(fd);
}

/* Many Parse/Bind/Execute before one Sync, on a cold proxy (the masking catalog may still be
 * being read): tables the catalog reads late (a partition parent, a domain-typed table). */
Test(redteam13, cold_pipeline_races_the_catalog)
{
    int fd = raw_session(px.port, "rtm", "app");
    struct buf b;
    buf_init(&b);
    static const char *const qs[] = {
        "SELECT ssn, salary FROM customers", "SELECT id, ssn FROM rt13_dcust",
        "SELECT email FROM vip_customers",   "SELECT * FROM customers",
        "SELECT tags, ssn FROM rt13_dcust",
    };
    for (int i = 0; i < 60; i++) {
        int16_t f[1] = {(int16_t)(i & 1)};
        raw_put_parse(&b, "", qs[i % 5]);
        mask_put_bind_fmt(&b, "", "", f, 1);
        raw_put_execute_n(&b, "", (uint32_t)(i % 3));
    }
    raw_put_empty(&b, 'S');
    send_buf_ok(fd, &b);
    struct seen sn = read_all(fd, 1, true, "cold pipeline");
    cr_expect(sn.rows > 0 || sn.errors > 0);
    buf_free(&b);
    close(fd);
}

/* An unmasked client and a masked one share a pool of ONE server in transaction pooling: the
 * unmasked one leaves named statements (computed over masked columns), its unnamed statement
 * and a WITH HOLD cursor; the masked one binds, describes and executes them by name (and by
 * the proxy's own lp_ name of the text). */
Test(redteam13, objects_left_by_another_masking_class_on_one_server, .init = start_rt13_one)
{
    int u = raw_session(px.port, "rtu", "app");
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "s1", "SELECT upper(ssn) AS u, email AS e FROM customers");
    raw_put_parse(&b, "", "SELECT upper(ssn) AS u, email AS e FROM customers");
    raw_put_empty(&b, 'S');
    send_buf_ok(u, &b);
    struct seen sn = read_all(u, 1, false, "unmasked parse");
    raw_query(u, "DECLARE hc CURSOR WITH HOLD FOR SELECT upper(ssn) AS u, email AS e FROM "
                 "customers");
    struct seen sh = read_all(u, 1, false, "unmasked held cursor");
    (void)sn;
    (void)sh;

    int m = raw_session(px.port, "rtm", "app");
    /* the proxy's name of the text: lp_ + 32 hex of SHA-256 of the Parse body (no context) */
    raw_put_describe(&b, 'S', "s1");
    raw_put_empty(&b, 'S');
    raw_put_bind(&b, "", "s1");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    raw_put_describe(&b, 'P', "hc");
    raw_put_execute_n(&b, "hc", 0);
    raw_put_empty(&b, 'S');
    raw_put_bind(&b, "", "LP_0");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    send_buf_ok(m, &b);
    sn = read_all(m, 5, false, "masked reuse");
    cr_expect(sn.rows == 0, "masked client got %d rows of the other class's objects", sn.rows);
    raw_query(m, "FETCH ALL FROM hc");
    sn = read_all(m, 1, false, "masked FETCH hc");
    cr_expect(sn.rows == 0, "masked FETCH of the unmasked client's held cursor gave %d rows",
              sn.rows);
    close(m);
    close(u);
    buf_free(&b);
}

/* Runs sql in the simple and extended protocols (extended: all results binary, a Describe of
 * the portal, Execute in parts); never a secret in anything that comes back. */
static void attempt_raw(int fd, const char *sql)
{
    struct buf b;
    buf_init(&b);
    raw_query(fd, sql);
    read_all(fd, 1, true, sql);
    raw_put_parse(&b, "", sql);
    int16_t bin[1] = {1};
    mask_put_bind_fmt(&b, "", "", bin, 1);
    raw_put_describe(&b, 'P', "");
    raw_put_execute_n(&b, "", 1);
    raw_put_execute_n(&b, "", 0);
    raw_put_empty(&b, 'S');
    send_buf_ok(fd, &b);
    read_all(fd, 1, true, sql);
    buf_free(&b);
}

static int fresh_masked(int fd)
{
    if (fd >= 0)
        close(fd);
    return raw_session(px.port, "rtm", "app");
}

/* Results whose type wraps the masked column: whole rows, composites, arrays, a domain,
 * functions returning SETOF the table (with a column alias list renaming the masked column),
 * COPY (binary, a query, a column list), LISTEN/NOTIFY payloads, DO/RAISE. */
Test(redteam13, wrapped_types_copy_notify_and_functions)
{
    static const char *const sqls[] = {
        "SELECT c FROM customers c",
        "SELECT customers FROM customers",
        "SELECT ROW(c.*) FROM customers c",
        "SELECT ARRAY[ssn] FROM customers",
        "SELECT ssn::rt13_dom FROM customers",
        "SELECT id, ssn, tags FROM rt13_dcust",
        "SELECT tags[1] FROM rt13_dcust",
        "SELECT * FROM rt13_all()",
        "SELECT s FROM rt13_all() AS t(i, n, e, s, sal)",
        "SELECT (rt13_all()).ssn",
        "SELECT x FROM rt13_all() x",
        "SELECT customer_email(1)",
        "SELECT contact FROM item_contacts",
        "COPY customers TO STDOUT (FORMAT binary)",
        "COPY customers (ssn) TO STDOUT",
        "COPY (SELECT ssn, email FROM customers) TO STDOUT (FORMAT csv)",
        "COPY rt13_dcust TO STDOUT",
        "LISTEN rt13; SELECT pg_notify('rt13', email) FROM customers",
        "SELECT pg_notify('rt13', ssn) FROM customers",
        "DO $$DECLARE r record; BEGIN FOR r IN SELECT ssn FROM customers LOOP "
        "RAISE NOTICE '%', r.ssn; END LOOP; END$$",
        "CREATE TEMP VIEW rt13_tv AS SELECT id, upper(ssn) AS u FROM customers",
        "SELECT u FROM rt13_tv",
        "SELECT to_json(c) FROM customers c",
        "SELECT c::text FROM customers c",
    };
    int fd = fresh_masked(-1);
    for (size_t i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++) {
        attempt_raw(fd, sqls[i]);
        fd = fresh_masked(fd);
    }
    close(fd);
}

/* A view made after the proxy read the masking catalog, computing over a masked column. */
Test(redteam13, view_made_after_the_catalog_was_read)
{
    int fd = fresh_masked(-1);
    attempt_raw(fd, "SELECT ssn FROM customers");
    mask_admin_sql("CREATE OR REPLACE VIEW rt13_late AS SELECT id, upper(ssn) AS u, "
                   "email AS contact FROM customers; GRANT SELECT ON rt13_late TO PUBLIC");
    attempt_raw(fd, "SELECT u, contact FROM rt13_late");
    fd = fresh_masked(fd);
    attempt_raw(fd, "SELECT * FROM rt13_late");
    close(fd);
    mask_admin_sql("DROP VIEW IF EXISTS rt13_late");
}

/* Error and notice fields beyond DETAIL (message, hint, context, where) that may quote a
 * row's value: casts, constraint failures, unique violations, in both protocols. */
Test(redteam13, error_fields_quote_no_row_value)
{
    static const char *const sqls[] = {
        "SELECT ssn::int FROM customers",
        "SELECT email::json FROM customers",
        "SELECT id FROM customers WHERE ssn::int > 0",
        "BEGIN; INSERT INTO customers SELECT * FROM customers; ROLLBACK",
        "BEGIN; UPDATE customers SET salary = NULL; ROLLBACK",
        "BEGIN; UPDATE customers SET id = 1; ROLLBACK",
        "BEGIN; INSERT INTO scratch SELECT ssn FROM customers; ROLLBACK",
        "SELECT id FROM customers ORDER BY ssn::int",
        "SELECT id FROM customers WHERE ssn = $1",
    };
    int fd = fresh_masked(-1);
    for (size_t i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++) {
        attempt_raw(fd, sqls[i]);
        fd = fresh_masked(fd);
    }
    /* a Bind parameter typed as the masked column's type, in binary, of a bad length */
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, 'P');
    buf_put_str(&b, "");
    buf_put_str(&b, "SELECT id FROM customers WHERE salary = $1");
    buf_put_u16(&b, 1);
    buf_put_u32(&b, 23);
    buf_msg_finish(&b);
    buf_msg_start(&b, 'B');
    buf_put_str(&b, "");
    buf_put_str(&b, "");
    buf_put_u16(&b, 1);
    buf_put_u16(&b, 1);
    buf_put_u16(&b, 1);
    buf_put_u32(&b, 3);
    buf_put_bytes(&b, "abc", 3);
    buf_put_u16(&b, 0);
    buf_msg_finish(&b);
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    send_buf_ok(fd, &b);
    read_all(fd, 1, true, "bad binary parameter");
    buf_free(&b);
    close(fd);
}

/* FunctionCall ('F') of a function that reads a masked column (customer_email) and of
 * textout on a value: refused for masked clients, nothing leaks. */
Test(redteam13, function_call_message)
{
    PGconn *c = mask_login(&px, "rtm");
    char *oid = query_value(c, "SELECT 'customer_email(int)'::regprocedure::oid");
    PQfinish(c);
    int fd = fresh_masked(-1);
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, 'F');
    buf_put_u32(&b, (uint32_t)strtoul(oid ? oid : "0", NULL, 10));
    buf_put_u16(&b, 1);
    buf_put_u16(&b, 0);
    buf_put_u16(&b, 1);
    buf_put_u32(&b, 1);
    buf_put_bytes(&b, "1", 1);
    buf_put_u16(&b, 0);
    buf_msg_finish(&b);
    send_buf_ok(fd, &b);
    struct seen sn = read_all(fd, 1, false, "FunctionCall");
    cr_expect(sn.errors > 0, "FunctionCall was not refused");
    buf_free(&b);
    free(oid);
    close(fd);
}

/* The masked value's length: the DataRow of a masked column carries the mask's length only,
 * the same for values alike in their shown part whatever their hidden part. */
Test(redteam13, masked_value_length_carries_no_hidden_length)
{
    PGconn *c = mask_login(&px, "rtm");
    PGresult *r = PQexec(c, "SELECT ssn, salary FROM rt13_dcust, customers WHERE customers.id = 1");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
        cr_expect(PQgetlength(r, 0, 0) == 8, "ssn length %d", PQgetlength(r, 0, 0));
        mask_expect_no_secret(r, "length");
    }
    PQclear(r);
    r = PQexecParams(c, "SELECT salary, ssn FROM customers ORDER BY id", 0, NULL, NULL, NULL, NULL,
                     1);
    cr_assert(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    for (int i = 0; i < PQntuples(r); i++) {
        cr_expect(PQgetisnull(r, i, 0) ||
                      !mask_has_binary_salary((const unsigned char *)PQgetvalue(r, i, 0),
                                              (size_t)PQgetlength(r, i, 0)),
                  "real binary salary row %d", i);
        cr_expect(PQgetlength(r, i, 1) == 8, "binary ssn length %d", PQgetlength(r, i, 1));
    }
    PQclear(r);
    PQfinish(c);
}

/* COPY TO STDOUT spelled many ways, in both protocols (binary, views that resolve to masked
 * columns, an inheritance child, TABLE, quoted and qualified names), and copies of masked
 * values into tables the client then reads. */
Test(redteam13, copy_out_and_table_copies_in_every_spelling)
{
    static const char *const sqls[] = {
        "COPY (SELECT * FROM mv_renamed) TO STDOUT",
        "COPY (SELECT tax_id FROM mv_over_view) TO STDOUT (FORMAT binary)",
        "COPY (SELECT contact FROM customer_contacts) TO STDOUT",
        "COPY (TABLE customers) TO STDOUT",
        "COPY (SELECT * FROM customers) TO STDOUT",
        "COPY (SELECT t.* FROM customers t) TO STDOUT",
        "COPY (SELECT ssn FROM ONLY customers) TO STDOUT",
        "COPY vip_customers TO STDOUT",
        "COPY vip_customers (email) TO STDOUT (FORMAT binary)",
        "COPY \"customers\" TO STDOUT",
        "COPY public.customers (id, \"ssn\") TO STDOUT",
        "COPY customers (id, SSN) TO STDOUT",
        "COPY (SELECT email FROM vip_customers) TO STDOUT",
        "COPY (SELECT tax_id FROM mv_mat) TO STDOUT",
        "COPY mv_mat TO STDOUT",
        "COPY (SELECT id FROM customers WHERE ssn LIKE '1%') TO STDOUT",
        "CREATE TEMP TABLE rt13_t AS SELECT ssn FROM customers",
        "SELECT ssn INTO TEMP rt13_t2 FROM customers",
        "CREATE TEMP TABLE rt13_t3 AS TABLE customers",
        "SELECT * FROM rt13_t",
        "SELECT * FROM rt13_t2",
        "SELECT * FROM rt13_t3",
    };
    int fd = fresh_masked(-1);
    for (size_t i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++) {
        attempt_raw(fd, sqls[i]);
        fd = fresh_masked(fd);
    }
    close(fd);
}

/* A refused unnamed Parse after an allowed one, then a Bind of "" in the next Sync: it must
 * not run the older statement (nor anything unmasked). */
Test(redteam13, refused_parse_then_rebind_unnamed)
{
    int fd = fresh_masked(-1);
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "", "SELECT id, ssn FROM customers");
    raw_put_describe(&b, 'S', "");
    raw_put_parse(&b, "", "SELECT id, upper(ssn) AS u FROM customers");
    raw_put_empty(&b, 'S');
    int16_t bin[1] = {1};
    mask_put_bind_fmt(&b, "", "", bin, 1);
    raw_put_describe(&b, 'P', "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    send_buf_ok(fd, &b);
    read_all(fd, 2, true, "refused parse then rebind");
    buf_free(&b);
    close(fd);
}

/* Client encodings chosen at login (allowed): masks that count characters must show no more
 * than they show in UTF-8 (the hidden parts never appear). */
Test(redteam13, client_encodings_at_login)
{
    static const char *const encs[] = {"SQL_ASCII", "LATIN1", "SJIS",         "BIG5",
                                       "GBK",       "EUC_JP", "WIN1251",      "UHC",
                                       "GB18030",   "EUC_TW", "MULE_INTERNAL"};
    for (size_t i = 0; i < sizeof(encs) / sizeof(encs[0]); i++) {
        char opts[64];
        snprintf(opts, sizeof(opts), "client_encoding=%s", encs[i]);
        PGconn *c = proxy_connect(&px, "rtm", "pw", "app", opts);
        if (PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            continue;
        }
        for (int ext = 0; ext <= 1; ext++) {
            const char *sql = "SELECT email, ssn, salary, name FROM customers";
            PGresult *r =
                ext ? PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, ext) : PQexec(c, sql);
            mask_expect_no_secret(r, encs[i]);
            PQclear(r);
        }
        PQfinish(c);
    }
}

/* Parse with parameter types and a Bind of (type, format, value): true when rows came back
 * (the comparison ran) and no error. */
static bool param_probe(int fd, const char *sql, uint32_t type, int16_t fmt, const char *val,
                        int vlen, int *rows)
{
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, 'P');
    buf_put_str(&b, "");
    buf_put_str(&b, sql);
    buf_put_u16(&b, 1);
    buf_put_u32(&b, type);
    buf_msg_finish(&b);
    buf_msg_start(&b, 'B');
    buf_put_str(&b, "");
    buf_put_str(&b, "");
    buf_put_u16(&b, 1);
    buf_put_u16(&b, (uint16_t)fmt);
    buf_put_u16(&b, 1);
    buf_put_u32(&b, (uint32_t)vlen);
    buf_put_bytes(&b, val, (size_t)vlen);
    buf_put_u16(&b, 0);
    buf_msg_finish(&b);
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    send_buf_ok(fd, &b);
    buf_free(&b);
    struct seen sn = read_all(fd, 1, true, sql);
    *rows = sn.rows;
    return sn.errors == 0;
}

/* Parameters whose type only the Parse message gives (the text shows a bare $1): an array
 * tried against a masked column in one Bind (many guesses, one test), LIKE patterns typed as
 * bpchar/name/unknown or sent in binary that are not prefixes ('%3333', '_' wildcards). */
Test(redteam13, typed_parameters_test_one_guess_per_bind)
{
    int fd = fresh_masked(-1);
    int rows = 0;
    const char *arr = "{x1,111-22-3333,x2,444-55-6666,x3,x4}";
    bool ran = param_probe(fd, "SELECT id FROM customers WHERE ssn = ANY($1)", 1009, 0, arr,
                           (int)strlen(arr), &rows);
    cr_expect(!ran, "ssn = ANY($1) with 6 guesses ran in one Bind (%d rows matched)", rows);
    fd = fresh_masked(fd);
    ran = param_probe(fd, "SELECT id FROM customers WHERE ssn IN (SELECT unnest($1::text[]))", 0, 0,
                      arr, (int)strlen(arr), &rows);
    cr_expect(!ran, "ssn IN (unnest($1)) ran (%d rows)", rows);
    fd = fresh_masked(fd);
    static const uint32_t types[] = {0, 25, 1043, 1042, 19, 705, 18};
    static const char *const pats[] = {"%3333", "___-22-3333", "1%3", "%"};
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
        for (size_t p = 0; p < sizeof(pats) / sizeof(pats[0]); p++)
            for (int16_t f = 0; f <= 1; f++) {
                ran = param_probe(fd, "SELECT id FROM customers WHERE ssn LIKE $1", types[t], f,
                                  pats[p], (int)strlen(pats[p]), &rows);
                cr_expect(!ran || rows == 0 || strcmp(pats[p], "%") == 0,
                          "LIKE '%s' as type %u format %d ran: %d rows", pats[p], types[t], f,
                          rows);
                fd = fresh_masked(fd);
            }
    close(fd);
}

/* Types a masked client may create, with implicit casts from text (CREATE CAST ... WITH
 * INOUT AS IMPLICIT, allowed to a type's owner): a comparison with a constant of that type
 * would run the type's input function on each masked value, and its error message ('M')
 * quotes the value. Run in one session, statement by statement. */
Test(redteam13, own_type_with_implicit_cast_quotes_value_in_error)
{
    static const char *const steps[] = {
        "CREATE TYPE rt13_e AS ENUM ('a')",
        "CREATE CAST (text AS rt13_e) WITH INOUT AS IMPLICIT",
        "SELECT id FROM customers WHERE ssn = 'a'::rt13_e",
        "SELECT id FROM customers WHERE ssn IN ('a'::rt13_e)",
        "CREATE TYPE rt13_r AS RANGE (subtype = int4)",
        "CREATE TYPE rt13_c AS (x int)",
        "CREATE CAST (text AS rt13_c) WITH INOUT AS IMPLICIT",
        "SELECT id FROM customers WHERE ssn = '(1)'::rt13_c",
        "CREATE CAST (text AS int4) WITH INOUT AS IMPLICIT",
        "SELECT id FROM customers WHERE ssn = 1",
    };
    int fd = fresh_masked(-1);
    raw_query(fd, "BEGIN");
    read_all(fd, 1, false, "begin");
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        raw_query(fd, "SAVEPOINT s");
        read_all(fd, 1, false, "savepoint");
        raw_query(fd, steps[i]);
        struct seen sn = read_all(fd, 1, true, steps[i]);
        if (sn.errors) {
            raw_query(fd, "ROLLBACK TO SAVEPOINT s");
            read_all(fd, 1, false, "rollback to");
        }
    }
    raw_query(fd, "ROLLBACK");
    read_all(fd, 1, false, "rollback");
    close(fd);
}

/* A child table and a partition an administrator adds to masked tables after the proxy read
 * the masking catalog, holding rows at once: COPY (which has no RowDescription to trigger a
 * catalog read) and SELECT of them must not serve the masked column unmasked. */
Test(redteam13, relation_added_after_the_catalog_read_copy_and_select)
{
    mask_admin_sql("DROP TABLE IF EXISTS rt13_kid; DROP TABLE IF EXISTS rt13_part2");
    int fd = fresh_masked(-1);
    attempt_raw(fd, "SELECT id, ssn FROM rt13_base");
    attempt_raw(fd, "SELECT id, ssn FROM rt13_part");
    mask_admin_sql("CREATE TABLE rt13_kid () INHERITS (rt13_base); "
                   "INSERT INTO rt13_kid VALUES (2, '444-55-6666'); "
                   "CREATE TABLE rt13_part2 PARTITION OF rt13_part FOR VALUES IN (2); "
                   "INSERT INTO rt13_part VALUES (2, '777-88-9999'); "
                   "GRANT SELECT ON rt13_kid, rt13_part2 TO PUBLIC");
    static const char *const sqls[] = {
        "COPY rt13_kid TO STDOUT",
        "COPY rt13_kid (id, ssn) TO STDOUT",
        "COPY rt13_part2 TO STDOUT",
        "COPY (SELECT * FROM rt13_kid) TO STDOUT",
        "SELECT id, ssn FROM rt13_kid",
        "SELECT * FROM rt13_part2",
        "SELECT id, ssn FROM rt13_base",
        "SELECT * FROM rt13_kid",
        "COPY rt13_kid TO STDOUT (FORMAT binary)",
    };
    for (size_t i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++)
        attempt_raw(fd, sqls[i]);
    close(fd);
    mask_admin_sql("DROP TABLE IF EXISTS rt13_kid; DROP TABLE IF EXISTS rt13_part2");
}

/* A masked client's own view (a pure projection renaming a masked column, which the guard
 * allows) is unknown to the masking catalog until its next read: COPY of it (no
 * RowDescription, so no catalog read is triggered) must still not serve the column unmasked. */
Test(redteam13, own_projection_view_then_copy)
{
    static const char *const steps[] = {
        "CREATE TEMP VIEW rt13_myv AS SELECT id, ssn AS x, email AS y FROM customers",
        "COPY (SELECT x, y FROM rt13_myv) TO STDOUT",
        "COPY (SELECT * FROM rt13_myv) TO STDOUT (FORMAT binary)",
        "COPY (TABLE rt13_myv) TO STDOUT",
        "SELECT x, y FROM rt13_myv",
        "COPY (SELECT x, y FROM rt13_myv) TO STDOUT",
    };
    for (int commit = 0; commit <= 1; commit++) {
        int fd = fresh_masked(-1);
        if (!commit) {
            raw_query(fd, "BEGIN");
            read_all(fd, 1, false, "begin");
        }
        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
            raw_query(fd, steps[i]);
            read_all(fd, 1, true, steps[i]);
        }
        close(fd);
    }
    /* a view in the public schema, committed, then read by another masked session */
    int fd = fresh_masked(-1);
    raw_query(fd, "CREATE VIEW rt13_pubv AS SELECT id, ssn AS x FROM customers");
    read_all(fd, 1, true, "create pubv");
    close(fd);
    fd = fresh_masked(-1);
    raw_query(fd, "COPY (SELECT x FROM rt13_pubv) TO STDOUT");
    read_all(fd, 1, true, "copy pubv");
    close(fd);
    mask_admin_sql("DROP VIEW IF EXISTS rt13_pubv");
}

/* A relation the catalog has not seen (a child added just now), read by a deep pipeline of
 * binary Executes in parts before one Sync: every result waits for the catalog read that
 * tells its OID apart, none streams before it. */
Test(redteam13, unknown_oid_pipeline_waits_for_the_catalog)
{
    mask_admin_sql("DROP TABLE IF EXISTS rt13_kid2");
    int fd = fresh_masked(-1);
    attempt_raw(fd, "SELECT id, ssn FROM rt13_base");
    mask_admin_sql("CREATE TABLE rt13_kid2 () INHERITS (rt13_base); "
                   "INSERT INTO rt13_kid2 VALUES (2, '444-55-6666'), (3, '777-88-9999'); "
                   "GRANT SELECT ON rt13_kid2 TO PUBLIC");
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < 40; i++) {
        int16_t f[1] = {(int16_t)(i & 1)};
        raw_put_parse(&b, "", i % 2 ? "SELECT ssn, id FROM rt13_kid2" : "SELECT * FROM rt13_kid2");
        mask_put_bind_fmt(&b, "", "", f, 1);
        raw_put_execute_n(&b, "", 1);
        raw_put_execute_n(&b, "", 0);
        raw_put_empty(&b, 'H');
    }
    raw_put_empty(&b, 'S');
    send_buf_ok(fd, &b);
    struct seen sn = read_all(fd, 1, true, "unknown oid pipeline");
    cr_expect(sn.rows > 0 || sn.errors > 0);
    buf_free(&b);
    close(fd);
    mask_admin_sql("DROP TABLE IF EXISTS rt13_kid2");
}

/* The same window through a SELECT: a whole-row reference to a child table the catalog has
 * not seen is computed (RowDescription origin 0), so it streams without a catalog read; and
 * a NOTIFY payload has no RowDescription at all. */
Test(redteam13, relation_added_after_the_catalog_read_whole_row_and_notify)
{
    mask_admin_sql("DROP TABLE IF EXISTS rt13_kid3");
    int fd = fresh_masked(-1);
    attempt_raw(fd, "SELECT id, ssn FROM rt13_base");
    mask_admin_sql("CREATE TABLE rt13_kid3 () INHERITS (rt13_base); "
                   "INSERT INTO rt13_kid3 VALUES (2, '444-55-6666'); "
                   "GRANT SELECT ON rt13_kid3 TO PUBLIC");
    static const char *const sqls[] = {
        "SELECT k::text FROM rt13_kid3 k",
        "SELECT row_to_json(k) FROM rt13_kid3 k",
        "SELECT k FROM rt13_kid3 k",
        "LISTEN rt13k; SELECT pg_notify('rt13k', k::text) FROM rt13_kid3 k",
    };
    for (size_t i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++) {
        raw_query(fd, sqls[i]);
        read_all(fd, 1, true, sqls[i]);
    }
    close(fd);
    mask_admin_sql("DROP TABLE IF EXISTS rt13_kid3");
}

/* Whole-row values (a computed column, or attnum 0, which the wire rewriting passes) of
 * subqueries, CTEs, views, children, column alias lists over masked tables, known to the
 * catalog: the guard must refuse them all. */
Test(redteam13, whole_row_of_derived_relations_over_known_masked_tables)
{
    static const char *const sqls[] = {
        "SELECT t FROM (SELECT * FROM customers) t",
        "SELECT t FROM (TABLE customers) t",
        "SELECT t FROM customers AS t(a, b, c, d, e)",
        "WITH w AS (SELECT * FROM customers) SELECT w FROM w",
        "WITH w AS MATERIALIZED (SELECT id, ssn FROM customers) SELECT w::text FROM w",
        "SELECT v FROM (VALUES (1)) x, LATERAL (SELECT * FROM customers) v",
        "SELECT t FROM customer_contacts t",
        "SELECT t FROM mv_renamed t",
        "SELECT t FROM mv_over_view t",
        "SELECT t FROM ONLY customers t",
        "SELECT t FROM vip_customers t",
        "SELECT (t.*)::text FROM customers t",
        "SELECT t FROM public.customers t",
        "SELECT x FROM customers t, LATERAL (SELECT t) s(x)",
        "SELECT json_agg(t) FROM customers t",
        "SELECT t FROM (SELECT id, ssn AS s FROM customers) t",
        "SELECT t FROM (SELECT id, ssn FROM customers OFFSET 0) t",
        "SELECT t FROM (SELECT id, ssn FROM customers) AS t(a, b)",
        "SELECT t FROM (SELECT id, contact FROM customer_contacts) t",
        "SELECT t FROM rt13_dcust t",
        "SELECT t FROM rt13_part t",
        "SELECT t FROM rt13_part1 t",
        "SELECT t FROM mv_mat t",
        "SELECT t FROM (SELECT tax_id FROM mv_mat) t",
        "SELECT t FROM (SELECT c.ssn FROM customers c JOIN items i ON i.id = c.id) t",
        "SELECT t FROM (SELECT * FROM customers c JOIN items i USING (id)) t",
        "SELECT t FROM customers c JOIN LATERAL (SELECT c.ssn) t ON true",
        "SELECT t FROM (SELECT ssn FROM customers FOR UPDATE) t",
        "SELECT s FROM (SELECT t FROM customers t) s",
        "SELECT to_jsonb(t) FROM (SELECT email FROM customers) t",
        "SELECT hstore(t) FROM customers t",
        "SELECT t FROM (SELECT DISTINCT ON (id) id, ssn FROM customers) t",
    };
    int fd = fresh_masked(-1);
    for (size_t i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++) {
        attempt_raw(fd, sqls[i]);
        fd = fresh_masked(fd);
    }
    close(fd);
}

/* An unmasked client leaves a WITH HOLD cursor computed over a masked column and a named
 * statement; a reload then masks that same client. Its next FETCH, Execute of the cursor's
 * portal, or Bind of the statement must not serve the old, unmasked result. */
Test(redteam13, reload_masks_a_client_holding_a_cursor)
{
    int u = raw_session(px.port, "rtu", "app");
    raw_query(u, "DECLARE rc CURSOR WITH HOLD FOR SELECT upper(ssn) AS u, email AS e, ssn FROM "
                 "customers");
    read_all(u, 1, false, "declare rc");
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "su", "SELECT upper(ssn) AS u, email AS e FROM customers");
    raw_put_empty(&b, 'S');
    send_buf_ok(u, &b);
    read_all(u, 1, false, "parse su");
    /* rtu loses its exemption: every rule now applies to it */
    char yaml[16384];
    char extra[4096];
    snprintf(extra, sizeof(extra), "%s", RT13_YAML);
    char *g = strstr(extra, "rtu: {auth: trust, groups: [auditors]}");
    cr_assert(g);
    memcpy(g, "rtu: {auth: trust}                    ",
           strlen("rtu: {auth: trust, groups: [auditors]}"));
    proxy_default_yaml(yaml, sizeof(yaml), px.port, "transaction", 2, 10000, extra);
    proxy_reload_yaml(&px, yaml);
    raw_query(u, "FETCH ALL FROM rc");
    struct seen sn = read_all(u, 1, false, "fetch rc after reload");
    cr_expect(sn.rows == 0, "FETCH of the held cursor after the reload gave %d rows", sn.rows);
    raw_put_describe(&b, 'P', "rc");
    raw_put_execute_n(&b, "rc", 0);
    raw_put_empty(&b, 'S');
    raw_put_bind(&b, "", "su");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    send_buf_ok(u, &b);
    sn = read_all(u, 2, false, "execute rc / bind su after reload");
    cr_expect(sn.rows == 0, "%d rows after the reload", sn.rows);
    buf_free(&b);
    close(u);
}
