/* test_masking.c: column masking through lakeproxy against real tables (tests/lib/setup.sql:
 * customers, its child vip_customers, views and a function over it). A masked client sees
 * masked values, or gets its statement refused; never a byte of a secret, whatever SQL it
 * writes, in the simple or extended protocol, text or binary; an exempt client sees the real
 * values; the connection stays usable after a refusal. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "maskcheck.h"
#include "procinfo.h"
#include "rawproto.h"

static struct proxy px;

#define MASKING_YAML                                                                               \
    "  mallory: {password: pw}\n"                                                                  \
    "  audra: {password: pw, groups: [auditors]}\n"                                                \
    "  sam: {password: pw, groups: [support]}\n"                                                   \
    "groups:\n"                                                                                    \
    "  auditors: {role: auditor}\n"                                                                \
    "  support: {}\n"                                                                              \
    "masking:\n"                                                                                   \
    "  databases: [app]\n"                                                                         \
    "  rules:\n"                                                                                   \
    "    - {column: public.customers.email, function: email, unless: {roles: [auditor]}}\n"        \
    "    - {column: public.customers.ssn, function: last4, unless: {groups: [auditors]}}\n"        \
    "    - {column: public.customers.salary, function: redact, unless: {users: [audra]}}\n"        \
    "    - {column: public.accounts_eu.iban, function: redact, unless: {users: [audra]}}\n"        \
    "    - {column: public.vip_notes.body, function: redact, unless: {users: [audra]}}\n"          \
    "    - {column: public.notes.body, function: last4, unless: {users: [audra]}}\n"               \
    "    - {column: public.contacts.addr, function: email, unless: {users: [audra]}}\n"            \
    "    - {column: public.vip_contacts.addr, function: last4, unless: {users: [audra]}}\n"

/* MASKING_YAML without the salary rule: the reload test adds it. */
static char *yaml_without_salary(char *yaml, size_t yamlsz, int port)
{
    char extra[4096];
    snprintf(extra, sizeof(extra), "%s", MASKING_YAML);
    char *salary = strstr(extra, "    - {column: public.customers.salary");
    if (salary)
        *salary = '\0';
    proxy_default_yaml(yaml, yamlsz, port, "transaction", 2, 10000, extra);
    return yaml;
}

static void start_without_salary(void)
{
    static char yaml[16384];
    int port = free_port();
    proxy_start_yaml(&px, port, yaml_without_salary(yaml, sizeof(yaml), port));
}

static void start_slow_budget(void)
{
    static char yaml[16384];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 10000,
                       MASKING_YAML "  max_tests_per_second: 5\n");
    proxy_start_yaml(&px, port, yaml);
}

static void start_masking(void)
{
    static char yaml[16384];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 10000, MASKING_YAML);
    proxy_start_yaml(&px, port, yaml);
}

/* One server connection: every client lands on the server the previous one left. */
static void start_masking_one_server(void)
{
    static char yaml[16384];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 1, 10000, MASKING_YAML);
    proxy_start_yaml(&px, port, yaml);
}

/* size server connections, and audra may use the admin console (to see who waits). */
static void start_masking_admin(int size)
{
    static char yaml[16384];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", size, 10000,
                       MASKING_YAML "admin:\n  users: [audra]\n");
    proxy_start_yaml(&px, port, yaml);
}

static void start_masking_one_server_admin(void)
{
    start_masking_admin(1);
}

static void start_masking_two_servers_admin(void)
{
    start_masking_admin(2);
}

static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(masking, .init = start_masking, .fini = stop_proxy, .timeout = 120);

static PGconn *login(const char *user)
{
    return mask_login(&px, user);
}

