/* metrics.h: the admin HTTP endpoint (evhttp on admin.http): GET /metrics in the Prometheus
 * text exposition format (pools, clients, servers, waits, query latency histograms per
 * database, credential expiry, guard refusals, query log records) and GET /healthz for load
 * balancers (200 while serving, 503 while draining). */
#ifndef LAKEPROXY_METRICS_H
#define LAKEPROXY_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "objects.h"

/* Starts the endpoint when the configuration asks for one, on inherited_fd (a listening
 * socket taken over from the previous process) or, when that is -1, on admin.http bound
 * here; false (with err) when it cannot listen. */
bool metrics_start(struct worker *w, int inherited_fd, char *err, size_t errsz);
void metrics_stop(struct worker *w);

/* The endpoint's listening descriptor, -1 when there is none. */
int metrics_listen_fd(const struct worker *w);

/* Closes the listening socket; requests on connections already open are still answered. */
void metrics_stop_accepting(struct worker *w);

/* Appends the exposition of w's current state to b (for tests and the endpoint). */
void metrics_render(struct worker *w, struct buf *b);

#endif
