/* token.c: pure parsing and arithmetic for rotating credentials (see token.h). JSON goes
 * through jansson with an allocator that wipes every block it frees, so a token parsed out of
 * an answer does not linger in freed memory. */
#include "token.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "redact.h"

/* jansson blocks carry their size in front so the free function can wipe them. */
static void *wiping_malloc(size_t n)
{
    size_t *p = malloc(sizeof(size_t) + n);
    if (!p)
        return NULL;
    *p = n;
    return p + 1;
}

static void wiping_free(void *ptr)
{
    if (!ptr)
        return;
    size_t *p = (size_t *)ptr - 1;
    OPENSSL_cleanse(p, sizeof(size_t) + *p);
    free(p);
}

static pthread_once_t alloc_once = PTHREAD_ONCE_INIT;
static void set_json_allocator(void)
{
    json_set_alloc_funcs(wiping_malloc, wiping_free);
}

void token_free(char *token)
{
    if (!token)
        return;
    OPENSSL_cleanse(token, strlen(token));
    free(token);
}

void token_answer_clear(struct token_answer *a)
{
    token_free(a->token);
    a->token = NULL;
    a->expires = 0;
}

/* Parses len bytes of JSON into an object; NULL with err filled when it is not one. */
static json_t *parse_object(const char *text, size_t len, char *err, size_t errsz)
{
    json_error_t je;
    pthread_once(&alloc_once, set_json_allocator);
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) { /* (not jansson's text: it quotes the input near the fault, a secret there) */
        snprintf(err, errsz, "malformed JSON at line %d, column %d", je.line, je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        snprintf(err, errsz, "expected a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

bool token_printable(const char *t, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (t[i] <= ' ' || t[i] > '~')
            return false;
    return true;
}

/* Copies the token string field `key` of obj into out->token. */
static bool take_token(json_t *obj, const char *key, struct token_answer *out, char *err,
                       size_t errsz)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) {
        snprintf(err, errsz, v ? "\"%s\" is not a string" : "no \"%s\" in the answer", key);
        return false;
    }
    size_t len = json_string_length(v);
    if (len == 0 || len > TOKEN_MAX_LEN || !token_printable(json_string_value(v), len)) {
        snprintf(err, errsz, "\"%s\" is empty, longer than %d bytes or not printable ASCII", key,
                 TOKEN_MAX_LEN);
        return false;
    }
    out->token = strndup(json_string_value(v), len);
    if (!out->token) {
        snprintf(err, errsz, "out of memory");
        return false;
    }
    return true;
}

/* The longest lifetime a token may claim. */
#define TOKEN_LIFE_MAX_S (10LL * 365 * 86400)

/* Reads an expiry from obj: an RFC 3339 string under key_time, or seconds under expires_in.
 * Neither present: expires stays 0 unless required. */
static bool take_expiry(json_t *obj, const char *key_time, time_t now, bool required,
                        struct token_answer *out, char *err, size_t errsz)
{
    json_t *t = key_time ? json_object_get(obj, key_time) : NULL;
    json_t *in = json_object_get(obj, "expires_in");
    if (t) {
        if (!json_is_string(t) || !token_parse_rfc3339(json_string_value(t), &out->expires)) {
            snprintf(err, errsz, "\"%s\" is not an RFC 3339 time", key_time);
            return false;
        }
        if (out->expires == 0) /* the epoch: a time long past, not 0's "no expiry stated" */
            out->expires = -1;
        return true;
    }
    if (in) {
        if (!json_is_integer(in) || json_integer_value(in) <= 0 ||
            json_integer_value(in) > TOKEN_LIFE_MAX_S) {
            snprintf(err, errsz, "\"expires_in\" is not a positive number of seconds");
            return false;
        }
        out->expires = now + (time_t)json_integer_value(in);
        return true;
    }
    if (required) {
        snprintf(err, errsz, "no \"%s\" in the answer", key_time ? key_time : "expires_in");
        return false;
    }
    return true;
}

/* A bare token: trimmed, one line. */
static bool parse_bare(const char *text, size_t len, struct token_answer *out, char *err,
                       size_t errsz)
{
    while (len && isspace((unsigned char)text[0])) {
        text++;
        len--;
    }
    while (len && isspace((unsigned char)text[len - 1]))
        len--;
    if (len == 0) {
        snprintf(err, errsz, "empty output");
        return false;
    }
    if (len > TOKEN_MAX_LEN || !token_printable(text, len)) {
        snprintf(err, errsz,
                 "the token is longer than %d bytes, spans lines or is not "
                 "printable ASCII",
                 TOKEN_MAX_LEN);
        return false;
    }
    out->token = strndup(text, len);
    if (!out->token) {
        snprintf(err, errsz, "out of memory");
        return false;
    }
    return true;
}

bool token_parse_output(const char *text, size_t len, time_t now, struct token_answer *out,
                        char *err, size_t errsz)
{
    out->token = NULL;
    out->expires = 0;
    size_t i = 0;
    while (i < len && isspace((unsigned char)text[i]))
        i++;
    if (i < len && (text[i] == '[' || text[i] == '"')) {
        snprintf(err, errsz, "expected a bare token or a JSON object");
        return false;
    }
    if (i == len || text[i] != '{')
        return parse_bare(text, len, out, err, errsz);
    json_t *root = parse_object(text, len, err, errsz);
    if (!root)
        return false;
    const char *key = json_object_get(root, "token") ? "token" : "access_token";
    const char *tkey = json_object_get(root, "expiration_time") ? "expiration_time" : "expire_time";
    bool ok = take_token(root, key, out, err, errsz) &&
              take_expiry(root, tkey, now, false, out, err, errsz);
    json_decref(root);
    if (!ok)
        token_answer_clear(out);
    return ok;
}

bool token_parse_oauth(const char *text, size_t len, time_t now, struct token_answer *out,
                       char *err, size_t errsz)
{
    out->token = NULL;
    out->expires = 0;
    json_t *root = parse_object(text, len, err, errsz);
    if (!root)
        return false;
    json_t *type = json_object_get(root, "token_type");
    bool ok = take_token(root, "access_token", out, err, errsz) &&
              take_expiry(root, NULL, now, true, out, err, errsz);
    if (ok && type && (!json_is_string(type) || strcasecmp(json_string_value(type), "bearer"))) {
        snprintf(err, errsz, "token_type is not Bearer");
        ok = false;
    }
    json_decref(root);
    if (!ok)
        token_answer_clear(out);
    return ok;
}

bool token_parse_db_credential(const char *text, size_t len, struct token_answer *out, char *err,
                               size_t errsz)
{
    out->token = NULL;
    out->expires = 0;
    json_t *root = parse_object(text, len, err, errsz);
    if (!root)
        return false;
    const char *tkey = json_object_get(root, "expire_time") ? "expire_time" : "expiration_time";
    bool ok = take_token(root, "token", out, err, errsz) &&
              take_expiry(root, tkey, 0, true, out, err, errsz);
    json_decref(root);
    if (!ok)
        token_answer_clear(out);
    return ok;
}

bool token_error_message(const char *text, size_t len, char *out, size_t outsz)
{
    static const char *const keys[] = {"message", "error_description", "error", "detail", NULL};
    char err[128];
    json_t *root = parse_object(text, len, err, sizeof(err));
    bool found = false;
    for (int i = 0; root && keys[i] && !found; i++) {
        json_t *v = json_object_get(root, keys[i]);
        if (!json_is_string(v))
            continue;
        const char *msg = json_string_value(v);
        size_t j = 0, keep = outsz ? redact_cut_at(msg, outsz - 1) : 0;
        for (const char *p = msg; j < keep; p++) /* (not cut inside a token: redact.h) */
            out[j++] = (*p >= ' ' && *p <= '~') ? *p : '?';
        out[j] = '\0';
        found = j > 0;
    }
    json_decref(root);
    if (found)
        redact_secrets(out, outsz, NULL);
    return found;
}

/* Reads exactly n digits at *p into *out. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

/* Reads the expected separator c at *p. */
static bool sep(const char **p, char c)
{
    if (**p != c)
        return false;
    (*p)++;
    return true;
}

bool token_parse_rfc3339(const char *s, time_t *out)
{
    int y, mo, d, h, mi, se, oh = 0, om = 0, sign = 0;
    const char *p = s;
    if (!digits(&p, 4, &y) || !sep(&p, '-') || !digits(&p, 2, &mo) || !sep(&p, '-') ||
        !digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' ') || !(p++, digits(&p, 2, &h)) ||
        !sep(&p, ':') || !digits(&p, 2, &mi) || !sep(&p, ':') || !digits(&p, 2, &se))
        return false;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '+' ? 1 : -1;
        if (!digits(&p, 2, &oh) || !sep(&p, ':') || !digits(&p, 2, &om))
            return false;
    } else {
        return false;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 || oh > 23 ||
        om > 59)
        return false;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = se};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return false;
    *out = t - sign * (oh * 3600 + om * 60);
    return true;
}

