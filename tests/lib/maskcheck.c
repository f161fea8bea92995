/* maskcheck.c: column-masking test helpers: secret scanning and bypass attempts. */
#include "harness.h"

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* The bytes no masked client may ever receive (tests/lib/setup.sql's customers). */
static const char *const mask_secrets[] = {"secret", "111-22", "444-55", "777-88",
                                           "12345",  "23456",  "34567"};

const char *mask_find_secret(const char *p, size_t len)
{
    for (size_t i = 0; i < sizeof(mask_secrets) / sizeof(mask_secrets[0]); i++)
        if (memmem(p, len, mask_secrets[i], strlen(mask_secrets[i])))
            return mask_secrets[i];
    return NULL;
}

void mask_expect_no_secret(const PGresult *r, const char *sql)
{
    const char *msg = PQresultErrorMessage(r);
    cr_expect(!mask_find_secret(msg, strlen(msg)), "error of [%s] leaks: %s", sql, msg);
    for (int i = 0; i < PQntuples(r); i++)
        for (int j = 0; j < PQnfields(r); j++) {
            const char *s = mask_find_secret(PQgetvalue(r, i, j), (size_t)PQgetlength(r, i, j));
            cr_expect(!s, "[%s] row %d column %d leaks \"%s\"", sql, i, j, s ? s : "");
        }
}

static void mask_quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

PGconn *mask_login(const struct proxy *p, const char *user)
{
    PGconn *c = proxy_connect(p, user, "pw", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "login as %s failed: %s", user, PQerrorMessage(c));
    PQsetNoticeProcessor(c, mask_quiet, NULL); /* the ROLLBACK after each attempt warns */
    return c;
}

/* Reads a COPY's data, expecting no secret in it. */
static void mask_drain_copy(PGconn *c, const char *sql)
{
    char *row;
    int n;
    while ((n = PQgetCopyData(c, &row, 0)) > 0) {
        cr_expect(!mask_find_secret(row, (size_t)n), "[%s] COPY leaks", sql);
        PQfreemem(row);
    }
}

/* Runs sql as user on c (extended: through the extended protocol) and expects it refused with
 * 42501 (or the connection closed), or run when !refused; never a secret in any answer, COPY
 * data included. Returns c, or a new login when the refusal closed c. */
static PGconn *mask_attempt(const struct proxy *p, PGconn *c, const char *user, const char *sql,
                            bool refused, bool extended)
{
    PGresult *r = extended ? PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0) : PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    bool failed = st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_COPY_OUT;
    const char *mode = extended ? "extended" : "simple";
    if (st == PGRES_COPY_OUT)
        mask_drain_copy(c, sql);
    mask_expect_no_secret(r, sql);
    for (PGresult *more; (more = PQgetResult(c));) { /* multi-statement text */
        failed |= PQresultStatus(more) == PGRES_FATAL_ERROR;
        mask_expect_no_secret(more, sql);
        PQclear(more);
    }
    if (refused)
        cr_expect(failed, "[%s] (%s) should be refused", sql, mode);
    else
        cr_expect(!failed, "[%s] (%s) should run masked: %s", sql, mode, PQresultErrorMessage(r));
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (failed && PQstatus(c) == CONNECTION_OK && strcmp(state ? state : "", "42501") != 0)
        cr_expect(false, "[%s] refused with %s, not 42501: %s", sql, state,
                  PQresultErrorMessage(r));
    PQclear(r);
    PQclear(PQexec(c, "ROLLBACK"));
    if (PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        c = mask_login(p, user);
    }
    return c;
}

void mask_attempts_run(const struct proxy *p, const char *user,
                       const struct mask_attempt_case *cases, size_t n)
{
    PGconn *c = mask_login(p, user);
    for (size_t i = 0; i < n; i++)
        for (int extended = 0; extended <= 1; extended++)
            c = mask_attempt(p, c, user, cases[i].sql, cases[i].refused, extended);
    char *v = query_value(c, "SELECT 'still usable'");
    cr_expect_str_eq(v, "still usable");
    free(v);
    PQfinish(c);
}

void mask_admin_sql(const char *sql)
{
    char conninfo[256];
    snprintf(conninfo, sizeof(conninfo),
             "host=127.0.0.1 port=%s dbname=lp_test user=lp_server password=server-secret",
             env_need("LP_PGPORT"));
    PGconn *a = PQconnectdb(conninfo);
    cr_assert(PQstatus(a) == CONNECTION_OK, "admin: %s", PQerrorMessage(a));
    PGresult *r = PQexec(a, sql);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
              "admin [%s]: %s", sql, PQerrorMessage(a));
    PQclear(r);
    PQfinish(a);
}

void mask_put_bind_fmt(struct buf *b, const char *portal, const char *stmt, const int16_t *fmts,
                       uint16_t n)
{
    buf_msg_start(b, 'B');
    buf_put_str(b, portal);
    buf_put_str(b, stmt);
    buf_put_u16(b, 0);
    buf_put_u16(b, 0);
    buf_put_u16(b, n);
    for (uint16_t i = 0; i < n; i++)
        buf_put_u16(b, (uint16_t)fmts[i]);
    buf_msg_finish(b);
}

bool mask_has_binary_salary(const unsigned char *p, size_t len)
{
    static const unsigned char sal[3][4] = {
        {0, 0, 0x30, 0x39}, {0, 0, 0x5b, 0xa0}, {0, 0, 0x87, 0x07}};
    for (int k = 0; k < 3; k++)
        if (len >= 4 && memmem(p, len, sal[k], 4))
            return true;
    return false;
}
