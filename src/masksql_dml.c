/* masksql_dml.c: the masking guard's rules for statements that run a query or write rows:
 * INSERT (no masked column written, ON CONFLICT only on unmasked columns), UPDATE, DELETE,
 * MERGE, COPY (only unmasked columns, either way), CREATE TABLE AS, DECLARE, PREPARE (no tests
 * of masked columns) and EXPLAIN, with the positions they give their clauses. */
#include "masksql_int.h"

#define WHY_COPY                                                                                   \
    "COPY of table \"%.63s\" TO is not allowed: COPY output is not masked; list only unmasked "    \
    "columns, as in COPY %.63s (id) TO STDOUT, or use SELECT"
#define WHY_CONFLICT                                                                               \
    "INSERT ... ON CONFLICT into table \"%.63s\" may test the new rows against its masked "        \
    "columns (a unique index on them), many guesses at once: name only unmasked columns as the "   \
    "conflict target, as in ON CONFLICT (id)"
#define WHY_CTAS_EXECUTE                                                                           \
    "CREATE TABLE AS EXECUTE is not allowed for clients with masked columns: the prepared "        \
    "statement may select masked columns; use CREATE TABLE AS SELECT with the columns named"
#define WHY_WRITE "column \"%.63s\" of table \"%.63s\" is written here" WRITE_TAIL
#define WHY_WRITE_ALL "INSERT into table \"%.63s\" without a column list" WRITE_TAIL
#define WHY_WRITE_MERGE "MERGE into table \"%.63s\" may write its masked columns" WRITE_TAIL
#define WHY_WRITE_COPY                                                                             \
    "COPY into table \"%.63s\" without a column list of only unmasked columns" WRITE_TAIL
#define WHY_PREPARE_TESTS                                                                          \
    "PREPARE of a statement that tests masked column \"%.63s\" is not allowed: prepare "           \
    "statements that test masked columns through the protocol (Parse), not SQL PREPARE"

/* Does ON CONFLICT arbitrate only on unique indexes of unmasked columns (an explicit list of
 * them)? Without a target, or with a constraint's name or an expression, it may arbitrate on a
 * masked column's index, and RETURNING or DO UPDATE then tells which of many guessed values
 * exist. */
static bool conflicts_on_unmasked(const struct ctx *c, const PgQuery__OnConflictClause *oc)
{
    const PgQuery__InferClause *in = oc->infer;
    if (!in || (in->conname && *in->conname) || in->n_index_elems == 0)
        return false;
    for (size_t i = 0; i < in->n_index_elems; i++) {
        const PgQuery__Node *n = in->index_elems[i];
        const PgQuery__IndexElem *e =
            n && n->node_case == PG_QUERY__NODE__NODE_INDEX_ELEM ? n->index_elem : NULL;
        if (!e || e->expr || !e->name || msql_is_masked(c, e->name))
            return false;
    }
    return true;
}

/* The masked column a list of SET or INSERT targets (ResTargets) names, or NULL. */
static const char *written_masked(const struct ctx *c, PgQuery__Node *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const PgQuery__Node *t = v[i];
        const char *name =
            t && t->node_case == PG_QUERY__NODE__NODE_RES_TARGET ? t->res_target->name : NULL;
        if (name && msql_is_masked(c, name))
            return name;
    }
    return NULL;
}

/* Refuses writing a masked column of rel (a masked table) through the targets v (n of them). */
static void check_written(struct ctx *c, const char *rel, PgQuery__Node *const *v, size_t n)
{
    const char *col = rel && msql_is_masked_table(c, rel) ? written_masked(c, v, n) : NULL;
    if (col)
        msql_refuse(c, WHY_WRITE, col, rel);
}

void msql_check_insert(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__InsertStmt *s = (const PgQuery__InsertStmt *)m;
    unsigned under = flags & STICKY;
    const char *target = s->relation ? s->relation->relname : NULL;
    if (target && msql_is_masked_table(c, target) && s->n_cols == 0) /* every column, DEFAULT too */
        msql_refuse(c, WHY_WRITE_ALL, target);
    check_written(c, target, s->cols, s->n_cols);
    if (s->on_conflict_clause)
        check_written(c, target, s->on_conflict_clause->target_list,
                      s->on_conflict_clause->n_target_list);
    if (s->with_clause)
        msql_check(c, &s->with_clause->base, flags & SCOPE);
    if (s->relation)
        msql_check(c, &s->relation->base, under);
    check_list(c, s->cols, s->n_cols, under);     /* names written: only their subscripts read */
    check_node(c, s->select_stmt, flags & SCOPE); /* a plain SELECT: its values are stored */
    const PgQuery__OnConflictClause *oc = s->on_conflict_clause;
    if (oc && target && msql_is_masked_table(c, target) && !conflicts_on_unmasked(c, oc))
        msql_refuse(c, WHY_CONFLICT, target);
    if (oc) { /* predicates, but no place for tests */
        if (oc->infer)
            msql_check(c, &oc->infer->base, under);
        check_list(c, oc->target_list, oc->n_target_list, under);
        check_node(c, oc->where_clause, AT_PRED | UNDER_PRED);
    }
    check_list(c, s->returning_list, s->n_returning_list, under);
}

