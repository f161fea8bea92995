/* sqlkey.c: the literal-insensitive key of SQL text, by one pass of a small scanner. */
#include "sqlkey.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "fnv.h"

/* Byte classes of the scanner, ASCII as in the C locale: letters, digits, '_' and '$' (C_WORD),
 * isspace (C_SPACE), the word bytes that may open a constant outside a word (C_OPENS: digits,
 * '$', and the E B X N U of E'', B'', X'', N'', U&''), and the bytes kept as they are wherever
 * they stand (C_KEEP: every other word byte, bytes from 128, punctuation but ' " - / .).
 * 32 bytes a row. */
enum { C_WORD = 1, C_SPACE = 2, C_OPENS = 4, C_KEEP = 8 };
static const uint8_t byte_class[256] = {
    0, 8, 8, 8, 8, 8, 8, 8, 8, 2, 2, 2, 2, 2, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
    2, 8, 0, 8, 5, 8, 8, 0, 8, 8, 8, 8, 8, 0, 0, 0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 8, 8, 8, 8, 8, 8,
    8, 9, 5, 9, 9, 5, 9, 9, 9, 9, 9, 9, 9, 9, 5, 9, 9, 9, 9, 9, 9, 5, 9, 9, 5, 9, 9, 8, 8, 8, 8, 9,
    8, 9, 5, 9, 9, 5, 9, 9, 9, 9, 9, 9, 9, 9, 5, 9, 9, 9, 9, 9, 9, 5, 9, 9, 5, 9, 9, 8, 8, 8, 8, 8,
    8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
    8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
    8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
    8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
};

static inline uint8_t class_of(char c)
{
    return byte_class[(unsigned char)c];
}

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Past a '...' string starting at p (the opening quote); backslash escapes when escapes. */
static const char *skip_quoted(const char *p, bool escapes)
{
    for (p++; *p; p++) {
        if (escapes && *p == '\\' && p[1])
            p++;
        else if (*p == '\'' && p[1] == '\'')
            p++;
        else if (*p == '\'')
            return p + 1;
    }
    return p;
}

/* Past a $tag$...$tag$ string starting at p, or NULL when p does not open one. */
static const char *skip_dollar(const char *p)
{
    const char *q = p + 1;
    while (isalnum((unsigned char)*q) || *q == '_')
        q++;
    if (*q != '$' || is_digit(p[1]))
        return NULL;
    size_t taglen = (size_t)(q - p) + 1;
    const char *end;
    for (end = q + 1; *end; end++)
        if (*end == '$' && strncmp(end, p, taglen) == 0)
            return end + taglen;
    return end;
}

/* Past a number starting at p (digits, a point, an exponent). */
static const char *skip_number(const char *p)
{
    while (is_digit(*p) || *p == '.')
        p++;
    if ((*p == 'e' || *p == 'E') &&
        (is_digit(p[1]) || ((p[1] == '+' || p[1] == '-') && is_digit(p[2])))) {
        p += 2;
        while (is_digit(*p))
            p++;
    }
    return p;
}

/* Past a constant starting at p where a token may start (not inside a word), or NULL. */
static const char *skip_constant(const char *p)
{
    if (*p == '\'')
        return skip_quoted(p, false);
    if ((*p == 'E' || *p == 'e') && p[1] == '\'')
        return skip_quoted(p + 1, true);
    if ((*p == 'B' || *p == 'b' || *p == 'X' || *p == 'x' || *p == 'N' || *p == 'n') &&
        p[1] == '\'')
        return skip_quoted(p + 1, false);
    if ((*p == 'U' || *p == 'u') && p[1] == '&' && p[2] == '\'')
        return skip_quoted(p + 2, false);
    if (*p == '$')
        return skip_dollar(p);
    if (is_digit(*p) || (*p == '.' && is_digit(p[1])))
        return skip_number(p);
    return NULL;
}

