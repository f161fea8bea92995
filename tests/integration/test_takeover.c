/* test_takeover.c: zero-downtime restart: a lakeproxy started with --takeover takes the
 * listening sockets over from the running one, which serves its clients until they leave and
 * exits 0; under load no client sees an error or a refused connection, twice in a row. */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"

/* Long enough that an old process exiting within the tests' deadlines left on its own. */
#define SHUTDOWN_S 120

static char yaml[8192];
static int http_port;

/* The standard configuration on port in transaction mode, with the takeover socket sock,
 * admin.http on http_port and limits.shutdown_timeout_s of shutdown_s. */
static void takeover_yaml(char *out, size_t outsz, int port, const char *sock, int shutdown_s)
{
    static char base[8192];
    char more[512];
    snprintf(more, sizeof(more),
             "admin:\n  http: 127.0.0.1:%d\nlimits:\n  shutdown_timeout_s: %d\n", http_port,
             shutdown_s);
    proxy_default_yaml(base, sizeof(base), port, "transaction", 4, 5000, more);
    cr_assert(strncmp(base, "listen:\n", 8) == 0);
    snprintf(out, outsz, "listen:\n  takeover_socket: %s\n%s", sock, base + 8);
}

/* A takeover socket path in the test directory, distinct per port. */
static void sock_path(char *out, size_t outsz, int port)
{
    snprintf(out, outsz, "%s/takeover-%d.sock", env_need("LP_TEST_DIR"), port);
}

/* Starts the first lakeproxy on yaml and waits for its takeover socket as well (it is opened
 * just after the client port that proxy_start_yaml waits for). */
static void start_old(struct proxy *old, int port, const char *yaml)
{
    char sock[300];
    struct stat st;
    sock_path(sock, sizeof(sock), port);
    proxy_start_yaml(old, port, yaml);
    for (int tries = 0; stat(sock, &st) != 0 && tries < 100; tries++)
        usleep(50 * 1000);
    cr_assert_eq(stat(sock, &st), 0, "no takeover socket at %s", sock);
}

/* Starts `lakeproxy --takeover` on yaml as name and waits until the old process confirmed
 * that it stopped accepting; returns how long that took in seconds. */
static double take_over(struct proxy *p, int port, const char *yaml_text, const char *name)
{
    double t0 = now_s();
    proxy_spawn(p, port, yaml_text, name, "--takeover");
    cr_assert(wait_file_line(p->log, "stopped accepting", 20000),
              "the new lakeproxy did not complete the takeover; see %s", p->log);
    return now_s() - t0;
}

/* Waits until the load has made `more` successful queries beyond its count now. */
static void wait_more_queries(struct load *l, int more, const char *when)
{
    int start = load_now(l).queries;
    for (double t0 = now_s(); now_s() - t0 < 20;) {
        if (load_now(l).queries >= start + more)
            return;
        usleep(20000);
    }
    cr_assert_fail("the load made fewer than %d queries in 20 s %s", more, when);
}

/* The old process exits 0 of its own accord (well before shutdown_timeout_s) and says it
 * handed over. */
static void expect_old_exits(struct proxy *old)
{
    int st = proxy_wait_exit(old, 30000);
    cr_assert_eq(st, 0, "the old lakeproxy did not exit 0 on its own (status %d); see %s", st,
                 old->log);
    cr_assert_eq(file_count_lines(old->log, "handed the listening sockets over"), 1, "see %s",
                 old->log);
    cr_assert_eq(file_count_lines(old->log, "shutdown timeout"), 0, "see %s", old->log);
}

static void pick_http_port(void)
{
    http_port = free_port();
}

TestSuite(takeover, .init = pick_http_port, .timeout = 180);

