/* sqlkey.c: the literal-insensitive key of SQL text, by one pass of a small scanner. */
#include "sqlkey.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "fnv.h"

/* Byte classes of the scanner, ASCII as in the C locale: letters, digits, '_' and '$' (C_WORD),
 * isspace (C_SPACE), and the word bytes that may open a constant outside a word (C_OPENS:
 * digits, '$', and the E B X N U of E'', B'', X'', N'', U&''). Bytes from 128 are none.
 * 32 bytes a row. */
enum { C_WORD = 1, C_SPACE = 2, C_OPENS = 4 };
static const uint8_t byte_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 0, 0, 0, 0, 0, 0,
    0, 1, 5, 1, 1, 5, 1, 1, 1, 1, 1, 1, 1, 1, 5, 1, 1, 1, 1, 1, 1, 5, 1, 1, 5, 1, 1, 0, 0, 0, 0, 1,
    0, 1, 5, 1, 1, 5, 1, 1, 1, 1, 1, 1, 1, 1, 5, 1, 1, 1, 1, 1, 1, 5, 1, 1, 5, 1, 1, 0, 0, 0, 0, 0,
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

/* Past a constant starting at p (after an identifier character, none starts), or NULL. */
static const char *skip_constant(const char *p, char prev)
{
    if (*p == '\'')
        return skip_quoted(p, false);
    if ((*p != '.' && !(class_of(*p) & C_OPENS)) || (class_of(prev) & C_WORD))
        return NULL; /* (the common case: punctuation) */
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

/* Mixes the n bytes of a word into h eight at a time rather than byte by byte (words are
 * most of a statement's text); the last 1-7 bytes read as two overlapping halves (4-7) or
 * first, middle and last (1-3), which covers each byte, with n alongside. */
static inline uint64_t hash_word(uint64_t h, const char *p, size_t n)
{
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
        w = (uint64_t)(uint8_t)p[0] | (uint64_t)(uint8_t)p[n / 2] << 8 |
            (uint64_t)(uint8_t)p[n - 1] << 16;
    } else {
        w = 0;
    }
    h = (h ^ w ^ (uint64_t)n << 59) * FNV_PRIME;
    return h ^ (h >> 32);
}

uint64_t sqlkey(const char *sql)
{
    uint64_t h = FNV_OFFSET;
    char prev = ' ';
    for (const char *p = sql; *p;) {
        uint8_t cls = class_of(*p);
        if ((cls & C_WORD) && (!(cls & C_OPENS) || (class_of(prev) & C_WORD))) {
            /* a word, or the rest of one: no constant starts inside; the common case */
            const char *end = p + 1;
            while (class_of(*end) & C_WORD)
                end++;
            h = hash_word(h, p, (size_t)(end - p));
            p = end;
            prev = p[-1];
            continue;
        }
        if (cls & C_SPACE) {
            while (class_of(*p) & C_SPACE)
                p++;
            h = fnv_byte(h, ' ');
            prev = ' ';
            continue;
        }
        const char *end = skip_constant(p, prev);
        if (end) {
            h = fnv_byte(h, 0x01); /* the placeholder */
            prev = '0';
            p = end;
        } else if ((p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '*')) {
            /* a comment is kept as it is (its quotes open no string) */
            const char *q = p[0] == '-' ? strchr(p, '\n') : strstr(p + 2, "*/");
            q = q ? q + (p[0] == '-' ? 0 : 2) : p + strlen(p);
            for (; p < q; p++)
                h = fnv_byte(h, (uint8_t)*p);
            prev = ' ';
        } else if (*p == '"') { /* a quoted identifier is kept as it is */
            const char *q = strchr(p + 1, '"');
            q = q ? q + 1 : p + strlen(p);
            for (; p < q; p++)
                h = fnv_byte(h, (uint8_t)*p);
            prev = 'a';
        } else {
            h = fnv_byte(h, (uint8_t)*p);
            prev = *p++;
        }
    }
    return h;
}
