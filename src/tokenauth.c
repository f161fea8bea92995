/* tokenauth.c: checking clients' own Databricks tokens at the workspace's SCIM /Me, with a
 * bounded cache of the answers and one request per distinct token in flight. */
#include "tokenauth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "credentials.h"
#include "hashkey.h"
#include "http.h"
#include "log.h"

#define BUCKETS 1024
#define ANSWER_MAX (1024 * 1024)
#define ME_PATH "/api/2.0/preview/scim/v2/Me"

/* A cached answer: who the token with this key belongs to (or why the workspace refused it:
 * refusal set), until when. */
struct entry {
    struct entry *next; /* bucket chain */
    uint8_t key[SHA256_DIGEST_LENGTH];
    struct token_identity id;
    char *refusal;
    time_t until;
};

/* One request to the workspace, and the logins waiting for it. */
struct fetch {
    struct list node; /* tokenauth.fetches */
    struct tokenauth *ta;
    uint8_t key[SHA256_DIGEST_LENGTH];
    char *bearer; /* "Bearer <token>" (wiped) */
    char *workspace;
    char fp[9];     /* the token's fingerprint, for logs */
    char ip[64];    /* the address of the client whose login started it */
    time_t jwt_exp; /* the token's own expiry, 0 when unknown */
    struct http_request *http;
    struct list waiters;
};

struct tokenauth_wait {
    struct list node; /* fetch->waiters, or self-linked when answered by the timer */
    struct tokenauth *ta;
    struct fetch *f;
    struct client *c;
    tokenauth_done_fn done;
    struct event *ev; /* delivers an answer known without a request */
    struct token_identity id;
    bool ok;
    char sqlstate[6];
    char err[300];
};

struct tokenauth {
    struct worker *w;
    struct entry *buckets[BUCKETS];
    size_t n_cached;
    struct list fetches;
    size_t n_fetches;
    uint64_t requests, hits;
};

static struct tokenauth *tokenauth_of(struct worker *w)
{
    if (!w->tokenauth && (w->tokenauth = calloc(1, sizeof(*w->tokenauth)))) {
        w->tokenauth->w = w;
        list_init(&w->tokenauth->fetches);
    }
    return w->tokenauth;
}

/* SHA-256 of the process's secret, workspace NUL token: a token is only ever trusted for the
 * workspace that vouched, and no one can aim tokens at one chain of the cache (whose bucket is
 * taken from the key). */
static bool key_of(const char *workspace, const char *token, uint8_t out[SHA256_DIGEST_LENGTH])
{
    uint64_t secret[2];
    hashkey_get(&secret[0], &secret[1]);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    unsigned int n = 0;
    bool ok = m && EVP_DigestInit_ex(m, EVP_sha256(), NULL) &&
              EVP_DigestUpdate(m, secret, sizeof(secret)) &&
              EVP_DigestUpdate(m, workspace, strlen(workspace) + 1) &&
              EVP_DigestUpdate(m, token, strlen(token)) && EVP_DigestFinal_ex(m, out, &n) &&
              n == SHA256_DIGEST_LENGTH;
    EVP_MD_CTX_free(m);
    return ok;
}

static size_t bucket_of(const uint8_t *key)
{
    return ((size_t)key[0] << 8 | key[1]) % BUCKETS;
}

static bool identity_copy(const struct token_identity *from, struct token_identity *to)
{
    *to = (struct token_identity){0};
    if (!(to->user = strdup(from->user)))
        return false;
    for (size_t i = 0; i < from->n_groups; i++) {
        if (!(to->groups[i] = strdup(from->groups[i]))) {
            token_identity_clear(to);
            return false;
        }
        to->n_groups++;
    }
    return true;
}

static void entry_free(struct entry *e)
{
    token_identity_clear(&e->id);
    free(e->refusal);
    free(e);
}

/* The unexpired answer for key, or NULL; expired ones met on the way are dropped. */
static struct entry *cache_find(struct tokenauth *ta, const uint8_t *key, time_t now)
{
    struct entry **pp = &ta->buckets[bucket_of(key)];
    while (*pp) {
        struct entry *e = *pp;
        if (e->until <= now) {
            *pp = e->next;
            entry_free(e);
            ta->n_cached--;
            continue;
        }
        if (CRYPTO_memcmp(e->key, key, sizeof(e->key)) == 0)
            return e;
        pp = &e->next;
    }
    return NULL;
}

