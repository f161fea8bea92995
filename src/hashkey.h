/* hashkey.h: the process's secret for keyed hashes (siphash.h) of names clients pick, drawn
 * from the kernel once, on first use, by whichever thread comes first. */
#ifndef LAKEPROXY_HASHKEY_H
#define LAKEPROXY_HASHKEY_H

#include <stdint.h>

#include "siphash.h"

/* The secret's two halves. */
void hashkey_get(uint64_t *k0, uint64_t *k1);

/* A SipHash state keyed with the secret, to feed and end. */
void hashkey_start(struct siphash *h);

#endif
