/* test_stats.c: per-query statistics against a known workload: SHOW QUERIES counts calls,
 * errors and rows exactly (a portal fetched in three batches is one query), the query log has
 * one JSON line per query with normalised text only and ordered latencies, and a query log
 * nobody reads (a FIFO) never stalls a query. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"

static struct proxy px;
static char log_path[400];

static int http_port;

/* The standard configuration, alice an admin, with stats.log at path and admin.http on. */
static void start_with_log(const char *path)
{
    static char yaml[8192];
    char extra[700];
    snprintf(log_path, sizeof(log_path), "%s", path);
    http_port = free_port();
    snprintf(extra, sizeof(extra),
             "admin:\n  users: [alice]\n  http: 127.0.0.1:%d\nstats:\n  log: %s\n", http_port,
             path);
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 2, 10000, extra);
    proxy_start_yaml(&px, port, yaml);
}

static void start_file_log(void)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/queries-%d.jsonl", env_need("LP_TEST_DIR"), getpid());
    unlink(path);
    start_with_log(path);
}

static void stop_proxy(void)
{
    proxy_stop(&px);
}

static PGconn *alice(const char *db)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", db, NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* Parse, Bind and three Executes of at most 400 rows each, then Sync, on a raw socket: the
 * server suspends the portal twice. Returns the DataRows received. */
static int fetch_in_batches(void)
{
    int fd = raw_session(px.port, "carol", "app");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, 'P');
    buf_put_str(&b, "");
    buf_put_str(&b, "SELECT id FROM items ORDER BY id");
    buf_put_u16(&b, 0);
    buf_msg_finish(&b);
    buf_msg_start(&b, 'B');
    buf_put_str(&b, "");
    buf_put_str(&b, "");
    buf_put_u16(&b, 0);
    buf_put_u16(&b, 0);
    buf_put_u16(&b, 0);
    buf_msg_finish(&b);
    for (int i = 0; i < 3; i++) {
        buf_msg_start(&b, 'E');
        buf_put_str(&b, "");
        buf_put_u32(&b, 400);
        buf_msg_finish(&b);
    }
    buf_msg_start(&b, 'S');
    buf_msg_finish(&b);
    cr_assert_eq(write(fd, b.data, b.len), (ssize_t)b.len);
    buf_free(&b);
    unsigned char msg[8192];
    size_t len;
    int rows = 0, suspended = 0, type;
    while ((type = raw_read_msg(fd, msg, sizeof(msg), &len, 5000)) > 0 && type != 'Z') {
        rows += type == 'D';
        suspended += type == 's';
    }
    cr_expect_eq(suspended, 2);
    close(fd);
    return rows;
}

/* The row of SHOW QUERIES 100 whose query is q: its column col as a number, -1 when absent. */
static long long show_queries_value(PGconn *admin, const char *q, const char *col)
{
    return admin_show_queries_value(admin, 100, q, col);
}

/* A number after "key": in a JSON line, -1 when absent. */
static long long json_num(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *at = strstr(line, pat);
    return at ? atoll(at + strlen(pat)) : -1;
}

TestSuite(stats, .init = start_file_log, .fini = stop_proxy, .timeout = 120);

