/* test_auth.c: unit tests for src/auth.c: SCRAM-SHA-256 against RFC 7677 on both sides,
 * hostile-message tables, verifier text, and PostgreSQL md5. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "auth.h"

/* RFC 7677 section 3 example exchange. */
#define RFC_USER "user"
#define RFC_PASSWORD "pencil"
#define RFC_SALT_B64 "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CNONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_NONCE RFC_CNONCE RFC_SNONCE
#define RFC_PROOF "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CNONCE
#define RFC_SERVER_FIRST "r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=4096"
#define RFC_CLIENT_FINAL "c=biws,r=" RFC_NONCE ",p=" RFC_PROOF
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/* 32 zero bytes in base64, a well-formed key for verifier texts. */
#define ZERO_KEY "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

/* A message with its exact length, so rows may carry embedded NULs. */
struct row {
    const char *name;
    const char *msg;
    size_t len;
};
#define ROW(name, lit)                                                                             \
    {                                                                                              \
        name, lit, sizeof(lit) - 1                                                                 \
    }

/* The RFC 7677 verifier, built by scram_make_verifier from the plain password. */
static struct scram_verifier rfc_verifier(void)
{
    uint8_t salt[32];
    struct scram_verifier v;
    int n = EVP_DecodeBlock(salt, (const unsigned char *)RFC_SALT_B64, 24);
    cr_assert_eq(n, 18); /* 16 bytes plus two padding bytes */
    cr_assert(scram_make_verifier(RFC_PASSWORD, salt, 16, 4096, &v));
    return v;
}

/* A server that has answered the RFC client-first and now expects client-final. */
static void server_at_final(struct scram_server *s, const struct scram_verifier *v)
{
    char *out = NULL;
    const char *err = NULL;
    scram_server_init(s, v);
    cr_assert(scram_server_handle_first(s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), RFC_SNONCE,
                                        &out, &err),
              "%s", err);
    free(out);
}

/* A client that has sent the RFC client-first and now expects server-first. */
static void client_at_first(struct scram_client *c)
{
    char *out = NULL;
    memset(c, 0, sizeof(*c));
    cr_assert(scram_client_first(c, RFC_USER, RFC_PASSWORD, RFC_CNONCE, &out));
    free(out);
}

/* A client that has sent the RFC client-final and now expects server-final. */
static void client_at_verify(struct scram_client *c)
{
    char *out = NULL;
    const char *err = NULL;
    client_at_first(c);
    cr_assert(scram_client_final(c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &out, &err), "%s",
              err);
    free(out);
}

Test(auth, scram_rfc7677_vector_server_side)
{
    struct scram_verifier v = rfc_verifier();
    struct scram_server s;
    char *out = NULL;
    const char *err = NULL;

    scram_server_init(&s, &v);
    cr_assert(scram_server_handle_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), RFC_SNONCE,
                                        &out, &err),
              "%s", err);
    cr_assert_str_eq(out, RFC_SERVER_FIRST);
    free(out);
    cr_assert(scram_server_handle_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &out, &err),
              "%s", err);
    cr_assert_str_eq(out, RFC_SERVER_FINAL);
    cr_assert_null(err);
    cr_assert_eq(s.state, 2);
    free(out);
    scram_server_free(&s);
}

Test(auth, scram_rfc7677_vector_client_side)
{
    struct scram_client c = {0};
    char *out = NULL;
    const char *err = NULL;

    cr_assert(scram_client_first(&c, RFC_USER, RFC_PASSWORD, RFC_CNONCE, &out));
    cr_assert_str_eq(out, RFC_CLIENT_FIRST);
    free(out);
    cr_assert(scram_client_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &out, &err), "%s",
              err);
    cr_assert_str_eq(out, RFC_CLIENT_FINAL);
    free(out);
    cr_assert(scram_client_verify(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), &err), "%s", err);
    cr_assert_eq(c.state, 3);
    cr_expect_not(scram_client_unfinished(&c), "verified: the server proved it");
    scram_client_free(&c);
}

/* An exchange begun and not ended by a verified server signature is unfinished: a server that
 * says AuthenticationOk then is refused (server.c). None begun is not (trust, md5). */
Test(auth, a_scram_exchange_is_unfinished_until_the_server_signature_verifies)
{
    struct scram_client c = {0};
    char *out = NULL;
    const char *err = NULL;
    cr_expect_not(scram_client_unfinished(&c), "no exchange begun");
    cr_assert(scram_client_first(&c, RFC_USER, RFC_PASSWORD, RFC_CNONCE, &out));
    free(out);
    cr_expect(scram_client_unfinished(&c), "after client-first");
    cr_assert(scram_client_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &out, &err), "%s",
              err);
    free(out);
    cr_expect(scram_client_unfinished(&c), "after client-final");
    const char bad[] = "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    cr_assert_not(scram_client_verify(&c, bad, strlen(bad), &err));
    cr_expect(scram_client_unfinished(&c), "after a signature that does not verify");
    scram_client_free(&c);
}

