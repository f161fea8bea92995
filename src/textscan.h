/* textscan.h: a fast case-insensitive search for an ASCII keyword in query text, for the
 * pre-filters every statement passes (glibc's strcasestr costs several hundred instructions a
 * call on short texts; this costs a vectorised strpbrk plus a compare per candidate). */
#ifndef LAKEPROXY_TEXTSCAN_H
#define LAKEPROXY_TEXTSCAN_H

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* Does NUL-terminated text contain word (non-empty, ASCII), ignoring case, anywhere? */
static inline bool text_contains_ci(const char *text, const char *word)
{
    const char first[3] = {(char)tolower((unsigned char)word[0]),
                           (char)toupper((unsigned char)word[0]), '\0'};
    size_t rest = strlen(word + 1);
    for (const char *p = strpbrk(text, first); p; p = strpbrk(p + 1, first))
        if (strncasecmp(p + 1, word + 1, rest) == 0)
            return true;
    return false;
}

#endif
