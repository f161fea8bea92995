/* admincmd.h: the admin console's command line, read strictly: a verb, at most a name (plain,
 * or quoted with "..." or '...' as in SQL) and a count, a ';' and nothing else. Pure: no I/O. */
#ifndef LAKEPROXY_ADMINCMD_H
#define LAKEPROXY_ADMINCMD_H

#include <stdbool.h>
#include <stddef.h>

struct admincmd {
    char verb[16]; /* as written; compare without case */
    char arg[128]; /* "" when none */
    bool has_arg;
    bool arg_quoted; /* arg was quoted: a name, never a keyword */
    long count;      /* -1 when none */
};

/* Reads sql into out; false with a message saying what is wrong (for a 42601 error). */
bool admincmd_parse(const char *sql, struct admincmd *out, char *err, size_t errsz);

/* Is sql a SET statement (SET name = value, SET SESSION ..., SET LOCAL ...)? The console
 * answers it SET and changes nothing: it has no settings a client could change. */
bool admincmd_is_set(const char *sql);

#endif