Test(stats, a_known_workload_is_counted_exactly_and_logged_without_literals)
{
    PGconn *c = alice("app");
    char sql[128];
    for (int i = 1; i <= 10; i++) {
        snprintf(sql, sizeof(sql), "SELECT id, name FROM items WHERE id = %d", 700 + i);
        free(query_value(c, sql));
    }
    const char *three[1] = {"3"};
    for (int i = 0; i < 5; i++) {
        PGresult *r =
            PQexecParams(c, "SELECT id FROM items WHERE id <= $1", 1, NULL, three, NULL, NULL, 0);
        cr_assert_eq(PQntuples(r), 3);
        PQclear(r);
    }
    cr_expect_str_eq(query_sqlstate(c, "SELECT 1/0"), "22012");
    cr_expect_eq(fetch_in_batches(), 1000);
    PQfinish(c);
    usleep(200 * 1000);

    PGconn *admin = alice("lakeproxy");
    const char *q1 = "SELECT id, name FROM items WHERE id = $1";
    const char *q2 = "SELECT id FROM items WHERE id <= $1";
    const char *q3 = "SELECT id FROM items ORDER BY id";
    cr_expect_eq(show_queries_value(admin, q1, "calls"), 10);
    cr_expect_eq(show_queries_value(admin, q1, "rows"), 10);
    cr_expect_eq(show_queries_value(admin, q2, "calls"), 5);
    cr_expect_eq(show_queries_value(admin, q2, "rows"), 15);
    cr_expect_eq(show_queries_value(admin, "SELECT $1/$2", "errors"), 1);
    cr_expect_eq(show_queries_value(admin, q3, "calls"), 1, "one query per portal, not per fetch");
    cr_expect_eq(show_queries_value(admin, q3, "rows"), 1000);
    cr_expect_eq(show_queries_value(admin, q3, "pushdown_pct"), 0);
    PGresult *r = PQexec(admin, "SHOW PUSHDOWN");
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(admin);

    FILE *f = fopen(log_path, "r");
    cr_assert(f, "no query log at %s", log_path);
    char line[8192];
    int n1 = 0, n3 = 0, lines = 0;
    while (fgets(line, sizeof(line), f)) {
        lines++;
        cr_expect_null(strstr(line, "= 70"), "a literal reached the log: %s", line);
        long long wait = json_num(line, "wait_us"), total = json_num(line, "total_us"),
                  server = json_num(line, "server_us");
        cr_expect(wait >= 0 && server >= 0 && wait <= total && server <= total,
                  "latencies out of order: %s", line);
        n1 += strstr(line, "\"query\":\"SELECT id, name FROM items WHERE id = $1\"") != NULL;
        if (strstr(line, "ORDER BY id\"")) {
            n3++;
            cr_expect_eq(json_num(line, "rows"), 1000, "%s", line);
            cr_expect(strstr(line, "\"unfiltered\":true"), "%s", line);
        }
    }
    fclose(f);
    cr_expect_eq(n1, 10, "one line per query");
    cr_expect_eq(n3, 1);
    cr_expect_geq(lines, 17);
}

/* A FIFO nobody reads: the writer blocks on it (opening it, then writing), the ring fills and
 * records are dropped, and queries go on at full speed; the proxy still stops cleanly. */
Test(stats_fifo, a_query_log_nobody_reads_never_stalls_queries, .fini = stop_proxy, .timeout = 120)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/fifo-%d", env_need("LP_TEST_DIR"), getpid());
    unlink(path);
    cr_assert_eq(mkfifo(path, 0600), 0);
    start_with_log(path);
    PGconn *c = alice("app");
    double t0 = now_s();
    for (int i = 0; i < 6000; i++) {
        char sql[96];
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        free(query_value(c, sql));
    }
    double took = now_s() - t0;
    fprintf(stderr, "stats: 6000 queries with a blocked query log in %.2f s\n", took);
    cr_expect_lt(took, 30.0, "queries stalled behind the query log");
    PQfinish(c);
    unlink(path);
}

/* An error too big to hold whole (its message quotes a 100 kB value) streams past the
 * statistics: the client gets it and goes on. */
Test(stats, an_error_bigger_than_64k_reaches_the_client)
{
    PGconn *c = alice("app");
    cr_expect_str_eq(query_sqlstate(c, "SELECT repeat('x', 100000)::int"), "22P02");
    char *v = query_value(c, "SELECT 'still here'");
    cr_expect_str_eq(v, "still here");
    free(v);
    PQfinish(c);
}

/* With standard_conforming_strings off a backslash escapes a quote for the server but not for
 * the parser: such text is counted, never analysed or logged. */
