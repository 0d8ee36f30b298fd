/*
 * cmd_admin.c - the administrative commands: `ferry stats`, `ferry topics`,
 * `ferry topic info TOPIC`, `ferry topic purge TOPIC`, `ferry consumers`,
 * `ferry consumer delete TOPIC NAME`.
 *
 * Each makes one request through libferry's ferry_admin_* calls, in
 * event-loop mode (the blocking call drives the IO itself: no thread).
 */
#include "cli.h"
#include "cli_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ADMIN_TIMEOUT_MS 10000

static const char stats_help[] =
    "Usage: ferry stats [OPTIONS]\n"
    "\n"
    "Show the broker's counters since it started: connections, subscriptions,\n"
    "messages and bytes in and out with their rates, slow consumers\n"
    "disconnected, store size, errors. Rates are averages since the start,\n"
    "or with --interval measured between two samples that far apart.\n"
    "\n"
    "Options:\n"
    "  -j, --json           print one JSON object (with --interval, the rates\n"
    "                       as msgs_in_per_s, msgs_out_per_s, bytes_in_per_s,\n"
    "                       bytes_out_per_s)\n"
    "  -i, --interval DUR   measure rates over DUR (e.g. 1s, 500ms)\n"
    "\n"
    "Examples:\n"
    "  ferry stats\n"
    "  ferry stats --interval 1s\n"
    "  ferry stats --json | jq .msgs_in\n";

static const char topics_help[] =
    "Usage: ferry topics [OPTIONS] [PATTERN]\n"
    "\n"
    "List the topics the broker knows (matching PATTERN, default all): stored\n"
    "messages and bytes, first and last sequence ('ferry topic info TOPIC' also\n"
    "counts its live subscribers).\n"
    "\n"
    "Options:\n"
    "  -j, --json     print a JSON array\n"
    "  -l, --limit N  at most N topics (default: the broker's limit)\n"
    "\n"
    "Examples:\n"
    "  ferry topics\n"
    "  ferry topics 'orders.>'\n";

static const char topic_help[] =
    "Usage: ferry topic info [OPTIONS] TOPIC\n"
    "       ferry topic purge [OPTIONS] TOPIC\n"
    "       ferry topic create [OPTIONS] TOPIC\n"
    "\n"
    "info:  show one topic: stored messages and bytes, first and last sequence,\n"
    "       whether it is ephemeral, live subscribers.\n"
    "purge: remove every stored message of TOPIC (its sequence numbers keep\n"
    "       counting; durable consumers of it are removed too).\n"
    "create: in a cluster, have TOPIC placed on a broker now, and say which\n"
    "       (elsewhere a topic comes to be with its first publish).\n"
    "\n"
    "Options:\n"
    "  -j, --json   print JSON\n"
    "\n"
    "Examples:\n"
    "  ferry topic info orders.eu.created\n"
    "  ferry topic purge orders.eu.created\n";

struct admin_args {
    const char *cmd;
    bool json;
    uint32_t limit;
    uint64_t interval_ns; /* stats: measure rates over this interval */
};

static int admin_opt(int opt, const char *arg, void *ctx)
{
    struct admin_args *a = ctx;
    uint64_t v;
    switch (opt) {
    case 'j':
        a->json = true;
        return -1;
    case 'i':
        if (cli_parse_duration_ns(arg, &a->interval_ns) < 0 || a->interval_ns < 10000000 ||
            a->interval_ns > 3600ull * 1000000000ull) {
            return cli_usage(a->cmd, "--interval needs a duration from 10ms to 1h, not '%s'", arg);
        }
        return -1;
    case 'l':
        if (cli_parse_u64(arg, &v) < 0 || v == 0 || v > UINT32_MAX) {
            return cli_usage(a->cmd, "--limit needs a number from 1, not '%s'", arg);
        }
        a->limit = (uint32_t)v;
        return -1;
    default:
        return cli_usage(a->cmd, "unexpected option");
    }
}

