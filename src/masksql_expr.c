/* masksql_expr.c: the masking guard's rules for expressions and predicates: where a masked
 * column (or a * over a masked table) may appear and how it is used there (a plain output, a
 * test against constants in WHERE / ON / HAVING, counted up to MAX_TESTS a text, never in an
 * expression, a comparison with other values, a sort or grouping key), whole-row references and
 * field selections, function calls (table readers, functions defined outside pg_catalog,
 * set_config), windows and sublinks. */
#include <stdio.h>

#include "hiddensql.h"
#include "masksql_int.h"

/* Tests of masked columns against constants (in WHERE, ON, HAVING) one statement text may make:
 * each query then learns little about the values it tests, never many guesses at once. */
#define MAX_TESTS 4

#define WHY_EXPR                                                                                   \
    "column \"%.63s\" is masked: it may be selected only as a plain column reference, not "        \
    "inside an expression, function, cast, aggregate, set operation, RETURNING or a write"
#define WHY_PRED                                                                                   \
    "column \"%.63s\" is masked: in WHERE, ON and HAVING it may be used only directly in a "       \
    "comparison with a constant (=, <, LIKE, IN, BETWEEN, IS NULL ...), not inside a cast or "     \
    "function"
#define WHY_TEST_PLACE                                                                             \
    "column \"%.63s\" is masked: it may be compared with constants only in WHERE, JOIN ... ON "    \
    "and HAVING of a SELECT, UPDATE or DELETE, not in FILTER, windows, the select list or "        \
    "elsewhere"
#define WHY_TESTS                                                                                  \
    "statement refused at column \"%.63s\": a statement may test masked columns at most %d "       \
    "times (strict_predicates: none); split it into several statements"
#define WHY_COMPARE                                                                                \
    "column \"%.63s\" is masked: it can be compared only with constants or parameters, not with "  \
    "columns, expressions or subqueries (and strict_predicates refuses even those)"
#define WHY_LIKE                                                                                   \
    "column \"%.63s\" is masked: LIKE may test it only against a constant prefix ('abc%%': no "    \
    "'_', '%%' only at the end) or a parameter bound to one; other patterns read whole columns"
#define WHY_ROW                                                                                    \
    "\"%.63s\" is a whole-row reference in a query over a table with masked columns: it would "    \
    "carry them unmasked; select the columns by name instead"
#define WHY_ROW_CALL                                                                               \
    "\"%.63s.%.63s\" is not a known column of %.63s: PostgreSQL would read it as "                 \
    "%.63s(%.63s), a function or cast of the whole row, carrying its masked columns; select the "  \
    "columns by name instead"
#define WHY_STAR                                                                                   \
    "* over table \"%.63s\", which has masked columns, is allowed only as a plain SELECT list "    \
    "entry: name the columns you need instead"
#define WHY_READER                                                                                 \
    "function \"%.63s\" is not allowed for clients with masked columns: it reads tables, "         \
    "cursors or SQL text out of the masking guard's sight"
#define WHY_FUNCTION                                                                               \
    "function \"%.63s\" is not allowed for clients with masked columns: it is defined outside "    \
    "pg_catalog (an administrator may allow it in the policy)"

/* Comparison operators a masked column may be a direct operand of in a predicate. */
static const char *const comparisons[] = {
    "=", "<>", "!=", "<", ">", "<=", ">=", "~~", "~~*", "!~~", "!~~*"};

/* Does a function of this name run SQL text or read tables or cursors by name, out of the
 * guard's sight (hiddensql.h)? The same for calls and for attribute notation (alias.name,
 * (x).name): exactly such a function or a member of its family (query_to_xmlschema,
 * dblink_exec, crosstab2), not any name one starts, so a column such as ts_status stays
 * readable as t.ts_status. */
static bool is_table_reader(const char *name)
{
    return hiddensql_kind(name) != HIDDENSQL_NONE;
}

