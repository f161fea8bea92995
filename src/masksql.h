/* masksql.h: the masking guard. For a client whose results are masked, decides from the parse
 * tree of each statement whether it could carry a masked column's value to the client in any
 * form other than a plain column reference (which the proxy masks in the result rows, from
 * RowDescription's column origin), or store it anywhere the client can read it back. Such a
 * statement is refused (SQLSTATE 42501) naming the column. Pure analysis plus a bounded cache
 * by statement text; no I/O, no catalog: names are matched conservatively (a masked column's
 * bare name counts wherever it appears, whichever table it belongs to). */
#ifndef LAKEPROXY_MASKSQL_H
#define LAKEPROXY_MASKSQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the guard needs to know of one client's masking policy. Names are lower-case. */
struct masksql_policy {
    const char *const *columns;  /* bare names of the columns masked for this client */
    size_t n_columns;
    const char *const *tables;   /* bare names of the tables that hold them */
    size_t n_tables;
    const char *const *functions_allowed; /* non-built-in functions the admin allows */
    size_t n_functions_allowed;
    const char *const *user_functions;    /* names of functions defined outside pg_catalog
                                             (from the catalog): calls are refused */
    size_t n_user_functions;
    const char *const *refused_relations; /* bare names of views that read masked columns
                                             (from the catalog): any reference is refused */
    size_t n_refused_relations;
    bool strict_predicates;      /* refuse masked columns in WHERE/ON/HAVING/ORDER BY ... too */
};

struct masksql_verdict {
    bool refuse;
    char reason[240]; /* when refuse: the message for the client, naming the column */
};

/* Analyses sql (NUL-terminated, one or more statements) under policy p. */
void masksql_check(const char *sql, const struct masksql_policy *p, struct masksql_verdict *out);

/* A bounded cache of verdicts by (policy_id, statement text), least recently used evicted.
 * policy_id identifies the policy (the caller's hash of it): verdicts under one policy are
 * never returned for another. */
struct masksql_cache;
struct masksql_cache *masksql_cache_new(size_t max_entries);
void masksql_cache_free(struct masksql_cache *mc);
/* masksql_check through the cache; the verdict stays valid until the next call. */
const struct masksql_verdict *masksql_cache_check(struct masksql_cache *mc, const char *sql,
                                                  const struct masksql_policy *p,
                                                  uint64_t policy_id);

#endif
