/* test_prepared.c: the bookkeeping behind prepared statements in transaction pooling: proxy
 * names, the per-server cache with eviction, and the order of owed replies. */
#include <criterion/criterion.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "pipeline.h"
#include "prepared.h"

/* client_stmt_put, recorded? */
static bool put(struct client_stmts *s, const char *name, const uint8_t *rest, size_t len,
                const struct stmt_context *ctx, uint8_t effects, size_t max_bytes)
{
    struct client_stmt *st = NULL;
    enum stmt_put r = client_stmt_put(s, name, rest, len, ctx, effects, max_bytes, &st);
    cr_assert_eq(r == STMT_PUT_DONE, st && client_stmt_get(s, name) == st);
    return r == STMT_PUT_DONE;
}

/* client_stmt_put, refused for its limits (not for memory)? */
static bool past_limits(struct client_stmts *s, const char *name, const uint8_t *rest, size_t len,
                        const struct stmt_context *ctx, uint8_t effects, size_t max_bytes)
{
    struct client_stmt *st = NULL;
    return client_stmt_put(s, name, rest, len, ctx, effects, max_bytes, &st) ==
           STMT_PUT_PAST_LIMITS;
}

Test(prepared, same_text_and_types_give_the_same_proxy_name)
{
    char a[STMT_NAME_LEN], b[STMT_NAME_LEN], c[STMT_NAME_LEN];
    const uint8_t q1[] = "SELECT $1\0\0\1\0\0\0\x17", q2[] = "SELECT $1\0\0\1\0\0\0\x19";
    stmt_proxy_name(q1, sizeof(q1), NULL, a);
    stmt_proxy_name(q1, sizeof(q1), NULL, b);
    stmt_proxy_name(q2, sizeof(q2), NULL, c);
    cr_expect_str_eq(a, b);
    cr_expect_str_neq(a, c, "different parameter types are different statements");
    cr_expect_eq(strncmp(a, "lp_", 3), 0);
    /* 128 bits: no two texts a client could search out share a name */
    cr_expect_eq(strlen(a), 35);
    cr_expect_eq(strspn(a + 3, "0123456789abcdef"), 32);
}

/* The name is keyed with the process's secret: it is not the SHA-256 of the Parse body (the
 * rule before red team 22), so a client cannot work out the name of another client's future
 * statement and plant one of its own under it. */
Test(prepared, proxy_names_cannot_be_worked_out_from_the_text)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t q[] = "SELECT 'victim ' || $1::text\0\0\0";
    char name[STMT_NAME_LEN], unkeyed[36];
    cr_assert(stmt_proxy_name(q, sizeof(q), NULL, name));
    uint8_t h[SHA256_DIGEST_LENGTH];
    SHA256(q, sizeof(q), h);
    for (int i = 0; i < 16; i++) {
        unkeyed[2 * i] = hex[h[i] >> 4];
        unkeyed[2 * i + 1] = hex[h[i] & 15];
    }
    unkeyed[32] = '\0';
    cr_expect_str_neq(name + 3, unkeyed, "the name is the unkeyed SHA-256 of the text");
}

/* A statement's name depends on its context as well as its text: a statement parsed after its
 * server statement went stale (a new epoch), or under another search_path, DateStyle or role,
 * takes a name of its own; clients of one context still share one name. A context of nothing
 * set is the context-free name, and a setting set to "" is not one left unset. */
