/* masksql_stmt.c: the masking guard's statement-level rules: what a client with masked columns
 * may not create (anything but tables, views, indexes, sequences and plain types), alter,
 * rename or drop (masked tables above all), run (LOAD, CALL, COPY with server files or
 * programs), maintain (indexes, CLUSTER, REINDEX, VACUUM / ANALYZE of masked tables) or set
 * (planner settings, through SET or set_config). */
#include "masksql_int.h"
#include "sqlinfo.h"

#define WHY_CREATE                                                                                 \
    "%s is not allowed: masked clients may not create extensions, code or other server-side "      \
    "objects; ask an administrator"
#define WHY_RUN                                                                                    \
    "%s is not allowed for clients with masked columns: it runs server-side code or reads or "     \
    "writes server files out of the masking guard's sight; ask an administrator"
#define WHY_REFRESH                                                                                \
    "REFRESH MATERIALIZED VIEW is not allowed for clients with masked columns: it runs the "       \
    "view's query again, its tests of masked columns uncounted; ask an administrator"
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
    "sort_mem", /* PostgreSQL's old name for work_mem, which it still takes */
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

static bool is_planner_setting(const char *name)
{
    return name && (has_prefix(name, planner_prefixes, COUNT(planner_prefixes)) ||
                    in_list(planner_settings, COUNT(planner_settings), name));
}

/* set_config of a planner setting, or of a name that cannot be told. */
void msql_check_set_config(struct ctx *c, const PgQuery__FuncCall *f)
{
    const char *setting = sqlinfo_const_string(sqlinfo_call_arg(f, 0, "setting_name"));
    if (!setting)
        msql_refuse(c, WHY_SETTING_NAME);
    else if (is_planner_setting(setting) && !c->out->refuse) {
        msql_refuse(c, WHY_PLANNER, setting);
        c->out->reason_quotes_literal = true;
    }
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

/* A kind of statement and what messages call it. */
struct stmt_name {
    const ProtobufCMessageDescriptor *d;
    const char *what;
};

/* What v (n entries) calls statements of kind d, or NULL. */
static const char *name_of(const struct stmt_name *v, size_t n, const ProtobufCMessageDescriptor *d)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].d == d)
            return v[i].what;
    return NULL;
}

/* What statement m is when it alters, renames or drops an existing object (renaming a schema or
 * function, detaching a child table, replacing a view can change what masking protects), for
 * messages; NULL for any other. */
