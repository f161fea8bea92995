/* test_maskrules.c: which masking rules apply to whom (unless: users, groups, roles,
 * attributes), and the names handed to the masking guard. */
#include <criterion/criterion.h>
#include <string.h>

#include "config.h"
#include "maskrules.h"

static struct config *load(void)
{
    static const char yaml[] =
        "databases: {app: {host: h, user: u, pool: {mode: transaction}}}\n"
        "groups:\n  auditors: {role: auditor}\n  eu: {attributes: {region: eu}}\n"
        "users:\n  audra: {password: x, groups: [auditors]}\n"
        "  eve: {password: x, groups: [eu]}\n  sam: {password: x, role: auditor}\n"
        "  mal: {password: x}\n"
        "rls: {attributes: {region: attribute}}\n"
        "masking:\n  rules:\n"
        "    - {column: public.Customers.Email, function: email, unless: {roles: [auditor]}}\n"
        "    - {column: public.customers.ssn, function: last4, unless: {groups: [auditors]}}\n"
        "    - {column: hr.pay.salary, function: redact, unless: {attributes: {region: eu}}}\n"
        "    - {column: hr.pay.email, function: null, unless: {users: [mal]}}\n";
    struct config_errors errs = {0};
    struct config *cfg = config_parse_string(yaml, strlen(yaml), "t.yaml", &errs);
    cr_assert_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    return cfg;
}

Test(maskrules, exemptions_by_user_group_role_and_attribute)
{
    struct config *cfg = load();
    const struct mask_rule *r = cfg->masking.rules;
    cr_expect(maskrules_exempt(cfg, &r[0], "audra"), "role through a group");
    cr_expect(maskrules_exempt(cfg, &r[0], "sam"), "role of the user itself");
    cr_expect_not(maskrules_exempt(cfg, &r[0], "eve"));
    cr_expect(maskrules_exempt(cfg, &r[1], "audra"));
    cr_expect_not(maskrules_exempt(cfg, &r[1], "sam"), "groups, not roles");
    cr_expect(maskrules_exempt(cfg, &r[2], "eve"), "attribute through a group");
    cr_expect_not(maskrules_exempt(cfg, &r[2], "mal"));
    cr_expect(maskrules_exempt(cfg, &r[3], "mal"));
    cr_expect_not(maskrules_exempt(cfg, &r[0], "unknown"), "users known only to auth_query");
    config_free(cfg);
}

Test(maskrules, names_for_the_guard_are_distinct_and_lower_case)
{
    struct config *cfg = load();
    struct client_mask m, a;
    cr_assert(maskrules_build(cfg, "mal", &m));
    cr_expect_eq(m.n_applied, 3);
    cr_assert_eq(m.n_columns, 3, "email, ssn, salary: email counted once");
    cr_expect_str_eq(m.columns[0], "email");
    cr_assert_eq(m.n_tables, 2);
    cr_expect_str_eq(m.tables[0], "customers");
    cr_expect_str_eq(m.tables[1], "pay");
    cr_assert(maskrules_build(cfg, "audra", &a));
    cr_expect_eq(a.n_applied, 2);
    cr_expect_neq(a.id, m.id, "different rules, different guard verdicts");
    maskrules_free(&m);
    maskrules_free(&a);
    config_free(cfg);
}