/* Makes room for one more answer: drops the expired ones, then the one closest to expiry. */
static void cache_make_room(struct tokenauth *ta, time_t now)
{
    struct entry **victim = NULL;
    for (size_t b = 0; b < BUCKETS; b++)
        for (struct entry **pp = &ta->buckets[b]; *pp;) {
            if ((*pp)->until <= now) {
                struct entry *e = *pp;
                *pp = e->next;
                entry_free(e);
                ta->n_cached--;
                continue;
            }
            if (!victim || (*pp)->until < (*victim)->until)
                victim = pp;
            pp = &(*pp)->next;
        }
    if (ta->n_cached >= TOKENAUTH_MAX_CACHED && victim) {
        struct entry *e = *victim;
        *victim = e->next;
        entry_free(e);
        ta->n_cached--;
    }
}

/* Caches an identity (id), or the reason the workspace refused the token (refusal). */
static void cache_add(struct tokenauth *ta, const uint8_t *key, const struct token_identity *id,
                      const char *refusal, time_t until)
{
    time_t now = time(NULL);
    if (ta->n_cached >= TOKENAUTH_MAX_CACHED)
        cache_make_room(ta, now);
    struct entry *e = calloc(1, sizeof(*e));
    if (!e || (id && !identity_copy(id, &e->id)) || (refusal && !(e->refusal = strdup(refusal)))) {
        if (e)
            entry_free(e);
        return; /* not cached: the next login asks again */
    }
    memcpy(e->key, key, sizeof(e->key));
    e->until = until;
    size_t b = bucket_of(key);
    e->next = ta->buckets[b];
    ta->buckets[b] = e;
    ta->n_cached++;
}

static void wait_free(struct tokenauth_wait *t)
{
    list_del(&t->node);
    if (t->ev)
        event_free(t->ev);
    token_identity_clear(&t->id);
    free(t);
}

/* Hands a waiter its answer and frees it. */
static void wait_deliver(struct tokenauth_wait *t)
{
    struct client *c = t->c;
    tokenauth_done_fn done = t->done;
    struct token_identity id = t->id;
    bool ok = t->ok;
    char sqlstate[6], err[sizeof(t->err)];
    memcpy(sqlstate, t->sqlstate, sizeof(sqlstate));
    memcpy(err, t->err, sizeof(err));
    t->id = (struct token_identity){0};
    wait_free(t);
    done(c, ok ? &id : NULL, sqlstate, err);
    token_identity_clear(&id);
}

static void wait_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    wait_deliver(arg);
}

/* Answers t from the loop's next turn (done is never called from inside tokenauth_check). */
static bool wait_answer_soon(struct tokenauth *ta, struct tokenauth_wait *t)
{
    static const struct timeval now = {0, 0};
    t->ev = evtimer_new(ta->w->base, wait_timer_cb, t);
    return t->ev && evtimer_add(t->ev, &now) == 0;
}

static void wait_fail(struct tokenauth_wait *t, const char *sqlstate, const char *err)
{
    t->ok = false;
    snprintf(t->sqlstate, sizeof(t->sqlstate), "%s", sqlstate);
    snprintf(t->err, sizeof(t->err), "%s", err);
}

static void fetch_free(struct fetch *f)
{
    list_del(&f->node);
    f->ta->n_fetches--;
    if (f->http)
        http_cancel(f->http);
    if (f->bearer) {
        OPENSSL_cleanse(f->bearer, strlen(f->bearer));
        free(f->bearer);
    }
    free(f->workspace);
    free(f);
}

/* How long an answer obtained now may be trusted. */
static time_t trusted_until(const struct fetch *f, time_t now)
{
    time_t until = now + TOKENAUTH_CACHE_S;
    return f->jwt_exp && f->jwt_exp < until ? f->jwt_exp : until;
}

