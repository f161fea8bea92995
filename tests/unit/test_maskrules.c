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
    cr_expect(maskrules_exempt(cfg, &r[0], "audra", NULL), "role through a group");
    cr_expect(maskrules_exempt(cfg, &r[0], "sam", NULL), "role of the user itself");
    cr_expect_not(maskrules_exempt(cfg, &r[0], "eve", NULL));
    cr_expect(maskrules_exempt(cfg, &r[1], "audra", NULL));
    cr_expect_not(maskrules_exempt(cfg, &r[1], "sam", NULL), "groups, not roles");
    cr_expect(maskrules_exempt(cfg, &r[2], "eve", NULL), "attribute through a group");
    cr_expect_not(maskrules_exempt(cfg, &r[2], "mal", NULL));
    cr_expect(maskrules_exempt(cfg, &r[3], "mal", NULL));
    cr_expect_not(maskrules_exempt(cfg, &r[0], "unknown", NULL), "users known only to auth_query");
    config_free(cfg);
}

Test(maskrules, groups_of_a_databricks_identity_count_like_configured_ones)
{
    struct config *cfg = load();
    const struct mask_rule *r = cfg->masking.rules;
    char *auditors[] = {"engineering", "auditors"}, *eu[] = {"eu"}, *other[] = {"Auditors"};
    struct string_list g_aud = {auditors, 2}, g_eu = {eu, 1}, g_other = {other, 1};
    /* "zoe" is not under users: at all: only her token's groups say who she is */
    cr_expect(maskrules_exempt(cfg, &r[1], "zoe", &g_aud), "an exempt group of the token");
    cr_expect(maskrules_exempt(cfg, &r[0], "zoe", &g_aud), "the role of a configured group");
    cr_expect(maskrules_exempt(cfg, &r[2], "zoe", &g_eu), "the attribute of a configured group");
    cr_expect_not(maskrules_exempt(cfg, &r[1], "zoe", &g_eu));
    cr_expect_not(maskrules_exempt(cfg, &r[1], "zoe", &g_other), "group names are exact");
    cr_expect_not(maskrules_exempt(cfg, &r[1], "zoe", NULL));
    cr_expect(maskrules_exempt(cfg, &r[2], "mal", &g_eu), "a configured user's token groups too");
    config_free(cfg);
}

Test(maskrules, names_for_the_guard_are_distinct_and_lower_case)
{
    struct config *cfg = load();
    struct client_mask m, a;
    cr_assert(maskrules_build(cfg, "mal", NULL, &m));
    cr_expect_eq(m.n_applied, 3);
    cr_assert_eq(m.n_columns, 3, "email, ssn, salary: email counted once");
    cr_expect_str_eq(m.columns[0], "email");
    cr_assert_eq(m.n_tables, 2);
    cr_expect_str_eq(m.tables[0], "customers");
    cr_expect_str_eq(m.tables[1], "pay");
    cr_assert(maskrules_build(cfg, "audra", NULL, &a));
    cr_expect_eq(a.n_applied, 2);
    cr_expect_neq(a.id, m.id, "different rules, different guard verdicts");
    maskrules_free(&m);
    maskrules_free(&a);
    config_free(cfg);
}
