/* client.c: one client connection's state machine: startup packet, TLS, authentication,
 * waiting for a server, relaying its messages, and closing. */
#include "client.h"

#include <event2/buffer.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin.h"
#include "authquery.h"
#include "conn.h"
#include "log.h"
#include "maskcat.h"
#include "msgshare.h"
#include "params.h"
#include "paramval.h"
#include "pipeline.h"
#include "policy.h"
#include "pool.h"
#include "poolmode.h"
#include "proto.h"
#include "qtrack.h"
#include "relay.h"
#include "rls.h"
#include "server.h"
#include "stmtsql.h"
#include "tls.h"
#include "tokenauth.h"
#include "worker.h"

/* Authentication messages are small, but Databricks tokens as passwords reach kilobytes. */
#define CLIENT_LOGIN_MAX (64 * 1024)
#define TOO_MANY_CLIENTS "too many clients already (limits.max_clients)"
/* The seconds a connection taken past limits.max_clients may take to send its CancelRequest
 * (client_accept). */
enum { CANCEL_SPARE_TIMEOUT_S = 5 };

static void client_read_cb(struct bufferevent *bev, void *arg);
static bool client_take(void *arg, const uint8_t *p, size_t n);
static void client_wake(struct client *c);
static bool send_login_done(struct client *c, const struct param_set *server_params);
static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);

static void groups_clear(struct string_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    *l = (struct string_list){0};
}

static void client_free(void *arg)
{
    struct client *c = arg;
    free(c->user);
    groups_clear(&c->token_groups);
    free(c->database);
    if (c->md5_stored)
        explicit_bzero(c->md5_stored, strlen(c->md5_stored));
    free(c->md5_stored);
    free(c->token_workspace);
    param_clear(&c->wanted);
    param_clear(&c->at_startup);
    param_clear(&c->rls_options);
    param_clear(&c->cert);
    buf_free(&c->rls_prefix);
    maskrules_free(&c->mask);
    qtrack_free(c);
    client_stmts_clear(&c->stmts);
    pipeline_client_unhomed(c);
    free(c->unnamed_parse);
    recent_clear(&c->plain_parses);
    scram_server_free(&c->scram);
    free(c);
}

void client_close(struct client *c, const char *reason)
{
    if (c->closing)
        return;
    c->closing = true;
    qtrack_settle(c); /* its last query, while its fields and pool are whole */
    if (c->sent_ready || log_enabled(LOG_DEBUG))
        log_info("client %llu %s (%s@%s): closing: %s", (unsigned long long)c->id, c->addr,
                 c->user ? c->user : "-", c->database ? c->database : "-", reason);
    list_del(&c->node);
    c->w->n_clients--;
    if (c->over_limit)
        c->w->n_over_limit--;
    if (c->state == CL_WAITING)
        pool_forget_client(c);
    msgshare_give_back(c);
    if (c->authq)
        authquery_cancel(c->authq);
    c->authq = NULL;
    tokenauth_cancel(c->token_check);
    c->token_check = NULL;
    client_send_wanted_cancel(c); /* (its query went out as it left: still cancelled) */
    if (c->server)
        server_unlink(c->server);
    if (c->timer)
        event_free(c->timer);
    if (c->login_timer)
        event_free(c->login_timer);
    if (c->cancel_timer)
        event_free(c->cancel_timer);
    c->timer = c->login_timer = c->cancel_timer = NULL;
    c->state = CL_CLOSING;
    conn_close_after_flush(c->bev);
    c->bev = NULL;
    conn_defer(c->w->base, client_free, c);
    worker_check_drained(c->w);
}

/* Logs an error for c and starts b with its ErrorResponse of the given severity. */
static void start_error(struct client *c, struct buf *b, const char *severity, const char *sqlstate,
                        const char *msg)
{
    log_info("client %llu %s: %s: %s", (unsigned long long)c->id, c->addr, sqlstate, msg);
    buf_init(b);
    proto_error(b, severity, sqlstate, msg);
}

void client_fail_as(struct client *c, const char *sqlstate, const char *msg, const char *logged)
{
    struct buf b;
    if (c->closing)
        return;
    log_info("client %llu %s: %s: %s", (unsigned long long)c->id, c->addr, sqlstate, logged);
    buf_init(&b);
    proto_error(&b, "FATAL", sqlstate, msg);
    conn_send_last(c->bev, &b);
    buf_free(&b);
    client_close(c, logged);
}

void client_fail(struct client *c, const char *sqlstate, const char *msg)
{
    client_fail_as(c, sqlstate, msg, msg);
}

void client_terminate(struct client *c, const char *sqlstate, const char *msg)
{
    char with[700];
    if (c->closing)
        return;
    if (!c->server || !server_running_statement(c->server)) {
        client_fail(c, sqlstate, msg);
        return;
    }
    snprintf(with, sizeof(with),
             "%s (lakeproxy asked the server to cancel the statement running: whether it took "
             "effect is unknown)",
             msg);
    server_end_statement(c->server, sqlstate, with, msg);
}

void client_relay_out_of_memory(struct client *c)
{
    client_fail(c, "53200", "out of memory in lakeproxy: connection closed");
}

static bool send_to_client(struct client *c, struct buf *b)
{
    bool ok = conn_send(c->bev, b);
    buf_free(b);
    if (!ok)
        client_close(c, "could not queue a message");
    return ok;
}

void client_transaction_lost(struct client *c, const char *sqlstate, const char *msg)
{
    struct buf b;
    if (c->closing)
        return;
    start_error(c, &b, "ERROR", sqlstate, msg);
    proto_ready(&b, 'I');
    if (!send_to_client(c, &b))
        return;
    msgshare_give_back(c); /* no server: no share */
    client_server_gone_idle(c);
}

static void login_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct client *c = arg;
    if (c->state != CL_LOGIN)
        return;
    if (c->step == CS_TLS) /* (no error can reach a client before its TLS is up) */
        client_close(c, "login timed out during the TLS handshake");
    else
        client_fail(c, "08006", "login timed out: startup and authentication took too long");
}

void client_rls_identity(const struct client *c, struct rls_identity *id)
{
    *id = (struct rls_identity){
        .user = c->user,
        .database = c->database,
        .client_addr = c->addr,
        .application_name = param_get(&c->wanted, "application_name"),
        .options = &c->rls_options,
        .cert = &c->cert,
        .groups = c->token_groups.n ? &c->token_groups : NULL,
    };
}

const struct buf *client_rls_prefix(struct client *c, char *err, size_t errsz)
{
    struct rls_setting set[RLS_MAX_SETTINGS];
    struct rls_identity id;
    size_t n;
    if (c->rls_prefix_gen == c->w->cfg_gen)
        return &c->rls_prefix;
    client_rls_identity(c, &id);
    if (!rls_resolve(c->w->cfg, &id, set, &n, err, errsz))
        return NULL;
    buf_reset(&c->rls_prefix);
    rls_build_prefix(set, n, &c->rls_prefix);
    if (c->rls_prefix.failed) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    c->rls_prefix_gen = c->w->cfg_gen;
    return &c->rls_prefix;
}

/* Puts c under row-level security when its database has it; a client that cannot be given
 * its attributes (no role with switch_role) is refused here, before any server sees it. */
static bool rls_admit(struct client *c)
{
    char err[200];
    c->rls = config_rls_applies(c->w->cfg, c->database);
    if (c->rls && !client_rls_prefix(c, err, sizeof(err))) {
        client_fail(c, "28000", err);
        return false;
    }
    if (c->rls && !params_text_readable(&c->wanted)) {
        client_fail(c, "0A000",
                    "under row-level security lakeproxy needs standard_conforming_strings on "
                    "and a client encoding other than SJIS, BIG5, GBK, UHC, GB18030 or JOHAB "
                    "(its guard must read query text as the server does): use UTF8");
        return false;
    }
    return true;
}

/* A client's masking class under its current rules and the running masking policy. */
static uint64_t mask_class_of(const struct client *c)
{
    if (c->mask.n_applied == 0)
        return 1;
    return ((c->mask.id ^ (c->w->mask_epoch * 0x9e3779b97f4a7c15ull)) | 2);
}

void client_mask_sync(struct client *c)
{
    if (c->mask_gen == c->w->cfg_gen)
        return;
    uint64_t before = c->mask_class;
    maskrules_free(&c->mask);
    c->mask_gen = c->w->cfg_gen;
    if (config_mask_applies(c->w->cfg, c->database) &&
        !maskrules_build(c->w->cfg, c->user, &c->token_groups, &c->mask))
        log_warning("client %llu: out of memory building its masking rules",
                    (unsigned long long)c->id);
    c->mask_class = mask_class_of(c);
    /* statements kept for this client, named and unnamed, were checked under other masking:
     * forget them (a Bind of one now fails as unknown; the client prepares it again, through
     * the guard) */
    if (before && before != c->mask_class)
        pipeline_forget_statements(c);
}

