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

/* Rows: ('c', rule, table, column) for masked columns, ('v', table, name) for views that read
 * one (through other views too, or as a whole row), ('f', name) for functions outside
 * pg_catalog and information_schema. Rules arrive as three parallel arrays. */
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
    "SELECT rw.ev_class FROM views v JOIN pg_catalog.pg_depend d "
    "ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "
    "AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = v.rel "
    "JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid WHERE rw.ev_class <> v.rel) "
    "SELECT 'c', ord, rel::pg_catalog.int8, attnum::int, NULL::text FROM cols "
    "UNION ALL SELECT 'v', NULL, v.rel::pg_catalog.int8, NULL, c.relname::text "
    "FROM (SELECT DISTINCT rel FROM views) v JOIN pg_catalog.pg_class c ON c.oid = v.rel "
    "UNION ALL SELECT DISTINCT 'f', NULL::int, NULL::pg_catalog.int8, NULL::int, "
    "p.proname::text FROM pg_catalog.pg_proc p WHERE p.pronamespace NOT IN "
    "('pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace)";

struct maskcol {
    uint32_t rel;
    int16_t attnum;
    int rule;
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
    struct names views, funcs;
    uint32_t clean[CLEAN_SLOTS]; /* open addressing, 0 = empty */
    size_t n_clean;
    uint32_t asked[ASKED_MAX], asked_next[ASKED_MAX]; /* unknown OIDs before / during a read */
    size_t n_asked, n_asked_next;
    bool ready, again;
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

/* Replaces what is known with the rows of a read; false when out of memory. */
static bool take_rows(struct maskcat *mc, const PGresult *r)
{
    int rows = PQntuples(r);
    struct maskcol *cols = calloc((size_t)rows + 1, sizeof(*cols));
    uint32_t *tainted = calloc((size_t)rows + 1, sizeof(*tainted));
    struct names views = {0}, funcs = {0};
    size_t nc = 0, nt = 0;
    bool ok = cols && tainted;
    for (int i = 0; ok && i < rows; i++) {
        const char *kind = PQgetvalue(r, i, 0);
        if (kind[0] == 'c')
            cols[nc++] = (struct maskcol){(uint32_t)strtoul(PQgetvalue(r, i, 2), NULL, 10),
                                          (int16_t)atoi(PQgetvalue(r, i, 3)),
                                          atoi(PQgetvalue(r, i, 1))};
        else if (kind[0] == 'v')
            ok = (tainted[nt++] = (uint32_t)strtoul(PQgetvalue(r, i, 2), NULL, 10)) &&
                 names_add(&views, PQgetvalue(r, i, 4));
        else
            ok = names_add(&funcs, PQgetvalue(r, i, 4));
    }
    if (!ok) {
        free(cols);
        free(tainted);
        names_free(&views);
        names_free(&funcs);
        return false;
    }
    free(mc->cols);
    free(mc->tainted);
    names_free(&mc->views);
    names_free(&mc->funcs);
    mc->cols = cols;
    mc->n_cols = nc;
    mc->tainted = tainted;
    mc->n_tainted = nt;
    mc->views = views;
    mc->funcs = funcs;
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
        free(mc->cols);
        free(mc->tainted);
        names_free(&mc->views);
        names_free(&mc->funcs);
        free(mc);
    }
}