bool token_expiry_usable(time_t expires, time_t now, char *err, size_t errsz)
{
    if (expires && expires <= now) {
        snprintf(err, errsz,
                 "the token answered expired %llds ago (is this machine's clock ahead of the "
                 "token issuer's?)",
                 (long long)(now - expires));
        return false;
    }
    if (expires && (long long)(expires - now) > TOKEN_LIFE_MAX_S) {
        snprintf(err, errsz, "the token answered claims to stay valid more than ten years");
        return false;
    }
    return true;
}

time_t token_refresh_at(time_t obtained, time_t expires, int assumed_lifetime_s, int percent,
                        int margin_s)
{
    if (!expires && assumed_lifetime_s > 0)
        expires = obtained + assumed_lifetime_s;
    if (!expires)
        return 0;
    long long life = (long long)(expires - obtained);
    if (life <= 1)
        return obtained + 1;
    long long at = obtained + life * percent / 100;
    if (margin_s > 0 && margin_s * 2LL <= life && expires - margin_s < at)
        at = expires - margin_s;
    return at < obtained + 1 ? obtained + 1 : (time_t)at;
}

time_t token_refresh_jitter(time_t obtained, time_t at, uint32_t rnd)
{
    if (!at || at <= obtained + 1)
        return at;
    long long wait = (long long)(at - obtained);
    long long earlier = wait / 10 * (long long)(rnd % 1000) / 1000;
    return at - earlier < obtained + 1 ? obtained + 1 : (time_t)(at - earlier);
}