/* Is name a function defined outside pg_catalog that the policy does not allow? */
static bool is_user_function(const struct ctx *c, const char *name)
{
    const struct masksql_policy *p = c->p;
    return in_list(p->user_functions, p->n_user_functions, name) &&
           !in_list(p->functions_allowed, p->n_functions_allowed, name);
}

/* Why name, read in attribute notation (alias.name, (x).name: PostgreSQL's name(alias) and
 * name(x)), is refused as the call it may be: a table reader's or an administrator's
 * function (a format for msql_refuse with the name); NULL when it is not. */
static const char *attribute_call_refusal(const struct ctx *c, const char *name)
{
    if (is_table_reader(name))
        return WHY_READER;
    return name && is_user_function(c, name) ? WHY_FUNCTION : NULL;
}

/* One more test of a masked column (name) against constants: refused past MAX_TESTS in the
 * statement text. */
static void count_test(struct ctx *c, const char *name)
{
    c->tested = name;
    if (c->tests_done + ++c->tests > MAX_TESTS)
        msql_refuse(c, WHY_TESTS, name, MAX_TESTS);
}

/* A * (qual.* or bare) used as use: EXISTS (SELECT * ...) only tests for rows; IN (SELECT *
 * ...) compares the row, masked columns included, with constants: a test. */
static void check_star(struct ctx *c, enum use use, unsigned flags)
{
    bool out = use == USE_OUTPUT || use == USE_EXISTS;
    if (!c->table && c->new_rel && !out) /* (ROW(k.*), k.* compared: of a newer relation) */
        msql_refuse_newer(c);
    if (!c->table)
        return;
    if (use == USE_EXPR || use == USE_PRED || use == USE_CMP || (flags & IN_SORT) ||
        (use == USE_SUBLINK && (c->p->strict_predicates || !(flags & TESTS_OK))))
        msql_refuse(c, WHY_STAR, c->table);
    else if (use == USE_SUBLINK)
        count_test(c, c->table);
}

/* A masked column name used as use in position flags: a plain output, EXISTS's target, or a
 * counted test against constants in WHERE, ON or HAVING; anything else is refused. */
static void check_masked_use(struct ctx *c, const char *name, enum use use, unsigned flags)
{
    if (use == USE_OUTPUT)
        return;
    if (c->p->strict_predicates && (flags & UNDER_PRED))
        msql_refuse(c, WHY_STRICT, name);
    else if (flags & IN_SORT)
        msql_refuse(c, WHY_SORT, name);
    else if (use == USE_EXPR)
        msql_refuse(c, (flags & UNDER_PRED) ? WHY_PRED : WHY_EXPR, name);
    else if (use == USE_CMP)
        msql_refuse(c, WHY_COMPARE, name);
    else if (use == USE_EXISTS)
        return;
    else if (!(flags & TESTS_OK))
        msql_refuse(c, WHY_TEST_PLACE, name);
    else
        count_test(c, name);
}

void msql_check_column_ref(struct ctx *c, const PgQuery__ColumnRef *r, enum use use, unsigned flags)
{
    if (r->n_fields == 0)
        return;
    const PgQuery__Node *lastn = r->fields[r->n_fields - 1];
    const char *last = str_of(lastn);
    const char *qual = r->n_fields > 1 ? str_of(r->fields[r->n_fields - 2]) : NULL;
    const char *call_why = qual ? attribute_call_refusal(c, last) : NULL;
    if (c->table && r->n_fields == 1 && nameset_has(&c->rows, last))
        msql_refuse(c, WHY_ROW, last);
    else if (c->new_rel && r->n_fields == 1 && nameset_has(&c->rows, last))
        msql_refuse_newer(c);
    else if (call_why)
        msql_refuse(c, call_why, last);
    else if (qual && msql_is_row_call(c, qual, last))
        msql_refuse(c, WHY_ROW_CALL, qual, last, qual, last, qual);
    else if (is_star(lastn))
        check_star(c, use, flags);
    else if (last && msql_is_masked(c, last))
        check_masked_use(c, last, use, flags);
}

