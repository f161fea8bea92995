/* worker.c: owns one event loop: its listener, pools, clients, signals and TLS contexts. */
#include "worker.h"

#include <errno.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "auth.h"
#include "authquery.h"
#include "client.h"
#include "conn.h"
#include "credentials.h"
#include "guard.h"
#include "hashkey.h"
#include "listener.h"
#include "log.h"
#include "maskcat.h"
#include "masksql.h"
#include "metrics.h"
#include "msgshare.h"
#include "notify.h"
#include "params.h"
#include "pipeline.h"
#include "policy.h"
#include "pool.h"
#include "poolmode.h"
#include "server.h"
#include "stats.h"
#include "statslog.h"
#include "stopsig.h"
#include "tablesize.h"
#include "takeover.h"
#include "tls.h"
#include "tokenauth.h"

/* Distinct statement texts whose guard verdict is kept. */
#define GUARD_CACHE_ENTRIES 4096
/* Sets of the memo of text shapes (4 texts each): the statements a worker's clients run again. */
#define SHAPE_MEMO_SETS 64

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    if (sig == SIGHUP) {
        log_info("received SIGHUP: reloading %s", w->cfg->path);
        notify_reloading();
        worker_reload(w);
        statslog_reopen(w->qlog);
        notify_ready();
    } else if (sig == SIGUSR1) {
        log_info("received SIGUSR1: reopening the query log");
        statslog_reopen(w->qlog);
    } else if (sig == SIGTERM) {
        if (!w->draining) /* (a repeated one is the same request: one line) */
            log_info("received SIGTERM: draining (at most %d s)", w->cfg->shutdown_timeout_s);
        worker_start_drain(w);
    } else {
        log_info("received SIGINT: shutting down now");
        event_base_loopexit(w->base, NULL);
    }
}

/* Secrets to derive the salt key from (make_salt_key). */
struct secret_list {
    const void **p;
    size_t *len, n, cap;
};

static void add_secret(struct secret_list *l, const void *p, size_t len)
{
    if (p && l->p && l->len && l->n < l->cap) {
        l->p[l->n] = p;
        l->len[l->n++] = len;
    }
}

static void add_secret_text(struct secret_list *l, const char *text)
{
    add_secret(l, text, text ? strlen(text) : 0);
}

/* The key that salts unknown names and plain passwords (scram_name_salt): derived from the
 * configuration's secrets (users' passwords and verifiers, databases' static passwords,
 * auth_query's password, the masking hash key), so salts survive a restart; random when it
 * holds none. */
static bool make_salt_key(struct worker *w, const struct config *cfg)
{
    struct secret_list l = {.cap = 2 * cfg->n_users + cfg->n_dbs + 2};
    l.p = calloc(l.cap, sizeof(*l.p));
    l.len = calloc(l.cap, sizeof(*l.len));
    for (size_t i = 0; i < cfg->n_users; i++) {
        add_secret_text(&l, cfg->users[i].password_scram);
        add_secret_text(&l, cfg->users[i].password);
    }
    for (size_t i = 0; i < cfg->n_dbs; i++)
        add_secret_text(&l, cfg->dbs[i].password);
    add_secret_text(&l, cfg->auth_query.password);
    add_secret(&l, cfg->masking.hash_key, cfg->masking.hash_key_len);
    bool ok = l.p && l.len && scram_salt_key_from(l.p, l.len, l.n, w->mock_salt_key);
    free(l.p);
    free(l.len);
    return ok || RAND_bytes(w->mock_salt_key, sizeof(w->mock_salt_key)) == 1;
}

/* The verifier of unknown users: random, so nobody knows a password that matches it; their
 * salts are their names' own (make_salt_key). */
static bool make_mock_verifier(struct worker *w)
{
    uint8_t secret[32], salt[16];
    char pw[65];
    bool ok = RAND_bytes(secret, sizeof(secret)) == 1 && RAND_bytes(salt, sizeof(salt)) == 1 &&
              make_salt_key(w, w->cfg);
    for (int i = 0; i < 32; i++)
        snprintf(pw + 2 * i, 3, "%02x", secret[i]);
    ok = ok &&
         scram_make_verifier(pw, salt, sizeof(salt), SCRAM_DEFAULT_ITERATIONS, &w->mock_verifier);
    explicit_bzero(pw, sizeof(pw));
    explicit_bzero(secret, sizeof(secret));
    return ok;
}

