/* test_txn_pooling.c: transaction pooling: many clients over few server connections, a
 * transaction keeps its server, settings follow the client, waits time out clearly, and a
 * server dying mid-transaction fails only that client. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "procinfo.h"
#include "proto.h"
#include "rawproto.h"

static struct proxy px;

/* A transaction pool of `size` server connections; clients wait up to wait_ms. */
static void start_txn(int size, int wait_ms)
{
    proxy_start_with(&px, "transaction", size, wait_ms, "limits:\n  max_clients: 1000\n");
}

static void start_two(void)
{
    start_txn(2, 3000);
}
static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(txn, .init = start_two, .fini = stop_proxy, .timeout = 120);

static PGconn *connect_as(const char *extra)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", extra);
    cr_assert(PQstatus(c) == CONNECTION_OK, "login failed: %s", PQerrorMessage(c));
    return c;
}

Test(txn, clients_outnumbering_servers_all_make_progress)
{
    enum { N = 6 };
    PGconn *c[N];
    for (int i = 0; i < N; i++)
        c[i] = connect_as(NULL); /* six clients stay connected over two servers */
    for (int round = 0; round < 10; round++)
        for (int i = 0; i < N; i++) {
            char *v = query_value(c[i], "SELECT count(*) FROM items WHERE id <= 10");
            cr_assert_str_eq(v, "10");
            free(v);
        }
    for (int i = 0; i < N; i++)
        PQfinish(c[i]);
}

Test(txn, a_transaction_keeps_its_server_until_it_ends)
{
    PGconn *a = connect_as(NULL), *b = connect_as(NULL);
    free(query_value(a, "BEGIN"));
    char *pid1 = query_value(a, "SELECT pg_backend_pid()");
    for (int i = 0; i < 5; i++) /* another client's work in between */
        free(query_value(b, "SELECT 1"));
    char *pid2 = query_value(a, "SELECT pg_backend_pid()");
    cr_expect_str_eq(pid1, pid2, "a transaction moved to another server");
    free(query_value(a, "CREATE TEMP TABLE in_txn (a int)"));
    free(query_value(a, "INSERT INTO in_txn VALUES (1)"));
    char *n = query_value(a, "SELECT count(*) FROM in_txn");
    cr_expect_str_eq(n, "1");
    free(query_value(a, "COMMIT"));
    free(pid1);
    free(pid2);
    free(n);
    PQfinish(a);
    PQfinish(b);
}

/* Idle servers are reused last in, first out (PgBouncer's default): the connection released
 * last serves the next client, so that under light load a few connections stay busy and warm
 * and the rest age out under idle_timeout. */
Test(txn, the_server_released_last_serves_the_next_client)
{
    PGconn *a = connect_as(NULL), *b = connect_as(NULL), *c = connect_as(NULL);
    for (int round = 0; round < 2; round++) { /* released a then b, then b then a */
        PGconn *first = round == 0 ? a : b, *last = round == 0 ? b : a;
        free(query_value(first, "BEGIN"));
        free(query_value(last, "BEGIN")); /* both servers taken */
        char *p_first = query_value(first, "SELECT pg_backend_pid()");
        char *p_last = query_value(last, "SELECT pg_backend_pid()");
        cr_assert_str_neq(p_first, p_last);
        free(query_value(first, "COMMIT"));
        free(query_value(last, "COMMIT"));
        char *next = query_value(c, "SELECT pg_backend_pid()");
        cr_expect_str_eq(next, p_last, "round %d: not the server released last", round);
        free(p_first);
        free(p_last);
        free(next);
    }
    PQfinish(a);
    PQfinish(b);
    PQfinish(c);
}

Test(txn, failed_transaction_keeps_its_server_until_rollback)
{
    PGconn *a = connect_as(NULL), *b = connect_as(NULL);
    free(query_value(a, "BEGIN"));
    char *pid1 = query_value(a, "SELECT pg_backend_pid()");
    cr_expect_str_eq(query_sqlstate(a, "SELECT 1/0"), "22012");
    free(query_value(b, "SELECT 1"));
    cr_expect_str_eq(query_sqlstate(a, "SELECT 1"), "25P02", "the aborted transaction is gone");
    free(query_value(a, "ROLLBACK"));
    free(pid1);
    PQfinish(a);
    PQfinish(b);
}

Test(txn, one_server_serves_two_connected_clients_in_turn)
{
    proxy_stop(&px);
    start_txn(1, 3000);
    PGconn *a = connect_as(NULL), *b = connect_as(NULL);
    char *pa = query_value(a, "SELECT pg_backend_pid()");
    char *pb = query_value(b, "SELECT pg_backend_pid()");
    cr_expect_str_eq(pa, pb, "with pool.size 1 both clients must share one backend");
    free(pa);
    free(pb);
    PQfinish(a);
    PQfinish(b);
}

/* Clients waiting for a server are served in the order they asked (first in, first out):
 * nobody who came later overtakes them, however the freed server is handed on. */
Test(txn, waiting_clients_are_served_in_the_order_they_came)
{
    enum { N = 4 };
    proxy_stop(&px);
    proxy_start_with(&px, "transaction", 1, 10000, "admin:\n  users: [alice]\n");
    PGconn *holder = connect_as(NULL), *w[N];
    free(query_value(holder, "CREATE SEQUENCE IF NOT EXISTS lp_turns"));
    free(query_value(holder, "BEGIN"));
    free(query_value(holder, "SELECT 1")); /* the only server is taken */
    for (int i = 0; i < N; i++) {
        w[i] = connect_as(NULL);
        cr_assert(PQsendQuery(w[i], "SELECT nextval('lp_turns')"), "%s", PQerrorMessage(w[i]));
        expect_clients_waiting(&px, "alice", "alice-secret", "app", i + 1);
    }
    free(query_value(holder, "COMMIT"));
    long long prev = 0;
    for (int i = 0; i < N; i++) {
        char *v = sent_query_value(w[i]);
        long long turn = atoll(v);
        free(v);
        cr_expect_gt(turn, prev, "client %d, which came %s, was served before an earlier one", i,
                     i == 0 ? "first" : "later");
        prev = turn;
        PQfinish(w[i]);
    }
    PQfinish(holder);
}

/* Reads replies up to ReadyForQuery; appends each DataRow's first value and each
 * CommandComplete's tag to got ("v|tag|..."). False on an error, EOF or timeout. */
static bool read_replies(int fd, char *got, size_t gotsz)
{
    unsigned char body[512];
    size_t len;
    int t;
    while ((t = raw_read_msg(fd, body, sizeof(body) - 1, &len, 5000)) != 'Z') {
        if (t < 0 || t == 'E')
            return false;
        size_t at = strlen(got);
        if (t == 'D' && len >= 6) { /* field count, then the first value's length and bytes */
            int n = (int)((uint32_t)body[2] << 24 | body[3] << 16 | body[4] << 8 | body[5]);
            snprintf(got + at, gotsz - at, "%.*s|", n, (const char *)body + 6);
        } else if (t == 'C') {
            body[len] = 0;
            snprintf(got + at, gotsz - at, "%s|", (const char *)body);
        }
    }
    return true;
}

/* An idle client's read goes to a server straight from where it was read when one is free,
 * and waits in its input when none is: either way every message of it is relayed, in order. */
