/* harness.c: integration-test helpers: per-test lakeproxy (configuration, start, reload, stop),
 * libpq shortcuts, service-manager and HTTP probes. Raw sockets (rawproto.c), load
 * (testload.c), masking checks (maskcheck.c), private clusters (pgprivate.c) and /proc
 * readings (procinfo.c) have files of their own. */
#include "harness.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *env_need(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v && *v, "environment variable %s is not set: run the tests with `make check`", name);
    return v;
}

/* The lowest port the kernel hands out as a connection's local port (ip_local_port_range). */
static int ephemeral_low(void)
{
    int low = 32768, high = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d %d", &low, &high) != 2)
            low = 32768;
        fclose(f);
    }
    return low;
}

/* Whether a listening socket could bind 127.0.0.1:port now. */
static bool port_bindable(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)port)};
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Claims port for this test run: true for the first test process to ask. Two tests running
 * side by side could otherwise both find a port free and both start a lakeproxy on it; the
 * second cannot bind, yet wait_listening connects (to the first) and both tests go on against
 * one proxy (seen in CI: a pool of one served the 200 clients of another test). */
static bool claim_port(int port)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/ports", env_need("LP_TEST_DIR"));
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/ports/%d", env_need("LP_TEST_DIR"), port);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* Ports come from the 10,000 below the ephemeral range, so no outgoing connection (the tests
 * open thousands) takes one as its local port between this check and lakeproxy's bind, as it
 * could a port the kernel picked for bind(0). Each process starts at a random place and walks
 * on, so one test's successive calls differ; a port is handed out once per run (claim_port),
 * so parallel tests never share one. */
