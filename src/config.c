/* config.c: YAML -> immutable struct config. The document is walked against tables of known
 * keys, so unknown keys, wrong types and out-of-range values become errors that name
 * file:line:column; every error is collected, not just the first. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unicase.h>
#include <uninorm.h>
#include <unistd.h>
#include <yaml.h>

#include "auth.h"

/* auth_query's query when none is given: a password that expired is none */
#define DEFAULT_AUTH_QUERY                                                                         \
    "SELECT usename, passwd FROM pg_catalog.pg_shadow "                                            \
    "WHERE usename = $1 AND (valuntil IS NULL OR valuntil > now())"

struct ctx {
    const char *file;
    yaml_document_t *doc;
    struct config_errors *errs;
};

enum ftype { F_STR, F_INT, F_ENUM, F_SUB, F_LIST, F_MAP, F_BOOL, F_NETS, F_OWN };
/* F_OWN: a key the section's own loader reads (a list of mappings, say): walk_at skips it. */

struct table;

/* One known key: where its value goes and what it may be. */
struct field {
    const char *key;
    enum ftype type;
    size_t off;               /* offset of the target in the struct being filled */
    long min, max;            /* F_INT range */
    const char *const *names; /* F_ENUM spellings, index = value */
    const struct table *sub;  /* F_SUB: a nested mapping filling the same struct */
    bool required;
};

struct table {
    const struct field *fields;
    size_t n;
};

/* The largest configuration file read (a policy of thousands of entries is far smaller). */
#define CONFIG_FILE_MAX (16u << 20)

static void add_error(struct ctx *c, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_error(struct ctx *c, yaml_mark_t m, const char *fmt, ...)
{
    char msg[512], *line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (asprintf(&line, "%s:%zu:%zu: %s", c->file, m.line + 1, m.column + 1, msg) < 0)
        return;
    char **grown = realloc(c->errs->msgs, (c->errs->n + 1) * sizeof(char *));
    if (!grown) {
        free(line);
        return;
    }
    c->errs->msgs = grown;
    c->errs->msgs[c->errs->n++] = line;
}

static yaml_node_t *node(struct ctx *c, int id)
{
    return yaml_document_get_node(c->doc, id);
}

static const char *kind_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    default: return "a scalar";
    }
}

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* A plain empty scalar, "~" or "null": the key is there without a value. */
static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = scalar(n);
    return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0;
}

static bool want_scalar(struct ctx *c, const yaml_node_t *n, const char *path, const char *what)
{
    if (n->type != YAML_SCALAR_NODE) {
        add_error(c, n->start_mark, "%s: expected %s, got %s", path, what, kind_name(n));
        return false;
    }
    if (is_null(n)) {
        add_error(c, n->start_mark, "%s: missing value (expected %s)", path, what);
        return false;
    }
    return true;
}

static void set_str(struct ctx *c, const yaml_node_t *n, const char *path, char **dst)
{
    if (!want_scalar(c, n, path, "a string"))
        return;
    free(*dst);
    *dst = strdup(scalar(n));
}

/* Integers are plain scalars of digits: "5432" in quotes is a string, and an error. */
static void set_int(struct ctx *c, const yaml_node_t *n, const char *path, const struct field *f,
                    int *dst)
{
    if (!want_scalar(c, n, path, "an integer"))
        return;
    const char *v = scalar(n);
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    bool digits = isdigit((unsigned char)v[0]) || (v[0] == '-' && isdigit((unsigned char)v[1]));
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || !digits || *end || errno) {
        add_error(c, n->start_mark, "%s: expected an integer, got \"%s\"", path, v);
        return;
    }
    if (x < f->min || x > f->max) {
        add_error(c, n->start_mark, "%s: %ld is out of range (%ld to %ld)", path, x, f->min,
                  f->max);
        return;
    }
    *dst = (int)x;
}

static void set_enum(struct ctx *c, const yaml_node_t *n, const char *path, const struct field *f,
                     int *dst)
{
    if (!want_scalar(c, n, path, "a string"))
        return;
    char allowed[256] = "";
    for (int i = 0; f->names[i]; i++) {
        if (strcmp(scalar(n), f->names[i]) == 0) {
            *dst = i;
            return;
        }
        snprintf(allowed + strlen(allowed), sizeof(allowed) - strlen(allowed), "%s%s",
                 i ? ", " : "", f->names[i]);
    }
    add_error(c, n->start_mark, "%s: unknown value \"%s\" (expected one of: %s)", path, scalar(n),
              allowed);
}

static void walk_at(struct ctx *c, const yaml_node_t *map, const char *path, const struct table *t,
                    void *base);
static bool want_mapping(struct ctx *c, const yaml_node_t *n, const char *path);
static const char *pair_key(struct ctx *c, const yaml_node_pair_t *p, const char *path);
static bool is_duplicate(struct ctx *c, const yaml_node_t *map, const yaml_node_pair_t *p,
                         const char *key, const char *path);
static void join(char *out, size_t outsz, const char *path, const char *key);

/* A list of strings: [a, b] or a block sequence. */
static void set_list(struct ctx *c, const yaml_node_t *n, const char *path, struct string_list *dst)
{
    char item[300];
    if (n->type != YAML_SEQUENCE_NODE) {
        add_error(c, n->start_mark, "%s: expected a list, got %s", path, kind_name(n));
        return;
    }
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    dst->items = calloc(count ? count : 1, sizeof(char *));
    for (size_t i = 0; dst->items && i < count; i++) {
        snprintf(item, sizeof(item), "%s[%zu]", path, i);
        char *v = NULL;
        set_str(c, node(c, n->data.sequence.items.start[i]), item, &v);
        if (v)
            dst->items[dst->n++] = v;
    }
}

/* A list of address rules (netrule.h): [10.0.0.0/8, "::1", unix]. Each mistake is reported at
 * its item; an empty list is refused (nobody could connect: remove the key for anywhere). */
static void set_nets(struct ctx *c, const yaml_node_t *n, const char *path, struct net_rules *dst)
{
    char item[300];
    if (n->type != YAML_SEQUENCE_NODE) {
        add_error(c, n->start_mark, "%s: expected a list, got %s", path, kind_name(n));
        return;
    }
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0)
        add_error(c, n->start_mark,
                  "%s: an empty list lets nobody connect: remove the key to allow every address",
                  path);
    dst->items = calloc(count ? count : 1, sizeof(*dst->items));
    for (size_t i = 0; dst->items && i < count; i++) {
        const yaml_node_t *at = node(c, n->data.sequence.items.start[i]);
        char why[200];
        char *text = NULL;
        snprintf(item, sizeof(item), "%s[%zu]", path, i);
        set_str(c, at, item, &text);
        if (text && netrule_parse(text, &dst->items[dst->n], why, sizeof(why)))
            dst->n++;
        else if (text)
            add_error(c, at->start_mark, "%s: \"%.64s\" %s", item, text, why);
        free(text);
    }
}

/* A mapping of strings to strings: { tenant_id: "42", region: eu }. */
static void set_map(struct ctx *c, const yaml_node_t *n, const char *path, struct kv_list *dst)
{
    char item[300];
    if (!want_mapping(c, n, path))
        return;
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    dst->items = calloc(count ? count : 1, sizeof(*dst->items));
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
         dst->items && p < n->data.mapping.pairs.top; p++) {
        const char *key = pair_key(c, p, path);
        if (!key || is_duplicate(c, n, p, key, path))
            continue;
        join(item, sizeof(item), path, key);
        char *v = NULL;
        set_str(c, node(c, p->value), item, &v);
        if (!v)
            continue;
        dst->items[dst->n].key = strdup(key);
        dst->items[dst->n++].value = v;
    }
}

static void set_bool(struct ctx *c, const yaml_node_t *n, const char *path, bool *dst)
{
    if (!want_scalar(c, n, path, "true or false"))
        return;
    if (strcmp(scalar(n), "true") == 0)
        *dst = true;
    else if (strcmp(scalar(n), "false") == 0)
        *dst = false;
    else
        add_error(c, n->start_mark, "%s: expected true or false, got \"%s\"", path, scalar(n));
}

static void set_field(struct ctx *c, const yaml_node_t *v, const char *path, const struct field *f,
                      void *base)
{
    void *dst = (char *)base + f->off;
    switch (f->type) {
    case F_MAP: set_map(c, v, path, dst); break;
    case F_BOOL: set_bool(c, v, path, dst); break;
    case F_STR: set_str(c, v, path, dst); break;
    case F_INT: set_int(c, v, path, f, dst); break;
    case F_ENUM: set_enum(c, v, path, f, dst); break;
    case F_SUB: walk_at(c, v, path, f->sub, dst); break;
    case F_LIST: set_list(c, v, path, dst); break;
    case F_NETS: set_nets(c, v, path, dst); break;
    case F_OWN: break;
    }
}

static void list_keys(const struct table *t, char *out, size_t outsz)
{
    out[0] = '\0';
    for (size_t i = 0; i < t->n; i++)
        snprintf(out + strlen(out), outsz - strlen(out), "%s%s", i ? ", " : "", t->fields[i].key);
}

/* Checks that n is a mapping; reports it otherwise. */
static bool want_mapping(struct ctx *c, const yaml_node_t *n, const char *path)
{
    if (n->type == YAML_MAPPING_NODE)
        return true;
    add_error(c, n->start_mark, "%s: expected a mapping, got %s", path[0] ? path : "top level",
              is_null(n) ? "nothing" : kind_name(n));
    return false;
}

/* The key of a mapping pair, or NULL (reported) when it is not a plain string. */
static const char *pair_key(struct ctx *c, const yaml_node_pair_t *p, const char *path)
{
    yaml_node_t *k = node(c, p->key);
    if (k->type != YAML_SCALAR_NODE) {
        add_error(c, k->start_mark, "%s: keys must be strings", path[0] ? path : "top level");
        return NULL;
    }
    return scalar(k);
}

/* Reports a key that appears twice in one mapping. */
static bool is_duplicate(struct ctx *c, const yaml_node_t *map, const yaml_node_pair_t *p,
                         const char *key, const char *path)
{
    for (const yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
        yaml_node_t *k = node(c, q->key);
        if (k->type == YAML_SCALAR_NODE && strcmp(scalar(k), key) == 0) {
            add_error(c, node(c, p->key)->start_mark, "duplicate key '%s' in %s", key,
                      path[0] ? path : "top level");
            return true;
        }
    }
    return false;
}

