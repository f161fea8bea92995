/* stmtsql.c: the few SQL statements about prepared statements that lakeproxy reads itself, a
 * lone DEALLOCATE and DISCARD ALL, read as PostgreSQL reads them (names folded or quoted, cut
 * to 63 bytes). Pure text parsing. */
#include "stmtsql.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Reads a plain SQL word at *p as PostgreSQL reads an identifier: a letter or '_', then letters,
 * digits, '_' and '$', folded to lower case and cut to 63 bytes. */
static bool read_plain_word(const char **p, char out[64])
{
    size_t n = 0;
    if (!isalpha((unsigned char)**p) && **p != '_')
        return false;
    for (; isalnum((unsigned char)**p) || **p == '_' || **p == '$'; (*p)++)
        if (n < 63)
            out[n++] = (char)tolower((unsigned char)**p);
    out[n] = '\0';
    return true;
}

/* Reads a quoted SQL identifier at *p ("" for a quote in it) as written; false when empty,
 * unterminated or longer than 63 bytes (PostgreSQL would cut it on a character boundary of the
 * client's encoding: such a DEALLOCATE is left to the server). */
static bool read_quoted_word(const char **p, char out[64])
{
    size_t n = 0;
    for ((*p)++;; (*p)++) {
        if (**p == '\0')
            return false;
        if (**p == '"' && (*p)[1] != '"')
            break;
        if (**p == '"')
            (*p)++;
        if (n == 63)
            return false;
        out[n++] = **p;
    }
    (*p)++;
    out[n] = '\0';
    return n > 0;
}

/* Reads one identifier at *p into out; *quoted says whether it was in double quotes. */
static bool read_word(const char **p, char out[64], bool *quoted)
{
    *quoted = **p == '"';
    return *quoted ? read_quoted_word(p, out) : read_plain_word(p, out);
}

bool stmtsql_deallocate(const char *sql, char name[64], bool *all)
{
    char w[3][64];
    bool quoted[3];
    int n = 0;
    const char *p = sql;
    while (isspace((unsigned char)*p))
        p++;
    if (*p != 'd' && *p != 'D') /* the common case: not a DEALLOCATE at all */
        return false;
    while (n < 3 && *p && *p != ';') {
        if (!read_word(&p, w[n], &quoted[n]))
            return false;
        n++;
        while (isspace((unsigned char)*p))
            p++;
    }
    while (*p == ';' || isspace((unsigned char)*p))
        p++;
    if (*p || n < 2 || quoted[0] || strcmp(w[0], "deallocate") != 0)
        return false;
    int at = !quoted[1] && strcmp(w[1], "prepare") == 0 ? 2 : 1;
    if (n != at + 1)
        return false;
    snprintf(name, 64, "%s", w[at]);
    *all = !quoted[at] && strcmp(name, "all") == 0;
    return true;
}

bool stmtsql_is_discard_all(const char *sql)
{
    char w[2][64];
    const char *p = sql;
    for (int i = 0; i < 2; i++) {
        while (isspace((unsigned char)*p))
            p++;
        if (!read_plain_word(&p, w[i]))
            return false;
    }
    while (*p == ';' || isspace((unsigned char)*p))
        p++;
    return !*p && strcmp(w[0], "discard") == 0 && strcmp(w[1], "all") == 0;
}
