/* command.c: a credential command as a child process watched by the event loop (see
 * command.h). The child runs in its own process group so a timeout kills what it started too. */
#include "command.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "redact.h"

#define STDERR_KEEP 512

struct command {
    struct event_base *base;
    pid_t pid;
    struct event *out_ev, *err_ev, *deadline, *reaper;
    char *out;
    size_t out_len, max_out;
    char errtext[STDERR_KEEP];
    size_t err_len;
    int timeout_ms;
    bool out_eof, err_eof;
    char failure[128]; /* set when the proxy gave up on it (timeout, too much output) */
    command_done_fn done;
    void *arg;
};

extern char **environ;

/* Is entry ("NAME=value") one of the variables named in hide? */
static bool hidden(const char *entry, const char *const *hide)
{
    size_t n = strcspn(entry, "=");
    for (; hide && *hide; hide++)
        if (strlen(*hide) == n && strncmp(entry, *hide, n) == 0)
            return true;
    return false;
}

/* A copy of the environment's pointers without the hidden variables (free the array only).
 * Built before fork: the child of a threaded process should not allocate. */
static char **env_without(const char *const *hide)
{
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 1, sizeof(*env));
    for (size_t i = 0; env && i < n; i++)
        if (!hidden(environ[i], hide))
            env[k++] = environ[i];
    return env;
}

/* The child: wire the pipes, leave the parent's descriptors behind, exec. */
static void child_exec(char *const *argv, const char *shell, char *const *env, int out_fd,
                       int err_fd)
{
    setpgid(0, 0);
    signal(SIGPIPE, SIG_DFL);
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
        _exit(126);
    closefrom(3);
    if (shell)
        execve("/bin/sh", (char *const[]){"sh", "-c", (char *)shell, NULL}, env);
    else
        execvpe(argv[0], argv, env);
    dprintf(2, "cannot run %s: %s\n", shell ? "/bin/sh" : argv[0], strerror(errno));
    _exit(127);
}

static void free_command(struct command *c)
{
    if (c->out_ev) {
        close(event_get_fd(c->out_ev));
        event_free(c->out_ev);
    }
    if (c->err_ev) {
        close(event_get_fd(c->err_ev));
        event_free(c->err_ev);
    }
    if (c->deadline)
        event_free(c->deadline);
    if (c->reaper)
        event_free(c->reaper);
    if (c->out) {
        OPENSSL_cleanse(c->out, c->out_len);
        free(c->out);
    }
    free(c);
}

/* Reports how the child ended (st from waitpid) and frees c. */
static void report(struct command *c, int st)
{
    char err[STDERR_KEEP + 128];
    char *nl = memchr(c->errtext, '\n', c->err_len);
    size_t elen = nl ? (size_t)(nl - c->errtext) : c->err_len;
    if (!nl && elen > 0 && c->err_len == sizeof(c->errtext) - 1) /* full, so maybe cut: not
                                                                    in a token (redact.h) */
        elen = redact_cut_at(c->errtext, elen - 1);
    bool ok = !c->failure[0] && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (c->failure[0])
        snprintf(err, sizeof(err), "%s", c->failure);
    else if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
        snprintf(err, sizeof(err), "exited with status %d%s%.*s", WEXITSTATUS(st), elen ? ": " : "",
                 (int)elen, c->errtext);
        redact_secrets(err, sizeof(err), NULL); /* (a token command may print what it got) */
    } else if (WIFSIGNALED(st))
        snprintf(err, sizeof(err), "killed by signal %d", WTERMSIG(st));
    else
        err[0] = '\0';
    command_done_fn done = c->done;
    c->done = NULL;
    if (done)
        done(c->arg, ok, c->out ? c->out : "", c->out_len, ok ? NULL : err);
    free_command(c);
}

/* Kills the child's process group, once. */
static void kill_child(struct command *c, const char *why)
{
    if (!c->failure[0])
        snprintf(c->failure, sizeof(c->failure), "%s", why);
    kill(-c->pid, SIGKILL);
    kill(c->pid, SIGKILL);
}

/* Polls for the child's exit once its output is closed. */
static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct command *c = arg;
    int st;
    pid_t r = waitpid(c->pid, &st, WNOHANG);
    if (r == c->pid || (r < 0 && errno != EINTR)) {
        report(c, r == c->pid ? st : 0);
        return;
    }
    struct timeval tv = {0, 10000};
    evtimer_add(c->reaper, &tv);
}

static void maybe_reap(struct command *c)
{
    if (c->out_eof && c->err_eof)
        reap_cb(-1, 0, c);
}

