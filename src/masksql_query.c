/* masksql_query.c: the masking guard's rules for a query's shape: a SELECT's clauses and the
 * position each one gives its expressions (output, predicate, sort or grouping key), sort and
 * grouping keys that name masked outputs by position or alias, and FROM items (relations and
 * the views and statistics relations refused, subqueries, CTEs, joins and their USING /
 * NATURAL merges), with the aliases that make renamed outputs masked. */
#include "masksql_int.h"

#define WHY_SORT_STAR                                                                              \
    "* over table \"%.63s\", which has masked columns, is sorted or grouped here (by position, "   \
    "or DISTINCT): sorting or grouping by a masked column would reveal its order or equal values"
#define WHY_USING                                                                                  \
    "column \"%.63s\" is masked: JOIN ... USING compares it with another table's column, and "     \
    "masked columns can be compared only with constants or parameters"
#define WHY_NATURAL                                                                                \
    "NATURAL JOIN over table \"%.63s\" may compare its masked columns with another table's "       \
    "(JOIN ... USING all common columns): masked columns can be compared only with constants or "  \
    "parameters; join with ON instead"
#define WHY_STATS                                                                                  \
    "relation \"%.63s\" is not allowed for clients with masked columns: planner statistics "       \
    "hold sample values of the columns"
#define WHY_VIEW                                                                                   \
    "relation \"%.63s\" is not allowed for clients with masked columns: it reads masked "          \
    "columns; query the underlying tables instead"

/* Relations holding planner statistics, whose sample values include masked columns'. */
static const char *const stats_relations[] = {
    "pg_stats", "pg_statistic", "pg_stats_ext", "pg_stats_ext_exprs", "pg_statistic_ext_data",
};

const char *const *masksql_stats_relations(size_t *n)
{
    *n = COUNT(stats_relations);
    return stats_relations;
}

/* One entry of a target list whose SELECT plays role. */
static void check_target(struct ctx *c, const PgQuery__Node *n, enum sel role, unsigned flags)
{
    static const enum use uses[] = {
        [SEL_OUTPUT] = USE_OUTPUT, [SEL_PLAIN] = USE_EXPR, [SEL_SETOP] = USE_EXPR,
        [SEL_PRED] = USE_SUBLINK,  [SEL_CMP] = USE_CMP,    [SEL_EXISTS] = USE_EXISTS,
    };
    /* a predicate sublink's plain outputs are compared (tested) where the sublink is; any
     * other target (a sublink in it included) is no place for tests */
    const PgQuery__Node *val =
        n && n->node_case == PG_QUERY__NODE__NODE_RES_TARGET ? n->res_target->val : NULL;
    unsigned tests = (flags & TESTS_OK) && val && val->node_case == PG_QUERY__NODE__NODE_COLUMN_REF
                         ? TESTS_OK
                         : 0;
    unsigned vflags = flags & STICKY;
    if (role == SEL_PRED || role == SEL_EXISTS)
        vflags = AT_PRED | UNDER_PRED | (flags & IN_SORT) | tests;
    else if (role == SEL_CMP)
        vflags = AT_CMP | UNDER_PRED | (flags & IN_SORT) | tests;
    if (!n || n->node_case != PG_QUERY__NODE__NODE_RES_TARGET) {
        check_node(c, n, vflags);
        return;
    }
    const PgQuery__ResTarget *rt = n->res_target;
    const PgQuery__Node *v = rt->val;
    if (v && v->node_case == PG_QUERY__NODE__NODE_COLUMN_REF) {
        msql_check_column_ref(c, v->column_ref, uses[role], vflags);
        if (role == SEL_OUTPUT && rt->name && *rt->name &&
            msql_ref_exposes_masked(c, v->column_ref))
            msql_learn(c, &c->aliases, rt->name);
    } else {
        check_node(c, v, vflags);
    }
    check_list(c, rt->indirection, rt->n_indirection, flags & STICKY);
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
            msql_ref_exposes_masked(c, v->column_ref))
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
        msql_learn(c, &c->aliases, str_of(names[i]));
}

