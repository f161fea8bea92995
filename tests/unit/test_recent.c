/* test_recent.c: a client's last few texts and their values: found again byte for byte and
 * only so, the oldest giving way to a new one, a text found staying, a known text's value
 * replaced in place, the bytes kept bounded, texts too long never kept. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "recent.h"

static bool find(struct recent *r, const char *text, uint64_t *v)
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

Test(recent, a_known_text_put_again_takes_no_second_slot)
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
    static char text[RECENT_TEXT_MAX + 1];
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

Test(recent, a_text_found_stays_while_new_ones_come)
{
    struct recent r = {0};
    char text[32];
    uint64_t v;
    put(&r, "hot", 1);
    for (int i = 1; i < RECENT_N; i++) { /* full: "hot" is the oldest */
        snprintf(text, sizeof(text), "cold %d", i);
        put(&r, text, 0);
    }
    cr_assert(find(&r, "hot", &v));
    put(&r, "new", 2); /* takes the oldest slot, not the one just found */
    cr_expect(find(&r, "hot", &v), "a text found lately gave way");
    cr_expect(find(&r, "new", &v));
    recent_clear(&r);
}

Test(recent, the_bytes_kept_stay_within_their_bound)
{
    static char big[3][3000];
    struct recent r = {0};
    uint64_t v;
    for (int i = 0; i < 3; i++) {
        memset(big[i], 'a' + i, sizeof(big[i]));
        cr_assert(recent_put(&r, big[i], sizeof(big[i]), (uint64_t)i));
        cr_expect_leq(r.bytes, RECENT_BYTES_MAX);
    }
    cr_expect_not(recent_find(&r, big[0], sizeof(big[0]), &v), "the oldest made room");
    cr_expect(recent_find(&r, big[1], sizeof(big[1]), &v));
    cr_expect(recent_find(&r, big[2], sizeof(big[2]), &v));
    cr_expect_eq(r.bytes, 2 * sizeof(big[0]));
    recent_clear(&r);
}
