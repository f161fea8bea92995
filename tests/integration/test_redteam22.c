/* test_redteam22.c: red-team round 22 on the names lakeproxy gives the statements it prepares
 * on shared servers (prepared.c stmt_proxy_name: lp_ + 16 bytes of SHA-256 of the Parse body
 * after the name, with no statement context). The names are predictable: a client (no rls)
 * can compute the name of a statement another client will prepare later and create it first
 * on the shared server, with another text, through dynamic SQL in a function lakeproxy cannot
 * see into (pre-poisoning). Each test asserts the SAFE behaviour: a failing test is a finding.
 *
 * Held (integrity): the victim never runs the planted text. Its Parse goes to the server as
 * Parse lp_<hash> (pipeline.c send_parse; the server's list of statements does not know the
 * planted one), PostgreSQL refuses it 42P05, and pipeline.c's RQ_FAIL branch relays the
 * server's error as it is; undo_skipped drops the client's record (client_stmt_undo), so its
 * Bind gets 26000 "prepared statement ... does not exist".
 * Found (availability, low): the error names lakeproxy's internal name (prepared statement
 * "lp_<hash>" already exists), and the server is not retired on it (stmts_unknown stays
 * false): every later Parse of that text on that server, by any client, fails the same way
 * for as long as the server lives. Within the README's trust model (clients of one pool
 * without rls share a role), but a keyed name (a per-process secret in stmt_proxy_name) would
 * make the name unpredictable, and a 42P05 to a proxy-named Parse could retire the server or
 * send Close + Parse again. */
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

static void ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

/* The name lakeproxy gives a Parse of sql with no parameter types (what libpq sends for
 * PQprepare(c, name, sql, n, NULL)) in an empty statement context: lp_ + hex of the first
 * 16 bytes of SHA-256(sql, NUL, int16 0). */
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

/* The attacker computes the proxy's name of the victim's future statement and creates it on
 * the shared server first, with another text, through a function's dynamic SQL. The victim
 * then prepares and runs its statement: it must get its own result or a clear error, never the
 * attacker's text's. */
Test(redteam22, predicted_statement_name_cannot_be_pre_poisoned)
{
    PGconn *victim = alice(), *attacker = alice();

    /* control: the computed name is the one lakeproxy uses */
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
    cr_assert_str_eq(seen, ctl_name, "the computed name differs from lakeproxy's");
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
    ok(attacker, fn);
    ok(attacker, "SELECT rt22_f()");
    char check[200];
    snprintf(check, sizeof(check), "SELECT statement FROM pg_prepared_statements WHERE name = '%s'",
             name);
    char *planted = query_value(attacker, check);
    cr_assert(planted, "the attacker's statement is not on the server");
    fprintf(stderr, "rt22: planted %s: %s\n", name, planted);
    free(planted);

    r = PQprepare(victim, "rt22_mine", victim_sql, 1, NULL);
    const char *pst = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    fprintf(stderr, "rt22: victim PQprepare: status %s sqlstate %s %s",
            PQresStatus(PQresultStatus(r)), pst ? pst : "-", PQerrorMessage(victim));
    cr_expect(PQresultStatus(r) == PGRES_COMMAND_OK || (pst && *pst),
              "the victim's Parse neither succeeded nor failed with a clear error");
    PQclear(r);
    v = prepared_value(victim, "rt22_mine", "hello");
    cr_log_info("victim PQexecPrepared: %s", v);
    fprintf(stderr, "rt22: victim saw: [%s]\n", v);
    cr_expect(strncmp(v, "poisoned", 8) != 0,
              "the victim ran the attacker's pre-planted statement: %s", v);
    free(v);
    /* and once more */
    v = prepared_value(victim, "rt22_mine", "again");
    fprintf(stderr, "rt22: victim saw (2nd): [%s]\n", v);
    cr_expect(strncmp(v, "poisoned", 8) != 0,
              "the victim ran the attacker's pre-planted statement: %s", v);
    free(v);

    /* observed, not asserted: does the planted name keep the statement from every client of
     * the server (no retirement on 42P05)? */
    PQfinish(attacker);
    attacker = NULL;
    for (int i = 0; i < 2; i++) {
        PGconn *c = i ? alice() : victim;
        r = PQprepare(c, "rt22_retry", victim_sql, 1, NULL);
        pst = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        fprintf(stderr, "rt22: retry by %s after the attacker left: %s %s %s",
                i ? "a new client" : "the victim", PQresStatus(PQresultStatus(r)), pst ? pst : "-",
                PQresultStatus(r) == PGRES_COMMAND_OK ? "\n" : PQerrorMessage(c));
        PQclear(r);
        v = prepared_value(c, "rt22_retry", "late");
        fprintf(stderr, "rt22: ... then runs it: [%s]\n", v);
        cr_expect(strncmp(v, "poisoned", 8) != 0, "a later client ran the attacker's text: %s", v);
        free(v);
        if (i)
            PQfinish(c);
    }
    PQclear(PQexec(victim, "DROP FUNCTION IF EXISTS rt22_f()"));
    PQfinish(victim);
}
