/* sqlkey.h: a cheap lexical key for SQL text that ignores literal values, so that the
 * statistics of "SELECT ... WHERE id = 1" and "... id = 2" share one cache entry without a
 * parse. Only a cache key for statistics: the fingerprint and normalised text that are logged
 * come from the real parser. Pure: no I/O. */
#ifndef LAKEPROXY_SQLKEY_H
#define LAKEPROXY_SQLKEY_H

#include <stdint.h>

/* A 64-bit key of sql with numeric and string constants (quoted, E'', B'', X'', U&'',
 * dollar-quoted) replaced by one placeholder and runs of white space collapsed. Texts that
 * differ only in those constants share a key. */
uint64_t sqlkey(const char *sql);

/* sqlkey with a secret seed: the same text gives the same key under one seed, and two texts
 * with different keys under one seed cannot be made to collide without knowing it (collisions
 * worked out in advance for sqlkey do not carry over). Not a cryptographic MAC. */
uint64_t sqlkey_seeded(const char *sql, uint64_t seed);

#endif