/* The key's hash, fed the normalised text in pieces (runs of the text kept as they are,
 * placeholders, single spaces) and mixing it eight bytes at a time as FNV-1a mixes one, with a
 * fold of the high half: the same bytes give the same value however they were cut. */
struct keyhash {
    uint64_t h;
    uint64_t pend; /* the next 0-7 bytes, the first in the lowest byte */
    unsigned npend;
};

static inline void kh_mix(struct keyhash *k, uint64_t w)
{
    k->h = (k->h ^ w) * FNV_PRIME;
    k->h ^= k->h >> 32;
}

/* The eight bytes at p as pend would hold them, on any host. */
static inline uint64_t load_le64(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

static inline void kh_byte(struct keyhash *k, uint8_t c)
{
    k->pend |= (uint64_t)c << (8 * k->npend);
    if (++k->npend == 8) {
        kh_mix(k, k->pend);
        k->pend = 0;
        k->npend = 0;
    }
}

static inline void kh_bytes(struct keyhash *k, const char *s, size_t n)
{
    for (; n > 0 && k->npend > 0; n--)
        kh_byte(k, (uint8_t)*s++);
    for (; n >= 8; s += 8, n -= 8)
        kh_mix(k, load_le64(s));
    for (; n > 0; n--)
        kh_byte(k, (uint8_t)*s++);
}

/* The last 0-7 bytes go in with their number in the top byte: two different tails never make
 * the same word. */
static inline uint64_t kh_end(struct keyhash *k)
{
    kh_mix(k, k->pend | (uint64_t)k->npend << 56);
    return k->h;
}

uint64_t sqlkey(const char *sql)
{
    return sqlkey_seeded(sql, 0);
}

/* One pass, a token at a time: runs of bytes that stay as they are (words, single spaces,
 * punctuation, comments, quoted names) go into the hash whole when something must change (a
 * constant, white space other than one ' ') and at the end. */
uint64_t sqlkey_seeded(const char *sql, uint64_t seed)
{
    struct keyhash k = {FNV_OFFSET ^ seed, 0, 0};
    const char *run = sql;        /* the bytes kept from here to p are not hashed yet */
    const char *const_end = NULL; /* where the last constant ended: a token starts there */
    const char *p = sql;
    for (;;) {
        uint8_t cls = class_of(*p);
        const char *end = NULL;
        if (cls & C_WORD) { /* a word starts here: a constant, or kept whole */
            if (!(cls & C_OPENS) || !(end = skip_constant(p))) {
                do
                    p++;
                while (class_of(*p) & C_WORD);
                continue;
            }
        } else if (cls & C_KEEP) {
            p++;
            continue;
        } else if (!*p) {
            break;
        } else if (cls & C_SPACE) {
            if (*p == ' ' && !(class_of(p[1]) & C_SPACE)) { /* one space: kept as it is */
                p++;
                continue;
            }
            kh_bytes(&k, run, (size_t)(p - run));
            kh_byte(&k, ' ');
            while (class_of(*p) & C_SPACE)
                p++;
            run = p;
            continue;
        } else if (*p == '\'' ||
                   (*p == '.' && (p == const_end || !(p > sql && (class_of(p[-1]) & C_WORD))))) {
            end = skip_constant(p); /* a string, or maybe a number like .5 */
        }
        if (end) {
            kh_bytes(&k, run, (size_t)(p - run));
            kh_byte(&k, 0x01); /* the placeholder */
            p = run = const_end = end;
        } else if ((p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '*')) {
            /* a comment is kept as it is (its quotes open no string) */
            const char *q = p[0] == '-' ? strchr(p, '\n') : strstr(p + 2, "*/");
            p = q ? q + (p[0] == '-' ? 0 : 2) : p + strlen(p);
        } else if (*p == '"') { /* a quoted identifier is kept as it is */
            const char *q = strchr(p + 1, '"');
            p = q ? q + 1 : p + strlen(p);
        } else { /* - / . alone */
            p++;
        }
    }
    kh_bytes(&k, run, (size_t)(p - run));
    return kh_end(&k);
}
