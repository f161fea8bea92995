/* auth.c: SCRAM-SHA-256 (RFC 5802/7677) for both ends of the proxy, and PostgreSQL's md5.
 * Every parser takes (ptr, len) of attacker-controlled bytes and never reads past len.
 * Passwords are used as given, without SASLprep; ASCII passwords are unaffected by it. */
#include "auth.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

/* No SCRAM message PostgreSQL or libpq sends comes near this; anything longer is hostile. */
#define SCRAM_MAX_MSG 2048
/* Bounds a caller-supplied nonce and the user name we escape into client-first. */
#define SCRAM_MAX_NAME 512
/* Hi() runs synchronously: a server asking for more would stall the proxy. */
#define SCRAM_MAX_CLIENT_ITERATIONS 10000000
#define B64_LEN(n) (4 * (((n) + 2) / 3))
#define NONCE_B64_LEN B64_LEN(SCRAM_NONCE_LEN)
#define KEY_B64_LEN B64_LEN(SCRAM_KEY_LEN)

enum { SCRAM_FAILED = -1 }; /* either side: a step failed, so every later call is refused */
enum { SRV_EXPECT_FIRST = 0, SRV_EXPECT_FINAL = 1, SRV_DONE = 2 };
enum { CLI_INITIAL = 0, CLI_SENT_FIRST = 1, CLI_SENT_FINAL = 2, CLI_VERIFIED = 3 };

static const char ERR_OOM[] = "out of memory during SCRAM exchange";
static const char ERR_CRYPTO[] = "SCRAM key computation failed";

/* Static error texts for the generic defects of each message type: empty, too long, NUL. */
#define DEFECTS(what)                                                                              \
    {                                                                                              \
        "invalid SCRAM " what ": empty", "invalid SCRAM " what ": too long",                       \
            "invalid SCRAM " what ": contains a NUL byte"                                          \
    }
static const char *const CLIENT_FIRST_DEFECTS[3] = DEFECTS("client-first-message");
static const char *const CLIENT_FINAL_DEFECTS[3] = DEFECTS("client-final-message");
static const char *const SERVER_FIRST_DEFECTS[3] = DEFECTS("server-first-message");
static const char *const SERVER_FINAL_DEFECTS[3] = DEFECTS("server-final-message");

struct span {
    const char *p;
    size_t len;
};

/* Bounded reader over a message: p is the next unread byte, left how many remain. */
struct cursor {
    const char *p;
    size_t left;
};

/* ---- small helpers ---- */

/* NULL when msg is usable; otherwise the matching text from defects. */
static const char *msg_defect(const char *msg, size_t len, const char *const defects[3])
{
    if (!msg || len == 0)
        return defects[0];
    if (len > SCRAM_MAX_MSG)
        return defects[1];
    if (memchr(msg, '\0', len))
        return defects[2];
    return NULL;
}

/* malloc'd NUL-terminated copy of len bytes at p. */
static char *mem_dup(const char *p, size_t len)
{
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

__attribute__((format(printf, 1, 2))) static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Wipes a secret C string, then frees it. */
static void free_secret(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static bool span_eq(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.p, lit, n) == 0;
}

bool auth_equal_ct(const void *a, const void *b, size_t len)
{
    return len == 0 || CRYPTO_memcmp(a, b, len) == 0;
}

/* RFC 5802 printable: %x21-7E except ','. */
static bool nonce_valid(struct span n)
{
    if (n.len == 0 || n.len > SCRAM_MAX_MSG)
        return false;
    for (size_t i = 0; i < n.len; i++) {
        unsigned char ch = (unsigned char)n.p[i];
        if (ch < 0x21 || ch > 0x7e || ch == ',')
            return false;
    }
    return true;
}

/* Parses 1..10 decimal digits (nothing else) into 1..max. */
static bool parse_count(struct span s, long long max, int *out)
{
    long long v = 0;
    if (s.len == 0 || s.len > 10)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return false;
        v = v * 10 + (s.p[i] - '0');
    }
    if (v < 1 || v > max || v > INT_MAX)
        return false;
    *out = (int)v;
    return true;
}

/* ---- base64 ---- */

/* Value of a base64 alphabet character, or -1. */
static int b64_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

/* Strict RFC 4648: '=' only as the last one or two characters, and the bits of the last data
 * character that padding discards must be zero, so each byte string has one spelling. */
static bool b64_canonical(struct span in, size_t *pad)
{
    *pad = 0;
    for (size_t i = 0; i < in.len; i++) {
        if (in.p[i] == '=') {
            if (i + 2 < in.len)
                return false;
            (*pad)++;
        } else if (*pad > 0 || b64_value(in.p[i]) < 0) {
            return false;
        }
    }
    if (*pad == 0)
        return true;
    int last = b64_value(in.p[in.len - 1 - *pad]);
    return (last & (*pad == 1 ? 0x3 : 0xf)) == 0;
}

