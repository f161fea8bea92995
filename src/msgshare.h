/* msgshare.h: clients' large messages and the worker's budget for them (msgbudget.h). A
 * client's input holds at most CLIENT_READ_AHEAD bytes on its own; a larger message that must
 * be read whole is read once the client is lent its size. Only a client with a server whose
 * relay waits for the rest of that message asks: so a holder never waits for a server, for
 * PostgreSQL, or for another share, only for its own client's bytes, and a holder whose bytes
 * stop (or, while others wait, come too slowly) is closed. Raised limits are applied from an event
 * of their own, never from inside another connection's callback (a TLS filter may read at once). */
#ifndef LAKEPROXY_MSGSHARE_H
#define LAKEPROXY_MSGSHARE_H

#include <stdbool.h>
#include <stddef.h>

#include "objects.h"

#define CLIENT_READ_AHEAD RELAY_HIGH_WATER
#define LARGE_MESSAGE_STALL_S 10
#define LARGE_MESSAGE_MIN_RATE (64 * 1024) /* bytes a second a holder sends while others wait */

/* The size, header included, of the message at the front of c's input when it is larger than
 * CLIENT_READ_AHEAD (whole or not yet); else 0, as when a body is streaming through (the
 * input then starts inside a message) or the header is bad (the relay says so). */
size_t msgshare_large_ahead(struct client *c);

/* After a relay run of c's messages: reading, whether the relay waits for more of c's input
 * with nothing else in the way (not paused by its server's backlog, its server's output not
 * above RELAY_HIGH_WATER, not waiting for the masking catalog). Asks for, keeps or gives back
 * c's share to match the message ahead. */
void msgshare_fit(struct client *c, bool reading);

/* c is closing (or has no server any more): its share goes back, its place in line too, and
 * its read limit (when not closing) is CLIENT_READ_AHEAD again. */
void msgshare_give_back(struct client *c);

/* The worker's event that lends and applies shares (worker start and end). */
bool msgshare_start(struct worker *w);
void msgshare_stop(struct worker *w);

/* Shares may be lent now (a reload made the budget larger). */
void msgshare_lend_later(struct worker *w);

/* Once a second, while others wait for the memory: closes holders that received nothing for
 * LARGE_MESSAGE_STALL_S, and those that have held their share longer than
 * LARGE_MESSAGE_STALL_S plus the time their message takes at LARGE_MESSAGE_MIN_RATE (a client
 * sending a byte now and then cannot keep the memory either). Only seconds in which the holder
 * could read count (not paused, not waiting for the masking catalog). */
void msgshare_check_stalls(struct worker *w);

#endif
