/* prepared.h: named prepared statements under transaction pooling. Pure bookkeeping, no I/O:
 * each client's statements (its name -> the Parse it sent), each server's cache of statements
 * prepared on it under proxy-chosen names (bounded, least recently used evicted), and the
 * queue of replies a server owes, so that replies the proxy made up or must swallow land in
 * the right place of the stream. */
#ifndef LAKEPROXY_PREPARED_H
#define LAKEPROXY_PREPARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "masklike.h"

#define STMT_NAME_LEN 40      /* "lp_" + 32 hex + NUL, padded */
#define SERVER_STMT_CACHE 256 /* statements kept prepared per server connection */
#define CLIENT_STMT_MAX 10000 /* named statements one client may hold */
/* Closing statements one client may have at once (client_stmt_park): past that a Close takes
 * its statement at once. Bounded so that a name's chain cannot grow long with closing copies
 * of it (Close and Parse of one name pipelined over and over). */
#define CLIENT_STMT_CLOSING_MAX 64
/* Bytes of statement text one client's named statements may hold together (at least: a
 * single statement as long as limits.max_message_size always fits). */
#define CLIENT_STMT_BYTES (16u << 20)
#define REPLY_QUEUE_MAX 65536 /* messages one client may have in flight */

/* What besides its text decides what a prepared statement means, and so which clients may
 * share it. PostgreSQL reads its constants when it parses it ('01/02/2024'::date by DateStyle,
 * timestamptz literals by TimeZone, intervals by IntervalStyle, backslashes by
 * standard_conforming_strings, its bytes by client_encoding) and keeps them; it resolves its
 * names by search_path (as the session's role reads "$user"), analysing it again under another
 * one and failing it (0A000) when its result type changes. */
#define STMT_CONTEXT_SETTINGS 6
extern const char *const stmt_context_settings[STMT_CONTEXT_SETTINGS];
struct stmt_context {
    uint32_t epoch;   /* the pool's statement epoch (struct pool.stmt_epoch) */
    uint64_t apart;   /* not 0: statements of this value are shared with no other (a client
                         that may have set a setting PostgreSQL parses by that is not below:
                         transform_null_equals, array_nulls ...): its id */
    const char *role; /* the role the client assumes (rls.switch_role), else NULL */
    /* the client's values of stmt_context_settings, NULL for one it has not set (the
       server's default) */
    const char *values[STMT_CONTEXT_SETTINGS];
};

/* The proxy's name for a statement: a hash, keyed with the process's secret, of its Parse body
 * (text and parameter types) and of its context (NULL: none), so identical statements of clients of
 * one context share one server-side statement, and a Parse made after a server statement went stale
 * (its plan's result type changed: 0A000, which moves the epoch) gets one of its own. False when
 * out of memory. */
bool stmt_proxy_name(const uint8_t *parse_rest, size_t len, const struct stmt_context *ctx,
                     char out[STMT_NAME_LEN]);

struct client_stmt {
    char *name;   /* the client's name, cut to its first 63 bytes (PostgreSQL's key) */
    int32_t next; /* the next item in its index chain, -1 at the end */
    char proxy[STMT_NAME_LEN];
    uint8_t *parse_rest; /* Parse body after the name: query, parameter types */
    size_t len;
    uint8_t effects;           /* STMT_* flags: what running it does to a server */
    uint16_t mask_tests;       /* masked-column tests each run makes (masking guard) */
    struct masklike mask_like; /* its parameters that are LIKE patterns on masked columns */
    uint32_t gen;              /* which Parse of the client made it (never 0): see reply.gen */
    uint32_t epoch;            /* the statement epoch it was named in (struct stmt_context) */
    uint32_t closes;           /* Closes of it still owed their replies (while closing) */
    bool closing;              /* a Close of it is owed its reply: no name finds it (an error
                                  before the Close may yet bring it back) */
    uint32_t hash; /* its name's keyed hash (its low bits: chains are fewer): its chain */
};

/* A statement that may drop the server's prepared statements (DEALLOCATE, DISCARD). */
#define STMT_FORGETS 1
/* One that leaves state outliving the transaction (the RLS guard's retire verdict). */
#define STMT_RETIRES 2
/* One that makes session-level changes lakeproxy carries with the client (the RLS guard's
 * carry verdict): taken again at every run. */
#define STMT_CARRIES 4
/* One that may change, for a client not under row-level security, session settings lakeproxy
 * applies for clients but the server does not report (SET search_path, RESET ALL, DISCARD
 * ALL ...): the server's record of what it has applied is no longer trusted. */
#define STMT_SETS 8
/* One whose text may return a setting to its default (pipeline.c: says_reset), which for a
 * client that gave it at startup means its startup value, set again only after the
 * transaction (client.h: what the client pipelines behind it waits till then). */