/* Writes the padded base64 of in to out, which holds B64_LEN(len) + 1 bytes. */
static void b64_encode(const uint8_t *in, size_t len, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* Decodes strict padded base64 (no whitespace) of min..max bytes.
 * EVP_DecodeBlock counts padding as zero bytes, so the real length is computed here. */
static bool b64_decode(struct span in, uint8_t *out, size_t min, size_t max, size_t *outlen)
{
    uint8_t tmp[SCRAM_MAX_SALT + 3];
    size_t pad = 0;
    bool ok = false;

    if (in.len == 0 || in.len % 4 != 0 || in.len / 4 * 3 > sizeof(tmp) || !b64_canonical(in, &pad))
        return false;
    int n = EVP_DecodeBlock(tmp, (const unsigned char *)in.p, (int)in.len);
    if (n >= 0 && (size_t)n == in.len / 4 * 3) {
        size_t real = (size_t)n - pad;
        if (real >= min && real <= max) {
            memcpy(out, tmp, real);
            *outlen = real;
            ok = true;
        }
    }
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return ok;
}

/* ---- attribute cursor ---- */

static bool cur_peek(const struct cursor *c, char name)
{
    return c->left >= 2 && c->p[0] == name && c->p[1] == '=';
}

/* Reads any "<letter>=<value>" up to the next ',' or the end; the ',' stays unread. */
static bool cur_next(struct cursor *c, char *name, struct span *val)
{
    if (c->left < 2 || c->p[1] != '=')
        return false;
    char ch = c->p[0];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')))
        return false;
    const char *v = c->p + 2;
    const char *comma = memchr(v, ',', c->left - 2);
    size_t n = comma ? (size_t)(comma - v) : c->left - 2;
    *name = ch;
    *val = (struct span){v, n};
    c->p = v + n;
    c->left -= 2 + n;
    return true;
}

/* Reads "<name>=<value>"; false if the next attribute is not name. */
static bool cur_attr(struct cursor *c, char name, struct span *val)
{
    char got;
    return cur_peek(c, name) && cur_next(c, &got, val);
}

/* Consumes one ','. */
static bool cur_sep(struct cursor *c)
{
    if (c->left == 0 || c->p[0] != ',')
        return false;
    c->p++;
    c->left--;
    return true;
}

/* Skips optional trailing ",<letter>=<value>" extensions up to the end of the message. */
static bool cur_skip_extensions(struct cursor *c)
{
    char name;
    struct span val;
    while (c->left > 0)
        if (!cur_sep(c) || !cur_next(c, &name, &val))
            return false;
    return true;
}

/* ---- SCRAM maths ---- */

static bool hmac256(const uint8_t key[SCRAM_KEY_LEN], const void *data, size_t len,
                    uint8_t out[SCRAM_KEY_LEN])
{
    unsigned int outlen = 0;
    return HMAC(EVP_sha256(), key, SCRAM_KEY_LEN, data, len, out, &outlen) != NULL &&
           outlen == SCRAM_KEY_LEN;
}

bool scram_salt_key_from(const void *const *secrets, const size_t *lens, size_t n,
                         uint8_t key[SCRAM_KEY_LEN])
{
    static const char label[] = "lakeproxy unknown-user salt key v1";
    EVP_MD_CTX *md = n ? EVP_MD_CTX_new() : NULL;
    unsigned int out = 0;
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(md, label, sizeof(label)) == 1;
    for (size_t i = 0; ok && i < n; i++) {
        uint64_t len = lens[i];
        ok = EVP_DigestUpdate(md, &len, sizeof(len)) == 1 &&
             EVP_DigestUpdate(md, secrets[i], lens[i]) == 1;
    }
    ok = ok && EVP_DigestFinal_ex(md, key, &out) == 1 && out == SCRAM_KEY_LEN;
    EVP_MD_CTX_free(md);
    return ok;
}

bool scram_name_salt(const uint8_t key[SCRAM_KEY_LEN], const char *user, uint8_t *salt, size_t len)
{
    uint8_t mac[SCRAM_KEY_LEN];
    if (len > sizeof(mac) || !hmac256(key, user, strlen(user), mac))
        return false;
    memcpy(salt, mac, len);
    explicit_bzero(mac, sizeof(mac));
    return true;
}

/* The one of like[0..n) (those with iterations) whose shape the mock of user takes, picked by
 * HMAC(HMAC(key, user), "shape"); NULL when none has iterations or the HMAC fails. */
static const struct scram_verifier *mock_shape(const uint8_t key[SCRAM_KEY_LEN], const char *user,
                                               const struct scram_verifier *like, size_t n)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        m += like[i].iterations > 0;
    uint8_t mac[SCRAM_KEY_LEN], pick[SCRAM_KEY_LEN];
    if (m == 0 || !hmac256(key, user, strlen(user), mac) || !hmac256(mac, "shape", 5, pick))
        return NULL;
    explicit_bzero(mac, sizeof(mac));
    uint64_t h = 0;
    for (int i = 0; i < 8; i++)
        h = h << 8 | pick[i];
    size_t k = (size_t)(h % m);
    for (size_t i = 0; i < n; i++)
        if (like[i].iterations > 0 && k-- == 0)
            return &like[i];
    return NULL;
}

