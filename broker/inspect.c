/*
 * inspect.c - `ferryd --inspect DIR` (inspect.h): the store's topics,
 * durables and messages, offline, as text or one JSON document.
 *
 * It reads through the store's public readers on a read-only open
 * (store_open_readonly()), after store_recover() as --verify does. Output
 * is built in a buffer (cli_util.h: the `ferry` tool's JSON and escaping
 * helpers, so that a message looks here as it does in `ferry sub --json`)
 * and written out between store calls, never from inside a read
 * transaction: a slow reader of our output never holds a snapshot.
 */
#include "inspect.h"

#include "cli_util.h"
#include "consumer.h"
#include "server.h"
#include "store.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define INSPECT_COUNT_DEFAULT 100
#define READ_MSGS 256         /* messages per store read */
#define READ_BYTES (1u << 20) /* about this many bytes per store read */
#define FLUSH_AT (64u << 10)  /* output buffered before it is written */

static const char inspect_usage[] =
    "usage: ferryd --inspect DIR [--json]\n"
    "       ferryd --inspect DIR --topic TOPIC [--from-seq N] [--count K] [--json]\n"
    "\n"
    "Print what the store in DIR holds: its topics (messages, bytes, first and\n"
    "last sequence, last publish time) and durable consumers (next sequence, ack\n"
    "floor, pending, owner); with --topic, the messages of TOPIC from sequence N\n"
    "(default: the oldest stored), at most K (default 100; 0: all): sequence,\n"
    "publish time, headers, key and payload (escaped where not printable).\n"
    "  --json   one JSON document instead (payloads that are not UTF-8 in base64,\n"
    "           as `ferry sub --json` prints them)\n"
    "Read-only next to a running ferryd (its last committed snapshot); a store\n"
    "no ferryd runs is first recovered as a start would (the write-ahead log\n"
    "replayed), as --verify does. Exit status 0, 1 (cannot read, no such\n"
    "topic), 2 (usage).\n";

struct itopic {
    char name[STORE_TOPIC_MAX + 1];
    struct store_topic_info info;
};

struct idurable {
    struct cons_info ci;
    struct cons_rec rec;
};

struct inspect {
    const char *dir;
    bool is_json;
    const char *topic; /* --topic, or NULL */
    uint64_t from_seq; /* 0: the first stored */
    uint64_t count;    /* 0: all */
    struct store *st;
    const char *state; /* "clean", "recovered", "live", "unrecovered" */
    uint64_t n_replayed;
    char recover_err[512];
    struct itopic *topics;
    size_t n_topics, topics_cap;
    struct idurable *durs;
    size_t n_durs, durs_cap;
    size_t n_bad_durs; /* records that do not decode (--verify says why) */
    struct cli_buf out;
    int is_out_failed;
    int is_nomem; /* a list could not grow: refused rather than cut short */
};

static void out_flush(struct inspect *in)
{
    if (in->out.len > 0 && fwrite(in->out.data, 1, in->out.len, stdout) != in->out.len) {
        in->is_out_failed = 1;
    }
    in->out.len = 0;
}

static void out_maybe_flush(struct inspect *in)
{
    if (in->out.len >= FLUSH_AT) {
        out_flush(in);
    }
}

/* ---- collecting (store callbacks: copy, nothing else) ------------------ */

/* v (n of *cap elements of size bytes used) with room for one more: v
 * itself, a larger copy, or NULL (out of memory: in->is_nomem). */
static void *room(struct inspect *in, void *v, size_t n, size_t *cap, size_t size)
{
    if (n < *cap) {
        return v;
    }
    size_t c = *cap ? 2 * *cap : 16;
    void *bigger = realloc(v, c * size);
    if (bigger == NULL) {
        in->is_nomem = 1;
        return NULL;
    }
    *cap = c;
    return bigger;
}

static int topic_cb(void *ctx, const char *name, size_t name_len,
                    const struct store_topic_info *info)
{
    struct inspect *in = ctx;
    struct itopic *v = room(in, in->topics, in->n_topics, &in->topics_cap, sizeof(*v));
    if (v == NULL) {
        return 1;
    }
    in->topics = v;
    struct itopic *t = &in->topics[in->n_topics++];
    memcpy(t->name, name, name_len);
    t->name[name_len] = '\0';
    t->info = *info;
    return 0;
}

