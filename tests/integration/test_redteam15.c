/* test_redteam15.c: red-team round 15 against the PROTOCOL side of row-level security: one
 * server shared by two tenants (transaction pooling, pool.size 1), pipelines, Sync-less
 * batches, statements and portals of another tenant, errors mid-pipeline, transaction control
 * around the injected settings, cancel races, COPY, disconnects, killed backends, and session
 * pooling. Each test asserts the SAFE behaviour: a failing test is a finding. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "proto.h"
#include "rawproto.h"

TestSuite(redteam15, .timeout = 120);

static struct proxy px;

static void start_mode(const char *mode)
{
    static char yaml[16384];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, mode, 1, 20000,
                       "  t1: {password: pw, attributes: {tenant_id: \"1\"}}\n"
                       "  t2: {password: pw, attributes: {tenant_id: \"2\"}}\n"
                       "  nobody: {password: pw}\n"
                       "rls:\n  prefix: app\n  databases: [app]\n  switch_role: true\n"
                       "  default_role: lp_tenant\n"
                       "  attributes: {tenant_id: attribute, user: user}\n");
    proxy_start_yaml(&px, port, yaml);
}
static void start_txn(void)
{
    start_mode("transaction");
}
static void start_session(void)
{
    start_mode("session");
}
static void stop_proxy(void)
{
    proxy_stop(&px);
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static PGconn *login(const char *user)
{
    PGconn *c = proxy_connect(&px, user, "pw", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "login as %s failed: %s", user, PQerrorMessage(c));
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

static PGconn *tenant(int t)
{
    char user[16];
    snprintf(user, sizeof(user), "t%d", t);
    return login(user);
}

/* The raw socket under a libpq connection (logged in with SCRAM by libpq), made blocking. */
static int raw_of(PGconn *c)
{
    int fd = PQsocket(c);
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

#define PROBE                                                                                      \
    "SELECT coalesce(current_setting('app.tenant_id', true), 'NULL') || '/' || "                   \
    "(SELECT count(*) FROM rls_docs) || '/' || current_user"

static void own_str(int t, char *out, size_t sz)
{
    snprintf(out, sz, "%d/100/lp_tenant", t);
}

/* Reads messages until nz ReadyForQuery came (or timeout_ms of silence), appending tokens
 * to log: D:<first column> E:<sqlstate> Z:<status> d:<copy data> G H(copy out) 1 2 3 n t C. */
static int rd(int fd, char *log, size_t sz, int nz, int timeout_ms)
{
    static __thread unsigned char body[1 << 16]; /* per thread: the pipeline test's two */
    size_t len, o = strlen(log);
    int z = 0, t;
    while (z < nz && (t = raw_read_msg(fd, body, sizeof(body), &len, timeout_ms)) >= 0) {
        char tok[256];
        tok[0] = '\0';
        if (t == 'D') {
            int n = (body[0] << 8) | body[1];
            int32_t l = n > 0 ? (int32_t)(((uint32_t)body[2] << 24) | ((uint32_t)body[3] << 16) |
                                          ((uint32_t)body[4] << 8) | body[5])
                              : -1;
            snprintf(tok, sizeof(tok), "D:%.*s ", l < 0 ? 4 : (l > 200 ? 200 : l),
                     l < 0 ? "NULL" : (const char *)body + 6);
        } else if (t == 'E')
            snprintf(tok, sizeof(tok), "E:%s ", raw_error_sqlstate(body, len));
        else if (t == 'Z') {
            snprintf(tok, sizeof(tok), "Z:%c ", body[0]);
            z++;
        } else if (t == 'd')
            snprintf(tok, sizeof(tok), "d:%.*s ",
                     (int)(len > 100 ? 100 : len - (len && body[len - 1] == '\n')), body);
        else if (t == 'G' || t == 'H' || t == 'n' || t == 't')
            snprintf(tok, sizeof(tok), "%c ", t);
        if (o + strlen(tok) + 1 < sz) {
            memcpy(log + o, tok, strlen(tok) + 1);
            o += strlen(tok);
        }
    }
    return z;
}

/* Every D: token of log is tenant t's probe answer (or a listed extra); returns how many. */
static int probes_of(const char *log, int t, const char *fmt_other)
{
    char want[64];
    own_str(t, want, sizeof(want));
    int n = 0;
    for (const char *p = strstr(log, "D:"); p; p = strstr(p + 2, "D:")) {
        size_t wl = strlen(want);
        if (strncmp(p + 2, want, wl) == 0 && p[2 + wl] == ' ')
            n++;
        else if (!fmt_other || strncmp(p + 2, fmt_other, strlen(fmt_other)) != 0)
            return -1000;
    }
    return n;
}

static void put_describe(struct buf *b, char kind, const char *name)
{
    buf_msg_start(b, 'D');
    buf_put_u8(b, (uint8_t)kind);
    buf_put_str(b, name);
    buf_msg_finish(b);
}

/* The probe on a libpq connection, as tenant t must see it. */
static void expect_own(PGconn *c, int t, const char *after)
{
    char want[64];
    own_str(t, want, sizeof(want));
    PGresult *r = PQexec(c, PROBE);
    const char *got = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                          ? PQgetvalue(r, 0, 0)
                          : PQerrorMessage(c);
    cr_expect_str_eq(got, want, "tenant %d after %s: got %s", t, after, got);
    PQclear(r);
}

/* Sends the probe on c (libpq, async) and returns at once. */
static void send_probe(PGconn *c)
{
    cr_assert(PQsendQuery(c, PROBE), "%s", PQerrorMessage(c));
}

/* The result of a probe sent with send_probe must be tenant t's. */
static void expect_sent_probe(PGconn *c, int t, const char *after)
{
    char want[64];
    own_str(t, want, sizeof(want));
    PGresult *r, *first = NULL;
    while ((r = PQgetResult(c)) != NULL) {
        if (!first)
            first = r;
        else
            PQclear(r);
    }
    const char *got = first && PQresultStatus(first) == PGRES_TUPLES_OK && PQntuples(first) == 1
                          ? PQgetvalue(first, 0, 0)
                          : PQerrorMessage(c);
    cr_expect_str_eq(got, want, "tenant %d after %s: got %s", t, after, got);
    PQclear(first);
}

/* Has the async query on c answered within ms? */
static bool answered_within(PGconn *c, int ms)
{
    for (int i = 0; i < ms / 20; i++) {
        PQconsumeInput(c);
        if (!PQisBusy(c))
            return true;
        usleep(20 * 1000);
    }
    return false;
}

/* ---- 1. pipelines of many Parse/Bind/Execute before one Sync, two tenants at once ---- */

struct piper {
    int t, rounds, good, bad;
    PGconn *c;
};

static void *pipe_main(void *arg)
{
    struct piper *p = arg;
    int fd = raw_of(p->c);
    struct buf b;
    buf_init(&b);
    char *log = malloc(1 << 16);
    for (int r = 0; r < p->rounds; r++) {
        int per = 1 + r % 7, syncs = 1 + r % 3;
        bool simple = r % 5 == 3; /* simple Queries pipelined, one ReadyForQuery each */
        for (int s = 0; s < syncs; s++) {
            for (int i = 0; i < per; i++) {
                if (simple)
                    proto_query(&b, PROBE);
                else
                    raw_put_pbe(&b, PROBE);
            }
            if (r % 4 == 1 && !simple)
                raw_put_empty(&b, 'H');
            if (!simple)
                raw_put_empty(&b, 'S');
        }
        if (!raw_send(fd, &b)) {
            p->bad++;
            break;
        }
        log[0] = '\0';
        int zs = simple ? per * syncs : syncs;
        if (rd(fd, log, 1 << 16, zs, 10000) != zs) {
            p->bad++;
            break;
        }
        int n = probes_of(log, p->t, NULL);
        if (n == per * syncs)
            p->good += n;
        else {
            p->bad++;
            fprintf(stderr,
                    "redteam15 pipeline tenant %d round %d (per %d syncs %d flush %d): %s\n", p->t,
                    r, per, syncs, r % 4 == 1, log);
        }
    }
    free(log);
    buf_free(&b);
    return NULL;
}

static void run_pipelines(void)
{
    struct piper p[2] = {{.t = 1, .rounds = 600, .c = tenant(1)},
                         {.t = 2, .rounds = 600, .c = tenant(2)}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, pipe_main, &p[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(p[i].bad, 0, "tenant %d saw %d bad rounds", p[i].t, p[i].bad);
        cr_expect_gt(p[i].good, 0);
        PQfinish(p[i].c);
    }
}

Test(redteam15, pipelines_of_two_tenants_on_one_server_never_cross, .init = start_txn,
     .fini = stop_proxy)
{
    run_pipelines();
}

/* the same with a liveness check after a second idle (check_after_s 1), a reserve server opened
 * after 1 ms of waiting, and servers retired after a second of life: every other way a server
 * reaches a client */
static void start_churn(void)
{
    static char yaml[16384];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 1, 20000,
                       "  t1: {password: pw, attributes: {tenant_id: \"1\"}}\n"
                       "  t2: {password: pw, attributes: {tenant_id: \"2\"}}\n"
                       "  nobody: {password: pw}\n"
                       "rls:\n  prefix: app\n  databases: [app]\n  switch_role: true\n"
                       "  default_role: lp_tenant\n"
                       "  attributes: {tenant_id: attribute, user: user}\n");
    static const char *const from = "      max_wait_ms: 20000\n";
    char *at = strstr(yaml, from);
    cr_assert(at);
    static char out[20000];
    snprintf(out, sizeof(out),
             "%.*s%s      check_after_s: 1\n      reserve: 1\n"
             "      reserve_timeout_ms: 1\n      lifetime_s: 1\n%s",
             (int)(at - yaml), yaml, from, at + strlen(from));
    proxy_start_yaml(&px, port, out);
}

Test(redteam15, pipelines_through_checks_reserve_servers_and_lifetimes_never_cross,
     .init = start_churn, .fini = stop_proxy)
{
    run_pipelines();
    /* servers idle past check_after_s: checked, then linked, with the other tenant waiting */
    PGconn *a = tenant(1), *bc = tenant(2);
    int fa = raw_of(a);
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < 4; i++) {
        usleep(1100 * 1000);
        char log[4096] = "";
        raw_put_pbe(&b, PROBE);
        raw_put_empty(&b, 'S');
        raw_put_pbe(&b, PROBE);
        raw_put_empty(&b, 'S');
        cr_assert(raw_send(fa, &b));
        send_probe(bc);
        rd(fa, log, sizeof(log), 2, 5000);
        cr_expect_eq(probes_of(log, 1, NULL), 2, "after an idle second: %s", log);
        expect_sent_probe(bc, 2, "a checked server");
    }
    buf_free(&b);
    PQfinish(a);
    PQfinish(bc);
    PGconn *n = login("nobody");
    EXPECT_QUERY_VALUE(n, PROBE, "/0/lp_tenant", "a client without a tenant after the churn");
    PQfinish(n);
}

