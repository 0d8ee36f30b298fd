/*
 * cmd_bench.c - `ferry bench`: publishers and subscribers on one topic,
 * measuring throughput and end-to-end latency.
 *
 * Every publisher and every subscriber is its own client. A subscriber
 * runs in event-loop mode on its own thread, which does the reads and runs
 * the message callback: it owns its counters and latency histogram, with no
 * lock handoff per message. A publisher runs in thread mode: its thread
 * queues messages while the library's IO thread writes them in batches
 * (in event-loop mode the library sends once per publish). Publishers reuse
 * one payload buffer (the library copies), so the benchmark allocates
 * nothing per message, and the library's window and output-buffer limits
 * block them when the broker falls behind: nothing queues without bound.
 *
 * Payload layout (when --size >= 16): bytes 0..7 the CLOCK_MONOTONIC send
 * time in ns (host order: publishers and subscribers share this process and
 * its clock), 8..11 a random run id (messages of other runs on the same
 * topic are counted as foreign and ignored), 12..15 the publisher index. The
 * rest is filler. With --size 8..15 only the timestamp fits (no run id);
 * below 8 no latency is measured.
 */
#include "cli.h"
#include "cli_util.h"
#include "hist.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_HDR_LEN 16
#define BENCH_MAX_CLIENTS 256

static const char bench_help[] =
    "Usage: ferry bench [OPTIONS]\n"
    "\n"
    "Run publishers and subscribers against the broker on one topic and report\n"
    "publish and delivery throughput (msgs/s, MB/s) and end-to-end latency\n"
    "percentiles (p50, p90, p99, p99.9, max; from a log-bucketed histogram\n"
    "with 1.6 % resolution). Every subscriber receives every message. Shows a\n"
    "live progress line when standard output is a terminal.\n"
    "\n"
    "Options:\n"
    "  -p, --pubs N          publishers, each its own connection (default 1)\n"
    "  -S, --subs N          subscribers, each its own connection (default 1;\n"
    "                        0 measures publishing alone)\n"
    "  -z, --size BYTES      payload size (default 128; k/M suffixes; at least\n"
    "                        8 for latency, 16 to tell this run's messages\n"
    "                        from other publishers' on the same topic)\n"
    "  -n, --count N         messages in total, shared by the publishers\n"
    "                        (default 1000000)\n"
    "  -d, --duration DUR    publish for DUR instead of a count (10s, 1m)\n"
    "  -r, --rate R          total publish rate in msgs/s (default: as fast as\n"
    "                        possible); for latency at a steady load\n"
    "  -w, --ack-window N    ask for PubAcks with at most N publishes in flight\n"
    "                        per publisher (default 0: fire-and-forget)\n"
    "  -t, --topic TOPIC     topic to use (default bench)\n"
    "  -T, --topics N        spread over N topics TOPIC.0 .. TOPIC.N-1: publisher\n"
    "                        i publishes to, and subscriber j reads, topic i mod\n"
    "                        N (j mod N); each subscriber gets every message of\n"
    "                        its topic (default 1: TOPIC itself)\n"
    "      --persistent      expect a stored topic (warn if the broker routes\n"
    "                        it ephemerally)\n"
    "      --ephemeral       expect an ephemeral topic (warn if it is stored);\n"
    "                        ferryd decides: topics matching its --ephemeral\n"
    "                        PATTERN are routed without being stored\n"
    "  -j, --json            print the results as one JSON object\n"
    "      --no-progress     no live progress line, even on a terminal\n"
    "      --keep            keep the stored messages of the run; by default a\n"
    "                        topic that held no messages before the run is\n"
    "                        purged after it, so benchmarks do not fill the store\n"
    "      --no-idempotent   acked publishes without a producer id and sequence\n"
    "                        (libferry marks them by default; measures its cost)\n"
    "\n"
    "The exit status is 1 when a subscriber did not receive every message, or\n"
    "a publish failed.\n"
    "\n"
    "Examples:\n"
    "  ferry bench                                  # 1 -> 1, 1M x 128 B\n"
    "  ferry bench --pubs 1 --subs 8 --count 2000000   # fan-out\n"
    "  ferry bench --pubs 4 --subs 4 --topics 4         # 4 independent streams\n"
    "  ferry bench --size 16k --duration 10s\n"
    "  ferry bench --persistent --ack-window 256 --subs 0 --count 500000\n"
    "  ferry bench --ephemeral --topic fast.bench   # ferryd --ephemeral 'fast.>'\n"
    "  ferry bench --rate 20000 --duration 10s --json   # latency at 20k msgs/s\n";

enum {
    OPT_PERSISTENT = 0x100,
    OPT_EPHEMERAL,
    OPT_NO_PROGRESS,
    OPT_KEEP,
    OPT_NO_IDEMPOTENT,
};

struct bench_args {
    const char *cmd;
    uint64_t pubs, subs, size, count, duration_ns, rate, ack_window, topics;
    bool has_count, has_duration;
    const char *topic;
    int expect_mode; /* 0 any, 1 persistent, 2 ephemeral */
    bool json;
    bool no_progress;
    bool keep;
    bool no_idempotent;
};

