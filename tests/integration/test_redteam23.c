/* test_redteam23.c: red-team round 23 against CANCEL REQUESTS UNDER POOLING: late cancels
 * that reach a server after it passed to another client, cancels racing the end of their
 * query, bursts of cancels for one query, forty clients cancelling their own statements at
 * random over two servers, forged and malformed CancelRequests (wrong secret, wrong length,
 * behind a partial startup packet, floods of thousands), the key a client is shown (the
 * server's real pid would be a leak), cancels over TLS (SSLRequest first), cancels of a client
 * still waiting in the pool's queue (that leaves, or whose query ends before the deferred
 * cancel arrives), cancels inside an extended-protocol pipeline, after a reload lowering
 * pool.size, after the client disconnected, and with lakeproxy at limits.max_clients. Each
 * test asserts the SAFE behaviour (a cancel only ever cancels the statement its sender meant,
 * cannot be forged, never crashes, hangs or leaks): a failing test is a finding.
 *
 * Findings (all three fixed: a client's next statement waits while a cancel is on its way to
 * its server, client.c active_inspect / cancel_wait, lifted by server.c cancel_settled; a few
 * connections past max_clients are taken for cancel requests only, client.c client_accept):
 * - a_cancel_deferred_for_a_waiting_query_never_hits_the_clients_next_query: a client queued
 *   behind a busy pool (transaction pooling, pool.size 1) cancels its short query. PQcancel
 *   returns at once: client.c client_route_cancel only sets cancel_wanted and returns false,
 *   so handle_startup_packet closes the cancel connection before anything is sent. When the
 *   query gets the server, client_server_ready pumps it and client_send_wanted_cancel sends
 *   the cancel (requester 0) behind it; the query is answered before the cancel lands, the
 *   server stays linked to the client (cancels_pending > 0: client_transaction_done keeps it)
 *   and the client's NEXT query, sent as soon as the first answer came, is relayed to that
 *   backend and cancelled: 57014 on 8 of 8 rounds (0 of the 8 queued queries cancelled). On
 *   PostgreSQL a cancel PQcancel has returned from cannot hit a later query; the README says
 *   "PQcancel returning means it has arrived" and that the kept cancel cancels "that query".
 *   Only ever the same client's statement (no bystander was hit), but any statement: a
 *   COMMIT or an INSERT behind it fails.
 * - forty_clients_cancelling_their_own_queries_over_two_servers (intermittent, about 3 runs in
 *   4): the same cause under load. A canceller's query that it did NOT cancel gets 57014 right
 *   after one it did cancel (queued, deferred, ended 57014): PostgreSQL 15's cancel signals
 *   the backend twice (signal_child: kill(pid) and kill(-pid)); with PQcancel already
 *   returned, the client's next query reaches the backend between the two. Twenty clients
 *   that never cancel were never hit (no cross-client cancel).
 * - a_cancel_is_taken_when_lakeproxy_is_at_max_clients: at limits.max_clients the cancel
 *   connection is refused like a login (client.c client_accept, before the packet is read:
 *   cancel connections count towards max_clients); libpq's PQcancel ignores the reply and
 *   returns 1 with no error, so the user believes it worked while the query runs on (3.8 s of
 *   4). PostgreSQL takes cancel requests whatever its max_connections; here anyone who can fill
 *   the slots (connections silent until limits.login_timeout_s) also stops every cancel.
 *
 * - nothing_behind_a_cancel_request_is_read (added in review, fixed): a StartupMessage sent
 *   behind a routed CancelRequest in the same write was read and answered with an
 *   authentication request (client.c on_startup_data went on while step stayed CS_STARTUP);
 *   the connection now takes one request, as PostgreSQL's (CS_CANCEL).
 *
 * Held: a late cancel of a client whose query is over never cancels the next client's query
 * on that very backend (three sent); cancels racing the end of their query (30 rounds) never
 * hit the client queued behind, nor the canceller's next query once PQcancel returned; 16
 * simultaneous cancels of one query: each PQcancel returns, the query ends 57014 once, the
 * queued client is untouched, the pool serves on (no pending count leaked); 40 clients over
 * 2 servers: no bystander ever got 57014; the pid a client sees is not its backend's and not
 * another client's; 5000 forged CancelRequests (victim's pid with random secrets, random
 * pids) in 1-2 s cancel nothing and a bystander's queries stay under 0.2 s; CancelRequests
 * with the right key but 20 or 12 bytes long, inside a startup packet, secret off by one,
 * pid/secret swapped or an extra pid bit cancel nothing and are closed at once (the
 * well-formed one then cancels); a cancel over TLS after SSLRequest cancels (57014, < 2 s); a
 * waiting client that cancels and leaves, or whose deferred cancel is in flight when it
 * leaves, never gets the next client cancelled; a cancel in a pipeline of two Syncs fails
 * only the running statement (transaction pooling with a client queued behind, and session
 * pooling); cancels after a reload lowering pool.size reach both running queries; a departed
 * client's key cancels nothing of the client now on its backend; a cancel after its backend
 * was terminated hangs nothing and hits nobody. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "proto.h"
#include "rawproto.h"

TestSuite(redteam23, .timeout = 60);

#define ADMIN "admin:\n  users: [alice]\n"
#include "poolfix.h"

/* PQcancel with cn: the seconds it took (it returns once lakeproxy closed the connection). */
static double cancel_with(PGcancel *cn)
{
    char err[256];
    double t0 = now_s();
    PQcancel(cn, err, sizeof(err));
    return now_s() - t0;
}

