/* recent.h: the last few texts a client sent of one kind, each with a value worked out from it,
 * found again by compare. Drivers cycle through a handful of unnamed statements (a TPC-B
 * transaction parses seven, JDBC below its prepare threshold one per query shape): a compare of
 * lengths and bytes costs less than reading or keying a text again. Pure: no I/O. */
#ifndef LAKEPROXY_RECENT_H
#define LAKEPROXY_RECENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RECENT_N 8            /* texts kept at most */
#define RECENT_BYTES_MAX 8192 /* of text kept at most, together */
#define RECENT_TEXT_MAX 8192  /* longer texts are not kept */

struct recent {
    struct recent_entry {
        uint8_t *bytes; /* a copy of the text (NULL: an empty slot) */
        uint32_t len;
        uint64_t value;
    } e[RECENT_N];
    unsigned next; /* the slot the next text takes: the oldest */
    size_t bytes;  /* of text kept, together */
};

/* The value kept with bytes[0..len), in *value; false when the text is not kept. A text found
 * trades places with the newest, so it outlives the texts put after it was found (the newest
 * takes its age). */
bool recent_find(struct recent *r, const void *bytes, size_t len, uint64_t *value);

/* Keeps bytes[0..len) with value as the newest text (the value only, when the text is kept
 * already), the oldest giving way as room requires. False when it is too long or out of
 * memory: nothing is kept then. */
bool recent_put(struct recent *r, const void *bytes, size_t len, uint64_t value);

/* Forgets every text. */
void recent_clear(struct recent *r);

#endif