static int durable_cb(void *ctx, const char *key, size_t key_len, const void *value,
                      size_t value_len)
{
    struct inspect *in = ctx;
    struct idurable *v = room(in, in->durs, in->n_durs, &in->durs_cap, sizeof(*v));
    if (v == NULL) {
        return 1;
    }
    in->durs = v;
    struct idurable *d = &in->durs[in->n_durs];
    char why[160];
    if (cons_info_from_record(key, key_len, value, value_len, &d->ci, &d->rec, why, sizeof(why)) !=
        0) {
        in->n_bad_durs++;
        return 0;
    }
    in->n_durs++;
    return 0;
}

/* ---- text -------------------------------------------------------------- */

static const char *state_text(const struct inspect *in, char *buf, size_t cap)
{
    if (strcmp(in->state, "live") == 0) {
        return "a running ferryd holds it: its last committed snapshot (publishes "
               "acknowledged in the last few hundred microseconds may not be in it yet)";
    }
    if (strcmp(in->state, "recovered") == 0) {
        snprintf(buf, cap,
                 "recovered: %" PRIu64 " write-ahead log records replayed (acknowledged "
                 "batches that were not in data.mdb yet)",
                 in->n_replayed);
        return buf;
    }
    if (strcmp(in->state, "clean") == 0) {
        return "nothing in the write-ahead log past the last checkpoint";
    }
    snprintf(buf, cap, "NOT recovered (%s): shown as data.mdb holds it", in->recover_err);
    return buf;
}

static int width_of(size_t n, int at_least)
{
    return n > (size_t)at_least ? (int)n : at_least;
}

static void text_topics(struct inspect *in)
{
    struct cli_buf *b = &in->out;
    size_t w = 4;
    for (size_t i = 0; i < in->n_topics; i++) {
        size_t l = strlen(in->topics[i].name);
        w = l > w ? l : w;
    }
    cli_buf_addf(b, "\ntopics: %zu\n", in->n_topics);
    if (in->n_topics == 0) {
        return;
    }
    cli_buf_addf(b, "  %-*s %12s %14s %12s %12s  %s\n", width_of(w, 4), "NAME", "MESSAGES", "BYTES",
                 "FIRST", "LAST", "LAST PUBLISHED");
    for (size_t i = 0; i < in->n_topics; i++) {
        const struct itopic *t = &in->topics[i];
        cli_buf_addf(b, "  %-*s %12" PRIu64 " %14" PRIu64 " %12" PRIu64 " %12" PRIu64 "  ",
                     width_of(w, 4), t->name, t->info.n_msgs, t->info.n_bytes,
                     t->info.n_msgs ? t->info.first_seq : 0, t->info.last_seq);
        if (t->info.last_seq > 0 && t->info.last_time != INT64_MIN) {
            cli_buf_time_rfc3339(b, t->info.last_time);
        } else {
            cli_buf_adds(b, "-");
        }
        cli_buf_adds(b, "\n");
    }
}

static void text_durables(struct inspect *in)
{
    struct cli_buf *b = &in->out;
    size_t wt = 5, wn = 4;
    for (size_t i = 0; i < in->n_durs; i++) {
        size_t lt = strlen(in->durs[i].ci.topic), ln = strlen(in->durs[i].ci.name);
        wt = lt > wt ? lt : wt;
        wn = ln > wn ? ln : wn;
    }
    cli_buf_addf(b, "\ndurables: %zu", in->n_durs);
    if (in->n_bad_durs > 0) {
        cli_buf_addf(b, " (and %zu records that do not decode: run ferryd --verify)",
                     in->n_bad_durs);
    }
    cli_buf_adds(b, "\n");
    if (in->n_durs == 0) {
        return;
    }
    cli_buf_addf(b, "  %-*s %-*s %12s %12s %8s %11s  %s\n", width_of(wt, 5), "TOPIC",
                 width_of(wn, 4), "NAME", "NEXT", "ACK FLOOR", "PENDING", "REDELIVERED", "OWNER");
    for (size_t i = 0; i < in->n_durs; i++) {
        const struct idurable *d = &in->durs[i];
        const char *owner = d->rec.owner[0] ? d->rec.owner : "-";
        if (d->ci.is_root) {
            cli_buf_addf(b, "  %-*s %-*s %12s %12s %8s %11s  %s  (wildcard durable, from ",
                         width_of(wt, 5), d->ci.topic, width_of(wn, 4), d->ci.name, "-", "-", "-",
                         "-", owner);
            if (d->rec.start_ns > 0) {
                cli_buf_time_rfc3339(b, d->rec.start_ns);
            } else {
                cli_buf_adds(b, "each topic's first message");
            }
            cli_buf_adds(b, ")\n");
            continue;
        }
        cli_buf_addf(b, "  %-*s %-*s %12" PRIu64 " %12" PRIu64 " %8u %11u  %s", width_of(wt, 5),
                     d->ci.topic, width_of(wn, 4), d->ci.name, d->ci.next_seq, d->ci.ack_floor,
                     d->ci.n_pending, d->ci.n_redelivered, owner);
        if (d->ci.pattern[0]) {
            cli_buf_addf(b, "  (a position of %s)", d->ci.pattern);
        }
        cli_buf_adds(b, "\n");
    }
}

