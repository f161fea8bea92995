/* test_redteam16.c: red team 16 against Lakebase OAuth credential rotation and client logins
 * with a Databricks token. Each test asserts the safe behaviour: a failing test is a finding.
 * Real PostgreSQL and libpq clients; the workspace is tests/lib/mock_workspace.py (mockws),
 * and odd provider answers come from the `file` provider (the same JSON parser as the
 * workspace's answers, token.c). */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "mockws.h"
#include "testload.h"

static struct proxy px;
static struct mock_ws mock;

static void stop_all(void)
{
    if (mock.pid)
        mockws_stop(&mock);
    proxy_stop(&px);
}

TestSuite(redteam16, .fini = stop_all, .timeout = 120);

/* ---- the file provider: odd answers ------------------------------------------------------ */

static char tokfile[400];

static void write_tokfile(const char *text)
{
    char tmp[420];
    snprintf(tmp, sizeof(tmp), "%s.tmp", tokfile);
    FILE *f = fopen(tmp, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    chmod(tmp, 0600);
    cr_assert_eq(rename(tmp, tokfile), 0);
}

static void proxy_start_file(const char *first)
{
    static char yaml[4096];
    int port = free_port();
    snprintf(tokfile, sizeof(tokfile), "/tmp/rt16-token-%d-%d", getpid(), port);
    write_tokfile(first);
    snprintf(
        yaml, sizeof(yaml),
        "listen: {host: 127.0.0.1, port: %d}\n"
        "log: {level: info}\n"
        "admin: {users: [carol]}\n"
        "databases:\n"
        "  lake:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n    user: lp_server\n"
        "    tls: disable\n"
        "    pool: {mode: transaction, size: 2, max_wait_ms: 3000, lifetime_s: 1}\n"
        "    credentials: {provider: file, path: %s}\n"
        "users:\n  carol: {auth: trust}\n",
        port, env_need("LP_PGPORT"), tokfile);
    proxy_start_yaml(&px, port, yaml);
}

/* An expiration_time at the Unix epoch (1970-01-01T00:00:00Z) is long past: the token must be
 * refused as expired, not taken as "no expiry stated" and used as valid forever. */
Test(redteam16, an_expiry_at_the_epoch_is_expired_not_no_expiry)
{
    char last[400];
    proxy_start_file(
        "{\"token\": \"server-secret\", \"expiration_time\": \"1970-01-01T00:00:00Z\"}\n");
    bool refused = wait_credential(&px, "carol", 4000, "expired", last, sizeof(last));
    cr_expect(refused, "a token stated to have expired in 1970 was accepted (last_error \"%s\")",
              last);
    cr_expect_eq(file_count_lines(px.log, "no expiry stated"), 0,
                 "the epoch expiry was read as \"no expiry stated\"");
    /* the only token is expired: a new server login must not be made with it */
    PGconn *c = proxy_connect(&px, "carol", "x", "lake", NULL);
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, "SELECT 1") : NULL;
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK,
                  "a server login was made with a token that expired in 1970");
    PQclear(r);
    PQfinish(c);
    /* the same with an offset that also lands on 0 */
    write_tokfile(
        "{\"token\": \"server-secret\",   \"expiration_time\": \"1970-01-01T01:00:00+01:00\"}\n");
    sleep(2);
    cr_expect(wait_credential(&px, "carol", 3000, "expired", last, sizeof(last)),
              "1970-01-01T01:00:00+01:00 accepted (last_error \"%s\")", last);
}

/* Odd lifetimes and malformed answers: each a clear error in SHOW CREDENTIALS, the valid token
 * serving on, no crash, and the token never in the log. */
