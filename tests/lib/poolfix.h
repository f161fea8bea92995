/* poolfix.h: fixtures shared by test files that run one lakeproxy per test (red teams
 * 23, 25 and 27): px pooling database app, its configuration in yaml, started in transaction or
 * session mode with the admin users the includer names in ADMIN (defined before the include;
 * a YAML admin: section). Include once per test file: the definitions are static (inline: a
 * file need not use them all). */
#ifndef LAKEPROXY_TEST_POOLFIX_H
#define LAKEPROXY_TEST_POOLFIX_H

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "harness.h"
#include "tcprelay.h"

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
/* lakeproxy with database rz (a pool of size in mode, clients waiting at most wait_ms,
 * connections timing out after 1 s) reaching PostgreSQL through a new TCP relay, returned
 * (its port into *relay_port when not NULL); extra goes first after the default
 * configuration (user lines, then sections), then ADMIN. */
static inline struct tcp_relay *start_relayed_rz(const char *mode, int size, const char *extra,
                                                 int wait_ms, int *relay_port)
{
    int rport = free_port(), port = free_port();
    struct tcp_relay *r = tcp_relay_start("127.0.0.1", rport, atoi(env_need("LP_PGPORT")));
    char ex[4096], entry[640];
    snprintf(ex, sizeof(ex), "%s" ADMIN, extra ? extra : "");
    proxy_default_yaml(yaml, sizeof(yaml), port, mode, 2, wait_ms, ex);
    snprintf(entry, sizeof(entry),
             "  rz:\n    host: 127.0.0.1\n    port: %d\n    dbname: lp_test\n"
             "    user: lp_server\n    password: server-secret\n    tls: disable\n"
             "    pool:\n      mode: %s\n      size: %d\n      max_wait_ms: %d\n"
             "      connect_timeout_ms: 1000\n",
             rport, mode, size, wait_ms);
    yaml_add_database(yaml, sizeof(yaml), entry);
    proxy_start_yaml(&px, port, yaml);
    if (relay_port)
        *relay_port = rport;
    return r;
}

/* Two tenants, t1 and t2 (password pw), under rls: on database rz with their roles switched:
 * extra YAML for start_relayed_rz. */
#define RZ_RLS_TENANTS                                                                             \
    "  t1: {password: pw, attributes: {tenant_id: \"1\"}}\n"                                       \
    "  t2: {password: pw, attributes: {tenant_id: \"2\"}}\n"                                       \
    "rls:\n  prefix: app\n  databases: [rz]\n  switch_role: true\n"                                \
    "  default_role: lp_tenant\n"                                                                  \
    "  attributes: {tenant_id: attribute, user: user}\n"

/* Stops lakeproxy, then the relay *r (if any), which is NULL after. */
static inline void stop_relayed(struct tcp_relay **r)
{
    proxy_stop(&px);
    if (*r)
        tcp_relay_stop(*r);
    *r = NULL;
}

static inline bool proxy_alive(void)
{
    return px.pid > 0 && kill(px.pid, 0) == 0;
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