int cmd_stats(struct cli_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"json", no_argument, NULL, 'j'},
        {"interval", required_argument, NULL, 'i'},
        {NULL, 0, NULL, 0},
    };
    struct admin_args a = {.cmd = o->cmd};
    int first;
    int rc = cli_getopt(o, argc, argv, "ji:", longopts, stats_help, admin_opt, &a, &first);
    if (rc != -1) {
        return rc;
    }
    if (first < argc) {
        return cli_usage(o->cmd, "unexpected argument '%s'", argv[first]);
    }
    ferry_client *c;
    if (cli_admin_connect(o, "ferry stats", &c) < 0) {
        return CLI_EXIT_ERROR;
    }
    ferry_stats st, st0 = {0};
    rc = ferry_admin_stats(c, ADMIN_TIMEOUT_MS, &st);
    if (rc == 0 && a.interval_ns) {
        /* Nothing to do meanwhile; the interval is far below the keepalive.
         * The server's uptime clock measures the interval. */
        st0 = st;
        uint64_t end = cli_now_mono_ns() + a.interval_ns;
        uint64_t now;
        while (!cli_interrupted && (now = cli_now_mono_ns()) < end) {
            uint64_t left = end - now < 50000000 ? end - now : 50000000;
            struct timespec ts = {0, (long)left};
            nanosleep(&ts, NULL);
        }
        if (cli_interrupted) {
            ferry_client_destroy(c);
            return cli_interrupt_status();
        }
        rc = ferry_admin_stats(c, ADMIN_TIMEOUT_MS, &st);
    }
    if (rc < 0) {
        cli_fail(c, rc, "stats");
        ferry_client_destroy(c);
        return CLI_EXIT_ERROR;
    }
    ferry_client_close(c, 1000);
    ferry_client_destroy(c);

    /* Rates: over the interval, or averages since the server started. */
    double secs;
    uint64_t d_mi, d_mo, d_bi, d_bo;
    if (a.interval_ns) {
        uint64_t ms = st.uptime_ms > st0.uptime_ms ? st.uptime_ms - st0.uptime_ms : 1;
        secs = (double)ms / 1000.0;
        d_mi = st.msgs_in - st0.msgs_in;
        d_mo = st.msgs_out - st0.msgs_out;
        d_bi = st.bytes_in - st0.bytes_in;
        d_bo = st.bytes_out - st0.bytes_out;
    } else {
        secs = st.uptime_ms ? (double)st.uptime_ms / 1000.0 : 1.0;
        d_mi = st.msgs_in;
        d_mo = st.msgs_out;
        d_bi = st.bytes_in;
        d_bo = st.bytes_out;
    }
    const char *rate_kind = a.interval_ns ? "now" : "average";

    struct cli_buf b = {0};
    if (a.json) {
        cli_buf_adds(&b, "{\"server_id\":");
        cli_buf_json_str(&b, st.server_id, strlen(st.server_id));
        cli_buf_adds(&b, ",\"server_version\":");
        cli_buf_json_str(&b, st.server_version, strlen(st.server_version));
        cli_buf_addf(
            &b,
            ",\"uptime_ms\":%" PRIu64 ",\"connections\":%" PRIu64 ",\"connections_total\":%" PRIu64
            ",\"subscriptions\":%" PRIu64 ",\"msgs_in\":%" PRIu64 ",\"msgs_out\":%" PRIu64
            ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64 ",\"slow_consumers\":%" PRIu64
            ",\"store_bytes\":%" PRIu64 ",\"topics\":%" PRIu64 ",\"protocol_errors\":%" PRIu64
            ",\"auth_failures\":%" PRIu64 ",\"permission_denials\":%" PRIu64
            ",\"crc_errors\":%" PRIu64,
            st.uptime_ms, st.connections, st.connections_total, st.subscriptions, st.msgs_in,
            st.msgs_out, st.bytes_in, st.bytes_out, st.slow_consumers, st.store_bytes, st.topics,
            st.protocol_errors, st.auth_failures, st.permission_denials, st.crc_errors);
        cli_buf_addf(&b,
                     ",\"store_commits\":%" PRIu64 ",\"store_messages\":%" PRIu64
                     ",\"commit_p50_us\":%.0f,\"commit_p99_us\":%.0f,\"commit_p999_us\":%.0f",
                     st.store_commits, st.store_messages,
                     ferry_stats_commit_percentile(st.commit_hist, 50),
                     ferry_stats_commit_percentile(st.commit_hist, 99),
                     ferry_stats_commit_percentile(st.commit_hist, 99.9));
        cli_buf_addf(&b,
                     ",\"store_syncs\":%" PRIu64 ",\"sync_p50_us\":%.0f,\"sync_p99_us\":%.0f"
                     ",\"sync_p999_us\":%.0f,\"store_map_size\":%" PRIu64
                     ",\"store_map_size_max\":%" PRIu64 ",\"store_scheduled\":%" PRIu64
                     ",\"publish_refused\":[",
                     st.store_syncs, ferry_stats_commit_percentile(st.sync_hist, 50),
                     ferry_stats_commit_percentile(st.sync_hist, 99),
                     ferry_stats_commit_percentile(st.sync_hist, 99.9), st.store_map_size,
                     st.store_map_size_max, st.store_scheduled);
        const char *sep = "";
        for (int i = 1; i < FERRY_REFUSED_CODES; i++) {
            if (st.publish_refused[i] == 0) {
                continue;
            }
            cli_buf_addf(&b, "%s{\"code\":%d,\"error\":", sep, -1000 - i);
            const char *text = ferry_strerror(-1000 - i);
            cli_buf_json_str(&b, text, strlen(text));
            cli_buf_addf(&b, ",\"count\":%" PRIu64 "}", st.publish_refused[i]);
            sep = ",";
        }
        cli_buf_adds(&b, "]");
        cli_buf_addf(&b,
                     ",\"msgs_in_per_s\":%.1f,\"msgs_out_per_s\":%.1f,\"bytes_in_per_s\":%.1f"
                     ",\"bytes_out_per_s\":%.1f,\"rate_seconds\":%.3f}\n",
                     (double)d_mi / secs, (double)d_mo / secs, (double)d_bi / secs,
                     (double)d_bo / secs, secs);
    } else {
        char up[64], bi[32], bo[32], sb[32], r1[32], r2[32], r3[32], r4[32];
        cli_fmt_uptime(up, sizeof(up), st.uptime_ms);
        cli_fmt_bytes(bi, sizeof(bi), st.bytes_in);
        cli_fmt_bytes(bo, sizeof(bo), st.bytes_out);
        cli_fmt_bytes(sb, sizeof(sb), st.store_bytes);
        cli_fmt_count(r1, sizeof(r1), (double)d_mi / secs);
        cli_fmt_count(r2, sizeof(r2), (double)d_mo / secs);
        cli_fmt_bytes(r3, sizeof(r3), (uint64_t)((double)d_bi / secs));
        cli_fmt_bytes(r4, sizeof(r4), (uint64_t)((double)d_bo / secs));
        cli_buf_addf(&b,
                     "server            ferryd %s (id %s)\n"
                     "uptime            %s\n"
                     "connections       %" PRIu64 " open, %" PRIu64 " since start\n"
                     "subscriptions     %" PRIu64 "\n"
                     "messages in       %" PRIu64 " (%s msgs/s %s)\n"
                     "messages out      %" PRIu64 " (%s msgs/s %s)\n"
                     "bytes in          %s (%s/s %s)\n"
                     "bytes out         %s (%s/s %s)\n"
                     "slow consumers    %" PRIu64 "\n"
                     "topics            %" PRIu64 "\n"
                     "store size        %s\n"
                     "protocol errors   %" PRIu64 "\n"
                     "auth failures     %" PRIu64 "\n"
                     "permission denied %" PRIu64 "\n"
                     "crc errors        %" PRIu64 "\n",
                     st.server_version, st.server_id, up, st.connections, st.connections_total,
                     st.subscriptions, st.msgs_in, r1, rate_kind, st.msgs_out, r2, rate_kind, bi,
                     r3, rate_kind, bo, r4, rate_kind, st.slow_consumers, st.topics, sb,
                     st.protocol_errors, st.auth_failures, st.permission_denials, st.crc_errors);
        if (st.store_commits > 0) {
            cli_buf_addf(&b,
                         "store commits     %" PRIu64 " (%.1f msgs each; since start: p50 %.0f us, "
                         "p99 %.0f us, p99.9 %.0f us)\n",
                         st.store_commits, (double)st.store_messages / (double)st.store_commits,
                         ferry_stats_commit_percentile(st.commit_hist, 50),
                         ferry_stats_commit_percentile(st.commit_hist, 99),
                         ferry_stats_commit_percentile(st.commit_hist, 99.9));
        }
        if (st.store_syncs > 0) {
            cli_buf_addf(&b,
                         "store syncs       %" PRIu64 " (since start: p50 %.0f us, p99 %.0f us, "
                         "p99.9 %.0f us)\n",
                         st.store_syncs, ferry_stats_commit_percentile(st.sync_hist, 50),
                         ferry_stats_commit_percentile(st.sync_hist, 99),
                         ferry_stats_commit_percentile(st.sync_hist, 99.9));
        }
    }
    fwrite(b.data, 1, b.len, stdout);
    cli_buf_free(&b);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
}

