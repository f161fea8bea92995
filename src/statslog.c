/* statslog.c: the query log's ring (C11 atomics, one producer, one consumer) and its writer
 * thread. */
#include "statslog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* What each thread writes per record lies on cache lines of its own, apart from what the
 * other reads per record (each side reads the other's index only when its copy says the ring
 * is full or empty), so the two threads do not pass a line back and forth per record. */
struct statslog {
    /* set before the writer starts; stop and reopen are written once in a while */
    struct statslog_rec *ring;
    size_t slots;
    char *path;
    pthread_t thread;
    _Atomic bool stop, reopen;
    /* the producer's */
    alignas(64) _Atomic size_t head; /* next slot the producer fills */
    size_t tail_seen;                /* the producer's last reading of tail */
    struct statslog_shadow shadow;   /* the producer's mirror of the writer's cache */
    _Atomic uint64_t dropped;
    /* the writer's */
    alignas(64) _Atomic size_t tail; /* next slot the writer reads */
    size_t head_seen;                /* the writer's last reading of head */
    _Atomic uint64_t written;
    int fd;
    time_t opened_at; /* last open attempt */
};

/* A bounded output line: appends past the end are cut, never written. */
struct line {
    char *p;
    size_t cap, at; /* at <= cap - 2 always: room is kept for the final '\n' and NUL */
};

/* Appends n bytes of s (cut at the end of the line's room). The writer formats every record
 * with these few appenders, not printf: printf was most of the cost of statistics. */
static void put_bytes(struct line *l, const char *s, size_t n)
{
    size_t room = l->cap - 2 - l->at;
    if (n > room)
        n = room;
    memcpy(l->p + l->at, s, n);
    l->at += n;
}

#define PUT_LIT(l, s) put_bytes((l), (s), sizeof(s) - 1)

static void put_char(struct line *l, char ch)
{
    if (l->at + 2 < l->cap)
        l->p[l->at++] = ch;
}

/* Appends v in decimal, with at least width digits (zero-padded). */
static void put_u64w(struct line *l, uint64_t v, int width)
{
    char digits[24];
    int i = (int)sizeof(digits);
    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v || (int)sizeof(digits) - i < width);
    put_bytes(l, digits + i, sizeof(digits) - (size_t)i);
}

static void put_i64(struct line *l, int64_t v)
{
    if (v < 0)
        put_char(l, '-');
    put_u64w(l, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, 1);
}

static void put_bool(struct line *l, bool b)
{
    if (b)
        PUT_LIT(l, "true");
    else
        PUT_LIT(l, "false");
}

/* Appends ,"key": (key a string literal). */
#define PUT_KEY(l, key) PUT_LIT((l), ",\"" key "\":")

/* Appends s as the inside of a JSON string (room for the final '\n' and NUL kept). */
static void json_str(struct line *l, const char *s)
{
    l->at = json_escape(l->p, l->at, l->cap - 1, s);
}

/* Appends ,"key":"value" (key: the ,"key": text and its length). */
static void put_str_at(struct line *l, const char *key, size_t keylen, const char *v)
{
    put_bytes(l, key, keylen);
    put_char(l, '"');
    json_str(l, v);
    put_char(l, '"');
}

/* Appends ,"key":["a","b"] from a comma list (key as in put_str_at). */
static void put_list_at(struct line *l, const char *key, size_t keylen, const char *list)
{
    char item[256];
    put_bytes(l, key, keylen);
    put_char(l, '[');
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        size_t k = n < sizeof(item) - 1 ? n : sizeof(item) - 1;
        memcpy(item, p, k);
        item[k] = '\0';
        if (p != list)
            put_char(l, ',');
        put_char(l, '"');
        json_str(l, item);
        put_char(l, '"');
        p = comma ? comma + 1 : p + n;
    }
    put_char(l, ']');
}

#define put_str(l, key, v) put_str_at((l), ",\"" key "\":", sizeof(",\"" key "\":") - 1, (v))
#define put_list(l, key, v) put_list_at((l), ",\"" key "\":", sizeof(",\"" key "\":") - 1, (v))

/* "YYYY-MM-DDTHH:MM:SS" of secs, formatted once a second (per thread). */
static const char *utc_second(time_t secs)
{
    static _Thread_local time_t cached = -1;
    static _Thread_local char text[40];
    if (secs != cached) {
        struct tm tm;
        gmtime_r(&secs, &tm);
        strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
        cached = secs;
    }
    return text;
}

