/*
 * bench_pubsub.c - ferryd against the zero-logic relay, same run, same load.
 *
 *   ferry_bench_pubsub [--count N] [--size BYTES] [--runs R] [--ferryd-arg ARG]...
 *
 * Scenarios: 1 publisher -> 1 subscriber, and 1 -> 8 fan-out, with 128-byte
 * payloads by default. For each, the relay (ferry_relay: copies the
 * publisher's bytes to every subscriber) runs first, then a fresh ferryd on
 * port 0 with the same frames: the publisher writes pre-encoded Publish
 * frames as fast as the socket takes them; each subscriber counts frames
 * (length prefixes) until it has seen N. The rate is deliveries per second
 * (N x subscribers / time from the first write to the last subscriber's
 * last frame); the median of R runs is printed with the ratio ferry/relay.
 * Everything shares the machine's cores with the load generator, as in
 * DESIGN.md's Targets. ferryd runs with --ephemeral 'bench.>' (routing, not
 * storage, is measured) and --max-outbound-bytes 64m (the subscriber may lag
 * a moment behind a flat-out publisher); later --ferryd-arg flags override
 * them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"

#ifndef FERRYD_PATH
#error "FERRYD_PATH must name ferryd"
#endif
#ifndef RELAY_PATH
#error "RELAY_PATH must name ferry_relay"
#endif

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The server of the run in progress: stopped on any exit, so a failed run
 * leaves nothing behind. */
static pid_t g_child;

static void kill_child(void)
{
    if (g_child > 0) {
        kill(g_child, SIGKILL);
        waitpid(g_child, NULL, 0);
        g_child = 0;
    }
}

static void die(const char *what)
{
    fprintf(stderr, "bench: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Start a program that prints "...listening on 127.0.0.1:PORT"; return pid. */
static pid_t spawn(const char *const *argv, int *port)
{
    int fds[2];
    if (pipe(fds) < 0) {
        die("pipe");
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    g_child = pid;
    char line[256];
    size_t len = 0;
    while (len < sizeof(line) - 1) {
        ssize_t r = read(fds[0], line + len, 1);
        if (r <= 0) {
            fprintf(stderr, "bench: %s did not start\n", argv[0]);
            exit(1);
        }
        if (line[len] == '\n') {
            break;
        }
        len++;
    }
    line[len] = '\0';
    close(fds[0]);
    char *colon = strrchr(line, ':');
    *port = colon ? atoi(colon + 1) : 0;
    if (*port <= 0) {
        fprintf(stderr, "bench: cannot parse \"%s\"\n", line);
        exit(1);
    }
    return pid;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        die("connect");
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("write");
        }
        c += w;
        n -= (size_t)w;
    }
}

static void send_frame(int fd, const Ferry__Frame *f)
{
    uint8_t buf[512];
    size_t len;
    if (codec_frame_encode(f, buf, sizeof(buf), &len) < 0) {
        fprintf(stderr, "bench: encode failed\n");
        exit(1);
    }
    write_all(fd, buf, len);
}

/* Read frames until one of body case `kind` arrives (handshake only). */
static void await(int fd, Ferry__Frame__BodyCase kind)
{
    struct frame_dec d;
    struct codec_arena a;
    frame_dec_init(&d, FRAME_MAX_LEN_DEFAULT);
    codec_arena_init(&a);
    for (;;) {
        const uint8_t *body;
        size_t len;
        int rc = frame_dec_next(&d, &body, &len);
        if (rc == 1) {
            Ferry__Frame *f;
            if (codec_frame_decode(&a, body, len, &f) == 0 && f->body_case == kind) {
                break;
            }
            continue;
        }
        uint8_t *p;
        size_t room;
        /* Handshake replies arrive alone; read one byte at a time so that
         * nothing after them is consumed here. */
        if (rc < 0 || frame_dec_space(&d, 1, &p, &room) < 0 || read(fd, p, 1) != 1) {
            fprintf(stderr, "bench: handshake failed\n");
            exit(1);
        }
        frame_dec_commit(&d, 1);
    }
    frame_dec_deinit(&d);
    codec_arena_deinit(&a);
}

struct reader {
    int fd;
    long long want;
    double end;
    pthread_t th;
};

/* Count frames by their length prefixes. */
static void *reader_main(void *arg)
{
    struct reader *r = arg;
    static _Thread_local uint8_t buf[256 * 1024];
    long long frames = 0;
    uint8_t hdr[4];
    int hdr_have = 0;
    size_t skip = 0;
    while (frames < r->want) {
        ssize_t n = read(r->fd, buf, sizeof(buf));
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            fprintf(stderr, "bench: subscriber stream ended after %lld frames (%s)\n", frames,
                    n < 0 ? strerror(errno) : "closed by the server");
            exit(1);
        }
        size_t i = 0;
        while (i < (size_t)n) {
            if (skip > 0) {
                size_t k = (size_t)n - i < skip ? (size_t)n - i : skip;
                i += k;
                skip -= k;
                if (skip == 0) {
                    frames++;
                }
                continue;
            }
            hdr[hdr_have++] = buf[i++];
            if (hdr_have == 4) {
                hdr_have = 0;
                skip = frame_hdr_get(hdr);
                if (skip == 0) {
                    frames++;
                }
            }
        }
    }
    r->end = now_s();
    return NULL;
}