static void join(char *out, size_t outsz, const char *path, const char *key)
{
    snprintf(out, outsz, "%s%s%s", path, path[0] ? "." : "", key);
}

#define TABLE(a)                                                                                   \
    {                                                                                              \
        a, sizeof(a) / sizeof(a[0])                                                                \
    }
#define STR(k, s, m)                                                                               \
    {                                                                                              \
        k, F_STR, offsetof(s, m), 0, 0, NULL, NULL, false                                          \
    }
#define REQ_STR(k, s, m)                                                                           \
    {                                                                                              \
        k, F_STR, offsetof(s, m), 0, 0, NULL, NULL, true                                           \
    }
#define INT(k, s, m, lo, hi)                                                                       \
    {                                                                                              \
        k, F_INT, offsetof(s, m), lo, hi, NULL, NULL, false                                        \
    }
#define ENUM(k, s, m, names)                                                                       \
    {                                                                                              \
        k, F_ENUM, offsetof(s, m), 0, 0, names, NULL, false                                        \
    }
#define BOOL(k, s, m)                                                                              \
    {                                                                                              \
        k, F_BOOL, offsetof(s, m), 0, 0, NULL, NULL, false                                         \
    }
#define SUB(k, t)                                                                                  \
    {                                                                                              \
        k, F_SUB, 0, 0, 0, NULL, &t, false                                                         \
    }
#define SUB_AT(k, s, m, t)                                                                         \
    {                                                                                              \
        k, F_SUB, offsetof(s, m), 0, 0, NULL, &t, false                                            \
    }

static const char *const pool_modes[] = {"session", "transaction", NULL};
static const char *const tls_modes[] = {"disable", "prefer", "require", "verify-full", NULL};
static const char *const client_cert_modes[] = {"optional", "require", NULL};
static const char *const auth_methods[] = {"scram", "trust", "token", NULL};
static const char *const client_auths[] = {"password", "databricks_token", NULL};
static const char *const log_levels[] = {"error", "warning", "info", "debug", NULL};

/* The log level is kept as text in struct config; parse it into this index first. */
struct log_holder {
    int level;
};

static const struct field listen_tls_fields[] = {
    REQ_STR("cert", struct config, tls_cert),
    REQ_STR("key", struct config, tls_key),
    STR("client_ca", struct config, tls_client_ca),
    STR("client_crl", struct config, tls_client_crl),
    ENUM("client_cert", struct config, tls_client_cert, client_cert_modes),
    ENUM("client_tls", struct config, tls_client_tls, client_cert_modes),
};
static const struct table listen_tls_table = TABLE(listen_tls_fields);

static const struct field listen_fields[] = {
    STR("host", struct config, listen_host),
    INT("port", struct config, listen_port, 1, 65535),
    SUB("tls", listen_tls_table),
    STR("takeover_socket", struct config, takeover_socket),
    STR("unix_socket_dir", struct config, unix_socket_dir),
    STR("unix_socket_mode", struct config, unix_socket_mode_text),
};
static const struct table listen_table = TABLE(listen_fields);

/* max_message_size and max_message_memory are size_t; they go through these ints first
 * (max_message_memory 0: not set). */
struct limits_holder {
    int max_clients;
    int max_message_size;
    int max_message_memory;
    int shutdown_timeout_s;
    int login_timeout_s;
    bool core_dumps;
    int tcp_keepalive_idle_s;
    int tcp_keepalive_interval_s;
    int tcp_keepalive_count;
    int tcp_user_timeout_ms;
};

static const struct field limits_fields[] = {
    INT("max_clients", struct limits_holder, max_clients, 1, 1000000),
    INT("max_message_size", struct limits_holder, max_message_size, 1024, 1073741824),
    INT("max_message_memory", struct limits_holder, max_message_memory, 1048576, 2147483647),
    INT("shutdown_timeout_s", struct limits_holder, shutdown_timeout_s, 0, 86400),
    INT("login_timeout_s", struct limits_holder, login_timeout_s, 1, 3600),
    BOOL("core_dumps", struct limits_holder, core_dumps),
    INT("tcp_keepalive_idle_s", struct limits_holder, tcp_keepalive_idle_s, 0, 86400),
    INT("tcp_keepalive_interval_s", struct limits_holder, tcp_keepalive_interval_s, 1, 3600),
    INT("tcp_keepalive_count", struct limits_holder, tcp_keepalive_count, 1, 100),
    INT("tcp_user_timeout_ms", struct limits_holder, tcp_user_timeout_ms, 0, 86400000),
};
static const struct table limits_table = TABLE(limits_fields);

static const struct field stats_fields[] = {
    BOOL("enabled", struct stats_config, enabled),
    STR("log", struct stats_config, log),
    INT("sample_percent", struct stats_config, sample_percent, 0, 100),
    INT("slow_ms", struct stats_config, slow_ms, 0, 86400000),
    INT("queue", struct stats_config, queue, 16, 1048576),
    INT("max_queries", struct stats_config, max_queries, 16, 1000000),
};
static const struct table stats_table = TABLE(stats_fields);

static const struct field log_fields[] = {
    ENUM("level", struct log_holder, level, log_levels),
};
static const struct table log_table = TABLE(log_fields);

static const struct field pool_fields[] = {
    ENUM("mode", struct pool_config, mode, pool_modes),
    INT("size", struct pool_config, size, 1, 100000),
    INT("min", struct pool_config, min, 0, 100000),
    INT("max_wait_ms", struct pool_config, max_wait_ms, 1, 86400000),
    INT("idle_timeout_s", struct pool_config, idle_timeout_s, 0, 31536000),
    INT("lifetime_s", struct pool_config, lifetime_s, 0, 31536000),
    INT("connect_timeout_ms", struct pool_config, connect_timeout_ms, 1, 3600000),
    INT("reserve", struct pool_config, reserve, 0, 100000),
    INT("reserve_timeout_ms", struct pool_config, reserve_timeout_ms, 1, 86400000),
    INT("check_after_s", struct pool_config, check_after_s, 0, 86400),
    INT("idle_transaction_timeout_s", struct pool_config, idle_transaction_timeout_s, 0, 86400),
    INT("query_timeout_s", struct pool_config, query_timeout_s, 0, 86400),
    INT("client_idle_timeout_s", struct pool_config, client_idle_timeout_s, 0, 31536000),
};
static const struct table pool_table = TABLE(pool_fields);

static const char *const cred_providers[] = {"static", "file", "command", "databricks", NULL};

#define LIST(k, s, m)                                                                              \
    {                                                                                              \
        k, F_LIST, offsetof(s, m), 0, 0, NULL, NULL, false                                         \
    }
#define NETS(k, s, m)                                                                              \
    {                                                                                              \
        k, F_NETS, offsetof(s, m), 0, 0, NULL, NULL, false                                         \
    }

static const struct field cred_fields[] = {
    {"provider", F_ENUM, offsetof(struct cred_config, provider), 0, 0, cred_providers, NULL, true},
    STR("path", struct cred_config, path),
    LIST("command", struct cred_config, command),
    STR("shell", struct cred_config, shell),
    STR("workspace", struct cred_config, workspace),
    STR("client_id", struct cred_config, client_id),
    STR("client_id_env", struct cred_config, client_id_env),
    STR("client_secret_env", struct cred_config, client_secret_env),
    STR("client_secret_file", struct cred_config, client_secret_file),
    STR("instance", struct cred_config, instance),
    LIST("instances", struct cred_config, instances),
    STR("endpoint", struct cred_config, endpoint),
    INT("ttl_s", struct cred_config, ttl_s, 300, 3600),
    STR("ca_file", struct cred_config, ca_file),
    INT("timeout_ms", struct cred_config, timeout_ms, 100, 600000),
    INT("lifetime_s", struct cred_config, lifetime_s, 0, 31536000),
    INT("refresh_percent", struct cred_config, refresh_percent, 10, 95),
    INT("refresh_margin_s", struct cred_config, refresh_margin_s, 0, 86400),
};
static const struct table cred_table = TABLE(cred_fields);

static const struct field allow_fields[] = {
    LIST("users", struct db_allow, users),
    LIST("groups", struct db_allow, groups),
};
static const struct table allow_table = TABLE(allow_fields);

static const struct field db_fields[] = {
    REQ_STR("host", struct db_config, host),
    INT("port", struct db_config, port, 1, 65535),
    STR("dbname", struct db_config, dbname),
    REQ_STR("user", struct db_config, user),
    STR("password", struct db_config, password),
    ENUM("tls", struct db_config, tls, tls_modes),
    STR("ca_file", struct db_config, ca_file),
    SUB_AT("pool", struct db_config, pool, pool_table),
    SUB_AT("credentials", struct db_config, cred, cred_table),
    ENUM("client_auth", struct db_config, client_auth, client_auths),
    SUB_AT("allow", struct db_config, allow, allow_table),
};
static const struct table db_table = TABLE(db_fields);

#define MAP(k, s, m)                                                                               \
    {                                                                                              \
        k, F_MAP, offsetof(s, m), 0, 0, NULL, NULL, false                                          \
    }

static const struct field user_fields[] = {
    ENUM("auth", struct user_config, auth, auth_methods),
    STR("password_scram", struct user_config, password_scram),
    STR("password", struct user_config, password),
    STR("role", struct user_config, role),
    LIST("groups", struct user_config, groups),
    MAP("attributes", struct user_config, attributes),
    NETS("from", struct user_config, from),
};
static const struct table user_table = TABLE(user_fields);

static const struct field group_fields[] = {
    STR("role", struct group_config, role),
    MAP("attributes", struct group_config, attributes),
};
static const struct table group_table = TABLE(group_fields);

/* rls.attributes is read as text first, then checked into struct rls_attr. */
struct rls_holder {
    struct rls_config rls;
    struct kv_list attributes;
};

static const struct field rls_fields[] = {
    STR("prefix", struct rls_holder, rls.prefix),
    LIST("databases", struct rls_holder, rls.databases),
    BOOL("switch_role", struct rls_holder, rls.switch_role),
    STR("default_role", struct rls_holder, rls.default_role),
    MAP("attributes", struct rls_holder, attributes),
};
static const struct table rls_table = TABLE(rls_fields);

