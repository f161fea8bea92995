/* test_redteam35.c: red-team round 35 (commit 519f4f3): session pooling's count of the
 * ReadyForQuery owed around COPY FROM STDIN, now followed by counting Executes sent and ended
 * (session.c rq_note_execute at each 'E'; server.c active_inspect rq_execute_done at each
 * 'C'/'I'/'s' relayed; session_ready rq_executes_settled; copy_in_started ->
 * copy_start_count -> prepared.c rq_next_execute_copy_dones), and the end of a statement
 * (pool.query_timeout_s, KILL, a reload, the shutdown limit) put off while a message is half
 * relayed (server.c server_end_statement, end_after_message, server_check_ending).
 *
 * Each test asserts the SAFE behaviour a user relies on: a failing test is a finding.
 *
 * Findings (11 tests, 6 failed; each failure 3 of 3 in rel (5+ runs), and the same under the
 * sanitizer build, which reported no memory error on any test of the file; all FOUND, FIXED
 * since: prepared.c rq_execute_done counts no simple Query's own CommandComplete and
 * rq_executes_settled sets the count exactly at each ReadyForQuery; a reset whose last answer
 * is not DISCARD ALL's closes the server (server.c internal_inspect, reset_answered: the two
 * leak tests pass on that check alone with the count bug put back); client.c client_can_pump
 * relays nothing to a server whose client's end is put off; server.c server_relay sends the
 * put-off FATAL as soon as the half-relayed message is whole):
 * - a_miscounted_copy_batch_does_not_leak_rows_to_the_next_client,
 *   rls_a_miscounted_copy_batch_does_not_leak_a_tenants_rows (HIGH, cross-client leak /
 *   answer injection, also across RLS tenants): server.c active_inspect calls
 *   rq_execute_done for EVERY CommandComplete / EmptyQueryResponse relayed, including those
 *   of a simple Query ('Q', and each statement of a multi-statement one), which is no
 *   Execute. A client that sends a Query and then an extended batch with a COPY in it
 *   (Q; P/B/E COPY; Sync during the copy; CopyData; CopyDone; P/B/E ...; Sync; ...) makes
 *   execs_done run ahead of the Executes really ended, so at the CopyInResponse
 *   rq_next_execute_copy_dones answers with the CopyDone count of the run AFTER the COPY:
 *   copy_in_started keeps the Sync PostgreSQL ignored (sent during the copy) and drops the
 *   Syncs sent after the CopyDone, which PostgreSQL answers. With more Syncs after the
 *   CopyDone than during the copy, in_flight ends lower than the ReadyForQuery owed. When the
 *   client leaves at the proxy's last counted ReadyForQuery while PostgreSQL still works on
 *   what it pipelined (here Parses waiting on a lock), server_unlink finds the server clean
 *   (server_is_clean does not look at copy_in / copy_assumed) and resets it with DISCARD ALL,
 *   whose internal_inspect takes the first ReadyForQuery that comes (the client's) as its
 *   own; the server goes back to the pool and the next client (carol, or RLS tenant t2) gets
 *   the first client's rows as the answer to its query ('c1-secret', tenant 1's 'doc 1').
 *   The first client chooses those rows: it can answer the next client's query.
 * - a_query_before_a_copy_batch_keeps_the_count (medium): the same miscount with one more
 *   ReadyForQuery than the proxy expects; its reply "answers nothing the client sent" and the
 *   client is cut with 08P01 where PostgreSQL itself (asserted in the test over its socket)
 *   answers the batch and the session goes on.
 * - a_copy_batch_does_not_switch_off_the_query_timeout (medium): the same wrong CopyDone
 *   count sets copy_in (copy_in_started: copy_in = copy_dones == k) after the client's
 *   CopyDone was already sent; only another CopyDone/CopyFail or a COPY error clears it
 *   (copy_ended on 'C' does not). server_running_statement requires !copy_in, so
 *   pool.query_timeout_s never ends the client's statements after such a batch (a 6 s
 *   pg_sleep ran to its end under query_timeout_s: 1); server_idle_in_transaction also
 *   requires !copy_in (idle_transaction_timeout likewise), and later Syncs are taken as
 *   ignored (server_sync_ignored).
 * - what_a_client_sends_while_its_end_is_put_off_does_not_run (medium): while an end is put
 *   off (s->ending) the client's messages are still relayed to the server (client.c relays
 *   to a server whose end is pending; nothing looks at s->ending on that side), and
 *   PostgreSQL runs them after the cancelled statement, before server_unlink closes the
 *   server: an INSERT sent 1-2 s after the 57014 was decided committed (1 row, every time).
 *   Before 519f4f3 such a client was closed at once, and round 34 made a server whose client
 *   is ended with statements queued run none of them (close_at_unlink).
 * - a_client_that_read_the_whole_message_gets_the_fatal_even_if_the_server_is_silent (low):
 *   the put-off FATAL goes only when the server's NEXT message starts (active_inspect
 *   RV_ERROR -> server_relay -> end_after_message), not when the half-relayed message is
 *   whole. A statement that outlives its cancel (plpgsql catching query_canceled, a server
 *   that stalls) sends nothing more, so a client that read the whole 32 MB NoticeResponse at
 *   once is still closed without a word 5 s after the end by server_check_ending, logged as
 *   "the client did not read the rest of a message": the "looks like a dropped connection"
 *   case 519f4f3 meant to fix.
 * Held: batch shapes compared message by message with PostgreSQL itself (COPY of a missing
 * table with data, CopyDone and Syncs pipelined; CopyFail; a bad row with Syncs during the
 * copy; Flush instead of Sync; PortalSuspended and empty Executes before the COPY; stray
 * CopyDone and CopyData outside copy; a simple Query after the CopyDone; 20 COPYs in one
 * batch (past EXEC_RUNS: unsure, still answered right); an error before the COPY; COPY TO
 * STDOUT then FROM STDIN); COPY TO STDOUT of 8 MB rows ended mid-row (only whole messages,
 * the FATAL last, the next client served); a trickle reader (1 KiB / 100 ms) does not hold
 * the slot past the 5 s wait (next client served ~6 s after the end); KILL, the client's own
 * CancelRequest, and the client leaving during a put-off end (whole messages only, the next
 * client served its own answer at once); a reload's 57P01 after the timeout's put-off (a
 * second end: closed without a word) or as the first end; no sanitizer report on any of
 * these paths.
 * Not tested: TLS clients during a put-off; transaction pooling
 * (its Executes are queued, not counted); idle_transaction_timeout after a miscounted
 * batch. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "proto.h"
#include "rawproto.h"

static struct proxy px;
static char yaml[1 << 16];

static void stop_all(void)
{
    if (px.pid)
        proxy_stop(&px);
}

TestSuite(redteam35, .fini = stop_all, .timeout = 120);

/* A session pool "app" of size 1 (carol: trust), plus `more` in its pool line. */
static void start_session(const char *pool_more)
{
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "session", 1, 8000, "admin:\n  users: [carol]\n");
    if (pool_more) {
        char entry[1024];
        snprintf(entry, sizeof(entry),
                 "  rt35:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n"
                 "    user: lp_server\n    password: server-secret\n    tls: disable\n"
                 "    pool: {mode: session, size: 1, max_wait_ms: 8000, %s}\n",
                 env_need("LP_PGPORT"), pool_more);
        yaml_add_database(yaml, sizeof(yaml), entry);
    }
    proxy_start_yaml(&px, port, yaml);
}

