/* test_redteam18.c: red-team round 18 against RELOADS of the policy while clients are
 * connected (SIGHUP and the admin console's RELOAD): whether column masking and row-level
 * security attributes follow the new policy at once, with no state decided under the old one
 * (prepared statements, portals suspended in an implicit transaction, unnamed statements
 * re-prepared on another server, WITH HOLD cursors, SQL PREPAREs, carried session settings,
 * a session-pooled server's injected attributes) letting a client read what the new policy
 * forbids; whether a file with a semantic error is refused whole; reloads racing each other.
 * Each test asserts the SAFE behaviour: a failing test is a finding.
 *
 * Findings:
 * - unnamed_statement_parsed_before_a_reload, exempt_clients_unnamed_statement_after_reload_
 *   masks_it: the unnamed statement Parsed (and Synced) before a reload that masks salary, then
 *   Bound and Executed after it, returns salary + 0 unmasked. client.c client_mask_sync forgets
 *   the named statements (client_stmts_clear) but not c->unnamed_parse, and pipeline.c
 *   ensure_unnamed re-sends that body, checked under the old rules, on the new-class server.
 * - exempt_client_with_scs_off_made_masked_by_reload, masking_added_by_reload_to_a_client_
 *   with_scs_off: a client unmasked at login may SET standard_conforming_strings = off; a
 *   reload that masks it (exemption removed, or the first rules added) neither closes it nor
 *   refuses that setting (mask_admit's params_text_readable runs at login only), lakeproxy
 *   re-applies it on each new server as one of its own settings (server.c internal replies:
 *   note_param, without the rls_text_unsafe backstop), and 'a\' AS z, ' , salary + 0 ... -- '
 *   hides an expression over a masked column from the guard: values leak unmasked.
 * - rls_session_mode_{tenant_changed,tenant_removed,attribute_dropped}_by_reload: in session
 *   pooling the attributes are injected once (server.c server_link); a reload that changes,
 *   removes or stops injecting a user's tenant_id leaves the connected session reading the old
 *   tenant's rows (worker.c refused_by_reload does not close it; nothing re-injects). (The
 *   attribute_dropped test first reloaded a file that kept the user's tenant_id, which was
 *   refused; reloads that must be taken are checked to be, reload_taken.)
 *
 * Fixed: a change of masking class forgets the unnamed statement too
 * (pipeline_forget_statements); a reload closes (57P01, "was reconfigured") a client newly
 * masked whose settings the guard cannot read, and a session-pooled client under row-level
 * security whose server does not carry the attributes and role the new configuration gives it
 * (worker.c refused_by_reload, rls_session_changed). */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "maskcheck.h"
#include "rawproto.h"

static struct proxy px;

/* lp_rt18_m is masked; lp_rt18_a is exempt from every rule but salary's, whose exemption
 * (unless: users [<salary_exempt>]) each test sets; salary is unmasked when salary_exempt is
 * NULL (no rule). */
static void mask_yaml(char *yaml, size_t yamlsz, int port, const char *salary_exempt,
                      const char *more)
{
    char extra[4096], salary[256] = "";
    if (salary_exempt)
        snprintf(salary, sizeof(salary),
                 "    - {column: public.customers.salary, function: redact, unless: {users: "
                 "[%s]}}\n",
                 salary_exempt);
    snprintf(extra, sizeof(extra),
             "  lp_rt18_m: {auth: trust}\n"
             "  lp_rt18_a: {auth: trust, groups: [rt18aud]}\n"
             "groups:\n"
             "  rt18aud: {role: auditor}\n"
             "admin:\n  users: [lp_rt18_a]\n"
             "masking:\n"
             "  databases: [app]\n"
             "  rules:\n"
             "    - {column: public.customers.email, function: email, unless: {groups: "
             "[rt18aud]}}\n"
             "    - {column: public.customers.ssn, function: last4, unless: {groups: [rt18aud]}}\n"
             "%s%s",
             salary, more ? more : "");
    proxy_default_yaml(yaml, yamlsz, port, "transaction", 2, 10000, extra);
}

