/* relay.c: the message pump between a client and a server connection. */
#include "relay.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "proto.h"

const char relay_out_of_memory[] = "out of memory";

/* The run of passed messages relay_run holds back from its out, to send them straight from
 * the input (one per thread; a pump that runs inside another's inspector, as a TLS write that
 * must first read can make happen, keeps the outer one's: relay_pump_to). The run belongs
 * after the first `at` bytes of out (what an inspector wrote before it began) and ahead of
 * anything added later. */
struct held_run {
    struct evbuffer *out;
    const uint8_t *p;
    size_t n;
    size_t at;
    bool lost; /* an add to an output failed (out of memory): the pump must fail, not go on */
};
static _Thread_local struct held_run held;

/* Notes a failed add to an output (evbuffer calls return 0 when done). */
static void check_added(bool ok)
{
    if (!ok)
        held.lost = true;
}

void relay_note_lost(void)
{
    held.lost = true;
}

/* Moves n bytes (at most what it holds) from in's front to out. libevent's move hands over
 * whole pieces of in, which needs no memory, but copies a part piece without saying whether it
 * could: such a part is copied here. (out's length cannot tell: a TLS connection's output
 * is emptied into the socket below it as it is added to.) */
static void move_checked(struct evbuffer *in, struct evbuffer *out, size_t n)
{
    while (n > 0 && !held.lost) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            return;
        if (v.iov_len == 0) { /* (no piece is empty: should one be, nothing is moved) */
            held.lost = true;
            return;
        }
        if (v.iov_len <= n) { /* (-1 only for a frozen end, which the relay's buffers lack) */
            check_added(evbuffer_remove_buffer(in, out, v.iov_len) == (int)v.iov_len);
            n -= v.iov_len;
            continue;
        }
        check_added(evbuffer_add(out, v.iov_base, n) == 0);
        evbuffer_drain(in, n);
        return;
    }
}

/* A run begins only while out holds at most this much ahead of it (an inspector's own small
 * messages: a checkout's Close, a re-Parse), so that putting it in its place needs no more
 * than a copy of that on the stack. */
enum { HOLD_AFTER_MAX = 4096 };

/* At most this many pieces of out go with a run in one sendmsg; more, and the run is copied. */
enum { HOLD_IOV = 7 };

/* Adds p ahead of what out holds (a socket's output keeps its front frozen: thawed for it). */
static void prepend_thawed(struct evbuffer *out, const uint8_t *p, size_t n)
{
    if (evbuffer_prepend(out, p, n) != 0) {
        evbuffer_unfreeze(out, 1);
        check_added(evbuffer_prepend(out, p, n) == 0);
        evbuffer_freeze(out, 1);
    }
}

/* Adds p to the end of in (a socket's input keeps its end frozen: thawed for it). */
static bool add_thawed(struct evbuffer *in, const uint8_t *p, size_t n)
{
    if (evbuffer_add(in, p, n) == 0)
        return true;
    evbuffer_unfreeze(in, 0);
    bool ok = evbuffer_add(in, p, n) == 0;
    evbuffer_freeze(in, 0);
    return ok;
}

void relay_drain_front(struct evbuffer *out, size_t n)
{
    if (evbuffer_drain(out, n) != 0) {
        evbuffer_unfreeze(out, 1);
        evbuffer_drain(out, n);
        evbuffer_freeze(out, 1);
    }
}

/* Puts p[0..n) into out after its first at bytes (at <= HOLD_AFTER_MAX). */
static void insert_at(struct evbuffer *out, size_t at, const uint8_t *p, size_t n)
{
    size_t len = evbuffer_get_length(out);
    if (at >= len) {
        check_added(evbuffer_add(out, p, n) == 0);
    } else if (at == 0) {
        prepend_thawed(out, p, n);
    } else {
        uint8_t head[HOLD_AFTER_MAX];
        bool frozen = evbuffer_copyout(out, head, at) < 0; /* a frozen front is not read */
        if (frozen) {
            evbuffer_unfreeze(out, 1);
            evbuffer_copyout(out, head, at);
        }
        evbuffer_drain(out, at);
        check_added(evbuffer_prepend(out, p, n) == 0);
        check_added(evbuffer_prepend(out, head, at) == 0);
        if (frozen)
            evbuffer_freeze(out, 1);
    }
}

void relay_settle(struct evbuffer *out)
{
    if (held.n == 0 || held.out != out)
        return;
    size_t n = held.n;
    held.n = 0;
    insert_at(out, held.at, held.p, n);
}

/* Sends what out holds (before bytes, its length) and then the held run to fd in one call;
 * what the socket does not take stays in out, the run's rest after it. */