/* has_subs: the broker counted the subscribers (topic info does; the topic
 * list does not, and a 0 there would be a false statement). */
static void topic_json(struct cli_buf *b, const ferry_topic_info *t, int has_subs)
{
    cli_buf_adds(b, "{\"name\":");
    cli_buf_json_str(b, t->name, strlen(t->name));
    cli_buf_addf(b,
                 ",\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"first_seq\":%" PRIu64
                 ",\"last_seq\":%" PRIu64 ",\"ephemeral\":%s",
                 t->messages, t->bytes, t->first_seq, t->last_seq,
                 t->is_ephemeral ? "true" : "false");
    if (has_subs) {
        cli_buf_addf(b, ",\"subscribers\":%" PRIu64, t->subscribers);
    }
    cli_buf_adds(b, "}");
}

/* The options of a listing command: [--json] [--limit N] [PATTERN].
 * Returns -1 to go on (a->..., *pattern set), else the exit status. */
static int list_args(struct cli_opts *o, int argc, char **argv, const char *help,
                     struct admin_args *a, const char **pattern)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"json", no_argument, NULL, 'j'},
        {"limit", required_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    int first;
    int rc = cli_getopt(o, argc, argv, "jl:", longopts, help, admin_opt, a, &first);
    if (rc != -1) {
        return rc;
    }
    if (argc - first > 1) {
        return cli_usage(o->cmd, "too many arguments: one PATTERN at most");
    }
    *pattern = first < argc ? argv[first] : NULL;
    return -1;
}

