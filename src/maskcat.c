/* maskcat.c: the masking catalog per database entry, read through side queries. */
#include "maskcat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "config.h"
#include "fnv.h"
#include "hiddensql.h"
#include "log.h"
#include "masksql.h"
#include "maskview.h"
#include "sidequery.h"

/* OIDs remembered as not masked (reset when full); OIDs that may wait for one read. */
#define CLEAN_SLOTS 8192
/* A read the server refuses (an object dropped under it) is tried again this many times,
 * 100 ms, 200 ms ... 3.2 s later (6.3 s in all: a long DROP of many tables can hold it). */
#define READ_RETRIES 6
#define CLEAN_MAX 4096
#define ASKED_MAX 256
/* Views over masked columns described per read (the others stay refused), the longest
 * definition described, and the passes over views of views (maskview_resolve). */
#define VIEWS_MAX 256
#define VIEW_DEFINITION_MAX (64 * 1024)
#define VIEW_ROUNDS 8
/* Side connections of the catalog see only pg_catalog by name (maskcat.c's SQL and views'
 * definitions are read and described alike), and run without JIT: the planner overestimates
 * catalog_sql (cost about 650,000 with 4,400 relations), and compiling it (inlined and
 * optimized, about 400 functions) took 4-5 s of a 4-6 s query; without, it takes 0.3-0.6 s. */
#define CATALOG_OPTIONS "-c search_path=pg_catalog -c jit=off"

/* Rows: ('c', rule, table, column, table name) for masked columns (a rule's table and its
 * whole family, every table linked to it by inheritance, step by step up or down, through
 * tables that hold the column: its parents, as rows read through a parent carry the parent's
 * column as their origin, whatever child they come from; every descendant of those, its
 * siblings too, as an UPDATE of a partition key through the parent moves rows from one
 * partition to another, and a masked row must not land where it would be read unmasked; and
 * a descendant's other parents, which read the same rows, and so on); ('t', name) for every
 * column of a table holding one; ('v', view, name) for views and materialized views that read
 * one (through other views too, or as a whole row), that run a function defined outside
 * pg_catalog (called, or behind an operator or a cast: "unsafe"), or whose definition text
 * names one of the masking guard's SQL-text runners and table readers ($4) or planner
 * statistics relations ($5) (built-ins are pinned: no dependency on them is recorded);
 * ('d', view, definition) and ('a', view, column, name) for those the guard then judges, all
 * but the unsafe ones, which get no definition and so stay refused whole; ('f', name) for
 * functions outside pg_catalog and information_schema; ('r', name) for functions and string
 * types that apply to a whole row (callable as row.name); ('o', name) for operators and ('k',
 * type) for the target types of casts that run such a function written in a language that can
 * query (USER_FUNCTION); ('w', table) for tables whose writes run rules or user triggers, or
 * such functions in defaults, generated columns or constraints. Rules arrive as three parallel
 * arrays. Run with search_path pg_catalog: the definitions name every other schema, and are
 * described the same way. */
/* A function defined outside pg_catalog and information_schema in a language that can run
 * queries (SQL, PL/pgSQL, ...: not C or internal, as extensions' operators and defaults
 * mostly are) (p: its pg_proc alias). */
#define USER_FUNCTION(p)                                                                           \
    p ".pronamespace NOT IN ('pg_catalog'::pg_catalog.regnamespace, "                              \
      "'information_schema'::pg_catalog.regnamespace) AND " p ".prolang NOT IN (SELECT "           \
      "l.oid FROM pg_catalog.pg_language l WHERE l.lanname IN ('c', 'internal'))"