/* Frees a verifier array of n entries after wiping it. */
static void free_verifiers(struct scram_verifier *v, size_t n)
{
    if (v)
        explicit_bzero(v, (n ? n : 1) * sizeof(*v));
    free(v);
}

/* The verifier old (the running configuration, may be NULL) made for user u's plain password,
 * when u is there with the same one: reused, so a reload runs no PBKDF2 for it. */
static const struct scram_verifier *kept_verifier(const struct config *old,
                                                  const struct scram_verifier *old_v,
                                                  const struct user_config *u)
{
    for (size_t i = 0; old && old_v && i < old->n_users; i++) {
        const struct user_config *o = &old->users[i];
        if (strcmp(o->name, u->name) != 0)
            continue;
        if (!u->password)
            return NULL;
        size_t n = strlen(u->password);
        bool same = o->auth == AUTH_SCRAM && !o->password_scram && o->password &&
                    strlen(o->password) == n && CRYPTO_memcmp(o->password, u->password, n) == 0;
        return same ? &old_v[i] : NULL;
    }
    return NULL;
}

/* Why a start making verifiers is called off now, or NULL: a stop signal (at start, old NULL),
 * or the running lakeproxy giving up the takeover exchange (handover set). */
static const char *verifiers_called_off(const struct config *old,
                                        const struct takeover_fds *handover)
{
    if (!old && stopsig_pending())
        return "a stop signal came while the users' verifiers were made";
    if (handover && takeover_given_up(handover))
        return "the running lakeproxy gave the exchange up (its time limit) while the users' "
               "verifiers were made";
    return NULL;
}

/* Turns each SCRAM user's password_scram (or plain password) into a verifier, once: a plain
 * password's salt is its name's (scram_name_salt), and an unchanged one keeps the verifier
 * the running configuration (old, old_v; NULL at start) made. */
static struct scram_verifier *make_verifiers(const struct worker *w, const struct config *cfg,
                                             const struct config *old,
                                             const struct scram_verifier *old_v,
                                             const struct takeover_fds *handover, char *err,
                                             size_t errsz)
{
    uint8_t salt[16];
    struct scram_verifier *out = calloc(cfg->n_users ? cfg->n_users : 1, sizeof(*out));
    if (!out) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_users; i++) {
        const struct user_config *u = &cfg->users[i];
        const struct scram_verifier *kept;
        bool ok = true;
        const char *stop; /* (thousands take seconds: a start may be called off) */
        if (i % 64 == 63 && (stop = verifiers_called_off(old, handover))) {
            snprintf(err, errsz, "%s", stop);
            free_verifiers(out, cfg->n_users);
            return NULL;
        }
        if (u->auth != AUTH_SCRAM)
            continue;
        if (u->password_scram)
            ok = scram_parse_verifier(u->password_scram, &out[i]);
        else if ((kept = kept_verifier(old, old_v, u)))
            out[i] = *kept;
        else
            ok = scram_name_salt(w->mock_salt_key, u->name, salt, sizeof(salt)) &&
                 scram_make_verifier(u->password, salt, sizeof(salt), SCRAM_DEFAULT_ITERATIONS,
                                     &out[i]);
        if (!ok) {
            snprintf(err, errsz, "users.%s: invalid SCRAM verifier", u->name);
            free_verifiers(out, cfg->n_users);
            return NULL;
        }
    }
    return out;
}

/* Reads /etc/hosts again (libevent reads it once; a NULL file name would mean "localhost
 * only"), replacing what was read before. */
static void reload_hosts(struct worker *w)
{
    evdns_base_clear_host_addresses(w->dns);
    if (evdns_base_load_hosts(w->dns, "/etc/hosts") != 0)
        log_warning("cannot read /etc/hosts: only localhost is known from it");
}

/* One thread owns the loop: no locks; epoll changes coalesced within a loop turn. */
static bool make_loop(struct worker *w)
{
    struct event_config *ec = event_config_new();
    if (!ec)
        return false;
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!w->base)
        return false;
    w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!w->dns) { /* no resolv.conf: numeric addresses and /etc/hosts still work */
        w->dns = evdns_base_new(w->base, 0);
        if (w->dns)
            reload_hosts(w);
    }
    return w->dns != NULL;
}

