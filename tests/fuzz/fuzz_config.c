/* fuzz_config.c: a YAML configuration file through the loader. */
#include "config.h"
#include "fuzz.h"

int fuzz_config(const uint8_t *data, size_t size)
{
    struct config_errors errs = {0};
    struct config *cfg = config_parse_string((const char *)data, size, "fuzz.yaml", &errs);
    config_free(cfg);
    config_errors_free(&errs);
    return 0;
}

#ifdef FUZZ_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_config(data, size);
}
#endif