static const struct field unless_fields[] = {
    LIST("users", struct mask_rule, unless_users),
    LIST("groups", struct mask_rule, unless_groups),
    LIST("roles", struct mask_rule, unless_roles),
    MAP("attributes", struct mask_rule, unless_attrs),
};
static const struct table unless_table = TABLE(unless_fields);

/* A masking rule's column and function are read as text first, then checked. */
struct mask_rule_holder {
    char *column, *function;
    struct mask_rule r;
};

static const struct field mask_rule_fields[] = {
    REQ_STR("column", struct mask_rule_holder, column),
    {"function", F_OWN, 0, 0, 0, NULL, NULL, true}, /* "null" is a function name here */
    SUB_AT("unless", struct mask_rule_holder, r, unless_table),
};
static const struct table mask_rule_table = TABLE(mask_rule_fields);

static const struct field masking_fields[] = {
    {"rules", F_OWN, 0, 0, 0, NULL, NULL, true},
    LIST("databases", struct mask_config, databases),
    LIST("allow_functions", struct mask_config, allow_functions),
    BOOL("strict_predicates", struct mask_config, strict_predicates),
    INT("catalog_refresh_s", struct mask_config, catalog_refresh_s, 1, 86400),
    INT("max_tests_per_second", struct mask_config, max_tests_per_second, 0, 1000000),
    STR("hash_key_env", struct mask_config, hash_key_env),
    STR("hash_key_file", struct mask_config, hash_key_file),
};
static const struct table masking_table = TABLE(masking_fields);

static const struct field admin_fields[] = {
    {"users", F_LIST, offsetof(struct config, admin_users), 0, 0, NULL, NULL, false},
    STR("http", struct config, admin_http_host),
};
static const struct table admin_table = TABLE(admin_fields);

static const struct field auth_query_fields[] = {
    REQ_STR("database", struct auth_query_config, database),
    STR("query", struct auth_query_config, query),
    STR("user", struct auth_query_config, user),
    STR("password", struct auth_query_config, password),
    NETS("from", struct auth_query_config, from),
};
static const struct table auth_query_table = TABLE(auth_query_fields);

/* Fills base from mapping map against table t: unknown keys, duplicates, wrong types and
 * missing required keys are reported; a nested table fills the struct at its field's offset. */
static void walk_at(struct ctx *c, const yaml_node_t *map, const char *path, const struct table *t,
                    void *base)
{
    bool seen[32] = {false};
    char sub[256], keys[512];
    if (!want_mapping(c, map, path))
        return;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *key = pair_key(c, p, path);
        if (!key || is_duplicate(c, map, p, key, path))
            continue;
        size_t i = 0;
        while (i < t->n && strcmp(t->fields[i].key, key) != 0)
            i++;
        if (i == t->n) {
            list_keys(t, keys, sizeof(keys));
            add_error(c, node(c, p->key)->start_mark,
                      "unknown key '%s' in %s (expected one of: %s)", key, path, keys);
            continue;
        }
        seen[i] = true;
        join(sub, sizeof(sub), path, key);
        set_field(c, node(c, p->value), sub, &t->fields[i], base);
    }
    for (size_t i = 0; i < t->n; i++)
        if (t->fields[i].required && !seen[i])
            add_error(c, map->start_mark, "%s: missing required key '%s'", path, t->fields[i].key);
}

static void db_defaults(struct db_config *db, const char *name)
{
    db->name = strdup(name);
    db->port = 5432;
    db->tls = TLS_PREFER;
    db->pool.mode = POOL_SESSION;
    db->pool.size = 20;
    db->pool.max_wait_ms = 5000;
    db->pool.idle_timeout_s = 600;
    db->pool.lifetime_s = 3000;
    db->pool.connect_timeout_ms = 5000;
    db->pool.reserve_timeout_ms = 3000;
    db->pool.check_after_s = 30;
    db->cred.timeout_ms = 10000;
    db->cred.lifetime_s = -1; /* provider default, settled in check_credentials */
    db->cred.refresh_percent = 80;
    db->cred.refresh_margin_s = 300;
}

/* The value node of key in mapping map, or NULL. */
static const yaml_node_t *find_value(struct ctx *c, const yaml_node_t *map, const char *key)
{
    if (map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node(c, p->key);
        if (k->type == YAML_SCALAR_NODE && strcmp(scalar(k), key) == 0)
            return node(c, p->value);
    }
    return NULL;
}

/* Reports each key of cred set for a provider that does not use it. */
static void refuse_foreign_keys(struct ctx *c, const yaml_node_t *n, const char *path,
                                const struct cred_config *cr)
{
    static const char *const owner[] = {"path",
                                        "file",
                                        "command",
                                        "command",
                                        "shell",
                                        "command",
                                        "workspace",
                                        "databricks",
                                        "client_id",
                                        "databricks",
                                        "client_id_env",
                                        "databricks",
                                        "client_secret_env",
                                        "databricks",
                                        "client_secret_file",
                                        "databricks",
                                        "instance",
                                        "databricks",
                                        "instances",
                                        "databricks",
                                        "endpoint",
                                        "databricks",
                                        "ttl_s",
                                        "databricks",
                                        "ca_file",
                                        "databricks"};
    const char *provider = cred_providers[cr->provider];
    for (size_t i = 0; i < sizeof(owner) / sizeof(owner[0]); i += 2) {
        const yaml_node_t *v = find_value(c, n, owner[i]);
        if (v && strcmp(owner[i + 1], provider) != 0)
            add_error(c, v->start_mark, "%s.%s: only used with provider: %s (this is provider: %s)",
                      path, owner[i], owner[i + 1], provider);
    }
}

/* One of a set of alternative keys must be given, and only one. */
static void want_one_of(struct ctx *c, const yaml_node_t *n, const char *path, int count,
                        const char *names)
{
    if (count != 1)
        add_error(c, n->start_mark, "%s: give exactly one of %s", path, names);
}

/* Provider-specific rules of databases.X.credentials. */
static void check_credentials(struct ctx *c, const yaml_node_t *dbnode, const char *dbpath,
                              struct db_config *db)
{
    struct cred_config *cr = &db->cred;
    const yaml_node_t *n = find_value(c, dbnode, "credentials");
    char path[300];
    snprintf(path, sizeof(path), "%s.credentials", dbpath);
    if (cr->lifetime_s < 0)
        cr->lifetime_s = cr->provider == CRED_COMMAND ? 3600 : 0;
    if (!n)
        return;
    refuse_foreign_keys(c, n, path, cr);
    if (cr->provider != CRED_STATIC && db->password)
        add_error(c, find_value(c, dbnode, "password")->start_mark,
                  "%s.password: not used with credentials.provider %s; remove it", dbpath,
                  cred_providers[cr->provider]);
    if (cr->provider == CRED_FILE && !cr->path)
        add_error(c, n->start_mark, "%s: provider file needs path", path);
    if (cr->provider == CRED_COMMAND)
        want_one_of(c, n, path, (cr->command.n > 0) + !!cr->shell, "command (a list) or shell");
    if (cr->provider != CRED_DATABRICKS)
        return;
    if (!cr->workspace || strncmp(cr->workspace, "https://", 8) != 0)
        add_error(c, n->start_mark, "%s: provider databricks needs workspace: https://<host>",
                  path);
    else /* its API paths are appended: "https://host/" would double the slash */
        for (size_t len = strlen(cr->workspace); len > 8 && cr->workspace[len - 1] == '/';)
            cr->workspace[--len] = '\0';
    want_one_of(c, n, path, !!cr->client_id + !!cr->client_id_env, "client_id or client_id_env");
    want_one_of(c, n, path, !!cr->client_secret_env + !!cr->client_secret_file,
                "client_secret_env or client_secret_file");
    want_one_of(c, n, path, !!cr->instance + (cr->instances.n > 0) + !!cr->endpoint,
                "instance, instances (provisioned) or endpoint (autoscaling)");
    if (cr->ttl_s && !cr->endpoint)
        add_error(c, n->start_mark, "%s.ttl_s: only used with endpoint (autoscaling)", path);
}

/* client_auth: databricks_token takes tokens as cleartext passwords, so clients must use TLS,
 * and checks them at the workspace of the database's databricks credentials. */
static void check_client_auth(struct ctx *c, const yaml_node_t *v, const struct config *cfg,
                              const struct db_config *db)
{
    if (db->client_auth != CLIENT_AUTH_DATABRICKS_TOKEN)
        return;
    const yaml_node_t *at = find_value(c, v, "client_auth");
    if (db->cred.provider != CRED_DATABRICKS)
        add_error(c, at->start_mark,
                  "databases.%s.client_auth: databricks_token checks tokens at the workspace "
                  "of credentials.provider databricks; this database has provider %s",
                  db->name, cred_providers[db->cred.provider]);
    if (!cfg->tls_cert)
        add_error(c, at->start_mark,
                  "databases.%s.client_auth: databricks_token needs listen.tls (clients send "
                  "their token as a password, which must not cross the network in clear)",
                  db->name);
}

/* allow: that names nobody would lock every user out: a mistake, not a policy. */
static void check_allow(struct ctx *c, const yaml_node_t *v, const struct db_config *db)
{
    const yaml_node_t *at = find_value(c, v, "allow");
    if (at && db->allow.users.n == 0 && db->allow.groups.n == 0)
        add_error(c, at->start_mark,
                  "databases.%s.allow: names no users or groups, so nobody could log in; list "
                  "who may (allow: { users: [...], groups: [...] }) or remove it to let every "
                  "user in",
                  db->name);
}

/* The checks of each entry under databases: that need the whole file. */
static void check_databases(struct ctx *c, const yaml_node_t *map, struct config *cfg)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         map->type == YAML_MAPPING_NODE && p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = node(c, p->key), *v = node(c, p->value);
        const struct db_config *db = k && k->type == YAML_SCALAR_NODE
                                         ? config_find_db(cfg, (const char *)k->data.scalar.value)
                                         : NULL;
        if (!db)
            continue;
        check_client_auth(c, v, cfg, db);
        check_allow(c, v, db);
    }
}