/* Does a plain output entry r expose a masked column (so an alias of it becomes masked)? */
bool msql_ref_exposes_masked(const struct ctx *c, const PgQuery__ColumnRef *r)
{
    if (r->n_fields == 0)
        return false;
    const PgQuery__Node *last = r->fields[r->n_fields - 1];
    return is_star(last) ? c->table != NULL : msql_is_masked(c, str_of(last));
}

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

static bool all_constant(PgQuery__Node *const *v, size_t n, int depth);

/* Is v one of the SQL value functions that keep one value for the whole session here:
 * CURRENT_USER, CURRENT_ROLE, USER, SESSION_USER (the guard refuses every change of role and
 * session_authorization), CURRENT_CATALOG? Not CURRENT_SCHEMA, which follows search_path, nor
 * the date and time ones, whose value in the other operand's type follows TimeZone and
 * DateStyle: set_config can change those for each row of a statement, and SET LOCAL between
 * the rewinds of a scroll cursor, so that one counted test would try any number of guesses
 * (red team 11: CREATE SCHEMA "111-22-3333", then ssn = CURRENT_SCHEMA). */
static bool session_constant(const PgQuery__SQLValueFunction *v)
{
    switch (v->op) {
    case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_ROLE:
    case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_USER:
    case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_USER:
    case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_SESSION_USER:
    case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_CATALOG: return true;
    default: return false;
    }
}

/* Is n a constant or parameter (a literal, $1, CURRENT_USER (session_constant), a cast or
 * collation of one, an ARRAY[...], ROW(...) or list of them, the parser's like_escape of them
 * for LIKE ... ESCAPE)? A masked column compared with one reveals no more than the answer
 * about that value. */
static bool is_constant(const PgQuery__Node *n, int depth)
{
    if (!n || depth > MAX_DEPTH)
        return false;
    switch (n->node_case) {
    case PG_QUERY__NODE__NODE_A_CONST:
    case PG_QUERY__NODE__NODE_PARAM_REF: return true;
    case PG_QUERY__NODE__NODE_SQLVALUE_FUNCTION: return session_constant(n->sqlvalue_function);
    case PG_QUERY__NODE__NODE_TYPE_CAST: return is_constant(n->type_cast->arg, depth + 1);
    case PG_QUERY__NODE__NODE_COLLATE_CLAUSE: return is_constant(n->collate_clause->arg, depth + 1);
    case PG_QUERY__NODE__NODE_A_ARRAY_EXPR:
        return all_constant(n->a_array_expr->elements, n->a_array_expr->n_elements, depth);
    case PG_QUERY__NODE__NODE_ROW_EXPR:
        return all_constant(n->row_expr->args, n->row_expr->n_args, depth);
    case PG_QUERY__NODE__NODE_LIST: return all_constant(n->list->items, n->list->n_items, depth);
    case PG_QUERY__NODE__NODE_FUNC_CALL: {
        const PgQuery__FuncCall *f = n->func_call;
        return f->n_funcname == 2 && str_of(f->funcname[0]) && str_of(f->funcname[1]) &&
               strcasecmp(str_of(f->funcname[0]), "pg_catalog") == 0 &&
               strcasecmp(str_of(f->funcname[1]), "like_escape") == 0 && !f->agg_filter &&
               !f->over && f->n_agg_order == 0 && all_constant(f->args, f->n_args, depth);
    }
    default: return false;
    }
}

static bool all_constant(PgQuery__Node *const *v, size_t n, int depth)
{
    for (size_t i = 0; i < n; i++)
        if (!is_constant(v[i], depth + 1))
            return false;
    return true;
}

/* A comparison in a predicate (=, <, LIKE, IN (list), BETWEEN, = ANY (array) ...): an operand
 * may be a masked column only when the other is a constant or parameter; compared with another
 * column, an expression or a subquery it would be an oracle over any values a query can make
 * (generate_series, a table of guesses, other rows' masked values). */
