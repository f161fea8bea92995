/* test_redteam34.c: red-team round 34: the sessions lakeproxy ends itself (a reload that no
 * longer lets a client in, admin KILL, limits.shutdown_timeout_s at a SIGTERM drain) and the
 * cancel client_terminate now sends first; token logins matched ignoring case; the
 * configuration file's mode.
 *
 * Each test asserts the SAFE behaviour a user relies on: a failing test is a finding.
 *
 * Findings (30 tests, 3+ runs; each failure 3 of 3; all FOUND, FIXED since: server.c
 * server_end_statement marks a server whose client is ended with statements queued behind the
 * cancelled one (close_at_unlink), and server_unlink closes it rather than draining it, as
 * KILL already did; token names are compared ignoring case in all of Unicode after NFC
 * (config.c config_name_casecmp, libunistring's u8_casecmp), at login, in the entry look-up
 * and in the load-time duplicate check; a configuration in a directory every user may
 * change (no sticky bit) is refused at load, config.c policy_file_exposed):
 * - txn_/session_a_reload_does_not_let_pipelined_queries_commit,
 *   the_shutdown_limit_does_not_let_pipelined_queries_commit (medium): a client that pipelined
 *   three autocommit INSERTs as three simple Queries (the first slow) is ended with 57P01 by a
 *   reload (users.X.from) or by limits.shutdown_timeout_s while the first runs: the first is
 *   cancelled, but the second and third, already forwarded, run and commit behind the 57P01
 *   (2 rows every time). client_terminate -> server_end_statement cancels only the running
 *   one; client_fail_as then leaves the server to server.c server_unlink -> can_drain ->
 *   drain_behind_client, which lets every owed simple query run (the rule for a client that
 *   left by itself), and at the limit the 200 ms flush gives them the time to.
 * - txn_query_timeout_does_not_let_pipelined_queries_commit (low): the same behind
 *   pool.query_timeout_s's FATAL 57014 (same server_end_statement path; README says the server
 *   is drained, but not that statements queued behind the cancelled one still commit).
 * - a_non_ascii_case_variant_entry_is_still_held_to_from, an_upper_case_non_ascii_entry_is_
 *   still_held_to_from (medium, fails open): the workspace's "åsa@example.com" with the entry
 *   "Åsa@example.com" (or "ÅSA@EXAMPLE.COM", from: [10.0.0.0/8]) logs in from 127.0.0.1:
 *   config.c config_find_token_user folds ASCII only (strcasecmp), so the entry, its from:
 *   list (and its groups, attributes) is not found, as "ANA" vs "ana" was before round 33;
 *   nor does the load-time duplicate check see "åsa"/"Åsa" as the same name.
 * - a_configuration_in_a_world_writable_directory_is_refused_or_warned (low, policy): a 0640
 *   configuration file in a 0777 directory (no sticky bit), which any local user may replace,
 *   is loaded without a word (config.c config_load checks the file's own mode only).
 * Held: KILL with pipelined simple queries or extended Syncs commits nothing (its servers are
 * closed at once); the cancel never reached another client's statement (24 rounds of a reload
 * ending erin at -30..+25 ms around her statement's end, half with her own cancel on its way,
 * alice running statements non-stop on the one server; the same with RLS tenants t1/t2: t2
 * always got its own 100 rows); a reload with pipelined extended-protocol statements; a
 * large result or COPY TO STDOUT half-relayed at KILL or the shutdown limit (whole messages,
 * no 57P01 inside a DataRow, nothing after it; the next client served clean); the shutdown
 * limit with clients running, idle in a transaction, mid-COPY, queued and logging in (exit 0
 * in < 1.9 s, nothing committed, the statement gone from pg_stat_activity), with 24
 * statements, over TLS to the server, with SIGHUP/SIGTERM during the 200 ms flush, with a
 * statement catching query_canceled (the message says the outcome is unknown), and from the
 * console's SHUTDOWN; KILL of a paused database twice (old clients ended, nothing committed,
 * RESUME serves); KILL mid-COPY FROM STDIN and after CopyDone; KILL behind a Flush without
 * Sync; a KILL storm (15 KILLs, 6 clients: only 57P01, no INSERT lost, SHOW POOLS back to 0,
 * a new client served at once); 30 reloads refusing nobody end nothing; a symlink to a 0666
 * file is refused (start and --check-config); a file made 0666 after the start refuses the
 * reload and keeps the old configuration.
 * Not tested: KILL during a takeover; Unicode folding beyond Latin-1 letters; a statement
 * that survives the cancel goes on after lakeproxy exits (PostgreSQL cannot be told to end it
 * without pg_terminate_backend: the 57P01 says the outcome is unknown). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "mockws.h"

static struct proxy px;
static struct mock_ws mock;
static char yaml[1 << 18];

static void stop_all(void)
{
    mockws_stop(&mock);
    if (px.pid)
        proxy_stop(&px);
}

TestSuite(redteam34, .fini = stop_all, .timeout = 180);

#define ERIN_OPEN "  erin: {password: erin-pw, from: [127.0.0.0/8]}\n"
#define ERIN_SHUT "  erin: {password: erin-pw, from: [10.0.0.0/8]}\n"
#define ADMIN "admin:\n  users: [carol]\n"
/* tina (trust): from 127/8, then from 10/8 only */
#define TINA_OPEN "  tina: {auth: trust, from: [127.0.0.0/8]}\n"
#define TINA_SHUT "  tina: {auth: trust, from: [10.0.0.0/8]}\n"

static void make_yaml(char *out, size_t outsz, int port, const char *mode, int size,
                      const char *users, const char *more)
{
    char extra[8192];
    snprintf(extra, sizeof(extra), "%s%s%s", users ? users : "", ADMIN, more ? more : "");
    proxy_default_yaml(out, outsz, port, mode, size, 5000, extra);
}

static void start_rt(const char *mode, int size, const char *users, const char *more)
{
    int port = free_port();
    make_yaml(yaml, sizeof(yaml), port, mode, size, users, more);
    proxy_start_yaml(&px, port, yaml);
}

static int reloads_ended(void)
{
    return file_count_lines(px.log, "configuration reloaded from") +
           file_count_lines(px.log, "reload refused");
}

/* Rewrites the file, SIGHUP, and waits (no minimum) until the reload ended. */
static void reload_now(const char *y)
{
    int before = reloads_ended();
    FILE *f = fopen(px.conf, "w");
    cr_assert(f);
    fputs(y, f);
    fclose(f);
    cr_assert_eq(kill(px.pid, SIGHUP), 0);
    for (int i = 0; i < 500 && reloads_ended() == before; i++)
        usleep(5000);
}

static long count_rows(PGconn *adm, const char *table)
{
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    return pg_long(adm, sql);
}

/* ---- statements queued behind the one running ---- */

/* carol sends three autocommit INSERTs as three simple Queries in one write (a pipelining
 * driver, or psql -f over a slow link), the first slow; lakeproxy ends her (how) while the
 * first runs. PostgreSQL's own 57P01 would end them all; behind lakeproxy's, none of the three
 * may commit (a client retrying would insert them twice). */
