/* worker.h: one event loop with its listener, pools and connections. */
#ifndef LAKEPROXY_WORKER_H
#define LAKEPROXY_WORKER_H

#include <stddef.h>
#include <sys/types.h>

#include "objects.h"

struct takeover_fds;

/* Builds a worker for cfg (takes ownership): TLS contexts, user verifiers, the listener (on
 * the sockets in inherited, taken over from a running lakeproxy, where it has them; those it
 * uses are set to -1 there; NULL: bind them all here). NULL with err filled on failure. */
struct worker *worker_new(struct config *cfg, struct takeover_fds *inherited, char *err,
                          size_t errsz);

/* Runs the loop until SIGINT or SIGTERM; returns the exit status. */
int worker_run(struct worker *w);

/* SIGHUP: loads the configuration file again; a file with errors is refused (each error
 * logged) and the running configuration kept. No connection is dropped. */
void worker_reload(struct worker *w);

/* A reload came during c's login: may it go on under the new configuration? Only if its user
 * still logs in the same way (a password exchange against the very verifier it checked, a
 * token at the same workspace), from its address, over TLS the new listen.tls accepts; then
 * its login counts as begun under this configuration. */
bool worker_login_holds(const struct worker *w, struct client *c);

/* SIGTERM: stop accepting, close clients between transactions, let open transactions finish
 * for up to limits.shutdown_timeout_s, then stop the loop. */
void worker_start_drain(struct worker *w);

/* A new process accepts on our listening sockets now (pid to): stop accepting, serve the
 * connected clients until they leave or limits.shutdown_timeout_s passes (then drain as on
 * SIGTERM), and stop the loop once none is left. */
void worker_hand_over(struct worker *w, pid_t to);

/* Stops the loop once a drain or a handed-over worker has no client left. */
void worker_check_drained(struct worker *w);

/* Closes every connection and frees everything. */
void worker_free(struct worker *w);

#endif
