/* test_abuse.c: hostile clients against a running proxy: slowloris logins (a byte at a time)
 * and a flood of connections that never speak are closed after limits.login_timeout_s; a
 * client that never reads a huge result costs bounded memory and its server is closed, not
 * pooled; 10,000 connections dropped half-way through startup leave no file descriptor or
 * memory behind. Every other client keeps working meanwhile. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "proto.h"
#include "rawproto.h"

static struct proxy px;

/* Connections at once in the waves of dropped connections (max_clients leaves room). */
#define WAVE 1000
/* Growth of lakeproxy's resident memory that counts as unbounded, and as "back to baseline". */
#define RSS_BOUND_KB (64 * 1024)
#define RSS_NEAR_KB (16 * 1024)

static void start_short_login(void)
{
    static char yaml[8192];
    int port = free_port();
    cr_assert_geq(raise_fd_limit(3 * WAVE), 2 * WAVE + 100, "cannot raise the open-file limit");
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 5000,
                       "limits:\n  login_timeout_s: 2\n  max_clients: 2000\n"
                       "admin:\n  users: [alice]\n");
    proxy_start_yaml(&px, port, yaml);
}
static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(abuse, .init = start_short_login, .fini = stop_proxy, .timeout = 60);

/* Has the proxy closed fd (EOF, possibly after an ErrorResponse)? Waits up to ms. */
static bool closed_by_proxy(int fd, int ms)
{
    char buf[4096];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, ms) > 0) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            return true;
    }
    return false;
}

/* One query through the proxy as alice; the time it took. */
static double timed_query(void)
{
    double t0 = now_s();
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    char *v = query_value(c, "SELECT 'ok'");
    cr_expect_str_eq(v, "ok");
    free(v);
    PQfinish(c);
    return now_s() - t0;
}

/* A review crashed lakeproxy (a stack overflow in the parse for statistics) with one query of
 * 25,000 "+1" terms, about 50 KB. Now the statement goes to PostgreSQL unanalysed, which
 * answers it (or refuses it as too deep), and lakeproxy goes on serving. */
Test(abuse, a_statement_nested_too_deeply_to_analyse_is_answered_and_harmless)
{
    enum { TERMS = 30000 };
    char *sql = malloc(16 + 2 * TERMS);
    cr_assert(sql);
    strcpy(sql, "SELECT 1");
    for (int i = 0; i < TERMS; i++)
        strcat(sql + 8 + 2 * i, "+1");
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    for (int round = 0; round < 2; round++) { /* (the second from the caches, if any) */
        PGresult *r = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(r);
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cr_expect(st == PGRES_TUPLES_OK || (state && strcmp(state, "54001") == 0),
                  "the server's own answer (rows, or 54001 stack depth), got %s %s",
                  PQresStatus(st), state ? state : "");
        PQclear(r);
    }
    free(sql);
    EXPECT_QUERY_VALUE(c, "SELECT 'still here'", "still here", "the connection goes on");
    PQfinish(c);
    cr_expect_lt(timed_query(), 5.0, "and so does lakeproxy, for everyone");
}

Test(abuse, slowloris_logins_are_closed_and_others_keep_working)
{
    enum { N = 50 };
    int fds[N];
    struct buf b;
    struct startup_param params[] = {{"user", "alice"}, {"database", "app"}};
    buf_init(&b);
    proto_startup(&b, params, 2);
    for (int i = 0; i < N; i++)
        cr_assert((fds[i] = raw_connect(px.port)) >= 0);
    double start = now_s();
    size_t sent = 0;
    while (now_s() - start < 3.5) { /* a byte per client every 250 ms: never a whole packet */
        for (int i = 0; i < N && sent < b.len - 1; i++)
            if (fds[i] >= 0 && send(fds[i], b.data + sent, 1, MSG_NOSIGNAL) != 1) {
                close(fds[i]);
                fds[i] = -1;
            }
        sent++;
        cr_expect_lt(timed_query(), 1.0, "a normal client waits for nobody");
        usleep(250000);
    }
    int closed = 0;
    for (int i = 0; i < N; i++)
        closed += fds[i] < 0 || closed_by_proxy(fds[i], 2000);
    cr_expect_eq(closed, N, "every slow login was closed after login_timeout_s: %d of %d", closed,
                 N);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    buf_free(&b);
}

Test(abuse, a_flood_of_silent_connections_is_closed_and_others_keep_working)
{
    enum { N = 500 };
    int *fds = calloc(N, sizeof(int));
    for (int i = 0; i < N; i++)
        cr_assert((fds[i] = raw_connect(px.port)) >= 0, "connection %d", i);
    cr_expect_lt(timed_query(), 1.0, "a normal client gets in while %d sockets sit silent", N);
    sleep(3);
    int closed = 0;
    for (int i = 0; i < N; i++) {
        closed += closed_by_proxy(fds[i], 100);
        close(fds[i]);
    }
    cr_expect_eq(closed, N, "silent connections closed after login_timeout_s: %d of %d", closed, N);
    cr_expect_lt(timed_query(), 1.0);
    free(fds);
}