static const char *const catalog_sql =
    "WITH RECURSIVE "
    "r AS (SELECT (u.ord - 1)::int AS ord, u.s, u.t, u.col FROM unnest($1::text[], "
    "$2::text[], $3::text[]) WITH ORDINALITY AS u(s, t, col, ord)), "
    "base(ord, rel, attname) AS (SELECT r.ord, c.oid, a.attname FROM r "
    "JOIN pg_catalog.pg_namespace n ON n.nspname = r.s "
    "JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = r.t "
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = r.col "
    "AND a.attnum > 0 AND NOT a.attisdropped), "
    "kids(ord, rel, attname) AS (SELECT ord, rel, attname FROM base UNION "
    "SELECT k.ord, n.rel, k.attname FROM kids k "
    "JOIN pg_catalog.pg_inherits i ON k.rel IN (i.inhrelid, i.inhparent) "
    "CROSS JOIN LATERAL (SELECT CASE WHEN i.inhrelid = k.rel THEN i.inhparent "
    "ELSE i.inhrelid END AS rel) n "
    "WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = n.rel "
    "AND a.attname = k.attname AND a.attnum > 0 AND NOT a.attisdropped)), "
    "cols(ord, rel, attnum) AS (SELECT k.ord, k.rel, a.attnum FROM kids k "
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = k.rel AND a.attname = k.attname "
    "AND NOT a.attisdropped UNION "
    "SELECT x.ord, x.rel, x.attnum FROM unnest($6::int[], $7::pg_catalog.oid[], $8::int[]) "
    "AS x(ord, rel, attnum) JOIN pg_catalog.pg_attribute a ON a.attrelid = x.rel "
    "AND a.attnum = x.attnum AND NOT a.attisdropped), "
    "unsafe(rel) AS (SELECT rw.ev_class FROM pg_catalog.pg_depend d "
    "JOIN pg_catalog.pg_rewrite rw ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "
    "AND rw.oid = d.objid WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_proc p "
    "WHERE p.pronamespace NOT IN ('pg_catalog'::pg_catalog.regnamespace, "
    "'information_schema'::pg_catalog.regnamespace) AND ("
    "(d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = d.refobjid) OR "
    "(d.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass AND p.oid = (SELECT o.oprcode "
    "FROM pg_catalog.pg_operator o WHERE o.oid = d.refobjid)) OR "
    "(d.refclassid = 'pg_catalog.pg_cast'::pg_catalog.regclass AND p.oid = (SELECT k.castfunc "
    "FROM pg_catalog.pg_cast k WHERE k.oid = d.refobjid))))), "
    "views(rel) AS (SELECT rw.ev_class FROM cols m JOIN pg_catalog.pg_depend d "
    "ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "
    "AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = m.rel "
    "AND (d.refobjsubid = m.attnum OR d.refobjsubid = 0) "
    "JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid WHERE rw.ev_class <> m.rel UNION "
    "SELECT rw.ev_class FROM pg_catalog.pg_depend d "
    "JOIN pg_catalog.pg_proc p ON d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass "
    "AND d.refobjid = p.oid AND p.pronamespace NOT IN ('pg_catalog'::pg_catalog.regnamespace, "
    "'information_schema'::pg_catalog.regnamespace) "
    "JOIN pg_catalog.pg_rewrite rw ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "
    "AND rw.oid = d.objid UNION "
    "SELECT rel FROM unsafe UNION "
    "SELECT v.oid FROM pg_catalog.pg_class v WHERE v.relkind IN ('v', 'm') "
    "AND v.relnamespace NOT IN ('pg_catalog'::pg_catalog.regnamespace, "
    "'information_schema'::pg_catalog.regnamespace) AND EXISTS (SELECT 1 FROM "
    "pg_catalog.unnest($4::text[] || $5::text[]) x(n) "
    "WHERE pg_catalog.strpos(pg_catalog.pg_get_viewdef(v.oid), x.n) > 0) UNION "
    "SELECT rw.ev_class FROM views v JOIN pg_catalog.pg_depend d "
    "ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "
    "AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = v.rel "
    "JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid WHERE rw.ev_class <> v.rel) "
    "SELECT 'c', m.ord, m.rel::pg_catalog.int8, m.attnum::int, c.relname::text FROM cols m "
    "JOIN pg_catalog.pg_class c ON c.oid = m.rel "
    "UNION ALL SELECT 'q', m.ord, m.rel::pg_catalog.int8, m.attnum::int, a.attname::text "
    "FROM cols m JOIN pg_catalog.pg_attribute a ON a.attrelid = m.rel AND a.attnum = m.attnum "
    "UNION ALL SELECT DISTINCT 't', NULL::int, NULL::pg_catalog.int8, NULL::int, a.attname::text "
    "FROM (SELECT DISTINCT rel FROM cols) k JOIN pg_catalog.pg_attribute a "
    "ON a.attrelid = k.rel AND a.attnum > 0 AND NOT a.attisdropped "
    "UNION ALL SELECT DISTINCT 'n', NULL::int, NULL::pg_catalog.int8, NULL::int, q.name "
    "FROM pg_catalog.pg_class n JOIN pg_catalog.pg_namespace s ON s.oid = n.relnamespace "
    "CROSS JOIN LATERAL (VALUES (n.relname::text), "
    "(s.nspname::text OPERATOR(pg_catalog.||) pg_catalog.chr(1) OPERATOR(pg_catalog.||) "
    "n.relname::text)) q(name) "
    "WHERE n.relkind IN ('r', 'p', 'f', 'v', 'm') "
    "AND n.relnamespace NOT IN ('pg_catalog'::pg_catalog.regnamespace, "
    "'information_schema'::pg_catalog.regnamespace) "
    "UNION ALL SELECT DISTINCT 'r', NULL::int, NULL::pg_catalog.int8, NULL::int, p.proname::text "
    "FROM pg_catalog.pg_proc p WHERE p.pronargs >= 1 AND p.pronargs - p.pronargdefaults <= 1 "
    "AND (p.proargtypes[0] = ANY (ARRAY['pg_catalog.record', 'pg_catalog.\"any\"', "
    "'pg_catalog.anyelement', 'pg_catalog.anycompatible', 'pg_catalog.anynonarray', "
    "'pg_catalog.anycompatiblenonarray']::pg_catalog.regtype[]::pg_catalog.oid[]) "
    "OR EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.oid = p.proargtypes[0] "
    "AND t.typtype = 'c')) "
    "UNION ALL SELECT DISTINCT 'r', NULL::int, NULL::pg_catalog.int8, NULL::int, t.typname::text "
    "FROM pg_catalog.pg_type t WHERE t.typcategory = 'S' "
    "UNION ALL SELECT 'v', NULL, v.rel::pg_catalog.int8, NULL, c.relname::text "
    "FROM (SELECT DISTINCT rel FROM views) v JOIN pg_catalog.pg_class c ON c.oid = v.rel "
    "UNION ALL SELECT 'd', NULL, v.rel::pg_catalog.int8, NULL, "
    "pg_catalog.pg_get_viewdef(v.rel, true) FROM (SELECT DISTINCT rel FROM views) v "
    "JOIN pg_catalog.pg_class c ON c.oid = v.rel AND c.relkind IN ('v', 'm') "
    "WHERE v.rel NOT IN (SELECT rel FROM unsafe) "
    "UNION ALL SELECT 'a', NULL, v.rel::pg_catalog.int8, a.attnum::int, a.attname::text "
    "FROM (SELECT DISTINCT rel FROM views) v JOIN pg_catalog.pg_attribute a "
    "ON a.attrelid = v.rel AND a.attnum > 0 AND NOT a.attisdropped "
    "UNION ALL SELECT DISTINCT 'f', NULL::int, NULL::pg_catalog.int8, NULL::int, "
    "p.proname::text FROM pg_catalog.pg_proc p WHERE p.pronamespace NOT IN "
    "('pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace) "
    "UNION ALL SELECT DISTINCT 'o', NULL::int, NULL::pg_catalog.int8, NULL::int, "
    "o.oprname::text FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_proc p "
    "ON p.oid = o.oprcode WHERE " USER_FUNCTION(
        "p") " "
             "UNION ALL SELECT DISTINCT 'k', NULL::int, NULL::pg_catalog.int8, NULL::int, "
             "t.typname::text FROM pg_catalog.pg_cast k JOIN pg_catalog.pg_proc p ON p.oid = "
             "k.castfunc "
             "JOIN pg_catalog.pg_type t ON t.oid = k.casttarget WHERE " USER_FUNCTION(
                 "p") " "
                      "UNION ALL SELECT DISTINCT 'w', NULL::int, NULL::pg_catalog.int8, NULL::int, "
                      "c.relname::text FROM pg_catalog.pg_class c WHERE c.relkind IN ('r', 'p', "
                      "'f') "
                      "AND c.relnamespace NOT IN ('pg_catalog'::pg_catalog.regnamespace, "
                      "'information_schema'::pg_catalog.regnamespace) AND ("
                      "EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite rw WHERE rw.ev_class = c.oid "
                      "AND rw.rulename <> '_RETURN') OR "
                      "EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g WHERE g.tgrelid = c.oid "
                      "AND NOT g.tgisinternal) OR "
                      "EXISTS (SELECT 1 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p "
                      "ON d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = "
                      "d.refobjid "
                      "WHERE " USER_FUNCTION(
                          "p") " AND ("
                               "(d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND "
                               "d.objid IN "
                               "(SELECT ad.oid FROM pg_catalog.pg_attrdef ad WHERE ad.adrelid = "
                               "c.oid)) OR "
                               "(d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND "
                               "d.objid IN "
                               "(SELECT cn.oid FROM pg_catalog.pg_constraint cn WHERE cn.conrelid "
                               "= c.oid)))))";

