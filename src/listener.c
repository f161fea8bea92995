/* listener.c: accepts connections on listen.host:listen.port, and on the Unix socket of
 * listen.unix_socket_dir, and hands them to client.c. */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "config.h"
#include "log.h"
#include "unixsock.h"

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)l;
    client_accept(arg, fd, sa, salen);
}

static void resume_accepting(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    if (w->spare_fd < 0) /* lost to a race for the descriptor it freed: try again */
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (w->listener)
        evconnlistener_enable(w->listener);
    if (w->unix_listener)
        evconnlistener_enable(w->unix_listener);
}

/* Connections refused per pause: a flood of new ones cannot keep the event loop here. */
enum { REFUSE_MAX = 256 };

/* Out of descriptors: gives up the spare one to accept each pending connection and refuse it
 * with a clear error (instead of leaving its client waiting in the backlog), then takes the
 * spare again. Returns how many were refused. */
static int refuse_pending(struct worker *w, evutil_socket_t lfd)
{
    int n = 0;
    while (w->spare_fd >= 0 && n < REFUSE_MAX) {
        close(w->spare_fd);
        w->spare_fd = -1;
        evutil_socket_t fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            client_refuse(fd, "lakeproxy is out of file descriptors: too many connections "
                              "(raise its descriptor limit, LimitNOFILE, or lower "
                              "limits.max_clients)");
            n++;
        }
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            break;
    }
    return n;
}

/* Out of file descriptors and the like: the pending connection stays in the backlog, so
 * accepting again at once would fail again in a tight loop. The pending ones are refused with a
 * clear error while a spare descriptor allows; then accepting pauses for 100 ms. Logs at most
 * once a second. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct worker *w = arg;
    static time_t last_logged;
    int e = EVUTIL_SOCKET_ERROR();
    int refused = e == EMFILE || e == ENFILE ? refuse_pending(w, evconnlistener_get_fd(l)) : 0;
    time_t now = time(NULL);
    if (now != last_logged) {
        last_logged = now;
        log_warning("accept failed: %s (%d connections refused with an error; pausing new "
                    "connections for 100 ms)",
                    evutil_socket_error_to_string(e), refused);
    }
    struct timeval pause = {0, 100 * 1000};
    if (!w->accept_pause)
        w->accept_pause = evtimer_new(w->base, resume_accepting, w);
    if (w->accept_pause) {
        evconnlistener_disable(l);
        evtimer_add(w->accept_pause, &pause);
    }
}

/* Binds listen.host:listen.port; NULL with err on failure. */
static struct evconnlistener *bind_listener(struct worker *w, char *err, size_t errsz)
{
    struct addrinfo *ai = NULL;
    const char *host = strcmp(w->cfg->listen_host, "*") == 0 ? NULL : w->cfg->listen_host;
    int rc = listener_resolve(host, w->cfg->listen_port, &ai);
    if (rc != 0) {
        snprintf(err, errsz, "cannot resolve listen.host %s: %s", w->cfg->listen_host,
                 gai_strerror(rc));
        return NULL;
    }
    struct evconnlistener *l = evconnlistener_new_bind(
        w->base, accept_cb, w, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        1024, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!l)
        snprintf(err, errsz, "cannot listen on %s:%d: %s", w->cfg->listen_host, w->cfg->listen_port,
                 strerror(errno));
    return l;
}

int listener_resolve(const char *host, int port, struct addrinfo **out)
{
    struct addrinfo hints;
    char service[16];
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", port);
    return getaddrinfo(host, service, &hints, out);
}

