/* test_proto.c: the wire codec: round trips of every message lakeproxy builds, and malformed
 * input of every shape (short, negative, oversized, truncated, unterminated). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "proto.h"

/* Body of the one message in b (after type and length), checking its framing. */
static const uint8_t *single_body(struct buf *b, uint8_t type, size_t *len)
{
    uint8_t t;
    uint32_t body_len;
    const char *err;
    cr_assert_not(b->failed);
    cr_assert_eq(proto_check_header(b->data, 1 << 20, &t, &body_len, &err), PROTO_OK);
    cr_assert_eq(t, type);
    cr_assert_eq(b->len, 5 + (size_t)body_len, "length field disagrees with the bytes");
    *len = body_len;
    return b->data + 5;
}

Test(proto, error_response_round_trip)
{
    struct buf b;
    struct pg_error e;
    size_t len;
    buf_init(&b);
    proto_error(&b, "FATAL", "28P01", "password authentication failed for user \"x\"");
    const uint8_t *body = single_body(&b, 'E', &len);
    cr_assert(proto_parse_error(body, len, &e));
    cr_expect_str_eq(e.severity, "FATAL");
    cr_expect_str_eq(e.sqlstate, "28P01");
    cr_expect_str_eq(e.message, "password authentication failed for user \"x\"");
    buf_free(&b);
}

Test(proto, parameter_status_backend_key_ready_round_trip)
{
    struct buf b;
    size_t len;
    const char *name, *value;
    uint32_t pid, key;
    char status;
    buf_init(&b);
    proto_param_status(&b, "TimeZone", "UTC");
    const uint8_t *body = single_body(&b, 'S', &len);
    cr_assert(proto_parse_param_status(body, len, &name, &value));
    cr_expect_str_eq(name, "TimeZone");
    cr_expect_str_eq(value, "UTC");
    buf_reset(&b);
    proto_backend_key(&b, 12345, 0xdeadbeef);
    body = single_body(&b, 'K', &len);
    cr_assert(proto_parse_backend_key(body, len, &pid, &key));
    cr_expect_eq(pid, 12345);
    cr_expect_eq(key, 0xdeadbeef);
    buf_reset(&b);
    proto_ready(&b, 'T');
    body = single_body(&b, 'Z', &len);
    cr_assert(proto_parse_ready(body, len, &status));
    cr_expect_eq(status, 'T');
    buf_free(&b);
}

Test(proto, ready_for_query_rejects_unknown_status_and_bad_length)
{
    char st;
    const uint8_t bad[] = {'X'}, two[] = {'I', 'I'};
    cr_expect_not(proto_parse_ready(bad, 1, &st));
    cr_expect_not(proto_parse_ready(two, 2, &st));
    cr_expect_not(proto_parse_ready(two, 0, &st));
}

Test(proto, auth_and_sasl_round_trip)
{
    struct buf b;
    size_t len, dlen;
    uint32_t code;
    const uint8_t *data;
    const char *mech;
    static const char mechs[] = "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0";
    buf_init(&b);
    proto_auth(&b, AUTH_REQ_SASL, mechs, sizeof(mechs));
    const uint8_t *body = single_body(&b, 'R', &len);
    cr_assert(proto_parse_auth(body, len, &code, &data, &dlen));
    cr_expect_eq(code, AUTH_REQ_SASL);
    cr_expect(proto_sasl_offers(data, dlen, "SCRAM-SHA-256"));
    cr_expect_not(proto_sasl_offers(data, dlen, "SCRAM-SHA-1"));
    buf_reset(&b);
    proto_sasl_initial(&b, "SCRAM-SHA-256", "n,,n=,r=abc", 11);
    body = single_body(&b, 'p', &len);
    cr_assert(proto_parse_sasl_initial(body, len, &mech, &data, &dlen));
    cr_expect_str_eq(mech, "SCRAM-SHA-256");
    cr_expect_eq(dlen, 11);
    cr_expect(memcmp(data, "n,,n=,r=abc", 11) == 0);
    buf_free(&b);
}

