/* poolmode.h: what differs between session and transaction pooling, as a small table of
 * operations: session.c holds session pooling's, pipeline.c transaction pooling's. The rest of
 * the proxy asks the pool's table instead of testing the mode. */
#ifndef LAKEPROXY_POOLMODE_H
#define LAKEPROXY_POOLMODE_H

#include <stdbool.h>
#include <stdint.h>

#include "objects.h"
#include "relay.h"

struct pool_mode_ops {
    const char *name; /* as in pool.mode and SHOW POOLS */
    /* Transaction pooling: a server goes back to the pool at each idle ReadyForQuery, a login
     * needs no server of its own, and session state a client leaves retires its server. */
    bool shares_servers;
    /* Client -> server: the verdict on one client message (its bookkeeping done; messages it
     * rewrites are written to the server here, verdict RV_DROP); *err is set with RV_ERROR. */
    enum relay_verdict (*client_msg)(struct client *c, uint8_t type, uint32_t len,
                                     const uint8_t *body, const char **err);
    /* Server -> client, every type but 'Z' and 'S': the verdict on one server message. */
    enum relay_verdict (*server_msg)(struct server *s, uint8_t type, uint32_t len,
                                     const uint8_t *body);
    /* A ReadyForQuery arrived: forgets what it answers. True when made-up replies follow,
     * which the caller emits after forwarding it (pipeline_forward_then_fakes). */
    bool (*ready)(struct server *s);
};

extern const struct pool_mode_ops pool_mode_session, pool_mode_transaction;

/* The operations of database d's pool.mode. */
static inline const struct pool_mode_ops *pool_mode_for(const struct db_config *d)
{
    return d->pool.mode == POOL_TRANSACTION ? &pool_mode_transaction : &pool_mode_session;
}

/* The operations of pool p's mode (a reload may change it: asked each time). */
static inline const struct pool_mode_ops *pool_mode_of(const struct pool *p)
{
    return pool_mode_for(p->db);
}

#endif
