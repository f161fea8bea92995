/* guard.c: the RLS guard's rules over libpg_query parse trees (through sqlinfo), and the
 * bounded cache of verdicts by statement text. */
#include "guard.h"

#include <ctype.h>
#include <pg_query/pg_query.pb-c.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hiddensql.h"
#include "params.h"
#include "sqlinfo.h"
#include "textcache.h"
#include "textscan.h"

/* PostgreSQL's CURSOR_OPT_HOLD (parsenodes.h): DECLARE ... WITH HOLD. */
#define CURSOR_OPT_HOLD 0x0020
/* Statements longer than this are checked every time rather than cached. */
#define GUARD_CACHE_MAX_TEXT 8192

/* Views and functions that show other sessions' statement texts, literals included: every
 * tenant's server connections log in as the same role, so each would see the others' (and,
 * on a pooled server, the statements and cursors other clients left there). */
static const char *const activity_views[] = {
    "pg_stat_activity",       "pg_stat_statements", "pg_stat_statements_info",
    "pg_prepared_statements", "pg_cursors",
};
static const char *const activity_functions[] = {
    "pg_stat_get_activity",  "pg_stat_statements", "pg_stat_statements_info",
    "pg_prepared_statement", "pg_cursor",
};
/* ... and every function of a backend by its id (pg_stat_get_backend_activity, ...). */
#define BACKEND_FUNCTIONS "pg_stat_get_backend_"

/* Large objects belong to a role, not to a row: every tenant's server connections log in as
 * the same role, so each could list, read, overwrite and unlink the others'. Their functions
 * (lo_* and loread, lowrite) and catalogs are refused. */
static const char *const large_object_functions[] = {
    "loread",  "lowrite",   "lo_close",    "lo_creat",      "lo_create",     "lo_export",
    "lo_get",  "lo_import", "lo_lseek",    "lo_lseek64",    "lo_open",       "lo_put",
    "lo_tell", "lo_tell64", "lo_truncate", "lo_truncate64", "lo_from_bytea", "lo_unlink",
};
/* (a call of any function so named: the lo extension's lo_manage ...; attribute notation,
 * alias.name, only by the names above, as a column may be called lo_something) */
#define LARGE_OBJECT_PREFIX "lo_"
static const char *const large_object_catalogs[] = {"pg_largeobject", "pg_largeobject_metadata"};
#define WHY_LARGE_OBJECT                                                                           \
    "%s is not allowed under row-level security: large objects belong to a role, and every "       \
    "client's server connections log in as the same one, so each could read or change the "        \
    "others' (keep such data in bytea columns, which the policies cover)"
/* ... and prepared transactions (two-phase commit): any session of the role may finish one.
 * (pg_prepared_xact(), under the view pg_prepared_xacts) */
#define TWO_PHASE_FUNCTION "pg_prepared_xact"
#define WHY_TWO_PHASE                                                                              \
    "two-phase commit (PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED, "                  \
    "pg_prepared_xacts) is not allowed under row-level security: every client's server "           \
    "connections log in as the same role, which may finish any prepared transaction"

/* Functions that signal another backend by its process id: every tenant's server connections
 * log in as the same role, which PostgreSQL lets signal its own backends. */
static const char *const backend_signals[] = {"pg_cancel_backend", "pg_terminate_backend"};

