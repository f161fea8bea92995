/* test_spell.c: the janitor's spell timing: found after its limit, never before, and a new
 * spell whenever the state lapses or its owner or mark moves on. */
#include <criterion/criterion.h>

#include "spell.h"

/* Rounds a second apart from t=1000 ms: the round at which a steady spell is first over. */
static int first_over(struct spell *sp, int limit_s)
{
    for (int round = 0; round < 10; round++)
        if (spell_over(sp, true, 7, 1, 1000 + round * 1000, limit_s))
            return round;
    return -1;
}

Test(spell, a_steady_spell_is_over_after_its_limit_and_not_before)
{
    struct spell sp = {0};
    cr_expect_eq(first_over(&sp, 2), 2, "a 2 s spell seen first at round 0 is over at round 2");
    cr_expect_not(spell_over(&sp, true, 7, 1, 4000, 2), "it starts over once found");
}

Test(spell, a_lapse_or_a_moved_mark_or_owner_starts_a_new_spell)
{
    struct spell sp = {0};
    cr_expect_not(spell_over(&sp, true, 7, 1, 1000, 1));
    cr_expect_not(spell_over(&sp, false, 7, 1, 1500, 1), "a lapse ends it");
    cr_expect_not(spell_over(&sp, true, 7, 1, 2000, 1), "... and the next round starts anew");
    cr_expect_not(spell_over(&sp, true, 7, 2, 3000, 1), "a moved mark starts anew");
    cr_expect_not(spell_over(&sp, true, 8, 2, 4000, 1), "another owner starts anew");
    cr_expect(spell_over(&sp, true, 8, 2, 5000, 1), "an unchanged spell is over at its limit");
    cr_expect_not(spell_over(&sp, true, 8, 2, 5999, 1), "once found, the next round starts anew");
    cr_expect(spell_over(&sp, true, 8, 2, 7000, 1));
}
