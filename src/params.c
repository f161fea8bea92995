/* params.c: client session parameters: the allowed set, parsing `options`, and the SET/RESET
 * text that carries them onto whichever server connection serves the client. */
#include "params.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "guard.h"
#include "paramval.h"
#include "proto.h"

/* Parameters a client may set at startup, with the spelling the server uses. */
static const char *const settable[] = {
    /* at most MAX_TRACKED_PARAMS */
    "application_name",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "standard_conforming_strings",
    "extra_float_digits",
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "default_transaction_deferrable",
    "bytea_output",
};

#define N_SETTABLE (sizeof(settable) / sizeof(settable[0]))

const char *params_settable_name(const char *name)
{
    for (size_t i = 0; i < N_SETTABLE; i++)
        if (strcasecmp(name, settable[i]) == 0)
            return settable[i];
    return NULL;
}

bool param_copy(struct param_set *dst, const struct param_set *src)
{
    for (size_t i = 0; i < src->n; i++)
        if (!param_put(dst, src->items[i].name, src->items[i].value))
            return false;
    return true;
}

#define READBACK_VALUE_MAX 8192 /* longer read-back values are taken for a broken reply */
_Static_assert(N_SETTABLE <= 32, "a settable parameter's bit must fit a uint32_t");

uint32_t params_settable_bit(const char *canon)
{
    for (size_t i = 0; i < N_SETTABLE; i++)
        if (strcmp(canon, settable[i]) == 0)
            return UINT32_C(1) << i;
    return 0;
}

bool params_build_readback_sql(uint32_t mask, struct buf *sql)
{
    /* read committed: a carried serializable, read-only, deferrable default would make the
     * SELECT wait for a safe snapshot, and fail on a hot standby */
    static const char head[] = "BEGIN ISOLATION LEVEL READ COMMITTED;"
                               "SELECT name, setting, source <> 'session' "
                               "FROM pg_catalog.pg_settings WHERE name IN (";
    if (!mask)
        return false;
    buf_put_bytes(sql, head, sizeof(head) - 1);
    const char *sep = "'";
    for (size_t i = 0; i < N_SETTABLE; i++) {
        if (!(mask & (UINT32_C(1) << i)))
            continue;
        buf_put_bytes(sql, sep, strlen(sep));
        /* our own names, as pg_settings spells them (DateStyle): no quoting needed */
        buf_put_bytes(sql, settable[i], strlen(settable[i]));
        sep = "', '";
    }
    buf_put_bytes(sql, "');COMMIT", 10); /* with the NUL */
    return true;
}

/* The next text column of a DataRow as a NUL-terminated copy (NULL: null, cut, too long or
 * holding a NUL byte). */
static char *row_text(struct rd *r)
{
    int32_t len;
    const uint8_t *v;
    if (!rd_i32(r, &len) || len < 0 || len > READBACK_VALUE_MAX || !rd_bytes(r, (size_t)len, &v) ||
        memchr(v, 0, (size_t)len))
        return NULL;
    return strndup((const char *)v, (size_t)len);
}

uint32_t params_take_readback(const uint8_t *body, uint32_t len, uint32_t asked, uint32_t reset,
                              const struct param_set *at_startup, struct param_set *wanted,
                              struct param_set *applied, bool *to_startup)
{
    *to_startup = false;
    struct rd r;
    uint16_t cols;
    rd_init(&r, body, len);
    if (!rd_u16(&r, &cols) || cols != 3)
        return 0;
    char *name = row_text(&r), *setting = row_text(&r), *is_default = row_text(&r);
    const char *canon = name ? params_settable_name(name) : NULL;
    uint32_t bit = canon ? params_settable_bit(canon) & asked : 0;
    const char *startup = canon ? param_get(at_startup, canon) : NULL;
    bool ok = bit && setting && is_default && r.left == 0 && param_put(applied, canon, setting);
    if (ok && (reset & bit) && strcmp(is_default, "t") == 0) { /* RESET: the client's default */
        ok = startup ? param_put(wanted, canon, startup) : (param_remove(wanted, canon), true);
        *to_startup = ok && startup;
    } else if (ok)
        ok = param_put(wanted, canon, setting);
    free(name);
    free(setting);
    free(is_default);
    return ok ? bit : 0;
}

