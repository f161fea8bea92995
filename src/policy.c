/* policy.c: guard verdicts applied to a client's messages, stand-ins for refused statements,
 * and the rewriting of their errors. */
#include "policy.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "conn.h"
#include "guard.h"
#include "log.h"
#include "maskbudget.h"
#include "maskcat.h"
#include "masksql.h"
#include "params.h"
#include "pipeline.h"
#include "poolmode.h"
#include "proto.h"
#include "server.h"
#include "textscan.h"

void policy_init_marker(struct worker *w)
{
    uint8_t r[8] = {0};
    if (RAND_bytes(r, sizeof(r)) != 1)
        log_warning("no randomness for the refusal marker: using a fixed one");
    snprintf(w->refuse_marker, sizeof(w->refuse_marker),
             "lakeproxy_refused_%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4],
             r[5], r[6], r[7]);
}

/* The SQL text a Query or Parse carries, NULL when the message is malformed. */
static const char *message_sql(uint8_t type, const uint8_t *body, uint32_t len)
{
    struct rd r;
    const char *name, *sql;
    if (type == 'Q')
        return len > 0 && body[len - 1] == 0 ? (const char *)body : NULL;
    rd_init(&r, body, len);
    return rd_str(&r, &name) && rd_str(&r, &sql) ? sql : NULL;
}

/* Writes the stand-in for a refused message: a syntax error naming the marker and the
 * refusal's number ("<marker>_<seq>"), so that its error can be told apart from any other and
 * matched to its reason even when the server skipped earlier stand-ins (an aborted transaction
 * answers 25P02; after an error the extended protocol skips everything up to Sync). */
static bool send_standin(struct server *s, uint8_t type, uint32_t seq)
{
    char text[64];
    snprintf(text, sizeof(text), "%s_%u", s->pool->w->refuse_marker, seq);
    struct buf b;
    buf_init(&b);
    if (type == 'P') {
        buf_msg_start(&b, 'P');
        buf_put_str(&b, "");
        buf_put_str(&b, text);
        buf_put_u16(&b, 0);
        buf_msg_finish(&b);
    } else {
        proto_query(&b, text);
    }
    bool ok = !b.failed && evbuffer_add(conn_output(s->bev), b.data, b.len) == 0;
    buf_free(&b);
    return ok;
}

/* Drops the oldest n remembered refusals. */
static void forget_refusals(struct server *s, int n)
{
    s->n_refusals -= n;
    memmove(&s->refusals[0], &s->refusals[n], sizeof(s->refusals[0]) * (size_t)s->n_refusals);
}

/* Logs a refusal. The parser's message quotes the text near the error, which may be a literal
 * value, and a reason that quotes_literal names a string constant in its one quoted span: the
 * client gets them, the log does not. */
static void log_refusal(const struct client *c, const char *reason, bool quotes_literal)
{
    const char *unparsed = strstr(reason, "could not parse it");
    const char *open = quotes_literal ? strchr(reason, '"') : NULL;
    const char *close = open ? strrchr(reason, '"') : NULL;
    if (open && close > open)
        log_info("client %llu %s (%s): statement refused: %.*s\"(a string constant, not "
                 "logged)\"%s",
                 (unsigned long long)c->id, c->addr, c->user, (int)(open - reason), reason,
                 close + 1);
    else
        log_info("client %llu %s (%s): statement refused: %.*s", (unsigned long long)c->id, c->addr,
                 c->user, unparsed ? (int)(unparsed - reason) + 18 : (int)strlen(reason), reason);
}

/* Replaces the client's message by a stand-in that fails, remembering reason for its error;
 * counted in *counter (RLS guard or masking refusals). */
static enum policy_result refuse_counted(struct client *c, uint8_t type, const char *reason,
                                         bool quotes_literal, const char **err, uint64_t *counter)
{
    struct server *s = c->server;
    if (s->n_refusals == MAX_REFUSALS) /* the oldest was skipped by the server, or its error */
        forget_refusals(s, 1);         /* will read "statement refused" without the reason */
    log_refusal(c, reason, quotes_literal);
    (*counter)++;
    uint32_t seq = ++s->refusal_seq;
    s->refusals[s->n_refusals].seq = seq;
    snprintf(s->refusals[s->n_refusals++].reason, sizeof(s->refusals[0].reason), "%s", reason);
    if (!send_standin(s, type, seq)) {
        *err = "out of memory";
        return POLICY_FAILED;
    }
    return POLICY_STANDIN;
}

