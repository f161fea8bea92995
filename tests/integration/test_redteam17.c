/* test_redteam17.c: red-team round 17 on DATA CORRECTNESS through lakeproxy ("no lost or
 * altered row"). A differential test: the same seeded, reproducible raw-protocol workloads run
 * against PostgreSQL directly and through lakeproxy (transaction pooling with pool size 1 and
 * 2, session pooling), and the transcripts of every server message (values, NULLs, row
 * descriptions, formats, command tags, SQLSTATEs, notices, ParameterStatus) must be identical.
 * BackendKeyData and the PID of a notification are left out (they legitimately differ). Each
 * test asserts the SAFE behaviour: a failing test is a finding.
 *
 * Found (transaction pooling; session pooling held everywhere):
 *  - a client's named-statement records go wrong when PostgreSQL skips or refuses a Parse or
 *    Close (after an error before its Sync, or in an aborted block): a skipped Parse of a name
 *    in use redefines it (Bind returns 2 where PostgreSQL returns 1), a skipped Close drops it
 *    (the next Parse is accepted instead of 42P05, and runs the new text), a Parse in an aborted
 *    block or a skipped one whose text the server has cached gets a made-up ParseComplete,
 *    Describe or even rows where PostgreSQL says 25P02/26000, and a Bind of a failed Parse gets
 *    26000 naming lakeproxy's "lp_<md5>" instead of the client's name (txn1_skipped_*,
 *    txn1_parse_in_aborted_block_answered, txn1_describe_of_skipped_parse_answered,
 *    txn1_bind_*, *_named_scenarios, *_random_pipelines*);
 *  - a setting (SET, set_config, SET in a DO block or a multi-statement string) sent in the
 *    same pipeline ahead of a named Parse, not awaited: the Parse is answered from a statement
 *    the server holds prepared under another client's settings, and its rows are read by those
 *    (dates by the wrong DateStyle, timestamptz in the wrong TimeZone)
 *    (*_setting_pipelined_before_named_parse, *_settings_apart); awaited, it holds
 *    (txn1_context_after_setting_awaited). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "rawproto.h"
#include "sidebyside.h"

TestSuite(redteam17, .timeout = 180);

/* ---- transcripts ---------------------------------------------------------------------- */

struct tx {
    char *s;
    size_t len, cap;
};

static void tx_add(struct tx *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tx_add(struct tx *t, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(tmp))
        n = sizeof(tmp) - 1;
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->s = realloc(t->s, t->cap);
    }
    memcpy(t->s + t->len, tmp, n + 1);
    t->len += n;
}

static uint64_t fnv(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static const char *field_of(const unsigned char *b, size_t len, char code)
{
    size_t i = 0;
    while (i < len && b[i]) {
        char f = (char)b[i++];
        const char *v = (const char *)b + i;
        size_t l = strnlen(v, len - i);
        if (f == code)
            return v;
        i += l + 1;
    }
    return "";
}

/* One server message as a transcript token. */
static void tx_msg(struct tx *t, int type, const unsigned char *b, size_t len)
{
    switch (type) {
    case 'K': return; /* BackendKeyData: differs legitimately */
    case 'E':
    case 'N':
        tx_add(t, "%c[%s/%s/%s] ", type, field_of(b, len, 'V'), field_of(b, len, 'C'),
               field_of(b, len, 'M'));
        return;
    case 'A': /* pid, channel, payload */
        if (len >= 4) {
            const char *ch = (const char *)b + 4;
            tx_add(t, "A[%s/%.200s] ", ch, ch + strnlen(ch, len - 4) + 1);
        }
        return;
    case 'S':
        tx_add(t, "S[%s=%s] ", (const char *)b,
               (const char *)b + strnlen((const char *)b, len) + 1);
        return;
    case 'C': tx_add(t, "C[%.*s] ", (int)len - 1, (const char *)b); return;
    case 'Z': tx_add(t, "Z%c\n", len ? b[0] : '?'); return;
    default:
        if (len <= 48) {
            tx_add(t, "%c<", type);
            for (size_t i = 0; i < len; i++)
                tx_add(t, "%02x", b[i]);
            tx_add(t, "> ");
        } else
            tx_add(t, "%c<%zu:%016llx> ", type, len, (unsigned long long)fnv(b, len));
    }
}

/* Writes out (all of it) to fd while reading the server's messages into t, until nz
 * ReadyForQuery came or timeout_ms passed; returns the ReadyForQuery count. Nonblocking both
 * ways so a long pipeline cannot deadlock against the server's replies. stop_after_bytes: if
 * nonzero, returns once that many bytes were read (the rest left unread). */
static int exchange_ex(int fd, const struct buf *out, struct tx *t, int nz, int timeout_ms,
                       size_t stop_after_bytes)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    size_t off = 0, inlen = 0, incap = 1 << 16, total = 0;
    unsigned char *in = malloc(incap);
    int z = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (z < nz || (out && off < out->len)) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long el = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (el > timeout_ms) {
            tx_add(t, "TIMEOUT(z=%d,written=%zu) ", z, off);
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN | (out && off < out->len ? POLLOUT : 0)};
        if (poll(&p, 1, 200) <= 0)
            continue;
        if ((p.revents & POLLOUT) && out && off < out->len) {
            ssize_t w = write(fd, out->data + off, out->len - off);
            if (w > 0)
                off += (size_t)w;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (incap - inlen < 65536) {
                incap *= 2;
                in = realloc(in, incap);
            }
            ssize_t r = read(fd, in + inlen, incap - inlen);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                tx_add(t, "EOF ");
                break;
            }
            if (r < 0)
                continue;
            inlen += (size_t)r;
            total += (size_t)r;
            size_t pos = 0;
            while (inlen - pos >= 5) {
                uint32_t l = ((uint32_t)in[pos + 1] << 24) | ((uint32_t)in[pos + 2] << 16) |
                             ((uint32_t)in[pos + 3] << 8) | in[pos + 4];
                if (inlen - pos < 1 + (size_t)l)
                    break;
                tx_msg(t, in[pos], in + pos + 5, l - 4);
                if (in[pos] == 'Z')
                    z++;
                pos += 1 + l;
            }
            memmove(in, in + pos, inlen - pos);
            inlen -= pos;
            if (stop_after_bytes && total >= stop_after_bytes)
                break;
        }
    }
    free(in);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return z;
}

static int exchange(int fd, const struct buf *out, struct tx *t, int nz)
{
    return exchange_ex(fd, out, t, nz, 30000, 0);
}

/* ---- comparing PostgreSQL's transcripts with lakeproxy's --------------------------------- */

#define SLOTS 128
static char *saved[SLOTS];

/* Records (on PostgreSQL) or compares (through lakeproxy) transcript slot. */
static void check(const struct target *tg, int slot, const char *label, struct tx *t)
{
    const char *got = t->s ? t->s : "";
    if (!tg->p) {
        free(saved[slot]);
        saved[slot] = strdup(got);
    } else {
        const char *want = saved[slot] ? saved[slot] : "(nothing)";
        if (strcmp(want, got) != 0) {
            const char *dir = getenv("RT17_DUMP");
            if (dir) {
                char path[512];
                snprintf(path, sizeof(path), "%s/%s-%d-pg.txt", dir, tg->name, slot);
                FILE *f = fopen(path, "w");
                if (f) {
                    fputs(want, f);
                    fclose(f);
                }
                snprintf(path, sizeof(path), "%s/%s-%d-lp.txt", dir, tg->name, slot);
                f = fopen(path, "w");
                if (f) {
                    fputs(got, f);
                    fclose(f);
                }
            }
            size_t i = 0;
            while (want[i] && want[i] == got[i])
                i++;
            size_t from = i > 200 ? i - 200 : 0;
            cr_expect(0,
                      "%s: %s: transcripts differ at byte %zu (of %zu/%zu)\n"
                      "  PostgreSQL: ...%.500s\n  lakeproxy : ...%.500s",
                      tg->name, label, i, strlen(want), strlen(got), want + from, got + from);
        }
    }
    free(t->s);
    t->s = NULL;
    t->len = t->cap = 0;
}

