/* test_msgbudget.c: the budget for clients' large messages: lent whole, in the order asked,
 * never more than the total (but for one share alone), and everything given back. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "msgbudget.h"

/* A budget of total and two claims on it, fresh. */
static void start(struct msgbudget *b, size_t total, struct msgbudget_claim *x,
                  struct msgbudget_claim *y)
{
    msgbudget_init(b, total);
    msgbudget_claim_init(x);
    msgbudget_claim_init(y);
}

Test(msgbudget, shares_are_lent_whole_and_in_the_order_asked)
{
    struct msgbudget b;
    struct msgbudget_claim a, c2, c3;
    start(&b, 10, &a, &c2);
    msgbudget_claim_init(&c3);
    cr_assert(msgbudget_ask(&b, &a, 6));
    cr_assert_not(msgbudget_ask(&b, &c2, 6), "6 more do not fit in 10");
    cr_assert_not(msgbudget_ask(&b, &c3, 3), "3 would fit, but do not pass the one before");
    cr_assert_null(msgbudget_next_lent(&b));
    cr_assert_eq(c2.held + c3.held, 0);
    cr_assert_not(msgbudget_ask(&b, &a, 0), "a gives its share back");
    cr_assert_eq(msgbudget_next_lent(&b), &c2);
    cr_assert_eq(msgbudget_next_lent(&b), &c3, "6 and 3 fit in 10 together");
    cr_assert_null(msgbudget_next_lent(&b));
    cr_assert_eq(c2.held, 6);
    cr_assert_eq(c3.held, 3);
    cr_assert_eq(b.lent, 9);
}

Test(msgbudget, a_share_larger_than_the_budget_is_lent_alone)
{
    struct msgbudget b;
    struct msgbudget_claim big, small;
    start(&b, 4, &big, &small);
    cr_assert(msgbudget_ask(&b, &big, 10), "nothing else is held: a smaller budget after a "
                                           "reload must not strand it");
    cr_assert_not(msgbudget_ask(&b, &small, 1));
    cr_assert_null(msgbudget_next_lent(&b));
    msgbudget_ask(&b, &big, 0);
    cr_assert_eq(msgbudget_next_lent(&b), &small);
    cr_assert_eq(b.lent, 1);
}

Test(msgbudget, asking_again_gives_back_first_and_leaving_the_line_forgets_the_wish)
{
    struct msgbudget b;
    struct msgbudget_claim a, w;
    start(&b, 10, &a, &w);
    cr_assert(msgbudget_ask(&b, &a, 6));
    cr_assert(msgbudget_ask(&b, &a, 8), "its own 6 are given back before 8 are asked for");
    cr_assert_eq(b.lent, 8);
    cr_assert_not(msgbudget_ask(&b, &w, 5));
    cr_assert_not(msgbudget_ask(&b, &w, 0), "w no longer needs it (its client left, say)");
    cr_assert_eq(w.want, 0);
    msgbudget_ask(&b, &a, 0);
    cr_assert_null(msgbudget_next_lent(&b));
    cr_assert_eq(b.lent, 0);
}

Test(msgbudget, random_asks_never_lend_past_the_total_nor_lose_a_byte)
{
    enum { N = 16, ROUNDS = 100000 };
    struct msgbudget b;
    struct msgbudget_claim c[N];
    msgbudget_init(&b, 100);
    for (int i = 0; i < N; i++)
        msgbudget_claim_init(&c[i]);
    srand(7);
    for (int r = 0; r < ROUNDS; r++) {
        int i = rand() % N;
        size_t want = rand() % 3 == 0 ? 0 : (size_t)(rand() % 120 + 1); /* some past 100 */
        msgbudget_ask(&b, &c[i], want);
        while (msgbudget_next_lent(&b))
            ;
        size_t held = 0;
        int holders = 0, waiters = 0;
        for (int j = 0; j < N; j++) {
            held += c[j].held;
            holders += c[j].held > 0;
            waiters += c[j].want > 0;
            cr_assert(c[j].held == 0 || c[j].want == 0, "a claim holds or waits, not both");
        }
        cr_assert_eq(held, b.lent, "round %d: every lent byte is held by a claim", r);
        cr_assert_eq((size_t)waiters, b.n_waiting, "round %d: the count of those in line", r);
        cr_assert(b.lent <= b.total || holders == 1, "round %d: %zu lent of %zu", r, b.lent,
                  b.total);
        if (waiters) /* the oldest waiter does not fit: else it would have been lent */
            cr_assert(holders > 0, "round %d: a claim waits while nothing is held", r);
    }
}

Test(msgbudget, a_larger_budget_after_a_reload_lets_waiting_shares_in)
{
    struct msgbudget b;
    struct msgbudget_claim a, w;
    start(&b, 10, &a, &w);
    cr_assert(msgbudget_ask(&b, &a, 8));
    cr_assert_not(msgbudget_ask(&b, &w, 8));
    msgbudget_resize(&b, 16);
    cr_assert_eq(msgbudget_next_lent(&b), &w);
    msgbudget_resize(&b, 4); /* smaller than what is lent: nothing more until it is back */
    msgbudget_ask(&b, &a, 0);
    cr_assert_not(msgbudget_ask(&b, &a, 1), "8 lent of 4");
    msgbudget_ask(&b, &w, 0);
    cr_assert_eq(msgbudget_next_lent(&b), &a);
}