/* The masking guard's names for one client: its rules' tables and columns and the catalog's
 * (children, partitions, resolved views and their columns). Sized from the catalog, never cut
 * off: a name left out would be a table the guard does not know is masked. */
struct mask_names {
    const char **tables, **columns;
};

static void mask_names_free(struct mask_names *nm)
{
    free(nm->tables);
    free(nm->columns);
}

/* The identity of client c's masking guard policy: its rules, the configuration and the
 * version of its database's catalog, unique to that catalog's read (verdicts are cached by
 * it: one database's must never serve another's, whose views may read masked columns under
 * the same names). False while the catalog is not read. */
static bool mask_policy_id(struct client *c, uint64_t *id)
{
    struct maskcat *mc = maskcat_for(c->w, c->database);
    if (!mc || !maskcat_ready(mc))
        return false;
    *id = (c->mask.id ^ (c->w->cfg_gen * 0x9e3779b97f4a7c15ull)) +
          maskcat_version(mc) * 0xc2b2ae3d27d4eb4full;
    return true;
}

/* The masking guard's policy for client c, whose catalog is read (names into nm: free with
 * mask_names_free). Built only when a verdict is not cached: it copies the catalog's names. */
static bool mask_policy(struct client *c, struct masksql_policy *p, struct mask_names *nm)
{
    struct maskcat *mc = maskcat_for(c->w, c->database);
    const struct mask_config *m = &c->w->cfg->masking;
    size_t bound = maskcat_names_bound(mc);
    nm->tables = malloc((c->mask.n_tables + bound + 1) * sizeof(*nm->tables));
    nm->columns = malloc((c->mask.n_columns + bound + 1) * sizeof(*nm->columns));
    if (!nm->tables || !nm->columns) {
        mask_names_free(nm);
        return false;
    }
    size_t n = 0, n_cols = 0;
    for (size_t i = 0; i < c->mask.n_tables; i++)
        nm->tables[n++] = c->mask.tables[i];
    n += maskcat_masked_tables(mc, c->mask.applies, c->mask.n_rules, nm->tables + n, bound);
    for (size_t i = 0; i < c->mask.n_columns; i++)
        nm->columns[n_cols++] = c->mask.columns[i];
    n_cols +=
        maskcat_view_columns(mc, c->mask.applies, c->mask.n_rules, nm->columns + n_cols, bound);
    *p = (struct masksql_policy){
        .columns = nm->columns,
        .n_columns = n_cols,
        .tables = nm->tables,
        .n_tables = n,
        .functions_allowed = (const char *const *)m->allow_functions.items,
        .n_functions_allowed = m->allow_functions.n,
        .strict_predicates = m->strict_predicates,
    };
    p->user_functions = maskcat_user_functions(mc, &p->n_user_functions);
    p->refused_relations = maskcat_refused_relations(mc, &p->n_refused_relations);
    p->table_columns = maskcat_table_columns(mc, &p->n_table_columns);
    p->row_functions = maskcat_row_functions(mc, &p->n_row_functions);
    p->relations = maskcat_relations(mc, &p->n_relations);
    p->user_operators = maskcat_user_operators(mc, &p->n_user_operators);
    p->user_cast_types = maskcat_user_cast_types(mc, &p->n_user_cast_types);
    p->write_refused = maskcat_write_refused(mc, &p->n_write_refused);
    return true;
}

/* The masking guard's verdict on sql for client c: cached, or checked under its policy; NULL
 * when the catalog is not read or memory ran out. */
