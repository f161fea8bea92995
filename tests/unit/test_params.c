/* test_params.c: which startup parameters a client may set, `options` parsing, the
 * set_config/RESET text that carries them onto a pooled server connection, quoted safely, and
 * the read-back of settings a carried SET changed. */
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
    cr_expect_str_eq((const char *)sql.data,
                     "SELECT pg_catalog.set_config('application_name', E'app', false);"
                     "RESET search_path;");
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

/* A server whose settings are its last client's, in that order, needs nothing for a client
 * that wants the same; one whose value is unknown (a RESET it may have run) is set again, even
 * for a client whose startup value spells the unknown marker itself. */
Test(params, sync_skips_a_server_holding_the_same_settings_but_never_an_unknown_one)
{
    struct param_set wanted = {0}, applied = {0}, reported = {0};
    struct buf sql;
    buf_init(&sql);
    param_put(&wanted, "application_name", "app");
    param_put(&wanted, "search_path", "s");
    param_put(&applied, "application_name", "app");
    param_put(&applied, "search_path", "s");
    cr_expect_not(params_build_sync_sql(&wanted, &applied, &reported, &sql));
    param_put(&applied, "search_path", "t"); /* same order, another value */
    cr_assert(params_build_sync_sql(&wanted, &applied, &reported, &sql));
    cr_expect_str_eq((const char *)sql.data,
                     "SELECT pg_catalog.set_config('search_path', E's', false);");
    buf_reset(&sql);
    param_put(&wanted, "search_path", PARAM_UNKNOWN);
    param_put(&applied, "search_path", PARAM_UNKNOWN);
    cr_expect(params_build_sync_sql(&wanted, &applied, &reported, &sql), "in order");
    buf_reset(&sql);
    param_remove(&applied, "application_name"); /* (now out of order: the long way) */
    param_put(&applied, "application_name", "app");
    cr_expect(params_build_sync_sql(&wanted, &applied, &reported, &sql), "out of order");
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

/* A DataRow body with the given text values (NULL: a null column). */
static size_t data_row(uint8_t *out, const char *const *values, int n)
{
    size_t at = 0;
    out[at++] = (uint8_t)(n >> 8);
    out[at++] = (uint8_t)n;
    for (int i = 0; i < n; i++) {
        int32_t len = values[i] ? (int32_t)strlen(values[i]) : -1;
        uint32_t u = (uint32_t)len;
        for (int k = 3; k >= 0; k--)
            out[at++] = (uint8_t)(u >> (8 * k));
        if (values[i]) {
            memcpy(out + at, values[i], (size_t)len);
            at += (size_t)len;
        }
    }
    return at;
}

Test(params, read_back_takes_what_the_server_holds_and_a_reset_the_clients_default)
{
    uint32_t mask = params_settable_bit("statement_timeout") |
                    params_settable_bit("extra_float_digits") | params_settable_bit("search_path");
    cr_assert(mask != 0 && params_settable_bit("work_mem") == 0);
    struct buf sql;
    buf_init(&sql);
    cr_assert(params_build_readback_sql(mask, &sql));
    cr_expect_str_eq((const char *)sql.data,
                     "BEGIN ISOLATION LEVEL READ COMMITTED;"
                     "SELECT name, setting, source <> 'session' FROM pg_catalog.pg_settings "
                     "WHERE name IN ('extra_float_digits', 'search_path', 'statement_timeout');"
                     "COMMIT");
    buf_free(&sql);
    buf_init(&sql);
    cr_expect_not(params_build_readback_sql(0, &sql), "nothing to read");
    buf_free(&sql);

    struct param_set wanted = {0}, applied = {0}, startup = {0};
    bool ts = true;
    param_put(&startup, "statement_timeout", "1234");
    param_put(&wanted, "statement_timeout", "5000");
    param_put(&applied, "statement_timeout", PARAM_UNKNOWN);
    uint32_t reset = params_settable_bit("statement_timeout") | params_settable_bit("search_path");
    uint8_t row[256];
    const char *const rolled_back[] = {"statement_timeout", "1234", "f"};
    size_t n = data_row(row, rolled_back, 3);
    cr_expect_eq(params_take_readback(row, (uint32_t)n, mask, 0, &startup, &wanted, &applied, &ts),
                 params_settable_bit("statement_timeout"));
    cr_expect_str_eq(param_get(&wanted, "statement_timeout"), "1234", "the SET did not last");
    cr_expect_not(ts, "no RESET");
    cr_expect_str_eq(param_get(&applied, "statement_timeout"), "1234", "known on the server");
    const char *const reset_done[] = {"statement_timeout", "0", "t"};
    n = data_row(row, reset_done, 3);
    cr_expect_neq(
        params_take_readback(row, (uint32_t)n, mask, reset, &startup, &wanted, &applied, &ts), 0);
    cr_expect_str_eq(param_get(&wanted, "statement_timeout"), "1234", "RESET: the startup value");
    cr_expect(ts, "back to a startup value the server does not hold");
    cr_expect_str_eq(param_get(&applied, "statement_timeout"), "0", "what the server holds");
    cr_expect_neq(params_take_readback(row, (uint32_t)n, mask, 0, &startup, &wanted, &applied, &ts),
                  0);
    cr_expect_str_eq(param_get(&wanted, "statement_timeout"), "0", "a SET to the default");
    const char *const path[] = {"search_path", "\"$user\", public", "t"};
    n = data_row(row, path, 3);
    cr_expect_eq(
        params_take_readback(row, (uint32_t)n, mask, reset, &startup, &wanted, &applied, &ts),
        params_settable_bit("search_path"));
    cr_expect_null(param_get(&wanted, "search_path"), "RESET without a startup value: none");
    cr_expect_not(ts, "no startup value: the server's default is the client's");
    cr_expect_str_eq(param_get(&applied, "search_path"), "\"$user\", public");

    const char *const bad[][3] = {{"work_mem", "4096", "t"},
                                  {"statement_timeout", NULL, "t"},
                                  {"statement_timeout", "1", NULL}};
    for (size_t i = 0; i < 3; i++) {
        n = data_row(row, bad[i], 3);
        cr_expect_eq(
            params_take_readback(row, (uint32_t)n, mask, 0, &startup, &wanted, &applied, &ts), 0,
            "bad row %zu", i);
    }
    const char *const not_asked[] = {"lock_timeout", "0", "t"};
    n = data_row(row, not_asked, 3);
    cr_expect_eq(params_take_readback(row, (uint32_t)n, mask, 0, &startup, &wanted, &applied, &ts),
                 0);
    cr_expect_null(param_get(&applied, "lock_timeout"), "a setting not asked for is not taken");
    n = data_row(row, rolled_back, 3);
    row[n++] = 'x';
    cr_expect_eq(params_take_readback(row, (uint32_t)n, mask, 0, &startup, &wanted, &applied, &ts),
                 0, "bytes after the last column");
    n = data_row(row, rolled_back, 2);
    cr_expect_eq(params_take_readback(row, (uint32_t)n, mask, 0, &startup, &wanted, &applied, &ts),
                 0);
    n = data_row(row, rolled_back, 3);
    cr_expect_eq(
        params_take_readback(row, (uint32_t)n - 1, mask, 0, &startup, &wanted, &applied, &ts), 0);
    cr_expect_str_eq(param_get(&wanted, "statement_timeout"), "0", "no bad row changed it");
    param_clear(&wanted);
    param_clear(&applied);
    param_clear(&startup);
}

/* What a client had before changes that may yet be undone comes back whole: a value changed
 * twice returns to the first, one it did not have goes again, others stay as they are. */
Test(params, values_saved_before_changes_are_restored)
{
    struct param_set wanted = {0}, before = {0};
    uint32_t absent = 0, mask = 0;
    const char *edigits = params_settable_name("extra_float_digits");
    const char *timeout = params_settable_name("statement_timeout");
    const char *appname = params_settable_name("application_name");
    cr_assert(edigits && timeout && appname);
    uint32_t bit_d = params_settable_bit(edigits), bit_t = params_settable_bit(timeout);
    param_put(&wanted, edigits, "2");
    param_put(&wanted, appname, "app");
    params_save_before(&before, &absent, edigits, bit_d, param_get(&wanted, edigits));
    mask |= bit_d;
    param_put(&wanted, edigits, "-3"); /* a second change saves nothing more */
    params_save_before(&before, &absent, timeout, bit_t, param_get(&wanted, timeout));
    mask |= bit_t;
    param_put(&wanted, timeout, "120000");
    params_restore_before(&wanted, &before, absent, mask);
    cr_expect_str_eq(param_get(&wanted, edigits), "2");
    cr_expect_null(param_get(&wanted, timeout), "a value it did not have stayed");
    cr_expect_str_eq(param_get(&wanted, appname), "app");
    /* a later save of a value it now has replaces the record of having none */
    params_save_before(&before, &absent, timeout, bit_t, "5s");
    param_put(&wanted, timeout, "1s");
    params_restore_before(&wanted, &before, absent, bit_t);
    cr_expect_str_eq(param_get(&wanted, timeout), "5s");
    param_clear(&wanted);
    param_clear(&before);
}

/* Settings a RESET returned to the client's startup values: the client hears of the ones the
 * server reports, spelt as the server would (DateStyle's parts the value leaves out come from
 * the server's), and each is set again; settings outside the mask, or without a value, are
 * left alone. */
Test(params, settings_reset_to_startup_values_are_told_and_set_again)
{
    struct param_set wanted = {0}, reported = {0}, to_set = {0};
    param_put(&wanted, "DateStyle", "dmy");
    param_put(&wanted, "statement_timeout", "5s");
    param_put(&wanted, "TimeZone", "Asia/Tokyo");
    param_put(&reported, "DateStyle", "ISO, MDY");
    param_put(&reported, "TimeZone", "UTC");
    uint32_t mask = params_settable_bit("DateStyle") | params_settable_bit("statement_timeout") |
                    params_settable_bit("search_path");
    struct buf status;
    buf_init(&status);
    cr_assert(params_restored_msgs(mask, &wanted, &reported, &status, &to_set));
    struct buf want;
    buf_init(&want);
    proto_param_status(&want, "DateStyle", "ISO, DMY");
    cr_expect_eq(status.len, want.len, "one ParameterStatus: statement_timeout is not reported");
    cr_expect(status.len == want.len && memcmp(status.data, want.data, want.len) == 0);
    cr_expect_eq(to_set.n, 2);
    cr_expect_str_eq(param_get(&to_set, "DateStyle"), "dmy", "set as the client gave it");
    cr_expect_str_eq(param_get(&to_set, "statement_timeout"), "5s");
    cr_expect_null(param_get(&to_set, "TimeZone"), "not in the mask");
    cr_expect_null(param_get(&to_set, "search_path"), "no value to set");
    buf_free(&status);
    buf_free(&want);
    param_clear(&wanted);
    param_clear(&reported);
    param_clear(&to_set);
}

/* Session pooling reads back the startup settings the server does not report after a
 * statement whose tag says it may have RESET them, and only then. */
Test(params, unreported_startup_settings_and_the_tags_that_may_reset_them)
{
    struct param_set given = {0}, reported = {0};
    param_put(&given, "statement_timeout", "123s");
    param_put(&given, "DateStyle", "ISO, DMY");
    param_put(&reported, "DateStyle", "ISO, MDY");
    cr_expect_eq(params_unreported_mask(&given, &reported),
                 params_settable_bit("statement_timeout"));
    static const char *const may[] = {"RESET", "SET", "DISCARD ALL", "DO", "CALL"};
    for (size_t i = 0; i < sizeof(may) / sizeof(may[0]); i++)
        cr_expect(params_tag_may_reset((const uint8_t *)may[i], strlen(may[i]) + 1), "%s", may[i]);
    static const char *const not_reset[] = {"SELECT 1", "DISCARD PLANS", "SETX", "RESE"};
    for (size_t i = 0; i < sizeof(not_reset) / sizeof(not_reset[0]); i++)
        cr_expect_not(params_tag_may_reset((const uint8_t *)not_reset[i], strlen(not_reset[i]) + 1),
                      "%s", not_reset[i]);
    cr_expect_not(params_tag_may_reset((const uint8_t *)"SET", 3), "no NUL: not a tag");
    param_clear(&given);
    param_clear(&reported);
}
