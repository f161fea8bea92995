/* test_maskview.c: which views over masked columns resolve (pure projections, through other
 * resolved views) and which rules their columns carry; which stay refused (an expression,
 * predicate or sort over a masked column, a computed column named like one, a view over a
 * refused view, a definition not described or described otherwise than the view's columns). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "maskview.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* customers (OID 100): id 1, name 2, email 3 (rule 0), ssn 4 (rule 1). */
static const char *const rule_columns[] = {"email", "ssn"};
static const char *const tables[] = {"customers"};
static const char *const table_columns[] = {"id", "name", "email", "ssn"};
static const char *const row_functions[] = {"row_to_json", "text"};

static const struct maskview_facts facts = {
    .rule_columns = rule_columns,
    .n_rule_columns = N(rule_columns),
    .tables = tables,
    .n_tables = N(tables),
    .table_columns = table_columns,
    .n_table_columns = N(table_columns),
    .row_functions = row_functions,
    .n_row_functions = N(row_functions),
};

/* A view row of the table below: up to 3 columns, each "name" with origin (rel, attnum). */
struct view_case {
    uint32_t oid;
    const char *name, *definition;
    const char *columns[3];
    struct maskview_origin origins[3];
    int n_origins; /* -1: not described */
    bool resolves;
};

static const struct view_case cases[] = {
    {200,
     "contacts",
     "SELECT customers.id, customers.email AS contact FROM public.customers",
     {"id", "contact"},
     {{100, 1, "id"}, {100, 3, "contact"}},
     2,
     true},
    {201,
     "reach",
     "SELECT contacts.contact AS reach, contacts.id FROM public.contacts",
     {"reach", "id"},
     {{200, 2, "reach"}, {200, 1, "id"}},
     2,
     true},
    {202,
     "lowered",
     "SELECT lower(customers.email) AS e FROM public.customers",
     {"e"},
     {{0, 0, "e"}},
     1,
     false},
    {203,
     "filtered",
     "SELECT customers.id FROM public.customers WHERE customers.ssn = 'x'",
     {"id"},
     {{100, 1, "id"}},
     1,
     false},
    {204,
     "sorted",
     "SELECT customers.email FROM public.customers ORDER BY customers.email",
     {"email"},
     {{100, 3, "email"}},
     1,
     false},
    {205,
     "undescribed",
     "SELECT customers.email FROM public.customers",
     {"email"},
     {{0}},
     -1,
     false},
    {206,
     "named_like",
     "SELECT 'x'::text AS email FROM public.customers",
     {"email"},
     {{0, 0, "email"}},
     1,
     false},
    {207,
     "mismatch",
     "SELECT customers.email FROM public.customers",
     {"email", "id"},
     {{100, 3, "email"}},
     1,
     false},
    {208, "over_refused", "SELECT lowered.e FROM public.lowered", {"e"}, {{202, 1, "e"}}, 1, false},
    {209,
     "whole_row",
     "SELECT c.* FROM public.customers c WHERE c IS NOT NULL",
     {"id"},
     {{100, 1, "id"}},
     1,
     false},
    {210,
     "over_reach",
     "SELECT reach.reach AS r2 FROM public.reach",
     {"r2"},
     {{201, 1, "r2"}},
     1,
     true},
    {211,
     "renamed_origin",
     "SELECT customers.email AS contact FROM public.customers",
     {"contact"},
     {{100, 3, "other"}},
     1,
     false},
};

/* Builds the views of the table above. */
static struct maskview *build_views(void)
{
    struct maskview *v = calloc(N(cases), sizeof(*v));
    cr_assert(v);
    for (size_t i = 0; i < N(cases); i++) {
        v[i].oid = cases[i].oid;
        v[i].name = strdup(cases[i].name);
        v[i].definition = strdup(cases[i].definition);
        for (size_t k = 0; k < 3 && cases[i].columns[k]; k++)
            cr_assert(maskview_set_column(&v[i], k + 1, cases[i].columns[k]));
        if (cases[i].n_origins < 0)
            continue;
        v[i].origins = calloc(3, sizeof(*v[i].origins));
        memcpy(v[i].origins, cases[i].origins, sizeof(cases[i].origins));
        v[i].n_origins = (size_t)cases[i].n_origins;
    }
    return v;
}

static void free_views(struct maskview *v)
{
    for (size_t i = 0; i < N(cases); i++)
        maskview_free(&v[i]);
    free(v);
}

static struct maskview_cols base_columns(void)
{
    struct maskview_cols cols = {0};
    cr_assert(maskview_cols_add(&cols, 100, 3, 0) && maskview_cols_add(&cols, 100, 4, 1));
    return cols;
}

/* The rules cols holds for (rel, attnum), as a bit set. */
static unsigned rules_of(const struct maskview_cols *cols, uint32_t rel, int16_t attnum)
{
    unsigned bits = 0;
    for (size_t i = 0; i < cols->n; i++)
        if (cols->items[i].rel == rel && cols->items[i].attnum == attnum)
            bits |= 1u << cols->items[i].rule;
    return bits;
}

Test(maskview, projections_resolve_and_the_rest_stay_refused)
{
    struct maskview *v = build_views();
    struct maskview_cols cols = base_columns();
    long n = maskview_resolve(&facts, v, N(cases), &cols, 8);
    long want = 0;
    for (size_t i = 0; i < N(cases); i++) {
        cr_expect_eq(v[i].resolved, cases[i].resolves, "view %s", cases[i].name);
        want += cases[i].resolves;
    }
    cr_expect_eq(n, want);
    cr_expect_eq(rules_of(&cols, 200, 2), 1u, "contacts.contact carries email's rule");
    cr_expect_eq(rules_of(&cols, 200, 1), 0u, "contacts.id carries none");
    cr_expect_eq(rules_of(&cols, 201, 1), 1u, "through a resolved view");
    cr_expect_eq(rules_of(&cols, 201, 2), 0u);
    cr_expect_eq(rules_of(&cols, 210, 1), 1u, "two views deep");
    for (uint32_t oid = 202; oid <= 209; oid++)
        cr_expect_eq(rules_of(&cols, oid, 1), 0u, "refused view %u has no masked column", oid);
    maskview_cols_free(&cols);
    free_views(v);
}

Test(maskview, a_view_over_a_view_needs_a_pass_after_it)
{
    struct maskview *v = build_views();
    struct maskview_cols cols = base_columns();
    cr_expect_eq(maskview_resolve(&facts, v, N(cases), &cols, 1), 1, "only contacts at first");
    cr_expect(v[0].resolved);
    cr_expect_not(v[1].resolved, "reach reads contacts, refused during the first pass");
    maskview_cols_free(&cols);
    free_views(v);
}

Test(maskview, several_rules_on_one_origin_all_carry_over)
{
    struct maskview *v = build_views();
    struct maskview_cols cols = base_columns();
    cr_assert(maskview_cols_add(&cols, 100, 3, 1)); /* a second rule names email */
    cr_expect_geq(maskview_resolve(&facts, v, N(cases), &cols, 8), 1);
    cr_expect_eq(rules_of(&cols, 200, 2), 3u, "both rules");
    cr_expect_eq(rules_of(&cols, 210, 1), 3u, "both rules, two views deep");
    maskview_cols_free(&cols);
    free_views(v);
}