/* The built-in scalar types the guard reads unqualified names as (scalar_type, keeps_text). */
static const char *const scalars[] = {
    "text",        "varchar",  "bpchar",  "char",     "name",   "int2",    "int4",
    "int8",        "int",      "integer", "smallint", "bigint", "numeric", "decimal",
    "float4",      "float8",   "real",    "date",     "time",   "timetz",  "timestamp",
    "timestamptz", "interval", "bool",    "boolean",  "bytea",  "uuid",    "inet",
    "cidr",        "json",     "jsonb",   "money",    "oid"};

bool msql_builtin_type_name(const char *name)
{
    return name && in_list(scalars, COUNT(scalars), name);
}

/* Is t's name a built-in scalar type's (whatever its array bounds), not a set or %TYPE? */
static bool builtin_scalar_base(const PgQuery__TypeName *t)
{
    if (t->setof || t->pct_type || t->n_names == 0 || t->n_names > 2)
        return false;
    const char *schema = t->n_names == 2 ? str_of(t->names[0]) : "pg_catalog";
    const char *name = str_of(t->names[t->n_names - 1]);
    if (!schema || !name || strcmp(schema, "pg_catalog") != 0)
        return false;
    for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++)
        if (strcmp(name, scalars[i]) == 0)
            return true;
    return false;
}

/* Is t a built-in scalar type (so a value cast to it is one value, never an array: a domain
 * or a type of the database's own may stand for an array; one named like a built-in cannot
 * be made by a masked client, msql_builtin_type_name)? */
static bool scalar_type(const PgQuery__TypeName *t)
{
    return t && t->n_array_bounds == 0 && builtin_scalar_base(t);
}

/* Elements an array literal's text may hold: every ',' or ';' (the delimiters of built-in
 * types) may separate two, whatever the text starts with (PostgreSQL skips white space and
 * takes '[1:9]=' dimensions first) and however deep the braces nest. Quoted delimiters count
 * too: an overcount only refuses sooner. */
static int literal_guesses(const char *text)
{
    int elements = 1;
    for (const char *p = text; *p; p++)
        elements += *p == ',' || *p == ';';
    return elements;
}

/* Values an element of ARRAY[...] adds to = ANY / ALL (PostgreSQL flattens nested arrays): its
 * own elements for a nested ARRAY, a string literal's as an array literal's (in
 * ARRAY[ARRAY[1,2],'{3,4}'] it is a sub-array; an overcount elsewhere only refuses sooner), 1
 * for another literal or a value cast to a built-in scalar type,
 * -1 (unknown) for a parameter or any other cast: either may be an array itself. */
static int element_guesses(const PgQuery__Node *n, int depth)
{
    if (!n || depth > MAX_DEPTH)
        return -1;
    switch (n->node_case) {
    case PG_QUERY__NODE__NODE_A_CONST: /* beside nested arrays, a string is a whole sub-array */
        return n->a_const->val_case == PG_QUERY__A__CONST__VAL_SVAL && n->a_const->sval
                   ? literal_guesses(n->a_const->sval->sval)
                   : 1;
    case PG_QUERY__NODE__NODE_SQLVALUE_FUNCTION: return 1;
    case PG_QUERY__NODE__NODE_COLLATE_CLAUSE:
        return element_guesses(n->collate_clause->arg, depth + 1);
    case PG_QUERY__NODE__NODE_TYPE_CAST: return scalar_type(n->type_cast->type_name) ? 1 : -1;
    case PG_QUERY__NODE__NODE_A_ARRAY_EXPR: {
        int sum = 0;
        for (size_t i = 0; i < n->a_array_expr->n_elements; i++) {
            int g = element_guesses(n->a_array_expr->elements[i], depth + 1);
            if (g < 0)
                return -1;
            sum += g;
        }
        return sum;
    }
    default: return -1;
    }
}

/* How many values a comparison's constant side n offers a masked column: the elements of an
 * IN list or of the array of = ANY / ALL (each is a guess: x IN (g1 ... g1000) asks a thousand
 * questions), 1 for a plain constant, -1 for an array of unknown size (= ANY ($1), an element
 * that may itself be an array). */