static void pipeline_ended(const char *mode, const char *how, bool extended)
{
    PGconn *pg = pg_admin("lp_test");
    char table[64];
    snprintf(table, sizeof(table), "rt34_pipe_%s_%s%s", mode, how, extended ? "_x" : "");
    pg_owned_table(pg, table, "v int");
    start_rt(mode, 1, TINA_OPEN,
             strcmp(how, "limit") == 0 ? "limits:\n  shutdown_timeout_s: 1\n" : NULL);
    if (strcmp(how, "timeout") == 0) { /* pool.query_timeout_s: 1 on app */
        static char n[sizeof(yaml)];
        make_yaml(n, sizeof(n), px.port, mode, 1, TINA_OPEN, NULL);
        char *at = strstr(n, "max_wait_ms: 5000\n");
        cr_assert(at);
        at += strlen("max_wait_ms: 5000\n");
        memmove(at + 25, at, strlen(at) + 1);
        memcpy(at, "      query_timeout_s: 1\n", 25);
        reload_now(n);
    }
    int fd = raw_session(px.port, "tina", "app");
    char q1[200], q2[200], q3[200];
    bool slow = strcmp(how, "timeout") == 0;
    snprintf(q1, sizeof(q1), "INSERT INTO %s SELECT 1 FROM pg_sleep(%s)", table,
             slow ? "3" : "1.5");
    snprintf(q2, sizeof(q2), "INSERT INTO %s VALUES (2)", table);
    snprintf(q3, sizeof(q3), "INSERT INTO %s VALUES (3)", table);
    if (extended) {
        struct buf b;
        buf_init(&b);
        const char *qs[] = {q1, q2, q3};
        for (int i = 0; i < 3; i++) {
            raw_put_parse(&b, "", qs[i]);
            raw_put_bind(&b, "", "");
            raw_put_execute(&b, "");
            raw_put_empty(&b, 'S');
        }
        cr_assert(raw_send(fd, &b));
        buf_free(&b);
    } else {
        const char *qs[] = {q1, q2, q3};
        cr_assert(raw_send_queries(fd, qs, 3));
    }
    usleep(400 * 1000);
    PGconn *adm = NULL;
    if (strcmp(how, "timeout") == 0) {
        /* (the timeout ends her) */
    } else if (strcmp(how, "reload") == 0) {
        static char n[sizeof(yaml)];
        make_yaml(n, sizeof(n), px.port, mode, 1, TINA_SHUT, NULL);
        reload_now(n);
    } else if (strcmp(how, "kill") == 0) {
        adm = proxy_console(&px, "carol", "x");
        admin_ok(adm, "KILL app");
    } else {
        cr_assert_eq(kill(px.pid, SIGTERM), 0);
    }
    const char *st = raw_expect_error(fd);
    cr_expect(strcmp(st, "57P01") == 0 || strcmp(st, "57014") == 0 || strcmp(st, "") == 0,
              "tina got %s", st);
    close(fd);
    if (adm)
        PQfinish(adm);
    if (strcmp(how, "limit") == 0)
        proxy_expect_exit_0(&px, 5000);
    usleep((slow ? 3500 : 2500) * 1000); /* (past the first statement's own end) */
    long n = count_rows(pg, table);
    cr_expect_eq(
        n, 0,
        "%s pooling, %s%s: tina was ended (57P01, or 57014 for the timeout) while her first "
        "INSERT ran, but %ld of her pipelined INSERTs committed behind it",
        mode, how, extended ? " (extended protocol, one Sync each)" : "", n);
    PQfinish(pg);
}

Test(redteam34, txn_kill_does_not_let_pipelined_queries_commit)
{
    pipeline_ended("transaction", "kill", false);
}

Test(redteam34, session_kill_does_not_let_pipelined_queries_commit)
{
    pipeline_ended("session", "kill", false);
}

Test(redteam34, txn_kill_does_not_let_pipelined_extended_syncs_commit)
{
    pipeline_ended("transaction", "kill", true);
}

Test(redteam34, txn_a_reload_does_not_let_pipelined_queries_commit)
{
    pipeline_ended("transaction", "reload", false);
}

Test(redteam34, session_a_reload_does_not_let_pipelined_queries_commit)
{
    pipeline_ended("session", "reload", false);
}

Test(redteam34, txn_a_reload_does_not_let_pipelined_extended_syncs_commit)
{
    pipeline_ended("transaction", "reload", true);
}

Test(redteam34, txn_query_timeout_does_not_let_pipelined_queries_commit)
{
    pipeline_ended("transaction", "timeout", false);
}

Test(redteam34, the_shutdown_limit_does_not_let_pipelined_queries_commit)
{
    pipeline_ended("transaction", "limit", false);
}

/* The same through a reload taking erin's address away (libpq pipeline mode: extended
 * protocol, a Sync per statement). */
Test(redteam34, a_reload_does_not_let_pipelined_statements_commit)
{
    PGconn *pg = pg_admin("lp_test");
    pg_owned_table(pg, "rt34_pipe_reload", "v int");
    start_rt("transaction", 1, ERIN_OPEN, NULL);
    PGconn *e = proxy_connect(&px, "erin", "erin-pw", "app", NULL);
    cr_assert(PQstatus(e) == CONNECTION_OK, "%s", PQerrorMessage(e));
    cr_assert(PQenterPipelineMode(e));
    cr_assert(PQsendQueryParams(e, "INSERT INTO rt34_pipe_reload SELECT 1 FROM pg_sleep(1.5)", 0,
                                NULL, NULL, NULL, NULL, 0));
    cr_assert(PQpipelineSync(e));
    cr_assert(PQsendQueryParams(e, "INSERT INTO rt34_pipe_reload VALUES (2)", 0, NULL, NULL, NULL,
                                NULL, 0));
    cr_assert(PQpipelineSync(e));
    cr_assert(PQsendQueryParams(e, "INSERT INTO rt34_pipe_reload VALUES (3)", 0, NULL, NULL, NULL,
                                NULL, 0));
    cr_assert(PQpipelineSync(e));
    PQflush(e);
    usleep(400 * 1000);
    static char n[sizeof(yaml)];
    make_yaml(n, sizeof(n), px.port, "transaction", 1, ERIN_SHUT, NULL);
    reload_now(n);
    PQfinish(e);
    usleep(2500 * 1000);
    long rows = count_rows(pg, "rt34_pipe_reload");
    cr_expect_eq(rows, 0,
                 "erin was closed by the reload (57P01) but %ld pipelined row(s) committed", rows);
    PQfinish(pg);
}

/* ---- the cancel must reach no other client's statement ---- */

struct loop_arg {
    volatile int stop;
    int ok, bad;
    char states[512];
};

static void *alice_loop(void *p)
{
    struct loop_arg *a = p;
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(a->states, sizeof(a->states), "login: %s", PQerrorMessage(c));
        a->bad++;
        PQfinish(c);
        return NULL;
    }
    while (!a->stop) {
        PGresult *r = PQexec(c, "SELECT 'alice' FROM pg_sleep(0.004)");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
            strcmp(PQgetvalue(r, 0, 0), "alice") == 0) {
            a->ok++;
        } else {
            a->bad++;
            const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            if (strlen(a->states) < 400) {
                strcat(a->states, st ? st : "?");
                strcat(a->states, " ");
            }
            if (PQstatus(c) != CONNECTION_OK) {
                PQclear(r);
                break;
            }
        }
        PQclear(r);
    }
    PQfinish(c);
    return NULL;
}