Test(masking, masked_user_sees_masked_values_and_exempt_users_the_real_ones)
{
    const char *sql = "SELECT id, name, email, ssn, salary FROM customers ORDER BY id";
    PGconn *m = login("mallory");
    PGresult *r = PQexec(m, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    cr_assert_eq(PQntuples(r), 3);
    cr_expect_str_eq(PQgetvalue(r, 0, 1), "Ada Lovelace", "unmasked columns pass unchanged");
    cr_expect_str_eq(PQgetvalue(r, 0, 2), "a***@example.com");
    cr_expect_str_eq(PQgetvalue(r, 0, 3), "****3333");
    cr_expect_str_eq(PQgetvalue(r, 0, 4), "0", "a masked integer stays an integer");
    cr_expect_str_eq(PQgetvalue(r, 2, 1), "Zoë Vip");
    cr_expect_str_eq(PQgetvalue(r, 2, 2), "z***@example.com", "multibyte: first character kept");
    mask_expect_no_secret(r, sql);
    PQclear(r);
    PQfinish(m);

    PGconn *a = login("audra"); /* exempt from all three rules */
    r = PQexec(a, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    cr_expect_str_eq(PQgetvalue(r, 0, 2), "ada.secret@example.com");
    cr_expect_str_eq(PQgetvalue(r, 0, 3), "111-22-3333");
    cr_expect_str_eq(PQgetvalue(r, 0, 4), "12345");
    PQclear(r);
    PQfinish(a);

    PGconn *s = login("sam"); /* in a group that is exempt from nothing */
    r = PQexec(s, "SELECT email, ssn FROM customers WHERE id = 2");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "g***@navy.example");
    cr_expect_str_eq(PQgetvalue(r, 0, 1), "****6666");
    PQclear(r);
    PQfinish(s);
}

Test(masking, extended_protocol_text_and_binary_results_are_masked)
{
    PGconn *m = login("mallory");
    const char *sql = "SELECT email, salary, name FROM customers WHERE id = $1";
    const char *params[1] = {"1"};
    for (int fmt = 0; fmt <= 1; fmt++) {
        PGresult *r = PQexecParams(m, sql, 1, NULL, params, NULL, NULL, fmt);
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
        cr_expect_eq(PQgetlength(r, 0, 0), 16);
        cr_expect(memcmp(PQgetvalue(r, 0, 0), "a***@example.com", 16) == 0, "format %d", fmt);
        if (fmt == 1) {
            uint32_t be;
            cr_assert_eq(PQgetlength(r, 0, 1), 4, "binary int4 keeps its width");
            memcpy(&be, PQgetvalue(r, 0, 1), 4);
            cr_expect_eq(ntohl(be), 0u);
        } else {
            cr_expect_str_eq(PQgetvalue(r, 0, 1), "0");
        }
        cr_expect(memcmp(PQgetvalue(r, 0, 2), "Ada Lovelace", 12) == 0);
        mask_expect_no_secret(r, sql);
        PQclear(r);
    }
    /* a named prepared statement, executed again and again on whatever server */
    PGresult *p = PQprepare(m, "q", "SELECT ssn FROM customers ORDER BY id", 0, NULL);
    cr_assert_eq(PQresultStatus(p), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(p));
    PQclear(p);
    for (int i = 0; i < 5; i++) {
        PGresult *r = PQexecPrepared(m, "q", 0, NULL, NULL, NULL, 0);
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
        cr_expect_str_eq(PQgetvalue(r, 1, 0), "****6666");
        mask_expect_no_secret(r, "prepared");
        PQclear(r);
    }
    PQfinish(m);
}

Test(masking, cursors_and_child_tables_are_masked)
{
    PGconn *m = login("mallory");
    const char *steps[] = {"BEGIN",
                           "DECLARE c CURSOR FOR SELECT email, ssn FROM customers ORDER BY id"};
    for (size_t i = 0; i < 2; i++)
        PQclear(PQexec(m, steps[i]));
    for (int k = 0; k < 3; k++) {
        PGresult *r = PQexec(m, "FETCH 1 FROM c");
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
        cr_assert_eq(PQntuples(r), 1);
        cr_expect(strstr(PQgetvalue(r, 0, 0), "***@") != NULL, "fetch %d: %s", k,
                  PQgetvalue(r, 0, 0));
        mask_expect_no_secret(r, "FETCH");
        PQclear(r);
    }
    PQclear(PQexec(m, "COMMIT"));
    PGresult *r = PQexec(m, "SELECT email, ssn FROM vip_customers");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    cr_expect_str_eq(PQgetvalue(r, 0, 1), "****9999", "a child table inherits the masking");
    mask_expect_no_secret(r, "vip_customers");
    PQclear(r);
    PQfinish(m);
}

/* A review: a rule on a partition or an inheritance child did not reach its parent, and the
 * same rows read through the parent came back unmasked (SELECT *, a whole row, COPY): their
 * origin, as PostgreSQL describes it, is the parent's column. The parent's column is masked
 * too now (every row read through it: the origin does not say which child a row is from).
 * Whole-row reads and tests through the parent are among the bypass attempts below. */
Test(masking, a_rule_on_a_partition_or_child_masks_it_read_through_the_parent)
{
    PGconn *m = login("mallory");
    static const char *const reads[] = {
        "SELECT * FROM accounts_eu",
        "SELECT * FROM accounts",
        "SELECT id, iban FROM accounts WHERE region = 'eu'",
        "SELECT * FROM (SELECT * FROM accounts) a",
        "SELECT * FROM accounts_all", /* a view over the parent */
        "SELECT body FROM notes",
        "SELECT * FROM vip_notes",
    };
    for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
        PGresult *r = PQexec(m, reads[i]);
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", reads[i],
                     PQresultErrorMessage(r));
        cr_expect_gt(PQntuples(r), 0, "%s", reads[i]);
        mask_expect_no_secret(r, reads[i]);
        PQclear(r);
    }
    /* notes.body has a rule of its own (last4) and vip_notes' (redact) reaches it too: the one
     * that hides most applies, whichever way the row is read (the review of the day: the first
     * rule the catalog listed did, so last4 could show the end of a redacted child's value) */
    EXPECT_QUERY_VALUE(m, "SELECT body FROM notes WHERE id = 7", "****", "through the parent");
    EXPECT_QUERY_VALUE(m, "SELECT body FROM vip_notes", "****", "the child itself");
    /* email (the parent's) and last4 (the child's) each show a part of one column: neither
     * hides what the other shows (the domain, the end), so it is redacted whole (a review:
     * one of them applied, and through the parent a VIP's domain showed) */
    EXPECT_QUERY_VALUE(m, "SELECT addr FROM contacts WHERE id = 2", "****", "parent, VIP row");
    EXPECT_QUERY_VALUE(m, "SELECT addr FROM contacts WHERE id = 1", "****", "parent, own row");
    EXPECT_QUERY_VALUE(m, "SELECT addr FROM vip_contacts", "****", "the child itself");
    /* the other partition is masked too: rows move between partitions (below) */
    EXPECT_QUERY_VALUE(m, "SELECT iban FROM accounts_us", "****", "accounts_us directly");
    PQfinish(m);
    PGconn *a = login("audra");
    EXPECT_QUERY_VALUE(a, "SELECT iban FROM accounts WHERE id = 1", "DE89-secret-3000",
                       "an exempt user reads the parent as it is");
    PQfinish(a);
}

/* A red team: with a rule on one partition only, an UPDATE of the partition key through the
 * parent (a column no rule masks) moved a row into a sibling partition no rule named, where
 * its masked column read in plain. A rule now reaches the whole family (siblings too). */
Test(masking, a_row_moved_to_another_partition_stays_masked)
{
    PGconn *m = login("mallory");
    free(query_value(m, "BEGIN"));
    EXPECT_QUERY_VALUE(m,
                       "WITH u AS (UPDATE accounts SET region = 'us' WHERE id = 1 RETURNING id) "
                       "SELECT count(*) FROM u",
                       "1", "the row moves to accounts_us");
    static const char *const reads[] = {"SELECT id, region, iban FROM accounts_us",
                                        "SELECT * FROM accounts WHERE region = 'us'",
                                        "SELECT iban FROM accounts_us WHERE id = 1"};
    for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
        PGresult *r = PQexec(m, reads[i]);
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", reads[i],
                     PQresultErrorMessage(r));
        mask_expect_no_secret(r, reads[i]);
        PQclear(r);
    }
    free(query_value(m, "ROLLBACK"));
    PQfinish(m);
}

/* A SQL PREPARE that tests masked columns is refused (each EXECUTE would test them unseen);
 * one that does not, made before a reload adds a rule, could test them afterwards: it lives
 * one transaction only, as its server is retired when the transaction ends. */
Test(masking, a_sql_prepared_statement_lives_one_transaction_only)
{
    PGconn *m = login("mallory");
    free(query_value(m, "PREPARE p(int) AS SELECT name FROM customers WHERE id = $1"));
    cr_expect_str_eq(query_sqlstate(m, "EXECUTE p(1)"), "26000",
                     "its server was retired with the transaction");
    PQfinish(m);
}

/* Bypass attempts: each is refused (an error, the connection may even be closed) or answers
 * with masked values only. refused: must be refused. */
