/* notify.h: service manager notifications (systemd's sd_notify protocol, through libsystemd
 * when lakeproxy was built with it): READY=1 once the listeners are up, RELOADING=1 and
 * READY=1 around a reload, STOPPING=1 when draining starts, and a STATUS= line with client and
 * server counts; MAINPID= of the new process after a takeover. Without a service manager
 * (NOTIFY_SOCKET unset) every call does nothing. */
#ifndef LAKEPROXY_NOTIFY_H
#define LAKEPROXY_NOTIFY_H

void notify_ready(void);
void notify_reloading(void);
void notify_stopping(void);
/* MAINPID=pid: after a takeover the service's main process is the new one. */
void notify_mainpid(int pid);
/* STATUS=, only when text changed since the last call. */
void notify_status(const char *text);

#endif
