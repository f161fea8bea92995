/* tcprelay.h: a TCP relay for fault tests: listens on a loopback address, forwards each
 * connection to a port on 127.0.0.1, and can cut a connection abruptly (RST on both sides),
 * delay new connections, or rewrite the messages PostgreSQL sends (tcp_relay_mutate). */
#ifndef LAKEPROXY_TEST_TCPRELAY_H
#define LAKEPROXY_TEST_TCPRELAY_H

#include <stdbool.h>
#include <stddef.h>

struct tcp_relay;

/* Listens on listen_ip:listen_port and relays every connection to 127.0.0.1:target_port
 * (a thread per connection). The test fails when it cannot listen. */
struct tcp_relay *tcp_relay_start(const char *listen_ip, int listen_port, int target_port);

/* Arms a trap: the first connection that has carried at least bytes from the target towards
 * the connecting side is reset on both sides (SO_LINGER 0), in the middle of what it relays. */
void tcp_relay_cut_after(struct tcp_relay *r, long long bytes);

/* Connections accepted from now on reach the target ms later (what they send waits), each
 * on its own: one accepted meanwhile is not held up behind another's wait. */
void tcp_relay_delay_connects(struct tcp_relay *r, int ms);

/* What a mutation does to the message that springs it (see tcp_relay_mutate). */
enum relay_mut_action {
    RM_BEFORE,  /* the injected bytes go just before the message */
    RM_AFTER,   /* ... just after it */
    RM_REPLACE, /* ... instead of it (no bytes: the message is dropped) */
};

/* What the connection does after a mutation sprang. */
enum relay_mut_then {
    RM_GO_ON,   /* relays on as before */
    RM_CLOSE,   /* closes the connection (orderly, both sides) */
    RM_SWALLOW, /* keeps the connection open but drops all the target sends from then on */
    RM_DRIBBLE, /* relays on, one byte a write (the sprung output too) */
};

/* A mutation of the stream from the target (PostgreSQL) towards the connecting side
 * (lakeproxy), which the relay reads as PostgreSQL messages (type, length, body). */
struct relay_mutation {
    char type;          /* the message type that springs it (0: any) */
    const char *needle; /* ... when its body (or, with NUL bytes, its whole) holds these bytes
                           (NULL: any); needle_len 0: strlen */
    size_t needle_len;
    int skip; /* matching messages to let pass before it springs */
    enum relay_mut_action action;
    const void *inject; /* the bytes injected (copied) */
    size_t inject_len;
    enum relay_mut_then then;
    long long flood; /* then this many filler bytes (flood_byte) are written after them */
    unsigned char flood_byte;
    int pause_ms; /* the sprung output waits this long first */
    int times;    /* how many messages it springs on (0: 1) */
};

/* Arms mutation m (replacing any armed before) on every connection, the ones open now
 * included: the first messages that match (counted across connections) spring it. What it
 * points to is copied. */
void tcp_relay_mutate(struct tcp_relay *r, const struct relay_mutation *m);

/* Disarms the mutation (one sprung keeps its `then` on its connection). */
void tcp_relay_mutate_off(struct tcp_relay *r);

/* How many times the armed (or last) mutation sprang. */
int tcp_relay_sprung(struct tcp_relay *r);

/* Waits up to timeout_ms until the mutation sprang at least n times. */
bool tcp_relay_wait_sprung(struct tcp_relay *r, int n, int timeout_ms);

/* Connections cut so far by the trap. */
int tcp_relay_cuts(struct tcp_relay *r);

/* Stops listening, closes every relayed connection and frees r. */
void tcp_relay_stop(struct tcp_relay *r);

#endif