static void send_held(int fd, struct evbuffer *out, size_t before)
{
    size_t n = held.n;
    held.n = 0;
    struct evbuffer_iovec pieces[HOLD_IOV];
    int k = before ? evbuffer_peek(out, (ev_ssize_t)before, NULL, pieces, HOLD_IOV) : 0;
    if (k < 0 || k > HOLD_IOV) { /* out in too many pieces: the run follows it as a copy */
        check_added(evbuffer_add(out, held.p, n) == 0);
        return;
    }
    struct iovec iov[HOLD_IOV + 1];
    for (int i = 0; i < k; i++)
        iov[i] = (struct iovec){.iov_base = pieces[i].iov_base, .iov_len = pieces[i].iov_len};
    iov[k] = (struct iovec){.iov_base = (void *)held.p, .iov_len = n};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)k + 1};
    ssize_t sent;
    do /* (the run alone, nearly always: send, which spares the kernel an iovec to import) */
        sent = k == 0 ? send(fd, held.p, n, MSG_NOSIGNAL | MSG_DONTWAIT)
                      : sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (sent < 0 && errno == EINTR);
    size_t total = sent > 0 ? (size_t)sent : 0;
    size_t of_out = total < before ? total : before;
    if (of_out > 0)
        relay_drain_front(out, of_out);
    size_t of_run = total - of_out;
    if (of_run < n)
        check_added(evbuffer_add(out, held.p + of_run, n - of_run) == 0);
}

/* Copies what is buffered of the message being streamed. */
static void relay_stream_some(struct evbuffer *in, struct evbuffer *out, struct relay *r)
{
    size_t avail = evbuffer_get_length(in);
    size_t n = avail < r->pass_left ? avail : r->pass_left;
    if (out)
        move_checked(in, out, n);
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
            move_checked(in, out, n);
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
    if (!hdr && evbuffer_get_length(in) >= 5) { /* there, but no memory to make it one piece */
        *err = relay_out_of_memory;
        return RELAY_FAILED;
    }
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
        if (!msg) {
            *err = relay_out_of_memory;
            return RELAY_FAILED;
        }
        v = fn(arg, type, body_len, msg + 5);
        if (v == RV_WAIT)
            return RELAY_WAIT;
    }
    return relay_apply(in, out, total, v, err);
}

/* The messages that lie whole in base[0..avail), handled in place (*off: how many bytes they
 * took): each passed one is copied to out as it is judged (so whatever an inspector writes to
 * out comes after it, as with one message at a time), and the caller drops all of them from
 * its input at once, instead of a move and its bookkeeping per message. When out is a plain
 * socket's, the passed messages are not copied but held as runs (while out holds little), each
 * put in its place in out when something must follow it there, the last sent from base after
 * what out holds. Stops at the first message that is not whole (*more: the caller handles it
 * the slow way) or at any other result. Nothing points into base once it returns. */
