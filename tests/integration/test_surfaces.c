/* test_surfaces.c: lakeproxy's operational surfaces under abuse: admin.http past the descriptor
 * limit, and credential sources (command, file) that never end or would block. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static struct proxy px;

static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(surfaces, .fini = stop_proxy, .timeout = 120);

/* Is the TCP connection fd still open from the other end (nothing to read, no EOF)? */
static bool still_open(int fd)
{
    char b[256];
    ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Starts lakeproxy with admin.http on a free port, which it returns. */
static int start_with_http(void)
{
    char extra[200];
    int http = free_port();
    snprintf(extra, sizeof(extra), "admin:\n  http: 127.0.0.1:%d\n", http);
    proxy_start_with(&px, "session", 2, 3000, extra);
    return http;
}

/* A /metrics request sent a byte at a time (never idle for evhttp's 5 s, which restart at
 * every byte) is closed once it has taken 10 s, rather than hold its connection and a
 * descriptor for hours. */
Test(surfaces, a_metrics_request_dribbled_a_byte_at_a_time_is_closed_in_time, .timeout = 60)
{
    int fd = raw_connect(start_with_http());
    cr_assert(fd >= 0);
    static const char start[] = "GET /metrics HTTP/1.1\r\nX-Slow: ";
    cr_assert_eq(send(fd, start, sizeof(start) - 1, MSG_NOSIGNAL), (ssize_t)(sizeof(start) - 1));
    double t0 = now_s();
    bool open_at_end = true;
    while (open_at_end && now_s() - t0 < 16) {
        sleep(2);
        open_at_end = send(fd, "a", 1, MSG_NOSIGNAL) == 1 && still_open(fd);
    }
    cr_expect(!open_at_end, "a request that never completes holds its connection past 16 s");
    cr_expect_geq(now_s() - t0, 9, "closed after %.1f s, before its 10 s", now_s() - t0);
    close(fd);
}

/* admin.http holds at most 16 connections at once: 30 requests left unfinished leave 16 open
 * a few seconds later (the ones with the least time left are ended), and a scraper that comes
 * after them is answered. */
Test(surfaces, admin_http_holds_at_most_16_connections, .timeout = 60)
{
    int http = start_with_http();
    int fds[30];
    static const char start[] = "GET /metrics HTTP/1.1\r\nX-Slow: ";
    for (int i = 0; i < 30; i++) {
        fds[i] = raw_connect(http);
        cr_assert(fds[i] >= 0);
        cr_assert_eq(send(fds[i], start, sizeof(start) - 1, MSG_NOSIGNAL),
                     (ssize_t)(sizeof(start) - 1));
        usleep(20 * 1000);
    }
    sleep(3);
    int open = 0;
    for (int i = 0; i < 30; i++)
        open += still_open(fds[i]);
    cr_expect(open <= 16 && open >= 8, "%d of 30 unfinished requests still hold a connection",
              open);
    int fd = raw_connect(http);
    cr_assert(fd >= 0);
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: lakeproxy\r\n\r\n";
    cr_assert_eq(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)(sizeof(req) - 1));
    char got[1024];
    ssize_t n = 0, k;
    double t0 = now_s();
    while (!memmem(got, (size_t)n, "\r\n\r\nok\n", 7) && now_s() - t0 < 5 &&
           (k = recv(fd, got + n, sizeof(got) - 1 - (size_t)n, 0)) > 0)
        n += k;
    cr_expect(memmem(got, (size_t)n, "\r\n\r\nok\n", 7), "the scraper is not answered: %.*s",
              (int)n, got);
    close(fd);
    for (int i = 0; i < 30; i++)
        close(fds[i]);
}

/* A scraper that keeps its connection alive, asking every 3 s, is answered every time past
 * the 10 s a request has: each answered request gives the next its own 10 s. */
Test(surfaces, a_kept_alive_scraper_is_never_cut_off, .timeout = 60)
{
    int fd = raw_connect(start_with_http());
    cr_assert(fd >= 0);
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: lakeproxy\r\n\r\n";
    for (int i = 0; i < 7; i++) {
        cr_assert_eq(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)(sizeof(req) - 1),
                     "request %d: the connection was closed", i);
        char got[1024];
        size_t n = 0;
        double t0 = now_s();
        while (!memmem(got, n, "\r\n\r\nok\n", 7) && now_s() - t0 < 5) {
            ssize_t k = recv(fd, got + n, sizeof(got) - 1 - n, MSG_DONTWAIT);
            if (k == 0)
                break;
            if (k > 0)
                n += (size_t)k;
            else
                usleep(10 * 1000);
        }
        cr_assert(memmem(got, n, "\r\n\r\nok\n", 7), "request %d (at %d s) not answered: %.*s", i,
                  3 * i, (int)n, got);
        sleep(3);
    }
    close(fd);
}

