/* fuzz_server.c: a server's message stream through the relay and the backend parsers. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "buf.h"
#include "fuzz.h"
#include "proto.h"

/* The SASL exchange of one login, its server messages taken from the stream. */
static struct scram_client sc;
static bool started;

static void sasl_steps(uint32_t code, const uint8_t *data, size_t len)
{
    char *out = NULL;
    const char *err;
    if (code == 10 && proto_sasl_offers(data, len, "SCRAM-SHA-256")) {
        scram_client_free(&sc);
        memset(&sc, 0, sizeof(sc));
        started = scram_client_first(&sc, "", "password", NULL, &out);
    } else if (code == 11 && started) {
        scram_client_final(&sc, (const char *)data, len, &out, &err);
    } else if (code == 12 && started) {
        scram_client_verify(&sc, (const char *)data, len, &err);
    }
    free(out);
}

static enum relay_verdict inspect(void *arg, uint8_t type, uint32_t len, const uint8_t *body)
{
    (void)arg;
    struct pg_error e;
    const char *name, *value;
    uint32_t pid, key, code;
    const uint8_t *data;
    size_t dlen;
    char status;
    if (!body)
        return len <= 65536 ? RV_NEED_BODY : RV_STREAM;
    switch (type) {
    case 'E':
    case 'N': proto_parse_error(body, len, &e); break;
    case 'S': proto_parse_param_status(body, len, &name, &value); break;
    case 'K': proto_parse_backend_key(body, len, &pid, &key); break;
    case 'Z': proto_parse_ready(body, len, &status); break;
    case 'R':
        if (proto_parse_auth(body, len, &code, &data, &dlen))
            sasl_steps(code, data, dlen);
        break;
    }
    return RV_PASS;
}

int fuzz_server_stream(const uint8_t *data, size_t size)
{
    memset(&sc, 0, sizeof(sc));
    started = false;
    fuzz_pump(data, size, inspect);
    scram_client_free(&sc);
    return 0;
}

#ifdef FUZZ_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_server_stream(data, size);
}
#endif