static bool in_names(const char *name, const char *const *names, size_t n)
{
    for (size_t i = 0; name && i < n; i++)
        if (strcasecmp(name, names[i]) == 0)
            return true;
    return false;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct check {
    const char *prefix;
    size_t prefix_len;
    struct guard_verdict *out;
    bool reads_settings_view; /* names pg_settings, whose UPDATE rule calls set_config */
    bool alters_defaults;     /* ALTER ROLE/DATABASE/SYSTEM ... SET or RESET */
    bool writes;              /* an INSERT, UPDATE, DELETE, MERGE or a view or table made */
    bool stores_expressions;  /* it makes or alters a view, table, default or check */
    char state_call[64];      /* a call it makes that leaves session state (setseed ...) */
};

/* Refuses with msg; "%s" in msg, if any, is replaced by name. The first reason is kept. */
static bool refuse(struct check *k, const char *msg, const char *name)
{
    if (k->out->refuse)
        return false;
    k->out->refuse = true;
    const char *at = strstr(msg, "%s");
    if (at)
        snprintf(k->out->reason, sizeof(k->out->reason), "%.*s%s%s", (int)(at - msg), msg, name,
                 at + 2);
    else
        snprintf(k->out->reason, sizeof(k->out->reason), "%s", msg);
    return true;
}

/* Is the setting name protected: "role", "session_authorization", or "<prefix>.*"? */
static bool is_protected(const struct check *k, const char *name)
{
    if (strcasecmp(name, "role") == 0 || strcasecmp(name, "session_authorization") == 0)
        return true;
    return strncasecmp(name, k->prefix, k->prefix_len) == 0 && name[k->prefix_len] == '.';
}

/* name, lower-cased into out (PostgreSQL's spelling of a setting name). */
static const char *lowered(const char *name, char out[96])
{
    size_t i = 0;
    for (; name[i] && i < 95; i++)
        out[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    out[i] = '\0';
    return out;
}

/* Settings whose value changes how PostgreSQL reads query text. The guard parses as the server
 * does only with standard_conforming_strings on and a client encoding in which no byte of a
 * multi-byte character can be a quote or backslash: those two may change only to such values. */
static bool changes_how_text_reads(const char *name)
{
    return strcasecmp(name, "standard_conforming_strings") == 0 ||
           strcasecmp(name, "client_encoding") == 0;
}

/* The value node sets for a text-reading setting, checked: NULL (refusing) when unsafe. */
static void check_text_reading_value(struct check *k, const char *name, const PgQuery__Node *v)
{
    const char *val = sqlinfo_const_string(v);
    if (v && v->node_case == PG_QUERY__NODE__NODE_A_CONST &&
        v->a_const->val_case == PG_QUERY__A__CONST__VAL_IVAL)
        val = v->a_const->ival && v->a_const->ival->ival == 1 ? "on" : "off";
    bool ok = strcasecmp(name, "client_encoding") == 0 ? guard_safe_client_encoding(val)
                                                       : guard_scs_on(val);
    if (!ok)
        refuse(k,
               "setting \"%s\" may only be changed to a value the guard reads as the server "
               "does (standard_conforming_strings on; client_encoding not SJIS, BIG5, GBK, "
               "UHC, GB18030 or JOHAB)",
               strcasecmp(name, "client_encoding") == 0 ? "client_encoding"
                                                        : "standard_conforming_strings");
}

/* Session-level settings that lakeproxy carries from server to server with the client (the
 * server reports them); any other session-level SET would stay behind for the next client. */
static bool follows_client(const char *name)
{
    static const char *const names[] = {"application_name", "client_encoding",
                                        "datestyle",        "timezone",
                                        "intervalstyle",    "standard_conforming_strings"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcasecmp(name, names[i]) == 0)
            return true;
    return false;
}

/* Notes a session-level change of name that would outlive the transaction on the server
 * (name_is_literal: a string constant of the statement, kept out of the log). */
static void note_session_set(struct check *k, const char *name, bool name_is_literal)
{
    if (k->out->session_set || follows_client(name))
        return;
    k->out->session_set = true;
    k->out->session_reason_quotes_literal = name_is_literal;
    char low[96];
    snprintf(k->out->session_reason, sizeof(k->out->session_reason),
             "session-level SET of \"%.64s\" is not allowed under transaction pooling with "
             "row-level security: it would stay on the server for the next client (use SET "
             "LOCAL inside a transaction, or options at startup)",
             lowered(name, low));
}

/* The integer an argument node holds (12, '12', '12'::text: sqlinfo_const_string's casts only);
 * false when anything else. */
static bool const_int(const PgQuery__Node *n, long *out)
{
    if (n && n->node_case == PG_QUERY__NODE__NODE_A_CONST &&
        n->a_const->val_case == PG_QUERY__A__CONST__VAL_IVAL) {
        *out = n->a_const->ival ? n->a_const->ival->ival : 0;
        return true;
    }
    const char *v = sqlinfo_const_string(n);
    char *end;
    if (!v || !*v)
        return false;
    *out = strtol(v, &end, 0); /* base 0, as PostgreSQL reads integer settings: 010 is 8 */
    return *end == '\0';
}

/* 1 for a word read as true (on, true, yes, t, 1), 0 for false (off, false, no, f, 0), -1
 * for anything else, NULL included. */
static int bool_word(const char *v)
{
    static const char *const yes[] = {"on", "true", "yes", "t", "1"}, *const no[] = {"off", "false",
                                                                                     "no", "f",
                                                                                     "0"};
    for (size_t j = 0; v && j < sizeof(yes) / sizeof(yes[0]); j++) {
        if (strcasecmp(v, yes[j]) == 0)
            return 1;
        if (strcasecmp(v, no[j]) == 0)
            return 0;
    }
    return -1;
}

/* The boolean an argument node holds (true, 'off', 1 ...); false when anything else. */
static bool const_bool(const PgQuery__Node *n, bool *out)
{
    long i;
    if (n && n->node_case == PG_QUERY__NODE__NODE_A_CONST &&
        n->a_const->val_case == PG_QUERY__A__CONST__VAL_BOOLVAL) {
        *out = n->a_const->boolval && n->a_const->boolval->boolval;
        return true;
    }
    if (n && n->node_case == PG_QUERY__NODE__NODE_A_CONST &&
        n->a_const->val_case == PG_QUERY__A__CONST__VAL_IVAL && const_int(n, &i) &&
        (i == 0 || i == 1)) {
        *out = i == 1;
        return true;
    }
    int w = bool_word(sqlinfo_const_string(n));
    *out = w == 1;
    return w >= 0;
}

/* A timeout setting's value in milliseconds (5000, '5000', '5 s', '2min'; units ms, s, min,
 * h, d; integers read as PostgreSQL reads them) when the server takes it: 0 to INT_MAX ms.
 * False otherwise (fractions and microseconds, which the server rounds, included). */
static bool timeout_ms(const PgQuery__Node *v, long *ms)
{
    static const struct {
        const char *unit;
        long factor;
    } units[] = {{"", 1}, {"ms", 1}, {"s", 1000}, {"min", 60000}, {"h", 3600000}, {"d", 86400000}};
    long n;
    if (v && v->node_case == PG_QUERY__NODE__NODE_A_CONST &&
        v->a_const->val_case == PG_QUERY__A__CONST__VAL_IVAL)
        return const_int(v, ms) && *ms >= 0;
    const char *text = sqlinfo_const_string(v);
    char *end;
    while (text && isspace((unsigned char)*text))
        text++;
    if (!text || !isdigit((unsigned char)*text)) /* no sign: negative values are refused */
        return false;
    n = strtol(text, &end, 0);
    while (isspace((unsigned char)*end))
        end++;
    size_t len = strlen(end);
    while (len > 0 && isspace((unsigned char)end[len - 1]))
        len--;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strlen(units[i].unit) == len && strncmp(end, units[i].unit, len) == 0) {
            if (n < 0 || n > INT32_MAX / units[i].factor)
                return false;
            *ms = n * units[i].factor;
            return true;
        }
    return false;
}

/* The value node v gives carried setting canon, in a spelling the server takes, when the
 * server cannot refuse it; NULL otherwise. out (outsz bytes) may hold the text. */
static const char *carried_value(const char *canon, const PgQuery__Node *v, char *out, size_t outsz)
{
    static const char *const levels[] = {"serializable", "repeatable read", "read committed",
                                         "read uncommitted"};
    long n;
    bool b;
    if (strcmp(canon, "extra_float_digits") == 0) {
        if (!const_int(v, &n) || n < -15 || n > 3)
            return NULL;
        snprintf(out, outsz, "%ld", n);
        return out;
    }
    if (strcmp(canon, "default_transaction_isolation") == 0) {
        const char *level = sqlinfo_const_string(v);
        for (size_t i = 0; level && i < sizeof(levels) / sizeof(levels[0]); i++)
            if (strcasecmp(level, levels[i]) == 0)
                return levels[i];
        return NULL;
    }
    if (strcmp(canon, "default_transaction_read_only") == 0 ||
        strcmp(canon, "default_transaction_deferrable") == 0)
        return const_bool(v, &b) ? (b ? "on" : "off") : NULL;
    if (strcmp(canon, "statement_timeout") == 0 || strcmp(canon, "lock_timeout") == 0 ||
        strcmp(canon, "idle_in_transaction_session_timeout") == 0) {
        if (!timeout_ms(v, &n))
            return NULL;
        snprintf(out, outsz, "%ld", n);
        return out;
    }
    return NULL;
}

/* Records change c: setting canon takes value v (which may be c's own buffer already). */
static void put_change(struct guard_carry *c, const char *canon, const char *v)
{
    snprintf(c->name, sizeof(c->name), "%s", canon);
    if (v != c->value)
        snprintf(c->value, sizeof(c->value), "%s", v);
}

/* The changes a carried SET or RESET makes (names canonical, "" values for RESET): their
 * number, 0 when s is not one. SET SESSION CHARACTERISTICS AS TRANSACTION sets the
 * default_transaction_* settings of its modes. */
static size_t carried_changes(const PgQuery__VariableSetStmt *s, struct guard_carry *out,
                              size_t max)
{
    const char *canon = s->name ? params_settable_name(s->name) : NULL;
    const char *v;
    switch (s->kind) {
    case PG_QUERY__VARIABLE_SET_KIND__VAR_SET_DEFAULT:
    case PG_QUERY__VARIABLE_SET_KIND__VAR_RESET: v = ""; break;
    case PG_QUERY__VARIABLE_SET_KIND__VAR_SET_VALUE:
        v = canon && s->n_args == 1
                ? carried_value(canon, s->args[0], out[0].value, sizeof(out[0].value))
                : NULL;
        break;
    case PG_QUERY__VARIABLE_SET_KIND__VAR_SET_MULTI:
        if (!s->name || strcasecmp(s->name, "SESSION CHARACTERISTICS") != 0 || s->n_args > max)
            return 0;
        for (size_t i = 0; i < s->n_args; i++) {
            const PgQuery__Node *a = s->args[i];
            char name[64];
            if (a->node_case != PG_QUERY__NODE__NODE_DEF_ELEM || !a->def_elem->defname)
                return 0;
            snprintf(name, sizeof(name), "default_%s", a->def_elem->defname);
            if (!(canon = params_settable_name(name)) ||
                !(v = carried_value(canon, a->def_elem->arg, out[i].value, sizeof(out[i].value))))
                return 0;
            put_change(&out[i], canon, v);
        }
        return s->n_args;
    default: return 0;
    }
    if (!canon || follows_client(canon) || !v)
        return 0;
    put_change(&out[0], canon, v);
    return 1;
}

/* A session-level SET or RESET that lakeproxy carries with the client (see carry in
 * guard.h): true when s is one, noted in the verdict. A value the server could refuse is not
 * carried: every later server connection of the client would fail to take it. */
static bool note_carried_set(struct check *k, const PgQuery__VariableSetStmt *s)
{
    struct guard_carry found[GUARD_MAX_CARRY];
    size_t n = carried_changes(s, found, GUARD_MAX_CARRY);
    if (n == 0)
        return false;
    if ((size_t)k->out->n_carry + n > GUARD_MAX_CARRY) { /* refused, as uncarried SETs are */
        note_session_set(k, found[0].name, false);
        return true;
    }
    memcpy(&k->out->carry[k->out->n_carry], found, n * sizeof(found[0]));
    k->out->n_carry += (int)n;
    return true;
}

/* The seed setting seeds random() for the rest of the session, however local the SET: the
 * server must not serve the next client (as after setseed). */
static void note_seed(struct check *k, const char *name)
{
    if (name && strcasecmp(name, "seed") == 0)
        k->out->retire = true;
}

static void check_set(struct check *k, const PgQuery__VariableSetStmt *s)
{
    char low[96];
    bool assigns = s->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_VALUE;
    note_seed(k, s->name);
    if (s->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_RESET_ALL)
        refuse(k, "RESET ALL is not allowed: it would reset the settings lakeproxy injects", NULL);
    else if (s->name && is_protected(k, s->name))
        refuse(k, "setting \"%s\" is protected: lakeproxy sets it, clients cannot change it",
               lowered(s->name, low));
    else if (s->name && assigns && changes_how_text_reads(s->name))
        check_text_reading_value(k, s->name, s->n_args == 1 ? s->args[0] : NULL);
    if (s->name && changes_how_text_reads(s->name))
        k->out->changes_text_reading = true;
    if (s->name && !s->is_local && note_carried_set(k, s))
        return;
    if (s->name && !s->is_local &&
        (assigns || s->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_MULTI ||
         s->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_CURRENT) &&
        strcasecmp(s->name, "TRANSACTION") != 0)
        note_session_set(k, s->name, false);
}

/* Is n the constant true (true, 'on', 't'::boolean ...)? A string cast to boolean is read
 * as the server reads it only in the words bool_word knows; anything else is not true. */
static bool is_true(const PgQuery__Node *n)
{
    static const char *const boolean[] = {"bool", NULL};
    if (n && n->node_case == PG_QUERY__NODE__NODE_TYPE_CAST &&
        sqlinfo_is_catalog_type(n->type_cast->type_name, boolean))
        n = n->type_cast->arg; /* (true::boolean, 't'::boolean) */
    if (n && n->node_case == PG_QUERY__NODE__NODE_A_CONST &&
        n->a_const->val_case == PG_QUERY__A__CONST__VAL_BOOLVAL)
        return n->a_const->boolval && n->a_const->boolval->boolval;
    return bool_word(sqlinfo_const_string(n)) == 1;
}

/* The last part of a function's (possibly schema-qualified) name. */
static const char *func_name(const PgQuery__FuncCall *f)
{
    if (f->n_funcname == 0)
        return "";
    const PgQuery__Node *last = f->funcname[f->n_funcname - 1];
    return last->node_case == PG_QUERY__NODE__NODE_STRING && last->string->sval ? last->string->sval
                                                                                : "";
}

/* Calls that leave state with the server connection after the transaction: session-level
 * advisory locks, and session settings kept outside the settings (setseed: the next client's
 * random(); pg_trgm's set_limit; isn's isn_weak). */
static bool leaves_session_state(const char *fn)
{
    return strncmp(fn, "pg_advisory_lock", 16) == 0 ||
           strncmp(fn, "pg_try_advisory_lock", 20) == 0 || strcasecmp(fn, "setseed") == 0 ||
           strcasecmp(fn, "set_limit") == 0 || strcasecmp(fn, "isn_weak") == 0;
}

/* The refusals a function's name alone decides. Also applied to attribute notation, which
 * PostgreSQL runs as a call of a one-argument function: (1).pg_stat_get_activity and
 * g.ts_stat are pg_stat_get_activity(1) and ts_stat(g). */
static void check_called_name(struct check *k, const char *fn)
{
    if (leaves_session_state(fn)) {
        k->out->retire = true;
        snprintf(k->state_call, sizeof(k->state_call), "%s", fn); /* (the tree goes first) */
    }
    enum hiddensql_kind hidden = hiddensql_kind(fn);
    if (hidden == HIDDENSQL_TEXT)
        refuse(k, "%s() is not allowed: it runs SQL text the guard cannot check", fn);
    if (hidden == HIDDENSQL_RELATION)
        refuse(k,
               "%s() is not allowed under row-level security: it reads the relations it "
               "is given by name out of the guard's sight (pg_stat_activity among them)",
               fn);
    if (in_names(fn, backend_signals, COUNT(backend_signals)))
        refuse(k,
               "%s() is not allowed under row-level security: every client's server "
               "connections log in as the same role, so it could stop another client's query "
               "or session",
               fn);
    if (in_names(fn, activity_functions, COUNT(activity_functions)) ||
        strncmp(fn, BACKEND_FUNCTIONS, strlen(BACKEND_FUNCTIONS)) == 0)
        refuse(k,
               "%s() is not allowed under row-level security: it shows other clients' "
               "statements, their values included",
               fn);
    if (in_names(fn, large_object_functions, COUNT(large_object_functions)))
        refuse(k, WHY_LARGE_OBJECT, fn);
    if (strncasecmp(fn, TWO_PHASE_FUNCTION, strlen(TWO_PHASE_FUNCTION)) == 0)
        refuse(k, WHY_TWO_PHASE, NULL);
}

static void check_call(struct check *k, const PgQuery__FuncCall *f)
{
    char low[96];
    const char *fn = func_name(f);
    check_called_name(k, fn);
    if (strncasecmp(fn, LARGE_OBJECT_PREFIX, strlen(LARGE_OBJECT_PREFIX)) == 0)
        refuse(k, WHY_LARGE_OBJECT, fn);
    if (strcmp(fn, "set_config") != 0)
        return;
    const PgQuery__Node *local = sqlinfo_call_arg(f, 2, "is_local");
    const char *name = sqlinfo_const_string(sqlinfo_call_arg(f, 0, "setting_name"));
    if (!name)
        refuse(k,
               "set_config() with a computed setting name is not allowed (write the name as a "
               "string constant, cast to nothing but pg_catalog.text or varchar)",
               NULL);
    else if (is_protected(k, name)) {
        if (refuse(k, "setting \"%s\" is protected: lakeproxy sets it, clients cannot change it",
                   lowered(name, low)))
            k->out->reason_quotes_literal = true; /* (the name is set_config's string) */
    } else if (changes_how_text_reads(name)) {
        check_text_reading_value(k, name, sqlinfo_call_arg(f, 1, "new_value"));
        k->out->changes_text_reading = true;
    }
    note_seed(k, name);
    if (name && !(local && is_true(local)))
        note_session_set(k, name, true);
}

/* CREATE TEMP ..., SELECT INTO TEMP, or a relation named in a pg_temp schema (pg_temp,
 * pg_temp_3 ...). Other objects named there are caught by names_temp_schema. */
static bool is_temporary(const PgQuery__RangeVar *r)
{
    return (r->relpersistence && strcmp(r->relpersistence, "t") == 0) ||
           (r->schemaname && strncasecmp(r->schemaname, "pg_temp", 7) == 0);
}

/* Any name or string that starts with pg_temp (pg_temp, pg_temp_3 ...): it may qualify an
 * object in the session's temporary schema. Over-broad on purpose: retiring a server is cheap,
 * leaving a temporary object for the next client is not. */
static bool names_temp_schema(const PgQuery__String *str)
{
    return str->sval && strncasecmp(str->sval, "pg_temp", 7) == 0;
}

/* Statements that define code or policy on the server, which later runs or applies out of
 * the guard's sight: refused for clients under row-level security. */
static const struct {
    const ProtobufCMessageDescriptor *d;
    const char *what;
} refused_stmts[] = {
    {&pg_query__create_function_stmt__descriptor, "CREATE FUNCTION/PROCEDURE"},
    {&pg_query__alter_function_stmt__descriptor, "ALTER FUNCTION/PROCEDURE"},
    {&pg_query__define_stmt__descriptor, "CREATE AGGREGATE/OPERATOR/TYPE"},
    {&pg_query__create_trig_stmt__descriptor, "CREATE TRIGGER"},
    {&pg_query__create_event_trig_stmt__descriptor, "CREATE EVENT TRIGGER"},
    {&pg_query__rule_stmt__descriptor, "CREATE RULE"},
    {&pg_query__create_cast_stmt__descriptor, "CREATE CAST"},
    {&pg_query__create_conversion_stmt__descriptor, "CREATE CONVERSION"},
    {&pg_query__create_transform_stmt__descriptor, "CREATE TRANSFORM"},
    {&pg_query__create_op_class_stmt__descriptor, "CREATE OPERATOR CLASS"},
    {&pg_query__create_op_family_stmt__descriptor, "CREATE OPERATOR FAMILY"},
    {&pg_query__alter_op_family_stmt__descriptor, "ALTER OPERATOR FAMILY"},
    {&pg_query__create_plang_stmt__descriptor, "CREATE LANGUAGE"},
    {&pg_query__create_extension_stmt__descriptor, "CREATE EXTENSION"},
    {&pg_query__alter_extension_stmt__descriptor, "ALTER EXTENSION"},
    {&pg_query__alter_extension_contents_stmt__descriptor, "ALTER EXTENSION"},
    {&pg_query__load_stmt__descriptor, "LOAD"},
    {&pg_query__create_policy_stmt__descriptor, "CREATE POLICY"},
    {&pg_query__alter_policy_stmt__descriptor, "ALTER POLICY"},
};

/* The name of a statement type the guard refuses, or NULL. */
static const char *refused_stmt(const ProtobufCMessageDescriptor *d)
{
    for (size_t i = 0; i < sizeof(refused_stmts) / sizeof(refused_stmts[0]); i++)
        if (refused_stmts[i].d == d)
            return refused_stmts[i].what;
    return NULL;
}

/* Statements that create a relation or type: with pg_temp first in search_path (which a
 * client can arrange without naming it), an unqualified name is a temporary object. */
static const ProtobufCMessageDescriptor *const creating_stmts[] = {
    &pg_query__create_stmt__descriptor,          &pg_query__view_stmt__descriptor,
    &pg_query__create_table_as_stmt__descriptor, &pg_query__create_seq_stmt__descriptor,
    &pg_query__composite_type_stmt__descriptor,  &pg_query__create_enum_stmt__descriptor,
    &pg_query__create_range_stmt__descriptor,    &pg_query__create_domain_stmt__descriptor,
    &pg_query__into_clause__descriptor,          &pg_query__create_stats_stmt__descriptor,
};

static bool creates_object(const ProtobufCMessageDescriptor *d)
{
    for (size_t i = 0; i < sizeof(creating_stmts) / sizeof(creating_stmts[0]); i++)
        if (creating_stmts[i] == d)
            return true;
    return false;
}

/* Statements that write through a relation (pg_settings' UPDATE rule runs set_config). */
static bool writes_or_defines(const ProtobufCMessageDescriptor *d)
{
    return d == &pg_query__update_stmt__descriptor || d == &pg_query__insert_stmt__descriptor ||
           d == &pg_query__delete_stmt__descriptor || d == &pg_query__merge_stmt__descriptor ||
           d == &pg_query__view_stmt__descriptor ||
           d == &pg_query__create_table_as_stmt__descriptor;
}

/* ALTER TABLE ... DISABLE / NO FORCE ROW LEVEL SECURITY. */
static bool weakens_rls(const PgQuery__AlterTableCmd *cmd)
{
    return cmd->subtype == PG_QUERY__ALTER_TABLE_TYPE__AT_DisableRowSecurity ||
           cmd->subtype == PG_QUERY__ALTER_TABLE_TYPE__AT_NoForceRowSecurity;
}

/* PREPARE, EXECUTE or DEALLOCATE of a name lakeproxy uses for its own prepared statements. */
static void check_statement_name(struct check *k, const char *name)
{
    if (name &&
        strncasecmp(name, GUARD_RESERVED_STMT_PREFIX, strlen(GUARD_RESERVED_STMT_PREFIX)) == 0)
        refuse(k, "prepared statement names beginning with \"%s\" are reserved by lakeproxy",
               GUARD_RESERVED_STMT_PREFIX);
}

static void check_range_var(struct check *k, const PgQuery__RangeVar *r)
{
    if (is_temporary(r))
        k->out->retire = true;
    if (r->relname && strcasecmp(r->relname, "pg_settings") == 0)
        k->reads_settings_view = true;
    if (in_names(r->relname, activity_views, COUNT(activity_views)))
        refuse(k,
               "%s is not readable under row-level security: it shows other clients' "
               "statements, their values included",
               r->relname);
    if (in_names(r->relname, large_object_catalogs, COUNT(large_object_catalogs)))
        refuse(k, WHY_LARGE_OBJECT, r->relname);
    if (r->relname && strcasecmp(r->relname, "pg_prepared_xacts") == 0)
        refuse(k, WHY_TWO_PHASE, NULL);
}

/* Effects that outlive the transaction (the server must retire afterwards) and what the
 * statement touches. */
static void note_effects(struct check *k, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__string__descriptor && names_temp_schema((const PgQuery__String *)m))
        k->out->retire = true;
    else if (d == &pg_query__range_var__descriptor)
        check_range_var(k, (const PgQuery__RangeVar *)m);
    else if (creates_object(d) || d == &pg_query__listen_stmt__descriptor ||
             d == &pg_query__prepare_stmt__descriptor) /* another tenant could EXPLAIN it */
        k->out->retire = true;
    else if (d == &pg_query__declare_cursor_stmt__descriptor &&
             (((const PgQuery__DeclareCursorStmt *)m)->options & CURSOR_OPT_HOLD))
        k->out->retire = true;
    if (writes_or_defines(d))
        k->writes = true;
}