int free_port(void)
{
    static int next = -1;
    int top = ephemeral_low(), span = top - 1024 < 10000 ? top - 1024 : 10000;
    cr_assert(span > 100, "ip_local_port_range starts at %d: no room for test ports below it", top);
    if (next < 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        next = (int)(((unsigned)getpid() * 2654435761u ^ (unsigned)ts.tv_nsec) % (unsigned)span);
    }
    for (int tries = 0; tries < span; tries++) {
        int port = top - span + next;
        next = (next + 1) % span;
        if (port_bindable(port) && claim_port(port))
            return port;
    }
    cr_assert_fail("no free port in %d..%d", top - span, top - 1);
    return -1;
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void proxy_default_yaml(char *out, size_t outsz, int port, const char *pool_mode, int pool_size,
                        int max_wait_ms, const char *extra)
{
    const char *certs = env_need("LP_CERTS");
    const char *pgport = env_need("LP_PGPORT");
    snprintf(out, outsz,
             "listen:\n  host: 127.0.0.1\n  port: %d\n"
             "  tls:\n    cert: %s/server.crt\n    key: %s/server.key\n"
             "log:\n  level: debug\n"
             "databases:\n"
             "  app:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n"
             "    user: lp_server\n    password: server-secret\n    tls: disable\n"
             "    pool:\n      mode: %s\n      size: %d\n      max_wait_ms: %d\n"
             "  app_tls:\n    host: localhost\n    port: %s\n    dbname: lp_test\n"
             "    user: lp_server\n    password: server-secret\n    tls: verify-full\n"
             "    ca_file: %s/ca.crt\n"
             "  app_md5:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n"
             "    user: lp_md5\n    password: md5-secret\n    tls: disable\n"
             "  app_plain:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n"
             "    user: lp_plain\n    password: plain-secret\n    tls: require\n"
             "users:\n"
             "  alice:\n    password: alice-secret\n"
             "  bob:\n    password_scram: \"%s\"\n"
             "  carol:\n    auth: trust\n"
             "%s",
             port, certs, certs, pgport, pool_mode, pool_size, max_wait_ms, pgport, certs, pgport,
             pgport,
             /* bob's password is "bob-secret" */
             "SCRAM-SHA-256$4096:bG9uZ2VyLXNhbHQtdmFsdWU=$"
             "3uknSB7++pvC7T1B4UG79zfjZD45qLZojqNZGgCT1+E=:"
             "PAKRpsZo74bh6Y2UXxqig2ueBAwZ9VeAONmAlD7d52o=",
             extra ? extra : "");
}

bool under_valgrind(void)
{
    const char *v = getenv("LP_VALGRIND");
    return v && strcmp(v, "1") == 0;
}

/* Waits until something accepts on p's port: true; false if lakeproxy exited first (then
 * p->pid is 0, its status in *status, so proxy_stop does not wait for a reaped process) or
 * did not listen in time (*status -1). */
static bool wait_listening(struct proxy *p, int *status)
{
    *status = -1;
    for (int i = 0; i < (under_valgrind() ? 6000 : 500); i++) {
        int fd = raw_connect(p->port);
        if (fd >= 0)
            close(fd);
        if (waitpid(p->pid, status, WNOHANG) == p->pid) { /* (what answered was another) */
            p->pid = 0;
            return false;
        }
        if (fd >= 0)
            return true;
        usleep(10000);
    }
    return false;
}

/* Lines of p's log that end a reload, applied or refused. */
static int reloads_ended(const struct proxy *p)
{
    return file_count_lines(p->log, "configuration reloaded from") +
           file_count_lines(p->log, "reload refused");
}

void proxy_reload_yaml(const struct proxy *p, const char *yaml)
{
    FILE *f = fopen(p->conf, "w");
    cr_assert(f, "cannot rewrite %s", p->conf);
    fputs(yaml, f);
    fclose(f);
    proxy_reload(p);
}

void proxy_reload(const struct proxy *p)
{
    int before = reloads_ended(p);
    cr_assert_eq(kill(p->pid, SIGHUP), 0);
    /* at least 300 ms, and until the reload has ended (a loaded machine may take longer; a
     * reload that never ends is for the test's own checks to find, after 10 s) */
    usleep(300 * 1000);
    for (int i = 0; i < 970 && reloads_ended(p) == before; i++)
        usleep(10 * 1000);
}

/* The valgrind command line lakeproxy runs under with LP_VALGRIND=1 (log in dir): a definite
 * leak or any memory error makes it exit with VALGRIND_STATUS. */
static void valgrind_prefix(char *out, size_t outsz, const char *dir)
{
    snprintf(out, outsz,
             "valgrind --quiet --leak-check=full --show-leak-kinds=definite "
             "--errors-for-leak-kinds=definite --error-exitcode=%d --num-callers=30 "
             "--suppressions=%s/tests/valgrind.supp --log-file=%s/valgrind.log",
             VALGRIND_STATUS, env_need("LP_ROOT"), dir);
}

/* In the child: runs lakeproxy on conf with the command-line flag (NULL: none), under
 * valgrind with LP_VALGRIND=1 (logging into dir), seeing hosts as its /etc/hosts when hosts is
 * set (a bind mount in a private mount namespace: nothing outside the process sees it). */
static void exec_proxy(const char *bin, const char *conf, const char *flag, const char *hosts,
                       const char *dir)
{
    char wrapper[1024] = "", script[1200];
    if (under_valgrind())
        valgrind_prefix(wrapper, sizeof(wrapper), dir);
    /* $0: the hosts file (or "-"), $1: lakeproxy, $2: its configuration, $3: the flag */
    snprintf(script, sizeof(script), "%s exec %s \"$1\" %s -c \"$2\"",
             hosts ? "mount --bind \"$0\" /etc/hosts &&" : "", wrapper, flag ? "\"$3\"" : "");
    if (hosts)
        execl("/usr/bin/unshare", "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
              script, hosts, bin, conf, flag ? flag : "", (char *)NULL);
    else if (wrapper[0])
        execl("/bin/sh", "sh", "-c", script, "-", bin, conf, flag ? flag : "", (char *)NULL);
    else if (flag)
        execl(bin, bin, flag, "-c", conf, (char *)NULL);
    else
        execl(bin, bin, "-c", conf, (char *)NULL);
    _exit(127);
}

/* In the child: becomes user (when root and user is set; its directory and configuration
 * made readable). */
static void become(const char *user)
{
    struct passwd *pw = user && geteuid() == 0 ? getpwnam(user) : NULL;
    if (pw && (setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0))
        _exit(126);
}

/* proxy_spawn, with hosts as in proxy_start_yaml_hosts, run as user (NULL: as the test). */
static void spawn_as(struct proxy *p, int port, const char *yaml, const char *name,
                     const char *flag, const char *hosts, const char *user)
{
    memset(p, 0, sizeof(*p));
    p->port = port;
    snprintf(p->dir, sizeof(p->dir), "%s/%s-%d", env_need("LP_TEST_DIR"), name, port);
    mkdir(p->dir, 0700);
    snprintf(p->conf, sizeof(p->conf), "%s/lakeproxy.yaml", p->dir);
    snprintf(p->log, sizeof(p->log), "%s/lakeproxy.log", p->dir);
    FILE *f = fopen(p->conf, "w");
    cr_assert(f, "cannot write %s", p->conf);
    fputs(yaml, f);
    fclose(f);
    if (user) {
        chmod(p->dir, 01777); /* (valgrind writes its log there; sticky: lakeproxy refuses a
                                  configuration in a directory anyone may change) */
        chmod(p->conf, 0644);
    }
    const char *bin = env_need("LP_BIN");
    p->pid = fork();
    cr_assert(p->pid >= 0);
    if (p->pid == 0) {
        /* never outlive the test: one that fails before its proxy_stop leaves no process */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        dup2(fd, 1);
        become(user);
        exec_proxy(bin, p->conf, flag, hosts, p->dir);
    }
}

static void spawn(struct proxy *p, int port, const char *yaml, const char *name, const char *flag,
                  const char *hosts)
{
    spawn_as(p, port, yaml, name, flag, hosts, NULL);
}

void proxy_spawn(struct proxy *p, int port, const char *yaml, const char *name, const char *flag)
{
    spawn(p, port, yaml, name, flag, NULL);
}

/* Starts lakeproxy and waits until it listens (the test fails if it does not). */
static void start_listening(struct proxy *p, int port, const char *yaml, const char *hosts,
                            const char *user)
{
    int st;
    spawn_as(p, port, yaml, "proxy", NULL, hosts, user);
    if (!wait_listening(p, &st))
        cr_assert_fail("lakeproxy did not start listening on %d (%s %d); see %s", port,
                       st == -1 ? "still running, status" : "exited, status", st, p->log);
}

void proxy_start_yaml_hosts(struct proxy *p, int port, const char *yaml, const char *hosts)
{
    start_listening(p, port, yaml, hosts, NULL);
}

void proxy_start_as(struct proxy *p, int port, const char *yaml, const char *user)
{
    start_listening(p, port, yaml, NULL, user);
}

void proxy_start_yaml(struct proxy *p, int port, const char *yaml)
{
    proxy_start_yaml_hosts(p, port, yaml, NULL);
}

void yaml_add_database(char *yaml, size_t yamlsz, const char *entry)
{
    char rest[4096];
    char *users = strstr(yaml, "users:\n");
    cr_assert(users, "no users: section");
    cr_assert(strlen(users) < sizeof(rest));
    snprintf(rest, sizeof(rest), "%s", users);
    size_t room = yamlsz - (size_t)(users - yaml);
    cr_assert(strlen(entry) + strlen(rest) < room, "configuration too long");
    snprintf(users, room, "%s%s", entry, rest);
}

int proxy_wait_exit(struct proxy *p, int timeout_ms)
{
    int st = 0;
    for (int waited = 0; p->pid > 0; waited += 10) {
        if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
            p->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (waited >= timeout_ms)
            return -1;
        usleep(10000);
    }
    return -1;
}

bool wait_file_line(const char *path, const char *needle, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        if (file_count_lines(path, needle) > 0)
            return true;
        usleep(20000);
    }
    return false;
}

