/* test_relay.c: the message pump: whole messages move, big bodies stream in pieces, the
 * inspector sees what it asks for, and framing errors stop the pump. */
#include <criterion/criterion.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto.h"
#include "relay.h"

struct seen {
    int messages;
    int bodies;
    char last_type;
    uint32_t last_len;
};

static enum relay_verdict pass_z_stream_rest(void *arg, uint8_t type, uint32_t len,
                                             const uint8_t *body)
{
    struct seen *s = arg;
    if (type != 'Z') {
        s->messages++;
        return RV_STREAM;
    }
    if (!body)
        return RV_NEED_BODY;
    s->bodies++;
    s->last_type = (char)type;
    s->last_len = len;
    return RV_PASS_STOP;
}

static void add_msg(struct evbuffer *b, char type, const char *body, size_t n)
{
    struct buf m;
    buf_init(&m);
    buf_msg_start(&m, (uint8_t)type);
    buf_put_bytes(&m, body, n);
    buf_msg_finish(&m);
    evbuffer_add(b, m.data, m.len);
    buf_free(&m);
}

static char big[100000];

/* A DataRow of 100,000 bytes of 'x' (the body streams: pass_z_stream_rest). */
static void big_data_row(struct buf *m)
{
    memset(big, 'x', sizeof(big));
    buf_init(m);
    buf_msg_start(m, 'D');
    buf_put_bytes(m, big, sizeof(big));
    buf_msg_finish(m);
}

Test(relay, streams_a_body_that_arrives_in_pieces)
{
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    struct relay r = {0};
    struct seen s = {0};
    const char *err;
    struct buf m;
    big_data_row(&m);
    /* first half only */
    evbuffer_add(in, m.data, m.len / 2);
    cr_expect_eq(relay_pump(in, out, &r, 1 << 20, pass_z_stream_rest, &s, &err), RELAY_MORE);
    cr_expect_eq(evbuffer_get_length(out), m.len / 2, "what arrived is forwarded at once");
    cr_expect_eq(evbuffer_get_length(in), 0);
    evbuffer_add(in, m.data + m.len / 2, m.len - m.len / 2);
    add_msg(in, 'Z', "I", 1);
    cr_expect_eq(relay_pump(in, out, &r, 1 << 20, pass_z_stream_rest, &s, &err), RELAY_STOPPED);
    cr_expect_eq(s.messages, 1);
    cr_expect_eq(s.bodies, 1);
    cr_expect_eq(s.last_len, 1);
    cr_expect_eq(evbuffer_get_length(out), m.len + 6);
    buf_free(&m);
    evbuffer_free(in);
    evbuffer_free(out);
}

Test(relay, waits_for_a_whole_inspected_message)
{
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    struct relay r = {0};
    struct seen s = {0};
    const char *err;
    const uint8_t partial[] = {'Z', 0, 0, 0, 5};
    evbuffer_add(in, partial, sizeof(partial));
    cr_expect_eq(relay_pump(in, out, &r, 1024, pass_z_stream_rest, &s, &err), RELAY_MORE);
    cr_expect_eq(evbuffer_get_length(out), 0, "an incomplete inspected message must not leak");
    cr_expect_eq(s.bodies, 0);
    evbuffer_add(in, "I", 1);
    cr_expect_eq(relay_pump(in, out, &r, 1024, pass_z_stream_rest, &s, &err), RELAY_STOPPED);
    cr_expect_eq(s.bodies, 1);
    evbuffer_free(in);
    evbuffer_free(out);
}

Test(relay, bad_length_and_oversized_messages_fail)
{
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    struct relay r = {0};
    struct seen s = {0};
    const char *err = NULL;
    const uint8_t bad[] = {'Q', 0, 0, 0, 2};
    evbuffer_add(in, bad, sizeof(bad));
    cr_expect_eq(relay_pump(in, out, &r, 1024, pass_z_stream_rest, &s, &err), RELAY_FAILED);
    cr_expect(err && *err);
    evbuffer_drain(in, evbuffer_get_length(in));
    const uint8_t big[] = {'Q', 0, 0, 8, 0};
    evbuffer_add(in, big, sizeof(big));
    cr_expect_eq(relay_pump(in, out, &r, 1024, pass_z_stream_rest, &s, &err), RELAY_FAILED);
    cr_expect(strstr(err, "max_message_size"));
    evbuffer_free(in);
    evbuffer_free(out);
}

