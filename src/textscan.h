/* textscan.h: a fast case-insensitive search for an ASCII keyword in query text, for the
 * pre-filters every statement passes (glibc's strcasestr costs several hundred instructions a
 * call on short texts; this costs a vectorised strpbrk plus a compare per candidate). */
#ifndef LAKEPROXY_TEXTSCAN_H
#define LAKEPROXY_TEXTSCAN_H

#include <stdbool.h>
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

/* Does NUL-terminated text contain word (non-empty, lower-case ASCII), ignoring case,
 * anywhere? strpbrk finds each candidate's first byte; the rest is compared in line (most
 * candidates fail at their second byte), stopping at the text's NUL. */
static inline bool text_contains_ci(const char *text, const char *word)
{
    const char first[3] = {word[0], textscan_upper(word[0]), '\0'};
    for (const char *p = strpbrk(text, first); p; p = strpbrk(p + 1, first)) {
        size_t i = 1;
        while (word[i] && textscan_lower(p[i]) == word[i])
            i++;
        if (!word[i])
            return true;
    }
    return false;
}

#endif
