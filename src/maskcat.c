/* maskcat.c: the masking catalog per database entry, read through side queries. */
#include "maskcat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "credentials.h"
#include "log.h"
#include "sidequery.h"

/* OIDs remembered as not masked (reset when full); OIDs that may wait for one read. */
#define CLEAN_SLOTS 8192
#define CLEAN_MAX 4096
#define ASKED_MAX 256

/* Rows: ('c', rule, table, column, table name) for masked columns, ('t', name) for every
 * column of a table holding one, ('v', table, name) for views that read one (through other
 * views too, or as a whole row) or call a function defined outside pg_catalog (it may read
 * anything), ('f', name) for functions outside pg_catalog and
 * information_schema, ('r', name) for functions and string types that apply to a whole row
 * (callable as row.name). Rules arrive as three parallel arrays. */
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
    "SELECT k.ord, i.inhrelid, k.attname FROM kids k "
    "JOIN pg_catalog.pg_inherits i ON i.inhparent = k.rel), "
    "cols(ord, rel, attnum) AS (SELECT k.ord, k.rel, a.attnum FROM kids k "
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = k.rel AND a.attname = k.attname "
    "AND NOT a.attisdropped), "
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
    "SELECT rw.ev_class FROM views v JOIN pg_catalog.pg_depend d "
    "ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "
    "AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = v.rel "
    "JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid WHERE rw.ev_class <> v.rel) "
    "SELECT 'c', m.ord, m.rel::pg_catalog.int8, m.attnum::int, c.relname::text FROM cols m "
    "JOIN pg_catalog.pg_class c ON c.oid = m.rel "
    "UNION ALL SELECT DISTINCT 't', NULL::int, NULL::pg_catalog.int8, NULL::int, a.attname::text "
    "FROM (SELECT DISTINCT rel FROM cols) k JOIN pg_catalog.pg_attribute a "
    "ON a.attrelid = k.rel AND a.attnum > 0 AND NOT a.attisdropped "
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
    "UNION ALL SELECT DISTINCT 'f', NULL::int, NULL::pg_catalog.int8, NULL::int, "
    "p.proname::text FROM pg_catalog.pg_proc p WHERE p.pronamespace NOT IN "
    "('pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace)";

struct maskcol {
    uint32_t rel;
    int16_t attnum;
    int rule;
    char *relname;
};

struct names {
    char **items;
    size_t n;
};