static void text_message(struct inspect *in, const struct store_msg *m)
{
    struct cli_buf *b = &in->out;
    cli_buf_addf(b, "seq %" PRIu64 "  ", m->seq);
    cli_buf_time_rfc3339(b, m->publish_time);
    cli_buf_addf(b, "  %zu bytes\n", m->payload_len);
    if (m->key_len > 0) {
        cli_buf_adds(b, "  key: ");
        cli_buf_quoted(b, m->key, m->key_len);
        cli_buf_adds(b, "\n");
    }
    size_t pos = 0;
    struct store_kv kv;
    while (store_msg_header_next(m, &pos, &kv) == 1) {
        cli_buf_adds(b, "  header ");
        cli_buf_quoted(b, kv.key, kv.key_len);
        cli_buf_adds(b, ": ");
        cli_buf_quoted(b, kv.value, kv.value_len);
        cli_buf_adds(b, "\n");
    }
    cli_buf_adds(b, "  payload: ");
    cli_buf_quoted(b, m->payload, m->payload_len);
    cli_buf_adds(b, "\n");
}

/* ---- JSON -------------------------------------------------------------- */

static void json_head(struct inspect *in, const struct store_stats *ss, long long file_size)
{
    struct cli_buf *b = &in->out;
    cli_buf_adds(b, "{\"dir\":");
    cli_buf_json_str(b, in->dir, strlen(in->dir));
    cli_buf_addf(b, ",\"state\":\"%s\",\"replayed\":%" PRIu64, in->state, in->n_replayed);
    if (strcmp(in->state, "unrecovered") == 0) {
        cli_buf_adds(b, ",\"recovery_error\":");
        cli_buf_json_str(b, in->recover_err, strlen(in->recover_err));
    }
    cli_buf_addf(b, ",\"file_bytes\":%lld,\"used_bytes\":%zu", file_size, ss->map_used);
}

static void json_topics(struct inspect *in)
{
    struct cli_buf *b = &in->out;
    cli_buf_adds(b, ",\"topics\":[");
    for (size_t i = 0; i < in->n_topics; i++) {
        const struct itopic *t = &in->topics[i];
        cli_buf_adds(b, i ? ",{\"name\":" : "{\"name\":");
        cli_buf_json_str(b, t->name, strlen(t->name));
        cli_buf_addf(b,
                     ",\"id\":%u,\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64
                     ",\"first_seq\":%" PRIu64 ",\"last_seq\":%" PRIu64,
                     (unsigned)t->info.id, t->info.n_msgs, t->info.n_bytes,
                     t->info.n_msgs ? t->info.first_seq : 0, t->info.last_seq);
        if (t->info.last_seq > 0 && t->info.last_time != INT64_MIN) {
            cli_buf_adds(b, ",\"last_time\":\"");
            cli_buf_time_rfc3339(b, t->info.last_time);
            cli_buf_addf(b, "\",\"last_time_ns\":%lld", (long long)t->info.last_time);
        }
        cli_buf_adds(b, "}");
    }
    cli_buf_adds(b, "]");
}

static void json_durables(struct inspect *in)
{
    struct cli_buf *b = &in->out;
    cli_buf_adds(b, ",\"durables\":[");
    for (size_t i = 0; i < in->n_durs; i++) {
        const struct idurable *d = &in->durs[i];
        cli_buf_adds(b, i ? ",{\"topic\":" : "{\"topic\":");
        cli_buf_json_str(b, d->ci.topic, strlen(d->ci.topic));
        cli_buf_adds(b, ",\"name\":");
        cli_buf_json_str(b, d->ci.name, strlen(d->ci.name));
        if (d->ci.pattern[0]) {
            cli_buf_adds(b, ",\"pattern\":");
            cli_buf_json_str(b, d->ci.pattern, strlen(d->ci.pattern));
        }
        cli_buf_adds(b, ",\"owner\":");
        cli_buf_json_str(b, d->rec.owner, strlen(d->rec.owner));
        if (d->ci.is_root) {
            cli_buf_addf(b, ",\"is_wildcard\":true,\"start_time_ns\":%lld}",
                         (long long)d->rec.start_ns);
            continue;
        }
        cli_buf_addf(b,
                     ",\"next_seq\":%" PRIu64 ",\"ack_floor\":%" PRIu64
                     ",\"pending\":%u,\"redelivered\":%u}",
                     d->ci.next_seq, d->ci.ack_floor, d->ci.n_pending, d->ci.n_redelivered);
    }
    cli_buf_addf(b, "],\"undecodable_durables\":%zu", in->n_bad_durs);
}