int cmd_topics(struct cli_opts *o, int argc, char **argv)
{
    struct admin_args a = {.cmd = o->cmd};
    const char *pattern = NULL;
    int rc = list_args(o, argc, argv, topics_help, &a, &pattern);
    if (rc != -1) {
        return rc;
    }
    ferry_client *c;
    if (cli_admin_connect(o, "ferry topics", &c) < 0) {
        return CLI_EXIT_ERROR;
    }
    ferry_topic_info *topics = NULL;
    size_t n = 0;
    rc = ferry_admin_topics(c, pattern, a.limit, ADMIN_TIMEOUT_MS, &topics, &n);
    if (rc < 0) {
        cli_fail(c, rc, "topics");
        ferry_client_destroy(c);
        return CLI_EXIT_ERROR;
    }
    ferry_client_close(c, 1000);
    ferry_client_destroy(c);

    struct cli_buf b = {0};
    if (a.json) {
        cli_buf_add(&b, "[", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) {
                cli_buf_add(&b, ",", 1);
            }
            topic_json(&b, &topics[i], 0);
        }
        cli_buf_add(&b, "]\n", 2);
    } else {
        int w = 5;
        for (size_t i = 0; i < n; i++) {
            int l = (int)strlen(topics[i].name);
            w = l > w ? l : w;
        }
        cli_buf_addf(&b, "%-*s %12s %12s %12s %12s\n", w, "TOPIC", "MESSAGES", "BYTES", "FIRST SEQ",
                     "LAST SEQ");
        for (size_t i = 0; i < n; i++) {
            const ferry_topic_info *t = &topics[i];
            cli_buf_addf(&b, "%-*s %12" PRIu64 " %12" PRIu64 " %12" PRIu64 " %12" PRIu64 "%s\n", w,
                         t->name, t->messages, t->bytes, t->first_seq, t->last_seq,
                         t->is_ephemeral ? "  (ephemeral)" : "");
        }
        if (n == 0) {
            cli_buf_adds(&b, pattern ? "(no topics match)\n" : "(no topics)\n");
        }
    }
    ferry_free(topics);
    fwrite(b.data, 1, b.len, stdout);
    cli_buf_free(&b);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
}