/* The result no client could hold: about 1 GB (a million rows of 1,000 bytes); the alias
 * finds its backend in pg_stat_activity. */
#define HUGE_QUERY "SELECT repeat('x', 1000) AS never_read FROM generate_series(1, 1000000)"

/* Backends of lp_test running HUGE_QUERY, those blocked writing to their client only if
 * blocked (the superuser connection direct). */
static int huge_query_backends(PGconn *direct, bool blocked)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%AS never_read%%' "
             "AND pid <> pg_backend_pid() %s",
             blocked ? "AND wait_event = 'ClientWrite'" : "");
    char *v = query_value(direct, sql);
    int n = atoi(v);
    free(v);
    return n;
}

/* Polls huge_query_backends until it equals want, up to timeout_s. */
static bool wait_huge_backends(PGconn *direct, bool blocked, int want, double timeout_s)
{
    double deadline = now_s() + timeout_s;
    while (huge_query_backends(direct, blocked) != want) {
        if (now_s() > deadline)
            return false;
        usleep(100000);
    }
    return true;
}

/* Expects lakeproxy's RSS back within RSS_NEAR_KB of base (polling up to 5 s) after what;
 * only logs it where RSS does not follow lakeproxy's heap (sanitizer, valgrind). */
static void expect_rss_back(long base, const char *what)
{
    double deadline = now_s() + 5;
    long rss;
    while ((rss = proxy_status_kb(&px, "VmRSS")) - base >= RSS_NEAR_KB && now_s() < deadline)
        usleep(100000);
    if (rss_follows_heap())
        cr_expect_lt(rss - base, RSS_NEAR_KB, "RSS %ld kB above its baseline after %s", rss - base,
                     what);
    cr_log_info("%s: RSS baseline %ld kB, then +%ld kB", what, base, rss - base);
}

Test(abuse, a_client_that_never_reads_costs_bounded_memory_and_its_server_is_closed)
{
    PGconn *direct = pg_admin("lp_test");
    timed_query();
    timed_query();
    long base = proxy_status_kb(&px, "VmRSS"), peak = base;
    int fd = raw_session(px.port, "carol", "app");
    int small = 4096;
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    raw_query(fd, HUGE_QUERY); /* and never read again */
    cr_assert(wait_huge_backends(direct, true, 1, 20),
              "the server never blocked writing its result to lakeproxy");
    for (double end = now_s() + 4; now_s() < end; usleep(250000)) {
        long rss = proxy_status_kb(&px, "VmRSS");
        peak = rss > peak ? rss : peak;
        cr_expect_lt(timed_query(), 2.0, "another client waits for the stuck one");
    }
    cr_expect_lt(peak - base, RSS_BOUND_KB, "RSS grew by %ld kB while back-pressured", peak - base);
    cr_expect_eq(huge_query_backends(direct, true), 1, "the server stayed back-pressured");
    close(fd);
    cr_expect(wait_huge_backends(direct, false, 0, 10),
              "the stuck client's server connection was not closed");
    expect_live_servers(&px, "alice", "alice-secret", direct, "app");
    cr_expect_lt(timed_query(), 2.0);
    cr_log_info("stuck reader: RSS peak +%ld kB", peak - base);
    expect_rss_back(base, "the stuck reader left");
    PQfinish(direct);
}

/* The same over TLS: lakeproxy's TLS layer keeps a few records for the socket, not the whole
 * result, so the result pushes back on PostgreSQL as it does over plain TCP. */
