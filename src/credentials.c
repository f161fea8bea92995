/* credentials.c: credential providers for server logins (static password for now). */
#include "credentials.h"

const char *credentials_current(const struct db_config *db) { return db->password; }
