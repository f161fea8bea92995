/* test_token.c: parsing of provider answers, RFC 3339 times, the refresh schedule, backoff,
 * fingerprints and request encodings of rotating credentials. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

#define NOW ((time_t)1795000000)

static bool out(const char *text, struct token_answer *a, char *err)
{
    return token_parse_output(text, strlen(text), NOW, a, err, 256);
}

Test(token, bare_token_is_trimmed)
{
    struct token_answer a;
    char err[256];
    cr_assert(out("  eyJabc.def-ghi_jkl\n", &a, err), "%s", err);
    cr_expect_str_eq(a.token, "eyJabc.def-ghi_jkl");
    cr_expect_eq(a.expires, 0);
    token_answer_clear(&a);
}

Test(token, bare_token_spanning_lines_or_empty_is_refused)
{
    struct token_answer a;
    char err[256];
    cr_expect_not(out("abc\ndef\n", &a, err));
    cr_expect(strstr(err, "spans lines"), "%s", err);
    cr_expect_not(out(" \n\t", &a, err));
    cr_expect_str_eq(err, "empty output");
    cr_expect_null(a.token);
}

Test(token, json_with_token_and_rfc3339_expiry)
{
    struct token_answer a;
    char err[256];
    cr_assert(out("{\"token\": \"t1\", \"expiration_time\": \"2026-11-23T10:00:00Z\"}", &a, err),
              "%s", err);
    cr_expect_str_eq(a.token, "t1");
    cr_expect_eq(a.expires, 1795428000);
    token_answer_clear(&a);
}

Test(token, json_access_token_with_expires_in)
{
    struct token_answer a;
    char err[256];
    cr_assert(
        out("{\"access_token\":\"t2\",\"token_type\":\"Bearer\",\"expires_in\":3600}", &a, err),
        "%s", err);
    cr_expect_str_eq(a.token, "t2");
    cr_expect_eq(a.expires, NOW + 3600);
    token_answer_clear(&a);
}

/* Each bad provider answer and the words its error must contain. */
static const struct {
    const char *text;
    const char *error;
} bad_json[] = {
    {"{\"token\": \"abc\"", "malformed JSON"},
    {"{\"expiration_time\": \"2026-11-23T10:00:00Z\"}", "no \"access_token\""},
    {"{\"token\": 42}", "\"token\" is not a string"},
    {"{\"token\": \"\"}", "empty"},
    {"{\"token\": \"a b\"}", "printable ASCII"},
    {"{\"token\": \"a\\u0000b\"}", "malformed JSON"},
    {"{\"token\": \"t\", \"expiration_time\": \"yesterday\"}", "not an RFC 3339 time"},
    {"{\"token\": \"t\", \"expires_in\": -5}", "positive number"},
    {"{\"token\": \"t\", \"token\": \"u\"}", "malformed JSON"},
    {"[\"token\"]", "a bare token or a JSON object"},
};

Test(token, bad_answers_are_clear_errors)
{
    for (size_t i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++) {
        struct token_answer a;
        char err[256] = "";
        cr_expect_not(out(bad_json[i].text, &a, err), "accepted %s", bad_json[i].text);
        cr_expect(strstr(err, bad_json[i].error), "%s: got \"%s\", want \"%s\"", bad_json[i].text,
                  err, bad_json[i].error);
        cr_expect_null(a.token);
    }
}

Test(token, huge_token_is_refused_and_4k_token_accepted)
{
    size_t n = TOKEN_MAX_LEN + 10;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[n] = '\0';
    struct token_answer a;
    char err[256];
    cr_expect_not(token_parse_output(big, n, NOW, &a, err, sizeof(err)));
    big[4096] = '\0';
    cr_assert(token_parse_output(big, 4096, NOW, &a, err, sizeof(err)), "%s", err);
    cr_expect_eq(strlen(a.token), 4096);
    token_answer_clear(&a);
    free(big);
}

Test(token, oauth_answer_needs_access_token_and_lifetime)
{
    struct token_answer a;
    char err[256];
    const char *ok = "{\"access_token\":\"oa\",\"token_type\":\"Bearer\",\"expires_in\":3600}";
    cr_assert(token_parse_oauth(ok, strlen(ok), NOW, &a, err, sizeof(err)), "%s", err);
    cr_expect_eq(a.expires, NOW + 3600);
    token_answer_clear(&a);
    const char *no_life = "{\"access_token\":\"oa\",\"token_type\":\"Bearer\"}";
    cr_expect_not(token_parse_oauth(no_life, strlen(no_life), NOW, &a, err, sizeof(err)));
    cr_expect(strstr(err, "expires_in"), "%s", err);
    const char *mac = "{\"access_token\":\"oa\",\"token_type\":\"mac\",\"expires_in\":60}";
    cr_expect_not(token_parse_oauth(mac, strlen(mac), NOW, &a, err, sizeof(err)));
    cr_expect(strstr(err, "Bearer"), "%s", err);
}

