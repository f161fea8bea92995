/* harness.h: integration-test helpers: the PostgreSQL cluster started by tests/run_all.sh,
 * a lakeproxy launched per test with a generated configuration, and libpq shortcuts. */
#ifndef LAKEPROXY_TEST_HARNESS_H
#define LAKEPROXY_TEST_HARNESS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <sys/types.h>

struct proxy {
    pid_t pid;
    int port;
    char dir[256]; /* per-test directory for the config and log */
    char conf[300];
    char log[300];
};

/* The exit status of a lakeproxy that valgrind (LP_VALGRIND=1) found a fault in. */
#define VALGRIND_STATUS 99

/* LP_VALGRIND=1: proxy_start* runs lakeproxy under valgrind (make valgrind); proxy_stop then
 * fails the test on a definite leak or an invalid access (see <proxy dir>/valgrind.log). */
bool under_valgrind(void);

/* A required environment variable set by tests/run_all.sh (the test fails without it). */
const char *env_need(const char *name);

/* A TCP port on 127.0.0.1 nobody listens on now, and never handed out before in this run. */
int free_port(void);

/* The standard test configuration: listen on a free port with TLS, databases "app" (a pool
 * of pool_size in pool_mode over plain TCP, clients waiting up to max_wait_ms), "app_tls"
 * (verify-full), "app_md5", "app_plain", and users alice (password), bob (password_scram), carol
 * (trust). extra is appended verbatim. */
void proxy_default_yaml(char *out, size_t outsz, int port, const char *pool_mode, int pool_size,
                        int max_wait_ms, const char *extra);

/* Writes yaml to a fresh config file, starts lakeproxy on it and waits until it accepts. */
void proxy_start_yaml(struct proxy *p, int port, const char *yaml);

/* proxy_start_yaml, with lakeproxy in a private mount namespace where the file hosts is
 * bind-mounted over /etc/hosts (NULL: the real one). Rewrite hosts in place to change it. */
void proxy_start_yaml_hosts(struct proxy *p, int port, const char *yaml, const char *hosts);

/* Inserts entry (a database's lines, indented as under databases:) at the end of the
 * databases of a configuration made by proxy_default_yaml. */
void yaml_add_database(char *yaml, size_t yamlsz, const char *entry);
/* Adds database entry (transaction pooling, 2 servers) for the test server's database dbname,
 * logging in as lp_server, with yaml_add_database. */
void yaml_add_txn_database(char *yaml, size_t yamlsz, const char *entry, const char *dbname);
/* yaml_add_txn_database with a pool of size servers. */
void yaml_add_txn_database_sized(char *yaml, size_t yamlsz, const char *entry, const char *dbname,
                                 int size);

/* Writes yaml to <LP_TEST_DIR>/<name>-<port>/lakeproxy.yaml and starts lakeproxy on it with
 * the command-line flag (NULL: none), without waiting for anything. */
void proxy_spawn(struct proxy *p, int port, const char *yaml, const char *name, const char *flag);
/* proxy_start_yaml, run as user when the test runs as root (as the test's user otherwise). */
void proxy_start_as(struct proxy *p, int port, const char *yaml, const char *user);

/* Waits up to timeout_ms for the proxy to exit: its exit status (128 + signal when killed),
 * or -1 while it still runs. */
int proxy_wait_exit(struct proxy *p, int timeout_ms);

/* Polls the file at path for up to timeout_ms until a line contains needle. */
bool wait_file_line(const char *path, const char *needle, int timeout_ms);

/* Rewrites the running proxy's configuration file with yaml, sends SIGHUP, and waits at least
 * 300 ms and until its log says the reload ended (applied or refused; at most 10 s). */
void proxy_reload_yaml(const struct proxy *p, const char *yaml);
/* The same with the configuration file as it is. */
void proxy_reload(const struct proxy *p);

/* proxy_default_yaml + proxy_start_yaml, on a free port. */
void proxy_start_with(struct proxy *p, const char *pool_mode, int pool_size, int max_wait_ms,
                      const char *extra);

