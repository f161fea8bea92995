/* test_sqlinfo.c: statement analysis for statistics (fingerprints, normalised text with no
 * literal left, kind, tables, pushdown features of the statements federation sends) and the
 * literal-insensitive cache key. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "siphash.h"
#include "sqlinfo.h"
#include "sqlkey.h"

static struct sql_analysis an(const char *sql)
{
    struct sql_analysis a;
    cr_assert(sqlinfo_analyze(sql, &a), "%s", sql);
    return a;
}

Test(sqlinfo, fingerprint_ignores_constants_and_normalised_text_keeps_none)
{
    struct sql_analysis a = an("SELECT * FROM t WHERE id = 42 AND name = 'O''Brien'");
    struct sql_analysis b = an("select * from t where id = 7 and name = $$dollar$$");
    struct sql_analysis c = an("SELECT * FROM t WHERE id = 42 OR name = 'x'");
    cr_expect_eq(a.fingerprint, b.fingerprint);
    cr_expect_neq(a.fingerprint, c.fingerprint, "a different shape, a different fingerprint");
    cr_expect_str_eq(a.normalized, "SELECT * FROM t WHERE id = $1 AND name = $2");
    cr_expect_null(strstr(b.normalized, "dollar"), "%s", b.normalized);
    struct sql_analysis e =
        an("UPDATE accounts SET secret = E'pa\\\\ss' WHERE ssn = '123-45-6789'");
    cr_expect_null(strstr(e.normalized, "123-45"), "%s", e.normalized);
    cr_expect_null(strstr(e.normalized, "pa"), "%s", e.normalized);
    /* statements whose constants libpg_query's normalisation leaves in: scrubbed all the same */
    static const char *const leaky[] = {
        "COPY t FROM '/secret/path'",
        "COMMENT ON TABLE t IS 'secret'",
        "CREATE TABLE t (x text DEFAULT 'secret')",
        "NOTIFY chan, 'secret'",
        "PREPARE p AS SELECT 'secret'",
        "EXECUTE p('secret', 31337)",
        "ALTER SYSTEM SET work_mem = 'secret'",
        "ALTER SYSTEM SET search_path = secret",
        "ALTER ROLE bob SET search_path = secret, public",
        "ALTER ROLE bob IN DATABASE d SET app.key = secret",
        "ALTER DATABASE d SET app.key = secret",
        "ALTER FUNCTION f() SET search_path = secret",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET app.key = secret AS 'SELECT 31337'",
        "SET app.key = secret",
        "SET SESSION app.key TO secret",
        "SET LOCAL search_path = secret, public",
        "SET TIME ZONE secret",
        "SET ROLE secret",
        "SET SESSION AUTHORIZATION secret",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY",
        "SET xmloption = secret",
        /* options' values written as bare words (red team 3) */
        "ALTER TABLE t SET (autovacuum_enabled = secret)",
        "ALTER TABLE t SET (toast.autovacuum_enabled = secret)",
        "COPY t TO STDOUT (FORMAT csv, NULL secret)",
        "CREATE TYPE ty (input = f, output = g, default = secret)",
        "CREATE COLLATION c (provider = icu, locale = secret)",
        "CREATE DATABASE d LC_COLLATE secret OWNER bob",
        "CREATE TEXT SEARCH DICTIONARY d (TEMPLATE = simple, STOPWORDS = secret)",
        "CREATE EXTENSION e VERSION secret",
        "VACUUM (BUFFER_USAGE_LIMIT secret) t",
        "EXPLAIN (FORMAT secret) SELECT 1",
        "CREATE VIEW v AS SELECT 'secret'",
        "CALL p('secret')",
        "FETCH 31337 FROM c",
        "SELECT relname /* token=secret */ FROM pg_class LIMIT 1 -- pw=secret",
        "DELETE FROM t RETURNING 'secret'y",
        "SELECT 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
    };
    for (size_t i = 0; i < sizeof(leaky) / sizeof(leaky[0]); i++) {
        struct sql_analysis l = an(leaky[i]);
        if (!l.normalized) { /* not scrubbable: no text at all, the query still counted */
            cr_expect_neq(l.fingerprint, 0, "%s", leaky[i]);
            sqlinfo_analysis_free(&l);
            continue;
        }
        cr_expect_null(strstr(l.normalized, "secret"), "%s => %s", leaky[i], l.normalized);
        cr_expect_null(strstr(l.normalized, "31337"), "%s => %s", leaky[i], l.normalized);
        cr_expect_null(strstr(l.normalized, "'"), "%s => %s", leaky[i], l.normalized);
        sqlinfo_analysis_free(&l);
    }
    struct sql_analysis copy = an("COPY t TO STDOUT (FORMAT csv, NULL secret)");
    cr_expect_str_eq(copy.normalized ? copy.normalized : "(none)",
                     "COPY t TO STDOUT (FORMAT $1, NULL $2)", "an option's name stays");
    sqlinfo_analysis_free(&copy);
    struct sql_analysis many = an("SELECT 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1");
    cr_expect(strstr(many.normalized, "$20"), "%s", many.normalized);
    sqlinfo_analysis_free(&many);
    struct sql_analysis bad = an("SELEC 'secret value' FROM t");
    cr_expect_eq(bad.kind, SQL_UNKNOWN);
    cr_expect_null(bad.normalized, "text that does not parse is never logged");
    sqlinfo_analysis_free(&a);
    sqlinfo_analysis_free(&b);
    sqlinfo_analysis_free(&c);
    sqlinfo_analysis_free(&e);
    sqlinfo_analysis_free(&bad);
}

/* One row of the pushdown table: statement, kind, tables read (comma list), predicates,
 * limit, aggregates, group by, order by, joins, distinct, unfiltered. */