Test(abuse, a_tls_client_that_never_reads_costs_bounded_memory)
{
    PGconn *direct = pg_admin("lp_test");
    timed_query();
    timed_query();
    long base = proxy_status_kb(&px, "VmRSS"), peak = base;
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", "sslmode=require");
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    cr_assert(PQsslInUse(c), "the client is not on TLS");
    int small = 4096;
    cr_assert_eq(setsockopt(PQsocket(c), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    cr_assert(PQsendQuery(c, HUGE_QUERY), "%s", PQerrorMessage(c)); /* and never read */
    bool blocked = wait_huge_backends(direct, true, 1, 20);
    cr_expect(blocked, "the server never blocked writing its result to lakeproxy");
    for (double end = now_s() + 4; blocked && now_s() < end; usleep(250000)) {
        long rss = proxy_status_kb(&px, "VmRSS");
        peak = rss > peak ? rss : peak;
        cr_expect_lt(timed_query(), 2.0, "another client waits for the stuck one");
    }
    long rss = proxy_status_kb(&px, "VmRSS");
    peak = rss > peak ? rss : peak;
    cr_expect_lt(peak - base, RSS_BOUND_KB, "RSS grew by %ld kB while back-pressured", peak - base);
    PQfinish(c);
    cr_expect(wait_huge_backends(direct, false, 0, 10),
              "the stuck client's server connection was not closed");
    expect_rss_back(base, "the stuck TLS reader left");
    PQfinish(direct);
}

/* Streams flood (whole messages) to fd over and over, never reading, for at most secs seconds
 * or total bytes; returns the bytes the proxy took. */
static size_t flood_unread(int fd, const struct buf *flood, double secs, size_t total)
{
    size_t sent = 0, off = 0;
    double end = now_s() + secs;
    while (sent < total && now_s() < end) {
        ssize_t n = send(fd, flood->data + off, flood->len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            off = (off + (size_t)n) % flood->len;
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            break;
        } else {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            poll(&p, 1, 50);
        }
    }
    return sent;
}

/* A client that sends what lakeproxy answers itself and never reads: Close of a statement
 * inside a transaction (the CloseComplete is the proxy's own, no server involved). lakeproxy
 * stops reading it once its answers pile up, so its memory and what it takes in stay bounded,
 * and other clients keep working. (Lone DEALLOCATE queries of an idle client are answered by
 * the proxy too, and bounded the same way, but with a send per answer they pile up too slowly
 * for a test of seconds to tell.) */
Test(abuse, a_client_that_never_reads_the_proxys_own_answers_costs_bounded_memory)
{
    timed_query();
    timed_query();
    long base = proxy_status_kb(&px, "VmRSS");
    int fd = raw_session(px.port, "carol", "app");
    int small = 4096;
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    raw_query(fd, "BEGIN"); /* holds a server; its answer goes unread too */
    struct buf flood;
    buf_init(&flood);
    for (int i = 0; i < 4096; i++) {
        buf_msg_start(&flood, 'C');
        buf_put_u8(&flood, 'S');
        buf_put_str(&flood, "x");
        buf_msg_finish(&flood);
    }
    size_t sent = flood_unread(fd, &flood, 3.0, (size_t)1 << 30);
    long rss = proxy_status_kb(&px, "VmRSS");
    cr_expect_lt(rss - base, RSS_BOUND_KB, "RSS grew by %ld kB (%zu bytes sent, unread)",
                 rss - base, sent);
    /* what the proxy takes in is bounded too: its read limit, its output's mark and the
     * kernel's socket buffers (a few MiB), however long the client goes on sending */
    cr_expect_lt(sent, (size_t)32 << 20,
                 "lakeproxy took %zu bytes from a client that reads "
                 "nothing",
                 sent);
    cr_expect_lt(timed_query(), 2.0, "another client waits for the stuck one");
    close(fd);
    buf_free(&flood);
    expect_rss_back(base, "the client that did not read left");
}

/* Sends what dropped connection i says before it hangs up: nothing, half a startup packet,
 * an SSLRequest, or a whole startup packet (lakeproxy then asks for a password). */
static void send_opening(int fd, int i, const struct buf *startup)
{
    static const unsigned char ssl_request[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    switch (i % 4) {
    case 1: (void)!send(fd, startup->data, startup->len / 2, MSG_NOSIGNAL); break;
    case 2: (void)!send(fd, ssl_request, sizeof(ssl_request), MSG_NOSIGNAL); break;
    case 3: (void)!send(fd, startup->data, startup->len, MSG_NOSIGNAL); break;
    }
}

/* lakeproxy's descriptors other than its server connections. */
static int client_side_fds(void)
{
    return proxy_fd_count(&px) -
           proxy_server_sockets(&px, "127.0.0.1", atoi(env_need("LP_PGPORT")));
}

/* Polls client_side_fds until it is at most want, up to timeout_s; the last count. */
static int wait_fds_at_most(int want, double timeout_s)
{
    double deadline = now_s() + timeout_s;
    int n;
    while ((n = client_side_fds()) > want && now_s() < deadline)
        usleep(50000);
    return n;
}

Test(abuse, ten_thousand_dropped_connections_leave_no_descriptor_or_memory_behind)
{
    int fds[WAVE];
    struct buf b;
    struct startup_param params[] = {{"user", "alice"}, {"database", "app"}};
    buf_init(&b);
    proto_startup(&b, params, 2);
    PGconn *steady = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(steady) == CONNECTION_OK, "%s", PQerrorMessage(steady));
    free(query_value(steady, "SELECT 1"));
    timed_query();
    int base_fds = client_side_fds();
    long base_rss = proxy_status_kb(&px, "VmRSS");
    for (int wave = 0; wave < 10; wave++) {
        for (int i = 0; i < WAVE; i++) {
            cr_assert((fds[i] = raw_connect(px.port)) >= 0, "wave %d connection %d", wave, i);
            send_opening(fds[i], i, &b);
        }
        cr_expect_lt(timed_query(), 2.0, "a new client gets in beside %d others", WAVE);
        for (int i = 0; i < WAVE; i++)
            close(fds[i]);
        char *v = query_value(steady, "SELECT 'steady'");
        cr_expect_str_eq(v, "steady");
        free(v);
        int n = wait_fds_at_most(base_fds, 10);
        cr_assert_leq(n, base_fds, "wave %d: %d descriptors open, %d before", wave, n, base_fds);
    }
    expect_rss_back(base_rss, "10,000 dropped connections");
    cr_expect_lt(timed_query(), 2.0);
    PQfinish(steady);
    buf_free(&b);
}

/* Out of file descriptors, lakeproxy accepts each waiting connection with a spare descriptor
 * and refuses it with 53300 and a message that says what to raise, instead of leaving its
 * client waiting in the backlog with no answer; once descriptors free up it serves again. */
Test(abuse, out_of_descriptors_new_connections_get_a_clear_error_not_a_hang)
{
    /* soft and hard: lakeproxy would raise a soft limit alone to what max_clients needs */
    struct rlimit low = {64, 64};
    cr_assert_eq(prlimit(px.pid, RLIMIT_NOFILE, &low, NULL), 0, "prlimit: %s", strerror(errno));
    enum { N = 120 };
    int fds[N], refused = 0;
    for (int i = 0; i < N; i++)
        cr_assert((fds[i] = raw_connect(px.port)) >= 0, "connection %d", i);
    usleep(500000);
    for (int i = 0; i < N; i++) {
        unsigned char body[512];
        size_t len;
        if (raw_read_msg(fds[i], body, sizeof(body), &len, 20) == 'E' &&
            strcmp(raw_error_sqlstate(body, len), "53300") == 0 &&
            memmem(body, len, "file descriptors", 16))
            refused++;
    }
    cr_expect_geq(refused, N / 2, "only %d of %d connections past the limit got an error", refused,
                  N);
    cr_expect_lt(refused, N, "the first connections are served");
    for (int i = 0; i < N; i++)
        close(fds[i]);
    PGconn *c = proxy_connect_within(&px, "alice", "alice-secret", "app", 5000);
    cr_expect(PQstatus(c) == CONNECTION_OK, "not serving once descriptors are free: %s",
              PQerrorMessage(c));
    PQfinish(c);
    cr_expect_gt(file_count_lines(px.log, "connections refused with an error"), 0);
}

/* Stops the suite's proxy and writes into yaml the configuration of another, in transaction
 * pooling with 2 servers and the extra settings; returns the free port it is to listen on. */
static int stop_and_configure(char *yaml, size_t yamlsz, const char *extra)
{
    proxy_stop(&px);
    int port = free_port();
    proxy_default_yaml(yaml, yamlsz, port, "transaction", 2, 5000, extra);
    return port;
}

/* Started under a soft descriptor limit too low for limits.max_clients (systemd's default is
 * 1,024), lakeproxy raises it as far as the hard limit allows, so clients up to max_clients
 * are served rather than refused for want of descriptors. */
Test(abuse, a_low_soft_descriptor_limit_is_raised_to_what_max_clients_needs)
{
    static char yaml[8192];
    int port = stop_and_configure(yaml, sizeof(yaml),
                                  "limits:\n  login_timeout_s: 5\n  max_clients: 300\n");
    struct rlimit old, low;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    cr_assert(old.rlim_max >= 1024, "the test needs a hard descriptor limit of 1024 or more");
    low = old;
    low.rlim_cur = 64; /* lakeproxy inherits it */
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    proxy_start_yaml(&px, port, yaml);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    enum { N = 150 };
    int fds[N], refused = 0;
    for (int i = 0; i < N; i++)
        cr_assert((fds[i] = raw_connect(px.port)) >= 0, "connection %d", i);
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_expect(PQstatus(c) == CONNECTION_OK, "a login with %d connections open: %s", N,
              PQerrorMessage(c));
    PQfinish(c);
    for (int i = 0; i < N; i++) {
        unsigned char body[512];
        size_t len;
        if (raw_read_msg(fds[i], body, sizeof(body), &len, 1) == 'E')
            refused++;
        close(fds[i]);
    }
    cr_expect_eq(refused, 0, "%d of %d connections refused under max_clients", refused, N);
    cr_expect_eq(file_count_lines(px.log, "raised the descriptor limit from 64"), 1);
    struct rlimit now;
    cr_assert_eq(prlimit(px.pid, RLIMIT_NOFILE, NULL, &now), 0);
    cr_expect_geq(now.rlim_cur, 300 + N / 2, "soft limit %llu", (unsigned long long)now.rlim_cur);
}

/* A hard descriptor limit too low for limits.max_clients cannot be raised by lakeproxy: it
 * says so in its log (at start and at each reload), naming what to change. */
Test(abuse, a_hard_descriptor_limit_below_max_clients_is_warned_about)
{
    struct rlimit low = {64, 64};
    cr_assert_eq(prlimit(px.pid, RLIMIT_NOFILE, &low, NULL), 0, "prlimit: %s", strerror(errno));
    cr_assert_eq(kill(px.pid, SIGHUP), 0);
    cr_assert(wait_file_line(px.log, "configuration reloaded", 5000), "no reload");
    cr_expect_eq(file_count_lines(px.log, "the descriptor limit (64, hard limit 64) is below"), 1);
    cr_expect_eq(
        file_count_lines(px.log, "raise LimitNOFILE (ulimit -n) or lower limits.max_clients"), 1);
}

/* Past limits.max_clients a libpq client (which sends its startup packet at once) gets
 * FATAL 53300 naming the limit, and a client is served again once one has left. */
Test(abuse, past_max_clients_a_client_gets_a_clear_error)
{
    static char yaml[8192];
    int port = stop_and_configure(yaml, sizeof(yaml), "limits:\n  max_clients: 3\n");
    proxy_start_yaml(&px, port, yaml);
    PGconn *in[3];
    for (int i = 0; i < 3; i++) {
        in[i] = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
        cr_assert(PQstatus(in[i]) == CONNECTION_OK, "client %d: %s", i, PQerrorMessage(in[i]));
    }
    for (int i = 0; i < 20; i++) {
        PGconn *over = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
        cr_expect(PQstatus(over) == CONNECTION_BAD, "a fourth client was let in");
        cr_expect(strstr(PQerrorMessage(over), "too many clients already (limits.max_clients)"),
                  "attempt %d: %s", i, PQerrorMessage(over));
        PQfinish(over);
    }
    PQfinish(in[0]);
    PGconn *again = proxy_connect_within(&px, "alice", "alice-secret", "app", 5000);
    cr_expect(PQstatus(again) == CONNECTION_OK, "%s", PQerrorMessage(again));
    PQfinish(again);
    PQfinish(in[1]);
    PQfinish(in[2]);
}

/* limits for the large-message tests: messages of up to 2 MiB, and memory for one at a time */
#define LARGE_LIMITS "limits:\n  max_message_size: 2097152\n  max_message_memory: 2200000\n"
#define LARGE_TEXT 1500000 /* characters in a large query's string: above 256 KiB, below 2 MiB */

/* "SELECT length('xx...x')" with n times ch, and its length in *len (malloc'd). */
static char *long_query(size_t n, char ch, size_t *len)
{
    static const char head[] = "SELECT length('", tail[] = "')";
    *len = sizeof(head) - 1 + n + sizeof(tail) - 1;
    char *q = malloc(*len + 1);
    cr_assert_not_null(q);
    memcpy(q, head, sizeof(head) - 1);
    memset(q + sizeof(head) - 1, ch, n);
    memcpy(q + sizeof(head) - 1 + n, tail, sizeof(tail));
    return q;
}

/* A libpq client that sent sql without waiting: sends more and reads what came, for ms;
 * true once its result is in (then *value is its first value, malloc'd). */
static bool poll_result(PGconn *c, int ms, char **value)
{
    double end = now_s() + ms / 1000.0;
    do {
        int flushed = PQflush(c);
        cr_assert_neq(flushed, -1, "%s", PQerrorMessage(c));
        struct pollfd p = {.fd = PQsocket(c), .events = POLLIN | (flushed ? POLLOUT : 0)};
        poll(&p, 1, 20);
        cr_assert(PQconsumeInput(c), "%s", PQerrorMessage(c));
        if (!PQisBusy(c)) {
            PGresult *r = PQgetResult(c);
            cr_assert_not_null(r, "no query was waiting for its result");
            cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s",
                         PQresStatus(PQresultStatus(r)), PQerrorMessage(c));
            *value = strdup(PQgetvalue(r, 0, 0));
            PQclear(r);
            while ((r = PQgetResult(c)))
                PQclear(r);
            return true;
        }
    } while (now_s() < end);
    return false;
}

/* A whole Query message (header, text, NUL) of long_query(n, ch) (malloc'd). */
static char *query_msg(size_t n, char ch, size_t *len)
{
    size_t qlen;
    char *q = long_query(n, ch, &qlen);
    *len = 5 + qlen + 1;
    char *m = malloc(*len);
    cr_assert_not_null(m);
    uint32_t be = htonl((uint32_t)(4 + qlen + 1));
    m[0] = 'Q';
    memcpy(m + 1, &be, 4);
    memcpy(m + 5, q, qlen + 1);
    free(q);
    return m;
}

/* Sends all of p[0..n) on a blocking socket, or fails the test. */
static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        cr_assert_gt(w, 0, "send: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

/* Reads a raw client's answer to a query of long_query(n, ...), up to ReadyForQuery, within
 * ms: true when it came, and was n. */
static bool read_answer_of(int fd, size_t n, int ms)
{
    unsigned char body[256];
    size_t len;
    char want[24];
    snprintf(want, sizeof(want), "%zu", n);
    bool right = false;
    for (;;) {
        int type = raw_read_msg(fd, body, sizeof(body), &len, ms);
        if (type < 0)
            return false;
        if (type == 'D')
            right = len >= 6 + strlen(want) && memcmp(body + 6, want, strlen(want)) == 0;
        cr_assert_neq(type, 'E', "an error came: %s", raw_error_sqlstate(body, len));
        if (type == 'Z')
            return right;
    }
}

/* read_answer_of a query of LARGE_TEXT characters. */
static bool read_length_answer(int fd, int ms)
{
    return read_answer_of(fd, LARGE_TEXT, ms);
}

/* query_msg of LARGE_TEXT characters. */
static char *large_msg(char ch, size_t *len)
{
    return query_msg(LARGE_TEXT, ch, len);
}

struct sender {
    int fd;
    const char *p;
    size_t n;
};

static void *send_thread(void *arg)
{
    struct sender *s = arg;
    send_all(s->fd, s->p, s->n);
    return NULL;
}

/* A proxy allowing messages of up to 2 MiB and memory for one at a time, with servers
 * enough for three clients and another's small queries. */
static int large_http_port; /* its admin.http, for /metrics */

static void start_large_limits(void)
{
    static char yaml[8192];
    char extra[512];
    proxy_stop(&px);
    int port = free_port();
    large_http_port = free_port();
    snprintf(extra, sizeof(extra), LARGE_LIMITS "admin:\n  http: 127.0.0.1:%d\n", large_http_port);
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 4, 5000, extra);
    proxy_start_yaml(&px, port, yaml);
}

/* Does lakeproxy's /metrics have the line want? */
static bool metrics_show(const char *want)
{
    int status;
    char *m = http_get(large_http_port, "/metrics", &status);
    bool found = status == 200 && strstr(m, want) != NULL;
    if (!found)
        cr_log_info("/metrics (%d) has no [%s]", status, want);
    free(m);
    return found;
}

/* A raw client that sent the first half of message m (of len bytes) and stops there. */
static int half_sent(const char *m, size_t len)
{
    int fd = raw_session(px.port, "carol", "app");
    cr_assert_geq(fd, 0);
    send_all(fd, m, len / 2);
    usleep(300000); /* read, and lent its share or in line for it */
    return fd;
}

/* A libpq client (connection options opts) that sent large query q without waiting, whose
 * query is still not read 1.5 s later: another holds the memory. */
static PGconn *sent_and_waiting(const char *q, const char *opts)
{
    PGconn *b = proxy_connect(&px, "alice", "alice-secret", "app", opts);
    cr_assert(PQstatus(b) == CONNECTION_OK, "%s", PQerrorMessage(b));
    cr_assert_eq(PQsetnonblocking(b, 1), 0);
    cr_assert(PQsendQuery(b, q), "%s", PQerrorMessage(b));
    char *got = NULL;
    cr_expect_not(poll_result(b, 1500, &got), "a large query was read while another held the "
                                              "memory");
    free(got);
    return b;
}

/* A client sending a query larger than 256 KiB must first be lent its size out of
 * limits.max_message_memory; while another holds the memory, the second waits its turn, and
 * goes on when the first's message is through. So what clients make lakeproxy hold at once
 * stays bounded, however many send large messages or stop half-way through one. */
Test(abuse, large_messages_take_turns_for_limits_max_message_memory)
{
    start_large_limits();
    size_t alen, blen;
    char *am = large_msg('a', &alen), *bq = long_query(LARGE_TEXT, 'b', &blen);
    int a = half_sent(am, alen); /* holding its share */
    /* b sends a whole query of the same size: it cannot be read while a holds the memory */
    PGconn *b = sent_and_waiting(bq, NULL);
    char *got = NULL;
    cr_expect_lt(timed_query(), 2.0, "small queries do not wait for the memory");
    char line[128];
    snprintf(line, sizeof(line), "lakeproxy_message_memory_bytes{state=\"lent\"} %zu\n", alen);
    cr_expect(metrics_show(line), "a's share is not shown lent");
    cr_expect(metrics_show("lakeproxy_message_memory_waiting_clients 1\n"));
    /* a finishes its message: its answer comes, then b's */
    send_all(a, am + alen / 2, alen - alen / 2);
    cr_expect(read_length_answer(a, 5000), "a's answer did not come, or was wrong");
    cr_assert(poll_result(b, 10000, &got), "b never got its turn");
    char want[16];
    snprintf(want, sizeof(want), "%d", LARGE_TEXT);
    cr_expect_str_eq(got, want);
    free(got);
    close(a);
    PQfinish(b);
    free(am);
    free(bq);
}

/* A client that stops in the middle of a large message cannot keep the memory others wait for:
 * after LARGE_MESSAGE_STALL_S (10 s) without a byte it is closed with an error that says why,
 * and the next in line goes on. */
Test(abuse, a_client_stalled_in_a_large_message_is_closed_and_the_next_goes_on, .timeout = 60)
{
    start_large_limits();
    size_t alen, blen;
    char *am = large_msg('a', &alen), *bm = large_msg('b', &blen);
    int a = half_sent(am, alen);
    int b = half_sent(bm, blen); /* in line behind a */
    struct sender rest = {b, bm + blen / 2, blen - blen / 2};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, send_thread, &rest), 0);
    unsigned char body[512];
    size_t len;
    double t0 = now_s();
    int type = raw_read_msg(a, body, sizeof(body), &len, 20000);
    cr_assert_eq(type, 'E', "the stalled client got '%c', not an error", type);
    cr_expect_str_eq(raw_error_sqlstate(body, len), "08006");
    cr_expect(memmem(body, len, "then nothing for 10 s", 21), "the error does not say why");
    cr_expect_gt(now_s() - t0, 8.0, "closed before it had stalled 10 s");
    cr_expect(read_length_answer(b, 10000), "b did not go on once a was closed");
    cr_expect(metrics_show("lakeproxy_large_message_stalls_total 1\n"));
    pthread_join(t, NULL);
    close(a);
    close(b);
    free(am);
    free(bm);
}