/* Reloads yaml, which must be taken: an attack on a refused file tests nothing. */
static void reload_taken(const char *yaml)
{
    int refused = file_count_lines(px.log, "reload refused");
    proxy_reload_yaml(&px, yaml);
    cr_assert_eq(file_count_lines(px.log, "reload refused"), refused,
                 "the new file was refused (see %s)", px.log);
}

static void reload_mask(const char *salary_exempt, const char *more)
{
    static char yaml[16384];
    mask_yaml(yaml, sizeof(yaml), px.port, salary_exempt, more);
    reload_taken(yaml);
}

/* salary unmasked for everyone */
static void start_no_salary(void)
{
    static char yaml[16384];
    int port = free_port();
    mask_yaml(yaml, sizeof(yaml), port, NULL, NULL);
    proxy_start_yaml(&px, port, yaml);
}

/* salary masked but for lp_rt18_a */
static void start_salary_exempt_a(void)
{
    static char yaml[16384];
    int port = free_port();
    mask_yaml(yaml, sizeof(yaml), port, "lp_rt18_a", NULL);
    proxy_start_yaml(&px, port, yaml);
}

static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(redteam18, .fini = stop_proxy, .timeout = 120);

static PGconn *login(const char *user)
{
    return mask_login(&px, user);
}

/* Runs sql on c: the test fails when its answer holds a secret; returns its status. */
static ExecStatusType run_no_secret(PGconn *c, const char *sql, const char *what)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    mask_expect_no_secret(r, what);
    PQclear(r);
    return st;
}

/* Reads messages up to the zs-th ReadyForQuery (or EOF/timeout), expecting no secret. */
static int read_no_secret(int fd, int zs, const char *what)
{
    static unsigned char body[1 << 20];
    size_t len;
    int t, rows = 0;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 8000)) >= 0) {
        const char *s = mask_find_secret((const char *)body, len);
        cr_expect(!s, "[%s] message '%c' leaks \"%s\"", what, t, s ? s : "");
        rows += t == 'D';
        if (t == 'Z' && --zs == 0)
            break;
    }
    return rows;
}

/* Reads up to and including the first message of type want; false on EOF/timeout. */
static bool read_until(int fd, int want)
{
    static unsigned char body[1 << 16];
    size_t len;
    int t;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 8000)) >= 0)
        if (t == want)
            return true;
    return false;
}

/* ---- masking: a client exempt before the reload, masked after it ---- */

/* An exempt client turns standard_conforming_strings off (nothing forbids it: it is not
 * masked); a reload takes its exemption away. Masked clients must read text as the guard
 * does: otherwise a backslash-quote hides SQL from the guard. The client must be closed or
 * its settings refused, never go on masked with a quote the guard misreads. */
Test(redteam18, exempt_client_with_scs_off_made_masked_by_reload, .init = start_salary_exempt_a)
{
    PGconn *a = login("lp_rt18_a");
    PGresult *r = PQexec(a, "SET standard_conforming_strings = off");
    bool set = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!set) { /* refused already: the attack path is closed */
        PQfinish(a);
        return;
    }
    char *v = query_value(a, "SELECT salary::text FROM customers WHERE id = 1");
    cr_assert_str_eq(v, "12345", "exempt before the reload");
    free(v);
    reload_mask("nobody_rt18", NULL); /* lp_rt18_a loses its salary exemption */
    /* the server reads 'a\' AS z, ' as one string, and runs salary + 0; the guard (standard
     * strings) sees two string literals and nothing else */
    const char *trick = "SELECT 'a\\' AS z, ' , salary + 0 AS leak FROM customers -- '";
    for (int i = 0; i < 2; i++) {
        if (PQstatus(a) != CONNECTION_OK)
            break;
        run_no_secret(a, trick, "backslash-quote after the reload");
    }
    if (PQstatus(a) == CONNECTION_OK) {
        r = PQexec(a, "SELECT salary::text FROM customers WHERE id = 1");
        mask_expect_no_secret(r, "plain salary after the reload");
        PQclear(r);
    }
    PQfinish(a);
}

