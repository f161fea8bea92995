/* server.c: one server connection's state machine: connect, TLS, login with the current
 * credential, applying a client's session parameters, relaying results, reset, close. */
#include "server.h"

#include <event2/buffer.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "conn.h"
#include "credentials.h"
#include "guard.h"
#include "log.h"
#include "maskwire.h"
#include "monotime.h"
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
#include "tls.h"

static void server_read_cb(struct bufferevent *bev, void *arg);
static bool server_take(void *arg, const uint8_t *p, size_t n);
static void server_write_cb(struct bufferevent *bev, void *arg);
static void server_event_cb(struct bufferevent *bev, short what, void *arg);

/* Server messages during login, SET and reset are small; bound them independently. */
#define SERVER_CONTROL_MAX (64 * 1024)

static void set_error(struct server *s, const char *sqlstate, const char *msg)
{
    snprintf(s->err_state, sizeof(s->err_state), "%s", sqlstate);
    snprintf(s->err_msg, sizeof(s->err_msg), "%s", msg);
}

/* An end of a client's statement put off until the message half relayed to it is whole. */
struct ending {
    int64_t since_ms;
    char sqlstate[6];
    char *msg, *logged;
};

static void ending_free(struct ending *e)
{
    if (!e)
        return;
    free(e->msg);
    free(e->logged);
    free(e);
}

static struct ending *ending_new(const char *sqlstate, const char *msg, const char *logged)
{
    struct ending *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->since_ms = monotime_ms();
    snprintf(e->sqlstate, sizeof(e->sqlstate), "%s", sqlstate);
    e->msg = strdup(msg);
    e->logged = strdup(logged);
    if (!e->msg || !e->logged) {
        ending_free(e);
        return NULL;
    }
    return e;
}

static void server_free(void *arg)
{
    struct server *s = arg;
    param_clear(&s->reported);
    param_clear(&s->applied);
    param_clear(&s->carried_before);
    scram_client_free(&s->scram);
    rq_free(&s->replies);
    ending_free(s->ending);
    maskwire_free(s);
    buf_free(&s->rls_applied);
    buf_free(&s->rls_pending);
    buf_free(&s->link_msgs);
    pipeline_server_unhomed(s); /* (server_close did; a client must never point here) */
    free(s);
}

/* The server a cancel connection carries a request for, if it still waits for it: found by
 * backend pid and key, as it may have been closed since. */
static struct server *cancel_target(const struct server *cancel)
{
    struct list *active = &cancel->pool->active;
    for (struct list *it = active->next; it != active; it = it->next) {
        struct server *t = list_entry(it, struct server, node);
        if (t->be_pid == cancel->cancel_pid && t->be_key == cancel->cancel_key &&
            t->cancels_pending > 0)
            return t;
    }
    return NULL;
}

static void reset_when_settled(struct server *s);

/* A cancel connection ended (delivered, or failed): its backend may serve others again, and
 * goes back to the pool if its client's transaction ended meanwhile. */
static void cancel_settled(struct server *cancel)
{
    struct server *t = cancel_target(cancel);
    struct client *c = t ? t->client : NULL;
    if (t && --t->cancels_pending == 0 && c) {
        client_transaction_done(c);
        client_reset_wait_over(c); /* (a read-back it started holds it still) */
        if (t->client == c)
            client_cancel_wait_over(c);
    } else if (t && t->cancels_pending == 0 && t->reset_held)
        reset_when_settled(t);
    if (cancel->cancel_requester) /* (0: lakeproxy's own, see cancel_unanswered) */
        client_cancel_delivered(cancel->pool->w, cancel->cancel_requester);
}

void server_close(struct server *s, const char *reason)
{
    if (s->closing)
        return;
    s->closing = true;
    pipeline_server_unhomed(s); /* no client is checked out to it again (freed later) */
    if (s->cancel_only)
        cancel_settled(s);
    if (!s->cancel_only)
        log_info("server %llu (%s): closing: %s", (unsigned long long)s->id, s->pool->db->name,
                 reason);
    list_del(&s->node);
    if (!s->cancel_only)
        s->pool->n_servers--;
    /* a client whose server was still being checked never knew it: it asks the pool again */
    struct client *unserved = s->state == SV_CHECKING ? s->client : NULL;
    struct client *cut = s->ending ? s->client : NULL; /* (waiting for the rest of a message) */
    if (s->client) {
        client_stmts_drop_closing(&s->client->stmts); /* their Closes' replies will not come */
        s->client->server = NULL;
        s->client = NULL;
    }
    if (s->timer)
        event_free(s->timer);
    s->timer = NULL;
    if (s->bev) {
        if (s->state != SV_CONNECTING) {
            struct buf b;
            buf_init(&b);
            proto_terminate(&b);
            conn_send_last(s->bev, &b);
            buf_free(&b);
        }
        conn_close_after_flush(s->bev);
        s->bev = NULL;
    }
    conn_defer(s->pool->w->base, server_free, s);
    /* a connection that was in use frees a slot for waiting clients (login failures are
     * handled by pool_server_failed, which retries with backoff) */
    if (!s->cancel_only && s->state != SV_CONNECTING)
        pool_spawn_for_waiters(s->pool);
    if (unserved && !unserved->closing)
        pool_request_again(unserved);
    if (cut && !cut->closing) /* (its end was put off: now it comes without a word) */
        client_close(cut, "its server was closed while a message to it was half relayed");
}

/* Login failed: report to the pool (which tells a waiting client) and close. */
static void login_failed(struct server *s, const char *sqlstate, const char *msg)
{
    struct pool *p = s->pool;
    char reason[320];
    snprintf(reason, sizeof(reason), "login failed: %s", msg);
    bool cancel = s->cancel_only;
    server_close(s, reason);
    if (!cancel)
        pool_server_failed(p, sqlstate, msg, s->cred_gen);
}

static void check_failed(struct server *s, const char *why);
static bool send_internal(struct server *s, const char *sql, enum server_state st);
static void readback_failed(struct server *s, const char *why);

/* s was lost, or stopped answering, while lakeproxy's own settings for its client ran
 * (SV_SETTING, or sending them): none of the client's messages went to it, so the client asks
 * the pool again, as after a failed liveness check. Once per checkout: a second server lost
 * that way (settings that end every server they reach, say) fails it, 08006 with client_msg. */
static void settings_lost(struct server *s, const char *why, const char *client_msg)
{
    struct client *c = s->client;
    server_close(s, why);
    if (!c || c->closing)
        return;
    if (c->settings_lost) {
        client_fail(c, "08006", client_msg);
        return;
    }
    c->settings_lost = true;
    pool_request_again(c);
}

/* lakeproxy's own query on s got no answer in time, and s is about to be closed. Its backend
 * may be waiting for a lock: it would not notice the closed connection, and would hold its
 * PostgreSQL connection slot, until the lock came free. A CancelRequest ends the wait. */
static void cancel_unanswered(struct server *s)
{
    if (s->be_pid && s->cancels_pending == 0 && !server_send_cancel(s, 0))
        log_warning("server %llu (%s): could not send a cancel request to backend %u",
                    (unsigned long long)s->id, s->pool->db->name, s->be_pid);
}

static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *s = arg;
    if (s->cancel_only && s->step == LS_CANCEL_SENT) { /* sent, not known to have arrived */
        struct server *t = cancel_target(s);
        if (t)
            t->cancel_adrift = true;
    }
    if (s->state == SV_CONNECTING) {
        login_failed(s, "08006", "timeout while connecting to the server");
    } else if (s->state == SV_CHECKING) {
        cancel_unanswered(s);
        check_failed(s, "no answer to the liveness check within pool.connect_timeout_ms");
    } else if (s->state == SV_READBACK) {
        cancel_unanswered(s);
        readback_failed(s, "no answer to the read-back of a client's settings within "
                           "pool.connect_timeout_ms");
    } else if (s->state == SV_SETTING) {
        cancel_unanswered(s);
        settings_lost(s,
                      "no answer to lakeproxy's session settings within "
                      "pool.connect_timeout_ms",
                      "the server did not answer lakeproxy's session settings within "
                      "pool.connect_timeout_ms");
    }
}

/* Starts s's timer of pool.connect_timeout_ms (connect_timeout_cb says what it ends). */
static void arm_connect_timeout(struct server *s)
{
    int ms = s->pool->db->pool.connect_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(s->timer, &tv);
}

/* Sends the StartupMessage, or for a cancel connection the CancelRequest. */
static void send_startup(struct server *s)
{
    struct buf b;
    buf_init(&b);
    if (s->cancel_only) { /* PostgreSQL closes the connection once it has signalled */
        proto_cancel_request(&b, s->cancel_pid, s->cancel_key);
        bool sent = conn_send(s->bev, &b);
        buf_free(&b);
        s->step = LS_CANCEL_SENT;
        if (sent)
            log_debug("cancel request sent to backend %u", s->cancel_pid);
        else
            server_close(s, "could not send the cancel request");
        return;
    }
    struct startup_param params[] = {
        {"user", s->pool->db->user},
        {"database", s->pool->db->dbname},
    };
    proto_startup(&b, params, 2);
    s->step = LS_AUTH;
    /* a plain socket stays plain from here on (see conn.h); its input is bounded by pausing it
     * (server_pump) */
    conn_read_direct(s->bev, 0, server_take);
    if (!conn_send(s->bev, &b))
        login_failed(s, "08006", "could not send the startup packet");
    buf_free(&b);
}