bool scram_mock_for_user(const struct scram_verifier *mock, const uint8_t key[SCRAM_KEY_LEN],
                         const char *user, const struct scram_verifier *like, size_t n,
                         struct scram_verifier *out)
{
    *out = *mock;
    const struct scram_verifier *shape = mock_shape(key, user, like, n);
    if (shape) {
        out->iterations = shape->iterations;
        out->salt_len = shape->salt_len;
    }
    out->salt_len = out->salt_len < SCRAM_KEY_LEN ? out->salt_len : SCRAM_KEY_LEN;
    return scram_name_salt(key, user, out->salt, out->salt_len);
}

/* SaltedPassword = Hi(password, salt, i), i.e. PBKDF2-HMAC-SHA-256. */
static bool scram_hi(const char *password, const uint8_t *salt, size_t salt_len, int iterations,
                     uint8_t out[SCRAM_KEY_LEN])
{
    size_t pwlen = strlen(password);
    if (pwlen > INT_MAX || salt_len > INT_MAX || iterations < 1)
        return false;
    return PKCS5_PBKDF2_HMAC(password, (int)pwlen, salt, (int)salt_len, iterations, EVP_sha256(),
                             SCRAM_KEY_LEN, out) == 1;
}

static bool scram_client_key(const uint8_t salted[SCRAM_KEY_LEN], uint8_t out[SCRAM_KEY_LEN])
{
    return hmac256(salted, "Client Key", 10, out);
}

static bool scram_server_key(const uint8_t salted[SCRAM_KEY_LEN], uint8_t out[SCRAM_KEY_LEN])
{
    return hmac256(salted, "Server Key", 10, out);
}

static bool sha256(const uint8_t *in, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
    return SHA256(in, len, out) != NULL;
}

/* Uses fixed (validated) when given, else a fresh random nonce written to buf. */
static bool pick_nonce(const char *fixed, char buf[NONCE_B64_LEN + 1], const char **nonce)
{
    uint8_t raw[SCRAM_NONCE_LEN];
    if (fixed) {
        size_t n = strnlen(fixed, SCRAM_MAX_NAME + 1);
        *nonce = fixed;
        return n <= SCRAM_MAX_NAME && nonce_valid((struct span){fixed, n});
    }
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return false;
    b64_encode(raw, sizeof(raw), buf);
    *nonce = buf;
    return true;
}

/* ---- verifiers ---- */

bool scram_make_verifier(const char *password, const uint8_t *salt, size_t salt_len, int iterations,
                         struct scram_verifier *out)
{
    uint8_t salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
    struct scram_verifier v;

    if (!password || !salt || !out || salt_len < 1 || salt_len > SCRAM_MAX_SALT || iterations < 1)
        return false;
    memset(&v, 0, sizeof(v));
    v.iterations = iterations;
    memcpy(v.salt, salt, salt_len);
    v.salt_len = salt_len;
    bool ok = scram_hi(password, salt, salt_len, iterations, salted) &&
              scram_client_key(salted, client_key) &&
              sha256(client_key, sizeof(client_key), v.stored_key) &&
              scram_server_key(salted, v.server_key);
    if (ok)
        *out = v;
    OPENSSL_cleanse(salted, sizeof(salted));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    OPENSSL_cleanse(&v, sizeof(v));
    return ok;
}

void scram_format_verifier(const struct scram_verifier *v, char *out, size_t outsz)
{
    char salt[B64_LEN(SCRAM_MAX_SALT) + 1], stored[KEY_B64_LEN + 1], server[KEY_B64_LEN + 1];

    if (!out || outsz == 0)
        return;
    out[0] = '\0';
    if (!v || v->iterations < 1 || v->salt_len < 1 || v->salt_len > SCRAM_MAX_SALT)
        return;
    b64_encode(v->salt, v->salt_len, salt);
    b64_encode(v->stored_key, SCRAM_KEY_LEN, stored);
    b64_encode(v->server_key, SCRAM_KEY_LEN, server);
    int n = snprintf(out, outsz, "SCRAM-SHA-256$%d:%s$%s:%s", v->iterations, salt, stored, server);
    if (n < 0 || (size_t)n >= outsz)
        OPENSSL_cleanse(out, outsz);
    OPENSSL_cleanse(stored, sizeof(stored));
    OPENSSL_cleanse(server, sizeof(server));
}

