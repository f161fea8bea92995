/* notify.c: sd_notify wrappers; no-ops when built without libsystemd. */
#include "notify.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#else
static int sd_notify(int unset_environment, const char *state)
{
    (void)unset_environment;
    (void)state;
    return 0;
}
#endif

void notify_ready(void)
{
    sd_notify(0, "READY=1");
}

/* RELOADING=1 carries the monotonic time in microseconds, as systemd 253 asks of
 * Type=notify-reload services (older ones ignore it). */
void notify_reloading(void)
{
    struct timespec ts;
    char msg[64];
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    sd_notify(0, msg);
}

void notify_mainpid(int pid)
{
    char msg[32];
    snprintf(msg, sizeof(msg), "MAINPID=%d", pid);
    sd_notify(0, msg);
}

void notify_stopping(void)
{
    sd_notify(0, "STOPPING=1");
}

void notify_status(const char *text)
{
    static char last[200];
    char msg[220];
    if (strncmp(last, text, sizeof(last)) == 0)
        return;
    snprintf(last, sizeof(last), "%s", text);
    snprintf(msg, sizeof(msg), "STATUS=%s", last);
    sd_notify(0, msg);
}
