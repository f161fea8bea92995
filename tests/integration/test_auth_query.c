/* test_auth_query.c: users not listed in the YAML are checked against verifiers looked up on
 * the server (auth_query), SCRAM and md5 alike, without revealing which users exist. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "proto.h"
#include "rawproto.h"

static struct proxy px;

static void start_with_auth_query(void)
{
    proxy_start_with(&px, "session", 4, 3000,
                     "auth_query:\n  database: app\n"
                     "  query: \"SELECT usename, passwd FROM public.lp_lookup($1)\"\n");
}
static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(auth_query, .init = start_with_auth_query, .fini = stop_proxy, .timeout = 60);

Test(auth_query, scram_user_found_on_the_server_logs_in)
{
    char state[6], msg[256];
    cr_expect(raw_login(px.port, "lp_dave", "dave-secret", "app", state, msg, sizeof(msg)), "%s %s",
              state, msg);
    PGconn *c = proxy_connect(&px, "lp_dave", "dave-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    char *v = query_value(c, "SELECT count(*) FROM items");
    cr_expect_str_eq(v, "1000");
    free(v);
    PQfinish(c);
}

Test(auth_query, md5_user_found_on_the_server_logs_in)
{
    PGconn *c = proxy_connect(&px, "lp_erin", "erin-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PQfinish(c);
    c = proxy_connect(&px, "lp_erin", "not-erin", "app", NULL);
    cr_expect(PQstatus(c) == CONNECTION_BAD);
    cr_expect(strstr(PQerrorMessage(c), "password authentication failed for user \"lp_erin\""),
              "%s", PQerrorMessage(c));
    PQfinish(c);
}

Test(auth_query, wrong_password_and_unknown_user_get_the_same_28P01)
{
    char state[6], msg[256];
    cr_expect_not(raw_login(px.port, "lp_dave", "wrong", "app", state, msg, sizeof(msg)));
    cr_expect_str_eq(state, "28P01");
    cr_expect_not(raw_login(px.port, "nobody_at_all", "x", "app", state, msg, sizeof(msg)));
    cr_expect_str_eq(state, "28P01");
    cr_expect(strstr(msg, "password authentication failed for user \"nobody_at_all\""), "%s", msg);
}

Test(auth_query, users_in_the_yaml_do_not_need_the_lookup)
{
    char state[6], msg[256];
    cr_expect(raw_login(px.port, "alice", "alice-secret", "app", state, msg, sizeof(msg)), "%s %s",
              state, msg);
}

struct storm {
    int port;
    int ok;
    char err[256];
};

static void *storm_login(void *arg)
{
    struct storm *s = arg;
    PGconn *c = proxy_connect(&px, "lp_dave", "dave-secret", "app", NULL);
    s->ok = PQstatus(c) == CONNECTION_OK;
    snprintf(s->err, sizeof(s->err), "%s", PQerrorMessage(c));
    PQfinish(c);
    return NULL;
}

/* Starts lakeproxy with an auth_query whose text marks its look-ups as this test's own (tests
 * run two at a time on one server). */
static void start_with_storm_auth_query(void)
{
    proxy_start_with(&px, "session", 4, 3000,
                     "auth_query:\n  database: app\n"
                     "  query: \"SELECT usename, passwd FROM public.lp_lookup($1) /* storm */\"\n");
}

/* Logins that need a look-up at once each get their answer, but lakeproxy runs at most
 * AUTHQ_MAX_RUNNING (8) look-ups at a time, each on a server connection of its own: a storm of
 * logins (by anyone who can connect, before any password is checked) cannot open a server
 * connection per login. */
Test(auth_query, a_storm_of_logins_takes_turns_for_look_ups, .init = start_with_storm_auth_query)
{
    enum { N = 48 };
    pthread_t th[N];
    static struct storm s[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, storm_login, &s[i]), 0);
    PGconn *pg = pg_admin("lp_test");
    cr_assert(PQstatus(pg) == CONNECTION_OK, "%s", PQerrorMessage(pg));
    int most = 0;
    for (int i = 0; i < 200; i++) {
        char *v = query_value(pg, "SELECT count(*) FROM pg_stat_activity "
                                  "WHERE application_name = 'lakeproxy auth_query' "
                                  "AND query LIKE '%/* storm */%'");
        most = atoi(v) > most ? atoi(v) : most;
        free(v);
        usleep(2000);
    }
    PQfinish(pg);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += s[i].ok;
        cr_expect(s[i].ok, "login %d: %s", i, s[i].err);
    }
    cr_expect_eq(ok, N);
    cr_expect_leq(most, 8, "%d look-up connections at once", most);
    cr_log_info("auth_query storm: at most %d look-up connections at once", most);
}

/* Starts lakeproxy with an auth_query that takes a second per look-up. */
static void start_with_slow_auth_query(void)
{
    proxy_start_with(&px, "session", 4, 3000,
                     "auth_query:\n  database: app\n"
                     "  query: \"SELECT l.usename, l.passwd FROM public.lp_lookup($1) l, "
                     "pg_sleep(1)\"\n");
}

