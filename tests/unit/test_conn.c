/* test_conn.c: plain sockets read with conn_read_direct behave as libevent's own reads: data
 * reaches the read callback, the read limit stops reading and room below it resumes it, EOF
 * is one event with reads disabled, and a callback may free its bufferevent. */
#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"

struct side {
    struct event_base *base;
    struct bufferevent *bev;
    int peer;
    int reads;
    size_t seen, most; /* input length at the last read callback; most added by one read */
    short events;
    bool free_on_read;
    int offered;     /* reads offered to the fast path */
    size_t taken;    /* bytes it consumed */
    size_t take_max; /* it consumes at most this much of a read, buffering the rest */
    bool decline;    /* it declines every read */
};

static void on_read(struct bufferevent *bev, void *arg)
{
    struct side *s = arg;
    size_t len = evbuffer_get_length(bufferevent_get_input(bev));
    s->reads++;
    if (len - s->seen > s->most)
        s->most = len - s->seen;
    s->seen = len;
    if (s->free_on_read) {
        bufferevent_free(bev);
        s->bev = NULL;
    }
}

/* on_read for sides with a fast path (fast paths are registered by read callback: this keeps
 * on_read's sides without one). */
static void on_read_fast(struct bufferevent *bev, void *arg)
{
    on_read(bev, arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct side *s = arg;
    s->events = what;
}

/* A read callback's fast path that declines (s->decline) or consumes up to s->take_max bytes
 * of a read and adds the rest to the input (thawing its end, which libevent keeps frozen). */
static bool take_some(void *arg, const uint8_t *p, size_t n)
{
    struct side *s = arg;
    s->offered++;
    if (s->decline)
        return false;
    size_t k = n < s->take_max ? n : s->take_max;
    s->taken += k;
    struct evbuffer *in = bufferevent_get_input(s->bev);
    evbuffer_unfreeze(in, 0);
    evbuffer_add(in, p + k, n - k);
    evbuffer_freeze(in, 0);
    return true;
}

/* A socket bufferevent reading directly with read fast path take (or NULL), at most limit bytes
 * buffered (0: no limit), from one end of a socketpair; s->peer is the other. */
static void open_side_taking(struct side *s, size_t limit, conn_take_fn take)
{
    int sv[2];
    memset(s, 0, sizeof(*s));
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    s->base = event_base_new();
    s->bev = bufferevent_socket_new(s->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    s->peer = sv[1];
    bufferevent_setcb(s->bev, take ? on_read_fast : on_read, NULL, on_event, s);
    bufferevent_enable(s->bev, EV_READ);
    conn_read_direct(s->bev, limit, take); /* reads already enabled: they stay enabled */
}

static void open_side_limited(struct side *s, size_t limit)
{
    open_side_taking(s, limit, NULL);
}

static void open_side(struct side *s)
{
    open_side_limited(s, 0);
}

static void close_side(struct side *s)
{
    if (s->bev)
        bufferevent_free(s->bev);
    if (s->peer >= 0)
        close(s->peer);
    event_base_free(s->base);
}

static void spin(struct side *s)
{
    for (int i = 0; i < 20; i++)
        event_base_loop(s->base, EVLOOP_NONBLOCK);
}

static size_t input_len(struct side *s)
{
    return evbuffer_get_length(bufferevent_get_input(s->bev));
}

Test(conn, direct_reads_deliver_what_arrives_in_chunks)
{
    struct side s;
    open_side(&s);
    static char big[40000];
    memset(big, 'x', sizeof(big));
    cr_assert_eq(write(s.peer, big, sizeof(big)), (ssize_t)sizeof(big));
    spin(&s);
    cr_expect_eq(input_len(&s), sizeof(big));
    cr_expect_eq(s.most, 16384, "one read event reads at most one chunk");
    cr_expect_eq(s.reads, 3);
    cr_expect_eq(s.events, 0);
    close_side(&s);
}

Test(conn, the_read_limit_stops_reading_until_room_is_made)
{
    struct side s;
    open_side_limited(&s, 1000);
    bufferevent_setcb(s.bev, NULL, NULL, on_event, &s); /* nobody drains in a callback */
    char data[5000];
    memset(data, 'y', sizeof(data));
    cr_assert_eq(write(s.peer, data, sizeof(data)), (ssize_t)sizeof(data));
    spin(&s);
    cr_expect_eq(input_len(&s), 1000, "never reads past the limit");
    spin(&s);
    cr_expect_eq(input_len(&s), 1000, "reading is suspended at the limit");
    evbuffer_drain(bufferevent_get_input(s.bev), 1000);
    spin(&s);
    cr_expect_eq(input_len(&s), 0, "drained elsewhere: no reading until told");
    conn_read_resume(s.bev);
    spin(&s);
    cr_expect_eq(input_len(&s), 1000, "reading resumed once drained");
    bufferevent_enable(s.bev, EV_READ); /* an enable at the limit reads nothing more */
    spin(&s);
    cr_expect_eq(input_len(&s), 1000);
    cr_expect_eq(s.events, 0);
    close_side(&s);
}

/* A read callback that drains the input: reading goes on by itself past the limit's worth. */
static void drain_on_read(struct bufferevent *bev, void *arg)
{
    struct side *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    s->seen += evbuffer_get_length(in);
    s->reads++;
    evbuffer_drain(in, evbuffer_get_length(in));
}

Test(conn, a_read_callback_that_drains_keeps_reading_going)
{
    struct side s;
    open_side_limited(&s, 1000);
    bufferevent_setcb(s.bev, drain_on_read, NULL, on_event, &s);
    char data[5000];
    memset(data, 'z', sizeof(data));
    cr_assert_eq(write(s.peer, data, sizeof(data)), (ssize_t)sizeof(data));
    spin(&s);
    cr_expect_eq(s.seen, sizeof(data));
    cr_expect_eq(s.reads, 5, "1000 bytes a read");
    close_side(&s);
}

/* A read high watermark set the libevent way before direct reads becomes the limit. */
Test(conn, a_watermark_set_before_is_replaced_by_the_limit)
{
    struct side s;
    int sv[2];
    memset(&s, 0, sizeof(s));
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    s.base = event_base_new();
    s.bev = bufferevent_socket_new(s.base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    s.peer = sv[1];
    bufferevent_setcb(s.bev, NULL, NULL, on_event, &s);
    bufferevent_setwatermark(s.bev, EV_READ, 0, 100);
    bufferevent_enable(s.bev, EV_READ);
    char data[5000];
    memset(data, 'w', sizeof(data));
    cr_assert_eq(write(s.peer, data, sizeof(data)), (ssize_t)sizeof(data));
    spin(&s);
    cr_expect_eq(input_len(&s), 100, "libevent's watermark, before");
    conn_read_direct(s.bev, 3000, NULL);
    conn_read_resume(s.bev);
    spin(&s);
    cr_expect_eq(input_len(&s), 3000, "the limit, after");
    close_side(&s);
}

Test(conn, eof_is_one_event_and_disables_reads)
{
    struct side s;
    open_side(&s);
    cr_assert_eq(write(s.peer, "abc", 3), 3);
    close(s.peer);
    s.peer = -1;
    spin(&s);
    cr_expect_eq(input_len(&s), 3, "the data comes before the EOF");
    cr_expect_eq(s.events, BEV_EVENT_READING | BEV_EVENT_EOF);
    cr_expect_eq(bufferevent_get_enabled(s.bev) & EV_READ, 0);
    close_side(&s);
}

Test(conn, hooking_a_disabled_bufferevent_keeps_it_disabled)
{
    struct side s;
    open_side(&s);
    bufferevent_disable(s.bev, EV_READ);
    conn_read_direct(s.bev, 0, NULL); /* a second call is a no-op */
    cr_assert_eq(write(s.peer, "abc", 3), 3);
    spin(&s);
    cr_expect_eq(s.reads, 0);
    bufferevent_enable(s.bev, EV_READ);
    spin(&s);
    cr_expect_eq(s.reads, 1);
    cr_expect_eq(input_len(&s), 3);
    close_side(&s);
}

Test(conn, a_read_callback_may_free_its_bufferevent)
{
    struct side s;
    open_side(&s);
    s.free_on_read = true;
    cr_assert_eq(write(s.peer, "abc", 3), 3);
    spin(&s);
    cr_expect_eq(s.reads, 1);
    cr_expect_null(s.bev);
    close_side(&s);
}

/* Every read is offered to the fast path, also while the input holds bytes. What the fast path
 * takes never reaches the read callback; what it leaves in the input stays there, ahead of the
 * next read's bytes; a declined read reaches the read callback whole, after them. */
Test(conn, the_fast_path_gets_every_read_and_what_it_declines_is_buffered_in_order)
{
    struct side s;
    open_side_taking(&s, 0, take_some);
    s.take_max = SIZE_MAX;
    cr_assert_eq(write(s.peer, "abcdef", 6), 6);
    spin(&s);
    cr_expect_eq(s.offered, 1);
    cr_expect_eq(s.taken, 6);
    cr_expect_eq(s.reads, 0, "taken: the read callback does not run");
    cr_expect_eq(input_len(&s), 0);
    s.take_max = 2;
    cr_assert_eq(write(s.peer, "ghijk", 5), 5);
    spin(&s);
    cr_expect_eq(s.offered, 2);
    cr_expect_eq(s.reads, 0);
    cr_expect_eq(input_len(&s), 3, "the fast path left the rest in the input");
    s.decline = true;
    cr_assert_eq(write(s.peer, "lm", 2), 2);
    spin(&s);
    cr_expect_eq(s.offered, 3, "offered, though the input holds something");
    cr_expect_eq(s.reads, 1, "declined: the read callback runs");
    char got[8] = {0};
    evbuffer_remove(bufferevent_get_input(s.bev), got, sizeof(got) - 1);
    cr_expect_str_eq(got, "ijklm", "the rest first, then the next read");
    cr_assert_eq(write(s.peer, "nop", 3), 3);
    spin(&s);
    cr_expect_eq(s.offered, 4);
    cr_expect_eq(s.reads, 2, "declined: the read callback runs");
    cr_expect_eq(input_len(&s), 3);
    close_side(&s);
}
