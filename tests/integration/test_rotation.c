/* test_rotation.c: rotating server credentials. The real PostgreSQL plays Lakebase: each
 * minted token becomes the role's only password until it expires (tests/lib/mint_token.sh,
 * run by the `command` provider), so a server login succeeds only with the current token.
 * Clients must see no error across many rotations, through a provider outage while a token
 * is still valid, and after a revoked password; when no valid token is left they get a clear
 * error, and service resumes by itself when the provider answers again. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static struct proxy px;
static char mint_log[400], fail_flag[400], role[16];

/* The configuration of lakeproxy on port with a transaction pool "rot" logging in as
 * lp_rot<n> (a role of its own: tests run in parallel); cred is the body of its credentials:
 * mapping. start_rot_yaml starts lakeproxy with it. */
static const char *rot_yaml(int n, int port, int pool_size, int lifetime_s, const char *cred)
{
    static char yaml[4096];
    snprintf(role, sizeof(role), "lp_rot%d", n);
    snprintf(yaml, sizeof(yaml),
             "listen: {host: 127.0.0.1, port: %d}\n"
             "log: {level: info}\n"
             "admin: {users: [carol]}\n"
             "databases:\n"
             "  rot:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n    user: %s\n"
             "    tls: disable\n"
             "    pool: {mode: transaction, size: %d, max_wait_ms: 8000, lifetime_s: %d}\n"
             "    credentials:\n%s"
             "users:\n  carol: {auth: trust}\n",
             port, env_need("LP_PGPORT"), role, pool_size, lifetime_s, cred);
    return yaml;
}

static void start_rot_yaml(int n, int port, int pool_size, int lifetime_s, const char *cred)
{
    proxy_start_yaml(&px, port, rot_yaml(n, port, pool_size, lifetime_s, cred));
}

/* The rot pool with tokens from mint_token.sh living life_s seconds; extra_cred adds keys. */
static void start_rotating(int n, int life_s, int pool_size, int lifetime_s, const char *extra_cred)
{
    char cred[1200];
    int port = free_port();
    snprintf(mint_log, sizeof(mint_log), "%s/mint-%d.log", env_need("LP_TEST_DIR"), port);
    snprintf(fail_flag, sizeof(fail_flag), "%s/mint-%d.fail", env_need("LP_TEST_DIR"), port);
    setenv("LP_MINT_FAIL", fail_flag, 1);
    snprintf(cred, sizeof(cred),
             "      provider: command\n"
             "      command: [bash, %s/tests/lib/mint_token.sh, lp_rot%d, \"%d\", %s]\n"
             "      timeout_ms: 5000\n%s",
             env_need("LP_ROOT"), n, life_s, mint_log, extra_cred ? extra_cred : "");
    start_rot_yaml(n, port, pool_size, lifetime_s, cred);
}

static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(rotation, .fini = stop_proxy, .timeout = 150);

static PGconn *connect_rot(void)
{
    PGconn *c = proxy_connect(&px, "carol", "unused", "rot", "connect_timeout=10");
    cr_assert(PQstatus(c) == CONNECTION_OK, "login failed: %s", PQerrorMessage(c));
    return c;
}

Test(rotation, ten_rotations_under_load_without_a_client_error)
{
    /* tokens live 4 s (refreshed at half-life: every 2 s); servers live 2 s, so new logins
     * keep needing the current token */
    start_rotating(1, 4, 4, 2, "      refresh_percent: 50\n");
    struct load_result l;
    load_run(&px, "carol", "rot", 8, 24, &l);
    int minted = file_count_lines(mint_log, " ");
    int logins = file_count_lines(px.log, "logged in as lp_rot1");
    int refused = file_count_lines(px.log, "refused token");
    int retired = file_count_lines(px.log, "closing: lifetime reached");
    fprintf(stderr,
            "rotation under load: %d queries, %d client errors, %d tokens minted, %d server "
            "logins, %d refused-token retries, %d servers retired at their lifetime\n",
            l.queries, l.errors, minted, logins, refused, retired);
    cr_expect_eq(l.errors, 0, "clients saw %d errors, first: %s", l.errors, l.first_error);
    cr_expect_geq(minted, 10, "only %d rotations", minted);
    cr_expect_geq(logins, 10, "only %d server logins", logins);
    cr_expect_geq(retired, 5, "old servers were not replaced");
    cr_expect_gt(l.queries, 1000);
}