struct maskcol {
    uint32_t rel;
    int16_t attnum;
    int rule;
    char *relname;
    char *colname; /* a resolved view's column: its name (NULL: a rule's column) */
};

/* A masked column's name as the catalog has it now, with its rule. */
struct colname {
    int rule;
    char *name;
};

struct names {
    char **items;
    size_t n;
};

/* Everything a read tells. */
struct catalog {
    struct maskcol *cols;
    size_t n_cols;
    int32_t *col_heads; /* cols by (rel, attnum): chain heads (n_heads, a power of two), -1 */
    int32_t *col_next;  /* the next col of a chain, in the order of cols; NULL: no index */
    size_t n_heads;
    uint32_t *tainted; /* views refused whole */
    size_t n_tainted;
    struct names views, funcs, columns, row_funcs;
    struct names relations; /* every relation's name, alone and as schema\x01name ('n' rows) */
    struct names operators, cast_types, write_refused; /* see the 'o', 'k', 'w' rows */
    struct maskview *cands; /* views that read masked columns, while a read resolves them */
    size_t n_cands, last;
    struct colname *names; /* the masked columns' names now ('q' rows: a renamed one's too) */
    size_t n_names, cap_names;
};

struct maskcat {
    struct maskcat *next;
    struct worker *w;
    char db[64];
    struct catalog cur;
    uint32_t clean[CLEAN_SLOTS]; /* open addressing, 0 = empty */
    size_t n_clean;
    uint32_t asked[ASKED_MAX], asked_next[ASKED_MAX]; /* unknown OIDs before / during a read */
    size_t n_asked, n_asked_next;
    bool ready, again;
    uint64_t unmatched; /* rules (first 64) that matched no column at the last read */
    char error[300];
    time_t read_at;
    time_t data_at;       /* when the read now installed started */
    uint64_t reads_ended; /* reads ended, installed or failed (maskcat_reads_ended) */
    bool slow_told;       /* the log says reads take catalog_refresh_s or longer */
    int retries;          /* reads the server refused in a row (READ_RETRIES at most) */
    struct event *retry_ev;
    struct event *failed_ev; /* a read that could not start: its end, on the next loop turn */
    uint64_t version;
    struct sidequery *q;
    struct catalog *pending; /* a read whose views are being described */
    size_t *described;       /* pending->cands index of each definition described */
    int n_undescribed;       /* definitions the server could not prepare */
};

struct maskcat *maskcat_for(struct worker *w, const char *db)
{
    for (struct maskcat *mc = w->maskcats; mc; mc = mc->next)
        if (strcmp(mc->db, db) == 0)
            return mc;
    struct maskcat *mc = calloc(1, sizeof(*mc));
    if (!mc || strlen(db) >= sizeof(mc->db)) {
        free(mc);
        return NULL;
    }
    snprintf(mc->db, sizeof(mc->db), "%s", db);
    mc->w = w;
    mc->next = w->maskcats;
    w->maskcats = mc;
    return mc;
}

bool maskcat_ready(const struct maskcat *mc)
{
    return mc->ready;
}
const char *maskcat_error(const struct maskcat *mc)
{
    return mc->error;
}
/* A read in flight, one to be tried again shortly (retry_later), or one whose failure to
 * start is yet to be told (failed_ev). */
bool maskcat_loading(const struct maskcat *mc)
{
    return mc->q != NULL || (mc->retry_ev && evtimer_pending(mc->retry_ev, NULL)) ||
           (mc->failed_ev && evtimer_pending(mc->failed_ev, NULL));
}
uint64_t maskcat_version(const struct maskcat *mc)
{
    return mc->version;
}

uint64_t maskcat_reads_ended(const struct maskcat *mc)
{
    return mc->reads_ended;
}

const char *const *maskcat_user_functions(const struct maskcat *mc, size_t *n)
{
    *n = mc->cur.funcs.n;
    return (const char *const *)mc->cur.funcs.items;
}

const char *const *maskcat_refused_relations(const struct maskcat *mc, size_t *n)
{
    *n = mc->cur.views.n;
    return (const char *const *)mc->cur.views.items;
}

const char *const *maskcat_table_columns(const struct maskcat *mc, size_t *n)
{
    *n = mc->cur.columns.n;
    return (const char *const *)mc->cur.columns.items;
}

const char *const *maskcat_relations(const struct maskcat *mc, size_t *n)
{
    *n = mc->cur.relations.n;
    return (const char *const *)mc->cur.relations.items;
}

const char *const *maskcat_row_functions(const struct maskcat *mc, size_t *n)
{
    *n = mc->cur.row_funcs.n;
    return (const char *const *)mc->cur.row_funcs.items;
}

const char *const *maskcat_user_operators(const struct maskcat *mc, size_t *n)
{
    *n = mc->cur.operators.n;
    return (const char *const *)mc->cur.operators.items;
}

const char *const *maskcat_user_cast_types(const struct maskcat *mc, size_t *n)
{
    *n = mc->cur.cast_types.n;
    return (const char *const *)mc->cur.cast_types.items;
}