/* ---- raw helpers ---------------------------------------------------------------------- */

/* What came on fd, until `ready` ReadyForQuery (or EOF / timeout): the message types in
 * types, the first values of the DataRows ("|"-joined) in rows, the SQLSTATEs in states.
 * Returns how many ReadyForQuery came; *eof is set when the connection ended. */
static int read_until(int fd, int ready, char *types, size_t typesz, char *rows, size_t rowsz,
                      char *states, size_t statesz, int timeout_ms, bool *eof)
{
    static unsigned char body[1 << 20];
    size_t len;
    int t, z = 0;
    if (eof)
        *eof = false;
    while (z < ready) {
        t = raw_read_msg(fd, body, sizeof(body), &len, timeout_ms);
        if (t < 0) {
            if (eof)
                *eof = true;
            break;
        }
        size_t n = strlen(types);
        if (n + 1 < typesz) {
            types[n] = (char)t;
            types[n + 1] = '\0';
        }
        if (t == 'Z')
            z++;
        if (t == 'D' && len >= 6) {
            uint32_t vl = raw_be32(body + 2);
            char v[128] = "NULL";
            if (vl != 0xffffffffu) {
                size_t k = vl < sizeof(v) - 1 ? vl : sizeof(v) - 1;
                memcpy(v, body + 6, k);
                v[k] = '\0';
            }
            size_t m = strlen(rows);
            snprintf(rows + m, rowsz - m, "%s|", v);
        }
        if (t == 'E') {
            size_t m = strlen(states);
            snprintf(states + m, statesz - m, "%s|", raw_error_sqlstate(body, len));
        }
    }
    return z;
}

/* A raw session straight to the test PostgreSQL (its socket trusts local users), as the
 * pools' role lp_server, after its ReadyForQuery: what PostgreSQL itself answers. */
static int pg_raw_session(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s/.s.PGSQL.%s", env_need("LP_PGSOCK"),
             env_need("LP_PGPORT"));
    cr_assert(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "%s: %s", a.sun_path,
              strerror(errno));
    raw_send_startup(fd, "lp_server", "lp_test");
    static unsigned char body[1 << 16];
    size_t len;
    int t;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) >= 0 && t != 'Z')
        cr_assert(t != 'E', "direct login failed");
    cr_assert(t == 'Z');
    return fd;
}

/* P/B/E of COPY table FROM STDIN, a Sync sent during the copy (PostgreSQL ignores it: no
 * ReadyForQuery answers it), the data and CopyDone. */
static void put_copy_with_sync(struct buf *m, const char *table, const char *data)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "COPY %s FROM STDIN", table);
    raw_put_pbe(m, sql);
    raw_put_empty(m, 'S');
    raw_put_copy_str(m, data);
    raw_put_empty(m, 'c');
}

static void send_buf(int fd, struct buf *m)
{
    cr_assert(raw_send(fd, m));
    buf_free(m);
}

/* A connection holding table IN ACCESS EXCLUSIVE MODE (a Parse naming it waits). */
static PGconn *lock_table(const char *table)
{
    PGconn *c = pg_admin("lp_test");
    char sql[128];
    pg_exec_ok(c, "BEGIN");
    snprintf(sql, sizeof(sql), "LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", table);
    pg_exec_ok(c, sql);
    return c;
}

