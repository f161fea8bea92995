/* masksql.c: the masking guard's rules over libpg_query's protobuf parse trees (which statements
 * could carry a masked column's value to the client other than as a plain column reference,
 * store it, compare it with other rows' values, sort or group by it, test it against many
 * guesses at once, create code or objects out of the guard's sight, or change what masking
 * protects; which write masked columns, index, reorder or analyse masked tables, or change
 * planner settings, any of which lets planted guesses sort among the real values), and the
 * bounded LRU cache of its verdicts by (policy, statement text). */
#include "masksql.h"

#include <ctype.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "masksql_int.h"
#include "sqlinfo.h"
#include "textcache.h"

/* Rounds of alias discovery: each one repeats the whole check with the names learnt so far. */
#define MAX_PASSES 16
/* Statements longer than this are checked every time rather than cached. */
#define CACHE_MAX_TEXT 8192

#define WHY_CREATE                                                                                 \
    "%s is not allowed: masked clients may not create extensions, code or other server-side "      \
    "objects; ask an administrator"
#define WHY_RUN                                                                                    \
    "%s is not allowed for clients with masked columns: it runs server-side code or reads or "     \
    "writes server files out of the masking guard's sight; ask an administrator"
#define WHY_DDL                                                                                    \
    "changing table \"%.63s\" (ALTER, RENAME, DROP, policies, unique indexes) is not allowed "     \
    "for clients with masked columns"
#define WHY_ALTER                                                                                  \
    "%s is not allowed: clients with masked columns may not alter, rename or drop database "       \
    "objects (it could change what masking protects); ask an administrator"
#define WHY_WRITE_CHILD                                                                            \
    "a table inheriting from or partitioning table \"%.63s\" would hold rows among its "           \
    "own" WRITE_TAIL
#define WHY_FOREIGN_KEY                                                                            \
    "a foreign key referencing table \"%.63s\" would test many guesses against its columns at "    \
    "once: not allowed for clients with masked columns; ask an administrator"
#define WHY_PHYSICAL                                                                               \
    "%s is not allowed for clients with masked columns: indexes, physical row order and "          \
    "planner statistics of table \"%.63s\" follow its masked columns' values; ask an "             \
    "administrator"
#define WHY_PLANNER                                                                                \
    "setting \"%.63s\" is a planner setting: clients with masked columns may not change it "       \
    "(forcing index scans returns rows in a masked column's order)"
#define WHY_SETTING_NAME                                                                           \
    "set_config() whose setting name is not a constant is not allowed for clients with masked "    \
    "columns"
/* Planner settings (every name starting with one of these, or equal to one): forcing index
 * scans (or sorts, hashes, join orders) makes rows come back in a masked column's order. */
static const char *const planner_prefixes[] = {"enable_", "geqo", "jit"};
static const char *const planner_settings[] = {
    "random_page_cost",
    "seq_page_cost",
    "cpu_tuple_cost",
    "cpu_index_tuple_cost",
    "cpu_operator_cost",
    "effective_cache_size",
    "plan_cache_mode",
    "from_collapse_limit",
    "join_collapse_limit",
    "work_mem",
    "hash_mem_multiplier",
    "default_statistics_target",
    "constraint_exclusion",
    "force_parallel_mode",
    "debug_parallel_query",
    "parallel_setup_cost",
    "parallel_tuple_cost",
    "parallel_leader_participation",
    "min_parallel_table_scan_size",
    "min_parallel_index_scan_size",
    "max_parallel_workers_per_gather",
    "max_parallel_workers",
    "cursor_tuple_fraction",
    "recursive_worktable_factor",
};

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

static bool is_planner_setting(const char *name)
{
    return name && (has_prefix(name, planner_prefixes, COUNT(planner_prefixes)) ||
                    in_list(planner_settings, COUNT(planner_settings), name));
}

/* The string constant n holds (through casts), or NULL. */
static const char *const_text(const PgQuery__Node *n)
{
    for (int depth = 0; n && depth < MAX_DEPTH; depth++) {
        if (n->node_case == PG_QUERY__NODE__NODE_TYPE_CAST)
            n = n->type_cast->arg;
        else if (n->node_case == PG_QUERY__NODE__NODE_COLLATE_CLAUSE)
            n = n->collate_clause->arg;
        else
            return n->node_case == PG_QUERY__NODE__NODE_A_CONST && !n->a_const->isnull &&
                           n->a_const->val_case == PG_QUERY__A__CONST__VAL_SVAL && n->a_const->sval
                       ? n->a_const->sval->sval
                       : NULL;
    }
    return NULL;
}

