/* monotime.h: the monotonic clock, read at most once per batch of work. While a batch is held
 * (one read from a socket and everything it sets off), every reading is the batch's first:
 * the messages of one read arrived together, so they share one arrival time, and a query's
 * figures cost one clock read instead of several. Outside a batch each call reads the clock. */
#ifndef LAKEPROXY_MONOTIME_H
#define LAKEPROXY_MONOTIME_H

#include <stdint.h>

/* Microseconds of CLOCK_MONOTONIC. */
int64_t monotime_us(void);

/* Milliseconds of CLOCK_MONOTONIC (monotime_us / 1000). */
int64_t monotime_ms(void);

/* Starts a batch (batches nest: the outermost one counts). */
void monotime_hold(void);

/* Ends the batch monotime_hold started: the next reading outside a batch is fresh. */
void monotime_release(void);

#endif