/* proxy_start_with: a session pool, clients waiting up to 3 s, nothing extra. */
void proxy_start(struct proxy *p, int pool_size);

/* SIGTERM, wait; the test fails if lakeproxy crashed or ran under a sanitizer and reported. */
void proxy_stop(struct proxy *p);

/* Expects c's session to have been closed by lakeproxy with a message holding why: its next
 * query fails. Finishes c. */
void expect_session_closed(PGconn *c, const char *why);

/* Waits up to timeout_ms for lakeproxy to exit by itself (a drain ending) and expects exit
 * status 0; once reaped, p->pid is 0 (proxy_stop then has nothing to stop). */
void proxy_expect_exit_0(struct proxy *p, int timeout_ms);

/* Connects through the proxy; extra is appended to the conninfo (may be NULL). */
PGconn *proxy_connect(const struct proxy *p, const char *user, const char *password, const char *db,
                      const char *extra);
/* proxy_connect (no extra options) again every 50 ms until it succeeds or timeout_ms passed:
 * for a login that succeeds once lakeproxy has seen something happen (a client leave). */
PGconn *proxy_connect_within(const struct proxy *p, const char *user, const char *password,
                             const char *db, int timeout_ms);

/* Connects directly to the test PostgreSQL as the superuser, to database db. */
PGconn *pg_admin(const char *db);
/* Runs sql (one or more statements, ';'-separated) as the superuser in database db, asserted
 * to succeed. */
void pg_admin_exec(const char *db, const char *sql);
/* Creates database name afresh (dropped first, with its sessions), owned by lp_server. */
void pg_fresh_database(const char *name);

/* A line of what a test saw, to stderr, tagged (a red-team round's figures, say). */
#define TEST_NOTE(tag, ...)                                                                        \
    do {                                                                                           \
        fprintf(stderr, tag ": " __VA_ARGS__);                                                     \
        fputc('\n', stderr);                                                                       \
    } while (0)

/* Runs sql, asserts it succeeded, returns the first value (malloc'd) or NULL for no rows. */
char *query_value(PGconn *c, const char *sql);

/* The one value c's prepared statement name gives run with one argument arg (malloc'd), or
 * the error message. */
char *prepared_value(PGconn *c, const char *name, const char *arg);

/* Runs sql on c (a direct connection, say), which must succeed: a command or rows. */
void pg_exec_ok(PGconn *c, const char *sql);

/* How the query sent last on a connection ended: the SQLSTATE of its first error ("" when
 * none, "CLOSD" when the connection is gone), the first value of its first row, the error. */
struct outcome {
    char state[6];
    char value[128];
    char msg[256];
};

/* Reads every result of the query sent last on c into o. */
void outcome_of(PGconn *c, struct outcome *o);

/* The first value sql returns on c, as a number (-1 when none). */
long pg_long(PGconn *c, const char *sql);

/* Waits up to timeout_ms until no backend (but adm's own) runs a statement whose text holds
 * mark (pg_stat_activity, over the direct connection adm). */
bool pg_statement_gone(PGconn *adm, const char *mark, int timeout_ms);

/* Makes table name (columns cols) afresh over adm, owned by the pools' role lp_server. */
void pg_owned_table(PGconn *adm, const char *name, const char *cols);

/* The first value (malloc'd) of the rows answering the query sent last on c (PQsendQuery);
 * asserts that rows came, and reads the rest of the answer. */
char *sent_query_value(PGconn *c);

/* Expects sql's first value on c to be want (the rest: a message and its arguments). */
#define EXPECT_QUERY_VALUE(c, sql, want, ...)                                                      \
    do {                                                                                           \
        char *value_ = query_value((c), (sql));                                                    \
        cr_expect_str_eq(value_ ? value_ : "(no row)", (want), __VA_ARGS__);                       \
        free(value_);                                                                              \
    } while (0)

/* Runs sql; returns the SQLSTATE of its error (static buffer) or "" on success. */
const char *query_sqlstate(PGconn *c, const char *sql);