/* Waits (up to 10 s) until PostgreSQL runs at least n of start_with_slow_auth_query's
 * look-ups. */
static void wait_slow_look_ups_running(int n)
{
    PGconn *pg = pg_admin("lp_test");
    for (int i = 0; i < 500; i++) {
        char *v = query_value(pg, "SELECT count(*) FROM pg_stat_activity "
                                  "WHERE application_name = 'lakeproxy auth_query' "
                                  "AND query LIKE '%pg_sleep(1)%'");
        int running = atoi(v);
        free(v);
        if (running >= n)
            break;
        usleep(20 * 1000);
    }
    PQfinish(pg);
}

/* Sends a startup packet for lp_dave to app on fd. */
static void send_dave_startup(int fd)
{
    struct buf b;
    buf_init(&b);
    struct startup_param params[] = {{"user", "lp_dave"}, {"database", "app"}};
    proto_startup(&b, params, 2);
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
}

/* More logins than the look-ups that run at once (8): a reload that drops auth_query while
 * some run and the rest wait their turn fails every one of those logins with 08006 (connect
 * again), none is looked up under the new file, and lakeproxy goes on serving. */
Test(auth_query, a_reload_dropping_auth_query_fails_the_logins_looking_up,
     .init = start_with_slow_auth_query)
{
    int fds[12];
    for (int i = 0; i < 12; i++) {
        fds[i] = raw_connect(px.port);
        cr_assert(fds[i] >= 0);
        send_dave_startup(fds[i]);
    }
    usleep(300 * 1000);
    wait_slow_look_ups_running(8); /* (and the other four in line behind them) */
    static char yaml[8192];
    proxy_default_yaml(yaml, sizeof(yaml), px.port, "session", 4, 3000, NULL);
    proxy_reload_yaml(&px, yaml);
    for (int i = 0; i < 12; i++) {
        cr_expect_str_eq(raw_expect_error(fds[i]), "08006", "login %d", i);
        close(fds[i]);
    }
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_expect(PQstatus(c) == CONNECTION_OK, "the proxy still serves: %s", PQerrorMessage(c));
    PQfinish(c);
}

/* A reload that keeps auth_query (the pool resized) while look-ups run and others wait their
 * turn fails none of those logins: each is looked up and logs in. */
Test(auth_query, a_reload_keeping_auth_query_lets_the_logins_looking_up_finish,
     .init = start_with_slow_auth_query)
{
    enum { N = 12 };
    pthread_t th[N];
    static struct storm s[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, storm_login, &s[i]), 0);
    wait_slow_look_ups_running(8); /* (and the other four in line behind them) */
    static char yaml[8192];
    proxy_default_yaml(yaml, sizeof(yaml), px.port, "session", 5, 3000,
                       "auth_query:\n  database: app\n"
                       "  query: \"SELECT l.usename, l.passwd FROM public.lp_lookup($1) l, "
                       "pg_sleep(1)\"\n");
    proxy_reload_yaml(&px, yaml);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        cr_expect(s[i].ok, "login %d failed across a reload that kept auth_query: %s", i, s[i].err);
    }
}

/* A session of user through px, asserted open. */
static PGconn *logged_in(const char *user, const char *password)
{
    PGconn *c = proxy_connect(&px, user, password, "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s: %s", user, PQerrorMessage(c));
    return c;
}

/* A session that logged in through auth_query ends (57P01) when a reload drops auth_query: the
 * new file would not let it in; a users: entry's session goes on. */
Test(auth_query, a_reload_dropping_auth_query_closes_its_sessions)
{
    PGconn *looked_up = logged_in("lp_dave", "dave-secret"),
           *listed = logged_in("alice", "alice-secret");
    static char yaml[8192];
    proxy_default_yaml(yaml, sizeof(yaml), px.port, "session", 4, 3000, NULL);
    proxy_reload_yaml(&px, yaml);
    expect_session_closed(looked_up, "this user may no longer log in");
    char *v = query_value(listed, "SELECT 2");
    cr_expect_str_eq(v, "2");
    free(v);
    PQfinish(listed);
}

/* A shutdown right after a reload, with look-ups running and waiting: closing a client whose
 * look-up runs gives its turn to a waiting one, which the reload fails; that must not happen
 * inside the drain's walk of the clients (the one failed can be the walk's next: lakeproxy
 * then spun forever). Here the first waiting login is the second connection accepted. */
