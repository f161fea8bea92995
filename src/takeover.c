/* takeover.c: hands the listening sockets to a new lakeproxy (the running process's control
 * socket) and takes them from the running one (the new process's side); see takeover.h. */
#include "takeover.h"

#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "unixsock.h"
#include "worker.h"

/* The sockets a process can hand over, by tag. */
#define MAX_FDS 3

/* One exchange with a process that asks for the sockets (at most one at a time). */
struct handover {
    int fd;
    struct event *ev; /* readable, or TAKEOVER_TIMEOUT_S of silence */
    pid_t peer;
    bool sent;       /* SOCKETS went out: waiting for DONE */
    double deadline; /* the whole exchange ends by then (CLOCK_MONOTONIC seconds) */
    char line[TAKEOVER_LINE_MAX];
    size_t len;
};

struct takeover_ctl {
    struct worker *w;
    int fd;
    struct event *accept_ev;
    char path[TAKEOVER_SOCKET_MAX]; /* as at start: a reload does not move the socket */
    struct stat st; /* the socket file this process created, to remove only that one */
    bool removed;   /* that file removed already: never look at the path again */
    struct handover *h;
};

/* ---- shared ---- */

/* The user id of the process at the other end of a Unix socket, (uid_t)-1 if unknown. */
static uid_t peer_uid(int fd, pid_t *pid)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return (uid_t)-1;
    if (pid)
        *pid = cred.pid;
    return cred.uid;
}

/* Writes all of line, without SIGPIPE; false on failure. */
static bool send_line(int fd, const char *line)
{
    size_t n = strlen(line);
    return send(fd, line, n, MSG_NOSIGNAL) == (ssize_t)n;
}

/* ---- the running process: the control socket ---- */

