/* metrics.c: /metrics and /healthz over evhttp. */
#include "metrics.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "credentials.h"
#include "list.h"
#include "log.h"
#include "monotime.h"
#include "stats.h"
#include "statslog.h"
#include "tokenauth.h"

/* Upper bounds (seconds) of the latency histogram's buckets, as Prometheus expects them. */
static const double latency_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct buf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0)
        buf_put_bytes(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* # HELP and # TYPE of a metric. */
static void describe(struct buf *b, const char *name, const char *type, const char *help)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values are database names: lower-case letters, digits and the like, but escape the
 * three characters the format reserves all the same. */
static const char *label(const char *v, char *out, size_t outsz)
{
    size_t o = 0;
    for (const char *p = v; *p && o + 3 < outsz; p++) {
        if (*p == '\\' || *p == '"' || *p == '\n') {
            out[o++] = '\\';
            out[o++] = *p == '\n' ? 'n' : *p;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
    return out;
}

struct pool_counts {
    int active, waiting, idle;
};

static struct pool_counts count_clients(struct worker *w, const struct pool *p)
{
    struct pool_counts n = {0};
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &w->clients) {
        const struct client *c = list_entry(it, struct client, node);
        if (c->pool != p)
            continue;
        n.active += c->state == CL_ACTIVE;
        n.waiting += c->state == CL_WAITING;
        n.idle += c->state == CL_IDLE;
    }
    return n;
}

static void render_pools(struct worker *w, struct buf *b)
{
    char db[160];
    struct list *it, *tmp;
    describe(b, "lakeproxy_clients", "gauge", "Client connections per database and state.");
    list_for_each_safe (it, tmp, &w->pools) {
        struct pool *p = list_entry(it, struct pool, node);
        struct pool_counts n = count_clients(w, p);
        label(p->db->name, db, sizeof(db));
        put(b, "lakeproxy_clients{database=\"%s\",state=\"active\"} %d\n", db, n.active);
        put(b, "lakeproxy_clients{database=\"%s\",state=\"waiting\"} %d\n", db, n.waiting);
        put(b, "lakeproxy_clients{database=\"%s\",state=\"idle\"} %d\n", db, n.idle);
    }
    describe(b, "lakeproxy_servers", "gauge", "Server connections per database and state.");
    list_for_each_safe (it, tmp, &w->pools) {
        struct pool *p = list_entry(it, struct pool, node);
        label(p->db->name, db, sizeof(db));
        put(b, "lakeproxy_servers{database=\"%s\",state=\"active\"} %zu\n", db,
            list_count(&p->active));
        put(b, "lakeproxy_servers{database=\"%s\",state=\"idle\"} %zu\n", db, list_count(&p->idle));
        put(b, "lakeproxy_servers{database=\"%s\",state=\"connecting\"} %zu\n", db,
            list_count(&p->connecting));
    }
    describe(b, "lakeproxy_pool_size", "gauge", "Configured pool.size per database.");
    list_for_each_safe (it, tmp, &w->pools) {
        struct pool *p = list_entry(it, struct pool, node);
        put(b, "lakeproxy_pool_size{database=\"%s\"} %d\n", label(p->db->name, db, sizeof(db)),
            p->db->pool.size);
    }
}

static void render_counters(struct worker *w, struct buf *b)
{
    static const struct {
        const char *name, *help;
        size_t offset;
        bool micros;
    } counters[] = {
        {"lakeproxy_transactions_total", "Transactions served.", offsetof(struct pool, stats.xacts),
         false},
        {"lakeproxy_queries_total", "Queries served (ReadyForQuery count).",
         offsetof(struct pool, stats.queries), false},
        {"lakeproxy_waits_total", "Clients that waited for a server connection.",
         offsetof(struct pool, stats.waits), false},
        {"lakeproxy_wait_seconds_total", "Time clients spent waiting for a server connection.",
         offsetof(struct pool, stats.wait_us), true},
    };
    char db[160];
    struct list *it, *tmp;
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        describe(b, counters[i].name, "counter", counters[i].help);
        list_for_each_safe (it, tmp, &w->pools) {
            struct pool *p = list_entry(it, struct pool, node);
            uint64_t v = *(const uint64_t *)((const char *)p + counters[i].offset);
            label(p->db->name, db, sizeof(db));
            if (counters[i].micros)
                put(b, "%s{database=\"%s\"} %llu.%06llu\n", counters[i].name, db,
                    (unsigned long long)(v / 1000000), (unsigned long long)(v % 1000000));
            else
                put(b, "%s{database=\"%s\"} %llu\n", counters[i].name, db, (unsigned long long)v);
        }
    }
}

/* The count of a latency histogram's samples at or below bound seconds (by bucket upper
 * bounds: a sample counts in the first Prometheus bucket that holds its whole bucket). */
static uint64_t count_le(const struct stats_hist *h, double bound)
{
    uint64_t n = 0;
    for (int i = 0; i < STATS_BUCKETS; i++)
        if (stats_hist_upper_us(i) <= bound * 1e6)
            n += h->b[i];
    return n;
}

static void render_latency(struct worker *w, struct buf *b)
{
    char db[160];
    struct list *it, *tmp;
    describe(b, "lakeproxy_query_duration_seconds", "histogram",
             "Query latency as clients saw it, waiting included.");
    list_for_each_safe (it, tmp, &w->pools) {
        struct pool *p = list_entry(it, struct pool, node);
        if (!p->latency)
            continue;
        label(p->db->name, db, sizeof(db));
        for (size_t i = 0; i < sizeof(latency_bounds) / sizeof(latency_bounds[0]); i++)
            put(b, "lakeproxy_query_duration_seconds_bucket{database=\"%s\",le=\"%g\"} %llu\n", db,
                latency_bounds[i], (unsigned long long)count_le(p->latency, latency_bounds[i]));
        put(b, "lakeproxy_query_duration_seconds_bucket{database=\"%s\",le=\"+Inf\"} %llu\n", db,
            (unsigned long long)p->latency->count);
        put(b, "lakeproxy_query_duration_seconds_sum{database=\"%s\"} %.6f\n", db,
            (double)p->latency_sum_us / 1e6);
        put(b, "lakeproxy_query_duration_seconds_count{database=\"%s\"} %llu\n", db,
            (unsigned long long)p->latency->count);
    }
}

static void render_credentials(struct worker *w, struct buf *b)
{
    char db[160];
    struct list *it, *tmp;
    time_t now = time(NULL);
    describe(b, "lakeproxy_credential_expiry_seconds", "gauge",
             "Seconds until the current server token expires (negative: expired).");
    list_for_each_safe (it, tmp, &w->creds) {
        struct credential *cr = list_entry(it, struct credential, node);
        if (cr->token && cr->expires)
            put(b, "lakeproxy_credential_expiry_seconds{database=\"%s\"} %lld\n",
                label(cr->db->name, db, sizeof(db)), (long long)(cr->expires - now));
    }
    describe(b, "lakeproxy_credential_refresh_failures", "gauge",
             "Consecutive failed token fetches per database.");
    list_for_each_safe (it, tmp, &w->creds) {
        struct credential *cr = list_entry(it, struct credential, node);
        put(b, "lakeproxy_credential_refresh_failures{database=\"%s\"} %d\n",
            label(cr->db->name, db, sizeof(db)), cr->failures);
    }
    uint64_t asked, cached;
    tokenauth_counts(w, &asked, &cached);
    describe(b, "lakeproxy_client_token_checks_total", "counter",
             "Clients' own Databricks tokens checked at the workspace (client_auth).");
    put(b, "lakeproxy_client_token_checks_total %llu\n", (unsigned long long)asked);
    describe(b, "lakeproxy_client_token_cache_hits_total", "counter",
             "Logins with a Databricks token served from the cache of workspace answers.");
    put(b, "lakeproxy_client_token_cache_hits_total %llu\n", (unsigned long long)cached);
}

void metrics_render(struct worker *w, struct buf *b)
{
    describe(b, "lakeproxy_up", "gauge", "1 while lakeproxy serves, 0 while it drains.");
    put(b, "lakeproxy_up %d\n", w->draining || w->handed_over ? 0 : 1);
    render_pools(w, b);
    render_counters(w, b);
    render_latency(w, b);
    render_credentials(w, b);
    describe(b, "lakeproxy_guard_refusals_total", "counter",
             "Statements the row-level-security guard refused.");
    put(b, "lakeproxy_guard_refusals_total %llu\n", (unsigned long long)w->refusals);
    describe(b, "lakeproxy_mask_refusals_total", "counter",
             "Statements and results refused because masking could not hold for them.");
    put(b, "lakeproxy_mask_refusals_total %llu\n", (unsigned long long)w->mask_refusals);
    describe(b, "lakeproxy_masked_values_total", "counter", "Result values masking rewrote.");
    put(b, "lakeproxy_masked_values_total %llu\n", (unsigned long long)w->masked_values);
    describe(b, "lakeproxy_query_log_records_total", "counter",
             "Query log records written, and dropped because the writer fell behind.");
    put(b, "lakeproxy_query_log_records_total{outcome=\"written\"} %llu\n",
        (unsigned long long)statslog_written(w->qlog));
    put(b, "lakeproxy_query_log_records_total{outcome=\"dropped\"} %llu\n",
        (unsigned long long)statslog_dropped(w->qlog));
    describe(b, "lakeproxy_message_memory_bytes", "gauge",
             "Memory lent to clients to read large messages whole, and its limit "
             "(limits.max_message_memory).");
    put(b, "lakeproxy_message_memory_bytes{state=\"lent\"} %zu\n", w->msgbudget.lent);
    put(b, "lakeproxy_message_memory_bytes{state=\"limit\"} %zu\n", w->msgbudget.total);
    describe(b, "lakeproxy_message_memory_waiting_clients", "gauge",
             "Clients waiting for memory to read a large message.");
    put(b, "lakeproxy_message_memory_waiting_clients %zu\n", w->msgbudget.n_waiting);
    describe(b, "lakeproxy_large_message_stalls_total", "counter",
             "Clients closed for sending nothing for 10 s in the middle of a large message.");
    put(b, "lakeproxy_large_message_stalls_total %llu\n", (unsigned long long)w->large_stalls);
    describe(b, "lakeproxy_queries_untracked_total", "counter",
             "Queries statistics did not count: a client had more in flight than they follow.");
    put(b, "lakeproxy_queries_untracked_total %llu\n", (unsigned long long)w->queries_untracked);
    describe(b, "lakeproxy_statements_skipped_total", "counter",
             "Statements PostgreSQL skipped after an earlier error (not counted as calls).");
    put(b, "lakeproxy_statements_skipped_total %llu\n", (unsigned long long)w->queries_skipped);
    describe(b, "lakeproxy_query_fingerprints_evicted_total", "counter",
             "Statement fingerprints dropped to stay within stats.max_queries.");
    put(b, "lakeproxy_query_fingerprints_evicted_total %llu\n",
        (unsigned long long)(w->stats ? stats_evicted(w->stats) : 0));
}

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type,
                  const void *body, size_t len)
{
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add(out, body, len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
}

static void http_conn_served(struct bufferevent *bev);

static void on_request(struct evhttp_request *req, void *arg)
{
    struct worker *w = arg;
    http_conn_served(evhttp_connection_get_bufferevent(evhttp_request_get_connection(req)));
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    /* taken over: the next request, on a new connection, reaches the process that accepts now
     * (a load balancer's health check on a kept-alive connection would otherwise stay here) */
    if (w->handed_over)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_send_error(req, 405, "only GET");
    } else if (path && strcmp(path, "/metrics") == 0) {
        struct buf b;
        buf_init(&b);
        metrics_render(w, &b);
        if (b.failed)
            evhttp_send_error(req, 500, "out of memory");
        else
            reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
        buf_free(&b);
    } else if (path && strcmp(path, "/healthz") == 0) {
        if (w->draining)
            reply(req, 503, "Draining", "text/plain", "draining\n", 9);
        else if (w->handed_over) /* (another process serves the port: so is this address) */
            reply(req, 200, "OK", "text/plain", "ok: taken over\n", 15);
        else
            reply(req, 200, "OK", "text/plain", "ok\n", 3);
    } else {
        evhttp_send_error(req, 404, "try /metrics or /healthz");
    }
}

