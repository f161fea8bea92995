/* sqlinfo.c: libpg_query's protobuf parse tree, walked generically through protobuf-c's
 * descriptors: every message field, repeated or not, set member of a oneof or not. */
#include "sqlinfo.h"

#include <ctype.h>
#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sqlkey.h"
#include "sqllex.h"
#include "textscan.h"

/* Parse trees of hostile text can be deep ("((((...))))"); the parser has its own limit
 * (max_stack_depth); this one bounds our recursion independently. */
#define WALK_MAX_DEPTH SQLINFO_MAX_DEPTH

/* Is field f of m set? Only the member of a oneof named by its case field is. */
static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
        return true;
    uint32_t which = *(const uint32_t *)((const char *)m + f->quantifier_offset);
    return which == f->id;
}

void sqlinfo_each_child(const ProtobufCMessage *m, sqlinfo_visit_fn fn, void *arg)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE || !field_present(m, f))
            continue;
        const char *at = (const char *)m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            ProtobufCMessage *const *items = *(ProtobufCMessage *const *const *)at;
            for (size_t k = 0; k < n; k++)
                if (items[k])
                    fn(arg, items[k]);
        } else if (*(ProtobufCMessage *const *)at) {
            fn(arg, *(ProtobufCMessage *const *)at);
        }
    }
}

struct walk {
    sqlinfo_visit_fn visit;
    void *arg;
    int depth;
    bool too_deep;
};

static void walk_node(void *arg, const ProtobufCMessage *m)
{
    struct walk *w = arg;
    if (w->too_deep || ++w->depth > WALK_MAX_DEPTH) {
        w->too_deep = true;
        w->depth--;
        return;
    }
    w->visit(w->arg, m);
    sqlinfo_each_child(m, walk_node, w);
    w->depth--;
}

/* Visits m and everything under it, parents first; false when deeper than WALK_MAX_DEPTH. */
static bool walk(const ProtobufCMessage *m, sqlinfo_visit_fn visit, void *arg, int depth)
{
    struct walk w = {visit, arg, depth, false};
    if (m)
        walk_node(&w, m);
    return !w.too_deep;
}

/* Reads a varint at *p (before end); false when it runs past end or over 10 bytes. */
static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    *out = 0;
    for (int shift = 0; shift < 70 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *out |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

/* How deeply messages nest in packed protobuf data of descriptor d, measured without
 * recursion (protobuf-c's unpack recurses once per level and would overflow the stack on a
 * hostile statement such as 5,000 NOTs): SQLINFO_MAX_DEPTH + 1 when deeper or malformed. */
static int packed_depth(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len)
{
    struct {
        const ProtobufCMessageDescriptor *d;
        const uint8_t *end;
    } stack[SQLINFO_MAX_DEPTH + 1];
    int top = 0, deepest = 0;
    stack[0].d = d;
    stack[0].end = p + len;
    while (top >= 0) {
        if (p >= stack[top].end) {
            top--;
            continue;
        }
        uint64_t key, v;
        if (!read_varint(&p, stack[top].end, &key))
            return SQLINFO_MAX_DEPTH + 1;
        switch (key & 7) {
        case 0:
            if (!read_varint(&p, stack[top].end, &v))
                return SQLINFO_MAX_DEPTH + 1;
            break;
        case 1: p += 8; break;
        case 5: p += 4; break;
        case 2: {
            if (!read_varint(&p, stack[top].end, &v) || v > (uint64_t)(stack[top].end - p))
                return SQLINFO_MAX_DEPTH + 1;
            const ProtobufCFieldDescriptor *f =
                protobuf_c_message_descriptor_get_field(stack[top].d, (unsigned)(key >> 3));
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (++top > SQLINFO_MAX_DEPTH)
                    return SQLINFO_MAX_DEPTH + 1;
                stack[top].d = f->descriptor;
                stack[top].end = p + v;
                deepest = top > deepest ? top : deepest;
            } else {
                p += v;
            }
            break;
        }
        default: return SQLINFO_MAX_DEPTH + 1;
        }
        if (p > stack[top].end)
            return SQLINFO_MAX_DEPTH + 1;
    }
    return deepest;
}

/* ---- a bound on nesting, read from the text before it is parsed ---- */

/* libpg_query turns its tree into protobuf by recursion, one call per level, and protobuf-c
 * sizes each level's children again at every level above: a chain of 25,000 "+1" overflows the
 * stack, and 20,000 take most of a second on the event loop, before packed_depth can look.
 * So the text is read first, as PostgreSQL's lexer reads it, for how deeply its parse tree
 * can nest. Each level of parentheses, brackets or CASE counts one, and within a level:
 *   - every operator (every + and - of a run of operator characters, which PostgreSQL's
 *     lexer splits off), and every word that nests an operand (NOT, IS, COLLATE, AT, LIKE ...),
 *     counts one, until a comma, AND or OR (PostgreSQL flattens their chains into lists) or a
 *     WHEN, THEN or ELSE starts the level's count of them afresh (not after a '.': t.and is a
 *     name);
 *   - a level that closes counts, in the enclosing one, as much as it held at most: its
 *     depth adds to the chain it is an operand of;
 *   - UNION, INTERSECT, EXCEPT and JOIN count one until the level closes (their chains nest
 *     across commas: SELECT 1, 2 UNION SELECT 3, 4 UNION ...), or the statement ends.
 * The count is at least the depth of the tree's expressions; each counted unit takes from
 * two protobuf levels (an operator) to about six (a subquery), so a text within
 * SQLINFO_MAX_DEPTH / 2 stays some thousands of levels deep, far from the tens of thousands
 * that overflow the stack (packed_depth then refuses past SQLINFO_MAX_DEPTH after all). A string's
 * end depends on whether backslashes escape in it (standard_conforming_strings, and E''): the text
 * is read both ways and the larger count taken. */
