/* poolfix.h: fixtures shared by test files that run one lakeproxy per test (red teams
 * 23, 25 and 27): px pooling database app, its configuration in yaml, started in transaction or
 * session mode with the admin users the includer names in ADMIN (defined before the include;
 * a YAML admin: section). Include once per test file: the definitions are static (inline: a
 * file need not use them all). */
#ifndef LAKEPROXY_TEST_POOLFIX_H
#define LAKEPROXY_TEST_POOLFIX_H

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <stdio.h>

#include "harness.h"

#ifndef ADMIN
#error "define ADMIN (a YAML admin: section) before including poolfix.h"
#endif

static struct proxy px;
static char yaml[16384];

/* lakeproxy in mode with pool size and extra YAML (NULL: none) after ADMIN. */
static inline void start(const char *mode, int size, const char *extra)
{
    char ex[2048];
    int port = free_port();
    snprintf(ex, sizeof(ex), ADMIN "%s", extra ? extra : "");
    proxy_default_yaml(yaml, sizeof(yaml), port, mode, size, 20000, ex);
    proxy_start_yaml(&px, port, yaml);
}
static inline void start_txn1(void)
{
    start("transaction", 1, NULL);
}
static inline void start_txn2(void)
{
    start("transaction", 2, NULL);
}
static inline void start_session(void)
{
    start("session", 4, NULL);
}
/* transaction pooling at limits.max_clients 3 */
static inline void start_full(void)
{
    start("transaction", 2, "limits:\n  max_clients: 3\n");
}
static inline void stop_proxy(void)
{
    proxy_stop(&px);
}

/* a session of alice (password) on app; fails the test when it cannot log in */
static inline PGconn *alice(void)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

#endif