/* The longest run of base64url characters in the file at path: a logged token shows up as
 * one of thousands. */
static size_t longest_token_run(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t run = 0, best = 0;
    int ch;
    cr_assert(f, "cannot read %s", path);
    while ((ch = fgetc(f)) != EOF) {
        bool tok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                   (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
        run = tok ? run + 1 : 0;
        best = run > best ? run : best;
    }
    fclose(f);
    return best;
}

Test(rotation, admin_console_shows_the_credential_without_the_token)
{
    start_rotating(2, 30, 2, 0, NULL);
    PGconn *c = connect_rot();
    free(query_value(c, "SELECT 1"));
    PGconn *adm = proxy_connect(&px, "carol", "unused", "lakeproxy", NULL);
    cr_assert(PQstatus(adm) == CONNECTION_OK, "%s", PQerrorMessage(adm));
    PGresult *r = PQexec(adm, "SHOW CREDENTIALS");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(adm));
    cr_assert_eq(PQntuples(r), 1);
    cr_expect_str_eq(PQgetvalue(r, 0, PQfnumber(r, "database")), "rot");
    cr_expect_str_eq(PQgetvalue(r, 0, PQfnumber(r, "provider")), "command");
    cr_expect_str_eq(PQgetvalue(r, 0, PQfnumber(r, "state")), "valid");
    cr_expect_eq(strlen(PQgetvalue(r, 0, PQfnumber(r, "token"))), 8, "a fingerprint only");
    int in = atoi(PQgetvalue(r, 0, PQfnumber(r, "expires_in_s")));
    cr_expect(in > 20 && in <= 30, "expires_in_s %d", in);
    cr_expect_str_eq(PQgetvalue(r, 0, PQfnumber(r, "refreshes_ok")), "1");
    PQclear(r);
    PQfinish(adm);
    PQfinish(c);
    /* the token (4096 characters of [A-Za-z0-9_-]) is never logged, not even in part */
    cr_expect_lt(longest_token_run(px.log), 64);
}

/* Ends every backend of the test's role, so the next query needs a new server login. */
static void kill_rot_backends(void)
{
    char sql[200];
    PGconn *a = pg_admin("postgres");
    snprintf(sql, sizeof(sql),
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
             "WHERE usename = '%s'",
             role);
    free(query_value(a, sql));
    PQfinish(a);
    usleep(200000);
}

/* The token provider of start_rotating fails from now on (until fail_flag is removed). */
static void provider_down(void)
{
    FILE *f = fopen(fail_flag, "w");
    cr_assert(f);
    fclose(f);
}

Test(rotation, outage_keeps_service_while_the_token_is_valid_then_fails_clearly_then_resumes)
{
    start_rotating(3, 6, 2, 0, NULL);
    PGconn *c = connect_rot();
    free(query_value(c, "SELECT 1"));
    provider_down();
    for (int i = 0; i < 30; i++) { /* 3 s: refreshes fail, the token is still valid */
        free(query_value(c, "SELECT 1"));
        usleep(100000);
    }
    kill_rot_backends(); /* a new login with the still-valid token works */
    char *v = query_value(c, "SELECT count(*) FROM items");
    cr_expect_str_eq(v, "1000");
    free(v);
    sleep(4); /* now the token has expired */
    kill_rot_backends();
    PGresult *r = PQexec(c, "SELECT 1");
    const char *msg = PQerrorMessage(c);
    cr_expect(strstr(msg, "no valid credential") && strstr(msg, "provider command") &&
                  strstr(msg, "token service unavailable"),
              "unclear error: %s", msg);
    PQclear(r);
    PQfinish(c);
    int fd = raw_session(px.port, "carol", "rot"); /* the SQLSTATE, as it is on the wire */
    cr_assert_geq(fd, 0);
    raw_query(fd, "SELECT 1");
    cr_expect_str_eq(raw_expect_error(fd), "08006");
    close(fd);
    unlink(fail_flag); /* the provider is back: service resumes without a restart */
    bool served = false;
    for (int i = 0; i < 50 && !served; i++) {
        c = connect_rot();
        r = PQexec(c, "SELECT count(*) FROM items");
        served = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "1000") == 0;
        PQclear(r);
        PQfinish(c);
        if (!served)
            usleep(200000);
    }
    cr_expect(served, "service did not resume within 10 s of the provider's return");
}