static int raw_fd(PGconn *c)
{
    return PQsocket(c);
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static PGconn *client(const struct target *t)
{
    PGconn *c = open_with(t, NULL);
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

#define IN_THREE_MODES(name, steps)                                                                \
    Test(redteam17, txn1_##name)                                                                   \
    {                                                                                              \
        on_postgresql_and_through("transaction", 1, steps);                                        \
    }                                                                                              \
    Test(redteam17, txn2_##name)                                                                   \
    {                                                                                              \
        on_postgresql_and_through("transaction", 2, steps);                                        \
    }                                                                                              \
    Test(redteam17, session_##name)                                                                \
    {                                                                                              \
        on_postgresql_and_through("session", 1, steps);                                            \
    }

/* ---- message builders --------------------------------------------------------------------- */

static void put_parse(struct buf *b, const char *name, const char *sql, int ntypes,
                      const uint32_t *types)
{
    buf_msg_start(b, 'P');
    buf_put_str(b, name);
    buf_put_str(b, sql);
    buf_put_u16(b, (uint16_t)ntypes);
    for (int i = 0; i < ntypes; i++)
        buf_put_u32(b, types[i]);
    buf_msg_finish(b);
}

/* Bind with nparams text parameters (NULL: SQL NULL, lens given) and one result format code
 * for all columns (0 text, 1 binary), or none when rfmt < 0. */
static void put_bind(struct buf *b, const char *portal, const char *stmt, int nparams,
                     const char *const *vals, const size_t *lens, int pfmt, int rfmt)
{
    buf_msg_start(b, 'B');
    buf_put_str(b, portal);
    buf_put_str(b, stmt);
    if (nparams && pfmt) {
        buf_put_u16(b, 1);
        buf_put_u16(b, (uint16_t)pfmt);
    } else
        buf_put_u16(b, 0);
    buf_put_u16(b, (uint16_t)nparams);
    for (int i = 0; i < nparams; i++) {
        if (!vals[i])
            buf_put_u32(b, 0xffffffffu);
        else {
            size_t l = lens ? lens[i] : strlen(vals[i]);
            buf_put_u32(b, (uint32_t)l);
            buf_put_bytes(b, vals[i], l);
        }
    }
    if (rfmt < 0)
        buf_put_u16(b, 0);
    else {
        buf_put_u16(b, 1);
        buf_put_u16(b, (uint16_t)rfmt);
    }
    buf_msg_finish(b);
}

static void put_query(struct buf *b, const char *sql)
{
    buf_msg_start(b, 'Q');
    buf_put_str(b, sql);
    buf_msg_finish(b);
}

/* ---- seeded randomness -------------------------------------------------------------------- */

static uint64_t rng;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* Sizes around lakeproxy's buffer bounds (8 KiB, 64 KiB, 256 KiB) and libpq's. */
static const int edges[] = {0,      1,      8186,   8187,   8192,       8193,   16384,
                            65519,  65530,  65536,  65537,  131072,     262133, 262139,
                            262144, 262145, 262149, 524288, 1048576 + 3};

/* A random deterministic extended-protocol statement (no parameters). */
static void random_sql(char *sql, size_t sz)
{
    switch (rnd(12)) {
    case 0:
        snprintf(sql, sz,
                 "SELECT g, repeat(chr(65 + g %% 26), g * %u), CASE WHEN g %% 3 = 0 THEN NULL "
                 "ELSE g::text END, g::numeric / 7 FROM generate_series(1, %u) g",
                 rnd(50), 1 + rnd(300));
        break;
    case 1:
        snprintf(sql, sz, "SELECT repeat('ab', %d / 2) || 'z', %u::int8",
                 edges[rnd(sizeof(edges) / sizeof(edges[0]))], rnd(1000));
        break;
    case 2: snprintf(sql, sz, "SELECT 1 / (%u - %u)", rnd(3), rnd(3)); break;
    case 3: snprintf(sql, sz, "SELECT '%c'::int", 'a' + rnd(2) * 15); break;
    case 4: snprintf(sql, sz, "DO $$BEGIN RAISE NOTICE 'note %u'; END$$", rnd(100)); break;
    case 5: snprintf(sql, sz, "%s", ""); break;
    case 6:
        snprintf(sql, sz, "SELECT decode(repeat('ff00', %d), 'hex')",
                 edges[rnd(sizeof(edges) / sizeof(edges[0]))]);
        break;
    case 7:
        snprintf(sql, sz, "VALUES (1, 'a', NULL::text), (2, NULL, 'b'), (%u, '', '')", rnd(99));
        break;
    case 8:
        snprintf(sql, sz,
                 "SELECT x, x::float8 / 3, array[x, x+1], (x, 'r')::record::text, "
                 "'2024-01-01'::date + x FROM generate_series(1, %u) x",
                 1 + rnd(2000));
        break;
    case 9: snprintf(sql, sz, "SELECT %u AS n WHERE false", rnd(10)); break;
    case 10: snprintf(sql, sz, "SELECT pg_sleep(0), 'k%u'", rnd(100)); break;
    default: snprintf(sql, sz, "SELECT * FROM (VALUES (1), (2)) v(a), nosuch_%u", rnd(5)); break;
    }
}

/* One seeded pipeline: segments of extended-protocol messages, each ended by Sync (or a
 * Flush before it), with named statements reused across segments, named portals fetched in
 * parts inside transaction blocks, Describe, Close, binary results, errors. Returns the Sync
 * count. */
static bool clean; /* named statements only parsed up front, valid, never closed */

static void safe_sql(char *sql, size_t sz)
{
    static const int safe[] = {0, 1, 6, 7, 8, 9};
    for (;;) {
        uint64_t keep = rng;
        random_sql(sql, sz);
        (void)keep;
        if (strncmp(sql, "SELECT g,", 9) == 0 || strncmp(sql, "SELECT repeat", 13) == 0 ||
            strncmp(sql, "SELECT decode", 13) == 0 || strncmp(sql, "VALUES", 6) == 0 ||
            strncmp(sql, "SELECT x,", 9) == 0 || strstr(sql, "WHERE false"))
            return;
    }
    (void)safe;
}

static void stmt_name(char *name, size_t sz, uint64_t seed, uint32_t i)
{
    if (clean)
        snprintf(name, sz, "c%llu_%u", (unsigned long long)seed, i);
    else
        snprintf(name, sz, "s%u", i);
}

static int random_pipeline(struct buf *b, uint64_t seed)
{
    rng = seed * 0x9E3779B97F4A7C15ull + 1;
    int syncs = 0, nstmt = 0;
    if (clean) {
        char q[512], nm[32];
        for (; nstmt < 6; nstmt++) {
            safe_sql(q, sizeof(q));
            snprintf(nm, sizeof(nm), "c%llu_%d", (unsigned long long)seed, nstmt);
            put_parse(b, nm, q, 0, NULL);
        }
        raw_put_empty(b, 'S');
        syncs++;
    }
    char sql[512], name[32];
    int segments = 4 + (int)rnd(8);
    for (int s = 0; s < segments; s++) {
        bool block = rnd(3) == 0;
        if (block) {
            put_parse(b, "", "BEGIN", 0, NULL);
            put_bind(b, "", "", 0, NULL, NULL, 0, -1);
            raw_put_execute_n(b, "", 0);
        }
        int ops = 1 + (int)rnd(6);
        for (int o = 0; o < ops; o++) {
            int rf = (int)rnd(3) - 1; /* -1 default, 0 text, 1 binary */
            switch (rnd(7)) {
            case 0:
            case 1: /* unnamed parse/bind/(describe)/execute */
                random_sql(sql, sizeof(sql));
                put_parse(b, "", sql, 0, NULL);
                put_bind(b, "", "", 0, NULL, NULL, 0, rf);
                if (rnd(2))
                    raw_put_describe(b, 'P', "");
                raw_put_execute_n(b, "", 0);
                break;
            case 2: /* a new named statement, described */
                if (clean) {
                    stmt_name(name, sizeof(name), seed, rnd(6));
                    raw_put_describe(b, 'S', name);
                    break;
                }
                random_sql(sql, sizeof(sql));
                snprintf(name, sizeof(name), "s%d", nstmt++);
                put_parse(b, name, sql, 0, NULL);
                raw_put_describe(b, 'S', name);
                break;
            case 3: /* an earlier named statement, run again (maybe closed: 26000) */
                if (nstmt) {
                    stmt_name(name, sizeof(name), seed, rnd((uint32_t)nstmt));
                    put_bind(b, "", name, 0, NULL, NULL, 0, rf);
                    raw_put_execute_n(b, "", 0);
                }
                break;
            case 4: /* two named portals fetched in parts, interleaved */
                if (nstmt) {
                    uint32_t a = rnd((uint32_t)nstmt), c = rnd((uint32_t)nstmt);
                    stmt_name(name, sizeof(name), seed, a);
                    put_bind(b, "pa", name, 0, NULL, NULL, 0, rf);
                    stmt_name(name, sizeof(name), seed, c);
                    put_bind(b, "pb", name, 0, NULL, NULL, 0, 1 - (rf < 0 ? 0 : rf));
                    for (int k = 0; k < 3; k++) {
                        raw_put_execute_n(b, "pa", 1 + rnd(40));
                        raw_put_execute_n(b, "pb", 1 + rnd(40));
                    }
                    if (rnd(2))
                        raw_put_describe(b, 'P', "pa");
                    raw_put_execute_n(b, "pa", 0);
                    raw_put_close(b, 'P', "pa");
                    raw_put_close(b, 'P', "pb");
                }
                break;
            case 5: /* close a named statement */
                if (nstmt && !clean) {
                    snprintf(name, sizeof(name), "s%u", rnd((uint32_t)nstmt));
                    raw_put_close(b, 'S', name);
                }
                break;
            default: /* a Flush in the middle */ raw_put_empty(b, 'H'); break;
            }
        }
        if (block && clean) { /* the block's end in a Sync of its own: it always ends */
            raw_put_empty(b, 'S');
            syncs++;
        }
        if (block) {
            put_parse(b, "", rnd(2) ? "COMMIT" : "ROLLBACK", 0, NULL);
            put_bind(b, "", "", 0, NULL, NULL, 0, -1);
            raw_put_execute_n(b, "", 0);
        }
        raw_put_empty(b, 'S');
        syncs++;
    }
    return syncs;
}

/* ---- attacks ------------------------------------------------------------------------------ */

/* Seeded random extended-protocol pipelines, one connection, one write each. */
static void random_pipelines(const struct target *t)
{
    PGconn *c = client(t);
    int fd = raw_fd(c);
    for (int seed = 1; seed <= 24; seed++) {
        struct buf b;
        buf_init(&b);
        int n = random_pipeline(&b, (uint64_t)seed);
        struct tx x = {0};
        int z = exchange(fd, &b, &x, n);
        char label[32];
        snprintf(label, sizeof(label), "seed %d", seed);
        cr_expect_eq(z, n, "%s: %s: %d of %d ReadyForQuery", t->name, label, z, n);
        check(t, seed, label, &x);
        buf_free(&b);
    }
    PQfinish(c);
}
IN_THREE_MODES(random_pipelines, random_pipelines)

/* The same pipelines, but the whole batch of all seeds written at once behind one another. */
static void random_pipelines_one_write(const struct target *t)
{
    PGconn *c = client(t);
    int fd = raw_fd(c);
    struct buf b;
    buf_init(&b);
    int n = 0;
    for (int seed = 101; seed <= 130; seed++)
        n += random_pipeline(&b, (uint64_t)seed);
    struct tx x = {0};
    int z = exchange(fd, &b, &x, n);
    cr_expect_eq(z, n, "%s: %d of %d ReadyForQuery", t->name, z, n);
    check(t, 0, "seeds 101..130 in one write", &x);
    buf_free(&b);
    PQfinish(c);
}
IN_THREE_MODES(random_pipelines_one_write, random_pipelines_one_write)

/* Simple-protocol multi-statement strings with an error in the middle, notices, empty
 * statements, transaction blocks, SET of reported settings. */
static void simple_multi(const struct target *t)
{
    PGconn *c = client(t);
    int fd = raw_fd(c);
    static const char *const qs[] = {
        "SELECT 1; SELECT 2; SELECT 1/0; SELECT 3",
        "",
        ";;;",
        "SELECT 'a' \\g",
        "BEGIN; SELECT 1; SELECT 'x'::int; SELECT 2; COMMIT",
        "ROLLBACK",
        "DO $$BEGIN RAISE NOTICE 'one'; RAISE WARNING 'two'; END$$; SELECT repeat('q', 70000)",
        "SELECT g, NULL, repeat('r', g) FROM generate_series(1, 3000) g; SELECT 9",
        "BEGIN; SELECT 1/0; SELECT 2",
        "SELECT 3",
        "COMMIT; SELECT 4",
        "SET application_name = 'rt17-a'; SELECT current_setting('application_name')",
        "SET DateStyle = 'SQL, DMY'; SELECT '2024-02-03'::date",
        "RESET DateStyle; SELECT '2024-02-03'::date",
        "SET extra_float_digits = 0; SELECT 1.0::float8/3",
        "RESET extra_float_digits; SELECT 1.0::float8/3",
        "SET TimeZone = 'Asia/Tokyo'; SELECT '2024-01-01 00:00:00+00'::timestamptz",
        "RESET TimeZone; RESET application_name; SELECT '2024-01-01 00:00:00+00'::timestamptz",
        "SELECT 1 AS a, 2 AS a; SELECT",
        "SELECT 'x' FROM nosuch_rt17; SELECT 'after'",
    };
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        struct buf b;
        buf_init(&b);
        put_query(&b, qs[i]);
        struct tx x = {0};
        exchange(fd, &b, &x, 1);
        check(t, (int)i, qs[i], &x);
        buf_free(&b);
    }
    PQfinish(c);
}
IN_THREE_MODES(simple_multi, simple_multi)

/* Large values as parameters (text and binary) and results, around the buffer bounds. */
static void huge_values(const struct target *t)
{
    PGconn *c = client(t);
    int fd = raw_fd(c);
    static const size_t sizes[] = {8191,   8192,   65535,  65536,  65537,   262139,
                                   262140, 262144, 262145, 524289, 3 << 20, (5 << 20) + 7};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        char *v = malloc(n);
        for (size_t k = 0; k < n; k++)
            v[k] = (char)('a' + (k * 7 + i) % 26);
        struct buf b;
        buf_init(&b);
        /* text parameter echoed back in text, md5 and length; then as bytea in binary */
        uint32_t ty[1] = {25};
        const char *vals[1] = {v};
        size_t lens[1] = {n};
        put_parse(&b, "", "SELECT $1, md5($1), length($1)", 1, ty);
        put_bind(&b, "", "", 1, vals, lens, 0, 0);
        raw_put_execute_n(&b, "", 0);
        raw_put_empty(&b, 'S');
        uint32_t by[1] = {17};
        put_parse(&b, "", "SELECT $1, md5($1), $1 || '\\x00'::bytea", 1, by);
        put_bind(&b, "", "", 1, vals, lens, 1, 1);
        raw_put_execute_n(&b, "", 0);
        raw_put_empty(&b, 'S');
        struct tx x = {0};
        exchange(fd, &b, &x, 2);
        char label[64];
        snprintf(label, sizeof(label), "value of %zu bytes", n);
        check(t, (int)i, label, &x);
        buf_free(&b);
        free(v);
    }
    PQfinish(c);
}
IN_THREE_MODES(huge_values, huge_values)

/* COPY TO STDOUT of ~20 MB and COPY FROM STDIN of large rows (into a table of the
 * transaction, then checksummed), with an error in the middle of one COPY. */
static void copy_both_ways(const struct target *t)
{
    PGconn *c = client(t);
    int fd = raw_fd(c);
    struct buf b;
    struct tx x = {0};
    buf_init(&b);
    put_query(&b, "COPY (SELECT g, repeat(md5(g::text), g % 200), CASE WHEN g % 7 = 0 THEN "
                  "NULL ELSE g END FROM generate_series(1, 60000) g) TO STDOUT");
    put_query(&b, "COPY (SELECT g, decode(repeat('00ff', g), 'hex') FROM generate_series(1, 3000, "
                  "37) g) TO STDOUT (FORMAT binary)");
    exchange(fd, &b, &x, 2);
    check(t, 0, "COPY TO STDOUT", &x);
    buf_reset(&b);

    for (int bad = 0; bad < 2; bad++) {
        put_query(&b, "BEGIN; CREATE TEMP TABLE rt17_in(a int, b text) ON COMMIT DROP; "
                      "COPY rt17_in FROM STDIN");
        char line[300000];
        for (int r = 1; r <= 400; r++) {
            size_t len = (size_t)(r * 611 % 290000);
            int n = snprintf(line, 64, "%d\t", (bad && r == 250) ? -1 : r);
            if (bad && r == 250)
                n = snprintf(line, 64, "oops\t");
            memset(line + n, 'a' + r % 26, len);
            line[n + len] = '\n';
            /* split some rows across CopyData messages */
            size_t total = n + len + 1, cut = r % 3 ? total : total / 2;
            raw_put_copy_data(&b, line, cut);
            if (cut < total)
                raw_put_copy_data(&b, line + cut, total - cut);
        }
        raw_put_empty(&b, 'c');
        put_query(&b, "SELECT count(*), sum(a), md5(string_agg(b, ',' ORDER BY a)) FROM rt17_in");
        put_query(&b, "COMMIT");
        exchange(fd, &b, &x, 3);
        check(t, 1 + bad, bad ? "COPY FROM STDIN with a bad row" : "COPY FROM STDIN", &x);
        buf_reset(&b);
    }
    buf_free(&b);
    PQfinish(c);
}
IN_THREE_MODES(copy_both_ways, copy_both_ways)

/* FunctionCall ('F') of md5(text) and int4pl, with text and binary results. */
static void function_calls(const struct target *t)
{
    PGconn *c = client(t);
    char *md5oid = value_of(t, c, "SELECT 'md5(text)'::regprocedure::oid");
    char *int4pl = value_of(t, c, "SELECT 'int4pl'::regproc::oid");
    int fd = raw_fd(c);
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < 6; i++) {
        buf_msg_start(&b, 'F');
        buf_put_u32(&b, (uint32_t)atol(i % 2 ? int4pl : md5oid));
        buf_put_u16(&b, 0);
        if (i % 2) {
            buf_put_u16(&b, 2);
            buf_put_u32(&b, 1);
            buf_put_bytes(&b, i == 5 ? "x" : "7", 1);
            buf_put_u32(&b, 2);
            buf_put_bytes(&b, "35", 2);
        } else {
            buf_put_u16(&b, 1);
            char v[100000];
            size_t n = i == 4 ? sizeof(v) : (size_t)(i * 10);
            memset(v, 'm', n);
            buf_put_u32(&b, (uint32_t)n);
            buf_put_bytes(&b, v, n);
        }
        buf_put_u16(&b, (uint16_t)(i / 2 % 2));
        buf_msg_finish(&b);
    }
    put_query(&b, "SELECT 'after calls'");
    struct tx x = {0};
    exchange(fd, &b, &x, 7);
    check(t, 0, "FunctionCall", &x);
    buf_free(&b);
    free(md5oid);
    free(int4pl);
    PQfinish(c);
}
IN_THREE_MODES(function_calls, function_calls)

/* A client that disconnects in the middle of a large result; the next client on the only
 * server must get exactly its own answers. */
static void disconnect_mid_result(const struct target *t)
{
    for (int round = 0; round < 3; round++) {
        PGconn *a = client(t);
        struct buf b;
        buf_init(&b);
        if (round == 1) {
            put_query(&b, "BEGIN; SELECT g, repeat('z', 1000) FROM generate_series(1, 200000) g");
        } else if (round == 2) {
            put_query(&b, "COPY (SELECT g, repeat('c', 500) FROM generate_series(1, 200000) g) "
                          "TO STDOUT");
        } else {
            put_parse(&b, "", "SELECT g, repeat('z', 1000) FROM generate_series(1, 200000) g", 0,
                      NULL);
            put_bind(&b, "", "", 0, NULL, NULL, 0, -1);
            raw_put_execute_n(&b, "", 0);
            raw_put_empty(&b, 'S');
        }
        struct tx junk = {0};
        exchange_ex(PQsocket(a), &b, &junk, 1, 5000, 300000);
        free(junk.s);
        buf_free(&b);
        PQfinish(a);

        PGconn *c2 = client(t);
        struct tx x = {0};
        buf_init(&b);
        put_query(&b, "SELECT 'second client', current_setting('transaction_isolation'), "
                      "count(*) FROM generate_series(1, 1000)");
        put_parse(&b, "", "SELECT g FROM generate_series(1, 5) g", 0, NULL);
        put_bind(&b, "", "", 0, NULL, NULL, 0, 1);
        raw_put_execute_n(&b, "", 0);
        raw_put_empty(&b, 'S');
        exchange(PQsocket(c2), &b, &x, 2);
        char label[48];
        snprintf(label, sizeof(label), "after a disconnect, round %d", round);
        check(t, round, label, &x);
        buf_free(&b);
        PQfinish(c2);
    }
}
IN_THREE_MODES(disconnect_mid_result, disconnect_mid_result)

/* Two clients interleaving pipelines on one server (transaction pooling, pool size 1): each
 * client's answers (marked with its own tag) must be its own and complete. */
struct side {
    const struct target *t;
    int fd, who;
    struct tx x;
};

static void *side_run(void *arg)
{
    struct side *s = arg;
    struct buf b;
    buf_init(&b);
    char sql[256];
    for (int i = 0; i < 300; i++) {
        snprintf(sql, sizeof(sql),
                 "SELECT %d, %d, repeat('w', %d), g FROM generate_series(1, %d) g", s->who, i,
                 (i * 997) % 70000, 1 + i % 7);
        put_parse(&b, "", sql, 0, NULL);
        put_bind(&b, "", "", 0, NULL, NULL, 0, i % 2);
        raw_put_execute_n(&b, "", 0);
        if (i % 50 == 17) {
            put_parse(&b, "", "SELECT 1/0", 0, NULL);
            put_bind(&b, "", "", 0, NULL, NULL, 0, -1);
            raw_put_execute_n(&b, "", 0);
        }
        raw_put_empty(&b, 'S');
    }
    exchange(s->fd, &b, &s->x, 300);
    buf_free(&b);
    return NULL;
}

static void two_clients(const struct target *t)
{
    PGconn *c[2];
    struct side s[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        c[i] = client(t);
        s[i] = (struct side){.t = t, .fd = PQsocket(c[i]), .who = i};
    }
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, side_run, &s[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        check(t, i, i ? "client 1" : "client 0", &s[i].x);
        PQfinish(c[i]);
    }
}
Test(redteam17, txn1_two_clients)
{
    on_postgresql_and_through("transaction", 1, two_clients);
}
Test(redteam17, txn2_two_clients)
{
    on_postgresql_and_through("transaction", 2, two_clients);
}
Test(redteam17, session2_two_clients) /* session pooling needs a server per client */
{
    on_postgresql_and_through("session", 2, two_clients);
}

/* Cancels racing completion: the follow-up query's answer must be its own. The cancelled
 * query's own outcome may legitimately differ (a race) and is not compared. */
static void cancel_races(const struct target *t)
{
    PGconn *c = client(t);
    struct tx x = {0};
    for (int i = 0; i < 30; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT pg_sleep(%d / 1000.0), %d", i % 5, i);
        cr_assert(PQsendQuery(c, sql));
        if (i % 3)
            usleep((useconds_t)(i % 6) * 500);
        PGcancel *k = PQgetCancel(c);
        char err[256];
        PQcancel(k, err, sizeof(err));
        PQfreeCancel(k);
        PGresult *r;
        while ((r = PQgetResult(c)) != NULL)
            PQclear(r);
        snprintf(sql, sizeof(sql), "SELECT 'follow-up %d', g FROM generate_series(1, %d) g", i,
                 1 + i % 4);
        r = PQexec(c, sql);
        tx_add(&x, "%d:%s:", i, PQresStatus(PQresultStatus(r)));
        for (int row = 0; row < PQntuples(r); row++)
            tx_add(&x, "%s,%s;", PQgetvalue(r, row, 0), PQgetvalue(r, row, 1));
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            tx_add(&x, "%s", PQresultErrorField(r, PG_DIAG_SQLSTATE));
        tx_add(&x, "\n");
        PQclear(r);
    }
    check(t, 0, "follow-ups after cancels", &x);
    PQfinish(c);
}
IN_THREE_MODES(cancel_races, cancel_races)

/* A long pipeline: more queries in flight than lakeproxy's per-client record ring holds
 * (QT_CAP 65536), with Syncs between them, so every reply must still be matched in order. */
static void long_pipeline(const struct target *t)
{
    PGconn *c = client(t);
    int fd = raw_fd(c);
    struct buf b;
    buf_init(&b);
    put_parse(&b, "lp", "SELECT 42", 0, NULL);
    raw_put_empty(&b, 'S');
    int n = 1;
    for (int i = 0; i < 70000; i++) {
        put_bind(&b, "", "lp", 0, NULL, NULL, 0, i % 2);
        raw_put_execute_n(&b, "", 0);
        if (i % 4 == 3 || i == 69999) {
            raw_put_empty(&b, 'S');
            n++;
        }
    }
    put_query(&b, "SELECT 'end'");
    n++;
    struct tx x = {0};
    int z = exchange_ex(fd, &b, &x, n, 60000, 0);
    cr_expect_eq(z, n, "%s: %d of %d ReadyForQuery", t->name, z, n);
    check(t, 0, "70000 executes", &x);
    buf_free(&b);
    PQfinish(c);
}
Test(redteam17, txn1_long_pipeline)
{
    on_postgresql_and_through("transaction", 1, long_pipeline);
}
Test(redteam17, session_long_pipeline)
{
    on_postgresql_and_through("session", 1, long_pipeline);
}

/* LISTEN/NOTIFY interleaved with results (session pooling only: LISTEN needs a session). */
static void notifies(const struct target *t)
{
    PGconn *c = client(t);
    int fd = raw_fd(c);
    struct buf b;
    buf_init(&b);
    put_query(&b, "LISTEN rt17");
    for (int i = 0; i < 50; i++) {
        char sql[200];
        snprintf(sql, sizeof(sql),
                 "SELECT pg_notify('rt17', repeat('p', %d)); DO $$BEGIN RAISE NOTICE 'n%d'; "
                 "END$$; SELECT repeat('v', %d)",
                 i * 131, i, i * 1500);
        put_query(&b, sql);
    }
    put_query(&b, "UNLISTEN *");
    struct tx x = {0};
    exchange(fd, &b, &x, 52);
    check(t, 0, "NOTIFY interleaved", &x);
    buf_free(&b);
    PQfinish(c);
}
Test(redteam17, session_notifies)
{
    on_postgresql_and_through("session", 1, notifies);
}

/* ---- small named-statement scenarios distilled from the random pipelines' differences ---- */

static void pbe(struct buf *b, const char *stmt, const char *sql)
{
    if (sql)
        put_parse(b, stmt, sql, 0, NULL);
    put_bind(b, "", stmt, 0, NULL, NULL, 0, -1);
    raw_put_execute_n(b, "", 0);
}
static void sync_(struct buf *b, int *n)
{
    raw_put_empty(b, 'S');
    (*n)++;
}

static int scenario(struct buf *b, int k)
{
    int n = 0;
    switch (k) {
    case 0: /* Bind to a statement the client closed */
        put_parse(b, "s0", "SELECT 1", 0, NULL);
        sync_(b, &n);
        raw_put_close(b, 'S', "s0");
        sync_(b, &n);
        pbe(b, "s0", NULL);
        sync_(b, &n);
        break;
    case 1: /* Parse of a name already in use: 42P05, the old statement stays */
        put_parse(b, "s0", "SELECT 1", 0, NULL);
        sync_(b, &n);
        put_parse(b, "s0", "SELECT 2", 0, NULL);
        sync_(b, &n);
        pbe(b, "s0", NULL);
        sync_(b, &n);
        break;
    case 2: /* Parse in an aborted transaction block: 25P02, no statement */
        pbe(b, "", "BEGIN");
        pbe(b, "", "SELECT 1/0");
        sync_(b, &n);
        put_parse(b, "s0", "SELECT 1", 0, NULL);
        sync_(b, &n);
        pbe(b, "", "ROLLBACK");
        sync_(b, &n);
        pbe(b, "s0", NULL);
        sync_(b, &n);
        break;
    case 3: /* a statement parsed in a block that rolls back stays */
        pbe(b, "", "BEGIN");
        sync_(b, &n);
        put_parse(b, "s0", "SELECT 3", 0, NULL);
        sync_(b, &n);
        pbe(b, "", "ROLLBACK");
        sync_(b, &n);
        pbe(b, "s0", NULL);
        sync_(b, &n);
        break;
    case 4: /* Parse that fails (unknown column): no statement */
        put_parse(b, "s0", "SELECT nosuch_column", 0, NULL);
        sync_(b, &n);
        pbe(b, "s0", NULL);
        sync_(b, &n);
        break;
    case 5: /* Parse skipped after an error earlier in the same Sync */
        put_parse(b, "s0", "SELECT (", 0, NULL);
        put_parse(b, "s1", "SELECT 2", 0, NULL);
        sync_(b, &n);
        pbe(b, "s1", NULL);
        sync_(b, &n);
        break;
    case 6: /* Close then Parse again under the same name, one Sync */
        put_parse(b, "s0", "SELECT 1", 0, NULL);
        raw_put_close(b, 'S', "s0");
        put_parse(b, "s0", "SELECT 2", 0, NULL);
        pbe(b, "s0", NULL);
        sync_(b, &n);
        break;
    case 7: /* Close twice, then Describe */
        put_parse(b, "s0", "SELECT 1", 0, NULL);
        sync_(b, &n);
        raw_put_close(b, 'S', "s0");
        raw_put_close(b, 'S', "s0");
        sync_(b, &n);
        raw_put_describe(b, 'S', "s0");
        sync_(b, &n);
        break;
    case 8: /* Close in an aborted block (25P02 from PostgreSQL? no: Close is allowed) */
        put_parse(b, "s0", "SELECT 1", 0, NULL);
        sync_(b, &n);
        pbe(b, "", "BEGIN");
        pbe(b, "", "SELECT 1/0");
        sync_(b, &n);
        raw_put_close(b, 'S', "s0");
        sync_(b, &n);
        pbe(b, "", "ROLLBACK");
        sync_(b, &n);
        pbe(b, "s0", NULL);
        sync_(b, &n);
        break;
    case 9: /* Parse a name in use, but in the same Sync after an error (skipped) */
        put_parse(b, "s0", "SELECT 1", 0, NULL);
        sync_(b, &n);
        pbe(b, "", "SELECT 1/0");
        put_parse(b, "s0", "SELECT 2", 0, NULL);
        sync_(b, &n);
        pbe(b, "s0", NULL);
        sync_(b, &n);
        break;
    case 10: /* DEALLOCATE (SQL) of a protocol statement, then Bind */
        put_parse(b, "s0", "SELECT 1", 0, NULL);
        sync_(b, &n);
        pbe(b, "", "DEALLOCATE s0");
        sync_(b, &n);
        pbe(b, "s0", NULL);
        sync_(b, &n);
        break;
    case 11: /* PREPARE (SQL) then a protocol Bind of it */
        pbe(b, "", "PREPARE q0 AS SELECT 'q0'");
        sync_(b, &n);
        pbe(b, "q0", NULL);
        sync_(b, &n);
        pbe(b, "", "EXECUTE q0");
        sync_(b, &n);
        pbe(b, "", "DEALLOCATE q0");
        sync_(b, &n);
        break;
    case 12: /* Close skipped after an error in its Sync: the statement stays (42P05 next) */
        put_parse(b, "s0", "SELECT 1", 0, NULL);
        sync_(b, &n);
        pbe(b, "", "SELECT 1/0");
        raw_put_close(b, 'S', "s0");
        sync_(b, &n);
        put_parse(b, "s0", "SELECT 2", 0, NULL);
        sync_(b, &n);
        pbe(b, "s0", NULL);
        sync_(b, &n);
        break;
    case 13: /* a portal suspended across Syncs in a block, fetched in parts */
        pbe(b, "", "BEGIN");
        put_parse(b, "s0", "SELECT g, repeat('p', g * 100) FROM generate_series(1, 50) g", 0, NULL);
        put_bind(b, "pa", "s0", 0, NULL, NULL, 0, 1);
        raw_put_execute_n(b, "pa", 7);
        sync_(b, &n);
        raw_put_execute_n(b, "pa", 7);
        raw_put_empty(b, 'H');
        raw_put_execute_n(b, "pa", 0);
        sync_(b, &n);
        raw_put_execute_n(b, "pa", 3);
        pbe(b, "", "COMMIT");
        sync_(b, &n);
        raw_put_execute_n(b, "pa", 3);
        sync_(b, &n);
        break;
    case 14: /* Describe of a statement whose Parse was skipped */
        pbe(b, "", "SELECT 1/0");
        put_parse(b, "s9", "SELECT 1", 0, NULL);
        sync_(b, &n);
        raw_put_describe(b, 'S', "s9");
        sync_(b, &n);
        break;
    case 15: /* leave an unnamed statement behind (the next scenario is a new client) */
        put_parse(b, "", "SELECT 'unnamed statement of the previous client'", 0, NULL);
        put_bind(b, "", "", 0, NULL, NULL, 0, -1);
        raw_put_execute_n(b, "", 0);
        sync_(b, &n);
        break;
    case 16: /* a new client's Bind/Describe of an unnamed statement it never parsed: 26000 */
        put_bind(b, "", "", 0, NULL, NULL, 0, -1);
        raw_put_execute_n(b, "", 0);
        sync_(b, &n);
        raw_put_describe(b, 'S', "");
        sync_(b, &n);
        break;
    default: return -1;
    }
    return n;
}

static void named_scenarios(const struct target *t)
{
    for (int k = 0;; k++) {
        struct buf b;
        buf_init(&b);
        int n = scenario(&b, k);
        if (n < 0) {
            buf_free(&b);
            break;
        }
        PGconn *c = client(t); /* a fresh client each */
        struct tx x = {0};
        exchange(PQsocket(c), &b, &x, n);
        char label[32];
        snprintf(label, sizeof(label), "scenario %d", k);
        check(t, k, label, &x);
        buf_free(&b);
        PQfinish(c);
    }
}
IN_THREE_MODES(named_scenarios, named_scenarios)

/* The random pipelines without the named-statement misuse found above: statements parsed up
 * front (valid), never closed, so any difference is something else. */
static void clean_pipelines(const struct target *t)
{
    clean = true;
    PGconn *c = client(t);
    int fd = raw_fd(c);
    struct buf b;
    buf_init(&b);
    int n = 0;
    for (int seed = 201; seed <= 260; seed++)
        n += random_pipeline(&b, (uint64_t)seed);
    struct tx x = {0};
    int z = exchange(fd, &b, &x, n);
    cr_expect_eq(z, n, "%s: %d of %d ReadyForQuery", t->name, z, n);
    check(t, 0, "clean seeds 201..260 in one write", &x);
    buf_free(&b);
    for (int seed = 301; seed <= 330; seed++) {
        buf_init(&b);
        n = random_pipeline(&b, (uint64_t)seed);
        z = exchange(fd, &b, &x, n);
        char label[32];
        snprintf(label, sizeof(label), "clean seed %d", seed);
        cr_expect_eq(z, n, "%s: %s: %d of %d", t->name, label, z, n);
        check(t, seed - 300, label, &x);
        buf_free(&b);
    }
    PQfinish(c);
    clean = false;
}
IN_THREE_MODES(clean_pipelines, clean_pipelines)

/* A's cancels must never reach B's queries: A sends a quick query and cancels it at once, over
 * and over, while B (sharing A's server under transaction pooling with one server) runs its
 * own; every answer B gets must be its own and complete (no 57014 that PostgreSQL would not
 * give it directly). */
struct canceller {
    const struct target *t;
    volatile int stop;
};

static void *cancel_loop(void *arg)
{
    struct canceller *k = arg;
    PGconn *a = client(k->t);
    for (int i = 0; !k->stop && i < 400; i++) {
        if (!PQsendQuery(a, i % 2 ? "SELECT 1" : "SELECT pg_sleep(0.001)"))
            break;
        PGcancel *cn = PQgetCancel(a);
        char err[256];
        if (i % 3)
            usleep(200 * (unsigned)(i % 4));
        PQcancel(cn, err, sizeof(err));
        PQfreeCancel(cn);
        PGresult *r;
        while ((r = PQgetResult(a)) != NULL)
            PQclear(r);
    }
    PQfinish(a);
    return NULL;
}

static void cancel_cross(const struct target *t)
{
    PGconn *b = client(t);
    struct canceller k = {.t = t};
    pthread_t th;
    pthread_create(&th, NULL, cancel_loop, &k);
    struct tx x = {0};
    int bad = 0;
    for (int i = 0; i < 300; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT pg_sleep(0.001), 'b%d', g FROM generate_series(1, 3) g",
                 i);
        PGresult *r = PQexec(b, sql);
        char want[16];
        snprintf(want, sizeof(want), "b%d", i);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 3 ||
            strcmp(PQgetvalue(r, 2, 1), want) != 0) {
            if (bad++ < 5)
                tx_add(&x, "query %d: %s %s\n", i, PQresStatus(PQresultStatus(r)),
                       PQresultErrorMessage(r));
        }
        PQclear(r);
    }
    k.stop = 1;
    pthread_join(th, NULL);
    tx_add(&x, "%d of B's answers wrong\n", bad);
    check(t, 0, "B's answers while A cancels", &x);
    PQfinish(b);
}
Test(redteam17, txn1_cancel_cross)
{
    on_postgresql_and_through("transaction", 1, cancel_cross);
}
Test(redteam17, txn2_cancel_cross)
{
    on_postgresql_and_through("transaction", 2, cancel_cross);
}