/* Cuts rest at the first sep: head gets what precedes it, rest what follows. */
static bool split_at(struct span *rest, char sep, struct span *head)
{
    const char *at = memchr(rest->p, sep, rest->len);
    if (!at)
        return false;
    *head = (struct span){rest->p, (size_t)(at - rest->p)};
    rest->len -= head->len + 1;
    rest->p = at + 1;
    return true;
}

bool scram_verifier_same(const struct scram_verifier *a, const struct scram_verifier *b)
{
    if (a->iterations != b->iterations || a->salt_len != b->salt_len ||
        a->salt_len > sizeof(a->salt))
        return false;
    return CRYPTO_memcmp(a->salt, b->salt, a->salt_len) == 0 &&
           CRYPTO_memcmp(a->stored_key, b->stored_key, sizeof(a->stored_key)) == 0 &&
           CRYPTO_memcmp(a->server_key, b->server_key, sizeof(a->server_key)) == 0;
}

bool scram_parse_verifier(const char *text, struct scram_verifier *out)
{
    static const char prefix[] = "SCRAM-SHA-256$";
    const size_t plen = sizeof(prefix) - 1;
    struct scram_verifier v;
    struct span iter, salt, stored, rest;
    size_t len, n;

    if (!text || !out)
        return false;
    len = strnlen(text, SCRAM_MAX_MSG + 1);
    if (len > SCRAM_MAX_MSG || len < plen || memcmp(text, prefix, plen) != 0)
        return false;
    memset(&v, 0, sizeof(v));
    rest = (struct span){text + plen, len - plen};
    bool ok = split_at(&rest, ':', &iter) && split_at(&rest, '$', &salt) &&
              split_at(&rest, ':', &stored) && parse_count(iter, INT_MAX, &v.iterations) &&
              b64_decode(salt, v.salt, 1, SCRAM_MAX_SALT, &v.salt_len) &&
              b64_decode(stored, v.stored_key, SCRAM_KEY_LEN, SCRAM_KEY_LEN, &n) &&
              b64_decode(rest, v.server_key, SCRAM_KEY_LEN, SCRAM_KEY_LEN, &n);
    if (ok)
        *out = v;
    OPENSSL_cleanse(&v, sizeof(v));
    return ok;
}

/* ---- server side ---- */

void scram_server_init(struct scram_server *s, const struct scram_verifier *v)
{
    memset(s, 0, sizeof(*s));
    if (v)
        s->v = *v;
}

void scram_server_offer_binding(struct scram_server *s, const uint8_t *data, size_t len)
{
    if (len > SCRAM_CBIND_MAX)
        return;
    memcpy(s->cbind, data, len);
    s->cbind_len = len;
}

bool scram_server_choose(struct scram_server *s, const char *mechanism)
{
    s->plus = strcmp(mechanism, "SCRAM-SHA-256-PLUS") == 0 && s->cbind_len > 0;
    return s->plus || strcmp(mechanism, "SCRAM-SHA-256") == 0;
}

void scram_server_free(struct scram_server *s)
{
    if (!s)
        return;
    free(s->client_first_bare);
    free(s->server_first);
    free(s->nonce);
    OPENSSL_cleanse(s, sizeof(*s));
}

/* The gs2 header that tls-server-end-point binding starts client-first with. */
static const char GS2_BINDING[] = "p=tls-server-end-point,,";

/* Reads the gs2 header: "n,,", "y,," or (SCRAM-SHA-256-PLUS) "p=tls-server-end-point,,"
 * (*flag = 'n', 'y' or 'p'), as the mechanism chosen and the offer allow. */
static bool parse_gs2_header(struct cursor *c, const struct scram_server *s, char *flag,
                             const char **err)
{
    size_t bl = sizeof(GS2_BINDING) - 1;
    if (c->left >= 1 && c->p[0] == 'p') {
        if (!s->plus)
            *err = "invalid SCRAM client-first-message: channel binding without "
                   "SCRAM-SHA-256-PLUS";
        else if (c->left < bl || memcmp(c->p, GS2_BINDING, bl) != 0)
            *err = "invalid SCRAM client-first-message: unsupported channel binding type "
                   "(tls-server-end-point only) or authorization identity";
        else {
            *flag = 'p';
            c->p += bl;
            c->left -= bl;
        }
        return *flag == 'p';
    }
    if (c->left < 3 || (c->p[0] != 'n' && c->p[0] != 'y') || c->p[1] != ',') {
        *err = "invalid SCRAM client-first-message: malformed gs2 header";
        return false;
    }
    if (c->p[2] != ',') {
        *err = c->p[2] == 'a'
                   ? "invalid SCRAM client-first-message: authorization identity is not supported"
                   : "invalid SCRAM client-first-message: malformed gs2 header";
        return false;
    }
    if (s->plus) {
        *err = "invalid SCRAM client-first-message: SCRAM-SHA-256-PLUS without channel binding";
        return false;
    }
    if (c->p[0] == 'y' && s->cbind_len > 0) { /* RFC 5802: a downgrade, or a broken client */
        *err = "SCRAM channel binding negotiation error: the client supports channel binding "
               "and thinks the server does not, but SCRAM-SHA-256-PLUS was offered";
        return false;
    }
    *flag = c->p[0];
    c->p += 3;
    c->left -= 3;
    return true;
}