struct bench_pub {
    pthread_t thread;
    unsigned idx;
    ferry_client *c;
    const struct bench_args *a;
    const char *topic; /* this publisher's topic */
    uint32_t run_id;
    uint64_t target;     /* messages to send; UINT64_MAX with --duration */
    uint64_t start_ns;   /* monotonic, when publishing began */
    uint64_t end_ns;     /* monotonic, when everything was flushed */
    uint64_t stop_at_ns; /* with --duration: start_ns + duration */
    uint64_t sent;       /* atomic: written by this thread, read by main */
    uint64_t acked;      /* atomic */
    uint64_t failed;     /* atomic */
    int seen_sequence;   /* atomic: -1 no ack yet, 0 seq 0 seen, 1 seq > 0 seen */
    int error;           /* the error that stopped it, 0 if none */
};

struct bench_sub {
    pthread_t thread;
    unsigned idx;
    const char *topic; /* this subscriber's topic */
    uint64_t expected; /* atomic: messages published to it; UINT64_MAX until known */
    ferry_client *c;
    ferry_sub *s;
    uint32_t run_id;
    size_t size;
    struct hist *lat;  /* this thread only until joined */
    uint64_t received; /* atomic */
    uint64_t bytes;
    uint64_t foreign;
    uint64_t first_ns, last_ns;
    int error;
};

/* Shared between the main thread and the workers. */
static int bench_stop_pubs; /* atomic */
static int bench_stop_subs; /* atomic */

static int bench_opt(int opt, const char *arg, void *ctx)
{
    struct bench_args *a = ctx;
    switch (opt) {
    case 'p':
        if (cli_parse_u64(arg, &a->pubs) < 0 || a->pubs < 1 || a->pubs > BENCH_MAX_CLIENTS) {
            return cli_usage(a->cmd, "--pubs needs a number from 1 to %d, not '%s'",
                             BENCH_MAX_CLIENTS, arg);
        }
        return -1;
    case 'S':
        if (cli_parse_u64(arg, &a->subs) < 0 || a->subs > BENCH_MAX_CLIENTS) {
            return cli_usage(a->cmd, "--subs needs a number from 0 to %d, not '%s'",
                             BENCH_MAX_CLIENTS, arg);
        }
        return -1;
    case 'z':
        if (cli_parse_size(arg, &a->size) < 0 || a->size > 64ull * 1024 * 1024) {
            return cli_usage(a->cmd, "--size needs a size up to 64M (128, 16k, 1M), not '%s'", arg);
        }
        return -1;
    case 'n':
        if (cli_parse_u64(arg, &a->count) < 0 || a->count == 0) {
            return cli_usage(a->cmd, "--count needs a number from 1, not '%s'", arg);
        }
        a->has_count = true;
        return -1;
    case 'd':
        if (cli_parse_duration_ns(arg, &a->duration_ns) < 0 || a->duration_ns == 0) {
            return cli_usage(a->cmd, "--duration needs a positive duration (10s, 1m), not '%s'",
                             arg);
        }
        a->has_duration = true;
        return -1;
    case 'r':
        if (cli_parse_u64(arg, &a->rate) < 0 || a->rate == 0) {
            return cli_usage(a->cmd, "--rate needs messages per second from 1, not '%s'", arg);
        }
        return -1;
    case 'w':
        if (cli_parse_u64(arg, &a->ack_window) < 0 || a->ack_window > 1048576) {
            return cli_usage(a->cmd, "--ack-window needs a number from 0 to 1048576, not '%s'",
                             arg);
        }
        return -1;
    case 't':
        a->topic = arg;
        return -1;
    case 'T':
        if (cli_parse_u64(arg, &a->topics) < 0 || a->topics < 1 || a->topics > BENCH_MAX_CLIENTS) {
            return cli_usage(a->cmd, "--topics needs a number from 1 to %d, not '%s'",
                             BENCH_MAX_CLIENTS, arg);
        }
        return -1;
    case 'j':
        a->json = true;
        return -1;
    case OPT_PERSISTENT:
        a->expect_mode = 1;
        return -1;
    case OPT_EPHEMERAL:
        a->expect_mode = 2;
        return -1;
    case OPT_NO_PROGRESS:
        a->no_progress = true;
        return -1;
    case OPT_KEEP:
        a->keep = true;
        return -1;
    case OPT_NO_IDEMPOTENT:
        a->no_idempotent = true;
        return -1;
    default:
        return cli_usage(a->cmd, "unexpected option");
    }
}

static uint64_t load64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void store64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/*
 * One round of IO for an event-loop client: wait up to wait_ms for what it
 * wants (readable, or writable while it has bytes to send), then process.
 */
static int drive_io(ferry_client *c, int wait_ms)
{
    int fd = ferry_client_fd(c);
    int ev = ferry_client_events(c);
    int tmo = ferry_client_timeout_ms(c);
    if (tmo >= 0 && tmo < wait_ms) {
        wait_ms = tmo;
    }
    int revents = 0;
    if (fd >= 0 && ev > 0) {
        struct pollfd p = {.fd = fd, .events = (short)ev};
        int n = poll(&p, 1, wait_ms);
        if (n > 0) {
            revents = p.revents;
        }
    } else if (wait_ms > 0) {
        poll(NULL, 0, wait_ms);
    }
    return ferry_client_process(c, revents);
}

