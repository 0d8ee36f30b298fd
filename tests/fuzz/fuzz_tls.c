/*
 * fuzz_tls.c - libFuzzer target for the TLS listener's path: the handshake
 * stepped inside the IO reactor (conn_tls.c, tls.c), then the first frames
 * through the session.
 *
 * In-process servers as in fuzz_conn (fuzz_server.h), with TLS on: one
 * without an auth file, one with users, a token, a `cert alice` and ACLs.
 * Client certificates are optional; a certificate's CN names its user.
 * Each input is one connection over a socketpair, from the TLS listener:
 *
 *   byte 0: bits 0-3 size of the writes (1 << n bytes), bit 7 use the
 *           server with the auth file, bit 4 the mode:
 *   raw (bit 4 clear): the rest goes to the socket as it is: what a broken
 *           or hostile client sends instead of a handshake. With bit 5 it
 *           starts with a real ClientHello that the input patches: byte 1
 *           is a count k, then k patches of 3 bytes (offset, 2 bytes big
 *           endian, modulo the hello's length; a byte XORed in), then the
 *           bytes that follow the hello.
 *   client (bit 4 set): a real TLS client (OpenSSL) does the handshake,
 *           with alice's certificate if bit 5, then sends the rest as
 *           plaintext through the session: after a valid Connect if bit 6
 *           (a password login, or none with the certificate).
 *
 * Either way we read whatever comes back, end our side (close_notify, then
 * a half-close), and read until the server closes. The server must then
 * have dropped the connection within a bound. Crashes and sanitizer
 * reports are the other findings.
 */
#include "fuzz_server.h"
#include "tls_certs.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct server srvs[2];
static struct tls_certs certs;
static SSL_CTX *cctx[2]; /* the client's: [1] presents alice's certificate */
static uint8_t hello[4096];
static size_t hello_len;
static int is_ready;

static void certs_remove(void)
{
    tls_certs_remove(&certs);
}

static SSL_CTX *client_ctx(int with_cert)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        abort();
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* the server is not under test */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (with_cert) {
        char pem[256], key[256];
        tls_certs_path(&certs, "alice.pem", pem, sizeof(pem));
        tls_certs_path(&certs, "alice.key", key, sizeof(key));
        if (SSL_CTX_use_certificate_chain_file(ctx, pem) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            abort();
        }
    }
    return ctx;
}

/* One ClientHello, made once into memory: the raw mode's starting point. */
static void make_hello(void)
{
    SSL *ssl = SSL_new(cctx[0]);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    if (ssl == NULL || rb == NULL || wb == NULL) {
        abort();
    }
    SSL_set_bio(ssl, rb, wb);
    if (SSL_connect(ssl) != -1 || SSL_get_error(ssl, -1) != SSL_ERROR_WANT_READ) {
        abort();
    }
    int n = BIO_read(wb, hello, sizeof(hello));
    if (n <= 5 || hello[0] != 0x16) {
        abort();
    }
    hello_len = (size_t)n;
    SSL_free(ssl);
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* OpenSSL writes with write(2), as ferryd's main does */
    if (tls_certs_make(&certs) != 0) {
        abort();
    }
    atexit(certs_remove);
    fuzz_server_start(&srvs[0], 0, certs.dir);
    fuzz_server_start(&srvs[1], 1, certs.dir);
    cctx[0] = client_ctx(0);
    cctx[1] = client_ctx(1);
    make_hello();
}

/* The raw mode's byte stream, into a new buffer (*out, *len). */
static uint8_t *raw_stream(const uint8_t *in, size_t n, int patch_hello, size_t *len)
{
    uint8_t *s = malloc(hello_len + n + 1);
    if (s == NULL) {
        abort();
    }
    if (!patch_hello) {
        memcpy(s, in, n);
        *len = n;
        return s;
    }
    memcpy(s, hello, hello_len);
    size_t k = n > 0 ? in[0] : 0, i = 1;
    for (; k > 0 && i + 3 <= n; k--, i += 3) {
        size_t off = ((size_t)in[i] << 8 | in[i + 1]) % hello_len;
        s[off] ^= in[i + 2];
    }
    if (i > n) {
        i = n;
    }
    memcpy(s + hello_len, in + i, n - i);
    *len = hello_len + n - i;
    return s;
}

