/* masksql.c: the masking guard's entry point: parses the text, gathers each statement's names
 * (masksql_scope.c) and walks its parse tree, passing each node's position down, to the rules
 * for a query's shape (masksql_query.c), expressions and predicates (masksql_expr.c), statements
 * that run queries or write rows (masksql_dml.c) and what a masked client may not run at all
 * (masksql_stmt.c); repeats the walk while aliases of masked columns turn up; and keeps the
 * bounded LRU cache of verdicts by (policy, statement text). */
#include "masksql.h"

#include <pg_query/pg_query.pb-c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "masksql_int.h"
#include "sqlinfo.h"
#include "textcache.h"

/* Rounds of alias discovery: each one repeats the whole check with the names learnt so far. */
#define MAX_PASSES 16
/* Statements longer than this are checked every time rather than cached. */
#define CACHE_MAX_TEXT 8192

/* Refuses with fmt; the first reason is kept. */
__attribute__((format(printf, 2, 3))) void msql_refuse(struct ctx *c, const char *fmt, ...)
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
void msql_learn(struct ctx *c, struct nameset *s, const char *name)
{
    int r = name && *name ? nameset_add(s, name) : 0;
    if (r < 0)
        msql_refuse(c, WHY_MEMORY);
    else if (r > 0)
        c->grew = true;
}

bool msql_is_masked(const struct ctx *c, const char *name)
{
    return in_list(c->p->columns, c->p->n_columns, name) || nameset_has(&c->aliases, name);
}

bool msql_is_masked_table(const struct ctx *c, const char *name)
{
    return in_list(c->p->tables, c->p->n_tables, name);
}

bool msql_is_newer_relation(const struct ctx *c, const char *schema, const char *name)
{
    if (!c->p->relations)
        return false;
    if (!schema || !*schema)
        return !in_list(c->p->relations, c->p->n_relations, name);
    /* (the catalog lists each relation also as schema, \x01, name: maskcat.c) */
    char qualified[2 * 64 + 2];
    int n = snprintf(qualified, sizeof(qualified), "%s\x01%s", schema, name);
    return n < 0 || (size_t)n >= sizeof(qualified) ||
           !in_list(c->p->relations, c->p->n_relations, qualified);
}

void msql_refuse_newer(struct ctx *c)
{
    c->out->stale_catalog = true;
    msql_refuse(c, WHY_NEWER_RELATION, c->new_rel);
}

void msql_note_newer(struct ctx *c, const char *name)
{
    for (int i = 0; i < c->n_newer; i++)
        if (strcmp(c->newer[i], name) == 0)
            return;
    if (c->n_newer < (int)(sizeof(c->newer) / sizeof(c->newer[0])))
        c->newer[c->n_newer++] = name;
    else
        c->newer_lost = true;
}

/* c->new_rel from the names collected: the first newer relation that is no CTE; when some
 * were not kept, the first of all (conservatively: a lost one may be a relation). */
static void find_new_rel(struct ctx *c)
{
    c->new_rel = NULL;
    for (int i = 0; i < c->n_newer && !c->new_rel; i++)
        if (!nameset_has(&c->ctes, c->newer[i]))
            c->new_rel = c->newer[i];
    if (!c->new_rel && c->newer_lost)
        c->new_rel = c->newer[0];
}