Test(takeover, under_load_no_client_sees_an_error_twice_in_a_row)
{
    struct proxy old, new1, new2;
    struct load_result res;
    char sock[300];
    int port = free_port();
    sock_path(sock, sizeof(sock), port);
    takeover_yaml(yaml, sizeof(yaml), port, sock, SHUTDOWN_S);
    start_old(&old, port, yaml);
    struct load *l = load_start(&old, "carol", "app", 8, &res);
    wait_more_queries(l, 1000, "before the first takeover");

    double first = take_over(&new1, port, yaml, "new1");
    expect_old_exits(&old);
    wait_more_queries(l, 1000, "after the old process exited (only the new one serves)");
    cr_assert_eq(http_status(http_port, "/healthz"), 200, "admin.http moved to the new process");

    double second = take_over(&new2, port, yaml, "new2");
    expect_old_exits(&new1);
    wait_more_queries(l, 1000, "after the second takeover");
    cr_assert_eq(http_status(http_port, "/healthz"), 200);

    load_stop(l);
    fprintf(stderr,
            "takeover: %d connections, %d queries, %d errors; takeovers took %.3f s and "
            "%.3f s\n",
            res.connections, res.queries, res.errors, first, second);
    cr_assert_eq(res.errors, 0, "%d client errors, first: %s", res.errors, res.first_error);
    cr_assert_eq(access(sock, F_OK), 0, "the last process has its takeover socket");
    proxy_stop(&new2);
    cr_assert_neq(access(sock, F_OK), 0, "a process that stops removes its takeover socket");
}

