/* authquery.c: auth_query look-ups through libpq's non-blocking API, driven by libevent. */
#include "authquery.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "credentials.h"
#include "log.h"

struct authq {
    struct worker *w;
    struct client *c;
    authq_done_fn done;
    PGconn *conn;
    struct event *ev;
    struct event *timeout;
    bool querying;
};

static void authq_free(struct authq *q)
{
    if (q->ev)
        event_free(q->ev);
    if (q->timeout)
        event_free(q->timeout);
    if (q->conn)
        PQfinish(q->conn);
    free(q);
}

/* Reports to the client and frees the look-up. */
static void finish(struct authq *q, const char *verifier, const char *err)
{
    struct client *c = q->c;
    authq_done_fn done = q->done;
    char *v = verifier ? strdup(verifier) : NULL;
    char e[256];
    if (err)
        snprintf(e, sizeof(e), "%s", err);
    authq_free(q);
    done(c, v, err ? e : NULL);
    if (v) {
        explicit_bzero(v, strlen(v));
        free(v);
    }
}

static void on_socket(evutil_socket_t fd, short what, void *arg);

/* Waits for the socket to become readable or writable. */
static bool wait_for(struct authq *q, short what)
{
    if (q->ev)
        event_free(q->ev);
    q->ev = event_new(q->w->base, PQsocket(q->conn), what, on_socket, q);
    return q->ev && event_add(q->ev, NULL) == 0;
}

static void send_query(struct authq *q)
{
    const char *params[1] = {q->c->user};
    if (!PQsendQueryParams(q->conn, q->w->cfg->auth_query.query, 1, NULL, params, NULL, NULL, 0)) {
        finish(q, NULL, PQerrorMessage(q->conn));
        return;
    }
    q->querying = true;
    if (!wait_for(q, EV_READ))
        finish(q, NULL, "cannot wait for the auth_query result");
}

/* Reads the result: one row (usename, passwd), or none for an unknown user. */
static void read_result(struct authq *q)
{
    if (!PQconsumeInput(q->conn)) {
        finish(q, NULL, PQerrorMessage(q->conn));
        return;
    }
    if (PQisBusy(q->conn)) {
        if (!wait_for(q, EV_READ))
            finish(q, NULL, "cannot wait for the auth_query result");
        return;
    }
    PGresult *r = PQgetResult(q->conn);
    char err[256] = "";
    char *verifier = NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        snprintf(err, sizeof(err), "%s", PQresultErrorMessage(r));
    else if (PQnfields(r) != 2)
        snprintf(err, sizeof(err), "auth_query must return two columns (usename, passwd)");
    else if (PQntuples(r) > 1)
        snprintf(err, sizeof(err), "auth_query returned more than one row");
    else if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 1))
        verifier = strdup(PQgetvalue(r, 0, 1));
    PQclear(r);
    while ((r = PQgetResult(q->conn)))
        PQclear(r);
    finish(q, verifier, err[0] ? err : NULL);
    free(verifier);
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct authq *q = arg;
    if (q->querying) {
        read_result(q);
        return;
    }
    switch (PQconnectPoll(q->conn)) {
    case PGRES_POLLING_READING:
        if (!wait_for(q, EV_READ))
            finish(q, NULL, "cannot wait for the auth_query connection");
        break;
    case PGRES_POLLING_WRITING:
        if (!wait_for(q, EV_WRITE))
            finish(q, NULL, "cannot wait for the auth_query connection");
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
    finish(arg, NULL, "auth_query timed out");
}

static const char *sslmode_name(enum tls_mode m)
{
    static const char *const names[] = {"disable", "prefer", "require", "verify-full"};
    return names[m];
}

/* auth_query.password, else the look-up database's own (possibly rotating) credential when
 * the look-up logs in as that database's user. */
static const char *auth_query_password(struct worker *w, const struct auth_query_config *aq,
                                       const struct db_config *db)
{
    unsigned gen;
    const char *pw = NULL;
    if (aq->password)
        return aq->password;
    if (strcmp(aq->user, db->user) == 0)
        pw = credentials_current(w, db, &gen);
    return pw ? pw : "";
}

struct authq *authquery_start(struct worker *w, struct client *c, authq_done_fn done)
{
    const struct auth_query_config *aq = &w->cfg->auth_query;
    const struct db_config *db = config_find_db(w->cfg, aq->database);
    char port[16], timeout[16];
    snprintf(port, sizeof(port), "%d", db->port);
    snprintf(timeout, sizeof(timeout), "%d", (db->pool.connect_timeout_ms + 999) / 1000);
    const char *keys[] = {"host",    "port",        "dbname",          "user",
                          "sslmode", "sslrootcert", "connect_timeout", "application_name",
                          "password", NULL};
    const char *vals[] = {db->host,  port, db->dbname, aq->user, sslmode_name(db->tls),
                          db->ca_file ? db->ca_file : "", timeout, "lakeproxy auth_query",
                          auth_query_password(w, aq, db), NULL};
    struct authq *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->w = w;
    q->c = c;
    q->done = done;
    q->conn = PQconnectStartParams(keys, vals, 0);
    q->timeout = evtimer_new(w->base, on_timeout, q);
    struct timeval tv = {db->pool.connect_timeout_ms / 1000 + 5, 0};
    if (!q->conn || PQstatus(q->conn) == CONNECTION_BAD || !q->timeout ||
        evtimer_add(q->timeout, &tv) != 0 || !wait_for(q, EV_WRITE)) {
        log_warning("auth_query: cannot connect: %s",
                    q->conn ? PQerrorMessage(q->conn) : "out of memory");
        authq_free(q);
        return NULL;
    }
    return q;
}

void authquery_cancel(struct authq *q) { authq_free(q); }