static const struct mask_attempt_case attempts[] = {
    {"SELECT lower(email) FROM customers", true},
    /* through the parent of a partition or child table that a rule names */
    {"SELECT a FROM accounts a", true},
    {"SELECT row_to_json(a) FROM accounts a", true},
    {"SELECT string_agg(t::text, ';') FROM notes t", true},
    {"SELECT upper(iban) FROM accounts", true},
    {"COPY (SELECT * FROM accounts) TO STDOUT", true},
    {"COPY notes TO STDOUT", true},
    /* attribute notation runs (x).f and alias.f as f(x) (a red team: all read in plain) */
    {"SELECT (1).customer_email", true},
    {"SELECT (i).customer_email FROM generate_series(1, 3) i", true},
    {"SELECT (c.id + 0).customer_email FROM customers c", true},
    {"SELECT ('select email::tsvector || ssn::tsvector from customers'::text).ts_stat", true},
    {"SELECT g.ts_stat FROM unnest(ARRAY['select email::tsvector from customers']) g", true},
    {"SELECT (NULL::int).pg_stat_get_activity", true},
    {"SELECT (g).pg_stat_get_backend_activity FROM generate_series(1, 60) g", true},
    {"CREATE TEMP TABLE rt_def (i int, x text DEFAULT (1).customer_email)", true},
    {"SELECT lower(iban) FROM accounts_all", true},
    {"SELECT email || '' FROM customers", true},
    {"SELECT substr(ssn, 1, 3) FROM customers", true},
    {"SELECT email::text FROM customers", true},
    {"SELECT CAST(ssn AS varchar) FROM customers", true},
    {"SELECT c FROM customers c", true},
    {"SELECT c.* ::text FROM customers c", true},
    {"SELECT row_to_json(c) FROM customers c", true},
    {"SELECT to_jsonb(c) FROM customers c", true},
    {"SELECT (c).email FROM customers c", true},
    {"SELECT json_agg(customers) FROM customers", true},
    {"SELECT string_agg(email, ',') FROM customers", true},
    {"SELECT max(ssn) FROM customers", true},
    {"SELECT count(DISTINCT email) FROM customers", true},
    {"SELECT email FROM customers UNION SELECT 'x'", true},
    {"SELECT ssn FROM customers EXCEPT SELECT ''", true},
    {"WITH x AS (SELECT email FROM customers) SELECT upper(email) FROM x", true},
    {"SELECT upper(e) FROM (SELECT email AS e FROM customers) s", true},
    {"SELECT upper(x) FROM (SELECT email FROM customers) s(x)", true},
    {"SELECT (SELECT email FROM customers LIMIT 1)", true},
    {"SELECT ARRAY(SELECT ssn FROM customers)", true},
    {"SELECT ROW(email) FROM customers", true},
    {"SELECT CASE WHEN ssn LIKE '1%' THEN 'one' END FROM customers", true},
    {"SELECT email COLLATE \"C\" FROM customers", true},
    {"SELECT 1 FROM customers WHERE ssn::int = 0", true},
    {"SELECT customer_email(1)", true},
    {"SELECT contact FROM customer_contacts", false},
    {"SELECT upper(contact) FROM customer_contacts", true},
    {"SELECT query_to_xml('SELECT email FROM customers', true, true, '')", true},
    {"SELECT table_to_xml('customers', true, true, '')", true},
    {"SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'customers'", true},
    {"DO $$ BEGIN PERFORM 1; END $$", true},
    {"INSERT INTO scratch SELECT email FROM customers", true},
    {"CREATE TEMP TABLE t AS SELECT email FROM customers", true},
    {"SELECT email INTO TEMP t2 FROM customers", true},
    {"CREATE TEMP VIEW v AS SELECT email FROM customers", true},
    {"UPDATE customers SET name = name WHERE id = 1 RETURNING email", true},
    {"DELETE FROM customers WHERE id = -1 RETURNING *", true},
    {"UPDATE scratch SET v = c.email FROM customers c", true},
    {"COPY customers TO STDOUT", true},
    {"COPY (SELECT email FROM customers) TO STDOUT", true},
    {"SELECT 1; SELECT lower(email) FROM customers", true},
    {"SET client_encoding TO 'SJIS'; SELECT email FROM customers", true},
    {"SET NAMES 'EUC_JP'", true},
    {"SET standard_conforming_strings = off", true},
    {"SET standard_conforming_strings = off; SELECT 'x\\', $$' , lower(email) FROM customers --$$",
     true},
    {"SELECT set_config('standard_' || 'conforming_strings', 'off', false)", true},
    {"CREATE EXTENSION IF NOT EXISTS tablefunc", true},
    {"COPY vip_customers TO STDOUT", true},
    {"SELECT v::text FROM vip_customers v", true},
    {"SELECT row_to_json(v) FROM vip_customers v", true},
    {"SELECT vip_customers FROM vip_customers", true},
    {"SELECT contact FROM item_contacts WHERE id <= 3", true},
    {"SELECT c.concat FROM customers c", true},
    {"SELECT c.quote_literal FROM customers c", true},
    {"SELECT c.record_send FROM customers c", true},
    {"SELECT c.text FROM customers c", true},
    {"SELECT customers.json_build_array FROM customers", true},
    {"SELECT pg_notify('ch', c.quote_literal) FROM customers c", true},
    {"SELECT c.id, g FROM customers c JOIN generate_series(0, 100000) g ON c.salary = g", true},
    {"SELECT c.id FROM customers c WHERE c.email IN (SELECT v FROM scratch)", true},
    {"SELECT c.name FROM customers c", false},
    {"SELECT id FROM customers WHERE ssn IN ('111-22-3333', 'x') AND email LIKE 'a%'", false},
    /* a review's extraction: positional patterns test every row at once, 31 such statements
     * read every ssn (LIKE only with a constant prefix now) */
    {"SELECT c.id, t.k FROM customers c JOIN (VALUES (0), (1), (2), (3)) t(k) ON "
     "(t.k = 0 AND c.ssn LIKE '1%') OR (t.k = 1 AND c.ssn LIKE '_1%') OR "
     "(t.k = 2 AND c.ssn LIKE '__4%') OR (t.k = 3 AND c.ssn LIKE '___-%')",
     true},
    {"SELECT id FROM customers WHERE email LIKE '%secret%'", true},
    /* a type named like a built-in would be what an unqualified cast means (pg_temp first) */
    {"CREATE DOMAIN pg_temp.text AS text[]", true},
    {"SELECT email FROM customers FULL JOIN (SELECT 'x' AS email) y USING (email)", true},
    {"SELECT email AS e, ssn AS s FROM customers", false},
    {"SELECT * FROM customers", false},
    {"SELECT c.* FROM customers c", false},
    {"SELECT x.e FROM (SELECT email e FROM customers) x", false},
    {"WITH x AS (SELECT email, ssn FROM customers) SELECT * FROM x", false},
    {"SELECT email FROM customers WHERE ssn = '111-22-3333'", false},
    {"SELECT email FROM customers WHERE salary BETWEEN 1 AND 99999", false},
    {"SELECT name, email FROM customers ORDER BY email", true},
    {"SELECT name, email FROM customers ORDER BY name", false},
    {"SELECT ssn, count(*) FROM customers GROUP BY ssn", true},
    {"SELECT count(*) FILTER (WHERE email LIKE 'a%') FROM customers", true},
    {"SELECT id FROM customers WHERE ssn = 'a' OR ssn = 'b' OR ssn = 'c' OR ssn = 'd' "
     "OR ssn = 'e'",
     true},
    {"SELECT id, EXISTS (SELECT 1 FROM customers d WHERE d.id = c.id AND d.ssn LIKE '1%') "
     "FROM customers c",
     true},
    {"SELECT id FROM customers WHERE email = ANY (' {a,b,c,d,ada.secret@example.com}')", true},
    {"SELECT id FROM customers WHERE email = ANY ('[1:5]={a,b,c,d,ada.secret@example.com}')", true},
    {"SELECT id FROM customers WHERE email = ANY (ARRAY['{a,b,c,d,ada.secret@example.com}'"
     "::text[]])",
     true},
    {"SELECT id FROM customers WHERE email = ANY (ARRAY[ARRAY['a','b','c'],ARRAY['d','e','f']])",
     true},
    {"SELECT id, name FROM customer_names", false},
    {"SELECT count(*) FROM customers", false},
};

