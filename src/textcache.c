/* textcache.c: hash chains plus an LRU list; each entry holds its value, then its text. */
#include "textcache.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hashkey.h"
#include "list.h"

struct entry {
    struct list lru;
    struct entry *next; /* hash chain */
    uint64_t key, hash;
    size_t len;
    unsigned char data[]; /* value_size bytes of value, then the text */
};

struct textcache {
    struct entry **buckets;
    size_t n_buckets, n, max, value_size;
    struct list lru;    /* least recently used first */
    struct entry *last; /* the entry found or put last: tried first, without hashing */
};

/* A hash of the key and the text, keyed with the process's secret (hashkey.h): texts a client
 * picks (its statements) cannot be made to share a chain and slow every lookup down. */
static uint64_t hash_of(uint64_t key, const char *s, size_t len)
{
    struct siphash h;
    hashkey_start(&h);
    siphash_u64(&h, key);
    siphash_bytes(&h, s, len);
    return siphash_end(&h);
}

struct textcache *textcache_new(size_t max_entries, size_t value_size)
{
    struct textcache *tc = calloc(1, sizeof(*tc));
    if (!tc)
        return NULL;
    tc->max = max_entries ? max_entries : 1;
    tc->value_size = (value_size + 15) & ~(size_t)15;
    tc->n_buckets = 64;
    while (tc->n_buckets < tc->max)
        tc->n_buckets *= 2;
    if (!(tc->buckets = calloc(tc->n_buckets, sizeof(*tc->buckets)))) {
        free(tc);
        return NULL;
    }
    list_init(&tc->lru);
    return tc;
}

static struct entry **chain_of(struct textcache *tc, uint64_t hash)
{
    return &tc->buckets[hash & (tc->n_buckets - 1)];
}

static void evict(struct textcache *tc, struct entry *e)
{
    struct entry **p = chain_of(tc, e->hash);
    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
    list_del(&e->lru);
    if (tc->last == e)
        tc->last = NULL;
    free(e);
    tc->n--;
}

void textcache_clear(struct textcache *tc)
{
    while (!list_empty(&tc->lru))
        evict(tc, list_entry(tc->lru.next, struct entry, lru));
}

void textcache_free(struct textcache *tc)
{
    if (!tc)
        return;
    textcache_clear(tc);
    free(tc->buckets);
    free(tc);
}

/* Does e hold (key, text[0..len))? */
static bool holds(const struct textcache *tc, const struct entry *e, uint64_t key, const char *text,
                  size_t len)
{
    return e->key == key && e->len == len && memcmp(e->data + tc->value_size, text, len) == 0;
}

/* e, found for a get: now the most recently used, and the one tried first next time. */
static void *found(struct textcache *tc, struct entry *e)
{
    list_del(&e->lru);
    list_append(&tc->lru, &e->lru);
    tc->last = e;
    return e->data;
}

void *textcache_get(struct textcache *tc, uint64_t key, const char *text, size_t len)
{
    /* a run of gets for one text (the table of the statement a client repeats) costs a
     * compare, not a SipHash of the text */
    if (tc->last && holds(tc, tc->last, key, text, len))
        return found(tc, tc->last);
    uint64_t h = hash_of(key, text, len);
    for (struct entry *e = *chain_of(tc, h); e; e = e->next)
        if (e->hash == h && holds(tc, e, key, text, len))
            return found(tc, e);
    return NULL;
}

void *textcache_put(struct textcache *tc, uint64_t key, const char *text, size_t len)
{
    struct entry *e = calloc(1, sizeof(*e) + tc->value_size + len);
    if (!e)
        return NULL;
    if (tc->n >= tc->max)
        evict(tc, list_entry(tc->lru.next, struct entry, lru));
    e->key = key;
    e->hash = hash_of(key, text, len);
    e->len = len;
    memcpy(e->data + tc->value_size, text, len);
    e->next = *chain_of(tc, e->hash);
    *chain_of(tc, e->hash) = e;
    list_append(&tc->lru, &e->lru);
    tc->n++;
    return e->data;
}
