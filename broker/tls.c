/*
 * tls.c - OpenSSL behind tls.h: contexts (load, reload) and non-blocking
 * sessions. The only broker file that includes OpenSSL's headers.
 *
 * Sessions use the socket directly (SSL_set_fd): no memory BIOs, so a read
 * costs one read(2) per TLS record and a write one write(2) per record.
 * Writes gather small buffers into one record (up to TLS_REC bytes) so that
 * many small deliveries do not each become a record and a system call.
 * Partial writes are enabled and the write buffer may move between retries
 * (conn_flush copies what was not written into the connection's buffer):
 * OpenSSL then only asks that a retry start with the same bytes, which it
 * does.
 */
#include "tls.h"

#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#ifdef FERRY_HAVE_TLS

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define TLS_REC 16384 /* plaintext bytes of one full TLS record */

struct tls_conn {
    SSL *ssl;
    uint32_t wants; /* TLS_WANT_* of the last unfinished call */
    char err[200];
    char identity[TLS_IDENTITY_MAX];
};

int tls_available(void)
{
    return 1;
}

/* OpenSSL's error queue, most recent reason first, into buf; cleared. */
static void ssl_errors(char *buf, size_t len, const char *what)
{
    unsigned long e = ERR_get_error();
    unsigned long last = e;
    while (e != 0) {
        last = e;
        e = ERR_get_error();
    }
    if (last != 0) {
        char r[160];
        ERR_error_string_n(last, r, sizeof(r));
        snprintf(buf, len, "%s: %s", what, r);
    } else {
        snprintf(buf, len, "%s", what);
    }
}

static SSL_CTX *ctx_build(const struct cfg *cfg, char *err, size_t err_len)
{
    if (cfg->tls_cert[0] == '\0' || cfg->tls_key[0] == '\0') {
        snprintf(err, err_len, "TLS needs tls_cert and tls_key");
        return NULL;
    }
    if (cfg->tls_client_cert != TLS_CLIENT_OFF && cfg->tls_ca[0] == '\0') {
        snprintf(err, err_len, "tls_client_cert %s needs tls_ca (the CA of client certificates)",
                 cfg->tls_client_cert == TLS_CLIENT_REQUIRED ? "required" : "optional");
        return NULL;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char what[1200];
    if (ctx == NULL) {
        ssl_errors(err, err_len, "TLS context");
        return NULL;
    }
    /* TLS 1.2 at least; ciphers and the rest: the system's defaults. */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_num_tickets(ctx, 0); /* no resumption: nothing written after the handshake */
    /* TLS 1.2 renegotiation: costly for us, cheap for a client to ask, and
     * it would make a write wait for a read. Refused. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
        snprintf(what, sizeof(what), "tls_cert %s", cfg->tls_cert);
        goto out_fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof(what), "tls_key %s", cfg->tls_key);
        goto out_fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(what, sizeof(what), "tls_key %s does not match tls_cert %s", cfg->tls_key,
                 cfg->tls_cert);
        goto out_fail;
    }
    if (cfg->tls_ca[0] != '\0') {
        if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca, NULL) != 1) {
            snprintf(what, sizeof(what), "tls_ca %s", cfg->tls_ca);
            goto out_fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->tls_ca);
        if (names != NULL) {
            SSL_CTX_set_client_CA_list(ctx, names);
        }
    }
    int mode = SSL_VERIFY_NONE;
    if (cfg->tls_client_cert == TLS_CLIENT_OPTIONAL) {
        mode = SSL_VERIFY_PEER;
    } else if (cfg->tls_client_cert == TLS_CLIENT_REQUIRED) {
        mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
    SSL_CTX_set_verify(ctx, mode, NULL);
    return ctx;

out_fail:
    ssl_errors(err, err_len, what);
    SSL_CTX_free(ctx);
    return NULL;
}

int tls_holder_open(struct tls_holder *h, const struct cfg *cfg, char *err, size_t err_len)
{
    pthread_mutex_init(&h->lock, NULL);
    h->ctx = ctx_build(cfg, err, err_len);
    return h->ctx ? 0 : -EINVAL;
}

int tls_holder_reload(struct tls_holder *h, const struct cfg *cfg, char *err, size_t err_len)
{
    SSL_CTX *ctx = ctx_build(cfg, err, err_len);
    if (ctx == NULL) {
        return -EINVAL;
    }
    pthread_mutex_lock(&h->lock);
    SSL_CTX *old = h->ctx;
    h->ctx = ctx;
    pthread_mutex_unlock(&h->lock);
    SSL_CTX_free(old); /* sessions made from it hold their own reference */
    return 0;
}

void tls_holder_close(struct tls_holder *h)
{
    SSL_CTX_free(h->ctx);
    h->ctx = NULL;
    pthread_mutex_destroy(&h->lock);
}

int tls_conn_create(struct tls_holder *h, int fd, struct tls_conn **out)
{
    struct tls_conn *tc = calloc(1, sizeof(*tc));
    if (tc == NULL) {
        return -ENOMEM;
    }
    pthread_mutex_lock(&h->lock);
    SSL *ssl = h->ctx ? SSL_new(h->ctx) : NULL; /* SSL_new takes its own reference */
    pthread_mutex_unlock(&h->lock);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        free(tc);
        ERR_clear_error();
        return -ENOMEM;
    }
    SSL_set_accept_state(ssl);
    tc->ssl = ssl;
    *out = tc;
    return 0;
}