static int guesses_of(const PgQuery__AExpr *e, const PgQuery__Node *n)
{
    bool many = e->kind == PG_QUERY__A__EXPR__KIND__AEXPR_IN ||
                e->kind == PG_QUERY__A__EXPR__KIND__AEXPR_OP_ANY ||
                e->kind == PG_QUERY__A__EXPR__KIND__AEXPR_OP_ALL;
    while (many && n &&
           (n->node_case == PG_QUERY__NODE__NODE_TYPE_CAST ||
            n->node_case == PG_QUERY__NODE__NODE_COLLATE_CLAUSE)) {
        /* only a built-in scalar or an array of one (int4[], text[]) separates a literal's
         * elements with ',' as literal_guesses counts them; int2vector and oidvector use
         * spaces, and any other type may hide how many values a literal holds */
        if (n->node_case == PG_QUERY__NODE__NODE_TYPE_CAST &&
            !(n->type_cast->type_name && builtin_scalar_base(n->type_cast->type_name)))
            return -1;
        n = n->node_case == PG_QUERY__NODE__NODE_TYPE_CAST ? n->type_cast->arg
                                                           : n->collate_clause->arg;
    }
    if (!many || !n)
        return 1;
    if (n->node_case == PG_QUERY__NODE__NODE_LIST)
        return (int)n->list->n_items;
    if (n->node_case == PG_QUERY__NODE__NODE_A_ARRAY_EXPR)
        return element_guesses(n, 0);
    if (n->node_case != PG_QUERY__NODE__NODE_A_CONST)
        return -1;
    const PgQuery__AConst *k = n->a_const;
    return k->val_case == PG_QUERY__A__CONST__VAL_SVAL && k->sval ? literal_guesses(k->sval->sval)
                                                                  : 1;
}

/* Is e a LIKE-family operator (LIKE, ILIKE, their NOT forms, or ~~ and kin by name)? */
static bool is_like_op(const PgQuery__AExpr *e)
{
    static const char *const likes[] = {"~~", "~~*", "!~~", "!~~*"};
    return e->n_name > 0 && str_of(e->name[e->n_name - 1]) &&
           in_list(likes, COUNT(likes), str_of(e->name[e->n_name - 1]));
}

/* n without a COLLATE around it. */
static const PgQuery__Node *uncollated(const PgQuery__Node *n)
{
    return n && n->node_case == PG_QUERY__NODE__NODE_COLLATE_CLAUSE ? n->collate_clause->arg : n;
}

/* Is t pg_catalog's text or varchar, named so (varchar is, by the grammar; a plain "text" may
 * name a domain the client made in pg_temp, searched first), without a length (a cast to it
 * leaves a string's text as it is)? */
static bool keeps_text(const PgQuery__TypeName *t)
{
    if (!t || t->n_array_bounds > 0 || t->n_typmods > 0 || t->setof || t->pct_type ||
        t->n_names != 2)
        return false;
    const char *schema = str_of(t->names[0]);
    const char *name = str_of(t->names[t->n_names - 1]);
    return schema && name && strcmp(schema, "pg_catalog") == 0 &&
           (strcmp(name, "text") == 0 || strcmp(name, "varchar") == 0);
}

/* n without at most one cast to pg_catalog's text or varchar and COLLATEs around it; NULL
 * under any other cast. */
static const PgQuery__Node *under_text_cast(const PgQuery__Node *n)
{
    n = uncollated(n);
    if (n && n->node_case == PG_QUERY__NODE__NODE_TYPE_CAST)
        n = keeps_text(n->type_cast->type_name) ? uncollated(n->type_cast->arg) : NULL;
    return n;
}

/* The text of n when n is a string constant as written, under at most one cast to text or
 * varchar and a COLLATE; NULL otherwise: any other cast may make another text of it at run
 * time ('...'::regclass::text is a table's name, '\137'::bytea::text an underscore, 95::"char"
 * one too), which is the text PostgreSQL matches, not the constant's. */
static const char *string_constant(const PgQuery__Node *n)
{
    n = under_text_cast(n);
    if (!n || n->node_case != PG_QUERY__NODE__NODE_A_CONST)
        return NULL;
    const PgQuery__AConst *k = n->a_const;
    return k->val_case == PG_QUERY__A__CONST__VAL_SVAL && k->sval ? k->sval->sval : NULL;
}

