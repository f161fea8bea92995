/* proto.c: PostgreSQL v3 message codec: framing checks, startup packets, builders and parsers. */
#include "proto.h"

#include <string.h>

enum proto_status proto_check_header(const uint8_t hdr[5], size_t max_size, uint8_t *type,
                                     uint32_t *body_len, const char **err)
{
    struct rd r;
    uint32_t len;
    rd_init(&r, hdr + 1, 4);
    rd_u32(&r, &len);
    *type = hdr[0];
    if (len < 4 || len > INT32_MAX) {
        *err = "invalid message length";
        return PROTO_BAD;
    }
    if ((size_t)len + 1 > max_size) {
        *err = "message exceeds limits.max_message_size";
        return PROTO_BAD;
    }
    *body_len = len - 4;
    return PROTO_OK;
}

enum proto_status proto_check_startup_len(const uint8_t hdr[4], uint32_t *len, const char **err)
{
    struct rd r;
    rd_init(&r, hdr, 4);
    rd_u32(&r, len);
    if (*len < 8 || *len > PROTO_MAX_STARTUP) {
        *err = "invalid length of startup packet";
        return PROTO_BAD;
    }
    return PROTO_OK;
}

/* Reads name/value pairs up to the terminating empty name. */
static bool parse_startup_params(struct rd *r, struct startup *out, const char **err)
{
    for (;;) {
        const char *name, *value;
        if (!rd_str(r, &name)) {
            *err = "invalid startup packet layout: expected terminator as last byte";
            return false;
        }
        if (name[0] == '\0')
            break;
        if (!rd_str(r, &value)) {
            *err = "invalid startup packet layout: parameter without a value";
            return false;
        }
        if (out->n_params == PROTO_MAX_STARTUP_PARAMS) {
            *err = "too many startup parameters";
            return false;
        }
        out->params[out->n_params].name = name;
        out->params[out->n_params].value = value;
        out->n_params++;
    }
    if (r->left != 0) {
        *err = "invalid startup packet layout: bytes after the terminator";
        return false;
    }
    return true;
}

bool proto_parse_startup(const uint8_t *p, size_t len, struct startup *out, const char **err)
{
    struct rd r;
    uint32_t plen;
    memset(out, 0, sizeof(*out));
    rd_init(&r, p, len);
    if (!rd_u32(&r, &plen) || plen != len || !rd_u32(&r, &out->version)) {
        *err = "invalid length of startup packet";
        return false;
    }
    switch (out->version) {
    case PROTO_SSL_REQUEST:
        out->kind = STARTUP_SSL;
        return len == 8 || (*err = "invalid length of SSLRequest", false);
    case PROTO_GSSENC_REQUEST:
        out->kind = STARTUP_GSSENC;
        return len == 8 || (*err = "invalid length of GSSENCRequest", false);
    case PROTO_CANCEL_REQUEST:
        out->kind = STARTUP_CANCEL;
        if (len != 16) {
            *err = "invalid length of CancelRequest";
            return false;
        }
        return rd_u32(&r, &out->cancel_pid) && rd_u32(&r, &out->cancel_key);
    }
    if (out->version >> 16 != 3) {
        out->kind = STARTUP_BAD_VERSION;
        return true;
    }
    out->kind = STARTUP_V3;
    return parse_startup_params(&r, out, err);
}

const char *startup_get(const struct startup *s, const char *name)
{
    for (size_t i = 0; i < s->n_params; i++)
        if (strcmp(s->params[i].name, name) == 0)
            return s->params[i].value;
    return NULL;
}

void proto_error_hint(struct buf *b, const char *severity, const char *sqlstate, const char *msg,
                      const char *hint)
{
    buf_msg_start(b, 'E');
    buf_put_u8(b, 'S');
    buf_put_str(b, severity);
    buf_put_u8(b, 'V');
    buf_put_str(b, severity);
    buf_put_u8(b, 'C');
    buf_put_str(b, sqlstate);
    buf_put_u8(b, 'M');
    buf_put_str(b, msg);
    if (hint) {
        buf_put_u8(b, 'H');
        buf_put_str(b, hint);
    }
    buf_put_u8(b, 0);
    buf_msg_finish(b);
}

void proto_error(struct buf *b, const char *severity, const char *sqlstate, const char *msg)
{
    proto_error_hint(b, severity, sqlstate, msg, NULL);
}

void proto_auth(struct buf *b, uint32_t code, const void *data, size_t len)
{
    buf_msg_start(b, 'R');
    buf_put_u32(b, code);
    buf_put_bytes(b, data, len);
    buf_msg_finish(b);
}

void proto_param_status(struct buf *b, const char *name, const char *value)
{
    buf_msg_start(b, 'S');
    buf_put_str(b, name);
    buf_put_str(b, value);
    buf_msg_finish(b);
}

void proto_backend_key(struct buf *b, uint32_t pid, uint32_t key)
{
    buf_msg_start(b, 'K');
    buf_put_u32(b, pid);
    buf_put_u32(b, key);
    buf_msg_finish(b);
}