Test(auth_query, a_shutdown_after_a_reload_with_look_ups_waiting_exits,
     .init = start_with_slow_auth_query)
{
    int fds[12];
    for (int i = 0; i < 12; i++) {
        fds[i] = raw_connect(px.port);
        cr_assert(fds[i] >= 0);
        usleep(20 * 1000); /* accepted in this order */
    }
    static const int order[] = {0, 2, 3, 4, 5, 6, 7, 8, 1, 9, 10, 11};
    for (int i = 0; i < 12; i++) {
        send_dave_startup(fds[order[i]]);
        usleep(20 * 1000); /* 0 and 2-8 take the eight turns; 1 waits first */
    }
    static char yaml[8192];
    proxy_default_yaml(yaml, sizeof(yaml), px.port, "session", 4, 3000, NULL);
    proxy_reload_yaml(&px, yaml);
    kill(px.pid, SIGTERM);
    proxy_expect_exit_0(&px, 5000);
    for (int i = 0; i < 12; i++)
        close(fds[i]);
}

/* Starts lakeproxy with auth_query and lp_dave, a server role not under users:, in
 * admin.users. */
static void start_with_a_looked_up_admin_name(void)
{
    proxy_start_with(&px, "session", 2, 3000,
                     "admin:\n  users: [lp_dave]\n"
                     "auth_query:\n  database: app\n"
                     "  query: \"SELECT usename, passwd FROM public.lp_lookup($1)\"\n");
}

/* The admin console is opened by users: entries alone (red team 6: a server role named like an
 * admin, its password checked by auth_query, got RELOAD and SHUTDOWN); the same role still
 * logs into a database through auth_query. */
Test(auth_query, the_console_is_never_opened_through_auth_query,
     .init = start_with_a_looked_up_admin_name)
{
    PGconn *c = proxy_connect(&px, "lp_dave", "dave-secret", "lakeproxy", NULL);
    cr_expect(PQstatus(c) != CONNECTION_OK, "lp_dave opened the console through auth_query");
    cr_expect(strstr(PQerrorMessage(c), "password authentication failed"), "%s", PQerrorMessage(c));
    PQfinish(c);
    c = proxy_connect(&px, "lp_dave", "dave-secret", "app", NULL);
    cr_expect(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PQfinish(c);
}

/* auth_query on with from: [10.0.0.0/8]: the tests connect from 127.0.0.1. */
#define AUTH_QUERY_FROM(nets)                                                                      \
    "auth_query:\n  database: app\n"                                                               \
    "  query: \"SELECT usename, passwd FROM public.lp_lookup($1)\"\n"                              \
    "  from: " nets "\n"

static void start_with_auth_query_from_elsewhere(void)
{
    proxy_start_with(&px, "session", 4, 3000, AUTH_QUERY_FROM("[10.0.0.0/8]"));
}

/* A looked-up user from outside auth_query.from fails as a wrong password does (a probe learns
 * neither that the role exists nor whether the password is right); users: entries are not
 * held to it; the log says why. */
Test(auth_query, a_looked_up_user_from_elsewhere_fails_as_a_wrong_password_does,
     .init = start_with_auth_query_from_elsewhere)
{
    char state[6], right[256], wrong[256];
    cr_expect_not(raw_login(px.port, "lp_dave", "dave-secret", "app", state, right, sizeof(right)),
                  "lp_dave logged in from 127.0.0.1");
    cr_expect_str_eq(state, "28P01");
    cr_expect_not(raw_login(px.port, "lp_dave", "not-daves", "app", state, wrong, sizeof(wrong)));
    cr_expect_str_eq(right, wrong, "the right password is told apart from a wrong one");
    cr_expect(raw_login(px.port, "alice", "alice-secret", "app", state, wrong, sizeof(wrong)),
              "alice (a users: entry) was held to auth_query.from: %s %s", state, wrong);
    cr_expect_geq(file_count_lines(px.log, "user \"lp_dave\" may not connect from this address "
                                           "(auth_query.from)"),
                  1, "the log does not say why");
}

/* A reload that sets auth_query.from closes looked-up sessions from elsewhere (57P01 naming
 * it); one from an address it lists, and a users: entry's, go on. */
Test(auth_query, a_reload_setting_auth_query_from_closes_sessions_from_elsewhere)
{
    PGconn *looked_up = logged_in("lp_dave", "dave-secret"),
           *listed = logged_in("alice", "alice-secret");
    static char yaml[8192];
    proxy_default_yaml(yaml, sizeof(yaml), px.port, "session", 4, 3000,
                       AUTH_QUERY_FROM("[127.0.0.0/8]"));
    proxy_reload_yaml(&px, yaml);
    char *v = query_value(looked_up, "SELECT 'from loopback'");
    cr_expect_str_eq(v, "from loopback", "a session from a listed address was closed");
    free(v);
    proxy_default_yaml(yaml, sizeof(yaml), px.port, "session", 4, 3000,
                       AUTH_QUERY_FROM("[10.0.0.0/8, unix]"));
    proxy_reload_yaml(&px, yaml);
    expect_session_closed(looked_up, "auth_query.from");
    v = query_value(listed, "SELECT 2");
    cr_expect_str_eq(v, "2");
    free(v);
    PQfinish(listed);
}