static void unlock_table(PGconn *c)
{
    pg_exec_ok(c, "COMMIT");
    PQfinish(c);
}

/* ---- 1. the Execute count in session pooling ------------------------------------------ */

/* A simple Query's CommandComplete is taken for the end of an Execute (rq_execute_done at
 * every 'C'), so with a Query before an extended batch holding a COPY, the CopyInResponse is
 * matched to the Execute after the COPY, the Syncs sent after the CopyDone are taken as
 * ignored, and the replies owed are miscounted. PostgreSQL answers this batch with three
 * ReadyForQuery (the Query's, and the Syncs after the CopyDone; the one during the copy is
 * ignored). */
Test(redteam35, a_query_before_a_copy_batch_keeps_the_count)
{
    start_session(NULL);
    PGconn *adm = pg_admin("lp_test");
    pg_owned_table(adm, "rt35_copy1", "n int");
    char pgtypes[256] = "";
    for (int target = 0; target < 2; target++) { /* PostgreSQL itself, then lakeproxy */
        int fd = target == 0 ? pg_raw_session() : raw_session(px.port, "carol", "app");
        struct buf m;
        buf_init(&m);
        raw_put_query(&m, "SELECT 'q'");
        put_copy_with_sync(&m, "rt35_copy1", "1\n");
        raw_put_pbe(&m, "SELECT 'a'");
        raw_put_empty(&m, 'S');
        raw_put_pbe(&m, "SELECT 'b'");
        raw_put_empty(&m, 'S');
        send_buf(fd, &m);
        char types[256] = "", rows[256] = "", states[256] = "";
        bool eof;
        int z = read_until(fd, 3, types, sizeof(types), rows, sizeof(rows), states, sizeof(states),
                           5000, &eof);
        if (target == 0) {
            cr_assert_eq(z, 3, "PostgreSQL: types %s", types);
            snprintf(pgtypes, sizeof(pgtypes), "%s", types);
            close(fd);
            continue;
        }
        cr_expect_str_eq(types, pgtypes, "lakeproxy's transcript differs from PostgreSQL's");
        cr_expect_eq(z, 3, "ReadyForQuery: %d of 3 (types %s, errors %s, eof %d)", z, types, states,
                     eof);
        cr_expect_str_eq(rows, "q|a|b|");
        cr_expect_str_eq(states, "");
        /* the session goes on */
        raw_query(fd, "SELECT 'after'");
        rows[0] = states[0] = types[0] = '\0';
        z = read_until(fd, 1, types, sizeof(types), rows, sizeof(rows), states, sizeof(states),
                       5000, &eof);
        cr_expect_eq(z, 1, "the session was cut (types %s)", types);
        cr_expect_str_eq(rows, "after|");
        close(fd);
    }
    PQfinish(adm);
}

/* The worse side of the same miscount: the proxy owes fewer ReadyForQuery than PostgreSQL
 * will send. A client that leaves once the proxy thinks it is all answered (while PostgreSQL
 * still works on what it pipelined: here a Parse waiting on a lock) gets its server reset
 * (DISCARD ALL) and handed to the next client, which then reads the first client's rows. */
Test(redteam35, a_miscounted_copy_batch_does_not_leak_rows_to_the_next_client)
{
    start_session(NULL);
    PGconn *adm = pg_admin("lp_test");
    pg_owned_table(adm, "rt35_copy2", "n int");
    pg_owned_table(adm, "rt35_lock1", "n int");
    pg_owned_table(adm, "rt35_lock2", "n int");
    PGconn *l1 = lock_table("rt35_lock1"), *l2 = lock_table("rt35_lock2");
    int fd = raw_session(px.port, "carol", "app");
    struct buf m;
    buf_init(&m);
    raw_put_query(&m, "SELECT 'c1-q'");
    put_copy_with_sync(&m, "rt35_copy2", "1\n");
    raw_put_pbe(&m, "SELECT 'c1-a'");
    raw_put_empty(&m, 'S');
    raw_put_pbe(&m, "SELECT 'c1-b' FROM (SELECT count(*) FROM rt35_lock1) x");
    raw_put_empty(&m, 'S');
    raw_put_pbe(&m, "SELECT 'c1-secret' FROM (SELECT count(*) FROM rt35_lock2) x");
    raw_put_empty(&m, 'S');
    send_buf(fd, &m);
    char types[256] = "", rows[256] = "", states[256] = "";
    bool eof;
    int z = read_until(fd, 2, types, sizeof(types), rows, sizeof(rows), states, sizeof(states),
                       5000, &eof);
    cr_expect_eq(z, 2, "types %s", types);
    close(fd); /* client 1 leaves while its last two statements wait on the locks */
    usleep(300 * 1000);
    unlock_table(l1);
    usleep(300 * 1000);
    int fd2 = raw_session(px.port, "carol", "app");
    cr_assert(fd2 >= 0);
    raw_query(fd2, "SELECT 'c2'");
    usleep(200 * 1000);
    unlock_table(l2);
    char t2[256] = "", r2[256] = "", s2[256] = "";
    z = read_until(fd2, 1, t2, sizeof(t2), r2, sizeof(r2), s2, sizeof(s2), 5000, &eof);
    cr_expect(strstr(r2, "c1-") == NULL, "client 2 read client 1's rows: '%s' (types %s)", r2, t2);
    cr_expect_str_eq(r2, "c2|", "client 2's answer (types %s, errors %s, eof %d)", t2, s2, eof);
    close(fd2);
    PQfinish(adm);
}