/* Transaction pooling, one server: alice runs short statements non-stop; erin's statements
 * share the server. Over many rounds a reload takes erin's address away just as her statement
 * ends (before, at, after), some rounds with erin's own cancel on its way too: alice's
 * statements are never cancelled (57014) nor fail otherwise. */
Test(redteam34, the_cancel_never_reaches_another_clients_statement, .timeout = 240)
{
    start_rt("transaction", 1, ERIN_OPEN, NULL);
    static char open[sizeof(yaml)], shut[sizeof(yaml)];
    make_yaml(open, sizeof(open), px.port, "transaction", 1, ERIN_OPEN, NULL);
    make_yaml(shut, sizeof(shut), px.port, "transaction", 1, ERIN_SHUT, NULL);
    struct loop_arg a = {0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, alice_loop, &a), 0);
    int terminated = 0;
    for (int round = 0; round < 24; round++) {
        PGconn *e = proxy_connect_within(&px, "erin", "erin-pw", "app", 5000);
        cr_assert(PQstatus(e) == CONNECTION_OK, "%s", PQerrorMessage(e));
        free(query_value(e, "SELECT 1")); /* (logged in and served once) */
        cr_assert(PQsendQuery(e, "SELECT pg_sleep(0.1)"));
        int at_ms = 70 + (round % 12) * 5; /* 70..125 ms: before, at and after its end */
        usleep((useconds_t)at_ms * 1000);
        if (round % 2) {
            PGcancel *cn = PQgetCancel(e);
            char err[256];
            PQcancel(cn, err, sizeof(err));
            PQfreeCancel(cn);
        }
        reload_now(shut);
        struct outcome o;
        outcome_of(e, &o);
        if (strcmp(o.state, "57P01") == 0 || strcmp(o.state, "CLOSD") == 0)
            terminated++;
        PQfinish(e);
        reload_now(open);
    }
    usleep(300 * 1000);
    a.stop = 1;
    pthread_join(t, NULL);
    cr_expect_eq(a.bad, 0, "alice's statements failed %d times (of %d): %s", a.bad, a.ok + a.bad,
                 a.states);
    cr_expect_gt(a.ok, 50, "alice ran only %d statements", a.ok);
    cr_expect_gt(terminated, 0, "erin was never terminated mid-statement");
}

/* ---- half-relayed messages ---- */

struct stream {
    int msgs, datarows;
    char err_state[6];
    bool after_error;  /* a message came after the ErrorResponse */
    bool partial;      /* EOF inside a message */
    bool fatal_inside; /* "57P01" inside another message's bytes */
    char bad[160];     /* a malformed message */
};

/* Reads fd until EOF (at most timeout_s) and checks the messages' framing. */
static void read_stream(int fd, struct stream *st, double timeout_s)
{
    memset(st, 0, sizeof(*st));
    size_t cap = 1 << 20, len = 0;
    unsigned char *b = malloc(cap);
    cr_assert(b);
    size_t at = 0; /* start of the message being read */
    double until = now_s() + timeout_s;
    for (;;) {
        if (now_s() > until) {
            snprintf(st->bad, sizeof(st->bad), "no EOF within %.0f s", timeout_s);
            break;
        }
        if (len == cap) {
            /* drop whole messages already parsed */
            memmove(b, b + at, len - at);
            len -= at;
            at = 0;
            if (len == cap) {
                cap *= 2;
                b = realloc(b, cap);
                cr_assert(b);
            }
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) <= 0)
            continue;
        ssize_t r = read(fd, b + len, cap - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        /* parse whole messages */
        while (len - at >= 5) {
            unsigned char t = b[at];
            uint32_t l = raw_be32(b + at + 1);
            if (!strchr("123cdACDEGHIKNnRsSTtVWZ", t) || t == 0 || l < 4 || l > (64u << 20)) {
                if (!st->bad[0])
                    snprintf(st->bad, sizeof(st->bad), "message %d: type 0x%02x length %u",
                             st->msgs, t, l);
                len = at; /* stop parsing */
                goto done;
            }
            if (len - at < 1 + (size_t)l)
                break;
            if (st->err_state[0])
                st->after_error = true;
            if (t == 'E') {
                snprintf(st->err_state, sizeof(st->err_state), "%s",
                         raw_error_sqlstate(b + at + 5, l - 4));
            } else if (memmem(b + at + 5, l - 4, "57P01", 5)) {
                st->fatal_inside = true;
            }
            if (t == 'D')
                st->datarows++;
            st->msgs++;
            at += 1 + (size_t)l;
        }
    }
    if (len > at) {
        st->partial = true;
        if (memmem(b + at, len - at, "57P01", 5))
            st->fatal_inside = true;
    }
done:
    free(b);
}

/* carol's large result (rows of 200 kB) fills the socket buffers unread when lakeproxy ends her:
 * what she then reads is whole messages ending with the 57P01, or stops at EOF (possibly inside
 * a message), never an ErrorResponse inside a DataRow or a message after it. The server is not
 * reused mid-result: the next client is served a clean answer. */
static void half_relayed(const char *how, const char *sql)
{
    start_rt("transaction", 1, NULL,
             strcmp(how, "limit") == 0 ? "limits:\n  shutdown_timeout_s: 1\n" : NULL);
    int fd = raw_session(px.port, "carol", "app");
    raw_query(fd, sql);
    usleep(700 * 1000);
    if (strcmp(how, "kill") == 0) {
        PGconn *adm = proxy_console(&px, "carol", "x");
        admin_ok(adm, "KILL app");
        PQfinish(adm);
    } else {
        cr_assert_eq(kill(px.pid, SIGTERM), 0);
    }
    usleep(300 * 1000);
    struct stream st;
    read_stream(fd, &st, 20);
    close(fd);
    cr_expect_str_eq(st.bad, "", "malformed stream after %d messages (%d rows)", st.msgs,
                     st.datarows);
    cr_expect_not(st.fatal_inside, "the 57P01 landed inside another message (%d messages)",
                  st.msgs);
    cr_expect_not(st.after_error, "messages came after the ErrorResponse %s", st.err_state);
    cr_expect(st.err_state[0] == '\0' || strcmp(st.err_state, "57P01") == 0, "error %s",
              st.err_state);
    if (strcmp(how, "limit") == 0) {
        proxy_expect_exit_0(&px, 3000);
        return;
    }
    PGconn *a = proxy_connect_within(&px, "alice", "alice-secret", "app", 5000);
    cr_assert(PQstatus(a) == CONNECTION_OK, "%s", PQerrorMessage(a));
    EXPECT_QUERY_VALUE(a, "SELECT 'clean'", "clean", "alice after carol");
    EXPECT_QUERY_VALUE(a, "SELECT 'clean2'", "clean2", "alice after carol (2)");
    PQfinish(a);
}

#define BIG_SELECT "SELECT repeat('x', 200000) || g FROM generate_series(1, 300) g"
#define BIG_COPY "COPY (SELECT repeat('y', 200000) || g FROM generate_series(1, 300) g) TO STDOUT"

