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

/* The 1-3 bytes at p (n of them) as one value, each byte in it: first, middle and last. */
static inline uint64_t fnv_short(const uint8_t *p, size_t n)
{
    return n ? (uint64_t)p[0] | (uint64_t)p[n / 2] << 8 | (uint64_t)p[n - 1] << 16 : 0;
}

/* Like fnv_bytes, but eight bytes at a time (a multiply and a fold of the high half per word).
 * The last 0-7 bytes go in as one word that holds each of them and, in its top byte alone,
 * their number: two different tails never make the same word. For texts longer than a few
 * bytes. Not FNV-1a's values. */
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
        uint32_t first;
        memcpy(&first, p, 4);
        w = first | fnv_short(p + 4, n - 4) << 32; /* bits 0-55 */
    } else {
        w = fnv_short(p, n); /* bits 0-23 */
    }
    h = (h ^ w ^ (uint64_t)n << 56) * FNV_PRIME;
    return h ^ (h >> 32);
}

#endif
