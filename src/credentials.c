/* credentials.c: credential providers and their refresh schedule (see credentials.h). Every
 * fetch runs on the event loop (a child process or an HTTPS exchange); a failure keeps the
 * old token while it is valid and retries with exponential backoff and jitter. */
#include "credentials.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "command.h"
#include "http.h"
#include "log.h"
#include "objects.h"
#include "pool.h"
#include "tls.h"
#include "token.h"

#define RETRY_BASE_MS 500
#define RETRY_MAX_MS 60000
#define FILE_CHECK_MS 1000
#define FORCED_REFRESH_GAP_S 5
/* A refused token falls back to the one before it only this soon after it came, and at most
 * this many times until a new token logs in (credentials_fall_back). */
#define FALL_BACK_WINDOW_S 300
#define FALL_BACK_MAX 3
#define DEMAND_FETCH_GAP_S 1
#define ANSWER_MAX (1024 * 1024) /* token answers are a few kilobytes */
#define SECRET_FILE_MAX 4096

static void start_fetch(struct credential *c);

const char *credentials_provider_name(enum cred_provider p)
{
    static const char *const names[] = {"static", "file", "command", "databricks"};
    return names[p];
}

/* "provider databricks (https://ws)" etc.: how errors name where the token comes from. */
static void provider_label(const struct cred_config *cr, char *out, size_t outsz)
{
    const char *where = cr->provider == CRED_FILE ? cr->path
                        : cr->provider == CRED_COMMAND
                            ? (cr->shell ? cr->shell : cr->command.items[0])
                            : cr->workspace;
    snprintf(out, outsz, "provider %s (%s)", credentials_provider_name(cr->provider), where);
}

static struct credential *find(const struct worker *w, const char *name)
{
    struct list *it;
    for (it = w->creds.next; it != &w->creds; it = it->next) {
        struct credential *c = list_entry(it, struct credential, node);
        if (strcmp(c->db->name, name) == 0)
            return c;
    }
    return NULL;
}

const struct credential *credentials_find(const struct worker *w, const char *db_name)
{
    return find(w, db_name);
}

bool credentials_token_valid(const struct credential *c, time_t now)
{
    return c->token && (!c->expires || now < c->expires);
}

/* Arms the timer to run the next fetch (or file check) in ms. */
static void schedule_ms(struct credential *c, long long ms)
{
    if (ms < 0)
        ms = 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(c->timer, &tv);
}

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct credential *c = arg;
    pool_credential_event(c->w, c->db->name, c->notify_ok);
}

/* Tells the pools of this database that a fetch ended, on its own loop turn (a fetch can end
 * at once, inside a pool's own call). */
static void notify(struct credential *c, bool ok)
{
    struct timeval now = {0, 0};
    c->notify_ok = ok;
    evtimer_add(c->notify_ev, &now);
}

/* Keeps token (expiring at expires) as the one before c's current token, for
 * credentials_fall_back; an older one is wiped. */
static void keep_previous(struct credential *c, char *token, time_t expires)
{
    token_free(c->prev_token);
    c->prev_token = token;
    c->prev_expires = expires;
}

/* Makes token (expiring at expires) c's current one, a new generation. */
static void make_current(struct credential *c, char *token, time_t expires)
{
    c->token = token;
    c->expires = expires;
    c->generation++;
    c->accepted = false;
    token_fingerprint(c->token, strlen(c->token), c->fingerprint);
}

/* Installs a new token: the old one is kept as the previous one, the next refresh planned. */
static void fetch_succeeded(struct credential *c, struct token_answer *a)
{
    time_t now = time(NULL);
    const struct cred_config *cr = &c->db->cred;
    c->fetching = false;
    c->failures = 0;
    c->last_error[0] = '\0';
    c->refreshes_ok++;
    bool same = c->token && strcmp(c->token, a->token) == 0;
    if (same || !c->token)
        token_free(c->token);
    else /* while a server may still refuse the new one */
        keep_previous(c, c->token, c->expires);
    c->token = a->token;
    a->token = NULL;
    c->obtained = now;
    c->expires = a->expires;
    if (!same) {
        c->generation++;
        c->accepted = false;
    }
    token_fingerprint(c->token, strlen(c->token), c->fingerprint);
    uint32_t rnd = 0;
    RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
    c->refresh_at =
        token_refresh_jitter(now,
                             token_refresh_at(now, c->expires, cr->lifetime_s, cr->refresh_percent,
                                              cr->refresh_margin_s),
                             rnd);
    log_info("credentials %s: new token %s (%zu bytes) from %s, %s%llds, next refresh in %llds",
             c->db->name, c->fingerprint, strlen(c->token), credentials_provider_name(cr->provider),
             c->expires ? "expires in " : "no expiry stated, ",
             (long long)(c->expires ? c->expires - now : 0),
             (long long)(c->refresh_at ? c->refresh_at - now : -1));
    if (cr->provider == CRED_FILE)
        schedule_ms(c, FILE_CHECK_MS);
    else if (c->refresh_at)
        schedule_ms(c, (long long)(c->refresh_at - now) * 1000);
    notify(c, true);
}