Test(redteam34, kill_mid_large_result_keeps_the_protocol_whole)
{
    half_relayed("kill", BIG_SELECT);
}

Test(redteam34, kill_mid_copy_out_keeps_the_protocol_whole)
{
    half_relayed("kill", BIG_COPY);
}

Test(redteam34, the_shutdown_limit_mid_large_result_keeps_the_protocol_whole)
{
    half_relayed("limit", BIG_SELECT);
}

/* ---- the shutdown limit ---- */

/* SIGTERM with limits.shutdown_timeout_s: 1 while clients are in every state: running a
 * statement, idle in a transaction with an INSERT, mid-COPY FROM STDIN, queued for the only
 * server, logging in (startup sent, password not). lakeproxy exits 0 within the limit plus
 * well under a second; nothing of theirs commits; PostgreSQL runs none of their statements
 * shortly after; the running one was told 57P01 naming the limit. */
Test(redteam34, the_shutdown_limit_with_clients_in_every_state)
{
    PGconn *pg = pg_admin("lp_test");
    pg_owned_table(pg, "rt34_limit", "v int");
    start_rt("session", 3, NULL, "limits:\n  shutdown_timeout_s: 1\n");
    PGconn *run = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    PGconn *idle = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    PGconn *copy = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(run) == CONNECTION_OK && PQstatus(idle) == CONNECTION_OK &&
              PQstatus(copy) == CONNECTION_OK);
    pg_exec_ok(idle, "BEGIN");
    pg_exec_ok(idle, "INSERT INTO rt34_limit VALUES (10)");
    PGresult *r = PQexec(copy, "COPY rt34_limit FROM STDIN");
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_IN, "%s", PQerrorMessage(copy));
    PQclear(r);
    cr_assert_eq(PQputCopyData(copy, "20\n21\n", 6), 1);
    PQflush(copy);
    /* queued: the pool (session, 3) is full */
    char ci[300];
    snprintf(ci, sizeof(ci),
             "host=127.0.0.1 port=%d user=alice password=alice-secret dbname=app sslmode=disable",
             px.port);
    PGconn *queued = PQconnectStart(ci);
    cr_assert(PQsendQuery(run, "INSERT INTO rt34_limit SELECT 30 FROM pg_sleep(5) /*rt34lim*/"));
    int login = raw_connect(px.port);
    raw_send_startup(login, "alice", "app");
    for (int i = 0; i < 20; i++) {
        PQconnectPoll(queued);
        usleep(10 * 1000);
    }
    usleep(200 * 1000);
    double t0 = now_s();
    cr_assert_eq(kill(px.pid, SIGTERM), 0);
    struct outcome o;
    outcome_of(run, &o);
    cr_expect_str_eq(o.state, "57P01", "%s", o.msg);
    cr_expect(strstr(o.msg, "limits.shutdown_timeout_s"), "%s", o.msg);
    int status = -1;
    double took = 0;
    for (int i = 0; i < 100 && status < 0; i++) {
        status = proxy_wait_exit(&px, 50);
        took = now_s() - t0;
    }
    if (status >= 0)
        px.pid = 0;
    cr_expect_eq(status, 0, "lakeproxy exited with %d", status);
    cr_expect_lt(took, 1.9, "lakeproxy took %.2f s to exit with a 1 s limit", took);
    cr_expect(pg_statement_gone(pg, "rt34lim", 1500),
              "PostgreSQL still runs the statement 1.5 s after lakeproxy exited");
    PQputCopyData(copy, "22\n", 3);
    PQputCopyEnd(copy, NULL);
    while ((r = PQgetResult(copy)))
        PQclear(r);
    PQfinish(run);
    PQfinish(idle);
    PQfinish(copy);
    PQfinish(queued);
    close(login);
    usleep(5000 * 1000);
    long n = count_rows(pg, "rt34_limit");
    cr_expect_eq(n, 0, "%ld row(s) committed after the shutdown limit", n);
    PQfinish(pg);
}

/* A SIGHUP and a second SIGTERM during the 200 ms flush after the limit: lakeproxy still
 * exits 0, promptly. */
Test(redteam34, signals_during_the_last_flush_still_exit_0)
{
    start_rt("transaction", 1, NULL, "limits:\n  shutdown_timeout_s: 1\n");
    PGconn *a = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(a) == CONNECTION_OK);
    cr_assert(PQsendQuery(a, "SELECT pg_sleep(5)"));
    usleep(200 * 1000);
    double t0 = now_s();
    cr_assert_eq(kill(px.pid, SIGTERM), 0);
    /* the limit passes at ~1.0 s: signals at 1.02, 1.06, 1.10, 1.14 s */
    usleep(1020 * 1000);
    pid_t pid = px.pid;
    for (int i = 0; i < 4; i++) {
        kill(pid, i % 2 ? SIGTERM : SIGHUP);
        usleep(40 * 1000);
    }
    int status = -1;
    for (int i = 0; i < 100 && status < 0; i++)
        status = proxy_wait_exit(&px, 50);
    double took = now_s() - t0;
    if (status >= 0)
        px.pid = 0;
    cr_expect_eq(status, 0, "exit status %d", status);
    cr_expect_lt(took, 1.9, "took %.2f s", took);
    struct outcome o;
    outcome_of(a, &o);
    cr_expect(strcmp(o.state, "57P01") == 0, "alice: %s %s", o.state, o.msg);
    PQfinish(a);
}

/* ---- KILL ---- */

/* PAUSE app with clients waiting, then KILL app twice quickly while a statement runs, RESUME:
 * every old client is ended with 57P01 (none served after the KILL), the slot is freed (a new
 * client is served), SHOW POOLS counts no client of the old ones. */
Test(redteam34, kill_of_a_paused_database_twice)
{
    PGconn *pg = pg_admin("lp_test");
    pg_owned_table(pg, "rt34_paused", "v int");
    start_rt("transaction", 1, NULL, NULL);
    PGconn *adm = proxy_console(&px, "carol", "x");
    PGconn *run = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    PGconn *w1 = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(run) == CONNECTION_OK && PQstatus(w1) == CONNECTION_OK);
    cr_assert(PQsendQuery(run, "INSERT INTO rt34_paused SELECT 1 FROM pg_sleep(2)"));
    usleep(200 * 1000);
    PQsendQuery(adm, "PAUSE app"); /* (waits for the running statement) */
    usleep(200 * 1000);
    cr_assert(PQsendQuery(w1, "INSERT INTO rt34_paused VALUES (2)"));
    usleep(200 * 1000);
    PGconn *adm2 = proxy_console(&px, "carol", "x");
    admin_ok(adm2, "KILL app");
    admin_ok(adm2, "KILL app");
    struct outcome o;
    outcome_of(adm, &o); /* the PAUSE's answer, whatever it is */
    admin_ok(adm2, "RESUME app");
    struct outcome o1, o2;
    outcome_of(run, &o1);
    outcome_of(w1, &o2);
    cr_expect(strcmp(o1.state, "57P01") == 0 || strcmp(o1.state, "CLOSD") == 0, "run: %s %s",
              o1.state, o1.msg);
    cr_expect(strcmp(o2.state, "57P01") == 0 || strcmp(o2.state, "CLOSD") == 0, "waiting: %s %s",
              o2.state, o2.msg);
    PQfinish(run);
    PQfinish(w1);
    usleep(2500 * 1000);
    cr_expect_eq(count_rows(pg, "rt34_paused"), 0, "a killed client's INSERT committed");
    PGconn *b = proxy_connect_within(&px, "alice", "alice-secret", "app", 5000);
    cr_assert(PQstatus(b) == CONNECTION_OK, "%s", PQerrorMessage(b));
    PGresult *r = PQexec(b, "SELECT 'served'");
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "after KILL, PAUSE, RESUME: %s",
                 PQerrorMessage(b));
    PQclear(r);
    PQfinish(b);
    PQfinish(adm);
    PQfinish(adm2);
}

