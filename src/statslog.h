/* statslog.h: the JSON Lines query log. The event loop hands finished queries to a bounded
 * single-producer, single-consumer ring; a thread of its own formats and writes them, so the
 * loop never waits for a disk (or a FIFO nobody reads): when the ring is full, records are
 * dropped and counted. The file is reopened on request (log rotation). */
#ifndef LAKEPROXY_STATSLOG_H
#define LAKEPROXY_STATSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One log line, copied in by the event loop: fixed size, no pointers into its memory. */
/* A record's origin part: ,"client":..,"user":..,"database":..,"application_name":.. as
 * statslog_format_who makes it, each value's escaped text cut at STATSLOG_WHO_FIELD bytes
 * (only names full of characters JSON escapes come near). */
#define STATSLOG_WHO_FIELD 180
#define STATSLOG_WHO_MAX 832

struct statslog_rec {
    int64_t time_us; /* wall clock at the query's end, microseconds since the epoch */
    /* nonzero: every record with this id has the same statement fields, so the writer formats
     * them once (the producer's per-fingerprint entry: its analysis never changes) */
    uint64_t stmt_id;
    uint64_t fingerprint;
    /* the statement fields below are left out: the writer holds them from an earlier record
     * with this stmt_id (statslog_knows said so) */
    bool stmt_known;
    uint64_t rows, bytes;
    double table_fraction; /* rows / the table's reltuples, one-table reads; < 0: unknown */
    char sqlstate[6];
    int64_t wait_us, first_us, server_us, total_us;
    size_t who_len;
    char who[STATSLOG_WHO_MAX]; /* the origin part, made once per client and name */
    /* the statement fields, last so that a record leaving them out touches little memory */
    int predicates, filters, aggregates, joins;
    bool limit, offset, group_by, order_by, distinct, unfiltered;
    char kind[12];
    char query[1024];                        /* normalised text ($n for constants), truncated */
    char read[256], written[256], cols[256]; /* comma lists */
};

struct statslog;

/* Starts the writer for path ("stderr" for standard error) with a ring of `slots` records.
 * The file is opened and written without blocking (a FIFO nobody reads loses records, never
 * time). NULL when the thread cannot start. */
struct statslog *statslog_start(const char *path, size_t slots);

/* Stops the writer after it has handled what is queued, and frees everything. */
void statslog_stop(struct statslog *l);

/* A free slot to fill, or NULL when the ring is full (the record is dropped and counted).
 * Producer side only; statslog_commit publishes the slot. */
struct statslog_rec *statslog_slot(struct statslog *l);
void statslog_commit(struct statslog *l);

/* Will the writer hold the statement fields of stmt_id (nonzero) when it reaches the next
 * record committed? Then that record may leave them out (stmt_known). Producer side only. */
bool statslog_knows(const struct statslog *l, uint64_t fingerprint, uint64_t stmt_id);

/* Asks the writer to reopen its file (SIGUSR1, SIGHUP). */
void statslog_reopen(struct statslog *l);

uint64_t statslog_dropped(const struct statslog *l);
uint64_t statslog_written(const struct statslog *l);

/* Makes a record's origin part into out (STATSLOG_WHO_MAX bytes); returns its length. NULL
 * values are empty. */
size_t statslog_format_who(char *out, const char *client, const char *user, const char *database,
                           const char *app);

/* Formats r as one JSON line (with '\n') into out; returns its length (truncated to outsz-1). */
size_t statslog_format(const struct statslog_rec *r, char *out, size_t outsz);

/* The writer's memory of recently formatted statement parts (fingerprint to pushdown), by
 * fingerprint: a statement seen again costs a comparison (of its stmt_id when it has one) and
 * a copy, not its formatting. */
#define STATSLOG_STMT_CACHE 64
struct statslog_stmt_cache_entry {
    struct statslog_rec key; /* its statement fields are what text was made from */
    size_t len;              /* 0: not cached (empty, or too long for text) */
    char text[1536];
};
struct statslog_stmt_cache {
    struct statslog_stmt_cache_entry slots[STATSLOG_STMT_CACHE];
};

/* The producer's mirror of the writer's statement cache: which stmt_id each slot will hold
 * once the writer has handled every record committed so far (0: not known). */
struct statslog_shadow {
    uint64_t ids[STATSLOG_STMT_CACHE];
};
bool statslog_shadow_knows(const struct statslog_shadow *s, uint64_t fingerprint, uint64_t stmt_id);
/* Notes a record as committed, in commit order. */
void statslog_shadow_note(struct statslog_shadow *s, const struct statslog_rec *r);

/* statslog_format, byte for byte, with the statement part taken from c when it is there (and
 * always when r->stmt_known: c's slot holds it then, as the shadow promised). */
size_t statslog_format_cached(struct statslog_stmt_cache *c, const struct statslog_rec *r,
                              char *out, size_t outsz);

#endif
