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

/* SIGHUP: loads the configuration file again; a file with errors is refused (each error
 * logged) and the running configuration kept. No connection is dropped. */
void worker_reload(struct worker *w);

/* SIGTERM: stop accepting, close clients between transactions, let open transactions finish
 * for up to limits.shutdown_timeout_s, then stop the loop. */
void worker_start_drain(struct worker *w);

/* Stops the loop once a drain has no client left. */
void worker_check_drained(struct worker *w);

/* Closes every connection and frees everything. */
void worker_free(struct worker *w);

#endif
