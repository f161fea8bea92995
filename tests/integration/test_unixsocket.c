/* test_unixsocket.c: listen.unix_socket_dir: clients log in over DIR/.s.PGSQL.PORT as they
 * would to PostgreSQL's socket; the file has the configured mode and goes when lakeproxy stops;
 * a stale file is replaced, while a socket in use or another file in the way is refused. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"

static char yaml[8192 + 1024];

/* The standard configuration on port in transaction mode, with listen.unix_socket_dir dir and
 * the extra listen keys in more (may be ""). */
static void unix_yaml(int port, const char *dir, const char *more)
{
    static char base[8192];
    proxy_default_yaml(base, sizeof(base), port, "transaction", 2, 5000, NULL);
    cr_assert(strncmp(base, "listen:\n", 8) == 0);
    int n = snprintf(yaml, sizeof(yaml), "listen:\n  unix_socket_dir: %.300s\n%.500s%s", dir, more,
                     base + 8);
    cr_assert(n > 0 && (size_t)n < sizeof(yaml));
}

/* A fresh directory for port's socket, and the socket's path in it. */
static void socket_dir(int port, char *dir, size_t dirsz, char *path, size_t pathsz)
{
    snprintf(dir, dirsz, "%s/unix-%d", env_need("LP_TEST_DIR"), port);
    cr_assert(mkdir(dir, 0755) == 0 || errno == EEXIST);
    snprintf(path, pathsz, "%s/.s.PGSQL.%d", dir, port);
}

/* The address of the Unix socket at path. */
static struct sockaddr_un unix_addr(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    cr_assert_lt(strlen(path), sizeof(sa.sun_path), "%s: too long for a socket", path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    return sa;
}

/* A Unix socket bound at path, listening when listening; its descriptor. */
static int bound_socket(const char *path, bool listening)
{
    struct sockaddr_un sa = unix_addr(path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind %s: %s", path,
                 strerror(errno));
    if (listening)
        cr_assert_eq(listen(fd, 4), 0);
    return fd;
}

/* Logs in as alice over the socket in dir and runs a query; asserts both worked. */
static void expect_query_over(const struct proxy *p, const char *dir)
{
    char extra[400];
    snprintf(extra, sizeof(extra), "host=%s", dir);
    PGconn *c = proxy_connect(p, "alice", "alice-secret", "app", extra);
    cr_assert(PQstatus(c) == CONNECTION_OK, "login over %s failed: %s", dir, PQerrorMessage(c));
    cr_expect_str_eq(PQhost(c), dir, "libpq connected over the Unix socket");
    EXPECT_QUERY_VALUE(c, "SELECT 41 + 1", "42", "a query over the Unix socket");
    PQfinish(c);
}

/* How many entries dir holds besides . and .. */
static int entries(const char *dir)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
    FILE *f = popen(cmd, "r");
    int n = -1;
    cr_assert(f && fscanf(f, "%d", &n) == 1);
    pclose(f);
    return n;
}

/* Adds the keys tls_keys (each line indented by four spaces) under listen.tls of yaml. */
static void add_tls_keys(const char *tls_keys)
{
    char more[8192];
    char *at = strstr(yaml, "server.key\n");
    cr_assert_not_null(at);
    at += strlen("server.key\n");
    snprintf(more, sizeof(more), "%s%s", tls_keys, at);
    cr_assert_lt((size_t)(at - yaml) + strlen(more), sizeof(yaml));
    strcpy(at, more);
}

/* Starts p on a free port with its socket in a fresh dir (dirsz bytes), the extra listen keys
 * listen_more and the listen.tls keys tls_keys (either may be ""); the socket's path in path. */
static void start_on_socket(struct proxy *p, char *dir, size_t dirsz, char *path, size_t pathsz,
                            const char *listen_more, const char *tls_keys)
{
    int port = free_port();
    socket_dir(port, dir, dirsz, path, pathsz);
    unix_yaml(port, dir, listen_more);
    add_tls_keys(tls_keys);
    proxy_start_yaml(p, port, yaml);
}

TestSuite(unixsocket, .timeout = 60);

Test(unixsocket, clients_log_in_over_it_and_its_file_has_the_mode_and_goes_at_exit)
{
    struct proxy p;
    char dir[300], path[400];
    start_on_socket(&p, dir, sizeof(dir), path, sizeof(path), "  unix_socket_mode: \"0770\"\n", "");
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0, "no socket at %s", path);
    cr_expect(S_ISSOCK(st.st_mode));
    cr_expect_eq(st.st_mode & 07777, 0770, "mode %o", (unsigned)(st.st_mode & 07777));
    cr_expect_eq(entries(dir), 1, "only the socket is left in %s (no staging file)", dir);
    expect_query_over(&p, dir);
    PGconn *tcp = proxy_connect(&p, "bob", "bob-secret", "app", NULL);
    cr_expect(PQstatus(tcp) == CONNECTION_OK, "TCP still works: %s", PQerrorMessage(tcp));
    PQfinish(tcp);
    proxy_stop(&p);
    cr_expect_neq(lstat(path, &st), 0, "a lakeproxy that stops removes its socket file");
}

