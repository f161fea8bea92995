/* fnv.h: FNV-1a and a word-at-a-time variant of it, the non-cryptographic hashes behind
 * lakeproxy's tables (caches, name sets, statement keys). Whatever they hash is compared whole
 * on a hit, except the statistics' text keys (sqlkey.h), which are seeded with a secret. */
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

/* Like fnv_bytes, but eight bytes at a time (a multiply and a fold of the high half per word),
 * the last 1-7 read as two overlapping halves (4-7) or first, middle and last (1-3), which
 * covers each byte, mixed in with n: for texts longer than a few bytes. Not FNV-1a's values. */
static inline uint64_t fnv_wide(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t w;
    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * FNV_PRIME;
        h ^= h >> 32;
    }
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        w = a | (uint64_t)b << 32;
    } else if (n > 0) {
        w = (uint64_t)p[0] | (uint64_t)p[n / 2] << 8 | (uint64_t)p[n - 1] << 16;
    } else {
        w = 0;
    }
    h = (h ^ w ^ (uint64_t)n << 59) * FNV_PRIME;
    return h ^ (h >> 32);
}

#endif