/* The setting set_config(f) changes: the argument named setting_name, else the first when it
 * is positional; NULL when that is not a constant (set_config(new_value => ..., setting_name
 * => ...) puts it anywhere). */
static const char *setting_of(const PgQuery__FuncCall *f)
{
    for (size_t i = 0; i < f->n_args; i++) {
        const PgQuery__Node *a = f->args[i];
        if (a && a->node_case == PG_QUERY__NODE__NODE_NAMED_ARG_EXPR && a->named_arg_expr->name &&
            strcasecmp(a->named_arg_expr->name, "setting_name") == 0)
            return const_text(a->named_arg_expr->arg);
    }
    if (f->n_args && f->args[0] && f->args[0]->node_case != PG_QUERY__NODE__NODE_NAMED_ARG_EXPR)
        return const_text(f->args[0]);
    return NULL;
}

/* set_config of a planner setting, or of a name that cannot be told. */
void msql_check_set_config(struct ctx *c, const PgQuery__FuncCall *f)
{
    const char *setting = setting_of(f);
    if (!setting)
        msql_refuse(c, WHY_SETTING_NAME);
    else if (is_planner_setting(setting))
        msql_refuse(c, WHY_PLANNER, setting);
}

/* A search for a masked table's name among the Strings below a node (DROP's object names). */
struct table_search {
    const struct ctx *c;
    const char *found;
    int depth;
};

static void search_table(void *arg, const ProtobufCMessage *m)
{
    struct table_search *ts = arg;
    if (ts->found || ts->depth > MAX_DEPTH) /* too deep: refused all the same, less precisely */
        return;
    if (m->descriptor == &pg_query__string__descriptor) {
        const char *s = ((const PgQuery__String *)m)->sval;
        if (s && msql_is_masked_table(ts->c, s))
            ts->found = s;
        return;
    }
    ts->depth++;
    sqlinfo_each_child(m, search_table, ts);
    ts->depth--;
}

/* The relation a statement changes the shape or rules of (a unique or exclusion index counts:
 * its violations print key values), or NULL; DROP's are found by changed_masked_table. */
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

/* The masked table statement m changes or drops, or NULL. */
static const char *changed_masked_table(const struct ctx *c, const ProtobufCMessage *m)
{
    const PgQuery__RangeVar *r = changed_relation(m);
    struct table_search ts = {c, NULL, 0};
    if (r && r->relname && msql_is_masked_table(c, r->relname))
        return r->relname;
    if (m->descriptor == &pg_query__drop_stmt__descriptor)
        sqlinfo_each_child(m, search_table, &ts);
    return ts.found;
}

/* Is d a statement whose name starts with prefix (AlterTableStmt, DropOwnedStmt ...)? */
static bool is_statement_named(const ProtobufCMessageDescriptor *d, const char *prefix)
{
    const char *name = d->short_name;
    size_t len = name ? strlen(name) : 0;
    return len > 4 && strncmp(name, prefix, strlen(prefix)) == 0 &&
           strcmp(name + len - 4, "Stmt") == 0;
}

/* Does CREATE OR REPLACE m replace an existing object (of the CREATE statements allowed, only
 * views can)? */
static bool replaces_object(const ProtobufCMessage *m)
{
    return m->descriptor == &pg_query__view_stmt__descriptor &&
           ((const PgQuery__ViewStmt *)m)->replace;
}

/* What statement m is when it alters, renames or drops an existing object (renaming a schema or
 * function, detaching a child table, replacing a view can change what masking protects), for
 * messages; NULL for any other. */
static const char *alteration(const ProtobufCMessage *m)
{
    static const struct {
        const ProtobufCMessageDescriptor *d;
        const char *what;
    } stmts[] = {
        {&pg_query__rename_stmt__descriptor, "ALTER ... RENAME"},
        {&pg_query__alter_object_schema_stmt__descriptor, "ALTER ... SET SCHEMA"},
        {&pg_query__alter_owner_stmt__descriptor, "ALTER ... OWNER TO"},
        {&pg_query__drop_owned_stmt__descriptor, "DROP OWNED"},
        {&pg_query__reassign_owned_stmt__descriptor, "REASSIGN OWNED"},
    };
    for (size_t i = 0; i < COUNT(stmts); i++)
        if (m->descriptor == stmts[i].d)
            return stmts[i].what;
    if (replaces_object(m))
        return "CREATE OR REPLACE";
    if (is_statement_named(m->descriptor, "Alter"))
        return "ALTER";
    if (is_statement_named(m->descriptor, "Drop"))
        return "DROP";
    return NULL;
}

