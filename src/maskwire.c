/* maskwire.c: result plans from RowDescription, DataRow rewriting, and the Describe the proxy
 * adds before each Execute of a masked client. */
#include "maskwire.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "client.h"
#include "conn.h"
#include "maskcat.h"
#include "params.h"
#include "prepared.h"

/* Masked rows are written to the client in batches of about this many bytes. */
#define MASKWIRE_BATCH (32 * 1024)
/* Errors and notices of masked clients are read whole, up to this size. */
#define MASKWIRE_MAX_NOTICE (64 * 1024)

void maskwire_reset(struct server *s)
{
    maskwire_flush(s);
    for (uint16_t i = 0; s->mplan_fns && i < s->mplan.n_cols; i++)
        mask_fn_free(&s->mplan_fns[i]);
    s->mplan.n_cols = s->mplan.n_masked = 0;
    s->mplan_set = false;
    s->mask_wait = s->mask_waited = false;
}

void maskwire_free(struct server *s)
{
    maskwire_reset(s);
    free(s->mplan.cols);
    free(s->mplan_fns);
    s->mplan.cols = NULL;
    s->mplan_fns = NULL;
    s->mplan_cap = 0;
    buf_free(&s->mask_out);
    OPENSSL_cleanse(s->mplan_key, sizeof(s->mplan_key));
}

/* How the client's encoding counts characters. */
static enum mask_charset charset_of(const struct server *s)
{
    const char *enc = param_get(&s->reported, "client_encoding");
    if (!enc || strcasecmp(enc, "UTF8") == 0 || strcasecmp(enc, "UTF-8") == 0)
        return MASK_CHARS_UTF8;
    if (strcasecmp(enc, "SQL_ASCII") == 0 || strncasecmp(enc, "LATIN", 5) == 0 ||
        strncasecmp(enc, "WIN", 3) == 0 || strncasecmp(enc, "ISO_8859", 8) == 0 ||
        strncasecmp(enc, "KOI8", 4) == 0)
        return MASK_CHARS_BYTES;
    return MASK_CHARS_UNKNOWN;
}

static enum relay_verdict refuse(struct server *s, const char *fmt, const char *name)
{
    snprintf(s->err_state, sizeof(s->err_state), "42501");
    snprintf(s->err_msg, sizeof(s->err_msg), fmt, name);
    s->pool->w->mask_refusals++;
    return RV_ERROR;
}

static bool plan_room(struct server *s, uint16_t n)
{
    if (n <= s->mplan_cap && s->mplan.cols)
        return true;
    struct mask_col *cols = realloc(s->mplan.cols, (n ? n : 1) * sizeof(*cols));
    if (cols)
        s->mplan.cols = cols;
    struct mask_fn *fns = cols ? realloc(s->mplan_fns, (n ? n : 1) * sizeof(*fns)) : NULL;
    if (fns)
        s->mplan_fns = fns;
    if (!cols || !fns)
        return false;
    s->mplan_cap = n;
    return true;
}

/* Masks column i of the plan with rule k's function (a copy: a reload may free the rule). */
static bool plan_mask(struct server *s, uint16_t i, const struct mask_fn *fn, uint32_t type_oid,
                      int16_t format)
{
    struct mask_fn *f = &s->mplan_fns[i];
    *f = *fn;
    if (f->text && !(f->text = strdup(f->text)))
        return false;
    s->mplan.cols[i] = (struct mask_col){f, mask_type_class(type_oid), format};
    s->mplan.n_masked++;
    return true;
}

/* At most this many names of resolved views' masked columns are compared with a computed
 * result column's name. */
#define VIEW_NAMES_MAX 512

/* The names of resolved views' masked columns, read from the catalog once per RowDescription
 * (at its first computed column), not once per computed column: a result of many computed
 * columns costs the catalog once. */
struct view_names {
    bool made;
    size_t n;
    const char *names[VIEW_NAMES_MAX];
};

/* Is name (a result column's name) one of the client's masked column names (its rules', or
 * those of resolved views' columns carrying them)? */
static bool masked_name(const struct client *c, const struct maskcat *mc, struct view_names *vn,
                        const char *name)
{
    for (size_t i = 0; i < c->mask.n_columns; i++)
        if (strcasecmp(c->mask.columns[i], name) == 0)
            return true;
    if (!vn->made) {
        vn->n = mc ? maskcat_view_columns(mc, c->mask.applies, c->mask.n_rules, vn->names,
                                          VIEW_NAMES_MAX)
                   : 0;
        vn->made = true;
    }
    for (size_t i = 0; i < vn->n; i++)
        if (strcasecmp(vn->names[i], name) == 0)
            return true;
    return false;
}

