/* masksql_int.h: declarations shared by the masking guard's files (masksql*.c) and included by
 * no other module: the name containers, the check's state and position flags, the messages
 * more than one rule file gives, and each file's entry points. Functions shared across the files
 * are named msql_*; the name containers keep their type's prefix (nameset_, rowmap_). */
#ifndef LAKEPROXY_MASKSQL_INT_H
#define LAKEPROXY_MASKSQL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include <pg_query/pg_query.pb-c.h>

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

/* ---- the check's state (masksql.c) ---- */

/* Parse trees of hostile text can be deep; this bounds our recursion (Node wrappers count). */
#define MAX_DEPTH 2000

/* Messages given by more than one rule file. */
#define WHY_MEMORY "statement refused: out of memory while checking it for masked columns"
#define WHY_ARRAY_GUESSES                                                                          \
    "comparing masked column \"%.63s\" with an array of unknown size is not allowed: each "        \
    "element is a guess at its value (list the values, at most 4)"
#define WHY_USER_OPERATOR                                                                          \
    "operator %.63s is not allowed with masked columns: it runs a function defined outside "       \
    "pg_catalog, which could read them out of the masking's sight"
#define WHY_USER_CAST                                                                              \
    "casts to type %.63s are not allowed with masked columns: they run a function defined "        \
    "outside pg_catalog, which could read them out of the masking's sight"
#define WHY_WRITE_RUNS                                                                             \
    "writing to table \"%.63s\" is not allowed with masked columns: its rules, triggers, "         \
    "defaults or constraints run functions defined outside pg_catalog, which could read them "     \
    "out of the masking's sight"
#define WHY_SORT                                                                                   \
    "column \"%.63s\" is masked: sorting or grouping by a masked column would reveal its order "   \
    "or equal values (ORDER BY, GROUP BY, DISTINCT, DISTINCT ON, window PARTITION BY / ORDER BY)"
#define WHY_LIKE_PARAMS                                                                            \
    "statement refused: at most %d parameters may be LIKE patterns on masked columns"
#define WHY_STRICT                                                                                 \
    "column \"%.63s\" is masked and strict_predicates is on: it may not be used in WHERE, ON, "    \
    "USING, GROUP BY, HAVING, ORDER BY, DISTINCT ON or window clauses; filter on other columns"
/* Writing a masked column: a client-chosen value would sort and compare among the real ones
 * (an index scan returns them interleaved: each real value sits between two guesses). */
#define WRITE_TAIL                                                                                 \
    ": masked clients cannot write masked columns (a written value would sort and compare "        \
    "among the real ones); ask an administrator"
#define WHY_NEWER_RELATION                                                                         \
    "relation \"%.63s\" is newer than the masking catalog (it may be a child or partition of a "   \
    "masked table): whole rows, * in expressions and COPY TO wait for the catalog, being read "    \
    "again; retry shortly"
#define WHY_COMPLEX                                                                                \
    "statement refused: too complex for the masking guard (nested too deeply or too many "         \
    "aliases); simplify it"

/* Where a node sits: AT_PRED directly in a predicate, alone or compared only with constants (a
 * masked column may stand there plainly), AT_CMP directly in a predicate compared with anything
 * else (a masked column may not), UNDER_PRED anywhere below a predicate, sort or grouping
 * position (for strict_predicates), IN_SORT anywhere in a sort, grouping, DISTINCT ON or window
 * key (a masked column may not be there at all). AT_PRED and AT_CMP never come together.
 * SCOPE_TESTS marks a query whose WHERE, ON and HAVING may test masked columns against
 * constants: a statement's own SELECT, UPDATE or DELETE (also under EXPLAIN, PREPARE, DECLARE,
 * INSERT ... SELECT, CREATE TABLE AS, COPY (query)) and the subqueries of their FROM, WITH,
 * set operations, WHERE, ON and HAVING; TESTS_OK marks a predicate of such a clause, where a
 * masked column may be tested (each test counted, MAX_TESTS a text). Both are passed down only
 * where granted: anything else (select lists, FILTER, windows, function arguments, LIMIT,
 * views, MERGE, ON CONFLICT) drops them. */