/* Runs a whole exchange between the two sides; true iff both accept. */
static bool round_trip(const char *user, const char *client_pw, const struct scram_verifier *v)
{
    struct scram_client c = {0};
    struct scram_server s;
    char *m1 = NULL, *m2 = NULL, *m3 = NULL, *m4 = NULL;
    const char *err = NULL;
    bool ok = false;

    scram_server_init(&s, v);
    cr_assert(scram_client_first(&c, user, client_pw, NULL, &m1));
    cr_assert(scram_server_handle_first(&s, m1, strlen(m1), NULL, &m2, &err), "%s", err);
    cr_assert(scram_client_final(&c, m2, strlen(m2), &m3, &err), "%s", err);
    if (scram_server_handle_final(&s, m3, strlen(m3), &m4, &err))
        ok = scram_client_verify(&c, m4, strlen(m4), &err);
    else
        cr_expect_null(m4);
    free(m1);
    free(m2);
    free(m3);
    free(m4);
    scram_client_free(&c);
    scram_server_free(&s);
    return ok;
}

Test(auth, scram_random_nonce_round_trip_empty_user)
{
    uint8_t salt[16] = "0123456789abcdef";
    struct scram_verifier v;
    struct scram_client c = {0};
    char *out = NULL;

    cr_assert(scram_make_verifier("s3cret pass", salt, sizeof(salt), 4096, &v));
    cr_assert(round_trip("", "s3cret pass", &v));
    /* libpq's form: empty user, 24 random bytes as 32 base64 characters. */
    cr_assert(scram_client_first(&c, "", "x", NULL, &out));
    cr_assert_eq(strlen(out), strlen("n,,n=,r=") + 32);
    cr_assert_eq(strncmp(out, "n,,n=,r=", 8), 0);
    free(out);
    scram_client_free(&c);
}

Test(auth, scram_user_name_is_escaped_and_accepted)
{
    struct scram_verifier v = rfc_verifier();
    struct scram_client c = {0};
    char *out = NULL;

    cr_assert(scram_client_first(&c, "a,b=c", RFC_PASSWORD, "abc", &out));
    cr_assert_str_eq(out, "n,,n=a=2Cb=3Dc,r=abc");
    free(out);
    scram_client_free(&c);
    cr_assert(round_trip("we,ird=name", RFC_PASSWORD, &v));
}

Test(auth, scram_wrong_password_rejected)
{
    struct scram_verifier v = rfc_verifier();
    cr_assert_not(round_trip("user", "pencil2", &v));
    cr_assert_not(round_trip("user", "", &v));
    cr_assert(round_trip("user", RFC_PASSWORD, &v));
}

/* Feeds one client-final to a fresh RFC server; returns its error (NULL if accepted). */
static const char *server_final_error(const char *msg, size_t len)
{
    struct scram_verifier v = rfc_verifier();
    struct scram_server s;
    char *out = NULL;
    const char *err = NULL;

    server_at_final(&s, &v);
    bool ok = scram_server_handle_final(&s, msg, len, &out, &err);
    cr_assert_eq(ok, err == NULL);
    if (!ok)
        cr_assert_null(out);
    free(out);
    scram_server_free(&s);
    return err;
}

Test(auth, scram_tampered_proof_rejected)
{
    /* Last data character of the proof changed: still valid base64, wrong proof. */
    const char msg[] = "c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVA=";
    const char *err = server_final_error(msg, strlen(msg));
    cr_assert_not_null(err);
    cr_assert(strstr(err, "proof"), "%s", err);
}

Test(auth, scram_tampered_nonce_rejected)
{
    const char msg[] = "c=biws,r=" RFC_CNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1,p=" RFC_PROOF;
    const char *err = server_final_error(msg, strlen(msg));
    cr_assert_not_null(err);
    cr_assert(strstr(err, "nonce mismatch"), "%s", err);

    /* The client refuses a server nonce that does not extend its own. */
    struct scram_client c;
    char *out = NULL;
    const char sf[] = "r=rOprNGfwEbeRWgbNEkqX" RFC_SNONCE ",s=" RFC_SALT_B64 ",i=4096";
    client_at_first(&c);
    cr_assert_not(scram_client_final(&c, sf, strlen(sf), &out, &err));
    cr_assert_null(out);
    cr_assert(strstr(err, "nonce"), "%s", err);
    scram_client_free(&c);
}

Test(auth, scram_tampered_server_signature_rejected)
{
    struct scram_client c;
    const char *err = NULL;
    const char bad[] = "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    /* Same bytes as the genuine signature, but with a non-zero discarded bit: not canonical. */
    const char noncanonical[] = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5=";

    client_at_verify(&c);
    cr_assert_not(scram_client_verify(&c, bad, strlen(bad), &err));
    cr_assert(strstr(err, "signature"), "%s", err);
    scram_client_free(&c);
    client_at_verify(&c);
    cr_assert_not(scram_client_verify(&c, noncanonical, strlen(noncanonical), &err));
    cr_assert_not_null(err);
    /* A failed exchange stays failed, even when the genuine signature arrives next. */
    cr_assert_not(scram_client_verify(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), &err));
    scram_client_free(&c);
}

