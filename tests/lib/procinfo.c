/* procinfo.c: what lakeproxy holds, read from /proc and its admin console. */
#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* The socket inodes of TCP connections in /proc/<pid>/net/tcp whose remote end is ip:port
 * and that are established; counts those that process pid holds. */
int proxy_server_sockets(const struct proxy *p, const char *ip, int port)
{
    char path[64], line[512], want[32], link[64];
    struct in_addr a;
    cr_assert_eq(inet_pton(AF_INET, ip, &a), 1);
    snprintf(want, sizeof(want), "%08X:%04X", a.s_addr, (unsigned)port); /* kernel byte order */
    snprintf(path, sizeof(path), "/proc/%d/net/tcp", (int)p->pid);
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot read %s", path);
    unsigned long inodes[256];
    int n = 0;
    while (fgets(line, sizeof(line), f) && n < 256) {
        char local[64], remote[64];
        unsigned st;
        unsigned long inode;
        if (sscanf(line, " %*d: %63s %63s %x %*s %*s %*s %*s %*s %lu", local, remote, &st,
                   &inode) == 4 &&
            st == 1 /* ESTABLISHED */ && strcmp(remote, want) == 0)
            inodes[n++] = inode;
    }
    fclose(f);
    int held = 0;
    for (int fd = 0; fd < 4096; fd++) {
        char target[64];
        snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)p->pid, fd);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        unsigned long inode;
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (sscanf(target, "socket:[%lu]", &inode) != 1)
            continue;
        for (int i = 0; i < n; i++)
            held += inodes[i] == inode;
    }
    return held;
}

/* The backend pids of the servers of database db in SHOW SERVERS ("connecting" ones
 * excluded); fails on a server in another state than idle or active. */
static int listed_backends(PGconn *adm, const char *db, long *pids, int max)
{
    PGresult *r = admin_show(adm, "SHOW SERVERS");
    int cdb = PQfnumber(r, "database"), cst = PQfnumber(r, "state"),
        cpid = PQfnumber(r, "backend_pid"), n = 0;
    for (int i = 0; i < PQntuples(r) && n < max; i++) {
        if (strcmp(PQgetvalue(r, i, cdb), db) != 0 ||
            strcmp(PQgetvalue(r, i, cst), "connecting") == 0)
            continue;
        cr_expect(strcmp(PQgetvalue(r, i, cst), "idle") == 0 ||
                      strcmp(PQgetvalue(r, i, cst), "active") == 0,
                  "server in state %s", PQgetvalue(r, i, cst));
        pids[n++] = atol(PQgetvalue(r, i, cpid));
    }
    PQclear(r);
    return n;
}

void expect_live_servers(const struct proxy *p, const char *admin, const char *password,
                         PGconn *direct, const char *db)
{
    PGconn *adm = proxy_connect(p, admin, password, "lakeproxy", NULL);
    cr_assert(PQstatus(adm) == CONNECTION_OK, "%s", PQerrorMessage(adm));
    long pids[64];
    int n = listed_backends(adm, db, pids, 64);
    for (int i = 0; i < n; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE pid = %ld",
                 pids[i]);
        char *v = query_value(direct, sql);
        cr_expect_str_eq(v, "1", "SHOW SERVERS lists backend %ld, which is gone", pids[i]);
        free(v);
    }
    PGresult *r = admin_show(adm, "SHOW POOLS");
    for (int i = 0; i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, PQfnumber(r, "database")), db) == 0)
            cr_expect_str_eq(PQgetvalue(r, i, PQfnumber(r, "cl_waiting")), "0");
    PQclear(r);
    PQfinish(adm);
}

int admin_pool_number(const struct proxy *p, const char *admin, const char *password,
                      const char *db, const char *col, const char *plus)
{
    PGconn *a = proxy_connect(p, admin, password, "lakeproxy", NULL);
    cr_assert(PQstatus(a) == CONNECTION_OK, "%s", PQerrorMessage(a));
    PGresult *r = admin_show(a, "SHOW POOLS");
    int n = -1;
    for (int i = 0; i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, PQfnumber(r, "database")), db) == 0)
            n = atoi(PQgetvalue(r, i, PQfnumber(r, col))) +
                (plus ? atoi(PQgetvalue(r, i, PQfnumber(r, plus))) : 0);
    PQclear(r);
    PQfinish(a);
    return n;
}

void expect_clients_waiting(const struct proxy *p, const char *admin, const char *password,
                            const char *db, int n)
{
    int got = -1;
    for (int i = 0; i < 500; i++) {
        got = admin_pool_number(p, admin, password, db, "cl_waiting", NULL);
        if (got == n)
            return;
        usleep(10000);
    }
    cr_assert_eq(got, n, "%d clients of %s waiting for a server, not %d", got, db, n);
}

long raise_fd_limit(long want)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur == RLIM_INFINITY || (long)rl.rlim_cur >= want)
        return rl.rlim_cur == RLIM_INFINITY ? want : (long)rl.rlim_cur;
    rl.rlim_cur =
        rl.rlim_max != RLIM_INFINITY && (long)rl.rlim_max < want ? rl.rlim_max : (rlim_t)want;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0, "setrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    return (long)rl.rlim_cur;
}

long proxy_status_kb(const struct proxy *p, const char *field)
{
    char path[64], line[256];
    size_t n = strlen(field);
    long kb = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot read %s", path);
    while (kb < 0 && fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kb = atol(line + n + 1);
    fclose(f);
    cr_assert(kb > 0, "no %s in %s", field, path);
    return kb;
}

bool rss_follows_heap(void)
{
#ifdef __SANITIZE_ADDRESS__
    return false; /* the tests and lakeproxy are built alike (make check SANITIZE=1) */
#else
    return !under_valgrind();
#endif
}

int proxy_fd_count(const struct proxy *p)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)p->pid);
    DIR *d = opendir(path);
    cr_assert(d, "cannot list %s", path);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

long long admin_show_queries_value(PGconn *admin, int top, const char *q, const char *col)
{
    char sql[64];
    snprintf(sql, sizeof(sql), "SHOW QUERIES %d", top);
    PGresult *r = PQexec(admin, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(admin));
    int qc = PQfnumber(r, "query"), vc = PQfnumber(r, col);
    long long v = -1;
    for (int i = 0; i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, qc), q) == 0)
            v = atoll(PQgetvalue(r, i, vc));
    PQclear(r);
    return v;
}
