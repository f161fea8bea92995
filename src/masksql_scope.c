/* masksql_scope.c: the names a statement brings into sight, gathered before the check: relations,
 * aliases, subqueries, CTEs and RETURNING's old/new (names of whole rows), what each is made of
 * (a masked table, a join, a list of outputs, an alias of other names) and the first masked
 * table named; and from that, whether qual.x is a column or PostgreSQL's call x(qual) of a
 * whole row. */
#include "masksql_int.h"

static void note_alias(struct ctx *c, const PgQuery__Alias *a)
{
    if (a)
        msql_learn(c, &c->rows, a->aliasname);
}

/* The entry for a FROM item's name, or NULL (no name; out of memory: refused). */
static struct rowinfo *qual_info(struct ctx *c, const char *name)
{
    struct rowinfo *info = name && *name ? rowmap_add(&c->quals, name) : NULL;
    if (name && *name && !info)
        msql_refuse(c, WHY_MEMORY);
    return info;
}

/* Narrows what name is made of to the names in set: its columns are among them. */
static void note_listed(struct ctx *c, const char *name, const struct nameset *set)
{
    struct rowinfo *info = qual_info(c, name);
    if (info && rowinfo_list(info, set) < 0)
        msql_refuse(c, WHY_MEMORY);
}

/* An alias's column list (t AS a(x, y)) renames the first columns: a name it moves away may
 * no longer be a column, so only the listed names are known columns. */
static void note_renames(struct ctx *c, const char *name, PgQuery__Node *const *colnames, size_t n)
{
    struct nameset set = {0};
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        if (str_of(colnames[i]) && nameset_add(&set, str_of(colnames[i])) < 0)
            msql_refuse(c, WHY_MEMORY);
    note_listed(c, name, &set);
    nameset_clear(&set);
}

/* The target list that names a query's outputs (the first arm of a set operation, a
 * data-modifying statement's RETURNING), in *list and *n; false when they cannot be told. */
static bool output_list(const PgQuery__Node *q, PgQuery__Node *const **list, size_t *n)
{
    const PgQuery__SelectStmt *s =
        q && q->node_case == PG_QUERY__NODE__NODE_SELECT_STMT ? q->select_stmt : NULL;
    while (s && is_set_operation(s) && s->larg)
        s = s->larg;
    *list = NULL;
    *n = 0;
    if (s) {
        *list = s->target_list;
        *n = s->n_target_list;
    } else if (q && q->node_case == PG_QUERY__NODE__NODE_INSERT_STMT) {
        *list = q->insert_stmt->returning_list;
        *n = q->insert_stmt->n_returning_list;
    } else if (q && q->node_case == PG_QUERY__NODE__NODE_UPDATE_STMT) {
        *list = q->update_stmt->returning_list;
        *n = q->update_stmt->n_returning_list;
    } else if (q && q->node_case == PG_QUERY__NODE__NODE_DELETE_STMT) {
        *list = q->delete_stmt->returning_list;
        *n = q->delete_stmt->n_returning_list;
    } else {
        return false;
    }
    return true;
}

/* The name a target-list entry gives its output (its alias, or a plain column reference's
 * column), or NULL; *star set when it is a *. */
static const char *output_name(const PgQuery__Node *t, bool *star)
{
    if (!t || t->node_case != PG_QUERY__NODE__NODE_RES_TARGET)
        return NULL;
    const PgQuery__ResTarget *rt = t->res_target;
    const PgQuery__Node *v = rt->val;
    if (v && v->node_case == PG_QUERY__NODE__NODE_COLUMN_REF && v->column_ref->n_fields &&
        is_star(v->column_ref->fields[v->column_ref->n_fields - 1]))
        *star = true;
    if (rt->name && *rt->name)
        return rt->name;
    if (!v || v->node_case != PG_QUERY__NODE__NODE_COLUMN_REF || !v->column_ref->n_fields)
        return NULL;
    return str_of(v->column_ref->fields[v->column_ref->n_fields - 1]);
}

/* Notes what the subquery or CTE name is made of: query q's output names, the first renamed by
 * colnames. With a * among them (or outputs that cannot be told) its columns are known only as
 * the masked tables' (and the renamed ones). */