/* KILL while a COPY FROM STDIN is mid-data and while one has sent CopyDone (its commit
 * running behind a trigger that sleeps): neither commits. */
Test(redteam34, kill_mid_copy_in_and_after_copy_done_commits_nothing)
{
    PGconn *pg = pg_admin("lp_test");
    pg_owned_table(pg, "rt34_copy", "v int");
    pg_exec_ok(pg, "CREATE OR REPLACE FUNCTION rt34_slow() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$");
    pg_exec_ok(pg, "CREATE TRIGGER rt34_slow AFTER INSERT ON rt34_copy FOR EACH STATEMENT "
                   "EXECUTE FUNCTION rt34_slow()");
    start_rt("transaction", 2, NULL, NULL);
    PGconn *mid = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    PGconn *done = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    PGresult *r = PQexec(mid, "COPY rt34_copy FROM STDIN");
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_IN, "%s", PQerrorMessage(mid));
    PQclear(r);
    PQputCopyData(mid, "1\n2\n", 4);
    PQflush(mid);
    r = PQexec(done, "COPY rt34_copy FROM STDIN");
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_IN, "%s", PQerrorMessage(done));
    PQclear(r);
    PQputCopyData(done, "3\n4\n", 4);
    PQputCopyEnd(done, NULL);
    PQflush(done);
    usleep(400 * 1000);
    PGconn *adm = proxy_console(&px, "carol", "x");
    admin_ok(adm, "KILL app");
    struct outcome o;
    outcome_of(done, &o);
    cr_expect(strcmp(o.state, "57P01") == 0 || strcmp(o.state, "CLOSD") == 0, "done: %s %s",
              o.state, o.msg);
    PQputCopyData(mid, "5\n", 2);
    PQputCopyEnd(mid, NULL);
    while ((r = PQgetResult(mid)))
        PQclear(r);
    PQfinish(mid);
    PQfinish(done);
    usleep(2500 * 1000);
    long n = count_rows(pg, "rt34_copy");
    cr_expect_eq(n, 0, "%ld row(s) of killed COPYs committed", n);
    PQfinish(adm);
    PQfinish(pg);
}

/* Extended protocol behind a Flush (no Sync): an INSERT executed and its CommandComplete read,
 * then a slow one; KILL: nothing commits (the implicit transaction never got its Sync). */
Test(redteam34, kill_behind_a_flush_commits_nothing)
{
    PGconn *pg = pg_admin("lp_test");
    pg_owned_table(pg, "rt34_flush", "v int");
    start_rt("transaction", 1, NULL, NULL);
    int fd = raw_session(px.port, "carol", "app");
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "", "INSERT INTO rt34_flush VALUES (1)");
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_parse(&b, "", "INSERT INTO rt34_flush SELECT 2 FROM pg_sleep(1.5)");
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'H');
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    usleep(400 * 1000);
    PGconn *adm = proxy_console(&px, "carol", "x");
    admin_ok(adm, "KILL app");
    const char *st = raw_expect_error(fd);
    cr_expect(strcmp(st, "57P01") == 0 || strcmp(st, "") == 0, "carol got %s", st);
    close(fd);
    usleep(2000 * 1000);
    cr_expect_eq(count_rows(pg, "rt34_flush"), 0, "a Sync-less INSERT committed after KILL");
    PGconn *a = proxy_connect_within(&px, "alice", "alice-secret", "app", 5000);
    cr_assert(PQstatus(a) == CONNECTION_OK, "%s", PQerrorMessage(a));
    EXPECT_QUERY_VALUE(a, "SELECT count(*)::text FROM rt34_flush", "0", "alice sees a row");
    PQfinish(a);
    PQfinish(adm);
    PQfinish(pg);
}

/* ---- Databricks tokens, names in another case ---- */

static char tok[64];

/* The workspace knows the token's user as ws_name; the file has an entry `entry` (from 10/8
 * only; the tests connect from 127.0.0.1). */
static void start_tokens(const char *role, const char *ws_name, const char *entry)
{
    snprintf(tok, sizeof(tok), "rt34-token-%d", getpid());
    mockws_start(&mock, role, "600");
    char users[512];
    snprintf(users, sizeof(users), "{\"%s\": {\"userName\": \"%s\", \"groups\": [\"support\"]}}\n",
             tok, ws_name);
    mockws_users(&mock, users);
    setenv("LP_TEST_CLIENT_SECRET", "lp-secret", 1);
    int port = free_port();
    char more[512];
    snprintf(more, sizeof(more), "users:\n  \"%s\": {auth: token, from: [10.0.0.0/8]}\n", entry);
    token_lake_yaml(yaml, sizeof(yaml), port, role, mock.port, more);
    proxy_start_yaml(&px, port, yaml);
}

/* The workspace spells the user "åsa@example.com", the file's entry "Åsa@example.com" (case
 * aside the same name, as "ANA" is "ana": token names are matched ignoring case since round
 * 33). The entry's from: must hold: the login from 127.0.0.1 is refused, or the file is
 * refused. strcasecmp folds ASCII only. */
Test(redteam34, a_non_ascii_case_variant_entry_is_still_held_to_from)
{
    start_tokens("lp_rt34_1", "\xc3\xa5sa@example.com", "\xc3\x85sa@example.com");
    const char *names[] = {"\xc3\xa5sa@example.com", "\xc3\x85sa@example.com"};
    for (int i = 0; i < 2; i++) {
        PGconn *c = token_connect(px.port, names[i], tok, NULL);
        char who[200] = "";
        if (PQstatus(c) == CONNECTION_OK) {
            char *v = query_value(c, "SELECT current_user");
            snprintf(who, sizeof(who), "logged in (server role %s)", v ? v : "?");
            free(v);
        } else {
            snprintf(who, sizeof(who), "%s", PQerrorMessage(c));
        }
        cr_expect_neq(PQstatus(c), CONNECTION_OK,
                      "\"%s\" with the token of workspace user \"åsa@example.com\" from 127.0.0.1 "
                      "(entry \"Åsa@example.com\": from [10.0.0.0/8]): %s",
                      names[i], who);
        PQfinish(c);
    }
}