Test(relay, stops_when_the_destination_is_full)
{
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    struct relay r = {0};
    struct seen s = {0};
    const char *err;
    static char chunk[RELAY_HIGH_WATER + 1];
    evbuffer_add(out, chunk, sizeof(chunk));
    add_msg(in, 'D', "abc", 3);
    cr_expect_eq(relay_pump(in, out, &r, 1024, pass_z_stream_rest, &s, &err), RELAY_FULL);
    cr_expect_eq(evbuffer_get_length(in), 8, "nothing moves while the destination is full");
    evbuffer_free(in);
    evbuffer_free(out);
}

/* An inspector that drops 'B' and writes an 'X' of its own in its place, drops 'd', stops
 * at 'E' (passing it) and passes the rest; bodies asked for every message but 'a'. */
struct rewriting {
    struct evbuffer *out;
    int waits_left; /* answer RV_WAIT to this many 'W' header calls */
};

static enum relay_verdict rewrite_some(void *arg, uint8_t type, uint32_t len, const uint8_t *body)
{
    struct rewriting *rw = arg;
    (void)len;
    if (type == 'W' && rw->waits_left > 0) {
        rw->waits_left--;
        return RV_WAIT;
    }
    if (!body && type != 'a')
        return RV_NEED_BODY;
    switch (type) {
    case 'B': add_msg(rw->out, 'X', "X", 1); return RV_DROP;
    case 'd': return RV_DROP;
    case 'E': return RV_PASS_STOP;
    default: return RV_PASS;
    }
}

/* The bytes of messages of the given types (body: the type letter), back to back. */
static size_t msgs_of(const char *types, uint8_t *out, size_t cap)
{
    struct evbuffer *b = evbuffer_new();
    for (const char *t = types; *t; t++)
        add_msg(b, *t, t, 1);
    size_t n = evbuffer_get_length(b);
    cr_assert_leq(n, cap);
    evbuffer_remove(b, out, n);
    evbuffer_free(b);
    return n;
}

/* An input holding src[0..n) in three separate chunks, cut at cut1 and cut2. */
static struct evbuffer *in_three_chunks(const uint8_t *src, size_t n, size_t cut1, size_t cut2)
{
    struct evbuffer *in = evbuffer_new();
    struct evbuffer *parts[3] = {evbuffer_new(), evbuffer_new(), evbuffer_new()};
    evbuffer_add(parts[0], src, cut1);
    evbuffer_add(parts[1], src + cut1, cut2 - cut1);
    evbuffer_add(parts[2], src + cut2, n - cut2);
    for (int i = 0; i < 3; i++) {
        evbuffer_add_buffer(in, parts[i]);
        evbuffer_free(parts[i]);
    }
    return in;
}

/* Whatever the chunks the input arrived in, the output is the same: the messages passed
 * before an inspector's own write come before it, drops leave nothing, the pump stops after
 * the stopping message and leaves the rest in place. */
Test(relay, order_and_verdicts_hold_whatever_the_chunk_boundaries)
{
    uint8_t src[256], want[256], got[256];
    size_t n = msgs_of("aBcdaEa", src, sizeof(src));
    size_t wn = msgs_of("aXcaE", want, sizeof(want));
    for (size_t cut1 = 0; cut1 <= n; cut1++)
        for (size_t cut2 = cut1; cut2 <= n; cut2++) {
            struct evbuffer *in = in_three_chunks(src, n, cut1, cut2), *out = evbuffer_new();
            struct relay r = {0};
            struct rewriting rw = {.out = out};
            const char *err;
            cr_assert_eq(relay_pump(in, out, &r, 1024, rewrite_some, &rw, &err), RELAY_STOPPED,
                         "cuts %zu %zu", cut1, cut2);
            size_t gn = evbuffer_get_length(out);
            cr_assert_eq(gn, wn, "cuts %zu %zu", cut1, cut2);
            evbuffer_remove(out, got, gn);
            cr_assert(memcmp(got, want, wn) == 0, "cuts %zu %zu", cut1, cut2);
            cr_assert_eq(evbuffer_get_length(in), 6, "the message after the stop stays");
            evbuffer_free(in);
            evbuffer_free(out);
        }
}