int token_backoff_ms(int attempt, int base_ms, int max_ms, uint32_t rnd)
{
    long long d = base_ms;
    for (int i = 1; i < attempt && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    /* jitter in [0.5, 1.0): retries of many proxies do not arrive together */
    return (int)(d / 2 + (d / 2) * (long long)(rnd % 1000) / 1000);
}

void token_fingerprint(const char *token, size_t len, char out[9])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, len, md);
    snprintf(out, 9, "%02x%02x%02x%02x", md[0], md[1], md[2], md[3]);
}

bool token_uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return false;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return true;
}

char *token_basic_auth(const char *id, const char *secret)
{
    size_t n = strlen(id) + 1 + strlen(secret);
    char *plain = malloc(n + 1);
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!plain || !out) {
        free(plain);
        free(out);
        return NULL;
    }
    snprintf(plain, n + 1, "%s:%s", id, secret);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)plain, (int)n);
    token_free(plain);
    return out;
}

char *token_form_encode(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out;
    if (!out)
        return NULL;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || strchr("-._~", ch))
            *o++ = (char)ch;
        else
            o += sprintf(o, "%%%02X", ch);
    }
    *o = '\0';
    return out;
}

char *token_credential_request(const char *endpoint, int ttl_s, const char *const *instances,
                               size_t n_instances)
{
    char uuid[37], ttl[16];
    pthread_once(&alloc_once, set_json_allocator);
    json_t *root = json_object(), *names = endpoint ? NULL : json_array();
    char *body = NULL, *copy = NULL;
    if (!root || (!endpoint && !names))
        goto done;
    if (endpoint) {
        json_object_set_new(root, "endpoint", json_string(endpoint));
        if (ttl_s) {
            snprintf(ttl, sizeof(ttl), "%ds", ttl_s); /* a protobuf Duration in JSON */
            json_object_set_new(root, "ttl", json_string(ttl));
        }
    } else {
        for (size_t i = 0; i < n_instances; i++)
            json_array_append_new(names, json_string(instances[i]));
        if (!token_uuid4(uuid))
            goto done;
        json_object_set_new(root, "request_id", json_string(uuid));
        json_object_set(root, "instance_names", names);
    }
    body = json_dumps(root, JSON_COMPACT);
    copy = body ? strdup(body) : NULL; /* json_dumps memory belongs to jansson's allocator */
done:
    if (body)
        wiping_free(body);
    json_decref(names);
    json_decref(root);
    return copy;
}

