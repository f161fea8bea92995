/* fnv.h: FNV-1a, the non-cryptographic hash behind lakeproxy's small tables of names it chose
 * or an admin configured, each compared whole on a hit. Tables keyed by what a client picks
 * (statement texts, application names) use SipHash with a secret instead (siphash.h), so no
 * client can aim its keys at one chain. */
#ifndef LAKEPROXY_FNV_H
#define LAKEPROXY_FNV_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FNV_OFFSET 1469598103934665603ull
#define FNV_PRIME 1099511628211ull

static inline uint64_t fnv_byte(uint64_t h, uint8_t c)
{
    return (h ^ c) * FNV_PRIME;
}

static inline uint64_t fnv_bytes(uint64_t h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = fnv_byte(h, ((const uint8_t *)p)[i]);
    return h;
}

/* The bytes of NUL-terminated s. */
static inline uint64_t fnv_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = fnv_byte(h, (uint8_t)*s);
    return h;
}

#endif
