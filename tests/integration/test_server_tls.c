/* test_server_tls.c: transaction pooling over TLS server connections (as to Lakebase), whose
 * TLS lakeproxy runs on the socket itself (conn_tls_connect): every row of many clients'
 * queries, large results, COPY both ways and pipelines arrive whole and in order, and a TLS
 * server that goes away is replaced. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct proxy px;

/* Adds database entry name: two TLS server connections (verify-full against the CA in file
 * ca of the test certificates) in transaction pooling. */
static void add_tls_txn_database(char *yaml, size_t yamlsz, const char *name, const char *ca)
{
    char e[1024];
    snprintf(e, sizeof(e),
             "  %s:\n    host: localhost\n    port: %s\n    dbname: lp_test\n"
             "    user: lp_server\n    password: server-secret\n    tls: verify-full\n"
             "    ca_file: %s/%s\n    pool:\n      mode: transaction\n      size: 2\n",
             name, env_need("LP_PGPORT"), env_need("LP_CERTS"), ca);
    yaml_add_database(yaml, yamlsz, e);
}

/* Databases app_tls_txn, app_tls_gone for the test that ends its servers (its own pool: the
 * tests run at once), and app_tls_rogue, which trusts a CA that did not sign PostgreSQL's
 * certificate. */
static void start_tls_txn(void)
{
    char yaml[8192];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 5000, NULL);
    add_tls_txn_database(yaml, sizeof(yaml), "app_tls_txn", "ca.crt");
    add_tls_txn_database(yaml, sizeof(yaml), "app_tls_gone", "ca.crt");
    add_tls_txn_database(yaml, sizeof(yaml), "app_tls_rogue", "rogue-ca.crt");
    proxy_start_yaml(&px, port, yaml);
}

static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(server_tls, .init = start_tls_txn, .fini = stop_proxy, .timeout = 120);

/* A client of database db named app (application_name). */
static PGconn *connect_tls(const char *db, const char *app)
{
    char opts[128];
    snprintf(opts, sizeof(opts), "application_name=%s", app);
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", db, opts);
    cr_assert(PQstatus(c) == CONNECTION_OK, "login failed: %s", PQerrorMessage(c));
    return c;
}

Test(server_tls, many_clients_interleaved_over_two_tls_servers_get_their_own_rows)
{
    enum { N = 6, ROUNDS = 60 };
    PGconn *c[N];
    for (int i = 0; i < N; i++)
        c[i] = connect_tls("app_tls_txn", "lp-tls-interleaved");
    char *ssl = query_value(c[0], "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    cr_expect_str_eq(ssl, "true", "the server connection is not TLS");
    free(ssl);
    for (int round = 0; round < ROUNDS; round++) {
        char sql[128];
        for (int i = 0; i < N; i++) { /* all in flight at once over two servers */
            snprintf(sql, sizeof(sql), "SELECT %d * 1000 + %d, md5('%d-%d')", i, round, i, round);
            cr_assert(PQsendQuery(c[i], sql), "%s", PQerrorMessage(c[i]));
        }
        for (int i = 0; i < N; i++) {
            PGresult *r = PQgetResult(c[i]);
            cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c[i]));
            char want[16];
            snprintf(want, sizeof(want), "%d", i * 1000 + round);
            cr_assert_str_eq(PQgetvalue(r, 0, 0), want, "client %d got another's row", i);
            PQclear(r);
            while ((r = PQgetResult(c[i])))
                PQclear(r);
        }
    }
    for (int i = 0; i < N; i++)
        PQfinish(c[i]);
}