Test(txn, an_idle_clients_read_is_relayed_whole_with_or_without_a_free_server)
{
    proxy_stop(&px);
    start_txn(1, 5000);
    PGconn *holder = connect_as(NULL);
    PQclear(PQexec(holder, "BEGIN"));
    char *v = query_value(holder, "SELECT 'holding the only server'");
    free(v);
    int fd = raw_session(px.port, "carol", "app");
    struct buf b;
    buf_init(&b);
    proto_query(&b, "SELECT 'first'");
    proto_query(&b, "SELECT 'second'");
    cr_assert(raw_send(fd, &b)); /* one write, while no server is free */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    cr_expect_eq(poll(&pfd, 1, 300), 0, "answered while the only server was held");
    PQclear(PQexec(holder, "COMMIT"));
    char got[256] = "";
    cr_assert(read_replies(fd, got, sizeof(got)) && read_replies(fd, got, sizeof(got)), "%s", got);
    cr_expect_str_eq(got, "first|SELECT 1|second|SELECT 1|");
    proto_query(&b, "SELECT 'third'"); /* now idle, with the server free */
    proto_query(&b, "SELECT 'fourth'");
    cr_assert(raw_send(fd, &b));
    got[0] = 0;
    cr_assert(read_replies(fd, got, sizeof(got)) && read_replies(fd, got, sizeof(got)), "%s", got);
    cr_expect_str_eq(got, "third|SELECT 1|fourth|SELECT 1|");
    raw_put_empty(&b, 'X'); /* a Terminate between transactions needs no server */
    cr_assert(raw_send(fd, &b));
    unsigned char body[64];
    size_t len;
    cr_expect_eq(raw_read_msg(fd, body, sizeof(body), &len, 5000), -1, "still open after X");
    buf_free(&b);
    close(fd);
    v = query_value(holder, "SELECT 'server still serves'");
    cr_expect_str_eq(v, "server still serves");
    free(v);
    PQfinish(holder);
}

/* A review: between transactions, a message of an invalid type that declared a large length
 * (a second startup packet, say) was waited for whole, so the client hung; PostgreSQL, and
 * lakeproxy in session mode, refuse it at once. */
Test(txn, an_invalid_message_type_is_refused_at_once_between_transactions)
{
    int fd = raw_session(px.port, "carol", "app");
    const unsigned char junk[5] = {'Z', 0, 0x10, 0, 0}; /* declares about a MiB that never comes */
    cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    unsigned char body[256];
    size_t len;
    double t0 = now_s();
    int type = raw_read_msg(fd, body, sizeof(body), &len, 3000);
    cr_expect_eq(type, 'E', "an ErrorResponse, not a wait (got %d)", type);
    if (type == 'E')
        cr_expect_str_eq(raw_error_sqlstate(body, len), "08P01");
    cr_expect_lt(now_s() - t0, 2.0);
    close(fd);
}

/* A review: a client that pipelined more than 65,536 messages before reading a reply was
 * disconnected ("too many messages in flight"); PostgreSQL stops reading it instead, and so
 * does lakeproxy now, until the server has answered half of what it owes. */
Test(txn, a_pipeline_deeper_than_the_reply_queue_is_answered_whole, .timeout = 120)
{
    enum { SYNCS = 70000 };
    int fd = raw_session(px.port, "carol", "app");
    struct buf b;
    buf_init(&b);
    proto_query(&b, "SELECT pg_sleep(0.5)"); /* the server busy while the rest arrives */
    for (int i = 0; i < SYNCS; i++)
        raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b), "the whole pipeline written before any read");
    buf_free(&b);
    static unsigned char body[256];
    size_t len;
    int ready = 0, errors = 0, type;
    while (ready < SYNCS + 1 && (type = raw_read_msg(fd, body, sizeof(body), &len, 10000)) >= 0) {
        ready += type == 'Z';
        errors += type == 'E';
    }
    cr_expect_eq(errors, 0, "an error: %s", errors ? raw_error_sqlstate(body, len) : "");
    cr_expect_eq(ready, SYNCS + 1, "every message answered");
    close(fd);
}

/* A review: a client waiting for a server sent a cancel for its query, which lakeproxy
 * dropped (no server to send it to), so the query ran in full once a server came free. Now it
 * is cancelled (answered 57014 without running: a_cancelled_queued_query_never_runs). */
Test(txn, a_cancel_while_waiting_for_a_server_cancels_the_query_once_it_runs)
{
    proxy_stop(&px);
    proxy_start_with(&px, "transaction", 1, 10000, "admin:\n  users: [alice]\n");
    PGconn *holder = connect_as(NULL), *b = connect_as(NULL);
    PQclear(PQexec(holder, "BEGIN"));
    free(query_value(holder, "SELECT 'holding the only server'"));
    cr_assert(PQsendQuery(b, "SELECT pg_sleep(5)"));
    /* b waits in line (a fixed 200 ms was not always enough on a loaded machine: a cancel that
     * comes before the query has nothing to cancel, on PostgreSQL too) */
    expect_clients_waiting(&px, "alice", "alice-secret", "app", 1);
    PGcancel *cancel = PQgetCancel(b);
    char errbuf[256];
    cr_expect(PQcancel(cancel, errbuf, sizeof(errbuf)), "%s", errbuf);
    PQfreeCancel(cancel);
    double t0 = now_s();
    PQclear(PQexec(holder, "COMMIT"));
    PGresult *r = PQgetResult(b);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect_str_eq(state ? state : "(none)", "57014", "the query was cancelled");
    cr_expect_lt(now_s() - t0, 4.0, "well before its 5 s");
    PQclear(r);
    while ((r = PQgetResult(b)))
        PQclear(r);
    EXPECT_QUERY_VALUE(b, "SELECT 'next'", "next", "the client goes on");
    PQfinish(holder);
    PQfinish(b);
}

/* Holds the only server in a transaction while a raw session sends msgs (a statement that
 * INSERTs into table, then one that returns 'after'), which wait; cancels: the cancel
 * connection closes at once, the first statement is answered 57014 and ReadyForQuery while
 * the server is still held, the second runs once it is free, and table stays empty. */
static void expect_queued_statement_cancelled(const char *table, struct buf *msgs)
{
    proxy_stop(&px);
    proxy_start_with(&px, "transaction", 1, 10000, "admin:\n  users: [alice]\n");
    PGconn *adm = pg_admin("lp_test");
    pg_owned_table(adm, table, "v int");
    PGconn *holder = connect_as(NULL);
    PQclear(PQexec(holder, "BEGIN"));
    free(query_value(holder, "SELECT 'holding the only server'"));
    struct rawsess v;
    cr_assert(raw_keyed_try(px.port, &v, "app"));
    cr_assert(raw_send(v.fd, msgs));
    expect_clients_waiting(&px, "alice", "alice-secret", "app", 1);
    int cfd = raw_connect(px.port);
    cr_assert(cfd >= 0);
    struct buf b;
    buf_init(&b);
    proto_cancel_request(&b, v.pid, v.key);
    cr_assert(raw_send(cfd, &b));
    buf_free(&b);
    char junk[16], states[64], rows[64], sql[128];
    struct pollfd pf = {cfd, POLLIN, 0};
    cr_expect(poll(&pf, 1, 2000) == 1 && recv(cfd, junk, sizeof(junk), 0) == 0,
              "the cancel connection was not closed at once");
    close(cfd);
    cr_expect(raw_replies(v.fd, 1, states, sizeof(states), rows, sizeof(rows), 2000),
              "no answer to the cancelled statement while the server was held");
    cr_expect_str_eq(states, "57014|");
    cr_expect_str_eq(rows, "");
    PQclear(PQexec(holder, "COMMIT"));
    cr_expect(raw_replies(v.fd, 1, states, sizeof(states), rows, sizeof(rows), 5000),
              "the statement behind the cancelled one was not answered");
    cr_expect_str_eq(states, "", "the statement behind the cancelled one failed");
    cr_expect_str_eq(rows, "after|");
    usleep(200 * 1000);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    EXPECT_QUERY_VALUE(adm, sql, "0", "the cancelled INSERT ran");
    close(v.fd);
    PQfinish(holder);
    PQfinish(adm);
}