static void note_outputs(struct ctx *c, const char *name, const PgQuery__Node *q,
                         PgQuery__Node *const *colnames, size_t n_colnames)
{
    PgQuery__Node *const *list;
    size_t n;
    bool star = false, known = output_list(q, &list, &n);
    struct nameset outs = {0};
    for (size_t i = 0; i < n_colnames; i++)
        if (str_of(colnames[i]) && nameset_add(&outs, str_of(colnames[i])) < 0)
            msql_refuse(c, WHY_MEMORY);
    for (size_t i = 0; i < n; i++) {
        const char *out = output_name(list[i], &star);
        if (i >= n_colnames && out && nameset_add(&outs, out) < 0)
            msql_refuse(c, WHY_MEMORY);
    }
    struct rowinfo *info = qual_info(c, name);
    if (info && (star || !known))
        info->wide = true;
    if (info && (!(star || !known) || n_colnames > 0))
        note_listed(c, name, &outs);
    nameset_clear(&outs);
}

/* A relation, maybe aliased: FROM x AS y, where x may be a CTE, makes y what x is made of. */
static void note_range_var(struct ctx *c, const PgQuery__RangeVar *r)
{
    bool masked = r->relname && msql_is_masked_table(c, r->relname);
    const char *alias = r->alias ? r->alias->aliasname : NULL;
    struct rowinfo *info;
    if (!masked && r->relname &&
        msql_is_newer_relation(c, r->schemaname, r->relname)) /* (or a CTE's name) */
        msql_note_newer(c, r->relname);
    msql_learn(c, &c->rows, r->relname);
    note_alias(c, r->alias);
    if (masked && !c->table)
        c->table = r->relname;
    if ((info = qual_info(c, r->relname)))
        info->masked_table |= masked;
    if (!alias || !(info = qual_info(c, alias)))
        return;
    info->masked_table |= masked;
    if (r->relname && !(r->schemaname && *r->schemaname))
        rowinfo_link(info, r->relname);
    note_renames(c, alias, r->alias->colnames, r->alias->n_colnames);
}

/* RETURNING old and new (PostgreSQL 18), ON CONFLICT's excluded: rows of a target table. */
static void note_target(struct ctx *c, const PgQuery__RangeVar *r)
{
    static const char *const pseudo[] = {"old", "new", "excluded"};
    struct rowinfo *info;
    if (!r || !r->relname || !msql_is_masked_table(c, r->relname))
        return;
    for (size_t i = 0; i < COUNT(pseudo); i++) {
        msql_learn(c, &c->rows, pseudo[i]);
        if ((info = qual_info(c, pseudo[i])))
            info->masked_table = true;
    }
}

static void note_join(struct ctx *c, const PgQuery__JoinExpr *j)
{
    const PgQuery__Alias *aliases[] = {j->alias, j->join_using_alias};
    struct rowinfo *info;
    for (size_t i = 0; i < COUNT(aliases); i++) {
        if (!aliases[i])
            continue;
        note_alias(c, aliases[i]);
        if ((info = qual_info(c, aliases[i]->aliasname)))
            info->wide = true;
        note_renames(c, aliases[i]->aliasname, aliases[i]->colnames, aliases[i]->n_colnames);
    }
}

/* Notes the whole-row names m defines, what they are made of, and whether it names a masked
 * table. Aliases of functions in FROM are not whole-row names here: their arguments are checked
 * as expressions. */
