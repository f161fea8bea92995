/* rawproto.h: raw-socket clients for protocol tests (byte-exact messages libpq would not send). */
#ifndef LAKEPROXY_TEST_RAWPROTO_H
#define LAKEPROXY_TEST_RAWPROTO_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

/* Logs in over a raw socket (startup, SCRAM or cleartext as asked) and reads the answer up
 * to ReadyForQuery or an ErrorResponse. Returns true on ReadyForQuery; on an error fills
 * sqlstate (6 bytes) and msg. For checking exact SQLSTATEs of login failures, which libpq
 * does not expose. */
bool raw_login(int port, const char *user, const char *password, const char *db, char sqlstate[6],
               char *msg, size_t msgsz);

/* The salt (base64, into out of outsz bytes) that the SCRAM exchange of a login as user to
 * db offers; false when no SCRAM exchange starts. */
bool raw_scram_salt(int port, const char *user, const char *db, char *out, size_t outsz);

/* A raw socket logged in as a trust user (no password), after ReadyForQuery. */
int raw_session(int port, const char *user, const char *db);

/* raw_session with application_name app as a startup parameter (NULL: none). */
int raw_session_app(int port, const char *user, const char *db, const char *app);

/* Writes b's messages to fd and empties b; false when they were not all written. */
bool raw_send(int fd, struct buf *b);

/* Appends extended-protocol messages to b: Parse of sql as name (no parameter types), Bind
 * of portal to statement stmt (no parameters, text results), Execute of portal (all rows), and
 * a message with an empty body (Sync 'S', Flush 'H', CopyDone 'c'). */
void raw_put_parse(struct buf *b, const char *name, const char *sql);
void raw_put_bind(struct buf *b, const char *portal, const char *stmt);
void raw_put_execute(struct buf *b, const char *portal);
/* Execute of portal, at most max_rows rows (0: all). */
void raw_put_execute_n(struct buf *b, const char *portal, uint32_t max_rows);
/* Describe of a statement (kind 'S') or portal ('P'). */
void raw_put_describe(struct buf *b, char kind, const char *name);
/* Close of a statement (kind 'S') or portal ('P'). */
void raw_put_close(struct buf *b, char kind, const char *name);
void raw_put_empty(struct buf *b, char type);
/* A simple Query of sql. */
void raw_put_query(struct buf *b, const char *sql);
/* Parse of sql as the unnamed statement, its Bind to the unnamed portal, and its Execute. */
void raw_put_pbe(struct buf *b, const char *sql);
/* A CopyData message carrying the n bytes at p. */
void raw_put_copy_data(struct buf *b, const void *p, size_t n);
/* A CopyData message carrying the string s (without its NUL). */
void raw_put_copy_str(struct buf *b, const char *s);

/* Reads fd's replies until ready ReadyForQuery came (or none for 5 s), counting the
 * ErrorResponses into *errors and the DataRows into *rows: how many ReadyForQuery came. */
int raw_count_replies(int fd, int ready, int *errors, int *rows);

/* Sends a simple Query on a raw socket. */
void raw_query(int fd, const char *sql);

/* Reads until an ErrorResponse and returns its SQLSTATE ("" if none came within 5 s). */
const char *raw_expect_error(int fd);

/* A connected blocking socket to 127.0.0.1:port, or -1. */
int raw_connect(int port);

/* The one-byte answer to an SSLRequest or GSSENCRequest ('S', 'N', or 'E' for an error), or
 * -1 when none comes within 3 s. */
int raw_answer_byte(int fd);

/* A raw session and the BackendKeyData lakeproxy gave it. */
struct rawsess {
    int fd;
    uint32_t pid, key;
};

/* Logs carol (trust) in to db on lakeproxy at port as a raw session, with its pid and key;
 * false (no assert: threads use it) on failure. */
bool raw_keyed_try(int port, struct rawsess *s, const char *db);

/* Sends a CancelRequest for pid/key on a new connection to port and returns its descriptor
 * at once (the caller closes it), or -1: the cancel races what the session sends next. */
int raw_cancel_async(int port, uint32_t pid, uint32_t key);

/* Waits at most timeout_s for the peer to close fd (what comes is read and dropped): the
 * seconds it took, -1 if still open. */
double raw_wait_eof(int fd, double timeout_s);

/* Sends the n simple Queries of sqls in one write; false when not all were written. */
bool raw_send_queries(int fd, const char *const *sqls, int n);

/* Reads fd's replies until `ready` ReadyForQuery: the SQLSTATEs of its errors ("|"-joined,
 * into states) and its DataRows' first values ("|"-joined, into rows). False on a timeout. */
bool raw_replies(int fd, int ready, char *states, size_t statesz, char *rows, size_t rowsz,
                 int timeout_ms);

/* Sends a StartupMessage for user and database db over TLS session ssl: false when
 * SSL_write did not take it whole. */
bool raw_ssl_send_startup(SSL *ssl, const char *user, const char *db);

/* A TLS handshake on fd (after its SSLRequest got 'S'), with client certificate crt and key
 * (NULL: none), reads timing out after timeout_s: the session, or NULL when the handshake
 * failed. raw_ssl_close frees it. */
SSL *raw_ssl_connect(int fd, const char *crt, const char *key, int timeout_s);
void raw_ssl_close(SSL *ssl);

/* Reads one message from TLS session ssl: its type, or -1. An ErrorResponse's SQLSTATE goes
 * to state (when not NULL); *first_int (when not NULL) is the body's first 4 bytes (an
 * authentication request's code), -1 when shorter. The rest of the body is skipped. */
int raw_ssl_read_msg(SSL *ssl, char state[6], int32_t *first_int);

/* Sends a StartupMessage for user and database db. */
void raw_send_startup(int fd, const char *user, const char *db);

/* Sends a SASLResponse carrying text (a SCRAM client-final). */
void raw_send_sasl_response(int fd, const char *text);

/* Sends the 8-byte request of code (PROTO_SSL_REQUEST, PROTO_GSSENC_REQUEST ...). */
void raw_send_request(int fd, uint32_t code);

/* A connection to port whose SSLRequest lakeproxy answered 'S' (asserted): the descriptor,
 * the TLS handshake not begun. */
int raw_connect_tls_accepted(int port);

/* Reads exactly n bytes into p, each wait for more at most timeout_ms: false on EOF, error
 * or timeout. */
bool raw_read_full(int fd, unsigned char *p, size_t n, int timeout_ms);

/* The big-endian 32-bit word at p (a protocol length or integer). */
uint32_t raw_be32(const unsigned char *p);

/* Reads one typed message into buf (at most bufsz bytes of body); returns its type, or -1 on
 * EOF, error or timeout (timeout_ms). *len gets the body length. */
int raw_read_msg(int fd, unsigned char *buf, size_t bufsz, size_t *len, int timeout_ms);

/* The SQLSTATE field of an ErrorResponse body, "" if none (static buffer). */
const char *raw_error_sqlstate(const unsigned char *body, size_t len);

#endif
