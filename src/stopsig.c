/* stopsig.c: the stop signals a starting takeover holds back (stopsig.h). */
#include "stopsig.h"

#include <stdbool.h>

sigset_t stopsig_set(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    return set;
}

/* Whether sig is pending for this thread or the process. */
static bool is_pending(int sig)
{
    sigset_t pending;
    return sigpending(&pending) == 0 && sigismember(&pending, sig) == 1;
}

int stopsig_pending(void)
{
    return is_pending(SIGINT) ? SIGINT : is_pending(SIGTERM) ? SIGTERM : 0;
}

/* Raising it again while it is blocked keeps it pending (Linux never discards a blocked
 * signal on generation, whatever its action), for the handler installed next to take. */
void stopsig_ignore(int sig)
{
    bool held = is_pending(sig);
    signal(sig, SIG_IGN);
    if (held)
        raise(sig);
}