Test(prepared, the_statement_context_gives_the_same_text_another_name)
{
    const uint8_t q[] = "SELECT * FROM t\0\0\0", u[] = "SELECT * FROM u\0\0\0";
    cr_assert_str_eq(stmt_context_settings[0], "search_path");
    cr_assert_str_eq(stmt_context_settings[2], "DateStyle");
    const struct stmt_context none = {0}, epoch1 = {.epoch = 1}, path_a = {.values = {[0] = "a"}},
                              path_ab = {.values = {[0] = "a,b"}},
                              path_empty = {.values = {[0] = ""}}, dmy = {.values = {[2] = "DMY"}},
                              role_a = {.role = "a"}, split1 = {.values = {[0] = "ab", [1] = ""}},
                              split2 = {.values = {[0] = "a", [1] = "b"}};
    const struct stmt_context *ctxs[] = {NULL, &epoch1, &path_a, &path_ab, &path_empty,
                                         &dmy, &role_a, &split1, &split2};
    enum { N = sizeof(ctxs) / sizeof(ctxs[0]) };
    char names[N][STMT_NAME_LEN], again[STMT_NAME_LEN], other[STMT_NAME_LEN];
    for (int i = 0; i < N; i++) {
        cr_assert(stmt_proxy_name(q, sizeof(q), ctxs[i], names[i]));
        cr_expect_eq(strlen(names[i]), 35);
        for (int j = 0; j < i; j++)
            cr_expect_str_neq(names[i], names[j], "contexts %d and %d", i, j);
        cr_assert(stmt_proxy_name(q, sizeof(q), ctxs[i], again));
        cr_expect_str_eq(names[i], again, "one context, one name");
        cr_assert(stmt_proxy_name(u, sizeof(u), ctxs[i], other));
        cr_expect_str_neq(names[i], other, "another text");
    }
    cr_assert(stmt_proxy_name(q, sizeof(q), &none, again));
    cr_expect_str_eq(again, names[0]);
}

Test(prepared, client_names_are_replaced_and_removed)
{
    struct client_stmts s = {0};
    cr_assert(put(&s, "q", (const uint8_t *)"SELECT 1", 9, NULL, 0, 0));
    char first[STMT_NAME_LEN];
    memcpy(first, client_stmt_get(&s, "q")->proxy, STMT_NAME_LEN);
    cr_assert(put(&s, "q", (const uint8_t *)"SELECT 2", 9, NULL, 0, 0));
    cr_expect_str_neq(client_stmt_get(&s, "q")->proxy, first);
    cr_expect_eq(s.n, 1);
    client_stmt_remove(&s, "q");
    cr_expect_null(client_stmt_get(&s, "q"));
    client_stmts_clear(&s);
}

/* The first entry of a queue holding a reply of kind marked with statement st. */
static struct reply reply_marked(enum reply_kind kind, const struct client_stmt *st)
{
    struct reply_queue q = {0};
    rq_push(&q, kind, kind == RK_PARSE ? st->proxy : NULL);
    rq_mark_parse_of(&q, st);
    struct reply r = *rq_front(&q);
    rq_free(&q);
    return r;
}

/* The reply owed for the Parse that made client statement name (as the pipeline marks it). */
static struct reply parse_reply_of(const struct client_stmts *s, const char *name)
{
    return reply_marked(RK_PARSE, client_stmt_get(s, name));
}

/* A Parse PostgreSQL refused or skipped takes back the record it made, and only that one: a
 * later Parse of the same name made a new record, which stays. Gens are not given twice, even
 * after the statements are cleared (replies still owed may carry old ones). */
Test(prepared, a_refused_parse_removes_only_the_record_it_made)
{
    struct client_stmts s = {0};
    cr_assert(put(&s, "q", (const uint8_t *)"SELECT 1", 9, NULL, 0, 0));
    for (int i = 0; i < 40; i++) { /* enough to rechain: chains grow with the table */
        char name[32];
        snprintf(name, sizeof(name), "other%d", i);
        cr_assert(put(&s, name, (const uint8_t *)"SELECT 3", 9, NULL, 0, 0));
    }
    struct reply first = parse_reply_of(&s, "q");
    cr_assert(put(&s, "q", (const uint8_t *)"SELECT 2", 9, NULL, 0, 0));
    client_stmt_undo(&s, &first);
    cr_assert_not_null(client_stmt_get(&s, "q"), "a later Parse's record was removed");
    struct reply second = parse_reply_of(&s, "q");
    client_stmt_undo(&s, &second);
    cr_expect_null(client_stmt_get(&s, "q"));
    cr_expect_eq(s.n, 40, "only q's record went");
    cr_expect_not_null(client_stmt_get(&s, "other0"));
    cr_expect_not_null(client_stmt_get(&s, "other39"));
    uint32_t before_clear = client_stmt_get(&s, "other39")->gen;
    client_stmts_clear(&s);
    cr_assert(put(&s, "q", (const uint8_t *)"SELECT 1", 9, NULL, 0, 0));
    cr_expect_gt(client_stmt_get(&s, "q")->gen, before_clear);
    client_stmts_clear(&s);
}

