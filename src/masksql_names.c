/* masksql_names.c: the masking guard's name containers: sets of names and the map of what each
 * FROM item name is made of, both hashed case-insensitively; the strings stay the parse tree's. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hashkey.h"
#include "masksql_int.h"

/* A case-insensitive hash of a name, keyed with the process's secret: the names are a client's
 * (aliases, columns in its statement), and must not be aimable at one run of slots. */
static uint64_t name_hash(const char *s)
{
    struct siphash h;
    hashkey_start(&h);
    for (; *s; s++)
        siphash_byte(&h, (uint8_t)tolower((unsigned char)*s));
    return siphash_end(&h);
}

bool nameset_has(const struct nameset *s, const char *name)
{
    if (!s->cap || !name)
        return false;
    for (size_t i = name_hash(name) & (s->cap - 1); s->slot[i]; i = (i + 1) & (s->cap - 1))
        if (strcasecmp(s->slot[i], name) == 0)
            return true;
    return false;
}

/* Places name in a set known to have room and not to hold it. */
static void nameset_put(struct nameset *s, const char *name)
{
    size_t i = name_hash(name) & (s->cap - 1);
    while (s->slot[i])
        i = (i + 1) & (s->cap - 1);
    s->slot[i] = name;
    s->n++;
}

/* Adds name: 1 when new, 0 when already there, -1 when out of memory. */
int nameset_add(struct nameset *s, const char *name)
{
    if (nameset_has(s, name))
        return 0;
    if ((s->n + 1) * 2 > s->cap) {
        size_t old_cap = s->cap, cap = s->cap ? s->cap * 2 : 16;
        const char **old = s->slot;
        if (!(s->slot = calloc(cap, sizeof(*s->slot)))) {
            s->slot = old;
            return -1;
        }
        s->cap = cap;
        s->n = 0;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i])
                nameset_put(s, old[i]);
        free(old);
    }
    nameset_put(s, name);
    return 1;
}

void nameset_clear(struct nameset *s)
{
    free(s->slot);
    memset(s, 0, sizeof(*s));
}

/* Adds every name of list (n of them): 0, or -1 when out of memory. */
int nameset_add_list(struct nameset *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] && nameset_add(s, list[i]) < 0)
            return -1;
    return 0;
}

/* Keeps in s only the names also in keep: 0, or -1 when out of memory. */
static int nameset_keep_common(struct nameset *s, const struct nameset *keep)
{
    struct nameset both = {0};
    for (size_t i = 0; i < s->cap; i++)
        if (s->slot[i] && nameset_has(keep, s->slot[i]) && nameset_add(&both, s->slot[i]) < 0) {
            nameset_clear(&both);
            return -1;
        }
    nameset_clear(s);
    *s = both;
    return 0;
}

struct rowinfo *rowmap_get(const struct rowmap *m, const char *name)
{
    if (!m->cap || !name)
        return NULL;
    for (size_t i = name_hash(name) & (m->cap - 1); m->slot[i].name; i = (i + 1) & (m->cap - 1))
        if (strcasecmp(m->slot[i].name, name) == 0)
            return &m->slot[i];
    return NULL;
}

/* Places info in a map known to have room and not to hold its name. */
static struct rowinfo *rowmap_put(struct rowmap *m, const struct rowinfo *info)
{
    size_t i = name_hash(info->name) & (m->cap - 1);
    while (m->slot[i].name)
        i = (i + 1) & (m->cap - 1);
    m->slot[i] = *info;
    m->n++;
    return &m->slot[i];
}

/* The entry for name, added empty when new; NULL when out of memory. Pointers into the map
 * stay valid only until the next call. */
struct rowinfo *rowmap_add(struct rowmap *m, const char *name)
{
    struct rowinfo *found = rowmap_get(m, name), fresh = {.name = name};
    if (found)
        return found;
    if ((m->n + 1) * 2 > m->cap) {
        size_t old_cap = m->cap, cap = m->cap ? m->cap * 2 : 16;
        struct rowinfo *old = m->slot;
        if (!(m->slot = calloc(cap, sizeof(*m->slot)))) {
            m->slot = old;
            return NULL;
        }
        m->cap = cap;
        m->n = 0;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].name)
                rowmap_put(m, &old[i]);
        free(old);
    }
    return rowmap_put(m, &fresh);
}

void rowmap_clear(struct rowmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        nameset_clear(&m->slot[i].cols);
    free(m->slot);
    memset(m, 0, sizeof(*m));
}

/* Narrows info's listed names to names (the outputs of one more item of its name): 0, or -1
 * when out of memory. */
int rowinfo_list(struct rowinfo *info, const struct nameset *names)
{
    if (info->listed)
        return nameset_keep_common(&info->cols, names);
    info->listed = true;
    return nameset_add_list(&info->cols, names->slot, names->cap);
}

/* Makes info an alias of relation name too. */
void rowinfo_link(struct rowinfo *info, const char *name)
{
    for (size_t i = 0; i < info->n_links; i++)
        if (strcasecmp(info->links[i], name) == 0)
            return;
    if (info->n_links < MAX_LINKS)
        info->links[info->n_links++] = name;
    else
        info->opaque = true;
}