static const struct {
    const char *sql;
    enum sql_kind kind;
    const char *read;
    int predicates;
    bool limit;
    int aggregates;
    bool group_by, order_by;
    int joins;
    bool distinct, unfiltered;
} rows[] = {
    {"SELECT a, b FROM t WHERE x > $1 LIMIT 100", SQL_SELECT, "t", 1, true, 0, false, false, 0,
     false, false},
    {"SELECT a, b FROM t", SQL_SELECT, "t", 0, false, 0, false, false, 0, false, true},
    {"SELECT * FROM public.orders", SQL_SELECT, "public.orders", 0, false, 0, false, false, 0,
     false, true},
    {"SELECT a FROM t LIMIT 10", SQL_SELECT, "t", 0, true, 0, false, false, 0, false, false},
    {"SELECT a FROM t WHERE a = 1 AND b < 2 AND c IS NULL", SQL_SELECT, "t", 3, false, 0, false,
     false, 0, false, false},
    {"SELECT a FROM t WHERE a = 1 OR b = 2", SQL_SELECT, "t", 1, false, 0, false, false, 0, false,
     false},
    {"SELECT count(*) FROM t", SQL_SELECT, "t", 0, false, 1, false, false, 0, false, true},
    {"SELECT region, sum(amount), avg(amount) FROM sales GROUP BY region", SQL_SELECT, "sales", 0,
     false, 2, true, false, 0, false, true},
    {"SELECT region, sum(amount) FROM sales WHERE day >= $1 GROUP BY region ORDER BY 2 DESC",
     SQL_SELECT, "sales", 1, false, 1, true, true, 0, false, false},
    {"SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.total > "
     "10",
     SQL_SELECT, "orders,customers", 2, false, 0, false, false, 1, false, false},
    {"SELECT * FROM a, b WHERE a.id = b.id", SQL_SELECT, "a,b", 1, false, 0, false, false, 1, false,
     false},
    {"SELECT * FROM a LEFT JOIN b ON a.id = b.id LEFT JOIN c ON c.id = b.id", SQL_SELECT, "a,b,c",
     2, false, 0, false, false, 2, false, true},
    {"SELECT DISTINCT country FROM customers", SQL_SELECT, "customers", 0, false, 0, false, false,
     0, true, true},
    {"SELECT a FROM t ORDER BY a LIMIT 5 OFFSET 10", SQL_SELECT, "t", 0, true, 0, false, true, 0,
     false, false},
    {"SELECT * FROM t WHERE id IN (SELECT tid FROM u WHERE flag)", SQL_SELECT, "t,u", 1, false, 0,
     false, false, 0, false, false},
    {"WITH recent AS (SELECT * FROM events WHERE ts > now() - interval '1 day') "
     "SELECT count(*) FROM recent",
     SQL_SELECT, "events", 0, false, 1, false, false, 0, false, true},
    {"SELECT a FROM t UNION ALL SELECT a FROM u WHERE b = 1", SQL_SELECT, "t,u", 1, false, 0, false,
     false, 0, false, false},
    {"SELECT row_number() OVER (ORDER BY a) FROM t", SQL_SELECT, "t", 0, false, 0, false, false, 0,
     false, true},
    {"SELECT 1", SQL_SELECT, "", 0, false, 0, false, false, 0, false, false},
    {"SELECT \"Id\", \"Name\" FROM \"Sales\".\"Customers\" WHERE \"Id\" >= $1 AND \"Id\" < $2",
     SQL_SELECT, "Sales.Customers", 2, false, 0, false, false, 0, false, false},
    {"INSERT INTO t (a) VALUES ($1)", SQL_INSERT, "", 0, false, 0, false, false, 0, false, false},
    {"INSERT INTO t SELECT * FROM u", SQL_INSERT, "u", 0, false, 0, false, false, 0, false, false},
    {"UPDATE t SET a = 1 WHERE id = $1", SQL_UPDATE, "", 1, false, 0, false, false, 0, false,
     false},
    {"DELETE FROM t WHERE id = $1 AND owner = $2", SQL_DELETE, "", 2, false, 0, false, false, 0,
     false, false},
    {"BEGIN", SQL_TXN, "", 0, false, 0, false, false, 0, false, false},
    {"SET search_path = public", SQL_UTILITY, "", 0, false, 0, false, false, 0, false, false},
    {"CREATE TABLE x (a int)", SQL_DDL, "", 0, false, 0, false, false, 0, false, false},
    {"COPY t TO STDOUT", SQL_COPY, "t", 0, false, 0, false, false, 0, false, false},
};

/* The tables read, as a comma list. */
static void read_list(const struct sql_analysis *a, char *out, size_t outsz)
{
    out[0] = '\0';
    for (int i = 0; i < a->n_read; i++)
        snprintf(out + strlen(out), outsz - strlen(out), "%s%s", i ? "," : "", a->read[i]);
}

/* Is s whole UTF-8 (no character cut short)? */
static bool whole_utf8(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int more = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2 : 3;
        for (p++; more > 0; more--, p++)
            if ((*p & 0xC0) != 0x80)
                return false;
    }
    return true;
}

/* Normalising can make a text three times longer (every "1," becomes "$n,"): statistics keep
 * one per fingerprint, so the text kept is cut at SQLINFO_MAX_NORMALIZED bytes, at a character
 * boundary, and says so; short texts are whole. */