/* Nor can a client that sends a byte now and then (never 10 s without one): while others
 * wait, a holder gets 10 s plus its message's size at 64 KiB/s, then it is closed. */
Test(abuse, a_client_trickling_a_large_message_while_others_wait_is_closed, .timeout = 60)
{
    start_large_limits();
    size_t alen, blen;
    /* (both do not fit in LARGE_LIMITS's memory at once: b waits) */
    char *am = query_msg(300000, 'a', &alen), *bm = query_msg(1900000, 'b', &blen);
    int a = half_sent(am, alen); /* may hold its share 10 + 300,000 / 65,536 s */
    int b = half_sent(bm, blen);
    struct sender rest = {b, bm + blen / 2, blen - blen / 2};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, send_thread, &rest), 0);
    unsigned char body[512];
    size_t len, off = alen / 2;
    int type = -1;
    double t0 = now_s();
    while (type < 0 && now_s() - t0 < 40 && off < alen - 1) {
        send_all(a, am + off++, 1);
        type = raw_read_msg(a, body, sizeof(body), &len, 2000);
    }
    cr_assert_eq(type, 'E', "the trickling client was not closed (got '%c')", type);
    cr_expect(memmem(body, len, "slower than 64 KiB/s", 20), "the error does not say why");
    cr_expect_gt(now_s() - t0, 12.0, "closed before its time was up");
    cr_expect(read_answer_of(b, 1900000, 10000), "b did not go on once a was closed");
    pthread_join(t, NULL);
    close(a);
    close(b);
    free(am);
    free(bm);
}

