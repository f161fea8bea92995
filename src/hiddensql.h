/* hiddensql.h: the functions that run SQL out of the guards' sight, as text they are handed
 * (query_to_xml, ts_stat, dblink, crosstab, connectby, xpath_table) or as a query of their own
 * over a relation named in a value (table_to_xml('pg_stat_activity', ...)): one table and one
 * matcher for the RLS guard (guard.c), the masking guard (masksql) and the masking catalog
 * (maskcat), so that no guard knows a name another misses. Pure: no I/O. */
#ifndef LAKEPROXY_HIDDENSQL_H
#define LAKEPROXY_HIDDENSQL_H

#include <stddef.h>

enum hiddensql_kind {
    HIDDENSQL_NONE,     /* an ordinary function */
    HIDDENSQL_TEXT,     /* runs SQL text handed to it */
    HIDDENSQL_RELATION, /* reads the relation or cursor named by a value */
};

/* What a function of this name (any case, no schema) does out of sight: HIDDENSQL_NONE unless
 * it is one of the table's names or a member of that name's family (query_to_xmlschema,
 * query_to_xml_and_xmlschema; crosstab2). Also right for attribute notation,
 * (x).name and alias.name, which PostgreSQL runs as name(x): a column such as ts_status is not
 * taken for ts_stat. */
enum hiddensql_kind hiddensql_kind(const char *name);

/* How many names the table holds, and the i-th (a family's stem: "query_to_xml", "dblink",
 * "crosstab" ...), lower case, as it appears in SQL text: for searches of text that may call
 * one (the masking catalog's look at view definitions; the RLS guard's pre-filter, which a
 * unit test holds to this table). */
size_t hiddensql_count(void);
const char *hiddensql_stem(size_t i);

#endif
