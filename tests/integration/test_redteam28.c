/* test_redteam28.c: red-team round 28: THE SERVER SIDE AS HOSTILE. Every byte from a server
 * is hostile too: a broken, compromised or man-in-the-middled PostgreSQL connection must never
 * crash lakeproxy, hang a client, make it allocate without bound, or hand one client's rows
 * (or a forged reply) to another client.
 *
 * PostgreSQL (the real one the harness starts) is reached through the TCP relay of
 * tests/lib/tcprelay.c, which now reads the stream from PostgreSQL towards lakeproxy as
 * messages and can mutate it (tcp_relay_mutate): bytes injected before, after or instead of
 * the first message of a type holding a needle, then a flood of filler, a close, the rest
 * swallowed or dribbled one byte a write.
 *
 * Attacks (12 tests): a forged ReadyForQuery (I, T, E, bogus) before the first row with a second
 * client queued on the pool's only server; an extra ReadyForQuery after a CommandComplete and a
 * whole forged reply right behind a real ReadyForQuery; length words of 0, 1, 3 on ten types;
 * length words of 0x7fffffff / 0xfffffff0 on ten types followed by 48 MiB of filler and a
 * close (VmRSS sampled); AuthenticationRequests (cleartext, md5, Ok, SASL), BackendKeyData and
 * NegotiateProtocolVersion mid-result; unsolicited CopyIn/CopyOut/CopyBoth responses with the
 * next client using extended-protocol Syncs; twelve mutations of lakeproxy's own server login
 * (unknown auth code, short lengths, short BackendKeyData, a 70 kB ParameterStatus, bogus and
 * 'E' ReadyForQuery, unterminated ErrorResponse, extra ReadyForQuery plus forged result, 20000
 * notices, unknown type, unterminated ParameterStatus, a close inside BackendKeyData); the
 * session-pooling reset (DISCARD ALL) answered with a forged result, an unterminated error, a
 * bogus status or 5000 notifications; floods of 50000 notices / notifications, 60 kB and 200
 * kB ParameterStatus, unterminated error and notice, a 300 kB notice mid-result; masking
 * (auditor and masked client sharing one server, forged ReadyForQuery in the auditor's
 * unmasked result; DataRows whose column count or lengths lie in a masked result); RLS
 * (tenants sharing one server, forged ReadyForQuery; forged client_encoding SJIS and
 * standard_conforming_strings off); the whole server stream dribbled one byte a write.
 *
 * Findings (3 runs of the file, 12 tests each; every failure 3 of 3, deterministic):
 * - forged_ready_mid_result_never_hands_rows_to_the_next_client (medium, 3/3) and
 *   extra_reply_after_a_result_answers_nobody (medium, 3/3): one client's stream
 *   desynchronised. A ReadyForQuery with status 'T' or 'E' injected before the first DataRow
 *   of client A's result (bytes 5a 00 00 00 05 54 / 45) or right after its CommandComplete
 *   (before the real 'Z') is passed to A; the server stays with A (in a transaction, so not
 *   released) and the real ReadyForQuery that follows, though nothing is owed any more
 *   (in_flight already 0), is passed on too. A's NEXT query is then answered with the
 *   previous query's remaining rows (40 rows 'rt28a-N' for 'SELECT rt28n-...') or with an
 *   empty reply (just the stale 'Z'), and every later answer is off by one. Expected: a
 *   ReadyForQuery (or any reply) while no reply is owed on an active server is a protocol
 *   violation: 08P01 to the client and the server closed, as idle_inspect does for an idle
 *   server (status 'I' held: the server was released at the forged 'Z' and the real one,
 *   arriving while idle, closed it; the queued client B never got A's rows; bogus status
 *   '?' failed cleanly with 08P01).
 * - login_messages_mid_session_never_reach_the_client (medium, 3/3): messages that only
 *   belong to a login are relayed to the client in the middle of a result: an
 *   AuthenticationCleartextPassword (52 00 00 00 08 00 00 00 03), AuthenticationMD5Password,
 *   AuthenticationOk, AuthenticationSASL, a BackendKeyData (4b 00 00 00 0c 00 00 01 00 00 00
 *   00 07) and a NegotiateProtocolVersion ('v') all reached the raw client (types TRDCZ,
 *   TKDCZ, TvDCZ). A password request reaching a client mid-session invites a driver to send
 *   its password to whoever forged it; libpq applies a BackendKeyData at any time, so the
 *   client's cancel key is replaced by the server's (its cancels no longer match lakeproxy's
 *   key; the real backend's key leaks to the client). Expected: 'R', 'K', 'v' from an active
 *   server are a protocol violation (08P01, server closed).
 * Both fixed (server.c server_msg_unowed, checked first in active_verdict): a login's message
 * from an active server, or any reply but an error, notice, notification or parameter report
 * while nothing is owed (no Query, Sync or FunctionCall unanswered, no extended batch open, no
 * copy going on, the count not already unsure), closes the server and fails its client with
 * 08P01. A forged ReadyForQuery can still end a reply early when the client's next statement is
 * already on its way (its rows then count as that statement's): no proxy can tell those apart,
 * and the rows are the same client's.
 *
 * Held: no crash in any test; length words below 4 on every type fail at once (08P01 or a
 * close); 2 GiB length words with 48 MiB of filler: the client's connection ended each time
 * and lakeproxy's VmRSS stayed far below 200 MB (non-body types are refused at 64 KiB, a
 * DataRow streams under back-pressure); a forged ReadyForQuery 'I' never handed the rest of a
 * result to the queued client (plain, masked: the masked client never saw the auditor's
 * unmasked rows; RLS: tenant 2 never saw tenant 1's rows); a whole forged reply behind a real
 * ReadyForQuery reached no one (the server is closed); unsolicited CopyIn/Out/Both leave no
 * trace for the next client (extended Syncs answered exactly); every broken server login
 * fails the client within pool.max_wait_ms or is retried cleanly (an unterminated
 * ParameterStatus is ignored), logins recover; the reset answered with forged or broken
 * replies never reached the next session-pooling client; floods of notices and notifications
 * and oversized status messages neither hang nor bloat; lying DataRows under masking leak no
 * secret and crash nothing; a forged client_encoding / standard_conforming_strings closes an
 * RLS client (42501); a server dribbling one byte a write is read exactly.
 * tests/lib/tcprelay.c's users (faults, redteam9, redteam27, server_down) still pass.
 */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "maskcheck.h"