/* Shares are lent in turn: a client whose next large message is as large as the last does not
 * keep its share while another waits in line; it goes behind it. */
Test(abuse, a_client_sending_large_messages_one_after_another_takes_its_turn)
{
    start_large_limits();
    size_t n1, n2, nw;
    char *m1 = large_msg('a', &n1), *m2 = large_msg('c', &n2), *mw = large_msg('w', &nw);
    int h = half_sent(m1, n1); /* holding its share */
    int w = half_sent(mw, nw); /* in line behind h, then stalled half-way once lent */
    send_all(h, m1 + n1 / 2, n1 - n1 / 2);
    struct sender second = {h, m2, n2};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, send_thread, &second), 0);
    cr_expect(read_length_answer(h, 5000), "h's first answer did not come, or was wrong");
    cr_expect_not(read_length_answer(h, 1500), "h's second message was read before w's turn");
    send_all(w, mw + nw / 2, nw - nw / 2);
    cr_expect(read_length_answer(w, 5000), "w's answer did not come, or was wrong");
    cr_expect(read_length_answer(h, 10000), "h's second answer did not come after w's");
    pthread_join(t, NULL);
    close(h);
    close(w);
    free(m1);
    free(m2);
    free(mw);
}

/* Clients each sending a large query, more of them than server connections and than the
 * memory holds at once: all are answered. Only a client with a server is lent memory, so one
 * holding memory never waits for a server held by one waiting for memory. */