/* No masking at all, then a reload adds the first rules: a client logged in unmasked (it could
 * turn standard_conforming_strings off) is masked from then on, with the same trick. */
static void start_unmasked(void)
{
    static char yaml[16384];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 10000,
                       "  lp_rt18_m: {auth: trust}\n");
    proxy_start_yaml(&px, port, yaml);
}

Test(redteam18, masking_added_by_reload_to_a_client_with_scs_off, .init = start_unmasked)
{
    PGconn *m = login("lp_rt18_m");
    PGresult *r = PQexec(m, "SET standard_conforming_strings = off");
    bool set = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!set) {
        PQfinish(m);
        return;
    }
    reload_mask("nobody_rt18", NULL); /* masking starts: lp_rt18_m is masked everywhere */
    const char *trick = "SELECT 'a\\' AS z, ' , ssn || email AS leak FROM customers -- '";
    if (PQstatus(m) == CONNECTION_OK)
        run_no_secret(m, trick, "backslash-quote after masking was added");
    PQfinish(m);
}

/* The same with client_encoding: an exempt client switches to SJIS (allowed: not masked);
 * after the reload masks it, it must not be served in an encoding the guard cannot read. */
Test(redteam18, exempt_client_with_sjis_made_masked_by_reload, .init = start_salary_exempt_a)
{
    PGconn *a = login("lp_rt18_a");
    PGresult *r = PQexec(a, "SET client_encoding = 'SJIS'");
    bool set = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!set) {
        PQfinish(a);
        return;
    }
    reload_mask("nobody_rt18", NULL);
    /* 0x95 0x5c is one SJIS character whose second byte is a backslash: with standard strings
     * the server reads '<0x95 0x5c>' as one literal; the guard (UTF-8) reads a backslash.
     * Simplest observable: does the session still run statements masked under SJIS? */
    r = PQexec(a, "SELECT current_setting('client_encoding')");
    bool ran = PQresultStatus(r) == PGRES_TUPLES_OK;
    const char *enc = ran ? PQgetvalue(r, 0, 0) : "";
    cr_expect(!ran || strcmp(enc, "SJIS") != 0,
              "a client masked by the reload still runs statements with client_encoding %s", enc);
    PQclear(r);
    PQfinish(a);
}

/* What an exempt client prepared or opened (checked by no guard: it was not masked) must not
 * serve it once a reload masks it: a protocol-level statement, an SQL PREPARE and a WITH HOLD
 * cursor made outside any transaction. */
Test(redteam18, exempt_clients_prepared_state_after_reload_masks_it, .init = start_salary_exempt_a)
{
    PGconn *a = login("lp_rt18_a");
    PGresult *r = PQprepare(a, "s18", "SELECT salary + 0 AS v FROM customers ORDER BY id", 0, NULL);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
    PQclear(r);
    const char *setup[] = {"PREPARE p18 AS SELECT salary + 0 AS v FROM customers",
                           "DECLARE h18 CURSOR WITH HOLD FOR SELECT salary + 1 AS v FROM "
                           "customers"};
    for (size_t i = 0; i < 2; i++) {
        r = PQexec(a, setup[i]);
        cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", setup[i],
                     PQresultErrorMessage(r));
        PQclear(r);
    }
    reload_mask("nobody_rt18", NULL);
    r = PQexecPrepared(a, "s18", 0, NULL, NULL, NULL, 0);
    mask_expect_no_secret(r, "protocol statement prepared while exempt");
    PQclear(r);
    run_no_secret(a, "EXECUTE p18", "SQL PREPARE made while exempt");
    run_no_secret(a, "FETCH ALL FROM h18", "WITH HOLD cursor opened while exempt");
    run_no_secret(a, "SELECT salary FROM customers", "plain salary");
    PQfinish(a);
}