/* A persistent read event on fd (ending after tv of silence when tv is set); NULL on failure. */
static struct event *watch(struct worker *w, int fd, event_callback_fn cb, void *arg,
                           const struct timeval *tv)
{
    struct event *ev = event_new(w->base, fd, EV_READ | EV_PERSIST, cb, arg);
    if (ev && event_add(ev, tv) != 0) {
        event_free(ev);
        ev = NULL;
    }
    return ev;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Removes the control socket's file if it is still the one this process created, once: after
 * that the path may hold the next process's socket, whose inode number can be the one this
 * file had (file systems reuse a freed number at once). */
static void remove_socket_file(struct takeover_ctl *ctl)
{
    if (ctl->removed)
        return;
    ctl->removed = true;
    unixsock_remove_own(ctl->path, &ctl->st);
}

static void handover_end(struct takeover_ctl *ctl)
{
    struct handover *h = ctl->h;
    if (!h)
        return;
    if (h->ev)
        event_free(h->ev);
    close(h->fd);
    free(h);
    ctl->h = NULL;
}

/* Ends an exchange that did not complete; this process goes on accepting, and says so to a
 * process that has its sockets (which must then not accept beside it). */
static void handover_abandon(struct takeover_ctl *ctl, const char *why)
{
    char line[TAKEOVER_LINE_MAX];
    if (ctl->h->sent) {
        log_warning("takeover by pid %d abandoned (%s): still accepting", (int)ctl->h->peer, why);
        snprintf(line, sizeof(line), "ERROR takeover abandoned (%.60s): still accepting\n", why);
        send_line(ctl->h->fd, line);
        ctl->w->unix_lent = false;
    } else {
        log_warning("takeover request from pid %d refused: %s", (int)ctl->h->peer, why);
    }
    handover_end(ctl);
}

/* Sends "SOCKETS <pid> <tag>..." with the listening descriptors attached. */
static bool send_sockets(struct takeover_ctl *ctl)
{
    int fds[MAX_FDS], n = 0;
    char line[TAKEOVER_LINE_MAX];
    size_t len = (size_t)snprintf(line, sizeof(line), "SOCKETS %d", (int)getpid());
    if ((fds[n] = listener_fd(ctl->w)) >= 0 && ++n)
        len += (size_t)snprintf(line + len, sizeof(line) - len, " listen");
    if ((fds[n] = listener_unix_fd(ctl->w)) >= 0 && ++n)
        len += (size_t)snprintf(line + len, sizeof(line) - len, " unix");
    if ((fds[n] = metrics_listen_fd(ctl->w)) >= 0 && ++n)
        len += (size_t)snprintf(line + len, sizeof(line) - len, " http");
    len += (size_t)snprintf(line + len, sizeof(line) - len, "\n");
    union {
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = line, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    memset(&control, 0, sizeof(control));
    if (n > 0) {
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n);
    }
    return sendmsg(ctl->h->fd, &msg, MSG_NOSIGNAL) == (ssize_t)len;
}

/* The new process accepts on the sockets: stop accepting here and drain. */
static void handover_complete(struct takeover_ctl *ctl)
{
    struct worker *w = ctl->w;
    pid_t to = ctl->h->peer;
    notify_mainpid(to);
    worker_hand_over(w, to);
    /* the file goes before BYE: once told, the new process binds its own at the same path,
     * which this one must never remove (an inode number can come back) */
    remove_socket_file(ctl);
    if (!send_line(ctl->h->fd, "BYE\n"))
        log_warning("takeover: pid %d left before it was told this process stopped accepting",
                    (int)to);
    handover_end(ctl);
    takeover_close(w); /* the new process creates the control socket afresh */
}

/* Acts on one complete line from the other process; false when that ended the exchange (h and,
 * after a completed handover, ctl itself are freed then). */
static bool handover_line(struct takeover_ctl *ctl, const char *line)
{
    struct handover *h = ctl->h;
    if (!h->sent && strcmp(line, "TAKEOVER 1") == 0) {
        if (ctl->w->draining || ctl->w->handed_over) {
            send_line(h->fd, "ERROR this lakeproxy is shutting down\n");
            handover_abandon(ctl, "shutting down");
            return false;
        }
        if (!send_sockets(ctl)) {
            handover_abandon(ctl, strerror(errno));
            return false;
        }
        h->sent = true;
        ctl->w->unix_lent = true; /* its file is the new process's if it takes over */
        log_info("takeover: sent the listening sockets to pid %d", (int)h->peer);
        return true;
    }
    if (h->sent && strcmp(line, "DONE") == 0) {
        handover_complete(ctl);
        return false;
    }
    send_line(h->fd, "ERROR unexpected message\n");
    handover_abandon(ctl, "unexpected message");
    return false;
}

static void handover_cb(evutil_socket_t fd, short what, void *arg)
{
    struct takeover_ctl *ctl = arg;
    struct handover *h = ctl->h;
    if ((what & EV_TIMEOUT) || mono_now() > h->deadline) { /* silent, or dribbling */
        handover_abandon(ctl, "no answer within the time limit");
        return;
    }
    ssize_t r = recv(fd, h->line + h->len, sizeof(h->line) - h->len, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        handover_abandon(ctl, r == 0 ? "it closed the connection" : strerror(errno));
        return;
    }
    h->len += (size_t)r;
    char *nl, line[TAKEOVER_LINE_MAX];
    while ((nl = memchr(h->line, '\n', h->len))) {
        size_t used = (size_t)(nl - h->line) + 1;
        memcpy(line, h->line, used - 1);
        line[used - 1] = '\0';
        memmove(h->line, h->line + used, h->len - used);
        h->len -= used;
        if (!handover_line(ctl, line))
            return; /* h, perhaps ctl, are gone */
    }
    if (h->len == sizeof(h->line))
        handover_abandon(ctl, "a message too long");
}

/* A process connected to the control socket: only this user's, one at a time. */
static void control_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    struct takeover_ctl *ctl = arg;
    pid_t pid = 0;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    uid_t uid = peer_uid(fd, &pid);
    if (uid != geteuid() || ctl->h) {
        log_warning("takeover socket: refused a connection from pid %d (uid %d): %s", (int)pid,
                    (int)uid, ctl->h ? "a takeover is already under way" : "another user");
        send_line(fd, ctl->h ? "ERROR a takeover is already under way\n" : "ERROR not allowed\n");
        close(fd);
        return;
    }
    struct handover *h = calloc(1, sizeof(*h));
    struct timeval tv = {TAKEOVER_TIMEOUT_S, 0};
    if (!h || !(h->ev = watch(ctl->w, fd, handover_cb, ctl, &tv))) {
        log_error("takeover socket: out of memory");
        free(h);
        close(fd);
        return;
    }
    h->fd = fd;
    h->peer = pid;
    h->deadline = mono_now() + TAKEOVER_TIMEOUT_S;
    ctl->h = h;
}