Test(proto, sasl_initial_response_with_lying_length_is_rejected)
{
    const char *mech;
    const uint8_t *data;
    size_t dlen;
    /* mechanism, then a length of 100 with only 3 bytes behind it */
    const uint8_t body[] = {'M', 0, 0, 0, 0, 100, 'a', 'b', 'c'};
    cr_expect_not(proto_parse_sasl_initial(body, sizeof(body), &mech, &data, &dlen));
    const uint8_t neg[] = {'M', 0, 0xff, 0xff, 0xff, 0xfe};
    cr_expect_not(proto_parse_sasl_initial(neg, sizeof(neg), &mech, &data, &dlen));
    const uint8_t unterminated[] = {'M', 'M'};
    cr_expect_not(proto_parse_sasl_initial(unterminated, 2, &mech, &data, &dlen));
}

Test(proto, header_lengths_below_four_or_over_the_limit_are_rejected)
{
    uint8_t t;
    uint32_t len;
    const char *err;
    const uint8_t three[5] = {'Q', 0, 0, 0, 3};
    const uint8_t negative[5] = {'Q', 0xff, 0xff, 0xff, 0xff};
    const uint8_t big[5] = {'Q', 0, 0x10, 0, 0};
    const uint8_t four[5] = {'S', 0, 0, 0, 4};
    cr_expect_eq(proto_check_header(three, 1024, &t, &len, &err), PROTO_BAD);
    cr_expect_eq(proto_check_header(negative, 1024, &t, &len, &err), PROTO_BAD);
    cr_expect_eq(proto_check_header(big, 1024, &t, &len, &err), PROTO_BAD);
    cr_expect(strstr(err, "max_message_size"));
    cr_expect_eq(proto_check_header(four, 1024, &t, &len, &err), PROTO_OK);
    cr_expect_eq(len, 0);
}

Test(proto, startup_message_round_trip)
{
    struct buf b;
    struct startup st;
    const char *err;
    struct startup_param p[] = {{"user", "alice"}, {"database", "app"}, {"application_name", "x"}};
    buf_init(&b);
    proto_startup(&b, p, 3);
    cr_assert(proto_parse_startup(b.data, b.len, &st, &err));
    cr_expect_eq(st.kind, STARTUP_V3);
    cr_expect_eq(st.n_params, 3);
    cr_expect_str_eq(startup_get(&st, "user"), "alice");
    cr_expect_str_eq(startup_get(&st, "application_name"), "x");
    cr_expect_null(startup_get(&st, "options"));
    buf_free(&b);
}

Test(proto, ssl_gssenc_and_cancel_requests_are_recognised)
{
    struct buf b;
    struct startup st;
    const char *err;
    buf_init(&b);
    proto_ssl_request(&b);
    cr_assert(proto_parse_startup(b.data, b.len, &st, &err));
    cr_expect_eq(st.kind, STARTUP_SSL);
    buf_reset(&b);
    proto_cancel_request(&b, 77, 0xabcdef01);
    cr_assert(proto_parse_startup(b.data, b.len, &st, &err));
    cr_expect_eq(st.kind, STARTUP_CANCEL);
    cr_expect_eq(st.cancel_pid, 77);
    cr_expect_eq(st.cancel_key, 0xabcdef01);
    const uint8_t gss[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30};
    cr_assert(proto_parse_startup(gss, 8, &st, &err));
    cr_expect_eq(st.kind, STARTUP_GSSENC);
    buf_free(&b);
}

/* A table of malformed startup-phase packets, each refused with a reason. */
Test(proto, malformed_startup_packets_are_rejected)
{
    static const struct {
        const char *what;
        uint8_t bytes[32];
        size_t len;
    } cases[] = {
        {"length field disagrees with size", {0, 0, 0, 20, 0, 3, 0, 0, 0}, 9},
        {"no parameters terminator", {0, 0, 0, 12, 0, 3, 0, 0, 'u', 0, 'v', 0}, 12},
        {"name without value", {0, 0, 0, 13, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0}, 13},
        {"value unterminated", {0, 0, 0, 14, 0, 3, 0, 0, 'u', 0, 'v', 'v', 'v', 'v'}, 14},
        {"bytes after terminator", {0, 0, 0, 11, 0, 3, 0, 0, 0, 'x', 'y'}, 11},
        {"ssl request too long", {0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2f, 0, 0, 0, 0}, 12},
        {"cancel request too short", {0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1}, 12},
        {"truncated header", {0, 0, 0}, 3},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct startup st;
        const char *err = NULL;
        cr_expect_not(proto_parse_startup(cases[i].bytes, cases[i].len, &st, &err), "%s",
                      cases[i].what);
        cr_expect(err && *err, "%s: no reason given", cases[i].what);
    }
}

