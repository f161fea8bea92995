/* test_databricks.c: the native `databricks` credential provider against a local mock of the
 * workspace (tests/lib/mock_workspace.py: HTTPS on loopback with a certificate made at test
 * time). OAuth machine-to-machine, then a Lakebase database credential (provisioned and
 * autoscaling); each minted token becomes the role's only password until it expires, so only
 * the current token logs in. Many rotations under load without a client error; bad answers
 * and wrong secrets are clear errors; an outage heals by itself. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "mockws.h"

static struct proxy px;
static struct mock_ws mock;
static char role[16];

static void stop_all(void)
{
    mockws_stop(&mock); /* first: proxy_stop ends the test when the proxy failed */
    proxy_stop(&px);
}

TestSuite(databricks, .fini = stop_all, .timeout = 150);

/* lakeproxy with database "lake" using the databricks provider; target is "instance: x" or
 * "endpoint: ..."; extra goes into the credentials mapping. */
static void proxy_start_lake(const char *target, int lifetime_s, const char *extra)
{
    static char yaml[4096];
    int port = free_port();
    setenv("LP_TEST_CLIENT_SECRET", "lp-secret", 1);
    snprintf(yaml, sizeof(yaml),
             "listen: {host: 127.0.0.1, port: %d}\n"
             "log: {level: info}\n"
             "admin: {users: [carol]}\n"
             "databases:\n"
             "  lake:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n    user: %s\n"
             "    tls: disable\n"
             "    pool: {mode: transaction, size: 4, max_wait_ms: 8000, lifetime_s: %d}\n"
             "    credentials:\n      provider: databricks\n"
             "      workspace: https://127.0.0.1:%d\n"
             "      client_id: lp-client\n      client_secret_env: LP_TEST_CLIENT_SECRET\n"
             "      ca_file: %s/ca.crt\n      timeout_ms: 2000\n      %s\n%s"
             "users:\n  carol: {auth: trust}\n",
             port, env_need("LP_PGPORT"), role, lifetime_s, mock.port, env_need("LP_CERTS"), target,
             extra ? extra : "");
    proxy_start_yaml(&px, port, yaml);
}

Test(databricks, provisioned_instance_ten_rotations_under_load_without_a_client_error)
{
    snprintf(role, sizeof(role), "lp_rot7");
    mockws_start(&mock, role, "4"); /* refreshed at half-life: every 2 s */
    proxy_start_lake("instance: lp-instance", 2, "      refresh_percent: 50\n");
    struct load_result l;
    load_run(&px, "carol", "lake", 8, 24, &l);
    int minted = mockws_calls(&mock, "database_credentials");
    fprintf(stderr,
            "databricks rotation under load: %d queries, %d client errors, %d tokens, "
            "%d OAuth exchanges, %d server logins, %d refused-token retries\n",
            l.queries, l.errors, minted, mockws_calls(&mock, "oidc"),
            file_count_lines(px.log, "logged in as lp_rot7"),
            file_count_lines(px.log, "refused token"));
    cr_expect_eq(l.errors, 0, "clients saw %d errors, first: %s", l.errors, l.first_error);
    cr_expect_geq(minted, 10, "only %d rotations", minted);
    cr_expect_eq(mockws_calls(&mock, "oidc"), 1, "the workspace OAuth token is reused while valid");
    cr_expect_geq(file_count_lines(px.log, "closing: lifetime reached"), 5);
    cr_expect_gt(l.queries, 1000);
}

/* For `seconds`, logs in through p as carol to "lake" and runs one query, one login after
 * another (at most max), storing each login-to-answer time in ms; *n gets how many, and the
 * number of failures is returned. */
