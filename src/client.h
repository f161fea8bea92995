/* client.h: one client connection's life: startup, TLS, authentication, waiting for a
 * server, relaying its messages, and closing. */
#ifndef LAKEPROXY_CLIENT_H
#define LAKEPROXY_CLIENT_H

#include <event2/util.h>
#include <sys/socket.h>

#include "objects.h"

/* Takes ownership of an accepted socket. */
/* Connections client_accept takes past limits.max_clients, for cancel requests only. */
enum { CANCEL_SPARE_CONNECTIONS = 32 };

void client_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen);

/* Sends a connection just accepted a FATAL ErrorResponse 53300 with msg, and closes it. */
void client_refuse(evutil_socket_t fd, const char *msg);

/* A cancel request that came while c waited for its server (to be linked, or to finish the
 * read-back of c's settings) goes to the server now, if a query of c's runs there. */
void client_send_wanted_cancel(struct client *c);

/* client_send_wanted_cancel KEPT_CANCEL_DELAY_MS (50 ms) after the query the cancel was kept for
 * went to the server, so that PostgreSQL has read the query when the cancel reaches it; at
 * once when no timer can be had. */
void client_send_wanted_cancel_soon(struct client *c);

/* c's server is linked and carries c's parameters: finish the login or go on relaying. */
void client_server_ready(struct client *c);

/* Is c's own output above RELAY_HIGH_WATER (a client not reading what it is sent)? Its input
 * then waits, read no further than CLIENT_READ_AHEAD, until the output drains (the write
 * callback): what the proxy answers itself (a Close's, a lone DEALLOCATE's, the admin
 * console's) must not pile up without bound, as rows from its server cannot (server_pump). */
bool client_out_full(const struct client *c);

/* Transaction pooling: the server reported the end of c's transaction; give it back to
 * the pool when nothing of c's is in flight. */
void client_transaction_done(struct client *c);

/* The client's server answered enough of what it owed: a client that stopped reading for a
 * full reply queue reads and relays again. */
void client_queue_room(struct client *c);

/* A statement that may RESET a setting is in the batch c is sending. PostgreSQL returns a
 * setting the client gave at startup to that value at once; lakeproxy learns of the RESET
 * from the server's reply and sets the value again only when the transaction has ended
 * (server_read_back, then the next link or a second round), so a statement pipelined behind
 * it would run under the server's default. So, for a client with startup settings, the Sync
 * or Query that ends the batch arms the reset barrier (client_arm_reset_barrier): the next
 * message waits until the server owes the client nothing and the settings are read back. */
void client_note_may_reset(struct client *c);
void client_arm_reset_barrier(struct client *c);

/* c waited at its reset barrier: goes on once its server owes it nothing more and is not
 * reading its settings back (pumped, or woken for a server). */
void client_reset_wait_over(struct client *c);

/* Resumes c's reading stopped until its statement records are settled
 * (pipeline_stmt_must_wait), once they are. */
void client_stmt_wait_over(struct client *c);

/* The cancel requests for c's server have all arrived (server.c cancel_settled): the statement
 * it held back goes on. */
void client_cancel_wait_over(struct client *c);

/* Transaction pooling: c no longer has a server (given back or gone) between transactions:
 * it is idle (holding no share of large-message memory, not paused), and asks for another
 * when it has sent something meanwhile. */
void client_server_gone_idle(struct client *c);

/* Transaction pooling: c's server died under the statement that opened its transaction.
 * c gets an ERROR and ReadyForQuery 'I' and stays; its next transaction takes a server. */
void client_transaction_lost(struct client *c, const char *sqlstate, const char *msg);

/* What listen.tls of cfg requires that c's connection lacks: TLS (on TCP), or a verified
 * client certificate. Checked at login and again by a reload (worker.c). */
enum tls_lack { TLS_LACKS_NOTHING, TLS_LACKS_TLS, TLS_LACKS_CERT };
enum tls_lack client_tls_lack(const struct config *cfg, const struct client *c);

/* pool.client_idle_timeout_s of c's database when c is logged in to it (0: not timed). */
int client_idle_limit_s(const struct client *c);

/* Is c idle between statements: outside a transaction block, owed nothing, sending nothing,
 * no copy, nothing half-relayed? (pool.client_idle_timeout_s) */
bool client_idle_between_statements(const struct client *c);

/* Sends c a FATAL ErrorResponse and closes it once the error is flushed. */
void client_fail(struct client *c, const char *sqlstate, const char *msg);

/* Ends c by lakeproxy's decision (a reload, KILL, the shutdown's time limit) with FATAL
 * sqlstate msg, as client_fail does; a statement of c's still running on its server is
 * cancelled first, so that it does not go on to commit behind the FATAL (as PostgreSQL's own
 * 57P01 ends a backend's statement), and the message says so (one that ended meanwhile may
 * have taken effect). */
void client_terminate(struct client *c, const char *sqlstate, const char *msg);
/* client_fail, logging `logged` in place of msg (which may quote a value the client sent). */
void client_fail_as(struct client *c, const char *sqlstate, const char *msg, const char *logged);

/* client_fail for a relay that ran out of memory (53200): a message was lost on its way. */
void client_relay_out_of_memory(struct client *c);

/* Closes c now (logging reason); its server goes back to the pool or is closed. */
void client_close(struct client *c, const char *reason);

/* Drives the client -> server relay (after the server's output drained). */
void client_pump(struct client *c);

struct rls_identity;
/* c's identity for row-level-security attributes (pointers into c). */
void client_rls_identity(const struct client *c, struct rls_identity *id);

/* The messages that set c's RLS attributes and role on a server (built once per
 * configuration); NULL with err when c cannot be served. */
const struct buf *client_rls_prefix(struct client *c, char *err, size_t errsz);

/* Brings c's masking rules up to the running configuration (c->mask.n_applied 0: none). */
void client_mask_sync(struct client *c);

/* c's masking class: clients of one class may share server connections (with masking on,
 * state one client leaves on a server, a prepared statement, a cursor, a temporary table or a
 * setting, must never reach a client masked otherwise). Never 0. */
uint64_t client_mask_class(struct client *c);

/* The masking catalog of database entry db (NULL: every one) was read, failed, or was
 * dropped: statements and results of its clients that waited for it go on. */
void client_mask_catalog_read(struct worker *w, const char *db);

/* Routes a CancelRequest carrying the proxy-issued pid/key to the right server backend; true
 * when one is now on its way (client_cancel_delivered(requester) follows). */
bool client_route_cancel(struct worker *w, uint32_t pid, uint32_t key, uint64_t requester);

/* The cancel request that client connection `requester` carried has reached PostgreSQL (or
 * failed): that connection is closed now, as PostgreSQL closes it once it has signalled. */
void client_cancel_delivered(struct worker *w, uint64_t requester);

#endif
