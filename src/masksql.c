/* masksql.c: the masking guard's rules over libpg_query's protobuf parse trees (which statements
 * could carry a masked column's value to the client other than as a plain column reference, or
 * store it), and the bounded LRU cache of its verdicts by (policy, statement text). */
#include "masksql.h"

#include <ctype.h>
#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sqlinfo.h"
#include "textcache.h"

/* Parse trees of hostile text can be deep; this bounds our recursion (Node wrappers count). */
#define MAX_DEPTH 2000
/* Rounds of alias discovery: each one repeats the whole check with the names learnt so far. */
#define MAX_PASSES 16
/* Statements longer than this are checked every time rather than cached. */
#define CACHE_MAX_TEXT 8192

#define WHY_EXPR                                                                                   \
    "column \"%.63s\" is masked: it may be selected only as a plain column reference, not "        \
    "inside an expression, function, cast, aggregate, set operation, RETURNING or a write"
#define WHY_PRED                                                                                   \
    "column \"%.63s\" is masked: in WHERE, ON, GROUP BY, HAVING and ORDER BY it may be used "      \
    "only directly in a comparison (=, <, LIKE, IN, BETWEEN, IS NULL ...), not inside a cast "     \
    "or function"
#define WHY_STRICT                                                                                 \
    "column \"%.63s\" is masked and strict_predicates is on: it may not be used in WHERE, ON, "    \
    "USING, GROUP BY, HAVING, ORDER BY, DISTINCT ON or window clauses; filter on other columns"
#define WHY_ROW                                                                                    \
    "\"%.63s\" is a whole-row reference in a query over a table with masked columns: it would "    \
    "carry them unmasked; select the columns by name instead"
#define WHY_STAR                                                                                   \
    "* over table \"%.63s\", which has masked columns, is allowed only as a plain SELECT list "    \
    "entry: name the columns you need instead"
#define WHY_MERGED                                                                                 \
    "column \"%.63s\" is merged by JOIN ... USING or NATURAL JOIN and would lose its masking: "    \
    "select it qualified by its table (t.%.63s) and list columns instead of *"
#define WHY_MERGED_STAR                                                                            \
    "* over JOIN ... USING or NATURAL JOIN merging masked columns would lose their masking: "      \
    "list the columns, qualified by their tables (t.email)"
#define WHY_READER                                                                                 \
    "function \"%.63s\" is not allowed for clients with masked columns: it reads tables, "         \
    "cursors or SQL text out of the masking guard's sight"
#define WHY_FUNCTION                                                                               \
    "function \"%.63s\" is not allowed for clients with masked columns: it is defined outside "    \
    "pg_catalog (an administrator may allow it in the policy)"
#define WHY_STATS                                                                                  \
    "relation \"%.63s\" is not allowed for clients with masked columns: planner statistics "       \
    "hold sample values of the columns"
#define WHY_VIEW                                                                                   \
    "relation \"%.63s\" is not allowed for clients with masked columns: it reads masked "          \
    "columns; query the underlying tables instead"
#define WHY_CODE                                                                                   \
    "%s is not allowed for clients with masked columns: it defines or runs code the masking "      \
    "guard cannot check"
#define WHY_DDL                                                                                    \
    "changing table \"%.63s\" (ALTER, RENAME, DROP, policies, unique indexes) is not allowed "     \
    "for clients with masked columns"
#define WHY_COPY                                                                                   \
    "COPY of table \"%.63s\" TO is not allowed: COPY output is not masked; list only unmasked "    \
    "columns, as in COPY %.63s (id) TO STDOUT, or use SELECT"
#define WHY_CTAS_EXECUTE                                                                           \
    "CREATE TABLE AS EXECUTE is not allowed for clients with masked columns: the prepared "        \
    "statement may select masked columns; use CREATE TABLE AS SELECT with the columns named"
#define WHY_COMPLEX                                                                                \
    "statement refused: too complex for the masking guard (nested too deeply or too many "         \
    "aliases); simplify it"

/* ---- names ---- */

/* A set of names compared case-insensitively (open addressing); it owns only its slots: the
 * strings belong to the parse tree. */
struct nameset {
    const char **slot;
    size_t cap, n;
};

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)tolower((unsigned char)*s)) * 1099511628211ull;
    return h;
}

static bool nameset_has(const struct nameset *s, const char *name)
{
    if (!s->cap || !name)
        return false;
    for (size_t i = name_hash(name) & (s->cap - 1); s->slot[i]; i = (i + 1) & (s->cap - 1))
        if (strcasecmp(s->slot[i], name) == 0)
            return true;
    return false;
}

/* Places name in a set known to have room and not to hold it. */
static void nameset_put(struct nameset *s, const char *name)
{
    size_t i = name_hash(name) & (s->cap - 1);
    while (s->slot[i])
        i = (i + 1) & (s->cap - 1);
    s->slot[i] = name;
    s->n++;
}

/* Adds name: 1 when new, 0 when already there, -1 when out of memory. */
static int nameset_add(struct nameset *s, const char *name)
{
    if (nameset_has(s, name))
        return 0;
    if ((s->n + 1) * 2 > s->cap) {
        size_t old_cap = s->cap, cap = s->cap ? s->cap * 2 : 16;
        const char **old = s->slot;
        if (!(s->slot = calloc(cap, sizeof(*s->slot)))) {
            s->slot = old;
            return -1;
        }
        s->cap = cap;
        s->n = 0;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i])
                nameset_put(s, old[i]);
        free(old);
    }
    nameset_put(s, name);
    return 1;
}

static void nameset_clear(struct nameset *s)
{
    free(s->slot);
    memset(s, 0, sizeof(*s));
}

