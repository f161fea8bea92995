/* test_stats.c: per-fingerprint aggregates, the per-table pushdown report and the latency
 * histogram's percentiles against a sorted reference. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fnv.h"
#include "log.h"
#include "stats.h"
#include "statslog.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

Test(stats, histogram_percentiles_are_within_a_bucket_of_the_exact_ones)
{
    enum { N = 20000 };
    static uint64_t v[N];
    struct stats_hist h = {0};
    srand(7);
    for (int i = 0; i < N; i++) { /* a long-tailed mix: most fast, some slow */
        v[i] = i % 50 == 0 ? 5000 + (uint64_t)(rand() % 200000) : 80 + (uint64_t)(rand() % 400);
        stats_hist_add(&h, v[i]);
    }
    qsort(v, N, sizeof(v[0]), cmp_u64);
    static const double ps[] = {0.5, 0.9, 0.95, 0.99, 0.999, 1.0};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        size_t at = (size_t)(ps[i] * N + 0.999999) - 1;
        uint64_t exact = v[at], est = stats_hist_quantile(&h, ps[i]);
        cr_expect(est >= exact && est <= exact * 1.19 + 1, "p%.1f: exact %llu, histogram %llu",
                  ps[i] * 100, (unsigned long long)exact, (unsigned long long)est);
    }
    struct stats_hist empty = {0};
    cr_expect_eq(stats_hist_quantile(&empty, 0.99), 0);
}

/* The bucket a value lands in: the one whose bounds, stats_hist_upper_us of it and of the
 * bucket below, hold it; checked for every value to 100,000 us and around each power of two. */
static int bucket_landed(uint64_t us)
{
    struct stats_hist h = {0};
    stats_hist_add(&h, us);
    for (int i = 0; i < STATS_BUCKETS; i++)
        if (h.b[i])
            return i;
    return -1;
}

Test(stats, every_value_lands_in_the_bucket_whose_bounds_hold_it)
{
    uint64_t vals[100000 + 3 * 40];
    size_t n = 0;
    for (uint64_t us = 1; us <= 100000; us++)
        vals[n++] = us;
    for (int e = 17; e < 57; e++) {
        vals[n++] = (1ULL << e) - 1;
        vals[n++] = 1ULL << e;
        vals[n++] = (1ULL << e) + 1;
    }
    for (size_t k = 0; k < n; k++) {
        int i = bucket_landed(vals[k]);
        double us = (double)vals[k];
        cr_assert(i >= 0);
        if (i < STATS_BUCKETS - 1)
            cr_assert_lt(us, stats_hist_upper_us(i), "%llu in bucket %d",
                         (unsigned long long)vals[k], i);
        if (i > 0)
            cr_assert_geq(us, stats_hist_upper_us(i - 1), "%llu in bucket %d",
                          (unsigned long long)vals[k], i);
    }
}

Test(stats, queries_add_up_per_fingerprint_and_per_table)
{
    struct stats *st = stats_new(100, 256, NULL);
    cr_assert_not_null(st);
    uint64_t a = stats_fingerprint(st, "SELECT * FROM t WHERE id = 1", true);
    uint64_t b = stats_fingerprint(st, "SELECT * FROM t WHERE id = 2", true);
    uint64_t full = stats_fingerprint(st, "SELECT * FROM t", true);
    cr_expect_eq(a, b, "one fingerprint for both");
    cr_expect_eq(stats_analyses(st), 2, "the second text hit the key cache: no parse");
    for (int i = 0; i < 10; i++) {
        struct stats_query q = {
            .fingerprint = a, .app = "app", .total_us = 100 + i, .rows = 1, .bytes = 50};
        if (i == 9)
            memcpy(q.sqlstate, "22012", 6);
        stats_add(st, &q);
    }
    struct stats_query f = {
        .fingerprint = full, .app = "spark", .total_us = 9000, .rows = 1000, .bytes = 64000};
    stats_add(st, &f);
    const struct stats_fp *e = stats_find(st, a);
    cr_assert_not_null(e);
    cr_expect_eq(e->calls, 10);
    cr_expect_eq(e->errors, 1);
    cr_expect_eq(e->rows, 10);
    cr_expect_eq(e->total_us, 1045);
    cr_expect_eq(e->pushed_down, 10);
    cr_expect_str_eq(e->a.normalized, "SELECT * FROM t WHERE id = $1");
    const struct stats_fp *top[4];
    cr_assert_eq(stats_top(st, top, 4), 2);
    cr_expect_eq(top[0]->fingerprint, full, "the largest total time first");
    stats_free(st);
}