enum {
    AT_PRED = 1,
    UNDER_PRED = 2,
    AT_CMP = 4,
    IN_SORT = 8,
    SCOPE_TESTS = 16,
    TESTS_OK = 32,
    AT_ANY = AT_PRED | AT_CMP,
    STICKY = UNDER_PRED | IN_SORT,   /* kept everywhere below */
    SCOPE = STICKY | SCOPE_TESTS,    /* kept in a query's FROM items, CTEs and set arms */
    KEPT = SCOPE | TESTS_OK,         /* kept by a predicate's connectives */
    SORT_KEY = UNDER_PRED | IN_SORT, /* the position of sort and grouping keys */
};

/* What a SELECT's target list is: output positions (values reach the client with their origin),
 * a set operation's arm, the operand of a predicate sublink compared only with constants, or
 * with anything else, EXISTS's, or anything else. */
enum sel { SEL_OUTPUT, SEL_PLAIN, SEL_SETOP, SEL_PRED, SEL_CMP, SEL_EXISTS };

/* How a column reference is used: as an output entry, a sublink's output entry compared with
 * constants, an EXISTS target, directly in a predicate (compared with constants), compared with
 * anything else, or in any other expression. */
enum use { USE_OUTPUT, USE_SUBLINK, USE_EXISTS, USE_PRED, USE_CMP, USE_EXPR };

struct ctx {
    const struct masksql_policy *p;
    struct masksql_verdict *out;
    struct nameset row_calls;  /* the policy's row_functions, hashed */
    struct nameset table_cols; /* the policy's table_columns, hashed */
    struct nameset aliases;    /* names that expose a masked column (besides the policy's) */
    struct nameset rows;       /* relations, aliases, subqueries, CTEs: names of whole rows */
    struct rowmap quals;       /* what those names are made of, for q.x */
    const char *table;         /* the first masked table the statement names, or NULL */
    struct nameset ctes;       /* the statement's CTE names (no relations of the catalog's) */
    const char *newer[8];      /* relations it names that the catalog did not know (up to 8) */
    int n_newer;
    bool newer_lost;     /* more than 8: which of them are CTEs is not known */
    const char *new_rel; /* the first of those that is no CTE: its rows may be a masked table's
                            (a child or partition added since the read) */
    bool grew;           /* a set grew in this pass: the check must run again */
    int depth;
    int tests;            /* tests of masked columns seen by this pass over the statement */
    int tests_done;       /* those of the text's earlier statements */
    struct masklike like; /* parameters this pass found used as LIKE patterns on masked columns */
    const char *tested;   /* the masked column (or table, for *) tested last, for messages */
};

typedef void (*visit_fn)(struct ctx *c, const ProtobufCMessage *m, unsigned flags);

/* Refuses with fmt; the first reason is kept. */
__attribute__((format(printf, 2, 3))) void msql_refuse(struct ctx *c, const char *fmt, ...);
/* Adds name to set s, noting growth (which calls for another pass). */
void msql_learn(struct ctx *c, struct nameset *s, const char *name);
bool msql_is_masked(const struct ctx *c, const char *name);
/* Is name one of the built-in scalar types' that the guard reads an unqualified type name as?
 * A type of that name in pg_temp (searched first for types) or a schema put before pg_catalog
 * would be read in its place. */
bool msql_builtin_type_name(const char *name);
bool msql_is_masked_table(const struct ctx *c, const char *name);
/* Is schema.name (schema NULL or "": name as written unqualified) no relation the catalog
 * knew when it was read (a newer one)? A qualified name must be known in that schema; an
 * unqualified one is taken as known when any schema had a relation of that name. */
bool msql_is_newer_relation(const struct ctx *c, const char *schema, const char *name);
/* Notes name, a relation the catalog did not know (or a CTE's name: find_new_rel tells). */
void msql_note_newer(struct ctx *c, const char *name);
/* Refuses a whole row, COPY TO or * of c->new_rel: the catalog must be read again first. */
void msql_refuse_newer(struct ctx *c);
/* One level deeper: false (and refused) past MAX_DEPTH; the caller leaves with depth--. */
bool msql_enter(struct ctx *c);
/* Calls fn(c, child, flags) for every message held by m, items of repeated fields included. */
void msql_each_child(struct ctx *c, const ProtobufCMessage *m, unsigned flags, visit_fn fn);
/* Checks m in position flags (the guard's traversal). */
void msql_check(struct ctx *c, const ProtobufCMessage *m, unsigned flags);

