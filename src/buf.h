/* buf.h: the growable byte buffer every wire message is built in, and the bounded reader
 * every wire message is parsed with. Nothing else touches raw offsets or trusts a length. */
#ifndef LAKEPROXY_BUF_H
#define LAKEPROXY_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A writer: put_* calls never fail loudly; an allocation failure or an over-limit size sets
 * `failed`, checked once before the bytes are sent. */
struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t msg_start; /* offset of the message being built (for its length field) */
    bool failed;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
/* Wipes the bytes (a password message, say) before freeing them. */
void buf_secure_free(struct buf *b);
void buf_reset(struct buf *b);
void buf_put_u8(struct buf *b, uint8_t v);
void buf_put_u16(struct buf *b, uint16_t v);
void buf_put_u32(struct buf *b, uint32_t v);
/* The most a buf holds; past it, put_* set failed. */
#define BUF_MAX (1u << 30)

/* buf_put_bytes when it must grow the buffer (or fails). */
void buf_put_bytes_grow(struct buf *b, const void *p, size_t n);

/* Inline: the rewriters put a few bytes at a time, per column of every row. */
static inline void buf_put_bytes(struct buf *b, const void *p, size_t n)
{
    if (!b->failed && n <= b->cap - b->len && b->len + n <= BUF_MAX) {
        if (n)
            memcpy(b->data + b->len, p, n);
        b->len += n;
        return;
    }
    buf_put_bytes_grow(b, p, n);
}

/* Puts s and its terminating NUL. */
void buf_put_str(struct buf *b, const char *s);

/* Starts a typed message ('Q', 'R', ...); type 0 starts an untyped startup-style packet. */
void buf_msg_start(struct buf *b, uint8_t type);
/* Writes the length field of the message begun by buf_msg_start. */
void buf_msg_finish(struct buf *b);

/* A reader over one message body: each get fails (returns false) on short input and leaves
 * the reader marked failed, so a parser can check once at the end. */
struct rd {
    const uint8_t *p;
    size_t left;
    bool failed;
};

void rd_init(struct rd *r, const void *p, size_t n);

/* Points *out at the next n bytes (no copy). The fixed-size reads are inline: parsers call
 * them per field of every message. */
static inline bool rd_bytes(struct rd *r, size_t n, const uint8_t **out)
{
    if (r->failed || n > r->left) {
        r->failed = true;
        return false;
    }
    *out = r->p;
    r->p += n;
    r->left -= n;
    return true;
}

static inline bool rd_u8(struct rd *r, uint8_t *out)
{
    const uint8_t *p;
    if (!rd_bytes(r, 1, &p))
        return false;
    *out = p[0];
    return true;
}

static inline bool rd_u16(struct rd *r, uint16_t *out)
{
    const uint8_t *p;
    if (!rd_bytes(r, 2, &p))
        return false;
    *out = (uint16_t)((p[0] << 8) | p[1]);
    return true;
}

static inline bool rd_u32(struct rd *r, uint32_t *out)
{
    const uint8_t *p;
    if (!rd_bytes(r, 4, &p))
        return false;
    *out = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    return true;
}

static inline bool rd_i32(struct rd *r, int32_t *out)
{
    uint32_t u;
    if (!rd_u32(r, &u))
        return false;
    *out = (int32_t)u;
    return true;
}
/* Points *out at a NUL-terminated string inside the message; fails without a NUL. */
bool rd_str(struct rd *r, const char **out);

#endif
