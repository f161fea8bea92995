/* listener.h: the listening socket; accepted connections become clients. */
#ifndef LAKEPROXY_LISTENER_H
#define LAKEPROXY_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "objects.h"

/* Binds listen.host:listen.port and starts accepting. False with err on failure. */
bool listener_start(struct worker *w, char *err, size_t errsz);

#endif