#define STMT_MAY_RESET 16
/* One that may change a setting PostgreSQL parses statements by (stmt_context_settings): what
 * the client's names mean after it is known only once it has run (pipeline.c). */
#define STMT_CONTEXT 32
/* One that may open a transaction block (BEGIN, START TRANSACTION): a server lost while a
 * batch that runs it is in flight cannot be passed off as one failed statement (server.c
 * loss_for_client). */
#define STMT_OPENS 64

/* A client's statements, found by name through chains keyed with the process's secret
 * (hashkey.h): a client cannot aim its names at one chain, nor hold more than its budget. */
struct restore_item {
    uint32_t gen, hash;
};

struct client_stmts {
    struct client_stmt *items;
    size_t n, cap;
    size_t bytes;   /* names and bodies held */
    int32_t *heads; /* chain heads, n_heads of them (a power of two), -1 when empty */
    size_t n_heads;
    size_t n_closing;     /* items a Close took while replies were owed (client_stmt_park) */
    size_t closing_bytes; /* of bytes, those of closing items (outside the budget) */
    struct restore_item *to_restore; /* those whose Closes an error just skipped */
    size_t n_restore, cap_restore;
    bool unsure;       /* the client ran something that may have deallocated statements (DEALLOCATE
                          or DISCARD other than alone in a simple Query): its names may be free on
                          PostgreSQL, so a Parse of one is not refused */
    uint32_t sync_gen; /* last_gen when the client's last Sync came: newer gens were
                          made since (one pipeline segment) */
    uint32_t last_gen; /* the gen given last */
    uint32_t settled_gen; /* the newest gen whose Parse was answered, refused or skipped: the
                             Parses of newer ones are still owed a reply (answered in order) */
};

enum stmt_put {
    STMT_PUT_DONE,
    STMT_PUT_PAST_LIMITS, /* at CLIENT_STMT_MAX statements, or past max_bytes (below) */
    STMT_PUT_NO_MEMORY,
};
/* Records name -> parse_rest (replacing a previous one) with its STMT_* effects, under the
 * proxy name of context ctx (stmt_proxy_name), and sets *put to it; unless that would pass the
 * limits: at most CLIENT_STMT_MAX statements, and max_bytes (CLIENT_STMT_BYTES or more) of
 * names and bodies together (closing statements counted apart: at most
 * CLIENT_STMT_CLOSING_MAX of them, and as many bytes again). s holds the same statements
 * unless DONE. */
enum stmt_put client_stmt_put(struct client_stmts *s, const char *name, const uint8_t *rest,
                              size_t len, const struct stmt_context *ctx, uint8_t effects,
                              size_t max_bytes, struct client_stmt **put);
const struct client_stmt *client_stmt_get(const struct client_stmts *s, const char *name);
/* Names st (one of s's) for context ctx, in st's own epoch (not ctx's): the name under which
 * a server that parses it in ctx may share it. False when out of memory (st unchanged). */
bool client_stmt_rename(struct client_stmts *s, const struct client_stmt *st,
                        const struct stmt_context *ctx);
/* Does the client hold name, or a statement of that name a Close still owed its reply took
 * (client_stmt_park: an error may yet bring it back)? */
bool client_stmt_known(const struct client_stmts *s, const char *name);
/* Notes how many masked-column tests each run of statement st makes, and which of its
 * parameters are LIKE patterns on masked columns. */
void client_stmt_set_tests(struct client_stmt *st, uint16_t tests, const struct masklike *like);
void client_stmt_remove(struct client_stmts *s, const char *name);
/* Removes the statement made by the Parse that reply r was owed for (rq_mark_parse_of), if it
 * is still there (not replaced by a later Parse of the name since). */
struct reply;
void client_stmt_undo(struct client_stmts *s, const struct reply *r);
/* The reply owed for the Parse of gen r->gen (0: none) has come, or will not. */
void client_stmt_settled(struct client_stmts *s, const struct reply *r);
/* Is the reply to the Parse that made st still owed (it may yet fail)? */
bool client_stmt_owed(const struct client_stmts *s, const struct client_stmt *st);
/* Must a Parse of st's name be refused (42P05), as PostgreSQL would? */
bool client_stmt_taken(const struct client_stmts *s, const struct client_stmt *st);
/* A Close of name while replies are owed: the statement no longer answers to its name, but
 * stays until the Close's reply is due (client_stmt_unpark). The record to note on that reply
 * (rq_mark_parse_of), or NULL when name is not held or CLIENT_STMT_CLOSING_MAX are closing
 * (the caller then removes it). A name held only by a closing statement (a second Close of
 * it) gives the newest such. */
