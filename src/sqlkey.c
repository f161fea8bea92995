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

uint64_t sqlkey(const char *sql)
{
    return sqlkey_seeded(sql, 0);
}

uint64_t sqlkey_seeded(const char *sql, uint64_t seed)
{
    uint64_t h = FNV_OFFSET ^ seed;
    char prev = ' ';
    for (const char *p = sql; *p;) {
        uint8_t cls = class_of(*p);
        if ((cls & C_WORD) && (!(cls & C_OPENS) || (class_of(prev) & C_WORD))) {
            /* a word, or the rest of one: no constant starts inside; the common case */
            const char *end = p + 1;
            while (class_of(*end) & C_WORD)
                end++;
            h = fnv_wide(h, p, (size_t)(end - p)); /* words are most of the text */
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
