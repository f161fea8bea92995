/* pool.c: server connection pools keyed by database entry: checkout, FIFO wait queue with a
 * timeout, return after reset, and failure reporting to waiting clients. */
#include "pool.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "client.h"
#include "credentials.h"
#include "log.h"
#include "monotime.h"
#include "params.h"
#include "poolmode.h"
#include "qtrack.h"
#include "server.h"
#include "tls.h"

static void schedule_hand_out(struct pool *p);
static void hand_out_idle(struct pool *p);

struct pool *pool_find(struct worker *w, const char *name)
{
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &w->pools) {
        struct pool *p = list_entry(it, struct pool, node);
        if (strcmp(p->db->name, name) == 0)
            return p;
    }
    return NULL;
}

struct pool *pool_get(struct worker *w, const struct db_config *db, char *err, size_t errsz)
{
    struct pool *p = pool_find(w, db->name);
    if (p)
        return p;
    p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    p->w = w;
    p->db = db;
    list_init(&p->idle);
    list_init(&p->active);
    list_init(&p->connecting);
    list_init(&p->waiting);
    if (db->tls != TLS_DISABLE) {
        p->tls = tls_connect_ctx(db->tls, db->ca_file, err, errsz);
        if (!p->tls) {
            free(p);
            return NULL;
        }
    }
    list_append(&w->pools, &p->node);
    return p;
}

void pool_place_server(struct server *s)
{
    struct pool *p = s->pool;
    list_del(&s->node);
    switch (s->state) {
    case SV_CONNECTING: list_append(&p->connecting, &s->node); break;
    case SV_IDLE: list_append(&p->idle, &s->node); break;
    default: list_append(&p->active, &s->node);
    }
}

/* May s serve c? With masking on the database, a server serves clients of one masking class
 * for its whole life (a fresh one any): what one client leaves on it (a prepared statement, a
 * WITH HOLD cursor, a temporary table, a setting) never reaches a client masked otherwise. */
static bool class_fits(const struct server *s, struct client *c)
{
    if (!config_mask_applies(s->pool->w->cfg, s->pool->db->name))
        return true;
    return s->mask_class == 0 || s->mask_class == client_mask_class(c);
}

/* c's home server (the one holding its current unnamed statement) when it is idle in p and
 * may serve c: checked out by c it keeps that statement, and needs no Close of another's. */
static struct server *idle_home(struct pool *p, struct client *c)
{
    struct server *s = c->unnamed_home; /* (a closing server is no one's home) */
    bool fits = s && !s->closing && s->pool == p && s->state == SV_IDLE && s->unnamed_of == c->id;
    return fits && class_fits(s, c) && !server_input_pending(s) ? s : NULL;
}

/* The idle server for c, of c's masking class: for a client with neither row-level security
 * nor masking its home server (idle_home), for one under row-level security one that already
 * carries c's settings (no injection needed); else the one that went idle last (the idle list
 * runs from the one idle longest to it). NULL when no
 * idle server fits c. Last in, first out, as PgBouncer does by default: the busy connections
 * stay few and warm (their backend is often still awake when the next query comes, and its
 * caches are), and the rest age out under idle_timeout. */
static struct server *pick_idle_server(struct pool *p, struct client *c)
{
    struct server *home = client_under_policy(c) ? NULL : idle_home(p, c);
    if (home)
        return home;
    char err[8];
    const struct buf *pre = c->rls ? client_rls_prefix(c, err, sizeof(err)) : NULL;
    for (struct list *it = p->idle.prev; pre && it != &p->idle; it = it->prev) {
        struct server *s = list_entry(it, struct server, node);
        if (server_carries_rls(s, pre) && class_fits(s, c) && !server_input_pending(s))
            return s;
    }
    for (struct list *it = p->idle.prev; it != &p->idle; it = it->prev) {
        struct server *s = list_entry(it, struct server, node);
        if (class_fits(s, c) && !server_input_pending(s))
            return s;
    }
    return NULL;
}

/* Links idle server s to c; one idle for pool.check_after_s or longer is checked first (a
 * connection the network dropped silently would otherwise hang c's first query). */