const struct client_stmt *client_stmt_park(struct client_stmts *s, const char *name);
/* The Close owed reply r (rq_mark_parse_of of a parked statement) is done (skipped false: the
 * statement goes, back under its name or not) or was skipped (true: once no other Close of
 * it is owed, it is noted to come back at client_stmt_restore_skipped; out of memory, it
 * goes). */
void client_stmt_unpark(struct client_stmts *s, const struct reply *r, bool skipped);
/* Brings back under their names the statements of the Closes just skipped, once the skipped
 * messages have been undone; one whose name a later Parse took goes. */
void client_stmt_restore_skipped(struct client_stmts *s);
/* Removes name's statement and every closing one of that name (DEALLOCATE name). */
void client_stmt_remove_all(struct client_stmts *s, const char *name);
/* Removes every closing statement (the replies their Closes wait for will not come). */
void client_stmts_drop_closing(struct client_stmts *s);
void client_stmts_clear(struct client_stmts *s);

/* The statements prepared on one server connection. */
struct server_stmts {
    char names[SERVER_STMT_CACHE][STMT_NAME_LEN];
    uint64_t used[SERVER_STMT_CACHE];
    size_t n;
    uint64_t clock;
};

/* Index of name, marking it used; -1 when absent. */
int server_stmt_find(struct server_stmts *s, const char *name);
/* Adds name; when full, *evicted gets the least recently used one (to Close on the server)
 * and true is returned in *did_evict. */
void server_stmt_add(struct server_stmts *s, const char *name, char evicted[STMT_NAME_LEN],
                     bool *did_evict);
void server_stmt_remove(struct server_stmts *s, const char *name);
/* Forgets every statement (the server holds none now, or what it holds is unknown). */
void server_stmts_clear(struct server_stmts *s);

/* What a server owes for each message sent to it, in order. */
enum reply_kind {
    RK_PARSE,           /* ParseComplete '1' */
    RK_BIND,            /* BindComplete '2' */
    RK_DESCRIBE,        /* ('t') then RowDescription 'T' or NoData 'n' */
    RK_EXECUTE,         /* rows, then 'C', 'I' or 's' */
    RK_CLOSE,           /* CloseComplete '3' */
    RK_SYNC,            /* ReadyForQuery 'Z' */
    RK_QUERY,           /* a simple Query or FunctionCall: everything up to 'Z' */
    RK_FAKE_PARSE,      /* the proxy owes the client a ParseComplete itself */
    RK_FAKE_CLOSE,      /* the proxy owes the client a CloseComplete itself */
    RK_FAKE_DEALLOCATE, /* ... a CommandComplete "DEALLOCATE" for an Execute of a DEALLOCATE
                           of the client's statement (parked, as by a Close) */
    RK_DROP_PARSE,      /* the server's ParseComplete for a Parse the proxy added: swallow it */
    RK_DROP_CLOSE,      /* the server's CloseComplete for an eviction: swallow it */
    RK_DROP_DESCRIBE,   /* the reply to a Describe of a portal the proxy added before an
                           Execute (masking reads its RowDescription): swallow it */
};

/* Is kind a reply the proxy makes up itself (written when it reaches the front)? */
static inline bool rk_is_fake(uint8_t kind)
{
    return kind == RK_FAKE_PARSE || kind == RK_FAKE_CLOSE || kind == RK_FAKE_DEALLOCATE;
}

/* Does a reply of kind, made up, stand for a statement parked (client_stmt_park)? */
static inline bool rk_parks(uint8_t kind)
{
    return kind == RK_FAKE_CLOSE || kind == RK_FAKE_DEALLOCATE;
}

/* Errors the proxy words itself in place of the server's (struct reply.own_error). */
enum reply_own_error {
    REPLY_OWN_NONE,
    REPLY_OWN_ABSENT, /* a Bind or Describe of a statement the client may not use, sent to a
                         name no server has: 26000 (stmt: "" unnamed, else reserved) */
    REPLY_OWN_TAKEN,  /* a client's Parse of a name it holds, sent as a Parse that fails:
                         42P05 (stmt: the client's name, cut to fit) */
    REPLY_OWN_LIMIT,  /* a client's named Parse past its statements' limits (client_stmt_put),
                         sent as a Parse that fails: 54000 */
};

