/* worker.c: owns one event loop: its listener, pools, clients, signals and TLS contexts. */
#include "worker.h"

#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "listener.h"
#include "log.h"
#include "pool.h"
#include "tls.h"

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    log_info("received %s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    event_base_loopexit(w->base, NULL);
}

/* The verifier of unknown users: random, so nobody knows a password that matches it. */
static bool make_mock_verifier(struct worker *w)
{
    uint8_t secret[32], salt[16];
    char pw[65];
    bool ok = RAND_bytes(secret, sizeof(secret)) == 1 && RAND_bytes(salt, sizeof(salt)) == 1;
    for (int i = 0; i < 32; i++)
        snprintf(pw + 2 * i, 3, "%02x", secret[i]);
    ok = ok && scram_make_verifier(pw, salt, sizeof(salt), SCRAM_DEFAULT_ITERATIONS,
                                   &w->mock_verifier);
    explicit_bzero(pw, sizeof(pw));
    explicit_bzero(secret, sizeof(secret));
    return ok;
}

/* Turns each SCRAM user's password_scram (or plain password) into a verifier, once. */
static bool prepare_verifiers(struct worker *w, char *err, size_t errsz)
{
    struct config *cfg = w->cfg;
    uint8_t salt[16];
    w->user_verifiers = calloc(cfg->n_users ? cfg->n_users : 1, sizeof(*w->user_verifiers));
    if (!w->user_verifiers) {
        snprintf(err, errsz, "out of memory");
        return false;
    }
    for (size_t i = 0; i < cfg->n_users; i++) {
        const struct user_config *u = &cfg->users[i];
        bool ok = true;
        if (u->auth != AUTH_SCRAM)
            continue;
        if (u->password_scram)
            ok = scram_parse_verifier(u->password_scram, &w->user_verifiers[i]);
        else
            ok = RAND_bytes(salt, sizeof(salt)) == 1 &&
                 scram_make_verifier(u->password, salt, sizeof(salt), SCRAM_DEFAULT_ITERATIONS,
                                     &w->user_verifiers[i]);
        if (!ok) {
            snprintf(err, errsz, "users.%s: invalid SCRAM verifier", u->name);
            return false;
        }
    }
    if (!make_mock_verifier(w)) {
        snprintf(err, errsz, "cannot generate random numbers");
        return false;
    }
    return true;
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
            evdns_base_load_hosts(w->dns, NULL);
    }
    return w->dns != NULL;
}

static bool add_signals(struct worker *w)
{
    w->sig_int = evsignal_new(w->base, SIGINT, stop_cb, w);
    w->sig_term = evsignal_new(w->base, SIGTERM, stop_cb, w);
    return w->sig_int && w->sig_term && evsignal_add(w->sig_int, NULL) == 0 &&
           evsignal_add(w->sig_term, NULL) == 0;
}

struct worker *worker_new(struct config *cfg, char *err, size_t errsz)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errsz, "out of memory");
        config_free(cfg);
        return NULL;
    }
    w->cfg = cfg;
    list_init(&w->pools);
    list_init(&w->clients);
    list_init(&w->cancellers);
    if (!make_loop(w)) {
        snprintf(err, errsz, "cannot create the event loop");
        goto fail;
    }
    if (cfg->tls_cert && !(w->client_tls = tls_accept_ctx(cfg->tls_cert, cfg->tls_key, err, errsz)))
        goto fail;
    if (!prepare_verifiers(w, err, errsz) || !listener_start(w, err, errsz))
        goto fail;
    if (!add_signals(w)) {
        snprintf(err, errsz, "cannot install signal handlers");
        goto fail;
    }
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
    if (w->listener)
        evconnlistener_free(w->listener);
    struct list *it, *tmp;
    list_for_each_safe(it, tmp, &w->clients)
    {
        client_close(list_entry(it, struct client, node), "shutting down");
    }
    pool_free_all(w);
    if (w->sig_int)
        event_free(w->sig_int);
    if (w->sig_term)
        event_free(w->sig_term);
    if (w->base)
        drain_loop(w);
    if (w->dns)
        evdns_base_free(w->dns, 0);
    SSL_CTX_free(w->client_tls);
    if (w->base)
        event_base_free(w->base);
    if (w->user_verifiers)
        explicit_bzero(w->user_verifiers,
                       (w->cfg->n_users ? w->cfg->n_users : 1) * sizeof(*w->user_verifiers));
    free(w->user_verifiers);
    config_free(w->cfg);
    free(w);
}
