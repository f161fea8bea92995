/* authquery.c: auth_query look-ups: a side query (sidequery.c) per client that needs one. */
#include "authquery.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "credentials.h"
#include "log.h"
#include "sidequery.h"

struct authq {
    struct client *c;
    authq_done_fn done;
    struct sidequery *q;
};

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
    free(a);
    done(c, verifier, msg[0] ? msg : NULL);
    if (verifier) {
        explicit_bzero(verifier, strlen(verifier));
        free(verifier);
    }
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
    struct authq *a = calloc(1, sizeof(*a));
    char err[300];
    if (!a)
        return NULL;
    a->c = c;
    a->done = done;
    const char *params[1] = {c->user};
    struct sidequery_login login = {aq->user, auth_query_password(w, aq, db),
                                    "lakeproxy auth_query", NULL};
    a->q = sidequery_start(w, db, &login, aq->query, 1, params, on_result, a, err, sizeof(err));
    if (!a->q) {
        log_warning("auth_query: %s", err);
        free(a);
        return NULL;
    }
    return a;
}

void authquery_cancel(struct authq *a)
{
    if (!a)
        return;
    sidequery_cancel(a->q);
    free(a);
}