/* TCP is up: ask for TLS unless it is disabled. */
static void on_tcp_connected(struct server *s)
{
    evutil_socket_t fd = bufferevent_getfd(s->bev);
    conn_tune_tcp(fd, &s->pool->w->cfg->tcp);
    s->peer_len = sizeof(s->peer);
    if (getpeername(fd, (struct sockaddr *)&s->peer, &s->peer_len) != 0)
        s->peer_len = 0;
    if (s->pool->db->tls == TLS_DISABLE) {
        send_startup(s);
        return;
    }
    struct buf b;
    buf_init(&b);
    proto_ssl_request(&b);
    s->step = LS_SSL_REPLY;
    if (!conn_send(s->bev, &b))
        login_failed(s, "08006", "could not send SSLRequest");
    buf_free(&b);
}

/* Starts the TLS handshake after the server answered 'S': conn runs TLS on the socket from
 * here on (BEV_EVENT_CONNECTED once the handshake is done: send_startup). */
static void start_tls(struct server *s)
{
    const struct db_config *db = s->pool->db;
    SSL *ssl = tls_connect_ssl(s->pool->tls, db->tls, db->host);
    if (!ssl) {
        login_failed(s, "08006", "could not create a TLS session");
        return;
    }
    if (!conn_tls_connect(s->bev, ssl, 0, server_take)) {
        SSL_free(ssl);
        login_failed(s, "08006", "could not start TLS");
        return;
    }
    s->tls = true;
    s->step = LS_TLS;
}

/* The one-byte answer to SSLRequest. Extra bytes after 'S' would be injected plaintext. */
static void on_ssl_reply(struct server *s)
{
    struct evbuffer *in = conn_input(s->bev);
    uint8_t c;
    if (evbuffer_remove(in, &c, 1) != 1)
        return;
    if (c == 'S' && evbuffer_get_length(in) == 0) {
        start_tls(s);
    } else if (c == 'N' && s->pool->db->tls == TLS_PREFER) {
        send_startup(s);
    } else if (c == 'N') {
        login_failed(s, "08006", "the server does not support TLS but the database requires it");
    } else {
        login_failed(s, "08P01", "invalid answer to SSLRequest from the server");
    }
}

static bool send_sasl(struct server *s, const char *pw, const uint8_t *data, size_t len,
                      bool initial)
{
    struct buf b;
    char *out = NULL;
    const char *err = "SCRAM exchange failed";
    bool ok;
    if (initial) {
        ok = proto_sasl_offers(data, len, "SCRAM-SHA-256") &&
             scram_client_first(&s->scram, "", pw, NULL, &out);
        if (!ok)
            err = "the server offers no supported SASL mechanism";
    } else {
        ok = scram_client_final(&s->scram, (const char *)data, len, &out, &err);
    }
    if (!ok) {
        set_error(s, "08P01", err);
        return false;
    }
    buf_init(&b);
    if (initial)
        proto_sasl_initial(&b, "SCRAM-SHA-256", out, strlen(out));
    else
        proto_sasl_response(&b, out, strlen(out));
    ok = conn_send(s->bev, &b);
    buf_free(&b);
    free(out);
    return ok;
}

/* Answers one authentication request from the server with the current credential. */
static bool handle_auth(struct server *s, const uint8_t *body, size_t len)
{
    uint32_t code;
    const uint8_t *data;
    size_t dlen;
    const char *err = NULL;
    if (!proto_parse_auth(body, len, &code, &data, &dlen)) {
        set_error(s, "08P01", "invalid authentication message from the server");
        return false;
    }
    if (code == AUTH_REQ_OK && scram_client_unfinished(&s->scram)) { /* as libpq refuses it */
        set_error(s, "08P01",
                  "the server ended SCRAM authentication without proving it knows the password "
                  "(no valid server signature)");
        return false;
    }
    if (code == AUTH_REQ_OK) {
        s->step = LS_PARAMS;
        return true;
    }
    const char *pw = credentials_current(s->pool->w, s->pool->db, &s->cred_gen);
    bool wants_pw = code == AUTH_REQ_CLEARTEXT || code == AUTH_REQ_MD5 || code == AUTH_REQ_SASL;
    if (!pw && wants_pw && s->pool->db->cred.provider != CRED_STATIC) {
        /* the token expired while its refresh is late: not the server's refusal; the pool
         * retries once the credential module has a token again */
        set_error(s, "08006",
                  "no valid credential at login time (the token expired before "
                  "its refresh arrived)");
        return false;
    }
    if (!pw && wants_pw) {
        set_error(s, "28P01", "the server asked for a password and none is configured");
        return false;
    }
    struct buf b;
    buf_init(&b);
    bool ok = true;
    switch (code) {
    case AUTH_REQ_CLEARTEXT:
        if (!s->tls && s->pool->db->cred.provider != CRED_STATIC) { /* tls: prefer, stripped by
                                                                       someone in the middle */
            set_error(s, "28000",
                      "the server asked for the credential token in clear text over a "
                      "connection without TLS: not sent (set the database's tls: require or "
                      "verify-full)");
            ok = false;
            break;
        }
        proto_password(&b, pw);
        ok = conn_send(s->bev, &b);
        break;
    case AUTH_REQ_MD5: {
        char resp[36];
        if (dlen != 4) {
            set_error(s, "08P01", "invalid md5 salt from the server");
            ok = false;
            break;
        }
        md5_password_response(s->pool->db->user, pw, data, resp);
        proto_password(&b, resp);
        ok = conn_send(s->bev, &b);
        break;
    }
    case AUTH_REQ_SASL:
    case AUTH_REQ_SASL_CONTINUE: ok = send_sasl(s, pw, data, dlen, code == AUTH_REQ_SASL); break;
    case AUTH_REQ_SASL_FINAL:
        ok = scram_client_verify(&s->scram, (const char *)data, dlen, &err);
        if (!ok)
            set_error(s, "08P01", err ? err : "server signature mismatch");
        break;
    default:
        set_error(s, "08P01", "the server asked for an unsupported authentication method");
        ok = false;
    }
    buf_secure_free(&b);
    return ok;
}

/* Records the ParameterStatus in body. */
static void note_param(struct server *s, const uint8_t *body, size_t len)
{
    const char *name, *value;
    if (proto_parse_param_status(body, len, &name, &value))
        param_put(&s->reported, name, value);
}

/* Records the first ErrorResponse of a login, SET or reset. */
static void note_error(struct server *s, const uint8_t *body, size_t len)
{
    struct pg_error e;
    if (s->err_state[0])
        return;
    if (proto_parse_error(body, len, &e))
        set_error(s, e.sqlstate, e.message);
    else
        set_error(s, "08P01", "invalid ErrorResponse from the server");
}

static enum relay_verdict login_inspect(void *arg, uint8_t type, uint32_t len, const uint8_t *body)
{
    struct server *s = arg;
    if (!body)
        return strchr("RSKENvZ", type) && type ? RV_NEED_BODY : RV_ERROR;
    switch (type) {
    case 'R': return handle_auth(s, body, len) ? RV_DROP : RV_DROP_STOP;
    case 'S': note_param(s, body, len); return RV_DROP;
    case 'K':
        return proto_parse_backend_key(body, len, &s->be_pid, &s->be_key) ? RV_DROP : RV_ERROR;
    case 'E': note_error(s, body, len); return RV_DROP_STOP;
    case 'Z': return proto_parse_ready(body, len, &s->txn) ? RV_DROP_STOP : RV_ERROR;
    default: /* 'N' notices, 'v' protocol negotiation */ return RV_DROP;
    }
}

static void on_login_data(struct server *s)
{
    const char *err;
    struct evbuffer *in = conn_input(s->bev);
    enum relay_result r =
        relay_pump(in, NULL, &s->relay, SERVER_CONTROL_MAX, login_inspect, s, &err);
    if (r == RELAY_FAILED) {
        login_failed(s, "08P01", err ? err : "protocol violation from the server");
    } else if (r == RELAY_STOPPED && s->err_state[0]) {
        login_failed(s, s->err_state, s->err_msg);
    } else if (r == RELAY_STOPPED) {
        event_del(s->timer);
        s->created = s->last_used = time(NULL);
        s->created_ms = server_now_ms();
        s->jitter_permille = (int)arc4random_uniform(201);
        const struct credential *cr = credentials_find(s->pool->w, s->pool->db->name);
        log_info("server %llu (%s): logged in as %s, backend pid %u%s%s%s",
                 (unsigned long long)s->id, s->pool->db->name, s->pool->db->user, s->be_pid,
                 s->tls ? ", TLS" : "", cr ? ", token " : "", cr ? cr->fingerprint : "");
        pool_server_logged_in(s);
    }
}

