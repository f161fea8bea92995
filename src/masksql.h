/* masksql.h: the masking guard. For a client whose results are masked, decides from the parse
 * tree of each statement whether it could carry a masked column's value to the client in any
 * form other than a plain column reference (which the proxy masks in the result rows, from
 * RowDescription's column origin), or store it anywhere the client can read it back. Such a
 * statement is refused (SQLSTATE 42501) naming the column. In predicates a masked column may be
 * compared only with constants and parameters (never with other rows' values: that would be an
 * oracle), and such a client may not alter, rename or drop database objects. Pure analysis plus
 * a bounded cache by statement text; no I/O, no catalog access (the caller passes the catalog's
 * names in the policy): names are matched conservatively (a masked column's bare name counts
 * wherever it appears, whichever table it belongs to). */
#ifndef LAKEPROXY_MASKSQL_H
#define LAKEPROXY_MASKSQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "masklike.h"

/* What the guard needs to know of one client's masking policy. Names are lower-case. */
struct masksql_policy {
    const char *const *columns; /* bare names of the columns masked for this client */
    size_t n_columns;
    const char *const *tables; /* bare names of the tables that hold them, and of their
                                  children and partitions */
    size_t n_tables;
    const char *const *functions_allowed; /* non-built-in functions the admin allows */
    size_t n_functions_allowed;
    const char *const *user_functions; /* names of functions defined outside pg_catalog
                                          (from the catalog): calls are refused */
    size_t n_user_functions;
    const char *const *refused_relations; /* bare names of views that read masked columns
                                             (from the catalog): any reference is refused */
    size_t n_refused_relations;
    const char *const *table_columns; /* every column name of every table in tables (from
                                         the catalog): q.x over such a table is taken for
                                         a column only when x is one of these, else for
                                         the call x(q) of its whole row */
    size_t n_table_columns;
    const char *const *row_functions; /* names of the functions and types that can be
                                         applied to a whole row (from the catalog) */
    size_t n_row_functions;
    const char *const *user_operators; /* operators that run a function defined outside
                                          pg_catalog (from the catalog): refused */
    size_t n_user_operators;
    const char *const *user_cast_types; /* types whose casts run one: casts to them refused */
    size_t n_user_cast_types;
    const char *const *write_refused; /* tables whose writes run one (rules, triggers,
                                         defaults, constraints): writes refused */
    size_t n_write_refused;
    const char *const *relations; /* every relation's name when the catalog was read (NULL: not
                                     known, every name is taken as read): a whole row or COPY
                                     TO of a newer one (a child or partition of a masked table
                                     added since) is refused until the catalog is read again */
    size_t n_relations;
    bool strict_predicates; /* refuse every test of a masked column; otherwise up to 4
                               per text, against constants or parameters, in WHERE / ON
                               / HAVING (sorting and grouping are refused either way) */
};

struct masksql_verdict {
    int tests;            /* comparisons of a masked column with a constant or parameter the text
                             makes each time it runs (each is a guess at a masked value) */
    struct masklike like; /* parameters it matches masked columns against with LIKE: their
                             values are checked at each Bind (masklike_binds_ok) */
    bool refuse;
    char reason[240];           /* when refuse: the message for the client, naming the column */
    bool reason_quotes_literal; /* its one quoted name is a string constant of the statement
                                   (set_config's): the log leaves it out */
    bool stale_catalog;         /* refused for a relation newer than the catalog: read it again */
};

/* Analyses sql (NUL-terminated, one or more statements) under policy p. */
void masksql_check(const char *sql, const struct masksql_policy *p, struct masksql_verdict *out);

/* The names of the pg_catalog relations holding planner statistics: the guard refuses them to
 * masked clients, and the masking catalog refuses views that use them (as it does views that
 * name a function of hiddensql.h). */
const char *const *masksql_stats_relations(size_t *n);

/* A bounded cache of verdicts by (policy_id, statement text), least recently used evicted.
 * policy_id identifies the policy (the caller's hash of it): verdicts under one policy are
 * never returned for another. */
struct masksql_cache;
struct masksql_cache *masksql_cache_new(size_t max_entries);
void masksql_cache_free(struct masksql_cache *mc);
/* The cached verdict of sql under policy_id, or NULL (valid until the next call). */
const struct masksql_verdict *masksql_cache_find(struct masksql_cache *mc, const char *sql,
                                                 uint64_t policy_id);
/* masksql_check through the cache; the verdict stays valid until the next call. */
const struct masksql_verdict *masksql_cache_check(struct masksql_cache *mc, const char *sql,
                                                  const struct masksql_policy *p,
                                                  uint64_t policy_id);

#endif
