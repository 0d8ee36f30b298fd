/*
 * rawclient.h - a small blocking ferry client for tests, built on the codec.
 *
 * Until libferry exists, end-to-end tests speak the protocol through this:
 * frames in, frames out, no threads, every wait bounded by a timeout. One
 * thread per struct rawc.
 */
#ifndef FERRY_TEST_RAWCLIENT_H
#define FERRY_TEST_RAWCLIENT_H

#include "codec.h"

#include <stddef.h>
#include <stdint.h>

struct rawc {
    int fd;
    void *ssl; /* SSL * when FERRY_TEST_TLS (ferryd_proc.h) is on, else NULL */
    struct frame_dec dec;
    struct codec_arena arena;
};

/* TCP connect to 127.0.0.1:port (blocking socket, TCP_NODELAY); with
 * FERRY_TEST_TLS, a TLS handshake too (the certificate is not checked: the
 * suites test the broker, 84_tls.c tests the certificates). */
int rawc_open(struct rawc *c, int port);
void rawc_close(struct rawc *c);

/* Open + Connect + wait for Connected (copied into *out if not NULL). */
int rawc_connect(struct rawc *c, int port, uint32_t keepalive_ms);

int rawc_send(struct rawc *c, const Ferry__Frame *f);
int rawc_send_raw(struct rawc *c, const void *buf, size_t n);

/* Next frame, waiting up to timeout_ms. *out is valid until the next call.
 * Returns 0, -ETIMEDOUT, FERRY_ECLOSED (the server closed), or -errno. */
int rawc_recv(struct rawc *c, int timeout_ms, Ferry__Frame **out);

/* Wait for a frame of the given body case, skipping others (counted in
 * *skipped if not NULL). */
int rawc_recv_kind(struct rawc *c, int timeout_ms, Ferry__Frame__BodyCase kind, Ferry__Frame **out,
                   int *skipped);

int rawc_publish(struct rawc *c, uint64_t id, const char *topic, const void *payload, size_t len,
                 int want_ack);
int rawc_subscribe_nowait(struct rawc *c, uint64_t sub_id, const char *pattern, const char *group);
/* Subscribe and wait for the SubAck: returns its code (0 = ok) as a wire
 * ErrorCode, or a negative error. */
int rawc_subscribe(struct rawc *c, uint64_t sub_id, const char *pattern, const char *group);
int rawc_unsubscribe(struct rawc *c, uint64_t sub_id);
/* Ping and wait for the Pong with the same nonce: everything the server
 * sent before it has been received (and skipped). */
int rawc_ping(struct rawc *c, uint64_t nonce, int timeout_ms);

/* Read (and drop) frames until the server closes: 0 if it closed within the
 * timeout. If err_code is not NULL it receives the code of the last Error
 * frame seen (or -1 if none). */
/* Ping and wait for its Pong; *skipped: how many other frames came first
 * (0 proves nothing else was queued for c). Returns 0, -EPROTO (another
 * nonce), or as rawc_recv. */
int rawc_ping_alone(struct rawc *c, uint64_t nonce, int timeout_ms, int *skipped);

int rawc_wait_closed(struct rawc *c, int timeout_ms, int *err_code);

#endif
