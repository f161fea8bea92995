/* qtrack.c: per-client query records, matched to the server's replies in order. */
#include "qtrack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "fnv.h"
#include "monotime.h"
#include "objects.h"
#include "params.h"
#include "poolmode.h"
#include "proto.h"
#include "recent.h"
#include "stats.h"
#include "statslog.h"
#include "tablesize.h"
#include "textscan.h"

/* Records open at once per client: a ring grown on demand up to QT_CAP (a power of two), freed
 * when it drains if it grew past QT_KEEP.
 * Past the cap, queries are counted as untracked (lakeproxy_queries_untracked_total) rather
 * than mismatched. Statement and portal names remembered: QT_NAMES. */
#define QT_FIRST 8
#define QT_KEEP 64 /* a ring this size or smaller is kept when it drains */
#define QT_CAP 65536
#define QT_NAMES 32

/* REC_STMT: a statement of a simple Query that carries several, all but the last (which is the
 * REC_QUERY and ends at ReadyForQuery): it ends at its own CommandComplete. */
enum rec_kind { REC_QUERY, REC_STMT, REC_EXECUTE, REC_SYNC };

struct rec {
    uint8_t kind;
    bool replied;
    bool skipped; /* REC_QUERY: an earlier statement of it failed: it never ran */
    char sqlstate[6];
    uint32_t copy_dones; /* the client's CopyDone/CopyFail count when it was sent */
    uint64_t fp;
    uint64_t portal; /* REC_EXECUTE: hash of the portal's name */
    int64_t start_us, sent_us, first_us, wait_us;
    uint64_t rows, bytes;
    uint64_t exec_rows; /* DataRows since the last CommandComplete or PortalSuspended */
};

struct name_fp {
    char name[64];
    uint64_t fp;
};

struct qtrack {
    /* what every query touches first, together */
    struct rec *q; /* ring of cap records (0 or a power of two) */
    unsigned cap, head, n;
    /* over the cap: from the first message not recorded, none is until the replies to all of
     * them have passed: ReadyForQuery still owed to them (ovf_z, of which ovf_z_now sent since
     * the last CopyDone), whether an Execute follows their last Sync (ovf_open), and the
     * client's CopyDone count when the newest Execute or Query among them was sent */
    bool overflow, ovf_open;
    unsigned ovf_z, ovf_z_now;
    uint32_t ovf_exec_dones;
    uint32_t copy_dones; /* CopyDone and CopyFail messages the client sent */
    bool copy_in;        /* the server is in copy-in for it: it ignores Syncs */
    bool first_after_wait;
    bool has_done;
    bool has_app;            /* the client has an application_name: app */
    unsigned app_version;    /* the version of the client's settings app was read from */
    int64_t request_us;      /* when the client asked for a server */
    int64_t wait_us;         /* that wait, for its next query */
    struct stats_query done; /* a finished query not yet accounted for (has_done) */
    char app[64]; /* the client's application_name as of its last finished query (done.app) */
    /* named statements and portals, the unnamed statement, a suspended Execute */
    struct name_fp stmts[QT_NAMES], portals[QT_NAMES];
    unsigned stmt_next, portal_next;
    uint64_t unnamed_stmt_fp, unnamed_portal_fp; /* (drivers mostly use these: no lookup) */
    /* the texts of the client's last unnamed statements and their fingerprints: drivers parse
     * the same few texts again and again unnamed (libpq's PQexecParams, JDBC below its prepare
     * threshold, pgbench -M extended), and a compare costs less than keying the text; all
     * read as unnamed_readable says */
    struct recent unnamed_texts;
    bool unnamed_readable;
    /* a statement the client sent may still be running (from its Query, Bind, Execute or
     * FunctionCall to the ReadyForQuery that leaves none): what it sets, the server reports
     * only at that ReadyForQuery, so until then the reported settings may be stale */
    bool unsettled;
    struct rec suspended; /* an Execute stopped by its row limit, waiting for more */
    bool has_suspended;
    /* the query log's origin part for this client (made again when application_name
     * changes: who_app is the name it was made with) */
    char who[STATSLOG_WHO_MAX], who_app[64];
    size_t who_len;
    bool who_made;
};

static bool enabled(const struct client *c)
{
    return c->w->stats != NULL;
}

static struct qtrack *tracker(struct client *c)
{
    if (!c->qt)
        c->qt = calloc(1, sizeof(*c->qt));
    return c->qt;
}