/* An admin.http connection must complete a request within HTTP_REQUEST_S of its accept or of
 * its last request: evhttp's own timeout restarts at every byte read, so a request sent a byte
 * at a time would hold its connection (and a descriptor) for hours. */
#define HTTP_REQUEST_S 10

/* Connections admin.http holds at once (within the descriptors lakeproxy budgets besides its
 * clients and servers); past it, the one with the least time left is ended at the next sweep. */
#define HTTP_CONNS_MAX 16

/* A connection lakeproxy holds a reference to (bufferevent_incref), to close it when it is
 * late and to know when evhttp has let it go (its callbacks are gone). */
struct http_conn {
    struct list node; /* http_conns */
    struct bufferevent *bev;
    time_t due; /* when its next request must be complete (monotonic seconds) */
};

static struct list http_conns = {&http_conns, &http_conns};
static struct event *http_sweep; /* every second while there are connections */

static time_t mono_s(void)
{
    return (time_t)(monotime_ms() / 1000);
}

/* Drops lakeproxy's reference to a connection (freeing it if evhttp already has). */
static void http_conn_release(struct http_conn *hc)
{
    list_del(&hc->node);
    bufferevent_decref(hc->bev);
    free(hc);
}

/* True while evhttp holds the connection (it clears the callbacks when it frees it). */
static bool http_conn_live(const struct http_conn *hc)
{
    bufferevent_event_cb eventcb = NULL;
    bufferevent_getcb(hc->bev, NULL, NULL, &eventcb, NULL);
    return eventcb != NULL;
}