/* An auth review: during an outage of the token provider, servers were still retired at
 * pool.lifetime_s, and once the last token had expired no replacement could log in: clients
 * lost service that the open connections could have gone on giving (PostgreSQL checks a
 * token at login only). A server past its lifetime now serves on while no credential could
 * log its replacement in, and is replaced once one can. */
Test(rotation, servers_outlive_their_lifetime_while_no_token_could_replace_them)
{
    start_rotating(11, 4, 1, 1, NULL);
    PGconn *c = connect_rot();
    free(query_value(c, "SELECT 1"));
    provider_down();
    int failed = 0;
    for (int i = 0; i < 40; i++) { /* 8 s: the token (4 s) expires, lifetimes (1 s) pass */
        PGresult *r = PQexec(c, "SELECT 1");
        if (PQresultStatus(r) != PGRES_TUPLES_OK && failed++ == 0)
            cr_expect(false, "query %d during the outage: %s", i, PQerrorMessage(c));
        PQclear(r);
        if (PQstatus(c) != CONNECTION_OK)
            break;
        usleep(200000);
    }
    cr_expect_eq(failed, 0, "the open server serves on past its lifetime");
    unlink(fail_flag); /* the provider is back: the old server is replaced */
    char last[300];
    /* (the next retry may be up to 8 s away, 16 s after a sixth failure: 8 s for a token to
     * come back missed it by 70 ms under the sanitizers) */
    cr_expect(wait_credential(&px, "carol", 20000, "", last, sizeof(last)), "%s", last);
    usleep(1500000);
    if (PQstatus(c) == CONNECTION_OK)
        EXPECT_QUERY_VALUE(c, "SELECT count(*) FROM items", "1000", "after the outage");
    cr_expect_geq(file_count_lines(px.log, "lifetime reached"), 1, "replaced once it could be");
    PQfinish(c);
}

/* The times (ms since midnight) of the log lines of path containing needle, up to max. */
static int log_times_ms(const char *path, const char *needle, long *out, int max)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int n = 0, h, m;
    double sec;
    cr_assert(f, "cannot read %s", path);
    while (n < max && fgets(line, sizeof(line), f))
        if (strstr(line, needle) && sscanf(line, "%*d-%*d-%*d %d:%d:%lf", &h, &m, &sec) == 3)
            out[n++] = (long)((h * 60 + m) * 60000L + (long)(sec * 1000 + 0.5));
    fclose(f);
    return n;
}

/* A review: once a token provider's outage ended, every server kept past its lifetime was
 * retired at once: a burst of logins at the moment the provider had just come back. They go
 * one by one now, a spacing apart (here 5 s / 5 / 3 servers = 333 ms; the janitor's second). */
Test(rotation, after_an_outage_servers_past_their_lifetime_are_replaced_one_by_one)
{
    /* tokens of 4 s, refreshed at 3 s (that refresh fails: the outage begins), lifetimes of
     * 4-5 s (its jitter): they pass during the outage */
    start_rotating(17, 4, 3, 5, NULL);
    PGconn *c[3];
    for (int i = 0; i < 3; i++) { /* three servers, idle once each client commits */
        c[i] = connect_rot();
        free(query_value(c[i], "BEGIN"));
    }
    for (int i = 0; i < 3; i++) {
        free(query_value(c[i], "COMMIT"));
        PQfinish(c[i]);
    }
    provider_down();
    sleep(6); /* the token expires and the lifetimes pass: the servers stay */
    cr_expect_eq(file_count_lines(px.log, "lifetime reached"), 0, "kept during the outage");
    unlink(fail_flag);
    char last[300];
    cr_expect(wait_credential(&px, "carol", 20000, "", last, sizeof(last)), "%s", last);
    long t[8];
    int n = 0;
    for (int i = 0; i < 60 && (n = log_times_ms(px.log, "lifetime reached", t, 8)) < 3; i++)
        usleep(100000);
    cr_assert_geq(n, 3, "all three replaced within 6 s of the provider's return: %d", n);
    for (int i = 1; i < n; i++)
        cr_expect_geq(t[i] - t[i - 1], 320, "retirement %d came %ld ms after the one before", i,
                      t[i] - t[i - 1]);
}

/* An auth review: a new token the server refused (one it does not take yet) replaced the
 * previous one, still valid, and after one forced refresh (refused too) every waiting client
 * got 28P01. The previous token is put back while it is valid, and a new one asked for. */
