/* fuzz_startup.c: a startup packet, then (what follows it) a SASL exchange against the proxy:
 * SASLInitialResponse and SASLResponse, as a client would send them before it is trusted. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "buf.h"
#include "fuzz.h"
#include "params.h"
#include "proto.h"

/* "password" under SCRAM-SHA-256, 4096 iterations. */
static const char verifier_text[] = "SCRAM-SHA-256$4096:bG9uZ2VyLXNhbHQtdmFsdWU=$"
                                    "3uknSB7++pvC7T1B4UG79zfjZD45qLZojqNZGgCT1+E=:"
                                    "PAKRpsZo74bh6Y2UXxqig2ueBAwZ9VeAONmAlD7d52o=";

/* The two client messages of a SASL exchange, split at the first 0xff byte of rest. */
static void sasl_exchange(const uint8_t *rest, size_t len)
{
    struct scram_verifier v;
    struct scram_server s;
    const char *mech, *err;
    const uint8_t *data;
    size_t dlen;
    char *out = NULL;
    const uint8_t *cut = memchr(rest, 0xff, len);
    size_t first = cut ? (size_t)(cut - rest) : len;
    if (!scram_parse_verifier(verifier_text, &v))
        return;
    scram_server_init(&s, &v);
    if (proto_parse_sasl_initial(rest, first, &mech, &data, &dlen) &&
        scram_server_handle_first(&s, (const char *)data, dlen, NULL, &out, &err) && cut) {
        free(out);
        out = NULL;
        scram_server_handle_final(&s, (const char *)cut + 1, len - first - 1, &out, &err);
    }
    free(out);
    scram_server_free(&s);
}

int fuzz_startup(const uint8_t *data, size_t size)
{
    uint32_t len;
    const char *err;
    struct startup st;
    struct param_set ps = {0};
    if (size < 4 || proto_check_startup_len(data, &len, &err) != PROTO_OK || len > size)
        return 0;
    if (proto_parse_startup(data, len, &st, &err)) {
        startup_get(&st, "user");
        char why[200];
        params_from_startup(&st, &ps, NULL, why, sizeof(why));
        param_clear(&ps);
    }
    sasl_exchange(data + len, size - len);
    return 0;
}

#ifdef FUZZ_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_startup(data, size);
}
#endif
