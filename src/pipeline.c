/* pipeline.c: transaction-mode rewriting of Parse/Bind/Describe/Close for named prepared
 * statements, and the reply queue that keeps made-up and swallowed replies in order. */
#include "pipeline.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "client.h"
#include "conn.h"
#include "guard.h"
#include "log.h"
#include "maskwire.h"
#include "monotime.h"
#include "params.h"
#include "policy.h"
#include "poolmode.h"
#include "proto.h"
#include "qtrack.h"
#include "relay.h"
#include "rls.h"
#include "server.h"
#include "sqllex.h"
#include "stmtsql.h"
#include "textscan.h"

static struct evbuffer *to_server(struct server *s)
{
    return conn_output(s->bev);
}

static struct evbuffer *to_client(struct server *s)
{
    return conn_output(s->client->bev);
}

/* An answer of the proxy's own could not be written to the client (out of memory): the pump
 * fails (relay_note_lost) rather than leave the client waiting for it; false, for the caller's
 * RV_ERROR. */
static bool answer_lost(void)
{
    relay_note_lost();
    return false;
}

/* Pops the front reply, which has come: a client Parse's record is no longer in doubt, a
 * statement its Close parked goes. */
static void pop_reply(struct server *s)
{
    const struct reply *f = rq_front(&s->replies);
    if (f && s->client && rk_parks(f->kind))
        client_stmt_unpark(&s->client->stmts, f, false);
    else if (f && s->client)
        client_stmt_settled(&s->client->stmts, f);
    rq_pop(&s->replies);
}

/* Writes the replies the proxy owes the client now that they are at the front; false when
 * out of memory (none after the lost one is written). */
static bool emit_fakes(struct server *s)
{
    static const uint8_t dealloc[] = {'C', 0,   0,   0,   15,  'D', 'E', 'A',
                                      'L', 'L', 'O', 'C', 'A', 'T', 'E', 0};
    const struct reply *f;
    while ((f = rq_front(&s->replies)) && rk_is_fake(f->kind)) {
        uint8_t msg[5] = {f->kind == RK_FAKE_PARSE ? '1' : '3', 0, 0, 0, 4};
        bool command = f->kind == RK_FAKE_DEALLOCATE;
        if (evbuffer_add(to_client(s), command ? dealloc : msg,
                         command ? sizeof(dealloc) : sizeof(msg)) != 0)
            return answer_lost();
        if (command) /* (the statistics see it as the Execute's answer) */
            qtrack_server_msg(s->client, 'C', sizeof(dealloc) - 5, dealloc + 5);
        pop_reply(s);
    }
    return true;
}

/* The verdict on a message the proxy answered itself (a made-up reply is now due): dropped,
 * or an error when the answer could not be written. */
static enum relay_verdict answered(struct server *s)
{
    return emit_fakes(s) ? RV_DROP : RV_ERROR; /* (the pump says why: relay_out_of_memory) */
}

static bool send_buf(struct evbuffer *out, struct buf *b)
{
    bool ok = !b->failed && evbuffer_add(out, b->data, b->len) == 0;
    buf_free(b);
    return ok;
}

/* The words of the keyword scan every statement passes (scan_statement). */
static const char *const forgetting_words[] = {"deallocate",
                                               "discard",
                                               "listen",
                                               "transform_null_equals",
                                               "array_nulls",
                                               "xmloption",
                                               "timezone_abbreviations",
                                               "lc_monetary",
                                               "reset",
                                               "default",
                                               "local",
                                               "datestyle",
                                               "zone",
                                               "intervalstyle",
                                               "search_path",
                                               "schema",
                                               "client_encoding",
                                               "names",
                                               "standard_conforming_strings",
                                               "set_config",
                                               "role",
                                               "authorization",
                                               "begin",
                                               "start",
                                               "chain",
                                               "_timeout",
                                               "default_transaction",
                                               "extra_float",
                                               "bytea_output",
                                               "characteristics",
                                               "pg_settings"};
TEXTSCAN_SET_OF(forgetting_set, forgetting_words)
/* FW_CONTEXT: words of the ways to change a setting PostgreSQL parses statements by
 * (stmt_context_settings: SET TIME ZONE, SET NAMES, SET SCHEMA, set_config, RESET, DISCARD,
 * and the role, whose name "$user" in search_path reads); FW_OPENS: of the ways to open a
 * transaction block (says_open); FW_UNREPORTED: every word of unreported_words, and
 * pg_settings (what may_set_unreported needs one of) */
enum {
    FW_DEALLOCATE = 1,
    FW_DISCARD = 2,
    FW_LISTEN = 4,
    FW_PARSED_BY = 0xf8,
    FW_RESET = 0x700,
    FW_CONTEXT = 0x3ffb02,
    FW_OPENS = 0x1c00000,
    FW_UNREPORTED = 0x7e08c100
};

/* Is the n-byte word at p, in text, one of its own (no identifier byte either side)? */
static bool whole_word_at(const char *text, const char *p, size_t n)
{
    return (p == text || !sqllex_word_byte(p[-1])) && !sqllex_word_byte(p[n]);
}

/* The first place at or after from (in text) where word (lower case) stands, in any case, as a
 * word of its own; NULL when none. */
static const char *word_in(const char *text, const char *from, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = strcasestr(from, word); p; p = strcasestr(p + 1, word))
        if (whole_word_at(text, p, n))
            return p;
    return NULL;
}

/* Does the word at p (in text) follow word before (lower case; white space between)? */
static bool follows_word(const char *text, const char *p, const char *before)
{
    size_t n = strlen(before);
    while (p > text && isspace((unsigned char)p[-1]))
        p--;
    return (size_t)(p - text) >= n && strncasecmp(p - n, before, n) == 0 &&
           whole_word_at(text, p - n, n);
}

/* Does the DEFAULT at p (in text) set a setting to its default: after TO, '=' or TIME ZONE? */
static bool default_is_a_value(const char *text, const char *p)
{
    const char *q = p;
    while (q > text && isspace((unsigned char)q[-1]))
        q--;
    return (q > text && q[-1] == '=') || follows_word(text, p, "to") ||
           follows_word(text, p, "zone");
}

/* Does text, which the keyword scan found may reset (FW_RESET | FW_DISCARD), say RESET or
 * DISCARD, or TO DEFAULT, = DEFAULT, ZONE DEFAULT or ZONE LOCAL, each a word of its own?
 * Those are how a setting goes back to its default (RESET, SET ... TO DEFAULT, SET TIME ZONE
 * LOCAL, DISCARD ALL; in a DO block's text too). DEFAULT elsewhere (INSERT ... DEFAULT
 * VALUES, a column default), SET LOCAL, and names that hold the words (is_default,
 * user_resets) do not. */
static bool says_reset(const char *text)
{
    static const char *const words[] = {"reset", "discard", "default", "local"};
    for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++)
        for (const char *p = word_in(text, text, words[w]); p; p = word_in(text, p + 1, words[w]))
            if (w < 2 || (w == 2 && default_is_a_value(text, p)) || follows_word(text, p, "zone"))
                return true;
    return false;
}

/* Does text, of which the keyword scan found the words found, say how a setting goes back to
 * its default (says_reset)? */
static bool found_reset(uint32_t found, const char *text)
{
    return (found & (FW_RESET | FW_DISCARD)) && says_reset(text);
}

/* Does text start with DO or CALL, whose code (out of sight) may change any setting? */
static bool runs_unseen_code(const char *text)
{
    const char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    char first = (char)(*p | 0x20);
    return (first == 'd' && strncasecmp(p, "do", 2) == 0 && !sqllex_word_byte(p[2])) ||
           (first == 'c' && strncasecmp(p, "call", 4) == 0 && !sqllex_word_byte(p[4]));
}

