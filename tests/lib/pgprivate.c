/* pgprivate.c: a private PostgreSQL cluster per test, for tests that crash or restart it. */
#include "harness.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs a shell command line; the test fails (naming what) when it exits non-zero. */
static void run_cmd(const char *what, const char *cmd)
{
    int st = system(cmd);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s failed: %s", what, cmd);
}

void pg_private_start(struct pg_private *pg, const char *listen)
{
    char cmd[1400];
    const char *root = env_need("LP_ROOT");
    pg->port = free_port();
    snprintf(pg->dir, sizeof(pg->dir), "%s/pg-private-%d", env_need("LP_TEST_DIR"), pg->port);
    snprintf(cmd, sizeof(cmd),
             "PG_TMP_LISTEN='%s' bash %s/tests/lib/pg_tmp.sh start %s %d >%s.log 2>&1 && "
             "bash %s/tests/lib/pg_tmp.sh psql %s -d postgres -f %s/tests/lib/setup.sql "
             ">>%s.log 2>&1",
             listen, root, pg->dir, pg->port, pg->dir, root, pg->dir, root, pg->dir);
    run_cmd("starting a private PostgreSQL", cmd);
}

/* The postmaster's pid from its pid file, or 0. */
static pid_t pg_private_postmaster(const struct pg_private *pg)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/pgdata/postmaster.pid", pg->dir);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return (pid_t)pid;
}

void pg_private_kill9(struct pg_private *pg)
{
    pid_t pid = pg_private_postmaster(pg);
    cr_assert(pid > 0, "no postmaster pid in %s", pg->dir);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    for (int i = 0; i < 500 && kill(pid, 0) == 0; i++)
        usleep(10000);
    cr_assert_neq(kill(pid, 0), 0, "postmaster %d survived SIGKILL", (int)pid);
}

void pg_private_restart(struct pg_private *pg)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "bash %s/tests/lib/pg_tmp.sh restart %s >>%s.log 2>&1",
             env_need("LP_ROOT"), pg->dir, pg->dir);
    /* the killed postmaster's backends may hold its shared memory for a moment */
    for (int i = 0; i < 20; i++) {
        int st = system(cmd);
        if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            return;
        usleep(250000);
    }
    cr_assert_fail("could not restart the private PostgreSQL; see %s.log", pg->dir);
}

void pg_private_stop(struct pg_private *pg)
{
    char cmd[600];
    if (!pg->port)
        return;
    snprintf(cmd, sizeof(cmd), "bash %s/tests/lib/pg_tmp.sh stop %s >>%s.log 2>&1",
             env_need("LP_ROOT"), pg->dir, pg->dir);
    run_cmd("stopping the private PostgreSQL", cmd);
    pg->port = 0;
}

PGconn *pg_private_admin(const struct pg_private *pg, const char *db)
{
    char ci[512];
    snprintf(ci, sizeof(ci), "host=%s/sock port=%d user=postgres dbname=%s connect_timeout=5",
             pg->dir, pg->port, db);
    return PQconnectdb(ci);
}