const char *const *maskcat_write_refused(const struct maskcat *mc, size_t *n)
{
    *n = mc->cur.write_refused.n;
    return (const char *const *)mc->cur.write_refused.items;
}

/* The distinct table names (view_columns: resolved views' column names, and the masked
 * columns' names as the catalog has them now) of masked columns whose rule applies, at most
 * max, into out. Distinct through a hash set of the names, so a catalog of many partitions
 * costs each statement linear, not quadratic, time. */
static size_t applying_names(const struct maskcat *mc, const bool *applies, size_t n_rules,
                             bool view_columns, const char **out, size_t max)
{
    size_t n = 0, n_now = view_columns ? mc->cur.n_names : 0, all = mc->cur.n_cols + n_now;
    size_t slots = 2 * all + 1;
    const char **set = calloc(slots, sizeof(*set));
    for (size_t i = 0; i < all && n < max; i++) {
        const struct maskcol *m = i < mc->cur.n_cols ? &mc->cur.cols[i] : NULL;
        const struct colname *now = m ? NULL : &mc->cur.names[i - mc->cur.n_cols];
        const char *name = now ? now->name : view_columns ? m->colname : m->relname;
        int rule = now ? now->rule : m->rule;
        if (!name || rule < 0 || (size_t)rule >= n_rules || !applies[rule])
            continue;
        bool seen = false;
        if (set) {
            size_t k = fnv_str(FNV_OFFSET, name) % slots;
            while (set[k] && !(seen = strcmp(set[k], name) == 0))
                k = (k + 1) % slots;
            set[k] = name;
        } else { /* out of memory: the slow way */
            for (size_t k = 0; k < n && !seen; k++)
                seen = strcmp(out[k], name) == 0;
        }
        if (!seen)
            out[n++] = name;
    }
    free(set);
    return n;
}

size_t maskcat_masked_tables(const struct maskcat *mc, const bool *applies, size_t n_rules,
                             const char **out, size_t max)
{
    return applying_names(mc, applies, n_rules, false, out, max);
}

size_t maskcat_view_columns(const struct maskcat *mc, const bool *applies, size_t n_rules,
                            const char **out, size_t max)
{
    return applying_names(mc, applies, n_rules, true, out, max);
}

size_t maskcat_names_bound(const struct maskcat *mc)
{
    return mc->cur.n_cols + mc->cur.n_names;
}

static size_t clean_slot(const struct maskcat *mc, uint32_t rel)
{
    size_t i = (rel * 2654435761u) % CLEAN_SLOTS;
    while (mc->clean[i] && mc->clean[i] != rel)
        i = (i + 1) % CLEAN_SLOTS;
    return i;
}

static void clean_add(struct maskcat *mc, uint32_t rel)
{
    if (mc->n_clean >= CLEAN_MAX) { /* full: forget them all, they are asked about again */
        memset(mc->clean, 0, sizeof(mc->clean));
        mc->n_clean = 0;
    }
    size_t i = clean_slot(mc, rel);
    if (!mc->clean[i]) {
        mc->clean[i] = rel;
        mc->n_clean++;
    }
}

static bool is_tainted(const struct maskcat *mc, uint32_t rel)
{
    for (size_t i = 0; i < mc->cur.n_tainted; i++)
        if (mc->cur.tainted[i] == rel)
            return true;
    return false;
}

/* Remembers an unknown OID for the read that will answer it. */
static void ask(struct maskcat *mc, uint32_t rel)
{
    uint32_t *set = mc->q ? mc->asked_next : mc->asked;
    size_t *n = mc->q ? &mc->n_asked_next : &mc->n_asked;
    for (size_t i = 0; i < *n; i++)
        if (set[i] == rel)
            return;
    if (*n < ASKED_MAX)
        set[(*n)++] = rel;
    mc->again |= mc->q != NULL;
}

static size_t col_slot(uint32_t rel, int16_t attnum, size_t n_heads)
{
    uint64_t h = ((uint64_t)rel << 16 | (uint16_t)attnum) * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 32) & (n_heads - 1);
}

/* Indexes k's columns by (rel, attnum), so that a result's columns cost a chain each, not the
 * whole catalog; without memory, no index (maskcat_column then scans). */
static void index_columns(struct catalog *k)
{
    size_t n_heads = 16;
    while (n_heads < 2 * k->n_cols)
        n_heads *= 2;
    free(k->col_heads);
    free(k->col_next);
    k->col_heads = malloc(n_heads * sizeof(*k->col_heads));
    k->col_next = malloc((k->n_cols + 1) * sizeof(*k->col_next));
    if (!k->col_heads || !k->col_next || k->n_cols > INT32_MAX) {
        free(k->col_heads);
        free(k->col_next);
        k->col_heads = k->col_next = NULL;
        return;
    }
    k->n_heads = n_heads;
    for (size_t i = 0; i < n_heads; i++)
        k->col_heads[i] = -1;
    for (size_t i = k->n_cols; i-- > 0;) { /* prepended from the last: chains in cols' order */
        size_t slot = col_slot(k->cols[i].rel, k->cols[i].attnum, n_heads);
        k->col_next[i] = k->col_heads[slot];
        k->col_heads[slot] = (int32_t)i;
    }
}

/* The first column of the catalog, from i on (i < 0: from the start), that is (rel, attnum);
 * -1 when none. */
static int32_t next_column(const struct catalog *k, int32_t i, uint32_t rel, int16_t attnum)
{
    if (k->col_next) {
        i = i < 0 ? k->col_heads[col_slot(rel, attnum, k->n_heads)] : k->col_next[i];
        while (i >= 0 && (k->cols[i].rel != rel || k->cols[i].attnum != attnum))
            i = k->col_next[i];
        return i;
    }
    for (size_t j = i < 0 ? 0 : (size_t)i + 1; j < k->n_cols; j++)
        if (k->cols[j].rel == rel && k->cols[j].attnum == attnum)
            return (int32_t)j;
    return -1;
}