Test(rotation, a_refused_new_token_falls_back_to_the_previous_one)
{
    char late[400];
    snprintf(late, sizeof(late), "%s/mint-late-%d", env_need("LP_TEST_DIR"), getpid());
    setenv("LP_MINT_LATE", late, 1);
    start_rotating(12, 8, 1, 0, NULL);
    unsetenv("LP_MINT_LATE");
    PGconn *c = connect_rot();
    free(query_value(c, "SELECT 1"));
    FILE *f = fopen(late, "w"); /* new tokens are printed but not taken by the server */
    cr_assert(f);
    fclose(f);
    for (int i = 0; i < 100 && file_count_lines(px.log, "new token") < 2; i++)
        usleep(100000); /* the refresh, at 80% of 8 s */
    cr_assert_geq(file_count_lines(px.log, "new token"), 2, "no refresh came");
    kill_rot_backends(); /* the next login tries the new token */
    EXPECT_QUERY_VALUE(c, "SELECT count(*) FROM items", "1000", "served with the previous token");
    cr_expect_eq(file_count_lines(px.log, "back to token"), 1);
    unlink(late); /* the server takes new tokens again: the one asked for 5 s later serves */
    int before = file_count_lines(px.log, "new token");
    for (int i = 0; i < 100 && file_count_lines(px.log, "new token") == before; i++)
        usleep(100000);
    kill_rot_backends();
    EXPECT_QUERY_VALUE(c, "SELECT count(*) FROM items", "1000", "served with the next token");
    cr_expect_eq(file_count_lines(px.log, "back to token"), 1, "no fall-back since");
    PQfinish(c);
}

Test(rotation, a_revoked_password_is_refreshed_once_and_the_client_never_knows)
{
    start_rotating(4, 60, 2, 0, NULL);
    PGconn *c = connect_rot();
    free(query_value(c, "SELECT 1"));
    PGconn *a = pg_admin("postgres");
    char sql[100];
    snprintf(sql, sizeof(sql), "ALTER ROLE %s PASSWORD 'revoked-by-admin'", role);
    free(query_value(a, sql));
    PQfinish(a);
    kill_rot_backends();
    int minted = file_count_lines(mint_log, " ");
    char *v = query_value(c, "SELECT count(*) FROM items");
    cr_expect_str_eq(v, "1000");
    free(v);
    cr_expect_eq(file_count_lines(mint_log, " "), minted + 1, "one immediate refresh");
    cr_expect_geq(file_count_lines(px.log, "refused token"), 1);
    PQfinish(c);
}

/* Writes text to path atomically (temporary file, then rename), as token agents do, with
 * mode (0600 for a token: lakeproxy refuses one every user may read). */
static void write_file_mode(const char *path, const char *text, mode_t mode)
{
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert(f, "cannot write %s", tmp);
    fputs(text, f);
    fclose(f);
    cr_assert_eq(chmod(tmp, mode), 0);
    cr_assert_eq(rename(tmp, path), 0);
}

static void write_file(const char *path, const char *text)
{
    write_file_mode(path, text, 0600);
}

/* Sets role r's password (a superuser connection). */
static void set_password(const char *r, const char *pw)
{
    char sql[200];
    PGconn *a = pg_admin("postgres");
    snprintf(sql, sizeof(sql), "ALTER ROLE %s PASSWORD '%s'", r, pw);
    free(query_value(a, sql));
    PQfinish(a);
}

/* Starts the rot pool of lp_rot<n> (pool_size servers) with the file provider: a file named
 * name (its path into path) holding token, the role's password. Returns lakeproxy's port. */
static int start_with_token_file(int n, const char *name, const char *token, int pool_size,
                                 char *path, size_t pathsz)
{
    char cred[600], text[200], r[32];
    int port = free_port();
    snprintf(path, pathsz, "%s/%s-%d", env_need("LP_TEST_DIR"), name, getpid());
    snprintf(text, sizeof(text), "%s\n", token);
    write_file(path, text);
    snprintf(r, sizeof(r), "lp_rot%d", n);
    set_password(r, token);
    snprintf(cred, sizeof(cred), "      provider: file\n      path: %s\n", path);
    start_rot_yaml(n, port, pool_size, 0, cred);
    return port;
}