/* May text, which the keyword scan found may (FW_OPENS), open a transaction block: does it say
 * BEGIN or START (or CHAIN: COMMIT AND CHAIN), each a word of its own, anywhere? (Also in a
 * string, a comment or a DO block's code: a server lost under such a text closes its client,
 * which is only ever safe: server.c loss_for_client.) */
static bool says_open(const char *text)
{
    return word_in(text, text, "begin") || word_in(text, text, "start") ||
           word_in(text, text, "chain");
}

/* What the keyword scan of a statement's text finds it may do (scan_statement). */
struct statement_marks {
    bool forgets; /* DEALLOCATE or DISCARD, in any case, anywhere */
    bool dealloc; /* DEALLOCATE */
    bool retires; /* LISTEN (its channel stays on the server, where the notifications would
                     reach whichever client has it next) or code out of sight (DO, CALL: it may
                     change the server's statements): its server retires after it */
    bool resets;  /* it may return a setting to its default (found_reset: STMT_MAY_RESET) */
    bool context; /* it may change a setting PostgreSQL parses by, tracked or not
                     (STMT_CONTEXT) */
    bool opens;   /* it may open a transaction block (says_open: STMT_OPENS) */
    bool sets;    /* it may change a tracked setting the server does not report
                     (may_set_unreported: STMT_SETS) */
};

static bool may_set_unreported(const char *sql);

/* The TEXT_* facts of NUL-terminated query text but TEXT_RESERVED_PREFIX, in one pass of the
 * keyword scan. (Each is found by words of letters and '_', or by bytes no number holds, as
 * the worker's memo of text shapes needs: sqlkey_facts_fn.) A DO block or a CALL retires its
 * server when its client lets go: its code, out of sight, may DEALLOCATE or PREPARE by dynamic
 * SQL, lakeproxy's own names included (read from pg_prepared_statements), and so replace
 * another client's statement on that server (red team 20). */
static uint32_t text_marks(const char *text)
{
    uint32_t found = textscan_set_find(&forgetting_set, text, 0);
    bool unseen = runs_unseen_code(text);
    return ((found & (FW_DEALLOCATE | FW_DISCARD)) ? TEXT_FORGETS : 0) |
           ((found & FW_DEALLOCATE) ? TEXT_DEALLOC : 0) |
           ((found & FW_LISTEN) || unseen ? TEXT_RETIRES : 0) |
           (found_reset(found, text) ? TEXT_RESETS : 0) |
           ((found & FW_CONTEXT) || unseen ? TEXT_CONTEXT : 0) |
           ((found & FW_OPENS) && says_open(text) ? TEXT_OPENS : 0) |
           (((found & FW_UNREPORTED) || unseen) && may_set_unreported(text) ? TEXT_SETS : 0) |
           ((found & FW_PARSED_BY) ? TEXT_PARSED_BY : 0);
}

uint32_t pipeline_text_facts(const char *sql)
{
    return text_marks(sql) | (guard_mentions_reserved_prefix(sql) ? TEXT_RESERVED_PREFIX : 0);
}

/* The marks of c's NUL-terminated query text: the memo's facts when it is the Query being
 * inspected (client_query_facts), else by the keyword scan. One that names a setting
 * PostgreSQL parses statements by and lakeproxy does not track makes c->stmts_apart: its
 * statements are shared with no other client (struct stmt_context.apart). */
static struct statement_marks scan_statement(struct client *c, const char *text)
{
    uint32_t f;
    if (!client_query_facts(c, text, &f))
        f = text_marks(text);
    if (f & TEXT_PARSED_BY)
        c->stmts_apart = true;
    return (struct statement_marks){
        .forgets = f & TEXT_FORGETS,
        .dealloc = f & TEXT_DEALLOC,
        .retires = f & TEXT_RETIRES,
        .resets = f & TEXT_RESETS,
        .context = f & TEXT_CONTEXT,
        .opens = f & TEXT_OPENS,
        .sets = f & TEXT_SETS,
    };
}

/* Might sql change a tracked setting the server does not report back (params.h), or all of
 * them? A DO block or a CALL may (their code is out of sight); so may a text that starts with
 * SET or RESET (or with something else than a word: a comment), holds a second statement,
 * calls set_config or writes pg_settings, when it names such a setting (or SCHEMA, SET
 * SCHEMA being search_path's other name; RESET; set_config; SET SESSION CHARACTERISTICS).
 * Functions that set them inside stay out of sight. Cheap for the UPDATE ... SET of every
 * workload. */
static const char *const unreported_words[] = {
    "search_path", "_timeout",   "default_transaction", "extra_float", "bytea_output",
    "reset",       "set_config", "characteristics",     "schema"};
TEXTSCAN_SET_OF(unreported_set, unreported_words)

static bool may_set_unreported(const char *sql)
{
    const char *p = sql;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    char first = (char)(*p | 0x20);
    if (runs_unseen_code(p))
        return true;
    bool lead = first < 'a' || first > 'z' || (first == 's' && strncasecmp(p, "set", 3) == 0) ||
                (first == 'r' && strncasecmp(p, "reset", 5) == 0);
    const char *semi = lead ? NULL : strchr(p, ';');
    while (semi && (semi[1] == ' ' || semi[1] == '\t' || semi[1] == '\r' || semi[1] == '\n'))
        semi++;
    bool several = semi && semi[1];
    bool settings_view = strchr(p, '_') && text_contains_ci(p, "pg_settings");
    if (!lead && !several && !settings_view &&
        !(strchr(p, '(') && text_contains_ci(p, "set_config")))
        return false;
    return settings_view || textscan_set_find(&unreported_set, p, ~0u) != 0;
}

/* What running sql for client c does to a server beyond its result (STMT_* flags):
 * DEALLOCATE or DISCARD text may drop the server's cache; under row-level security or masking
 * the guard may flag state that outlives the transaction (a WITH HOLD cursor, a temporary
 * table). */
static uint8_t statement_effects(struct client *c, const char *sql)
{
    uint8_t e = 0;
    struct statement_marks m = scan_statement(c, sql);
    if (m.forgets)
        e |= STMT_FORGETS | STMT_SETS; /* (DISCARD ALL resets every setting) */
    if (m.context)
        e |= STMT_CONTEXT;
    if (m.opens)
        e |= STMT_OPENS;
    if (m.retires)
        e |= STMT_RETIRES;
    if (m.resets)
        e |= STMT_MAY_RESET;
    if (!c->rls && m.sets)
        e |= STMT_SETS;
    if (client_under_policy(c))
        e |= policy_statement_effects(c, sql);
    return e;
}

/* A Bind of c's statement st (NULL: by name, its unnamed one when name is ""): one that
 * carries session settings takes them again, for the client and for the server it runs on.
 * False when the client's settings are full. */
static bool carry_on_bind(struct client *c, const struct client_stmt *st, const char *name)
{
    if (st)
        return !(st->effects & STMT_CARRIES) || policy_carry(c, (const char *)st->parse_rest);
    if (!*name && c->unnamed_parse && (c->unnamed_effects & STMT_CARRIES))
        return policy_carry(c, (const char *)c->unnamed_parse);
    return true;
}

/* Something that may drop the server's prepared statements (DEALLOCATE, DISCARD) runs or may
 * run on s: its list of what s holds is no longer trusted. The list is emptied, so each
 * statement a later message names in this checkout is prepared again, behind a Close of its
 * name (send_parse: harmless when the statement is gone, needed when it is not), and s retires
 * at release. */
static void stmts_in_doubt(struct server *s)
{
    s->stmts_unknown = true;
    server_stmts_clear(&s->stmts);
}

/* A statement that may change settings lakeproxy applies but the server does not report
 * (STMT_SETS) runs, or may run, on s: the server's record of what it holds is no longer
 * trusted, and in transaction pooling, for a client not under row-level security (whose
 * changes the guard carries), those settings are read back when its transaction is over
 * (server.c server_read_back): the client keeps what PostgreSQL kept, as a client of
 * PostgreSQL would, and the next client of that server gets its own. */
