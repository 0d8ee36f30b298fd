/*
 * rawclient.c - blocking socket + frame_dec + codec.
 */
#include "rawclient.h"

#include "ferry.h"
#include "ferryd_proc.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef FERRY_TEST_HAVE_TLS
#include <openssl/ssl.h>

/* FERRY_TEST_TLS: a blocking TLS session on c->fd. 0 or -EPROTO. */
static int tls_start(struct rawc *c)
{
    static SSL_CTX *ctx; /* one per test process, kept until it exits */
    if (ctx == NULL && (ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
        return -EPROTO;
    }
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, c->fd) != 1 || SSL_connect(ssl) != 1) {
        SSL_free(ssl);
        return -EPROTO;
    }
    c->ssl = ssl;
    return 0;
}

static ssize_t sock_write(struct rawc *c, const void *p, size_t n)
{
    if (c->ssl == NULL) {
        return send(c->fd, p, n, MSG_NOSIGNAL);
    }
    size_t done = 0;
    if (SSL_write_ex(c->ssl, p, n, &done) != 1) {
        errno = EPIPE;
        return -1;
    }
    return (ssize_t)done;
}

static ssize_t sock_read(struct rawc *c, void *p, size_t n)
{
    if (c->ssl == NULL) {
        return read(c->fd, p, n);
    }
    size_t got = 0;
    if (SSL_read_ex(c->ssl, p, n, &got) == 1) {
        return (ssize_t)got;
    }
    int e = SSL_get_error(c->ssl, 0);
    if (e == SSL_ERROR_ZERO_RETURN) {
        return 0;
    }
    errno = ECONNRESET;
    return -1;
}

static int sock_pending(const struct rawc *c)
{
    return c->ssl != NULL && SSL_pending(c->ssl) > 0;
}

static void tls_end(struct rawc *c)
{
    SSL_free(c->ssl);
    c->ssl = NULL;
}
#else
static int tls_start(struct rawc *c)
{
    (void)c;
    return -EPROTO;
}

static ssize_t sock_write(struct rawc *c, const void *p, size_t n)
{
    return send(c->fd, p, n, MSG_NOSIGNAL);
}

static ssize_t sock_read(struct rawc *c, void *p, size_t n)
{
    return read(c->fd, p, n);
}

static int sock_pending(const struct rawc *c)
{
    (void)c;
    return 0;
}

static void tls_end(struct rawc *c)
{
    (void)c;
}
#endif

static long long ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rawc_open(struct rawc *c, int port)
{
    memset(c, 0, sizeof(*c));
    frame_dec_init(&c->dec, FRAME_MAX_LEN_CEILING);
    codec_arena_init(&c->arena);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        return -errno;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int rc = -errno;
        close(c->fd);
        c->fd = -1;
        return rc;
    }
    if (ferryd_test_tls() && tls_start(c) < 0) {
        close(c->fd);
        c->fd = -1;
        return -EPROTO;
    }
    return 0;
}

void rawc_close(struct rawc *c)
{
    tls_end(c);
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    frame_dec_deinit(&c->dec);
    codec_arena_deinit(&c->arena);
}

