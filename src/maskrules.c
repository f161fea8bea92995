/* maskrules.c: a client's masking rules from the configuration. */
#include "fnv.h"
#include "maskrules.h"

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

/* The value of configured attribute name for u: its own, else its first group's that has it. */
static const char *attribute_of(const struct config *cfg, const struct user_config *u,
                                const char *name)
{
    for (size_t i = 0; i < u->attributes.n; i++)
        if (strcmp(u->attributes.items[i].key, name) == 0)
            return u->attributes.items[i].value;
    for (size_t g = 0; g < u->groups.n; g++) {
        const struct group_config *gc = config_find_group(cfg, u->groups.items[g]);
        for (size_t i = 0; gc && i < gc->attributes.n; i++)
            if (strcmp(gc->attributes.items[i].key, name) == 0)
                return gc->attributes.items[i].value;
    }
    return NULL;
}

/* Does u have role, itself or through one of its groups? */
static bool has_role(const struct config *cfg, const struct user_config *u,
                     const struct mask_rule *r)
{
    if (in_list(&r->unless_roles, u->role))
        return true;
    for (size_t g = 0; g < u->groups.n; g++) {
        const struct group_config *gc = config_find_group(cfg, u->groups.items[g]);
        if (gc && in_list(&r->unless_roles, gc->role))
            return true;
    }
    return false;
}

bool maskrules_exempt(const struct config *cfg, const struct mask_rule *r, const char *user)
{
    if (in_list(&r->unless_users, user))
        return true;
    const struct user_config *u = config_find_user(cfg, user);
    if (!u) /* users known only to auth_query have no groups, roles or attributes */
        return false;
    for (size_t g = 0; g < u->groups.n; g++)
        if (in_list(&r->unless_groups, u->groups.items[g]))
            return true;
    if (has_role(cfg, u, r))
        return true;
    for (size_t i = 0; i < r->unless_attrs.n; i++) {
        const char *v = attribute_of(cfg, u, r->unless_attrs.items[i].key);
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
        h = mix_num(mix_num(mix_num(h, r->fn.kind), (uint64_t)r->fn.prefix), (uint64_t)r->fn.suffix);
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

bool maskrules_build(const struct config *cfg, const char *user, struct client_mask *m)
{
    const struct mask_config *mc = &cfg->masking;
    *m = (struct client_mask){0};
    m->n_rules = mc->n_rules;
    if (!(m->applies = calloc(mc->n_rules ? mc->n_rules : 1, sizeof(*m->applies))))
        return false;
    for (size_t i = 0; i < mc->n_rules; i++) {
        const struct mask_rule *r = &mc->rules[i];
        if (maskrules_exempt(cfg, r, user))
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