#include "procinfo.h"
#include "rawproto.h"
#include "tcprelay.h"

TestSuite(redteam28, .timeout = 90);

#define ADMIN "admin:\n  users: [alice]\n"
#include "poolfix.h"

static struct tcp_relay *relay;
static int relay_port;

#define POOL_WAIT_MS 4000

/* lakeproxy with database rz (a pool of size in mode) reached through the relay; extra goes
 * first after the default configuration (user lines, then sections). */
static void start28(const char *mode, int size, const char *extra)
{
    relay = start_relayed_rz(mode, size, extra, POOL_WAIT_MS, &relay_port);
}
static void start_rz1(void)
{
    start28("transaction", 1, NULL);
}
static void start_rz_session1(void)
{
    start28("session", 1, NULL);
}
#define MASK_USERS                                                                                 \
    "  rtm: {auth: trust}\n"                                                                       \
    "  rtu: {auth: trust, groups: [auditors]}\n"                                                   \
    "groups:\n"                                                                                    \
    "  auditors: {role: auditor}\n"                                                                \
    "masking:\n"                                                                                   \
    "  databases: [rz]\n"                                                                          \
    "  rules:\n"                                                                                   \
    "    - {column: public.customers.email, function: email, unless: {groups: [auditors]}}\n"      \
    "    - {column: public.customers.ssn, function: last4, unless: {groups: [auditors]}}\n"
static void start_mask_txn1(void)
{
    start28("transaction", 1, MASK_USERS);
}
static void start_rls_txn1(void)
{
    start28("transaction", 1, RZ_RLS_TENANTS);
}
static void stop28(void)
{
    stop_relayed(&relay);
}

/* ---- crafted server messages ---- */

static void m_msg(struct buf *b, char type, const void *body, size_t n)
{
    buf_msg_start(b, (uint8_t)type);
    if (n)
        buf_put_bytes(b, body, n);
    buf_msg_finish(b);
}
/* a header with a forged length word, then body bytes as given */
static void m_raw(struct buf *b, char type, uint32_t len, const void *body, size_t n)
{
    buf_put_u8(b, (uint8_t)type);
    buf_put_u32(b, len);
    if (n)
        buf_put_bytes(b, body, n);
}
static void m_ready(struct buf *b, char status)
{
    m_msg(b, 'Z', &status, 1);
}
static void m_param(struct buf *b, const char *name, const char *value)
{
    buf_msg_start(b, 'S');
    buf_put_str(b, name);
    buf_put_str(b, value);
    buf_msg_finish(b);
}
static void m_notice(struct buf *b, char type, const char *state, const char *text)
{
    buf_msg_start(b, (uint8_t)type);
    buf_put_u8(b, 'S');
    buf_put_str(b, type == 'E' ? "ERROR" : "NOTICE");
    buf_put_u8(b, 'C');
    buf_put_str(b, state);
    buf_put_u8(b, 'M');
    buf_put_str(b, text);
    buf_put_u8(b, 0);
    buf_msg_finish(b);
}
/* a whole forged result of one text column holding value */
static void m_result(struct buf *b, const char *value)
{
    buf_msg_start(b, 'T');
    buf_put_u16(b, 1);
    buf_put_str(b, "forged");
    buf_put_u32(b, 0);
    buf_put_u16(b, 0);
    buf_put_u32(b, 25);
    buf_put_u16(b, 0xffff);
    buf_put_u32(b, 0xffffffff);
    buf_put_u16(b, 0);
    buf_msg_finish(b);
    buf_msg_start(b, 'D');
    buf_put_u16(b, 1);
    buf_put_u32(b, (uint32_t)strlen(value));
    buf_put_bytes(b, value, strlen(value));
    buf_msg_finish(b);
    buf_msg_start(b, 'C');
    buf_put_str(b, "SELECT 1");
    buf_msg_finish(b);
}

/* How many messages the next arm() springs on (0: 1). */
static int arm_times;

/* Arms a mutation injecting b's bytes (b is emptied). */
static void arm(char type, const char *needle, enum relay_mut_action act, struct buf *b,
                enum relay_mut_then then, long long flood)
{
    struct relay_mutation m = {.type = type,
                               .needle = needle,
                               .action = act,
                               .inject = b ? b->data : NULL,
                               .inject_len = b ? b->len : 0,
                               .then = then,
                               .flood = flood,
                               .flood_byte = 'x',
                               .times = arm_times};
    tcp_relay_mutate(relay, &m);
    if (b)
        buf_reset(b);
}

/* ---- a raw client's view of its replies ---- */

struct seen {
    int zs, errors, rows;
    bool eof, timed_out;
    char first_state[6];
    char values[8192]; /* the first column of every DataRow, "|"-joined (cut) */
    char types[1024];  /* every message type, in order (cut) */
};

/* Milliseconds left until deadline (now_s() time), at least 1 (a read then fails at once if
 * nothing is there). */
static int ms_left(double deadline)
{
    int left = (int)((deadline - now_s()) * 1000);
    return left > 0 ? left : 1;
}

/* Reads fd's messages until `ready` ReadyForQuery, the end of the connection or timeout_ms. */
static void see(int fd, int ready, int timeout_ms, struct seen *o)
{
    memset(o, 0, sizeof(*o));
    double deadline = now_s() + timeout_ms / 1000.0;
    static unsigned char body[1 << 20];
    while (o->zs < ready) {
        unsigned char hdr[5];
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int left = (int)((deadline - now_s()) * 1000);
        if (left <= 0 || poll(&pf, 1, left) <= 0) {
            o->timed_out = true;
            return;
        }
        if (!raw_read_full(fd, hdr, 5, ms_left(deadline))) {
            o->eof = now_s() < deadline;
            o->timed_out = !o->eof;
            return;
        }
        uint32_t len = raw_be32(hdr + 1);
        size_t tl = strlen(o->types);
        if (tl + 1 < sizeof(o->types))
            o->types[tl] = (char)hdr[0], o->types[tl + 1] = '\0';
        if (len < 4 || len - 4 > sizeof(body)) { /* garbage: the stream is lost */
            o->eof = true;
            return;
        }
        if (!raw_read_full(fd, body, len - 4, ms_left(deadline))) {
            o->eof = now_s() < deadline;
            o->timed_out = !o->eof;
            return;
        }
        size_t n = len - 4;
        if (hdr[0] == 'Z')
            o->zs++;
        else if (hdr[0] == 'E') {
            if (!o->errors++)
                snprintf(o->first_state, sizeof(o->first_state), "%s", raw_error_sqlstate(body, n));
        } else if (hdr[0] == 'D') {
            o->rows++;
            if (n >= 6) {
                uint32_t l = raw_be32(body + 2);
                if (l != 0xffffffffu && 6 + (size_t)l <= n && l < 200)
                    snprintf(o->values + strlen(o->values), sizeof(o->values) - strlen(o->values),
                             "%.*s|", (int)l, (const char *)body + 6);
            }
        }
    }
}