/* The names attribute notation could call as functions: each field of (expr).name, and the
 * last of a qualified column reference (alias.name, schema.table.name). */
static void check_attribute_calls(struct check *k, const ProtobufCMessage *m)
{
    PgQuery__Node *const *names;
    size_t n, from;
    if (m->descriptor == &pg_query__a__indirection__descriptor) {
        const PgQuery__AIndirection *a = (const PgQuery__AIndirection *)m;
        names = a->indirection;
        n = a->n_indirection;
        from = 0;
    } else {
        const PgQuery__ColumnRef *r = (const PgQuery__ColumnRef *)m;
        names = r->fields;
        n = r->n_fields;
        from = n > 1 ? n - 1 : n;
    }
    for (size_t i = from; i < n; i++)
        if (names[i]->node_case == PG_QUERY__NODE__NODE_STRING && names[i]->string->sval)
            check_called_name(k, names[i]->string->sval);
}

/* Refusals that depend on what a node says. */
static void check_shared_role(struct check *k, const ProtobufCMessage *m);

static void check_node(struct check *k, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__variable_set_stmt__descriptor)
        check_set(k, (const PgQuery__VariableSetStmt *)m);
    else if (d == &pg_query__func_call__descriptor)
        check_call(k, (const PgQuery__FuncCall *)m);
    else if (d == &pg_query__a__indirection__descriptor || d == &pg_query__column_ref__descriptor)
        check_attribute_calls(k, m);
    else if (d == &pg_query__do_stmt__descriptor)
        refuse(k, "DO blocks are not allowed: they run code the guard cannot check", NULL);
    else if (d == &pg_query__alter_role_set_stmt__descriptor ||
             d == &pg_query__alter_database_set_stmt__descriptor ||
             d == &pg_query__alter_system_stmt__descriptor)
        k->alters_defaults = true;
    else if (d == &pg_query__discard_stmt__descriptor &&
             ((const PgQuery__DiscardStmt *)m)->target == PG_QUERY__DISCARD_MODE__DISCARD_ALL)
        refuse(k, "DISCARD ALL is not allowed: lakeproxy resets server connections itself", NULL);
    else if (d == &pg_query__alter_table_cmd__descriptor &&
             weakens_rls((const PgQuery__AlterTableCmd *)m))
        refuse(k, "disabling row level security is not allowed", NULL);
    else if (d == &pg_query__drop_stmt__descriptor &&
             ((const PgQuery__DropStmt *)m)->remove_type == PG_QUERY__OBJECT_TYPE__OBJECT_POLICY)
        refuse(k, "DROP POLICY is not allowed under row-level security", NULL);
    else if (d == &pg_query__prepare_stmt__descriptor)
        check_statement_name(k, ((const PgQuery__PrepareStmt *)m)->name);
    else if (d == &pg_query__execute_stmt__descriptor)
        check_statement_name(k, ((const PgQuery__ExecuteStmt *)m)->name);
    else if (d == &pg_query__deallocate_stmt__descriptor)
        check_statement_name(k, ((const PgQuery__DeallocateStmt *)m)->name);
    else
        check_shared_role(k, m);
}