/* Turns the workspace's answer into an identity, or a failure (sqlstate, why). */
static bool read_answer(const struct fetch *f, int status, const char *body, size_t len,
                        const char *err, struct token_identity *id, const char **sqlstate,
                        char *why, size_t whysz)
{
    char e[200], what[300];
    /* the client's token we sent, should the answer echo it */
    const char *sent[] = {f->bearer && strlen(f->bearer) > 7 ? f->bearer + 7 : NULL, NULL};
    snprintf(what, sizeof(what), "workspace %s", f->workspace);
    if (status == 401 || status == 403) {
        *sqlstate = "28P01";
        token_http_failure("the Databricks token was refused: workspace", status, body, len, err,
                           sent, why, whysz);
        return false;
    }
    *sqlstate = "08006";
    if (status != 200) {
        char cause[400];
        token_http_failure(what, status, body, len, err, sent, cause, sizeof(cause));
        snprintf(why, whysz, "could not check the Databricks token: %.250s", cause);
        return false;
    }
    if (!token_parse_identity(body, len, id, e, sizeof(e))) {
        snprintf(why, whysz, "could not check the Databricks token: %s" ME_PATH " answered: %s",
                 f->workspace, e);
        return false;
    }
    return true;
}

static void fetch_done(void *arg, int status, const char *body, size_t len, const char *err)
{
    struct fetch *f = arg;
    struct token_identity id;
    const char *sqlstate;
    char why[300];
    time_t now = time(NULL);
    f->http = NULL;
    bool ok = read_answer(f, status, body, len, err, &id, &sqlstate, why, sizeof(why));
    if (ok && f->jwt_exp && f->jwt_exp <= now) {
        token_identity_clear(&id);
        ok = false;
        sqlstate = "28P01";
        snprintf(why, sizeof(why), "the Databricks token has expired");
    }
    if (!ok && strcmp(sqlstate, "28P01") == 0) /* refused: asking again would not change it */
        cache_add(f->ta, f->key, NULL, why, now + TOKENAUTH_REFUSED_CACHE_S);
    if (ok) {
        cache_add(f->ta, f->key, &id, NULL, trusted_until(f, now));
        log_info("Databricks token %s belongs to \"%s\" (%zu groups)", f->fp, id.user, id.n_groups);
    } else {
        log_warning("Databricks token %s not accepted: %s", f->fp, why);
    }
    struct list told_now; /* waiters without a timer (out of memory) */
    list_init(&told_now);
    while (!list_empty(&f->waiters)) {
        struct tokenauth_wait *t =
            list_entry(list_pop_first(&f->waiters), struct tokenauth_wait, node);
        t->f = NULL;
        if (ok && !identity_copy(&id, &t->id))
            wait_fail(t, "53200", "out of memory");
        else if (ok)
            t->ok = true;
        else
            wait_fail(t, sqlstate, why);
        if (!wait_answer_soon(f->ta, t))
            list_append(&told_now, &t->node);
    }
    if (ok)
        token_identity_clear(&id);
    fetch_free(f);
    while (!list_empty(&told_now))
        wait_deliver(list_entry(list_pop_first(&told_now), struct tokenauth_wait, node));
}

/* Starts asking the workspace about token; NULL with why filled when it cannot start. */
static struct fetch *fetch_start(struct tokenauth *ta, const struct db_config *db,
                                 const char *token, const uint8_t *key, const char *ip, char *why,
                                 size_t whysz)
{
    const struct credential *cred = credentials_find(ta->w, db->name);
    char url[600], err[256];
    if (!cred || !cred->tls) {
        snprintf(why, whysz,
                 "could not check the Databricks token: the database's workspace "
                 "credentials are not set up (see the log)");
        return NULL;
    }
    struct fetch *f = calloc(1, sizeof(*f));
    size_t blen = strlen(token) + 8;
    if (!f || !(f->bearer = malloc(blen)) || !(f->workspace = strdup(db->cred.workspace))) {
        if (f)
            free(f->bearer);
        free(f);
        snprintf(why, whysz, "out of memory");
        return NULL;
    }
    snprintf(f->bearer, blen, "Bearer %s", token);
    snprintf(url, sizeof(url), "%s" ME_PATH, db->cred.workspace);
    token_fingerprint(token, strlen(token), f->fp);
    if (!token_jwt_expiry(token, strlen(token), &f->jwt_exp))
        f->jwt_exp = 0;
    memcpy(f->key, key, sizeof(f->key));
    snprintf(f->ip, sizeof(f->ip), "%s", ip);
    f->ta = ta;
    list_init(&f->waiters);
    list_append(&ta->fetches, &f->node);
    ta->n_fetches++;
    struct http_options o = {.method = "GET",
                             .url = url,
                             .authorization = f->bearer,
                             .timeout_ms = db->cred.timeout_ms,
                             .max_body = ANSWER_MAX};
    f->http = http_start(ta->w->base, ta->w->dns, cred->tls, &o, fetch_done, f, err, sizeof(err));
    if (!f->http) {
        snprintf(why, whysz, "could not check the Databricks token at %s: %s", f->workspace, err);
        fetch_free(f);
        return NULL;
    }
    ta->requests++;
    return f;
}