Test(redteam16, odd_lifetimes_and_malformed_answers_are_clear_errors_and_the_token_serves_on)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"{\"token\": \"server-secret\", \"expires_in\": -5}", "expires_in"},
        {"{\"token\": \"server-secret\", \"expires_in\": 0}", "expires_in"},
        {"{\"token\": \"server-secret\", \"expires_in\": 1e300}", "expires_in"},
        {"{\"token\": \"server-secret\", \"expires_in\": 9223372036854775807}", "expires_in"},
        {"{\"token\": \"server-secret\", \"expires_in\": \"3600\"}", "expires_in"},
        {"{\"token\": \"server-secret\", \"expiration_time\": \"2020-01-01T00:00:00Z\"}",
         "expired"},
        {"{\"token\": \"server-secret\", \"expiration_time\": \"9999-12-31T23:59:59Z\"}",
         "ten years"},
        {"{\"token\": \"server-secret\", \"expiration_time\": \"2030-02-30T00:00:00Z x\"}",
         "RFC 3339"},
        {"{\"token\": \"server secret\"}", "printable"},
        {"{\"token\": \"server-secret\", \"token\": \"other\"}", "malformed"},
        {"{\"token\": \"server-sec", "malformed"},
        {"[\"server-secret\"]", "bare token or a JSON object"},
    };
    char last[400];
    proxy_start_file("{\"token\": \"server-secret\", \"expires_in\": 3600}\n");
    cr_assert(wait_credential(&px, "carol", 4000, "", last, sizeof(last)), "%s", last);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[300];
        /* padding changes the size, so the file is seen as changed */
        snprintf(text, sizeof(text), "%s%*s\n", cases[i].text, (int)i + 1, "");
        write_tokfile(text);
        cr_expect(wait_credential(&px, "carol", 4000, cases[i].want, last, sizeof(last)),
                  "case %zu (%s): last_error \"%s\"", i, cases[i].text, last);
        PGconn *c = proxy_connect(&px, "carol", "x", "lake", NULL);
        cr_expect_eq(PQstatus(c), CONNECTION_OK, "case %zu: %s", i, PQerrorMessage(c));
        char *v = PQstatus(c) == CONNECTION_OK ? query_value(c, "SELECT current_user") : NULL;
        cr_expect(v && strcmp(v, "lp_server") == 0, "case %zu: served as %s", i, v ? v : "-");
        free(v);
        PQfinish(c);
        cr_assert_eq(kill(px.pid, 0), 0, "lakeproxy died at case %zu", i);
        /* back to a good answer, so each case starts from a clean slate */
        snprintf(text, sizeof(text), "{\"token\": \"server-secret\", \"expires_in\": 3600}%*s\n",
                 (int)i + 40, "");
        write_tokfile(text);
        cr_expect(wait_credential(&px, "carol", 4000, "", last, sizeof(last)),
                  "case %zu: no recovery: %s", i, last);
    }
    cr_expect_eq(file_count_lines(px.log, "server-secret"), 0, "the token reached the log");
    cr_expect_eq(file_count_lines(px.log, "server-sec"), 0, "part of the token reached the log");
    unlink(tokfile);
}

/* The server refuses the token the provider gives (28P01), and the provider keeps giving it:
 * waiting clients get a clear 28P01 soon (no hang, no login storm at the server), and once
 * the provider gives the right token a new client logs in without delay. */
Test(redteam16, a_token_the_server_refuses_is_a_clear_error_and_a_fixed_one_serves_at_once)
{
    proxy_start_file("{\"token\": \"wrong-secret-123\", \"expires_in\": 3600}\n");
    for (int i = 0; i < 3; i++) {
        double t0 = now_s();
        PGconn *c = proxy_connect(&px, "carol", "x", "lake", NULL);
        PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, "SELECT 1") : NULL;
        double took = now_s() - t0;
        cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "a refused token served");
        cr_expect_lt(took, 5.0, "the client waited %.1f s", took);
        cr_expect(strstr(PQerrorMessage(c), "28P01") || strstr(PQerrorMessage(c), "password") ||
                      strstr(PQerrorMessage(c), "refused"),
                  "unclear error: %s", PQerrorMessage(c));
        PQclear(r);
        PQfinish(c);
    }
    write_tokfile("{\"token\": \"server-secret\", \"expires_in\": 3600}   \n");
    sleep(2);
    double t0 = now_s();
    PGconn *c = proxy_connect(&px, "carol", "x", "lake", NULL);
    char *v = PQstatus(c) == CONNECTION_OK ? query_value(c, "SELECT current_user") : NULL;
    cr_expect(v && strcmp(v, "lp_server") == 0, "the fixed token did not serve: %s",
              PQerrorMessage(c));
    cr_expect_lt(now_s() - t0, 2.0, "the fixed token took %.1f s", now_s() - t0);
    free(v);
    PQfinish(c);
    int logins = file_count_lines(px.log, "refused token") + file_count_lines(px.log, "28P01");
    cr_expect_lt(logins, 40, "%d refused server logins logged: a login storm", logins);
    cr_expect_eq(file_count_lines(px.log, "wrong-secret"), 0, "the token reached the log");
    unlink(tokfile);
}

/* ---- the databricks provider under pressure ---------------------------------------------- */

static const char *instance = "lp-instance";
static const char *secret_env = "LP_TEST_CLIENT_SECRET";

static void proxy_start_lake(const char *role, int lifetime_s, int timeout_ms, const char *extra)
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
             "      client_id: lp-client\n      client_secret_env: %s\n"
             "      ca_file: %s/ca.crt\n      timeout_ms: %d\n      instance: %s\n%s"
             "users:\n  carol: {auth: trust}\n",
             port, env_need("LP_PGPORT"), role, lifetime_s, mock.port, secret_env,
             env_need("LP_CERTS"), timeout_ms, instance, extra ? extra : "");
    if (px.pid == 0)
        proxy_start_yaml(&px, port, yaml);
    else
        proxy_reload_yaml(&px, yaml);
}