uint64_t client_mask_class(struct client *c)
{
    client_mask_sync(c);
    return c->mask_class;
}

/* A client whose results are masked: its first statement needs the masking catalog, so the
 * read starts now, while it logs in. False when it cannot be masked (out of memory). */
static bool mask_admit(struct client *c)
{
    client_mask_sync(c);
    if (config_mask_applies(c->w->cfg, c->database) && !c->mask.applies) {
        client_fail(c, "53200", "out of memory");
        return false;
    }
    if (c->mask.n_applied == 0)
        return true;
    if (!params_text_readable(&c->wanted)) {
        client_fail(c, "0A000",
                    "with column masking lakeproxy needs standard_conforming_strings on and a "
                    "client encoding other than SJIS, BIG5, GBK, UHC, GB18030 or JOHAB (its "
                    "guard must read query text as the server does): use UTF8");
        return false;
    }
    struct maskcat *mc = maskcat_for(c->w, c->database);
    if (!mc) {
        client_fail(c, "53200", "out of memory");
        return false;
    }
    if (!maskcat_ready(mc) && !maskcat_loading(mc))
        maskcat_refresh(c->w, mc);
    return true;
}

/* Must c's statement wait for the masking catalog (read now)? Not when it is read, or when
 * reading it failed: then the statement is refused with the reason (policy.c). Nor once it
 * has waited for one whole read: a read that takes longer than catalog_refresh_s leaves a
 * catalog already stale, and waiting for the next would never end (red team 38). */
static bool mask_statement_waits(struct client *c)
{
    client_mask_sync(c);
    if (c->mask.n_applied == 0)
        return false;
    struct maskcat *mc = maskcat_for(c->w, c->database);
    if (!mc)
        return false;
    if (c->mask_wait_until && maskcat_reads_ended(mc) >= c->mask_wait_until)
        return false; /* judged by what that read left: installed, or why it failed */
    maskcat_refresh_if_old(c->w, mc);
    /* a stale catalog waits for the read just started (it keeps serving if that read fails) */
    if (maskcat_fresh(mc) || (!maskcat_loading(mc) && (maskcat_ready(mc) || maskcat_error(mc)[0])))
        return false;
    if (!maskcat_loading(mc))
        maskcat_refresh(c->w, mc);
    if (!c->mask_wait_until) /* (the read in flight now: the next to end) */
        c->mask_wait_until = maskcat_reads_ended(mc) + 1;
    c->mask_wait = true;
    return true;
}

static bool mask_must_wait(struct client *c)
{
    bool wait = mask_statement_waits(c);
    if (!wait) /* (the next statement waits afresh) */
        c->mask_wait_until = 0;
    return wait;
}

static void client_wake(struct client *c);

/* Resumes one client or its server after a masking catalog read. */
static void mask_resume(struct client *c)
{
    struct server *s = c->server;
    if (c->mask_wait && !c->closing) {
        c->mask_wait = false;
        if (!c->paused)
            bufferevent_enable(c->bev, EV_READ);
        if (c->server)
            client_pump(c);
        else if (c->state == CL_IDLE)
            client_wake(c);
    }
    s = c->closing ? NULL : c->server;
    if (s && s->mask_wait) {
        s->mask_wait = false;
        if (!s->paused)
            bufferevent_enable(s->bev, EV_READ);
        server_pump(s);
    }
}

void client_mask_catalog_read(struct worker *w, const char *db)
{
    size_t n = 0, i = 0;
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &w->clients)
        n++;
    struct client **waiting = calloc(n ? n : 1, sizeof(*waiting));
    if (!waiting)
        return;
    list_for_each_safe (it, tmp, &w->clients) {
        struct client *c = list_entry(it, struct client, node);
        if (c->database && (!db || strcmp(c->database, db) == 0) &&
            (c->mask_wait || (c->server && c->server->mask_wait)))
            waiting[i++] = c;
    }
    /* pumping one may close another; frees are deferred, so the pointers stay valid */
    for (size_t k = 0; k < i; k++)
        mask_resume(waiting[k]);
    free(waiting);
}

/* Did a reload come between the start of c's authentication and now, and change how c's user
 * logs in (worker_login_holds)? Then c is failed (08006): its proof was checked against what
 * no longer holds. */
static bool reloaded_during_login(struct client *c)
{
    if (c->auth_cfg_gen == c->w->cfg_gen || worker_login_holds(c->w, c))
        return false;
    client_fail(c, "08006",
                "lakeproxy's configuration was reloaded during the login: connect again");
    return true;
}

/* Is c's pool disabled (DISABLE)? Then c is told so and closed; the clients already in go on. */
static bool refused_as_disabled(struct client *c, const struct pool *p)
{
    char err[200];
    if (!p->disabled)
        return false;
    snprintf(err, sizeof(err),
             "database \"%.64s\" is disabled by the administrator (DISABLE): no new connections "
             "until ENABLE",
             c->database);
    client_fail(c, "57P03", err);
    return true;
}

/* Authentication succeeded: say so, then wait for a server. */
static void auth_done(struct client *c, struct buf *b)
{
    char err[320];
    if (reloaded_during_login(c)) { /* checked against what may no longer hold: a verifier, a
                                       password the user no longer has (auth: token) */
        buf_free(b);
        return;
    }
    bool admin = strcmp(c->database, ADMIN_DATABASE) == 0;
    if (!admin && !config_find_db(c->w->cfg, c->database)) {
        /* told only once authenticated, as PostgreSQL does: a probe without a password cannot
         * list the database names */
        buf_free(b);
        snprintf(err, sizeof(err), "database \"%.64s\" does not exist", c->database);
        client_fail(c, "3D000", err);
        return;
    }
    proto_auth(b, AUTH_REQ_OK, NULL, 0);
    if (!send_to_client(c, b))
        return;
    c->step = CS_DONE;
    if (admin) {
        if (config_is_admin(c->w->cfg, c->user))
            admin_login(c);
        else
            client_fail(c, "28000", "not allowed to use the admin console (see admin.users)");
        return;
    }
    const struct db_config *db = config_find_db(c->w->cfg, c->database);
    if (!config_db_admits(c->w->cfg, db, c->user, &c->token_groups)) {
        snprintf(err, sizeof(err),
                 "user \"%.64s\" may not log into database \"%.64s\": it is not in "
                 "databases.%.64s.allow",
                 c->user, c->database, c->database);
        client_fail(c, "28000", err);
        return;
    }
    if (!rls_admit(c) || !mask_admit(c))
        return;
    struct pool *p = pool_get(c->w, db, err, sizeof(err));
    if (!p) {
        client_fail(c, "08006", err);
        return;
    }
    if (refused_as_disabled(c, p))
        return;
    c->pool = p;
    /* Transaction pooling: once the pool knows its server's parameters, a login needs no
     * server; the client gets one with its first query. */
    if (pool_mode_of(p)->shares_servers && p->params.n > 0) {
        if (!send_login_done(c, &p->params))
            return;
        c->state = CL_IDLE;
        if (evbuffer_get_length(conn_input(c->bev)) > 0)
            client_wake(c);
        return;
    }
    pool_request(p, c);
}

/* The end of a login: ParameterStatus (server values, overridden by what the client asked
 * for), the client's own BackendKeyData, ReadyForQuery. */
static bool send_login_done(struct client *c, const struct param_set *server_params)
{
    struct buf b;
    buf_init(&b);
    for (size_t i = 0; i < server_params->n; i++) {
        const char *name = server_params->items[i].name;
        params_put_status(&b, name, param_get(&c->wanted, name), server_params->items[i].value);
    }
    proto_backend_key(&b, c->cancel_pid, c->cancel_key);
    proto_ready(&b, 'I');
    if (!send_to_client(c, &b))
        return false;
    c->sent_ready = true;
    if (c->login_timer)
        event_del(c->login_timer);
    log_info("client %llu %s: login %s@%s%s", (unsigned long long)c->id, c->addr, c->user,
             c->database, c->tls ? " TLS" : "");
    return true;
}

void client_send_wanted_cancel(struct client *c)
{
    if (c->cancel_wanted && c->server) { /* (requester 0: nobody to tell) */
        c->cancel_wanted = c->cancel_query_sent = false;
        if (c->server->state == SV_ACTIVE && c->server->in_flight > 0)
            server_send_cancel(c->server, 0);
    }
}

/* A cancel kept for a query goes this long after the query: PostgreSQL drops a cancel whose
 * signal reaches the backend before it has read the query (between statements), and on a busy
 * machine the backend may take milliseconds to wake and read it. */
#define KEPT_CANCEL_DELAY_MS 50

/* The kept cancel's wait is over: it goes if its query still runs; a query that ended (its
 * server given back) needs none. A statement sent after it took it along (client_inspect). */
static void kept_cancel_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct client *c = arg;
    if (c->server)
        client_send_wanted_cancel(c);
    else
        c->cancel_wanted = c->cancel_query_sent = false;
}