/* Each second: forgets the connections evhttp has freed, and ends the late ones as evhttp
 * ends one whose client went away (it then frees it). */
static void sweep_http(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    time_t now = mono_s();
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &http_conns) {
        struct http_conn *hc = list_entry(it, struct http_conn, node);
        if (!http_conn_live(hc))
            http_conn_release(hc);
        else if (now >= hc->due)
            bufferevent_trigger_event(hc->bev, BEV_EVENT_EOF | BEV_EVENT_READING, 0);
    }
    if (list_empty(&http_conns))
        evtimer_del(http_sweep);
}

/* A request came in on bev: its next one has HTTP_REQUEST_S again. */
static void http_conn_served(struct bufferevent *bev)
{
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &http_conns) {
        struct http_conn *hc = list_entry(it, struct http_conn, node);
        if (hc->bev == bev) {
            hc->due = mono_s() + HTTP_REQUEST_S;
            return;
        }
    }
}

/* More than HTTP_CONNS_MAX connections: the live one with the least time left, not ended yet,
 * is made due at once (the sweep ends it within a second). */
static void evict_one_past_the_cap(void)
{
    if (list_count_upto(&http_conns, HTTP_CONNS_MAX + 1) <= HTTP_CONNS_MAX)
        return;
    struct http_conn *first = NULL;
    struct list *it, *tmp;
    list_for_each_safe (it, tmp, &http_conns) {
        struct http_conn *hc = list_entry(it, struct http_conn, node);
        if (http_conn_live(hc) && hc->due > 0 && (!first || hc->due < first->due))
            first = hc;
    }
    if (first)
        first->due = 0;
}

