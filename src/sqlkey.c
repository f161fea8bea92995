/* sqlkey.c: the literal-insensitive key of SQL text, by one pass of a small scanner. */
#include "sqlkey.h"

#include <stdbool.h>
#include <string.h>

#include "siphash.h"

/* Byte classes of the scanner, as PostgreSQL's lexer has them: letters, digits, '_', '$' and
 * bytes from 128 (C_WORD: what identifiers are made of), isspace (C_SPACE), the word bytes that
 * may open a constant outside a word (C_OPENS: digits, '$', and the E B X N U of E'', B'', X'',
 * N'', U&''), and the bytes kept as they are wherever they stand (C_KEEP: every other word byte,
 * punctuation but ' " - / .). 32 bytes a row. The scanner must never take for a constant what
 * the server reads as SQL, or two statements could share a key. */
enum { C_WORD = 1, C_SPACE = 2, C_OPENS = 4, C_KEEP = 8 };
static const uint8_t byte_class[256] = {
    0, 8, 8, 8, 8, 8, 8, 8, 8, 2, 2, 2, 2, 2, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
    2, 8, 0, 8, 5, 8, 8, 0, 8, 8, 8, 8, 8, 0, 0, 0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 8, 8, 8, 8, 8, 8,
    8, 9, 5, 9, 9, 5, 9, 9, 9, 9, 9, 9, 9, 9, 5, 9, 9, 9, 9, 9, 9, 5, 9, 9, 5, 9, 9, 8, 8, 8, 8, 9,
    8, 9, 5, 9, 9, 5, 9, 9, 9, 9, 9, 9, 9, 9, 5, 9, 9, 9, 9, 9, 9, 5, 9, 9, 5, 9, 9, 8, 8, 8, 8, 8,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
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

/* Past a $tag$...$tag$ string starting at p, or NULL when p does not open one. The tag is
 * made of identifier bytes but '$', and does not start with a digit. */
static const char *skip_dollar(const char *p)
{
    const char *q = p + 1;
    while ((class_of(*q) & C_WORD) && *q != '$')
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

/* Past a comment starting at p: a line comment ends at a newline or carriage return, a block
 * comment where it is closed, block comments nesting as in PostgreSQL. */
static const char *skip_comment(const char *p)
{
    if (p[0] == '-')
        return p + strcspn(p, "\r\n");
    int depth = 0;
    for (; *p; p++) {
        if (p[0] == '/' && p[1] == '*') {
            depth++;
            p++;
        } else if (p[0] == '*' && p[1] == '/') {
            p++;
            if (--depth == 0)
                return p + 1;
        }
    }
    return p;
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

/* Past a constant starting at p where a token may start (not inside a word), or NULL; a
 * dollar string ('$') is the caller's (skip_dollar). */
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
    if (is_digit(*p) || (*p == '.' && is_digit(p[1])))
        return skip_number(p);
    return NULL;
}

uint64_t sqlkey(const char *sql)
{
    static const struct sqlkey_secret none = {0, 0};
    return sqlkey_seeded(sql, &none);
}

/* One pass, a token at a time: runs of bytes that stay as they are (words, single spaces,
 * punctuation, comments, quoted names) go into the hash whole when something must change (a
 * constant, white space other than one ' ') and at the end. The hash is SipHash keyed with the
 * secret, fed the normalised text: a NUL byte for each constant, which the text itself cannot
 * hold, so no text's bytes can pass for another's placeholders. */
uint64_t sqlkey_seeded(const char *sql, const struct sqlkey_secret *secret)
{
    struct siphash k;
    siphash_init(&k, secret->k0, secret->k1);
    const char *run = sql;        /* the bytes kept from here to p are not hashed yet */
    const char *const_end = NULL; /* where the last constant ended: a token starts there */
    const char *p = sql;
    for (;;) {
        uint8_t cls = class_of(*p);
        const char *end = NULL;
        if (cls & C_WORD) { /* a word starts here: a constant, or kept whole */
            if (*p == '$' && !(end = skip_dollar(p))) {
                /* a parameter ($ and its digits) or a lone $: the server reads a $ after it
                 * afresh (it may open a dollar string), so the word ends there */
                do
                    p++;
                while (is_digit(*p));
                continue;
            }
            if (!end && (!(cls & C_OPENS) || !(end = skip_constant(p)))) {
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
            siphash_bytes(&k, run, (size_t)(p - run));
            siphash_byte(&k, ' ');
            while (class_of(*p) & C_SPACE)
                p++;
            run = p;
            continue;
        } else if (*p == '\'' ||
                   (*p == '.' && (p == const_end || !(p > sql && (class_of(p[-1]) & C_WORD))))) {
            end = skip_constant(p); /* a string, or maybe a number like .5 */
        }
        if (end) {
            siphash_bytes(&k, run, (size_t)(p - run));
            siphash_byte(&k, 0); /* the placeholder */
            p = run = const_end = end;
        } else if ((p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '*')) {
            p = skip_comment(p); /* kept as it is (its quotes open no string) */
        } else if (*p == '"') {  /* a quoted identifier is kept as it is */
            const char *q = strchr(p + 1, '"');
            p = q ? q + 1 : p + strlen(p);
        } else { /* - / . alone */
            p++;
        }
    }
    siphash_bytes(&k, run, (size_t)(p - run));
    return siphash_end(&k);
}
