/* sidequery.c: one-shot libpq queries and statement descriptions on the event loop. */
#include "sidequery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "credentials.h"
#include "monotime.h"
#include "worker.h"

#define SIDEQUERY_MAX_PARAMS 8
/* While a rotating credential's first token is on its way, it is looked for this often. */
#define CRED_POLL_MS 50

/* What the connection is doing: connecting, waiting for the query's result, or for the
 * Prepare or the Describe of statement `at` (describe mode). */
enum sq_phase { SQ_CONNECTING, SQ_QUERYING, SQ_PREPARING, SQ_DESCRIBING };

struct sidequery {
    struct worker *w;
    PGconn *conn;
    struct event *ev, *timeout;
    struct timeval timeout_tv;
    enum sq_phase phase;
    char *sql;
    int nparams;
    char *params[SIDEQUERY_MAX_PARAMS];
    char **stmts; /* describe mode: the statements, n_stmts of them, the next at `at` */
    int n_stmts, at;
    PGresult *result; /* the first result of the command in flight */
    char *db_name, *user, *password, *appname, *options; /* the login, kept until connected */
    bool db_credential;       /* log in with the database's credential (sidequery_login) */
    struct event *cred_timer; /* ... looking for it while its first token is on its way */
    long long cred_deadline_us;
    sidequery_done_fn done;
    sidequery_each_fn each;
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
    if (q->cred_timer)
        event_free(q->cred_timer);
    if (q->password)
        explicit_bzero(q->password, strlen(q->password));
    free(q->password);
    free(q->db_name);
    free(q->user);
    free(q->appname);
    free(q->options);
    if (q->conn)
        PQfinish(q->conn);
    for (int i = 0; i < q->nparams; i++) {
        if (q->params[i])
            explicit_bzero(q->params[i], strlen(q->params[i]));
        free(q->params[i]);
    }
    for (int i = 0; q->stmts && i < q->n_stmts; i++)
        free(q->stmts[i]);
    free(q->stmts);
    PQclear(q->result);
    free(q->sql);
    free(q);
}

/* Reports and frees the look-up (r and err both NULL: a describe list that completed). */
static void finish(struct sidequery *q, const PGresult *r, const char *err)
{
    char e[256];
    sidequery_done_fn done = q->done;
    void *arg = q->arg;
    bool described = q->each && !err;
    if (err)
        snprintf(e, sizeof(e), "%s", err);
    if (r) { /* handed over before the connection closes; the caller frees r */
        done(arg, r, NULL);
        sidequery_cancel(q);
        return;
    }
    sidequery_cancel(q);
    done(arg, NULL, described ? NULL : err ? e : "look-up failed");
}

static void on_socket(evutil_socket_t fd, short what, void *arg);

static bool wait_for(struct sidequery *q, short what)
{
    if (q->ev)
        event_free(q->ev);
    q->ev = event_new(q->w->base, PQsocket(q->conn), what, on_socket, q);
    return q->ev && event_add(q->ev, NULL) == 0;
}

/* Waits for the result of the command just sent, in phase. */
static void await(struct sidequery *q, enum sq_phase phase)
{
    q->phase = phase;
    if (!wait_for(q, EV_READ))
        finish(q, NULL, "cannot wait for the result");
}

static void send_query(struct sidequery *q)
{
    if (!PQsendQueryParams(q->conn, q->sql, q->nparams, NULL, (const char *const *)q->params, NULL,
                           NULL, 0)) {
        finish(q, NULL, PQerrorMessage(q->conn));
        return;
    }
    await(q, SQ_QUERYING);
}

/* Prepares the next statement of the list, or finishes after the last one. */
static void send_prepare(struct sidequery *q)
{
    if (q->at >= q->n_stmts) {
        finish(q, NULL, NULL);
        return;
    }
    evtimer_add(q->timeout, &q->timeout_tv); /* each statement gets the whole timeout */
    if (!PQsendPrepare(q->conn, "", q->stmts[q->at], 0, NULL)) {
        finish(q, NULL, PQerrorMessage(q->conn));
        return;
    }
    await(q, SQ_PREPARING);
}

/* Reads what has arrived of the command in flight without blocking: 1 when it is complete
 * (q->result holds its first result), 0 when it waits for more, -1 when q has finished. */
