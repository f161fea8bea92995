/* test_textcache.c: the bounded (key, text) -> value cache behind the guards' verdicts. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "textcache.h"

Test(textcache, values_are_found_by_key_and_whole_text)
{
    struct textcache *tc = textcache_new(8, sizeof(int));
    cr_assert_not_null(tc);
    *(int *)textcache_put(tc, 1, "SELECT 1", 8) = 11;
    *(int *)textcache_put(tc, 2, "SELECT 1", 8) = 22;
    cr_expect_eq(*(int *)textcache_get(tc, 1, "SELECT 1", 8), 11);
    cr_expect_eq(*(int *)textcache_get(tc, 2, "SELECT 1", 8), 22, "another key, its own value");
    cr_expect_null(textcache_get(tc, 1, "SELECT 12", 9));
    cr_expect_null(textcache_get(tc, 1, "SELECT ", 7), "a prefix of a text is another text");
    cr_expect_null(textcache_get(tc, 3, "SELECT 1", 8));
    textcache_clear(tc);
    cr_expect_null(textcache_get(tc, 1, "SELECT 1", 8));
    textcache_free(tc);
}

Test(textcache, the_least_recently_used_entry_makes_room)
{
    char text[16];
    struct textcache *tc = textcache_new(4, sizeof(int));
    for (int i = 0; i < 4; i++) {
        snprintf(text, sizeof(text), "q%d", i);
        *(int *)textcache_put(tc, 0, text, strlen(text)) = i;
    }
    cr_assert_not_null(textcache_get(tc, 0, "q0", 2)); /* q0 is now the most recently used */
    *(int *)textcache_put(tc, 0, "q4", 2) = 4;
    cr_expect_null(textcache_get(tc, 0, "q1", 2), "q1 was the least recently used");
    cr_expect_not_null(textcache_get(tc, 0, "q0", 2));
    cr_expect_eq(*(int *)textcache_get(tc, 0, "q4", 2), 4);
    textcache_free(tc);
}

/* The entry found last is tried first: it must still be the right one after its text's
 * neighbours, other keys, an eviction of it and a clear (ASan catches a freed one used). */
Test(textcache, the_entry_found_last_is_never_stale)
{
    struct textcache *tc = textcache_new(2, sizeof(int));
    *(int *)textcache_put(tc, 0, "a", 1) = 1;
    *(int *)textcache_put(tc, 0, "b", 1) = 2;
    cr_expect_eq(*(int *)textcache_get(tc, 0, "a", 1), 1);
    cr_expect_eq(*(int *)textcache_get(tc, 0, "a", 1), 1, "found again");
    cr_expect_null(textcache_get(tc, 7, "a", 1), "same text, another key");
    cr_expect_null(textcache_get(tc, 0, "ab", 2), "a longer text");
    cr_expect_eq(*(int *)textcache_get(tc, 0, "b", 1), 2);
    *(int *)textcache_put(tc, 0, "c", 1) = 3; /* evicts a, the least recently used */
    cr_expect_null(textcache_get(tc, 0, "a", 1));
    cr_expect_eq(*(int *)textcache_get(tc, 0, "b", 1), 2); /* b is found last ... */
    *(int *)textcache_put(tc, 0, "d", 1) = 4;              /* ... c goes: b was used since */
    *(int *)textcache_put(tc, 0, "e", 1) = 5;              /* ... now b goes */
    cr_expect_null(textcache_get(tc, 0, "b", 1), "the entry found last was evicted");
    cr_expect_eq(*(int *)textcache_get(tc, 0, "e", 1), 5);
    textcache_clear(tc);
    cr_expect_null(textcache_get(tc, 0, "e", 1), "cleared");
    textcache_free(tc);
}
