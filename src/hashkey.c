/* hashkey.c: the process's secret for keyed hashes of names clients pick. */
#include "hashkey.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>

static uint64_t key[2];
static pthread_once_t drawn = PTHREAD_ONCE_INIT;

/* Without random bytes lakeproxy cannot keep its promises (cancel keys, SCRAM nonces use the
 * same source): it stops rather than hash with a secret anyone could know. */
static void draw(void)
{
    if (RAND_bytes((unsigned char *)key, sizeof(key)) != 1)
        abort();
}

void hashkey_get(uint64_t *k0, uint64_t *k1)
{
    pthread_once(&drawn, draw);
    *k0 = key[0];
    *k1 = key[1];
}

void hashkey_start(struct siphash *h)
{
    pthread_once(&drawn, draw);
    siphash_init(h, key[0], key[1]);
}
