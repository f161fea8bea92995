/* relay.h: moves whole PostgreSQL messages from one evbuffer to another, streaming large
 * bodies without buffering them, and lets the caller look at the messages it cares about. */
#ifndef LAKEPROXY_RELAY_H
#define LAKEPROXY_RELAY_H

#include <event2/buffer.h>
#include <stddef.h>
#include <stdint.h>

#include "objects.h"

/* What the inspector wants done with a message. */
enum relay_verdict {
    RV_STREAM,    /* forward, streaming the body as it arrives (after a body call: pass) */
    RV_NEED_BODY, /* call me again with the whole body (only from the header call) */
    RV_PASS,      /* forward this whole message and go on */
    RV_PASS_STOP, /* forward it, then stop pumping */
    RV_DROP,      /* discard it and go on */
    RV_DROP_STOP, /* discard it, then stop pumping */
    RV_ERROR,     /* protocol violation: stop, the caller closes */
    RV_WAIT,      /* leave the message where it is and stop: the caller pumps again later
                     (and the inspector sees it again, header call first) */
};

/* Called with body == NULL (header only), and, when that answered RV_NEED_BODY, once more
 * with the whole body. Any verdict other than RV_STREAM waits until the whole message is
 * buffered, and the header call is then repeated as more bytes arrive: a header call that
 * answers anything but RV_STREAM may have only side effects that repeating does not change
 * (the server inspectors flush masked rows and end a COPY there). An inspector only looks and
 * records: it must
 * not call into connection logic that could pump the same buffer again, nor close either
 * connection (relay_pump_to may still send to the destination's socket after it returns). */
typedef enum relay_verdict (*relay_inspect_fn)(void *arg, uint8_t type, uint32_t body_len,
                                               const uint8_t *body);

enum relay_result {
    RELAY_MORE,    /* consumed what was there; wait for more input */
    RELAY_FULL,    /* destination above RELAY_HIGH_WATER: stop reading, resume on drain */
    RELAY_STOPPED, /* the inspector asked to stop */
    RELAY_FAILED,  /* bad framing or RV_ERROR; *err says why */
    RELAY_WAIT,    /* the inspector answered RV_WAIT: nothing of that message consumed */
};

enum relay_result relay_pump(struct evbuffer *in, struct evbuffer *out, struct relay *r,
                             size_t max_size, relay_inspect_fn fn, void *arg, const char **err);

/* relay_pump, with out the output of a plain socket direct_fd (or -1): while out holds little
 * (nothing, or an inspector's own small messages), the passed messages lying whole in the
 * input's first chunk are held back as runs, and the last is sent to direct_fd straight from
 * the input together with what out holds (one send, or sendmsg with out's pieces), what the
 * socket does not take now
 * staying in out in order; no copy into out, no buffer chain allocated and freed. Any write to
 * out while a run is held (an inspector's) must come after the run: whatever an inspector adds
 * to out directly is seen after its call and the run put in its place ahead of it; whatever
 * writes out to the socket must call relay_settle(out) first (conn_flush does). */
enum relay_result relay_pump_to(struct evbuffer *in, struct evbuffer *out, int direct_fd,
                                struct relay *r, size_t max_size, relay_inspect_fn fn, void *arg,
                                const char **err);

/* relay_pump_to for bytes p[0..n) just read from in's socket and not yet added to in: the
 * whole messages at their front are judged and passed straight from p, with no buffer chain
 * allocated, filled and freed; the rest is added to in (its frozen end thawed for it) and
 * pumped as relay_pump_to would, all before it returns. So whatever the result, in and out are
 * as relay_pump_to would have left them had p been added to in first, and nothing points
 * into p afterwards. When in holds the start of a message p ends (the last read cut it), only
 * that message's rest is added to in and relayed from there; the messages after it are judged
 * in p. Any other content of in: p is simply added after it. */
enum relay_result relay_pump_span(struct evbuffer *in, const uint8_t *p, size_t n,
                                  struct evbuffer *out, int direct_fd, struct relay *r,
                                  size_t max_size, relay_inspect_fn fn, void *arg,
                                  const char **err);

/* Puts a run relay_pump_to holds back for out into out, in its place: after what out held
 * when the run began, ahead of anything added since. */
void relay_settle(struct evbuffer *out);

/* Drains n bytes from the front of out, a socket's output (libevent keeps its front frozen:
 * thawed for it when it is). */
void relay_drain_front(struct evbuffer *out, size_t n);

/* For an inspector that could not write to an output (out of memory): the pump running it
 * fails with relay_out_of_memory after the message it is judging, and passes nothing more. */
void relay_note_lost(void);

/* The error a pump that could not add to its output ends with (compare the pointer). */
extern const char relay_out_of_memory[];

#endif