Test(rotation, a_token_file_is_reread_when_it_changes)
{
    char path[400];
    start_with_token_file(5, "token-file", "first-token-aaaa", 2, path, sizeof(path));
    PGconn *c = connect_rot();
    free(query_value(c, "SELECT 1"));
    write_file(path, "{\"token\": \"second-token-bbbb\", \"expires_in\": 3600}\n");
    set_password("lp_rot5", "second-token-bbbb");
    usleep(1500000); /* the file is checked once a second */
    kill_rot_backends();
    char *v = query_value(c, "SELECT count(*) FROM items");
    cr_expect_str_eq(v, "1000");
    free(v);
    cr_expect_eq(file_count_lines(px.log, "new token"), 2);
    cr_expect_eq(file_count_lines(px.log, "bbbb"), 0, "the token is never logged");
    PQfinish(c);
    unlink(path);
}

/* An auth review: the token went to a server that asked for it in clear text whatever the
 * connection's TLS: under tls: prefer, someone in the middle who declines the SSLRequest and
 * asks for a cleartext password reads it. A credential token goes in clear text over TLS
 * only; lp_plain logs in with a cleartext password (pg_hba "password"). */
/* A review of side look-ups waiting for a token: when none could be had at all (a file
 * provider's token expired), a masking catalog read failed before it started, and a masked
 * client whose result named a table the catalog did not know yet waited for good, holding
 * its server. It is told the catalog could not be read. */
Test(rotation, a_masked_result_is_refused_not_held_when_the_catalog_cannot_be_read)
{
    char path[400], cred[1200], json[300], until[64];
    int port = free_port();
    time_t t = time(NULL) + 4;
    strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    snprintf(path, sizeof(path), "%s/expiring-%d", env_need("LP_TEST_DIR"), getpid());
    snprintf(json, sizeof(json),
             "{\"token\": \"expiring-token-eeee\", \"expiration_time\": \"%s\"}\n", until);
    write_file(path, json);
    set_password("lp_rot18", "expiring-token-eeee");
    snprintf(cred, sizeof(cred),
             "      provider: file\n      path: %s\n"
             "masking: {databases: [rot], rules: [{column: public.customers.ssn, function: "
             "last4}]}\n",
             path);
    start_rot_yaml(18, port, 1, 0, cred);
    PGconn *c = connect_rot();
    EXPECT_QUERY_VALUE(c, "SELECT count(*) FROM items", "1000", "served while the token lasts");
    PGconn *a = pg_admin("lp_test");
    free(query_value(a, "CREATE TABLE lp_after_token (x int)"));
    free(query_value(a, "GRANT SELECT ON lp_after_token TO PUBLIC"));
    sleep(5); /* the token expires; the open server goes on */
    cr_assert(PQsendQuery(c, "SELECT x FROM lp_after_token"), "%s", PQerrorMessage(c));
    PGresult *r = query_result_within(c, 8);
    cr_assert(r, "no answer within 8 s: the client was held");
    cr_expect_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
    PQclear(r);
    /* (the refusal, 42501, closes the connection: the last result is that) */
    cr_expect_eq(file_count_lines(px.log,
                                  "42501: cannot tell whether result column \"x\" is masked "
                                  "(the masking catalog could not be read)"),
                 1);
    PQfinish(c);
    free(query_value(a, "DROP TABLE lp_after_token"));
    PQfinish(a);
    unlink(path);
}

/* A review: a token file (or a client secret file) every user of the machine could read was
 * used as it was. It is refused with what to do; once its mode is fixed, it is read. */
Test(rotation, a_token_file_every_user_can_read_is_refused)
{
    char path[400], last[300];
    start_with_token_file(16, "open-token", "open-token-dddd", 1, path, sizeof(path));
    write_file_mode(path, "open-token-dddd\n", 0644); /* read again within a second */
    cr_expect(wait_credential(&px, "carol", 8000, "can be read by every user (mode 0644)", last,
                              sizeof(last)),
              "SHOW CREDENTIALS says why: %s", last);
    cr_expect(strstr(last, "chmod o-rwx"), "and what to do: %s", last);
    write_file_mode(path, "open-token-dddd\n", 0640); /* its group may read it */
    cr_expect(wait_credential(&px, "carol", 8000, "", last, sizeof(last)), "%s", last);
    kill_rot_backends(); /* the next login needs the token */
    PGconn *c = connect_rot();
    EXPECT_QUERY_VALUE(c, "SELECT count(*) FROM items", "1000", "served once the mode is fixed");
    PQfinish(c);
    unlink(path);
}