Test(token, lakebase_answers_of_both_versions)
{
    struct token_answer a;
    char err[256];
    const char *prov = "{\"token\":\"p\",\"expiration_time\":\"2026-11-23T10:00:00.123456Z\"}";
    cr_assert(token_parse_db_credential(prov, strlen(prov), &a, err, sizeof(err)), "%s", err);
    cr_expect_eq(a.expires, 1795428000);
    token_answer_clear(&a);
    const char *auto_ = "{\"token\":\"q\",\"expire_time\":\"2026-11-23T11:00:00+01:00\"}";
    cr_assert(token_parse_db_credential(auto_, strlen(auto_), &a, err, sizeof(err)), "%s", err);
    cr_expect_str_eq(a.token, "q");
    cr_expect_eq(a.expires, 1795428000);
    token_answer_clear(&a);
    const char *no_expiry = "{\"token\":\"q\"}";
    cr_expect_not(token_parse_db_credential(no_expiry, strlen(no_expiry), &a, err, sizeof(err)));
}

Test(token, rfc3339_forms)
{
    time_t t;
    cr_expect(token_parse_rfc3339("1970-01-01T00:00:00Z", &t));
    cr_expect_eq(t, 0);
    cr_expect(token_parse_rfc3339("2026-11-23T10:00:00.5-02:30", &t));
    cr_expect_eq(t, 1795428000 + 9000);
    cr_expect_not(token_parse_rfc3339("2026-11-23T10:00:00", &t), "an offset is required");
    cr_expect_not(token_parse_rfc3339("2026-13-23T10:00:00Z", &t));
    cr_expect_not(token_parse_rfc3339("2026-11-23T10:00:00Zjunk", &t));
    cr_expect_not(token_parse_rfc3339("2026-11-23T10:00Z", &t));
    cr_expect_not(token_parse_rfc3339("", &t));
}

Test(token, refresh_at_80_percent_or_5_minutes_before_whichever_is_earlier)
{
    /* one hour: 80% (48 min) is earlier than 55 min */
    cr_expect_eq(token_refresh_at(NOW, NOW + 3600, 0, 80, 300), NOW + 2880);
    /* two hours at 95%: 114 min comes before 5 minutes before expiry (115 min) */
    cr_expect_eq(token_refresh_at(NOW, NOW + 7200, 0, 95, 300), NOW + 6840);
    /* twenty minutes at 95%: 15 min (margin) is earlier than 19 min */
    cr_expect_eq(token_refresh_at(NOW, NOW + 1200, 0, 95, 300), NOW + 900);
    /* a 5-second token: the margin is longer than half its life, so 80% = 4 s */
    cr_expect_eq(token_refresh_at(NOW, NOW + 5, 0, 80, 300), NOW + 4);
    /* unknown expiry: the assumed lifetime, or never */
    cr_expect_eq(token_refresh_at(NOW, 0, 3600, 80, 300), NOW + 2880);
    cr_expect_eq(token_refresh_at(NOW, 0, 0, 80, 300), 0);
    /* already expired or about to: no sooner than a second from now */
    cr_expect_eq(token_refresh_at(NOW, NOW - 10, 0, 80, 300), NOW + 1);
}

Test(token, refresh_times_are_spread_over_the_last_tenth_before_the_planned_one)
{
    /* one hour's token, planned at 48 min: somewhere in [43.2 min, 48 min] */
    time_t at = NOW + 2880, lo = at, hi = NOW;
    for (uint32_t r = 0; r < 5000; r += 7) {
        time_t t = token_refresh_jitter(NOW, at, r);
        cr_assert(t >= NOW + 2880 - 288 && t <= at, "rnd %u: %lld", r, (long long)(t - NOW));
        lo = t < lo ? t : lo;
        hi = t > hi ? t : hi;
    }
    cr_expect_gt(hi - lo, 250, "spread over most of the tenth: %lld s", (long long)(hi - lo));
    cr_expect_eq(token_refresh_jitter(NOW, 0, 123), 0, "never stays never");
    cr_expect_eq(token_refresh_jitter(NOW, NOW + 1, 999), NOW + 1, "a second: nothing to move");
    cr_expect_geq(token_refresh_jitter(NOW, NOW + 4, 999), NOW + 1);
}

