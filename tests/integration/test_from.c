/* test_from.c: users.X.from: a user may connect only from the addresses its entry lists. From
 * elsewhere its login fails exactly as a wrong password does (a probe learns neither that the
 * name exists nor whether its password is right) while the log says why; a reload that takes
 * an address away closes the sessions that came from it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static struct proxy px;
static char yaml[16384];

/* dave may connect from 10.0.0.0/8 only, erin from loopback (and the Unix socket), frank
 * (trust) from ::1 only; the tests connect from 127.0.0.1. */
#define USERS(erin_from)                                                                           \
    "  dave: {password: dave-pw, from: [10.0.0.0/8, \"2001:db8::/32\"]}\n"                         \
    "  erin: {password: erin-pw, from: " erin_from "}\n"                                           \
    "  frank: {auth: trust, from: [\"::1\"]}\n"                                                    \
    "admin:\n  users: [carol]\n"

static void start_from(void)
{
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 3000,
                       USERS("[127.0.0.0/8, unix]"));
    proxy_start_yaml(&px, port, yaml);
}

static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(from, .init = start_from, .fini = stop_proxy, .timeout = 60);

/* The error a login as user with password gets ("" when it logs in). */
static void login_error(const char *user, const char *password, char *out, size_t outsz)
{
    PGconn *c = proxy_connect(&px, user, password, "app", NULL);
    snprintf(out, outsz, "%s", PQstatus(c) == CONNECTION_OK ? "" : PQerrorMessage(c));
    PQfinish(c);
}

Test(from, a_user_from_elsewhere_fails_as_a_wrong_password_does)
{
    char right[512], wrong[512], erin[512];
    login_error("dave", "dave-pw", right, sizeof(right));
    login_error("dave", "not-daves", wrong, sizeof(wrong));
    login_error("erin", "erin-pw", erin, sizeof(erin));
    cr_expect(strstr(right, "password authentication failed for user \"dave\""),
              "dave from 127.0.0.1, right password: %s", right);
    cr_expect_str_eq(right, wrong, "the right password is told apart from a wrong one");
    cr_expect_str_eq(erin, "", "erin, from an address of hers, could not log in");
    cr_expect_geq(file_count_lines(px.log, "user \"dave\" may not connect from this address "
                                           "(users.dave.from)"),
                  1, "the log does not say why");
    cr_expect_eq(file_count_lines(px.log, "dave-pw"), 0, "a password in the log");
}

Test(from, a_trust_user_from_elsewhere_must_prove_a_password_it_has_not)
{
    char err[512];
    login_error("frank", "anything", err, sizeof(err));
    cr_expect(strstr(err, "password authentication failed for user \"frank\""),
              "frank (trust, ::1 only) from 127.0.0.1: %s", err);
    login_error("carol", "anything", err, sizeof(err));
    cr_expect_str_eq(err, "", "carol (trust, no from:) could not log in");
}

/* Narrowing erin's from: to 10.0.0.0/8 closes her session from 127.0.0.1 at the reload, naming
 * the setting, and her next login fails; alice (no from:) stays. */
Test(from, a_reload_that_takes_an_address_away_closes_its_sessions)
{
    PGconn *e = proxy_connect(&px, "erin", "erin-pw", "app", NULL);
    cr_assert(PQstatus(e) == CONNECTION_OK, "%s", PQerrorMessage(e));
    PGconn *a = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(a) == CONNECTION_OK, "%s", PQerrorMessage(a));
    char narrowed[16384];
    proxy_default_yaml(narrowed, sizeof(narrowed), px.port, "transaction", 2, 3000,
                       USERS("[10.0.0.0/8]"));
    proxy_reload_yaml(&px, narrowed);
    expect_session_closed(e, "users.erin.from");
    EXPECT_QUERY_VALUE(a, "SELECT 'alice stays'", "alice stays", "alice was closed");
    PQfinish(a);
    char err[512];
    login_error("erin", "erin-pw", err, sizeof(err));
    cr_expect(strstr(err, "password authentication failed"), "erin logs in again: %s", err);
}

/* The value of SHOW CONFIG's row key ("" when there is none). */
static void config_value(const char *key, char *out, size_t outsz)
{
    PGconn *adm = proxy_connect(&px, "carol", "unused", "lakeproxy", NULL);
    cr_assert(PQstatus(adm) == CONNECTION_OK, "%s", PQerrorMessage(adm));
    PGresult *r = admin_show(adm, "SHOW CONFIG");
    out[0] = '\0';
    for (int i = 0; i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, 0), key) == 0)
            snprintf(out, outsz, "%s", PQgetvalue(r, i, 1));
    PQclear(r);
    PQfinish(adm);
}

/* An admin checks where each user may connect from in SHOW CONFIG, as the file wrote it. */
Test(from, show_config_lists_where_each_user_may_connect_from)
{
    char v[512];
    config_value("users.dave.from", v, sizeof(v));
    cr_expect_str_eq(v, "10.0.0.0/8,2001:db8::/32");
    config_value("users.erin.from", v, sizeof(v));
    cr_expect_str_eq(v, "127.0.0.0/8,unix");
    config_value("users.frank.from", v, sizeof(v));
    cr_expect_str_eq(v, "::1");
    config_value("users.alice.from", v, sizeof(v));
    cr_expect_str_eq(v, "", "alice (anywhere) has a row: %s", v);
}
