/* admin.h: the admin console (virtual database "lakeproxy"). */
#ifndef LAKEPROXY_ADMIN_H
#define LAKEPROXY_ADMIN_H

#include "objects.h"

/* The name of the virtual database that is the admin console. */
#define ADMIN_DATABASE "lakeproxy"

/* An authenticated admin user: finish the login and enter CL_ADMIN. */
void admin_login(struct client *c);

/* Answers the complete commands waiting in c's input. */
void admin_read(struct client *c);

#endif