/* A record's Parse is owed a reply until that reply, or a later one of the client's, has come:
 * across the wrap of the gen counter too. */
Test(prepared, a_record_is_in_doubt_until_its_parse_is_answered)
{
    struct client_stmts s = {0};
    s.last_gen = s.settled_gen = UINT32_MAX - 1; /* the next gens wrap (0 is skipped) */
    cr_assert(put(&s, "a", (const uint8_t *)"SELECT 1", 9, NULL, 0, 0));
    struct reply a = parse_reply_of(&s, "a");
    cr_assert(put(&s, "b", (const uint8_t *)"SELECT 2", 9, NULL, 0, 0));
    cr_assert(put(&s, "c", (const uint8_t *)"SELECT 3", 9, NULL, 0, 0));
    struct reply b = parse_reply_of(&s, "b");
    cr_assert_lt(b.gen, a.gen, "the counter did not wrap: the test tests nothing");
    cr_expect(client_stmt_owed(&s, client_stmt_get(&s, "a")));
    cr_expect(client_stmt_owed(&s, client_stmt_get(&s, "c")));
    client_stmt_settled(&s, &a);
    cr_expect_not(client_stmt_owed(&s, client_stmt_get(&s, "a")));
    cr_expect(client_stmt_owed(&s, client_stmt_get(&s, "b")), "b's reply has not come");
    client_stmt_settled(&s, &b);
    cr_expect_not(client_stmt_owed(&s, client_stmt_get(&s, "b")));
    cr_expect(client_stmt_owed(&s, client_stmt_get(&s, "c")));
    struct reply none = {0};
    client_stmt_settled(&s, &none); /* a reply of no Parse settles nothing */
    cr_expect(client_stmt_owed(&s, client_stmt_get(&s, "c")));
    client_stmts_clear(&s);
}

/* The reply a Close of name would carry (a made-up CloseComplete marked with the statement
 * client_stmt_park took). */
static struct reply close_reply_of(struct client_stmts *s, const char *name)
{
    const struct client_stmt *st = client_stmt_park(s, name);
    cr_assert_not_null(st, "nothing to park for %s", name);
    return reply_marked(RK_FAKE_CLOSE, st);
}

/* A statement a Close parked answers to no name; when the Close is done it goes, when it is
 * skipped it comes back, unless a Parse that was not skipped took the name meanwhile. Its
 * bytes are held until it goes. */
