/* mask.h: column masking functions and the DataRow rewriter. Pure: no I/O, no policy look-up.
 * A masking function turns one result value (as the client would have received it, in text
 * or binary format) into its masked replacement, or NULL; mask_datarow rewrites one DataRow
 * message by a per-column plan, fixing every length. */
#ifndef LAKEPROXY_MASK_H
#define LAKEPROXY_MASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum mask_kind {
    MASK_REDACT,  /* redact or redact('text'): fixed text (default "****") */
    MASK_NULL,    /* null: SQL NULL */
    MASK_PARTIAL, /* partial(prefix, suffix[, 'fill']): first prefix and last suffix characters
                     kept around fill (default "****"); a value of at most prefix + suffix
                     characters becomes fill alone */
    MASK_EMAIL,   /* email: first character of the local part, "***", '@' and the domain
                     ("j***@example.com"); a value without '@' becomes "****" */
    MASK_LAST4,   /* last4: "****" and the last four characters; four or fewer: "****" */
    MASK_HASH,    /* hash: hex HMAC-SHA-256 of the value under the policy's key (64 chars) */
    MASK_FIXED,   /* fixed('value'): that text */
};

/* One parsed masking function, e.g. from "partial(1, 2, '*')". */
struct mask_fn {
    enum mask_kind kind;
    int prefix, suffix; /* partial */
    char *text;         /* redact, fixed, partial's fill: owned, NULL for the default */
};

/* How much of a value f hides: 3 for nothing shown (redact, null, fixed), 2 for equality
 * shown (hash), 1 for parts shown (partial, email, last4). Where several rules reach one
 * column, the one that hides most applies. */
#define MASK_STRENGTH_ALL 3
int mask_strength(const struct mask_fn *f);
/* Do a and b mask every value alike (same kind, numbers and text)? */
bool mask_fn_same(const struct mask_fn *a, const struct mask_fn *b);

/* Parses spec ("email", "partial(2,2)", "fixed('n/a')", "redact('x')" ...) into out. On
 * failure returns false with err naming what is wrong, and the offset within spec it is at in
 * *at (for file:line:column). Strings are single-quoted, '' for a quote; numbers are 0..1000. */
bool mask_fn_parse(const char *spec, struct mask_fn *out, size_t *at, char *err, size_t errsz);
void mask_fn_free(struct mask_fn *f);

/* How characters are counted in the client's encoding: UTF-8 code points, single bytes, or
 * not at all (any other multi-byte encoding: functions that keep characters keep none). */
enum mask_charset { MASK_CHARS_UTF8, MASK_CHARS_BYTES, MASK_CHARS_UNKNOWN };

/* The secret key of MASK_HASH. */
struct mask_key {
    const uint8_t *bytes;
    size_t len;
};

/* What class of type a column is, from its type OID: text-like values are masked by the
 * function; others get a type-correct stand-in whatever the function (numbers: 0, bool:
 * false, anything else: NULL), except null (always NULL) and fixed (its text, text format
 * only; NULL in binary). */
enum mask_type_class {
    MASK_TYPE_TEXT,
    MASK_TYPE_INT2,
    MASK_TYPE_INT4,
    MASK_TYPE_INT8,
    MASK_TYPE_FLOAT4,
    MASK_TYPE_FLOAT8,
    MASK_TYPE_NUMERIC,
    MASK_TYPE_BOOL,
    MASK_TYPE_OTHER
};
enum mask_type_class mask_type_class(uint32_t type_oid);

/* Masks one non-NULL value of a column of class tc in format (0 text, 1 binary): appends the
 * replacement's bytes to out and returns true, or returns false for NULL. */
bool mask_value(const struct mask_fn *f, const struct mask_key *key, enum mask_charset cs,
                enum mask_type_class tc, int16_t format, const uint8_t *val, size_t len,
                struct buf *out);

/* What to do with each column of a result. */
struct mask_col {
    const struct mask_fn *fn; /* NULL: pass the value through unchanged */
    enum mask_type_class tc;
    int16_t format; /* 0 text, 1 binary */
};

struct mask_plan {
    struct mask_col *cols;
    uint16_t n_cols;
    uint16_t n_masked; /* columns with a function: 0 means rows pass untouched */
    enum mask_charset cs;
    struct mask_key key;
};

/* Rewrites one DataRow body (len bytes after the length word) by plan into out as a whole
 * 'D' message (type, length, body). False, with *err, when the body is malformed or its column
 * count differs from the plan's: the caller must not forward the original. */
bool mask_datarow(const struct mask_plan *plan, const uint8_t *body, size_t len, struct buf *out,
                  const char **err);

#endif