/* What a server reads of the replies owed to a client that left before it is closed instead
 * (drain_behind_client). */
#define DRAIN_MAX ((size_t)16 << 20)

bool server_may_hold_reset(const struct server *s)
{
    return (s->carried & s->carried_reset) != 0;
}

/* Session pooling: the server stays with its client from login to logout. */
static bool server_stays_with_client(const struct server *s)
{
    return !pool_mode_of(s->pool)->shares_servers;
}

/* Session pooling: a notification that came while the proxy's own query ran belongs to the
 * client (its LISTEN): it goes on to it. False when it could not be written. */
static bool forward_notification(struct server *s, uint32_t len, const uint8_t *body)
{
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, 'A');
    buf_put_bytes(&b, body, len);
    buf_msg_finish(&b);
    bool ok = conn_send(s->client->bev, &b);
    buf_free(&b);
    return ok;
}

/* Consumes the results of a query the proxy sent itself: the settings of a link (SET), a
 * reset (DISCARD ALL), a liveness check, a read-back of settings and its second round. */
static enum relay_verdict internal_inspect(void *arg, uint8_t type, uint32_t len,
                                           const uint8_t *body)
{
    struct server *s = arg;
    bool reading = s->state == SV_READBACK && type == 'D' && !s->restoring;
    if (type == 'G' || type == 'W') /* a copy-in (of a client's statement left to drain) would
                                       wait for data nobody sends */
        return RV_ERROR;
    if (s->draining_left && !body && (s->drain_bytes += len) > DRAIN_MAX) {
        s->internal_fail = "the results of a departed client's statements exceed 16 MiB";
        return RV_ERROR; /* a large result nobody reads: not worth reading */
    }
    bool notification = type == 'A' && s->client && server_stays_with_client(s);
    bool resetting = s->state == SV_RESETTING && !s->reset_held; /* (DISCARD ALL sent) */
    bool needs_body =
        (strchr("ESZ", type) && type) || reading || notification || (resetting && type == 'C');
    if (!body && needs_body && len > SERVER_CONTROL_MAX) {
        s->internal_fail = s->draining_left
                               ? "a status or error message of a departed client's statements "
                                 "exceeds 64 KiB"
                               : "a reply to the proxy's own query exceeds 64 KiB";
        return RV_ERROR;
    }
    if (!body) /* what is not read is dropped as it arrives, whatever its size (a large row of
                  a departed client's result) */
        return needs_body ? RV_NEED_BODY : RV_STREAM;
    s->readies += type == 'Z'; /* (progress: server_left_waiting) */
    if (reading) {
        struct client *c = s->client;
        bool to_startup = false;
        uint32_t bit =
            c ? params_take_readback(body, len, s->carried, s->carried_reset, &c->at_startup,
                                     &c->wanted, &s->applied, &to_startup)
              : 0;
        if (!bit)
            snprintf(s->err_state, sizeof(s->err_state), "08P01"); /* not an answer */
        s->carried &= ~bit;
        if (to_startup) {
            s->carried_restored |= bit;
            c->reset_blind &= ~bit; /* (c: a bit came) */
        }
    } else if (notification && !forward_notification(s, len, body)) {
        s->internal_fail = "could not pass a notification on to the client";
        return RV_ERROR;
    } else if (type == 'E')
        note_error(s, body, len);
    else if (type == 'S')
        note_param(s, body, len);
    else if (type == 'C' && resetting)
        s->reset_answered = len == sizeof("DISCARD ALL") && memcmp(body, "DISCARD ALL", len) == 0;
    else if (type == 'Z' && !proto_parse_ready(body, len, &s->txn))
        return RV_ERROR;
    else if (type == 'Z' && s->internal_pending > 1) {
        s->internal_pending--;        /* more of the proxy's own messages to come */
        s->reset_answered = false;    /* (the next ReadyForQuery's own) */
        if (s->state == SV_RESETTING) /* a reset is judged by its own end, not what ran before */
            s->err_state[0] = '\0';
    } else if (type == 'Z' && resetting && !s->reset_answered) {
        /* the last answer owed is not DISCARD ALL's: the replies owed to the client that left
         * were miscounted, and what comes next would go to the next client */
        s->internal_fail = "the reset's last answer was not DISCARD ALL's (replies miscounted)";
        return RV_ERROR;
    } else if (type == 'Z')
        return s->internal_pending = 0, RV_DROP_STOP;
    return RV_DROP;
}

/* The proxy's own SET finished: go on relaying, or fail the client's login. */
static void on_set_done(struct server *s)
{
    struct client *c = s->client;
    event_del(s->timer);
    if (s->err_state[0]) {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s", s->err_msg);
        char state[6];
        snprintf(state, sizeof(state), "%s", s->err_state);
        s->err_state[0] = '\0';
        s->state = SV_ACTIVE; /* the SET rolled back: the connection itself is fine */
        server_unlink(s);
        /* the server's message may quote the value: the client gets it, the log does not */
        client_fail_as(c, state, msg,
                       "the server refused the client's session parameters (its message, "
                       "which may quote a value, went to the client only)");
        return;
    }
    param_clear(&s->applied);
    for (size_t i = 0; i < c->wanted.n; i++)
        param_put(&s->applied, c->wanted.items[i].name, c->wanted.items[i].value);
    if (c->rls && s->rls_pending.len) { /* the settings this server now carries */
        buf_reset(&s->rls_applied);
        buf_put_bytes(&s->rls_applied, s->rls_pending.data, s->rls_pending.len);
    }
    s->state = SV_ACTIVE;
    client_server_ready(c);
}

/* The liveness check failed: the server goes (and its client asks the pool again). */
static void check_failed(struct server *s, const char *why)
{
    server_close(s, why);
}

/* The long-idle server answered: it serves its client now. */
static void on_check_done(struct server *s)
{
    struct client *c = s->client;
    if (s->err_state[0] || s->txn != 'I' || !c) {
        check_failed(s, "the liveness check failed");
        return;
    }
    event_del(s->timer);
    s->client = NULL;
    c->server = NULL;
    s->state = SV_ACTIVE;
    server_link(s, c);
}

void server_check_then_link(struct server *s, struct client *c)
{
    s->client = c;
    c->server = s;
    if (!send_internal(s, ";", SV_CHECKING)) {
        check_failed(s, "could not send the liveness check");
        return;
    }
    arm_connect_timeout(s);
}

static const char *retire_reason(const struct server *s);
static const char *retire_reason_with(const struct server *s, bool owed_counts);

static void on_reset_done(struct server *s)
{
    if (s->reset_held) { /* the departed client's replies are in: the reset waits for its cancel */
        if (s->cancels_pending == 0)
            reset_when_settled(s);
        return;
    }
    s->draining_left = false;
    if (s->err_state[0] || s->txn != 'I') {
        server_close(s, "reset failed");
        return;
    }
    param_clear(&s->applied);
    s->rls_set = s->retire_after = false; /* DISCARD ALL reset the role and every setting */
    buf_reset(&s->rls_applied);
    server_stmts_clear(&s->stmts); /* ... and dropped every prepared statement */
    s->last_used = time(NULL);
    const char *retire = retire_reason(s); /* a reload (or lifetime, a lower pool.size) while it
                                              reset, or drained a client's statements */
    if (retire) {
        server_close(s, retire);
        return;
    }
    pool_server_ready(s);
}

/* The read-back could not finish: the server goes (what it holds is unknown), and its client,
 * whose transaction was over, goes on with the settings as carried: its next transaction takes
 * another server. In session pooling the client's session went with the server (its
 * temporary tables, prepared statements, ...): it fails, as at any loss of its server. */
static void readback_failed(struct server *s, const char *why)
{
    struct client *c = s->client;
    bool session = server_stays_with_client(s);
    server_close(s, why);
    if (c && c->w->draining)
        client_fail(c, "57P01", "lakeproxy is shutting down");
    else if (c && session)
        client_fail(c, "08006",
                    "server connection lost while lakeproxy read back the client's settings");
    else if (c)
        client_server_gone_idle(c);
}

/* Did the read-back end in an ErrorResponse of the server's own (not a malformed answer, which
 * is marked 08P01)? The client's own statement_timeout or lock_timeout can cut it short. */
static bool readback_cut(const struct server *s)
{
    return s->err_state[0] && strcmp(s->err_state, "08P01") != 0;
}

/* The read-back found settings RESET to the client's startup values (which the server does
 * not hold: it RESETs to its own): the client is told them, as the server told it of its own
 * defaults, and a server that stays with the client (session pooling) sets them again, in a
 * second round of the read-back. False when that round was sent, or the client or server
 * failed. */