void proxy_start_with(struct proxy *p, const char *pool_mode, int pool_size, int max_wait_ms,
                      const char *extra)
{
    static char yaml[8192];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, pool_mode, pool_size, max_wait_ms, extra);
    proxy_start_yaml(p, port, yaml);
}

void proxy_start(struct proxy *p, int pool_size)
{
    proxy_start_with(p, "session", pool_size, 3000, NULL);
}

/* Sends SIGTERM to p and waits for it to exit (valgrind's leak check takes its time); its
 * wait status, or -1 when it had to be killed with SIGKILL. */
static int wait_stopped(const struct proxy *p)
{
    int st = 0, tries = under_valgrind() ? 12000 : 1000;
    kill(p->pid, SIGTERM);
    for (int i = 0; i < tries; i++) {
        if (waitpid(p->pid, &st, WNOHANG) == p->pid)
            return st;
        usleep(10000);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &st, 0);
    return -1;
}

/* Whether a line of lakeproxy's log tells why it stopped badly: a sanitizer's report, a
 * libevent warning, or one of lakeproxy's own errors. */
static bool is_diagnosis_line(const char *line)
{
    static const char *const marks[] = {"runtime error", "Sanitizer", "[warn]", "[err]",
                                        " ERROR ",       " FATAL ",   " PANIC "};
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
        if (strstr(line, marks[i]))
            return true;
    return false;
}

