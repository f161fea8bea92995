/* worker.h: one event loop with its listener, pools and connections. */
#ifndef LAKEPROXY_WORKER_H
#define LAKEPROXY_WORKER_H

#include <stddef.h>

#include "objects.h"

/* Builds a worker for cfg (takes ownership): TLS contexts, user verifiers, the listener.
 * NULL with err filled on failure. */
struct worker *worker_new(struct config *cfg, char *err, size_t errsz);

/* Runs the loop until SIGINT or SIGTERM; returns the exit status. */
int worker_run(struct worker *w);

/* Closes every connection and frees everything. */
void worker_free(struct worker *w);

#endif
