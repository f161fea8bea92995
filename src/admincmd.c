/* admincmd.c: the admin console's command line (see admincmd.h). */
#include "admincmd.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *skip_blanks(const char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    return p;
}

static bool is_name_byte(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-' || (unsigned char)c >= 128;
}

/* Reads a quoted name at p (quote q, doubled inside for itself) into out; NULL when it is not
 * closed or too long. */
static const char *read_quoted(const char *p, char q, char *out, size_t outsz)
{
    size_t n = 0;
    for (p++;; p++) {
        if (!*p)
            return NULL;
        if (*p == q && p[1] != q)
            break;
        if (*p == q)
            p++;
        if (n + 1 >= outsz)
            return NULL;
        out[n++] = *p;
    }
    out[n] = '\0';
    return p + 1;
}

/* Reads the name at p (plain or quoted) into out; NULL when there is none or it is bad. */
static const char *read_name(const char *p, char *out, size_t outsz, bool *quoted, char *err,
                             size_t errsz)
{
    *quoted = *p == '"' || *p == '\'';
    if (*quoted) {
        const char *end = read_quoted(p, *p, out, outsz);
        if (!end)
            snprintf(err, errsz, "unterminated quoted name, or longer than %zu bytes", outsz - 1);
        return end;
    }
    size_t n = 0;
    while (is_name_byte(p[n]))
        n++;
    if (n >= outsz) {
        snprintf(err, errsz, "name longer than %zu bytes", outsz - 1);
        return NULL;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return p + n;
}

bool admincmd_parse(const char *sql, struct admincmd *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof(*out));
    out->count = -1;
    const char *p = skip_blanks(sql);
    size_t n = 0;
    while (isalpha((unsigned char)p[n]))
        n++;
    if (n == 0 || n >= sizeof(out->verb)) {
        snprintf(err, errsz,
                 "expected a command: SHOW, RELOAD, PAUSE, RESUME, RECONNECT, "
                 "KILL, DISABLE, ENABLE or SHUTDOWN (SHOW HELP lists them)");
        return false;
    }
    memcpy(out->verb, p, n);
    p = skip_blanks(p + n);
    if (*p && *p != ';' && !isdigit((unsigned char)*p)) {
        p = read_name(p, out->arg, sizeof(out->arg), &out->arg_quoted, err, errsz);
        if (!p)
            return false;
        out->has_arg = true;
        p = skip_blanks(p);
    }
    if (isdigit((unsigned char)*p)) {
        char *end;
        out->count = strtol(p, &end, 10);
        if (out->count > 1000000)
            out->count = 1000000;
        p = skip_blanks(end);
    }
    while (*p == ';')
        p = skip_blanks(p + 1);
    if (*p) {
        snprintf(err, errsz,
                 "unexpected text after \"%s%s%s\" (one command at a time; quote "
                 "a name with \"...\")",
                 out->verb, out->has_arg ? " " : "", out->has_arg ? out->arg : "");
        return false;
    }
    return true;
}

bool admincmd_is_set(const char *sql)
{
    const char *p = skip_blanks(sql);
    return strncasecmp(p, "SET", 3) == 0 && isspace((unsigned char)p[3]);
}