/* RV_WAIT leaves its message and everything after it in place; what came before has gone. */
Test(relay, a_wait_keeps_its_message_and_consumes_only_those_before)
{
    uint8_t src[256];
    size_t n = msgs_of("aaWa", src, sizeof(src));
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    evbuffer_add(in, src, n);
    struct relay r = {0};
    struct rewriting rw = {.out = out, .waits_left = 1};
    const char *err;
    cr_expect_eq(relay_pump(in, out, &r, 1024, rewrite_some, &rw, &err), RELAY_WAIT);
    cr_expect_eq(evbuffer_get_length(out), 12);
    cr_expect_eq(evbuffer_get_length(in), 12);
    cr_expect_eq(relay_pump(in, out, &r, 1024, rewrite_some, &rw, &err), RELAY_MORE);
    cr_expect_eq(evbuffer_get_length(out), 24);
    cr_expect_eq(evbuffer_get_length(in), 0);
    evbuffer_free(in);
    evbuffer_free(out);
}

/* A socket pair whose first end does not block (the proxy's sockets do not). */
static void nonblocking_pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cr_assert_eq(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    cr_assert_eq(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
}

/* What the destination gets in all: the bytes sent to its socket, then what waits in out. */
static size_t stream_of(int peer, struct evbuffer *out, uint8_t *got, size_t cap)
{
    size_t n = 0;
    ssize_t k;
    while (n < cap && (k = read(peer, got + n, cap - n)) > 0)
        n += (size_t)k;
    evbuffer_unfreeze(out, 1); /* (when the test froze it as libevent does) */
    size_t rest = evbuffer_get_length(out);
    cr_assert_leq(n + rest, cap);
    evbuffer_remove(out, got + n, rest);
    return n + rest;
}

/* An inspector writing its X as conn_send does: it settles the held run and writes out to the
 * socket at once (thawing out's front when frozen, as conn_flush does). */
struct flushing {
    struct evbuffer *out;
    int fd;
    bool frozen;
};

static enum relay_verdict rewrite_and_flush(void *arg, uint8_t type, uint32_t len,
                                            const uint8_t *body)
{
    struct flushing *fl = arg;
    struct rewriting rw = {.out = fl->out};
    if (type == 'B' && body) {
        relay_settle(fl->out);
        add_msg(fl->out, 'X', "X", 1);
        if (fl->frozen)
            evbuffer_unfreeze(fl->out, 1);
        while (evbuffer_get_length(fl->out) > 0 && evbuffer_write(fl->out, fl->fd) > 0)
            ;
        if (fl->frozen)
            evbuffer_freeze(fl->out, 1);
        return RV_DROP;
    }
    return rewrite_some(&rw, type, len, body);
}

/* An inspector that, like a checkout, writes a 'C' of its own before passing each 'P' (from
 * the body call: a header call may be repeated); otherwise rewrite_some's verdicts. */
static enum relay_verdict write_before_p(void *arg, uint8_t type, uint32_t len, const uint8_t *body)
{
    struct rewriting *rw = arg;
    if (type == 'P' && !body)
        return RV_NEED_BODY;
    if (type == 'P') {
        add_msg(rw->out, 'C', "C", 1);
        return RV_PASS;
    }
    return rewrite_some(rw, type, len, body);
}

enum inspector { ADDS, FLUSHES, WRITES_BEFORE_P };

/* relay_pump_span or relay_pump_to with the chosen inspector. */
static enum relay_result pump_with(enum inspector i, struct evbuffer *in, const uint8_t *p,
                                   size_t n, struct evbuffer *out, int fd, struct relay *r,
                                   struct rewriting *rw, struct flushing *fl)
{
    const char *err;
    relay_inspect_fn fn = i == FLUSHES           ? rewrite_and_flush
                          : i == WRITES_BEFORE_P ? write_before_p
                                                 : rewrite_some;
    void *arg = i == FLUSHES ? (void *)fl : (void *)rw;
    if (p)
        return relay_pump_span(in, p, n, out, fd, r, 1024, fn, arg, &err);
    return relay_pump_to(in, out, fd, r, 1024, fn, arg, &err);
}

/* The destination's whole stream (socket, then out) is want's; frees in and out and closes
 * the socket pair. what says which case failed. */
static void expect_stream_and_close(int sv[2], struct evbuffer *in, struct evbuffer *out,
                                    const uint8_t *want, size_t wn, const char *what)
{
    uint8_t got[512];
    size_t gn = stream_of(sv[1], out, got, sizeof(got));
    cr_assert_eq(gn, wn, "%s", what);
    cr_assert(memcmp(got, want, wn) == 0, "%s", what);
    evbuffer_free(in);
    evbuffer_free(out);
    close(sv[0]);
    close(sv[1]);
}

/* Pumps messages of the given types, cut into three chunks at every pair of points, to a
 * socket with the chosen inspector (out's front frozen, as libevent keeps a socket's, or not);
 * the destination's stream is always the messages of want, and the pump stops at 'E'. */
static void expect_stream_at_every_cut(const char *types, const char *want_types, enum inspector i,
                                       bool frozen)
{
    uint8_t src[256], want[256];
    size_t n = msgs_of(types, src, sizeof(src));
    size_t wn = msgs_of(want_types, want, sizeof(want));
    for (size_t cut1 = 0; cut1 <= n; cut1++)
        for (size_t cut2 = cut1; cut2 <= n; cut2++) {
            int sv[2];
            nonblocking_pair(sv);
            struct evbuffer *in = in_three_chunks(src, n, cut1, cut2);
            struct evbuffer *out = evbuffer_new();
            if (frozen)
                evbuffer_freeze(out, 1);
            struct relay r = {0};
            struct rewriting rw = {.out = out};
            struct flushing fl = {.out = out, .fd = sv[0], .frozen = frozen};
            enum relay_result res = pump_with(i, in, NULL, 0, out, sv[0], &r, &rw, &fl);
            char what[128];
            snprintf(what, sizeof(what), "%s, frozen %d: cuts %zu %zu", types, frozen, cut1, cut2);
            cr_assert_eq(res, RELAY_STOPPED, "%s", what);
            cr_assert_eq(evbuffer_get_length(in), 6, "the message after the stop stays");
            expect_stream_and_close(sv, in, out, want, wn, what);
        }
}

/* Sent straight from the input, the destination's stream is the one the copying pump makes,
 * whatever the chunks, whether the inspector adds to out or writes out to the socket itself;
 * and the passed messages before any write of the inspector's still come first. */
Test(relay, messages_sent_straight_from_the_input_keep_their_order)
{
    expect_stream_at_every_cut("aBcdaEa", "aXcaE", ADDS, false);
    expect_stream_at_every_cut("aBcdaEa", "aXcaE", FLUSHES, false);
    expect_stream_at_every_cut("aBcdaEa", "aXcaE", FLUSHES, true);
}

/* An inspector's writes before a run, inside one that began after an earlier write, and
 * drops inside a run: each keeps its place, with out's front frozen or not. */
Test(relay, runs_after_an_inspectors_write_keep_their_place)
{
    expect_stream_at_every_cut("PaPcdaBaEa", "CPaCPcaXaE", WRITES_BEFORE_P, false);
    expect_stream_at_every_cut("PaPcdaBaEa", "CPaCPcaXaE", WRITES_BEFORE_P, true);
}

/* An inspector that writes a 'C' of its own before the first message it sees, and at the
 * hundredth, passing them all. */
struct first_writer {
    struct evbuffer *out;
    int seen;
};

static enum relay_verdict write_at_first(void *arg, uint8_t type, uint32_t len, const uint8_t *body)
{
    struct first_writer *fw = arg;
    (void)type, (void)len, (void)body;
    if (fw->seen == 0 || fw->seen == 100)
        add_msg(fw->out, 'C', "C", 1);
    fw->seen++;
    return RV_PASS;
}

/* What the socket does not take waits in out, in order; something already waiting in out
 * goes to the socket ahead of the messages (they never overtake it); what an inspector writes
 * before a run goes to the socket with it, ahead of it, and one written inside it after the
 * part before it (the output's front frozen, as libevent keeps a socket's). */
Test(relay, a_socket_that_takes_part_leaves_the_rest_in_out_in_order)
{
    enum { N = 200, BODY = 1000 }; /* under RELAY_HIGH_WATER in all */
    static uint8_t src[N * (BODY + 5)], got[N * (BODY + 5) + 64];
    char body[BODY];
    struct evbuffer *msgs = evbuffer_new();
    for (int i = 0; i < N; i++) {
        memset(body, 'a' + i % 26, sizeof(body));
        body[0] = (char)i;
        add_msg(msgs, 'a', body, sizeof(body));
    }
    size_t n = evbuffer_get_length(msgs);
    evbuffer_remove(msgs, src, n);
    evbuffer_free(msgs);
    for (int queued = 0; queued < 3; queued++) {
        int sv[2];
        nonblocking_pair(sv);
        int small = 4096;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
        evbuffer_add(in, src, n);
        if (queued == 1)
            add_msg(out, 'q', "q", 1);
        evbuffer_freeze(out, 1);
        struct relay r = {0};
        struct rewriting rw = {.out = out};
        struct first_writer fw = {.out = out};
        const char *err;
        cr_assert_eq(queued == 2
                         ? relay_pump_to(in, out, sv[0], &r, 1 << 20, write_at_first, &fw, &err)
                         : relay_pump_to(in, out, sv[0], &r, 1 << 20, rewrite_some, &rw, &err),
                     RELAY_MORE);
        cr_assert_eq(evbuffer_get_length(in), 0);
        size_t gn = stream_of(sv[1], out, got, sizeof(got));
        if (queued == 2) { /* C, 100 messages, C, the rest */
            size_t cut = 100 * (BODY + 5);
            cr_assert_eq(gn, n + 12);
            cr_assert(got[0] == 'C' && got[cut + 6] == 'C', "each write in its place");
            cr_assert(memcmp(got + 6, src, cut) == 0);
            cr_assert(memcmp(got + cut + 12, src + cut, n - cut) == 0);
            evbuffer_free(in);
            evbuffer_free(out);
            close(sv[0]);
            close(sv[1]);
            continue;
        }
        size_t skip = queued ? 6 : 0;
        cr_assert_eq(gn, n + skip, "queued %d", queued);
        if (queued)
            cr_assert_eq(got[0], 'q', "what waited in out comes first");
        cr_assert(memcmp(got + skip, src, n) == 0, "queued %d", queued);
        evbuffer_free(in);
        evbuffer_free(out);
        close(sv[0]);
        close(sv[1]);
    }
}

/* Messages of the given types arriving in two reads cut at every point, each read judged
 * before it is buffered (relay_pump_span, with what the first left in the input, its end
 * frozen as libevent keeps a socket's): the destination's stream is always want's, the pump
 * stops at 'E', and what follows the stop waits in the input. */
static void expect_stream_from_two_reads(const char *types, const char *want_types,
                                         enum inspector i, bool frozen)
{
    uint8_t src[256], want[256];
    size_t n = msgs_of(types, src, sizeof(src));
    size_t wn = msgs_of(want_types, want, sizeof(want));
    for (size_t cut = 0; cut <= n; cut++) {
        int sv[2];
        nonblocking_pair(sv);
        struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
        evbuffer_freeze(in, 0);
        if (frozen)
            evbuffer_freeze(out, 1);
        struct relay r = {0};
        struct rewriting rw = {.out = out};
        struct flushing fl = {.out = out, .fd = sv[0], .frozen = frozen};
        enum relay_result res = pump_with(i, in, src, cut, out, sv[0], &r, &rw, &fl);
        size_t fed = cut;
        if (res != RELAY_STOPPED) {
            cr_assert_eq(res, RELAY_MORE, "%s: cut %zu", types, cut);
            fed = n;
            res = pump_with(i, in, src + cut, n - cut, out, sv[0], &r, &rw, &fl);
        }
        char what[128];
        snprintf(what, sizeof(what), "%s, frozen %d: cut %zu", types, frozen, cut);
        cr_assert_eq(res, RELAY_STOPPED, "%s", what);
        evbuffer_unfreeze(in, 0); /* the second read, when the stop came in the first */
        evbuffer_add(in, src + fed, n - fed);
        cr_assert_eq(evbuffer_get_length(in), 6, "%s", what);
        cr_assert(memcmp(evbuffer_pullup(in, 6), src + n - 6, 6) == 0,
                  "the message after the stop stays whole");
        expect_stream_and_close(sv, in, out, want, wn, what);
    }
}

/* A read judged before it is buffered gives the stream the buffered pump gives, whatever
 * the point where the reads are cut, whatever the inspector does; the rest of the read (a
 * message cut by its end, the messages after a stop) is left in the input, in order. */
Test(relay, a_read_judged_before_it_is_buffered_gives_the_same_stream)
{
    expect_stream_from_two_reads("aBcdaEa", "aXcaE", ADDS, false);
    expect_stream_from_two_reads("aBcdaEa", "aXcaE", FLUSHES, false);
    expect_stream_from_two_reads("aBcdaEa", "aXcaE", FLUSHES, true);
    expect_stream_from_two_reads("PaPcdaBaEa", "CPaCPcaXaE", WRITES_BEFORE_P, false);
    expect_stream_from_two_reads("PaPcdaBaEa", "CPaCPcaXaE", WRITES_BEFORE_P, true);
}

/* A read that arrives while a big message streams goes on streaming it (the rest of the
 * message, then the next, judged whole); a read that arrives while the destination is full
 * waits in the input, whole. */
Test(relay, a_read_during_a_stream_or_a_full_destination_is_buffered)
{
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    struct relay r = {0};
    struct seen s = {0};
    const char *err;
    struct buf m;
    big_data_row(&m);
    cr_assert_eq(
        relay_pump_span(in, m.data, 1000, out, -1, &r, 1 << 20, pass_z_stream_rest, &s, &err),
        RELAY_MORE);
    cr_assert_eq(evbuffer_get_length(out), 1000, "the start of a big message streams at once");
    cr_assert_eq(evbuffer_get_length(in), 0);
    uint8_t tail[128];
    size_t rest = m.len - 1000;
    evbuffer_drain(out, evbuffer_get_length(out)); /* the socket took it */
    size_t piece = rest - 100;                     /* all but the last 100 bytes */
    cr_assert_eq(relay_pump_span(in, m.data + 1000, piece, out, -1, &r, 1 << 20, pass_z_stream_rest,
                                 &s, &err),
                 RELAY_MORE);
    cr_assert_eq(evbuffer_get_length(out), piece);
    evbuffer_drain(out, piece);
    struct evbuffer *z = evbuffer_new();
    evbuffer_add(z, m.data + 1000 + piece, 100);
    add_msg(z, 'Z', "I", 1);
    size_t zn = evbuffer_get_length(z);
    evbuffer_remove(z, tail, zn);
    evbuffer_free(z);
    cr_assert_eq(relay_pump_span(in, tail, zn, out, -1, &r, 1 << 20, pass_z_stream_rest, &s, &err),
                 RELAY_STOPPED);
    cr_assert_eq(evbuffer_get_length(out), zn);
    cr_assert_eq(s.messages, 1);
    cr_assert_eq(s.bodies, 1, "the message after the stream is judged whole");
    cr_assert_eq(evbuffer_get_length(in), 0);
    /* a full destination: the read waits in the input, whole */
    evbuffer_add(out, big, sizeof(big));
    while (evbuffer_get_length(out) <= RELAY_HIGH_WATER)
        evbuffer_add(out, big, sizeof(big));
    size_t before = evbuffer_get_length(out);
    cr_assert_eq(
        relay_pump_span(in, tail + 100, 6, out, -1, &r, 1 << 20, pass_z_stream_rest, &s, &err),
        RELAY_FULL);
    cr_assert_eq(evbuffer_get_length(out), before);
    cr_assert_eq(evbuffer_get_length(in), 6);
    buf_free(&m);
    evbuffer_free(in);
    evbuffer_free(out);
}

/* libevent's allocator for the tests below: while failing_allocs is set, fails every call
 * asking for more than failing_above bytes. */
static bool failing_allocs;
static size_t failing_above;
static void *test_malloc(size_t n)
{
    return failing_allocs && n > failing_above ? NULL : malloc(n);
}
static void *test_realloc(void *p, size_t n)
{
    return failing_allocs && n > failing_above ? NULL : realloc(p, n);
}

static enum relay_verdict pass_all(void *arg, uint8_t type, uint32_t len, const uint8_t *body)
{
    (void)arg, (void)type, (void)len, (void)body;
    return RV_PASS;
}

/* A message the pump cannot add to its destination (out of memory) fails the pump: it is not
 * dropped while the pump goes on as if it had passed (its client would wait for it forever). */
Test(relay, a_message_that_cannot_be_added_to_its_destination_fails_the_pump)
{
    event_set_mem_functions(test_malloc, test_realloc, free); /* (this test's process only) */
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    add_msg(in, 'Z', "I", 1);
    add_msg(in, 'Z', "I", 1);
    struct relay r = {0};
    const char *err = NULL;
    failing_allocs = true;
    enum relay_result res = relay_pump(in, out, &r, 1 << 20, pass_all, NULL, &err);
    failing_allocs = false;
    cr_expect_eq(res, RELAY_FAILED, "the pump went on after losing a message");
    cr_expect(err == relay_out_of_memory, "%s", err ? err : "no error");
    evbuffer_free(in);
    evbuffer_free(out);
}

/* Three simple Queries, small, big (100,000 bytes) and small, into in: in one piece, or cut
 * 10 bytes into the second; returns the first one's length. */
static size_t add_small_big_small(struct evbuffer *in, bool cut)
{
    struct buf m;
    buf_init(&m);
    buf_msg_start(&m, 'Q');
    buf_put_bytes(&m, "A", 2);
    buf_msg_finish(&m);
    size_t first = m.len;
    buf_msg_start(&m, 'Q');
    buf_put_bytes(&m, big, sizeof(big));
    buf_msg_finish(&m);
    buf_msg_start(&m, 'Q');
    buf_put_bytes(&m, "C", 2);
    buf_msg_finish(&m);
    size_t at = cut ? first + 10 : m.len;
    evbuffer_add(in, m.data, at);
    evbuffer_add(in, m.data + at, m.len - at);
    buf_free(&m);
    return first;
}

/* Pumps in to out with every allocation above 4096 bytes failing (the first message's room in
 * out can be had, the second's not); *err gets the pump's error. */
static enum relay_result pump_short_of_memory(struct evbuffer *in, struct evbuffer *out,
                                              const char **err)
{
    struct relay r = {0};
    failing_above = 4096;
    failing_allocs = true;
    enum relay_result res = relay_pump(in, out, &r, 1 << 20, pass_all, NULL, err);
    failing_allocs = false;
    return res;
}

/* ... and nothing after the lost message follows it (a COMMIT behind a lost UPDATE would
 * commit a transaction without it): here the big middle message cannot be added, the small
 * one after it could, and must not be. */
Test(relay, nothing_after_a_lost_message_follows_it)
{
    event_set_mem_functions(test_malloc, test_realloc, free); /* (this test's process only) */
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    size_t first = add_small_big_small(in, false); /* the pump's fast path takes them in turn */
    const char *err = NULL;
    cr_expect_eq(pump_short_of_memory(in, out, &err), RELAY_FAILED);
    cr_expect_eq(evbuffer_get_length(out), first, "only the message before the lost one went");
    evbuffer_free(in);
    evbuffer_free(out);
}

/* A message moved from the input in part of a piece (libevent then copies that part, and says
 * nothing when it cannot) that did not all arrive in out fails the pump too. */
Test(relay, a_message_only_partly_moved_to_its_destination_fails_the_pump)
{
    event_set_mem_functions(test_malloc, test_realloc, free); /* (this test's process only) */
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    add_small_big_small(in, true); /* the big one: part of the first piece, part of the next */
    const char *err = NULL;
    cr_expect_eq(pump_short_of_memory(in, out, &err), RELAY_FAILED,
                 "a message lost in the move went unnoticed");
    cr_expect(err == relay_out_of_memory);
    evbuffer_free(in);
    evbuffer_free(out);
}
