/* textcache.h: a bounded map from (a 64-bit key, a text) to a fixed-size value, least recently
 * used evicted: the verdict caches of the RLS guard and the masking guard, by statement text
 * (the key tells policies apart). Texts are compared whole on a hit. Pure: no I/O. */
#ifndef LAKEPROXY_TEXTCACHE_H
#define LAKEPROXY_TEXTCACHE_H

#include <stddef.h>
#include <stdint.h>

struct textcache;

/* At most max_entries values of value_size bytes each; NULL when out of memory. */
struct textcache *textcache_new(size_t max_entries, size_t value_size);
void textcache_free(struct textcache *tc);
void textcache_clear(struct textcache *tc);

/* The value stored for (key, text[0..len)), now the most recently used; NULL when absent. */
void *textcache_get(struct textcache *tc, uint64_t key, const char *text, size_t len);

/* Room for the value of (key, text), zeroed, after evicting the least recently used entry
 * when full; the caller fills it. NULL when out of memory. */
void *textcache_put(struct textcache *tc, uint64_t key, const char *text, size_t len);

#endif