/* Tokens of 2 s (Lakebase's are an hour; an expires_in "tiny" attack): refreshed every
 * second or so, while 6 clients connect and query with servers living 1 s. No client may see
 * an error while the workspace answers. */
Test(redteam16, tiny_token_lifetimes_under_a_login_burst_give_no_client_error)
{
    mockws_start(&mock, "lp_rt16_1", "2");
    proxy_start_lake("lp_rt16_1", 1, 2000, NULL);
    struct load_result l;
    load_run(&px, "carol", "lake", 6, 8, &l);
    fprintf(stderr, "rt16 tiny lifetimes: %d queries, %d errors, %d tokens, refused %d\n",
            l.queries, l.errors, mockws_calls(&mock, "database_credentials"),
            file_count_lines(px.log, "refused"));
    cr_expect_eq(l.errors, 0, "clients saw %d errors, first: %s", l.errors, l.first_error);
    cr_expect_gt(l.queries, 100);
    cr_expect_geq(mockws_calls(&mock, "database_credentials"), 4);
}

/* Reloads (SIGHUP) that change the credential's settings (so the credential is replaced and a
 * new token minted) while clients log in and query, and servers are replaced each second. */
Test(redteam16, reloads_that_replace_the_credential_under_load_give_no_client_error)
{
    mockws_start(&mock, "lp_rt16_2", "600");
    proxy_start_lake("lp_rt16_2", 1, 2000, NULL);
    struct load_result l;
    struct load *ld = load_start(&px, "carol", "lake", 6, &l);
    for (int i = 0; i < 8; i++) {
        usleep(600000);
        instance = i % 2 ? "lp-instance" : "lp-instance-b"; /* the credential is replaced */
        proxy_start_lake("lp_rt16_2", 1, 2000, NULL);
    }
    usleep(1500000);
    load_stop(ld);
    instance = "lp-instance";
    fprintf(stderr, "rt16 reloads: %d queries, %d errors, %d tokens, refused %d\n", l.queries,
            l.errors, mockws_calls(&mock, "database_credentials"),
            file_count_lines(px.log, "refused"));
    cr_expect_eq(l.errors, 0, "clients saw %d errors, first: %s", l.errors, l.first_error);
    cr_expect_gt(l.queries, 100);
    cr_expect_geq(mockws_calls(&mock, "database_credentials"), 5,
                  "the credential was not replaced");
}

/* The workspace turns slow (each answer 2.5 s, timeout 2 s) and then fails, right when a
 * burst of new clients connects with servers being replaced: the valid token serves on. */
Test(redteam16, a_slow_then_failing_workspace_at_refresh_time_gives_no_client_error)
{
    char last[400];
    mockws_start(&mock, "lp_rt16_3", "20");
    proxy_start_lake("lp_rt16_3", 1, 2000, "      refresh_percent: 10\n");
    PGconn *first = proxy_connect(&px, "carol", "x", "lake", NULL); /* the first token is in */
    cr_assert_eq(PQstatus(first), CONNECTION_OK, "%s", PQerrorMessage(first));
    PQfinish(first);
    struct load_result l;
    struct load *ld = load_start(&px, "carol", "lake", 8, &l);
    mockws_mode(&mock, "slow:2.5");
    cr_expect(wait_credential(&px, "carol", 8000, "no answer within", last, sizeof(last)), "%s",
              last);
    mockws_mode(&mock, "badjson");
    cr_expect(wait_credential(&px, "carol", 8000, "malformed JSON", last, sizeof(last)), "%s",
              last);
    mockws_mode(&mock, "500");
    usleep(1500000);
    load_stop(ld);
    cr_expect_eq(l.errors, 0, "clients saw %d errors, first: %s", l.errors, l.first_error);
    cr_expect_gt(l.queries, 100);
    cr_expect_eq(file_count_lines(px.log, "lp-secret"), 0, "the client secret reached the log");
    mockws_mode(&mock, "ok");
}

/* ---- client_auth: databricks_token --------------------------------------------------------- */

static char tok_ana[80], tok_bo[80];

static void start_tokens(const char *role)
{
    snprintf(tok_ana, sizeof(tok_ana), "ana-token-%d-abcdefghijklmnop", getpid());
    snprintf(tok_bo, sizeof(tok_bo), "bo-token-%d-abcdefghijklmnop", getpid());
    mockws_start(&mock, role, "600");
    char users[1024];
    snprintf(users, sizeof(users),
             "{\"%s\": {\"userName\": \"ana@example.com\", \"groups\": [\"eng\"]},\n"
             " \"%s\": {\"userName\": \"bo@example.com\"}}\n",
             tok_ana, tok_bo);
    mockws_users(&mock, users);
    setenv("LP_TEST_CLIENT_SECRET", "lp-secret", 1);
    int port = free_port();
    static char yaml[4096];
    token_lake_yaml(yaml, sizeof(yaml), port, role, mock.port, "users:\n  carol: {auth: trust}\n");
    proxy_start_yaml(&px, port, yaml);
}