static inline void check_node(struct ctx *c, const PgQuery__Node *n, unsigned flags)
{
    msql_check(c, n ? &n->base : NULL, flags);
}

static inline void check_list(struct ctx *c, PgQuery__Node *const *v, size_t n, unsigned flags)
{
    for (size_t i = 0; i < n; i++)
        check_node(c, v[i], flags);
}

static inline const char *str_of(const PgQuery__Node *n)
{
    return n && n->node_case == PG_QUERY__NODE__NODE_STRING && n->string->sval ? n->string->sval
                                                                               : NULL;
}

static inline bool is_star(const PgQuery__Node *n)
{
    return n && n->node_case == PG_QUERY__NODE__NODE_A_STAR;
}

static inline bool is_set_operation(const PgQuery__SelectStmt *s)
{
    return s->op != PG_QUERY__SET_OPERATION__SETOP_NONE &&
           s->op != PG_QUERY__SET_OPERATION__SET_OPERATION_UNDEFINED;
}

/* ---- scope: the names a statement brings into sight (masksql_scope.c) ---- */

/* Whole-row names, what they are made of and the masked tables the statement below m names. */
void msql_collect(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
/* qual.x where qual names a FROM item: could PostgreSQL read it as the call x(qual) of the
 * whole row, in a statement over a masked table? */
bool msql_is_row_call(const struct ctx *c, const char *qual, const char *x);

/* ---- expressions and predicates (masksql_expr.c) ---- */

/* A column reference r used as use in position flags. */
void msql_check_column_ref(struct ctx *c, const PgQuery__ColumnRef *r, enum use use,
                           unsigned flags);
/* Does a plain output entry r expose a masked column (so an alias of it becomes masked)? */
bool msql_ref_exposes_masked(const struct ctx *c, const PgQuery__ColumnRef *r);
/* Handlers of FuncCall, WindowDef, A_Indirection, SubLink. */
void msql_check_func_call(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
void msql_check_window_def(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
void msql_check_indirection(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
void msql_check_sublink(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
/* Any node without a handler of its own. */
void msql_check_expression(struct ctx *c, const ProtobufCMessage *m, unsigned flags);

/* ---- queries: SELECT and FROM (masksql_query.c) ---- */

/* A SELECT whose target list plays role, in position flags. */
void msql_check_select(struct ctx *c, const PgQuery__SelectStmt *s, enum sel role, unsigned flags);
/* A statement whose SELECT, if it is one, sends its output positions to the client. */
void msql_check_query(struct ctx *c, const PgQuery__Node *q, unsigned flags);
/* The position of a WHERE, ON or HAVING clause of a query in position flags. */
unsigned msql_filter_flags(unsigned flags);
/* Handlers of RangeVar, RangeSubselect, CommonTableExpr, WithClause, JoinExpr. */
void msql_check_range_var(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
void msql_check_range_subselect(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
void msql_check_cte(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
void msql_check_with(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
void msql_check_join(struct ctx *c, const ProtobufCMessage *m, unsigned flags);

/* ---- statements that run a query or write rows (masksql_dml.c) ---- */

/* Handlers of InsertStmt, UpdateStmt, DeleteStmt, MergeStmt, CopyStmt, CreateTableAsStmt,
 * DeclareCursorStmt, PrepareStmt, ExplainStmt. */
void msql_check_insert(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
void msql_check_update(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
void msql_check_delete(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
void msql_check_merge(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
void msql_check_copy(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
void msql_check_create_table_as(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
void msql_check_declare(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
void msql_check_prepare(struct ctx *c, const ProtobufCMessage *m, unsigned flags);
void msql_check_explain(struct ctx *c, const ProtobufCMessage *m, unsigned flags);

/* ---- statement-level rules (masksql_stmt.c) ---- */

/* Refuses m when it is a statement a masked client may not run. */
void msql_check_statement_rules(struct ctx *c, const ProtobufCMessage *m);
/* set_config of a planner setting, or of a name that cannot be told. */
void msql_check_set_config(struct ctx *c, const PgQuery__FuncCall *f);

#endif
