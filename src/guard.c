/* guard.c: the RLS guard's rules over libpg_query parse trees (through sqlinfo), and the
 * bounded cache of verdicts by statement text. */
#include "guard.h"

#include <pg_query/pg_query.pb-c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "list.h"
#include "sqlinfo.h"

/* PostgreSQL's CURSOR_OPT_HOLD (parsenodes.h): DECLARE ... WITH HOLD. */
#define CURSOR_OPT_HOLD 0x0020
/* Statements longer than this are checked every time rather than cached. */
#define GUARD_CACHE_MAX_TEXT 8192

/* Built-in and common extension functions that run SQL handed to them as text, out of the
 * guard's sight. */
static const char *const sql_text_runners[] = {
    "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema",
    "ts_stat", "ts_rewrite", "dblink", "dblink_exec", "dblink_open", "dblink_send_query",
};

struct check {
    const char *prefix;
    size_t prefix_len;
    struct guard_verdict *out;
};

/* Refuses with msg; "%s" in msg, if any, is replaced by name. The first reason is kept. */
static void refuse(struct check *k, const char *msg, const char *name)
{
    if (k->out->refuse)
        return;
    k->out->refuse = true;
    const char *at = strstr(msg, "%s");
    if (at)
        snprintf(k->out->reason, sizeof(k->out->reason), "%.*s%s%s", (int)(at - msg), msg,
                 name, at + 2);
    else
        snprintf(k->out->reason, sizeof(k->out->reason), "%s", msg);
}

/* Is the setting name protected: "role", "session_authorization", or "<prefix>.*"? */
static bool is_protected(const struct check *k, const char *name)
{
    if (strcasecmp(name, "role") == 0 || strcasecmp(name, "session_authorization") == 0)
        return true;
    return strncasecmp(name, k->prefix, k->prefix_len) == 0 && name[k->prefix_len] == '.';
}

/* name, lower-cased into out (PostgreSQL's spelling of a setting name). */
static const char *lowered(const char *name, char out[96])
{
    size_t i = 0;
    for (; name[i] && i < 95; i++)
        out[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    out[i] = '\0';
    return out;
}

static void check_set(struct check *k, const PgQuery__VariableSetStmt *s)
{
    char low[96];
    if (s->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_RESET_ALL)
        refuse(k, "RESET ALL is not allowed: it would reset the settings lakeproxy injects",
               NULL);
    else if (s->name && is_protected(k, s->name))
        refuse(k, "setting \"%s\" is protected: lakeproxy sets it, clients cannot change it",
               lowered(s->name, low));
}

/* The string constant an argument node holds (through casts and name => notation), or NULL
 * when it is anything else. */
static const char *const_string(const PgQuery__Node *n)
{
    while (n) {
        switch (n->node_case) {
        case PG_QUERY__NODE__NODE_TYPE_CAST:
            n = n->type_cast->arg;
            break;
        case PG_QUERY__NODE__NODE_NAMED_ARG_EXPR:
            n = n->named_arg_expr->arg;
            break;
        case PG_QUERY__NODE__NODE_A_CONST:
            return n->a_const->val_case == PG_QUERY__A__CONST__VAL_SVAL && n->a_const->sval
                       ? n->a_const->sval->sval
                       : NULL;
        default:
            return NULL;
        }
    }
    return NULL;
}

/* The last part of a function's (possibly schema-qualified) name. */
static const char *func_name(const PgQuery__FuncCall *f)
{
    if (f->n_funcname == 0)
        return "";
    const PgQuery__Node *last = f->funcname[f->n_funcname - 1];
    return last->node_case == PG_QUERY__NODE__NODE_STRING && last->string->sval
               ? last->string->sval
               : "";
}

static void check_call(struct check *k, const PgQuery__FuncCall *f)
{
    char low[96];
    const char *fn = func_name(f);
    for (size_t i = 0; i < sizeof(sql_text_runners) / sizeof(sql_text_runners[0]); i++)
        if (strcmp(fn, sql_text_runners[i]) == 0)
            refuse(k, "%s() is not allowed: it runs SQL text the guard cannot check", fn);
    if (strcmp(fn, "set_config") != 0)
        return;
    const char *name = f->n_args > 0 ? const_string(f->args[0]) : NULL;
    if (!name)
        refuse(k, "set_config() with a computed setting name is not allowed", NULL);
    else if (is_protected(k, name))
        refuse(k, "setting \"%s\" is protected: lakeproxy sets it, clients cannot change it",
               lowered(name, low));
}

/* CREATE TEMP ..., SELECT INTO TEMP, or an object created in pg_temp. */
static bool is_temporary(const PgQuery__RangeVar *r)
{
    return (r->relpersistence && strcmp(r->relpersistence, "t") == 0) ||
           (r->schemaname && strcasecmp(r->schemaname, "pg_temp") == 0);
}

static void visit(void *arg, const ProtobufCMessage *m)
{
    struct check *k = arg;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__variable_set_stmt__descriptor)
        check_set(k, (const PgQuery__VariableSetStmt *)m);
    else if (d == &pg_query__func_call__descriptor)
        check_call(k, (const PgQuery__FuncCall *)m);
    else if (d == &pg_query__do_stmt__descriptor)
        refuse(k, "DO blocks are not allowed: they run code the guard cannot check", NULL);
    else if (d == &pg_query__discard_stmt__descriptor &&
             ((const PgQuery__DiscardStmt *)m)->target == PG_QUERY__DISCARD_MODE__DISCARD_ALL)
        refuse(k, "DISCARD ALL is not allowed: lakeproxy resets server connections itself",
               NULL);
    else if (d == &pg_query__range_var__descriptor && is_temporary((const PgQuery__RangeVar *)m))
        k->out->retire = true;
    else if (d == &pg_query__declare_cursor_stmt__descriptor &&
             (((const PgQuery__DeclareCursorStmt *)m)->options & CURSOR_OPT_HOLD))
        k->out->retire = true;
    else if (d == &pg_query__listen_stmt__descriptor)
        k->out->retire = true;
}

