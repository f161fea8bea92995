/* test_service.c: lakeproxy under a service manager: the sd_notify messages a Type=notify
 * unit relies on (READY=1 once it listens, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1
 * when SIGTERM starts the drain, STATUS= with counts), read from a NOTIFY_SOCKET of the test's
 * own. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#ifdef HAVE_SYSTEMD
Test(service, tells_the_service_manager_when_it_is_ready_reloads_and_stops, .timeout = 60)
{
    char path[300];
    int fd = notify_socket_open(path, sizeof(path));
    setenv("NOTIFY_SOCKET", path, 1);
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
    unlink(path);
}
#endif