static PGconn *token_login(const char *user, const char *token)
{
    return token_connect(px.port, user, token, NULL);
}

/* Who the session of user/token is served as ("" when refused). */
static void served_as(const char *user, const char *token, char *out, size_t outsz, char *err,
                      size_t errsz)
{
    PGconn *c = token_login(user, token);
    out[0] = '\0';
    snprintf(err, errsz, "%s", PQerrorMessage(c));
    if (PQstatus(c) == CONNECTION_OK) {
        char *v = query_value(c, "SELECT current_user");
        snprintf(out, outsz, "ok:%s", v ? v : "");
        free(v);
    }
    PQfinish(c);
}

/* Token of A as user B, before and after A's answer is cached; case and padding tricks on the
 * user name; a cached identity is never reused for another name. */
Test(redteam16, a_token_never_logs_in_as_another_identity_cached_or_not)
{
    char v[200], err[600];
    start_tokens("lp_tok1");
    served_as("bo@example.com", tok_ana, v, sizeof(v), err, sizeof(err)); /* uncached */
    cr_expect_str_eq(v, "", "ana's token logged in as bo");
    served_as("ana@example.com", tok_ana, v, sizeof(v), err, sizeof(err)); /* now cached */
    cr_expect_str_eq(v, "ok:lp_tok1", "ana's own login failed: %s", err);
    static const char *const others[] = {
        "bo@example.com", "ana@example.com ",     " ana@example.com",
        "ana@example.co", "ana@example.com.evil", "ana",
        "carol",          "ana@example.comx"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        served_as(others[i], tok_ana, v, sizeof(v), err, sizeof(err));
        cr_expect_str_eq(v, "", "ana's cached token logged in as \"%s\"", others[i]);
    }
    /* bo's token then ana's name, while bo's answer is being fetched (joins no other fetch) */
    served_as("ana@example.com", tok_bo, v, sizeof(v), err, sizeof(err));
    cr_expect_str_eq(v, "", "bo's token logged in as ana");
    cr_expect(strstr(err, "28P01") || strstr(err, "belongs to"), "%s", err);
}

/* Long, odd and near-miss tokens: a clear refusal, no crash, nothing of them in the log. */
Test(redteam16, long_and_odd_tokens_are_refused_cleanly)
{
    char v[200], err[600];
    start_tokens("lp_tok2");
    static char big[300000];
    memset(big, 'A', sizeof(big) - 1);
    memcpy(big, "eyJhbGciOiJI", 12);
    big[sizeof(big) - 1] = '\0';
    served_as("ana@example.com", big, v, sizeof(v), err, sizeof(err));
    cr_expect_str_eq(v, "", "a 300 KB made-up token logged in");
    cr_assert_eq(kill(px.pid, 0), 0, "lakeproxy died on a 300 KB token");
    /* a JWT whose payload is huge, base64 junk, dots only */
    static const char *const odd[] = {"a.b.c",        "..",       "eyJ.eyJ.", "x\x7fy",
                                      "tok\xc3\xa9n", "Bearer x", "ana-token"};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        served_as("ana@example.com", odd[i], v, sizeof(v), err, sizeof(err));
        cr_expect_str_eq(v, "", "token %zu logged in", i);
        cr_assert_eq(kill(px.pid, 0), 0, "lakeproxy died on odd token %zu", i);
    }
    /* a prefix / extension of ana's valid token is another token */
    char pre[80], ext[90];
    snprintf(pre, sizeof(pre), "%.*s", (int)strlen(tok_ana) - 1, tok_ana);
    snprintf(ext, sizeof(ext), "%sA", tok_ana);
    served_as("ana@example.com", pre, v, sizeof(v), err, sizeof(err));
    cr_expect_str_eq(v, "", "a prefix of ana's token logged in");
    served_as("ana@example.com", ext, v, sizeof(v), err, sizeof(err));
    cr_expect_str_eq(v, "", "an extension of ana's token logged in");
    served_as("ana@example.com", tok_ana, v, sizeof(v), err, sizeof(err));
    cr_expect_str_eq(v, "ok:lp_tok2", "ana's own login failed after the junk: %s", err);
    cr_expect_eq(file_count_lines(px.log, tok_ana), 0, "ana's token reached the log");
    cr_expect_eq(file_count_lines(px.log, "AAAAAAAAAAAAAAAA"), 0, "the big token reached the log");
}

/* Many concurrent logins with made-up tokens while the workspace is slow: bounded (53300 for
 * the excess), and once it answers again a real token logs in at once. */