Test(prepared, a_parked_statement_goes_or_comes_back_with_its_close)
{
    struct client_stmts s = {0};
    cr_assert(put(&s, "a", (const uint8_t *)"SELECT 1", 9, NULL, 0, 0));
    size_t bytes = s.bytes;
    struct reply close_a = close_reply_of(&s, "a");
    cr_expect_null(client_stmt_get(&s, "a"));
    cr_expect_eq(s.bytes, bytes, "a parked statement's bytes are still held");
    cr_assert(put(&s, "a", (const uint8_t *)"SELECT 2", 9, NULL, 0, 0)); /* skipped too */
    struct reply parse_b = parse_reply_of(&s, "a");
    client_stmt_unpark(&s, &close_a, true);
    client_stmt_undo(&s, &parse_b);
    client_stmt_restore_skipped(&s);
    cr_assert_not_null(client_stmt_get(&s, "a"), "the skipped Close's statement is back");
    cr_expect_str_eq((const char *)client_stmt_get(&s, "a")->parse_rest, "SELECT 1");
    /* skipped, but a Parse that ran took the name: the parked one goes */
    close_a = close_reply_of(&s, "a");
    cr_assert(put(&s, "a", (const uint8_t *)"SELECT 3", 9, NULL, 0, 0));
    client_stmt_unpark(&s, &close_a, true);
    client_stmt_restore_skipped(&s);
    cr_expect_str_eq((const char *)client_stmt_get(&s, "a")->parse_rest, "SELECT 3");
    cr_expect_eq(s.n, 1);
    cr_expect_eq(s.n_closing, 0);
    /* done: it goes; a second Close of the name carries the same statement */
    close_a = close_reply_of(&s, "a");
    struct reply again = close_reply_of(&s, "a");
    cr_expect_eq(again.gen, close_a.gen);
    client_stmt_unpark(&s, &close_a, false);
    client_stmt_unpark(&s, &again, false);
    cr_expect_eq(s.n, 0);
    cr_expect_eq(s.bytes, 0);
    /* the server lost: every parked statement goes */
    cr_assert(put(&s, "b", (const uint8_t *)"SELECT 4", 9, NULL, 0, 0));
    cr_assert(put(&s, "c", (const uint8_t *)"SELECT 5", 9, NULL, 0, 0));
    close_reply_of(&s, "b");
    client_stmts_drop_closing(&s);
    cr_expect_null(client_stmt_get(&s, "b"));
    cr_expect_not_null(client_stmt_get(&s, "c"));
    cr_expect_eq(s.n, 1);
    cr_expect_eq(s.n_closing, 0);
    /* at most CLIENT_STMT_CLOSING_MAX close at once: the next is not parked */
    for (int i = 0; i <= CLIENT_STMT_CLOSING_MAX; i++) {
        cr_assert(put(&s, "d", (const uint8_t *)"SELECT 6", 9, NULL, 0, 0));
        if (i < CLIENT_STMT_CLOSING_MAX)
            close_reply_of(&s, "d");
        else
            cr_expect_null(client_stmt_park(&s, "d"), "parked past the bound");
    }
    cr_expect_eq(s.n_closing, CLIENT_STMT_CLOSING_MAX);
    client_stmts_clear(&s);
}

/* A quarter of a client's text budget. */
static uint8_t big[CLIENT_STMT_BYTES / 4];

/* Puts statements big0, big1 and big2 of big's text each: three quarters of the budget. */
static void fill_text_budget(struct client_stmts *s)
{
    char name[16];
    memset(big, 'a', sizeof(big));
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "big%d", i);
        cr_assert(put(s, name, big, sizeof(big), NULL, 0, 0));
    }
}

/* Many statements are found, replaced and removed in any order (the last one moving into each
 * hole), and a client's statements hold at most CLIENT_STMT_MAX of them and CLIENT_STMT_BYTES
 * of text: past either, put refuses, and room freed can be used again. */
