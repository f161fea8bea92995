/* textscan.h: a fast case-insensitive search for an ASCII keyword in query text, for the
 * pre-filters every statement passes (glibc's strcasestr costs several hundred instructions a
 * call on short texts; this costs a vectorised strpbrk plus a compare per candidate). */
#ifndef LAKEPROXY_TEXTSCAN_H
#define LAKEPROXY_TEXTSCAN_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* ASCII case folding, as PostgreSQL folds keywords (locale-free). */
static inline char textscan_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

static inline char textscan_upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - ('a' - 'A')) : c;
}

/* Does the text at p, whose first byte matches word's ignoring case, go on as word does? Stops
 * at the text's NUL (most candidates fail at their second byte). */
static inline bool textscan_rest_matches(const char *p, const char *word)
{
    size_t i = 1;
    while (word[i] && textscan_lower(p[i]) == word[i])
        i++;
    return !word[i];
}

/* Does NUL-terminated text contain word (non-empty, lower-case ASCII), ignoring case,
 * anywhere? strpbrk finds each candidate's first byte, the rest is compared in line; a word
 * with a byte that has no case (the '_' of "lp_") is found by that byte with strchr instead,
 * which is cheaper per call and stops less often. */
static inline bool text_contains_ci(const char *text, const char *word)
{
    size_t at = 0;
    while (word[at] && textscan_upper(word[at]) != word[at])
        at++;
    if (word[at]) { /* word[at] has no case */
        for (const char *p = strchr(text, word[at]); p; p = strchr(p + 1, word[at])) {
            if ((size_t)(p - text) < at)
                continue; /* too near the start for the bytes before it */
            if (textscan_lower(*(p - at)) == word[0] && textscan_rest_matches(p - at, word))
                return true;
        }
        return false;
    }
    const char first[3] = {word[0], textscan_upper(word[0]), '\0'};
    for (const char *p = strpbrk(text, first); p; p = strpbrk(p + 1, first))
        if (textscan_rest_matches(p, word))
            return true;
    return false;
}

/* Up to 32 keywords (each a non-empty lower-case ASCII string) to look for in one pass over a
 * text. Built once (textscan_set_init), searched many times. On x86-64 sixteen positions of
 * the text are tested at a time (SSE2): does a word's first byte start there, and one's second
 * byte follow it? Elsewhere, byte by byte. Either way a candidate is then checked against
 * tables of the words that start with its first byte and go on with its second, and the few
 * left are compared in full: common letters cost next to nothing. */
enum { TEXTSCAN_SET_MAX = 32 };

struct textscan_set {
    const char *const *words;
    unsigned n;
    unsigned n_first, n_second;                 /* distinct bytes, folded (b | 0x20) */
    bool any_second;                            /* a word of one byte: any byte follows it */
    unsigned char first[TEXTSCAN_SET_MAX][16];  /* words' first bytes, each repeated 16 times */
    unsigned char second[TEXTSCAN_SET_MAX][16]; /* and their second bytes */
    uint32_t by_byte[256];   /* bit i: words[i] starts with this byte (either case) */
    uint32_t by_second[256]; /* bit i: words[i] goes on with this byte (either case), or has
                                no second byte (then any byte, NUL included) */
};

/* Adds byte b, folded, to the n distinct ones of table (16 copies each), unless there. */
static inline void textscan_add_folded(unsigned char table[][16], unsigned *n, unsigned char b)
{
    for (unsigned k = 0; k < *n; k++)
        if (table[k][0] == (b | 0x20))
            return;
    memset(table[(*n)++], b | 0x20, 16);
}

static inline void textscan_set_init(struct textscan_set *s, const char *const *words, unsigned n)
{
    memset(s, 0, sizeof(*s));
    s->words = words;
    s->n = n;
    for (unsigned i = 0; i < n; i++) {
        unsigned char b0 = (unsigned char)words[i][0], b1 = (unsigned char)words[i][1];
        s->by_byte[b0] |= 1u << i;
        s->by_byte[(unsigned char)textscan_upper((char)b0)] |= 1u << i;
        for (unsigned b = 0; b < 256; b++)
            if (!b1 || b == b1 || b == (unsigned char)textscan_upper((char)b1))
                s->by_second[b] |= 1u << i;
        textscan_add_folded(s->first, &s->n_first, b0);
        if (b1)
            textscan_add_folded(s->second, &s->n_second, b1);
        else
            s->any_second = true;
    }
}