int cmd_topic(struct cli_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    /* `ferry topic --help` and `ferry topic info --help` both show help. */
    if (argc < 2 || argv[1][0] == '-') {
        struct admin_args a = {.cmd = o->cmd};
        int first;
        int rc = cli_getopt(o, argc, argv, "j", longopts, topic_help, admin_opt, &a, &first);
        if (rc != -1) {
            return rc;
        }
        return cli_usage(o->cmd, "missing subcommand: info, purge or create");
    }
    const char *sub = argv[1];
    bool is_info = strcmp(sub, "info") == 0;
    bool is_create = strcmp(sub, "create") == 0;
    if (!is_info && !is_create && strcmp(sub, "purge") != 0) {
        return cli_usage(o->cmd, "unknown subcommand '%s': info, purge or create", sub);
    }
    struct admin_args a = {.cmd = "topic"};
    int first;
    int rc = cli_getopt(o, argc - 1, argv + 1, "j", longopts, topic_help, admin_opt, &a, &first);
    if (rc != -1) {
        return rc;
    }
    first += 1; /* index into argv */
    if (argc - first != 1) {
        return cli_usage("topic", argc - first < 1 ? "missing TOPIC" : "too many arguments");
    }
    const char *topic = argv[first];
    ferry_client *c;
    if (cli_admin_connect(o,
                          is_info     ? "ferry topic info"
                          : is_create ? "ferry topic create"
                                      : "ferry topic purge",
                          &c) < 0) {
        return CLI_EXIT_ERROR;
    }
    struct cli_buf b = {0};
    if (is_create) {
        ferry_placement pl;
        rc = ferry_admin_topic_create(c, topic, ADMIN_TIMEOUT_MS, &pl);
        if (rc == 0 && a.json) {
            cli_buf_adds(&b, "{\"topic\":");
            cli_buf_json_str(&b, topic, strlen(topic));
            cli_buf_addf(&b, ",\"owner\":%" PRIu32 ",\"address\":", pl.owner);
            cli_buf_json_str(&b, pl.address, strlen(pl.address));
            cli_buf_addf(&b, ",\"epoch\":%" PRIu64 "}\n", pl.epoch);
        } else if (rc == 0 && pl.owner != 0) {
            cli_buf_addf(&b, "%s: placed on broker %" PRIu32 " at %s\n", topic, pl.owner,
                         pl.address);
        } else if (rc == 0) {
            cli_buf_addf(&b, "%s: not in a cluster; a topic comes to be with its first publish\n",
                         topic);
        }
    } else if (is_info) {
        ferry_topic_info t;
        rc = ferry_admin_topic_info(c, topic, ADMIN_TIMEOUT_MS, &t);
        if (rc == 0) {
            if (a.json) {
                topic_json(&b, &t, 1);
                cli_buf_add(&b, "\n", 1);
            } else {
                char by[32];
                cli_fmt_bytes(by, sizeof(by), t.bytes);
                cli_buf_addf(&b,
                             "topic        %s%s\n"
                             "messages     %" PRIu64 "\n"
                             "bytes        %" PRIu64 " (%s)\n"
                             "first seq    %" PRIu64 "\n"
                             "last seq     %" PRIu64 "\n"
                             "subscribers  %" PRIu64 "\n",
                             t.name, t.is_ephemeral ? " (ephemeral: not stored)" : "", t.messages,
                             t.bytes, by, t.first_seq, t.last_seq, t.subscribers);
            }
        }
    } else {
        uint64_t purged = 0;
        rc = ferry_admin_topic_purge(c, topic, ADMIN_TIMEOUT_MS, &purged);
        if (rc == 0) {
            if (a.json) {
                cli_buf_adds(&b, "{\"topic\":");
                cli_buf_json_str(&b, topic, strlen(topic));
                cli_buf_addf(&b, ",\"purged\":%" PRIu64 "}\n", purged);
            } else {
                cli_buf_addf(&b, "purged %" PRIu64 " message%s from %s\n", purged,
                             purged == 1 ? "" : "s", topic);
            }
        }
    }
    if (rc < 0) {
        cli_fail(c, rc, "topic %s %s", sub, topic);
        ferry_client_destroy(c);
        cli_buf_free(&b);
        return CLI_EXIT_ERROR;
    }
    ferry_client_close(c, 1000);
    ferry_client_destroy(c);
    fwrite(b.data, 1, b.len, stdout);
    cli_buf_free(&b);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
}