/* STATUS= for the service manager: clients and server connections. */
static void report_status(struct worker *w)
{
    size_t servers = 0;
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &w->pools) {
        struct pool *p = list_entry(it, struct pool, node);
        servers += (size_t)p->n_servers;
    }
    char text[160];
    snprintf(text, sizeof(text), "%s%d clients, %zu server connections",
             w->draining      ? "draining: "
             : w->handed_over ? "taken over: "
                              : "",
             w->n_clients, servers);
    notify_status(text);
}

/* Free heap memory the janitor leaves to the allocator; beyond it (and beyond what is in use)
 * it hands the free pages back to the kernel. */
#define HEAP_FREE_KEPT (8u << 20)

/* After a storm of connections their buffers' freed chunks stay in the heap, fragmented
 * (glibc only trims its top): resident memory would stay at the peak. Once more of the
 * heap is free than in use, malloc_trim releases the free pages wherever they lie. */
static void trim_heap(void)
{
#ifdef __GLIBC__
    struct mallinfo2 mi = mallinfo2();
    if (mi.fordblks > HEAP_FREE_KEPT && mi.fordblks > mi.uordblks)
        malloc_trim(0);
#endif
}

static void janitor_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pool_janitor(arg);
    msgshare_check_stalls(arg);
    report_status(arg);
    trim_heap();
}

/* The once-a-second housekeeping timer. */
static bool add_janitor(struct worker *w)
{
    struct timeval tv = {1, 0};
    w->janitor = event_new(w->base, -1, EV_PERSIST, janitor_cb, w);
    return w->janitor && event_add(w->janitor, &tv) == 0;
}

static bool add_signals(struct worker *w)
{
    /* What libevent finds in place it puts back when its events are freed at exit: ignored,
     * so that a reload, a report or another SIGTERM asked for while lakeproxy exits cannot
     * kill it, at no moment of the exit and in no thread. (Children still start with the
     * defaults: a caught signal is reset by exec. SIGINT, exit at once, keeps its default.) */
    stopsig_ignore(SIGTERM); /* (one held back by a starting takeover stays pending) */
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    w->sig_int = evsignal_new(w->base, SIGINT, signal_cb, w);
    w->sig_term = evsignal_new(w->base, SIGTERM, signal_cb, w);
    w->sig_hup = evsignal_new(w->base, SIGHUP, signal_cb, w);
    w->sig_usr1 = evsignal_new(w->base, SIGUSR1, signal_cb, w);
    return w->sig_int && w->sig_term && w->sig_hup && w->sig_usr1 &&
           evsignal_add(w->sig_int, NULL) == 0 && evsignal_add(w->sig_term, NULL) == 0 &&
           evsignal_add(w->sig_hup, NULL) == 0 && evsignal_add(w->sig_usr1, NULL) == 0;
}

/* The worker's memo of text shapes (objects.h), under a secret of its own. */
static struct sqlkey_memo *new_shapes(void)
{
    struct sqlkey_secret secret;
    hashkey_get(&secret.k0, &secret.k1);
    return sqlkey_memo_new(&secret, SHAPE_MEMO_SETS, pipeline_text_facts);
}

/* Starts, stops or restarts statistics and the query log to match cfg. */
static bool sync_stats(struct worker *w, const struct config *old, const struct config *cfg)
{
    const struct stats_config *sc = &cfg->stats;
    if (!sc->enabled) {
        stats_free(w->stats);
        w->stats = NULL;
    } else if (!w->stats && !(w->stats = stats_new((size_t)sc->max_queries,
                                                   (size_t)sc->max_queries * 4, w->shapes))) {
        return false;
    }
    const char *was = old && old->stats.enabled ? old->stats.log : NULL;
    const char *now = sc->enabled ? sc->log : NULL;
    if (w->qlog && config_str_eq(was, now) && old->stats.queue == sc->queue)
        return true;
    statslog_stop(w->qlog);
    w->qlog = now ? statslog_start(now, (size_t)sc->queue) : NULL;
    if (now && !w->qlog)
        return false;
    if (now)
        log_info("query log: %s (queue of %d records)", now, sc->queue);
    return true;
}

/* Listens on the client port and admin.http: on the sockets inherited from the process taken
 * over where there are (each one used is set to -1 in it), else bound here. */
