/* sidequery.h: one query on a side connection to a database's server, through libpq's
 * non-blocking API driven by the event loop: connect, run one parameterised statement, hand
 * the result to a callback, disconnect. For look-ups that are not any client's traffic
 * (auth_query verifiers, table sizes for the pushdown report). */
#ifndef LAKEPROXY_SIDEQUERY_H
#define LAKEPROXY_SIDEQUERY_H

#include <libpq-fe.h>

#include "objects.h"

struct sidequery;

/* r is the first result (NULL when err says why the look-up failed); it is freed after the
 * call. */
typedef void (*sidequery_done_fn)(void *arg, const PGresult *r, const char *err);

/* Connects to db's server as user with password (the database's TLS settings and connect
 * timeout apply) and runs sql with nparams text parameters. done(arg, ...) is called exactly
 * once, from the event loop, unless sidequery_cancel comes first. NULL when the connection
 * cannot even start (err says why). */
struct sidequery *sidequery_start(struct worker *w, const struct db_config *db, const char *user,
                                  const char *password, const char *appname, const char *sql,
                                  int nparams, const char *const *params, sidequery_done_fn done,
                                  void *arg, char *err, size_t errsz);

void sidequery_cancel(struct sidequery *q);

#endif
