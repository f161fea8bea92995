/* params.c: client session parameters: the allowed set, parsing `options`, and the SET/RESET
 * text that carries them onto whichever server connection serves the client. */
#include "params.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "guard.h"

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

const char *params_settable_name(const char *name)
{
    for (size_t i = 0; i < sizeof(settable) / sizeof(settable[0]); i++)
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

void params_mark_unknown(struct param_set *applied)
{
    for (size_t i = 0; i < sizeof(settable) / sizeof(settable[0]); i++)
        param_put(applied, settable[i], PARAM_UNKNOWN);
}

const char *param_get(const struct param_set *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->items[i].name, name) == 0)
            return s->items[i].value;
    return NULL;
}

bool param_put(struct param_set *s, const char *name, const char *value)
{
    s->readable_known = false;
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
    if (!param_put(out, canon, value)) {
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

bool params_build_sync_sql(const struct param_set *wanted, const struct param_set *applied,
                           const struct param_set *reported, struct buf *sql)
{
    bool any = false;
    for (size_t i = 0; i < wanted->n; i++) {
        const struct param *p = &wanted->items[i];
        const char *cur = param_get(applied, p->name);
        if (!cur)
            cur = param_get(reported, p->name);
        if (cur && strcmp(cur, p->value) == 0)
            continue;
        buf_put_bytes(sql, "SET ", 4);
        buf_put_bytes(sql, p->name, strlen(p->name));
        buf_put_bytes(sql, " TO ", 4);
        params_quote_literal(sql, p->value);
        buf_put_bytes(sql, ";", 1);
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