static void on_bench_ack(ferry_client *c, int status, uint64_t sequence, void *userdata)
{
    (void)c;
    struct bench_pub *p = userdata;
    if (status == 0) {
        store64(&p->acked, p->acked + 1); /* only the IO thread writes */
        if (p->seen_sequence < 0) {
            __atomic_store_n(&p->seen_sequence, sequence > 0 ? 1 : 0, __ATOMIC_RELAXED);
        }
    } else {
        if (p->failed == 0) {
            char text[256] = "";
            if (ferry_client_last_error(c, text, sizeof(text)) != status) {
                text[0] = '\0';
            }
            cli_err("publisher %u: publish failed: %s", p->idx,
                    text[0] ? text : ferry_strerror(status));
        }
        store64(&p->failed, p->failed + 1);
    }
}

static void *pub_main(void *arg)
{
    struct bench_pub *p = arg;
    const struct bench_args *a = p->a;
    size_t size = (size_t)a->size;
    unsigned char *payload = malloc(size ? size : 1);
    if (!payload) {
        p->error = -ENOMEM;
        return NULL;
    }
    for (size_t i = 0; i < size; i++) {
        payload[i] = (unsigned char)('a' + i % 26);
    }
    if (size >= BENCH_HDR_LEN) {
        memcpy(payload + 8, &p->run_id, 4);
        uint32_t idx = p->idx;
        memcpy(payload + 12, &idx, 4);
    }
    /* About 64 KiB per batch, between 1 and 1024 messages. */
    uint64_t batch = 65536 / (size ? size : 1);
    batch = batch < 1 ? 1 : (batch > 1024 ? 1024 : batch);
    /* Per-publisher pace in ns per message with --rate. */
    double ns_per_msg = a->rate ? 1e9 * (double)a->pubs / (double)a->rate : 0.0;
    const ferry_pub m = {.topic = p->topic, .payload = payload, .payload_len = size};

    p->start_ns = cli_now_mono_ns();
    p->stop_at_ns = a->has_duration ? p->start_ns + a->duration_ns : 0;
    uint64_t sent = 0;
    int rc = 0;
    while (sent < p->target && !__atomic_load_n(&bench_stop_pubs, __ATOMIC_RELAXED)) {
        uint64_t now = cli_now_mono_ns();
        if (p->stop_at_ns && now >= p->stop_at_ns) {
            break;
        }
        uint64_t n = batch;
        if (ns_per_msg > 0) {
            uint64_t due = (uint64_t)((double)(now - p->start_ns) / ns_per_msg) + 1;
            if (due <= sent) {
                /* Ahead of schedule: sleep until the next one is due. */
                uint64_t next = p->start_ns + (uint64_t)((double)sent * ns_per_msg);
                if (next > now) {
                    struct timespec ts = {.tv_sec = (time_t)((next - now) / 1000000000u),
                                          .tv_nsec = (long)((next - now) % 1000000000u)};
                    nanosleep(&ts, NULL);
                }
                continue;
            }
            n = due - sent < batch ? due - sent : batch;
        }
        if (n > p->target - sent) {
            n = p->target - sent;
        }
        /* The library's IO thread writes while we queue; both calls block
         * when its window or output buffer is full (backpressure). */
        for (uint64_t i = 0; i < n; i++) {
            if (size >= 8) {
                uint64_t ts = cli_now_mono_ns();
                memcpy(payload, &ts, 8);
            }
            rc = a->ack_window ? ferry_publish_async(p->c, &m, on_bench_ack, p, NULL)
                               : ferry_publish(p->c, p->topic, payload, size);
            if (rc < 0) {
                break;
            }
            sent++;
        }
        store64(&p->sent, sent);
        if (rc < 0) {
            break;
        }
    }
    store64(&p->sent, sent);
    if (rc >= 0) {
        /* Everything written and, with acks, acknowledged. */
        rc = ferry_flush(p->c, 60000);
    }
    if (rc < 0) {
        p->error = rc;
        cli_fail(p->c, rc, "publisher %u", p->idx);
    }
    free(payload);
    /* Last: the main thread takes a non-zero end_ns as "finished". */
    __atomic_store_n(&p->end_ns, cli_now_mono_ns(), __ATOMIC_RELEASE);
    return NULL;
}

static void on_bench_msg(ferry_client *c, ferry_sub *s, const ferry_msg *m, void *userdata)
{
    (void)c;
    (void)s;
    struct bench_sub *b = userdata;
    size_t len;
    const unsigned char *d = ferry_msg_data(m, &len);
    uint64_t now = cli_now_mono_ns();
    if (len >= BENCH_HDR_LEN) {
        uint32_t run;
        memcpy(&run, d + 8, 4);
        if (run != b->run_id) {
            b->foreign++;
            return;
        }
    } else if (len != b->size) {
        b->foreign++;
        return;
    }
    if (len >= 8) {
        uint64_t ts;
        memcpy(&ts, d, 8);
        hist_record(b->lat, now > ts ? now - ts : 0);
    }
    if (b->received == 0) {
        b->first_ns = now;
    }
    b->last_ns = now;
    b->bytes += len;
    store64(&b->received, b->received + 1);
}

static void *sub_main(void *arg)
{
    struct bench_sub *b = arg;
    while (!__atomic_load_n(&bench_stop_subs, __ATOMIC_RELAXED)) {
        int rc = drive_io(b->c, 50);
        if (rc < 0) {
            /* The last error says why (the broker closed the connection...),
             * where rc would only say that the client is closed now. */
            char text[256];
            ferry_client_last_error(b->c, text, sizeof(text));
            cli_err("subscriber %u: %s", b->idx, text[0] ? text : ferry_strerror(rc));
            __atomic_store_n(&b->error, rc, __ATOMIC_RELAXED);
            break;
        }
        if (load64(&b->received) >= load64(&b->expected)) {
            break;
        }
    }
    return NULL;
}