/* Decides column i: masked, passed, refused (RV_ERROR), or unknown (RV_WAIT). */
static enum relay_verdict plan_column(struct server *s, struct maskcat *mc, struct view_names *vn,
                                      uint16_t i, const char *name, uint32_t rel, int16_t attnum,
                                      uint32_t type_oid, int16_t format)
{
    struct client *c = s->client;
    s->mplan.cols[i] = (struct mask_col){NULL, MASK_TYPE_OTHER, format};
    s->mplan_fns[i] = (struct mask_fn){0};
    if (rel == 0)
        return masked_name(c, mc, vn, name) ? refuse(s,
                                                     "result column \"%s\" is computed and carries "
                                                     "a masked column's name: select the masked "
                                                     "column itself, without an expression",
                                                     name)
                                            : RV_PASS;
    const struct mask_config *m = &s->pool->w->cfg->masking;
    int k = mc ? maskcat_column(mc, rel, attnum, c->mask.applies, m->rules, c->mask.n_rules)
               : MASKCAT_UNKNOWN;
    if (k == MASKCAT_TAINTED)
        return refuse(s,
                      "result column \"%s\" comes from a view that reads masked columns: "
                      "query the table it reads instead, where masking applies",
                      name);
    if (k == MASKCAT_UNKNOWN) {
        if (s->mask_waited && !(mc && maskcat_loading(mc)))
            return refuse(s,
                          "cannot tell whether result column \"%s\" is masked (the masking "
                          "catalog could not be read): try again",
                          name);
        return RV_WAIT;
    }
    if (k == MASKCAT_REDACT) {
        static const struct mask_fn redact = {MASK_REDACT, 0, 0, NULL};
        return plan_mask(s, i, &redact, type_oid, format) ? RV_PASS : RV_ERROR;
    }
    if (k >= 0 && (size_t)k < c->mask.n_rules && c->mask.applies[k])
        return plan_mask(s, i, &m->rules[k].fn, type_oid, format) ? RV_PASS : RV_ERROR;
    return RV_PASS;
}

/* Builds the plan of a RowDescription body. */
static enum relay_verdict plan_from_row_description(struct server *s, const uint8_t *body,
                                                    uint32_t len)
{
    struct rd r;
    uint16_t n;
    bool waited = s->mask_waited; /* (plan_column refuses what a read could not tell) */
    rd_init(&r, body, len);
    maskwire_reset(s);
    s->mask_waited = waited;
    client_mask_sync(s->client); /* rule numbers of the running configuration */
    if (!rd_u16(&r, &n) || !plan_room(s, n))
        return RV_ERROR;
    struct maskcat *mc = maskcat_for(s->pool->w, s->client->database);
    struct view_names vn;
    vn.made = false;
    enum relay_verdict worst = RV_PASS;
    for (uint16_t i = 0; i < n; i++) {
        const char *name;
        uint32_t rel, type_oid, typmod;
        uint16_t attnum, typlen, format;
        if (!rd_str(&r, &name) || !rd_u32(&r, &rel) || !rd_u16(&r, &attnum) ||
            !rd_u32(&r, &type_oid) || !rd_u16(&r, &typlen) || !rd_u32(&r, &typmod) ||
            !rd_u16(&r, &format))
            return RV_ERROR;
        s->mplan.n_cols = (uint16_t)(i + 1);
        enum relay_verdict v =
            plan_column(s, mc, &vn, i, name, rel, (int16_t)attnum, type_oid, (int16_t)format);
        if (v == RV_ERROR)
            return v;
        if (v == RV_WAIT)
            worst = RV_WAIT; /* go on: every unknown table is asked about in one read */
    }
    if (r.left != 0)
        return RV_ERROR;
    return worst;
}

/* Stops for the catalog read that will tell the unknown tables apart. */
static enum relay_verdict wait_for_catalog(struct server *s)
{
    struct maskcat *mc = maskcat_for(s->pool->w, s->client->database);
    maskwire_reset(s);
    if (!mc)
        return refuse(s, "%s", "out of memory");
    if (!maskcat_loading(mc))
        maskcat_refresh(s->pool->w, mc);
    s->mask_wait = true;
    s->mask_waited = true;
    return RV_WAIT;
}

static enum relay_verdict on_row_description(struct server *s, const uint8_t *body, uint32_t len)
{
    enum relay_verdict v = plan_from_row_description(s, body, len);
    if (v == RV_WAIT)
        return wait_for_catalog(s);
    s->mask_waited = false;
    if (v != RV_PASS)
        return v;
    s->mplan_set = true;
    s->mplan.cs = charset_of(s);
    const struct mask_config *m = &s->pool->w->cfg->masking;
    size_t klen = m->hash_key_len < sizeof(s->mplan_key) ? m->hash_key_len : 0;
    memcpy(s->mplan_key, m->hash_key ? m->hash_key : (const uint8_t *)"", klen);
    s->mplan.key = (struct mask_key){s->mplan_key, klen};
    return RV_STREAM;
}

