/* masklike.h: LIKE patterns on masked columns: only a constant prefix ('abc%': no '_', '%' only
 * at the end) may test a masked column, since any other pattern asks every row at once about a
 * character at a place or anywhere. The masking guard checks patterns written in a statement;
 * for a pattern given as a parameter it notes the parameter (struct masklike), whose bound
 * values are checked at each Bind. Pure: no I/O. */
#ifndef LAKEPROXY_MASKLIKE_H
#define LAKEPROXY_MASKLIKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parameters one statement may use as such patterns (each is a test: at most the guard's
 * tests per statement). */
#define MASKLIKE_PARAMS 4

/* The parameters (numbered from 1) a statement matches masked columns against with LIKE. */
struct masklike {
    uint8_t n;
    uint16_t param[MASKLIKE_PARAMS];
};

/* Is parameter k one of l's? */
bool masklike_has(const struct masklike *l, unsigned k);
/* Notes parameter k in l (once); false when l is full. */
bool masklike_add(struct masklike *l, unsigned k);

/* Does LIKE pattern p[0..n), with escape character escape (0: none), match only values that
 * begin with a fixed text: no '_', and '%' only at its end? */
bool masklike_is_prefix(const char *p, size_t n, char escape);

struct buf;
/* The Parse body after the name, rest[0..len) (text, declared parameter types), with l's
 * parameters that the client left undeclared declared text, into out (which the caller
 * frees); false, out untouched, when none was (or rest is malformed: the server refuses it).
 * PostgreSQL would infer such a parameter's type from any use in the statement
 * ($1::bytea IS NULL, a bytea column), and a LIKE over $1::text then matches that type's
 * output ('\x5f5f' read as bytea prints as '__'), not the bytes the Bind check saw. */
bool masklike_declare_text(const struct masklike *l, const uint8_t *rest, size_t len,
                           struct buf *out);

/* Are the values a Bind gives l's parameters such prefixes (escape '\')? parse_rest: the bound
 * statement's Parse body after its name (text, then declared parameter types; NULL: unknown);
 * bind_rest: the Bind body after its portal and statement names. False when a value is not a
 * prefix, a parameter of l was declared a type other than text or varchar (another type's
 * text may read as other characters: "char"'s '\137' is '_'), or the Bind is cut short. */
bool masklike_binds_ok(const struct masklike *l, const uint8_t *parse_rest, size_t parse_len,
                       const uint8_t *bind_rest, size_t bind_len);

#endif