/* Did the client get a clear end (an error, or its connection closed) rather than a hang? */
static bool clear_end(const struct seen *o)
{
    return !o->timed_out && (o->errors > 0 || o->eof || o->zs > 0);
}

/* every "|"-separated value of vals starts with prefix (and there are want of them, -1: any) */
static bool only_values(const char *vals, const char *prefix, int want)
{
    int n = 0;
    for (const char *p = vals; *p;) {
        const char *bar = strchr(p, '|');
        if (!bar)
            break;
        if (strncmp(p, prefix, strlen(prefix)) != 0)
            return false;
        n++;
        p = bar + 1;
    }
    return want < 0 || n == want;
}

/* A fresh client (carol, raw) runs tag's query: it must get exactly its own 3 rows, within
 * a few seconds (the pool may need a moment to replace a closed server). */
static void expect_fresh_client_ok(const char *tag)
{
    int fd = raw_session(px.port, "carol", "rz");
    char sql[160], prefix[64];
    snprintf(prefix, sizeof(prefix), "%s-", tag);
    snprintf(sql, sizeof(sql), "SELECT '%s' || g FROM generate_series(1,3) g", prefix);
    struct seen o;
    raw_query(fd, sql);
    see(fd, 1, 8000, &o);
    cr_expect(o.zs == 1 && o.errors == 0 && only_values(o.values, prefix, 3),
              "a fresh client after the attack got zs=%d errors=%d (%s) rows [%s] types %s", o.zs,
              o.errors, o.first_state, o.values, o.types);
    close(fd);
}

/* ---- 1. a forged ReadyForQuery in the middle of a result, two clients on one server ---- */

/* Client A's result is cut by a forged ReadyForQuery (status I, T, E or bogus) before its
 * first row; client B, queued behind it for the pool's only server, must get only its own
 * rows (or an error), never A's rest; A's next query must not get its old rows either. */
Test(redteam28, forged_ready_mid_result_never_hands_rows_to_the_next_client, .init = start_rz1,
     .fini = stop28)
{
    static const char statuses[] = {'I', 'T', 'E', '?'};
    struct buf b;
    buf_init(&b);
    for (size_t i = 0; i < sizeof(statuses); i++) {
        int a = raw_session(px.port, "carol", "rz");
        int bb = raw_session(px.port, "carol", "rz");
        m_ready(&b, statuses[i]);
        arm('D', "rt28a-1", RM_BEFORE, &b, RM_GO_ON, 0);
        raw_query(a, "SELECT 'rt28a-' || g FROM pg_sleep(0.4), generate_series(1,40) g");
        usleep(150 * 1000);
        raw_query(bb, "SELECT 'rt28b-' || g FROM generate_series(1,3) g");
        struct seen oa, ob;
        see(a, 1, 6000, &oa);
        see(bb, 1, 6000, &ob);
        cr_expect(tcp_relay_sprung(relay) == 1, "status %c: the mutation did not spring",
                  statuses[i]);
        cr_expect(!strstr(ob.values, "rt28a"),
                  "status %c: client B got client A's rows after a forged ReadyForQuery: [%s]",
                  statuses[i], ob.values);
        cr_expect(clear_end(&ob), "status %c: client B hangs (types %s)", statuses[i], ob.types);
        cr_expect(ob.errors > 0 || ob.eof || only_values(ob.values, "rt28b-", 3),
                  "status %c: client B got [%s] for its own query", statuses[i], ob.values);
        cr_expect(clear_end(&oa), "status %c: client A hangs (types %s)", statuses[i], oa.types);
        if (!oa.eof) { /* A's next query: its own answer, or an error, never leftovers */
            raw_query(a, "SELECT 'rt28n-' || g FROM generate_series(1,2) g");
            see(a, 1, 5000, &oa);
            cr_expect(!oa.timed_out, "status %c: client A's next query hangs", statuses[i]);
            cr_expect(!strstr(oa.values, "rt28a"),
                      "status %c: client A's next query got its previous rows: [%s]", statuses[i],
                      oa.values);
        }
        close(a);
        close(bb);
        cr_assert(proxy_alive(), "lakeproxy died (status %c)", statuses[i]);
        expect_fresh_client_ok("rt28c");
    }
    buf_free(&b);
}

/* ---- 2. an extra ReadyForQuery, and a whole forged reply, after a complete result ---- */

/* A's result ends C, forged Z, real Z (or a whole forged reply follows its ReadyForQuery):
 * the extra reply must not answer client B's (queued) statements, nor its next ones. */
