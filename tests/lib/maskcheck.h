/* maskcheck.h: column-masking test helpers: secret scanning and bypass attempts. */
#ifndef LAKEPROXY_TEST_MASKCHECK_H
#define LAKEPROXY_TEST_MASKCHECK_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

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

/* Runs sql as the database owner, straight on PostgreSQL (not through lakeproxy): objects a
 * test needs; fails the test when it fails. */
void mask_admin_sql(const char *sql);

/* Appends a Bind of portal to stmt, no parameters, result formats fmts[0..n). */
void mask_put_bind_fmt(struct buf *b, const char *portal, const char *stmt, const int16_t *fmts,
                       uint16_t n);

/* Do len bytes at p hold one of setup.sql's real salaries as an int4 binary value? */
bool mask_has_binary_salary(const unsigned char *p, size_t len);

#endif