/* A name from the workspace that may become a user or group name: printable, no control
 * characters (they would reach logs and set_config values), at most TOKEN_MAX_NAME bytes. */
static bool identity_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > TOKEN_MAX_NAME || strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* Copies the display names of the SCIM groups array into out. */
static bool take_groups(json_t *groups, struct token_identity *out)
{
    size_t i;
    json_t *g;
    json_array_foreach(groups, i, g)
    {
        json_t *d = json_object_get(g, "display");
        if (out->n_groups == TOKEN_MAX_GROUPS)
            break;
        if (!json_is_string(d) || !identity_name_ok(json_string_value(d), json_string_length(d)))
            continue;
        if (!(out->groups[out->n_groups] = strdup(json_string_value(d))))
            return false;
        out->n_groups++;
    }
    return true;
}

bool token_parse_identity(const char *text, size_t len, struct token_identity *out, char *err,
                          size_t errsz)
{
    *out = (struct token_identity){0};
    json_t *root = parse_object(text, len, err, errsz);
    if (!root)
        return false;
    json_t *name = json_object_get(root, "userName");
    json_t *active = json_object_get(root, "active");
    json_t *groups = json_object_get(root, "groups");
    bool ok = false;
    if (!json_is_string(name))
        snprintf(err, errsz,
                 name ? "\"userName\" is not a string" : "no \"userName\" in the answer");
    else if (!identity_name_ok(json_string_value(name), json_string_length(name)))
        snprintf(err, errsz,
                 "\"userName\" is empty, longer than %d bytes or holds control "
                 "characters",
                 TOKEN_MAX_NAME);
    else if (active && !json_is_true(active))
        snprintf(err, errsz, "the identity is not active");
    else if (groups && !json_is_array(groups))
        snprintf(err, errsz, "\"groups\" is not an array");
    else if (!(out->user = strdup(json_string_value(name))) ||
             (groups && !take_groups(groups, out)))
        snprintf(err, errsz, "out of memory");
    else
        ok = true;
    json_decref(root);
    if (!ok)
        token_identity_clear(out);
    return ok;
}

void token_identity_clear(struct token_identity *id)
{
    free(id->user);
    for (size_t i = 0; i < id->n_groups; i++)
        free(id->groups[i]);
    *id = (struct token_identity){0};
}

/* base64url (no padding) of len bytes into out (at least len * 3 / 4 + 3 bytes); -1 when
 * it is not base64url. */
static long b64url_decode(const char *in, size_t len, unsigned char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint32_t acc = 0;
    int bits = 0;
    long n = 0;
    for (size_t i = 0; i < len; i++) {
        const char *p = in[i] ? strchr(alphabet, in[i]) : NULL;
        if (!p)
            return -1;
        acc = (acc << 6) | (uint32_t)(p - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return bits >= 6 ? -1 : n; /* one leftover character cannot end a base64 text */
}

bool token_jwt_expiry(const char *token, size_t len, time_t *out)
{
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || (size_t)(dot2 - dot1 - 1) > 8192)
        return false;
    unsigned char payload[8192 * 3 / 4 + 3];
    long n = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), payload);
    char err[120];
    json_t *root = n > 0 ? parse_object((const char *)payload, (size_t)n, err, sizeof(err)) : NULL;
    json_t *exp = root ? json_object_get(root, "exp") : NULL;
    bool ok = json_is_number(exp) && json_number_value(exp) > 0 && json_number_value(exp) < 1e11;
    if (ok)
        *out = (time_t)json_number_value(exp);
    json_decref(root);
    return ok;
}

void token_http_failure(const char *what, int status, const char *body, size_t len, const char *err,
                        const char *const *secrets, char *out, size_t outsz)
{
    char msg[200];
    if (status == 0)
        snprintf(out, outsz, "%s: %s", what, err);
    else if (body && token_error_message(body, len, msg, sizeof(msg)))
        snprintf(out, outsz, "%s answered HTTP %d: %s", what, status, msg);
    else
        snprintf(out, outsz, "%s answered HTTP %d", what, status);
    redact_secrets(out, outsz, secrets);
}
