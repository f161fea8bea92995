/* takeover.h: zero-downtime restart. A running lakeproxy listens on listen.takeover_socket (a
 * Unix-domain socket, mode 0600); a new one started with --takeover connects there and
 * receives the very listening sockets (SCM_RIGHTS), so no queued connection is lost; once it
 * accepts on them it says so, and the old one stops accepting and serves its connected clients
 * until they leave.
 *
 * The exchange, one short line each way (at most TAKEOVER_LINE_MAX bytes):
 *   new -> old  "TAKEOVER 1"                       asks for the sockets (protocol version 1)
 *   old -> new  "SOCKETS <pid> <tag>..."           one descriptor per tag: listen, unix, http
 *   new -> old  "DONE"                             it accepts on them now
 *   old -> new  "BYE"                              it stopped accepting
 * or old -> new "ERROR <reason>" instead of SOCKETS, or instead of BYE when it gave up the
 * exchange. Anything else, end of file or a silence of TAKEOVER_TIMEOUT_S ends the exchange;
 * the old process then goes on accepting, and the new one exits unless the old one has ended.
 * An old process that stops (SIGTERM, SIGINT) after sending SOCKETS says BYE at once: the new
 * one accepts then, whenever it is ready. */
#ifndef LAKEPROXY_TAKEOVER_H
#define LAKEPROXY_TAKEOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"
#include "objects.h"

#define TAKEOVER_LINE_MAX 128
#define TAKEOVER_TIMEOUT_S 30

/* What a new process received from the one it takes over from. Descriptors are -1 when the
 * old process had no such socket or it did not match this configuration's address. */
struct takeover_fds {
    int conn;      /* the exchange with the old process, until takeover_finish */
    int listen_fd; /* listen.host:listen.port */
    int unix_fd;   /* listen.unix_socket_dir's socket */
    int http_fd;   /* admin.http */
    pid_t old_pid;
    char stale_unix[TAKEOVER_SOCKET_MAX]; /* the file of its Unix socket when this configuration
                                             does not use it ("": none), removed once it stopped
                                             accepting */
};

/* New process: connects to cfg's takeover socket and receives the listening sockets that
 * match cfg's addresses (those that do not are closed). False with err when there is no
 * running lakeproxy there or the exchange fails; nothing is left open then. */
bool takeover_receive(const struct config *cfg, struct takeover_fds *t, char *err, size_t errsz);

/* New process, before DONE: has the old one given the exchange up meanwhile (it said ERROR:
 * its time limit)? Never waits. */
bool takeover_given_up(const struct takeover_fds *t);

/* New process, ready to accept on the sockets: says DONE, waits (bounded) for the old one to
 * stop accepting, then takeover_abandon. False with err when it did not confirm and still
 * runs (it abandoned the exchange, say after TAKEOVER_TIMEOUT_S): it accepts still, so this
 * process must not. */
bool takeover_finish(struct takeover_fds *t, char *err, size_t errsz);

/* Closes the exchange (without DONE: the old process goes on accepting) and any descriptor
 * still in t. */
void takeover_abandon(struct takeover_fds *t);

/* Any process: serves handover requests on listen.takeover_socket (nothing when unset). A path
 * that exists and is not a socket of this user is refused. False with err on failure. */
bool takeover_listen(struct worker *w, char *err, size_t errsz);

/* Closes the control socket; removes its file unless another process has replaced it. */
void takeover_close(struct worker *w);

#endif