Test(abuse, more_large_messages_than_servers_and_memory_all_get_through)
{
    enum { N = 6 };
    static char yaml[8192];
    int port = stop_and_configure(yaml, sizeof(yaml), LARGE_LIMITS);
    proxy_start_yaml(&px, port, yaml);
    PGconn *c[N];
    char *q[N], want[16];
    bool done[N] = {false};
    snprintf(want, sizeof(want), "%d", LARGE_TEXT);
    for (int i = 0; i < N; i++) {
        size_t len;
        q[i] = long_query(LARGE_TEXT, (char)('a' + i), &len);
        c[i] = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
        cr_assert(PQstatus(c[i]) == CONNECTION_OK, "%s", PQerrorMessage(c[i]));
        cr_assert_eq(PQsetnonblocking(c[i], 1), 0);
        cr_assert(PQsendQuery(c[i], q[i]), "%s", PQerrorMessage(c[i]));
    }
    int left = N;
    for (double end = now_s() + 30; left > 0 && now_s() < end;)
        for (int i = 0; i < N; i++) {
            char *got = NULL;
            if (done[i] || !poll_result(c[i], 50, &got))
                continue;
            cr_expect_str_eq(got, want, "client %d", i);
            free(got);
            done[i] = true;
            left--;
        }
    cr_expect_eq(left, 0, "%d of %d large queries were never answered", left, N);
    for (int i = 0; i < N; i++) {
        PQfinish(c[i]);
        free(q[i]);
    }
}

