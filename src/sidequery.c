/* sidequery.c: one-shot libpq queries on the event loop. */
#include "sidequery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIDEQUERY_MAX_PARAMS 4

struct sidequery {
    struct worker *w;
    PGconn *conn;
    struct event *ev, *timeout;
    bool querying;
    char *sql;
    int nparams;
    char *params[SIDEQUERY_MAX_PARAMS];
    sidequery_done_fn done;
    void *arg;
};

void sidequery_cancel(struct sidequery *q)
{
    if (!q)
        return;
    if (q->ev)
        event_free(q->ev);
    if (q->timeout)
        event_free(q->timeout);
    if (q->conn)
        PQfinish(q->conn);
    for (int i = 0; i < q->nparams; i++) {
        if (q->params[i])
            explicit_bzero(q->params[i], strlen(q->params[i]));
        free(q->params[i]);
    }
    free(q->sql);
    free(q);
}

/* Reports and frees the look-up. */
static void finish(struct sidequery *q, const PGresult *r, const char *err)
{
    char e[256];
    sidequery_done_fn done = q->done;
    void *arg = q->arg;
    if (err)
        snprintf(e, sizeof(e), "%s", err);
    if (r) { /* handed over before the connection closes; the caller frees r */
        done(arg, r, NULL);
        sidequery_cancel(q);
        return;
    }
    sidequery_cancel(q);
    done(arg, NULL, err ? e : "look-up failed");
}

static void on_socket(evutil_socket_t fd, short what, void *arg);

static bool wait_for(struct sidequery *q, short what)
{
    if (q->ev)
        event_free(q->ev);
    q->ev = event_new(q->w->base, PQsocket(q->conn), what, on_socket, q);
    return q->ev && event_add(q->ev, NULL) == 0;
}

static void send_query(struct sidequery *q)
{
    if (!PQsendQueryParams(q->conn, q->sql, q->nparams, NULL,
                           (const char *const *)q->params, NULL, NULL, 0)) {
        finish(q, NULL, PQerrorMessage(q->conn));
        return;
    }
    q->querying = true;
    if (!wait_for(q, EV_READ))
        finish(q, NULL, "cannot wait for the result");
}

static void read_result(struct sidequery *q)
{
    if (!PQconsumeInput(q->conn)) {
        finish(q, NULL, PQerrorMessage(q->conn));
        return;
    }
    if (PQisBusy(q->conn)) {
        if (!wait_for(q, EV_READ))
            finish(q, NULL, "cannot wait for the result");
        return;
    }
    PGresult *r = PQgetResult(q->conn), *more;
    while ((more = PQgetResult(q->conn)))
        PQclear(more);
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
        char err[256];
        snprintf(err, sizeof(err), "%s", r ? PQresultErrorMessage(r) : "no result");
        PQclear(r);
        finish(q, NULL, err);
        return;
    }
    finish(q, r, NULL);
    PQclear(r);
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sidequery *q = arg;
    if (q->querying) {
        read_result(q);
        return;
    }
    switch (PQconnectPoll(q->conn)) {
    case PGRES_POLLING_READING:
        if (!wait_for(q, EV_READ))
            finish(q, NULL, "cannot wait for the connection");
        break;
    case PGRES_POLLING_WRITING:
        if (!wait_for(q, EV_WRITE))
            finish(q, NULL, "cannot wait for the connection");
        break;
    case PGRES_POLLING_OK:
        send_query(q);
        break;
    default:
        finish(q, NULL, PQerrorMessage(q->conn));
    }
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    finish(arg, NULL, "timed out");
}

static const char *sslmode_name(enum tls_mode m)
{
    static const char *const names[] = {"disable", "prefer", "require", "verify-full"};
    return names[m];
}

/* Copies the statement and its parameters (the caller's may not outlive this call). */
static bool keep_query(struct sidequery *q, const char *sql, int nparams,
                       const char *const *params)
{
    if (nparams > SIDEQUERY_MAX_PARAMS || !(q->sql = strdup(sql)))
        return false;
    for (; q->nparams < nparams; q->nparams++)
        if (!(q->params[q->nparams] = strdup(params[q->nparams] ? params[q->nparams] : "")))
            return false;
    return true;
}

struct sidequery *sidequery_start(struct worker *w, const struct db_config *db, const char *user,
                                  const char *password, const char *appname, const char *sql,
                                  int nparams, const char *const *params, sidequery_done_fn done,
                                  void *arg, char *err, size_t errsz)
{
    char port[16], timeout[16];
    snprintf(port, sizeof(port), "%d", db->port);
    snprintf(timeout, sizeof(timeout), "%d", (db->pool.connect_timeout_ms + 999) / 1000);
    const char *keys[] = {"host",    "port",        "dbname",          "user",
                          "sslmode", "sslrootcert", "connect_timeout", "application_name",
                          "password", NULL};
    const char *vals[] = {db->host, port, db->dbname, user, sslmode_name(db->tls),
                          db->ca_file ? db->ca_file : "", timeout, appname,
                          password ? password : "", NULL};
    struct sidequery *q = calloc(1, sizeof(*q));
    if (!q) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    q->w = w;
    q->done = done;
    q->arg = arg;
    q->conn = PQconnectStartParams(keys, vals, 0);
    q->timeout = evtimer_new(w->base, on_timeout, q);
    struct timeval tv = {db->pool.connect_timeout_ms / 1000 + 5, 0};
    if (!keep_query(q, sql, nparams, params) || !q->conn ||
        PQstatus(q->conn) == CONNECTION_BAD || !q->timeout ||
        evtimer_add(q->timeout, &tv) != 0 || !wait_for(q, EV_WRITE)) {
        snprintf(err, errsz, "cannot connect: %s",
                 q->conn ? PQerrorMessage(q->conn) : "out of memory");
        sidequery_cancel(q);
        return NULL;
    }
    return q;
}
