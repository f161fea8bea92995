/* tablesize.c: a small cache of table sizes filled by side queries. */
#include "tablesize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "credentials.h"
#include "log.h"
#include "sidequery.h"

/* Sizes are looked up again after this long; at most this many look-ups run at once. */
#define TABLESIZE_TTL_S 600
#define TABLESIZE_PARALLEL 2

/* The named table's estimated row count, by name as a query wrote it (unqualified: the one the
 * look-up connection's search_path sees). */
static const char *const size_sql =
    "SELECT c.reltuples FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = $2 AND CASE WHEN $1 = '' THEN pg_catalog.pg_table_is_visible(c.oid) "
    "ELSE n.nspname = $1 END LIMIT 1";

struct tablesize {
    struct tablesizes *owner;
    char db[64], table[160];
    double reltuples;    /* -1: unknown */
    time_t asked;        /* when the last look-up started */
    struct sidequery *q; /* look-up in flight */
};

struct tablesizes {
    struct tablesize e[TABLESIZE_MAX];
    int n, in_flight;
    unsigned next; /* the entry to reuse when full */
};

static struct tablesizes *sizes(struct worker *w)
{
    if (!w->sizes)
        w->sizes = calloc(1, sizeof(*w->sizes));
    return w->sizes;
}

static struct tablesize *find(struct tablesizes *ts, const char *db, const char *table)
{
    for (int i = 0; i < ts->n; i++)
        if (strcmp(ts->e[i].table, table) == 0 && strcmp(ts->e[i].db, db) == 0)
            return &ts->e[i];
    return NULL;
}

/* A slot for a new table: a free one, else the next one without a look-up in flight. */
static struct tablesize *slot(struct tablesizes *ts)
{
    if (ts->n < TABLESIZE_MAX)
        return &ts->e[ts->n++];
    for (int tries = 0; tries < TABLESIZE_MAX; tries++) {
        struct tablesize *e = &ts->e[ts->next++ % TABLESIZE_MAX];
        if (!e->q)
            return e;
    }
    return NULL;
}

static void on_size(void *arg, const PGresult *r, const char *err)
{
    struct tablesize *e = arg;
    e->q = NULL;
    e->owner->in_flight--;
    if (r && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        e->reltuples = atof(PQgetvalue(r, 0, 0));
    else if (err)
        log_debug("size of table %s in %s: %s", e->table, e->db, err);
}

/* Starts looking up e's size on its database's server, with the database's own login. */
static void look_up(struct worker *w, struct tablesizes *ts, struct tablesize *e)
{
    const struct db_config *db = config_find_db(w->cfg, e->db);
    unsigned gen;
    char schema[160], err[300];
    const char *dot = strchr(e->table, '.');
    const char *name = dot ? dot + 1 : e->table;
    snprintf(schema, sizeof(schema), "%.*s", dot ? (int)(dot - e->table) : 0, e->table);
    e->asked = time(NULL);
    if (!db)
        return;
    const char *params[2] = {schema, name};
    e->owner = ts;
    struct sidequery_login login = {db->user, credentials_current(w, db, &gen), "lakeproxy stats",
                                    NULL};
    e->q = sidequery_start(w, db, &login, size_sql, 2, params, on_size, e, err, sizeof(err));
    if (!e->q) {
        log_debug("size of table %s in %s: %s", e->table, e->db, err);
        return;
    }
    ts->in_flight++;
}

double tablesize_get(struct worker *w, const char *db, const char *table)
{
    struct tablesizes *ts = sizes(w);
    if (!ts || strlen(db) >= sizeof(ts->e[0].db) || strlen(table) >= sizeof(ts->e[0].table))
        return -1;
    struct tablesize *e = find(ts, db, table);
    if (!e && (e = slot(ts))) {
        snprintf(e->db, sizeof(e->db), "%s", db);
        snprintf(e->table, sizeof(e->table), "%s", table);
        e->reltuples = -1;
        e->asked = 0;
    }
    if (!e)
        return -1;
    bool stale = time(NULL) - e->asked >= TABLESIZE_TTL_S;
    if (!e->q && stale && ts->in_flight < TABLESIZE_PARALLEL)
        look_up(w, ts, e);
    return e->reltuples;
}

void tablesize_free_all(struct worker *w)
{
    struct tablesizes *ts = w->sizes;
    for (int i = 0; ts && i < ts->n; i++)
        sidequery_cancel(ts->e[i].q);
    free(ts);
    w->sizes = NULL;
}