/* The same miscount, balanced: the CopyInResponse matched to the wrong Execute leaves the
 * proxy believing the server is still in copy-in after the client's CopyDone (copy_in stays
 * set), and a server in copy-in is not "running a statement" (server_running_statement): a
 * statement sent after it is never ended by pool.query_timeout_s. */
Test(redteam35, a_copy_batch_does_not_switch_off_the_query_timeout)
{
    start_session("query_timeout_s: 1");
    PGconn *adm = pg_admin("lp_test");
    pg_owned_table(adm, "rt35_copy3", "n int");
    int fd = raw_session(px.port, "carol", "rt35");
    struct buf m;
    buf_init(&m);
    raw_put_query(&m, "SELECT 'q'");
    put_copy_with_sync(&m, "rt35_copy3", "1\n");
    raw_put_pbe(&m, "SELECT 'a'");
    raw_put_pbe(&m, "SELECT 'b'");
    raw_put_empty(&m, 'S');
    send_buf(fd, &m);
    char types[256] = "", rows[256] = "", states[256] = "";
    bool eof;
    int z = read_until(fd, 2, types, sizeof(types), rows, sizeof(rows), states, sizeof(states),
                       5000, &eof);
    cr_expect_eq(z, 2, "types %s errors %s", types, states);
    cr_expect_str_eq(rows, "q|a|b|");
    double t0 = now_s();
    raw_query(fd, "SELECT 'slept' FROM pg_sleep(6)");
    types[0] = rows[0] = states[0] = '\0';
    z = read_until(fd, 1, types, sizeof(types), rows, sizeof(rows), states, sizeof(states), 9000,
                   &eof);
    double took = now_s() - t0;
    cr_expect(strstr(states, "57014") != NULL,
              "a 6 s statement was not ended by query_timeout_s: 1 (errors '%s', rows '%s', "
              "%.1f s)",
              states, rows, took);
    cr_expect_lt(took, 4.0, "it ran %.1f s", took);
    close(fd);
    pg_statement_gone(adm, "pg_sleep(6)", 8000);
    PQfinish(adm);
}

/* ---- 2. an end put off while a message is half relayed --------------------------------- */

#define BIG_ROW (32u << 20)

/* While the end is put off (the rest of a half-relayed row still to go), what the client
 * sends must not reach PostgreSQL: the statement was ended (FATAL 57014, the effect of that
 * one statement unknown), and one the client sent after the end must not commit (before the
 * put-off the client was closed at once, and round 34 made a server whose client is ended
 * with statements queued run none of them). */
Test(redteam35, what_a_client_sends_while_its_end_is_put_off_does_not_run)
{
    start_session("query_timeout_s: 1");
    PGconn *adm = pg_admin("lp_test");
    pg_owned_table(adm, "rt35_after", "n int");
    int fd = raw_session(px.port, "carol", "rt35");
    raw_query(fd, "SELECT repeat('x', 32 * 1024 * 1024)");
    sleep(3); /* the timeout passes with the row half relayed: the end is put off */
    raw_query(fd, "INSERT INTO rt35_after VALUES (1)");
    usleep(300 * 1000);
    unsigned char *body = malloc(BIG_ROW + 64);
    cr_assert(body);
    char seen[32] = "", state[6] = "";
    size_t len;
    int t;
    while ((t = raw_read_msg(fd, body, BIG_ROW + 64, &len, 5000)) >= 0 && strlen(seen) < 30) {
        seen[strlen(seen)] = (char)t;
        if (t == 'E')
            snprintf(state, sizeof(state), "%s", raw_error_sqlstate(body, len));
    }
    free(body);
    close(fd);
    cr_expect_str_eq(seen, "TDE", "what the client got");
    cr_expect_str_eq(state, "57014");
    usleep(500 * 1000);
    long n = pg_long(adm, "SELECT count(*) FROM rt35_after");
    cr_expect_eq(n, 0, "the INSERT sent after the end ran: %ld row(s)", n);
    PQfinish(adm);
}

/* Reads what comes on fd until EOF or 12 s: the types (at most 30) and the last error's
 * SQLSTATE; each message is read whole by its length (a cut one would garble the next). */
static void read_to_end(int fd, char *seen, size_t seensz, char state[6], double *eof_at)
{
    unsigned char *body = malloc(BIG_ROW + 4096);
    cr_assert(body);
    size_t len;
    int t;
    double t0 = now_s();
    while ((t = raw_read_msg(fd, body, BIG_ROW + 4096, &len, 12000)) >= 0) {
        size_t n = strlen(seen);
        if (n + 1 < seensz) {
            seen[n] = (char)t;
            seen[n + 1] = '\0';
        }
        if (t == 'E')
            snprintf(state, 6, "%s", raw_error_sqlstate(body, len));
    }
    *eof_at = now_s() - t0;
    free(body);
}

