/* test_mask.c: masking functions as tables of spec, charset, input and expected output; the
 * spec parser's accepted and rejected forms with offsets; type-correct stand-ins for non-text
 * columns; DataRow rewriting round trips and hostile bodies. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mask.h"

#define U MASK_CHARS_UTF8
#define B MASK_CHARS_BYTES
#define X MASK_CHARS_UNKNOWN
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const struct mask_key key = {(const uint8_t *)"k3y", 3};

/* Parses spec, failing the test when it does not parse. */
static struct mask_fn parse_ok(const char *spec)
{
    struct mask_fn f;
    size_t at = 0;
    char err[200] = "";
    cr_assert(mask_fn_parse(spec, &f, &at, err, sizeof err), "%s: %s at %zu", spec, err, at);
    return f;
}

/* Masks a TEXT value by spec into out (reset first); false for NULL. */
static bool mask_str(const char *spec, enum mask_charset cs, int16_t format, const char *val,
                     struct buf *out)
{
    struct mask_fn f = parse_ok(spec);
    buf_reset(out);
    bool r =
        mask_value(&f, &key, cs, MASK_TYPE_TEXT, format, (const uint8_t *)val, strlen(val), out);
    mask_fn_free(&f);
    cr_assert_not(out->failed);
    return r;
}

/* One row of a masking table: want NULL means SQL NULL. */
struct text_case {
    const char *spec;
    enum mask_charset cs;
    const char *in;
    const char *want;
};

/* Checks every case in text and in binary format (a text value's binary form is its bytes). */
static void check_cases(const struct text_case *c, size_t n)
{
    struct buf out;
    buf_init(&out);
    for (size_t i = 0; i < n; i++) {
        for (int16_t format = 0; format <= 1; format++) {
            bool got = mask_str(c[i].spec, c[i].cs, format, c[i].in, &out);
            if (!c[i].want) {
                cr_expect_not(got, "%s on \"%s\" should be NULL", c[i].spec, c[i].in);
                cr_expect_eq(out.len, 0, "%s on \"%s\" wrote bytes for NULL", c[i].spec, c[i].in);
                continue;
            }
            cr_expect(got, "%s on \"%s\" (cs %d) gave NULL", c[i].spec, c[i].in, c[i].cs);
            cr_expect(out.len == strlen(c[i].want) && memcmp(out.data, c[i].want, out.len) == 0,
                      "%s on \"%s\" (cs %d, format %d): got \"%.*s\", want \"%s\"", c[i].spec,
                      c[i].in, c[i].cs, format, (int)out.len, (const char *)out.data, c[i].want);
        }
    }
    buf_free(&out);
}

/* ---- text functions ---- */

Test(mask, redact_fixed_null)
{
    static const struct text_case cases[] = {
        {"redact", U, "secret", "****"},
        {"redact", U, "", "****"},
        {"redact", U, "日本語テキスト", "****"},
        {"redact", X, "日本語テキスト", "****"},
        {"redact('[hidden]')", U, "secret", "[hidden]"},
        {"redact('it''s')", B, "secret", "it's"},
        {"redact('')", U, "secret", ""},
        {"fixed('n/a')", U, "anything", "n/a"},
        {"fixed('n/a')", X, "", "n/a"},
        {"fixed('Ünïcödé')", U, "x", "Ünïcödé"},
        {"fixed('')", U, "x", ""},
        {"null", U, "secret", NULL},
        {"null", X, "", NULL},
    };
    check_cases(cases, N_OF(cases));
}

Test(mask, partial)
{
    static const struct text_case cases[] = {
        {"partial(2, 2)", U, "4111111111111111", "41****11"},
        {"partial(1,1)", U, "abc", "a****c"},
        {"partial(1,1)", U, "ab", "****"}, /* exactly prefix + suffix: fill alone */
        {"partial(2,2)", U, "abcd", "****"},
        {"partial(3,3)", U, "ab", "****"}, /* shorter than the prefix alone */
        {"partial(2,2)", U, "", "****"},
        {"partial(0,0)", U, "abc", "****"},
        {"partial(0,0)", U, "", "****"},
        {"partial(2,2,'#')", U, "abcde", "ab#de"},
        {"partial(2,2,'#')", U, "abcd", "#"},
        {"partial(0,3,'')", U, "abcdef", "def"},
        {"partial(3,0)", U, "abcdef", "abc****"},
        {"partial(1000,1000)", U, "abcdef", "****"},
        {"partial(2,2)", U, "Zoë Ünïcödé", "Zo****dé"},
        {"partial(3,3)", U, "Zoë Ünïcödé", "Zoë****ödé"},
        {"partial(1,1)", U, "日本語テキスト", "日****ト"},
        {"partial(2,1)", U, "😀😃😄😁", "😀😃****😁"},
        {"partial(2,2)", U, "😀😃😄😁", "****"},
        /* bytes: cuts fall inside characters */
        {"partial(3,1)", B, "Zoë Ünïcödé", "Zo\xc3****\xa9"},
        {"partial(2,2)", B, "日本", "\xe6\x97****\x9c\xac"},
        {"partial(2,2)", B, "abcd", "****"},
        /* unknown encoding: nothing kept */
        {"partial(1,1)", X, "abcdef", "****"},
        {"partial(1,1,'x')", X, "abcdef", "x"},
        {"partial(0,0)", X, "", "****"},
        /* invalid UTF-8: lone lead bytes are characters, continuations ride along */
        {"partial(1,1)", U, "\xff\xfe\xfd", "\xff****\xfd"},
        {"partial(1,1)", U, "a\x80\x80\x80x\x80z", "a\x80\x80\x80****z"},
        {"partial(1,1)", U, "\x80\x80xyz", "\x80\x80x****z"},
        {"partial(0,1)", U, "\x80\x80xyz", "****z"},
        {"partial(1,1)", U, "\x80\x80\x80", "****"},
        {"partial(1,1)", U, "ab\xe6\x97", "a****\xe6\x97"}, /* truncated sequence at the end */
    };
    check_cases(cases, N_OF(cases));
}

