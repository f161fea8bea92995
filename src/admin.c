/* admin.c: the admin console: the virtual database "lakeproxy", answering SHOW HELP, VERSION,
 * DATABASES, POOLS, CLIENTS, SERVERS, STATS, CONFIG, CREDENTIALS, QUERIES, PUSHDOWN and RELOAD,
 * PAUSE, RESUME, RECONNECT, KILL, DISABLE, ENABLE, SHUTDOWN as ordinary result sets. */
#include "admin.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admincmd.h"
#include "buf.h"
#include "client.h"
#include "conn.h"
#include "credentials.h"
#include "log.h"
#include "pool.h"
#include "poolmode.h"
#include "proto.h"
#include "stats.h"
#include "tablesize.h"
#include "worker.h"

#define TEXT_OID 25
#define MAX_COLS 16

/* A result set being built: RowDescription once, then rows. */
struct result {
    struct buf b;
    int ncols;
    int rows;
};

static void result_start(struct result *r, const char *const *cols)
{
    buf_init(&r->b);
    r->ncols = 0;
    r->rows = 0;
    while (cols[r->ncols])
        r->ncols++;
    buf_msg_start(&r->b, 'T');
    buf_put_u16(&r->b, (uint16_t)r->ncols);
    for (int i = 0; i < r->ncols; i++) {
        buf_put_str(&r->b, cols[i]);
        buf_put_u32(&r->b, 0); /* no table */
        buf_put_u16(&r->b, 0);
        buf_put_u32(&r->b, TEXT_OID);
        buf_put_u16(&r->b, 0xffff); /* typlen -1 */
        buf_put_u32(&r->b, 0xffffffff);
        buf_put_u16(&r->b, 0); /* text format */
    }
    buf_msg_finish(&r->b);
}

/* One printf-formatted value, into out (cut short past outsz). */
static const char *fmt_value(char *out, size_t outsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static const char *fmt_value(char *out, size_t outsz, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, outsz, fmt, ap);
    va_end(ap);
    return out;
}

/* A number as text, into a buffer of 24 bytes. */
static const char *num(char out[24], long long v)
{
    snprintf(out, 24, "%lld", v);
    return out;
}

/* Adds a row of r->ncols values as they are: each its own column whatever it holds (names
 * clients chose among them). */
static void result_values(struct result *r, const char *const *vals)
{
    buf_msg_start(&r->b, 'D');
    buf_put_u16(&r->b, (uint16_t)r->ncols);
    for (int i = 0; i < r->ncols; i++) {
        buf_put_u32(&r->b, (uint32_t)strlen(vals[i]));
        buf_put_bytes(&r->b, vals[i], strlen(vals[i]));
    }
    buf_msg_finish(&r->b);
    r->rows++;
}

static void result_send(struct client *c, struct result *r, const char *tag)
{
    buf_msg_start(&r->b, 'C');
    buf_put_str(&r->b, tag);
    buf_msg_finish(&r->b);
    proto_ready(&r->b, 'I');
    if (!r->b.failed)
        conn_write(c->bev, r->b.data, r->b.len);
    buf_free(&r->b);
}

static void send_error(struct client *c, const char *sqlstate, const char *msg)
{
    struct buf b;
    buf_init(&b);
    proto_error(&b, "ERROR", sqlstate, msg);
    proto_ready(&b, 'I');
    if (!b.failed)
        conn_write(c->bev, b.data, b.len);
    buf_free(&b);
}

static void send_command_ok(struct client *c, const char *tag)
{
    struct result r;
    buf_init(&r.b);
    result_send(c, &r, tag);
}

static const char *client_state_name(const struct client *c)
{
    static const char *const names[] = {"login", "waiting", "active", "idle", "closing", "admin"};
    return names[c->state];
}

static const char *server_state_name(const struct server *s)
{
    static const char *const names[] = {"connecting", "idle",     "setting", "active",
                                        "resetting",  "checking", "reading"};
    return names[s->state];
}