/* databases: name -> entry. */
static void load_databases(struct ctx *c, const yaml_node_t *map, struct config *cfg)
{
    char path[256];
    if (!want_mapping(c, map, "databases"))
        return;
    size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    if (n == 0) {
        add_error(c, map->start_mark, "databases: at least one database is required");
        return;
    }
    cfg->dbs = calloc(n, sizeof(*cfg->dbs));
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         cfg->dbs && p < map->data.mapping.pairs.top; p++) {
        const char *name = pair_key(c, p, "databases");
        if (!name || is_duplicate(c, map, p, name, "databases"))
            continue;
        if (strcmp(name, "lakeproxy") == 0) { /* admin.h's ADMIN_DATABASE */
            add_error(c, node(c, p->key)->start_mark,
                      "databases.lakeproxy: the name is the admin console's; choose another");
            continue;
        }
        struct db_config *db = &cfg->dbs[cfg->n_dbs++];
        db_defaults(db, name);
        join(path, sizeof(path), "databases", name);
        walk_at(c, node(c, p->value), path, &db_table, db);
        check_credentials(c, node(c, p->value), path, db);
        if (!db->dbname)
            db->dbname = strdup(name);
        if (db->pool.min > db->pool.size)
            add_error(c, node(c, p->value)->start_mark,
                      "%s.pool: min (%d) must not exceed size (%d)", path, db->pool.min,
                      db->pool.size);
    }
}

/* Skips a run of base64 characters; NULL when there is none. */
static const char *skip_b64(const char *p)
{
    size_t n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=");
    return n ? p + n : NULL;
}

/* The shape SCRAM-SHA-256$<iter>:<b64>$<b64>:<b64>; scram_parse_verifier checks the rest (the
 * same check start-up and reload make, so --check-config passes no file they refuse). */
static bool scram_shape_ok(const char *p)
{
    if (strncmp(p, "SCRAM-SHA-256$", 14) != 0 || !isdigit((unsigned char)p[14]))
        return false;
    p += 14;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p++ != ':' || !(p = skip_b64(p)) || *p++ != '$' || !(p = skip_b64(p)) || *p++ != ':' ||
        !(p = skip_b64(p)))
        return false;
    return *p == '\0';
}

static void check_user(struct ctx *c, const yaml_node_t *n, const char *path,
                       const struct user_config *u)
{
    if (u->auth == AUTH_TRUST && (u->password || u->password_scram))
        add_error(c, n->start_mark, "%s: auth: trust takes no password", path);
    if (u->auth == AUTH_TOKEN && (u->password || u->password_scram))
        add_error(c, n->start_mark,
                  "%s: auth: token takes no password (the user logs in with its own Databricks "
                  "token)",
                  path);
    if (u->auth == AUTH_SCRAM && u->password && u->password_scram)
        add_error(c, n->start_mark, "%s: give exactly one of password_scram or password", path);
    if (u->auth == AUTH_SCRAM && !u->password && !u->password_scram)
        add_error(c, n->start_mark,
                  "%s: give password_scram or password (or auth: token for a Databricks "
                  "identity that logs in with its own token only)",
                  path);
    struct scram_verifier v;
    if (u->password_scram &&
        (!scram_shape_ok(u->password_scram) || !scram_parse_verifier(u->password_scram, &v)))
        add_error(c, n->start_mark,
                  "%s.password_scram: expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:"
                  "<ServerKey> as in pg_authid (iterations from 1, a salt of at most 128 bytes, "
                  "32-byte keys)",
                  path);
    explicit_bzero(&v, sizeof(v));
}

/* users: name -> entry. */
static void load_users(struct ctx *c, const yaml_node_t *map, struct config *cfg)
{
    char path[256];
    if (!want_mapping(c, map, "users"))
        return;
    size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    cfg->users = calloc(n ? n : 1, sizeof(*cfg->users));
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         cfg->users && p < map->data.mapping.pairs.top; p++) {
        const char *name = pair_key(c, p, "users");
        if (!name || is_duplicate(c, map, p, name, "users"))
            continue;
        struct user_config *u = &cfg->users[cfg->n_users++];
        u->name = strdup(name);
        join(path, sizeof(path), "users", name);
        walk_at(c, node(c, p->value), path, &user_table, u);
        check_user(c, node(c, p->value), path, u);
    }
}

/* The first database that takes Databricks tokens from clients, NULL if none. */
static const struct db_config *token_database(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_dbs; i++)
        if (cfg->dbs[i].client_auth == CLIENT_AUTH_DATABRICKS_TOKEN)
            return &cfg->dbs[i];
    return NULL;
}

static int compare_names_nocase(const void *a, const void *b)
{
    return config_name_casecmp(*(const char *const *)a, *(const char *const *)b);
}

/* A token login's user name is the workspace's, matched ignoring case: with a database that
 * takes tokens, two users: entries the same but for case would make its entry (its from:,
 * groups, attributes) a matter of chance. Refused at the second's place. */
static void check_token_user_names(struct ctx *c, const yaml_node_t *users,
                                   const struct config *cfg)
{
    const struct db_config *db = token_database(cfg);
    const char **names = db && cfg->n_users > 1 ? calloc(cfg->n_users, sizeof(*names)) : NULL;
    if (!names)
        return;
    for (size_t i = 0; i < cfg->n_users; i++)
        names[i] = cfg->users[i].name;
    qsort(names, cfg->n_users, sizeof(*names), compare_names_nocase);
    for (size_t i = 1; i < cfg->n_users; i++) {
        if (config_name_casecmp(names[i - 1], names[i]) != 0)
            continue;
        const yaml_node_t *at = find_value(c, users, names[i]);
        add_error(c, at ? at->start_mark : users->start_mark,
                  "users.%s: the same name as users.%s but for case: database \"%s\" takes "
                  "Databricks tokens, whose user names are matched ignoring case; keep one "
                  "entry",
                  names[i], names[i - 1], db->name);
    }
    free(names);
}

/* groups: name -> entry. */
static void load_groups(struct ctx *c, const yaml_node_t *map, struct config *cfg)
{
    char path[256];
    if (!want_mapping(c, map, "groups"))
        return;
    size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    cfg->groups = calloc(n ? n : 1, sizeof(*cfg->groups));
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         cfg->groups && p < map->data.mapping.pairs.top; p++) {
        const char *name = pair_key(c, p, "groups");
        if (!name || is_duplicate(c, map, p, name, "groups"))
            continue;
        struct group_config *g = &cfg->groups[cfg->n_groups++];
        g->name = strdup(name);
        join(path, sizeof(path), "groups", name);
        walk_at(c, node(c, p->value), path, &group_table, g);
    }
}

/* Setting-name parts: lower-case letters, digits and '_', not starting with a digit. */
static bool is_setting_word(const char *s)
{
    if (!s || !*s || isdigit((unsigned char)*s) || strlen(s) > 48)
        return false;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_'))
            return false;
    return true;
}

/* "cert.CN" and the like: the OpenSSL NID of a subject field, or NID_undef. */
static int cert_field_nid(const char *source)
{
    static const char *const fields[] = {"CN",           "O",  "OU", "C", "ST", "L", "emailAddress",
                                         "serialNumber", "UID"};
    if (strncmp(source, "cert.", 5) != 0)
        return NID_undef;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (strcmp(source + 5, fields[i]) == 0)
            return OBJ_txt2nid(fields[i]);
    return NID_undef;
}

/* One rls.attributes entry: name -> source. */
static void rls_attr_from(struct ctx *c, const yaml_node_t *at, const struct kv *kv,
                          struct rls_attr *a)
{
    static const char *const sources[] = {"attribute", "user", "database", "client_addr",
                                          "application_name"};
    char path[200];
    snprintf(path, sizeof(path), "rls.attributes.%s", kv->key);
    yaml_mark_t m = at->start_mark;
    const yaml_node_t *v = find_value(c, at, kv->key);
    if (v)
        m = v->start_mark;
    a->name = strdup(kv->key);
    if (!is_setting_word(kv->key))
        add_error(c, m, "%s: attribute names are lower-case letters, digits and '_' (at most 48)",
                  path);
    for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++)
        if (strcmp(kv->value, sources[i]) == 0) {
            a->source = (enum rls_source)i;
            return;
        }
    if (strcmp(kv->value, "option") == 0) {
        a->source = RLS_SRC_OPTION;
    } else if ((a->cert_nid = cert_field_nid(kv->value)) != NID_undef) {
        a->source = RLS_SRC_CERT;
    } else {
        add_error(c, m,
                  "%s: unknown source \"%s\" (expected one of: attribute, user, database, "
                  "client_addr, application_name, option, cert.CN, cert.O, cert.OU, "
                  "cert.emailAddress, ...)",
                  path, kv->value);
    }
}

static void free_kv(struct kv_list *l);

/* rls: the injected attributes, their sources, and the protected prefix. */
static void load_rls(struct ctx *c, const yaml_node_t *map, struct config *cfg)
{
    struct rls_holder h = {0};
    walk_at(c, map, "rls", &rls_table, &h);
    cfg->rls = h.rls;
    cfg->rls.enabled = true;
    if (!cfg->rls.prefix)
        cfg->rls.prefix = strdup("app");
    else if (!is_setting_word(cfg->rls.prefix))
        add_error(c, find_value(c, map, "prefix")->start_mark,
                  "rls.prefix: lower-case letters, digits and '_' (at most 48), like \"app\"");
    const yaml_node_t *at = find_value(c, map, "attributes");
    cfg->rls.attrs = calloc(h.attributes.n ? h.attributes.n : 1, sizeof(*cfg->rls.attrs));
    for (size_t i = 0; cfg->rls.attrs && i < h.attributes.n; i++)
        rls_attr_from(c, at, &h.attributes.items[i], &cfg->rls.attrs[cfg->rls.n_attrs++]);
    if (h.attributes.n == 0 && !cfg->rls.switch_role)
        add_error(c, map->start_mark,
                  "rls: give attributes (name: source) to inject, or switch_role: true");
    free_kv(&h.attributes);
}

static const struct rls_attr *find_rls_attr(const struct rls_config *r, const char *name)
{
    for (size_t i = 0; i < r->n_attrs; i++)
        if (strcmp(r->attrs[i].name, name) == 0)
            return &r->attrs[i];
    return NULL;
}