void client_send_wanted_cancel_soon(struct client *c)
{
    if (!c->cancel_wanted || !c->server)
        return;
    struct timeval tv = {0, KEPT_CANCEL_DELAY_MS * 1000};
    if (!c->cancel_timer)
        c->cancel_timer = evtimer_new(c->w->base, kept_cancel_cb, c);
    if (!c->cancel_timer || evtimer_add(c->cancel_timer, &tv) != 0)
        client_send_wanted_cancel(c);
}

void client_server_ready(struct client *c)
{
    qtrack_linked(c);
    if (!c->sent_ready) { /* its login */
        c->startup_unreported = params_unreported_mask(&c->at_startup, &c->server->reported);
        if (!send_login_done(c, &c->server->reported))
            return;
    }
    client_pump(c);
    client_send_wanted_cancel_soon(c);
    client_transaction_done(c);
}

/* Transaction pooling, between transactions: the client speaks again, so it needs a server
 * (or it says goodbye). */
/* A lone DEALLOCATE between transactions concerns only the proxy's record of the client's
 * statements: answer it without a server. False when the next message is something else. */
enum { DEALLOCATE_TEXT_MAX = 512 }; /* longer texts go to the server */

/* Is the Query message whose body[0..len) lies whole in memory a lone DEALLOCATE (of name, or
 * of all)? */
static bool query_deallocates(const uint8_t *body, uint32_t len, char name[64], bool *all)
{
    return len > 0 && len <= DEALLOCATE_TEXT_MAX && body[len - 1] == 0 &&
           stmtsql_deallocate((const char *)body, name, all);
}

static bool answer_deallocate(struct client *c)
{
    struct evbuffer *in = conn_input(c->bev);
    const uint8_t *hdr = evbuffer_pullup(in, 5); /* no copy: the first chunk holds it */
    uint8_t type;
    uint32_t len;
    const char *err;
    char name[64];
    bool all;
    if (!hdr || hdr[0] != 'Q' ||
        proto_check_header(hdr, DEALLOCATE_TEXT_MAX + 5, &type, &len, &err) != PROTO_OK ||
        evbuffer_get_length(in) < 5 + (size_t)len)
        return false;
    const uint8_t *msg = evbuffer_pullup(in, 5 + (ssize_t)len);
    if (!msg || !query_deallocates(msg + 5, len, name, &all)) /* (out of memory: as any query) */
        return false;
    if (!all && !client_stmt_known(&c->stmts, name))
        return false; /* not the client's: a server fails it (26000), as PostgreSQL would */
    evbuffer_drain(in, 5 + (size_t)len);
    pipeline_deallocate(c, name, all);
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, 'C');
    buf_put_str(&b, all ? "DEALLOCATE ALL" : "DEALLOCATE");
    buf_msg_finish(&b);
    proto_ready(&b, 'I');
    return send_to_client(c, &b);
}

/* The type and size (header included) of the message whose header starts at byte at of c's
 * input, into *type and *whole (0 when its header is bad); false when its header has not all
 * arrived. */
static bool message_size_at(struct client *c, size_t at, uint8_t *type, size_t *whole)
{
    struct evbuffer *in = conn_input(c->bev);
    struct evbuffer_ptr pos;
    uint8_t hdr[5];
    uint32_t len;
    const char *err;
    if (evbuffer_ptr_set(in, &pos, at, EVBUFFER_PTR_SET) != 0 ||
        evbuffer_copyout_from(in, &pos, hdr, 5) != 5)
        return false;
    bool ok = proto_check_header(hdr, c->w->cfg->max_message_size, type, &len, &err) == PROTO_OK;
    *whole = ok ? 5 + (size_t)len : 0;
    return true;
}

/* The size of c's first buffered message, header included, into *whole (0 when its header is
 * bad); false when its header has not all arrived. */
static bool first_message_size(struct client *c, size_t *whole)
{
    uint8_t type;
    return message_size_at(c, 0, &type, whole);
}

/* Has the first buffered message of c arrived whole (or is its header already bad, which
 * the relay reports)? A server is taken only then: one taken for a partial message would be
 * idle again at once, given back, and taken again for the same bytes. But a message larger
 * than CLIENT_READ_AHEAD is read whole only by a client with a server: for one, the server is
 * taken on its header, and kept until the message has gone (client_transaction_done). */
static bool whole_message_buffered(struct client *c)
{
    size_t whole;
    if (!first_message_size(c, &whole))
        return false;
    return whole == 0 || whole > CLIENT_READ_AHEAD || /* (bad, or large: see above) */
           evbuffer_get_length(conn_input(c->bev)) >= whole;
}

int client_idle_limit_s(const struct client *c)
{
    bool served = c->state == CL_IDLE || c->state == CL_ACTIVE;
    return served && c->pool ? c->pool->db->pool.client_idle_timeout_s : 0;
}

bool client_idle_between_statements(const struct client *c)
{
    if (c->closing || !c->bev || c->relay.pass_left > 0 || c->cancel_wait ||
        evbuffer_get_length(conn_input(c->bev)) > 0)
        return false;
    if (c->state == CL_IDLE)
        return true;
    const struct server *s = c->server;
    return c->state == CL_ACTIVE && s && s->state == SV_ACTIVE && s->txn == 'I' &&
           s->in_flight == 0 && !s->ext_open && !s->copy_in && !s->copy_active &&
           s->relay.pass_left == 0;
}

bool client_out_full(const struct client *c)
{
    return c->bev && evbuffer_get_length(conn_output(c->bev)) > RELAY_HIGH_WATER;
}

static void client_wake(struct client *c)
{
    if (c->mask_wait) /* its statement waits for the masking catalog: no server until then */
        return;
    while (pool_mode_of(c->pool)->shares_servers && !c->closing && !client_out_full(c) &&
           answer_deallocate(c))
        ;
    if (c->closing || client_out_full(c))
        return;
    conn_read_resume(c->bev); /* answered ones made room (wakes come from elsewhere too) */
    const uint8_t *first = evbuffer_pullup(conn_input(c->bev), 1);
    if (first && (!*first || !strchr("QPBEDCHSFdcfX", *first))) { /* not worth a server, nor a
                                                                     wait for its length */
        client_fail(c, "08P01", "invalid frontend message type");
        return;
    }
    /* the rest of a message arrives later: the read callback wakes the client again */
    if (c->closing || !whole_message_buffered(c))
        return;
    uint8_t type = *evbuffer_pullup(conn_input(c->bev), 1);
    if (type == 'X') {
        client_close(c, "client terminated");
        return;
    }
    pool_request(c->pool, c);
}

void client_transaction_done(struct client *c)
{
    struct server *s = c->server;
    if (c->closing || !s || !server_is_clean(s) || msgshare_large_ahead(c))
        return; /* (a large message is read whole with the server taken for it) */
    if (c->w->draining) {
        client_fail(c, "57P01", "lakeproxy is shutting down");
        return;
    }
    if (!pool_mode_of(c->pool)->shares_servers) { /* the server stays: a RESET is read back */
        if (server_may_hold_reset(s))
            server_read_back(s);
        return;
    }
    if (server_read_back(s))
        return;
    server_release(s);
    client_server_gone_idle(c);
}

/* Reads c again unless another wait still stops it (its server's backlog, the masking
 * catalog, a full reply queue, the reset barrier). */
static void read_unless_waiting(struct client *c)
{
    if (!c->paused && !c->mask_wait && !c->queue_wait && !c->reset_wait && !c->stmt_wait &&
        !c->cancel_wait)
        bufferevent_enable(c->bev, EV_READ);
}

void client_queue_room(struct client *c)
{
    if (!c->queue_wait || c->closing)
        return;
    c->queue_wait = false;
    read_unless_waiting(c);
    if (c->server)
        client_pump(c);
}

/* Does c's reset barrier (pipeline.c: note_may_reset) still hold its next message? Until its
 * server owes it no reply, is not reading its settings back, and has no cancel request on its
 * way (the settings are read back only after that: server.c cancel_settled); then it is
 * lifted. When the batch ended the transaction, client_transaction_done has by then had the
 * settings read back, and in transaction pooling the server went back to the pool: the next
 * link sets the startup values again before the held message runs. */
static bool reset_barrier_holds(struct client *c)
{
    const struct server *s = c->server;
    if (s && (rq_front(&s->replies) || s->in_flight > 0 || s->state != SV_ACTIVE ||
              s->cancels_pending > 0))
        return true;
    c->reset_barrier = false;
    /* inside a transaction block the RESET is read back at its end: the batch that ends
     * the block gets the barrier again (holding all until then would wait for good) */
    if (s && s->txn != 'I')
        c->reset_pending = true;
    return false;
}

void client_note_may_reset(struct client *c)
{
    if (c->at_startup.n > 0)
        c->reset_pending = true;
}

void client_arm_reset_barrier(struct client *c)
{
    if (c->reset_pending) {
        c->reset_pending = false;
        c->reset_barrier = true;
    }
}