#define NEST_MAX (SQLINFO_MAX_DEPTH / 2)

static bool is_operator_byte(char c)
{
    return c && strchr("+-*/<>=~!@#%^&|`?:", c) != NULL;
}

enum word_effect { W_NONE, W_NESTS, W_CHAINS, W_RESTARTS, W_OPENS, W_CLOSES };

static enum word_effect word_effect(const char *w, size_t n)
{
    static const char *const nests[] = {
        "not",    "is",      "isnull",  "notnull", "collate", "at",       "like",
        "ilike",  "similar", "between", "in",      "escape",  "overlaps", "operator",
        "exists", "any",     "all",     "some",    "array",   "row",      "distinct"};
    static const char *const chains[] = {"union", "intersect", "except", "join"};
    static const char *const restarts[] = {"and", "or", "when", "then", "else"};
    char low[12];
    if (n >= sizeof(low))
        return W_NONE;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)(w[i] >= 'A' && w[i] <= 'Z' ? w[i] - 'A' + 'a' : w[i]);
    low[n] = '\0';
    if (strcmp(low, "case") == 0)
        return W_OPENS;
    if (strcmp(low, "end") == 0)
        return W_CLOSES;
    for (size_t i = 0; i < sizeof(nests) / sizeof(nests[0]); i++)
        if (strcmp(low, nests[i]) == 0)
            return W_NESTS;
    for (size_t i = 0; i < sizeof(chains) / sizeof(chains[0]); i++)
        if (strcmp(low, chains[i]) == 0)
            return W_CHAINS;
    for (size_t i = 0; i < sizeof(restarts) / sizeof(restarts[0]); i++)
        if (strcmp(low, restarts[i]) == 0)
            return W_RESTARTS;
    return W_NONE;
}

/* The running count: per open level, what counts until it restarts (run) and until it
 * closes (fixed); their sum over the levels open, and the most it reached. */
struct nest {
    int run[NEST_MAX + 2], fixed[NEST_MAX + 2], peak[NEST_MAX + 2];
    int betweens[NEST_MAX + 2]; /* BETWEENs whose AND is still to come (it nests, not lists) */
    int level;
    int sum, most;
    bool escapes;      /* backslashes escape in every string (the other reading) */
    const char *start; /* the text's first byte */
};

/* Counts k more at the current level, in what restarts (run) or not (fixed). */
static void nest_add(struct nest *n, int *counter, int k)
{
    *counter += k;
    n->sum += k;
    int here = n->run[n->level] + n->fixed[n->level];
    if (here > n->peak[n->level])
        n->peak[n->level] = here;
    if (n->sum > n->most)
        n->most = n->sum;
}

/* Opens a level (a parenthesis, a bracket, CASE); past NEST_MAX, the text is too deep. */
static void nest_open(struct nest *n)
{
    if (n->level > NEST_MAX) {
        n->most = NEST_MAX + 1;
        return;
    }
    n->level++;
    n->run[n->level] = n->fixed[n->level] = n->peak[n->level] = n->betweens[n->level] = 0;
    n->sum++;
    if (n->sum > n->most)
        n->most = n->sum;
}

/* Closes a level: what it held is an operand of the enclosing chain, whose depth adds to
 * that chain's (((1+1)+1)+1 nests as deep as its three levels together). */
static void nest_close(struct nest *n)
{
    if (n->level == 0)
        return; /* (unbalanced: the parser will say so) */
    int inner = n->peak[n->level] + 1;
    n->sum -= n->run[n->level] + n->fixed[n->level] + 1;
    n->level--;
    nest_add(n, &n->run[n->level], inner);
}

static void nest_restart(struct nest *n, bool statement_ends)
{
    n->sum -= n->run[n->level];
    n->run[n->level] = 0;
    if (statement_ends && n->level == 0) {
        n->sum -= n->fixed[0];
        n->fixed[0] = 0;
        n->peak[0] = 0;
    }
}

/* Does the word at w follow a '.' (a qualified name: t.end, t.and are names, not keywords)? */
static bool after_dot(const struct nest *n, const char *w)
{
    while (w > n->start && (w[-1] == ' ' || w[-1] == '\t' || w[-1] == '\r' || w[-1] == '\n'))
        w--;
    return w > n->start && w[-1] == '.';
}

/* Reads the word at p; returns where it ends. */
static const char *nest_word(struct nest *n, const char *p)
{
    const char *w = p;
    while (sqllex_word_byte(*p))
        p++;
    if (*p == '\'') /* a prefixed string (B'', X'', N''): the string is read next */
        return p;
    enum word_effect e = word_effect(w, (size_t)(p - w));
    if ((e == W_RESTARTS || e == W_CLOSES) && after_dot(n, w))
        return p; /* (only these could make the count too low; the others count more) */
    if (p - w == 7 && strncasecmp(w, "between", 7) == 0)
        n->betweens[n->level]++;
    if (e == W_RESTARTS && p - w == 3 && strncasecmp(w, "and", 3) == 0 &&
        n->betweens[n->level] > 0) { /* x BETWEEN a AND b: this AND nests */
        n->betweens[n->level]--;
        e = W_NESTS;
    }
    switch (e) {
    case W_NESTS: nest_add(n, &n->run[n->level], 1); break;
    case W_CHAINS: nest_add(n, &n->fixed[n->level], 1); break;
    case W_RESTARTS: nest_restart(n, false); break;
    case W_OPENS: nest_open(n); break;
    case W_CLOSES: nest_close(n); break;
    case W_NONE: break;
    }
    return p;
}