Test(sqlinfo, a_long_normalised_text_is_cut_at_a_character_boundary)
{
    size_t cap = 60 * 1024;
    char *sql = malloc(cap);
    cr_assert(sql);
    size_t n = (size_t)snprintf(sql, cap, "SELECT x FROM t WHERE k IN (");
    while (n + 8 < cap) {
        sql[n++] = '1';
        sql[n++] = ',';
    }
    memcpy(sql + n - 1, ")", 2);
    struct sql_analysis a = an(sql);
    cr_assert_not_null(a.normalized);
    size_t len = strlen(a.normalized);
    cr_expect_leq(len, SQLINFO_MAX_NORMALIZED, "kept %zu bytes", len);
    cr_expect_gt(len, SQLINFO_MAX_NORMALIZED - 16, "cut too short: %zu bytes", len);
    cr_expect_eq(strncmp(a.normalized, "SELECT x FROM t WHERE k IN ($1,$2,$3", 35), 0, "%.60s",
                 a.normalized);
    cr_expect_str_eq(a.normalized + len - 4, " ...");
    sqlinfo_analysis_free(&a);
    /* a two-byte character across the cut: the whole character goes */
    for (int odd = 0; odd < 2; odd++) {
        n = (size_t)snprintf(sql, cap, "SELECT 1 AS \"%s", odd ? "x" : "");
        while (n + 8 < 10 * 1024) {
            memcpy(sql + n, "\xc3\xa9", 2); /* e acute */
            n += 2;
        }
        memcpy(sql + n, "\"", 2);
        a = an(sql);
        cr_assert_not_null(a.normalized, "odd %d", odd);
        len = strlen(a.normalized);
        cr_expect_leq(len, SQLINFO_MAX_NORMALIZED, "odd %d: %zu bytes", odd, len);
        cr_expect(whole_utf8(a.normalized), "odd %d: a character was cut", odd);
        cr_expect_str_eq(a.normalized + len - 4, " ...", "odd %d", odd);
        sqlinfo_analysis_free(&a);
    }
    a = an("SELECT 1 AS \"\xc3\xa9\"");
    cr_expect_str_eq(a.normalized, "SELECT $1 AS \"\xc3\xa9\"", "a short text is whole");
    sqlinfo_analysis_free(&a);
    free(sql);
}

Test(sqlinfo, pushdown_features_of_federation_style_statements)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct sql_analysis a = an(rows[i].sql);
        char read[256];
        read_list(&a, read, sizeof(read));
        const char *q = rows[i].sql;
        cr_expect_eq(a.kind, rows[i].kind, "%s: kind %s", q, sql_kind_name(a.kind));
        cr_expect_str_eq(read, rows[i].read, "%s: tables read", q);
        cr_expect_eq(a.pd.predicates, rows[i].predicates, "%s: predicates", q);
        cr_expect_eq(a.pd.limit, rows[i].limit, "%s: limit", q);
        cr_expect_eq(a.pd.aggregates, rows[i].aggregates, "%s: aggregates", q);
        cr_expect_eq(a.pd.group_by, rows[i].group_by, "%s: group by", q);
        cr_expect_eq(a.pd.order_by, rows[i].order_by, "%s: order by", q);
        cr_expect_eq(a.pd.joins, rows[i].joins, "%s: joins", q);
        cr_expect_eq(a.pd.distinct, rows[i].distinct, "%s: distinct", q);
        cr_expect_eq(a.pd.unfiltered, rows[i].unfiltered, "%s: unfiltered", q);
        sqlinfo_analysis_free(&a);
    }
}

Test(sqlinfo, predicate_columns_and_written_tables)
{
    struct sql_analysis a = an("SELECT * FROM t JOIN u ON u.tid = t.id WHERE t.region = $1");
    cr_assert_eq(a.pd.n_cols, 3);
    cr_expect_str_eq(a.pd.cols[0], "region", "WHERE first, then JOIN conditions");
    cr_expect_str_eq(a.pd.cols[1], "tid");
    cr_expect_str_eq(a.pd.cols[2], "id");
    sqlinfo_analysis_free(&a);
    a = an("INSERT INTO archive SELECT * FROM live WHERE ts < $1");
    cr_assert_eq(a.n_written, 1);
    cr_expect_str_eq(a.written[0], "archive");
    cr_expect_str_eq(a.read[0], "live");
    sqlinfo_analysis_free(&a);
}

/* sqlkey_seeded under a secret made of n. */
static uint64_t keyed(const char *sql, uint64_t n)
{
    struct sqlkey_secret secret = {n, n * 0x9e3779b97f4a7c15ull + 1};
    return sqlkey_seeded(sql, &secret);
}

Test(sqlkey, texts_that_differ_only_in_constants_share_a_key)
{
    cr_expect_eq(sqlkey("SELECT * FROM t WHERE id = 1"),
                 sqlkey("SELECT * FROM t WHERE id = 12345"));
    cr_expect_eq(sqlkey("SELECT 'a' || x"), sqlkey("SELECT 'it''s' || x"));
    cr_expect_eq(sqlkey("SELECT E'a\\'b', 1.5e3"), sqlkey("SELECT E'z', 2"));
    cr_expect_eq(sqlkey("SELECT $$x$$, $t$y$t$"), sqlkey("SELECT 'a', 'b'"));
    cr_expect_eq(sqlkey("SELECT  a\n\tFROM t"), sqlkey("SELECT a FROM t"));
    cr_expect_neq(sqlkey("SELECT * FROM t WHERE id = $1"), sqlkey("SELECT * FROM t WHERE id = $2"));
    cr_expect_neq(sqlkey("SELECT a FROM t"), sqlkey("SELECT b FROM t"));
    cr_expect_neq(sqlkey("SELECT t1.a FROM t1"), sqlkey("SELECT t2.a FROM t2"),
                  "digits inside names are not constants");
    cr_expect_neq(sqlkey("SELECT \"a 1\" FROM t"), sqlkey("SELECT \"a 2\" FROM t"));
    cr_expect_neq(sqlkey("SELECT 1 -- it's\nFROM a"), sqlkey("SELECT 1 -- it's\nFROM b"),
                  "a quote in a comment opens no string");
    /* a constant ends its token, whatever its kind: what follows starts a new one */
    cr_expect_eq(sqlkey("SELECT 'x'.5"), sqlkey("SELECT $$x$$.5"));
    cr_expect_eq(sqlkey("SELECT 'x'.5"), sqlkey("SELECT 1e3.5"));
}

/* What PostgreSQL's lexer reads as SQL is never taken for a constant, so two statements that
 * differ in it never share a key: identifiers with bytes from 128 (é1 is a name, not é and a
 * number; éE'...' is a name and a string, not an E'' string), nested block comments, a
 * parameter followed by a dollar string, dollar tags with such bytes, and placeholders (no
 * byte of a text stands for a constant). A line comment ends at a carriage return too. */