/* The same with the entry in upper case entirely: ÅSA@EXAMPLE.COM. */
Test(redteam34, an_upper_case_non_ascii_entry_is_still_held_to_from)
{
    start_tokens("lp_rt34_2", "\xc3\xa5sa@example.com", "\xc3\x85SA@EXAMPLE.COM");
    PGconn *c = token_connect(px.port, "\xc3\xa5sa@example.com", tok, NULL);
    cr_expect_neq(PQstatus(c), CONNECTION_OK,
                  "åsa@example.com logged in from 127.0.0.1 past entry ÅSA@EXAMPLE.COM's from:");
    PQfinish(c);
}

/* ---- the configuration file's mode ---- */

static int run_lakeproxy(const char *flag, const char *conf, int timeout_ms)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int dn = open("/dev/null", O_WRONLY);
        dup2(dn, 1);
        dup2(dn, 2);
        if (flag)
            execl(env_need("LP_BIN"), "lakeproxy", flag, "-c", conf, (char *)NULL);
        else
            execl(env_need("LP_BIN"), "lakeproxy", "-c", conf, (char *)NULL);
        _exit(127);
    }
    int status;
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        usleep(20 * 1000);
    }
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    return -1; /* still running: it loaded */
}

/* A configuration reached through a symbolic link to a world-writable file is refused (at
 * start and by --check-config), as the file itself would be. */
Test(redteam34, a_symlink_to_a_world_writable_file_is_refused)
{
    int port = free_port();
    char dir[400], target[500], link[500];
    snprintf(dir, sizeof(dir), "%s/rt34link-%d", env_need("LP_TEST_DIR"), port);
    cr_assert_eq(mkdir(dir, 0755), 0);
    snprintf(target, sizeof(target), "%s/real.yaml", dir);
    snprintf(link, sizeof(link), "%s/lakeproxy.yaml", dir);
    make_yaml(yaml, sizeof(yaml), port, "transaction", 1, NULL, NULL);
    FILE *f = fopen(target, "w");
    cr_assert(f);
    fputs(yaml, f);
    fclose(f);
    cr_assert_eq(chmod(target, 0666), 0);
    cr_assert_eq(symlink(target, link), 0);
    cr_expect_neq(run_lakeproxy("--check-config", link, 5000), 0,
                  "--check-config passed a symlink to a 0666 file");
    int st = run_lakeproxy(NULL, link, 1500);
    cr_expect(st > 0, "lakeproxy started on a symlink to a 0666 file (status %d)", st);
    /* the direct file: refused too (the baseline) */
    cr_expect_neq(run_lakeproxy("--check-config", target, 5000), 0,
                  "--check-config passed a 0666 file");
}

/* A file made world-writable after the start: the next reload is refused and the running
 * configuration kept (a user added by the rewrite cannot log in); made 0640 again, the
 * reload is applied. */
Test(redteam34, a_file_made_world_writable_refuses_the_reload)
{
    start_rt("transaction", 2, NULL, NULL);
    static char n[sizeof(yaml)];
    make_yaml(n, sizeof(n), px.port, "transaction", 2, "  zed: {password: zed-pw}\n", NULL);
    int refused = file_count_lines(px.log, "reload refused");
    FILE *f = fopen(px.conf, "w");
    cr_assert(f);
    fputs(n, f);
    fclose(f);
    cr_assert_eq(chmod(px.conf, 0666), 0);
    proxy_reload(&px);
    cr_expect_eq(file_count_lines(px.log, "reload refused"), refused + 1,
                 "the reload of a 0666 file was not refused");
    char st[6], msg[256];
    cr_expect_not(raw_login(px.port, "zed", "zed-pw", "app", st, msg, sizeof(msg)),
                  "zed, written into a 0666 file, logged in");
    cr_expect(raw_login(px.port, "alice", "alice-secret", "app", st, msg, sizeof(msg)),
              "alice after the refused reload: %s %s", st, msg);
    cr_assert_eq(chmod(px.conf, 0640), 0);
    proxy_reload(&px);
    cr_expect(raw_login(px.port, "zed", "zed-pw", "app", st, msg, sizeof(msg)),
              "zed after the file was made 0640: %s %s", st, msg);
}

/* ---- the shutdown limit with many statements, and over TLS to the server ---- */

/* 24 clients each run an autocommit INSERT when limits.shutdown_timeout_s (1 s) passes: the 24
 * cancels must all go out and take effect in the 200 ms lakeproxy runs on (none commits), and
 * lakeproxy exits 0 promptly. */
static void many_at_the_limit(const char *db, int n_clients)
{
    PGconn *pg = pg_admin("lp_test");
    char table[64];
    snprintf(table, sizeof(table), "rt34_many_%s", db);
    pg_owned_table(pg, table, "v int");
    char sql[200];
    snprintf(sql, sizeof(sql), "GRANT INSERT ON %s TO lp_md5, lp_plain", table);
    pg_exec_ok(pg, sql);
    start_rt("transaction", n_clients, NULL, "limits:\n  shutdown_timeout_s: 1\n");
    PGconn *c[32];
    cr_assert_leq(n_clients, 32);
    snprintf(sql, sizeof(sql), "INSERT INTO %s SELECT 1 FROM pg_sleep(4)", table);
    for (int i = 0; i < n_clients; i++) {
        c[i] = proxy_connect(&px, "alice", "alice-secret", db, NULL);
        cr_assert(PQstatus(c[i]) == CONNECTION_OK, "%s", PQerrorMessage(c[i]));
        cr_assert(PQsendQuery(c[i], sql));
    }
    usleep(300 * 1000);
    double t0 = now_s();
    cr_assert_eq(kill(px.pid, SIGTERM), 0);
    int status = -1;
    for (int i = 0; i < 100 && status < 0; i++)
        status = proxy_wait_exit(&px, 50);
    double took = now_s() - t0;
    if (status >= 0)
        px.pid = 0;
    cr_expect_eq(status, 0, "exit status %d", status);
    cr_expect_lt(took, 1.9, "took %.2f s", took);
    int told = 0;
    for (int i = 0; i < n_clients; i++) {
        struct outcome o;
        outcome_of(c[i], &o);
        told += strcmp(o.state, "57P01") == 0;
        PQfinish(c[i]);
    }
    cr_expect_eq(told, n_clients, "%d of %d clients were told 57P01", told, n_clients);
    usleep(4500 * 1000);
    long n = count_rows(pg, table);
    cr_expect_eq(n, 0, "%ld of %d statements committed after the shutdown limit (%s)", n, n_clients,
                 db);
    PQfinish(pg);
}

Test(redteam34, the_shutdown_limit_cancels_twenty_four_statements)
{
    many_at_the_limit("app", 24);
}

/* app_plain reaches PostgreSQL over TLS (its cancel requests too). */
Test(redteam34, the_shutdown_limit_cancels_over_tls_to_the_server)
{
    many_at_the_limit("app_plain", 6);
}

/* ---- reloads that refuse nobody ---- */

/* Thirty reloads (pool size 1 <-> 2, a user added and removed, tina's list unchanged) while
 * alice runs statements non-stop: none of hers is cancelled or ended. */