static void settings_in_doubt(struct server *s)
{
    params_mark_unknown(&s->applied);
    const struct client *c = s->client;
    if (!c || c->rls || !pool_mode_of(s->pool)->shares_servers)
        return;
    uint32_t mask = params_unreported_settable(&s->reported);
    s->carried |= mask;
    s->carried_reset |= mask; /* (a setting PostgreSQL holds at no SET of the session's own
                                 goes back to the client's startup value, or none) */
}

/* Marks s with the effects of a statement prepared or run there: every server it reaches,
 * not only the first, retires afterwards when it must. */
static void carry_statement_effects(struct server *s, const struct client_stmt *st)
{
    if (st->effects & STMT_FORGETS)
        stmts_in_doubt(s);
    if (st->effects & STMT_RETIRES)
        s->retire_after = true;
    if (st->effects & STMT_SETS)
        settings_in_doubt(s);
}

/* Appends a Close of s's statement name to b, its CloseComplete swallowed. */
static void add_drop_close(struct server *s, struct buf *b, const char *name)
{
    buf_msg_start(b, 'C');
    buf_put_u8(b, 'S');
    buf_put_str(b, name);
    buf_msg_finish(b);
    if (!rq_push(&s->replies, RK_DROP_CLOSE, NULL))
        b->failed = true;
}

/* Prepares proxy-named statement st on s (closing an evicted one first); kind says whether
 * the client asked for this Parse (RK_PARSE) or the proxy added it (RK_DROP_PARSE). */
static bool send_parse(struct server *s, const struct client_stmt *st, enum reply_kind kind)
{
    char evicted[STMT_NAME_LEN];
    bool did_evict;
    struct buf b;
    carry_statement_effects(s, st);
    s->parsed_shared = true;
    buf_init(&b);
    server_stmt_add(&s->stmts, st->proxy, evicted, &did_evict);
    if (did_evict)
        add_drop_close(s, &b, evicted);
    if (s->stmts_unknown) /* it may be there still: a Parse of it would fail */
        add_drop_close(s, &b, st->proxy);
    buf_msg_start(&b, 'P');
    buf_put_str(&b, st->proxy);
    buf_put_bytes(&b, st->parse_rest, st->len);
    buf_msg_finish(&b);
    if (!rq_push(&s->replies, kind, st->proxy))
        b.failed = true;
    return send_buf(to_server(s), &b);
}

/* What decides what c's statements mean (struct stmt_context): its pool's statement epoch, its
 * settings that PostgreSQL parses by and, under rls.switch_role, its role. */
static void stmt_context_of(const struct client *c, struct stmt_context *ctx)
{
    ctx->epoch = c->server->pool->stmt_epoch;
    /* (a setting changed earlier in the batch is not in c->wanted yet: PostgreSQL parses by
     * the new value, so the statement is shared with no client that has the old one) */
    ctx->apart = c->stmts_apart || c->ctx_doubt_batch ? c->id : 0;
    for (int i = 0; i < STMT_CONTEXT_SETTINGS; i++)
        ctx->values[i] = param_get(&c->wanted, stmt_context_settings[i]);
    ctx->role = NULL;
    if (c->rls && c->w->cfg->rls.switch_role) {
        struct rls_identity id;
        client_rls_identity(c, &id);
        ctx->role = rls_role(c->w->cfg, &id);
    }
}

/* Makes sure st exists on s before a Bind or Describe names it. */
static bool ensure_prepared(struct server *s, const struct client_stmt *st)
{
    if (server_stmt_find(&s->stmts, st->proxy) >= 0)
        return true;
    /* PostgreSQL will parse it under the client's settings of now: if they are no longer those
     * it was named by, it takes a name of theirs, shared with no client of other settings */
    struct stmt_context ctx;
    stmt_context_of(s->client, &ctx);
    if (!client_stmt_rename(&s->client->stmts, st, &ctx))
        return false;
    return server_stmt_find(&s->stmts, st->proxy) >= 0 || send_parse(s, st, RK_DROP_PARSE);
}

/* A statement name no server has: a Bind or Describe rewritten to it gets PostgreSQL's own
 * "does not exist" error (clients cannot create lp_ names: the guard reserves them). */
static const char STMT_ABSENT[] = GUARD_RESERVED_STMT_PREFIX "no_such_statement";

/* The room kept for a client's unnamed Parse body: at least this much, so that a driver's
 * transaction parsing a few short texts in turn allocates once; room more than four times
 * what the current text needs and above UNNAMED_ROOM_KEEP is given back. */
enum { UNNAMED_ROOM_MIN = 256, UNNAMED_ROOM_KEEP = 8192 };

/* Makes c->unnamed_parse hold len bytes (its old content is not kept); false when out of
 * memory, c's statement then unchanged. */
static bool unnamed_room(struct client *c, size_t len)
{
    size_t cap = c->unnamed_cap;
    if (c->unnamed_parse && len <= cap && (cap <= UNNAMED_ROOM_KEEP || len >= cap / 4))
        return true;
    cap = len < UNNAMED_ROOM_MIN ? UNNAMED_ROOM_MIN : len;
    uint8_t *room = malloc(cap);
    if (!room)
        return false;
    free(c->unnamed_parse);
    c->unnamed_parse = room;
    c->unnamed_cap = cap;
    return true;
}

/* Keeps c's unnamed statement (the Parse body after its name, and what running it does to a
 * server) to prepare it again elsewhere. */
static bool keep_unnamed(struct client *c, const uint8_t *rest, size_t len, uint8_t effects)
{
    bool same = c->unnamed_parse && c->unnamed_len == len &&
                memcmp(c->unnamed_parse, rest, len) == 0; /* (a driver's Parse per query) */
    if (!same) {
        if (!unnamed_room(c, len))
            return false;
        memcpy(c->unnamed_parse, rest, len);
        c->unnamed_len = len;
    }
    c->unnamed_effects = effects;
    return true;
}

void pipeline_client_unhomed(struct client *c)
{
    if (c->unnamed_home)
        c->unnamed_home->unnamed_owner = NULL;
    c->unnamed_home = NULL;
}

void pipeline_server_unhomed(struct server *s)
{
    if (s->unnamed_owner)
        s->unnamed_owner->unnamed_home = NULL;
    s->unnamed_owner = NULL;
}

void pipeline_unnamed_home(struct client *c, struct server *s)
{
    pipeline_client_unhomed(c);
    pipeline_server_unhomed(s);
    c->unnamed_home = s;
    s->unnamed_owner = c;
}

static void forget_unnamed(struct client *c)
{
    c->unnamed_deallocates[0] = '\0';
    c->unnamed_tests = 0;
    c->unnamed_like.n = 0;
    pipeline_client_unhomed(c);
    free(c->unnamed_parse);
    c->unnamed_parse = NULL;
    c->unnamed_len = c->unnamed_cap = 0;
}

void pipeline_forget_statements(struct client *c)
{
    client_stmts_clear(&c->stmts);
    if (c->server && c->server->unnamed_of == c->id)
        c->server->unnamed_of = 0; /* (a Bind of "" finds none there either) */
    forget_unnamed(c);
}

/* Sends the unnamed Parse of rest (its body after the name) to s. */
static bool send_unnamed_parse(struct server *s, const uint8_t *rest, size_t len)
{
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, 'P');
    buf_put_str(&b, "");
    buf_put_bytes(&b, rest, len);
    buf_msg_finish(&b);
    return send_buf(to_server(s), &b);
}

/* Before a Bind or Describe of the unnamed statement: the one on s may be another client's
 * (or gone: a simple Query, the proxy's own statements), so c's is prepared there again. False
 * when c has none: the message must then name no statement at all. */
