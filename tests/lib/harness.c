/* harness.c: integration-test helpers: per-test lakeproxy, libpq and raw-socket clients. */
#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "buf.h"
#include "proto.h"

const char *env_need(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v && *v, "environment variable %s is not set: run the tests with `make check`",
              name);
    return v;
}

int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
              getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    close(fd);
    return ntohs(sa.sin_port);
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
             port, certs, certs, pgport, pool_mode, pool_size, max_wait_ms, pgport, certs, pgport, pgport,
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

/* Waits until something accepts on port, or the proxy process has exited. */
static bool wait_listening(pid_t pid, int port)
{
    for (int i = 0; i < (under_valgrind() ? 6000 : 500); i++) {
        int fd = raw_connect(port);
        if (fd >= 0) {
            close(fd);
            return true;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return false;
        usleep(10000);
    }
    return false;
}

void proxy_reload_yaml(const struct proxy *p, const char *yaml)
{
    FILE *f = fopen(p->conf, "w");
    cr_assert(f, "cannot rewrite %s", p->conf);
    fputs(yaml, f);
    fclose(f);
    cr_assert_eq(kill(p->pid, SIGHUP), 0);
    usleep(300 * 1000);
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
        execl("/usr/bin/unshare", "unshare", "--mount", "--propagation", "private", "/bin/sh",
              "-c", script, hosts, bin, conf, flag ? flag : "", (char *)NULL);
    else if (wrapper[0])
        execl("/bin/sh", "sh", "-c", script, "-", bin, conf, flag ? flag : "", (char *)NULL);
    else if (flag)
        execl(bin, bin, flag, "-c", conf, (char *)NULL);
    else
        execl(bin, bin, "-c", conf, (char *)NULL);
    _exit(127);
}

/* proxy_spawn, with hosts as in proxy_start_yaml_hosts. */
static void spawn(struct proxy *p, int port, const char *yaml, const char *name, const char *flag,
                  const char *hosts)
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
    const char *bin = env_need("LP_BIN");
    p->pid = fork();
    cr_assert(p->pid >= 0);
    if (p->pid == 0) {
        /* never outlive the test: one that fails before its proxy_stop leaves no process */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        dup2(fd, 1);
        exec_proxy(bin, p->conf, flag, hosts, p->dir);
    }
}

void proxy_spawn(struct proxy *p, int port, const char *yaml, const char *name, const char *flag)
{
    spawn(p, port, yaml, name, flag, NULL);
}

void proxy_start_yaml_hosts(struct proxy *p, int port, const char *yaml, const char *hosts)
{
    spawn(p, port, yaml, "proxy", NULL, hosts);
    cr_assert(wait_listening(p->pid, port), "lakeproxy did not start listening; see %s", p->log);
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

void proxy_start(struct proxy *p, int pool_size)
{
    static char yaml[8192];
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "session", pool_size, 3000, NULL);
    proxy_start_yaml(p, port, yaml);
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

/* Appends why to $LP_TEST_DIR/stop-failures.txt, which tests/run_all.sh counts as failures:
 * criterion reports an assertion that fails in a suite's .fini (where most tests stop their
 * proxy) but still counts the test as passed. */
static void note_stop_failure(const char *why)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/stop-failures.txt", env_need("LP_TEST_DIR"));
    FILE *f = fopen(path, "a");
    if (f) {
        fprintf(f, "%s\n", why);
        fclose(f);
    }
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
        note_stop_failure(why);
        cr_assert_fail("%s", why);
    }
}