/* Descriptors lakeproxy p has open (from /proc). */
static int proxy_fds(const struct proxy *p)
{
    char cmd[100];
    snprintf(cmd, sizeof(cmd), "ls /proc/%d/fd | wc -l", (int)p->pid);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f && fscanf(f, "%d", &n) != 1)
        n = -1;
    if (f)
        pclose(f);
    return n;
}

/* CPU time (utime + stime, clock ticks) lakeproxy p has used. */
static long proxy_cpu_ticks(const struct proxy *p)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)p->pid);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *q = strrchr(buf, ')');
    long ut = 0, st = 0;
    /* after ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
     */
    sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &ut, &st);
    return ut + st;
}

/* Unauthenticated connections to /metrics that use up lakeproxy's descriptors (its budget is
 * sized for limits.max_clients) make accept() fail: admin.http then pauses new connections
 * (100 ms) and logs the failure once a second, rather than spin on accept() and log each
 * failure (hundreds of thousands a second); once they idle out, a client logs in. */
Test(surfaces, metrics_connections_past_the_descriptor_limit_neither_spin_nor_flood_the_log,
     .timeout = 90)
{
    char extra[300];
    int http = free_port();
    snprintf(extra, sizeof(extra), "admin:\n  http: 127.0.0.1:%d\nlimits:\n  max_clients: 40\n",
             http);
    struct rlimit was, low;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &was), 0);
    low = was;
    low.rlim_cur = 160; /* lakeproxy raises it to what it says it needs (40 + servers + 64) */
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    proxy_start_with(&px, "session", 2, 3000, extra);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &was), 0);
    int fds[300], n = 0;
    for (; n < 300; n++) {
        fds[n] = raw_connect(http);
        if (fds[n] < 0)
            break;
        send(fds[n], "GET /metrics HTTP/1.1\r\nX-Slow: ", 31, MSG_NOSIGNAL);
    }
    long cpu0 = proxy_cpu_ticks(&px);
    usleep(500000); /* lakeproxy accepts what it can */
    int held = proxy_fds(&px);
    sleep(6); /* past admin.http's 5 s: connections idle out, the backlog is accepted */
    long cpu = proxy_cpu_ticks(&px) - cpu0;
    int lines = file_count_lines(px.log, "from accept() call"); /* libevent's, per failure */
    int ours = file_count_lines(px.log, "admin.http: accept failed");
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", "connect_timeout=5");
    fprintf(stderr,
            "surfaces: %d /metrics connections: lakeproxy holds %d descriptors, used %ld ticks of "
            "CPU in 6.5 s, logged %d accept errors; a client login: %s",
            n, held, cpu, lines, PQstatus(c) == CONNECTION_OK ? "ok\n" : PQerrorMessage(c));
    cr_expect_lt(lines, 100, "the log is flooded: %d accept errors", lines);
    cr_expect(ours >= 1 && ours <= 8, "%d lines of admin.http: accept failed in 6.5 s", ours);
    cr_expect_lt(cpu, sysconf(_SC_CLK_TCK), "lakeproxy spins: %ld ticks of CPU in 6.5 s", cpu);
    cr_expect_eq(PQstatus(c), CONNECTION_OK, "the only database client is refused: %s",
                 PQerrorMessage(c));
    PQfinish(c);
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

/* Polls SHOW CREDENTIALS (as carol) until its first row's state is no longer "pending";
 * the last state in state. */
static bool wait_not_pending(int timeout_ms, char *state, size_t statesz)
{
    PGconn *adm = proxy_connect(&px, "carol", "unused", "lakeproxy", "connect_timeout=5");
    cr_assert(PQstatus(adm) == CONNECTION_OK, "%s", PQerrorMessage(adm));
    bool done = false;
    for (int i = 0; i < timeout_ms / 100 && !done; i++) {
        PGresult *r = admin_show(adm, "SHOW CREDENTIALS");
        snprintf(state, statesz, "%s (ok %s, failed %s, last_error \"%s\")",
                 PQgetvalue(r, 0, PQfnumber(r, "state")),
                 PQgetvalue(r, 0, PQfnumber(r, "refreshes_ok")),
                 PQgetvalue(r, 0, PQfnumber(r, "refreshes_failed")),
                 PQgetvalue(r, 0, PQfnumber(r, "last_error")));
        done = strcmp(PQgetvalue(r, 0, PQfnumber(r, "state")), "pending") != 0;
        PQclear(r);
        if (!done)
            usleep(100000);
    }
    PQfinish(adm);
    return done;
}

