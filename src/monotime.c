/* monotime.c: the monotonic clock with a per-thread cache held for one batch of work. */
#include "monotime.h"

#include <stdbool.h>
#include <time.h>

/* Per thread: each worker runs its own event loop. */
static _Thread_local struct {
    unsigned depth; /* monotime_hold calls not yet released */
    bool read;      /* now_us holds this batch's reading */
    int64_t now_us;
} batch;

static int64_t read_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t monotime_us(void)
{
    if (batch.depth == 0)
        return read_clock_us();
    if (!batch.read) {
        batch.now_us = read_clock_us();
        batch.read = true;
    }
    return batch.now_us;
}

int64_t monotime_ms(void)
{
    return monotime_us() / 1000;
}

void monotime_hold(void)
{
    batch.depth++;
}

void monotime_release(void)
{
    if (batch.depth > 0 && --batch.depth == 0)
        batch.read = false;
}