static void show_pools(struct client *c)
{
    static const char *const cols[] = {
        "database", "user",          "pool_mode", "cl_active", "cl_waiting", "cl_idle", "sv_active",
        "sv_idle",  "sv_connecting", "pool_size", "paused",    "disabled",   NULL};
    struct result r;
    struct list *it, *tmp, *ct, *ctmp;
    result_start(&r, cols);
    list_for_each_safe (it, tmp, &c->w->pools) {
        struct pool *p = list_entry(it, struct pool, node);
        int active = 0, waiting = 0, idle = 0;
        list_for_each_safe (ct, ctmp, &c->w->clients) {
            struct client *o = list_entry(ct, struct client, node);
            if (o->pool != p)
                continue;
            active += o->state == CL_ACTIVE;
            waiting += o->state == CL_WAITING;
            idle += o->state == CL_IDLE;
        }
        char n[7][24];
        const char *row[] = {p->db->name,
                             p->db->user,
                             pool_mode_of(p)->name,
                             num(n[0], active),
                             num(n[1], waiting),
                             num(n[2], idle),
                             num(n[3], (long long)list_count(&p->active)),
                             num(n[4], (long long)list_count(&p->idle)),
                             num(n[5], (long long)list_count(&p->connecting)),
                             num(n[6], p->db->pool.size),
                             p->paused ? "yes" : "no",
                             p->disabled ? "yes" : "no"};
        result_values(&r, row);
    }
    result_send(c, &r, "SHOW");
}

static void show_clients(struct client *c)
{
    static const char *const cols[] = {"id",    "user", "database",  "addr",
                                       "state", "tls",  "server_id", NULL};
    struct result r;
    struct list *it, *tmp;
    result_start(&r, cols);
    list_for_each_safe (it, tmp, &c->w->clients) {
        struct client *o = list_entry(it, struct client, node);
        char id[24], server_id[24];
        /* names a client sent are shown once it has logged in: before, they may be anything
         * (a password typed into the user field), as the log never holds a refused one */
        bool in = o->sent_ready;
        const char *row[] = {num(id, (long long)o->id),
                             in && o->user ? o->user : "",
                             in && o->database ? o->database : "",
                             o->addr,
                             client_state_name(o),
                             o->tls ? "yes" : "no",
                             num(server_id, o->server ? (long long)o->server->id : 0)};
        result_values(&r, row);
    }
    result_send(c, &r, "SHOW");
}

/* Adds one row per server on list l. */
static void server_rows(struct result *r, struct list *l, time_t now)
{
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, l) {
        struct server *s = list_entry(it, struct server, node);
        char n[4][24];
        const char *row[] = {num(n[0], (long long)s->id),
                             s->pool->db->name,
                             s->pool->db->user,
                             server_state_name(s),
                             num(n[1], (long long)s->be_pid),
                             s->tls ? "yes" : "no",
                             num(n[2], s->created ? (long long)(now - s->created) : 0),
                             num(n[3], s->client ? (long long)s->client->id : 0)};
        result_values(r, row);
    }
}

static void show_servers(struct client *c)
{
    static const char *const cols[] = {"id",  "database", "user",      "state", "backend_pid",
                                       "tls", "age_s",    "client_id", NULL};
    struct result r;
    struct list *it, *tmp;
    time_t now = time(NULL);
    result_start(&r, cols);
    list_for_each_safe (it, tmp, &c->w->pools) {
        struct pool *p = list_entry(it, struct pool, node);
        server_rows(&r, &p->active, now);
        server_rows(&r, &p->idle, now);
        server_rows(&r, &p->connecting, now);
    }
    result_send(c, &r, "SHOW");
}

static void show_stats(struct client *c)
{
    static const char *const cols[] = {"database",
                                       "total_xact_count",
                                       "total_query_count",
                                       "total_wait_count",
                                       "total_wait_us",
                                       "avg_wait_us",
                                       NULL};
    struct result r;
    struct list *it, *tmp;
    result_start(&r, cols);
    list_for_each_safe (it, tmp, &c->w->pools) {
        struct pool *p = list_entry(it, struct pool, node);
        char n[5][24];
        const char *row[] = {
            p->db->name,
            num(n[0], (long long)p->stats.xacts),
            num(n[1], (long long)p->stats.queries),
            num(n[2], (long long)p->stats.waits),
            num(n[3], (long long)p->stats.wait_us),
            num(n[4], (long long)(p->stats.waits ? p->stats.wait_us / p->stats.waits : 0))};
        result_values(&r, row);
    }
    result_send(c, &r, "SHOW");
}

