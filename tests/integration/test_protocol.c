/* test_protocol.c: hostile and unusual bytes from clients end that connection with a clear
 * error and leave every other client working; big results stream in bounded memory. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "proto.h"

static struct proxy px;

static void start_small_limit(void)
{
    proxy_start_with(&px, "session", 4, 3000, "limits:\n  max_message_size: 65536\n");
}
static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(protocol, .init = start_small_limit, .fini = stop_proxy, .timeout = 60);

static void send_bytes(int fd, const void *p, size_t n)
{
    cr_assert_eq(write(fd, p, n), (ssize_t)n);
}

static void send_buf(int fd, struct buf *b)
{
    cr_assert_not(b->failed);
    send_bytes(fd, b->data, b->len);
    buf_reset(b);
}

/* The connection is closed by the proxy: the next read sees EOF quickly. */
static void expect_closed(int fd)
{
    unsigned char b[256];
    size_t len;
    cr_expect_eq(raw_read_msg(fd, b, sizeof(b), &len, 5000), -1);
}

/* Another client still logs in and queries. */
static void expect_others_fine(void)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    char *v = query_value(c, "SELECT 40 + 2");
    cr_expect_str_eq(v, "42");
    free(v);
    PQfinish(c);
}

/* A raw client logged in as the trust user carol, ready for queries. */
static int logged_in_raw(void)
{
    return raw_session(px.port, "carol", "app");
}

Test(protocol, startup_length_too_short_is_refused)
{
    int fd = raw_connect(px.port);
    unsigned char pkt[8] = {0, 0, 0, 3, 0, 3, 0, 0};
    send_bytes(fd, pkt, sizeof(pkt));
    cr_expect_str_eq(raw_expect_error(fd), "08P01");
    expect_closed(fd);
    close(fd);
    expect_others_fine();
}

Test(protocol, startup_length_too_long_is_refused)
{
    int fd = raw_connect(px.port);
    unsigned char pkt[8] = {0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0};
    send_bytes(fd, pkt, sizeof(pkt));
    cr_expect_str_eq(raw_expect_error(fd), "08P01");
    close(fd);
    expect_others_fine();
}

Test(protocol, unsupported_protocol_version_gets_0A000)
{
    int fd = raw_connect(px.port);
    unsigned char pkt[] = {0, 0, 0, 9, 0, 2, 0, 0, 0}; /* protocol 2.0 */
    send_bytes(fd, pkt, sizeof(pkt));
    cr_expect_str_eq(raw_expect_error(fd), "0A000");
    close(fd);
}

Test(protocol, startup_without_terminator_is_refused)
{
    int fd = raw_connect(px.port);
    unsigned char pkt[] = {0, 0, 0, 13, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0};
    send_bytes(fd, pkt, sizeof(pkt));
    cr_expect_str_eq(raw_expect_error(fd), "08P01");
    close(fd);
}

Test(protocol, gssenc_request_is_declined_then_login_proceeds)
{
    int fd = raw_connect(px.port);
    unsigned char req[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30};
    char answer = 0;
    send_bytes(fd, req, sizeof(req));
    cr_assert_eq(read(fd, &answer, 1), 1);
    cr_expect_eq(answer, 'N');
    struct buf b;
    buf_init(&b);
    struct startup_param params[] = {{"user", "carol"}, {"database", "app"}};
    proto_startup(&b, params, 2);
    send_buf(fd, &b);
    buf_free(&b);
    unsigned char body[4096];
    size_t len;
    int t;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) != 'Z')
        cr_assert(t >= 0 && t != 'E');
    close(fd);
}