static void give_idle_server(struct pool *p, struct server *s, struct client *c)
{
    int after = p->db->pool.check_after_s;
    bool check = after > 0 && time(NULL) - s->last_used >= after;
    s->state = check ? SV_CHECKING : SV_ACTIVE;
    pool_place_server(s);
    c->state = CL_ACTIVE;
    if (check)
        server_check_then_link(s, c);
    else
        server_link(s, c);
}

/* Sends every waiting client the same error. */
static void fail_waiters(struct pool *p, const char *sqlstate, const char *msg)
{
    while (!list_empty(&p->waiting)) {
        struct client *c = list_entry(p->waiting.next, struct client, wait_node);
        pool_forget_client(c);
        client_fail(c, sqlstate, msg);
    }
}

/* Tells the waiters that no credential can be had (on its own loop turn: the caller may be
 * in the middle of handling one of those clients' messages). */
static void no_credential_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pool *p = arg;
    char why[600];
    if (credentials_status(p->w, p->db, why, sizeof(why)) != CRED_UNAVAILABLE)
        return; /* a fetch started or succeeded meanwhile: pool_credential_event follows */
    snprintf(p->last_error, sizeof(p->last_error), "%s", why);
    fail_waiters(p, "08006", why);
}

/* Is there a credential to log in with? Waiters are told soon when there is none. */
static bool credential_ready(struct pool *p)
{
    char why[600];
    switch (credentials_status(p->w, p->db, why, sizeof(why))) {
    case CRED_READY: return true;
    case CRED_PENDING: return false; /* pool_credential_event comes when it arrives */
    case CRED_UNAVAILABLE: break;
    }
    if (!p->no_cred_timer)
        p->no_cred_timer = evtimer_new(p->w->base, no_credential_cb, p);
    struct timeval now = {0, 0};
    if (p->no_cred_timer && !list_empty(&p->waiting))
        evtimer_add(p->no_cred_timer, &now);
    return false;
}

static void reserve_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pool_spawn_for_waiters(arg);
}

/* How long c has been waiting for a server, in microseconds. */
/* (the monotonic clock: the wall clock may be stepped while a client waits) */
static long long waited_us(const struct client *c)
{
    return monotime_us() - c->wait_start_us;
}

/* How many servers the pool may have now: pool.size, plus pool.reserve once the oldest waiting
 * client has waited pool.reserve_timeout_ms (until then, a timer is set for that moment). */
static int server_limit(struct pool *p)
{
    const struct pool_config *pc = &p->db->pool;
    if (pc->reserve <= 0 || list_empty(&p->waiting))
        return pc->size;
    const struct client *oldest = list_entry(p->waiting.next, struct client, wait_node);
    long long waited_ms = waited_us(oldest) / 1000;
    if (waited_ms >= pc->reserve_timeout_ms)
        return pc->size + pc->reserve;
    if (!p->reserve_timer)
        p->reserve_timer = evtimer_new(p->w->base, reserve_cb, p);
    long long left = pc->reserve_timeout_ms - waited_ms;
    struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
    if (p->reserve_timer && !evtimer_pending(p->reserve_timer, NULL))
        evtimer_add(p->reserve_timer, &tv);
    return pc->size;
}

void pool_spawn_for_waiters(struct pool *p)
{
    if (p->hand_out_pending)
        return; /* idle servers are about to serve waiters: the hand-out opens what is missing */
    if (p->retry_timer && evtimer_pending(p->retry_timer, NULL))
        return; /* the server failed a moment ago: the retry timer will try again */
    if (list_empty(&p->waiting) || p->auth_retry_waiting || !credential_ready(p))
        return; /* a refused credential is being refreshed: logins wait for the new one */
    int coming = (int)list_count(&p->connecting); /* at most the pool's size */
    int limit = server_limit(p);
    if (p->paused || p->n_servers >= limit)
        return;
    /* the wait queue may hold thousands: count only as far as connections could be opened */
    int waiting = (int)list_count_upto(&p->waiting, (size_t)(coming + limit - p->n_servers + 1));
    while (!p->paused && waiting > coming && p->n_servers < limit) {
        if (!server_connect(p))
            break;
        coming++;
    }
}

