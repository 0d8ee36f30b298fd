/*
 * tls.h - TLS for ferryd's connections, non-blocking, inside the IO reactors
 * (prefix tls_). The only broker file that includes OpenSSL's headers is
 * tls.c; everything here is plain C.
 *
 * Two objects:
 *   struct tls_holder   the server's current TLS context (certificate, key,
 *                       CA for client certificates, verify mode). Built at
 *                       start (tls_holder_open) and rebuilt on SIGHUP
 *                       (tls_holder_reload): a failed reload keeps the old
 *                       context. Thread-safe; connections hold their own
 *                       reference, so a reload never disturbs them.
 *   struct tls_conn     one connection's TLS session, owned by its IO thread.
 *
 * A session never blocks: every call does what the socket allows and says
 * which readiness it waits for (TLS_WANT_READ / TLS_WANT_WRITE); the caller
 * turns that into reactor interest. The handshake is stepped the same way.
 *
 * Built without OpenSSL (FERRY_HAVE_TLS undefined), tls_available() is 0,
 * tls_holder_open() fails with -ENOTSUP and nothing else is ever called.
 */
#ifndef FERRY_TLS_H
#define FERRY_TLS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct cfg;

/* cfg.tls_client_cert */
enum tls_client_cert { TLS_CLIENT_OFF = 0, TLS_CLIENT_OPTIONAL, TLS_CLIENT_REQUIRED };
/* cfg.tls_identity: what of a verified client certificate names the user */
enum tls_identity { TLS_ID_OFF = 0, TLS_ID_CN, TLS_ID_SAN_EMAIL };

#define TLS_WANT_READ 1u
#define TLS_WANT_WRITE 2u

#define TLS_IDENTITY_MAX 256 /* bytes of a certificate identity, NUL included */

struct tls_holder {
    pthread_mutex_t lock; /* guards ctx */
    void *ctx;            /* SSL_CTX *; guarded by lock; NULL: TLS off */
};

struct tls_conn;

/* 1 if ferryd was built with OpenSSL. */
int tls_available(void);

/* Load cfg's tls_cert, tls_key and tls_ca into a new context held by h.
 * 0, or a negative error with a message in err (-ENOTSUP: built without
 * OpenSSL). h is initialised either way; tls_holder_close() releases it. */
int tls_holder_open(struct tls_holder *h, const struct cfg *cfg, char *err, size_t err_len);
/* Build a new context from cfg's files and swap it in; on failure keep the
 * current one. 0, or a negative error with a message in err. Any thread. */
int tls_holder_reload(struct tls_holder *h, const struct cfg *cfg, char *err, size_t err_len);
void tls_holder_close(struct tls_holder *h);

/* A server session on fd (accepted, non-blocking) with h's current
 * context. 0 and *out, or -ENOMEM / -ENOTSUP. The IO thread that owns fd. */
int tls_conn_create(struct tls_holder *h, int fd, struct tls_conn **out);
/* Free the session (the socket is the caller's). NULL: nothing. */
void tls_conn_destroy(struct tls_conn *tc);

/* Advance the handshake. 0: done; 1: not yet, tls_conn_wants() says what it
 * waits for; negative: failed, tls_conn_error() says why. */
int tls_conn_handshake(struct tls_conn *tc);
/* Read up to n bytes of plaintext: >0 bytes, 0 the peer closed (close_notify
 * or EOF), -EAGAIN (tls_conn_wants() says for what), or -EIO/-errno. */
ssize_t tls_conn_read(struct tls_conn *tc, void *buf, size_t n);
/* Write from n_iov buffers, in order, as much as the socket takes: bytes
 * written (>= 0; fewer than asked: it waits, see tls_conn_wants()), or
 * -EIO/-errno. After a short write the next call must start with the bytes
 * that were not written (conn_flush keeps them first in line). */
ssize_t tls_conn_writev(struct tls_conn *tc, const struct iovec *iov, int n_iov);
/* What the last call that did not finish waits for: TLS_WANT_* bits. */
uint32_t tls_conn_wants(const struct tls_conn *tc);
/* Why the last call failed (static text or the session's buffer). */
const char *tls_conn_error(const struct tls_conn *tc);
/* Send close_notify, best effort (no waiting). */
void tls_conn_shutdown(struct tls_conn *tc);
/* After the handshake: the verified client certificate's identity by mode
 * (its subject CN or its first SAN email), or NULL if there is none. */
const char *tls_conn_identity(struct tls_conn *tc, enum tls_identity mode);

/* The first byte a client sent: a TLS handshake record starts with 0x16.
 * 1: it looks like TLS; 0: it does not (a plain client on the TLS port);
 * -EAGAIN: nothing arrived yet; other negative: the socket failed. */
int tls_peek_is_tls(int fd);

#endif
