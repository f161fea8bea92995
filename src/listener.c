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

/* Binds listen.host:listen.port; NULL with err on failure. */
static struct evconnlistener *bind_listener(struct worker *w, char *err, size_t errsz)
{
    struct addrinfo *ai = NULL;
    const char *host = strcmp(w->cfg->listen_host, "*") == 0 ? NULL : w->cfg->listen_host;
    int rc = listener_resolve(host, w->cfg->listen_port, &ai);
    if (rc != 0) {
        snprintf(err, errsz, "cannot resolve listen.host %s: %s", w->cfg->listen_host,
                 gai_strerror(rc));
        return NULL;
    }
    struct evconnlistener *l = evconnlistener_new_bind(
        w->base, accept_cb, w, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        1024, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!l)
        snprintf(err, errsz, "cannot listen on %s:%d: %s", w->cfg->listen_host, w->cfg->listen_port,
                 strerror(errno));
    return l;
}

int listener_resolve(const char *host, int port, struct addrinfo **out)
{
    struct addrinfo hints;
    char service[16];
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", port);
    return getaddrinfo(host, service, &hints, out);
}

bool listener_start(struct worker *w, int inherited_fd, char *err, size_t errsz)
{
    if (inherited_fd >= 0) {
        evutil_make_socket_nonblocking(inherited_fd);
        w->listener = evconnlistener_new(
            w->base, accept_cb, w, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, inherited_fd);
        if (!w->listener) {
            snprintf(err, errsz, "cannot accept on the listening socket taken over: %s",
                     strerror(errno));
            return false;
        }
    } else if (!(w->listener = bind_listener(w, err, errsz))) {
        return false;
    }
    evconnlistener_set_error_cb(w->listener, accept_error_cb);
    log_info("%s on %s:%d", inherited_fd >= 0 ? "took over listening" : "listening",
             w->cfg->listen_host, w->cfg->listen_port);
    return true;
}

int listener_fd(const struct worker *w)
{
    return w->listener ? evconnlistener_get_fd(w->listener) : -1;
}

void listener_stop(struct worker *w)
{
    if (w->listener)
        evconnlistener_free(w->listener);
    w->listener = NULL;
    if (w->accept_pause)
        evtimer_del(w->accept_pause);
}
