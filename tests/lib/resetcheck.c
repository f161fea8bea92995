/* resetcheck.c: RESET returns a client to its startup settings (resetcheck.h). */
#include "resetcheck.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static PGconn *open_startup_client(const struct proxy *p)
{
    PGconn *c = proxy_connect(p, "alice", "alice-secret", "app",
                              "options='-c DateStyle=ISO,DMY -c TimeZone=Asia/Tokyo'");
    cr_assert(PQstatus(c) == CONNECTION_OK, "login failed: %s", PQerrorMessage(c));
    return c;
}

/* 01/02/2024 is February 1st under DMY; 10:00 UTC is 19:00 in Tokyo. */
static const char reading_sql[] = "SELECT '01/02/2024'::date || ' ' || "
                                  "('2024-01-01 10:00+00'::timestamptz)::timestamp";

/* c reads dates and times as its settings say, and was told them. */
static void expect_reading(PGconn *c, const char *datestyle, const char *tz, const char *want,
                           const char *after)
{
    char *v = query_value(c, reading_sql);
    cr_expect_str_eq(v ? v : "(no row)", want, "after %s: read %s, not %s", after,
                     v ? v : "(no row)", want);
    free(v);
    const char *ds = PQparameterStatus(c, "DateStyle"), *zone = PQparameterStatus(c, "TimeZone");
    cr_expect_str_eq(ds ? ds : "(none)", datestyle,
                     "DateStyle the client was told after %s: %s, not %s", after,
                     ds ? ds : "(none)", datestyle);
    cr_expect_str_eq(zone ? zone : "(none)", tz,
                     "TimeZone the client was told after %s: %s, not %s", after,
                     zone ? zone : "(none)", tz);
}

static void run(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

void expect_resets_return_to_startup_values(const struct proxy *p, bool session)
{
    static const char *const resets[] = {
        "RESET DateStyle; RESET TimeZone",
        "SET DateStyle TO DEFAULT; SET TIME ZONE DEFAULT",
        "RESET ALL",
        "DISCARD ALL",
    };
    static const char startup[] = "2024-02-01 2024-01-01 19:00:00";
    PGconn *direct = pg_admin("lp_test"); /* the server's default TimeZone (UTC or Etc/UTC) */
    char server_zone[64];
    const char *zone = PQparameterStatus(direct, "TimeZone");
    snprintf(server_zone, sizeof(server_zone), "%s", zone ? zone : "(none)");
    PQfinish(direct);
    cr_assert(strstr(server_zone, "UTC"), "the test server's TimeZone is %s", server_zone);
    for (size_t i = 0; i < sizeof(resets) / sizeof(resets[0]); i++) {
        PGconn *c = open_startup_client(p);
        expect_reading(c, "ISO, DMY", "Asia/Tokyo", startup, "login");
        char *pid = query_value(c, "SELECT pg_backend_pid()::text");
        run(c, "SET DateStyle = 'German'");
        run(c, "SET TimeZone = 'UTC'");
        run(c, resets[i]);
        expect_reading(c, "ISO, DMY", "Asia/Tokyo", startup, resets[i]);
        /* session pooling: the client's own server; transaction pooling: the pool's one
         * (which a DISCARD ALL retires: its prepared statements are in doubt) */
        if (session || strcmp(resets[i], "DISCARD ALL") != 0)
            EXPECT_QUERY_VALUE(c, "SELECT pg_backend_pid()::text", pid,
                               "the server was kept (closing it would lose a session) after %s",
                               resets[i]);
        free(pid);
        PGconn *other = proxy_connect(p, "alice", "alice-secret", "app", NULL);
        expect_reading(other, "ISO, MDY", server_zone, "2024-01-02 2024-01-01 10:00:00",
                       "another client's RESET (a client of the server's defaults)");
        PQfinish(other);
        expect_reading(c, "ISO, DMY", "Asia/Tokyo", startup, resets[i]);
        PQfinish(c);
    }
    PGconn *c = open_startup_client(p);
    run(c, "SET DateStyle = 'ISO, MDY'"); /* the server's default, by a SET */
    char set_zone[128];
    snprintf(set_zone, sizeof(set_zone), "SET TimeZone = '%s'", server_zone);
    run(c, set_zone);
    expect_reading(c, "ISO, MDY", server_zone, "2024-01-02 2024-01-01 10:00:00",
                   "a SET to the server's defaults");
    EXPECT_QUERY_VALUE(c, "SELECT 'another transaction'", "another transaction", "(idle)");
    /* the server's values do not change: PostgreSQL reports nothing */
    run(c, "RESET DateStyle");
    run(c, "RESET TimeZone");
    expect_reading(c, "ISO, DMY", "Asia/Tokyo", startup,
                   "a RESET of a setting SET to the server's default");
    run(c, "SET DateStyle = 'German'");
    run(c, "BEGIN");
    run(c, "RESET DateStyle");
    run(c, "ROLLBACK");
    EXPECT_QUERY_VALUE(c, "SHOW DateStyle", "German, DMY", "a RESET rolled back");
    PQfinish(c);
}
