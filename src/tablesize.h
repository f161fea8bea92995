/* tablesize.h: how many rows a table holds (pg_class.reltuples), looked up on a side
 * connection to its database's server and cached for ten minutes, so the pushdown report can
 * say what fraction of a table an unfiltered read pulled. Look-ups run in the background; a
 * size not known yet reads as -1. */
#ifndef LAKEPROXY_TABLESIZE_H
#define LAKEPROXY_TABLESIZE_H

#include "objects.h"

/* At most this many tables are remembered (the least recently asked for makes room). */
#define TABLESIZE_MAX 512

/* reltuples of table ("name" or "schema.name", as written in queries) in database entry db,
 * or -1 when not known (yet): a look-up starts when none is cached, fresh or in flight. */
double tablesize_get(struct worker *w, const char *db, const char *table);

/* Cancels look-ups in flight and forgets every size. */
void tablesize_free_all(struct worker *w);

#endif
