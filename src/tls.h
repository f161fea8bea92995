/* tls.h: OpenSSL contexts for both sides: terminating client TLS, and TLS towards servers. */
#ifndef LAKEPROXY_TLS_H
#define LAKEPROXY_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "config.h"
#include "objects.h"

/* A context that accepts client TLS with listen.tls of cfg: certificate and key (PEM files),
 * and with client_ca, verification of the certificates clients present (required with
 * client_cert: require). NULL and err on failure. */
SSL_CTX *tls_accept_ctx(const struct config *cfg, char *err, size_t errsz);

/* Copies the subject fields of the verified certificate the peer of ssl presented ("CN" ->
 * value, by OpenSSL short name) into out; none when it presented none. True when it presented
 * one that verified. */
bool tls_peer_subject(SSL *ssl, struct param_set *out);

/* The tls-server-end-point channel binding data of ssl's own certificate (RFC 5929): its hash
 * by the certificate's signature hash (SHA-256 for MD5 and SHA-1), in out (max bytes); false
 * when there is none or it cannot be made. */
bool tls_server_end_point(SSL *ssl, uint8_t *out, size_t max, size_t *len);

/* Does the certificate the client of ssl presented (with the chain it sent) verify against the
 * client CAs and CRLs of ctx, a context of a newer configuration than ssl's? False when it
 * presented none, or ctx is NULL. */
bool tls_peer_verifies_in(SSL *ssl, SSL_CTX *ctx);

/* A context for connecting to servers in mode (NULL for TLS_DISABLE or on failure, with err). */
SSL_CTX *tls_connect_ctx(enum tls_mode mode, const char *ca_file, char *err, size_t errsz);

/* A new SSL for connecting to host: SNI, and host name verification for verify-full. */
SSL *tls_connect_ssl(SSL_CTX *ctx, enum tls_mode mode, const char *host);

/* The last OpenSSL error as text (for log lines). */
const char *tls_last_error(char *out, size_t outsz);

#endif