static const char *cred_yaml(int port, const char *cred)
{
    static char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "listen: {host: 127.0.0.1, port: %d}\n"
             "log: {level: info}\n"
             "admin: {users: [carol]}\n"
             "databases:\n"
             "  rot:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n    user: lp_server\n"
             "    tls: disable\n"
             "    pool: {mode: transaction, size: 1, max_wait_ms: 3000}\n"
             "    credentials:\n%s"
             "users:\n  carol: {auth: trust}\n",
             port, env_need("LP_PGPORT"), cred);
    return yaml;
}

/* A command that prints its token and exits, leaving something behind that holds its output
 * open (a token agent or cache daemon in a session of its own), is answered by timeout_ms:
 * its token is taken rather than the credential left "pending" for good, with every server
 * login waiting on it. */
Test(surfaces, a_command_that_leaves_a_daemon_on_its_stdout_still_ends, .timeout = 60)
{
    char cred[700], state[400], pidfile[400];
    snprintf(pidfile, sizeof(pidfile), "%s/surfaces-daemon-%d.pid", env_need("LP_TEST_DIR"),
             getpid());
    snprintf(cred, sizeof(cred),
             "      provider: command\n"
             "      shell: 'setsid sh -c \"echo \\$\\$ > %s; exec sleep 40\" & "
             "printf surfaces-token-0123456789'\n"
             "      timeout_ms: 1000\n",
             pidfile);
    int port = free_port();
    proxy_start_yaml(&px, port, cred_yaml(port, cred));
    bool ended = wait_not_pending(6000, state, sizeof(state));
    cr_expect(ended, "6 s after start (timeout_ms 1000) the fetch is still under way: %s", state);
    cr_expect(ended && strncmp(state, "valid", 5) == 0, "the command exited 0 with a token: %s",
              state);
    FILE *f = fopen(pidfile, "r"); /* the daemon the command left: this test's own */
    int pid = 0;
    if (f && fscanf(f, "%d", &pid) == 1 && pid > 1)
        kill(pid, SIGKILL);
    if (f)
        fclose(f);
    unlink(pidfile);
}

/* A FIFO put in place of the token file (by whoever may replace it) is refused as no regular
 * file: lakeproxy does not block in open() waiting for a writer, and goes on serving. */
Test(surfaces, a_fifo_in_place_of_the_token_file_does_not_hang_lakeproxy, .timeout = 60)
{
    char path[400], tmp[420], cred[600];
    snprintf(path, sizeof(path), "%s/surfaces-token-%d", env_need("LP_TEST_DIR"), getpid());
    snprintf(tmp, sizeof(tmp), "%s.fifo", path);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs("surfaces-file-token-abcdef\n", f);
    fclose(f);
    chmod(path, 0600);
    snprintf(cred, sizeof(cred), "      provider: file\n      path: %s\n", path);
    int port = free_port();
    proxy_start_yaml(&px, port, cred_yaml(port, cred));
    PGconn *before = proxy_connect(&px, "carol", "unused", "lakeproxy", "connect_timeout=5");
    cr_assert(PQstatus(before) == CONNECTION_OK, "%s", PQerrorMessage(before));
    PQfinish(before);
    unlink(tmp);
    cr_assert_eq(mkfifo(tmp, 0600), 0, "%s", strerror(errno));
    cr_assert_eq(rename(tmp, path), 0);
    sleep(2); /* the file is checked once a second */
    PGconn *adm = proxy_connect(&px, "carol", "unused", "lakeproxy", "connect_timeout=4");
    bool served = PQstatus(adm) == CONNECTION_OK;
    PGresult *r = served ? PQexec(adm, "SHOW POOLS") : NULL;
    cr_expect(served && PQresultStatus(r) == PGRES_TUPLES_OK,
              "the admin console is not served with a FIFO as the token file: %s",
              PQerrorMessage(adm));
    PQclear(r);
    PQfinish(adm);
    /* let a blocked lakeproxy go, so that it can be stopped */
    int w = open(path, O_WRONLY | O_NONBLOCK);
    if (w >= 0)
        close(w);
    unlink(path);
}
