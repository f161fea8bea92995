/* test_monotime.c: the clock read once per batch: inside a batch every reading is the first,
 * outside one each reading is fresh, and nested batches end with the outermost. */
#include <criterion/criterion.h>
#include <time.h>

#include "monotime.h"

/* Sleeps 2 ms: longer than the clock's resolution, so two fresh readings differ. */
static void pause_2ms(void)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 2000000};
    nanosleep(&ts, NULL);
}

Test(monotime, a_batch_shares_one_reading)
{
    monotime_hold();
    int64_t first = monotime_us();
    pause_2ms();
    cr_expect_eq(monotime_us(), first, "a second reading in the batch is the first");
    cr_expect_eq(monotime_ms(), first / 1000);
    monotime_release();
    int64_t after = monotime_us();
    cr_expect_geq(after - first, 2000, "after the batch the clock is read again");
}

Test(monotime, outside_a_batch_each_reading_is_fresh)
{
    int64_t a = monotime_us();
    pause_2ms();
    cr_expect_geq(monotime_us() - a, 2000);
}

Test(monotime, nested_batches_end_with_the_outermost)
{
    monotime_hold();
    int64_t first = monotime_us();
    monotime_hold();
    monotime_release(); /* the inner one: still in the outer batch */
    pause_2ms();
    cr_expect_eq(monotime_us(), first);
    monotime_release();
    pause_2ms();
    monotime_hold(); /* a new batch reads the clock afresh */
    cr_expect_geq(monotime_us() - first, 4000);
    monotime_release();
}
