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
 * text. Built once (textscan_set_init), searched many times. On x86-64 machines with SSSE3
 * sixteen positions of the text are tested at a time: may one of the words start there, by the
 * three bytes from it? Each word is put in one of eight buckets (a bit each), and for each of
 * the three bytes two 16-byte tables, indexed by a byte's low and high four bits, give the
 * buckets whose words may have that byte there; a position is a candidate when one bucket has
 * all three. Elsewhere, byte by byte. Either way a candidate is then checked against tables
 * of the words that start with its first byte and go on with its second, and the few left are
 * compared in full. */
enum { TEXTSCAN_SET_MAX = 32, TEXTSCAN_SPAN = 3, TEXTSCAN_BUCKETS = 8 };

struct textscan_set {
    const char *const *words;
    unsigned n;
    /* bit k of low[i][f & 15] & high[i][f >> 4]: a word of bucket k may have the byte whose
     * fold is f (b | 0x20) at its position i (every byte, where the word is shorter) */
    unsigned char low[TEXTSCAN_SPAN][16], high[TEXTSCAN_SPAN][16];
    bool wide;               /* sixteen at a time (SSSE3) */
    uint32_t by_byte[256];   /* bit i: words[i] starts with this byte (either case) */
    uint32_t by_second[256]; /* bit i: words[i] goes on with this byte (either case), or has
                                no second byte (then any byte, NUL included) */
};

/* Whether this machine runs textscan_block_find (x86-64 with SSSE3). */
static inline bool textscan_wide_cpu(void);

/* The bucket of each word: words that start alike share one (so that the tables' mix of their
 * bytes rarely makes a candidate no word has), the first letters taken in turn. */
static inline void textscan_buckets(const char *const *words, unsigned n, unsigned char *bucket)
{
    unsigned char first_of[TEXTSCAN_SET_MAX];
    unsigned firsts = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned char f = (unsigned char)(words[i][0] | 0x20);
        unsigned k = 0;
        while (k < firsts && first_of[k] != f)
            k++;
        if (k == firsts)
            first_of[firsts++] = f;
        bucket[i] = (unsigned char)(k % TEXTSCAN_BUCKETS);
    }
}

static inline void textscan_set_init(struct textscan_set *s, const char *const *words, unsigned n)
{
    memset(s, 0, sizeof(*s));
    s->words = words;
    s->n = n;
    unsigned char bucket[TEXTSCAN_SET_MAX];
    textscan_buckets(words, n, bucket);
    for (unsigned i = 0; i < n; i++) {
        unsigned char b0 = (unsigned char)words[i][0], b1 = (unsigned char)words[i][1];
        s->by_byte[b0] |= 1u << i;
        s->by_byte[(unsigned char)textscan_upper((char)b0)] |= 1u << i;
        for (unsigned b = 0; b < 256; b++)
            if (!b1 || b == b1 || b == (unsigned char)textscan_upper((char)b1))
                s->by_second[b] |= 1u << i;
        unsigned char bit = (unsigned char)(1u << bucket[i]);
        size_t len = strlen(words[i]);
        for (unsigned at = 0; at < TEXTSCAN_SPAN; at++) {
            unsigned f = (unsigned char)words[i][at < len ? at : 0] | 0x20u;
            for (unsigned nib = 0; nib < 16; nib++) {
                if (at >= len || nib == (f & 15))
                    s->low[at][nib] |= bit;
                if (at >= len || nib == f >> 4)
                    s->high[at][nib] |= bit;
            }
        }
    }
    s->wide = textscan_wide_cpu();
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

/* textscan_set_find byte by byte. */
static inline uint32_t textscan_bytes_find(const struct textscan_set *s, const char *text,
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

#if defined(__x86_64__) && !defined(TEXTSCAN_SCALAR)
#include <tmmintrin.h>

static inline bool textscan_wide_cpu(void)
{
    __builtin_cpu_init(); /* (sets may be made by constructors, before main) */
    return __builtin_cpu_supports("ssse3");
}

#define TEXTSCAN_SSSE3 __attribute__((target("ssse3")))

/* The buckets (a bit each) whose words may have, at position at, the bytes of the block at p. */
static inline TEXTSCAN_SSSE3 __m128i textscan_buckets_at(const struct textscan_set *s,
                                                         const char *p, unsigned at)
{
    const __m128i nibble = _mm_set1_epi8(0x0f);
    __m128i v =
        _mm_or_si128(_mm_loadu_si128((const __m128i *)(const void *)(p + at)), _mm_set1_epi8(0x20));
    __m128i low = _mm_loadu_si128((const __m128i *)(const void *)s->low[at]);
    __m128i high = _mm_loadu_si128((const __m128i *)(const void *)s->high[at]);
    return _mm_and_si128(_mm_shuffle_epi8(low, _mm_and_si128(v, nibble)),
                         _mm_shuffle_epi8(high, _mm_and_si128(_mm_srli_epi16(v, 4), nibble)));
}

/* textscan_set_find sixteen positions at a time: bit j of a block's mask says one bucket may
 * have a word at j by its three bytes there, folded (b | 0x20). Folding maps both cases of a
 * letter to the lower, and a few other bytes onto others ('_' and DEL, '@' and '`'), and the
 * tables mix the bytes of a bucket's words: a superset, which textscan_set_at checks. Blocks
 * are read in place while 17 bytes are left (the last read ends at the text's NUL at most),
 * the rest through a copy padded with NULs (never past the text's end); candidates are
 * checked in the text. */
static inline TEXTSCAN_SSSE3 uint32_t textscan_block_find(const struct textscan_set *s,
                                                          const char *text, uint32_t all,
                                                          uint32_t stop)
{
    size_t len = strlen(text), at = 0;
    uint32_t found = 0;
    while (at < len) {
        char last[16 + TEXTSCAN_SPAN] = {0};
        const char *p = text + at;
        if (len - at <= 16)
            p = memcpy(last, p, len - at);
        __m128i b = _mm_and_si128(textscan_buckets_at(s, p, 0), textscan_buckets_at(s, p, 1));
        b = _mm_and_si128(b, textscan_buckets_at(s, p, 2));
        unsigned m = ~(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(b, _mm_setzero_si128())) & 0xffffu;
        if (len - at < 16)
            m &= (1u << (len - at)) - 1;
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
static inline bool textscan_wide_cpu(void)
{
    return false;
}
#endif

/* Which of the set's words NUL-terminated text contains, ignoring case (bit i: words[i]), as
 * text_contains_ci finds each; it may stop as soon as it has found one of stop. */
static inline uint32_t textscan_set_find(const struct textscan_set *s, const char *text,
                                         uint32_t stop)
{
    uint32_t all = s->n >= 32 ? ~0u : (1u << s->n) - 1;
#if defined(__x86_64__) && !defined(TEXTSCAN_SCALAR)
    if (s->wide)
        return textscan_block_find(s, text, all, stop);
#endif
    return textscan_bytes_find(s, text, all, stop);
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