/* The message half relayed at the end (here a 32 MB NoticeResponse) is read whole at once;
 * the server then sends nothing for a while (a statement that outlives its cancel: it catches
 * query_canceled). The client read the whole message: it must get the FATAL then, not a
 * close without a word 5 s later "for not reading the rest" (the relay waits for the next
 * message's start to send the FATAL, end_after_message; server_check_ending closes the
 * client silently meanwhile). */
Test(redteam35, a_client_that_read_the_whole_message_gets_the_fatal_even_if_the_server_is_silent)
{
    start_session("query_timeout_s: 1");
    PGconn *adm = pg_admin("lp_test");
    pg_exec_ok(adm, "CREATE OR REPLACE FUNCTION rt35_stubborn(secs float) RETURNS text "
                    "LANGUAGE plpgsql AS $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN "
                    "BEGIN RAISE NOTICE '%', repeat('n', 32 * 1024 * 1024); PERFORM pg_sleep(0.1); "
                    "EXCEPTION WHEN query_canceled THEN NULL; END; "
                    "WHILE clock_timestamp() < t0 + secs * interval '1 second' LOOP "
                    "BEGIN PERFORM pg_sleep(0.1); EXCEPTION WHEN query_canceled THEN NULL; END; "
                    "END LOOP; RETURN 'done'; END $$");
    int fd = raw_session(px.port, "carol", "rt35");
    raw_query(fd, "SELECT rt35_stubborn(12)");
    sleep(4); /* the timeout passes with the notice half relayed: the end is put off */
    char seen[32] = "", state[6] = "";
    double eof_at;
    read_to_end(fd, seen, sizeof(seen), state, &eof_at);
    close(fd);
    cr_expect_str_eq(seen, "TNE", "what the client got: %s (then EOF after %.1f s)", seen, eof_at);
    cr_expect_str_eq(state, "57014");
    pg_statement_gone(adm, "rt35_stubborn(12)", 14000);
    PQfinish(adm);
}

/* COPY TO STDOUT of big rows ended by the timeout mid-row: only whole messages, the FATAL
 * last, nothing after it. */
Test(redteam35, copy_out_ended_mid_row_gets_whole_messages_then_the_fatal)
{
    start_session("query_timeout_s: 1");
    int fd = raw_session(px.port, "carol", "rt35");
    raw_query(fd, "COPY (SELECT repeat('y', 8 * 1024 * 1024) FROM generate_series(1, 8), "
                  "pg_sleep(0.2)) TO STDOUT");
    sleep(3);
    char seen[32] = "", state[6] = "";
    double eof_at;
    read_to_end(fd, seen, sizeof(seen), state, &eof_at);
    close(fd);
    size_t n = strlen(seen);
    cr_expect(n >= 3 && seen[0] == 'H' && seen[n - 1] == 'E', "what the client got: %s", seen);
    cr_expect(strspn(seen + 1, "d") == n - 2, "what the client got: %s", seen);
    cr_expect_str_eq(state, "57014");
    /* the pool's one server serves the next client */
    int fd2 = raw_session(px.port, "carol", "rt35");
    raw_query(fd2, "SELECT 'next'");
    char t2[64] = "", r2[64] = "", s2[64] = "";
    bool eof;
    read_until(fd2, 1, t2, sizeof(t2), r2, sizeof(r2), s2, sizeof(s2), 8000, &eof);
    cr_expect_str_eq(r2, "next|", "types %s errors %s", t2, s2);
    close(fd2);
}

/* A client that reads a trickle (1 KiB every 100 ms) of a 32 MB row after its end: it must
 * not hold the pool's one server much past SERVER_ENDING_WAIT_MS. */
static void *trickle(void *arg)
{
    int fd = *(int *)arg;
    char b[1024];
    for (int i = 0; i < 150; i++) {
        if (recv(fd, b, sizeof(b), 0) <= 0)
            break;
        usleep(100 * 1000);
    }
    return NULL;
}

Test(redteam35, a_trickle_reader_does_not_hold_the_slot)
{
    start_session("query_timeout_s: 1");
    int fd = raw_session(px.port, "carol", "rt35");
    raw_query(fd, "SELECT repeat('x', 32 * 1024 * 1024)");
    sleep(2);
    pthread_t th;
    pthread_create(&th, NULL, trickle, &fd);
    double t0 = now_s();
    PGconn *b = proxy_connect(&px, "carol", "x", "rt35", "connect_timeout=20");
    cr_expect(PQstatus(b) == CONNECTION_OK, "%s", PQerrorMessage(b));
    EXPECT_QUERY_VALUE(b, "SELECT 'served'", "served", "the next client");
    double took = now_s() - t0;
    cr_expect_lt(took, 8.5, "the next client waited %.1f s", took);
    PQfinish(b);
    pthread_join(th, NULL);
    close(fd);
}

/* ---- 1b. the same miscount between RLS tenants ---------------------------------------- */

/* Reads fd until a ReadyForQuery (true) or a quiet spell of timeout_ms / EOF (false). */
static bool read_to_ready(int fd, int timeout_ms, char *types, size_t typesz)
{
    static unsigned char body[1 << 16];
    size_t len;
    int t;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, timeout_ms)) >= 0) {
        size_t n = strlen(types);
        if (n + 1 < typesz) {
            types[n] = (char)t;
            types[n + 1] = '\0';
        }
        if (t == 'Z')
            return true;
    }
    return false;
}