static enum relay_result relay_run(const uint8_t *base, size_t avail, struct evbuffer *out,
                                   int direct_fd, size_t max_size, relay_inspect_fn fn, void *arg,
                                   size_t *off_out, bool *more, const char **err)
{
    size_t off = 0;
    enum relay_result res = RELAY_MORE;
    bool hold = out && direct_fd >= 0;
    held.out = out;
    held.n = 0;
    size_t queued = out ? evbuffer_get_length(out) : 0; /* kept up to date below */
    *more = false;
    while (avail - off >= 5) {
        if (queued > RELAY_HIGH_WATER) {
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
        enum relay_verdict vd = fn(arg, type, body_len, NULL);
        if (vd == RV_NEED_BODY)
            vd = fn(arg, type, body_len, base + off + 5);
        if (out) {
            size_t now = evbuffer_get_length(out);
            if (held.n > 0 && now != queued) { /* the inspector wrote: the run goes first */
                relay_settle(out);
                now = evbuffer_get_length(out);
            }
            queued = now;
        }
        if (held.lost) { /* the inspector's writes, or the run before them, did not fit */
            res = RELAY_FAILED;
            break;
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
        if (pass && hold && held.n > 0) {
            held.n += total;
        } else if (pass && hold && queued <= HOLD_AFTER_MAX) {
            held.p = base + off;
            held.n = total;
            held.at = queued;
        } else if (pass) {
            check_added(evbuffer_add(out, base + off, total) == 0);
            queued = evbuffer_get_length(out);
        } else if (held.n > 0) { /* a gap in the run: the run so far takes its place in out */
            relay_settle(out);
            queued = evbuffer_get_length(out);
        }
        off += total;
        if (held.lost) { /* nothing after a lost message may follow it to its destination */
            res = RELAY_FAILED;
            break;
        }
        if (vd == RV_PASS_STOP || vd == RV_DROP_STOP) {
            res = RELAY_STOPPED;
            break;
        }
    }
    if (held.lost) /* (the pump fails: the run goes nowhere) */
        held.n = 0;
    /* the run leaves with what is ahead of it in out (queued is out's length here) */
    if (held.n > 0 && res != RELAY_FAILED && queued == held.at)
        send_held(direct_fd, out, queued);
    relay_settle(out);
    held.out = NULL;
    if (res == RELAY_MORE && off < avail) /* a message or header cut by the end */
        *more = true;
    *off_out = off;
    return res;
}

/* relay_run over the first chunk of in, then drains what it took. */
static enum relay_result relay_chunk(struct evbuffer *in, struct evbuffer *out, int direct_fd,
                                     size_t max_size, relay_inspect_fn fn, void *arg, bool *more,
                                     const char **err)
{
    struct evbuffer_iovec v;
    *more = false;
    if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
        return RELAY_MORE;
    size_t off;
    enum relay_result res =
        relay_run(v.iov_base, v.iov_len, out, direct_fd, max_size, fn, arg, &off, more, err);
    evbuffer_drain(in, off);
    /* whatever is left (in the next chunks too) goes the slow way */
    if (res == RELAY_MORE && evbuffer_get_length(in) > 0)
        *more = true;
    return res;
}

enum relay_result relay_pump(struct evbuffer *in, struct evbuffer *out, struct relay *r,
                             size_t max_size, relay_inspect_fn fn, void *arg, const char **err)
{
    return relay_pump_to(in, out, -1, r, max_size, fn, arg, err);
}

/* The result a pump ends with: RELAY_FAILED when an add to its output failed on the way. */
static enum relay_result unless_lost(enum relay_result res, const char **err)
{
    if (!held.lost)
        return res;
    held.lost = false;
    *err = relay_out_of_memory;
    return RELAY_FAILED;
}

/* relay_pump_to, leaving a lost add to its caller. */
static enum relay_result pump_to(struct evbuffer *in, struct evbuffer *out, int direct_fd,
                                 struct relay *r, size_t max_size, relay_inspect_fn fn, void *arg,
                                 const char **err)
{
    for (;;) {
        if (held.lost)
            return RELAY_FAILED;
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

enum relay_result relay_pump_to(struct evbuffer *in, struct evbuffer *out, int direct_fd,
                                struct relay *r, size_t max_size, relay_inspect_fn fn, void *arg,
                                const char **err)
{
    struct held_run outer = held; /* (a pump inside another's inspector leaves it as it was) */
    *err = NULL;
    held = (struct held_run){0};
    enum relay_result res =
        unless_lost(pump_to(in, out, direct_fd, r, max_size, fn, arg, err), err);
    held = outer;
    return res;
}

/* When in (have bytes, at least one) holds the first part of one message only (a read cut it)
 * and p[0..n) holds the rest, moves that rest into in and returns its length; else 0 (in then
 * holds more than a message's part, or p does not end it, or its header is bad: the caller
 * goes the slow way). */
static size_t complete_cut_message(struct evbuffer *in, size_t have, const uint8_t *p, size_t n,
                                   size_t max_size)
{
    uint8_t hdr[5], type;
    uint32_t body_len;
    const char *err;
    if (have + n < 5)
        return 0;
    size_t from_in = have < 5 ? have : 5;
    evbuffer_copyout(in, hdr, from_in);
    memcpy(hdr + from_in, p, 5 - from_in);
    if (proto_check_header(hdr, max_size, &type, &body_len, &err) != PROTO_OK)
        return 0;
    size_t total = 5 + (size_t)body_len;
    if (have >= total || total - have > n)
        return 0;
    return add_thawed(in, p, total - have) ? total - have : 0;
}

enum relay_result relay_pump_span(struct evbuffer *in, const uint8_t *p, size_t n,
                                  struct evbuffer *out, int direct_fd, struct relay *r,
                                  size_t max_size, relay_inspect_fn fn, void *arg, const char **err)
{
    struct held_run outer = held; /* (as relay_pump_to) */
    *err = NULL;
    held = (struct held_run){0};
    size_t off = 0;
    bool more = true;
    enum relay_result res = RELAY_MORE;
    size_t have = evbuffer_get_length(in);
    if (r->pass_left == 0 && have > 0 && (off = complete_cut_message(in, have, p, n, max_size))) {
        /* the message the last read cut, now whole in in, goes first, the slow way */
        res = pump_to(in, out, direct_fd, r, max_size, fn, arg, err);
        more = res == RELAY_MORE;
        have = evbuffer_get_length(in);
    }
    if (more && r->pass_left == 0 && have == 0) {
        size_t took; /* (relay_run stops when out is full) */
        res = relay_run(p + off, n - off, out, direct_fd, max_size, fn, arg, &took, &more, err);
        off += took;
    }
    if (off < n && !add_thawed(in, p + off, n - off))
        held.lost = true;
    if (res == RELAY_MORE && more && !held.lost)
        res = pump_to(in, out, direct_fd, r, max_size, fn, arg, err);
    res = unless_lost(res, err);
    held = outer;
    return res;
}