struct burst {
    int i, ok, busy, other;
};

static void *burst_login(void *arg)
{
    struct burst *b = arg;
    char tok[64];
    snprintf(tok, sizeof(tok), "made-up-%d-%d-zzzzzzzz", getpid(), b->i);
    PGconn *c = token_login("ana@example.com", tok);
    if (PQstatus(c) == CONNECTION_OK)
        b->ok = 1;
    else if (strstr(PQerrorMessage(c), "too many"))
        b->busy = 1;
    else
        b->other = 1;
    PQfinish(c);
    return NULL;
}

Test(redteam16, a_burst_of_made_up_tokens_is_bounded_and_service_returns)
{
    enum { N = 40 };
    char v[200], err[600];
    start_tokens("lp_tok3");
    mockws_mode(&mock, "slow:1.5");
    pthread_t th[N];
    static struct burst b[N];
    for (int i = 0; i < N; i++) {
        b[i] = (struct burst){.i = i};
        pthread_create(&th[i], NULL, burst_login, &b[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    int ok = 0, busy = 0, other = 0;
    for (int i = 0; i < N; i++) {
        ok += b[i].ok;
        busy += b[i].busy;
        other += b[i].other;
    }
    fprintf(stderr, "rt16 burst: ok %d busy %d refused %d, /Me calls %d\n", ok, busy, other,
            mockws_calls(&mock, "me"));
    cr_expect_eq(ok, 0, "a made-up token logged in");
    cr_expect_leq(mockws_calls(&mock, "me"), 8, "%d workspace checks for one address",
                  mockws_calls(&mock, "me"));
    cr_assert_eq(kill(px.pid, 0), 0, "lakeproxy died");
    mockws_mode(&mock, "ok");
    sleep(2);
    served_as("ana@example.com", tok_ana, v, sizeof(v), err, sizeof(err));
    cr_expect_str_eq(v, "ok:lp_tok3", "ana could not log in after the burst: %s", err);
}

/* A token whose own JWT `exp` passes while its identity is cached: the next login after the
 * expiry is refused, whatever the workspace or the cache said before. */
Test(redteam16, a_cached_identity_ends_at_the_tokens_own_expiry)
{
    char v[200], err[600], tok[400], users[1024], payload[128];
    start_tokens("lp_tok4");
    unsigned char b64[200];
    snprintf(payload, sizeof(payload), "{\"sub\":\"ana\",\"exp\":%ld}", (long)time(NULL) + 3);
    int n = EVP_EncodeBlock(b64, (const unsigned char *)payload, (int)strlen(payload));
    while (n > 0 && b64[n - 1] == '=')
        b64[--n] = '\0';
    for (int i = 0; i < n; i++)
        b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
    snprintf(tok, sizeof(tok), "eyJhbGciOiJSUzI1NiJ9.%s.c2lnbmF0dXJlc2lnbmF0dXJl", b64);
    snprintf(users, sizeof(users),
             "{\"%s\": {\"userName\": \"ana@example.com\"}, \"%s\": {\"userName\": "
             "\"ana@example.com\"}}\n",
             tok, tok_ana);
    mockws_users(&mock, users); /* the mock itself never expires it */
    served_as("ana@example.com", tok, v, sizeof(v), err, sizeof(err));
    cr_expect_str_eq(v, "ok:lp_tok4", "the JWT login failed: %s", err);
    sleep(5);
    served_as("ana@example.com", tok, v, sizeof(v), err, sizeof(err));
    cr_expect_str_eq(v, "", "a token past its own exp logged in (from the cache?)");
}

struct same {
    const char *tok;
    int ok;
    char err[300];
};

static void *same_login(void *arg)
{
    struct same *s = arg;
    PGconn *c = token_login("ana@example.com", s->tok);
    s->ok = PQstatus(c) == CONNECTION_OK;
    snprintf(s->err, sizeof(s->err), "%s", PQerrorMessage(c));
    PQfinish(c);
    return NULL;
}

/* 30 logins at once with the same valid token while the workspace is slow: one request, all
 * served (none turned away as "too many"). */
Test(redteam16, a_burst_of_one_valid_token_shares_one_check_and_all_log_in)
{
    enum { N = 30 };
    start_tokens("lp_tok5");
    mockws_mode(&mock, "slow:1");
    pthread_t th[N];
    static struct same s[N];
    for (int i = 0; i < N; i++) {
        s[i] = (struct same){.tok = tok_ana};
        pthread_create(&th[i], NULL, same_login, &s[i]);
    }
    int ok = 0;
    const char *first = NULL;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += s[i].ok;
        if (!s[i].ok && !first)
            first = s[i].err;
    }
    mockws_mode(&mock, "ok");
    cr_expect_eq(ok, N, "%d of %d logins failed, first: %s", N - ok, N, first ? first : "");
    cr_expect_leq(mockws_calls(&mock, "me"), 1, "%d workspace checks for one token",
                  mockws_calls(&mock, "me"));
}

/* The last_error of database db in SHOW CREDENTIALS ("?" when it has no row). */
static void cred_error(const char *db, char *out, size_t outsz)
{
    PGconn *adm = proxy_connect(&px, "carol", "unused", "lakeproxy", NULL);
    cr_assert(PQstatus(adm) == CONNECTION_OK, "%s", PQerrorMessage(adm));
    PGresult *r = admin_show(adm, "SHOW CREDENTIALS");
    snprintf(out, outsz, "?");
    for (int i = 0; i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, PQfnumber(r, "database")), db) == 0)
            snprintf(out, outsz, "%s", PQgetvalue(r, i, PQfnumber(r, "last_error")));
    PQclear(r);
    PQfinish(adm);
}