static const char consumers_help[] =
    "Usage: ferry consumers [OPTIONS] [PATTERN]\n"
    "\n"
    "List the durable consumers on topics matching PATTERN (default all): those\n"
    "the broker bound since it started and those only in its store. Columns:\n"
    "  ACK FLOOR  every sequence up to it is done (acked, terminated, dead-lettered)\n"
    "  NEXT SEQ   the next sequence it was never handed\n"
    "  PENDING    delivered, not acked (REDELIV: how many of them more than once)\n"
    "  LAG        the topic's last sequence minus the ack floor, and the age of\n"
    "             the oldest message above the ack floor (0s when caught up)\n"
    "  HELD BY    the client holding it (id and address; with a queue group, how\n"
    "             many more members, and the group); '-' none\n"
    "A wildcard durable is listed under its pattern, with no ack floor or next\n"
    "sequence of its own and the sums of its topics' figures, followed by one\n"
    "indented line per topic it has a position on.\n"
    "\n"
    "Options:\n"
    "  -j, --json     print a JSON array\n"
    "  -l, --limit N  at most N durables (default: the broker's limit)\n"
    "\n"
    "Examples:\n"
    "  ferry consumers\n"
    "  ferry consumers 'orders.>' --json\n";

static const char consumer_help[] =
    "Usage: ferry consumer delete [OPTIONS] TOPIC NAME\n"
    "\n"
    "delete: remove the durable consumer NAME of TOPIC, its position and its\n"
    "        unacked messages, from the broker's memory and its store. A new\n"
    "        subscription with that name starts afresh. A durable held by a\n"
    "        subscription is refused (exit 1) unless --force: then the holding\n"
    "        subscriptions end with an error. For a wildcard durable TOPIC is its\n"
    "        pattern, and its position on every topic goes with it.\n"
    "\n"
    "Options:\n"
    "  -f, --force  delete even while held, ending the holders' subscriptions\n"
    "  -j, --json   print JSON\n"
    "\n"
    "Examples:\n"
    "  ferry consumer delete orders.eu.created billing\n"
    "  ferry consumer delete --force orders.eu.created billing\n"
    "  ferry consumer delete 'orders.*.created' billing\n";