/* The names of l, comma-separated, into out ("..." ends a list cut short). */
static const char *join_names(const struct string_list *l, char *out, size_t outsz)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < l->n; i++) {
        int n = snprintf(out + o, outsz - o, "%s%s", i ? "," : "", l->items[i]);
        if (n < 0 || (size_t)n >= outsz - o) {
            snprintf(out + (outsz > 4 ? outsz - 4 : 0), outsz > 4 ? 4 : outsz, "...");
            break;
        }
        o += (size_t)n;
    }
    return out;
}

/* Who may log into d (databases.X.allow), as a SHOW CONFIG row; none when everyone may. */
static void allow_row(struct result *r, const struct db_config *d)
{
    char users[512], groups[512], key[300], value[1100];
    if (d->allow.users.n == 0 && d->allow.groups.n == 0)
        return;
    const char *row[] = {fmt_value(key, sizeof(key), "databases.%s.allow", d->name),
                         fmt_value(value, sizeof(value), "users=%s groups=%s",
                                   join_names(&d->allow.users, users, sizeof(users)),
                                   join_names(&d->allow.groups, groups, sizeof(groups)))};
    result_values(r, row);
}

/* Where users may connect from, as SHOW CONFIG rows: each users: entry with a from: list, and
 * auth_query.from for the users it finds. */
static void from_rows(struct result *r, const struct config *cfg)
{
    char key[300], value[1100];
    for (size_t i = 0; i < cfg->n_users; i++) {
        const struct user_config *u = &cfg->users[i];
        if (u->from.n == 0)
            continue;
        const char *row[] = {fmt_value(key, sizeof(key), "users.%s.from", u->name),
                             netrule_format(&u->from, value, sizeof(value))};
        result_values(r, row);
    }
    if (cfg->auth_query.enabled && cfg->auth_query.from.n > 0) {
        const char *row[] = {"auth_query.from",
                             netrule_format(&cfg->auth_query.from, value, sizeof(value))};
        result_values(r, row);
    }
}