static void wait_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct client *c = arg;
    struct pool *p = c->pool;
    char msg[1024];
    if (c->state != CL_WAITING)
        return;
    pool_forget_client(c);
    if (p->last_error[0]) { /* the server is the problem, not the pool's size */
        snprintf(msg, sizeof(msg),
                 "could not connect to the server of pool \"%s\" within %d ms: %s", p->db->name,
                 p->db->pool.max_wait_ms, p->last_error);
        client_fail(c, "08006", msg);
        return;
    }
    snprintf(msg, sizeof(msg),
             "no server connection available in pool \"%s\" within %d ms (pool.size %d)",
             p->db->name, p->db->pool.max_wait_ms, p->db->pool.size);
    client_fail(c, "53300", msg);
}

/* The waiter before which a client that asked at t goes (the queue runs in order of asking). */
static struct list *place_in_line(struct pool *p, int64_t t_us)
{
    struct list *it = p->waiting.next;
    for (; it != &p->waiting; it = it->next) {
        const struct client *o = list_entry(it, struct client, wait_node);
        if (o->wait_start_us > t_us)
            break;
    }
    return it;
}

/* Arms waiter c's timer: the pool's max_wait_ms from now, or (left_ms >= 0) left_ms. */
static void arm_wait_timer(struct pool *p, struct client *c, long long left_ms)
{
    long long ms = left_ms >= 0 ? left_ms : p->db->pool.max_wait_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    /* one duration for every waiter: libevent queues such timers in order (O(1)) instead of
     * keeping each in its heap (O(log n) for n waiters) */
    const struct timeval *common =
        left_ms < 0 ? event_base_init_common_timeout(p->w->base, &tv) : NULL;
    if (!c->timer)
        c->timer = evtimer_new(p->w->base, wait_timeout_cb, c);
    if (c->timer)
        evtimer_add(c->timer, common ? common : &tv);
    c->wait_armed_us = monotime_us() - (p->db->pool.max_wait_ms - ms) * 1000;
}

/* Puts c in the wait queue, at its back, or (again) where its first asking puts it, with
 * max_wait_ms to wait (none while the pool is paused). */
static void enqueue(struct pool *p, struct client *c, bool again)
{
    c->state = CL_WAITING;
    list_append(again ? place_in_line(p, c->wait_start_us) : &p->waiting, &c->wait_node);
    if (!p->paused) /* (else held until RESUME, however long) */
        arm_wait_timer(p, c, -1);
}

/* Sets the timers of p's waiters again: none while p is paused; after a RESUME (fresh) each
 * gets max_wait_ms from now; else (pool.max_wait_ms changed) each gets what is left of the
 * new limit since its timer was armed, and one that waited longer times out at once. */
static void rearm_waiters(struct pool *p, bool fresh)
{
    int64_t now = monotime_us();
    for (struct list *it = p->waiting.next; it != &p->waiting; it = it->next) {
        struct client *c = list_entry(it, struct client, wait_node);
        if (c->timer)
            event_del(c->timer);
        if (p->paused)
            continue;
        long long left = p->db->pool.max_wait_ms - (now - c->wait_armed_us) / 1000;
        arm_wait_timer(p, c, fresh ? -1 : left > 0 ? left : 0);
    }
}

void pool_max_wait_changed(struct pool *p)
{
    rearm_waiters(p, false);
}

/* Gives c an idle server, or queues it. While others wait, the idle servers are theirs (handed
 * out on this loop turn) and c queues behind them, unless it asks again (again: its server
 * closed before serving it) and goes where its first asking put it. */
static void request(struct pool *p, struct client *c, bool again)
{
    bool idle = !list_empty(&p->idle) && !p->paused;
    struct server *s = idle && (again || list_empty(&p->waiting)) ? pick_idle_server(p, c) : NULL;
    if (s) {
        give_idle_server(p, s, c);
        return;
    }
    enqueue(p, c, again);
    if (idle) /* of another masking class, or promised to waiters: the hand-out sorts it out */
        schedule_hand_out(p);
    else
        pool_spawn_for_waiters(p);
}