struct table_seen {
    uint64_t app_reads, spark_unfiltered, spark_rows;
};

static void see_table(void *arg, const struct stats_table *t)
{
    struct table_seen *s = arg;
    cr_expect_str_eq(t->table, "t");
    if (strcmp(t->app, "app") == 0)
        s->app_reads = t->reads;
    else if (strcmp(t->app, "spark") == 0) {
        s->spark_unfiltered = t->unfiltered;
        s->spark_rows = t->unfiltered_rows;
    }
}

/* With standard_conforming_strings off the parser would read quotes otherwise than the server:
 * such text is counted under its text key, never analysed, never given a normalised text. */
Test(stats, text_the_session_reads_otherwise_is_counted_but_never_shown)
{
    struct stats *st = stats_new(100, 256, NULL);
    uint64_t fp = stats_fingerprint(st, "SELECT 'x\\' || length(\"secret\") --', 42", false);
    cr_assert_neq(fp, 0);
    const struct stats_fp *f = stats_find(st, fp);
    cr_assert_not_null(f);
    cr_expect_eq(f->a.kind, SQL_UNKNOWN);
    cr_expect_null(f->a.normalized);
    cr_expect_eq(stats_analyses(st), 0, "not parsed");
    cr_expect_neq(fp, stats_fingerprint(st, "SELECT 'x\\' || length(\"secret\") --', 42", true));
    stats_free(st);
}

Test(stats, the_pushdown_report_splits_tables_by_application)
{
    struct stats *st = stats_new(100, 256, NULL);
    uint64_t filtered = stats_fingerprint(st, "SELECT a FROM t WHERE b > $1", true);
    uint64_t full = stats_fingerprint(st, "SELECT a FROM t", true);
    struct stats_query q1 = {.fingerprint = filtered, .app = "app", .rows = 3};
    struct stats_query q2 = {.fingerprint = full, .app = "spark", .rows = 1000};
    stats_add(st, &q1);
    stats_add(st, &q1);
    stats_add(st, &q2);
    struct table_seen s = {0};
    stats_each_table(st, see_table, &s);
    cr_expect_eq(s.app_reads, 2);
    cr_expect_eq(s.spark_unfiltered, 1);
    cr_expect_eq(s.spark_rows, 1000);
    stats_free(st);
}

struct reads_by_origin {
    uint64_t reads[2][2]; /* [app "a" or "b"][db "x" or "y"] */
};

static void count_reads(void *arg, const struct stats_table *t)
{
    struct reads_by_origin *r = arg;
    cr_expect_str_eq(t->table, "t");
    r->reads[t->app[0] == 'b'][t->db[0] == 'y'] += t->reads;
}

/* One statement run by alternating applications and databases: each (application, database)
 * keeps its own reads, whichever ran it last. */
Test(stats, one_statement_from_several_origins_counts_each_apart)
{
    struct stats *st = stats_new(100, 256, NULL);
    uint64_t fp = stats_fingerprint(st, "SELECT a FROM t WHERE b = $1", true);
    /* each change of application or database alone, and back */
    const char *origins[][2] = {{"a", "x"}, {"a", "y"}, {"a", "y"}, {"b", "y"}, {"a", "y"},
                                {"b", "x"}, {"b", "x"}, {"a", "x"}, {"b", "y"}, {"a", "x"}};
    struct reads_by_origin want = {0}, got = {0};
    for (size_t i = 0; i < sizeof(origins) / sizeof(origins[0]); i++) {
        struct stats_query q = {.fingerprint = fp, .app = origins[i][0], .db = origins[i][1]};
        stats_add(st, &q);
        want.reads[origins[i][0][0] == 'b'][origins[i][1][0] == 'y']++;
    }
    stats_each_table(st, count_reads, &got);
    for (int app = 0; app < 2; app++)
        for (int db = 0; db < 2; db++)
            cr_expect_eq(got.reads[app][db], want.reads[app][db], "app %d, db %d", app, db);
    stats_free(st);
}

