/* session.c: session pooling's operations (poolmode.h): a client keeps its server from login
 * to logout; the proxy counts the ReadyForQuery it owes (for draining and reuse), lets the
 * RLS guard see each statement whole, and watches CommandComplete tags for RESETs it must
 * read back. */
#include <stddef.h>
#include <string.h>

#include "client.h"
#include "params.h"
#include "pipeline.h"
#include "policy.h"
#include "poolmode.h"
#include "prepared.h"
#include "server.h"

/* A message the server answers with one ReadyForQuery (a Query, FunctionCall or
 * Sync), queued in order with the client's CopyDone count so that the Syncs the server ignores
 * during copy-in can be forgotten (server.c). False when too many are in flight. */
static bool owe_ready(struct server *s, enum reply_kind kind)
{
    if (!rq_push(&s->replies, kind, NULL))
        return false;
    s->in_flight++;
    return true;
}

/* The bookkeeping of one client message that goes to the server as it is. */
static enum relay_verdict session_msg(struct client *c, uint8_t type)
{
    struct server *s = c->server;
    switch (type) {
    case 'Q':
    case 'F': client_arm_reset_barrier(c); return owe_ready(s, RK_QUERY) ? RV_STREAM : RV_ERROR;
    case 'S':
        if (server_sync_ignored(s))
            return RV_STREAM; /* during copy-in the server ignores it: nothing owed */
        s->ext_open = false;
        client_arm_reset_barrier(c);
        return owe_ready(s, RK_SYNC) ? RV_STREAM : RV_ERROR;
    case 'E':
        if (!rq_note_execute(&s->replies))
            server_mark_unsure(s, "too many COPYs pipelined to follow their Executes");
        s->ext_open = true;
        return RV_STREAM;
    case 'P':
    case 'B':
    case 'D':
    case 'C':
    case 'H': s->ext_open = true; return RV_STREAM;
    case 'd': return RV_STREAM;
    case 'c':
    case 'f': server_copy_done_sent(s); return RV_STREAM;
    default: return RV_ERROR;
    }
}

/* A client under RLS: the guard sees each statement whole. */
static enum relay_verdict session_guard(struct client *c, uint8_t type, uint32_t len,
                                        const uint8_t *body, const char **err)
{
    struct server *s = c->server;
    switch (policy_check_client_msg(c, type, len, body, err)) {
    case POLICY_FAILED: return RV_ERROR;
    case POLICY_STANDIN:
        if (type == 'P')
            s->ext_open = true;
        else if (!owe_ready(s, RK_QUERY))
            return RV_ERROR;
        return RV_DROP;
    default: return session_msg(c, type) == RV_ERROR ? RV_ERROR : RV_PASS;
    }
}

/* The statement text of a Query or Parse body (NULL: none whole in it). */
static const char *statement_text(uint8_t type, uint32_t len, const uint8_t *body)
{
    const uint8_t *end = body + len, *text = body;
    if (type == 'P') { /* after the statement's name */
        const uint8_t *nul = memchr(body, 0, len);
        text = nul ? nul + 1 : end;
    }
    return text < end && memchr(text, 0, (size_t)(end - text)) ? (const char *)text : NULL;
}

/* Session pooling's verdict on one client message. The text of a client with startup
 * settings is read whole for a RESET (client_note_may_reset); once it prepared a statement
 * that may RESET, each Bind counts as one (the statements are not tracked here). */
static enum relay_verdict session_client_msg(struct client *c, uint8_t type, uint32_t len,
                                             const uint8_t *body, const char **err)
{
    bool statement = type == 'Q' || type == 'P';
    if (!body && ((c->rls && (statement || type == 'F')) || (c->at_startup.n > 0 && statement)))
        return RV_NEED_BODY;
    const char *text = statement && body ? statement_text(type, len, body) : NULL;
    if (text && pipeline_text_may_reset(text)) {
        client_note_may_reset(c);
        c->binds_may_reset |= type == 'P';
    } else if (type == 'B' && c->binds_may_reset) {
        client_note_may_reset(c);
    }
    if (c->rls && (statement || type == 'F'))
        return session_guard(c, type, len, body, err);
    if (type == 'X')
        return body ? RV_DROP_STOP : RV_NEED_BODY;
    enum relay_verdict v = session_msg(c, type);
    return body && v == RV_STREAM ? RV_PASS : v;
}

/* Server messages pass as they are in session pooling. The CommandComplete of a statement
 * that may have RESET a setting the client gave at startup whose RESET the server does not
 * report (one it never reports, or one the client SET to the server's default) has that
 * setting read back when the transaction ends (server.c): on PostgreSQL a RESET returns to
 * the startup value, on the server to the server's own. */
static enum relay_verdict session_server_msg(struct server *s, uint8_t type, uint32_t len,
                                             const uint8_t *body)
{
    const struct client *c = s->client;
    uint32_t unseen = c ? c->startup_unreported | c->reset_blind : 0;
    if (type != 'C' || !unseen || len > 64)
        return RV_STREAM;
    if (!body)
        return RV_NEED_BODY;
    if (params_tag_may_reset(body, len)) {
        s->carried |= unseen;
        s->carried_reset |= unseen;
    }
    return RV_PASS;
}

/* A ReadyForQuery answers the oldest Query or Sync owed: the Executes sent before it are over. */
static bool session_ready(struct server *s)
{
    const struct reply *f = rq_front(&s->replies);
    if (f) {
        rq_executes_settled(&s->replies, f->execs);
        rq_pop(&s->replies);
    }
    return false;
}

const struct pool_mode_ops pool_mode_session = {
    .name = "session",
    .shares_servers = false,
    .client_msg = session_client_msg,
    .server_msg = session_server_msg,
    .ready = session_ready,
};