/* Copies to out, indented, the last few lines of the log that say why lakeproxy stopped badly,
 * and its last line: CI shows only the end of the run, so the reason must be in the summary. */
static void copy_log_diagnosis(const char *log, FILE *out)
{
    enum { KEEP = 6, WIDTH = 300 };
    char kept[KEEP][WIDTH], last[WIDTH] = "", line[WIDTH];
    int n = 0;
    FILE *f = fopen(log, "r");
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (is_diagnosis_line(line))
            snprintf(kept[n++ % KEEP], WIDTH, "%s", line);
        if (line[0])
            snprintf(last, sizeof(last), "%s", line);
    }
    fclose(f);
    for (int i = n > KEEP ? n - KEEP : 0; i < n; i++)
        fprintf(out, "    %s\n", kept[i % KEEP]);
    if (last[0] && (n == 0 || strcmp(last, kept[(n - 1) % KEEP]) != 0))
        fprintf(out, "    last line: %s\n", last);
}

/* Appends why (and, indented, what the log says of it) to $LP_TEST_DIR/stop-failures.txt, whose
 * unindented lines tests/run_all.sh counts as failures:
 * criterion reports an assertion that fails in a suite's .fini (where most tests stop their
 * proxy) but still counts the test as passed. */
static void note_stop_failure(const char *why, const char *log)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/stop-failures.txt", env_need("LP_TEST_DIR"));
    FILE *f = fopen(path, "a");
    if (f) {
        fprintf(f, "%s\n", why);
        copy_log_diagnosis(log, f);
        fclose(f);
    }
}

void expect_session_closed(PGconn *c, const char *why)
{
    PGresult *r = PQexec(c, "SELECT current_user");
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "the session goes on as %s",
                  PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "-");
    cr_expect(strstr(PQerrorMessage(c), why), "expected \"%s\" in: %s", why, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

void proxy_expect_exit_0(struct proxy *p, int timeout_ms)
{
    int st = 0;
    bool gone = false;
    for (int waited = 0; waited < timeout_ms && !gone; waited += 10) {
        gone = waitpid(p->pid, &st, WNOHANG) == p->pid;
        if (!gone)
            usleep(10 * 1000);
    }
    cr_expect(gone, "lakeproxy did not exit within %d ms; see %s", timeout_ms, p->log);
    if (!gone)
        return;
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d; see %s", st, p->log);
    p->pid = 0;
}

void proxy_stop(struct proxy *p)
{
    char why[600] = "";
    if (p->pid <= 0)
        return;
    int st = wait_stopped(p);
    if (st == -1)
        snprintf(why, sizeof(why), "lakeproxy did not stop within %d s of SIGTERM; see %s",
                 under_valgrind() ? 120 : 10, p->log);
    else if (WIFEXITED(st) && WEXITSTATUS(st) == VALGRIND_STATUS)
        snprintf(why, sizeof(why), "valgrind found a leak or a memory error; see %s/valgrind.log",
                 p->dir);
    else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        snprintf(why, sizeof(why), "lakeproxy exited abnormally (status %d); see %s", st, p->log);
    p->pid = 0;
    if (why[0]) {
        note_stop_failure(why, p->log);
        cr_assert_fail("%s", why);
    }
}

PGconn *proxy_connect(const struct proxy *p, const char *user, const char *password, const char *db,
                      const char *extra)
{
    char ci[1024];
    snprintf(ci, sizeof(ci),
             "host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable "
             "connect_timeout=30 %s",
             p->port, user, password ? password : "", db, extra ? extra : "");
    return PQconnectdb(ci);
}

PGconn *proxy_connect_within(const struct proxy *p, const char *user, const char *password,
                             const char *db, int timeout_ms)
{
    PGconn *c = proxy_connect(p, user, password, db, NULL);
    for (int waited = 0; PQstatus(c) != CONNECTION_OK && waited < timeout_ms; waited += 50) {
        PQfinish(c);
        usleep(50 * 1000);
        c = proxy_connect(p, user, password, db, NULL);
    }
    return c;
}

PGconn *pg_admin(const char *db)
{
    char ci[512];
    snprintf(ci, sizeof(ci), "host=%s port=%s user=postgres dbname=%s", env_need("LP_PGSOCK"),
             env_need("LP_PGPORT"), db);
    PGconn *c = PQconnectdb(ci);
    cr_assert(PQstatus(c) == CONNECTION_OK, "admin connection failed: %s", PQerrorMessage(c));
    return c;
}

void yaml_add_txn_database_sized(char *yaml, size_t yamlsz, const char *entry, const char *dbname,
                                 int size)
{
    char e[1024];
    snprintf(e, sizeof(e),
             "  %s:\n    host: 127.0.0.1\n    port: %s\n    dbname: %s\n"
             "    user: lp_server\n    password: server-secret\n    tls: disable\n"
             "    pool:\n      mode: transaction\n      size: %d\n",
             entry, env_need("LP_PGPORT"), dbname, size);
    yaml_add_database(yaml, yamlsz, e);
}

void yaml_add_txn_database(char *yaml, size_t yamlsz, const char *entry, const char *dbname)
{
    yaml_add_txn_database_sized(yaml, yamlsz, entry, dbname, 2);
}

void pg_admin_exec(const char *db, const char *sql)
{
    PGconn *a = pg_admin(db);
    PGresult *r = PQexec(a, sql);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
              "[%s] %.200s: %s", db, sql, PQerrorMessage(a));
    PQclear(r);
    PQfinish(a);
}

