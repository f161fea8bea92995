/* test_admin.c: the admin console answers SHOW POOLS/CLIENTS/SERVERS/STATS/CONFIG, RELOAD,
 * PAUSE and RESUME as ordinary result sets, to admin users only, and never shows a secret. */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "buf.h"
#include "harness.h"
#include "proto.h"
#include "rawproto.h"

static struct proxy px;

static void start_with_admin(void)
{
    proxy_start_with(&px, "transaction", 2, 5000, "admin:\n  users: [alice, carol]\n");
}
static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(admin, .init = start_with_admin, .fini = stop_proxy, .timeout = 60);

static PGconn *console(void)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "lakeproxy", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

static PGconn *app(void)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* The value in column col of the first row whose column key_col equals key, or NULL. */
static char *cell(PGresult *r, const char *key_col, const char *key, const char *col)
{
    int k = PQfnumber(r, key_col), v = PQfnumber(r, col);
    cr_assert(k >= 0 && v >= 0, "no column %s or %s", key_col, col);
    for (int i = 0; i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, k), key) == 0)
            return PQgetvalue(r, i, v);
    return NULL;
}

static PGresult *show(PGconn *c, const char *what)
{
    PGresult *r = PQexec(c, what);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", what, PQerrorMessage(c));
    return r;
}

/* Reloads the suite's configuration with admin.users [admins] and the first `old` in it (when
 * not NULL) replaced by `new`. */
static void reload_edited(const char *admins, const char *old, const char *new)
{
    static char yaml[8192], admin[128], edited[8400];
    snprintf(admin, sizeof(admin), "admin:\n  users: [%s]\n", admins);
    proxy_default_yaml(yaml, sizeof(yaml), px.port, "transaction", 2, 5000, admin);
    char *at = old ? strstr(yaml, old) : NULL;
    cr_assert(!old || at, "no \"%s\" in the configuration", old);
    if (at)
        snprintf(edited, sizeof(edited), "%.*s%s%s", (int)(at - yaml), yaml, new, at + strlen(old));
    proxy_reload_yaml(&px, at ? edited : yaml);
}

Test(admin, show_pools_clients_servers_and_stats)
{
    PGconn *a = app(), *adm = console();
    free(query_value(a, "BEGIN"));
    char *pid = query_value(a, "SELECT pg_backend_pid()");
    PGresult *r = show(adm, "SHOW POOLS");
    cr_expect_str_eq(cell(r, "database", "app", "pool_mode"), "transaction");
    cr_expect_str_eq(cell(r, "database", "app", "cl_active"), "1");
    cr_expect_str_eq(cell(r, "database", "app", "sv_active"), "1");
    cr_expect_str_eq(cell(r, "database", "app", "pool_size"), "2");
    PQclear(r);
    r = show(adm, "show servers;");
    cr_expect_str_eq(cell(r, "backend_pid", pid, "state"), "active");
    PQclear(r);
    r = show(adm, "SHOW CLIENTS");
    cr_expect_geq(PQntuples(r), 2);
    cr_expect_not_null(cell(r, "database", "lakeproxy", "state"));
    PQclear(r);
    free(query_value(a, "COMMIT"));
    r = show(adm, "SHOW STATS");
    cr_expect_geq(atoi(cell(r, "database", "app", "total_query_count")), 3);
    cr_expect_geq(atoi(cell(r, "database", "app", "total_xact_count")), 1);
    PQclear(r);
    free(pid);
    PQfinish(a);
    PQfinish(adm);
}

Test(admin, show_config_never_shows_a_secret)
{
    PGconn *adm = console();
    PGresult *r = show(adm, "SHOW CONFIG");
    cr_expect_gt(PQntuples(r), 5);
    bool dumps_shown = false;
    for (int i = 0; i < PQntuples(r); i++)
        dumps_shown |= strcmp(PQgetvalue(r, i, 0), "limits.core_dumps") == 0 &&
                       strcmp(PQgetvalue(r, i, 1), "false") == 0;
    cr_expect(dumps_shown, "limits.core_dumps, false by default, is shown");
    for (int i = 0; i < PQntuples(r); i++)
        for (int j = 0; j < PQnfields(r); j++) {
            cr_expect_null(strstr(PQgetvalue(r, i, j), "secret"), "secret shown: %s",
                           PQgetvalue(r, i, j));
            cr_expect_null(strstr(PQgetvalue(r, i, j), "SCRAM-SHA-256$"));
        }
    PQclear(r);
    PQfinish(adm);
}

/* An entry with an allow: list shows who may use it; one without shows no such row. */
Test(admin, show_config_shows_who_may_use_a_restricted_entry)
{
    reload_edited("alice, carol", "  app_md5:\n",
                  "  app_md5:\n    allow: {users: [alice, carol], groups: [auditors]}\n");
    PGconn *adm = console();
    PGresult *r = show(adm, "SHOW CONFIG");
    char *allow = cell(r, "key", "databases.app_md5.allow", "value");
    cr_expect_str_eq(allow ? allow : "(no row)", "users=alice,carol groups=auditors");
    cr_expect_null(cell(r, "key", "databases.app.allow", "value"), "app is open to every user");
    PQclear(r);
    PQfinish(adm);
}