/* Over TLS (which lakeproxy runs on the socket itself, conn_tls_accept) the read limit is
 * passed by at most a TLS record, read whole: a large message waits for its turn and is answered,
 * and a pipeline of far more than 256 KiB of queries is answered in order, every row right (reads
 * resumed as the input drains must not run inside the relay). */
Test(abuse, over_tls_large_messages_and_long_pipelines_are_answered_in_order, .timeout = 60)
{
    start_large_limits();
    size_t alen, blen;
    char *am = large_msg('a', &alen), *bq = long_query(LARGE_TEXT, 'b', &blen);
    int a = half_sent(am, alen); /* holding the memory */
    PGconn *b = sent_and_waiting(bq, "sslmode=require");
    cr_assert_not_null(PQsslAttribute(b, "protocol"), "not TLS");
    char *got = NULL;
    send_all(a, am + alen / 2, alen - alen / 2);
    cr_expect(read_length_answer(a, 5000));
    cr_assert(poll_result(b, 10000, &got), "b never got its turn");
    char want[16];
    snprintf(want, sizeof(want), "%d", LARGE_TEXT);
    cr_expect_str_eq(got, want);
    free(got);
    cr_assert_eq(PQsetnonblocking(b, 0), 0);
    /* 3,000 queries of 200-odd bytes each, sent before any result is read */
    enum { N = 3000 };
    cr_assert_eq(PQenterPipelineMode(b), 1);
    char q[300];
    for (int i = 0; i < N; i++) {
        snprintf(q, sizeof(q), "SELECT %d AS n, length('%0200d') AS l", i, i);
        cr_assert(PQsendQueryParams(b, q, 0, NULL, NULL, NULL, NULL, 0), "%s", PQerrorMessage(b));
    }
    cr_assert(PQpipelineSync(b));
    for (int i = 0; i < N; i++) {
        PGresult *r = PQgetResult(b);
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "query %d: %s", i, PQerrorMessage(b));
        cr_expect_eq(atoi(PQgetvalue(r, 0, 0)), i, "query %d answered out of order", i);
        cr_expect_str_eq(PQgetvalue(r, 0, 1), "200");
        PQclear(r);
        cr_assert_null(PQgetResult(b));
    }
    PGresult *r = PQgetResult(b);
    cr_expect_eq(PQresultStatus(r), PGRES_PIPELINE_SYNC);
    PQclear(r);
    cr_assert_eq(PQexitPipelineMode(b), 1);
    PQfinish(b);
    close(a);
    free(am);
    free(bq);
}