Test(stats, text_read_with_standard_conforming_strings_off_is_never_logged)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app",
                              "options='-c standard_conforming_strings=off'");
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    /* the server sees one string and 42; the parser would see a quoted identifier (kept by
     * normalisation) holding the secret */
    PGresult *r = PQexec(c, "SELECT 'x\\' || length(\"hunter2 secret\") --', 42");
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    usleep(200 * 1000);
    cr_expect_eq(file_count_lines(log_path, "hunter2"), 0, "a literal reached %s", log_path);
}

/* Reads a raw session's messages until its want-th ReadyForQuery; false if it never came. */
static bool raw_read_readies(int fd, int want)
{
    unsigned char msg[8192];
    size_t len;
    int type;
    while (want > 0 && (type = raw_read_msg(fd, msg, sizeof(msg), &len, 5000)) > 0)
        want -= type == 'Z';
    return want == 0;
}

/* Does any text SHOW QUERIES lists contain needle? */
static bool show_queries_mention(const char *needle)
{
    PGconn *admin = proxy_connect(&px, "alice", "alice-secret", "lakeproxy", NULL);
    PGresult *r = PQexec(admin, "SHOW QUERIES 1000");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(admin));
    bool found = false;
    for (int i = 0; i < PQntuples(r); i++)
        for (int j = 0; j < PQnfields(r); j++)
            found |= strstr(PQgetvalue(r, i, j), needle) != NULL;
    PQclear(r);
    PQfinish(admin);
    return found;
}

/* The server reports a changed setting only at the ReadyForQuery after the statement that
 * changed it, so text sent behind that statement (pipelined, or before the ReadyForQuery of an
 * extended-protocol Flush) is read under a setting the proxy has not been told yet: it is
 * counted, never analysed. As in the test above, the parser would see a secret. */
Test(stats, text_behind_an_unreported_setting_change_is_never_logged)
{
    const char *secret = "SELECT 'x\\' || length(\"hunter2 secret\") --', 42";
    const char *turn_off[] = {"SET standard_conforming_strings = off",
                              "SELECT set_config('standard_conforming_strings', 'off', false)"};
    for (int i = 0; i < 2; i++) { /* two simple Queries sent together */
        int fd = raw_session(px.port, "carol", "app");
        cr_assert(fd >= 0);
        raw_query(fd, turn_off[i]);
        raw_query(fd, secret);
        cr_expect(raw_read_readies(fd, 2), "%s, then the secret", turn_off[i]);
        close(fd);
    }
    /* extended protocol: the SET runs at a Flush, the text follows before any ReadyForQuery */
    int fd = raw_session(px.port, "carol", "app");
    cr_assert(fd >= 0);
    struct buf b;
    buf_init(&b);
    raw_put_parse(&b, "", turn_off[0]);
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'H');
    cr_assert_eq(write(fd, b.data, b.len), (ssize_t)b.len);
    unsigned char msg[8192];
    size_t len;
    int type;
    while ((type = raw_read_msg(fd, msg, sizeof(msg), &len, 5000)) > 0 && type != 'C')
        ;
    cr_assert_eq(type, 'C', "the SET completed at the Flush");
    b.len = 0;
    raw_put_parse(&b, "", secret);
    raw_put_bind(&b, "", "");
    raw_put_execute(&b, "");
    raw_put_empty(&b, 'S');
    cr_assert_eq(write(fd, b.data, b.len), (ssize_t)b.len);
    cr_expect(raw_read_readies(fd, 1));
    buf_free(&b);
    close(fd);
    usleep(200 * 1000);
    cr_expect_eq(file_count_lines(log_path, "hunter2"), 0, "a literal reached %s", log_path);
    cr_expect_not(show_queries_mention("hunter2"), "a literal reached SHOW QUERIES");
}

/* A bare-word option value in a later statement of a simple Query whose first is a SELECT, in
 * a text of a few statements or of more than are analysed one by one (64), reaches neither
 * the query log nor SHOW QUERIES. */