/* c's wait at its reset barrier or for its statement records is over: it reads again
 * (unless another wait stops it), and what it sent meanwhile goes on, to its server or to
 * ask for one. */
static void resume_after_wait(struct client *c)
{
    read_unless_waiting(c);
    if (c->server)
        client_pump(c);
    else if (evbuffer_get_length(conn_input(c->bev)) > 0)
        client_wake(c);
}

void client_reset_wait_over(struct client *c)
{
    if (!c->reset_wait || c->closing || reset_barrier_holds(c))
        return;
    c->reset_wait = false;
    resume_after_wait(c);
}

void client_stmt_wait_over(struct client *c)
{
    if (!c->stmt_wait || c->closing || (c->server && pipeline_stmt_must_wait(c)))
        return;
    c->stmt_wait = false;
    resume_after_wait(c);
}

void client_cancel_wait_over(struct client *c)
{
    if (!c->cancel_wait || c->closing || (c->server && c->server->cancels_pending > 0))
        return;
    c->cancel_wait = false;
    resume_after_wait(c);
}

void client_server_gone_idle(struct client *c)
{
    c->state = CL_IDLE;
    /* (its queue went with the server, which owes it nothing now: no barrier either; the
     * server goes to no one while a cancel for it is on its way) */
    bool stopped = c->queue_wait || c->reset_wait || c->stmt_wait || c->cancel_wait;
    c->queue_wait = c->reset_wait = c->reset_pending = c->reset_barrier = c->stmt_wait = false;
    c->cancel_wait = false;
    c->ctx_doubt_batch = c->ctx_doubt_sent = false;
    if (stopped)
        read_unless_waiting(c);
    if (c->msg_claim.held || c->msg_claim.want)
        msgshare_give_back(c); /* no server: no share */
    if (c->paused) {           /* its server's backlog paused it */
        c->paused = false;
        bufferevent_enable(c->bev, EV_READ);
    }
    if (evbuffer_get_length(conn_input(c->bev)) > 0)
        client_wake(c);
}

/* Starts SCRAM-SHA-256 against verifier v; over TLS SCRAM-SHA-256-PLUS is offered first, as
 * PostgreSQL does (libpq's channel_binding=require needs it), bound to lakeproxy's certificate. */
static void start_scram(struct client *c, const struct scram_verifier *v)
{
    static const char plain[] = "SCRAM-SHA-256\0", both[] = "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0";
    uint8_t cbind[SCRAM_CBIND_MAX];
    size_t n = 0;
    struct buf b;
    buf_init(&b);
    scram_server_init(&c->scram, v);
    if (c->tls && tls_server_end_point(conn_tls(c->bev), cbind, sizeof(cbind), &n))
        scram_server_offer_binding(&c->scram, cbind, n);
    if (c->scram.cbind_len > 0)
        proto_auth(&b, AUTH_REQ_SASL, both, sizeof(both));
    else
        proto_auth(&b, AUTH_REQ_SASL, plain, sizeof(plain));
    c->step = CS_SCRAM_FIRST;
    send_to_client(c, &b);
}

/* A SCRAM exchange for a user nobody knows a password of (an unknown name), that fails at
 * its end as a wrong password does; its salt is the name's own (scram_mock_for_user). */
static void start_mock_scram(struct client *c)
{
    struct scram_verifier v;
    c->scram_mock = true;
    if (!scram_mock_for_user(&c->w->mock_verifier, c->w->mock_salt_key, c->user,
                             c->w->user_verifiers, c->w->cfg->n_users, &v)) {
        client_fail(c, "53200", "out of memory");
        return;
    }
    start_scram(c, &v);
    explicit_bzero(&v, sizeof(v));
}

static void fail_password(struct client *c)
{
    char msg[200];
    snprintf(msg, sizeof(msg), "password authentication failed for user \"%.64s\"", c->user);
    client_fail(c, "28P01", msg);
}

/* Starts an md5 exchange against a stored "md5..." hash (auth_query users only). */
static void start_md5(struct client *c, const char *stored)
{
    struct buf b;
    c->md5_stored = strdup(stored);
    if (!c->md5_stored || RAND_bytes(c->md5_salt, sizeof(c->md5_salt)) != 1) {
        client_fail(c, "53200", "out of memory");
        return;
    }
    buf_init(&b);
    proto_auth(&b, AUTH_REQ_MD5, c->md5_salt, sizeof(c->md5_salt));
    c->step = CS_MD5;
    send_to_client(c, &b);
}

/* auth_query answered: run SCRAM or md5 against what it found (a mock exchange if nothing). */
static void on_lookup_done(struct client *c, const char *verifier, const char *err)
{
    struct scram_verifier v;
    c->authq = NULL;
    if (reloaded_during_login(c))
        return;
    if (err) {
        log_warning("auth_query for user \"%s\" failed: %s", c->user, err);
        client_fail(c, "08006", "could not look up the user's password (auth_query failed)");
        return;
    }
    if (verifier && strncmp(verifier, "SCRAM-SHA-256$", 14) == 0 &&
        scram_parse_verifier(verifier, &v)) {
        start_scram(c, &v);
        explicit_bzero(&v, sizeof(v));
        return;
    }
    if (verifier && strncmp(verifier, "md5", 3) == 0 && strlen(verifier) == 35) {
        start_md5(c, verifier);
        return;
    }
    start_mock_scram(c);
}

/* client_auth databricks_token: ask for the token as a cleartext password, over TLS only. */
static void start_token_auth(struct client *c)
{
    char msg[300];
    if (!c->tls) {
        snprintf(msg, sizeof(msg),
                 "database \"%.64s\" takes a Databricks token as password, which must not "
                 "cross the network in clear: connect with TLS (sslmode=require)",
                 c->database);
        client_fail(c, "28000", msg);
        return;
    }
    struct buf b;
    buf_init(&b);
    proto_auth(&b, AUTH_REQ_CLEARTEXT, NULL, 0);
    c->step = CS_TOKEN;
    send_to_client(c, &b);
}

/* Keeps the identity's groups for RLS attributes and masking exemptions. */
static bool take_token_groups(struct client *c, const struct token_identity *id)
{
    groups_clear(&c->token_groups);
    if (id->n_groups == 0)
        return true;
    if (!(c->token_groups.items = calloc(id->n_groups, sizeof(char *))))
        return false;
    for (size_t i = 0; i < id->n_groups; i++) {
        if (!(c->token_groups.items[i] = strdup(id->groups[i])))
            return false;
        c->token_groups.n++;
    }
    return true;
}

static bool refuse_address(struct client *c);

/* The workspace said who the token belongs to: it must be the user the client named, case
 * aside; the session's user is its users: entry's spelling, else the workspace's, and that
 * entry's from: is checked again (the name the client typed may have missed it). */
static void on_token_checked(struct client *c, const struct token_identity *id,
                             const char *sqlstate, const char *err)
{
    char msg[400];
    c->token_check = NULL;
    if (!id) {
        client_fail(c, sqlstate, err);
        return;
    }
    if (reloaded_during_login(c)) /* the workspace or client_auth may have changed */
        return;
    if (config_name_casecmp(id->user, c->user) != 0) {
        snprintf(msg, sizeof(msg),
                 "the Databricks token belongs to \"%.128s\", not to user \"%.128s\": log in "
                 "as the token's own user",
                 id->user, c->user);
        client_fail(c, "28P01", msg);
        return;
    }
    const struct user_config *entry = config_find_token_user(c->w->cfg, id->user);
    char *user = strdup(entry ? entry->name : id->user); /* (its entry's spelling, if any) */
    const struct db_config *db = config_find_db(c->w->cfg, c->database);
    if (!user || !db || !take_token_groups(c, id)) {
        free(user);
        client_fail(c, "53200", "out of memory");
        return;
    }
    free(c->user);
    c->user = user;
    if (!config_may_connect_from(c->w->cfg, LOGIN_TOKEN, c->user, &c->peer)) {
        (void)refuse_address(c); /* (the name as the workspace spells it: its entry's from:) */
        return;
    }
    struct buf b;
    buf_init(&b);
    auth_done(c, &b);
}

/* The PasswordMessage of a token login: one NUL-terminated printable token. */
static void handle_token(struct client *c, const uint8_t *body, size_t len)
{
    const struct db_config *db = config_find_db(c->w->cfg, c->database);
    if (len < 2 || body[len - 1] != 0 || !token_printable((const char *)body, len - 1)) {
        client_fail(c, "28P01",
                    "expected a Databricks token as the password (printable ASCII "
                    "without spaces)");
        return;
    }
    if (!db) { /* removed by a reload meanwhile */
        client_fail(c, "3D000", "the database is no longer configured");
        return;
    }
    c->step = CS_LOOKUP;
    free(c->token_workspace); /* (the workspace asked: the one that vouches, if it does) */
    if (!(c->token_workspace = strdup(db->cred.workspace))) {
        client_fail(c, "53200", "out of memory");
        return;
    }
    c->token_check = tokenauth_check(c->w, db, (const char *)body, c->addr, c, on_token_checked);
    if (!c->token_check)
        client_fail(c, "53200", "out of memory");
}