/* Statements whose effect reaches past the client's rows because every tenant's server
 * connections log in as one role: TRUNCATE (row-level security does not apply to it),
 * privileges, large objects' owners, prepared transactions. */
static void check_shared_role(struct check *k, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__truncate_stmt__descriptor)
        refuse(k,
               "TRUNCATE is not allowed under row-level security: row-level security does not "
               "apply to it, so it would empty every client's rows (use DELETE)",
               NULL);
    else if (d == &pg_query__grant_stmt__descriptor || d == &pg_query__grant_role_stmt__descriptor)
        refuse(k,
               "GRANT and REVOKE are not allowed under row-level security: every client's "
               "server connections log in as the same role, so a privilege changed is changed "
               "for all",
               NULL);
    else if (d == &pg_query__alter_owner_stmt__descriptor &&
             ((const PgQuery__AlterOwnerStmt *)m)->object_type ==
                 PG_QUERY__OBJECT_TYPE__OBJECT_LARGEOBJECT)
        refuse(k, WHY_LARGE_OBJECT, "ALTER LARGE OBJECT");
    else if (sqlinfo_is_two_phase(m))
        refuse(k, WHY_TWO_PHASE, NULL);
}

/* Statements that store expressions run later, by statements whose text shows none of
 * them: views (materialized too), tables' defaults, checks and generated columns, domains. */