Test(stats, a_bare_option_value_behind_a_select_is_never_logged)
{
    int fd = raw_session(px.port, "carol", "app");
    cr_assert(fd >= 0);
    raw_query(fd, "SELECT 1; COPY (SELECT 1) TO STDOUT (FORMAT csv, NULL hunter2)");
    cr_expect(raw_read_readies(fd, 1));
    /* more statements than STATS_MAX_STMTS (64): the text is analysed whole */
    char many[2048] = "";
    for (int i = 0; i < 64; i++)
        strcat(many, "SELECT 1; ");
    strcat(many, "COPY (SELECT 1) TO STDOUT (FORMAT csv, NULL hunter2)");
    raw_query(fd, many);
    cr_expect(raw_read_readies(fd, 1));
    close(fd);
    usleep(300 * 1000);
    cr_expect_eq(file_count_lines(log_path, "hunter2"), 0, "a literal reached %s", log_path);
    cr_expect_not(show_queries_mention("hunter2"), "a literal reached SHOW QUERIES");
}

/* The pushdown report knows table sizes (pg_class.reltuples, looked up in the background):
 * an unfiltered read of all 1000 rows of items pulled 100% of it. */
Test(stats, the_pushdown_report_says_what_fraction_of_a_table_was_pulled)
{
    PGconn *pg = pg_admin("lp_test");
    PQclear(PQexec(pg, "ANALYZE items"));
    PQfinish(pg);
    PGconn *c = alice("app");
    PGresult *r = PQexec(c, "SELECT id FROM items");
    cr_assert_eq(PQntuples(r), 1000);
    PQclear(r);
    PGconn *admin = alice("lakeproxy");
    char reltuples[32] = "", pulled[32] = "";
    for (int i = 0; i < 50 && strcmp(reltuples, "1000") != 0; i++) {
        usleep(100 * 1000);
        r = PQexec(admin, "SHOW PUSHDOWN");
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(admin));
        for (int row = 0; row < PQntuples(r); row++)
            if (strcmp(PQgetvalue(r, row, PQfnumber(r, "table")), "items") == 0 &&
                strcmp(PQgetvalue(r, row, PQfnumber(r, "database")), "app") == 0) {
                snprintf(reltuples, sizeof(reltuples), "%s",
                         PQgetvalue(r, row, PQfnumber(r, "reltuples")));
                snprintf(pulled, sizeof(pulled), "%s",
                         PQgetvalue(r, row, PQfnumber(r, "unfiltered_pulled_pct")));
            }
        PQclear(r);
    }
    cr_expect_str_eq(reltuples, "1000");
    cr_expect_str_eq(pulled, "100.0");
    PQfinish(admin);
    PQfinish(c);
}

/* The reads of table items by application name app in SHOW PUSHDOWN ("" when none). */
static void pushdown_reads(PGconn *admin, const char *app, char *out, size_t outsz)
{
    PGresult *r = PQexec(admin, "SHOW PUSHDOWN");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(admin));
    out[0] = '\0';
    for (int row = 0; row < PQntuples(r); row++)
        if (strcmp(PQgetvalue(r, row, PQfnumber(r, "table")), "items") == 0 &&
            strcmp(PQgetvalue(r, row, PQfnumber(r, "application_name")), app) == 0)
            snprintf(out, outsz, "%s", PQgetvalue(r, row, PQfnumber(r, "reads")));
    PQclear(r);
}

/* Each query counts under the application_name the client had when it ran, also after a SET
 * of it mid-session (and back). */
