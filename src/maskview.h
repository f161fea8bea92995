/* maskview.h: which views (and materialized views) over masked columns are pure projections
 * of them, and which masking rule each of their columns carries. A view passes when its
 * definition passes the masking guard (masksql.c) under a policy in which every rule masks,
 * with no test of a masked column at all (no predicate, sort, grouping, aggregate or
 * expression over one); each of its columns then carries the rules of the column PostgreSQL
 * names as its origin (RowDescription's table OID and column number of the prepared
 * definition), followed through other views that pass. Every other view stays refused whole.
 * Pure: the caller reads the catalog and describes the definitions. */
#ifndef LAKEPROXY_MASKVIEW_H
#define LAKEPROXY_MASKVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A masked column: column attnum of relation rel carries rule (several rules may name one). */
struct maskview_col {
    uint32_t rel;
    int16_t attnum;
    int rule;
};

/* A growable list of masked columns. */
struct maskview_cols {
    struct maskview_col *items;
    size_t n, cap;
};

/* Where one output column of a described definition comes from (rel 0: an expression). */
struct maskview_origin {
    uint32_t rel;
    int16_t attnum;
    char name[64]; /* the output column's name */
};

/* A view that reads masked columns. */
struct maskview {
    uint32_t oid;
    char *name;       /* bare name */
    char *definition; /* pg_get_viewdef(oid, true); NULL: not read (refused) */
    char **columns;   /* its column names by attnum - 1 (NULL: unknown) */
    size_t n_columns;
    struct maskview_origin *origins; /* the described definition's columns; NULL: not */
    size_t n_origins;                /* described (refused) */
    bool resolved;                   /* out: a pure projection */
};

/* What the catalog says besides the views. Names are bare and lower-case. */
struct maskview_facts {
    const char *const *rule_columns; /* every rule's column name */
    size_t n_rule_columns;
    const char *const *tables; /* every table (or view) holding a masked column */
    size_t n_tables;
    const char *const *user_functions, *const *table_columns, *const *row_functions;
    size_t n_user_functions, n_table_columns, n_row_functions;
};

/* Appends (rel, attnum, rule) to l; false when out of memory. */
bool maskview_cols_add(struct maskview_cols *l, uint32_t rel, int16_t attnum, int rule);
void maskview_cols_free(struct maskview_cols *l);

/* Adds the column names of v (in the order of the description) from a described definition;
 * false when out of memory. */
bool maskview_set_column(struct maskview *v, size_t attnum, const char *name);

/* Resolves what can be of views (n of them): marks them resolved and appends to cols (the
 * masked columns of tables, on entry) one entry per masked column of each resolved view and
 * rule it carries. At most rounds passes (a view over a view resolves a pass after it). The
 * number of views resolved, or -1 when out of memory (then none may be trusted). */
long maskview_resolve(const struct maskview_facts *f, struct maskview *views, size_t n,
                      struct maskview_cols *cols, int rounds);

/* Frees what v holds (not v). */
void maskview_free(struct maskview *v);

#endif