static bool start_listening(struct worker *w, struct takeover_fds *inherited, char *err,
                            size_t errsz)
{
    int listen_fd = inherited ? inherited->listen_fd : -1;
    int unix_fd = inherited ? inherited->unix_fd : -1;
    int http_fd = inherited ? inherited->http_fd : -1;
    /* admin.http first: once the clients' port accepts, the metrics endpoint answers too
     * (whoever waits for the port, a test or a supervisor, may scrape at once) */
    if (!metrics_start(w, http_fd, err, errsz))
        return false;
    if (inherited && w->http)
        inherited->http_fd = -1;
    if (inherited) /* (listener_start takes them, whatever it returns) */
        inherited->listen_fd = inherited->unix_fd = -1;
    return listener_start(w, listen_fd, unix_fd, err, errsz);
}

/* A configuration file every user may read, holding a secret, is warned about at each load. */
static void warn_readable_secrets(const struct config *cfg)
{
    char msg[1200];
    if (config_readable_secrets(cfg, msg, sizeof(msg)))
        log_warning("%s", msg);
}

/* Warns of each entry under databases: that serves a protected database's rows unprotected
 * (config_unprotected_alias): any user may log into it instead. */
static void warn_unprotected_aliases(const struct config *cfg)
{
    size_t k = 0;
    const struct db_config *open, *guarded;
    const char *what;
    while ((open = config_unprotected_alias(cfg, &k, &guarded, &what))) {
        if (strcmp(what, "allow") == 0)
            log_warning("databases.%s reaches the same server database as databases.%s "
                        "(%s:%d/%s), which only the users of its allow: list may use, but has "
                        "no allow: list: any user may log into %s and read it; name who may use "
                        "it (databases.%s.allow), or remove it",
                        open->name, guarded->name, guarded->host, guarded->port, guarded->dbname,
                        open->name, open->name);
        else
            log_warning("databases.%s reaches the same server database as databases.%s "
                        "(%s:%d/%s) but is not under %s: any user may log into %s and read it "
                        "unprotected; list it under %s too, name who may use it "
                        "(databases.%s.allow), or remove it",
                        open->name, guarded->name, guarded->host, guarded->port, guarded->dbname,
                        what, open->name, what, open->name);
    }
}

/* limits.core_dumps: without it the process is not dumpable (no core file, and no ptrace
 * or /proc/PID/mem by its own user): tokens and passwords stay in memory only. */
static void set_core_dumps(const struct config *cfg)
{
    if (prctl(PR_SET_DUMPABLE, cfg->core_dumps ? 1 : 0) != 0)
        log_warning("limits.core_dumps: %s", strerror(errno));
}

struct worker *worker_new(struct config *cfg, struct takeover_fds *inherited, char *err,
                          size_t errsz)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errsz, "out of memory");
        config_free(cfg);
        return NULL;
    }
    w->spare_fd = -1;
    w->cfg = cfg;
    w->cfg_gen = 1;
    set_core_dumps(cfg);
    warn_unprotected_aliases(cfg);
    warn_readable_secrets(cfg);
    list_init(&w->pools);
    list_init(&w->clients);
    list_init(&w->cancellers);
    list_init(&w->creds);
    list_init(&w->authq_waiting);
    /* signals first: a SIGTERM that arrives once the port accepts must drain, not kill */
    if (!make_loop(w) || !add_signals(w) || !msgshare_start(w)) {
        snprintf(err, errsz, "cannot create the event loop and its signal handlers");
        goto fail;
    }
    credentials_sync(w); /* first tokens are fetched while the listener comes up */
    if (cfg->tls_cert && !(w->client_tls = tls_accept_ctx(cfg, err, errsz)))
        goto fail;
    if (!make_mock_verifier(w)) { /* (its salt key salts plain passwords too) */
        snprintf(err, errsz, "cannot generate random numbers");
        goto fail;
    }
    if (!(w->user_verifiers = make_verifiers(w, cfg, NULL, NULL, inherited, err, errsz)))
        goto fail;
    policy_init_marker(w);
    if (!(w->guard = guard_cache_new(GUARD_CACHE_ENTRIES)) ||
        !(w->masksql = masksql_cache_new(GUARD_CACHE_ENTRIES)) || !(w->shapes = new_shapes())) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    w->rng = (uint64_t)time(NULL) * 2654435761u | 1;
    if (!sync_stats(w, NULL, cfg)) {
        snprintf(err, errsz, "cannot start statistics or the query log writer");
        goto fail;
    }
    listener_fit_descriptor_limit(cfg);
    if (!start_listening(w, inherited, err, errsz))
        goto fail;
    if (!add_janitor(w)) {
        snprintf(err, errsz, "cannot install the housekeeping timer");
        goto fail;
    }
    pool_janitor(w); /* pre-warm pool.min now rather than in a second; STATUS= comes with the
                        janitor's first round, after READY=1 (main.c) */
    return w;
