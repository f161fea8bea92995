/* test_redteam22.c: red-team round 22 on the names lakeproxy gives the statements it prepares
 * on shared servers (prepared.c stmt_proxy_name). The names were lp_ + 16 bytes of SHA-256 of
 * the Parse body after the name: a client (no rls) could compute the name of a statement
 * another client would prepare later and create it first on the shared server, with another
 * text, through dynamic SQL in a function lakeproxy cannot see into (pre-poisoning). Each test
 * asserts the SAFE behaviour: a failing test is a finding.
 *
 * Held before the fix (integrity): the victim never ran the planted text; its Parse failed
 * 42P05 and its Bind 26000.
 * Found (availability, low), fixed: the name stayed blocked on that server for every client,
 * and the error named lakeproxy's internal name. The name is now keyed with the process's
 * secret (hashkey.h), so the attacker's prediction misses and the victim's statement prepares
 * and runs as its own. */
#include <criterion/criterion.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static struct proxy px;

/* Transaction pooling with ONE server: every client shares it. */
static void start(void)
{
    proxy_start_with(&px, "transaction", 1, 3000, NULL);
}

static void stop(void)
{
    proxy_stop(&px);
}

TestSuite(redteam22, .init = start, .fini = stop, .timeout = 90);

static PGconn *alice(void)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* The name an attacker would predict for a Parse of sql with no parameter types (what libpq
 * sends for PQprepare(c, name, sql, n, NULL)) in an empty statement context: lp_ + hex of the
 * first 16 bytes of SHA-256(sql, NUL, int16 0), lakeproxy's rule before this round. */
static void proxy_name_of(const char *sql, char out[36])
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(sql);
    unsigned char *rest = malloc(n + 3);
    cr_assert(rest);
    memcpy(rest, sql, n + 1);
    rest[n + 1] = 0;
    rest[n + 2] = 0;
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256(rest, n + 3, h);
    free(rest);
    memcpy(out, "lp_", 3);
    for (int i = 0; i < 16; i++) {
        out[3 + 2 * i] = hex[h[i] >> 4];
        out[4 + 2 * i] = hex[h[i] & 15];
    }
    out[35] = '\0';
}

/* c prepares sql (one parameter) and runs it with arg: it must get want, its own text's. */
static void expect_prepares_as_own(PGconn *c, const char *sql, const char *arg, const char *want)
{
    PGresult *r = PQprepare(c, "rt22_mine", sql, 1, NULL);
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "Parse failed: %s", PQerrorMessage(c));
    PQclear(r);
    char *v = prepared_value(c, "rt22_mine", arg);
    cr_expect_str_eq(v, want);
    free(v);
}

/* The attacker computes the proxy's name of the victim's future statement and creates it on
 * the shared server first, with another text, through a function's dynamic SQL. The victim
 * then prepares and runs its statement: it must get its own result or a clear error, never the
 * attacker's text's. */
Test(redteam22, predicted_statement_name_cannot_be_pre_poisoned)
{
    PGconn *victim = alice(), *attacker = alice();

    /* control: the statement is on the server under an lp_ name, and the prediction misses */
    const char *ctl_sql = "SELECT $1::text || ' rt22 control'";
    char ctl_name[36];
    proxy_name_of(ctl_sql, ctl_name);
    PGresult *r = PQprepare(victim, "rt22_ctl", ctl_sql, 1, NULL);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(victim));
    PQclear(r);
    char *v = prepared_value(victim, "rt22_ctl", "x");
    cr_assert_str_eq(v, "x rt22 control");
    free(v);
    char *seen = query_value(attacker, "SELECT name FROM pg_prepared_statements "
                                       "WHERE statement LIKE '%rt22 control%' LIMIT 1");
    cr_assert(seen, "the control statement is not on the server");
    cr_assert_eq(strncmp(seen, "lp_", 3), 0, "%s", seen);
    cr_assert_str_neq(seen, ctl_name, "the attacker predicted lakeproxy's name from the text");
    free(seen);

    /* the attack: the victim's statement, named before the victim prepares it */
    const char *victim_sql = "SELECT 'victim ' || $1::text";
    char name[36];
    proxy_name_of(victim_sql, name);
    char fn[600];
    snprintf(fn, sizeof(fn),
             "CREATE OR REPLACE FUNCTION rt22_f() RETURNS void LANGUAGE plpgsql AS $f$BEGIN "
             "EXECUTE 'PREPARE ' || chr(108) || 'p_%s(text) AS SELECT ''poisoned '' || $1'; "
             "END$f$",
             name + 3);
    pg_exec_ok(attacker, fn);
    pg_exec_ok(attacker, "SELECT rt22_f()");
    char check[200];
    snprintf(check, sizeof(check), "SELECT statement FROM pg_prepared_statements WHERE name = '%s'",
             name);
    char *planted = query_value(attacker, check);
    cr_assert(planted, "the attacker's statement is not on the server");
    free(planted);

    /* the victim's statement prepares and runs as its own, now and for a later client */
    expect_prepares_as_own(victim, victim_sql, "hello", "victim hello");
    PQfinish(attacker);
    PGconn *later = alice();
    expect_prepares_as_own(later, victim_sql, "late", "victim late");
    PQfinish(later);
    PQclear(PQexec(victim, "DROP FUNCTION IF EXISTS rt22_f()"));
    PQfinish(victim);
}