/* Is n a constant prefix pattern: a string constant (escaped with '\'), or the parser's
 * like_escape of one and a constant escape of at most one byte (LIKE ... ESCAPE)? */
static bool is_prefix_constant(const PgQuery__Node *n)
{
    n = uncollated(n);
    const char *text = string_constant(n);
    if (text) /* (no backslash: into a bytea column's pattern '\\x5f' or '\\137' reads as '_') */
        return !strchr(text, '\\') && masklike_is_prefix(text, strlen(text), '\\');
    if (!n || n->node_case != PG_QUERY__NODE__NODE_FUNC_CALL || !is_constant(n, 0) ||
        n->func_call->n_args != 2)
        return false; /* (is_constant: only like_escape of constants is a call) */
    const char *pattern = string_constant(n->func_call->args[0]);
    const char *escape = string_constant(n->func_call->args[1]);
    return pattern && escape && strlen(escape) <= 1 && !strchr(pattern, '\\') &&
           !strchr(escape, '\\') && masklike_is_prefix(pattern, strlen(pattern), escape[0]);
}

/* The number of parameter n ($n, under at most one cast to text or varchar and a COLLATE);
 * 0 when n is something else. */
static int param_number(const PgQuery__Node *n)
{
    n = under_text_cast(n);
    return n && n->node_case == PG_QUERY__NODE__NODE_PARAM_REF && n->param_ref->number > 0 &&
                   n->param_ref->number <= 65535
               ? n->param_ref->number
               : 0;
}

/* Is n a constant prefix pattern, or a parameter, noted so that its values are checked at
 * each Bind (false when too many are)? */
static bool prefix_or_noted_param(struct ctx *c, const PgQuery__Node *n)
{
    int k = param_number(n);
    return k == 0 ? is_prefix_constant(n) : masklike_add(&c->like, (unsigned)k);
}

/* May LIKE-family comparison e test a masked column? Only when the column is what is matched
 * (as the pattern, its own '_' and '%' would match) and the pattern a constant prefix: each
 * element of the ARRAY[...] of LIKE ANY / ALL (an array literal's elements are not read). */
static bool like_test_allowed(struct ctx *c, const PgQuery__AExpr *e, bool column_matched)
{
    if (!column_matched)
        return false;
    if (e->kind != PG_QUERY__A__EXPR__KIND__AEXPR_OP_ANY &&
        e->kind != PG_QUERY__A__EXPR__KIND__AEXPR_OP_ALL)
        return prefix_or_noted_param(c, e->rexpr);
    const PgQuery__Node *n = uncollated(e->rexpr);
    if (!n || n->node_case != PG_QUERY__NODE__NODE_A_ARRAY_EXPR)
        return false;
    for (size_t i = 0; i < n->a_array_expr->n_elements; i++)
        if (!prefix_or_noted_param(c, n->a_array_expr->elements[i]))
            return false;
    return true;
}

static void check_comparison(struct ctx *c, const PgQuery__AExpr *e, unsigned flags)
{
    unsigned kept = flags & KEPT;
    unsigned with_constant = AT_PRED | UNDER_PRED | kept, with_other = AT_CMP | UNDER_PRED | kept;
    bool l = is_constant(e->lexpr, 0), r = is_constant(e->rexpr, 0);
    int before = c->tests;
    check_node(c, e->lexpr, r ? with_constant : with_other);
    check_node(c, e->rexpr, l ? with_constant : with_other);
    int made = c->tests - before, g = guesses_of(e, r ? e->rexpr : e->lexpr);
    if (made == 0 || c->out->refuse)
        return;
    if (g < 0)
        msql_refuse(c, WHY_ARRAY_GUESSES, c->tested ? c->tested : "?");
    for (int extra = made * (g - 1); extra > 0 && !c->out->refuse; extra--)
        count_test(c, c->tested);
    if (!c->out->refuse && is_like_op(e) && !like_test_allowed(c, e, r && !l))
        msql_refuse(c, WHY_LIKE, c->tested ? c->tested : "?");
}

