/* Unit tests of masklike.c: the prefix rule for LIKE patterns, and its check of the values a
 * Bind gives pattern parameters. */
#include <criterion/criterion.h>
#include <string.h>

#include "buf.h"
#include "masklike.h"

Test(masklike, only_fixed_beginnings_are_prefixes)
{
    const char *yes[] = {"", "%", "abc", "abc%", "abc%%", "a\\_b%", "a\\%%", "123-45-6789"};
    const char *no[] = {"_", "a_%", "%a", "a%b", "a%_", "%%_", "ab\\"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        cr_expect(masklike_is_prefix(yes[i], strlen(yes[i]), '\\'), "%s", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        cr_expect_not(masklike_is_prefix(no[i], strlen(no[i]), '\\'), "%s", no[i]);
    cr_expect(masklike_is_prefix("a_", 1, '\\'), "its length ends it, not a NUL");
    cr_expect_not(masklike_is_prefix("a\\_", 3, 0), "no escape: _ is a wildcard");
    cr_expect(masklike_is_prefix("a#_%", 4, '#'));
}

/* A Parse body after the name: text, then the declared types. */
static void parse_rest(struct buf *b, int n_types, const uint32_t *types)
{
    buf_init(b);
    buf_put_str(b, "SELECT id FROM customers WHERE email LIKE $1 AND ssn = $2");
    buf_put_u16(b, (uint16_t)n_types);
    for (int i = 0; i < n_types; i++)
        buf_put_u32(b, types[i]);
}

/* A Bind body after portal and statement names: format codes, values (NULL: SQL null). */
static void bind_rest(struct buf *b, int n_formats, uint16_t format, const char *v1, const char *v2)
{
    buf_init(b);
    buf_put_u16(b, (uint16_t)n_formats);
    for (int i = 0; i < n_formats; i++)
        buf_put_u16(b, format);
    buf_put_u16(b, 2);
    const char *v[2] = {v1, v2};
    for (int i = 0; i < 2; i++) {
        buf_put_u32(b, v[i] ? (uint32_t)strlen(v[i]) : 0xFFFFFFFFu);
        if (v[i])
            buf_put_bytes(b, v[i], strlen(v[i]));
    }
    buf_put_u16(b, 0);
}

static bool binds_ok(const struct masklike *l, const struct buf *p, const struct buf *b)
{
    return masklike_binds_ok(l, p ? p->data : NULL, p ? p->len : 0, b->data, b->len);
}

/* The values of noted parameters must be prefixes, in text or binary format (the same bytes
 * for text), and the parameter declared text, varchar or nothing; other parameters are free. */
Test(masklike, bound_patterns_must_be_prefixes_of_text_parameters)
{
    struct masklike l = {.n = 1, .param = {1}};
    struct buf p, b;
    parse_rest(&p, 0, NULL);
    bind_rest(&b, 0, 0, "ab%", "_any_");
    cr_expect(binds_ok(&l, &p, &b), "a prefix; $2 is not a pattern");
    buf_free(&b);
    bind_rest(&b, 0, 0, "__4%", "x");
    cr_expect_not(binds_ok(&l, &p, &b), "a positional pattern");
    buf_free(&b);
    bind_rest(&b, 1, 1, "%4", "x");
    cr_expect_not(binds_ok(&l, &p, &b), "binary format is checked the same");
    buf_free(&b);
    bind_rest(&b, 0, 0, NULL, "x");
    cr_expect(binds_ok(&l, &p, &b), "NULL matches nothing");
    buf_free(&b);
    bind_rest(&b, 0, 0, "a\\_%", "x");
    cr_expect(binds_ok(&l, &p, &b), "an escaped underscore");
    cr_expect(binds_ok(&l, NULL, &b), "declared types unknown");
    buf_free(&p);
    const uint32_t text[] = {25, 23}, varchar[] = {1043}, chr[] = {18, 25};
    parse_rest(&p, 2, text);
    cr_expect(binds_ok(&l, &p, &b));
    buf_free(&p);
    parse_rest(&p, 1, varchar);
    cr_expect(binds_ok(&l, &p, &b));
    buf_free(&p);
    parse_rest(&p, 2, chr);
    cr_expect_not(binds_ok(&l, &p, &b), "a \"char\" parameter reads '\\137' as '_'");
    buf_free(&p);
    buf_free(&b);
    struct buf cut = {0};
    buf_init(&cut);
    buf_put_u16(&cut, 0);
    buf_put_u16(&cut, 2);
    buf_put_u32(&cut, 10); /* a value longer than the message */
    cr_expect_not(binds_ok(&l, NULL, &cut), "a Bind cut short");
    buf_free(&cut);
}

/* The declared types of a retyped Parse body (after its text); -1 when it is malformed. */
static int types_of(const struct buf *b, uint32_t *out, int max)
{
    const uint8_t *nul = memchr(b->data, 0, b->len);
    struct rd r;
    uint16_t n;
    rd_init(&r, nul + 1, b->len - (size_t)(nul + 1 - b->data));
    if (!rd_u16(&r, &n) || n > max)
        return -1;
    for (int i = 0; i < n; i++)
        if (!rd_u32(&r, &out[i]))
            return -1;
    return r.left == 0 ? n : -1;
}

/* Noted parameters the client left undeclared (or did not list) are declared text; others
 * keep their types; nothing to change, or a malformed body, gives false. */
Test(masklike, undeclared_pattern_parameters_are_declared_text)
{
    struct masklike one = {.n = 1, .param = {1}}, third = {.n = 1, .param = {3}};
    struct buf p, out;
    uint32_t t[8];
    parse_rest(&p, 0, NULL);
    cr_assert(masklike_declare_text(&one, p.data, p.len, &out));
    cr_expect_eq(types_of(&out, t, 8), 1);
    cr_expect_eq(t[0], 25);
    cr_expect_eq(memcmp(out.data, p.data, strlen((const char *)p.data) + 1), 0, "text kept");
    buf_free(&out);
    buf_free(&p);
    const uint32_t unknown_int[] = {0, 23}, varchar[] = {1043}, chr[] = {18};
    parse_rest(&p, 2, unknown_int);
    cr_assert(masklike_declare_text(&one, p.data, p.len, &out));
    cr_expect_eq(types_of(&out, t, 8), 2);
    cr_expect(t[0] == 25 && t[1] == 23);
    buf_free(&out);
    cr_assert(masklike_declare_text(&third, p.data, p.len, &out));
    cr_expect_eq(types_of(&out, t, 8), 3);
    cr_expect(t[0] == 0 && t[1] == 23 && t[2] == 25, "listed up to the noted one");
    buf_free(&out);
    buf_free(&p);
    parse_rest(&p, 1, varchar);
    cr_expect_not(masklike_declare_text(&one, p.data, p.len, &out), "already text");
    buf_free(&p);
    parse_rest(&p, 1, chr);
    cr_expect_not(masklike_declare_text(&one, p.data, p.len, &out), "declared: the Bind refuses");
    cr_expect_not(masklike_declare_text(&one, p.data, p.len - 1, &out), "cut short");
    cr_expect_not(masklike_declare_text(&one, (const uint8_t *)"no nul", 6, &out));
    buf_free(&p);
}
