/* test_redteam37.c: red-team round 37 against the verdict caches (textcache.c: the RLS guard's
 * guard_cache and the masking guard's masksql cache, 4,096 entries each, texts up to 8 KiB),
 * masking catalog churn (maskcat.c), auth_query at scale (authquery.c, 8 look-ups at once) and
 * the admin.http /metrics and /healthz endpoint (metrics.c).
 *
 * Attacked:
 * - a masking verdict cached for one database reused in another (the masksql cache is one per
 *   worker; its key is the client's rules, the configuration generation and the database's
 *   catalog version, not the database);
 * - a table replaced by a view over a masked column, and a masked column renamed, after a
 *   verdict on the same text was cached;
 * - thousands of distinct allowed texts through the RLS guard cache (evictions), with
 *   forbidden variants differing only in comments, case, white space, quoting or length
 *   (over the 8 KiB cache limit) interleaved;
 * - memory of both caches under many distinct 8 KiB texts;
 * - auth_query under a storm of distinct users, slow and failing look-ups;
 * - /metrics with idle, huge and malformed requests.
 *
 * Each test asserts the SAFE behaviour a user relies on: a failing test is a finding.
 *
 * Findings (6 tests, 2 fail, in each of 3 runs of the file in rel; both FOUND, FIXED since):
 * - masking_verdict_of_one_database_is_not_reused_in_another (HIGH, 3/3; fixed: maskcat.c
 *   numbers catalog reads across the worker's databases, so no two catalogs share a version,
 *   and policy.c mask_policy_id's key differs per database): a masked client
 *   reads a masked column unmasked. Two masked databases rda and rdb (different server
 *   databases); on rdb pv is a plain table, on rda a view renaming the masked ssn to code.
 *   mallory runs SELECT upper(code) FROM pv on rdb (passes, right), then the same text on rda:
 *   answered 999-88-7777, the secret, while the fresh text SELECT lower(code) FROM pv is refused
 *   (42501) on rda. Suspected: policy.c mask_policy_id keys the worker-wide masksql cache by
 *   (rules applied ^ cfg_gen) + catalog version, with no database: each database's maskcat
 *   counts its versions from 1, so two databases read once share every cached verdict.
 * - verdicts_cached_before_ddl_churn_do_not_outlive_the_catalog_read (MEDIUM, 3/3; fixed: each
 *   catalog read looks the masked columns it knew up again by table OID and attribute number,
 *   maskcat.c kept_columns_arrays, the read's $6-$8, and gives the guard their names now, 'q'
 *   rows, maskcat_view_columns): after ALTER
 *   TABLE people RENAME ssn TO s2 and a catalog read (catalog_refresh_s 1, 3 s later),
 *   SELECT upper(s2) FROM people returns the secret; the plain SELECT s2 is masked (****) by
 *   the wire. README: "A column seen masked stays masked ... whatever it ... is renamed to" and
 *   a rename "reaches masking at the next catalog read"; the guard still does not know s2 is
 *   masked after it. Suspected: the masking guard's column names come from the rules and view
 *   columns (policy.c mask_policy, maskcat_view_columns), not from the catalog's current name
 *   of a masked (table OID, attnum). Right after the DDL (before a read) the same leak, and
 *   upper(code) over a table replaced by a same-named view, are README's known limit: only
 *   noted, not asserted; after the read the view case is refused (held).
 * Held:
 * - RLS guard cache: 6,000 texts (3,000 forbidden: set_config with comments, SeT with odd
 *   case and spaces, computed names, UPDATE pg_settings, 9 kB texts past the 8 KiB cache
 *   limit, beside allowed texts holding the same call in a string) in pipelines of 100: every
 *   forbidden one refused 42501, tenant stays 3, no foreign rows.
 * - both caches under 12,000 distinct 8 kB texts of a masked client: +70 MB after 6,000
 *   (2 x 4,096 x 8 KiB, as designed), +0 MB more after 12,000; about 5 s.
 * - auth_query, 96 logins at once (right and wrong passwords, unknown users, look-ups that fail
 *   with division by zero): right ones in, others 28P01, a failed look-up 08006 "could not look
 *   up the user's password (auth_query failed)"; 64 slow look-ups (0.5 s, 8 at once) beside
 *   login_timeout_s 4: 48 x 28P01, the rest 08006 "login timed out" at 4.0 s, none in, none
 *   hung; lp_dave served promptly after, descriptors back, RSS +1.5 MB.
 * - /metrics: 60 idle connections, NUL bytes, HTTP/9.9, negative and huge Content-Length,
 *   chunked, 200 kB header, 100 kB path: 400/413/404 or 200 (a pipelined GET, and a query
 *   string with %00), never a hang; /healthz at once; 400 scrapes all 200; RSS +5.5 MB,
 *   descriptors back; PostgreSQL clients served throughout.
 * Not tested (time): many relations in the masking catalog (memory), search_path changes, a
 *   policy reload between a cached verdict and its reuse, a slow (not failing) auth_query server
 *   beyond pg_sleep.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "maskcheck.h"
#include "procinfo.h"
#include "proto.h"
#include "rawproto.h"

static struct proxy px;

#define NOTE(...) TEST_NOTE("rt37", __VA_ARGS__)

static char yaml[1 << 16];

static void stop_all(void)
{
    if (px.pid)
        proxy_stop(&px);
}

TestSuite(redteam37, .fini = stop_all, .timeout = 150);

static long rss_kb(void)
{
    return proxy_status_kb(&px, "VmRSS");
}

#define SECRET "999-88-7777"

/* The masked table people(ssn) and, by name pv, either a view renaming ssn to code or a plain
 * table with a harmless code. */