Test(sqlkey, what_the_server_reads_as_sql_is_never_taken_for_a_constant)
{
    const char *pairs[][2] = {
        {"SELECT \xc3\xa9"
         "1 FROM t",
         "SELECT \xc3\xa9"
         "2 FROM t"},
        {"SELECT 1 AS \xc3\xa9"
         "E'\\' ; DROP TABLE t; --'",
         "SELECT 1 AS \xc3\xa9"
         "E'\\' ; DROP TABLE u; --'"},
        {"/* /* */ ' */ SELECT secret FROM payroll --'", "/* /* */ ' */ SELECT 1 --'"},
        {"SELECT $1$x$ ' $x$, a FROM t --'", "SELECT $1$x$ ' $x$, b FROM t --'"},
        {"SELECT $\xc3\xa9$ ' $\xc3\xa9$, a FROM t --'",
         "SELECT $\xc3\xa9$ ' $\xc3\xa9$, b FROM t --'"},
        {"SELECT \x01 FROM t", "SELECT 'x' FROM t"},
        {"SELECT \"\x01\" FROM t", "SELECT \"'x'\" FROM t"},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
        for (uint64_t n = 0; n < 3; n++)
            cr_expect_neq(keyed(pairs[i][0], n), keyed(pairs[i][1], n), "%s | %s", pairs[i][0],
                          pairs[i][1]);
    cr_expect_eq(sqlkey("SELECT 1 --c\r, 'a' FROM t"), sqlkey("SELECT 1 --c\r, 'b' FROM t"));
    cr_expect_eq(sqlkey("SELECT $\xc3\xa9$ ' $\xc3\xa9$, a"), sqlkey("SELECT 'z', a"));
}

/* Under a secret, a difference that once cancelled out in the mixing (bit 63 of one word, bits
 * 63 and 31 of the next: bytes from 128 at the right places) changes the key, whatever the
 * secret. */
Test(sqlkey, differences_in_high_bits_do_not_cancel_out)
{
    char a[] = "SELECT aaaaaaaaaaaaaaaaaaaa FROM t";
    char b[sizeof(a)];
    memcpy(b, a, sizeof(a));
    b[15] = b[19] = b[23] = (char)0xe1;
    for (uint64_t n = 0; n < 16; n++)
        cr_expect_neq(keyed(a, n), keyed(b, n), "secret %llu", (unsigned long long)n);
}

/* SipHash-2-4 gives the reference values (key 00 01 .. 0f; the paper's 15-byte message and
 * the empty one), fed whole or a byte at a time; SipHash-1-3, the same code with fewer rounds,
 * gives other values, the same however the input is cut. */
Test(siphash, the_reference_values_fed_whole_or_in_pieces)
{
    uint8_t key[16], msg[15];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 15; i++)
        msg[i] = (uint8_t)i;
    uint64_t k0 = 0, k1 = 0; /* the key's bytes as the paper reads them: little-endian */
    for (int i = 7; i >= 0; i--) {
        k0 = k0 << 8 | key[i];
        k1 = k1 << 8 | key[8 + i];
    }
    struct siphash s;
    siphash_init_rounds(&s, k0, k1, 2, 4);
    cr_expect_eq(siphash_end(&s), 0x726fdb47dd0e0e31ull);
    siphash_init_rounds(&s, k0, k1, 2, 4);
    siphash_bytes(&s, msg, sizeof(msg));
    cr_expect_eq(siphash_end(&s), 0xa129ca6149be45e5ull);
    for (size_t cut = 0; cut <= sizeof(msg); cut++) {
        siphash_init_rounds(&s, k0, k1, 2, 4);
        siphash_bytes(&s, msg, cut);
        for (size_t i = cut; i < sizeof(msg); i++)
            siphash_byte(&s, msg[i]);
        cr_expect_eq(siphash_end(&s), 0xa129ca6149be45e5ull, "cut at %zu", cut);
    }
    siphash_init(&s, k0, k1);
    siphash_bytes(&s, msg, sizeof(msg));
    uint64_t v13 = siphash_end(&s);
    cr_expect_neq(v13, 0xa129ca6149be45e5ull);
    for (size_t cut = 0; cut <= sizeof(msg); cut++) {
        siphash_init(&s, k0, k1);
        for (size_t i = 0; i < cut; i++)
            siphash_byte(&s, msg[i]);
        siphash_bytes(&s, msg + cut, sizeof(msg) - cut);
        cr_expect_eq(siphash_end(&s), v13, "cut at %zu", cut);
        for (size_t cut2 = cut; cut2 <= sizeof(msg); cut2++) {
            siphash_init(&s, k0, k1);
            siphash_bytes(&s, msg, cut);
            siphash_bytes(&s, msg + cut, cut2 - cut);
            siphash_bytes(&s, msg + cut2, sizeof(msg) - cut2);
            cr_expect_eq(siphash_end(&s), v13, "cut at %zu and %zu", cut, cut2);
        }
    }
    for (size_t cut = 0; cut <= 7; cut++) {
        uint64_t word = 0; /* the eight bytes of msg from cut, as a number */
        for (int i = 7; i >= 0; i--)
            word = word << 8 | msg[cut + (size_t)i];
        siphash_init(&s, k0, k1);
        siphash_bytes(&s, msg, cut);
        siphash_u64(&s, word);
        siphash_bytes(&s, msg + cut + 8, sizeof(msg) - cut - 8);
        cr_expect_eq(siphash_end(&s), v13, "a number fed after %zu bytes", cut);
    }
}

/* The text is mixed in eight bytes at a time: a change at any position of a word of any length,
 * or a word boundary moved, still gives another key; and keys of many names spread over the
 * low bits the statement cache indexes by. */