void tls_conn_destroy(struct tls_conn *tc)
{
    if (tc == NULL) {
        return;
    }
    SSL_free(tc->ssl);
    free(tc);
}

/* Classify a failed SSL call: -EAGAIN with tc->wants set, 0 for a clean
 * close, or a negative error with tc->err set. */
static int ssl_fail(struct tls_conn *tc, int ret, const char *what)
{
    int e = SSL_get_error(tc->ssl, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        tc->wants = TLS_WANT_READ;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        tc->wants = TLS_WANT_WRITE;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL: {
        int err = errno;
        if (ERR_peek_error() != 0) {
            ssl_errors(tc->err, sizeof(tc->err), what);
            return -EIO;
        }
        if (ret == 0 || err == 0) {
            snprintf(tc->err, sizeof(tc->err), "%s: the peer closed the connection", what);
            return -ECONNRESET;
        }
        snprintf(tc->err, sizeof(tc->err), "%s: %s", what, strerror(err));
        return -err;
    }
    default:
        ssl_errors(tc->err, sizeof(tc->err), what);
        return -EIO;
    }
}

int tls_conn_handshake(struct tls_conn *tc)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(tc->ssl);
    if (r == 1) {
        tc->wants = 0;
        return 0;
    }
    int rc = ssl_fail(tc, r, "TLS handshake");
    if (rc == -EAGAIN) {
        return 1;
    }
    if (rc == 0) {
        snprintf(tc->err, sizeof(tc->err), "TLS handshake: the peer closed the connection");
        return -ECONNRESET;
    }
    long v = SSL_get_verify_result(tc->ssl);
    if (v != X509_V_OK) {
        size_t l = strlen(tc->err);
        snprintf(tc->err + l, sizeof(tc->err) - l, " (client certificate: %s)",
                 X509_verify_cert_error_string(v));
    }
    return rc;
}

ssize_t tls_conn_read(struct tls_conn *tc, void *buf, size_t n)
{
    size_t got = 0;
    ERR_clear_error();
    errno = 0;
    int r = SSL_read_ex(tc->ssl, buf, n, &got);
    if (r == 1) {
        tc->wants = 0;
        return (ssize_t)got;
    }
    return ssl_fail(tc, 0, "TLS read");
}

/* One SSL_write_ex: bytes written, or a negative code (-EAGAIN: waits). */
static ssize_t write_one(struct tls_conn *tc, const void *p, size_t n)
{
    size_t done = 0;
    ERR_clear_error();
    errno = 0;
    if (SSL_write_ex(tc->ssl, p, n, &done) == 1) {
        return (ssize_t)done;
    }
    int rc = ssl_fail(tc, 0, "TLS write");
    return rc == 0 ? -ECONNRESET : rc;
}

ssize_t tls_conn_writev(struct tls_conn *tc, const struct iovec *iov, int n_iov)
{
    unsigned char rec[TLS_REC];
    size_t total = 0;
    int i = 0;
    size_t off = 0; /* into iov[i] */
    tc->wants = 0;
    while (i < n_iov) {
        const unsigned char *p;
        size_t n;
        size_t left = iov[i].iov_len - off;
        if (left >= TLS_REC) {
            /* A large buffer goes out from where it is, a record at a time. */
            p = (const unsigned char *)iov[i].iov_base + off;
            n = left;
        } else {
            /* Gather small buffers into one record. */
            n = 0;
            int j = i;
            size_t o = off;
            while (j < n_iov && n < TLS_REC) {
                size_t take = iov[j].iov_len - o;
                if (take > TLS_REC - n) {
                    take = TLS_REC - n;
                }
                memcpy(rec + n, (const unsigned char *)iov[j].iov_base + o, take);
                n += take;
                o += take;
                if (o == iov[j].iov_len) {
                    j++;
                    o = 0;
                }
            }
            p = rec;
        }
        if (n == 0) {
            i++;
            off = 0;
            continue;
        }
        ssize_t w = write_one(tc, p, n);
        if (w == -EAGAIN) {
            return (ssize_t)total;
        }
        if (w < 0) {
            return total > 0 ? (ssize_t)total : w;
        }
        total += (size_t)w;
        /* Move on by w bytes. */
        size_t adv = (size_t)w;
        while (adv > 0 && i < n_iov) {
            size_t l = iov[i].iov_len - off;
            if (adv < l) {
                off += adv;
                adv = 0;
            } else {
                adv -= l;
                i++;
                off = 0;
            }
        }
        while (i < n_iov && iov[i].iov_len == off) {
            i++;
            off = 0;
        }
    }
    return (ssize_t)total;
}

