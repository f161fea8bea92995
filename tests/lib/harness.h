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
    char dir[256];  /* per-test directory for the config and log */
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

/* A TCP port on 127.0.0.1 nobody listens on now. */
int free_port(void);

/* The standard test configuration: listen on a free port with TLS, databases "app" (a pool
 * of pool_size in pool_mode over plain TCP, clients waiting up to max_wait_ms), "app_tls" (verify-full), "app_md5", "app_plain", and
 * users alice (password), bob (password_scram), carol (trust). extra is appended verbatim. */
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

/* Writes yaml to <LP_TEST_DIR>/<name>-<port>/lakeproxy.yaml and starts lakeproxy on it with
 * the command-line flag (NULL: none), without waiting for anything. */
void proxy_spawn(struct proxy *p, int port, const char *yaml, const char *name, const char *flag);

/* Waits up to timeout_ms for the proxy to exit: its exit status (128 + signal when killed),
 * or -1 while it still runs. */
int proxy_wait_exit(struct proxy *p, int timeout_ms);

/* Polls the file at path for up to timeout_ms until a line contains needle. */
bool wait_file_line(const char *path, const char *needle, int timeout_ms);

/* Rewrites the running proxy's configuration file with yaml, sends SIGHUP and gives it 300 ms. */
void proxy_reload_yaml(const struct proxy *p, const char *yaml);

/* proxy_default_yaml + proxy_start_yaml. */
void proxy_start(struct proxy *p, int pool_size);

/* SIGTERM, wait; the test fails if lakeproxy crashed or ran under a sanitizer and reported. */
void proxy_stop(struct proxy *p);

/* Connects through the proxy; extra is appended to the conninfo (may be NULL). */
PGconn *proxy_connect(const struct proxy *p, const char *user, const char *password,
                      const char *db, const char *extra);

/* Connects directly to the test PostgreSQL as the superuser, to database db. */
PGconn *pg_admin(const char *db);

/* Runs sql, asserts it succeeded, returns the first value (malloc'd) or NULL for no rows. */
char *query_value(PGconn *c, const char *sql);

/* Runs sql; returns the SQLSTATE of its error (static buffer) or "" on success. */
const char *query_sqlstate(PGconn *c, const char *sql);

/* Runs the COPY ... FROM STDIN sql through the extended protocol (PQexecParams: its Sync goes
 * with the Execute, during copy-in), sends data and ends the copy; asserts each step. */
void copy_in_extended(PGconn *c, const char *sql, const char *data);

/* Logs in over a raw socket (startup, SCRAM or cleartext as asked) and reads the answer up
 * to ReadyForQuery or an ErrorResponse. Returns true on ReadyForQuery; on an error fills
 * sqlstate (6 bytes) and msg. For checking exact SQLSTATEs of login failures, which libpq
 * does not expose. */
bool raw_login(int port, const char *user, const char *password, const char *db,
               char sqlstate[6], char *msg, size_t msgsz);

/* A raw socket logged in as a trust user (no password), after ReadyForQuery. */
int raw_session(int port, const char *user, const char *db);

/* Writes b's messages to fd and empties b; false when they were not all written. */
struct buf;
bool raw_send(int fd, struct buf *b);

/* Sends a simple Query on a raw socket. */
void raw_query(int fd, const char *sql);

/* Reads until an ErrorResponse and returns its SQLSTATE ("" if none came within 5 s). */
const char *raw_expect_error(int fd);

/* A connected blocking socket to 127.0.0.1:port, or -1. */
int raw_connect(int port);

/* Reads one typed message into buf (at most bufsz bytes of body); returns its type, or -1 on
 * EOF, error or timeout (timeout_ms). *len gets the body length. */
int raw_read_msg(int fd, unsigned char *buf, size_t bufsz, size_t *len, int timeout_ms);

/* The SQLSTATE field of an ErrorResponse body, "" if none (static buffer). */
const char *raw_error_sqlstate(const unsigned char *body, size_t len);

/* A datagram socket bound in the test directory, to pass as NOTIFY_SOCKET; its path in path. */
int notify_socket_open(char *path, size_t pathsz);

/* Waits up to timeout_ms for a service-manager notification on fd that contains want;
 * appends what came, as [message], to seen. */
bool wait_notify(int fd, const char *want, int timeout_ms, char *seen, size_t seensz);

/* The HTTP status of GET path from 127.0.0.1:port, -1 when nothing answers within 5 s. */
int http_status(int port, const char *path);

/* Lines of the file at path that contain needle (0 when it cannot be read). */
int file_count_lines(const char *path, const char *needle);

/* Polls the admin console's SHOW CREDENTIALS (as admin user) for up to timeout_ms until the
 * last_error of its first row contains want ("": until it is empty). last gets the last value. */
bool wait_credential(const struct proxy *p, const char *admin, int timeout_ms, const char *want,
                     char *last, size_t lastsz);

/* What load_run saw: successful logins and queries, failed ones. */
struct load_result {
    int connections, queries, errors;
    char first_error[512];
};

/* Load running in the background (load_start ... load_stop). */
struct load;

/* load_run's clients, started in the background; out is filled in as they go. */
struct load *load_start(const struct proxy *p, const char *user, const char *db, int clients,
                        struct load_result *out);

/* The totals so far. */
struct load_result load_now(struct load *l);

/* Stops the clients and waits for them; out holds the totals then. */
void load_stop(struct load *l);

/* `clients` threads log in to db as user (any password) through p and run a small SELECT in a
 * loop for `seconds`, reconnecting every 40 queries; every failed login or query is counted. */
void load_run(const struct proxy *p, const char *user, const char *db, int clients, int seconds,
              struct load_result *out);

/* Column masking tests (tests/lib/setup.sql's customers): the first value no masked client
 * may ever receive found in len bytes at p, or NULL. */
const char *mask_find_secret(const char *p, size_t len);

/* Expects that no value or error message of r (the answer to sql) holds a secret. */
void mask_expect_no_secret(const PGresult *r, const char *sql);

/* Logs in to database app through p as user (password "pw"), notices silenced. */
PGconn *mask_login(const struct proxy *p, const char *user);

/* A statement a masked client tries, and whether it must be refused (else run masked). */
struct mask_attempt_case {
    const char *sql;
    bool refused;
};

/* Runs each of the n cases as user, in the simple and the extended protocol: a refusal must
 * be 42501 (or close the connection), no answer (COPY data included) may hold a secret; then
 * expects the connection still usable. */
void mask_attempts_run(const struct proxy *p, const char *user,
                       const struct mask_attempt_case *cases, size_t n);

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

/* Runs a SHOW on an admin-console connection; the test fails unless it returns rows. */
PGresult *admin_show(PGconn *adm, const char *what);

/* Established TCP connections that lakeproxy p holds towards ip:port (from /proc). */
int proxy_server_sockets(const struct proxy *p, const char *ip, int port);

/* Seconds since an arbitrary start, with sub-millisecond precision. */
double now_s(void);

/* Every server that lakeproxy p's admin console (as admin, password) lists for db is in state
 * idle or active and is a backend that PostgreSQL (direct, a superuser connection) has now;
 * no client of db waits. Failures are expectations, not assertions. */
void expect_live_servers(const struct proxy *p, const char *admin, const char *password,
                         PGconn *direct, const char *db);

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
