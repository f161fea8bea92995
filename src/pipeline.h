/* pipeline.h: transaction pooling's operations (pool_mode_transaction, poolmode.h): the
 * extended protocol rewritten: named statements are renamed to proxy names, prepared on
 * whichever server serves the client, and the replies the proxy adds or swallows are kept in
 * order (see prepared.h for the bookkeeping). */
#ifndef LAKEPROXY_PIPELINE_H
#define LAKEPROXY_PIPELINE_H

#include "objects.h"
#include "relay.h"

/* Client -> server, transaction mode: what to do with one client message. Messages it
 * rewrites are written to the server here (verdict RV_DROP). *err is set with RV_ERROR. */
enum relay_verdict pipeline_client_msg(struct client *c, uint8_t type, uint32_t len,
                                       const uint8_t *body, const char **err);

/* Server -> client, transaction mode, for every type but 'Z' and 'S' (server.c handles
 * those and calls pipeline_sync_done for 'Z'). */
enum relay_verdict pipeline_server_msg(struct server *s, uint8_t type, uint32_t len,
                                       const uint8_t *body);

/* A ReadyForQuery ended the front reply: pop it. True when made-up replies follow, which the
 * caller must emit after forwarding the 'Z' (pipeline_forward_then_fakes). */
bool pipeline_sync_done(struct server *s);

/* The server reported a new value of setting canon for its client (PostgreSQL does so just
 * before ReadyForQuery). When PostgreSQL parses statements by it and a shared statement was
 * prepared on the server since the last ReadyForQuery (pipelined behind the SET, perhaps), that
 * one may have been parsed under the new value but named by the old: the server's statements
 * are no longer trusted (prepared again behind a Close; the server retires). */
void pipeline_setting_changed(struct server *s, const char *canon);

/* Writes the message itself to the client, then every made-up reply now at the front; false
 * when out of memory (something was lost: fail the client). */
bool pipeline_forward_then_fakes(struct server *s, uint8_t type, uint32_t len, const uint8_t *body);

/* Client c's current unnamed statement was just prepared on s: s is its home (a checkout of
 * s by c may keep it there), and no longer that of any other client, nor is any other server
 * c's. */
void pipeline_unnamed_home(struct client *c, struct server *s);

/* c's unnamed statement has no home (c has none, or c is going away). */
void pipeline_client_unhomed(struct client *c);

/* s is no client's home (s is going away). */
void pipeline_server_unhomed(struct server *s);

/* Forgets every statement c prepared, named and unnamed (they were checked under rules that
 * changed): a Bind of one fails as unknown, and the client prepares it again, through the
 * guard. */
void pipeline_forget_statements(struct client *c);

/* Forgets the client's statement name (or all of them), and its unnamed statement: the
 * DEALLOCATE came as a simple Query, which drops that too. */
void pipeline_deallocate(struct client *c, const char *name, bool all);

/* What the keyword scans every statement passes find in its text (pipeline_text_facts), bits:
 * it may forget prepared statements (DEALLOCATE or DISCARD), says DEALLOCATE, its server must
 * retire after it (LISTEN, or code out of sight: DO, CALL), may return a setting to its default,
 * may change a setting PostgreSQL parses by, may open a transaction block, may change a tracked
 * setting the server does not report, names a setting PostgreSQL parses by that lakeproxy does not
 * track, mentions the reserved statement prefix (guard_mentions_reserved_prefix). */
enum {
    TEXT_FORGETS = 1,
    TEXT_DEALLOC = 2,
    TEXT_RETIRES = 4,
    TEXT_RESETS = 8,
    TEXT_CONTEXT = 16,
    TEXT_OPENS = 32,
    TEXT_SETS = 64,
    TEXT_PARSED_BY = 128,
    TEXT_RESERVED_PREFIX = 256
};

/* The TEXT_* facts of NUL-terminated sql. The worker's memo of text shapes keeps them per
 * shape (sqlkey.h: they are found by words, so every text of a shape with numbers for
 * constants has the same), and a Query of a shape seen lately is not scanned again
 * (client_query_facts). */
uint32_t pipeline_text_facts(const char *sql);

/* Does sql say RESET or DISCARD, or TO DEFAULT or = DEFAULT, as words of their own (a setting
 * may go back to its default: for a client that gave it at startup, to that value)? */
bool pipeline_text_may_reset(const char *sql);

/* Must c's next message that names one of its statements (pipeline_names_statement) wait
 * before it is judged? While a batch it sent before its last Sync (or simple Query) is not
 * answered, and that batch may have changed what its names mean: a Parse or Close of it is
 * not answered yet (PostgreSQL may refuse or skip it: an error before it in its batch, an
 * aborted transaction block), or a statement that may change a setting PostgreSQL parses by.
 * The proxy names statements for the server when it reads them, so it must know first. */
bool pipeline_stmt_must_wait(struct client *c);

/* Does a Parse, Bind, Describe or Close (type; its body) name a named statement? */
bool pipeline_names_statement(uint8_t type, const uint8_t *body, uint32_t len);

#endif
