/* mockws.c: starting and steering the mock Databricks workspace from C tests. */
#include "mockws.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* The port in the mock's ready file ({"port": N, ...}), 0 when unreadable. */
static int ready_port(const char *ready)
{
    char text[256] = "";
    FILE *f = fopen(ready, "r");
    size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
    if (f)
        fclose(f);
    text[n] = '\0';
    const char *at = strstr(text, "\"port\": ");
    return at ? atoi(at + 8) : 0;
}

void mockws_start(struct mock_ws *m, const char *role, const char *life_s)
{
    char dsn[600], ready[450], script[400], cert[400], key[400], log[450];
    /* the mock binds a port of the system's choosing and says which in its ready file: a
     * port picked here and bound there could be picked by a test running beside this one;
     * its state directory is new, whatever ran before */
    snprintf(m->state, sizeof(m->state), "%s/mock-XXXXXX", env_need("LP_TEST_DIR"));
    cr_assert(mkdtemp(m->state), "could not make the mock workspace's state directory");
    snprintf(dsn, sizeof(dsn), "host=%s port=%s user=postgres dbname=postgres",
             env_need("LP_PGSOCK"), env_need("LP_PGPORT"));
    snprintf(ready, sizeof(ready), "%s/ready", m->state);
    snprintf(script, sizeof(script), "%s/tests/lib/mock_workspace.py", env_need("LP_ROOT"));
    snprintf(cert, sizeof(cert), "%s/server.crt", env_need("LP_CERTS"));
    snprintf(key, sizeof(key), "%s/server.key", env_need("LP_CERTS"));
    snprintf(log, sizeof(log), "%s/mock.log", m->state);
    m->pid = fork();
    cr_assert(m->pid >= 0);
    if (m->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test (it holds the output pipe) */
        if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout))
            _exit(126);
        execl("/usr/bin/python3", "python3", script, "--port", "0", "--cert", cert, "--key", key,
              "--state", m->state, "--lifetime", life_s, "--pg-dsn", dsn, "--pg-role", role,
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200 && access(ready, F_OK) != 0; i++)
        usleep(50000);
    cr_assert_eq(access(ready, F_OK), 0, "the mock workspace did not start; see %s", log);
    m->port = ready_port(ready);
    cr_assert_gt(m->port, 0, "the mock workspace's ready file names no port: %s", ready);
}

void mockws_stop(struct mock_ws *m)
{
    if (m->pid <= 0)
        return;
    kill(m->pid, SIGTERM);
    /* it exits within a second; one that does not is killed, and said so, rather than hold
     * the suite until its timeout (a clean-clone CI run once timed out in a suite's end) */
    bool running = true;
    for (int waited_ms = 0; (running = waitpid(m->pid, NULL, WNOHANG) == 0) && waited_ms < 5000;
         waited_ms += 50)
        usleep(50000);
    if (running) {
        fprintf(stderr,
                "mock workspace (pid %d) did not exit within 5 s of SIGTERM: killed; see "
                "%s/mock.log\n",
                (int)m->pid, m->state);
        kill(m->pid, SIGKILL);
        waitpid(m->pid, NULL, 0);
    }
    m->pid = 0;
}

/* Replaces file name in the state directory with text, atomically. */
static void state_write(const struct mock_ws *m, const char *name, const char *text)
{
    char path[450], tmp[460];
    snprintf(path, sizeof(path), "%s/%s", m->state, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    cr_assert_eq(rename(tmp, path), 0);
}

void mockws_mode(const struct mock_ws *m, const char *mode)
{
    state_write(m, "mode", mode);
}

void mockws_users(const struct mock_ws *m, const char *json)
{
    state_write(m, "users.json", json);
}

int mockws_calls(const struct mock_ws *m, const char *key)
{
    char path[450], text[1024], needle[64];
    snprintf(path, sizeof(path), "%s/calls.json", m->state);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    snprintf(needle, sizeof(needle), "\"%s\": ", key);
    const char *p = strstr(text, needle);
    return p ? atoi(p + strlen(needle)) : 0;
}