/* The mark of key inside the mapping under path "users.alice" (or the mapping itself). */
static yaml_mark_t mark_in(struct ctx *c, const yaml_node_t *top, const char *name, const char *key)
{
    const yaml_node_t *entry = top ? find_value(c, top, name) : NULL;
    const yaml_node_t *v = entry ? find_value(c, entry, key) : NULL;
    return v ? v->start_mark : entry ? entry->start_mark : top ? top->start_mark : (yaml_mark_t){0};
}

/* Attributes set on a user or group must be ones rls injects from source attribute. */
static void check_attr_keys(struct ctx *c, const struct config *cfg, const yaml_node_t *top,
                            const char *section, const char *name, const struct kv_list *kv)
{
    for (size_t i = 0; cfg->rls.enabled && i < kv->n; i++) {
        const struct rls_attr *a = find_rls_attr(&cfg->rls, kv->items[i].key);
        if (!a || a->source != RLS_SRC_ATTRIBUTE)
            add_error(c, mark_in(c, top, name, "attributes"),
                      "%s.%s.attributes.%s: not declared under rls.attributes with source "
                      "attribute",
                      section, name, kv->items[i].key);
    }
}

/* Cross-references: groups named by users exist, attributes are declared, databases under
 * rls.databases exist, and with switch_role every listed user has a role. */
static void check_rls(struct ctx *c, struct config *cfg, const yaml_node_t *users,
                      const yaml_node_t *groups, const yaml_node_t *rls)
{
    for (size_t i = 0; i < cfg->n_users; i++) {
        const struct user_config *u = &cfg->users[i];
        const char *role = u->role;
        for (size_t g = 0; g < u->groups.n; g++) {
            const struct group_config *gc = config_find_group(cfg, u->groups.items[g]);
            if (!gc)
                add_error(c, mark_in(c, users, u->name, "groups"),
                          "users.%s.groups: no group named \"%s\" under groups", u->name,
                          u->groups.items[g]);
            else if (!role)
                role = gc->role;
        }
        check_attr_keys(c, cfg, users, "users", u->name, &u->attributes);
        if (cfg->rls.switch_role && !role && !cfg->rls.default_role)
            add_error(c, mark_in(c, users, u->name, "role"),
                      "users.%s: rls.switch_role is on but this user has no role (set "
                      "users.%s.role, a role on one of its groups, or rls.default_role)",
                      u->name, u->name);
    }
    for (size_t i = 0; i < cfg->n_groups; i++)
        check_attr_keys(c, cfg, groups, "groups", cfg->groups[i].name, &cfg->groups[i].attributes);
    for (size_t i = 0; rls && i < cfg->rls.n_attrs; i++)
        if (cfg->rls.attrs[i].source == RLS_SRC_CERT && !cfg->tls_client_ca)
            add_error(c, find_value(c, rls, "attributes")->start_mark,
                      "rls.attributes.%s: a cert.* source needs client certificates (set "
                      "listen.tls.client_ca)",
                      cfg->rls.attrs[i].name);
    for (size_t i = 0; rls && i < cfg->rls.databases.n; i++)
        if (!config_find_db(cfg, cfg->rls.databases.items[i]))
            add_error(c, find_value(c, rls, "databases")->start_mark,
                      "rls.databases: no database named \"%s\" under databases",
                      cfg->rls.databases.items[i]);
}

/* admin: console users and the HTTP endpoint, "host:port" split here. */
/* "schema.table.column" into its three parts; false unless there are exactly three. */
static bool split_column(const char *spec, struct mask_rule *r)
{
    const char *d1 = strchr(spec, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.') || d1 == spec || d2 == d1 + 1 || !d2[1])
        return false;
    r->schema = strndup(spec, (size_t)(d1 - spec));
    r->table = strndup(d1 + 1, (size_t)(d2 - d1 - 1));
    r->column = strdup(d2 + 1);
    return true;
}

/* The mark of the scalar under key in mapping map, moved on by off bytes when the value is a
 * plain one-line scalar (so an error inside "partial(1, x)" points at the x). */
static yaml_mark_t mark_at(struct ctx *c, const yaml_node_t *map, const char *key, size_t off)
{
    const yaml_node_t *v = find_value(c, map, key);
    yaml_mark_t m = v ? v->start_mark : map->start_mark;
    if (v && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
        m.column += off;
    else if (v && (v->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                   v->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE))
        m.column += off + 1;
    return m;
}

/* One masking.rules entry. */
static void load_mask_rule(struct ctx *c, const yaml_node_t *n, const char *path,
                           struct mask_rule *r)
{
    struct mask_rule_holder h = {0};
    char err[200];
    size_t at = 0;
    walk_at(c, n, path, &mask_rule_table, &h);
    *r = h.r;
    const yaml_node_t *fn = n->type == YAML_MAPPING_NODE ? find_value(c, n, "function") : NULL;
    if (fn && fn->type == YAML_SCALAR_NODE && *scalar(fn))
        h.function = strdup(scalar(fn));
    else if (fn)
        add_error(c, fn->start_mark,
                  "%s.function: expected a masking function (redact, null, "
                  "partial(p, s), email, last4, hash or fixed('text'))",
                  path);
    if (h.column && !split_column(h.column, r))
        add_error(c, mark_at(c, n, "column", 0),
                  "%s.column: expected schema.table.column (e.g. public.customers.email), got "
                  "\"%s\"",
                  path, h.column);
    if (h.function && !mask_fn_parse(h.function, &r->fn, &at, err, sizeof(err)))
        add_error(c, mark_at(c, n, "function", at), "%s.function: %s", path, err);
    free(h.column);
    free(h.function);
}

/* Reads the hash key from its environment variable or file; errors name where it is set. */
static void load_hash_key(struct ctx *c, const yaml_node_t *map, struct mask_config *m)
{
    const char *key = m->hash_key_env ? "hash_key_env" : "hash_key_file";
    yaml_mark_t at = mark_at(c, map, key, 0);
    if (m->hash_key_env && m->hash_key_file) {
        add_error(c, at, "masking: give hash_key_env or hash_key_file, not both");
        return;
    }
    char buf[1024];
    size_t len = 0;
    if (m->hash_key_env) {
        const char *v = getenv(m->hash_key_env);
        len = v ? strlen(v) : 0;
        if (len >= sizeof(buf))
            len = sizeof(buf) - 1;
        memcpy(buf, v ? v : "", len);
    } else {
        char err[300];
        char *text =
            config_read_file(m->hash_key_file, sizeof(buf) - 1, true, &len, NULL, err, sizeof(err));
        if (!text) {
            add_error(c, at, "masking.hash_key_file: %s", err);
            return;
        }
        memcpy(buf, text, len);
        config_file_free(text, len, true);
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            len--;
    }
    if (len < 16)
        add_error(c, at,
                  "masking.%s: the hash key must be at least 16 bytes (it is %zu): use e.g. "
                  "`openssl rand -hex 32`",
                  key, len);
    else if ((m->hash_key = malloc(len)))
        memcpy(m->hash_key, buf, m->hash_key_len = len);
    OPENSSL_cleanse(buf, sizeof(buf));
}

/* Sets rule i's strength and the first of rules[0..i] that masks alike (same_as). */
static void rank_mask_rule(struct mask_rule *rules, size_t i)
{
    rules[i].strength = (uint8_t)mask_strength(&rules[i].fn);
    rules[i].same_as = (uint32_t)i;
    for (size_t j = 0; j < i; j++)
        if (mask_fn_same(&rules[j].fn, &rules[i].fn)) {
            rules[i].same_as = (uint32_t)j;
            break;
        }
}

/* masking: its rules, and the hash key when a rule needs one. */
static void load_masking(struct ctx *c, const yaml_node_t *map, struct config *cfg)
{
    struct mask_config *m = &cfg->masking;
    char path[64];
    bool needs_key = false;
    walk_at(c, map, "masking", &masking_table, m);
    const yaml_node_t *rules = map->type == YAML_MAPPING_NODE ? find_value(c, map, "rules") : NULL;
    if (!rules)
        return;
    if (rules->type != YAML_SEQUENCE_NODE ||
        rules->data.sequence.items.top == rules->data.sequence.items.start) {
        add_error(c, rules->start_mark,
                  "masking.rules: expected a list of rules (column, "
                  "function, unless)");
        return;
    }
    size_t n = (size_t)(rules->data.sequence.items.top - rules->data.sequence.items.start);
    m->rules = calloc(n, sizeof(*m->rules));
    for (size_t i = 0; m->rules && i < n; i++) {
        snprintf(path, sizeof(path), "masking.rules[%zu]", i);
        load_mask_rule(c, node(c, rules->data.sequence.items.start[i]), path, &m->rules[i]);
        needs_key |= m->rules[i].fn.kind == MASK_HASH;
        rank_mask_rule(m->rules, i);
        m->n_rules++;
    }
    m->enabled = m->n_rules > 0;
    if (needs_key && !m->hash_key_env && !m->hash_key_file)
        add_error(c, rules->start_mark,
                  "masking: function hash needs a key: set masking.hash_key_env or "
                  "masking.hash_key_file");
    else if (m->hash_key_env || m->hash_key_file)
        load_hash_key(c, map, m);
}

/* Masking rewrites results on the reply path of transaction pooling (which tracks every
 * reply): each database it applies to must use it. */
static void check_masking(struct ctx *c, const yaml_node_t *map, struct config *cfg)
{
    if (!cfg->masking.enabled)
        return;
    for (size_t i = 0; i < cfg->masking.databases.n; i++)
        if (!config_find_db(cfg, cfg->masking.databases.items[i]))
            add_error(c, mark_at(c, map, "databases", 0),
                      "masking.databases: no database named \"%s\" under databases",
                      cfg->masking.databases.items[i]);
    for (size_t i = 0; i < cfg->n_dbs; i++)
        if (config_mask_applies(cfg, cfg->dbs[i].name) && cfg->dbs[i].pool.mode != POOL_TRANSACTION)
            add_error(c, map->start_mark,
                      "masking applies to database \"%s\", whose pool.mode is session: "
                      "masking needs pool.mode transaction (or list the databases it applies "
                      "to under masking.databases)",
                      cfg->dbs[i].name);
}

static void load_admin(struct ctx *c, const yaml_node_t *v, struct config *cfg)
{
    walk_at(c, v, "admin", &admin_table, cfg);
    char *hp = cfg->admin_http_host;
    if (!hp)
        return;
    char *colon = strrchr(hp, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || colon == hp || !end || *end || port < 1 || port > 65535) {
        add_error(c, find_value(c, v, "http")->start_mark,
                  "admin.http: expected host:port, like 127.0.0.1:9187");
        return;
    }
    *colon = '\0';
    if (hp[0] == '[' && colon[-1] == ']') { /* [::1]:9187 */
        memmove(hp, hp + 1, strlen(hp));
        hp[strlen(hp) - 1] = '\0';
    }
    cfg->admin_http_port = (int)port;
}

/* The octal permissions in text ("0770", "770"), or -1 when it is not one. */
static int octal_mode(const char *text)
{
    const char *p = text[0] == '0' && text[1] ? text + 1 : text;
    int mode = 0;
    if (strlen(p) != 3)
        return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '7')
            return -1;
        mode = mode * 8 + (*p - '0');
    }
    return mode;
}