/* Reads one token at p into n; returns where the next one starts. */
static const char *nest_token(struct nest *n, const char *p)
{
    const char *next;
    if (*p == '\'')
        return sqllex_past_quoted(p, '\'', n->escapes);
    if (*p == '"')
        return sqllex_past_quoted(p, '"', false);
    if ((p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '*'))
        return sqllex_past_comment(p);
    if (*p == '$' && (next = sqllex_past_dollar(p)))
        return next;
    if ((*p == 'e' || *p == 'E') && p[1] == '\'')
        return sqllex_past_quoted(p + 1, '\'', true);
    if (sqllex_word_byte(*p))
        return nest_word(n, p);
    if (is_operator_byte(*p)) { /* PostgreSQL's lexer splits + and - off a run (-+-1 nests
                                   three deep): each counts, and the rest once */
        int signs = 0, others = 0;
        for (;
             is_operator_byte(*p) && !(p[0] == '-' && p[1] == '-') && !(p[0] == '/' && p[1] == '*');
             p++)
            *p == '+' || *p == '-' ? signs++ : others++;
        nest_add(n, &n->run[n->level], signs + (others > 0));
        return p;
    }
    if (*p == '(' || *p == '[')
        nest_open(n);
    else if (*p == ')' || *p == ']')
        nest_close(n);
    else if (*p == ',' || *p == ';')
        nest_restart(n, *p == ';');
    return p + 1;
}

/* The count for sql, read with backslashes escaping in every string or in E'' ones only. */
static int nesting(const char *sql, bool escapes)
{
    static _Thread_local struct nest n; /* (2 * NEST_MAX ints: not on the stack) */
    n.level = n.sum = n.most = 0;
    n.run[0] = n.fixed[0] = n.peak[0] = n.betweens[0] = 0;
    n.escapes = escapes;
    n.start = sql;
    for (const char *p = sql; *p && n.most <= NEST_MAX;)
        p = nest_token(&n, p);
    return n.most;
}

/* Can sql's parse tree nest too deeply to be packed and measured safely? */
static bool may_nest_too_deeply(const char *sql)
{
    return nesting(sql, false) > NEST_MAX || (strchr(sql, '\\') && nesting(sql, true) > NEST_MAX);
}

PgQuery__ParseResult *sqlinfo_parse(const char *sql, char *err, size_t errsz)
{
    size_t len = strlen(sql);
    if (len > SQLINFO_MAX_TEXT) {
        snprintf(err, errsz, "statement too long to analyse (%zu bytes; at most %d)", len,
                 SQLINFO_MAX_TEXT);
        return NULL;
    }
    if (may_nest_too_deeply(sql)) {
        snprintf(err, errsz,
                 "statement nested too deeply to analyse (more than %d operators or levels "
                 "in one expression)",
                 NEST_MAX);
        return NULL;
    }
    PgQueryProtobufParseResult r = pg_query_parse_protobuf(sql);
    PgQuery__ParseResult *tree = NULL;
    if (r.error)
        snprintf(err, errsz, "%s", r.error->message ? r.error->message : "syntax error");
    else if (packed_depth(&pg_query__parse_result__descriptor, (const uint8_t *)r.parse_tree.data,
                          r.parse_tree.len) > SQLINFO_MAX_DEPTH)
        snprintf(err, errsz, "statement nested too deeply (more than %d levels)",
                 SQLINFO_MAX_DEPTH);
    else if (!(tree = pg_query__parse_result__unpack(NULL, r.parse_tree.len,
                                                     (const uint8_t *)r.parse_tree.data)))
        snprintf(err, errsz, "could not read the parse tree");
    pg_query_free_protobuf_parse_result(r);
    return tree;
}

void sqlinfo_free_tree(PgQuery__ParseResult *tree)
{
    if (tree)
        pg_query__parse_result__free_unpacked(tree, NULL);
}

bool sqlinfo_walk(const char *sql, sqlinfo_visit_fn visit, void *arg, char *err, size_t errsz)
{
    PgQuery__ParseResult *tree = sqlinfo_parse(sql, err, errsz);
    bool ok = tree && walk(&tree->base, visit, arg, 0);
    if (tree && !ok)
        snprintf(err, errsz, "statement nested too deeply");
    sqlinfo_free_tree(tree);
    return ok;
}

/* ---- analysis for statistics ---- */

const char *sql_kind_name(enum sql_kind k)
{
    static const char *const names[] = {"select", "insert", "update",      "delete",  "merge",
                                        "copy",   "ddl",    "transaction", "utility", "unknown"};
    return k <= SQL_UNKNOWN ? names[k] : "unknown";
}

