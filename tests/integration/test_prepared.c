/* test_prepared.c: named prepared statements under transaction pooling: prepared once by the
 * client, re-prepared by the proxy on whichever server runs the next transaction. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"
#include "proto.h"

static struct proxy px;

static void start_txn_two(void)
{
    proxy_start_with(&px, "transaction", 2, 10000, NULL);
}
static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(prepared, .init = start_txn_two, .fini = stop_proxy, .timeout = 120);

static PGconn *alice(void)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* A new client gets an answer: the proxy is still up and serving. */
static void expect_served(void)
{
    PGconn *c = alice();
    char *v = query_value(c, "SELECT 'proxy still up'");
    cr_expect_str_eq(v, "proxy still up");
    free(v);
    PQfinish(c);
}

static void prepare(PGconn *c, const char *name, const char *sql, int nparams)
{
    PGresult *r = PQprepare(c, name, sql, nparams, NULL);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "PQprepare %s: %s", name, PQerrorMessage(c));
    PQclear(r);
}

/* Runs prepared statement name with one parameter and returns the first value (malloc'd). */
static char *exec_prepared(PGconn *c, const char *name, const char *param)
{
    const char *params[1] = {param};
    PGresult *r = PQexecPrepared(c, name, param ? 1 : 0, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", name, PQerrorMessage(c));
    char *v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

Test(prepared, statement_follows_the_client_across_servers)
{
    PGconn *a = alice(), *b = alice(), *other = alice();
    prepare(a, "by_id", "SELECT name FROM items WHERE id = $1", 1);
    PGconn *hold = alice();
    for (int i = 1; i <= 40; i++) {
        char id[16], want[32];
        snprintf(id, sizeof(id), "%d", i);
        snprintf(want, sizeof(want), "item %d", i);
        if (i % 10 == 0) { /* park one server in a transaction so a moves around */
            free(query_value(hold, i % 20 == 0 ? "COMMIT" : "BEGIN"));
        }
        free(query_value(other, "SELECT 1"));
        char *v = exec_prepared(a, "by_id", id);
        cr_expect_str_eq(v, want);
        free(v);
    }
    char *pids = query_value(b, "SELECT 1");
    free(pids);
    PQfinish(a);
    PQfinish(b);
    PQfinish(other);
    PQfinish(hold);
}

Test(prepared, same_name_in_two_clients_means_two_statements)
{
    PGconn *a = alice(), *b = alice();
    prepare(a, "q", "SELECT 'from a ' || $1::text", 1);
    prepare(b, "q", "SELECT 'from b ' || $1::text", 1);
    for (int i = 0; i < 5; i++) {
        char *va = exec_prepared(a, "q", "x"), *vb = exec_prepared(b, "q", "y");
        cr_expect_str_eq(va, "from a x");
        cr_expect_str_eq(vb, "from b y");
        free(va);
        free(vb);
    }
    PQfinish(a);
    PQfinish(b);
}

Test(prepared, describe_and_deallocate)
{
    PGconn *a = alice();
    prepare(a, "two_cols", "SELECT id, name FROM items WHERE id = $1", 1);
    PGresult *r = PQdescribePrepared(a, "two_cols");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(a));
    cr_expect_eq(PQnfields(r), 2);
    cr_expect_eq(PQnparams(r), 1);
    cr_expect_str_eq(PQfname(r, 1), "name");
    PQclear(r);
    free(query_value(a, "DEALLOCATE two_cols"));
    const char *params[1] = {"1"};
    r = PQexecPrepared(a, "two_cols", 1, params, NULL, NULL, 0);
    cr_expect_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "26000",
                     "a deallocated statement must be gone: %s", PQerrorMessage(a));
    PQclear(r);
    prepare(a, "two_cols", "SELECT 2, 'again'", 0); /* the name is free again */
    char *v = exec_prepared(a, "two_cols", NULL);
    cr_expect_str_eq(v, "2");
    free(v);
    PQfinish(a);
}

Test(prepared, unknown_statement_and_bad_sql_fail_like_postgresql)
{
    PGconn *a = alice();
    const char *params[1] = {"1"};
    PGresult *r = PQexecPrepared(a, "never_prepared", 1, params, NULL, NULL, 0);
    cr_expect_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "26000");
    PQclear(r);
    r = PQprepare(a, "broken", "SELEKT 1", 0, NULL);
    cr_expect_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "42601");
    PQclear(r);
    char *v = query_value(a, "SELECT 'usable after errors'");
    cr_expect_str_eq(v, "usable after errors");
    free(v);
    prepare(a, "fine", "SELECT $1::int * 2", 1);
    v = exec_prepared(a, "fine", "21");
    cr_expect_str_eq(v, "42");
    free(v);
    PQfinish(a);
}

Test(prepared, more_statements_than_a_server_caches_still_work)
{
    PGconn *a = alice();
    char name[32], sql[128], want[32];
    for (int i = 0; i < 300; i++) { /* the per-server cache holds 256 */
        snprintf(name, sizeof(name), "s%d", i);
        snprintf(sql, sizeof(sql), "SELECT %d + $1::int", i);
        prepare(a, name, sql, 1);
    }
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 300; i += 7) {
            snprintf(name, sizeof(name), "s%d", i);
            snprintf(want, sizeof(want), "%d", i + 1);
            char *v = exec_prepared(a, name, "1");
            cr_expect_str_eq(v, want, "%s", name);
            free(v);
        }
    PQfinish(a);
}

struct prep_arg {
    const struct proxy *p;
    int errors;
};

static void *prep_client(void *arg)
{
    struct prep_arg *m = arg;
    PGconn *c = proxy_connect(m->p, "alice", "alice-secret", "app", NULL);
    PGresult *r = PQprepare(c, "lookup", "SELECT name FROM items WHERE id = $1", 1, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        m->errors++;
    PQclear(r);
    for (int i = 1; i <= 30; i++) {
        char id[16], want[32];
        snprintf(id, sizeof(id), "%d", i);
        snprintf(want, sizeof(want), "item %d", i);
        const char *params[1] = {id};
        r = PQexecPrepared(c, "lookup", 1, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || strcmp(PQgetvalue(r, 0, 0), want) != 0)
            m->errors++;
        PQclear(r);
    }
    PQfinish(c);
    return NULL;
}

Test(prepared, fifty_clients_over_two_servers_with_prepared_statements)
{
    enum { N = 50 };
    pthread_t th[N];
    struct prep_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (struct prep_arg){.p = &px};
        cr_assert_eq(pthread_create(&th[i], NULL, prep_client, &args[i]), 0);
    }
    int errors = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        errors += args[i].errors;
    }
    cr_expect_eq(errors, 0);
}

/* The server-side names of prepared statements are lakeproxy's (lp_...), and every client of
 * the pool shares them: no client may replace, drop or run them by name in SQL, or one could
 * make another's statement run its own text. */
Test(prepared, lakeproxy_statement_names_are_reserved)
{
    PGconn *victim = alice(), *attacker = alice();
    prepare(victim, "mine", "SELECT $1::text || ' from victim'", 1);
    char *v = exec_prepared(victim, "mine", "hello");
    cr_expect_str_eq(v, "hello from victim");
    free(v);
    char *name = query_value(attacker, "SELECT name FROM pg_prepared_statements LIMIT 1");
    char sql[200];
    static const char *const forms[] = {"DEALLOCATE %s", "DEALLOCATE PREPARE %s",
                                        "PREPARE %s(text) AS SELECT 'hijacked ' || $1",
                                        "EXECUTE %s('x')"};
    for (size_t i = 0; name && i < sizeof(forms) / sizeof(forms[0]); i++) {
        snprintf(sql, sizeof(sql), forms[i], name);
        const char *qs = query_sqlstate(attacker, sql);
        /* a lone DEALLOCATE between transactions is answered by lakeproxy from the client's
         * own statements and never reaches a server */
        if (strncmp(sql, "DEALLOCATE", 10) != 0)
            cr_expect_str_eq(qs, "42501", "%s: %s", sql, qs);
        PGresult *r = PQprepare(attacker, "", sql, 0, NULL); /* extended protocol too */
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cr_expect_str_eq(st ? st : "", "42501", "Parse of %s", sql);
        PQclear(r);
    }
    if (name) { /* ... and through the protocol: Bind and Describe of the proxy's name */
        const char *params[1] = {"x"};
        PGresult *r = PQexecPrepared(attacker, name, 1, params, NULL, NULL, 0);
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cr_expect_str_eq(st ? st : "", "26000", "Bind of %s: %s", name, PQerrorMessage(attacker));
        cr_expect(strstr(PQerrorMessage(attacker), "are reserved by lakeproxy") != NULL, "%s",
                  PQerrorMessage(attacker));
        cr_expect(PQntuples(r) == 0);
        PQclear(r);
        r = PQdescribePrepared(attacker, name);
        st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cr_expect_str_eq(st ? st : "", "26000", "Describe of %s", name);
        PQclear(r);
    }
    cr_expect_str_eq(query_sqlstate(attacker, "PREPARE lp_0123456789abcdef AS SELECT 1"), "42501");
    cr_expect_str_eq(query_sqlstate(attacker, "SELECT 'lp_ in a string is fine'"), "");
    v = exec_prepared(victim, "mine", "still");
    cr_expect_str_eq(v, "still from victim");
    free(v);
    free(name);
    PQfinish(victim);
    PQfinish(attacker);
}