Test(redteam28, extra_reply_after_a_result_answers_nobody, .init = start_rz1, .fini = stop28)
{
    struct buf b;
    buf_init(&b);
    for (int round = 0; round < 6; round++) {
        int a = raw_session(px.port, "carol", "rz");
        int bb = raw_session(px.port, "carol", "rz");
        if (round < 3) { /* extra Z between CommandComplete and the real one */
            m_ready(&b, "ITE"[round]);
            arm('C', "SELECT 7", RM_AFTER, &b, RM_GO_ON, 0);
        } else { /* a whole forged reply right behind the real ReadyForQuery (same write) */
            m_result(&b, "rt28-forged");
            if (round == 4)
                m_result(&b, "rt28-forged2");
            m_ready(&b, round == 5 ? 'T' : 'I');
            arm('Z', NULL, RM_AFTER, &b, RM_GO_ON, 0);
        }
        raw_query(a, "SELECT 'rt28a-' || g FROM pg_sleep(0.4), generate_series(1,7) g");
        usleep(150 * 1000);
        raw_query(bb, "SELECT 'rt28b-' || g FROM generate_series(1,3) g");
        struct seen oa, ob, ob2;
        see(a, 1, 6000, &oa);
        see(bb, 1, 6000, &ob);
        cr_expect(tcp_relay_sprung(relay) == 1, "round %d: the mutation did not spring", round);
        cr_expect(clear_end(&oa) && clear_end(&ob), "round %d: a client hangs (A %s, B %s)", round,
                  oa.types, ob.types);
        cr_expect(!strstr(ob.values, "rt28-forged") && !strstr(ob.values, "rt28a"),
                  "round %d: client B got a reply it did not ask for: [%s]", round, ob.values);
        cr_expect(ob.errors > 0 || ob.eof || only_values(ob.values, "rt28b-", 3),
                  "round %d: client B got [%s] (types %s) for its own query", round, ob.values,
                  ob.types);
        if (!ob.eof && !ob.timed_out) { /* B's next statement gets its own answer */
            raw_query(bb, "SELECT 'rt28d-' || g FROM generate_series(1,2) g");
            see(bb, 1, 5000, &ob2);
            cr_expect(!ob2.timed_out, "round %d: client B's second query hangs", round);
            cr_expect(ob2.errors > 0 || ob2.eof || only_values(ob2.values, "rt28d-", 2),
                      "round %d: client B's second query got [%s] (types %s): desynchronised",
                      round, ob2.values, ob2.types);
        }
        if (!oa.eof && !oa.timed_out) {
            raw_query(a, "SELECT 'rt28e-' || g FROM generate_series(1,2) g");
            see(a, 1, 5000, &oa);
            cr_expect(!oa.timed_out, "round %d: client A's next query hangs", round);
            cr_expect(oa.errors > 0 || oa.eof || only_values(oa.values, "rt28e-", 2),
                      "round %d: client A's next query got [%s] (types %s): desynchronised", round,
                      oa.values, oa.types);
        }
        close(a);
        close(bb);
        tcp_relay_mutate_off(relay);
        cr_assert(proxy_alive(), "lakeproxy died (round %d)", round);
        expect_fresh_client_ok("rt28c");
    }
    buf_free(&b);
}

/* ---- 3. lying length words ---- */

/* A message of each type whose length word is 0, 1, 3 (less than itself) replaces a row:
 * the client gets an error or its connection closed at once, never a hang. */
Test(redteam28, a_length_word_below_four_fails_fast, .init = start_rz1, .fini = stop28)
{
    static const char types[] = {'D', 'C', 'Z', 'E', 'S', 'N', 'T', 'A', '1', 'G'};
    static const uint32_t lens[] = {0, 1, 3};
    struct buf b;
    buf_init(&b);
    for (size_t t = 0; t < sizeof(types); t++)
        for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
            int a = raw_session(px.port, "carol", "rz");
            m_raw(&b, types[t], lens[l], "\0\0\0\0\0\0\0\0", 8);
            arm('D', "rt28len", RM_REPLACE, &b, RM_GO_ON, 0);
            raw_query(a, "SELECT 'rt28len'");
            struct seen o;
            see(a, 1, 5000, &o);
            cr_expect(!o.timed_out && (o.errors > 0 || o.eof),
                      "type %c length %u: the client got no error (zs %d, types %s)", types[t],
                      lens[l], o.zs, o.types);
            close(a);
            cr_assert(proxy_alive(), "lakeproxy died: type %c length %u", types[t], lens[l]);
        }
    expect_fresh_client_ok("rt28c");
    buf_free(&b);
}

/* A message claiming 2 GiB (0x7fffffff, and 0xfffffff0) replaces a row, 48 MiB of filler
 * follow, then the server closes: lakeproxy's memory stays bounded, the client's
 * connection ends (an error or a close) within seconds, and lakeproxy lives on. */
Test(redteam28, a_length_word_of_gigabytes_stays_bounded, .init = start_rz1, .fini = stop28)
{
    static const char types[] = {'D', 'T', 'E', 'N', 'S', 'A', 'C', 'Z', 'G', 'd'};
    static const uint32_t lens[] = {0x7fffffffu, 0xfffffff0u};
    struct buf b;
    buf_init(&b);
    long worst = 0;
    for (size_t t = 0; t < sizeof(types); t++)
        for (size_t l = 0; l < 2; l++) {
            int a = raw_session(px.port, "carol", "rz");
            m_raw(&b, types[t], lens[l], "\0\1", 2);
            arm('D', "rt28big", RM_REPLACE, &b, RM_CLOSE, 48ll << 20);
            raw_query(a, "SELECT 'rt28big'");
            /* read slowly at first: what lakeproxy buffers meanwhile is what it holds */
            double t0 = now_s();
            long peak = 0;
            while (now_s() - t0 < 1.0) {
                long kb = proxy_status_kb(&px, "VmRSS");
                if (kb > peak)
                    peak = kb;
                usleep(50 * 1000);
            }
            double took = raw_wait_eof(a, 15);
            long kb = proxy_status_kb(&px, "VmRSS");
            if (kb > peak)
                peak = kb;
            if (peak > worst)
                worst = peak;
            cr_expect(took >= 0, "type %c length %#x: the client's connection did not end",
                      types[t], lens[l]);
            if (rss_follows_heap())
                cr_expect(peak < 200 * 1024, "type %c length %#x: lakeproxy grew to %ld kB",
                          types[t], lens[l], peak);
            close(a);
            cr_assert(proxy_alive(), "lakeproxy died: type %c length %#x", types[t], lens[l]);
        }
    cr_log_info("peak VmRSS %ld kB", worst);
    expect_fresh_client_ok("rt28c");
    buf_free(&b);
}

/* ---- 4. messages a session must never carry ---- */

/* Authentication requests, BackendKeyData, NegotiateProtocolVersion injected in the middle of
 * a result: none reaches the client (a client would answer a cleartext password request
 * mid-session of a hostile server, and a BackendKeyData would replace its cancel key); the
 * client gets its rows or an error, nothing hangs, the next client is served. */