/* Aggregate functions of core PostgreSQL that federation pushes down. */
static bool is_aggregate(const char *name)
{
    static const char *const aggs[] = {
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "array_agg",
        "string_agg",
        "bool_and",
        "bool_or",
        "every",
        "stddev",
        "stddev_pop",
        "stddev_samp",
        "variance",
        "var_pop",
        "var_samp",
        "json_agg",
        "jsonb_agg",
        "json_object_agg",
        "jsonb_object_agg",
        "percentile_cont",
        "percentile_disc",
        "mode",
        "corr",
        "covar_pop",
        "covar_samp",
        "bit_and",
        "bit_or",
        "xmlagg",
    };
    for (size_t i = 0; i < sizeof(aggs) / sizeof(aggs[0]); i++)
        if (strcmp(name, aggs[i]) == 0)
            return true;
    return false;
}

/* Adds name to a bounded list of distinct strings. */
static void add_name(char **list, int *n, const char *name)
{
    for (int i = 0; i < *n; i++)
        if (strcmp(list[i], name) == 0)
            return;
    if (*n < SQLINFO_MAX_NAMES && (list[*n] = strdup(name)))
        (*n)++;
}

struct analysis_walk {
    struct sql_analysis *a;
    bool ddl;                            /* names in DDL are objects, not tables read */
    const PgQuery__RangeVar *targets[4]; /* relations written */
    size_t n_targets;
    char *ctes[SQLINFO_MAX_NAMES]; /* WITH names: not tables */
    int n_ctes;
};

static void table_name(const PgQuery__RangeVar *r, char *out, size_t outsz)
{
    if (r->schemaname && *r->schemaname)
        snprintf(out, outsz, "%s.%s", r->schemaname, r->relname);
    else
        snprintf(out, outsz, "%s", r->relname ? r->relname : "");
}

static void note_range_var(struct analysis_walk *w, const PgQuery__RangeVar *r)
{
    char name[160];
    if (!r->relname || !*r->relname || w->ddl)
        return;
    for (size_t i = 0; i < w->n_targets; i++)
        if (w->targets[i] == r)
            return;
    for (int i = 0; i < w->n_ctes; i++)
        if ((!r->schemaname || !*r->schemaname) && strcmp(w->ctes[i], r->relname) == 0)
            return;
    table_name(r, name, sizeof(name));
    add_name(w->a->read, &w->a->n_read, name);
}

static void note_func(struct analysis_walk *w, const PgQuery__FuncCall *f)
{
    if (f->n_funcname == 0 || f->over)
        return;
    const PgQuery__Node *last = f->funcname[f->n_funcname - 1];
    if (f->agg_star || (last->node_case == PG_QUERY__NODE__NODE_STRING && last->string->sval &&
                        is_aggregate(last->string->sval)))
        w->a->pd.aggregates++;
}

static void analysis_visit(void *arg, const ProtobufCMessage *m)
{
    struct analysis_walk *w = arg;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__range_var__descriptor)
        note_range_var(w, (const PgQuery__RangeVar *)m);
    else if (d == &pg_query__func_call__descriptor)
        note_func(w, (const PgQuery__FuncCall *)m);
    else if (d == &pg_query__join_expr__descriptor)
        w->a->pd.joins++;
}

/* WITH names, gathered before the tables (a reference may come before its definition). */
static void cte_visit(void *arg, const ProtobufCMessage *m)
{
    struct analysis_walk *w = arg;
    if (m->descriptor == &pg_query__common_table_expr__descriptor &&
        ((const PgQuery__CommonTableExpr *)m)->ctename && w->n_ctes < SQLINFO_MAX_NAMES)
        w->ctes[w->n_ctes++] = ((const PgQuery__CommonTableExpr *)m)->ctename;
}

/* Column names under a predicate. */
static void column_visit(void *arg, const ProtobufCMessage *m)
{
    struct sql_pushdown *pd = arg;
    if (m->descriptor != &pg_query__column_ref__descriptor)
        return;
    const PgQuery__ColumnRef *c = (const PgQuery__ColumnRef *)m;
    const PgQuery__Node *last = c->n_fields ? c->fields[c->n_fields - 1] : NULL;
    if (last && last->node_case == PG_QUERY__NODE__NODE_STRING && last->string->sval)
        add_name(pd->cols, &pd->n_cols, last->string->sval);
}

/* Counts the AND-ed terms of a condition and notes the columns they name. */
static void count_predicates(struct sql_pushdown *pd, const PgQuery__Node *n)
{
    if (!n)
        return;
    if (n->node_case == PG_QUERY__NODE__NODE_BOOL_EXPR &&
        n->bool_expr->boolop == PG_QUERY__BOOL_EXPR_TYPE__AND_EXPR) {
        for (size_t i = 0; i < n->bool_expr->n_args; i++)
            count_predicates(pd, n->bool_expr->args[i]);
        return;
    }
    pd->predicates++;
    walk(&n->base, column_visit, pd, 0);
}

/* JOIN ... ON conditions anywhere in a FROM list. */
static void join_quals_visit(void *arg, const ProtobufCMessage *m)
{
    if (m->descriptor == &pg_query__join_expr__descriptor)
        count_predicates(arg, ((const PgQuery__JoinExpr *)m)->quals);
}

