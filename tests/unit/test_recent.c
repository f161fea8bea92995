/* test_recent.c: a client's last few texts and their values: found again byte for byte and
 * only so, the oldest giving way to a new one, a known text's value replaced in place, texts
 * too long never kept. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "recent.h"

static bool find(const struct recent *r, const char *text, uint64_t *v)
{
    return recent_find(r, text, strlen(text) + 1, v);
}

static void put(struct recent *r, const char *text, uint64_t v)
{
    cr_assert(recent_put(r, text, strlen(text) + 1, v));
}

Test(recent, a_kept_text_is_found_with_its_value_and_nothing_else_is)
{
    struct recent r = {0};
    uint64_t v = 0;
    put(&r, "SELECT $1", 7);
    cr_expect(find(&r, "SELECT $1", &v));
    cr_expect_eq(v, 7);
    cr_expect_not(find(&r, "SELECT $2", &v), "same length, other bytes");
    cr_expect_not(find(&r, "SELECT $1 ", &v), "a longer text");
    cr_expect_not(recent_find(&r, "SELECT $1", strlen("SELECT $1"), &v), "a prefix of it");
    recent_clear(&r);
    cr_expect_not(find(&r, "SELECT $1", &v), "cleared");
}

Test(recent, the_oldest_text_gives_way_and_the_newer_ones_stay)
{
    struct recent r = {0};
    char text[32];
    uint64_t v;
    for (int i = 0; i <= RECENT_N; i++) { /* one more than it keeps */
        snprintf(text, sizeof(text), "SELECT %d", i);
        put(&r, text, (uint64_t)i);
    }
    cr_expect_not(find(&r, "SELECT 0", &v), "the oldest went");
    for (int i = 1; i <= RECENT_N; i++) {
        snprintf(text, sizeof(text), "SELECT %d", i);
        cr_expect(find(&r, text, &v), "%s stays", text);
        cr_expect_eq(v, (uint64_t)i);
    }
    recent_clear(&r);
}

Test(recent, a_known_text_put_again_changes_its_value_in_its_place)
{
    struct recent r = {0};
    uint64_t v;
    put(&r, "first", 1);
    put(&r, "second", 2);
    put(&r, "first", 3); /* no second copy: "second" must outlive RECENT_N - 2 more texts */
    cr_expect(find(&r, "first", &v));
    cr_expect_eq(v, 3);
    char text[32];
    for (int i = 0; i < RECENT_N - 2; i++) {
        snprintf(text, sizeof(text), "other %d", i);
        put(&r, text, 0);
    }
    cr_expect(find(&r, "second", &v), "the text put again took no second slot");
    cr_expect_eq(v, 2);
    recent_clear(&r);
}

Test(recent, a_text_too_long_is_not_kept)
{
    static char text[RECENT_TEXT_MAX + 2];
    memset(text, 'x', sizeof(text) - 1);
    struct recent r = {0};
    uint64_t v;
    cr_expect_not(recent_put(&r, text, sizeof(text), 1));
    cr_expect_not(recent_find(&r, text, sizeof(text), &v));
    cr_expect(recent_put(&r, text, RECENT_TEXT_MAX, 2), "the longest kept");
    cr_expect(recent_find(&r, text, RECENT_TEXT_MAX, &v));
    cr_expect_eq(v, 2);
    recent_clear(&r);
}
