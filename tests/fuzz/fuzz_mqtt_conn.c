/*
 * fuzz_mqtt_conn.c - libFuzzer target for an MQTT connection on the IO
 * thread (broker/mqtt_conn.c, mqtt_out.c): the codec's packets handed to
 * ferry's handlers and their answers turned back into MQTT.
 *
 * As fuzz_conn.c: an IO thread and a worker in-process, twice (without and
 * with an auth file); each input is one connection over a socketpair,
 * handed to the IO thread as the MQTT listener's acceptor would:
 *
 *   byte 0: bits 0-3 size of the writes (1 << n bytes), bit 4 start with a
 *           valid CONNECT, bit 5 its password is wrong, bit 6 no
 *           credentials, bit 7 use the server with the auth file;
 *   rest:   raw bytes as an MQTT client would send them.
 *
 * The server must close the connection once we half-close, and release
 * it (no leak, no wedged state); crashes and sanitizer reports are the
 * other findings.
 */
#include "fuzz_server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct server srvs[2];
static int is_ready;

/* CONNECT (3.1.1, clean session, keepalive 0) as alice, into b. */
static size_t connect_packet(uint8_t *b, int wrong, int anonymous)
{
    const char *pw = wrong ? "nope" : "secret";
    size_t k = 2;
    const uint8_t vh[] = {0, 4, 'M', 'Q', 'T', 'T', 4};
    memcpy(b + k, vh, sizeof(vh));
    k += sizeof(vh);
    b[k++] = anonymous ? 0x02 : 0xc2;
    b[k++] = 0;
    b[k++] = 0;
    const char *fields[] = {"fz", anonymous ? NULL : "alice", anonymous ? NULL : pw};
    for (size_t i = 0; i < 3; i++) {
        if (fields[i] != NULL) {
            size_t n = strlen(fields[i]);
            b[k++] = 0;
            b[k++] = (uint8_t)n;
            memcpy(b + k, fields[i], n);
            k += n;
        }
    }
    b[0] = 0x10;
    b[1] = (uint8_t)(k - 2);
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    if (!is_ready) {
        fuzz_server_start(&srvs[0], 0, NULL);
        fuzz_server_start(&srvs[1], 1, NULL);
        is_ready = 1;
    }
    uint8_t flags = data[0];
    struct server *s = &srvs[(flags >> 7) & 1];
    size_t chunk = (size_t)1 << (flags & 15);
    uint8_t pre[64];
    size_t pre_len = (flags & 0x10) ? connect_packet(pre, flags & 0x20, flags & 0x40) : 0;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        abort();
    }
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    fuzz_conn_post_flags(s, sv[0], R_NEW_CONN_MQTT);
    size_t total = pre_len + size - 1, off = 0;
    uint8_t *stream = malloc(total ? total : 1);
    if (stream == NULL) {
        abort();
    }
    memcpy(stream, pre, pre_len);
    memcpy(stream + pre_len, data + 1, size - 1);
    int is_wr_open = 1;
    long long deadline = fuzz_ms_now() + FUZZ_DRAIN_MS;
    static uint8_t sink[65536];
    for (;;) {
        if (is_wr_open && off == total) {
            shutdown(sv[1], SHUT_WR);
            is_wr_open = 0;
        }
        struct pollfd p = {sv[1], (short)(POLLIN | (is_wr_open ? POLLOUT : 0)), 0};
        long long left = deadline - fuzz_ms_now();
        if (left <= 0) {
            fprintf(stderr, "fuzz_mqtt_conn: the server did not close the connection\n");
            abort();
        }
        if (poll(&p, 1, (int)left) < 0 && errno != EINTR) {
            abort();
        }
        if (p.revents & POLLIN || p.revents & POLLHUP) {
            ssize_t r = read(sv[1], sink, sizeof(sink));
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                break; /* closed by the server */
            }
        }
        if (is_wr_open && (p.revents & POLLOUT)) {
            size_t n = total - off < chunk ? total - off : chunk;
            ssize_t w = send(sv[1], stream + off, n, MSG_NOSIGNAL);
            if (w > 0) {
                off += (size_t)w;
            } else if (w < 0 && errno == EPIPE) {
                is_wr_open = 0; /* the server closed first */
            }
        } else if (p.revents & POLLERR) {
            is_wr_open = 0;
        }
    }
    close(sv[1]);
    free(stream);
    fuzz_wait_released(s, deadline);
    return 0;
}