int maskcat_column(struct maskcat *mc, uint32_t relid, int16_t attnum, const bool *applies,
                   const struct mask_rule *rules, size_t n_rules)
{
    int found = MASKCAT_CLEAN, best = -1;
    bool mixed = false; /* applying rules that mask differently */
    for (int32_t i = next_column(&mc->cur, -1, relid, attnum); i >= 0;
         i = next_column(&mc->cur, i, relid, attnum)) {
        int r = mc->cur.cols[i].rule;
        found = r;
        if (r < 0 || (size_t)r >= n_rules || !applies[r])
            continue;
        /* several rules (a table's own, a parent's, a child's): the strongest */
        mixed |= best >= 0 && rules[r].same_as != rules[best].same_as;
        if (best < 0 || rules[r].strength > rules[best].strength)
            best = r;
    }
    if (best >= 0 && mixed && rules[best].strength < MASK_STRENGTH_ALL)
        return MASKCAT_REDACT;
    if (best >= 0)
        return best;
    if (found != MASKCAT_CLEAN)
        return found;
    if (is_tainted(mc, relid))
        return MASKCAT_TAINTED;
    if (mc->ready && mc->clean[clean_slot(mc, relid)] == relid)
        return MASKCAT_CLEAN;
    ask(mc, relid);
    return MASKCAT_UNKNOWN;
}

static void names_free(struct names *n)
{
    for (size_t i = 0; i < n->n; i++)
        free(n->items[i]);
    free(n->items);
    *n = (struct names){0};
}

static bool names_add(struct names *n, const char *s)
{
    char **grown = realloc(n->items, (n->n + 1) * sizeof(*grown));
    if (!grown)
        return false;
    n->items = grown;
    return (n->items[n->n] = strdup(s)) && ++n->n;
}

static void catalog_free(struct catalog *k)
{
    for (size_t i = 0; k->cols && i < k->n_cols; i++) {
        free(k->cols[i].relname);
        free(k->cols[i].colname);
    }
    free(k->cols);
    free(k->col_heads);
    free(k->col_next);
    free(k->tainted);
    names_free(&k->views);
    names_free(&k->funcs);
    names_free(&k->columns);
    names_free(&k->row_funcs);
    names_free(&k->relations);
    names_free(&k->operators);
    names_free(&k->cast_types);
    names_free(&k->write_refused);
    for (size_t i = 0; i < k->n_cands; i++)
        maskview_free(&k->cands[i]);
    free(k->cands);
    for (size_t i = 0; i < k->n_names; i++)
        free(k->names[i].name);
    free(k->names);
    *k = (struct catalog){0};
}

/* The view with OID rel among k's views to resolve, added when new (room for one per row was
 * made); NULL when out of memory. */
static struct maskview *candidate(struct catalog *k, uint32_t rel)
{
    if (k->last < k->n_cands && k->cands[k->last].oid == rel)
        return &k->cands[k->last];
    for (k->last = 0; k->last < k->n_cands; k->last++)
        if (k->cands[k->last].oid == rel)
            return &k->cands[k->last];
    k->cands[k->n_cands++].oid = rel;
    return &k->cands[k->last];
}

/* A view's row ('v', 'd' or 'a') into k; false when out of memory. */
static bool take_view_row(struct catalog *k, char kind, uint32_t rel, int attnum, const char *text)
{
    struct maskview *v = candidate(k, rel);
    if (kind == 'v')
        return v->name || (v->name = strdup(text));
    if (kind == 'a')
        return maskview_set_column(v, attnum > 0 ? (size_t)attnum : 0, text);
    if (v->definition || strlen(text) > VIEW_DEFINITION_MAX) /* too long: stays refused */
        return true;
    return (v->definition = strdup(text)) != NULL;
}

/* A masked column's current name ('q' row) into k; false when out of memory. */
static bool take_column_name(struct catalog *k, int rule, const char *name)
{
    if (k->n_names == k->cap_names) {
        size_t cap = k->cap_names ? 2 * k->cap_names : 16;
        struct colname *grown = realloc(k->names, cap * sizeof(*grown));
        if (!grown)
            return false;
        k->names = grown;
        k->cap_names = cap;
    }
    k->names[k->n_names] = (struct colname){rule, strdup(name)};
    return k->names[k->n_names++].name != NULL;
}

/* One row of a read into k; false when out of memory. */
static bool take_row(struct catalog *k, const PGresult *r, int i)
{
    const char *kind = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 4);
    uint32_t rel = (uint32_t)strtoul(PQgetvalue(r, i, 2), NULL, 10);
    int attnum = atoi(PQgetvalue(r, i, 3));
    switch (kind[0]) {
    case 'c':
        k->cols[k->n_cols] =
            (struct maskcol){rel, (int16_t)attnum, atoi(PQgetvalue(r, i, 1)), strdup(name), NULL};
        return k->cols[k->n_cols++].relname != NULL;
    case 'v':
    case 'd':
    case 'a': return take_view_row(k, kind[0], rel, attnum, name);
    case 'q': return take_column_name(k, atoi(PQgetvalue(r, i, 1)), name);
    case 't': return names_add(&k->columns, name);
    case 'r': return names_add(&k->row_funcs, name);
    case 'n': return names_add(&k->relations, name);
    case 'o': return names_add(&k->operators, name);
    case 'k': return names_add(&k->cast_types, name);
    case 'w': return names_add(&k->write_refused, name);
    default: return names_add(&k->funcs, name);
    }
}

/* A column masked once stays masked until the configuration changes, whatever it is renamed
 * to (or its table, or its schema): a rename does not lift a mask. Adds old's columns that k
 * lacks, each of their rules (not resolved views' columns: a view's definition may change,
 * each read resolves it anew); false when out of memory (old unchanged). k's columns are
 * looked up through its index, so a read costs the catalog's size, not its square. */
static bool keep_masked_columns(struct catalog *k, const struct catalog *old)
{
    struct maskcol *grown = realloc(k->cols, (k->n_cols + old->n_cols + 1) * sizeof(*grown));
    if (!grown)
        return false;
    k->cols = grown;
    index_columns(k); /* what the read found, before old's are added */
    bool ok = true;
    for (size_t i = 0; i < old->n_cols && ok; i++) {
        const struct maskcol *o = &old->cols[i];
        if (o->colname || next_column(k, -1, o->rel, o->attnum) >= 0)
            continue;
        k->cols[k->n_cols] = *o;
        if ((ok = (k->cols[k->n_cols].relname = strdup(o->relname)) != NULL))
            k->n_cols++;
    }
    index_columns(k); /* all of them now */
    return ok;
}