/* The position of a WHERE, ON or HAVING clause of a query in position flags: tests of masked
 * columns are allowed (and counted) there when the query may make them. */
unsigned msql_filter_flags(unsigned flags)
{
    return AT_PRED | UNDER_PRED | (flags & IN_SORT) |
           ((flags & SCOPE_TESTS) ? SCOPE_TESTS | TESTS_OK : 0);
}

/* The name of the masked column that target k of s's list (1-based) outputs as a plain
 * reference, or NULL; with a * before it the target cannot be told: the statement's masked
 * table is named instead (*star set), if it has one. */
static const char *masked_ordinal(const struct ctx *c, const PgQuery__SelectStmt *s, int64_t k,
                                  bool *star)
{
    for (size_t i = 0; i < s->n_target_list && k > 0; i++) {
        const PgQuery__Node *t = s->target_list[i];
        const PgQuery__Node *v =
            t && t->node_case == PG_QUERY__NODE__NODE_RES_TARGET ? t->res_target->val : NULL;
        const PgQuery__ColumnRef *r =
            v && v->node_case == PG_QUERY__NODE__NODE_COLUMN_REF ? v->column_ref : NULL;
        const PgQuery__Node *last = r && r->n_fields ? r->fields[r->n_fields - 1] : NULL;
        if (is_star(last)) {
            *star = c->table != NULL;
            return c->table;
        }
        if ((size_t)k == i + 1)
            return last && msql_is_masked(c, str_of(last)) ? str_of(last) : NULL;
    }
    return NULL;
}

/* The masked column a target of s named alias outputs plainly, or NULL. */
static const char *masked_alias(const struct ctx *c, const PgQuery__SelectStmt *s,
                                const char *alias)
{
    for (size_t i = 0; alias && i < s->n_target_list; i++) {
        const PgQuery__Node *t = s->target_list[i];
        const PgQuery__ResTarget *rt =
            t && t->node_case == PG_QUERY__NODE__NODE_RES_TARGET ? t->res_target : NULL;
        const PgQuery__Node *v = rt ? rt->val : NULL;
        if (rt && rt->name && strcasecmp(rt->name, alias) == 0 && v &&
            v->node_case == PG_QUERY__NODE__NODE_COLUMN_REF &&
            msql_ref_exposes_masked(c, v->column_ref)) {
            const PgQuery__ColumnRef *r = v->column_ref;
            const char *col = str_of(r->fields[r->n_fields - 1]);
            return col ? col : c->table;
        }
    }
    return NULL;
}

/* A sort, grouping or DISTINCT ON key of s that names an output by position (ORDER BY 2) or by
 * its alias: refused when that output is a masked column (a key naming the column itself is
 * refused by its check). */
static void check_key_target(struct ctx *c, const PgQuery__SelectStmt *s, const PgQuery__Node *k,
                             int depth)
{
    const char *masked = NULL;
    bool star = false;
    if (!k || depth > MAX_DEPTH || c->out->refuse)
        return;
    switch (k->node_case) {
    case PG_QUERY__NODE__NODE_SORT_BY: check_key_target(c, s, k->sort_by->node, depth + 1); return;
    case PG_QUERY__NODE__NODE_GROUPING_SET:
        for (size_t i = 0; i < k->grouping_set->n_content; i++)
            check_key_target(c, s, k->grouping_set->content[i], depth + 1);
        return;
    case PG_QUERY__NODE__NODE_ROW_EXPR:
        for (size_t i = 0; i < k->row_expr->n_args; i++)
            check_key_target(c, s, k->row_expr->args[i], depth + 1);
        return;
    case PG_QUERY__NODE__NODE_LIST:
        for (size_t i = 0; i < k->list->n_items; i++)
            check_key_target(c, s, k->list->items[i], depth + 1);
        return;
    case PG_QUERY__NODE__NODE_A_CONST:
        if (!k->a_const->isnull && k->a_const->val_case == PG_QUERY__A__CONST__VAL_IVAL)
            masked = masked_ordinal(c, s, k->a_const->ival ? k->a_const->ival->ival : 0, &star);
        break;
    case PG_QUERY__NODE__NODE_COLUMN_REF:
        if (k->column_ref->n_fields == 1)
            masked = masked_alias(c, s, str_of(k->column_ref->fields[0]));
        break;
    default: break;
    }
    if (masked)
        msql_refuse(c, star ? WHY_SORT_STAR : WHY_SORT, masked);
}

