/* msgbudget.h: the memory a worker lends its clients for large messages. A client reads at
 * most RELAY_HIGH_WATER bytes ahead on its own; a message larger than that which must be read
 * whole (a long query, a Parse or Bind with large values) needs a share of the budget the size
 * of the message first. Shares are lent whole, in the order asked for, so a client that holds
 * one never waits for another to finish: whatever the clients send, a worker buffers at most
 * the budget plus RELAY_HIGH_WATER per client. Pure: no I/O; the caller wakes those lent to. */
#ifndef LAKEPROXY_MSGBUDGET_H
#define LAKEPROXY_MSGBUDGET_H

#include <stdbool.h>
#include <stddef.h>

#include "list.h"

struct msgbudget {
    size_t total;        /* limits.max_message_memory */
    size_t lent;         /* held by claims now */
    struct list waiting; /* struct msgbudget_claim, oldest first */
    size_t n_waiting;    /* claims on it */
};

/* One client's share: zeroed, then msgbudget_claim_init. */
struct msgbudget_claim {
    struct list node; /* on msgbudget.waiting while want > 0 */
    size_t held;      /* bytes lent to it now */
    size_t want;      /* bytes it waits for (0: not waiting) */
};

void msgbudget_init(struct msgbudget *b, size_t total);
void msgbudget_claim_init(struct msgbudget_claim *c);

/* Makes c ask for want bytes instead of what it held or waited for (want 0: nothing). True
 * when c holds want now; false when it waits in line (or want is 0). What c gave back may let
 * others in: call msgbudget_next_lent until it answers NULL. */
bool msgbudget_ask(struct msgbudget *b, struct msgbudget_claim *c, size_t want);

/* The oldest waiting claim that the budget now holds, lent its share and out of line; NULL
 * when there is none (none waits, or the oldest does not fit yet: later ones do not pass it).
 * A claim larger than the whole budget is lent when nothing else is held, so a smaller budget
 * after a reload never strands one. */
struct msgbudget_claim *msgbudget_next_lent(struct msgbudget *b);

/* A new total (a reload); the caller then calls msgbudget_next_lent. */
void msgbudget_resize(struct msgbudget *b, size_t total);

#endif