static void select_features(struct sql_pushdown *pd, const PgQuery__SelectStmt *s)
{
    if (!s)
        return;
    if (s->op != PG_QUERY__SET_OPERATION__SETOP_NONE && s->op != 0) {
        select_features(pd, s->larg);
        select_features(pd, s->rarg);
    }
    count_predicates(pd, s->where_clause);
    pd->filters = pd->predicates;
    for (size_t i = 0; i < s->n_from_clause; i++)
        walk(&s->from_clause[i]->base, join_quals_visit, pd, 0);
    if (s->n_from_clause > 1)
        pd->joins += (int)s->n_from_clause - 1;
    pd->limit |= s->limit_count != NULL;
    pd->offset |= s->limit_offset != NULL;
    pd->group_by |= s->n_group_clause > 0;
    pd->order_by |= s->n_sort_clause > 0;
    pd->distinct |= s->n_distinct_clause > 0;
}

/* Kind, write targets and top-level pushdown features of the first statement. */
static void statement_features(struct analysis_walk *w, const PgQuery__Node *st)
{
    struct sql_analysis *a = w->a;
    switch (st->node_case) {
    case PG_QUERY__NODE__NODE_SELECT_STMT:
        a->kind = SQL_SELECT;
        if (st->select_stmt->into_clause && st->select_stmt->into_clause->rel)
            w->targets[w->n_targets++] = st->select_stmt->into_clause->rel;
        select_features(&a->pd, st->select_stmt);
        break;
    case PG_QUERY__NODE__NODE_INSERT_STMT:
        a->kind = SQL_INSERT;
        w->targets[w->n_targets++] = st->insert_stmt->relation;
        break;
    case PG_QUERY__NODE__NODE_UPDATE_STMT:
        a->kind = SQL_UPDATE;
        w->targets[w->n_targets++] = st->update_stmt->relation;
        count_predicates(&a->pd, st->update_stmt->where_clause);
        break;
    case PG_QUERY__NODE__NODE_DELETE_STMT:
        a->kind = SQL_DELETE;
        w->targets[w->n_targets++] = st->delete_stmt->relation;
        count_predicates(&a->pd, st->delete_stmt->where_clause);
        break;
    case PG_QUERY__NODE__NODE_MERGE_STMT:
        a->kind = SQL_MERGE;
        w->targets[w->n_targets++] = st->merge_stmt->relation;
        break;
    case PG_QUERY__NODE__NODE_COPY_STMT:
        a->kind = SQL_COPY;
        if (st->copy_stmt->is_from && st->copy_stmt->relation)
            w->targets[w->n_targets++] = st->copy_stmt->relation;
        break;
    case PG_QUERY__NODE__NODE_TRANSACTION_STMT: a->kind = SQL_TXN; break;
    case PG_QUERY__NODE__NODE_CREATE_TABLE_AS_STMT:
        a->kind = SQL_DDL;
        if (st->create_table_as_stmt->into && st->create_table_as_stmt->into->rel)
            w->targets[w->n_targets++] = st->create_table_as_stmt->into->rel;
        break;
    case PG_QUERY__NODE__NODE_VARIABLE_SET_STMT:
    case PG_QUERY__NODE__NODE_VARIABLE_SHOW_STMT:
    case PG_QUERY__NODE__NODE_EXPLAIN_STMT:
    case PG_QUERY__NODE__NODE_PREPARE_STMT:
    case PG_QUERY__NODE__NODE_EXECUTE_STMT:
    case PG_QUERY__NODE__NODE_DEALLOCATE_STMT:
    case PG_QUERY__NODE__NODE_FETCH_STMT:
    case PG_QUERY__NODE__NODE_DECLARE_CURSOR_STMT:
    case PG_QUERY__NODE__NODE_CLOSE_PORTAL_STMT:
    case PG_QUERY__NODE__NODE_LISTEN_STMT:
    case PG_QUERY__NODE__NODE_NOTIFY_STMT:
    case PG_QUERY__NODE__NODE_UNLISTEN_STMT:
    case PG_QUERY__NODE__NODE_DISCARD_STMT:
    case PG_QUERY__NODE__NODE_CALL_STMT:
    case PG_QUERY__NODE__NODE_LOCK_STMT:
    case PG_QUERY__NODE__NODE_VACUUM_STMT: a->kind = SQL_UTILITY; break;
    default: a->kind = SQL_DDL; w->ddl = true;
    }
}

/* Tables written, named after the walk (targets are RangeVars of the tree). */
static void note_written(struct analysis_walk *w)
{
    char name[160];
    for (size_t i = 0; i < w->n_targets; i++)
        if (w->targets[i] && w->targets[i]->relname) {
            table_name(w->targets[i], name, sizeof(name));
            add_name(w->a->written, &w->a->n_written, name);
        }
}

/* Parse tree features: kind, tables, pushdown. False when the text does not parse. */
static bool tree_features(const char *sql, struct sql_analysis *a)
{
    char err[200];
    PgQuery__ParseResult *tree = sqlinfo_parse(sql, err, sizeof(err));
    bool ok = tree && tree->n_stmts > 0 && tree->stmts[0]->stmt;
    if (tree)
        a->n_stmts = (int)tree->n_stmts;
    if (ok) {
        struct analysis_walk w = {.a = a};
        const PgQuery__Node *st = tree->stmts[0]->stmt;
        statement_features(&w, st);
        walk(&st->base, cte_visit, &w, 0);
        walk(&st->base, analysis_visit, &w, 0);
        note_written(&w);
        a->pd.unfiltered =
            a->kind == SQL_SELECT && a->n_read > 0 && a->pd.filters == 0 && !a->pd.limit;
    } else if (tree && tree->n_stmts == 0) {
        ok = true; /* empty text: nothing to say */
        a->kind = SQL_UTILITY;
    }
    sqlinfo_free_tree(tree);
    return ok;
}