/* A proxy whose databases pool one server each in transaction mode: the default ones, and
 * database alias for PostgreSQL's database named dbname when alias is not NULL. */
static void start_one_server_with(struct proxy *one, const char *alias, const char *dbname)
{
    static char yaml[8192];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 1, 10000, NULL);
    if (alias)
        yaml_add_txn_database_sized(yaml, sizeof(yaml), alias, dbname, 1);
    proxy_start_yaml(one, port, yaml);
}

/* A proxy of its own with one server in transaction mode: every client shares it. */
static void start_one_server(struct proxy *one)
{
    start_one_server_with(one, NULL, NULL);
}

static PGconn *alice_at(const struct proxy *p)
{
    PGconn *c = proxy_connect(p, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* The unnamed statement under transaction pooling: a client's PQprepare("") and its later
 * PQexecPrepared("") may run on different servers, or on one where another client has made
 * its own unnamed statement meanwhile. Each client binds its own (prepared again where needed),
 * never another's; a client that made none gets PostgreSQL's "does not exist". */
Test(prepared, each_client_binds_its_own_unnamed_statement)
{
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one), *b = alice_at(&one), *n = alice_at(&one);
    prepare(a, "", "SELECT 'statement of a ' || $1::text", 1);
    prepare(b, "", "SELECT 'statement of b ' || $1::text", 1); /* the one server now holds b's */
    char *v = exec_prepared(a, "", "1");
    cr_expect_str_eq(v, "statement of a 1", "a ran another client's statement");
    free(v);
    v = exec_prepared(b, "", "2");
    cr_expect_str_eq(v, "statement of b 2");
    free(v);
    v = query_value(a, "SELECT 'a simple query'"); /* destroys the unnamed statement ... */
    free(v);
    v = exec_prepared(b, "", "3"); /* ... on the server: b's is prepared there again */
    cr_expect_str_eq(v, "statement of b 3");
    free(v);
    const char *params[1] = {"x"};
    PGresult *r = PQexecPrepared(n, "", 1, params, NULL, NULL, 0);
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect_str_eq(st ? st : "", "26000", "a client without an unnamed statement: %s",
                     PQerrorMessage(n));
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    cr_expect_str_eq(msg ? msg : "", "unnamed prepared statement does not exist",
                     "PostgreSQL's words, not the proxy's statement name");
    PQclear(r);
    v = query_value(n, "SELECT 'still usable'");
    cr_expect_str_eq(v, "still usable");
    free(v);
    PQfinish(a);
    PQfinish(b);
    PQfinish(n);
    proxy_stop(&one);
}

/* a's unnamed statement, long then short then long again (the proxy keeps room for it between
 * Parses and gives back room far larger than needed), is each time the one prepared again on
 * the one server after b's took its place. */
Test(prepared, an_unnamed_statement_of_any_length_is_prepared_again_whole)
{
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one), *b = alice_at(&one);
    static char sql[48 * 1024];
    const size_t lengths[] = {40000, 20, 300, 40000, 9000, 40};
    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        /* a comment pads the text to the length wanted; the result names the round */
        int head = snprintf(sql, sizeof(sql), "SELECT 'a round %zu ' || $1::text /*", i);
        size_t pad = lengths[i] > (size_t)head + 2 ? lengths[i] - (size_t)head - 2 : 0;
        memset(sql + head, 'x', pad);
        memcpy(sql + head + pad, "*/", 3);
        prepare(a, "", sql, 1);
        prepare(b, "", "SELECT 'b ' || $1::text", 1); /* the one server now holds b's */
        char want[32];
        snprintf(want, sizeof(want), "a round %zu z", i);
        char *v = exec_prepared(a, "", "z");
        cr_expect_str_eq(v, want, "round %zu (%zu bytes)", i, lengths[i]);
        free(v);
    }
    PQfinish(a);
    PQfinish(b);
    proxy_stop(&one);
}

/* Expects prepared statement name, run with param, to give "<want> <param>". */
static void expect_run(PGconn *c, const char *name, const char *param, const char *want)
{
    char expected[64];
    snprintf(expected, sizeof(expected), "%s %s", want, param);
    char *v = exec_prepared(c, name, param);
    cr_expect_str_eq(v, expected, "statement \"%s\"", name);
    free(v);
}

/* A client whose startup setting the server refuses fails; the proxy resets the server it
 * was given (DISCARD ALL, which drops every prepared statement there) and pools it again.
 * Another client's statement prepared there before must be prepared again, not bound to a
 * name the server no longer has. */
Test(prepared, statements_are_prepared_again_on_a_server_the_proxy_reset)
{
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one);
    prepare(a, "q", "SELECT 'q' || ' ' || $1::text", 1);
    expect_run(a, "q", "1", "q"); /* prepared on the one server */
    PGconn *b =
        proxy_connect(&one, "alice", "alice-secret", "app", "options='-c DateStyle=no_such_style'");
    if (PQstatus(b) == CONNECTION_OK) { /* the setting is applied at its first checkout */
        PGresult *r = PQexec(b, "SELECT 1");
        cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "a DateStyle PostgreSQL refuses");
        PQclear(r);
    }
    PQfinish(b);
    for (int i = 2; i <= 3; i++) {
        char param[16];
        snprintf(param, sizeof(param), "%d", i);
        expect_run(a, "q", param, "q");
    }
    PQfinish(a);
    proxy_stop(&one);
}

/* psycopg 3 evicts a statement from its cache with DEALLOCATE, inside the application's
 * transaction. The client's other statements go on running in that transaction, and so do
 * they after a query that only mentions DEALLOCATE (the proxy cannot tell what that dropped). */
Test(prepared, statements_run_after_a_deallocate_inside_a_transaction)
{
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one);
    prepare(a, "x", "SELECT 'x' || ' ' || $1::text", 1);
    prepare(a, "y", "SELECT 'y' || ' ' || $1::text", 1);
    expect_run(a, "x", "1", "x");
    expect_run(a, "y", "1", "y");
    cr_expect_str_eq(query_sqlstate(a, "BEGIN"), "");
    cr_expect_str_eq(query_sqlstate(a, "DEALLOCATE x"), "");
    expect_run(a, "y", "2", "y");
    cr_expect_str_eq(query_sqlstate(a, "COMMIT"), "");
    const char *params[1] = {"3"};
    PGresult *r = PQexecPrepared(a, "x", 1, params, NULL, NULL, 0);
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect_str_eq(st ? st : "", "26000", "x was deallocated: %s", PQerrorMessage(a));
    PQclear(r);
    expect_run(a, "y", "4", "y");
    cr_expect_str_eq(query_sqlstate(a, "BEGIN"), "");
    char *v = query_value(a, "SELECT 'deallocate is only a word here'");
    free(v);
    expect_run(a, "y", "5", "y"); /* prepared where it still is: closed first */
    cr_expect_str_eq(query_sqlstate(a, "COMMIT"), "");
    expect_run(a, "y", "6", "y");
    PQfinish(a);
    proxy_stop(&one);
}

/* A named Parse the proxy refuses is replaced by a failing Parse of the unnamed statement,
 * which drops the unnamed statement the client made before on that server: the client's
 * unnamed statement is prepared there again when it binds it. */
Test(prepared, a_refused_named_parse_leaves_the_unnamed_statement_usable)
{
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one);
    prepare(a, "", "SELECT 'u' || ' ' || $1::text", 1);
    expect_run(a, "", "1", "u");
    PGresult *r = PQprepare(a, "n", "EXECUTE lp_0123456789abcdef", 0, NULL);
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect_str_eq(st ? st : "", "42501", "a reserved name: %s", PQerrorMessage(a));
    PQclear(r);
    expect_run(a, "", "2", "u");
    PQfinish(a);
    proxy_stop(&one);
}

/* Runs sql through the extended protocol, unnamed (Parse "", Bind, Execute, Sync), and expects
 * it to succeed. */