static double cancel_of(PGconn *c)
{
    PGcancel *cn = PQgetCancel(c);
    double t = cancel_with(cn);
    PQfreeCancel(cn);
    return t;
}

/* ---- raw sessions that know their BackendKeyData ---- */

/* A raw session of carol (trust) to db, with the pid and key lakeproxy gave it. */
static void raw_keyed(struct rawsess *s, const char *db)
{
    cr_assert(raw_keyed_try(px.port, s, db), "raw login of carol failed");
}

/* Sends len bytes on a new connection to lakeproxy and waits for it to close it: seconds it
 * took, -1 when it was still open after 5 s. */
static double raw_bytes_then_eof(const void *pkt, size_t len)
{
    int fd = raw_connect(px.port);
    cr_assert(fd >= 0);
    double t0 = now_s(), took = -1;
    if (send(fd, pkt, len, MSG_NOSIGNAL) != (ssize_t)len) {
        close(fd);
        return now_s() - t0;
    }
    struct pollfd pf = {fd, POLLIN, 0};
    char junk[512];
    while (now_s() - t0 < 5) {
        if (poll(&pf, 1, 100) > 0) {
            ssize_t n = recv(fd, junk, sizeof(junk), 0);
            if (n <= 0) {
                took = now_s() - t0;
                break;
            }
        }
    }
    close(fd);
    return took;
}

static double raw_cancel(uint32_t pid, uint32_t key)
{
    struct buf b;
    buf_init(&b);
    proto_cancel_request(&b, pid, key);
    double t = raw_bytes_then_eof(b.data, b.len);
    buf_free(&b);
    return t;
}

/* ---- 1. late cancels and races with the end of the query ---- */

/* A's query is over and its server went back to the pool: B's long query now runs on that
 * very backend. A's cancel (three of them) must cancel nothing. */
Test(redteam23, late_cancel_of_an_idle_client_spares_the_next_clients_query, .init = start_txn1,
     .fini = stop_proxy)
{
    PGconn *a = alice(), *b = alice();
    char *apid = query_value(a, "SELECT pg_backend_pid()::text");
    PGcancel *ca = PQgetCancel(a);
    cr_assert(PQsendQuery(b, "SELECT pg_backend_pid()::text, pg_sleep(0.8)"));
    usleep(250 * 1000);
    for (int i = 0; i < 3; i++) {
        double t = cancel_with(ca);
        cr_expect_lt(t, 1.0, "A's cancel hung %.2f s", t);
    }
    struct outcome o;
    outcome_of(b, &o);
    cr_expect_str_eq(o.state, "", "A's late cancel hit B's query: %s", o.msg);
    cr_expect_str_eq(o.value, apid, "B ran on A's former backend (the attack's premise)");
    EXPECT_QUERY_VALUE(a, "SELECT 'a goes on'", "a goes on", "A goes on");
    PQfreeCancel(ca);
    free(apid);
    PQfinish(a);
    PQfinish(b);
}

/* A's short queries finish while its cancel is on its way; B queues right behind each one on
 * the only server. B never sees 57014, and A's own next query is never hit either (PQcancel
 * returned: the cancel has reached PostgreSQL). */
Test(redteam23, cancels_racing_the_end_of_their_query_never_hit_the_next_client, .init = start_txn1,
     .fini = stop_proxy)
{
    PGconn *a = alice(), *b = alice();
    int b_hit = 0, a_next_hit = 0, a_cancelled = 0;
    char first[256] = "";
    for (int i = 0; i < 30; i++) {
        cr_assert(PQsendQuery(a, "SELECT pg_sleep(0.02)"));
        cr_assert(PQsendQuery(b, "SELECT 'b', pg_sleep(0.03)"));
        usleep((useconds_t)(i % 6) * 8000);
        cancel_of(a);
        struct outcome oa, ob;
        outcome_of(a, &oa);
        if (strcmp(oa.state, "57014") == 0)
            a_cancelled++;
        cr_assert(PQsendQuery(a, "SELECT 'a next'")); /* after PQcancel returned */
        outcome_of(b, &ob);
        if (ob.state[0]) {
            b_hit++;
            snprintf(first, sizeof(first), "%s %.200s", ob.state, ob.msg);
        }
        outcome_of(a, &oa);
        if (oa.state[0])
            a_next_hit++;
    }
    fprintf(stderr, "redteam23 race: %d of A's 30 queries cancelled\n", a_cancelled);
    cr_expect_eq(b_hit, 0, "A's cancels hit %d of B's queries (%s)", b_hit, first);
    cr_expect_eq(a_next_hit, 0, "A's cancel hit its next query %d times", a_next_hit);
    PQfinish(a);
    PQfinish(b);
}

