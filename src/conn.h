/* conn.h: small helpers shared by client and server connections. */
#ifndef LAKEPROXY_CONN_H
#define LAKEPROXY_CONN_H

#include <event2/bufferevent.h>
#include <stdbool.h>

#include "buf.h"

/* Writes a built buf to bev; false if building it failed or the write did. */
bool conn_send(struct bufferevent *bev, struct buf *b) __attribute__((warn_unused_result));

/* Best-effort send of a last message (an error before closing): failures are moot. */
void conn_send_last(struct bufferevent *bev, struct buf *b);

/* Stops reading from bev, lets its output drain (at most a few seconds), then frees it. */
void conn_close_after_flush(struct bufferevent *bev);

/* Runs fn(arg) on the next loop turn: frees objects that may still be on the call stack. */
void conn_defer(struct event_base *base, void (*fn)(void *), void *arg);

/* Formats a peer address as "host:port". */
void conn_format_addr(const struct sockaddr *sa, char *out, size_t outsz);

#endif
