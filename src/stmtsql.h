/* stmtsql.h: the lone DEALLOCATE and DISCARD ALL statements lakeproxy reads itself (it keeps
 * each client's prepared statements under transaction pooling: pipeline.c). Pure. */
#ifndef LAKEPROXY_STMTSQL_H
#define LAKEPROXY_STMTSQL_H

#include <stdbool.h>

/* Is sql exactly one "DEALLOCATE [PREPARE] name|ALL"? Fills name (as PostgreSQL reads it:
 * folded to lower case unless quoted, cut to 63 bytes) and *all. */
bool stmtsql_deallocate(const char *sql, char name[64], bool *all);

/* Is sql exactly one DISCARD ALL (which deallocates every prepared statement)? */
bool stmtsql_is_discard_all(const char *sql);

#endif