static bool ensure_unnamed(struct server *s, struct client *c, bool *ok)
{
    *ok = true;
    if (s->unnamed_of == c->id)
        return true;
    if (!c->unnamed_parse)
        return false;
    /* every server it runs on must retire when it must (a temporary table, a held cursor) */
    struct client_stmt effects = {.effects = c->unnamed_effects};
    carry_statement_effects(s, &effects);
    *ok = rq_push(&s->replies, RK_DROP_PARSE, NULL) &&
          send_unnamed_parse(s, c->unnamed_parse, c->unnamed_len);
    s->unnamed_of = c->id;
    s->unnamed_maybe = true;
    pipeline_unnamed_home(c, s);
    return true;
}

/* Is name one the proxy uses on servers (a client may not name those directly)? */
static bool reserved_name(const char *name)
{
    return strncmp(name, GUARD_RESERVED_STMT_PREFIX, strlen(GUARD_RESERVED_STMT_PREFIX)) == 0;
}

/* The statement name a Bind or Describe of client statement name (not one of its named ones)
 * is sent with: name itself (the message passes unchanged) for a name unknown to the proxy or
 * its own unnamed statement (prepared there again when needed), or one that does not exist,
 * for an unnamed statement it never made or a name of the proxy's. NULL when sending failed. */
static const char *unmanaged_target(struct server *s, struct client *c, const char *name)
{
    bool ok;
    if (*name && !reserved_name(name))
        return name; /* unknown to the proxy: the server answers as it would without one */
    if (!*name && ensure_unnamed(s, c, &ok))
        return ok ? name : NULL; /* its own, on the server now: the message goes as it is */
    return STMT_ABSENT;
}

/* Owes the reply of a Bind or Describe sent to target; one sent to STMT_ABSENT in place of
 * the client's name is marked so that its error speaks of the client's name, not the proxy's. */
static bool push_reply_for(struct server *s, enum reply_kind kind, const char *target,
                           const char *name)
{
    if (target != STMT_ABSENT)
        return rq_push(&s->replies, kind, NULL);
    if (!rq_push(&s->replies, kind, *name ? GUARD_RESERVED_STMT_PREFIX : ""))
        return false;
    rq_mark_own_error(&s->replies, REPLY_OWN_ABSENT);
    return true;
}

/* The client's error in place of the server's for a reply the proxy words itself: a Bind or
 * Describe of a statement it may not use, worded as PostgreSQL words a missing one (26000), or
 * a Parse of a name it holds (42P05, as PostgreSQL). */
static bool write_own_error(struct server *s, const struct reply *f)
{
    struct buf b;
    buf_init(&b);
    if (f->own_error == REPLY_OWN_TAKEN) {
        char msg[STMT_NAME_LEN + 64];
        snprintf(msg, sizeof(msg), "prepared statement \"%s\" already exists", f->stmt);
        proto_error(&b, "ERROR", "42P05", msg);
    } else if (f->own_error == REPLY_OWN_LIMIT) {
        proto_error(&b, "ERROR", "54000",
                    "too many prepared statements: at most 10,000 named statements, of 16 MiB "
                    "of text together, per connection (close or DEALLOCATE the ones no longer "
                    "used)");
    } else {
        proto_error(&b, "ERROR", "26000",
                    f->stmt[0] ? "prepared statement does not exist: names beginning with "
                                 "\"" GUARD_RESERVED_STMT_PREFIX "\" are reserved by lakeproxy"
                               : "unnamed prepared statement does not exist");
    }
    return send_buf(to_client(s), &b) || answer_lost();
}

/* Refuses a client's Parse as PostgreSQL refuses one: its error (own, REPLY_OWN_*, worded by
 * write_own_error with stmt) at its place among the replies, and the rest skipped up to Sync.
 * The server is sent a Parse that fails there (a text naming no column there is, under a name
 * no client can use, so nothing is created); in an aborted transaction block both fail before
 * their names are looked at (25P02), and the server's error goes as it is. */
static enum relay_verdict refuse_parse(struct server *s, enum reply_own_error own, const char *stmt)
{
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, 'P');
    buf_put_str(&b, GUARD_RESERVED_STMT_PREFIX "name_taken");
    /* (it parses, so in an aborted block it fails as the client's would, 25P02; elsewhere
     * its analysis fails: no such column) */
    buf_put_str(&b, "SELECT lakeproxy_statement_name_taken");
    buf_put_u16(&b, 0);
    buf_msg_finish(&b);
    if (!rq_push(&s->replies, RK_PARSE, stmt))
        b.failed = true;
    rq_mark_own_error(&s->replies, own);
    return send_buf(to_server(s), &b) ? RV_DROP : RV_ERROR;
}

/* A client's Parse of a name it holds (its statement there, not one whose Parse is still
 * owed a reply): PostgreSQL refuses it (42P05) and skips the rest up to Sync, leaving the
 * statement as it was; so does lakeproxy (refuse_parse). */
static enum relay_verdict refuse_taken_name(struct server *s, const char *name)
{
    char shown[STMT_NAME_LEN]; /* the name for the message: whole, or cut (on a character's
                                  first byte) with "..." */
    size_t n = strlen(name);
    if (n < sizeof(shown)) {
        memcpy(shown, name, n + 1);
    } else {
        n = sizeof(shown) - 4;
        while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80)
            n--;
        memcpy(shown, name, n);
        memcpy(shown + n, "...", 4);
    }
    return refuse_parse(s, REPLY_OWN_TAKEN, shown);
}

/* The client's unnamed statement, kept, goes to its server: the server holds it then. */
static enum relay_verdict unnamed_parsed(struct client *c)
{
    struct server *s = c->server;
    if (c->unnamed_effects & STMT_FORGETS)
        stmts_in_doubt(s);
    if (c->unnamed_effects & STMT_SETS)
        settings_in_doubt(s);
    c->unnamed_tests = c->mask_tests;
    c->unnamed_like = c->mask_like;
    s->unnamed_of = c->id;
    s->unnamed_maybe = true;
    pipeline_unnamed_home(c, s);
    return rq_push(&s->replies, RK_PARSE, NULL) ? RV_PASS : RV_ERROR;
}

/* Keeps the client's unnamed Parse (rest: its body after the name, and its STMT_* effects)
 * and relays it. */
static enum relay_verdict unnamed_kept(struct client *c, const uint8_t *rest, size_t len,
                                       uint8_t effects, const char **err)
{
    if (!keep_unnamed(c, rest, len, effects)) {
        *err = "out of memory";
        return RV_ERROR;
    }
    return unnamed_parsed(c);
}

/* A statement with these effects is parsed or to run for c: one that may change a setting
 * PostgreSQL parses by puts the names c gives after it in doubt (pipeline_stmt_must_wait). */
static void note_context(struct client *c, uint8_t effects)
{
    if (effects & STMT_CONTEXT)
        c->ctx_doubt_batch = true;
}

/* A statement with these effects is to run for c: see client_note_may_reset. */
static void note_may_reset(struct client *c, uint8_t effects)
{
    if (effects & STMT_MAY_RESET)
        client_note_may_reset(c);
}

bool pipeline_text_may_reset(const char *sql)
{
    return found_reset(textscan_set_find(&forgetting_set, sql, FW_RESET | FW_DISCARD), sql);
}

/* A Parse of a text with these effects came from c: one that may DEALLOCATE or DISCARD may
 * free names the client holds, where lakeproxy cannot follow. */
static void note_parse_effects(struct client *c, uint8_t effects)
{
    if (effects & STMT_FORGETS)
        c->stmts.unsure = true;
    note_may_reset(c, effects);
    note_context(c, effects);
}

/* Is sql a lone DEALLOCATE of one name (into name)? Run, it concerns the client's own
 * statements (dealloc_execute) and drops none of the server's: lakeproxy's names are refused
 * in it (guard_uses_reserved_name), and the client's are none of the server's. (psycopg 3
 * evicts a statement from its cache so, through the extended protocol.) */