/* Token commands that misbehave: one leaves a child holding its stdout, one ignores SIGTERM
 * and never answers, one floods its output. Each a clear error or a token within its
 * timeout, the proxy responsive, and commands never see the workspace client secret. */
Test(redteam16, misbehaving_token_commands_never_hang_the_proxy_nor_see_secrets)
{
    char yaml[8192], leak[300], e[400];
    int port = free_port();
    snprintf(leak, sizeof(leak), "/tmp/rt16-leak-%d", getpid());
    unlink(leak);
    setenv("LP_RT16_SECRET", "rt16-client-secret-XYZ", 1);
    const char *pg = env_need("LP_PGPORT");
#define DB(name, cred)                                                                             \
    "  " name ":\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n    user: lp_server\n"   \
    "    tls: disable\n    pool: {mode: transaction, size: 2, max_wait_ms: 4000}\n"                \
    "    credentials: " cred "\n"
    snprintf(yaml, sizeof(yaml),
             "listen: {host: 127.0.0.1, port: %d}\n"
             "log: {level: info}\n"
             "admin: {users: [carol]}\n"
             "databases:\n" DB("bg", "{provider: command, timeout_ms: 1500, shell: 'sleep 30 & "
                                     "echo server-\"\"secret'}")
                 DB("stubborn", "{provider: command, timeout_ms: 1000, shell: 'trap \"\" TERM; "
                                "sleep 30; echo server-\"\"secret'}")
                     DB("flood", "{provider: command, timeout_ms: 1500, shell: 'head -c 30000000 "
                                 "/dev/zero | tr \"\\\\0\" a'}")
                         DB("peek", "{provider: command, timeout_ms: 1500, shell: 'env > %s; echo "
                                    "server-secret'}")
                             DB("ws",
                                "{provider: databricks, workspace: 'https://127.0.0.1:9', "
                                "client_id: x, client_secret_env: LP_RT16_SECRET, "
                                "instance: i, timeout_ms: 500}") "  plain:\n    host: 127.0.0.1\n  "
                                                                 "  port: %s\n    dbname: "
                                                                 "lp_test\n    user: lp_server\n"
                                                                 "    password: server-secret\n    "
                                                                 "tls: disable\n"
                                                                 "users:\n  carol: {auth: trust}\n",
             port, pg, pg, pg, pg, leak, pg, pg);
#undef DB
    proxy_start_yaml(&px, port, yaml);
    sleep(3);
    double t0 = now_s();
    PGconn *c = proxy_connect(&px, "carol", "x", "plain", NULL);
    cr_expect_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    cr_expect_lt(now_s() - t0, 1.0, "a plain login took %.1f s", now_s() - t0);
    PQfinish(c);
    c = proxy_connect(&px, "carol", "x", "bg", NULL);
    char *v = PQstatus(c) == CONNECTION_OK ? query_value(c, "SELECT 1") : NULL;
    cr_expect(v, "a command that exited (a background child holding stdout) gave no token: %s",
              PQerrorMessage(c));
    free(v);
    PQfinish(c);
    cred_error("stubborn", e, sizeof(e));
    cr_expect(e[0] && strcmp(e, "?"), "the stubborn command: no error shown (\"%s\")", e);
    cred_error("flood", e, sizeof(e));
    cr_expect(e[0] && strcmp(e, "?"), "the flooding command: no error shown (\"%s\")", e);
    t0 = now_s();
    c = proxy_connect(&px, "carol", "x", "stubborn", NULL);
    cr_expect_neq(PQstatus(c) == CONNECTION_OK &&
                      PQresultStatus(PQexec(c, "SELECT 1")) == PGRES_TUPLES_OK,
                  1);
    cr_expect_lt(now_s() - t0, 6.0, "a stubborn-command login hung %.1f s", now_s() - t0);
    PQfinish(c);
    cr_assert_eq(kill(px.pid, 0), 0, "lakeproxy died");
    FILE *f = fopen(leak, "r");
    char line[4096];
    bool leaked = false;
    while (f && fgets(line, sizeof(line), f))
        leaked |= strstr(line, "rt16-client-secret-XYZ") != NULL;
    if (f)
        fclose(f);
    cr_expect(f, "the peek command did not run");
    cr_expect(!leaked, "a token command saw the workspace client secret in its environment");
    cr_expect_eq(file_count_lines(px.log, "rt16-client-secret"), 0, "the secret reached the log");
    cr_expect_eq(file_count_lines(px.log, "server-secret"), 0, "a token reached the log");
    unlink(leak);
}