/* What one client leaves on its server (session settings, prepared statements, cursors with
 * hold, temp tables, advisory locks, an open or aborted transaction, a half-done COPY FROM
 * STDIN, a suspended portal) must not show to the next client of the only server. */
#define PROBE_STATE                                                                                \
    "SELECT '2024-02-03'::date::text, current_setting('TimeZone'), "                               \
    "current_setting('search_path'), 1.0::float8 / 3, current_setting('statement_timeout'), "      \
    "(SELECT count(*) FROM pg_prepared_statements), (SELECT count(*) FROM pg_cursors), "           \
    "to_regclass('pg_temp.rt17_tmp') IS NULL, pg_try_advisory_lock(91717), "                       \
    "current_setting('application_name'), txid_current_if_assigned() IS NULL"

static void leftovers(const struct target *t)
{
    static const char *const leave[] = {
        "SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Asia/Tokyo'; SET search_path = pg_catalog; "
        "SET extra_float_digits = -3; SET statement_timeout = 1234; SET application_name = 'A'",
        "PREPARE rt17p AS SELECT 1; DECLARE rt17c CURSOR WITH HOLD FOR SELECT 1",
        "CREATE TEMP TABLE rt17_tmp(x int)",
        "SELECT pg_advisory_lock(91717)",
        "BEGIN; SET LOCAL DateStyle = 'SQL, DMY'; SELECT txid_current()",
        "BEGIN; SELECT 1/0",
        "COPY pg_temp.nosuch FROM STDIN",
        "COPY (SELECT 1) TO STDOUT",
        NULL,
    };
    for (int i = 0; leave[i]; i++) {
        PGconn *a = client(t);
        struct buf b;
        buf_init(&b);
        put_query(&b, leave[i]);
        struct tx junk = {0};
        exchange_ex(PQsocket(a), &b, &junk, 1, 3000, 0);
        free(junk.s);
        /* and a half-sent extended batch: a suspended portal, no Sync */
        buf_reset(&b);
        put_parse(&b, "", "SELECT g FROM generate_series(1, 100) g", 0, NULL);
        put_bind(&b, "", "", 0, NULL, NULL, 0, -1);
        raw_put_execute_n(&b, "", 5);
        raw_put_empty(&b, 'H');
        raw_send(PQsocket(a), &b);
        usleep(50000);
        buf_free(&b);
        PQfinish(a);
        usleep(100000);

        PGconn *c2 = client(t);
        struct tx x = {0};
        buf_init(&b);
        put_query(&b, PROBE_STATE);
        exchange(PQsocket(c2), &b, &x, 1);
        buf_free(&b);
        /* the lock taken by the probe goes with the session */
        char label[200];
        snprintf(label, sizeof(label), "after a client left: %.150s", leave[i]);
        check(t, i, label, &x);
        PQfinish(c2);
        usleep(100000);
    }
}
IN_THREE_MODES(leftovers, leftovers)