/* Parses client-first-bare "n=<user>,r=<nonce>[,ext]*". The user name is ignored (PostgreSQL
 * takes it from the startup packet), so any value, even empty, is accepted. */
static bool parse_client_first_bare(struct cursor *c, struct span *nonce, const char **err)
{
    struct span user;
    if (cur_peek(c, 'm')) {
        *err = "invalid SCRAM client-first-message: unsupported mandatory extension";
        return false;
    }
    if (!cur_attr(c, 'n', &user)) {
        *err = "invalid SCRAM client-first-message: expected n= (user name)";
        return false;
    }
    if (!cur_sep(c) || !cur_attr(c, 'r', nonce) || !nonce_valid(*nonce)) {
        *err = "invalid SCRAM client-first-message: missing or invalid r= (nonce)";
        return false;
    }
    if (!cur_skip_extensions(c)) {
        *err = "invalid SCRAM client-first-message: garbage after nonce";
        return false;
    }
    return true;
}

/* Stores the exchange state and returns server-first "r=<nonce>,s=<salt>,i=<iter>" in *out. */
static bool server_first_build(struct scram_server *s, struct span bare, struct span cnonce,
                               const char *snonce, char **out, const char **err)
{
    char salt[B64_LEN(SCRAM_MAX_SALT) + 1];
    b64_encode(s->v.salt, s->v.salt_len, salt);
    char *nonce = str_printf("%.*s%s", (int)cnonce.len, cnonce.p, snonce);
    char *first = nonce ? str_printf("r=%s,s=%s,i=%d", nonce, salt, s->v.iterations) : NULL;
    char *copy = first ? mem_dup(first, strlen(first)) : NULL;
    char *cfb = mem_dup(bare.p, bare.len);
    if (!nonce || !first || !copy || !cfb) {
        free(nonce);
        free(first);
        free(copy);
        free(cfb);
        *err = ERR_OOM;
        return false;
    }
    s->nonce = nonce;
    s->server_first = first;
    s->client_first_bare = cfb;
    *out = copy;
    return true;
}

bool scram_server_handle_first(struct scram_server *s, const char *msg, size_t len,
                               const char *server_nonce_b64, char **out, const char **err)
{
    struct cursor c = {msg, len};
    struct span bare, cnonce;
    char flag, nonce_buf[NONCE_B64_LEN + 1];
    const char *snonce;

    *out = NULL;
    *err = NULL;
    if (s->state != SRV_EXPECT_FIRST) {
        *err = "SCRAM exchange is not expecting a client-first-message";
        return false;
    }
    s->state = SCRAM_FAILED;
    flag = 0;
    if ((*err = msg_defect(msg, len, CLIENT_FIRST_DEFECTS)) || !parse_gs2_header(&c, s, &flag, err))
        return false;
    bare = (struct span){c.p, c.left};
    if (!parse_client_first_bare(&c, &cnonce, err))
        return false;
    if (s->v.iterations < 1 || s->v.salt_len < 1 || s->v.salt_len > SCRAM_MAX_SALT) {
        *err = "SCRAM verifier is invalid";
        return false;
    }
    if (!pick_nonce(server_nonce_b64, nonce_buf, &snonce)) {
        *err = "could not make a valid SCRAM server nonce";
        return false;
    }
    if (!server_first_build(s, bare, cnonce, snonce, out, err))
        return false;
    s->cbind_flag = flag;
    s->state = SRV_EXPECT_FINAL;
    return true;
}

/* Splits client-final "c=<cb>,r=<nonce>[,ext]*,p=<proof>"; *without_proof is the length of
 * the part before ",p=", which goes into AuthMessage. */
static bool parse_client_final(const char *msg, size_t len, struct span *cb, struct span *nonce,
                               struct span *proof, size_t *without_proof, const char **err)
{
    struct cursor c = {msg, len};
    char name = 0;