void proto_ready(struct buf *b, char status)
{
    buf_msg_start(b, 'Z');
    buf_put_u8(b, (uint8_t)status);
    buf_msg_finish(b);
}

void proto_query(struct buf *b, const char *sql)
{
    buf_msg_start(b, 'Q');
    buf_put_str(b, sql);
    buf_msg_finish(b);
}

void proto_close(struct buf *b, char kind, const char *name)
{
    buf_msg_start(b, 'C');
    buf_put_u8(b, (uint8_t)kind);
    buf_put_str(b, name);
    buf_msg_finish(b);
}

void proto_password(struct buf *b, const char *password)
{
    buf_msg_start(b, 'p');
    buf_put_str(b, password);
    buf_msg_finish(b);
}

void proto_sasl_initial(struct buf *b, const char *mech, const void *data, size_t len)
{
    buf_msg_start(b, 'p');
    buf_put_str(b, mech);
    buf_put_u32(b, (uint32_t)len);
    buf_put_bytes(b, data, len);
    buf_msg_finish(b);
}

void proto_sasl_response(struct buf *b, const void *data, size_t len)
{
    buf_msg_start(b, 'p');
    buf_put_bytes(b, data, len);
    buf_msg_finish(b);
}

void proto_cancel_request(struct buf *b, uint32_t pid, uint32_t key)
{
    buf_msg_start(b, 0);
    buf_put_u32(b, PROTO_CANCEL_REQUEST);
    buf_put_u32(b, pid);
    buf_put_u32(b, key);
    buf_msg_finish(b);
}

void proto_ssl_request(struct buf *b)
{
    buf_msg_start(b, 0);
    buf_put_u32(b, PROTO_SSL_REQUEST);
    buf_msg_finish(b);
}

void proto_terminate(struct buf *b)
{
    buf_msg_start(b, 'X');
    buf_msg_finish(b);
}

void proto_negotiate_version(struct buf *b, uint32_t minor, const char *const *opts, size_t n)
{
    buf_msg_start(b, 'v');
    buf_put_u32(b, (3u << 16) | minor);
    buf_put_u32(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        buf_put_str(b, opts[i]);
    buf_msg_finish(b);
}

void proto_startup(struct buf *b, const struct startup_param *params, size_t n)
{
    buf_msg_start(b, 0);
    buf_put_u32(b, PROTO_V3);
    for (size_t i = 0; i < n; i++) {
        buf_put_str(b, params[i].name);
        buf_put_str(b, params[i].value);
    }
    buf_put_u8(b, 0);
    buf_msg_finish(b);
}

bool proto_parse_error(const uint8_t *body, size_t len, struct pg_error *out)
{
    struct rd r;
    memset(out, 0, sizeof(*out));
    rd_init(&r, body, len);
    for (;;) {
        uint8_t field;
        const char *value;
        if (!rd_u8(&r, &field))
            return false;
        if (field == 0)
            return out->sqlstate && out->message;
        if (!rd_str(&r, &value))
            return false;
        if (field == 'V' || (field == 'S' && !out->severity))
            out->severity = value;
        else if (field == 'C')
            out->sqlstate = value;
        else if (field == 'M')
            out->message = value;
    }
}

bool proto_parse_param_status(const uint8_t *body, size_t len, const char **name,
                              const char **value)
{
    struct rd r;
    rd_init(&r, body, len);
    return rd_str(&r, name) && rd_str(&r, value) && r.left == 0;
}

bool proto_parse_backend_key(const uint8_t *body, size_t len, uint32_t *pid, uint32_t *key)
{
    struct rd r;
    rd_init(&r, body, len);
    return rd_u32(&r, pid) && rd_u32(&r, key) && r.left == 0;
}

bool proto_parse_ready(const uint8_t *body, size_t len, char *status)
{
    if (len != 1 || (body[0] != 'I' && body[0] != 'T' && body[0] != 'E'))
        return false;
    *status = (char)body[0];
    return true;
}

bool proto_parse_auth(const uint8_t *body, size_t len, uint32_t *code, const uint8_t **data,
                      size_t *data_len)
{
    struct rd r;
    rd_init(&r, body, len);
    if (!rd_u32(&r, code))
        return false;
    *data = r.p;
    *data_len = r.left;
    return true;
}

bool proto_parse_sasl_initial(const uint8_t *body, size_t len, const char **mech,
                              const uint8_t **data, size_t *data_len)
{
    struct rd r;
    int32_t n;
    rd_init(&r, body, len);
    if (!rd_str(&r, mech) || !rd_i32(&r, &n))
        return false;
    if (n == -1) {
        *data = NULL;
        *data_len = 0;
        return r.left == 0;
    }
    if (n < 0 || (size_t)n != r.left)
        return false;
    return rd_bytes(&r, (size_t)n, data) && ((*data_len = (size_t)n), true);
}

bool proto_sasl_offers(const uint8_t *data, size_t len, const char *mech)
{
    struct rd r;
    const char *m;
    rd_init(&r, data, len);
    while (rd_str(&r, &m) && m[0] != '\0')
        if (strcmp(m, mech) == 0)
            return true;
    return false;
}