static int collect(struct sidequery *q)
{
    if (!PQconsumeInput(q->conn)) {
        finish(q, NULL, PQerrorMessage(q->conn));
        return -1;
    }
    while (!PQisBusy(q->conn)) {
        PGresult *r = PQgetResult(q->conn);
        if (!r)
            return 1;
        if (!q->result)
            q->result = r;
        else
            PQclear(r);
    }
    if (!wait_for(q, EV_READ)) {
        finish(q, NULL, "cannot wait for the result");
        return -1;
    }
    return 0;
}

/* Hands statement `at`'s description (or why it failed) to the caller and moves on. */
static void statement_done(struct sidequery *q, const PGresult *r, const char *err)
{
    q->each(q->arg, q->at++, r, err);
    PQclear(q->result);
    q->result = NULL;
    send_prepare(q);
}

static void on_result(struct sidequery *q)
{
    PGresult *r = q->result;
    bool ok =
        r && PQresultStatus(r) == (q->phase == SQ_QUERYING ? PGRES_TUPLES_OK : PGRES_COMMAND_OK);
    const char *why = r ? PQresultErrorMessage(r) : "no result";
    if (q->phase == SQ_QUERYING) {
        char err[256];
        snprintf(err, sizeof(err), "%s", why);
        q->result = NULL;
        finish(q, ok ? r : NULL, ok ? NULL : err);
        PQclear(r);
    } else if (!ok) {
        statement_done(q, NULL, why);
    } else if (q->phase == SQ_DESCRIBING) {
        statement_done(q, r, NULL);
    } else if (!PQsendDescribePrepared(q->conn, "")) {
        finish(q, NULL, PQerrorMessage(q->conn));
    } else {
        PQclear(q->result);
        q->result = NULL;
        await(q, SQ_DESCRIBING);
    }
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sidequery *q = arg;
    if (q->phase != SQ_CONNECTING) {
        if (collect(q) == 1)
            on_result(q);
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
        if (q->each)
            send_prepare(q);
        else
            send_query(q);
        break;
    default: finish(q, NULL, PQerrorMessage(q->conn));
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
static bool keep_query(struct sidequery *q, const char *sql, int nparams, const char *const *params)
{
    if (nparams > SIDEQUERY_MAX_PARAMS || !(q->sql = strdup(sql)))
        return false;
    for (; q->nparams < nparams; q->nparams++)
        if (!(q->params[q->nparams] = strdup(params[q->nparams] ? params[q->nparams] : "")))
            return false;
    return true;
}

/* Copies the statements to describe. */
static bool keep_statements(struct sidequery *q, const char *const *sqls, int n)
{
    if (n < 0 || !(q->stmts = calloc((size_t)n + 1, sizeof(*q->stmts))))
        return false;
    for (; q->n_stmts < n; q->n_stmts++)
        if (!(q->stmts[q->n_stmts] = strdup(sqls[q->n_stmts])))
            return false;
    return true;
}

/* A look-up not yet connected, its login kept (the caller's may not outlive the call); NULL
 * when out of memory. */
static struct sidequery *new_query(struct worker *w, const struct db_config *db,
                                   const struct sidequery_login *login, sidequery_done_fn done,
                                   void *arg)
{
    struct sidequery *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    *q = (struct sidequery){.w = w, .done = done, .arg = arg};
    q->db_credential = login->db_credential;
    q->db_name = strdup(db->name);
    q->user = strdup(login->user ? login->user : "");
    q->password = strdup(login->password ? login->password : "");
    q->appname = strdup(login->appname ? login->appname : "");
    q->options = strdup(login->options ? login->options : "");
    q->timeout = evtimer_new(w->base, on_timeout, q);
    if (!q->db_name || !q->user || !q->password || !q->appname || !q->options || !q->timeout) {
        sidequery_cancel(q);
        return NULL;
    }
    return q;
}

/* Starts connecting q to db's server; false with err filled when it cannot. */
static bool connect_now(struct sidequery *q, const struct db_config *db, char *err, size_t errsz)
{
    char port[16], timeout[16];
    unsigned gen;
    const char *password = q->db_credential ? credentials_current(q->w, db, &gen) : q->password;
    snprintf(port, sizeof(port), "%d", db->port);
    snprintf(timeout, sizeof(timeout), "%d", (db->pool.connect_timeout_ms + 999) / 1000);
    const char *keys[] = {"host",
                          "port",
                          "dbname",
                          "user",
                          "sslmode",
                          "sslrootcert",
                          "connect_timeout",
                          "application_name",
                          "password",
                          "options",
                          NULL};
    const char *vals[] = {db->host,
                          port,
                          db->dbname,
                          q->user,
                          sslmode_name(db->tls),
                          db->ca_file ? db->ca_file : "",
                          timeout,
                          q->appname,
                          password ? password : "",
                          q->options,
                          NULL};
    q->phase = SQ_CONNECTING;
    q->conn = PQconnectStartParams(keys, vals, 0);
    q->timeout_tv = (struct timeval){db->pool.connect_timeout_ms / 1000 + 5, 0};
    if (!q->conn || PQstatus(q->conn) == CONNECTION_BAD ||
        evtimer_add(q->timeout, &q->timeout_tv) != 0 || !wait_for(q, EV_WRITE)) {
        snprintf(err, errsz, "cannot connect: %s",
                 q->conn ? PQerrorMessage(q->conn) : "out of memory");
        return false;
    }
    return true;
}

static void cred_cb(evutil_socket_t fd, short what, void *arg);

/* Connects now, or once db's credential has a token when its first one is on its way (a
 * rotating credential just after start or a reload); false with err when it cannot. */
static bool begin(struct sidequery *q, const struct db_config *db, char *err, size_t errsz)
{
    char why[600];
    if (!q->db_credential)
        return connect_now(q, db, err, errsz);
    switch (credentials_status(q->w, db, why, sizeof(why))) {
    case CRED_READY: return connect_now(q, db, err, errsz);
    case CRED_UNAVAILABLE: snprintf(err, errsz, "%s", why); return false;
    case CRED_PENDING: break;
    }
    struct timeval tv = {0, CRED_POLL_MS * 1000};
    if (!q->cred_deadline_us)
        q->cred_deadline_us = monotime_us() + (long long)db->cred.timeout_ms * 1000 + 1000000;
    if (monotime_us() > q->cred_deadline_us) {
        snprintf(err, errsz, "timed out waiting for database \"%s\"'s credential", db->name);
        return false;
    }
    if ((!q->cred_timer && !(q->cred_timer = evtimer_new(q->w->base, cred_cb, q))) ||
        evtimer_add(q->cred_timer, &tv) != 0) {
        snprintf(err, errsz, "out of memory");
        return false;
    }
    return true;
}

static void cred_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sidequery *q = arg;
    char err[700];
    const struct db_config *db = config_find_db(q->w->cfg, q->db_name);
    if (!db)
        finish(q, NULL, "the database was removed from the configuration");
    else if (!begin(q, db, err, sizeof(err)))
        finish(q, NULL, err);
}

/* Starts q (kept: its statements were copied); NULL with err filled when it cannot. */
static struct sidequery *started(struct sidequery *q, const struct db_config *db, bool kept,
                                 char *err, size_t errsz)
{
    if (!q || !kept) {
        snprintf(err, errsz, "out of memory");
        sidequery_cancel(q);
        return NULL;
    }
    if (!begin(q, db, err, errsz)) {
        sidequery_cancel(q);
        return NULL;
    }
    return q;
}

struct sidequery *sidequery_start(struct worker *w, const struct db_config *db,
                                  const struct sidequery_login *login, const char *sql, int nparams,
                                  const char *const *params, sidequery_done_fn done, void *arg,
                                  char *err, size_t errsz)
{
    struct sidequery *q = new_query(w, db, login, done, arg);
    return started(q, db, q && keep_query(q, sql, nparams, params), err, errsz);
}

struct sidequery *sidequery_describe(struct worker *w, const struct db_config *db,
                                     const struct sidequery_login *login, const char *const *sqls,
                                     int n, sidequery_each_fn each, sidequery_done_fn done,
                                     void *arg, char *err, size_t errsz)
{
    struct sidequery *q = new_query(w, db, login, done, arg);
    if (q)
        q->each = each;
    return started(q, db, q && keep_statements(q, sqls, n), err, errsz);
}