Test(admin, pause_holds_queries_until_resume)
{
    PGconn *a = app(), *adm = console();
    PGresult *r = PQexec(adm, "PAUSE app");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(adm));
    PQclear(r);
    cr_assert(PQsendQuery(a, "SELECT 'after resume'"));
    struct pollfd pfd = {.fd = PQsocket(a), .events = POLLIN};
    cr_expect_eq(poll(&pfd, 1, 500), 0, "a query ran while the pool was paused");
    r = PQexec(adm, "RESUME app");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(adm));
    PQclear(r);
    r = PQgetResult(a);
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(a));
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "after resume");
    PQclear(r);
    while ((r = PQgetResult(a)))
        PQclear(r);
    PQfinish(a);
    PQfinish(adm);
}

Test(admin, reload_and_unknown_commands)
{
    PGconn *adm = console();
    PGresult *r = PQexec(adm, "RELOAD");
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(adm));
    PQclear(r);
    cr_expect_str_eq(query_sqlstate(adm, "SHOW TABLES"), "42601");
    cr_expect_str_eq(query_sqlstate(adm, "DROP EVERYTHING"), "42601");
    cr_expect_str_eq(query_sqlstate(adm, "PAUSE nosuchdb"), "3D000");
    /* a review: anything after the command was ignored (SHUTDOWN now shut down) */
    cr_expect_str_eq(query_sqlstate(adm, "SHUTDOWN now"), "42601");
    cr_expect_str_eq(query_sqlstate(adm, "RELOAD now"), "42601");
    cr_expect_str_eq(query_sqlstate(adm, "PAUSE app extra"), "42601");
    cr_expect_str_eq(query_sqlstate(adm, "SHOW POOLS; SHOW STATS"), "42601");
    cr_expect_str_eq(query_sqlstate(adm, "PAUSE \"\""), "3D000");
    r = show(adm, "SHOW POOLS"); /* still usable */
    PQclear(r);
    PQfinish(adm);
}

/* An admin command over the console's 64 KiB was refused as over limits.max_message_size
 * (16 MiB), which is not the limit that applies. */
Test(admin, an_overlong_command_names_the_consoles_limit)
{
    PGconn *adm = console();
    size_t n = 100 * 1024;
    char *sql = malloc(n + 1);
    cr_assert(sql);
    memset(sql, ' ', n);
    memcpy(sql, "SHOW POOLS", 10);
    sql[n] = '\0';
    PGresult *r = PQexec(adm, sql);
    cr_expect(strstr(PQerrorMessage(adm), "at most 64 KiB"), "%s", PQerrorMessage(adm));
    PQclear(r);
    free(sql);
    PQfinish(adm);
}

/* A review found PAUSE "app" pausing every pool: the quoted name read as none. */
Test(admin, a_quoted_name_pauses_that_pool_only)
{
    PGconn *a = app(), *adm = console();
    PGconn *other = proxy_connect(&px, "alice", "alice-secret", "app_md5", NULL);
    cr_assert(PQstatus(other) == CONNECTION_OK, "%s", PQerrorMessage(other));
    free(query_value(other, "SELECT 1")); /* (the pools of app and app_md5 exist now) */
    PGresult *r = PQexec(adm, "PAUSE \"app\"");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(adm));
    PQclear(r);
    r = show(adm, "SHOW POOLS");
    int db = PQfnumber(r, "database"), paused = PQfnumber(r, "paused");
    cr_assert(db >= 0 && paused >= 0);
    int seen = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        bool is_app = strcmp(PQgetvalue(r, i, db), "app") == 0;
        cr_expect_str_eq(PQgetvalue(r, i, paused), is_app ? "yes" : "no", "%s",
                         PQgetvalue(r, i, db));
        seen += !is_app;
    }
    cr_expect_gt(seen, 0, "other pools to look at");
    PQclear(r);
    free(query_value(adm, "RESUME 'app'"));
    PQfinish(other);
    PQfinish(a);
    PQfinish(adm);
}

Test(admin, only_admin_users_get_in)
{
    char state[6], msg[256];
    cr_expect_not(raw_login(px.port, "bob", "bob-secret", "lakeproxy", state, msg, sizeof(msg)));
    cr_expect_str_eq(state, "28000");
    cr_expect_not(raw_login(px.port, "alice", "wrong", "lakeproxy", state, msg, sizeof(msg)));
    cr_expect_str_eq(state, "28P01");
    cr_expect(raw_login(px.port, "carol", NULL, "lakeproxy", state, msg, sizeof(msg)), "%s %s",
              state, msg);
}