static bool lone_named_deallocate(const char *sql, char name[64])
{
    bool all;
    return stmtsql_deallocate(sql, name, &all) && !all;
}

/* Is this an unnamed Parse the client sent lately, byte for byte, read then and now with
 * neither row-level security nor masking on? Its checks then read the text alone (a reserved
 * name, DEALLOCATE or DISCARD), and it passed them; *effects gets what they found. Drivers
 * parse a few texts unnamed again and again (libpq's PQexecParams, JDBC, pgbench -M extended,
 * the seven statements of its TPC-B-like transaction). */
static bool plain_parse_known(struct client *c, const uint8_t *body, uint32_t len, uint8_t *effects)
{
    uint64_t v;
    if (len == 0 || body[0] != '\0' || client_under_policy(c) ||
        !recent_find(&c->plain_parses, body + 1, len - 1, &v))
        return false;
    *effects = (uint8_t)v;
    return true;
}

static enum relay_verdict parse_kept(struct client *c, const char *name, const uint8_t *rest,
                                     size_t rest_len, uint8_t effects, const char dealloc[64],
                                     bool retyped, const char **err);

/* A client's named Parse of statement st, which s holds prepared, where it may run in an
 * aborted transaction block (the server's last state 'E', or a batch before it unanswered):
 * PostgreSQL refuses it there (25P02) unless it ends the block, which a ParseComplete of the
 * proxy's own would hide. The server is sent its text as an unnamed Parse, which fails or
 * passes as the named one would (the name's own check is refuse_taken_name's); its answer
 * goes to the client, and an error or skip undoes the client's record (undo_skipped). */
static enum relay_verdict standin_parse(struct server *s, const struct client_stmt *st)
{
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, 'P');
    buf_put_str(&b, "");
    buf_put_bytes(&b, st->parse_rest, st->len);
    buf_msg_finish(&b);
    s->unnamed_of = 0; /* (the server's unnamed statement is this one now) */
    s->unnamed_maybe = true;
    if (!rq_push(&s->replies, RK_PARSE, NULL))
        b.failed = true;
    else
        rq_mark_parse_of(&s->replies, st);
    return send_buf(to_server(s), &b) ? RV_DROP : RV_ERROR;
}

static enum relay_verdict on_parse(struct client *c, const uint8_t *body, uint32_t len,
                                   const char **err)
{
    struct server *s = c->server;
    struct rd r;
    const char *name;
    rd_init(&r, body, len);
    if (!rd_str(&r, &name)) {
        *err = "invalid Parse message";
        return RV_ERROR;
    }
    const char *sql;
    struct rd q = r;
    if (!rd_str(&q, &sql)) {
        *err = "invalid Parse message";
        return RV_ERROR;
    }
    const struct client_stmt *held = *name ? client_stmt_get(&c->stmts, name) : NULL;
    if (held && client_stmt_taken(&c->stmts, held))
        return refuse_taken_name(s, name);
    uint8_t effects = statement_effects(c, sql);
    char dealloc[64] = "";
    if (!*name && (effects & STMT_FORGETS) && lone_named_deallocate(sql, dealloc))
        effects &= (uint8_t) ~(STMT_FORGETS | STMT_SETS);
    note_parse_effects(c, effects);
    struct buf typed;
    if (c->mask_like.n > 0 && masklike_declare_text(&c->mask_like, r.p, r.left, &typed)) {
        if (typed.failed)
            *err = relay_out_of_memory;
        enum relay_verdict v =
            typed.failed ? RV_ERROR
                         : parse_kept(c, name, typed.data, typed.len, effects, dealloc, true, err);
        buf_free(&typed);
        return v;
    }
    return parse_kept(c, name, r.p, r.left, effects, dealloc, false, err);
}

/* Keeps c's Parse of name with body rest (after the name), effects and dealloc (the name a
 * lone DEALLOCATE of it frees, or ""), and sends what the server must be sent: rest itself
 * when retyped (the client's body with parameter types added: masklike_declare_text). */
static enum relay_verdict parse_kept(struct client *c, const char *name, const uint8_t *rest,
                                     size_t rest_len, uint8_t effects, const char dealloc[64],
                                     bool retyped, const char **err)
{
    struct server *s = c->server;
    if (!*name) {
        if (!client_under_policy(c) && !dealloc[0]) /* (for plain_parse_known) */
            recent_put(&c->plain_parses, rest, rest_len, effects);
        enum relay_verdict v = unnamed_kept(c, rest, rest_len, effects, err);
        memcpy(c->unnamed_deallocates, dealloc, sizeof(c->unnamed_deallocates));
        if (v == RV_PASS && retyped) /* (the client's own message is not the one to send) */
            v = send_unnamed_parse(s, rest, rest_len) ? RV_DROP : RV_ERROR;
        return v;
    }
    struct stmt_context ctx;
    stmt_context_of(c, &ctx);
    size_t max = c->w->cfg->max_message_size;
    struct client_stmt *st;
    switch (client_stmt_put(&c->stmts, name, rest, rest_len, &ctx, effects, max, &st)) {
    case STMT_PUT_DONE: break;
    case STMT_PUT_PAST_LIMITS: return refuse_parse(s, REPLY_OWN_LIMIT, "");
    case STMT_PUT_NO_MEMORY: *err = relay_out_of_memory; return RV_ERROR;
    }
    client_stmt_set_tests(st, c->mask_tests, &c->mask_like);
    bool held_there = server_stmt_find(&s->stmts, st->proxy) >= 0;
    if (held_there && (s->txn == 'E' || s->in_flight > 0))
        return standin_parse(s, st);
    if (held_there) {
        if (!rq_push(&s->replies, RK_FAKE_PARSE, NULL))
            return RV_ERROR;
        rq_mark_parse_of(&s->replies, st);
        return answered(s);
    }
    if (!send_parse(s, st, RK_PARSE))
        return RV_ERROR;
    rq_mark_parse_of(&s->replies, st);
    return RV_DROP;
}

/* A Bind of portal from statement name: a portal bound from the client's unnamed lone
 * DEALLOCATE deallocates when executed (dealloc_execute); one bound from anything else does
 * not. (Portals, like statements, are known by their names' first 63 bytes.) */
static void note_dealloc_bind(struct client *c, const char *portal, const char *name)
{
    if (!*name && c->unnamed_deallocates[0]) {
        snprintf(c->dealloc_portal, sizeof(c->dealloc_portal), "%.63s", portal);
        memcpy(c->dealloc_of, c->unnamed_deallocates, sizeof(c->dealloc_of));
        c->dealloc_bound = true;
    } else if (c->dealloc_bound && strncmp(c->dealloc_portal, portal, 63) == 0) {
        c->dealloc_bound = false;
    }
}

/* An Execute (body) of a portal bound from a lone DEALLOCATE of a statement the client holds
 * is answered by lakeproxy: the statement is parked as by a Close, going when the made-up
 * CommandComplete is due and staying if an error skips it (the server never runs the text,
 * whose name is not one of its statements). *handled false: not such an Execute (one of a
 * name the client does not hold goes to the server, which fails it as PostgreSQL would). */
static enum relay_verdict dealloc_execute(struct server *s, struct client *c, const uint8_t *body,
                                          uint32_t len, bool *handled)
{
    struct rd r;
    const char *portal;
    rd_init(&r, body, len);
    *handled = false;
    if (!c->dealloc_bound || !rd_str(&r, &portal) || strncmp(c->dealloc_portal, portal, 63) != 0 ||
        !client_stmt_get(&c->stmts, c->dealloc_of))
        return RV_STREAM; /* (one a Close still owed took: PostgreSQL runs the Close first) */
    *handled = true;
    c->dealloc_bound = false; /* (run once: again, it goes to the server) */
    s->ext_open = true;
    const struct client_stmt *st = client_stmt_park(&c->stmts, c->dealloc_of);
    if (!st) /* (as many closing as may be: it goes now) */
        client_stmt_remove(&c->stmts, c->dealloc_of);
    if (!rq_push(&s->replies, RK_FAKE_DEALLOCATE, NULL))
        return RV_ERROR;
    if (st)
        rq_mark_parse_of(&s->replies, st);
    return answered(s);
}