Test(proto, startup_length_limits)
{
    uint32_t len;
    const char *err;
    const uint8_t small[4] = {0, 0, 0, 7}, huge[4] = {0, 0, 0x27, 0x11}, ok[4] = {0, 0, 0, 8};
    cr_expect_eq(proto_check_startup_len(small, &len, &err), PROTO_BAD);
    cr_expect_eq(proto_check_startup_len(huge, &len, &err), PROTO_BAD);
    cr_expect_eq(proto_check_startup_len(ok, &len, &err), PROTO_OK);
}

Test(proto, too_many_startup_parameters_are_refused)
{
    struct buf b;
    struct startup st;
    const char *err = NULL;
    struct startup_param p[PROTO_MAX_STARTUP_PARAMS + 1];
    char names[PROTO_MAX_STARTUP_PARAMS + 1][16];
    for (int i = 0; i <= PROTO_MAX_STARTUP_PARAMS; i++) {
        snprintf(names[i], sizeof(names[i]), "p%d", i);
        p[i].name = names[i];
        p[i].value = "v";
    }
    buf_init(&b);
    proto_startup(&b, p, PROTO_MAX_STARTUP_PARAMS + 1);
    cr_expect_not(proto_parse_startup(b.data, b.len, &st, &err));
    buf_free(&b);
}

Test(proto, unknown_major_version_is_reported_not_parsed)
{
    struct startup st;
    const char *err;
    const uint8_t v2[8] = {0, 0, 0, 8, 0, 2, 0, 0};
    cr_assert(proto_parse_startup(v2, 8, &st, &err));
    cr_expect_eq(st.kind, STARTUP_BAD_VERSION);
    cr_expect_eq(st.version >> 16, 2);
}

Test(proto, error_response_without_code_or_terminator_is_rejected)
{
    struct pg_error e;
    const uint8_t no_code[] = {'M', 'h', 'i', 0, 0};
    const uint8_t unterminated[] = {'C', '2', '8', 'P', '0', '1', 0, 'M', 'x'};
    cr_expect_not(proto_parse_error(no_code, sizeof(no_code), &e));
    cr_expect_not(proto_parse_error(unterminated, sizeof(unterminated), &e));
    cr_expect_not(proto_parse_error(NULL, 0, &e));
}

Test(proto, negotiate_protocol_version_lists_unknown_options)
{
    struct buf b;
    size_t len;
    const char *opts[] = {"_pq_.foo", "_pq_.bar"};
    buf_init(&b);
    proto_negotiate_version(&b, 0, opts, 2);
    const uint8_t *body = single_body(&b, 'v', &len);
    struct rd r;
    uint32_t ver, n;
    const char *s1, *s2;
    rd_init(&r, body, len);
    cr_assert(rd_u32(&r, &ver) && rd_u32(&r, &n) && rd_str(&r, &s1) && rd_str(&r, &s2));
    cr_expect_eq(ver, 196608u);
    cr_expect_eq(n, 2);
    cr_expect_str_eq(s2, "_pq_.bar");
    buf_free(&b);
}

Test(buf, reader_fails_on_short_input_and_stays_failed)
{
    const uint8_t d[3] = {1, 2, 3};
    struct rd r;
    uint32_t v;
    uint8_t u;
    rd_init(&r, d, 3);
    cr_expect_not(rd_u32(&r, &v));
    cr_expect(r.failed);
    cr_expect_not(rd_u8(&r, &u), "a failed reader must not resume");
}

Test(buf, writer_builds_big_endian_and_lengths)
{
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, 'X');
    buf_put_u16(&b, 0x0102);
    buf_put_u32(&b, 0x03040506);
    buf_msg_finish(&b);
    const uint8_t want[] = {'X', 0, 0, 0, 10, 1, 2, 3, 4, 5, 6};
    cr_assert_eq(b.len, sizeof(want));
    cr_expect(memcmp(b.data, want, sizeof(want)) == 0);
    buf_free(&b);
}
