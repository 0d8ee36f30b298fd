/*
 * pl_client.c - the client side of the power-loss test (powerloss.sh).
 *
 *   pl_client pub HOST:PORT TOPIC LOG
 *       Publish messages 0, 1, 2, ... to TOPIC with acks, up to 256 in
 *       flight, until killed. Each PubAck appends "A <seq> <id>\n" to LOG
 *       (outside the simulated disk: a write(2) per ack, which survives the
 *       kill). Message id's payload is payload_of(id): its id and a filler
 *       whose length depends on the id, so that a message stored at the
 *       wrong sequence, or cut short, is caught.
 *   pl_client check HOST:PORT TOPIC LOG [tail]
 *       Read TOPIC from sequence 1 and check that every acked message of
 *       LOG is stored at its sequence with its exact payload, and that no
 *       sequence was acked twice. With "tail" (a sync policy that may lose
 *       the last commit on a power cut), acked messages after the topic's
 *       last stored sequence may be missing: the lost tail, counted; any
 *       other loss is a problem. Prints one summary line; exit 0 if all
 *       holds, 1 if not (each problem on stderr), 2 on a usage or
 *       connection error.
 */
#include "ferry.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 20000
#define PAYLOAD_MAX 20100

/* Runs of 512 small messages (at most 1 KiB) alternate with runs of 512
 * large ones (4 to 20 KiB): the store logs batches of the first and writes
 * batches of the second straight to LMDB with a checkpoint (its bulk path),
 * so power is cut during both, and between them. */
static size_t payload_of(uint64_t id, char *buf)
{
    int n = snprintf(buf, PAYLOAD_MAX, "m%" PRIu64 ":", id);
    size_t h = (size_t)((id * 2654435761u) % 16000u);
    size_t fill = (id / 512) % 2 == 0 ? h % 1000u : 4000u + h;
    for (size_t i = 0; i < fill; i++) {
        buf[n + i] = (char)('a' + (id + i) % 26);
    }
    return (size_t)n + fill;
}

static ferry_client *connect_to(const char *addr)
{
    ferry_options *o;
    ferry_client *c;
    if (ferry_options_create(&o) != 0) {
        return NULL;
    }
    ferry_options_set_servers(o, addr);
    ferry_options_set_reconnect(o, 0, 1, 10, 10, 0);
    ferry_options_set_resend_unacked(o, 0);
    ferry_options_set_max_inflight(o, 256);
    int rc = ferry_client_create(o, &c);
    ferry_options_destroy(o);
    if (rc != 0) {
        return NULL;
    }
    if (ferry_client_start_thread(c) != 0 || ferry_client_connect(c, WAIT_MS) != 0) {
        ferry_client_destroy(c);
        return NULL;
    }
    return c;
}

static int log_fd = -1;

static void on_ack(ferry_client *c, int status, uint64_t sequence, void *ctx)
{
    (void)c;
    if (status != 0) {
        return; /* not acked: nothing to check */
    }
    char line[64];
    int n = snprintf(line, sizeof(line), "A %" PRIu64 " %" PRIu64 "\n", sequence,
                     (uint64_t)(uintptr_t)ctx);
    if (write(log_fd, line, (size_t)n) != n) {
        _exit(3);
    }
}

static int run_pub(const char *addr, const char *topic, const char *log)
{
    log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        perror(log);
        return 2;
    }
    ferry_client *c = connect_to(addr);
    if (c == NULL) {
        fprintf(stderr, "pl_client: cannot connect to %s\n", addr);
        return 2;
    }
    char buf[PAYLOAD_MAX];
    for (uint64_t id = 0;; id++) {
        ferry_pub m = {.topic = topic, .payload = buf, .payload_len = payload_of(id, buf)};
        int rc = ferry_publish_async(c, &m, on_ack, (void *)(uintptr_t)id, NULL);
        if (rc != 0) {
            break; /* the broker is gone */
        }
    }
    ferry_client_destroy(c);
    return 0;
}

struct acked {
    uint64_t seq, id;
};