Test(takeover, an_open_transaction_finishes_on_the_old_process)
{
    struct proxy old, next;
    char sock[300], sql[200], *v;
    int port = free_port();
    sock_path(sock, sizeof(sock), port);
    takeover_yaml(yaml, sizeof(yaml), port, sock, SHUTDOWN_S);
    start_old(&old, port, yaml);
    PGconn *c = proxy_connect(&old, "carol", "unused", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    snprintf(sql, sizeof(sql), "CREATE TABLE takeover_txn_%d (v int)", port);
    free(query_value(c, sql));
    free(query_value(c, "BEGIN"));
    snprintf(sql, sizeof(sql), "INSERT INTO takeover_txn_%d VALUES (1)", port);
    free(query_value(c, sql));

    take_over(&next, port, yaml, "next");
    cr_assert_eq(proxy_wait_exit(&old, 0), -1, "the old process serves its client still");
    free(query_value(c, sql));
    free(query_value(c, "COMMIT"));

    PGconn *check = proxy_connect(&next, "carol", "unused", "app", NULL); /* the new process */
    cr_assert(PQstatus(check) == CONNECTION_OK, "%s", PQerrorMessage(check));
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM takeover_txn_%d", port);
    v = query_value(check, sql);
    cr_assert_str_eq(v, "2", "both rows committed");
    free(v);
    PQfinish(check);
    cr_assert_eq(proxy_wait_exit(&old, 300), -1, "the old process waits for its last client");
    PQfinish(c);
    expect_old_exits(&old);
    proxy_stop(&next);
}

/* Logs in as carol over the Unix socket in dir; asserts it worked. */
static PGconn *connect_unix(const struct proxy *p, const char *dir)
{
    char extra[400];
    snprintf(extra, sizeof(extra), "host=%s", dir);
    PGconn *c = proxy_connect(p, "carol", "unused", "app", extra);
    cr_assert(PQstatus(c) == CONNECTION_OK, "login over %s: %s", dir, PQerrorMessage(c));
    return c;
}

Test(takeover, the_unix_socket_is_handed_over_and_its_file_kept)
{
    struct proxy old, next;
    char sock[300], dir[300], path[400], with_unix[sizeof(yaml) + 400];
    struct stat before, after;
    int port = free_port();
    sock_path(sock, sizeof(sock), port);
    snprintf(dir, sizeof(dir), "%s/unix-takeover-%d", env_need("LP_TEST_DIR"), port);
    cr_assert_eq(mkdir(dir, 0755), 0);
    snprintf(path, sizeof(path), "%s/.s.PGSQL.%d", dir, port);
    takeover_yaml(yaml, sizeof(yaml), port, sock, SHUTDOWN_S);
    int n =
        snprintf(with_unix, sizeof(with_unix), "listen:\n  unix_socket_dir: %s\n%s", dir, yaml + 8);
    cr_assert(n > 0 && (size_t)n < sizeof(with_unix));
    start_old(&old, port, with_unix);
    cr_assert_eq(lstat(path, &before), 0);
    PGconn *c = connect_unix(&old, dir);

    take_over(&next, port, with_unix, "next");
    EXPECT_QUERY_VALUE(c, "SELECT 'old'", "old", "the old process serves its client still");
    PQfinish(c);
    expect_old_exits(&old);
    cr_assert_eq(lstat(path, &after), 0, "the old process left the socket file to the new one");
    cr_expect(before.st_ino == after.st_ino, "the very socket was handed over, not bound again");
    c = connect_unix(&next, dir);
    EXPECT_QUERY_VALUE(c, "SELECT 'new'", "new", "the new process serves the Unix socket");
    PQfinish(c);
    proxy_stop(&next);
    cr_expect_neq(lstat(path, &after), 0, "the last process removes the socket file");
}

Test(takeover, without_a_running_process_it_fails_clearly)
{
    struct proxy p;
    char sock[300];
    int port = free_port();
    sock_path(sock, sizeof(sock), port);
    takeover_yaml(yaml, sizeof(yaml), port, sock, SHUTDOWN_S);
    proxy_spawn(&p, port, yaml, "alone", "--takeover");
    int st = proxy_wait_exit(&p, 10000);
    cr_assert_eq(st, 1, "status %d; see %s", st, p.log);
    cr_assert_eq(file_count_lines(p.log, "no running lakeproxy answers on "
                                         "listen.takeover_socket"),
                 1, "see %s", p.log);
    cr_assert_lt(raw_connect(port), 0, "nothing listens on the port");
}

Test(takeover, a_new_process_that_fails_leaves_the_old_one_serving)
{
    struct proxy old, bad, good;
    char sock[300], broken[8192];
    int port = free_port();
    sock_path(sock, sizeof(sock), port);
    takeover_yaml(yaml, sizeof(yaml), port, sock, SHUTDOWN_S);
    start_old(&old, port, yaml);
    /* the certificate cannot be read: found only after the sockets arrived */
    char *cert = strstr(yaml, "/server.crt");
    cr_assert(cert);
    snprintf(broken, sizeof(broken), "%.*s/missing.crt%s", (int)(cert - yaml), yaml,
             cert + strlen("/server.crt"));
    proxy_spawn(&bad, port, broken, "bad", "--takeover");
    int st = proxy_wait_exit(&bad, 15000);
    cr_assert_eq(st, 1, "status %d; see %s", st, bad.log);
    cr_assert_eq(file_count_lines(bad.log, "takeover abandoned"), 1, "see %s", bad.log);
    cr_assert(
        wait_file_line(old.log, "abandoned (it closed the connection): still accepting", 5000),
        "see %s", old.log);
    PGconn *c = proxy_connect(&old, "carol", "unused", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    free(query_value(c, "SELECT 1"));
    PQfinish(c);
    cr_assert_eq(http_status(http_port, "/healthz"), 200);

    take_over(&good, port, yaml, "good"); /* and a later takeover works */
    expect_old_exits(&old);
    proxy_stop(&good);
}

Test(takeover, an_address_only_the_old_process_had_is_closed)
{
    struct proxy old, moved;
    char sock[300], other[8192];
    int port = free_port(), port2 = free_port();
    sock_path(sock, sizeof(sock), port);
    takeover_yaml(yaml, sizeof(yaml), port, sock, SHUTDOWN_S);
    takeover_yaml(other, sizeof(other), port2, sock, SHUTDOWN_S);
    start_old(&old, port, yaml);
    take_over(&moved, port2, other, "moved");
    cr_assert_eq(file_count_lines(moved.log, "is not in this configuration: closing it"), 1,
                 "see %s", moved.log);
    expect_old_exits(&old);
    cr_assert_lt(raw_connect(port), 0, "the old port is closed");
    PGconn *c = proxy_connect(&moved, "carol", "unused", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PQfinish(c);
    proxy_stop(&moved);
}

Test(takeover, a_takeover_socket_path_that_is_not_a_socket_is_refused)
{
    struct proxy p;
    char path[300];
    int port = free_port();
    snprintf(path, sizeof(path), "%s/not-a-socket-%d", env_need("LP_TEST_DIR"), port);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fclose(f);
    takeover_yaml(yaml, sizeof(yaml), port, path, SHUTDOWN_S);
    proxy_spawn(&p, port, yaml, "notsock", NULL);
    int st = proxy_wait_exit(&p, 10000);
    cr_assert_eq(st, 1, "status %d; see %s", st, p.log);
    cr_assert_eq(file_count_lines(p.log, "exists and is not a socket: refusing to replace it"), 1,
                 "see %s", p.log);
    cr_assert_eq(access(path, F_OK), 0, "the file is left alone");
}

Test(takeover, idle_clients_of_the_old_process_are_closed_after_shutdown_timeout_s)
{
    struct proxy old, next;
    char sock[300];
    int port = free_port();
    sock_path(sock, sizeof(sock), port);
    takeover_yaml(yaml, sizeof(yaml), port, sock, 1);
    start_old(&old, port, yaml);
    PGconn *c = proxy_connect(&old, "carol", "unused", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    take_over(&next, port, yaml, "next");
    int st = proxy_wait_exit(&old, 10000);
    cr_assert_eq(st, 0, "status %d; see %s", st, old.log);
    cr_assert_eq(file_count_lines(old.log, "shutdown timeout reached 1 s after the takeover"), 1,
                 "see %s", old.log);
    char goodbye[6];
    idle_goodbye(c, goodbye, 2000);
    cr_assert_str_eq(goodbye, "57P01", "the client was told why: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, "SELECT 1");
    cr_assert_neq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(c);
    proxy_stop(&next);
}

#ifdef HAVE_SYSTEMD
Test(takeover, the_service_manager_is_told_the_new_main_pid)
{
    struct proxy old, next;
    char sock[300], path[300], want[32], seen[4096] = "";
    int port = free_port();
    int fd = notify_socket_open(path, sizeof(path));
    sock_path(sock, sizeof(sock), port);
    takeover_yaml(yaml, sizeof(yaml), port, sock, SHUTDOWN_S);
    setenv("NOTIFY_SOCKET", path, 1);
    start_old(&old, port, yaml);
    cr_assert(wait_notify(fd, "READY=1", 5000, seen, sizeof(seen)), "%s", seen);
    take_over(&next, port, yaml, "next");
    unsetenv("NOTIFY_SOCKET");
    snprintf(want, sizeof(want), "MAINPID=%d", (int)next.pid);
    cr_assert(wait_notify(fd, want, 5000, seen, sizeof(seen)), "no %s: %s", want, seen);
    cr_assert(wait_notify(fd, "READY=1", 5000, seen, sizeof(seen)), "the new one: %s", seen);
    expect_old_exits(&old);
    proxy_stop(&next);
    close(fd);
    unlink(path);
}
#endif

/* A Unix-socket connection to path that has sent text; -1 if it cannot connect. */
static int control_send(const char *path, const char *text, size_t len)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    return fd;
}

/* What comes back on fd within 5 s, up to its end (at most outsz - 1 bytes). */
static const char *control_answer(int fd, char *out, size_t outsz)
{
    size_t n = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (n < outsz - 1 && poll(&p, 1, 5000) > 0) {
        ssize_t r = read(fd, out + n, outsz - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    out[n] = '\0';
    close(fd);
    return out;
}

Test(takeover, garbage_on_the_takeover_socket_is_refused_and_harmless)
{
    struct proxy old, next;
    char sock[300], answer[256], junk[300];
    int port = free_port();
    sock_path(sock, sizeof(sock), port);
    takeover_yaml(yaml, sizeof(yaml), port, sock, SHUTDOWN_S);
    start_old(&old, port, yaml);
    int fd = control_send(sock, "HELLO\n", 6);
    cr_assert_geq(fd, 0);
    cr_assert_str_eq(control_answer(fd, answer, sizeof(answer)), "ERROR unexpected message\n");
    memset(junk, 'x', sizeof(junk)); /* no newline: longer than any line of the exchange */
    fd = control_send(sock, junk, sizeof(junk));
    cr_assert_geq(fd, 0);
    cr_assert_str_eq(control_answer(fd, answer, sizeof(answer)), "", "closed without a word");
    cr_assert(wait_file_line(old.log, "refused: a message too long", 5000), "see %s", old.log);
    cr_assert_eq(file_count_lines(old.log, "refused: unexpected message"), 1, "see %s", old.log);
    PGconn *c = proxy_connect(&old, "carol", "unused", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PQfinish(c);
    take_over(&next, port, yaml, "next");
    expect_old_exits(&old);
    proxy_stop(&next);
}
