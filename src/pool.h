/* pool.h: pools of server connections keyed by database entry: checkout, wait queue with
 * timeout, return, and the reaction to servers that fail to log in. */
#ifndef LAKEPROXY_POOL_H
#define LAKEPROXY_POOL_H

#include "objects.h"

/* The pool of the database entry named name, NULL when it has none yet. */
struct pool *pool_find(struct worker *w, const char *name);

/* The pool for db, created on first use; NULL if its TLS set-up fails (err says why). */
struct pool *pool_get(struct worker *w, const struct db_config *db, char *err, size_t errsz);

/* Gives c a server now, or queues it (CL_WAITING) until one is ready or max_wait_ms passes. */
void pool_request(struct pool *p, struct client *c);

/* c's server closed before serving it (its liveness check failed): c gets an idle server or
 * waits again, ahead of those who asked after it (a draining proxy lets it go instead). */
void pool_request_again(struct client *c);

/* Takes c off the wait queue (it disconnected while waiting). */
void pool_forget_client(struct client *c);

/* s finished resetting or was given back: it goes idle, and when clients wait, idle servers
 * are handed to them, oldest first, once the current loop turn's events are handled. */
void pool_server_ready(struct server *s);
/* s logged in: the database takes logins again, so the pool's login back-off is over (a server
 * merely given back says nothing about new logins); then as pool_server_ready. */
void pool_server_logged_in(struct server *s);

/* A server could not connect or log in: remember why and retry with backoff while clients
 * wait (they get the reason if their max_wait_ms runs out first). */
void pool_server_failed(struct pool *p, const char *sqlstate, const char *msg,
                        unsigned cred_generation);

/* A credential fetch for database db_name ended (ok or not): retry logins that waited for it,
 * or tell waiting clients when no valid credential is left. */
void pool_credential_event(struct worker *w, const char *db_name, bool ok);

/* Once a second: close servers idle longer than idle_timeout_s (keeping pool.min) or older
 * than lifetime_s, and open connections up to pool.min. */
void pool_janitor(struct worker *w);

/* Opens server connections while clients wait for more than are on their way. */
void pool_spawn_for_waiters(struct pool *p);

/* Reload: resolves the pool's host again (DNS or /etc/hosts may have changed) and retires
 * the servers connected to an address it no longer resolves to. */
void pool_recheck_address(struct pool *p);

/* PAUSE holds waiting clients (no timeout) until RESUME hands servers out again; after it each
 * waits pool.max_wait_ms at most, counted from the RESUME. */
void pool_set_paused(struct pool *p, bool paused);

/* p's pool.max_wait_ms changed (a reload): its waiters wait what is left of the new limit,
 * counted from when they began waiting (or from a RESUME); one that waited longer times out
 * at once. */
void pool_max_wait_changed(struct pool *p);

/* Retires every server of p (bumps its generation): idle ones close now, with reason why (a
 * static string); busy ones when their client lets them go (server_release), and one logging
 * in now after its first use. The caller opens what waiting clients need (pool_spawn_for_waiters)
 * once p points where new servers should connect. */
void pool_retire_servers(struct pool *p, const char *why);

/* Closes every server of p now (idle, busy, logging in), with reason. */
void pool_close_servers(struct pool *p, const char *reason);

/* Moves s onto the pool list that matches its state. */
void pool_place_server(struct server *s);

/* Frees every pool and closes all their servers (at exit). */
void pool_free_all(struct worker *w);

#endif