Test(rotation, a_token_is_never_sent_in_clear_text_without_tls)
{
    char path[400], yaml[2048];
    snprintf(path, sizeof(path), "%s/plain-token-%d", env_need("LP_TEST_DIR"), getpid());
    write_file(path, "plain-secret\n");
    for (int tls = 0; tls < 2; tls++) {
        int port = free_port();
        snprintf(yaml, sizeof(yaml),
                 "listen: {host: 127.0.0.1, port: %d}\n"
                 "databases:\n"
                 "  plain:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n"
                 "    user: lp_plain\n    tls: %s\n"
                 "    pool: {mode: transaction, size: 1, max_wait_ms: 3000}\n"
                 "    credentials: {provider: file, path: %s}\n"
                 "users:\n  carol: {auth: trust}\n",
                 port, env_need("LP_PGPORT"), tls ? "require" : "disable", path);
        proxy_start_yaml(&px, port, yaml);
        if (tls) {
            PGconn *c = proxy_connect(&px, "carol", "unused", "plain", "connect_timeout=10");
            cr_assert(PQstatus(c) == CONNECTION_OK, "over TLS: %s", PQerrorMessage(c));
            EXPECT_QUERY_VALUE(c, "SELECT current_user", "lp_plain", "the token works over TLS");
            PQfinish(c);
        } else { /* (raw: the message as it is on the wire) */
            char state[6], msg[512];
            cr_expect_not(raw_login(px.port, "carol", NULL, "plain", state, msg, sizeof(msg)));
            cr_expect(strstr(msg, "without TLS") != NULL, "no TLS: %s %s", state, msg);
        }
        proxy_stop(&px);
    }
    unlink(path);
}

/* An auth review: a reload that changed a database's credential provider dropped the token in
 * use at once, so a new provider that failed from the start (a secret file's path mistyped)
 * left no token, and new server logins failed, though the old token was valid. It serves on
 * until the new provider answers. */
Test(rotation, a_reload_to_a_failing_provider_keeps_the_token_in_use)
{
    char path[400], cred[600];
    int port =
        start_with_token_file(13, "reload-token", "reload-token-cccc", 1, path, sizeof(path));
    PGconn *c = connect_rot();
    free(query_value(c, "SELECT 1"));
    snprintf(cred, sizeof(cred), "      provider: file\n      path: %s.missing\n", path);
    proxy_reload_yaml(&px, rot_yaml(13, port, 1, 0, cred));
    char last[300];
    cr_expect(wait_credential(&px, "carol", 8000, ".missing", last, sizeof(last)),
              "the new provider's failure is shown: %s", last);
    kill_rot_backends(); /* the next login needs a token */
    EXPECT_QUERY_VALUE(c, "SELECT count(*) FROM items", "1000", "the token in use serves on");
    PQfinish(c);
    unlink(path);
}

/* The rot pool (role lp_rot<n>) with 60 s tokens from mint_token.sh run by the shell after
 * `before` (shell commands); extra: YAML after the credentials (more databases, top-level
 * sections). */
static void start_shell_minting(int n, const char *before, const char *extra)
{
    char cred[2000];
    int port = free_port();
    snprintf(mint_log, sizeof(mint_log), "%s/mint-%d.log", env_need("LP_TEST_DIR"), port);
    snprintf(cred, sizeof(cred),
             "      provider: command\n"
             "      shell: '%s exec bash %s/tests/lib/mint_token.sh lp_rot%d 60 %s'\n"
             "      timeout_ms: 5000\n%s",
             before, env_need("LP_ROOT"), n, mint_log, extra);
    start_rot_yaml(n, port, 1, 0, cred);
}

/* A review: a credential command inherited the whole environment of lakeproxy, secrets
 * included (a Databricks client secret, the masking hash key). It runs without the
 * variables the configuration names as secrets; others pass (mint_token.sh reads
 * LP_MINT_FAIL). */