static void exec_unnamed(PGconn *c, const char *sql)
{
    PGresult *r = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

/* Three rounds of: a's named statement runs on the one server, b's unnamed DEALLOCATE ALL
 * empties the server's statements (then b's unnamed `between`, when not NULL), and a's
 * statement runs again. The proxy must retire that server each round, or a's Bind of a
 * statement it believes prepared there fails. */
static void expect_each_unnamed_deallocate_retires_the_server(const char *between)
{
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one), *b = alice_at(&one);
    prepare(a, "kept", "SELECT 'kept ' || $1::text", 1);
    for (int round = 1; round <= 3; round++) {
        char want[32], param[16];
        snprintf(param, sizeof(param), "%d", round);
        snprintf(want, sizeof(want), "kept %d", round);
        char *v = exec_prepared(a, "kept", param); /* prepared on the one server */
        cr_expect_str_eq(v, want);
        free(v);
        exec_unnamed(b, "DEALLOCATE ALL"); /* ... and gone from it */
        if (between)
            exec_unnamed(b, between);
        v = exec_prepared(a, "kept", param);
        cr_expect_str_eq(v, want, "round %d: a's statement was not prepared again", round);
        free(v);
    }
    PQfinish(a);
    PQfinish(b);
    proxy_stop(&one);
}

/* The same unnamed DEALLOCATE parsed again (drivers parse unnamed before each run, and the
 * proxy skips reading a text it read lately) must have its effect each time, not only the
 * first. */
Test(prepared, an_unnamed_deallocate_parsed_again_retires_its_server_again)
{
    expect_each_unnamed_deallocate_retires_the_server(NULL);
}

/* ... also with another unnamed statement between (drivers cycle through a few). */
Test(prepared, an_unnamed_deallocate_among_other_statements_retires_its_server_each_time)
{
    expect_each_unnamed_deallocate_retires_the_server("DO $$BEGIN END$$");
}

/* Red team round 5: after an error PostgreSQL skips every message up to Sync, a client's
 * Parse "" too, so the unnamed statement left on the server by its previous client stayed
 * there for this one's next Bind ""; and a simple Query skipped that way was still awaited,
 * so the client held its server forever. */
Test(prepared, messages_skipped_after_an_error_leak_nothing_and_release_the_server)
{
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one), *b = alice_at(&one);
    prepare(b, "", "SELECT 'statement of b'", 0); /* left on the one server */
    cr_assert_eq(PQenterPipelineMode(a), 1);
    cr_assert(PQsendQueryPrepared(a, "nope", 0, NULL, NULL, NULL, 0));   /* an error ... */
    cr_assert(PQsendPrepare(a, "", "SELECT 'statement of a'", 0, NULL)); /* ... skips this */
    cr_assert(PQpipelineSync(a));
    cr_assert(PQsendQueryPrepared(a, "", 0, NULL, NULL, NULL, 0));
    cr_assert(PQpipelineSync(a));
    int results = 0;
    for (int syncs = 0; syncs < 2;) {
        PGresult *r = PQgetResult(a);
        if (!r)
            continue;
        ExecStatusType st = PQresultStatus(r);
        syncs += st == PGRES_PIPELINE_SYNC;
        if (st == PGRES_TUPLES_OK && PQntuples(r) > 0)
            cr_expect_str_neq(PQgetvalue(r, 0, 0), "statement of b", "a ran b's statement");
        results++;
        PQclear(r);
    }
    cr_expect_gt(results, 2);
    PQexitPipelineMode(a);
    /* a simple Query skipped after an error: the server must still go back to the pool */
    int fd = raw_session(one.port, "carol", "app");
    struct buf m;
    buf_init(&m);
    raw_put_bind(&m, "", "nope");
    proto_query(&m, "SELECT 1");
    raw_put_empty(&m, 'S');
    cr_assert_eq(write(fd, m.data, m.len), (ssize_t)m.len);
    buf_free(&m);
    uint8_t body[512];
    size_t len;
    int t;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) != 'Z')
        cr_assert_neq(t, -1, "no ReadyForQuery after the error");
    PQfinish(a);
    double t0 = now_s();
    char *v = query_value(b, "SELECT 'b served'"); /* the one server must be free again */
    cr_expect_str_eq(v, "b served");
    cr_expect_lt(now_s() - t0, 5.0, "b waited for a server the skipped Query held");
    free(v);
    close(fd);
    PQfinish(b);
    proxy_stop(&one);
}

/* A message that arrives in pieces between transactions: the server is taken once it is whole
 * (taking one for the first bytes gave it back at once and took it again, recursively, until
 * the stack overflowed). */
Test(prepared, a_query_arriving_in_pieces_between_transactions)
{
    int fd = raw_session(px.port, "carol", "app");
    unsigned char body[4096];
    size_t len;
    int t;
    raw_query(fd, "SELECT 1");
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) != 'Z')
        cr_assert(t >= 0 && t != 'E');
    struct buf b;
    buf_init(&b);
    proto_query(&b, "SELECT 2");
    cr_assert_eq(write(fd, b.data, 3), 3);
    usleep(300000);
    cr_assert_eq(write(fd, b.data + 3, b.len - 3), (ssize_t)(b.len - 3));
    buf_free(&b);
    bool got_row = false;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) != 'Z') {
        cr_assert(t >= 0 && t != 'E', "the split query failed (type %d)", t);
        got_row |= t == 'D';
    }
    cr_expect(got_row);
    close(fd);
    expect_served();
}

/* One client's named statements hold at most 16 MiB of text together (limits.max_message_size
 * when larger): a client cannot make lakeproxy keep statement after large statement until it
 * runs out of memory. Past the budget, PQprepare fails with 54000 and an error that says what
 * to do, as PostgreSQL refuses a statement: the session goes on, and once the client
 * deallocates one, it may prepare another. Other clients are served. */
Test(prepared, a_clients_statements_have_a_memory_budget)
{
    enum { TEXT = 5 << 20 }; /* three fit, the fourth does not */
    char *sql = malloc(TEXT + 1);
    cr_assert_not_null(sql);
    memset(sql, ' ', TEXT);
    memcpy(sql, "SELECT 1 /*", 11);
    memcpy(sql + TEXT - 2, "*/", 2);
    sql[TEXT] = '\0';
    PGconn *c = alice();
    char name[16];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "big%d", i);
        prepare(c, name, sql, 0);
    }
    PGresult *r = PQprepare(c, "big3", sql, 0, NULL);
    cr_expect_eq(PQresultStatus(r), PGRES_FATAL_ERROR, "a fourth 5 MiB statement was kept");
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect_str_eq(state ? state : "", "54000", "program limit exceeded");
    cr_expect(strstr(PQerrorMessage(c), "too many prepared statements"), "%s", PQerrorMessage(c));
    cr_expect(strstr(PQerrorMessage(c), "DEALLOCATE"), "%s", PQerrorMessage(c));
    PQclear(r);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "the session goes on");
    char *v = query_value(c, "SELECT 'still here'");
    cr_expect_str_eq(v, "still here");
    free(v);
    r = PQexec(c, "DEALLOCATE big0");
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    prepare(c, "big3", sql, 0); /* room again */
    r = PQexecPrepared(c, "big3", 0, NULL, NULL, NULL, 0);
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    /* in one pipeline: three ParseCompletes, the fourth Parse's 54000, then ReadyForQuery */
    int fd = raw_session(px.port, "carol", "app");
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "big%d", i);
        raw_put_parse(&b, name, sql);
    }
    raw_put_empty(&b, 'S');
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    unsigned char body[4096];
    size_t len;
    int t, parsed = 0;
    char got[6] = "";
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) > 0 && t != 'Z') {
        parsed += t == '1';
        if (t == 'E')
            snprintf(got, sizeof(got), "%s", raw_error_sqlstate(body, len));
    }
    cr_expect_eq(t, 'Z', "the session goes on after the refusal");
    cr_expect_eq(parsed, 3);
    cr_expect_str_eq(got, "54000", "the fourth statement's refusal");
    close(fd);
    free(sql);
    expect_served();
}

/* A client that finds the server holding its unnamed statement idle gets that server and
 * binds its statement there as it is; another client's turn in between leaves it nothing of
 * the other's, and its own is prepared again. (One server: every client shares it.) */
Test(prepared, a_client_back_on_its_server_binds_its_own_unnamed_statement)
{
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one), *b = alice_at(&one);
    prepare(a, "", "SELECT 'a ' || $1::text", 1);
    for (int i = 0; i < 3; i++) { /* back on its server, nobody in between */
        char want[32], param[16];
        snprintf(param, sizeof(param), "%d", i);
        snprintf(want, sizeof(want), "a %d", i);
        char *v = exec_prepared(a, "", param);
        cr_expect_str_eq(v, want);
        free(v);
    }
    prepare(b, "", "SELECT 'b ' || $1::text", 1);
    char *v = exec_prepared(a, "", "x");
    cr_expect_str_eq(v, "a x", "a bound b's statement");
    free(v);
    v = exec_prepared(b, "", "y");
    cr_expect_str_eq(v, "b y", "b bound a's statement");
    free(v);
    v = exec_prepared(b, "", "z");
    cr_expect_str_eq(v, "b z");
    free(v);
    PQfinish(a);
    PQfinish(b);
    proxy_stop(&one);
}