static const struct masksql_verdict *mask_verdict(struct client *c, const char *sql)
{
    uint64_t id;
    if (!mask_policy_id(c, &id))
        return NULL;
    const struct masksql_verdict *v = masksql_cache_find(c->w->masksql, sql, id);
    if (v)
        return v;
    struct masksql_policy p;
    struct mask_names nm = {0};
    if (!mask_policy(c, &p, &nm))
        return NULL;
    v = masksql_cache_check(c->w->masksql, sql, &p, id);
    mask_names_free(&nm);
    return v;
}

bool policy_mask_charge(struct client *c, int tests)
{
    if (tests <= 0) /* (nearly every Bind: no budget to look up, no clock to read) */
        return true;
    return maskbudget_charge(&c->w->mask_buckets, c->user, tests,
                             c->w->cfg->masking.max_tests_per_second, server_now_ms());
}

void policy_mask_budget_message(struct client *c, char *out, size_t outsz)
{
    snprintf(out, outsz,
             "too many tests of masked columns: user \"%.64s\" may compare masked columns with "
             "values at most %d times per second (masking.max_tests_per_second); slow down",
             c->user, c->w->cfg->masking.max_tests_per_second);
}

/* Could sql change client_encoding (SET client_encoding, SET NAMES, set_config, RESET)?
 * Conservatively, by its words. */
static const char *const encoding_words[] = {"client_encoding", "standard_conforming", "names",
                                             "set"};
TEXTSCAN_SET_OF(encoding_set, encoding_words)

static bool changes_client_encoding(const char *sql)
{
    uint32_t found = textscan_set_find(&encoding_set, sql, 3);
    return (found & 3) || (found & 12) == 12;
}

/* Refuses sql when it could carry a masked value past the result rewriting (masksql.c). gv is
 * the RLS guard's verdict on it, which names the settings it changes however they are spelt
 * (U&"client\005fencoding", set_config(E'client\x5fencoding', ...)): the word scan alone
 * misses those (red team 10). */
static enum policy_result check_masking(struct client *c, uint8_t type, const char *sql,
                                        const struct guard_verdict *gv, const char **err)
{
    char reason[320];
    if (gv->changes_text_reading || changes_client_encoding(sql))
        return refuse_counted(c, type,
                              "masked clients cannot change client_encoding during a session "
                              "(masking counts characters in it): set it when connecting",
                              false, err, &c->w->mask_refusals);
    const struct masksql_verdict *v = mask_verdict(c, sql);
    if (!v) {
        struct maskcat *mc = maskcat_for(c->w, c->database);
        snprintf(reason, sizeof(reason), "%s: statement refused, try again",
                 mc && maskcat_error(mc)[0] ? maskcat_error(mc) : "masking catalog not read");
        return refuse_counted(c, type, reason, false, err, &c->w->mask_refusals);
    }
    c->mask_tests = v->tests > 0 ? (uint16_t)(v->tests < 65535 ? v->tests : 65535) : 0;
    c->mask_like = v->like;
    if (!v->refuse && type == 'Q' && !policy_mask_charge(c, v->tests)) {
        policy_mask_budget_message(c, reason, sizeof(reason));
        return refuse_counted(c, type, reason, false, err, &c->w->mask_refusals);
    }
    if (!v->refuse)
        return POLICY_PASS; /* a Parse's tests are charged at each Bind (pipeline.c) */
    struct maskcat *mc = v->stale_catalog ? maskcat_for(c->w, c->database) : NULL;
    if (mc && !maskcat_loading(mc)) /* (the retry is checked against the new read) */
        maskcat_refresh(c->w, mc);
    return refuse_counted(c, type, v->reason, v->reason_quotes_literal, err, &c->w->mask_refusals);
}

static enum policy_result refuse(struct client *c, uint8_t type, const char *reason,
                                 const char **err)
{
    return refuse_counted(c, type, reason, false, err, &c->w->refusals);
}

/* refuse, of a reason that may quote a string constant of the statement. */
static enum policy_result refuse_quoting(struct client *c, uint8_t type, const char *reason,
                                         bool quotes_literal, const char **err)
{
    return refuse_counted(c, type, reason, quotes_literal, err, &c->w->refusals);
}