static void note_names(struct ctx *c, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__range_var__descriptor) {
        note_range_var(c, (const PgQuery__RangeVar *)m);
    } else if (d == &pg_query__range_subselect__descriptor) {
        const PgQuery__RangeSubselect *r = (const PgQuery__RangeSubselect *)m;
        note_alias(c, r->alias);
        if (r->alias)
            note_outputs(c, r->alias->aliasname, r->subquery, r->alias->colnames,
                         r->alias->n_colnames);
    } else if (d == &pg_query__common_table_expr__descriptor) {
        const PgQuery__CommonTableExpr *e = (const PgQuery__CommonTableExpr *)m;
        msql_learn(c, &c->rows, e->ctename);
        if (e->ctename && nameset_add(&c->ctes, e->ctename) < 0)
            msql_refuse(c, WHY_MEMORY);
        note_outputs(c, e->ctename, e->ctequery, e->aliascolnames, e->n_aliascolnames);
    } else if (d == &pg_query__join_expr__descriptor) {
        note_join(c, (const PgQuery__JoinExpr *)m);
    } else if (d == &pg_query__range_table_func__descriptor) {
        note_alias(c, ((const PgQuery__RangeTableFunc *)m)->alias);
    } else if (d == &pg_query__insert_stmt__descriptor) {
        note_target(c, ((const PgQuery__InsertStmt *)m)->relation);
    } else if (d == &pg_query__update_stmt__descriptor) {
        note_target(c, ((const PgQuery__UpdateStmt *)m)->relation);
    } else if (d == &pg_query__delete_stmt__descriptor) {
        note_target(c, ((const PgQuery__DeleteStmt *)m)->relation);
    } else if (d == &pg_query__merge_stmt__descriptor) {
        note_target(c, ((const PgQuery__MergeStmt *)m)->relation);
    }
}

/* Whole-row names, what they are made of and the masked tables the statement below m names. */
void msql_collect(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    if (c->out->refuse)
        return;
    if (msql_enter(c)) {
        note_names(c, m);
        msql_each_child(c, m, flags, msql_collect);
    }
    c->depth--;
}

/* Functions of a whole row that attribute notation (c.row_to_json) would call on a row, besides
 * the catalog's (policy row_functions). */
static const char *const row_functions[] = {
    "row_to_json",        "to_json",
    "to_jsonb",           "json_build_array",
    "jsonb_build_array",  "json_build_object",
    "jsonb_build_object", "concat",
    "concat_ws",          "format",
    "quote_literal",      "quote_nullable",
    "quote_ident",        "record_send",
    "record_out",         "hstore",
    "hash_record",        "pg_column_size",
    "num_nulls",          "num_nonnulls",
    "array_to_string",    "array_agg",
    "json_agg",           "jsonb_agg",
    "string_agg",         "to_tsvector",
};

/* Types that attribute notation (c.text) would cast a whole row to. */
static const char *const row_casts[] = {
    "text", "varchar", "bpchar", "name", "char", "json", "jsonb", "xml", "bytea",
};

/* System columns: q.ctid is a column of any table q, never a call. */
static const char *const system_columns[] = {"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"};

/* Could x applied to a whole row be a call: a function or type of whole rows (the catalog's,
 * ours, a masked table's row type)? */
static bool applies_to_rows(const struct ctx *c, const char *x)
{
    return nameset_has(&c->row_calls, x) || in_list(row_functions, COUNT(row_functions), x) ||
           in_list(row_casts, COUNT(row_casts), x) || msql_is_masked_table(c, x);
}

/* Does x pass the constraints of the FROM items named like q themselves? */
static bool meets(const struct ctx *c, const struct rowinfo *q, const char *x)
{
    return (!(q->masked_table || q->wide) || nameset_has(&c->table_cols, x)) &&
           (!q->listed || nameset_has(&q->cols, x));
}

/* Is x known to be a column of every FROM item named like q (and of what its aliases name)? */
static bool is_column_of(const struct ctx *c, const struct rowinfo *q, const char *x)
{
    if (q->opaque || !meets(c, q, x))
        return false;
    for (size_t i = 0; i < q->n_links; i++) {
        const struct rowinfo *named = rowmap_get(&c->quals, q->links[i]);
        if (named && !meets(c, named, x))
            return false;
    }
    return true;
}

/* qual.x where qual names a FROM item: PostgreSQL reads it as the call x(qual) of the whole row
 * when x is not a column of qual. Could it be one, in a statement over a masked table? Over a
 * masked table, with the catalog's columns known, any other name is taken for a call. */
bool msql_is_row_call(const struct ctx *c, const char *qual, const char *x)
{
    const struct rowinfo *q = c->table && x ? rowmap_get(&c->quals, qual) : NULL;
    if (!q)
        return false;
    if (applies_to_rows(c, x))
        return !is_column_of(c, q, x);
    return q->masked_table && c->p->n_table_columns > 0 &&
           !in_list(system_columns, COUNT(system_columns), x) && !is_column_of(c, q, x);
}
