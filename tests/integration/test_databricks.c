/* test_databricks.c: the native `databricks` credential provider against a local mock of the
 * workspace (tests/lib/mock_workspace.py: HTTPS on loopback with a certificate made at test
 * time). OAuth machine-to-machine, then a Lakebase database credential (provisioned and
 * autoscaling); each minted token becomes the role's only password until it expires, so only
 * the current token logs in. Many rotations under load without a client error; bad answers
 * and wrong secrets are clear errors; an outage heals by itself. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct proxy px;
static pid_t mock_pid;
static int mock_port;
static char state[400], role[16];

/* Starts the mock workspace issuing tokens of life_s seconds for role r. */
static void mock_start(const char *r, const char *life_s)
{
    char dsn[600], port[16], ready[450];
    mock_port = free_port();
    snprintf(state, sizeof(state), "%s/mock-%d", env_need("LP_TEST_DIR"), mock_port);
    mkdir(state, 0700);
    snprintf(dsn, sizeof(dsn), "host=%s port=%s user=postgres dbname=postgres",
             env_need("LP_PGSOCK"), env_need("LP_PGPORT"));
    snprintf(port, sizeof(port), "%d", mock_port);
    snprintf(ready, sizeof(ready), "%s/ready", state);
    char script[400], cert[400], key[400], log[450];
    snprintf(script, sizeof(script), "%s/tests/lib/mock_workspace.py", env_need("LP_ROOT"));
    snprintf(cert, sizeof(cert), "%s/server.crt", env_need("LP_CERTS"));
    snprintf(key, sizeof(key), "%s/server.key", env_need("LP_CERTS"));
    snprintf(log, sizeof(log), "%s/mock.log", state);
    mock_pid = fork();
    cr_assert(mock_pid >= 0);
    if (mock_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test (it holds the output pipe) */
        if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout))
            _exit(126);
        execl("/usr/bin/python3", "python3", script, "--port", port, "--cert", cert, "--key", key,
              "--state", state, "--lifetime", life_s, "--pg-dsn", dsn, "--pg-role", r,
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200 && access(ready, F_OK) != 0; i++)
        usleep(50000);
    cr_assert_eq(access(ready, F_OK), 0, "the mock workspace did not start; see %s", log);
}

static void mock_stop(void)
{
    if (mock_pid > 0) {
        kill(mock_pid, SIGTERM);
        waitpid(mock_pid, NULL, 0);
        mock_pid = 0;
    }
}

static void stop_all(void)
{
    mock_stop(); /* first: proxy_stop ends the test when the proxy failed */
    proxy_stop(&px);
}

TestSuite(databricks, .fini = stop_all, .timeout = 150);

/* Sets the mock's failure mode ("ok", "500", "badjson", ...). */
static void mock_mode(const char *mode)
{
    char path[450], tmp[460];
    snprintf(path, sizeof(path), "%s/mode", state);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert(f);
    fputs(mode, f);
    fclose(f);
    rename(tmp, path);
}

/* A counter from the mock's calls.json. */
static int mock_calls(const char *key)
{
    char path[450], text[1024], needle[64];
    snprintf(path, sizeof(path), "%s/calls.json", state);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    snprintf(needle, sizeof(needle), "\"%s\": ", key);
    const char *p = strstr(text, needle);
    return p ? atoi(p + strlen(needle)) : 0;
}

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
             port, env_need("LP_PGPORT"), role, lifetime_s, mock_port, env_need("LP_CERTS"), target,
             extra ? extra : "");
    proxy_start_yaml(&px, port, yaml);
}

Test(databricks, provisioned_instance_ten_rotations_under_load_without_a_client_error)
{
    snprintf(role, sizeof(role), "lp_rot7");
    mock_start(role, "4"); /* refreshed at half-life: every 2 s */
    proxy_start_lake("instance: lp-instance", 2, "      refresh_percent: 50\n");
    struct load_result l;
    load_run(&px, "carol", "lake", 8, 24, &l);
    int minted = mock_calls("database_credentials");
    fprintf(stderr, "databricks rotation under load: %d queries, %d client errors, %d tokens, "
                    "%d OAuth exchanges, %d server logins, %d refused-token retries\n",
            l.queries, l.errors, minted, mock_calls("oidc"),
            file_count_lines(px.log, "logged in as lp_rot7"), file_count_lines(px.log, "refused token"));
    cr_expect_eq(l.errors, 0, "clients saw %d errors, first: %s", l.errors, l.first_error);
    cr_expect_geq(minted, 10, "only %d rotations", minted);
    cr_expect_eq(mock_calls("oidc"), 1, "the workspace OAuth token is reused while valid");
    cr_expect_geq(file_count_lines(px.log, "closing: lifetime reached"), 5);
    cr_expect_gt(l.queries, 1000);
}

Test(databricks, autoscaling_endpoint_mints_with_a_ttl)
{
    snprintf(role, sizeof(role), "lp_rot8");
    mock_start(role, "600");
    proxy_start_lake("endpoint: projects/p1/branches/main/endpoints/ep1", 0, "      ttl_s: 900\n");
    PGconn *c = proxy_connect(&px, "carol", "unused", "lake", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    char *v = query_value(c, "SELECT current_user");
    cr_expect_str_eq(v, "lp_rot8");
    free(v);
    cr_expect_eq(mock_calls("postgres_credentials"), 1);
    cr_expect_eq(mock_calls("database_credentials"), 0);
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
    mock_start(role, "60");
    /* refresh every 6 s (10% of the lifetime) so failures show quickly */
    proxy_start_lake("instance: lp-instance", 0, "      refresh_percent: 10\n");
    PGconn *c = proxy_connect(&px, "carol", "unused", "lake", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mock_mode(cases[i].mode);
        cr_expect(wait_credential(&px, "carol", 10000, cases[i].error, last, sizeof(last)), "%s: last_error \"%s\"",
                  cases[i].mode, last);
        char *v = query_value(c, "SELECT count(*) FROM items");
        cr_expect_str_eq(v, "1000");
        free(v);
        mock_mode("ok");
        cr_expect(wait_credential(&px, "carol", 10000, "", last, sizeof(last)), "%s: no recovery: %s", cases[i].mode, last);
    }
    PQfinish(c);
}

Test(databricks, wrong_secret_or_untrusted_certificate_is_a_clear_login_error)
{
    char last[400];
    snprintf(role, sizeof(role), "lp_rot8");
    mock_start(role, "600");
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
             port, env_need("LP_PGPORT"), role, mock_port, env_need("LP_CERTS"),
             env_need("LP_PGPORT"), role, mock_port);
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