/* s's sort, grouping and DISTINCT keys that name masked outputs; a plain DISTINCT (an empty
 * key) compares every output. */
static void check_key_targets(struct ctx *c, const PgQuery__SelectStmt *s)
{
    for (size_t i = 0; i < s->n_sort_clause; i++)
        check_key_target(c, s, s->sort_clause[i], 0);
    for (size_t i = 0; i < s->n_group_clause; i++)
        check_key_target(c, s, s->group_clause[i], 0);
    for (size_t i = 0; i < s->n_distinct_clause; i++) {
        const PgQuery__Node *k = s->distinct_clause[i];
        if (k && k->node_case != PG_QUERY__NODE__NODE__NOT_SET) {
            check_key_target(c, s, k, 0);
            continue;
        }
        for (size_t j = 0; j < s->n_target_list; j++) { /* DISTINCT: every output is a key */
            bool star = false;
            const char *masked = masked_ordinal(c, s, (int64_t)j + 1, &star);
            if (masked) {
                msql_refuse(c, star ? WHY_SORT_STAR : WHY_SORT, masked);
                break;
            }
        }
    }
}

/* The clauses of a simple (not set-operation) SELECT. */
static void check_select_body(struct ctx *c, const PgQuery__SelectStmt *s, enum sel role,
                              unsigned flags)
{
    unsigned under = flags & STICKY, pred = msql_filter_flags(flags);
    check_list(c, s->from_clause, s->n_from_clause, flags & SCOPE);
    for (size_t i = 0; i < s->n_target_list; i++)
        check_target(c, s->target_list[i], role, flags);
    check_list(c, s->values_lists, s->n_values_lists, under);
    check_node(c, s->where_clause, pred);
    check_list(c, s->group_clause, s->n_group_clause, SORT_KEY);
    check_node(c, s->having_clause, pred);
    check_list(c, s->window_clause, s->n_window_clause, under);
    check_list(c, s->distinct_clause, s->n_distinct_clause, SORT_KEY);
    check_key_targets(c, s);
}

void msql_check_select(struct ctx *c, const PgQuery__SelectStmt *s, enum sel role, unsigned flags)
{
    unsigned under = flags & STICKY;
    if (!s || c->out->refuse)
        return;
    if (!msql_enter(c)) {
        c->depth--;
        return;
    }
    if (s->into_clause) { /* SELECT INTO stores the values in a table */
        role = SEL_PLAIN;
        msql_check(c, &s->into_clause->base, under);
    }
    if (s->with_clause)
        msql_check(c, &s->with_clause->base, flags & SCOPE);
    if (is_set_operation(s)) { /* PostgreSQL reports no column origin through these */
        msql_check_select(c, s->larg, SEL_SETOP, flags & SCOPE);
        msql_check_select(c, s->rarg, SEL_SETOP, flags & SCOPE);
    } else {
        check_select_body(c, s, role, flags);
    }
    check_list(c, s->sort_clause, s->n_sort_clause, SORT_KEY);
    check_node(c, s->limit_offset, under);
    check_node(c, s->limit_count, under);
    check_list(c, s->locking_clause, s->n_locking_clause, under);
    c->depth--;
}

