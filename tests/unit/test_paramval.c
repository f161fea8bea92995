/* test_paramval.c: startup parameter values are checked as PostgreSQL checks them and reported
 * in its spelling. A review found lakeproxy echoing the client's own text: libpq then took
 * standard_conforming_strings=true for off and doubled backslashes when escaping, and psycopg
 * could not read dates under DateStyle=iso,dmy. */
#include <criterion/criterion.h>
#include <string.h>

#include "paramval.h"

Test(paramval, values_are_reported_as_postgresql_spells_them)
{
    static const struct {
        const char *canon, *value, *server, *want;
    } cases[] = {
        {"standard_conforming_strings", "true", "on", "on"},
        {"standard_conforming_strings", "YES", "on", "on"},
        {"standard_conforming_strings", "of", "on", "off"},
        {"default_transaction_read_only", "1", "off", "on"},
        {"client_encoding", "unicode", "UTF8", "UTF8"},
        {"client_encoding", "latin1", "UTF8", "LATIN1"},
        {"client_encoding", "utf-8", "UTF8", "UTF8"},
        {"DateStyle", "iso,dmy", "ISO, MDY", "ISO, DMY"},
        {"DateStyle", "German", "ISO, MDY", "German, DMY"},
        {"DateStyle", "SQL", "ISO, DMY", "SQL, DMY"},
        {"DateStyle", "ymd", "Postgres, MDY", "Postgres, YMD"},
        {"DateStyle", "euro, postgres", NULL, "Postgres, DMY"},
        {"IntervalStyle", "SQL_STANDARD", "postgres", "sql_standard"},
        {"TimeZone", "utc", "Etc/UTC", "UTC"},
        {"TimeZone", "Europe/Berlin", "UTC", "Europe/Berlin"},
        {"search_path", "app, public", NULL, "app, public"},
        {"application_name", "batch", "", "batch"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[64];
        const char *got =
            paramval_report(cases[i].canon, cases[i].value, cases[i].server, buf, sizeof(buf));
        cr_expect_str_eq(got, cases[i].want, "%s=%s", cases[i].canon, cases[i].value);
    }
}

Test(paramval, bad_values_are_refused_as_postgresql_refuses_them)
{
    static const struct {
        const char *canon, *value;
        bool ok;
    } cases[] = {
        {"standard_conforming_strings", "o", false},
        {"standard_conforming_strings", "maybe", false},
        {"standard_conforming_strings", "on", true},
        {"client_encoding", "NOPE", false},
        {"client_encoding", "win1252", true},
        {"DateStyle", "nonsense", false},
        {"DateStyle", "iso, german", false},
        {"DateStyle", "dmy, mdy", false},
        {"DateStyle", "", false},
        {"DateStyle", "default", true},
        {"IntervalStyle", "fancy", false},
        {"bytea_output", "base64", false},
        {"bytea_output", "HEX", true},
        {"default_transaction_isolation", "serializable", true},
        {"default_transaction_isolation", "snapshot", false},
        {"extra_float_digits", "3", true},
        {"extra_float_digits", "4", false},
        {"extra_float_digits", "x", false},
        {"TimeZone", "Nowhere/Bogus", true}, /* the server judges these */
        {"statement_timeout", "5s", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[200] = "";
        cr_expect_eq(paramval_check(cases[i].canon, cases[i].value, err, sizeof(err)), cases[i].ok,
                     "%s=%s: %s", cases[i].canon, cases[i].value, err);
        if (!cases[i].ok)
            cr_expect(strstr(err, "invalid value for parameter"), "%s", err);
    }
}

Test(paramval, application_names_are_cleaned_to_printable_ascii)
{
    char v[] = "caf\xe9\tx";
    paramval_clean_application_name(v);
    cr_expect_str_eq(v, "caf??x");
}
