/* test_redteam10.c: red-team round 10 against the keyword pre-filter of the RLS guard
 * (textscan.h's 16-byte block scan, guard_may_matter), the guard cache, and the masking
 * guard's client_encoding pre-filter (policy.c changes_client_encoding). Each test asserts
 * the SAFE behaviour: a failing test is a finding. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

TestSuite(redteam10, .timeout = 120);

static struct proxy px;

static void admin_sql(const char *sql)
{
    PGconn *adm = pg_admin("lp_test");
    PGresult *r = PQexec(adm, sql);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
              "admin: %s: %s", sql, PQerrorMessage(adm));
    PQclear(r);
    PQfinish(adm);
}

/* ---- RLS: users t1..t3 (tenant 1..3), everyone assumes lp_tenant ---- */

static void start_rls_mode(const char *mode)
{
    static char yaml[16384];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, mode, 1, 20000,
                       "  t1: {password: pw, attributes: {tenant_id: \"1\"}}\n"
                       "  t2: {password: pw, attributes: {tenant_id: \"2\"}}\n"
                       "  t3: {password: pw, attributes: {tenant_id: \"3\"}}\n"
                       "rls:\n  prefix: app\n  databases: [app]\n  switch_role: true\n"
                       "  default_role: lp_tenant\n"
                       "  attributes: {tenant_id: attribute, user: user}\n");
    proxy_start_yaml(&px, port, yaml);
}
static void start_rls_txn(void)
{
    start_rls_mode("transaction");
}
static void start_rls_session(void)
{
    start_rls_mode("session");
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

static PGconn *tenant(int t)
{
    char user[16];
    snprintf(user, sizeof(user), "t%d", t);
    PGconn *c = proxy_connect(&px, user, "pw", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "login as %s failed: %s", user, PQerrorMessage(c));
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

/* Tenant t on c must see its own rows only, its own attribute and lp_tenant. */
static void expect_own(PGconn *c, int t, const char *after)
{
    char want[64];
    snprintf(want, sizeof(want), "100|0|%d|lp_tenant", t);
    PGresult *r =
        PQexec(c, "SELECT count(*) || '|' || count(*) FILTER (WHERE tenant_id <> "
                  "nullif(current_setting('app.tenant_id', true), '')::int) || '|' || "
                  "current_setting('app.tenant_id') || '|' || current_user FROM rls_docs");
    const char *got = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                          ? PQgetvalue(r, 0, 0)
                          : PQerrorMessage(c);
    cr_expect_str_eq(got, want, "tenant %d after %s", t, after);
    PQclear(r);
}

/* Runs sql on c (simple Query, or Parse/Bind/Execute when ext); any rows it returns must not
 * be another tenant's: *rows_other gets the count of cells naming tenant 1. Returns whether it
 * succeeded. */
static bool run_attack(PGconn *c, const char *sql, bool ext)
{
    PGresult *r = ext ? PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0) : PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    PQclear(r);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* A forgery of app.tenant_id = 1 / role by tenant 2: afterwards tenant 2 (same server: pool of
 * one) and then tenant 3 must still see their own rows only. */
static void forge(const char *sql, const char *what)
{
    PGconn *c = tenant(2);
    PQsetNoticeProcessor(c, quiet, NULL);
    for (int ext = 0; ext <= 1; ext++) {
        char after[512];
        snprintf(after, sizeof(after), "%s (%s): %.200s", what, ext ? "extended" : "simple", sql);
        bool ok = run_attack(c, sql, ext);
        (void)ok;
        expect_own(c, 2, after);
        /* inside a transaction too (SET LOCAL style) */
        PQclear(PQexec(c, "BEGIN"));
        run_attack(c, sql, ext);
        PGresult *r = PQexec(c, "SELECT count(*) FILTER (WHERE tenant_id <> 2) || '|' || "
                                "current_setting('app.tenant_id') FROM rls_docs");
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            cr_expect_str_eq(PQgetvalue(r, 0, 0), "0|2", "in a transaction after %s", after);
        PQclear(r);
        PQclear(PQexec(c, "ROLLBACK"));
        expect_own(c, 2, after);
    }
    PQfinish(c);
    PGconn *n = tenant(3);
    expect_own(n, 3, what);
    PQfinish(n);
}

static const char *const forgeries[] = {
    "SET app.tenant_id = 1",
    "SET LOCAL app.tenant_id = 1",
    "\f\vSET app.tenant_id = 1",
    "\v\f  set\tapp.tenant_id\f=\v1",
    "/* x /* nested */ y */SET app.tenant_id = 1",
    "-- c\nSET app.tenant_id = 1",
    "SELECT 1;\vSET app.tenant_id = 1",
    "SELECT 1;/**/SET app.tenant_id = 1",
    "SELECT $$;$$;SET app.tenant_id = 1",
    "SELECT $x$ $x$;RESET app.tenant_id",
    "SELECT E'\\';'; SET app.tenant_id = 1; SELECT '",
    "SELECT '\\'; SET app.tenant_id = 1; --'",
    "SELECT set/**/_config('app.tenant_id', '1', false)",
    "SELECT \"set_config\"('app.tenant_id', '1', false)",
    "SELECT pg_catalog.\"SET_CONFIG\"('app.tenant_id', '1', false)",
    "SELECT U&\"set\\005fconfig\"('app.tenant_id', '1', false)",
    "SELECT U&\"\\0073et_config\"('app.tenant_id', '1', false)",
    "SELECT u&\"SET\\005FCONFIG\" ('app.tenant_id', '1', false)",
    "SELECT U&\"!0073et_config\" UESCAPE '!'('app.tenant_id', '1', false)",
    "SELECT set_config(U&'app.tenant\\005fid', '1', false)",
    "SELECT set_config(E'app.tenant\\x5fid', '1', false)",
    "SELECT set_config(E'\\x61pp.tenant_id', '1', false)",
    "SELECT set_config(U&'\\0072ole', 'lp_server', false)",
    "SELECT set_config($$app.tenant_id$$, '1', false)",
    "SELECT set_config($q$role$q$, 'lp_server', false)",
    "SELECT set_config('app.tenant_id', '1', false) FROM rls_docs LIMIT 1",
    "UPDATE pg_settings SET setting = '1' WHERE name = 'app.tenant_id'",
    "UPDATE pg_catalog.\"pg_settings\" SET setting = '1' WHERE name = 'app.tenant_id'",
    "SET ROLE lp_server",
    "\fRESET ROLE",
    "SET SESSION AUTHORIZATION DEFAULT",
    "RESET ALL",
    "DISCARD ALL",
    "SET \"app\".tenant_id = 1",
    "SET U&\"app\".U&\"tenant\\005fid\" = 1",
    "SET LOCAL U&\"\\0061pp\".tenant_id TO '1'",
    "SET U&\"\\0072ole\" = lp_server",
};

/* Each forgery at every offset of a 16-byte block (and around the text's last partial block):
 * the pre-filter must see the keyword wherever the block boundary falls. */
static void forge_all_offsets(void)
{
    for (size_t i = 0; i < sizeof(forgeries) / sizeof(forgeries[0]); i++)
        forge(forgeries[i], "plain");
    static const char *const padded[] = {
        "SELECT %.*sset_config('app.tenant_id', '1', false)",
        "/*%.*s*/SET app.tenant_id = 1",
        "SELECT 1; /*%.*s*/ SET app.tenant_id = 1",
        "SELECT %.*sSET_CONFIG('role','lp_server',false)",
        "UPDATE %.*spg_settings SET setting = '1' WHERE name = 'app.tenant_id'",
        "SELECT set_config('app.tenant_id', '1', false)%.*s",
    };
    static const char spaces[] = "                                                  ";
    for (size_t p = 0; p < sizeof(padded) / sizeof(padded[0]); p++)
        for (int pad = 0; pad < 34; pad++) {
            char sql[256];
            snprintf(sql, sizeof(sql), padded[p], pad, spaces);
            forge(sql, "padded");
        }
}

Test(redteam10, keyword_prefilter_forgeries_transaction_pooling, .init = start_rls_txn,
     .fini = stop_proxy)
{
    forge_all_offsets();
}

Test(redteam10, keyword_prefilter_forgeries_session_pooling, .init = start_rls_session,
     .fini = stop_proxy)
{
    for (size_t i = 0; i < sizeof(forgeries) / sizeof(forgeries[0]); i++)
        forge(forgeries[i], "session");
}

/* Very long statements (past the guard cache's 8 KiB and the 64 KiB parse limit), the
 * keyword at the very end. */
Test(redteam10, long_statements_with_the_keyword_at_the_end, .init = start_rls_txn,
     .fini = stop_proxy)
{
    static const size_t lens[] = {8191, 8192, 8193, 65535, 65536, 70000};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        char *sql = malloc(lens[i] + 200);
        size_t o = (size_t)sprintf(sql, "SELECT 1 /*");
        while (o < lens[i])
            sql[o++] = 'x';
        sprintf(sql + o, "*/; SET app.tenant_id = 1");
        forge(sql, "long");
        o = (size_t)sprintf(sql, "SELECT '");
        while (o < lens[i])
            sql[o++] = 'y';
        sprintf(sql + o, "', set_config('app.tenant_id', '1', false)");
        forge(sql, "long select");
        free(sql);
    }
}

/* Client encodings in which a second byte can be a quote or a backslash, by every name. */
Test(redteam10, unsafe_client_encodings_by_other_names, .init = start_rls_txn, .fini = stop_proxy)
{
    static const char *const names[] = {"SJIS",        "Shift_JIS",      "ms-kanji",   "WIN932",
                                        "windows-932", "SHIFT_JIS_2004", "BIG5",       "win950",
                                        "GBK",         "CP936",          "UHC",        "cp949",
                                        "GB18030",     "JOHAB",          "Windows_936"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char opt[96], sql[160];
        snprintf(opt, sizeof(opt), "client_encoding=%s", names[i]);
        PGconn *c = proxy_connect(&px, "t2", "pw", "app", opt);
        if (PQstatus(c) == CONNECTION_OK) {
            PGresult *r = PQexec(c, "SHOW client_encoding");
            const char *enc = PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "?";
            cr_expect(strcmp(enc, "SJIS") && strcmp(enc, "BIG5") && strcmp(enc, "GBK") &&
                          strcmp(enc, "UHC") && strcmp(enc, "GB18030") && strcmp(enc, "JOHAB") &&
                          strcmp(enc, "SHIFT_JIS_2004"),
                      "login with %s runs in %s", names[i], enc);
            PQclear(r);
        }
        PQfinish(c);
        c = tenant(2);
        PQsetNoticeProcessor(c, quiet, NULL);
        const char *forms[] = {"SET client_encoding = '%s'", "SET NAMES '%s'",
                               "SELECT set_config('client_encoding', '%s', false)",
                               "SET U&\"client\\005fencoding\" TO '%s'",
                               "SELECT set_config(E'client\\x5fencoding', '%s', true)"};
        for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
            snprintf(sql, sizeof(sql), forms[f], names[i]);
            PQclear(PQexec(c, "BEGIN"));
            PGresult *r = PQexec(c, sql);
            cr_expect(PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK,
                      "%s was let through", sql);
            PQclear(r);
            PQclear(PQexec(c, "ROLLBACK"));
        }
        expect_own(c, 2, names[i]);
        PQfinish(c);
    }
}

