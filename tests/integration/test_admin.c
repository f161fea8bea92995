/* test_admin.c: the admin console answers SHOW HELP/VERSION/DATABASES/POOLS/CLIENTS/SERVERS/
 * STATS/CONFIG, RELOAD, PAUSE, RESUME, RECONNECT, KILL, DISABLE and ENABLE as ordinary result
 * sets, to admin users only, and never shows a secret. */
#include <criterion/criterion.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

/* The suite's configuration with `extra` (admin.users ...) and the first `old` in it (when not
 * NULL) replaced by `new`, into out. */
static void edited_yaml(char *out, size_t outsz, const char *extra, const char *old,
                        const char *new)
{
    static char yaml[8192];
    proxy_default_yaml(yaml, sizeof(yaml), px.port, "transaction", 2, 5000, extra);
    char *at = old ? strstr(yaml, old) : NULL;
    cr_assert(!old || at, "no \"%s\" in the configuration", old);
    if (at)
        snprintf(out, outsz, "%.*s%s%s", (int)(at - yaml), yaml, new, at + strlen(old));
    else
        snprintf(out, outsz, "%s", yaml);
}

/* Writes yaml as the configuration file, for a RELOAD or SIGHUP to read. */
static void write_conf(const char *yaml)
{
    FILE *f = fopen(px.conf, "w");
    cr_assert_not_null(f);
    fputs(yaml, f);
    fclose(f);
}

/* Reloads the suite's configuration with admin.users [admins] and the first `old` in it (when
 * not NULL) replaced by `new`. */
static void reload_edited(const char *admins, const char *old, const char *new)
{
    static char admin[128], edited[8400];
    snprintf(admin, sizeof(admin), "admin:\n  users: [%s]\n", admins);
    edited_yaml(edited, sizeof(edited), admin, old, new);
    proxy_reload_yaml(&px, edited);
}

/* A raw session of carol (trust) to db that sent sql and read its answer up to a message of
 * type until ('Z': the end of it; 'G': a COPY FROM STDIN started). */
static int raw_session_until(const char *db, const char *sql, int until)
{
    int fd = raw_session(px.port, "carol", db);
    cr_assert(fd >= 0);
    raw_query(fd, sql);
    unsigned char body[8192];
    size_t len;
    int type;
    while ((type = raw_read_msg(fd, body, sizeof(body), &len, 5000)) > 0 && type != until)
        ;
    cr_assert_eq(type, until, "%s: no '%c' came", sql, until);
    return fd;
}