/* An evconnlistener on fd, already listening, for clients; NULL on failure. */
static struct evconnlistener *accept_on(struct worker *w, int fd)
{
    evutil_make_socket_nonblocking(fd);
    struct evconnlistener *l = evconnlistener_new(
        w->base, accept_cb, w, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (l)
        evconnlistener_set_error_cb(l, accept_error_cb);
    return l;
}

/* Binds the Unix socket file at path: a stale one (no process accepts there) is replaced, one
 * in use is not. -1 with err. */
static int bind_unix(struct worker *w, const char *path, char *err, size_t errsz)
{
    char why[2 * sizeof(w->unix_path) + 64];
    if (unixsock_refusal(path, &w->unix_file, why, sizeof(why))[0]) {
        snprintf(err, errsz, "listen.unix_socket_dir: %s: refusing to replace it", why);
        return -1;
    }
    if (unixsock_in_use(path)) {
        snprintf(err, errsz,
                 "listen.unix_socket_dir: another process accepts connections on %s (a "
                 "lakeproxy or PostgreSQL on the same port?): stop it, or choose another "
                 "directory or listen.port",
                 path);
        return -1;
    }
    int fd = unixsock_listen(path, (mode_t)w->unix_mode, 1024, &w->unix_file);
    if (fd < 0)
        snprintf(err, errsz, "cannot listen on %s (listen.unix_socket_dir): %s", path,
                 strerror(errno));
    return fd;
}

/* Accepts on the Unix socket too, when configured: on inherited_fd, or bound here. Takes
 * inherited_fd, even on failure. */
static bool start_unix(struct worker *w, int inherited_fd, char *err, size_t errsz)
{
    const char *path = w->unix_path;
    snprintf(w->unix_path, sizeof(w->unix_path), "%s", w->cfg->unix_socket_path);
    w->unix_mode = w->cfg->unix_socket_mode;
    if (!path[0]) {
        if (inherited_fd >= 0)
            close(inherited_fd);
        return true;
    }
    int fd = inherited_fd;
    if (fd >= 0 && lstat(path, &w->unix_file) != 0) /* (the file the socket answers at) */
        memset(&w->unix_file, 0, sizeof(w->unix_file));
    w->unix_lent = fd >= 0; /* the running process's until it stops accepting */
    if (fd < 0 && (fd = bind_unix(w, path, err, errsz)) < 0)
        return false;
    if (!(w->unix_listener = accept_on(w, fd))) {
        snprintf(err, errsz, "cannot accept on %s: out of memory", path);
        close(fd);
        if (inherited_fd < 0)
            unixsock_remove_own(path, &w->unix_file);
        return false;
    }
    log_info("%s on %s", inherited_fd >= 0 ? "took over listening" : "listening", path);
    return true;
}

/* Undoes start_unix after a later failure: the file goes only if this process bound it (one
 * taken over is still the running process's). */
static void stop_unix(struct worker *w, bool bound_here)
{
    if (!w->unix_listener)
        return;
    evconnlistener_free(w->unix_listener);
    w->unix_listener = NULL;
    if (bound_here)
        unixsock_remove_own(w->unix_path, &w->unix_file);
}

/* The Unix socket first: whoever waits for the TCP port (a test, a supervisor) finds both. */
bool listener_start(struct worker *w, int inherited_fd, int inherited_unix_fd, char *err,
                    size_t errsz)
{
    if (!start_unix(w, inherited_unix_fd, err, errsz)) {
        if (inherited_fd >= 0)
            close(inherited_fd);
        return false;
    }
    if (inherited_fd >= 0 && !(w->listener = accept_on(w, inherited_fd))) {
        snprintf(err, errsz, "cannot accept on the listening socket taken over: %s",
                 strerror(errno));
        close(inherited_fd);
    } else if (inherited_fd < 0 && (w->listener = bind_listener(w, err, errsz))) {
        evconnlistener_set_error_cb(w->listener, accept_error_cb);
    }
    if (!w->listener) {
        stop_unix(w, inherited_unix_fd < 0);
        return false;
    }
    if (w->spare_fd < 0)
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    snprintf(w->listen_at, sizeof(w->listen_at), "%.255s:%d", w->cfg->listen_host,
             w->cfg->listen_port);
    log_info("%s on %s", inherited_fd >= 0 ? "took over listening" : "listening", w->listen_at);
    return true;
}

void listener_unix_taken_over(struct worker *w)
{
    struct stat now;
    if (!w->unix_listener || !w->unix_lent)
        return;
    w->unix_lent = false;
    mode_t want = (mode_t)w->unix_mode & 07777;
    if (lstat(w->unix_path, &now) != 0 || !S_ISSOCK(now.st_mode) ||
        now.st_dev != w->unix_file.st_dev || now.st_ino != w->unix_file.st_ino ||
        (now.st_mode & 07777) == want)
        return;
    if (chmod(w->unix_path, want) != 0)
        log_warning("takeover: cannot give %s the mode %04o of listen.unix_socket_mode: %s",
                    w->unix_path, (unsigned)want, strerror(errno));
    else
        log_info("takeover: %s now has the mode %04o of listen.unix_socket_mode (was %04o)",
                 w->unix_path, (unsigned)want, (unsigned)(now.st_mode & 07777));
}

int listener_fd(const struct worker *w)
{
    return w->listener ? evconnlistener_get_fd(w->listener) : -1;
}

int listener_unix_fd(const struct worker *w)
{
    return w->unix_listener ? evconnlistener_get_fd(w->unix_listener) : -1;
}

void listener_stop(struct worker *w)
{
    if (w->listener)
        evconnlistener_free(w->listener);
    w->listener = NULL;
    stop_unix(w, !w->handed_over && !w->unix_lent); /* (the file may be another process's) */
    if (w->accept_pause)
        evtimer_del(w->accept_pause);
}

/* Descriptors besides clients and servers: listening sockets, the logs, the spare, the HTTP
 * endpoint's connections, side queries, token fetches and cancel requests in flight. */
enum { FD_OVERHEAD = 64 + CANCEL_SPARE_CONNECTIONS };

/* The descriptors cfg may need at once: every client, every pool's servers and reserve. */
static rlim_t descriptors_needed(const struct config *cfg, rlim_t *servers)
{
    rlim_t n = 0;
    for (size_t i = 0; i < cfg->n_dbs; i++)
        n += (rlim_t)cfg->dbs[i].pool.size + (rlim_t)cfg->dbs[i].pool.reserve;
    *servers = n;
    return (rlim_t)cfg->max_clients + n + FD_OVERHEAD;
}

void listener_fit_descriptor_limit(const struct config *cfg)
{
    struct rlimit rl;
    rlim_t servers, need = descriptors_needed(cfg, &servers);
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
    if (rl.rlim_cur > was && setrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur >= need) {
            log_info("raised the descriptor limit from %llu to %llu for limits.max_clients",
                     (unsigned long long)was, (unsigned long long)rl.rlim_cur);
            return;
        }
    } else {
        rl.rlim_cur = was;
    }
    log_warning("the descriptor limit (%llu, hard limit %llu) is below the %llu that "
                "limits.max_clients (%d) and the pools' servers (%llu) may need: clients past it "
                "are refused with 53300; raise LimitNOFILE (ulimit -n) or lower limits.max_clients",
                (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                (unsigned long long)need, cfg->max_clients, (unsigned long long)servers);
}
