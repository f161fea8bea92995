/* sidebyside.h: tests that run the same steps against PostgreSQL directly and through a
 * lakeproxy of one server, in session or transaction pooling, and expect the same answers
 * from both (the red team suites). A target says which one the steps are talking to. */
#ifndef LP_SIDEBYSIDE_H
#define LP_SIDEBYSIDE_H

#include <libpq-fe.h>

struct proxy;
struct tcp_relay;

struct target {
    const struct proxy *p;   /* NULL: PostgreSQL directly */
    const char *name;        /* for messages: "PostgreSQL", or the pooling mode */
    const char *db;          /* lakeproxy's database (NULL: "app") */
    struct tcp_relay *relay; /* what its server connections pass (NULL: none) */
};

/* A client with extra conninfo (startup options; NULL: none), as alice through lakeproxy
 * (database app) or as postgres directly (lp_test); fails the test when it cannot connect. */
PGconn *open_with(const struct target *t, const char *extra);

/* Runs sql on c; fails the test unless it succeeded. */
void run_sql(const struct target *t, PGconn *c, const char *sql);

/* The last result's first value of sql (malloc'd), "(no row)", or an error text. */
char *value_of(const struct target *t, PGconn *c, const char *sql);

/* Queues sql on c in pipeline mode (extended protocol, no parameters); fails the test if libpq
 * refuses it. */
void send_pipelined(PGconn *c, const char *sql);

/* Starts p, a lakeproxy of mode ("session" or "transaction") with a pool of size servers. */
void start_mode(struct proxy *p, const char *mode, int size);

/* steps on PostgreSQL, then through a lakeproxy of mode ("session" or "transaction") with a
 * pool of size servers, started for them and stopped after. */
void on_postgresql_and_through(const char *mode, int size, void (*steps)(const struct target *));

/* The same, with lakeproxy's server connections passing a TCP relay (t->relay, tcprelay.h)
 * that the steps can slow down. */
void on_postgresql_and_through_relay(const char *mode, int size,
                                     void (*steps)(const struct target *));

/* Two tests of suite from steps: through a transaction-pooled and a session-pooled lakeproxy
 * of one server (txn_NAME, session_NAME), each after the same steps on PostgreSQL. */
#define IN_BOTH_MODES(suite, name, steps)                                                          \
    Test(suite, txn_##name)                                                                        \
    {                                                                                              \
        on_postgresql_and_through("transaction", 1, steps);                                        \
    }                                                                                              \
    Test(suite, session_##name)                                                                    \
    {                                                                                              \
        on_postgresql_and_through("session", 1, steps);                                            \
    }

#endif