Test(unixsocket, a_stale_socket_file_is_replaced)
{
    struct proxy p;
    char dir[300], path[400];
    int port = free_port();
    socket_dir(port, dir, sizeof(dir), path, sizeof(path));
    close(bound_socket(path, false)); /* what a killed process leaves: nobody accepts there */
    unix_yaml(port, dir, "");
    proxy_start_yaml(&p, port, yaml);
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0777, "everyone may connect by default");
    expect_query_over(&p, dir);
    proxy_stop(&p);
}

/* Starts lakeproxy on the current yaml, expects it to exit with an error naming why, and
 * expects the file at path to be left as it was. */
static void expect_refused(int port, const char *path, const char *why)
{
    struct proxy p;
    struct stat before, after;
    cr_assert_eq(lstat(path, &before), 0);
    proxy_spawn(&p, port, yaml, "refused", NULL);
    int status = proxy_wait_exit(&p, 20000);
    cr_expect(status > 0, "lakeproxy must exit with an error (status %d); see %s", status, p.log);
    cr_expect_gt(file_count_lines(p.log, why), 0, "the log says \"%s\"; see %s", why, p.log);
    cr_assert_eq(lstat(path, &after), 0, "%s was removed", path);
    cr_expect(before.st_ino == after.st_ino, "%s was replaced", path);
}

Test(unixsocket, a_socket_in_use_or_another_file_is_left_alone_and_refused)
{
    char dir[300], path[400];
    int port = free_port();
    socket_dir(port, dir, sizeof(dir), path, sizeof(path));
    unix_yaml(port, dir, "");
    int other = bound_socket(path, true); /* another server's socket */
    expect_refused(port, path, "another process accepts connections on");
    struct sockaddr_un sa = unix_addr(path);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_expect_eq(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0,
                 "the other socket still "
                 "accepts");
    close(c);
    close(other);
    unlink(path);

    FILE *f = fopen(path, "w"); /* a file that is no socket */
    cr_assert(f);
    fclose(f);
    expect_refused(port, path, "exists and is not a socket: refusing to replace it");
    unlink(path);
}

/* listen.tls.client_tls: require refuses TCP clients that do not ask for TLS (28000, saying
 * what to do) and serves those that do; the Unix socket, where libpq never asks for TLS and
 * nothing crosses a network, is not TCP: its clients log in. */
Test(unixsocket, required_tls_refuses_plain_tcp_clients_only)
{
    struct proxy p;
    char dir[300], path[400];
    start_on_socket(&p, dir, sizeof(dir), path, sizeof(path), "", "    client_tls: require\n");
    PGconn *c = proxy_connect(&p, "alice", "alice-secret", "app", NULL); /* sslmode=disable */
    cr_expect(PQstatus(c) != CONNECTION_OK, "a TCP client without TLS logged in");
    cr_expect(strstr(PQerrorMessage(c), "TLS is required"), "%s", PQerrorMessage(c));
    PQfinish(c);
    c = proxy_connect(&p, "alice", "alice-secret", "app", "sslmode=require");
    cr_expect(PQstatus(c) == CONNECTION_OK, "over TLS: %s", PQerrorMessage(c));
    PQfinish(c);
    expect_query_over(&p, dir);
    proxy_stop(&p);
}

/* listen.tls.client_cert: require refuses libpq's clients over the socket, which never ask for
 * TLS there (red team 6: alice logged in over it without any certificate). */
Test(unixsocket, a_required_client_certificate_refuses_socket_clients)
{
    struct proxy p;
    char dir[300], path[400], more[400], extra[400];
    snprintf(more, sizeof(more), "    client_ca: %s/ca.crt\n    client_cert: require\n",
             env_need("LP_CERTS"));
    start_on_socket(&p, dir, sizeof(dir), path, sizeof(path), "", more);
    snprintf(extra, sizeof(extra), "host=%s", dir);
    PGconn *c = proxy_connect(&p, "alice", "alice-secret", "app", extra);
    cr_expect(PQstatus(c) != CONNECTION_OK,
              "alice logged in over the socket without a certificate");
    cr_expect(strstr(PQerrorMessage(c), "a client certificate is required"), "%s",
              PQerrorMessage(c));
    PQfinish(c);
    proxy_stop(&p);
}