static void consumer_json(struct cli_buf *b, const ferry_consumer_info *k)
{
    cli_buf_adds(b, "{\"topic\":");
    cli_buf_json_str(b, k->topic, strlen(k->topic));
    cli_buf_adds(b, ",\"name\":");
    cli_buf_json_str(b, k->name, strlen(k->name));
    cli_buf_addf(b,
                 ",\"ack_floor\":%" PRIu64 ",\"next_seq\":%" PRIu64 ",\"pending\":%" PRIu64
                 ",\"redelivered\":%" PRIu64 ",\"lag_messages\":%" PRIu64 ",\"lag_ms\":%" PRIu64
                 ",\"redeliveries\":%" PRIu64 ",\"dead_letters\":%" PRIu64
                 ",\"holders\":%u,\"held_by\":",
                 k->ack_floor, k->next_seq, k->pending, k->redelivered, k->lag_messages, k->lag_ms,
                 k->redeliveries, k->dead_letters, k->holders);
    cli_buf_json_str(b, k->held_by, strlen(k->held_by));
    cli_buf_adds(b, ",\"queue_group\":");
    cli_buf_json_str(b, k->queue_group, strlen(k->queue_group));
    if (k->pattern[0]) {
        cli_buf_adds(b, ",\"pattern\":");
        cli_buf_json_str(b, k->pattern, strlen(k->pattern));
    }
    cli_buf_addf(b, ",\"loaded\":%s}", k->is_loaded ? "true" : "false");
}

/* "0s", "12.3s", "5m 2s" ... from milliseconds. */
static void fmt_lag(char *out, size_t cap, uint64_t ms)
{
    if (ms < 60000) {
        snprintf(out, cap, "%" PRIu64 ".%01" PRIu64 "s", ms / 1000, ms % 1000 / 100);
    } else {
        cli_fmt_uptime(out, cap, ms);
    }
}

int cmd_consumers(struct cli_opts *o, int argc, char **argv)
{
    struct admin_args a = {.cmd = o->cmd};
    const char *pattern = NULL;
    int rc = list_args(o, argc, argv, consumers_help, &a, &pattern);
    if (rc != -1) {
        return rc;
    }
    ferry_client *c;
    if (cli_admin_connect(o, "ferry consumers", &c) < 0) {
        return CLI_EXIT_ERROR;
    }
    ferry_consumer_info *v = NULL;
    size_t n = 0;
    rc = ferry_admin_consumers(c, pattern, a.limit, ADMIN_TIMEOUT_MS, &v, &n);
    if (rc < 0) {
        cli_fail(c, rc, "consumers");
        ferry_client_destroy(c);
        return CLI_EXIT_ERROR;
    }
    ferry_client_close(c, 1000);
    ferry_client_destroy(c);

    struct cli_buf b = {0};
    if (a.json) {
        cli_buf_add(&b, "[", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) {
                cli_buf_add(&b, ",", 1);
            }
            consumer_json(&b, &v[i]);
        }
        cli_buf_add(&b, "]\n", 2);
    } else {
        int wt = 5, wn = 4;
        for (size_t i = 0; i < n; i++) {
            int l = (int)strlen(v[i].topic) + (v[i].pattern[0] ? 2 : 0);
            wt = l > wt ? l : wt;
            l = (int)strlen(v[i].name);
            wn = l > wn ? l : wn;
        }
        cli_buf_addf(&b, "%-*s %-*s %10s %10s %8s %8s %10s %8s  %s\n", wt, "TOPIC", wn, "NAME",
                     "ACK FLOOR", "NEXT SEQ", "PENDING", "REDELIV", "LAG MSGS", "LAG", "HELD BY");
        for (size_t i = 0; i < n; i++) {
            const ferry_consumer_info *k = &v[i];
            char lag[32], held[sizeof(k->held_by) + sizeof(k->queue_group) + 16];
            fmt_lag(lag, sizeof(lag), k->lag_ms);
            if (k->holders == 0) {
                snprintf(held, sizeof(held), "-");
            } else if (k->queue_group[0]) {
                snprintf(held, sizeof(held), "%s (group %s)", k->held_by, k->queue_group);
            } else {
                snprintf(held, sizeof(held), "%s", k->held_by);
            }
            /* A wildcard durable: its own line (no ack floor, no next
             * sequence: those are per topic), then its topics indented. */
            char floor[24] = "-", next[24] = "-", topic[sizeof(k->topic) + 2];
            int is_root = k->pattern[0] == '\0' && (strchr(k->topic, '*') || strchr(k->topic, '>'));
            if (!is_root) {
                snprintf(floor, sizeof(floor), "%" PRIu64, k->ack_floor);
                snprintf(next, sizeof(next), "%" PRIu64, k->next_seq);
            }
            snprintf(topic, sizeof(topic), "%s%s", k->pattern[0] ? "  " : "", k->topic);
            cli_buf_addf(&b,
                         "%-*s %-*s %10s %10s %8" PRIu64 " %8" PRIu64 " %10" PRIu64 " %8s  %s\n",
                         wt, topic, wn, k->name, floor, next, k->pending, k->redelivered,
                         k->lag_messages, lag, held);
        }
        if (n == 0) {
            cli_buf_adds(&b,
                         pattern ? "(no durable consumers match)\n" : "(no durable consumers)\n");
        }
    }
    ferry_free(v);
    fwrite(b.data, 1, b.len, stdout);
    cli_buf_free(&b);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
}