static bool is_constant_token(PgQuery__Token t)
{
    return t == PG_QUERY__TOKEN__SCONST || t == PG_QUERY__TOKEN__USCONST ||
           t == PG_QUERY__TOKEN__BCONST || t == PG_QUERY__TOKEN__XCONST ||
           t == PG_QUERY__TOKEN__ICONST || t == PG_QUERY__TOKEN__FCONST;
}

static size_t skip_blanks(const char *s, size_t len);

/* Values a utility statement may write as bare words, which are no constant tokens: where
 * SET values begin (at), and where options (DefElem: COPY's NULL, a storage parameter, a
 * locale, an extension's VERSION ...) that carry a value begin (opt); up to VALUES_MAX each. */
#define VALUES_MAX 64
struct value_words {
    int32_t at[VALUES_MAX], opt[VALUES_MAX];
    size_t n, n_opt;
    bool unsure; /* too many, or an option without a place: the text is not logged */
};

/* Notes where x goes in list (of *n, at most VALUES_MAX), or that it cannot. */
static void note_place(struct value_words *v, int32_t *list, size_t *n, int32_t x)
{
    if (*n == VALUES_MAX || x < 0)
        v->unsure = true;
    else
        list[(*n)++] = x;
}

/* Visitor: notes where each SET value (a VariableSetStmt's constants) and each option with a
 * value begins; a trigger with arguments makes the text unsure. */
static void value_word_visit(void *arg, const ProtobufCMessage *m)
{
    struct value_words *v = arg;
    if (m->descriptor == &pg_query__def_elem__descriptor) {
        const PgQuery__DefElem *d = (const PgQuery__DefElem *)m;
        if (d->arg)
            note_place(v, v->opt, &v->n_opt, d->location);
        return;
    }
    if (m->descriptor == &pg_query__create_trig_stmt__descriptor) {
        /* a trigger's arguments are strings that may be written as bare words, without a place */
        if (((const PgQuery__CreateTrigStmt *)m)->n_args > 0)
            v->unsure = true;
        return;
    }
    if (m->descriptor != &pg_query__variable_set_stmt__descriptor)
        return;
    const PgQuery__VariableSetStmt *set = (const PgQuery__VariableSetStmt *)m;
    for (size_t i = 0; i < set->n_args; i++) {
        const PgQuery__Node *a = set->args[i];
        if (a && a->node_case == PG_QUERY__NODE__NODE_A_CONST)
            note_place(v, v->at, &v->n, a->a_const->location);
    }
}

/* Is norm data manipulation (no SET statement, no options), by its first word? */
static bool is_dml(const char *norm)
{
    static const char *const words[] = {"select", "insert", "update", "delete",
                                        "values", "with",   "table",  "merge"};
    size_t i = skip_blanks(norm, strlen(norm)), n = 0;
    while (isalpha((unsigned char)norm[i + n]))
        n++;
    for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++)
        if (n == strlen(words[w]) && strncasecmp(norm + i, words[w], n) == 0)
            return true;
    return false;
}

/* Is there a ';' in scan before its last token (more than one statement, or a doubt)? */
static bool has_inner_semicolon(const PgQuery__ScanResult *scan)
{
    for (size_t i = 0; i + 1 < scan->n_tokens; i++)
        if (scan->tokens[i]->token == PG_QUERY__TOKEN__ASCII_59)
            return true;
    return false;
}

/* The values of the SET clauses and options in norm (scanned as scan), wherever they are
 * nested: the normaliser makes $n of a top-level SET's, but leaves those of ALTER SYSTEM,
 * ALTER ROLE, ALTER DATABASE and ALTER FUNCTION, and options' (COPY ... (NULL secret)), as
 * written, and a bare word (search_path = secret) is no constant token. Only one data
 * manipulation statement alone is taken as having none without a walk. False when norm cannot
 * be walked or they cannot all be placed. */
static bool find_value_words(const char *norm, const PgQuery__ScanResult *scan,
                             struct value_words *v)
{
    memset(v, 0, sizeof(*v));
    if (is_dml(norm) && !has_inner_semicolon(scan))
        return true;
    char err[200];
    PgQuery__ParseResult *tree = sqlinfo_parse(norm, err, sizeof(err));
    bool ok = tree != NULL;
    for (size_t i = 0; ok && i < tree->n_stmts; i++)
        ok = walk(&tree->stmts[i]->stmt->base, value_word_visit, v, 0);
    sqlinfo_free_tree(tree);
    return ok && !v->unsure;
}

static bool placed_at(const int32_t *list, size_t n, int32_t x)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == x)
            return true;
    return false;
}

/* Marks in scrub[] the tokens of scan that are values: constants, SET values ($n already are
 * one), and an option's value: after its name (name, or namespace.name) and any '=', up to a
 * ',' or ')' outside parentheses of its own, the next option or the end. */