Test(auth, scram_gs2_y_flag_requires_eSws)
{
    struct scram_verifier v = rfc_verifier();
    struct scram_server s;
    char *out = NULL;
    const char *err = NULL;
    const char first[] = "y,,n=,r=" RFC_CNONCE;
    const char biws[] = "c=biws,r=" RFC_NONCE ",p=" RFC_PROOF;
    const char esws[] = "c=eSws,r=" RFC_NONCE ",p=" RFC_PROOF;

    scram_server_init(&s, &v);
    cr_assert(scram_server_handle_first(&s, first, strlen(first), RFC_SNONCE, &out, &err), "%s",
              err);
    free(out);
    cr_assert_not(scram_server_handle_final(&s, biws, strlen(biws), &out, &err));
    cr_assert(strstr(err, "channel binding"), "%s", err);
    scram_server_free(&s);

    /* With the matching c=eSws the exchange gets as far as the proof (computed for "biws"). */
    scram_server_init(&s, &v);
    cr_assert(scram_server_handle_first(&s, first, strlen(first), RFC_SNONCE, &out, &err));
    free(out);
    cr_assert_not(scram_server_handle_final(&s, esws, strlen(esws), &out, &err));
    cr_assert(strstr(err, "proof"), "%s", err);
    scram_server_free(&s);
}

Test(auth, scram_malformed_client_first_rejected)
{
    static const struct row rows[] = {
        ROW("empty", ""),
        ROW("truncated gs2", "n"),
        ROW("gs2 only", "n,,"),
        ROW("missing r=", "n,,n=user"),
        ROW("missing r= after comma", "n,,n=user,"),
        ROW("channel binding p= (not offered)", "p=tls-server-end-point,,n=,r=abc"),
        ROW("authzid", "n,a=admin,n=,r=abc"),
        ROW("unknown gs2 flag", "x,,n=,r=abc"),
        ROW("mandatory extension", "n,,m=ext,n=,r=abc"),
        ROW("wrong order", "n,,r=abc,n=user"),
        ROW("empty nonce", "n,,n=user,r="),
        ROW("nonce with space", "n,,n=user,r=ab cd"),
        ROW("nonce with control char", "n,,n=user,r=ab\x01"),
        ROW("embedded NUL", "n,,n=user,r=ab\0cd"),
        ROW("NUL in user", "n,,n=us\0er,r=abcd"),
        ROW("extra garbage", "n,,n=user,r=abc,garbage"),
        ROW("trailing comma", "n,,n=user,r=abc,"),
        ROW("no equals", "n,,n,r=abc"),
        ROW("high-bit nonce", "n,,n=user,r=ab\xc3\xa9"),
    };
    struct scram_verifier v = rfc_verifier();

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct scram_server s;
        char *out = (char *)"sentinel";
        const char *err = NULL;
        scram_server_init(&s, &v);
        bool ok = scram_server_handle_first(&s, rows[i].msg, rows[i].len, NULL, &out, &err);
        cr_expect_not(ok, "accepted: %s", rows[i].name);
        cr_expect_not_null(err, "no error: %s", rows[i].name);
        cr_expect_null(out, "output on failure: %s", rows[i].name);
        if (ok)
            free(out);
        scram_server_free(&s);
    }
}

Test(auth, scram_valid_client_first_variants_accepted)
{
    static const struct row rows[] = {
        ROW("libpq form", "n,,n=,r=abc"),
        ROW("y flag", "y,,n=,r=abc"),
        ROW("any user name", "n,,n=*,r=abc"),
        ROW("escaped user name", "n,,n=a=2Cb,r=abc"),
        ROW("optional extension", "n,,n=user,r=abc,x=ext"),
    };
    struct scram_verifier v = rfc_verifier();

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct scram_server s;
        char *out = NULL;
        const char *err = NULL;
        scram_server_init(&s, &v);
        cr_expect(scram_server_handle_first(&s, rows[i].msg, rows[i].len, "xyz", &out, &err),
                  "rejected %s: %s", rows[i].name, err);
        cr_expect_str_eq(s.nonce, "abcxyz");
        free(out);
        scram_server_free(&s);
    }
}