/* A cancel for a simple query still waiting for a server: PQcancel returns at once, the
 * client gets 57014 and ReadyForQuery while the server is still held by another, and the
 * query never runs, not even once the server comes free; what the client sent behind it runs
 * as usual. (Sent with a cancel behind it, the query ran in full whenever the cancel reached
 * PostgreSQL before the backend had read the query.) */
Test(txn, a_cancelled_queued_query_never_runs)
{
    struct buf m;
    buf_init(&m);
    raw_put_query(&m, "INSERT INTO txn_cancelled_queued VALUES (1)");
    raw_put_query(&m, "SELECT 'after'");
    expect_queued_statement_cancelled("txn_cancelled_queued", &m);
    buf_free(&m);
}

/* The same for an extended-protocol batch waiting for a server (what psycopg, JDBC and
 * node-postgres send): skipped through its Sync, so its named statement is never made either
 * and the batch behind may Parse the same name. */
Test(txn, a_cancelled_queued_batch_never_runs)
{
    struct buf m;
    buf_init(&m);
    raw_put_parse(&m, "s1", "INSERT INTO txn_cancelled_batch VALUES (1)");
    raw_put_bind(&m, "", "s1");
    raw_put_execute(&m, "");
    raw_put_empty(&m, 'S');
    raw_put_parse(&m, "s1", "SELECT 'after'");
    raw_put_bind(&m, "", "s1");
    raw_put_execute(&m, "");
    raw_put_empty(&m, 'S');
    expect_queued_statement_cancelled("txn_cancelled_batch", &m);
    buf_free(&m);
}

/* An empty table name (columns cols) that every client may use. */
static void fresh_table(PGconn *admin, const char *name, const char *cols)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", name);
    free(query_value(admin, sql));
    snprintf(sql, sizeof(sql), "CREATE TABLE %s (%s)", name, cols);
    free(query_value(admin, sql));
    snprintf(sql, sizeof(sql), "GRANT ALL ON %s TO PUBLIC", name);
    free(query_value(admin, sql));
}

/* sql's value once it is want, or after 5 s, whatever it is then (the caller frees it). */
static char *poll_value(PGconn *c, const char *sql, const char *want)
{
    char *v = NULL;
    for (int tries = 0; tries < 100; tries++) {
        free(v);
        v = query_value(c, sql);
        if (strcmp(v, want) == 0)
            break;
        usleep(50 * 1000);
    }
    return v;
}

/* A review: a client that sent statements and left at once (Terminate, or a plain close)
 * lost all but the first under transaction pooling: its server was closed with them in
 * flight. PostgreSQL runs what a client sent before it left, and so does lakeproxy now; what
 * they leave open is rolled back, as PostgreSQL does on a disconnect. */
Test(txn, statements_sent_before_the_client_leaves_still_run)
{
    PGconn *admin = pg_admin("lp_test");
    fresh_table(admin, "left_behind", "how text, n int");
    static const char *const hows[] = {"terminate", "close"};
    for (int h = 0; h < 2; h++) {
        int fd = raw_session(px.port, "carol", "app");
        struct buf b;
        buf_init(&b);
        char sql[128];
        for (int i = 0; i < 5; i++) {
            snprintf(sql, sizeof(sql), "INSERT INTO left_behind VALUES ('%s', %d)", hows[h], i);
            proto_query(&b, sql);
        }
        proto_query(&b, "BEGIN");
        snprintf(sql, sizeof(sql), "INSERT INTO left_behind VALUES ('%s', 99)", hows[h]);
        proto_query(&b, sql); /* open when the client leaves: rolled back */
        if (h == 0)
            raw_put_empty(&b, 'X');
        cr_assert(raw_send(fd, &b));
        buf_free(&b);
        close(fd);
    }
    char *v = poll_value(admin,
                         "SELECT count(*) FILTER (WHERE n < 5) || '/' || "
                         "count(*) FILTER (WHERE n = 99) FROM left_behind",
                         "10/0");
    cr_expect_str_eq(v, "10/0", "every autocommit statement ran, the open transaction did not");
    free(v);
    PQfinish(admin);
    EXPECT_QUERY_VALUE(connect_as(NULL), "SELECT 'pool still serves'", "pool still serves",
                       "after the drained servers' reset");
}

/* A departed client's result with a row over 64 KiB (the size of the proxy's own replies) was
 * not drained: the server was closed, its statements after that row lost, and the log named
 * limits.max_message_size. Rows are dropped as they arrive now, whatever their size. */
Test(txn, a_departed_clients_large_rows_are_drained_and_its_server_kept)
{
    proxy_stop(&px);
    start_txn(1, 3000);
    PGconn *admin = pg_admin("lp_test");
    fresh_table(admin, "left_large", "n int");
    PGconn *before = connect_as(NULL);
    char *pid = query_value(before, "SELECT pg_backend_pid()");
    PQfinish(before);
    int fd = raw_session(px.port, "carol", "app");
    struct buf b;
    buf_init(&b);
    proto_query(&b, "SELECT repeat('x', 300000), pg_sleep(0.2)"); /* running when it leaves */
    proto_query(&b, "INSERT INTO left_large VALUES (1)");
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    close(fd);
    char *v = poll_value(admin, "SELECT count(*) FROM left_large", "1");
    cr_expect_str_eq(v, "1", "the statement after the large row ran");
    free(v);
    PGconn *after = connect_as(NULL);
    EXPECT_QUERY_VALUE(after, "SELECT pg_backend_pid()", pid,
                       "the same server serves the next client: it was drained, not closed");
    PQfinish(after);
    PQfinish(admin);
    free(pid);
    cr_expect_eq(file_count_lines(px.log, "max_message_size"), 0,
                 "no limit of clients' messages named");
}

/* A review of the above: a server left with an extended-protocol segment whose error skips a
 * Query behind it waited forever for that Query's ReadyForQuery (the pool lost it for good),
 * and a client that left with part of a message behind whole ones never closed. Neither is
 * waited for now: the server is closed, the client closes. */
Test(txn, a_client_leaving_what_cannot_be_counted_costs_no_server)
{
    proxy_stop(&px);
    start_txn(1, 3000);
    int fd = raw_session(px.port, "carol", "app");
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "", "SELECT pg_sleep(0.2), 1/0");
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    proto_query(&b, "SELECT 1"); /* skipped by the error: no ReadyForQuery of its own */
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    close(fd);
    PGconn *holder = connect_as(NULL);
    EXPECT_QUERY_VALUE(holder, "SELECT 'served'", "served", "the only server is not lost");
    PQclear(PQexec(holder, "BEGIN")); /* holds it while the next client leaves mid-message */
    free(query_value(holder, "SELECT 1"));
    fd = raw_session(px.port, "carol", "app");
    proto_query(&b, "SELECT 2");
    cr_assert(raw_send(fd, &b));
    cr_assert_eq(write(fd, "Q\0\0", 3), 3); /* part of a second message */
    close(fd);
    usleep(100 * 1000);
    PQclear(PQexec(holder, "COMMIT"));
    PGconn *next = connect_as(NULL);
    double t0 = now_s();
    EXPECT_QUERY_VALUE(next, "SELECT 'next'", "next", "the server went on to the next client");
    cr_expect_lt(now_s() - t0, 2.0);
    buf_free(&b);
    PQfinish(next);
    PQfinish(holder);
}

