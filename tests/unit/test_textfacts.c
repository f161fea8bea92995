/* Tests of the keyword-scan facts the worker's memo of text shapes keeps per shape
 * (pipeline_text_facts through sqlkey_memo_shape): a Query whose shape the memo knew gets
 * exactly the facts a scan of its own text finds, whatever its constants. A wrong answer here
 * would let a BEGIN, DISCARD, SET or reserved name pass unseen by the pooler. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../src/pipeline.h"
#include "../../src/sqlkey.h"

/* Words and bytes that the scans look for or look around: every word of the keyword scan,
 * the reserved prefix, what says_reset, says_open and may_set_unreported read, and bytes a
 * number may border. */
static const char *const word_pieces[] = {"begin",
                                          "START",
                                          "chain",
                                          "deallocate",
                                          "DISCARD",
                                          "listen",
                                          "reset",
                                          "default",
                                          "LOCAL",
                                          "zone",
                                          "TO",
                                          "=",
                                          "set",
                                          "SET ",
                                          "schema",
                                          "names",
                                          "role",
                                          "search_path",
                                          "_timeout",
                                          "statement",
                                          "set_config(",
                                          "pg_settings",
                                          "DateStyle",
                                          "lp_",
                                          "LP_s1",
                                          "do ",
                                          "CALL ",
                                          ";",
                                          " ",
                                          "  ",
                                          ".",
                                          "e",
                                          "E",
                                          "_",
                                          "a",
                                          "x1",
                                          "(",
                                          ")",
                                          ",",
                                          "-",
                                          "+",
                                          "\n",
                                          "characteristics",
                                          "bytea_output",
                                          "authorization",
                                          "client_encoding",
                                          "extra_float",
                                          "default_transaction",
                                          "xmloption",
                                          "array_nulls",
                                          "intervalstyle",
                                          "timezone_abbreviations"};
/* Numbers of every form the scanner reads, ending in a digit or a point, and other constants
 * (whose texts the memo must not share facts between). */
static const char *const number_pieces[] = {"5",    "12",    "5.", "12.5", ".5",    "1e3",
                                            "1e+3", "1.e-2", "0",  "777",  ".5e-3", "9."};
static const char *const other_pieces[] = {"'begin'", "'x'", "$$reset$$", "E'lp_'", "'a;b'"};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static unsigned next(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 16;
}

/* A random text: one of a few starts (long enough for the memo to keep the text, or not), then
 * n pieces, each a constant when the bit of shape says so (a number, or sometimes another kind
 * when strings), else a word piece; the words from seed, the constants from constants_seed. */
static void random_text(char *out, size_t cap, unsigned seed, unsigned shape, int n,
                        unsigned constants_seed, bool strings)
{
    static const char *const starts[] = {"SELECT abalance FROM pgbench_accounts WHERE ",
                                         "UPDATE pgbench_tellers SET tbalance = tbalance + ", "",
                                         "set ", "BEGIN; SELECT a FROM t WHERE b = "};
    size_t len = (size_t)snprintf(out, cap, "%s", starts[seed % N_OF(starts)]);
    for (int i = 0; i < n && len + 40 < cap; i++) {
        unsigned w = next(&seed), k = next(&constants_seed);
        const char *piece = word_pieces[w % N_OF(word_pieces)];
        if (shape >> i & 1)
            piece = strings && k % 5 == 0 ? other_pieces[(k / 5) % N_OF(other_pieces)]
                                          : number_pieces[k % N_OF(number_pieces)];
        len += (size_t)snprintf(out + len, cap - len, "%s", piece);
    }
}

/* The memo's facts of every text are the scan's: random texts, then the same texts with other
 * constants (whose facts come from the memo when their shape is kept), all through one small
 * memo (one set: each text meets the four kept last). */