/* Binds path as a Unix socket readable and writable by this user only. -1 with err. */
static int bind_control(const char *path, struct stat *st, char *err, size_t errsz)
{
    char why[TAKEOVER_LINE_MAX + TAKEOVER_SOCKET_MAX];
    if (unixsock_refusal(path, st, why, sizeof(why))[0]) {
        snprintf(err, errsz, "listen.takeover_socket: %s: refusing to replace it", why);
        return -1;
    }
    if (unixsock_in_use(path)) {
        snprintf(err, errsz,
                 "listen.takeover_socket %s: another lakeproxy answers there (each needs a "
                 "takeover socket of its own): refusing to replace it",
                 path);
        return -1;
    }
    int fd = unixsock_listen(path, 0600, 4, st);
    if (fd < 0)
        snprintf(err, errsz, "cannot listen on listen.takeover_socket %s: %s", path,
                 errno == ENAMETOOLONG ? "path too long" : strerror(errno));
    return fd;
}

bool takeover_listen(struct worker *w, char *err, size_t errsz)
{
    const char *path = w->cfg->takeover_socket;
    struct stat st;
    if (!path)
        return true;
    int fd = bind_control(path, &st, err, errsz);
    if (fd < 0)
        return false;
    struct takeover_ctl *ctl = calloc(1, sizeof(*ctl));
    if (!ctl || !(ctl->accept_ev = watch(w, fd, control_accept_cb, ctl, NULL))) {
        snprintf(err, errsz, "listen.takeover_socket: out of memory");
        free(ctl);
        close(fd);
        unlink(path);
        return false;
    }
    ctl->w = w;
    ctl->fd = fd;
    snprintf(ctl->path, sizeof(ctl->path), "%s", path);
    ctl->st = st;
    w->takeover = ctl;
    log_info("takeover socket on %s", path);
    return true;
}

void takeover_close(struct worker *w)
{
    struct takeover_ctl *ctl = w->takeover;
    if (!ctl)
        return;
    event_free(ctl->accept_ev);
    close(ctl->fd);
    remove_socket_file(ctl);
    /* stopping (SIGTERM, SIGINT) while a process that holds the sockets is starting: this one
     * accepts no more, so that one must (it would otherwise give up as told to); the Unix
     * socket's file stays for it (unix_lent), the control socket's is gone for its own */
    if (ctl->h && ctl->h->sent && send_line(ctl->h->fd, "BYE\n"))
        log_info("takeover: stopping while pid %d takes over: it accepts from now on",
                 (int)ctl->h->peer);
    handover_end(ctl);
    free(ctl);
    w->takeover = NULL;
}

/* ---- the new process ---- */

/* Milliseconds left until deadline (CLOCK_MONOTONIC seconds), at least 0. */
static int ms_left(double deadline)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double left = deadline - ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    return left > 0 ? (int)(left * 1000) : 0;
}

/* Reads one line (without its newline) within timeout_s; descriptors that come with it go to
 * fds (up to *nfds, the count received stored back). False with err. */
static bool read_line(int fd, int timeout_s, char *line, size_t linesz, int *fds, int *nfds,
                      char *err, size_t errsz)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double deadline = (double)ts.tv_sec + timeout_s;
    size_t len = 0;
    int got = 0;
    while (!memchr(line, '\n', len)) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        union {
            char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
            struct cmsghdr align;
        } control;
        struct iovec iov = {.iov_base = line + len, .iov_len = linesz - 1 - len};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf)};
        if (len == linesz - 1 || poll(&pfd, 1, ms_left(deadline)) <= 0) {
            snprintf(err, errsz, len ? "answer too long" : "no answer within %d s", timeout_s);
            break;
        }
        ssize_t r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
        if (r <= 0) {
            snprintf(err, errsz, "%s", r == 0 ? "it closed the connection" : strerror(errno));
            break;
        }
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            int n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < n; i++) {
                int one;
                memcpy(&one, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                if (got < *nfds)
                    fds[got++] = one;
                else
                    close(one);
            }
        }
        len += (size_t)r;
    }
    line[len] = '\0';
    char *nl = memchr(line, '\n', len);
    if (nl)
        *nl = '\0';
    *nfds = got;
    return nl != NULL;
}

/* Formats the local address of socket fd as host:port, for log lines. */
static const char *local_address(int fd, char *out, size_t outsz)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
        getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        snprintf(out, outsz, "an unknown address");
    else
        snprintf(out, outsz, "%s:%s", host, port);
    return out;
}

/* Is the listening socket fd bound to host:port (host "*" or NULL: any address)? */
static bool bound_to(int fd, const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    struct addrinfo *ai = NULL;
    if (!host || getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
        listener_resolve(strcmp(host, "*") == 0 ? NULL : host, port, &ai) != 0)
        return false;
    const struct sockaddr *want = ai->ai_addr;
    bool same = want->sa_family == ss.ss_family;
    if (same && want->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)want, *b = (const void *)&ss;
        same = a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    } else if (same && want->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)want, *b = (const void *)&ss;
        same = a->sin6_port == b->sin6_port &&
               memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
    }
    freeaddrinfo(ai);
    return same;
}