/* c's user may not connect from its address (users.X.from, auth_query.from): said in the log.
 * A password, trust or looked-up login gets the mock exchange an unknown name gets (without
 * the look-up), failing as a wrong password would, so that a probe from elsewhere learns
 * neither that the name exists nor whether a password it tries is right; a token login, whose
 * token has proved the identity, is refused with 28000 (true: c is done with). */
static bool refuse_address(struct client *c)
{
    char setting[100];
    config_from_setting(c->w->cfg, c->login_path, c->user, setting, sizeof(setting));
    log_warning("client %llu %s: user \"%.64s\" may not connect from this address (%s): refused",
                (unsigned long long)c->id, c->addr, c->user, setting);
    if (c->login_path == LOGIN_TOKEN) {
        char msg[200];
        snprintf(msg, sizeof(msg), "user \"%.64s\" may not connect from this address", c->user);
        client_fail(c, "28000", msg);
        return true;
    }
    c->login_path = LOGIN_NONE;
    return false;
}

/* Picks how c authenticates, by its entry under users:, else through auth_query. Unknown
 * users, and token identities (auth: token) asking for a password login, get a mock exchange
 * that always fails, so a probe cannot tell which names exist. */
static void start_auth(struct client *c)
{
    const struct config *cfg = c->w->cfg;
    c->auth_cfg_gen = c->w->cfg_gen;
    size_t i = 0;
    c->login_path = config_login_path(cfg, config_find_db(cfg, c->database),
                                      strcmp(c->database, ADMIN_DATABASE) == 0, c->user, &i);
    /* (a token login is checked once the workspace has said whose token it is: refused
     * before, it would tell a probe with no token that the name has an entry with a from:) */
    if (c->login_path != LOGIN_TOKEN &&
        !config_may_connect_from(cfg, c->login_path, c->user, &c->peer) && refuse_address(c))
        return;
    struct buf b;
    switch (c->login_path) {
    case LOGIN_TOKEN: start_token_auth(c); return;
    case LOGIN_TRUST:
        buf_init(&b);
        auth_done(c, &b);
        return;
    case LOGIN_PASSWORD: start_scram(c, &c->w->user_verifiers[i]); return;
    case LOGIN_LOOKUP:
        c->step = CS_LOOKUP;
        c->authq = authquery_start(c->w, c, on_lookup_done);
        if (!c->authq)
            client_fail(c, "08006", "could not look up the user's password (auth_query failed)");
        return;
    case LOGIN_UNSET:
    case LOGIN_NONE: start_mock_scram(c); return;
    }
}

static void handle_md5(struct client *c, const uint8_t *body, size_t len)
{
    struct buf b;
    if (len == 0 || body[len - 1] != 0 ||
        !md5_verify_response(c->md5_stored, c->md5_salt, (const char *)body, len - 1)) {
        log_info("client %llu %s: md5 authentication failed for user \"%s\"",
                 (unsigned long long)c->id, c->addr, c->user);
        fail_password(c);
        return;
    }
    buf_init(&b);
    auth_done(c, &b);
}

static void handle_scram_first(struct client *c, const uint8_t *body, size_t len)
{
    const char *mech, *err = NULL;
    const uint8_t *data;
    size_t dlen;
    char *out = NULL;
    if (!proto_parse_sasl_initial(body, len, &mech, &data, &dlen) ||
        !scram_server_choose(&c->scram, mech) || !data) {
        client_fail(c, "08P01",
                    "expected a SCRAM-SHA-256 (or, offered over TLS, SCRAM-SHA-256-PLUS) "
                    "SASLInitialResponse");
        return;
    }
    if (!scram_server_handle_first(&c->scram, (const char *)data, dlen, NULL, &out, &err)) {
        client_fail(c, "08P01", err ? err : "malformed SCRAM client-first-message");
        return;
    }
    struct buf b;
    buf_init(&b);
    proto_auth(&b, AUTH_REQ_SASL_CONTINUE, out, strlen(out));
    free(out);
    c->step = CS_SCRAM_FINAL;
    send_to_client(c, &b);
}

static void handle_scram_final(struct client *c, const uint8_t *body, size_t len)
{
    const char *err = NULL;
    char *out = NULL;
    bool ok = scram_server_handle_final(&c->scram, (const char *)body, len, &out, &err);
    if (!ok || c->scram_mock) {
        free(out);
        log_info("client %llu %s: SCRAM failed for user \"%s\": %s", (unsigned long long)c->id,
                 c->addr, c->user,
                 c->scram_mock ? "no such user"
                 : err         ? err
                               : "bad proof");
        fail_password(c);
        return;
    }
    struct buf b;
    buf_init(&b);
    proto_auth(&b, AUTH_REQ_SASL_FINAL, out, strlen(out));
    free(out);
    auth_done(c, &b);
}

/* One authentication message: waits for all of it, takes it off the input, then acts on it
 * (acting may link a server and start relaying, so the message must be gone first). */
static void on_auth_data(struct client *c)
{
    struct evbuffer *in = conn_input(c->bev);
    uint8_t hdr[5], type;
    uint32_t len;
    const char *err;
    if (evbuffer_copyout(in, hdr, 5) < 5)
        return;
    if (proto_check_header(hdr, CLIENT_LOGIN_MAX, &type, &len, &err) != PROTO_OK) {
        client_fail(c, "08P01", err);
        return;
    }
    if (type == 'X') {
        client_close(c, "client terminated during login");
        return;
    }
    if (type != 'p' || (c->step != CS_SCRAM_FIRST && c->step != CS_SCRAM_FINAL &&
                        c->step != CS_MD5 && c->step != CS_TOKEN)) {
        client_fail(c, "08P01", "invalid message during authentication");
        return;
    }
    if (evbuffer_get_length(in) < 5 + (size_t)len)
        return;
    uint8_t *body = malloc(len ? len : 1);
    if (!body) {
        client_fail(c, "53200", "out of memory");
        return;
    }
    evbuffer_drain(in, 5);
    evbuffer_remove(in, body, len);
    if (c->step == CS_SCRAM_FIRST)
        handle_scram_first(c, body, len);
    else if (c->step == CS_SCRAM_FINAL)
        handle_scram_final(c, body, len);
    else if (c->step == CS_TOKEN)
        handle_token(c, body, len);
    else
        handle_md5(c, body, len);
    explicit_bzero(body, len);
    free(body);
}

/* Makes bev c's connection: callbacks, and the write watermark at which a paused server reads
 * again (conn_read_direct, or conn_tls_accept, bounds the input; reading stops there without
 * calling the read callback, which so never runs inside a relay of the same input, where it
 * would pass bytes past a streamed body's end uninspected). */
static void client_attach_bev(struct client *c, struct bufferevent *bev)
{
    c->bev = bev;
    bufferevent_setwatermark(bev, EV_WRITE, RELAY_LOW_WATER, 0);
    bufferevent_setcb(bev, client_read_cb, client_write_cb, client_event_cb, c);
    bufferevent_enable(bev, EV_READ); /* writes: see conn_flush */
}

/* Answers SSLRequest: 'S' and a TLS handshake when TLS is configured, else 'N'. */
static void handle_ssl_request(struct client *c)
{
    struct evbuffer *in = conn_input(c->bev);
    if (c->tls || !c->w->client_tls) {
        conn_write(c->bev, "N", 1);
        return;
    }
    if (evbuffer_get_length(in) != 0) { /* bytes sent before the handshake: injection */
        client_fail(c, "08P01", "received unencrypted data after SSL request");
        return;
    }
    SSL *ssl = SSL_new(c->w->client_tls);
    if (!ssl) {
        client_fail(c, "08006", "could not start TLS");
        return;
    }
    /* 'S' in the clear, then the handshake, which conn runs on the socket from here on */
    conn_write(c->bev, "S", 1);
    if (!conn_tls_accept(c->bev, ssl, CLIENT_READ_AHEAD, client_take)) {
        SSL_free(ssl);
        client_close(c, "could not start TLS");
        return;
    }
    c->step = CS_TLS;
    c->tls_cfg_gen = c->w->cfg_gen;
}

/* Tells a client asking for protocol 3.x (x > 0) or _pq_ options what the proxy speaks. */
static bool negotiate_version(struct client *c, const struct startup *st)
{
    const char *opts[PROTO_MAX_STARTUP_PARAMS];
    size_t n = 0;
    for (size_t i = 0; i < st->n_params; i++)
        if (strncmp(st->params[i].name, "_pq_.", 5) == 0)
            opts[n++] = st->params[i].name;
    if ((st->version & 0xffff) == 0 && n == 0)
        return true;
    struct buf b;
    buf_init(&b);
    proto_negotiate_version(&b, 0, opts, n);
    return send_to_client(c, &b);
}

