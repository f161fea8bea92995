/* maskview.c: views over masked columns resolved to the rules of their columns' origins. */
#include "maskview.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "masksql.h"

/* Makes room for one more element of size bytes in the array *items holding n of *cap;
 * false when out of memory (*items unchanged). */
static bool room_for_one(void *items, size_t n, size_t *cap, size_t size)
{
    void **p = items;
    if (n < *cap)
        return true;
    size_t grown_cap = *cap ? *cap * 2 : 16;
    void *grown = realloc(*p, grown_cap * size);
    if (!grown)
        return false;
    *p = grown;
    *cap = grown_cap;
    return true;
}

bool maskview_cols_add(struct maskview_cols *l, uint32_t rel, int16_t attnum, int rule)
{
    if (!room_for_one(&l->items, l->n, &l->cap, sizeof(*l->items)))
        return false;
    l->items[l->n++] = (struct maskview_col){rel, attnum, rule};
    return true;
}

void maskview_cols_free(struct maskview_cols *l)
{
    free(l->items);
    *l = (struct maskview_cols){0};
}

bool maskview_set_column(struct maskview *v, size_t attnum, const char *name)
{
    if (attnum == 0 || attnum > 1600) /* PostgreSQL's limit of columns per relation */
        return true;
    if (attnum > v->n_columns) {
        char **grown = realloc(v->columns, attnum * sizeof(*grown));
        if (!grown)
            return false;
        memset(grown + v->n_columns, 0, (attnum - v->n_columns) * sizeof(*grown));
        v->columns = grown;
        v->n_columns = attnum;
    }
    free(v->columns[attnum - 1]);
    return (v->columns[attnum - 1] = strdup(name)) != NULL;
}

void maskview_free(struct maskview *v)
{
    for (size_t i = 0; i < v->n_columns; i++)
        free(v->columns[i]);
    free(v->columns);
    free(v->name);
    free(v->definition);
    free(v->origins);
    *v = (struct maskview){0};
}

/* Borrowed names for one policy of the guard. */
struct namelist {
    const char **items;
    size_t n, cap;
};

static bool names_add(struct namelist *l, const char *s)
{
    if (!s)
        return true;
    if (!room_for_one(&l->items, l->n, &l->cap, sizeof(*l->items)))
        return false;
    l->items[l->n++] = s;
    return true;
}

static bool names_add_all(struct namelist *l, const char *const *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!names_add(l, s[i]))
            return false;
    return true;
}

/* The lists behind one policy: masked names, masked tables, refused views, table columns. */
struct lists {
    struct namelist columns, tables, refused, table_columns;
};

static void lists_free(struct lists *g)
{
    free(g->columns.items);
    free(g->tables.items);
    free(g->refused.items);
    free(g->table_columns.items);
}

/* Adds resolved view v to the policy's lists when one of its columns is masked: its name as
 * a masked table's, its masked columns' names as masked names, all its names as columns. */
static bool add_resolved_view(struct lists *g, const struct maskview *v,
                              const struct maskview_cols *cols)
{
    bool masked = false;
    for (size_t i = 0; i < cols->n; i++) {
        const struct maskview_col *m = &cols->items[i];
        if (m->rel != v->oid || m->attnum < 1 || (size_t)m->attnum > v->n_columns)
            continue;
        masked = true;
        if (!names_add(&g->columns, v->columns[m->attnum - 1]))
            return false;
    }
    if (!masked)
        return true;
    return names_add(&g->tables, v->name) &&
           names_add_all(&g->table_columns, (const char *const *)v->columns, v->n_columns);
}

/* The guard's policy for definitions: every rule masks and no test is allowed; resolved
 * views count as masked tables, unresolved ones are refused. */