/* Are the values a Bind (rest: after its names) gives the LIKE pattern parameters on masked
 * columns of c's statement st (NULL: by name, its unnamed one when name is "") prefixes? */
static bool like_binds_ok(struct client *c, const struct client_stmt *st, const char *name,
                          const uint8_t *rest, size_t len)
{
    if (st)
        return !st->mask_like.n ||
               masklike_binds_ok(&st->mask_like, st->parse_rest, st->len, rest, len);
    if (*name || !c->unnamed_like.n)
        return true;
    return masklike_binds_ok(&c->unnamed_like, c->unnamed_parse, c->unnamed_len, rest, len);
}

static enum relay_verdict on_bind(struct client *c, const uint8_t *body, uint32_t len,
                                  const char **err)
{
    struct server *s = c->server;
    struct rd r;
    const char *portal, *name;
    rd_init(&r, body, len);
    if (!rd_str(&r, &portal) || !rd_str(&r, &name)) {
        *err = "invalid Bind message";
        return RV_ERROR;
    }
    note_dealloc_bind(c, portal, name);
    const struct client_stmt *st = *name ? client_stmt_get(&c->stmts, name) : NULL;
    if (!policy_mask_charge(c, st ? st->mask_tests : *name ? 0 : c->unnamed_tests)) {
        static char msg[200];
        policy_mask_budget_message(c, msg, sizeof(msg));
        *err = msg;
        return RV_ERROR;
    }
    if (!like_binds_ok(c, st, name, r.p, r.left)) {
        *err = "a LIKE pattern bound for a masked column must be a constant prefix ('abc%': no "
               "'_', '%' only at the end) in a text or varchar parameter";
        return RV_ERROR;
    }
    if (!carry_on_bind(c, st, name)) {
        *err = "too many session parameters for lakeproxy to carry";
        return RV_ERROR;
    }
    uint8_t effects = st ? st->effects : *name ? 0 : c->unnamed_effects;
    if ((effects & STMT_OPENS) || !(st || (!*name && c->unnamed_parse))) /* (or unknown) */
        s->batch_opens = true;
    note_may_reset(c, effects);
    note_context(c, effects);
    const char *target;
    if (st) {
        carry_statement_effects(s, st);
        if (!ensure_prepared(s, st))
            return RV_ERROR;
        target = st->proxy; /* (its reply is marked: see note_stale_statement) */
    } else if (!(target = unmanaged_target(s, c, name))) {
        return RV_ERROR;
    } else if (target == name) { /* unknown: the server answers as it would without a proxy */
        return rq_push(&s->replies, RK_BIND, NULL) ? RV_PASS : RV_ERROR;
    }
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, 'B');
    buf_put_str(&b, portal);
    buf_put_str(&b, target);
    buf_put_bytes(&b, r.p, r.left);
    buf_msg_finish(&b);
    if (!push_reply_for(s, RK_BIND, target, name))
        b.failed = true;
    else if (st)
        rq_mark_shared_bind(&s->replies);
    return send_buf(to_server(s), &b) ? RV_DROP : RV_ERROR;
}

/* Describe and Close carry a kind ('S' statement, 'P' portal) and a name. */
static enum relay_verdict on_describe_or_close(struct client *c, uint8_t type, const uint8_t *body,
                                               uint32_t len, const char **err)
{
    struct server *s = c->server;
    struct rd r;
    uint8_t kind;
    const char *name;
    rd_init(&r, body, len);
    if (!rd_u8(&r, &kind) || !rd_str(&r, &name) || (kind != 'S' && kind != 'P')) {
        *err = type == 'D' ? "invalid Describe message" : "invalid Close message";
        return RV_ERROR;
    }
    enum reply_kind rk = type == 'D' ? RK_DESCRIBE : RK_CLOSE;
    if (type == 'C' && kind == 'P' && c->dealloc_bound && strncmp(c->dealloc_portal, name, 63) == 0)
        c->dealloc_bound = false; /* (closed: an Execute of it is the server's to fail) */
    if (kind != 'S')
        return rq_push(&s->replies, rk, NULL) ? RV_PASS : RV_ERROR;
    if (type == 'C' && !*name) { /* its own unnamed statement, if the server holds it */
        forget_unnamed(c);
        if (s->unnamed_of == c->id)
            return rq_push(&s->replies, rk, NULL) ? RV_PASS : RV_ERROR;
        if (!rq_push(&s->replies, RK_FAKE_CLOSE, NULL))
            return RV_ERROR;
        return answered(s);
    }
    if (type == 'C') { /* the server-side statement stays cached for other clients */
        /* behind replies still owed an error may skip the Close: the statement waits */
        const struct client_stmt *st =
            rq_front(&s->replies) ? client_stmt_park(&c->stmts, name) : NULL;
        if (!st)
            client_stmt_remove(&c->stmts, name);
        if (!rq_push(&s->replies, RK_FAKE_CLOSE, NULL))
            return RV_ERROR;
        if (st)
            rq_mark_parse_of(&s->replies, st);
        return answered(s);
    }
    const struct client_stmt *st = *name ? client_stmt_get(&c->stmts, name) : NULL;
    const char *target;
    if (st) {
        if (!ensure_prepared(s, st))
            return RV_ERROR;
        target = st->proxy;
    } else if (!(target = unmanaged_target(s, c, name))) {
        return RV_ERROR;
    } else if (target == name) {
        return rq_push(&s->replies, rk, NULL) ? RV_PASS : RV_ERROR;
    }
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, 'D');
    buf_put_u8(&b, 'S');
    buf_put_str(&b, target);
    buf_msg_finish(&b);
    if (!push_reply_for(s, RK_DESCRIBE, target, name))
        b.failed = true;
    return send_buf(to_server(s), &b) ? RV_DROP : RV_ERROR;
}

bool pipeline_stmt_must_wait(struct client *c)
{
    if (c->server->in_flight <= 0) {
        c->ctx_doubt_sent = false; /* every batch sent before this one is answered */
        return false;
    }
    return c->stmts.settled_gen < c->stmts.sync_gen || c->stmts.n_closing > 0 || c->ctx_doubt_sent;
}

bool pipeline_names_statement(uint8_t type, const uint8_t *body, uint32_t len)
{
    if (type == 'P')
        return len > 0 && body[0] != '\0';
    if (type == 'B') {
        const uint8_t *end = memchr(body, '\0', len); /* (after the portal's name) */
        return end && end + 1 < body + len && end[1] != '\0';
    }
    return (type == 'D' || type == 'C') && len >= 2 && body[0] == 'S' && body[1] != '\0';
}

/* Is s idle outside a transaction, owing its client nothing (so the next Query runs there)? */
static bool nothing_owed(const struct server *s)
{
    return s->txn == 'I' && !rq_front(&s->replies) && !s->ext_open && s->in_flight == 0;
}

void pipeline_deallocate(struct client *c, const char *name, bool all)
{
    forget_unnamed(c); /* (a simple Query drops the unnamed statement, even one answered here) */
    if (all)
        client_stmts_clear(&c->stmts);
    else /* closing copies too: one a skipped Close would bring back is deallocated now */
        client_stmt_remove_all(&c->stmts, name);
}

/* Sends a simple query of the proxy's choosing in place of the client's. */
static bool send_query_text(struct server *s, const char *sql)
{
    struct buf b;
    buf_init(&b);
    proto_query(&b, sql);
    return send_buf(to_server(s), &b);
}