Test(stats, the_number_of_fingerprints_is_bounded)
{
    struct stats *st = stats_new(8, 64, NULL);
    char sql[64];
    for (int i = 0; i < 50; i++) {
        snprintf(sql, sizeof(sql), "SELECT c%d FROM t", i);
        uint64_t fp = stats_fingerprint(st, sql, true);
        cr_assert_neq(fp, 0);
        struct stats_query q = {.fingerprint = fp, .total_us = 1};
        stats_add(st, &q);
    }
    cr_expect_eq(stats_evicted(st), 42);
    const struct stats_fp *top[64];
    cr_expect_eq(stats_top(st, top, 64), 8);
    stats_free(st);
}

Test(statslog, a_record_is_one_line_of_json_with_strings_escaped)
{
    struct statslog_rec r = {.time_us = 1764460800123456LL,
                             .fingerprint = 0xabcdefULL,
                             .predicates = 2,
                             .filters = 1,
                             .limit = true,
                             .rows = 3,
                             .total_us = 42};
    r.who_len = statslog_format_who(r.who, "127.0.0.1", "al\"ice", NULL, "tab\there");
    snprintf(r.query, sizeof(r.query), "SELECT * FROM t WHERE a = $1 AND b LIKE '\\\\%%'");
    snprintf(r.read, sizeof(r.read), "t,public.u");
    snprintf(r.cols, sizeof(r.cols), "a,b");
    char line[4096];
    size_t n = statslog_format(&r, line, sizeof(line));
    cr_assert_eq(line[n - 1], '\n');
    cr_expect_null(memchr(line, '\n', n - 1), "one line");
    cr_expect(strstr(line, "\"time\":\"2025-11-30T00:00:00.123456Z\""), "%s", line);
    cr_expect(strstr(line, "\"user\":\"al\\\"ice\""), "%s", line);
    cr_expect(strstr(line, "\"application_name\":\"tab\\u0009here\""), "%s", line);
    cr_expect(strstr(line, "\"client\":\"127.0.0.1\",\"user\":\"al\\\"ice\",\"database\":\"\","),
              "%s", line);
    cr_expect(strstr(line, "\"tables_read\":[\"t\",\"public.u\"]"), "%s", line);
    cr_expect(strstr(line, "\"columns\":[\"a\",\"b\"]"), "%s", line);
    cr_expect(strstr(line, "\"fingerprint\":\"0000000000abcdef\""), "%s", line);
    cr_expect(strstr(line, "\"sqlstate\":null"), "%s", line);
    cr_expect(strstr(line, "\"limit\":true"), "%s", line);
    cr_expect(strstr(line, "\"total_us\":42}"), "%s", line);
    cr_expect(strstr(line, "LIKE '\\\\\\\\%'"), "backslashes doubled: %s", line);
    char tiny[64];
    n = statslog_format(&r, tiny, sizeof(tiny));
    cr_expect_eq(n, sizeof(tiny) - 1);
    cr_expect_eq(tiny[n - 1], '\n', "truncated, still one line");
    cr_expect_eq(tiny[n], '\0');
    for (size_t sz = 3; sz < 600; sz += 7) { /* every cut stays inside the buffer */
        char *b = malloc(sz);
        size_t k = statslog_format(&r, b, sz);
        cr_expect(k < sz && b[k] == '\0' && b[k - 1] == '\n', "size %zu", sz);
        free(b);
    }
}

/* Record i of a stream whose statements share cache slots: fingerprints 0..9 and 64..73 share
 * slots, each has two texts and two limits, some are long and full of characters JSON escapes,
 * two thirds carry an id standing for exactly their statement fields. */
