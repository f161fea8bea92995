/* auth.h: password authentication maths: SCRAM-SHA-256 (RFC 5802/7677) on both sides, and md5.
 * Pure functions on strings; no I/O. The messages are the SASL payloads PostgreSQL carries in
 * SASLInitialResponse / AuthenticationSASLContinue / AuthenticationSASLFinal. */
#ifndef LAKEPROXY_AUTH_H
#define LAKEPROXY_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_KEY_LEN 32
#define SCRAM_MAX_SALT 128
#define SCRAM_NONCE_LEN 24 /* random bytes before base64 */
#define SCRAM_DEFAULT_ITERATIONS 4096
#define SCRAM_VERIFIER_BUFSZ 320 /* fits any verifier text scram_format_verifier writes */

/* A stored verifier, as in pg_authid.rolpassword: SCRAM-SHA-256$iter:salt$stored:server */
struct scram_verifier {
    int iterations;
    uint8_t salt[SCRAM_MAX_SALT];
    size_t salt_len;
    uint8_t stored_key[SCRAM_KEY_LEN];
    uint8_t server_key[SCRAM_KEY_LEN];
};

/* Are a and b the same verifier (iterations, salt and keys)? In constant time. */
bool scram_verifier_same(const struct scram_verifier *a, const struct scram_verifier *b);

/* Parses "SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>". False on any defect. */
bool scram_parse_verifier(const char *text, struct scram_verifier *out);

/* Derives a verifier from a plain password (used for `password:` users and in tests). */
bool scram_make_verifier(const char *password, const uint8_t *salt, size_t salt_len, int iterations,
                         struct scram_verifier *out);

/* The verifier an unknown user is answered with: mock's keys (nobody's password) with a salt of
 * the user's own, HMAC-SHA-256(key, user), as stable as a real user's: a probe that compares
 * salts cannot tell unknown names from real ones (PostgreSQL does the same). Its iteration
 * count and salt length (at most 32 bytes) are those of one of the n verifiers `like` (entries
 * with 0 iterations are none), picked by the name, keyed, as often as each occurs among them:
 * a verifier made with other than PostgreSQL's defaults does not stand out; mock's own when
 * there are none. False when the HMAC fails. */
bool scram_mock_for_user(const struct scram_verifier *mock, const uint8_t key[SCRAM_KEY_LEN],
                         const char *user, const struct scram_verifier *like, size_t n,
                         struct scram_verifier *out);

/* A salt key (for scram_name_salt) derived from secrets that stay the same while the
 * configuration does (n of them, each lens[i] bytes): SHA-256 over a label and each secret
 * with its length. Unknown names' salts then stay the same across restarts, as PostgreSQL's
 * do, as real users' verifiers do. False when n is 0 or hashing fails. */
bool scram_salt_key_from(const void *const *secrets, const size_t *lens, size_t n,
                         uint8_t key[SCRAM_KEY_LEN]);

/* The salt of user's name: the first len (<= SCRAM_KEY_LEN) bytes of HMAC-SHA-256(key, user).
 * An unknown name's mock verifier and a plain `password:` user's verifier both use it, so
 * their salts change alike (at a restart, never at a reload). */
bool scram_name_salt(const uint8_t key[SCRAM_KEY_LEN], const char *user, uint8_t *salt, size_t len);

/* Formats a verifier in pg_authid form into out (size >= 256, enough for salts up to 105 bytes;
 * SCRAM_VERIFIER_BUFSZ fits any). Writes "" if v is invalid or the text does not fit. */
void scram_format_verifier(const struct scram_verifier *v, char *out, size_t outsz);

/* ---- server side: the proxy verifies a connecting client ---- */
/* tls-server-end-point channel binding data: a hash of the server's certificate (RFC 5929:
 * its signature's hash, SHA-256 for MD5 and SHA-1), at most SHA-512's. */
#define SCRAM_CBIND_MAX 64