PGconn *proxy_connect(const struct proxy *p, const char *user, const char *password,
                      const char *db, const char *extra)
{
    char ci[1024];
    snprintf(ci, sizeof(ci),
             "host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable "
             "connect_timeout=30 %s",
             p->port, user, password ? password : "", db, extra ? extra : "");
    return PQconnectdb(ci);
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

int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads exactly n bytes within timeout_ms. */
static bool read_full(int fd, unsigned char *p, size_t n, int timeout_ms)
{
    while (n > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) <= 0)
            return false;
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

int raw_read_msg(int fd, unsigned char *buf, size_t bufsz, size_t *len, int timeout_ms)
{
    unsigned char hdr[5];
    if (!read_full(fd, hdr, 5, timeout_ms))
        return -1;
    uint32_t l = ((uint32_t)hdr[1] << 24) | ((uint32_t)hdr[2] << 16) | ((uint32_t)hdr[3] << 8) |
                 hdr[4];
    if (l < 4 || l - 4 > bufsz)
        return -1;
    *len = l - 4;
    if (!read_full(fd, buf, *len, timeout_ms))
        return -1;
    return hdr[0];
}

const char *raw_error_sqlstate(const unsigned char *body, size_t len)
{
    static char state[6];
    struct pg_error e;
    state[0] = '\0';
    if (proto_parse_error(body, len, &e))
        snprintf(state, sizeof(state), "%s", e.sqlstate);
    return state;
}

bool raw_send(int fd, struct buf *b)
{
    bool ok = !b->failed && write(fd, b->data, b->len) == (ssize_t)b->len;
    buf_reset(b);
    return ok;
}

/* Answers one authentication request; false when the exchange cannot go on. */
static bool raw_auth_step(int fd, struct scram_client *sc, const char *password,
                          const unsigned char *body, size_t len)
{
    struct buf b;
    uint32_t code;
    const uint8_t *data;
    size_t dlen;
    char *out = NULL;
    const char *err;
    bool ok = true;
    buf_init(&b);
    proto_parse_auth(body, len, &code, &data, &dlen);
    if (code == AUTH_REQ_CLEARTEXT) {
        proto_password(&b, password);
    } else if (code == AUTH_REQ_SASL) {
        ok = scram_client_first(sc, "", password, NULL, &out);
        if (ok)
            proto_sasl_initial(&b, "SCRAM-SHA-256", out, strlen(out));
    } else if (code == AUTH_REQ_SASL_CONTINUE) {
        ok = scram_client_final(sc, (const char *)data, dlen, &out, &err);
        if (ok)
            proto_sasl_response(&b, out, strlen(out));
    }
    if (ok && b.len)
        ok = raw_send(fd, &b);
    free(out);
    buf_free(&b);
    return ok;
}

bool raw_login(int port, const char *user, const char *password, const char *db,
               char sqlstate[6], char *msg, size_t msgsz)
{
    int fd = raw_connect(port);
    struct buf b;
    struct scram_client sc = {0};
    unsigned char body[65536];
    size_t len;
    bool ok = false;
    sqlstate[0] = msg[0] = '\0';
    cr_assert(fd >= 0, "cannot connect to port %d", port);
    buf_init(&b);
    struct startup_param params[] = {{"user", user}, {"database", db}};
    proto_startup(&b, params, 2);
    raw_send(fd, &b);
    for (;;) {
        int t = raw_read_msg(fd, body, sizeof(body), &len, 10000);
        if (t == 'R' && raw_auth_step(fd, &sc, password ? password : "", body, len))
            continue;
        if (t == 'E') {
            struct pg_error e;
            if (proto_parse_error(body, len, &e)) {
                snprintf(sqlstate, 6, "%s", e.sqlstate);
                snprintf(msg, msgsz, "%s", e.message);
            }
            break;
        }
        if (t == 'Z')
            ok = true;
        if (t == 'Z' || t < 0 || t == 'R')
            break;
    }
    scram_client_free(&sc);
    buf_free(&b);
    close(fd);
    return ok;
}

int raw_session(int port, const char *user, const char *db)
{
    int fd = raw_connect(port);
    struct buf b;
    unsigned char body[4096];
    size_t len;
    int t;
    cr_assert(fd >= 0);
    buf_init(&b);
    struct startup_param params[] = {{"user", user}, {"database", db}};
    proto_startup(&b, params, 2);
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) != 'Z')
        cr_assert(t >= 0 && t != 'E', "raw login failed");
    return fd;
}

void raw_query(int fd, const char *sql)
{
    struct buf b;
    buf_init(&b);
    proto_query(&b, sql);
    cr_assert(raw_send(fd, &b));
    buf_free(&b);
}

const char *raw_expect_error(int fd)
{
    static unsigned char body[65536];
    size_t len;
    int t;
    while ((t = raw_read_msg(fd, body, sizeof(body), &len, 5000)) >= 0)
        if (t == 'E')
            return raw_error_sqlstate(body, len);
    return "";
}

int notify_socket_open(char *path, size_t pathsz)
{
    static int serial;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s/notify-%d-%d", env_need("LP_TEST_DIR"),
             getpid(), ++serial);
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

/* The bytes no masked client may ever receive (tests/lib/setup.sql's customers). */
static const char *const mask_secrets[] = {"secret", "111-22", "444-55", "777-88",
                                           "12345",  "23456",  "34567"};