/* Sets role's password in the test PostgreSQL behind lakeproxy's back: the server no longer
 * takes the token lakeproxy holds (a revoked credential). */
static void pg_revoke(const char *role, const char *pw)
{
    char dsn[600], sql[200];
    snprintf(dsn, sizeof(dsn), "host=%s port=%s user=postgres dbname=postgres",
             env_need("LP_PGSOCK"), env_need("LP_PGPORT"));
    PGconn *c = PQconnectdb(dsn);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    snprintf(sql, sizeof(sql), "ALTER ROLE %s PASSWORD '%s'", role, pw);
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* The server refuses lakeproxy's token mid-pool (28P01) `times` times, 2.5 s apart, while the
 * workspace would mint a new one at any time (role: the server user, a fresh one per test).
 * Servers are replaced every second under load. No client may see an error while a valid
 * token is obtainable. */
static void refused_mid_pool(const char *role, int times)
{
    mockws_start(&mock, role, "600");
    proxy_start_lake(role, 1, 2000, NULL);
    PGconn *first = proxy_connect(&px, "carol", "x", "lake", NULL);
    cr_assert_eq(PQstatus(first), CONNECTION_OK, "%s", PQerrorMessage(first));
    PQfinish(first);
    struct load_result l;
    struct load *ld = load_start(&px, "carol", "lake", 6, &l);
    usleep(1500000);
    for (int i = 0; i < times; i++) {
        char pw[40];
        snprintf(pw, sizeof(pw), "revoked-%d", i);
        if (i > 0) {
            usleep(2500000);
            struct load_result mid = load_now(ld);
            cr_expect_eq(mid.errors, 0, "after %d refusal(s) clients saw %d errors, first: %s", i,
                         mid.errors, mid.first_error);
        }
        pg_revoke(role, pw);
    }
    usleep(3000000);
    load_stop(ld);
    fprintf(stderr, "rt16 revoked %d times: %d queries, %d errors, %d tokens\n", times, l.queries,
            l.errors, mockws_calls(&mock, "database_credentials"));
    cr_expect_eq(l.errors, 0, "after %d refusals 2.5 s apart clients saw %d errors, first: %s",
                 times, l.errors, l.first_error);
    cr_expect_gt(l.queries, 100);
}

Test(redteam16, a_server_refusing_the_token_mid_pool_twice_gives_no_client_error)
{
    refused_mid_pool("lp_rt16_4", 2);
}

/* The same, once only: the forced refresh serves every waiting client. */
Test(redteam16, a_server_refusing_the_token_mid_pool_once_gives_no_client_error)
{
    refused_mid_pool("lp_rt16_5", 1);
}

/* The workspace's /Me answers badly (5xx, malformed JSON, no userName, 20 MB, no answer):
 * each login gets a clear 08006 naming the workspace (never 28P01, never a crash), the bad
 * answer is not cached as a refusal, and the same token logs in as soon as it answers well. */
Test(redteam16, bad_workspace_answers_to_a_token_check_are_clear_and_not_cached)
{
    static const char *const modes[] = {"500", "badjson", "missing", "huge", "timeout"};
    char v[200], err[600];
    start_tokens("lp_tok6");
    served_as("ana@example.com", tok_ana, v, sizeof(v), err, sizeof(err)); /* pool token in */
    cr_assert_str_eq(v, "ok:lp_tok6", "%s", err);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        char tok[100], users[600];
        snprintf(tok, sizeof(tok), "case-%zu-%d-token-abcdefgh", i, getpid());
        snprintf(users, sizeof(users), "{\"%s\": {\"userName\": \"ana@example.com\"}}", tok);
        mockws_users(&mock, users);
        mockws_mode(&mock, modes[i]);
        double t0 = now_s();
        served_as("ana@example.com", tok, v, sizeof(v), err, sizeof(err));
        cr_expect_str_eq(v, "", "%s: logged in", modes[i]);
        cr_expect(strstr(err, "could not check the Databricks token"), "%s: unclear: %s", modes[i],
                  err);
        cr_expect_lt(now_s() - t0, 5.0, "%s: the login took %.1f s", modes[i], now_s() - t0);
        cr_assert_eq(kill(px.pid, 0), 0, "lakeproxy died at mode %s", modes[i]);
        mockws_mode(&mock, "ok");
        served_as("ana@example.com", tok, v, sizeof(v), err, sizeof(err));
        cr_expect_str_eq(v, "ok:lp_tok6", "%s: the good token stays refused: %s", modes[i], err);
    }
}