fail:
    worker_free(w);
    return NULL;
}

int worker_run(struct worker *w)
{
    signal(SIGPIPE, SIG_IGN);
    return event_base_dispatch(w->base) < 0 ? 1 : 0;
}

/* Lets deferred frees run and final messages flush, for at most 200 ms. */
static void drain_loop(struct worker *w)
{
    struct timeval tv = {0, 200000};
    event_base_loopexit(w->base, &tv);
    event_base_dispatch(w->base);
}

void worker_free(struct worker *w)
{
    if (!w)
        return;
    listener_stop(w);
    takeover_close(w);
    metrics_stop(w);
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &w->clients) {
        client_close(list_entry(it, struct client, node), "shutting down");
    }
    pool_free_all(w);
    tablesize_free_all(w);
    maskcat_free_all(w);
    tokenauth_free_all(w);
    if (w->base)
        credentials_free_all(w);
    if (w->sig_int)
        event_free(w->sig_int);
    if (w->sig_term)
        event_free(w->sig_term);
    if (w->sig_hup)
        event_free(w->sig_hup);
    if (w->sig_usr1)
        event_free(w->sig_usr1);
    /* (SIGTERM, SIGHUP and SIGUSR1 are ignored from here on: add_signals) */
    if (w->drain_timer)
        event_free(w->drain_timer);
    if (w->janitor)
        event_free(w->janitor);
    msgshare_stop(w);
    if (w->accept_pause)
        event_free(w->accept_pause);
    if (w->spare_fd >= 0)
        close(w->spare_fd);
    if (w->base)
        drain_loop(w);
    authquery_stop(w);
    if (w->dns)
        evdns_base_free(w->dns, 0);
    SSL_CTX_free(w->client_tls);
    if (w->base)
        event_base_free(w->base);
    free_verifiers(w->user_verifiers, w->cfg->n_users);
    for (size_t i = 0; i < w->n_retired; i++)
        config_free(w->retired[i]);
    free(w->retired);
    guard_cache_free(w->guard);
    masksql_cache_free(w->masksql);
    free(w->mask_buckets);
    statslog_stop(w->qlog);
    stats_free(w->stats);
    sqlkey_memo_free(w->shapes);
    config_free(w->cfg);
    free(w);
}

/* Does reaching the server (address, login, TLS) differ between two versions of a database? */
static bool reach_changed(const struct db_config *a, const struct db_config *b)
{
    return !config_str_eq(a->host, b->host) || a->port != b->port ||
           !config_str_eq(a->dbname, b->dbname) || !config_str_eq(a->user, b->user) ||
           !config_str_eq(a->password, b->password) || a->tls != b->tls ||
           !config_str_eq(a->ca_file, b->ca_file) || a->pool.mode != b->pool.mode;
}

/* Points pool p at its database in the new configuration. Servers reached the old way, or
 * carrying rls settings that the new configuration no longer injects (none would reset them), are
 * retired: idle ones now, busy ones when their client lets go. False when the database was
 * removed (the pool keeps serving its clients from the old configuration). */
static bool retarget_pool(struct pool *p, const struct config *old, const struct config *n)
{
    const struct db_config *db = config_find_db(n, p->db->name);
    char err[256];
    if (!db)
        return false;
    bool rls_changed = !config_same_rls_shape(old, n, db->name);
    bool max_wait_changed = db->pool.max_wait_ms != p->db->pool.max_wait_ms;
    if (reach_changed(p->db, db) || rls_changed) {
        SSL_CTX *tls =
            db->tls == TLS_DISABLE ? NULL : tls_connect_ctx(db->tls, db->ca_file, err, sizeof(err));
        if (db->tls != TLS_DISABLE && !tls)
            log_warning("reload: database %s: %s; keeping the previous TLS settings", db->name,
                        err);
        else {
            SSL_CTX_free(p->tls);
            p->tls = tls;
        }
        pool_retire_servers(p, "configuration changed");
        p->db = db;
    } else {
        p->db = db;
        pool_recheck_address(p);
    }
    if (max_wait_changed)
        pool_max_wait_changed(p);
    pool_spawn_for_waiters(p);
    return true;
}

/* Keeps a replaced configuration alive while a pool of a database it alone had still points
 * into it (each configuration is retired at most once, by the reload that replaced it). */
