/* authquery.h: auth_query: look up a client's password verifier on the server through
 * libpq, asynchronously on the event loop, as PgBouncer's auth_query does. */
#ifndef LAKEPROXY_AUTHQUERY_H
#define LAKEPROXY_AUTHQUERY_H

#include "objects.h"

struct authq;

/* What a look-up found: the verifier text (SCRAM-SHA-256$... or md5...), NULL when the user
 * has none; or an error (err non-NULL) when the look-up itself failed. */
typedef void (*authq_done_fn)(struct client *c, const char *verifier, const char *err);

/* Look-ups under way at once, each on a server connection of its own: the rest wait their turn
 * in arrival order, so that a storm of logins (hostile or not) cannot open a server connection
 * per login. */
#define AUTHQ_MAX_RUNNING 8

/* Starts looking up c->user, or queues it behind AUTHQ_MAX_RUNNING others; done is called
 * exactly once unless authquery_cancel comes first. NULL when it cannot start. */
struct authq *authquery_start(struct worker *w, struct client *c, authq_done_fn done);

/* Abandons a look-up (the client left). Never answers another client's look-up inside the
 * call: a turn it frees is taken on a later loop turn. */
void authquery_cancel(struct authq *q);

/* Frees the worker's look-up event, once every client is gone and the loop has run out. */
void authquery_stop(struct worker *w);

#endif
