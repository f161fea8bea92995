/* test_timeouts.c: the clocks on connections: a statement running past pool.query_timeout_s
 * is cancelled and its client closed; a client idle between statements past
 * pool.client_idle_timeout_s is closed; neither touches a client that is merely busy, slow to
 * send its copy data, or idle where the other setting is the one that applies; TCP keepalive
 * (limits.tcp_keepalive_*) is armed on both sides. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "proto.h"
#include "rawproto.h"

static struct proxy px;

/* Databases <prefix>tx (transaction pooling) and <prefix>ss (session pooling), one server
 * each, with `setting` in their pool lines. */
static void start_two_pools(const char *prefix, const char *setting)
{
    int port = free_port();
    char yaml[16384], entry[512];
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 3000, NULL);
    static const char *const modes[][2] = {{"tx", "transaction"}, {"ss", "session"}};
    for (int i = 0; i < 2; i++) {
        snprintf(entry, sizeof(entry),
                 "  %s%s:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n"
                 "    user: lp_server\n    password: server-secret\n    tls: disable\n"
                 "    pool: {mode: %s, size: 1, max_wait_ms: 5000, %s}\n",
                 prefix, modes[i][0], env_need("LP_PGPORT"), modes[i][1], setting);
        yaml_add_database(yaml, sizeof(yaml), entry);
    }
    proxy_start_yaml(&px, port, yaml);
}

static void start_query_timeout(void)
{
    start_two_pools("q", "query_timeout_s: 1");
}

static void start_client_idle(void)
{
    start_two_pools("i", "client_idle_timeout_s: 1");
}

static void stop_proxy(void)
{
    proxy_stop(&px);
}

static PGconn *connect_to(const char *db)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", db, NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "login failed: %s", PQerrorMessage(c));
    return c;
}

/* ---- a statement running too long (pool.query_timeout_s) ---- */

TestSuite(query_timeout, .init = start_query_timeout, .fini = stop_proxy, .timeout = 60);

/* sql, run on a client of db, outlasts the 1 s timeout: the client gets FATAL 57014 naming
 * the setting after 1 to 3.5 s (not before), and PostgreSQL stops running it. */
static void expect_statement_cut(PGconn *a, PGconn *admin, const char *sql, const char *mark)
{
    struct outcome o;
    double t0 = now_s();
    cr_assert(PQsendQuery(a, sql) == 1);
    outcome_of(a, &o);
    double took = now_s() - t0;
    cr_expect_str_eq(o.state, "57014", "the client is told why: %s", o.msg);
    cr_expect(strstr(o.msg, "pool.query_timeout_s"), "the message names the setting: %s", o.msg);
    cr_expect_geq(took, 1.0, "cut after %.2f s of a 1 s timeout", took);
    cr_expect_lt(took, 3.5, "still running %.2f s into a 1 s timeout", took);
    cr_expect_neq(PQstatus(a), CONNECTION_OK, "the client stays connected");
    cr_expect(pg_statement_gone(admin, mark, 5000), "PostgreSQL still runs the statement");
}

/* Outside a transaction block: the statement is cancelled, its reply drained, and the server
 * reset and kept for the next client (the same backend). */
static void expect_overdue_statement_cancelled(const char *db)
{
    PGconn *admin = pg_admin("lp_test");
    PGconn *a = connect_to(db);
    char *pid = query_value(a, "SELECT pg_backend_pid()");
    expect_statement_cut(a, admin, "SELECT 'qt_mark_1', pg_sleep(30)", "qt_mark_1");
    PQfinish(a);
    PGconn *b = connect_to(db);
    EXPECT_QUERY_VALUE(b, "SELECT pg_backend_pid()", pid, "the server was closed, not kept");
    PQfinish(b);
    PQfinish(admin);
    free(pid);
    cr_expect_geq(file_count_lines(px.log, "(pool.query_timeout_s)"), 1, "nothing logged");
}

Test(query_timeout, transaction_pooling_cancels_a_statement_past_the_timeout)
{
    expect_overdue_statement_cancelled("qtx");
}

Test(query_timeout, session_pooling_cancels_a_statement_past_the_timeout)
{
    expect_overdue_statement_cancelled("qss");
}

/* Inside a transaction block: what the transaction wrote is rolled back, and the pool's one
 * server still serves the next client. */