Test(admin, show_pools_clients_servers_and_stats)
{
    PGconn *a = app(), *adm = proxy_console(&px, "alice", "alice-secret");
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
    PGconn *adm = proxy_console(&px, "alice", "alice-secret");
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

/* What a client must bring over TLS is shown (the suite's listen.tls has no client CA). */
Test(admin, show_config_shows_what_clients_must_bring)
{
    PGconn *adm = proxy_console(&px, "alice", "alice-secret");
    PGresult *r = show(adm, "SHOW CONFIG");
    char *v = cell(r, "key", "listen.tls.clients", "value");
    cr_expect_str_eq(v ? v : "(no row)",
                     "client_tls=optional client_cert=optional client_ca=(none) crl=(none)");
    PQclear(r);
    PQfinish(adm);
}

/* An entry with an allow: list shows who may use it; one without shows no such row. */
Test(admin, show_config_shows_who_may_use_a_restricted_entry)
{
    reload_edited("alice, carol", "  app_md5:\n",
                  "  app_md5:\n    allow: {users: [alice, carol], groups: [auditors]}\n");
    PGconn *adm = proxy_console(&px, "alice", "alice-secret");
    PGresult *r = show(adm, "SHOW CONFIG");
    char *allow = cell(r, "key", "databases.app_md5.allow", "value");
    cr_expect_str_eq(allow ? allow : "(no row)", "users=alice,carol groups=auditors");
    cr_expect_null(cell(r, "key", "databases.app.allow", "value"), "app is open to every user");
    PQclear(r);
    PQfinish(adm);
}

Test(admin, pause_holds_queries_until_resume)
{
    PGconn *a = app(), *adm = proxy_console(&px, "alice", "alice-secret");
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
    PGconn *adm = proxy_console(&px, "alice", "alice-secret");
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
    PGconn *adm = proxy_console(&px, "alice", "alice-secret");
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
    PGconn *a = app(), *adm = proxy_console(&px, "alice", "alice-secret");
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
    PGconn *adm = proxy_console(&px, "alice", "alice-secret");
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
    PGconn *adm = proxy_console(&px, "alice", "alice-secret");
    static char yaml[8400];
    edited_yaml(yaml, sizeof(yaml), "admin:\n  users: [carol]\n", NULL, NULL);
    write_conf(yaml);
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

/* bob's session to db, then a reload with `old` replaced by `new`: bob cannot log in again, his
 * session is closed with the reason `why`, and alice's session to app goes on. */
static void expect_reload_closes_bob(const char *db, const char *old, const char *new,
                                     const char *why)
{
    PGconn *c = proxy_connect(&px, "bob", "bob-secret", db, NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    free(query_value(c, "SELECT 1"));
    PGconn *other = app();
    free(query_value(other, "SELECT 1"));
    reload_edited("alice, carol", old, new);
    PGconn *again = proxy_connect(&px, "bob", "bob-secret", db, NULL);
    cr_expect(PQstatus(again) == CONNECTION_BAD, "the reload took effect");
    PQfinish(again);
    expect_session_closed(c, why);
    char *v = query_value(other, "SELECT 2");
    cr_expect_str_eq(v, "2", "a session the reload still allows goes on");
    free(v);
    PQfinish(other);
}

/* Removing an entry, the bluntest way to take a database away, closes its sessions, as an
 * allow: list that leaves them out does. (Red team 3) */
Test(admin, a_reload_removing_an_entry_closes_its_sessions)
{
    expect_reload_closes_bob("app_md5", "  app_md5:\n", "  app_md5_renamed:\n",
                             "it was removed from the configuration");
}

/* A reload that removes a user from users: closes that user's sessions (57P01). */
Test(admin, a_reload_removing_a_user_closes_its_sessions)
{
    expect_reload_closes_bob("app", "  bob:\n", "  bobby:\n", "this user may no longer log in");
}

/* An admin RELOAD that removes an entry closes its clients in every state: in a transaction,
 * in a COPY FROM STDIN, a pipeline waiting for a server, queued, a SCRAM login half done; a
 * second RELOAD brings the entry back and a third removes it again. lakeproxy stays up, serves
 * and exits cleanly (the sanitizer build checks that exit). */
Test(admin, a_reload_closes_the_clients_of_a_removed_entry_in_every_state, .timeout = 60)
{
    PGconn *adm = proxy_console(&px, "alice", "alice-secret");
    /* two servers held in transactions: the pool (size 2) is full */
    int tx = raw_session_until("app", "BEGIN; SELECT 1", 'Z');
    int copy = raw_session_until(
        "app", "CREATE TEMP TABLE IF NOT EXISTS rt4 (x int); COPY rt4 FROM STDIN", 'G');
    unsigned char body[8192];
    size_t len;
    /* a half-sent CopyData */
    static const unsigned char part[] = {'d', 0, 0, 0, 20, '1', '\n'};
    cr_assert_eq(write(copy, part, sizeof(part)), (ssize_t)sizeof(part));
    /* queued clients: a pipeline waiting for a server, extended protocol */
    int queued = raw_session(px.port, "carol", "app");
    cr_assert(queued >= 0);
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "s1", "SELECT pg_sleep(0.5)");
    raw_put_bind(&b, "", "s1");
    raw_put_execute(&b, "");
    raw_put_parse(&b, "", "SELECT 2");
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(queued, &b));
    int queued2 = raw_session(px.port, "carol", "app");
    cr_assert(queued2 >= 0);
    raw_query(queued2, "SELECT 3");
    /* a SCRAM login under way */
    int login = raw_connect(px.port);
    cr_assert(login >= 0);
    struct startup_param params[] = {{"user", "alice"}, {"database", "app"}};
    proto_startup(&b, params, 2);
    cr_assert(raw_send(login, &b));
    cr_assert_eq(raw_read_msg(login, body, sizeof(body), &len, 5000), 'R');
    /* an md5 login to app_md5 under way, an idle libpq client of app_md5 */
    PGconn *md5 = proxy_connect(&px, "bob", "bob-secret", "app_md5", NULL);
    cr_assert(PQstatus(md5) == CONNECTION_OK, "%s", PQerrorMessage(md5));
    usleep(200 * 1000);
    static const char admins[] = "admin:\n  users: [alice, carol]\n";
    static char yaml[8400], edited[8400];
    edited_yaml(yaml, sizeof(yaml), admins, NULL, NULL);
    edited_yaml(edited, sizeof(edited), admins, "  app:\n", "  app_gone:\n");
    char *md5at = strstr(edited, "  app_md5:\n");
    cr_assert_not_null(md5at);
    memcpy(md5at, "  app_md6:\n", 11);
    write_conf(edited);
    /* pipelined: RELOAD, SHOW CLIENTS, RELOAD (the same file), as one simple Query each */
    PGresult *r = PQexec(adm, "RELOAD");
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(adm));
    PQclear(r);
    r = PQexec(adm, "SHOW CLIENTS");
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(adm));
    PQclear(r);
    /* every one of them told 57P01 or 08006 and closed */
    int fds[] = {tx, copy, queued, queued2, login};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        bool closed = false;
        for (int k = 0; k < 50 && !closed; k++)
            closed = raw_read_msg(fds[i], body, sizeof(body), &len, 200) == -1;
        cr_expect(closed, "client %zu still connected", i);
        close(fds[i]);
    }
    r = PQexec(md5, "SELECT 1");
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "md5 client of removed entry still served");
    PQclear(r);
    PQfinish(md5);
    /* back again, then away again */
    write_conf(yaml);
    r = PQexec(adm, "RELOAD");
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(adm));
    PQclear(r);
    PGconn *a = app();
    free(query_value(a, "BEGIN"));
    write_conf(edited);
    r = PQexec(adm, "RELOAD");
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(adm));
    PQclear(r);
    r = PQexec(a, "SELECT 1");
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(a);
    buf_free(&b);
    PQfinish(adm);
    PGconn *c = proxy_connect(&px, "carol", "unused", "lakeproxy", NULL);
    cr_expect(PQstatus(c) == CONNECTION_OK, "the proxy still serves: %s", PQerrorMessage(c));
    PQfinish(c);
}

