/* mockws.h: the mock Databricks workspace (tests/lib/mock_workspace.py) from C tests: start it
 * on a free loopback port with the test certificate, steer its failure mode and the identities
 * its SCIM /Me knows, read its call counters, stop it. */
#ifndef LAKEPROXY_TEST_MOCKWS_H
#define LAKEPROXY_TEST_MOCKWS_H

#include <sys/types.h>

struct mock_ws {
    pid_t pid;
    int port;
    char state[400]; /* its state directory (mode, users.json, calls.json, tokens.log) */
};

/* Starts the mock issuing database tokens of life_s seconds, each of which becomes role's
 * only password in the test PostgreSQL. */
void mockws_start(struct mock_ws *m, const char *role, const char *life_s);
void mockws_stop(struct mock_ws *m);

/* Sets the failure mode ("ok", "500", "401", "badjson", "missing", "huge", "timeout", "slow:N"). */
void mockws_mode(const struct mock_ws *m, const char *mode);

/* Sets what /Me answers: json maps bearer tokens to {"userName", "groups", "expires"?}. */
void mockws_users(const struct mock_ws *m, const char *json);

/* A counter from calls.json ("oidc", "database_credentials", "me", "failed", ...). */
int mockws_calls(const struct mock_ws *m, const char *key);

#endif