Test(redteam34, a_reload_storm_that_refuses_nobody_ends_nothing)
{
    start_rt("transaction", 1, TINA_OPEN, NULL);
    static char a1[sizeof(yaml)], a2[sizeof(yaml)];
    make_yaml(a1, sizeof(a1), px.port, "transaction", 1, TINA_OPEN, NULL);
    make_yaml(a2, sizeof(a2), px.port, "transaction", 2,
              TINA_OPEN "  zed: {password: zed-pw, from: [10.0.0.0/8]}\n", NULL);
    struct loop_arg a = {0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, alice_loop, &a), 0);
    int fd = raw_session(px.port, "tina", "app");
    /* (alice logged in first: a login that spans a reload is failed by design, 08006) */
    for (int i = 0; i < 1000 && a.ok == 0 && a.bad == 0; i++)
        usleep(10 * 1000);
    for (int i = 0; i < 30; i++) {
        raw_query(fd, "SELECT pg_sleep(0.03)");
        reload_now(i % 2 ? a1 : a2);
        int errors = 0, rows = 0;
        cr_expect_eq(raw_count_replies(fd, 1, &errors, &rows), 1, "tina's reply %d", i);
        cr_expect_eq(errors, 0, "tina's statement %d failed", i);
    }
    a.stop = 1;
    pthread_join(t, NULL);
    close(fd);
    cr_expect_eq(a.bad, 0, "alice's statements failed %d times (of %d): %s", a.bad, a.ok + a.bad,
                 a.states);
}

/* ---- a statement that outlives the cancel ---- */

/* At the shutdown limit alice's statement catches query_canceled and goes on: lakeproxy still
 * exits 0 promptly (it does not wait for it), and alice was told 57P01 with the cancel's
 * outcome unknown. */
Test(redteam34, the_shutdown_limit_with_a_statement_that_survives_the_cancel)
{
    PGconn *pg = pg_admin("lp_test");
    pg_exec_ok(pg, "CREATE OR REPLACE FUNCTION rt34_stubborn() RETURNS int LANGUAGE plpgsql AS "
                   "$$ BEGIN BEGIN PERFORM pg_sleep(3); EXCEPTION WHEN query_canceled THEN "
                   "PERFORM pg_sleep(1); END; RETURN 1; END $$");
    start_rt("transaction", 1, NULL, "limits:\n  shutdown_timeout_s: 1\n");
    PGconn *a = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(a) == CONNECTION_OK);
    cr_assert(PQsendQuery(a, "SELECT rt34_stubborn()"));
    usleep(200 * 1000);
    double t0 = now_s();
    cr_assert_eq(kill(px.pid, SIGTERM), 0);
    int status = -1;
    for (int i = 0; i < 100 && status < 0; i++)
        status = proxy_wait_exit(&px, 50);
    double took = now_s() - t0;
    if (status >= 0)
        px.pid = 0;
    cr_expect_eq(status, 0, "exit status %d", status);
    cr_expect_lt(took, 1.9, "took %.2f s", took);
    struct outcome o;
    outcome_of(a, &o);
    cr_expect_str_eq(o.state, "57P01", "%s", o.msg);
    cr_expect(strstr(o.msg, "whether it took"), "the message claims to know the outcome: %s",
              o.msg);
    PQfinish(a);
    PQfinish(pg);
}

/* ---- RLS tenants sharing the one server ---- */

struct tenant_loop {
    volatile int stop;
    int ok, bad;
    char seen[512];
};

/* t2 reads its rows non-stop: each answer must be tenant 2's 100 rows. */
static void *t2_loop(void *p)
{
    struct tenant_loop *a = p;
    PGconn *c = proxy_connect(&px, "t2", "pw", "app", NULL);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(a->seen, sizeof(a->seen), "login: %s", PQerrorMessage(c));
        a->bad++;
        PQfinish(c);
        return NULL;
    }
    while (!a->stop) {
        PGresult *r = PQexec(c, "SELECT min(tenant_id) || '-' || max(tenant_id) || '-' || count(*) "
                                "FROM rls_docs, pg_sleep(0.004)");
        const char *v =
            PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : NULL;
        if (v && strcmp(v, "2-2-100") == 0) {
            a->ok++;
        } else {
            a->bad++;
            const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            if (strlen(a->seen) < 400) {
                strcat(a->seen, v ? v : st ? st : "?");
                strcat(a->seen, " ");
            }
            if (PQstatus(c) != CONNECTION_OK) {
                PQclear(r);
                break;
            }
        }
        PQclear(r);
    }
    PQfinish(c);
    return NULL;
}

static void rls_yaml(char *out, size_t outsz, int port, const char *t1_from)
{
    char extra[4096];
    snprintf(extra, sizeof(extra),
             "  t1: {password: pw, attributes: {tenant_id: \"1\"}, from: [%s]}\n"
             "  t2: {password: pw, attributes: {tenant_id: \"2\"}}\n"
             "rls:\n  prefix: app\n  databases: [app]\n  switch_role: true\n"
             "  default_role: lp_tenant\n  attributes: {tenant_id: attribute}\n",
             t1_from);
    proxy_default_yaml(out, outsz, port, "transaction", 1, 20000, extra);
}

/* Transaction pooling, one server, tenants t1 and t2: t1 is ended by a reload (its address
 * taken away) at moments around its statement's end, some rounds with its own cancel on the
 * way, while t2 reads non-stop: t2 always gets its own 100 rows, never a cancel or t1's rows. */
Test(redteam34, rls_tenants_the_cancel_never_reaches_the_other_tenant, .timeout = 240)
{
    int port = free_port();
    static char open[sizeof(yaml)], shut[sizeof(yaml)];
    rls_yaml(open, sizeof(open), port, "127.0.0.0/8");
    rls_yaml(shut, sizeof(shut), port, "10.0.0.0/8");
    proxy_start_yaml(&px, port, open);
    struct tenant_loop a = {0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, t2_loop, &a), 0);
    int terminated = 0;
    for (int round = 0; round < 20; round++) {
        PGconn *e = proxy_connect_within(&px, "t1", "pw", "app", 5000);
        cr_assert(PQstatus(e) == CONNECTION_OK, "%s", PQerrorMessage(e));
        EXPECT_QUERY_VALUE(e, "SELECT count(*)::text FROM rls_docs", "100", "t1's rows");
        cr_assert(PQsendQuery(e, "SELECT count(*) FROM rls_docs, pg_sleep(0.1)"));
        usleep((useconds_t)(70 + (round % 10) * 6) * 1000);
        if (round % 2) {
            PGcancel *cn = PQgetCancel(e);
            char err[256];
            PQcancel(cn, err, sizeof(err));
            PQfreeCancel(cn);
        }
        reload_now(shut);
        struct outcome o;
        outcome_of(e, &o);
        if (strcmp(o.state, "57P01") == 0 || strcmp(o.state, "CLOSD") == 0)
            terminated++;
        PQfinish(e);
        reload_now(open);
    }
    usleep(300 * 1000);
    a.stop = 1;
    pthread_join(t, NULL);
    cr_expect_eq(a.bad, 0, "t2's reads went wrong %d times (of %d): %s", a.bad, a.ok + a.bad,
                 a.seen);
    cr_expect_gt(a.ok, 50, "t2 ran only %d statements", a.ok);
    cr_expect_gt(terminated, 0, "t1 was never terminated mid-statement");
}

/* ---- a configuration file in a directory every user may change ---- */

