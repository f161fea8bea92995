/* sidequery.h: one query on a side connection to a database's server, through libpq's
 * non-blocking API driven by the event loop: connect, run one parameterised statement (or
 * prepare and describe a list of statements), hand the results to callbacks, disconnect. For
 * look-ups that are not any client's traffic (auth_query verifiers, table sizes for the
 * pushdown report, the masking catalog and the origins of views' columns). */
#ifndef LAKEPROXY_SIDEQUERY_H
#define LAKEPROXY_SIDEQUERY_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "objects.h"

struct sidequery;

/* Who a side connection logs in as. options: server settings in libpq's "options" form (as
 * "-c search_path=pg_catalog"), or NULL. db_credential: the password is the database's own
 * credential (password is ignored): a rotating one's current token, and while its first token
 * is on its way (just after start) the connection waits for it, up to the provider's timeout. */
struct sidequery_login {
    const char *user, *password, *appname, *options;
    bool db_credential;
};

/* r is the first result (NULL when err says why the look-up failed); it is freed after the
 * call. For sidequery_describe: r and err both NULL when every statement was described. */
typedef void (*sidequery_done_fn)(void *arg, const PGresult *r, const char *err);

/* Statement i of sidequery_describe: r (freed after the call) describes its result columns
 * (PQnfields, PQfname, PQftable, PQftablecol); NULL when err says why it could not be
 * prepared. It must not cancel the look-up. */
typedef void (*sidequery_each_fn)(void *arg, int i, const PGresult *r, const char *err);

/* Connects to db's server as login says (the database's TLS settings and connect timeout
 * apply) and runs sql with nparams text parameters. done(arg, ...) is called exactly once,
 * from the event loop, unless sidequery_cancel comes first. NULL when the connection cannot
 * even start (err says why). */
struct sidequery *sidequery_start(struct worker *w, const struct db_config *db,
                                  const struct sidequery_login *login, const char *sql, int nparams,
                                  const char *const *params, sidequery_done_fn done, void *arg,
                                  char *err, size_t errsz);

/* Like sidequery_start, but prepares each of the n statements in turn (unnamed, nothing is
 * executed) and describes it: each(arg, i, ...) for every statement, then done(arg, NULL,
 * NULL); or done(arg, NULL, err) when the connection fails (later statements get no each).
 * The timeout starts afresh at each statement. */
struct sidequery *sidequery_describe(struct worker *w, const struct db_config *db,
                                     const struct sidequery_login *login, const char *const *sqls,
                                     int n, sidequery_each_fn each, sidequery_done_fn done,
                                     void *arg, char *err, size_t errsz);

void sidequery_cancel(struct sidequery *q);

#endif
