/* masksql_int.h: declarations shared by the masking guard's files (masksql*.c) and by no other
 * module: the name containers (masksql_names.c) and small helpers. */
#ifndef LAKEPROXY_MASKSQL_INT_H
#define LAKEPROXY_MASKSQL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "masksql.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- name containers (masksql_names.c) ---- */

/* A set of names compared case-insensitively (open addressing); it owns only its slots: the
 * strings belong to the parse tree. */
struct nameset {
    const char **slot;
    size_t cap, n;
};

bool nameset_has(const struct nameset *s, const char *name);
/* Adds name: 1 when new, 0 when already there, -1 when out of memory. */
int nameset_add(struct nameset *s, const char *name);
void nameset_clear(struct nameset *s);
/* Adds every name of list (n of them): 0, or -1 when out of memory. */
int nameset_add_list(struct nameset *s, const char *const *list, size_t n);

/* Relations an alias may name (FROM x AS y, x a CTE) that are followed; past that many, no
 * name is known to be a column of the alias. */
#define MAX_LINKS 8

/* What the statement's FROM items of one name (relations, aliases, subqueries, CTEs) are made
 * of, for telling a column q.x from a call x(q) of q's whole row: x is a column of every item
 * named q only when it passes each constraint set here. */
struct rowinfo {
    const char *name;
    bool masked_table;            /* a masked table: x must be in the policy's table_columns */
    bool wide;                    /* a join, or a subquery with *: x must be in table_columns */
    bool listed;                  /* a subquery, CTE or renaming alias: x must be in cols */
    bool opaque;                  /* an alias of too many relations: no x is known to be a column */
    struct nameset cols;          /* the output names common to all of those */
    const char *links[MAX_LINKS]; /* relations (maybe CTEs) it is an alias of: their own */
    size_t n_links;               /* constraints hold too */
};

/* rowinfos by name (open addressing, case-insensitive); names belong to the parse tree. */
struct rowmap {
    struct rowinfo *slot;
    size_t cap, n;
};

struct rowinfo *rowmap_get(const struct rowmap *m, const char *name);
/* The entry for name, added empty when new; NULL when out of memory. Pointers into the map
 * stay valid only until the next call. */
struct rowinfo *rowmap_add(struct rowmap *m, const char *name);
void rowmap_clear(struct rowmap *m);
/* Narrows info's listed names to names (the outputs of one more item of its name): 0, or -1
 * when out of memory. */
int rowinfo_list(struct rowinfo *info, const struct nameset *names);
/* Makes info an alias of relation name too. */
void rowinfo_link(struct rowinfo *info, const char *name);

/* ---- lists ---- */

static inline bool in_list(const char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; name && i < n; i++)
        if (list[i] && strcasecmp(list[i], name) == 0)
            return true;
    return false;
}

/* Does name start with one of the prefixes? */
static inline bool has_prefix(const char *name, const char *const *prefixes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strncasecmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

#endif
