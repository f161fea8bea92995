/* proto.h: PostgreSQL v3 wire-protocol codec. Pure functions on byte ranges and bufs: framing,
 * startup packets, authentication requests, errors, parameter status, ready-for-query. */
#ifndef LAKEPROXY_PROTO_H
#define LAKEPROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define PROTO_V3 196608u /* 3.0 */
#define PROTO_SSL_REQUEST 80877103u
#define PROTO_GSSENC_REQUEST 80877104u
#define PROTO_CANCEL_REQUEST 80877102u
#define PROTO_MAX_STARTUP 10000u /* the server's own limit on a startup packet */
#define PROTO_MAX_STARTUP_PARAMS 64

/* Authentication request codes (AuthenticationXXX 'R' messages). */
enum {
    AUTH_REQ_OK = 0,
    AUTH_REQ_CLEARTEXT = 3,
    AUTH_REQ_MD5 = 5,
    AUTH_REQ_SASL = 10,
    AUTH_REQ_SASL_CONTINUE = 11,
    AUTH_REQ_SASL_FINAL = 12,
};

enum proto_status { PROTO_OK = 0, PROTO_INCOMPLETE, PROTO_BAD };

/* Checks a typed message header: 1 type byte + int32 length (which counts itself).
 * Returns PROTO_BAD for a length below 4 or a message above max_size (whole message);
 * *err then says which. On success *body_len is the length minus 4. */
enum proto_status proto_check_header(const uint8_t hdr[5], size_t max_size, uint8_t *type,
                                     uint32_t *body_len, const char **err);

enum startup_kind {
    STARTUP_V3,
    STARTUP_SSL,
    STARTUP_GSSENC,
    STARTUP_CANCEL,
    STARTUP_BAD_VERSION,
};

struct startup_param {
    const char *name;
    const char *value;
};

/* A decoded startup-phase packet; strings point into the packet passed to proto_parse_startup. */
struct startup {
    enum startup_kind kind;
    uint32_t version;
    uint32_t cancel_pid;
    uint32_t cancel_key;
    struct startup_param params[PROTO_MAX_STARTUP_PARAMS];
    size_t n_params;
};

/* Checks the int32 length at the front of a startup packet: PROTO_BAD below 8 or above
 * PROTO_MAX_STARTUP. */
enum proto_status proto_check_startup_len(const uint8_t hdr[4], uint32_t *len, const char **err);

/* Parses a whole startup packet (len bytes including the length word). */
bool proto_parse_startup(const uint8_t *p, size_t len, struct startup *out, const char **err);

/* The value of a startup parameter, or NULL. */
const char *startup_get(const struct startup *s, const char *name);

/* ---- builders: each appends one whole message to b ---- */
void proto_error(struct buf *b, const char *severity, const char *sqlstate, const char *msg);
void proto_error_hint(struct buf *b, const char *severity, const char *sqlstate, const char *msg,
                      const char *hint);
void proto_auth(struct buf *b, uint32_t code, const void *data, size_t len);
void proto_param_status(struct buf *b, const char *name, const char *value);
void proto_backend_key(struct buf *b, uint32_t pid, uint32_t key);
void proto_ready(struct buf *b, char status);
void proto_query(struct buf *b, const char *sql);
/* Close of statement ('S') or portal ('P') name, without a Sync: its CloseComplete comes
 * ahead of the replies to whatever follows. */
void proto_close(struct buf *b, char kind, const char *name);
void proto_password(struct buf *b, const char *password);
void proto_sasl_initial(struct buf *b, const char *mech, const void *data, size_t len);
void proto_sasl_response(struct buf *b, const void *data, size_t len);
void proto_cancel_request(struct buf *b, uint32_t pid, uint32_t key);
void proto_ssl_request(struct buf *b);
void proto_terminate(struct buf *b);
/* NegotiateProtocolVersion: newest minor version supported, and the options not recognised. */
void proto_negotiate_version(struct buf *b, uint32_t minor, const char *const *opts, size_t n);
/* StartupMessage v3 with name/value pairs. */
void proto_startup(struct buf *b, const struct startup_param *params, size_t n);

/* ---- parsers of message bodies (after type and length) ---- */
struct pg_error {
    const char *severity; /* "ERROR", "FATAL", ... (non-localised V field when present) */
    const char *sqlstate;
    const char *message;
};

bool proto_parse_error(const uint8_t *body, size_t len, struct pg_error *out);
bool proto_parse_param_status(const uint8_t *body, size_t len, const char **name,
                              const char **value);
bool proto_parse_backend_key(const uint8_t *body, size_t len, uint32_t *pid, uint32_t *key);
bool proto_parse_ready(const uint8_t *body, size_t len, char *status);
/* An 'R' message: code and the bytes after it. */
bool proto_parse_auth(const uint8_t *body, size_t len, uint32_t *code, const uint8_t **data,
                      size_t *data_len);
/* A 'p' SASLInitialResponse: mechanism and initial response (-1 length means none). */
bool proto_parse_sasl_initial(const uint8_t *body, size_t len, const char **mech,
                              const uint8_t **data, size_t *data_len);
/* Does the SASL mechanism list in an AuthenticationSASL body offer mech? */
bool proto_sasl_offers(const uint8_t *data, size_t len, const char *mech);

#endif