Test(auth, scram_malformed_client_final_rejected)
{
    static const struct row rows[] = {
        ROW("empty", ""),
        ROW("truncated", "c=biws,r=rOpr"),
        ROW("missing r=", "c=biws,p=" RFC_PROOF),
        ROW("missing p=", "c=biws,r=" RFC_NONCE),
        ROW("missing c=", "r=" RFC_NONCE ",p=" RFC_PROOF),
        ROW("wrong order", "r=" RFC_NONCE ",c=biws,p=" RFC_PROOF),
        ROW("channel binding data",
            "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=" RFC_NONCE ",p=" RFC_PROOF),
        ROW("c= for y flag", "c=eSws,r=" RFC_NONCE ",p=" RFC_PROOF),
        ROW("bad base64 proof",
            "c=biws,r=" RFC_NONCE ",p=dHzb!apWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
        ROW("non-canonical base64 proof",
            "c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVR="),
        ROW("unpadded proof",
            "c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ"),
        ROW("short proof", "c=biws,r=" RFC_NONCE ",p=AAAA"),
        ROW("long proof", "c=biws,r=" RFC_NONCE ",p=" ZERO_KEY "AAAA"),
        ROW("empty proof", "c=biws,r=" RFC_NONCE ",p="),
        ROW("embedded NUL", "c=biws,r=" RFC_NONCE "\0,p=" RFC_PROOF),
        ROW("garbage after proof", "c=biws,r=" RFC_NONCE ",p=" RFC_PROOF ",x=y"),
        ROW("trailing comma", "c=biws,r=" RFC_NONCE ",p=" RFC_PROOF ","),
        ROW("client nonce only", "c=biws,r=" RFC_CNONCE ",p=" RFC_PROOF),
        ROW("nonce prefix", "c=biws,r=" RFC_NONCE "X,p=" RFC_PROOF),
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        cr_expect_not_null(server_final_error(rows[i].msg, rows[i].len), "accepted: %s",
                           rows[i].name);
    /* The untampered message passes through the same helper. */
    cr_assert_null(server_final_error(RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL)));
}

Test(auth, scram_malformed_server_first_rejected)
{
    static const struct row rows[] = {
        ROW("empty", ""),
        ROW("truncated", "r=" RFC_NONCE),
        ROW("truncated salt", "r=" RFC_NONCE ",s=W22ZaJ0"),
        ROW("missing r=", "s=" RFC_SALT_B64 ",i=4096"),
        ROW("missing i=", "r=" RFC_NONCE ",s=" RFC_SALT_B64),
        ROW("wrong order", "s=" RFC_SALT_B64 ",r=" RFC_NONCE ",i=4096"),
        ROW("mandatory extension", "m=x,r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=4096"),
        ROW("i=0", "r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=0"),
        ROW("negative i", "r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=-1"),
        ROW("huge i", "r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=10000001"),
        ROW("overflowing i", "r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=99999999999999999999999"),
        ROW("i with space", "r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i= 4096"),
        ROW("empty i", "r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i="),
        ROW("bad base64 salt", "r=" RFC_NONCE ",s=W22Z!J0SNY7soEsUEjb6gQ==,i=4096"),
        ROW("misplaced padding", "r=" RFC_NONCE ",s=W22=aJ0SNY7soEsUEjb6gQ==,i=4096"),
        ROW("empty salt", "r=" RFC_NONCE ",s=,i=4096"),
        ROW("embedded NUL", "r=" RFC_NONCE "\0,s=" RFC_SALT_B64 ",i=4096"),
        ROW("extra garbage", "r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=4096garbage"),
        ROW("extension after i", "r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=4096,x=y"),
        ROW("foreign nonce", "r=XXXXXXXXXXXXXXXXXXXXXXXX,s=" RFC_SALT_B64 ",i=4096"),
        ROW("no server nonce", "r=" RFC_CNONCE ",s=" RFC_SALT_B64 ",i=4096"),
        ROW("salt too long",
            "r=" RFC_NONCE ",s="
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            "AAAA,i=4096"),
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct scram_client c;
        char *out = (char *)"sentinel";
        const char *err = NULL;
        client_at_first(&c);
        bool ok = scram_client_final(&c, rows[i].msg, rows[i].len, &out, &err);
        cr_expect_not(ok, "accepted: %s", rows[i].name);
        cr_expect_not_null(err, "no error: %s", rows[i].name);
        cr_expect_null(out, "output on failure: %s", rows[i].name);
        if (ok)
            free(out);
        scram_client_free(&c);
    }
}

Test(auth, scram_iteration_bound_is_inclusive)
{
    /* 10,000,000 is the largest count a server may ask for; a salt of 128 bytes is allowed. */
    struct scram_client c;
    char *out = NULL;
    const char *err = NULL;
    const char big_salt[] = "r=" RFC_NONCE ",s="
                            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==,i=1";

    client_at_first(&c);
    cr_assert(scram_client_final(&c, big_salt, strlen(big_salt), &out, &err), "%s", err);
    free(out);
    scram_client_free(&c);
}

Test(auth, scram_malformed_server_final_rejected)
{
    static const struct row rows[] = {
        ROW("empty", ""),
        ROW("server error", "e=invalid-proof"),
        ROW("empty v=", "v="),
        ROW("bad base64", "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4"),
        ROW("short signature", "v=AAAA"),
        ROW("garbage after", RFC_SERVER_FINAL ",x=y"),
        ROW("embedded NUL", "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nL\0JRsjl95G4="),
        ROW("wrong attribute", "x=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct scram_client c;
        const char *err = NULL;
        client_at_verify(&c);
        cr_expect_not(scram_client_verify(&c, rows[i].msg, rows[i].len, &err), "accepted: %s",
                      rows[i].name);
        cr_expect_not_null(err, "no error: %s", rows[i].name);
        scram_client_free(&c);
    }
}

Test(auth, scram_huge_messages_rejected)
{
    size_t n = 1 << 20;
    char *big = malloc(n);
    struct scram_verifier v = rfc_verifier();
    struct scram_server s;
    struct scram_client c;
    char *out = NULL;
    const char *err = NULL;

    cr_assert_not_null(big);
    memset(big, 'a', n);
    memcpy(big, "n,,n=,r=", 8);
    scram_server_init(&s, &v);
    cr_assert_not(scram_server_handle_first(&s, big, n, NULL, &out, &err));
    cr_assert(strstr(err, "too long"), "%s", err);
    scram_server_free(&s);

    memcpy(big, "r=" RFC_CNONCE, strlen("r=" RFC_CNONCE));
    client_at_first(&c);
    cr_assert_not(scram_client_final(&c, big, n, &out, &err));
    cr_assert_null(out);
    scram_client_free(&c);
    free(big);
}

Test(auth, scram_wrong_state_calls_rejected)
{
    struct scram_verifier v = rfc_verifier();
    struct scram_server s;
    struct scram_client c = {0};
    char *out = NULL;
    const char *err = NULL;

    /* Server: final before first; first twice; final after done. */
    scram_server_init(&s, &v);
    cr_assert_not(
        scram_server_handle_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &out, &err));
    cr_assert_not_null(err);
    scram_server_free(&s);
    server_at_final(&s, &v);
    cr_assert_not(scram_server_handle_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), NULL,
                                            &out, &err));
    cr_assert(
        scram_server_handle_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &out, &err));
    free(out);
    cr_assert_not(
        scram_server_handle_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &out, &err));
    cr_assert_null(out);
    scram_server_free(&s);

    /* Server: a failed proof cannot be retried with the right one. */
    server_at_final(&s, &v);
    cr_assert_not(scram_server_handle_final(&s, "c=biws", 6, &out, &err));
    cr_assert_not(
        scram_server_handle_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &out, &err));
    cr_assert(strstr(err, "not expecting"), "%s", err);
    scram_server_free(&s);

    /* Client: final and verify before first; first twice; verify twice. */
    cr_assert_not(scram_client_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &out, &err));
    cr_assert_not(scram_client_verify(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), &err));
    cr_assert(scram_client_first(&c, RFC_USER, RFC_PASSWORD, RFC_CNONCE, &out));
    free(out);
    cr_assert_not(scram_client_first(&c, RFC_USER, RFC_PASSWORD, RFC_CNONCE, &out));
    cr_assert_null(out);
    cr_assert_not(scram_client_verify(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), &err));
    scram_client_free(&c);
    client_at_verify(&c);
    cr_assert(scram_client_verify(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), &err));
    cr_assert_not(scram_client_verify(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), &err));
    cr_assert_not(scram_client_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &out, &err));
    scram_client_free(&c);
}

