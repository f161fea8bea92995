/* paramval.h: values of the session parameters a client may give at startup, read as
 * PostgreSQL reads them: checked at login (PostgreSQL refuses a bad value before the session
 * starts, so lakeproxy does too, instead of at the first query) and reported to the client in
 * PostgreSQL's own spelling (libpq takes standard_conforming_strings for on only when it says
 * "on"; psycopg reads DateStyle and client_encoding by their canonical names). Pure. */
#ifndef LAKEPROXY_PARAMVAL_H
#define LAKEPROXY_PARAMVAL_H

#include <stdbool.h>
#include <stddef.h>

/* Is value one PostgreSQL accepts for the parameter canon (its canonical name, as
 * params_settable_name gives)? False with a message for a 22023 error. Parameters whose
 * values only the server can judge (TimeZone, search_path, the timeouts) pass. */
bool paramval_check(const char *canon, const char *value, char *err, size_t errsz);

/* The value PostgreSQL would report in ParameterStatus for canon set to value on a server
 * that reports server_value (NULL: unknown) for it: written into buf (64 bytes are enough),
 * or value itself when lakeproxy keeps its spelling. */
const char *paramval_report(const char *canon, const char *value, const char *server_value,
                            char *buf, size_t bufsz);

/* Cleans an application_name as PostgreSQL does: bytes outside printable ASCII become '?'.
 * In place. */
void paramval_clean_application_name(char *value);

#endif
