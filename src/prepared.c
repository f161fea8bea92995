/* prepared.c: bookkeeping for named prepared statements under transaction pooling. */
#include "prepared.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashkey.h"

const char *const stmt_context_settings[STMT_CONTEXT_SETTINGS] = {
    "search_path",   "client_encoding", "DateStyle",
    "IntervalStyle", "TimeZone",        "standard_conforming_strings"};

/* Feeds n to d as 4 bytes, least significant first. */
static void digest_u32(EVP_MD_CTX *d, uint32_t n)
{
    uint8_t le[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
    EVP_DigestUpdate(d, le, 4);
}

/* Feeds s to d as its length and bytes (NULL as a length no string has): the context's parts
 * cannot run together, and a value set to "" is not one left unset. */
static void digest_part(EVP_MD_CTX *d, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    digest_u32(d, s && n < UINT32_MAX ? (uint32_t)n : UINT32_MAX);
    EVP_DigestUpdate(d, s ? s : "", n);
}

/* SHA-256 of the process's secret (hashkey.h), the context (none: a zero context) and then the
 * Parse body; false when OpenSSL fails (out of memory). */
static bool keyed_digest(const uint8_t *rest, size_t len, const struct stmt_context *ctx,
                         uint8_t h[SHA256_DIGEST_LENGTH])
{
    static const struct stmt_context none;
    if (!ctx)
        ctx = &none;
    uint64_t secret[2];
    hashkey_get(&secret[0], &secret[1]);
    EVP_MD_CTX *d = EVP_MD_CTX_new();
    bool ok = d && EVP_DigestInit_ex(d, EVP_sha256(), NULL) == 1;
    if (ok) {
        EVP_DigestUpdate(d, secret, sizeof(secret));
        digest_u32(d, ctx->epoch);
        digest_u32(d, (uint32_t)ctx->apart);
        digest_u32(d, (uint32_t)(ctx->apart >> 32));
        digest_part(d, ctx->role);
        for (int i = 0; i < STMT_CONTEXT_SETTINGS; i++)
            digest_part(d, ctx->values[i]);
        EVP_DigestUpdate(d, rest, len);
        ok = EVP_DigestFinal_ex(d, h, NULL) == 1;
    }
    EVP_MD_CTX_free(d);
    return ok;
}

/* 128 bits of a keyed SHA-256. Identical statements share a name on a server. Finding two
 * texts that share one (so that a Bind of one runs the other, with the first's effects
 * unaccounted: the guard's per-run carries, the masking guard's per-run test count) would take
 * about 2^64 hashes; 64 bits took 2^32, an afternoon. The secret makes a name unpredictable: a
 * client cannot work out the name of a statement another client will prepare and create it
 * first, with another text, where lakeproxy does not look (red team 22). Only half the digest
 * is shown, so no one can extend a name's hash to another text without the secret. */
bool stmt_proxy_name(const uint8_t *parse_rest, size_t len, const struct stmt_context *ctx,
                     char out[STMT_NAME_LEN])
{
    _Static_assert(STMT_NAME_LEN >= 36, "lp_, 32 hex digits and a NUL");
    static const char hex[] = "0123456789abcdef";
    uint8_t h[SHA256_DIGEST_LENGTH];
    if (!keyed_digest(parse_rest, len, ctx, h))
        return false;
    memcpy(out, "lp_", 3);
    for (int i = 0; i < 16; i++) {
        out[3 + 2 * i] = hex[h[i] >> 4];
        out[4 + 2 * i] = hex[h[i] & 15];
    }
    out[35] = '\0';
    return true;
}

/* PostgreSQL keys a prepared statement by the first NAMEDATALEN - 1 bytes of its name (two
 * names alike in those are one statement there), and so does lakeproxy: names are stored,
 * hashed and compared cut to that. */
enum { STMT_KEY_LEN = 63 };

/* Is stored name (at most STMT_KEY_LEN bytes) the key of the client's name? */
static bool same_key(const char *stored, const char *name)
{
    return strncmp(stored, name, STMT_KEY_LEN) == 0;
}

static uint64_t name_hash(const char *name)
{
    struct siphash h;
    hashkey_start(&h);
    siphash_bytes(&h, name, strnlen(name, STMT_KEY_LEN));
    return siphash_end(&h);
}

/* The chain head of names of hash h; NULL before the first statement. */
static int32_t *head_of_hash(const struct client_stmts *s, uint32_t h)
{
    return s->heads ? &s->heads[h & (s->n_heads - 1)] : NULL;
}

/* The chain head of name; NULL before the first statement. */
static int32_t *head_of(const struct client_stmts *s, const char *name)
{
    return head_of_hash(s, (uint32_t)name_hash(name));
}

static struct client_stmt *find_client_stmt(const struct client_stmts *s, const char *name)
{
    int32_t *head = head_of(s, name);
    for (int32_t i = head ? *head : -1; i >= 0; i = s->items[i].next)
        if (!s->items[i].closing && same_key(s->items[i].name, name))
            return &s->items[i];
    return NULL;
}

const struct client_stmt *client_stmt_get(const struct client_stmts *s, const char *name)
{
    return find_client_stmt(s, name);
}

bool client_stmt_rename(struct client_stmts *s, const struct client_stmt *st,
                        const struct stmt_context *ctx)
{
    char name[STMT_NAME_LEN];
    struct stmt_context in_own_epoch = *ctx;
    in_own_epoch.epoch = st->epoch;
    if (!stmt_proxy_name(st->parse_rest, st->len, &in_own_epoch, name))
        return false;
    memcpy(s->items[st - s->items].proxy, name, sizeof(name));
    return true;
}

static struct client_stmt *newest_closing(const struct client_stmts *s, const char *name);

bool client_stmt_known(const struct client_stmts *s, const char *name)
{
    return find_client_stmt(s, name) || (s->n_closing && newest_closing(s, name));
}

void client_stmt_set_tests(struct client_stmt *st, uint16_t tests, const struct masklike *like)
{
    st->mask_tests = tests;
    st->mask_like = *like;
}

static void free_stmt(struct client_stmt *st)
{
    free(st->name);
    free(st->parse_rest);
}

/* Chains every item anew into n_heads heads (a power of two). */
static bool rechain(struct client_stmts *s, size_t n_heads)
{
    int32_t *heads = malloc(n_heads * sizeof(*heads));
    if (!heads)
        return false;
    free(s->heads);
    s->heads = heads;
    s->n_heads = n_heads;
    for (size_t i = 0; i < n_heads; i++)
        heads[i] = -1;
    for (size_t i = 0; i < s->n; i++) {
        int32_t *head = head_of_hash(s, s->items[i].hash);
        s->items[i].next = *head;
        *head = (int32_t)i;
    }
    return true;
}

/* Room for one more item: the array and the chains grow together. */
static bool make_room(struct client_stmts *s)
{
    if (s->n < s->cap)
        return true;
    size_t cap = s->cap ? s->cap * 2 : 8;
    struct client_stmt *grown = realloc(s->items, cap * sizeof(*grown));
    if (!grown)
        return false;
    s->items = grown;
    s->cap = cap;
    return rechain(s, cap);
}

/* The bytes of names and bodies s holds, not counting those closing, with name's kept
 * statement st (may be NULL) taken out and name's key in. */
static size_t held_bytes(const struct client_stmts *s, const struct client_stmt *st,
                         const char *name)
{
    size_t open = s->bytes - s->closing_bytes;
    return st ? open - st->len : open + strnlen(name, STMT_KEY_LEN);
}

/* Would a Parse with len bytes after the name stay within s's limits (client_stmt_put), its
 * name's statement kept as st (NULL: new) and held the bytes held with it (held_bytes)? */
static bool stmt_fits(const struct client_stmts *s, const struct client_stmt *st, size_t held,
                      size_t len, size_t max_bytes)
{
    /* (closing statements are on their way out: they count against a budget of their own) */
    size_t budget = max_bytes > CLIENT_STMT_BYTES ? max_bytes : CLIENT_STMT_BYTES;
    if (held + len > budget || s->closing_bytes + held + len > 2 * budget)
        return false; /* (closing ones have a budget of their own, as large) */
    return st || s->n - s->n_closing < CLIENT_STMT_MAX;
}

enum stmt_put client_stmt_put(struct client_stmts *s, const char *name, const uint8_t *rest,
                              size_t len, const struct stmt_context *ctx, uint8_t effects,
                              size_t max_bytes, struct client_stmt **put)
{
    struct client_stmt *st = find_client_stmt(s, name);
    size_t held = held_bytes(s, st, name);
    if (!stmt_fits(s, st, held, len, max_bytes))
        return STMT_PUT_PAST_LIMITS;
    size_t key_len = strnlen(name, STMT_KEY_LEN);
    if (!st && !make_room(s))
        return STMT_PUT_NO_MEMORY;
    char proxy[STMT_NAME_LEN];
    if (!stmt_proxy_name(rest, len, ctx, proxy))
        return STMT_PUT_NO_MEMORY;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return STMT_PUT_NO_MEMORY;
    memcpy(copy, rest, len);
    if (!st) {
        st = &s->items[s->n];
        if (!(st->name = strndup(name, key_len))) {
            free(copy);
            return STMT_PUT_NO_MEMORY;
        }
        st->hash = (uint32_t)name_hash(name);
        int32_t *head = head_of_hash(s, st->hash);
        st->next = *head;
        *head = (int32_t)s->n++;
    } else {
        free(st->parse_rest);
    }
    s->bytes = held + s->closing_bytes + len;
    st->parse_rest = copy;
    st->len = len;
    st->effects = effects;
    st->mask_tests = 0; /* (client_stmt_set_tests) */
    st->mask_like.n = 0;
    memcpy(st->proxy, proxy, sizeof(proxy));
    st->epoch = ctx ? ctx->epoch : 0;
    if (++s->last_gen == 0)
        s->last_gen = 1;
    st->gen = s->last_gen;
    st->closing = false;
    st->closes = 0;
    *put = st;
    return STMT_PUT_DONE;
}

/* What st counts against its client's byte budget: its name and its body. */
static size_t stmt_bytes(const struct client_stmt *st)
{
    return strlen(st->name) + st->len;
}

/* Takes item i out of its chain. */
static void unchain(struct client_stmts *s, int32_t i)
{
    int32_t *link = head_of_hash(s, s->items[i].hash);
    while (*link != i)
        link = &s->items[*link].next;
    *link = s->items[i].next;
}

/* Removes item st; the last item takes its place. */
static void remove_stmt(struct client_stmts *s, struct client_stmt *st)
{
    int32_t i = (int32_t)(st - s->items), last = (int32_t)s->n - 1;
    unchain(s, i);
    s->bytes -= stmt_bytes(st);
    if (st->closing) {
        s->n_closing--;
        s->closing_bytes -= stmt_bytes(st);
    }
    free_stmt(st);
    if (i != last) { /* the last item fills the hole, under its new index */
        unchain(s, last);
        s->items[i] = s->items[last];
        int32_t *head = head_of_hash(s, s->items[i].hash);
        s->items[i].next = *head;
        *head = i;
    }
    s->n--;
}

void client_stmt_remove(struct client_stmts *s, const char *name)
{
    struct client_stmt *st = find_client_stmt(s, name);
    if (st)
        remove_stmt(s, st);
}

/* The item made by the Parse reply r was owed for (closing or not); NULL when gone. */
static struct client_stmt *stmt_of_reply(const struct client_stmts *s, const struct reply *r)
{
    int32_t *head = r->gen ? head_of_hash(s, r->name_hash) : NULL;
    for (int32_t i = head ? *head : -1; i >= 0; i = s->items[i].next)
        if (s->items[i].gen == r->gen && s->items[i].hash == r->name_hash)
            return &s->items[i];
    return NULL;
}

void client_stmt_undo(struct client_stmts *s, const struct reply *r)
{
    struct client_stmt *st = stmt_of_reply(s, r);
    if (st)
        remove_stmt(s, st);
}

void client_stmt_settled(struct client_stmts *s, const struct reply *r)
{
    if (r->gen && (r->kind == RK_PARSE || r->kind == RK_FAKE_PARSE))
        s->settled_gen = r->gen;
}

/* (gens wrap: one is newer when it lies less than half the range ahead) */
bool client_stmt_owed(const struct client_stmts *s, const struct client_stmt *st)
{
    return (int32_t)(st->gen - s->settled_gen) > 0;
}

/* PostgreSQL refuses a Parse of a name it holds; lakeproxy knows it holds st's when st's
 * Parse was answered, or was sent since the last Sync (if it failed, PostgreSQL skips the
 * rest of that segment, a refusal with it). Not after a DEALLOCATE it could not follow. */
bool client_stmt_taken(const struct client_stmts *s, const struct client_stmt *st)
{
    return !s->unsure && (!client_stmt_owed(s, st) || (int32_t)(st->gen - s->sync_gen) > 0);
}

/* The newest closing item of name; NULL when none. */
static struct client_stmt *newest_closing(const struct client_stmts *s, const char *name)
{
    struct client_stmt *best = NULL;
    int32_t *head = head_of(s, name);
    for (int32_t i = head ? *head : -1; i >= 0; i = s->items[i].next) {
        struct client_stmt *st = &s->items[i];
        if (st->closing && same_key(st->name, name) &&
            (!best || (int32_t)(st->gen - best->gen) > 0))
            best = st;
    }
    return best;
}

const struct client_stmt *client_stmt_park(struct client_stmts *s, const char *name)
{
    struct client_stmt *st = find_client_stmt(s, name);
    if (!st) { /* another Close of a closing one: it too must be skipped for it to come back */
        st = s->n_closing ? newest_closing(s, name) : NULL;
        if (st)
            st->closes++;
        return st;
    }
    if (s->n_closing >= CLIENT_STMT_CLOSING_MAX)
        return NULL;
    st->closing = true;
    st->closes = 1;
    s->n_closing++;
    s->closing_bytes += stmt_bytes(st);
    return st;
}

/* Room for one more statement to restore. */
static bool restore_room(struct client_stmts *s)
{
    if (s->n_restore < s->cap_restore)
        return true;
    size_t cap = s->cap_restore ? s->cap_restore * 2 : 4;
    struct restore_item *grown = realloc(s->to_restore, cap * sizeof(*grown));
    if (!grown)
        return false;
    s->to_restore = grown;
    s->cap_restore = cap;
    return true;
}

void client_stmt_unpark(struct client_stmts *s, const struct reply *r, bool skipped)
{
    struct client_stmt *st = stmt_of_reply(s, r);
    if (!st || (skipped && (!st->closing || st->closes == 0)))
        return;
    if (skipped && --st->closes > 0)
        return;                         /* a later Close of it is still owed: it may run */
    if (!skipped || !restore_room(s)) { /* (out of memory: the Close is taken as done) */
        remove_stmt(s, st);
        return;
    }
    s->to_restore[s->n_restore++] = (struct restore_item){r->gen, r->name_hash};
}

void client_stmt_restore_skipped(struct client_stmts *s)
{
    for (size_t i = 0; i < s->n_restore; i++) {
        struct reply r = {.gen = s->to_restore[i].gen, .name_hash = s->to_restore[i].hash};
        struct client_stmt *st = stmt_of_reply(s, &r);
        if (!st || !st->closing || st->closes > 0)
            continue;
        if (find_client_stmt(s, st->name)) { /* a later Parse took the name */
            remove_stmt(s, st);
            continue;
        }
        st->closing = false;
        s->n_closing--;
        s->closing_bytes -= stmt_bytes(st);
    }
    s->n_restore = 0;
}

void client_stmt_remove_all(struct client_stmts *s, const char *name)
{
    client_stmt_remove(s, name);
    struct client_stmt *st;
    while (s->n_closing && (st = newest_closing(s, name)))
        remove_stmt(s, st);
}

void client_stmts_drop_closing(struct client_stmts *s)
{
    for (size_t i = s->n; i-- > 0 && s->n_closing > 0;)
        if (s->items[i].closing) /* (the last item fills the hole: i is done with) */
            remove_stmt(s, &s->items[i]);
    s->n_restore = 0;
}

void client_stmts_clear(struct client_stmts *s)
{
    for (size_t i = 0; i < s->n; i++)
        free_stmt(&s->items[i]);
    free(s->items);
    free(s->heads);
    free(s->to_restore);
    uint32_t gen = s->last_gen; /* replies still owed may name older gens: none is reused */
    uint32_t settled = s->settled_gen, sync = s->sync_gen;
    memset(s, 0, sizeof(*s)); /* (unsure too: no name is held now) */
    s->last_gen = gen;
    s->settled_gen = settled;
    s->sync_gen = sync;
}

int server_stmt_find(struct server_stmts *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0) {
            s->used[i] = ++s->clock;
            return (int)i;
        }
    return -1;
}