void pg_fresh_database(const char *name)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    pg_admin_exec("postgres", sql);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s OWNER lp_server", name);
    pg_admin_exec("postgres", sql);
}

char *prepared_value(PGconn *c, const char *name, const char *arg)
{
    const char *params[1] = {arg};
    PGresult *r = PQexecPrepared(c, name, 1, params, NULL, NULL, 0);
    char *v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                  ? strdup(PQgetvalue(r, 0, 0))
                  : strdup(PQerrorMessage(c));
    PQclear(r);
    return v;
}

void pg_exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
              "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

long pg_long(PGconn *c, const char *sql)
{
    char *v = query_value(c, sql);
    long n = v ? atol(v) : -1;
    free(v);
    return n;
}

void pg_owned_table(PGconn *adm, const char *name, const char *cols)
{
    char sql[512];
    snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", name);
    pg_exec_ok(adm, sql);
    snprintf(sql, sizeof(sql), "CREATE TABLE %s (%s)", name, cols);
    pg_exec_ok(adm, sql);
    snprintf(sql, sizeof(sql), "ALTER TABLE %s OWNER TO lp_server", name);
    pg_exec_ok(adm, sql);
}

char *query_value(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s failed: %s", sql,
              PQerrorMessage(c));
    char *v = PQntuples(r) > 0 ? strdup(PQgetvalue(r, 0, 0)) : NULL;
    PQclear(r);
    return v;
}

char *sent_query_value(PGconn *c)
{
    PGresult *r = PQgetResult(c);
    cr_assert(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0,
              "no rows answered the query sent: %s", PQerrorMessage(c));
    char *v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    while ((r = PQgetResult(c)))
        PQclear(r);
    return v;
}

const char *query_sqlstate(PGconn *c, const char *sql)
{
    static char state[6];
    PGresult *r = PQexec(c, sql);
    const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    snprintf(state, sizeof(state), "%s", s ? s : "");
    PQclear(r);
    return state;
}

void copy_in_extended(PGconn *c, const char *sql, const char *data)
{
    PGresult *r = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_IN, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    cr_assert_eq(PQputCopyData(c, data, (int)strlen(data)), 1);
    cr_assert_eq(PQputCopyEnd(c, NULL), 1);
    while ((r = PQgetResult(c))) {
        cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
        PQclear(r);
    }
}

