/* textscan.h: a fast case-insensitive search for an ASCII keyword in query text, for the
 * pre-filters every statement passes (glibc's strcasestr costs several hundred instructions a
 * call on short texts; this costs a vectorised strpbrk plus a compare per candidate). */
#ifndef LAKEPROXY_TEXTSCAN_H
#define LAKEPROXY_TEXTSCAN_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* ASCII case folding, as PostgreSQL folds keywords (locale-free). */
static inline char textscan_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

static inline char textscan_upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - ('a' - 'A')) : c;
}

/* Does the text at p, whose first byte matches word's ignoring case, go on as word does? Stops
 * at the text's NUL (most candidates fail at their second byte). */
static inline bool textscan_rest_matches(const char *p, const char *word)
{
    size_t i = 1;
    while (word[i] && textscan_lower(p[i]) == word[i])
        i++;
    return !word[i];
}

/* Does NUL-terminated text contain word (non-empty, lower-case ASCII), ignoring case,
 * anywhere? strpbrk finds each candidate's first byte, the rest is compared in line; a word
 * with a byte that has no case (the '_' of "lp_") is found by that byte with strchr instead,
 * which is cheaper per call and stops less often. */
static inline bool text_contains_ci(const char *text, const char *word)
{
    size_t at = 0;
    while (word[at] && textscan_upper(word[at]) != word[at])
        at++;
    if (word[at]) { /* word[at] has no case */
        for (const char *p = strchr(text, word[at]); p; p = strchr(p + 1, word[at])) {
            if ((size_t)(p - text) < at)
                continue; /* too near the start for the bytes before it */
            if (textscan_lower(*(p - at)) == word[0] && textscan_rest_matches(p - at, word))
                return true;
        }
        return false;
    }
    const char first[3] = {word[0], textscan_upper(word[0]), '\0'};
    for (const char *p = strpbrk(text, first); p; p = strpbrk(p + 1, first))
        if (textscan_rest_matches(p, word))
            return true;
    return false;
}

enum { TEXTSCAN_WORDS_MAX = 8 };

/* Which of words[0..n) (each as text_contains_ci's; n <= TEXTSCAN_WORDS_MAX) NUL-terminated text
 * contains, as a bit mask (bit i: words[i]): one pass over the text for all of them. */
static inline unsigned text_words_ci(const char *text, const char *const *words, unsigned n)
{
    char first[2 * TEXTSCAN_WORDS_MAX + 1];
    size_t k = 0;
    for (unsigned i = 0; i < n; i++) {
        size_t j = 0;
        while (j < k && first[j] != words[i][0])
            j++;
        if (j == k) {
            first[k++] = words[i][0];
            first[k++] = textscan_upper(words[i][0]);
        }
    }
    first[k] = '\0';
    unsigned found = 0, all = (1u << n) - 1;
    for (const char *p = strpbrk(text, first); p && found != all; p = strpbrk(p + 1, first))
        for (unsigned i = 0; i < n; i++)
            if (textscan_lower(*p) == words[i][0] && textscan_rest_matches(p, words[i]))
                found |= 1u << i;
    return found;
}

/* Up to 32 keywords (non-empty, lower-case ASCII) to look for in one pass over a text. Built
 * once (textscan_set_init), searched many times: a table says which words start with each
 * byte, so each byte of the text costs a lookup, and a candidate the words that start with it
 * only (strpbrk with so many first bytes would rebuild its own table per call). */
enum { TEXTSCAN_SET_MAX = 32 };

struct textscan_set {
    const char *const *words;
    unsigned n;
    uint32_t by_byte[256]; /* bit i: words[i] starts with this byte (either case) */
};

static inline void textscan_set_init(struct textscan_set *s, const char *const *words, unsigned n)
{
    memset(s, 0, sizeof(*s));
    s->words = words;
    s->n = n;
    for (unsigned i = 0; i < n; i++) {
        s->by_byte[(unsigned char)words[i][0]] |= 1u << i;
        s->by_byte[(unsigned char)textscan_upper(words[i][0])] |= 1u << i;
    }
}

/* Which of the set's words NUL-terminated text contains, ignoring case (bit i: words[i]), as
 * text_contains_ci finds each; it may stop as soon as it has found one of stop. */
static inline uint32_t textscan_set_find(const struct textscan_set *s, const char *text,
                                         uint32_t stop)
{
    uint32_t found = 0, all = s->n >= 32 ? ~0u : (1u << s->n) - 1;
    for (const char *p = text; *p; p++) {
        uint32_t m = s->by_byte[(unsigned char)*p] & ~found;
        while (m) {
            unsigned i = (unsigned)__builtin_ctz(m);
            m &= m - 1;
            if (textscan_rest_matches(p, s->words[i]))
                found |= 1u << i;
        }
        if (found == all || (found & stop))
            break;
    }
    return found;
}

/* Is NUL-terminated text read alike whatever standard_conforming_strings and client_encoding
 * say? So it is when it holds no backslash and no byte above 0x7F: every encoding PostgreSQL
 * takes is ASCII below that, and only a backslash reads otherwise with the setting off. */
static inline bool text_reads_alike(const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p == '\\' || *p > 0x7f)
            return false;
    return true;
}

#endif