/* The same review: a client that left in a COPY FROM STDIN whose error came after it left,
 * having sent Syncs during the copy (answered once the copy fails), had its server drained by
 * a count of ReadyForQuery that ran out early: the server went back to the pool with replies
 * still coming, and the next clients read them as theirs (another tenant's rows, under RLS).
 * A server in or after a copy is not drained. */
Test(txn, a_client_leaving_during_a_copy_never_hands_its_replies_to_the_next)
{
    proxy_stop(&px);
    start_txn(1, 5000);
    PGconn *admin = pg_admin("lp_test");
    free(query_value(admin, "DROP TABLE IF EXISTS slow_copy"));
    free(query_value(admin, "CREATE TABLE slow_copy (v int)"));
    free(query_value(admin, "CREATE OR REPLACE FUNCTION slow_fail() RETURNS trigger "
                            "LANGUAGE plpgsql AS $$BEGIN PERFORM pg_sleep(0.5); "
                            "RAISE EXCEPTION 'late'; END$$"));
    free(query_value(admin, "CREATE TRIGGER slow_fail BEFORE INSERT ON slow_copy FOR EACH ROW "
                            "EXECUTE FUNCTION slow_fail()"));
    free(query_value(admin, "GRANT ALL ON slow_copy TO PUBLIC"));
    PQfinish(admin);
    int fd = raw_session(px.port, "carol", "app");
    struct buf b;
    buf_init(&b);
    proto_query(&b, "COPY slow_copy FROM STDIN");
    cr_assert(raw_send(fd, &b));
    unsigned char body[256];
    size_t len;
    int type;
    while ((type = raw_read_msg(fd, body, sizeof(body), &len, 5000)) >= 0 && type != 'G')
        ;
    cr_assert_eq(type, 'G', "the copy started");
    buf_msg_start(&b, 'd');
    buf_put_bytes(&b, "1\n", 2);
    buf_msg_finish(&b);
    raw_put_empty(&b, 'S');
    raw_put_empty(&b, 'S');
    raw_put_empty(&b, 'c');
    cr_assert(raw_send(fd, &b));
    close(fd); /* before the row's trigger fails */
    PGconn *w = connect_as(NULL), *x = connect_as(NULL);
    for (int i = 0; i < 5; i++) {
        EXPECT_QUERY_VALUE(w, "SELECT 'row-for-w'", "row-for-w", "w's own answer (round %d)", i);
        EXPECT_QUERY_VALUE(x, "SELECT 'row-for-x'", "row-for-x", "x's own answer (round %d)", i);
    }
    buf_free(&b);
    PQfinish(w);
    PQfinish(x);
}

Test(txn, session_parameters_follow_each_client)
{
    proxy_stop(&px);
    start_txn(1, 3000);
    PGconn *a = connect_as("application_name=client-a options='-c search_path=pg_catalog,public'");
    PGconn *b = connect_as("application_name=client-b");
    for (int i = 0; i < 5; i++) {
        char *va = query_value(a, "SELECT current_setting('application_name') || ' ' || "
                                  "current_schemas(false)::text");
        char *vb = query_value(b, "SELECT current_setting('application_name') || ' ' || "
                                  "current_setting('search_path')");
        cr_expect_str_eq(va, "client-a {pg_catalog,public}"); /* two schemas, not "a,b" */
        cr_expect_str_eq(vb, "client-b \"$user\", public");
        free(va);
        free(vb);
    }
    /* a client's own SET of a tracked parameter follows it too */
    free(query_value(a, "SET application_name = 'renamed-a'"));
    free(query_value(b, "SELECT 1"));
    char *va = query_value(a, "SELECT current_setting('application_name')");
    cr_expect_str_eq(va, "renamed-a");
    char *vb = query_value(b, "SELECT current_setting('application_name')");
    cr_expect_str_eq(vb, "client-b");
    free(va);
    free(vb);
    PQfinish(a);
    PQfinish(b);
}

/* A review found a client's startup settings skipped on a server where another client had
 * changed them: lakeproxy's record of what it had applied there still said the startup value,
 * so it sent nothing. A statement that may change such settings (SET, RESET ALL, set_config,
 * DISCARD ALL, simple or extended) makes that record unknown. */
Test(txn, a_clients_startup_settings_hold_after_another_client_changed_them)
{
    proxy_stop(&px);
    start_txn(1, 3000);
    static const char *const changes[] = {
        "SET statement_timeout = 7777; SET search_path = pg_catalog",
        "SELECT set_config('statement_timeout', '7777', false), "
        "set_config('search_path', 'pg_catalog', false)",
        "RESET ALL",
        "DISCARD ALL",
        /* a second review: search_path's other name, the settings view, a DO block */
        "SET SCHEMA 'pg_catalog'",
        "UPDATE pg_settings SET setting = 'pg_catalog' WHERE name = 'search_path'",
        "DO $$BEGIN EXECUTE 'SET statement_time' || 'out = 7777'; END$$",
    };
    const char *opts = "options='-c statement_timeout=1234 -c search_path=public'";
    for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
        PGconn *a = connect_as(opts), *b = connect_as(opts);
        for (int extended = 0; extended < 2; extended++) {
            PGresult *r = extended && !strchr(changes[i], ';')
                              ? PQexecParams(a, changes[i], 0, NULL, NULL, NULL, NULL, 0)
                              : PQexec(a, changes[i]);
            cr_expect(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                      "%s: %s", changes[i], PQerrorMessage(a));
            PQclear(r);
            char *v = query_value(b, "SELECT current_setting('statement_timeout') || ' ' || "
                                     "current_setting('search_path')");
            cr_expect_str_eq(v, "1234ms public", "after another client's %s (%s)", changes[i],
                             extended ? "extended" : "simple");
            free(v);
        }
        PQfinish(a);
        PQfinish(b);
    }
}

/* Red team 7: RESET returned a client that set DateStyle and TimeZone at startup to the
 * server's defaults, and lakeproxy took those for the client's own for the rest of its
 * session (where PostgreSQL returns to the startup values). One server: the client's RESET and
 * another client's transactions share it. */
Test(txn, reset_returns_a_client_to_its_startup_values)
{
    proxy_stop(&px);
    start_txn(1, 3000);
    expect_resets_return_to_startup_values(&px, false);
}

Test(txn, waiting_longer_than_max_wait_gets_53300_naming_the_pool)
{
    proxy_stop(&px);
    start_txn(1, 300);
    PGconn *a = connect_as(NULL), *b = connect_as(NULL);
    free(query_value(a, "BEGIN")); /* holds the only server */
    double t0 = now_s();
    PGresult *r = PQexec(b, "SELECT 1");
    double took = now_s() - t0;
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK);
    cr_expect(strstr(PQerrorMessage(b), "no server connection available in pool \"app\""), "%s",
              PQerrorMessage(b));
    cr_expect(took >= 0.25 && took < 3, "waited %.2f s", took);
    PQclear(r);
    int fd = raw_session(px.port, "carol", "app"); /* libpq hides a FATAL's SQLSTATE */
    raw_query(fd, "SELECT 1");
    cr_expect_str_eq(raw_expect_error(fd), "53300");
    close(fd);
    free(query_value(a, "COMMIT"));
    char *v = query_value(a, "SELECT 'a still works'");
    cr_expect_str_eq(v, "a still works");
    free(v);
    PQfinish(a);
    PQfinish(b);
}

