/* test_maskbudget.c: each user's budget of masked-column tests: refilled at the rate, bursts
 * of twice it, and never handed back in full because other users came and went. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "maskbudget.h"

Test(maskbudget, a_user_gets_bursts_of_twice_the_rate_then_the_rate)
{
    struct mask_buckets *t = NULL;
    int64_t now = 1000000;
    for (int i = 0; i < 10; i++)
        cr_expect(maskbudget_charge(&t, "alice", 1, 5, now), "test %d of the burst", i);
    cr_expect_not(maskbudget_charge(&t, "alice", 1, 5, now), "past the burst");
    cr_expect(maskbudget_charge(&t, "bob", 1, 5, now), "bob has his own budget");
    cr_expect(maskbudget_charge(&t, "alice", 1, 5, now + 200), "one test back after 200 ms");
    cr_expect_not(maskbudget_charge(&t, "alice", 1, 5, now + 200));
    cr_expect(maskbudget_charge(&t, "alice", 0, 5, now + 200), "no tests, no charge");
    free(t);
}

/* Many other users arriving never refill a user's spent budget: while the table is full of
 * users who all spent theirs in the last 2 s, a new user is refused; once some are full again
 * (2 s unused), they make room, and the spent budget is still spent. */
Test(maskbudget, other_users_cannot_refill_a_spent_budget)
{
    struct mask_buckets *t = NULL;
    int64_t now = 5000000;
    for (int i = 0; i < 10; i++)
        cr_assert(maskbudget_charge(&t, "mallory", 1, 5, now));
    cr_assert_not(maskbudget_charge(&t, "mallory", 1, 5, now));
    char user[32];
    int admitted = 0;
    for (int i = 0; i < 2000; i++) {
        snprintf(user, sizeof(user), "user%d", i);
        admitted += maskbudget_charge(&t, user, 1, 5, now);
    }
    cr_expect_lt(admitted, 1000, "%d new users admitted into a full table", admitted);
    cr_expect_gt(admitted, 500, "only %d users admitted", admitted);
    cr_expect_not(maskbudget_charge(&t, "mallory", 1, 5, now), "mallory's budget refilled");
    /* 2 s on, everyone is full again: new users fit, and mallory's budget is back by the
     * rate, not by the others */
    now += 2000;
    cr_expect(maskbudget_charge(&t, "newcomer", 1, 5, now));
    for (int i = 0; i < 10; i++)
        cr_expect(maskbudget_charge(&t, "mallory", 1, 5, now), "test %d after 2 s", i);
    cr_expect_not(maskbudget_charge(&t, "mallory", 1, 5, now));
    free(t);
}
