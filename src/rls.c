/* rls.c: resolving a client's row-level-security attributes and building the set_config
 * statement that carries them onto a server connection. */
#include "rls.h"

#include <openssl/objects.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "params.h"

/* users.X.attributes[name], else the first of its groups (configured ones, then the
 * identity's own) that sets it; NULL when none does. */
static const char *attribute_value(const struct config *cfg, const struct user_config *u,
                                   const struct rls_identity *id, const char *name)
{
    for (size_t i = 0; u && i < u->attributes.n; i++)
        if (strcmp(u->attributes.items[i].key, name) == 0)
            return u->attributes.items[i].value;
    for (int pass = 0; pass < 2; pass++) {
        const struct string_list *gl = pass == 0 ? (u ? &u->groups : NULL) : id->groups;
        for (size_t g = 0; gl && g < gl->n; g++) {
            const struct group_config *gc = config_find_group(cfg, gl->items[g]);
            for (size_t i = 0; gc && i < gc->attributes.n; i++)
                if (strcmp(gc->attributes.items[i].key, name) == 0)
                    return gc->attributes.items[i].value;
        }
    }
    return NULL;
}

/* The role a user assumes: its own, else its first group's that has one, else the
 * default; NULL when there is none. */
static const char *role_of(const struct config *cfg, const struct user_config *u,
                           const struct rls_identity *id)
{
    if (u && u->role)
        return u->role;
    for (int pass = 0; pass < 2; pass++) {
        const struct string_list *gl = pass == 0 ? (u ? &u->groups : NULL) : id->groups;
        for (size_t g = 0; gl && g < gl->n; g++) {
            const struct group_config *gc = config_find_group(cfg, gl->items[g]);
            if (gc && gc->role)
                return gc->role;
        }
    }
    return cfg->rls.default_role;
}

const char *rls_role(const struct config *cfg, const struct rls_identity *id)
{
    return cfg->rls.switch_role ? role_of(cfg, config_find_user(cfg, id->user), id) : NULL;
}

static const char *source_value(const struct config *cfg, const struct user_config *u,
                                const struct rls_identity *id, const struct rls_attr *a)
{
    char full[112];
    switch (a->source) {
    case RLS_SRC_ATTRIBUTE: return attribute_value(cfg, u, id, a->name);
    case RLS_SRC_USER: return id->user;
    case RLS_SRC_DATABASE: return id->database;
    case RLS_SRC_CLIENT_ADDR: return id->client_addr;
    case RLS_SRC_APP_NAME: return id->application_name;
    case RLS_SRC_CERT: return id->cert ? param_get(id->cert, OBJ_nid2sn(a->cert_nid)) : NULL;
    case RLS_SRC_OPTION:
        snprintf(full, sizeof(full), "%s.%s", cfg->rls.prefix, a->name);
        return id->options ? param_get(id->options, full) : NULL;
    }
    return NULL;
}

bool rls_resolve(const struct config *cfg, const struct rls_identity *id, struct rls_setting *out,
                 size_t *n, char *err, size_t errsz)
{
    const struct user_config *u = config_find_user(cfg, id->user);
    *n = 0;
    if (cfg->rls.switch_role) {
        const char *role = rls_role(cfg, id);
        if (!role) {
            snprintf(err, errsz,
                     "no database role is configured for user \"%.64s\" (rls.switch_role)",
                     id->user);
            return false;
        }
        snprintf(out[0].name, sizeof(out[0].name), "role");
        out[(*n)++].value = role;
    }
    for (size_t i = 0; i < cfg->rls.n_attrs && *n < RLS_MAX_SETTINGS; i++) {
        const struct rls_attr *a = &cfg->rls.attrs[i];
        const char *v = source_value(cfg, u, id, a);
        snprintf(out[*n].name, sizeof(out[*n].name), "%s.%s", cfg->rls.prefix, a->name);
        out[(*n)++].value = v ? v : "";
    }
    return true;
}

/* Appends Parse, Bind and Execute of sql, without parameters, in the unnamed statement. */
static void put_unnamed_run(struct buf *b, const char *sql)
{
    buf_msg_start(b, 'P');
    buf_put_u8(b, 0);
    buf_put_bytes(b, sql, strlen(sql) + 1);
    buf_put_u16(b, 0);
    buf_msg_finish(b);
    buf_msg_start(b, 'B');
    buf_put_u8(b, 0);
    buf_put_u8(b, 0);
    buf_put_u16(b, 0); /* parameter formats */
    buf_put_u16(b, 0); /* parameters */
    buf_put_u16(b, 0); /* result formats */
    buf_msg_finish(b);
    buf_msg_start(b, 'E');
    buf_put_u8(b, 0);
    buf_put_u32(b, 0);
    buf_msg_finish(b);
}

void rls_build_prefix(const struct rls_setting *s, size_t n, struct buf *b)
{
    char part[64];
    buf_msg_start(b, 'P');
    buf_put_u8(b, 0); /* the unnamed statement: the client's own starts after ours */
    buf_put_bytes(b, "SELECT ", 7);
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(part, sizeof(part), "%spg_catalog.set_config($%zu,$%zu,false)",
                           i ? "," : "", 2 * i + 1, 2 * i + 2);
        buf_put_bytes(b, part, (size_t)len);
    }
    buf_put_u8(b, 0);
    buf_put_u16(b, 0); /* parameter types: inferred (text) */
    buf_msg_finish(b);
    buf_msg_start(b, 'B');
    buf_put_u8(b, 0);
    buf_put_u8(b, 0);
    buf_put_u16(b, 0); /* parameter formats: all text */
    buf_put_u16(b, (uint16_t)(2 * n));
    for (size_t i = 0; i < n; i++) {
        const char *pair[2] = {s[i].name, s[i].value};
        for (int k = 0; k < 2; k++) {
            buf_put_u32(b, (uint32_t)strlen(pair[k]));
            buf_put_bytes(b, pair[k], strlen(pair[k]));
        }
    }
    buf_put_u16(b, 0); /* result formats: text */
    buf_msg_finish(b);
    buf_msg_start(b, 'E');
    buf_put_u8(b, 0);
    buf_put_u32(b, 0);
    buf_msg_finish(b);
    /* the previous tenant's sequence values go too: currval() and lastval() would tell them */
    put_unnamed_run(b, "DISCARD SEQUENCES");
    /* close the unnamed statement: a client's Bind to "" must not run ours with its values */
    buf_msg_start(b, 'C');
    buf_put_u8(b, 'S');
    buf_put_u8(b, 0);
    buf_msg_finish(b);
    buf_msg_start(b, 'S');
    buf_msg_finish(b);
}

bool rls_client_settable(const struct config *cfg, const char *name)
{
    if (!cfg->rls.enabled || !cfg->rls.prefix)
        return false;
    size_t plen = strlen(cfg->rls.prefix);
    if (strncasecmp(name, cfg->rls.prefix, plen) != 0 || name[plen] != '.')
        return false;
    for (size_t i = 0; i < cfg->rls.n_attrs; i++)
        if (cfg->rls.attrs[i].source == RLS_SRC_OPTION &&
            strcmp(cfg->rls.attrs[i].name, name + plen + 1) == 0)
            return true;
    return false;
}