static enum relay_verdict on_query(struct client *c, const uint8_t *body, uint32_t len)
{
    struct server *s = c->server;
    if (len == 0 || body[len - 1] != 0)
        return RV_ERROR;
    char name[64];
    const char *sql = (const char *)body;
    struct statement_marks m = scan_statement(c, sql);
    bool forgets = m.forgets, dealloc = m.dealloc;
    if (m.resets)
        client_note_may_reset(c);
    if (m.context)
        c->ctx_doubt_batch = true;
    client_arm_reset_barrier(c); /* (a Query ends its own batch) */
    s->sent_batch_opens = m.opens;
    s->batch_opens = false;
    if (m.retires) /* (a guarded client's LISTEN is the guard's to retire: the same) */
        s->retire_after = true;
    bool all, lone = dealloc && stmtsql_deallocate(sql, name, &all);
    if (lone && !all && !client_stmt_known(&c->stmts, name))
        lone = forgets = false; /* not the client's: the server's to fail, as PostgreSQL does
                                   (lone_named_deallocate: it drops none of the server's) */
    if (forgets)
        stmts_in_doubt(s);
    if (!c->rls && m.sets)
        settings_in_doubt(s);
    if (forgets && !lone) { /* it may reset settings, and free names the client holds */
        params_mark_unknown(&s->applied);
        c->stmts.unsure = true;
    }
    if (forgets && !dealloc && nothing_owed(s) && stmtsql_is_discard_all(sql))
        client_stmts_clear(&c->stmts); /* (as PostgreSQL: none is held. With replies owed the
                                          server may be in a transaction, where it fails: the
                                          names stay, unsure) */
    s->unnamed_of = 0;                 /* a simple Query destroys the unnamed statement */
    forget_unnamed(c);
    c->dealloc_bound = false; /* (and the unnamed portal; a named one is the server's then) */
    s->in_flight++;
    if (!rq_push(&s->replies, RK_QUERY, NULL))
        return RV_ERROR;
    if (!lone)
        return RV_PASS;
    /* inside a transaction: the server knows the statement by the proxy's name, so drop them
     * all there (the connection is retired afterwards) and forget the client's */
    pipeline_deallocate(c, name, all);
    return send_query_text(s, "DEALLOCATE ALL") ? RV_DROP : RV_ERROR;
}

/* A refused message was replaced by its stand-in: owe the reply of what was sent. A stand-in
 * Query, or a stand-in Parse of the unnamed statement, leaves the server without one, and the
 * client's refused statement is not the one it kept: binding "" must not run the older one.
 * (The stand-in of a named Parse is an unnamed Parse too: its failure, undo_skipped, says the
 * server's unnamed statement is gone.) */
static enum relay_verdict standin_sent(struct server *s, struct client *c, uint8_t type,
                                       const uint8_t *body, const char **err)
{
    if (type == 'Q' || (type == 'P' && body && body[0] == '\0')) {
        s->unnamed_of = 0;
        forget_unnamed(c);
    }
    if (type == 'P')
        s->ext_open = true;
    else
        s->in_flight++;
    if (rq_push(&s->replies, type == 'P' ? RK_PARSE : RK_QUERY, NULL))
        return RV_DROP;
    *err = "too many messages in flight";
    return RV_ERROR;
}

/* pipeline_client_msg, but without naming a full reply queue as the cause of its error. */
/* c's batch ends (its Sync or simple Query is sent): a setting it may have changed puts the
 * names c sends before its answer in doubt (pipeline_stmt_must_wait). */
static void batch_sent(struct client *c)
{
    c->ctx_doubt_sent |= c->ctx_doubt_batch;
    c->ctx_doubt_batch = false;
}

static enum relay_verdict client_msg_verdict(struct client *c, uint8_t type, uint32_t len,
                                             const uint8_t *body, const char **err)
{
    struct server *s = c->server;
    bool pushed = true;
    if (s->skip_till_sync && type != 'S' && type != 'X')
        return RV_DROP; /* the server would skip it: nothing is sent, nothing owed */
    if (type == 'S')
        s->skip_till_sync = false;
    uint8_t effects;
    if (type == 'P' && body && plain_parse_known(c, body, len, &effects)) {
        c->mask_tests = 0; /* (as policy_check_client_msg would) */
        c->mask_like.n = 0;
        c->unnamed_deallocates[0] = '\0'; /* (a lone DEALLOCATE is never one of those) */
        s->ext_open = true;
        note_parse_effects(c, effects);
        return unnamed_kept(c, body + 1, len - 1, effects, err);
    }
    if (type == 'Q' || type == 'P' || (client_under_policy(c) && type == 'F')) {
        if (!body)
            return RV_NEED_BODY;
        enum policy_result pr = policy_check_client_msg(c, type, len, body, err);
        if (pr == POLICY_FAILED)
            return RV_ERROR;
        if (pr == POLICY_STANDIN)
            return standin_sent(s, c, type, body, err);
    }
    switch (type) {
    case 'X': return body ? RV_DROP_STOP : RV_NEED_BODY;
    case 'P':
    case 'B':
    case 'D':
    case 'C':
    case 'Q':
        if (!body)
            return RV_NEED_BODY;
        if (type != 'Q')
            s->ext_open = true;
        if (type == 'P')
            return on_parse(c, body, len, err);
        if (type == 'B')
            return on_bind(c, body, len, err);
        if (type == 'Q') { /* (a batch of its own) */
            enum relay_verdict v = on_query(c, body, len);
            batch_sent(c);
            return v;
        }
        return on_describe_or_close(c, type, body, len, err);
    case 'E':
        if (c->dealloc_bound) {
            if (!body)
                return RV_NEED_BODY;
            bool handled;
            enum relay_verdict v = dealloc_execute(s, c, body, len, &handled);
            if (handled)
                return v;
        }
        /* a DEALLOCATE or DISCARD bound before may run now: what was prepared since is gone
         * (prepared again, behind a Close) */
        if (s->stmts_unknown)
            server_stmts_clear(&s->stmts);
        if (c->mask.n_applied > 0) { /* masking needs the rows' description: ask for it */
            if (!body)
                return RV_NEED_BODY;
            if (!maskwire_describe_portal(s, body, len)) {
                *err = "invalid Execute message, or too many messages in flight";
                return RV_ERROR;
            }
        }
        s->ext_open = true;
        pushed = rq_push(&s->replies, RK_EXECUTE, NULL);
        break;
    case 'S':
        /* under a policy, what a Bind of the unnamed statement is checked and charged against
         * (its noted LIKE parameters, tests, carries) must be what runs: after a Sync, its Parse
         * may yet prove skipped (an error before it), leaving the server an older one, so the
         * next Bind "" prepares it again first (ensure_unnamed). Before the copy-in check: a
         * Sync sent during a copy counts once an error ends the copy, which is not known yet. */
        if (client_under_policy(c) && s->unnamed_of == c->id)
            s->unnamed_of = 0;
        if (server_sync_ignored(s))
            break; /* during copy-in the server ignores it: nothing owed */
        c->stmts.sync_gen = c->stmts.last_gen;
        batch_sent(c);
        /* portals end with the implicit transaction a Sync ends (or the client may be on
         * another server next): an Execute of a DEALLOCATE portal after it is the server's */
        c->dealloc_bound = false;
        s->in_flight++;
        s->ext_open = false;
        s->sent_batch_opens = s->batch_opens;
        s->batch_opens = false;
        client_arm_reset_barrier(c);
        pushed = rq_push(&s->replies, RK_SYNC, NULL);
        break;
    case 'F':
        s->in_flight++;
        s->sent_batch_opens = false;
        pushed = rq_push(&s->replies, RK_QUERY, NULL);
        break;
    case 'H': s->ext_open = true; break;
    case 'd': break;
    case 'c':
    case 'f': server_copy_done_sent(s); break;
    default: *err = "invalid frontend message type"; return RV_ERROR;
    }
    if (!pushed)
        *err = "too many messages in flight";
    return pushed ? RV_STREAM : RV_ERROR;
}

