/* test_fuzz_corpus.c: every input committed under tests/fuzz/corpus/<target>/ (seeds, and
 * whatever `make fuzz` once found) goes through its fuzz target again: a crash, leak or
 * out-of-bounds read shows here under `make check SANITIZE=1`. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

/* Feeds every file of tests/fuzz/corpus/<name> to fn; returns how many. */
static int replay(const char *name, int (*fn)(const uint8_t *, size_t))
{
    char dir[256], path[512];
    snprintf(dir, sizeof(dir), "tests/fuzz/corpus/%s", name);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "no corpus at %s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f, "%s", path);
        static uint8_t buf[1 << 20];
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        uint8_t *copy = malloc(len ? len : 1); /* exactly sized: ASan sees any over-read */
        memcpy(copy, buf, len);
        cr_expect_eq(fn(copy, len), 0, "%s", path);
        free(copy);
        n++;
    }
    closedir(d);
    return n;
}

Test(fuzz_corpus, client_stream)
{
    cr_expect_geq(replay("client", fuzz_client_stream), 5);
}
Test(fuzz_corpus, server_stream)
{
    cr_expect_geq(replay("server", fuzz_server_stream), 5);
}
Test(fuzz_corpus, startup)
{
    cr_expect_geq(replay("startup", fuzz_startup), 3);
}
Test(fuzz_corpus, config)
{
    cr_expect_geq(replay("config", fuzz_config), 3);
}
Test(fuzz_corpus, mask)
{
    cr_expect_geq(replay("mask", fuzz_mask), 3);
}