void pool_request(struct pool *p, struct client *c)
{
    c->pool = p;
    c->settings_lost = false; /* a new checkout */
    c->session_pooled |= !pool_mode_of(p)->shares_servers;
    qtrack_request(c);
    c->wait_start_us = monotime_us();
    c->wait_counted_us = -1;
    request(p, c, false);
}

void pool_request_again(struct client *c)
{
    if (c->w->draining) /* its transaction never began: it goes, as the idle clients went */
        client_fail(c, "57P01", "lakeproxy is shutting down");
    else
        request(c->pool, c, true);
}

void pool_forget_client(struct client *c)
{
    list_del(&c->wait_node);
    if (c->timer)
        event_del(c->timer);
}

/* Adds a waiter's time in the queue to the pool's statistics: one wait per asking, however
 * often it queues for it, and each microsecond of it once. */
static void count_wait(struct pool *p, struct client *c)
{
    long long us = waited_us(c);
    if (c->wait_counted_us < 0)
        p->stats.waits++;
    long long before = c->wait_counted_us > 0 ? c->wait_counted_us : 0;
    p->stats.wait_us += us > before ? (uint64_t)(us - before) : 0;
    c->wait_counted_us = us > before ? us : before;
}

void pool_set_paused(struct pool *p, bool paused)
{
    bool was = p->paused;
    p->paused = paused;
    if (was != paused) /* (held without a timer while paused, max_wait_ms after) */
        rearm_waiters(p, true);
    if (!paused)
        hand_out_idle(p);
}

/* How many of the longest waiting clients the hand-out looks at for one server: the queue may
 * hold thousands, and only masking classes make the first of them not fit. */
enum { HAND_OUT_LOOK_AHEAD = 64 };

/* The waiter that waited longest, among the first HAND_OUT_LOOK_AHEAD, that an idle server
 * fits, and that server (the one pick_idle_server prefers for it); NULL when none fits. */
static struct client *first_served_waiter(struct pool *p, struct server **s)
{
    int looked = 0;
    for (struct list *it = p->waiting.next; it != &p->waiting && looked < HAND_OUT_LOOK_AHEAD;
         it = it->next, looked++) {
        struct client *c = list_entry(it, struct client, wait_node);
        *s = pick_idle_server(p, c);
        if (*s)
            return c;
    }
    return NULL;
}

/* Closes up to n idle servers (the longest idle first) to make room for fresh ones; servers
 * holding part of a late message are left for it to finish. */
static void close_idle(struct pool *p, size_t n, const char *reason)
{
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &p->idle) {
        struct server *s = list_entry(it, struct server, node);
        if (n == 0)
            break;
        if (server_input_pending(s))
            continue;
        server_close(s, reason);
        n--;
    }
}

/* Closes idle servers that none of the longest waiting clients may use (each serves another
 * masking class) when the pool is full, as many as the waiters that no server on its way will
 * serve: a fresh server of the waiters' class takes each one's place. */
static void close_unfitting_idle(struct pool *p)
{
    if (p->n_servers < server_limit(p))
        return; /* a fresh server can be opened without closing one */
    size_t coming = list_count(&p->connecting);
    size_t waiters = list_count_upto(&p->waiting, coming + list_count(&p->idle));
    close_idle(p, waiters > coming ? waiters - coming : 0,
               "serving another masking class than the waiting clients");
}

/* In a full pool where no server is on its way, the longest waiting client that fits no idle
 * server (another masking class) gets one of them closed for it, before later waiters take
 * them all: otherwise it could wait while they are served. */
static void make_room_for_oldest(struct pool *p)
{
    if (list_empty(&p->waiting) || list_empty(&p->idle) || !list_empty(&p->connecting) ||
        p->n_servers < server_limit(p))
        return;
    struct client *oldest = list_entry(p->waiting.next, struct client, wait_node);
    if (!pick_idle_server(p, oldest))
        close_idle(p, 1, "serving another masking class than the longest waiting client");
}

