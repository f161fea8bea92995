/* stats.c: fingerprint and table aggregates, the text-key cache in front of the parser, and
 * the latency histogram. */
#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hashkey.h"
#include "sqlkey.h"

/* (table, application) aggregates kept at most; reads of others are not broken down. */
#define STATS_MAX_TABLES 1024

/* Sets of the memo of text keys (4 texts each): the statements a worker's clients run again. */
#define STATS_MEMO_SETS 64

struct key_slot {
    uint64_t key, fingerprint; /* key 0: empty; fingerprint: of the first statement */
    uint64_t *more;            /* the second and later statements' fingerprints, or NULL */
    uint32_t n;                /* statements (1 unless a simple Query carried several) */
};

struct stats {
    struct stats_fp **fps;
    size_t n_fp_buckets, n_fps, max_fps;
    struct key_slot *keys; /* direct-mapped: a newer text evicts an older one */
    size_t n_keys;
    struct stats_table **tables;
    size_t n_table_buckets, n_tables;
    uint64_t evicted, analyses;
    struct sqlkey_secret key_secret; /* of the text keys, so no text can be made to take
                                        another's */
    struct sqlkey_memo *memo;        /* the keys of texts seen lately */
    bool own_memo;                   /* made here (else the worker's) */
    uint64_t last_id;                /* of the newest fingerprint entry */
};

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n)
        p *= 2;
    return p;
}

struct stats *stats_new(size_t max_fps, size_t max_keys, struct sqlkey_memo *memo)
{
    struct stats *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    hashkey_get(&st->key_secret.k0, &st->key_secret.k1);
    st->max_fps = max_fps ? max_fps : 1;
    st->n_fp_buckets = pow2_at_least(st->max_fps);
    st->n_keys = pow2_at_least(max_keys);
    st->n_table_buckets = pow2_at_least(STATS_MAX_TABLES);
    st->fps = calloc(st->n_fp_buckets, sizeof(*st->fps));
    st->keys = calloc(st->n_keys, sizeof(*st->keys));
    st->tables = calloc(st->n_table_buckets, sizeof(*st->tables));
    st->own_memo = !memo;
    st->memo = memo ? memo : sqlkey_memo_new(&st->key_secret, STATS_MEMO_SETS, NULL);
    if (!st->fps || !st->keys || !st->tables || !st->memo) {
        stats_free(st);
        return NULL;
    }
    return st;
}

static void free_fp(struct stats_fp *f)
{
    sqlinfo_analysis_free(&f->a);
    free(f);
}

static void free_table(struct stats_table *t)
{
    if (t) {
        free(t->table);
        free(t->app);
        free(t->db);
    }
    free(t);
}

void stats_free(struct stats *st)
{
    if (!st)
        return;
    for (size_t i = 0; st->fps && i < st->n_fp_buckets; i++)
        for (struct stats_fp *f = st->fps[i], *next; f; f = next) {
            next = f->next;
            free_fp(f);
        }
    for (size_t i = 0; st->tables && i < st->n_table_buckets; i++)
        for (struct stats_table *t = st->tables[i], *next; t; t = next) {
            next = t->next;
            free_table(t);
        }
    for (size_t i = 0; st->keys && i < st->n_keys; i++)
        free(st->keys[i].more);
    free(st->fps);
    free(st->keys);
    free(st->tables);
    if (st->own_memo)
        sqlkey_memo_free(st->memo);
    free(st);
}

static struct stats_fp **fp_slot(const struct stats *st, uint64_t fingerprint)
{
    return &st->fps[(fingerprint ^ (fingerprint >> 29)) & (st->n_fp_buckets - 1)];
}

const struct stats_fp *stats_find(const struct stats *st, uint64_t fingerprint)
{
    for (struct stats_fp *f = *fp_slot(st, fingerprint); f; f = f->next)
        if (f->fingerprint == fingerprint)
            return f;
    return NULL;
}

/* Makes room by dropping the least called fingerprint (rare: only when the table is full). */
static void evict_one(struct stats *st)
{
    struct stats_fp **victim = NULL;
    for (size_t i = 0; i < st->n_fp_buckets; i++)
        for (struct stats_fp **p = &st->fps[i]; *p; p = &(*p)->next)
            if (!victim || (*p)->calls < (*victim)->calls)
                victim = p;
    if (!victim)
        return;
    struct stats_fp *f = *victim;
    *victim = f->next;
    free_fp(f);
    st->n_fps--;
    st->evicted++;
}

/* Keeps analysis a (taking ownership) as a new fingerprint's. */
static bool insert_fp(struct stats *st, struct sql_analysis *a)
{
    struct stats_fp *f = calloc(1, sizeof(*f));
    if (!f) {
        sqlinfo_analysis_free(a);
        return false;
    }
    if (st->n_fps >= st->max_fps)
        evict_one(st);
    f->fingerprint = a->fingerprint;
    f->id = ++st->last_id;
    f->a = *a;
    struct stats_fp **slot = fp_slot(st, f->fingerprint);
    f->next = *slot;
    *slot = f;
    st->n_fps++;
    return true;
}