void msql_check_update(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__UpdateStmt *s = (const PgQuery__UpdateStmt *)m;
    unsigned under = flags & STICKY;
    /* SET (a, b) = ... is a target per column */
    check_written(c, s->relation ? s->relation->relname : NULL, s->target_list, s->n_target_list);
    if (s->with_clause)
        msql_check(c, &s->with_clause->base, flags & SCOPE);
    if (s->relation)
        msql_check(c, &s->relation->base, under);
    check_list(c, s->from_clause, s->n_from_clause, flags & SCOPE);
    check_list(c, s->target_list, s->n_target_list, under); /* SET names are written, not read */
    check_node(c, s->where_clause, msql_filter_flags(flags));
    check_list(c, s->returning_list, s->n_returning_list, under);
}

void msql_check_delete(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__DeleteStmt *s = (const PgQuery__DeleteStmt *)m;
    unsigned under = flags & STICKY;
    if (s->with_clause)
        msql_check(c, &s->with_clause->base, flags & SCOPE);
    if (s->relation)
        msql_check(c, &s->relation->base, under);
    check_list(c, s->using_clause, s->n_using_clause, flags & SCOPE);
    check_node(c, s->where_clause, msql_filter_flags(flags));
    check_list(c, s->returning_list, s->n_returning_list, under);
}

/* MERGE's conditions are predicates, but no place for tests (nor are its subqueries'). */
void msql_check_merge(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__MergeStmt *s = (const PgQuery__MergeStmt *)m;
    unsigned under = flags & STICKY;
    if (s->relation && s->relation->relname && msql_is_masked_table(c, s->relation->relname))
        msql_refuse(c, WHY_WRITE_MERGE, s->relation->relname);
    if (s->with_clause)
        msql_check(c, &s->with_clause->base, under);
    if (s->relation)
        msql_check(c, &s->relation->base, under);
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
        if (!str_of(s->attlist[i]) || msql_is_masked(c, str_of(s->attlist[i])))
            return false;
    return true;
}

/* COPY ... TO sends rows outside DataRow (unmasked); COPY ... FROM only writes (its WHERE
 * filters the rows sent: no place for tests). A server file or program is refused by
 * refused_run. */
void msql_check_copy(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__CopyStmt *s = (const PgQuery__CopyStmt *)m;
    const char *rel = s->relation ? s->relation->relname : NULL;
    if (rel && msql_is_masked_table(c, rel) && !copies_unmasked_columns(c, s)) {
        if (s->is_from)
            msql_refuse(c, WHY_WRITE_COPY, rel);
        else
            msql_refuse(c, WHY_COPY, rel, rel);
    }
    if (!s->is_from && c->new_rel) /* its rows carry no column origins for the wire to mask */
        msql_refuse_newer(c);
    if (s->relation)
        msql_check(c, &s->relation->base, flags & STICKY);
    check_node(c, s->query, flags & SCOPE); /* its SELECT is no output position */
    check_node(c, s->where_clause, AT_PRED | UNDER_PRED);
}

void msql_check_create_table_as(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const PgQuery__CreateTableAsStmt *s = (const PgQuery__CreateTableAsStmt *)m;
    if (s->query && s->query->node_case == PG_QUERY__NODE__NODE_EXECUTE_STMT)
        msql_refuse(c, WHY_CTAS_EXECUTE);
    check_node(c, s->query, flags & SCOPE); /* run once, now: its tests are counted */
    if (s->into)
        msql_check(c, &s->into->base, flags & STICKY);
}

void msql_check_declare(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    msql_check_query(c, ((const PgQuery__DeclareCursorStmt *)m)->query, flags);
}

/* SQL PREPARE of a statement that tests masked columns: each EXECUTE would test them again
 * unseen (the proxy counts tests per execution only of statements prepared by Parse). */
void msql_check_prepare(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    int before = c->tests;
    msql_check_query(c, ((const PgQuery__PrepareStmt *)m)->query, flags);
    if (c->tests > before)
        msql_refuse(c, WHY_PREPARE_TESTS, c->tested ? c->tested : "?");
}

void msql_check_explain(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    msql_check_query(c, ((const PgQuery__ExplainStmt *)m)->query, flags);
}
