/* listener.h: the listening socket; accepted connections become clients. */
#ifndef LAKEPROXY_LISTENER_H
#define LAKEPROXY_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "objects.h"

struct addrinfo;
struct config;

/* Starts accepting: on inherited_fd, a listening socket handed over by the process this one
 * takes over from, or (inherited_fd < 0) on listen.host:listen.port bound here; and likewise
 * on inherited_unix_fd or the Unix socket of listen.unix_socket_dir when that is set. Takes
 * the inherited descriptors (closed on failure). False with err on failure. */
bool listener_start(struct worker *w, int inherited_fd, int inherited_unix_fd, char *err,
                    size_t errsz);

/* The listening socket's descriptor, -1 when not accepting. */
int listener_fd(const struct worker *w);

/* The Unix listening socket's descriptor, -1 when none or not accepting. */
int listener_unix_fd(const struct worker *w);

/* Stops accepting and closes this process's descriptors of the listening sockets; the Unix
 * socket's file is removed too, unless a new process took the socket over. */
void listener_stop(struct worker *w);

/* Raises this process's soft descriptor limit (up to the hard one) to what cfg's clients and
 * servers may need at once, and warns when the hard limit is too low for that. */
void listener_fit_descriptor_limit(const struct config *cfg);

/* getaddrinfo for a passive TCP socket on host (NULL: any address) and port; 0 or EAI_*. */
int listener_resolve(const char *host, int port, struct addrinfo **out);

/* After a takeover the running process confirmed: the Unix socket file taken over is this
 * process's now (removed when it stops), and gets this configuration's
 * listen.unix_socket_mode. */
void listener_unix_taken_over(struct worker *w);

#endif