/* Is m a comparison placed directly in a predicate (not, say, in an output expression)? */
static bool is_predicate_comparison(const ProtobufCMessage *m, unsigned flags)
{
    return (flags & AT_ANY) && m->descriptor == &pg_query__a__expr__descriptor &&
           is_comparison((const PgQuery__AExpr *)m);
}

/* In a predicate, may a masked column stand directly below m (compared as m itself is, when it
 * is an operand)? Boolean connectives, IS [NOT] NULL / TRUE, row constructors, IN and BETWEEN
 * lists: they compare the value but never print or transform it (comparisons have their own
 * rule: check_comparison; sort and grouping keys may hold no masked column at all). */
static bool keeps_predicate(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    return d == &pg_query__bool_expr__descriptor || d == &pg_query__null_test__descriptor ||
           d == &pg_query__boolean_test__descriptor || d == &pg_query__row_expr__descriptor ||
           d == &pg_query__list__descriptor;
}

/* The position of the children of m, which keeps a predicate in position flags: IS NULL and IS
 * TRUE test their operand alone, whatever their own result is compared with. */
static unsigned kept_flags(const ProtobufCMessage *m, unsigned flags)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__null_test__descriptor || d == &pg_query__boolean_test__descriptor)
        return AT_PRED | UNDER_PRED | (flags & KEPT);
    return flags;
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

void msql_check_func_call(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__FuncCall *f = (const PgQuery__FuncCall *)m;
    size_t n = f->n_funcname;
    const char *name = n ? str_of(f->funcname[n - 1]) : NULL;
    const char *schema = n > 1 ? str_of(f->funcname[n - 2]) : NULL;
    unsigned under = flags & STICKY;
    if (is_table_reader(name))
        msql_refuse(c, WHY_READER, name);
    else if (name && !function_allowed(c, schema, name))
        msql_refuse(c, WHY_FUNCTION, name);
    else if (name && strcasecmp(name, "set_config") == 0)
        msql_check_set_config(c, f);
    check_list(c, f->args, f->n_args, under);
    check_list(c, f->agg_order, f->n_agg_order, SORT_KEY);
    /* FILTER is a predicate, but no place for tests: one SELECT could make hundreds */
    check_node(c, f->agg_filter, AT_PRED | UNDER_PRED | (flags & IN_SORT));
    if (f->over)
        msql_check(c, &f->over->base, under);
}

/* A window's partitions and order are sort and grouping keys; its frame offsets expressions. */
void msql_check_window_def(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__WindowDef *w = (const PgQuery__WindowDef *)m;
    check_list(c, w->partition_clause, w->n_partition_clause, SORT_KEY);
    check_list(c, w->order_clause, w->n_order_clause, SORT_KEY);
    check_node(c, w->start_offset, flags & STICKY);
    check_node(c, w->end_offset, flags & STICKY);
}

/* The name a column reference starts with, for messages. */
static const char *row_name(const PgQuery__ColumnRef *r)
{
    const char *name = r->n_fields ? str_of(r->fields[0]) : NULL;
    return name ? name : "row";
}

/* (row).field, (row).*, x[i]: field selection from a whole row over a masked table, or of a
 * masked name, is refused. */
void msql_check_indirection(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__AIndirection *a = (const PgQuery__AIndirection *)m;
    unsigned under = flags & STICKY;
    check_node(c, a->arg, under);
    for (size_t i = 0; i < a->n_indirection; i++) {
        const PgQuery__Node *x = a->indirection[i];
        const char *field = str_of(x), *call_why = attribute_call_refusal(c, field);
        if (field && msql_is_masked(c, field))
            msql_refuse(c, WHY_EXPR, field);
        else if (call_why)
            msql_refuse(c, call_why, field);
        else if ((field || is_star(x)) && c->table && a->arg &&
                 a->arg->node_case == PG_QUERY__NODE__NODE_COLUMN_REF)
            msql_refuse(c, WHY_ROW, row_name(a->arg->column_ref));
        else if ((field || is_star(x)) && c->new_rel && a->arg &&
                 a->arg->node_case == PG_QUERY__NODE__NODE_COLUMN_REF)
            msql_refuse_newer(c);
    }
    check_list(c, a->indirection, a->n_indirection, under);
}