Test(textfacts, the_memo_gives_every_text_the_facts_its_scan_finds)
{
    struct sqlkey_secret secret = {3, 4};
    struct sqlkey_memo *m = sqlkey_memo_new(&secret, 1, pipeline_text_facts);
    cr_assert(m);
    char text[600], variant[600];
    uint64_t checked = 0, some = 0;
    for (unsigned t = 0; t < 20000; t++) {
        unsigned shape = t * 2654435761u;
        int n = 1 + (int)(t % 14);
        bool strings = t % 3 == 0;
        random_text(text, sizeof(text), t, shape, n, t, strings);
        struct sqlkey_shape sh = sqlkey_memo_shape(m, text);
        cr_assert(sh.has_facts);
        cr_assert_eq(sh.facts, pipeline_text_facts(text), "%s", text);
        for (unsigned v = 1; v < 4; v++) {
            random_text(variant, sizeof(variant), t, shape, n, t + v * 7919, strings);
            uint32_t facts = pipeline_text_facts(variant);
            sh = sqlkey_memo_shape(m, variant);
            cr_assert_eq(sh.facts, facts, "seen: %s\nnow:  %s", text, variant);
            some += facts != 0;
            checked++;
        }
    }
    cr_expect_eq(checked, 60000);
    cr_expect_gt(some, 10000, "the texts say what the scans look for");
    cr_expect_gt(sqlkey_memo_hits(m), 1000, "texts that differ in constants only are memoised");
    sqlkey_memo_free(m);
}

/* A number that ends in a point leaves the word after it a word of its own; one that ends in a
 * digit does not ("12begin" is no BEGIN): two such texts are not one shape. */
Test(textfacts, a_number_ending_otherwise_is_another_shape)
{
    struct sqlkey_secret secret = {5, 6};
    struct sqlkey_memo *m = sqlkey_memo_new(&secret, 1, pipeline_text_facts);
    cr_assert(m);
    const char *digit = "SELECT abalance FROM pgbench_accounts WHERE aid = 12begin";
    const char *point = "SELECT abalance FROM pgbench_accounts WHERE aid = 1.begin";
    cr_expect_eq(sqlkey_memo_shape(m, digit).facts & TEXT_OPENS, 0);
    cr_expect_eq(sqlkey_memo_shape(m, point).facts & TEXT_OPENS, TEXT_OPENS);
    cr_expect_eq(sqlkey_memo_shape(m, digit).facts & TEXT_OPENS, 0);
    sqlkey_memo_free(m);
}

static unsigned facts_asked;

static uint32_t counted_facts(const char *sql)
{
    facts_asked++;
    return pipeline_text_facts(sql);
}

/* The scan runs once per shape whose constants are numbers (the same statement run again with
 * other values), and for every text whose constants include a string (its words may differ). */
Test(textfacts, a_shape_of_numbers_is_scanned_once)
{
    struct sqlkey_secret secret = {7, 8};
    struct sqlkey_memo *m = sqlkey_memo_new(&secret, 4, counted_facts);
    cr_assert(m);
    char sql[200];
    facts_asked = 0;
    for (int i = 0; i < 10; i++) {
        snprintf(sql, sizeof(sql),
                 "UPDATE pgbench_accounts SET abalance = abalance + %d "
                 "WHERE aid = %d",
                 i * 7 + 1, i * 1000 + 3);
        cr_expect_eq(sqlkey_memo_shape(m, sql).facts, pipeline_text_facts(sql));
    }
    cr_expect_eq(facts_asked, 1, "scanned %u times", facts_asked);
    facts_asked = 0;
    for (int i = 0; i < 10; i++) {
        snprintf(sql, sizeof(sql), "SELECT abalance FROM pgbench_accounts WHERE name = '%s'",
                 i % 2 ? "x" : "reset");
        cr_expect_eq(sqlkey_memo_shape(m, sql).facts, pipeline_text_facts(sql));
    }
    cr_expect_eq(facts_asked, 10, "scanned %u times", facts_asked);
    sqlkey_memo_free(m);
}