/* Keeps analysis a (taking it) unless its fingerprint is known: the fingerprint, 0 when out
 * of memory. */
static uint64_t keep_analysis(struct stats *st, struct sql_analysis *a)
{
    uint64_t fp = a->fingerprint;
    if (stats_find(st, fp))
        sqlinfo_analysis_free(a);
    else if (!insert_fp(st, a))
        return 0;
    return fp;
}

/* Analyses each statement of sql, which holds 2 to STATS_MAX_STMTS of them, into fps;
 * returns how many, 0 when out of memory. */
static size_t analyse_each(struct stats *st, const char *sql, uint64_t *fps)
{
    struct sql_span spans[STATS_MAX_STMTS];
    size_t n = sqlinfo_split(sql, spans, STATS_MAX_STMTS);
    char *one = malloc(strlen(sql) + 1);
    if (!one || n < 2 || n > STATS_MAX_STMTS) {
        free(one);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(one, sql + spans[i].start, spans[i].len);
        one[spans[i].len] = '\0';
        struct sql_analysis a;
        sqlinfo_analyze(one, &a);
        st->analyses++;
        if (!(fps[i] = keep_analysis(st, &a))) {
            n = 0;
            break;
        }
    }
    free(one);
    return n;
}

/* Analyses sql (on a miss of the key cache) into fps; returns how many statements, 0 when out
 * of memory. */
static size_t analyse(struct stats *st, const char *sql, uint64_t *fps)
{
    struct sql_analysis a;
    if (!sqlinfo_analyze(sql, &a))
        return 0;
    st->analyses++;
    if (a.n_stmts > 1 && a.n_stmts <= STATS_MAX_STMTS) {
        sqlinfo_analysis_free(&a);
        return analyse_each(st, sql, fps);
    }
    fps[0] = keep_analysis(st, &a);
    return fps[0] ? 1 : 0;
}

/* Is slot k still good: every fingerprint it names still kept (none evicted)? */
static bool slot_live(const struct stats *st, const struct key_slot *k)
{
    if (!stats_find(st, k->fingerprint))
        return false;
    for (uint32_t i = 0; i + 1 < k->n; i++)
        if (!stats_find(st, k->more[i]))
            return false;
    return true;
}

/* Remembers the n fingerprints of the text with key in slot k (when memory allows). */
static void slot_store(struct key_slot *k, uint64_t key, const uint64_t *fps, size_t n)
{
    free(k->more);
    k->more = n > 1 ? malloc((n - 1) * sizeof(*k->more)) : NULL;
    if (n > 1 && !k->more) {
        k->key = 0;
        k->n = 0;
        return;
    }
    if (n > 1)
        memcpy(k->more, fps + 1, (n - 1) * sizeof(*k->more));
    k->key = key;
    k->fingerprint = fps[0];
    k->n = (uint32_t)n;
}

size_t stats_statements(struct stats *st, const char *sql, bool readable, uint64_t *fps)
{
    if (!readable) { /* opaque: its own fingerprint space, never the parser's */
        uint64_t fp = (sqlkey(sql) | 1) ^ 0x5bd1e9955bd1e995ull;
        struct sql_analysis a = {.fingerprint = fp, .kind = SQL_UNKNOWN};
        fps[0] = stats_find(st, fp) || insert_fp(st, &a) ? fp : 0;
        return fps[0] ? 1 : 0;
    }
    return stats_statements_keyed(st, sql, sqlkey_memo_key(st->memo, sql), fps);
}

size_t stats_statements_keyed(struct stats *st, const char *sql, uint64_t key, uint64_t *fps)
{
    key |= 1; /* never 0, the empty slot */
    struct key_slot *k = &st->keys[key & (st->n_keys - 1)];
    if (k->key == key && slot_live(st, k)) {
        fps[0] = k->fingerprint;
        if (k->n > 1)
            memcpy(fps + 1, k->more, (k->n - 1) * sizeof(*fps));
        return k->n;
    }
    size_t n = analyse(st, sql, fps);
    if (n)
        slot_store(k, key, fps, n);
    return n;
}

uint64_t stats_fingerprint(struct stats *st, const char *sql, bool readable)
{
    uint64_t fps[STATS_MAX_STMTS];
    return stats_statements(st, sql, readable, fps) ? fps[0] : 0;
}

/* A hash of NUL-terminated parts, keyed with the process's secret: names a client picks
 * (application_name, table names in its statements) cannot be made to share a chain. */
static uint64_t str_hash(const char *const *parts, int n)
{
    struct siphash h;
    hashkey_start(&h);
    for (int i = 0; i < n; i++)
        siphash_bytes(&h, parts[i], strlen(parts[i]) + 1);
    return siphash_end(&h);
}