static const char *alteration(const ProtobufCMessage *m)
{
    static const struct stmt_name stmts[] = {
        {&pg_query__rename_stmt__descriptor, "ALTER ... RENAME"},
        {&pg_query__alter_object_schema_stmt__descriptor, "ALTER ... SET SCHEMA"},
        {&pg_query__alter_owner_stmt__descriptor, "ALTER ... OWNER TO"},
        {&pg_query__drop_owned_stmt__descriptor, "DROP OWNED"},
        {&pg_query__reassign_owned_stmt__descriptor, "REASSIGN OWNED"},
    };
    const char *what = name_of(stmts, COUNT(stmts), m->descriptor);
    if (what)
        return what;
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

static const char *last_name(PgQuery__Node *const *names, size_t n);

/* The name of the type statement m makes (a relation's row type too), or NULL. */
static const char *made_type_name(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const PgQuery__RangeVar *rel = NULL;
    if (d == &pg_query__create_stmt__descriptor)
        rel = ((const PgQuery__CreateStmt *)m)->relation;
    else if (d == &pg_query__view_stmt__descriptor)
        rel = ((const PgQuery__ViewStmt *)m)->view;
    else if (d == &pg_query__create_table_as_stmt__descriptor)
        rel = ((const PgQuery__CreateTableAsStmt *)m)->into
                  ? ((const PgQuery__CreateTableAsStmt *)m)->into->rel
                  : NULL;
    else if (d == &pg_query__create_seq_stmt__descriptor)
        rel = ((const PgQuery__CreateSeqStmt *)m)->sequence;
    else if (d == &pg_query__into_clause__descriptor) /* SELECT ... INTO, CREATE TABLE AS */
        rel = ((const PgQuery__IntoClause *)m)->rel;
    else if (d == &pg_query__composite_type_stmt__descriptor)
        rel = ((const PgQuery__CompositeTypeStmt *)m)->typevar;
    else if (d == &pg_query__create_enum_stmt__descriptor)
        return last_name(((const PgQuery__CreateEnumStmt *)m)->type_name,
                         ((const PgQuery__CreateEnumStmt *)m)->n_type_name);
    else if (d == &pg_query__create_domain_stmt__descriptor)
        return last_name(((const PgQuery__CreateDomainStmt *)m)->domainname,
                         ((const PgQuery__CreateDomainStmt *)m)->n_domainname);
    return rel ? rel->relname : NULL;
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
    static const struct stmt_name named[] = {
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
    const char *what;
    if (msql_builtin_type_name(made_type_name(m))) /* (it would stand for the built-in) */
        return "an object named like a built-in type (text, int4 ...)";
    for (size_t i = 0; i < COUNT(allowed); i++)
        if (d == allowed[i])
            return NULL;
    if (d == &pg_query__create_domain_stmt__descriptor)
        return domain_checks((const PgQuery__CreateDomainStmt *)m) ? "CREATE DOMAIN ... CHECK"
                                                                   : NULL;
    if (d == &pg_query__create_schema_stmt__descriptor)
        return ((const PgQuery__CreateSchemaStmt *)m)->n_schema_elts ? "CREATE SCHEMA with elements"
                                                                     : NULL;
    if ((what = name_of(named, COUNT(named), d)))
        return what;
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

/* Refuses m when it is a statement a masked client may not run: changing or dropping a masked
 * table, indexing, reordering or analysing one, creating objects other than tables, views,
 * indexes and plain types, running server-side code or files, altering, renaming or dropping
 * objects, changing planner settings, or a table inheriting from or referencing a masked one. */
/* The last name of a qualified name list (schema.name), or NULL. */
static const char *last_name(PgQuery__Node *const *names, size_t n)
{
    const PgQuery__Node *last = n ? names[n - 1] : NULL;
    return last && last->node_case == PG_QUERY__NODE__NODE_STRING ? last->string->sval : NULL;
}

/* The table a write statement writes to (COPY ... FROM included), or NULL. */
static const char *written_table(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const PgQuery__RangeVar *r = NULL;
    if (d == &pg_query__insert_stmt__descriptor)
        r = ((const PgQuery__InsertStmt *)m)->relation;
    else if (d == &pg_query__update_stmt__descriptor)
        r = ((const PgQuery__UpdateStmt *)m)->relation;
    else if (d == &pg_query__delete_stmt__descriptor)
        r = ((const PgQuery__DeleteStmt *)m)->relation;
    else if (d == &pg_query__merge_stmt__descriptor)
        r = ((const PgQuery__MergeStmt *)m)->relation;
    else if (d == &pg_query__copy_stmt__descriptor && ((const PgQuery__CopyStmt *)m)->is_from)
        r = ((const PgQuery__CopyStmt *)m)->relation;
    return r ? r->relname : NULL;
}

/* Functions an administrator wrote can run without being named: behind an operator, a cast,
 * or a table's rules, triggers, defaults and constraints. The guard cannot see what they
 * read, so masked clients may not use those operators and casts, or write those tables. */
static void check_hidden_calls(struct ctx *c, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const struct masksql_policy *p = c->p;
    const char *name = NULL;
    if (d == &pg_query__a__expr__descriptor) {
        const PgQuery__AExpr *e = (const PgQuery__AExpr *)m;
        if ((name = last_name(e->name, e->n_name)) &&
            in_list(p->user_operators, p->n_user_operators, name))
            msql_refuse(c, WHY_USER_OPERATOR, name);
    } else if (d == &pg_query__type_cast__descriptor) {
        const PgQuery__TypeName *t = ((const PgQuery__TypeCast *)m)->type_name;
        if (t && (name = last_name(t->names, t->n_names)) &&
            in_list(p->user_cast_types, p->n_user_cast_types, name))
            msql_refuse(c, WHY_USER_CAST, name);
    } else if ((name = written_table(m)) && in_list(p->write_refused, p->n_write_refused, name)) {
        msql_refuse(c, WHY_WRITE_RUNS, name);
    }
}

void msql_check_statement_rules(struct ctx *c, const ProtobufCMessage *m)
{
    check_hidden_calls(c, m);
    if (c->out->refuse)
        return;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *table = NULL, *made = NULL, *run = NULL, *change = NULL, *phys = NULL;
    if ((table = changed_masked_table(c, m)))
        msql_refuse(c, WHY_DDL, table);
    else if ((phys = physical_change(c, m, &table)) && table)
        msql_refuse(c, WHY_PHYSICAL, phys, table);
    else if ((made = refused_creation(m)))
        msql_refuse(c, WHY_CREATE, made);
    else if ((run = refused_run(m)))
        msql_refuse(c, WHY_RUN, run);
    else if (d == &pg_query__refresh_mat_view_stmt__descriptor)
        msql_refuse(c, WHY_REFRESH);
    else if ((change = alteration(m)))
        msql_refuse(c, WHY_ALTER, change);
    if (d == &pg_query__variable_set_stmt__descriptor)
        check_variable_set(c, (const PgQuery__VariableSetStmt *)m);
    else if (d == &pg_query__create_stmt__descriptor)
        check_create_table(c, (const PgQuery__CreateStmt *)m);
}