struct reply {
    uint8_t kind;
    uint8_t own_error;        /* REPLY_OWN_*: the server's ErrorResponse for it goes to the
                                 client as one of the proxy's wording */
    bool shared_bind;         /* RK_BIND of a statement the proxy prepared (shared by name) */
    uint32_t copy_dones;      /* the client's CopyDone/CopyFail count when it was sent */
    uint32_t execs;           /* the client's Executes before it (session pooling counts them) */
    char stmt[STMT_NAME_LEN]; /* for RK_PARSE / RK_DROP_PARSE of a named statement, else "" */
    uint32_t gen; /* RK_PARSE / RK_FAKE_PARSE of a client's named statement: its client_stmt.gen
                     (the record to drop when PostgreSQL refuses or skips it); RK_FAKE_CLOSE and
                     RK_FAKE_DEALLOCATE: the gen of the statement it parked (client_stmt_park);
                     else 0 */
    uint32_t name_hash; /* ... and its client_stmt.hash, to find it */
};

/* Session pooling queues no Execute; which one a CopyInResponse answers is found by number:
 * the Executes sent and ended are counted, and the CopyDone count they were sent at is kept as
 * runs (a run starts at each Execute sent after a CopyDone), a few per COPY in flight. */
#define EXEC_RUNS 16

struct exec_run {
    uint32_t first;      /* the number of the run's first Execute */
    uint32_t copy_dones; /* the CopyDone/CopyFail count they were sent at */
};

struct reply_queue {
    struct reply *items;
    size_t head, len, cap;
    uint32_t copy_dones; /* the client's CopyDone/CopyFail messages so far: entries carry it */
    uint32_t execs;      /* Executes sent (session pooling: rq_note_execute): entries carry it */
    uint32_t execs_done; /* ... of them ended (or skipped: rq_executes_settled) */
    struct exec_run runs[EXEC_RUNS];
    uint8_t run_head, run_len;
};

bool rq_push(struct reply_queue *q, enum reply_kind kind, const char *stmt);
const struct reply *rq_front(const struct reply_queue *q);
/* Is every reply owed a simple Query's (or FunctionCall's), one ReadyForQuery each whatever
 * happens? (An error in an extended-protocol segment skips what follows up to its Sync.) */
bool rq_only_queries(const struct reply_queue *q);
/* The entry after the front, or NULL. */
const struct reply *rq_second(const struct reply_queue *q);
void rq_pop(struct reply_queue *q);
/* Marks the entry pushed last with one of the proxy's own errors (see struct reply). */
void rq_mark_own_error(struct reply_queue *q, enum reply_own_error e);
/* Marks the entry pushed last as the Bind of a statement the proxy prepared. */
void rq_mark_shared_bind(struct reply_queue *q);
/* Notes on the entry pushed last that it is owed for the Parse (or, for a Close, concerns the
 * statement) that made client statement st. */
void rq_mark_parse_of(struct reply_queue *q, const struct client_stmt *st);
/* Removes, after the front, the RK_SYNC entries sent with copy_dones (PostgreSQL ignores the
 * Syncs a client sends during copy-in, before its CopyDone); returns how many. */
size_t rq_drop_copy_syncs(struct reply_queue *q, uint32_t copy_dones);
/* Session pooling: notes an Execute sent. False when its CopyDone count could not be kept
 * (EXEC_RUNS runs unended: many COPYs pipelined): which Execute a CopyInResponse answers is
 * then unknown. */
bool rq_note_execute(struct reply_queue *q);
/* A CommandComplete, EmptyQueryResponse or PortalSuspended came: an Execute ended, unless it
 * is a simple Query's own (the front entry a Query, every Execute sent before it ended). */
void rq_execute_done(struct reply_queue *q);
/* The ReadyForQuery of an entry that carried execs came: every Execute before it is over
 * (ended, or skipped after an error). */
void rq_executes_settled(struct reply_queue *q, uint32_t execs);
/* The CopyDone count at which the next Execute to end was sent (a CopyInResponse's: the
 * Syncs the server ignores are those sent at it). False when unknown. */
bool rq_next_execute_copy_dones(struct reply_queue *q, uint32_t *copy_dones);
void rq_free(struct reply_queue *q);

/* What to do with a server message of this type, given the queue's front. */
enum rq_action {
    RQ_PASS,    /* part of the reply in progress (or asynchronous): forward */
    RQ_FINISH,  /* ends the front reply: forward, pop */
    RQ_SWALLOW, /* ends a reply the client never asked for: drop, pop */
    RQ_FAIL,    /* an ErrorResponse in the extended protocol: pop up to the next Sync */
};

enum rq_action rq_classify(const struct reply_queue *q, uint8_t type);

/* Pops every entry before the next RK_SYNC (the server skips those messages after an error);
 * each one that would have changed the server's or the client's statements (a Parse, named or
 * not, made up or not, an eviction's Close, a client's Close) is reported through on_skipped
 * first. Returns how many simple
 * Queries (RK_QUERY) were among them: they will never see their ReadyForQuery. */
size_t rq_fail_until_sync(struct reply_queue *q, void (*on_skipped)(void *, const struct reply *),
                          void *arg);

#endif