/* A statement prepared (protocol Parse, named) on one server, re-prepared by lakeproxy on
 * another after other tenants' transactions, must keep its guard verdict and effects. */
Test(redteam10, named_statement_reprepared_across_servers, .init = start_rls_txn,
     .fini = stop_proxy)
{
    PGconn *a = tenant(2), *b = tenant(1);
    PQsetNoticeProcessor(a, quiet, NULL);
    PGresult *r =
        PQprepare(a, "s1", "SELECT set_config(U&'\\0061pp.tenant_id', $1, false)", 1, NULL);
    cr_expect(PQresultStatus(r) != PGRES_COMMAND_OK, "the forgery Parse was accepted");
    PQclear(r);
    r = PQprepare(a, "s2", "SELECT count(*)::text FROM rls_docs", 0, NULL);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(a));
    PQclear(r);
    expect_own(b, 1, "tenant 1 between");
    const char *p[1] = {"1"};
    r = PQexecPrepared(a, "s1", 1, p, NULL, NULL, 0);
    cr_expect(PQresultStatus(r) != PGRES_TUPLES_OK, "the refused statement ran");
    PQclear(r);
    r = PQexecPrepared(a, "s2", 0, NULL, NULL, NULL, 0);
    cr_expect_str_eq(PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "err", "100");
    PQclear(r);
    expect_own(a, 2, "re-prepared statements");
    expect_own(b, 1, "after tenant 2's statements");
    PQfinish(a);
    PQfinish(b);
}

