/* credentials.h: the secret the proxy logs in to a server with. Today a static password;
 * the seam where rotating OAuth tokens (Lakebase) plug in. */
#ifndef LAKEPROXY_CREDENTIALS_H
#define LAKEPROXY_CREDENTIALS_H

#include "config.h"

/* The password to log in to db's server with now, or NULL when none is configured. The
 * pointer stays valid until the next call or a reload; callers copy what they keep. */
const char *credentials_current(const struct db_config *db);

#endif