/* Each HTTP connection reads at most 16 KiB ahead: a client that pipelines requests and never
 * reads the replies is held back by TCP instead of filling lakeproxy's memory. It is watched
 * (sweep_http) so that it must complete each request in time. */
static struct bufferevent *bounded_bev(struct event_base *base, void *arg)
{
    (void)arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        return NULL;
    bufferevent_setwatermark(bev, EV_READ, 0, 16 * 1024);
    struct http_conn *hc = calloc(1, sizeof(*hc));
    if (!http_sweep)
        http_sweep = event_new(base, -1, EV_PERSIST, sweep_http, NULL);
    if (hc && http_sweep) { /* (unwatched when out of memory: evhttp's own timeout remains) */
        hc->bev = bev;
        hc->due = mono_s() + HTTP_REQUEST_S;
        bufferevent_incref(bev);
        list_append(&http_conns, &hc->node);
        evict_one_past_the_cap();
        struct timeval second = {1, 0};
        if (!evtimer_pending(http_sweep, NULL))
            evtimer_add(http_sweep, &second);
    } else {
        free(hc);
    }
    return bev;
}

/* Lets go of every watched connection (evhttp has freed them, or is about to be). */
static void release_http_conns(void)
{
    while (!list_empty(&http_conns))
        http_conn_release(list_entry(http_conns.next, struct http_conn, node));
    if (http_sweep)
        event_free(http_sweep);
    http_sweep = NULL;
}