Test(prepared, client_statements_stay_findable_and_within_their_budget)
{
    struct client_stmts s = {0};
    char name[32];
    enum { N = 3000 };
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        cr_assert(put(&s, name, (const uint8_t *)name, strlen(name) + 1, NULL, 0, 0));
    }
    for (int i = 0; i < N; i += 3) {
        snprintf(name, sizeof(name), "s%d", i);
        client_stmt_remove(&s, name);
    }
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        const struct client_stmt *st = client_stmt_get(&s, name);
        if (i % 3 == 0) {
            cr_expect_null(st, "%s was removed", name);
        } else {
            cr_assert_not_null(st, "%s is there", name);
            cr_expect_str_eq((const char *)st->parse_rest, name);
        }
    }
    client_stmts_clear(&s);
    for (int i = 0; i < CLIENT_STMT_MAX; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        cr_assert(put(&s, name, (const uint8_t *)"x", 1, NULL, 0, 0), "%s", name);
    }
    cr_expect(past_limits(&s, "one_more", (const uint8_t *)"x", 1, NULL, 0, 0));
    cr_expect(put(&s, "s7", (const uint8_t *)"y", 1, NULL, 0, 0), "replacing fits");
    client_stmts_clear(&s);
    fill_text_budget(&s);
    cr_expect(past_limits(&s, "big3", big, sizeof(big), NULL, 0, 0), "past the text budget");
    cr_expect(past_limits(&s, "big0", big, sizeof(big) * 2, NULL, 0, 0),
              "a replacement past the budget");
    client_stmt_remove(&s, "big1");
    cr_expect(put(&s, "big3", big, sizeof(big), NULL, 0, 0), "room freed is used again");
    cr_expect(put(&s, "huge", big, sizeof(big), 0, 0, 2 * CLIENT_STMT_BYTES),
              "a larger max_message_size raises the budget");
    client_stmts_clear(&s);
}

/* A client at its budget that closes a statement and prepares another in one pipeline (the
 * Close still owed its reply) is not refused the Parse: a closing statement is on its way out
 * and counts against neither budget; if an error skips the Close, it comes back all the same. */
Test(prepared, closing_statements_leave_room_in_the_budgets)
{
    struct client_stmts s = {0};
    char name[32];
    for (int i = 0; i < CLIENT_STMT_MAX; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        cr_assert(put(&s, name, (const uint8_t *)"x", 1, NULL, 0, 0), "%s", name);
    }
    cr_assert(past_limits(&s, "one_more", (const uint8_t *)"x", 1, NULL, 0, 0));
    struct reply close_s7 = close_reply_of(&s, "s7");
    cr_expect(put(&s, "one_more", (const uint8_t *)"x", 1, NULL, 0, 0),
              "a closing statement leaves its place in the count");
    cr_expect(past_limits(&s, "two_more", (const uint8_t *)"x", 1, NULL, 0, 0));
    client_stmt_unpark(&s, &close_s7, true);
    client_stmt_restore_skipped(&s);
    cr_expect_not_null(client_stmt_get(&s, "s7"), "a skipped Close's statement comes back");
    cr_expect_eq(s.closing_bytes, 0);
    client_stmts_clear(&s);

    fill_text_budget(&s);
    cr_assert(past_limits(&s, "big3", big, sizeof(big), NULL, 0, 0));
    struct reply close_big0 = close_reply_of(&s, "big0");
    cr_expect(put(&s, "big3", big, sizeof(big), NULL, 0, 0),
              "a closing statement's text leaves room in the text budget");
    cr_expect(past_limits(&s, "big4", big, sizeof(big), NULL, 0, 0));
    client_stmt_unpark(&s, &close_big0, false);
    cr_expect_eq(s.closing_bytes, 0);
    cr_expect_eq(s.bytes, 3 * (sizeof(big) + 4), "names and texts of big1..big3");
    cr_expect(past_limits(&s, "big4", big, sizeof(big), NULL, 0, 0), "the budget holds");
    /* closing ones have a budget of their own, as large: memory stays bounded */
    close_reply_of(&s, "big1");
    close_reply_of(&s, "big2");
    close_reply_of(&s, "big3");
    cr_assert(put(&s, "big4", big, sizeof(big), NULL, 0, 0));
    cr_assert(put(&s, "big5", big, sizeof(big), NULL, 0, 0));
    close_reply_of(&s, "big4");
    close_reply_of(&s, "big5");
    cr_expect(put(&s, "big6", big, sizeof(big), NULL, 0, 0));
    cr_expect(put(&s, "big7", big, sizeof(big), NULL, 0, 0));
    cr_expect(past_limits(&s, "big8", big, sizeof(big), NULL, 0, 0),
              "five quarters closing and three open: past twice the budget");
    client_stmts_clear(&s);
}