/* Gives idle servers to waiting clients, the longest waiting first, until either runs out;
 * then replaces idle servers of a masking class no waiter has, and opens more if allowed. */
static void hand_out_idle(struct pool *p)
{
    struct server *s = NULL;
    struct client *c;
    p->hand_out_pending = false;
    if (!p->paused)
        make_room_for_oldest(p);
    while (!p->paused && !list_empty(&p->idle) && (c = first_served_waiter(p, &s))) {
        pool_forget_client(c);
        count_wait(p, c);
        give_idle_server(p, s, c);
    }
    if (!p->paused && !list_empty(&p->idle) && !list_empty(&p->waiting))
        close_unfitting_idle(p);
    pool_spawn_for_waiters(p);
}

static void hand_out_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hand_out_idle(arg);
}

/* Hands idle servers out once this loop turn's events are handled, as PgBouncer does: the
 * servers freed by one turn's reads all go to waiters together, in queue order. */
static void schedule_hand_out(struct pool *p)
{
    if (!p->hand_out)
        p->hand_out = event_new(p->w->base, -1, 0, hand_out_cb, p);
    if (p->hand_out) {
        p->hand_out_pending = true;
        event_active(p->hand_out, 0, 0);
    } else
        hand_out_idle(p); /* out of memory for the event: hand out now */
}

void pool_server_logged_in(struct server *s)
{
    s->pool->backoff_ms = 0;
    credentials_login_ok(s->pool->w, s->pool->db, s->cred_gen);
    pool_server_ready(s);
}

void pool_server_ready(struct server *s)
{
    struct pool *p = s->pool;
    p->last_error[0] = '\0'; /* the database serves: a timed-out wait is the pool's size */
    p->auth_retry = false;   /* ... and the credential in use works */
    p->auth_fell_back = false;
    if (p->params.n == 0)
        for (size_t i = 0; i < s->reported.n; i++)
            param_put(&p->params, s->reported.items[i].name, s->reported.items[i].value);
    if (!server_ready_to_serve(s)) { /* closed, or part of a late message waits for its rest */
        if (!s->closing) {
            s->state = SV_IDLE;
            pool_place_server(s);
        }
        return;
    }
    s->state = SV_IDLE;
    pool_place_server(s);
    if (!p->paused && !list_empty(&p->waiting))
        schedule_hand_out(p);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pool_spawn_for_waiters(arg);
}

/* Arms the retry timer for ms from now (unless it is already armed). */
static void retry_in(struct pool *p, int ms)
{
    if (!p->retry_timer)
        p->retry_timer = evtimer_new(p->w->base, retry_cb, p);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (p->retry_timer && !evtimer_pending(p->retry_timer, NULL))
        evtimer_add(p->retry_timer, &tv);
}

/* Tells the waiting clients that the server refuses the credential. */
static void fail_auth(struct pool *p, const char *detail)
{
    char msg[700];
    p->auth_retry = false;
    p->auth_retry_waiting = false;
    snprintf(msg, sizeof(msg), "the server of pool \"%s\" refused the login of user \"%s\"%s: %s",
             p->db->name, p->db->user,
             p->db->cred.provider == CRED_STATIC ? "" : " even with a freshly fetched credential",
             detail);
    log_warning("%s", msg);
    fail_waiters(p, "28P01", msg);
}

/* 28P01: a rotating credential gets one immediate refresh and one retry before the waiting
 * clients are told; a static password is reported at once. */