Test(txn, server_dying_mid_transaction_fails_that_client_only)
{
    PGconn *a = connect_as(NULL), *b = connect_as(NULL);
    free(query_value(a, "BEGIN"));
    char *pid = query_value(a, "SELECT pg_backend_pid()");
    PGconn *admin = pg_admin("lp_test");
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%s)", pid);
    free(query_value(admin, sql));
    PQfinish(admin);
    usleep(200 * 1000);
    PGresult *r = PQexec(a, "SELECT 1");
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "the dead transaction must not go on");
    PQclear(r);
    char *v = query_value(b, "SELECT 'b unaffected'");
    cr_expect_str_eq(v, "b unaffected");
    free(v);
    free(pid);
    PQfinish(a);
    PQfinish(b);
}

struct mixed_arg {
    const struct proxy *p;
    int id;
    int errors;
    char first_error[256];
};

static void note_error(struct mixed_arg *m, PGconn *c)
{
    if (m->errors++ == 0)
        snprintf(m->first_error, sizeof(m->first_error), "%s", PQerrorMessage(c));
}

/* Simple, extended and explicit-transaction queries, checking every answer. */
static void *mixed_client(void *arg)
{
    struct mixed_arg *m = arg;
    PGconn *c = proxy_connect(m->p, "alice", "alice-secret", "app", "application_name=txn-load");
    if (PQstatus(c) != CONNECTION_OK) {
        note_error(m, c);
        PQfinish(c);
        return NULL;
    }
    for (int i = 0; i < 10; i++) {
        char id[16];
        snprintf(id, sizeof(id), "%d", 1 + (m->id * 7 + i) % 1000);
        const char *params[1] = {id};
        PGresult *r =
            PQexecParams(c, "SELECT id FROM items WHERE id = $1", 1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || strcmp(PQgetvalue(r, 0, 0), id) != 0)
            note_error(m, c);
        PQclear(r);
        r = PQexec(c, "BEGIN; SELECT count(*) FROM items; COMMIT");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            note_error(m, c);
        PQclear(r);
        r = PQexec(c, "SELECT 42");
        if (PQresultStatus(r) != PGRES_TUPLES_OK || strcmp(PQgetvalue(r, 0, 0), "42") != 0)
            note_error(m, c);
        PQclear(r);
    }
    PQfinish(c);
    return NULL;
}

Test(txn_load, five_hundred_clients_over_ten_servers_without_errors, .timeout = 180)
{
    proxy_start_with(&px, "transaction", 10, 60000, "limits:\n  max_clients: 1000\n");
    enum { N = 500 };
    static pthread_t th[N];
    static struct mixed_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (struct mixed_arg){.p = &px, .id = i};
        cr_assert_eq(pthread_create(&th[i], NULL, mixed_client, &args[i]), 0);
    }
    int errors = 0;
    const char *first = "";
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        errors += args[i].errors;
        if (args[i].errors && !*first)
            first = args[i].first_error;
    }
    cr_expect_eq(errors, 0, "%d errors among %d clients; first: %s", errors, N, first);
    PGconn *admin = pg_admin("lp_test");
    /* every server that served these clients carries their application_name */
    char *n = query_value(admin, "SELECT count(*) FROM pg_stat_activity "
                                 "WHERE application_name = 'txn-load'");
    cr_expect_leq(atoi(n), 10, "%s server connections for a pool of 10", n);
    free(n);
    PQfinish(admin);
    proxy_stop(&px);
}

/* One server and one in reserve: a client that waited pool.reserve_timeout_ms gets the reserve
 * server instead of waiting out max_wait_ms; when nobody waits any more it is closed again. */
static void start_with_reserve(void)
{
    static char yaml[8192], out[8400];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 1, 4000,
                       "admin:\n  users: [alice]\n");
    char *at = strstr(yaml, "      max_wait_ms: 4000\n");
    cr_assert_not_null(at);
    at += strlen("      max_wait_ms: 4000\n");
    snprintf(out, sizeof(out), "%.*s      reserve: 1\n      reserve_timeout_ms: 300\n%s",
             (int)(at - yaml), yaml, at);
    proxy_start_yaml(&px, port, out);
}

/* Server connections of pool app (active + idle), from SHOW POOLS. */
static int app_servers(void)
{
    return admin_pool_number(&px, "alice", "alice-secret", "app", "sv_active", "sv_idle");
}

Test(txn_reserve, a_long_wait_gets_a_reserve_server, .init = start_with_reserve, .fini = stop_proxy,
     .timeout = 60)
{
    PGconn *holder = connect_as(NULL), *waiter = connect_as(NULL);
    free(query_value(holder, "BEGIN")); /* holds the pool's only regular server */
    free(query_value(holder, "SELECT 1"));
    double t0 = now_s();
    char *v = query_value(waiter, "SELECT 'served'");
    double waited = now_s() - t0;
    cr_expect_str_eq(v, "served");
    free(v);
    cr_expect(waited >= 0.25 && waited < 3.0,
              "served after %.2f s: the reserve opens after 300 ms, long before max_wait_ms",
              waited);
    free(query_value(holder, "COMMIT"));
    free(query_value(waiter, "SELECT 1"));
    cr_expect_eq(app_servers(), 1, "the reserve server closes once nobody waits");
    PQfinish(holder);
    PQfinish(waiter);
}

/* COPY FROM STDIN through the extended protocol (libpq's PQexecParams, then PQputCopyEnd):
 * PostgreSQL ignores the Sync sent during copy-in, and the server connection must still go
 * back to the pool when the COPY is over (it used to stay with the client: 53300 for others). */
static void start_one(void)
{
    start_txn(1, 3000);
}

Test(txn_copy, extended_protocol_copy_in_releases_its_server, .init = start_one, .fini = stop_proxy,
     .timeout = 60)
{
    PGconn *a = connect_as(NULL), *b = connect_as(NULL);
    free(query_value(a, "CREATE TEMP TABLE cp (n int)")); /* one server: it stays there */
    for (int round = 0; round < 3; round++) {
        copy_in_extended(a, "COPY cp FROM STDIN", "7\n");
        char *v = query_value(b, "SELECT 'b served'");
        cr_expect_str_eq(v, "b served", "the other client gets the pool's only server");
        free(v);
    }
    char *n = query_value(a, "SELECT count(*) FROM cp");
    cr_expect_str_eq(n, "3");
    free(n);
    PQfinish(a);
    PQfinish(b);
}

/* Reads messages on fd up to the next message of type want; fails on EOF or timeout. Each
 * DataRow's first value goes to last_row. */
static void raw_read_until(int fd, int want, char *last_row, size_t rowsz)
{
    unsigned char body[4096];
    size_t len;
    int t;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) != want) {
        cr_assert_neq(t, -1, "no '%c' came", want);
        if (t == 'D' && last_row && len > 6) {
            uint32_t n = (uint32_t)body[2] << 24 | body[3] << 16 | body[4] << 8 | body[5];
            snprintf(last_row, rowsz, "%.*s", (int)(n < len - 6 ? n : len - 6), body + 6);
        }
    }
}

/* Reads every result of the query v sent and expects its first value to be want (the client's
 * own answer, not another client's rows). */
