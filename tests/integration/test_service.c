/* test_service.c: lakeproxy under a service manager: the sd_notify messages a Type=notify
 * unit relies on (READY=1 once it listens, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1
 * when SIGTERM starts the drain, STATUS= with counts), read from a NOTIFY_SOCKET of the test's
 * own. */
#include <criterion/criterion.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* Who owns /proc/pid/environ: root (0) while the process is not dumpable, else its user. */
static uid_t proc_owner(pid_t pid)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    return st.st_uid;
}

/* A review: tokens and passwords could reach a core file (or be read through ptrace and
 * /proc/PID/mem by any process of lakeproxy's user). lakeproxy is not dumpable unless
 * limits.core_dumps says so, which a reload applies. */
Test(service, secrets_stay_out_of_core_dumps_unless_they_are_allowed, .timeout = 60)
{
    static const char *const limits[] = {"", "limits: {core_dumps: true}\n"};
    char yaml[2][1024];
    int port = free_port();
    for (int i = 0; i < 2; i++)
        snprintf(yaml[i], sizeof(yaml[i]),
                 "listen: {host: 127.0.0.1, port: %d}\n%s"
                 "databases:\n  app: {host: 127.0.0.1, port: %s, dbname: lp_test, user: "
                 "lp_server, password: server-secret, tls: disable}\n"
                 "users:\n  carol: {auth: trust}\n",
                 port, limits[i], env_need("LP_PGPORT"));
    /* as root, as another user: root's own processes belong to root either way */
    struct passwd *pw = geteuid() == 0 ? getpwnam("postgres") : NULL;
    uid_t user = pw ? pw->pw_uid : geteuid();
    cr_assert_neq(user, 0, "no postgres user to run lakeproxy as");
    struct proxy px;
    proxy_start_as(&px, port, yaml[0], "postgres");
    cr_expect_eq(proc_owner(px.pid), 0, "by default lakeproxy is not dumpable");
    proxy_reload_yaml(&px, yaml[1]);
    for (int i = 0; i < 50 && proc_owner(px.pid) != user; i++)
        usleep(100 * 1000);
    cr_expect_eq(proc_owner(px.pid), user, "limits.core_dumps: true makes it dumpable");
    proxy_reload_yaml(&px, yaml[0]);
    for (int i = 0; i < 50 && proc_owner(px.pid) != 0; i++)
        usleep(100 * 1000);
    cr_expect_eq(proc_owner(px.pid), 0, "and a reload without it, not dumpable again");
    PGconn *c = proxy_connect(&px, "carol", "unused", "app", NULL);
    EXPECT_QUERY_VALUE(c, "SELECT count(*) FROM items", "1000", "it serves as before");
    PQfinish(c);
    proxy_stop(&px);
}
