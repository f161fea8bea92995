/* tcprelay.h: a TCP relay for fault tests: listens on a loopback address, forwards each
 * connection to a port on 127.0.0.1, and can cut a connection abruptly (RST on both sides). */
#ifndef LAKEPROXY_TEST_TCPRELAY_H
#define LAKEPROXY_TEST_TCPRELAY_H

#include <stdbool.h>

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

/* Connections cut so far by the trap. */
int tcp_relay_cuts(struct tcp_relay *r);

/* Stops listening, closes every relayed connection and frees r. */
void tcp_relay_stop(struct tcp_relay *r);

#endif
