/* test_tokenauth.c: `client_auth: databricks_token`: clients log in with their own Databricks
 * token as password (TLS only); lakeproxy asks the mock workspace's SCIM /Me who it belongs
 * to, serves the client as that identity (RLS attributes, masking exemptions by its groups)
 * over the pool's own rotating credential, caches the answer (never past the token's expiry),
 * and refuses bad tokens, wrong user names and cleartext connections with clear errors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "mockws.h"

static struct proxy px;
static struct mock_ws mock;
static char tok_ana[4097], tok_bo[64], tok_old[64];

static void stop_all(void)
{
    mockws_stop(&mock); /* first: proxy_stop ends the test when the proxy failed */
    proxy_stop(&px);
}

TestSuite(tokenauth, .fini = stop_all, .timeout = 120);

/* A 4 KB token of token characters, like a Databricks OAuth JWT. */
static void make_long_token(char *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"[(i * 7 + 3) % 64];
    out[len] = '\0';
}

/* Mock workspace, its identities, and lakeproxy with database "lake" taking tokens, its pool
 * logging in as role lp_tok<n> (one per test: tests run in parallel, and the mock sets the
 * role's password at each token). */
static char yaml[8192]; /* the configuration start_all gave lakeproxy */

static void start_all(int n)
{
    char role[16];
    snprintf(role, sizeof(role), "lp_tok%d", n);
    char users[8192];
    make_long_token(tok_ana, 4096);
    snprintf(tok_bo, sizeof(tok_bo), "bo-token-%d", getpid());
    snprintf(tok_old, sizeof(tok_old), "old-token-%d", getpid());
    mockws_start(&mock, role, "600");
    snprintf(users, sizeof(users),
             "{\"%s\": {\"userName\": \"ana@example.com\", \"groups\": [\"support\", \"eng\"]},\n"
             " \"%s\": {\"userName\": \"bo@example.com\"},\n"
             " \"%s\": {\"userName\": \"old@example.com\", \"expires\": 1}}\n",
             tok_ana, tok_bo, tok_old);
    mockws_users(&mock, users);
    setenv("LP_TEST_CLIENT_SECRET", "lp-secret", 1);
    int port = free_port();
    char more[4096];
    snprintf(
        more, sizeof(more),
        "  plain:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n    user: %s\n"
        "    password: unused\n    tls: disable\n    allow: {users: [bo@example.com]}\n"
        "users:\n  carol: {auth: trust}\n"
        "  bo@example.com: {auth: token, attributes: {team: ops}}\n"
        "groups:\n  support: {attributes: {team: support}}\n"
        "rls:\n  prefix: app\n  databases: [lake]\n  attributes: {who: user, team: attribute}\n"
        "masking:\n  databases: [lake]\n  rules:\n"
        "    - {column: public.customers.email, function: email, unless: {groups: [support]}}\n",
        env_need("LP_PGPORT"), role);
    token_lake_yaml(yaml, sizeof(yaml), port, role, mock.port, more);
    proxy_start_yaml(&px, port, yaml);
}

/* Logs in to "lake" as user with token as password (TLS unless sslmode says otherwise). */
static PGconn *token_login(const char *user, const char *token, const char *sslmode)
{
    return token_connect(px.port, user, token, sslmode);
}

/* The login must fail with a message containing want. */
static void expect_refused(PGconn *c, const char *want)
{
    cr_expect_neq(PQstatus(c), CONNECTION_OK, "the login should have been refused");
    cr_expect(strstr(PQerrorMessage(c), want), "expected \"%s\" in: %s", want, PQerrorMessage(c));
    PQfinish(c);
}

/* Logs in as user with token, runs sql and returns its first value (malloc'd). */
static char *value_as(const char *user, const char *token, const char *sql)
{
    PGconn *c = token_login(user, token, NULL);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s: %s", user, PQerrorMessage(c));
    char *v = query_value(c, sql);
    PQfinish(c);
    return v;
}