/* Keeps fd as *slot when it is bound where this configuration listens; else closes it. */
static void adopt(int fd, const char *tag, const char *host, int port, int *slot)
{
    char addr[NI_MAXHOST + NI_MAXSERV + 2];
    if (*slot < 0 && bound_to(fd, host, port)) {
        *slot = fd;
        return;
    }
    log_info("takeover: the previous process's %s socket on %s is not in this configuration: "
             "closing it",
             tag, local_address(fd, addr, sizeof(addr)));
    close(fd);
}

/* The path of the file the Unix socket fd answers at ("" when unknown): its name, unless
 * unixsock_listen bound it under a staging name ("<path>.<digits>", renamed to path since). */
static void unix_file_of(int fd, char *out, size_t outsz)
{
    struct sockaddr_un sa;
    struct stat st;
    socklen_t len = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    out[0] = '\0';
    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0 || sa.sun_family != AF_UNIX)
        return;
    snprintf(out, outsz, "%.*s", (int)sizeof(sa.sun_path), sa.sun_path);
    char *dot = strrchr(out, '.');
    if (lstat(out, &st) != 0 && dot) /* (the staging name is gone) */
        *dot = '\0';
}

/* Keeps fd as *slot when it is the Unix socket made for path; else closes it, noting its file
 * in stale (removed once the old process has stopped accepting: takeover_finish). */
static void adopt_unix(int fd, const char *path, int *slot, char *stale, size_t stalesz)
{
    if (*slot < 0 && path[0] && unixsock_made_for(fd, path)) {
        *slot = fd;
        return;
    }
    unix_file_of(fd, stale, stalesz);
    log_info("takeover: the previous process's Unix socket is not %s in this configuration: "
             "closing it",
             path[0] ? path : "listen.unix_socket_dir");
    close(fd);
}

/* Parses "SOCKETS <pid> <tag>..." and sorts the descriptors into t. False on a bad line. */
static bool take_sockets(const struct config *cfg, char *line, const int *fds, int nfds,
                         struct takeover_fds *t)
{
    char *save = NULL, *word = strtok_r(line, " ", &save);
    char *pid = strtok_r(NULL, " ", &save);
    int i = 0;
    if (!word || strcmp(word, "SOCKETS") != 0 || !pid || atoi(pid) <= 0)
        return false;
    t->old_pid = (pid_t)atoi(pid);
    for (char *tag = strtok_r(NULL, " ", &save); tag && i < nfds;
         tag = strtok_r(NULL, " ", &save), i++) {
        if (strcmp(tag, "listen") == 0)
            adopt(fds[i], tag, cfg->listen_host, cfg->listen_port, &t->listen_fd);
        else if (strcmp(tag, "unix") == 0)
            adopt_unix(fds[i], cfg->unix_socket_path, &t->unix_fd, t->stale_unix,
                       sizeof(t->stale_unix));
        else if (strcmp(tag, "http") == 0)
            adopt(fds[i], tag, cfg->admin_http_host, cfg->admin_http_port, &t->http_fd);
        else
            close(fds[i]);
    }
    for (; i < nfds; i++) /* more descriptors than tags */
        close(fds[i]);
    return true;
}