static void out_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct command *c = arg;
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        c->out_eof = true;
        event_del(c->out_ev);
        maybe_reap(c);
        return;
    }
    if (c->out_len + (size_t)n > c->max_out) {
        char why[96];
        snprintf(why, sizeof(why), "output exceeds %zu bytes", c->max_out);
        kill_child(c, why);
    } else {
        memcpy(c->out + c->out_len, chunk, (size_t)n);
        c->out_len += (size_t)n;
    }
    OPENSSL_cleanse(chunk, sizeof(chunk));
}

static void err_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct command *c = arg;
    char chunk[1024];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        c->err_eof = true;
        event_del(c->err_ev);
        maybe_reap(c);
        return;
    }
    for (ssize_t i = 0; i < n && c->err_len < sizeof(c->errtext) - 1; i++)
        c->errtext[c->err_len++] =
            (chunk[i] >= ' ' && chunk[i] <= '~') || chunk[i] == '\n' ? chunk[i] : '?';
}

/* Reads what is left in the output pipe now, without waiting for its end. */
static void drain_output(struct command *c)
{
    for (int i = 0; i < 64 && !c->out_eof && !c->failure[0]; i++) {
        size_t before = c->out_len;
        out_cb(event_get_fd(c->out_ev), EV_READ, c);
        if (c->out_len == before)
            break;
    }
}

/* timeout_ms is over. A child that has exited answered: what it wrote is all there is, even if
 * something it left behind (a daemon in a session of its own) holds its output open. One still
 * running is killed. Either way the pipes' ends are not waited for, so the answer comes now. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct command *c = arg;
    int st;
    if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
        drain_output(c);
        report(c, st);
        return;
    }
    char why[64];
    snprintf(why, sizeof(why), "no answer within %d ms", c->timeout_ms);
    kill_child(c, why);
    c->out_eof = c->err_eof = true;
    event_del(c->out_ev);
    event_del(c->err_ev);
    reap_cb(-1, 0, c);
}

/* Creates the read events and the timers. */
static bool watch(struct command *c, int out_fd, int err_fd)
{
    c->out_ev = event_new(c->base, out_fd, EV_READ | EV_PERSIST, out_cb, c);
    c->err_ev = event_new(c->base, err_fd, EV_READ | EV_PERSIST, err_cb, c);
    c->deadline = evtimer_new(c->base, deadline_cb, c);
    c->reaper = evtimer_new(c->base, reap_cb, c);
    struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
    return c->out_ev && c->err_ev && c->deadline && c->reaper && event_add(c->out_ev, NULL) == 0 &&
           event_add(c->err_ev, NULL) == 0 && evtimer_add(c->deadline, &tv) == 0;
}

/* Frees what a start that failed before fork had made (c and env may be NULL); NULL. */
static struct command *not_started(struct command *c, char **env)
{
    if (c)
        free(c->out);
    free(c);
    free(env);
    return NULL;
}

struct command *command_start(struct event_base *base, char *const *argv, const char *shell,
                              const char *const *hide, int timeout_ms, size_t max_out,
                              command_done_fn done, void *arg, char *err, size_t errsz)
{
    int op[2], ep[2];
    struct command *c = calloc(1, sizeof(*c));
    char **env = env_without(hide);
    if (c)
        c->out = malloc(max_out ? max_out : 1);
    if (!c || !c->out || !env) {
        snprintf(err, errsz, "out of memory");
        return not_started(c, env);
    }
    if (pipe2(op, O_CLOEXEC) != 0) {
        snprintf(err, errsz, "pipe: %s", strerror(errno));
        return not_started(c, env);
    }
    if (pipe2(ep, O_CLOEXEC) != 0) {
        snprintf(err, errsz, "pipe: %s", strerror(errno));
        close(op[0]);
        close(op[1]);
        return not_started(c, env);
    }
    *c = (struct command){.base = base,
                          .out = c->out,
                          .max_out = max_out,
                          .timeout_ms = timeout_ms,
                          .done = done,
                          .arg = arg};
    c->pid = fork();
    if (c->pid == 0)
        child_exec(argv, shell, env, op[1], ep[1]);
    free(env);
    close(op[1]);
    close(ep[1]);
    if (c->pid < 0) {
        snprintf(err, errsz, "fork: %s", strerror(errno));
        close(op[0]);
        close(ep[0]);
        c->done = NULL;
        free(c->out);
        free(c);
        return NULL;
    }
    fcntl(op[0], F_SETFL, O_NONBLOCK);
    fcntl(ep[0], F_SETFL, O_NONBLOCK);
    if (!watch(c, op[0], ep[0])) {
        if (!c->out_ev)
            close(op[0]);
        if (!c->err_ev)
            close(ep[0]);
        command_cancel(c);
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    return c;
}

void command_cancel(struct command *c)
{
    if (!c)
        return;
    c->done = NULL;
    kill(-c->pid, SIGKILL);
    kill(c->pid, SIGKILL);
    while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    free_command(c);
}