/* A reload that takes a user off admin.users ends the console it has open (57P01): it could
 * otherwise go on reading SHOW CLIENTS, and RELOAD, PAUSE or SHUT DOWN. (Red team 3) */
Test(admin, a_reload_removing_an_admin_ends_its_console)
{
    PGconn *adm = console();
    reload_edited("carol", NULL, NULL);
    PGconn *again = proxy_connect(&px, "alice", "alice-secret", "lakeproxy", NULL);
    cr_expect(PQstatus(again) == CONNECTION_BAD, "the reload took effect");
    PQfinish(again);
    PGresult *r = PQexec(adm, "SHOW CLIENTS");
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK,
                  "alice, no admin any more, still reads SHOW CLIENTS on her open console");
    cr_expect_eq(file_count_lines(px.log, "57P01: database \"lakeproxy\" was reconfigured: its "
                                          "user is no longer in admin.users"),
                 1, "see %s", px.log);
    PQclear(r);
    PQfinish(adm);
}

/* An admin whose RELOAD takes her off admin.users gets her console closed by it, and the
 * proxy goes on serving. */
Test(admin, a_reload_command_removing_its_own_admin_closes_the_console)
{
    PGconn *adm = console();
    static char yaml[8192];
    proxy_default_yaml(yaml, sizeof(yaml), px.port, "transaction", 2, 5000,
                       "admin:\n  users: [carol]\n");
    FILE *f = fopen(px.conf, "w");
    cr_assert_not_null(f);
    fputs(yaml, f);
    fclose(f);
    PGresult *r = PQexec(adm, "RELOAD");
    cr_expect_neq(PQresultStatus(r), PGRES_COMMAND_OK, "the console is closed, not answered");
    PQclear(r);
    PQfinish(adm);
    PGconn *c = proxy_connect(&px, "carol", "unused", "lakeproxy", NULL);
    cr_expect(PQstatus(c) == CONNECTION_OK, "the proxy still serves: %s", PQerrorMessage(c));
    PQfinish(c);
}

/* A SCRAM exchange begun before a reload that makes its user an identity entry (auth: token,
 * no password) does not finish against the old verifier: a login under way during a reload
 * is told to connect again. (Red team 3) */
Test(admin, a_password_login_begun_before_auth_token_fails_after_it)
{
    int fd = raw_connect(px.port);
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    struct startup_param params[] = {{"user", "alice"}, {"database", "app"}};
    proto_startup(&b, params, 2);
    cr_assert(raw_send(fd, &b));
    unsigned char body[4096];
    size_t len;
    struct scram_client sc = {0};
    char *out = NULL;
    const char *err;
    uint32_t code;
    const uint8_t *data;
    size_t dlen;
    cr_assert_eq(raw_read_msg(fd, body, sizeof(body), &len, 5000), 'R');
    cr_assert(scram_client_first(&sc, "", "alice-secret", NULL, &out));
    proto_sasl_initial(&b, "SCRAM-SHA-256", out, strlen(out));
    free(out);
    cr_assert(raw_send(fd, &b));
    cr_assert_eq(raw_read_msg(fd, body, sizeof(body), &len, 5000), 'R');
    proto_parse_auth(body, len, &code, &data, &dlen);
    cr_assert_eq(code, AUTH_REQ_SASL_CONTINUE);
    /* the reload: alice has no password any more */
    reload_edited("carol", "  alice:\n    password: alice-secret\n", "  alice:\n    auth: token\n");
    char state[6], msg[300];
    cr_expect_not(raw_login(px.port, "alice", "alice-secret", "app", state, msg, sizeof(msg)),
                  "the reload took effect");
    cr_assert(scram_client_final(&sc, (const char *)data, dlen, &out, &err));
    proto_sasl_response(&b, out, strlen(out));
    free(out);
    cr_assert(raw_send(fd, &b));
    int t;
    bool in = false;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) > 0 && t != 'E')
        if (t == 'Z') {
            in = true;
            break;
        }
    cr_expect_not(in, "alice logged in with a password after becoming an auth: token identity");
    scram_client_free(&sc);
    buf_free(&b);
    close(fd);
}

/* Removing an entry, the bluntest way to take a database away, closes its sessions, as an
 * allow: list that leaves them out does. (Red team 3) */
Test(admin, a_reload_removing_an_entry_closes_its_sessions)
{
    PGconn *c = proxy_connect(&px, "bob", "bob-secret", "app_md5", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    free(query_value(c, "SELECT 1"));
    reload_edited("alice, carol", "  app_md5:\n", "  app_md5_renamed:\n");
    PGconn *again = proxy_connect(&px, "bob", "bob-secret", "app_md5", NULL);
    cr_expect(PQstatus(again) == CONNECTION_BAD, "the reload took effect");
    PQfinish(again);
    PGresult *r = PQexec(c, "SELECT current_user");
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK,
                  "bob still reads the removed entry's database as %s",
                  PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "-");
    PQclear(r);
    PQfinish(c);
}