static void make_record(int i, struct statslog_rec *r)
{
    *r = (struct statslog_rec){.time_us = 1764460800000000LL + i,
                               .rows = (uint64_t)i,
                               .table_fraction = i % 3 ? -1 : i / 7.0};
    r->fingerprint = (uint64_t)(i % 10) + (i % 20 >= 10 ? STATSLOG_STMT_CACHE : 0);
    r->limit = i % 7 == 0;
    r->joins = i % 11 == 0;
    snprintf(r->kind, sizeof(r->kind), "select");
    char user[16];
    snprintf(user, sizeof(user), "u%d", i % 5);
    r->who_len = statslog_format_who(r->who, "127.0.0.1", user, "db", "app");
    if (i % 13 == 0) {
        memset(r->query, '"', sizeof(r->query) - 1);
    } else {
        snprintf(r->query, sizeof(r->query), "SELECT %s FROM t%d WHERE a = $1",
                 i % 3 ? "a" : "b\tc", (int)(r->fingerprint % 7));
    }
    snprintf(r->read, sizeof(r->read), "t%d,public.u", i % 4);
    snprintf(r->cols, sizeof(r->cols), "a");
    if ((i / 10) % 3 != 0) {
        char key[64];
        snprintf(key, sizeof(key), "%d/%d/%d/%d/%d/%d", (int)r->fingerprint, r->limit, r->joins,
                 i % 13 == 0, i % 3 != 0, i % 4);
        r->stmt_id = fnv_str(FNV_OFFSET, key) | 1;
    }
}

/* The line the writer makes of `sent` with cache c, at line size i picks, is the line of
 * `whole` made directly, byte for byte. */
static void expect_line_of(struct statslog_stmt_cache *c, const struct statslog_rec *sent,
                           const struct statslog_rec *whole, int i)
{
    static const size_t sizes[] = {3, 40, 200, 700, 1600, 4096, 8192};
    char direct[8192], cached[8192];
    size_t sz = sizes[i % (sizeof(sizes) / sizeof(sizes[0]))];
    size_t a = statslog_format(whole, direct, sz);
    size_t b = statslog_format_cached(c, sent, cached, sz);
    cr_assert_eq(a, b, "record %d, size %zu", i, sz);
    cr_assert(memcmp(direct, cached, a + 1) == 0, "record %d, size %zu:\n%s\n%s", i, sz, direct,
              cached);
}

/* The writer's cache of formatted statements changes no byte of any line: statements that
 * share a cache slot, the same fingerprint with other text or features, long escaped texts
 * and every line size give what statslog_format gives. */
/* Numbers are written as printf would, at every number of digits, and the time's
 * microseconds always with six. */
Test(statslog, numbers_are_printed_exactly_at_every_length)
{
    uint64_t v = 0;
    for (int digits = 1; digits <= 20; digits++) {
        uint64_t cases[3] = {v, v * 10 + 9 > v ? v * 10 + 9 : UINT64_MAX, UINT64_MAX};
        for (int i = 0; i < 3; i++) {
            struct statslog_rec r = {.time_us = 1764460800000000LL + (int64_t)(cases[i] % 1000000),
                                     .rows = cases[i],
                                     .wait_us = -(int64_t)(cases[i] >> 1) - 1};
            char line[4096], want[64];
            statslog_format(&r, line, sizeof(line));
            snprintf(want, sizeof(want), "\"rows\":%llu,", (unsigned long long)cases[i]);
            cr_expect(strstr(line, want), "%s in %s", want, line);
            snprintf(want, sizeof(want), "\"wait_us\":%lld,", (long long)r.wait_us);
            cr_expect(strstr(line, want), "%s in %s", want, line);
            snprintf(want, sizeof(want), ".%06dZ\"", (int)(cases[i] % 1000000));
            cr_expect(strstr(line, want), "%s in %s", want, line);
        }
        v = v * 10 + 1; /* 1, 11, 111, ... */
    }
}

