/* sidebyside.c: the same steps on PostgreSQL and through lakeproxy (sidebyside.h). */
#include "sidebyside.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tcprelay.h"

PGconn *open_with(const struct target *t, const char *extra)
{
    PGconn *c;
    if (t->p) {
        c = proxy_connect(t->p, "alice", "alice-secret", t->db ? t->db : "app", extra);
    } else {
        char ci[1024];
        snprintf(ci, sizeof(ci), "host=%s port=%s user=postgres dbname=lp_test %s",
                 env_need("LP_PGSOCK"), env_need("LP_PGPORT"), extra ? extra : "");
        c = PQconnectdb(ci);
    }
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s: %s", t->name, PQerrorMessage(c));
    return c;
}

void run_sql(const struct target *t, PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
              "%s: %s: %s", t->name, sql, PQerrorMessage(c));
    PQclear(r);
}

char *value_of(const struct target *t, PGconn *c, const char *sql)
{
    (void)t;
    PGresult *r = PQexec(c, sql);
    char *v;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
        v = strdup(PQgetvalue(r, 0, 0));
    else if (PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK)
        v = strdup("(no row)");
    else {
        char buf[512];
        snprintf(buf, sizeof(buf), "(error: %s)", PQerrorMessage(c));
        v = strdup(buf);
    }
    PQclear(r);
    return v;
}

void send_pipelined(PGconn *c, const char *sql)
{
    cr_assert(PQsendQueryParams(c, sql, 0, NULL, NULL, NULL, NULL, 0), "%s", PQerrorMessage(c));
}

void start_mode(struct proxy *p, const char *mode, int size)
{
    static char yaml[8192];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, mode, size, 10000, NULL);
    proxy_start_yaml(p, port, yaml);
}

void on_postgresql_and_through(const char *mode, int size, void (*steps)(const struct target *))
{
    struct target direct = {.p = NULL, .name = "PostgreSQL"};
    steps(&direct);
    struct proxy p;
    start_mode(&p, mode, size);
    struct target through = {.p = &p, .name = mode};
    steps(&through);
    proxy_stop(&p);
}

void on_postgresql_and_through_relay(const char *mode, int size,
                                     void (*steps)(const struct target *))
{
    struct target direct = {.p = NULL, .name = "PostgreSQL"};
    steps(&direct);
    static char yaml[8192];
    char entry[512];
    int port = free_port(), relay_port = free_port();
    struct tcp_relay *relay = tcp_relay_start("127.0.0.1", relay_port, atoi(env_need("LP_PGPORT")));
    proxy_default_yaml(yaml, sizeof(yaml), port, mode, size, 10000, NULL);
    snprintf(entry, sizeof(entry),
             "  relayed:\n    host: 127.0.0.1\n    port: %d\n    dbname: lp_test\n"
             "    user: lp_server\n    password: server-secret\n    tls: disable\n"
             "    pool:\n      mode: %s\n      size: %d\n",
             relay_port, mode, size);
    yaml_add_database(yaml, sizeof(yaml), entry);
    struct proxy p;
    proxy_start_yaml(&p, port, yaml);
    struct target through = {.p = &p, .name = mode, .db = "relayed", .relay = relay};
    steps(&through);
    proxy_stop(&p);
    tcp_relay_stop(relay);
}