/* Does CREATE DOMAIN carry a CHECK expression (run on every value cast to the domain)? */
static bool domain_checks(const PgQuery__CreateDomainStmt *s)
{
    for (size_t i = 0; i < s->n_constraints; i++) {
        const PgQuery__Node *n = s->constraints[i];
        if (!n || n->node_case != PG_QUERY__NODE__NODE_CONSTRAINT ||
            n->constraint->contype == PG_QUERY__CONSTR_TYPE__CONSTR_CHECK)
            return true;
    }
    return false;
}

/* What CREATE-like statement m is when a masked client may not run it, for messages; NULL for
 * any other. An allowlist: tables (CREATE TABLE, LIKE, INHERITS, PARTITION OF, AS; not of
 * masked tables: check_create_table), indexes (not on masked tables: physical_change),
 * views, sequences, composite and enum types, domains without CHECK and empty schemas; every
 * other object (extensions, functions, triggers, rules, casts, operators, languages, foreign
 * servers, publications ...) could run code or read data out of the guard's sight, or be
 * created before the catalog's lists are refreshed. */
static const char *refused_creation(const ProtobufCMessage *m)
{
    static const ProtobufCMessageDescriptor *const allowed[] = {
        &pg_query__create_stmt__descriptor,      &pg_query__index_stmt__descriptor,
        &pg_query__view_stmt__descriptor,        &pg_query__create_table_as_stmt__descriptor,
        &pg_query__create_seq_stmt__descriptor,  &pg_query__composite_type_stmt__descriptor,
        &pg_query__create_enum_stmt__descriptor,
    };
    static const struct {
        const ProtobufCMessageDescriptor *d;
        const char *what;
    } named[] = {
        {&pg_query__do_stmt__descriptor, "DO"},
        {&pg_query__create_function_stmt__descriptor, "CREATE FUNCTION/PROCEDURE"},
        {&pg_query__create_trig_stmt__descriptor, "CREATE TRIGGER"},
        {&pg_query__rule_stmt__descriptor, "CREATE RULE"},
        {&pg_query__create_event_trig_stmt__descriptor, "CREATE EVENT TRIGGER"},
        {&pg_query__create_cast_stmt__descriptor, "CREATE CAST"},
        {&pg_query__create_extension_stmt__descriptor, "CREATE EXTENSION"},
        {&pg_query__create_plang_stmt__descriptor, "CREATE LANGUAGE"},
        {&pg_query__create_transform_stmt__descriptor, "CREATE TRANSFORM"},
        {&pg_query__create_conversion_stmt__descriptor, "CREATE CONVERSION"},
        {&pg_query__create_fdw_stmt__descriptor, "CREATE FOREIGN DATA WRAPPER"},
        {&pg_query__create_foreign_server_stmt__descriptor, "CREATE SERVER"},
        {&pg_query__create_foreign_table_stmt__descriptor, "CREATE FOREIGN TABLE"},
        {&pg_query__create_user_mapping_stmt__descriptor, "CREATE USER MAPPING"},
        {&pg_query__import_foreign_schema_stmt__descriptor, "IMPORT FOREIGN SCHEMA"},
        {&pg_query__create_publication_stmt__descriptor, "CREATE PUBLICATION"},
        {&pg_query__create_subscription_stmt__descriptor, "CREATE SUBSCRIPTION"},
        {&pg_query__create_am_stmt__descriptor, "CREATE ACCESS METHOD"},
        {&pg_query__create_op_class_stmt__descriptor, "CREATE OPERATOR CLASS"},
        {&pg_query__create_op_family_stmt__descriptor, "CREATE OPERATOR FAMILY"},
        {&pg_query__create_stats_stmt__descriptor, "CREATE STATISTICS"},
        {&pg_query__create_role_stmt__descriptor, "CREATE ROLE"},
        {&pg_query__createdb_stmt__descriptor, "CREATE DATABASE"},
        {&pg_query__create_table_space_stmt__descriptor, "CREATE TABLESPACE"},
        {&pg_query__create_policy_stmt__descriptor, "CREATE POLICY"},
        {&pg_query__create_range_stmt__descriptor, "CREATE TYPE ... AS RANGE"},
    };
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (size_t i = 0; i < COUNT(allowed); i++)
        if (d == allowed[i])
            return NULL;
    if (d == &pg_query__create_domain_stmt__descriptor)
        return domain_checks((const PgQuery__CreateDomainStmt *)m) ? "CREATE DOMAIN ... CHECK"
                                                                   : NULL;
    if (d == &pg_query__create_schema_stmt__descriptor)
        return ((const PgQuery__CreateSchemaStmt *)m)->n_schema_elts ? "CREATE SCHEMA with elements"
                                                                     : NULL;
    for (size_t i = 0; i < COUNT(named); i++)
        if (d == named[i].d)
            return named[i].what;
    if (d == &pg_query__define_stmt__descriptor) {
        switch (((const PgQuery__DefineStmt *)m)->kind) {
        case PG_QUERY__OBJECT_TYPE__OBJECT_AGGREGATE: return "CREATE AGGREGATE";
        case PG_QUERY__OBJECT_TYPE__OBJECT_OPERATOR: return "CREATE OPERATOR";
        case PG_QUERY__OBJECT_TYPE__OBJECT_TYPE: return "CREATE TYPE";
        case PG_QUERY__OBJECT_TYPE__OBJECT_COLLATION: return "CREATE COLLATION";
        default: return "CREATE TEXT SEARCH";
        }
    }
    if (is_statement_named(d, "Create")) /* one this list does not know yet */
        return "this CREATE statement";
    return NULL;
}