Test(redteam28, login_messages_mid_session_never_reach_the_client, .init = start_rz1,
     .fini = stop28)
{
    struct buf b;
    buf_init(&b);
    for (int v = 0; v < 6; v++) {
        int a = raw_session(px.port, "carol", "rz");
        switch (v) {
        case 0: m_msg(&b, 'R', "\0\0\0\3", 4); break;         /* cleartext password, please */
        case 1: m_msg(&b, 'R', "\0\0\0\5salt", 8); break;     /* md5 */
        case 2: m_msg(&b, 'R', "\0\0\0\0", 4); break;         /* AuthenticationOk */
        case 3: m_msg(&b, 'K', "\0\0\1\0\0\0\0\7", 8); break; /* BackendKeyData */
        case 4: m_msg(&b, 'v', "\0\0\0\0\0\0\0\0", 8); break; /* NegotiateProtocolVersion */
        default: m_msg(&b, 'R', "\0\0\0\12SCRAM-SHA-256\0\0", 18); break; /* SASL */
        }
        arm('D', "rt28auth", RM_BEFORE, &b, RM_GO_ON, 0);
        raw_query(a, "SELECT 'rt28auth'");
        struct seen o;
        see(a, 1, 5000, &o);
        cr_expect(!strchr(o.types, 'R') && !strchr(o.types, 'K') && !strchr(o.types, 'v'),
                  "variant %d: a login message reached the client mid-session (types %s)", v,
                  o.types);
        cr_expect(clear_end(&o), "variant %d: the client hangs (types %s)", v, o.types);
        close(a);
        cr_assert(proxy_alive(), "lakeproxy died (variant %d)", v);
        expect_fresh_client_ok("rt28c");
    }
    buf_free(&b);
}

/* ---- 5. unsolicited COPY responses ---- */

/* CopyInResponse, CopyOutResponse, CopyBothResponse nobody asked for, in the middle of a
 * result: the client gets an error or its rows (no hang), and client B, next on the same
 * server, runs extended-protocol batches (whose Syncs a server believed in copy-in would
 * skip) and simple queries with exactly its own answers. */
Test(redteam28, unsolicited_copy_responses_leave_no_trace, .init = start_rz1, .fini = stop28)
{
    static const char types[] = {'G', 'H', 'W'};
    struct buf b, q;
    buf_init(&b);
    buf_init(&q);
    for (size_t t = 0; t < sizeof(types); t++) {
        int a = raw_session(px.port, "carol", "rz");
        m_msg(&b, types[t], "\0\0\0", 3); /* text format, no columns */
        arm('D', "rt28cp", RM_BEFORE, &b, RM_GO_ON, 0);
        raw_query(a, "SELECT 'rt28cp'");
        struct seen o;
        see(a, 1, 5000, &o);
        cr_expect(!o.timed_out, "type %c: client A hangs (types %s)", types[t], o.types);
        if (!o.eof) { /* A goes on: its next query answered, or an error */
            raw_query(a, "SELECT 'rt28a2-1'");
            see(a, 1, 5000, &o);
            cr_expect(!o.timed_out, "type %c: client A's next query hangs (types %s)", types[t],
                      o.types);
            cr_expect(o.errors > 0 || o.eof || only_values(o.values, "rt28a2-", 1),
                      "type %c: client A's next query got [%s] (types %s)", types[t], o.values,
                      o.types);
        }
        close(a);
        int bb = raw_session(px.port, "carol", "rz");
        for (int k = 0; k < 2; k++) {
            char sql[64];
            snprintf(sql, sizeof(sql), "SELECT 'rt28x%d-1'", k);
            raw_put_parse(&q, "", sql);
            raw_put_bind(&q, "", "");
            raw_put_execute(&q, "");
            raw_put_empty(&q, 'S');
        }
        cr_assert(raw_send(bb, &q));
        see(bb, 2, 6000, &o);
        cr_expect(o.zs == 2 && o.errors == 0 && strcmp(o.values, "rt28x0-1|rt28x1-1|") == 0,
                  "type %c: the next client's extended batches got zs=%d errors=%d [%s] (types "
                  "%s)",
                  types[t], o.zs, o.errors, o.values, o.types);
        close(bb);
        cr_assert(proxy_alive(), "lakeproxy died (type %c)", types[t]);
        expect_fresh_client_ok("rt28c");
    }
    buf_free(&b);
    buf_free(&q);
}

/* ---- 6. the proxy's own server login ---- */

/* The pool of rz closes its servers (admin RECONNECT): the next client makes a fresh login. */
static void drop_servers(void)
{
    PGconn *adm = proxy_connect(&px, "alice", "alice-secret", "lakeproxy", NULL);
    cr_assert(PQstatus(adm) == CONNECTION_OK, "%s", PQerrorMessage(adm));
    PQclear(PQexec(adm, "RECONNECT rz"));
    PQfinish(adm);
    double t0 = now_s();
    while (proxy_server_sockets(&px, "127.0.0.1", relay_port) > 0 && now_s() - t0 < 5)
        usleep(20 * 1000);
    cr_assert_eq(proxy_server_sockets(&px, "127.0.0.1", relay_port), 0, "RECONNECT left servers");
}

/* Mutations of PostgreSQL's answer to lakeproxy's own login (authentication, ParameterStatus,
 * BackendKeyData, ReadyForQuery): the client that waits for that server gets an error or a
 * working session within seconds, never a hang or another's reply; once the mutation is gone
 * logins work again. */