static int timed_logins(double seconds, int max, double *ms, int *n)
{
    int errors = 0, i = 0;
    for (double end = now_s() + seconds; i < max && now_s() < end; i++) {
        double t0 = now_s();
        PGconn *c = proxy_connect(&px, "carol", "any", "lake", NULL);
        PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, "SELECT 1") : NULL;
        if (PQresultStatus(r) != PGRES_TUPLES_OK && errors++ == 0)
            fprintf(stderr, "first failed login: %s", PQerrorMessage(c));
        PQclear(r);
        PQfinish(c);
        ms[i] = (now_s() - t0) * 1000;
    }
    *n = i;
    return errors;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of n sorted values. */
static double quantile(const double *v, int n, double q)
{
    return v[(int)(q * (n - 1))];
}

/* The issue asks for the extra latency of a login while a token refresh is in flight: logins
 * never wait for a background refresh (the still-valid token serves), so the figure printed
 * here should show none. Servers live 1 s, so most logins include a server login. */
Test(databricks, logins_during_a_slow_refresh_use_the_valid_token_and_wait_for_nothing)
{
    enum { MAX = 50000 };
    static double steady[MAX], during[MAX];
    int n1, n2;
    snprintf(role, sizeof(role), "lp_rot10");
    mockws_start(&mock, role, "4");
    proxy_start_lake("instance: lp-instance", 1, "      refresh_percent: 50\n");
    int e1 = timed_logins(7, MAX, steady, &n1);
    int before = mockws_calls(&mock, "database_credentials");
    mockws_mode(&mock, "slow:1.5"); /* each refresh now takes 1.5 s of every ~3.5 s */
    /* 11 s: three refresh cycles, so that two fall inside it however the first is placed
     * (7 s, two cycles exactly, saw only one once under ASan on a loaded machine) */
    int e2 = timed_logins(11, MAX, during, &n2);
    int refreshed = mockws_calls(&mock, "database_credentials") - before;
    qsort(steady, (size_t)n1, sizeof(double), cmp_double);
    qsort(during, (size_t)n2, sizeof(double), cmp_double);
    fprintf(stderr,
            "login + first query, ms: refreshes instant (%d logins) p50 %.2f p99 %.2f; refreshes "
            "taking 1.5 s (%d logins, %d refreshes) p50 %.2f p99 %.2f; server logins %d\n",
            n1, quantile(steady, n1, 0.5), quantile(steady, n1, 0.99), n2, refreshed,
            quantile(during, n2, 0.5), quantile(during, n2, 0.99),
            file_count_lines(px.log, "logged in as lp_rot10"));
    cr_expect_eq(e1 + e2, 0, "logins failed: %d before, %d during slow refreshes", e1, e2);
    cr_expect_geq(refreshed, 2, "the second run overlapped fewer than two refreshes");
    cr_expect_gt(n1, 100);
    cr_expect_gt(n2, 100);
    /* The mock swaps the role's one password before it answers, so a server login that starts
     * in between is refused by PostgreSQL (Lakebase keeps the old token valid until it
     * expires); lakeproxy retries it with the new token and the client sees nothing (e1 + e2
     * above). More than one refusal per swap would mean expired tokens in use. */
    int refused = file_count_lines(px.log, "refused token");
    int swaps = mockws_calls(&mock, "database_credentials");
    cr_expect_leq(refused, swaps, "%d server logins refused over %d token swaps", refused, swaps);
}