static void expect_own_answer(PGconn *v, const char *want)
{
    PGresult *r;
    char got[256] = "";
    while ((r = PQgetResult(v))) {
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
            snprintf(got, sizeof(got), "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    cr_expect_str_eq(got, want, "the client got another's rows");
}

/* Red team round 7: an error in COPY FROM STDIN ends copy-in at a point of the client's stream
 * the proxy cannot know, so Syncs it took as ignored were answered: one ReadyForQuery too
 * many, the server went back to the pool while the client's next query ran there, and another
 * client received that query's rows (and the client the other's). Now such a server stays
 * with its client and is closed when it leaves. */
Test(txn_copy, an_error_in_copy_in_never_hands_one_clients_replies_to_another, .init = start_one,
     .fini = stop_proxy, .timeout = 60)
{
    int fd = raw_session(px.port, "carol", "app");
    char row[256] = "";
    raw_query(fd, "BEGIN");
    raw_read_until(fd, 'Z', NULL, 0);
    raw_query(fd, "CREATE TEMP TABLE cpx (n int)");
    raw_read_until(fd, 'Z', NULL, 0);
    struct buf m;
    buf_init(&m);
    raw_put_parse(&m, "cs", "COPY cpx FROM STDIN");
    raw_put_bind(&m, "", "cs");
    raw_put_execute(&m, "");
    raw_put_empty(&m, 'S');
    cr_assert(raw_send(fd, &m));
    raw_read_until(fd, 'G', NULL, 0);
    buf_msg_start(&m, 'd');
    buf_put_bytes(&m, "not-an-int\n", 11);
    buf_msg_finish(&m);
    cr_assert(raw_send(fd, &m));
    raw_read_until(fd, 'E', NULL, 0); /* 22P02: the server left copy-in */
    /* Sync (answered now), CopyDone (dropped), Sync, and two queries */
    raw_put_empty(&m, 'S');
    raw_put_empty(&m, 'c');
    raw_put_empty(&m, 'S');
    proto_query(&m, "ROLLBACK");
    proto_query(&m, "SELECT 'attacker-row', pg_sleep(0.5)");
    cr_assert(raw_send(fd, &m));
    buf_free(&m);
    PGconn *v = connect_as(NULL); /* another client asks for the pool's only server meanwhile */
    cr_assert(PQsendQuery(v, "SELECT 'victim-row', pg_sleep(0.2)"));
    for (int z = 0; z < 4; z++) /* the two Syncs, ROLLBACK, the SELECT */
        raw_read_until(fd, 'Z', row, sizeof(row));
    cr_expect_str_eq(row, "attacker-row", "the client's own query answered it");
    close(fd); /* its server is closed, not handed over */
    expect_own_answer(v, "victim-row");
    PQfinish(v);
}

/* Red team round 7: a simple-protocol COPY FROM STDIN that fails, after replies were owed in
 * the same queue slots before, left the server believing in copy-in (entries carried no CopyDone
 * count: heap garbage was compared): the next client's Sync was never counted and it kept the
 * pool's only server. Now the error ends copy-in and every entry carries its count. */
Test(txn_copy, a_failed_simple_copy_leaves_nothing_behind_for_the_next_client, .init = start_one,
     .fini = stop_proxy, .timeout = 60)
{
    int fd = raw_session(px.port, "carol", "app");
    struct buf m;
    buf_init(&m);
    for (int i = 0; i < 20; i++) {
        raw_put_empty(&m, 'S');
    }
    cr_assert(raw_send(fd, &m));
    for (int i = 0; i < 20; i++)
        raw_read_until(fd, 'Z', NULL, 0);
    raw_query(fd, "COPY scratch FROM STDIN");
    raw_read_until(fd, 'G', NULL, 0);
    buf_msg_start(&m, 'd');
    buf_put_bytes(&m, "a\tb\tc\n", 6); /* too many columns */
    buf_msg_finish(&m);
    cr_assert(raw_send(fd, &m));
    buf_free(&m);
    raw_read_until(fd, 'Z', NULL, 0);
    close(fd);
    PGconn *a = connect_as(NULL);
    PGresult *r = PQexecParams(a, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0);
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(a));
    PQclear(r);
    PGconn *b = connect_as(NULL); /* a stays connected, idle: its server must be free */
    char *v = query_value(b, "SELECT 'b served'");
    cr_expect_str_eq(v, "b served");
    free(v);
    PQfinish(a);
    PQfinish(b);
}

/* Red team round 8: after an error in the extended protocol with no Sync sent yet, the server
 * skips every message up to the client's next Sync, but the proxy owed replies for them: later
 * replies were matched to the wrong messages, the server went back to the pool in the middle
 * of the client's query, and another client received its rows. Now what the server would skip
 * is not sent, and a ReadyForQuery nobody owes keeps the server with its client. */
Test(txn_copy, messages_skipped_after_an_extended_error_leave_the_count_exact, .init = start_one,
     .fini = stop_proxy, .timeout = 60)
{
    int fd = raw_session(px.port, "carol", "app");
    char row[256] = "";
    struct buf m;
    buf_init(&m);
    raw_put_parse(&m, "s1", "select bad syntax (");
    raw_put_empty(&m, 'H');
    cr_assert(raw_send(fd, &m));
    raw_read_until(fd, 'E', NULL, 0); /* the server now skips up to the next Sync */
    PGconn *v = connect_as(NULL);     /* waits for the pool's only server meanwhile */
    cr_assert(PQsendQuery(v, "SELECT 'victim-row'"));
    raw_put_bind(&m, "", "nosuch"); /* skipped by the server */
    raw_put_empty(&m, 'S');
    raw_put_parse(&m, "s2", "select 1");
    raw_put_bind(&m, "", "s2");
    proto_query(&m, "select 1");
    proto_query(&m, "select 1/0");
    proto_query(&m, "select 'attacker-row', pg_sleep(0.5)");
    raw_put_empty(&m, 'S');
    cr_assert(raw_send(fd, &m));
    buf_free(&m);
    for (int z = 0; z < 5; z++) /* Sync, select 1, 1/0, the SELECT, Sync */
        raw_read_until(fd, 'Z', row, sizeof(row));
    cr_expect_str_eq(row, "attacker-row", "the client's own query answered it");
    close(fd);
    expect_own_answer(v, "victim-row");
    PQfinish(v);
}

/* Red team round 9: a pipeline of more than 256 KB buffered while its client waited for a
 * server filled the relay's buffer at once; the flush that followed wrote it all to the
 * kernel, so no write callback ever came to resume reading the client: the client hung and
 * held the pool's only server forever. */
/* Sends a pipeline of n unnamed extended-protocol queries (about 40 bytes each) while the
 * pool's one server is held by another client for half a second, reading replies as they
 * come; expects all of them and the pool usable afterwards. */
static void pipeline_while_waiting(int n)
{
    const int N = n;
    PGconn *holder = connect_as(NULL); /* the pool's one server is busy: the pipeline waits */
    free(query_value(holder, "BEGIN"));
    int fd = raw_session(px.port, "carol", "app");
    struct buf m;
    buf_init(&m);
    for (int i = 0; i < N; i++) {
        raw_put_parse(&m, "", "select 1");
        raw_put_bind(&m, "", "");
        raw_put_execute(&m, "");
    }
    raw_put_empty(&m, 'S');
    cr_assert(!m.failed);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    size_t sent = 0, got = 0, completes = 0;
    unsigned char in[65536], pending[5];
    size_t have_hdr = 0, body_left = 0;
    bool ready = false;
    double deadline = now_s() + 30, release_at = now_s() + 0.5;
    while (!ready && now_s() < deadline) {    /* write and read at once, as a pipelining client */
        if (holder && now_s() > release_at) { /* the buffered pipeline gets the server */
            free(query_value(holder, "COMMIT"));
            PQfinish(holder);
            holder = NULL;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN | (sent < m.len ? POLLOUT : 0)};
        cr_assert_geq(poll(&p, 1, 100), 0);
        if ((p.revents & POLLOUT) && sent < m.len) {
            ssize_t w = write(fd, m.data + sent, m.len - sent);
            if (w > 0)
                sent += (size_t)w;
        }
        ssize_t r = (p.revents & POLLIN) ? read(fd, in, sizeof(in)) : 0;
        cr_assert(r != 0 || !(p.revents & POLLIN), "the proxy closed the connection");
        for (ssize_t i = 0; i < r; i++) { /* walk message boundaries: count 'C', find 'Z' */
            got++;
            if (body_left > 0) {
                body_left--;
                continue;
            }
            pending[have_hdr++] = in[i];
            if (have_hdr < 5)
                continue;
            uint32_t len =
                (uint32_t)pending[1] << 24 | pending[2] << 16 | pending[3] << 8 | pending[4];
            completes += pending[0] == 'C';
            ready = pending[0] == 'Z';
            body_left = len - 4;
            have_hdr = 0;
        }
    }
    buf_free(&m);
    cr_expect(ready, "no ReadyForQuery after %zu bytes sent, %zu received", sent, got);
    cr_expect_eq(completes, (size_t)N);
    close(fd);
    PGconn *v = connect_as(NULL);
    char *val = query_value(v, "SELECT 'served'");
    cr_expect_str_eq(val, "served");
    free(val);
    PQfinish(v);
}

Test(txn_copy, a_pipeline_larger_than_the_relay_buffer_completes, .init = start_one,
     .fini = stop_proxy, .timeout = 60)
{
    pipeline_while_waiting(20000);
}

/* A pool of one whose clients' input is bounded at the relay buffer's 256 KB (messages of
 * at most 1 KB). */
static void start_one_small_messages(void)
{
    proxy_start_with(&px, "transaction", 1, 3000, "limits:\n  max_message_size: 1024\n");
}

/* A client's input stops being read at its limit while it waits for a server; the server's
 * arrival drains it (from the server's side), and reading must go on from there: without it
 * the client hung with the rest of its pipeline unread. */
Test(txn_copy, a_pipeline_past_the_clients_read_limit_completes, .init = start_one_small_messages,
     .fini = stop_proxy, .timeout = 60)
{
    pipeline_while_waiting(20000); /* about 840 KB */
}

/* Red team round 9: with 256 statements on a server, the next Parse makes the proxy close the
 * oldest first; when an error skipped that Close, the proxy's cache had forgotten a statement
 * the server still had, and every later Parse of its text failed with 42P05 on that server. */
Test(txn_copy, an_eviction_skipped_after_an_error_breaks_no_statement, .init = start_one,
     .fini = stop_proxy, .timeout = 60)
{
    int fd = raw_session(px.port, "carol", "app");
    struct buf m;
    buf_init(&m);
    char name[32], sql[64];
    for (int i = 0; i < 256; i++) { /* fills the server's cache: SELECT 0 is the oldest */
        snprintf(name, sizeof(name), "s%d", i);
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        raw_put_parse(&m, name, sql);
        raw_put_empty(&m, 'S');
    }
    cr_assert(raw_send(fd, &m));
    for (int i = 0; i < 256; i++)
        raw_read_until(fd, 'Z', NULL, 0);
    raw_put_execute(&m, "nope"); /* an error: the eviction's Close and the Parse are skipped */
    raw_put_parse(&m, "s256", "SELECT 256");
    raw_put_empty(&m, 'S');
    cr_assert(raw_send(fd, &m));
    buf_free(&m);
    raw_read_until(fd, 'Z', NULL, 0);
    close(fd);
    PGconn *v = connect_as(NULL);
    PGresult *r = PQprepare(v, "x", "SELECT 0", 0, NULL);
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(v));
    PQclear(r);
    r = PQexecPrepared(v, "x", 0, NULL, NULL, NULL, 0);
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(v));
    PQclear(r);
    PQfinish(v);
}