/* The named-statement findings one by one (transaction pooling, one server). A first client
 * prepares "SELECT 1" and leaves, as any earlier client may have: the server keeps it cached. */
static int the_scenario, the_warmup;
static void one_scenario(const struct target *t)
{
    PGconn *p = client(t);
    struct buf b;
    buf_init(&b);
    put_parse(&b, "s0", "SELECT 1", 0, NULL);
    put_parse(&b, "s1", "SELECT 2", 0, NULL);
    raw_put_empty(&b, 'S');
    struct tx junk = {0};
    exchange(PQsocket(p), &b, &junk, 1);
    free(junk.s);
    junk = (struct tx){0};
    buf_free(&b);
    PQfinish(p);

    for (int k = 0; k < the_warmup; k++) { /* earlier scenarios, unchecked, as earlier clients */
        PGconn *w = client(t);
        buf_init(&b);
        int wn = scenario(&b, k);
        exchange(PQsocket(w), &b, &junk, wn);
        free(junk.s);
        junk = (struct tx){0};
        buf_free(&b);
        PQfinish(w);
    }
    PGconn *c = client(t);
    buf_init(&b);
    int n = scenario(&b, the_scenario);
    struct tx x = {0};
    exchange(PQsocket(c), &b, &x, n);
    char label[32];
    snprintf(label, sizeof(label), "scenario %d", the_scenario);
    check(t, 0, label, &x);
    buf_free(&b);
    PQfinish(c);
}
#define SCENARIO_TEST(name, k, warm)                                                               \
    Test(redteam17, txn1_##name)                                                                   \
    {                                                                                              \
        the_scenario = k;                                                                          \
        the_warmup = warm;                                                                         \
        on_postgresql_and_through("transaction", 1, one_scenario);                                 \
    }
/* Parse s0 'SELECT 1'; Sync; <error>, Parse s0 'SELECT 2'; Sync; Bind s0: PostgreSQL runs
 * 'SELECT 1' (the second Parse was skipped), lakeproxy 'SELECT 2'. */
SCENARIO_TEST(skipped_parse_redefines_statement, 9, 9) /* after scenarios 0..8's clients */
/* Parse s0 'SELECT 1'; Sync; <error>, Close s0; Sync; Parse s0 'SELECT 2'; Sync; Bind s0:
 * PostgreSQL 42P05 then 1; lakeproxy ParseComplete then 2. */
SCENARIO_TEST(skipped_close_drops_statement, 12, 0)
/* Parse s0 in an aborted block: PostgreSQL 25P02 and no s0; lakeproxy ParseComplete and s0. */
SCENARIO_TEST(parse_in_aborted_block_answered, 2, 0)
/* Describe of a statement whose Parse was skipped: PostgreSQL 26000, lakeproxy describes it. */
SCENARIO_TEST(describe_of_skipped_parse_answered, 14, 0)
/* Bind of a statement whose Parse failed: 26000 naming "lp_<md5>" instead of "s0". */
SCENARIO_TEST(bind_error_names_proxy_statement, 4, 0)
/* Bind of a statement whose Parse was skipped (its text cached on the server): lakeproxy runs
 * it and returns a row; PostgreSQL 26000. */
SCENARIO_TEST(bind_of_skipped_parse_runs_it, 5, 0)

/* A named statement's meaning depends on settings read at Parse (DateStyle, search_path): a
 * client that changes them with set_config() (no SET statement), or by a function, must not
 * get a statement the server holds prepared under another client's settings. */
static bool ctx_wait; /* the setting's answer awaited before the Parse is sent */
static void ctx_run(const struct target *t, PGconn *c, const char *pre, const char *sql, int slot,
                    const char *label)
{
    struct buf b;
    buf_init(&b);
    int n = 0;
    if (pre) {
        put_query(&b, pre);
        n++;
    }
    if (pre && ctx_wait) { /* the setting's ReadyForQuery first, then the statement */
        struct tx y = {0};
        exchange(PQsocket(c), &b, &y, 1);
        check(t, 64 + slot, "pre", &y);
        buf_reset(&b);
        n = 0;
    }
    put_parse(&b, "s0", sql, 0, NULL);
    put_bind(&b, "", "s0", 0, NULL, NULL, 0, -1);
    raw_put_execute_n(&b, "", 0);
    raw_put_empty(&b, 'S');
    n++;
    struct tx x = {0};
    exchange(PQsocket(c), &b, &x, n);
    check(t, slot, label, &x);
    /* and the same text as a simple Query (no statement to share) */
    buf_reset(&b);
    put_query(&b, sql);
    exchange(PQsocket(c), &b, &x, 1);
    char l2[96];
    snprintf(l2, sizeof(l2), "%s, simple Query", label);
    check(t, 32 + slot, l2, &x);
    buf_free(&b);
}

static void context_via_set_config(const struct target *t)
{
    static const struct {
        const char *pre, *sql;
    } cases[] = {
        {"SELECT set_config('DateStyle', 'ISO, DMY', false)", "SELECT '01/02/2024'::date::text"},
        {"SELECT set_config('search_path', 'information_schema, pg_catalog', false)",
         "SELECT count(*) > 0 FROM tables"},
        {"SELECT set_config('IntervalStyle', 'sql_standard', false)",
         "SELECT '1-2'::interval::text"},
        {"SELECT set_config('TimeZone', 'Asia/Tokyo', false)",
         "SELECT '2024-01-01 00:00'::timestamptz::text"},
        {"CREATE OR REPLACE FUNCTION pg_temp.rt17_ds() RETURNS void LANGUAGE sql "
         "SET DateStyle = 'ISO, DMY' AS 'SELECT 1'; "
         "SELECT set_config('DateStyle', 'German', false) FROM pg_temp.rt17_ds()",
         "SELECT '01/03/2024'::date::text"},
        {"BEGIN; SET DateStyle = 'ISO, DMY'; COMMIT", "SELECT '01/04/2024'::date::text"},
        {"/* c */ SET DateStyle = 'ISO, DMY'", "SELECT '01/05/2024'::date::text"},
        {"SELECT 1; SET DateStyle = 'ISO, DMY'", "SELECT '01/06/2024'::date::text"},
        {"DO $$BEGIN SET DateStyle = 'ISO, DMY'; END$$", "SELECT '01/07/2024'::date::text"},
        {"SET TIME ZONE 'Asia/Tokyo'", "SELECT '2024-01-02 00:00'::timestamptz::text"},
        {"SET SESSION DateStyle TO 'ISO, DMY'", "SELECT '01/08/2024'::date::text"},
        {"SET DateStyle = 'ISO, DMY'", "SELECT '01/09/2024'::date::text"},
    };
    for (int i = 0; i < (int)(sizeof(cases) / sizeof(cases[0])); i++) {
        char label[64];
        /* the default client first: its statement stays prepared on the server */
        PGconn *b = client(t);
        snprintf(label, sizeof(label), "case %d, default client", i);
        ctx_run(t, b, NULL, cases[i].sql, 2 * i, label);
        PQfinish(b);
        PGconn *a = client(t);
        snprintf(label, sizeof(label), "case %d, after set_config", i);
        ctx_run(t, a, cases[i].pre, cases[i].sql, 2 * i + 1, label);
        PQfinish(a);
    }
}
Test(redteam17, txn1_setting_pipelined_before_named_parse)
{
    on_postgresql_and_through("transaction", 1, context_via_set_config);
}
/* The same with each setting's ReadyForQuery awaited before the statement is sent (as libpq
 * does without pipelining). */
static void context_waited(const struct target *t)
{
    ctx_wait = true;
    context_via_set_config(t);
    ctx_wait = false;
}
Test(redteam17, txn1_context_after_setting_awaited)
{
    on_postgresql_and_through("transaction", 1, context_waited);
}
Test(redteam17, txn2_setting_pipelined_before_named_parse)
{
    on_postgresql_and_through("transaction", 2, context_via_set_config);
}

/* More named statements than a server keeps prepared (SERVER_STMT_CACHE 256): each Bind must
 * still run its own text, whichever were evicted, in one long pipeline and in short ones. */
static void many_statements(const struct target *t)
{
    PGconn *c = client(t);
    struct buf b;
    buf_init(&b);
    int n = 0;
    char name[32], sql[96];
    for (int i = 0; i < 700; i++) {
        snprintf(name, sizeof(name), "m%d", i);
        snprintf(sql, sizeof(sql), "SELECT %d AS k, repeat('m', %d)", i, i % 50);
        put_parse(&b, name, sql, 0, NULL);
        if (i % 50 == 49) {
            raw_put_empty(&b, 'S');
            n++;
        }
    }
    rng = 77;
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof(name), "m%u", rnd(700));
        put_bind(&b, "", name, 0, NULL, NULL, 0, (int)rnd(2));
        raw_put_execute_n(&b, "", 0);
        if (i % 7 == 6) {
            raw_put_empty(&b, 'S');
            n++;
        }
    }
    raw_put_empty(&b, 'S');
    n++;
    struct tx x = {0};
    exchange_ex(PQsocket(c), &b, &x, n, 60000, 0);
    check(t, 0, "700 statements, 3000 binds", &x);
    buf_free(&b);
    PQfinish(c);
}
IN_THREE_MODES(many_statements, many_statements)