void params_put_status(struct buf *b, const char *name, const char *wanted,
                       const char *server_value)
{
    char spelt[64];
    proto_param_status(b, name,
                       wanted ? paramval_report(name, wanted, server_value, spelt, sizeof(spelt))
                              : server_value);
}

bool params_restored_msgs(uint32_t mask, const struct param_set *wanted,
                          const struct param_set *reported, struct buf *status,
                          struct param_set *to_set)
{
    bool ok = true;
    for (size_t i = 0; i < N_SETTABLE; i++) {
        const char *v = param_get(wanted, settable[i]);
        if (!(mask & (UINT32_C(1) << i)) || !v)
            continue;
        const char *now = param_get(reported, settable[i]);
        if (now) /* a setting the server reports: the client hears of it */
            params_put_status(status, settable[i], v, now);
        ok = ok && param_put(to_set, settable[i], v);
    }
    return ok && !status->failed;
}

uint32_t params_unreported_settable(const struct param_set *reported)
{
    uint32_t mask = 0;
    for (size_t i = 0; i < N_SETTABLE; i++)
        if (!param_get(reported, settable[i]))
            mask |= UINT32_C(1) << i;
    return mask;
}

uint32_t params_unreported_mask(const struct param_set *given, const struct param_set *reported)
{
    uint32_t mask = 0;
    for (size_t i = 0; i < given->n; i++)
        if (!param_get(reported, given->items[i].name))
            mask |= params_settable_bit(given->items[i].name);
    return mask;
}

bool params_tag_may_reset(const uint8_t *body, size_t len)
{
    static const char *const tags[] = {"RESET", "SET", "DISCARD ALL", "DO", "CALL"};
    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
        if (len == strlen(tags[i]) + 1 && memcmp(body, tags[i], len) == 0)
            return true;
    return false;
}

void params_mark_unknown(struct param_set *applied)
{
    params_mark_unknown_of(applied, UINT32_MAX);
}

void params_save_before(struct param_set *before, uint32_t *absent, const char *canon, uint32_t bit,
                        const char *old)
{
    param_remove(before, canon); /* (one recorded for an earlier transaction) */
    *absent = old ? *absent & ~bit : *absent | bit;
    if (old)
        param_put(before, canon, old);
}

void params_restore_before(struct param_set *wanted, const struct param_set *before,
                           uint32_t absent, uint32_t mask)
{
    for (size_t i = 0; i < N_SETTABLE; i++) {
        uint32_t bit = UINT32_C(1) << i;
        if (!(mask & bit))
            continue;
        const char *v = param_get(before, settable[i]);
        if (absent & bit)
            param_remove(wanted, settable[i]);
        else if (v)
            param_put(wanted, settable[i], v);
    }
}

void params_mark_unknown_of(struct param_set *applied, uint32_t mask)
{
    for (size_t i = 0; i < N_SETTABLE; i++)
        if (mask & (UINT32_C(1) << i))
            param_put(applied, settable[i], PARAM_UNKNOWN);
}

const char *param_get(const struct param_set *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++) /* (the first byte tells most names apart, without a call) */
        if (s->items[i].name[0] == name[0] && strcmp(s->items[i].name, name) == 0)
            return s->items[i].value;
    return NULL;
}

