/* fuzz_pump.c: the relay loop the stream targets share. The bytes go through the relay twice:
 * all buffered at once, and in reads of varying length judged before they are buffered
 * (relay_pump_span, as conn.c's fast path does); the two must forward the same bytes and end
 * the same way. */
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

enum { MAX_MESSAGE = 1 << 20 };

/* Pumps in to out until the result is not RELAY_FULL, moving what is forwarded to sink (the
 * destination takes everything). */
static enum relay_result pump_all(struct evbuffer *in, struct evbuffer *out, struct relay *r,
                                  enum relay_result res, relay_inspect_fn fn, struct evbuffer *sink)
{
    const char *err;
    evbuffer_add_buffer(sink, out);
    while (res == RELAY_FULL) {
        res = relay_pump(in, out, r, MAX_MESSAGE, fn, NULL, &err);
        evbuffer_add_buffer(sink, out);
    }
    return res;
}

/* All of data buffered, then pumped. */
static enum relay_result pump_buffered(const uint8_t *data, size_t size, relay_inspect_fn fn,
                                       struct evbuffer *sink)
{
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    struct relay r = {0};
    const char *err;
    evbuffer_add(in, data, size);
    enum relay_result res = relay_pump(in, out, &r, MAX_MESSAGE, fn, NULL, &err);
    res = pump_all(in, out, &r, res, fn, sink);
    evbuffer_free(in);
    evbuffer_free(out);
    return res;
}

/* data arriving in reads of varying length, each judged in place (after what the input holds
 * from the reads before); no more reads once the pump stops or fails. */
static enum relay_result pump_reads(const uint8_t *data, size_t size, relay_inspect_fn fn,
                                    struct evbuffer *sink)
{
    static const size_t lens[] = {1, 3, 5, 6, 64, 4096, 70000};
    enum { N_LENS = sizeof(lens) / sizeof(lens[0]) };
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    struct relay r = {0};
    const char *err;
    enum relay_result res = RELAY_MORE;
    for (size_t off = 0, i = size; off < size && res == RELAY_MORE; i++) {
        size_t n = lens[i % N_LENS] < size - off ? lens[i % N_LENS] : size - off;
        res = relay_pump_span(in, data + off, n, out, -1, &r, MAX_MESSAGE, fn, NULL, &err);
        res = pump_all(in, out, &r, res, fn, sink);
        off += n;
    }
    evbuffer_free(in);
    evbuffer_free(out);
    return res;
}

void fuzz_pump(const uint8_t *data, size_t size, relay_inspect_fn fn)
{
    struct evbuffer *whole = evbuffer_new(), *reads = evbuffer_new();
    enum relay_result a = pump_buffered(data, size, fn, whole);
    enum relay_result b = pump_reads(data, size, fn, reads);
    size_t n = evbuffer_get_length(whole);
    if (a != b || n != evbuffer_get_length(reads) ||
        (n > 0 && memcmp(evbuffer_pullup(whole, -1), evbuffer_pullup(reads, -1), n) != 0))
        abort(); /* reads judged in place forwarded something else */
    evbuffer_free(whole);
    evbuffer_free(reads);
}