static bool in_list(const char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; name && i < n; i++)
        if (list[i] && strcasecmp(list[i], name) == 0)
            return true;
    return false;
}

/* Does name start with one of the prefixes? */
static bool has_prefix(const char *name, const char *const *prefixes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strncasecmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Built-in and common extension functions that run SQL text or read whole tables or cursors by
 * name, out of the guard's sight (every name starting with one of these). */
static const char *const table_readers[] = {
    "query_to_xml",    "table_to_xml", "cursor_to_xml", "schema_to_xml",
    "database_to_xml", "ts_stat",      "ts_rewrite",    "dblink",
};

/* Relations holding planner statistics, whose sample values include masked columns'. */
static const char *const stats_relations[] = {
    "pg_stats", "pg_statistic", "pg_stats_ext", "pg_stats_ext_exprs", "pg_statistic_ext_data",
};

/* Functions of a whole row that attribute notation (c.row_to_json) would call on a row. */
static const char *const row_functions[] = {"row_to_json", "to_json", "to_jsonb",
                                            "hstore",      "text",    "record_out"};

/* Comparison operators a masked column may be a direct operand of in a predicate. */
static const char *const comparisons[] = {
    "=", "<>", "!=", "<", ">", "<=", ">=", "~~", "~~*", "!~~", "!~~*"};

/* ---- the check ---- */

/* Where a node sits: AT_PRED directly in a predicate (a masked column may stand there plainly),
 * UNDER_PRED anywhere below a predicate position (for strict_predicates). */
enum { AT_PRED = 1, UNDER_PRED = 2 };

/* What a SELECT's target list is: output positions (values reach the client with their origin),
 * a set operation's arm, a predicate sublink's operand, EXISTS's, or anything else. */
enum sel { SEL_OUTPUT, SEL_PLAIN, SEL_SETOP, SEL_PRED, SEL_EXISTS };

/* How a column reference is used: as an output entry, a comparing sublink's output entry, an
 * EXISTS target, directly in a predicate, or in any other expression. */
enum use { USE_OUTPUT, USE_SUBLINK, USE_EXISTS, USE_PRED, USE_EXPR };

struct ctx {
    const struct masksql_policy *p;
    struct masksql_verdict *out;
    struct nameset aliases;   /* names that expose a masked column (besides the policy's) */
    struct nameset rows;      /* relations, aliases, subqueries, CTEs: names of whole rows */
    struct nameset merged;    /* masked names a JOIN ... USING merges */
    struct nameset join_rows; /* aliases of joins that merge masked (or unknown) columns */
    const char *table;        /* the first masked table the statement names, or NULL */
    bool natural;             /* a NATURAL join in a statement naming a masked table */
    bool grew;                /* a set grew in this pass: the check must run again */
    int depth;
};

typedef void (*visit_fn)(struct ctx *c, const ProtobufCMessage *m, unsigned flags);

/* Refuses with fmt; the first reason is kept. */
__attribute__((format(printf, 2, 3))) static void refuse(struct ctx *c, const char *fmt, ...)
{
    if (c->out->refuse)
        return;
    c->out->refuse = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->out->reason, sizeof(c->out->reason), fmt, ap);
    va_end(ap);
}

/* Adds name to set s, noting growth (which calls for another pass). */
static void learn(struct ctx *c, struct nameset *s, const char *name)
{
    int r = name && *name ? nameset_add(s, name) : 0;
    if (r < 0)
        refuse(c, "statement refused: out of memory while checking it for masked columns");
    else if (r > 0)
        c->grew = true;
}

static bool is_masked(const struct ctx *c, const char *name)
{
    return in_list(c->p->columns, c->p->n_columns, name) || nameset_has(&c->aliases, name);
}

static bool is_masked_table(const struct ctx *c, const char *name)
{
    return in_list(c->p->tables, c->p->n_tables, name);
}

static const char *str_of(const PgQuery__Node *n)
{
    return n && n->node_case == PG_QUERY__NODE__NODE_STRING && n->string->sval ? n->string->sval
                                                                               : NULL;
}

static bool is_star(const PgQuery__Node *n)
{
    return n && n->node_case == PG_QUERY__NODE__NODE_A_STAR;
}

static bool enter(struct ctx *c)
{
    if (++c->depth <= MAX_DEPTH)
        return true;
    refuse(c, WHY_COMPLEX);
    return false;
}

struct each {
    struct ctx *c;
    unsigned flags;
    visit_fn fn;
};

static void each_one(void *arg, const ProtobufCMessage *child)
{
    struct each *e = arg;
    e->fn(e->c, child, e->flags);
}

/* Calls fn(c, child, flags) for every message held by m, items of repeated fields included. */
static void each_child(struct ctx *c, const ProtobufCMessage *m, unsigned flags, visit_fn fn)
{
    struct each e = {c, flags, fn};
    sqlinfo_each_child(m, each_one, &e);
}

static void check(struct ctx *c, const ProtobufCMessage *m, unsigned flags);

static void check_node(struct ctx *c, const PgQuery__Node *n, unsigned flags)
{
    check(c, n ? &n->base : NULL, flags);
}

static void check_list(struct ctx *c, PgQuery__Node *const *v, size_t n, unsigned flags)
{
    for (size_t i = 0; i < n; i++)
        check_node(c, v[i], flags);
}

/* ---- names the statement defines (gathered before the check) ---- */

static void note_alias(struct ctx *c, const PgQuery__Alias *a)
{
    if (a)
        learn(c, &c->rows, a->aliasname);
}

/* Notes the whole-row names m defines, and whether it names a masked table. Aliases of
 * functions in FROM are not whole-row names here: their arguments are checked as expressions. */
