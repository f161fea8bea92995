/* test_params.c: which startup parameters a client may set, `options` parsing, and the
 * SET/RESET text that carries them onto a pooled server connection, quoted safely. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "params.h"

static bool parse(struct param_set *out, char *err, size_t errsz, const char *options,
                  const char *name, const char *value)
{
    struct startup st = {.kind = STARTUP_V3};
    st.params[st.n_params++] = (struct startup_param){"user", "u"};
    st.params[st.n_params++] = (struct startup_param){"database", "d"};
    if (options)
        st.params[st.n_params++] = (struct startup_param){"options", options};
    if (name)
        st.params[st.n_params++] = (struct startup_param){name, value};
    return params_from_startup(&st, out, NULL, err, errsz);
}

Test(params, tracked_parameters_are_collected_with_canonical_names)
{
    struct param_set s = {0};
    char err[128];
    cr_assert(parse(&s, err, sizeof(err), NULL, "datestyle", "ISO"), "%s", err);
    cr_expect_str_eq(param_get(&s, "DateStyle"), "ISO");
    cr_expect_null(param_get(&s, "user"), "user is not a session parameter");
    param_clear(&s);
}

Test(params, options_with_dash_c_and_double_dash_forms)
{
    struct param_set s = {0};
    char err[128];
    cr_assert(parse(&s, err, sizeof(err),
                    "-c search_path=app,public -cstatement_timeout=5s --lock-timeout=2s "
                    "-c application_name=with\\ space",
                    NULL, NULL),
              "%s", err);
    cr_expect_str_eq(param_get(&s, "search_path"), "app,public");
    cr_expect_str_eq(param_get(&s, "statement_timeout"), "5s");
    cr_expect_str_eq(param_get(&s, "lock_timeout"), "2s");
    cr_expect_str_eq(param_get(&s, "application_name"), "with space");
    param_clear(&s);
}

Test(params, unknown_parameters_are_refused_by_name)
{
    struct param_set s = {0};
    char err[128];
    cr_expect_not(parse(&s, err, sizeof(err), NULL, "app.tenant_id", "7"));
    cr_expect_str_eq(err, "unsupported startup parameter: app.tenant_id");
    param_clear(&s);
    cr_expect_not(parse(&s, err, sizeof(err), "-c app.tenant_id=7", NULL, NULL));
    cr_expect_str_eq(err, "unsupported startup parameter: app.tenant_id");
    param_clear(&s);
    cr_expect_not(parse(&s, err, sizeof(err), "-X", NULL, NULL));
    cr_expect(strstr(err, "unsupported option"), "%s", err);
    param_clear(&s);
    cr_expect_not(parse(&s, err, sizeof(err), NULL, "replication", "database"));
    param_clear(&s);
}

Test(params, too_many_options_are_refused)
{
    struct param_set s = {0};
    char err[128], opts[2048] = "";
    for (int i = 0; i < 70; i++)
        strcat(opts, "-c search_path=a ");
    cr_expect_not(parse(&s, err, sizeof(err), opts, NULL, NULL));
    param_clear(&s);
}

Test(params, sync_sets_what_differs_and_resets_what_is_no_longer_wanted)
{
    struct param_set wanted = {0}, applied = {0}, reported = {0};
    struct buf sql;
    buf_init(&sql);
    param_put(&wanted, "application_name", "app");
    param_put(&wanted, "TimeZone", "UTC");
    param_put(&reported, "TimeZone", "UTC");
    param_put(&applied, "search_path", "x");
    cr_assert(params_build_sync_sql(&wanted, &applied, &reported, &sql));
    cr_expect_str_eq((const char *)sql.data, "SET application_name TO E'app';RESET search_path;");
    buf_reset(&sql);
    param_clear(&applied);
    param_put(&applied, "application_name", "app");
    cr_expect_not(params_build_sync_sql(&wanted, &applied, &reported, &sql),
                  "nothing to do when the server already matches");
    buf_free(&sql);
    param_clear(&wanted);
    param_clear(&applied);
    param_clear(&reported);
}

Test(params, values_with_quotes_backslashes_and_semicolons_stay_one_literal)
{
    struct buf sql;
    buf_init(&sql);
    params_quote_literal(&sql, "a'b\\c; DROP TABLE x; --");
    buf_put_u8(&sql, 0);
    cr_expect_str_eq((const char *)sql.data, "E'a''b\\\\c; DROP TABLE x; --'");
    buf_free(&sql);
}

Test(params, set_holds_a_bounded_number_of_entries)
{
    struct param_set s = {0};
    char name[16];
    for (int i = 0; i < MAX_TRACKED_PARAMS; i++) {
        snprintf(name, sizeof(name), "p%d", i);
        cr_assert(param_put(&s, name, "v"));
    }
    cr_expect_not(param_put(&s, "one_more", "v"));
    cr_expect(param_put(&s, "p3", "replaced"), "replacing needs no new slot");
    cr_expect_str_eq(param_get(&s, "p3"), "replaced");
    param_remove(&s, "p3");
    cr_expect_null(param_get(&s, "p3"));
    param_clear(&s);
}