/* ---- 2. a Sync-less batch with Flush keeps the server; the other tenant waits ---- */

Test(redteam15, a_flushed_batch_without_sync_keeps_the_server_from_the_other_tenant,
     .init = start_txn, .fini = stop_proxy)
{
    PGconn *a = tenant(1), *bc = tenant(2);
    int fa = raw_of(a);
    struct buf b;
    buf_init(&b);
    char log[4096] = "";
    raw_put_pbe(&b, PROBE);
    raw_put_empty(&b, 'H');
    cr_assert(raw_send(fa, &b));
    rd(fa, log, sizeof(log), 1, 700); /* no Z comes: the probe's rows, then silence */
    cr_expect_eq(probes_of(log, 1, NULL), 1, "%s", log);
    send_probe(bc);
    cr_expect(!answered_within(bc, 400), "tenant 2 ran while tenant 1's batch was open");
    raw_put_pbe(&b, PROBE);
    raw_put_empty(&b, 'H');
    cr_assert(raw_send(fa, &b));
    log[0] = '\0';
    rd(fa, log, sizeof(log), 1, 500);
    cr_expect_eq(probes_of(log, 1, NULL), 1, "second flushed part: %s", log);
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fa, &b));
    log[0] = '\0';
    cr_expect_eq(rd(fa, log, sizeof(log), 1, 5000), 1, "%s", log);
    expect_sent_probe(bc, 2, "waiting behind a flushed batch");
    /* a BEGIN through the extended protocol, then the other tenant, then the batch goes on */
    raw_put_pbe(&b, "BEGIN");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fa, &b));
    log[0] = '\0';
    rd(fa, log, sizeof(log), 1, 5000);
    cr_expect(strstr(log, "Z:T") != NULL, "%s", log);
    send_probe(bc);
    cr_expect(!answered_within(bc, 300), "tenant 2 ran inside tenant 1's transaction");
    raw_put_pbe(&b, PROBE);
    raw_put_pbe(&b, "COMMIT");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fa, &b));
    log[0] = '\0';
    rd(fa, log, sizeof(log), 1, 5000);
    cr_expect_eq(probes_of(log, 1, NULL), 1, "%s", log);
    expect_sent_probe(bc, 2, "waiting behind an explicit transaction");
    expect_own(a, 1, "the other tenant's turn");
    buf_free(&b);
    PQfinish(a);
    PQfinish(bc);
}

/* ---- 3. named statements, portals and the unnamed statement of another tenant ---- */