/* ---- masking: rules widened under a connected masked client ---- */

/* A portal suspended in an implicit transaction (Parse, Bind, Execute 1 row, Flush; no Sync
 * yet) before the reload masks salary; its rest fetched after the reload. */
Test(redteam18, portal_suspended_over_a_reload, .init = start_no_salary)
{
    int fd = raw_session(px.port, "lp_rt18_m", "app");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "", "SELECT salary + 0 AS v FROM customers ORDER BY id");
    raw_put_bind(&b, "", "");
    raw_put_execute_n(&b, "", 1);
    raw_put_empty(&b, 'H');
    cr_assert(raw_send(fd, &b));
    cr_assert(read_until(fd, 's'), "the portal was suspended after one row");
    reload_mask("nobody_rt18", NULL);
    raw_put_execute_n(&b, "", 0);
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    read_no_secret(fd, 1, "rest of a portal bound before the reload");
    buf_free(&b);
    close(fd);
}

/* The unnamed statement Parsed (and Synced) before the reload, Bound and Executed after it:
 * lakeproxy may re-Parse it on another server (the old one's class no longer fits). */
Test(redteam18, unnamed_statement_parsed_before_a_reload, .init = start_no_salary)
{
    int fd = raw_session(px.port, "lp_rt18_m", "app");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "", "SELECT salary + 0 AS v FROM customers ORDER BY id");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    cr_assert(read_until(fd, 'Z'));
    reload_mask("nobody_rt18", NULL);
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    read_no_secret(fd, 1, "unnamed statement parsed before the reload");
    /* and a named one, the same way */
    raw_put_parse(&b, "n18", "SELECT salary + 0 AS v FROM customers ORDER BY id");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    read_no_secret(fd, 1, "named parse after the reload");
    buf_free(&b);
    close(fd);
}

/* The same for a client exempt before the reload (its unnamed statement was checked by no
 * masking rule at all) and masked after it. */
Test(redteam18, exempt_clients_unnamed_statement_after_reload_masks_it,
     .init = start_salary_exempt_a)
{
    int fd = raw_session(px.port, "lp_rt18_a", "app");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "", "SELECT salary + 0 AS v FROM customers ORDER BY id");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    cr_assert(read_until(fd, 'Z'));
    reload_mask("nobody_rt18", NULL);
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    read_no_secret(fd, 1, "unnamed statement parsed while exempt");
    buf_free(&b);
    close(fd);
}

/* A WITH HOLD cursor and an SQL PREPARE made by a masked client before salary is masked,
 * outside any transaction (they stay on a transaction-pooled server), used after. */
Test(redteam18, held_cursor_and_sql_prepare_of_a_masked_client_over_a_reload,
     .init = start_no_salary)
{
    PGconn *m = login("lp_rt18_m");
    const char *setup[] = {"PREPARE p18 AS SELECT salary + 0 AS v FROM customers",
                           "DECLARE h18 CURSOR WITH HOLD FOR SELECT salary + 1 AS v FROM "
                           "customers"};
    for (size_t i = 0; i < 2; i++) {
        PGresult *r = PQexec(m, setup[i]);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) { /* refused outright: nothing held */
            PQclear(r);
            continue;
        }
        PQclear(r);
    }
    reload_mask("nobody_rt18", NULL);
    run_no_secret(m, "EXECUTE p18", "SQL PREPARE made before the reload");
    run_no_secret(m, "FETCH ALL FROM h18", "WITH HOLD cursor opened before the reload");
    PQfinish(m);
}

/* ---- a reload refused must be refused whole ---- */

/* A valid YAML file that drops the salary rule and has one bad masking function further on:
 * the running policy (salary masked) stays whole. */
