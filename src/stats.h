/* stats.h: per-query statistics. Statement texts are analysed once (sqlinfo, cached by a
 * literal-insensitive key) and every finished query is added to the aggregates of its
 * fingerprint (calls, errors, rows, bytes, latency histogram, pushdown) and of the tables it
 * read (per application_name). Pure bookkeeping: no I/O; the query log is statslog's. */
#ifndef LAKEPROXY_STATS_H
#define LAKEPROXY_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sqlinfo.h"

/* Latency histogram: 4 buckets per power of two from 1 us, 128 buckets (up to ~72 min). */
#define STATS_BUCKETS 128

struct stats_hist {
    uint64_t count;
    uint32_t b[STATS_BUCKETS];
};

void stats_hist_add(struct stats_hist *h, uint64_t us);
/* The upper bound (microseconds) of bucket i. */
double stats_hist_upper_us(int i);
/* The p-quantile (0 < p <= 1) in microseconds: the upper bound of the bucket that holds it
 * (within 19% of the exact value); 0 when empty. */
uint64_t stats_hist_quantile(const struct stats_hist *h, double p);

/* Aggregates of one fingerprint, as pg_stat_statements keeps them, plus pushdown. */
struct stats_fp {
    uint64_t fingerprint;
    uint64_t id;           /* unique in its table, never reused: names this entry's analysis */
    struct sql_analysis a; /* owned */
    uint64_t calls, errors, rows, bytes, total_us, pushed_down;
    struct stats_hist hist;
    struct stats_table *read0; /* the aggregate its first table's last read went to, or NULL */
    struct stats_fp *next;     /* hash chain */
};

/* Reads of one table (of one database entry) by one application_name. */
struct stats_table {
    char *table, *app, *db;
    uint64_t reads, filtered, unfiltered, unfiltered_rows, unfiltered_bytes, rows, bytes;
    struct stats_table *next;
};

/* One finished query. */
struct stats_query {
    uint64_t fingerprint;
    const char *app;      /* application_name, NULL when none */
    const char *db;       /* the database entry (its tables are its server's) */
    int64_t wait_us;      /* for a server connection */
    int64_t first_us;     /* server: from sending to its first reply byte */
    int64_t server_us;    /* server: from sending to its last reply */
    int64_t total_us;     /* as the client saw it, waiting included */
    uint64_t rows, bytes; /* DataRows and bytes sent to the client */
    char sqlstate[6];     /* "" unless it failed */
};

struct stats;

struct sqlkey_memo;

/* max_fps bounds the fingerprints kept (least called evicted), max_keys the text-key cache.
 * Text keys come from memo, the worker's memo of text shapes (borrowed: it must outlive the
 * statistics); with NULL the statistics keep a memo of their own. */
struct stats *stats_new(size_t max_fps, size_t max_keys, struct sqlkey_memo *memo);
void stats_free(struct stats *st);

/* The fingerprint of sql, analysing it on first sight; 0 when out of memory. When readable is
 * false the session reads text otherwise than the parser would (standard_conforming_strings
 * off, a client-only encoding): sql is then not analysed, only counted under its text key,
 * with no normalised text, kind unknown. Text with several statements gives its first one's. */
uint64_t stats_fingerprint(struct stats *st, const char *sql, bool readable);

/* Statements of one simple Query counted apart at most; a text with more (a script) counts as
 * one query, under the fingerprint of the whole text (analysed by its first statement). */
#define STATS_MAX_STMTS 64

/* The fingerprints of the statements of sql (a simple Query's text), in order, into fps (room
 * for STATS_MAX_STMTS), analysing each on first sight; returns how many: 1 for one statement,
 * and for text that does not parse, is not readable (as for stats_fingerprint) or holds more
 * than STATS_MAX_STMTS statements; 0 when out of memory. */
size_t stats_statements(struct stats *st, const char *sql, bool readable, uint64_t *fps);

/* stats_statements of readable sql whose key the memo the statistics were made with gave
 * already (sqlkey_memo_shape). */
size_t stats_statements_keyed(struct stats *st, const char *sql, uint64_t key, uint64_t *fps);

/* The aggregates of a fingerprint, or NULL. */
const struct stats_fp *stats_find(const struct stats *st, uint64_t fingerprint);

/* Adds a finished query to its fingerprint's and tables' aggregates. */
void stats_add(struct stats *st, const struct stats_query *q);

/* Up to max fingerprints with the largest total time, largest first; returns how many. */
size_t stats_top(const struct stats *st, const struct stats_fp **out, size_t max);

/* Calls fn for every (table, application) aggregate. */
void stats_each_table(const struct stats *st, void (*fn)(void *, const struct stats_table *),
                      void *arg);

/* Fingerprints evicted to make room, and analyses done (parses). */
uint64_t stats_evicted(const struct stats *st);
uint64_t stats_analyses(const struct stats *st);

#endif
