/* statslog.c: the query log's ring (C11 atomics, one producer, one consumer) and its writer
 * thread. */
#include "statslog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

struct statslog {
    struct statslog_rec *ring;
    size_t slots;
    _Atomic size_t head;  /* next slot the producer fills */
    _Atomic size_t tail;  /* next slot the writer reads */
    _Atomic bool stop, reopen;
    _Atomic uint64_t dropped, written;
    char *path;
    int fd;
    time_t opened_at; /* last open attempt */
    pthread_t thread;
};

/* A bounded output line: appends past the end are cut, never written. */
struct line {
    char *p;
    size_t cap, at; /* at <= cap - 2 always: room is kept for the final '\n' and NUL */
};

static void put(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct line *l, const char *fmt, ...)
{
    size_t room = l->cap - 2 - l->at;
    if (room == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->p + l->at, room + 1, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->at += (size_t)n < room ? (size_t)n : room;
}

static void put_char(struct line *l, char ch)
{
    if (l->at + 2 < l->cap)
        l->p[l->at++] = ch;
}

/* Appends s as the inside of a JSON string (room for the final '\n' and NUL kept). */
static void json_str(struct line *l, const char *s) { l->at = json_escape(l->p, l->at, l->cap - 1, s); }

/* Appends ,"key":"value". */
static void put_str(struct line *l, const char *key, const char *v)
{
    put(l, ",\"%s\":\"", key);
    json_str(l, v);
    put_char(l, '"');
}

/* Appends ,"key":["a","b"] from a comma list. */
static void put_list(struct line *l, const char *key, const char *list)
{
    char item[256];
    put(l, ",\"%s\":[", key);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        snprintf(item, sizeof(item), "%.*s", (int)n, p);
        if (p != list)
            put_char(l, ',');
        put_char(l, '"');
        json_str(l, item);
        put_char(l, '"');
        p = comma ? comma + 1 : p + n;
    }
    put_char(l, ']');
}

size_t statslog_format(const struct statslog_rec *r, char *out, size_t outsz)
{
    struct line l = {out, outsz, 0};
    time_t secs = (time_t)(r->time_us / 1000000);
    struct tm tm;
    char when[40];
    if (outsz < 3)
        return 0;
    gmtime_r(&secs, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    put(&l, "{\"time\":\"%s.%06lldZ\"", when, (long long)(r->time_us % 1000000));
    put_str(&l, "client", r->client);
    put_str(&l, "user", r->user);
    put_str(&l, "database", r->database);
    put_str(&l, "application_name", r->app);
    put(&l, ",\"fingerprint\":\"%016llx\"", (unsigned long long)r->fingerprint);
    put_str(&l, "kind", r->kind);
    put_str(&l, "query", r->query);
    put_list(&l, "tables_read", r->read);
    put_list(&l, "tables_written", r->written);
    put(&l, ",\"pushdown\":{\"predicates\":%d,\"where\":%d", r->predicates, r->filters);
    put_list(&l, "columns", r->cols);
    put(&l,
        ",\"limit\":%s,\"offset\":%s,\"aggregates\":%d,\"group_by\":%s,\"order_by\":%s,"
        "\"joins\":%d,\"distinct\":%s,\"unfiltered\":%s}",
        r->limit ? "true" : "false", r->offset ? "true" : "false", r->aggregates,
        r->group_by ? "true" : "false", r->order_by ? "true" : "false", r->joins,
        r->distinct ? "true" : "false", r->unfiltered ? "true" : "false");
    if (r->table_fraction >= 0)
        put(&l, ",\"table_fraction\":%.4f", r->table_fraction);
    else
        put(&l, ",\"table_fraction\":null");
    put(&l, ",\"rows\":%llu,\"bytes\":%llu,\"sqlstate\":%s%s%s", (unsigned long long)r->rows,
        (unsigned long long)r->bytes, r->sqlstate[0] ? "\"" : "",
        r->sqlstate[0] ? r->sqlstate : "null", r->sqlstate[0] ? "\"" : "");
    put(&l, ",\"wait_us\":%lld,\"server_first_us\":%lld,\"server_us\":%lld,\"total_us\":%lld}",
        (long long)r->wait_us, (long long)r->first_us, (long long)r->server_us,
        (long long)r->total_us);
    out[l.at++] = '\n'; /* room was kept for it: a cut record is still one line */
    out[l.at] = '\0';
    return l.at;
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
    size_t used = 0;
    uint64_t lines = 0;
    open_file(l);
    for (;;) {
        if (atomic_exchange(&l->reopen, false))
            open_file(l);
        size_t tail = atomic_load_explicit(&l->tail, memory_order_relaxed);
        size_t head = atomic_load_explicit(&l->head, memory_order_acquire);
        if (tail == head || !batch || used + LINE > BATCH) {
            if (batch && used > 0)
                write_batch(l, batch, used, lines);
            used = 0;
            lines = 0;
            if (tail == head && atomic_load(&l->stop))
                break;
            if (tail == head || !batch)
                nanosleep(&nap, NULL);
            continue;
        }
        used += statslog_format(&l->ring[tail % l->slots], batch + used, LINE);
        lines++;
        atomic_store_explicit(&l->tail, tail + 1, memory_order_release);
    }
    free(batch);
    return NULL;
}

struct statslog *statslog_start(const char *path, size_t slots)
{
    struct statslog *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
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
    size_t tail = atomic_load_explicit(&l->tail, memory_order_acquire);
    if (head - tail >= l->slots) {
        atomic_fetch_add_explicit(&l->dropped, 1, memory_order_relaxed);
        return NULL;
    }
    return &l->ring[head % l->slots];
}

void statslog_commit(struct statslog *l)
{
    size_t head = atomic_load_explicit(&l->head, memory_order_relaxed);
    atomic_store_explicit(&l->head, head + 1, memory_order_release);
}

void statslog_reopen(struct statslog *l)
{
    if (l)
        atomic_store(&l->reopen, true);
}

uint64_t statslog_dropped(const struct statslog *l) { return l ? atomic_load(&l->dropped) : 0; }
uint64_t statslog_written(const struct statslog *l) { return l ? atomic_load(&l->written) : 0; }