Test(sqlkey, every_byte_of_a_word_counts_and_keys_spread)
{
    char a[64], b[64];
    for (int len = 1; len <= 20; len++)
        for (int at = 0; at < len; at++) {
            memset(a, 'x', (size_t)len);
            memcpy(b, a, (size_t)len);
            b[at] = 'y';
            a[len] = b[len] = '\0';
            char qa[96], qb[96];
            snprintf(qa, sizeof(qa), "SELECT %s FROM t", a);
            snprintf(qb, sizeof(qb), "SELECT %s FROM t", b);
            cr_expect_neq(sqlkey(qa), sqlkey(qb), "length %d, byte %d", len, at);
        }
    cr_expect_neq(sqlkey("SELECT ab c"), sqlkey("SELECT a bc"));
    cr_expect_eq(keyed("SELECT a FROM t WHERE b = 1", 7),
                 keyed("SELECT a FROM t WHERE b = 'x'", 7));
    cr_expect_neq(keyed("SELECT a FROM t", 7), keyed("SELECT a FROM t", 8),
                  "another seed, other keys");
    cr_expect_neq(sqlkey("SELECT abcdefgh"), sqlkey("SELECT abcdefghabcdefgh"));
    /* a word's last bytes and its length never stand in for each other, whatever the seed */
    const char *pairs[][2] = {{"aaaa", "aaaai"},     {"abab", "ababar"}, {"abca", "abcabcy"},
                              {"abccde", "abcccdm"}, {"x", "xx"},        {"ab", "abb"}};
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
        for (uint64_t seed = 0; seed < 3; seed++) {
            char qa[64], qb[64];
            snprintf(qa, sizeof(qa), "SELECT * FROM %s", pairs[i][0]);
            snprintf(qb, sizeof(qb), "SELECT * FROM %s", pairs[i][1]);
            cr_expect_neq(keyed(qa, seed), keyed(qb, seed), "%s, %s", qa, qb);
        }
    enum { N = 4096, SLOTS = 1024 };
    static bool used[SLOTS];
    int distinct = 0;
    for (int i = 0; i < N; i++) {
        char q[64];
        snprintf(q, sizeof(q), "SELECT * FROM table_%d WHERE id = 1", i);
        uint64_t k = sqlkey(q) & (SLOTS - 1);
        distinct += !used[k];
        used[k] = true;
    }
    /* 4096 keys thrown at random into 1024 slots leave about 2% empty */
    cr_expect_gt(distinct, SLOTS * 95 / 100, "%d of %d slots used", distinct, SLOTS);
}

/* Random statements built of tokens, for the key's properties below. A constant never touches
 * a word after it (that would be another token: x'1' is a constant, x1 a word). */
#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))
enum tok_kind { TK_WORD, TK_CONST, TK_PARAM, TK_PUNCT, TK_KEPT };
static const char *const tk_words[] = {"select",
                                       "a",
                                       "x1",
                                       "e",
                                       "N",
                                       "b_2",
                                       "u",
                                       "FROM",
                                       "t$",
                                       "\xc3\xa9"
                                       "1",
                                       "caf\xc3\xa9",
                                       "n$1"};
static const char *const tk_consts[] = {"1",       "12.5",   "3e4",   ".5",      "'a'",
                                        "'it''s'", "E'\\n'", "$$d$$", "$t$q$t$", "X'1f'",
                                        "U&'x'",   "b'01'",  "''",    "0.25E-3"};
static const char *const tk_params[] = {"$1", "$2", "$10"};
static const char *const tk_puncts[] = {"=", ",", "(", ")", ";", "+", "::", "-", "/", "*", "."};
static const char *const tk_kept[] = {"-- c\n",  "/* it's */", "/* a /* 'b */ c' */",
                                      "-- 'c\r", "\"A b\"",    "\"x1\""};
static const char *const tk_spaces[] = {" ", "  ", "\n\t", "\r\n ", "\t", "\n"};

struct toks {
    int n;
    enum tok_kind kind[24];
    int pick[24];
};

static const char *tok_text(enum tok_kind k, int pick)
{
    switch (k) {
    case TK_WORD: return tk_words[pick % N_OF(tk_words)];
    case TK_CONST: return tk_consts[pick % N_OF(tk_consts)];
    case TK_PARAM: return tk_params[pick % N_OF(tk_params)];
    case TK_PUNCT: return tk_puncts[pick % N_OF(tk_puncts)];
    default: return tk_kept[pick % N_OF(tk_kept)];
    }
}

/* The text of t: tokens apart by white space (picked by spaces), or touching (picked by seed)
 * where a punctuation mark that cannot start or end a comment or number meets a non-word, or
 * where a word follows a constant or a quoted name. */
static void toks_text(const struct toks *t, unsigned seed, unsigned spaces, char *out, size_t outsz)
{
    size_t at = 0;
    for (int i = 0; i < t->n; i++) {
        const char *tx = tok_text(t->kind[i], t->pick[i]);
        if (i > 0) {
            bool plain_punct = (t->kind[i] == TK_PUNCT && t->pick[i] % 11 < 6) ||
                               (t->kind[i - 1] == TK_PUNCT && t->pick[i - 1] % 11 < 6);
            bool word_near = t->kind[i] == TK_WORD || t->kind[i - 1] == TK_WORD;
            bool word_after_value =
                t->kind[i] == TK_WORD &&
                (t->kind[i - 1] == TK_CONST ||
                 (t->kind[i - 1] == TK_KEPT && t->pick[i - 1] % N_OF(tk_kept) >= 4));
            seed = seed * 1103515245u + 12345u;
            spaces = spaces * 1103515245u + 12345u;
            if (!(((plain_punct && !word_near) || word_after_value) && (seed >> 16) % 2))
                at += (size_t)snprintf(out + at, outsz - at, "%s", tk_spaces[(spaces >> 8) % 6]);
        }
        at += (size_t)snprintf(out + at, outsz - at, "%s", tx);
    }
}

/* Over many random statements: another value for every constant and other white space give the
 * same key; another word, parameter number, comment or quoted name gives another. */