Test(mask, email)
{
    static const struct text_case cases[] = {
        {"email", U, "john.doe@example.com", "j***@example.com"},
        {"email", U, "j@example.com", "j***@example.com"},
        {"email", U, "a@b@example.com", "a***@example.com"}, /* domain after the last '@' */
        {"email", U, "x@", "x***@"},
        {"email", U, "no-at-sign", "****"},
        {"email", U, "@example.com", "****"},
        {"email", U, "@", "****"},
        {"email", U, "", "****"},
        {"email", U, "Ünïcödé@exämple.de", "Ü***@exämple.de"},
        {"email", U, "日本@例え.jp", "日***@例え.jp"},
        {"email", U, "😀x@emoji.example", "😀***@emoji.example"},
        {"email", B, "Ünïcödé@x.de", "\xc3***@x.de"},
        {"email", X, "john@example.com", "****"},
        {"email", X, "", "****"},
        {"email", U, "\x80@x", "\x80***@x"},
        {"email", U, "\xe6@x", "\xe6***@x"},
    };
    check_cases(cases, N_OF(cases));
}

Test(mask, last4)
{
    static const struct text_case cases[] = {
        {"last4", U, "4111111111111111", "****1111"},
        {"last4", U, "12345", "****2345"},
        {"last4", U, "1234", "****"},
        {"last4", U, "1", "****"},
        {"last4", U, "", "****"},
        {"last4", U, "日本語テキスト", "****テキスト"},
        {"last4", U, "日本語テ", "****"},
        {"last4", U, "a😀😃😄😁", "****😀😃😄😁"},
        {"last4", U, "Zoë Ünïcödé", "****cödé"},
        {"last4", B, "abcdeé", "****de\xc3\xa9"},
        {"last4", B, "日本", "****\xa5\xe6\x9c\xac"},
        {"last4", X, "123456789", "****"},
        {"last4", U, "abcde\xe6\x97", "****cde\xe6\x97"},
        {"last4", U, "\x80\x80\x80\x80\x80\x80", "****"},
        {"last4", U, "\xff\xff\xff\xff\xff", "****\xff\xff\xff\xff"},
    };
    check_cases(cases, N_OF(cases));
}

/* ---- hash ---- */

/* The hash of val under k as a string, or "" when it came out NULL. */
static char *hash_of(const struct mask_key *k, enum mask_charset cs, int16_t format,
                     const void *val, size_t len, char *out64)
{
    struct mask_fn f = parse_ok("hash");
    struct buf b;
    buf_init(&b);
    out64[0] = '\0';
    if (mask_value(&f, k, cs, MASK_TYPE_TEXT, format, val, len, &b)) {
        cr_assert_eq(b.len, 64);
        memcpy(out64, b.data, 64);
        out64[64] = '\0';
    } else {
        cr_assert_eq(b.len, 0);
    }
    buf_free(&b);
    return out64;
}

