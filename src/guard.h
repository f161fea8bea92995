/* guard.h: the RLS guard. For a client under row-level security it decides, from the parse
 * tree of each statement, whether the statement may run: anything that could set, reset or
 * evade the protected settings (the attributes lakeproxy injects, and the role it assumes)
 * is refused. Pure analysis plus a bounded cache by statement text; no I/O. */
#ifndef LAKEPROXY_GUARD_H
#define LAKEPROXY_GUARD_H

#include <stdbool.h>
#include <stddef.h>

struct guard_verdict {
    bool refuse;      /* the statement must not reach the server (SQLSTATE 42501) */
    bool retire;      /* it leaves state that outlives the transaction on the server (a
                         temporary table, a WITH HOLD cursor, LISTEN): under transaction
                         pooling that server must not serve another client afterwards */
    char reason[200]; /* when refuse: the message for the client, naming the setting */
};

/* Analyses sql (NUL-terminated, one or more statements). prefix names the protected
 * namespace: with "app", every setting "app.*" is protected (names compare
 * case-insensitively, as PostgreSQL's do); "role" and "session_authorization" always are.
 * Refused: SET / SET LOCAL / RESET / SET ... TO DEFAULT / ALTER ... SET of a protected name;
 * RESET ALL; set_config() naming a protected setting, or naming it with anything but a
 * string constant, anywhere in the tree; DO blocks; DISCARD ALL; functions that run SQL
 * given as text (query_to_xml and relatives, ts_stat, dblink ...); and text that does not
 * parse. */
void guard_check(const char *sql, const char *prefix, struct guard_verdict *out);

/* A bounded cache of verdicts by statement text (least recently used evicted). */
struct guard_cache;

struct guard_cache *guard_cache_new(size_t max_entries);
void guard_cache_free(struct guard_cache *gc);

/* guard_check through the cache; the verdict stays valid until the next call. A change of
 * prefix empties the cache. */
const struct guard_verdict *guard_cache_check(struct guard_cache *gc, const char *sql,
                                              const char *prefix);

#endif