static void retire_config(struct worker *w, struct config *old, bool in_use)
{
    if (!in_use) {
        config_free(old);
        return;
    }
    struct config **grown = realloc(w->retired, (w->n_retired + 1) * sizeof(*grown));
    if (!grown) {
        log_error("reload: out of memory keeping the old configuration");
        return; /* leaking it is safer than freeing what a pool points into */
    }
    w->retired = grown;
    w->retired[w->n_retired++] = old;
}

/* Why a session-pooled client under row-level security must go: the settings its server
 * carries for the whole session (injected once, at its checkout) are not those the new
 * configuration gives it, or it can no longer be given any (why). A transaction-pooled client
 * gets the new ones at its next transaction's checkout. */
static const char *rls_session_changed(struct client *c, char *why, size_t whysz)
{
    if (!c->rls || !c->server || pool_mode_of(c->pool)->shares_servers)
        return NULL;
    char err[200];
    const struct buf *pre = client_rls_prefix(c, err, sizeof(err));
    if (!pre) {
        snprintf(why, whysz, "%s", err);
        return why;
    }
    return server_rls_is(c->server, pre) ? NULL
                                         : "its row-level-security attributes or role changed";
}

/* Why listen.tls of the new configuration would not let c in as it is connected: without TLS
 * where TLS is required, without a verified certificate where one is required, or with one
 * the new client CAs and CRLs refuse (revoked, say); NULL when it would. */
static const char *refused_tls(const struct worker *w, struct client *c)
{
    enum tls_lack lack = client_tls_lack(w->cfg, c);
    if (lack == TLS_LACKS_TLS)
        return "TLS is now required (listen.tls.client_tls: require)";
    if (c->cert_verified && w->cfg->tls_client_ca &&
        !tls_peer_verifies_in(conn_tls(c->bev), w->client_tls))
        return "its client certificate does not verify under the new listen.tls.client_ca and "
               "client_crl";
    if (lack == TLS_LACKS_CERT)
        return "a client certificate is now required (listen.tls.client_cert: require)";
    return NULL;
}

/* Why c would not come in the way it did under w's configuration (console: it logs in to the
 * admin console): its database entry is gone, its user logs in another way or not at all, its
 * token was checked at another workspace, or its TLS no longer meets listen.tls (refused_tls);
 * NULL when it would. *now and *entry: its login path and users: entry now. */
static const char *way_in_changed(const struct worker *w, struct client *c, bool console,
                                  enum login_path *now, size_t *entry)
{
    const struct db_config *db = config_find_db(w->cfg, c->database);
    if (!db && !console) /* (the bluntest way to take a database away) */
        return "it was removed from the configuration";
    *entry = 0;
    *now = config_login_path(w->cfg, db, console, c->user, entry);
    if (*now != c->login_path) /* (a changed password alone ends no session, as in PostgreSQL) */
        return *now == LOGIN_NONE             ? "this user may no longer log in"
               : *now == LOGIN_TOKEN          ? "it now takes Databricks tokens only"
               : c->login_path == LOGIN_TOKEN ? "it no longer takes Databricks tokens"
                                              : "this user now logs in another way";
    if (*now == LOGIN_TOKEN && !config_str_eq(db->cred.workspace, c->token_workspace))
        return "its token was checked at another workspace";
    return refused_tls(w, c);
}

bool worker_login_holds(const struct worker *w, struct client *c)
{
    bool console = strcmp(c->database, ADMIN_DATABASE) == 0;
    enum login_path now;
    size_t entry;
    if (way_in_changed(w, c, console, &now, &entry) || now == LOGIN_NONE || c->scram_mock)
        return false;
    if (now == LOGIN_PASSWORD && !scram_verifier_same(&w->user_verifiers[entry], &c->scram.v))
        return false; /* (its password changed: checked against the old one) */
    /* (a token login's from: is checked once the workspace names the user) */
    if (now != LOGIN_TOKEN && !config_may_connect_from(w->cfg, now, c->user, &c->peer))
        return false;
    c->auth_cfg_gen = w->cfg_gen;
    return true;
}

/* Why a reload refuses a client it admitted under the old configuration, or NULL: its
 * database entry is gone; its user would no longer log in the way it did (entry removed, made
 * auth: token or trust, auth_query dropped, the database switched to or from Databricks
 * tokens, or to another workspace); an admin console's user left admin.users; the entry now has
 * row-level security it logged in without (what it prepared or set was never checked by the guard),
 * or an allow: list that leaves it out; its TLS no longer meets listen.tls (refused_tls); a
 * session-pooled client whose database is now pooled by transaction. */