static double mb(double bytes)
{
    return bytes / 1e6;
}

/* The live progress line (a terminal only): totals, and the rates since
 * the previous line. Main thread only. */
struct progress {
    uint64_t t0;           /* start of the run */
    uint64_t total_target; /* UINT64_MAX with --duration */
    uint64_t last_ns, last_sent, last_recv;
};

static void progress_line(struct progress *pr, const struct bench_pub *pubs, size_t n_pubs,
                          const struct bench_sub *subs, size_t n_subs)
{
    uint64_t sent = 0, recv = 0, now = cli_now_mono_ns();
    for (size_t i = 0; i < n_pubs; i++) {
        sent += load64(&pubs[i].sent);
    }
    for (size_t i = 0; i < n_subs; i++) {
        recv += load64(&subs[i].received);
    }
    if (pr->last_ns == 0) {
        pr->last_ns = pr->t0;
    }
    double dt = now > pr->last_ns ? (double)(now - pr->last_ns) / 1e9 : 1e-9;
    char sr[32], rr[32], tot[48] = "";
    cli_fmt_count(sr, sizeof(sr), (double)(sent - pr->last_sent) / dt);
    cli_fmt_count(rr, sizeof(rr), (double)(recv - pr->last_recv) / dt);
    if (pr->total_target != UINT64_MAX) {
        snprintf(tot, sizeof(tot), "/%" PRIu64, pr->total_target);
    }
    printf("\r\033[K%5.1fs  published %" PRIu64 "%s (%s msgs/s)  delivered %" PRIu64 " (%s msgs/s)",
           (double)(now - pr->t0) / 1e9, sent, tot, sr, recv, rr);
    fflush(stdout);
    pr->last_ns = now;
    pr->last_sent = sent;
    pr->last_recv = recv;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/*
 * One admin request on a short-lived connection of its own: the broker's
 * counters (st != NULL), topic info, or (purge) a purge. Returns the request's result; connection
 * failures are returned too, quietly (the caller treats every failure as "unknown").
 */
static int bench_topic_admin(struct cli_opts *o, const char *topic, bool purge,
                             ferry_topic_info *info, uint64_t *purged, ferry_stats *st)
{
    struct cli_conn_cfg cfg = {
        .name = "ferry bench", .reconnect_attempts = -1, .quiet_events = true, .silent = true};
    ferry_client *c;
    int rc = cli_connect(o, &cfg, &c);
    if (rc < 0) {
        return rc;
    }
    rc = st != NULL ? ferry_admin_stats(c, 5000, st)
         : purge    ? ferry_admin_topic_purge(c, topic, 10000, purged)
                    : ferry_admin_topic_info(c, topic, 5000, info);
    ferry_client_close(c, 1000);
    ferry_client_destroy(c);
    return rc;
}

/* The broker's counters (for its store figures); 0 or an error. */
static int bench_stats(struct cli_opts *o, ferry_stats *st)
{
    return bench_topic_admin(o, NULL, false, NULL, NULL, st);
}

/* What the store did between two snapshots: commits, messages per commit,
 * commit and sync latency percentiles (us), from the difference of the
 * histograms. Returns 0 when it committed nothing in between. */
struct store_delta {
    uint64_t commits, messages, syncs;
    double p50, p99, p999;
    double sync_p50, sync_p99, sync_p999;
};

static int store_delta(const ferry_stats *a, const ferry_stats *b, struct store_delta *d)
{
    uint64_t hist[FERRY_COMMIT_HIST_BUCKETS], sync[FERRY_COMMIT_HIST_BUCKETS];
    for (int i = 0; i < FERRY_COMMIT_HIST_BUCKETS; i++) {
        hist[i] = b->commit_hist[i] - a->commit_hist[i];
        sync[i] = b->sync_hist[i] - a->sync_hist[i];
    }
    d->commits = b->store_commits - a->store_commits;
    d->messages = b->store_messages - a->store_messages;
    d->syncs = b->store_syncs - a->store_syncs;
    d->p50 = ferry_stats_commit_percentile(hist, 50);
    d->p99 = ferry_stats_commit_percentile(hist, 99);
    d->p999 = ferry_stats_commit_percentile(hist, 99.9);
    d->sync_p50 = ferry_stats_commit_percentile(sync, 50);
    d->sync_p99 = ferry_stats_commit_percentile(sync, 99);
    d->sync_p999 = ferry_stats_commit_percentile(sync, 99.9);
    return d->commits > 0;
}

int cmd_bench(struct cli_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"pubs", required_argument, NULL, 'p'},
        {"subs", required_argument, NULL, 'S'},
        {"size", required_argument, NULL, 'z'},
        {"count", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'},
        {"rate", required_argument, NULL, 'r'},
        {"ack-window", required_argument, NULL, 'w'},
        {"topic", required_argument, NULL, 't'},
        {"topics", required_argument, NULL, 'T'},
        {"json", no_argument, NULL, 'j'},
        {"persistent", no_argument, NULL, OPT_PERSISTENT},
        {"ephemeral", no_argument, NULL, OPT_EPHEMERAL},
        {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
        {"keep", no_argument, NULL, OPT_KEEP},
        {"no-idempotent", no_argument, NULL, OPT_NO_IDEMPOTENT},
        {NULL, 0, NULL, 0},
    };
    struct bench_args a = {.cmd = o->cmd,
                           .pubs = 1,
                           .subs = 1,
                           .size = 128,
                           .count = 1000000,
                           .topic = "bench",
                           .topics = 1};
    int first;
    int rc = cli_getopt(o, argc, argv, "p:S:z:n:d:r:w:t:T:j", longopts, bench_help, bench_opt, &a,
                        &first);
    if (rc != -1) {
        return rc;
    }
    if (first < argc) {
        return cli_usage(o->cmd, "unexpected argument '%s'", argv[first]);
    }
    if (a.has_count && a.has_duration) {
        return cli_usage(o->cmd, "give --count or --duration, not both");
    }
    if (!*a.topic || strpbrk(a.topic, "*> ")) {
        return cli_usage(o->cmd, "--topic needs a concrete topic name, not '%s'", a.topic);
    }
    cli_opts_finish(o);

    /* The run id tells our messages from anyone else's on the topic. */
    uint32_t run_id = (uint32_t)(cli_now_mono_ns() ^ ((uint64_t)getpid() << 16));
    run_id = run_id ? run_id : 1;
    bool progress = !a.json && !a.no_progress && isatty(STDOUT_FILENO);
    uint64_t total_target = a.has_duration ? UINT64_MAX : a.count;

    struct bench_pub *pubs = calloc(a.pubs, sizeof(*pubs));
    struct bench_sub *subs = calloc(a.subs ? a.subs : 1, sizeof(*subs));
    /* Topic names: TOPIC itself, or TOPIC.0 .. TOPIC.N-1. */
    char(*names)[320] = calloc(a.topics, sizeof(*names));
    bool *purge_after = calloc(a.topics, sizeof(*purge_after));
    struct cli_conn_cfg pub_cfg = {
        .name = "ferry bench pub",
        .thread_mode = true,
        .reconnect_attempts = -1,
        .max_inflight = a.ack_window ? (uint32_t)a.ack_window : 0,
        .window_blocks = true,
        .not_idempotent = a.no_idempotent,
    };
    struct cli_conn_cfg sub_cfg = {
        .name = "ferry bench sub", .reconnect_attempts = -1, .quiet_events = true};
    int status = CLI_EXIT_OK;
    size_t n_pubs_up = 0, n_subs_up = 0, n_pub_threads = 0, n_sub_threads = 0;
    if (!pubs || !subs || !names || !purge_after) {
        cli_err("out of memory");
        status = CLI_EXIT_ERROR;
        goto out;
    }
    for (size_t k = 0; k < a.topics; k++) {
        if (a.topics == 1) {
            snprintf(names[k], sizeof(names[k]), "%s", a.topic);
        } else {
            snprintf(names[k], sizeof(names[k]), "%s.%zu", a.topic, k);
        }
    }
    __atomic_store_n(&bench_stop_pubs, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&bench_stop_subs, 0, __ATOMIC_RELAXED);

    /* A topic that holds nothing yet is ours to empty again afterwards. */
    for (size_t k = 0; k < a.topics && !a.keep; k++) {
        ferry_topic_info t;
        rc = bench_topic_admin(o, names[k], false, &t, NULL, NULL);
        purge_after[k] = rc == FERRY_ENOTOPIC || (rc == 0 && t.messages == 0 && !t.is_ephemeral);
    }

    /* Subscribers first, each confirmed by its SubAck, so none misses the
     * first message. */
    for (size_t i = 0; i < a.subs; i++) {
        struct bench_sub *b = &subs[i];
        b->idx = (unsigned)i;
        b->topic = names[i % a.topics];
        b->expected = UINT64_MAX;
        b->run_id = run_id;
        b->size = (size_t)a.size;
        b->lat = malloc(sizeof(*b->lat));
        if (!b->lat) {
            cli_err("out of memory");
            status = CLI_EXIT_ERROR;
            goto out;
        }
        hist_init(b->lat);
        if (cli_connect(o, &sub_cfg, &b->c) < 0) {
            status = CLI_EXIT_ERROR;
            goto out;
        }
        n_subs_up++;
        rc = ferry_subscribe(b->c, b->topic, NULL, on_bench_msg, b, CLI_CONNECT_TIMEOUT_MS, &b->s);
        if (rc < 0) {
            status = cli_fail(b->c, rc, "cannot subscribe to '%s'", b->topic);
            goto out;
        }
    }
    uint64_t per_pub = a.count / a.pubs, extra = a.count % a.pubs;
    for (size_t i = 0; i < a.pubs; i++) {
        struct bench_pub *p = &pubs[i];
        p->idx = (unsigned)i;
        p->a = &a;
        p->topic = names[i % a.topics];
        p->run_id = run_id;
        p->seen_sequence = -1;
        p->target = a.has_duration ? UINT64_MAX : per_pub + (i < extra ? 1 : 0);
        if (cli_connect(o, &pub_cfg, &p->c) < 0) {
            status = CLI_EXIT_ERROR;
            goto out;
        }
        n_pubs_up++;
    }

    if (!a.json) {
        char sz[32];
        snprintf(sz, sizeof(sz), "%" PRIu64, a.size);
        printf("ferry bench: %" PRIu64 " publisher%s, %" PRIu64 " subscriber%s, %s-byte messages, ",
               a.pubs, a.pubs == 1 ? "" : "s", a.subs, a.subs == 1 ? "" : "s", sz);
        if (a.has_duration) {
            char d[32];
            cli_fmt_duration_ns(d, sizeof(d), a.duration_ns);
            printf("for %s", d);
        } else {
            printf("%" PRIu64 " messages", a.count);
        }
        if (a.topics == 1) {
            printf(", topic %s", a.topic);
        } else {
            printf(", topics %s .. %s", names[0], names[a.topics - 1]);
        }
        printf(", %s", a.ack_window ? "acked" : "fire-and-forget");
        if (a.ack_window) {
            printf(" (window %" PRIu64 ")", a.ack_window);
        }
        if (a.rate) {
            printf(", %" PRIu64 " msgs/s", a.rate);
        }
        printf("\n");
        fflush(stdout);
    }

    /* The store's figures are the difference of two snapshots (anyone
     * else's traffic meanwhile counts too; the note says so). */
    ferry_stats st0, st1;
    bool has_st = bench_stats(o, &st0) == 0;
    uint64_t t0 = cli_now_mono_ns();
    struct progress pr = {.t0 = t0, .total_target = total_target};
    for (size_t i = 0; i < a.subs; i++) {
        if (pthread_create(&subs[i].thread, NULL, sub_main, &subs[i]) != 0) {
            cli_err("cannot start a thread");
            status = CLI_EXIT_ERROR;
            goto stop;
        }
        n_sub_threads++;
    }
    for (size_t i = 0; i < a.pubs; i++) {
        if (pthread_create(&pubs[i].thread, NULL, pub_main, &pubs[i]) != 0) {
            cli_err("cannot start a thread");
            status = CLI_EXIT_ERROR;
            goto stop;
        }
        n_pub_threads++;
    }

    /* Publishing phase: watch (progress line), and stop on Ctrl-C. */
    for (;;) {
        bool done = true;
        for (size_t i = 0; i < a.pubs; i++) {
            if (__atomic_load_n(&pubs[i].end_ns, __ATOMIC_ACQUIRE) == 0) {
                done = false;
            }
        }
        if (done) {
            break;
        }
        if (cli_interrupted) {
            __atomic_store_n(&bench_stop_pubs, 1, __ATOMIC_RELAXED);
        }
        if (progress) {
            progress_line(&pr, pubs, a.pubs, subs, a.subs);
        }
        sleep_ms(progress ? 250 : 20);
    }

stop:
    __atomic_store_n(&bench_stop_pubs, 1, __ATOMIC_RELAXED);
    for (size_t i = 0; i < n_pub_threads; i++) {
        pthread_join(pubs[i].thread, NULL);
    }
    uint64_t published = 0;
    for (size_t i = 0; i < n_pub_threads; i++) {
        published += load64(&pubs[i].sent);
    }
    /* Delivery phase: every subscriber should get every message published
     * to its topic. Wait while they make progress; give up after 10 s
     * without any. */
    uint64_t expected_total = 0;
    for (size_t i = 0; i < n_sub_threads; i++) {
        uint64_t e = 0;
        for (size_t k = 0; k < n_pub_threads; k++) {
            if (pubs[k].topic == subs[i].topic) {
                e += load64(&pubs[k].sent);
            }
        }
        store64(&subs[i].expected, e);
        expected_total += e;
    }
    uint64_t last_total = UINT64_MAX, last_change = cli_now_mono_ns();
    while (n_sub_threads > 0) {
        uint64_t total = 0;
        bool all = true, alive = false;
        for (size_t i = 0; i < n_sub_threads; i++) {
            uint64_t r = load64(&subs[i].received);
            total += r;
            if (r < subs[i].expected) {
                all = false;
                if (__atomic_load_n(&subs[i].error, __ATOMIC_RELAXED) == 0) {
                    alive = true;
                }
            }
        }
        uint64_t now = cli_now_mono_ns();
        if (total != last_total) {
            last_total = total;
            last_change = now;
        }
        if (all || !alive || now - last_change > 10000000000ull ||
            (cli_interrupted && now - last_change > 1000000000ull) || cli_n_signals >= 2) {
            break;
        }
        if (progress) {
            progress_line(&pr, pubs, a.pubs, subs, a.subs);
        }
        sleep_ms(progress ? 250 : 10);
    }
    __atomic_store_n(&bench_stop_subs, 1, __ATOMIC_RELAXED);
    for (size_t i = 0; i < n_sub_threads; i++) {
        pthread_join(subs[i].thread, NULL);
    }
    if (progress) {
        printf("\r\033[K");
        fflush(stdout);
    }
    if (n_pub_threads < a.pubs || n_sub_threads < a.subs) {
        goto out;
    }

    /* Results. */
    uint64_t pub_start = UINT64_MAX, pub_end = 0, acked = 0, failed = 0;
    int seen_seq = -1;
    for (size_t i = 0; i < a.pubs; i++) {
        struct bench_pub *p = &pubs[i];
        pub_start = p->start_ns < pub_start ? p->start_ns : pub_start;
        pub_end = p->end_ns > pub_end ? p->end_ns : pub_end;
        acked += load64(&p->acked);
        failed += load64(&p->failed);
        int seen = __atomic_load_n(&p->seen_sequence, __ATOMIC_RELAXED);
        if (seen >= 0) {
            seen_seq = seen;
        }
        if (p->error || load64(&p->failed)) {
            status = CLI_EXIT_ERROR;
        }
    }
    struct hist *lat = malloc(sizeof(*lat));
    if (!lat) {
        cli_err("out of memory");
        status = CLI_EXIT_ERROR;
        goto out;
    }
    hist_init(lat);
    uint64_t received = 0, foreign = 0, sub_end = 0, short_subs = 0;
    for (size_t i = 0; i < a.subs; i++) {
        struct bench_sub *b = &subs[i];
        hist_merge(lat, b->lat);
        received += b->received;
        foreign += b->foreign;
        sub_end = b->last_ns > sub_end ? b->last_ns : sub_end;
        if (b->received < b->expected) {
            short_subs++;
            if (!a.json) {
                cli_err("subscriber %zu received %" PRIu64 " of %" PRIu64 " messages%s", i,
                        b->received, b->expected,
                        b->error ? " before it was disconnected (on an ephemeral topic the "
                                   "broker drops a subscriber that falls behind; lower the "
                                   "load with --rate)"
                                 : "");
            }
            status = CLI_EXIT_ERROR;
        }
        if (b->error) {
            status = CLI_EXIT_ERROR;
        }
    }
    double pub_secs = pub_end > pub_start ? (double)(pub_end - pub_start) / 1e9 : 0;
    double sub_secs = sub_end > pub_start ? (double)(sub_end - pub_start) / 1e9 : 0;
    double pub_rate = pub_secs > 0 ? (double)published / pub_secs : 0;
    double sub_rate = sub_secs > 0 ? (double)received / sub_secs : 0;
    double size = (double)a.size;
    bool has_lat = lat->count > 0;
    int is_eph = -1;
    if (seen_seq >= 0) {
        is_eph = seen_seq == 0;
    } else if (published > 0) {
        ferry_topic_info t;
        if (bench_topic_admin(o, names[0], false, &t, NULL, NULL) == 0) {
            is_eph = t.is_ephemeral ? 1 : 0;
        }
    }

    uint64_t purged = 0;
    bool did_purge = false;
    for (size_t k = 0; k < a.topics && is_eph != 1 && published > 0; k++) {
        uint64_t n = 0;
        if (purge_after[k] && bench_topic_admin(o, names[k], true, NULL, &n, NULL) == 0) {
            did_purge = true;
            purged += n;
        }
    }

    struct store_delta sd = {0};
    bool has_sd = has_st && bench_stats(o, &st1) == 0 && store_delta(&st0, &st1, &sd);

    char shown[700]; /* the topic(s), for notes */
    if (a.topics == 1) {
        snprintf(shown, sizeof(shown), "'%s'", a.topic);
    } else {
        snprintf(shown, sizeof(shown), "'%s' .. '%s'", names[0], names[a.topics - 1]);
    }

    struct cli_buf b = {0};
    if (a.json) {
        cli_buf_addf(&b,
                     "{\"pubs\":%" PRIu64 ",\"subs\":%" PRIu64 ",\"size\":%" PRIu64
                     ",\"ack_window\":%" PRIu64 ",\"rate\":%" PRIu64 ",\"topic\":",
                     a.pubs, a.subs, a.size, a.ack_window, a.rate);
        cli_buf_json_str(&b, a.topic, strlen(a.topic));
        cli_buf_addf(&b,
                     ",\"topics\":%" PRIu64 ",\"ephemeral\":%s,\"published\":%" PRIu64
                     ",\"acked\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"received\":%" PRIu64
                     ",\"expected\":%" PRIu64 ",\"foreign\":%" PRIu64
                     ",\"incomplete_subs\":%" PRIu64
                     ",\"pub_seconds\":%.6f,\"pub_msgs_per_s\":%.1f,\"pub_mb_per_s\":%.3f"
                     ",\"sub_seconds\":%.6f,\"sub_msgs_per_s\":%.1f,\"sub_mb_per_s\":%.3f",
                     a.topics, is_eph < 0 ? "null" : (is_eph ? "true" : "false"), published, acked,
                     failed, received, expected_total, foreign, short_subs, pub_secs, pub_rate,
                     mb(pub_rate * size), sub_secs, sub_rate, mb(sub_rate * size));
        if (has_lat) {
            cli_buf_addf(&b,
                         ",\"latency_ns\":{\"samples\":%" PRIu64 ",\"min\":%" PRIu64
                         ",\"mean\":%.0f,\"p50\":%" PRIu64 ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64
                         ",\"p99_9\":%" PRIu64 ",\"max\":%" PRIu64 "}",
                         lat->count, lat->min, hist_mean(lat), hist_percentile(lat, 50),
                         hist_percentile(lat, 90), hist_percentile(lat, 99),
                         hist_percentile(lat, 99.9), lat->max);
        } else {
            cli_buf_adds(&b, ",\"latency_ns\":null");
        }
        if (did_purge) {
            cli_buf_addf(&b, ",\"purged\":%" PRIu64, purged);
        }
        if (has_sd) {
            cli_buf_addf(&b,
                         ",\"store\":{\"commits\":%" PRIu64 ",\"messages\":%" PRIu64
                         ",\"msgs_per_commit\":%.1f,\"commit_p50_us\":%.0f"
                         ",\"commit_p99_us\":%.0f,\"commit_p999_us\":%.0f,\"syncs\":%" PRIu64
                         ",\"sync_p50_us\":%.0f,\"sync_p99_us\":%.0f,\"sync_p999_us\":%.0f}",
                         sd.commits, sd.messages, (double)sd.messages / (double)sd.commits, sd.p50,
                         sd.p99, sd.p999, sd.syncs, sd.sync_p50, sd.sync_p99, sd.sync_p999);
        }
        cli_buf_addf(&b, ",\"ok\":%s}\n", status == CLI_EXIT_OK ? "true" : "false");
    } else {
        char r[32];
        cli_fmt_count(r, sizeof(r), pub_rate);
        cli_buf_addf(&b, "publish   %12" PRIu64 " msgs in %7.3fs  %9s msgs/s  %9.1f MB/s",
                     published, pub_secs, r, mb(pub_rate * size));
        if (a.ack_window) {
            cli_buf_addf(&b, "  (%" PRIu64 " acked", acked);
            if (failed) {
                cli_buf_addf(&b, ", %" PRIu64 " failed", failed);
            }
            cli_buf_add(&b, ")", 1);
        }
        cli_buf_add(&b, "\n", 1);
        if (a.subs) {
            cli_fmt_count(r, sizeof(r), sub_rate);
            cli_buf_addf(&b, "deliver   %12" PRIu64 " msgs in %7.3fs  %9s msgs/s  %9.1f MB/s",
                         received, sub_secs, r, mb(sub_rate * size));
            if (a.subs > 1) {
                char per[32];
                cli_fmt_count(per, sizeof(per), sub_rate / (double)a.subs);
                cli_buf_addf(&b, "  (%s msgs/s per subscriber)", per);
            }
            cli_buf_add(&b, "\n", 1);
        }
        if (has_lat) {
            char p50[32], p90[32], p99[32], p999[32], mx[32];
            cli_fmt_duration_ns(p50, sizeof(p50), hist_percentile(lat, 50));
            cli_fmt_duration_ns(p90, sizeof(p90), hist_percentile(lat, 90));
            cli_fmt_duration_ns(p99, sizeof(p99), hist_percentile(lat, 99));
            cli_fmt_duration_ns(p999, sizeof(p999), hist_percentile(lat, 99.9));
            cli_fmt_duration_ns(mx, sizeof(mx), lat->max);
            cli_buf_addf(&b,
                         "latency   p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (end to end, %" PRIu64
                         " samples)\n",
                         p50, p90, p99, p999, mx, lat->count);
        } else if (a.subs && a.size < 8) {
            cli_buf_adds(&b, "latency   not measured: --size below 8 leaves no room for a "
                             "timestamp\n");
        }
        if (has_sd) {
            cli_buf_addf(&b,
                         "store     %12" PRIu64 " commits, %.1f msgs each; commit (write + sync) "
                         "p50 %.0f us  p99 %.0f us  p99.9 %.0f us (the broker's, this run)\n",
                         sd.commits, (double)sd.messages / (double)sd.commits, sd.p50, sd.p99,
                         sd.p999);
            if (sd.syncs > 0) {
                cli_buf_addf(&b,
                             "sync      %12" PRIu64 " syncs of the log; fdatasync p50 %.0f us  "
                             "p99 %.0f us  p99.9 %.0f us\n",
                             sd.syncs, sd.sync_p50, sd.sync_p99, sd.sync_p999);
            }
        }
        if (did_purge && purged) {
            cli_buf_addf(&b,
                         "note      purged the %" PRIu64 " messages this run stored in %s "
                         "(--keep keeps them)\n",
                         purged, shown);
        }
        if (foreign) {
            cli_buf_addf(&b,
                         "note      %" PRIu64 " messages from other publishers on %s "
                         "were ignored\n",
                         foreign, shown);
        }
    }
    fwrite(b.data, 1, b.len, stdout);
    fflush(stdout);
    cli_buf_free(&b);
    free(lat);
    if (a.expect_mode && is_eph >= 0 && is_eph != (a.expect_mode == 2)) {
        cli_err("warning: topic '%s' is %s on this broker, not %s as --%s expects "
                "(ferryd stores every topic but those matching its --ephemeral patterns)",
                names[0], is_eph ? "ephemeral" : "persistent", is_eph ? "persistent" : "ephemeral",
                a.expect_mode == 1 ? "persistent" : "ephemeral");
    }
    if (cli_interrupted && status == CLI_EXIT_OK) {
        status = cli_interrupt_status();
    }

out:
    for (size_t i = 0; i < n_subs_up; i++) {
        if (subs[i].s) {
            ferry_unsubscribe(subs[i].s);
        }
        ferry_client_close(subs[i].c, 1000);
        ferry_client_destroy(subs[i].c);
    }
    for (size_t i = 0; subs && i < a.subs; i++) {
        free(subs[i].lat);
    }
    for (size_t i = 0; i < n_pubs_up; i++) {
        ferry_client_close(pubs[i].c, 1000);
        ferry_client_destroy(pubs[i].c);
    }
    free(names);
    free(purge_after);
    free(pubs);
    free(subs);
    return status;
}