Test(auth, scram_invalid_fixed_nonces_rejected)
{
    struct scram_verifier v = rfc_verifier();
    struct scram_server s;
    struct scram_client c = {0};
    char *out = NULL;
    const char *err = NULL;

    cr_assert_not(scram_client_first(&c, "", "pw", "has,comma", &out));
    cr_assert_not(scram_client_first(&c, "", "pw", "", &out));
    cr_assert_eq(c.state, 0);
    scram_server_init(&s, &v);
    cr_assert_not(scram_server_handle_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST),
                                            "sp ace", &out, &err));
    cr_assert_null(out);
    scram_server_free(&s);
}

Test(auth, scram_verifier_format_parse_round_trip)
{
    struct scram_verifier v = rfc_verifier(), back;
    char text[SCRAM_VERIFIER_BUFSZ], again[256];

    scram_format_verifier(&v, text, sizeof(text));
    cr_assert_eq(strncmp(text, "SCRAM-SHA-256$4096:" RFC_SALT_B64 "$", 44), 0, "%s", text);
    cr_assert(scram_parse_verifier(text, &back));
    cr_assert_eq(back.iterations, 4096);
    cr_assert_eq(back.salt_len, 16);
    cr_assert(auth_equal_ct(back.salt, v.salt, 16));
    cr_assert(auth_equal_ct(back.stored_key, v.stored_key, SCRAM_KEY_LEN));
    cr_assert(auth_equal_ct(back.server_key, v.server_key, SCRAM_KEY_LEN));
    scram_format_verifier(&back, again, sizeof(again));
    cr_assert_str_eq(again, text);

    /* The largest salt round-trips in SCRAM_VERIFIER_BUFSZ and does not fit in 256. */
    uint8_t salt[SCRAM_MAX_SALT];
    memset(salt, 0x5a, sizeof(salt));
    cr_assert(scram_make_verifier("pw", salt, sizeof(salt), 1, &v));
    scram_format_verifier(&v, text, sizeof(text));
    cr_assert(scram_parse_verifier(text, &back));
    cr_assert_eq(back.salt_len, SCRAM_MAX_SALT);
    scram_format_verifier(&v, again, sizeof(again));
    cr_assert_str_eq(again, "");
}

Test(auth, scram_make_verifier_rejects_bad_arguments)
{
    uint8_t salt[SCRAM_MAX_SALT + 1] = {0};
    struct scram_verifier v;
    cr_assert_not(scram_make_verifier("pw", salt, 0, 4096, &v));
    cr_assert_not(scram_make_verifier("pw", salt, SCRAM_MAX_SALT + 1, 4096, &v));
    cr_assert_not(scram_make_verifier("pw", salt, 16, 0, &v));
    cr_assert_not(scram_make_verifier("pw", salt, 16, -5, &v));
    cr_assert_not(scram_make_verifier(NULL, salt, 16, 4096, &v));
}