static bool restore_startup_values(struct server *s, struct client *c)
{
    struct buf status, sql;
    struct param_set to_set = {0};
    uint32_t mask = s->carried_restored;
    s->carried_restored = 0;
    buf_init(&status);
    buf_init(&sql);
    bool ok = params_restored_msgs(mask, &c->wanted, &s->reported, &status, &to_set);
    ok = ok && conn_send(c->bev, &status);
    bool again =
        ok && server_stays_with_client(s) &&
        params_build_sync_sql(&to_set, &(struct param_set){0}, &(struct param_set){0}, &sql);
    for (size_t i = 0; again && i < to_set.n; i++) /* (a failed SET closes the server:
                                                      on_readback_done) */
        ok = ok && param_put(&s->applied, to_set.items[i].name, to_set.items[i].value);
    if (again && ok)
        ok = !sql.failed && send_internal(s, (const char *)sql.data, SV_READBACK);
    s->restoring = again && ok;
    buf_free(&status);
    buf_free(&sql);
    param_clear(&to_set);
    if (!ok)
        readback_failed(s, "could not set a client's startup values again after its RESET");
    return ok && !again;
}

/* The settings carried in the client's transaction are read back, and the server goes back to
 * the pool as at the end of any transaction (session pooling: goes on serving its client):
 * what the client sent meanwhile takes a server as a next transaction does (a draining proxy
 * refuses it, a reload is seen), and a cancel that came meanwhile goes to it. A read cut short
 * by an error leaves those settings unknown on the server instead (the next link sets them
 * again) and the client with them as it sent them; the server stays, its transaction rolled
 * back. The second round (restore_startup_values) failing closes the server: the client was
 * told of values the server would not hold. */
static void on_readback_done(struct server *s)
{
    struct client *c = s->client;
    bool second_round = s->restoring;
    s->restoring = false;
    if (second_round && s->err_state[0]) {
        readback_failed(s, "setting a client's startup values again after its RESET failed");
        return;
    }
    if (c && readback_cut(s) && (s->txn == 'I' || s->txn == 'E')) {
        log_debug("server %llu: the read-back of a client's settings failed (%s); they are "
                  "set again at the next link",
                  (unsigned long long)s->id, s->err_state);
        params_mark_unknown_of(&s->applied, s->carried);
        s->carried = 0;
        if (s->txn == 'E') { /* its transaction block failed: rolled back first */
            if (!send_internal(s, "ROLLBACK", SV_READBACK))
                readback_failed(s, "could not roll back a failed read-back");
            return;
        }
        s->err_state[0] = '\0';
    }
    if (s->err_state[0] || s->txn != 'I' || s->carried || !c) {
        readback_failed(s, "reading back the settings a client changed failed");
        return;
    }
    if (s->carried_restored && !restore_startup_values(s, c))
        return;
    event_del(s->timer);
    s->state = SV_ACTIVE;
    s->carried_reset = 0;
    client_transaction_done(c);
    if (c->server == s) { /* still its server: a large message ahead is read whole with it, or
                             the pool gave it back at once, or session pooling */
        client_reset_wait_over(c);
        client_pump(c);
        client_send_wanted_cancel_soon(c);
    }
}

bool server_read_back(struct server *s)
{
    if (!s->carried)
        return false;
    s->unnamed_of = 0; /* a simple Query drops the unnamed statement */
    struct buf sql;
    buf_init(&sql);
    bool ok = params_build_readback_sql(s->carried, &sql) && !sql.failed &&
              send_internal(s, (const char *)sql.data, SV_READBACK);
    buf_free(&sql);
    if (!ok) {
        readback_failed(s, "could not send the read-back of a client's settings");
        return true;
    }
    /* a server that stopped answering would hold the client's next transaction */
    arm_connect_timeout(s);
    return true;
}

static void on_internal_data(struct server *s)
{
    const char *err;
    struct evbuffer *in = conn_input(s->bev);
    s->internal_fail = NULL;
    enum relay_result r = relay_pump(in, NULL, &s->relay, SIZE_MAX, internal_inspect, s, &err);
    if (r == RELAY_FAILED && s->internal_fail)
        err = s->internal_fail;
    if (r == RELAY_FAILED && s->state == SV_READBACK) { /* its client's transaction was over */
        readback_failed(s, err ? err : "protocol violation");
    } else if (r == RELAY_FAILED) {
        struct client *c = s->client;
        server_close(s, err ? err : "protocol violation");
        if (c)
            client_fail(c, "08P01", "protocol violation from the server");
    } else if (r == RELAY_STOPPED) {
        if (s->state == SV_SETTING)
            on_set_done(s);
        else if (s->state == SV_CHECKING)
            on_check_done(s);
        else if (s->state == SV_READBACK)
            on_readback_done(s);
        else
            on_reset_done(s);
    }
}

/* Moves s to state st, to consume (internal_inspect) what comes up to `replies`
 * ReadyForQuery: the proxy's own queries' results, or a departed client's (hold_reset). */
static void await_internal(struct server *s, int replies, enum server_state st)
{
    s->unnamed_of = 0; /* a simple Query drops the unnamed statement */
    s->err_state[0] = '\0';
    s->reset_answered = false;
    s->state = st;
    s->internal_pending = replies;
}

/* Sends messages of the proxy's own that end in `replies` ReadyForQuery, and moves to
 * state st to consume their results. */
static bool send_internal_msgs(struct server *s, struct buf *b, int replies, enum server_state st)
{
    await_internal(s, replies, st);
    return conn_send(s->bev, b);
}

/* Sends a query of the proxy's own and moves to state st to consume its results. */
static bool send_internal(struct server *s, const char *sql, enum server_state st)
{
    struct buf b;
    buf_init(&b);
    proto_query(&b, sql);
    bool ok = send_internal_msgs(s, &b, 1, st);
    buf_free(&b);
    return ok;
}

/* Might the server's report of setting canon at value come of a RESET (SET ... TO DEFAULT,
 * RESET ALL, DISCARD ALL) by client c? PostgreSQL returns c to its startup value, and the
 * server, where lakeproxy SET that value, to the server's own: a value at the server's default
 * that is not c's startup value. A SET to the server's default reads the same: the read-back
 * tells them apart. */
static bool may_be_reset_from_startup(const struct server *s, const struct client *c,
                                      const char *canon, const char *value)
{
    const char *startup = param_get(&c->at_startup, canon);
    if (!startup)
        return false;
    const char *server_default = param_get(&s->pool->params, canon);
    char spelt[64];
    return (!server_default || strcmp(value, server_default) == 0) &&
           strcmp(paramval_report(canon, startup, value, spelt, sizeof(spelt)), value) != 0;
}

/* A client changed a tracked setting (SET application_name ...): it follows the client to
 * every server that serves it, and this server now carries it. One that may have been a RESET
 * of a startup value is read back when the transaction ends. */
static void note_client_setting(struct server *s, const uint8_t *body, size_t len)
{
    const char *name, *value, *canon;
    struct client *c = s->client;
    if (!c || !proto_parse_param_status(body, len, &name, &value) ||
        !(canon = params_settable_name(name)))
        return;
    param_put(&c->wanted, canon, value);
    param_put(&s->applied, canon, value);
    uint32_t bit = params_settable_bit(canon);
    if (may_be_reset_from_startup(s, c, canon, value)) {
        s->carried |= bit;
        s->carried_reset |= bit;
        c->reset_blind |= bit;
    } else {
        c->reset_blind &= ~bit;
    }
    pipeline_setting_changed(s, canon);
}

/* An ErrorResponse while refused statements await theirs: the stand-in's is rewritten. */
static enum relay_verdict on_error_with_refusals(struct server *s, const struct pool_mode_ops *mode,
                                                 uint32_t len, const uint8_t *body)
{
    enum relay_verdict v = mode->server_msg(s, 'E', len, body);
    if (v == RV_STREAM)
        v = RV_PASS;
    return v == RV_PASS && policy_rewrite_error(s, body, len) ? RV_DROP : v;
}

/* For a client under row-level security, has the server just reported a setting that makes
 * it read query text otherwise than the guard (standard_conforming_strings off, a client-only
 * encoding)? The guard refuses every way it knows to get there; this catches any other. */
static bool rls_text_unsafe(struct server *s)
{
    s->text_unsafe =
        s->client && client_under_policy(s->client) && !params_text_readable(&s->reported);
    return s->text_unsafe;
}

void server_mark_unsure(struct server *s, const char *why)
{
    if (!s->unsure)
        log_info("server %llu (%s): the replies owed cannot be counted (%s): it stays with its "
                 "client and is closed when the client leaves",
                 (unsigned long long)s->id, s->pool->db->name, why);
    s->unsure = true;
}

/* The CopyDone count at which the message that started a COPY was sent: the front entry's
 * (a Query, or in transaction mode the Execute) or, in session mode, where Executes are not
 * queued and the front is the first Sync after the COPY's (or nothing), the count of the next
 * Execute to end. False when unknown. */
static bool copy_start_count(struct server *s, const struct reply *f, uint32_t *k)
{
    if (f && f->kind != RK_SYNC) {
        *k = f->copy_dones;
        return f->kind == RK_EXECUTE || f->kind == RK_QUERY;
    }
    return rq_next_execute_copy_dones(&s->replies, k);
}

/* CopyInResponse: a server in copy-in ignores the Syncs the client sent after the message
 * that started the COPY and before its CopyDone; no ReadyForQuery will answer them. They are
 * those sent at the COPY's CopyDone count (copy_start_count); the Syncs sent before the COPY
 * have been answered. (The front Sync was taken as ignored whatever its count: a Sync sent
 * after the CopyDone and after more Executes, in one write, was dropped and the replies owed
 * miscounted.) */
