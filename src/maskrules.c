/* maskrules.c: a client's masking rules from the configuration. */
#include "maskrules.h"
#include "fnv.h"
#include "mask.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static bool in_list(const struct string_list *l, const char *s)
{
    for (size_t i = 0; s && i < l->n; i++)
        if (strcmp(l->items[i], s) == 0)
            return true;
    return false;
}

/* The group lists of a user: its configured groups (u may be NULL), then extra. */
static const struct string_list *group_list(const struct user_config *u,
                                            const struct string_list *extra, int pass)
{
    return pass == 0 ? (u ? &u->groups : NULL) : extra;
}

/* The value of configured attribute name for a user: its own, else its first group's that
 * has it (configured groups first, then extra). */
static const char *attribute_of(const struct config *cfg, const struct user_config *u,
                                const struct string_list *extra, const char *name)
{
    for (size_t i = 0; u && i < u->attributes.n; i++)
        if (strcmp(u->attributes.items[i].key, name) == 0)
            return u->attributes.items[i].value;
    for (int pass = 0; pass < 2; pass++) {
        const struct string_list *gl = group_list(u, extra, pass);
        for (size_t g = 0; gl && g < gl->n; g++) {
            const struct group_config *gc = config_find_group(cfg, gl->items[g]);
            for (size_t i = 0; gc && i < gc->attributes.n; i++)
                if (strcmp(gc->attributes.items[i].key, name) == 0)
                    return gc->attributes.items[i].value;
        }
    }
    return NULL;
}

/* Is the user in one of r's exempt groups, or does it have one of r's exempt roles, itself
 * or through one of its groups? */
static bool group_or_role_exempt(const struct config *cfg, const struct user_config *u,
                                 const struct string_list *extra, const struct mask_rule *r)
{
    if (u && in_list(&r->unless_roles, u->role))
        return true;
    for (int pass = 0; pass < 2; pass++) {
        const struct string_list *gl = group_list(u, extra, pass);
        for (size_t g = 0; gl && g < gl->n; g++) {
            const struct group_config *gc = config_find_group(cfg, gl->items[g]);
            if (in_list(&r->unless_groups, gl->items[g]) ||
                (gc && in_list(&r->unless_roles, gc->role)))
                return true;
        }
    }
    return false;
}

bool maskrules_exempt(const struct config *cfg, const struct mask_rule *r, const char *user,
                      const struct string_list *extra_groups)
{
    if (in_list(&r->unless_users, user))
        return true;
    /* users known only to auth_query have no groups, roles or attributes */
    const struct user_config *u = config_find_user(cfg, user);
    if (group_or_role_exempt(cfg, u, extra_groups, r))
        return true;
    for (size_t i = 0; i < r->unless_attrs.n; i++) {
        const char *v = attribute_of(cfg, u, extra_groups, r->unless_attrs.items[i].key);
        if (v && strcmp(v, r->unless_attrs.items[i].value) == 0)
            return true;
    }
    return false;
}

/* Adds the lower-cased name to the set (names, *n) unless already there. */
static bool add_name(char ***names, size_t *n, const char *name)
{
    char *low = strdup(name);
    if (!low)
        return false;
    for (char *p = low; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*names)[i], low) == 0) {
            free(low);
            return true;
        }
    char **grown = realloc(*names, (*n + 1) * sizeof(**names));
    if (!grown) {
        free(low);
        return false;
    }
    *names = grown;
    (*names)[(*n)++] = low;
    return true;
}

/* FNV-1a steps over a string (NULL and "" differ) and over a number. */
static uint64_t mix_str(uint64_t h, const char *s)
{
    h = fnv_byte(h, s ? 1 : 2);
    return fnv_byte(s ? fnv_str(h, s) : h, 0xff);
}

static uint64_t mix_num(uint64_t h, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        h = fnv_byte(h, (uint8_t)(v >> (8 * i)));
    return h;
}

static uint64_t mix_list(uint64_t h, const struct string_list *l)
{
    h = mix_num(h, l->n);
    for (size_t i = 0; i < l->n; i++)
        h = mix_str(h, l->items[i]);
    return h;
}

uint64_t maskrules_policy_hash(const struct mask_config *m)
{
    uint64_t h = mix_num(FNV_OFFSET, m->enabled);
    h = mix_num(mix_num(h, m->strict_predicates), m->n_rules);
    h = mix_list(mix_list(h, &m->databases), &m->allow_functions);
    for (size_t i = 0; i < m->n_rules; i++) {
        const struct mask_rule *r = &m->rules[i];
        h = mix_str(mix_str(mix_str(h, r->schema), r->table), r->column);
        h = mix_num(mix_num(mix_num(h, r->fn.kind), (uint64_t)r->fn.prefix),
                    (uint64_t)r->fn.suffix);
        h = mix_str(h, r->fn.text);
        h = mix_list(mix_list(mix_list(h, &r->unless_users), &r->unless_groups), &r->unless_roles);
        for (size_t k = 0; k < r->unless_attrs.n; k++)
            h = mix_str(mix_str(h, r->unless_attrs.items[k].key), r->unless_attrs.items[k].value);
    }
    return h;
}

/* FNV-1a over which rules apply. */
static uint64_t applies_hash(const bool *applies, size_t n)
{
    uint64_t h = FNV_OFFSET;
    for (size_t i = 0; i < n; i++)
        h = fnv_byte(h, applies[i] ? 0x9e : 0x31);
    return h;
}

bool maskrules_build(const struct config *cfg, const char *user,
                     const struct string_list *extra_groups, struct client_mask *m)
{
    const struct mask_config *mc = &cfg->masking;
    *m = (struct client_mask){0};
    m->n_rules = mc->n_rules;
    m->applies = calloc(mc->n_rules ? mc->n_rules : 1, sizeof(*m->applies));
    if (!m->applies) {
        maskrules_free(m);
        return false;
    }
    for (size_t i = 0; i < mc->n_rules; i++) {
        const struct mask_rule *r = &mc->rules[i];
        if (maskrules_exempt(cfg, r, user, extra_groups))
            continue;
        m->applies[i] = true;
        m->n_applied++;
        if (!add_name(&m->columns, &m->n_columns, r->column) ||
            !add_name(&m->tables, &m->n_tables, r->table)) {
            maskrules_free(m);
            return false;
        }
    }
    m->id = applies_hash(m->applies, m->n_rules);
    return true;
}

void maskrules_free(struct client_mask *m)
{
    for (size_t i = 0; i < m->n_columns; i++)
        free(m->columns[i]);
    for (size_t i = 0; i < m->n_tables; i++)
        free(m->tables[i]);
    free(m->columns);
    free(m->tables);
    free(m->applies);
    *m = (struct client_mask){0};
}