static int cmp_acked(const void *a, const void *b)
{
    const struct acked *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int run_check(const char *addr, const char *topic, const char *log, int is_tail_ok)
{
    FILE *f = fopen(log, "r");
    if (f == NULL) {
        perror(log);
        return 2;
    }
    struct acked *v = NULL;
    size_t n = 0, cap = 0;
    uint64_t seq, id;
    while (fscanf(f, "A %" SCNu64 " %" SCNu64 "\n", &seq, &id) == 2) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            v = realloc(v, cap * sizeof(*v));
            if (v == NULL) {
                return 2;
            }
        }
        v[n].seq = seq;
        v[n].id = id;
        n++;
    }
    fclose(f);
    if (n > 0) {
        qsort(v, n, sizeof(*v), cmp_acked);
    }
    int bad = 0;
    for (size_t i = 1; i < n; i++) {
        if (v[i].seq == v[i - 1].seq) {
            fprintf(stderr, "sequence %" PRIu64 " acked twice (ids %" PRIu64 ", %" PRIu64 ")\n",
                    v[i].seq, v[i - 1].id, v[i].id);
            bad++;
        }
    }
    ferry_client *c = connect_to(addr);
    if (c == NULL) {
        fprintf(stderr, "pl_client: cannot connect to %s\n", addr);
        return 2;
    }
    ferry_topic_info ti;
    int rc = ferry_admin_topic_info(c, topic, WAIT_MS, &ti);
    uint64_t last = rc == 0 ? ti.last_seq : 0;
    if (rc != 0 && rc != FERRY_ENOTOPIC) {
        fprintf(stderr, "topic info: %s\n", ferry_strerror(rc));
        return 2;
    }
    size_t k = 0; /* next acked entry to meet */
    uint64_t n_read = 0;
    if (last > 0) {
        ferry_sub_options *so;
        ferry_sub_options_create(&so);
        ferry_sub_options_set_start(so, FERRY_START_ALL, 0);
        /* Flow control: the broker sends at most 8192 unacked, so a topic
         * larger than the client's queue is never cut short by it. */
        ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT);
        ferry_sub_options_set_max_in_flight(so, 8192);
        ferry_sub_options_set_queue_max(so, 1u << 20);
        ferry_sub *s;
        rc = ferry_subscribe(c, topic, so, NULL, NULL, WAIT_MS, &s);
        ferry_sub_options_destroy(so);
        if (rc != 0) {
            fprintf(stderr, "subscribe: %s\n", ferry_strerror(rc));
            return 2;
        }
        for (uint64_t q = 0; q < last;) {
            ferry_msg *m;
            rc = ferry_sub_next(s, WAIT_MS, &m);
            if (rc != 0) {
                fprintf(stderr, "reading sequence %" PRIu64 " of %" PRIu64 ": %s\n", q + 1, last,
                        ferry_strerror(rc));
                bad++;
                break;
            }
            q = ferry_msg_sequence(m);
            n_read++;
            while (k < n && v[k].seq < q) {
                fprintf(stderr, "acked sequence %" PRIu64 " (id %" PRIu64 ") is missing\n",
                        v[k].seq, v[k].id);
                bad++;
                k++;
            }
            for (; k < n && v[k].seq == q; k++) {
                char want[PAYLOAD_MAX];
                size_t wl = payload_of(v[k].id, want), len;
                const void *p = ferry_msg_data(m, &len);
                if (len != wl || memcmp(p, want, wl) != 0) {
                    fprintf(stderr, "sequence %" PRIu64 ": not the payload of id %" PRIu64 "\n", q,
                            v[k].id);
                    bad++;
                }
            }
            ferry_msg_ack(m, FERRY_ACK);
            ferry_msg_destroy(m);
        }
        if (ferry_sub_dropped(s) != 0) {
            fprintf(stderr, "the client dropped %" PRIu64 " messages: the check is void\n",
                    ferry_sub_dropped(s));
            bad++;
        }
    }
    size_t n_lost = 0;
    for (; k < n; k++) {
        if (is_tail_ok && v[k].seq > last) {
            n_lost++; /* the last commit, lost by a weaker sync policy */
            continue;
        }
        fprintf(stderr,
                "acked sequence %" PRIu64 " (id %" PRIu64 ") is missing (last %" PRIu64 ")\n",
                v[k].seq, v[k].id, last);
        bad++;
    }
    printf("acked %zu, stored %" PRIu64 ", read %" PRIu64 ", lost tail %zu, problems %d\n", n, last,
           n_read, n_lost, bad);
    ferry_client_close(c, WAIT_MS);
    ferry_client_destroy(c);
    free(v);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc != 5 && !(argc == 6 && strcmp(argv[5], "tail") == 0)) {
        fprintf(stderr, "usage: pl_client pub|check HOST:PORT TOPIC LOG [tail]\n");
        return 2;
    }
    if (strcmp(argv[1], "pub") == 0) {
        return run_pub(argv[2], argv[3], argv[4]);
    }
    if (strcmp(argv[1], "check") == 0) {
        return run_check(argv[2], argv[3], argv[4], argc == 6);
    }
    fprintf(stderr, "usage: pl_client pub|check HOST:PORT TOPIC LOG\n");
    return 2;
}
