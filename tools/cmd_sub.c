/*
 * cmd_sub.c - `ferry sub PATTERN`: subscribe and print each message.
 *
 * Thread mode, a subscription without callback: the library's IO thread
 * queues deliveries, this thread takes them with ferry_sub_next() in short
 * slices (so Ctrl-C and --timeout are noticed promptly), prints, flushes
 * stdout per message (pipes see each message at once), and then acks.
 */
#include "cli.h"
#include "cli_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char sub_help[] =
    "Usage: ferry sub [OPTIONS] PATTERN\n"
    "\n"
    "Subscribe to PATTERN and print every message: its payload and a newline,\n"
    "or with --json one JSON object per line. In patterns, '*' matches one\n"
    "token and '>' one or more trailing tokens ('orders.*.created', 'orders.>').\n"
    "\n"
    "Options:\n"
    "  -n, --count N         exit (status 0) after N messages\n"
    "  -t, --timeout DUR     give up after DUR (e.g. 10, 1.5s, 2m): with --count\n"
    "                        exit 1 unless N messages arrived; without it, stop\n"
    "                        and exit 0\n"
    "  -j, --json            print one JSON object per message: topic, seq, time\n"
    "                        (RFC 3339), time_ns, attempt, headers, key, payload\n"
    "                        (text when valid UTF-8, else base64 with\n"
    "                        \"encoding\": \"base64\")\n"
    "      --all             start with the oldest stored message\n"
    "      --from-seq SEQ    start at sequence SEQ of each matching topic\n"
    "      --from-time TIME  start at the first message at or after TIME:\n"
    "                        RFC 3339 (2026-11-29T20:00:00Z), Unix seconds, or\n"
    "                        a duration meaning that long ago (10m)\n"
    "      --last N          start with the last N stored messages\n"
    "      --last-per-key    a last-value topic (ferryd's last_value PATTERN):\n"
    "                        start with the current value of every key (its\n"
    "                        newest message, deleted keys left out), in sequence\n"
    "                        order, then live messages; not with --durable,\n"
    "                        --group or --ack\n"
    "      --durable NAME    durable consumer: the broker remembers the acked\n"
    "                        position under NAME (implies --ack); PATTERN is one\n"
    "                        stored topic, or a wildcard pattern: then it keeps\n"
    "                        one position per stored topic that matches (topics\n"
    "                        created later included; with --all, --from-time or\n"
    "                        neither; ephemeral topics are not delivered to it);\n"
    "                        list them with 'ferry consumers', remove one with\n"
    "                        'ferry consumer delete TOPIC|PATTERN NAME'; with an\n"
    "                        auth file it is yours: others may attach only with\n"
    "                        a 'consume' rule or as admin; dead letters go to\n"
    "                        $DLQ.<topic>.<NAME>\n"
    "  -g, --group NAME      queue group: members share the messages\n"
    "      --ack             explicit acks, each after the message is printed;\n"
    "                        the broker sends again what is not acked (PATTERN\n"
    "                        must then be one stored topic, unless --durable)\n"
    "      --max-in-flight N with acks: unacked deliveries at most (default:\n"
    "                        the broker's, 1024)\n"
    "  -v, --verbose         report on stderr when the subscription is active\n"
    "                        ('ferry: subscribed to PATTERN')\n"
    "\n"
    "Without a start option only messages published from now on are shown.\n"
    "With acks, ferry sub exits only once the broker has confirmed that its acks\n"
    "are stored (a Ping round trip, up to 5 s): a message it printed is not\n"
    "delivered to that durable again, even if the broker crashes right after.\n"
    "(The rule: an ack is confirmed once a later publish's ack, or a later ping's\n"
    "answer, came back on the same connection.)\n"
    "\n"
    "Examples:\n"
    "  ferry sub 'orders.>'\n"
    "  ferry sub --count 3 numbers | sort -n\n"
    "  ferry sub --json --last 10 orders.eu.created | jq .payload\n"
    "  ferry sub --last-per-key prices.eu      # every key's current price, then live\n"
    "  ferry sub --durable billing --all orders.eu.created\n"
    "  ferry sub --durable billing 'orders.*.created'   # every region, one name\n"
    "  ferry sub --group workers jobs          # run several: each job goes to one\n";