static void mark_values(const PgQuery__ScanResult *scan, const struct value_words *v, bool *scrub)
{
    size_t n = scan->n_tokens;
    for (size_t i = 0; i < n; i++) {
        const PgQuery__ScanToken *t = scan->tokens[i];
        scrub[i] = scrub[i] || is_constant_token(t->token) ||
                   (t->token != PG_QUERY__TOKEN__PARAM && placed_at(v->at, v->n, t->start));
        if (!placed_at(v->opt, v->n_opt, t->start))
            continue;
        size_t k = i + 1;
        if (k + 1 < n && scan->tokens[k]->token == PG_QUERY__TOKEN__ASCII_46) /* '.' */
            k += 2;
        if (k < n && scan->tokens[k]->token == PG_QUERY__TOKEN__ASCII_61) /* '=' */
            k++;
        for (int depth = 0; k < n && !placed_at(v->opt, v->n_opt, scan->tokens[k]->start); k++) {
            PgQuery__Token tk = scan->tokens[k]->token;
            if (depth == 0 && (tk == PG_QUERY__TOKEN__ASCII_44 || tk == PG_QUERY__TOKEN__ASCII_41 ||
                               tk == PG_QUERY__TOKEN__ASCII_59)) /* ',' ')' ';' */
                break;
            depth += tk == PG_QUERY__TOKEN__ASCII_40 ? 1 : tk == PG_QUERY__TOKEN__ASCII_41 ? -1 : 0;
            scrub[k] =
                scrub[k] || (tk != PG_QUERY__TOKEN__ASCII_40 && tk != PG_QUERY__TOKEN__ASCII_41 &&
                             tk != PG_QUERY__TOKEN__ASCII_44 && tk != PG_QUERY__TOKEN__PARAM);
        }
    }
}

/* libpg_query's normalisation leaves constants in some statements (COPY's file name, COMMENT,
 * a column DEFAULT, NOTIFY's payload, PREPARE and CREATE VIEW bodies, EXECUTE and CALL
 * arguments, ALTER SYSTEM values ...), and comments, which may hold anything. Every constant
 * token the scanner still finds in norm, and every SET or option value (find_value_words), is
 * replaced here by the next $n and every comment is dropped, so no literal value reaches a log.
 * NULL when norm cannot be scanned (the caller then logs no text at all). */
static char *scrub_constants(const char *norm)
{
    PgQueryScanResult sr = pg_query_scan(norm);
    PgQuery__ScanResult *scan =
        sr.error ? NULL
                 : pg_query__scan_result__unpack(NULL, sr.pbuf.len, (const uint8_t *)sr.pbuf.data);
    char *out = NULL;
    size_t len = strlen(norm), n_values = 0;
    struct value_words words;
    bool *scrub = scan ? calloc(scan->n_tokens + 1, sizeof(*scrub)) : NULL;
    if (scrub && find_value_words(norm, scan, &words))
        mark_values(scan, &words, scrub);
    else {
        free(scrub);
        scrub = NULL;
    }
    for (size_t i = 0; scrub && i < scan->n_tokens; i++)
        n_values += scrub[i];
    /* each value becomes "$n" (at most 11 characters) in place of at least one */
    if (scrub && (out = malloc(len + n_values * 11 + 1))) {
        int next = 1;
        for (size_t i = 0; i < scan->n_tokens; i++) /* $n already there: number after them */
            if (scan->tokens[i]->token == PG_QUERY__TOKEN__PARAM)
                next = atoi(norm + scan->tokens[i]->start + 1) + 1 > next
                           ? atoi(norm + scan->tokens[i]->start + 1) + 1
                           : next;
        size_t o = 0, at = 0;
        for (size_t i = 0; i < scan->n_tokens; i++) {
            const PgQuery__ScanToken *t = scan->tokens[i];
            bool comment =
                t->token == PG_QUERY__TOKEN__SQL_COMMENT || t->token == PG_QUERY__TOKEN__C_COMMENT;
            if ((!scrub[i] && !comment) || t->start < (int32_t)at || t->end > (int32_t)len)
                continue;
            memcpy(out + o, norm + at, (size_t)t->start - at);
            o += (size_t)t->start - at;
            if (!comment)
                o += (size_t)snprintf(out + o, 12, "$%d", next++);
            at = (size_t)t->end;
        }
        memcpy(out + o, norm + at, len - at + 1);
    }
    free(scrub);
    if (scan)
        pg_query__scan_result__free_unpacked(scan, NULL);
    pg_query_free_scan_result(sr);
    return out;
}

/* Cuts text (malloc'd) to SQLINFO_MAX_NORMALIZED bytes with " ..." at its end, at a UTF-8
 * character boundary, giving the memory back. */
static char *cut_normalized(char *text)
{
    static const char mark[] = " ...";
    size_t len = text ? strlen(text) : 0, at = SQLINFO_MAX_NORMALIZED - sizeof(mark) + 1;
    if (len <= SQLINFO_MAX_NORMALIZED)
        return text;
    while (at > 0 && ((unsigned char)text[at] & 0xC0) == 0x80)
        at--; /* (not inside a multi-byte character) */
    memcpy(text + at, mark, sizeof(mark));
    char *fit = realloc(text, at + sizeof(mark));
    return fit ? fit : text;
}

bool sqlinfo_analyze(const char *sql, struct sql_analysis *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = SQL_UNKNOWN;
    if (!tree_features(sql, out)) {
        out->kind = SQL_UNKNOWN;
        out->fingerprint = sqlkey(sql);
        return true;
    }
    PgQueryFingerprintResult f = pg_query_fingerprint(sql);
    out->fingerprint = f.error ? sqlkey(sql) : f.fingerprint;
    pg_query_free_fingerprint_result(f);
    PgQueryNormalizeResult nr = pg_query_normalize(sql);
    if (!nr.error && nr.normalized_query) /* NULL when it cannot be scrubbed: no text logged */
        out->normalized = cut_normalized(scrub_constants(nr.normalized_query));
    pg_query_free_normalize_result(nr);
    return true;
}