static void note_names(struct ctx *c, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__range_var__descriptor) {
        const PgQuery__RangeVar *r = (const PgQuery__RangeVar *)m;
        learn(c, &c->rows, r->relname);
        note_alias(c, r->alias);
        if (!c->table && r->relname && is_masked_table(c, r->relname))
            c->table = r->relname;
    } else if (d == &pg_query__range_subselect__descriptor) {
        note_alias(c, ((const PgQuery__RangeSubselect *)m)->alias);
    } else if (d == &pg_query__common_table_expr__descriptor) {
        learn(c, &c->rows, ((const PgQuery__CommonTableExpr *)m)->ctename);
    } else if (d == &pg_query__join_expr__descriptor) {
        note_alias(c, ((const PgQuery__JoinExpr *)m)->alias);
        note_alias(c, ((const PgQuery__JoinExpr *)m)->join_using_alias);
    } else if (d == &pg_query__range_table_func__descriptor) {
        note_alias(c, ((const PgQuery__RangeTableFunc *)m)->alias);
    }
}

/* Whole-row names and the masked tables the statement below m names. */
static void collect(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    if (c->out->refuse)
        return;
    if (enter(c)) {
        note_names(c, m);
        each_child(c, m, flags, collect);
    }
    c->depth--;
}

/* ---- column references ---- */

/* Is name a function that attribute notation (c.name) could call on a whole row? */
static bool is_row_function(const struct ctx *c, const char *name)
{
    const struct masksql_policy *p = c->p;
    if (in_list(p->user_functions, p->n_user_functions, name) &&
        !in_list(p->functions_allowed, p->n_functions_allowed, name))
        return true;
    return c->table && in_list(row_functions, COUNT(row_functions), name);
}

/* A * (qual.* or bare) used as use: EXISTS (SELECT * ...) and IN (SELECT * ...) only test or
 * compare the row. */
static void check_star(struct ctx *c, const char *qual, enum use use)
{
    if (!c->table)
        return;
    if (use == USE_OUTPUT) {
        if (qual ? nameset_has(&c->join_rows, qual) : (c->merged.n > 0 || c->natural))
            refuse(c, WHY_MERGED_STAR);
    } else if (use == USE_EXPR || use == USE_PRED ||
               (use == USE_SUBLINK && c->p->strict_predicates)) {
        refuse(c, WHY_STAR, c->table);
    }
}

/* A masked column name used as use (qual: its qualifier, or NULL). */
static void check_masked_use(struct ctx *c, const char *qual, const char *name, enum use use,
                             unsigned flags)
{
    if (use != USE_OUTPUT && c->p->strict_predicates && (flags & UNDER_PRED))
        refuse(c, WHY_STRICT, name);
    else if (use == USE_EXPR)
        refuse(c, (flags & UNDER_PRED) ? WHY_PRED : WHY_EXPR, name);
    else if (use == USE_OUTPUT && (qual ? nameset_has(&c->join_rows, qual)
                                        : nameset_has(&c->merged, name) || c->natural))
        refuse(c, WHY_MERGED, name, name);
}

static void check_column_ref(struct ctx *c, const PgQuery__ColumnRef *r, enum use use,
                             unsigned flags)
{
    if (r->n_fields == 0)
        return;
    const PgQuery__Node *lastn = r->fields[r->n_fields - 1];
    const char *last = str_of(lastn);
    const char *qual = r->n_fields > 1 ? str_of(r->fields[r->n_fields - 2]) : NULL;
    if (c->table && r->n_fields == 1 && nameset_has(&c->rows, last))
        refuse(c, WHY_ROW, last);
    else if (r->n_fields > 1 && last && is_row_function(c, last))
        refuse(c, WHY_FUNCTION, last);
    else if (is_star(lastn))
        check_star(c, qual, use);
    else if (last && is_masked(c, last))
        check_masked_use(c, qual, last, use, flags);
}

/* Does a plain output entry r expose a masked column (so an alias of it becomes masked)? */
static bool ref_exposes_masked(const struct ctx *c, const PgQuery__ColumnRef *r)
{
    if (r->n_fields == 0)
        return false;
    const PgQuery__Node *last = r->fields[r->n_fields - 1];
    return is_star(last) ? c->table != NULL : is_masked(c, str_of(last));
}

/* ---- SELECT ---- */

static void check_select(struct ctx *c, const PgQuery__SelectStmt *s, enum sel role,
                         unsigned flags);

/* One entry of a target list whose SELECT plays role. */
static void check_target(struct ctx *c, const PgQuery__Node *n, enum sel role, unsigned flags)
{
    static const enum use uses[] = {
        [SEL_OUTPUT] = USE_OUTPUT, [SEL_PLAIN] = USE_EXPR,    [SEL_SETOP] = USE_EXPR,
        [SEL_PRED] = USE_SUBLINK,  [SEL_EXISTS] = USE_EXISTS,
    };
    bool pred = role == SEL_PRED || role == SEL_EXISTS;
    unsigned vflags = pred ? flags | AT_PRED | UNDER_PRED : flags & UNDER_PRED;
    if (!n || n->node_case != PG_QUERY__NODE__NODE_RES_TARGET) {
        check_node(c, n, vflags);
        return;
    }
    const PgQuery__ResTarget *rt = n->res_target;
    const PgQuery__Node *v = rt->val;
    if (v && v->node_case == PG_QUERY__NODE__NODE_COLUMN_REF) {
        check_column_ref(c, v->column_ref, uses[role], vflags);
        if (role == SEL_OUTPUT && rt->name && *rt->name && ref_exposes_masked(c, v->column_ref))
            learn(c, &c->aliases, rt->name);
    } else {
        check_node(c, v, vflags);
    }
    check_list(c, rt->indirection, rt->n_indirection, flags & UNDER_PRED);
}