bool param_put(struct param_set *s, const char *name, const char *value)
{
    s->readable_known = false;
    s->version++;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->items[i].name, name) == 0) {
            char *v = strdup(value);
            if (!v)
                return false;
            free(s->items[i].value);
            s->items[i].value = v;
            return true;
        }
    if (s->n == MAX_TRACKED_PARAMS)
        return false;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return false;
    }
    s->items[s->n].name = n;
    s->items[s->n].value = v;
    s->n++;
    return true;
}

void param_remove(struct param_set *s, const char *name)
{
    s->readable_known = false;
    s->version++;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->items[i].name, name) == 0) {
            free(s->items[i].name);
            free(s->items[i].value);
            s->items[i] = s->items[--s->n];
            return;
        }
}

void param_clear(struct param_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->items[i].name);
        free(s->items[i].value);
    }
    s->n = 0;
    s->readable_known = false;
    s->version++;
}

/* Records one name=value setting, refusing names outside the settable list that custom does
 * not accept. */
static bool put_setting(struct param_set *out, const struct param_custom *custom, const char *name,
                        const char *value, char *err, size_t errsz)
{
    const char *canon = params_settable_name(name);
    if (!canon && custom && custom->accept(custom->arg, name)) {
        char low[128];
        size_t i = 0;
        for (; name[i] && i < sizeof(low) - 1; i++)
            low[i] = (char)tolower((unsigned char)name[i]);
        low[i] = '\0';
        out = custom->out;
        canon = low;
        if (param_put(out, canon, value))
            return true;
        snprintf(err, errsz, "too many startup parameters");
        return false;
    }
    if (!canon) {
        snprintf(err, errsz, "unsupported startup parameter: %.64s", name);
        return false;
    }
    char *clean = NULL;
    if (strcmp(canon, "application_name") == 0 && (clean = strdup(value))) {
        paramval_clean_application_name(clean); /* as PostgreSQL does */
        value = clean;
    }
    bool put = param_put(out, canon, value);
    free(clean);
    if (!put) {
        snprintf(err, errsz, "too many startup parameters");
        return false;
    }
    return true;
}

/* Splits `options` into words the way the server does: whitespace separates, backslash
 * escapes the next character. Returns the number of words, or -1 above max (each NUL-terminated in
 * store, which must hold 2 * strlen(opts) + 1 bytes: every word adds at most one NUL). */
static int split_options(const char *opts, char *store, char **words, int max)
{
    int n = 0;
    size_t o = 0;
    const char *p = opts;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        if (n == max)
            return -1;
        words[n++] = store + o;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
            if (*p == '\\' && p[1])
                p++;
            store[o++] = *p++;
        }
        store[o++] = '\0';
    }
    return n;
}

/* Parses "-c name=value", "-cname=value" and "--name=value" from `options`. */
static bool parse_options(const char *opts, struct param_set *out,
                          const struct param_custom *custom, char *err, size_t errsz)
{
    char store[2 * 1024 + 1], *words[64];
    if (strlen(opts) >= 1024) {
        snprintf(err, errsz, "startup parameter \"options\" is too long");
        return false;
    }
    int n = split_options(opts, store, words, 64);
    if (n < 0) {
        snprintf(err, errsz, "too many settings in startup parameter \"options\"");
        return false;
    }
    for (int i = 0; i < n; i++) {
        char *setting = NULL;
        if (strcmp(words[i], "-c") == 0 && i + 1 < n)
            setting = words[++i];
        else if (strncmp(words[i], "-c", 2) == 0 && words[i][2])
            setting = words[i] + 2;
        else if (strncmp(words[i], "--", 2) == 0)
            setting = words[i] + 2;
        char *eq = setting ? strchr(setting, '=') : NULL;
        if (!eq) {
            snprintf(err, errsz, "unsupported option in startup parameter \"options\": %.64s",
                     words[i]);
            return false;
        }
        *eq = '\0';
        for (char *c = setting; *c; c++)
            if (*c == '-')
                *c = '_';
        if (!put_setting(out, custom, setting, eq + 1, err, errsz))
            return false;
    }
    return true;
}

