/* sqllex.h: the pieces of PostgreSQL's lexer that text scanners skip whole: quoted strings and
 * names, comments, dollar-quoted strings. Shared by sqlkey.c (the statistics key) and sqlinfo.c
 * (the nesting bound read before a parse). Pure. */
#ifndef LAKEPROXY_SQLLEX_H
#define LAKEPROXY_SQLLEX_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* Identifier bytes: letters, digits, '_', '$' and bytes from 128. */
static inline bool sqllex_word_byte(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '$' || (unsigned char)c >= 128;
}

/* Past the string or name quoted with q that starts at p (the opening quote), a doubled quote
 * inside kept; backslashes escape when escapes (E'' strings). Its end when not closed. */
static inline const char *sqllex_past_quoted(const char *p, char q, bool escapes)
{
    for (p++; *p; p++) {
        if (escapes && *p == '\\' && p[1])
            p++;
        else if (*p == q && p[1] == q)
            p++;
        else if (*p == q)
            return p + 1;
    }
    return p;
}

/* Past the comment that starts at p: "--" to a newline or carriage return, or a block
 * comment where it is closed, block comments nesting as in PostgreSQL. */
static inline const char *sqllex_past_comment(const char *p)
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

/* Past the $tag$...$tag$ string that starts at p, or NULL when p does not open one (the tag
 * is made of identifier bytes but '$', and does not start with a digit). */
static inline const char *sqllex_past_dollar(const char *p)
{
    const char *q = p + 1;
    while (sqllex_word_byte(*q) && *q != '$')
        q++;
    if (*q != '$' || (p[1] >= '0' && p[1] <= '9'))
        return NULL;
    size_t taglen = (size_t)(q - p) + 1;
    const char *end;
    for (end = q + 1; *end; end++)
        if (*end == '$' && strncmp(end, p, taglen) == 0)
            return end + taglen;
    return end;
}

#endif
