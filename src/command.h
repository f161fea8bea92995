/* command.h: runs a credential command as a child process on the event loop: its stdout is
 * collected (bounded), a deadline kills it, and the caller hears once how it ended. */
#ifndef LAKEPROXY_COMMAND_H
#define LAKEPROXY_COMMAND_H

#include <event2/event.h>
#include <stddef.h>

struct command;

/* Called once. ok: the command exited 0 within its time; out/len is its stdout (wiped after
 * the call). Otherwise err says why (exit status with the first line of stderr, signal,
 * timeout, output too large). The handle is invalid once this is called. */
typedef void (*command_done_fn)(void *arg, int ok, const char *out, size_t len, const char *err);

/* Starts argv (argv[0] looked up in PATH, no shell), or with shell != NULL "/bin/sh -c shell".
 * stdin is /dev/null; the environment is the proxy's without the variables named in hide
 * (NULL-terminated, may be NULL): secrets the command has no business with. NULL with err
 * filled when it cannot start. */
struct command *command_start(struct event_base *base, char *const *argv, const char *shell,
                              const char *const *hide, int timeout_ms, size_t max_out,
                              command_done_fn done, void *arg, char *err, size_t errsz);

/* Kills a running command and reaps it; done is never called. */
void command_cancel(struct command *c);

#endif