/* listen.unix_socket_dir and _mode: the socket's path must fit a sockaddr_un. */
static void load_unix_socket(struct ctx *c, const yaml_node_t *v, struct config *cfg)
{
    const char *dir = cfg->unix_socket_dir;
    const char *mode = cfg->unix_socket_mode_text;
    if (mode && (cfg->unix_socket_mode = octal_mode(mode)) < 0)
        add_error(c, find_value(c, v, "unix_socket_mode")->start_mark,
                  "listen.unix_socket_mode: expected permissions in octal, such as \"0777\" "
                  "(everyone may connect; the default) or \"0770\" (the owner and its group)");
    if (mode && !dir)
        add_error(c, find_value(c, v, "unix_socket_mode")->start_mark,
                  "listen.unix_socket_mode: needs listen.unix_socket_dir");
    if (!dir)
        return;
    int n = snprintf(cfg->unix_socket_path, sizeof(cfg->unix_socket_path), "%s/.s.PGSQL.%d",
                     strcmp(dir, "/") == 0 ? "" : dir, cfg->listen_port);
    if (dir[0] != '/' || n < 0 || (size_t)n >= sizeof(cfg->unix_socket_path)) {
        cfg->unix_socket_path[0] = '\0';
        add_error(c, find_value(c, v, "unix_socket_dir")->start_mark,
                  "listen.unix_socket_dir: expected an absolute path of a directory; with "
                  "\"/.s.PGSQL.%d\" after it, it must be shorter than %d bytes",
                  cfg->listen_port, TAKEOVER_SOCKET_MAX);
    }
}

/* listen: address and client-facing TLS; client certificates need a CA to check them. */
static void load_listen(struct ctx *c, const yaml_node_t *v, struct config *cfg)
{
    walk_at(c, v, "listen", &listen_table, cfg);
    const yaml_node_t *tls =
        !cfg->tls_client_ca && v->type == YAML_MAPPING_NODE ? find_value(c, v, "tls") : NULL;
    if (tls && cfg->tls_client_cert == 1)
        add_error(c, tls->start_mark,
                  "listen.tls.client_cert: require needs listen.tls.client_ca, the CA that "
                  "signs client certificates");
    if (tls && cfg->tls_client_crl)
        add_error(c, tls->start_mark,
                  "listen.tls.client_crl needs listen.tls.client_ca, the CA whose revocations "
                  "it lists");
    const char *ts = cfg->takeover_socket;
    if (ts && (ts[0] != '/' || strlen(ts) >= TAKEOVER_SOCKET_MAX))
        add_error(c, find_value(c, v, "takeover_socket")->start_mark,
                  "listen.takeover_socket: expected an absolute path shorter than %d bytes",
                  TAKEOVER_SOCKET_MAX);
    load_unix_socket(c, v, cfg);
}

static void load_auth_query(struct ctx *c, const yaml_node_t *map, struct config *cfg)
{
    struct auth_query_config *aq = &cfg->auth_query;
    walk_at(c, map, "auth_query", &auth_query_table, aq);
    aq->enabled = true;
    if (!aq->query)
        aq->query = strdup(DEFAULT_AUTH_QUERY);
}

/* auth_query.database must name a database; its login is the default for the look-up. */
static void check_auth_query(struct ctx *c, const yaml_node_t *map, struct config *cfg)
{
    struct auth_query_config *aq = &cfg->auth_query;
    if (!aq->enabled || !aq->database)
        return;
    const struct db_config *db = config_find_db(cfg, aq->database);
    if (!db) {
        yaml_mark_t m = map->start_mark;
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
             p++)
            if (strcmp(scalar(node(c, p->key)), "database") == 0)
                m = node(c, p->value)->start_mark;
        add_error(c, m, "auth_query.database: no database named \"%s\" under databases",
                  aq->database);
        return;
    }
    if (!aq->user && db->user)
        aq->user = strdup(db->user);
    if (!aq->password && db->password)
        aq->password = strdup(db->password);
}

static void config_defaults(struct config *cfg)
{
    cfg->listen_host = strdup("127.0.0.1");
    cfg->listen_port = 6432;
    cfg->unix_socket_mode = 0777;
    cfg->max_clients = 1000;
    cfg->max_message_size = 16u << 20;
    cfg->max_message_memory = 256u << 20;
    cfg->shutdown_timeout_s = 30;
    cfg->login_timeout_s = 60;
    cfg->tcp = (struct tcp_config){60, 10, 6, 0};
    cfg->masking.catalog_refresh_s = 30;
    cfg->masking.max_tests_per_second = 100;
    cfg->stats = (struct stats_config){
        .enabled = true, .sample_percent = 100, .queue = 4096, .max_queries = 5000};
}

/* limits.max_message_memory, checked against max_message_size: one message of the largest
 * size must fit. Not set: 256 MiB, or that one message when it is larger. */
static void set_message_memory(struct ctx *c, const yaml_node_t *limits,
                               const struct limits_holder *lim, struct config *cfg)
{
    size_t one = (size_t)lim->max_message_size + 5;
    if (lim->max_message_memory == 0) {
        cfg->max_message_memory = one > (256u << 20) ? one : 256u << 20;
        return;
    }
    cfg->max_message_memory = (size_t)lim->max_message_memory;
    const yaml_node_t *v = find_value(c, limits, "max_message_memory");
    if (cfg->max_message_memory < one)
        add_error(c, (v ? v : limits)->start_mark,
                  "limits.max_message_memory (%d) must hold one message of "
                  "limits.max_message_size (%d) and its 5-byte header: raise it to at least %zu",
                  lim->max_message_memory, lim->max_message_size, one);
}

/* Walks the top-level mapping. */
static void load_root(struct ctx *c, const yaml_node_t *root, struct config *cfg)
{
    static const char *const keys =
        "listen, limits, log, admin, databases, users, groups, rls, masking, auth_query, stats";
    struct limits_holder lim = {
        cfg->max_clients,          (int)cfg->max_message_size,    0,
        cfg->shutdown_timeout_s,   cfg->login_timeout_s,          false,
        cfg->tcp.keepalive_idle_s, cfg->tcp.keepalive_interval_s, cfg->tcp.keepalive_count,
        cfg->tcp.user_timeout_ms};
    struct log_holder lg = {2};
    const yaml_node_t *dbs = NULL, *aq = NULL, *users = NULL, *groups = NULL, *rls = NULL,
                      *masking = NULL, *limits = NULL;
    if (!want_mapping(c, root, ""))
        return;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        const char *key = pair_key(c, p, "");
        if (!key || is_duplicate(c, root, p, key, ""))
            continue;
        const yaml_node_t *v = node(c, p->value);
        if (strcmp(key, "listen") == 0)
            load_listen(c, v, cfg);
        else if (strcmp(key, "limits") == 0)
            walk_at(c, limits = v, "limits", &limits_table, &lim);
        else if (strcmp(key, "log") == 0)
            walk_at(c, v, "log", &log_table, &lg);
        else if (strcmp(key, "admin") == 0)
            load_admin(c, v, cfg);
        else if (strcmp(key, "databases") == 0)
            load_databases(c, dbs = v, cfg);
        else if (strcmp(key, "users") == 0)
            load_users(c, users = v, cfg);
        else if (strcmp(key, "groups") == 0)
            load_groups(c, groups = v, cfg);
        else if (strcmp(key, "rls") == 0)
            load_rls(c, rls = v, cfg);
        else if (strcmp(key, "masking") == 0)
            load_masking(c, masking = v, cfg);
        else if (strcmp(key, "auth_query") == 0)
            load_auth_query(c, aq = v, cfg);
        else if (strcmp(key, "stats") == 0)
            walk_at(c, v, "stats", &stats_table, &cfg->stats);
        else
            add_error(c, node(c, p->key)->start_mark,
                      "unknown key '%s' at top level (expected one of: %s)", key, keys);
    }
    if (!dbs)
        add_error(c, root->start_mark, "missing required key 'databases'");
    if (aq)
        check_auth_query(c, aq, cfg);
    if (dbs)
        check_databases(c, dbs, cfg);
    if (users)
        check_token_user_names(c, users, cfg);
    check_rls(c, cfg, users, groups, rls);
    if (masking)
        check_masking(c, masking, cfg);
    cfg->max_clients = lim.max_clients;
    cfg->max_message_size = (size_t)lim.max_message_size;
    set_message_memory(c, limits, &lim, cfg);
    cfg->shutdown_timeout_s = lim.shutdown_timeout_s;
    cfg->login_timeout_s = lim.login_timeout_s;
    cfg->core_dumps = lim.core_dumps;
    cfg->tcp = (struct tcp_config){lim.tcp_keepalive_idle_s, lim.tcp_keepalive_interval_s,
                                   lim.tcp_keepalive_count, lim.tcp_user_timeout_ms};
    cfg->log_level = strdup(log_levels[lg.level]);
}

