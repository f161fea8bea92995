/* test_resetwords.c: which statement texts arm the reset barrier (pipeline_text_may_reset):
 * those that may return a setting to its default, and not the words inside names or DEFAULT
 * as a column's value, so that ordinary statements of clients with startup settings keep
 * their pipelining. */
#include <criterion/criterion.h>

#include "pipeline.h"

Test(resetwords, statements_that_may_reset_a_setting_arm_the_barrier)
{
    static const char *const yes[] = {
        "RESET DateStyle",
        "reset all",
        "SET DateStyle TO DEFAULT",
        "set timezone to\n\tdefault",
        "SET TIME ZONE DEFAULT",
        "set time zone local",
        "SET extra_float_digits = DEFAULT",
        "DISCARD ALL",
        "BEGIN; RESET search_path; COMMIT",
        "DO $$BEGIN EXECUTE 'RESET DateStyle'; END$$",
        "UPDATE t SET a = DEFAULT", /* (a column's value: conservatively a reset too) */
        "SELECT 1 -- reset",
    };
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        cr_expect(pipeline_text_may_reset(yes[i]), "[%s] does not arm the barrier", yes[i]);
}

Test(resetwords, names_and_column_defaults_do_not)
{
    static const char *const no[] = {
        "SELECT 1 AS is_default",
        "SELECT * FROM password_resets",
        "COPY rt9_user_defaults FROM STDIN",
        "INSERT INTO t DEFAULT VALUES",
        "INSERT INTO t VALUES (DEFAULT, 1)",
        "CREATE TABLE t (a int DEFAULT 1)",
        "SELECT discarded FROM t",
        "SET LOCAL DateStyle = 'German'",
        "SELECT * FROM locale_defaults",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
        "",
    };
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        cr_expect(!pipeline_text_may_reset(no[i]), "[%s] arms the barrier", no[i]);
}
