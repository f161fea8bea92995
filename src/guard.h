/* guard.h: the RLS guard. For a client under row-level security it decides, from the parse
 * tree of each statement, whether the statement may run: anything that could set, reset or
 * evade the protected settings (the attributes lakeproxy injects, and the role it assumes)
 * is refused. Pure analysis plus a bounded cache by statement text; no I/O. */
#ifndef LAKEPROXY_GUARD_H
#define LAKEPROXY_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#define GUARD_MAX_CARRY 4

struct guard_verdict {
    bool refuse;                /* the statement must not reach the server (SQLSTATE 42501) */
    bool retire;                /* it leaves state that outlives the transaction on the server (a
                                   temporary table, a WITH HOLD cursor, LISTEN): under transaction
                                   pooling that server must not serve another client afterwards */
    char reason[200];           /* when refuse: the message for the client, naming the setting */
    bool reason_quotes_literal; /* its one quoted name is a string constant of the statement
                                   (set_config's): the log leaves it out */
    bool changes_text_reading;  /* it sets or resets client_encoding or
                                   standard_conforming_strings, however spelt (SET, SET NAMES,
                                   RESET, set_config, with escaped names too): masking counts
                                   characters in the client's encoding (policy.c) */
    bool session_set; /* it changes a session-level setting that does not follow the client
                         from server to server: refused under transaction pooling */
    char session_reason[320];
    bool session_reason_quotes_literal;
    /* session-level changes the server cannot refuse of settings lakeproxy carries from
     * server to server (params.h): RESET of any; SET of extra_float_digits to -15..3 (the
     * JDBC driver sets it after login), of statement_timeout, lock_timeout and
     * idle_in_transaction_session_timeout to whole milliseconds or larger units, of
     * default_transaction_isolation, _read_only and _deferrable, also as SET SESSION
     * CHARACTERISTICS AS TRANSACTION ... (JDBC's setTransactionIsolation). Under transaction
     * pooling they follow the client instead of staying behind. A value "" means RESET; names are
     * in the canonical spelling. */
    int n_carry;
    struct guard_carry {
        char name[40], value[20];
    } carry[GUARD_MAX_CARRY];
};

/* lakeproxy's own prepared statements on servers are named with this prefix; clients cannot
 * PREPARE, EXECUTE or DEALLOCATE such names in SQL. */
#define GUARD_RESERVED_STMT_PREFIX "lp_"

/* Is name a client encoding in which the guard reads text as the server does (not one of
 * PostgreSQL's client-only encodings SJIS, BIG5, GBK, UHC, GB18030, JOHAB)? */
bool guard_safe_client_encoding(const char *name);

/* Is value a standard_conforming_strings value meaning on? */
bool guard_scs_on(const char *value);

/* Analyses sql (NUL-terminated, one or more statements). prefix names the protected
 * namespace: with "app", every setting "app.*" is protected (names compare
 * case-insensitively, as PostgreSQL's do); "role" and "session_authorization" always are.
 * Refused: SET / SET LOCAL / RESET / SET ... TO DEFAULT / ALTER ... SET of a protected name;
 * RESET ALL; set_config() naming a protected setting, or naming it with anything but a
 * string constant, anywhere in the tree; DO blocks; DISCARD ALL; functions that run SQL
 * given as text (query_to_xml and relatives, ts_stat, dblink ...); statements that define
 * code or policy (CREATE FUNCTION, AGGREGATE, TRIGGER, RULE, EXTENSION, POLICY ..., ALTER
 * TABLE ... DISABLE / NO FORCE ROW LEVEL SECURITY); standard_conforming_strings off and
 * client-only client encodings (the parser would read text otherwise than the server);
 * PREPARE/EXECUTE/DEALLOCATE of lakeproxy's reserved statement names; and text that does not
 * parse. */
void guard_check(const char *sql, const char *prefix, struct guard_verdict *out);

/* For clients not under row-level security (transaction pooling): does sql PREPARE, EXECUTE
 * or DEALLOCATE a reserved name? Then out says why (when false, only out->refuse is set). Parses
 * only text that mentions the prefix. */
bool guard_uses_reserved_name(const char *sql, struct guard_verdict *out);

/* Does sql mention the reserved prefix anywhere, in any case, or U& (which may spell it)
 * (guard_uses_reserved_name's pre-filter: when not, it is false)? */
bool guard_mentions_reserved_prefix(const char *sql);

/* Could sql be refused or flagged at all? False only when it contains none of the words every
 * guard rule needs (then guard_check would pass it, or refuse it only because it does not
 * parse, which the server does too): such text skips the parse. */
bool guard_may_matter(const char *sql);

/* A bounded cache of verdicts by statement text (least recently used evicted). */
struct guard_cache;

struct guard_cache *guard_cache_new(size_t max_entries);
void guard_cache_free(struct guard_cache *gc);

/* guard_check through guard_may_matter and the cache; the verdict stays valid until the next
 * call. A change of prefix empties the cache. */
const struct guard_verdict *guard_cache_check(struct guard_cache *gc, const char *sql,
                                              const char *prefix);

#endif