static void json_message(struct inspect *in, const struct store_msg *m, int is_first)
{
    struct cli_buf *b = &in->out;
    cli_buf_adds(b, is_first ? "{\"seq\":" : ",{\"seq\":");
    cli_buf_addf(b, "%" PRIu64 ",\"time\":\"", m->seq);
    cli_buf_time_rfc3339(b, m->publish_time);
    cli_buf_addf(b, "\",\"time_ns\":%lld,\"headers\":{", (long long)m->publish_time);
    size_t pos = 0;
    struct store_kv kv;
    for (int n = 0; store_msg_header_next(m, &pos, &kv) == 1; n++) {
        if (n > 0) {
            cli_buf_adds(b, ",");
        }
        cli_buf_json_str(b, kv.key, kv.key_len);
        cli_buf_adds(b, ":");
        cli_buf_json_str(b, kv.value, kv.value_len);
    }
    cli_buf_adds(b, "}");
    if (m->key_len > 0) {
        cli_buf_json_bytes(b, "key", "key_encoding", m->key, m->key_len);
    }
    cli_buf_json_bytes(b, "payload", "encoding", m->payload, m->payload_len);
    cli_buf_adds(b, "}");
}

/* ---- messages ---------------------------------------------------------- */

struct msg_walk {
    struct inspect *in;
    uint64_t left; /* still to show; UINT64_MAX: all */
    uint64_t n_shown;
};

static enum store_read_verdict msg_cb(void *ctx, const struct store_msg *m)
{
    struct msg_walk *w = ctx;
    if (w->in->is_json) {
        json_message(w->in, m, w->n_shown == 0);
    } else {
        text_message(w->in, m);
    }
    w->n_shown++;
    return --w->left == 0 ? STORE_READ_STOP : STORE_READ_CONTINUE;
}

/* The messages of --topic (info: its state). 0, or 1 (the store failed). */
static int messages(struct inspect *in, const struct store_topic_info *info)
{
    struct msg_walk w = {.in = in, .left = in->count ? in->count : UINT64_MAX};
    uint64_t from = in->from_seq ? in->from_seq : info->first_seq;
    int rc;
    if (in->is_json) {
        cli_buf_adds(&in->out, ",\"topic\":");
        cli_buf_json_str(&in->out, in->topic, strlen(in->topic));
        cli_buf_adds(&in->out, ",\"messages\":[");
    } else {
        cli_buf_addf(&in->out, "\nmessages of %s from sequence %" PRIu64 ":\n", in->topic, from);
    }
    uint64_t n_corrupt = 0;
    while (w.left > 0) {
        struct store_read_result res;
        size_t max = w.left < READ_MSGS ? (size_t)w.left : READ_MSGS;
        rc = store_read(in->st, info->id, from, max, READ_BYTES, msg_cb, &w, &res);
        if (rc != 0) {
            out_flush(in);
            fprintf(stderr, "ferryd: --inspect %s: reading %s: %s\n", in->dir, in->topic,
                    server_strerror(rc));
            return 1;
        }
        n_corrupt += res.n_corrupt;
        out_maybe_flush(in);
        if (res.is_end || res.next_seq <= from) {
            break;
        }
        from = res.next_seq;
    }
    if (in->is_json) {
        cli_buf_addf(&in->out, "],\"corrupt_messages\":%" PRIu64, n_corrupt);
    } else {
        cli_buf_addf(&in->out, "%" PRIu64 " messages shown", w.n_shown);
        if (n_corrupt > 0) {
            cli_buf_addf(&in->out, "; %" PRIu64 " skipped: CRC or layout wrong (ferryd --verify)",
                         n_corrupt);
        }
        cli_buf_adds(&in->out, "\n");
    }
    return 0;
}

/* ---- main -------------------------------------------------------------- */