Test(prepared, server_cache_evicts_the_least_recently_used)
{
    static struct server_stmts s;
    char name[STMT_NAME_LEN], evicted[STMT_NAME_LEN];
    bool did;
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < SERVER_STMT_CACHE; i++) {
        snprintf(name, sizeof(name), "lp_%d", i);
        server_stmt_add(&s, name, evicted, &did);
        cr_assert_not(did);
    }
    cr_assert_geq(server_stmt_find(&s, "lp_0"), 0); /* lp_0 used again: lp_1 is now oldest */
    server_stmt_add(&s, "lp_new", evicted, &did);
    cr_expect(did);
    cr_expect_str_eq(evicted, "lp_1");
    cr_expect_lt(server_stmt_find(&s, "lp_1"), 0);
    cr_expect_geq(server_stmt_find(&s, "lp_new"), 0);
    server_stmt_remove(&s, "lp_new");
    cr_expect_lt(server_stmt_find(&s, "lp_new"), 0);
}

Test(prepared, replies_finish_swallow_and_fail_in_order)
{
    struct reply_queue q = {0};
    rq_push(&q, RK_DROP_PARSE, "lp_a");
    rq_push(&q, RK_BIND, NULL);
    rq_push(&q, RK_EXECUTE, NULL);
    rq_push(&q, RK_SYNC, NULL);
    cr_expect_eq(rq_classify(&q, '1'), RQ_SWALLOW, "the proxy's own Parse reply is hidden");
    rq_pop(&q);
    cr_expect_eq(rq_classify(&q, '2'), RQ_FINISH);
    rq_pop(&q);
    cr_expect_eq(rq_classify(&q, 'D'), RQ_PASS, "rows belong to the Execute in progress");
    cr_expect_eq(rq_classify(&q, 'N'), RQ_PASS, "notices are asynchronous");
    cr_expect_eq(rq_classify(&q, 'C'), RQ_FINISH);
    rq_pop(&q);
    cr_expect_eq(rq_classify(&q, 'Z'), RQ_FINISH);
    rq_pop(&q);
    cr_expect_null(rq_front(&q));
    rq_free(&q);
}

static int failed_parses, skipped_fakes;
static void count_failed(void *arg, const struct reply *r)
{
    (void)arg;
    if (r->kind == RK_FAKE_PARSE) {
        cr_expect_eq(r->gen, 7, "the skipped made-up Parse names its client's statement");
        skipped_fakes++;
        return;
    }
    cr_expect_str_eq(r->stmt, "lp_b");
    failed_parses++;
}

/* An eviction's Close skipped after an error is reported (the server's cache is then wrong). */
static int skipped_closes;
static void count_skipped_close(void *arg, const struct reply *r)
{
    (void)arg;
    skipped_closes += r->kind == RK_DROP_CLOSE;
}

Test(prepared, a_skipped_eviction_close_is_reported)
{
    struct reply_queue q = {0};
    rq_push(&q, RK_EXECUTE, NULL);
    rq_push(&q, RK_DROP_CLOSE, NULL);
    rq_push(&q, RK_PARSE, NULL);
    rq_push(&q, RK_SYNC, NULL);
    cr_expect_eq(rq_classify(&q, 'E'), RQ_FAIL);
    rq_fail_until_sync(&q, count_skipped_close, NULL);
    cr_expect_eq(skipped_closes, 1);
    cr_expect_eq(rq_front(&q)->kind, RK_SYNC);
    rq_free(&q);
}

