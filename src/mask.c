/* mask.c: masking functions (parsing a spec, masking one value) and the DataRow rewriter that
 * applies them column by column. Pure: every byte in and out goes through buf/rd. */
#include "mask.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MASK_DEFAULT_TEXT "****"
#define MASK_NUMBER_MAX 1000

/* ---- parsing a spec ---- */

struct mask_name {
    const char *name;
    enum mask_kind kind;
    const char *usage; /* the error for a wrong argument list */
};

static const struct mask_name mask_names[] = {
    {"redact", MASK_REDACT, "redact takes no arguments or ('text')"},
    {"null", MASK_NULL, "null takes no arguments"},
    {"partial", MASK_PARTIAL, "partial takes (prefix, suffix[, 'fill'])"},
    {"email", MASK_EMAIL, "email takes no arguments"},
    {"last4", MASK_LAST4, "last4 takes no arguments"},
    {"hash", MASK_HASH, "hash takes no arguments"},
    {"fixed", MASK_FIXED, "fixed takes ('text')"},
};

#define MASK_NAMES_HINT "(use redact, null, partial, email, last4, hash or fixed)"

struct parser {
    const char *s;
    size_t pos;
    size_t *at;
    char *err;
    size_t errsz;
};

/* Records an error at offset at of the spec; always returns false. */
static bool fail(struct parser *p, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(struct parser *p, size_t at, const char *fmt, ...)
{
    if (p->at)
        *p->at = at;
    if (p->err && p->errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, p->errsz, fmt, ap);
        va_end(ap);
    }
    return false;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static void skip_ws(struct parser *p)
{
    while (is_space(p->s[p->pos]))
        p->pos++;
}

/* Skips whitespace and consumes c, or fails with usage at what stands there instead. */
static bool expect(struct parser *p, char c, const char *usage)
{
    skip_ws(p);
    if (p->s[p->pos] != c)
        return fail(p, p->pos, "%s", usage);
    p->pos++;
    return true;
}

/* A decimal number 0..MASK_NUMBER_MAX; digits beyond the limit stop accumulating (no overflow). */
static bool parse_number(struct parser *p, int *out, const char *usage)
{
    skip_ws(p);
    size_t start = p->pos;
    long v = 0;
    while (p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        if (v <= MASK_NUMBER_MAX)
            v = v * 10 + (p->s[p->pos] - '0');
        p->pos++;
    }
    if (p->pos == start)
        return fail(p, start, "%s", usage);
    if (v > MASK_NUMBER_MAX)
        return fail(p, start, "number %.*s is out of range (0..%d)", (int)(p->pos - start),
                    p->s + start, MASK_NUMBER_MAX);
    *out = (int)v;
    return true;
}

/* A single-quoted string, '' standing for one quote, into a fresh allocation at *out. */
static bool parse_string(struct parser *p, char **out, const char *usage)
{
    skip_ws(p);
    size_t open = p->pos;
    if (p->s[open] != '\'')
        return fail(p, open, "%s", usage);
    size_t n = 0, i = open + 1;
    for (;; i++) {
        if (p->s[i] == '\0')
            return fail(p, open, "unterminated string");
        if (p->s[i] == '\'' && p->s[i + 1] != '\'')
            break;
        if (p->s[i] == '\'')
            i++;
        n++;
    }
    char *t = malloc(n + 1);
    if (!t)
        return fail(p, open, "out of memory");
    size_t k = 0;
    for (size_t j = open + 1; j < i; j++) {
        t[k++] = p->s[j];
        if (p->s[j] == '\'')
            j++;
    }
    t[k] = '\0';
    *out = t;
    p->pos = i + 1;
    return true;
}

/* "('text')" after redact or fixed. */
static bool parse_text_args(struct parser *p, const char *usage, char **text)
{
    return expect(p, '(', usage) && parse_string(p, text, usage) && expect(p, ')', usage);
}

/* "(prefix, suffix[, 'fill'])" after partial. */
static bool parse_partial_args(struct parser *p, const char *usage, struct mask_fn *out)
{
    if (!expect(p, '(', usage) || !parse_number(p, &out->prefix, usage) || !expect(p, ',', usage) ||
        !parse_number(p, &out->suffix, usage))
        return false;
    skip_ws(p);
    if (p->s[p->pos] == ',') {
        p->pos++;
        if (!parse_string(p, &out->text, usage))
            return false;
    }
    return expect(p, ')', usage);
}

/* The argument list (or its absence) that function n requires. */
static bool parse_args(struct parser *p, const struct mask_name *n, struct mask_fn *out)
{
    skip_ws(p);
    bool open = p->s[p->pos] == '(';
    switch (n->kind) {
    case MASK_REDACT: return !open || parse_text_args(p, n->usage, &out->text);
    case MASK_FIXED: return parse_text_args(p, n->usage, &out->text);
    case MASK_PARTIAL: return parse_partial_args(p, n->usage, out);
    default: return open ? fail(p, p->pos, "%s", n->usage) : true;
    }
}

/* The function name at the parser's position, or NULL after recording an error. */
static const struct mask_name *parse_name(struct parser *p)
{
    skip_ws(p);
    size_t start = p->pos;
    while (is_name_char(p->s[p->pos]))
        p->pos++;
    size_t n = p->pos - start;
    if (n == 0) {
        fail(p, start, "expected a masking function " MASK_NAMES_HINT);
        return NULL;
    }
    for (size_t i = 0; i < sizeof(mask_names) / sizeof(mask_names[0]); i++)
        if (strlen(mask_names[i].name) == n && memcmp(mask_names[i].name, p->s + start, n) == 0)
            return &mask_names[i];
    fail(p, start, "unknown masking function \"%.*s\" " MASK_NAMES_HINT, n > 40 ? 40 : (int)n,
         p->s + start);
    return NULL;
}

bool mask_fn_parse(const char *spec, struct mask_fn *out, size_t *at, char *err, size_t errsz)
{
    struct parser p = {.s = spec, .pos = 0, .at = at, .err = err, .errsz = errsz};
    memset(out, 0, sizeof(*out));
    const struct mask_name *n = parse_name(&p);
    if (!n)
        return false;
    out->kind = n->kind;
    if (!parse_args(&p, n, out))
        goto fail;
    skip_ws(&p);
    if (p.s[p.pos] != '\0') {
        fail(&p, p.pos, "unexpected \"%.20s\" after %s", p.s + p.pos, n->name);
        goto fail;
    }
    return true;
fail:
    mask_fn_free(out);
    return false;
}

void mask_fn_free(struct mask_fn *f)
{
    free(f->text);
    f->text = NULL;
}

/* ---- type classes ---- */

/* PostgreSQL's fixed type OIDs (pg_type.dat) of the classes with a masking stand-in. */
static const struct {
    uint32_t oid;
    enum mask_type_class tc;
} type_classes[] = {
    {25, MASK_TYPE_TEXT},      /* text */
    {1043, MASK_TYPE_TEXT},    /* varchar */
    {1042, MASK_TYPE_TEXT},    /* bpchar */
    {19, MASK_TYPE_TEXT},      /* name */
    {18, MASK_TYPE_TEXT},      /* "char" */
    {705, MASK_TYPE_TEXT},     /* unknown (an untyped literal) */
    {21, MASK_TYPE_INT2},      /* int2 */
    {23, MASK_TYPE_INT4},      /* int4 */
    {20, MASK_TYPE_INT8},      /* int8 */
    {700, MASK_TYPE_FLOAT4},   /* float4 */
    {701, MASK_TYPE_FLOAT8},   /* float8 */
    {1700, MASK_TYPE_NUMERIC}, /* numeric */
    {16, MASK_TYPE_BOOL},      /* bool */
};

enum mask_type_class mask_type_class(uint32_t type_oid)
{
    for (size_t i = 0; i < sizeof(type_classes) / sizeof(type_classes[0]); i++)
        if (type_classes[i].oid == type_oid)
            return type_classes[i].tc;
    return MASK_TYPE_OTHER;
}

/* ---- character counting ----
 * In UTF-8 a character is a byte that is not 10xxxxxx plus the continuation bytes after it
 * (stray continuation bytes at the very start ride along with the first character), so a cut
 * never splits one; in BYTES each byte is a character; in UNKNOWN nothing is counted. */

static bool char_start(enum mask_charset cs, uint8_t c)
{
    return cs == MASK_CHARS_BYTES || (c & 0xC0) != 0x80;
}

static size_t count_chars(enum mask_charset cs, const uint8_t *v, size_t len)
{
    if (cs == MASK_CHARS_BYTES)
        return len;
    if (cs != MASK_CHARS_UTF8)
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += char_start(cs, v[i]);
    return n;
}

/* Byte length of the first n characters of v (all of v when it has no more). */
static size_t head_bytes(enum mask_charset cs, const uint8_t *v, size_t len, size_t n)
{
    if (cs == MASK_CHARS_BYTES)
        return n < len ? n : len;
    if (n == 0)
        return 0;
    size_t seen = 0;
    for (size_t i = 0; i < len; i++)
        if (char_start(cs, v[i]) && seen++ == n)
            return i;
    return len;
}

/* Byte offset where the last n characters of v begin (n >= 1 and fewer than v holds). */
static size_t tail_start(enum mask_charset cs, const uint8_t *v, size_t len, size_t n)
{
    if (cs == MASK_CHARS_BYTES)
        return len - n;
    size_t i = len;
    while (i > 0 && n > 0)
        if (char_start(cs, v[--i]))
            n--;
    return i;
}

/* ---- masking one value ---- */

static void put_text(struct buf *out, const char *s)
{
    buf_put_bytes(out, s, strlen(s));
}

static void put_or_default(struct buf *out, const char *text)
{
    put_text(out, text ? text : MASK_DEFAULT_TEXT);
}

/* partial(p, s[, fill]): head and tail kept around fill, or fill alone for a short value. */
static void mask_partial(const struct mask_fn *f, enum mask_charset cs, const uint8_t *v,
                         size_t len, struct buf *out)
{
    size_t n = count_chars(cs, v, len);
    size_t p = (size_t)f->prefix, s = (size_t)f->suffix;
    if (p + s >= n) {
        put_or_default(out, f->text);
        return;
    }
    buf_put_bytes(out, v, head_bytes(cs, v, len, p));
    put_or_default(out, f->text);
    if (s > 0) {
        size_t t = tail_start(cs, v, len, s);
        buf_put_bytes(out, v + t, len - t);
    }
}

/* email: first character of the local part, "***@" and everything after the last '@'. */
static void mask_email(enum mask_charset cs, const uint8_t *v, size_t len, struct buf *out)
{
    const uint8_t *at = len ? memrchr(v, '@', len) : NULL;
    if (cs == MASK_CHARS_UNKNOWN || !at || v[0] == '@') {
        put_text(out, MASK_DEFAULT_TEXT);
        return;
    }
    size_t local = (size_t)(at - v);
    buf_put_bytes(out, v, head_bytes(cs, v, local, 1));
    put_text(out, "***@");
    buf_put_bytes(out, at + 1, len - local - 1);
}

/* last4: "****" and the last four characters; "****" alone for four or fewer. */
static void mask_last4(enum mask_charset cs, const uint8_t *v, size_t len, struct buf *out)
{
    put_text(out, MASK_DEFAULT_TEXT);
    if (count_chars(cs, v, len) <= 4)
        return;
    size_t t = tail_start(cs, v, len, 4);
    buf_put_bytes(out, v + t, len - t);
}

/* hash: lower-case hex HMAC-SHA-256 under key; false (NULL) without a key, never unkeyed. */
static bool mask_hash(const struct mask_key *key, const uint8_t *v, size_t len, struct buf *out)
{
    static const char hex[] = "0123456789abcdef";
    static const uint8_t empty[1];
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char txt[2 * EVP_MAX_MD_SIZE];
    if (!key || !key->bytes || key->len == 0 || key->len > INT32_MAX)
        return false;
    if (!HMAC(EVP_sha256(), key->bytes, (int)key->len, len ? v : empty, len, md, &mdlen))
        return false;
    for (unsigned int i = 0; i < mdlen; i++) {
        txt[2 * i] = hex[md[i] >> 4];
        txt[2 * i + 1] = hex[md[i] & 0xF];
    }
    buf_put_bytes(out, txt, 2 * (size_t)mdlen);
    return true;
}

/* A text-like value: the function itself. */
static bool mask_text(const struct mask_fn *f, const struct mask_key *key, enum mask_charset cs,
                      const uint8_t *v, size_t len, struct buf *out)
{
    switch (f->kind) {
    case MASK_REDACT: put_or_default(out, f->text); return true;
    case MASK_NULL: return false;
    case MASK_PARTIAL: mask_partial(f, cs, v, len, out); return true;
    case MASK_EMAIL: mask_email(cs, v, len, out); return true;
    case MASK_LAST4: mask_last4(cs, v, len, out); return true;
    case MASK_HASH: return mask_hash(key, v, len, out);
    case MASK_FIXED: put_or_default(out, f->text); return true;
    }
    return false;
}

/* Binary width of a zero of class tc (numeric's zero is ndigits, weight, sign, dscale all 0);
 * 0 for a class without one. */
static size_t binary_zero_width(enum mask_type_class tc)
{
    switch (tc) {
    case MASK_TYPE_INT2: return 2;
    case MASK_TYPE_INT4: return 4;
    case MASK_TYPE_INT8: return 8;
    case MASK_TYPE_FLOAT4: return 4;
    case MASK_TYPE_FLOAT8: return 8;
    case MASK_TYPE_NUMERIC: return 8;
    case MASK_TYPE_BOOL: return 1;
    default: return 0;
    }
}

/* A non-text value: the type's zero (false for bool), NULL where it has none. */
static bool put_type_zero(enum mask_type_class tc, int16_t format, struct buf *out)
{
    static const uint8_t zeros[8];
    size_t w = binary_zero_width(tc);
    if (w == 0)
        return false;
    if (format == 0)
        put_text(out, tc == MASK_TYPE_BOOL ? "f" : "0");
    else
        buf_put_bytes(out, zeros, w);
    return true;
}

bool mask_value(const struct mask_fn *f, const struct mask_key *key, enum mask_charset cs,
                enum mask_type_class tc, int16_t format, const uint8_t *val, size_t len,
                struct buf *out)
{
    if (tc == MASK_TYPE_TEXT)
        return mask_text(f, key, cs, val, len, out);
    if (f->kind == MASK_NULL)
        return false;
    if (f->kind == MASK_FIXED) {
        if (format != 0)
            return false;
        put_or_default(out, f->text);
        return true;
    }
    return put_type_zero(tc, format, out);
}

/* ---- DataRow ---- */

/* Overwrites the four bytes at off (a length word put earlier) with v, big-endian. */
static void patch_u32(struct buf *b, size_t off, uint32_t v)
{
    if (b->failed)
        return;
    b->data[off] = (uint8_t)(v >> 24);
    b->data[off + 1] = (uint8_t)(v >> 16);
    b->data[off + 2] = (uint8_t)(v >> 8);
    b->data[off + 3] = (uint8_t)v;
}

/* Appends one masked column: a length word fixed up after the value, or -1 for NULL. */
static void put_masked_col(const struct mask_plan *plan, const struct mask_col *c, const uint8_t *v,
                           size_t len, struct buf *out)
{
    size_t len_at = out->len;
    buf_put_u32(out, 0);
    size_t start = out->len;
    if (mask_value(c->fn, &plan->key, plan->cs, c->tc, c->format, v, len, out)) {
        patch_u32(out, len_at, (uint32_t)(out->len - start));
    } else if (!out->failed) {
        out->len = len_at;
        buf_put_u32(out, UINT32_MAX);
    }
}

/* Reads one column of r: its value at *v (length *n, -1 for NULL); false when malformed. */
static bool read_col(struct rd *r, int32_t *n, const uint8_t **v, const char **err)
{
    if (!rd_i32(r, n)) {
        *err = "DataRow truncated in a column length";
        return false;
    }
    if (*n == -1)
        return true;
    if (*n < 0) {
        *err = "DataRow has a negative column length";
        return false;
    }
    if (!rd_bytes(r, (size_t)*n, v)) {
        *err = "DataRow column length exceeds the message";
        return false;
    }
    return true;
}

bool mask_datarow(const struct mask_plan *plan, const uint8_t *body, size_t len, struct buf *out,
                  const char **err)
{
    struct rd r;
    uint16_t count;
    rd_init(&r, body, len);
    if (!rd_u16(&r, &count)) {
        *err = "DataRow too short for its column count";
        return false;
    }
    if (count != plan->n_cols) {
        *err = "DataRow column count differs from RowDescription";
        return false;
    }
    buf_msg_start(out, 'D');
    buf_put_u16(out, count);
    /* columns that stay as they are (NULLs included) are copied in runs, length words and
     * all, straight from the server's message */
    const uint8_t *run = r.p;
    for (uint16_t i = 0; i < count; i++) {
        const uint8_t *col = r.p, *v = NULL;
        int32_t n;
        if (!read_col(&r, &n, &v, err))
            return false;
        if (!plan->cols[i].fn || n == -1)
            continue;
        buf_put_bytes(out, run, (size_t)(col - run));
        put_masked_col(plan, &plan->cols[i], v, (size_t)n, out);
        run = r.p;
    }
    if (r.left != 0) {
        *err = "DataRow has bytes after its last column";
        return false;
    }
    buf_put_bytes(out, run, (size_t)(r.p - run));
    buf_msg_finish(out);
    if (out->failed) {
        *err = "out of memory masking a DataRow";
        return false;
    }
    return true;
}

int mask_strength(const struct mask_fn *f)
{
    switch (f->kind) {
    case MASK_REDACT:
    case MASK_NULL:
    case MASK_FIXED: return MASK_STRENGTH_ALL;
    case MASK_HASH: return 2;
    case MASK_PARTIAL:
    case MASK_EMAIL:
    case MASK_LAST4: break;
    }
    return 1;
}

bool mask_fn_same(const struct mask_fn *a, const struct mask_fn *b)
{
    if (a->kind != b->kind || a->prefix != b->prefix || a->suffix != b->suffix)
        return false;
    return a->text == b->text || (a->text && b->text && strcmp(a->text, b->text) == 0);
}
