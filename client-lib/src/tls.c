/*
 * tls.c - libferry's TLS sessions over OpenSSL, non-blocking: the only file
 * of the library that includes OpenSSL's headers (ferry_int.h, ferry__tls_*).
 *
 * A session sits on the client's socket (SSL_set_fd). Every call does what
 * the socket allows and remembers whether it waits to read or to write;
 * client.c turns that into poll events. Writes may be partial and the output
 * buffer may move between retries (the client's buffer grows by realloc):
 * a retry always starts with the bytes not yet written, which is all that
 * OpenSSL asks with SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER.
 */
#include "ferry_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef FERRY_HAVE_TLS

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct ferry__tls {
    SSL *ssl;
    int events; /* POLLIN / POLLOUT the last unfinished call waits for */
};

int ferry__tls_available(void)
{
    return 1;
}

/* what, then OpenSSL's last reason, into err; the error queue cleared. */
static void ssl_text(char *err, size_t err_len, const char *what)
{
    unsigned long e;
    unsigned long last = 0;
    while ((e = ERR_get_error()) != 0) {
        last = e;
    }
    if (last != 0) {
        char r[160];
        ERR_error_string_n(last, r, sizeof(r));
        snprintf(err, err_len, "%s: %s", what, r);
    } else {
        snprintf(err, err_len, "%s", what);
    }
}

int ferry__tls_ctx_open(const struct ferry_options *o, void **out, char *err, size_t err_len)
{
    char what[600];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        ssl_text(err, err_len, "TLS context");
        return FERRY_ETLS;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = o->tls_ca != NULL ? SSL_CTX_load_verify_locations(ctx, o->tls_ca, NULL)
                               : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        snprintf(what, sizeof(what), "TLS CA file %.500s", o->tls_ca ? o->tls_ca : "(system)");
        goto out_fail;
    }
    if (o->tls_cert != NULL) {
        if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert) != 1) {
            snprintf(what, sizeof(what), "TLS certificate %.500s", o->tls_cert);
            goto out_fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, o->tls_key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(what, sizeof(what), "TLS key %.500s", o->tls_key);
            goto out_fail;
        }
    }
    *out = ctx;
    return 0;

out_fail:
    ssl_text(err, err_len, what);
    SSL_CTX_free(ctx);
    return FERRY_ETLS;
}

void ferry__tls_ctx_close(void *ctx)
{
    SSL_CTX_free(ctx);
}

int ferry__tls_open(void *ctx, int fd, const char *host, int verify_name, struct ferry__tls **out,
                    char *err, size_t err_len)
{
    struct ferry__tls *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    ERR_clear_error();
    t->ssl = SSL_new(ctx);
    if (t->ssl == NULL || SSL_set_fd(t->ssl, fd) != 1) {
        ssl_text(err, err_len, "TLS session");
        goto out_free;
    }
    unsigned char addr[16];
    int is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    if (!is_ip && SSL_set_tlsext_host_name(t->ssl, host) != 1) {
        ssl_text(err, err_len, "TLS server name");
        goto out_free;
    }
    if (verify_name) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host) : SSL_set1_host(t->ssl, host);
        if (ok != 1) {
            ssl_text(err, err_len, "TLS server name");
            goto out_free;
        }
    }
    SSL_set_connect_state(t->ssl);
    *out = t;
    return 0;

out_free:
    SSL_free(t->ssl);
    free(t);
    return FERRY_ETLS;
}

void ferry__tls_close(struct ferry__tls *t)
{
    if (t == NULL) {
        return;
    }
    SSL_free(t->ssl);
    free(t);
}

/* A call that did not finish: -EAGAIN (t->events set), 0 for the peer's
 * close_notify, or an error code with its text in err. */