static void fetch_failed(struct credential *c, const char *why);

/* Installs an answer whose expiry makes sense (token_expiry_usable); fails the fetch else. */
static void take_answer(struct credential *c, struct token_answer *a)
{
    char why[200];
    if (token_expiry_usable(a->expires, time(NULL), why, sizeof(why))) {
        fetch_succeeded(c, a);
        return;
    }
    token_free(a->token);
    a->token = NULL;
    fetch_failed(c, why);
}

/* Keeps the old token (while valid), retries with backoff, tells the pools. */
static void fetch_failed(struct credential *c, const char *why)
{
    char label[300];
    time_t now = time(NULL);
    c->fetching = false;
    c->failures++;
    c->refreshes_failed++;
    provider_label(&c->db->cred, label, sizeof(label));
    snprintf(c->last_error, sizeof(c->last_error), "%s", why);
    uint32_t rnd = 0;
    RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
    int delay = token_backoff_ms(c->failures, RETRY_BASE_MS, RETRY_MAX_MS, rnd);
    if (c->db->cred.provider == CRED_FILE && delay < FILE_CHECK_MS)
        delay = FILE_CHECK_MS;
    log_warning("credentials %s: refresh failed (%s): %s; %s; retry in %d ms", c->db->name, label,
                why,
                credentials_token_valid(c, now) ? "the current token stays in use"
                                                : "no valid token: new server logins fail",
                delay);
    schedule_ms(c, delay);
    notify(c, false);
}

/* Parses a command's output or a file's content and installs it. */
static void take_output(struct credential *c, const char *text, size_t len)
{
    struct token_answer a;
    char err[256];
    if (token_parse_output(text, len, time(NULL), &a, err, sizeof(err))) {
        take_answer(c, &a);
    } else {
        fetch_failed(c, err);
    }
}

/* --- command provider --- */

static void command_done(void *arg, int ok, const char *out, size_t len, const char *err)
{
    struct credential *c = arg;
    c->cmd = NULL;
    if (!ok) {
        char why[300];
        snprintf(why, sizeof(why), "command %s", err);
        fetch_failed(c, why);
        return;
    }
    take_output(c, out, len);
}

/* Adds name to the variables hidden from commands, unless it is there. */
static void remember_secret_env(struct worker *w, const char *name)
{
    struct string_list *l = &w->secret_envs;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i], name) == 0)
            return;
    char **grown = realloc(l->items, (l->n + 1) * sizeof(*grown));
    if (!grown)
        return;
    l->items = grown;
    if ((l->items[l->n] = strdup(name)))
        l->n++;
}

/* Remembers the variables the running configuration names as holding secrets (every
 * database's client_secret_env, masking.hash_key_env): commands run without them, and
 * without those of earlier configurations (the environment does not change at a reload). */
static void remember_secret_envs(struct worker *w)
{
    const struct config *cfg = w->cfg;
    for (size_t i = 0; i < cfg->n_dbs; i++)
        if (cfg->dbs[i].cred.client_secret_env)
            remember_secret_env(w, cfg->dbs[i].cred.client_secret_env);
    if (cfg->masking.hash_key_env)
        remember_secret_env(w, cfg->masking.hash_key_env);
}

/* The remembered secret variables, NULL-terminated; free the array only. */
static const char **secret_env_names(const struct worker *w)
{
    const char **names = calloc(w->secret_envs.n + 1, sizeof(*names));
    for (size_t i = 0; names && i < w->secret_envs.n; i++)
        names[i] = w->secret_envs.items[i];
    return names;
}

