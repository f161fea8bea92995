/* test_redact.c: secrets that an outside party's message echoes stay out of what lakeproxy
 * logs (redact.h): the ones it sent, and anything shaped like a token. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "redact.h"

static void expect_redacted(const char *in, const char *const *known, const char *want)
{
    char s[256];
    snprintf(s, sizeof(s), "%s", in);
    redact_secrets(s, sizeof(s), known);
    cr_expect_str_eq(s, want, "from \"%s\"", in);
}

Test(redact, known_secrets_go_wherever_they_are)
{
    const char *const known[] = {"hunter2pass", "s3cr3tTOKEN", NULL};
    expect_redacted("client authentication failed for id:hunter2pass", known,
                    "client authentication failed for id:" REDACTED);
    expect_redacted("token xs3cr3tTOKENx and hunter2pass.", known,
                    "token x" REDACTED "x and " REDACTED ".");
    /* short entries (and NULL ones) are no secrets worth matching anywhere */
    const char *const tiny[] = {"abc", NULL};
    expect_redacted("abc def abc", tiny, "abc def abc");
}

Test(redact, token_shaped_runs_go_prose_stays)
{
    expect_redacted("Invalid access token: dapi0123456789abcdef0123456789abcdef", NULL,
                    "Invalid access token: " REDACTED);
    expect_redacted("jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl1 rejected", NULL,
                    "jwt " REDACTED " rejected");
    expect_redacted("token tokSECRETrtmkj01 rejected", NULL, "token " REDACTED " rejected");
    /* words without digits, short runs with them, and the usual error texts stay readable */
    expect_redacted("invalid_client: misconfiguration of the service principal", NULL,
                    "invalid_client: misconfiguration of the service principal");
    expect_redacted("HTTP 503 after 30 s, retry in 2026-12-05", NULL,
                    "HTTP 503 after 30 s, retry in 2026-12-05");
}

Test(redact, fits_the_buffer_it_is_given)
{
    /* a cut inside a token leaves none of it (its head would not look like one) */
    const char *msg = "failed for 0123456789abcdefXYZ0123";
    cr_expect_eq(redact_cut_at(msg, 20), strlen("failed for "));
    cr_expect_eq(redact_cut_at(msg, 11), strlen("failed for "));
    cr_expect_eq(redact_cut_at(msg, 10), 10);
    cr_expect_eq(redact_cut_at(msg, 100), strlen(msg));
    /* a replacement that lengthens the text does not leave a cut run behind */
    const char *const short_known[] = {"pass99", NULL};
    char grow[20];
    snprintf(grow, sizeof(grow), "%s", "pass99 abc1 xyz2abc");
    redact_secrets(grow, sizeof(grow), short_known);
    cr_expect_str_eq(grow, REDACTED " abc1 ");
    const char *const known[] = {"secret99", NULL};
    char tight[12];
    snprintf(tight, sizeof(tight), "%s", "xx secret99");
    redact_secrets(tight, sizeof(tight), known);
    cr_expect_str_eq(tight, "xx [redacte", "cut, never the secret");
}