/* A startup option the rls policy lets clients set ("-c app.locale=fr")? */
static bool rls_option_allowed(const void *cfg, const char *name)
{
    return rls_client_settable(cfg, name);
}

/* A v3 StartupMessage: who, which database, which session parameters; then authenticate. */
static void handle_startup_v3(struct client *c, const struct startup *st)
{
    char err[200];
    /* no TLS from here on: see conn.h */
    conn_read_direct(c->bev, CLIENT_READ_AHEAD, client_take);
    const char *user = startup_get(st, "user");
    const char *db = startup_get(st, "database");
    if (!user || !*user) {
        client_fail(c, "28000", "no PostgreSQL user name specified in startup packet");
        return;
    }
    if (!db || !*db)
        db = user;
    c->user = strdup(user);
    c->database = strdup(db);
    if (!c->user || !c->database) {
        client_fail(c, "53200", "out of memory");
        return;
    }
    enum tls_lack lack = client_tls_lack(c->w->cfg, c);
    if (lack != TLS_LACKS_NOTHING) {
        client_fail(c, "28000",
                    lack == TLS_LACKS_TLS
                        ? "TLS is required (listen.tls.client_tls: require): connect with "
                          "sslmode=require"
                        : "a client certificate is required (listen.tls.client_cert: require): "
                          "connect with TLS (sslmode=require) and a certificate (sslcert, sslkey)");
        return;
    }
    struct param_custom custom = {rls_option_allowed, c->w->cfg, &c->rls_options};
    if (!params_from_startup(st, &c->wanted, &custom, err, sizeof(err))) {
        char logged[160]; /* what follows ": " is the client's own text: not logged */
        const char *colon = strstr(err, ": ");
        snprintf(logged, sizeof(logged), "%.*s%s", colon ? (int)(colon - err) : (int)strlen(err),
                 err, colon ? " (the client's text is not logged)" : "");
        client_fail_as(c, "08P01", err, logged);
        return;
    }
    for (size_t i = 0; i < c->wanted.n; i++)
        if (!paramval_check(c->wanted.items[i].name, c->wanted.items[i].value, err, sizeof(err))) {
            char logged[160]; /* the value, which may be anything, goes to the client only */
            snprintf(logged, sizeof(logged), "invalid value for startup parameter \"%.64s\"",
                     c->wanted.items[i].name);
            client_fail_as(c, "22023", err, logged); /* as PostgreSQL refuses it, at once */
            return;
        }
    if (!param_copy(&c->at_startup, &c->wanted)) {
        client_fail(c, "53200", "out of memory");
        return;
    }
    if (negotiate_version(c, st))
        start_auth(c);
}

/* A second SSLRequest, or a GSSENCRequest after either request, fails c (true): PostgreSQL
 * negotiates each once per connection (GSS before TLS), and the answers to a flood of them
 * would pile up unread (red team 14). */
static bool encryption_asked_again(struct client *c, enum startup_kind kind)
{
    bool again = kind == STARTUP_SSL ? c->ssl_asked : c->gss_asked || c->ssl_asked;
    if (again) {
        client_fail(c, "08P01",
                    kind == STARTUP_SSL
                        ? "SSLRequest sent again: encryption is negotiated once per connection"
                        : "GSSENCRequest sent again or after SSLRequest: encryption is "
                          "negotiated once per connection, GSS first");
        return true;
    }
    if (kind == STARTUP_SSL)
        c->ssl_asked = true;
    else
        c->gss_asked = true;
    return false;
}

static void handle_startup_packet(struct client *c, const uint8_t *p, size_t len)
{
    struct startup st;
    const char *err = NULL;
    char msg[128];
    if (!proto_parse_startup(p, len, &st, &err)) {
        client_fail(c, "08P01", err);
        return;
    }
    if (c->over_limit && st.kind != STARTUP_SSL && st.kind != STARTUP_GSSENC &&
        st.kind != STARTUP_CANCEL) { /* (a login past max_clients) */
        client_fail(c, "53300", TOO_MANY_CLIENTS);
        return;
    }
    switch (st.kind) {
    case STARTUP_SSL:
    case STARTUP_GSSENC:
        if (encryption_asked_again(c, st.kind))
            break;
        if (st.kind == STARTUP_SSL)
            handle_ssl_request(c);
        else
            conn_write(c->bev, "N", 1);
        break;
    case STARTUP_CANCEL:
        /* like PostgreSQL, close the connection once the cancel has been delivered: a client
         * that sends its next query then cannot have it cancelled by this request */
        if (client_route_cancel(c->w, st.cancel_pid, st.cancel_key, c->id)) {
            c->step = CS_CANCEL; /* (as PostgreSQL: one request per connection) */
            bufferevent_disable(c->bev, EV_READ);
        } else
            client_close(c, "cancel request handled");
        break;
    case STARTUP_BAD_VERSION:
        snprintf(msg, sizeof(msg), "unsupported frontend protocol %u.%u: server supports 3.0",
                 st.version >> 16, st.version & 0xffff);
        client_fail(c, "0A000", msg);
        break;
    case STARTUP_V3: handle_startup_v3(c, &st); break;
    }
}

/* Reads one length-prefixed startup-phase packet when all of it has arrived. */
static void on_startup_data(struct client *c)
{
    struct evbuffer *in = conn_input(c->bev);
    uint8_t hdr[4];
    uint32_t len;
    const char *err;
    while (!c->closing && c->step == CS_STARTUP && evbuffer_copyout(in, hdr, 4) == 4) {
        if (proto_check_startup_len(hdr, &len, &err) != PROTO_OK) {
            client_fail(c, "08P01", err);
            return;
        }
        if (evbuffer_get_length(in) < len)
            return;
        uint8_t pkt[PROTO_MAX_STARTUP];
        evbuffer_remove(in, pkt, len);
        handle_startup_packet(c, pkt, len);
    }
    /* bytes sent right behind the startup packet belong to the next phase */
    if (!c->closing && (c->step == CS_SCRAM_FIRST || c->step == CS_SCRAM_FINAL) &&
        evbuffer_get_length(in) > 0)
        on_auth_data(c);
}

/* Replies the queue keeps free for one message's own: a Bind may owe a re-Parse, a Close and
 * its BindComplete. */
enum { REPLY_QUEUE_SLACK = 64 };

/* The shape of the Query text in body, from the worker's memo (its statistics key and what
 * the keyword scans find in it: client_query_facts), for the inspection of that message. */
static void look_up_query_shape(struct client *c, const uint8_t *body, uint32_t len)
{
    if (!c->w->shapes || len == 0 || body[len - 1] != '\0')
        return; /* (an invalid Query: refused further on) */
    c->query_text = (const char *)body;
    c->query_shape = sqlkey_memo_shape(c->w->shapes, c->query_text);
}

static enum relay_verdict active_inspect(void *arg, uint8_t type, uint32_t len, const uint8_t *body)
{
    struct client *c = arg;
    if (!body)
        c->msgs_in++; /* (activity: pool.idle_transaction_timeout_s, client_idle_timeout_s) */
    if ((type == 'Q' || type == 'P' || type == 'F') && !body && mask_must_wait(c))
        return RV_WAIT;
    /* a pipeline deeper than the queue waits for the server's answers, as PostgreSQL would
     * stop reading: taken at the header, before anything counted the message */
    if (!body && c->server->replies.len > REPLY_QUEUE_MAX - REPLY_QUEUE_SLACK) {
        c->queue_wait = true;
        return RV_WAIT;
    }
    /* (only what runs a statement waits: never copy data nor a Sync, which a COPY ... FROM
     * STDIN behind the barrier waits for, nor a Flush or Terminate) */
    /* nor while a cancel request is on its way to its server: PostgreSQL drops one that
     * arrives between statements, but one that arrived after the next statement was read
     * would cancel that (a cancel deferred for a queued query is sent as the query goes) */
    if (!body && c->cancel_query_sent && memchr("QPBEF", type, 5))
        client_send_wanted_cancel(c); /* (the query it kept it for is on its way: it goes now) */
    if (!body && c->server->cancels_pending > 0 && memchr("QPBEF", type, 5)) {
        c->cancel_wait = true; /* (lifted by client_cancel_wait_over, or client_server_gone_idle) */
        return RV_WAIT;
    }
    if (!body && c->reset_barrier && memchr("QPBEF", type, 5) && reset_barrier_holds(c)) {
        c->reset_wait = true; /* (lifted by client_reset_wait_over, or client_server_gone_idle) */
        return RV_WAIT;
    }
    /* a name whose meaning an unanswered earlier batch may change waits for the answers
     * (ahead of the statistics: the message is judged again when reading resumes) */
    if ((type == 'P' || type == 'B' || type == 'D' || type == 'C') && c->server->in_flight > 0 &&
        pool_mode_of(c->pool)->shares_servers && pipeline_stmt_must_wait(c)) {
        if (!body)
            return RV_NEED_BODY;
        if (pipeline_names_statement(type, body, len)) {
            c->stmt_wait = true; /* (lifted by client_stmt_wait_over, or client_server_gone_idle) */
            return RV_WAIT;
        }
    }
    if (c->server->mask_class && c->server->mask_class != client_mask_class(c)) {
        /* what it prepared or opened on this server was checked under other rules */
        c->inspect_err = "the masking rules changed while a transaction was open (a reload): "
                         "reconnect";
        return RV_ERROR;
    }
    bool track = qtrack_wants_client_msg(c, type);
    if (type == 'Q' && body && (track || pool_mode_of(c->pool)->shares_servers))
        look_up_query_shape(c, body, len);
    if (track) { /* statistics see the whole message, once */
        if (!body)
            return RV_NEED_BODY;
        qtrack_client_msg(c, type, len, body);
    }
    if (c->cancel_wanted && (type == 'Q' || type == 'S'))
        c->cancel_query_sent = true; /* (what follows waits for the kept cancel: above) */
    enum relay_verdict v = pool_mode_of(c->pool)->client_msg(c, type, len, body, &c->inspect_err);
    c->query_text = NULL;
    return v;
}

