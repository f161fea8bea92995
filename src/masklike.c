/* masklike.c: the prefix rule for LIKE patterns on masked columns, and its check of bound
 * parameter values. */
#include "masklike.h"

#include <string.h>

#include "buf.h"

enum { OID_TEXT = 25, OID_VARCHAR = 1043 };

bool masklike_is_prefix(const char *p, size_t n, char escape)
{
    for (size_t i = 0; i < n; i++) {
        if (escape && p[i] == escape) {
            if (++i == n)
                return false; /* (PostgreSQL refuses a pattern ending with its escape) */
        } else if (p[i] == '_') {
            return false;
        } else if (p[i] == '%') {
            while (i < n && p[i] == '%')
                i++;
            return i == n;
        }
    }
    return true;
}

bool masklike_has(const struct masklike *l, unsigned k)
{
    for (unsigned i = 0; i < l->n && i < MASKLIKE_PARAMS; i++)
        if (l->param[i] == k)
            return true;
    return false;
}

bool masklike_add(struct masklike *l, unsigned k)
{
    if (masklike_has(l, k))
        return true;
    if (l->n >= MASKLIKE_PARAMS)
        return false;
    l->param[l->n++] = (uint16_t)k;
    return true;
}

/* Reads the head of a Parse body after its name, rest[0..len): *text_len, its text's bytes
 * with the NUL, and *n, how many parameter types follow (r is left at the first); false when
 * malformed. */
static bool read_parse_types(const uint8_t *rest, size_t len, struct rd *r, size_t *text_len,
                             uint16_t *n)
{
    const uint8_t *nul = memchr(rest, 0, len);
    if (!nul)
        return false;
    *text_len = (size_t)(nul - rest) + 1;
    rd_init(r, rest + *text_len, len - *text_len);
    return rd_u16(r, n);
}

/* Was parameter k (from 1) declared text or varchar, or left to the server to infer (as text,
 * compared with a text column) by parse_rest? */
static bool declared_text(const uint8_t *parse_rest, size_t parse_len, unsigned k)
{
    if (!parse_rest)
        return true;
    struct rd r;
    size_t text_len;
    uint16_t n;
    uint32_t oid = 0;
    if (!read_parse_types(parse_rest, parse_len, &r, &text_len, &n))
        return false;
    for (unsigned i = 1; i <= n && i <= k; i++)
        if (!rd_u32(&r, &oid))
            return false;
    return k > n || oid == 0 || oid == OID_TEXT || oid == OID_VARCHAR;
}

bool masklike_declare_text(const struct masklike *l, const uint8_t *rest, size_t len,
                           struct buf *out)
{
    struct rd r;
    size_t text_len;
    uint16_t n;
    if (l->n == 0 || !read_parse_types(rest, len, &r, &text_len, &n) || r.left != 4 * (size_t)n)
        return false;
    unsigned want = n; /* every noted parameter gets a declared type */
    for (unsigned i = 0; i < l->n && i < MASKLIKE_PARAMS; i++)
        if (l->param[i] > want)
            want = l->param[i];
    bool changed = want > n;
    buf_init(out);
    buf_put_bytes(out, rest, text_len);
    buf_put_u16(out, (uint16_t)want);
    for (unsigned k = 1; k <= want; k++) {
        uint32_t oid = 0;
        if (k <= n)
            rd_u32(&r, &oid);
        if (oid == 0 && masklike_has(l, k)) {
            oid = OID_TEXT;
            changed = true;
        }
        buf_put_u32(out, oid);
    }
    if (!changed)
        buf_free(out);
    return changed;
}

bool masklike_binds_ok(const struct masklike *l, const uint8_t *parse_rest, size_t parse_len,
                       const uint8_t *bind_rest, size_t bind_len)
{
    struct rd r;
    rd_init(&r, bind_rest, bind_len);
    uint16_t n_formats, n_params;
    if (!rd_u16(&r, &n_formats) || !rd_bytes(&r, 2 * (size_t)n_formats, &(const uint8_t *){0}) ||
        !rd_u16(&r, &n_params))
        return false;
    for (unsigned k = 1; k <= n_params; k++) { /* (text and binary text are the same bytes) */
        int32_t len;
        const uint8_t *value = NULL;
        if (!rd_i32(&r, &len) || (len > 0 && !rd_bytes(&r, (size_t)len, &value)))
            return false;
        if (masklike_has(l, k) &&
            (!declared_text(parse_rest, parse_len, k) ||
             (len > 0 && !masklike_is_prefix((const char *)value, (size_t)len, '\\'))))
            return false;
    }
    return true;
}
