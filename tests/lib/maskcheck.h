/* maskcheck.h: column-masking test helpers: secret scanning and bypass attempts. */
#ifndef LAKEPROXY_TEST_MASKCHECK_H
#define LAKEPROXY_TEST_MASKCHECK_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

struct proxy;

/* Column masking tests (tests/lib/setup.sql's customers): the first value no masked client
 * may ever receive found in len bytes at p, or NULL. */
const char *mask_find_secret(const char *p, size_t len);

/* Expects that no value or error message of r (the answer to sql) holds a secret. */
void mask_expect_no_secret(const PGresult *r, const char *sql);

/* Logs in to database app through p as user (password "pw"), notices silenced. */
PGconn *mask_login(const struct proxy *p, const char *user);

/* A statement a masked client tries, and whether it must be refused (else run masked). */
struct mask_attempt_case {
    const char *sql;
    bool refused;
};

/* Runs each of the n cases as user, in the simple and the extended protocol: a refusal must
 * be 42501 (or close the connection), no answer (COPY data included) may hold a secret; then
 * expects the connection still usable. */
void mask_attempts_run(const struct proxy *p, const char *user,
                       const struct mask_attempt_case *cases, size_t n);

#endif