/* Parse the command line into in: -1 to go on, else the exit status. */
static int parse(struct inspect *in, int argc, char **argv)
{
    enum { OPT_TOPIC = 0x100, OPT_FROM, OPT_COUNT, OPT_JSON, OPT_HELP };
    static const struct option opts[] = {
        {"topic", required_argument, NULL, OPT_TOPIC},
        {"from-seq", required_argument, NULL, OPT_FROM},
        {"count", required_argument, NULL, OPT_COUNT},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    bool has_from = false, has_count = false;
    in->count = INSPECT_COUNT_DEFAULT;
    optind = 1;
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, ":", opts, NULL);
        if (c == -1) {
            break;
        }
        switch (c) {
        case OPT_TOPIC:
            in->topic = optarg;
            break;
        case OPT_FROM:
            if (cli_parse_u64(optarg, &in->from_seq) < 0) {
                fprintf(stderr, "ferryd: --from-seq needs a sequence number, not '%s'\n", optarg);
                return 2;
            }
            has_from = true;
            break;
        case OPT_COUNT:
            if (cli_parse_u64(optarg, &in->count) < 0) {
                fprintf(stderr, "ferryd: --count needs a number (0: all), not '%s'\n", optarg);
                return 2;
            }
            has_count = true;
            break;
        case OPT_JSON:
            in->is_json = true;
            break;
        case OPT_HELP:
            fputs(inspect_usage, stdout);
            return 0;
        default:
            fprintf(stderr, "ferryd: --inspect: %s '%s'\n%s",
                    c == ':' ? "missing value for" : "unknown option", argv[optind - 1],
                    inspect_usage);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "ferryd: --inspect needs one DIR\n%s", inspect_usage);
        return 2;
    }
    if ((has_from || has_count) && in->topic == NULL) {
        fprintf(stderr, "ferryd: --from-seq and --count need --topic\n%s", inspect_usage);
        return 2;
    }
    in->dir = argv[optind];
    return -1;
}

static int run(struct inspect *in)
{
    char err[512] = "";
    int rc = store_recover(in->dir, &in->n_replayed, in->recover_err, sizeof(in->recover_err));
    in->state = rc == 0        ? (in->n_replayed ? "recovered" : "clean")
                : rc == -EBUSY ? "live"
                               : "unrecovered";
    rc = store_open_readonly(in->dir, &in->st, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ferryd: --inspect %s: %s\n", in->dir, err[0] ? err : server_strerror(rc));
        return 1;
    }
    struct store_topic_info info;
    if (in->topic != NULL) {
        rc = store_topic_info(in->st, in->topic, strlen(in->topic), &info);
        if (rc != 0) {
            fprintf(stderr, "ferryd: --inspect %s: topic %s: %s\n", in->dir, in->topic,
                    rc == FERRY_ENOTOPIC || rc == FERRY_EINVAL ? "no such stored topic"
                                                               : server_strerror(rc));
            return 1;
        }
    }
    int n = store_topic_list(in->st, NULL, 0, topic_cb, in);
    int nd = n < 0 ? 0 : store_consumers_foreach(in->st, NULL, 0, durable_cb, in);
    if (n < 0 || nd < 0 || in->is_nomem) {
        fprintf(stderr, "ferryd: --inspect %s: %s\n", in->dir,
                in->is_nomem ? "out of memory" : server_strerror(n < 0 ? n : nd));
        return 1;
    }
    struct store_stats ss;
    store_stats(in->st, &ss);
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/data.mdb", in->dir);
    long long file_size = stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
    char sbuf[600];
    if (in->is_json) {
        json_head(in, &ss, file_size);
        json_topics(in);
        json_durables(in);
    } else {
        cli_buf_addf(&in->out, "store %s: %s\n", in->dir, state_text(in, sbuf, sizeof(sbuf)));
        cli_buf_addf(&in->out, "data.mdb: %lld bytes, %zu in use\n", file_size, ss.map_used);
        text_topics(in);
        text_durables(in);
    }
    out_flush(in);
    int status = in->topic != NULL ? messages(in, &info) : 0;
    if (status == 0 && in->is_json) {
        cli_buf_adds(&in->out, "}\n");
    }
    out_flush(in);
    if (fflush(stdout) != 0 || in->is_out_failed) {
        fprintf(stderr, "ferryd: --inspect: cannot write the output: %s\n", strerror(errno));
        return 1;
    }
    return status;
}

int inspect_main(int argc, char **argv)
{
    struct inspect in = {0};
    int status = parse(&in, argc, argv);
    if (status >= 0) {
        return status;
    }
    status = run(&in);
    store_close(in.st);
    free(in.topics);
    free(in.durs);
    cli_buf_free(&in.out);
    return status;
}
