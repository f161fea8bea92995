/* authquery.h: auth_query: look up a client's password verifier on the server through
 * libpq, asynchronously on the event loop, as PgBouncer's auth_query does. */
#ifndef LAKEPROXY_AUTHQUERY_H
#define LAKEPROXY_AUTHQUERY_H

#include "objects.h"

struct authq;

/* What a look-up found: the verifier text (SCRAM-SHA-256$... or md5...), NULL when the user
 * has none; or an error (err non-NULL) when the look-up itself failed. */
typedef void (*authq_done_fn)(struct client *c, const char *verifier, const char *err);

/* Starts looking up c->user; done is called exactly once unless authquery_cancel comes first. */
struct authq *authquery_start(struct worker *w, struct client *c, authq_done_fn done);

/* Abandons a look-up (the client left). */
void authquery_cancel(struct authq *q);

#endif