int rawc_send_raw(struct rawc *c, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = sock_write(c, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int rawc_send(struct rawc *c, const Ferry__Frame *f)
{
    uint8_t stack[4096];
    size_t n = codec_frame_size(f);
    if (n <= sizeof(stack)) {
        size_t len;
        int rc = codec_frame_encode(f, stack, sizeof(stack), &len);
        return rc < 0 ? rc : rawc_send_raw(c, stack, len);
    }
    uint8_t *buf;
    size_t len;
    int rc = codec_frame_encode_alloc(f, &buf, &len);
    if (rc < 0) {
        return rc;
    }
    rc = rawc_send_raw(c, buf, len);
    free(buf);
    return rc;
}

int rawc_recv(struct rawc *c, int timeout_ms, Ferry__Frame **out)
{
    long long deadline = ms_now() + timeout_ms;
    for (;;) {
        const uint8_t *body;
        size_t len;
        int rc = frame_dec_next(&c->dec, &body, &len);
        if (rc < 0) {
            return rc;
        }
        if (rc == 1) {
            return codec_frame_decode(&c->arena, body, len, out);
        }
        long long left = deadline - ms_now();
        if (left <= 0) {
            return -ETIMEDOUT;
        }
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = sock_pending(c) ? 1 : poll(&pfd, 1, (int)left);
        if (pr < 0 && errno == EINTR) {
            continue;
        }
        if (pr == 0) {
            return -ETIMEDOUT;
        }
        uint8_t *p;
        size_t room;
        rc = frame_dec_space(&c->dec, 65536, &p, &room);
        if (rc < 0) {
            return rc;
        }
        ssize_t r = sock_read(c, p, room);
        if (r == 0) {
            return FERRY_ECLOSED;
        }
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == ECONNRESET ? FERRY_ECLOSED : -errno;
        }
        frame_dec_commit(&c->dec, (size_t)r);
    }
}

int rawc_recv_kind(struct rawc *c, int timeout_ms, Ferry__Frame__BodyCase kind, Ferry__Frame **out,
                   int *skipped)
{
    long long deadline = ms_now() + timeout_ms;
    for (;;) {
        long long left = deadline - ms_now();
        Ferry__Frame *f;
        int rc = rawc_recv(c, left > 0 ? (int)left : 0, &f);
        if (rc < 0) {
            return rc;
        }
        if (f->body_case == kind) {
            *out = f;
            return 0;
        }
        if (skipped) {
            (*skipped)++;
        }
    }
}

int rawc_connect(struct rawc *c, int port, uint32_t keepalive_ms)
{
    int rc = rawc_open(c, port);
    if (rc < 0) {
        return rc;
    }
    Ferry__Connect m = FERRY__CONNECT__INIT;
    m.protocol_version = 1;
    m.client_name = (char *)"rawclient";
    m.keepalive_ms = keepalive_ms;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_CONNECT;
    f.connect = &m;
    if ((rc = rawc_send(c, &f)) < 0) {
        return rc;
    }
    Ferry__Frame *r;
    if ((rc = rawc_recv(c, 10000, &r)) < 0) {
        return rc;
    }
    if (r->body_case != FERRY__FRAME__BODY_CONNECTED) {
        return r->body_case == FERRY__FRAME__BODY_ERROR ? FERRY_ERR_FROM_WIRE(r->error->code)
                                                        : FERRY_EPROTOCOL;
    }
    return 0;
}

int rawc_publish(struct rawc *c, uint64_t id, const char *topic, const void *payload, size_t len,
                 int want_ack)
{
    Ferry__Publish m = FERRY__PUBLISH__INIT;
    m.id = id;
    m.topic = (char *)topic;
    m.payload.data = (uint8_t *)payload;
    m.payload.len = len;
    m.want_ack = want_ack ? 1 : 0;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PUBLISH;
    f.publish = &m;
    return rawc_send(c, &f);
}

int rawc_subscribe_nowait(struct rawc *c, uint64_t sub_id, const char *pattern, const char *group)
{
    Ferry__Subscribe m = FERRY__SUBSCRIBE__INIT;
    m.sub_id = sub_id;
    m.pattern = (char *)pattern;
    m.queue_group = (char *)(group ? group : "");
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &m;
    return rawc_send(c, &f);
}

int rawc_subscribe(struct rawc *c, uint64_t sub_id, const char *pattern, const char *group)
{
    int rc = rawc_subscribe_nowait(c, sub_id, pattern, group);
    if (rc < 0) {
        return rc;
    }
    Ferry__Frame *f;
    rc = rawc_recv_kind(c, 10000, FERRY__FRAME__BODY_SUB_ACK, &f, NULL);
    if (rc < 0) {
        return rc;
    }
    return f->sub_ack->sub_id == sub_id ? (int)f->sub_ack->code : FERRY_EPROTOCOL;
}

int rawc_unsubscribe(struct rawc *c, uint64_t sub_id)
{
    Ferry__Unsubscribe m = FERRY__UNSUBSCRIBE__INIT;
    m.sub_id = sub_id;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_UNSUBSCRIBE;
    f.unsubscribe = &m;
    int rc = rawc_send(c, &f);
    if (rc < 0) {
        return rc;
    }
    Ferry__Frame *r;
    rc = rawc_recv_kind(c, 10000, FERRY__FRAME__BODY_SUB_ACK, &r, NULL);
    if (rc < 0) {
        return rc;
    }
    return (int)r->sub_ack->code;
}

int rawc_ping(struct rawc *c, uint64_t nonce, int timeout_ms)
{
    Ferry__Ping m = FERRY__PING__INIT;
    m.nonce = nonce;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PING;
    f.ping = &m;
    int rc = rawc_send(c, &f);
    if (rc < 0) {
        return rc;
    }
    long long deadline = ms_now() + timeout_ms;
    for (;;) {
        Ferry__Frame *r;
        long long left = deadline - ms_now();
        rc = rawc_recv_kind(c, left > 0 ? (int)left : 0, FERRY__FRAME__BODY_PONG, &r, NULL);
        if (rc < 0) {
            return rc;
        }
        if (r->pong->nonce == nonce) {
            return 0;
        }
    }
}

int rawc_wait_closed(struct rawc *c, int timeout_ms, int *err_code)
{
    long long deadline = ms_now() + timeout_ms;
    if (err_code) {
        *err_code = -1;
    }
    for (;;) {
        Ferry__Frame *f;
        long long left = deadline - ms_now();
        if (left <= 0) {
            return -ETIMEDOUT;
        }
        int rc = rawc_recv(c, (int)left, &f);
        if (rc == FERRY_ECLOSED) {
            return 0;
        }
        if (rc == -ETIMEDOUT) {
            return rc;
        }
        if (rc < 0) {
            return 0; /* reset or broken stream: closed too */
        }
        if (f->body_case == FERRY__FRAME__BODY_ERROR && err_code) {
            *err_code = (int)f->error->code;
        }
    }
}

int rawc_ping_alone(struct rawc *c, uint64_t nonce, int timeout_ms, int *skipped)
{
    Ferry__Ping m = FERRY__PING__INIT;
    m.nonce = nonce;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PING;
    f.ping = &m;
    int rc = rawc_send(c, &f);
    if (rc < 0) {
        return rc;
    }
    Ferry__Frame *r;
    *skipped = 0;
    rc = rawc_recv_kind(c, timeout_ms, FERRY__FRAME__BODY_PONG, &r, skipped);
    if (rc == 0 && r->pong->nonce != nonce) {
        return -EPROTO;
    }
    return rc;
}