static void people_db(const char *db, bool view)
{
    pg_fresh_database(db);
    pg_admin_exec(db, "SET ROLE lp_server; CREATE TABLE people (id int, ssn text);"
                      "INSERT INTO people VALUES (1, '" SECRET "')");
    if (view)
        pg_admin_exec(db,
                      "SET ROLE lp_server; CREATE VIEW pv AS SELECT id, ssn AS code FROM people");
    else
        pg_admin_exec(db, "SET ROLE lp_server; CREATE TABLE pv (id int, code text);"
                          "INSERT INTO pv VALUES (1, 'harmless')");
}

/* The answer to sql as user on db: "ERR <sqlstate>" or the first value; fails the test if any
 * value or error holds SECRET. */
static bool check_secret = true;
static char *answer(PGconn *c, const char *sql)
{
    static char out[512];
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        for (int i = 0; i < PQntuples(r); i++)
            for (int j = 0; j < PQnfields(r); j++)
                cr_expect(!check_secret || strstr(PQgetvalue(r, i, j), SECRET) == NULL,
                          "[%s] returned the masked value %s", sql, PQgetvalue(r, i, j));
        snprintf(out, sizeof(out), "%s", PQntuples(r) ? PQgetvalue(r, 0, 0) : "(no row)");
    } else {
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        snprintf(out, sizeof(out), "ERR %s %.200s", st ? st : "?", PQresultErrorMessage(r));
        cr_expect(strstr(PQresultErrorMessage(r), SECRET) == NULL, "error quotes the secret");
    }
    PQclear(r);
    return out;
}

static PGconn *mlogin(const char *db)
{
    PGconn *c = proxy_connect(&px, "mallory", "pw", db, NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "mallory on %s: %s", db, PQerrorMessage(c));
    return c;
}

static void start_two_masked_dbs(const char *a, const char *b, const char *more)
{
    int port = free_port();
    char extra[2048];
    snprintf(extra, sizeof(extra),
             "  mallory: {password: pw}\n"
             "masking:\n  databases: [rda, rdb]\n%s"
             "  rules:\n    - {column: public.people.ssn, function: redact}\n",
             more ? more : "");
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 8000, extra);
    yaml_add_txn_database(yaml, sizeof(yaml), "rda", a);
    yaml_add_txn_database(yaml, sizeof(yaml), "rdb", b);
    proxy_start_yaml(&px, port, yaml);
}

/* Database rdb's pv is a plain table; rda's is a view over the masked ssn. The same text run
 * first on rdb (passes: upper of a plain column) must still be refused on rda. */