/* SIGTERM's drain with a transaction open, then a SIGHUP whose file removes that client's
 * entry and adds a query log: the reload closes the client, the drain ends, and lakeproxy
 * exits 0. */
Test(admin, a_reload_during_the_shutdown_drain_ends_it_cleanly)
{
    PGconn *a = app();
    free(query_value(a, "BEGIN"));
    free(query_value(a, "SELECT 1"));
    int idle = raw_session(px.port, "carol", "app");
    cr_assert(idle >= 0);
    PGconn *adm = proxy_console(&px, "alice", "alice-secret");
    kill(px.pid, SIGTERM);
    usleep(300 * 1000);
    char extra[600];
    snprintf(extra, sizeof(extra),
             "admin:\n  users: [alice, carol]\nstats:\n  log: %s/rt4-%d.jsonl\n",
             env_need("LP_TEST_DIR"), getpid());
    static char edited[8400];
    edited_yaml(edited, sizeof(edited), extra, "  app:\n", "  app_gone:\n");
    write_conf(edited);
    kill(px.pid, SIGHUP);
    usleep(300 * 1000);
    kill(px.pid, SIGHUP); /* twice */
    usleep(300 * 1000);
    PGresult *r = PQexec(a, "SELECT 1");
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(a);
    PQfinish(adm);
    close(idle);
    proxy_expect_exit_0(&px, 5000);
}

/* A console whose RELOAD, pipelined with more commands, takes its own user off admin.users is
 * closed with its other console, while a client that left with input waiting for a server
 * (the pool full) is dropped; alice's sessions go on and lakeproxy serves. */