/* The aggregate of (table, app, db), made on first use; NULL when the table is full. */
static struct stats_table *table_entry(struct stats *st, const char *table, const char *app,
                                       const char *db)
{
    const char *key[3] = {table, app, db};
    struct stats_table **slot = &st->tables[str_hash(key, 3) & (st->n_table_buckets - 1)];
    for (struct stats_table *t = *slot; t; t = t->next)
        if (strcmp(t->table, table) == 0 && strcmp(t->app, app) == 0 && strcmp(t->db, db) == 0)
            return t;
    if (st->n_tables >= STATS_MAX_TABLES)
        return NULL;
    struct stats_table *t = calloc(1, sizeof(*t));
    if (!t || !(t->table = strdup(table)) || !(t->app = strdup(app)) || !(t->db = strdup(db))) {
        free_table(t);
        return NULL;
    }
    t->next = *slot;
    *slot = t;
    st->n_tables++;
    return t;
}

static void add_table_reads(struct stats *st, struct stats_fp *f, const struct stats_query *q)
{
    if (f->a.kind != SQL_SELECT && f->a.kind != SQL_COPY)
        return;
    const char *app = q->app ? q->app : "", *db = q->db ? q->db : "";
    for (int i = 0; i < f->a.n_read; i++) {
        struct stats_table *t = i == 0 ? f->read0 : NULL; /* most reads are of one table */
        if (!t || strcmp(t->app, app) != 0 || strcmp(t->db, db) != 0)
            t = table_entry(st, f->a.read[i], app, db);
        if (!t)
            return;
        if (i == 0)
            f->read0 = t;
        t->reads++;
        t->rows += q->rows;
        t->bytes += q->bytes;
        t->filtered += f->a.pd.filters > 0;
        if (f->a.pd.unfiltered) {
            t->unfiltered++;
            t->unfiltered_rows += q->rows;
            t->unfiltered_bytes += q->bytes;
        }
    }
}

void stats_add(struct stats *st, const struct stats_query *q)
{
    struct stats_fp *f = (struct stats_fp *)stats_find(st, q->fingerprint);
    if (!f)
        return;
    f->calls++;
    f->errors += q->sqlstate[0] != '\0';
    f->rows += q->rows;
    f->bytes += q->bytes;
    uint64_t total = q->total_us > 0 ? (uint64_t)q->total_us : 0;
    f->total_us += total;
    f->pushed_down += f->a.pd.predicates > 0;
    stats_hist_add(&f->hist, total);
    add_table_reads(st, f, q);
}

static int by_total_desc(const void *x, const void *y)
{
    const struct stats_fp *a = *(const struct stats_fp *const *)x;
    const struct stats_fp *b = *(const struct stats_fp *const *)y;
    return a->total_us < b->total_us ? 1 : a->total_us > b->total_us ? -1 : 0;
}

size_t stats_top(const struct stats *st, const struct stats_fp **out, size_t max)
{
    const struct stats_fp **all = malloc((st->n_fps ? st->n_fps : 1) * sizeof(*all));
    size_t n = 0;
    if (!all)
        return 0;
    for (size_t i = 0; i < st->n_fp_buckets; i++)
        for (const struct stats_fp *f = st->fps[i]; f; f = f->next)
            if (f->calls > 0)
                all[n++] = f;
    qsort(all, n, sizeof(*all), by_total_desc);
    if (n > max)
        n = max;
    memcpy(out, all, n * sizeof(*all));
    free(all);
    return n;
}

void stats_each_table(const struct stats *st, void (*fn)(void *, const struct stats_table *),
                      void *arg)
{
    for (size_t i = 0; i < st->n_table_buckets; i++)
        for (const struct stats_table *t = st->tables[i]; t; t = t->next)
            fn(arg, t);
}

uint64_t stats_evicted(const struct stats *st)
{
    return st->evicted;
}
uint64_t stats_analyses(const struct stats *st)
{
    return st->analyses;
}

/* Bucket i holds values below 2^((i+1)/4) us: i = floor(4 log2 us), in integers (per query,
 * twice: no floating point). With us = m 2^e, m in [1, 2), the quarter is how many of
 * 2^(1/4), 2^(1/2), 2^(3/4) m reaches; m is compared as a 64-bit fraction (top bit = 1) with
 * those constants rounded down, which no m equals (they are irrational). */
static int bucket_of(uint64_t us)
{
    static const uint64_t quarter[3] = {0x9837f0518db8a96fULL, 0xb504f333f9de6484ULL,
                                        0xd744fccad69d6af4ULL};
    if (us <= 1)
        return 0;
    int e = 63 - __builtin_clzll(us);
    uint64_t m = us << (63 - e);
    int i = 4 * e + (m > quarter[0]) + (m > quarter[1]) + (m > quarter[2]);
    return i >= STATS_BUCKETS ? STATS_BUCKETS - 1 : i;
}

void stats_hist_add(struct stats_hist *h, uint64_t us)
{
    h->count++;
    h->b[bucket_of(us)]++;
}

double stats_hist_upper_us(int i)
{
    return exp2((double)(i + 1) / 4.0);
}

uint64_t stats_hist_quantile(const struct stats_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)ceil(p * (double)h->count), seen = 0;
    if (want == 0)
        want = 1;
    for (int i = 0; i < STATS_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want)
            return (uint64_t)ceil(exp2((double)(i + 1) / 4.0));
    }
    return (uint64_t)ceil(exp2((double)STATS_BUCKETS / 4.0));
}