struct burst {
    PGcancel *cn;
    double took;
};

static void *burst_main(void *arg)
{
    struct burst *b = arg;
    b->took = cancel_with(b->cn);
    return NULL;
}

/* Sixteen cancels of one query at once (one server, a client queued behind): one cancel goes,
 * every PQcancel returns, the query ends 57014, the queued client is not hit, and the server
 * serves again (no cancel left counted as pending). */
Test(redteam23, a_burst_of_cancels_of_one_query_cancels_it_once_and_leaks_nothing,
     .init = start_txn1, .fini = stop_proxy)
{
    enum { N = 16 };
    PGconn *a = alice(), *b = alice();
    free(query_value(a, "SELECT 1"));
    cr_assert(PQsendQuery(a, "SELECT pg_sleep(5)"));
    usleep(200 * 1000);
    cr_assert(PQsendQuery(b, "SELECT 'b', pg_sleep(0.3)"));
    PGcancel *cn = PQgetCancel(a);
    struct burst bs[N];
    pthread_t th[N];
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        bs[i] = (struct burst){.cn = cn};
        pthread_create(&th[i], NULL, burst_main, &bs[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        cr_expect_lt(bs[i].took, 2.0, "a PQcancel hung %.2f s", bs[i].took);
    }
    struct outcome o;
    outcome_of(a, &o);
    cr_expect_str_eq(o.state, "57014", "A's query was not cancelled: %s", o.msg);
    cr_expect_lt(now_s() - t0, 3.0, "A's query ran on");
    outcome_of(b, &o);
    cr_expect_str_eq(o.state, "", "the burst hit B: %s", o.msg);
    cr_expect_str_eq(o.value, "b");
    for (int i = 0; i < 5; i++) {
        EXPECT_QUERY_VALUE(a, "SELECT 'a again'", "a again", "A after the burst");
        EXPECT_QUERY_VALUE(b, "SELECT 'b again'", "b again", "B after the burst");
    }
    PQfreeCancel(cn);
    PQfinish(a);
    PQfinish(b);
}

/* ---- 2. many clients cancelling their own statements over few servers ---- */

struct canceller {
    int id, iters;
    bool never_cancels; /* a bystander: any 57014 it gets is another client's cancel */
    int own_cancelled, stray, other_errors, cancels_sent;
    char first[256];
};

static void *canceller_main(void *arg)
{
    struct canceller *w = arg;
    unsigned seed = (unsigned)w->id * 7919u + 17u;
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    if (PQstatus(c) != CONNECTION_OK) {
        w->other_errors++;
        snprintf(w->first, sizeof(w->first), "login: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    bool prev_cancel = false;
    char prev_state[6] = "";
    for (int i = 0; i < w->iters; i++) {
        char sql[128];
        int ms = 20 + (int)(rand_r(&seed) % 80);
        bool cancel = !w->never_cancels && rand_r(&seed) % 3 != 0;
        snprintf(sql, sizeof(sql), "SELECT %d, pg_sleep(%d / 1000.0)", w->id, ms);
        if (!PQsendQuery(c, sql)) {
            w->other_errors++;
            break;
        }
        if (cancel) {
            usleep((useconds_t)(rand_r(&seed) % 90) * 1000);
            cancel_of(c);
            w->cancels_sent++;
        }
        struct outcome o;
        outcome_of(c, &o);
        if (strcmp(o.state, "57014") == 0) {
            if (cancel)
                w->own_cancelled++;
            else {
                w->stray++;
                snprintf(w->first, sizeof(w->first),
                         "client %d%s, iteration %d (the one before: %s, ended \"%s\"): %.100s",
                         w->id, w->never_cancels ? " (never cancels)" : "", i,
                         prev_cancel ? "cancelled by it" : "not cancelled", prev_state, o.msg);
            }
        } else if (o.state[0]) {
            w->other_errors++;
            snprintf(w->first, sizeof(w->first), "iteration %d: %s %.150s", i, o.state, o.msg);
        } else if (atoi(o.value) != w->id) {
            w->other_errors++;
            snprintf(w->first, sizeof(w->first), "iteration %d: got %s", i, o.value);
        }
        prev_cancel = cancel;
        snprintf(prev_state, sizeof(prev_state), "%s", o.state);
    }
    PQfinish(c);
    return NULL;
}

/* Forty clients, two servers: twenty cancel two thirds of their own pg_sleeps at a random
 * moment (queued or running), twenty never cancel anything. A 57014 only ever comes to a
 * query whose own client cancelled it: never to a bystander (another client's cancel), nor
 * to a canceller's query it did not cancel. */
Test(redteam23, forty_clients_cancelling_their_own_queries_over_two_servers, .init = start_txn2,
     .fini = stop_proxy)
{
    enum { N = 40 };
    struct canceller w[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct canceller){.id = i + 1, .iters = 5, .never_cancels = i % 2 == 1};
        pthread_create(&th[i], NULL, canceller_main, &w[i]);
    }
    int own = 0, stray = 0, cross = 0, other = 0, sent = 0;
    const char *first = NULL, *first_cross = NULL;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        own += w[i].own_cancelled;
        sent += w[i].cancels_sent;
        if (w[i].never_cancels) {
            cross += w[i].stray;
            if (w[i].stray && !first_cross)
                first_cross = w[i].first;
        } else {
            stray += w[i].stray;
        }
        other += w[i].other_errors;
        if ((w[i].stray || w[i].other_errors) && !first)
            first = w[i].first;
    }
    fprintf(stderr,
            "redteam23 forty: %d cancels sent, %d own queries cancelled, %d stray on "
            "cancellers, %d on bystanders\n",
            sent, own, stray, cross);
    cr_expect_gt(own, 0, "no cancel took effect at all");
    cr_expect_eq(cross, 0, "%d queries of clients that never cancel got 57014 (%s)", cross,
                 first_cross ? first_cross : "");
    cr_expect_eq(stray, 0, "%d queries got 57014 that their client never cancelled (%s)", stray,
                 first ? first : "");
    cr_expect_eq(other, 0, "%d other failures (%s)", other, first ? first : "");
}

/* ---- 3. forged and malformed cancel requests ---- */

struct flood {
    uint32_t pid;
    int n, refused;
    double took;
};

static void *flood_main(void *arg)
{
    struct flood *f = arg;
    unsigned seed = 2323;
    double t0 = now_s();
    for (int i = 0; i < f->n; i++) {
        int fd = raw_connect(px.port);
        if (fd < 0) {
            f->refused++;
            continue;
        }
        struct buf b;
        buf_init(&b);
        uint32_t pid = i % 2 ? f->pid : ((uint32_t)rand_r(&seed) << 1) ^ (uint32_t)rand_r(&seed);
        uint32_t key = ((uint32_t)rand_r(&seed) << 16) ^ (uint32_t)rand_r(&seed);
        proto_cancel_request(&b, pid, key);
        raw_send(fd, &b);
        buf_free(&b);
        close(fd);
    }
    f->took = now_s() - t0;
    return NULL;
}

/* The pid a client sees is lakeproxy's, not its backend's (no leak), and is not another
 * client's. 5000 CancelRequests with the victim's pid and random secrets, or random pids,
 * sent as fast as possible: the victim's sleep finishes, another client's queries are served
 * without stalling, lakeproxy keeps running. */
Test(redteam23, forged_cancel_flood_cancels_nothing_and_stalls_nobody, .init = start_txn2,
     .fini = stop_proxy)
{
    PGconn *v = alice(), *c = alice();
    char *real = query_value(v, "SELECT pg_backend_pid()::text");
    cr_expect_neq(PQbackendPID(v), atoi(real), "the client is shown its backend's real pid");
    cr_expect_neq(PQbackendPID(v), PQbackendPID(c), "two clients share a pid");
    free(real);
    cr_assert(PQsendQuery(v, "SELECT 'victim', pg_sleep(2.5)"));
    EXPECT_QUERY_VALUE(c, "SELECT 'warm'", "warm", "the bystander's own server, opened");
    struct flood f = {.pid = (uint32_t)PQbackendPID(v), .n = 5000};
    pthread_t th;
    pthread_create(&th, NULL, flood_main, &f);
    double worst = 0, end = now_s() + 1.0;
    int served = 0;
    while (now_s() < end) {
        double t0 = now_s();
        EXPECT_QUERY_VALUE(c, "SELECT 'c'", "c", "the bystander during the flood");
        if (now_s() - t0 > worst)
            worst = now_s() - t0;
        served++;
        usleep(10 * 1000);
    }
    pthread_join(th, NULL);
    fprintf(stderr,
            "redteam23 flood: %d forged cancels in %.2f s, bystander %d queries, worst %.3f s\n",
            f.n, f.took, served, worst);
    cr_expect_lt(worst, 1.0, "the flood stalled another client %.3f s", worst);
    struct outcome o;
    outcome_of(v, &o);
    cr_expect_str_eq(o.state, "", "a forged cancel cancelled the victim: %s", o.msg);
    cr_expect_str_eq(o.value, "victim");
    EXPECT_QUERY_VALUE(c, "SELECT 'after'", "after", "lakeproxy runs on after the flood");
    PQfinish(v);
    PQfinish(c);
}

/* The victim's own pid and key, sent in malformed ways (a CancelRequest 4 bytes too long or
 * too short, inside a startup packet, with the secret off by one, pid and secret swapped):
 * nothing is cancelled and each connection is closed promptly. Then the well-formed request
 * does cancel (so the key was right). */
Test(redteam23, malformed_cancels_with_the_right_key_cancel_nothing, .init = start_txn2,
     .fini = stop_proxy)
{
    struct rawsess v;
    raw_keyed(&v, "app");
    raw_query(v.fd, "SELECT 'victim', pg_sleep(1.2)");
    usleep(150 * 1000);
    unsigned char pkt[64];
    uint32_t w[6];
    /* 20 bytes: a valid request plus 4 more */
    w[0] = htonl(20), w[1] = htonl(80877102), w[2] = htonl(v.pid), w[3] = htonl(v.key), w[4] = 0;
    memcpy(pkt, w, 20);
    double t = raw_bytes_then_eof(pkt, 20);
    cr_expect(t >= 0 && t < 1.0, "20-byte CancelRequest: closed after %.2f s", t);
    /* 12 bytes: the key cut off */
    w[0] = htonl(12);
    memcpy(pkt, w, 12);
    t = raw_bytes_then_eof(pkt, 12);
    cr_expect(t >= 0 && t < 1.0, "12-byte CancelRequest: closed after %.2f s", t);
    /* a startup packet of 24 bytes whose body is a whole CancelRequest */
    w[0] = htonl(24), w[1] = htonl(196608), w[2] = htonl(16), w[3] = htonl(80877102),
    w[4] = htonl(v.pid), w[5] = htonl(v.key);
    memcpy(pkt, w, 24);
    t = raw_bytes_then_eof(pkt, 24);
    cr_expect(t >= 0 && t < 1.0, "CancelRequest inside a startup packet: closed after %.2f s", t);
    t = raw_cancel(v.pid, v.key + 1);
    cr_expect(t >= 0 && t < 1.0, "secret off by one: closed after %.2f s", t);
    t = raw_cancel(v.key, v.pid);
    cr_expect(t >= 0 && t < 1.0, "pid and secret swapped: closed after %.2f s", t);
    t = raw_cancel(v.pid ^ 0x40000000u, v.key);
    cr_expect(t >= 0 && t < 1.0, "pid off in a bit lakeproxy never sets: closed after %.2f s", t);
    char states[128], rows[128];
    cr_expect(raw_replies(v.fd, 1, states, sizeof(states), rows, sizeof(rows), 5000));
    cr_expect_str_eq(states, "", "a malformed cancel cancelled the query");
    cr_expect_str_eq(rows, "victim|");
    /* the control: the right request cancels */
    raw_query(v.fd, "SELECT 'again', pg_sleep(5)");
    usleep(150 * 1000);
    double t0 = now_s();
    t = raw_cancel(v.pid, v.key);
    cr_expect(t >= 0 && t < 2.0, "the right cancel: closed after %.2f s", t);
    cr_expect(raw_replies(v.fd, 1, states, sizeof(states), rows, sizeof(rows), 5000));
    cr_expect_str_eq(states, "57014|", "the well-formed cancel did not cancel");
    cr_expect_lt(now_s() - t0, 2.0);
    close(v.fd);
}

/* One request per connection, as on PostgreSQL: a StartupMessage sent right behind a
 * CancelRequest, in the same write, is never read (no authentication request comes back, no
 * login on a connection lakeproxy counts as a cancel's), and the cancel still cancels. */
Test(redteam23, nothing_behind_a_cancel_request_is_read, .init = start_txn2, .fini = stop_proxy)
{
    struct rawsess v;
    raw_keyed(&v, "app");
    raw_query(v.fd, "SELECT 'victim', pg_sleep(5)");
    usleep(150 * 1000);
    struct buf b;
    buf_init(&b);
    proto_cancel_request(&b, v.pid, v.key);
    struct startup_param params[] = {{"user", "alice"}, {"database", "app"}};
    proto_startup(&b, params, 2);
    int fd = raw_connect(px.port);
    cr_assert(fd >= 0);
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    unsigned char got[512];
    size_t n = 0;
    struct pollfd pf = {fd, POLLIN, 0};
    for (double t0 = now_s(); now_s() - t0 < 5 && poll(&pf, 1, 100) >= 0;) {
        ssize_t k = pf.revents ? recv(fd, got + n, sizeof(got) - n, 0) : 0;
        if (pf.revents && k <= 0)
            break;
        n += k > 0 ? (size_t)k : 0;
    }
    close(fd);
    cr_expect_eq(n, 0, "the StartupMessage behind the cancel was answered (%zu bytes, '%c')", n,
                 n ? got[0] : '-');
    char states[128], rows[128];
    cr_expect(raw_replies(v.fd, 1, states, sizeof(states), rows, sizeof(rows), 5000));
    cr_expect_str_eq(states, "57014|", "the cancel did not cancel");
    close(v.fd);
}

/* ---- 4. a cancel over TLS: SSLRequest first, as libpq does with sslmode since 17 ---- */

Test(redteam23, a_cancel_sent_over_tls_cancels_its_query, .init = start_txn2, .fini = stop_proxy)
{
    struct rawsess v;
    raw_keyed(&v, "app");
    raw_query(v.fd, "SELECT pg_sleep(5)");
    usleep(150 * 1000);
    int fd = raw_connect(px.port);
    cr_assert(fd >= 0);
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct buf b;
    buf_init(&b);
    proto_ssl_request(&b);
    cr_assert(raw_send(fd, &b));
    char s = 0;
    cr_assert_eq(recv(fd, &s, 1, 0), 1);
    cr_assert_eq(s, 'S', "lakeproxy declined TLS");
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    cr_assert_eq(SSL_connect(ssl), 1, "TLS handshake");
    proto_cancel_request(&b, v.pid, v.key);
    double t0 = now_s();
    cr_assert_eq(SSL_write(ssl, b.data, (int)b.len), (int)b.len);
    buf_free(&b);
    char junk[64];
    int n = SSL_read(ssl, junk, sizeof(junk)); /* lakeproxy closes once it is delivered */
    double took = now_s() - t0;
    cr_expect_leq(n, 0, "lakeproxy answered a cancel request");
    cr_expect_lt(took, 2.0, "the TLS cancel connection stayed open %.2f s", took);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    char states[128], rows[128];
    cr_expect(raw_replies(v.fd, 1, states, sizeof(states), rows, sizeof(rows), 6000));
    cr_expect_str_eq(states, "57014|", "the cancel over TLS did not cancel");
    cr_expect_lt(now_s() - t0, 2.0, "the query ran on");
    close(v.fd);
}

/* ---- 5. cancels of clients waiting in the pool's queue ---- */

/* A waiting client cancels its queued query, then leaves before it gets a server: the next
 * client to get the server is not cancelled. */
Test(redteam23, a_waiting_client_that_cancels_then_leaves_spares_the_next_client,
     .init = start_txn1, .fini = stop_proxy)
{
    PGconn *holder = alice(), *w = alice(), *b = alice();
    pg_exec_ok(holder, "BEGIN");
    free(query_value(holder, "SELECT 'holding the only server'"));
    cr_assert(PQsendQuery(w, "SELECT pg_sleep(2)"));
    expect_clients_waiting(&px, "alice", "alice-secret", "app", 1);
    double t = cancel_of(w);
    cr_expect_lt(t, 1.0, "the waiting client's cancel hung %.2f s", t);
    PQfinish(w); /* (its query was answered 57014 without running) */
    cr_assert(PQsendQuery(b, "SELECT 'b', pg_sleep(0.5)"));
    usleep(200 * 1000);
    pg_exec_ok(holder, "COMMIT");
    struct outcome o;
    outcome_of(b, &o);
    cr_expect_str_eq(o.state, "", "the leaver's cancel hit the next client: %s", o.msg);
    cr_expect_str_eq(o.value, "b");
    PQfinish(holder);
    PQfinish(b);
}

/* A waiting client cancels its queued short query; PQcancel returns at once (nothing was
 * running), and the client, told by PQcancel that its cancel was dealt with, sends its next
 * query. On PostgreSQL a cancel that PQcancel has returned from cannot hit a later query;
 * here it must not either. (It was once kept and sent when the queued query ran; now the
 * queued query is answered 57014 without running, in every round.) */
Test(redteam23, a_cancel_deferred_for_a_waiting_query_never_hits_the_clients_next_query,
     .init = start_txn1, .fini = stop_proxy)
{
    PGconn *holder = alice(), *w = alice();
    int hit = 0, rounds = 8, queued_cancelled = 0;
    char first[256] = "";
    for (int i = 0; i < rounds; i++) {
        pg_exec_ok(holder, "BEGIN");
        free(query_value(holder, "SELECT 'holding'"));
        cr_assert(PQsendQuery(w, "SELECT 'queued'"));
        expect_clients_waiting(&px, "alice", "alice-secret", "app", 1);
        double t = cancel_of(w);
        cr_expect_lt(t, 1.0, "cancel hung %.2f s", t);
        pg_exec_ok(holder, "COMMIT");
        struct outcome o;
        outcome_of(w, &o);
        queued_cancelled += strcmp(o.state, "57014") == 0;
        cr_assert(PQsendQuery(w, "SELECT 'next', pg_sleep(0.2)"));
        outcome_of(w, &o);
        if (o.state[0]) {
            hit++;
            snprintf(first, sizeof(first), "%s %.200s", o.state, o.msg);
        }
    }
    fprintf(stderr, "redteam23 deferred: %d of %d queued queries cancelled, %d next ones hit\n",
            queued_cancelled, rounds, hit);
    cr_expect_eq(hit, 0,
                 "the cancel of a queued query hit the client's next query %d of %d times (%s)",
                 hit, rounds, first);
    cr_expect_eq(queued_cancelled, rounds, "the queued query was cancelled %d of %d times",
                 queued_cancelled, rounds);
    PQfinish(holder);
    PQfinish(w);
}

/* A deferred cancel (of a queued batch whose Sync has not come yet: kept, and sent when it
 * runs; a whole statement waiting would be answered at once, unsent), its client leaving as
 * soon as its query is answered (the cancel still on its way) while another client waits: the
 * server must not pass to that client before the cancel has arrived. */
Test(redteam23, a_deferred_cancel_in_flight_when_its_client_leaves_spares_the_next_client,
     .init = start_txn1, .fini = stop_proxy)
{
    PGconn *holder = alice();
    int hit = 0, rounds = 5;
    char first[256] = "";
    for (int i = 0; i < rounds; i++) {
        PGconn *b = alice();
        struct rawsess w;
        raw_keyed(&w, "app");
        pg_exec_ok(holder, "BEGIN");
        free(query_value(holder, "SELECT 'holding'"));
        struct buf m;
        buf_init(&m);
        raw_put_parse(&m, "", "SELECT 'queued'");
        raw_put_bind(&m, "", "");
        raw_put_execute(&m, "");
        raw_put_empty(&m, 'H'); /* (Flush: its Sync comes later) */
        cr_assert(raw_send(w.fd, &m));
        buf_free(&m);
        expect_clients_waiting(&px, "alice", "alice-secret", "app", 1);
        raw_cancel(w.pid, w.key);
        cr_assert(PQsendQuery(b, "SELECT 'b', pg_sleep(0.2)"));
        expect_clients_waiting(&px, "alice", "alice-secret", "app", 2);
        pg_exec_ok(holder, "COMMIT");
        unsigned char body[512];
        size_t len;
        int t;
        while ((t = raw_read_msg(w.fd, body, sizeof(body), &len, 5000)) >= 0 && t != 'C' &&
               t != 'E')
            ;
        cr_expect(t == 'C' || t == 'E', "the queued query was not answered");
        close(w.fd); /* (as soon as it is answered: the cancel may still be on its way) */
        struct outcome o;
        outcome_of(b, &o);
        if (o.state[0]) {
            hit++;
            snprintf(first, sizeof(first), "%s %.200s", o.state, o.msg);
        }
        PQfinish(b);
    }
    cr_expect_eq(hit, 0,
                 "a departed client's deferred cancel hit the next client %d of %d times (%s)", hit,
                 rounds, first);
    PQfinish(holder);
}

/* ---- 6. pipelines ---- */

/* A pipeline of two Sync-ended statements; the first is cancelled while it runs: only it
 * fails, the second runs, and a client queued behind (transaction pooling) is not hit. */
static void pipeline_cancel(bool bystander)
{
    struct rawsess v;
    raw_keyed(&v, "app");
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "", "SELECT 'first', pg_sleep(3)");
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    raw_put_parse(&b, "", "SELECT 'second'");
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(v.fd, &b));
    buf_free(&b);
    PGconn *c = NULL;
    usleep(200 * 1000);
    if (bystander) {
        c = alice();
        cr_assert(PQsendQuery(c, "SELECT 'c', pg_sleep(0.3)"));
        usleep(100 * 1000);
    }
    double t0 = now_s();
    double t = raw_cancel(v.pid, v.key);
    cr_expect(t >= 0 && t < 2.0, "cancel: closed after %.2f s", t);
    char states[128], rows[128];
    cr_expect(raw_replies(v.fd, 2, states, sizeof(states), rows, sizeof(rows), 5000),
              "the pipeline was not answered whole");
    cr_expect_str_eq(states, "57014|", "the cancel did not cancel just the running statement");
    cr_expect_str_eq(rows, "second|", "the statement after the cancelled one");
    cr_expect_lt(now_s() - t0, 2.0);
    if (c) {
        struct outcome o;
        outcome_of(c, &o);
        cr_expect_str_eq(o.state, "", "the pipeline's cancel hit the queued client: %s", o.msg);
        cr_expect_str_eq(o.value, "c");
        PQfinish(c);
    }
    raw_query(v.fd, "SELECT 'goes on'");
    cr_expect(raw_replies(v.fd, 1, states, sizeof(states), rows, sizeof(rows), 5000));
    cr_expect_str_eq(rows, "goes on|");
    close(v.fd);
}