    if (!cur_attr(&c, 'c', cb)) {
        *err = "invalid SCRAM client-final-message: expected c= (channel binding)";
        return false;
    }
    if (!cur_sep(&c) || !cur_attr(&c, 'r', nonce)) {
        *err = "invalid SCRAM client-final-message: expected r= (nonce)";
        return false;
    }
    while (name != 'p') {
        *without_proof = len - c.left;
        if (!cur_sep(&c) || !cur_next(&c, &name, proof)) {
            *err = "invalid SCRAM client-final-message: expected p= (proof)";
            return false;
        }
    }
    if (c.left != 0) {
        *err = "invalid SCRAM client-final-message: garbage after proof";
        return false;
    }
    return true;
}

/* Checks proof against StoredKey over AuthMessage and, if it holds, builds server-final. */
static bool server_check_proof(struct scram_server *s, const char *final_msg, size_t without_proof,
                               const uint8_t proof[SCRAM_KEY_LEN], char **out, const char **err)
{
    uint8_t sig[SCRAM_KEY_LEN], key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
    char sig_b64[KEY_B64_LEN + 1];
    bool ok = false;
    char *am = str_printf("%s,%s,%.*s", s->client_first_bare, s->server_first, (int)without_proof,
                          final_msg);

    *err = ERR_OOM;
    if (!am)
        return false;
    *err = ERR_CRYPTO;
    if (!hmac256(s->v.stored_key, am, strlen(am), sig))
        goto done;
    for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
        key[i] = proof[i] ^ sig[i];
    if (!sha256(key, sizeof(key), stored))
        goto done;
    *err = "invalid SCRAM client-final-message: proof does not match (wrong password)";
    if (!auth_equal_ct(stored, s->v.stored_key, SCRAM_KEY_LEN))
        goto done;
    *err = ERR_CRYPTO;
    if (!hmac256(s->v.server_key, am, strlen(am), sig))
        goto done;
    b64_encode(sig, sizeof(sig), sig_b64);
    *err = ERR_OOM;
    *out = str_printf("v=%s", sig_b64);
    ok = *out != NULL;
    if (ok)
        *err = NULL;
done:
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(sig, sizeof(sig));
    free(am);
    return ok;
}

/* Does c= (cb) carry client-first's gs2 header and, with binding, the data offered? */
static bool binding_matches(const struct scram_server *s, struct span cb)
{
    uint8_t raw[sizeof(GS2_BINDING) + SCRAM_CBIND_MAX];
    char want[B64_LEN(sizeof(raw)) + 1];
    if (s->cbind_flag != 'p')
        return span_eq(cb, s->cbind_flag == 'y' ? "eSws" : "biws");
    size_t bl = sizeof(GS2_BINDING) - 1;
    memcpy(raw, GS2_BINDING, bl);
    memcpy(raw + bl, s->cbind, s->cbind_len);
    b64_encode(raw, bl + s->cbind_len, want);
    return span_eq(cb, want);
}

bool scram_server_handle_final(struct scram_server *s, const char *msg, size_t len, char **out,
                               const char **err)
{
    struct span cb, nonce, proof_b64;
    size_t without_proof = 0, n;
    uint8_t proof[SCRAM_KEY_LEN];

    *out = NULL;
    *err = NULL;
    if (s->state != SRV_EXPECT_FINAL) {
        *err = "SCRAM exchange is not expecting a client-final-message";
        return false;
    }
    s->state = SCRAM_FAILED;
    if ((*err = msg_defect(msg, len, CLIENT_FINAL_DEFECTS)) ||
        !parse_client_final(msg, len, &cb, &nonce, &proof_b64, &without_proof, err))
        return false;
    /* c= is base64 of the gs2 header of client-first ("n,," or "y,,"), followed by the binding
     * data after "p=tls-server-end-point,," */
    if (!binding_matches(s, cb)) {
        *err = "invalid SCRAM client-final-message: channel binding mismatch";
        return false;
    }
    if (!span_eq(nonce, s->nonce)) {
        *err = "invalid SCRAM client-final-message: nonce mismatch";
        return false;
    }
    if (!b64_decode(proof_b64, proof, SCRAM_KEY_LEN, SCRAM_KEY_LEN, &n)) {
        *err = "invalid SCRAM client-final-message: malformed proof";
        return false;
    }
    if (!server_check_proof(s, msg, without_proof, proof, out, err))
        return false;
    s->state = SRV_DONE;
    return true;
}

/* ---- client side ---- */

/* RFC 5802 saslname: ',' and '=' become "=2C" and "=3D". NULL if too long or out of memory. */
static char *saslname_escape(const char *user)
{
    size_t len = strnlen(user, SCRAM_MAX_NAME + 1), j = 0;
    if (len > SCRAM_MAX_NAME)
        return NULL;
    char *s = malloc(3 * len + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (user[i] == ',' || user[i] == '=') {
            memcpy(s + j, user[i] == ',' ? "=2C" : "=3D", 3);
            j += 3;
        } else {
            s[j++] = user[i];
        }
    }
    s[j] = '\0';
    return s;
}

