/* test_auth_query.c: users not listed in the YAML are checked against verifiers looked up on
 * the server (auth_query), SCRAM and md5 alike, without revealing which users exist. */
#include <criterion/criterion.h>
#include <string.h>

#include "harness.h"

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