/* Can the client's messages go to its server now? (Not once lakeproxy is ending it: what
 * it sends after the end must not run, server_end_statement.) */
static bool client_can_pump(const struct client *c)
{
    return !c->closing && c->server && c->server->state == SV_ACTIVE && c->sent_ready &&
           !c->server->ending;
}

/* Relays the client's messages to its server: first those of p[0..n), a read not yet in the
 * input (when p), then the input's. */
static void client_relay(struct client *c, const uint8_t *p, size_t n)
{
    struct server *s = c->server;
    const char *err;
    struct evbuffer *in = conn_input(c->bev), *out = conn_output(s->bev);
    int fd = conn_plain_fd(s->bev);
    size_t max = c->w->cfg->max_message_size;
    enum relay_result r;
    do { /* full, then flushed to below the mark: no write callback would wake us, go on */
        r = p ? relay_pump_span(in, p, n, out, fd, &c->relay, max, active_inspect, c, &err)
              : relay_pump_to(in, out, fd, &c->relay, max, active_inspect, c, &err);
        p = NULL; /* all of it consumed or in the input now */
        conn_flush(s->bev);
        conn_flush(c->bev); /* replies the proxy made up itself */
    } while (r == RELAY_FULL && evbuffer_get_length(out) <= RELAY_HIGH_WATER && c->server == s &&
             !client_out_full(c));
    qtrack_settle(c);
    if (c->leaving && !c->closing && evbuffer_get_length(in) == 0 && c->relay.pass_left == 0) {
        client_close(c, "client disconnected (after its last messages went to the server)");
        return;
    }
    if (c->bev && !c->closing && /* (nothing to fit on the common path: no share, input empty) */
        (c->msg_claim.held || c->msg_claim.want || evbuffer_get_length(in) >= 5))
        msgshare_fit(c, r == RELAY_MORE && !c->paused && !c->mask_wait &&
                            evbuffer_get_length(out) <= RELAY_HIGH_WATER);
    if (c->bev && !c->closing)
        conn_read_resume(c->bev); /* drained, maybe from its server's callback */
    if (r == RELAY_FULL && !c->paused) {
        c->paused = true;
        bufferevent_disable(c->bev, EV_READ);
    } else if (r == RELAY_WAIT) {
        bufferevent_disable(c->bev, EV_READ); /* until the masking catalog is read */
    } else if (r == RELAY_STOPPED) {
        client_close(c, "client terminated");
    } else if (r == RELAY_FAILED && err == relay_out_of_memory) {
        client_relay_out_of_memory(c);
    } else if (r == RELAY_FAILED) {
        char msg[200];
        snprintf(msg, sizeof(msg), "%s",
                 c->inspect_err ? c->inspect_err
                 : err          ? err
                                : "invalid frontend message type");
        client_fail(c, "08P01", msg);
    }
}

void client_pump(struct client *c)
{
    if (!client_can_pump(c) || client_out_full(c))
        return;
    const uint8_t *p = c->taken; /* (the input is empty then) */
    c->taken = NULL;
    client_relay(c, p, c->taken_n);
}

/* Would client_wake ask for a server for the read p[0..n) alone? Only when nothing came before
 * it and it starts with a whole message that is neither Terminate nor a DEALLOCATE the proxy
 * answers itself. */
static bool read_needs_server(const struct client *c, const uint8_t *p, size_t n)
{
    uint8_t type;
    uint32_t len;
    const char *err;
    char name[64];
    bool all;
    if (c->mask_wait || c->closing || n < 5 || evbuffer_get_length(conn_input(c->bev)) > 0 ||
        proto_check_header(p, c->w->cfg->max_message_size, &type, &len, &err) != PROTO_OK ||
        n - 5 < len || type == 'X')
        return false;
    return type != 'Q' || !query_deallocates(p + 5, len, name, &all);
}

/* An idle client's read that needs a server: asks for one with the read held (c->taken), so
 * that a server linked at once relays it from where it was read (client_pump); else the read
 * goes into the input, where client_wake would have left it. */
static void take_idle_read(struct client *c, const uint8_t *p, size_t n)
{
    c->taken = p;
    c->taken_n = n;
    pool_request(c->pool, c);
    if (!c->taken)
        return;
    c->taken = NULL;
    if (!c->closing && !conn_keep_input(c->bev, p, n))
        client_close(c, "out of memory");
}

/* client_read_cb's fast path (conn_take_fn): an active client's read is relayed from where it
 * was read, and so is an idle one's that finds a server at once. */
static bool client_take(void *arg, const uint8_t *p, size_t n)
{
    struct client *c = arg;
    if (client_out_full(c))
        return false; /* (kept in the input) */
    if (c->state == CL_IDLE && read_needs_server(c, p, n)) {
        take_idle_read(c, p, n);
        return true;
    }
    if (c->state != CL_ACTIVE || !client_can_pump(c))
        return false;
    client_relay(c, p, n);
    return true;
}

/* Handles the buffered input of a logged-in client as its state asks: relayed to its server,
 * a server asked for, or admin commands run. */
static void client_read_buffered(struct client *c)
{
    if (c->state == CL_ACTIVE)
        client_pump(c);
    else if (c->state == CL_IDLE)
        client_wake(c);
    else if (c->state == CL_ADMIN)
        admin_read(c);
    /* CL_WAITING: input waits for the server; the read watermark bounds it */
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct client *c = arg;
    if (c->state == CL_LOGIN && c->step == CS_STARTUP)
        on_startup_data(c);
    else if (c->state == CL_LOGIN && c->step != CS_DONE && c->step != CS_TLS &&
             c->step != CS_CANCEL)
        on_auth_data(c);
    else if (c->state != CL_LOGIN)
        client_read_buffered(c);
    /* CS_DONE: input waits for the server; the read watermark bounds it */
}

/* Output towards the client drained: let the server send more, and the client too (its input
 * waited while its output was full). */
static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    conn_write_done(bev);
    struct server *s = c->server;
    if (s && s->paused) {
        s->paused = false;
        bufferevent_enable(s->bev, EV_READ);
        server_pump(s);
    }
    if (!c->closing && c->state != CL_LOGIN && evbuffer_get_length(conn_input(c->bev)) > 0)
        client_read_buffered(c);
}

/* Does the client's input hold whole messages only, at most LEAVING_INPUT_MAX bytes of
 * them (no part of one: a client that leaves mid-message is not waited for)? */
enum { LEAVING_INPUT_MAX = 1 << 20 };
static bool input_all_whole(struct client *c)
{
    struct evbuffer *in = conn_input(c->bev);
    size_t n = evbuffer_get_length(in), at = 0;
    const uint8_t *p = n <= LEAVING_INPUT_MAX ? evbuffer_pullup(in, -1) : NULL;
    while (p && at < n) {
        uint8_t type;
        uint32_t len;
        const char *err;
        if (n - at < 5 ||
            proto_check_header(p + at, c->w->cfg->max_message_size, &type, &len, &err) !=
                PROTO_OK ||
            n - at < 5 + (size_t)len)
            return false;
        at += 5 + (size_t)len;
    }
    return p && at == n;
}

/* The client closed its side with whole messages that wait for a server (transaction
 * pooling): PostgreSQL runs what a client sent before it left, so they are relayed once a
 * server is there, and the client closes when its input is spent (client_relay); its server
 * reads their replies to the end (server_unlink). True when it stays for that. */
