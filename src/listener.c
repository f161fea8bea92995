/* listener.c: accepts connections on listen.host:listen.port and hands them to client.c. */
#include "listener.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "log.h"

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
    if (w->listener)
        evconnlistener_enable(w->listener);
}

/* Out of file descriptors and the like: the pending connection stays in the backlog, so
 * accepting again at once would fail again in a tight loop. Pause accepting for 100 ms, and log
 * at most once a second. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct worker *w = arg;
    static time_t last_logged;
    int e = EVUTIL_SOCKET_ERROR();
    time_t now = time(NULL);
    if (now != last_logged) {
        last_logged = now;
        log_warning("accept failed: %s (pausing new connections for 100 ms)",
                    evutil_socket_error_to_string(e));
    }
    struct timeval pause = {0, 100 * 1000};
    if (!w->accept_pause)
        w->accept_pause = evtimer_new(w->base, resume_accepting, w);
    if (w->accept_pause) {
        evconnlistener_disable(l);
        evtimer_add(w->accept_pause, &pause);
    }
}

bool listener_start(struct worker *w, char *err, size_t errsz)
{
    struct addrinfo hints, *ai = NULL;
    char port[16];
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", w->cfg->listen_port);
    const char *host = strcmp(w->cfg->listen_host, "*") == 0 ? NULL : w->cfg->listen_host;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errsz, "cannot resolve listen.host %s: %s", w->cfg->listen_host,
                 gai_strerror(rc));
        return false;
    }
    w->listener = evconnlistener_new_bind(w->base, accept_cb, w,
                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                              LEV_OPT_CLOSE_ON_EXEC,
                                          1024, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!w->listener) {
        snprintf(err, errsz, "cannot listen on %s:%d: %s", w->cfg->listen_host,
                 w->cfg->listen_port, strerror(errno));
        return false;
    }
    evconnlistener_set_error_cb(w->listener, accept_error_cb);
    log_info("listening on %s:%d", w->cfg->listen_host, w->cfg->listen_port);
    return true;
}