Test(sqlkey, only_constants_and_white_space_leave_the_key_unchanged)
{
    unsigned r = 42;
    for (int round = 0; round < 3000; round++) {
        struct toks t = {.n = 1 + round % 20};
        for (int i = 0; i < t.n; i++) {
            r = r * 1103515245u + 12345u;
            t.kind[i] = (enum tok_kind)((r >> 16) % 5);
            t.pick[i] = (int)((r >> 4) % 1000);
        }
        char a[1024], b[1024];
        toks_text(&t, r, r, a, sizeof(a));
        struct toks u = t;
        for (int i = 0; i < u.n; i++)
            if (u.kind[i] == TK_CONST)
                u.pick[i] += 1 + round % 13;
        toks_text(&u, r, r ^ 0x9e3779b9u, b, sizeof(b));
        cr_assert_eq(keyed(a, 5), keyed(b, 5), "\"%s\" and \"%s\"", a, b);
        int at = round % t.n;
        if (t.kind[at] == TK_CONST || t.kind[at] == TK_PUNCT)
            continue; /* (another punctuation mark may make a comment or a number) */
        u = t;
        u.pick[at] += 1;
        toks_text(&u, r, r, b, sizeof(b));
        if (strcmp(tok_text(t.kind[at], t.pick[at]), tok_text(u.kind[at], u.pick[at])) != 0)
            cr_assert_neq(keyed(a, 5), keyed(b, 5), "\"%s\" and \"%s\"", a, b);
    }
}

/* Text of n copies of unit between head and tail (malloc'd). */
static char *repeated(const char *head, const char *unit, int n, const char *tail)
{
    size_t len = strlen(head) + strlen(unit) * (size_t)n + strlen(tail) + 1;
    char *s = malloc(len);
    cr_assert_not_null(s);
    strcpy(s, head);
    for (int i = 0; i < n; i++)
        strcat(s, unit);
    strcat(s, tail);
    return s;
}

/* Hostile nesting parsed by PostgreSQL's parser would overflow the stack while being unpacked
 * (protobuf-c recurses per level): such trees are measured first and refused. */
