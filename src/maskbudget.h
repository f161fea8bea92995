/* maskbudget.h: each user's budget of masked-column tests, a token bucket refilled at
 * masking.max_tests_per_second and holding at most twice that. Pure: the caller gives the
 * time. */
#ifndef LAKEPROXY_MASKBUDGET_H
#define LAKEPROXY_MASKBUDGET_H

#include <stdbool.h>
#include <stdint.h>

/* The users' buckets (made on first use; free() frees them). */
struct mask_buckets;

/* Charges user tests at now_ms against rate per second: false when the budget does not hold
 * them, or when the table is full of users who have all used theirs in the last 2 s (it never
 * starts over, which would hand every user a full budget). */
bool maskbudget_charge(struct mask_buckets **table, const char *user, int tests, int rate,
                       int64_t now_ms);

#endif