/* What statement m is when it runs server-side code or reads or writes server files outside
 * the guard's sight (LOAD, CALL, COPY with a file or program), for messages; NULL otherwise. */
static const char *refused_run(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__load_stmt__descriptor)
        return "LOAD";
    if (d == &pg_query__call_stmt__descriptor)
        return "CALL";
    if (d == &pg_query__copy_stmt__descriptor) {
        const PgQuery__CopyStmt *s = (const PgQuery__CopyStmt *)m;
        if (s->is_program)
            return s->is_from ? "COPY ... FROM PROGRAM" : "COPY ... TO PROGRAM";
        if (s->filename && *s->filename)
            return s->is_from ? "COPY ... FROM a server file" : "COPY ... TO a server file";
    }
    return NULL;
}

/* The first masked table of the policy (what a statement without a table list reaches), or
 * NULL when it has none. */
static const char *any_masked_table(const struct ctx *c)
{
    for (size_t i = 0; i < c->p->n_tables; i++)
        if (c->p->tables[i])
            return c->p->tables[i];
    return NULL;
}

static const char *masked_relation(const struct ctx *c, const PgQuery__RangeVar *r)
{
    return r && r->relname && msql_is_masked_table(c, r->relname) ? r->relname : NULL;
}

/* VACUUM / ANALYZE: the masked table it names, or any when it names none. */
static const char *vacuumed_table(const struct ctx *c, const PgQuery__VacuumStmt *s)
{
    const char *t;
    if (s->n_rels == 0)
        return any_masked_table(c);
    for (size_t i = 0; i < s->n_rels; i++) {
        const PgQuery__Node *n = s->rels[i];
        if (n && n->node_case == PG_QUERY__NODE__NODE_VACUUM_RELATION &&
            (t = masked_relation(c, n->vacuum_relation->relation)))
            return t;
        if (n && n->node_case != PG_QUERY__NODE__NODE_VACUUM_RELATION)
            return any_masked_table(c); /* a form this code does not know */
    }
    return NULL;
}

/* What statement m is when it builds indexes on, reorders, rebuilds or gathers statistics of a
 * masked table (or of tables it cannot name, which may be masked ones), for messages, with the
 * table in *table; NULL for any other. CREATE STATISTICS is refused as a creation. */
static const char *physical_change(const struct ctx *c, const ProtobufCMessage *m,
                                   const char **table)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__index_stmt__descriptor) {
        *table = masked_relation(c, ((const PgQuery__IndexStmt *)m)->relation);
        return "CREATE INDEX";
    }
    if (d == &pg_query__cluster_stmt__descriptor) {
        const PgQuery__ClusterStmt *s = (const PgQuery__ClusterStmt *)m;
        *table = s->relation ? masked_relation(c, s->relation) : any_masked_table(c);
        return "CLUSTER";
    }
    if (d == &pg_query__reindex_stmt__descriptor) {
        const PgQuery__ReindexStmt *s = (const PgQuery__ReindexStmt *)m;
        /* REINDEX INDEX names no table: it may be a masked table's */
        *table = s->kind == PG_QUERY__REINDEX_OBJECT_TYPE__REINDEX_OBJECT_TABLE && s->relation
                     ? masked_relation(c, s->relation)
                     : any_masked_table(c);
        return "REINDEX";
    }
    if (d == &pg_query__vacuum_stmt__descriptor) {
        const PgQuery__VacuumStmt *s = (const PgQuery__VacuumStmt *)m;
        *table = vacuumed_table(c, s);
        return s->is_vacuumcmd ? "VACUUM" : "ANALYZE";
    }
    return NULL;
}