Test(protocol, plaintext_sent_after_ssl_request_is_refused)
{
    int fd = raw_connect(px.port);
    unsigned char req[8 + 9] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f, 'Q',
                                0, 0, 0, 8, 'x',  'y',  'z',  0};
    send_bytes(fd, req, sizeof(req)); /* SSLRequest with a Query glued behind it */
    char answer = 0;
    cr_assert_eq(read(fd, &answer, 1), 1);
    /* either the proxy read only the request ('S' then refusal) or it saw the injection */
    if (answer == 'S') {
        unsigned char junk[64];
        ssize_t n = read(fd, junk, sizeof(junk));
        cr_expect(n <= 0 || junk[0] == 'E', "proxy went on after injected bytes");
    } else {
        cr_expect_eq(answer, 'E');
    }
    close(fd);
    expect_others_fine();
}

Test(protocol, message_over_max_message_size_closes_only_that_client)
{
    int fd = logged_in_raw();
    unsigned char hdr[5] = {'Q', 0, 0x10, 0, 0}; /* 1 MiB, over the 64 KiB limit */
    send_bytes(fd, hdr, sizeof(hdr));
    cr_expect_str_eq(raw_expect_error(fd), "08P01");
    expect_closed(fd);
    close(fd);
    expect_others_fine();
}

Test(protocol, negative_message_length_closes_only_that_client)
{
    int fd = logged_in_raw();
    unsigned char hdr[5] = {'Q', 0xff, 0xff, 0xff, 0xf0};
    send_bytes(fd, hdr, sizeof(hdr));
    cr_expect_str_eq(raw_expect_error(fd), "08P01");
    close(fd);
    expect_others_fine();
}

Test(protocol, unknown_message_type_closes_only_that_client)
{
    int fd = logged_in_raw();
    unsigned char msg[5] = {'!', 0, 0, 0, 4};
    send_bytes(fd, msg, sizeof(msg));
    cr_expect_str_eq(raw_expect_error(fd), "08P01");
    close(fd);
    expect_others_fine();
}

Test(protocol, garbage_during_authentication_is_refused)
{
    int fd = raw_connect(px.port);
    struct buf b;
    buf_init(&b);
    struct startup_param params[] = {{"user", "alice"}, {"database", "app"}};
    proto_startup(&b, params, 2);
    proto_query(&b, "SELECT 1"); /* a query instead of a SASL response */
    send_buf(fd, &b);
    buf_free(&b);
    cr_expect_str_eq(raw_expect_error(fd), "08P01");
    close(fd);
    expect_others_fine();
}

Test(protocol, large_result_streams_in_bounded_memory, .timeout = 120)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    long before = proxy_status_kb(&px, "VmHWM");
    /* 200 rows of 1 MB each: rows bigger than max_message_size stream through, and the
     * whole 200 MB never sits in the proxy */
    PGresult *r = PQexec(c, "SELECT repeat('x', 1000000) FROM generate_series(1, 200)");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    cr_expect_eq(PQntuples(r), 200);
    cr_expect_eq(PQgetlength(r, 199, 0), 1000000);
    PQclear(r);
    long after = proxy_status_kb(&px, "VmHWM");
    cr_expect(after - before < 48 * 1024, "proxy peak memory grew by %ld kB", after - before);
    PQfinish(c);
}

/* Out of file descriptors, accept() fails for as long as the backlog holds a connection:
 * lakeproxy pauses accepting instead of retrying in a tight loop (and logging each retry),
 * and serves again once descriptors are free. */
Test(protocol_fds, running_out_of_descriptors_pauses_accepting, .timeout = 60)
{
    struct proxy fp;
    proxy_start(&fp, 2);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "prlimit --nofile=48 --pid %d", (int)fp.pid);
    cr_assert_eq(system(cmd), 0, "prlimit failed");
    enum { N = 80 };
    int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = raw_connect(fp.port);
    usleep(1500 * 1000);
    int lines = file_count_lines(fp.log, "accept failed");
    cr_expect(lines >= 1 && lines <= 4, "%d 'accept failed' lines in 1.5 s", lines);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    usleep(500 * 1000);
    PGconn *c = proxy_connect(&fp, "alice", "alice-secret", "app", NULL);
    cr_expect(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    char *v = query_value(c, "SELECT 'served'");
    cr_expect_str_eq(v, "served");
    free(v);
    PQfinish(c);
    proxy_stop(&fp);
}