/* The sublink's operator: none (IN, scalar) or a plain comparison? */
static bool sublink_compares(const PgQuery__SubLink *s)
{
    return s->n_oper_name == 0 || is_comparison_op(s->oper_name, s->n_oper_name);
}

/* The role of a comparing sublink's target list: its outputs are compared with the sublink's
 * left operand (IN, = ANY ...), or, for a scalar sublink, like the sublink itself. */
static enum sel compared_role(const PgQuery__SubLink *s, unsigned flags)
{
    switch (s->sub_link_type) {
    case PG_QUERY__SUB_LINK_TYPE__ANY_SUBLINK:
    case PG_QUERY__SUB_LINK_TYPE__ALL_SUBLINK:
    case PG_QUERY__SUB_LINK_TYPE__ROWCOMPARE_SUBLINK:
        return is_constant(s->testexpr, 0) ? SEL_PRED : SEL_CMP;
    case PG_QUERY__SUB_LINK_TYPE__EXPR_SUBLINK: return (flags & AT_CMP) ? SEL_CMP : SEL_PRED;
    default: return SEL_PLAIN;
    }
}

/* EXISTS's target list only tests for rows; in a predicate, IN / ANY / ALL / scalar sublinks
 * compare their outputs like a column (a masked one only with constants), and IN / ANY / ALL's
 * left operand with the outputs (so never a masked column); anywhere else a sublink's outputs
 * are values. A sublink where tests are allowed (in WHERE, ON, HAVING) allows them in its own
 * WHERE, ON and HAVING; one anywhere else (the select list, FILTER ...) does not. */
void msql_check_sublink(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__SubLink *s = (const PgQuery__SubLink *)m;
    bool compares = (flags & AT_ANY) && sublink_compares(s);
    unsigned inner = (flags & STICKY) | ((flags & TESTS_OK) ? SCOPE_TESTS | TESTS_OK : 0);
    enum sel role = SEL_PLAIN;
    if (s->sub_link_type == PG_QUERY__SUB_LINK_TYPE__EXISTS_SUBLINK)
        role = SEL_EXISTS;
    else if (compares)
        role = compared_role(s, flags);
    check_node(c, s->testexpr, compares ? AT_CMP | UNDER_PRED | (flags & KEPT) : flags & STICKY);
    const PgQuery__Node *q = s->subselect;
    if (q && q->node_case == PG_QUERY__NODE__NODE_SELECT_STMT)
        msql_check_select(c, q->select_stmt, role, inner);
    else
        check_node(c, q, inner);
}

/* How a column reference in position flags is used. */
static enum use use_at(unsigned flags)
{
    return (flags & AT_PRED) ? USE_PRED : (flags & AT_CMP) ? USE_CMP : USE_EXPR;
}

/* A node without a handler of its own: a column reference is checked as used in position flags,
 * a comparison placed directly in a predicate by check_comparison; a Node wrapper passes flags
 * to its children, a predicate connective keeps the predicate for them, and anything else makes
 * them plain expressions (where tests of masked columns are no longer allowed). */
void msql_check_expression(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__column_ref__descriptor)
        msql_check_column_ref(c, (const PgQuery__ColumnRef *)m, use_at(flags), flags);
    else if (is_predicate_comparison(m, flags))
        check_comparison(c, (const PgQuery__AExpr *)m, flags);
    else if (d == &pg_query__node__descriptor)
        msql_each_child(c, m, flags, msql_check);
    else if ((flags & AT_ANY) && keeps_predicate(m))
        msql_each_child(c, m, kept_flags(m, flags), msql_check);
    else
        msql_each_child(c, m, flags & STICKY, msql_check);
}