Test(rotation, a_command_runs_without_the_configurations_secret_variables)
{
    snprintf(fail_flag, sizeof(fail_flag), "%s/mint-14.fail", env_need("LP_TEST_DIR"));
    setenv("LP_MINT_FAIL", fail_flag, 1);
    setenv("LP_HIDDEN_SECRET", "dbx-client-secret-never-for-commands", 1);
    setenv("LP_HIDDEN_KEY", "hash-key-never-for-commands-0123456789", 1);
    start_shell_minting(14,
                        "env | grep -q LP_HIDDEN && { echo a secret was inherited >&2; exit 3; };",
                        "  lake:\n    host: 127.0.0.1\n    user: u\n"
                        "    credentials: {provider: databricks, workspace: 'https://127.0.0.1:9', "
                        "client_id: c, client_secret_env: LP_HIDDEN_SECRET, instance: i}\n"
                        "masking: {databases: [rot], hash_key_env: LP_HIDDEN_KEY, rules: [{column: "
                        "public.customers.ssn, function: hash}]}\n");
    unsetenv("LP_HIDDEN_SECRET");
    unsetenv("LP_HIDDEN_KEY");
    PGconn *c = connect_rot();
    EXPECT_QUERY_VALUE(c, "SELECT count(*) FROM items", "1000", "the command's token logs in");
    PQfinish(c);
    cr_expect_eq(file_count_lines(px.log, "a secret was inherited"), 0);
}

/* A review: side connections (the masking catalog, auth_query, table sizes) took the
 * database's credential as it was when they started: none while a rotating credential's
 * first token was on its way, just after start. The first masked client's statements were
 * refused ("cannot read the masking catalog ... no password supplied") and auth_query users
 * could not log in. They wait for the token now. */
Test(rotation, side_look_ups_wait_for_the_first_token)
{
    start_shell_minting(15, "sleep 1;",
                        "auth_query: {database: rot, query: 'SELECT usename, passwd FROM "
                        "public.lp_lookup($1)'}\n"
                        "masking: {databases: [rot], rules: [{column: public.customers.ssn, "
                        "function: last4}]}\n");
    /* at once: the first token is a second away */
    PGconn *d = proxy_connect(&px, "lp_dave", "dave-secret", "rot", "connect_timeout=10");
    cr_assert(PQstatus(d) == CONNECTION_OK, "auth_query login: %s", PQerrorMessage(d));
    EXPECT_QUERY_VALUE(d, "SELECT count(*) FROM items", "1000", "a masked client's first query");
    PQfinish(d);
    cr_expect_eq(file_count_lines(px.log, "no password supplied"), 0);
}

Test(rotation, bad_provider_answers_are_clear_errors_and_never_crash)
{
    static const struct {
        const char *mode, *error;
    } cases[] = {
        {"badjson", "malformed JSON"},
        {"missing", "no \"access_token\""},
        {"huge", "output exceeds"},
        {"slow", "no answer within 1000 ms"},
        {"empty", "empty output"},
        {"crash", "segfault in token helper"}, /* stderr is quoted */
        /* an answer that expired already was installed and fetched again every second, with
         * no error; one claiming 8,000 years was never refreshed ahead of time */
        {"expired", "clock ahead"},
        {"forever", "more than ten years"},
        /* jansson's message quotes the input near the fault: a secret there reached the log,
         * the admin console and clients' errors */
        {"leaky", "malformed JSON at line 1"},
    };
    char modefile[400], cred[800], last[300];
    snprintf(modefile, sizeof(modefile), "%s/mode-%d", env_need("LP_TEST_DIR"), getpid());
    write_file(modefile, "ok");
    snprintf(cred, sizeof(cred),
             "      provider: command\n"
             "      shell: \"bash %s/tests/lib/bad_token.sh %s lp_rot6 30\"\n"
             "      timeout_ms: 1000\n      refresh_percent: 10\n",
             env_need("LP_ROOT"), modefile);
    start_rot_yaml(6, free_port(), 2, 0, cred);
    PGconn *c = connect_rot();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_file(modefile, cases[i].mode);
        cr_expect(wait_credential(&px, "carol", 8000, cases[i].error, last, sizeof(last)),
                  "%s: last_error \"%s\", want \"%s\"", cases[i].mode, last, cases[i].error);
        cr_expect(!strstr(last, "Sup3rS3cret"), "%s: the answer's text is quoted: %s",
                  cases[i].mode, last);
        char *v = query_value(c, "SELECT count(*) FROM items"); /* the valid token serves on */
        cr_expect_str_eq(v, "1000");
        free(v);
        write_file(modefile, "ok");
        cr_expect(wait_credential(&px, "carol", 8000, "", last, sizeof(last)),
                  "%s: did not recover: %s", cases[i].mode, last);
    }
    PQfinish(c);
    unlink(modefile);
}