void maskwire_flush(struct server *s)
{
    if (s->mask_out.len > 0 && s->client)
        evbuffer_add(conn_output(s->client->bev), s->mask_out.data, s->mask_out.len);
    buf_reset(&s->mask_out);
}

/* Writes the masked DataRow in place of the server's: rows gather in s->mask_out and go to
 * the client in batches (maskwire_flush), before any other message. */
static enum relay_verdict on_data_row(struct server *s, const uint8_t *body, uint32_t len)
{
    const char *err = NULL;
    size_t before = s->mask_out.len;
    if (!mask_datarow(&s->mplan, body, len, &s->mask_out, &err) || s->mask_out.failed) {
        s->mask_out.len = before; /* never the half-written row */
        s->mask_out.failed = false;
        return refuse(s, "a data row could not be masked (%s): connection closed",
                      err ? err : "out of memory");
    }
    if (s->mask_out.len >= MASKWIRE_BATCH)
        maskwire_flush(s);
    s->pool->w->masked_values += s->mplan.n_masked;
    return RV_DROP;
}

enum relay_verdict maskwire_server_msg(struct server *s, uint8_t type, uint32_t len,
                                       const uint8_t *body)
{
    if (type != 'D')
        maskwire_flush(s); /* masked rows first: every other message goes out after them */
    switch (type) {
    case 'T': return body ? on_row_description(s, body, len) : RV_NEED_BODY;
    case 'D':
        if (!s->mplan_set)
            return refuse(s, "%s",
                          "a data row arrived without a row description: connection "
                          "closed");
        if (s->mplan.n_masked == 0)
            return RV_STREAM;
        if (len > s->pool->w->cfg->max_message_size)
            return refuse(s, "%s",
                          "a data row to be masked is larger than "
                          "limits.max_message_size: connection closed");
        return body ? on_data_row(s, body, len) : RV_NEED_BODY;
    case 'E': /* ErrorResponse */
    case 'N': /* NoticeResponse: both may carry a DETAIL to strip (maskwire_strip_detail) */
        if (len > MASKWIRE_MAX_NOTICE)
            return refuse(s, "%s",
                          "an error or notice too large to check for masked values: "
                          "connection closed");
        if (!body)
            return RV_NEED_BODY;
        if (type == 'E')
            maskwire_reset(s);
        return RV_STREAM;
    case 'n': /* NoData */
    case 'C': /* CommandComplete */
    case 's': /* PortalSuspended */
    case 'I': /* EmptyQueryResponse */
    case 'Z': maskwire_reset(s); return RV_STREAM;
    default: return RV_STREAM;
    }
}

/* Errors whose message quotes bytes of a value: a character the client encoding lacks. */
static bool quotes_value_bytes(const char *sqlstate)
{
    return strcmp(sqlstate, "22P05") == 0 || strcmp(sqlstate, "22021") == 0;
}

bool maskwire_strip_detail(struct server *s, const uint8_t *body, uint32_t len, uint8_t type)
{
    struct rd r;
    uint8_t code;
    const char *value;
    bool has_detail = false, quotes = false;
    rd_init(&r, body, len);
    while (rd_u8(&r, &code) && code != 0 && rd_str(&r, &value)) {
        has_detail |= code == 'D';
        quotes |= code == 'C' && quotes_value_bytes(value);
    }
    if (!has_detail && !quotes)
        return false;
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, type);
    rd_init(&r, body, len);
    while (rd_u8(&r, &code) && code != 0 && rd_str(&r, &value)) {
        if (code == 'D')
            continue;
        buf_put_u8(&b, code);
        buf_put_str(&b, code == 'M' && quotes ? "a value has a character the client encoding "
                                                "cannot represent (its bytes are not shown "
                                                "to masked clients)"
                                              : value);
    }
    buf_put_u8(&b, 0);
    buf_msg_finish(&b);
    if (!b.failed)
        evbuffer_add(conn_output(s->client->bev), b.data, b.len);
    buf_free(&b);
    return true; /* the original never goes out, even when the copy failed */
}

bool maskwire_describe_portal(struct server *s, const uint8_t *execute_body, uint32_t len)
{
    struct rd r;
    const char *portal;
    rd_init(&r, execute_body, len);
    if (!rd_str(&r, &portal))
        return false;
    struct buf b;
    buf_init(&b);
    buf_msg_start(&b, 'D');
    buf_put_u8(&b, 'P');
    buf_put_str(&b, portal);
    buf_msg_finish(&b);
    bool ok = !b.failed && rq_push(&s->replies, RK_DROP_DESCRIBE, NULL) &&
              evbuffer_add(conn_output(s->bev), b.data, b.len) == 0;
    buf_free(&b);
    return ok;
}