struct maskcat {
    struct maskcat *next;
    struct worker *w;
    char db[64];
    struct maskcol *cols;
    size_t n_cols;
    uint32_t *tainted;
    size_t n_tainted;
    struct names views, funcs, columns, row_funcs;
    uint32_t clean[CLEAN_SLOTS]; /* open addressing, 0 = empty */
    size_t n_clean;
    uint32_t asked[ASKED_MAX], asked_next[ASKED_MAX]; /* unknown OIDs before / during a read */
    size_t n_asked, n_asked_next;
    bool ready, again;
    uint64_t unmatched;  /* rules (first 64) that matched no column at the last read */
    char error[300];
    time_t read_at;
    uint64_t version;
    struct sidequery *q;
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

bool maskcat_ready(const struct maskcat *mc) { return mc->ready; }
const char *maskcat_error(const struct maskcat *mc) { return mc->error; }
bool maskcat_loading(const struct maskcat *mc) { return mc->q != NULL; }
uint64_t maskcat_version(const struct maskcat *mc) { return mc->version; }

const char *const *maskcat_user_functions(const struct maskcat *mc, size_t *n)
{
    *n = mc->funcs.n;
    return (const char *const *)mc->funcs.items;
}

const char *const *maskcat_refused_relations(const struct maskcat *mc, size_t *n)
{
    *n = mc->views.n;
    return (const char *const *)mc->views.items;
}

const char *const *maskcat_table_columns(const struct maskcat *mc, size_t *n)
{
    *n = mc->columns.n;
    return (const char *const *)mc->columns.items;
}

const char *const *maskcat_row_functions(const struct maskcat *mc, size_t *n)
{
    *n = mc->row_funcs.n;
    return (const char *const *)mc->row_funcs.items;
}

size_t maskcat_masked_tables(const struct maskcat *mc, const bool *applies, size_t n_rules,
                             const char **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < mc->n_cols && n < max; i++) {
        const struct maskcol *m = &mc->cols[i];
        bool seen = false;
        for (size_t k = 0; k < n && !seen; k++)
            seen = strcmp(out[k], m->relname) == 0;
        if (!seen && m->rule >= 0 && (size_t)m->rule < n_rules && applies[m->rule])
            out[n++] = m->relname;
    }
    return n;
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
    for (size_t i = 0; i < mc->n_tainted; i++)
        if (mc->tainted[i] == rel)
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

int maskcat_column(struct maskcat *mc, uint32_t relid, int16_t attnum)
{
    for (size_t i = 0; i < mc->n_cols; i++)
        if (mc->cols[i].rel == relid && mc->cols[i].attnum == attnum)
            return mc->cols[i].rule;
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

static void cols_free(struct maskcol *cols, size_t n)
{
    for (size_t i = 0; cols && i < n; i++)
        free(cols[i].relname);
    free(cols);
}

/* Everything a read tells, before it replaces what was known. */
struct catalog {
    struct maskcol *cols;
    size_t n_cols;
    uint32_t *tainted;
    size_t n_tainted;
    struct names views, funcs, columns, row_funcs;
};

static void catalog_free(struct catalog *k)
{
    cols_free(k->cols, k->n_cols);
    free(k->tainted);
    names_free(&k->views);
    names_free(&k->funcs);
    names_free(&k->columns);
    names_free(&k->row_funcs);
}

/* One row of a read into k; false when out of memory. */
static bool take_row(struct catalog *k, const PGresult *r, int i)
{
    const char *kind = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 4);
    uint32_t rel = (uint32_t)strtoul(PQgetvalue(r, i, 2), NULL, 10);
    switch (kind[0]) {
    case 'c':
        k->cols[k->n_cols] = (struct maskcol){rel, (int16_t)atoi(PQgetvalue(r, i, 3)),
                                              atoi(PQgetvalue(r, i, 1)), strdup(name)};
        return k->cols[k->n_cols++].relname != NULL;
    case 'v':
        k->tainted[k->n_tainted++] = rel;
        return names_add(&k->views, name);
    case 't': return names_add(&k->columns, name);
    case 'r': return names_add(&k->row_funcs, name);
    default: return names_add(&k->funcs, name);
    }
}

/* A column masked once stays masked until the configuration changes, whatever it is renamed
 * to (or its table, or its schema): a rename does not lift a mask. Adds old's columns that k
 * lacks; false when out of memory. */
static bool keep_masked_columns(struct catalog *k, struct catalog *old)
{
    struct maskcol *grown = realloc(k->cols, (k->n_cols + old->n_cols + 1) * sizeof(*grown));
    if (!grown)
        return false;
    k->cols = grown;
    for (size_t i = 0; i < old->n_cols; i++) {
        bool found = false;
        for (size_t j = 0; j < k->n_cols && !found; j++)
            found = k->cols[j].rel == old->cols[i].rel && k->cols[j].attnum == old->cols[i].attnum;
        if (found)
            continue;
        k->cols[k->n_cols++] = old->cols[i];
        old->cols[i].relname = NULL; /* moved */
    }
    return true;
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

/* Replaces what is known with the rows of a read; false when out of memory. */
static bool take_rows(struct maskcat *mc, const PGresult *r)
{
    int rows = PQntuples(r);
    struct catalog k = {.cols = calloc((size_t)rows + 1, sizeof(*k.cols)),
                        .tainted = calloc((size_t)rows + 1, sizeof(*k.tainted))};
    bool ok = k.cols && k.tainted;
    for (int i = 0; ok && i < rows; i++)
        ok = take_row(&k, r, i);
    if (!ok) {
        catalog_free(&k);
        return false;
    }
    struct catalog old = {mc->cols, mc->n_cols, mc->tainted, mc->n_tainted,
                          mc->views, mc->funcs, mc->columns, mc->row_funcs};
    if (!keep_masked_columns(&k, &old)) {
        catalog_free(&k);
        return false;
    }
    report_unmatched_rules(mc, &k);
    catalog_free(&old);
    mc->cols = k.cols;
    mc->n_cols = k.n_cols;
    mc->tainted = k.tainted;
    mc->n_tainted = k.n_tainted;
    mc->views = k.views;
    mc->funcs = k.funcs;
    mc->columns = k.columns;
    mc->row_funcs = k.row_funcs;
    return true;
}

static void start_read(struct maskcat *mc);

static void on_read(void *arg, const PGresult *r, const char *err)
{
    struct maskcat *mc = arg;
    mc->q = NULL;
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && take_rows(mc, r)) {
        for (size_t i = 0; i < mc->n_asked; i++) /* asked before this read: now known */
            clean_add(mc, mc->asked[i]);
        mc->ready = true;
        mc->error[0] = '\0';
        mc->version++;
    } else {
        snprintf(mc->error, sizeof(mc->error), "cannot read the masking catalog of %.63s: %.180s",
                 mc->db, err ? err : r ? PQresultErrorMessage(r) : "out of memory");
        log_warning("%s", mc->error);
    }
    mc->n_asked = 0;
    if (mc->again) {
        mc->again = false;
        memcpy(mc->asked, mc->asked_next, mc->n_asked_next * sizeof(uint32_t));
        mc->n_asked = mc->n_asked_next;
        mc->n_asked_next = 0;
        start_read(mc);
    }
    if (!mc->q)
        client_mask_catalog_read(mc->w, mc->db);
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

/* Starts a read with the rules of the current configuration. */
static void start_read(struct maskcat *mc)
{
    struct worker *w = mc->w;
    const struct db_config *db = config_find_db(w->cfg, mc->db);
    const struct mask_config *m = &w->cfg->masking;
    size_t cap = 64;
    for (size_t i = 0; i < m->n_rules; i++)
        cap += 2 * (strlen(m->rules[i].schema) + strlen(m->rules[i].table) +
                     strlen(m->rules[i].column)) + 12;
    char *arr[3] = {calloc(1, cap), calloc(1, cap), calloc(1, cap)};
    char err[300] = "out of memory";
    unsigned gen;
    mc->read_at = time(NULL);
    if (db && arr[0] && arr[1] && arr[2]) {
        for (size_t i = 0; i < m->n_rules; i++) {
            array_put(arr[0], cap, m->rules[i].schema, i == 0);
            array_put(arr[1], cap, m->rules[i].table, i == 0);
            array_put(arr[2], cap, m->rules[i].column, i == 0);
        }
        for (int k = 0; k < 3; k++)
            strcat(arr[k], m->n_rules ? "}" : "{}");
        const char *params[3] = {arr[0], arr[1], arr[2]};
        mc->q = sidequery_start(w, db, db->user, credentials_current(w, db, &gen),
                                "lakeproxy masking", catalog_sql, 3, params, on_read, mc, err,
                                sizeof(err));
    }
    for (int k = 0; k < 3; k++)
        free(arr[k]);
    if (!mc->q) {
        snprintf(mc->error, sizeof(mc->error), "cannot read the masking catalog of %.63s: %.180s",
                 mc->db, db ? err : "no such database");
        log_warning("%s", mc->error);
    }
}

void maskcat_refresh(struct worker *w, struct maskcat *mc)
{
    (void)w;
    if (mc->q)
        mc->again = true;
    else
        start_read(mc);
}

void maskcat_refresh_if_old(struct worker *w, struct maskcat *mc)
{
    if (!mc->q && time(NULL) - mc->read_at >= w->cfg->masking.catalog_refresh_s)
        start_read(mc);
}

void maskcat_free_all(struct worker *w)
{
    while (w->maskcats) {
        struct maskcat *mc = w->maskcats;
        w->maskcats = mc->next;
        sidequery_cancel(mc->q);
        struct catalog k = {mc->cols, mc->n_cols, mc->tainted, mc->n_tainted,
                            mc->views, mc->funcs, mc->columns, mc->row_funcs};
        catalog_free(&k);
        free(mc);
    }
}