enum relay_verdict pipeline_client_msg(struct client *c, uint8_t type, uint32_t len,
                                       const uint8_t *body, const char **err)
{
    enum relay_verdict v = client_msg_verdict(c, type, len, body, err);
    /* (every path that owes a reply fails when the queue is full: say so, whichever it was) */
    if (v == RV_ERROR && !*err && c->server->replies.len == REPLY_QUEUE_MAX)
        *err = "too many messages in flight";
    return v;
}

bool pipeline_forward_then_fakes(struct server *s, uint8_t type, uint32_t len, const uint8_t *body)
{
    uint8_t hdr[5] = {type, (uint8_t)((len + 4) >> 24), (uint8_t)((len + 4) >> 16),
                      (uint8_t)((len + 4) >> 8), (uint8_t)(len + 4)};
    /* one add, whole or not at all (a TLS output sends each add at once: two adds would let
     * the header go alone) */
    struct evbuffer *out = to_client(s);
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, 5 + (ev_ssize_t)len, &v, 1) != 1)
        return answer_lost();
    memcpy(v.iov_base, hdr, 5);
    memcpy((uint8_t *)v.iov_base + 5, body, len);
    v.iov_len = 5 + (size_t)len;
    if (evbuffer_commit_space(out, &v, 1) != 0)
        return answer_lost();
    return emit_fakes(s);
}

/* A message that changed the server's statements failed or was skipped after an error (the
 * failed one comes first: rq_fail_until_sync): a client's named Parse (its name means what it
 * meant before, or nothing: the proxy's record of it goes, so that a Bind of it gets
 * PostgreSQL's own 26000 rather than running a text PostgreSQL never prepared), a named Parse
 * (the statement is not there after all), or the Close of an evicted one (still there, though
 * the cache forgot it: a later Parse of it would fail, so the server retires at release). */
static void undo_skipped(void *arg, const struct reply *r)
{
    struct server *s = arg;
    if (r->own_error == REPLY_OWN_TAKEN || r->own_error == REPLY_OWN_LIMIT)
        return;              /* a Parse that could create nothing, refused or not run */
    if (rk_parks(r->kind)) { /* the client's Close or DEALLOCATE never happened: it stays */
        if (s->client)
            client_stmt_unpark(&s->client->stmts, r, true);
        return;
    }
    if (r->gen && s->client) { /* the client's named Parse never happened: forget it */
        client_stmt_undo(&s->client->stmts, r);
        client_stmt_settled(&s->client->stmts, r);
    }
    if (r->kind == RK_FAKE_PARSE)
        return; /* nothing was sent */
    if (r->kind == RK_DROP_CLOSE)
        s->stmts_unknown = true;
    else if (r->kind != RK_CLOSE && r->stmt[0])
        server_stmt_remove(&s->stmts, r->stmt);
    else { /* an unnamed Parse (a stand-in's too) or a Close, not run: the server's unnamed
              statement is an older one than its client's records say. A Bind "" pipelined behind it
              may already be on its way and run the older one, whose carried settings (guard.h)
              nobody took: whatever it set is reset for the next client. Later Binds prepare the
              client's statement again. */
        s->unnamed_of = 0;
        params_mark_unknown(&s->applied);
        if (s->client) /* (a skipped unnamed DEALLOCATE is not the client's statement) */
            s->client->unnamed_deallocates[0] = '\0';
    }
}

/* Is ErrorResponse body's SQLSTATE state? */
static bool error_state_is(const uint8_t *body, uint32_t len, const char *state)
{
    struct pg_error e;
    return proto_parse_error(body, len, &e) && strcmp(e.sqlstate, state) == 0;
}

/* A server's Bind of a statement the proxy prepared failed with error body: when with 0A000
 * ("cached plan must not change result type": a table it reads changed shape since it was
 * prepared), the statement is stale on this server, and on every other that prepared it before the
 * change. PostgreSQL's remedy is to prepare it again; under its shared name that would find the
 * stale one again, so later Parses of the pool take names of a new epoch. Statements parsed before
 * keep theirs and fail as they would on PostgreSQL. */
static void note_stale_statement(struct server *s, const uint8_t *body, uint32_t len)
{
    if (!error_state_is(body, len, "0A000"))
        return;
    struct pool *p = s->pool;
    p->stmt_epoch++;
    int64_t now = monotime_ms();
    if (now - p->stmt_stale_logged_ms < 1000)
        return;
    p->stmt_stale_logged_ms = now;
    log_info("pool %s: server %llu: a prepared statement is stale (0A000: a table it reads "
             "changed); statements prepared from now on get new names",
             p->db->name, (unsigned long long)s->id);
}

static bool fake_next(const struct server *s)
{
    const struct reply *n = rq_second(&s->replies);
    return n && rk_is_fake(n->kind);
}

enum relay_verdict pipeline_server_msg(struct server *s, uint8_t type, uint32_t len,
                                       const uint8_t *body)
{
    switch (rq_classify(&s->replies, type)) {
    case RQ_SWALLOW:
        if (!body)
            return RV_NEED_BODY;
        rq_pop(&s->replies);
        return answered(s);
    case RQ_FAIL: { /* skipped simple Queries: no ReadyForQuery of theirs will come */
        const struct reply *f = rq_front(&s->replies);
        bool own = type == 'E' && f && f->own_error;
        bool shared_bind = type == 'E' && f && f->shared_bind && !own;
        if ((own || shared_bind) && !body)
            return RV_NEED_BODY;
        if (own && f->own_error != REPLY_OWN_ABSENT && error_state_is(body, len, "25P02"))
            own = false; /* in an aborted block PostgreSQL refuses the Parse before its name */
        if (shared_bind)
            note_stale_statement(s, body, len);
        if (own && !write_own_error(s, f))
            return RV_ERROR;
        size_t skipped = rq_fail_until_sync(&s->replies, undo_skipped, s);
        if (s->client) /* once the skipped Parses are undone: their names are free again */
            client_stmt_restore_skipped(&s->client->stmts);
        s->in_flight -= skipped < (size_t)s->in_flight ? (int)skipped : s->in_flight;
        if (s->carried_open_zs > s->in_flight) /* (those it counted may be among them) */
            s->carried_open_zs = s->in_flight;
        /* no Sync sent yet: the server skips what the client sends up to its next one */
        s->skip_till_sync = rq_front(&s->replies) == NULL;
        return own ? RV_DROP : RV_STREAM;
    }
    case RQ_FINISH:
        if (!fake_next(s)) {
            pop_reply(s);
            return RV_STREAM;
        }
        if (!body)
            return RV_NEED_BODY;
        pop_reply(s);
        return pipeline_forward_then_fakes(s, type, len, body) ? RV_DROP : RV_ERROR;
    default: return RV_STREAM;
    }
}

void pipeline_setting_changed(struct server *s, const char *canon)
{
    for (int i = 0; i < STMT_CONTEXT_SETTINGS; i++)
        if (strcmp(canon, stmt_context_settings[i]) == 0) {
            if (s->parsed_shared)
                stmts_in_doubt(s);
            return;
        }
}

bool pipeline_sync_done(struct server *s)
{
    s->parsed_shared = false; /* (pipeline_setting_changed) */
    if (rq_classify(&s->replies, 'Z') == RQ_FINISH)
        rq_pop(&s->replies);
    else /* a ReadyForQuery for no Sync or Query owed: the count is wrong somewhere */
        server_mark_unsure(s, "a ReadyForQuery for no Sync or Query owed");
    const struct reply *f = rq_front(&s->replies);
    return f && rk_is_fake(f->kind);
}

const struct pool_mode_ops pool_mode_transaction = {
    .name = "transaction",
    .shares_servers = true,
    .client_msg = pipeline_client_msg,
    .server_msg = pipeline_server_msg,
    .ready = pipeline_sync_done,
};