uint32_t tls_conn_wants(const struct tls_conn *tc)
{
    return tc->wants;
}

const char *tls_conn_error(const struct tls_conn *tc)
{
    return tc->err[0] ? tc->err : "TLS error";
}

void tls_conn_shutdown(struct tls_conn *tc)
{
    ERR_clear_error();
    if (SSL_is_init_finished(tc->ssl)) {
        (void)SSL_shutdown(tc->ssl);
    }
    ERR_clear_error();
}

/* The first email address among cert's subject alternative names. */
static int san_email(X509 *cert, char *out, size_t len)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int found = 0;
    for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names) && !found; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type != GEN_EMAIL) {
            continue;
        }
        const unsigned char *d = ASN1_STRING_get0_data(gn->d.rfc822Name);
        int dl = ASN1_STRING_length(gn->d.rfc822Name);
        if (dl > 0 && (size_t)dl < len && memchr(d, '\0', (size_t)dl) == NULL) {
            memcpy(out, d, (size_t)dl);
            out[dl] = '\0';
            found = 1;
        }
    }
    GENERAL_NAMES_free(names);
    return found;
}

/* cert's subject CN, if there is exactly one and it holds no NUL. */
static int subject_cn(X509 *cert, char *out, size_t len)
{
    X509_NAME *subj = X509_get_subject_name(cert);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx < 0 || X509_NAME_get_index_by_NID(subj, NID_commonName, idx) >= 0) {
        return 0;
    }
    ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, s);
    int ok = n > 0 && (size_t)n < len && memchr(utf8, '\0', (size_t)n) == NULL;
    if (ok) {
        memcpy(out, utf8, (size_t)n);
        out[n] = '\0';
    }
    OPENSSL_free(utf8);
    return ok;
}

const char *tls_conn_identity(struct tls_conn *tc, enum tls_identity mode)
{
    if (mode == TLS_ID_OFF || SSL_get_verify_result(tc->ssl) != X509_V_OK) {
        return NULL;
    }
    X509 *cert = SSL_get0_peer_certificate(tc->ssl);
    if (cert == NULL) {
        return NULL; /* none sent (tls_client_cert optional) */
    }
    int ok = mode == TLS_ID_CN ? subject_cn(cert, tc->identity, sizeof(tc->identity))
                               : san_email(cert, tc->identity, sizeof(tc->identity));
    return ok ? tc->identity : NULL;
}

#else /* !FERRY_HAVE_TLS */

int tls_available(void)
{
    return 0;
}

int tls_holder_open(struct tls_holder *h, const struct cfg *cfg, char *err, size_t err_len)
{
    (void)cfg;
    pthread_mutex_init(&h->lock, NULL);
    h->ctx = NULL;
    snprintf(err, err_len, "this ferryd was built without OpenSSL (libssl-dev): no TLS");
    return -ENOTSUP;
}

int tls_holder_reload(struct tls_holder *h, const struct cfg *cfg, char *err, size_t err_len)
{
    (void)h;
    (void)cfg;
    snprintf(err, err_len, "this ferryd was built without OpenSSL: no TLS");
    return -ENOTSUP;
}

void tls_holder_close(struct tls_holder *h)
{
    pthread_mutex_destroy(&h->lock);
}

int tls_conn_create(struct tls_holder *h, int fd, struct tls_conn **out)
{
    (void)h;
    (void)fd;
    (void)out;
    return -ENOTSUP;
}

void tls_conn_destroy(struct tls_conn *tc)
{
    (void)tc;
}

int tls_conn_handshake(struct tls_conn *tc)
{
    (void)tc;
    return -ENOTSUP;
}

ssize_t tls_conn_read(struct tls_conn *tc, void *buf, size_t n)
{
    (void)tc;
    (void)buf;
    (void)n;
    return -ENOTSUP;
}

ssize_t tls_conn_writev(struct tls_conn *tc, const struct iovec *iov, int n_iov)
{
    (void)tc;
    (void)iov;
    (void)n_iov;
    return -ENOTSUP;
}

uint32_t tls_conn_wants(const struct tls_conn *tc)
{
    (void)tc;
    return 0;
}

const char *tls_conn_error(const struct tls_conn *tc)
{
    (void)tc;
    return "no TLS in this build";
}

void tls_conn_shutdown(struct tls_conn *tc)
{
    (void)tc;
}

const char *tls_conn_identity(struct tls_conn *tc, enum tls_identity mode)
{
    (void)tc;
    (void)mode;
    return NULL;
}

#endif /* FERRY_HAVE_TLS */

int tls_peek_is_tls(int fd)
{
    unsigned char b;
    ssize_t r = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 1) {
        return b == 0x16; /* TLS record type 22: handshake */
    }
    if (r == 0) {
        return -ECONNRESET;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
}