/* The attribute prefix the guard protects for c ("app" when RLS is not configured). */
static const char *guard_prefix(const struct client *c)
{
    return c->w->cfg->rls.prefix ? c->w->cfg->rls.prefix : "app";
}

/* The RLS guard's reason as said to a masked client not under RLS: its rules hold for the
 * same cause (every client's server connections log in as one role), its words name RLS. */
static const char *reason_for_masked(const char *reason, char *out, size_t outsz)
{
    static const char rls[] = "under row-level security";
    const char *at = strstr(reason, rls);
    if (!at)
        return reason;
    snprintf(out, outsz, "%.*sfor clients with masked columns%s", (int)(at - reason), reason,
             at + sizeof(rls) - 1);
    return out;
}

/* A masked client not under RLS: the RLS guard's rules first (with the RLS prefix, or "app":
 * they refuse what would make the server read the text otherwise than libpg_query, a SQL-text
 * runner, set_config of a computed name ...), then the masking guard. */

static enum policy_result check_text_rules(struct client *c, uint8_t type, const char *sql,
                                           const char **err)
{
    const struct guard_verdict *v = guard_cache_check(c->w->guard, sql, guard_prefix(c));
    char reason[sizeof(v->reason) + 32];
    if (v->retire)
        c->server->retire_after = true;
    if (v->refuse)
        return refuse_counted(c, type, reason_for_masked(v->reason, reason, sizeof(reason)),
                              v->reason_quotes_literal, err, &c->w->mask_refusals);
    return check_masking(c, type, sql, v, err);
}

/* Carried SETs and RESETs (guard.h), all or none: the client's settings take them (a RESET
 * returns to the client's startup value, as PostgreSQL does, or drops the setting), to be
 * applied on every server that serves it, and its server's record of what it was given says
 * "unknown", so that the next client it serves gets SET or RESET again. The statement may yet
 * fail, be rolled back or never run: when the transaction is over, the server reads back what
 * it holds (SV_READBACK) and the client keeps that. False, changing nothing, when the client's
 * settings are full. */
static bool carry_settings(struct client *c, const struct guard_carry *carry, int n)
{
    size_t added = 0;
    for (int i = 0; i < n; i++) /* the value each change leaves: RESET, the startup one */
        added += !param_get(&c->wanted, carry[i].name) &&
                 (carry[i].value[0] || param_get(&c->at_startup, carry[i].name));
    if (c->wanted.n + added > MAX_TRACKED_PARAMS ||
        (c->server && c->server->applied.n + (size_t)n > MAX_TRACKED_PARAMS))
        return false;
    for (int i = 0; i < n; i++) {
        const char *v =
            carry[i].value[0] ? carry[i].value : param_get(&c->at_startup, carry[i].name);
        uint32_t bit = params_settable_bit(carry[i].name);
        if (c->server && !(c->server->carried_open & bit)) { /* first in this transaction */
            params_save_before(&c->server->carried_before, &c->server->carried_absent,
                               carry[i].name, bit, param_get(&c->wanted, carry[i].name));
            c->server->carried_open |= bit;
        }
        if (v)
            param_put(&c->wanted, carry[i].name, v);
        else
            param_remove(&c->wanted, carry[i].name);
        if (c->server) {
            param_put(&c->server->applied, carry[i].name, PARAM_UNKNOWN);
            c->server->carried |= bit;
            c->server->carried_reset = carry[i].value[0] ? c->server->carried_reset & ~bit
                                                         : c->server->carried_reset | bit;
        }
    }
    if (c->server && n > 0) /* the window ends with this statement's ReadyForQuery, after those
                               owed */
        c->server->carried_open_zs = c->server->in_flight + 1;
    return true;
}

bool policy_carry(struct client *c, const char *sql)
{
    if (!c->rls || !pool_mode_of(c->pool)->shares_servers)
        return true;
    const struct guard_verdict *v = guard_cache_check(c->w->guard, sql, c->w->cfg->rls.prefix);
    return carry_settings(c, v->carry, v->n_carry);
}