static int fail(struct ferry__tls *t, int ret, const char *what, char *err, size_t err_len)
{
    int e = SSL_get_error(t->ssl, ret);
    int sys = errno;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        t->events = POLLIN;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        t->events = POLLOUT;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
            if (sys == 0) {
                snprintf(err, err_len, "%s: the server closed the connection", what);
                return -ECONNRESET;
            }
            snprintf(err, err_len, "%s: %s", what, strerror(sys));
            return -sys;
        }
        ssl_text(err, err_len, what);
        return FERRY_ETLS;
    default:
        ssl_text(err, err_len, what);
        return FERRY_ETLS;
    }
}

int ferry__tls_handshake(struct ferry__tls *t, char *err, size_t err_len)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->events = 0;
        return 0;
    }
    int rc = fail(t, r, "TLS handshake", err, err_len);
    if (rc == -EAGAIN) {
        return 1;
    }
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK) {
        size_t l = strlen(err);
        snprintf(err + l, err_len - l, " (server certificate: %s)",
                 X509_verify_cert_error_string(v));
    }
    if (rc == 0 || rc == -ECONNRESET) {
        if (rc == 0) {
            snprintf(err, err_len, "TLS handshake: the server closed the connection");
        }
        return FERRY_ETLS;
    }
    return rc;
}

ssize_t ferry__tls_read(struct ferry__tls *t, void *buf, size_t n, char *err, size_t err_len)
{
    size_t got = 0;
    ERR_clear_error();
    errno = 0;
    if (SSL_read_ex(t->ssl, buf, n, &got) == 1) {
        t->events = 0;
        return (ssize_t)got;
    }
    return fail(t, 0, "TLS read", err, err_len);
}

ssize_t ferry__tls_write(struct ferry__tls *t, const void *buf, size_t n, char *err, size_t err_len)
{
    size_t done = 0;
    ERR_clear_error();
    errno = 0;
    if (SSL_write_ex(t->ssl, buf, n, &done) == 1) {
        t->events = 0;
        return (ssize_t)done;
    }
    int rc = fail(t, 0, "TLS write", err, err_len);
    return rc == 0 ? -ECONNRESET : rc;
}

int ferry__tls_events(const struct ferry__tls *t)
{
    return t->events;
}

int ferry__tls_pending(const struct ferry__tls *t)
{
    return SSL_pending(t->ssl) > 0;
}

#else /* !FERRY_HAVE_TLS: every entry fails; ferry_options_set_tls says -ENOTSUP */

int ferry__tls_available(void)
{
    return 0;
}

int ferry__tls_ctx_open(const struct ferry_options *o, void **out, char *err, size_t err_len)
{
    (void)o;
    (void)out;
    snprintf(err, err_len, "libferry was built without OpenSSL: no TLS");
    return FERRY_ETLS;
}

void ferry__tls_ctx_close(void *ctx)
{
    (void)ctx;
}

int ferry__tls_open(void *ctx, int fd, const char *host, int verify_name, struct ferry__tls **out,
                    char *err, size_t err_len)
{
    (void)ctx;
    (void)fd;
    (void)host;
    (void)verify_name;
    (void)out;
    snprintf(err, err_len, "libferry was built without OpenSSL: no TLS");
    return FERRY_ETLS;
}

void ferry__tls_close(struct ferry__tls *t)
{
    (void)t;
}

int ferry__tls_handshake(struct ferry__tls *t, char *err, size_t err_len)
{
    (void)t;
    snprintf(err, err_len, "no TLS");
    return FERRY_ETLS;
}

ssize_t ferry__tls_read(struct ferry__tls *t, void *buf, size_t n, char *err, size_t err_len)
{
    (void)t;
    (void)buf;
    (void)n;
    snprintf(err, err_len, "no TLS");
    return FERRY_ETLS;
}

ssize_t ferry__tls_write(struct ferry__tls *t, const void *buf, size_t n, char *err, size_t err_len)
{
    (void)t;
    (void)buf;
    (void)n;
    snprintf(err, err_len, "no TLS");
    return FERRY_ETLS;
}

int ferry__tls_events(const struct ferry__tls *t)
{
    (void)t;
    return 0;
}

int ferry__tls_pending(const struct ferry__tls *t)
{
    (void)t;
    return 0;
}

#endif /* FERRY_HAVE_TLS */