/* Parses text with libyaml; a syntax error becomes one located error. */
static bool parse_yaml(struct ctx *c, const char *text, size_t len, yaml_document_t *doc)
{
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    bool ok = yaml_parser_load(&parser, doc) == 1;
    if (ok) { /* a second document would be ignored: refuse it instead */
        yaml_document_t next;
        if (yaml_parser_load(&parser, &next) != 1) {
            ok = false;
        } else {
            yaml_node_t *root = yaml_document_get_root_node(&next);
            if (root)
                add_error(c, root->start_mark, "only one YAML document is allowed per file");
            yaml_document_delete(&next);
        }
        if (!ok || c->errs->n) {
            yaml_document_delete(doc);
            ok = false;
        }
    }
    if (!ok && c->errs->n == 0) {
        yaml_mark_t m = parser.problem_mark;
        add_error(c, m, "YAML syntax error: %s%s%s", parser.problem ? parser.problem : "unknown",
                  parser.context ? " " : "", parser.context ? parser.context : "");
    }
    yaml_parser_delete(&parser);
    return ok;
}

/* A "\0" escape would cut a value short where it is used as a C string (an RLS attribute,
 * a password): every scalar with a NUL in it is an error. */
static void refuse_nul_scalars(struct ctx *c, yaml_document_t *doc)
{
    for (yaml_node_t *n = doc->nodes.start; n < doc->nodes.top; n++)
        if (n->type == YAML_SCALAR_NODE && strlen(scalar(n)) != n->data.scalar.length)
            add_error(c, n->start_mark, "a value may not contain a NUL character (\\0)");
}

struct config *config_parse_string(const char *text, size_t len, const char *name,
                                   struct config_errors *errs)
{
    yaml_document_t doc;
    struct ctx c = {name, &doc, errs};
    yaml_mark_t start = {0, 0, 0};
    if (!parse_yaml(&c, text, len, &doc))
        return NULL;
    struct config *cfg = calloc(1, sizeof(*cfg));
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!cfg)
        add_error(&c, start, "out of memory");
    else if (!root)
        add_error(&c, start, "empty configuration: at least 'databases' is required");
    else {
        cfg->path = strdup(name);
        config_defaults(cfg);
        refuse_nul_scalars(&c, &doc);
        load_root(&c, root, cfg);
    }
    yaml_document_delete(&doc);
    if (errs->n > 0) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* Why config_read_file(path) failed, as "cannot read: why" (path is already the error's file). */
static void add_read_error(struct ctx *c, const char *path, const char *err)
{
    yaml_mark_t start = {0, 0, 0};
    size_t n = strlen(path);
    if (strncmp(err, "cannot read ", 12) == 0 && strncmp(err + 12, path, n) == 0)
        add_error(c, start, "cannot read%s", err + 12 + n);
    else if (strncmp(err, path, n) == 0 && err[n] == ' ')
        add_error(c, start, "cannot read: it%s", err + n);
    else
        add_error(c, start, "%s", err);
}

/* The configuration is the policy (RLS, masking, who may log in): a file every user may
 * change, or one in a directory where every user may replace it (writable by all, no sticky
 * bit), is refused, saying how to fix it (true: refused). */
static bool policy_file_exposed(struct ctx *c, const char *path, const struct stat *st)
{
    yaml_mark_t start = {0, 0, 0};
    char dir[4096];
    struct stat dst;
    if (st->st_mode & 0002) {
        add_error(c, start,
                  "can be changed by every user (mode %04o): anyone on the machine could "
                  "rewrite who may log in and what they see: chmod o-w %s",
                  (unsigned)st->st_mode & 07777, path);
        return true;
    }
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash == path ? 1 : slash - path) : 1,
             slash ? path : ".");
    if (stat(dir, &dst) == 0 && (dst.st_mode & 0002) && !(dst.st_mode & S_ISVTX)) {
        add_error(c, start,
                  "its directory %s can be changed by every user (mode %04o): anyone on the "
                  "machine could put another file in its place: chmod o-w %s (or move it)",
                  dir, (unsigned)dst.st_mode & 07777, dir);
        return true;
    }
    return false;
}

struct config *config_load(const char *path, struct config_errors *errs)
{
    struct ctx c = {path, NULL, errs};
    char err[1200];
    size_t len;
    struct stat st;
    char *text = config_read_file(path, CONFIG_FILE_MAX, false, &len, &st, err, sizeof(err));
    if (!text) {
        add_read_error(&c, path, err);
        return NULL;
    }
    if (policy_file_exposed(&c, path, &st)) {
        config_file_free(text, len, false);
        return NULL;
    }
    struct config *cfg = config_parse_string(text, len, path, errs);
    config_file_free(text, len, false);
    if (cfg)
        cfg->readable_by_all = (st.st_mode & 0004) != 0;
    return cfg;
}

/* Frees a secret after wiping it. */
static void free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void free_list(struct string_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
}

static void free_kv(struct kv_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].key);
        free(l->items[i].value);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static void free_rls(struct rls_config *r)
{
    free(r->prefix);
    free_list(&r->databases);
    for (size_t i = 0; i < r->n_attrs; i++)
        free(r->attrs[i].name);
    free(r->attrs);
    free(r->default_role);
}

static void free_masking(struct mask_config *m)
{
    for (size_t i = 0; i < m->n_rules; i++) {
        struct mask_rule *r = &m->rules[i];
        free(r->schema);
        free(r->table);
        free(r->column);
        mask_fn_free(&r->fn);
        free_list(&r->unless_users);
        free_list(&r->unless_groups);
        free_list(&r->unless_roles);
        free_kv(&r->unless_attrs);
    }
    free(m->rules);
    free_list(&m->databases);
    free_list(&m->allow_functions);
    free(m->hash_key_env);
    free(m->hash_key_file);
    if (m->hash_key)
        OPENSSL_cleanse(m->hash_key, m->hash_key_len);
    free(m->hash_key);
}

static void free_cred(struct cred_config *cr)
{
    free(cr->path);
    free_list(&cr->command);
    free(cr->shell);
    free(cr->workspace);
    free(cr->client_id);
    free(cr->client_id_env);
    free(cr->client_secret_env);
    free(cr->client_secret_file);
    free(cr->instance);
    free_list(&cr->instances);
    free(cr->endpoint);
    free(cr->ca_file);
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_dbs; i++) {
        struct db_config *db = &cfg->dbs[i];
        free(db->name);
        free(db->host);
        free(db->dbname);
        free(db->user);
        free_secret(db->password);
        free(db->ca_file);
        free_cred(&db->cred);
        free_list(&db->allow.users);
        free_list(&db->allow.groups);
    }
    for (size_t i = 0; i < cfg->n_users; i++) {
        free(cfg->users[i].name);
        free_secret(cfg->users[i].password_scram);
        free_secret(cfg->users[i].password);
        free(cfg->users[i].role);
        free_list(&cfg->users[i].groups);
        free(cfg->users[i].from.items);
        free_kv(&cfg->users[i].attributes);
    }
    for (size_t i = 0; i < cfg->n_groups; i++) {
        free(cfg->groups[i].name);
        free(cfg->groups[i].role);
        free_kv(&cfg->groups[i].attributes);
    }
    free_rls(&cfg->rls);
    free_masking(&cfg->masking);
    free(cfg->dbs);
    free(cfg->users);
    free(cfg->groups);
    free_list(&cfg->admin_users);
    free(cfg->auth_query.query);
    free(cfg->auth_query.database);
    free(cfg->auth_query.from.items);
    free(cfg->auth_query.user);
    free_secret(cfg->auth_query.password);
    free(cfg->path);
    free(cfg->listen_host);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->tls_client_ca);
    free(cfg->tls_client_crl);
    free(cfg->takeover_socket);
    free(cfg->unix_socket_dir);
    free(cfg->unix_socket_mode_text);
    free(cfg->stats.log);
    free(cfg->admin_http_host);
    free(cfg->log_level);
    free(cfg);
}

void config_errors_free(struct config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}

bool config_holds_db(const struct config *cfg, const struct db_config *db)
{
    for (size_t i = 0; i < cfg->n_dbs; i++)
        if (&cfg->dbs[i] == db)
            return true;
    return false;
}

const struct db_config *config_find_db(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_dbs; i++)
        if (strcmp(cfg->dbs[i].name, name) == 0)
            return &cfg->dbs[i];
    return NULL;
}

enum login_path config_login_path(const struct config *cfg, const struct db_config *db,
                                  bool console, const char *user, size_t *entry)
{
    if (!console && db && db->client_auth == CLIENT_AUTH_DATABRICKS_TOKEN)
        return LOGIN_TOKEN;
    for (size_t i = 0; i < cfg->n_users; i++) {
        if (strcmp(cfg->users[i].name, user) != 0)
            continue;
        *entry = i;
        return cfg->users[i].auth == AUTH_TRUST   ? LOGIN_TRUST
               : cfg->users[i].auth == AUTH_TOKEN ? LOGIN_NONE
                                                  : LOGIN_PASSWORD;
    }
    /* (the console is opened by users: entries alone: a server role named like an admin, its
     * password looked up, would run RELOAD and SHUTDOWN) */
    return cfg->auth_query.enabled && !console ? LOGIN_LOOKUP : LOGIN_NONE;
}

/* The address rules a login of user by path is held to (NULL: none), and its users: entry
 * (NULL: none; the token path finds it ignoring case). */
static const struct net_rules *from_rules_of(const struct config *cfg, enum login_path path,
                                             const char *user, const struct user_config **u)
{
    *u = path == LOGIN_TOKEN ? config_find_token_user(cfg, user) : config_find_user(cfg, user);
    return *u ? &(*u)->from : path == LOGIN_LOOKUP ? &cfg->auth_query.from : NULL;
}

bool config_may_connect_from(const struct config *cfg, enum login_path path, const char *user,
                             const struct netaddr *a)
{
    const struct user_config *u;
    const struct net_rules *rules = from_rules_of(cfg, path, user, &u);
    return !rules || rules->n == 0 || netrule_match(rules, a);
}

void config_from_setting(const struct config *cfg, enum login_path path, const char *user,
                         char *out, size_t outsz)
{
    const struct user_config *u;
    if (from_rules_of(cfg, path, user, &u) == &cfg->auth_query.from)
        snprintf(out, outsz, "auth_query.from");
    else
        snprintf(out, outsz, "users.%.64s.from", u ? u->name : user);
}