/* Past the white space and comments at the start of s (of length len): the offset of the first
 * token (the parser places a statement right after the previous ';'). */
static size_t skip_blanks(const char *s, size_t len)
{
    size_t i = 0;
    for (;;) {
        while (i < len && strchr(" \t\r\n\f\v", s[i]))
            i++;
        if (i + 1 < len && s[i] == '-' && s[i + 1] == '-') {
            while (i < len && s[i] != '\n')
                i++;
        } else if (i + 1 < len && s[i] == '/' && s[i + 1] == '*') {
            const char *end = memmem(s + i + 2, len - i - 2, "*/", 2);
            if (!end || memmem(s + i + 2, (size_t)(end - s) - i - 2, "/*", 2))
                return i; /* unterminated or nested: keep it */
            i = (size_t)(end - s) + 2;
        } else {
            return i;
        }
    }
}

size_t sqlinfo_split(const char *sql, struct sql_span *spans, size_t max)
{
    char err[200];
    PgQuery__ParseResult *tree = sqlinfo_parse(sql, err, sizeof(err));
    if (!tree)
        return 0;
    size_t len = strlen(sql), n = tree->n_stmts;
    for (size_t i = 0; i < n && i < max; i++) {
        const PgQuery__RawStmt *r = tree->stmts[i];
        size_t start = r->stmt_location > 0 ? (size_t)r->stmt_location : 0;
        start = start < len ? start : len;
        size_t rest = len - start; /* stmt_len 0: up to the end of the text */
        size_t n = r->stmt_len > 0 && (size_t)r->stmt_len < rest ? (size_t)r->stmt_len : rest;
        size_t skip = skip_blanks(sql + start, n);
        start += skip;
        n -= skip;
        while (n > 0 && strchr(" \t\r\n\f\v", sql[start + n - 1]))
            n--;
        spans[i].start = start;
        spans[i].len = n;
    }
    sqlinfo_free_tree(tree);
    return n;
}

void sqlinfo_analysis_free(struct sql_analysis *a)
{
    free(a->normalized);
    for (int i = 0; i < a->n_read; i++)
        free(a->read[i]);
    for (int i = 0; i < a->n_written; i++)
        free(a->written[i]);
    for (int i = 0; i < a->pd.n_cols; i++)
        free(a->pd.cols[i]);
    memset(a, 0, sizeof(*a));
}

/* The text of a String node; "" for anything else. */
static const char *string_text(const PgQuery__Node *n)
{
    return n && n->node_case == PG_QUERY__NODE__NODE_STRING && n->string->sval ? n->string->sval
                                                                               : "";
}

bool sqlinfo_is_catalog_type(const PgQuery__TypeName *t, const char *const *names)
{
    if (!t || t->n_names != 2 || t->n_typmods || t->n_array_bounds || t->setof || t->pct_type ||
        strcmp(string_text(t->names[0]), "pg_catalog") != 0)
        return false;
    for (const char *const *n = names; *n; n++)
        if (strcmp(string_text(t->names[1]), *n) == 0)
            return true;
    return false;
}

bool sqlinfo_keeps_string(const PgQuery__TypeName *t)
{
    static const char *const keeping[] = {"text", "varchar", NULL};
    return sqlinfo_is_catalog_type(t, keeping);
}

const char *sqlinfo_const_string(const PgQuery__Node *n)
{
    for (int depth = 0; n && depth < SQLINFO_MAX_DEPTH; depth++) {
        switch (n->node_case) {
        case PG_QUERY__NODE__NODE_TYPE_CAST:
            n = sqlinfo_keeps_string(n->type_cast->type_name) ? n->type_cast->arg : NULL;
            break;
        case PG_QUERY__NODE__NODE_NAMED_ARG_EXPR: n = n->named_arg_expr->arg; break;
        case PG_QUERY__NODE__NODE_COLLATE_CLAUSE: n = n->collate_clause->arg; break;
        case PG_QUERY__NODE__NODE_A_CONST:
            return !n->a_const->isnull && n->a_const->val_case == PG_QUERY__A__CONST__VAL_SVAL &&
                           n->a_const->sval
                       ? n->a_const->sval->sval
                       : NULL;
        default: return NULL;
        }
    }
    return NULL;
}

const PgQuery__Node *sqlinfo_call_arg(const PgQuery__FuncCall *f, size_t pos, const char *name)
{
    for (size_t i = 0; i < f->n_args; i++) {
        const PgQuery__Node *a = f->args[i];
        if (a && a->node_case == PG_QUERY__NODE__NODE_NAMED_ARG_EXPR) {
            if (a->named_arg_expr->name && strcasecmp(a->named_arg_expr->name, name) == 0)
                return a->named_arg_expr->arg;
        } else if (i == pos) {
            return a;
        }
    }
    return NULL;
}

bool sqlinfo_is_two_phase(const ProtobufCMessage *m)
{
    if (m->descriptor != &pg_query__transaction_stmt__descriptor)
        return false;
    PgQuery__TransactionStmtKind kind = ((const PgQuery__TransactionStmt *)m)->kind;
    return kind == PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_PREPARE ||
           kind == PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT_PREPARED ||
           kind == PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_PREPARED;
}