Test(masking, bypass_attempts_are_masked_or_refused_never_leaked)
{
    size_t n = sizeof(attempts) / sizeof(attempts[0]);
    cr_assert_geq(n, 40);
    mask_attempts_run(&px, "mallory", attempts, n);
}

/* Literals of int2vector and oidvector separate their values with spaces: one such literal
 * under = ANY would ask any number of questions of a masked column as one test (a red team
 * read every salary this way, sixteen bits per statement). */
Test(masking, a_literal_of_many_guesses_is_refused_whatever_its_type)
{
    PGconn *m = login("mallory");
    static const char *const guesses[] = {
        "SELECT id FROM customers WHERE salary = ANY ('12345 1 2 3 4 5 6 7'::int2vector)",
        "SELECT id FROM customers WHERE salary = ANY ('12345 1 2 3 4 5 6 7'::oidvector)",
        "SELECT id FROM customers WHERE salary = ANY ('12345 1 2 3 4 5'::int2vector::int2[])",
        "SELECT id FROM customers WHERE salary = ANY (ARRAY[ARRAY[ARRAY[1,2],'{3,4}'],"
        "'{{5,6},{7,12345}}'])",
    };
    for (size_t i = 0; i < sizeof(guesses) / sizeof(guesses[0]); i++)
        cr_expect_str_eq(query_sqlstate(m, guesses[i]), "42501", "%s", guesses[i]);
    PQfinish(m);
}

/* A materialized view's query runs again at each REFRESH, out of the count of tests: with the
 * guess in the client's own search_path (a schema named like the value, compared through
 * CURRENT_SCHEMA), one stored test would try any number of values (a red team read an SSN
 * so). CURRENT_SCHEMA is no constant to compare with since red team 11; REFRESH stays
 * refused whatever the view compares. */
Test(masking, a_materialized_view_cannot_be_refreshed_to_test_again)
{
    PGconn *m = login("mallory");
    cr_expect_str_eq(query_sqlstate(m, "CREATE MATERIALIZED VIEW rt_mv0 AS SELECT id FROM "
                                       "customers WHERE ssn = CURRENT_SCHEMA"),
                     "42501");
    free(query_value(m, "CREATE MATERIALIZED VIEW rt_mv AS SELECT id FROM customers "
                        "WHERE ssn = '111-22-3333'"));
    cr_expect_str_eq(query_sqlstate(m, "REFRESH MATERIALIZED VIEW rt_mv"), "42501");
    cr_expect_str_eq(query_sqlstate(m, "REFRESH MATERIALIZED VIEW CONCURRENTLY public.rt_mv"),
                     "42501");
    PQfinish(m);
}

Test(masking, exempt_user_runs_the_same_statements_and_sees_real_values)
{
    PGconn *a = login("audra");
    char *v = query_value(a, "SELECT lower(email) FROM customers WHERE id = 1");
    cr_expect_str_eq(v, "ada.secret@example.com", "no guard for a client nothing masks");
    free(v);
    v = query_value(a, "SELECT contact FROM customer_contacts WHERE id = 2");
    cr_expect_str_eq(v, "grace.secret@navy.example");
    free(v);
    v = query_value(a, "SELECT customer_email(1)");
    cr_expect_str_eq(v, "ada.secret@example.com");
    free(v);
    PQfinish(a);
}

Test(masking, refusal_names_the_column_and_says_what_to_do)
{
    PGconn *m = login("mallory");
    PGresult *r = PQexec(m, "SELECT lower(email) FROM customers");
    cr_assert_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
    cr_expect_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "42501");
    cr_expect(strstr(PQresultErrorMessage(r), "email") != NULL, "%s", PQresultErrorMessage(r));
    PQclear(r);
    char *v = query_value(m, "SELECT name FROM customers WHERE id = 1");
    cr_expect_str_eq(v, "Ada Lovelace", "the connection stays usable after a refusal");
    free(v);
    PQfinish(m);
}

Test(masking, error_details_that_quote_rows_are_stripped)
{
    PGconn *m = login("mallory");
    /* the NOT NULL violation's DETAIL is "Failing row contains (1, null, ada.secret@...)" */
    PGresult *r = PQexec(m, "UPDATE customers SET name = NULL WHERE id = 1");
    cr_assert_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
    cr_expect_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23502");
    cr_expect_null(PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL), "detail: %s",
                   PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL));
    mask_expect_no_secret(r, "UPDATE ... NOT NULL");
    PQclear(r);
    PQfinish(m);
    PGconn *a = login("audra"); /* an exempt client keeps the detail */
    r = PQexec(a, "UPDATE customers SET name = NULL WHERE id = 1");
    cr_expect(PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) != NULL);
    PQclear(r);
    PQfinish(a);
}

