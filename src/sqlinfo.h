/* sqlinfo.h: the one wrapper around libpg_query. Parses SQL text with PostgreSQL's own parser
 * (protobuf parse trees) and visits every node of the tree, so rules elsewhere (the RLS
 * guard today, statistics tomorrow) never touch libpg_query directly. Pure: no I/O. */
#ifndef LAKEPROXY_SQLINFO_H
#define LAKEPROXY_SQLINFO_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

/* Called once per message of the parse tree, parents before children. */
typedef void (*sqlinfo_visit_fn)(void *arg, const ProtobufCMessage *node);

/* Parses sql (one or more statements) and visits every node. False when the text does not
 * parse, with the parser's message in err (size errsz). */
bool sqlinfo_walk(const char *sql, sqlinfo_visit_fn visit, void *arg, char *err, size_t errsz);

#endif