/* The words of s found at p (whose byte is not NUL), among those not in found yet. */
static inline uint32_t textscan_set_at(const struct textscan_set *s, const char *p, uint32_t found)
{
    uint32_t m = s->by_byte[(unsigned char)p[0]] & s->by_second[(unsigned char)p[1]] & ~found;
    while (m) {
        unsigned i = (unsigned)__builtin_ctz(m);
        m &= m - 1;
        if (textscan_rest_matches(p, s->words[i]))
            found |= 1u << i;
    }
    return found;
}

#if defined(__SSE2__) && !defined(TEXTSCAN_SCALAR)
#include <emmintrin.h>

/* Bit j of which of the n folded bytes of table the 16 folded bytes of v hold (byte j). */
static inline __m128i textscan_any_of(__m128i v, const unsigned char table[][16], unsigned n)
{
    __m128i hit = _mm_setzero_si128();
    for (unsigned k = 0; k < n; k++)
        hit = _mm_or_si128(
            hit, _mm_cmpeq_epi8(v, _mm_loadu_si128((const __m128i *)(const void *)table[k])));
    return hit;
}

/* Bit j: the bytes at p + j and p + j + 1 (17 readable at p), folded (b | 0x20), are a first
 * and a second byte of s's words. Folding maps both cases of a letter to the lower, and a few
 * other bytes onto others ('_' and DEL, '@' and '`'); the pair need not be one word's: a
 * superset, which textscan_set_at then checks. */
static inline unsigned textscan_block(const struct textscan_set *s, const char *p)
{
    const __m128i fold = _mm_set1_epi8(0x20);
    __m128i v0 = _mm_or_si128(_mm_loadu_si128((const __m128i *)(const void *)p), fold);
    __m128i hit = textscan_any_of(v0, s->first, s->n_first);
    if (!s->any_second) {
        __m128i v1 = _mm_or_si128(_mm_loadu_si128((const __m128i *)(const void *)(p + 1)), fold);
        hit = _mm_and_si128(hit, textscan_any_of(v1, s->second, s->n_second));
    }
    return (unsigned)_mm_movemask_epi8(hit);
}

/* textscan_set_find on the SSE2 path: blocks of 16 positions in place while 17 bytes are left,
 * the rest through a copy padded with NULs (never read past the text's end); candidates are
 * checked in the text. */
static inline uint32_t textscan_set_scan(const struct textscan_set *s, const char *text,
                                         uint32_t all, uint32_t stop)
{
    size_t len = strlen(text), at = 0;
    uint32_t found = 0;
    while (at < len) {
        unsigned m;
        if (len - at > 16) {
            m = textscan_block(s, text + at);
        } else {
            char last[17] = {0};
            memcpy(last, text + at, len - at);
            m = textscan_block(s, last) & ((1u << (len - at)) - 1);
        }
        while (m) {
            unsigned j = (unsigned)__builtin_ctz(m);
            m &= m - 1;
            found = textscan_set_at(s, text + at + j, found);
        }
        if (found == all || (found & stop))
            break;
        at += 16;
    }
    return found;
}
#else
/* textscan_set_find byte by byte. */
static inline uint32_t textscan_set_scan(const struct textscan_set *s, const char *text,
                                         uint32_t all, uint32_t stop)
{
    uint32_t found = 0;
    for (const char *p = text; *p; p++) {
        if (s->by_byte[(unsigned char)*p])
            found = textscan_set_at(s, p, found);
        if (found == all || (found & stop))
            break;
    }
    return found;
}
#endif

/* Which of the set's words NUL-terminated text contains, ignoring case (bit i: words[i]), as
 * text_contains_ci finds each; it may stop as soon as it has found one of stop. */
static inline uint32_t textscan_set_find(const struct textscan_set *s, const char *text,
                                         uint32_t stop)
{
    uint32_t all = s->n >= 32 ? ~0u : (1u << s->n) - 1;
    return textscan_set_scan(s, text, all, stop);
}

/* Defines a static struct textscan_set name of the words in the array list, made before main
 * runs (so threads only ever read it). */
#define TEXTSCAN_SET_OF(name, list)                                                                \
    static struct textscan_set name;                                                               \
    __attribute__((constructor)) static void name##_make(void)                                     \
    {                                                                                              \
        _Static_assert(sizeof(list) / sizeof((list)[0]) <= TEXTSCAN_SET_MAX, "too many words");    \
        textscan_set_init(&name, list, sizeof(list) / sizeof((list)[0]));                          \
    }

/* Is NUL-terminated text read alike whatever standard_conforming_strings and client_encoding
 * say? So it is when it holds no backslash and no byte above 0x7F: every encoding PostgreSQL
 * takes is ASCII below that, and only a backslash reads otherwise with the setting off. */
static inline bool text_reads_alike(const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p == '\\' || *p > 0x7f)
            return false;
    return true;
}

#endif