Test(redteam28, a_hostile_server_login_fails_cleanly, .init = start_rz1, .fini = stop28)
{
    struct buf b;
    buf_init(&b);
    char big[70000];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (int v = 0; v < 12; v++) {
        drop_servers();
        char type = 0;
        const char *needle = NULL;
        enum relay_mut_action act = RM_REPLACE;
        bool must_fail = true;
        switch (v) {
        case 0: /* an unknown authentication code instead of the first request */
            type = 'R', m_msg(&b, 'R', "\0\0\0\x63", 4);
            break;
        case 1: /* a length word of 3 on the first authentication request */
            type = 'R', m_raw(&b, 'R', 3, "\0\0\0\0", 4);
            break;
        case 2: /* BackendKeyData of 4 bytes */ type = 'K', m_msg(&b, 'K', "\0\0\0\1", 4); break;
        case 3: /* a ParameterStatus of 70 kB */
            type = 'S', needle = "server_version", m_param(&b, "server_version", big);
            must_fail = false;
            break;
        case 4: /* ReadyForQuery with a bogus status */ type = 'Z', m_ready(&b, '?'); break;
        case 5: /* ReadyForQuery 'E': a login in a failed transaction */
            type = 'Z', m_ready(&b, 'E');
            must_fail = false;
            break;
        case 6: /* an ErrorResponse without terminators instead of BackendKeyData */
            type = 'K', m_msg(&b, 'E', "SFATAL\0C28000\0Mno", 17);
            break;
        case 7: /* an extra ReadyForQuery and a forged result after the login's */
            type = 'Z', act = RM_AFTER, m_ready(&b, 'I');
            m_result(&b, "rt28-forged");
            m_ready(&b, 'I');
            must_fail = false;
            break;
        case 8: /* a flood of 20000 notices before ReadyForQuery */
            type = 'Z', act = RM_BEFORE;
            for (int k = 0; k < 20000; k++)
                m_notice(&b, 'N', "01000", "rt28 notice flood, rt28 notice flood");
            must_fail = false;
            break;
        case 9: /* a message of an unknown type during the login */
            type = 'K', act = RM_AFTER, m_msg(&b, '~', "junk", 4);
            break;
        case 10: /* a ParameterStatus without its value's terminator */
            type = 'S', needle = "server_version", m_msg(&b, 'S', "server_version\0001", 16);
            must_fail = false; /* (ignored, as a report lakeproxy cannot read) */
            break;
        default: /* the connection closes in the middle of BackendKeyData */
            type = 'K', m_raw(&b, 'K', 12, "\0\0", 2);
            arm_times = 1000;
            arm(type, needle, act, &b, RM_CLOSE, 0);
            break;
        }
        /* a broken login springs on every login (the pool retries): the client must fail */
        arm_times = must_fail ? 1000 : 1;
        if (v < 11)
            arm(type, needle, act, &b, RM_GO_ON, 0);
        arm_times = 0;
        double t0 = now_s();
        PGconn *c = proxy_connect(&px, "alice", "alice-secret", "rz", "connect_timeout=12");
        bool ok = PQstatus(c) == CONNECTION_OK;
        char *val = NULL;
        PGresult *r = NULL;
        if (ok) {
            r = PQexec(c, "SELECT 'rt28first'");
            ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        }
        double took = now_s() - t0;
        if (ok)
            val = PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "";
        cr_expect(tcp_relay_sprung(relay) >= 1, "variant %d: the mutation did not spring", v);
        cr_expect(took < POOL_WAIT_MS / 1000.0 + 3, "variant %d: the client waited %.1f s", v,
                  took);
        if (ok)
            cr_expect_str_eq(val, "rt28first", "variant %d: the first query got [%s]", v, val);
        if (must_fail)
            cr_expect(!ok, "variant %d: a broken server login served a client", v);
        PQclear(r);
        PQfinish(c);
        tcp_relay_mutate_off(relay);
        cr_assert(proxy_alive(), "lakeproxy died (variant %d)", v);
        /* logins work again (the pool may wait before its next attempt) */
        bool back = false;
        for (double t1 = now_s(); !back && now_s() - t1 < 10;) {
            PGconn *d = proxy_connect(&px, "alice", "alice-secret", "rz", "connect_timeout=8");
            char *x = PQstatus(d) == CONNECTION_OK ? query_value(d, "SELECT 'rt28ok'") : NULL;
            back = x && strcmp(x, "rt28ok") == 0;
            free(x);
            PQfinish(d);
            if (!back)
                usleep(200 * 1000);
        }
        cr_expect(back, "variant %d: logins did not recover", v);
    }
    buf_free(&b);
}

/* ---- 7. the reset between session-pooling clients ---- */

/* Session pooling, one server: the reset after client A (DISCARD ALL) is answered with a
 * forged reply, an error without terminators, a bogus status or a flood: client B, who gets
 * the server next, sees only its own answers. */
Test(redteam28, a_forged_reset_reply_reaches_no_one, .init = start_rz_session1, .fini = stop28)
{
    struct buf b;
    buf_init(&b);
    for (int v = 0; v < 5; v++) {
        PGconn *a = proxy_connect(&px, "alice", "alice-secret", "rz", NULL);
        cr_assert(PQstatus(a) == CONNECTION_OK, "%s", PQerrorMessage(a));
        free(query_value(a, "SELECT 1"));
        enum relay_mut_action act = RM_AFTER;
        switch (v) {
        case 0: /* C, forged Z, forged result, real Z */
            m_ready(&b, 'I');
            m_result(&b, "rt28-forged");
            break;
        case 1:
            m_ready(&b, 'I');
            m_result(&b, "rt28-forged");
            m_ready(&b, 'I');
            break;
        case 2:
            act = RM_REPLACE;
            m_msg(&b, 'E', "SERROR\0CXX000\0Mno end", 21);
            break;
        case 3:
            act = RM_REPLACE;
            m_msg(&b, 'C', "DISCARD ALL\0", 12);
            m_ready(&b, 'X');
            break;
        default:
            for (int k = 0; k < 5000; k++)
                m_msg(&b, 'A', "\0\0\0\1rt28chan\0rt28payload\0", 26);
            break;
        }
        arm('C', "DISCARD ALL", act, &b, RM_GO_ON, 0);
        PQfinish(a);
        PGconn *c = proxy_connect(&px, "alice", "alice-secret", "rz", "connect_timeout=10");
        cr_expect(PQstatus(c) == CONNECTION_OK, "variant %d: the next login failed: %s", v,
                  PQerrorMessage(c));
        if (PQstatus(c) == CONNECTION_OK) {
            for (int k = 0; k < 3; k++) {
                char sql[64], want[32];
                snprintf(want, sizeof(want), "rt28b%d", k);
                snprintf(sql, sizeof(sql), "SELECT '%s'", want);
                PGresult *r = PQexec(c, sql);
                const char *got = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                                      ? PQgetvalue(r, 0, 0)
                                      : PQresultErrorMessage(r);
                cr_expect_str_eq(got, want, "variant %d: the next client's query %d got [%s]", v, k,
                                 got);
                PQclear(r);
            }
        }
        PQfinish(c);
        tcp_relay_mutate_off(relay);
        cr_assert(proxy_alive(), "lakeproxy died (variant %d)", v);
    }
    buf_free(&b);
}