/* The pushdown object of a record. */
static void put_pushdown(struct line *l, const struct statslog_rec *r)
{
    PUT_LIT(l, ",\"pushdown\":{\"predicates\":");
    put_i64(l, r->predicates);
    PUT_LIT(l, ",\"where\":");
    put_i64(l, r->filters);
    put_list(l, "columns", r->cols);
    PUT_KEY(l, "limit");
    put_bool(l, r->limit);
    PUT_KEY(l, "offset");
    put_bool(l, r->offset);
    PUT_KEY(l, "aggregates");
    put_i64(l, r->aggregates);
    PUT_KEY(l, "group_by");
    put_bool(l, r->group_by);
    PUT_KEY(l, "order_by");
    put_bool(l, r->order_by);
    PUT_KEY(l, "joins");
    put_i64(l, r->joins);
    PUT_KEY(l, "distinct");
    put_bool(l, r->distinct);
    PUT_KEY(l, "unfiltered");
    put_bool(l, r->unfiltered);
    put_char(l, '}');
}

/* Appends v >= 0 with four decimals, as %.4f would (printf's formatting of doubles cost more
 * than the rest of a record; ties may round the other way). */
static void put_fraction4(struct line *l, double v)
{
    if (!(v < 1e14)) { /* rare: a tiny table, or not a number */
        char f[48];
        int n = snprintf(f, sizeof(f), "%.4f", v);
        put_bytes(l, f, n > 0 ? (size_t)n : 0);
        return;
    }
    uint64_t scaled = (uint64_t)(v * 10000.0 + 0.5);
    put_u64w(l, scaled / 10000, 1);
    put_char(l, '.');
    put_u64w(l, scaled % 10000, 4);
}

/* table_fraction, rows, bytes, sqlstate and the latencies of a record. */
static void put_outcome(struct line *l, const struct statslog_rec *r)
{
    PUT_KEY(l, "table_fraction");
    if (r->table_fraction >= 0) {
        put_fraction4(l, r->table_fraction);
    } else {
        PUT_LIT(l, "null");
    }
    PUT_KEY(l, "rows");
    put_u64w(l, r->rows, 1);
    PUT_KEY(l, "bytes");
    put_u64w(l, r->bytes, 1);
    PUT_KEY(l, "sqlstate");
    if (r->sqlstate[0]) {
        put_char(l, '"');
        put_bytes(l, r->sqlstate, strnlen(r->sqlstate, sizeof(r->sqlstate)));
        put_char(l, '"');
    } else {
        PUT_LIT(l, "null");
    }
    PUT_KEY(l, "wait_us");
    put_i64(l, r->wait_us);
    PUT_KEY(l, "server_first_us");
    put_i64(l, r->first_us);
    PUT_KEY(l, "server_us");
    put_i64(l, r->server_us);
    PUT_KEY(l, "total_us");
    put_i64(l, r->total_us);
    put_char(l, '}');
}

/* The part of a record the statement alone decides: its fingerprint, kind, normalised text,
 * tables and pushdown features. */
static void put_statement(struct line *l, const struct statslog_rec *r)
{
    static const char hex[] = "0123456789abcdef";
    char fp[16];
    for (int i = 0; i < 16; i++)
        fp[i] = hex[(r->fingerprint >> (60 - 4 * i)) & 15];
    PUT_KEY(l, "fingerprint");
    put_char(l, '"');
    put_bytes(l, fp, sizeof(fp));
    put_char(l, '"');
    put_str(l, "kind", r->kind);
    put_str(l, "query", r->query);
    put_list(l, "tables_read", r->read);
    put_list(l, "tables_written", r->written);
    put_pushdown(l, r);
}

/* Appends ,"key":"value" with value's escaped text cut at STATSLOG_WHO_FIELD bytes. */
static void put_who_field(struct line *l, const char *key, size_t keylen, const char *v)
{
    put_bytes(l, key, keylen);
    put_char(l, '"');
    size_t end = l->at + STATSLOG_WHO_FIELD + 8; /* json_escape stops 8 short of its end */
    l->at = json_escape(l->p, l->at, end < l->cap - 1 ? end : l->cap - 1, v ? v : "");
    put_char(l, '"');
}

#define put_who(l, key, v) put_who_field((l), ",\"" key "\":", sizeof(",\"" key "\":") - 1, (v))

size_t statslog_format_who(char *out, const char *client, const char *user, const char *database,
                           const char *app)
{
    /* keys (50 bytes) and four quoted values (at most STATSLOG_WHO_FIELD + 8 + 2 each) fit
     * the line's room, STATSLOG_WHO_MAX - 2: nothing is cut but by STATSLOG_WHO_FIELD */
    _Static_assert(50 + 4 * (STATSLOG_WHO_FIELD + 10) <= STATSLOG_WHO_MAX - 2, "who fits");
    struct line l = {out, STATSLOG_WHO_MAX, 0};
    put_who(&l, "client", client);
    put_who(&l, "user", user);
    put_who(&l, "database", database);
    put_who(&l, "application_name", app);
    return l.at;
}