/* One run: returns deliveries per second. */
static double run(int use_ferry, int n_subs, long long count, size_t size,
                  const char *const *ferryd_args)
{
    int port;
    pid_t pid;
    char subs_arg[16];
    char dir[] = "/tmp/ferry-bench-XXXXXX";
    if (use_ferry) {
        if (mkdtemp(dir) == NULL) {
            die("mkdtemp");
        }
        /* Ephemeral pub/sub is what this measures: the bench topic is not
         * stored. The publisher runs flat out; a subscriber thread that falls
         * behind for a moment must not be cut off as a slow consumer at the
         * default 8 MiB (nats-server allows 64 MiB by default too). */
        const char *argv[32] = {FERRYD_PATH,  "--listen",    "127.0.0.1:0", "--data-dir",
                                dir,          "--log-level", "warn",        "--ephemeral",
                                "bench.>",    "--max-outbound-bytes",       "64m"};
        int k = 11;
        for (int i = 0; ferryd_args[i] && k < 31; i++) {
            argv[k++] = ferryd_args[i];
        }
        argv[k] = NULL;
        pid = spawn(argv, &port);
    } else {
        snprintf(subs_arg, sizeof(subs_arg), "%d", n_subs);
        const char *argv[] = {RELAY_PATH, "--subs", subs_arg, NULL};
        pid = spawn(argv, &port);
    }

    Ferry__Connect cm = FERRY__CONNECT__INIT;
    cm.protocol_version = 1;
    cm.client_name = (char *)"bench";
    Ferry__Frame cf = FERRY__FRAME__INIT;
    cf.body_case = FERRY__FRAME__BODY_CONNECT;
    cf.connect = &cm;

    struct reader *rd = calloc((size_t)n_subs, sizeof(*rd));
    for (int i = 0; i < n_subs; i++) {
        rd[i].fd = dial(port);
        rd[i].want = count;
        if (use_ferry) {
            send_frame(rd[i].fd, &cf);
            await(rd[i].fd, FERRY__FRAME__BODY_CONNECTED);
            Ferry__Subscribe sm = FERRY__SUBSCRIBE__INIT;
            sm.sub_id = 1;
            sm.pattern = (char *)"bench.topic";
            Ferry__Frame sf = FERRY__FRAME__INIT;
            sf.body_case = FERRY__FRAME__BODY_SUBSCRIBE;
            sf.subscribe = &sm;
            send_frame(rd[i].fd, &sf);
            await(rd[i].fd, FERRY__FRAME__BODY_SUB_ACK);
        } else {
            write_all(rd[i].fd, "S", 1);
        }
    }
    int pub = dial(port);
    if (use_ferry) {
        send_frame(pub, &cf);
        await(pub, FERRY__FRAME__BODY_CONNECTED);
    } else {
        write_all(pub, "P", 1);
    }

    /* One Publish frame, repeated to fill a 256 KiB write buffer. */
    uint8_t *payload = malloc(size);
    memset(payload, 'x', size);
    Ferry__Publish pm = FERRY__PUBLISH__INIT;
    pm.topic = (char *)"bench.topic";
    pm.payload.data = payload;
    pm.payload.len = size;
    Ferry__Frame pf = FERRY__FRAME__INIT;
    pf.body_case = FERRY__FRAME__BODY_PUBLISH;
    pf.publish = &pm;
    uint8_t *one;
    size_t one_len;
    if (codec_frame_encode_alloc(&pf, &one, &one_len) < 0) {
        fprintf(stderr, "bench: encode failed\n");
        exit(1);
    }
    size_t per = (256 * 1024) / one_len;
    if (per == 0) {
        per = 1;
    }
    uint8_t *chunk = malloc(per * one_len);
    for (size_t i = 0; i < per; i++) {
        memcpy(chunk + i * one_len, one, one_len);
    }

    for (int i = 0; i < n_subs; i++) {
        pthread_create(&rd[i].th, NULL, reader_main, &rd[i]);
    }
    double start = now_s();
    long long left = count;
    while (left > 0) {
        long long k = left < (long long)per ? left : (long long)per;
        write_all(pub, chunk, (size_t)k * one_len);
        left -= k;
    }
    double end = start;
    for (int i = 0; i < n_subs; i++) {
        pthread_join(rd[i].th, NULL);
        end = rd[i].end > end ? rd[i].end : end;
    }
    close(pub);
    for (int i = 0; i < n_subs; i++) {
        close(rd[i].fd);
    }
    if (use_ferry) {
        kill(pid, SIGTERM);
    }
    int st;
    waitpid(pid, &st, 0);
    g_child = 0;
    if (use_ferry) {
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench: could not remove %s\n", dir);
        }
    }
    free(rd);
    free(payload);
    free(one);
    free(chunk);
    return (double)count * n_subs / (end - start);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    long long count = 2000000;
    size_t size = 128;
    int runs = 3;
    const char *ferryd_args[32] = {NULL};
    int n_args = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = atoll(argv[++i]);
        } else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
            size = (size_t)atol(argv[++i]);
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--ferryd-arg") == 0 && i + 1 < argc && n_args < 31) {
            ferryd_args[n_args++] = argv[++i];
        } else {
            fprintf(stderr, "usage: ferry_bench_pubsub [--count N] [--size BYTES] [--runs R] "
                            "[--ferryd-arg ARG]...\n");
            return 2;
        }
    }
    if (runs < 1 || runs > 15 || count < 1 || size > 60000) {
        fprintf(stderr, "bench: bad arguments\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    atexit(kill_child);
    printf("ferry bench: %lld messages of %zu bytes per run, median of %d runs\n", count, size,
           runs);
    printf("%-22s %16s %16s %8s\n", "scenario", "relay msgs/s", "ferryd msgs/s", "ratio");
    const int fan[] = {1, 8};
    for (int s = 0; s < 2; s++) {
        double rr[15], fr[15];
        long long n = fan[s] == 1 ? count : count / 4; /* keep fan-out runs short */
        for (int r = 0; r < runs; r++) {
            rr[r] = run(0, fan[s], n, size, ferryd_args);
            fr[r] = run(1, fan[s], n, size, ferryd_args);
        }
        qsort(rr, (size_t)runs, sizeof(double), cmp_double);
        qsort(fr, (size_t)runs, sizeof(double), cmp_double);
        char name[32];
        snprintf(name, sizeof(name), "1 -> %d%s", fan[s], fan[s] > 1 ? " (deliveries)" : "");
        printf("%-22s %16.0f %16.0f %7.1f%%\n", name, rr[runs / 2], fr[runs / 2],
               100.0 * fr[runs / 2] / rr[runs / 2]);
        fflush(stdout);
    }
    return 0;
}