static void copy_in_started(struct server *s)
{
    const struct reply *f = rq_front(&s->replies);
    s->copy_active = true;
    s->copy_assumed = 0;
    uint32_t k;
    if (!copy_start_count(s, f, &k)) {
        server_mark_unsure(s, "a CopyInResponse to no COPY followed"); /* wrong somewhere */
        k = f ? f->copy_dones : s->replies.copy_dones;
    }
    s->copy_in = s->replies.copy_dones == k;
    if (!f)
        return;
    size_t dropped = 0;
    for (; f && f->kind == RK_SYNC && f->copy_dones == k; f = rq_front(&s->replies)) {
        rq_pop(&s->replies);
        dropped++;
    }
    if (f)
        dropped += rq_drop_copy_syncs(&s->replies, k);
    s->in_flight -= dropped < (size_t)s->in_flight ? (int)dropped : s->in_flight;
    s->copy_assumed = (uint32_t)dropped;
}

/* The COPY ended (its CommandComplete or ErrorResponse). An error ends copy-in at a point of
 * the client's stream the proxy cannot know (bad data in any CopyData, a cancel, a timeout):
 * Syncs taken as ignored may have been answered, so the count of replies owed is unsure and
 * the server serves no other client (it is closed when this one leaves). */
static void copy_ended(struct server *s, uint8_t type)
{
    s->copy_active = false;
    if (type == 'E') {
        s->copy_in = false; /* the server answers the client's Syncs again */
        if (s->copy_assumed > 0)
            server_mark_unsure(s, "an error ended COPY FROM STDIN after Syncs sent during it");
    }
}

bool server_sync_ignored(struct server *s)
{
    if (!s->copy_in)
        return false;
    s->copy_assumed++;
    return true;
}

void server_copy_done_sent(struct server *s)
{
    s->replies.copy_dones++;
    s->copy_in = false;
}

/* May a server send a message of type unasked, idle or busy: an error (a terminated backend's
 * FATAL), a notice, a notification or a parameter report? */
static bool server_msg_unasked(uint8_t type)
{
    return type == 'E' || type == 'N' || type == 'A' || type == 'S';
}

/* Is the server's message of type one that answers nothing its client sent: a message of a
 * login (an authentication request, BackendKeyData, NegotiateProtocolVersion) after it, or a
 * reply while nothing is owed (no Query, Sync or FunctionCall unanswered, no extended batch
 * open, no copy going on)? Only an error (a terminated backend's FATAL), a notice, a
 * notification or a parameter report comes unasked. Passed on, a forged or garbled one would
 * shift every later answer onto the wrong statement, or hand the client a password request or
 * another cancel key (red team 28). Unless the count is already known to be unsure. */
static bool server_msg_unowed(const struct server *s, uint8_t type)
{
    if (type == 'R' || type == 'K' || type == 'v') /* (tests, not memchr: every message) */
        return true;
    if (server_msg_unasked(type))
        return false;
    return s->in_flight == 0 && !s->ext_open && !s->copy_active && !s->unsure;
}

static enum relay_verdict active_verdict(struct server *s, uint8_t type, uint32_t len,
                                         const uint8_t *body)
{
    const struct pool_mode_ops *mode = pool_mode_of(s->pool);
    if (server_msg_unowed(s, type)) {
        log_warning("server %llu (%s): a message (type %u) that answers nothing the client "
                    "sent: closing it",
                    (unsigned long long)s->id, s->pool->db->name, (unsigned)type);
        return RV_ERROR;
    }
    if (s->client && s->client->mask.n_applied > 0) {
        enum relay_verdict mv = maskwire_server_msg(s, type, len, body);
        if (mv != RV_STREAM)
            return mv;
    }
    if (type == 'E' && s->n_refusals > 0)
        return body ? on_error_with_refusals(s, mode, len, body) : RV_NEED_BODY;
    if (type == 'G' && !body)
        copy_in_started(s);
    else if (s->copy_active && (type == 'C' || type == 'E'))
        copy_ended(s, type);
    if (type != 'Z' && type != 'S')
        return mode->server_msg(s, type, len, body);
    if (!body)
        return len <= SERVER_CONTROL_MAX ? RV_NEED_BODY : RV_ERROR;
    if (type == 'S') {
        note_param(s, body, len);
        note_client_setting(s, body, len);
        return rls_text_unsafe(s) ? RV_ERROR : RV_PASS;
    }
    if (!proto_parse_ready(body, len, &s->txn))
        return RV_ERROR;
    if (s->carried_open_zs > 0)
        s->carried_open_zs--;
    if (s->txn == 'I' && s->carried_open_zs == 0) /* what was carried is over: PostgreSQL kept
                                                     it or not */
        s->carried_open = 0;
    if (s->in_flight > 0)
        s->in_flight--;
    s->readies++;
    s->pool->stats.queries++;
    s->pool->stats.xacts += s->txn == 'I';
    bool fakes_follow = mode->ready(s);
    /* Transaction pooling: release at ReadyForQuery 'I' only; 'T' and 'E' keep the server.
     * A draining proxy stops there in session mode too, to let the client go, and so does a
     * setting that may have been RESET, to be read back (client_transaction_done). */
    bool txn_over = s->txn == 'I' && s->in_flight == 0 && !s->ext_open && !s->unsure;
    bool stop =
        txn_over && (mode->shares_servers || s->pool->w->draining || server_may_hold_reset(s));
    if (fakes_follow) {
        if (!pipeline_forward_then_fakes(s, type, len, body))
            return RV_ERROR;
        return stop ? RV_DROP_STOP : RV_DROP;
    }
    return stop ? RV_PASS_STOP : RV_PASS;
}

/* The put-off end, at the start of the message after the one that was half relayed. */
static void end_after_message(struct server *s, struct client *c)
{
    struct ending *e = s->ending;
    s->ending = NULL;
    client_fail_as(c, e->sqlstate, e->msg, e->logged);
    ending_free(e);
}

/* The verdict on one server message for the client, and the client's statistics of it: they
 * see each message once (a body call, or a header call that streams it), with the body of
 * CommandComplete, ErrorResponse and ReadyForQuery. */
static enum relay_verdict active_inspect(void *arg, uint8_t type, uint32_t len, const uint8_t *body)
{
    struct server *s = arg;
    struct client *c = s->client;
    if (s->ending) /* (the message that was half relayed is whole) */
        return RV_ERROR;
    /* (a CommandComplete or ErrorResponse too big to hold streams past without its body) */
    if (!body && c && qtrack_wants_server_body(c, type) && len <= SERVER_CONTROL_MAX)
        return RV_NEED_BODY;
    enum relay_verdict v = active_verdict(s, type, len, body);
    if (body && c && c->mask.n_applied > 0 && (type == 'E' || type == 'N') &&
        (v == RV_STREAM || v == RV_PASS) && maskwire_strip_detail(s, body, len, type))
        v = RV_DROP;
    if (c && v != RV_NEED_BODY && v != RV_ERROR && v != RV_WAIT && (body || v == RV_STREAM)) {
        if (type == 'C' || type == 'I' || type == 's') /* (each message once, here) */
            rq_execute_done(&s->replies);
        if (c->qt) /* (without a tracker, statistics off, it has nothing to do: no call) */
            qtrack_server_msg(c, type, len, body);
    }
    return v;
}

/* Can the server's messages go to its client now? */
static bool server_can_pump(const struct server *s)
{
    return s->client && s->state == SV_ACTIVE;
}

/* Relays the server's messages to its client: first those of p[0..n), a read not yet in the
 * input (when p), then the input's. */