/* The server holding a client's unnamed statement dies while idle, and the client's next
 * query is read in the same event-loop turn as the server's end (the proxy stopped meanwhile,
 * so that both wait for it together): the client must get another server, with its statement
 * prepared there again. A closed server freed later in that turn was still taken for the
 * client's home, and the proxy crashed on it. */
Test(prepared, a_client_whose_idle_home_server_just_died_gets_another)
{
    PGconn *a = alice(), *b = alice();
    PGresult *r = PQexec(b, "BEGIN"); /* b holds one server, so a's gets opened beside it */
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(b));
    PQclear(r);
    prepare(a, "", "SELECT pg_backend_pid()::text", 0);
    char *home = exec_prepared(a, "", NULL);
    r = PQexec(b, "COMMIT"); /* both servers idle now */
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(b));
    PQclear(r);
    PGconn *admin = pg_admin("lp_test");
    cr_assert_eq(kill(px.pid, SIGSTOP), 0);
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%s)", home);
    r = PQexec(admin, sql);
    bool sent = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    usleep(300000); /* the backend's FATAL and end reach the proxy's socket first */
    bool queued = PQsendQueryPrepared(a, "", 0, NULL, NULL, NULL, 0) == 1;
    usleep(100000);
    kill(px.pid, SIGCONT);
    cr_assert(sent && queued, "%s", PQerrorMessage(a));
    r = PQgetResult(a);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(a));
    cr_expect_str_neq(PQgetvalue(r, 0, 0), home, "served by the server that died");
    PQclear(r);
    while ((r = PQgetResult(a)) != NULL)
        PQclear(r);
    expect_served();
    free(home);
    PQfinish(admin);
    PQfinish(a);
    PQfinish(b);
}

/* A lone DEALLOCATE between transactions is answered by lakeproxy without a server, but it is
 * still a simple Query, which drops the client's unnamed statement: a Bind of "" afterwards
 * fails as PostgreSQL's would, rather than running the statement the client had before. */
Test(prepared, a_lone_deallocate_drops_the_unnamed_statement_as_postgresql_does)
{
    PGconn *a = alice();
    prepare(a, "", "SELECT 'still there'", 0);
    char *v = exec_prepared(a, "", NULL);
    cr_expect_str_eq(v, "still there");
    free(v);
    PGresult *r = PQexec(a, "DEALLOCATE ALL");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(a));
    PQclear(r);
    r = PQexecPrepared(a, "", 0, NULL, NULL, NULL, 0);
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect_str_eq(st ? st : "", "26000", "Bind \"\" after DEALLOCATE ALL: %s",
                     PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    expect_served();
    PQfinish(a);
}

/* Reads results up to n pipeline syncs; returns how many errors came, counting messages
 * skipped after one. */
static int drain_pipeline(PGconn *c, int syncs_wanted)
{
    int errors = 0;
    for (int syncs = 0; syncs < syncs_wanted;) {
        PGresult *r = PQgetResult(c);
        if (!r)
            continue;
        ExecStatusType st = PQresultStatus(r);
        syncs += st == PGRES_PIPELINE_SYNC;
        errors += st == PGRES_FATAL_ERROR || st == PGRES_PIPELINE_ABORTED;
        PQclear(r);
    }
    return errors;
}

/* A named Parse that PostgreSQL skipped after an earlier error never happened: binding its
 * name runs the statement prepared before, as on PostgreSQL, never the skipped text. */
Test(prepared, a_named_parse_skipped_after_an_error_does_not_replace_the_statement)
{
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one);
    prepare(a, "s", "SELECT 'first' || ' ' || $1::text", 1);
    expect_run(a, "s", "1", "first");
    cr_assert_eq(PQenterPipelineMode(a), 1);
    cr_assert(PQsendQueryParams(a, "SELECT 1/0", 0, NULL, NULL, NULL, NULL, 0)); /* an error ... */
    cr_assert(PQsendPrepare(a, "s", "SELECT 'second' || ' ' || $1::text", 1, NULL)); /* skipped */
    cr_assert(PQpipelineSync(a));
    cr_expect_eq(drain_pipeline(a, 1), 2, "the error and the skipped Parse");
    cr_assert_eq(PQexitPipelineMode(a), 1);
    expect_run(a, "s", "2", "first");
    PQfinish(a);
    proxy_stop(&one);
}

/* Runs sql on c and returns its SQLSTATE ("" when it worked). */
static const char *sqlstate_of(PGconn *c, const char *sql, char out[6])
{
    PGresult *r = PQexec(c, sql);
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    snprintf(out, 6, "%s", st ? st : "");
    PQclear(r);
    return out;
}

/* PQprepare of name must fail with 42P05 and a message containing shown. */
static void expect_name_taken(PGconn *c, const char *name, const char *shown)
{
    PGresult *r = PQprepare(c, name, "SELECT 'other'", 0, NULL);
    const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect_str_eq(code ? code : "", "42P05", "%s", PQerrorMessage(c));
    cr_expect(strstr(PQerrorMessage(c), shown), "%s", PQerrorMessage(c));
    PQclear(r);
}

/* A Parse of a name the client holds is refused as PostgreSQL refuses it: 42P05 naming the
 * statement, the statement unchanged, and inside a transaction the transaction failed (so a
 * COMMIT after it rolls back, as on PostgreSQL). */
Test(prepared, a_parse_of_a_name_in_use_is_refused_as_by_postgresql)
{
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one);
    char st[6];
    prepare(a, "s", "SELECT 'first' || ' ' || $1::text", 1);
    expect_name_taken(a, "s", "prepared statement \"s\" already exists");
    expect_run(a, "s", "1", "first");
    /* in a transaction: the refusal fails it */
    cr_assert_str_eq(sqlstate_of(a, "BEGIN", st), "");
    cr_assert_str_eq(sqlstate_of(a, "CREATE TEMP TABLE kept_or_not (x int)", st), "");
    expect_name_taken(a, "s", "\"s\"");
    cr_expect_str_eq(sqlstate_of(a, "SELECT 1", st), "25P02", "the transaction failed");
    sqlstate_of(a, "COMMIT", st);
    cr_expect_str_eq(sqlstate_of(a, "SELECT * FROM kept_or_not", st), "42P01", "rolled back");
    expect_run(a, "s", "3", "first");
    /* a name longer than the message's room (36 bytes) is cut, on a character's first byte:
     * here the 36th and 37th bytes are one character */
    const char *long_name = "statement_with_a_long_name_35_bytes\xc3\xa9_and_more";
    prepare(a, long_name, "SELECT 1", 0);
    expect_name_taken(a, long_name, "\"statement_with_a_long_name_35_bytes...\"");
    /* DEALLOCATE frees the name, as on PostgreSQL */
    cr_expect_str_eq(sqlstate_of(a, "DEALLOCATE s", st), "");
    prepare(a, "s", "SELECT 'fourth' || ' ' || $1::text", 1);
    expect_run(a, "s", "4", "fourth");
    PQfinish(a);
    proxy_stop(&one);
}

/* Sends m (syncs Syncs' worth of messages, in one write) on raw session fd, reads every
 * answer and expects a row containing row (NULL: no row) and exactly one error, of SQLSTATE
 * error (NULL: none). */
static void expect_answers(int fd, struct buf *m, int syncs, const char *row, const char *error)
{
    cr_assert(raw_send(fd, m));
    buf_free(m);
    uint8_t body[512];
    size_t len;
    int t, readies = 0, errors = 0;
    bool ran = false;
    while (readies < syncs && (t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) != -1) {
        readies += t == 'Z';
        if (t == 'E') {
            errors++;
            cr_expect_str_eq(raw_error_sqlstate(body, len), error ? error : "(none)");
        }
        ran = ran || (t == 'D' && row && memmem(body, len, row, strlen(row)) != NULL);
    }
    cr_expect_eq(readies, syncs, "no answer to the pipeline");
    cr_expect_eq(errors, error ? 1 : 0);
    cr_expect(ran || !row, "no row with \"%s\"", row);
}

/* expect_answers on a new session of carol's. */
static void expect_syncs(int port, struct buf *m, int syncs, const char *row, const char *error)
{
    int fd = raw_session(port, "carol", "app");
    expect_answers(fd, m, syncs, row, error);
    close(fd);
}

/* Pipelined behind a Parse of the same name that fails, a second Parse of it works, as on
 * PostgreSQL: the first made nothing. (One write, so the second arrives while the first is
 * still owed its answer: lakeproxy cannot know yet whether the name is taken.) */