/* Wait for fd to be ready for what ev asks, until deadline. */
static void wait_fd(int fd, short ev, long long deadline)
{
    struct pollfd p = {fd, ev, 0};
    long long left = deadline - fuzz_ms_now();
    if (left <= 0) {
        fprintf(stderr, "fuzz_tls: the server did not close the connection\n");
        abort();
    }
    if (poll(&p, 1, (int)left) < 0 && errno != EINTR) {
        abort();
    }
}

/* Raw mode: write the stream in chunks while reading, half-close, read to
 * the end (as fuzz_conn). */
static void run_raw(int fd, const uint8_t *stream, size_t total, size_t chunk, long long deadline)
{
    static uint8_t sink[65536];
    size_t off = 0;
    int is_wr_open = 1;
    for (;;) {
        if (is_wr_open && off == total) {
            shutdown(fd, SHUT_WR);
            is_wr_open = 0;
        }
        wait_fd(fd, (short)(POLLIN | (is_wr_open ? POLLOUT : 0)), deadline);
        ssize_t r = read(fd, sink, sizeof(sink));
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            return; /* closed by the server */
        }
        if (is_wr_open) {
            size_t n = total - off < chunk ? total - off : chunk;
            ssize_t w = send(fd, stream + off, n, MSG_NOSIGNAL);
            if (w > 0) {
                off += (size_t)w;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                is_wr_open = 0; /* the server closed first */
            }
        }
    }
}

/* One SSL call's outcome: 1 go on, 0 it waits (we waited for readiness:
 * for reading, or for either way when it wants to write, since the server
 * may itself wait for us to read), -1 the session ended. */
static int ssl_step(SSL *ssl, int fd, int rc, long long deadline)
{
    if (rc > 0) {
        return 1;
    }
    int e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLIN | POLLOUT, deadline);
        return 0;
    }
    ERR_clear_error();
    return -1;
}

/* Client mode: handshake, then the plaintext in chunks while reading what
 * comes back, then close_notify and read until the server closes. */
static void run_client(int fd, int with_cert, const uint8_t *plain, size_t total, size_t chunk,
                       long long deadline)
{
    static uint8_t sink[65536];
    SSL *ssl = SSL_new(cctx[with_cert]);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        abort();
    }
    int rc;
    while ((rc = ssl_step(ssl, fd, SSL_connect(ssl), deadline)) == 0) {
    }
    size_t off = 0;
    while (rc > 0 && off < total) {
        /* what the server sent first, so neither side fills up */
        int r;
        while ((r = SSL_read(ssl, sink, sizeof(sink))) > 0) {
        }
        if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            rc = -1; /* the server ended the session */
            break;
        }
        size_t n = total - off < chunk ? total - off : chunk;
        int w = SSL_write(ssl, plain + off, (int)n);
        rc = ssl_step(ssl, fd, w, deadline);
        if (rc > 0) {
            off += (size_t)w;
        } else if (rc == 0) {
            rc = 1; /* waited; we read again first, so the server never stalls on us */
        }
    }
    if (rc > 0) {
        SSL_shutdown(ssl); /* close_notify; the answer is not awaited */
        ERR_clear_error();
    }
    SSL_free(ssl);
    run_raw(fd, NULL, 0, 0, deadline); /* half-close and read to the end */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    if (!is_ready) {
        setup();
        is_ready = 1;
    }
    uint8_t flags = data[0];
    struct server *s = &srvs[(flags >> 7) & 1];
    size_t chunk = (size_t)1 << (flags & 15);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        abort();
    }
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    fuzz_conn_post(s, sv[0], 1);
    long long deadline = fuzz_ms_now() + FUZZ_DRAIN_MS;
    size_t len;
    if (flags & 0x10) {
        int with_cert = (flags & 0x20) != 0;
        uint8_t *plain = malloc(512 + size);
        if (plain == NULL) {
            abort();
        }
        len = 0;
        if (flags & 0x40) {
            len = fuzz_connect_frame(plain, 512, with_cert ? FUZZ_LOGIN_NONE : FUZZ_LOGIN_PASSWORD,
                                     0);
        }
        memcpy(plain + len, data + 1, size - 1);
        run_client(sv[1], with_cert, plain, len + size - 1, chunk, deadline);
        free(plain);
    } else {
        uint8_t *stream = raw_stream(data + 1, size - 1, flags & 0x20, &len);
        run_raw(sv[1], stream, len, chunk, deadline);
        free(stream);
    }
    close(sv[1]);
    fuzz_wait_released(s, deadline);
    return 0;
}