/* Does the query s output a masked column or a * over a masked table (so the column names an
 * alias gives its outputs become masked)? */
static bool select_outputs_masked(const struct ctx *c, const PgQuery__SelectStmt *s, int depth)
{
    if (!s || depth > MAX_DEPTH)
        return s != NULL;
    if (s->larg || s->rarg)
        return select_outputs_masked(c, s->larg, depth + 1) ||
               select_outputs_masked(c, s->rarg, depth + 1);
    for (size_t i = 0; i < s->n_target_list; i++) {
        const PgQuery__Node *t = s->target_list[i];
        const PgQuery__Node *v =
            t && t->node_case == PG_QUERY__NODE__NODE_RES_TARGET ? t->res_target->val : NULL;
        if (v && v->node_case == PG_QUERY__NODE__NODE_COLUMN_REF &&
            ref_exposes_masked(c, v->column_ref))
            return true;
    }
    return false;
}

static bool outputs_masked(const struct ctx *c, const PgQuery__Node *q)
{
    return q && q->node_case == PG_QUERY__NODE__NODE_SELECT_STMT &&
           select_outputs_masked(c, q->select_stmt, 0);
}

/* Names a column alias list gives the outputs of query q: masked when q outputs masked data. */
static void learn_colnames(struct ctx *c, PgQuery__Node *const *names, size_t n,
                           const PgQuery__Node *q)
{
    if (n == 0 || !outputs_masked(c, q))
        return;
    for (size_t i = 0; i < n; i++)
        learn(c, &c->aliases, str_of(names[i]));
}

static bool is_set_operation(const PgQuery__SelectStmt *s)
{
    return s->op != PG_QUERY__SET_OPERATION__SETOP_NONE &&
           s->op != PG_QUERY__SET_OPERATION__SET_OPERATION_UNDEFINED;
}

/* The clauses of a simple (not set-operation) SELECT. */
static void check_select_body(struct ctx *c, const PgQuery__SelectStmt *s, enum sel role,
                              unsigned flags)
{
    unsigned under = flags & UNDER_PRED, pred = AT_PRED | UNDER_PRED;
    check_list(c, s->from_clause, s->n_from_clause, under);
    for (size_t i = 0; i < s->n_target_list; i++)
        check_target(c, s->target_list[i], role, flags);
    check_list(c, s->values_lists, s->n_values_lists, under);
    check_node(c, s->where_clause, pred);
    check_list(c, s->group_clause, s->n_group_clause, pred);
    check_node(c, s->having_clause, pred);
    check_list(c, s->window_clause, s->n_window_clause, under);
    check_list(c, s->distinct_clause, s->n_distinct_clause, pred);
}

static void check_select(struct ctx *c, const PgQuery__SelectStmt *s, enum sel role, unsigned flags)
{
    unsigned under = flags & UNDER_PRED;
    if (!s || c->out->refuse)
        return;
    if (!enter(c)) {
        c->depth--;
        return;
    }
    if (s->into_clause) { /* SELECT INTO stores the values in a table */
        role = SEL_PLAIN;
        check(c, &s->into_clause->base, under);
    }
    if (s->with_clause)
        check(c, &s->with_clause->base, under);
    if (is_set_operation(s)) { /* PostgreSQL reports no column origin through these */
        check_select(c, s->larg, SEL_SETOP, under);
        check_select(c, s->rarg, SEL_SETOP, under);
    } else {
        check_select_body(c, s, role, flags);
    }
    check_list(c, s->sort_clause, s->n_sort_clause, AT_PRED | UNDER_PRED);
    check_node(c, s->limit_offset, under);
    check_node(c, s->limit_count, under);
    check_list(c, s->locking_clause, s->n_locking_clause, under);
    c->depth--;
}

/* A statement whose SELECT, if it is one, sends its output positions to the client. */
static void check_query(struct ctx *c, const PgQuery__Node *q, unsigned flags)
{
    if (q && q->node_case == PG_QUERY__NODE__NODE_SELECT_STMT)
        check_select(c, q->select_stmt, SEL_OUTPUT, flags);
    else
        check_node(c, q, flags);
}

/* ---- expressions ---- */

/* Is an operator name (possibly pg_catalog-qualified) one of the plain comparisons? */
static bool is_comparison_op(PgQuery__Node *const *name, size_t n)
{
    if (n == 0 || n > 2 ||
        (n == 2 && (!str_of(name[0]) || strcasecmp(str_of(name[0]), "pg_catalog") != 0)))
        return false;
    return in_list(comparisons, COUNT(comparisons), str_of(name[n - 1]));
}

static bool is_comparison(const PgQuery__AExpr *e)
{
    switch (e->kind) {
    case PG_QUERY__A__EXPR__KIND__AEXPR_OP:
    case PG_QUERY__A__EXPR__KIND__AEXPR_OP_ANY:
    case PG_QUERY__A__EXPR__KIND__AEXPR_OP_ALL:
    case PG_QUERY__A__EXPR__KIND__AEXPR_IN:
    case PG_QUERY__A__EXPR__KIND__AEXPR_LIKE:
    case PG_QUERY__A__EXPR__KIND__AEXPR_ILIKE: return is_comparison_op(e->name, e->n_name);
    case PG_QUERY__A__EXPR__KIND__AEXPR_DISTINCT:
    case PG_QUERY__A__EXPR__KIND__AEXPR_NOT_DISTINCT:
    case PG_QUERY__A__EXPR__KIND__AEXPR_BETWEEN:
    case PG_QUERY__A__EXPR__KIND__AEXPR_NOT_BETWEEN:
    case PG_QUERY__A__EXPR__KIND__AEXPR_BETWEEN_SYM:
    case PG_QUERY__A__EXPR__KIND__AEXPR_NOT_BETWEEN_SYM: return true;
    default: return false;
    }
}

