/* test_tls_reload.c: the listening certificate is replaced on SIGHUP (as after a renewal
 * that rewrites the files in place): new connections get the new certificate, connections
 * made before keep working. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static struct proxy px;
static char dir[300], yaml[16384];

/* Copies file from to to (the test's own certificate files). */
static void copy_file(const char *from, const char *to)
{
    char buf[16384];
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    cr_assert(in && out, "copy %s -> %s", from, to);
    size_t n = fread(buf, 1, sizeof(buf), in);
    cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

/* Puts certificate name.crt / name.key of the test CA directory in place of the live files. */
static void install_cert(const char *name)
{
    char from[400], to[400];
    snprintf(from, sizeof(from), "%s/%s.crt", env_need("LP_CERTS"), name);
    snprintf(to, sizeof(to), "%s/live.crt", dir);
    copy_file(from, to);
    snprintf(from, sizeof(from), "%s/%s.key", env_need("LP_CERTS"), name);
    snprintf(to, sizeof(to), "%s/live.key", dir);
    copy_file(from, to);
    cr_assert_eq(chmod(to, 0600), 0); /* (a key every user may read is refused) */
}

/* Replaces every occurrence of what in s (in place, s has room) by with. */
static void replace_all(char *s, size_t cap, const char *what, const char *with)
{
    char out[16384];
    size_t o = 0;
    for (const char *p = s; *p && o + strlen(with) + 1 < sizeof(out);) {
        if (strncmp(p, what, strlen(what)) == 0) {
            o += (size_t)snprintf(out + o, sizeof(out) - o, "%s", with);
            p += strlen(what);
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    snprintf(s, cap, "%s", out);
}

static void start_with_live_cert(void)
{
    int port = free_port();
    char from[400], to[400];
    snprintf(dir, sizeof(dir), "%s/tls-%d", env_need("LP_TEST_DIR"), port);
    mkdir(dir, 0700);
    install_cert("server");
    proxy_default_yaml(yaml, sizeof(yaml), port, "session", 2, 5000, NULL);
    snprintf(from, sizeof(from), "%s/server.crt", env_need("LP_CERTS"));
    snprintf(to, sizeof(to), "%s/live.crt", dir);
    replace_all(yaml, sizeof(yaml), from, to);
    snprintf(from, sizeof(from), "%s/server.key", env_need("LP_CERTS"));
    snprintf(to, sizeof(to), "%s/live.key", dir);
    replace_all(yaml, sizeof(yaml), from, to);
    proxy_start_yaml(&px, port, yaml);
}
static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(tls_reload, .init = start_with_live_cert, .fini = stop_proxy, .timeout = 60);

/* The CN of the certificate the proxy presented on c. */
static void peer_cn(PGconn *c, char *out, size_t outsz)
{
    SSL *ssl = PQsslStruct(c, "OpenSSL");
    cr_assert_not_null(ssl, "not a TLS connection");
    X509 *x = SSL_get1_peer_certificate(ssl);
    cr_assert_not_null(x);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)outsz);
    X509_free(x);
}

Test(tls_reload, a_renewed_certificate_serves_new_connections_without_dropping_old_ones)
{
    char cn[128];
    PGconn *before = proxy_connect(&px, "alice", "alice-secret", "app", "sslmode=require");
    cr_assert(PQstatus(before) == CONNECTION_OK, "%s", PQerrorMessage(before));
    peer_cn(before, cn, sizeof(cn));
    cr_expect_str_eq(cn, "localhost");

    install_cert("rogue"); /* another certificate and key, same file names */
    proxy_reload_yaml(&px, yaml);

    PGconn *after = proxy_connect(&px, "alice", "alice-secret", "app", "sslmode=require");
    cr_assert(PQstatus(after) == CONNECTION_OK, "%s", PQerrorMessage(after));
    peer_cn(after, cn, sizeof(cn));
    cr_expect_str_eq(cn, "t7", "new connections get the renewed certificate");
    char *v = query_value(before, "SELECT 'still here'");
    cr_expect_str_eq(v, "still here", "the connection made before the reload keeps working");
    free(v);
    PQfinish(before);
    PQfinish(after);
}

Test(tls_reload, a_broken_certificate_is_refused_and_the_old_one_kept)
{
    char path[400], cn[128];
    snprintf(path, sizeof(path), "%s/live.crt", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    proxy_reload_yaml(&px, yaml);
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", "sslmode=require");
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    peer_cn(c, cn, sizeof(cn));
    cr_expect_str_eq(cn, "localhost", "the running certificate stays");
    cr_expect_geq(file_count_lines(px.log, "reload refused"), 1, "and the log says why");
    PQfinish(c);
}

/* Expects the proxy to still present the certificate it started with (CN localhost), and its
 * log to hold at least one line containing each of why[0..n). */
static void expect_reload_refused_with(const char *const *why, size_t n)
{
    char cn[128];
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", "sslmode=require");
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    peer_cn(c, cn, sizeof(cn));
    cr_expect_str_eq(cn, "localhost", "the running certificate stays");
    PQfinish(c);
    cr_expect_geq(file_count_lines(px.log, "reload refused"), 1, "the reload is refused");
    for (size_t i = 0; i < n; i++)
        cr_expect_geq(file_count_lines(px.log, why[i]), 1, "the log says: %s", why[i]);
}

/* A private key every user of the machine may read is refused (as PostgreSQL refuses its
 * ssl_key_file), saying how to fix it; the running key serves on. */
Test(tls_reload, a_key_every_user_may_read_is_refused)
{
    char path[400];
    install_cert("rogue");
    snprintf(path, sizeof(path), "%s/live.key", dir);
    cr_assert_eq(chmod(path, 0644), 0);
    proxy_reload_yaml(&px, yaml);
    const char *why[] = {"listen.tls.key", "can be read by every user (mode 0644): chmod o-rwx"};
    expect_reload_refused_with(why, 2);
}

/* A FIFO put in place of the certificate is refused at once: OpenSSL would open it blocking
 * and lakeproxy would wait for a writer, serving no one. */
Test(tls_reload, a_fifo_in_place_of_the_certificate_is_refused_at_once)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/live.crt", dir);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(mkfifo(path, 0600), 0);
    proxy_reload_yaml(&px, yaml);
    const char *why[] = {"it is not a regular file"};
    expect_reload_refused_with(why, 1);
    int unblock = open(path, O_WRONLY | O_NONBLOCK); /* (frees a reader stuck in open) */
    if (unblock >= 0)
        close(unblock);
}
