/* paramval.c: session parameter values, as PostgreSQL reads and reports them (paramval.h). */
#include "paramval.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* libpq's copies of PostgreSQL's encoding table (exported by libpq, declared in the server's
 * headers only): a name or alias to its number (-1: none), and the number to its name. */
extern int pg_char_to_encoding(const char *name);
extern const char *pg_encoding_to_char(int encoding);

/* PostgreSQL's parse_bool: on, off, true, false, yes, no, 1, 0, and unique prefixes of the
 * words (not "o"), in any case; *out gets the value. */
static bool read_bool(const char *v, bool *out)
{
    static const struct {
        const char *word;
        size_t min; /* shortest prefix taken */
        bool value;
    } words[] = {{"true", 1, true}, {"false", 1, false}, {"yes", 1, true}, {"no", 1, false},
                 {"on", 2, true},   {"off", 2, false},   {"1", 1, true},   {"0", 1, false}};
    size_t n = strlen(v);
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (n >= words[i].min && n <= strlen(words[i].word) &&
            strncasecmp(v, words[i].word, n) == 0) {
            *out = words[i].value;
            return true;
        }
    return false;
}

static bool is_bool_param(const char *canon)
{
    return strcmp(canon, "standard_conforming_strings") == 0 ||
           strcmp(canon, "default_transaction_read_only") == 0 ||
           strcmp(canon, "default_transaction_deferrable") == 0;
}

/* Is v one of names (case-insensitive)? Its index, or -1. */
static int one_of(const char *v, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(v, names[i]) == 0)
            return (int)i;
    return -1;
}

static const char *const interval_styles[] = {"postgres", "postgres_verbose", "sql_standard",
                                              "iso_8601"};
static const char *const bytea_outputs[] = {"hex", "escape"};
static const char *const isolations[] = {"serializable", "repeatable read", "read committed",
                                         "read uncommitted"};

/* DateStyle: an output style and a field order, as PostgreSQL's check_datestyle reads them. */
enum { DS_NONE = -1 };
static const char *const ds_styles[] = {"ISO", "SQL", "Postgres", "German"};
static const char *const ds_orders[] = {"DMY", "MDY", "YMD"};

struct datestyle {
    int style, order; /* indexes above, or DS_NONE */
};

/* Reads a DateStyle list ("iso, dmy", "German", "SQL,EURO") into ds, each part only when
 * given; false when a word is unknown or two contradict each other. */
static bool read_datestyle(const char *v, struct datestyle *ds)
{
    static const struct {
        const char *word;
        int style, order;
    } words[] = {{"iso", 0, DS_NONE},      {"sql", 1, DS_NONE},         {"postgres", 2, DS_NONE},
                 {"german", 3, DS_NONE},   {"dmy", DS_NONE, 0},         {"euro", DS_NONE, 0},
                 {"european", DS_NONE, 0}, {"mdy", DS_NONE, 1},         {"us", DS_NONE, 1},
                 {"noneuro", DS_NONE, 1},  {"noneuropean", DS_NONE, 1}, {"ymd", DS_NONE, 2},
                 {"default", 0, 1}};
    ds->style = ds->order = DS_NONE;
    bool order_given = false, any = false;
    for (const char *p = v; *p;) {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        size_t n = strcspn(p, ", \t\n\r");
        if (n == 0)
            break;
        size_t i = 0;
        while (i < sizeof(words) / sizeof(words[0]) &&
               !(strlen(words[i].word) == n && strncasecmp(p, words[i].word, n) == 0))
            i++;
        if (i == sizeof(words) / sizeof(words[0]))
            return false;
        if (words[i].style != DS_NONE && words[i].order != DS_NONE) { /* DEFAULT: ISO, MDY */
            ds->style = words[i].style;
            ds->order = words[i].order;
        } else if (words[i].style != DS_NONE) {
            if (ds->style != DS_NONE && ds->style != words[i].style)
                return false;
            ds->style = words[i].style;
            if (words[i].style == 3 && !order_given) /* German implies DMY */
                ds->order = 0;
        } else {
            if (order_given && ds->order != words[i].order)
                return false;
            ds->order = words[i].order;
            order_given = true;
        }
        any = true;
        p += n;
    }
    return any;
}

bool paramval_check(const char *canon, const char *value, char *err, size_t errsz)
{
    bool b;
    struct datestyle ds;
    bool ok = true;
    if (is_bool_param(canon))
        ok = read_bool(value, &b);
    else if (strcmp(canon, "client_encoding") == 0)
        ok = pg_char_to_encoding(value) >= 0;
    else if (strcmp(canon, "DateStyle") == 0)
        ok = read_datestyle(value, &ds);
    else if (strcmp(canon, "IntervalStyle") == 0)
        ok = one_of(value, interval_styles, 4) >= 0;
    else if (strcmp(canon, "bytea_output") == 0)
        ok = one_of(value, bytea_outputs, 2) >= 0;
    else if (strcmp(canon, "default_transaction_isolation") == 0)
        ok = one_of(value, isolations, 4) >= 0;
    else if (strcmp(canon, "extra_float_digits") == 0) {
        char *end;
        long n = strtol(value, &end, 10);
        ok = *value && !*end && n >= -15 && n <= 3;
    }
    if (!ok)
        snprintf(err, errsz, "invalid value for parameter \"%s\": \"%.64s\"", canon, value);
    return ok;
}

const char *paramval_report(const char *canon, const char *value, const char *server_value,
                            char *buf, size_t bufsz)
{
    bool b;
    int i;
    struct datestyle ds, now;
    if (is_bool_param(canon) && read_bool(value, &b)) {
        snprintf(buf, bufsz, "%s", b ? "on" : "off");
    } else if (strcmp(canon, "client_encoding") == 0 && (i = pg_char_to_encoding(value)) >= 0) {
        snprintf(buf, bufsz, "%s", pg_encoding_to_char(i));
    } else if (strcmp(canon, "DateStyle") == 0 && read_datestyle(value, &ds)) {
        /* a part not given stays as the server has it (ISO, MDY when unknown) */
        if (!server_value || !read_datestyle(server_value, &now) || now.style == DS_NONE)
            now = (struct datestyle){0, 1};
        int order = ds.order != DS_NONE ? ds.order : now.order != DS_NONE ? now.order : 1;
        snprintf(buf, bufsz, "%s, %s", ds_styles[ds.style != DS_NONE ? ds.style : now.style],
                 ds_orders[order]);
    } else if (strcmp(canon, "IntervalStyle") == 0 &&
               (i = one_of(value, interval_styles, 4)) >= 0) {
        snprintf(buf, bufsz, "%s", interval_styles[i]);
    } else if (strcmp(canon, "TimeZone") == 0 &&
               (strcasecmp(value, "UTC") == 0 || strcasecmp(value, "GMT") == 0)) {
        snprintf(buf, bufsz, "%s", strcasecmp(value, "UTC") == 0 ? "UTC" : "GMT");
    } else {
        return value;
    }
    return buf;
}

void paramval_clean_application_name(char *value)
{
    for (char *p = value; *p; p++)
        if ((unsigned char)*p < 32 || (unsigned char)*p > 126)
            *p = '?';
}