/* In a predicate, may a masked column stand directly below a node of type d (m)? Boolean
 * connectives, comparisons, IS [NOT] NULL / TRUE, row constructors, IN and BETWEEN lists, sort
 * and grouping keys: they compare the value but never print or transform it. */
static bool keeps_predicate(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__a__expr__descriptor)
        return is_comparison((const PgQuery__AExpr *)m);
    if (d == &pg_query__sort_by__descriptor) { /* ORDER BY x USING op: a comparison only */
        const PgQuery__SortBy *sb = (const PgQuery__SortBy *)m;
        return sb->n_use_op == 0 || is_comparison_op(sb->use_op, sb->n_use_op);
    }
    return d == &pg_query__bool_expr__descriptor || d == &pg_query__null_test__descriptor ||
           d == &pg_query__boolean_test__descriptor || d == &pg_query__row_expr__descriptor ||
           d == &pg_query__list__descriptor || d == &pg_query__grouping_set__descriptor;
}

static bool is_table_reader(const char *name)
{
    return name && has_prefix(name, table_readers, COUNT(table_readers));
}

/* Is a call of schema.name (schema may be NULL) allowed by the policy's names? */
static bool function_allowed(const struct ctx *c, const char *schema, const char *name)
{
    const struct masksql_policy *p = c->p;
    char full[160];
    if (in_list(p->functions_allowed, p->n_functions_allowed, name))
        return true;
    if (schema) {
        snprintf(full, sizeof(full), "%s.%s", schema, name);
        if (in_list(p->functions_allowed, p->n_functions_allowed, full))
            return true;
    }
    return !in_list(p->user_functions, p->n_user_functions, name) &&
           (!schema || strcasecmp(schema, "pg_catalog") == 0);
}

static void check_func_call(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__FuncCall *f = (const PgQuery__FuncCall *)m;
    size_t n = f->n_funcname;
    const char *name = n ? str_of(f->funcname[n - 1]) : NULL;
    const char *schema = n > 1 ? str_of(f->funcname[n - 2]) : NULL;
    unsigned under = flags & UNDER_PRED;
    if (is_table_reader(name))
        refuse(c, WHY_READER, name);
    else if (name && !function_allowed(c, schema, name))
        refuse(c, WHY_FUNCTION, name);
    check_list(c, f->args, f->n_args, under);
    check_list(c, f->agg_order, f->n_agg_order, under);
    check_node(c, f->agg_filter, AT_PRED | UNDER_PRED);
    if (f->over)
        check(c, &f->over->base, under);
}

static void check_window_def(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__WindowDef *w = (const PgQuery__WindowDef *)m;
    check_list(c, w->partition_clause, w->n_partition_clause, AT_PRED | UNDER_PRED);
    check_list(c, w->order_clause, w->n_order_clause, AT_PRED | UNDER_PRED);
    check_node(c, w->start_offset, flags & UNDER_PRED);
    check_node(c, w->end_offset, flags & UNDER_PRED);
}

/* The name a column reference starts with, for messages. */
static const char *row_name(const PgQuery__ColumnRef *r)
{
    const char *name = r->n_fields ? str_of(r->fields[0]) : NULL;
    return name ? name : "row";
}

/* (row).field, (row).*, x[i]: field selection from a whole row over a masked table, or of a
 * masked name, is refused. */
static void check_indirection(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__AIndirection *a = (const PgQuery__AIndirection *)m;
    unsigned under = flags & UNDER_PRED;
    check_node(c, a->arg, under);
    for (size_t i = 0; i < a->n_indirection; i++) {
        const PgQuery__Node *x = a->indirection[i];
        const char *field = str_of(x);
        if (field && is_masked(c, field))
            refuse(c, WHY_EXPR, field);
        else if ((field || is_star(x)) && c->table && a->arg &&
                 a->arg->node_case == PG_QUERY__NODE__NODE_COLUMN_REF)
            refuse(c, WHY_ROW, row_name(a->arg->column_ref));
    }
    check_list(c, a->indirection, a->n_indirection, under);
}

/* The sublink's operator: none (IN, scalar) or a plain comparison? */
static bool sublink_compares(const PgQuery__SubLink *s)
{
    return s->n_oper_name == 0 || is_comparison_op(s->oper_name, s->n_oper_name);
}

/* EXISTS's target list only tests for rows; in a predicate, IN / ANY / ALL / scalar sublinks
 * compare their outputs like a column; anywhere else a sublink's outputs are values. */
static void check_sublink(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__SubLink *s = (const PgQuery__SubLink *)m;
    bool compares = (flags & AT_PRED) && sublink_compares(s);
    enum sel role = SEL_PLAIN;
    if (s->sub_link_type == PG_QUERY__SUB_LINK_TYPE__EXISTS_SUBLINK)
        role = SEL_EXISTS;
    else if (compares && s->sub_link_type != PG_QUERY__SUB_LINK_TYPE__ARRAY_SUBLINK &&
             s->sub_link_type != PG_QUERY__SUB_LINK_TYPE__MULTIEXPR_SUBLINK &&
             s->sub_link_type != PG_QUERY__SUB_LINK_TYPE__CTE_SUBLINK)
        role = SEL_PRED;
    check_node(c, s->testexpr, compares ? flags : flags & UNDER_PRED);
    const PgQuery__Node *q = s->subselect;
    if (q && q->node_case == PG_QUERY__NODE__NODE_SELECT_STMT)
        check_select(c, q->select_stmt, role, flags & UNDER_PRED);
    else
        check_node(c, q, flags & UNDER_PRED);
}

/* ---- FROM ---- */