bool scram_client_first(struct scram_client *c, const char *user, const char *password,
                        const char *client_nonce_b64, char **out)
{
    char nonce_buf[NONCE_B64_LEN + 1];
    const char *nonce;

    if (!c || !user || !password || !out)
        return false;
    *out = NULL;
    if (c->state != CLI_INITIAL || c->password || c->client_first_bare)
        return false;
    if (!pick_nonce(client_nonce_b64, nonce_buf, &nonce))
        return false;
    char *user_esc = saslname_escape(user);
    char *bare = user_esc ? str_printf("n=%s,r=%s", user_esc, nonce) : NULL;
    char *msg = bare ? str_printf("n,,%s", bare) : NULL;
    char *pw = mem_dup(password, strlen(password));
    char *cnonce = mem_dup(nonce, strlen(nonce));
    free(user_esc);
    if (!bare || !msg || !pw || !cnonce) {
        free(bare);
        free(msg);
        free_secret(pw);
        free(cnonce);
        return false;
    }
    c->password = pw;
    c->client_nonce = cnonce;
    c->client_first_bare = bare;
    c->state = CLI_SENT_FIRST;
    *out = msg;
    return true;
}

/* Parses server-first "r=<nonce>,s=<salt>,i=<iter>" (extensions rejected, as libpq does).
 * The nonce must extend ours; i is bounded because Hi() runs synchronously. */
static bool parse_server_first(const char *cnonce, const char *msg, size_t len, struct span *nonce,
                               uint8_t *salt, size_t *salt_len, int *iter, const char **err)
{
    struct cursor c = {msg, len};
    struct span s, i;
    size_t cl = strlen(cnonce);

    *err = "invalid SCRAM server-first-message: unsupported mandatory extension";
    if (cur_peek(&c, 'm'))
        return false;
    *err = "invalid SCRAM server-first-message: missing or invalid r= (nonce)";
    if (!cur_attr(&c, 'r', nonce) || !nonce_valid(*nonce))
        return false;
    *err = "invalid SCRAM server-first-message: nonce does not extend the client nonce";
    if (nonce->len <= cl || memcmp(nonce->p, cnonce, cl) != 0)
        return false;
    *err = "invalid SCRAM server-first-message: missing or invalid s= (salt)";
    if (!cur_sep(&c) || !cur_attr(&c, 's', &s) || !b64_decode(s, salt, 1, SCRAM_MAX_SALT, salt_len))
        return false;
    *err = "invalid SCRAM server-first-message: missing or out-of-range i= (iteration count)";
    if (!cur_sep(&c) || !cur_attr(&c, 'i', &i) ||
        !parse_count(i, SCRAM_MAX_CLIENT_ITERATIONS, iter))
        return false;
    *err = "invalid SCRAM server-first-message: garbage after iteration count";
    if (c.left != 0)
        return false;
    *err = NULL;
    return true;
}

/* Computes the proof over AuthMessage and writes client-final "c=biws,r=<nonce>,p=<proof>". */
static bool client_build_final(struct scram_client *c, const char *server_first, size_t len,
                               struct span nonce, char **out, const char **err)
{
    uint8_t ck[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN];
    char proof_b64[KEY_B64_LEN + 1];
    char *head = str_printf("c=biws,r=%.*s", (int)nonce.len, nonce.p);
    char *am =
        head ? str_printf("%s,%.*s,%s", c->client_first_bare, (int)len, server_first, head) : NULL;
    bool ok = false;

    *err = ERR_OOM;
    if (!am)
        goto done;
    *err = ERR_CRYPTO;
    if (!scram_client_key(c->salted_password, ck) || !sha256(ck, sizeof(ck), stored) ||
        !hmac256(stored, am, strlen(am), sig))
        goto done;
    for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
        sig[i] ^= ck[i];
    b64_encode(sig, sizeof(sig), proof_b64);
    *err = ERR_OOM;
    *out = str_printf("%s,p=%s", head, proof_b64);
    if (!*out)
        goto done;
    c->auth_message = am;
    am = NULL;
    *err = NULL;
    ok = true;
done:
    OPENSSL_cleanse(ck, sizeof(ck));
    OPENSSL_cleanse(stored, sizeof(stored));
    OPENSSL_cleanse(sig, sizeof(sig));
    free(head);
    free(am);
    return ok;
}