Test(query_timeout, an_overdue_statement_in_a_transaction_rolls_it_back)
{
    PGconn *admin = pg_admin("lp_test");
    pg_owned_table(admin, "qt_rows", "n int");
    PGconn *a = connect_to("qtx");
    free(query_value(a, "BEGIN"));
    free(query_value(a, "INSERT INTO qt_rows VALUES (1)"));
    expect_statement_cut(a, admin, "SELECT 'qt_mark_2', pg_sleep(30)", "qt_mark_2");
    PQfinish(a);
    PGconn *b = connect_to("qtx");
    EXPECT_QUERY_VALUE(b, "SELECT count(*) FROM qt_rows", "0", "the transaction's row stayed");
    PQfinish(b);
    PQfinish(admin);
}

/* A statement sent with a Flush instead of a Sync (libpq pipeline mode) owes no
 * ReadyForQuery, and runs all the same: it is timed too. */
Test(query_timeout, a_statement_behind_a_flush_counts_as_running)
{
    PGconn *admin = pg_admin("lp_test");
    PGconn *a = connect_to("qss");
    cr_assert(PQenterPipelineMode(a) == 1);
    double t0 = now_s();
    cr_assert(PQsendQueryParams(a, "SELECT 'qt_mark_3', pg_sleep(30)", 0, NULL, NULL, NULL, NULL,
                                0) == 1);
    cr_assert(PQsendFlushRequest(a) == 1);
    cr_assert(PQflush(a) == 0);
    PGresult *r = PQgetResult(a);
    double took = now_s() - t0;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect_str_eq(state ? state : "", "57014", "the client is told why: %s", PQerrorMessage(a));
    cr_expect_geq(took, 1.0, "cut after %.2f s of a 1 s timeout", took);
    cr_expect_lt(took, 3.5, "still running %.2f s into a 1 s timeout", took);
    PQclear(r);
    cr_expect(pg_statement_gone(admin, "qt_mark_3", 5000), "PostgreSQL still runs the statement");
    PQfinish(a);
    PQfinish(admin);
}

/* Busy is not overdue: statements of 0.7 s for 3.5 s in one transaction, a pipeline of five
 * 0.6 s statements (each ends in time), copy data sent slowly for 2.5 s (the server waits
 * for the client), and a client idle for 2.5 s all stay. */
Test(query_timeout, busy_clients_within_the_timeout_stay)
{
    PGconn *admin = pg_admin("lp_test");
    pg_owned_table(admin, "qt_copy", "n int");
    PGconn *a = connect_to("qss");
    free(query_value(a, "BEGIN"));
    for (int i = 0; i < 5; i++)
        EXPECT_QUERY_VALUE(a, "SELECT pg_sleep(0.7)::text", "", "statement %d was cut", i);
    free(query_value(a, "COMMIT"));

    cr_assert(PQenterPipelineMode(a) == 1);
    for (int i = 0; i < 5; i++) {
        cr_assert(
            PQsendQueryParams(a, "SELECT pg_sleep(0.6)::text", 0, NULL, NULL, NULL, NULL, 0) == 1);
        cr_assert(PQpipelineSync(a) == 1);
    }
    for (int i = 0; i < 5; i++) {
        PGresult *r = PQgetResult(a);
        cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "pipelined statement %d: %s", i,
                     PQerrorMessage(a));
        PQclear(r);
        cr_expect_null(PQgetResult(a));
        r = PQgetResult(a);
        cr_expect_eq(PQresultStatus(r), PGRES_PIPELINE_SYNC);
        PQclear(r);
    }
    cr_assert(PQexitPipelineMode(a) == 1);

    PGresult *r = PQexec(a, "COPY qt_copy FROM STDIN");
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_IN, "%s", PQerrorMessage(a));
    PQclear(r);
    for (int i = 0; i < 5; i++) {
        usleep(500 * 1000);
        cr_assert_eq(PQputCopyData(a, "7\n", 2), 1, "%s", PQerrorMessage(a));
        cr_assert_eq(PQflush(a), 0);
    }
    cr_assert_eq(PQputCopyEnd(a, NULL), 1);
    r = PQgetResult(a);
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "the slow copy was cut: %s",
                 PQerrorMessage(a));
    PQclear(r);
    PQclear(PQgetResult(a));
    EXPECT_QUERY_VALUE(a, "SELECT count(*) FROM qt_copy", "5", "rows of the copy lost");

    usleep(2500 * 1000);
    EXPECT_QUERY_VALUE(a, "SELECT 'idle is not running'", "idle is not running", "closed idle");
    PQfinish(a);
    PQfinish(admin);
    cr_expect_eq(file_count_lines(px.log, "(pool.query_timeout_s)"), 0, "a client was cut");
}

