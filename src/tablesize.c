/* tablesize.c: a bounded cache of table sizes (a textcache by database and table name), filled
 * by side queries, at most TABLESIZE_PARALLEL at once. */
#include "tablesize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "sidequery.h"
#include "textcache.h"

/* Sizes are looked up again after this long; at most this many look-ups run at once. */
#define TABLESIZE_TTL_S 600
#define TABLESIZE_PARALLEL 2

/* A database entry's name, a NUL and a table's name, with its own NUL, fit in this. */
#define TABLESIZE_NAME_MAX 256

/* The named table's estimated row count, by name as a query wrote it (unqualified: the one the
 * look-up connection's search_path sees). */
static const char *const size_sql =
    "SELECT c.reltuples FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = $2 AND CASE WHEN $1 = '' THEN pg_catalog.pg_table_is_visible(c.oid) "
    "ELSE n.nspname = $1 END LIMIT 1";

/* What is kept per table (the cache's value; its text is "db\0table"). */
struct tablesize {
    double reltuples; /* -1: unknown */
    time_t asked;     /* when the last look-up started */
};

/* A look-up in flight; its entry may be evicted meanwhile, so it finds it again by name. */
struct lookup {
    struct tablesizes *owner;
    struct sidequery *q; /* NULL: the slot is free */
    size_t len;
    char name[TABLESIZE_NAME_MAX];
};

struct tablesizes {
    struct textcache *tc; /* by "db\0table": found by hash, least recently used evicted */
    struct lookup flight[TABLESIZE_PARALLEL];
};

static struct tablesizes *sizes(struct worker *w)
{
    if (!w->sizes && (w->sizes = calloc(1, sizeof(*w->sizes))) &&
        !(w->sizes->tc = textcache_new(TABLESIZE_MAX, sizeof(struct tablesize)))) {
        free(w->sizes);
        w->sizes = NULL;
    }
    return w->sizes;
}

/* The look-up slot for name: the one in flight for it (*busy), else a free one, else NULL. */
static struct lookup *flight_for(struct tablesizes *ts, const char *name, size_t len, bool *busy)
{
    struct lookup *free_slot = NULL;
    *busy = false;
    for (int i = 0; i < TABLESIZE_PARALLEL; i++) {
        struct lookup *l = &ts->flight[i];
        if (!l->q)
            free_slot = free_slot ? free_slot : l;
        else if (l->len == len && memcmp(l->name, name, len) == 0)
            *busy = true;
    }
    return *busy ? NULL : free_slot;
}

/* The table part of a "db\0table" name. */
static const char *table_of(const char *name)
{
    return name + strlen(name) + 1;
}

static void on_size(void *arg, const PGresult *r, const char *err)
{
    struct lookup *l = arg;
    l->q = NULL;
    struct tablesize *e = textcache_get(l->owner->tc, 0, l->name, l->len);
    if (e && r && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        e->reltuples = atof(PQgetvalue(r, 0, 0));
    else if (err)
        log_debug("size of table %s in %s: %s", table_of(l->name), l->name, err);
}

/* Starts looking up the size of the table named in l (db, then table) on its database's
 * server, with the database's own login. */
static void look_up(struct worker *w, struct lookup *l)
{
    const char *dbname = l->name, *table = table_of(l->name);
    const struct db_config *db = config_find_db(w->cfg, dbname);
    if (!db)
        return;
    char schema[TABLESIZE_NAME_MAX], err[300];
    const char *dot = strchr(table, '.');
    const char *name = dot ? dot + 1 : table;
    snprintf(schema, sizeof(schema), "%.*s", dot ? (int)(dot - table) : 0, table);
    const char *params[2] = {schema, name};
    struct sidequery_login login = {db->user, NULL, "lakeproxy stats", NULL, true};
    l->q = sidequery_start(w, db, &login, size_sql, 2, params, on_size, l, err, sizeof(err));
    if (!l->q)
        log_debug("size of table %s in %s: %s", table, dbname, err);
}

double tablesize_get(struct worker *w, const char *db, const char *table)
{
    struct tablesizes *ts = sizes(w);
    size_t dl = strlen(db), tl = strlen(table);
    if (!ts || dl + 1 + tl >= TABLESIZE_NAME_MAX)
        return -1;
    char name[TABLESIZE_NAME_MAX]; /* db, NUL, table */
    memcpy(name, db, dl + 1);
    memcpy(name + dl + 1, table, tl + 1);
    size_t len = dl + 1 + tl;
    struct tablesize *e = textcache_get(ts->tc, 0, name, len);
    if (!e && (e = textcache_put(ts->tc, 0, name, len)))
        e->reltuples = -1;
    if (!e)
        return -1;
    time_t now = time(NULL);
    bool busy;
    struct lookup *l;
    if (now - e->asked >= TABLESIZE_TTL_S && (l = flight_for(ts, name, len, &busy))) {
        e->asked = now;
        l->owner = ts;
        l->len = len;
        memcpy(l->name, name, len + 1);
        look_up(w, l);
    }
    return e->reltuples;
}

void tablesize_free_all(struct worker *w)
{
    struct tablesizes *ts = w->sizes;
    if (!ts)
        return;
    for (int i = 0; i < TABLESIZE_PARALLEL; i++)
        sidequery_cancel(ts->flight[i].q);
    textcache_free(ts->tc);
    free(ts);
    w->sizes = NULL;
}
