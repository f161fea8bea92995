/* buf.c: growable byte buffer for building wire messages; bounded reader for parsing them. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

/* Larger than any message lakeproxy builds itself; relayed messages never go through a buf. */

void buf_init(struct buf *b)
{
    memset(b, 0, sizeof(*b));
}

void buf_free(struct buf *b)
{
    free(b->data);
    buf_init(b);
}

void buf_secure_free(struct buf *b)
{
    if (b->data)
        explicit_bzero(b->data, b->cap);
    buf_free(b);
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    b->msg_start = 0;
    b->failed = false;
}

/* Makes room for n more bytes; false (and failed set) when it cannot. */
static bool buf_reserve(struct buf *b, size_t n)
{
    if (b->failed)
        return false;
    if (n > BUF_MAX - b->len) {
        b->failed = true;
        return false;
    }
    if (b->len + n <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void buf_put_bytes_grow(struct buf *b, const void *p, size_t n)
{
    if (n == 0 || !buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void buf_put_u8(struct buf *b, uint8_t v)
{
    buf_put_bytes(b, &v, 1);
}

void buf_put_u16(struct buf *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    buf_put_bytes(b, x, 2);
}

void buf_put_u32(struct buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    buf_put_bytes(b, x, 4);
}

void buf_put_str(struct buf *b, const char *s)
{
    buf_put_bytes(b, s, strlen(s) + 1);
}

void buf_msg_start(struct buf *b, uint8_t type)
{
    if (type)
        buf_put_u8(b, type);
    b->msg_start = b->len;
    buf_put_u32(b, 0);
}

void buf_msg_finish(struct buf *b)
{
    if (b->failed)
        return;
    size_t n = b->len - b->msg_start;
    if (n > INT32_MAX) {
        b->failed = true;
        return;
    }
    uint8_t *p = b->data + b->msg_start;
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
}

void rd_init(struct rd *r, const void *p, size_t n)
{
    r->p = p;
    r->left = n;
    r->failed = false;
}

bool rd_str(struct rd *r, const char **out)
{
    if (r->failed)
        return false;
    const uint8_t *nul = memchr(r->p, 0, r->left);
    if (!nul) {
        r->failed = true;
        return false;
    }
    *out = (const char *)r->p;
    size_t n = (size_t)(nul - r->p) + 1;
    r->p += n;
    r->left -= n;
    return true;
}
