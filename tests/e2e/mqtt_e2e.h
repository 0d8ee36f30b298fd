/*
 * mqtt_e2e.h - a raw MQTT 3.1.1 client for the end-to-end suites: a
 * socket to the broker's MQTT port, whole packets out and in, with
 * timeouts (no sleeps). Every failure fails the test.
 */
#ifndef FERRY_MQTT_E2E_H
#define FERRY_MQTT_E2E_H

#include "auth_e2e.h"
#include "e2e_util.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static inline int mqe_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static inline void mqe_send(int fd, const void *p, size_t n)
{
    ck_assert_int_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Exactly n bytes before the deadline (e2e_ms_now's clock): 0, or -1 when
 * the deadline passed first or the broker closed. */
static inline int mqe_read_until(int fd, uint8_t *b, size_t n, long long deadline)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        long long left = deadline - e2e_ms_now();
        if (left <= 0 || poll(&pfd, 1, (int)left) != 1) {
            return -1;
        }
        ssize_t r = read(fd, b + got, n - got);
        if (r <= 0) {
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* One packet read whole before the deadline: its first byte, its body in
 * body (cap bytes; a larger one fails the test) and *len. -1: none came
 * (deadline, or closed). */
static inline int mqe_packet(int fd, uint8_t *body, size_t cap, size_t *len, long long deadline)
{
    uint8_t first, b;
    if (mqe_read_until(fd, &first, 1, deadline) < 0) {
        return -1;
    }
    uint32_t rem = 0, mult = 1;
    do {
        if (mqe_read_until(fd, &b, 1, deadline) < 0) {
            return -1;
        }
        rem += (b & 127u) * mult;
        mult *= 128;
    } while ((b & 128) && mult <= 128u * 128 * 128);
    ck_assert_uint_le(rem, cap);
    if (mqe_read_until(fd, body, rem, deadline) < 0) {
        return -1;
    }
    *len = rem;
    return first;
}

/* CONNECT (3.1.1, clean session, client id cid) with a user and password
 * unless NULL, and a will (QoS 0, message will_msg) unless will_topic is
 * NULL. */
static inline void mqe_connect(int fd, const char *cid, const char *user, const char *pass,
                               uint16_t keepalive, const char *will_topic, const char *will_msg)
{
    uint8_t b[512];
    size_t k = 2;
    const uint8_t vh[] = {0, 4, 'M', 'Q', 'T', 'T', 4};
    memcpy(b + k, vh, sizeof(vh));
    k += sizeof(vh);
    b[k++] = (uint8_t)(0x02 | (user ? 0x80 : 0) | (pass ? 0x40 : 0) | (will_topic ? 0x04 : 0));
    b[k++] = (uint8_t)(keepalive >> 8);
    b[k++] = (uint8_t)keepalive;
    const char *fields[] = {cid, will_topic, will_topic ? will_msg : NULL, user, pass};
    for (size_t i = 0; i < 5; i++) {
        if (fields[i] != NULL) {
            size_t n = strlen(fields[i]);
            ck_assert_uint_lt(n, 100);
            b[k++] = 0;
            b[k++] = (uint8_t)n;
            memcpy(b + k, fields[i], n);
            k += n;
        }
    }
    b[0] = 0x10;
    b[1] = (uint8_t)(k - 2);
    mqe_send(fd, b, k);
}

/* The CONNACK's return code. */
static inline uint8_t mqe_connack(int fd)
{
    uint8_t b[8];
    size_t len;
    ck_assert_int_eq(mqe_packet(fd, b, sizeof(b), &len, e2e_ms_now() + T_WAIT), 0x20);
    ck_assert_uint_eq(len, 2);
    return b[1];
}

/* SUBSCRIBE (packet id pid) to the n filters at QoS qos each. */
static inline void mqe_subscribe(int fd, uint16_t pid, const char *const *filters, size_t n,
                                 uint8_t qos)
{
    uint8_t b[512];
    size_t k = 2;
    b[k++] = (uint8_t)(pid >> 8);
    b[k++] = (uint8_t)pid;
    for (size_t i = 0; i < n; i++) {
        size_t fl = strlen(filters[i]);
        ck_assert_uint_lt(k + fl + 3, 127);
        b[k++] = 0;
        b[k++] = (uint8_t)fl;
        memcpy(b + k, filters[i], fl);
        k += fl;
        b[k++] = qos;
    }
    b[0] = 0x82;
    b[1] = (uint8_t)(k - 2);
    mqe_send(fd, b, k);
}

/* PUBLISH at QoS 0. */
static inline void mqe_publish(int fd, const char *topic, const char *msg)
{
    uint8_t b[256];
    size_t tl = strlen(topic), ml = strlen(msg), k = 2;
    ck_assert_uint_lt(tl + ml + 2, 127);
    b[0] = 0x30;
    b[k++] = 0;
    b[k++] = (uint8_t)tl;
    memcpy(b + k, topic, tl);
    k += tl;
    memcpy(b + k, msg, ml);
    k += ml;
    b[1] = (uint8_t)(k - 2);
    mqe_send(fd, b, k);
}

/* 1 if the server closed fd within timeout_ms, discarding what came
 * before; 0 if it stayed open. */
static inline int mqe_closed(int fd, int timeout_ms)
{
    long long end = e2e_ms_now() + timeout_ms;
    for (;;) {
        long long left = end - e2e_ms_now();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
            return 0;
        }
        uint8_t b[256];
        if (read(fd, b, sizeof(b)) <= 0) {
            return 1;
        }
    }
}

#endif