/* ---- 8. floods and oversized status messages in a result ---- */

/* In the middle of a result: 50000 notices, 50000 notifications, a 60 kB and a 200 kB
 * ParameterStatus, an ErrorResponse and a notice without terminators, a 300 kB notice. The
 * client gets its rows (or a clear error) within seconds, lakeproxy stays small and the next
 * client is served. */
Test(redteam28, floods_and_oversized_status_messages, .init = start_rz1, .fini = stop28)
{
    struct buf b;
    buf_init(&b);
    char *big = malloc(300001);
    memset(big, 'p', 300000);
    big[300000] = '\0';
    long peak = 0;
    for (int v = 0; v < 7; v++) {
        switch (v) {
        case 0:
            for (int k = 0; k < 50000; k++)
                m_notice(&b, 'N', "01000", "rt28 flood of notices");
            break;
        case 1:
            for (int k = 0; k < 50000; k++)
                m_msg(&b, 'A', "\0\0\0\1rt28chan\0rt28payload\0", 26);
            break;
        case 2:
            big[60000] = '\0';
            m_param(&b, "application_name", big);
            big[60000] = 'p';
            break;
        case 3:
            big[200000] = '\0';
            m_param(&b, "application_name", big);
            big[200000] = 'p';
            break;
        case 4: m_msg(&b, 'E', "SERROR\0CXX000\0Mno end", 21); break;
        case 5: m_msg(&b, 'N', "SNOTICE\0C01000\0Mno end", 22); break;
        default: m_notice(&b, 'N', "01000", big); break;
        }
        int a = raw_session(px.port, "carol", "rz");
        arm('D', "rt28fl-1", RM_BEFORE, &b, RM_GO_ON, 0);
        raw_query(a, "SELECT 'rt28fl-' || g FROM generate_series(1,3) g");
        struct seen o;
        see(a, 1, 10000, &o);
        long kb = proxy_status_kb(&px, "VmHWM");
        if (kb > peak)
            peak = kb;
        cr_expect(clear_end(&o), "variant %d: the client hangs (types %.40s)", v, o.types);
        cr_expect(o.errors > 0 || o.eof || only_values(o.values, "rt28fl-", 3),
                  "variant %d: the client got [%s]", v, o.values);
        close(a);
        cr_assert(proxy_alive(), "lakeproxy died (variant %d)", v);
        expect_fresh_client_ok("rt28c");
    }
    if (rss_follows_heap())
        cr_expect(peak < 200 * 1024, "lakeproxy peaked at %ld kB", peak);
    free(big);
    buf_free(&b);
}

/* ---- 9. masking and row-level security under a hostile server ---- */

/* Masking, one server shared by an auditor (unmasked) and a masked client: a forged
 * ReadyForQuery cuts the auditor's result before its first row; the masked client queued
 * behind must never get the auditor's unmasked rows. Then DataRows whose column count or
 * lengths lie, in a masked client's result: an error or masked rows, never a secret, no
 * crash. */
Test(redteam28, masked_client_never_gets_unmasked_rows_from_a_forged_reply, .init = start_mask_txn1,
     .fini = stop28)
{
    struct buf b;
    buf_init(&b);
    for (int round = 0; round < 3; round++) {
        int u = raw_session(px.port, "rtu", "rz");
        int m = raw_session(px.port, "rtm", "rz");
        struct seen o;
        raw_query(m, "SELECT email FROM customers"); /* (the masking catalog read first) */
        see(m, 1, 8000, &o);
        cr_assert(o.zs == 1 && !mask_find_secret(o.values, strlen(o.values)), "[%s] %s", o.values,
                  o.first_state);
        m_ready(&b, "ITE"[round]);
        arm('D', "secret", RM_BEFORE, &b, RM_GO_ON, 0);
        raw_query(u, "SELECT email FROM pg_sleep(0.4), customers, generate_series(1,20)");
        usleep(150 * 1000);
        raw_query(m, "SELECT email, ssn FROM customers");
        struct seen ou, om;
        see(u, 1, 6000, &ou);
        see(m, 1, 6000, &om);
        cr_expect(tcp_relay_sprung(relay) == 1, "round %d: the mutation did not spring", round);
        cr_expect(!mask_find_secret(om.values, strlen(om.values)),
                  "round %d: the masked client got an auditor's unmasked rows: [%.200s]", round,
                  om.values);
        cr_expect(clear_end(&om) && clear_end(&ou), "round %d: a client hangs", round);
        close(u);
        close(m);
        cr_assert(proxy_alive(), "lakeproxy died (round %d)", round);
    }
    /* lying DataRows in a masked client's result */
    for (int v = 0; v < 5; v++) {
        int m = raw_session(px.port, "rtm", "rz");
        switch (v) {
        case 0: m_msg(&b, 'D', "\x03\xe8\0\0\0\1x", 7); break;       /* 1000 columns, 1 there */
        case 1: m_msg(&b, 'D', "\0\1\x7f\xff\xff\xffx", 7); break;   /* a 2 GiB column */
        case 2: m_msg(&b, 'D', "\0\1\xff\xff\xff\xfex", 7); break;   /* length -2 */
        case 3: m_msg(&b, 'D', "\0\0xxxxxxxx", 10); break;           /* 0 columns, bytes */
        default: m_msg(&b, 'D', "\0\2\0\0\0\1x\0\0\0\5", 11); break; /* the 2nd column cut */
        }
        arm('D', NULL, RM_REPLACE, &b, RM_GO_ON, 0);
        raw_query(m, "SELECT email FROM customers ORDER BY id");
        struct seen o;
        see(m, 1, 6000, &o);
        cr_expect(tcp_relay_sprung(relay) == 1, "variant %d: the mutation did not spring", v);
        cr_expect(!o.timed_out, "variant %d: the masked client hangs (types %s)", v, o.types);
        cr_expect(!mask_find_secret(o.values, strlen(o.values)),
                  "variant %d: a secret reached the masked client: [%s]", v, o.values);
        close(m);
        tcp_relay_mutate_off(relay);
        cr_assert(proxy_alive(), "lakeproxy died (lying DataRow %d)", v);
    }
    /* and still masked after all that */
    int m = raw_session(px.port, "rtm", "rz");
    struct seen o;
    raw_query(m, "SELECT email, ssn FROM customers");
    see(m, 1, 8000, &o);
    cr_expect(o.zs == 1 && o.errors == 0 && o.rows >= 3 &&
                  !mask_find_secret(o.values, strlen(o.values)),
              "after the attack, the masked client got zs=%d errors=%d rows=%d [%s]", o.zs,
              o.errors, o.rows, o.values);
    close(m);
    buf_free(&b);
}