/* The record's time and who ran it. */
static void put_origin(struct line *l, const struct statslog_rec *r)
{
    const char *when = utc_second((time_t)(r->time_us / 1000000));
    PUT_LIT(l, "{\"time\":\"");
    put_bytes(l, when, strlen(when));
    put_char(l, '.');
    put_u64w(l, (uint64_t)(r->time_us % 1000000), 6);
    PUT_LIT(l, "Z\"");
    put_bytes(l, r->who, r->who_len < sizeof(r->who) ? r->who_len : sizeof(r->who));
}

/* Ends a line: room was kept for the '\n' and NUL, so a cut record is still one line. */
static size_t end_line(struct line *l)
{
    l->p[l->at++] = '\n';
    l->p[l->at] = '\0';
    return l->at;
}

size_t statslog_format(const struct statslog_rec *r, char *out, size_t outsz)
{
    struct line l = {out, outsz, 0};
    if (outsz < 3)
        return 0;
    put_origin(&l, r);
    put_statement(&l, r);
    put_outcome(&l, r);
    return end_line(&l);
}

/* Does a's statement part equal b's (the fields put_statement formats)? */
static bool same_statement(const struct statslog_rec *a, const struct statslog_rec *b)
{
    return a->fingerprint == b->fingerprint && a->predicates == b->predicates &&
           a->filters == b->filters && a->aggregates == b->aggregates && a->joins == b->joins &&
           a->limit == b->limit && a->offset == b->offset && a->group_by == b->group_by &&
           a->order_by == b->order_by && a->distinct == b->distinct &&
           a->unfiltered == b->unfiltered && strcmp(a->kind, b->kind) == 0 &&
           strcmp(a->query, b->query) == 0 && strcmp(a->read, b->read) == 0 &&
           strcmp(a->written, b->written) == 0 && strcmp(a->cols, b->cols) == 0;
}

/* Makes slot e hold r's statement part, formatted (len 0 when it does not fit its text). */
static void fill_statement(struct statslog_stmt_cache_entry *e, const struct statslog_rec *r)
{
    char text[sizeof(e->text) + 16];
    struct line l = {text, sizeof(text), 0};
    put_statement(&l, r);
    e->key = *r;
    e->len = l.at + 16 <= sizeof(text) ? l.at : 0; /* nearly full: it may have been cut */
    memcpy(e->text, text, e->len);
}

bool statslog_shadow_knows(const struct statslog_shadow *s, uint64_t fingerprint, uint64_t stmt_id)
{
    return stmt_id != 0 && s->ids[fingerprint % STATSLOG_STMT_CACHE] == stmt_id;
}

/* statslog_format_cached leaves slot fingerprint % N holding r's stmt_id: it refills the slot
 * when the ids differ, and a record it does not refill for has that id already. A record
 * without an id may leave an older one there: 0 says "unknown", which is always safe. */
void statslog_shadow_note(struct statslog_shadow *s, const struct statslog_rec *r)
{
    s->ids[r->fingerprint % STATSLOG_STMT_CACHE] = r->stmt_id;
}

size_t statslog_format_cached(struct statslog_stmt_cache *c, const struct statslog_rec *r,
                              char *out, size_t outsz)
{
    struct line l = {out, outsz, 0};
    if (outsz < 3)
        return 0;
    put_origin(&l, r);
    struct statslog_stmt_cache_entry *e = &c->slots[r->fingerprint % STATSLOG_STMT_CACHE];
    const struct statslog_rec *st = r; /* whose statement fields the line shows */
    bool in_cache = true;              /* does slot e hold them? */
    if (r->stmt_known) {               /* e holds them (the shadow's promise) */
        in_cache = e->key.stmt_id == r->stmt_id;
        if (in_cache)
            st = &e->key;
    } else if (r->stmt_id ? e->key.stmt_id != r->stmt_id : !same_statement(&e->key, r)) {
        fill_statement(e, r);
    }
    /* the cached text only when it fits whole, as formatting it here would have */
    if (in_cache && e->len > 0 && l.at + e->len + 16 <= l.cap)
        put_bytes(&l, e->text, e->len);
    else
        put_statement(&l, st);
    put_outcome(&l, r);
    return end_line(&l);
}

/* Opens the log without ever blocking: a FIFO without a reader fails to open (and is tried
 * again a second later), one whose reader stops reading fails writes. */
static void open_file(struct statslog *l)
{
    if (l->fd > 2)
        close(l->fd);
    l->opened_at = time(NULL);
    if (strcmp(l->path, "stderr") == 0)
        l->fd = 2;
    else
        l->fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
}

