/* credentials.h: the password the proxy logs in to a server with. A static password from the
 * YAML, or a rotating token (Lakebase OAuth) from a provider: a token file, a command, or the
 * Databricks workspace itself. Tokens are fetched ahead of expiry in the background, on the
 * event loop; pools hear when a fetch ends (pool_credential_event). */
#ifndef LAKEPROXY_CREDENTIALS_H
#define LAKEPROXY_CREDENTIALS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "config.h"
#include "list.h"

struct worker;
struct http_request;
struct command;

/* One rotating credential per database entry with a non-static provider (worker->creds). */
struct credential {
    struct list node;
    struct worker *w;
    const struct db_config *db; /* the entry in the running configuration */
    char *token;                /* current token, NULL before the first success; wiped */
    time_t obtained, expires;   /* expires 0: the provider did not say */
    char *prev_token;           /* the token before it, while a server may refuse the new one */
    time_t prev_expires;        /* ... (wiped) */
    int fallbacks;              /* to it since a new token last logged in */
    time_t refresh_at;          /* next planned refresh, 0 for none */
    unsigned generation;        /* bumped with every new token */
    char fingerprint[9];        /* first 8 hex digits of the token's SHA-256 */
    struct event *timer;        /* next refresh, retry or file check */
    struct event *notify_ev;    /* tells the pools that a fetch ended */
    bool notify_ok;
    bool fetching;
    int failures;              /* consecutive failed fetches */
    time_t forced_at;          /* last refresh forced by a 28P01 */
    bool accepted;             /* a server took the current token (since it became current) */
    time_t last_attempt;       /* start of the last fetch */
    struct http_request *http; /* databricks: exchange in flight */
    struct command *cmd;       /* command: child in flight */
    SSL_CTX *tls;              /* databricks: verifies the workspace */
    char *oauth;               /* databricks: workspace OAuth token (wiped) */
    time_t oauth_expires;
    struct timespec file_mtime; /* file: what was last read */
    mode_t file_mode;
    ino_t file_ino;
    off_t file_size;
    uint64_t refreshes_ok, refreshes_failed;
    char last_error[256];
};

enum cred_status {
    CRED_READY,       /* a login can start now */
    CRED_PENDING,     /* a token is on its way: wait for pool_credential_event */
    CRED_UNAVAILABLE, /* no valid token and the last fetch failed: why says so */
};

/* Creates, keeps or replaces the credential of every database in w->cfg (at start and after
 * a reload: an unchanged provider keeps its token) and drops those of removed databases. */
void credentials_sync(struct worker *w);

/* Frees every credential (at exit). */
void credentials_free_all(struct worker *w);

/* Is database db's credential steady: a static password, or a valid token whose last refresh
 * did not fail? (Not during a provider outage: servers are then kept rather than replaced.)
 * No side effects (credentials_status may start a fetch). */
bool credentials_steady(struct worker *w, const struct db_config *db);

/* Can a server login for db start now? why (for CRED_UNAVAILABLE) names the provider and cause. */
enum cred_status credentials_status(struct worker *w, const struct db_config *db, char *why,
                                    size_t whysz);

/* The password to log in to db's server with now (NULL when none) and its generation. The
 * pointer is valid until control returns to the loop; callers copy what they keep. */
const char *credentials_current(struct worker *w, const struct db_config *db, unsigned *generation);

enum cred_reject {
    CRED_REJECT_RETRY, /* a newer token is at hand: retry the login now */
    CRED_REJECT_WAIT,  /* a refresh is on its way: pool_credential_event tells the outcome */
    CRED_REJECT_FINAL, /* nothing to refresh (static password, or a token refreshed a moment
                          ago that never logged in) */
};

/* The server refused the password of `generation` with 28P01: starts one immediate refresh
 * unless a newer token is already there. At most one per 5 s, unless the refused token had
 * logged in (revoked since): so each forced refresh after the first within 5 s follows a
 * login with the token the one before brought. */
enum cred_reject credentials_rejected(struct worker *w, const struct db_config *db,
                                      unsigned generation);

/* The server refused token `generation` (28P01), the current one, which came less than 5
 * minutes ago: if the token before it is still valid (a server may take a new token after a
 * while; Lakebase takes every token until it expires), it becomes the current one again (a
 * new generation), a refresh (a file: a new read) is tried 5 s later, and true is returned:
 * the login may be retried at once. At most 3 times until a new token logs in. */
bool credentials_fall_back(struct worker *w, const struct db_config *db, unsigned generation);

/* A server logged in with token `generation`: when it is the current one, the token before it
 * is no longer needed (wiped). */
void credentials_login_ok(struct worker *w, const struct db_config *db, unsigned generation);

/* The generation of db's current token (0 for a static password). */
unsigned credentials_generation(struct worker *w, const struct db_config *db);

/* Does c hold a token that has not expired at now? */
bool credentials_token_valid(const struct credential *c, time_t now);

/* The credential of db, NULL for a static password. */
const struct credential *credentials_find(const struct worker *w, const char *db_name);

/* "static", "file", "command" or "databricks". */
const char *credentials_provider_name(enum cred_provider p);

#endif
