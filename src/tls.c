/* tls.c: OpenSSL context set-up for client-facing and server-facing TLS (TLS 1.2 or newer). */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "params.h"

const char *tls_last_error(char *out, size_t outsz)
{
    unsigned long e = ERR_get_error();
    if (!e)
        snprintf(out, outsz, "unknown TLS error");
    else
        ERR_error_string_n(e, out, outsz);
    ERR_clear_error();
    return out;
}

/* May OpenSSL open path (named `what` in the configuration)? Not when it is no regular file:
 * OpenSSL opens files blocking, and a FIFO would hold up the start or a reload for good. Nor,
 * when it holds a secret (a private key), when every user of the machine may open it, as
 * PostgreSQL refuses for its ssl_key_file. */
static bool tls_file_usable(const char *path, const char *what, bool secret, char *err,
                            size_t errsz)
{
    struct stat st;
    char why[512];
    if (stat(path, &st) != 0) {
        snprintf(err, errsz, "cannot load %s %s: %s", what, path, strerror(errno));
        return false;
    }
    if (config_file_refusal(path, &st, secret, why, sizeof(why))) {
        snprintf(err, errsz, "cannot load %s %s: it %s", what, path, why);
        return false;
    }
    return true;
}

/* Makes the handshake refuse a client certificate that the CRLs in path (PEM) revoke. */
static bool load_client_crl(SSL_CTX *ctx, const char *path, char *err, size_t errsz)
{
    char e[256];
    if (!tls_file_usable(path, "listen.tls.client_crl", false, err, errsz))
        return false;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    X509_LOOKUP *file = store ? X509_STORE_add_lookup(store, X509_LOOKUP_file()) : NULL;
    if (!file || X509_load_crl_file(file, path, X509_FILETYPE_PEM) < 1) {
        snprintf(err, errsz, "cannot load listen.tls.client_crl %s: %s", path,
                 tls_last_error(e, sizeof(e)));
        return false;
    }
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK); /* (the client's own certificate) */
    return true;
}

/* Verify client certificates against listen.tls.client_ca. */
static bool want_client_certs(SSL_CTX *ctx, const struct config *cfg, char *err, size_t errsz)
{
    char e[256];
    if (!tls_file_usable(cfg->tls_client_ca, "listen.tls.client_ca", false, err, errsz))
        return false;
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->tls_client_ca);
    if (!names || SSL_CTX_load_verify_locations(ctx, cfg->tls_client_ca, NULL) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        snprintf(err, errsz, "cannot load listen.tls.client_ca %s: %s", cfg->tls_client_ca,
                 tls_last_error(e, sizeof(e)));
        return false;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    if (cfg->tls_client_crl && !load_client_crl(ctx, cfg->tls_client_crl, err, errsz))
        return false;
    SSL_CTX_set_verify(
        ctx, SSL_VERIFY_PEER | (cfg->tls_client_cert == 1 ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
        NULL);
    return true;
}

SSL_CTX *tls_accept_ctx(const struct config *cfg, char *err, size_t errsz)
{
    const char *cert = cfg->tls_cert, *key = cfg->tls_key;
    char e[256];
    if (!tls_file_usable(cert, "listen.tls.cert", false, err, errsz) ||
        !tls_file_usable(key, "listen.tls.key", true, err, errsz))
        return NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errsz, "cannot create TLS context: %s", tls_last_error(e, sizeof(e)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errsz, "cannot load listen.tls.cert %s: %s", cert,
                 tls_last_error(e, sizeof(e)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errsz, "cannot load listen.tls.key %s: %s", key,
                 tls_last_error(e, sizeof(e)));
        goto fail;
    }
    if (cfg->tls_client_ca && !want_client_certs(ctx, cfg, err, errsz))
        goto fail;
    /* sessions are not resumed: each handshake verifies the client's certificate afresh */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *tls_connect_ctx(enum tls_mode mode, const char *ca_file, char *err, size_t errsz)
{
    char e[256];
    if (mode == TLS_DISABLE)
        return NULL;
    if (mode == TLS_VERIFY_FULL && ca_file &&
        !tls_file_usable(ca_file, "CA file", false, err, errsz))
        return NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errsz, "cannot create TLS context: %s", tls_last_error(e, sizeof(e)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* PostgreSQL never renegotiates; a server asking to (TLS 1.2) would leave SSL_write
       waiting to read, a write event that fires and cannot write (conn.c tls_write_out) */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    if (mode != TLS_VERIFY_FULL) {
        /* prefer/require encrypt without checking the certificate, as libpq does */
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        snprintf(err, errsz, "cannot load CA file %s: %s", ca_file ? ca_file : "(system)",
                 tls_last_error(e, sizeof(e)));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

SSL *tls_connect_ssl(SSL_CTX *ctx, enum tls_mode mode, const char *host)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    if (!is_ip) /* SNI carries names only */
        SSL_set_tlsext_host_name(ssl, host);
    if (mode != TLS_VERIFY_FULL)
        return ssl;
    int ok =
        is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) : SSL_set1_host(ssl, host);
    if (ok != 1) {
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

bool tls_server_end_point(SSL *ssl, uint8_t *out, size_t max, size_t *len)
{
    X509 *cert = ssl ? SSL_get_certificate(ssl) : NULL;
    int md_nid = NID_undef;
    unsigned n = 0;
    uint8_t md[EVP_MAX_MD_SIZE];
    if (!cert || !OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md_nid, NULL))
        return false;
    const EVP_MD *h =
        md_nid == NID_md5 || md_nid == NID_sha1 ? EVP_sha256() : EVP_get_digestbynid(md_nid);
    if (!h || !X509_digest(cert, h, md, &n) || n > max)
        return false;
    memcpy(out, md, n);
    *len = n;
    return true;
}

bool tls_peer_subject(SSL *ssl, struct param_set *out)
{
    X509 *peer = SSL_get1_peer_certificate(ssl);
    if (!peer)
        return false;
    bool verified = SSL_get_verify_result(ssl) == X509_V_OK;
    if (verified) {
        const X509_NAME *name = X509_get_subject_name(peer);
        for (int i = 0; i < X509_NAME_entry_count(name); i++) {
            const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
            int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
            unsigned char *utf8 = NULL;
            int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
            /* the first of a repeated field counts; text with NUL in it is not taken */
            if (nid != NID_undef && n >= 0 && strlen((char *)utf8) == (size_t)n &&
                !param_get(out, OBJ_nid2sn(nid)))
                param_put(out, OBJ_nid2sn(nid), (char *)utf8);
            OPENSSL_free(utf8);
        }
    }
    X509_free(peer);
    return verified;
}

bool tls_peer_verifies_in(SSL *ssl, SSL_CTX *ctx)
{
    X509 *peer = ssl && ctx ? SSL_get0_peer_certificate(ssl) : NULL;
    X509_STORE_CTX *v = peer ? X509_STORE_CTX_new() : NULL;
    bool ok = v && X509_STORE_CTX_init(v, SSL_CTX_get_cert_store(ctx), peer,
                                       SSL_get_peer_cert_chain(ssl)) == 1;
    /* as the handshake checks a client's certificate: its purpose, the context's parameters
     * (the store's own flags, CRL checking among them, come with the init) */
    ok = ok && X509_STORE_CTX_set_default(v, "ssl_client") == 1 &&
         X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(v), SSL_CTX_get0_param(ctx)) == 1 &&
         X509_verify_cert(v) == 1;
    X509_STORE_CTX_free(v);
    return ok;
}