/* What an exempt client leaves on a pooled server (a prepared statement, a WITH HOLD cursor, a
 * temporary table, a setting) never reaches a masked client: servers serve one masking class. */
Test(masking, session_state_of_other_clients_never_reaches_a_masked_client)
{
    PGconn *a = login("audra");
    const char *setup[] = {
        "PREPARE leak AS SELECT lower(email) AS e FROM customers",
        "BEGIN",
        "DECLARE hc CURSOR WITH HOLD FOR SELECT lower(email) AS e FROM customers",
        "COMMIT",
        "CREATE TEMP TABLE tt AS SELECT email AS e FROM customers",
    };
    for (size_t i = 0; i < sizeof(setup) / sizeof(setup[0]); i++) {
        PGresult *r = PQexec(a, setup[i]);
        cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                  "%s: %s", setup[i], PQresultErrorMessage(r));
        PQclear(r);
    }
    const char *reads[] = {"EXECUTE leak", "FETCH ALL FROM hc", "SELECT * FROM tt",
                           "SELECT * FROM pg_temp.tt"};
    for (int round = 0; round < 4; round++) { /* new connections land on any server */
        PGconn *m = login("mallory");
        for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
            PGresult *r = PQexec(m, reads[i]);
            mask_expect_no_secret(r, reads[i]);
            cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "[%s] found another client's state",
                          reads[i]);
            PQclear(r);
            PQclear(PQexec(m, "ROLLBACK"));
            if (PQstatus(m) != CONNECTION_OK) {
                PQfinish(m);
                m = login("mallory");
            }
        }
        PQfinish(m);
    }
    char *v = query_value(a, "SELECT email FROM customers WHERE id = 1");
    cr_expect_str_eq(v, "ada.secret@example.com");
    free(v);
    PQfinish(a);
}

/* A masked client's prepared WITH HOLD cursor retires every server it runs on, not only the
 * one it was prepared on: the next client finds no cursor of another client's. */
Test(masking, a_masked_clients_prepared_held_cursor_retires_every_server_it_runs_on,
     .init = start_masking_one_server)
{
    PGconn *m = login("mallory");
    PGresult *r =
        PQprepare(m, "h", "DECLARE vc CURSOR WITH HOLD FOR SELECT id FROM customers", 0, NULL);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(m));
    PQclear(r);
    free(query_value(m, "SELECT 1")); /* the server it was prepared on has been retired */
    r = PQexecPrepared(m, "h", 0, NULL, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(m));
    PQclear(r);
    PGconn *s = login("sam");
    cr_expect_str_eq(query_sqlstate(s, "FETCH 3 FROM vc"), "34000",
                     "sam must not fetch from mallory's cursor");
    PQfinish(s);
    PQfinish(m);
}

/* A client waiting for the only server, which has served another masking class, gets a fresh
 * server once it comes free: the old one is closed to make room, not handed over. */
Test(masking, a_waiter_of_another_masking_class_gets_a_fresh_server,
     .init = start_masking_one_server_admin)
{
    PGconn *a = login("audra"), *m = login("mallory");
    free(query_value(a, "BEGIN"));
    char *exempt_pid = query_value(a, "SELECT pg_backend_pid()");
    cr_assert(PQsendQuery(m, "SELECT pg_backend_pid()"), "%s", PQerrorMessage(m));
    expect_clients_waiting(&px, "audra", "pw", "app", 1); /* for the server audra holds */
    free(query_value(a, "COMMIT"));
    char *masked_pid = sent_query_value(m);
    cr_expect_str_neq(masked_pid, exempt_pid,
                      "a masked client was handed the server an exempt client used");
    free(masked_pid);
    free(exempt_pid);
    PQfinish(m);
    PQfinish(a);
}

/* A client of another masking class than every idle server's, in a full pool, costs one of
 * them its place, not more: the other keeps serving its class. */
Test(masking, a_client_of_another_masking_class_replaces_one_idle_server_only,
     .init = start_masking_two_servers_admin)
{
    PGconn *a1 = login("audra"), *a2 = login("audra");
    free(query_value(a1, "BEGIN"));
    free(query_value(a2, "BEGIN")); /* both servers taken by exempt clients */
    char *p1 = query_value(a1, "SELECT pg_backend_pid()");
    char *p2 = query_value(a2, "SELECT pg_backend_pid()");
    free(query_value(a1, "COMMIT"));
    free(query_value(a2, "COMMIT"));
    PGconn *m = login("mallory");
    char *pm = query_value(m, "SELECT pg_backend_pid()");
    cr_expect(strcmp(pm, p1) != 0 && strcmp(pm, p2) != 0,
              "a masked client was handed a server an exempt client used");
    char *pa = query_value(a1, "SELECT pg_backend_pid()");
    cr_expect(strcmp(pa, p1) == 0 || strcmp(pa, p2) == 0,
              "both servers of the exempt clients were closed for one masked client");
    cr_expect_eq(admin_pool_number(&px, "audra", "pw", "app", "sv_active", "sv_idle"), 2);
    free(p1);
    free(p2);
    free(pm);
    free(pa);
    PQfinish(m);
    PQfinish(a1);
    PQfinish(a2);
}

/* In a full pool, the longest waiting client, of another masking class than every server, is
 * not passed over by later clients of the servers' class: a freed server is replaced for it. */
Test(masking, a_waiter_of_another_masking_class_is_not_passed_over,
     .init = start_masking_two_servers_admin)
{
    PGconn *a1 = login("audra"), *a2 = login("audra"), *a3 = login("audra"), *m = login("mallory");
    free(query_value(m, "SELECT 1")); /* the masking catalog is read: m waits for no read */
    free(query_value(a1, "BEGIN"));
    free(query_value(a2, "BEGIN"));
    free(query_value(a1, "SELECT 1"));
    free(query_value(a2, "SELECT 1")); /* both servers taken by exempt clients */
    cr_assert(PQsendQuery(m, "SELECT 'served'"), "%s", PQerrorMessage(m));
    expect_clients_waiting(&px, "audra", "pw", "app", 1);
    cr_assert(PQsendQuery(a3, "BEGIN"), "%s", PQerrorMessage(a3)); /* would keep a server */
    expect_clients_waiting(&px, "audra", "pw", "app", 2);
    free(query_value(a1, "COMMIT"));
    free(sent_query_value(m));     /* the masked client, first in line, is served */
    PGresult *r = PQgetResult(a3); /* then the exempt one that came after it */
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(a3));
    PQclear(r);
    while ((r = PQgetResult(a3)))
        PQclear(r);
    free(query_value(a3, "COMMIT"));
    free(query_value(a2, "COMMIT"));
    PQfinish(m);
    PQfinish(a1);
    PQfinish(a2);
    PQfinish(a3);
}