static void handle_auth_failure(struct pool *p, const char *msg, unsigned generation)
{
    if (p->auth_fell_back && generation != credentials_generation(p->w, p->db)) {
        retry_in(p, 0); /* a login begun with the token refused before the fall-back */
        return;
    }
    if (p->auth_retry && generation == p->rejected_gen)
        return; /* another login with the same token: the refresh is already under way */
    if (p->auth_retry) {
        fail_auth(p, msg);
        return;
    }
    p->rejected_gen = generation;
    if (!p->auth_fell_back && credentials_fall_back(p->w, p->db, generation)) {
        p->auth_fell_back = true; /* once: if the older token is refused too, refresh */
        retry_in(p, 0);
        return;
    }
    switch (credentials_rejected(p->w, p->db, generation)) {
    case CRED_REJECT_RETRY:
        p->auth_retry = true;
        retry_in(p, 0);
        break;
    case CRED_REJECT_WAIT:
        p->auth_retry = true;
        p->auth_retry_waiting = true;
        break;
    case CRED_REJECT_FINAL: fail_auth(p, msg); break;
    }
}

void pool_credential_event(struct worker *w, const char *db_name, bool ok)
{
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &w->pools) {
        struct pool *p = list_entry(it, struct pool, node);
        if (strcmp(p->db->name, db_name) != 0)
            continue;
        if (p->auth_retry && (!ok || credentials_generation(w, p->db) == p->rejected_gen)) {
            fail_auth(p, ok ? "the provider returned the same token again"
                            : "refreshing the credential failed");
            continue;
        }
        if (!ok) {
            credential_ready(p); /* tells the waiters when no valid token is left */
            continue;
        }
        p->backoff_ms = 0;
        p->auth_retry_waiting = false;
        if (p->retry_timer)
            evtimer_del(p->retry_timer);
        pool_spawn_for_waiters(p);
    }
}

void pool_server_failed(struct pool *p, const char *sqlstate, const char *msg,
                        unsigned cred_generation)
{
    snprintf(p->last_error, sizeof(p->last_error), "%s (SQLSTATE %s)", msg, sqlstate);
    if (strcmp(sqlstate, "28P01") == 0) {
        handle_auth_failure(p, p->last_error, cred_generation);
        return;
    }
    p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : 100;
    if (p->backoff_ms > 5000)
        p->backoff_ms = 5000;
    retry_in(p, p->backoff_ms);
}

/* Closes idle servers past their idle timeout (above pool.min) or lifetime. */
static void expire_idle(struct pool *p, time_t now)
{
    const struct pool_config *pc = &p->db->pool;
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &p->idle) {
        struct server *s = list_entry(it, struct server, node);
        if (server_past_lifetime(s, pc->lifetime_s))
            server_close(s, "lifetime reached");
        else if (pc->idle_timeout_s > 0 && now - s->last_used >= pc->idle_timeout_s &&
                 p->n_servers > pc->min)
            server_close(s, "idle timeout");
    }
}

/* The client of p that has been idle inside a transaction block for `limit` seconds, if any
 * (spell.h: any message from it ends a spell). */
static struct client *idle_transaction_expired(struct pool *p, int64_t now_ms, int limit)
{
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &p->active) {
        struct server *s = list_entry(it, struct server, node);
        struct client *c = s->client;
        if (spell_over(&s->idle_txn, server_idle_in_transaction(s), c ? c->id : 0,
                       c ? c->msgs_in : 0, now_ms, limit))
            return c;
    }
    return NULL;
}

/* Closes the clients idle inside a transaction block for pool.idle_transaction_timeout_s:
 * each holds its server from everyone else meanwhile (the server rolls back and stays:
 * server_unlink). One at a time, as closing one changes the lists. */
static void expire_idle_transactions(struct pool *p, int64_t now_ms)
{
    int limit = p->db->pool.idle_transaction_timeout_s;
    struct client *c;
    while (limit > 0 && (c = idle_transaction_expired(p, now_ms, limit))) {
        char msg[256], logged[96];
        snprintf(msg, sizeof(msg),
                 "terminating connection due to idle-in-transaction timeout: idle inside a "
                 "transaction for %d s (pool.idle_transaction_timeout_s of database \"%.64s\"); "
                 "the transaction was rolled back",
                 limit, p->db->name);
        snprintf(logged, sizeof(logged),
                 "idle inside a transaction for %d s (pool.idle_transaction_timeout_s)", limit);
        client_fail_as(c, "25P03", msg, logged);
    }
}

