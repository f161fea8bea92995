/* authquery.c: auth_query look-ups: a side query (sidequery.c) per client that needs one, at
 * most AUTHQ_MAX_RUNNING at once, the rest waiting their turn in arrival order. */
#include "authquery.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "log.h"
#include "sidequery.h"
#include "worker.h"

struct authq {
    struct worker *w;
    struct client *c;
    authq_done_fn done;
    struct sidequery *q; /* NULL while waiting its turn */
    struct list node;    /* in w->authq_waiting while waiting */
};

static bool run(struct authq *a, char *err, size_t errsz);

/* Starts the waiting look-ups while turns are free (answering, with the error, each that
 * cannot start). Runs on a loop turn of its own (authq_fill): a failed start closes its client,
 * which must not happen inside a caller that is closing clients while it walks their list. */
static void fill_turns(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    while (w->authq_running < AUTHQ_MAX_RUNNING && !list_empty(&w->authq_waiting)) {
        struct authq *a = list_entry(w->authq_waiting.next, struct authq, node);
        list_del(&a->node);
        char err[300];
        if (run(a, err, sizeof(err)))
            continue;
        log_warning("auth_query: %s", err);
        struct client *c = a->c;
        authq_done_fn done = a->done;
        free(a);
        done(c, NULL, err);
    }
}

/* A finished or abandoned look-up gives its turn back; the waiting ones start on the next
 * loop turn. */
static void give_back_turn(struct worker *w)
{
    w->authq_running--;
    if (!list_empty(&w->authq_waiting))
        event_active(w->authq_fill, 0, 0);
}

/* The look-up's answer: one row (usename, passwd), or none for an unknown user. */
static void on_result(void *arg, const PGresult *r, const char *err)
{
    struct authq *a = arg;
    struct client *c = a->c;
    authq_done_fn done = a->done;
    char msg[256] = "";
    char *verifier = NULL;
    if (!r)
        snprintf(msg, sizeof(msg), "%s", err);
    else if (PQnfields(r) != 2)
        snprintf(msg, sizeof(msg), "auth_query must return two columns (usename, passwd)");
    else if (PQntuples(r) > 1)
        snprintf(msg, sizeof(msg), "auth_query returned more than one row");
    else if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 1))
        verifier = strdup(PQgetvalue(r, 0, 1));
    struct worker *w = a->w;
    free(a);
    give_back_turn(w);
    done(c, verifier, msg[0] ? msg : NULL);
    if (verifier) {
        explicit_bzero(verifier, strlen(verifier));
        free(verifier);
    }
}

/* Starts a's side query (taking a turn); false with err when it cannot. */
static bool run(struct authq *a, char *err, size_t errsz)
{
    struct worker *w = a->w;
    const struct auth_query_config *aq = &w->cfg->auth_query;
    if ((a->c->auth_cfg_gen != w->cfg_gen && !worker_login_holds(w, a->c)) || !aq->enabled) {
        /* waited its turn across a reload that dropped auth_query, or changed how the user
           logs in */
        snprintf(err, errsz, "lakeproxy's configuration was reloaded before the look-up began");
        return false;
    }
    const struct db_config *db = config_find_db(w->cfg, aq->database);
    const char *params[1] = {a->c->user};
    /* auth_query.password, else the look-up database's own (possibly rotating) credential
     * when the look-up logs in as that database's user */
    struct sidequery_login login = {aq->user, aq->password, "lakeproxy auth_query", NULL,
                                    !aq->password && db && strcmp(aq->user, db->user) == 0};
    a->q = sidequery_start(w, db, &login, aq->query, 1, params, on_result, a, err, errsz);
    if (a->q)
        w->authq_running++;
    return a->q != NULL;
}

struct authq *authquery_start(struct worker *w, struct client *c, authq_done_fn done)
{
    struct authq *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->w = w;
    a->c = c;
    a->done = done;
    list_init(&a->node);
    if (w->authq_running >= AUTHQ_MAX_RUNNING) {
        if (!w->authq_fill && !(w->authq_fill = event_new(w->base, -1, 0, fill_turns, w))) {
            free(a);
            return NULL;
        }
        list_append(&w->authq_waiting, &a->node);
        return a;
    }
    char err[300];
    if (!run(a, err, sizeof(err))) {
        log_warning("auth_query: %s", err);
        free(a);
        return NULL;
    }
    return a;
}

void authquery_stop(struct worker *w)
{
    if (w->authq_fill)
        event_free(w->authq_fill);
    w->authq_fill = NULL;
}

void authquery_cancel(struct authq *a)
{
    if (!a)
        return;
    if (a->q) {
        sidequery_cancel(a->q);
        struct worker *w = a->w;
        free(a);
        give_back_turn(w);
        return;
    }
    list_del(&a->node);
    free(a);
}