Test(redteam37, masking_verdict_of_one_database_is_not_reused_in_another)
{
    people_db("rt37_xa", true);
    people_db("rt37_xb", false);
    start_two_masked_dbs("rt37_xa", "rt37_xb", NULL);

    PGconn *b = mlogin("rdb");
    const char *sql = "SELECT upper(code) FROM pv";
    cr_expect_str_eq(answer(b, sql), "HARMLESS", "on rdb pv is a plain table");
    PQfinish(b);

    PGconn *a = mlogin("rda");
    /* control: a text never seen is refused on rda */
    char *ctl = answer(a, "SELECT lower(code) FROM pv");
    cr_expect(strncmp(ctl, "ERR 42501", 9) == 0, "control: rda refuses lower(code): %s", ctl);
    char *got = answer(a, sql);
    NOTE("cross-database: rda answered [%s] with %s", sql, got);
    cr_expect(strncmp(got, "ERR 42501", 9) == 0,
              "rda must refuse [%s] (pv is a view over the masked ssn) whatever rdb's verdict on "
              "the same text was: %s",
              sql, got);
    /* the extended protocol too */
    PGresult *r = PQexecParams(a, "SELECT upper(code) FROM pv WHERE id = $1", 1, NULL,
                               (const char *[]){"1"}, NULL, NULL, 0);
    PQclear(r);
    PQfinish(a);
    expect_alice_served(&px, "the cross-database attempt");
}

/* A verdict cached on a text, then the catalog changes under the same names: pv, a plain
 * table, becomes a view over ssn; ssn is renamed. After a catalog read (catalog_refresh_s 1)
 * the same texts must not read the secret. */
Test(redteam37, verdicts_cached_before_ddl_churn_do_not_outlive_the_catalog_read)
{
    people_db("rt37_ca", false);
    people_db("rt37_cb", false);
    start_two_masked_dbs("rt37_ca", "rt37_cb", "  catalog_refresh_s: 1\n");
    PGconn *a = mlogin("rda");
    const char *texts[] = {"SELECT upper(code) FROM pv", "SELECT code FROM pv",
                           "SELECT upper(s2) FROM people", "SELECT s2 FROM people",
                           "SELECT ssn FROM people"};
    for (size_t i = 0; i < 5; i++)
        NOTE("before churn: [%s] -> %s", texts[i], answer(a, texts[i]));
    PQfinish(a);

    pg_admin_exec("rt37_ca", "SET ROLE lp_server; DROP TABLE pv;"
                             "CREATE VIEW pv AS SELECT id, ssn AS code FROM people");
    a = mlogin("rda");
    check_secret = false; /* before the next catalog read: README's limit (a name already known) */
    for (size_t i = 0; i < 2; i++)
        NOTE("right after the view replaced the table: [%s] -> %s", texts[i], answer(a, texts[i]));
    check_secret = true;
    sleep(3);
    for (size_t i = 0; i < 2; i++) {
        char *got = answer(a, texts[i]);
        NOTE("after a catalog read: [%s] -> %s", texts[i], got); /* answer checks the values */
    }
    PQfinish(a);

    pg_admin_exec("rt37_ca",
                  "SET ROLE lp_server; DROP VIEW pv; ALTER TABLE people RENAME ssn TO s2");
    a = mlogin("rda");
    check_secret = false; /* before the next catalog read: README's limit (a column renamed) */
    NOTE("right after the rename: [%s] -> %s", texts[2], answer(a, texts[2]));
    check_secret = true;
    sleep(3);
    for (size_t i = 2; i < 4; i++)
        NOTE("after a catalog read: [%s] -> %s", texts[i], answer(a, texts[i]));
    PQfinish(a);
    expect_alice_served(&px, "the catalog churn");
}

/* ---- the RLS guard cache ---- */

static void start_rls(void)
{
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 1, 20000,
                       "  tina: {auth: trust, attributes: {tenant_id: \"3\"}}\n"
                       "rls:\n  prefix: app\n  databases: [app]\n  switch_role: true\n"
                       "  default_role: lp_tenant\n"
                       "  attributes: {tenant_id: attribute}\n");
    proxy_start_yaml(&px, port, yaml);
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* 6,000 distinct allowed texts (each holding a guard word, so parsed and cached), with
 * forbidden variants between them that differ from allowed ones only in comments, case,
 * white space, quoting or length; each forbidden one must be refused, and the tenant stays. */
