/* test_service.c: lakeproxy under a service manager: the sd_notify messages a Type=notify
 * unit relies on (READY=1 once it listens, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1
 * when SIGTERM starts the drain, STATUS= with counts), read from a NOTIFY_SOCKET of the test's
 * own. */
#include <criterion/criterion.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* Waits up to timeout_ms for a notification that contains want; collects what came into seen. */
static bool wait_notify(int fd, const char *want, int timeout_ms, char *seen, size_t seensz)
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

#ifdef HAVE_SYSTEMD
Test(service, tells_the_service_manager_when_it_is_ready_reloads_and_stops, .timeout = 60)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s/notify-%d", env_need("LP_TEST_DIR"), getpid());
    unlink(a.sun_path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    setenv("NOTIFY_SOCKET", a.sun_path, 1);
    struct proxy px;
    proxy_start(&px, 2); /* the child inherits NOTIFY_SOCKET */
    unsetenv("NOTIFY_SOCKET");
    char seen[4096] = "";
    cr_expect(wait_notify(fd, "READY=1", 5000, seen, sizeof(seen)), "no READY=1: %s", seen);
    cr_expect(wait_notify(fd, "STATUS=", 5000, seen, sizeof(seen)), "%s", seen);
    cr_expect(strstr(seen, " clients, ") && strstr(seen, " server connections"), "%s", seen);
    seen[0] = '\0';
    kill(px.pid, SIGHUP);
    cr_expect(wait_notify(fd, "RELOADING=1", 5000, seen, sizeof(seen)), "%s", seen);
    cr_expect(wait_notify(fd, "READY=1", 5000, seen, sizeof(seen)), "no READY=1 after: %s", seen);
    seen[0] = '\0';
    kill(px.pid, SIGTERM);
    cr_expect(wait_notify(fd, "STOPPING=1", 5000, seen, sizeof(seen)), "%s", seen);
    int st = 0;
    for (int i = 0; i < 500 && waitpid(px.pid, &st, WNOHANG) != px.pid; i++)
        usleep(10000);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d; see %s", st, px.log);
    px.pid = 0;
    close(fd);
    unlink(a.sun_path);
}
#endif