static bool stores_expressions(const ProtobufCMessageDescriptor *d)
{
    return d == &pg_query__view_stmt__descriptor || d == &pg_query__create_stmt__descriptor ||
           d == &pg_query__create_table_as_stmt__descriptor ||
           d == &pg_query__create_domain_stmt__descriptor ||
           d == &pg_query__alter_table_stmt__descriptor ||
           d == &pg_query__alter_domain_stmt__descriptor;
}

static void visit(void *arg, const ProtobufCMessage *m)
{
    struct check *k = arg;
    const char *what = refused_stmt(m->descriptor);
    if (what) {
        refuse(k,
               "%s is not allowed under row-level security: it defines code or policy the "
               "guard cannot check",
               what);
        return;
    }
    note_effects(k, m);
    check_node(k, m);
    if (stores_expressions(m->descriptor))
        k->stores_expressions = true;
}

/* Only the reserved statement names: the check for clients not under row-level security. */
static void visit_names(void *arg, const ProtobufCMessage *m)
{
    struct check *k = arg;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__prepare_stmt__descriptor)
        check_statement_name(k, ((const PgQuery__PrepareStmt *)m)->name);
    else if (d == &pg_query__execute_stmt__descriptor)
        check_statement_name(k, ((const PgQuery__ExecuteStmt *)m)->name);
    else if (d == &pg_query__deallocate_stmt__descriptor)
        check_statement_name(k, ((const PgQuery__DeallocateStmt *)m)->name);
}