Test(statslog, lines_from_the_statement_cache_are_byte_identical)
{
    struct statslog_stmt_cache *cache = calloc(1, sizeof(*cache));
    cr_assert_not_null(cache);
    for (int i = 0; i < 3000; i++) {
        struct statslog_rec r;
        make_record(i, &r);
        expect_line_of(cache, &r, &r, i);
    }
    free(cache);
}

/* A record the producer's shadow lets leave its statement fields out (they are garbage here)
 * still gives the line of the whole record, byte for byte, and the shadow lets repeated
 * statements leave them out. */
Test(statslog, records_leaving_out_a_statement_the_writer_holds_give_the_same_lines)
{
    struct statslog_stmt_cache *cache = calloc(1, sizeof(*cache));
    struct statslog_shadow shadow = {0};
    cr_assert_not_null(cache);
    int left_out = 0;
    for (int i = 0; i < 3000; i++) {
        struct statslog_rec whole, sent;
        /* each statement three times over, every fifth record another one in between */
        make_record(i % 5 == 4 ? 5000 + i : i / 3, &whole);
        sent = whole;
        sent.stmt_known = statslog_shadow_knows(&shadow, sent.fingerprint, sent.stmt_id);
        if (sent.stmt_known) {
            left_out++;
            memset(sent.query, 'X', sizeof(sent.query) - 1);
            sent.query[sizeof(sent.query) - 1] = '\0';
            memset(sent.read, 'X', sizeof(sent.read) - 1);
            sent.read[sizeof(sent.read) - 1] = '\0';
            sent.kind[0] = '\0';
            sent.limit = !whole.limit;
            sent.joins = 99;
        }
        statslog_shadow_note(&shadow, &sent);
        expect_line_of(cache, &sent, &whole, i);
    }
    cr_expect_gt(left_out, 800, "%d of 3000 left out", left_out);
    free(cache);
}

/* A client's names are made into the origin part once; a value full of characters JSON
 * escapes is cut whole escapes at a time, and its string still closes. */
Test(statslog, the_origin_part_keeps_short_names_whole_and_cuts_escaped_ones_cleanly)
{
    char quotes[64], controls[64], who[STATSLOG_WHO_MAX + 1];
    memset(quotes, '"', 63);
    memset(controls, 1, 63);
    quotes[63] = controls[63] = '\0';
    size_t n = statslog_format_who(who, "[::1]:5432", quotes, "db", controls);
    cr_assert_lt(n, sizeof(who));
    who[n] = '\0';
    char want_user[160] = ",\"user\":\"";
    for (int i = 0; i < 63; i++)
        strcat(want_user, "\\\"");
    strcat(want_user, "\",");
    cr_expect(strstr(who, want_user), "63 quotes, each escaped: %s", who);
    const char *app = strstr(who, ",\"application_name\":\"");
    cr_assert_not_null(app);
    app += strlen(",\"application_name\":\"");
    size_t len = strlen(app) - 1; /* without the closing quote */
    cr_expect_eq(app[len], '"');
    cr_expect_eq(len % 6, 0, "whole \\u0001 escapes only: %s", app);
    cr_expect(len > 0 && len <= STATSLOG_WHO_FIELD, "%zu bytes", len);
    struct statslog_rec r = {.time_us = 1, .fingerprint = 2};
    memcpy(r.who, who, n);
    r.who_len = n;
    char line[4096];
    size_t k = statslog_format(&r, line, sizeof(line));
    cr_expect(k > n && strstr(line, who) && strstr(line, "\"total_us\":0}\n"), "%s", line);
}