/* A statement whose SELECT, if it is one, sends its output positions to the client. */
void msql_check_query(struct ctx *c, const PgQuery__Node *q, unsigned flags)
{
    if (q && q->node_case == PG_QUERY__NODE__NODE_SELECT_STMT)
        msql_check_select(c, q->select_stmt, SEL_OUTPUT, flags);
    else
        check_node(c, q, flags);
}

void msql_check_range_var(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__RangeVar *r = (const PgQuery__RangeVar *)m;
    const struct masksql_policy *p = c->p;
    (void)flags;
    if (!r->relname)
        return;
    if (in_list(p->refused_relations, p->n_refused_relations, r->relname))
        msql_refuse(c, WHY_VIEW, r->relname);
    else if (in_list(stats_relations, COUNT(stats_relations), r->relname))
        msql_refuse(c, WHY_STATS, r->relname);
    if (r->alias && c->table) /* customers AS c(a, b, e) renames its columns */
        for (size_t i = 0; i < r->alias->n_colnames; i++)
            msql_learn(c, &c->aliases, str_of(r->alias->colnames[i]));
}

void msql_check_range_subselect(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__RangeSubselect *r = (const PgQuery__RangeSubselect *)m;
    msql_check_query(c, r->subquery, flags & SCOPE);
    if (r->alias)
        learn_colnames(c, r->alias->colnames, r->alias->n_colnames, r->subquery);
}

/* Column names (v, n of them) used as sort or comparison keys: none may be masked. */
static void check_key_names(struct ctx *c, PgQuery__Node *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (msql_is_masked(c, str_of(v[i])))
            msql_refuse(c, WHY_SORT, str_of(v[i]));
}

void msql_check_cte(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__CommonTableExpr *e = (const PgQuery__CommonTableExpr *)m;
    msql_check_query(c, e->ctequery, flags & SCOPE);
    learn_colnames(c, e->aliascolnames, e->n_aliascolnames, e->ctequery);
    /* SEARCH ... BY x sorts by x, CYCLE x compares x with earlier rows' */
    if (e->search_clause)
        check_key_names(c, e->search_clause->search_col_list, e->search_clause->n_search_col_list);
    if (e->cycle_clause) {
        check_key_names(c, e->cycle_clause->cycle_col_list, e->cycle_clause->n_cycle_col_list);
        check_node(c, e->cycle_clause->cycle_mark_value, flags & STICKY);
        check_node(c, e->cycle_clause->cycle_mark_default, flags & STICKY);
    }
}

/* WITH: its CTEs are subqueries of the statement (their WHERE, ON and HAVING may test). */
void msql_check_with(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__WithClause *w = (const PgQuery__WithClause *)m;
    check_list(c, w->ctes, w->n_ctes, flags & SCOPE);
}

/* JOIN ... USING (x) compares x with the other side's x: refused for a masked x. NATURAL JOIN
 * does so for every common column, which the guard cannot list: refused over a masked table. */
static void check_join_merges(struct ctx *c, const PgQuery__JoinExpr *j)
{
    for (size_t i = 0; i < j->n_using_clause; i++) {
        const char *name = str_of(j->using_clause[i]);
        if (msql_is_masked(c, name))
            msql_refuse(c, c->p->strict_predicates ? WHY_STRICT : WHY_USING, name);
    }
    if (j->is_natural && c->table) {
        if (c->p->strict_predicates)
            msql_refuse(c, WHY_STRICT, "NATURAL JOIN");
        else
            msql_refuse(c, WHY_NATURAL, c->table);
    }
}

void msql_check_join(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__JoinExpr *j = (const PgQuery__JoinExpr *)m;
    check_node(c, j->larg, flags & SCOPE);
    check_node(c, j->rarg, flags & SCOPE);
    check_join_merges(c, j);
    if (j->alias && c->table) /* (a JOIN b) AS j(x, y) renames the columns */
        for (size_t i = 0; i < j->alias->n_colnames; i++)
            msql_learn(c, &c->aliases, str_of(j->alias->colnames[i]));
    check_node(c, j->quals, msql_filter_flags(flags));
}
