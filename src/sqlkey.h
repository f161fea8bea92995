/* sqlkey.h: a cheap lexical key for SQL text that ignores literal values, so that the
 * statistics of "SELECT ... WHERE id = 1" and "... id = 2" share one cache entry without a
 * parse. Only a cache key for statistics: the fingerprint and normalised text that are logged
 * come from the real parser. Pure: no I/O. */
#ifndef LAKEPROXY_SQLKEY_H
#define LAKEPROXY_SQLKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A 64-bit key of sql (sqlkey_seeded under an all-zero secret: not for keys an attacker must
 * not be able to match) with numeric and string constants (quoted, E'', B'', X'', U&'',
 * dollar-quoted) replaced by one placeholder and runs of white space collapsed. Texts that
 * differ only in those constants share a key. */
uint64_t sqlkey(const char *sql);

/* A 128-bit secret for sqlkey_seeded, drawn at random once per process. */
struct sqlkey_secret {
    uint64_t k0, k1;
};

/* sqlkey under a secret: the same text gives the same key under one secret, and without the
 * secret no one can find a text that shares another's key (other than by constants and white
 * space) faster than by guessing: the normalised text is hashed with SipHash-1-3 keyed with it. */
uint64_t sqlkey_seeded(const char *sql, const struct sqlkey_secret *secret);

/* A memo of the keys of texts seen lately, so that a text seen before with other constants
 * (the same statement run again) is keyed by comparing it with the one seen instead of hashing
 * it: "SELECT ... WHERE id = 7" matches "... id = 5" where its bytes other than constants are
 * the same. Bounded: n_sets sets (a power of two, at most 65,536) of 4 texts of up to 1 KiB, each
 * with at most 8 constants and none in its first 24 bytes (other texts are keyed as sqlkey_seeded
 * keys them, not kept). */
struct sqlkey_memo;

/* What the caller wants known of a text besides its key (bits of its own), found once per
 * shape where it can be: the memo keeps them for a text whose constants are all numbers, and
 * gives them to every text that matches it (others are asked afresh). So facts_of must give one
 * answer for all such texts: it may read the bytes outside the numbers, and of a number's first and
 * last byte only whether each is a digit (as a word boundary does). Finding words of two or more
 * letters and '_' anywhere, whole or not, does: a number is digits and '.', with perhaps an 'e' or
 * 'E' between a digit or '.' and a digit or sign, so no such word can overlap one. */
typedef uint32_t (*sqlkey_facts_fn)(const char *sql);

/* NULL when out of memory. facts_of may be NULL (no facts kept). */
struct sqlkey_memo *sqlkey_memo_new(const struct sqlkey_secret *secret, size_t n_sets,
                                    sqlkey_facts_fn facts_of);
void sqlkey_memo_free(struct sqlkey_memo *m);

/* What the memo says of a text: its key (sqlkey_seeded under the memo's secret) and, when
 * has_facts (the memo has a facts_of), its facts (facts_of's answer). */
struct sqlkey_shape {
    uint64_t key;
    uint32_t facts;
    bool has_facts;
};

/* sql's shape, from the memo when it holds a match (else worked out, and kept when it fits). */
struct sqlkey_shape sqlkey_memo_shape(struct sqlkey_memo *m, const char *sql);

/* sqlkey_memo_shape's key alone. */
uint64_t sqlkey_memo_key(struct sqlkey_memo *m, const char *sql);

/* How many keys came from the memo. */
uint64_t sqlkey_memo_hits(const struct sqlkey_memo *m);

#endif
