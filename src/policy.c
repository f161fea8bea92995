/* policy.c: guard verdicts applied to a client's messages, stand-ins for refused statements,
 * and the rewriting of their errors. */
#include "policy.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "guard.h"
#include "log.h"
#include "proto.h"

void policy_init_marker(struct worker *w)
{
    uint8_t r[8] = {0};
    if (RAND_bytes(r, sizeof(r)) != 1)
        log_warning("no randomness for the refusal marker: using a fixed one");
    snprintf(w->refuse_marker, sizeof(w->refuse_marker),
             "lakeproxy_refused_%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4],
             r[5], r[6], r[7]);
}

/* The SQL text a Query or Parse carries, NULL when the message is malformed. */
static const char *message_sql(uint8_t type, const uint8_t *body, uint32_t len)
{
    struct rd r;
    const char *name, *sql;
    if (type == 'Q')
        return len > 0 && body[len - 1] == 0 ? (const char *)body : NULL;
    rd_init(&r, body, len);
    return rd_str(&r, &name) && rd_str(&r, &sql) ? sql : NULL;
}

/* Writes the stand-in for a refused message: a syntax error naming the marker. */
static bool send_standin(struct server *s, uint8_t type)
{
    struct buf b;
    buf_init(&b);
    if (type == 'P') {
        buf_msg_start(&b, 'P');
        buf_put_str(&b, "");
        buf_put_str(&b, s->pool->w->refuse_marker);
        buf_put_u16(&b, 0);
        buf_msg_finish(&b);
    } else {
        proto_query(&b, s->pool->w->refuse_marker);
    }
    bool ok = !b.failed && evbuffer_add(bufferevent_get_output(s->bev), b.data, b.len) == 0;
    buf_free(&b);
    return ok;
}

static enum policy_result refuse(struct client *c, uint8_t type, const char *reason,
                                 const char **err)
{
    struct server *s = c->server;
    if (s->n_refusals == MAX_REFUSALS) {
        *err = "too many refused statements in flight";
        return POLICY_FAILED;
    }
    log_info("client %llu %s (%s): statement refused: %s", (unsigned long long)c->id, c->addr,
             c->user, reason);
    snprintf(s->refusals[s->n_refusals++].reason, sizeof(s->refusals[0].reason), "%s", reason);
    if (!send_standin(s, type)) {
        *err = "out of memory";
        return POLICY_FAILED;
    }
    return POLICY_STANDIN;
}

enum policy_result policy_check_client_msg(struct client *c, uint8_t type, uint32_t len,
                                           const uint8_t *body, const char **err)
{
    if (type == 'F')
        return refuse(c, type,
                      "the FunctionCall protocol message is not allowed under row-level security",
                      err);
    const char *sql = message_sql(type, body, len);
    if (!sql) {
        *err = type == 'Q' ? "invalid Query message" : "invalid Parse message";
        return POLICY_FAILED;
    }
    const struct guard_verdict *v = guard_cache_check(c->w->guard, sql, c->w->cfg->rls.prefix);
    if (v->retire)
        c->server->retire_after = true;
    return v->refuse ? refuse(c, type, v->reason, err) : POLICY_PASS;
}

bool policy_rewrite_error(struct server *s, const uint8_t *body, uint32_t len)
{
    struct pg_error e;
    if (s->n_refusals == 0 || !s->client || !proto_parse_error(body, len, &e) ||
        strcmp(e.sqlstate, "42601") != 0 || !strstr(e.message, s->pool->w->refuse_marker))
        return false;
    struct buf b;
    buf_init(&b);
    proto_error(&b, "ERROR", "42501", s->refusals[0].reason);
    memmove(&s->refusals[0], &s->refusals[1], sizeof(s->refusals[0]) * (size_t)--s->n_refusals);
    if (!b.failed)
        evbuffer_add(bufferevent_get_output(s->client->bev), b.data, b.len);
    buf_free(&b);
    return true;
}