Test(prepared, a_parse_behind_a_failing_parse_of_the_same_name_works)
{
    struct proxy one;
    start_one_server(&one);
    struct buf m;
    buf_init(&m);
    raw_put_parse(&m, "s", "SELEC 'broken'");
    raw_put_empty(&m, 'S');
    raw_put_parse(&m, "s", "SELECT 'works'");
    raw_put_bind(&m, "", "s");
    raw_put_execute(&m, "");
    raw_put_empty(&m, 'S');
    expect_syncs(one.port, &m, 2, "works", "42601");
    proxy_stop(&one);
}

/* A named Parse that failed leaves no statement of that name: the name is free for a Parse
 * that works, as on PostgreSQL. */
Test(prepared, a_named_parse_that_failed_leaves_the_name_free)
{
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one);
    PGresult *r = PQprepare(a, "s", "SELEC 'broken'", 0, NULL);
    cr_expect_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
    PQclear(r);
    r = PQexecPrepared(a, "s", 0, NULL, NULL, NULL, 0);
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect_str_eq(st ? st : "", "26000", "a failed Parse left a statement: %s",
                     PQerrorMessage(a));
    PQclear(r);
    prepare(a, "s", "SELECT 'works ' || $1::text", 1);
    expect_run(a, "s", "1", "works");
    PQfinish(a);
    proxy_stop(&one);
}

/* Appends, for expect_syncs: a Parse of statement s, a Sync, and an error (division by zero)
 * that makes the server skip what follows up to the next Sync. */
static void put_statement_then_error(struct buf *m)
{
    raw_put_parse(m, "s", "SELECT 'kept'");
    raw_put_empty(m, 'S');
    raw_put_pbe(m, "SELECT 1/0");
}

/* Sends a Bind and an Execute of statement s and a Sync on fd, and expects row. */
static void expect_statement_runs(int fd, const char *row)
{
    struct buf m;
    buf_init(&m);
    raw_put_bind(&m, "", "s");
    raw_put_execute(&m, "");
    raw_put_empty(&m, 'S');
    expect_answers(fd, &m, 1, row, NULL);
}

/* The same, expecting PostgreSQL's 26000: s does not exist. */
static void expect_statement_gone(int fd)
{
    struct buf m;
    buf_init(&m);
    raw_put_bind(&m, "", "s");
    raw_put_execute(&m, "");
    raw_put_empty(&m, 'S');
    expect_answers(fd, &m, 1, NULL, "26000");
}

/* A Close skipped after an error never happened: the statement is still there once the client
 * has the error, as on PostgreSQL, also when a Parse of its name was skipped with it. (Messages
 * pipelined behind the error are read before it comes, as if the Close had run: a Bind of the
 * name among them gets 26000.) */
Test(prepared, a_close_skipped_after_an_error_leaves_the_statement)
{
    struct proxy one;
    start_one_server(&one);
    int fd = raw_session(one.port, "carol", "app");
    struct buf m;
    buf_init(&m);
    put_statement_then_error(&m);
    raw_put_close(&m, 'S', "s"); /* skipped */
    raw_put_empty(&m, 'S');
    expect_answers(fd, &m, 2, NULL, "22012");
    expect_statement_runs(fd, "kept");
    close(fd);
    fd = raw_session(one.port, "carol", "app");
    buf_init(&m);
    put_statement_then_error(&m);
    raw_put_close(&m, 'S', "s");                 /* skipped, */
    raw_put_parse(&m, "s", "SELECT 'replaced'"); /* and this with it */
    raw_put_empty(&m, 'S');
    expect_answers(fd, &m, 2, NULL, "22012");
    expect_statement_runs(fd, "kept");
    close(fd);
    proxy_stop(&one);
}

/* A statement a skipped Close would bring back stays gone when something after the Close ran
 * and removed it: a DEALLOCATE of its name, or a second Close still owed its reply. */
Test(prepared, a_skipped_close_brings_back_no_statement_removed_since)
{
    struct proxy one;
    start_one_server(&one);
    int fd = raw_session(one.port, "carol", "app");
    struct buf m;
    buf_init(&m);
    put_statement_then_error(&m);
    raw_put_close(&m, 'S', "s"); /* skipped */
    raw_put_empty(&m, 'S');
    proto_query(&m, "DEALLOCATE s"); /* runs */
    expect_answers(fd, &m, 3, NULL, "22012");
    expect_statement_gone(fd);
    close(fd);
    fd = raw_session(one.port, "carol", "app");
    buf_init(&m);
    put_statement_then_error(&m);
    raw_put_close(&m, 'S', "s"); /* skipped */
    raw_put_empty(&m, 'S');
    raw_put_parse(&m, "", "SELECT pg_sleep(0.5)"); /* still running when the error comes */
    raw_put_bind(&m, "", "");
    raw_put_execute(&m, "");
    raw_put_close(&m, 'S', "s"); /* runs */
    raw_put_empty(&m, 'S');
    cr_assert(raw_send(fd, &m));
    buf_free(&m);
    uint8_t body[512];
    size_t len;
    for (int readies = 0; readies < 2;) { /* the first two segments: the error seen */
        int t = raw_read_msg(fd, body, sizeof(body), &len, 5000);
        cr_assert_neq(t, -1, "no answer");
        readies += t == 'Z';
    }
    buf_init(&m); /* sent while the sleep runs: PostgreSQL runs the second Close first */
    raw_put_bind(&m, "", "s");
    raw_put_execute(&m, "");
    raw_put_empty(&m, 'S');
    expect_answers(fd, &m, 2, NULL, "26000");
    close(fd);
    proxy_stop(&one);
}

/* In one pipeline segment, a second Parse of a name is refused as PostgreSQL refuses it, even
 * before the first one's answer came: if the first failed, PostgreSQL skips the second anyway. */
Test(prepared, a_second_parse_of_a_name_in_one_segment_is_refused)
{
    struct proxy one;
    start_one_server(&one);
    int fd = raw_session(one.port, "carol", "app");
    struct buf m;
    buf_init(&m);
    raw_put_parse(&m, "s", "SELECT 'kept'");
    raw_put_parse(&m, "s", "SELECT 'second'"); /* 42P05 */
    raw_put_bind(&m, "", "s");                 /* skipped */
    raw_put_execute(&m, "");
    raw_put_empty(&m, 'S');
    expect_answers(fd, &m, 1, NULL, "42P05");
    expect_statement_runs(fd, "kept");
    close(fd);
    proxy_stop(&one);
}

/* A DEALLOCATE ALL lakeproxy cannot follow (sent through the extended protocol) may have freed
 * every name: a Parse of a name the client held is not refused then. */
Test(prepared, a_name_freed_by_an_extended_deallocate_can_be_prepared_again)
{
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one);
    prepare(a, "s", "SELECT 'first ' || $1::text", 1);
    PGresult *r = PQexecParams(a, "DEALLOCATE ALL", 0, NULL, NULL, NULL, NULL, 0);
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(a));
    PQclear(r);
    prepare(a, "s", "SELECT 'second ' || $1::text", 1);
    expect_run(a, "s", "1", "second");
    /* again after a DEALLOCATE ALL lakeproxy follows (alone in a simple Query): the same
     * extended one, sent before, still frees the names */
    char st[6];
    cr_assert_str_eq(sqlstate_of(a, "DEALLOCATE ALL", st), "");
    prepare(a, "s", "SELECT 'third ' || $1::text", 1);
    r = PQexecParams(a, "DEALLOCATE ALL", 0, NULL, NULL, NULL, NULL, 0);
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(a));
    PQclear(r);
    prepare(a, "s", "SELECT 'fourth ' || $1::text", 1);
    expect_run(a, "s", "1", "fourth");
    PQfinish(a);
    proxy_stop(&one);
}

/* A Close that ran (no error before it) takes the statement at once, even with replies still
 * owed: a Bind of it right behind gets 26000, and the name is free for a new Parse. */
Test(prepared, a_close_behind_owed_replies_takes_the_statement)
{
    struct proxy one;
    start_one_server(&one);
    struct buf m;
    buf_init(&m);
    raw_put_parse(&m, "s", "SELECT 'old'");
    raw_put_empty(&m, 'S');
    raw_put_parse(&m, "", "SELECT 'first'"); /* a reply owed when the Close arrives */
    raw_put_bind(&m, "", "");
    raw_put_execute(&m, "");
    raw_put_close(&m, 'S', "s");
    raw_put_bind(&m, "", "s"); /* 26000 */
    raw_put_empty(&m, 'S');
    raw_put_parse(&m, "s", "SELECT 'new'");
    raw_put_bind(&m, "", "s");
    raw_put_execute(&m, "");
    raw_put_empty(&m, 'S');
    expect_syncs(one.port, &m, 3, "new", "26000");
    proxy_stop(&one);
}