Test(redteam15, statements_and_portals_of_another_tenant_are_out_of_reach, .init = start_txn,
     .fini = stop_proxy)
{
    PGconn *a = tenant(1), *bc = tenant(2);
    int fa = raw_of(a), fb = raw_of(bc);
    struct buf b;
    buf_init(&b);
    char log[8192] = "";
    /* tenant 1: a named statement, an unnamed one left unbound, a portal in an open txn */
    raw_put_parse(&b, "s_a", PROBE);
    raw_put_parse(&b, "", "SELECT 'unnamed of tenant 1 ' || current_setting('app.tenant_id')");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fa, &b));
    cr_assert_eq(rd(fa, log, sizeof(log), 1, 5000), 1, "%s", log);
    cr_expect(strstr(log, "E:") == NULL, "%s", log);
    /* tenant 2 binds, describes and executes them */
    log[0] = '\0';
    raw_put_bind(&b, "", "s_a");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    put_describe(&b, 'S', "s_a");
    raw_put_empty(&b, 'S');
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    put_describe(&b, 'S', "");
    raw_put_empty(&b, 'S');
    put_describe(&b, 'P', "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fb, &b));
    cr_expect_eq(rd(fb, log, sizeof(log), 5, 5000), 5, "%s", log);
    cr_expect(strstr(log, "D:") == NULL, "tenant 2 ran tenant 1's statements: %s", log);
    cr_expect(strstr(log, "t ") == NULL, "tenant 2 described tenant 1's statement: %s", log);
    /* the same name, prepared by tenant 2, runs under tenant 2 */
    log[0] = '\0';
    raw_put_parse(&b, "s_a", PROBE);
    raw_put_bind(&b, "", "s_a");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fb, &b));
    rd(fb, log, sizeof(log), 1, 5000);
    cr_expect_eq(probes_of(log, 2, NULL), 1, "%s", log);
    /* tenant 1's statement still runs under tenant 1 */
    log[0] = '\0';
    raw_put_bind(&b, "", "s_a");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fa, &b));
    rd(fa, log, sizeof(log), 1, 5000);
    cr_expect_eq(probes_of(log, 1, NULL), 1, "%s", log);
    /* a named portal of tenant 1 in a transaction, partly fetched; then tenant 2 fetches it */
    log[0] = '\0';
    raw_put_pbe(&b, "BEGIN");
    raw_put_bind(&b, "p_a", "s_a");
    buf_msg_start(&b, 'E');
    buf_put_str(&b, "p_a");
    buf_put_u32(&b, 0);
    buf_msg_finish(&b);
    raw_put_pbe(&b, "COMMIT");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fa, &b));
    rd(fa, log, sizeof(log), 1, 5000);
    cr_expect_eq(probes_of(log, 1, NULL), 1, "%s", log);
    log[0] = '\0';
    raw_put_execute(&b, "p_a");
    raw_put_empty(&b, 'S');
    put_describe(&b, 'P', "p_a");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fb, &b));
    rd(fb, log, sizeof(log), 2, 5000);
    cr_expect(strstr(log, "D:") == NULL, "tenant 2 ran tenant 1's portal: %s", log);
    /* a WITH HOLD cursor made through the extended protocol, fetched by tenant 2 */
    log[0] = '\0';
    raw_put_pbe(&b, "DECLARE hold_a CURSOR WITH HOLD FOR " PROBE);
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fa, &b));
    rd(fa, log, sizeof(log), 1, 5000);
    log[0] = '\0';
    raw_put_pbe(&b, "FETCH ALL FROM hold_a");
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fb, &b));
    rd(fb, log, sizeof(log), 1, 5000);
    cr_expect(strstr(log, "D:") == NULL, "tenant 2 fetched tenant 1's held cursor: %s", log);
    buf_free(&b);
    expect_own(bc, 2, "another tenant's statements and portals");
    expect_own(a, 1, "its own statements");
    PQfinish(a);
    PQfinish(bc);
}

/* ---- 4. an error in the middle of a pipeline, the other tenant waiting ---- */

Test(redteam15, an_error_mid_pipeline_keeps_each_tenant_on_its_own_settings, .init = start_txn,
     .fini = stop_proxy)
{
    PGconn *a = tenant(1), *bc = tenant(2);
    int fa = raw_of(a);
    struct buf b;
    buf_init(&b);
    char log[8192] = "";
    for (int round = 0; round < 20; round++) {
        send_probe(bc);
        raw_put_pbe(&b, PROBE);
        raw_put_pbe(&b, "SELECT 1/0");
        raw_put_pbe(&b, PROBE);
        raw_put_empty(&b, 'S');
        raw_put_pbe(&b, PROBE);
        raw_put_empty(&b, 'H');
        raw_put_pbe(&b, "BEGIN");
        raw_put_pbe(&b, "SELECT 1/0");
        raw_put_empty(&b, 'S');
        raw_put_pbe(&b, PROBE); /* in the failed transaction: 25P02 */
        raw_put_empty(&b, 'S');
        raw_put_pbe(&b, "ROLLBACK");
        raw_put_pbe(&b, PROBE);
        raw_put_empty(&b, 'S');
        cr_assert(raw_send(fa, &b));
        log[0] = '\0';
        cr_assert_eq(rd(fa, log, sizeof(log), 4, 5000), 4, "%s", log);
        cr_expect_eq(probes_of(log, 1, NULL), 3, "round %d: %s", round, log);
        cr_expect(strstr(log, "E:25P02") != NULL, "%s", log);
        expect_sent_probe(bc, 2, "tenant 1's failing pipeline");
    }
    /* simple protocol: a failed transaction holds the server until ROLLBACK */
    cr_expect_str_eq(query_sqlstate(a, "BEGIN; SELECT 1/0"), "22012");
    send_probe(bc);
    cr_expect(!answered_within(bc, 300), "tenant 2 ran inside tenant 1's failed transaction");
    free(query_value(a, "ROLLBACK"));
    expect_sent_probe(bc, 2, "tenant 1's failed transaction");
    expect_own(a, 1, "its rolled-back transaction");
    buf_free(&b);
    PQfinish(a);
    PQfinish(bc);
}

/* ---- 5. transaction control around the injected settings ---- */