void qtrack_free(struct client *c)
{
    if (c->qt) {
        free(c->qt->q);
        recent_clear(&c->qt->unnamed_texts);
    }
    free(c->qt);
    c->qt = NULL;
}

void qtrack_request(struct client *c)
{
    struct qtrack *t = enabled(c) ? tracker(c) : NULL;
    if (t)
        t->request_us = monotime_us();
}

void qtrack_linked(struct client *c)
{
    struct qtrack *t = enabled(c) ? tracker(c) : NULL;
    /* in transaction mode a query's arrival asked for the server: the wait is that query's;
     * in session mode the server comes at login, before any query */
    if (!t || !t->request_us || !pool_mode_of(c->pool)->shares_servers)
        return;
    t->wait_us = monotime_us() - t->request_us;
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

/* c's query tracker with its origin part made for application_name app (names are cut
 * at 63 bytes, as the statistics keep them). */
static const struct qtrack *who_of(struct client *c, const char *app)
{
    struct qtrack *t = c->qt;
    char name[sizeof(t->who_app)];
    copy_str(name, sizeof(name), app);
    if (t->who_made && strcmp(name, t->who_app) == 0)
        return t;
    char client[64], user[64], database[64];
    copy_str(client, sizeof(client), c->addr);
    copy_str(user, sizeof(user), c->user);
    copy_str(database, sizeof(database), c->database);
    t->who_len = statslog_format_who(t->who, client, user, database, name);
    memcpy(t->who_app, name, sizeof(name));
    t->who_made = true;
    return t;
}

/* Copies the statement fields of f's analysis into a log record. */
static void copy_statement(struct statslog_rec *r, const struct stats_fp *f)
{
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
    const struct qtrack *t = who_of(c, q->app);
    memcpy(r->who, t->who, t->who_len);
    r->who_len = t->who_len;
    r->stmt_id = f->id;
    r->fingerprint = q->fingerprint;
    r->stmt_known = statslog_knows(l, r->fingerprint, r->stmt_id);
    if (!r->stmt_known)
        copy_statement(r, f);
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

/* Adds a finished query to the aggregates, the pool's latency histogram and the log. */
static void account(struct client *c, struct stats_query *q)
{
    stats_add(c->w->stats, q);
    struct pool *p = c->pool;
    if (p && (p->latency || (p->latency = calloc(1, sizeof(*p->latency))))) {
        stats_hist_add(p->latency, (uint64_t)q->total_us);
        p->latency_sum_us += (uint64_t)q->total_us;
    }
    if (c->w->qlog && sampled(c, q->total_us))
        log_query(c, q);
}

/* Accounts for the query finished before, if still pending. */
static void settle(struct client *c, struct qtrack *t)
{
    if (t->has_done) {
        t->has_done = false;
        account(c, &t->done);
    }
}

/* A query is over: its figures are taken now, its accounting waits for qtrack_settle (or the
 * next query to finish), so that it does not hold up the replies that ended it. */
static void finish(struct client *c, const struct rec *r)
{
    if (!r->fp)
        return;
    int64_t now = monotime_us();
    struct qtrack *t = c->qt;
    settle(c, t);
    t->done = (struct stats_query){
        .fingerprint = r->fp,
        .wait_us = r->wait_us,
        .first_us = r->replied ? r->first_us - r->sent_us : 0,
        .server_us = now - r->sent_us,
        .total_us = now - r->start_us,
        .rows = r->rows,
        .bytes = r->bytes,
        .db = c->pool ? c->pool->db->name : NULL,
    };
    memcpy(t->done.sqlstate, r->sqlstate, sizeof(t->done.sqlstate));
    /* copied (a ParameterStatus relayed before the settle may replace the client's value),
     * and looked up only when the client's settings changed: not one string compare per
     * setting per query */
    if (t->app_version != c->wanted.version) { /* (version 0: never set, no name) */
        const char *app = param_get(&c->wanted, "application_name");
        t->has_app = app != NULL;
        if (app)
            copy_str(t->app, sizeof(t->app), app);
        t->app_version = c->wanted.version;
    }
    if (t->has_app)
        t->done.app = t->app;
    t->has_done = true;
}

void qtrack_settle(struct client *c)
{
    if (c->qt)
        settle(c, c->qt);
}

/* ---- the queue of open records ---- */

/* The i-th open record, oldest first. */
static struct rec *at(struct qtrack *t, unsigned i)
{
    return &t->q[(t->head + i) & (t->cap - 1)];
}

static struct rec *head_rec(struct qtrack *t)
{
    return t->n ? at(t, 0) : NULL;
}

static void pop(struct qtrack *t)
{
    t->head++;
    if (--t->n == 0 && t->cap > QT_KEEP) { /* drained after a deep pipeline: memory back */
        free(t->q);
        t->q = NULL;
        t->cap = 0;
        t->head = 0;
    }
}

/* Doubles the ring (up to QT_CAP); false when it may not or cannot grow. */
static bool grow(struct qtrack *t)
{
    unsigned cap = t->cap ? t->cap * 2 : QT_FIRST;
    struct rec *q = cap <= QT_CAP ? malloc(cap * sizeof(*q)) : NULL;
    if (!q)
        return false;
    for (unsigned i = 0; i < t->n; i++)
        q[i] = *at(t, i);
    free(t->q);
    t->q = q;
    t->cap = cap;
    t->head = 0;
    return true;
}

/* Over the cap: r is not recorded, nor is any message after it until the replies of those not
 * recorded have passed (replies come in order: a record after a gap would take the gap's). */
static void untrack(struct client *c, struct qtrack *t, const struct rec *r)
{
    t->overflow = true;
    if (r->kind == REC_SYNC || r->kind == REC_QUERY) {
        t->ovf_z++;
        t->ovf_z_now++;
        t->ovf_open = false;
    } else {
        t->ovf_open = true;
    }
    if (r->kind != REC_SYNC) {
        t->ovf_exec_dones = r->copy_dones;
        c->w->queries_untracked++;
    }
}

static void push(struct client *c, struct qtrack *t, const struct rec *r)
{
    if (t->overflow || (t->n == t->cap && !grow(t))) {
        untrack(c, t, r);
        return;
    }
    *at(t, t->n++) = *r;
}

/* A ReadyForQuery with no record open: it answers a message not recorded (over the cap);
 * recording resumes once every such one has had its answer, or once the server owes the
 * client nothing more (should a count here have gone wrong). */
static void overflow_ready(struct client *c, struct qtrack *t)
{
    if (t->ovf_z_now > 0 && t->ovf_z_now == t->ovf_z)
        t->ovf_z_now--; /* the oldest owed was sent since the last CopyDone */
    if (t->ovf_z > 0)
        t->ovf_z--;
    bool none_owed = t->ovf_z == 0 || (c->server && c->server->in_flight == 0);
    if (none_owed && !t->ovf_open) {
        t->overflow = false;
        t->ovf_z = t->ovf_z_now = 0;
    }
}

/* Fills r as a new record for a query the client just sent. */
static void init_rec(struct qtrack *t, struct rec *r, enum rec_kind kind, uint64_t fp)
{
    int64_t now = monotime_us(), start = now, wait = 0;
    uint32_t copy_dones = t->copy_dones;
    if (t->first_after_wait) { /* the first query after a wait: the client saw it too */
        start = t->request_us;
        wait = t->wait_us;
        t->first_after_wait = false;
    }
    *r = (struct rec){.kind = kind,
                      .fp = fp,
                      .start_us = start,
                      .sent_us = now,
                      .wait_us = wait,
                      .copy_dones = copy_dones};
}

/* Records a new query the client just sent, made in its place in the ring (as push would copy
 * it there: no copy of a whole record per query); NULL when it is not recorded (untrack). */
static struct rec *push_new(struct client *c, struct qtrack *t, enum rec_kind kind, uint64_t fp)
{
    if (t->overflow || (t->n == t->cap && !grow(t))) {
        struct rec r;
        init_rec(t, &r, kind, fp);
        untrack(c, t, &r);
        return NULL;
    }
    struct rec *r = at(t, t->n++);
    init_rec(t, r, kind, fp);
    return r;
}

/* ---- client messages ---- */

bool qtrack_wants_client_msg(const struct client *c, uint8_t type)
{
    return enabled(c) && (type == 'Q' || type == 'P' || type == 'B' || type == 'E' || type == 'S' ||
                          type == 'F' || type == 'c' || type == 'f');
}

static uint64_t portal_hash(const char *name)
{
    return fnv_str(FNV_OFFSET, name);
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
    if (t->has_suspended && t->suspended.portal == portal_hash(portal))
        finish_suspended(c, t); /* the portal is replaced */
    uint64_t fp = *stmt ? name_get(t->stmts, stmt) : t->unnamed_stmt_fp;
    if (*portal)
        name_put(t->portals, &t->portal_next, portal, fp);
    else
        t->unnamed_portal_fp = fp;
}

static void on_execute(struct client *c, struct qtrack *t, struct rd *r)
{
    const char *portal;
    if (!rd_str(r, &portal))
        return;
    uint64_t h = portal_hash(portal);
    if (t->has_suspended && t->suspended.portal == h) {
        t->suspended.copy_dones = t->copy_dones;
        push(c, t, &t->suspended); /* more rows of the same query */
        t->has_suspended = false;
        return;
    }
    struct rec *e =
        push_new(c, t, REC_EXECUTE, *portal ? name_get(t->portals, portal) : t->unnamed_portal_fp);
    if (e)
        e->portal = h;
}

/* Does the server read this client's query text as the parser does, as far as its reported
 * settings tell? Not with standard_conforming_strings off or a client-only encoding (then a
 * quote can hide): such text is counted but never analysed or logged. */
static bool session_readable(const struct client *c)
{
    return !c->server || params_text_readable(&c->server->reported);
}

/* Can sql be analysed? When the session reads text as the parser does and nothing still
 * running may have changed that, or when sql reads alike under every setting. */
static bool text_readable(const struct client *c, const struct qtrack *t, const char *sql)
{
    return (!t->unsettled && session_readable(c)) || text_reads_alike(sql);
}

/* A simple Query: one record per statement (PostgreSQL answers each with its own
 * CommandComplete, and counts each), the last one ending at ReadyForQuery. */
static void on_query(struct client *c, struct qtrack *t, uint32_t len, const uint8_t *body)
{
    uint64_t fps[STATS_MAX_STMTS];
    size_t n = 0;
    const char *sql = (const char *)body;
    if (len > 0 && body[len - 1] == '\0') {
        bool readable = text_readable(c, t, sql);
        n = readable && sql == c->query_text /* (its key found already: client.c) */
                ? stats_statements_keyed(c->w->stats, sql, c->query_shape.key, fps)
                : stats_statements(c->w->stats, sql, readable, fps);
    }
    for (size_t i = 0; i + 1 < n; i++)
        push_new(c, t, REC_STMT, fps[i]);
    push_new(c, t, REC_QUERY, n ? fps[n - 1] : 0);
}

/* The fingerprint of sql (len bytes before its terminator) parsed as the unnamed statement:
 * the one found before when the client parsed the text lately, the session reads text as it
 * did then, and the statistics still keep it. Text that a statement still running may make
 * the server read otherwise is fingerprinted unread, and not kept. */
static uint64_t unnamed_fingerprint(struct client *c, struct qtrack *t, const char *sql, size_t len)
{
    bool readable = session_readable(c);
    if (readable != t->unnamed_readable) {
        recent_clear(&t->unnamed_texts);
        t->unnamed_readable = readable;
    }
    if (readable && t->unsettled && !text_reads_alike(sql))
        return stats_fingerprint(c->w->stats, sql, false);
    uint64_t fp;
    if (recent_find(&t->unnamed_texts, sql, len, &fp) && stats_find(c->w->stats, fp))
        return fp;
    fp = stats_fingerprint(c->w->stats, sql, readable || text_reads_alike(sql));
    if (fp)
        recent_put(&t->unnamed_texts, sql, len, fp);
    return fp;
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
    case 'Q':
        on_query(c, t, len, body);
        t->unsettled = true;
        break;
    case 'P':
        if (!rd_str(&r, &name) || !rd_str(&r, &sql))
            return;
        if (*name)
            name_put(t->stmts, &t->stmt_next, name,
                     stats_fingerprint(c->w->stats, sql, text_readable(c, t, sql)));
        else
            t->unnamed_stmt_fp = /* (rd_str left r after the text's terminator) */
                unnamed_fingerprint(c, t, sql, (size_t)((const char *)r.p - sql) - 1);
        break;
    case 'B': /* (a type's input function may run code) */
        on_bind(c, t, &r);
        t->unsettled = true;
        break;
    case 'E':
        on_execute(c, t, &r);
        t->unsettled = true;
        break;
    case 'S': {
        if (t->copy_in)
            break; /* the server ignores it: no ReadyForQuery will answer it */
        struct rec s = {.kind = REC_SYNC, .copy_dones = t->copy_dones};
        push(c, t, &s);
        break;
    }
    case 'F': { /* FunctionCall: not a statement, but it ends with ReadyForQuery like one */
        push_new(c, t, REC_QUERY, 0);
        t->unsettled = true;
        break;
    }
    case 'c': /* CopyDone, CopyFail: the copy-in is over, Syncs count again */
    case 'f':
        t->copy_dones++;
        t->copy_in = false;
        t->ovf_z_now = 0;
        break;
    }
}

/* ---- server messages ---- */

bool qtrack_wants_server_body(const struct client *c, uint8_t type)
{
    return c->qt && enabled(c) && (type == 'C' || type == 'E' || type == 'Z');
}

/* ReadyForQuery: it answers the oldest Sync or simple Query. Records before it that have not
 * finished (Executes, statements of a simple Query) were skipped after an error: no calls. */
static void on_ready(struct client *c, struct qtrack *t, const uint8_t *body, uint32_t len)
{
    struct rec *h;
    while ((h = head_rec(t)) != NULL) {
        enum rec_kind k = h->kind;
        if (k == REC_QUERY && !h->skipped)
            finish(c, h);
        else if (k != REC_SYNC)
            c->w->queries_skipped++;
        pop(t);
        if (k == REC_QUERY || k == REC_SYNC)
            break;
    }
    if (body && len == 1 && body[0] == 'I')
        finish_suspended(c, t); /* the transaction is over: so is the portal */
}

/* The statements of a simple Query after the one that failed never run: the server goes on
 * to ReadyForQuery. */
static void skip_rest_of_query(struct client *c, struct qtrack *t)
{
    struct rec *h;
    while ((h = head_rec(t)) != NULL && h->kind == REC_STMT) {
        c->w->queries_skipped++;
        pop(t);
    }
    if (h && h->kind == REC_QUERY)
        h->skipped = true;
}

/* A statement of a simple Query is over (its CommandComplete or error): the next one starts
 * now, so each one's time is its own. */
static void next_statement(struct client *c, struct qtrack *t, struct rec *h)
{
    finish(c, h);
    pop(t);
    struct rec *n = head_rec(t);
    if (n && (n->kind == REC_STMT || n->kind == REC_QUERY))
        n->start_us = n->sent_us = monotime_us();
}

static void on_error(struct client *c, struct qtrack *t, struct rec *h, const uint8_t *body,
                     uint32_t len)
{
    struct pg_error e;
    if (body && proto_parse_error(body, len, &e))
        snprintf(h->sqlstate, sizeof(h->sqlstate), "%s", e.sqlstate);
    else /* too big to read whole (it streams past): failed, SQLSTATE unknown */
        snprintf(h->sqlstate, sizeof(h->sqlstate), "?????");
    t->copy_in = false; /* an error ends a copy-in */
    if (h->kind == REC_EXECUTE) {
        finish(c, h);
        pop(t);
    } else if (h->kind == REC_STMT) {
        next_statement(c, t, h);
        skip_rest_of_query(c, t);
    }
}

/* The portal of Execute h stopped at its row limit. If the client already sent the next
 * Execute of that portal (pipelined), that one carries on the same query; else the query waits
 * as suspended for one. */
static void on_suspended(struct client *c, struct qtrack *t, struct rec *h)
{
    struct rec done = *h;
    done.exec_rows = 0;
    pop(t);
    struct rec *next = head_rec(t);
    if (next && next->kind == REC_EXECUTE && next->portal == done.portal) {
        done.copy_dones = next->copy_dones;
        *next = done;
        return;
    }
    finish_suspended(c, t);
    t->suspended = done;
    t->has_suspended = true;
}

/* The row count a CommandComplete tag ends with ("SELECT 5", "INSERT 0 5", "COPY 12"), or -1
 * for a tag without one ("CREATE TABLE"). */
static int64_t tag_rows(const uint8_t *body, uint32_t len)
{
    uint32_t end = len > 0 && body[len - 1] == '\0' ? len - 1 : len, i = end;
    while (i > 0 && body[i - 1] >= '0' && body[i - 1] <= '9')
        i--;
    if (i == end || i == 0 || body[i - 1] != ' ' || end - i > 18)
        return -1;
    int64_t n = 0;
    for (; i < end; i++)
        n = n * 10 + (body[i] - '0');
    return n;
}

/* CommandComplete: rows are the DataRows sent, or when there were none the count of its tag
 * (rows written by INSERT, UPDATE, DELETE, MERGE, COPY FROM; rows sent by COPY TO). */
static void on_complete(struct client *c, struct qtrack *t, struct rec *h, const uint8_t *body,
                        uint32_t len)
{
    int64_t n = h->exec_rows == 0 && body ? tag_rows(body, len) : -1;
    if (n > 0)
        h->rows += (uint64_t)n;
    h->exec_rows = 0;
    if (h->kind == REC_EXECUTE) {
        finish(c, h);
        pop(t);
    } else if (h->kind == REC_STMT) {
        next_statement(c, t, h);
    }
}

/* CopyInResponse: the Syncs the client sent after the COPY (record h, the head) and before its
 * CopyDone are ignored by the server (no ReadyForQuery comes for them): forget them, and
 * ignore any more until the client's CopyDone or CopyFail. Records of one count lie together
 * (counts never fall along the ring): only that run is looked at, its kept records move
 * towards its end and the head past the dropped ones, so a pipeline of many COPYs costs each
 * its own run, not the whole ring. h moves with them. */
static void on_copy_in(struct qtrack *t, const struct rec *h)
{
    uint32_t k = h->copy_dones;
    unsigned end = 1, to, dropped = 0;
    while (end < t->n && at(t, end)->copy_dones <= k)
        end++;
    to = end;
    for (unsigned i = end; i-- > 0;) {
        struct rec *r = at(t, i);
        if (i > 0 && r->kind == REC_SYNC && r->copy_dones == k) {
            dropped++;
            continue;
        }
        if (--to != i)
            *at(t, to) = *r;
    }
    t->head += dropped;
    t->n -= dropped;
    t->copy_in = t->copy_dones == k;
    if (t->copy_in && t->overflow) { /* so are those sent since and not recorded */
        t->ovf_z -= t->ovf_z_now;
        t->ovf_z_now = 0;
    }
}

/* A server message when no record is open: replies to messages not recorded (over the cap).
 * CopyInResponse: when the newest of them is the COPY (no CopyDone since), the Syncs sent
 * after it are ignored by the server; otherwise overflow_ready's fallback ends the gap. */
static void on_unrecorded(struct client *c, struct qtrack *t, uint8_t type)
{
    if (!t->overflow)
        return;
    if (type == 'Z') {
        overflow_ready(c, t);
    } else if (type == 'G' && t->ovf_exec_dones == t->copy_dones) {
        t->ovf_z -= t->ovf_z_now;
        t->ovf_z_now = 0;
        t->copy_in = true;
    }
}

/* A ReadyForQuery with nothing sent after it still owed one: the settings it reported are
 * the session's (the server reports what statements set just before it). */
static void settle_at_ready(struct client *c, struct qtrack *t)
{
    if (c->server && c->server->in_flight == 0 && !c->server->ext_open)
        t->unsettled = false;
}

void qtrack_server_msg(struct client *c, uint8_t type, uint32_t len, const uint8_t *body)
{
    struct qtrack *t = enabled(c) ? c->qt : NULL;
    struct rec *h = t ? head_rec(t) : NULL;
    if (t && type == 'Z')
        settle_at_ready(c, t);
    if (!h) {
        if (t)
            on_unrecorded(c, t, type);
        return;
    }
    if (type == 'Z') {
        on_ready(c, t, body, len);
        return;
    }
    if (h->kind == REC_SYNC)
        return; /* replies owed before the Sync belong to no query (Parse, Bind, Close) */
    h->bytes += 5 + (uint64_t)len;
    if (!h->replied) {
        h->replied = true;
        h->first_us = monotime_us();
    }
    switch (type) {
    case 'D':
        h->rows++;
        h->exec_rows++;
        break;
    case 'E': on_error(c, t, h, body, len); break;
    case 'C': on_complete(c, t, h, body, len); break;
    case 'I': /* EmptyQueryResponse */
        if (h->kind == REC_EXECUTE) {
            finish(c, h);
            pop(t);
        }
        break;
    case 'G': on_copy_in(t, h); break;
    case 's': /* PortalSuspended: the client may fetch more from this portal */
        if (h->kind == REC_EXECUTE)
            on_suspended(c, t, h);
        break;
    }
}