/* The server of p that has been running its client's statement, or waiting without a client
 * for what it was left with (server_left_waiting), for `limit` seconds, if any (spell.h: each
 * ReadyForQuery ends a spell). */
static struct server *statement_overdue(struct pool *p, int64_t now_ms, int limit)
{
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &p->active) {
        struct server *s = list_entry(it, struct server, node);
        bool busy = (server_running_statement(s) && !s->ending) || server_left_waiting(s);
        if (spell_over(&s->running, busy, s->client ? s->client->id : 0, s->readies, now_ms, limit))
            return s;
    }
    return NULL;
}

/* Ends the statements that have run for pool.query_timeout_s: PostgreSQL is asked to cancel
 * each, and its client is closed (its server is drained and kept when it can be:
 * server_unlink), as PgBouncer's query_timeout does. A server left waiting that long after
 * its client went (a statement that outlived the cancel, a server or network that stopped
 * answering) is closed, freeing its slot. One at a time. */
static void expire_statements(struct pool *p, int64_t now_ms)
{
    int limit = p->db->pool.query_timeout_s;
    struct server *s;
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &p->active) /* (ends put off: not again, but not for ever) */
        server_check_ending(list_entry(it, struct server, node), now_ms);
    while (limit > 0 && (s = statement_overdue(p, now_ms, limit))) {
        if (!s->client) {
            server_close_unanswered(s, "no answer for pool.query_timeout_s after its client left");
            continue;
        }
        char msg[320], logged[96];
        snprintf(msg, sizeof(msg),
                 "terminating connection due to query timeout: a statement ran longer than %d s "
                 "(pool.query_timeout_s of database \"%.64s\"); lakeproxy asked the server to "
                 "cancel it: whether it took effect is unknown (it may have committed before)",
                 limit, p->db->name);
        snprintf(logged, sizeof(logged), "a statement ran longer than %d s (pool.query_timeout_s)",
                 limit);
        server_end_statement(s, "57014", msg, logged);
    }
}

/* Does some database of cfg close idle clients (pool.client_idle_timeout_s)? */
static bool idle_clients_timed(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_dbs; i++)
        if (cfg->dbs[i].pool.client_idle_timeout_s > 0)
            return true;
    return false;
}

/* Closes w's clients idle between statements for their pool's pool.client_idle_timeout_s
 * (spell.h: any message from one ends its spell), as PgBouncer's client_idle_timeout. The
 * clients are walked only when some database sets it. */
static void expire_idle_clients(struct worker *w, int64_t now_ms)
{
    if (!idle_clients_timed(w->cfg))
        return;
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &w->clients) {
        struct client *c = list_entry(it, struct client, node);
        int limit = client_idle_limit_s(c);
        if (limit <= 0 || !spell_over(&c->idle, client_idle_between_statements(c), c->id,
                                      c->msgs_in, now_ms, limit))
            continue;
        char msg[256], logged[96];
        snprintf(msg, sizeof(msg),
                 "terminating connection due to idle-session timeout: no statement for %d s "
                 "(pool.client_idle_timeout_s of database \"%.64s\")",
                 limit, c->pool->db->name);
        snprintf(logged, sizeof(logged), "idle for %d s (pool.client_idle_timeout_s)", limit);
        client_fail_as(c, "57P05", msg, logged);
    }
}

/* Opens connections until the pool holds pool.min. */
static void keep_min(struct pool *p)
{
    if (p->paused || p->w->draining || p->w->handed_over ||
        (p->retry_timer && evtimer_pending(p->retry_timer, NULL)))
        return;
    if (p->n_servers < p->db->pool.min && !credential_ready(p))
        return;
    while (p->n_servers < p->db->pool.min && p->n_servers < p->db->pool.size)
        if (!server_connect(p))
            break;
}