Test(admin, a_pipelined_reload_removing_its_own_console_answers_no_more)
{
    /* fill the pool of app (size 2) with two open transactions */
    PGconn *t1 = app(), *t2 = app();
    free(query_value(t1, "BEGIN"));
    free(query_value(t1, "SELECT 1"));
    free(query_value(t2, "BEGIN"));
    free(query_value(t2, "SELECT 1"));
    /* a client that sends queries and leaves: it waits for a server to run them */
    int leaving = raw_session(px.port, "carol", "app");
    cr_assert(leaving >= 0);
    raw_query(leaving, "SELECT pg_sleep(0.1)");
    raw_query(leaving, "SELECT 2");
    static const unsigned char bye[] = {'X', 0, 0, 0, 4};
    cr_assert_eq(write(leaving, bye, sizeof(bye)), (ssize_t)sizeof(bye));
    shutdown(leaving, SHUT_WR);
    PGconn *other = proxy_connect(&px, "carol", "unused", "lakeproxy", NULL);
    cr_assert(PQstatus(other) == CONNECTION_OK);
    /* carol's console over a raw socket, to pipeline commands behind RELOAD */
    int con = raw_session(px.port, "carol", "lakeproxy");
    cr_assert(con >= 0);
    usleep(200 * 1000);
    /* carol keeps her login (trust) but leaves admin.users; app gets an allow: list without her */
    static char edited[8400];
    edited_yaml(edited, sizeof(edited), "admin:\n  users: [alice]\n", "  app:\n",
                "  app:\n    allow: {users: [alice]}\n");
    write_conf(edited);
    struct buf b;
    buf_init(&b);
    proto_query(&b, "RELOAD");
    for (int i = 0; i < 3; i++)
        proto_query(&b, "SHOW CLIENTS");
    cr_assert(raw_send(con, &b));
    unsigned char body[16384];
    size_t len;
    int type, n = 0;
    bool told = false;
    while ((type = raw_read_msg(con, body, sizeof(body), &len, 3000)) > 0 && n++ < 1000)
        told |= type == 'E' && strcmp(raw_error_sqlstate(body, len), "57P01") == 0;
    cr_expect(told && type == -1, "the console is told 57P01 and closed");
    close(con);
    PGresult *r = PQexec(other, "SHOW CLIENTS");
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "carol's other console still answered");
    PQclear(r);
    PQfinish(other);
    r = PQexec(t1, "SELECT 1");
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "alice stays: %s", PQerrorMessage(t1));
    PQclear(r);
    PQfinish(t1);
    PQfinish(t2);
    close(leaving);
    buf_free(&b);
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "lakeproxy", NULL);
    cr_expect(PQstatus(c) == CONNECTION_OK, "the proxy still serves: %s", PQerrorMessage(c));
    PQfinish(c);
}

/* A name a client chose cannot forge SHOW CLIENTS columns (red team 6: a user name with '|' in
 * it, sent by a login that never answers, became columns of its own: an address and a state
 * of the prober's choosing, the real address pushed out of the row); and until a client has
 * logged in its names are not shown at all (red team 31: they may be a password typed into
 * the user field): the prober's row is a login from its real address with no names. */
Test(admin, a_user_name_cannot_forge_show_clients_columns)
{
    static const char forged[] = "alice|app|203.0.113.9:5432|active|yes|1";
    int fd = raw_connect(px.port);
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    struct startup_param params[] = {{"user", forged}, {"database", "app|x"}};
    proto_startup(&b, params, 2);
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    unsigned char body[512];
    size_t len;
    cr_assert_eq(raw_read_msg(fd, body, sizeof(body), &len, 5000), 'R'); /* it waits there */
    PGconn *adm = proxy_console(&px, "alice", "alice-secret");
    PGresult *r = PQexec(adm, "SHOW CLIENTS");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(adm));
    int user = PQfnumber(r, "user"), db = PQfnumber(r, "database"), addr = PQfnumber(r, "addr");
    int state = PQfnumber(r, "state");
    int logins = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        cr_expect_str_neq(PQgetvalue(r, i, addr), "203.0.113.9:5432", "row %d", i);
        cr_expect(!strstr(PQgetvalue(r, i, user), "203.0.113.9"), "row %d: user %s", i,
                  PQgetvalue(r, i, user));
        cr_expect(!strstr(PQgetvalue(r, i, db), "app|x"), "row %d: database %s", i,
                  PQgetvalue(r, i, db));
        if (strcmp(PQgetvalue(r, i, state), "login") == 0) {
            logins++;
            cr_expect_str_eq(PQgetvalue(r, i, user), "", "a name before login");
            cr_expect(strncmp(PQgetvalue(r, i, addr), "127.0.0.1:", 10) == 0, "addr %s",
                      PQgetvalue(r, i, addr));
        }
    }
    cr_expect_eq(logins, 1, "the prober's login is one row");
    PQclear(r);
    PQfinish(adm);
    close(fd);
}