/* LISTEN is session state: the server of a masked client that listened is retired, so the
 * next client on it never receives notifications meant for another. */
Test(masking, a_masked_clients_listen_retires_its_server, .init = start_masking_one_server)
{
    PGconn *m = login("mallory");
    free(query_value(m, "LISTEN lp_chan"));
    PQfinish(m);
    PGconn *s = login("mallory");
    char *v = query_value(s, "SELECT count(*) FROM pg_listening_channels()");
    cr_expect_str_eq(v, "0", "the next client's server listens on the previous client's channel");
    free(v);
    PQfinish(s);
}

/* A masked client cannot change what masking protects (inside a transaction that is rolled
 * back, so a regression cannot break the other tests). */
Test(masking, ddl_that_would_move_masked_data_out_of_reach_is_refused)
{
    const char *ddl[] = {
        "ALTER SCHEMA public RENAME TO pub2",
        "ALTER TABLE vip_customers NO INHERIT customers",
        "ALTER FUNCTION customer_email(int) RENAME TO zzz",
        "ALTER TABLE customers RENAME COLUMN ssn TO ssn2",
        "ALTER TABLE customers RENAME TO clients",
        "ALTER VIEW customer_contacts RENAME TO cc",
        "DROP VIEW customer_names",
    };
    PGconn *m = login("mallory");
    for (size_t i = 0; i < sizeof(ddl) / sizeof(ddl[0]); i++) {
        PQclear(PQexec(m, "BEGIN"));
        PGresult *r = PQexec(m, ddl[i]);
        cr_expect_eq(PQresultStatus(r), PGRES_FATAL_ERROR, "[%s] ran", ddl[i]);
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cr_expect_str_eq(st ? st : "", "42501", "[%s]: %s", ddl[i], PQresultErrorMessage(r));
        PQclear(r);
        PQclear(PQexec(m, "ROLLBACK"));
    }
    PQfinish(m);
}

/* The guard reads text as PostgreSQL does only with standard_conforming_strings on and a
 * client encoding in which no byte of a character can be a quote or backslash: a masked
 * client cannot log in otherwise (a string could then hide SQL from the guard). */
Test(masking, a_masked_client_cannot_log_in_with_settings_that_hide_sql_from_the_guard)
{
    const char *options[] = {"options='-c standard_conforming_strings=off'",
                             "client_encoding=GB18030", "client_encoding=SJIS"};
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        PGconn *m = proxy_connect(&px, "mallory", "pw", "app", options[i]);
        bool refused = PQstatus(m) != CONNECTION_OK;
        if (!refused) { /* or, at the latest, its first statement */
            PGresult *r = PQexec(m, "SELECT email FROM customers");
            refused = PQresultStatus(r) != PGRES_TUPLES_OK;
            mask_expect_no_secret(r, options[i]);
            PQclear(r);
        }
        cr_expect(refused, "%s was accepted", options[i]);
        cr_expect(strstr(PQerrorMessage(m), "standard_conforming_strings") != NULL, "%s: %s",
                  options[i], PQerrorMessage(m));
        PQfinish(m);
    }
    PGconn *a = proxy_connect(&px, "audra", "pw", "app", options[0]);
    cr_expect(PQstatus(a) == CONNECTION_OK, "an unmasked client may: %s", PQerrorMessage(a));
    PQfinish(a);
}

/* A reload that masks salary reaches statements prepared and cursors opened before it: a
 * prepared statement is forgotten (the client must prepare it again, through the guard), and
 * a transaction still open over the reload ends. */
Test(masking, a_reload_reaches_statements_prepared_before_it, .init = start_without_salary)
{
    PGconn *m = login("mallory");
    PGresult *r = PQprepare(m, "s", "SELECT salary + 0 AS p FROM customers ORDER BY id", 0, NULL);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
    PQclear(r);
    char *v = query_value(m, "SELECT salary FROM customers WHERE id = 1");
    cr_assert_str_eq(v, "12345", "salary is not masked yet");
    free(v);
    PGconn *t = login("mallory");
    const char *open[] = {"BEGIN", "PREPARE p2 AS SELECT salary + 0 FROM customers",
                          "DECLARE cur CURSOR FOR SELECT salary + 1 FROM customers"};
    for (size_t i = 0; i < 3; i++) {
        r = PQexec(t, open[i]);
        cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", open[i],
                     PQresultErrorMessage(r));
        PQclear(r);
    }
    char yaml[16384];
    proxy_default_yaml(yaml, sizeof(yaml), px.port, "transaction", 2, 10000, MASKING_YAML);
    proxy_reload_yaml(&px, yaml);

    r = PQexecPrepared(m, "s", 0, NULL, NULL, NULL, 0);
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "the old statement still ran");
    mask_expect_no_secret(r, "prepared before the reload");
    PQclear(r);
    const char *after[] = {"EXECUTE p2", "FETCH ALL FROM cur"};
    for (size_t i = 0; i < 2; i++) {
        r = PQexec(t, after[i]);
        cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "[%s] ran after the reload", after[i]);
        mask_expect_no_secret(r, after[i]);
        PQclear(r);
    }
    PQfinish(t);
    r = PQexec(m, "SELECT salary + 0 FROM customers");
    cr_expect_eq(PQresultStatus(r), PGRES_FATAL_ERROR, "the new rule applies to new text");
    PQclear(r);
    v = query_value(m, "SELECT salary FROM customers WHERE id = 1");
    cr_expect_str_eq(v, "0", "and masks");
    free(v);
    PQfinish(m);
}

/* Each comparison of a masked column with a value is a guess: a user gets
 * masking.max_tests_per_second of them (here 5, bursts of 10), in simple queries and in
 * executions of prepared statements alike; statements without such tests are not counted. */