Test(sqlinfo, deeply_nested_statements_are_refused_not_unpacked)
{
    const char *cases[][3] = {
        {"SELECT ", "NOT ", "true"}, {"SELECT 1", "+1", ""}, {"SELECT ", "- ", "1"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *sql = repeated(cases[i][0], cases[i][1], 20000, cases[i][2]);
        char err[200];
        PgQuery__ParseResult *t = sqlinfo_parse(sql, err, sizeof(err));
        cr_expect_null(t, "case %zu was unpacked", i);
        sqlinfo_free_tree(t);
        struct sql_analysis a;
        sqlinfo_analyze(sql, &a);
        cr_expect_eq(a.kind, SQL_UNKNOWN, "case %zu", i);
        sqlinfo_analysis_free(&a);
        free(sql);
    }
    char *ok = repeated("SELECT ", "NOT ", 100, "true");
    char err[200];
    PgQuery__ParseResult *t = sqlinfo_parse(ok, err, sizeof(err));
    cr_expect_not_null(t, "modest nesting parses: %s", err);
    sqlinfo_free_tree(t);
    free(ok);
}

/* A review crashed lakeproxy with SELECT 1+1+...+1 of 25,000 terms: libpg_query packs its tree
 * by recursion before packed_depth can look. Such texts are refused from their text; so are
 * the other chains that nest, up to the size limit, whatever hides them from a simple count
 * (commas around set operations, AND between CASEs, backslashes in strings). */
Test(sqlinfo, chains_too_deep_to_pack_are_refused_before_parsing)
{
    const char *cases[][3] = {
        {"SELECT 1", "+1", ""},
        {"SELECT 'a'", "||'a'", ""},
        {"SELECT ", "NOT ", "true"},
        {"SELECT 1", "::int", ""},
        {"SELECT 1, 2", " UNION SELECT 1, 2", ""},
        {"SELECT 1 FROM t", " JOIN t USING (a, b)", ""},
        {"SELECT ", "CASE WHEN a AND b THEN ", "1"},
        {"SELECT ", "(", "1"},
        {"SELECT ", "ARRAY[", "1"},
        {"SELECT 'x\\' ", "+1", ""},
        {"SELECT E'x\\'' ", "+1", "'"},
        {"SELECT 1 ", "COLLATE \"C\" ", ""},
        {"SELECT now() ", "AT TIME ZONE 'UTC' ", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t unit = strlen(cases[i][1]);
        int n = (int)((SQLINFO_MAX_TEXT - 64) / unit);
        char *sql = repeated(cases[i][0], cases[i][1], n, cases[i][2]);
        char err[200] = "";
        PgQuery__ParseResult *t = sqlinfo_parse(sql, err, sizeof(err));
        cr_expect_null(t, "case %zu (%d of \"%s\") was parsed", i, n, cases[i][1]);
        cr_expect(strstr(err, "nested too deeply") != NULL, "case %zu: %s", i, err);
        sqlinfo_free_tree(t);
        free(sql);
    }
}

/* A second review got past the first count: levels that close were dropped (a chain nested
 * in parentheses, 40 levels of 800 terms: depth 32,000, counted 840), a run of signs counted
 * once (-+-+...1 nests per sign), and t.end and t.and read as keywords. */
Test(sqlinfo, nesting_the_first_count_missed_is_refused)
{
    char *sql = malloc(SQLINFO_MAX_TEXT);
    cr_assert(sql);
    strcpy(sql, "SELECT ");
    for (int i = 0; i < 40; i++)
        strcat(sql, "(");
    strcat(sql, "1");
    size_t at = strlen(sql);
    for (int l = 0; l < 40; l++) {
        for (int i = 0; i < 780; i++, at += 2)
            memcpy(sql + at, "+1", 2);
        sql[at++] = ')';
    }
    sql[at] = '\0';
    cr_assert_lt(at, (size_t)SQLINFO_MAX_TEXT);
    char err[200] = "";
    PgQuery__ParseResult *t = sqlinfo_parse(sql, err, sizeof(err));
    cr_expect_null(t, "40 nested levels of 780 terms were parsed");
    sqlinfo_free_tree(t);
    free(sql);
    const char *cases[][3] = {
        {"SELECT ", "-+", "1"},
        {"SELECT 1", "+t.end+1", ""},
        {"SELECT 1", "+1+t.and+1", ""},
        {"SELECT 1", "+t . and+1", ""},
        {"SELECT ", "1 BETWEEN 1 AND NOT ", "1"}, /* (this AND belongs to BETWEEN: it nests) */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n = (int)((SQLINFO_MAX_TEXT - 64) / strlen(cases[i][1]));
        sql = repeated(cases[i][0], cases[i][1], n, cases[i][2]);
        t = sqlinfo_parse(sql, err, sizeof(err));
        cr_expect_null(t, "case %zu was parsed", i);
        cr_expect(strstr(err, "nested too deeply") != NULL, "case %zu: %s", i, err);
        sqlinfo_free_tree(t);
        free(sql);
    }
}

/* ... while long statements that do not nest parse: many rows, a long IN list, a CASE of
 * many branches, long AND and OR chains, many statements, and modest chains. */
Test(sqlinfo, long_flat_statements_still_parse)
{
    const char *cases[][3] = {
        {"INSERT INTO t VALUES (1, -1, 'a' || 'b')", ", (1, -1, 'a' || 'b')", ""},
        {"SELECT 1 WHERE a IN (1", ", -1", ")"},
        {"SELECT CASE a WHEN 1 THEN 'x'", " WHEN -1 THEN 'y' || 'z'", " END"},
        {"SELECT 1 WHERE a = 1", " AND b + 1 = 2", ""},
        {"SELECT 1 WHERE a = 1", " OR b + 1 = 2", ""},
        {"SELECT 1 UNION SELECT 2", "; SELECT 1 UNION SELECT 2", ""},
        {"SELECT f(1, 2)", ", g(a + b, c - d)", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *sql = repeated(cases[i][0], cases[i][1], 1000, cases[i][2]);
        char err[200] = "";
        PgQuery__ParseResult *t = sqlinfo_parse(sql, err, sizeof(err));
        cr_expect_not_null(t, "case %zu: %s", i, err);
        sqlinfo_free_tree(t);
        free(sql);
    }
    char *chain = repeated("SELECT 1", "+1", 400, "");
    char err[200] = "";
    PgQuery__ParseResult *t = sqlinfo_parse(chain, err, sizeof(err));
    cr_expect_not_null(t, "a chain of 400 parses: %s", err);
    sqlinfo_free_tree(t);
    free(chain);
}

Test(sqlinfo, texts_over_the_size_limit_are_not_parsed)
{
    char *sql = repeated("SELECT 1 WHERE 1 IN (1", ",1", SQLINFO_MAX_TEXT / 2, ")");
    char err[200];
    cr_expect_null(sqlinfo_parse(sql, err, sizeof(err)));
    cr_expect(strstr(err, "too long") != NULL, "%s", err);
    free(sql);
}

/* Pieces of random texts: bytes kept as they are, and constants of every kind. The kept ones
 * include what borders a constant in the scanner's eyes: words, a lone $ or a parameter, a
 * point, comments, quoted names, E U & and bytes from 128 that may or may not open one. */
static const char *const kept_pieces[] = {
    "SELECT",  " ",     "  ", "\n",  "\t",          "a",     "t1",       "x.y",
    ".",       "-",     "/",  "*",   "--c\n",       "--c\r", "/* c */",  "/* /* n */ ' */",
    "\"q 1\"", "\"'\"", "$1", "$",   ",",           "(",     ")",        "=",
    "+",       "E",     "e",  "U",   "&",           "b",     "\xc3\xa9", "$x$",
    "'",       "$1$",   "\"", "1a",  "_",           ";",     "::",       "\r",
    "\v",      "\f",    "u",  "$a1", "\xe2\x82\xac"};
static const char *const constant_pieces[] = {"5",          "12.5",      ".5",
                                              "1e3",        "1e+3",      "1.e-2",
                                              "0",          "'s'",       "'it''s'",
                                              "''",         "E'a\\'b'",  "e'x'",
                                              "B'101'",     "X'ff'",     "N'n'",
                                              "U&'u'",      "$$d$$",     "$t$d$t$",
                                              "'a\\'",      "E'\\\\'",   "77777777777",
                                              "'\xc3\xa9'", "$$$$",      "1e",
                                              "u&'v'",      "$a1$d$a1$", "$\xc3\xa9$d$\xc3\xa9$",
                                              "1e5.5",      ".5e-3"};

/* A random text: a prefix long or short enough to be memoised or not, then n pieces, each a
 * constant when the bit of shape says so, else a kept piece; the pieces picked from seed. */
static void random_text(char *out, size_t cap, unsigned seed, unsigned shape, int n,
                        unsigned constants_seed)
{
    static const char *const prefixes[] = {"SELECT abalance FROM pgbench_accounts WHERE ",
                                           "UPDATE t SET b = ", "", "SELECT a, b, c, d, e, f, g "};
    size_t len = (size_t)snprintf(out, cap, "%s", prefixes[seed % 4]);
    for (int i = 0; i < n && len < cap; i++) {
        seed = seed * 1103515245u + 12345u;
        constants_seed = constants_seed * 1103515245u + 12345u;
        const char *piece =
            shape >> i & 1
                ? constant_pieces[(constants_seed >> 16) %
                                  (sizeof(constant_pieces) / sizeof(*constant_pieces))]
                : kept_pieces[(seed >> 16) % (sizeof(kept_pieces) / sizeof(*kept_pieces))];
        len += (size_t)snprintf(out + len, cap - len, "%s", piece);
    }
}

/* The memo never gives a text another key than sqlkey_seeded does: random texts, then the
 * same texts with other constants (where a wrong key would come from: a hit), with one byte
 * changed, cut short or grown (a match that must be refused), all through one small memo (one
 * set: each text meets the four kept last), compared with the direct key. And it answers from
 * memory the texts that differ from one seen only in their constants. */
Test(sqlkey, the_memo_gives_every_text_the_key_it_would_have)
{
    struct sqlkey_secret secret = {11, 12};
    struct sqlkey_memo *m = sqlkey_memo_new(&secret, 1, NULL);
    cr_assert(m);
    char text[512], variant[512];
    uint64_t checked = 0;
    for (unsigned t = 0; t < 20000; t++) {
        unsigned shape = t * 2654435761u;
        int n = 1 + (int)(t % 12);
        random_text(text, sizeof(text), t, shape, n, t);
        cr_assert_eq(sqlkey_memo_key(m, text), sqlkey_seeded(text, &secret), "%s", text);
        for (unsigned v = 1; v < 4; v++) {
            random_text(variant, sizeof(variant), t, shape, n, t + v * 7919);
            size_t len = strlen(variant);
            if (v == 2 && len > 0) /* one byte changed */
                variant[(t * 31) % len] = "'$.5 E\"-*/e&\\"[t % 13];
            if (v == 3) /* cut short, or grown by a byte */
                t % 2 ? (void)(variant[len / 2] = '\0') : (void)strcat(variant, "'");
            cr_assert_eq(sqlkey_memo_key(m, variant), sqlkey_seeded(variant, &secret),
                         "seen: %s\nnow:  %s", text, variant);
            checked++;
        }
    }
    cr_expect_eq(checked, 60000);
    uint64_t hits = sqlkey_memo_hits(m);
    cr_expect_gt(hits, 1000, "texts that differ in constants only are answered from memory");
    const char *a = "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;";
    const char *b = "SELECT abalance FROM pgbench_accounts WHERE aid = 7;";
    sqlkey_memo_key(m, a);
    hits = sqlkey_memo_hits(m);
    cr_expect_eq(sqlkey_memo_key(m, b), sqlkey_seeded(b, &secret));
    cr_expect_eq(sqlkey_memo_hits(m), hits + 1);
    /* a text over 1 KiB is keyed, not kept: the same text again is keyed again */
    char big[1200];
    for (int v = 0; v < 2; v++) {
        int n = snprintf(big, sizeof(big), "%s%d AND note = '", b, v);
        memset(big + n, 'x', 1100);
        strcpy(big + n + 1100, "'");
        hits = sqlkey_memo_hits(m);
        cr_expect_eq(sqlkey_memo_key(m, big), sqlkey_seeded(big, &secret));
        cr_expect_eq(sqlkey_memo_hits(m), hits, "a long text is not kept");
    }
    sqlkey_memo_free(m);
}

/* Values written as bare words (SET values, options, trigger arguments) never reach the logged
 * text, in whichever statement of a text they stand: a data statement first does not let the
 * text skip the look for them. */
Test(sqlinfo, no_bare_value_in_any_statement_reaches_the_log)
{
    static const char *const cases[] = {
        "SELECT 1; ALTER ROLE bob SET search_path = secret",
        "SELECT 1; COPY t TO STDOUT (FORMAT csv, NULL secret)",
        "select 1;ALTER SYSTEM SET search_path = secret",
        "WITH x AS (SELECT 1) SELECT 1; SET app.key = secret",
        "VALUES (1); CREATE EXTENSION e VERSION secret",
        "TABLE t; ALTER DATABASE d SET app.key = secret",
        "ALTER EXTENSION e UPDATE TO secret",
        "CREATE OPERATOR === (procedure = f, leftarg = secret)",
        "ALTER TABLE t ALTER COLUMN c SET (n_distinct = secret)",
        "CREATE INDEX i ON t (c) WITH (fillfactor = secret)",
        "ALTER ROLE bob SET search_path = \"secret\"",
        "ALTER ROLE bob SET app.key TO DEFAULT; ALTER ROLE bob SET x = secret",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = secret AS 'SELECT 1'",
        "COPY t FROM STDIN WITH CSV HEADER DELIMITER AS 'x' NULL AS 'secret'",
        "CREATE DATABASE d WITH LOCALE = secret",
        "CREATE DATABASE d ICU_LOCALE secret",
        "SET TIME ZONE secret",
        "SET ROLE secret",
        "SET SESSION AUTHORIZATION secret",
        "SET search_path TO public, secret",
        "ALTER TABLE t SET (fillfactor = 10, toast.x = secret)",
        "CREATE SERVER s FOREIGN DATA WRAPPER w OPTIONS (host secret)",
        "EXPLAIN (ANALYZE, FORMAT secret) SELECT 1",
        "VACUUM (PARALLEL secret) t",
        "CREATE TEXT SEARCH CONFIGURATION c (PARSER = secret)",
        "ALTER TEXT SEARCH DICTIONARY d (STOPWORDS = secret)",
        "CREATE AGGREGATE a (int) (sfunc = f, stype = int, initcond = secret)",
        "CREATE PUBLICATION p FOR ALL TABLES WITH (publish = secret)",
        "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p WITH (slot_name = secret)",
        "CREATE ROLE r WITH PASSWORD 'secret'",
        "ALTER ROLE r VALID UNTIL 'secret'",
        "CREATE TYPE t AS ENUM ('secret')",
        "CREATE DOMAIN d AS int DEFAULT 31337 CHECK (VALUE > 31337)",
        "DO $x$ secret $x$",
        "SECURITY LABEL ON TABLE t IS 'secret'",
        "LOCK t; ALTER ROLE bob SET x = secret",
        "/* c */ SELECT 1; ALTER ROLE bob SET x = secret",
        "(SELECT 1); ALTER ROLE bob SET x = secret",
        "CREATE TABLE t (c int) WITH (fillfactor = (secret))",
        "ALTER TABLE t SET (fillfactor = secret.x)",
        "ALTER FOREIGN TABLE t OPTIONS (ADD secret2 secret)",
        "CREATE STATISTICS s ON a, b FROM t; ALTER ROLE bob SET x = secret",
        "SET x = secret; SELECT 1",
        "DECLARE c CURSOR FOR SELECT 1; SET x = secret",
        "SELECT set_config('x', 'secret', false)",
        "CREATE DATABASE d TEMPLATE secret",
        "IMPORT FOREIGN SCHEMA s FROM SERVER x INTO y OPTIONS (secret2 secret)",
        "CLUSTER; ALTER ROLE bob SET x = secret",
        "ALTER SYSTEM SET x = secret, secret",
        /* a trigger's arguments may be bare words: strings handed to the function */
        "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f(secret)",
        "CREATE TRIGGER tr AFTER UPDATE ON t EXECUTE PROCEDURE f('x', secret)",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sql_analysis l;
        if (!sqlinfo_analyze(cases[i], &l))
            continue;
        cr_expect(!l.normalized || !strstr(l.normalized, "secret"), "%s => %s", cases[i],
                  l.normalized);
        sqlinfo_analysis_free(&l);
    }
}
