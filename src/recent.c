/* recent.c: a client's last few texts of one kind, with their values (see recent.h). */
#include "recent.h"

#include <stdlib.h>
#include <string.h>

/* The slot holding bytes[0..len), newest first; -1 when none does. */
static int slot_of(const struct recent *r, const void *bytes, size_t len)
{
    for (unsigned i = 1; i <= RECENT_N; i++) {
        unsigned k = (r->next + RECENT_N - i) % RECENT_N;
        const struct recent_entry *e = &r->e[k];
        if (e->bytes && e->len == len && memcmp(e->bytes, bytes, len) == 0)
            return (int)k;
    }
    return -1;
}

bool recent_find(const struct recent *r, const void *bytes, size_t len, uint64_t *value)
{
    int k = slot_of(r, bytes, len);
    if (k < 0)
        return false;
    *value = r->e[k].value;
    return true;
}

bool recent_put(struct recent *r, const void *bytes, size_t len, uint64_t value)
{
    int k = slot_of(r, bytes, len);
    if (k >= 0) {
        r->e[k].value = value;
        return true;
    }
    if (len > RECENT_TEXT_MAX)
        return false;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return false;
    memcpy(copy, bytes, len);
    struct recent_entry *e = &r->e[r->next];
    free(e->bytes);
    *e = (struct recent_entry){.bytes = copy, .len = (uint32_t)len, .value = value};
    r->next = (r->next + 1) % RECENT_N;
    return true;
}

void recent_clear(struct recent *r)
{
    for (unsigned i = 0; i < RECENT_N; i++)
        free(r->e[i].bytes);
    memset(r, 0, sizeof(*r));
}
