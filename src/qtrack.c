/* qtrack.c: per-client query records, matched to the server's replies in order. */
#include "qtrack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "objects.h"
#include "params.h"
#include "proto.h"
#include "stats.h"
#include "statslog.h"
#include "tablesize.h"

/* Records open at once per client (a pipeline deeper than this is not tracked until it
 * drains), and statement or portal names remembered. */
#define QT_MAX 128
#define QT_NAMES 32

enum rec_kind { REC_QUERY, REC_EXECUTE, REC_SYNC };

struct rec {
    enum rec_kind kind;
    uint64_t fp;
    int64_t start_us, sent_us, first_us, wait_us;
    uint64_t rows, bytes;
    bool replied;
    char sqlstate[6];
    char portal[64];
};

struct name_fp {
    char name[64];
    uint64_t fp;
};

struct qtrack {
    struct rec q[QT_MAX];
    unsigned head, n;
    bool lost;                 /* a record was not kept: ignore results until drained */
    struct name_fp stmts[QT_NAMES], portals[QT_NAMES];
    unsigned stmt_next, portal_next;
    uint64_t unnamed_stmt_fp;
    struct rec suspended;      /* an Execute stopped by its row limit, waiting for more */
    bool has_suspended;
    int64_t request_us;        /* when the client asked for a server */
    int64_t wait_us;           /* that wait, for its next query */
    bool first_after_wait;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static bool enabled(const struct client *c) { return c->w->stats != NULL && !c->is_admin; }

static struct qtrack *tracker(struct client *c)
{
    if (!c->qt)
        c->qt = calloc(1, sizeof(*c->qt));
    return c->qt;
}

void qtrack_free(struct client *c)
{
    free(c->qt);
    c->qt = NULL;
}

void qtrack_request(struct client *c)
{
    struct qtrack *t = enabled(c) ? tracker(c) : NULL;
    if (t)
        t->request_us = now_us();
}

void qtrack_linked(struct client *c)
{
    struct qtrack *t = enabled(c) ? tracker(c) : NULL;
    /* in transaction mode a query's arrival asked for the server: the wait is that query's;
     * in session mode the server comes at login, before any query */
    if (!t || !t->request_us || c->pool->db->pool.mode != POOL_TRANSACTION)
        return;
    t->wait_us = now_us() - t->request_us;
    t->first_after_wait = true;
}

/* ---- names of statements and portals ---- */

static void name_put(struct name_fp *tab, unsigned *next, const char *name, uint64_t fp)
{
    for (unsigned i = 0; i < QT_NAMES; i++)
        if (tab[i].fp && strcmp(tab[i].name, name) == 0) {
            tab[i].fp = fp;
            return;
        }
    struct name_fp *e = &tab[(*next)++ % QT_NAMES]; /* the oldest name makes room */
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->fp = fp;
}

static uint64_t name_get(const struct name_fp *tab, const char *name)
{
    for (unsigned i = 0; i < QT_NAMES; i++)
        if (tab[i].fp && strcmp(tab[i].name, name) == 0)
            return tab[i].fp;
    return 0;
}

/* ---- finishing a record ---- */

/* Copies src into dst (size dstsz), truncating; returns the length copied. */
static size_t copy_str(char *dst, size_t dstsz, const char *src)
{
    const char *end = memccpy(dst, src ? src : "", '\0', dstsz);
    if (!end) {
        dst[dstsz - 1] = '\0';
        return dstsz - 1;
    }
    return (size_t)(end - dst) - 1;
}

static void join_names(char *out, size_t outsz, char *const *names, int n)
{
    size_t at = 0;
    out[0] = '\0';
    for (int i = 0; i < n && at + 2 < outsz; i++) {
        if (i)
            out[at++] = ',';
        at += copy_str(out + at, outsz - at, names[i]);
    }
}

/* Copies a finished query into a log slot (the writer thread formats it). */
static void log_query(struct client *c, const struct stats_query *q)
{
    struct statslog *l = c->w->qlog;
    const struct stats_fp *f = stats_find(c->w->stats, q->fingerprint);
    struct statslog_rec *r = f ? statslog_slot(l) : NULL;
    if (!r)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->time_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    copy_str(r->client, sizeof(r->client), c->addr);
    copy_str(r->user, sizeof(r->user), c->user);
    copy_str(r->database, sizeof(r->database), c->database);
    copy_str(r->app, sizeof(r->app), q->app);
    r->fingerprint = q->fingerprint;
    copy_str(r->kind, sizeof(r->kind), sql_kind_name(f->a.kind));
    copy_str(r->query, sizeof(r->query), f->a.normalized);
    join_names(r->read, sizeof(r->read), f->a.read, f->a.n_read);
    join_names(r->written, sizeof(r->written), f->a.written, f->a.n_written);
    join_names(r->cols, sizeof(r->cols), f->a.pd.cols, f->a.pd.n_cols);
    r->predicates = f->a.pd.predicates;
    r->filters = f->a.pd.filters;
    r->aggregates = f->a.pd.aggregates;
    r->joins = f->a.pd.joins;
    r->limit = f->a.pd.limit;
    r->offset = f->a.pd.offset;
    r->group_by = f->a.pd.group_by;
    r->order_by = f->a.pd.order_by;
    r->distinct = f->a.pd.distinct;
    r->unfiltered = f->a.pd.unfiltered;
    r->rows = q->rows;
    r->bytes = q->bytes;
    double size = f->a.n_read == 1 && q->db ? tablesize_get(c->w, q->db, f->a.read[0]) : -1;
    r->table_fraction = size > 0 ? (double)q->rows / size : -1;
    memcpy(r->sqlstate, q->sqlstate, sizeof(r->sqlstate));
    r->wait_us = q->wait_us;
    r->first_us = q->first_us;
    r->server_us = q->server_us;
    r->total_us = q->total_us;
    statslog_commit(l);
}

/* Sampling: sample_percent of queries, and every one at least slow_ms long. */
static bool sampled(struct client *c, int64_t total_us)
{
    const struct stats_config *sc = &c->w->cfg->stats;
    if (sc->slow_ms > 0 && total_us >= (int64_t)sc->slow_ms * 1000)
        return true;
    if (sc->sample_percent >= 100)
        return true;
    c->w->rng ^= c->w->rng << 13; /* xorshift64 */
    c->w->rng ^= c->w->rng >> 7;
    c->w->rng ^= c->w->rng << 17;
    return (int)(c->w->rng % 100) < sc->sample_percent;
}

static void finish(struct client *c, const struct rec *r)
{
    if (!r->fp || c->qt->lost)
        return;
    int64_t now = now_us();
    struct stats_query q = {
        .fingerprint = r->fp,
        .app = param_get(&c->wanted, "application_name"),
        .wait_us = r->wait_us,
        .first_us = r->replied ? r->first_us - r->sent_us : 0,
        .server_us = now - r->sent_us,
        .total_us = now - r->start_us,
        .rows = r->rows,
        .bytes = r->bytes,
        .db = c->pool ? c->pool->db->name : NULL,
    };
    memcpy(q.sqlstate, r->sqlstate, sizeof(q.sqlstate));
    stats_add(c->w->stats, &q);
    struct pool *p = c->pool;
    if (p && (p->latency || (p->latency = calloc(1, sizeof(*p->latency))))) {
        stats_hist_add(p->latency, (uint64_t)q.total_us);
        p->latency_sum_us += (uint64_t)q.total_us;
    }
    if (c->w->qlog && sampled(c, q.total_us))
        log_query(c, &q);
}

/* ---- the queue of open records ---- */

static struct rec *head_rec(struct qtrack *t) { return t->n ? &t->q[t->head % QT_MAX] : NULL; }

static void pop(struct qtrack *t)
{
    t->head++;
    if (--t->n == 0)
        t->lost = false;
}

static void push(struct qtrack *t, const struct rec *r)
{
    if (t->n == QT_MAX) {
        t->lost = true;
        return;
    }
    t->q[(t->head + t->n++) % QT_MAX] = *r;
}

/* A new record for a query the client just sent. */
static struct rec new_rec(struct qtrack *t, enum rec_kind kind, uint64_t fp)
{
    int64_t now = now_us();
    struct rec r = {.kind = kind, .fp = fp, .start_us = now, .sent_us = now};
    if (t->first_after_wait) { /* the first query after a wait: the client saw it too */
        r.start_us = t->request_us;
        r.wait_us = t->wait_us;
        t->first_after_wait = false;
    }
    return r;
}

/* ---- client messages ---- */

bool qtrack_wants_client_msg(const struct client *c, uint8_t type)
{
    return enabled(c) && (type == 'Q' || type == 'P' || type == 'B' || type == 'E' ||
                          type == 'S' || type == 'F');
}

static void finish_suspended(struct client *c, struct qtrack *t)
{
    if (t->has_suspended)
        finish(c, &t->suspended);
    t->has_suspended = false;
}

static void on_bind(struct client *c, struct qtrack *t, struct rd *r)
{
    const char *portal, *stmt;
    if (!rd_str(r, &portal) || !rd_str(r, &stmt))
        return;
    if (t->has_suspended && strcmp(t->suspended.portal, portal) == 0)
        finish_suspended(c, t); /* the portal is replaced */
    name_put(t->portals, &t->portal_next, portal,
             *stmt ? name_get(t->stmts, stmt) : t->unnamed_stmt_fp);
}

static void on_execute(struct qtrack *t, struct rd *r)
{
    const char *portal;
    if (!rd_str(r, &portal))
        return;
    if (t->has_suspended && strcmp(t->suspended.portal, portal) == 0) {
        push(t, &t->suspended); /* more rows of the same query */
        t->has_suspended = false;
        return;
    }
    struct rec e = new_rec(t, REC_EXECUTE, name_get(t->portals, portal));
    snprintf(e.portal, sizeof(e.portal), "%s", portal);
    push(t, &e);
}

/* Does the server read this client's query text as the parser does? Not with
 * standard_conforming_strings off or a client-only encoding (then a quote can hide): such text
 * is counted but never analysed or logged. */
static bool text_readable(const struct client *c)
{
    return !c->server || params_text_readable(&c->server->reported);
}

void qtrack_client_msg(struct client *c, uint8_t type, uint32_t len, const uint8_t *body)
{
    struct qtrack *t = tracker(c);
    struct rd r;
    const char *name, *sql;
    if (!t)
        return;
    rd_init(&r, body, len);
    switch (type) {
    case 'Q': {
        struct rec q = new_rec(t, REC_QUERY, 0);
        if (len > 0 && body[len - 1] == '\0')
            q.fp = stats_fingerprint(c->w->stats, (const char *)body, text_readable(c));
        push(t, &q);
        break;
    }
    case 'P':
        if (!rd_str(&r, &name) || !rd_str(&r, &sql))
            return;
        if (*name)
            name_put(t->stmts, &t->stmt_next, name,
                     stats_fingerprint(c->w->stats, sql, text_readable(c)));
        else
            t->unnamed_stmt_fp = stats_fingerprint(c->w->stats, sql, text_readable(c));
        break;
    case 'B':
        on_bind(c, t, &r);
        break;
    case 'E':
        on_execute(t, &r);
        break;
    case 'S': {
        struct rec s = {.kind = REC_SYNC};
        push(t, &s);
        break;
    }
    case 'F': { /* FunctionCall: not a statement, but it ends with ReadyForQuery like one */
        struct rec f = new_rec(t, REC_QUERY, 0);
        push(t, &f);
        break;
    }
    }
}

/* ---- server messages ---- */

bool qtrack_wants_server_body(const struct client *c, uint8_t type)
{
    return enabled(c) && c->qt && (type == 'C' || type == 'E' || type == 'Z');
}

/* ReadyForQuery: it answers the oldest Sync or simple Query. Executes before that Sync that
 * have not finished were skipped after an error: dropped. */
static void on_ready(struct client *c, struct qtrack *t, const uint8_t *body, uint32_t len)
{
    struct rec *h;
    while ((h = head_rec(t)) != NULL) {
        enum rec_kind k = h->kind;
        if (k == REC_QUERY)
            finish(c, h);
        pop(t);
        if (k != REC_EXECUTE)
            break;
    }
    if (body && len == 1 && body[0] == 'I')
        finish_suspended(c, t); /* the transaction is over: so is the portal */
}

static void on_error(struct client *c, struct rec *h, const uint8_t *body, uint32_t len)
{
    struct pg_error e;
    if (body && proto_parse_error(body, len, &e))
        snprintf(h->sqlstate, sizeof(h->sqlstate), "%s", e.sqlstate);
    else /* too big to read whole (it streams past): failed, SQLSTATE unknown */
        snprintf(h->sqlstate, sizeof(h->sqlstate), "?????");
    if (h->kind == REC_EXECUTE) {
        finish(c, h);
        pop(c->qt);
    }
}

/* The portal of Execute h stopped at its row limit. If the client already sent the next
 * Execute of that portal (pipelined), that one carries on the same query; else the query waits
 * as suspended for one. */
static void on_suspended(struct client *c, struct qtrack *t, struct rec *h)
{
    struct rec done = *h;
    pop(t);
    struct rec *next = head_rec(t);
    if (next && next->kind == REC_EXECUTE && strcmp(next->portal, done.portal) == 0) {
        *next = done;
        return;
    }
    finish_suspended(c, t);
    t->suspended = done;
    t->has_suspended = true;
}

void qtrack_server_msg(struct client *c, uint8_t type, uint32_t len, const uint8_t *body)
{
    struct qtrack *t = enabled(c) ? c->qt : NULL;
    struct rec *h = t ? head_rec(t) : NULL;
    if (!h)
        return;
    if (type == 'Z') {
        on_ready(c, t, body, len);
        return;
    }
    if (h->kind == REC_SYNC)
        return; /* replies owed before the Sync belong to no query (Parse, Bind, Close) */
    h->bytes += 5 + (uint64_t)len;
    if (!h->replied) {
        h->replied = true;
        h->first_us = now_us();
    }
    switch (type) {
    case 'D':
        h->rows++;
        break;
    case 'E':
        on_error(c, h, body, len);
        break;
    case 'C':
    case 'I':
        if (h->kind == REC_EXECUTE) {
            finish(c, h);
            pop(t);
        }
        break;
    case 's': /* PortalSuspended: the client may fetch more from this portal */
        if (h->kind == REC_EXECUTE)
            on_suspended(c, t, h);
        break;
    }
}