Test(prepared, an_error_skips_everything_up_to_sync)
{
    struct reply_queue q = {0};
    rq_push(&q, RK_PARSE, "lp_b");
    rq_push(&q, RK_FAKE_PARSE, NULL);
    struct client_stmt st = {.gen = 7};
    rq_mark_parse_of(&q, &st);
    rq_push(&q, RK_BIND, NULL);
    rq_push(&q, RK_SYNC, NULL);
    rq_push(&q, RK_QUERY, NULL);
    cr_expect_eq(rq_classify(&q, 'E'), RQ_FAIL);
    rq_fail_until_sync(&q, count_failed, NULL);
    cr_expect_eq(failed_parses, 1, "the failed Parse leaves the server's cache");
    cr_expect_eq(skipped_fakes, 1, "the skipped made-up Parse is reported: its client forgets it");
    cr_expect_eq(rq_front(&q)->kind, RK_SYNC);
    cr_expect_eq(rq_classify(&q, 'Z'), RQ_FINISH);
    rq_pop(&q);
    cr_expect_eq(rq_classify(&q, 'E'), RQ_PASS, "a simple query's error is followed by its Z");
    rq_free(&q);
}

Test(prepared, queue_grows_past_its_first_allocation_in_order)
{
    struct reply_queue q = {0};
    for (int i = 0; i < 100; i++)
        cr_assert(rq_push(&q, i % 2 ? RK_BIND : RK_EXECUTE, NULL));
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(rq_front(&q)->kind, i % 2 ? RK_BIND : RK_EXECUTE);
        rq_pop(&q);
    }
    rq_free(&q);
}

/* The Syncs a client sent during a copy-in (PostgreSQL ignores them) leave the queue, the
 * front and every other entry staying, in order, also when the queue wraps around. */
Test(prepared, syncs_sent_during_a_copy_leave_the_queue_in_order)
{
    for (int wrap = 0; wrap < 12; wrap++) {
        struct reply_queue q = {0};
        for (int i = 0; i < wrap; i++) { /* move the head round the ring first */
            cr_assert(rq_push(&q, RK_PARSE, NULL));
            rq_pop(&q);
        }
        /* front (copy 0), then copy 1's run: Parse, Sync, Sync, Describe, Sync; then copy 2's */
        enum reply_kind kinds[] = {RK_SYNC,     RK_PARSE, RK_SYNC, RK_SYNC,
                                   RK_DESCRIBE, RK_SYNC,  RK_SYNC, RK_PARSE};
        uint32_t counts[] = {1, 1, 1, 1, 1, 1, 2, 2};
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
            q.copy_dones = counts[i];
            cr_assert(rq_push(&q, kinds[i], NULL));
        }
        cr_expect_eq(rq_drop_copy_syncs(&q, 1), 3, "wrap %d", wrap);
        enum reply_kind left[] = {RK_SYNC, RK_PARSE, RK_DESCRIBE, RK_SYNC, RK_PARSE};
        uint32_t left_counts[] = {1, 1, 1, 2, 2};
        cr_assert_eq(q.len, 5);
        for (size_t i = 0; i < 5; i++) {
            const struct reply *r = rq_front(&q);
            cr_expect_eq(r->kind, left[i], "wrap %d, entry %zu", wrap, i);
            cr_expect_eq(r->copy_dones, left_counts[i], "wrap %d, entry %zu", wrap, i);
            rq_pop(&q);
        }
        rq_free(&q);
    }
}

/* A statement named again for its client's settings of now: the same settings keep its name,
 * other settings give the name a client of those settings gets when it prepares the text, and
 * the epoch stays the one the statement was named in. */
/* Session pooling: a CopyInResponse answers the next Execute to end, and the Syncs it makes
 * the server ignore are those sent at that Execute's CopyDone count, not the count of the Sync
 * that happens to be first in the queue. */