bool params_from_startup(const struct startup *st, struct param_set *out,
                         const struct param_custom *custom, char *err, size_t errsz)
{
    for (size_t i = 0; i < st->n_params; i++) {
        const char *name = st->params[i].name, *value = st->params[i].value;
        if (strcmp(name, "user") == 0 || strcmp(name, "database") == 0 ||
            strncmp(name, "_pq_.", 5) == 0)
            continue;
        bool ok = strcmp(name, "options") == 0 ? parse_options(value, out, custom, err, errsz)
                                               : put_setting(out, custom, name, value, err, errsz);
        if (!ok)
            return false;
    }
    return true;
}

void params_quote_literal(struct buf *sql, const char *value)
{
    buf_put_bytes(sql, "E'", 2);
    for (const char *p = value; *p; p++) {
        if (*p == '\'' || *p == '\\')
            buf_put_u8(sql, (uint8_t)*p);
        buf_put_u8(sql, (uint8_t)*p);
    }
    buf_put_u8(sql, '\'');
}

/* Is the server's value cur (NULL: not known) the wanted one? PARAM_UNKNOWN never is, even
 * to a client that asked for those very bytes. */
static bool holds_wanted(const char *cur, const char *want)
{
    return cur && strcmp(cur, want) == 0 &&
           (cur[0] != PARAM_UNKNOWN[0] /* (no call for most) */ || strcmp(cur, PARAM_UNKNOWN) != 0);
}

/* Does a server whose applied settings are applied hold wanted's, in the same order? (They
 * are copied from its last client's, in their order: most checkouts find them so.) */
static bool same_in_order(const struct param_set *wanted, const struct param_set *applied)
{
    if (wanted->n != applied->n)
        return false;
    for (size_t i = 0; i < wanted->n; i++)
        if (strcmp(wanted->items[i].name, applied->items[i].name) != 0 ||
            !holds_wanted(applied->items[i].value, wanted->items[i].value))
            return false;
    return true;
}

bool params_build_sync_sql(const struct param_set *wanted, const struct param_set *applied,
                           const struct param_set *reported, struct buf *sql)
{
    if (same_in_order(wanted, applied)) /* (nothing to set, nothing to reset) */
        return false;
    bool any = false;
    for (size_t i = 0; i < wanted->n; i++) {
        const struct param *p = &wanted->items[i];
        const char *cur = param_get(applied, p->name);
        if (!cur)
            cur = param_get(reported, p->name);
        if (holds_wanted(cur, p->value))
            continue;
        /* set_config takes the value as the startup packet gives it; SET would quote a
         * list setting's literal whole (search_path 'a,b' would name one schema "a,b") */
        static const char set_config[] = "SELECT pg_catalog.set_config('";
        buf_put_bytes(sql, set_config, sizeof(set_config) - 1);
        buf_put_bytes(sql, p->name, strlen(p->name));
        buf_put_bytes(sql, "', ", 3);
        params_quote_literal(sql, p->value);
        buf_put_bytes(sql, ", false);", 9);
        any = true;
    }
    for (size_t i = 0; i < applied->n; i++) {
        if (param_get(wanted, applied->items[i].name))
            continue;
        buf_put_bytes(sql, "RESET ", 6);
        buf_put_bytes(sql, applied->items[i].name, strlen(applied->items[i].name));
        buf_put_bytes(sql, ";", 1);
        any = true;
    }
    if (any)
        buf_put_u8(sql, 0);
    return any;
}

bool params_text_readable(struct param_set *p)
{
    if (p->readable_known) /* asked per message: the settings change rarely */
        return p->readable;
    const char *scs = param_get(p, "standard_conforming_strings");
    const char *enc = param_get(p, "client_encoding");
    p->readable = (!scs || guard_scs_on(scs)) && (!enc || guard_safe_client_encoding(enc));
    p->readable_known = true;
    return p->readable;
}
