/* qtrack.h: following each client query on the wire, for statistics. Each statement of a
 * simple Query and each Execute of the extended protocol open a record (its statement's
 * fingerprint from the text, analysed once); the server's replies give its first-byte time,
 * rows, bytes, error and end (an Execute suspended by a row limit goes on as the same record
 * when the client fetches more: one query per portal, not per fetch). Finished records go to
 * the worker's aggregates and, sampled, to the query log. */
#ifndef LAKEPROXY_QTRACK_H
#define LAKEPROXY_QTRACK_H

#include <stdbool.h>
#include <stdint.h>

struct client;

/* The client asks its pool for a server (the start of a wait). */
void qtrack_request(struct client *c);
/* The server is the client's and its messages can go: the wait is over. */
void qtrack_linked(struct client *c);

/* Whole client messages of types 'Q', 'P', 'B', 'E' (Execute), 'S' (Sync), 'F'
 * (FunctionCall), 'c' (CopyDone) and 'f' (CopyFail). */
bool qtrack_wants_client_msg(const struct client *c, uint8_t type);
void qtrack_client_msg(struct client *c, uint8_t type, uint32_t len, const uint8_t *body);

/* Every server message relayed to client c, once: body is given for 'C' and 'E' (ask with
 * qtrack_wants_server_body), NULL otherwise. */
bool qtrack_wants_server_body(const struct client *c, uint8_t type);
void qtrack_server_msg(struct client *c, uint8_t type, uint32_t len, const uint8_t *body);

/* The client is gone: open records are dropped, the tracker freed (client_close settled the
 * last finished query while the client's fields were whole). */
void qtrack_free(struct client *c);

/* Accounts for (aggregates, log) the last query that finished, if not done yet: called once a
 * relay has sent on the messages it judged, so the accounting is not in their way. */
void qtrack_settle(struct client *c);

#endif