/* ---- masking: a masked client may not change client_encoding mid-session (masks count
 * characters in it); the pre-filter looks for the words client_encoding / names, which an
 * escaped name does not contain ---- */

#define JP_LOCAL "\xe3\x81\x82\xe3\x81\x84\xe3\x81\x86\xe3\x81\x88\xe3\x81\x8a" /* あいうえお */
/* いうえお in EUC_JP: what the email mask (first character only) must never show */
#define EUCJP_HIDDEN "\xa4\xa4\xa4\xa6\xa4\xa8\xa4\xaa"
#define UTF8_HIDDEN "\xe3\x81\x84\xe3\x81\x86"

static void start_masking_jp(void)
{
    admin_sql("CREATE TABLE IF NOT EXISTS rt10_people (id int, email text, code text)");
    admin_sql("TRUNCATE rt10_people");
    admin_sql("INSERT INTO rt10_people VALUES (1, '" JP_LOCAL "@example.jp', "
              "'\xe3\x81\x8b\xe3\x81\x8d\xe3\x81\x8f\xe3\x81\x91\xe3\x81\x93"
              "\xe3\x81\x95\xe3\x81\x97\xe3\x81\x99')");
    admin_sql("GRANT SELECT ON rt10_people TO PUBLIC");
    static char yaml[16384];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 1, 10000,
                       "  mallory: {password: pw}\n"
                       "masking:\n  databases: [app]\n  rules:\n"
                       "    - {column: public.rt10_people.email, function: email}\n"
                       "    - {column: public.rt10_people.code, function: last4}\n");
    proxy_start_yaml(&px, port, yaml);
}