static void fetch_command(struct credential *c)
{
    const struct cred_config *cr = &c->db->cred;
    char err[256], why[300];
    char **argv = NULL;
    const char **hide = secret_env_names(c->w);
    if (!cr->shell) {
        argv = calloc(cr->command.n + 1, sizeof(char *));
        if (argv)
            memcpy(argv, cr->command.items, cr->command.n * sizeof(char *));
    }
    bool made = (cr->shell || argv) && hide;
    c->cmd = made ? command_start(c->w->base, argv, cr->shell, hide, cr->timeout_ms,
                                  TOKEN_MAX_LEN + 4096, command_done, c, err, sizeof(err))
                  : NULL;
    free(argv);
    free(hide);
    if (!c->cmd) {
        snprintf(why, sizeof(why), "cannot start the command: %s", made ? err : "out of memory");
        fetch_failed(c, why);
    }
}

/* --- file provider --- */

/* Re-reads the token file when it changed since the last read (or never was read). */
static void check_file(struct credential *c)
{
    const struct cred_config *cr = &c->db->cred;
    struct stat st;
    char err[300];
    if (credentials_token_valid(c, time(NULL)) && stat(cr->path, &st) == 0 &&
        st.st_ino == c->file_ino && st.st_size == c->file_size && st.st_mode == c->file_mode &&
        st.st_mtim.tv_sec == c->file_mtime.tv_sec && st.st_mtim.tv_nsec == c->file_mtime.tv_nsec) {
        c->fetching = false;
        schedule_ms(c, FILE_CHECK_MS);
        return;
    }
    size_t len;
    char *text =
        config_read_file(cr->path, TOKEN_MAX_LEN + 4096, true, &len, &st, err, sizeof(err));
    if (!text) {
        if (c->failures == 0 || strcmp(err, c->last_error) != 0 || !c->token) {
            fetch_failed(c, err);
        } else { /* the same error again: no new log line, keep watching */
            c->fetching = false;
            schedule_ms(c, FILE_CHECK_MS);
        }
        return;
    }
    c->file_ino = st.st_ino;
    c->file_size = st.st_size;
    c->file_mtime = st.st_mtim;
    c->file_mode = st.st_mode; /* (a chmod that opens it up is seen too) */
    take_output(c, text, len);
    config_file_free(text, len, true);
}

/* --- databricks provider --- */