/* A DEALLOCATE prepared by name runs at its Execute, not at its Bind: a statement parsed
 * between the two is gone from the server after that Execute, and a Bind of it must prepare it
 * again rather than name a statement the server no longer has (26000). */
Test(prepared, a_statement_parsed_between_a_deallocates_bind_and_execute_is_prepared_again)
{
    struct proxy one;
    start_one_server(&one);
    struct buf m;
    buf_init(&m);
    raw_put_parse(&m, "d", "DEALLOCATE ALL");
    raw_put_empty(&m, 'S');
    raw_put_bind(&m, "p", "d");
    raw_put_parse(&m, "x", "SELECT 'x ran'");
    raw_put_execute(&m, "p"); /* drops every statement on the server, x's too */
    raw_put_bind(&m, "", "x");
    raw_put_execute(&m, "");
    raw_put_empty(&m, 'S');
    expect_syncs(one.port, &m, 2, "x ran", NULL);
    proxy_stop(&one);
}

/* Runs steps (assertions of PostgreSQL's answers) against PostgreSQL directly, then through a
 * lakeproxy of one server in transaction mode. */
static void expect_on_postgresql_and_through_lakeproxy(void (*steps)(PGconn *))
{
    PGconn *direct = pg_admin("lp_test");
    steps(direct);
    PQfinish(direct);
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one);
    steps(a);
    PQfinish(a);
    proxy_stop(&one);
}

/* Prepares name as a statement that answers "<tag> <its parameter>" (for expect_run). */
static void prepare_tagged(PGconn *c, const char *name, const char *tag)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT '%s' || ' ' || $1::text", tag);
    prepare(c, name, sql, 1);
}

/* On c, PostgreSQL's reading of statement names: a lone DEALLOCATE folds a plain name to lower
 * case and keeps a quoted one as written, and two names alike in their first 63 bytes are one
 * statement (a plain name in a DEALLOCATE is cut to 63 bytes too). */
static void expect_names_read_as_postgresql_reads_them(PGconn *c)
{
    char st[6];
    prepare_tagged(c, "S_Upper", "upper");
    prepare_tagged(c, "s_upper", "lower");
    cr_expect_str_eq(sqlstate_of(c, "DEALLOCATE S_Upper", st), "", "%s", PQerrorMessage(c));
    expect_run(c, "S_Upper", "1", "upper");
    prepare_tagged(c, "s_upper", "lower again"); /* the folded name was the one freed */
    expect_run(c, "s_upper", "2", "lower again");
    cr_expect_str_eq(sqlstate_of(c, "DEALLOCATE \"S_Upper\"", st), "", "%s", PQerrorMessage(c));
    prepare_tagged(c, "S_Upper", "upper again");
    expect_run(c, "S_Upper", "3", "upper again");
    char one[80], two[80], sql[128];
    memset(one, 'n', 63);
    memset(two, 'n', 63);
    snprintf(one + 63, sizeof(one) - 63, "_one");
    snprintf(two + 63, sizeof(two) - 63, "_two");
    prepare_tagged(c, one, "long");
    expect_run(c, two, "4", "long");
    expect_name_taken(c, two, "already exists");
    snprintf(sql, sizeof(sql), "DEALLOCATE %s", two);
    cr_expect_str_eq(sqlstate_of(c, sql, st), "", "%s", PQerrorMessage(c));
    prepare_tagged(c, two, "long again");
    expect_run(c, one, "5", "long again");
}

/* lakeproxy reads statement names as PostgreSQL does (the same steps run against PostgreSQL
 * directly first: the expectations are its answers): before, a DEALLOCATE S_1 freed "S_1"
 * where PostgreSQL frees "s_1" (so a Parse of "s_1" was then refused with 42P05), and names
 * alike in their first 63 bytes were two statements. */
Test(prepared, statement_names_are_read_as_postgresql_reads_them)
{
    expect_on_postgresql_and_through_lakeproxy(expect_names_read_as_postgresql_reads_them);
}

/* Runs sql through the extended protocol (PQexecParams: Parse, Bind, Describe, Execute, Sync,
 * as psycopg 3 runs the DEALLOCATE that evicts a statement from its cache) and returns its
 * SQLSTATE ("" when it worked, its command tag then being tag, when given). */
static const char *extended_sqlstate(PGconn *c, const char *sql, const char *tag, char out[6])
{
    PGresult *r = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    snprintf(out, 6, "%s", st ? st : "");
    if (!st && tag)
        cr_expect_str_eq(PQcmdStatus(r), tag, "%s", sql);
    PQclear(r);
    return out;
}

/* Runs prepared statement name with one parameter and returns its SQLSTATE ("": it ran). */
static const char *prepared_sqlstate(PGconn *c, const char *name, char out[6])
{
    const char *params[1] = {"0"};
    PGresult *r = PQexecPrepared(c, name, 1, params, NULL, NULL, 0);
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    snprintf(out, 6, "%s", st ? st : "");
    PQclear(r);
    return out;
}

/* On c, PostgreSQL's answers to DEALLOCATE through the extended protocol: the statement goes
 * (a second DEALLOCATE of it fails with 26000, its name is free again), the others stay, and
 * in a transaction too, rolled back or not (deallocation is not transactional). */
static void expect_extended_deallocate_as_postgresql(PGconn *c)
{
    char st[6];
    prepare_tagged(c, "s1", "one");
    prepare_tagged(c, "s2", "two");
    cr_expect_str_eq(extended_sqlstate(c, "DEALLOCATE s1", "DEALLOCATE", st), "");
    cr_expect_str_eq(prepared_sqlstate(c, "s1", st), "26000", "s1 was deallocated");
    expect_run(c, "s2", "1", "two");
    cr_expect_str_eq(extended_sqlstate(c, "DEALLOCATE s1", NULL, st), "26000", "s1 is gone");
    prepare_tagged(c, "s1", "one again");
    expect_run(c, "s1", "2", "one again");
    cr_expect_str_eq(sqlstate_of(c, "BEGIN", st), "");
    cr_expect_str_eq(extended_sqlstate(c, "deallocate prepare S1", "DEALLOCATE", st), "");
    expect_run(c, "s2", "3", "two");
    cr_expect_str_eq(sqlstate_of(c, "ROLLBACK", st), "");
    cr_expect_str_eq(prepared_sqlstate(c, "s1", st), "26000", "not brought back by ROLLBACK");
    expect_run(c, "s2", "4", "two");
    cr_expect_str_eq(extended_sqlstate(c, "DEALLOCATE never_prepared", NULL, st), "26000");
    cr_expect_str_eq(sqlstate_of(c, "DEALLOCATE never_prepared", st), "26000", "simple Query");
    cr_expect_str_eq(sqlstate_of(c, "BEGIN", st), "");
    cr_expect_str_eq(sqlstate_of(c, "DEALLOCATE never_prepared", st), "26000");
    cr_expect_str_eq(sqlstate_of(c, "SELECT 1", st), "25P02", "the transaction failed");
    cr_expect_str_eq(sqlstate_of(c, "ROLLBACK", st), "");
    expect_run(c, "s2", "5", "two");
}

/* A DEALLOCATE of a client's statement through the extended protocol (psycopg 3 evicting a
 * statement past its prepared_max) is answered as PostgreSQL answers it (the same steps run
 * against PostgreSQL directly first): before, the server was sent it, and failed it with
 * 26000, the name being the client's and not the server's. */
Test(prepared, an_extended_deallocate_deallocates_as_on_postgresql)
{
    expect_on_postgresql_and_through_lakeproxy(expect_extended_deallocate_as_postgresql);
}

/* An extended-protocol DEALLOCATE skipped after an error never ran: the statement stays (as a
 * skipped Close leaves it); one that runs removes it. */
Test(prepared, an_extended_deallocate_skipped_after_an_error_leaves_the_statement)
{
    struct proxy one;
    start_one_server(&one);
    int fd = raw_session(one.port, "carol", "app");
    struct buf m;
    buf_init(&m);
    put_statement_then_error(&m);
    raw_put_pbe(&m, "DEALLOCATE s"); /* skipped */
    raw_put_empty(&m, 'S');
    expect_answers(fd, &m, 2, NULL, "22012");
    expect_statement_runs(fd, "kept");
    buf_init(&m);
    raw_put_pbe(&m, "DEALLOCATE s"); /* runs */
    raw_put_empty(&m, 'S');
    expect_answers(fd, &m, 1, NULL, NULL);
    expect_statement_gone(fd);
    close(fd);
    proxy_stop(&one);
}

/* An Execute of a DEALLOCATE portal that no longer exists (ended by a Sync, or closed) is the
 * server's to fail, as PostgreSQL fails it (34000): lakeproxy made up its answer and dropped
 * the statement (found by a review). */