Test(redteam23, txn_cancel_in_a_pipeline_hits_only_the_running_statement, .init = start_txn1,
     .fini = stop_proxy)
{
    pipeline_cancel(true);
}

Test(redteam23, session_cancel_in_a_pipeline_hits_only_the_running_statement, .init = start_session,
     .fini = stop_proxy)
{
    pipeline_cancel(false);
}

/* ---- 7. after a reload, a disconnect, a killed backend; at max_clients ---- */

/* pool.size lowered from 2 to 1 while both servers run long queries: their cancels still
 * reach them, and the pool serves afterwards. */
Test(redteam23, cancels_reach_their_queries_after_a_reload_lowering_pool_size, .init = start_txn2,
     .fini = stop_proxy)
{
    PGconn *a = alice(), *b = alice();
    cr_assert(PQsendQuery(a, "SELECT pg_sleep(5)"));
    cr_assert(PQsendQuery(b, "SELECT pg_sleep(5)"));
    usleep(200 * 1000);
    char *p = strstr(yaml, "size: 2");
    cr_assert(p);
    p[6] = '1';
    proxy_reload_yaml(&px, yaml);
    double t0 = now_s();
    cr_expect_lt(cancel_of(a), 2.0);
    cr_expect_lt(cancel_of(b), 2.0);
    struct outcome o;
    outcome_of(a, &o);
    cr_expect_str_eq(o.state, "57014", "A after the reload: %s", o.msg);
    outcome_of(b, &o);
    cr_expect_str_eq(o.state, "57014", "B after the reload: %s", o.msg);
    cr_expect_lt(now_s() - t0, 3.0);
    EXPECT_QUERY_VALUE(a, "SELECT 'a'", "a", "the pool serves after");
    EXPECT_QUERY_VALUE(b, "SELECT 'b'", "b", "the pool serves after");
    PQfinish(a);
    PQfinish(b);
}