void guard_check(const char *sql, const char *prefix, struct guard_verdict *out)
{
    struct check k = {prefix, strlen(prefix), out};
    char err[160];
    memset(out, 0, sizeof(*out));
    if (!sqlinfo_walk(sql, visit, &k, err, sizeof(err))) {
        memset(out, 0, sizeof(*out));
        out->refuse = true;
        snprintf(out->reason, sizeof(out->reason),
                 "statement refused: lakeproxy could not parse it (%.120s)", err);
    }
}

/* One cached verdict; entries sit on a hash chain and on the LRU list. */
struct entry {
    struct list lru;
    struct entry *next; /* hash chain */
    uint64_t hash;
    size_t len;
    struct guard_verdict v;
    char text[];
};

struct guard_cache {
    struct entry **buckets;
    size_t n_buckets, n, max;
    struct list lru; /* least recently used first */
    char prefix[64];
    struct guard_verdict scratch; /* the answer for texts too long to cache */
};

/* FNV-1a: the full text is compared on a hit, so the hash need not resist collisions. */
static uint64_t text_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

struct guard_cache *guard_cache_new(size_t max_entries)
{
    struct guard_cache *gc = calloc(1, sizeof(*gc));
    if (!gc)
        return NULL;
    gc->max = max_entries ? max_entries : 1;
    gc->n_buckets = 64;
    while (gc->n_buckets < gc->max)
        gc->n_buckets *= 2;
    gc->buckets = calloc(gc->n_buckets, sizeof(*gc->buckets));
    if (!gc->buckets) {
        free(gc);
        return NULL;
    }
    list_init(&gc->lru);
    return gc;
}

static void unchain(struct guard_cache *gc, struct entry *e)
{
    struct entry **p = &gc->buckets[e->hash & (gc->n_buckets - 1)];
    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
    list_del(&e->lru);
    free(e);
    gc->n--;
}

static void cache_clear(struct guard_cache *gc)
{
    while (!list_empty(&gc->lru))
        unchain(gc, list_entry(gc->lru.next, struct entry, lru));
}

void guard_cache_free(struct guard_cache *gc)
{
    if (!gc)
        return;
    cache_clear(gc);
    free(gc->buckets);
    free(gc);
}

static struct entry *lookup(struct guard_cache *gc, const char *sql, size_t len, uint64_t h)
{
    for (struct entry *e = gc->buckets[h & (gc->n_buckets - 1)]; e; e = e->next)
        if (e->hash == h && e->len == len && memcmp(e->text, sql, len) == 0)
            return e;
    return NULL;
}

const struct guard_verdict *guard_cache_check(struct guard_cache *gc, const char *sql,
                                              const char *prefix)
{
    if (strcmp(gc->prefix, prefix) != 0) {
        cache_clear(gc);
        snprintf(gc->prefix, sizeof(gc->prefix), "%s", prefix);
    }
    size_t len = strlen(sql);
    uint64_t h = text_hash(sql, len);
    struct entry *e = lookup(gc, sql, len, h);
    if (e) {
        list_del(&e->lru);
        list_append(&gc->lru, &e->lru);
        return &e->v;
    }
    e = len <= GUARD_CACHE_MAX_TEXT ? malloc(sizeof(*e) + len + 1) : NULL;
    if (!e) {
        guard_check(sql, prefix, &gc->scratch);
        return &gc->scratch;
    }
    if (gc->n >= gc->max)
        unchain(gc, list_entry(gc->lru.next, struct entry, lru));
    guard_check(sql, prefix, &e->v);
    e->hash = h;
    e->len = len;
    memcpy(e->text, sql, len + 1);
    e->next = gc->buckets[h & (gc->n_buckets - 1)];
    gc->buckets[h & (gc->n_buckets - 1)] = e;
    list_append(&gc->lru, &e->lru);
    gc->n++;
    return &e->v;
}