void pool_janitor(struct worker *w)
{
    char err[256];
    time_t now = time(NULL);
    for (size_t i = 0; i < w->cfg->n_dbs; i++) /* pools with pool.min exist from the start */
        if (w->cfg->dbs[i].pool.min > 0 && !pool_get(w, &w->cfg->dbs[i], err, sizeof(err)))
            log_warning("pool %s: %s", w->cfg->dbs[i].name, err);
    int64_t now_ms = monotime_ms();
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &w->pools) {
        struct pool *p = list_entry(it, struct pool, node);
        expire_idle(p, now);
        expire_idle_transactions(p, now_ms);
        expire_statements(p, now_ms);
        keep_min(p);
    }
    expire_idle_clients(w, now_ms);
}

/* Is the address of s among the answers in res? */
static bool peer_in(const struct server *s, const struct evutil_addrinfo *res)
{
    const struct sockaddr *a = (const struct sockaddr *)&s->peer;
    for (; res; res = res->ai_next) {
        const struct sockaddr *b = res->ai_addr;
        if (a->sa_family != b->sa_family)
            continue;
        if (a->sa_family == AF_INET && ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
                                           ((const struct sockaddr_in *)b)->sin_addr.s_addr)
            return true;
        if (a->sa_family == AF_INET6 &&
            memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                   &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0)
            return true;
    }
    return false;
}

/* Marks the servers on list l that are connected to an address not in res; returns how
 * many. Idle ones close now; busy ones go when their client lets go (server_release). */
static int retire_moved(struct list *l, const struct evutil_addrinfo *res, bool close_now)
{
    int n = 0;
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, l) {
        struct server *s = list_entry(it, struct server, node);
        if (s->peer_len == 0 || peer_in(s, res))
            continue;
        s->addr_stale = true;
        n++;
        if (close_now)
            server_close(s, "its host name now resolves to another address");
    }
    return n;
}

static void recheck_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    if (result == EVUTIL_EAI_CANCEL)
        return; /* the pool is being freed */
    struct pool *p = arg;
    p->recheck = NULL;
    if (result != 0) { /* keep what works rather than guess */
        log_warning("pool %s: resolving %s again failed: %s", p->db->name, p->db->host,
                    evutil_gai_strerror(result));
        return;
    }
    int n = retire_moved(&p->active, res, false) + retire_moved(&p->idle, res, true);
    if (n > 0)
        log_info("pool %s: %s resolves to other addresses now: %d server connections retired",
                 p->db->name, p->db->host, n);
    evutil_freeaddrinfo(res);
    pool_spawn_for_waiters(p);
}

void pool_recheck_address(struct pool *p)
{
    char port[8];
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (p->recheck)
        evdns_getaddrinfo_cancel(p->recheck);
    snprintf(port, sizeof(port), "%d", p->db->port);
    /* answers from /etc/hosts or a literal come back at once, through recheck_cb */
    p->recheck = evdns_getaddrinfo(p->w->dns, p->db->host, port, &hints, recheck_cb, p);
}

/* Closes every server on list l. */
static void close_list(struct list *l, const char *reason)
{
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, l) {
        server_close(list_entry(it, struct server, node), reason);
    }
}

void pool_retire_servers(struct pool *p, const char *why)
{
    p->generation++;
    p->retire_why = why;
    close_list(&p->idle, why);
}

void pool_close_servers(struct pool *p, const char *reason)
{
    close_list(&p->idle, reason);
    close_list(&p->active, reason);
    close_list(&p->connecting, reason);
}

void pool_free_all(struct worker *w)
{
    struct list *it, *tmp;
    close_list(&w->cancellers, "shutting down");
    list_for_each_safe (it, tmp, &w->pools) {
        struct pool *p = list_entry(it, struct pool, node);
        pool_close_servers(p, "shutting down");
        list_del(&p->node);
        if (p->recheck)
            evdns_getaddrinfo_cancel(p->recheck);
        param_clear(&p->params);
        if (p->retry_timer)
            event_free(p->retry_timer);
        if (p->no_cred_timer)
            event_free(p->no_cred_timer);
        if (p->reserve_timer)
            event_free(p->reserve_timer);
        if (p->hand_out)
            event_free(p->hand_out);
        SSL_CTX_free(p->tls);
        free(p->latency);
        free(p);
    }
}