/* Red team round 9: at checkout the proxy closes an unnamed statement another client may have
 * left, and sets the client's application_name; the Close went after the SET, so its
 * CloseComplete came after the SET's ReadyForQuery ended the proxy's own exchange, and reached
 * the client (a CloseComplete it never asked for). */
Test(txn_copy, the_checkout_close_of_an_unnamed_statement_never_reaches_the_client,
     .init = start_one, .fini = stop_proxy, .timeout = 60)
{
    int a = raw_session_app(px.port, "carol", "app", "aaa");
    int b = raw_session_app(px.port, "carol", "app", "bbb");
    struct buf m;
    buf_init(&m);
    raw_put_parse(&m, "", "select 1"); /* leaves an unnamed statement on the one server */
    raw_put_bind(&m, "", "");
    raw_put_execute(&m, "");
    raw_put_empty(&m, 'S');
    cr_assert(raw_send(a, &m));
    raw_read_until(a, 'Z', NULL, 0);
    raw_put_parse(&m, "", "select 2"); /* b: another application_name, the same server */
    raw_put_bind(&m, "", "");
    raw_put_execute(&m, "");
    raw_put_empty(&m, 'S');
    cr_assert(raw_send(b, &m));
    buf_free(&m);
    unsigned char body[4096];
    size_t len;
    int t, closes = 0;
    while ((t = raw_read_msg(b, body, sizeof(body), &len, 5000)) != 'Z') {
        cr_assert_neq(t, -1, "no ReadyForQuery");
        closes += t == '3';
    }
    cr_expect_eq(closes, 0, "a CloseComplete the client never asked for");
    close(a);
    close(b);
}

/* Counts the ReadyForQuery messages in a server-to-client byte stream fed in pieces. */
struct z_counter {
    unsigned char hdr[5];
    size_t have, body_left;
    int ready;
};

static void count_ready(struct z_counter *z, const unsigned char *p, ssize_t n)
{
    for (ssize_t i = 0; i < n; i++) {
        if (z->body_left > 0) {
            size_t skip = (size_t)(n - i) < z->body_left ? (size_t)(n - i) : z->body_left;
            z->body_left -= skip;
            i += (ssize_t)skip - 1;
            continue;
        }
        z->hdr[z->have++] = p[i];
        if (z->have < 5)
            continue;
        uint32_t len = (uint32_t)z->hdr[1] << 24 | z->hdr[2] << 16 | z->hdr[3] << 8 | z->hdr[4];
        z->ready += z->hdr[0] == 'Z';
        z->body_left = len - 4;
        z->have = 0;
    }
}

/* Reads what fd has now, without waiting; false when the proxy closed it. */
static bool read_available(int fd, struct z_counter *z)
{
    static unsigned char in[1 << 16];
    for (;;) {
        ssize_t r = read(fd, in, sizeof(in));
        if (r == 0)
            return false;
        if (r < 0)
            return true; /* EAGAIN: all read */
        count_ready(z, in, r);
    }
}

/* A client whose backlog paused its server drains it and speaks at once: when the proxy's
 * own write on the client's behalf emptied the backlog, libevent's write event found nothing
 * left to write and never called back, so the server stayed paused and the client hung. */
Test(txn_copy, a_client_catching_up_on_a_backlog_while_sending_never_hangs, .init = start_one,
     .fini = stop_proxy, .timeout = 90)
{
    enum { ROUNDS = 60 };
    int fd = raw_session(px.port, "carol", "app");
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    struct buf m;
    buf_init(&m);
    for (int i = 0; i < ROUNDS; i++) { /* 60 results of 2 MB, read late */
        buf_reset(&m);
        buf_msg_start(&m, 'Q');
        buf_put_str(&m, "SELECT repeat('x', 1000) FROM generate_series(1, 2000)");
        buf_msg_finish(&m);
        cr_assert(raw_send(fd, &m));
    }
    struct z_counter z = {0};
    double deadline = now_s() + 60;
    for (int round = 0; round < ROUNDS && now_s() < deadline; round++) {
        usleep(30000); /* the backlog builds, the server is paused */
        cr_assert(read_available(fd, &z), "the proxy closed the connection");
        buf_reset(&m); /* caught up: speak at once */
        buf_msg_start(&m, 'Q');
        buf_put_str(&m, "SELECT 1");
        buf_msg_finish(&m);
        cr_assert(raw_send(fd, &m));
    }
    while (z.ready < 2 * ROUNDS && now_s() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, 100);
        cr_assert(read_available(fd, &z), "the proxy closed the connection");
    }
    buf_free(&m);
    cr_expect_eq(z.ready, 2 * ROUNDS, "%d of %d answers, then nothing", z.ready, 2 * ROUNDS);
    close(fd);
}