static int consumer_opt(int opt, const char *arg, void *ctx)
{
    bool *force = ((void **)ctx)[1];
    if (opt == 'f') {
        *force = true;
        return -1;
    }
    return admin_opt(opt, arg, ((void **)ctx)[0]);
}

int cmd_consumer(struct cli_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"json", no_argument, NULL, 'j'},
        {"force", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    struct admin_args a = {.cmd = o->cmd};
    bool force = false;
    void *ctx[2] = {&a, &force};
    int first;
    /* `ferry consumer --help` and `ferry consumer delete --help` both help. */
    if (argc < 2 || argv[1][0] == '-') {
        int rc =
            cli_getopt(o, argc, argv, "jf", longopts, consumer_help, consumer_opt, ctx, &first);
        if (rc != -1) {
            return rc;
        }
        return cli_usage(o->cmd, "missing subcommand: delete");
    }
    if (strcmp(argv[1], "delete") != 0) {
        return cli_usage(o->cmd, "unknown subcommand '%s': delete", argv[1]);
    }
    a.cmd = "consumer";
    int rc =
        cli_getopt(o, argc - 1, argv + 1, "jf", longopts, consumer_help, consumer_opt, ctx, &first);
    if (rc != -1) {
        return rc;
    }
    first += 1; /* index into argv */
    if (argc - first != 2) {
        return cli_usage("consumer",
                         argc - first < 2 ? "missing TOPIC or NAME" : "too many arguments");
    }
    const char *topic = argv[first], *name = argv[first + 1];
    ferry_client *c;
    if (cli_admin_connect(o, "ferry consumer delete", &c) < 0) {
        return CLI_EXIT_ERROR;
    }
    rc = ferry_admin_consumer_delete(c, topic, name, force, ADMIN_TIMEOUT_MS);
    if (rc < 0) {
        cli_fail(c, rc, "consumer delete %s %s%s", topic, name,
                 rc == FERRY_EDURABLEINUSE && !force ? " (held: --force ends its subscriptions)"
                                                     : "");
        ferry_client_destroy(c);
        return CLI_EXIT_ERROR;
    }
    ferry_client_close(c, 1000);
    ferry_client_destroy(c);
    struct cli_buf b = {0};
    if (a.json) {
        cli_buf_adds(&b, "{\"topic\":");
        cli_buf_json_str(&b, topic, strlen(topic));
        cli_buf_adds(&b, ",\"name\":");
        cli_buf_json_str(&b, name, strlen(name));
        cli_buf_adds(&b, ",\"deleted\":true}\n");
    } else {
        cli_buf_addf(&b, "deleted durable consumer %s on %s\n", name, topic);
    }
    fwrite(b.data, 1, b.len, stdout);
    cli_buf_free(&b);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
}
