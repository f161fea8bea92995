/* test_stopsig.c: a stop signal held back by a starting takeover survives the event loop's
 * setup, which ignores SIGTERM before installing its own handler. */
#include <criterion/criterion.h>
#include <time.h>

#include "stopsig.h"

/* Takes sig if it is pending (blocked meanwhile): true when it was. */
static bool take_pending(int sig)
{
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    struct timespec now = {0, 0};
    return sigtimedwait(&one, NULL, &now) == sig;
}

/* Runs with the stop signals blocked, SIGTERM's action restored after. */
static void with_stops_blocked(void (*body)(void))
{
    sigset_t stops = stopsig_set(), before;
    struct sigaction old;
    sigaction(SIGTERM, NULL, &old);
    pthread_sigmask(SIG_BLOCK, &stops, &before);
    body();
    while (take_pending(SIGTERM) || take_pending(SIGINT))
        ;
    sigaction(SIGTERM, &old, NULL);
    pthread_sigmask(SIG_SETMASK, &before, NULL);
}

static void held_sigterm_survives(void)
{
    raise(SIGTERM);
    cr_assert_eq(stopsig_pending(), SIGTERM, "a held-back SIGTERM is pending");
    stopsig_ignore(SIGTERM);
    cr_expect_eq(stopsig_pending(), SIGTERM, "ignoring SIGTERM kept the held-back one");
}

Test(stopsig, a_held_back_sigterm_is_still_pending_after_it_is_ignored)
{
    with_stops_blocked(held_sigterm_survives);
}

static void nothing_held(void)
{
    cr_assert_eq(stopsig_pending(), 0);
    stopsig_ignore(SIGTERM);
    cr_expect_eq(stopsig_pending(), 0, "no SIGTERM was made up");
    raise(SIGTERM); /* (ignored and blocked: stays pending on Linux, is not acted on) */
    cr_expect_eq(stopsig_pending(), SIGTERM);
}

Test(stopsig, ignoring_sigterm_makes_up_no_stop_and_one_sent_after_is_seen)
{
    with_stops_blocked(nothing_held);
}

static void sigint_first(void)
{
    raise(SIGTERM);
    raise(SIGINT);
    cr_expect_eq(stopsig_pending(), SIGINT, "SIGINT (exit at once) is named before SIGTERM");
}

Test(stopsig, sigint_is_named_before_sigterm)
{
    with_stops_blocked(sigint_first);
}