/* SHOW HELP lists every command, one per row; SHOW VERSION is one row naming lakeproxy; the
 * unknown-command errors name the new commands. */
Test(admin, show_help_and_show_version)
{
    PGconn *adm = proxy_console(&px, "alice", "alice-secret");
    PGresult *r = show(adm, "SHOW HELP");
    cr_expect_eq(PQnfields(r), 1);
    static const char *const want[] = {"SHOW DATABASES", "SHOW VERSION", "RECONNECT [db]",
                                       "KILL db",        "DISABLE db",   "ENABLE db",
                                       "PAUSE [db]",     "SHUTDOWN"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect_not_null(cell(r, "command", want[i], "command"), "%s not listed", want[i]);
    PQclear(r);
    r = show(adm, "show version;");
    cr_expect_eq(PQntuples(r), 1);
    cr_expect_eq(PQnfields(r), 1);
    cr_expect_str_eq(PQfname(r, 0), "version");
    cr_expect(strncmp(PQgetvalue(r, 0, 0), "lakeproxy ", 10) == 0, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    r = PQexec(adm, "DROP EVERYTHING");
    cr_expect(strstr(PQerrorMessage(adm), "RECONNECT, KILL, DISABLE, ENABLE"), "%s",
              PQerrorMessage(adm));
    PQclear(r);
    r = PQexec(adm, "SHOW TABLES");
    cr_expect(strstr(PQerrorMessage(adm), "HELP, VERSION, DATABASES"), "%s", PQerrorMessage(adm));
    PQclear(r);
    cr_expect_str_eq(query_sqlstate(adm, "SHOW VERSION 2"), "42601");
    PQfinish(adm);
}

/* SHOW DATABASES: a row per configured entry with where it leads, as whom and its pool
 * settings, the server connections open now, and PAUSE's state; never a password. */
Test(admin, show_databases_shows_each_entry_and_never_a_password)
{
    PGconn *a = app(), *adm = proxy_console(&px, "alice", "alice-secret");
    free(query_value(a, "BEGIN")); /* one server held */
    free(query_value(adm, "PAUSE app"));
    PGresult *r = show(adm, "SHOW DATABASES");
    cr_expect_eq(PQntuples(r), 4, "app, app_tls, app_md5, app_plain");
    static const char *const want[][2] = {{"host", "127.0.0.1"}, {"database", "lp_test"},
                                          {"user", "lp_server"}, {"pool_mode", "transaction"},
                                          {"pool_size", "2"},    {"min_pool_size", "0"},
                                          {"reserve_pool", "0"}, {"current_connections", "1"},
                                          {"paused", "1"},       {"disabled", "0"}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char *v = cell(r, "name", "app", want[i][0]);
        cr_expect_str_eq(v ? v : "(no row)", want[i][1], "%s", want[i][0]);
    }
    char *port = cell(r, "name", "app", "port");
    cr_expect_str_eq(port ? port : "(no row)", env_need("LP_PGPORT"));
    char *md5 = cell(r, "name", "app_md5", "user");
    cr_expect_str_eq(md5 ? md5 : "(no row)", "lp_md5");
    char *md5_paused = cell(r, "name", "app_md5", "paused");
    cr_expect_str_eq(md5_paused ? md5_paused : "(no row)", "0");
    for (int i = 0; i < PQntuples(r); i++)
        for (int j = 0; j < PQnfields(r); j++)
            cr_expect_null(strstr(PQgetvalue(r, i, j), "secret"), "a password shown: %s",
                           PQgetvalue(r, i, j));
    PQclear(r);
    free(query_value(adm, "RESUME app"));
    free(query_value(a, "COMMIT"));
    PQfinish(a);
    PQfinish(adm);
}

/* The backend pid of the server a query of c runs on (transaction pooling: the next free one). */
static char *backend_pid(PGconn *c)
{
    return query_value(c, "SELECT pg_backend_pid()");
}

/* RECONNECT: the idle server closes at once, so the next transaction runs on a new backend;
 * the server of a client in an open transaction serves it to its end without an error, and
 * closes then. */
Test(admin, reconnect_replaces_servers_once_released)
{
    PGconn *idle = app(), *tx = app(), *adm = proxy_console(&px, "alice", "alice-secret");
    free(query_value(tx, "BEGIN"));
    char *tx_pid = backend_pid(tx);
    char *idle_pid = backend_pid(idle); /* (on the other server: tx holds its own) */
    cr_expect_str_neq(idle_pid, tx_pid);
    PGresult *r = PQexec(adm, "RECONNECT app");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(adm));
    PQclear(r);
    char *now = backend_pid(idle);
    cr_expect_str_neq(now, idle_pid, "the idle server still serves after RECONNECT");
    cr_expect_str_neq(now, tx_pid);
    free(now);
    now = backend_pid(tx);
    cr_expect_str_eq(now, tx_pid, "the open transaction kept its server");
    free(now);
    free(query_value(tx, "COMMIT"));
    now = backend_pid(tx);
    cr_expect_str_neq(now, tx_pid, "the busy server still serves after its transaction ended");
    free(now);
    r = show(adm, "SHOW SERVERS");
    cr_expect_null(cell(r, "backend_pid", idle_pid, "state"));
    cr_expect_null(cell(r, "backend_pid", tx_pid, "state"));
    PQclear(r);
    cr_expect_str_eq(query_sqlstate(adm, "RECONNECT"), "", "every pool");
    cr_expect_str_eq(query_sqlstate(adm, "RECONNECT nosuchdb"), "3D000");
    cr_expect_str_eq(query_sqlstate(adm, "RECONNECT app 3"), "42601");
    free(idle_pid);
    free(tx_pid);
    PQfinish(idle);
    PQfinish(tx);
    PQfinish(adm);
}

/* Reads fd's messages up to an ErrorResponse and expects it to be 57P01 with want in its
 * message, and the connection closed after it (EOF). */
static void expect_killed(int fd, const char *want)
{
    unsigned char body[2048];
    size_t len;
    int t;
    while ((t = raw_read_msg(fd, body, sizeof(body) - 1, &len, 5000)) > 0 && t != 'E')
        ;
    cr_assert_eq(t, 'E', "no ErrorResponse");
    body[len] = '\0';
    cr_expect_str_eq(raw_error_sqlstate(body, len), "57P01");
    bool found = false;
    for (size_t i = 0; i < len && !found; i += strlen((char *)body + i) + 1)
        found = strstr((char *)body + i, want) != NULL;
    cr_expect(found, "no \"%s\" in the error", want);
    cr_expect_eq(raw_read_msg(fd, body, sizeof(body), &len, 5000), -1, "still connected");
}

/* KILL app: app's clients, idle or in a transaction, get 57P01 and are closed, its servers go
 * at once; app_md5's client and server and the console go on; new logins to app still work. */
Test(admin, kill_ends_that_pools_clients_and_servers_only)
{
    PGconn *a = app(), *adm = proxy_console(&px, "alice", "alice-secret");
    free(query_value(a, "SELECT 1"));
    int tx = raw_session_until("app", "BEGIN; SELECT 1", 'Z');
    PGconn *other = proxy_connect(&px, "alice", "alice-secret", "app_md5", NULL);
    cr_assert(PQstatus(other) == CONNECTION_OK, "%s", PQerrorMessage(other));
    char *other_pid = backend_pid(other);
    PGresult *r = PQexec(adm, "KILL app");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(adm));
    PQclear(r);
    r = show(adm, "SHOW SERVERS");
    cr_expect_null(cell(r, "database", "app", "state"), "a server of app is left");
    PQclear(r);
    expect_killed(tx, "an administrator ended the connection with KILL");
    close(tx);
    char state[6];
    idle_goodbye(a, state, 3000);
    cr_expect_str_eq(state, "57P01");
    r = PQexec(a, "SELECT 1");
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "a killed client still served");
    PQclear(r);
    PQfinish(a);
    char *now = backend_pid(other);
    cr_expect_str_eq(now, other_pid, "app_md5's server was closed too");
    free(now);
    free(other_pid);
    PQfinish(other);
    PGconn *again = app();
    free(query_value(again, "SELECT 1"));
    PQfinish(again);
    cr_expect_str_eq(query_sqlstate(adm, "KILL"), "42601", "KILL takes a database name");
    cr_expect_str_eq(query_sqlstate(adm, "KILL nosuchdb"), "3D000");
    cr_expect_str_eq(query_sqlstate(adm, "KILL lakeproxy"), "3D000", "the console is no pool");
    r = show(adm, "SHOW POOLS"); /* the console goes on */
    PQclear(r);
    PQfinish(adm);
}