/* ---- a client idle inside a transaction (pool.idle_transaction_timeout_s) ---- */

/* Database itx (transaction pooling) and its (session pooling), one server each, where a
 * client idle inside a transaction for 1 s is closed. */
static void start_idle_timeout(void)
{
    int port = free_port();
    char yaml[16384], entry[512];
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 3000, NULL);
    static const char *const dbs[][2] = {{"itx", "transaction"}, {"its", "session"}};
    for (int i = 0; i < 2; i++) {
        snprintf(entry, sizeof(entry),
                 "  %s:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n"
                 "    user: lp_server\n    password: server-secret\n    tls: disable\n"
                 "    pool: {mode: %s, size: 1, max_wait_ms: 5000, "
                 "idle_transaction_timeout_s: 1}\n",
                 dbs[i][0], env_need("LP_PGPORT"), dbs[i][1]);
        yaml_add_database(yaml, sizeof(yaml), entry);
    }
    proxy_start_yaml(&px, port, yaml);
}

TestSuite(txn_idle, .init = start_idle_timeout, .fini = stop_proxy, .timeout = 60);

static PGconn *connect_to(const char *db)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", db, NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "login failed: %s", PQerrorMessage(c));
    return c;
}

/* A client that opened a transaction, wrote a row and took a session lock, then went quiet:
 * closed with 25P03 after the timeout (not before), its transaction rolled back, and the pool's
 * one server, reset, serves the next client (the same backend: not closed and replaced). */
static void expect_idle_transaction_closed(const char *db, int lock_key)
{
    PGconn *admin = pg_admin("lp_test");
    char table[32];
    snprintf(table, sizeof(table), "idle_rows_%s", db);
    pg_owned_table(admin, table, "n int");
    PGconn *a = connect_to(db);
    char *pid = query_value(a, "SELECT pg_backend_pid()");
    char sql[128];
    snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (1)", table);
    free(query_value(a, "BEGIN"));
    free(query_value(a, sql));
    snprintf(sql, sizeof(sql), "SELECT pg_advisory_lock(%d)", lock_key);
    free(query_value(a, sql));
    usleep(800 * 1000);
    EXPECT_QUERY_VALUE(a, "SELECT 'still open'", "still open", "closed before its timeout");
    struct said said;
    double t0 = now_s(); /* the spell starts again at that statement */
    idle_said(a, &said, 5000);
    double took = now_s() - t0;
    cr_expect_geq(took, 1.0, "closed after %.2f s of a 1 s timeout", took);
    cr_expect_lt(took, 3.5, "still open %.2f s into a 1 s timeout", took);
    cr_expect_str_eq(said.state, "25P03", "the client is told why: %s", said.msg);
    cr_expect(strstr(said.msg, "pool.idle_transaction_timeout_s"),
              "the message names the setting: %s", said.msg);
    PQfinish(a);
    PGconn *b = connect_to(db);
    EXPECT_QUERY_VALUE(b, "SELECT pg_backend_pid()", pid,
                       "the server was rolled back and kept, not closed");
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    EXPECT_QUERY_VALUE(b, sql, "0", "the idle transaction was rolled back");
    snprintf(sql, sizeof(sql), "SELECT pg_try_advisory_lock(%d)", lock_key);
    EXPECT_QUERY_VALUE(admin, sql, "t", "the session lock went with the reset");
    PQfinish(b);
    PQfinish(admin);
    free(pid);
    cr_expect_eq(file_count_lines(px.log, "middle of a transaction"), 0,
                 "no server was closed for its client leaving");
}

Test(txn_idle, transaction_pooling_closes_a_client_idle_in_a_transaction)
{
    expect_idle_transaction_closed("itx", 4711); /* (a key of its own: the two run at once) */
}

Test(txn_idle, session_pooling_closes_a_client_idle_in_a_transaction)
{
    expect_idle_transaction_closed("its", 4721);
}

/* Busy is not idle: a statement running past the timeout, a client that keeps talking inside
 * its transaction, and a client idle between transactions all stay. */
Test(txn_idle, running_or_talking_clients_are_not_idle)
{
    PGconn *a = connect_to("itx");
    free(query_value(a, "BEGIN"));
    EXPECT_QUERY_VALUE(a, "SELECT pg_sleep(2.5)::text", "", "a long statement was cut short");
    for (int i = 0; i < 5; i++) { /* 3.5 s inside the transaction, 0.7 s at most idle */
        usleep(700 * 1000);
        EXPECT_QUERY_VALUE(a, "SELECT 'talking'", "talking", "closed while talking");
    }
    free(query_value(a, "COMMIT"));
    usleep(2500 * 1000); /* idle, but outside a transaction */
    EXPECT_QUERY_VALUE(a, "SELECT 'idle outside'", "idle outside", "closed while not in one");
    PQfinish(a);
}

/* Without the setting, a client that leaves inside a transaction, idle or failed, costs no
 * server either: PostgreSQL rolls back a transaction whose client disconnects, and lakeproxy
 * does the same with ROLLBACK, then resets the server for the next client. */
Test(txn, a_client_that_leaves_inside_a_transaction_keeps_its_server)
{
    proxy_stop(&px);
    start_txn(1, 3000);
    PGconn *admin = pg_admin("lp_test");
    pg_owned_table(admin, "left_in_txn", "n int");
    PGconn *first = connect_as(NULL);
    char *pid = query_value(first, "SELECT pg_backend_pid()");
    PQfinish(first);
    static const char *const last[] = {"SELECT 'idle'", "SELECT 1/0"};
    for (int i = 0; i < 2; i++) {
        PGconn *a = connect_as(NULL);
        free(query_value(a, "BEGIN"));
        free(query_value(a, "INSERT INTO left_in_txn VALUES (1)"));
        free(query_value(a, "SELECT pg_advisory_lock(4712)"));
        free(query_value(a, "SET LOCAL work_mem = '7MB'"));
        PQclear(PQexec(a, last[i])); /* idle ('T') or failed ('E') */
        PQfinish(a);
        PGconn *b = connect_as(NULL);
        EXPECT_QUERY_VALUE(b, "SELECT pg_backend_pid()", pid, "the server was closed (%s)",
                           last[i]);
        EXPECT_QUERY_VALUE(b, "SELECT count(*) FROM left_in_txn", "0", "not rolled back");
        EXPECT_QUERY_VALUE(b, "SELECT current_setting('work_mem')", "4MB", "a setting stayed");
        EXPECT_QUERY_VALUE(admin, "SELECT pg_try_advisory_lock(4712)", "t", "a lock stayed");
        free(query_value(admin, "SELECT pg_advisory_unlock(4712)"));
        PQfinish(b);
    }
    cr_expect_eq(file_count_lines(px.log, "middle of a transaction"), 0,
                 "no server was closed for its client leaving");
    PQfinish(admin);
    free(pid);
}
