/* server.h: one server connection's life: connect, TLS, login with the current credential,
 * applying a client's session parameters, relaying results to it, reading back the settings
 * a carried SET changed, reset and close. */
#ifndef LAKEPROXY_SERVER_H
#define LAKEPROXY_SERVER_H

#include "objects.h"

/* Starts a new connection for pool p (state SV_CONNECTING, on p->connecting). Reports back
 * through pool_server_ready() or pool_server_failed(). */
struct server *server_connect(struct pool *p);

/* Hands s to client c: applies c's session parameters first if they differ, then calls
 * client_server_ready(c). */
void server_link(struct server *s, struct client *c);

/* Hands long-idle server s (already SV_CHECKING) to c only after it answers an empty query
 * within pool.connect_timeout_ms; otherwise s is closed and c asks the pool again. */
void server_check_then_link(struct server *s, struct client *c);

/* May a setting the client gave at startup have been RESET on s since it was last read back
 * (carried and carried_reset)? Session pooling then stops at the end of the transaction to
 * read it back (server_read_back). */
bool server_may_hold_reset(const struct server *s);

/* Its client's transaction is over (s clean): when a carried SET or RESET may have changed
 * settings during it, s reads back what they are now (SV_READBACK) before the client's
 * settings take them and client_transaction_done is called again; true then (also when s
 * failed and was closed: the client is idle). False when there is nothing to read back. */
bool server_read_back(struct server *s);

/* Its client has gone: reset and return s to the pool when it is clean, else close it. */
void server_unlink(struct server *s);

/* Closes s now (logging reason), removes it from its pool and frees it later. */
void server_close(struct server *s, const char *reason);

/* Drives the server -> client relay (after the client's output drained). */
void server_pump(struct server *s);

/* Sends a CancelRequest for s's backend on a fresh connection to s's server, unless one is
 * already on its way (so at most one cancel connection per server: bounded). s serves no other
 * client until it has arrived. */
bool server_send_cancel(struct server *s, uint64_t requester);

/* The connection is clean enough to give to another client: idle, nothing in flight, no
 * copy going on (an extended-protocol COPY's Sync, ignored by PostgreSQL, leaves nothing
 * owed), at a message boundary in both directions. */
bool server_is_clean(const struct server *s);

/* Is s's client idle inside a transaction block: the server owes it nothing, no copy is going
 * on, no extended-protocol batch is open (an Execute behind a Flush may be running), and the
 * client is not in the middle of sending a message (nor has one waiting to be read)?
 * (pool.idle_transaction_timeout_s) */
bool server_idle_in_transaction(const struct server *s);

/* Is a statement of s's client running on it: a ReadyForQuery owed, or an extended-protocol
 * batch open (an Execute behind a Flush may run: lakeproxy cannot tell), and the server not
 * waiting for the client's copy data (until its CopyDone)? (pool.query_timeout_s) */
bool server_running_statement(const struct server *s);

/* Is s, its client gone, waiting for the answers to what it was left with, or to its reset
 * (a drain behind a departed client, a ROLLBACK, DISCARD ALL)? (pool.query_timeout_s: a server
 * that stopped answering, or a statement that outlived its cancel, must not hold the slot.) */
bool server_left_waiting(const struct server *s);

/* Closes s, which did not answer in time, after sending a cancel request for its backend
 * (unless one is on its way) so that what it runs does not go on holding locks. */
void server_close_unanswered(struct server *s, const char *why);

/* s's client's statement is to end (it ran past pool.query_timeout_s, or lakeproxy ends the
 * client): PostgreSQL is asked to cancel it and the client is closed with FATAL sqlstate msg
 * (logged goes to the log). When a message to the client is half relayed, the rest of it goes
 * first (an ErrorResponse inside it would be garbage), for at most SERVER_ENDING_WAIT_MS; a
 * second end meanwhile, or that wait run out, closes the client without a word. */
void server_end_statement(struct server *s, const char *sqlstate, const char *msg,
                          const char *logged);

#define SERVER_ENDING_WAIT_MS 5000

/* The janitor's look at s: an end put off (server_end_statement) past SERVER_ENDING_WAIT_MS,
 * its client not reading the rest of the message, closes the client without a word. */
void server_check_ending(struct server *s, int64_t now_ms);

/* The replies owed by s can no longer be counted (why says how it was found): logged once; s
 * stays with its client and is closed when the client leaves, never handed to another. */
void server_mark_unsure(struct server *s, const char *why);

/* Client -> server bookkeeping of COPY FROM STDIN: a Sync the server will ignore (it is in
 * copy-in; counted so that an error in the copy can make the count unsure: true, nothing
 * owed), and a CopyDone or CopyFail sent. */
bool server_sync_ignored(struct server *s);
void server_copy_done_sent(struct server *s);

/* Transaction pooling: the client's transaction is over; s goes back to the pool as it is. */
void server_release(struct server *s);

/* Does s's input hold bytes not yet relayed (an idle server's: part of a late message)? Such
 * a server serves nobody until it is whole and dropped: its end would reach the client. */
bool server_input_pending(const struct server *s);

/* For a server about to be handed out: drops what late messages its input holds (closing it
 * on anything else); false when it is closed or part of a message waits for its rest (the
 * read that completes it offers the server again). */
bool server_ready_to_serve(struct server *s);

/* Milliseconds of a monotonic clock. */
int64_t server_now_ms(void);

/* Has s lived past lifetime_s (shortened by its own jitter), with a steady credential to log
 * its replacement in? false when lifetime_s is 0, and during an outage of its database's
 * token provider (credentials_steady): PostgreSQL checks a token at login only, so s serves
 * on rather than leave clients without a server once the token expires. Also false until a
 * spacing has passed since the pool's last lifetime retirement (true is taken to mean s is
 * retired now): after an outage its servers are replaced one by one. */
bool server_past_lifetime(const struct server *s, int lifetime_s);

/* Does s carry, from its last checkout, exactly the RLS settings that prefix sets? */
bool server_carries_rls(const struct server *s, const struct buf *prefix);

/* Does s carry exactly the RLS settings that prefix sets, or is it being given them now (its
 * client's settings on their way, SV_SETTING)? */
bool server_rls_is(const struct server *s, const struct buf *prefix);

#endif