Test(tokenauth, a_client_is_served_as_the_identity_of_its_own_token)
{
    static const char who[] = "SELECT current_setting('app.who') || '|' || "
                              "current_setting('app.team') || '|' || current_user";
    static const char email[] = "SELECT email FROM customers WHERE id = 1";
    start_all(1);
    char *v = value_as("ana@example.com", tok_ana, who);
    cr_expect_str_eq(v, "ana@example.com|support|lp_tok1",
                     "the identity's name and group attributes, the pool's own server login");
    free(v);
    v = value_as("ana@example.com", tok_ana, email);
    cr_expect_str_eq(v, "ada.secret@example.com", "support is exempt from the email mask");
    free(v);
    v = value_as("Ana@Example.COM", tok_ana, who);
    cr_expect_str_eq(v, "ana@example.com|support|lp_tok1",
                     "the workspace's spelling of the name is kept");
    free(v);
    v = value_as("bo@example.com", tok_bo, email);
    cr_expect(strstr(v, "secret") == NULL && strstr(v, "@example.com"),
              "bo is in no exempt group: masked, got %s", v);
    free(v);
    v = value_as("bo@example.com", tok_bo, who);
    cr_expect_str_eq(v, "bo@example.com|ops|lp_tok1",
                     "no workspace group: the team of his entry under users: (auth: token)");
    free(v);
    cr_expect_eq(mockws_calls(&mock, "me"), 2, "one /Me request per distinct token");
}

Test(tokenauth, bad_tokens_wrong_names_and_cleartext_are_refused_clearly)
{
    start_all(2);
    expect_refused(token_login("ana@example.com", "not-a-token-anyone-issued", NULL),
                   "the Databricks token was refused: workspace answered HTTP 401");
    expect_refused(token_login("old@example.com", tok_old, NULL), "Access token expired");
    expect_refused(token_login("eve@example.com", tok_ana, NULL),
                   "belongs to \"ana@example.com\", not to user \"eve@example.com\"");
    expect_refused(token_login("ana@example.com", tok_ana, "disable"), "connect with TLS");
    cr_expect_eq(file_count_lines(px.log, tok_bo), 0);
    char head[65];
    snprintf(head, sizeof(head), "%.64s", tok_ana);
    cr_expect_eq(file_count_lines(px.log, head), 0, "tokens never reach the log");
    PGconn *c = token_login("ana@example.com", tok_ana, NULL);
    cr_expect_eq(PQstatus(c), CONNECTION_OK, "a good login after the bad ones: %s",
                 PQerrorMessage(c));
    PQfinish(c);
}

Test(tokenauth, answers_are_cached_and_a_workspace_outage_is_named)
{
    start_all(3);
    PGconn *c = token_login("ana@example.com", tok_ana, NULL);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    PQfinish(c);
    mockws_mode(&mock, "500");
    for (int i = 0; i < 5; i++) {
        c = token_login("ana@example.com", tok_ana, NULL);
        cr_expect_eq(PQstatus(c), CONNECTION_OK, "a cached answer needs no workspace: %s",
                     PQerrorMessage(c));
        PQfinish(c);
    }
    cr_expect_eq(mockws_calls(&mock, "me"), 1, "five logins served from the cache");
    char want[200];
    snprintf(want, sizeof(want),
             "could not check the Databricks token: workspace https://127.0.0.1:%d answered "
             "HTTP 500",
             mock.port);
    expect_refused(token_login("bo@example.com", tok_bo, NULL), want);
    mockws_mode(&mock, "timeout");
    expect_refused(token_login("bo@example.com", tok_bo, NULL), "no answer within 2000 ms");
    mockws_mode(&mock, "ok");
    c = token_login("bo@example.com", tok_bo, NULL);
    cr_expect_eq(PQstatus(c), CONNECTION_OK, "the workspace is back: %s", PQerrorMessage(c));
    PQfinish(c);
}

/* base64url without padding. */
static void b64url(const char *in, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16 | (i + 1 < n ? (unsigned char)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? (unsigned char)in[i + 2] : 0);
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = a[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = a[v & 63];
    }
    out[o] = '\0';
}

Test(tokenauth, a_cached_answer_ends_with_the_token_s_own_expiry)
{
    start_all(4);
    char payload[64], enc[128], jwt[300], users[600];
    time_t exp = time(NULL) + 3;
    snprintf(payload, sizeof(payload), "{\"sub\":\"cy\",\"exp\":%lld}", (long long)exp);
    b64url(payload, enc);
    snprintf(jwt, sizeof(jwt), "eyJhbGciOiJSUzI1NiJ9.%s.c2lnbmF0dXJl", enc);
    snprintf(users, sizeof(users),
             "{\"%s\": {\"userName\": \"cy@example.com\", \"expires\": %lld}}\n", jwt,
             (long long)exp);
    mockws_users(&mock, users);
    PGconn *c = token_login("cy@example.com", jwt, NULL);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    PQfinish(c);
    c = token_login("cy@example.com", jwt, NULL);
    cr_expect_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    PQfinish(c);
    cr_expect_eq(mockws_calls(&mock, "me"), 1, "the second login is served from the cache");
    while (time(NULL) <= exp)
        usleep(100000);
    expect_refused(token_login("cy@example.com", jwt, NULL), "expired");
    cr_expect_eq(mockws_calls(&mock, "me"), 2, "past the token's exp the cache asks again");
}