Test(prepared, an_execute_of_a_dead_deallocate_portal_fails_and_keeps_the_statement)
{
    struct proxy one;
    start_one_server(&one);
    int fd = raw_session(one.port, "carol", "app");
    struct buf m;
    buf_init(&m);
    raw_put_parse(&m, "s", "SELECT 'kept'");
    raw_put_empty(&m, 'S');
    raw_put_parse(&m, "", "DEALLOCATE s");
    raw_put_bind(&m, "", "");
    raw_put_empty(&m, 'S'); /* the portal ends here */
    raw_put_execute(&m, "");
    raw_put_empty(&m, 'S');
    expect_answers(fd, &m, 3, NULL, "34000");
    expect_statement_runs(fd, "kept");
    buf_init(&m);
    raw_put_parse(&m, "", "DEALLOCATE s");
    raw_put_bind(&m, "", "");
    raw_put_close(&m, 'P', ""); /* closed */
    raw_put_execute(&m, "");
    raw_put_empty(&m, 'S');
    expect_answers(fd, &m, 1, NULL, "34000");
    expect_statement_runs(fd, "kept");
    close(fd);
    proxy_stop(&one);
}

/* On c, PostgreSQL's answers after DISCARD ALL: every statement is gone (a Bind of one fails
 * with 26000) and its name is free (a Parse of it works, not 42P05). */
static void expect_discard_all_as_postgresql(PGconn *c)
{
    char st[6];
    prepare_tagged(c, "s1", "one");
    cr_expect_str_eq(sqlstate_of(c, "discard all;", st), "");
    cr_expect_str_eq(prepared_sqlstate(c, "s1", st), "26000", "s1 was discarded");
    prepare_tagged(c, "s1", "one again");
    expect_run(c, "s1", "1", "one again");
}

/* A lone DISCARD ALL drops the client's statements as it drops PostgreSQL's (same steps against
 * PostgreSQL first): before, lakeproxy kept them (marked unsure), so a Bind of one ran. */
Test(prepared, discard_all_drops_the_clients_statements)
{
    expect_on_postgresql_and_through_lakeproxy(expect_discard_all_as_postgresql);
}

/* Orders a review found lakeproxy reading ahead of PostgreSQL: a DISCARD ALL pipelined behind a
 * BEGIN fails (25001) and leaves the statements, and a DEALLOCATE behind a Close of its name
 * fails (26000: the Close ran first). */
Test(prepared, a_discard_all_or_deallocate_that_fails_in_a_pipeline_changes_nothing)
{
    struct proxy one;
    start_one_server(&one);
    int fd = raw_session(one.port, "carol", "app");
    struct buf m;
    buf_init(&m);
    raw_put_parse(&m, "s", "SELECT 'kept'");
    raw_put_empty(&m, 'S');
    proto_query(&m, "BEGIN");
    proto_query(&m, "DISCARD ALL");
    proto_query(&m, "ROLLBACK");
    expect_answers(fd, &m, 4, NULL, "25001");
    expect_statement_runs(fd, "kept");
    buf_init(&m);
    raw_put_close(&m, 'S', "s");
    raw_put_pbe(&m, "DEALLOCATE s");
    raw_put_empty(&m, 'S');
    expect_answers(fd, &m, 1, NULL, "26000");
    close(fd);
    proxy_stop(&one);
}

/* Runs prepared statement name (no parameters): "" and its row as "a|b|..." in row, or its
 * SQLSTATE. */
static const char *run_shape(PGconn *c, const char *name, char row[64], char st[6])
{
    PGresult *r = PQexecPrepared(c, name, 0, NULL, NULL, NULL, 0);
    const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    snprintf(st, 6, "%s", code ? code : "");
    row[0] = '\0';
    for (int i = 0; !code && PQntuples(r) == 1 && i < PQnfields(r); i++)
        snprintf(row + strlen(row), 64 - strlen(row), "%s%s", i ? "|" : "", PQgetvalue(r, 0, i));
    PQclear(r);
    return st;
}

/* On c, PostgreSQL's answers when a table a prepared statement reads changes shape: the
 * statement fails with 0A000 ("cached plan must not change result type") until the client
 * prepares it again, and the statement prepared again, under a new name or after a
 * DEALLOCATE, gives the new shape. */
static void expect_a_changed_table_as_postgresql(PGconn *c)
{
    PGconn *admin = pg_admin("lp_test");
    PQclear(PQexec(admin, "DROP TABLE IF EXISTS shape_change"));
    char *v =
        query_value(admin, "CREATE TABLE shape_change (a int); INSERT INTO shape_change "
                           "VALUES (1); GRANT SELECT ON shape_change TO PUBLIC; SELECT 'made'");
    cr_assert_str_eq(v, "made");
    free(v);
    char row[64], st[6];
    prepare(c, "shape", "SELECT * FROM shape_change", 0);
    for (int i = 0; i < 2; i++) {
        cr_expect_str_eq(run_shape(c, "shape", row, st), "");
        cr_expect_str_eq(row, "1");
    }
    PQclear(PQexec(admin, "ALTER TABLE shape_change ADD COLUMN b int DEFAULT 2"));
    for (int i = 0; i < 2; i++)
        cr_expect_str_eq(run_shape(c, "shape", row, st), "0A000", "the statement is stale");
    prepare(c, "shape_again", "SELECT * FROM shape_change", 0);
    cr_expect_str_eq(run_shape(c, "shape_again", row, st), "", "prepared again under a new name");
    cr_expect_str_eq(row, "1|2");
    cr_expect_str_eq(sqlstate_of(c, "DEALLOCATE shape", st), "");
    prepare(c, "shape", "SELECT * FROM shape_change", 0);
    for (int i = 0; i < 2; i++) {
        cr_expect_str_eq(run_shape(c, "shape", row, st), "", "prepared again after DEALLOCATE");
        cr_expect_str_eq(row, "1|2");
    }
    PQclear(PQexec(admin, "DROP TABLE shape_change"));
    PQfinish(admin);
}

/* Statements the proxy shares between clients under one name went stale on the server with the
 * table's change, and a statement prepared again took the shared name and failed again, for
 * good (pgjdbc, Postgres.js and psycopg 3 prepare again after the 0A000). */
Test(prepared, a_statement_prepared_again_after_its_table_changed_gives_the_new_shape)
{
    expect_on_postgresql_and_through_lakeproxy(expect_a_changed_table_as_postgresql);
}