/* KILL while a client's statement runs: the statement is cancelled before the 57P01 (which
 * says so), so nothing of the killed client's commits after it. */
Test(admin, kill_cancels_a_running_statement_first)
{
    PGconn *pg = pg_admin("lp_test");
    pg_owned_table(pg, "admin_killed_insert", "v int");
    PGconn *a = app(), *adm = proxy_console(&px, "alice", "alice-secret");
    cr_assert(PQsendQuery(a, "INSERT INTO admin_killed_insert SELECT 1 FROM pg_sleep(3)"));
    usleep(300 * 1000);
    PGresult *r = PQexec(adm, "KILL app");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(adm));
    PQclear(r);
    struct outcome o;
    outcome_of(a, &o);
    cr_expect_str_eq(o.state, "57P01", "%s", o.msg);
    cr_expect(strstr(o.msg, "asked the server to cancel"), "%s", o.msg);
    PQfinish(a);
    usleep(3500 * 1000); /* (past the statement's own end) */
    cr_expect_eq(pg_long(pg, "SELECT count(*) FROM admin_killed_insert"), 0,
                 "the killed client's INSERT committed");
    PQfinish(adm);
    PQfinish(pg);
}

/* DISABLE app: new logins to app are refused (57P03, naming it), a connected client goes on,
 * other databases take logins; SHOW DATABASES and SHOW POOLS say so; ENABLE lets logins in. */