/* The reserved prefix, and U& (a Unicode-escaped identifier, U&"\006Cp_...", PostgreSQL
 * reads as the name it spells): one of them in a text before it can name a reserved statement. */
static const char *const reserved_spellings[] = {GUARD_RESERVED_STMT_PREFIX, "u&"};
TEXTSCAN_SET_OF(reserved_set, reserved_spellings)

bool guard_mentions_reserved_prefix(const char *sql)
{
    return textscan_set_find(&reserved_set, sql, ~0u) != 0;
}

bool guard_uses_reserved_name(const char *sql, struct guard_verdict *out)
{
    out->refuse = false;
    if (!guard_mentions_reserved_prefix(sql))
        return false; /* (nearly every statement: no need to clear the messages) */
    struct check k = {.prefix = "", .prefix_len = 0, .out = out};
    char err[160];
    memset(out, 0, sizeof(*out));
    /* text that does not parse reaches the server, which refuses it just the same */
    return sqlinfo_walk(sql, visit_names, &k, err, sizeof(err)) && out->refuse;
}

void guard_check(const char *sql, const char *prefix, struct guard_verdict *out)
{
    struct check k = {.prefix = prefix, .prefix_len = strlen(prefix), .out = out};
    char err[160];
    memset(out, 0, sizeof(*out));
    bool parsed = sqlinfo_walk(sql, visit, &k, err, sizeof(err));
    if (parsed && k.reads_settings_view && k.writes)
        refuse(&k, "writing through pg_settings is not allowed: its rules change settings", NULL);
    if (parsed && k.stores_expressions && k.state_call[0])
        refuse(&k,
               "a view, default or check that calls %s() is not allowed under row-level "
               "security: each later use would leave its session state on a pooled server "
               "unseen",
               k.state_call);
    if (parsed && k.alters_defaults) /* after the walk: a protected name's reason comes first */
        refuse(&k,
               "ALTER ROLE, DATABASE or SYSTEM ... SET/RESET is not allowed under row-level "
               "security: it changes the settings every client's server connections start with",
               NULL);
    if (!parsed) {
        memset(out, 0, sizeof(*out));
        out->refuse = true;
        snprintf(out->reason, sizeof(out->reason),
                 "statement refused: lakeproxy could not parse it (%.120s)", err);
    }
}