/* Connects to the running process's control socket. -1 with err. */
static int connect_control(const char *path, char *err, size_t errsz)
{
    struct sockaddr_un sa;
    struct stat st;
    char why[TAKEOVER_LINE_MAX + TAKEOVER_SOCKET_MAX];
    if (!unixsock_address(path, &sa))
        return -1;
    if (unixsock_refusal(path, &st, why, sizeof(why))[0]) {
        snprintf(err, errsz, "listen.takeover_socket: %s", why);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        snprintf(err, errsz,
                 "no running lakeproxy answers on listen.takeover_socket %s (%s): start it "
                 "without --takeover",
                 path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (peer_uid(fd, NULL) != geteuid()) {
        snprintf(err, errsz, "listen.takeover_socket %s: served by another user", path);
        close(fd);
        return -1;
    }
    return fd;
}

bool takeover_receive(const struct config *cfg, struct takeover_fds *t, char *err, size_t errsz)
{
    char line[TAKEOVER_LINE_MAX], why[256];
    int fds[MAX_FDS], nfds = MAX_FDS;
    *t = (struct takeover_fds){.conn = -1, .listen_fd = -1, .unix_fd = -1, .http_fd = -1};
    t->stale_unix[0] = '\0';
    if (!cfg->takeover_socket) {
        snprintf(err, errsz, "--takeover needs listen.takeover_socket in %s", cfg->path);
        return false;
    }
    if ((t->conn = connect_control(cfg->takeover_socket, err, errsz)) < 0)
        return false;
    /* read even when the send failed: a process that refuses says why, then closes, maybe
     * before the request reached it */
    bool sent = send_line(t->conn, "TAKEOVER 1\n");
    bool ok =
        read_line(t->conn, TAKEOVER_TIMEOUT_S, line, sizeof(line), fds, &nfds, why, sizeof(why));
    if (!ok && !sent)
        snprintf(why, sizeof(why), "it closed the connection");
    bool refused = ok && strncmp(line, "ERROR ", 6) == 0; /* (take_sockets cuts line up) */
    if (refused)
        snprintf(why, sizeof(why), "it refused: %.100s", line + 6);
    if (ok && !take_sockets(cfg, line, fds, nfds, t)) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        ok = false;
        if (!refused)
            snprintf(why, sizeof(why), "an unexpected answer");
    }
    if (!ok) {
        snprintf(err, errsz, "takeover through %s failed: %s", cfg->takeover_socket, why);
        takeover_abandon(t);
        return false;
    }
    log_info("takeover: received the listening sockets of pid %d", (int)t->old_pid);
    return true;
}

bool takeover_given_up(const struct takeover_fds *t)
{
    if (t->conn < 0)
        return false;
    /* only ERROR: nothing (it waits for DONE), a BYE (it stopped early, handing over) or a
     * silent end (it died) are for takeover_finish to judge */
    char head[6];
    ssize_t r = recv(t->conn, head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);
    return r == (ssize_t)sizeof(head) && memcmp(head, "ERROR ", 6) == 0;
}

/* Has process pid ended (gone, or a zombie its parent has not reaped yet)? */
static bool process_gone(pid_t pid)
{
    char path[64], stat[256];
    if (kill(pid, 0) != 0)
        return errno == ESRCH;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(stat, 1, sizeof(stat) - 1, f) : 0;
    if (f)
        fclose(f);
    stat[n] = '\0';
    const char *end = strrchr(stat, ')'); /* "pid (comm) S ...": comm may hold anything */
    return end && end[1] == ' ' && (end[2] == 'Z' || end[2] == 'X');
}

/* Removes the socket file the old process's Unix socket, which this configuration does not
 * use, answers at, now that nothing accepts there (it stopped accepting). */
static void remove_stale_unix(const char *path)
{
    struct stat st;
    if (!path[0] || lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_uid != geteuid() ||
        unixsock_in_use(path))
        return;
    unixsock_remove_own(path, &st);
    log_info("takeover: removed %s, the previous process's Unix socket, not in this "
             "configuration",
             path);
}

bool takeover_finish(struct takeover_fds *t, char *err, size_t errsz)
{
    char line[TAKEOVER_LINE_MAX], why[256];
    int nfds = 0;
    bool ok = true;
    if (t->conn >= 0 && t->old_pid > 0) {
        bool got = send_line(t->conn, "DONE\n") &&
                   read_line(t->conn, 5, line, sizeof(line), NULL, &nfds, why, sizeof(why));
        if (got && strcmp(line, "BYE") == 0) {
            log_info("takeover: pid %d stopped accepting; it serves its clients until they "
                     "leave",
                     (int)t->old_pid);
        } else if (process_gone(t->old_pid)) {
            log_warning("takeover: pid %d ended without confirming that it stopped accepting: "
                        "accepting alone",
                        (int)t->old_pid);
        } else { /* it accepts still: two processes must not share the port */
            ok = false;
            snprintf(err, errsz,
                     "takeover abandoned: pid %d did not confirm that it stopped accepting "
                     "(%.100s): it goes on accepting",
                     (int)t->old_pid,
                     !got                              ? why
                     : strncmp(line, "ERROR ", 6) == 0 ? line + 6
                                                       : "an unexpected answer");
        }
    }
    if (ok)
        remove_stale_unix(t->stale_unix);
    takeover_abandon(t);
    return ok;
}

void takeover_abandon(struct takeover_fds *t)
{
    int *fds[] = {&t->conn, &t->listen_fd, &t->unix_fd, &t->http_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
}