int notify_socket_open(char *path, size_t pathsz)
{
    static int serial;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s/notify-%d-%d", env_need("LP_TEST_DIR"), getpid(),
             ++serial);
    snprintf(path, pathsz, "%s", a.sun_path);
    unlink(a.sun_path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    return fd;
}

bool wait_notify(int fd, const char *want, int timeout_ms, char *seen, size_t seensz)
{
    double end = now_s() + timeout_ms / 1000.0;
    while (now_s() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        char msg[512];
        ssize_t n = recv(fd, msg, sizeof(msg) - 1, 0);
        if (n <= 0)
            continue;
        msg[n] = '\0';
        size_t at = strlen(seen);
        snprintf(seen + at, seensz - at, "[%s]", msg);
        if (strstr(msg, want))
            return true;
    }
    return false;
}

int http_status(int port, const char *path)
{
    char req[300], resp[64];
    int fd = raw_connect(port), code = -1;
    if (fd < 0)
        return -1;
    snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    ssize_t n = write(fd, req, strlen(req)) == (ssize_t)strlen(req) && poll(&pfd, 1, 5000) > 0
                    ? read(fd, resp, sizeof(resp) - 1)
                    : -1;
    if (n > 0) {
        resp[n] = '\0';
        if (sscanf(resp, "HTTP/1.%*d %d", &code) != 1)
            code = -1;
    }
    close(fd);
    return code;
}

int file_count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    int n = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

bool wait_credential(const struct proxy *p, const char *admin, int timeout_ms, const char *want,
                     char *last, size_t lastsz)
{
    PGconn *adm = proxy_connect(p, admin, "unused", "lakeproxy", NULL);
    cr_assert(PQstatus(adm) == CONNECTION_OK, "%s", PQerrorMessage(adm));
    bool found = false;
    for (int i = 0; i < timeout_ms / 100 && !found; i++) {
        PGresult *r = PQexec(adm, "SHOW CREDENTIALS");
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(adm));
        snprintf(last, lastsz, "%s", PQgetvalue(r, 0, PQfnumber(r, "last_error")));
        PQclear(r);
        found = want[0] ? strstr(last, want) != NULL : last[0] == '\0';
        if (!found)
            usleep(100000);
    }
    PQfinish(adm);
    return found;
}

void expect_alice_served(const struct proxy *p, const char *what)
{
    double t0 = now_s();
    PGconn *c = proxy_connect(p, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "after %s: %s", what, PQerrorMessage(c));
    EXPECT_QUERY_VALUE(c, "SELECT 'served'", "served", "another client is served after %s", what);
    PQfinish(c);
    cr_expect_lt(now_s() - t0, 3.0, "and promptly after %s", what);
}

PGconn *proxy_console(const struct proxy *p, const char *user, const char *password)
{
    PGconn *c = proxy_connect(p, user, password, "lakeproxy", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "admin console: %s", PQerrorMessage(c));
    return c;
}

void admin_ok(PGconn *adm, const char *cmd)
{
    PGresult *r = PQexec(adm, cmd);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", cmd, PQerrorMessage(adm));
    PQclear(r);
}

PGresult *admin_show(PGconn *adm, const char *what)
{
    PGresult *r = PQexec(adm, what);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", what, PQerrorMessage(adm));
    return r;
}

char *http_get(int port, const char *path, int *status)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "curl -s -w '\\n%%{http_code}' http://127.0.0.1:%d%s", port, path);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run curl");
    size_t cap = 1 << 20, n = 0;
    char *out = malloc(cap);
    cr_assert_not_null(out);
    size_t got;
    while ((got = fread(out + n, 1, cap - n - 1, p)) > 0)
        n += got;
    out[n] = '\0';
    cr_assert_eq(pclose(p), 0, "curl failed");
    char *last = strrchr(out, '\n');
    cr_assert_not_null(last);
    *status = atoi(last + 1);
    *last = '\0';
    return out;
}

void copy_in_end(PGconn *c)
{
    cr_assert_eq(PQputCopyEnd(c, NULL), 1, "%s", PQerrorMessage(c));
    PGresult *r = PQgetResult(c);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    while ((r = PQgetResult(c)))
        PQclear(r);
}