enum {
    OPT_ALL = 0x100,
    OPT_FROM_SEQ,
    OPT_FROM_TIME,
    OPT_LAST,
    OPT_LAST_PER_KEY,
    OPT_DURABLE,
    OPT_ACK,
    OPT_MAX_IN_FLIGHT,
};

struct sub_args {
    const char *cmd;
    uint64_t count; /* 0: no limit */
    uint64_t timeout_ns;
    bool has_timeout;
    bool json;
    bool ack;
    bool verbose;
    int n_starts; /* start options given: at most one */
    enum ferry_start start;
    int64_t start_arg;
    const char *durable;
    const char *group;
    uint32_t max_in_flight;
};

static int sub_opt(int opt, const char *arg, void *ctx)
{
    struct sub_args *a = ctx;
    uint64_t v;
    switch (opt) {
    case 'n':
        if (cli_parse_u64(arg, &a->count) < 0 || a->count == 0) {
            return cli_usage(a->cmd, "--count needs a whole number of at least 1, not '%s'", arg);
        }
        return -1;
    case 't':
        if (cli_parse_duration_ns(arg, &a->timeout_ns) < 0 || a->timeout_ns == 0) {
            return cli_usage(a->cmd, "--timeout needs a positive duration (10, 1.5s, 2m), not '%s'",
                             arg);
        }
        a->has_timeout = true;
        return -1;
    case 'j':
        a->json = true;
        return -1;
    case 'v':
        a->verbose = true;
        return -1;
    case 'g':
        if (!*arg) {
            return cli_usage(a->cmd, "--group needs a name");
        }
        a->group = arg;
        return -1;
    case OPT_DURABLE:
        if (!*arg) {
            return cli_usage(a->cmd, "--durable needs a name");
        }
        a->durable = arg;
        return -1;
    case OPT_ACK:
        a->ack = true;
        return -1;
    case OPT_MAX_IN_FLIGHT:
        if (cli_parse_u64(arg, &v) < 0 || v == 0 || v > UINT32_MAX) {
            return cli_usage(a->cmd, "--max-in-flight needs a number from 1, not '%s'", arg);
        }
        a->max_in_flight = (uint32_t)v;
        return -1;
    case OPT_ALL:
        a->n_starts++;
        a->start = FERRY_START_ALL;
        return -1;
    case OPT_FROM_SEQ:
        if (cli_parse_u64(arg, &v) < 0 || v == 0 || v > INT64_MAX) {
            return cli_usage(a->cmd, "--from-seq needs a sequence number from 1, not '%s'", arg);
        }
        a->n_starts++;
        a->start = FERRY_START_SEQUENCE;
        a->start_arg = (int64_t)v;
        return -1;
    case OPT_FROM_TIME: {
        int64_t t;
        if (cli_parse_time_ns(arg, cli_now_realtime_ns(), &t) < 0) {
            return cli_usage(a->cmd,
                             "--from-time needs RFC 3339 (2026-11-29T20:00:00Z), Unix seconds "
                             "or a duration ago (10m), not '%s'",
                             arg);
        }
        a->n_starts++;
        a->start = FERRY_START_TIME;
        a->start_arg = t;
        return -1;
    }
    case OPT_LAST:
        if (cli_parse_u64(arg, &v) < 0 || v == 0 || v > INT64_MAX) {
            return cli_usage(a->cmd, "--last needs a count from 1, not '%s'", arg);
        }
        a->n_starts++;
        a->start = FERRY_START_LAST;
        a->start_arg = (int64_t)v;
        return -1;
    case OPT_LAST_PER_KEY:
        a->n_starts++;
        a->start = FERRY_START_LAST_PER_KEY;
        return -1;
    default:
        return cli_usage(a->cmd, "unexpected option");
    }
}