Test(token, backoff_doubles_with_jitter_and_a_ceiling)
{
    for (uint32_t rnd = 0; rnd < 5000; rnd += 499) {
        int d1 = token_backoff_ms(1, 500, 60000, rnd);
        int d3 = token_backoff_ms(3, 500, 60000, rnd);
        int d20 = token_backoff_ms(20, 500, 60000, rnd);
        cr_expect(d1 >= 250 && d1 < 500, "%d", d1);
        cr_expect(d3 >= 1000 && d3 < 2000, "%d", d3);
        cr_expect(d20 >= 30000 && d20 < 60000, "%d", d20);
    }
    cr_expect_neq(token_backoff_ms(4, 500, 60000, 1), token_backoff_ms(4, 500, 60000, 900));
}

Test(token, fingerprint_is_sha256_prefix)
{
    char fp[9];
    token_fingerprint("abc", 3, fp);
    cr_expect_str_eq(fp, "ba7816bf");
}

Test(token, uuid4_shape_and_freshness)
{
    char a[37], b[37];
    cr_assert(token_uuid4(a) && token_uuid4(b));
    cr_expect_eq(strlen(a), 36);
    cr_expect_eq(a[8], '-');
    cr_expect_eq(a[14], '4');
    cr_expect(strchr("89ab", a[19]));
    cr_expect_str_neq(a, b);
}