bool msql_enter(struct ctx *c)
{
    if (++c->depth <= MAX_DEPTH)
        return true;
    msql_refuse(c, WHY_COMPLEX);
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
void msql_each_child(struct ctx *c, const ProtobufCMessage *m, unsigned flags, visit_fn fn)
{
    struct each e = {c, flags, fn};
    sqlinfo_each_child(m, each_one, &e);
}

static const struct {
    const ProtobufCMessageDescriptor *d;
    visit_fn fn;
} handlers[] = {
    {&pg_query__func_call__descriptor, msql_check_func_call},
    {&pg_query__sub_link__descriptor, msql_check_sublink},
    {&pg_query__a__indirection__descriptor, msql_check_indirection},
    {&pg_query__window_def__descriptor, msql_check_window_def},
    {&pg_query__range_var__descriptor, msql_check_range_var},
    {&pg_query__range_subselect__descriptor, msql_check_range_subselect},
    {&pg_query__common_table_expr__descriptor, msql_check_cte},
    {&pg_query__with_clause__descriptor, msql_check_with},
    {&pg_query__join_expr__descriptor, msql_check_join},
    {&pg_query__insert_stmt__descriptor, msql_check_insert},
    {&pg_query__update_stmt__descriptor, msql_check_update},
    {&pg_query__delete_stmt__descriptor, msql_check_delete},
    {&pg_query__merge_stmt__descriptor, msql_check_merge},
    {&pg_query__copy_stmt__descriptor, msql_check_copy},
    {&pg_query__create_table_as_stmt__descriptor, msql_check_create_table_as},
    {&pg_query__declare_cursor_stmt__descriptor, msql_check_declare},
    {&pg_query__prepare_stmt__descriptor, msql_check_prepare},
    {&pg_query__explain_stmt__descriptor, msql_check_explain},
};

static visit_fn handler_of(const ProtobufCMessageDescriptor *d)
{
    for (size_t i = 0; i < COUNT(handlers); i++)
        if (handlers[i].d == d)
            return handlers[i].fn;
    return NULL;
}

/* Checks m in position flags: statements a masked client may not run are refused
 * (msql_check_statement_rules); nodes with rules of their own go to their handler; any other is
 * an expression (msql_check_expression). */
static void dispatch(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    visit_fn fn = handler_of(d);
    msql_check_statement_rules(c, m);
    if (c->out->refuse)
        return;
    if (d == &pg_query__select_stmt__descriptor)
        msql_check_select(c, (const PgQuery__SelectStmt *)m, SEL_PLAIN, flags & SCOPE);
    else if (fn)
        fn(c, m, flags);
    else
        msql_check_expression(c, m, flags);
}

void msql_check(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    if (!m || c->out->refuse)
        return;
    if (msql_enter(c))
        dispatch(c, m, flags);
    c->depth--;
}

/* ---- driver ---- */

static void reset_statement(struct ctx *c)
{
    nameset_clear(&c->aliases);
    nameset_clear(&c->rows);
    nameset_clear(&c->ctes);
    rowmap_clear(&c->quals);
    c->table = NULL;
    c->n_newer = 0;
    c->newer_lost = false;
    c->new_rel = NULL;
    c->depth = 0;
}

/* Adds the LIKE parameters of the statement just checked to the text's (refused past
 * MASKLIKE_PARAMS: they are tests too, which a text makes fewer of). */
static void note_like_params(struct ctx *c)
{
    struct masklike *out = &c->out->like;
    for (unsigned i = 0; i < c->like.n && !c->out->refuse; i++)
        if (!masklike_add(out, c->like.param[i]))
            msql_refuse(c, WHY_LIKE_PARAMS, MASKLIKE_PARAMS);
}

/* One statement: its names first, then the check, repeated while aliases of masked columns
 * turn up (a rename may be seen after its use), until no set grows; the last pass's tests of
 * masked columns count towards the text's. The statement itself is a query whose WHERE, ON
 * and HAVING may test (when it is a SELECT, UPDATE or DELETE, or runs one now). */
static void check_statement(struct ctx *c, const PgQuery__Node *st)
{
    reset_statement(c);
    msql_collect(c, &st->base, 0);
    find_new_rel(c);
    for (int pass = 0; !c->out->refuse; pass++) {
        if (pass == MAX_PASSES) {
            msql_refuse(c, WHY_COMPLEX);
            break;
        }
        c->grew = false;
        c->depth = 0;
        c->tests = 0;
        c->like.n = 0;
        msql_check_query(c, st, SCOPE_TESTS);
        if (!c->grew)
            break;
    }
    c->tests_done += c->tests;
    note_like_params(c);
    reset_statement(c);
}

/* The policy's catalog lists, hashed for the many look-ups of a statement. */
static void hash_policy(struct ctx *c)
{
    const struct masksql_policy *p = c->p;
    if (nameset_add_list(&c->row_calls, p->row_functions, p->n_row_functions) < 0 ||
        nameset_add_list(&c->table_cols, p->table_columns, p->n_table_columns) < 0)
        msql_refuse(c, WHY_MEMORY);
}

void masksql_check(const char *sql, const struct masksql_policy *p, struct masksql_verdict *out)
{
    struct ctx c = {.p = p, .out = out};
    memset(out, 0, sizeof(*out));
    hash_policy(&c);
    char err[240];
    PgQuery__ParseResult *tree = sqlinfo_parse(sql, err, sizeof(err));
    if (!tree)
        /* worded as the RLS guard's: policy.c keeps the parser's text (it may quote a
         * literal) out of the log by this wording */
        msql_refuse(&c, "statement refused: lakeproxy could not parse it (%.200s)", err);
    for (size_t i = 0; tree && i < tree->n_stmts && !out->refuse; i++)
        if (tree->stmts[i] && tree->stmts[i]->stmt)
            check_statement(&c, tree->stmts[i]->stmt);
    out->tests = c.tests_done; /* when refused: those counted up to the refusal */
    sqlinfo_free_tree(tree);
    nameset_clear(&c.row_calls);
    nameset_clear(&c.table_cols);
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

const struct masksql_verdict *masksql_cache_find(struct masksql_cache *mc, const char *sql,
                                                 uint64_t policy_id)
{
    return textcache_get(mc->tc, policy_id, sql, strlen(sql));
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