Test(databricks, autoscaling_endpoint_mints_with_a_ttl)
{
    snprintf(role, sizeof(role), "lp_rot8");
    mockws_start(&mock, role, "600");
    proxy_start_lake("endpoint: projects/p1/branches/main/endpoints/ep1", 0, "      ttl_s: 900\n");
    PGconn *c = proxy_connect(&px, "carol", "unused", "lake", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    char *v = query_value(c, "SELECT current_user");
    cr_expect_str_eq(v, "lp_rot8");
    free(v);
    cr_expect_eq(mockws_calls(&mock, "postgres_credentials"), 1);
    cr_expect_eq(mockws_calls(&mock, "database_credentials"), 0);
    PQfinish(c);
}

Test(databricks, workspace_failures_are_clear_and_the_valid_token_serves_on)
{
    static const struct {
        const char *mode, *error;
    } cases[] = {
        {"500", "answered HTTP 500: mock failure"},
        {"401", "answered HTTP 401"},
        {"badjson", "malformed JSON"},
        {"missing", "no \"token\""},
        {"huge", "answer too large"},
        {"timeout", "no answer within 2000 ms"},
    };
    char last[400];
    snprintf(role, sizeof(role), "lp_rot9");
    mockws_start(&mock, role, "60");
    /* refresh every 6 s (10% of the lifetime) so failures show quickly */
    proxy_start_lake("instance: lp-instance", 0, "      refresh_percent: 10\n");
    PGconn *c = proxy_connect(&px, "carol", "unused", "lake", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mockws_mode(&mock, cases[i].mode);
        cr_expect(wait_credential(&px, "carol", 10000, cases[i].error, last, sizeof(last)),
                  "%s: last_error \"%s\"", cases[i].mode, last);
        char *v = query_value(c, "SELECT count(*) FROM items");
        cr_expect_str_eq(v, "1000");
        free(v);
        mockws_mode(&mock, "ok");
        cr_expect(wait_credential(&px, "carol", 10000, "", last, sizeof(last)),
                  "%s: no recovery: %s", cases[i].mode, last);
    }
    PQfinish(c);
}

Test(databricks, wrong_secret_or_untrusted_certificate_is_a_clear_login_error)
{
    char last[400];
    snprintf(role, sizeof(role), "lp_rot8");
    mockws_start(&mock, role, "600");
    /* a proxy whose secret is wrong from the start: clients get 08006 naming the endpoint */
    setenv("LP_TEST_CLIENT_SECRET", "wrong", 1);
    int port = free_port();
    char y[4096];
    snprintf(y, sizeof(y),
             "listen: {host: 127.0.0.1, port: %d}\n"
             "admin: {users: [carol]}\n"
             "databases:\n"
             "  lake:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n    user: %s\n"
             "    tls: disable\n    pool: {mode: transaction}\n"
             "    credentials:\n      provider: databricks\n"
             "      workspace: https://127.0.0.1:%d\n"
             "      client_id: lp-client\n      client_secret_env: LP_TEST_CLIENT_SECRET\n"
             "      ca_file: %s/ca.crt\n      instance: i\n"
             "  untrusted:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n    user: %s\n"
             "    tls: disable\n    pool: {mode: transaction}\n"
             "    credentials:\n      provider: databricks\n"
             "      workspace: https://127.0.0.1:%d\n"
             "      client_id: lp-client\n      client_secret_env: LP_TEST_CLIENT_SECRET\n"
             "      ca_file: /etc/ssl/certs/ca-certificates.crt\n      instance: i\n"
             "users:\n  carol: {auth: trust}\n",
             port, env_need("LP_PGPORT"), role, mock.port, env_need("LP_CERTS"),
             env_need("LP_PGPORT"), role, mock.port);
    proxy_start_yaml(&px, port, y);
    PGconn *c = proxy_connect(&px, "carol", "unused", "lake", NULL);
    cr_expect(PQstatus(c) != CONNECTION_OK);
    cr_expect(strstr(PQerrorMessage(c), "/oidc/v1/token answered HTTP 401"), "%s",
              PQerrorMessage(c));
    PQfinish(c);
    c = proxy_connect(&px, "carol", "unused", "untrusted", NULL);
    cr_expect(PQstatus(c) != CONNECTION_OK);
    cr_expect(strstr(PQerrorMessage(c), "certificate verif"), "%s", PQerrorMessage(c));
    PQfinish(c);
    cr_expect(wait_credential(&px, "carol", 10000, "401", last, sizeof(last)), "%s", last);
    cr_expect_eq(file_count_lines(px.log, "lp-secret"), 0);
    cr_expect_eq(file_count_lines(px.log, "wrong"), 0, "the secret is never logged");
}