Test(prepared, the_next_execute_to_end_gives_the_copys_count)
{
    struct reply_queue q = {0};
    uint32_t k = 99;
    cr_expect_not(rq_next_execute_copy_dones(&q, &k), "no Execute sent");
    cr_assert(rq_note_execute(&q)); /* COPY at count 0 */
    q.copy_dones++;                 /* its CopyDone */
    cr_assert(rq_note_execute(&q)); /* SELECT at count 1 */
    cr_assert(rq_note_execute(&q)); /* COPY at count 1 */
    q.copy_dones++;
    rq_push(&q, RK_SYNC, NULL); /* the batch's Sync, at count 2 */
    cr_assert(rq_next_execute_copy_dones(&q, &k));
    cr_expect_eq(k, 0, "the first COPY's count");
    rq_execute_done(&q); /* its CommandComplete */
    cr_assert(rq_next_execute_copy_dones(&q, &k));
    cr_expect_eq(k, 1);
    rq_execute_done(&q);
    cr_assert(rq_next_execute_copy_dones(&q, &k));
    cr_expect_eq(k, 1, "the second COPY's count");
    rq_executes_settled(&q, rq_front(&q)->execs); /* the Sync's ReadyForQuery */
    rq_pop(&q);
    cr_expect_not(rq_next_execute_copy_dones(&q, &k), "every Execute is over");
    cr_assert(rq_note_execute(&q));
    cr_assert(rq_next_execute_copy_dones(&q, &k));
    cr_expect_eq(k, 2);
    rq_free(&q);
}

/* An error skips the rest of its batch's Executes: the Sync's ReadyForQuery settles them. */
Test(prepared, executes_skipped_after_an_error_are_settled_by_the_sync)
{
    struct reply_queue q = {0};
    uint32_t k;
    for (int i = 0; i < 3; i++)
        cr_assert(rq_note_execute(&q));
    rq_push(&q, RK_SYNC, NULL);
    q.copy_dones++; /* a stray CopyDone: the next batch's Executes are at count 1 */
    cr_assert(rq_note_execute(&q));
    rq_push(&q, RK_SYNC, NULL);
    rq_execute_done(&q); /* the first ended, the second failed, the third was skipped */
    rq_executes_settled(&q, rq_front(&q)->execs);
    rq_pop(&q);
    cr_assert(rq_next_execute_copy_dones(&q, &k));
    cr_expect_eq(k, 1);
    rq_free(&q);
}

/* Many COPYs pipelined beyond what is kept: unknown, never a wrong count. */
Test(prepared, too_many_copies_in_flight_are_unknown_not_wrong)
{
    struct reply_queue q = {0};
    for (int i = 0; i < EXEC_RUNS; i++) {
        cr_assert(rq_note_execute(&q));
        q.copy_dones++;
    }
    cr_expect_not(rq_note_execute(&q), "the runs are full");
    uint32_t k;
    cr_assert(rq_next_execute_copy_dones(&q, &k));
    cr_expect_eq(k, 0);
    rq_free(&q);
}

Test(prepared, a_statement_named_again_takes_the_name_of_the_settings_of_now)
{
    struct client_stmts s = {0};
    const uint8_t text[] = "SELECT '01/02/2024'::date\0\0\0";
    struct stmt_context mdy = {.epoch = 3, .values = {[2] = "ISO, MDY"}};
    struct stmt_context dmy = {.epoch = 3, .values = {[2] = "ISO, DMY"}};
    cr_assert(put(&s, "s", text, sizeof(text), &mdy, 0, 0));
    const struct client_stmt *st = client_stmt_get(&s, "s");
    char first[STMT_NAME_LEN], want[STMT_NAME_LEN];
    memcpy(first, st->proxy, sizeof(first));
    struct stmt_context now = {.epoch = 4, .values = {[2] = "ISO, MDY"}};
    cr_assert(client_stmt_rename(&s, st, &now));
    cr_expect_str_eq(st->proxy, first, "the same settings (the epoch is the statement's own)");
    now = (struct stmt_context){.epoch = 9, .values = {[2] = "ISO, DMY"}};
    cr_assert(client_stmt_rename(&s, st, &now));
    cr_assert(stmt_proxy_name(text, sizeof(text), &dmy, want));
    cr_expect_str_eq(st->proxy, want, "a DMY client's name for the text, in the statement's epoch");
    cr_expect_str_neq(st->proxy, first);
    client_stmts_clear(&s);
}