/* CREATE TABLE ... INHERITS (t) / PARTITION OF t of a masked t: its rows would be the masked
 * table's (and written unseen); REFERENCES t tests the new rows against t's values. */
static void check_create_table(struct ctx *c, const PgQuery__CreateStmt *s)
{
    for (size_t i = 0; i < s->n_inh_relations; i++) {
        const PgQuery__Node *n = s->inh_relations[i];
        const char *t = n && n->node_case == PG_QUERY__NODE__NODE_RANGE_VAR
                            ? masked_relation(c, n->range_var)
                            : NULL;
        if (t)
            msql_refuse(c, WHY_WRITE_CHILD, t);
    }
    for (size_t i = 0; i < s->n_table_elts + s->n_constraints; i++) {
        PgQuery__Node *n =
            i < s->n_table_elts ? s->table_elts[i] : s->constraints[i - s->n_table_elts];
        PgQuery__Node *const *cons = &n;
        size_t n_cons = n ? 1 : 0;
        if (n && n->node_case == PG_QUERY__NODE__NODE_COLUMN_DEF) {
            cons = n->column_def->constraints;
            n_cons = n->column_def->n_constraints;
        }
        for (size_t j = 0; j < n_cons; j++) {
            const PgQuery__Node *k = cons[j];
            const char *t = k && k->node_case == PG_QUERY__NODE__NODE_CONSTRAINT &&
                                    k->constraint->contype == PG_QUERY__CONSTR_TYPE__CONSTR_FOREIGN
                                ? masked_relation(c, k->constraint->pktable)
                                : NULL;
            if (t)
                msql_refuse(c, WHY_FOREIGN_KEY, t);
        }
    }
}

/* SET, SET LOCAL, RESET of a planner setting (RESET ALL returns to the defaults). */
static void check_variable_set(struct ctx *c, const PgQuery__VariableSetStmt *s)
{
    if (s->name && is_planner_setting(s->name))
        msql_refuse(c, WHY_PLANNER, s->name);
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

/* Checks m in position flags: statements that create objects other than tables, views, indexes
 * and plain types, run code or change objects are refused; nodes with rules of their own go to
 * their handler; any other is an expression (msql_check_expression). */
static void dispatch(struct ctx *c, const ProtobufCMessage *m, unsigned flags)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *table = NULL, *made = NULL, *run = NULL, *change = NULL, *phys = NULL;
    visit_fn fn = handler_of(d);
    if ((table = changed_masked_table(c, m)))
        msql_refuse(c, WHY_DDL, table);
    else if ((phys = physical_change(c, m, &table)) && table)
        msql_refuse(c, WHY_PHYSICAL, phys, table);
    else if ((made = refused_creation(m)))
        msql_refuse(c, WHY_CREATE, made);
    else if ((run = refused_run(m)))
        msql_refuse(c, WHY_RUN, run);
    else if ((change = alteration(m)))
        msql_refuse(c, WHY_ALTER, change);
    if (d == &pg_query__variable_set_stmt__descriptor)
        check_variable_set(c, (const PgQuery__VariableSetStmt *)m);
    else if (d == &pg_query__create_stmt__descriptor)
        check_create_table(c, (const PgQuery__CreateStmt *)m);
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
    rowmap_clear(&c->quals);
    c->table = NULL;
    c->depth = 0;
}

/* One statement: its names first, then the check, repeated while aliases of masked columns
 * turn up (a rename may be seen after its use), until no set grows; the last pass's tests of
 * masked columns count towards the text's. The statement itself is a query whose WHERE, ON
 * and HAVING may test (when it is a SELECT, UPDATE or DELETE, or runs one now). */
static void check_statement(struct ctx *c, const PgQuery__Node *st)
{
    reset_statement(c);
    msql_collect(c, &st->base, 0);
    for (int pass = 0; !c->out->refuse; pass++) {
        if (pass == MAX_PASSES) {
            msql_refuse(c, WHY_COMPLEX);
            break;
        }
        c->grew = false;
        c->depth = 0;
        c->tests = 0;
        msql_check_query(c, st, SCOPE_TESTS);
        if (!c->grew)
            break;
    }
    c->tests_done += c->tests;
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
