/* procinfo.h: what a running lakeproxy holds (sockets, memory, descriptors, servers). */
#ifndef LAKEPROXY_TEST_PROCINFO_H
#define LAKEPROXY_TEST_PROCINFO_H

#include <libpq-fe.h>
#include <stdbool.h>

struct proxy;

/* Established TCP connections that lakeproxy p holds towards ip:port (from /proc). */
int proxy_server_sockets(const struct proxy *p, const char *ip, int port);

/* Every server that lakeproxy p's admin console (as admin, password) lists for db is in state
 * idle or active and is a backend that PostgreSQL (direct, a superuser connection) has now;
 * no client of db waits. Failures are expectations, not assertions. */
void expect_live_servers(const struct proxy *p, const char *admin, const char *password,
                         PGconn *direct, const char *db);

/* Column col of db's row in SHOW POOLS of lakeproxy p (asked as admin, password) as a number,
 * plus column plus's when not NULL (one snapshot); -1 when there is no such row. */
int admin_pool_number(const struct proxy *p, const char *admin, const char *password,
                      const char *db, const char *col, const char *plus);

/* Waits up to 5 s for n clients of db to wait for a server (SHOW POOLS cl_waiting, asked as
 * admin, password); the test fails if they never do. */
void expect_clients_waiting(const struct proxy *p, const char *admin, const char *password,
                            const char *db, int n);

/* The row of the admin console's SHOW QUERIES top whose query is q: its column col as a
 * number, -1 when the row is absent. */
long long admin_show_queries_value(PGconn *admin, int top, const char *q, const char *col);

/* Raises this process's soft limit on open files to want (at most the hard limit); the
 * lakeproxy processes started afterwards inherit it. Returns the soft limit now in force. */
long raise_fd_limit(long want);

/* A memory figure of lakeproxy in kB from /proc/PID/status: field "VmRSS" (resident now) or
 * "VmHWM" (resident at its peak); the test fails without it. */
long proxy_status_kb(const struct proxy *p, const char *field);

/* Whether lakeproxy's RSS follows its own allocations: not under AddressSanitizer (its
 * quarantine and caches keep freed memory) nor under valgrind. */
bool rss_follows_heap(void);

/* The file descriptors lakeproxy has open (entries of /proc/PID/fd). */
int proxy_fd_count(const struct proxy *p);

#endif