Test(redteam15, rollbacks_savepoints_and_chains_cannot_undo_the_injection, .init = start_txn,
     .fini = stop_proxy)
{
    PGconn *a = tenant(1), *bc = tenant(2);
    int fb = raw_of(bc);
    struct buf b;
    buf_init(&b);
    char log[8192] = "";
    static const char *const scripts[] = {
        "ROLLBACK; " PROBE,
        "COMMIT; " PROBE,
        "BEGIN; SAVEPOINT s; ROLLBACK TO SAVEPOINT s; " PROBE,
        "BEGIN; SAVEPOINT s; RELEASE s; ROLLBACK; " PROBE,
        "START TRANSACTION ISOLATION LEVEL SERIALIZABLE; ROLLBACK AND CHAIN; " PROBE,
        "BEGIN; COMMIT AND CHAIN; " PROBE,
        "ABORT; END; " PROBE,
    };
    for (size_t i = 0; i < sizeof(scripts) / sizeof(*scripts); i++) {
        expect_own(a, 1, "a turn of its own"); /* the server now carries tenant 1 */
        PGresult *r = PQexec(bc, scripts[i]);
        char want[64];
        own_str(2, want, sizeof(want));
        const char *got = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                              ? PQgetvalue(r, 0, 0)
                              : PQerrorMessage(bc);
        cr_expect_str_eq(got, want, "script %zu: %s", i, scripts[i]);
        PQclear(r);
        PQclear(PQexec(bc, "ROLLBACK"));
    }
    /* the same through the extended protocol: the first message after checkout a ROLLBACK */
    static const char *const first[] = {"ROLLBACK",    "COMMIT",
                                        "ABORT",       "ROLLBACK AND CHAIN",
                                        "SAVEPOINT x", "ROLLBACK TO SAVEPOINT x"};
    for (size_t i = 0; i < sizeof(first) / sizeof(*first); i++) {
        expect_own(a, 1, "a turn of its own");
        log[0] = '\0';
        raw_put_pbe(&b, first[i]);
        raw_put_pbe(&b, PROBE);
        raw_put_pbe(&b, "ROLLBACK");
        raw_put_empty(&b, 'S');
        cr_assert(raw_send(fb, &b));
        rd(fb, log, sizeof(log), 1, 5000);
        cr_expect(probes_of(log, 2, NULL) == 1 || (strstr(log, "D:") == NULL && strstr(log, "E:")),
                  "%s: %s", first[i], log);
    }
    /* inside a transaction with savepoints, rolled back to each: still tenant 2 */
    expect_own(a, 1, "a turn of its own");
    free(query_value(bc, "BEGIN"));
    free(query_value(bc, "SAVEPOINT s1"));
    cr_expect_str_eq(query_sqlstate(bc, "SELECT set_config('app.tenant_id', '1', true)"), "42501");
    free(query_value(bc, "ROLLBACK TO SAVEPOINT s1"));
    expect_own(bc, 2, "ROLLBACK TO SAVEPOINT");
    /* refused by lakeproxy since red team 29 (two-phase commit under row-level security: any
     * session of the shared role could finish it), which fails the transaction */
    PGresult *pr = PQexec(bc, "PREPARE TRANSACTION 'rt15'");
    const char *pstate = PQresultErrorField(pr, PG_DIAG_SQLSTATE);
    cr_expect_str_eq(pstate ? pstate : "", "42501", "PREPARE TRANSACTION under RLS: %s",
                     PQerrorMessage(bc));
    PQclear(pr);
    PQclear(PQexec(bc, "ROLLBACK"));
    expect_own(bc, 2, "PREPARE TRANSACTION (refused)");
    PQclear(PQexec(bc, "ROLLBACK"));
    PQclear(PQexec(bc, "ROLLBACK PREPARED 'rt15'"));
    expect_own(bc, 2, "after all");
    expect_own(a, 1, "after all");
    buf_free(&b);
    PQfinish(a);
    PQfinish(bc);
}

/* ---- 6. DISCARD and RESET are refused in either protocol ---- */

Test(redteam15, discard_and_reset_of_the_injected_settings_are_refused, .init = start_txn,
     .fini = stop_proxy)
{
    PGconn *a = tenant(1), *bc = tenant(2);
    static const char *const refused[] = {
        "DISCARD ALL",
        "RESET ALL",
        "RESET ROLE",
        "RESET app.tenant_id",
        "RESET SESSION AUTHORIZATION",
        "SET ROLE NONE",
        "SET app.tenant_id TO DEFAULT",
        "SET LOCAL role TO DEFAULT",
        "SET SESSION AUTHORIZATION DEFAULT",
        "discard /**/ all",
        "BEGIN; RESET ALL",
        "SELECT 1; DISCARD ALL",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++) {
        const char *st = query_sqlstate(a, refused[i]);
        cr_expect_str_eq(st, "42501", "simple: %s", refused[i]);
        PQclear(PQexec(a, "ROLLBACK"));
        PGresult *r = PQexecParams(a, refused[i], 0, NULL, NULL, NULL, NULL, 0);
        const char *est = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cr_expect(strchr(refused[i], ';') || (est && strcmp(est, "42501") == 0), "extended: %s: %s",
                  refused[i], est ? est : "(ran)");
        PQclear(r);
        PQclear(PQexec(a, "ROLLBACK"));
        expect_own(a, 1, refused[i]);
        expect_own(bc, 2, refused[i]);
        expect_own(a, 1, refused[i]);
    }
    PQfinish(a);
    PQfinish(bc);
}

/* ---- 7. cancel requests racing the injection ---- */

struct racer {
    PGconn *c;
    int t, n, wrong, errors;
    volatile int *stop;
    char first[256];
};

static void *race_queries(void *arg)
{
    struct racer *r = arg;
    char want[64];
    own_str(r->t, want, sizeof(want));
    for (int i = 0; i < r->n; i++) {
        PGresult *res = PQexec(r->c, PROBE);
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            if (strcmp(PQgetvalue(res, 0, 0), want) != 0) {
                r->wrong++;
                snprintf(r->first, sizeof(r->first), "%s", PQgetvalue(res, 0, 0));
            }
        } else {
            r->errors++;
            if (PQstatus(r->c) != CONNECTION_OK) {
                PQfinish(r->c);
                char user[16];
                snprintf(user, sizeof(user), "t%d", r->t);
                r->c = proxy_connect(&px, user, "pw", "app", NULL);
            }
        }
        PQclear(res);
    }
    return NULL;
}

static void *race_cancels(void *arg)
{
    struct racer *r = arg;
    PGcancel *cn = PQgetCancel(r->c);
    char err[256];
    while (!*r->stop) {
        PQcancel(cn, err, sizeof(err));
        usleep(200);
    }
    PQfreeCancel(cn);
    return NULL;
}

Test(redteam15, cancel_requests_racing_the_injection_never_cross_tenants, .init = start_txn,
     .fini = stop_proxy, .timeout = 120)
{
    volatile int stop = 0;
    struct racer q[2] = {{.c = tenant(1), .t = 1, .n = 600, .stop = &stop},
                         {.c = tenant(2), .t = 2, .n = 600, .stop = &stop}};
    struct racer cx = {.c = tenant(1), .t = 1, .stop = &stop}; /* tenant 1's idle key */
    struct racer cq = {.c = q[0].c, .t = 1, .stop = &stop};    /* tenant 1's busy key */
    pthread_t th[4];
    pthread_create(&th[0], NULL, race_queries, &q[0]);
    pthread_create(&th[1], NULL, race_queries, &q[1]);
    pthread_create(&th[2], NULL, race_cancels, &cx);
    pthread_create(&th[3], NULL, race_cancels, &cq);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    stop = 1;
    pthread_join(th[2], NULL);
    pthread_join(th[3], NULL);
    fprintf(stderr, "redteam15 cancel race: tenant 1 %d errors, tenant 2 %d errors\n", q[0].errors,
            q[1].errors);
    for (int i = 0; i < 2; i++)
        cr_expect_eq(q[i].wrong, 0, "tenant %d saw %s", q[i].t, q[i].first);
    cr_expect_eq(q[1].errors, 0, "tenant 1's cancel requests cancelled tenant 2's statements");
    PGconn *b2 = tenant(2);
    expect_own(b2, 2, "the cancel race");
    PQfinish(b2);
    PQfinish(q[0].c);
    PQfinish(q[1].c);
    PQfinish(cx.c);
}