Test(stats, reads_count_under_the_application_name_of_the_moment)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", "application_name=lp-one");
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    const char *const steps[] = {
        "SELECT id FROM items WHERE id < 3", "SELECT id FROM items WHERE id < 4",
        "SET application_name = 'lp-two'",   "SELECT id FROM items WHERE id < 5",
        "SET application_name = 'lp-one'",   "SELECT id FROM items WHERE id < 6"};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
        cr_assert_str_eq(query_sqlstate(c, steps[i]), "", "%s", steps[i]);
    PGconn *admin = alice("lakeproxy");
    char one[32] = "", two[32] = "";
    for (int i = 0; i < 50 && (strcmp(one, "3") != 0 || strcmp(two, "1") != 0); i++) {
        usleep(100 * 1000);
        pushdown_reads(admin, "lp-one", one, sizeof(one));
        pushdown_reads(admin, "lp-two", two, sizeof(two));
    }
    cr_expect_str_eq(one, "3", "reads of items as lp-one");
    cr_expect_str_eq(two, "1", "reads of items as lp-two");
    PQfinish(admin);
    PQfinish(c);
}

/* GET path from lakeproxy's admin.http endpoint. */
static char *curl(const char *path, int *status)
{
    return http_get(http_port, path, status);
}

/* Every line of a Prometheus text exposition: a HELP or TYPE comment, or a sample. */
static void expect_prometheus_text(char *text)
{
    regex_t sample, comment;
    cr_assert_eq(regcomp(&sample,
                         "^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\""
                         "(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\\})? "
                         "(-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|\\+Inf|NaN)$",
                         REG_EXTENDED | REG_NOSUB),
                 0);
    cr_assert_eq(
        regcomp(&comment, "^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$", REG_EXTENDED | REG_NOSUB),
        0);
    int samples = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        bool ok = regexec(line[0] == '#' ? &comment : &sample, line, 0, NULL, 0) == 0;
        cr_expect(ok, "not Prometheus text: %s", line);
        samples += line[0] != '#';
    }
    cr_expect_gt(samples, 10);
    regfree(&sample);
    regfree(&comment);
}

Test(stats, metrics_parse_as_prometheus_text_and_healthz_answers)
{
    PGconn *c = alice("app");
    for (int i = 0; i < 20; i++)
        free(query_value(c, "SELECT 1"));
    PQfinish(c);
    int status;
    char *m = curl("/metrics", &status);
    cr_expect_eq(status, 200);
    cr_expect(strstr(m, "lakeproxy_query_duration_seconds_count{database=\"app\"} 20"), "%s", m);
    cr_expect(strstr(m, "lakeproxy_up 1"), "%s", m);
    expect_prometheus_text(m);
    free(m);
    char *h = curl("/healthz", &status);
    cr_expect_eq(status, 200);
    cr_expect_str_eq(h, "ok\n");
    free(h);
    free(curl("/nothing", &status));
    cr_expect_eq(status, 404);
}

/* A client that pipelines /metrics requests and never reads the replies is held back by TCP:
 * lakeproxy's memory stays put, and /healthz keeps answering others. */
Test(stats, a_metrics_client_that_never_reads_cannot_grow_memory, .timeout = 60)
{
    int fd = raw_connect(http_port);
    cr_assert(fd >= 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    static const char one[] = "GET /metrics HTTP/1.1\r\nHost: xx\r\n\r\n";
    static char req[(sizeof(one) - 1) * 1000];
    for (size_t i = 0; i + sizeof(one) - 1 <= sizeof(req); i += sizeof(one) - 1)
        memcpy(req + i, one, sizeof(one) - 1);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    long before = proxy_status_kb(&px, "VmRSS");
    size_t sent = 0;
    for (double t0 = now_s(); now_s() - t0 < 2.0;) {
        ssize_t n = send(fd, req, sizeof(req), MSG_NOSIGNAL);
        if (n > 0)
            sent += (size_t)n;
        else
            usleep(10000);
    }
    long after = proxy_status_kb(&px, "VmRSS");
    fprintf(stderr, "stats: a non-reading /metrics client sent %zu kB; RSS %ld -> %ld kB\n",
            sent / 1024, before, after);
    cr_expect_lt(after - before, 50 * 1024, "RSS grew from %ld to %ld kB", before, after);
    int status;
    free(curl("/healthz", &status));
    cr_expect_eq(status, 200);
    close(fd);
}
