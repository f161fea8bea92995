/* redact.c: secrets out of texts that outside parties wrote (redact.h). */
#include "redact.h"

#include <ctype.h>
#include <string.h>

#define MIN_KNOWN 6
#define MIN_RUN 16

/* A byte of a token: base64 and base64url, JWT's dots, and what secrets are written with. */
static bool token_byte(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' ||
           c == '=' || c == '-';
}

/* The length of the known secret that starts at p, or 0. */
static size_t known_at(const char *p, const char *const *known)
{
    for (size_t i = 0; known && known[i]; i++) {
        size_t n = strlen(known[i]);
        if (n >= MIN_KNOWN && strncmp(p, known[i], n) == 0)
            return n;
    }
    return 0;
}

/* The length of the token-shaped run at p (16 or more token bytes with a letter and a digit),
 * or 0. */
static size_t token_run_at(const char *p)
{
    size_t n = 0;
    bool letter = false, digit = false;
    for (; token_byte(p[n]); n++) {
        letter |= isalpha((unsigned char)p[n]) != 0;
        digit |= isdigit((unsigned char)p[n]) != 0;
    }
    return n >= MIN_RUN && letter && digit ? n : 0;
}

size_t redact_cut_at(const char *s, size_t n)
{
    size_t len = strnlen(s, n + 1);
    if (len <= n || !token_byte(s[n]))
        return len <= n ? len : n;
    while (n > 0 && token_byte(s[n - 1]))
        n--;
    return n;
}

bool redact_secrets(char *s, size_t cap, const char *const *known)
{
    char out[1024];
    size_t limit = cap < sizeof(out) ? cap : sizeof(out), j = 0;
    bool changed = false, run_start = true;
    const char *p = s;
    if (cap == 0)
        return false;
    while (*p && j + 1 < limit) {
        size_t n = known_at(p, known);
        if (!n && run_start)
            n = token_run_at(p);
        if (n) {
            size_t k = strlen(REDACTED) < limit - 1 - j ? strlen(REDACTED) : limit - 1 - j;
            memcpy(out + j, REDACTED, k);
            j += k;
            p += n;
            changed = true;
            run_start = !token_byte(*p);
            continue;
        }
        run_start = !token_byte(*p);
        out[j++] = *p++;
    }
    if (*p && token_byte(*p)) /* cut short by the replacements: not in the middle of a run */
        while (j > 0 && token_byte(out[j - 1]))
            j--;
    out[j] = '\0';
    if (changed || *p)
        memcpy(s, out, j + 1);
    return changed;
}