Test(mask, hash_known_vectors)
{
    char h[65];
    const struct mask_key jefe = {(const uint8_t *)"Jefe", 4};
    const char *data = "what do ya want for nothing?";
    /* RFC 4231 test case 2 */
    cr_expect_str_eq(hash_of(&jefe, U, 0, data, strlen(data), h),
                     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    cr_expect_str_eq(hash_of(&key, U, 0, "", 0, h),
                     "6debfeadd8df80dd8b3762fd569962db0f3bfbbe252972c28341591bf823aa2c");
    cr_expect_str_eq(hash_of(&key, U, 0, "日本語テキスト", strlen("日本語テキスト"), h),
                     "200b1fe88b38f01dc5eeb50e890444f6f3f2bc5513ad292a0ad2d72ffee5c85c");
}

Test(mask, hash_is_stable_keyed_and_charset_blind)
{
    char a[65], b[65];
    const char *v = "john@example.com";
    const struct mask_key other = {(const uint8_t *)"k3z", 3};
    hash_of(&key, U, 0, v, strlen(v), a);
    cr_expect_str_eq(a, "a2d0aa5f8810cb7dc54f13600f1267e63b438ea3fa029fbbe5cc7f7a2e74e855");
    cr_expect_str_eq(hash_of(&key, U, 0, v, strlen(v), b), a, "same key and value");
    cr_expect_str_eq(hash_of(&key, U, 1, v, strlen(v), b), a, "binary format hashes the same");
    cr_expect_str_eq(hash_of(&key, B, 0, v, strlen(v), b), a, "bytes charset");
    cr_expect_str_eq(hash_of(&key, X, 0, v, strlen(v), b), a, "unknown charset");
    cr_expect_str_neq(hash_of(&other, U, 0, v, strlen(v), b), a, "different key");
    cr_expect_str_neq(hash_of(&key, U, 0, v, strlen(v) - 1, b), a, "different value");
    for (size_t i = 0; i < 64; i++)
        cr_expect((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f'), "hex at %zu", i);
}

Test(mask, hash_without_key_is_null)
{
    char h[65];
    const struct mask_key empty = {(const uint8_t *)"", 0};
    const struct mask_key none = {NULL, 0};
    cr_expect_str_eq(hash_of(&empty, U, 0, "secret", 6, h), "");
    cr_expect_str_eq(hash_of(&none, U, 1, "secret", 6, h), "");
    cr_expect_str_eq(hash_of(&empty, U, 0, "", 0, h), "");
}

/* ---- invalid UTF-8 of every short shape ---- */

/* Whether the byte at v[i] begins a UTF-8 character (or is the end). */
static bool boundary(const uint8_t *v, size_t len, size_t i)
{
    return i == len || (v[i] & 0xC0) != 0x80;
}

/* Whether piece is the first (at_end false) or last n bytes of v. */
static bool is_end_of(const uint8_t *v, size_t len, const uint8_t *piece, size_t n, bool at_end)
{
    return n <= len && memcmp(piece, at_end ? v + len - n : v, n) == 0;
}

/* partial(2,1,'|') on v: a head and a tail of v around '|' (absent from the alphabet), each
 * cut on a character boundary. */
static void check_partial_cuts(const uint8_t *v, size_t len, const struct buf *out)
{
    const uint8_t *bar = memchr(out->data, '|', out->len);
    cr_assert_not_null(bar);
    size_t head = (size_t)(bar - out->data), tail = out->len - head - 1;
    cr_expect(is_end_of(v, len, out->data, head, false) && (head == 0 || boundary(v, len, head)),
              "partial head of %zu bytes", head);
    cr_expect(is_end_of(v, len, bar + 1, tail, true) && (tail == 0 || boundary(v, len, len - tail)),
              "partial tail of %zu bytes", tail);
}

/* last4 on v: "****" and a tail of v cut on a character boundary. */
static void check_last4_cut(const uint8_t *v, size_t len, const struct buf *out)
{
    cr_assert_geq(out->len, 4);
    cr_expect(memcmp(out->data, "****", 4) == 0);
    size_t kept = out->len - 4;
    cr_expect(is_end_of(v, len, out->data + 4, kept, true), "last4 kept a non-suffix");
    cr_expect(kept == 0 || boundary(v, len, len - kept), "last4 split a character");
}

/* email on v: "****" without a usable '@'; else a head of v cut on a boundary, "***@" and
 * everything after the last '@'. */
static void check_email_shape(const uint8_t *v, size_t len, const struct buf *out)
{
    const uint8_t *at = len ? memrchr(v, '@', len) : NULL;
    if (!at || v[0] == '@') {
        cr_expect(out->len == 4 && memcmp(out->data, "****", 4) == 0, "email without local");
        return;
    }
    size_t local = (size_t)(at - v), domain = len - local - 1;
    cr_assert_geq(out->len, 5 + domain);
    size_t head = out->len - 4 - domain;
    cr_expect(head <= local && is_end_of(v, len, out->data, head, false), "email head");
    cr_expect(head == local || boundary(v, len, head), "email split a character");
    cr_expect(memcmp(out->data + head, "***@", 4) == 0);
    cr_expect(is_end_of(v, len, out->data + head + 4, domain, true), "email domain");
}

/* Lengths 0..7 of bytes drawn from leads, continuations, ASCII and '@', each in an exactly
 * sized allocation (so ASan sees any over-read): cuts keep whole characters. */
Test(mask, utf8_garbage_never_splits_or_overreads)
{
    static const uint8_t alphabet[] = {'a', '@', 0x80, 0xBF, 0xC3, 0xE6, 0xF0, 0xFF};
    struct mask_fn part = parse_ok("partial(2,1,'|')"), last = parse_ok("last4");
    struct mask_fn mail = parse_ok("email");
    struct buf out;
    buf_init(&out);
    uint32_t seed = 12345;
    for (size_t len = 0; len <= 7; len++) {
        for (int trial = 0; trial < 300; trial++) {
            uint8_t *v = malloc(len ? len : 1);
            for (size_t i = 0; i < len; i++) {
                seed = seed * 1103515245u + 12345u;
                v[i] = alphabet[(seed >> 16) % sizeof alphabet];
            }
            buf_reset(&out);
            cr_assert(mask_value(&part, &key, U, MASK_TYPE_TEXT, 0, v, len, &out));
            check_partial_cuts(v, len, &out);
            buf_reset(&out);
            cr_assert(mask_value(&last, &key, U, MASK_TYPE_TEXT, 0, v, len, &out));
            check_last4_cut(v, len, &out);
            buf_reset(&out);
            cr_assert(mask_value(&mail, &key, U, MASK_TYPE_TEXT, 0, v, len, &out));
            check_email_shape(v, len, &out);
            free(v);
        }
    }
    buf_free(&out);
    mask_fn_free(&part);
    mask_fn_free(&last);
    mask_fn_free(&mail);
}

/* ---- non-text columns ---- */

struct class_case {
    enum mask_type_class tc;
    const char *spec;
    int16_t format;
    const char *want; /* NULL: SQL NULL */
    size_t want_len;
};

Test(mask, non_text_classes_get_type_correct_stand_ins)
{
    static const struct class_case cases[] = {
        {MASK_TYPE_INT2, "redact", 0, "0", 1},
        {MASK_TYPE_INT4, "partial(1,1)", 0, "0", 1},
        {MASK_TYPE_INT8, "email", 0, "0", 1},
        {MASK_TYPE_FLOAT4, "last4", 0, "0", 1},
        {MASK_TYPE_FLOAT8, "hash", 0, "0", 1},
        {MASK_TYPE_NUMERIC, "redact('x')", 0, "0", 1},
        {MASK_TYPE_BOOL, "redact", 0, "f", 1},
        {MASK_TYPE_OTHER, "redact", 0, NULL, 0},
        {MASK_TYPE_OTHER, "hash", 0, NULL, 0},
        {MASK_TYPE_INT2, "redact", 1, "\0\0", 2},
        {MASK_TYPE_INT4, "partial(1,1)", 1, "\0\0\0\0", 4},
        {MASK_TYPE_INT8, "email", 1, "\0\0\0\0\0\0\0\0", 8},
        {MASK_TYPE_FLOAT4, "last4", 1, "\0\0\0\0", 4},
        {MASK_TYPE_FLOAT8, "hash", 1, "\0\0\0\0\0\0\0\0", 8},
        {MASK_TYPE_NUMERIC, "redact", 1, "\0\0\0\0\0\0\0\0", 8},
        {MASK_TYPE_BOOL, "redact", 1, "\0", 1},
        {MASK_TYPE_OTHER, "last4", 1, NULL, 0},
        {MASK_TYPE_INT4, "null", 0, NULL, 0},
        {MASK_TYPE_BOOL, "null", 1, NULL, 0},
        {MASK_TYPE_OTHER, "null", 0, NULL, 0},
        {MASK_TYPE_INT4, "fixed('n/a')", 0, "n/a", 3},
        {MASK_TYPE_OTHER, "fixed('{}')", 0, "{}", 2},
        {MASK_TYPE_INT4, "fixed('n/a')", 1, NULL, 0},
        {MASK_TYPE_OTHER, "fixed('{}')", 1, NULL, 0},
    };
    /* a value that, masked as text, would come out differently */
    const uint8_t in[] = {0x00, 0x00, 0x30, 0x39, 0x01, 0x02, 0x03, 0x04};
    struct buf out;
    buf_init(&out);
    for (size_t i = 0; i < N_OF(cases); i++) {
        const struct class_case *c = &cases[i];
        struct mask_fn f = parse_ok(c->spec);
        buf_reset(&out);
        bool got = mask_value(&f, &key, U, c->tc, c->format, in, sizeof in, &out);
        mask_fn_free(&f);
        if (!c->want) {
            cr_expect_not(got, "case %zu (%s) should be NULL", i, c->spec);
            cr_expect_eq(out.len, 0, "case %zu wrote bytes for NULL", i);
            continue;
        }
        cr_expect(got, "case %zu (%s) gave NULL", i, c->spec);
        cr_expect(out.len == c->want_len && memcmp(out.data, c->want, c->want_len) == 0,
                  "case %zu (%s, format %d): %zu bytes", i, c->spec, c->format, out.len);
    }
    buf_free(&out);
}

Test(mask, type_class_by_oid)
{
    static const struct {
        uint32_t oid;
        enum mask_type_class tc;
    } cases[] = {
        {25, MASK_TYPE_TEXT},    {1043, MASK_TYPE_TEXT},   {1042, MASK_TYPE_TEXT},
        {19, MASK_TYPE_TEXT},    {18, MASK_TYPE_TEXT},     {705, MASK_TYPE_TEXT},
        {21, MASK_TYPE_INT2},    {23, MASK_TYPE_INT4},     {20, MASK_TYPE_INT8},
        {700, MASK_TYPE_FLOAT4}, {701, MASK_TYPE_FLOAT8},  {1700, MASK_TYPE_NUMERIC},
        {16, MASK_TYPE_BOOL},    {114, MASK_TYPE_OTHER},   {3802, MASK_TYPE_OTHER},
        {1082, MASK_TYPE_OTHER}, {2950, MASK_TYPE_OTHER},  {17, MASK_TYPE_OTHER},
        {1009, MASK_TYPE_OTHER}, /* text[] */
        {1007, MASK_TYPE_OTHER}, /* int4[] */
        {0, MASK_TYPE_OTHER},    {99999, MASK_TYPE_OTHER}, {UINT32_MAX, MASK_TYPE_OTHER},
    };
    for (size_t i = 0; i < N_OF(cases); i++)
        cr_expect_eq(mask_type_class(cases[i].oid), cases[i].tc, "oid %u", cases[i].oid);
}

/* ---- parsing specs ---- */

Test(mask, parse_accepts)
{
    static const struct {
        const char *spec;
        enum mask_kind kind;
        int prefix, suffix;
        const char *text;
    } cases[] = {
        {"redact", MASK_REDACT, 0, 0, NULL},
        {"  redact  ", MASK_REDACT, 0, 0, NULL},
        {"redact('x')", MASK_REDACT, 0, 0, "x"},
        {"redact ( 'it''s' ) ", MASK_REDACT, 0, 0, "it's"},
        {"redact('')", MASK_REDACT, 0, 0, ""},
        {"null", MASK_NULL, 0, 0, NULL},
        {"partial(2,2)", MASK_PARTIAL, 2, 2, NULL},
        {"\tpartial( 0 ,\n1000 , '#' )", MASK_PARTIAL, 0, 1000, "#"},
        {"partial(007,3,'')", MASK_PARTIAL, 7, 3, ""},
        {"partial(1,2,'a,b)''')", MASK_PARTIAL, 1, 2, "a,b)'"},
        {"email", MASK_EMAIL, 0, 0, NULL},
        {"last4", MASK_LAST4, 0, 0, NULL},
        {"hash", MASK_HASH, 0, 0, NULL},
        {"fixed('n/a')", MASK_FIXED, 0, 0, "n/a"},
        {"fixed ('')", MASK_FIXED, 0, 0, ""},
        {"fixed('''')", MASK_FIXED, 0, 0, "'"},
        {"fixed('Ünïcödé 日本')", MASK_FIXED, 0, 0, "Ünïcödé 日本"},
    };
    for (size_t i = 0; i < N_OF(cases); i++) {
        struct mask_fn f = parse_ok(cases[i].spec);
        cr_expect_eq(f.kind, cases[i].kind, "%s", cases[i].spec);
        cr_expect_eq(f.prefix, cases[i].prefix, "%s", cases[i].spec);
        cr_expect_eq(f.suffix, cases[i].suffix, "%s", cases[i].spec);
        if (cases[i].text)
            cr_expect(f.text && strcmp(f.text, cases[i].text) == 0, "%s: text \"%s\"",
                      cases[i].spec, f.text ? f.text : "(null)");
        else
            cr_expect_null(f.text, "%s", cases[i].spec);
        mask_fn_free(&f);
        cr_expect_null(f.text);
    }
}

Test(mask, parse_rejects_with_offset)
{
    static const struct {
        const char *spec;
        size_t at;
        const char *err; /* a substring of the message */
    } cases[] = {
        {"", 0, "expected a masking function"},
        {"   ", 3, "expected a masking function"},
        {"'redact'", 0, "expected a masking function"},
        {"foo", 0, "unknown masking function \"foo\" (use redact, null, partial, email"},
        {"Email", 0, "unknown masking function \"Email\""},
        {"  mask(1)", 2, "unknown masking function \"mask\""},
        {"redact()", 7, "redact takes no arguments or ('text')"},
        {"redact(5)", 7, "redact takes"},
        {"redact('x'", 10, "redact takes"},
        {"redact('x", 7, "unterminated string"},
        {"redact('it''", 7, "unterminated string"},
        {"fixed", 5, "fixed takes ('text')"},
        {"fixed ", 6, "fixed takes ('text')"},
        {"fixed()", 6, "fixed takes"},
        {"fixed('a', 'b')", 9, "fixed takes"},
        {"null()", 4, "null takes no arguments"},
        {"email(1)", 5, "email takes no arguments"},
        {"hash ('k')", 5, "hash takes no arguments"},
        {"last4 x", 6, "unexpected \"x\" after last4"},
        {"email;", 5, "unexpected"},
        {"partial", 7, "partial takes (prefix, suffix[, 'fill'])"},
        {"partial(1)", 9, "partial takes (prefix, suffix[, 'fill'])"},
        {"partial(1,)", 10, "partial takes"},
        {"partial(-1,2)", 8, "partial takes"},
        {"partial(1.5,2)", 9, "partial takes"},
        {"partial(1,1001)", 10, "number 1001 is out of range (0..1000)"},
        {"partial(99999999999999999999,1)", 8, "out of range"},
        {"partial(1,2,3)", 12, "partial takes"},
        {"partial(1,2,'x',4)", 15, "partial takes"},
        {"partial(1,2,'x'", 15, "partial takes"},
        {"partial(1,2,'x", 12, "unterminated string"},
        {"partial(1,2) junk", 13, "unexpected \"junk\" after partial"},
        {"partial(1,2)(3)", 12, "unexpected"},
    };
    for (size_t i = 0; i < N_OF(cases); i++) {
        struct mask_fn f;
        size_t at = 9999;
        char err[200] = "";
        cr_expect_not(mask_fn_parse(cases[i].spec, &f, &at, err, sizeof err), "%s accepted",
                      cases[i].spec);
        cr_expect_eq(at, cases[i].at, "%s: at %zu, want %zu (%s)", cases[i].spec, at, cases[i].at,
                     err);
        cr_expect(strstr(err, cases[i].err) != NULL, "%s: err \"%s\", want \"%s\"", cases[i].spec,
                  err, cases[i].err);
        cr_expect_null(f.text, "%s left text allocated", cases[i].spec);
    }
}

Test(mask, parse_error_fits_a_small_buffer)
{
    struct mask_fn f;
    size_t at = 0;
    char err[8];
    memset(err, 'x', sizeof err);
    cr_expect_not(mask_fn_parse("nonsense_name", &f, &at, err, sizeof err));
    cr_expect_eq(err[7], '\0');
    cr_expect_str_eq(err, "unknown");
    cr_expect_not(mask_fn_parse("partial(", &f, NULL, NULL, 0));
}

/* ---- DataRow ---- */

struct col_val {
    const char *p;
    int32_t len; /* -1: NULL */
};

/* A DataRow body of n columns. */
static void build_row(struct buf *b, const struct col_val *v, size_t n)
{
    buf_reset(b);
    buf_put_u16(b, (uint16_t)n);
    for (size_t i = 0; i < n; i++) {
        buf_put_u32(b, (uint32_t)v[i].len);
        if (v[i].len > 0)
            buf_put_bytes(b, v[i].p, (size_t)v[i].len);
    }
    cr_assert_not(b->failed);
}

/* Checks out is one 'D' message whose columns are exactly want. */
static void expect_row(const struct buf *out, const struct col_val *want, size_t n)
{
    struct rd r;
    uint8_t type;
    uint32_t len;
    uint16_t count;
    cr_assert_not(out->failed);
    rd_init(&r, out->data, out->len);
    cr_assert(rd_u8(&r, &type) && rd_u32(&r, &len) && rd_u16(&r, &count));
    cr_expect_eq(type, 'D');
    cr_expect_eq(len, out->len - 1, "length field disagrees with the bytes");
    cr_assert_eq(count, n);
    for (size_t i = 0; i < n; i++) {
        int32_t clen;
        const uint8_t *p;
        cr_assert(rd_i32(&r, &clen), "column %zu", i);
        cr_expect_eq(clen, want[i].len, "column %zu length %d, want %d", i, clen, want[i].len);
        if (clen <= 0 || clen != want[i].len)
            continue;
        cr_assert(rd_bytes(&r, (size_t)clen, &p), "column %zu", i);
        cr_expect(memcmp(p, want[i].p, (size_t)clen) == 0, "column %zu: \"%.*s\"", i, clen, p);
    }
    cr_expect_eq(r.left, 0, "bytes after the last column");
}

#define V(s) ((struct col_val){s, (int32_t)(sizeof(s) - 1)})
#define VNULL ((struct col_val){NULL, -1})

/* The plan shared by the round trips: columns 0 and 5 pass through, the rest are masked. */
static struct mask_fn fns[8];
static struct mask_col cols[10];

static struct mask_plan make_plan(int16_t format)
{
    static const char *specs[] = {"email", "partial(2,2)", "redact",       "null",
                                  "last4", "hash",         "fixed('n/a')", "redact('x')"};
    for (size_t i = 0; i < N_OF(specs); i++) {
        mask_fn_free(&fns[i]);
        fns[i] = parse_ok(specs[i]);
    }
    const struct mask_col c[10] = {
        {NULL, MASK_TYPE_TEXT, format},     {&fns[0], MASK_TYPE_TEXT, format},
        {&fns[1], MASK_TYPE_TEXT, format},  {&fns[2], MASK_TYPE_INT4, format},
        {&fns[3], MASK_TYPE_TEXT, format},  {NULL, MASK_TYPE_INT4, format},
        {&fns[4], MASK_TYPE_TEXT, format},  {&fns[5], MASK_TYPE_TEXT, format},
        {&fns[6], MASK_TYPE_OTHER, format}, {&fns[7], MASK_TYPE_TEXT, format},
    };
    memcpy(cols, c, sizeof c);
    struct mask_plan p = {.cols = cols, .n_cols = 10, .n_masked = 8, .cs = U, .key = key};
    return p;
}

static void free_plan(void)
{
    for (size_t i = 0; i < N_OF(fns); i++)
        mask_fn_free(&fns[i]);
}

Test(mask, datarow_round_trip_text)
{
    struct mask_plan plan = make_plan(0);
    const struct col_val in[10] = {
        V("42"), V("john@example.com"), VNULL, V("123456"),     V("secret"),
        V("7"),  V("4111111111111111"), V(""), V("2024-01-01"), V(""),
    };
    const struct col_val want[10] = {
        V("42"),       V("j***@example.com"),
        VNULL,         V("0"),
        VNULL,         V("7"),
        V("****1111"), V("6debfeadd8df80dd8b3762fd569962db0f3bfbbe252972c28341591bf823aa2c"),
        V("n/a"),      V("x"),
    };
    struct buf body, out;
    const char *err = NULL;
    buf_init(&body);
    buf_init(&out);
    build_row(&body, in, 10);
    cr_assert(mask_datarow(&plan, body.data, body.len, &out, &err), "%s", err);
    expect_row(&out, want, 10);
    /* the caller reuses out row after row */
    const struct col_val in2[10] = {
        V("43"), V("no-at"), V("Zoë Ünïcödé"), VNULL, VNULL, VNULL, V("日本語テキスト"),
        VNULL,   VNULL,      V("y"),
    };
    const struct col_val want2[10] = {
        V("43"), V("****"),         V("Zo****dé"), VNULL, VNULL,
        VNULL,   V("****テキスト"), VNULL,         VNULL, V("x"),
    };
    build_row(&body, in2, 10);
    buf_reset(&out);
    cr_assert(mask_datarow(&plan, body.data, body.len, &out, &err), "%s", err);
    expect_row(&out, want2, 10);
    buf_free(&body);
    buf_free(&out);
    free_plan();
}

Test(mask, datarow_round_trip_binary)
{
    struct mask_plan plan = make_plan(1);
    const struct col_val in[10] = {
        V("\0\0\0\x2a"), V("john@example.com"), VNULL, V("\0\x01\xe2\x40"), V("secret"),
        V("\0\0\0\0"),   V("4111111111111111"), V(""), V("\0\0\x22\x38"),   V("zz"),
    };
    const struct col_val want[10] = {
        V("\0\0\0\x2a"),
        V("j***@example.com"),
        VNULL,
        V("\0\0\0\0"),
        VNULL,
        V("\0\0\0\0"),
        V("****1111"),
        V("6debfeadd8df80dd8b3762fd569962db0f3bfbbe252972c28341591bf823aa2c"),
        VNULL /* fixed on a non-text binary column */,
        V("x"),
    };
    struct buf body, out;
    const char *err = NULL;
    buf_init(&body);
    buf_init(&out);
    build_row(&body, in, 10);
    cr_assert(mask_datarow(&plan, body.data, body.len, &out, &err), "%s", err);
    expect_row(&out, want, 10);
    buf_free(&body);
    buf_free(&out);
    free_plan();
}

Test(mask, datarow_unmasked_row_is_byte_identical)
{
    struct mask_col c[3] = {
        {NULL, MASK_TYPE_TEXT, 0}, {NULL, MASK_TYPE_INT4, 1}, {NULL, MASK_TYPE_TEXT, 0}};
    struct mask_plan plan = {.cols = c, .n_cols = 3, .n_masked = 0, .cs = U, .key = key};
    const struct col_val in[3] = {V("a\0b"), VNULL, V("")};
    struct buf body, out;
    const char *err = NULL;
    buf_init(&body);
    buf_init(&out);
    build_row(&body, in, 3);
    cr_assert(mask_datarow(&plan, body.data, body.len, &out, &err), "%s", err);
    cr_assert_eq(out.len, 5 + body.len);
    cr_expect_eq(out.data[0], 'D');
    cr_expect(memcmp(out.data + 5, body.data, body.len) == 0);
    expect_row(&out, in, 3);
    /* zero columns */
    struct mask_plan none = {.cols = NULL, .n_cols = 0};
    const uint8_t empty_row[] = {0, 0};
    buf_reset(&out);
    cr_assert(mask_datarow(&none, empty_row, sizeof empty_row, &out, &err), "%s", err);
    expect_row(&out, NULL, 0);
    buf_free(&body);
    buf_free(&out);
}

Test(mask, datarow_long_values)
{
    struct mask_fn f = parse_ok("partial(3,3)");
    struct mask_col c[2] = {{&f, MASK_TYPE_TEXT, 0}, {NULL, MASK_TYPE_TEXT, 0}};
    struct mask_plan plan = {.cols = c, .n_cols = 2, .n_masked = 1, .cs = U, .key = key};
    size_t n = 100000;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    const struct col_val in[2] = {{big, (int32_t)n}, {big, (int32_t)n}};
    /* 100000 % 26 == 4: the value ends in ...wxyzabcd */
    const struct col_val want_tail[2] = {{"abc****bcd", 10}, {big, (int32_t)n}};
    struct buf body, out;
    const char *err = NULL;
    buf_init(&body);
    buf_init(&out);
    build_row(&body, in, 2);
    cr_assert(mask_datarow(&plan, body.data, body.len, &out, &err), "%s", err);
    expect_row(&out, want_tail, 2);
    buf_free(&body);
    buf_free(&out);
    free(big);
    mask_fn_free(&f);
}

/* mask_datarow on an exactly sized copy of body (so ASan sees any over-read). */
static bool rewrite_copy(const struct mask_plan *plan, const uint8_t *body, size_t len,
                         const char **err)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, body, len);
    struct buf out;
    buf_init(&out);
    bool ok = mask_datarow(plan, copy, len, &out, err);
    buf_free(&out);
    free(copy);
    return ok;
}

Test(mask, datarow_rejects_every_truncation)
{
    struct mask_plan plan = make_plan(0);
    const struct col_val in[10] = {
        V("42"), V("john@example.com"), VNULL, V("123456"),     V("secret"),
        V("7"),  V("4111111111111111"), V(""), V("2024-01-01"), V("x"),
    };
    struct buf body;
    const char *err;
    buf_init(&body);
    build_row(&body, in, 10);
    cr_assert(rewrite_copy(&plan, body.data, body.len, &err));
    for (size_t n = 0; n < body.len; n++) {
        err = NULL;
        cr_expect_not(rewrite_copy(&plan, body.data, n, &err), "accepted %zu of %zu bytes", n,
                      body.len);
        cr_expect_not_null(err);
    }
    buf_free(&body);
    free_plan();
}

Test(mask, datarow_rejects_malformed_bodies)
{
    struct mask_fn f = parse_ok("redact");
    struct mask_col c[2] = {{NULL, MASK_TYPE_TEXT, 0}, {&f, MASK_TYPE_TEXT, 0}};
    struct mask_plan plan = {.cols = c, .n_cols = 2, .n_masked = 1, .cs = U, .key = key};
    static const struct {
        const char *what;
        uint8_t body[24];
        size_t len;
        const char *err;
    } cases[] = {
        {"well formed", {0, 2, 0, 0, 0, 1, 'a', 0, 0, 0, 1, 'b'}, 12, NULL},
        {"trailing byte", {0, 2, 0, 0, 0, 1, 'a', 0, 0, 0, 1, 'b', 0}, 13, "after its last"},
        {"negative length", {0, 2, 0, 0, 0, 1, 'a', 0xff, 0xff, 0xff, 0xfe, 'b'}, 12, "negative"},
        {"INT32_MIN length", {0, 2, 0x80, 0, 0, 0, 0, 0, 0, 1, 'b'}, 11, "negative"},
        {"huge length", {0, 2, 0x7f, 0xff, 0xff, 0xff, 'a', 0, 0, 0, 1, 'b'}, 12, "exceeds"},
        {"length past end", {0, 2, 0, 0, 0, 1, 'a', 0, 0, 0, 2, 'b'}, 12, "exceeds"},
        {"fewer columns", {0, 1, 0, 0, 0, 1, 'a'}, 7, "column count"},
        {"more columns",
         {0, 3, 0, 0, 0, 1, 'a', 0, 0, 0, 1, 'b', 0xff, 0xff, 0xff, 0xff},
         16,
         "column count"},
        {"count says two, one present", {0, 2, 0, 0, 0, 1, 'a'}, 7, "truncated"},
        {"one byte", {0}, 1, "too short"},
        {"empty", {0}, 0, "too short"},
    };
    for (size_t i = 0; i < N_OF(cases); i++) {
        const char *err = NULL;
        bool ok = rewrite_copy(&plan, cases[i].body, cases[i].len, &err);
        if (!cases[i].err) {
            cr_expect(ok, "%s: %s", cases[i].what, err);
            continue;
        }
        cr_expect_not(ok, "%s accepted", cases[i].what);
        cr_expect(err && strstr(err, cases[i].err), "%s: err \"%s\"", cases[i].what,
                  err ? err : "(null)");
    }
    mask_fn_free(&f);
}

Test(mask, datarow_null_from_mask_is_null_on_the_wire)
{
    /* hash without a key comes out NULL rather than unkeyed */
    struct mask_fn f = parse_ok("hash");
    struct mask_col c[2] = {{&f, MASK_TYPE_TEXT, 0}, {NULL, MASK_TYPE_TEXT, 0}};
    struct mask_plan plan = {.cols = c, .n_cols = 2, .n_masked = 1, .cs = U, .key = {NULL, 0}};
    const struct col_val in[2] = {V("secret"), V("kept")};
    const struct col_val want[2] = {VNULL, V("kept")};
    struct buf body, out;
    const char *err = NULL;
    buf_init(&body);
    buf_init(&out);
    build_row(&body, in, 2);
    cr_assert(mask_datarow(&plan, body.data, body.len, &out, &err), "%s", err);
    expect_row(&out, want, 2);
    buf_free(&body);
    buf_free(&out);
    mask_fn_free(&f);
}