/* Writes a batch of `lines` records; what cannot be written now (a full pipe, a full disk, no
 * file) is dropped and counted: the writer never waits, so neither does the event loop. */
static void write_batch(struct statslog *l, const char *p, size_t n, uint64_t lines)
{
    if (l->fd < 0 && time(NULL) != l->opened_at)
        open_file(l);
    while (n > 0 && l->fd >= 0) {
        ssize_t w = write(l->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        p += w;
        n -= (size_t)w;
    }
    if (n > 0)
        atomic_fetch_add(&l->dropped, lines);
    else
        atomic_fetch_add(&l->written, lines);
}

/* Formats queued records into a batch and writes it with one call when the queue is drained
 * or the batch is nearly full: one write per burst of queries, not per query. */
static void *writer_main(void *arg)
{
    struct statslog *l = arg;
    static const struct timespec nap = {0, 10 * 1000 * 1000};
    enum { BATCH = 64 * 1024, LINE = 4096 };
    char *batch = malloc(BATCH);
    struct statslog_stmt_cache *cache = calloc(1, sizeof(*cache));
    size_t used = 0;
    uint64_t lines = 0;
    open_file(l);
    for (;;) {
        if (atomic_load_explicit(&l->reopen, memory_order_relaxed) &&
            atomic_exchange(&l->reopen, false))
            open_file(l);
        size_t tail = atomic_load_explicit(&l->tail, memory_order_relaxed);
        if (tail == l->head_seen)
            l->head_seen = atomic_load_explicit(&l->head, memory_order_acquire);
        size_t head = l->head_seen;
        if (tail == head || !batch || !cache || used + LINE > BATCH) {
            if (batch && used > 0)
                write_batch(l, batch, used, lines);
            used = 0;
            lines = 0;
            bool stuck = !batch || !cache; /* out of memory: records can only be dropped */
            if ((tail == head || stuck) && atomic_load(&l->stop)) {
                /* records committed before stop was set are there now */
                l->head_seen = atomic_load_explicit(&l->head, memory_order_acquire);
                if (tail == l->head_seen || stuck)
                    break;
                continue;
            }
            if (tail == head || stuck)
                nanosleep(&nap, NULL);
            continue;
        }
        used += statslog_format_cached(cache, &l->ring[tail % l->slots], batch + used, LINE);
        lines++;
        atomic_store_explicit(&l->tail, tail + 1, memory_order_release);
    }
    free(batch);
    free(cache);
    return NULL;
}

struct statslog *statslog_start(const char *path, size_t slots)
{
    struct statslog *l = aligned_alloc(alignof(struct statslog), sizeof(*l));
    if (!l)
        return NULL;
    memset(l, 0, sizeof(*l));
    l->slots = slots ? slots : 1;
    l->fd = -1;
    l->ring = calloc(l->slots, sizeof(*l->ring));
    l->path = strdup(path);
    if (!l->ring || !l->path || pthread_create(&l->thread, NULL, writer_main, l) != 0) {
        free(l->ring);
        free(l->path);
        free(l);
        return NULL;
    }
    return l;
}

void statslog_stop(struct statslog *l)
{
    if (!l)
        return;
    atomic_store(&l->stop, true);
    pthread_join(l->thread, NULL); /* it never blocks: at most one nap or one batch away */
    if (l->fd > 2)
        close(l->fd);
    free(l->ring);
    free(l->path);
    free(l);
}

struct statslog_rec *statslog_slot(struct statslog *l)
{
    size_t head = atomic_load_explicit(&l->head, memory_order_relaxed);
    if (head - l->tail_seen >= l->slots) {
        l->tail_seen = atomic_load_explicit(&l->tail, memory_order_acquire);
        if (head - l->tail_seen >= l->slots) {
            atomic_fetch_add_explicit(&l->dropped, 1, memory_order_relaxed);
            return NULL;
        }
    }
    return &l->ring[head % l->slots];
}

bool statslog_knows(const struct statslog *l, uint64_t fingerprint, uint64_t stmt_id)
{
    return statslog_shadow_knows(&l->shadow, fingerprint, stmt_id);
}

void statslog_commit(struct statslog *l)
{
    size_t head = atomic_load_explicit(&l->head, memory_order_relaxed);
    statslog_shadow_note(&l->shadow, &l->ring[head % l->slots]);
    atomic_store_explicit(&l->head, head + 1, memory_order_release);
}

void statslog_reopen(struct statslog *l)
{
    if (l)
        atomic_store(&l->reopen, true);
}

uint64_t statslog_dropped(const struct statslog *l)
{
    return l ? atomic_load(&l->dropped) : 0;
}
uint64_t statslog_written(const struct statslog *l)
{
    return l ? atomic_load(&l->written) : 0;
}