static void check_range_var(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__RangeVar *r = (const PgQuery__RangeVar *)m;
    const struct masksql_policy *p = c->p;
    (void)flags;
    if (!r->relname)
        return;
    if (in_list(p->refused_relations, p->n_refused_relations, r->relname))
        refuse(c, WHY_VIEW, r->relname);
    else if (in_list(stats_relations, COUNT(stats_relations), r->relname))
        refuse(c, WHY_STATS, r->relname);
    if (r->alias && c->table) /* customers AS c(a, b, e) renames its columns */
        for (size_t i = 0; i < r->alias->n_colnames; i++)
            learn(c, &c->aliases, str_of(r->alias->colnames[i]));
}

static void check_range_subselect(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__RangeSubselect *r = (const PgQuery__RangeSubselect *)m;
    check_query(c, r->subquery, flags & UNDER_PRED);
    if (r->alias)
        learn_colnames(c, r->alias->colnames, r->alias->n_colnames, r->subquery);
}

static void check_cte(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__CommonTableExpr *e = (const PgQuery__CommonTableExpr *)m;
    check_query(c, e->ctequery, flags & UNDER_PRED);
    learn_colnames(c, e->aliascolnames, e->n_aliascolnames, e->ctequery);
}

/* A join that merges masked columns (USING, NATURAL): the merged column may lose its origin
 * (FULL JOIN's COALESCE, a coercion between types), so it must be selected qualified. */
static void note_merge(struct ctx *c, const PgQuery__JoinExpr *j, const char *name)
{
    const char *what = name ? name : "NATURAL JOIN";
    if (c->p->strict_predicates)
        refuse(c, WHY_STRICT, what);
    else if (j->jointype == PG_QUERY__JOIN_TYPE__JOIN_FULL)
        refuse(c, WHY_MERGED, what, what);
    if (name)
        learn(c, &c->merged, name);
    else if (!c->natural)
        c->natural = c->grew = true;
    if (j->alias)
        learn(c, &c->join_rows, j->alias->aliasname);
    if (j->join_using_alias)
        learn(c, &c->join_rows, j->join_using_alias->aliasname);
}

static void check_join(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__JoinExpr *j = (const PgQuery__JoinExpr *)m;
    unsigned under = flags & UNDER_PRED;
    check_node(c, j->larg, under);
    check_node(c, j->rarg, under);
    for (size_t i = 0; i < j->n_using_clause; i++)
        if (is_masked(c, str_of(j->using_clause[i])))
            note_merge(c, j, str_of(j->using_clause[i]));
    if (j->is_natural && c->table)
        note_merge(c, j, NULL);
    if (j->alias && c->table) /* (a JOIN b) AS j(x, y) renames the columns */
        for (size_t i = 0; i < j->alias->n_colnames; i++)
            learn(c, &c->aliases, str_of(j->alias->colnames[i]));
    check_node(c, j->quals, AT_PRED | UNDER_PRED);
}

/* ---- statements ---- */

static void check_insert(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__InsertStmt *s = (const PgQuery__InsertStmt *)m;
    unsigned under = flags & UNDER_PRED;
    if (s->with_clause)
        check(c, &s->with_clause->base, under);
    if (s->relation)
        check(c, &s->relation->base, under);
    check_list(c, s->cols, s->n_cols, under); /* names written: only their subscripts read */
    check_node(c, s->select_stmt, under);     /* a plain SELECT: its values are stored */
    const PgQuery__OnConflictClause *oc = s->on_conflict_clause;
    if (oc) {
        if (oc->infer)
            check(c, &oc->infer->base, under);
        check_list(c, oc->target_list, oc->n_target_list, under);
        check_node(c, oc->where_clause, AT_PRED | UNDER_PRED);
    }
    check_list(c, s->returning_list, s->n_returning_list, under);
}

static void check_update(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__UpdateStmt *s = (const PgQuery__UpdateStmt *)m;
    unsigned under = flags & UNDER_PRED;
    if (s->with_clause)
        check(c, &s->with_clause->base, under);
    if (s->relation)
        check(c, &s->relation->base, under);
    check_list(c, s->from_clause, s->n_from_clause, under);
    check_list(c, s->target_list, s->n_target_list, under); /* SET names are written, not read */
    check_node(c, s->where_clause, AT_PRED | UNDER_PRED);
    check_list(c, s->returning_list, s->n_returning_list, under);
}

static void check_delete(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__DeleteStmt *s = (const PgQuery__DeleteStmt *)m;
    unsigned under = flags & UNDER_PRED;
    if (s->with_clause)
        check(c, &s->with_clause->base, under);
    if (s->relation)
        check(c, &s->relation->base, under);
    check_list(c, s->using_clause, s->n_using_clause, under);
    check_node(c, s->where_clause, AT_PRED | UNDER_PRED);
    check_list(c, s->returning_list, s->n_returning_list, under);
}

static void check_merge(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__MergeStmt *s = (const PgQuery__MergeStmt *)m;
    unsigned under = flags & UNDER_PRED;
    if (s->with_clause)
        check(c, &s->with_clause->base, under);
    if (s->relation)
        check(c, &s->relation->base, under);
    check_node(c, s->source_relation, under);
    check_node(c, s->join_condition, AT_PRED | UNDER_PRED);
    for (size_t i = 0; i < s->n_merge_when_clauses; i++) {
        const PgQuery__Node *n = s->merge_when_clauses[i];
        if (!n || n->node_case != PG_QUERY__NODE__NODE_MERGE_WHEN_CLAUSE)
            continue;
        const PgQuery__MergeWhenClause *w = n->merge_when_clause;
        check_node(c, w->condition, AT_PRED | UNDER_PRED);
        check_list(c, w->target_list, w->n_target_list, under);
        check_list(c, w->values, w->n_values, under);
    }
}