/* Session pooling under row-level security, one server: tenant t1's miscounted COPY batch
 * leaves replies owed when t1 leaves; tenant t2, served by the same server next, must never
 * read t1's rows (doc 1 is tenant 1's). Each of t1's trailing statements waits on its own
 * lock, released one at a time: the reset and t2's settings take what they take, the rest
 * would be t2's answer. */
Test(redteam35, rls_a_miscounted_copy_batch_does_not_leak_a_tenants_rows)
{
    int port = free_port();
    char extra[2048];
    snprintf(extra, sizeof(extra),
             "  t1: {auth: trust, attributes: {tenant_id: \"1\"}}\n"
             "  t2: {auth: trust, attributes: {tenant_id: \"2\"}}\n"
             "rls:\n  prefix: app\n  databases: [app]\n  switch_role: true\n"
             "  default_role: lp_tenant\n  attributes: {tenant_id: attribute}\n");
    proxy_default_yaml(yaml, sizeof(yaml), port, "session", 1, 20000, extra);
    proxy_start_yaml(&px, port, yaml);
    PGconn *adm = pg_admin("lp_test");
    pg_owned_table(adm, "rt35_rcopy", "n int");
    pg_exec_ok(adm, "GRANT SELECT, INSERT ON rt35_rcopy TO lp_tenant");
    enum { NL = 5 };
    PGconn *locks[NL];
    char sql[256];
    for (int i = 0; i < NL; i++) {
        snprintf(sql, sizeof(sql), "rt35_rl%d", i);
        pg_owned_table(adm, sql, "n int");
        snprintf(sql, sizeof(sql), "GRANT SELECT ON rt35_rl%d TO lp_tenant", i);
        pg_exec_ok(adm, sql);
    }
    for (int i = 0; i < NL; i++) {
        snprintf(sql, sizeof(sql), "rt35_rl%d", i);
        locks[i] = lock_table(sql);
    }
    int fd = raw_session(px.port, "t1", "app");
    struct buf m;
    buf_init(&m);
    raw_put_query(&m, "SELECT 't1-q'");
    put_copy_with_sync(&m, "rt35_rcopy", "1\n");
    raw_put_pbe(&m, "SELECT 't1-a'");
    raw_put_empty(&m, 'S');
    for (int i = 0; i < NL; i++) {
        snprintf(sql, sizeof(sql),
                 "SELECT 't1-' || body FROM rls_docs, (SELECT count(*) FROM rt35_rl%d) x "
                 "WHERE id = 1",
                 i);
        raw_put_pbe(&m, sql);
        raw_put_empty(&m, 'S');
    }
    send_buf(fd, &m);
    char types[256] = "", rows[256] = "", states[256] = "";
    bool eof;
    int z = read_until(fd, 2, types, sizeof(types), rows, sizeof(rows), states, sizeof(states),
                       5000, &eof);
    cr_expect_eq(z, 2, "t1: types %s errors %s", types, states);
    close(fd);
    usleep(300 * 1000);
    int next = 0;
    unlock_table(locks[next++]); /* (taken by the reset, DISCARD ALL) */
    usleep(300 * 1000);
    int fd2 = raw_connect(px.port);
    cr_assert(fd2 >= 0);
    raw_send_startup(fd2, "t2", "app");
    char t2[512] = "";
    bool in = false;
    while (!(in = read_to_ready(fd2, 800, t2, sizeof(t2))) && next < NL)
        unlock_table(locks[next++]);
    cr_assert(in, "t2 could not log in (types %s)", t2);
    raw_query(fd2, "SELECT 't2-' || count(*) FROM rls_docs WHERE id = 1");
    usleep(200 * 1000);
    if (next < NL)
        unlock_table(locks[next++]);
    char tt[256] = "", r2[256] = "", s2[256] = "";
    read_until(fd2, 1, tt, sizeof(tt), r2, sizeof(r2), s2, sizeof(s2), 5000, &eof);
    cr_expect(strstr(r2, "t1-") == NULL, "tenant t2 read tenant t1's rows: '%s' (types %s)", r2,
              tt);
    cr_expect_str_eq(r2, "t2-0|", "t2's answer (types %s, errors %s, eof %d)", tt, s2, eof);
    close(fd2);
    while (next < NL)
        unlock_table(locks[next++]);
    PQfinish(adm);
}

/* ---- 1c. batch shapes compared with PostgreSQL ---------------------------------------- */

static void shape_no_such_table(struct buf *m)
{
    put_copy_with_sync(m, "rt35_nosuch", "1\n");
    raw_put_empty(m, 'S');
}

static void shape_copy_fail(struct buf *m)
{
    raw_put_pbe(m, "COPY rt35_shape FROM STDIN");
    raw_put_empty(m, 'S');
    raw_put_copy_str(m, "1\n");
    buf_msg_start(m, 'f');
    buf_put_bytes(m, "no\0", 3);
    buf_msg_finish(m);
    raw_put_empty(m, 'S');
    raw_put_pbe(m, "SELECT 'x'");
    raw_put_empty(m, 'S');
}

static void shape_bad_row(struct buf *m)
{
    raw_put_pbe(m, "COPY rt35_shape FROM STDIN");
    raw_put_empty(m, 'S');
    raw_put_copy_str(m, "1\n");
    raw_put_empty(m, 'S');
    raw_put_copy_str(m, "oops\n");
    raw_put_empty(m, 'S');
    raw_put_copy_str(m, "3\n");
    raw_put_empty(m, 'c');
    raw_put_empty(m, 'S');
    raw_put_pbe(m, "SELECT 'x'");
    raw_put_empty(m, 'S');
}