/* ---- 8. COPY in the middle of a pipeline ---- */

Test(redteam15, copy_in_the_middle_of_a_pipeline_keeps_the_tenant, .init = start_txn,
     .fini = stop_proxy)
{
    PGconn *a = tenant(1), *bc = tenant(2);
    int fa = raw_of(a);
    struct buf b;
    buf_init(&b);
    char log[8192] = "";
    send_probe(bc);
    raw_put_pbe(&b, PROBE);
    raw_put_pbe(&b, "COPY (" PROBE ") TO STDOUT");
    raw_put_pbe(&b, PROBE);
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fa, &b));
    rd(fa, log, sizeof(log), 1, 5000);
    cr_expect_eq(probes_of(log, 1, NULL), 2, "%s", log);
    cr_expect(strstr(log, "d:1/100/lp_tenant ") != NULL, "copy out: %s", log);
    expect_sent_probe(bc, 2, "tenant 1's COPY TO");
    /* COPY FROM STDIN with Syncs sent during it, then a CopyFail, in a transaction */
    send_probe(bc);
    log[0] = '\0';
    proto_query(&b, "BEGIN; CREATE TEMP TABLE rt15_in (v text)");
    raw_put_pbe(&b, "COPY rt15_in FROM STDIN");
    raw_put_empty(&b, 'S');
    raw_put_empty(&b, 'S');
    buf_msg_start(&b, 'd');
    buf_put_bytes(&b, "x\n", 2);
    buf_msg_finish(&b);
    raw_put_empty(&b, 'S');
    buf_msg_start(&b, 'f');
    buf_put_str(&b, "red team");
    buf_msg_finish(&b);
    raw_put_empty(&b, 'S');
    raw_put_pbe(&b, PROBE);
    raw_put_empty(&b, 'S');
    proto_query(&b, "ROLLBACK; " PROBE);
    cr_assert(raw_send(fa, &b));
    rd(fa, log, sizeof(log), 4, 3000);
    cr_expect_eq(probes_of(log, 1, NULL), 1, "copy in: %s", log);
    expect_sent_probe(bc, 2, "tenant 1's failed COPY FROM STDIN");
    /* a COPY FROM STDIN left open by a disconnect */
    proto_query(&b, "BEGIN; CREATE TEMP TABLE rt15_in (v text)");
    raw_put_pbe(&b, "COPY rt15_in FROM STDIN");
    raw_put_empty(&b, 'S');
    buf_msg_start(&b, 'd');
    buf_put_bytes(&b, "y\n", 2);
    buf_msg_finish(&b);
    raw_send(fa, &b);
    usleep(100 * 1000);
    send_probe(bc);
    PQfinish(a);
    expect_sent_probe(bc, 2, "tenant 1 left in COPY FROM STDIN");
    PGconn *n = login("nobody");
    EXPECT_QUERY_VALUE(n, PROBE, "/0/lp_tenant", "a client without a tenant after tenant 1");
    PQfinish(n);
    buf_free(&b);
    PQfinish(bc);
}

/* ---- 9. a client disconnecting in the middle of its batch ---- */

Test(redteam15, a_client_leaving_mid_batch_leaves_nothing_for_the_next_tenant, .init = start_txn,
     .fini = stop_proxy)
{
    signal(SIGPIPE, SIG_IGN); /* libpq's Terminate on a socket shut down for writing */
    PGconn *bc = tenant(2);
    for (int k = 0; k < 7; k++) {
        PGconn *a = tenant(1);
        int fa = raw_of(a);
        struct buf b;
        buf_init(&b);
        switch (k) {
        case 0: /* Sync-less batch, flushed */
            raw_put_pbe(&b, "SELECT pg_sleep(0.2)");
            raw_put_pbe(&b, PROBE);
            raw_put_empty(&b, 'H');
            break;
        case 1: /* open transaction with an update */
            raw_put_pbe(&b, "BEGIN");
            raw_put_pbe(&b, "UPDATE rls_docs SET body = body WHERE id = 1");
            raw_put_empty(&b, 'S');
            break;
        case 2: /* half a message */
            raw_put_pbe(&b, PROBE);
            b.len -= 5;
            break;
        case 3: /* a pipeline of Syncs still running */
            for (int i = 0; i < 20; i++) {
                raw_put_pbe(&b, "SELECT pg_sleep(0.01)");
                raw_put_empty(&b, 'S');
            }
            break;
        case 5: /* Terminate in the middle of an unsynced batch */
            raw_put_pbe(&b, "SELECT pg_sleep(0.2)");
            raw_put_pbe(&b, PROBE);
            raw_put_empty(&b, 'X');
            break;
        case 6: /* half-closed: a batch, then shutdown of the sending side */
            raw_put_pbe(&b, "BEGIN");
            raw_put_pbe(&b, "SELECT pg_sleep(0.2)");
            raw_put_empty(&b, 'S');
            raw_send(fa, &b);
            shutdown(fa, SHUT_WR);
            break;
        default: /* a named statement and an unnamed one in a failed transaction */
            proto_query(&b, "BEGIN");
            raw_put_parse(&b, "left_a", PROBE);
            raw_put_pbe(&b, "SELECT 1/0");
            raw_put_empty(&b, 'S');
        }
        raw_send(fa, &b);
        usleep(50 * 1000);
        send_probe(bc);
        PQfinish(a);
        expect_sent_probe(bc, 2, "tenant 1 left mid-batch");
        PGconn *n = login("nobody");
        EXPECT_QUERY_VALUE(n, PROBE, "/0/lp_tenant", "a client without a tenant, case %d", k);
        PQfinish(n);
        buf_free(&b);
    }
    PQfinish(bc);
}

/* ---- 10. the server's backend killed while in use, and between uses ---- */

/* Terminates the backend serving c (only that one: other suites run alongside). In a
 * transaction c keeps the server; otherwise it is the pool's only one. */
static void kill_backend(PGconn *adm, PGconn *c)
{
    char *pid = query_value(c, "SELECT pg_backend_pid()");
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%s)", pid);
    free(pid);
    PQclear(PQexec(adm, sql));
}