/* Starts a TLS token login (non-blocking) as user with token. */
static PGconn *token_login_start(const char *user, const char *token)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", px.port);
    const char *keys[] = {"host", "port", "user", "password", "dbname", "sslmode", NULL};
    const char *vals[] = {"127.0.0.1", port, user, token, "lake", "require", NULL};
    PGconn *c = PQconnectStartParams(keys, vals, 0);
    cr_assert(c && PQstatus(c) != CONNECTION_BAD);
    return c;
}

/* Drives the n logins in c for ms milliseconds, or until all have ended. */
static void token_logins_drive(PGconn **c, int n, int ms)
{
    bool done[8] = {false};
    int left = n;
    for (double end = now_s() + ms / 1000.0; left > 0 && now_s() < end;) {
        usleep(2000);
        for (int i = 0; i < n; i++) {
            if (done[i])
                continue;
            PostgresPollingStatusType st = PQconnectPoll(c[i]);
            if (st == PGRES_POLLING_OK || st == PGRES_POLLING_FAILED) {
                done[i] = true;
                left--;
            }
        }
    }
}

/* Red team: 33 logins with made-up tokens while the workspace was slow took every check slot
 * and locked everyone out, without any credential. Now one address holds at most a few
 * checks, and a refused token is refused again from the cache, without a request. */
Test(tokenauth, made_up_tokens_cannot_exhaust_the_checks)
{
    start_all(5);
    expect_refused(token_login("ana@example.com", "made-up-0", NULL), "HTTP 401");
    int asked = mockws_calls(&mock, "me");
    expect_refused(token_login("ana@example.com", "made-up-0", NULL), "HTTP 401");
    cr_expect_eq(mockws_calls(&mock, "me"), asked, "a refused token is not asked about again");

    mockws_mode(&mock, "slow:3");
    PGconn *c[5];
    char tok[5][32];
    for (int i = 0; i < 5; i++) {
        snprintf(tok[i], sizeof(tok[i]), "made-up-%d", i + 1);
        c[i] = token_login_start("ana@example.com", tok[i]);
    }
    token_logins_drive(c, 4, 1500); /* four tokens now wait for the slow workspace */
    token_logins_drive(c + 4, 1, 1500);
    cr_expect_eq(PQstatus(c[4]), CONNECTION_BAD, "the fifth is refused at once");
    cr_expect(strstr(PQerrorMessage(c[4]), "from this address"), "%s", PQerrorMessage(c[4]));
    token_logins_drive(c, 4, 10000);
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(PQstatus(c[i]), CONNECTION_BAD, "made-up-%d logged in", i + 1);
        PQfinish(c[i]);
    }
    mockws_mode(&mock, "ok");
    expect_refused(token_login("ana@example.com", "line\r\nbreak", NULL), "printable ASCII");
}

/* An identity entry (auth: token) has no password: logging in with one, where passwords are
 * asked for, fails as a wrong password does, and its token still works where tokens are. */
Test(tokenauth, an_identity_entry_cannot_log_in_with_a_password)
{
    start_all(6);
    const char *tries[] = {"unused", "bo-token", tok_bo}; /* his token is no password either */
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
        char port[16];
        snprintf(port, sizeof(port), "%d", px.port);
        const char *keys[] = {"host", "port", "user", "password", "dbname", "sslmode", NULL};
        const char *vals[] = {"127.0.0.1", port, "bo@example.com", tries[i], "plain",
                              "require",   NULL};
        expect_refused(PQconnectdbParams(keys, vals, 0), "password authentication failed");
    }
    char *v = value_as("bo@example.com", tok_bo, "SELECT current_setting('app.team')");
    cr_expect_str_eq(v, "ops", "where tokens are asked for, his token works");
    free(v);
}

/* A reload that points the database at another workspace closes the sessions whose tokens the
 * old one vouched for (57P01): the new workspace never saw them. */
Test(tokenauth, a_reload_to_another_workspace_closes_its_token_sessions)
{
    start_all(7);
    PGconn *c = token_login("bo@example.com", tok_bo, NULL);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    free(query_value(c, "SELECT 1"));
    static char edited[8400];
    const char *at = strstr(yaml, "workspace: https://127.0.0.1:");
    cr_assert_not_null(at);
    snprintf(edited, sizeof(edited), "%.*sworkspace: https://localhost:%s", (int)(at - yaml), yaml,
             at + strlen("workspace: https://127.0.0.1:"));
    proxy_reload_yaml(&px, edited);
    expect_session_closed(c, "its token was checked at another workspace");
}
