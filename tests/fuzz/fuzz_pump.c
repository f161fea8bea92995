/* fuzz_pump.c: the relay loop the stream targets share. */
#include <event2/buffer.h>

#include "fuzz.h"

/* Pumps all of data through the relay with inspector fn, draining what it forwards. */
void fuzz_pump(const uint8_t *data, size_t size, relay_inspect_fn fn)
{
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    struct relay r = {0};
    const char *err;
    evbuffer_add(in, data, size);
    while (relay_pump(in, out, &r, 1 << 20, fn, NULL, &err) == RELAY_FULL)
        evbuffer_drain(out, evbuffer_get_length(out));
    evbuffer_free(in);
    evbuffer_free(out);
}