bool wait_not_busy(PGconn *c, double timeout_s)
{
    double deadline = now_s() + timeout_s;
    while (PQisBusy(c) && now_s() < deadline) {
        struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
        poll(&p, 1, 50);
        if (!PQconsumeInput(c))
            break;
    }
    return !PQisBusy(c);
}

PGresult *query_result_within(PGconn *c, double timeout_s)
{
    if (!wait_not_busy(c, timeout_s) && PQstatus(c) == CONNECTION_OK)
        return NULL;
    PGresult *last = NULL, *r;
    while ((r = PQgetResult(c))) {
        PQclear(last);
        last = r;
    }
    return last;
}

/* Notice receiver: keeps the SQLSTATE and message of the last error or notice in a said. */
static void keep_said(void *arg, const PGresult *r)
{
    struct said *said = arg;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    snprintf(said->state, sizeof(said->state), "%s", state ? state : "");
    snprintf(said->msg, sizeof(said->msg), "%s", msg ? msg : "");
}

void idle_said(PGconn *c, struct said *said, int wait_ms)
{
    memset(said, 0, sizeof(*said));
    PQsetNoticeReceiver(c, keep_said, said);
    for (int waited = 0;; waited += 20) {
        PQconsumeInput(c);
        PQisBusy(c); /* parses what arrived */
        if (said->state[0] || waited >= wait_ms)
            break;
        usleep(20 * 1000);
    }
    PQsetNoticeReceiver(c, NULL, NULL);
}

void idle_goodbye(PGconn *c, char sqlstate[6], int wait_ms)
{
    struct said said;
    idle_said(c, &said, wait_ms);
    memcpy(sqlstate, said.state, sizeof(said.state));
}

void outcome_of(PGconn *c, struct outcome *o)
{
    PGresult *r;
    memset(o, 0, sizeof(*o));
    while ((r = PQgetResult(c)) != NULL) {
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !o->value[0])
            snprintf(o->value, sizeof(o->value), "%.100s", PQgetvalue(r, 0, 0));
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (st && !o->state[0]) {
            snprintf(o->state, sizeof(o->state), "%.5s", st);
            snprintf(o->msg, sizeof(o->msg), "%.200s", PQresultErrorMessage(r));
        }
        PQclear(r);
    }
    if (PQstatus(c) != CONNECTION_OK && !o->state[0])
        snprintf(o->state, sizeof(o->state), "CLOSD");
}

bool pg_statement_gone(PGconn *adm, const char *mark, int timeout_ms)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
             "query LIKE '%%%s%%' AND pid <> pg_backend_pid()",
             mark);
    for (int waited = 0;; waited += 50) {
        char *n = query_value(adm, sql);
        bool gone = strcmp(n, "0") == 0;
        free(n);
        if (gone || waited >= timeout_ms)
            return gone;
        usleep(50 * 1000);
    }
}

void token_lake_yaml(char *out, size_t outsz, int port, const char *role, int mock_port,
                     const char *more)
{
    const char *certs = env_need("LP_CERTS");
    snprintf(out, outsz,
             "listen: {host: 127.0.0.1, port: %d, tls: {cert: %s/server.crt, key: %s/server.key}}\n"
             "log: {level: info}\n"
             "admin: {users: [carol]}\n"
             "databases:\n"
             "  lake:\n    host: 127.0.0.1\n    port: %s\n    dbname: lp_test\n    user: %s\n"
             "    tls: disable\n    client_auth: databricks_token\n"
             "    pool: {mode: transaction, size: 2, max_wait_ms: 8000}\n"
             "    credentials:\n      provider: databricks\n"
             "      workspace: https://127.0.0.1:%d\n"
             "      client_id: lp-client\n      client_secret_env: LP_TEST_CLIENT_SECRET\n"
             "      ca_file: %s/ca.crt\n      timeout_ms: 2000\n      instance: lp-instance\n"
             "%s",
             port, certs, certs, env_need("LP_PGPORT"), role, mock_port, certs, more);
}

PGconn *token_connect(int port, const char *user, const char *token, const char *sslmode)
{
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    const char *keys[] = {
        "host", "port", "user", "password", "dbname", "sslmode", "connect_timeout", NULL};
    const char *vals[] = {"127.0.0.1", ps,  user, token, "lake", sslmode ? sslmode : "require",
                          "30",        NULL};
    return PQconnectdbParams(keys, vals, 0);
}