Test(redteam15, a_killed_backend_gives_no_tenant_another_s_settings, .init = start_txn,
     .fini = stop_proxy)
{
    PGconn *a = tenant(1), *bc = tenant(2);
    PGconn *adm = pg_admin("lp_test");
    /* killed between uses: the next one gets a new connection, injected afresh */
    expect_own(a, 1, "before");
    kill_backend(adm, a);
    usleep(200 * 1000);
    PGresult *r = PQexec(bc, PROBE); /* may fail once (08006), then serve */
    PQclear(r);
    expect_own(bc, 2, "a killed idle backend");
    expect_own(a, 1, "a killed idle backend");
    /* killed inside a transaction */
    free(query_value(a, "BEGIN"));
    expect_own(a, 1, "in a transaction");
    kill_backend(adm, a);
    send_probe(bc);
    usleep(200 * 1000);
    PQclear(PQexec(a, PROBE));
    expect_sent_probe(bc, 2, "a backend killed in tenant 1's transaction");
    PQfinish(a);
    a = tenant(1);
    expect_own(a, 1, "a new login");
    PQfinish(adm);
    PQfinish(a);
    PQfinish(bc);
}

/* ---- 11. session pooling ---- */

Test(redteam15, session_pooling_resets_between_tenants_whatever_the_first_left,
     .init = start_session, .fini = stop_proxy)
{
    for (int k = 0; k < 4; k++) {
        PGconn *a = tenant(1);
        int fa = raw_of(a);
        struct buf b;
        buf_init(&b);
        char log[4096] = "";
        expect_own(a, 1, "a session login");
        cr_expect_str_eq(query_sqlstate(a, "DISCARD ALL"), "42501");
        cr_expect_str_eq(query_sqlstate(a, "RESET ALL"), "42501");
        expect_own(a, 1, "refused resets");
        switch (k) {
        case 0:
            free(query_value(a, "BEGIN"));
            free(query_value(a, "SAVEPOINT s"));
            break;
        case 1:
            raw_put_parse(&b, "sess_a", PROBE);
            raw_put_bind(&b, "p", "sess_a");
            raw_put_empty(&b, 'H');
            raw_send(fa, &b);
            rd(fa, log, sizeof(log), 1, 300);
            break;
        case 2:
            PQclear(PQexec(a, "DECLARE hc CURSOR WITH HOLD FOR " PROBE));
            PQclear(PQexec(a, "PREPARE sp AS " PROBE));
            break;
        default:
            raw_put_pbe(&b, "SELECT pg_sleep(0.3)");
            raw_put_empty(&b, 'S');
            raw_send(fa, &b);
        }
        PQfinish(a);
        PGconn *bc = tenant(2);
        expect_own(bc, 2, "tenant 1's session ended");
        cr_expect_str_eq(query_sqlstate(bc, "FETCH ALL FROM hc"), "34000");
        cr_expect_str_eq(query_sqlstate(bc, "EXECUTE sp"), "26000");
        PQfinish(bc);
        PGconn *n = login("nobody");
        EXPECT_QUERY_VALUE(n, PROBE, "/0/lp_tenant", "a client without a tenant, case %d", k);
        PQfinish(n);
        buf_free(&b);
    }
}

/* ---- 12. a tenant-less client after a tenant on one server, by every protocol ---- */

Test(redteam15, a_client_without_a_tenant_never_inherits_one, .init = start_txn, .fini = stop_proxy)
{
    PGconn *a = tenant(1), *n = login("nobody");
    int fn = raw_of(n);
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < 30; i++) {
        expect_own(a, 1, "its turn");
        char log[4096] = "";
        if (i % 2)
            proto_query(&b, PROBE);
        else {
            raw_put_pbe(&b, "ROLLBACK");
            raw_put_pbe(&b, PROBE);
            raw_put_empty(&b, 'S');
        }
        cr_assert(raw_send(fn, &b));
        rd(fn, log, sizeof(log), 1, 5000);
        cr_expect(strstr(log, "D:/0/lp_tenant ") != NULL, "round %d: %s", i, log);
    }
    buf_free(&b);
    PQfinish(a);
    PQfinish(n);
}

/* ---- 13. reply-count desync attempts: copy messages outside a copy, Syncs during a copy,
 * copies ended by the server's error, suspended portals, empty queries, bare Syncs. A
 * miscount would hand the server to the other tenant while tenant 1's messages are queued
 * there (running under tenant 2's settings, or their rows reaching tenant 2) ---- */

