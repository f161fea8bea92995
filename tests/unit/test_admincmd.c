/* test_admincmd.c: the admin console's command line is read strictly: a quoted name is a name
 * (a review found PAUSE "app" pausing every pool), and anything after the command is an error
 * rather than ignored. */
#include <criterion/criterion.h>
#include <string.h>

#include "admincmd.h"

Test(admincmd, verbs_names_and_counts)
{
    static const struct {
        const char *sql, *verb, *arg;
        bool quoted;
        long count;
    } ok[] = {
        {"SHOW POOLS", "SHOW", "POOLS", false, -1},
        {"  show queries 5 ;", "show", "queries", false, 5},
        {"PAUSE app", "PAUSE", "app", false, -1},
        {"PAUSE \"app\"", "PAUSE", "app", true, -1},
        {"pause 'app';", "pause", "app", true, -1},
        {"RESUME \"we\"\"ird db\"", "RESUME", "we\"ird db", true, -1},
        {"PAUSE my-db.v2", "PAUSE", "my-db.v2", false, -1},
        {"PAUSE", "PAUSE", "", false, -1},
        {"RELOAD;", "RELOAD", "", false, -1},
        {"SHUTDOWN", "SHUTDOWN", "", false, -1},
        {"RECONNECT", "RECONNECT", "", false, -1},
        {"KILL \"my db\";", "KILL", "my db", true, -1},
        {"disable app", "disable", "app", false, -1},
        {"ENABLE 'app'", "ENABLE", "app", true, -1},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct admincmd c;
        char err[200] = "";
        cr_assert(admincmd_parse(ok[i].sql, &c, err, sizeof(err)), "%s: %s", ok[i].sql, err);
        cr_expect_str_eq(c.verb, ok[i].verb, "%s", ok[i].sql);
        cr_expect_str_eq(c.arg, ok[i].arg, "%s", ok[i].sql);
        cr_expect_eq(c.arg_quoted, ok[i].quoted, "%s", ok[i].sql);
        cr_expect_eq(c.count, ok[i].count, "%s", ok[i].sql);
    }
}

Test(admincmd, trailing_text_and_bad_names_are_errors)
{
    static const char *const bad[] = {
        "SHUTDOWN now now",
        "PAUSE app extra",
        "SHOW POOLS; SHOW STATS",
        "SHOW QUERIES abc def",
        "SHOW QUERIES 1.5",
        "PAUSE \"app",
        "PAUSE 'app",
        "",
        ";",
        "123",
        "PAUSE (app)",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct admincmd c;
        char err[200] = "";
        cr_expect_not(admincmd_parse(bad[i], &c, err, sizeof(err)), "%s was accepted", bad[i]);
        cr_expect(err[0], "%s: no message", bad[i]);
    }
    char long_name[300];
    memset(long_name, 'a', sizeof(long_name));
    memcpy(long_name, "PAUSE ", 6);
    long_name[sizeof(long_name) - 1] = '\0';
    struct admincmd c;
    char err[200];
    cr_expect_not(admincmd_parse(long_name, &c, err, sizeof(err)), "an overlong name");
}

/* Text that is no command says which commands there are, the new ones too. */
Test(admincmd, no_command_names_the_commands)
{
    struct admincmd c;
    char err[200] = "";
    cr_expect_not(admincmd_parse("123", &c, err, sizeof(err)));
    cr_expect(strstr(err, "RECONNECT, KILL, DISABLE, ENABLE"), "%s", err);
    cr_expect(strstr(err, "SHOW HELP"), "%s", err);
}

/* Drivers send SETs as they connect (pgjdbc: extra_float_digits): the console takes them. */
Test(admincmd, set_statements_are_recognised)
{
    cr_expect(admincmd_is_set("SET extra_float_digits = 3"));
    cr_expect(admincmd_is_set("  set application_name TO 'x'"));
    cr_expect(admincmd_is_set("SET\tSESSION TIME ZONE 'UTC'"));
    cr_expect_not(admincmd_is_set("SETTINGS"));
    cr_expect_not(admincmd_is_set("SHOW POOLS"));
    cr_expect_not(admincmd_is_set("RESET ALL"));
    cr_expect_not(admincmd_is_set("SET"));
}