Test(auth, scram_malformed_verifiers_rejected)
{
    static const char *const bad[] = {
        "",
        "SCRAM-SHA-256",
        "SCRAM-SHA-256$",
        "SCRAM-SHA-1$4096:" RFC_SALT_B64 "$" ZERO_KEY ":" ZERO_KEY,
        "scram-sha-256$4096:" RFC_SALT_B64 "$" ZERO_KEY ":" ZERO_KEY,
        "md553f48b7c4b76a86ce72276c5755f217d",
        "SCRAM-SHA-256$0:" RFC_SALT_B64 "$" ZERO_KEY ":" ZERO_KEY,
        "SCRAM-SHA-256$-1:" RFC_SALT_B64 "$" ZERO_KEY ":" ZERO_KEY,
        "SCRAM-SHA-256$abc:" RFC_SALT_B64 "$" ZERO_KEY ":" ZERO_KEY,
        "SCRAM-SHA-256$99999999999:" RFC_SALT_B64 "$" ZERO_KEY ":" ZERO_KEY,
        "SCRAM-SHA-256$:" RFC_SALT_B64 "$" ZERO_KEY ":" ZERO_KEY,
        "SCRAM-SHA-256$4096:$" ZERO_KEY ":" ZERO_KEY,
        "SCRAM-SHA-256$4096:W22Z!J0SNY7soEsUEjb6gQ==$" ZERO_KEY ":" ZERO_KEY,
        "SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" RFC_SALT_B64 ":" ZERO_KEY,
        "SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" ZERO_KEY ":" RFC_SALT_B64,
        "SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" ZERO_KEY,
        "SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" ZERO_KEY ":" ZERO_KEY "x",
        "SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" ZERO_KEY ":" ZERO_KEY "$",
        "SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" ZERO_KEY ":" ZERO_KEY ":" ZERO_KEY,
        "SCRAM-SHA-256$4096$" RFC_SALT_B64 "$" ZERO_KEY ":" ZERO_KEY,
        "SCRAM-SHA-256$4096:" RFC_SALT_B64 "$ " ZERO_KEY ":" ZERO_KEY,
    };
    struct scram_verifier v;

    cr_assert(
        scram_parse_verifier("SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" ZERO_KEY ":" ZERO_KEY, &v));
    cr_assert_not(scram_parse_verifier(NULL, &v));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_not(scram_parse_verifier(bad[i], &v), "accepted: \"%s\"", bad[i]);
}

/* hex(md5(a || b)), computed here with EVP_Q_digest, independently of src/auth.c. */
static void test_md5_hex(const void *a, size_t alen, const void *b, size_t blen, char hex[33])
{
    uint8_t buf[256], d[16];
    size_t dlen = 0;
    cr_assert(alen + blen <= sizeof(buf));
    memcpy(buf, a, alen);
    memcpy(buf + alen, b, blen);
    cr_assert(EVP_Q_digest(NULL, "MD5", NULL, buf, alen + blen, d, &dlen));
    cr_assert_eq(dlen, 16);
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

Test(auth, md5_response_known_values)
{
    const uint8_t salt[4] = {0x01, 0x02, 0x03, 0x04};
    const uint8_t salt2[4] = {0xde, 0xad, 0xbe, 0xef};
    char out[36], inner[33], expected[36];

    md5_password_response("postgres", "secret", salt, out);
    test_md5_hex("secret", 6, "postgres", 8, inner);
    memcpy(expected, "md5", 3);
    test_md5_hex(inner, 32, salt, 4, expected + 3);
    cr_assert_str_eq(out, expected);
    /* Literal values from md5sum(1):
     *   H=$(printf '%s' secretpostgres | md5sum); printf '%s\x01\x02\x03\x04' "$H" | md5sum */
    cr_assert_str_eq(inner, "53f48b7c4b76a86ce72276c5755f217d");
    cr_assert_str_eq(out, "md5bb41a296aab6baccb36ff243a562abff");
    md5_password_response("alice", "pencil", salt2, out);
    cr_assert_str_eq(out, "md589ac9dabb63a4f0b959fff1b8cff5d71");
}

Test(auth, md5_verify_response_accepts_right_rejects_wrong)
{
    const uint8_t salt[4] = {0x01, 0x02, 0x03, 0x04};
    const uint8_t other_salt[4] = {0x01, 0x02, 0x03, 0x05};
    const char *stored = "md553f48b7c4b76a86ce72276c5755f217d";
    const char *right = "md5bb41a296aab6baccb36ff243a562abff";
    char buf[64];

    cr_assert(md5_verify_response(stored, salt, right, 35));
    cr_assert_not(md5_verify_response(stored, other_salt, right, 35));
    strcpy(buf, right);
    buf[34] = 'e';
    cr_assert_not(md5_verify_response(stored, salt, buf, 35));
    cr_assert_not(md5_verify_response(stored, salt, right, 34));
    snprintf(buf, sizeof(buf), "%sa", right);
    cr_assert_not(md5_verify_response(stored, salt, buf, 36));
    cr_assert_not(md5_verify_response(stored, salt, "", 0));
    cr_assert_not(md5_verify_response(stored, salt, "md5", 3));
    /* The stored hash must itself be well formed. */
    cr_assert_not(md5_verify_response("md553f48b7c4b76a86ce72276c5755f217", salt, right, 35));
    cr_assert_not(md5_verify_response("md553F48B7C4B76A86CE72276C5755F217D", salt, right, 35));
    cr_assert_not(md5_verify_response("SCRAM-SHA-256$4096:abc", salt, right, 35));
    cr_assert_not(md5_verify_response("md553f48b7c4b76a86ce72276c5755f217dX", salt, right, 35));
}

Test(auth, auth_equal_ct)
{
    cr_assert(auth_equal_ct("abcdef", "abcdef", 6));
    cr_assert_not(auth_equal_ct("abcdef", "abcdeg", 6));
    cr_assert_not(auth_equal_ct("xbcdef", "abcdef", 6));
    cr_assert(auth_equal_ct("abc", "abd", 2));
    cr_assert(auth_equal_ct("a", "b", 0));
}

/* A review: every unknown user got the same salt, so comparing salts told real names from
 * unknown ones. Each name now gets one of its own, the same at every attempt. */
Test(auth, unknown_users_each_get_a_stable_salt_of_their_own)
{
    uint8_t salt[16] = "0123456789abcdef", key[SCRAM_KEY_LEN], other_key[SCRAM_KEY_LEN];
    struct scram_verifier mock, a1, a2, b, a_other;
    memset(key, 7, sizeof(key));
    memset(other_key, 8, sizeof(other_key));
    cr_assert(scram_make_verifier("nobody's", salt, sizeof(salt), 4096, &mock));
    cr_assert(scram_mock_for_user(&mock, key, "nobody1", NULL, 0, &a1));
    cr_assert(scram_mock_for_user(&mock, key, "nobody1", NULL, 0, &a2));
    cr_assert(scram_mock_for_user(&mock, key, "nobody2", NULL, 0, &b));
    cr_assert(scram_mock_for_user(&mock, other_key, "nobody1", NULL, 0, &a_other));
    cr_expect_eq(a1.salt_len, 16, "as long as a real user's");
    cr_expect_eq(a1.iterations, 4096);
    cr_expect(memcmp(a1.salt, a2.salt, 16) == 0, "the same name, the same salt");
    cr_expect(memcmp(a1.salt, b.salt, 16) != 0, "another name, another salt");
    cr_expect(memcmp(a1.salt, mock.salt, 16) != 0, "not the shared one");
    cr_expect(memcmp(a1.salt, a_other.salt, 16) != 0, "the key decides: not guessable");
    cr_expect(memcmp(a1.stored_key, mock.stored_key, SCRAM_KEY_LEN) == 0,
              "keys nobody has a password for");
}

/* Red team 6: a configured verifier made with other than PostgreSQL's defaults (a 17-byte salt,
 * 10000 iterations) stood out against the mock's 16 bytes and 4096. Unknown names now take the
 * shapes of the configured verifiers, each as often as it occurs among them (entries with no
 * iterations, users without a verifier, are none), the same at every attempt. */
Test(auth, unknown_users_take_the_shapes_of_the_configured_verifiers)
{
    uint8_t salt[17] = "0123456789abcdefg", key[SCRAM_KEY_LEN];
    struct scram_verifier mock, like[4] = {{0}}, v, again;
    memset(key, 7, sizeof(key));
    cr_assert(scram_make_verifier("nobody's", salt, 16, 4096, &mock));
    cr_assert(scram_make_verifier("a", salt, 16, 4096, &like[0]));
    cr_assert(scram_make_verifier("b", salt, 17, 10000, &like[2])); /* like[1], like[3]: none */
    cr_assert(scram_make_verifier("c", salt, 17, 10000, &like[3]));
    int odd = 0;
    char name[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof(name), "nobody%d", i);
        cr_assert(scram_mock_for_user(&mock, key, name, like, 4, &v));
        cr_assert((v.salt_len == 16 && v.iterations == 4096) ||
                      (v.salt_len == 17 && v.iterations == 10000),
                  "%s: %zu bytes, %d iterations", name, v.salt_len, v.iterations);
        odd += v.salt_len == 17;
        cr_assert(scram_mock_for_user(&mock, key, name, like, 4, &again));
        cr_assert(again.salt_len == v.salt_len && again.iterations == v.iterations &&
                      memcmp(again.salt, v.salt, v.salt_len) == 0,
                  "the same name, the same shape and salt");
    }
    cr_expect(odd > 1800 && odd < 2200, "two in three take the 17-byte shape: %d of 3000", odd);
}