const char *config_inline_secret(const struct config *cfg, char *out, size_t outsz)
{
    const struct user_config *u = NULL;
    for (size_t i = 0; i < cfg->n_dbs; i++)
        if (cfg->dbs[i].password) {
            snprintf(out, outsz, "databases.%s.password", cfg->dbs[i].name);
            return out;
        }
    for (size_t i = 0; i < cfg->n_users && !u; i++)
        if (cfg->users[i].password || cfg->users[i].password_scram)
            u = &cfg->users[i];
    if (u) {
        snprintf(out, outsz, "users.%s.%s", u->name, u->password ? "password" : "password_scram");
        return out;
    }
    if (!cfg->auth_query.enabled || !cfg->auth_query.password)
        return NULL;
    snprintf(out, outsz, "auth_query.password");
    return out;
}

const char *config_readable_secrets(const struct config *cfg, char *out, size_t outsz)
{
    char key[300];
    if (!cfg->readable_by_all || !config_inline_secret(cfg, key, sizeof(key)))
        return NULL;
    snprintf(out, outsz,
             "%s can be read by every user of the machine and holds secrets (%s, ...): chmod "
             "o-r %s",
             cfg->path, key, cfg->path);
    return out;
}

bool config_is_admin(const struct config *cfg, const char *user)
{
    for (size_t i = 0; i < cfg->admin_users.n; i++)
        if (strcmp(cfg->admin_users.items[i], user) == 0)
            return true;
    return false;
}

const struct user_config *config_find_user(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_users; i++)
        if (strcmp(cfg->users[i].name, name) == 0)
            return &cfg->users[i];
    return NULL;
}

int config_name_casecmp(const char *a, const char *b)
{
    int order = 0;
    if (u8_casecmp((const uint8_t *)a, strlen(a), (const uint8_t *)b, strlen(b), NULL, UNINORM_NFC,
                   &order) != 0)
        return strcmp(a, b); /* (not UTF-8: byte for byte) */
    return order;
}

const struct user_config *config_find_token_user(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_users; i++)
        if (config_name_casecmp(cfg->users[i].name, name) == 0)
            return &cfg->users[i];
    return NULL;
}

const struct group_config *config_find_group(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_groups; i++)
        if (strcmp(cfg->groups[i].name, name) == 0)
            return &cfg->groups[i];
    return NULL;
}

bool config_rls_applies(const struct config *cfg, const char *db)
{
    if (!cfg->rls.enabled)
        return false;
    if (cfg->rls.databases.n == 0)
        return true;
    for (size_t i = 0; i < cfg->rls.databases.n; i++)
        if (strcmp(cfg->rls.databases.items[i], db) == 0)
            return true;
    return false;
}

bool config_mask_applies(const struct config *cfg, const char *db)
{
    if (!cfg->masking.enabled)
        return false;
    if (cfg->masking.databases.n == 0)
        return true;
    for (size_t i = 0; i < cfg->masking.databases.n; i++)
        if (strcmp(cfg->masking.databases.items[i], db) == 0)
            return true;
    return false;
}

/* Is h a name of this machine's loopback interface? */
static bool loopback_host(const char *h)
{
    return strcasecmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0 || strcmp(h, "::1") == 0;
}

/* Do two entries reach one server database? (Host names compared as written, but for the
 * loopback's names: localhost, 127.0.0.1 and ::1 are one.) */
static bool same_server_db(const struct db_config *a, const struct db_config *b)
{
    bool same_host =
        strcasecmp(a->host, b->host) == 0 || (loopback_host(a->host) && loopback_host(b->host));
    return a->port == b->port && same_host && strcmp(a->dbname, b->dbname) == 0;
}

/* Is s one of l's names? */
static bool listed(const struct string_list *l, const char *s)
{
    for (size_t i = 0; l && s && i < l->n; i++)
        if (strcmp(l->items[i], s) == 0)
            return true;
    return false;
}

/* Does db's allow: list who may log in? */
static bool config_db_restricted(const struct db_config *db)
{
    return db->allow.users.n > 0 || db->allow.groups.n > 0;
}

bool config_db_admits(const struct config *cfg, const struct db_config *db, const char *user,
                      const struct string_list *extra_groups)
{
    if (!config_db_restricted(db) || listed(&db->allow.users, user))
        return true;
    const struct user_config *u = config_find_user(cfg, user);
    for (size_t i = 0; u && i < u->groups.n; i++)
        if (listed(&db->allow.groups, u->groups.items[i]))
            return true;
    for (size_t i = 0; extra_groups && i < extra_groups->n; i++)
        if (listed(&db->allow.groups, extra_groups->items[i]))
            return true;
    return false;
}

/* Pass 3 of config_unprotected_alias: is open an alias of g, which keeps its rows to an
 * allow: list, that any user may log into? (Entries under rls or masking protect their rows
 * otherwise: the tenants' entry beside an administrators' one is the usual set-up.) */
static bool opens_a_restricted_entry(const struct config *cfg, const struct db_config *open,
                                     const struct db_config *g)
{
    return config_db_restricted(g) && !config_db_restricted(open) &&
           !config_rls_applies(cfg, open->name) && !config_mask_applies(cfg, open->name);
}

const struct db_config *config_unprotected_alias(const struct config *cfg, size_t *k,
                                                 const struct db_config **guarded,
                                                 const char **what)
{
    size_t n = cfg->n_dbs;
    for (; *k < 3 * n * n; (*k)++) { /* each pair thrice: rls, masking, allow: */
        size_t pair = *k / 3, pass = *k % 3;
        const struct db_config *open = &cfg->dbs[pair / n], *g = &cfg->dbs[pair % n];
        if (open == g || !same_server_db(open, g))
            continue;
        if (pass == 2) {
            if (!opens_a_restricted_entry(cfg, open, g))
                continue;
            *what = "allow";
        } else {
            bool (*applies)(const struct config *, const char *) =
                pass == 0 ? config_rls_applies : config_mask_applies;
            if (!applies(cfg, g->name) || applies(cfg, open->name) || config_db_restricted(open))
                continue;
            *what = pass == 0 ? "rls.databases" : "masking.databases";
        }
        *guarded = g;
        (*k)++;
        return open;
    }
    return NULL;
}

bool config_str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_list(const struct string_list *a, const struct string_list *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->items[i], b->items[i]) != 0)
            return false;
    return true;
}

bool config_same_credentials(const struct db_config *a, const struct db_config *b)
{
    const struct cred_config *x = &a->cred, *y = &b->cred;
    return x->provider == y->provider && config_str_eq(a->user, b->user) &&
           config_str_eq(x->path, y->path) && same_list(&x->command, &y->command) &&
           config_str_eq(x->shell, y->shell) && config_str_eq(x->workspace, y->workspace) &&
           config_str_eq(x->client_id, y->client_id) &&
           config_str_eq(x->client_id_env, y->client_id_env) &&
           config_str_eq(x->client_secret_env, y->client_secret_env) &&
           config_str_eq(x->client_secret_file, y->client_secret_file) &&
           config_str_eq(x->instance, y->instance) && same_list(&x->instances, &y->instances) &&
           config_str_eq(x->endpoint, y->endpoint) && x->ttl_s == y->ttl_s &&
           config_str_eq(x->ca_file, y->ca_file);
}

bool config_same_rls_shape(const struct config *a, const struct config *b, const char *db)
{
    bool on_a = config_rls_applies(a, db), on_b = config_rls_applies(b, db);
    if (!on_a || !on_b)
        return on_a == on_b;
    const struct rls_config *x = &a->rls, *y = &b->rls;
    if (strcmp(x->prefix, y->prefix) != 0 || x->switch_role != y->switch_role ||
        x->n_attrs != y->n_attrs)
        return false;
    for (size_t i = 0; i < x->n_attrs; i++)
        if (!find_rls_attr(y, x->attrs[i].name))
            return false;
    return true;
}

char *config_read_file(const char *path, size_t max, bool secret, size_t *len, struct stat *st,
                       char *err, size_t errsz)
{
    struct stat own;
    st = st ? st : &own;
    /* non-blocking: opening a FIFO with no writer returns at once, to be refused below */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    char why[512];
    if (fd < 0 || fstat(fd, st) != 0) {
        snprintf(err, errsz, "cannot read %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    if (config_file_refusal(path, st, secret, why, sizeof(why))) {
        snprintf(err, errsz, "%s %s", path, why);
        close(fd);
        return NULL;
    }
    size_t cap = max + 1;
    if ((off_t)max > st->st_size) /* (sized by the file, growing only if it grows) */
        cap = (size_t)st->st_size + 1;
    char *buf = malloc(cap);
    size_t n = 0;
    ssize_t got = 1;
    while (buf && got > 0 && n <= max) { /* a regular file may still come in pieces */
        if (n == cap) {
            size_t grown_cap = cap * 2 < max + 1 ? cap * 2 : max + 1;
            char *grown = malloc(grown_cap);
            if (grown)
                memcpy(grown, buf, n);
            config_file_free(buf, n, secret);
            buf = grown;
            cap = grown_cap;
            continue;
        }
        do
            got = read(fd, buf + n, cap - n);
        while (got < 0 && errno == EINTR);
        if (got > 0)
            n += (size_t)got;
    }
    int read_errno = errno;
    close(fd);
    if (!buf || got < 0 || n > max) {
        if (!buf)
            snprintf(err, errsz, "cannot read %s: out of memory", path);
        else if (got < 0)
            snprintf(err, errsz, "cannot read %s: %s", path, strerror(read_errno));
        else
            snprintf(err, errsz, "%s is larger than %zu bytes", path, max);
        config_file_free(buf, n, secret);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

void config_file_free(char *text, size_t len, bool secret)
{
    if (text && secret)
        OPENSSL_cleanse(text, len);
    free(text);
}

const char *config_file_refusal(const char *path, const struct stat *st, bool secret, char *why,
                                size_t whysz)
{
    unsigned mode = (unsigned)st->st_mode;
    if (!S_ISREG(st->st_mode))
        snprintf(why, whysz, "is not a regular file");
    else if (secret && (mode & 0007))
        snprintf(why, whysz, "can be %s by every user (mode %04o): chmod o-rwx %s",
                 mode & 0004   ? "read"
                 : mode & 0002 ? "changed"
                               : "opened",
                 mode & 07777, path);
    else
        return NULL;
    return why;
}