static bool contains_bytes(const char *v, const char *needle)
{
    return v && strstr(v, needle) != NULL;
}

/* Every result of sql (simple Query) on c: no value may hold a hidden part. */
static void expect_no_hidden(PGconn *c, const char *sql)
{
    if (!PQsendQuery(c, sql))
        return;
    PGresult *r;
    while ((r = PQgetResult(c))) {
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            for (int i = 0; i < PQntuples(r); i++)
                for (int j = 0; j < PQnfields(r); j++) {
                    const char *v = PQgetvalue(r, i, j);
                    cr_expect(!contains_bytes(v, EUCJP_HIDDEN) && !contains_bytes(v, UTF8_HIDDEN),
                              "%s: a masked value came out unmasked (%zu bytes: %s)", sql,
                              strlen(v), v);
                    /* last4 of 8 characters: at most 4 characters, in any encoding <= 12 bytes */
                    if (j == 1)
                        cr_expect(strlen(v) <= 4 + 12,
                                  "%s: last4 showed more than four characters (%zu bytes)", sql,
                                  strlen(v));
                }
        PQclear(r);
    }
}

Test(redteam10, masked_client_cannot_change_client_encoding_by_an_escaped_name,
     .init = start_masking_jp, .fini = stop_proxy)
{
    static const char *const attacks[] = {
        "SET client_encoding = 'EUC_JP'; SELECT email, code FROM rt10_people",
        "SET U&\"client\\005fencoding\" = 'EUC_JP'; SELECT email, code FROM rt10_people",
        "SET LOCAL U&\"client\\005fencoding\" = 'EUC_JP'; SELECT email, code FROM rt10_people",
        "SELECT set_config(E'client\\x5fencoding', 'EUC_JP', true); "
        "SELECT email, code FROM rt10_people",
        "SELECT set_config(U&'client\\005fencoding', 'EUC_JP', false); "
        "SELECT email, code FROM rt10_people",
        "SELECT set_config($$client_encoding$$, 'EUC_JP', false); "
        "SELECT email, code FROM rt10_people",
    };
    for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
        PGconn *m = proxy_connect(&px, "mallory", "pw", "app", NULL);
        cr_assert(PQstatus(m) == CONNECTION_OK, "%s", PQerrorMessage(m));
        PQsetNoticeProcessor(m, quiet, NULL);
        expect_no_hidden(m, "SELECT email, code FROM rt10_people");
        expect_no_hidden(m, attacks[i]);
        expect_no_hidden(m, "SELECT email, code FROM rt10_people");
        PQfinish(m);
    }
}

/* The fix (guard_verdict.changes_text_reading): the escaped spellings are refused as the plain
 * one is, with the reason; the client's next statement still runs, still masked. */
Test(redteam10, masked_client_is_told_why_an_escaped_encoding_change_is_refused,
     .init = start_masking_jp, .fini = stop_proxy)
{
    static const char *const changes[] = {
        "SET U&\"client\\005fencoding\" = 'EUC_JP'",
        "SET LOCAL U&\"client\\005fencoding\" TO 'EUC_JP'",
        "RESET U&\"client\\005fencoding\"",
        "SET U&\"standard\\005fconforming\\005fstrings\" = on",
        "SELECT set_config(E'client\\x5fencoding', 'EUC_JP', true)",
        "SELECT set_config(U&'client\\005fencoding', 'EUC_JP', false)",
        "SELECT pg_catalog.set_config(E'CLIENT\\x5fENCODING', 'UTF8', false)",
    };
    PGconn *m = proxy_connect(&px, "mallory", "pw", "app", NULL);
    cr_assert(PQstatus(m) == CONNECTION_OK, "%s", PQerrorMessage(m));
    for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
        PGresult *r = PQexec(m, changes[i]);
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cr_expect_str_eq(st ? st : "(none)", "42501", "%s was not refused: %s", changes[i],
                         PQerrorMessage(m));
        cr_expect(strstr(PQerrorMessage(m), "client_encoding") != NULL,
                  "%s: the reason does not say what to do: %s", changes[i], PQerrorMessage(m));
        PQclear(r);
        r = PQexec(m, "SELECT email FROM rt10_people");
        cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "after %s: %s", changes[i],
                     PQerrorMessage(m));
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            cr_expect_str_eq(PQgetvalue(r, 0, 0), "\xe3\x81\x82***@example.jp", "after %s",
                             changes[i]);
        PQclear(r);
    }
    PQfinish(m);
}
