/* relay.c: the message pump between a client and a server connection. */
#include "relay.h"

#include <errno.h>
#include <sys/socket.h>

#include "proto.h"

/* The run of passed messages relay_chunk holds back from its out, to send them straight from
 * the input (one per thread: a pump never runs inside another's inspector). */
static _Thread_local struct {
    struct evbuffer *out;
    const uint8_t *p;
    size_t n;
} held;

/* Adds p ahead of what out holds (a socket's output keeps its front frozen: thawed for it). */
static void prepend_thawed(struct evbuffer *out, const uint8_t *p, size_t n)
{
    if (evbuffer_prepend(out, p, n) != 0) {
        evbuffer_unfreeze(out, 1);
        evbuffer_prepend(out, p, n);
        evbuffer_freeze(out, 1);
    }
}

void relay_settle(struct evbuffer *out)
{
    if (held.n == 0 || held.out != out)
        return;
    size_t n = held.n;
    held.n = 0;
    if (evbuffer_get_length(out) == 0)
        evbuffer_add(out, held.p, n);
    else
        prepend_thawed(out, held.p, n);
}

/* Sends the held run to fd, and what the socket does not take now into out (empty). */
static void send_held(int fd, struct evbuffer *out)
{
    size_t n = held.n;
    held.n = 0;
    ssize_t k;
    do
        k = send(fd, held.p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (k < 0 && errno == EINTR);
    size_t sent = k > 0 ? (size_t)k : 0;
    if (sent < n)
        evbuffer_add(out, held.p + sent, n - sent);
}

/* Copies what is buffered of the message being streamed. */
static void relay_stream_some(struct evbuffer *in, struct evbuffer *out, struct relay *r)
{
    size_t avail = evbuffer_get_length(in);
    size_t n = avail < r->pass_left ? avail : r->pass_left;
    if (out)
        evbuffer_remove_buffer(in, out, n);
    else
        evbuffer_drain(in, n);
    r->pass_left -= n;
}

/* Applies a final verdict to a whole buffered message of total length n. */
static enum relay_result relay_apply(struct evbuffer *in, struct evbuffer *out, size_t n,
                                     enum relay_verdict v, const char **err)
{
    switch (v) {
    case RV_STREAM: /* from a body call: the whole message is here, so stream means pass */
    case RV_PASS:
    case RV_PASS_STOP:
        if (out) {
            evbuffer_remove_buffer(in, out, n);
            break;
        }
        /* nowhere to pass to: discard */
        __attribute__((fallthrough));
    case RV_DROP:
    case RV_DROP_STOP: evbuffer_drain(in, n); break;
    default: *err = *err ? *err : "unexpected message"; return RELAY_FAILED;
    }
    return (v == RV_PASS_STOP || v == RV_DROP_STOP) ? RELAY_STOPPED : RELAY_MORE;
}

/* Handles the message at the front of in; RELAY_MORE with *wait set when it is incomplete. */
static enum relay_result relay_one(struct evbuffer *in, struct evbuffer *out, struct relay *r,
                                   size_t max_size, relay_inspect_fn fn, void *arg, bool *wait,
                                   const char **err)
{
    uint8_t type;
    uint32_t body_len;
    /* (the header is nearly always in the first chunk: no copy then) */
    const uint8_t *hdr = evbuffer_pullup(in, 5);
    if (!hdr) {
        *wait = true;
        return RELAY_MORE;
    }
    if (proto_check_header(hdr, max_size, &type, &body_len, err) != PROTO_OK)
        return RELAY_FAILED;
    size_t total = 5 + (size_t)body_len;
    enum relay_verdict v = fn(arg, type, body_len, NULL);
    if (v == RV_WAIT)
        return RELAY_WAIT;
    if (v == RV_STREAM) {
        r->pass_left = total;
        relay_stream_some(in, out, r);
        return RELAY_MORE;
    }
    if (v == RV_ERROR) {
        *err = *err ? *err : "unexpected message";
        return RELAY_FAILED;
    }
    if (evbuffer_get_length(in) < total) { /* every other verdict needs the whole message */
        *wait = true;
        return RELAY_MORE;
    }
    if (v == RV_NEED_BODY) {
        const uint8_t *msg = evbuffer_pullup(in, (ssize_t)total);
        v = fn(arg, type, body_len, msg + 5);
        if (v == RV_WAIT)
            return RELAY_WAIT;
    }
    return relay_apply(in, out, total, v, err);
}

/* The messages that lie whole in the first chunk of in, handled in place: each passed one is
 * copied to out as it is judged (so whatever an inspector writes to out comes after it, as
 * with one message at a time), and all of them are drained from in at once at the end,
 * instead of a move and its bookkeeping per message. Stops at the first message that is not
 * whole in the chunk (*more: the caller handles it the slow way) or at any other result. */
static enum relay_result relay_chunk(struct evbuffer *in, struct evbuffer *out, int direct_fd,
                                     size_t max_size, relay_inspect_fn fn, void *arg, bool *more,
                                     const char **err)
{
    struct evbuffer_iovec v;
    *more = false;
    if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
        return RELAY_MORE;
    const uint8_t *base = v.iov_base;
    size_t off = 0, avail = v.iov_len;
    enum relay_result res = RELAY_MORE;
    /* holding: the messages passed so far form one run, held back from out (empty) */
    bool hold = out && direct_fd >= 0 && evbuffer_get_length(out) == 0;
    held.out = out;
    held.n = 0;
    while (avail - off >= 5) {
        if (out && !hold && evbuffer_get_length(out) > RELAY_HIGH_WATER) {
            res = RELAY_FULL;
            break;
        }
        uint8_t type;
        uint32_t body_len;
        if (proto_check_header(base + off, max_size, &type, &body_len, err) != PROTO_OK) {
            res = RELAY_FAILED;
            break;
        }
        size_t total = 5 + (size_t)body_len;
        if (total > avail - off) { /* not whole here: the slow way, from its header call on */
            *more = true;
            break;
        }
        size_t run = held.n;
        enum relay_verdict vd = fn(arg, type, body_len, NULL);
        if (vd == RV_NEED_BODY)
            vd = fn(arg, type, body_len, base + off + 5);
        if (hold && (held.n != run || evbuffer_get_length(out) > 0)) {
            relay_settle(out); /* the inspector wrote to out: the run goes first */
            hold = false;
        }
        if (vd == RV_WAIT) {
            res = RELAY_WAIT;
            break;
        }
        if (vd == RV_ERROR || vd == RV_NEED_BODY) {
            *err = *err ? *err : "unexpected message";
            res = RELAY_FAILED;
            break;
        }
        /* RV_STREAM of a whole message is a pass; with no out, a pass is a drop */
        bool pass = out && vd != RV_DROP && vd != RV_DROP_STOP;
        if (pass && hold) {
            if (held.n == 0)
                held.p = base + off;
            held.n += total;
        } else if (pass) {
            evbuffer_add(out, base + off, total);
        } else if (hold && held.n > 0) { /* a gap in the run: out takes it, copies follow */
            relay_settle(out);
            hold = false;
        }
        off += total;
        if (vd == RV_PASS_STOP || vd == RV_DROP_STOP) {
            res = RELAY_STOPPED;
            break;
        }
    }
    /* the run leaves before anything else is added to out; then the input goes */
    if (hold && held.n > 0 && res != RELAY_FAILED && evbuffer_get_length(out) == 0)
        send_held(direct_fd, out);
    relay_settle(out);
    held.out = NULL;
    evbuffer_drain(in, off);
    /* whatever is left (a message or header cut by the chunk's end) goes the slow way */
    if (res == RELAY_MORE && evbuffer_get_length(in) > 0)
        *more = true;
    return res;
}

enum relay_result relay_pump(struct evbuffer *in, struct evbuffer *out, struct relay *r,
                             size_t max_size, relay_inspect_fn fn, void *arg, const char **err)
{
    return relay_pump_to(in, out, -1, r, max_size, fn, arg, err);
}

enum relay_result relay_pump_to(struct evbuffer *in, struct evbuffer *out, int direct_fd,
                                struct relay *r, size_t max_size, relay_inspect_fn fn, void *arg,
                                const char **err)
{
    *err = NULL;
    for (;;) {
        if (out && evbuffer_get_length(out) > RELAY_HIGH_WATER)
            return RELAY_FULL;
        if (r->pass_left > 0) {
            if (evbuffer_get_length(in) == 0)
                return RELAY_MORE;
            relay_stream_some(in, out, r);
            continue;
        }
        bool more;
        enum relay_result res = relay_chunk(in, out, direct_fd, max_size, fn, arg, &more, err);
        if (res != RELAY_MORE || !more)
            return res;
        bool wait = false;
        res = relay_one(in, out, r, max_size, fn, arg, &wait, err);
        if (res != RELAY_MORE || wait)
            return res;
    }
}