Test(masking, guesses_at_masked_values_are_rate_limited, .init = start_slow_budget)
{
    PGconn *m = login("mallory");
    int ok = 0, refused = 0;
    for (int i = 0; i < 30; i++) {
        PGresult *r = PQexec(m, "SELECT id FROM customers WHERE ssn = '000-00-0000'");
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            ok++;
        else if (strstr(PQresultErrorMessage(r), "max_tests_per_second"))
            refused++;
        PQclear(r);
    }
    cr_expect_leq(ok, 14, "a burst of 10, and a few refilled: %d ran", ok);
    cr_expect_geq(refused, 15, "the rest refused: %d", refused);
    for (int i = 0; i < 30; i++) { /* statements without tests are not counted */
        char *v = query_value(m, "SELECT count(*) FROM customers");
        free(v);
    }
    usleep(1200000);
    char *v = query_value(m, "SELECT id FROM customers WHERE ssn = '000-00-0000' OR id = 1");
    cr_expect_str_eq(v, "1", "the budget refills");
    free(v);
    /* prepared statements pay per execution: the connection ends when the budget is gone */
    PGresult *p = PQprepare(m, "g", "SELECT id FROM customers WHERE ssn = $1", 1, NULL);
    cr_assert_eq(PQresultStatus(p), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(p));
    PQclear(p);
    bool stopped = false;
    for (int i = 0; i < 40 && !stopped; i++) {
        const char *guess[1] = {"000-00-0000"};
        PGresult *r = PQexecPrepared(m, "g", 1, guess, NULL, NULL, 0);
        stopped = PQresultStatus(r) != PGRES_TUPLES_OK;
        if (stopped)
            cr_expect(strstr(PQerrorMessage(m), "max_tests_per_second") != NULL, "%s",
                      PQerrorMessage(m));
        PQclear(r);
    }
    cr_expect(stopped, "40 executions in a burst of 10");
    PQfinish(m);
}

/* A LIKE pattern on a masked column given as a parameter is checked at each Bind: a constant
 * prefix runs (rows masked as always), a positional pattern ends the connection with a message
 * saying what to send, whether the statement is unnamed (PQexecParams) or prepared; a
 * parameter declared "char" (whose text '\137' reads as '_') is refused too. */
Test(masking, like_pattern_parameters_must_be_prefixes)
{
    PGconn *m = login("mallory");
    const char *sql = "SELECT count(*) FROM customers WHERE ssn LIKE $1";
    const char *prefix[1] = {"111-%"};
    PGresult *r = PQexecParams(m, sql, 1, NULL, prefix, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(m));
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    const char *positional[1] = {"__1%"};
    r = PQexecParams(m, sql, 1, NULL, positional, NULL, NULL, 0);
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "a positional pattern ran");
    cr_expect(strstr(PQerrorMessage(m), "constant prefix") != NULL, "%s", PQerrorMessage(m));
    PQclear(r);
    PQfinish(m);
    m = login("mallory");
    r = PQprepare(m, "l", sql, 1, NULL);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(m));
    PQclear(r);
    r = PQexecPrepared(m, "l", 1, prefix, NULL, NULL, 0);
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(m));
    PQclear(r);
    const char *suffix[1] = {"%3333"};
    r = PQexecPrepared(m, "l", 1, suffix, NULL, NULL, 0);
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "a suffix pattern ran");
    PQclear(r);
    PQfinish(m);
    m = login("mallory");
    const Oid char_type[1] = {18};
    const char *escaped[1] = {"\\137"};
    r = PQexecParams(m, "SELECT count(*) FROM customers WHERE ssn LIKE $1 || '%'", 1, char_type,
                     escaped, NULL, NULL, 0);
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "an expression pattern ran");
    PQclear(r);
    PQfinish(m);
    m = login("mallory");
    r = PQexecParams(m, sql, 1, char_type, escaped, NULL, NULL, 0);
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "a \"char\" parameter ran");
    cr_expect(strstr(PQerrorMessage(m), "text or varchar parameter") != NULL, "%s",
              PQerrorMessage(m));
    PQclear(r);
    PQfinish(m);
}

/* Runs sql with one parameter (type PostgreSQL infers) bound to value; returns count(*) of its
 * second column, or -1 when it failed. */
static int count_with(PGconn *m, const char *sql, const char *value)
{
    const char *v[1] = {value};
    PGresult *r = PQexecParams(m, sql, 1, NULL, v, NULL, NULL, 0);
    int n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 1)) : -1;
    PQclear(r);
    return n;
}

/* A LIKE pattern parameter the client left undeclared is declared text by lakeproxy: before,
 * PostgreSQL inferred its type from another use ($1::bytea IS NULL, $1::regclass), and the
 * LIKE over $1::text matched that type's output ('\\x5f5f5f5f3525' as bytea prints as
 * '____5%'), not the bytes the Bind check saw (found by a review: each such statement asked
 * every row about one character). Now the value is the pattern: a prefix of nothing here. */
Test(masking, like_pattern_parameters_match_the_bytes_checked)
{
    PGconn *m = login("mallory");
    PGresult *r = PQexec(m, "SET bytea_output = escape");
    PQclear(r);
    const char *sql =
        "SELECT $1::bytea IS NULL, count(*) FROM customers WHERE ssn LIKE $1::pg_catalog.text";
    cr_expect_eq(count_with(m, sql, "\\x5f5f5f5f3525"), 0, "read as bytea: ____5%");
    cr_expect_eq(count_with(m, sql, "111-%"), 1, "a prefix works");
    PQfinish(m);
    m = login("mallory");
    r = PQexec(m, "BEGIN");
    PQclear(r);
    r = PQexec(m, "CREATE TEMP TABLE ____8______ ()");
    PQclear(r);
    char *oid = query_value(m, "SELECT '____8______'::regclass::oid::text");
    int n = count_with(m,
                       "SELECT $1::regclass IS NULL, count(*) FROM customers WHERE ssn LIKE "
                       "$1::pg_catalog.text",
                       oid);
    cr_expect_neq(n, 1, "read as regclass: the table's name ____8______");
    free(oid);
    PQfinish(m);
}

/* Reads a pipeline's results up to its syncs_wanted-th Sync; *last gets the last row's first
 * value. */
