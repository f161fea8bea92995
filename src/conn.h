/* conn.h: small helpers shared by client and server connections. */
#ifndef LAKEPROXY_CONN_H
#define LAKEPROXY_CONN_H

#include <event2/bufferevent.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"

struct tcp_config;

/* Sets up a connected TCP socket (not a Unix one: the caller knows which it has): no Nagle
 * delay, and the keepalive and user timeout of t (limits.tcp_*: a peer gone without a word,
 * or a NAT that dropped the flow, ends the connection instead of holding it open). */
void conn_tune_tcp(int fd, const struct tcp_config *t);

/* bev's input and output buffers, as bufferevent_get_input and bufferevent_get_output return
 * them, read from the bufferevent itself: those calls, into the shared library, ran about 40
 * times per transaction; these inline with link-time optimisation. */
struct evbuffer *conn_input(const struct bufferevent *bev);
struct evbuffer *conn_output(const struct bufferevent *bev);

/* Writes a built buf to bev; false if building it failed or the write did. */
bool conn_send(struct bufferevent *bev, struct buf *b) __attribute__((warn_unused_result));

/* Queues a built buf on bev without writing it yet: the caller's next write (or conn_flush)
 * sends it together with what follows, in one system call. False as conn_send. */
bool conn_queue(struct bufferevent *bev, struct buf *b) __attribute__((warn_unused_result));

/* Best-effort send of a last message (an error before closing): failures are moot. */
void conn_send_last(struct bufferevent *bev, struct buf *b);

/* The descriptor of a plain socket read through conn_read_direct, else -1 (TLS, not yet). */
int conn_plain_fd(struct bufferevent *bev);

/* Plain sockets keep EV_WRITE disabled and are written at once, right after a message is
 * queued, instead of on the next loop turn: no epoll change and no extra wake-up per message
 * (what PgBouncer does with its direct send). Only what the socket does not take waits for a
 * write event, which conn_write_done turns off again once the output is empty. TLS sessions
 * (conn_tls_accept, conn_tls_connect) are written the same way, through SSL_write, in records of
 * up to 16 KiB gathered from the output. Every write to a connection goes through conn_write,
 * conn_send or conn_send_last, or is followed by conn_flush. */
void conn_flush(struct bufferevent *bev);
void conn_write(struct bufferevent *bev, const void *data, size_t len);
/* From a write callback: stop watching for writability once everything is out. */
void conn_write_done(struct bufferevent *bev);

/* The fast path of a read callback: offered the bytes of one read on a plain socket before
 * they are buffered, with the read callback's argument; the input may hold bytes read before
 * them (a message the last read cut, say), which come first. It answers false to decline (the
 * bytes go into the input and the read callback runs, as without it), or true once it has done
 * with them what the read callback would have done had they been added to the input, having
 * added to the input whatever of them it did not consume. p lives only during the call. */
typedef bool (*conn_take_fn)(void *arg, const uint8_t *p, size_t n);

/* Appends p[0..n) to bev's input without running its callbacks: for a fast path's bytes it did
 * not consume. False when out of memory (the bytes are then lost: close the connection). */
bool conn_keep_input(struct bufferevent *bev, const uint8_t *p, size_t n);

/* Plain sockets, once they can no longer turn into TLS (after the startup packet): each read
 * event does one recv() of up to CONN_READ_CHUNK bytes into bev's input, instead of libevent's
 * evbuffer_read, which asks the kernel how much is buffered (ioctl FIONREAD) before every read
 * and takes at most 4 KB; and the output buffer loses libevent's callback (conn_flush does
 * what it did). The input holds at most limit bytes (0: no limit; a read high watermark set
 * before is replaced by it): there, reading stops until conn_read_resume finds room again,
 * without libevent's watermark callback, which ran on every change of the input. Everything
 * else stays libevent's: enabling, callbacks, EOF and error events, freeing. take (or NULL)
 * becomes the fast path of bev's read callback as it is now, for every connection whose read
 * callback that is (the event loop's thread only). No-op for TLS sessions and on repeat. */
void conn_read_direct(struct bufferevent *bev, size_t limit, conn_take_fn take);

/* Runs TLS session ssl on bev's plain socket from now on, in conn itself, as PgBouncer does
 * (no libevent filter, whose two buffers and deferred callbacks per direction cost several
 * microseconds a transaction; bev stays the connection, its callbacks kept): the handshake on
 * the socket's own events (BEV_EVENT_CONNECTED to bev's event callback once done,
 * BEV_EVENT_READING | BEV_EVENT_ERROR if it fails), then one SSL_read per read event into a
 * stack chunk, offered to take as conn_read_direct offers plain reads (at most limit bytes of
 * input, passed by less than a record: a record is read whole), and SSL_write from the output
 * in conn_flush. bev's input and output must be empty (what went in the clear, out). False
 * when that cannot be (ssl stays the caller's to free); the session ends, with close_notify,
 * at conn_close_after_flush. Accept: lakeproxy is the TLS server (a client's connection);
 * connect: the TLS client (a server connection), its ClientHello on the next loop turn. */
bool conn_tls_accept(struct bufferevent *bev, SSL *ssl, size_t limit, conn_take_fn take);
bool conn_tls_connect(struct bufferevent *bev, SSL *ssl, size_t limit, conn_take_fn take);

/* The TLS session conn runs on bev (conn_tls_accept, conn_tls_connect); NULL when plain. */
SSL *conn_tls(const struct bufferevent *bev);

/* After input was drained: reading goes on if it stopped at the limit and there is room now.
 * Reading stops at the limit without calling the read callback, so only code running outside
 * it (from another connection's event or a timer) can drain a stopped input: that code calls
 * this (client_pump, client_wake). */
void conn_read_resume(struct bufferevent *bev);

/* Sets how much bev's input may hold (conn_read_direct's limit; libevent's read watermark
 * before that) and goes on reading if that made room; no-op when it is that already. */
void conn_set_read_limit(struct bufferevent *bev, size_t limit);

/* Stops reading from bev, lets its output drain (at most a few seconds), then frees it. */
void conn_close_after_flush(struct bufferevent *bev);

/* Runs fn(arg) on the next loop turn: frees objects that may still be on the call stack. */
void conn_defer(struct event_base *base, void (*fn)(void *), void *arg);

/* Formats a peer address as "host:port". */
void conn_format_addr(const struct sockaddr *sa, char *out, size_t outsz);

#endif