Test(admin, disable_refuses_new_logins_until_enable)
{
    PGconn *a = app(), *adm = proxy_console(&px, "alice", "alice-secret");
    free(query_value(a, "SELECT 1"));
    PGresult *r = PQexec(adm, "DISABLE \"app\"");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(adm));
    PQclear(r);
    char state[6], msg[300];
    cr_expect_not(raw_login(px.port, "alice", "alice-secret", "app", state, msg, sizeof(msg)));
    cr_expect_str_eq(state, "57P03");
    cr_expect(strstr(msg, "\"app\" is disabled by the administrator"), "%s", msg);
    EXPECT_QUERY_VALUE(a, "SELECT 'still here'", "still here", "a connected client goes on");
    cr_expect(raw_login(px.port, "alice", "alice-secret", "app_md5", state, msg, sizeof(msg)),
              "%s %s", state, msg);
    r = show(adm, "SHOW DATABASES");
    char *v = cell(r, "name", "app", "disabled");
    cr_expect_str_eq(v ? v : "(no row)", "1");
    PQclear(r);
    r = show(adm, "SHOW POOLS");
    v = cell(r, "database", "app", "disabled");
    cr_expect_str_eq(v ? v : "(no row)", "yes");
    PQclear(r);
    r = PQexec(adm, "enable app;");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(adm));
    PQclear(r);
    cr_expect(raw_login(px.port, "alice", "alice-secret", "app", state, msg, sizeof(msg)), "%s %s",
              state, msg);
    r = show(adm, "SHOW DATABASES");
    v = cell(r, "name", "app", "disabled");
    cr_expect_str_eq(v ? v : "(no row)", "0");
    PQclear(r);
    cr_expect_str_eq(query_sqlstate(adm, "DISABLE"), "42601");
    cr_expect_str_eq(query_sqlstate(adm, "ENABLE"), "42601");
    cr_expect_str_eq(query_sqlstate(adm, "DISABLE nosuchdb"), "3D000");
    cr_expect_str_eq(query_sqlstate(adm, "DISABLE \"\""), "3D000");
    PQfinish(a);
    PQfinish(adm);
}

/* DISABLE of a configured database no client has used yet (no pool so far) holds too. */
Test(admin, disable_holds_a_database_not_used_yet)
{
    PGconn *adm = proxy_console(&px, "alice", "alice-secret");
    free(query_value(adm, "DISABLE app_plain"));
    char state[6], msg[300];
    cr_expect_not(
        raw_login(px.port, "alice", "alice-secret", "app_plain", state, msg, sizeof(msg)));
    cr_expect_str_eq(state, "57P03", "%s", msg);
    PQfinish(adm);
}
