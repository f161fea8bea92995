/* maskbudget.c: each user's budget of masked-column tests (masking.max_tests_per_second). */
#include "maskbudget.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashkey.h"

/* Each user's budget of masked-column tests: a token bucket refilled at
 * masking.max_tests_per_second, holding at most twice that, so full again after 2 s unused. A
 * fixed table by user name, hashed with the process's secret. When it fills, the budgets that
 * are full again are dropped (that loses nothing); when none are, a new user is refused until
 * some are: the table never starts over, which would hand every user a full budget. */
#define MASK_BUCKETS 1024
#define MASK_REFILL_MS 2000

struct mask_bucket {
    char user[64];
    double tokens; /* < 0: full (not charged yet) */
    int64_t at_ms;
};

struct mask_buckets {
    struct mask_bucket b[MASK_BUCKETS];
    size_t n;
};

static size_t bucket_home(const char *user)
{
    struct siphash h;
    hashkey_start(&h);
    siphash_bytes(&h, user, strnlen(user, sizeof(((struct mask_bucket *)0)->user) - 1));
    return (size_t)(siphash_end(&h) % MASK_BUCKETS);
}

/* Where user's bucket is, or the free slot where it would go. */
static struct mask_bucket *bucket_slot(struct mask_buckets *mb, const char *user)
{
    size_t at = bucket_home(user);
    for (size_t i = 0; i < MASK_BUCKETS; i++, at = (at + 1) % MASK_BUCKETS) {
        struct mask_bucket *b = &mb->b[at];
        if (!b->user[0] || strncmp(b->user, user, sizeof(b->user) - 1) == 0)
            return b;
    }
    return NULL;
}

/* Drops the budgets that are full again by now, keeping the others where bucket_slot finds
 * them. */
static void drop_full_buckets(struct mask_buckets *mb, int64_t now)
{
    struct mask_bucket *keep = malloc(mb->n * sizeof(*keep));
    size_t n = 0;
    if (!keep)
        return;
    for (size_t i = 0; i < MASK_BUCKETS; i++) {
        const struct mask_bucket *b = &mb->b[i];
        if (b->user[0] && b->tokens >= 0 && now - b->at_ms < MASK_REFILL_MS)
            keep[n++] = *b;
    }
    memset(mb, 0, sizeof(*mb));
    for (size_t i = 0; i < n; i++)
        *bucket_slot(mb, keep[i].user) = keep[i];
    mb->n = n;
    free(keep);
}

/* user's bucket, made full on first sight; NULL when out of memory, or when the table holds
 * as many users as it may and every one of them has used its budget in the last 2 s. */
static struct mask_bucket *bucket_of(struct mask_buckets **table, const char *user, int64_t now)
{
    if (!*table && !(*table = calloc(1, sizeof(**table))))
        return NULL;
    struct mask_buckets *mb = *table;
    struct mask_bucket *b = bucket_slot(mb, user);
    if (b && b->user[0])
        return b;
    if (mb->n >= MASK_BUCKETS * 3 / 4) {
        drop_full_buckets(mb, now);
        if (mb->n >= MASK_BUCKETS * 3 / 4)
            return NULL;
        b = bucket_slot(mb, user);
    }
    snprintf(b->user, sizeof(b->user), "%s", user);
    b->tokens = -1;
    mb->n++;
    return b;
}

bool maskbudget_charge(struct mask_buckets **table, const char *user, int tests, int rate,
                       int64_t now_ms)
{
    if (tests <= 0 || rate <= 0)
        return true;
    struct mask_bucket *b = bucket_of(table, user, now_ms);
    if (!b)
        return false;
    double cap = 2.0 * rate;
    b->tokens = b->tokens < 0 ? cap : b->tokens + (double)(now_ms - b->at_ms) * rate / 1000.0;
    b->tokens = b->tokens > cap ? cap : b->tokens;
    b->at_ms = now_ms;
    if (b->tokens < tests)
        return false;
    b->tokens -= tests;
    return true;
}
