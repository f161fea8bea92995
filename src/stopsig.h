/* stopsig.h: the stop signals (SIGTERM, SIGINT) a starting takeover holds back until the
 * handover is done, and ignoring a signal without losing one held back. */
#ifndef LAKEPROXY_STOPSIG_H
#define LAKEPROXY_STOPSIG_H

#include <signal.h>

/* SIGTERM and SIGINT: blocked by a starting takeover (main.c) until it says DONE. */
sigset_t stopsig_set(void);

/* The stop signal (SIGINT, else SIGTERM) held back and pending, 0 if none: a stop asked for
 * before DONE abandons the takeover, and a start making thousands of SCRAM verifiers gives
 * up on one rather than finish first. */
int stopsig_pending(void);

/* Sets sig's action to SIG_IGN, keeping it pending if it was held back and pending (setting
 * SIG_IGN discards a pending signal: a SIGTERM sent to a starting takeover before the event
 * loop's handlers were in place would be lost, and the takeover completed). */
void stopsig_ignore(int sig);

#endif