Test(redteam37, guard_cache_churn_never_lets_a_forbidden_variant_through)
{
    start_rls();
    int fd = raw_session(px.port, "tina", "app");
    cr_assert(fd >= 0);
    enum { BATCH = 100, ROUNDS = 60 };
    static char texts[BATCH][10000];
    const char *sqls[BATCH];
    static char states[1 << 16], rows[1 << 20];
    char pad[9001];
    memset(pad, ' ', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    int refused_total = 0, forbidden_total = 0;
    for (int r = 0; r < ROUNDS; r++) {
        int forbidden = 0;
        for (int i = 0; i < BATCH; i++) {
            int k = r * BATCH + i;
            char *t = texts[i];
            switch (i % 10) {
            case 0:
                snprintf(t, 10000, "SELECT set_config('app.tenant_id', '7', false) /* %d */", k);
                forbidden++;
                break;
            case 1:
                snprintf(t, 10000, "SeT   app.tenant_id TO %d", k);
                forbidden++;
                break;
            case 2:
                snprintf(t, 10000,
                         "select pg_catalog.set_config('app.' || 'tenant_id', '%d', "
                         "false)",
                         k);
                forbidden++;
                break;
            case 3: /* too long to cache */
                snprintf(t, 10000, "SELECT set_config('app.tenant_id','7',false) /*%s*/ --%d", pad,
                         k);
                forbidden++;
                break;
            case 4: /* the same, as a string: allowed */
                snprintf(t, 10000, "SELECT 'set_config(''app.tenant_id'', ''7'', false) %d'", k);
                break;
            case 5: snprintf(t, 10000, "SELECT 'create %d' /*%s*/", k, pad); break;
            case 6:
                snprintf(t, 10000,
                         "UPDATE pg_settings SET setting = '7' WHERE name = "
                         "'app.tenant_id' /* %d */",
                         k);
                forbidden++;
                break;
            default: snprintf(t, 10000, "SELECT 'create %d %d'", k, i);
            }
            sqls[i] = t;
        }
        cr_assert(raw_send_queries(fd, sqls, BATCH));
        cr_assert(raw_replies(fd, BATCH, states, sizeof(states), rows, sizeof(rows), 20000),
                  "round %d: replies", r);
        int refused = count_of(states, "42501");
        cr_expect_eq(refused, forbidden, "round %d: %d of %d forbidden texts refused (%.200s)", r,
                     refused, forbidden, states);
        refused_total += refused;
        forbidden_total += forbidden;
        /* each round, the tenant stays 3 */
        const char *check[] = {"SELECT current_setting('app.tenant_id')",
                               "SELECT count(*) FROM rls_docs WHERE tenant_id <> 3"};
        cr_assert(raw_send_queries(fd, check, 2));
        cr_assert(raw_replies(fd, 2, states, sizeof(states), rows, sizeof(rows), 10000));
        cr_expect(strncmp(rows, "3|0", 3) == 0 && (rows[3] == '\0' || rows[3] == '|'),
                  "round %d: tenant and foreign rows: %s", r, rows);
        if (strncmp(rows, "3|0", 3) != 0)
            break;
    }
    NOTE("guard churn: %d of %d forbidden texts refused among %d", refused_total, forbidden_total,
         BATCH * ROUNDS);
    close(fd);
    expect_alice_served(&px, "the guard cache churn");
}

/* ---- memory of both caches ---- */

/* A masked trust client (carol, under masking of app) sends distinct texts of nearly 8 KiB that
 * the guard parses (they hold "create") and both caches keep: after 6,000 of them the caches
 * are full, and 6,000 more must not grow RSS much further. */
Test(redteam37, verdict_caches_stay_bounded_under_many_long_distinct_texts)
{
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 1, 8000,
                       "masking:\n  databases: [app]\n  max_tests_per_second: 1000000\n"
                       "  rules:\n    - {column: public.customers.ssn, function: last4}\n");
    proxy_start_yaml(&px, port, yaml);
    int fd = raw_session(px.port, "carol", "app");
    cr_assert(fd >= 0);
    long base = rss_kb(), mid = 0;
    enum { BATCH = 50, N = 12000 };
    static char texts[BATCH][8200];
    const char *sqls[BATCH];
    static char states[1 << 16], rows[1 << 16];
    char pad[7900];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    double t0 = now_s();
    for (int k = 0; k < N; k += BATCH) {
        for (int i = 0; i < BATCH; i++) {
            snprintf(texts[i], sizeof(texts[i]),
                     "SELECT count(*) FROM customers WHERE name <> 'create %d %s'", k + i, pad);
            sqls[i] = texts[i];
        }
        cr_assert(raw_send_queries(fd, sqls, BATCH));
        cr_assert(raw_replies(fd, BATCH, states, sizeof(states), rows, sizeof(rows), 30000),
                  "at %d: replies", k);
        cr_assert_eq(states[0], '\0', "at %d: errors %.200s", k, states);
        if (k + BATCH == N / 2)
            mid = rss_kb();
        cr_assert_lt(now_s() - t0, 90.0, "too slow: %d texts in 90 s", k);
    }
    long end = rss_kb();
    NOTE("caches: RSS base %ld kB, +%ld kB after %d texts, +%ld kB after %d (%.1f s)", base,
         mid - base, N / 2, end - base, N, now_s() - t0);
    if (rss_follows_heap()) {
        cr_expect_lt(end - mid, 24 * 1024, "RSS grew %ld kB more from %d to %d texts", end - mid,
                     N / 2, N);
        cr_expect_lt(end - base, 160 * 1024, "RSS grew %ld kB (two caches of 4,096 x 8 KiB)",
                     end - base);
    }
    close(fd);
    expect_alice_served(&px, "12,000 long texts");
}

