/* textscan_cases.h: the keyword search's tests, included by test_textscan.c (the SSE2 path
 * where the machine has it) and by test_textscan_scalar.c (the byte-by-byte path), each with
 * its own TEXTSCAN_SUITE and TEXTSCAN_WIDE (the path it expects), so both paths are held to
 * the same answers. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "textscan.h"

/* The keyword search behind every pre-filter: any case, anywhere (inside words too), at the
 * very end, after candidates that fail late; never past the text's end. */
Test(TEXTSCAN_SUITE, a_keyword_is_found_in_any_case_anywhere_and_only_there)
{
    static const struct {
        const char *text, *word;
        bool found;
    } cases[] = {
        {"DEALLOCATE ALL", "deallocate", true},
        {"select 1; DeAlLoCaTe x", "deallocate", true},
        {"update t set a = 1", "set", true},
        {"SELECT * FROM attempts", "temp", true}, /* inside a word: the filters are coarse */
        {"select pg_catalog.set_config('a', 'b', false)", "set_config", true},
        {"SELECT U&'\\0041'", "u&", true},
        {"select 1 -- dro", "drop", false},   /* cut at the end of the text */
        {"dddd ddrr dro drp", "drop", false}, /* every candidate fails late */
        {"SELECT abalance FROM pgbench_accounts WHERE aid = $1", "alter", false},
        {"x", "x", true},
        {"X", "x", true},
        {"", "x", false},
        {"dro\0p", "drop", false}, /* the text ends at its NUL */
        {"insert into t values (1)", "into", true},
        {"INTO", "into", true},
        {"int", "into", false},
        /* a word with a byte that has no case is found by that byte: at the start, in any
         * case, after candidates that fail, never before the text */
        {"lp_1", "lp_", true},
        {"EXECUTE LP_s1", "lp_", true},
        {"l_p_ a_b lP_", "lp_", true},
        {"_p_ xlq_ p_", "lp_", false},
        {"p_", "lp_", false},
        {"_", "lp_", false},
        {"SET_CONFIG(", "set_config", true},
        {"set_confi", "set_config", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_expect_eq(text_contains_ci(cases[i].text, cases[i].word), cases[i].found,
                     "\"%s\" in \"%s\"", cases[i].word, cases[i].text);
    /* the bytes before the text spell the start of the word: the text alone does not hold it */
    char before[] = "lp_";
    cr_expect(!text_contains_ci(before + 1, "lp_"));
    cr_expect(!text_contains_ci(before + 2, "lp_"));
    /* every case folding of a keyword, at every offset */
    const char *word = "discard";
    for (unsigned mask = 0; mask < 128; mask++) {
        char text[32] = "xx ";
        for (int k = 0; k < 7; k++)
            text[3 + k] = (char)(mask & (1u << k) ? word[k] - ('a' - 'A') : word[k]);
        text[10] = '\0';
        cr_expect(text_contains_ci(text, word), "%s", text);
        text[9] = 'x';
        cr_expect(!text_contains_ci(text, word), "%s", text);
    }
}

/* Several keywords in one pass find exactly what one search per keyword finds, words that share
 * a first letter and words that overlap in the text included. */
Test(TEXTSCAN_SUITE, several_keywords_in_one_pass_find_what_one_search_each_finds)
{
    static const char *const words[] = {"client_encoding",
                                        "standard_conforming",
                                        "names",
                                        "set",
                                        "deallocate",
                                        "discard",
                                        "sett",
                                        "d"};
    static const char *const texts[] = {
        "SET NAMES 'UTF8'",
        "set client_encoding to latin1",
        "select set_config('standard_conforming_strings', 'off', false)",
        "DEALLOCATE ALL",
        "discard all; deallocate x",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
        "",
        "sEtTiNgS",
        "dis",
        "standard_conformin",
    };
    for (unsigned n = 1; n <= 8; n++) {
        struct textscan_set set;
        textscan_set_init(&set, words, n);
        for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++) {
            uint32_t want = 0;
            for (unsigned i = 0; i < n; i++)
                want |= text_contains_ci(texts[t], words[i]) ? 1u << i : 0;
            cr_expect_eq(textscan_set_find(&set, texts[t], 0), want, "\"%s\", %u words", texts[t],
                         n);
        }
    }
    static const char *const two[] = {"deallocate", "discard"};
    struct textscan_set set;
    textscan_set_init(&set, two, 2);
    cr_expect_eq(textscan_set_find(&set, "Discard Plans; DEALLOCATE p", 0), 3u);
    cr_expect_eq(textscan_set_find(&set, "select 'dealloc'", 0), 0u);
    /* (a word at the very end of a text of more than 16 bytes, and across a block's end) */
    cr_expect_eq(textscan_set_find(&set, "select 1 from t; discard", 0), 2u);
    cr_expect_eq(textscan_set_find(&set, "select 1 from tdeallocate x", 0), 1u);
}

/* Random texts of the words' letters in both cases, with the bytes a case fold could mistake
 * for them (DEL for '_', '@' for '`') and bytes above 0x7F, from empty to longer than four
 * blocks of 16, each in a buffer of its own size: the set finds what text_contains_ci finds word by
 * word; with stop, what it found includes a stop word whenever the text holds one, and no word that
 * is not there. */
static void expect_set_finds_each_word(const char *const *words, unsigned n)
{
    struct textscan_set set;
    textscan_set_init(&set, words, n);
    cr_assert_eq(set.wide, TEXTSCAN_WIDE, "not the path this suite is for");
    const char alphabet[] = "sSeEtTlLcCdDoOrRpPiInNmMaAvVyYhHuU&_qQxXbBkK ;'\x7f@`\xc3\xa9\xe1";
    unsigned r = 7;
    for (int round = 0; round < 8000; round++) {
        char text[80];
        size_t len = (size_t)(round % 79);
        for (size_t i = 0; i < len; i++) {
            r = r * 1103515245u + 12345u;
            text[i] = alphabet[(r >> 16) % (sizeof(alphabet) - 1)];
        }
        text[len] = '\0';
        uint32_t want = 0;
        for (unsigned i = 0; i < n; i++)
            want |= text_contains_ci(text, words[i]) ? 1u << i : 0;
        char *exact = strdup(text); /* (so that AddressSanitizer sees a read past its end) */
        cr_assert_not_null(exact);
        uint32_t stop = 0x00ff00ffu;
        uint32_t all = textscan_set_find(&set, exact, 0),
                 got = textscan_set_find(&set, exact, stop);
        free(exact);
        cr_assert_eq(all, want, "\"%s\", %u words", text, n);
        cr_assert_eq(got & ~want, 0u, "\"%s\": found a word not there", text);
        cr_assert_eq(!!(got & stop), !!(want & stop), "\"%s\"", text);
    }
}

/* A keyword set finds in one pass what text_contains_ci finds word by word: 32 words with
 * shared first letters, some of one byte (so any byte may follow a first one; one is a space,
 * which the NULs padding a text's last block fold to). */
Test(TEXTSCAN_SUITE, a_set_of_32_words_finds_what_one_search_each_finds)
{
    static const char *const words[32] = {
        "set",  "select", "sett", "s",       "do",    "drop",   "d",   "discard",
        "into", "import", "i",    "lp_",     "u&",    "alter",  "a",   "advisory",
        "temp", "t",      "hold", "h",       "load",  "listen", "l",   "create",
        "c",    "pg_",    "p",    "prepare", "query", " ",      "xml", "dblink"};
    expect_set_finds_each_word(words, 32);
}

/* The same for words of two bytes or more, whose second bytes are tested sixteen at a time too
 * (a first byte at the end of a block has its second in the next); one starts with a space.
 */
Test(TEXTSCAN_SUITE, a_set_of_longer_words_finds_what_one_search_each_finds)
{
    static const char *const words[] = {
        "set",  "select", "sett",   "do",  "drop",  "into", "import", "lp_", "u&", "alter", "hold",
        "load", "listen", "create", "pg_", "query", "xml",  "dblink", "_t",  "@q", " ;"};
    expect_set_finds_each_word(words, sizeof(words) / sizeof(words[0]));
}