Test(redteam18, a_half_wrong_file_changes_nothing, .init = start_salary_exempt_a)
{
    PGconn *m = login("lp_rt18_m");
    EXPECT_QUERY_VALUE(m, "SELECT salary FROM customers WHERE id = 1", "0", "masked before");
    static char yaml[16384];
    mask_yaml(yaml, sizeof(yaml), px.port, NULL,
              "    - {column: public.customers.name, function: nosuchfn}\n");
    proxy_reload_yaml(&px, yaml);
    cr_expect(file_count_lines(px.log, "reload refused") >= 1, "the bad file was refused");
    PGresult *r = PQexec(m, "SELECT salary FROM customers WHERE id = 1");
    mask_expect_no_secret(r, "after a refused reload (old client)");
    PQclear(r);
    PGconn *m2 = login("lp_rt18_m");
    r = PQexec(m2, "SELECT salary FROM customers WHERE id = 1");
    mask_expect_no_secret(r, "after a refused reload (new client)");
    PQclear(r);
    PQfinish(m2);
    PQfinish(m);
}

/* Two SIGHUPs back to back, the file changed between them (unmasked, then masked): however
 * they coalesce, the policy in force is the last file's. */
Test(redteam18, racing_reloads_end_on_the_last_file, .init = start_salary_exempt_a)
{
    PGconn *m = login("lp_rt18_m");
    static char open_yaml[16384], closed_yaml[16384];
    mask_yaml(open_yaml, sizeof(open_yaml), px.port, NULL, NULL);
    mask_yaml(closed_yaml, sizeof(closed_yaml), px.port, "nobody_rt18", NULL);
    for (int round = 0; round < 3; round++) {
        FILE *f = fopen(px.conf, "w");
        cr_assert_not_null(f);
        fputs(open_yaml, f);
        fclose(f);
        kill(px.pid, SIGHUP);
        f = fopen(px.conf, "w");
        fputs(closed_yaml, f);
        fclose(f);
        proxy_reload(&px); /* SIGHUP with the closed file, waits for a reload to end */
        usleep(200 * 1000);
        PGresult *r = PQexec(m, "SELECT salary FROM customers WHERE id = 1");
        mask_expect_no_secret(r, "after racing reloads (old client)");
        PQclear(r);
        PGconn *n = login("lp_rt18_m");
        r = PQexec(n, "SELECT salary FROM customers WHERE id = 1");
        mask_expect_no_secret(r, "after racing reloads (new client)");
        PQclear(r);
        PQfinish(n);
    }
    PQfinish(m);
}

/* Admin RELOAD from a console while a masked client has a statement Parsed: same rule. */
Test(redteam18, admin_reload_masks_statements_prepared_before, .init = start_no_salary)
{
    PGconn *m = login("lp_rt18_m");
    PGresult *r = PQprepare(m, "s18", "SELECT salary + 0 AS v FROM customers ORDER BY id", 0, NULL);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
    PQclear(r);
    static char yaml[16384];
    mask_yaml(yaml, sizeof(yaml), px.port, "nobody_rt18", NULL);
    FILE *f = fopen(px.conf, "w");
    cr_assert_not_null(f);
    fputs(yaml, f);
    fclose(f);
    PGconn *adm = proxy_connect(&px, "lp_rt18_a", "x", "lakeproxy", NULL);
    cr_assert(PQstatus(adm) == CONNECTION_OK, "%s", PQerrorMessage(adm));
    r = PQexec(adm, "RELOAD");
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(adm));
    PQclear(r);
    PQfinish(adm);
    r = PQexecPrepared(m, "s18", 0, NULL, NULL, NULL, 0);
    mask_expect_no_secret(r, "statement prepared before an admin RELOAD");
    PQclear(r);
    PQfinish(m);
}

/* ---- row-level security attributes over a reload ---- */