/* The token file is replaced by a link to /dev/zero, a FIFO nobody writes, a world-readable
 * file and a 30 MB file: each a clear error, no hang, the valid token serving on. */
Test(redteam16, a_token_file_swapped_for_devices_fifos_or_giants_never_hangs)
{
    char last[400], side[450];
    proxy_start_file("{\"token\": \"server-secret\", \"expires_in\": 3600}\n");
    cr_assert(wait_credential(&px, "carol", 4000, "", last, sizeof(last)), "%s", last);
    snprintf(side, sizeof(side), "%s.side", tokfile);
    static const char *const kinds[] = {"devzero", "fifo", "world", "giant"};
    for (size_t i = 0; i < 4; i++) {
        unlink(side);
        if (i == 0) {
            cr_assert_eq(symlink("/dev/zero", side), 0);
        } else if (i == 1) {
            cr_assert_eq(mkfifo(side, 0600), 0);
        } else {
            FILE *f = fopen(side, "w");
            cr_assert(f);
            fputs("{\"token\": \"server-secret\", \"expires_in\": 3600}\n", f);
            if (i == 3)
                for (int k = 0; k < 30 * 1024; k++)
                    fprintf(f, "%1023s\n", "");
            fclose(f);
            chmod(side, i == 2 ? 0644 : 0600);
        }
        cr_assert_eq(rename(side, tokfile), 0);
        cr_expect(wait_credential(&px, "carol", 5000, "?", last, sizeof(last)) || last[0],
                  "%s: no error shown", kinds[i]);
        double t0 = now_s();
        PGconn *c = proxy_connect(&px, "carol", "x", "lake", NULL);
        char *v = PQstatus(c) == CONNECTION_OK ? query_value(c, "SELECT current_user") : NULL;
        cr_expect(v && strcmp(v, "lp_server") == 0, "%s: the valid token did not serve: %s",
                  kinds[i], PQerrorMessage(c));
        cr_expect_lt(now_s() - t0, 2.0, "%s: a login took %.1f s", kinds[i], now_s() - t0);
        free(v);
        PQfinish(c);
        cr_assert_eq(kill(px.pid, 0), 0, "lakeproxy died at %s", kinds[i]);
        fprintf(stderr, "rt16 file %s: %s\n", kinds[i], last);
    }
    unlink(tokfile);
}

/* A reload points the credential at a wrong client secret (the workspace answers 401): the
 * token in use serves on under load (no client error), the error is shown, the secret never
 * logged; a reload back heals it. */
Test(redteam16, a_reload_to_a_broken_provider_keeps_the_token_in_use_serving)
{
    char last[400];
    mockws_start(&mock, "lp_rt16_6", "600");
    setenv("LP_RT16_WRONG", "not-the-secret-QQQ", 1); /* in lakeproxy's environment */
    proxy_start_lake("lp_rt16_6", 1, 2000, NULL);
    PGconn *first = proxy_connect(&px, "carol", "x", "lake", NULL);
    cr_assert_eq(PQstatus(first), CONNECTION_OK, "%s", PQerrorMessage(first));
    PQfinish(first);
    struct load_result l;
    struct load *ld = load_start(&px, "carol", "lake", 6, &l);
    usleep(500000);
    secret_env = "LP_RT16_WRONG";
    proxy_start_lake("lp_rt16_6", 1, 2000, NULL); /* reload: the credential is replaced */
    bool shown = wait_credential(&px, "carol", 5000, "401", last, sizeof(last));
    usleep(1500000);
    struct load_result mid = load_now(ld);
    secret_env = "LP_TEST_CLIENT_SECRET";
    proxy_start_lake("lp_rt16_6", 1, 2000, NULL); /* reload back */
    bool healed = wait_credential(&px, "carol", 5000, "", last, sizeof(last));
    usleep(1000000);
    load_stop(ld);
    fprintf(stderr, "rt16 broken reload: %d queries %d errors\n", l.queries, l.errors);
    cr_expect(shown, "the broken provider's error was not shown: \"%s\"", last);
    cr_expect(healed, "no recovery after the reload back: \"%s\"", last);
    cr_expect_eq(mid.errors, 0, "with the broken provider clients saw %d errors, first: %s",
                 mid.errors, mid.first_error);
    cr_expect_eq(l.errors, 0, "clients saw %d errors, first: %s", l.errors, l.first_error);
    cr_expect_eq(file_count_lines(px.log, "not-the-secret"), 0, "the secret reached the log");
}