/* COPY FROM STDIN in the extended protocol: a bad row in the middle (the server skips the
 * rest of the data up to Sync), a CopyFail, and a good one, pipelined behind one another with
 * queries between them. */
static void copy_extended(const struct target *t)
{
    PGconn *c = client(t);
    struct buf b;
    buf_init(&b);
    int n = 0;
    pbe(&b, "", "BEGIN");
    pbe(&b, "", "CREATE TEMP TABLE rt17_x(a int, b text) ON COMMIT DROP");
    raw_put_empty(&b, 'S');
    n++;
    for (int round = 0; round < 3; round++) {
        pbe(&b, "", "COPY rt17_x FROM STDIN");
        char line[70000];
        for (int r = 1; r <= 60; r++) {
            int k = snprintf(line, 32, round == 0 && r == 30 ? "bad\t" : "%d\t", r + 100 * round);
            size_t len = (size_t)(r * 1117 % 69000);
            memset(line + k, 'a' + r % 26, len);
            line[k + len] = '\n';
            raw_put_copy_data(&b, line, k + len + 1);
        }
        if (round == 1) {
            buf_msg_start(&b, 'f');
            buf_put_str(&b, "client gave up");
            buf_msg_finish(&b);
        } else
            raw_put_empty(&b, 'c');
        pbe(&b, "",
            "SELECT count(*), coalesce(sum(a), 0), md5(string_agg(b, ',' ORDER BY a)) "
            "FROM rt17_x");
        raw_put_empty(&b, 'S');
        n++;
        if (round < 2) { /* the block is aborted: start again */
            pbe(&b, "", "ROLLBACK");
            pbe(&b, "", "BEGIN");
            pbe(&b, "", "CREATE TEMP TABLE rt17_x(a int, b text) ON COMMIT DROP");
            raw_put_empty(&b, 'S');
            n++;
        }
    }
    pbe(&b, "", "COMMIT");
    raw_put_empty(&b, 'S');
    n++;
    struct tx x = {0};
    exchange(PQsocket(c), &b, &x, n);
    check(t, 0, "extended COPY FROM STDIN", &x);
    buf_free(&b);
    PQfinish(c);
}
IN_THREE_MODES(copy_extended, copy_extended)

