/* maskcat.h: what the database's catalog says about masked columns, per database entry:
 * the (table OID, column number) of every masked column (in the whole inheritance or
 * partition family of a rule's table, by column name), the views and materialized views that read
 * one (those that are pure projections of masked columns are resolved: each of their columns
 * carries the rules of the column it comes from, as PostgreSQL describes their definitions,
 * maskview.c; the others are refused whole to masked clients), and the names of functions defined
 * outside pg_catalog (the masking guard refuses calls to them). Read on a side connection
 * (sidequery.c) when a masked client first logs in, again every masking.catalog_refresh_s, and at
 * once when a result names a table OID not seen since the last read (a table created or recreated
 * meanwhile): results wait for that read, so a new OID is never passed unchecked. */
#ifndef LAKEPROXY_MASKCAT_H
#define LAKEPROXY_MASKCAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "objects.h"

/* maskcat_column's answers besides a rule index (>= 0). */
#define MASKCAT_CLEAN (-1)   /* not masked */
#define MASKCAT_TAINTED (-2) /* a column of a view that reads masked columns, refused */
#define MASKCAT_UNKNOWN (-3) /* a table OID not known: wait for maskcat_refresh */
#define MASKCAT_REDACT (-4)  /* several applying rules that show different parts: redact it */

struct maskcat;
struct mask_rule;

/* The entry for database entry db (created empty when absent); NULL when out of memory. */
struct maskcat *maskcat_for(struct worker *w, const char *db);

/* Has a read succeeded (the names below are valid)? A failed first read leaves it false and
 * maskcat_error says why. */
bool maskcat_ready(const struct maskcat *mc);
const char *maskcat_error(const struct maskcat *mc);
/* Is a read in flight? Waiters are resumed when it ends (client_mask_catalog_read). */
bool maskcat_loading(const struct maskcat *mc);

/* Starts a read unless one is in flight; one asked for during a read runs after it. */
void maskcat_refresh(struct worker *w, struct maskcat *mc);
/* Is the installed catalog younger than masking.catalog_refresh_s? Statements of masked
 * clients wait for a read once it is not: an administrator's CREATE OR REPLACE VIEW is seen
 * by masking within catalog_refresh_s, whether or not statements ran meanwhile. */
bool maskcat_fresh(const struct maskcat *mc);
/* How many reads have ended, installed or failed: a statement that waited for the read in
 * flight goes on once this passes the count it saw then (one whole read is enough, however
 * long reads take). */
uint64_t maskcat_reads_ended(const struct maskcat *mc);
/* Starts a read when the last one is older than masking.catalog_refresh_s. */
void maskcat_refresh_if_old(struct worker *w, struct maskcat *mc);

/* The rule index masking column attnum of table (or view) relid: of the rules (n_rules of
 * them) it carries with applies[rule] set, the one that hides most (mask_rule.strength); when
 * none applies, one of them; MASKCAT_REDACT when the applying rules mask differently and
 * none hides the whole value (email and last4 each show a part: together they would show
 * more than either); or MASKCAT_CLEAN / _TAINTED / _UNKNOWN. An unknown OID is remembered:
 * after the next read completes it is known. */
int maskcat_column(struct maskcat *mc, uint32_t relid, int16_t attnum, const bool *applies,
                   const struct mask_rule *rules, size_t n_rules);

/* Names for the masking guard (valid while ready, until the next read completes). */
const char *const *maskcat_user_functions(const struct maskcat *mc, size_t *n);
const char *const *maskcat_refused_relations(const struct maskcat *mc, size_t *n);
/* Every column name of the tables (and resolved views) holding masked columns; the names of
 * functions and string types that can be applied to a whole row (row.name). */
const char *const *maskcat_table_columns(const struct maskcat *mc, size_t *n);
const char *const *maskcat_row_functions(const struct maskcat *mc, size_t *n);
/* The names of every table, view and materialized view outside pg_catalog and
 * information_schema when the catalog was read: a name not among them is newer than the read. */
const char *const *maskcat_relations(const struct maskcat *mc, size_t *n);
/* Operators and cast target types that run a function defined outside pg_catalog (the
 * guard refuses them: the function is called without being named), and tables whose writes
 * run one (rules, user triggers, defaults, generated columns, constraints: writes refused). */
const char *const *maskcat_user_operators(const struct maskcat *mc, size_t *n);
const char *const *maskcat_user_cast_types(const struct maskcat *mc, size_t *n);
const char *const *maskcat_write_refused(const struct maskcat *mc, size_t *n);
/* The distinct names of tables (children and partitions included, and resolved views)
 * holding a column of a rule with applies[rule] set, at most max, into out (pointers valid
 * as the names above). */
size_t maskcat_masked_tables(const struct maskcat *mc, const bool *applies, size_t n_rules,
                             const char **out, size_t max);
/* The distinct names of resolved views' columns that carry a rule with applies[rule] set (as
 * contact in a view selecting email AS contact), and of the masked columns as the catalog
 * names them now (a column renamed since its rule matched it), at most max, into out. */
size_t maskcat_view_columns(const struct maskcat *mc, const bool *applies, size_t n_rules,
                            const char **out, size_t max);

/* An upper bound of how many names maskcat_masked_tables and maskcat_view_columns can give
 * (until the next read completes): size their output with it, so none is ever cut off. */
size_t maskcat_names_bound(const struct maskcat *mc);

/* Changes whenever a read completes; never the same for two catalogs of one worker. */
uint64_t maskcat_version(const struct maskcat *mc);

/* Cancels reads in flight and forgets everything (shutdown, or a reload changed rules). */
void maskcat_free_all(struct worker *w);

#endif
