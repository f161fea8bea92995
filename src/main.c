/* main.c: command line, configuration check, and start of the worker. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "notify.h"
#include "stopsig.h"
#include "takeover.h"
#include "worker.h"

static void usage(FILE *out)
{
    fprintf(out,
            "lakeproxy %s: PostgreSQL proxy and connection pooler for Databricks Lakebase\n\n"
            "Usage:\n"
            "  lakeproxy -c FILE                 run in the foreground, logging to stderr\n"
            "  lakeproxy --log-format json -c FILE  log lines as JSON objects (default: text)\n"
            "  lakeproxy --takeover -c FILE      take the listening sockets over from the "
            "lakeproxy\n"
            "                                    running with the same listen.takeover_socket;\n"
            "                                    it serves its clients until they leave, then "
            "exits\n"
            "  lakeproxy --check-config -c FILE  check FILE; print each error as "
            "file:line:column: message\n"
            "  lakeproxy --version               print the version\n"
            "  lakeproxy --help                  print this help\n",
            LAKEPROXY_VERSION);
}

/* The main thread's stack may grow to this: parsing a statement recurses once per level of
 * its tree, and sqlinfo.c bounds the levels from the text, but keeps a margin against what
 * that reading might miss. The kernel reserves at least 128 MiB below the stack for it. */
#define STACK_WANTED (64u << 20)

/* Raises the soft stack limit to STACK_WANTED when the hard limit allows. */
static void raise_stack_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_STACK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur >= STACK_WANTED)
        return;
    rl.rlim_cur =
        rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= STACK_WANTED ? STACK_WANTED : rl.rlim_max;
    setrlimit(RLIMIT_STACK, &rl);
}

/* Loads path, printing every error; NULL on failure. */
static struct config *load_config(const char *path)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load(path, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    config_errors_free(&errs);
    return cfg;
}

/* New process: says DONE once the worker is built, unless told to stop meanwhile; false with
 * err when the takeover is abandoned (w is freed then, and the running process accepts on). */
static bool finish_takeover(struct worker *w, struct takeover_fds *fds, char *err, size_t errsz)
{
    int sig = stopsig_pending();
    bool ok = !sig && takeover_finish(fds, err, errsz);
    if (sig) {
        takeover_abandon(fds);
        snprintf(err, errsz,
                 "takeover abandoned: %s came before the handover completed: the "
                 "running lakeproxy goes on accepting",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
    if (ok)
        listener_unix_taken_over(w);
    else
        worker_free(w); /* (the Unix socket's file stays: it is the running process's) */
    return ok;
}

/* Builds the worker, on the listening sockets of the running lakeproxy when takeover is
 * set, then opens the takeover socket (anew: the old process closed its own). NULL with err
 * on failure; a takeover that fails leaves the running process accepting. */
static struct worker *start_worker(struct config *cfg, int takeover, char *err, size_t errsz)
{
    struct takeover_fds fds;
    sigset_t stops = stopsig_set(), before;
    if (takeover)
        sigprocmask(SIG_BLOCK, &stops, &before);
    if (takeover && !takeover_receive(cfg, &fds, err, errsz)) {
        config_free(cfg);
        return NULL;
    }
    struct worker *w = worker_new(cfg, takeover ? &fds : NULL, err, errsz);
    if (!w) {
        if (takeover) {
            char why[512];
            snprintf(why, sizeof(why), "%s", err);
            takeover_abandon(&fds);
            snprintf(err, errsz,
                     "takeover abandoned: %.400s: the running lakeproxy goes on accepting", why);
        }
        return NULL;
    }
    if (takeover) {
        if (!finish_takeover(w, &fds, err, errsz))
            return NULL;
        sigprocmask(SIG_SETMASK, &before, NULL); /* (a stop signal since: the loop drains) */
    }
    if (!takeover_listen(w, err, errsz)) {
        if (!takeover) {
            worker_free(w);
            return NULL;
        }
        log_error("%s: serving, but no further takeover is possible until a restart", err);
    }
    notify_ready();
    return w;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"log-format", required_argument, NULL, 'L'},
        {"takeover", no_argument, NULL, 'T'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int check = 0, takeover = 0, opt;
    prctl(PR_SET_DUMPABLE, 0);   /* before any secret is read; limits.core_dumps may allow it */
    log_set_format_name("text"); /* journald's prefixes when stderr is the journal */
    while ((opt = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 'k': check = 1; break;
        case 'T': takeover = 1; break;
        case 'V': printf("lakeproxy %s\n", LAKEPROXY_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        case 'L':
            if (!log_set_format_name(optarg)) {
                fprintf(stderr, "lakeproxy: --log-format: expected text or json, got \"%s\"\n",
                        optarg);
                return 2;
            }
            break;
        default: usage(stderr); return 2;
        }
    }
    if (!path || optind != argc) {
        usage(stderr);
        return 2;
    }
    struct config *cfg = load_config(path);
    if (!cfg)
        return 1;
    if (check) {
        char warning[1200];
        if (config_readable_secrets(cfg, warning, sizeof(warning)))
            fprintf(stderr, "warning: %s\n", warning);
        printf("%s: configuration is valid\n", path);
        config_free(cfg);
        return 0;
    }
    enum log_level level;
    if (log_level_from_name(cfg->log_level, &level))
        log_set_level(level);
    raise_stack_limit();
    char err[512];
    struct worker *w = start_worker(cfg, takeover, err, sizeof(err));
    if (!w) {
        log_error("%s", err);
        return 1;
    }
    log_info("lakeproxy %s started (pid %d)", LAKEPROXY_VERSION, (int)getpid());
    int rc = worker_run(w);
    worker_free(w);
    log_info("lakeproxy stopped");
    return rc;
}