static void shape_flush(struct buf *m)
{
    raw_put_pbe(m, "COPY rt35_shape FROM STDIN");
    raw_put_empty(m, 'H');
    raw_put_copy_str(m, "1\n");
    raw_put_empty(m, 'H');
    raw_put_empty(m, 'c');
    raw_put_empty(m, 'H');
    raw_put_pbe(m, "SELECT 'x'");
    raw_put_empty(m, 'S');
}

static void shape_suspended(struct buf *m)
{
    raw_put_parse(m, "", "SELECT g FROM generate_series(1, 3) g");
    raw_put_bind(m, "", "");
    raw_put_execute_n(m, "", 1);
    raw_put_execute_n(m, "", 1);
    put_copy_with_sync(m, "rt35_shape", "1\n");
    raw_put_pbe(m, "SELECT 'x'");
    raw_put_pbe(m, "SELECT 'y'");
    raw_put_empty(m, 'S');
    raw_put_empty(m, 'S');
}

static void shape_empty_execute(struct buf *m)
{
    raw_put_pbe(m, "");
    raw_put_pbe(m, "");
    put_copy_with_sync(m, "rt35_shape", "1\n");
    raw_put_pbe(m, "SELECT 'x'");
    raw_put_empty(m, 'S');
    raw_put_pbe(m, "SELECT 'y'");
    raw_put_empty(m, 'S');
}

static void shape_stray(struct buf *m)
{
    raw_put_empty(m, 'c');
    raw_put_copy_str(m, "junk\n");
    raw_put_pbe(m, "SELECT 'w'");
    raw_put_empty(m, 'c');
    put_copy_with_sync(m, "rt35_shape", "1\n");
    raw_put_empty(m, 'c');
    raw_put_pbe(m, "SELECT 'x'");
    raw_put_empty(m, 'S');
    raw_put_pbe(m, "SELECT 'y'");
    raw_put_empty(m, 'S');
}

static void shape_query_inside(struct buf *m)
{
    put_copy_with_sync(m, "rt35_shape", "1\n");
    raw_put_query(m, "SELECT 'q'");
    raw_put_pbe(m, "SELECT 'x'");
    raw_put_empty(m, 'S');
    raw_put_pbe(m, "SELECT 'y'");
    raw_put_empty(m, 'S');
}

static void shape_many_copies(struct buf *m)
{
    for (int i = 0; i < 20; i++) {
        put_copy_with_sync(m, "rt35_shape", "1\n");
        raw_put_pbe(m, "SELECT 'x'");
    }
    raw_put_empty(m, 'S');
    raw_put_pbe(m, "SELECT 'y'");
    raw_put_empty(m, 'S');
}

static void shape_error_first(struct buf *m)
{
    raw_put_pbe(m, "SELECT 1/0");
    raw_put_empty(m, 'S');
    put_copy_with_sync(m, "rt35_shape", "1\n");
    raw_put_pbe(m, "SELECT 'x'");
    raw_put_empty(m, 'S');
    raw_put_pbe(m, "SELECT 'y'");
    raw_put_empty(m, 'S');
}

static void shape_copy_out_then_in(struct buf *m)
{
    raw_put_pbe(m, "COPY (SELECT 1) TO STDOUT");
    put_copy_with_sync(m, "rt35_shape", "1\n");
    raw_put_pbe(m, "SELECT 'x'");
    raw_put_empty(m, 'S');
    raw_put_pbe(m, "SELECT 'y'");
    raw_put_empty(m, 'S');
}

/* The whole transcript of a batch (then of a SELECT after it): PostgreSQL's and lakeproxy's
 * message types and rows must be the same, and the session must go on. */
static void compare_shape(const char *label, void (*put)(struct buf *), int ready)
{
    char want_t[1024] = "", want_r[512] = "";
    for (int target = 0; target < 2; target++) {
        int fd = target == 0 ? pg_raw_session() : raw_session(px.port, "carol", "app");
        struct buf m;
        buf_init(&m);
        put(&m);
        raw_put_query(&m, "SELECT 'after'");
        send_buf(fd, &m);
        char types[1024] = "", rows[512] = "", states[256] = "";
        bool eof;
        int z = read_until(fd, ready + 1, types, sizeof(types), rows, sizeof(rows), states,
                           sizeof(states), 5000, &eof);
        close(fd);
        if (target == 0) {
            cr_assert_eq(z, ready + 1, "%s: PostgreSQL: %d ReadyForQuery (types %s)", label, z,
                         types);
            snprintf(want_t, sizeof(want_t), "%s", types);
            snprintf(want_r, sizeof(want_r), "%s", rows);
            continue;
        }
        cr_expect_str_eq(types, want_t, "%s: lakeproxy's message types differ (errors %s)", label,
                         states);
        cr_expect_str_eq(rows, want_r, "%s: rows differ", label);
    }
}

