/* msgshare.c: lends clients the budget for their large messages and applies it to their read
 * limits (see msgshare.h). */
#include "msgshare.h"

#include <event2/buffer.h>
#include <event2/event.h>

#include "client.h"
#include "conn.h"
#include "proto.h"

size_t msgshare_large_ahead(struct client *c)
{
    struct evbuffer *in = conn_input(c->bev);
    uint8_t hdr[5], type;
    uint32_t len;
    const char *err;
    if (evbuffer_get_length(in) < 5 || c->relay.pass_left > 0 || evbuffer_copyout(in, hdr, 5) < 5 ||
        proto_check_header(hdr, c->w->cfg->max_message_size, &type, &len, &err) != PROTO_OK)
        return 0;
    return 5 + (size_t)len > CLIENT_READ_AHEAD ? 5 + (size_t)len : 0;
}

/* c was lent its share: its limit is raised from the lending event. */
static void raise_later(struct client *c)
{
    c->share_seen = 0;
    c->share_idle_s = 0;
    c->share_held_s = 0;
    list_del(&c->share_node);
    list_append(&c->w->share_raise, &c->share_node);
    event_active(c->w->share_ev, 0, 0);
}

void msgshare_lend_later(struct worker *w)
{
    if (w->share_ev)
        event_active(w->share_ev, 0, 0);
}

/* The lending event: lends to those in line in turn, while the budget holds them, then raises
 * the limits of those lent to, one at a time (raising a TLS client's may run its callbacks). */
static void lend_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    struct msgbudget_claim *claim;
    while ((claim = msgbudget_next_lent(&w->msgbudget)))
        raise_later(container_of(claim, struct client, msg_claim));
    while (!list_empty(&w->share_raise)) {
        struct client *c = list_entry(w->share_raise.next, struct client, share_node);
        list_del(&c->share_node);
        if (!c->closing && c->msg_claim.held)
            conn_set_read_limit(c->bev, c->msg_claim.held);
    }
}

void msgshare_fit(struct client *c, bool reading)
{
    if (c->closing)
        return;
    struct msgbudget_claim *cl = &c->msg_claim;
    size_t want = c->state == CL_ACTIVE ? msgshare_large_ahead(c) : 0;
    /* one that waits (paused, or for the masking catalog) asks for nothing, and keeps only a
     * share it holds for the message still ahead: the limit was that message's size, so the
     * next message cannot be ahead yet, and any other is a new one (behind those in line) */
    if (!reading && want != cl->held)
        want = 0;
    if (want == cl->held + cl->want) /* (one of the two is 0) */
        return;
    bool gave_back = cl->held > 0;
    if (msgbudget_ask(&c->w->msgbudget, cl, want)) {
        raise_later(c);
        return;
    }
    list_del(&c->share_node);
    conn_set_read_limit(c->bev, CLIENT_READ_AHEAD);
    if (gave_back)
        msgshare_lend_later(c->w);
}

void msgshare_give_back(struct client *c)
{
    bool gave_back = c->msg_claim.held > 0;
    msgbudget_ask(&c->w->msgbudget, &c->msg_claim, 0);
    list_del(&c->share_node);
    if (!c->closing && c->bev)
        conn_set_read_limit(c->bev, CLIENT_READ_AHEAD);
    if (gave_back)
        msgshare_lend_later(c->w);
}

bool msgshare_start(struct worker *w)
{
    msgbudget_init(&w->msgbudget, w->cfg->max_message_memory);
    list_init(&w->share_raise);
    w->share_ev = event_new(w->base, -1, 0, lend_cb, w);
    return w->share_ev != NULL;
}

void msgshare_stop(struct worker *w)
{
    if (w->share_ev)
        event_free(w->share_ev);
    w->share_ev = NULL;
}

/* Do other clients wait for what holder c holds: the memory of its share, or (it is read with
 * a server taken for it) a server of its pool? */
static bool others_wait(const struct worker *w, const struct client *c)
{
    return w->msgbudget.n_waiting > 0 || (c->server && c->pool && !list_empty(&c->pool->waiting));
}

/* Why holder c must give its share up now (closed), or NULL: while others wait for its memory
 * or its server, nothing received for LARGE_MESSAGE_STALL_S, or slower than
 * LARGE_MESSAGE_MIN_RATE. (Half-sent messages would otherwise hold a pool's servers for as
 * long as their clients like: red team 14.) */
static const char *holder_fault(const struct worker *w, const struct client *c)
{
    if (!others_wait(w, c))
        return NULL; /* (holding what no one else wants harms no one) */
    if (c->share_idle_s >= LARGE_MESSAGE_STALL_S)
        return "the client sent part of a large message, then nothing for 10 s, while other "
               "clients waited for the memory (limits.max_message_memory) or the server "
               "connection it holds";
    if ((size_t)c->share_held_s >
        LARGE_MESSAGE_STALL_S + c->msg_claim.held / LARGE_MESSAGE_MIN_RATE)
        return "the client sent a large message slower than 64 KiB/s while other clients waited "
               "for the memory (limits.max_message_memory) or the server connection it holds";
    return NULL;
}

/* Counts, for each holder, the seconds it has held its share and those its input has not
 * grown; true if one must give it up. */
static bool count_stalls(struct worker *w)
{
    bool any = false;
    for (struct list *it = w->clients.next; it != &w->clients; it = it->next) {
        struct client *c = list_entry(it, struct client, node);
        if (!c->msg_claim.held || c->closing)
            continue;
        size_t len = evbuffer_get_length(conn_input(c->bev));
        bool counts = others_wait(w, c) && !c->paused && !c->mask_wait;
        if (len != c->share_seen) {
            c->share_seen = len;
            c->share_idle_s = 0;
        } else if (counts) {
            c->share_idle_s++;
        }
        c->share_held_s += counts;
        any |= holder_fault(w, c) != NULL;
    }
    return any;
}

void msgshare_check_stalls(struct worker *w)
{
    if (w->msgbudget.lent == 0 || !count_stalls(w))
        return;
    for (;;) { /* one close per scan: a close may close or wake others on the list */
        struct client *stalled = NULL;
        const char *why = NULL;
        for (struct list *it = w->clients.next; it != &w->clients && !stalled; it = it->next) {
            struct client *c = list_entry(it, struct client, node);
            if (c->msg_claim.held && !c->closing && (why = holder_fault(w, c)))
                stalled = c;
        }
        if (!stalled)
            return;
        w->large_stalls++;
        client_fail(stalled, "08006", why);
    }
}
