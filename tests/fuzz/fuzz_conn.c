/*
 * fuzz_conn.c - libFuzzer target for the broker's connection state machine.
 *
 * An IO thread and a worker run in-process (as in tests/unit/test_conn.c),
 * twice: one server without an auth file, one with users, a token and ACLs
 * (credential checks on the auth pool). Each input is one connection over a
 * socketpair, handed to the IO thread as the acceptor would:
 *
 *   byte 0: bits 0-3 size of the writes (1 << n bytes), bit 4 start with a
 *           valid Connect, bit 5 its password is wrong, bit 6 it carries the
 *           token instead, bit 7 use the server with the auth file;
 *   rest:   raw bytes as a peer would send them (frames or garbage).
 *
 * We write the bytes while reading whatever comes back, half-close, and read
 * until the server closes. Then the server must drop the connection: its
 * count returns to zero within a bound (no connection leaks, no wedged
 * state). Crashes and sanitizer reports are the other findings.
 */
#include "auth.h"
#include "codec.h"
#include "frame.h"
#include "io_thread.h"
#include "log.h"
#include "server.h"
#include "worker.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DRAIN_MS 10000 /* the server must close within this: else a hang */

static struct server srvs[2];
static int is_ready;

static long long ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *hash_of(const char *pw)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    if (crypt_gensalt_rn("$6$", 1000, NULL, 0, setting, sizeof(setting)) == NULL) {
        abort();
    }
    const char *h = crypt_rn(pw, setting, &cd, sizeof(cd));
    if (h == NULL || h[0] == '*') {
        abort();
    }
    return strdup(h);
}

static void server_start(struct server *s, int with_auth)
{
    memset(s, 0, sizeof(*s));
    cfg_defaults(&s->cfg);
    s->cfg.keepalive_min_ms = 20;
    s->cfg.connect_timeout_ms = 300;
    s->cfg.max_subs = 64;
    s->n_iot = 1;
    s->n_workers = 1;
    strcpy(s->server_id, "fuzz");
    atomic_init(&s->next_client_id, 1);
    auth_holder_init(&s->auth);
    if (with_auth) {
        char *ha = hash_of("secret"), *ht = hash_of("tok");
        char text[1024];
        snprintf(text, sizeof(text),
                 "user alice %s\ntoken ci %s\n"
                 "allow alice publish a.*\nallow alice subscribe a.>\n"
                 "allow alice subscribe b.*.c\nallow ci admin\nallow ci publish >\n",
                 ha, ht);
        free(ha);
        free(ht);
        struct auth_table *t;
        char err[256];
        if (auth_table_parse(text, strlen(text), "fuzz", &t, err, sizeof(err)) != 0) {
            fprintf(stderr, "fuzz_conn: %s\n", err);
            abort();
        }
        auth_holder_set(&s->auth, t);
        /* No waits after failures: fuzzing stays fast. */
        struct login_limits lim = {.max_unauth = 1u << 20, .max_unauth_per_addr = 1u << 20};
        if (login_gate_init(&s->login, &lim, 64) != 0) {
            abort();
        }
        s->auth_pool = auth_pool_create(1, 64, iot_auth_done, s);
    }
    if (server_tables_alloc(s) < 0 || (with_auth && s->auth_pool == NULL)) {
        abort();
    }
    s->workers[0] = worker_create(s, 0);
    s->iots[0] = iot_create(s, 0);
    if (!s->workers[0] || !s->iots[0] || worker_start(s->workers[0]) != 0 ||
        iot_start(s->iots[0]) != 0) {
        abort();
    }
}

/* A valid Connect frame, encoded into buf; returns its length. */
static size_t connect_frame(uint8_t *buf, size_t cap, int wrong, int token)
{
    Ferry__Connect m = FERRY__CONNECT__INIT;
    m.protocol_version = 1;
    m.client_name = (char *)"fuzz";
    m.keepalive_ms = 60000;
    if (token) {
        m.token = (char *)(wrong ? "ci:nope" : "ci:tok");
    } else {
        m.username = (char *)"alice";
        m.password = (char *)(wrong ? "nope" : "secret");
    }
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_CONNECT;
    f.connect = &m;
    uint8_t *wire = NULL;
    size_t n = 0;
    if (codec_frame_encode_alloc(&f, &wire, &n) != 0 || n > cap) {
        abort();
    }
    memcpy(buf, wire, n);
    free(wire);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    if (!is_ready) {
        log_level_set(LOG_ERROR); /* refusals are the normal case here */
        server_start(&srvs[0], 0);
        server_start(&srvs[1], 1);
        is_ready = 1;
    }
    uint8_t flags = data[0];
    struct server *s = &srvs[(flags >> 7) & 1];
    size_t chunk = (size_t)1 << (flags & 15);
    uint8_t pre[512];
    size_t pre_len =
        (flags & 0x10) ? connect_frame(pre, sizeof(pre), flags & 0x20, flags & 0x40) : 0;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        abort();
    }
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    atomic_fetch_add(&s->conns_now, 1);
    struct rmsg m = {.kind = R_NEW_CONN};
    m.u.fd = sv[0];
    if (mbox_post(s->iot_in[0], &m, 1) != 0) {
        abort();
    }
    /* the stream: the Connect prefix, then the input */
    size_t total = pre_len + size - 1, off = 0;
    uint8_t *stream = malloc(total ? total : 1);
    if (stream == NULL) {
        abort();
    }
    memcpy(stream, pre, pre_len);
    memcpy(stream + pre_len, data + 1, size - 1);
    int is_wr_open = 1;
    long long deadline = ms_now() + DRAIN_MS;
    static uint8_t sink[65536];
    for (;;) {
        if (is_wr_open && off == total) {
            shutdown(sv[1], SHUT_WR);
            is_wr_open = 0;
        }
        struct pollfd p = {sv[1], (short)(POLLIN | (is_wr_open ? POLLOUT : 0)), 0};
        long long left = deadline - ms_now();
        if (left <= 0) {
            fprintf(stderr, "fuzz_conn: the server did not close the connection\n");
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
    /* The IO thread has closed its end; it must also have forgotten it. */
    while (atomic_load(&s->conns_now) != 0) {
        if (ms_now() > deadline) {
            fprintf(stderr, "fuzz_conn: a connection was never released\n");
            abort();
        }
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    return 0;
}