/* Logs the rules that match no column, when that set changes (a typo, or a renamed table). */
static void report_unmatched_rules(struct maskcat *mc, const struct catalog *k)
{
    const struct mask_config *m = &mc->w->cfg->masking;
    uint64_t unmatched = 0;
    for (size_t r = 0; r < m->n_rules && r < 64; r++) {
        bool found = false;
        for (size_t i = 0; i < k->n_cols && !found; i++)
            found = k->cols[i].rule == (int)r;
        if (!found)
            unmatched |= 1ull << r;
    }
    if (unmatched == mc->unmatched)
        return;
    mc->unmatched = unmatched;
    for (size_t r = 0; r < m->n_rules && r < 64; r++)
        if (unmatched & (1ull << r))
            log_warning("masking rule %s.%s.%s matches no column in database %s (not created "
                        "yet, or renamed: a column seen masked stays masked until a reload)",
                        m->rules[r].schema, m->rules[r].table, m->rules[r].column, mc->db);
}

/* The rows of a read, or NULL when out of memory. */
static struct catalog *catalog_from_rows(const PGresult *r)
{
    int rows = PQntuples(r);
    struct catalog *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    k->cols = calloc((size_t)rows + 1, sizeof(*k->cols));
    k->tainted = calloc((size_t)rows + 1, sizeof(*k->tainted));
    k->cands = calloc((size_t)rows + 1, sizeof(*k->cands));
    bool ok = k->cols && k->tainted && k->cands;
    for (int i = 0; ok && i < rows; i++)
        ok = take_row(k, r, i);
    if (!ok) {
        catalog_free(k);
        free(k);
        return NULL;
    }
    return k;
}

/* Adds to k the masked columns of resolved views (cols from first on), and all the column
 * names of those views for the guard; false when out of memory. */
static bool add_view_columns(struct catalog *k, const struct maskview_cols *cols, size_t first)
{
    struct maskcol *grown = realloc(k->cols, (k->n_cols + cols->n - first + 1) * sizeof(*grown));
    if (!grown)
        return false;
    k->cols = grown;
    for (size_t c = 0; c < k->n_cands; c++) {
        const struct maskview *v = &k->cands[c];
        bool masked = false;
        for (size_t i = first; i < cols->n; i++) {
            const struct maskview_col *m = &cols->items[i];
            if (m->rel != v->oid)
                continue;
            masked = true;
            struct maskcol *to = &k->cols[k->n_cols];
            *to = (struct maskcol){m->rel, m->attnum, m->rule, strdup(v->name),
                                   strdup(v->columns[m->attnum - 1])};
            k->n_cols++;
            if (!to->relname || !to->colname)
                return false;
        }
        for (size_t i = 0; masked && i < v->n_columns; i++)
            if (v->columns[i] && !names_add(&k->columns, v->columns[i]))
                return false;
    }
    return true;
}

/* The views of k not resolved are refused whole; false when out of memory. */
static bool refuse_unresolved(struct catalog *k)
{
    for (size_t c = 0; c < k->n_cands; c++) {
        const struct maskview *v = &k->cands[c];
        if (v->resolved)
            continue;
        k->tainted[k->n_tainted++] = v->oid;
        if (v->name && !names_add(&k->views, v->name))
            return false;
    }
    return true;
}

/* Resolves k's views over masked columns (maskview.c) with the rules of the running
 * configuration; false when out of memory. */
static bool resolve_views(struct maskcat *mc, struct catalog *k)
{
    const struct mask_config *m = &mc->w->cfg->masking;
    struct maskview_cols cols = {0};
    const char **rule_columns = calloc(m->n_rules + 1, sizeof(*rule_columns));
    const char **tables = calloc(m->n_rules + k->n_cols + 1, sizeof(*tables));
    bool ok = rule_columns && tables;
    size_t n_tables = 0;
    for (size_t i = 0; ok && i < m->n_rules; i++) {
        rule_columns[i] = m->rules[i].column;
        tables[n_tables++] = m->rules[i].table;
    }
    for (size_t i = 0; ok && i < k->n_cols; i++) {
        tables[n_tables++] = k->cols[i].relname;
        ok = maskview_cols_add(&cols, k->cols[i].rel, k->cols[i].attnum, k->cols[i].rule);
    }
    struct maskview_facts f = {rule_columns,
                               m->n_rules,
                               tables,
                               n_tables,
                               (const char *const *)k->funcs.items,
                               (const char *const *)k->columns.items,
                               (const char *const *)k->row_funcs.items,
                               k->funcs.n,
                               k->columns.n,
                               k->row_funcs.n};
    size_t first = cols.n;
    ok = ok && maskview_resolve(&f, k->cands, k->n_cands, &cols, VIEW_ROUNDS) >= 0 &&
         add_view_columns(k, &cols, first) && refuse_unresolved(k);
    maskview_cols_free(&cols);
    free(rule_columns);
    free(tables);
    return ok;
}

/* Replaces what is known with read k (emptied); false when out of memory (nothing changes). */
static bool install(struct maskcat *mc, struct catalog *k)
{
    if (!keep_masked_columns(k, &mc->cur) || !resolve_views(mc, k)) {
        catalog_free(k);
        return false;
    }
    for (size_t i = 0; i < k->n_cands; i++)
        maskview_free(&k->cands[i]);
    free(k->cands);
    k->cands = NULL;
    k->n_cands = 0;
    report_unmatched_rules(mc, k);
    catalog_free(&mc->cur);
    mc->cur = *k;
    *k = (struct catalog){0};
    index_columns(&mc->cur);
    return true;
}

static void start_read(struct maskcat *mc);

static void read_failed(struct maskcat *mc, const char *why)
{
    snprintf(mc->error, sizeof(mc->error), "cannot read the masking catalog of %.63s: %.180s",
             mc->db, why);
    log_warning("%s", mc->error);
}

/* Tells the log once when reads take catalog_refresh_s or longer (each statement of a masked
 * client then waits for a whole read), and once when they are quick again. */