const char *mask_find_secret(const char *p, size_t len)
{
    for (size_t i = 0; i < sizeof(mask_secrets) / sizeof(mask_secrets[0]); i++)
        if (memmem(p, len, mask_secrets[i], strlen(mask_secrets[i])))
            return mask_secrets[i];
    return NULL;
}

void mask_expect_no_secret(const PGresult *r, const char *sql)
{
    const char *msg = PQresultErrorMessage(r);
    cr_expect(!mask_find_secret(msg, strlen(msg)), "error of [%s] leaks: %s", sql, msg);
    for (int i = 0; i < PQntuples(r); i++)
        for (int j = 0; j < PQnfields(r); j++) {
            const char *s = mask_find_secret(PQgetvalue(r, i, j), (size_t)PQgetlength(r, i, j));
            cr_expect(!s, "[%s] row %d column %d leaks \"%s\"", sql, i, j, s ? s : "");
        }
}

static void mask_quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

PGconn *mask_login(const struct proxy *p, const char *user)
{
    PGconn *c = proxy_connect(p, user, "pw", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "login as %s failed: %s", user, PQerrorMessage(c));
    PQsetNoticeProcessor(c, mask_quiet, NULL); /* the ROLLBACK after each attempt warns */
    return c;
}

/* Reads a COPY's data, expecting no secret in it. */
static void mask_drain_copy(PGconn *c, const char *sql)
{
    char *row;
    int n;
    while ((n = PQgetCopyData(c, &row, 0)) > 0) {
        cr_expect(!mask_find_secret(row, (size_t)n), "[%s] COPY leaks", sql);
        PQfreemem(row);
    }
}

/* Runs sql as user on c (extended: through the extended protocol) and expects it refused with
 * 42501 (or the connection closed), or run when !refused; never a secret in any answer, COPY
 * data included. Returns c, or a new login when the refusal closed c. */
static PGconn *mask_attempt(const struct proxy *p, PGconn *c, const char *user, const char *sql,
                            bool refused, bool extended)
{
    PGresult *r = extended ? PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0) : PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    bool failed = st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_COPY_OUT;
    const char *mode = extended ? "extended" : "simple";
    if (st == PGRES_COPY_OUT)
        mask_drain_copy(c, sql);
    mask_expect_no_secret(r, sql);
    for (PGresult *more; (more = PQgetResult(c));) { /* multi-statement text */
        failed |= PQresultStatus(more) == PGRES_FATAL_ERROR;
        mask_expect_no_secret(more, sql);
        PQclear(more);
    }
    if (refused)
        cr_expect(failed, "[%s] (%s) should be refused", sql, mode);
    else
        cr_expect(!failed, "[%s] (%s) should run masked: %s", sql, mode, PQresultErrorMessage(r));
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (failed && PQstatus(c) == CONNECTION_OK && strcmp(state ? state : "", "42501") != 0)
        cr_expect(false, "[%s] refused with %s, not 42501: %s", sql, state,
                  PQresultErrorMessage(r));
    PQclear(r);
    PQclear(PQexec(c, "ROLLBACK"));
    if (PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        c = mask_login(p, user);
    }
    return c;
}

void mask_attempts_run(const struct proxy *p, const char *user,
                       const struct mask_attempt_case *cases, size_t n)
{
    PGconn *c = mask_login(p, user);
    for (size_t i = 0; i < n; i++)
        for (int extended = 0; extended <= 1; extended++)
            c = mask_attempt(p, c, user, cases[i].sql, cases[i].refused, extended);
    char *v = query_value(c, "SELECT 'still usable'");
    cr_expect_str_eq(v, "still usable");
    free(v);
    PQfinish(c);
}

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

PGresult *admin_show(PGconn *adm, const char *what)
{
    PGresult *r = PQexec(adm, what);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", what, PQerrorMessage(adm));
    return r;
}

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
                   &inode) == 4 && st == 1 /* ESTABLISHED */ && strcmp(remote, want) == 0)
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

long raise_fd_limit(long want)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur == RLIM_INFINITY || (long)rl.rlim_cur >= want)
        return rl.rlim_cur == RLIM_INFINITY ? want : (long)rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && (long)rl.rlim_max < want ? rl.rlim_max
                                                                          : (rlim_t)want;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0, "setrlimit(RLIMIT_NOFILE): %s",
                 strerror(errno));
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