enum policy_result policy_check_client_msg(struct client *c, uint8_t type, uint32_t len,
                                           const uint8_t *body, const char **err)
{
    bool masked = c->mask.n_applied > 0;
    c->mask_tests = 0;
    c->mask_like.n = 0;
    if (type == 'F' && !client_under_policy(c))
        return POLICY_PASS;
    if (type == 'F')
        return refuse(c, type,
                      "the FunctionCall protocol message is not allowed under row-level "
                      "security or column masking",
                      err);
    const char *sql = message_sql(type, body, len);
    if (!sql) {
        *err = type == 'Q' ? "invalid Query message" : "invalid Parse message";
        return POLICY_FAILED;
    }
    if (!client_under_policy(c)) {
        uint32_t facts;
        if (client_query_facts(c, sql, &facts) && !(facts & TEXT_RESERVED_PREFIX))
            return POLICY_PASS; /* (the memo's scan found no reserved name's prefix) */
        struct guard_verdict rv;
        return guard_uses_reserved_name(sql, &rv) ? refuse(c, type, rv.reason, err) : POLICY_PASS;
    }
    if (!c->rls) /* the RLS guard's rules keep the text readable as the masking guard reads
                    it (standard_conforming_strings, client encoding, set_config) */
        return check_text_rules(c, type, sql, err);
    const struct guard_verdict *v = guard_cache_check(c->w->guard, sql, c->w->cfg->rls.prefix);
    if (v->retire)
        c->server->retire_after = true;
    if (v->refuse)
        return refuse_quoting(c, type, v->reason, v->reason_quotes_literal, err);
    if (v->session_set && pool_mode_of(c->pool)->shares_servers)
        return refuse_quoting(c, type, v->session_reason, v->session_reason_quotes_literal, err);
    /* a simple Query's carried changes are taken now, once it may run; a Parse's at each
     * Bind (policy_carry): a statement may be prepared once and run many times, or never */
    struct guard_carry carry[GUARD_MAX_CARRY];
    int n_carry = type == 'Q' && pool_mode_of(c->pool)->shares_servers ? v->n_carry : 0;
    memcpy(carry, v->carry, (size_t)n_carry * sizeof(carry[0]));
    enum policy_result r = masked ? check_masking(c, type, sql, v, err) : POLICY_PASS;
    if (r == POLICY_PASS && n_carry > 0 && !carry_settings(c, carry, n_carry))
        return refuse(c, type, "too many session parameters for lakeproxy to carry", err);
    return r;
}

uint8_t policy_statement_effects(struct client *c, const char *sql)
{
    const struct guard_verdict *v = guard_cache_check(c->w->guard, sql, guard_prefix(c));
    return (v->retire ? STMT_RETIRES : 0) | (c->rls && v->n_carry > 0 ? STMT_CARRIES : 0);
}

/* The number after "<marker>_" in a stand-in's error message; false when msg is not one. */
static bool standin_seq(const char *marker, const char *msg, uint32_t *seq)
{
    const char *at = strstr(msg, marker);
    if (!at || at[strlen(marker)] != '_')
        return false;
    char *end;
    unsigned long v = strtoul(at + strlen(marker) + 1, &end, 10);
    *seq = (uint32_t)v;
    return end != at + strlen(marker) + 1;
}

bool policy_rewrite_error(struct server *s, const uint8_t *body, uint32_t len)
{
    struct pg_error e;
    uint32_t seq;
    if (s->n_refusals == 0 || !s->client || !proto_parse_error(body, len, &e) ||
        strcmp(e.sqlstate, "42601") != 0 ||
        !standin_seq(s->pool->w->refuse_marker, e.message, &seq))
        return false;
    const char *reason = "statement refused by lakeproxy's row-level-security guard";
    int i = 0;
    while (i < s->n_refusals && s->refusals[i].seq != seq)
        i++;
    struct buf b;
    buf_init(&b);
    proto_error(&b, "ERROR", "42501", i < s->n_refusals ? s->refusals[i].reason : reason);
    forget_refusals(s, i < s->n_refusals ? i + 1 : 0); /* older ones were skipped */
    if (!b.failed)
        evbuffer_add(conn_output(s->client->bev), b.data, b.len);
    buf_free(&b);
    return true;
}
