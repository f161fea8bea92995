/* relay.c: the message pump between a client and a server connection. */
#include "relay.h"

#include "proto.h"

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

enum relay_result relay_pump(struct evbuffer *in, struct evbuffer *out, struct relay *r,
                             size_t max_size, relay_inspect_fn fn, void *arg, const char **err)
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
        bool wait = false;
        enum relay_result res = relay_one(in, out, r, max_size, fn, arg, &wait, err);
        if (res != RELAY_MORE || wait)
            return res;
    }
}