Test(token, basic_auth_and_form_encoding)
{
    char *basic = token_basic_auth("Aladdin", "open sesame");
    cr_expect_str_eq(basic, "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    token_free(basic);
    char *f = token_form_encode("a b&c=d/é");
    cr_expect_str_eq(f, "a%20b%26c%3Dd%2F%C3%A9");
    free(f);
}

Test(token, error_message_is_taken_from_the_body_and_sanitised)
{
    char msg[64];
    const char *body = "{\"error_code\":\"X\",\"message\":\"bad\\nthing\"}";
    cr_assert(token_error_message(body, strlen(body), msg, sizeof(msg)));
    cr_expect_str_eq(msg, "bad?thing");
    cr_expect_not(token_error_message("<html>", 6, msg, sizeof(msg)));
}

Test(token, lakebase_request_bodies)
{
    const char *names[] = {"inst-a", "inst\"b"};
    char *p = token_credential_request(NULL, 0, names, 2);
    cr_assert_not_null(p);
    cr_expect(strstr(p, "\"instance_names\":[\"inst-a\",\"inst\\\"b\"]"), "%s", p);
    const char *id = strstr(p, "\"request_id\":\"");
    cr_assert_not_null(id, "%s", p);
    cr_expect_eq(id[14 + 36], '"', "a 36-character UUID: %s", p);
    free(p);
    char *a = token_credential_request("projects/p/branches/b/endpoints/e", 900, NULL, 0);
    cr_expect_str_eq(a, "{\"endpoint\":\"projects/p/branches/b/endpoints/e\",\"ttl\":\"900s\"}");
    free(a);
    a = token_credential_request("projects/p/branches/b/endpoints/e", 0, NULL, 0);
    cr_expect_str_eq(a, "{\"endpoint\":\"projects/p/branches/b/endpoints/e\"}");
    free(a);
}

static bool who(const char *json, struct token_identity *id, char *err)
{
    return token_parse_identity(json, strlen(json), id, err, 256);
}

Test(token, scim_me_answer_gives_user_and_group_names)
{
    struct token_identity id;
    char err[256];
    cr_assert(who("{\"id\": \"1\", \"userName\": \"ana@example.com\", \"active\": true, "
                  "\"groups\": [{\"display\": \"support\", \"value\": \"7\"}, {\"value\": \"8\"}, "
                  "{\"display\": \"bad\\u0001name\"}, {\"display\": \"\"}, {\"display\": \"eu\"}]}",
                  &id, err),
              "%s", err);
    cr_expect_str_eq(id.user, "ana@example.com");
    cr_assert_eq(id.n_groups, 2, "groups without a usable display name are skipped");
    cr_expect_str_eq(id.groups[0], "support");
    cr_expect_str_eq(id.groups[1], "eu");
    token_identity_clear(&id);
    cr_assert(who("{\"userName\": \"0b1c-sp\"}", &id, err), "%s", err);
    cr_expect_eq(id.n_groups, 0);
    token_identity_clear(&id);
}

Test(token, unusable_scim_me_answers_are_clear_errors)
{
    static const struct {
        const char *json, *why;
    } bad[] = {
        {"{\"groups\": []}", "no \"userName\""},
        {"{\"userName\": 7}", "not a string"},
        {"{\"userName\": \"\"}", "empty"},
        {"{\"userName\": \"a\\nb\"}", "control characters"},
        {"{\"userName\": \"a\\u0000b\"}", "malformed JSON"}, /* jansson refuses NUL */
        {"{\"userName\": \"ana\", \"active\": false}", "not active"},
        {"{\"userName\": \"ana\", \"groups\": {}}", "not an array"},
        {"[1]", "JSON object"},
        {"{\"userName\": ", "malformed JSON"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct token_identity id;
        char err[256] = "";
        cr_expect_not(who(bad[i].json, &id, err), "%s", bad[i].json);
        cr_expect(strstr(err, bad[i].why), "%s: %s", bad[i].json, err);
        cr_expect_null(id.user);
    }
    char big[600];
    snprintf(big, sizeof(big), "{\"userName\": \"%0300d\"}", 0);
    struct token_identity id;
    char err[256];
    cr_expect_not(who(big, &id, err), "a name over 255 bytes");
}

Test(token, groups_past_the_limit_are_dropped)
{
    char json[8192] = "{\"userName\": \"u\", \"groups\": [";
    for (int i = 0; i < TOKEN_MAX_GROUPS + 10; i++)
        snprintf(json + strlen(json), sizeof(json) - strlen(json), "%s{\"display\": \"g%d\"}",
                 i ? "," : "", i);
    strcat(json, "]}");
    struct token_identity id;
    char err[256];
    cr_assert(who(json, &id, err), "%s", err);
    cr_expect_eq(id.n_groups, TOKEN_MAX_GROUPS);
    cr_expect_str_eq(id.groups[TOKEN_MAX_GROUPS - 1], "g63");
    token_identity_clear(&id);
}

Test(token, jwt_expiry_is_read_from_the_payload)
{
    time_t exp = 0;
    /* payload {"sub":"ana","exp":1795000123} in base64url without padding */
    const char *jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbmEiLCJleHAiOjE3OTUwMDAxMjN9.c2ln";
    cr_assert(token_jwt_expiry(jwt, strlen(jwt), &exp));
    cr_expect_eq(exp, 1795000123);
    static const char *const not_jwt[] = {
        "dapi0123456789abcdef",                          /* a personal access token */
        "a.b",                                           /* two parts */
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbmEifQ.c2ln",  /* no exp */
        "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOiJzb29uIn0.c2ln", /* exp "soon" */
        "eyJhbGciOiJSUzI1NiJ9.!!!.c2ln",                 /* not base64url */
    };
    for (size_t i = 0; i < sizeof(not_jwt) / sizeof(not_jwt[0]); i++)
        cr_expect_not(token_jwt_expiry(not_jwt[i], strlen(not_jwt[i]), &exp), "%s", not_jwt[i]);
}

/* A review: an answer that had expired already was installed as a success and fetched again
 * every second; one claiming thousands of years was never refreshed ahead of time. */
Test(token, expired_or_endless_answers_are_not_usable)
{
    char err[200];
    time_t now = 1800000000;
    cr_expect(token_expiry_usable(0, now, err, sizeof(err)), "no expiry stated");
    cr_expect(token_expiry_usable(now + 3600, now, err, sizeof(err)));
    cr_expect_not(token_expiry_usable(now, now, err, sizeof(err)));
    cr_expect_not(token_expiry_usable(now - 10, now, err, sizeof(err)));
    cr_expect(strstr(err, "expired 10s ago") && strstr(err, "clock"), "%s", err);
    cr_expect_not(token_expiry_usable(now + 11LL * 365 * 86400, now, err, sizeof(err)));
    cr_expect(strstr(err, "ten years"), "%s", err);
}

/* An expiry stated as the epoch (any spelling of it) is a time long past, not 0's "no expiry
 * stated" (red team 16): the answer is refused as expired. */
Test(token, an_expiry_at_the_epoch_is_stated_and_expired)
{
    static const char *const answers[] = {
        "{\"token\": \"t\", \"expiration_time\": \"1970-01-01T00:00:00Z\"}",
        "{\"token\": \"t\", \"expiration_time\": \"1970-01-01T01:00:00+01:00\"}",
        "{\"token\": \"t\", \"expire_time\": \"1970-01-01T00:00:00.000Z\"}",
    };
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        struct token_answer a;
        char err[256];
        cr_assert(out(answers[i], &a, err), "%s: %s", answers[i], err);
        cr_expect_neq(a.expires, 0, "%s", answers[i]);
        cr_expect_not(token_expiry_usable(a.expires, NOW, err, sizeof(err)), "%s", answers[i]);
        cr_expect(strstr(err, "expired"), "%s", err);
        token_answer_clear(&a);
        cr_assert(token_parse_db_credential(answers[i], strlen(answers[i]), &a, err, sizeof(err)),
                  "%s", err);
        cr_expect_not(token_expiry_usable(a.expires, NOW, err, sizeof(err)), "%s", answers[i]);
        token_answer_clear(&a);
    }
}