/* Adds a SHOW CONFIG row: key, and the printf-formatted value. */
static void config_row(struct result *r, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void config_row(struct result *r, const char *key, const char *fmt, ...)
{
    char value[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    const char *row[] = {key, value};
    result_values(r, row);
}

/* Settings without secrets: passwords and verifiers are never shown. */
static void show_config(struct client *c)
{
    static const char *const cols[] = {"key", "value", NULL};
    const struct config *cfg = c->w->cfg;
    struct result r;
    result_start(&r, cols);
    config_row(&r, "config_file", "%s", cfg->path);
    config_row(&r, "listen", "%s:%d", cfg->listen_host, cfg->listen_port);
    config_row(&r, "listen.tls", "%s", cfg->tls_cert ? "on" : "off");
    if (cfg->tls_cert) /* (what a client must bring: an admin checks it here) */
        config_row(&r, "listen.tls.clients", "client_tls=%s client_cert=%s client_ca=%s crl=%s",
                   cfg->tls_client_tls ? "require" : "optional",
                   cfg->tls_client_cert ? "require" : "optional",
                   cfg->tls_client_ca ? cfg->tls_client_ca : "(none)",
                   cfg->tls_client_crl ? cfg->tls_client_crl : "(none)");
    if (c->w->unix_path[0]) /* (as at start: a reload does not move it) */
        config_row(&r, "listen.unix_socket", "%s mode %04o", c->w->unix_path,
                   (unsigned)c->w->unix_mode);
    config_row(&r, "limits.max_clients", "%d", cfg->max_clients);
    config_row(&r, "limits.max_message_size", "%zu", cfg->max_message_size);
    config_row(&r, "limits.max_message_memory", "%zu", cfg->max_message_memory);
    config_row(&r, "limits.shutdown_timeout_s", "%d", cfg->shutdown_timeout_s);
    config_row(&r, "limits.login_timeout_s", "%d", cfg->login_timeout_s);
    config_row(&r, "limits.core_dumps", "%s", cfg->core_dumps ? "true" : "false");
    config_row(&r, "limits.tcp", "keepalive_idle_s=%d interval_s=%d count=%d user_timeout_ms=%d",
               cfg->tcp.keepalive_idle_s, cfg->tcp.keepalive_interval_s, cfg->tcp.keepalive_count,
               cfg->tcp.user_timeout_ms);
    config_row(&r, "log.level", "%s", cfg->log_level);
    for (size_t i = 0; i < cfg->n_dbs; i++) {
        const struct db_config *d = &cfg->dbs[i];
        static const char *const tls[] = {"disable", "prefer", "require", "verify-full"};
        char key[300];
        config_row(&r, fmt_value(key, sizeof(key), "databases.%s", d->name),
                   "%s:%d/%s user=%s tls=%s mode=%s size=%d max_wait_ms=%d "
                   "idle_transaction_timeout_s=%d query_timeout_s=%d client_idle_timeout_s=%d",
                   d->host, d->port, d->dbname, d->user, tls[d->tls], pool_mode_for(d)->name,
                   d->pool.size, d->pool.max_wait_ms, d->pool.idle_transaction_timeout_s,
                   d->pool.query_timeout_s, d->pool.client_idle_timeout_s);
        allow_row(&r, d);
    }
    config_row(&r, "users", "%zu configured%s", cfg->n_users,
               cfg->auth_query.enabled ? ", auth_query on" : "");
    from_rows(&r, cfg);
    result_send(c, &r, "SHOW");
}

/* UTC time as ISO 8601, "" for 0. */
static void iso_time(time_t t, char out[32])
{
    struct tm tm;
    out[0] = '\0';
    if (t && gmtime_r(&t, &tm))
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* One row per rotating credential: never the token, only its fingerprint. */
static void show_credentials(struct client *c)
{
    static const char *const cols[] = {"database",
                                       "provider",
                                       "user",
                                       "state",
                                       "token",
                                       "obtained_at",
                                       "expires_at",
                                       "expires_in_s",
                                       "next_refresh_in_s",
                                       "refreshes_ok",
                                       "refreshes_failed",
                                       "last_error",
                                       NULL};
    struct result r;
    struct list *it;
    time_t now = time(NULL);
    char got[32], exp[32];
    result_start(&r, cols);
    for (it = c->w->creds.next; it != &c->w->creds; it = it->next) {
        const struct credential *cr = list_entry(it, struct credential, node);
        bool valid = credentials_token_valid(cr, now);
        const char *state = !cr->token     ? (cr->failures ? "failing" : "pending")
                            : !valid       ? "expired"
                            : cr->failures ? "valid, refresh failing"
                                           : "valid";
        iso_time(cr->token ? cr->obtained : 0, got);
        iso_time(cr->expires, exp);
        char in[24] = "", next[24] = "";
        if (cr->expires)
            snprintf(in, sizeof(in), "%lld", (long long)(cr->expires - now));
        if (cr->refresh_at && cr->token)
            snprintf(next, sizeof(next), "%lld", (long long)(cr->refresh_at - now));
        char ok[24], failed[24];
        const char *row[] = {cr->db->name,
                             credentials_provider_name(cr->db->cred.provider),
                             cr->db->user,
                             state,
                             cr->token ? cr->fingerprint : "",
                             got,
                             exp,
                             in,
                             next,
                             num(ok, (long long)cr->refreshes_ok),
                             num(failed, (long long)cr->refreshes_failed),
                             cr->last_error};
        result_values(&r, row);
    }
    result_send(c, &r, "SHOW");
}

/* Milliseconds with three decimals. */
static void fmt_ms(char *out, size_t outsz, uint64_t us)
{
    snprintf(out, outsz, "%llu.%03llu", (unsigned long long)(us / 1000),
             (unsigned long long)(us % 1000));
}

/* Percent with one decimal, of part in whole. */
static void fmt_pct(char *out, size_t outsz, uint64_t part, uint64_t whole)
{
    uint64_t permille = whole ? (part * 1000 + whole / 2) / whole : 0;
    snprintf(out, outsz, "%llu.%llu", (unsigned long long)(permille / 10),
             (unsigned long long)(permille % 10));
}

/* Statements by total time, as pg_stat_statements shows them, with pushdown. */
static void show_queries(struct client *c, int limit)
{
    static const char *const cols[] = {"fingerprint", "query",  "kind",         "calls",   "errors",
                                       "rows",        "bytes",  "total_ms",     "mean_ms", "p50_ms",
                                       "p95_ms",      "p99_ms", "pushdown_pct", "tables",  NULL};
    const struct stats_fp *top[100];
    struct result r;
    result_start(&r, cols);
    size_t n = c->w->stats ? stats_top(c->w->stats, top, (size_t)limit) : 0;
    for (size_t i = 0; i < n; i++) {
        const struct stats_fp *f = top[i];
        char v[13][64], tables[512] = "";
        snprintf(v[0], 64, "%016llx", (unsigned long long)f->fingerprint);
        snprintf(v[1], 64, "%s", sql_kind_name(f->a.kind));
        snprintf(v[2], 64, "%llu", (unsigned long long)f->calls);
        snprintf(v[3], 64, "%llu", (unsigned long long)f->errors);
        snprintf(v[4], 64, "%llu", (unsigned long long)f->rows);
        snprintf(v[5], 64, "%llu", (unsigned long long)f->bytes);
        fmt_ms(v[6], 64, f->total_us);
        fmt_ms(v[7], 64, f->calls ? f->total_us / f->calls : 0);
        fmt_ms(v[8], 64, stats_hist_quantile(&f->hist, 0.50));
        fmt_ms(v[9], 64, stats_hist_quantile(&f->hist, 0.95));
        fmt_ms(v[10], 64, stats_hist_quantile(&f->hist, 0.99));
        fmt_pct(v[11], 64, f->pushed_down, f->calls);
        for (int t = 0; t < f->a.n_read; t++)
            snprintf(tables + strlen(tables), sizeof(tables) - strlen(tables), "%s%s", t ? "," : "",
                     f->a.read[t]);
        const char *row[] = {v[0],  f->a.normalized ? f->a.normalized : "(did not parse)",
                             v[1],  v[2],
                             v[3],  v[4],
                             v[5],  v[6],
                             v[7],  v[8],
                             v[9],  v[10],
                             v[11], tables};
        result_values(&r, row);
    }
    result_send(c, &r, "SHOW");
}

struct pushdown_ctx {
    struct result *r;
    struct worker *w;
};

static void pushdown_row(void *arg, const struct stats_table *t)
{
    struct pushdown_ctx *pc = arg;
    char v[10][32];
    double size = tablesize_get(pc->w, t->db, t->table);
    if (size >= 0)
        snprintf(v[7], 32, "%.0f", size);
    else
        snprintf(v[7], 32, "%s", "");
    if (size > 0 && t->unfiltered > 0)
        snprintf(v[8], 32, "%.1f",
                 100.0 * (double)t->unfiltered_rows / ((double)t->unfiltered * size));
    else
        snprintf(v[8], 32, "%s", "");
    snprintf(v[0], 32, "%llu", (unsigned long long)t->reads);
    fmt_pct(v[1], 32, t->filtered, t->reads);
    snprintf(v[2], 32, "%llu", (unsigned long long)t->unfiltered);
    snprintf(v[3], 32, "%llu", (unsigned long long)t->unfiltered_rows);
    snprintf(v[4], 32, "%llu", (unsigned long long)t->unfiltered_bytes);
    snprintf(v[5], 32, "%llu", (unsigned long long)t->rows);
    snprintf(v[6], 32, "%llu", (unsigned long long)t->bytes);
    const char *row[] = {t->db, t->table, t->app, v[0], v[1], v[2],
                         v[3],  v[4],     v[7],   v[8], v[5], v[6]};
    result_values(pc->r, row);
}

/* Reads per table and application_name: how many pushed a WHERE condition down, and what the
 * unfiltered ones pulled. */
static void show_pushdown(struct client *c)
{
    static const char *const cols[] = {"database",
                                       "table",
                                       "application_name",
                                       "reads",
                                       "filtered_pct",
                                       "unfiltered_reads",
                                       "unfiltered_rows",
                                       "unfiltered_bytes",
                                       "reltuples",
                                       "unfiltered_pulled_pct",
                                       "rows",
                                       "bytes",
                                       NULL};
    struct result r;
    struct pushdown_ctx pc = {&r, c->w};
    result_start(&r, cols);
    if (c->w->stats)
        stats_each_table(c->w->stats, pushdown_row, &pc);
    result_send(c, &r, "SHOW");
}

/* The commands, one per row, as SHOW HELP lists them. */
static const char *const help_lines[] = {
    "SHOW HELP",     "SHOW VERSION", "SHOW DATABASES", "SHOW POOLS",       "SHOW CLIENTS",
    "SHOW SERVERS",  "SHOW STATS",   "SHOW CONFIG",    "SHOW CREDENTIALS", "SHOW QUERIES [n]",
    "SHOW PUSHDOWN", "RELOAD",       "PAUSE [db]",     "RESUME [db]",      "RECONNECT [db]",
    "KILL db",       "DISABLE db",   "ENABLE db",      "SHUTDOWN",         NULL};

/* A result of one column, col, with a row per value of the NULL-ended vals. */
static void show_column(struct client *c, const char *col, const char *const *vals)
{
    const char *const cols[] = {col, NULL};
    struct result r;
    result_start(&r, cols);
    for (size_t i = 0; vals[i]; i++)
        result_values(&r, &vals[i]);
    result_send(c, &r, "SHOW");
}

static void show_help(struct client *c)
{
    show_column(c, "command", help_lines);
}

static void show_version(struct client *c)
{
    static const char *const version[] = {"lakeproxy " LAKEPROXY_VERSION, NULL};
    show_column(c, "version", version);
}

/* One row per configured database entry: where it leads, as whom (never a password), its pool
 * settings, the server connections open now and whether PAUSE or DISABLE holds it. */
static void show_databases(struct client *c)
{
    static const char *const cols[] = {"name",
                                       "host",
                                       "port",
                                       "database",
                                       "user", /* where it leads, as whom */
                                       "pool_mode",
                                       "pool_size",
                                       "min_pool_size",
                                       "reserve_pool", /* its settings */
                                       "current_connections",
                                       "paused",
                                       "disabled", /* its state now */
                                       NULL};
    const struct config *cfg = c->w->cfg;
    struct result r;
    result_start(&r, cols);
    for (size_t i = 0; i < cfg->n_dbs; i++) {
        const struct db_config *d = &cfg->dbs[i];
        const struct pool *p = pool_find(c->w, d->name);
        char n[5][24];
        const char *row[] = {d->name,
                             d->host,
                             num(n[0], d->port),
                             d->dbname,
                             d->user,
                             pool_mode_for(d)->name,
                             num(n[1], d->pool.size),
                             num(n[2], d->pool.min),
                             num(n[3], d->pool.reserve),
                             num(n[4], p ? p->n_servers : 0),
                             p && p->paused ? "1" : "0",
                             p && p->disabled ? "1" : "0"};
        result_values(&r, row);
    }
    result_send(c, &r, "SHOW");
}

struct show_item {
    const char *name;
    void (*show)(struct client *c);
};

/* What SHOW shows, by its keyword (QUERIES, which takes a number, is apart). */
static const struct show_item show_items[] = {
    {"HELP", show_help},         {"VERSION", show_version}, {"DATABASES", show_databases},
    {"POOLS", show_pools},       {"CLIENTS", show_clients}, {"SERVERS", show_servers},
    {"STATS", show_stats},       {"CONFIG", show_config},   {"CREDENTIALS", show_credentials},
    {"PUSHDOWN", show_pushdown},
};

/* SHOW's argument, a keyword: what it shows. */
static void run_show(struct client *c, const struct admincmd *cmd)
{
    const char *arg = cmd->arg_quoted ? "" : cmd->arg;
    bool counted = strcasecmp(arg, "QUERIES") == 0;
    if (cmd->count >= 0 && !counted) {
        send_error(c, "42601", "only SHOW QUERIES takes a number (of rows)");
        return;
    }
    if (counted) {
        show_queries(c, cmd->count < 1 ? 20 : cmd->count > 100 ? 100 : (int)cmd->count);
        return;
    }
    for (size_t i = 0; i < sizeof(show_items) / sizeof(show_items[0]); i++)
        if (strcasecmp(arg, show_items[i].name) == 0) {
            show_items[i].show(c);
            return;
        }
    send_error(c, "42601",
               "unknown SHOW: use HELP, VERSION, DATABASES, POOLS, CLIENTS, SERVERS, STATS, "
               "CONFIG, CREDENTIALS, QUERIES [n] or PUSHDOWN");
}

static void pause_pool(struct client *c, struct pool *p)
{
    (void)c;
    pool_set_paused(p, true);
}

static void resume_pool(struct client *c, struct pool *p)
{
    (void)c;
    pool_set_paused(p, false);
}

/* RECONNECT: each server closes once released, so the next ones log in afresh (a new password,
 * a host name that resolves elsewhere); no client sees an error. */
static void reconnect_pool(struct client *c, struct pool *p)
{
    (void)c;
    pool_retire_servers(p, "RECONNECT by an administrator");
    pool_spawn_for_waiters(p);
}

/* KILL: every client of p (told 57P01) and every server of p go now; the admin consoles stay
 * (their database is never a pool's). */
static void kill_pool(struct client *c, struct pool *p)
{
    char msg[200];
    struct list *it, *tmp;
    snprintf(msg, sizeof(msg),
             "terminating connection: an administrator ended the connection with KILL \"%.64s\"",
             p->db->name);
    list_for_each_safe (it, tmp, &c->w->clients) {
        struct client *o = list_entry(it, struct client, node);
        if (o->state != CL_ADMIN && o->database && strcmp(o->database, p->db->name) == 0)
            client_terminate(o, "57P01", msg);
    }
    pool_close_servers(p, "KILL by an administrator");
}

static void disable_pool(struct client *c, struct pool *p)
{
    (void)c;
    p->disabled = true;
}

static void enable_pool(struct client *c, struct pool *p)
{
    (void)c;
    p->disabled = false;
}

/* An admin command that acts on pools: on the named database's, or (when the name may be left
 * out) on every pool. */
struct pool_verb {
    const char *name;
    bool name_required;
    void (*act)(struct client *c, struct pool *p);
};

static const struct pool_verb pool_verbs[] = {
    {"PAUSE", false, pause_pool},         {"RESUME", false, resume_pool},
    {"RECONNECT", false, reconnect_pool}, {"KILL", true, kill_pool},
    {"DISABLE", true, disable_pool},      {"ENABLE", true, enable_pool},
};

static const struct pool_verb *find_pool_verb(const char *verb)
{
    for (size_t i = 0; i < sizeof(pool_verbs) / sizeof(pool_verbs[0]); i++)
        if (strcasecmp(verb, pool_verbs[i].name) == 0)
            return &pool_verbs[i];
    return NULL;
}

/* The pool of database name: its pool, made now for a configured entry that has none yet; NULL
 * (the client told why) when name is neither a pool's nor a configured entry's. may_omit: the
 * command acts on every pool without a name (said when the name is ""). */
static struct pool *named_pool(struct client *c, const char *name, bool may_omit)
{
    char msg[300];
    struct pool *p = pool_find(c->w, name);
    const struct db_config *db = p ? NULL : config_find_db(c->w->cfg, name);
    if (!p && db && !(p = pool_get(c->w, db, msg, sizeof(msg)))) {
        send_error(c, "08006", msg);
        return NULL;
    }
    if (!p) {
        snprintf(msg, sizeof(msg), "no pool for database \"%.64s\"%s", name,
                 *name || !may_omit ? "" : " (leave the name out for every pool)");
        send_error(c, "3D000", msg);
    }
    return p;
}

/* Checks the arguments of v (a database name, required or not, and no number); false with the
 * client told 42601 when they do not fit. */
static bool pool_verb_args_fit(struct client *c, const struct pool_verb *v,
                               const struct admincmd *cmd)
{
    char err[100];
    if (cmd->count < 0 && (cmd->has_arg || !v->name_required))
        return true;
    snprintf(err, sizeof(err), "%s takes %s", v->name,
             v->name_required ? "a database name" : "at most a database name");
    send_error(c, "42601", err);
    return false;
}

/* Runs v on the pool cmd names, or on every pool when it names none. */
static void run_pool_verb(struct client *c, const struct pool_verb *v, const struct admincmd *cmd)
{
    struct list *it, *tmp;
    if (!pool_verb_args_fit(c, v, cmd))
        return;
    if (cmd->has_arg) {
        struct pool *p = named_pool(c, cmd->arg, !v->name_required);
        if (!p)
            return;
        v->act(c, p);
    } else {
        list_for_each_safe (it, tmp, &c->w->pools) {
            v->act(c, list_entry(it, struct pool, node));
        }
    }
    log_info("admin %s: %s %s", c->user, v->name, cmd->has_arg ? cmd->arg : "all");
    send_command_ok(c, v->name);
}

static void run_command(struct client *c, const char *sql)
{
    struct admincmd cmd;
    char err[200];
    if (admincmd_is_set(sql)) { /* (drivers send some as they connect: pgjdbc, as to PgBouncer) */
        send_command_ok(c, "SET");
        return;
    }
    if (!admincmd_parse(sql, &cmd, err, sizeof(err))) {
        send_error(c, "42601", err);
        return;
    }
    const char *verb = cmd.verb;
    const struct pool_verb *pv = find_pool_verb(verb);
    bool bare = strcasecmp(verb, "RELOAD") == 0 || strcasecmp(verb, "SHUTDOWN") == 0;
    if (strcasecmp(verb, "SHOW") == 0) {
        run_show(c, &cmd);
    } else if (pv) {
        run_pool_verb(c, pv, &cmd);
    } else if (bare && (cmd.has_arg || cmd.count >= 0)) {
        snprintf(err, sizeof(err), "%s takes no argument", verb);
        send_error(c, "42601", err);
    } else if (strcasecmp(verb, "RELOAD") == 0) {
        worker_reload(c->w);
        if (!c->closing) /* (the new file may have taken this admin off admin.users) */
            send_command_ok(c, "RELOAD");
    } else if (strcasecmp(verb, "SHUTDOWN") == 0) {
        send_command_ok(c, "SHUTDOWN");
        log_info("admin %s: SHUTDOWN", c->user);
        worker_start_drain(c->w);
    } else {
        send_error(c, "42601",
                   "unknown admin command: use SHOW, RELOAD, PAUSE, RESUME, RECONNECT, KILL, "
                   "DISABLE, ENABLE or SHUTDOWN (SHOW HELP lists them)");
    }
}

void admin_login(struct client *c)
{
    struct buf b;
    buf_init(&b);
    proto_param_status(&b, "server_version", "15.0 (lakeproxy " LAKEPROXY_VERSION ")");
    proto_param_status(&b, "server_encoding", "UTF8");
    proto_param_status(&b, "client_encoding", "UTF8");
    proto_param_status(&b, "DateStyle", "ISO");
    proto_param_status(&b, "integer_datetimes", "on");
    proto_param_status(&b, "standard_conforming_strings", "on");
    proto_param_status(&b, "application_name", "");
    proto_backend_key(&b, c->cancel_pid, c->cancel_key);
    proto_ready(&b, 'I');
    if (!b.failed)
        conn_write(c->bev, b.data, b.len);
    buf_free(&b);
    c->state = CL_ADMIN;
    c->sent_ready = true;
    log_info("client %llu %s: admin console login as %s", (unsigned long long)c->id, c->addr,
             c->user);
}

/* The admin console's messages are commands: at most this long (limits.max_message_size is
 * for the databases' clients). */
#define ADMIN_MESSAGE_MAX (64 * 1024)

void admin_read(struct client *c)
{
    struct evbuffer *in = conn_input(c->bev);
    uint8_t hdr[5], type;
    uint32_t len;
    const char *err;
    while (!c->closing && !client_out_full(c) && evbuffer_copyout(in, hdr, 5) == 5) {
        if (proto_check_header(hdr, ADMIN_MESSAGE_MAX, &type, &len, &err) != PROTO_OK) {
            bool big = hdr[0] != 0 && strchr("QPBDECHSX", hdr[0]) &&
                       ((uint32_t)hdr[1] << 24 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 8 |
                        hdr[4]) > ADMIN_MESSAGE_MAX;
            client_fail(c, big ? "54000" : "08P01",
                        big ? "admin command too long: the admin console takes commands of at "
                              "most 64 KiB"
                            : err);
            return;
        }
        if (evbuffer_get_length(in) < 5 + (size_t)len)
            return;
        if (type == 'X') {
            client_close(c, "admin console closed");
            return;
        }
        uint8_t *msg = evbuffer_pullup(in, 5 + (ssize_t)len);
        if (!msg) {
            client_close(c, "out of memory reading an admin command");
            return;
        }
        if (type == 'Q' && len > 0 && msg[4 + len] == 0)
            run_command(c, (const char *)msg + 5);
        else if (type == 'Q')
            send_error(c, "08P01", "invalid Query message");
        else if (type == 'S') /* the extended protocol's messages are answered at Sync */
            send_error(c, "0A000",
                       "the admin console takes simple queries only, as PgBouncer's (pgjdbc: "
                       "preferQueryMode=simple; psycopg: prepare=False, no pipeline)");
        else if (!strchr("PBDECH", type)) {
            client_fail(c, "08P01", "invalid frontend message type");
            return;
        }
        evbuffer_drain(in, 5 + (size_t)len);
    }
}