static const char *refused_by_reload(const struct worker *w, struct client *c, char *why,
                                     size_t whysz)
{
    enum login_path now;
    size_t entry;
    const char *way_why = way_in_changed(w, c, c->state == CL_ADMIN, &now, &entry);
    if (way_why)
        return way_why;
    const struct user_config *u =
        now == LOGIN_TOKEN ? config_find_token_user(w->cfg, c->user) : NULL;
    if (u && strcmp(u->name, c->user) != 0) /* (its entry found by another spelling) */
        return "its users: entry now spells the name another way";
    if (!config_may_connect_from(w->cfg, now, c->user, &c->peer)) {
        char setting[100];
        config_from_setting(w->cfg, now, c->user, setting, sizeof(setting));
        snprintf(why, whysz, "its user may no longer connect from this address (%s)", setting);
        return why;
    }
    if (c->state == CL_ADMIN)
        return config_is_admin(w->cfg, c->user) ? NULL : "its user is no longer in admin.users";
    if (!c->rls && config_rls_applies(w->cfg, c->database))
        return "row-level security now applies to it";
    const struct db_config *db = config_find_db(w->cfg, c->database);
    if (!config_db_admits(w->cfg, db, c->user, &c->token_groups))
        return "its allow: list no longer admits this user";
    client_mask_class(c); /* (its masking rules under the new configuration) */
    if (c->mask.n_applied > 0 && !params_text_readable(&c->wanted))
        return "column masking now applies to it, and its standard_conforming_strings (off) or "
               "client_encoding would make the masking guard misread its queries (use UTF8)";
    if (c->session_pooled && c->pool && pool_mode_of(c->pool)->shares_servers)
        return "it is now pooled by transaction, and what its session left on its server "
               "(settings, temporary tables, prepared statements, cursors, LISTEN) would not "
               "follow it";
    return rls_session_changed(c, why, whysz);
}

/* Closes, with 57P01, the clients the new configuration would not have let in as they are. */
static void close_newly_refused(struct worker *w)
{
    char msg[400];
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &w->clients) {
        struct client *c = list_entry(it, struct client, node);
        if (c->state == CL_LOGIN || c->state == CL_CLOSING || !c->database || !c->user)
            continue;
        char buf[200];
        const char *why = refused_by_reload(w, c, buf, sizeof(buf));
        if (!why)
            continue;
        snprintf(msg, sizeof(msg), "database \"%.64s\" was reconfigured: %s; reconnect",
                 c->database, why);
        client_terminate(c, "57P01", msg);
    }
}

void worker_reload(struct worker *w)
{
    struct config_errors errs = {0};
    char err[512];
    struct config *n = config_load(w->cfg->path, &errs);
    for (size_t i = 0; i < errs.n; i++)
        log_error("%s", errs.msgs[i]);
    config_errors_free(&errs);
    struct scram_verifier *v =
        n ? make_verifiers(w, n, w->cfg, w->user_verifiers, NULL, err, sizeof(err)) : NULL;
    SSL_CTX *tls = NULL;
    if (n && v && n->tls_cert && !(tls = tls_accept_ctx(n, err, sizeof(err))))
        log_error("reload: %s", err);
    if (!n || !v || (n->tls_cert && !tls)) {
        if (n && !v)
            log_error("reload: %s", err);
        log_error("reload refused: keeping the running configuration");
        free_verifiers(v, n ? n->n_users : 0);
        config_free(n);
        return;
    }
    if (!config_str_eq(n->admin_http_host, w->cfg->admin_http_host) ||
        n->admin_http_port != w->cfg->admin_http_port)
        log_warning("reload: admin.http changes need a restart");
    if (!config_str_eq(n->takeover_socket, w->cfg->takeover_socket))
        log_warning("reload: listen.takeover_socket changes need a restart");
    if (strcmp(n->unix_socket_path, w->unix_path) != 0 ||
        (w->unix_path[0] && n->unix_socket_mode != w->unix_mode))
        log_warning("reload: listen.unix_socket_dir and unix_socket_mode changes need a "
                    "restart");
    char want[sizeof(w->listen_at)];
    snprintf(want, sizeof(want), "%.255s:%d", n->listen_host, n->listen_port);
    if (strcmp(want, w->listen_at) != 0) /* (against the socket, not the last file read) */
        log_warning("reload: listen address changes need a restart; still on %s", w->listen_at);
    struct config *old = w->cfg;
    bool old_in_use = false;
    free_verifiers(w->user_verifiers, old->n_users);
    w->user_verifiers = v;
    w->cfg = n;
    w->cfg_gen++;
    set_core_dumps(n);
    warn_unprotected_aliases(n);
    warn_readable_secrets(n);
    listener_fit_descriptor_limit(n);
    msgbudget_resize(&w->msgbudget, n->max_message_memory);
    msgshare_lend_later(w);
    if (maskrules_policy_hash(&old->masking) != maskrules_policy_hash(&n->masking))
        w->mask_epoch++; /* masked clients' statements are checked again (client.c) */
    if (!sync_stats(w, old, n))
        log_error("reload: could not start statistics or the query log writer");
    credentials_sync(w);
    reload_hosts(w); /* host names are resolved again below, and by every new connection */
    SSL_CTX_free(w->client_tls);
    w->client_tls = tls;
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &w->pools) {
        struct pool *p = list_entry(it, struct pool, node);
        bool into_old = config_holds_db(old, p->db); /* (not a retired one's, kept already) */
        if (!retarget_pool(p, old, n) && into_old)
            old_in_use = true;
    }
    retire_config(w, old, old_in_use);
    close_newly_refused(w);
    /* the catalog's rule numbers are the old configuration's: read it again; statements
     * and results waiting for it go on with the new one */
    maskcat_free_all(w);
    client_mask_catalog_read(w, NULL);
    enum log_level level;
    if (log_level_from_name(n->log_level, &level))
        log_set_level(level);
    log_info("configuration reloaded from %s", n->path);
}