/* The file is 0640 but its directory is 0777 (no sticky bit): any local user may rename it
 * away and put their own file in its place (who may log in, RLS, masking), which the next
 * SIGHUP loads. lakeproxy must refuse, or at least warn, as it does for the file itself. */
Test(redteam34, a_configuration_in_a_world_writable_directory_is_refused_or_warned)
{
    int port = free_port();
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/rt34dir-%d", env_need("LP_TEST_DIR"), port);
    cr_assert_eq(mkdir(dir, 0755), 0);
    cr_assert_eq(chmod(dir, 0777), 0);
    make_yaml(yaml, sizeof(yaml), port, "transaction", 1, NULL, NULL);
    char conf[500], log[500];
    snprintf(conf, sizeof(conf), "%s/lakeproxy.yaml", dir);
    snprintf(log, sizeof(log), "%s/lakeproxy.log", dir);
    FILE *f = fopen(conf, "w");
    cr_assert(f);
    fputs(yaml, f);
    fclose(f);
    cr_assert_eq(chmod(conf, 0640), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(env_need("LP_BIN"), "lakeproxy", "-c", conf, (char *)NULL);
        _exit(127);
    }
    int status = -1;
    bool exited = false;
    for (int i = 0; i < 60; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            exited = true;
            break;
        }
        usleep(50 * 1000);
    }
    if (!exited) {
        kill(pid, SIGTERM);
        waitpid(pid, &status, 0);
    }
    bool refused = exited && WIFEXITED(status) && WEXITSTATUS(status) != 0;
    bool warned = file_count_lines(log, dir) > 0 &&
                  (file_count_lines(log, "director") > 0 || file_count_lines(log, "0777") > 0);
    cr_expect(refused || warned,
              "lakeproxy started on %s (0640) in a 0777 directory without a word: any user may "
              "replace the file",
              conf);
}

/* ---- KILL storms ---- */

struct storm_arg {
    volatile int stop;
    int ok, other;
    char states[256];
};

/* A client that runs INSERTs and logs in again whenever it is ended. */
static void *storm_client(void *p)
{
    struct storm_arg *a = p;
    PGconn *c = NULL;
    while (!a->stop) {
        if (!c || PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
            continue;
        }
        PGresult *r = PQexec(c, "INSERT INTO rt34_storm SELECT 1 FROM pg_sleep(0.02) RETURNING 1");
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            a->ok++;
        else if (st && strcmp(st, "57P01") != 0 && strlen(a->states) < 200) {
            a->other++;
            strcat(a->states, st);
            strcat(a->states, " ");
        }
        PQclear(r);
    }
    PQfinish(c);
    return NULL;
}

/* Six clients run INSERTs non-stop (pool of 3, transaction pooling) while KILL app comes 15
 * times, 80 ms apart: they are only ever ended with 57P01 (no other error: no 57014 reaching
 * a client still connected, no 53300), each INSERT a client saw succeed is there, lakeproxy
 * serves a new client at once afterwards, and SHOW POOLS settles to no active server or
 * client. */
Test(redteam34, a_kill_storm_leaves_the_pool_sane)
{
    PGconn *pg = pg_admin("lp_test");
    pg_owned_table(pg, "rt34_storm", "v int");
    start_rt("transaction", 3, NULL, NULL);
    struct storm_arg a[6];
    pthread_t t[6];
    memset(a, 0, sizeof(a));
    for (int i = 0; i < 6; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, storm_client, &a[i]), 0);
    usleep(300 * 1000);
    PGconn *adm = proxy_console(&px, "carol", "x");
    for (int i = 0; i < 15; i++) {
        admin_ok(adm, "KILL app");
        usleep(80 * 1000);
    }
    usleep(300 * 1000);
    int ok = 0, other = 0;
    char states[1600] = "";
    for (int i = 0; i < 6; i++) {
        a[i].stop = 1;
        pthread_join(t[i], NULL);
        ok += a[i].ok;
        other += a[i].other;
        strcat(states, a[i].states);
    }
    cr_expect_eq(other, 0, "errors other than 57P01: %s", states);
    long rows = count_rows(pg, "rt34_storm");
    cr_expect_geq(rows, ok, "%d INSERTs returned their row but only %ld are there", ok, rows);
    double t0 = now_s();
    PGconn *b = proxy_connect_within(&px, "alice", "alice-secret", "app", 5000);
    cr_assert(PQstatus(b) == CONNECTION_OK, "%s", PQerrorMessage(b));
    EXPECT_QUERY_VALUE(b, "SELECT 'served'", "served", "after the storm");
    cr_expect_lt(now_s() - t0, 2.0, "a new client waited %.2f s", now_s() - t0);
    PQfinish(b);
    usleep(500 * 1000);
    PGresult *r = admin_show(adm, "SHOW POOLS");
    int col_ca = PQfnumber(r, "cl_active"), col_cw = PQfnumber(r, "cl_waiting"),
        col_sa = PQfnumber(r, "sv_active");
    for (int i = 0; i < PQntuples(r); i++) {
        if (strcmp(PQgetvalue(r, i, 0), "app") != 0)
            continue;
        cr_expect_str_eq(PQgetvalue(r, i, col_ca), "0", "cl_active after the storm");
        cr_expect_str_eq(PQgetvalue(r, i, col_cw), "0", "cl_waiting after the storm");
        cr_expect_str_eq(PQgetvalue(r, i, col_sa), "0", "sv_active after the storm");
    }
    PQclear(r);
    PQfinish(adm);
    PQfinish(pg);
}

/* ---- the console's SHUTDOWN ---- */

/* SHUTDOWN from the console with a statement running and limits.shutdown_timeout_s: 1: as
 * SIGTERM, the client is told 57P01 naming the limit, its INSERT does not commit, lakeproxy
 * exits 0 promptly. */
Test(redteam34, console_shutdown_at_the_limit_cancels_and_exits_0)
{
    PGconn *pg = pg_admin("lp_test");
    pg_owned_table(pg, "rt34_console_shutdown", "v int");
    start_rt("transaction", 1, NULL, "limits:\n  shutdown_timeout_s: 1\n");
    PGconn *a = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(a) == CONNECTION_OK);
    cr_assert(PQsendQuery(a, "INSERT INTO rt34_console_shutdown SELECT 1 FROM pg_sleep(3)"));
    usleep(200 * 1000);
    PGconn *adm = proxy_console(&px, "carol", "x");
    double t0 = now_s();
    PGresult *r = PQexec(adm, "SHUTDOWN");
    PQclear(r);
    struct outcome o;
    outcome_of(a, &o);
    cr_expect_str_eq(o.state, "57P01", "%s", o.msg);
    int status = -1;
    for (int i = 0; i < 100 && status < 0; i++)
        status = proxy_wait_exit(&px, 50);
    double took = now_s() - t0;
    if (status >= 0)
        px.pid = 0;
    cr_expect_eq(status, 0, "exit status %d", status);
    cr_expect_lt(took, 1.9, "took %.2f s", took);
    PQfinish(a);
    PQfinish(adm);
    usleep(3500 * 1000);
    cr_expect_eq(count_rows(pg, "rt34_console_shutdown"), 0, "the INSERT committed");
    PQfinish(pg);
}