/* lp_rt18_t carries tenant_id <tenant> ("" : no attribute); attrs: rls.attributes. */
static void rls_yaml(char *yaml, size_t yamlsz, int port, const char *mode, const char *tenant,
                     const char *attrs)
{
    char extra[2048], user[128];
    if (tenant)
        snprintf(user, sizeof(user),
                 "  lp_rt18_t: {password: pw, attributes: {tenant_id: \"%s\"}}\n", tenant);
    else
        snprintf(user, sizeof(user), "  lp_rt18_t: {password: pw}\n");
    snprintf(extra, sizeof(extra),
             "%s"
             "rls:\n  prefix: app\n  databases: [app]\n  switch_role: true\n"
             "  default_role: lp_tenant\n"
             "  attributes: %s\n",
             user, attrs);
    proxy_default_yaml(yaml, yamlsz, port, mode, 1, 20000, extra);
}

#define RT18_ATTRS "{tenant_id: attribute, user: user}"
#define RT18_VIEW                                                                                  \
    "SELECT coalesce(current_setting('app.tenant_id', true), '(none)') || '|' || count(*) "        \
    "FROM rls_docs"

static void start_rls_session(void)
{
    static char yaml[16384];
    int port = free_port();
    rls_yaml(yaml, sizeof(yaml), port, "session", "3", RT18_ATTRS);
    proxy_start_yaml(&px, port, yaml);
}

static void start_rls_txn(void)
{
    static char yaml[16384];
    int port = free_port();
    rls_yaml(yaml, sizeof(yaml), port, "transaction", "3", RT18_ATTRS);
    proxy_start_yaml(&px, port, yaml);
}

/* After the reload, the connected client's next statement must run with want (or the
 * session must be closed). */
static void expect_view_after_reload(const char *mode, const char *tenant, const char *attrs,
                                     const char *want)
{
    PGconn *c = proxy_connect(&px, "lp_rt18_t", "pw", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    EXPECT_QUERY_VALUE(c, RT18_VIEW, "3|100", "before the reload");
    static char yaml[16384];
    rls_yaml(yaml, sizeof(yaml), px.port, mode, tenant, attrs);
    reload_taken(yaml);
    PGresult *r = PQexec(c, RT18_VIEW);
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        cr_expect_str_eq(PQgetvalue(r, 0, 0), want,
                         "%s mode: the session runs with the attributes of before the reload "
                         "(got %s, want %s)",
                         mode, PQgetvalue(r, 0, 0), want);
    else /* closed, and told why */
        cr_expect(strstr(PQerrorMessage(c), "was reconfigured"), "%s mode: %s", mode,
                  PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

Test(redteam18, rls_session_mode_tenant_changed_by_reload, .init = start_rls_session)
{
    expect_view_after_reload("session", "4", RT18_ATTRS, "4|100");
}

Test(redteam18, rls_session_mode_tenant_removed_by_reload, .init = start_rls_session)
{
    expect_view_after_reload("session", NULL, RT18_ATTRS, "|0");
}

Test(redteam18, rls_session_mode_attribute_dropped_by_reload, .init = start_rls_session)
{
    expect_view_after_reload("session", NULL, "{user: user}", "(none)|0");
}

Test(redteam18, rls_txn_mode_tenant_removed_by_reload, .init = start_rls_txn)
{
    expect_view_after_reload("transaction", NULL, RT18_ATTRS, "|0");
}

/* A transaction open over the reload that changes the tenant: once it ends, the next one must
 * carry the new value (the server connection remembers the old settings). */
Test(redteam18, rls_txn_open_over_reload_then_next_transaction, .init = start_rls_txn)
{
    PGconn *c = proxy_connect(&px, "lp_rt18_t", "pw", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexec(c, "BEGIN");
    PQclear(r);
    EXPECT_QUERY_VALUE(c, RT18_VIEW, "3|100", "before the reload");
    static char yaml[16384];
    rls_yaml(yaml, sizeof(yaml), px.port, "transaction", "4", RT18_ATTRS);
    reload_taken(yaml);
    r = PQexec(c, "COMMIT");
    PQclear(r);
    if (PQstatus(c) == CONNECTION_OK) {
        r = PQexec(c, RT18_VIEW);
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            cr_expect_str_eq(PQgetvalue(r, 0, 0), "4|100", "the next transaction");
        PQclear(r);
    }
    PQfinish(c);
}
