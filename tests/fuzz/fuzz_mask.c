/* fuzz_mask.c: the masking rewriter. The first byte picks how many columns (up to 16), the
 * next ones each column's function, type class, format and whether it is masked; the rest is a
 * DataRow body. Also: the input as a masking function spec. */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "mask.h"

static const struct mask_fn fns[] = {
    {MASK_REDACT, 0, 0, NULL},         {MASK_NULL, 0, 0, NULL},
    {MASK_PARTIAL, 1, 2, NULL},        {MASK_EMAIL, 0, 0, NULL},
    {MASK_LAST4, 0, 0, NULL},          {MASK_HASH, 0, 0, NULL},
    {MASK_FIXED, 0, 0, (char *)"n/a"}, {MASK_PARTIAL, 0, 0, (char *)"#"},
};

int fuzz_mask(const uint8_t *data, size_t size)
{
    struct mask_col cols[16];
    struct buf out;
    const char *err;
    if (size < 2)
        return 0;
    uint16_t n = data[0] % 17;
    if (size < 2 + (size_t)n)
        return 0;
    uint16_t masked = 0;
    for (uint16_t i = 0; i < n; i++) {
        uint8_t b = data[2 + i];
        cols[i] = (struct mask_col){(b & 1) ? &fns[(b >> 1) % 8] : NULL,
                                    (enum mask_type_class)((b >> 4) % 9), (int16_t)(b >> 7)};
        masked += (b & 1);
    }
    static const uint8_t key[] = "0123456789abcdef";
    struct mask_plan plan = {cols,
                             n,
                             masked,
                             (enum mask_charset)(data[1] % 3),
                             {key, (data[1] & 4) ? sizeof(key) - 1 : 0}};
    buf_init(&out);
    mask_datarow(&plan, data + 2 + n, size - 2 - n, &out, &err);
    buf_free(&out);

    char *spec = malloc(size + 1);
    if (spec) {
        memcpy(spec, data, size);
        spec[size] = '\0';
        struct mask_fn f;
        size_t at;
        char why[200];
        if (mask_fn_parse(spec, &f, &at, why, sizeof(why)))
            mask_fn_free(&f);
        free(spec);
    }
    return 0;
}

#ifdef FUZZ_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_mask(data, size);
}
#endif