/* The client secret from its environment variable or file; heap, wipe with token_free. */
static char *client_secret(const struct cred_config *cr, char *err, size_t errsz)
{
    if (cr->client_secret_env) {
        const char *v = getenv(cr->client_secret_env);
        if (!v || !*v) {
            snprintf(err, errsz, "environment variable %s (client_secret_env) is not set",
                     cr->client_secret_env);
            return NULL;
        }
        return strdup(v);
    }
    size_t len;
    char *text =
        config_read_file(cr->client_secret_file, SECRET_FILE_MAX, true, &len, NULL, err, errsz);
    while (text && len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        text[--len] = '\0';
    return text;
}

static const char *client_id(const struct cred_config *cr)
{
    return cr->client_id ? cr->client_id : getenv(cr->client_id_env);
}

/* Builds the JSON body of the database credential request; heap, NULL on failure. */
static char *credential_request_body(const struct cred_config *cr)
{
    const char *one[1] = {cr->instance};
    if (cr->instance)
        return token_credential_request(NULL, 0, one, 1);
    return token_credential_request(cr->endpoint, cr->ttl_s,
                                    (const char *const *)cr->instances.items, cr->instances.n);
}

/* "https://ws" + path (the configuration drops a workspace's trailing slashes). */
static void workspace_url(const struct cred_config *cr, const char *path, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s%s", cr->workspace, path);
}

static void start_http(struct credential *c, const char *what, struct http_options *o,
                       http_done_fn done)
{
    char err[256], why[400];
    o->timeout_ms = c->db->cred.timeout_ms;
    o->max_body = ANSWER_MAX;
    c->http = http_start(c->w->base, c->w->dns, c->tls, o, done, c, err, sizeof(err));
    if (!c->http) {
        snprintf(why, sizeof(why), "%s: %s", what, err);
        fetch_failed(c, why);
    }
}

static void credential_done(void *arg, int status, const char *body, size_t len, const char *err)
{
    struct credential *c = arg;
    struct token_answer a;
    char e[256], why[400];
    c->http = NULL;
    if (status != 200) { /* (the bearer token we sent, should the answer echo it) */
        const char *sent[] = {c->oauth, NULL};
        token_http_failure("database credential endpoint", status, body, len, err, sent, why,
                           sizeof(why));
    }
    if (status == 401 || status == 403) { /* the OAuth token may have been revoked early */
        token_free(c->oauth);
        c->oauth = NULL;
    }
    if (status != 200) {
        fetch_failed(c, why);
    } else if (!token_parse_db_credential(body, len, &a, e, sizeof(e))) {
        snprintf(why, sizeof(why), "database credential endpoint: %s", e);
        fetch_failed(c, why);
    } else {
        take_answer(c, &a);
    }
}

/* Step 2: mint a database credential with the workspace OAuth token. */
static void mint_credential(struct credential *c)
{
    const struct cred_config *cr = &c->db->cred;
    char url[1024], *auth = NULL, *body = credential_request_body(cr);
    workspace_url(cr,
                  cr->endpoint ? "/api/2.0/postgres/credentials" : "/api/2.0/database/credentials",
                  url, sizeof(url));
    if (!body || asprintf(&auth, "Bearer %s", c->oauth) < 0) {
        free(body);
        fetch_failed(c, "out of memory");
        return;
    }
    struct http_options o = {.method = "POST",
                             .url = url,
                             .authorization = auth,
                             .content_type = "application/json",
                             .body = body,
                             .body_len = strlen(body)};
    start_http(c, "database credential endpoint", &o, credential_done);
    token_free(auth);
    free(body);
}

static void oauth_done(void *arg, int status, const char *body, size_t len, const char *err)
{
    struct credential *c = arg;
    struct token_answer a;
    char e[256], why[400];
    c->http = NULL;
    if (status != 200) { /* (the client secret we sent, should the answer echo it) */
        char *secret = client_secret(&c->db->cred, e, sizeof(e));
        const char *sent[] = {secret, NULL};
        token_http_failure("workspace OAuth endpoint /oidc/v1/token", status, body, len, err, sent,
                           why, sizeof(why));
        token_free(secret);
        fetch_failed(c, why);
        return;
    }
    if (!token_parse_oauth(body, len, time(NULL), &a, e, sizeof(e))) {
        snprintf(why, sizeof(why), "workspace OAuth endpoint /oidc/v1/token: %s", e);
        fetch_failed(c, why);
        return;
    }
    token_free(c->oauth);
    c->oauth = a.token;
    c->oauth_expires = a.expires;
    mint_credential(c);
}

/* Step 1: OAuth machine-to-machine (client credentials) at the workspace. */
static void fetch_oauth(struct credential *c)
{
    const struct cred_config *cr = &c->db->cred;
    char err[256], why[400], url[1024];
    const char *id = client_id(cr);
    if (!id || !*id) {
        snprintf(why, sizeof(why), "environment variable %s (client_id_env) is not set",
                 cr->client_id_env);
        fetch_failed(c, why);
        return;
    }
    char *secret = client_secret(cr, err, sizeof(err));
    char *basic = secret ? token_basic_auth(id, secret) : NULL;
    char *auth = NULL;
    token_free(secret);
    if (!basic || asprintf(&auth, "Basic %s", basic) < 0) {
        token_free(basic);
        fetch_failed(c, basic ? "out of memory" : err);
        return;
    }
    token_free(basic);
    static const char form[] = "grant_type=client_credentials&scope=all-apis";
    workspace_url(cr, "/oidc/v1/token", url, sizeof(url));
    struct http_options o = {.method = "POST",
                             .url = url,
                             .authorization = auth,
                             .content_type = "application/x-www-form-urlencoded",
                             .body = form,
                             .body_len = sizeof(form) - 1};
    start_http(c, "workspace OAuth endpoint /oidc/v1/token", &o, oauth_done);
    token_free(auth);
}

/* The workspace OAuth token is reused while more than a minute of it is left. */
static void fetch_databricks(struct credential *c)
{
    time_t now = time(NULL);
    if (c->oauth && c->oauth_expires - now > 60)
        mint_credential(c);
    else
        fetch_oauth(c);
}

/* --- schedule --- */

static void start_fetch(struct credential *c)
{
    if (c->fetching)
        return;
    c->fetching = true;
    c->last_attempt = time(NULL);
    evtimer_del(c->timer);
    switch (c->db->cred.provider) {
    case CRED_FILE: check_file(c); break;
    case CRED_COMMAND: fetch_command(c); break;
    case CRED_DATABRICKS: fetch_databricks(c); break;
    case CRED_STATIC: c->fetching = false; break;
    }
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_fetch(arg);
}

static void credential_free(struct credential *c)
{
    list_del(&c->node);
    http_cancel(c->http);
    command_cancel(c->cmd);
    if (c->timer)
        event_free(c->timer);
    if (c->notify_ev)
        event_free(c->notify_ev);
    token_free(c->token);
    token_free(c->prev_token);
    token_free(c->oauth);
    SSL_CTX_free(c->tls);
    free(c);
}

/* A new credential for db, its first fetch started. NULL (logged) on failure. */
static struct credential *credential_new(struct worker *w, const struct db_config *db)
{
    char err[256];
    struct credential *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error("credentials %s: out of memory", db->name);
        return NULL;
    }
    c->w = w;
    c->db = db;
    list_append(&w->creds, &c->node);
    c->timer = evtimer_new(w->base, timer_cb, c);
    c->notify_ev = evtimer_new(w->base, notify_cb, c);
    if (db->cred.provider == CRED_DATABRICKS) {
        c->tls = tls_connect_ctx(TLS_VERIFY_FULL, db->cred.ca_file, err, sizeof(err));
        if (!c->tls)
            snprintf(c->last_error, sizeof(c->last_error), "%s", err);
    }
    if (!c->timer || !c->notify_ev || (db->cred.provider == CRED_DATABRICKS && !c->tls)) {
        log_error("credentials %s: %s", db->name,
                  c->tls || !c->timer || !c->notify_ev ? "out of memory" : err);
        credential_free(c);
        return NULL;
    }
    start_fetch(c);
    return c;
}