#define BIG_ROW (32u << 20)

/* A raw session to qss that asks for one row of 32 MB (more than the socket buffers and
 * lakeproxy's output hold) and reads nothing for pause_s: the statement, left waiting on its
 * client, passes the 1 s timeout while that row is half relayed. */
static int big_row_unread(unsigned pause_s)
{
    int fd = raw_session(px.port, "carol", "qss");
    raw_query(fd, "SELECT repeat('x', 32 * 1024 * 1024)");
    sleep(pause_s);
    return fd;
}

/* A row half relayed when the statement is ended: the client gets that row whole first,
 * then FATAL 57014 saying the statement's effect is unknown (it may have committed); never a
 * message cut short, nor a close without a word (a retry could duplicate what committed). */
Test(query_timeout, a_half_relayed_row_goes_whole_before_the_error)
{
    int fd = big_row_unread(3);
    unsigned char *body = malloc(BIG_ROW + 64);
    cr_assert(body);
    char seen[16] = "", state[6] = "", msg[512] = "";
    size_t len, row_len = 0;
    int t;
    while ((t = raw_read_msg(fd, body, BIG_ROW + 64, &len, 5000)) >= 0 && strlen(seen) < 15) {
        seen[strlen(seen)] = (char)t;
        struct pg_error e;
        if (t == 'D')
            row_len = len;
        if (t == 'E' && proto_parse_error(body, len, &e)) {
            snprintf(state, sizeof(state), "%s", e.sqlstate);
            snprintf(msg, sizeof(msg), "%s", e.message);
        }
    }
    close(fd);
    free(body);
    cr_expect_str_eq(seen, "TDE", "what the client got (then the end of the connection)");
    cr_expect_eq(row_len, 2 + 4 + BIG_ROW, "the row came cut short: %zu bytes", row_len);
    cr_expect_str_eq(state, "57014");
    cr_expect(strstr(msg, "whether it took effect is unknown"), "%s", msg);
}

/* ... and a client that never reads the rest is closed without a word after
 * SERVER_ENDING_WAIT_MS (5 s): it must not hold the pool's one server for ever. */
Test(query_timeout, a_client_not_reading_the_rest_of_a_row_is_closed_after_a_wait)
{
    int fd = big_row_unread(9);
    PGconn *b = connect_to("qss");
    EXPECT_QUERY_VALUE(b, "SELECT 'served'", "served", "the slot is still held");
    PQfinish(b);
    close(fd);
    cr_expect_eq(file_count_lines(px.log, "did not read the rest of a message"), 1,
                 "the close is not logged");
}

/* ---- a client idle between statements (pool.client_idle_timeout_s) ---- */

TestSuite(client_idle, .init = start_client_idle, .fini = stop_proxy, .timeout = 60);

/* A client quiet after a statement is closed with 57P05 naming the setting 1 to 3.5 s later
 * (not before); its server (session pooling) is reset and kept for the next client. */
static void expect_idle_client_closed(const char *db)
{
    PGconn *a = connect_to(db);
    char *pid = query_value(a, "SELECT pg_backend_pid()");
    usleep(700 * 1000);
    EXPECT_QUERY_VALUE(a, "SELECT 'still open'", "still open", "closed before its timeout");
    struct said said;
    double t0 = now_s();
    idle_said(a, &said, 5000);
    double took = now_s() - t0;
    cr_expect_str_eq(said.state, "57P05", "the client is told why: %s", said.msg);
    cr_expect(strstr(said.msg, "pool.client_idle_timeout_s"), "the message names the setting: %s",
              said.msg);
    cr_expect_geq(took, 1.0, "closed after %.2f s of a 1 s timeout", took);
    cr_expect_lt(took, 3.5, "still open %.2f s into a 1 s timeout", took);
    PQfinish(a);
    PGconn *b = connect_to(db);
    EXPECT_QUERY_VALUE(b, "SELECT pg_backend_pid()", pid, "the server was closed, not kept");
    PQfinish(b);
    free(pid);
}

