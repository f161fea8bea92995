/* tokenauth.h: clients of a database with `client_auth: databricks_token` log in with their
 * own Databricks OAuth token as password. lakeproxy asks the workspace who the token belongs
 * to (GET /api/2.0/preview/scim/v2/Me with the token as bearer) and takes the answer's
 * userName and group names as the client's identity. Answers are cached by the SHA-256 of
 * (workspace, token) for at most TOKENAUTH_CACHE_S and never past the token's own expiry;
 * logins with the same token share one request; requests in flight are bounded, in all and
 * per client address; a refused token is answered from the cache for a while. */
#ifndef LAKEPROXY_TOKENAUTH_H
#define LAKEPROXY_TOKENAUTH_H

#include "objects.h"
#include "token.h"

#define TOKENAUTH_CACHE_S 300                /* an answer is trusted this long at most */
#define TOKENAUTH_MAX_CACHED 4096            /* cached answers per worker */
#define TOKENAUTH_MAX_INFLIGHT 32            /* distinct tokens being checked at once */
#define TOKENAUTH_MAX_INFLIGHT_PER_ADDRESS 4 /* ... started by logins from one address */
#define TOKENAUTH_REFUSED_CACHE_S 30         /* a token the workspace refused is refused again */

struct tokenauth_wait;

/* The check's outcome: id on success (valid during the call), else sqlstate and err (a
 * message for the client: 28P01 for a token the workspace refused, 08006 when it could not be
 * asked, 53300 when too many checks are in flight). */
typedef void (*tokenauth_done_fn)(struct client *c, const struct token_identity *id,
                                  const char *sqlstate, const char *err);

/* Checks token for client c of database db (whose credentials name the workspace), connected
 * from addr ("host:port"). done is called exactly once, always later from the event loop,
 * unless tokenauth_cancel comes first. NULL when out of memory (done is not called). */
struct tokenauth_wait *tokenauth_check(struct worker *w, const struct db_config *db,
                                       const char *token, const char *addr, struct client *c,
                                       tokenauth_done_fn done);

/* Abandons a check (the client left); NULL is fine. */
void tokenauth_cancel(struct tokenauth_wait *t);

/* Frees the cache and abandons requests in flight (at exit). */
void tokenauth_free_all(struct worker *w);

/* Requests made to the workspace and answers served from the cache (admin console, tests). */
void tokenauth_counts(const struct worker *w, uint64_t *requests, uint64_t *cache_hits);

#endif