/* A credential whose provider a reload changed: a new one for db, which keeps old's token
 * while it is valid (as its current token until the new provider answers, else as the
 * previous one), when the token is for the same user on the same server: a provider that
 * fails from the start would otherwise leave no token at all. */
static void replace_credential(struct worker *w, struct credential *old, const struct db_config *db)
{
    bool keep = credentials_token_valid(old, time(NULL)) &&
                config_str_eq(old->db->user, db->user) && config_str_eq(old->db->host, db->host) &&
                old->db->port == db->port;
    char *token = keep ? old->token : NULL;
    time_t obtained = old->obtained, expires = old->expires;
    unsigned generation = old->generation;
    if (keep)
        old->token = NULL;
    credential_free(old);
    struct credential *c = credential_new(w, db);
    if (c) /* numbers the servers and pools hold stay the old credential's */
        c->generation += generation + 1;
    if (!c || !token) {
        token_free(token);
        return;
    }
    if (c->token) { /* the new provider answered at once */
        keep_previous(c, token, expires);
        return;
    }
    make_current(c, token, expires);
    c->obtained = obtained;
    log_info("credentials %s: the provider changed; token %s serves until the new one answers",
             db->name, c->fingerprint);
}

void credentials_sync(struct worker *w)
{
    struct list *it, *tmp;
    remember_secret_envs(w);
    list_for_each_safe (it, tmp, &w->creds) /* drop, retarget or replace the ones we have */
    {
        struct credential *c = list_entry(it, struct credential, node);
        const struct db_config *db = config_find_db(w->cfg, c->db->name);
        if (db && db->cred.provider != CRED_STATIC && config_same_credentials(c->db, db))
            c->db = db;
        else if (db && db->cred.provider != CRED_STATIC)
            replace_credential(w, c, db);
        else
            credential_free(c);
    }
    for (size_t i = 0; i < w->cfg->n_dbs; i++) {
        const struct db_config *db = &w->cfg->dbs[i];
        if (db->cred.provider != CRED_STATIC && !find(w, db->name))
            credential_new(w, db);
    }
}

void credentials_free_all(struct worker *w)
{
    while (!list_empty(&w->creds))
        credential_free(list_entry(w->creds.next, struct credential, node));
    for (size_t i = 0; i < w->secret_envs.n; i++)
        free(w->secret_envs.items[i]);
    free(w->secret_envs.items);
    w->secret_envs = (struct string_list){0};
}

/* The credential for db when it is the one in use (a retired configuration has none). */
static struct credential *live(struct worker *w, const struct db_config *db)
{
    if (db->cred.provider == CRED_STATIC)
        return NULL;
    return find(w, db->name);
}

bool credentials_steady(struct worker *w, const struct db_config *db)
{
    if (db->cred.provider == CRED_STATIC)
        return true;
    struct credential *c = live(w, db);
    return c && c->failures == 0 && credentials_token_valid(c, time(NULL));
}