static void weird(struct buf *b, int k)
{
    switch (k) {
    case 0: /* CopyDone and CopyFail outside a copy, then a copy with Syncs inside */
        raw_put_empty(b, 'c');
        buf_msg_start(b, 'f');
        buf_put_str(b, "x");
        buf_msg_finish(b);
        raw_put_pbe(b, "COPY scratch FROM STDIN");
        raw_put_empty(b, 'S');
        raw_put_empty(b, 'S');
        raw_put_copy_str(b, "rt15\n");
        raw_put_empty(b, 'c');
        raw_put_empty(b, 'S');
        break;
    case 1: /* the server ends the copy with an error after Syncs were sent in it */
        raw_put_pbe(b, "COPY scratch FROM STDIN");
        raw_put_empty(b, 'S');
        raw_put_copy_str(b, "a\tb\tc\n");
        raw_put_empty(b, 'S');
        raw_put_pbe(b, PROBE);
        raw_put_empty(b, 'c');
        raw_put_empty(b, 'S');
        break;
    case 2: /* a simple COPY, an extended Sync inside, bad data, CopyDone */
        proto_query(b, "COPY scratch FROM STDIN");
        raw_put_empty(b, 'S');
        raw_put_copy_str(b, "a\tb\n");
        raw_put_empty(b, 'S');
        raw_put_empty(b, 'c');
        raw_put_empty(b, 'S');
        break;
    case 3: /* a suspended portal, then Sync */
        raw_put_parse(b, "", "SELECT g FROM generate_series(1, 5) g");
        raw_put_bind(b, "", "");
        buf_msg_start(b, 'E');
        buf_put_str(b, "");
        buf_put_u32(b, 1);
        buf_msg_finish(b);
        raw_put_empty(b, 'S');
        break;
    case 4: /* empty queries both ways, bare Syncs and Flushes */
        proto_query(b, "");
        raw_put_empty(b, 'S');
        raw_put_empty(b, 'H');
        raw_put_empty(b, 'S');
        raw_put_pbe(b, "");
        raw_put_empty(b, 'S');
        raw_put_close(b, 'P', "nope");
        raw_put_close(b, 'S', "nope");
        raw_put_empty(b, 'S');
        break;
    case 5: /* a copy that opens and ends in one multi-statement query, then the probe */
        proto_query(b, "COPY scratch FROM STDIN; SELECT 1");
        raw_put_copy_str(b, "rt15\n");
        raw_put_empty(b, 'c');
        break;
    case 6: /* two CopyDones, the second outside the copy, and a Sync between */
        raw_put_pbe(b, "COPY scratch FROM STDIN");
        raw_put_empty(b, 'c');
        raw_put_empty(b, 'S');
        raw_put_empty(b, 'c');
        raw_put_empty(b, 'S');
        break;
    case 7: /* a copy-out in a simple multi-statement query, ended by a later error */
        proto_query(b, "COPY (SELECT 1) TO STDOUT; SELECT 1/0; SELECT 2");
        raw_put_pbe(b, "COPY (SELECT g FROM generate_series(1, 3) g) TO STDOUT");
        raw_put_empty(b, 'S');
        break;
    case 13: /* a simple Query inside an unsynced extended batch, in a transaction */
        raw_put_pbe(b, "BEGIN");
        proto_query(b, "SELECT 1");
        raw_put_pbe(b, PROBE);
        proto_query(b, "COMMIT");
        raw_put_empty(b, 'S');
        break;
    case 14: /* a simple Query after an unsynced Execute, no Sync of its own */
        raw_put_pbe(b, PROBE);
        raw_put_empty(b, 'H');
        proto_query(b, PROBE);
        break;
    case 9: /* a DEALLOCATE the proxy answers itself, in the middle of a pipeline */
        raw_put_parse(b, "x", "SELECT 1");
        raw_put_empty(b, 'S');
        raw_put_pbe(b, "DEALLOCATE x");
        raw_put_pbe(b, PROBE);
        raw_put_pbe(b, "DEALLOCATE nope");
        raw_put_pbe(b, PROBE);
        raw_put_empty(b, 'S');
        raw_put_pbe(b, PROBE);
        raw_put_empty(b, 'S');
        break;
    case 10: /* DEALLOCATE ALL through the extended protocol, flushed, then more */
        raw_put_parse(b, "y", PROBE);
        raw_put_pbe(b, "DEALLOCATE ALL");
        raw_put_empty(b, 'H');
        raw_put_bind(b, "", "y");
        raw_put_execute(b, "");
        raw_put_empty(b, 'S');
        break;
    case 11: /* a statement closed twice, then bound; portals closed before use */
        raw_put_parse(b, "z", PROBE);
        raw_put_close(b, 'S', "z");
        raw_put_close(b, 'S', "z");
        raw_put_bind(b, "", "z");
        raw_put_execute(b, "");
        raw_put_empty(b, 'S');
        raw_put_parse(b, "z", PROBE);
        raw_put_bind(b, "pz", "z");
        raw_put_close(b, 'P', "pz");
        raw_put_execute(b, "pz");
        raw_put_empty(b, 'S');
        break;
    default: /* an error in Bind (wrong parameter count) with Syncs around */
        raw_put_parse(b, "", "SELECT $1::int");
        raw_put_bind(b, "", "");
        raw_put_execute(b, "");
        raw_put_empty(b, 'S');
        raw_put_empty(b, 'S');
    }
}

Test(redteam15, reply_count_desync_attempts_never_cross_tenants, .init = start_txn,
     .fini = stop_proxy, .timeout = 120)
{
    PGconn *bc = tenant(2);
    for (int k = 0; k < 15; k++) {
        PGconn *a = tenant(1);
        int fa = raw_of(a);
        struct buf b;
        buf_init(&b);
        static char log[16384];
        log[0] = '\0';
        weird(&b, k);
        raw_put_pbe(&b, PROBE);
        raw_put_empty(&b, 'S');
        cr_assert(raw_send(fa, &b));
        send_probe(bc);
        for (int i = 0; i < 3; i++) {
            raw_put_pbe(&b, PROBE);
            raw_put_empty(&b, 'S');
            raw_send(fa, &b);
            usleep(20 * 1000);
        }
        rd(fa, log, sizeof(log), 100, 1500);
        fprintf(stderr, "redteam15 desync case %d: %s\n", k, log);
        cr_expect(probes_of(log, 1, "1 ") >= 0 && strstr(log, "D:/") == NULL,
                  "case %d: tenant 1 saw another's: %s", k, log);
        cr_expect(strstr(log, "D:2/") == NULL, "case %d: %s", k, log);
        /* (a server whose replies owed are unsure stays with tenant 1 until it leaves) */
        PQfinish(a);
        expect_sent_probe(bc, 2, "a desync attempt");
        expect_own(bc, 2, "a desync attempt, again");
        buf_free(&b);
    }
    PGconn *n = login("nobody");
    EXPECT_QUERY_VALUE(n, PROBE, "/0/lp_tenant", "a client without a tenant after them all");
    PQfinish(n);
    PQfinish(bc);
}

/* ---- 14. each tenant cancelling its own statements as they start (the injection runs then) ----
 */

struct selfcancel {
    int t, n, wrong, errors;
    char first[256];
};

static void *selfcancel_main(void *arg)
{
    struct selfcancel *w = arg;
    char user[16], want[64], err[256];
    snprintf(user, sizeof(user), "t%d", w->t);
    own_str(w->t, want, sizeof(want));
    PGconn *c = proxy_connect(&px, user, "pw", "app", NULL);
    for (int i = 0; i < w->n; i++) {
        if (PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = proxy_connect(&px, user, "pw", "app", NULL);
            continue;
        }
        PGcancel *cn = PQgetCancel(c);
        PQsendQuery(c, PROBE);
        if (i % 3)
            usleep((useconds_t)(i % 7) * 50);
        PQcancel(cn, err, sizeof(err));
        PQfreeCancel(cn);
        PGresult *r;
        while ((r = PQgetResult(c)) != NULL) {
            if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
                if (strcmp(PQgetvalue(r, 0, 0), want) != 0) {
                    w->wrong++;
                    snprintf(w->first, sizeof(w->first), "%s", PQgetvalue(r, 0, 0));
                }
            } else if (PQresultStatus(r) == PGRES_FATAL_ERROR)
                w->errors++;
            PQclear(r);
        }
    }
    PQfinish(c);
    return NULL;
}

Test(redteam15, self_cancels_racing_the_injection_never_cross_tenants, .init = start_txn,
     .fini = stop_proxy, .timeout = 120)
{
    struct selfcancel w[3] = {{.t = 1, .n = 400}, {.t = 2, .n = 400}, {.t = 1, .n = 400}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, selfcancel_main, &w[i]);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    fprintf(stderr, "redteam15 self-cancel race: errors %d %d %d\n", w[0].errors, w[1].errors,
            w[2].errors);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(w[i].wrong, 0, "tenant %d saw %s", w[i].t, w[i].first);
    PGconn *a = tenant(1), *bc = tenant(2);
    expect_own(a, 1, "the self-cancel race");
    expect_own(bc, 2, "the self-cancel race");
    PQfinish(a);
    PQfinish(bc);
}

/* ---- 15. one named statement prepared by both tenants (shared on the server under one name),
 * run past PostgreSQL's switch to a generic plan, alternately ---- */

