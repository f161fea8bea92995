/* siphash.h: SipHash (Aumasson and Bernstein, 2012), a keyed pseudorandom function of a byte
 * string, fed in pieces: without the 128-bit key, no one can find two inputs with the same
 * value any faster than by guessing. lakeproxy uses SipHash-1-3 (one round per word, three at
 * the end: what Python's and Rust's hash tables use against chosen keys) for the statistics'
 * statement keys, trusted without comparing texts (sqlkey.c), and for tables keyed by what
 * clients pick; SipHash-2-4, the paper's, checks the code against its reference values. Pure,
 * header only. */
#ifndef LAKEPROXY_SIPHASH_H
#define LAKEPROXY_SIPHASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct siphash {
    uint64_t v0, v1, v2, v3;
    int c, d;      /* rounds per word and at the end */
    uint64_t pend; /* the next 0-7 bytes of input, the first in the lowest byte */
    unsigned npend;
    uint64_t total; /* bytes fed so far */
};

static inline uint64_t sip_rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static inline void sip_round(struct siphash *s)
{
    s->v0 += s->v1;
    s->v1 = sip_rotl(s->v1, 13) ^ s->v0;
    s->v0 = sip_rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = sip_rotl(s->v3, 16) ^ s->v2;
    s->v0 += s->v3;
    s->v3 = sip_rotl(s->v3, 21) ^ s->v0;
    s->v2 += s->v1;
    s->v1 = sip_rotl(s->v1, 17) ^ s->v2;
    s->v2 = sip_rotl(s->v2, 32);
}

/* One eight-byte word of input (its first byte in the lowest bits). */
static inline void sip_word(struct siphash *s, uint64_t m)
{
    s->v3 ^= m;
    sip_round(s);
    for (int i = 1; i < s->c; i++)
        sip_round(s);
    s->v0 ^= m;
}

/* SipHash-c-d under the key (k0, k1): its first eight bytes, little-endian, then the rest. */
static inline void siphash_init_rounds(struct siphash *s, uint64_t k0, uint64_t k1, int c, int d)
{
    s->c = c;
    s->d = d;
    s->v0 = k0 ^ 0x736f6d6570736575ull;
    s->v1 = k1 ^ 0x646f72616e646f6dull;
    s->v2 = k0 ^ 0x6c7967656e657261ull;
    s->v3 = k1 ^ 0x7465646279746573ull;
    s->pend = 0;
    s->npend = 0;
    s->total = 0;
}

/* SipHash-1-3 under the key (k0, k1). */
static inline void siphash_init(struct siphash *s, uint64_t k0, uint64_t k1)
{
    siphash_init_rounds(s, k0, k1, 1, 3);
}

/* The eight bytes at p as a little-endian word, on any host. */
static inline uint64_t sip_load_le64(const void *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* The n (< 8) bytes at b as the low bytes of a word, the first lowest. */
static inline uint64_t sip_load_partial(const uint8_t *b, size_t n)
{
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)b[i] << (8 * i);
    return w;
}

static inline void siphash_byte(struct siphash *s, uint8_t c)
{
    s->pend |= (uint64_t)c << (8 * s->npend);
    s->total++;
    if (++s->npend == 8) {
        sip_word(s, s->pend);
        s->pend = 0;
        s->npend = 0;
    }
}

/* Feeds n bytes at p: the value depends on the bytes fed, not on how they were cut. */
static inline void siphash_bytes(struct siphash *s, const void *p, size_t n)
{
    const uint8_t *b = p;
    s->total += n;
    if (s->npend > 0) { /* complete the pending word first */
        size_t take = 8 - s->npend < n ? 8 - s->npend : n;
        s->pend |= sip_load_partial(b, take) << (8 * s->npend);
        s->npend += (unsigned)take;
        b += take;
        n -= take;
        if (s->npend < 8)
            return;
        sip_word(s, s->pend);
        s->npend = 0;
    }
    if (n >= 8) { /* whole words, the state in locals (registers) meanwhile */
        struct siphash t = *s;
        for (; n >= 8; b += 8, n -= 8)
            sip_word(&t, sip_load_le64(b));
        s->v0 = t.v0;
        s->v1 = t.v1;
        s->v2 = t.v2;
        s->v3 = t.v3;
    }
    s->pend = sip_load_partial(b, n);
    s->npend = (unsigned)n;
}

/* The 8 bytes of v, lowest first: a number fed the same way on any host. */
static inline void siphash_u64(struct siphash *s, uint64_t v)
{
    if (s->npend == 0) {
        sip_word(s, v);
        s->total += 8;
        return;
    }
    for (int i = 0; i < 8; i++)
        siphash_byte(s, (uint8_t)(v >> (8 * i)));
}

/* The value of everything fed. */
static inline uint64_t siphash_end(struct siphash *s)
{
    struct siphash t = *s; /* (in registers) */
    sip_word(&t, t.pend | (t.total & 0xff) << 56);
    t.v2 ^= 0xff;
    for (int i = 0; i < t.d; i++)
        sip_round(&t);
    return t.v0 ^ t.v1 ^ t.v2 ^ t.v3;
}

#endif