/* The shutdown's time limit passed: each client left is told so (57P01), and its statement
 * still running is cancelled rather than left to commit behind it (client_terminate). */
static void terminate_clients(struct worker *w)
{
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &w->clients) {
        struct client *c = list_entry(it, struct client, node);
        if (c->state != CL_LOGIN)
            client_terminate(c, "57P01",
                             "terminating connection: lakeproxy is shutting down and its "
                             "transaction did not end within limits.shutdown_timeout_s");
    }
}

/* The drain's time limit. After a takeover it starts the SIGTERM drain (clients between
 * transactions closed, open ones get another shutdown_timeout_s); in that drain it stops the
 * loop, closing whoever is left. */
static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    if (!w->draining) {
        log_warning("shutdown timeout reached %d s after the takeover with %d clients left: "
                    "closing those between transactions",
                    w->cfg->shutdown_timeout_s, w->n_clients);
        worker_start_drain(w);
        return;
    }
    log_warning("shutdown timeout reached with %d clients left: closing them", w->n_clients);
    w->last_flush = true;
    terminate_clients(w);
    struct timeval flush = {0, 200000}; /* (for the cancels and the FATALs to go out) */
    event_base_loopexit(w->base, &flush);
}

/* (Re)starts the limit of limits.shutdown_timeout_s on the drain. */
static void arm_drain_timer(struct worker *w)
{
    struct timeval tv = {w->cfg->shutdown_timeout_s, 0};
    if (!w->drain_timer)
        w->drain_timer = evtimer_new(w->base, drain_timeout_cb, w);
    if (w->drain_timer)
        evtimer_add(w->drain_timer, &tv);
}

void worker_start_drain(struct worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    notify_stopping();
    listener_stop(w);
    takeover_close(w);
    arm_drain_timer(w);
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &w->clients) {
        struct client *c = list_entry(it, struct client, node);
        if (!c->server || server_is_clean(c->server))
            client_fail(c, "57P01", "lakeproxy is shutting down");
    }
    worker_check_drained(w);
}

void worker_hand_over(struct worker *w, pid_t to)
{
    if (w->handed_over || w->draining)
        return;
    w->handed_over = true;
    listener_stop(w);
    metrics_stop_accepting(w);
    arm_drain_timer(w);
    log_info("handed the listening sockets over to pid %d: serving the %d connected clients "
             "until they leave (at most %d s), then exiting",
             (int)to, w->n_clients, w->cfg->shutdown_timeout_s);
    report_status(w);
    worker_check_drained(w);
}

void worker_check_drained(struct worker *w)
{
    if ((w->draining || w->handed_over) && w->n_clients == 0 && !w->last_flush)
        event_base_loopexit(w->base, NULL);
}