void server_stmt_add(struct server_stmts *s, const char *name, char evicted[STMT_NAME_LEN],
                     bool *did_evict)
{
    size_t slot = s->n;
    *did_evict = false;
    if (s->n == SERVER_STMT_CACHE) {
        slot = 0;
        for (size_t i = 1; i < s->n; i++)
            if (s->used[i] < s->used[slot])
                slot = i;
        memcpy(evicted, s->names[slot], STMT_NAME_LEN);
        *did_evict = true;
    } else {
        s->n++;
    }
    snprintf(s->names[slot], STMT_NAME_LEN, "%s", name);
    s->used[slot] = ++s->clock;
}

void server_stmt_remove(struct server_stmts *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0) {
            s->n--;
            memcpy(s->names[i], s->names[s->n], STMT_NAME_LEN);
            s->used[i] = s->used[s->n];
            return;
        }
}

void server_stmts_clear(struct server_stmts *s)
{
    s->n = 0;
}

/* The ring index of position i (cap is a power of two: a mask, not a division, per message). */
static size_t rq_slot(const struct reply_queue *q, size_t i)
{
    return i & (q->cap - 1);
}

bool rq_push(struct reply_queue *q, enum reply_kind kind, const char *stmt)
{
    if (q->len == REPLY_QUEUE_MAX)
        return false;
    if (q->len == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        struct reply *items = malloc(cap * sizeof(*items));
        if (!items)
            return false;
        for (size_t i = 0; i < q->len; i++)
            items[i] = q->items[rq_slot(q, q->head + i)];
        free(q->items);
        q->items = items;
        q->cap = cap;
        q->head = 0;
    }
    struct reply *r = &q->items[rq_slot(q, q->head + q->len)];
    r->kind = (uint8_t)kind;
    r->own_error = REPLY_OWN_NONE;
    r->shared_bind = false;
    r->gen = 0;
    r->name_hash = 0;
    r->copy_dones = q->copy_dones;
    r->execs = q->execs;
    /* (once per message: a bounded copy, not snprintf, which costs more than the rest here) */
    size_t n = stmt ? strnlen(stmt, sizeof(r->stmt) - 1) : 0;
    if (n > 0)
        memcpy(r->stmt, stmt, n);
    r->stmt[n] = '\0';
    q->len++;
    return true;
}

