/* hiddensql.c: the table of functions that run SQL out of the guards' sight, and its matcher
 * (see hiddensql.h). */
#include "hiddensql.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* Which names besides the stem itself belong to its family. */
enum family {
    FAMILY_EXACT,  /* the stem alone */
    FAMILY_XML,    /* stem, stem + "schema", stem + "_and_xmlschema" (query_to_xml ...) */
    FAMILY_DIGITS, /* stem and stem + digits (crosstab2, crosstab3 ...) */
};

static const struct {
    const char *stem;
    enum family family;
    enum hiddensql_kind kind;
} functions[] = {
    /* built in */
    {"query_to_xml", FAMILY_XML, HIDDENSQL_TEXT},
    {"ts_stat", FAMILY_EXACT, HIDDENSQL_TEXT},
    {"ts_rewrite", FAMILY_EXACT, HIDDENSQL_TEXT},
    {"table_to_xml", FAMILY_XML, HIDDENSQL_RELATION},
    {"cursor_to_xml", FAMILY_XML, HIDDENSQL_RELATION},
    {"schema_to_xml", FAMILY_XML, HIDDENSQL_RELATION},
    {"database_to_xml", FAMILY_XML, HIDDENSQL_RELATION},
    /* contrib: dblink (the calls that run a query; its other functions run none, and a
     * column such as dblink_url must stay readable as t.dblink_url), tablefunc (crosstab's source
     * query; connectby builds its query from the names it is given, unquoted), xml2 (xpath_table
     * builds its query from its key, document, relation and criteria texts) */
    {"dblink", FAMILY_EXACT, HIDDENSQL_TEXT},
    {"dblink_exec", FAMILY_EXACT, HIDDENSQL_TEXT},
    {"dblink_open", FAMILY_EXACT, HIDDENSQL_TEXT},
    {"dblink_send_query", FAMILY_EXACT, HIDDENSQL_TEXT},
    {"crosstab", FAMILY_DIGITS, HIDDENSQL_TEXT},
    {"connectby", FAMILY_EXACT, HIDDENSQL_TEXT},
    {"xpath_table", FAMILY_EXACT, HIDDENSQL_TEXT},
};
enum { N_FUNCTIONS = sizeof(functions) / sizeof(functions[0]) };

/* Is rest (what follows a stem in a name) one the family allows? */
static bool in_family(enum family f, const char *rest)
{
    switch (f) {
    case FAMILY_EXACT: return *rest == '\0';
    case FAMILY_XML:
        return *rest == '\0' || strcasecmp(rest, "schema") == 0 ||
               strcasecmp(rest, "_and_xmlschema") == 0;
    case FAMILY_DIGITS: return strspn(rest, "0123456789") == strlen(rest);
    }
    return false;
}

enum hiddensql_kind hiddensql_kind(const char *name)
{
    for (size_t i = 0; name && i < N_FUNCTIONS; i++) {
        size_t n = strlen(functions[i].stem);
        if (strncasecmp(name, functions[i].stem, n) == 0 &&
            in_family(functions[i].family, name + n))
            return functions[i].kind;
    }
    return HIDDENSQL_NONE;
}

size_t hiddensql_count(void)
{
    return N_FUNCTIONS;
}

const char *hiddensql_stem(size_t i)
{
    return i < N_FUNCTIONS ? functions[i].stem : NULL;
}
