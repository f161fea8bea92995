/* maskwire.h: masking on the wire, for a client some masking rule applies to. Every result's
 * RowDescription gives each column's origin (table OID, column number); the masking catalog
 * says which are masked, and the DataRows that follow are rewritten by the resulting plan
 * (mask.c); rows of results without masked columns pass untouched. Results from the extended
 * protocol get their RowDescription from a Describe of the portal the proxy sends before each
 * Execute (its reply is swallowed). What cannot be masked is refused: the client's connection
 * ends with 42501 naming the column (the statement guard, masksql.c, refuses first whatever it
 * can see in the text; this is the backstop). */
#ifndef LAKEPROXY_MASKWIRE_H
#define LAKEPROXY_MASKWIRE_H

#include <stdbool.h>
#include <stdint.h>

#include "objects.h"
#include "relay.h"

/* Server -> client, for a masked client: the verdict on 'T', 'D' and the messages that end a
 * result, or RV_STREAM when masking leaves the message to the usual handling (which must then
 * still run). RV_WAIT: the RowDescription waits for the masking catalog (s->mask_wait).
 * RV_ERROR with s->err_msg set and s->err_state "42501": refused. */
enum relay_verdict maskwire_server_msg(struct server *s, uint8_t type, uint32_t len,
                                       const uint8_t *body);

/* For a masked client: PostgreSQL puts row values into the DETAIL of some errors ("Failing
 * row contains (...)", "Key (email)=(...) already exists"), and bytes of a value into the
 * message of an encoding conversion error: when the ErrorResponse or NoticeResponse has
 * either, writes it to the client without them and returns true (drop the server's). */
bool maskwire_strip_detail(struct server *s, const uint8_t *body, uint32_t len, uint8_t type);

/* Client -> server, before an Execute (body: its message body): sends a Describe of the same
 * portal and owes its swallowed reply. False when out of room or the Execute is malformed. */
bool maskwire_describe_portal(struct server *s, const uint8_t *execute_body, uint32_t len);

/* Writes the masked rows gathered so far to the client (after each pump, before any other
 * message). */
void maskwire_flush(struct server *s);

/* Forgets the plan (the server goes to another client or away), after writing the rows
 * gathered so far. */
void maskwire_reset(struct server *s);
void maskwire_free(struct server *s);

#endif
