/* maskrules.h: which masking rules apply to one client (who it is: user, groups, roles,
 * configured attributes; never anything the client sends), and the names the masking guard
 * needs for them. Pure: no I/O. */
#ifndef LAKEPROXY_MASKRULES_H
#define LAKEPROXY_MASKRULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* The rules that mask results for one user under one configuration. */
struct client_mask {
    bool *applies; /* per rule of cfg->masking.rules: not exempt */
    size_t n_rules, n_applied;
    char **columns; /* distinct lower-case bare column names of the applying rules */
    size_t n_columns;
    char **tables; /* distinct lower-case bare table names */
    size_t n_tables;
    uint64_t id; /* a hash of which rules apply: equal ids, equal guard verdicts */
};

/* Is user exempt from rule r (unless: users, groups, roles, attributes)? extra_groups are
 * groups from outside the configuration (a Databricks token's identity; may be NULL): they
 * count as the user's own groups after its configured ones. */
bool maskrules_exempt(const struct config *cfg, const struct mask_rule *r, const char *user,
                      const struct string_list *extra_groups);

/* Builds m for user; false when out of memory. m->n_applied == 0: nothing is masked. */
bool maskrules_build(const struct config *cfg, const char *user,
                     const struct string_list *extra_groups, struct client_mask *m);
void maskrules_free(struct client_mask *m);

/* A hash of everything in the masking section that could change a guard verdict or a mask
 * (rules, exemptions, functions, options): equal for equal policies. */
uint64_t maskrules_policy_hash(const struct mask_config *m);

#endif