/* Does COPY's column list name only unmasked columns? An empty list means all of them. */
static bool copies_unmasked_columns(const struct ctx *c, const PgQuery__CopyStmt *s)
{
    if (s->n_attlist == 0)
        return false;
    for (size_t i = 0; i < s->n_attlist; i++)
        if (!str_of(s->attlist[i]) || is_masked(c, str_of(s->attlist[i])))
            return false;
    return true;
}

/* COPY ... TO sends rows outside DataRow (unmasked); COPY ... FROM only writes. */
static void check_copy(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__CopyStmt *s = (const PgQuery__CopyStmt *)m;
    const char *rel = s->relation ? s->relation->relname : NULL;
    if (rel && !s->is_from && is_masked_table(c, rel) && !copies_unmasked_columns(c, s))
        refuse(c, WHY_COPY, rel, rel);
    if (s->relation)
        check(c, &s->relation->base, flags & UNDER_PRED);
    check_node(c, s->query, flags & UNDER_PRED); /* its SELECT is no output position */
    check_node(c, s->where_clause, AT_PRED | UNDER_PRED);
}

static void check_create_table_as(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__CreateTableAsStmt *s = (const PgQuery__CreateTableAsStmt *)m;
    if (s->query && s->query->node_case == PG_QUERY__NODE__NODE_EXECUTE_STMT)
        refuse(c, WHY_CTAS_EXECUTE);
    check_node(c, s->query, flags & UNDER_PRED);
    if (s->into)
        check(c, &s->into->base, flags & UNDER_PRED);
}

static void check_declare(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    check_query(c, ((const PgQuery__DeclareCursorStmt *)m)->query, flags);
}

static void check_prepare(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    check_query(c, ((const PgQuery__PrepareStmt *)m)->query, flags);
}

static void check_explain(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    check_query(c, ((const PgQuery__ExplainStmt *)m)->query, flags);
}

/* Refuses when a String below m names a masked table (DROP's object names). */
static void check_dropped(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    if (m->descriptor == &pg_query__string__descriptor) {
        const char *s = ((const PgQuery__String *)m)->sval;
        if (s && is_masked_table(c, s))
            refuse(c, WHY_DDL, s);
        return;
    }
    if (enter(c))
        each_child(c, m, flags, check_dropped);
    c->depth--;
}

static void check_drop(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__DropStmt *s = (const PgQuery__DropStmt *)m;
    check_list(c, s->objects, s->n_objects, flags & UNDER_PRED);
    for (size_t i = 0; i < s->n_objects; i++)
        if (s->objects[i])
            check_dropped(c, &s->objects[i]->base, flags);
}

/* The relation a statement changes the shape or rules of (a unique or exclusion index counts:
 * its violations print key values), or NULL. */
static const PgQuery__RangeVar *changed_relation(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__alter_table_stmt__descriptor)
        return ((const PgQuery__AlterTableStmt *)m)->relation;
    if (d == &pg_query__rename_stmt__descriptor)
        return ((const PgQuery__RenameStmt *)m)->relation;
    if (d == &pg_query__alter_object_schema_stmt__descriptor)
        return ((const PgQuery__AlterObjectSchemaStmt *)m)->relation;
    if (d == &pg_query__create_policy_stmt__descriptor)
        return ((const PgQuery__CreatePolicyStmt *)m)->table;
    if (d == &pg_query__alter_policy_stmt__descriptor)
        return ((const PgQuery__AlterPolicyStmt *)m)->table;
    if (d == &pg_query__index_stmt__descriptor) {
        const PgQuery__IndexStmt *s = (const PgQuery__IndexStmt *)m;
        return s->unique || s->primary || s->n_exclude_op_names ? s->relation : NULL;
    }
    return NULL;
}

/* Statements refused outright: they define or run code the guard cannot see into. */
static const char *refused_statement(const ProtobufCMessage *m)
{
    static const struct {
        const ProtobufCMessageDescriptor *d;
        const char *what;
    } stmts[] = {
        {&pg_query__do_stmt__descriptor, "DO"},
        {&pg_query__create_function_stmt__descriptor, "CREATE FUNCTION/PROCEDURE"},
        {&pg_query__create_trig_stmt__descriptor, "CREATE TRIGGER"},
        {&pg_query__rule_stmt__descriptor, "CREATE RULE"},
        {&pg_query__create_event_trig_stmt__descriptor, "CREATE EVENT TRIGGER"},
        {&pg_query__create_cast_stmt__descriptor, "CREATE CAST"},
    };
    for (size_t i = 0; i < COUNT(stmts); i++)
        if (m->descriptor == stmts[i].d)
            return stmts[i].what;
    if (m->descriptor == &pg_query__define_stmt__descriptor) {
        PgQuery__ObjectType k = ((const PgQuery__DefineStmt *)m)->kind;
        if (k == PG_QUERY__OBJECT_TYPE__OBJECT_AGGREGATE)
            return "CREATE AGGREGATE";
        if (k == PG_QUERY__OBJECT_TYPE__OBJECT_OPERATOR)
            return "CREATE OPERATOR";
    }
    return NULL;
}