/* Connects to proxy p as alice with search_path path (a startup option). */
static PGconn *alice_on_path(const struct proxy *p, const char *path)
{
    char opts[128];
    snprintf(opts, sizeof(opts), "options='-c search_path=%s'", path);
    PGconn *c = proxy_connect(p, "alice", "alice-secret", "app", opts);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* Schema per tenant: two clients whose search_path leads the same text to tables of different
 * shapes, over one server. Each runs its own, as on PostgreSQL; the statement the proxy shared
 * between them under one name failed the second client with 0A000 (PostgreSQL analyses it
 * again under that client's search_path and refuses the new result type). */
Test(prepared, clients_of_different_search_paths_each_run_their_own_statement)
{
    PGconn *admin = pg_admin("lp_test");
    char *v = query_value(admin, "DROP SCHEMA IF EXISTS path_a CASCADE; DROP SCHEMA IF EXISTS "
                                 "path_b CASCADE; CREATE SCHEMA path_a; CREATE SCHEMA path_b; "
                                 "CREATE TABLE path_a.t (a int); CREATE TABLE path_b.t (a int, b "
                                 "text); INSERT INTO path_a.t VALUES (1); INSERT INTO path_b.t "
                                 "VALUES (2, 'b'); GRANT USAGE ON SCHEMA path_a, path_b TO PUBLIC; "
                                 "GRANT SELECT ON path_a.t, path_b.t TO PUBLIC; SELECT 'made'");
    cr_assert_str_eq(v, "made");
    free(v);
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_on_path(&one, "path_a"), *b = alice_on_path(&one, "path_b");
    PGconn *a2 = alice_on_path(&one, "path_a");
    char row[64], st[6];
    prepare(a, "s", "SELECT * FROM t", 0);
    prepare(b, "s", "SELECT * FROM t", 0);
    prepare(a2, "other", "SELECT * FROM t", 0);
    for (int i = 0; i < 3; i++) {
        cr_expect_str_eq(run_shape(a, "s", row, st), "", "path_a");
        cr_expect_str_eq(row, "1");
        cr_expect_str_eq(run_shape(b, "s", row, st), "", "path_b");
        cr_expect_str_eq(row, "2|b");
        cr_expect_str_eq(run_shape(a2, "other", row, st), "", "path_a again");
        cr_expect_str_eq(row, "1");
    }
    PQfinish(a);
    PQfinish(b);
    PQfinish(a2);
    proxy_stop(&one);
    PQclear(PQexec(admin, "DROP SCHEMA path_a CASCADE; DROP SCHEMA path_b CASCADE"));
    PQfinish(admin);
}

/* Runs prepared statement name (no parameters) and returns its one value (malloc'd). */
static char *run_value(PGconn *c, const char *name)
{
    char row[64], st[6];
    cr_expect_str_eq(run_shape(c, name, row, st), "", "%s: %s", name, PQerrorMessage(c));
    return strdup(row);
}

/* Expects prepared statement name (no parameters) to give want; why says what it shows. */
static void expect_value(PGconn *c, const char *name, const char *want, const char *why)
{
    char *v = run_value(c, name);
    cr_expect_str_eq(v, want, "%s", why);
    free(v);
}

/* PostgreSQL reads a statement's constants when it parses it, by the session's DateStyle,
 * TimeZone and standard_conforming_strings. Clients of other settings parsing the same text each
 * get their own reading, over one server; the statement the proxy shared gave the second
 * client the first one's date, instant and string. A SET before a new Parse counts as well.
 * On a database of its own: PostgreSQL analyses every cached statement again, under the
 * session's settings of that moment, after a schema is created or dropped in its database (as the
 * tests beside it do), which would give the statement parsed before the SET the new reading. */
Test(prepared, clients_of_other_settings_get_constants_read_by_their_own)
{
    static const char sql[] =
        "SELECT '01/02/2024'::date || ' ' || extract(epoch FROM '2024-01-01 10:00'::timestamptz)"
        "::bigint || ' ' || 'a\\q'";
    pg_fresh_database("lp_constants");
    struct proxy one;
    start_one_server_with(&one, "consts", "lp_constants");
    PGconn *us = proxy_connect(&one, "alice", "alice-secret", "consts",
                               "options='-c DateStyle=ISO,MDY -c TimeZone=UTC'");
    PGconn *eu = proxy_connect(&one, "alice", "alice-secret", "consts",
                               "options='-c DateStyle=ISO,DMY -c TimeZone=Asia/Tokyo -c "
                               "standard_conforming_strings=off'");
    cr_assert(PQstatus(us) == CONNECTION_OK && PQstatus(eu) == CONNECTION_OK, "%s%s",
              PQerrorMessage(us), PQerrorMessage(eu));
    prepare(us, "s", sql, 0);
    prepare(eu, "s", sql, 0);
    for (int i = 0; i < 2; i++) {
        expect_value(us, "s", "2024-01-02 1704103200 a\\q", "MDY, UTC, backslash kept");
        expect_value(eu, "s", "2024-02-01 1704070800 aq", "DMY, Tokyo, backslash an escape");
    }
    char *v = query_value(us, "SET DateStyle = 'ISO, DMY'; SELECT 'set'");
    free(v);
    prepare(us, "after_set", sql, 0);
    expect_value(us, "after_set", "2024-02-01 1704103200 a\\q",
                 "parsed after the client's SET DateStyle");
    expect_value(us, "s", "2024-01-02 1704103200 a\\q", "parsed before it: as it was");
    PQfinish(us);
    PQfinish(eu);
    proxy_stop(&one);
}

/* A LISTEN stays on the server that ran it. In transaction pooling that server went on to serve
 * other clients, and the notifications for the channel reached whichever client had it: here
 * b, which never listened (PostgreSQL sends it none). The server is now closed after the
 * transaction that ran LISTEN. */
Test(prepared, a_notification_for_one_clients_listen_reaches_no_other_client)
{
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one), *b = alice_at(&one), *notifier = pg_admin("lp_test");
    char *v = query_value(a, "LISTEN lp_channel_of_a; SELECT 'listening'");
    cr_assert_str_eq(v, "listening");
    free(v);
    v = query_value(b, "BEGIN; SELECT 'in'");
    free(v);
    PQclear(PQexec(notifier, "NOTIFY lp_channel_of_a, 'meant for a'"));
    usleep(200 * 1000);
    v = query_value(b, "SELECT 'still in'");
    free(v);
    PQclear(PQexec(b, "COMMIT"));
    v = query_value(b, "SELECT 'after'");
    free(v);
    PQconsumeInput(b);
    PGnotify *n = PQnotifies(b);
    cr_expect_null(n, "b never ran LISTEN, yet received channel %s, payload '%s'",
                   n ? n->relname : "", n ? n->extra : "");
    if (n)
        PQfreemem(n);
    PQfinish(a);
    PQfinish(b);
    PQfinish(notifier);
    proxy_stop(&one);
}

/* Red team 7: a statement whose client changed DateStyle after preparing it was prepared again
 * on another server under the new DateStyle but under its old name, where a client of the old
 * DateStyle preparing the same text was given it. It now takes a name of the settings it is
 * parsed under there. (The client itself then reads it by its new DateStyle on that server,
 * where PostgreSQL keeps the reading of its Parse: see README.) */
Test(prepared, a_statement_prepared_again_under_changed_settings_is_not_shared_with_others)
{
    static const char date_sql[] = "SELECT '01/02/2024'::date::text";
    PGconn *a = alice(), *hold = alice(), *b = alice();
    prepare(a, "s", date_sql, 0);
    expect_value(a, "s", "2024-01-02", "MDY");
    free(query_value(hold, "BEGIN; SELECT 'holding'")); /* a's server: a moves to the other */
    free(query_value(a, "SET DateStyle TO 'ISO, DMY'; SELECT 'set'"));
    free(run_value(a, "s")); /* prepared again on the other server, under DMY */
    prepare(b, "s", date_sql, 0);
    expect_value(b, "s", "2024-01-02", "b (MDY) was given a's statement parsed under DMY");
    free(query_value(hold, "COMMIT; SELECT 'done'"));
    PQfinish(a);
    PQfinish(b);
    PQfinish(hold);
}

/* Red team 7: a Parse pipelined behind a SET of DateStyle (libpq pipeline mode) was named by
 * the client's DateStyle before the SET, which PostgreSQL had not reported yet, and parsed
 * under the new one: a client of the old DateStyle preparing the same text was given it. */
Test(prepared, a_parse_pipelined_behind_a_set_is_not_shared_with_clients_of_the_old_setting)
{
    static const char date_sql[] = "SELECT '01/02/2024'::date::text";
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one), *b = alice_at(&one);
    cr_assert(PQenterPipelineMode(a));
    cr_assert(PQsendQueryParams(a, "SET DateStyle TO 'ISO, DMY'", 0, NULL, NULL, NULL, NULL, 0));
    cr_assert(PQsendPrepare(a, "s", date_sql, 0, NULL));
    cr_assert(PQsendQueryPrepared(a, "s", 0, NULL, NULL, NULL, 0));
    cr_assert(PQpipelineSync(a));
    const char *want[] = {NULL, NULL, "2024-02-01"};
    for (int i = 0; i < 3; i++) {
        PGresult *r;
        while ((r = PQgetResult(a)) != NULL) {
            cr_expect(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                      "%s", PQresultErrorMessage(r));
            if (want[i] && PQresultStatus(r) == PGRES_TUPLES_OK)
                cr_expect_str_eq(PQgetvalue(r, 0, 0), want[i], "a's statement, parsed under DMY");
            PQclear(r);
        }
    }
    PGresult *r = PQgetResult(a);
    cr_expect_eq(PQresultStatus(r), PGRES_PIPELINE_SYNC);
    PQclear(r);
    cr_assert(PQexitPipelineMode(a), "%s", PQerrorMessage(a));
    prepare(b, "s", date_sql, 0);
    expect_value(b, "s", "2024-01-02", "b (MDY) was given the statement a's SET made DMY");
    PQfinish(a);
    PQfinish(b);
    proxy_stop(&one);
}

/* Red team 7: settings PostgreSQL parses statements by that lakeproxy does not track
 * (transform_null_equals, array_nulls), set with SET LOCAL before a Parse: another client
 * preparing the same text was given the statement parsed under them. A client that names one
 * shares its statements with no other. */
Test(prepared, a_statement_parsed_under_untracked_settings_is_not_shared)
{
    static const char sql[] = "SELECT ((NULL::int = NULL) IS TRUE)::text || ' ' || "
                              "(('{a,NULL}'::text[])[2] IS NULL)::text";
    struct proxy one;
    start_one_server(&one);
    PGconn *a = alice_at(&one), *b = alice_at(&one);
    free(query_value(a, "BEGIN; SET LOCAL transform_null_equals = on; SET LOCAL array_nulls = "
                        "off; SELECT 'set'"));
    prepare(a, "s", sql, 0);
    expect_value(a, "s", "true false", "a's own reading");
    free(query_value(a, "COMMIT; SELECT 'committed'"));
    prepare(b, "s", sql, 0);
    expect_value(b, "s", "false true", "b set nothing, yet got a's reading");
    PQfinish(a);
    PQfinish(b);
    proxy_stop(&one);
}
