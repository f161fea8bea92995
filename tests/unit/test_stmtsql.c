/* Unit tests of stmtsql.c: the lone DEALLOCATE and DISCARD ALL statements lakeproxy reads. */
#include <criterion/criterion.h>
#include <string.h>

#include "stmtsql.h"

/* A lone DEALLOCATE is read as PostgreSQL reads it: a plain name folded to lower case and cut
 * to 63 bytes, a quoted one as written ("ALL" in quotes is a name). */
Test(stmtsql, lone_deallocate_is_recognised)
{
    char name[64];
    bool all;
    cr_expect(stmtsql_deallocate("DEALLOCATE foo", name, &all));
    cr_expect_str_eq(name, "foo");
    cr_expect_not(all);
    cr_expect(stmtsql_deallocate("  deallocate prepare bar ;  ", name, &all));
    cr_expect_str_eq(name, "bar");
    cr_expect(stmtsql_deallocate("DEALLOCATE ALL;", name, &all));
    cr_expect(all);
    cr_expect_not(stmtsql_deallocate("DEALLOCATE foo; SELECT 1", name, &all));
    cr_expect(stmtsql_deallocate("DEALLOCATE S_1", name, &all));
    cr_expect_str_eq(name, "s_1", "a plain name is folded to lower case");
    cr_expect(stmtsql_deallocate("Deallocate \"S_1\"", name, &all));
    cr_expect_str_eq(name, "S_1", "a quoted name is kept as written");
    cr_expect(stmtsql_deallocate("DEALLOCATE \"a\"\"b c\"", name, &all));
    cr_expect_str_eq(name, "a\"b c");
    cr_expect(stmtsql_deallocate("DEALLOCATE \"ALL\"", name, &all));
    cr_expect_not(all, "a quoted ALL is a name");
    cr_expect_str_eq(name, "ALL");
    cr_expect(stmtsql_deallocate("DEALLOCATE PREPARE All", name, &all));
    cr_expect(all);
    char long_name[100];
    memset(long_name, 'x', 81); /* DEALLOCATE, then a name of 70 */
    memcpy(long_name, "DEALLOCATE ", 11);
    long_name[81] = '\0';
    cr_expect(stmtsql_deallocate(long_name, name, &all));
    cr_expect_eq(strlen(name), 63, "a plain name is cut to 63 bytes");
    long_name[11] = '"';
    long_name[80] = '"';
    cr_expect_not(stmtsql_deallocate(long_name, name, &all), "long quoted: the server's");
    cr_expect_not(stmtsql_deallocate("DEALLOCATE \"\"", name, &all));
    cr_expect_not(stmtsql_deallocate("DEALLOCATE \"foo", name, &all));
    cr_expect_not(stmtsql_deallocate("DEALLOCATE 1", name, &all));
    cr_expect_not(stmtsql_deallocate("\"DEALLOCATE\" foo", name, &all));
    cr_expect_not(stmtsql_deallocate("SELECT 1", name, &all));
    cr_expect_not(stmtsql_deallocate("DEALLOCATE PREPARE", name, &all));
}

/* DISCARD ALL alone, in any case, with a semicolon and spaces; nothing else. */
Test(stmtsql, lone_discard_all_is_recognised)
{
    cr_expect(stmtsql_is_discard_all("DISCARD ALL"));
    cr_expect(stmtsql_is_discard_all("  discard  All ;  "));
    cr_expect_not(stmtsql_is_discard_all("DISCARD PLANS"));
    cr_expect_not(stmtsql_is_discard_all("DISCARD ALL; SELECT 1"));
    cr_expect_not(stmtsql_is_discard_all("DISCARD \"ALL\""));
    cr_expect_not(stmtsql_is_discard_all("DISCARD"));
    cr_expect_not(stmtsql_is_discard_all("SELECT 1"));
}