static void drain_pipeline(PGconn *c, int syncs_wanted, char *last, size_t lastsz)
{
    for (int syncs = 0; syncs < syncs_wanted;) {
        PGresult *r = PQgetResult(c);
        if (!r)
            continue;
        syncs += PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
            snprintf(last, lastsz, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
}

/* An unnamed Parse skipped after an error leaves PostgreSQL the older unnamed statement; a
 * Bind "" sent after the Sync, before the error came back, was checked against the skipped
 * one's (no LIKE parameter) and ran the older one's LIKE with a positional pattern (found by
 * a review). Under a policy a Bind "" after a Sync now prepares the client's statement again
 * first: what runs is what was checked. */
Test(masking, a_bind_after_a_skipped_unnamed_parse_runs_what_was_checked)
{
    const char *patterns[] = {"__1%", "%9"};
    for (size_t i = 0; i < 2; i++) {
        PGconn *m = login("mallory");
        char last[64] = "";
        cr_assert_eq(PQenterPipelineMode(m), 1);
        cr_assert(
            PQsendPrepare(m, "", "SELECT count(*) FROM customers WHERE ssn LIKE $1", 1, NULL));
        cr_assert(PQsendQueryPrepared(m, "nosuch", 0, NULL, NULL, NULL, 0)); /* an error */
        cr_assert(PQsendPrepare(m, "", "SELECT $1::text", 1, NULL));         /* skipped */
        cr_assert(PQpipelineSync(m));
        const char *v[1] = {patterns[i]};
        cr_assert(PQsendQueryPrepared(m, "", 1, v, NULL, NULL, 0));
        cr_assert(PQpipelineSync(m));
        drain_pipeline(m, 2, last, sizeof(last));
        cr_expect_str_eq(last, patterns[i], "the LIKE ran with %s", patterns[i]);
        PQfinish(m);
    }
}

/* Puts a Bind of the unnamed portal to stmt with one text parameter value. */
static void put_bind_value(struct buf *b, const char *stmt, const char *value)
{
    buf_msg_start(b, 'B');
    buf_put_str(b, "");
    buf_put_str(b, stmt);
    buf_put_u16(b, 0);
    buf_put_u16(b, 1);
    buf_put_u32(b, (uint32_t)strlen(value));
    buf_put_bytes(b, value, strlen(value));
    buf_put_u16(b, 0);
    buf_msg_finish(b);
}

/* Reads fd's messages up to the syncs-th ReadyForQuery or a message of type stop (0: none);
 * *last gets the last DataRow's first value. */
static void read_answers(int fd, int syncs, char *last, size_t lastsz, int stop)
{
    unsigned char body[65536];
    size_t len;
    int t;
    for (int z = 0; z < syncs && (t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) >= 0;) {
        z += t == 'Z';
        if (t == 'D' && len > 6) {
            uint32_t l = (uint32_t)body[2] << 24 | body[3] << 16 | body[4] << 8 | body[5];
            snprintf(last, lastsz, "%.*s", (int)(l < len - 6 ? l : len - 6), body + 6);
        }
        if (t == stop)
            return;
    }
}

/* The same with the Syncs sent during a COPY FROM STDIN that bad data ends: PostgreSQL answers
 * them, and lakeproxy, which cannot know that yet, must treat them as Syncs for the unnamed
 * statement too (found by a review: the LIKE ran with __1%). */
Test(masking, a_bind_after_a_copy_and_a_skipped_unnamed_parse_runs_what_was_checked)
{
    PGconn *m = login("mallory");
    int fd = PQsocket(m);
    struct buf b;
    buf_init(&b);
    char last[64] = "";
    raw_put_parse(&b, "", "SELECT count(*) FROM customers WHERE ssn LIKE $1");
    raw_put_empty(&b, 'S');
    raw_put_parse(&b, "c", "COPY scratch FROM STDIN");
    raw_put_bind(&b, "", "c");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'H');
    cr_assert(raw_send(fd, &b));
    read_answers(fd, 5, last, sizeof(last), 'G'); /* CopyInResponse */
    buf_msg_start(&b, 'd');
    buf_put_bytes(&b, "a\tb\n", 4); /* two columns into one: the copy fails */
    buf_msg_finish(&b);
    raw_put_empty(&b, 'S');
    raw_put_bind(&b, "", "nosuch"); /* an error: the Parse after it is skipped */
    raw_put_parse(&b, "", "SELECT $1::text");
    raw_put_empty(&b, 'S');
    put_bind_value(&b, "", "__1%");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    read_answers(fd, 3, last, sizeof(last), 0);
    cr_expect_str_eq(last, "__1%", "the LIKE ran with __1%%");
    buf_free(&b);
    PQfinish(m);
}

/* Admin RELOADs that close masked clients while their statements wait for the masking
 * catalog (each reload drops it; the next statements wait for a new read), alternating with
 * reloads that let them in again: no unmasked value reaches them, and lakeproxy stays up. */
Test(masking, reloads_closing_clients_waiting_for_the_catalog_leak_nothing,
     .init = start_masking_two_servers_admin)
{
    static char open_yaml[16384], closed_yaml[17000];
    proxy_default_yaml(open_yaml, sizeof(open_yaml), px.port, "transaction", 2, 10000,
                       MASKING_YAML "admin:\n  users: [audra]\n");
    char *at = strstr(open_yaml, "  app:\n");
    cr_assert_not_null(at);
    snprintf(closed_yaml, sizeof(closed_yaml), "%.*s  app:\n    allow: {users: [audra]}\n%s",
             (int)(at - open_yaml), open_yaml, at + strlen("  app:\n"));
    PGconn *adm = proxy_connect(&px, "audra", "pw", "lakeproxy", NULL);
    cr_assert(PQstatus(adm) == CONNECTION_OK, "%s", PQerrorMessage(adm));
    for (int round = 0; round < 6; round++) {
        PGconn *c[4];
        for (int i = 0; i < 4; i++) {
            c[i] = proxy_connect(&px, "mallory", "pw", "app", NULL);
            cr_assert(PQstatus(c[i]) == CONNECTION_OK, "%s", PQerrorMessage(c[i]));
        }
        PGresult *r = PQexec(adm, "RELOAD"); /* drops the catalog: the next statements wait */
        PQclear(r);
        for (int i = 0; i < 4; i++)
            PQsendQuery(c[i], "SELECT email, ssn FROM customers; SELECT salary FROM customers");
        FILE *f = fopen(px.conf, "w");
        fputs(closed_yaml, f);
        fclose(f);
        r = PQexec(adm, "RELOAD");
        cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(adm));
        PQclear(r);
        f = fopen(px.conf, "w");
        fputs(open_yaml, f);
        fclose(f);
        r = PQexec(adm, "RELOAD");
        PQclear(r);
        for (int i = 0; i < 4; i++) {
            while ((r = PQgetResult(c[i]))) {
                if (PQresultStatus(r) == PGRES_TUPLES_OK)
                    mask_expect_no_secret(r, "a client the reload closed");
                PQclear(r);
            }
            PQfinish(c[i]);
        }
    }
    PQfinish(adm);
    PGconn *c = proxy_connect(&px, "audra", "pw", "lakeproxy", NULL);
    cr_expect(PQstatus(c) == CONNECTION_OK, "the proxy still serves: %s", PQerrorMessage(c));
    PQfinish(c);
}