/* COPY FROM STDIN over TLS in CopyData messages far larger than 256 KiB, which stream through
 * while more is read: every byte arrives where it belongs (a read run inside the relay's drain
 * would pass bytes past a message's end as part of it, uninspected). */
Test(abuse, over_tls_large_copy_data_streams_through_intact, .timeout = 60)
{
    enum { ROWS = 12, ROW = 600000 };
    start_large_limits();
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", "sslmode=require");
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    cr_assert_not_null(PQsslAttribute(c, "protocol"), "not TLS");
    free(query_value(c, "DROP TABLE IF EXISTS abuse_copy; CREATE TABLE abuse_copy (t text); "
                        "SELECT 1"));
    PGresult *r = PQexec(c, "COPY abuse_copy FROM STDIN");
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_IN, "%s", PQerrorMessage(c));
    PQclear(r);
    char *row = malloc(ROW + 1);
    cr_assert_not_null(row);
    for (int i = 0; i < ROWS; i++) {
        memset(row, 'a' + i, ROW);
        row[ROW] = '\n';
        cr_assert_eq(PQputCopyData(c, row, ROW + 1), 1, "%s", PQerrorMessage(c));
    }
    free(row);
    copy_in_end(c);
    char *v =
        query_value(c, "SELECT count(*) || ' ' || sum(length(t)) || ' ' || "
                       "count(DISTINCT t) || ' ' || bool_and(t ~ '^(.)\\1*$') FROM abuse_copy");
    char want[64];
    snprintf(want, sizeof(want), "%d %d %d true", ROWS, ROWS * ROW, ROWS);
    cr_expect_str_eq(v, want, "rows, bytes, distinct rows, each row one letter repeated: %s", v);
    free(v);
    free(query_value(c, "DROP TABLE abuse_copy; SELECT 1"));
    PQfinish(c);
}