static void note_read_time(struct maskcat *mc)
{
    int refresh_s = mc->w->cfg->masking.catalog_refresh_s;
    long took = (long)(time(NULL) - mc->read_at);
    bool slow = refresh_s > 0 && took >= refresh_s;
    if (slow && !mc->slow_told)
        log_warning("masking catalog of %.63s: a read took %ld s, masking.catalog_refresh_s "
                    "(%d s) or longer: statements of masked clients each wait for a whole read; "
                    "raise catalog_refresh_s",
                    mc->db, took, refresh_s);
    else if (!slow && mc->slow_told)
        log_info("masking catalog of %.63s: reads are quicker than catalog_refresh_s again",
                 mc->db);
    mc->slow_told = slow;
}

/* After a read, successful or not: the next one if asked for, else the waiters resume. */
static void read_ended(struct maskcat *mc)
{
    mc->reads_ended++;
    note_read_time(mc);
    mc->n_asked = 0;
    if (mc->again) {
        mc->again = false;
        memcpy(mc->asked, mc->asked_next, mc->n_asked_next * sizeof(uint32_t));
        mc->n_asked = mc->n_asked_next;
        mc->n_asked_next = 0;
        start_read(mc);
    }
    if (!maskcat_loading(mc))
        client_mask_catalog_read(mc->w, mc->db);
}

/* Installs the pending read, its views resolved as far as they were described. */
static void read_complete(struct maskcat *mc)
{
    struct catalog *k = mc->pending;
    mc->pending = NULL;
    free(mc->described);
    mc->described = NULL;
    if (install(mc, k)) {
        for (size_t i = 0; i < mc->n_asked; i++) /* asked before this read: now known */
            clean_add(mc, mc->asked[i]);
        mc->ready = true;
        mc->data_at = mc->read_at;
        mc->error[0] = '\0';
        /* numbered across the worker's catalogs, never per database: verdicts cached under
         * one database's catalog are not found under another's (masking verdicts are keyed
         * by the client's rules, the configuration and this version) */
        mc->version = ++mc->w->maskcat_reads;
    } else {
        read_failed(mc, "out of memory");
    }
    free(k);
    read_ended(mc);
}

/* Statement j described: where each column of the view's definition comes from. */
static void on_view_described(void *arg, int j, const PGresult *r, const char *err)
{
    struct maskcat *mc = arg;
    struct maskview *v = &mc->pending->cands[mc->described[j]];
    (void)err; /* it may quote the definition: not logged */
    int n = r ? PQnfields(r) : 0;
    if (!r || !(v->origins = calloc((size_t)n + 1, sizeof(*v->origins)))) {
        mc->n_undescribed++;
        return;
    }
    for (int i = 0; i < n; i++) {
        struct maskview_origin *o = &v->origins[i];
        o->rel = PQftable(r, i);
        o->attnum = (int16_t)PQftablecol(r, i);
        snprintf(o->name, sizeof(o->name), "%s", PQfname(r, i));
    }
    v->n_origins = (size_t)n;
}

static void on_views_described(void *arg, const PGresult *r, const char *err)
{
    struct maskcat *mc = arg;
    (void)r;
    mc->q = NULL;
    if (err)
        log_warning("cannot describe the views over masked columns of %s (they stay refused "
                    "to masked clients): %.180s",
                    mc->db, err);
    if (mc->n_undescribed)
        log_info("%d views over masked columns of %s cannot be prepared by %s: they stay "
                 "refused to masked clients",
                 mc->n_undescribed, mc->db, "the proxy's login");
    read_complete(mc);
}

/* Starts describing the pending read's view definitions (at most VIEWS_MAX); false when
 * there are none, or they cannot be (those views stay refused). */
static bool describe_views(struct maskcat *mc)
{
    struct catalog *k = mc->pending;
    const struct db_config *db = config_find_db(mc->w->cfg, mc->db);
    const char **sqls = calloc(VIEWS_MAX, sizeof(*sqls));
    mc->described = calloc(VIEWS_MAX, sizeof(*mc->described));
    mc->n_undescribed = 0;
    int n = 0;
    for (size_t i = 0; sqls && mc->described && i < k->n_cands; i++) {
        if (!k->cands[i].definition)
            continue;
        if (n == VIEWS_MAX) {
            log_warning("database %s has more than %d views over masked columns: the others "
                        "stay refused to masked clients",
                        mc->db, VIEWS_MAX);
            break;
        }
        mc->described[n] = i;
        sqls[n++] = k->cands[i].definition;
    }
    char err[300] = "out of memory";
    struct sidequery_login login = {db ? db->user : NULL, NULL, "lakeproxy masking",
                                    CATALOG_OPTIONS, true};
    if (n > 0 && db)
        mc->q = sidequery_describe(mc->w, db, &login, sqls, n, on_view_described,
                                   on_views_described, mc, err, sizeof(err));
    if (n > 0 && !mc->q)
        log_warning("cannot describe the views over masked columns of %s (they stay refused "
                    "to masked clients): %.180s",
                    mc->db, err);
    free(sqls);
    return mc->q != NULL;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_read(arg);
}

static void failed_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    read_ended(arg);
}

/* A read could not even start (no credential, out of memory): the waiters are told on the
 * next loop turn, not from within the call that asked for it (whose caller marks itself as
 * waiting after the call). */
static void end_failed_read(struct maskcat *mc)
{
    struct timeval now = {0, 0};
    if (!mc->failed_ev && !(mc->failed_ev = evtimer_new(mc->w->base, failed_cb, mc)))
        return;
    evtimer_add(mc->failed_ev, &now);
}

/* The server refused a read: most likely an object dropped while it ran ("could not open
 * relation with OID ..."), which a read a moment later does not see. Tries again after
 * 100 ms, 200 ms, 400 ms ...; false when no timer could be set. */
static bool retry_later(struct maskcat *mc)
{
    struct timeval tv = {0, 100000L << mc->retries};
    if (!mc->retry_ev && !(mc->retry_ev = evtimer_new(mc->w->base, retry_cb, mc)))
        return false;
    mc->retries++;
    return evtimer_add(mc->retry_ev, &tv) == 0;
}