/* ---- auth_query at scale ---- */

struct login_try {
    char user[64], password[32];
    bool ok;
    char state[6], msg[256];
    double took;
};

static void *login_thread(void *arg)
{
    struct login_try *t = arg;
    double t0 = now_s();
    t->ok = raw_login(px.port, t->user, t->password, "app", t->state, t->msg, sizeof(t->msg));
    t->took = now_s() - t0;
    return NULL;
}

static void run_logins(struct login_try *tries, int n)
{
    pthread_t th[256];
    cr_assert_leq(n, 256);
    for (int i = 0; i < n; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, login_thread, &tries[i]), 0);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

/* The storm's configuration: users looked up through a query that sleeps for names starting
 * "slow" and fails (division by zero) for names starting "boom"; logins time out after
 * login_timeout_s. */
static void storm_yaml(int port, int login_timeout_s)
{
    char extra[1024];
    snprintf(extra, sizeof(extra),
             "auth_query:\n  database: app\n"
             "  query: \"SELECT usename, passwd FROM public.lp_lookup($1), pg_catalog.pg_sleep("
             "CASE WHEN $1 LIKE 'slow%%' THEN 0.5 ELSE 0 END) WHERE 1 / (CASE WHEN $1 LIKE "
             "'boom%%' THEN 0 ELSE 1 END) = 1\"\n"
             "limits:\n  login_timeout_s: %d\n  max_clients: 400\n",
             login_timeout_s);
    proxy_default_yaml(yaml, sizeof(yaml), port, "session", 4, 3000, extra);
}

/* Phase A's 96 logins at once are judged by their answers, with time to give them all (under
 * the sanitizers the last took over 4 s); phase B then meets a 4 s login timeout. */
