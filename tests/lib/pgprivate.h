/* pgprivate.h: a private PostgreSQL cluster of one test. */
#ifndef LAKEPROXY_TEST_PGPRIVATE_H
#define LAKEPROXY_TEST_PGPRIVATE_H

#include <libpq-fe.h>

/* A private PostgreSQL cluster of one test (tests/lib/pg_tmp.sh, loaded with setup.sql), for
 * tests that crash or restart the server: never the shared one. */
struct pg_private {
    char dir[256];
    int port;
};

/* initdb and start a private cluster on a free port, listening on listen ("127.0.0.1" or a
 * comma-separated list of loopback addresses). */
void pg_private_start(struct pg_private *pg, const char *listen);

/* SIGKILL to the postmaster (its backends then die too); returns once it is gone. */
void pg_private_kill9(struct pg_private *pg);

/* Starts the cluster again on its port, retrying while the old backends still hold its
 * shared memory. */
void pg_private_restart(struct pg_private *pg);

/* Stops the cluster (immediate mode); no-op when it was never started. */
void pg_private_stop(struct pg_private *pg);

/* A superuser connection over the cluster's socket (check PQstatus: it may be down). */
PGconn *pg_private_admin(const struct pg_private *pg, const char *db);

#endif
