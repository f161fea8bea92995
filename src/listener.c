/* listener.c: accepts connections on listen.host:listen.port and hands them to client.c. */
#include "listener.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "log.h"

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)l;
    client_accept(arg, fd, sa, salen);
}

/* Out of file descriptors and the like: log, and keep listening. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    int e = EVUTIL_SOCKET_ERROR();
    log_warning("accept failed: %s", evutil_socket_error_to_string(e));
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