Test(log, json_lines_escape_the_message_and_journal_lines_carry_a_priority)
{
    struct timeval tv = {1764460800, 123456};
    char line[512];
    size_t n = log_format_line(line, sizeof(line), LOG_JSON, LOG_WARNING, &tv,
                               "client 1: \"odd\"\tname\\");
    cr_expect_str_eq(line, "{\"time\":\"2025-11-30T00:00:00.123Z\",\"level\":\"warning\","
                           "\"msg\":\"client 1: \\\"odd\\\"\\u0009name\\\\\"}\n");
    cr_expect_eq(n, strlen(line));
    log_format_line(line, sizeof(line), LOG_JOURNAL, LOG_ERROR, &tv, "boom");
    cr_expect_str_eq(line, "<3>ERROR boom\n");
    log_format_line(line, sizeof(line), LOG_TEXT, LOG_INFO, &tv, "hello");
    cr_expect_str_eq(line, "2025-11-30 00:00:00.123 UTC LOG hello\n");
    /* a client's bytes cannot start a line of their own */
    n = log_format_line(line, sizeof(line), LOG_TEXT, LOG_INFO, &tv,
                        "login x\n2025-11-30 00:00:00.000 UTC LOG forged\r\t\x1b\x7f");
    cr_expect_str_eq(line, "2025-11-30 00:00:00.123 UTC LOG login x\\n2025-11-30 00:00:00.000 "
                           "UTC LOG forged\\r\\t\\x1b\\x7f\n");
    cr_expect_eq(n, strlen(line));
    log_format_line(line, sizeof(line), LOG_JOURNAL, LOG_ERROR, &tv, "a\nb");
    cr_expect_str_eq(line, "<3>ERROR a\\nb\n");
    char tiny[40];
    n = log_format_line(tiny, sizeof(tiny), LOG_TEXT, LOG_INFO, &tv, "a long message cut short");
    cr_expect_eq(n, strlen(tiny));
    cr_expect_eq(tiny[n - 1], '\n', "a cut line still ends: %s", tiny);
}

/* A simple Query with several statements: each has the fingerprint it has alone, the split is
 * cached with the text, and a script of more than STATS_MAX_STMTS statements is one query. */
Test(stats, each_statement_of_a_text_gets_its_own_fingerprint)
{
    struct stats *st = stats_new(100, 256, NULL);
    cr_assert_not_null(st);
    uint64_t fps[STATS_MAX_STMTS];
    const char *text = "SELECT 1;  -- first\n SELECT a, b FROM t WHERE x = 'it''s' ;"
                       "/* c */ UPDATE t SET a = 2 WHERE b = 3;";
    cr_assert_eq(stats_statements(st, text, true, fps), 3);
    /* (asked again before any other text: the key cache is direct-mapped with a random seed,
     * so another text could take its slot) */
    uint64_t again[STATS_MAX_STMTS];
    uint64_t analyses = stats_analyses(st);
    cr_expect_eq(stats_statements(st, text, true, again), 3);
    cr_expect_eq(stats_analyses(st), analyses, "the second time, no parse");
    cr_expect_eq(memcmp(fps, again, 3 * sizeof(fps[0])), 0);
    cr_expect_eq(fps[0], stats_fingerprint(st, "SELECT 7", true));
    cr_expect_eq(fps[1], stats_fingerprint(st, "SELECT a, b FROM t WHERE x = 'y'", true));
    cr_expect_eq(fps[2], stats_fingerprint(st, "UPDATE t SET a = 5 WHERE b = 6", true));
    cr_expect_str_eq(stats_find(st, fps[1])->a.normalized, "SELECT a, b FROM t WHERE x = $1");
    cr_expect_str_eq(stats_find(st, fps[2])->a.normalized, "UPDATE t SET a = $1 WHERE b = $2");

    char script[4096] = "";
    for (int i = 0; i <= STATS_MAX_STMTS; i++)
        strcat(script, "SELECT 1;");
    cr_expect_eq(stats_statements(st, script, true, fps), 1, "a script: one query");
    cr_expect_eq(stats_statements(st, "SELECT 1; SELECT 'x", true, fps), 1, "no parse: one");
    cr_expect_eq(stats_statements(st, "SELECT 1; SELECT 2", false, fps), 1, "unreadable: one");
    stats_free(st);
}

/* Every byte value, at every buffer length: the line ends in "\n\0" inside the buffer and
 * holds no control byte but its end; and journald, which shows a message with invalid UTF-8
 * or a C1 control as "[blob data]" (hiding the whole line), never gets one. */
