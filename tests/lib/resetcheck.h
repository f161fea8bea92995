/* resetcheck.h: the check, shared by session and transaction pooling, that RESET and its other
 * spellings return a client to the settings of its own startup packet, as on PostgreSQL. */
#ifndef LP_RESETCHECK_H
#define LP_RESETCHECK_H

#include <stdbool.h>

struct proxy;

/* Clients of p (alice, database app) that set DateStyle and TimeZone at startup change them,
 * then return them with each of RESET, SET ... TO DEFAULT, RESET ALL and DISCARD ALL: each
 * must read dates and times by its startup values again, and be told them (ParameterStatus).
 * A SET to the server's own default is a SET, not a RESET; a RESET rolled back changes
 * nothing; another client on the same server keeps the server's defaults. The client keeps
 * its server (session: its session lives there; transaction pooling: p has one server, which
 * only DISCARD ALL retires). */
void expect_resets_return_to_startup_values(const struct proxy *p, bool session);

#endif
