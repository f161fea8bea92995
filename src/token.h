/* token.h: pure helpers for rotating credentials: parsing provider answers (plain text or
 * JSON), RFC 3339 times, the refresh schedule, retry backoff and token fingerprints. No I/O. */
#ifndef LAKEPROXY_TOKEN_H
#define LAKEPROXY_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Longest token accepted from any provider (Databricks JWTs are a few kilobytes). */
#define TOKEN_MAX_LEN (64 * 1024)

/* A parsed provider answer. token is heap memory owned by the caller: free it with
 * token_free, which wipes it. expires is 0 when the answer did not say. */
struct token_answer {
    char *token;
    time_t expires;
};

void token_free(char *token);
/* Is t (len bytes) printable ASCII without spaces, as a token must be (it goes into a
 * PasswordMessage, or an HTTP header)? */
bool token_printable(const char *t, size_t len);
/* Wipes and frees the answer's token. */
void token_answer_clear(struct token_answer *a);

/* Output of a command or the content of a token file: a bare token (surrounding whitespace
 * ignored, one line), or JSON {"token"|"access_token": ..., "expiration_time"|"expire_time":
 * RFC 3339 | "expires_in": seconds}. now anchors expires_in. false with err filled on failure. */
bool token_parse_output(const char *text, size_t len, time_t now, struct token_answer *out,
                        char *err, size_t errsz);

/* Databricks /oidc/v1/token answer: {"access_token", "token_type", "expires_in"}. */
bool token_parse_oauth(const char *text, size_t len, time_t now, struct token_answer *out,
                       char *err, size_t errsz);

/* Lakebase credential answers: provisioned {"token", "expiration_time"} or autoscaling
 * {"token", "expire_time"}; both require an expiry. */
bool token_parse_db_credential(const char *text, size_t len, struct token_answer *out, char *err,
                               size_t errsz);

/* An error body from the workspace ({"message"}, {"error_description"} or {"error"}), copied
 * into out (printable ASCII, token-shaped runs redacted: redact.h); false when there is none. */
bool token_error_message(const char *text, size_t len, char *out, size_t outsz);

/* A failed HTTP exchange with the workspace in one line: "<what>: <err>" when no answer came
 * (status 0), else "<what> answered HTTP <status>[: <message from the body>]", with secrets
 * (NULL-terminated: what the request carried, that a misbehaving workspace may echo) and
 * token-shaped runs redacted (redact.h): it goes to the log and SHOW CREDENTIALS. */
void token_http_failure(const char *what, int status, const char *body, size_t len, const char *err,
                        const char *const *secrets, char *out, size_t outsz);

/* RFC 3339 date-time ("2026-11-23T10:00:00Z", fractions and +hh:mm offsets allowed) to Unix
 * seconds (fractions dropped). false when malformed. */
bool token_parse_rfc3339(const char *s, time_t *out);

/* Is a token that expires at `expires` (0: not stated) worth installing at `now`? Not when
 * it has expired already (a clock running ahead of the issuer's, or an issuer's fault: it
 * would be fetched again every second) nor when it claims more than ten years; err says
 * which. */
bool token_expiry_usable(time_t expires, time_t now, char *err, size_t errsz);

/* When to refresh a token obtained at `obtained` that expires at `expires` (0: unknown, then
 * obtained + assumed_lifetime, or never when that is 0 too): once `percent` of its lifetime
 * has passed or `margin_s` before expiry, whichever is earlier; the margin is ignored when it
 * exceeds half the lifetime (tokens of a few seconds). Never earlier than 1 s after
 * obtaining. Returns 0 for "never". */
time_t token_refresh_at(time_t obtained, time_t expires, int assumed_lifetime_s, int percent,
                        int margin_s);

/* A refresh time `at` (token_refresh_at) moved earlier by up to a tenth of the wait from
 * `obtained`, by rnd: proxies started together (a fleet deployed at once) do not all ask the
 * provider in the same second, hour after hour. Never earlier than 1 s after obtaining, never
 * later than at; 0 stays 0. */
time_t token_refresh_jitter(time_t obtained, time_t at, uint32_t rnd);

/* Delay before retry number attempt (1, 2, ...) after failures: doubling from base_ms up to
 * max_ms, scaled by a jitter factor in [0.5, 1.0) taken from rnd (any 32-bit value). */
int token_backoff_ms(int attempt, int base_ms, int max_ms, uint32_t rnd);

/* First 8 hex digits of the token's SHA-256: what logs and the admin console show. */
void token_fingerprint(const char *token, size_t len, char out[9]);

/* A fresh random UUID (version 4) as 36 characters and a NUL. */
bool token_uuid4(char out[37]);

/* The Basic credentials "base64(id:secret)" for an Authorization header; heap, wipe with
 * token_free. NULL on allocation failure. */
char *token_basic_auth(const char *id, const char *secret);

/* URL form encoding of one value (RFC 3986 unreserved kept); heap, NULL on failure. */
char *token_form_encode(const char *s);

/* The JSON body of a Lakebase credential request: autoscaling {"endpoint", "ttl": "<n>s"}
 * when endpoint is set (ttl_s 0: omitted), else provisioned {"request_id": <fresh UUID>,
 * "instance_names": [...]}. Heap (plain malloc), NULL on failure. */
char *token_credential_request(const char *endpoint, int ttl_s, const char *const *instances,
                               size_t n_instances);

/* Who a Databricks token belongs to, from the workspace's SCIM /Me answer. */
#define TOKEN_MAX_GROUPS 64
#define TOKEN_MAX_NAME 255
struct token_identity {
    char *user; /* userName (an email, or a service principal's application id) */
    char *groups[TOKEN_MAX_GROUPS]; /* groups[].display, in the answer's order */
    size_t n_groups;
};

/* Parses a SCIM /Me answer {"userName", "active"?, "groups"?: [{"display"}...]}: false with
 * err filled when userName is missing or unusable, or active is false. Groups past
 * TOKEN_MAX_GROUPS, and names that are empty, too long or hold control characters, are
 * skipped. */
bool token_parse_identity(const char *text, size_t len, struct token_identity *out, char *err,
                          size_t errsz);
void token_identity_clear(struct token_identity *id);

/* The "exp" claim of a JWT (header.payload.signature, base64url), not verified: only used to
 * bound how long a validation is cached. false when token is not a JWT with a numeric exp. */
bool token_jwt_expiry(const char *token, size_t len, time_t *out);

#endif