static struct fetch *fetch_find(struct tokenauth *ta, const uint8_t *key)
{
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &ta->fetches) {
        struct fetch *f = list_entry(it, struct fetch, node);
        if (CRYPTO_memcmp(f->key, key, sizeof(f->key)) == 0)
            return f;
    }
    return NULL;
}

/* Requests in flight started by logins from ip. */
static size_t fetches_from(const struct tokenauth *ta, const char *ip)
{
    size_t n = 0;
    for (const struct list *it = ta->fetches.next; it != &ta->fetches; it = it->next)
        n += strcmp(list_entry(it, struct fetch, node)->ip, ip) == 0;
    return n;
}

/* Answers t at once: from the cache, or with why it cannot be checked now. */
static void wait_resolve_now(struct tokenauth *ta, const struct db_config *db, const char *token,
                             const uint8_t *key, const char *ip, struct tokenauth_wait *t)
{
    char why[300];
    struct entry *e = cache_find(ta, key, time(NULL));
    if (e && e->refusal) {
        ta->hits++;
        wait_fail(t, "28P01", e->refusal);
    } else if (e) {
        ta->hits++;
        t->ok = identity_copy(&e->id, &t->id);
        if (!t->ok)
            wait_fail(t, "53200", "out of memory");
    } else if (ta->n_fetches >= TOKENAUTH_MAX_INFLIGHT) {
        wait_fail(t, "53300", "too many Databricks token checks in progress; try again shortly");
    } else if (fetches_from(ta, ip) >= TOKENAUTH_MAX_INFLIGHT_PER_ADDRESS) {
        wait_fail(t, "53300",
                  "too many Databricks token checks in progress from this address; "
                  "try again shortly");
    } else if ((t->f = fetch_start(ta, db, token, key, ip, why, sizeof(why)))) {
        list_append(&t->f->waiters, &t->node);
    } else {
        wait_fail(t, "08006", why);
    }
}

struct tokenauth_wait *tokenauth_check(struct worker *w, const struct db_config *db,
                                       const char *token, const char *addr, struct client *c,
                                       tokenauth_done_fn done)
{
    char ip[64];
    snprintf(ip, sizeof(ip), "%s", addr);
    char *port = strrchr(ip, ':'); /* "host:port" (conn_format_addr): the host counts */
    if (port)
        *port = '\0';
    struct tokenauth *ta = tokenauth_of(w);
    struct tokenauth_wait *t = ta ? calloc(1, sizeof(*t)) : NULL;
    uint8_t key[SHA256_DIGEST_LENGTH];
    if (!t)
        return NULL;
    list_init(&t->node);
    t->ta = ta;
    t->c = c;
    t->done = done;
    if (!key_of(db->cred.workspace, token, key)) {
        free(t);
        return NULL;
    }
    if ((t->f = fetch_find(ta, key))) {
        list_append(&t->f->waiters, &t->node);
        return t;
    }
    wait_resolve_now(ta, db, token, key, ip, t);
    if (!t->f && !wait_answer_soon(ta, t)) {
        wait_free(t);
        return NULL;
    }
    return t;
}

/* The request goes on without the waiter: its answer is cached for the next login. */
void tokenauth_cancel(struct tokenauth_wait *t)
{
    if (t)
        wait_free(t);
}

void tokenauth_free_all(struct worker *w)
{
    struct tokenauth *ta = w->tokenauth;
    if (!ta)
        return;
    while (!list_empty(&ta->fetches)) {
        struct fetch *f = list_entry(ta->fetches.next, struct fetch, node);
        while (!list_empty(&f->waiters))
            wait_free(list_entry(f->waiters.next, struct tokenauth_wait, node));
        fetch_free(f);
    }
    for (size_t b = 0; b < BUCKETS; b++)
        while (ta->buckets[b]) {
            struct entry *e = ta->buckets[b];
            ta->buckets[b] = e->next;
            entry_free(e);
        }
    free(ta);
    w->tokenauth = NULL;
}

void tokenauth_counts(const struct worker *w, uint64_t *requests, uint64_t *cache_hits)
{
    *requests = w->tokenauth ? w->tokenauth->requests : 0;
    *cache_hits = w->tokenauth ? w->tokenauth->hits : 0;
}