/* admin.http's accept pause: the timer that resumes the listener evhttp made (one worker per
 * process). */
static struct event *http_pause;

static void resume_http(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evconnlistener_enable(arg);
}

static void cancel_http_pause(void)
{
    if (http_pause)
        event_free(http_pause);
    http_pause = NULL;
}

/* accept() failed on admin.http (out of descriptors, say): new connections pause for 100 ms and
 * the failure is logged once a second, where libevent would retry at once, spinning a core and
 * logging each failure. */
static void http_accept_error(struct evconnlistener *l, void *arg)
{
    (void)arg;
    static time_t last_logged;
    int e = EVUTIL_SOCKET_ERROR();
    time_t now = time(NULL);
    if (now != last_logged) {
        last_logged = now;
        log_warning("admin.http: accept failed: %s (pausing new connections for 100 ms)",
                    evutil_socket_error_to_string(e));
    }
    cancel_http_pause();
    struct timeval pause = {0, 100 * 1000};
    http_pause = evtimer_new(evconnlistener_get_base(l), resume_http, l);
    if (http_pause) {
        evconnlistener_disable(l);
        evtimer_add(http_pause, &pause);
    }
}

bool metrics_start(struct worker *w, int inherited_fd, char *err, size_t errsz)
{
    const struct config *cfg = w->cfg;
    if (!cfg->admin_http_host)
        return true;
    w->http = evhttp_new(w->base);
    if (w->http && inherited_fd >= 0) {
        evutil_make_socket_nonblocking(inherited_fd);
        w->http_socket = evhttp_accept_socket_with_handle(w->http, inherited_fd);
    } else if (w->http) {
        w->http_socket = evhttp_bind_socket_with_handle(w->http, cfg->admin_http_host,
                                                        (uint16_t)cfg->admin_http_port);
    }
    if (!w->http_socket) {
        snprintf(err, errsz, "cannot listen on admin.http %s:%d", cfg->admin_http_host,
                 cfg->admin_http_port);
        metrics_stop(w);
        return false;
    }
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(w->http_socket),
                                http_accept_error);
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET);
    evhttp_set_max_headers_size(w->http, 8192);
    evhttp_set_max_body_size(w->http, 0);
    evhttp_set_timeout(w->http, 5);
    evhttp_set_bevcb(w->http, bounded_bev, NULL);
    evhttp_set_gencb(w->http, on_request, w);
    log_info("metrics on http://%s:%d/metrics%s", cfg->admin_http_host, cfg->admin_http_port,
             inherited_fd >= 0 ? " (socket taken over)" : "");
    return true;
}

int metrics_listen_fd(const struct worker *w)
{
    return w->http_socket ? evhttp_bound_socket_get_fd(w->http_socket) : -1;
}

void metrics_stop_accepting(struct worker *w)
{
    cancel_http_pause();
    if (w->http_socket)
        evhttp_del_accept_socket(w->http, w->http_socket);
    w->http_socket = NULL;
}

void metrics_stop(struct worker *w)
{
    cancel_http_pause();
    if (w->http)
        evhttp_free(w->http);
    release_http_conns();
    w->http = NULL;
    w->http_socket = NULL;
}
