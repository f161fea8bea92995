/* fnv.h: FNV-1a, the one non-cryptographic hash behind lakeproxy's tables (caches, name sets,
 * statement keys). Whatever it hashes is compared whole on a hit, so it need not resist
 * collisions. */
#ifndef LAKEPROXY_FNV_H
#define LAKEPROXY_FNV_H

#include <stddef.h>
#include <stdint.h>

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