static void format_json(struct cli_buf *b, const ferry_msg *m)
{
    const char *topic = ferry_msg_topic(m);
    cli_buf_adds(b, "{\"topic\":");
    cli_buf_json_str(b, topic, strlen(topic));
    cli_buf_addf(b, ",\"seq\":%llu,\"time\":\"", (unsigned long long)ferry_msg_sequence(m));
    cli_buf_time_rfc3339(b, ferry_msg_time(m));
    cli_buf_addf(b, "\",\"time_ns\":%lld,\"attempt\":%u", (long long)ferry_msg_time(m),
                 (unsigned)ferry_msg_attempt(m));
    uint64_t missed = ferry_msg_missed(m);
    if (missed) {
        cli_buf_addf(b, ",\"missed\":%llu", (unsigned long long)missed);
    }
    cli_buf_adds(b, ",\"headers\":{");
    size_t nh = ferry_msg_n_headers(m);
    for (size_t i = 0; i < nh; i++) {
        const char *k, *v;
        if (ferry_msg_header_at(m, i, &k, &v) < 0) {
            continue;
        }
        if (i) {
            cli_buf_add(b, ",", 1);
        }
        cli_buf_json_str(b, k, strlen(k));
        cli_buf_add(b, ":", 1);
        cli_buf_json_str(b, v, strlen(v));
    }
    cli_buf_add(b, "}", 1);
    size_t key_len;
    const void *key = ferry_msg_key(m, &key_len);
    if (key_len) {
        cli_buf_json_bytes(b, "key", "key_encoding", key, key_len);
    }
    size_t len;
    const void *data = ferry_msg_data(m, &len);
    cli_buf_json_bytes(b, "payload", "encoding", data, len);
    cli_buf_add(b, "}\n", 2);
}

/* Write the whole buffer to stdout and flush. Returns 0, or -errno. */
static int emit(const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, stdout) != n) {
        return -(errno ? errno : EIO);
    }
    if (fflush(stdout) != 0) {
        return -(errno ? errno : EIO);
    }
    return 0;
}