Test(redteam15, a_statement_shared_by_two_tenants_runs_under_each_one_s_settings, .init = start_txn,
     .fini = stop_proxy)
{
    PGconn *c[2] = {tenant(1), tenant(2)};
    static const char *sql =
        "SELECT coalesce(current_setting('app.tenant_id', true), 'NULL') || '/' || count(*) || "
        "'/' || current_user FROM rls_docs WHERE id > $1::int";
    for (int i = 0; i < 2; i++) {
        PGresult *r = PQprepare(c[i], "shared", sql, 1, NULL);
        cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c[i]));
        PQclear(r);
    }
    const char *zero[1] = {"0"};
    for (int round = 0; round < 30; round++)
        for (int i = 0; i < 2; i++) {
            PGresult *r = PQexecPrepared(c[i], "shared", 1, zero, NULL, NULL, 0);
            char want[64];
            own_str(i + 1, want, sizeof(want));
            const char *got =
                PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : PQerrorMessage(c[i]);
            cr_expect_str_eq(got, want, "round %d tenant %d", round, i + 1);
            PQclear(r);
        }
    PQfinish(c[0]);
    PQfinish(c[1]);
}

/* ---- 16. backends killed at random while two tenants alternate on one server (the kill
 * lands in the injection, between it and the statement, or in the statement) ---- */

struct killer {
    volatile int *stop;
    int kills;
};

static void *kill_main(void *arg)
{
    struct killer *k = arg;
    PGconn *adm = pg_admin("lp_test");
    while (!*k->stop) {
        PGresult *r =
            PQexec(adm, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = 'rt15kill' AND pid <> pg_backend_pid()");
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            k->kills += atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
        usleep((useconds_t)(3000 + rand() % 20000));
    }
    PQfinish(adm);
    return NULL;
}

struct alternator {
    int t, n, wrong, errors, ok;
    char first[256];
};

static void *alt_main(void *arg)
{
    struct alternator *w = arg;
    char user[16], want[64];
    snprintf(user, sizeof(user), "t%d", w->t);
    own_str(w->t, want, sizeof(want));
    PGconn *c = NULL;
    for (int i = 0; i < w->n; i++) {
        if (!c || PQstatus(c) != CONNECTION_OK) {
            if (c)
                PQfinish(c);
            c = proxy_connect(&px, user, "pw", "app", "application_name=rt15kill");
            continue;
        }
        PGresult *r;
        if (i % 3 == 0) {
            r = PQexecParams(c, PROBE, 0, NULL, NULL, NULL, NULL, 0);
        } else if (i % 3 == 1) {
            PQclear(PQexec(c, "BEGIN"));
            r = PQexec(c, PROBE);
            PQclear(PQexec(c, "COMMIT"));
        } else
            r = PQexec(c, PROBE);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            if (strcmp(PQgetvalue(r, 0, 0), want) != 0) {
                w->wrong++;
                snprintf(w->first, sizeof(w->first), "%s", PQgetvalue(r, 0, 0));
            } else
                w->ok++;
        } else
            w->errors++;
        PQclear(r);
    }
    if (c)
        PQfinish(c);
    return NULL;
}

Test(redteam15, backends_killed_at_random_never_leave_a_tenant_another_s_settings,
     .init = start_txn, .fini = stop_proxy, .timeout = 120)
{
    volatile int stop = 0;
    struct killer k = {.stop = &stop};
    struct alternator w[3] = {{.t = 1, .n = 600}, {.t = 2, .n = 600}, {.t = 1, .n = 600}};
    pthread_t kt, th[3];
    pthread_create(&kt, NULL, kill_main, &k);
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, alt_main, &w[i]);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    stop = 1;
    pthread_join(kt, NULL);
    fprintf(stderr, "redteam15 kill race: %d kills; ok %d %d %d, errors %d %d %d\n", k.kills,
            w[0].ok, w[1].ok, w[2].ok, w[0].errors, w[1].errors, w[2].errors);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(w[i].wrong, 0, "tenant %d saw %s", w[i].t, w[i].first);
    PGconn *a = tenant(1), *bc = tenant(2);
    expect_own(a, 1, "the kill race");
    expect_own(bc, 2, "the kill race");
    PQfinish(a);
    PQfinish(bc);
}

/* ---- 17. temporary tables made without the word TEMP (pg_temp, the backend's own pg_temp_N
 * schema, SELECT INTO) holding tenant 1's rows, read by tenant 2 on the same server ---- */

Test(redteam15, temporary_tables_spelled_otherwise_never_reach_the_next_tenant, .init = start_txn,
     .fini = stop_proxy)
{
    PGconn *a = tenant(1), *bc = tenant(2);
    char sql[256];
    static const char *const made[] = {
        "CREATE TABLE pg_temp.st_a AS SELECT * FROM rls_docs",
        "CREATE TABLE \"pg_temp\".st_b AS SELECT * FROM rls_docs",
        "CREATE TABLE PG_TEMP.st_c AS SELECT * FROM rls_docs",
        "SELECT * INTO TEMP st_d FROM rls_docs",
        "SELECT * INTO pg_temp.st_e FROM rls_docs",
        "CREATE LOCAL TEMPORARY TABLE st_f AS SELECT * FROM rls_docs",
        "CREATE TABLE pg_temp.st_g (LIKE rls_docs); INSERT INTO pg_temp.st_g SELECT * FROM "
        "rls_docs",
    };
    for (size_t i = 0; i < sizeof(made) / sizeof(*made); i++) {
        PGresult *r = PQexec(a, made[i]);
        fprintf(stderr, "redteam15 temp: %s: %s\n", made[i], PQresultErrorMessage(r));
        PQclear(r);
        PQclear(PQexecParams(a, made[i], 0, NULL, NULL, NULL, NULL, 0));
    }
    /* the backend's own temporary schema by its real name */
    for (int n = 1; n <= 40; n++) {
        snprintf(sql, sizeof(sql), "CREATE TABLE pg_temp_%d.st_n AS SELECT * FROM rls_docs", n);
        PGresult *r = PQexec(a, sql);
        if (PQresultStatus(r) == PGRES_COMMAND_OK)
            fprintf(stderr, "redteam15 temp: created in pg_temp_%d\n", n);
        PQclear(r);
    }
    static const char *const tables[] = {"st_a", "st_b", "st_c", "st_d",
                                         "st_e", "st_f", "st_g", "st_n"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(*tables); i++) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_temp.%s", tables[i]);
        PGresult *r = PQexec(bc, sql);
        cr_expect(PQresultStatus(r) != PGRES_TUPLES_OK, "tenant 2 read tenant 1's %s: %s rows",
                  tables[i], PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "");
        PQclear(r);
    }
    expect_own(bc, 2, "tenant 1's temporary tables");
    PQfinish(a);
    PQfinish(bc);
}