static void server_relay(struct server *s, const uint8_t *p, size_t n)
{
    struct client *c = s->client;
    const char *err;
    struct evbuffer *in = conn_input(s->bev);
    struct evbuffer *out = conn_output(c->bev);
    int fd = conn_plain_fd(c->bev);
    enum relay_result r;
    do { /* full, then flushed to below the mark: no write callback would wake us, go on */
        r = p ? relay_pump_span(in, p, n, out, fd, &s->relay, SIZE_MAX, active_inspect, s, &err)
              : relay_pump_to(in, out, fd, &s->relay, SIZE_MAX, active_inspect, s, &err);
        p = NULL; /* all of it consumed or in the input now */
        maskwire_flush(s);
        conn_flush(c->bev);
    } while (r == RELAY_FULL && evbuffer_get_length(out) <= RELAY_HIGH_WATER && s->client == c);
    qtrack_settle(c); /* (after the replies went out) */
    if (c->queue_wait && s->client == c && s->replies.len <= REPLY_QUEUE_MAX / 2)
        client_queue_room(c);
    if (s->ending && (r == RELAY_FAILED || s->relay.pass_left == 0)) {
        end_after_message(s, c); /* (the message half relayed is whole: now, not at the next) */
        return;
    }
    if (r == RELAY_FULL && !s->paused) {
        s->paused = true;
        bufferevent_disable(s->bev, EV_READ);
    } else if (r == RELAY_WAIT) {
        bufferevent_disable(s->bev, EV_READ); /* until the masking catalog is read */
    } else if (r == RELAY_STOPPED) {
        client_transaction_done(c);
    } else if (r == RELAY_FAILED && s->err_state[0]) { /* masking refused a result */
        char state[6], msg[256];
        snprintf(state, sizeof(state), "%s", s->err_state);
        snprintf(msg, sizeof(msg), "%s", s->err_msg);
        server_close(s, "masking refused a result");
        client_fail(c, state, msg);
    } else if (r == RELAY_FAILED && s->text_unsafe) {
        server_close(s, "standard_conforming_strings or client_encoding changed under a guard");
        client_fail(c, "42501",
                    "the server now reads query text otherwise than lakeproxy's "
                    "row-level-security or masking guard "
                    "(standard_conforming_strings or client_encoding changed): "
                    "connection closed");
    } else if (r == RELAY_FAILED && err == relay_out_of_memory) {
        server_close(s, err);
        client_relay_out_of_memory(c);
    } else if (r == RELAY_FAILED) {
        server_close(s, err ? err : "protocol violation");
        client_fail(c, "08P01", "protocol violation from the server");
    }
    if (r != RELAY_FAILED && c->reset_wait) /* (after client_transaction_done's read-back) */
        client_reset_wait_over(c);
    if (r != RELAY_FAILED && c->stmt_wait)
        client_stmt_wait_over(c);
}

void server_pump(struct server *s)
{
    if (server_can_pump(s))
        server_relay(s, NULL, 0);
}

/* server_read_cb's fast path (conn_take_fn): an active server's read is relayed from where it
 * was read. */
static bool server_take(void *arg, const uint8_t *p, size_t n)
{
    struct server *s = arg;
    if (!server_can_pump(s))
        return false;
    server_relay(s, p, n);
    return true;
}

/* An idle server speaks only to say it is going away (an ErrorResponse), or with a late
 * ParameterStatus, a notice or a notification. Anything else (rows, a ReadyForQuery) would be
 * a reply nobody owes: a miscount, and the server must not serve anyone. */
static enum relay_verdict idle_inspect(void *arg, uint8_t type, uint32_t len, const uint8_t *body)
{
    if (!server_msg_unasked(type))
        return RV_ERROR;
    return internal_inspect(arg, type, len, body);
}

/* Drops what an idle server's input holds (late notices, notifications, parameters); closes
 * it on anything else. A message cut by a read's end stays until its rest comes. */
static void drop_idle_input(struct server *s)
{
    const char *err;
    struct evbuffer *in = conn_input(s->bev);
    enum relay_result r =
        relay_pump(in, NULL, &s->relay, SERVER_CONTROL_MAX, idle_inspect, s, &err);
    if (r == RELAY_FAILED || s->err_state[0])
        server_close(s, s->err_state[0] ? s->err_msg : "unexpected data while idle");
}

static void on_idle_data(struct server *s)
{
    drop_idle_input(s);
    if (!s->closing && !server_input_pending(s))
        pool_server_ready(s); /* one passed over while a message was cut: waiters may take it */
}

bool server_ready_to_serve(struct server *s)
{
    if (!server_input_pending(s)) /* (nothing to drop: the input stays empty, no second look) */
        return !s->closing;
    drop_idle_input(s);
    return !s->closing && !server_input_pending(s);
}

static void server_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct server *s = arg;
    switch (s->state) {
    case SV_CONNECTING:
        if (s->step == LS_CANCEL_SENT) /* PostgreSQL sends nothing: closing is the answer */
            server_close(s, "cancel request delivered");
        else if (s->step == LS_SSL_REPLY)
            on_ssl_reply(s);
        else if (s->step == LS_AUTH || s->step == LS_PARAMS)
            on_login_data(s);
        break;
    case SV_SETTING:
    case SV_RESETTING:
    case SV_CHECKING:
    case SV_READBACK: on_internal_data(s); break;
    case SV_ACTIVE: server_pump(s); break;
    case SV_IDLE: on_idle_data(s); break;
    }
}

/* Output towards the server drained: let the client send more. */
static void server_write_cb(struct bufferevent *bev, void *arg)
{
    struct server *s = arg;
    conn_write_done(bev);
    struct client *c = s->client;
    if (c && c->paused) {
        c->paused = false;
        bufferevent_enable(c->bev, EV_READ);
        client_pump(c);
    }
}

enum server_loss {
    LOSS_FATAL,       /* the client cannot go on: FATAL error, then closed */
    LOSS_STATEMENT,   /* only the statement in flight fails; the client goes on */
    LOSS_MID_MESSAGE, /* the client got part of a message: closed without a word */
};

/* How the client of s learns that s died. Transaction pooling with one batch in flight (a
 * Query or a Sync) that began outside a transaction block and cannot have opened one
 * (!sent_batch_opens: no BEGIN, START or CHAIN in it), nothing half-sent either way: it
 * gets an ERROR and ReadyForQuery 'I' (what ran in the batch's implicit transaction was
 * rolled back, or committed just before: unknown), and its next transaction takes another
 * server. A client in an open transaction, or whose lost batch may have opened one, must not
 * carry on as if nothing happened: it is closed (what it pipelined behind may assume the
 * block). */
static enum server_loss loss_for_client(const struct server *s)
{
    const struct client *c = s->client;
    if (s->relay.pass_left > 0)
        return LOSS_MID_MESSAGE;
    bool boundary = c->relay.pass_left == 0 && !s->ext_open && !s->copy_in && s->n_refusals == 0 &&
                    !s->mask_wait;
    if (pool_mode_of(s->pool)->shares_servers && s->state == SV_ACTIVE && c->sent_ready &&
        s->txn == 'I' && s->in_flight == 1 && !s->sent_batch_opens && boundary)
        return LOSS_STATEMENT;
    return LOSS_FATAL;
}

static void server_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct server *s = arg;
    char reason[200];
    if (what & BEV_EVENT_CONNECTED) {
        if (s->step == LS_TCP)
            on_tcp_connected(s);
        else if (s->step == LS_TLS)
            send_startup(s);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        int dns = bufferevent_socket_get_dns_error(s->bev);
        snprintf(reason, sizeof(reason), "%s",
                 dns                 ? evutil_gai_strerror(dns)
                 : s->step == LS_TLS ? "TLS handshake failed"
                                     : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    } else {
        snprintf(reason, sizeof(reason), "server closed the connection");
    }
    if (s->state == SV_CONNECTING) {
        char msg[300];
        snprintf(msg, sizeof(msg), "could not connect to server %s:%d: %s", s->pool->db->host,
                 s->pool->db->port, reason);
        login_failed(s, "08006", msg);
        return;
    }
    if (s->state == SV_CHECKING) { /* found dead before its client sent anything */
        check_failed(s, reason);
        return;
    }
    if (s->state == SV_READBACK) { /* its client's transaction was over */
        readback_failed(s, reason);
        return;
    }
    if (s->state == SV_SETTING) { /* none of its client's messages went to it */
        settings_lost(s, reason, "server closed the connection during lakeproxy's settings");
        return;
    }
    struct client *c = s->client;
    enum server_loss loss = c ? loss_for_client(s) : LOSS_FATAL;
    if (c && loss == LOSS_STATEMENT) /* its carried changes went with its transaction */
        params_restore_before(&c->wanted, &s->carried_before, s->carried_absent, s->carried_open);
    server_close(s, reason);
    if (c && loss == LOSS_STATEMENT)
        client_transaction_lost(c, "08006",
                                "server connection lost while the statement ran: whether it "
                                "took effect is unknown (no transaction was left open; the "
                                "connection to lakeproxy stays usable)");
    else if (c && loss == LOSS_MID_MESSAGE) /* an ErrorResponse now would land inside it */
        client_close(c, "server connection lost in the middle of a message to the client");
    else if (c)
        client_fail(c, "08006", "server closed the connection unexpectedly");
}

/* Allocates a connection towards p's server and starts connecting. */
static struct server *server_start(struct pool *p, bool cancel_only)
{
    struct worker *w = p->w;
    struct server *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->pool = p;
    s->id = ++w->next_id;
    s->cancel_only = cancel_only;
    s->generation = p->generation;
    s->state = SV_CONNECTING;
    s->txn = 'I';
    list_init(&s->node);
    list_append(cancel_only ? &w->cancellers : &p->connecting, &s->node);
    if (!cancel_only)
        p->n_servers++;
    s->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    s->timer = evtimer_new(w->base, connect_timeout_cb, s);
    if (!s->bev || !s->timer) {
        login_failed(s, "53200", "out of memory");
        return NULL;
    }
    arm_connect_timeout(s);
    bufferevent_setcb(s->bev, server_read_cb, server_write_cb, server_event_cb, s);
    bufferevent_setwatermark(s->bev, EV_WRITE, RELAY_LOW_WATER, 0);
    bufferevent_enable(s->bev, EV_READ); /* writes: see conn_flush */
    if (bufferevent_socket_connect_hostname(s->bev, w->dns, AF_UNSPEC, p->db->host, p->db->port) !=
        0) {
        login_failed(s, "08006", "could not start connecting to the server");
        return NULL;
    }
    return s;
}