int cmd_sub(struct cli_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"count", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"verbose", no_argument, NULL, 'v'},
        {"group", required_argument, NULL, 'g'},
        {"durable", required_argument, NULL, OPT_DURABLE},
        {"ack", no_argument, NULL, OPT_ACK},
        {"max-in-flight", required_argument, NULL, OPT_MAX_IN_FLIGHT},
        {"all", no_argument, NULL, OPT_ALL},
        {"from-seq", required_argument, NULL, OPT_FROM_SEQ},
        {"from-time", required_argument, NULL, OPT_FROM_TIME},
        {"last", required_argument, NULL, OPT_LAST},
        {"last-per-key", no_argument, NULL, OPT_LAST_PER_KEY},
        {NULL, 0, NULL, 0},
    };
    struct sub_args a = {.cmd = o->cmd, .start = FERRY_START_NEW};
    ferry_client *c = NULL;
    ferry_sub_options *so = NULL;
    ferry_sub *s = NULL;
    struct cli_buf out = {0};
    int first, status = CLI_EXIT_OK;

    int rc = cli_getopt(o, argc, argv, "n:t:jvg:", longopts, sub_help, sub_opt, &a, &first);
    if (rc != -1) {
        return rc;
    }
    if (argc - first < 1) {
        return cli_usage(o->cmd, "missing PATTERN");
    }
    if (argc - first > 1) {
        return cli_usage(o->cmd, "too many arguments: one PATTERN at a time");
    }
    if (a.n_starts > 1) {
        return cli_usage(
            o->cmd, "--all, --from-seq, --from-time, --last and --last-per-key exclude each other");
    }
    const char *pattern = argv[first];
    bool explicit_acks = a.ack || a.durable;
    if (a.max_in_flight && !explicit_acks) {
        return cli_usage(o->cmd, "--max-in-flight needs --ack or --durable");
    }
    cli_opts_finish(o);

    rc = ferry_sub_options_create(&so);
    if (rc < 0) {
        return cli_fail(NULL, rc, "cannot create subscription options");
    }
    if (a.group) {
        ferry_sub_options_set_queue_group(so, a.group);
    }
    if (explicit_acks) {
        ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT);
    }
    if (a.durable) {
        ferry_sub_options_set_durable(so, a.durable);
    }
    if (a.max_in_flight) {
        ferry_sub_options_set_max_in_flight(so, a.max_in_flight);
    }
    rc = ferry_sub_options_set_start(so, a.start, a.start_arg);
    if (rc < 0) {
        status = cli_fail(NULL, rc, "bad start position");
        goto out;
    }

    struct cli_conn_cfg cfg = {
        .name = "ferry sub",
        .thread_mode = true,
        .reconnect_attempts = 0, /* a subscriber keeps trying, as nats sub does */
        .window_blocks = true,
    };
    if (cli_connect(o, &cfg, &c) < 0) {
        status = CLI_EXIT_ERROR;
        goto out;
    }
    rc = ferry_subscribe(c, pattern, so, NULL, NULL, CLI_CONNECT_TIMEOUT_MS, &s);
    if (rc < 0) {
        status = cli_fail(c, rc, "cannot subscribe to '%s'", pattern);
        goto out;
    }
    if (a.verbose) {
        cli_err("subscribed to %s", pattern);
    }

    uint64_t received = 0;
    uint64_t deadline = a.has_timeout ? cli_now_mono_ns() + a.timeout_ns : 0;
    while (a.count == 0 || received < a.count) {
        if (cli_interrupted) {
            status = cli_interrupt_status();
            break;
        }
        int slice = 200;
        if (deadline) {
            uint64_t now = cli_now_mono_ns();
            if (now >= deadline) {
                if (a.count) {
                    cli_err("timeout: received %llu of %llu messages", (unsigned long long)received,
                            (unsigned long long)a.count);
                    status = CLI_EXIT_ERROR;
                }
                break;
            }
            uint64_t left_ms = (deadline - now + 999999) / 1000000;
            if (left_ms < (uint64_t)slice) {
                slice = (int)left_ms;
            }
        }
        ferry_msg *m = NULL;
        rc = ferry_sub_next(s, slice, &m);
        if (rc == -ETIMEDOUT || rc == -EAGAIN) {
            continue;
        }
        if (rc < 0) {
            status = cli_fail(c, rc, "subscription to '%s' ended", pattern);
            break;
        }
        out.len = 0;
        if (a.json) {
            format_json(&out, m);
        } else {
            size_t len;
            const void *data = ferry_msg_data(m, &len);
            cli_buf_add(&out, data, len);
            cli_buf_add(&out, "\n", 1);
        }
        rc = emit(out.data, out.len);
        if (rc < 0) {
            ferry_msg_destroy(m);
            if (rc == -EPIPE) {
                /* The reader went away (ferry sub | head): a normal end.
                 * The message was not shown, so it is not acked. */
                break;
            }
            cli_err("writing to standard output: %s", strerror(-rc));
            status = CLI_EXIT_ERROR;
            break;
        }
        if (explicit_acks) {
            rc = ferry_msg_ack(m, FERRY_ACK);
            if (rc < 0 && rc != FERRY_ENOTREADY) {
                /* Not connected: the broker redelivers after reconnect. */
                cli_fail(c, rc, "cannot ack message %llu",
                         (unsigned long long)ferry_msg_sequence(m));
            }
        }
        ferry_msg_destroy(m);
        received++;
    }

out:
    if (s) {
        uint64_t dropped = ferry_sub_dropped(s);
        if (dropped > 0) {
            /* Without acks nothing brings them back: say so and fail. */
            cli_err("%" PRIu64 " message%s dropped: output could not keep up with the broker%s",
                    dropped, dropped == 1 ? " was" : "s were",
                    explicit_acks ? " (the broker redelivers them)" : "");
            if (status == CLI_EXIT_OK && !explicit_acks) {
                status = CLI_EXIT_ERROR;
            }
        }
        ferry_unsubscribe(s);
    }
    if (c) {
        /* Acks are fire-and-forget: flush them before leaving, if there is
         * a connection to flush them to (else the broker redelivers). */
        int wait_ms = ferry_client_state(c) == FERRY_STATE_CONNECTED ? 5000 : 0;
        if (cli_close(c, wait_ms, false) < 0 && status == CLI_EXIT_OK && explicit_acks &&
            wait_ms > 0) {
            /* The promise of --help (acks confirmed before exit) failed. */
            cli_err("some acks were not confirmed by the broker: it may deliver those messages "
                    "again");
            status = CLI_EXIT_ERROR;
        }
    }
    ferry_sub_options_destroy(so);
    cli_buf_free(&out);
    return status;
}