struct guard_cache {
    struct textcache *tc;
    char prefix[64];
    struct guard_verdict scratch; /* the answer for texts too long to cache */
};

struct guard_cache *guard_cache_new(size_t max_entries)
{
    struct guard_cache *gc = calloc(1, sizeof(*gc));
    if (gc && !(gc->tc = textcache_new(max_entries, sizeof(struct guard_verdict)))) {
        free(gc);
        gc = NULL;
    }
    return gc;
}

void guard_cache_free(struct guard_cache *gc)
{
    if (!gc)
        return;
    textcache_free(gc->tc);
    free(gc);
}

/* Words at least one of which appears (case-insensitively, anywhere: in strings and comments
 * too) in the text of every statement the guard refuses or flags: each rule needs one of these
 * keywords or names (set_config and pg_settings; CREATE, ALTER, DROP, LOAD, DISCARD, LISTEN,
 * TEMP/TEMPORARY and pg_temp, WITH HOLD, the functions of hiddensql.c (a unit test holds
 * this list to its table), advisory locks and the other calls that leave session state
 * (setseed ...), lp_ statement names, the views and functions of other sessions' activity, prepared
 * statements and cursors, SQL PREPARE, the backend signals), or a U& identifier that could
 * spell one with escapes. */
static const char *const guard_words[] = {
    "set_config", "pg_settings", "discard",   "create",   "alter",     "drop",
    "load",       "temp",        "hold",      "listen",   "_to_xml", /* query_to_xml and the
                                                                        relation readers */
    "_backend", /* pg_cancel_backend, pg_terminate_backend */
    "ts_stat",    "ts_rewrite",  "dblink",    "crosstab", "connectby", "xpath_table",
    "advisory",   "setseed",     "set_limit", "isn_weak", "lp_",       "u&",
    "pg_stat_",   "pg_cursor",   "prepare", /* SQL PREPARE, and pg_prepared_statements */
};