static const struct {
    const ProtobufCMessageDescriptor *d;
    visit_fn fn;
} handlers[] = {
    {&pg_query__func_call__descriptor, check_func_call},
    {&pg_query__sub_link__descriptor, check_sublink},
    {&pg_query__a__indirection__descriptor, check_indirection},
    {&pg_query__window_def__descriptor, check_window_def},
    {&pg_query__range_var__descriptor, check_range_var},
    {&pg_query__range_subselect__descriptor, check_range_subselect},
    {&pg_query__common_table_expr__descriptor, check_cte},
    {&pg_query__join_expr__descriptor, check_join},
    {&pg_query__insert_stmt__descriptor, check_insert},
    {&pg_query__update_stmt__descriptor, check_update},
    {&pg_query__delete_stmt__descriptor, check_delete},
    {&pg_query__merge_stmt__descriptor, check_merge},
    {&pg_query__copy_stmt__descriptor, check_copy},
    {&pg_query__create_table_as_stmt__descriptor, check_create_table_as},
    {&pg_query__declare_cursor_stmt__descriptor, check_declare},
    {&pg_query__prepare_stmt__descriptor, check_prepare},
    {&pg_query__explain_stmt__descriptor, check_explain},
    {&pg_query__drop_stmt__descriptor, check_drop},
};

static visit_fn handler_of(const ProtobufCMessageDescriptor *d)
{
    for (size_t i = 0; i < COUNT(handlers); i++)
        if (handlers[i].d == d)
            return handlers[i].fn;
    return NULL;
}

/* Checks m in position flags: nodes with rules of their own go to their handler; any other
 * passes flags to its children when it keeps a predicate (or is a Node wrapper), and makes
 * them plain expressions otherwise. */
static void dispatch(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const PgQuery__RangeVar *changed = changed_relation(m);
    const char *what = refused_statement(m);
    visit_fn fn = handler_of(d);
    if (what)
        refuse(c, WHY_CODE, what);
    else if (changed && changed->relname && is_masked_table(c, changed->relname))
        refuse(c, WHY_DDL, changed->relname);
    else if (d == &pg_query__column_ref__descriptor)
        check_column_ref(c, (const PgQuery__ColumnRef *)m, (flags & AT_PRED) ? USE_PRED : USE_EXPR,
                         flags);
    else if (d == &pg_query__select_stmt__descriptor)
        check_select(c, (const PgQuery__SelectStmt *)m, SEL_PLAIN, flags & UNDER_PRED);
    else if (fn)
        fn(c, m, flags);
    else if (d == &pg_query__node__descriptor || ((flags & AT_PRED) && keeps_predicate(m)))
        each_child(c, m, flags, check);
    else
        each_child(c, m, flags & UNDER_PRED, check);
}

static void check(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    if (!m || c->out->refuse)
        return;
    if (enter(c))
        dispatch(c, m, flags);
    c->depth--;
}

/* ---- driver ---- */

static void reset_statement(struct ctx *c)
{
    nameset_clear(&c->aliases);
    nameset_clear(&c->rows);
    nameset_clear(&c->merged);
    nameset_clear(&c->join_rows);
    c->table = NULL;
    c->natural = false;
    c->depth = 0;
}

/* One statement: its names first, then the check, repeated while aliases of masked columns
 * turn up (a rename may be seen after its use), until no set grows. */
static void check_statement(struct ctx *c, const PgQuery__Node *st)
{
    reset_statement(c);
    collect(c, &st->base, 0);
    for (int pass = 0; !c->out->refuse; pass++) {
        if (pass == MAX_PASSES) {
            refuse(c, WHY_COMPLEX);
            break;
        }
        c->grew = false;
        c->depth = 0;
        check_query(c, st, 0);
        if (!c->grew)
            break;
    }
    reset_statement(c);
}

void masksql_check(const char *sql, const struct masksql_policy *p, struct masksql_verdict *out)
{
    struct ctx c = {.p = p, .out = out};
    memset(out, 0, sizeof(*out));
    PgQueryProtobufParseResult r = pg_query_parse_protobuf(sql);
    PgQuery__ParseResult *tree =
        r.error ? NULL
                : pg_query__parse_result__unpack(NULL, r.parse_tree.len,
                                                 (const uint8_t *)r.parse_tree.data);
    if (r.error)
        /* worded as the RLS guard's: policy.c keeps the parser's text (it may quote a
         * literal) out of the log by this wording */
        refuse(&c, "statement refused: lakeproxy could not parse it (%.200s)",
               r.error->message ? r.error->message : "syntax error");
    else if (!tree)
        refuse(&c, "statement refused: lakeproxy could not parse it (the parse tree could "
                   "not be read)");
    for (size_t i = 0; tree && i < tree->n_stmts && !out->refuse; i++)
        if (tree->stmts[i] && tree->stmts[i]->stmt)
            check_statement(&c, tree->stmts[i]->stmt);
    if (tree)
        pg_query__parse_result__free_unpacked(tree, NULL);
    pg_query_free_protobuf_parse_result(r);
}

/* ---- cache ---- */

struct masksql_cache {
    struct textcache *tc;
    struct masksql_verdict scratch; /* the answer for texts too long to cache */
};

struct masksql_cache *masksql_cache_new(size_t max_entries)
{
    struct masksql_cache *mc = calloc(1, sizeof(*mc));
    if (mc && !(mc->tc = textcache_new(max_entries, sizeof(struct masksql_verdict)))) {
        free(mc);
        mc = NULL;
    }
    return mc;
}

void masksql_cache_free(struct masksql_cache *mc)
{
    if (!mc)
        return;
    textcache_free(mc->tc);
    free(mc);
}

const struct masksql_verdict *masksql_cache_check(struct masksql_cache *mc, const char *sql,
                                                  const struct masksql_policy *p,
                                                  uint64_t policy_id)
{
    size_t len = strlen(sql);
    struct masksql_verdict *v = textcache_get(mc->tc, policy_id, sql, len);
    if (v)
        return v;
    v = len <= CACHE_MAX_TEXT ? textcache_put(mc->tc, policy_id, sql, len) : NULL;
    if (!v) /* too long to keep, or no memory: checked every time */
        v = &mc->scratch;
    masksql_check(sql, p, v);
    return v;
}