static void on_read(void *arg, const PGresult *r, const char *err)
{
    struct maskcat *mc = arg;
    mc->q = NULL;
    bool rows = r && PQresultStatus(r) == PGRES_TUPLES_OK;
    /* sidequery reports a server's error as err, with PQresultErrorMessage's "ERROR:  ..." */
    bool refused = !rows && err && strncmp(err, "ERROR:", 6) == 0;
    if (refused && mc->retries < READ_RETRIES && retry_later(mc)) {
        log_info("masking catalog of %s: the server refused a read (%.*s): trying again", mc->db,
                 (int)strcspn(err, "\n"), err);
        return; /* waiters keep waiting */
    }
    mc->retries = 0;
    if (!rows || !(mc->pending = catalog_from_rows(r))) {
        read_failed(mc, err ? err : !rows && r ? PQresultErrorMessage(r) : "out of memory");
        read_ended(mc);
        return;
    }
    if (!describe_views(mc))
        read_complete(mc);
}

/* A PostgreSQL array literal of text: {"a","b"} with " and \ escaped. */
static void array_put(char *out, size_t outsz, const char *item, bool first)
{
    size_t at = strlen(out);
    if (at + 4 >= outsz)
        return;
    out[at++] = first ? '{' : ',';
    out[at++] = '"';
    for (const char *p = item; *p && at + 3 < outsz; p++) {
        if (*p == '"' || *p == '\\')
            out[at++] = '\\';
        out[at++] = *p;
    }
    out[at++] = '"';
    out[at] = '\0';
}

/* The stems of the functions that run SQL out of the guards' sight (hiddensql.h), and the
 * planner statistics relations, as text[] literals: the catalog read's $4 and $5. */
static void guard_names_arrays(char *hidden, char *stats, size_t outsz)
{
    size_t n = hiddensql_count();
    for (size_t i = 0; i < n; i++)
        array_put(hidden, outsz, hiddensql_stem(i), i == 0);
    strcat(hidden, n ? "}" : "{}");
    const char *const *rels = masksql_stats_relations(&n);
    for (size_t i = 0; i < n; i++)
        array_put(stats, outsz, rels[i], i == 0);
    strcat(stats, n ? "}" : "{}");
}

/* The rules' columns the last read found, as int[], oid[] and int[] literals of their rules,
 * relations and attribute numbers (the read's $6, $7, $8): a column renamed since is still
 * found, by number, under its new name. */
static void kept_columns_arrays(const struct catalog *k, char *out[3], size_t outsz)
{
    bool first = true;
    for (size_t i = 0; i < k->n_cols; i++) {
        const struct maskcol *m = &k->cols[i];
        if (m->colname || m->rule < 0)
            continue; /* (a view's column: each read resolves views anew) */
        char v[3][16];
        snprintf(v[0], sizeof(v[0]), "%d", m->rule);
        snprintf(v[1], sizeof(v[1]), "%u", m->rel);
        snprintf(v[2], sizeof(v[2]), "%d", m->attnum);
        for (int j = 0; j < 3; j++)
            array_put(out[j], outsz, v[j], first);
        first = false;
    }
    for (int j = 0; j < 3; j++)
        strcat(out[j], first ? "{}" : "}");
}

/* Starts a read with the rules of the current configuration. */
static void start_read(struct maskcat *mc)
{
    struct worker *w = mc->w;
    const struct db_config *db = config_find_db(w->cfg, mc->db);
    const struct mask_config *m = &w->cfg->masking;
    size_t cap = 64;
    for (size_t i = 0; i < m->n_rules; i++)
        cap += 2 * (strlen(m->rules[i].schema) + strlen(m->rules[i].table) +
                    strlen(m->rules[i].column)) +
               12;
    cap += 1024 + 40 * mc->cur.n_cols; /* the guard's name lists ($4, $5), the kept columns */
    char *arr[8];
    bool made = true;
    for (int k = 0; k < 8; k++)
        made &= (arr[k] = calloc(1, cap)) != NULL;
    char err[300] = "out of memory";
    mc->read_at = time(NULL);
    if (db && made) {
        for (size_t i = 0; i < m->n_rules; i++) {
            array_put(arr[0], cap, m->rules[i].schema, i == 0);
            array_put(arr[1], cap, m->rules[i].table, i == 0);
            array_put(arr[2], cap, m->rules[i].column, i == 0);
        }
        for (int k = 0; k < 3; k++)
            strcat(arr[k], m->n_rules ? "}" : "{}");
        guard_names_arrays(arr[3], arr[4], cap);
        kept_columns_arrays(&mc->cur, arr + 5, cap);
        const char *params[8] = {arr[0], arr[1], arr[2], arr[3], arr[4], arr[5], arr[6], arr[7]};
        struct sidequery_login login = {db->user, NULL, "lakeproxy masking", CATALOG_OPTIONS, true};
        mc->q =
            sidequery_start(w, db, &login, catalog_sql, 8, params, on_read, mc, err, sizeof(err));
    }
    for (int k = 0; k < 8; k++)
        free(arr[k]);
    if (!mc->q) {
        read_failed(mc, db ? err : "no such database");
        end_failed_read(mc);
    }
}

void maskcat_refresh(struct worker *w, struct maskcat *mc)
{
    (void)w;
    if (maskcat_loading(mc))
        mc->again = true;
    else
        start_read(mc);
}

bool maskcat_fresh(const struct maskcat *mc)
{
    return mc->ready && time(NULL) - mc->data_at < mc->w->cfg->masking.catalog_refresh_s;
}

void maskcat_refresh_if_old(struct worker *w, struct maskcat *mc)
{
    if (!maskcat_loading(mc) && time(NULL) - mc->read_at >= w->cfg->masking.catalog_refresh_s)
        start_read(mc);
}

void maskcat_free_all(struct worker *w)
{
    while (w->maskcats) {
        struct maskcat *mc = w->maskcats;
        w->maskcats = mc->next;
        sidequery_cancel(mc->q);
        if (mc->retry_ev)
            event_free(mc->retry_ev);
        if (mc->failed_ev)
            event_free(mc->failed_ev);
        catalog_free(&mc->cur);
        if (mc->pending)
            catalog_free(mc->pending);
        free(mc->pending);
        free(mc->described);
        free(mc);
    }
}