Test(redteam37, auth_query_storm_of_distinct_users_never_logs_in_wrongly_and_answers_clearly)
{
    raise_fd_limit(4096);
    int port = free_port();
    storm_yaml(port, 30);
    proxy_start_yaml(&px, port, yaml);
    long base = rss_kb();
    int fds0 = proxy_fd_count(&px);

    /* phase A: 96 at once, every look-up quick or failing */
    static struct login_try a[96];
    for (int i = 0; i < 96; i++) {
        struct login_try *t = &a[i];
        memset(t, 0, sizeof(*t));
        if (i % 6 == 0)
            snprintf(t->user, sizeof(t->user), "lp_dave"), snprintf(t->password, 32, "dave-secret");
        else if (i % 6 == 1)
            snprintf(t->user, sizeof(t->user), "lp_dave"), snprintf(t->password, 32, "wrong%d", i);
        else if (i % 6 == 2)
            snprintf(t->user, sizeof(t->user), "boom_%d", i), snprintf(t->password, 32, "x");
        else
            snprintf(t->user, sizeof(t->user), "nobody_rt37_%d", i), snprintf(t->password, 32, "x");
    }
    run_logins(a, 96);
    for (int i = 0; i < 96; i++) {
        struct login_try *t = &a[i];
        if (i % 6 == 0) {
            cr_expect(t->ok, "A: lp_dave with the right password: %s %s (%.1f s)", t->state, t->msg,
                      t->took);
        } else {
            cr_expect_not(t->ok, "A: %s with a wrong password logged in", t->user);
            cr_expect(t->state[0] != '\0', "A: %s got no SQLSTATE (%.1f s): %s", t->user, t->took,
                      t->msg);
            if (i % 6 != 2)
                cr_expect_str_eq(t->state, "28P01", "A: %s: %s", t->user, t->msg);
        }
    }
    NOTE("auth_query: a failing look-up answers %s \"%s\"", a[2].state, a[2].msg);
    double slowest_a = 0;
    for (int i = 0; i < 96; i++)
        slowest_a = a[i].took > slowest_a ? a[i].took : slowest_a;
    NOTE("auth_query: 96 logins at once, the slowest answered in %.1f s", slowest_a);
    storm_yaml(port, 4);
    proxy_reload_yaml(&px, yaml);

    /* phase B: 64 slow look-ups (0.5 s each, 8 at once: 4 s of work) beside a 4 s login
     * timeout: the late ones must end with a clear error, none may hang or log in */
    static struct login_try b[64];
    for (int i = 0; i < 64; i++) {
        memset(&b[i], 0, sizeof(b[i]));
        snprintf(b[i].user, sizeof(b[i].user), "slow_%d", i);
        snprintf(b[i].password, 32, "x");
    }
    double t0 = now_s();
    run_logins(b, 64);
    int n28 = 0, other = 0;
    double worst = 0;
    for (int i = 0; i < 64; i++) {
        cr_expect_not(b[i].ok, "B: %s logged in", b[i].user);
        cr_expect(b[i].state[0] != '\0', "B: %s: no SQLSTATE after %.1f s (%s)", b[i].user,
                  b[i].took, b[i].msg);
        n28 += strcmp(b[i].state, "28P01") == 0;
        if (strcmp(b[i].state, "28P01") != 0 && other++ == 0)
            NOTE("auth_query: a slow look-up past the login timeout: %s \"%s\" after %.1f s",
                 b[i].state, b[i].msg, b[i].took);
        if (b[i].took > worst)
            worst = b[i].took;
    }
    NOTE("auth_query: 64 slow look-ups: %d x 28P01, %d other, slowest %.1f s, all in %.1f s", n28,
         other, worst, now_s() - t0);
    cr_expect_lt(worst, 8.0, "a login took %.1f s with login_timeout_s 4", worst);

    char state[6], msg[256];
    double t1 = now_s();
    cr_expect(raw_login(px.port, "lp_dave", "dave-secret", "app", state, msg, sizeof(msg)),
              "after the storm: %s %s", state, msg);
    cr_expect_lt(now_s() - t1, 3.0, "and promptly");
    sleep(1);
    NOTE("auth_query: RSS +%ld kB, descriptors %d -> %d", rss_kb() - base, fds0,
         proxy_fd_count(&px));
    cr_expect_lt(proxy_fd_count(&px), fds0 + 16, "descriptors back near the baseline");
    expect_alice_served(&px, "the auth_query storm");
}

/* ---- /metrics ---- */