/* Runs the COPY ... FROM STDIN sql through the extended protocol (PQexecParams: its Sync goes
 * with the Execute, during copy-in), sends data and ends the copy; asserts each step. */
void copy_in_extended(PGconn *c, const char *sql, const char *data);

/* A datagram socket bound in the test directory, to pass as NOTIFY_SOCKET; its path in path. */
int notify_socket_open(char *path, size_t pathsz);

/* Waits up to timeout_ms for a service-manager notification on fd that contains want;
 * appends what came, as [message], to seen. */
bool wait_notify(int fd, const char *want, int timeout_ms, char *seen, size_t seensz);

/* The HTTP status of GET path from 127.0.0.1:port, -1 when nothing answers within 5 s. */
int http_status(int port, const char *path);

/* What the proxy said to a client between queries: an error or notice (libpq hands even a
 * FATAL one sent then to the notice receiver). */
struct said {
    char state[6]; /* SQLSTATE, "" when nothing came */
    char msg[512]; /* primary message */
};

/* Waits up to wait_ms for the proxy to say something to c while it is idle, into *said. */
void idle_said(PGconn *c, struct said *said, int wait_ms);

/* The SQLSTATE of the ErrorResponse the proxy sent c while it was idle (libpq hands it to the
 * notice receiver), waiting up to wait_ms for it; "" when none came. */
void idle_goodbye(PGconn *c, char sqlstate[6], int wait_ms);

/* Lines of the file at path that contain needle (0 when it cannot be read). */
int file_count_lines(const char *path, const char *needle);

/* Polls the admin console's SHOW CREDENTIALS (as admin user) for up to timeout_ms until the
 * last_error of its first row contains want ("": until it is empty). last gets the last value. */
bool wait_credential(const struct proxy *p, const char *admin, int timeout_ms, const char *want,
                     char *last, size_t lastsz);

/* Expects alice (password alice-secret) to be served on p's database app within 3 s: that a
 * client is still served promptly after what (an attack, a flood) was done. */
void expect_alice_served(const struct proxy *p, const char *what);

/* Connects to the admin console (database lakeproxy) as user; the test fails unless it can. */
PGconn *proxy_console(const struct proxy *p, const char *user, const char *password);

/* Runs an admin-console command (PAUSE, KILL, RELOAD...); the test fails unless it succeeds. */
void admin_ok(PGconn *adm, const char *cmd);

/* Runs a SHOW on an admin-console connection; the test fails unless it returns rows. */
PGresult *admin_show(PGconn *adm, const char *what);

/* Seconds since an arbitrary start, with sub-millisecond precision. */
double now_s(void);
/* Waits up to timeout_s for the result of the query sent on c (its last result); NULL when
 * none came. */
PGresult *query_result_within(PGconn *c, double timeout_s);

/* Reads what comes on c until a result is whole (PQisBusy false), up to timeout_s: whether it
 * is. */
bool wait_not_busy(PGconn *c, double timeout_s);

/* Ends c's COPY FROM STDIN and expects its CommandComplete (and nothing else after it). */
void copy_in_end(PGconn *c);

/* The body of GET http://127.0.0.1:port/path, by curl (malloc'd), its HTTP status in *status. */
char *http_get(int port, const char *path, int *status);

/* A configuration (in out) on port with TLS and database "lake" taking Databricks tokens,
 * checked at the mock workspace on mock_port, its servers logging in as role; carol (trust)
 * on the console; `more` follows the lake entry (further databases, users:, ...). */
void token_lake_yaml(char *out, size_t outsz, int port, const char *role, int mock_port,
                     const char *more);

/* Logs in to "lake" on port as user with token as password (TLS unless sslmode says). */
PGconn *token_connect(int port, const char *user, const char *token, const char *sslmode);

/* The helpers by concern; tests include this header only. */
#include "maskcheck.h"
#include "pgprivate.h"
#include "procinfo.h"
#include "rawproto.h"
#include "resetcheck.h"
#include "testload.h"

#endif