bool scram_client_final(struct scram_client *c, const char *msg, size_t len, char **out,
                        const char **err)
{
    struct span nonce;
    uint8_t salt[SCRAM_MAX_SALT];
    size_t salt_len = 0;
    int iter = 0;

    *out = NULL;
    *err = NULL;
    if (c->state != CLI_SENT_FIRST) {
        *err = "SCRAM exchange is not expecting a server-first-message";
        return false;
    }
    c->state = SCRAM_FAILED;
    if ((*err = msg_defect(msg, len, SERVER_FIRST_DEFECTS)) ||
        !parse_server_first(c->client_nonce, msg, len, &nonce, salt, &salt_len, &iter, err))
        return false;
    if (!scram_hi(c->password, salt, salt_len, iter, c->salted_password)) {
        *err = ERR_CRYPTO;
        return false;
    }
    if (!client_build_final(c, msg, len, nonce, out, err))
        return false;
    c->state = CLI_SENT_FINAL;
    return true;
}

bool scram_client_unfinished(const struct scram_client *c)
{
    return c->state != CLI_INITIAL && c->state != CLI_VERIFIED;
}

bool scram_client_verify(struct scram_client *c, const char *msg, size_t len, const char **err)
{
    struct cursor cur = {msg, len};
    struct span v;
    uint8_t sig[SCRAM_KEY_LEN], key[SCRAM_KEY_LEN], expected[SCRAM_KEY_LEN];
    size_t n;

    *err = NULL;
    if (c->state != CLI_SENT_FINAL) {
        *err = "SCRAM exchange is not expecting a server-final-message";
        return false;
    }
    c->state = SCRAM_FAILED;
    if ((*err = msg_defect(msg, len, SERVER_FINAL_DEFECTS)))
        return false;
    if (cur_peek(&cur, 'e')) {
        *err = "SCRAM authentication failed: the server-final-message reports an error";
        return false;
    }
    if (!cur_attr(&cur, 'v', &v) || cur.left != 0 ||
        !b64_decode(v, sig, SCRAM_KEY_LEN, SCRAM_KEY_LEN, &n)) {
        *err = "invalid SCRAM server-final-message: expected only v=<base64 signature>";
        return false;
    }
    bool ok = scram_server_key(c->salted_password, key) &&
              hmac256(key, c->auth_message, strlen(c->auth_message), expected) &&
              auth_equal_ct(sig, expected, SCRAM_KEY_LEN);
    OPENSSL_cleanse(key, sizeof(key));
    if (!ok) {
        *err = "invalid SCRAM server-final-message: server signature does not match";
        return false;
    }
    c->state = CLI_VERIFIED;
    return true;
}

void scram_client_free(struct scram_client *c)
{
    if (!c)
        return;
    free_secret(c->password);
    free(c->client_nonce);
    free(c->client_first_bare);
    free(c->auth_message);
    OPENSSL_cleanse(c, sizeof(*c));
}

/* ---- md5 ---- */

/* hex(md5(a || b)) into hex[33]; streaming, so the password is never copied. */
static bool md5_hex2(const void *a, size_t alen, const void *b, size_t blen, char hex[33])
{
    static const char digits[] = "0123456789abcdef";
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
              EVP_DigestUpdate(ctx, a, alen) == 1 && EVP_DigestUpdate(ctx, b, blen) == 1 &&
              EVP_DigestFinal_ex(ctx, d, &dlen) == 1 && dlen == 16;
    EVP_MD_CTX_free(ctx);
    if (ok) {
        for (unsigned int i = 0; i < 16; i++) {
            hex[2 * i] = digits[d[i] >> 4];
            hex[2 * i + 1] = digits[d[i] & 15];
        }
        hex[32] = '\0';
    }
    OPENSSL_cleanse(d, sizeof(d));
    return ok;
}

void md5_password_response(const char *user, const char *password, const uint8_t salt[4],
                           char out[36])
{
    char inner[33];
    if (!out)
        return;
    out[0] = '\0';
    if (!user || !password || !salt)
        return;
    if (md5_hex2(password, strlen(password), user, strlen(user), inner) &&
        md5_hex2(inner, 32, salt, 4, out + 3))
        memcpy(out, "md5", 3);
    else
        out[0] = '\0';
    OPENSSL_cleanse(inner, sizeof(inner));
}

static bool is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

bool md5_verify_response(const char *stored_md5, const uint8_t salt[4], const char *response,
                         size_t response_len)
{
    char expected[36];
    if (!stored_md5 || !salt || !response || response_len != 35)
        return false;
    if (strnlen(stored_md5, 36) != 35 || memcmp(stored_md5, "md5", 3) != 0 ||
        !is_lower_hex(stored_md5 + 3, 32))
        return false;
    if (!md5_hex2(stored_md5 + 3, 32, salt, 4, expected + 3))
        return false;
    memcpy(expected, "md5", 3);
    bool ok = auth_equal_ct(expected, response, 35);
    OPENSSL_cleanse(expected, sizeof(expected));
    return ok;
}