Test(client_idle, transaction_pooling_closes_an_idle_client)
{
    expect_idle_client_closed("itx");
}

Test(client_idle, session_pooling_closes_an_idle_client)
{
    expect_idle_client_closed("iss");
}

/* Not idle between statements: a statement running 2.5 s, a client quiet for 2.5 s inside a
 * transaction (pool.idle_transaction_timeout_s is the setting for that one), and a client
 * talking every 0.7 s for 3.5 s. */
Test(client_idle, running_talking_or_in_transaction_clients_stay)
{
    PGconn *a = connect_to("iss");
    EXPECT_QUERY_VALUE(a, "SELECT pg_sleep(2.5)::text", "", "a running statement was cut");
    free(query_value(a, "BEGIN"));
    usleep(2500 * 1000);
    EXPECT_QUERY_VALUE(a, "SELECT 'in a transaction'", "in a transaction", "closed in one");
    free(query_value(a, "COMMIT"));
    PQfinish(a);
    PGconn *b = connect_to("itx");
    for (int i = 0; i < 5; i++) {
        usleep(700 * 1000);
        EXPECT_QUERY_VALUE(b, "SELECT 'talking'", "talking", "closed while talking");
    }
    PQfinish(b);
    cr_expect_eq(file_count_lines(px.log, "(pool.client_idle_timeout_s)"), 0, "a client was cut");
}

/* ---- TCP keepalive (limits.tcp_keepalive_*) ---- */

static void start_keepalive(void)
{
    proxy_start_with(&px, "session", 2, 3000,
                     "limits:\n  tcp_keepalive_idle_s: 7\n  tcp_keepalive_interval_s: 3\n"
                     "  tcp_keepalive_count: 4\n");
}

TestSuite(tcp_keepalive, .init = start_keepalive, .fini = stop_proxy, .timeout = 60);

/* Seconds left on the keepalive timer of lakeproxy's established TCP connection whose local
 * (local_side) or peer port is port, as ss(8) reports the kernel's timer; -1: no such
 * connection, -2: it has no keepalive timer. */
static double keepalive_left(int pid, int port, bool local_side)
{
    char cmd[160], line[1024], want[64], owner[32];
    snprintf(cmd, sizeof(cmd), "ss -tnopH state established 2>/dev/null");
    snprintf(owner, sizeof(owner), "pid=%d,", pid);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f, "ss could not run");
    double left = -1;
    while (left == -1 && fgets(line, sizeof(line), f)) {
        char local[128], peer[128];
        if (!strstr(line, owner) || sscanf(line, "%*s %*s %127s %127s", local, peer) != 2)
            continue;
        snprintf(want, sizeof(want), ":%d", port);
        const char *addr = local_side ? local : peer;
        size_t n = strlen(addr), w = strlen(want);
        if (n < w || strcmp(addr + n - w, want) != 0)
            continue;
        const char *t = strstr(line, "timer:(keepalive,");
        left = -2;
        if (t) {
            char unit[8] = "";
            double v;
            if (sscanf(t + strlen("timer:(keepalive,"), "%lf%7[a-z]", &v, unit) == 2)
                left = strcmp(unit, "ms") == 0 ? v / 1000 : strcmp(unit, "min") == 0 ? v * 60 : v;
        }
    }
    pclose(f);
    return left;
}

/* Both of lakeproxy's connections, to the client and to PostgreSQL, probe a quiet peer after
 * tcp_keepalive_idle_s (7 s here, the kernel's default being two hours): a peer gone without
 * a word, or a NAT that forgot the flow, ends them instead of holding a server forever. */
Test(tcp_keepalive, client_and_server_connections_probe_a_quiet_peer)
{
    PGconn *a = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(a) == CONNECTION_OK, "%s", PQerrorMessage(a));
    free(query_value(a, "SELECT 1"));
    usleep(300 * 1000);
    double to_client = keepalive_left(px.pid, px.port, true);
    double to_server = keepalive_left(px.pid, atoi(env_need("LP_PGPORT")), false);
    cr_expect(to_client > 0 && to_client <= 7, "client connection's keepalive timer: %.1f s",
              to_client);
    cr_expect(to_server > 0 && to_server <= 7, "server connection's keepalive timer: %.1f s",
              to_server);
    PQfinish(a);
}