/* ... and the words of the rules over what one shared role reaches (a second set: the first is
 * full): TRUNCATE, GRANT, REVOKE, large objects (lo_*, loread, lowrite, pg_largeobject; ALTER
 * LARGE OBJECT has alter). Two-phase commit's words all hold "prepare". */
static const char *const guard_words_more[] = {"truncate", "grant",   "revoke",     "lo_",
                                               "loread",   "lowrite", "largeobject"};
TEXTSCAN_SET_OF(more_set, guard_words_more)

/* Does text hold more than one statement? Conservatively: anything but white space after
 * its first ';' (which may sit in a string: then it merely parses). */
static bool several_statements(const char *text)
{
    const char *semi = strchr(text, ';');
    if (!semi)
        return false;
    for (const char *p = semi + 1; *p; p++)
        if (!isspace((unsigned char)*p))
            return true;
    return false;
}

/* Is word (lower case) the first token of text? Text that starts with anything but a letter
 * after white space (a comment, a parenthesis) counts as yes: it is parsed. */
static bool starts_with_word(const char *text, const char *word)
{
    while (isspace((unsigned char)*text))
        text++;
    if (!isalpha((unsigned char)*text))
        return true;
    size_t n = strlen(word);
    return strncasecmp(text, word, n) == 0 && !isalnum((unsigned char)text[n]) && text[n] != '_' &&
           text[n] != '$';
}

/* guard_words, then the words that matter only together or in some places, as one set: one
 * pass over a text finds them all. */
enum { N_GUARD = sizeof(guard_words) / sizeof(guard_words[0]) };
enum { W_INTO = N_GUARD, W_SELECT, W_IMPORT, W_SET, W_DO, N_SCAN };
_Static_assert((int)N_SCAN <= (int)TEXTSCAN_SET_MAX, "too many pre-filter words for one pass");
static const char *scan_words[N_SCAN];
static struct textscan_set scan_set;
static pthread_once_t scan_set_made = PTHREAD_ONCE_INIT;

static void make_scan_set(void)
{
    for (unsigned i = 0; i < N_GUARD; i++)
        scan_words[i] = guard_words[i];
    scan_words[W_INTO] = "into";
    scan_words[W_SELECT] = "select";
    scan_words[W_IMPORT] = "import";
    scan_words[W_SET] = "set";
    scan_words[W_DO] = "do";
    textscan_set_init(&scan_set, scan_words, N_SCAN);
}

bool guard_may_matter(const char *sql)
{
    pthread_once(&scan_set_made, make_scan_set);
    uint32_t any_guard = (1u << N_GUARD) - 1;
    uint32_t f = textscan_set_find(&scan_set, sql, any_guard);
    if ((f & any_guard) || textscan_set_find(&more_set, sql, ~0u))
        return true;
    /* SELECT ... INTO and IMPORT FOREIGN SCHEMA ... INTO create tables; INSERT INTO does not */
    if ((f & 1u << W_INTO) && (f & (1u << W_SELECT | 1u << W_IMPORT)))
        return true;
    /* SET, RESET and DO are statements of their own (inside ALTER or CREATE they are caught
     * by those words): they matter as the first statement or in a multi-statement text, not
     * as UPDATE ... SET or ON CONFLICT DO */
    bool set = f & 1u << W_SET, doo = f & 1u << W_DO;
    if (!set && !doo)
        return false;
    return several_statements(sql) ||
           (set && (starts_with_word(sql, "set") || starts_with_word(sql, "reset"))) ||
           (doo && starts_with_word(sql, "do"));
}

const struct guard_verdict *guard_cache_check(struct guard_cache *gc, const char *sql,
                                              const char *prefix)
{
    static const struct guard_verdict pass;
    if (!guard_may_matter(sql))
        return &pass;
    if (strcmp(gc->prefix, prefix) != 0) {
        textcache_clear(gc->tc);
        snprintf(gc->prefix, sizeof(gc->prefix), "%s", prefix);
    }
    size_t len = strlen(sql);
    struct guard_verdict *v = textcache_get(gc->tc, 0, sql, len);
    if (v)
        return v;
    v = len <= GUARD_CACHE_MAX_TEXT ? textcache_put(gc->tc, 0, sql, len) : NULL;
    if (!v) /* too long to keep, or no memory: checked every time */
        v = &gc->scratch;
    guard_check(sql, prefix, v);
    return v;
}

/* PostgreSQL's client-only encodings, in which the second byte of a character can be a
 * backslash or quote (names as PostgreSQL compares them: lower case, letters and digits). */
static const char *const unsafe_encodings[] = {
    "sjis",   "shiftjis",   "mskanji", "win932",  "windows932", "shiftjis2004", "big5",
    "win950", "windows950", "gbk",     "win936",  "windows936", "cp936",        "uhc",
    "win949", "windows949", "cp949",   "gb18030", "johab",
};

bool guard_safe_client_encoding(const char *name)
{
    char clean[32];
    size_t n = 0;
    if (!name || !*name)
        return false;
    for (const char *p = name; *p && n + 1 < sizeof(clean); p++)
        if (isalnum((unsigned char)*p))
            clean[n++] = (char)tolower((unsigned char)*p);
    clean[n] = '\0';
    for (size_t i = 0; i < sizeof(unsafe_encodings) / sizeof(unsafe_encodings[0]); i++)
        if (strcmp(clean, unsafe_encodings[i]) == 0)
            return false;
    return true;
}

bool guard_scs_on(const char *value)
{
    return value && (strcasecmp(value, "on") == 0 || strcasecmp(value, "true") == 0 ||
                     strcasecmp(value, "yes") == 0 || strcmp(value, "1") == 0);
}