struct server *server_connect(struct pool *p)
{
    log_debug("pool %s: opening a server connection", p->db->name);
    return server_start(p, false);
}

bool server_send_cancel(struct server *target, uint64_t requester)
{
    if (target->cancels_pending > 0)
        return false; /* one is on its way: more would cancel nothing more (and pile up) */
    struct server *s = server_start(target->pool, true);
    if (!s || s->closing) /* (a failure libevent reported at once has closed it already) */
        return false;
    s->cancel_pid = target->be_pid;
    s->cancel_key = target->be_key;
    s->cancel_requester = requester;
    target->cancels_pending++;
    return true;
}

/* Do buffers a and b hold the same bytes? */
static bool same_bytes(const struct buf *a, const struct buf *b)
{
    return a->len == b->len && memcmp(a->data, b->data, b->len) == 0;
}

bool server_carries_rls(const struct server *s, const struct buf *prefix)
{
    return same_bytes(&s->rls_applied, prefix);
}

bool server_rls_is(const struct server *s, const struct buf *prefix)
{
    return server_carries_rls(s, prefix) ||
           (s->state == SV_SETTING && same_bytes(&s->rls_pending, prefix));
}

/* Appends c's row-level-security prefix to msgs unless s already carries exactly these
 * settings from its last checkout: 1 when appended, 0 when not needed, -1 (with err) when c
 * cannot be served. Skipping is safe because nothing but lakeproxy's own prefix changes them
 * on a server: clients cannot (the guard), a transaction's rollback cannot undo the prefix's
 * own committed one, and DISCARD ALL, the only reset, forgets what was applied. */
static int add_rls_prefix(struct server *s, struct client *c, struct buf *msgs, char *err,
                          size_t errsz)
{
    const char *scs = param_get(&s->reported, "standard_conforming_strings");
    if (scs && !guard_scs_on(scs)) {
        snprintf(err, errsz,
                 "the server runs with standard_conforming_strings off; "
                 "row-level security through lakeproxy needs it on");
        return -1;
    }
    const struct buf *pre = client_rls_prefix(c, err, errsz);
    if (!pre)
        return -1;
    if (server_carries_rls(s, pre))
        return 0;
    buf_reset(&s->rls_pending);
    buf_put_bytes(&s->rls_pending, pre->data, pre->len);
    buf_reset(&s->rls_applied); /* unknown until the prefix succeeds */
    buf_put_bytes(msgs, s->rls_pending.data, s->rls_pending.len);
    s->rls_set = true;
    return 1;
}

/* Gives s to c. Before any of c's messages run there, the proxy's own go first, and their
 * results are awaited (SV_SETTING): c's session parameters, and for a client under
 * row-level security its attributes and role, set for the session (is_local false) so that
 * no transaction of c's, committed, rolled back or pipelined, can lose them or see the
 * previous client's. */
void server_link(struct server *s, struct client *c)
{
    struct buf sql, *msgs = &s->link_msgs; /* kept: no allocation per checkout */
    char err[200];
    int replies = 0;
    s->client = c;
    c->server = s;
    s->last_used = time(NULL);
    s->mask_class = client_mask_class(c);
    bool own = c->unnamed_home == s && s->unnamed_of == c->id; /* holds c's current one */
    s->unnamed_of = 0;
    /* settings SET to the server's default: set again here (the server may hold that value
     * from its own default, which a read-back would take for a RESET), and read back at the
     * transaction's end (a RESET of them changes nothing the server reports) */
    if (c->reset_blind)
        params_mark_unknown_of(&s->applied, c->reset_blind);
    s->carried = s->carried_reset = c->reset_blind;
    s->carried_open = s->carried_restored = 0;
    s->restoring = false;
    s->carried_open_zs = 0;
    buf_init(&sql);
    buf_reset(msgs);
    bool sync = params_build_sync_sql(&c->wanted, &s->applied, &s->reported, &sql);
    /* never leave a client another's unnamed statement to bind: closed first, ahead of
     * whatever follows, without a Sync (no round trip of its own); its CloseComplete comes
     * before any ReadyForQuery of the proxy's own, and is swallowed with them or alone. The
     * client's own current one stays when no query of the proxy's follows (those drop it)
     * and the client has neither row-level security nor masking. A client under either
     * keeps the older rule, a Close at every checkout: one rule is simpler to trust where a
     * policy is enforced */
    bool keep = own && !sync && !client_under_policy(c);
    bool closes = s->unnamed_maybe && !keep;
    if (closes)
        proto_close(msgs, 'S', "");
    s->unnamed_maybe = keep;
    if (keep)
        s->unnamed_of = c->id;
    if (sync) {
        proto_query(msgs, (const char *)sql.data);
        replies++;
    }
    buf_free(&sql);
    int prefix = c->rls ? add_rls_prefix(s, c, msgs, err, sizeof(err)) : 0;
    if (prefix < 0) {
        s->state = SV_ACTIVE;
        server_unlink(s);
        client_fail(c, "28000", err);
        return;
    }
    replies += prefix;
    bool ok;
    if (replies > 0) { /* internal messages: the CloseComplete is dropped with their replies */
        ok = !msgs->failed && send_internal_msgs(s, msgs, replies, SV_SETTING);
        if (ok) /* a server that stopped answering would hold the client for good */
            arm_connect_timeout(s);
    } else /* the Close alone goes ahead of the client's messages, in their write; its reply
              is owed */
        ok = !closes || (rq_push(&s->replies, RK_DROP_CLOSE, NULL) && conn_queue(s->bev, msgs));
    if (!ok) {
        settings_lost(s, "could not send session parameters",
                      "could not send session parameters to the server");
    } else if (replies == 0) {
        s->state = SV_ACTIVE;
        client_server_ready(c);
        if (s->bev) /* the Close, if the client sent nothing after all (freed later: deferred) */
            conn_flush(s->bev);
    }
}

int64_t server_now_ms(void)
{
    return monotime_ms();
}

/* Each server's lifetime is shortened by its own 0-20%, so servers opened together (at start,
 * or after an outage) are replaced one by one instead of all at once. */
/* How far apart one pool's lifetime retirements come at least: a fifth of the lifetime shared
 * among pool.size servers, at most a second. Staggered by jitter alone they seldom meet; after
 * a token provider's outage, when every server is past its lifetime at once, this turns a
 * burst of logins into a line. */
static int64_t lifetime_spacing_ms(const struct pool *p, int lifetime_s)
{
    int size = p->db->pool.size > 0 ? p->db->pool.size : 1;
    int64_t ms = (int64_t)lifetime_s * 1000 / 5 / size;
    return ms < 1000 ? ms : 1000;
}

bool server_past_lifetime(const struct server *s, int lifetime_s)
{
    if (lifetime_s <= 0)
        return false;
    struct pool *p = s->pool;
    int64_t now = server_now_ms(), life_ms = (int64_t)lifetime_s * (1000 - s->jitter_permille);
    if (now - s->created_ms < life_ms || !credentials_steady(p->w, p->db))
        return false;
    if (p->lifetime_retired_ms && now - p->lifetime_retired_ms < lifetime_spacing_ms(p, lifetime_s))
        return false;
    p->lifetime_retired_ms = now;
    return true;
}

bool server_is_clean(const struct server *s)
{
    return !s->unsure && s->cancels_pending == 0 && s->state == SV_ACTIVE && s->txn == 'I' &&
           s->in_flight == 0 && !s->ext_open && !s->copy_in && !s->copy_active &&
           s->relay.pass_left == 0 && (!s->client || s->client->relay.pass_left == 0);
}

/* A server that a reload made stale, one above a lowered pool size, or one past its
 * lifetime is not reused; NULL when s may serve again. */
static const char *retire_reason(const struct server *s)
{
    return retire_reason_with(s, true);
}

/* retire_reason; replies still owed count only when owed_counts (a server left to drain them
 * is judged on the rest). */
static const char *retire_reason_with(const struct server *s, bool owed_counts)
{
    const struct pool *p = s->pool;
    int lifetime = p->db->pool.lifetime_s;
    if (s->generation != p->generation)
        return p->retire_why ? p->retire_why : "configuration changed";
    if (s->addr_stale)
        return "its host name now resolves to another address";
    if (s->stmts_unknown)
        return "the statements prepared on it are in doubt (a DEALLOCATE or DISCARD, or a "
               "setting changed behind a pipelined Parse)";
    if (s->cancel_adrift)
        return "a cancel request for it got no answer in time (it may still arrive)";
    if (s->retire_after && pool_mode_of(p)->shares_servers)
        return "a client left session state (temporary table, WITH HOLD cursor or LISTEN) or "
               "ran code lakeproxy cannot see (DO, CALL)";
    if (s->rls_set && !config_rls_applies(p->w->cfg, p->db->name))
        return "row-level security no longer applies to its database";
    if (owed_counts && s->replies.len != 0)
        return "replies still owed";
    if (p->n_servers > p->db->pool.size && list_empty(&p->waiting))
        return "above pool.size (a reserve server, or pool.size lowered) with nobody waiting";
    if (server_past_lifetime(s, lifetime))
        return "lifetime reached";
    return NULL;
}