Test(auth, the_salt_key_follows_the_configurations_secrets)
{
    const void *secrets[2] = {"alice-secret", "server-secret"},
               *swapped[2] = {"alice-secre", "tserver-secret"};
    size_t lens[2] = {12, 13}, swapped_lens[2] = {11, 14};
    uint8_t k1[SCRAM_KEY_LEN], k2[SCRAM_KEY_LEN], k3[SCRAM_KEY_LEN], k4[SCRAM_KEY_LEN];
    cr_assert(scram_salt_key_from(secrets, lens, 2, k1));
    cr_assert(scram_salt_key_from(secrets, lens, 2, k2));
    cr_assert(scram_salt_key_from(secrets, lens, 1, k3));
    cr_assert(scram_salt_key_from(swapped, swapped_lens, 2, k4));
    cr_expect(memcmp(k1, k2, sizeof(k1)) == 0, "the same secrets, the same key (a restart)");
    cr_expect(memcmp(k1, k3, sizeof(k1)) != 0, "another set, another key");
    cr_expect(memcmp(k1, k4, sizeof(k1)) != 0, "lengths count: a byte moved is another key");
    cr_expect_not(scram_salt_key_from(secrets, lens, 0, k3), "no secrets: no key (random then)");
}

/* ---- SCRAM-SHA-256-PLUS (tls-server-end-point channel binding) ---- */

#include <openssl/hmac.h>

/* client-final for the RFC user's password over server-first `sf` (after client-first-bare
 * `bare`), with c= the base64 of `cbind` (cblen bytes): the proof a real client computes. */