/* Row-level security, one server shared by tenants 1 and 2: a forged ReadyForQuery in
 * tenant 1's result must not give tenant 2 (queued) tenant 1's rows; a forged ParameterStatus
 * client_encoding (a client-only encoding) or standard_conforming_strings off in a tenant's
 * result closes that client (42501 or a close), and the tenants go on seeing only their own
 * rows. */
Test(redteam28, rls_tenants_survive_forged_replies, .init = start_rls_txn1, .fini = stop28)
{
    struct buf b;
    buf_init(&b);
    for (int round = 0; round < 2; round++) {
        PGconn *t1 = proxy_connect(&px, "t1", "pw", "rz", NULL);
        PGconn *t2 = proxy_connect(&px, "t2", "pw", "rz", NULL);
        cr_assert(PQstatus(t1) == CONNECTION_OK && PQstatus(t2) == CONNECTION_OK, "%s %s",
                  PQerrorMessage(t1), PQerrorMessage(t2));
        m_ready(&b, "IT"[round]);
        arm('D', "rt28t1-", RM_BEFORE, &b, RM_GO_ON, 0);
        cr_assert(PQsendQuery(t1, "SELECT 'rt28t' || tenant_id || '-' || id FROM pg_sleep(0.4), "
                                  "rls_docs ORDER BY id"));
        usleep(150 * 1000);
        cr_assert(PQsendQuery(t2, "SELECT 'rt28t' || tenant_id || '-' || id FROM rls_docs "
                                  "ORDER BY id LIMIT 5"));
        PGresult *r;
        while ((r = PQgetResult(t1)))
            PQclear(r);
        int rows = 0;
        while ((r = PQgetResult(t2))) {
            for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
                rows++;
                cr_expect(strncmp(PQgetvalue(r, i, 0), "rt28t2-", 7) == 0,
                          "round %d: tenant 2 got [%s]", round, PQgetvalue(r, i, 0));
            }
            PQclear(r);
        }
        cr_expect(tcp_relay_sprung(relay) == 1, "round %d: the mutation did not spring", round);
        PQfinish(t1);
        PQfinish(t2);
        cr_assert(proxy_alive(), "lakeproxy died (round %d)", round);
    }
    for (int v = 0; v < 2; v++) {
        PGconn *t1 = proxy_connect(&px, "t1", "pw", "rz", NULL);
        cr_assert(PQstatus(t1) == CONNECTION_OK, "%s", PQerrorMessage(t1));
        if (v == 0)
            m_param(&b, "client_encoding", "SJIS");
        else
            m_param(&b, "standard_conforming_strings", "off");
        arm('D', "rt28enc", RM_BEFORE, &b, RM_GO_ON, 0);
        PGresult *r = PQexec(t1, "SELECT 'rt28enc'");
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        bool refused = PQstatus(t1) == CONNECTION_BAD || (st && strcmp(st, "42501") == 0);
        cr_expect(refused, "variant %d: a forged text setting under RLS was let through (%s %s)", v,
                  st ? st : "-", PQresultErrorMessage(r));
        PQclear(r);
        if (PQstatus(t1) == CONNECTION_OK) { /* if it goes on: still its own tenant */
            char *x = query_value(t1, "SELECT min(tenant_id)::text FROM rls_docs");
            cr_expect_str_eq(x ? x : "", "1");
            free(x);
        }
        PQfinish(t1);
        PGconn *t2 = proxy_connect(&px, "t2", "pw", "rz", NULL);
        cr_assert(PQstatus(t2) == CONNECTION_OK, "%s", PQerrorMessage(t2));
        char *x = query_value(t2, "SELECT min(tenant_id)::text || max(tenant_id)::text FROM "
                                  "rls_docs");
        cr_expect_str_eq(x, "22", "variant %d: tenant 2 sees [%s]", v, x);
        free(x);
        PQfinish(t2);
        cr_assert(proxy_alive(), "lakeproxy died (variant %d)", v);
    }
    buf_free(&b);
}

/* ---- 10. the stream in pieces ---- */

/* From the first RowDescription on, every byte of the server comes in a write of its own
 * (simple and extended protocol, 300 rows): the answers are exact. */
Test(redteam28, a_server_dribbling_one_byte_at_a_time_is_read_right, .init = start_rz1,
     .fini = stop28)
{
    arm('T', NULL, RM_BEFORE, NULL, RM_DRIBBLE, 0);
    int a = raw_session(px.port, "carol", "rz");
    struct seen o;
    raw_query(a, "SELECT 'rt28dr-' || g FROM generate_series(1,300) g");
    see(a, 1, 20000, &o);
    cr_expect(o.zs == 1 && o.errors == 0 && o.rows == 300 && only_values(o.values, "rt28dr-", -1),
              "simple: zs=%d errors=%d rows=%d", o.zs, o.errors, o.rows);
    struct buf q;
    buf_init(&q);
    raw_put_parse(&q, "s1", "SELECT 'rt28dx-' || g FROM generate_series(1,50) g");
    raw_put_bind(&q, "", "s1");
    raw_put_execute(&q, "");
    raw_put_empty(&q, 'S');
    raw_put_bind(&q, "", "s1");
    raw_put_execute_n(&q, "", 10);
    raw_put_empty(&q, 'S');
    cr_assert(raw_send(a, &q));
    see(a, 2, 20000, &o);
    cr_expect(o.zs == 2 && o.errors == 0 && o.rows == 60 && only_values(o.values, "rt28dx-", -1),
              "extended: zs=%d errors=%d rows=%d types %.60s", o.zs, o.errors, o.rows, o.types);
    buf_free(&q);
    close(a);
    cr_expect(proxy_alive());
}