/* Breaks the link with the client and resumes reading if the client's backlog paused it. */
static void detach_client(struct server *s)
{
    if (s->client) {
        client_stmts_drop_closing(&s->client->stmts); /* (none: nothing is in flight) */
        s->client->server = NULL;
    }
    s->client = NULL;
    s->n_refusals = 0; /* nothing is in flight: stand-ins still listed were skipped */
    s->last_used = time(NULL);
    bool waited = s->mask_wait;
    maskwire_reset(s);
    if (s->paused || waited) {
        s->paused = false;
        bufferevent_enable(s->bev, EV_READ);
    }
}

void server_release(struct server *s)
{
    const char *retire = retire_reason(s);
    detach_client(s);
    if (retire) {
        server_close(s, retire);
        return;
    }
    s->state = SV_IDLE;
    pool_place_server(s);
    pool_server_ready(s); /* (which drops a late notice or notification first) */
}

bool server_input_pending(const struct server *s)
{
    return evbuffer_get_length(conn_input(s->bev)) > 0;
}

/* Resets s, detached, behind `owed` ReadyForQuery messages still to come (read and dropped):
 * a ROLLBACK first (DISCARD ALL cannot run in a transaction), then DISCARD ALL, whose own
 * result alone decides (internal_inspect, on_reset_done). */
static void reset_behind(struct server *s, int owed)
{
    event_del(s->timer); /* (a reset is not timed) */
    struct buf b;
    buf_init(&b);
    proto_query(&b, "ROLLBACK");
    proto_query(&b, "DISCARD ALL");
    bool ok = send_internal_msgs(s, &b, owed + 2, SV_RESETTING);
    buf_free(&b);
    if (!ok)
        server_close(s, "could not send reset query");
}

/* The client left while its settings were read back: its transaction was over, so its server
 * is reset behind the read-back (whose answer nobody needs now), as for any client leaving:
 * a ROLLBACK first, for a read-back that failed inside its transaction (DISCARD ALL cannot run
 * in one), then DISCARD ALL, whose own result alone decides (internal_inspect). */
static void reset_behind_readback(struct server *s)
{
    const char *retire = retire_reason(s);
    detach_client(s);
    if (retire) {
        server_close(s, retire);
        return;
    }
    reset_behind(s, s->internal_pending); /* (the read-back's ReadyForQuery still owed) */
}

/* Did the client leave active server s at a message boundary with its replies countable: no
 * extended batch open, no copy, nothing half-relayed either way, not held back by the client's
 * unread output? (What can_drain and can_roll_back both need.) */
static bool left_at_a_boundary(const struct server *s)
{
    return s->client && s->state == SV_ACTIVE && !s->unsure && !s->ext_open && !s->copy_in &&
           !s->copy_active && s->copy_assumed == 0 && s->relay.pass_left == 0 &&
           s->client->relay.pass_left == 0 && !s->paused;
}

/* Has the client left s with whole statements in flight, and nothing else unfinished: no
 * transaction block open as of the last ReadyForQuery, only simple queries owed (one
 * ReadyForQuery each, whatever happens: an error in an extended-protocol segment would skip
 * what follows to its Sync), no copy, no message half-relayed either way? PostgreSQL
 * runs what a client sent before it left; lakeproxy lets them run too. Not a server held
 * back by its client's unread output (a client that leaves a large result unread): that one
 * is closed at once, as is one that must retire. */
static bool can_drain(const struct server *s)
{
    return left_at_a_boundary(s) && (s->in_flight > 0 || s->cancels_pending > 0) && s->txn == 'I' &&
           rq_only_queries(&s->replies) && !retire_reason_with(s, false);
}

/* Has the client left s idle inside a transaction block (as of the last ReadyForQuery):
 * nothing owed, nothing half-relayed either way, no copy, no cancel on its way, nothing that
 * retires it? Then ROLLBACK ends the block, as PostgreSQL does when a client disconnects, and
 * DISCARD ALL resets the session as for any client leaving: the server stays in the pool
 * rather than costing a new login (an application killed mid-transaction,
 * pool.idle_transaction_timeout_s). */
static bool can_roll_back(const struct server *s)
{
    return left_at_a_boundary(s) && s->txn != 'I' && s->in_flight == 0 && s->cancels_pending == 0 &&
           !retire_reason_with(s, true);
}

bool server_idle_in_transaction(const struct server *s)
{
    const struct client *c = s->client;
    return c && c->bev && s->state == SV_ACTIVE && s->txn != 'I' && s->in_flight == 0 &&
           !s->ext_open && !s->copy_in && !s->copy_active && s->copy_assumed == 0 &&
           c->relay.pass_left == 0 && evbuffer_get_length(conn_input(c->bev)) == 0;
}

bool server_running_statement(const struct server *s)
{
    return s->client && s->state == SV_ACTIVE && (s->in_flight > 0 || s->ext_open) && !s->copy_in;
}

bool server_left_waiting(const struct server *s)
{
    return !s->client && s->state == SV_RESETTING && !s->closing;
}

void server_close_unanswered(struct server *s, const char *why)
{
    cancel_unanswered(s);
    server_close(s, why);
}

void server_end_statement(struct server *s, const char *sqlstate, const char *msg,
                          const char *logged)
{
    struct client *c = s->client;
    if (s->ending) { /* (a second end while the first waits: now, without a word) */
        client_close(c, logged);
        return;
    }
    cancel_unanswered(s);
    s->close_at_unlink = s->in_flight > 1; /* (drained, the ones queued would run) */
    if (s->relay.pass_left == 0) {
        client_fail_as(c, sqlstate, msg, logged);
        return;
    }
    /* the relay stops at the next message's start (active_inspect): its server is closed */
    s->close_at_unlink = true;
    s->ending = ending_new(sqlstate, msg, logged);
    if (!s->ending)
        client_close(c, logged);
}

void server_check_ending(struct server *s, int64_t now_ms)
{
    if (!s->ending || !s->client || now_ms - s->ending->since_ms < SERVER_ENDING_WAIT_MS)
        return;
    char logged[200];
    snprintf(logged, sizeof(logged), "%s (the client did not read the rest of a message)",
             s->ending->logged);
    client_close(s->client, logged);
}

/* A cancel of the departed client's is on its way to s: the owed ReadyForQuery messages are
 * read and dropped now, the reset is sent only once PostgreSQL has taken the cancel
 * (cancel_settled), which would otherwise cancel the reset itself and cost the server. */
static void hold_reset(struct server *s, int owed)
{
    event_del(s->timer); /* (the cancel's connection has its own timeout) */
    s->reset_held = true;
    await_internal(s, owed, SV_RESETTING); /* (0: on_reset_done waits for cancel_settled) */
}

/* The departed client's cancel has settled. Gone astray, it may still arrive: s retires at
 * once (retire_reason), not after the statements it was meant to cut short, which may wait
 * for a lock for as long as the lock is held. Delivered: s is reset as any server a client
 * leaves once the replies owed are in (on_reset_done comes back here). */
static void reset_when_settled(struct server *s)
{
    const char *retire = retire_reason_with(s, false);
    if (retire) {
        s->reset_held = false;
        server_close(s, retire);
    } else if (s->internal_pending == 0) {
        s->reset_held = false;
        reset_behind(s, 0);
    }
}

/* The client left s with statements in flight, or a cancel on its way (can_drain), or idle in
 * a transaction block (can_roll_back): the replies owed are read and dropped, then a ROLLBACK (what
 * they left open, PostgreSQL rolls back on a disconnect too) and DISCARD ALL, whose own result
 * decides, as for any client leaving (internal_inspect). */
static void drain_behind_client(struct server *s)
{
    int owed = s->in_flight;
    detach_client(s);
    rq_free(&s->replies); /* (what they were owed is nobody's now) */
    s->in_flight = 0;
    s->draining_left = true;
    s->drain_bytes = 0;
    if (s->cancels_pending > 0)
        hold_reset(s, owed);
    else
        reset_behind(s, owed);
}

void server_unlink(struct server *s)
{
    if (s->close_at_unlink) { /* (PostgreSQL, its client gone, runs none of the queued ones) */
        detach_client(s);
        server_close(s, "its client was ended with statements queued behind the one cancelled");
        return;
    }
    if (s->state == SV_READBACK) {
        reset_behind_readback(s);
        return;
    }
    if (can_drain(s) || can_roll_back(s)) {
        drain_behind_client(s);
        return;
    }
    bool clean = server_is_clean(s) && s->client;
    const char *retire = retire_reason(s);
    bool unsure = s->unsure;
    detach_client(s);
    if (!clean) {
        server_close(s, unsure ? "its replies could not be counted"
                               : "client left in the middle of a transaction or message");
        return;
    }
    if (retire) {
        server_close(s, retire);
        return;
    }
    if (!send_internal(s, "DISCARD ALL", SV_RESETTING))
        server_close(s, "could not send reset query");
}