static void bound_final(const char *bare, const char *sf, const uint8_t *cbind, size_t cblen,
                        char *out, size_t outsz)
{
    uint8_t salt[32], salted[32], ckey[32], stored[32], sig[32], proof[32];
    char c64[256], p64[64], head[400], am[2048];
    unsigned n = 0;
    int sl = EVP_DecodeBlock(salt, (const unsigned char *)RFC_SALT_B64, 24) - 2;
    cr_assert(PKCS5_PBKDF2_HMAC(RFC_PASSWORD, 6, salt, sl, 4096, EVP_sha256(), 32, salted));
    cr_assert(HMAC(EVP_sha256(), salted, 32, (const uint8_t *)"Client Key", 10, ckey, &n));
    EVP_Digest(ckey, 32, stored, &n, EVP_sha256(), NULL);
    EVP_EncodeBlock((unsigned char *)c64, cbind, (int)cblen);
    const char *nonce = strstr(sf, "r=") + 2;
    snprintf(head, sizeof(head), "c=%s,r=%.*s", c64, (int)(strchr(nonce, ',') - nonce), nonce);
    snprintf(am, sizeof(am), "%s,%s,%s", bare, sf, head);
    cr_assert(HMAC(EVP_sha256(), stored, 32, (const uint8_t *)am, strlen(am), sig, &n));
    for (int i = 0; i < 32; i++)
        proof[i] = ckey[i] ^ sig[i];
    EVP_EncodeBlock((unsigned char *)p64, proof, 32);
    snprintf(out, outsz, "%s,p=%s", head, p64);
}

/* The gs2 header and binding data a SCRAM-SHA-256-PLUS client binds with (in raw). */
static size_t binding_of(const uint8_t *data, size_t len, uint8_t *raw)
{
    static const char gs2[] = "p=tls-server-end-point,,";
    memcpy(raw, gs2, sizeof(gs2) - 1);
    memcpy(raw + sizeof(gs2) - 1, data, len);
    return sizeof(gs2) - 1 + len;
}

Test(auth, scram_plus_binds_the_exchange_to_the_certificate_hash)
{
    struct scram_verifier v = rfc_verifier();
    uint8_t cert_hash[32], other[32], raw[96];
    memset(cert_hash, 0xab, sizeof(cert_hash));
    memset(other, 0xcd, sizeof(other));
    const char first[] = "p=tls-server-end-point,,n=,r=" RFC_CNONCE;
    for (int wrong = 0; wrong < 2; wrong++) {
        struct scram_server s;
        char *out = NULL, final[1024];
        const char *err = NULL;
        scram_server_init(&s, &v);
        scram_server_offer_binding(&s, cert_hash, sizeof(cert_hash));
        cr_assert(scram_server_choose(&s, "SCRAM-SHA-256-PLUS"));
        cr_assert(scram_server_handle_first(&s, first, strlen(first), RFC_SNONCE, &out, &err), "%s",
                  err);
        /* the client binds to the certificate it saw: another one (a man in the middle's) fails,
         * though its proof is right for what it sent */
        size_t n = binding_of(wrong ? other : cert_hash, 32, raw);
        bound_final("n=,r=" RFC_CNONCE, out, raw, n, final, sizeof(final));
        free(out);
        bool ok = scram_server_handle_final(&s, final, strlen(final), &out, &err);
        cr_expect_eq(ok, !wrong, "%s: %s", wrong ? "another certificate" : "its own", err);
        if (wrong)
            cr_expect(err && strstr(err, "channel binding mismatch"), "%s", err);
        free(out);
        scram_server_free(&s);
    }
}

Test(auth, scram_plus_negotiation_is_checked)
{
    struct scram_verifier v = rfc_verifier();
    uint8_t cert_hash[32];
    memset(cert_hash, 0xab, sizeof(cert_hash));
    static const struct {
        bool offered;
        const char *mech, *first, *why;
    } rows[] = {
        /* offered, but the client says it could bind and saw no offer: stripped by someone */
        {true, "SCRAM-SHA-256", "y,,n=,r=abc", "negotiation"},
        {true, "SCRAM-SHA-256-PLUS", "n,,n=,r=abc", "without channel binding"},
        {true, "SCRAM-SHA-256", "p=tls-server-end-point,,n=,r=abc", "without SCRAM-SHA-256-PLUS"},
        {true, "SCRAM-SHA-256-PLUS", "p=tls-unique,,n=,r=abc", "tls-server-end-point only"},
        {true, "SCRAM-SHA-256-PLUS", "p=tls-server-end-point,a=x,n=,r=abc", "authorization"},
        {false, "SCRAM-SHA-256", "p=tls-server-end-point,,n=,r=abc", "without SCRAM-SHA-256-PLUS"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct scram_server s;
        char *out = NULL;
        const char *err = NULL;
        scram_server_init(&s, &v);
        if (rows[i].offered)
            scram_server_offer_binding(&s, cert_hash, sizeof(cert_hash));
        cr_assert(scram_server_choose(&s, rows[i].mech));
        cr_expect_not(
            scram_server_handle_first(&s, rows[i].first, strlen(rows[i].first), NULL, &out, &err),
            "%s accepted", rows[i].first);
        cr_expect(err && strstr(err, rows[i].why), "%s: %s", rows[i].first, err);
        free(out);
        scram_server_free(&s);
    }
    /* not offered (no TLS): -PLUS is not a mechanism to choose; "y" is fine then */
    struct scram_server s;
    char *out = NULL;
    const char *err = NULL;
    scram_server_init(&s, &v);
    cr_expect_not(scram_server_choose(&s, "SCRAM-SHA-256-PLUS"));
    cr_expect_not(scram_server_choose(&s, "SCRAM-SHA-1"));
    cr_assert(scram_server_choose(&s, "SCRAM-SHA-256"));
    cr_expect(scram_server_handle_first(&s, "y,,n=,r=abc", 11, NULL, &out, &err), "%s", err);
    free(out);
    scram_server_free(&s);
}