Test(redteam35, copy_batch_shapes_answer_as_postgresql_does)
{
    start_session(NULL);
    PGconn *adm = pg_admin("lp_test");
    pg_owned_table(adm, "rt35_shape", "n int");
    compare_shape("no such table", shape_no_such_table, 2);
    compare_shape("CopyFail", shape_copy_fail, 2);
    compare_shape("a bad row, Syncs during the copy", shape_bad_row, 2);
    compare_shape("Flush instead of Sync", shape_flush, 1);
    compare_shape("PortalSuspended before the COPY", shape_suspended, 2);
    compare_shape("empty Executes before the COPY", shape_empty_execute, 2);
    compare_shape("stray CopyDone and CopyData", shape_stray, 2);
    compare_shape("a simple Query after the CopyDone", shape_query_inside, 3);
    compare_shape("20 COPYs", shape_many_copies, 2);
    compare_shape("an error before the COPY", shape_error_first, 3);
    compare_shape("COPY TO STDOUT then COPY FROM STDIN", shape_copy_out_then_in, 2);
    PQfinish(adm);
}

/* ---- 2b. what happens during the put-off ---------------------------------------------- */

/* A raw session to rt35 with its cancel key, that asks for a 32 MB row and reads nothing for
 * 3 s: the end (query_timeout_s: 1) is put off with the row half relayed. */
static struct rawsess put_off_session(void)
{
    struct rawsess r;
    cr_assert(raw_keyed_try(px.port, &r, "rt35"));
    raw_query(r.fd, "SELECT repeat('x', 32 * 1024 * 1024)");
    sleep(3);
    return r;
}

/* What the client read must be whole messages of the statement, at most its FATAL after
 * them; the next client is served its own answer. */
static void after_put_off(const char *label, int fd)
{
    char seen[32] = "", state[6] = "";
    double eof_at;
    if (fd >= 0) {
        read_to_end(fd, seen, sizeof(seen), state, &eof_at);
        close(fd);
    }
    cr_expect(strspn(seen, "TDE") == strlen(seen) && strchr(seen, 'E') == strrchr(seen, 'E') &&
                  (!strchr(seen, 'E') || seen[strlen(seen) - 1] == 'E'),
              "%s: what the client got: %s", label, seen);
    if (state[0])
        cr_expect(strcmp(state, "57014") == 0 || strcmp(state, "57P01") == 0, "%s: %s", label,
                  state);
    PGconn *b = proxy_connect(&px, "carol", "x", "rt35", "connect_timeout=20");
    cr_expect(PQstatus(b) == CONNECTION_OK, "%s: %s", label, PQerrorMessage(b));
    EXPECT_QUERY_VALUE(b, "SELECT 'next'", "next", "%s: the next client", label);
    PQfinish(b);
}

Test(redteam35, kill_cancel_or_leaving_during_a_put_off_end)
{
    start_session("query_timeout_s: 1");
    PGconn *adm = proxy_console(&px, "carol", "x");
    struct rawsess r = put_off_session();
    admin_ok(adm, "KILL rt35");
    after_put_off("KILL during the put-off", r.fd);
    r = put_off_session();
    int cfd = raw_cancel_async(px.port, r.pid, r.key);
    usleep(200 * 1000);
    after_put_off("the client's own cancel during the put-off", r.fd);
    if (cfd >= 0)
        close(cfd);
    r = put_off_session();
    close(r.fd);
    double t0 = now_s();
    after_put_off("the client leaving during the put-off", -1);
    cr_expect_lt(now_s() - t0, 3.0, "the next client waited %.1f s", now_s() - t0);
    PQfinish(adm);
}

/* A reload that no longer lets the client in (its from:) ends it while its end is already
 * put off (a second end: closed without a word), or puts the end off itself: whole
 * messages only, and the next client is served its own answer. */
Test(redteam35, a_reload_during_a_put_off_end)
{
    int port = free_port();
    char open_[1 << 16], shut[1 << 16];
    const char *more = "admin:\n  users: [carol]\n";
    char u_open[256], u_shut[256];
    /* (the users: section is last in proxy_default_yaml: rtp goes under it, admin after) */
    snprintf(u_open, sizeof(u_open), "  rtp: {auth: trust, from: [127.0.0.0/8]}\n%s", more);
    snprintf(u_shut, sizeof(u_shut), "  rtp: {auth: trust, from: [10.0.0.0/8]}\n%s", more);
    char entry[1024];
    snprintf(entry, sizeof(entry),
             "  rt35:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n"
             "    user: lp_server\n    password: server-secret\n    tls: disable\n"
             "    pool: {mode: session, size: 1, max_wait_ms: 8000, query_timeout_s: %d}\n",
             env_need("LP_PGPORT"), 1);
    proxy_default_yaml(open_, sizeof(open_), port, "session", 1, 8000, u_open);
    yaml_add_database(open_, sizeof(open_), entry);
    proxy_default_yaml(shut, sizeof(shut), port, "session", 1, 8000, u_shut);
    yaml_add_database(shut, sizeof(shut), entry);
    proxy_start_yaml(&px, port, open_);
    for (int round = 0; round < 2; round++) {
        int fd = raw_session(px.port, "rtp", "rt35");
        raw_query(fd, "SELECT repeat('x', 32 * 1024 * 1024)");
        sleep(round == 0 ? 3 : 0); /* round 0: the timeout's end is put off first */
        usleep(300 * 1000);
        proxy_reload_yaml(&px, shut);
        after_put_off(
            round == 0 ? "a reload after the timeout's put-off" : "a reload's own put-off", fd);
        proxy_reload_yaml(&px, open_);
    }
}