static int nb_connect(int port)
{
    int fd = raw_connect(port);
    if (fd >= 0)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* What the endpoint said on fd within timeout_s: the status code, 0 for a close without an
 * answer, -1 for nothing at all (a hang). */
static int http_outcome(int fd, double timeout_s)
{
    char buf[256];
    double end = now_s() + timeout_s;
    while (now_s() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        if (n == 0 || (n < 0 && errno != EAGAIN))
            return 0;
        if (n > 0) {
            buf[n] = '\0';
            int code = 0;
            return sscanf(buf, "HTTP/1.%*d %d", &code) == 1 ? code : 0;
        }
    }
    return -1;
}

Test(redteam37, metrics_endpoint_survives_idle_huge_and_malformed_requests)
{
    raise_fd_limit(4096);
    int port = free_port();
    int hport = free_port();
    char extra[256];
    snprintf(extra, sizeof(extra), "admin:\n  http: 127.0.0.1:%d\n", hport);
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 5000, extra);
    proxy_start_yaml(&px, port, yaml);
    cr_assert_eq(http_status(hport, "/healthz"), 200);
    long base = rss_kb();
    int fds0 = proxy_fd_count(&px);

    /* 60 idle connections */
    int idle[60];
    for (int i = 0; i < 60; i++)
        idle[i] = nb_connect(hport);
    /* malformed and huge requests */
    static char big[200 * 1024];
    const char *bad[] = {
        "\x00\x01\x02garbage\r\n\r\n",
        "GET /metrics HTTP/9.9\r\nContent-Length: -5\r\n\r\n",
        "POST /metrics HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\n\r\nGET /healthz "
        "HTTP/1.1\r\n\r\n",
        "GET /../../etc/passwd HTTP/1.1\r\n\r\n",
        "GET /metrics?%00%ff HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
        NULL, /* huge header */
        NULL, /* huge path */
    };
    enum { NBAD = sizeof(bad) / sizeof(bad[0]) };
    int bfd[NBAD];
    for (int i = 0; i < NBAD; i++) {
        bfd[i] = nb_connect(hport);
        cr_assert(bfd[i] >= 0);
        size_t len;
        const char *req = bad[i];
        if (i == NBAD - 2) {
            len = (size_t)snprintf(big, sizeof(big), "GET /metrics HTTP/1.1\r\nX-A: ");
            memset(big + len, 'a', sizeof(big) - len - 8);
            len = sizeof(big) - 8;
            memcpy(big + len, "\r\n\r\n", 4);
            len += 4;
            req = big;
        } else if (i == NBAD - 1) {
            len = (size_t)snprintf(big, sizeof(big), "GET /");
            memset(big + len, 'p', 100000);
            len += 100000;
            len += (size_t)snprintf(big + len, 64, " HTTP/1.1\r\n\r\n");
            req = big;
        } else {
            len = i == 0 ? 14 : strlen(req);
        }
        ssize_t w = send(bfd[i], req, len, MSG_NOSIGNAL);
        (void)w; /* (a huge one may be cut short: the endpoint reads at most 16 KiB ahead) */
    }
    /* PostgreSQL clients are served meanwhile */
    expect_alice_served(&px, "60 idle and 9 bad HTTP connections");
    /* every bad request ends, with an answer or a close, within the slow-request limit */
    for (int i = 0; i < NBAD; i++) {
        int o = http_outcome(bfd[i], 14.0);
        NOTE("metrics: bad request %d -> %d", i, o);
        cr_expect_neq(o, -1, "bad request %d: no answer and no close in 14 s", i);
        cr_expect(o != 200 || i == 4 || i == 6, "bad request %d answered 200", i);
        close(bfd[i]);
    }
    /* /healthz answers again while the idle connections are still held (5 s idle timeout) */
    double t0 = now_s();
    int st = -1;
    while (now_s() - t0 < 15 && (st = http_status(hport, "/healthz")) != 200)
        usleep(300000);
    NOTE("metrics: /healthz 200 again after %.1f s", now_s() - t0);
    cr_expect_eq(st, 200, "/healthz never answered again within 15 s (held: 60 idle)");
    cr_expect_eq(kill(px.pid, 0), 0, "lakeproxy is alive");
    for (int i = 0; i < 60; i++)
        if (idle[i] >= 0)
            close(idle[i]);
    /* 400 quick scrapes */
    int ok = 0;
    for (int i = 0; i < 400; i++)
        ok += http_status(hport, i % 2 ? "/metrics" : "/healthz") == 200;
    cr_expect_eq(ok, 400, "only %d of 400 scrapes answered 200", ok);
    sleep(1);
    NOTE("metrics: RSS +%ld kB, descriptors %d -> %d", rss_kb() - base, fds0, proxy_fd_count(&px));
    if (rss_follows_heap())
        cr_expect_lt(rss_kb() - base, 32 * 1024, "RSS grew by %ld kB", rss_kb() - base);
    cr_expect_lt(proxy_fd_count(&px), fds0 + 8, "descriptors back near the baseline");
    expect_alice_served(&px, "the HTTP abuse");
}
