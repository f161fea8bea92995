/* testload.h: background client load for integration tests. */
#ifndef LAKEPROXY_TEST_TESTLOAD_H
#define LAKEPROXY_TEST_TESTLOAD_H

#include <stdbool.h>

struct proxy;

/* What load_run saw: successful logins and queries, failed ones. */
struct load_result {
    int connections, queries, errors;
    char first_error[512];
};

/* Load running in the background (load_start ... load_stop). */
struct load;

/* load_run's clients, started in the background; out is filled in as they go. */
struct load *load_start(const struct proxy *p, const char *user, const char *db, int clients,
                        struct load_result *out);

/* The totals so far. */
struct load_result load_now(struct load *l);

/* Stops the clients and waits for them; out holds the totals then. */
void load_stop(struct load *l);

/* `clients` threads log in to db as user (any password) through p and run a small SELECT in a
 * loop for `seconds`, reconnecting every 40 queries; every failed login or query is counted. */
void load_run(const struct proxy *p, const char *user, const char *db, int clients, int seconds,
              struct load_result *out);

#endif
