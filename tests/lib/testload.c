/* testload.c: background client load (threads of libpq clients) for integration tests. */
#include "harness.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct load_state {
    const struct proxy *p;
    const char *user, *db;
    int clients;
    pthread_t threads[64];
    volatile int stop;
    pthread_mutex_t mu;
    struct load_result *out;
};

/* Counts one failure, keeping the first message. */
static void load_error(struct load_state *l, PGconn *c)
{
    pthread_mutex_lock(&l->mu);
    if (!l->out->errors++)
        snprintf(l->out->first_error, sizeof(l->out->first_error), "%s", PQerrorMessage(c));
    pthread_mutex_unlock(&l->mu);
}

/* Adds to one of the running totals. */
static void load_count(struct load_state *l, int *counter, int n)
{
    pthread_mutex_lock(&l->mu);
    *counter += n;
    pthread_mutex_unlock(&l->mu);
}

/* One load client: queries in a loop, reconnecting now and then. */
static void *load_client(void *arg)
{
    struct load_state *l = arg;
    while (!l->stop) {
        PGconn *c = proxy_connect(l->p, l->user, "unused", l->db, "connect_timeout=10");
        if (PQstatus(c) == CONNECTION_OK)
            load_count(l, &l->out->connections, 1);
        for (int i = 0; i < 40 && !l->stop && PQstatus(c) == CONNECTION_OK; i++) {
            PGresult *r = PQexec(c, "SELECT count(*) FROM items WHERE id <= 100");
            if (PQresultStatus(r) != PGRES_TUPLES_OK)
                load_error(l, c);
            else
                load_count(l, &l->out->queries, 1);
            PQclear(r);
            usleep(2000);
        }
        if (PQstatus(c) != CONNECTION_OK) {
            load_error(l, c);
            usleep(100000);
        }
        PQfinish(c);
    }
    return NULL;
}

struct load *load_start(const struct proxy *p, const char *user, const char *db, int clients,
                        struct load_result *out)
{
    struct load_state *l = calloc(1, sizeof(*l));
    cr_assert(l);
    *l = (struct load_state){.p = p, .user = user, .db = db, .out = out};
    memset(out, 0, sizeof(*out));
    pthread_mutex_init(&l->mu, NULL);
    l->clients = clients > 64 ? 64 : clients;
    for (int i = 0; i < l->clients; i++)
        pthread_create(&l->threads[i], NULL, load_client, l);
    return (struct load *)l;
}

struct load_result load_now(struct load *load)
{
    struct load_state *l = (struct load_state *)load;
    pthread_mutex_lock(&l->mu);
    struct load_result r = *l->out;
    pthread_mutex_unlock(&l->mu);
    return r;
}

void load_stop(struct load *load)
{
    struct load_state *l = (struct load_state *)load;
    l->stop = 1;
    for (int i = 0; i < l->clients; i++)
        pthread_join(l->threads[i], NULL);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

void load_run(const struct proxy *p, const char *user, const char *db, int clients, int seconds,
              struct load_result *out)
{
    struct load *l = load_start(p, user, db, clients, out);
    sleep((unsigned)seconds);
    load_stop(l);
}