Test(log, text_lines_hold_every_byte_safely)
{
    struct timeval tv = {1764460800, 123456};
    char msg[300];
    for (int i = 1; i < 256; i++)
        msg[i - 1] = (char)i;
    msg[255] = '\0';
    for (size_t sz = 2; sz < 1200; sz++) {
        char *line = malloc(sz);
        for (int fmt = 0; fmt < 2; fmt++) {
            size_t n = log_format_line(line, sz, fmt ? LOG_JOURNAL : LOG_TEXT, LOG_INFO, &tv, msg);
            cr_assert(n < sz && line[n] == '\0' && n > 0 && line[n - 1] == '\n', "size %zu", sz);
            for (size_t k = 0; k + 1 < n; k++)
                cr_assert((unsigned char)line[k] >= 0x20 && line[k] != 0x7f, "size %zu", sz);
        }
        free(line);
    }
    char line[512];
    log_format_line(line, sizeof(line), LOG_JOURNAL, LOG_INFO, &tv,
                    "login failed for user \"\xff\xfe\" (C1: \xc2\x9b)");
    cr_expect_str_eq(line, "<6>LOG login failed for user \"\\xff\\xfe\" (C1: \\xc2\\x9b)\n");
    /* a name in another script stays readable; an overlong '/', a surrogate and a
     * right-to-left override do not pass */
    log_format_line(
        line, sizeof(line), LOG_JOURNAL, LOG_INFO, &tv,
        "user \"J\xc3\xb6rg \xe6\x9d\xb1\xf0\x9f\x90\x98\" \xc0\xaf \xed\xa0\x80 \xe2\x80\xae");
    cr_expect_str_eq(line, "<6>LOG user \"J\xc3\xb6rg \xe6\x9d\xb1\xf0\x9f\x90\x98\" \\xc0\\xaf "
                           "\\xed\\xa0\\x80 \\xe2\\x80\\xae\n");
    /* noncharacters, zero-width and right-to-left marks */
    log_format_line(line, sizeof(line), LOG_JOURNAL, LOG_INFO, &tv,
                    "a\xef\xbf\xbe b\xef\xb7\x90 c\xe2\x80\x8f d\xe2\x80\x8b e\xd8\x9c");
    cr_expect_str_eq(line, "<6>LOG a\\xef\\xbf\\xbe b\\xef\\xb7\\x90 c\\xe2\\x80\\x8f "
                           "d\\xe2\\x80\\x8b e\\xd8\\x9c\n");
}

/* A JSON line is valid UTF-8 whatever the message holds: characters as written, hidden ones
 * as \uXXXX, a byte of no character as the text \xNN; cut short, it still ends. */
Test(log, json_lines_are_utf8_whatever_the_message_holds)
{
    struct timeval tv = {1764460800, 123456};
    char line[512];
    log_format_line(line, sizeof(line), LOG_JSON, LOG_INFO, &tv,
                    "J\xc3\xb6rg \xff \xc2\x9b \xe2\x80\xa8 \xf0\x9f\x90\x98");
    cr_expect_str_eq(line, "{\"time\":\"2025-11-30T00:00:00.123Z\",\"level\":\"info\","
                           "\"msg\":\"J\xc3\xb6rg \\\\xff \\u009b \\u2028 \xf0\x9f\x90\x98\"}\n");
    char msg[300];
    for (int i = 1; i < 256; i++)
        msg[i - 1] = (char)i;
    msg[255] = '\0';
    for (size_t sz = 64; sz < 1200; sz++) { /* from a size that holds the time and level */
        char *buf = malloc(sz);
        size_t n = log_format_line(buf, sz, LOG_JSON, LOG_INFO, &tv, msg);
        cr_assert(n < sz && buf[n] == '\0' && n >= 3 && strcmp(buf + n - 3, "\"}\n") == 0,
                  "size %zu: %s", sz, buf);
        for (size_t k = 0; k < n; k++)
            cr_assert((unsigned char)buf[k] < 0x80, "size %zu: a raw byte above 0x7f", sz);
        free(buf);
    }
}