enum cred_status credentials_status(struct worker *w, const struct db_config *db, char *why,
                                    size_t whysz)
{
    char label[300];
    if (db->cred.provider == CRED_STATIC)
        return CRED_READY;
    struct credential *c = live(w, db);
    time_t now = time(NULL);
    if (c && credentials_token_valid(c, now))
        return CRED_READY;
    if (c && !c->fetching && now - c->last_attempt >= DEMAND_FETCH_GAP_S) {
        start_fetch(c); /* a login is waiting: try now rather than at the next backoff step */
        if (credentials_token_valid(c, now))
            return CRED_READY; /* (a file is read at once) */
    }
    if (c && c->fetching)
        return CRED_PENDING;
    provider_label(&db->cred, label, sizeof(label));
    snprintf(why, whysz, "no valid credential for database \"%s\" from %s: %s%s", db->name, label,
             c ? (c->token ? "the last token expired and refreshing failed: " : "") : "",
             c ? c->last_error : "not configured");
    return CRED_UNAVAILABLE;
}

const char *credentials_current(struct worker *w, const struct db_config *db, unsigned *generation)
{
    *generation = 0;
    if (db->cred.provider == CRED_STATIC)
        return db->password;
    struct credential *c = live(w, db);
    if (c)
        *generation = c->generation;
    if (!c || !credentials_token_valid(c, time(NULL)))
        return NULL;
    return c->token;
}

enum cred_reject credentials_rejected(struct worker *w, const struct db_config *db,
                                      unsigned generation)
{
    struct credential *c = live(w, db);
    time_t now = time(NULL);
    if (!c)
        return CRED_REJECT_FINAL;
    if (generation != c->generation)
        return CRED_REJECT_RETRY; /* a newer token came meanwhile */
    if (c->fetching)
        return CRED_REJECT_WAIT;
    /* a refresh forced a moment ago brought this token, and the server refuses it too: no
     * use asking again so soon. A token that has logged in, refused now (revoked), is another
     * matter: refreshed at once, which takes a login in between each time */
    if (now - c->forced_at < FORCED_REFRESH_GAP_S && !c->accepted)
        return CRED_REJECT_FINAL;
    c->forced_at = now;
    log_warning("credentials %s: the server refused token %s (28P01)%s: refreshing now", db->name,
                c->fingerprint, c->accepted ? ", which it took before" : "");
    c->accepted = false;
    if (c->db->cred.provider == CRED_FILE) { /* re-read even if the file looks unchanged */
        c->file_size = -1;
    }
    start_fetch(c);
    return c->fetching ? CRED_REJECT_WAIT : CRED_REJECT_RETRY;
}

bool credentials_fall_back(struct worker *w, const struct db_config *db, unsigned generation)
{
    struct credential *c = live(w, db);
    time_t now = time(NULL);
    if (!c || generation != c->generation || !c->prev_token ||
        (c->prev_expires && now >= c->prev_expires) || now - c->obtained > FALL_BACK_WINDOW_S ||
        c->fallbacks >= FALL_BACK_MAX)
        return false;
    c->fallbacks++;
    char refused[9];
    snprintf(refused, sizeof(refused), "%s", c->fingerprint);
    token_free(c->token); /* refused: of no use */
    make_current(c, c->prev_token, c->prev_expires);
    c->prev_token = NULL;
    log_warning("credentials %s: the server refused the new token %s (28P01): back to token %s "
                "(%s), a new one asked for in %d s",
                db->name, refused, c->fingerprint,
                c->expires ? "valid a while yet" : "no expiry stated", FORCED_REFRESH_GAP_S);
    if (db->cred.provider == CRED_FILE)
        c->file_size = -1; /* read again, unchanged or not */
    if (!c->fetching)
        schedule_ms(c, FORCED_REFRESH_GAP_S * 1000LL);
    return true;
}

void credentials_login_ok(struct worker *w, const struct db_config *db, unsigned generation)
{
    struct credential *c = live(w, db);
    if (!c || generation != c->generation)
        return;
    c->accepted = true;
    if (!c->prev_token)
        return;
    token_free(c->prev_token); /* the current token works: no falling back to it */
    c->prev_token = NULL;
    c->fallbacks = 0;
}

unsigned credentials_generation(struct worker *w, const struct db_config *db)
{
    struct credential *c = live(w, db);
    return c ? c->generation : 0;
}