static bool build_policy(const struct maskview_facts *f, const struct maskview *views, size_t n,
                         const struct maskview_cols *cols, struct lists *g,
                         struct masksql_policy *p)
{
    if (!names_add_all(&g->columns, f->rule_columns, f->n_rule_columns) ||
        !names_add_all(&g->tables, f->tables, f->n_tables) ||
        !names_add_all(&g->table_columns, f->table_columns, f->n_table_columns))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(views[i].resolved ? add_resolved_view(g, &views[i], cols)
                                : names_add(&g->refused, views[i].name)))
            return false;
    *p = (struct masksql_policy){
        .columns = g->columns.items,
        .n_columns = g->columns.n,
        .tables = g->tables.items,
        .n_tables = g->tables.n,
        .user_functions = f->user_functions,
        .n_user_functions = f->n_user_functions,
        .refused_relations = g->refused.items,
        .n_refused_relations = g->refused.n,
        .table_columns = g->table_columns.items,
        .n_table_columns = g->table_columns.n,
        .row_functions = f->row_functions,
        .n_row_functions = f->n_row_functions,
        .strict_predicates = true,
    };
    return true;
}

static bool in_names(const char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] && strcasecmp(list[i], name) == 0)
            return true;
    return false;
}

/* Could origin o of a column named name be trusted? Not when it is a view not resolved (or
 * v itself), nor a computed column named like a masked column. */
static bool origin_known(const struct masksql_policy *p, const struct maskview *views, size_t n,
                         const struct maskview *v, const struct maskview_origin *o)
{
    if (o->rel == 0)
        return !in_names(p->columns, p->n_columns, o->name);
    if (o->rel == v->oid)
        return false;
    for (size_t j = 0; j < n; j++)
        if (views[j].oid == o->rel)
            return views[j].resolved;
    return true;
}

/* Appends to cols the rules each column of v carries from its origin: 1 when every column is
 * accounted for, 0 when v stays refused (cols unchanged), -1 when out of memory. */
static int map_columns(const struct masksql_policy *p, const struct maskview *views, size_t n,
                       const struct maskview *v, struct maskview_cols *cols)
{
    size_t before = cols->n;
    if (v->n_origins != v->n_columns)
        return 0;
    for (size_t k = 0; k < v->n_origins; k++) {
        const struct maskview_origin *o = &v->origins[k];
        bool ok =
            v->columns[k] && strcmp(v->columns[k], o->name) == 0 && origin_known(p, views, n, v, o);
        for (size_t i = 0; ok && o->rel && i < before; i++) {
            const struct maskview_col *m = &cols->items[i];
            if (m->rel == o->rel && m->attnum == o->attnum &&
                !maskview_cols_add(cols, v->oid, (int16_t)(k + 1), m->rule)) {
                cols->n = before;
                return -1;
            }
        }
        if (!ok) {
            cols->n = before;
            return 0;
        }
    }
    return 1;
}

/* Does the definition pass the guard with no test of a masked column? */
static bool pure_projection(const char *definition, const struct masksql_policy *p)
{
    struct masksql_verdict verdict;
    masksql_check(definition, p, &verdict);
    return !verdict.refuse && verdict.tests == 0;
}

/* One pass over the views not resolved yet: the number it resolves, or -1. */
static long resolve_pass(const struct maskview_facts *f, struct maskview *views, size_t n,
                         struct maskview_cols *cols)
{
    struct lists g = {0};
    struct masksql_policy p;
    long resolved = 0;
    if (!build_policy(f, views, n, cols, &g, &p)) {
        lists_free(&g);
        return -1;
    }
    for (size_t i = 0; i < n && resolved >= 0; i++) {
        struct maskview *v = &views[i];
        if (v->resolved || !v->name || !v->definition || !v->origins ||
            !pure_projection(v->definition, &p))
            continue;
        int m = map_columns(&p, views, n, v, cols);
        v->resolved = m == 1;
        resolved = m < 0 ? -1 : resolved + m;
    }
    lists_free(&g);
    return resolved;
}

long maskview_resolve(const struct maskview_facts *f, struct maskview *views, size_t n,
                      struct maskview_cols *cols, int rounds)
{
    long total = 0;
    for (int r = 0; r < rounds; r++) {
        long k = resolve_pass(f, views, n, cols);
        if (k < 0)
            return -1;
        if (k == 0)
            break;
        total += k;
    }
    return total;
}
