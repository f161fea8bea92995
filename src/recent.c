/* recent.c: a client's last few texts of one kind, with their values (see recent.h). */
#include "recent.h"

#include <stdlib.h>
#include <string.h>

/* Slot k, the ith newest (1: the newest). */
static unsigned newest(const struct recent *r, unsigned i)
{
    return (r->next + RECENT_N - i) % RECENT_N;
}

/* The slot holding bytes[0..len), newest first; -1 when none does. */
static int slot_of(const struct recent *r, const void *bytes, size_t len)
{
    for (unsigned i = 1; i <= RECENT_N; i++) {
        unsigned k = newest(r, i);
        const struct recent_entry *e = &r->e[k];
        if (e->len == len && e->bytes && memcmp(e->bytes, bytes, len) == 0)
            return (int)k;
    }
    return -1;
}

/* Makes slot k the newest: it trades places with the newest one. */
static void make_newest(struct recent *r, unsigned k)
{
    unsigned top = newest(r, 1);
    if (k == top)
        return;
    struct recent_entry t = r->e[top];
    r->e[top] = r->e[k];
    r->e[k] = t;
}

/* Empties slot k. */
static void drop(struct recent *r, unsigned k)
{
    r->bytes -= r->e[k].len;
    free(r->e[k].bytes);
    r->e[k] = (struct recent_entry){0};
}

bool recent_find(struct recent *r, const void *bytes, size_t len, uint64_t *value)
{
    int k = slot_of(r, bytes, len);
    if (k < 0)
        return false;
    *value = r->e[k].value;
    make_newest(r, (unsigned)k);
    return true;
}

bool recent_put(struct recent *r, const void *bytes, size_t len, uint64_t value)
{
    int k = slot_of(r, bytes, len);
    if (k >= 0) {
        r->e[k].value = value;
        make_newest(r, (unsigned)k);
        return true;
    }
    if (len > RECENT_TEXT_MAX)
        return false;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return false;
    memcpy(copy, bytes, len);
    drop(r, r->next);
    for (unsigned i = RECENT_N - 1; i >= 1 && r->bytes + len > RECENT_BYTES_MAX; i--)
        drop(r, newest(r, i)); /* the oldest of the others first */
    r->e[r->next] = (struct recent_entry){.bytes = copy, .len = (uint32_t)len, .value = value};
    r->bytes += len;
    r->next = (r->next + 1) % RECENT_N;
    return true;
}

void recent_clear(struct recent *r)
{
    for (unsigned i = 0; i < RECENT_N; i++)
        free(r->e[i].bytes);
    memset(r, 0, sizeof(*r));
}