struct scram_server {
    struct scram_verifier v;
    char *client_first_bare;        /* "n=...,r=..." */
    char *server_first;             /* "r=...,s=...,i=..." */
    char *nonce;                    /* client nonce + server nonce */
    char cbind_flag;                /* gs2 flag of client-first, 'n', 'y' or 'p'; c= must echo it */
    bool plus;                      /* the client chose SCRAM-SHA-256-PLUS */
    uint8_t cbind[SCRAM_CBIND_MAX]; /* the binding data offered (TLS), cbind_len bytes (0: none,
                                       SCRAM-SHA-256-PLUS not offered) */
    size_t cbind_len;
    int state; /* 0 = expect client-first, 1 = expect client-final, 2 = done, -1 = failed */
};

/* Starts an exchange against verifier v. */
void scram_server_init(struct scram_server *s, const struct scram_verifier *v);

/* Offers SCRAM-SHA-256-PLUS with tls-server-end-point binding data (len <= SCRAM_CBIND_MAX):
 * call after scram_server_init on a TLS connection. A client that then says it could bind but
 * saw no -PLUS offered ("y") is refused: something between them removed the offer. */
void scram_server_offer_binding(struct scram_server *s, const uint8_t *data, size_t len);

/* The mechanism the client chose: SCRAM-SHA-256, or SCRAM-SHA-256-PLUS when it was offered.
 * False for any other. */
bool scram_server_choose(struct scram_server *s, const char *mechanism);

/* Handles client-first-message (len bytes, not NUL-terminated). On success *out is a malloc'd
 * server-first-message. server_nonce_b64 may be NULL (random) or a fixed value for tests.
 * On failure returns false and *err says why (static string). */
bool scram_server_handle_first(struct scram_server *s, const char *msg, size_t len,
                               const char *server_nonce_b64, char **out, const char **err);

/* Handles client-final-message; checks channel binding (the gs2 header, and the binding data
 * after "p=tls-server-end-point"), nonce and proof (constant time).
 * On success *out is a malloc'd server-final-message "v=...". */
bool scram_server_handle_final(struct scram_server *s, const char *msg, size_t len, char **out,
                               const char **err);

void scram_server_free(struct scram_server *s);

/* ---- client side: the proxy logs in to a PostgreSQL server ---- */
struct scram_client {
    char *password;
    char *client_nonce;
    char *client_first_bare;
    uint8_t salted_password[SCRAM_KEY_LEN];
    char *auth_message;
    int state; /* 0 = initial, 1 = sent first, 2 = sent final, 3 = verified, -1 = failed */
};

/* Builds client-first-message "n,,n=<user>,r=<nonce>" (malloc'd into *out); c must be zeroed
 * first (struct scram_client c = {0}). The proxy passes user "" as libpq does (the server takes
 * the name from the startup packet); tests pass the RFC 7677 "user". client_nonce_b64 may be
 * NULL (random) or fixed for tests. */
bool scram_client_first(struct scram_client *c, const char *user, const char *password,
                        const char *client_nonce_b64, char **out);

/* Handles server-first-message and builds client-final-message (malloc'd into *out). */
bool scram_client_final(struct scram_client *c, const char *msg, size_t len, char **out,
                        const char **err);

/* Checks the server's signature in server-final-message (constant time). */
bool scram_client_verify(struct scram_client *c, const char *msg, size_t len, const char **err);

/* Was an exchange begun and not ended by a verified server signature? (A server that says
 * AuthenticationOk then has not proved it knows the password.) */
bool scram_client_unfinished(const struct scram_client *c);

/* Wipes the password and frees everything. */
void scram_client_free(struct scram_client *c);

/* ---- md5 (PostgreSQL's "md5" || md5(md5(password || user) || salt)) ---- */

/* Writes the 35-character response (+NUL) a client sends for AuthenticationMD5Password. */
void md5_password_response(const char *user, const char *password, const uint8_t salt[4],
                           char out[36]);

/* Checks a client's md5 response against a stored "md5<32 hex>" hash, in constant time. */
bool md5_verify_response(const char *stored_md5, const uint8_t salt[4], const char *response,
                         size_t response_len);

/* Constant-time equality of two byte strings of the same length. */
bool auth_equal_ct(const void *a, const void *b, size_t len);

#endif