Test(server_tls, large_results_copy_and_pipelines_arrive_whole)
{
    PGconn *c = connect_tls("app_tls_txn", "lp-tls-large");
    for (int i = 0; i < 3; i++) { /* taken over between transactions */
        char *v = query_value(c, "SELECT 1");
        free(v);
    }
    /* about 12 MB of rows: many TLS records per read, and the client's socket fills */
    char *v = query_value(c, "SELECT count(*) || '/' || sum(length(x)) FROM (SELECT "
                             "repeat(md5(g::text), 4) AS x FROM generate_series(1, 90000) g) s");
    cr_expect_str_eq(v, "90000/11520000");
    free(v);
    PGresult *r = PQexec(c, "SELECT repeat(md5(g::text), 4) FROM generate_series(1, 90000) g");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    cr_expect_eq(PQntuples(r), 90000);
    size_t total = 0;
    for (int i = 0; i < PQntuples(r); i++)
        total += strlen(PQgetvalue(r, i, 0));
    cr_expect_eq(total, 11520000u, "rows were lost or cut: %zu bytes", total);
    PQclear(r);
    /* COPY IN of about 6 MB: the server's socket fills, writes wait for it */
    pg_exec_ok(c, "CREATE TEMP TABLE IF NOT EXISTS tls_copy (n int, t text)");
    r = PQexec(c, "COPY tls_copy FROM STDIN");
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_IN, "%s", PQerrorMessage(c));
    PQclear(r);
    char line[256];
    for (int i = 1; i <= 50000; i++) {
        int n = snprintf(line, sizeof(line), "%d\t%0120d\n", i, i);
        cr_assert_eq(PQputCopyData(c, line, n), 1, "%s", PQerrorMessage(c));
    }
    cr_assert_eq(PQputCopyEnd(c, NULL), 1);
    r = PQgetResult(c);
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    while ((r = PQgetResult(c)))
        PQclear(r);
    v = query_value(c, "SELECT count(*) || '/' || sum(n) || '/' || sum(length(t)) FROM tls_copy");
    cr_expect_str_eq(v, "50000/1250025000/6000000");
    free(v);
    /* a pipeline of 500 queries in one write */
    cr_assert_eq(PQenterPipelineMode(c), 1);
    for (int i = 0; i < 500; i++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        cr_assert_eq(PQsendQueryParams(c, sql, 0, NULL, NULL, NULL, NULL, 0), 1);
    }
    cr_assert_eq(PQpipelineSync(c), 1);
    for (int i = 0; i < 500; i++) {
        r = PQgetResult(c);
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "query %d: %s", i, PQerrorMessage(c));
        char want[16];
        snprintf(want, sizeof(want), "%d", i);
        cr_assert_str_eq(PQgetvalue(r, 0, 0), want);
        PQclear(r);
        cr_assert_null(PQgetResult(c));
    }
    r = PQgetResult(c);
    cr_expect_eq(PQresultStatus(r), PGRES_PIPELINE_SYNC);
    PQclear(r);
    PQexitPipelineMode(c);
    PQfinish(c);
}

Test(server_tls, a_tls_server_that_goes_away_is_replaced)
{
    PGconn *c = connect_tls("app_tls_gone", "lp-tls-goes-away");
    for (int i = 0; i < 3; i++)
        free(query_value(c, "SELECT 1"));
    /* the pool's servers end while idle: the proxy reads their end through TLS (waited for:
     * a query racing a server's end would get the 'server connection lost' error) */
    PGconn *adm = pg_admin("postgres");
    long n = pg_long(adm, "SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity a "
                          "JOIN pg_stat_ssl s USING (pid) WHERE s.ssl AND "
                          "a.application_name = 'lp-tls-goes-away'");
    PQfinish(adm);
    cr_assert_gt(n, 0, "no server of the test's pool to end");
    for (int waited = 0; file_count_lines(px.log, "(app_tls_gone): closing") < n; waited++) {
        cr_assert_lt(waited, 300, "lakeproxy did not see its TLS servers end");
        usleep(10 * 1000);
    }
    for (int i = 0; i < 20; i++) {
        char *v = query_value(c, "SELECT 41 + 1");
        cr_expect_str_eq(v, "42", "query %d after the servers went: %s", i, PQerrorMessage(c));
        free(v);
    }
    PQfinish(c);
}

/* verify-full: a server whose certificate the configured CA did not sign is never logged in
 * to, and the client is told why (08006, the failed handshake) instead of waiting. */
Test(server_tls, a_server_certificate_the_ca_did_not_sign_is_refused)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app_tls_rogue", NULL);
    const char *err = PQerrorMessage(c);
    PGresult *r = NULL;
    if (PQstatus(c) == CONNECTION_OK) { /* (a login that needs no server: the query fails) */
        r = PQexec(c, "SELECT 1");
        cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "a query ran over an unverified server");
        err = PQresultErrorMessage(r);
    }
    cr_expect(strstr(err, "TLS handshake failed"), "not the handshake's error: %s", err);
    cr_expect_eq(file_count_lines(px.log, "(app_tls_rogue): logged in"), 0,
                 "lakeproxy logged in to a server it could not verify");
    PQclear(r);
    PQfinish(c);
}