/* A leaves with its query running (its server drains it, then serves B): A's key, kept by
 * whoever saw it, cancels nothing of B's. */
Test(redteam23, a_departed_clients_key_cancels_nothing, .init = start_txn1, .fini = stop_proxy)
{
    PGconn *a = alice(), *b = alice();
    char *apid = query_value(a, "SELECT pg_backend_pid()::text");
    PGcancel *ca = PQgetCancel(a);
    cr_assert(PQsendQuery(a, "SELECT pg_sleep(0.2)"));
    usleep(50 * 1000);
    PQfinish(a);
    cr_assert(PQsendQuery(b, "SELECT pg_backend_pid()::text, pg_sleep(0.8)"));
    usleep(400 * 1000);
    double t = cancel_with(ca);
    cr_expect_lt(t, 1.0);
    struct outcome o;
    outcome_of(b, &o);
    cr_expect_str_eq(o.state, "", "a departed client's key cancelled B: %s", o.msg);
    fprintf(stderr, "redteam23 departed: B on %s, A was on %s\n", o.value, apid);
    PQfreeCancel(ca);
    free(apid);
    PQfinish(b);
}

/* A's backend is terminated under it; A's cancel afterwards hangs nothing and hits nobody,
 * and A and B go on over a fresh server. */
Test(redteam23, a_cancel_after_its_backend_died_is_harmless, .init = start_txn1, .fini = stop_proxy)
{
    PGconn *a = alice(), *b = alice();
    char *apid = query_value(a, "SELECT pg_backend_pid()::text");
    cr_assert(PQsendQuery(a, "SELECT pg_sleep(5)"));
    usleep(150 * 1000);
    PGconn *adm = pg_admin("lp_test");
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%s)", apid);
    pg_exec_ok(adm, sql);
    PQfinish(adm);
    struct outcome o;
    outcome_of(a, &o);
    cr_expect(o.state[0], "A's query survived its backend's death");
    cr_assert(PQsendQuery(b, "SELECT 'b', pg_sleep(0.5)"));
    usleep(200 * 1000);
    double t = cancel_of(a);
    cr_expect_lt(t, 1.0);
    outcome_of(b, &o);
    cr_expect_str_eq(o.state, "", "A's cancel hit B: %s", o.msg);
    if (PQstatus(a) != CONNECTION_OK) {
        PQfinish(a);
        a = alice();
    }
    EXPECT_QUERY_VALUE(a, "SELECT 'a'", "a", "A goes on");
    free(apid);
    PQfinish(a);
    PQfinish(b);
}

/* limits.max_clients 3, all taken (one client runs a long query): its cancel request, which
 * PostgreSQL takes whatever its max_connections, still cancels it. lakeproxy refusing it
 * would leave a runaway query running, and anyone able to fill the connection slots (slow
 * logins until limits.login_timeout_s) could stop every cancel. */
Test(redteam23, a_cancel_is_taken_when_lakeproxy_is_at_max_clients, .init = start_full,
     .fini = stop_proxy)
{
    PGconn *a = alice(), *b = alice(), *c = alice();
    cr_assert(PQsendQuery(a, "SELECT pg_sleep(4)"));
    usleep(200 * 1000);
    double t0 = now_s();
    PGcancel *cn = PQgetCancel(a);
    char err[256] = "";
    int said = PQcancel(cn, err, sizeof(err));
    PQfreeCancel(cn);
    struct outcome o;
    outcome_of(a, &o);
    cr_expect_str_eq(o.state, "57014",
                     "the cancel was refused at max_clients (query ran %.1f s; PQcancel "
                     "returned %d, \"%s\")",
                     now_s() - t0, said, err);
    PQfinish(a);
    PQfinish(b);
    PQfinish(c);
}
