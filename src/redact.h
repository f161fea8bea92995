/* redact.h: what a log line or an admin view must not carry of a secret that an outside
 * party's message echoes (a workspace's error text, a token command's stderr): the secrets
 * lakeproxy sent, and anything shaped like a token. Pure string code. */
#ifndef LAKEPROXY_REDACT_H
#define LAKEPROXY_REDACT_H

#include <stdbool.h>
#include <stddef.h>

/* What replaces a secret. */
#define REDACTED "[redacted]"

/* Rewrites NUL-terminated s (in a buffer of cap bytes) in place: each occurrence of a string
 * of known (a NULL-terminated list; NULL: none; entries shorter than 6 bytes or NULL are
 * skipped) and each run of 16 or more token bytes (letters, digits, . _ ~ + / = -) holding
 * both a letter and a digit becomes REDACTED. What no longer fits in cap is cut. True when
 * anything was replaced. */
bool redact_secrets(char *s, size_t cap, const char *const *known);

/* How much of s to keep when it must be cut to at most n bytes: n, or less, so that the cut
 * does not leave the start of a run of token bytes that goes on (a token's head, which no
 * longer looks like one). */
size_t redact_cut_at(const char *s, size_t n);

#endif