/* Two clients with different session settings (DMY and TimeZone set by one, pipelined
 * ahead of its statements), interleaving unnamed and named statements of the same texts on
 * shared servers: each must read its literals by its own settings. */
struct setter {
    const struct target *t;
    int who;
    struct tx x;
};

static void *setter_run(void *arg)
{
    struct setter *s = arg;
    PGconn *c = client(s->t);
    struct buf b;
    buf_init(&b);
    int n = 0;
    if (s->who) {
        put_query(&b, "SET DateStyle = 'ISO, DMY'; SET TimeZone = 'Asia/Tokyo'");
        n++;
    }
    for (int i = 0; i < 150; i++) {
        char sql[128], name[16];
        snprintf(sql, sizeof(sql), "SELECT '%02d/%02d/2024 01:00'::timestamptz::text", 1 + i % 12,
                 1 + i % 12 + 1);
        if (i % 2) {
            snprintf(name, sizeof(name), "d%d", i);
            put_parse(&b, name, sql, 0, NULL);
            put_bind(&b, "", name, 0, NULL, NULL, 0, -1);
        } else {
            put_parse(&b, "", sql, 0, NULL);
            put_bind(&b, "", "", 0, NULL, NULL, 0, -1);
        }
        raw_put_execute_n(&b, "", 0);
        raw_put_empty(&b, 'S');
        n++;
    }
    exchange(PQsocket(c), &b, &s->x, n);
    buf_free(&b);
    PQfinish(c);
    return NULL;
}

static void settings_apart(const struct target *t)
{
    struct setter s[2] = {{.t = t, .who = 0}, {.t = t, .who = 1}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, setter_run, &s[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    check(t, 0, "default client", &s[0].x);
    check(t, 1, "DMY/Tokyo client", &s[1].x);
}
Test(redteam17, txn1_settings_apart)
{
    on_postgresql_and_through("transaction", 1, settings_apart);
}
Test(redteam17, txn2_settings_apart)
{
    on_postgresql_and_through("transaction", 2, settings_apart);
}