bool rq_only_queries(const struct reply_queue *q)
{
    for (size_t i = 0; i < q->len; i++)
        if (q->items[rq_slot(q, q->head + i)].kind != RK_QUERY)
            return false;
    return true;
}

const struct reply *rq_front(const struct reply_queue *q)
{
    return q->len ? &q->items[q->head] : NULL;
}

const struct reply *rq_second(const struct reply_queue *q)
{
    return q->len > 1 ? &q->items[rq_slot(q, q->head + 1)] : NULL;
}

void rq_pop(struct reply_queue *q)
{
    if (!q->len)
        return;
    q->head = rq_slot(q, q->head + 1);
    q->len--;
}

/* Is Execute number a before number b (the counts wrap)? */
static bool exec_before(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static struct exec_run *run_at(struct reply_queue *q, unsigned i)
{
    return &q->runs[(q->run_head + i) % EXEC_RUNS];
}

bool rq_note_execute(struct reply_queue *q)
{
    uint32_t n = q->execs++;
    if (q->run_len > 0 && run_at(q, q->run_len - 1u)->copy_dones == q->copy_dones)
        return true;
    if (q->run_len == EXEC_RUNS)
        return false;
    *run_at(q, q->run_len++) = (struct exec_run){.first = n, .copy_dones = q->copy_dones};
    return true;
}

/* Forgets the runs whose Executes are all over (the one in progress stays). */
static void prune_runs(struct reply_queue *q)
{
    while (q->run_len > 1 && !exec_before(q->execs_done, run_at(q, 1)->first)) {
        q->run_head = (uint8_t)((q->run_head + 1) % EXEC_RUNS);
        q->run_len--;
    }
}

void rq_execute_done(struct reply_queue *q)
{
    const struct reply *f = rq_front(q);
    if (f && f->kind == RK_QUERY && !exec_before(q->execs_done, f->execs))
        return; /* a simple Query's own CommandComplete: no Execute's */
    if (exec_before(q->execs_done, q->execs))
        q->execs_done++;
    prune_runs(q);
}

/* (Exactly: none sent after it can have ended before its ReadyForQuery.) */
void rq_executes_settled(struct reply_queue *q, uint32_t execs)
{
    q->execs_done = execs;
    prune_runs(q);
}

bool rq_next_execute_copy_dones(struct reply_queue *q, uint32_t *copy_dones)
{
    prune_runs(q);
    if (q->run_len == 0 || !exec_before(q->execs_done, q->execs) ||
        exec_before(q->execs_done, run_at(q, 0)->first))
        return false;
    *copy_dones = run_at(q, 0)->copy_dones;
    return true;
}

void rq_free(struct reply_queue *q)
{
    free(q->items);
    memset(q, 0, sizeof(*q));
}

/* Which server message types end a reply of each kind. */
static bool ends(uint8_t kind, uint8_t type)
{
    switch (kind) {
    case RK_PARSE:
    case RK_DROP_PARSE: return type == '1';
    case RK_BIND: return type == '2';
    case RK_CLOSE:
    case RK_DROP_CLOSE: return type == '3';
    case RK_DESCRIBE:
    case RK_DROP_DESCRIBE: return type == 'T' || type == 'n';
    case RK_EXECUTE: return type == 'C' || type == 'I' || type == 's';
    case RK_SYNC:
    case RK_QUERY: return type == 'Z';
    default: return false;
    }
}

enum rq_action rq_classify(const struct reply_queue *q, uint8_t type)
{
    const struct reply *f = rq_front(q);
    if (!f)
        return RQ_PASS;
    if (type == 'E')
        return f->kind == RK_QUERY || f->kind == RK_SYNC ? RQ_PASS : RQ_FAIL;
    if (!ends(f->kind, type))
        return RQ_PASS;
    return f->kind == RK_DROP_PARSE || f->kind == RK_DROP_CLOSE || f->kind == RK_DROP_DESCRIBE
               ? RQ_SWALLOW
               : RQ_FINISH;
}

size_t rq_fail_until_sync(struct reply_queue *q, void (*on_skipped)(void *, const struct reply *),
                          void *arg)
{
    const struct reply *f;
    size_t queries = 0;
    while ((f = rq_front(q)) && f->kind != RK_SYNC) {
        bool parse = f->kind == RK_PARSE || f->kind == RK_DROP_PARSE || f->kind == RK_FAKE_PARSE;
        bool close = f->kind == RK_DROP_CLOSE || f->kind == RK_CLOSE || rk_parks(f->kind);
        if ((parse || close) && on_skipped)
            on_skipped(arg, f);
        queries += f->kind == RK_QUERY;
        rq_pop(q);
    }
    return queries;
}

void rq_mark_parse_of(struct reply_queue *q, const struct client_stmt *st)
{
    if (!q->len)
        return;
    struct reply *r = &q->items[rq_slot(q, q->head + q->len - 1)];
    r->gen = st->gen;
    r->name_hash = st->hash;
}

void rq_mark_shared_bind(struct reply_queue *q)
{
    if (q->len)
        q->items[rq_slot(q, q->head + q->len - 1)].shared_bind = true;
}

void rq_mark_own_error(struct reply_queue *q, enum reply_own_error e)
{
    if (q->len)
        q->items[rq_slot(q, q->head + q->len - 1)].own_error = (uint8_t)e;
}

/* The entries sent with one count lie together, since counts never fall along the queue: only
 * the entries up to the end of that run are looked at, and those kept move towards its end
 * (the head moves past the dropped ones), so a pipeline of many COPYs costs each COPY its own
 * run, not the whole queue. */
size_t rq_drop_copy_syncs(struct reply_queue *q, uint32_t copy_dones)
{
    size_t end = 1;
    while (end < q->len && q->items[rq_slot(q, q->head + end)].copy_dones <= copy_dones)
        end++;
    size_t to = end, dropped = 0;
    for (size_t i = end; i-- > 0;) {
        const struct reply *r = &q->items[rq_slot(q, q->head + i)];
        if (i > 0 && r->kind == RK_SYNC && r->copy_dones == copy_dones) {
            dropped++;
            continue;
        }
        to--;
        if (to != i)
            q->items[rq_slot(q, q->head + to)] = *r;
    }
    q->head = rq_slot(q, q->head + dropped);
    q->len -= dropped;
    return dropped;
}