static bool leaves_after_input(struct client *c)
{
    struct evbuffer *in = conn_input(c->bev);
    const uint8_t *first = evbuffer_pullup(in, 1);
    if (c->closing || c->leaving || !c->sent_ready || !c->pool ||
        !pool_mode_of(c->pool)->shares_servers || !first || *first == 'X' || client_out_full(c) ||
        c->relay.pass_left > 0 || !input_all_whole(c))
        return false; /* (one that left results unread, or mid-message, is not waited for) */
    c->leaving = true;
    bufferevent_disable(c->bev, EV_READ);
    if (c->server)
        client_pump(c);
    else if (c->state == CL_IDLE)
        client_wake(c);
    return !c->closing;
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct client *c = arg;
    if ((what & BEV_EVENT_EOF) && leaves_after_input(c))
        return;
    if (what & BEV_EVENT_CONNECTED) { /* TLS handshake done */
        c->tls = true;
        SSL *ssl = conn_tls(c->bev);
        c->cert_verified = tls_peer_subject(ssl, &c->cert);
        if (c->cert_verified && c->tls_cfg_gen != c->w->cfg_gen &&
            !tls_peer_verifies_in(ssl, c->w->client_tls)) {
            client_fail(c, "28000",
                        "the client certificate does not verify under the configuration "
                        "reloaded during the TLS handshake (listen.tls.client_ca, client_crl)");
            return;
        }
        c->step = CS_STARTUP;
        on_startup_data(c);
        return;
    }
    client_close(c, (what & BEV_EVENT_EOF) ? "client disconnected"
                    : c->step == CS_TLS    ? "TLS handshake failed"
                                           : "client connection error");
}

/* Has the client's first buffered message arrived whole? (A cancel that comes while a query
 * is still being read cancels nothing on PostgreSQL.) */
static bool first_message_whole(struct client *c)
{
    size_t whole;
    return first_message_size(c, &whole) && whole > 0 &&
           evbuffer_get_length(conn_input(c->bev)) >= whole;
}

/* The bytes of the statement at the head of c's input, when all of it has arrived: a simple
 * Query, or an extended-protocol batch (Parse, Bind, Describe, Execute, Close, Flush) through
 * its Sync; 0 otherwise (a FunctionCall, a lone Sync, a batch whose Sync is still to come). */
static size_t queued_statement_size(struct client *c)
{
    size_t have = evbuffer_get_length(conn_input(c->bev)), at = 0, whole;
    bool work = false;
    uint8_t type;
    while (message_size_at(c, at, &type, &whole) && whole > 0) {
        bool first = at == 0;
        at += whole;
        if (at > have)
            return 0;
        if (type == 'Q')
            return first ? at : 0;
        if (type == 'S')
            return work ? at : 0;
        if (!memchr("PBDECH", type, 6))
            return 0;
        work |= type != 'H';
    }
    return 0;
}

/* A cancel for a client of transaction pooling whose statement waits for a server: it is
 * never sent, and is answered as PostgreSQL answers a statement cancelled before it did
 * anything (57014, then ReadyForQuery; an extended-protocol batch is skipped through its Sync;
 * what the client pipelined behind goes on). Sent with a cancel behind it instead, it would
 * run in full whenever the cancel reached PostgreSQL before the backend had read it. False
 * when that is not c's case. */
static bool cancel_queued_query(struct client *c)
{
    if (c->server || !c->sent_ready || c->closing || !c->bev || !c->pool ||
        !pool_mode_of(c->pool)->shares_servers || (c->state != CL_WAITING && c->state != CL_IDLE))
        return false;
    size_t whole = queued_statement_size(c);
    if (whole == 0)
        return false;
    struct evbuffer *in = conn_input(c->bev);
    if (c->state == CL_WAITING)
        pool_forget_client(c);
    c->state = CL_IDLE;
    c->cancel_wanted = c->cancel_query_sent = false;
    evbuffer_drain(in, whole);
    struct buf b;
    start_error(c, &b, "ERROR", "57014",
                "canceling statement due to user request (it was waiting for a server: not run)");
    proto_ready(&b, 'I');
    if (send_to_client(c, &b))
        client_wake(c); /* (what it sent after the query asks for a server in turn) */
    return true;
}

bool client_route_cancel(struct worker *w, uint32_t pid, uint32_t key, uint64_t requester)
{
    uint8_t want[8], have[8];
    memcpy(want, &pid, 4);
    memcpy(want + 4, &key, 4);
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &w->clients) {
        struct client *c = list_entry(it, struct client, node);
        memcpy(have, &c->cancel_pid, 4);
        memcpy(have + 4, &c->cancel_key, 4);
        if (!auth_equal_ct(want, have, 8))
            continue;
        unsigned long long id = (unsigned long long)c->id; /* (c may be closed below) */
        bool wait = false;
        const char *what = "nothing to cancel";
        if (c->server && c->server->state == SV_ACTIVE) {
            bool another = c->server->cancels_pending > 0;
            wait = server_send_cancel(c->server, requester);
            what = wait      ? "on its way to the server"
                   : another ? "not sent: one is on its way already"
                             : "could not be sent to the server";
        } else if (cancel_queued_query(c)) {
            what = "its statement was waiting for a server: answered 57014, not run";
        } else if (c->sent_ready && !c->closing && c->bev && first_message_whole(c)) {
            /* waiting for a server, with a statement that PostgreSQL would be running now (a
             * batch whose Sync is still to come, say): it is cancelled once it runs
             * (client_server_ready) */
            c->cancel_wanted = true;
            what = "kept until its statement runs";
        }
        /* (the key's pid half is what the client was shown, never a secret) */
        log_debug("client %llu: cancel request (key pid %u): %s", id, pid, what);
        return wait;
    }
    log_debug("cancel request for an unknown backend key ignored");
    return false;
}

void client_cancel_delivered(struct worker *w, uint64_t requester)
{
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &w->clients) {
        struct client *c = list_entry(it, struct client, node);
        if (c->id == requester) {
            client_close(c, "cancel request delivered");
            return;
        }
    }
}

/* Gives c a BackendKeyData of its own: random, never the server's. */
static void make_cancel_key(struct client *c)
{
    uint32_t r[2];
    if (RAND_bytes((unsigned char *)r, sizeof(r)) != 1) {
        r[0] = (uint32_t)c->id;
        r[1] = (uint32_t)rand();
    }
    c->cancel_pid = (r[0] & 0x3fffffff) | 1;
    c->cancel_key = r[1];
}

void client_refuse(evutil_socket_t fd, const char *msg)
{
    struct buf b;
    buf_init(&b);
    proto_error(&b, "FATAL", "53300", msg);
    if (!b.failed && send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("could not send refusal: %s", evutil_socket_error_to_string(errno));
    buf_free(&b);
    /* the startup packet already here is read, not left: closing a socket with unread input
     * resets the connection, and some client stacks then drop the error before reading it */
    char junk[1024];
    (void)recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
    evutil_closesocket(fd);
}

enum tls_lack client_tls_lack(const struct config *cfg, const struct client *c)
{
    if (cfg->tls_client_tls == 1 && !c->tls && !c->on_unix_socket)
        return TLS_LACKS_TLS;
    if (cfg->tls_client_cert == 1 && !c->cert_verified) /* (TCP or Unix socket) */
        return TLS_LACKS_CERT;
    return TLS_LACKS_NOTHING;
}

void client_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen)
{
    (void)salen;
    /* Past max_clients a few connections more are taken, each only for a CancelRequest (as
     * PostgreSQL takes cancels whatever its max_connections), and for a short while: a full
     * lakeproxy still lets a runaway query be cancelled. */
    bool over = w->n_clients - w->n_over_limit >= w->cfg->max_clients;
    if (over && w->n_over_limit >= CANCEL_SPARE_CONNECTIONS) {
        client_refuse(fd, TOO_MANY_CLIENTS);
        return;
    }
    struct client *c = calloc(1, sizeof(*c));
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->w = w;
    c->id = ++w->next_id;
    c->state = CL_LOGIN;
    c->step = CS_STARTUP;
    list_init(&c->wait_node);
    msgbudget_claim_init(&c->msg_claim);
    list_init(&c->share_node);
    list_append(&w->clients, &c->node);
    w->n_clients++;
    c->over_limit = over;
    w->n_over_limit += over;
    conn_format_addr(sa, c->addr, sizeof(c->addr));
    netaddr_from_sockaddr(sa, &c->peer);
    c->on_unix_socket = sa->sa_family == AF_UNIX;
    make_cancel_key(c);
    if (!c->on_unix_socket)
        conn_tune_tcp(fd, &w->cfg->tcp);
    evutil_make_socket_nonblocking(fd);
    struct bufferevent *bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->login_timer = evtimer_new(w->base, login_timeout_cb, c);
    if (!bev || !c->login_timer) {
        if (bev)
            bufferevent_free(bev);
        else
            evutil_closesocket(fd);
        if (c->login_timer)
            event_free(c->login_timer);
        list_del(&c->node);
        w->n_clients--;
        w->n_over_limit -= over;
        free(c);
        return;
    }
    struct timeval tv = {over && w->cfg->login_timeout_s > CANCEL_SPARE_TIMEOUT_S
                             ? CANCEL_SPARE_TIMEOUT_S
                             : w->cfg->login_timeout_s,
                         0};
    evtimer_add(c->login_timer, &tv);
    client_attach_bev(c, bev);
}
