/* test_client_tls.c: clients over TLS, whose TLS lakeproxy runs on the socket itself
 * (conn_tls_accept, no libevent filter): a handshake that arrives a byte at a time completes,
 * bytes that are not TLS end that connection and no other, and a TLS client that vanishes in
 * the middle of a large result gives its server back to the next client. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "rawproto.h"

static struct proxy px;

/* Database app: one server connection in transaction pooling, so that the next client is
 * served only once the one before gave its server back. */
static void start_one_server(void)
{
    char yaml[8192];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 1, 15000, NULL);
    proxy_start_yaml(&px, port, yaml);
}

static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(client_tls, .init = start_one_server, .fini = stop_proxy, .timeout = 120);

/* A TLS client of database app that runs SELECT 42 through lakeproxy (asserted). */
static void expect_tls_client_served(void)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", "sslmode=require");
    cr_assert(PQstatus(c) == CONNECTION_OK, "login failed: %s", PQerrorMessage(c));
    cr_expect_not_null(PQsslAttribute(c, "protocol"), "not TLS");
    char *v = query_value(c, "SELECT 42");
    cr_expect_str_eq(v, "42");
    free(v);
    PQfinish(c);
}

/* Sends what the TLS client wrote into out to fd one byte per segment, a millisecond apart;
 * the number of bytes. */
static size_t trickle(int fd, BIO *out)
{
    size_t sent = 0;
    char b;
    while (BIO_read(out, &b, 1) == 1) {
        cr_assert_eq(send(fd, &b, 1, MSG_NOSIGNAL), 1, "the proxy closed during the handshake");
        sent++;
        usleep(1000);
    }
    return sent;
}

Test(client_tls, a_handshake_that_arrives_a_byte_at_a_time_completes)
{
    int fd = raw_connect_tls_accepted(px.port);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    cr_assert_not_null(ctx);
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* (the session holds it) */
    cr_assert_not_null(ssl);
    BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
    cr_assert(in && out);
    SSL_set_bio(ssl, in, out); /* the client's records go through trickle */
    size_t sent = 0;
    int r;
    while ((r = SSL_connect(ssl)) != 1) {
        cr_assert_eq(SSL_get_error(ssl, r), SSL_ERROR_WANT_READ, "the handshake failed");
        sent += trickle(fd, out);
        struct pollfd p = {fd, POLLIN, 0};
        cr_assert_eq(poll(&p, 1, 5000), 1, "the proxy did not answer %zu bytes of handshake", sent);
        char buf[16384];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        cr_assert_gt(n, 0, "the proxy closed during the handshake");
        cr_assert_eq(BIO_write(in, buf, (int)n), (int)n);
    }
    sent += trickle(fd, out); /* (the client's Finished) */
    cr_expect_gt(sent, 200, "only %zu bytes of handshake were sent", sent);
    cr_assert_eq(BIO_ctrl_pending(in), 0, "records after the handshake were read ahead");
    cr_assert_eq(SSL_set_fd(ssl, fd), 1); /* from here on straight over the socket */
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cr_assert(raw_ssl_send_startup(ssl, "alice", "app"));
    int32_t code = -1;
    cr_expect_eq(raw_ssl_read_msg(ssl, NULL, &code), 'R',
                 "no authentication request after a trickled handshake");
    cr_expect_eq(code, 10, "not SCRAM (code %d)", code);
    raw_ssl_close(ssl);
    close(fd);
}

Test(client_tls, bytes_that_are_not_tls_end_that_connection_and_no_other)
{
    PGconn *bystander = proxy_connect(&px, "alice", "alice-secret", "app", "sslmode=require");
    cr_assert(PQstatus(bystander) == CONNECTION_OK, "%s", PQerrorMessage(bystander));
    int fd = raw_connect_tls_accepted(px.port);
    const char junk[] = "GET / HTTP/1.1\r\nHost: lakeproxy\r\n\r\n";
    cr_assert_eq(send(fd, junk, sizeof(junk) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(junk) - 1);
    cr_expect_geq(raw_wait_eof(fd, 5), 0, "a connection that sent no TLS stayed open");
    close(fd);
    cr_expect(wait_file_line(px.log, "TLS handshake failed", 3000),
              "the failed handshake was not logged");
    char *v = query_value(bystander, "SELECT 7");
    cr_expect_str_eq(v, "7", "a client already in was harmed");
    free(v);
    PQfinish(bystander);
    expect_tls_client_served();
}

Test(client_tls, a_tls_client_gone_mid_result_gives_its_server_back)
{
    PGconn *a = proxy_connect(&px, "alice", "alice-secret", "app", "sslmode=require");
    cr_assert(PQstatus(a) == CONNECTION_OK, "%s", PQerrorMessage(a));
    /* about 50 MB: far more than the sockets and the proxy's buffers hold */
    cr_assert(PQsendQuery(a, "SELECT repeat('x', 1000) FROM generate_series(1, 50000)"));
    struct pollfd p = {PQsocket(a), POLLIN, 0};
    cr_assert_eq(poll(&p, 1, 5000), 1, "the result did not begin");
    cr_assert_eq(shutdown(PQsocket(a), SHUT_RDWR), 0); /* gone, without a TLS close_notify */
    double t0 = now_s();
    expect_tls_client_served(); /* the one server: a's, once lakeproxy gives it back */
    cr_expect_lt(now_s() - t0, 10.0, "the next client waited %.1f s for the server", now_s() - t0);
    PQfinish(a);
}
