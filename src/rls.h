/* rls.h: row-level-security attributes. From a client's authenticated identity and the rls:
 * policy, builds the statement that sets them on a server connection before any of the
 * client's own messages run there: pg_catalog.set_config(name, value, false) for every
 * configured attribute (and the role, with switch_role), values passed as Bind parameters so
 * that no value is ever SQL. Pure: no I/O. */
#ifndef LAKEPROXY_RLS_H
#define LAKEPROXY_RLS_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "objects.h"

/* Who the client is, as far as attributes go. */
struct rls_identity {
    const char *user;                 /* authenticated user name */
    const char *database;             /* database entry it connected to */
    const char *client_addr;          /* its IP address */
    const char *application_name;     /* as it set it (NULL: not set) */
    const struct param_set *options;  /* client-settable values: "<prefix>.<name>" -> value */
    const struct param_set *cert;     /* TLS client certificate subject: "CN" -> value */
    const struct string_list *groups; /* groups from outside the config (a Databricks token) */
};

/* One injected setting. */
struct rls_setting {
    char name[112]; /* "app.tenant_id", or "role" */
    const char *value;
};

#define RLS_MAX_SETTINGS 64

/* The role identity id assumes under rls.switch_role (NULL when it is off, or none is
 * configured for it). */
const char *rls_role(const struct config *cfg, const struct rls_identity *id);

/* Resolves the settings for identity id under cfg's policy into out (at most
 * RLS_MAX_SETTINGS; the role first when switch_role is on). A missing value is "" (a policy
 * comparing with it matches nothing). False, with err, when the client cannot be served:
 * switch_role is on and no role is configured for it. */
bool rls_resolve(const struct config *cfg, const struct rls_identity *id, struct rls_setting *out,
                 size_t *n, char *err, size_t errsz);

/* Appends Parse/Bind/Execute of "SELECT pg_catalog.set_config($1, $2, false), ..." for the
 * settings to b, then of "DISCARD SEQUENCES" (the previous client's currval() and lastval()
 * are not this one's to read), a Close of the unnamed statement they used and a Sync. The
 * server answers with one ReadyForQuery. */
void rls_build_prefix(const struct rls_setting *s, size_t n, struct buf *b);

/* Is name (a startup option setting) one the client may set: "<prefix>.<attr>" for an
 * attribute of source option? */
bool rls_client_settable(const struct config *cfg, const char *name);

#endif
