/*
 * cmd_pub.c - `ferry pub TOPIC [MESSAGE]`: publish a message, a message N
 * times, a file, or every line of standard input.
 *
 * Runs the client in thread mode: this thread reads input and publishes,
 * the library's IO thread writes and collects PubAcks. Without --ack
 * messages are fire-and-forget, and a final flush (a Ping answered after
 * them) makes sure the broker has processed them, so refusals are still
 * reported.
 */
#include "cli.h"
#include "cli_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char pub_help[] =
    "Usage: ferry pub [OPTIONS] TOPIC [MESSAGE]\n"
    "\n"
    "Publish MESSAGE to TOPIC. Without MESSAGE (and without --file), every line\n"
    "of standard input is published as one message, without its newline.\n"
    "Nothing is printed on success. Put -- before a MESSAGE that starts with '-'.\n"
    "\n"
    "Options:\n"
    "  -a, --ack             wait for the broker's acknowledgement of every\n"
    "                        message (stored under its sync policy); exit 1 if\n"
    "                        any was refused or lost\n"
    "  -c, --count N         publish MESSAGE (or the file) N times (default 1)\n"
    "  -H, --header KEY=VAL  add a header; repeat for more (at most 64)\n"
    "  -k, --key KEY         the message key, carried to subscribers\n"
    "  -f, --file FILE       publish FILE's bytes as one message ('-': all of\n"
    "                        standard input)\n"
    "      --delay DUR       deliver no earlier than DUR from now (e.g. 30s, 2h;\n"
    "                        stored topics only): stored at once, appended to\n"
    "                        the topic and delivered when due\n"
    "      --ttl DUR         expire DUR after it becomes deliverable: never\n"
    "                        delivered later, removed by retention (e.g. 1m)\n"
    "      --timeout DUR     how long to wait for outstanding acks and for the\n"
    "                        final flush (default 30s; e.g. 500ms, 2m)\n"
    "\n"
    "Examples:\n"
    "  ferry pub orders.eu.created '{\"id\": 42}'\n"
    "  ferry pub --ack --header source=cli --key 42 orders.eu.created hello\n"
    "  seq 1 1000 | ferry pub --ack numbers      # 1000 messages: \"1\" .. \"1000\"\n"
    "  ferry pub --file image.png images.new     # binary payload, one message\n"
    "  ferry pub --count 5 tick now              # \"now\" five times\n"
    "  ferry pub --delay 30s jobs.retry '{\"id\": 7}'  # delivered in 30 seconds\n"
    "  ferry pub --ttl 1m prices.eur 1.0842      # stale after a minute: dropped\n";

enum {
    OPT_TIMEOUT = 0x100,
    OPT_DELAY,
    OPT_TTL,
};

struct pub_args {
    const char *cmd;
    bool ack;
    uint64_t count;
    bool has_count;
    const char *key;
    const char *file;
    uint64_t timeout_ns;
    uint64_t delay_ns;    /* --delay; 0: none */
    uint64_t ttl_ns;      /* --ttl; 0: none */
    int64_t deliver_at;   /* the wall clock at start + delay_ns */
    ferry_header headers[FERRY_MAX_HEADERS];
    char *header_bufs[FERRY_MAX_HEADERS];
    size_t n_headers;
};

/* Publish outcome, updated by the PubAck callback on the IO thread. */
struct pub_state {
    volatile uint64_t acked;  /* atomic */
    volatile uint64_t failed; /* atomic */
    volatile int first_error; /* atomic: first failure code, 0 if none */
};

static int pub_opt(int opt, const char *arg, void *ctx)
{
    struct pub_args *a = ctx;
    int rc;
    switch (opt) {
    case 'a':
        a->ack = true;
        return -1;
    case 'c':
        if (cli_parse_u64(arg, &a->count) < 0 || a->count == 0) {
            return cli_usage(a->cmd, "--count needs a whole number of at least 1, not '%s'", arg);
        }
        a->has_count = true;
        return -1;
    case 'H': {
        const char *eq = strchr(arg, '=');
        if (!eq || eq == arg) {
            return cli_usage(a->cmd, "--header needs KEY=VALUE with a non-empty KEY, not '%s'",
                             arg);
        }
        if (a->n_headers == FERRY_MAX_HEADERS) {
            return cli_usage(a->cmd, "at most %d headers", FERRY_MAX_HEADERS);
        }
        char *kv = strdup(arg);
        if (!kv) {
            cli_err("out of memory");
            return CLI_EXIT_ERROR;
        }
        kv[eq - arg] = '\0';
        /* A later --header with the same key replaces the earlier one. */
        for (size_t i = 0; i < a->n_headers; i++) {
            if (strcmp(a->headers[i].key, kv) == 0) {
                free(a->header_bufs[i]);
                a->header_bufs[i] = kv;
                a->headers[i].key = kv;
                a->headers[i].value = kv + (eq - arg) + 1;
                return -1;
            }
        }
        a->header_bufs[a->n_headers] = kv;
        a->headers[a->n_headers].key = kv;
        a->headers[a->n_headers].value = kv + (eq - arg) + 1;
        a->n_headers++;
        return -1;
    }
    case 'k':
        a->key = arg;
        return -1;
    case 'f':
        a->file = arg;
        return -1;
    case OPT_TIMEOUT:
        rc = cli_parse_duration_ns(arg, &a->timeout_ns);
        if (rc < 0 || a->timeout_ns < 1000000 || a->timeout_ns > 86400ull * 1000000000ull) {
            return cli_usage(a->cmd, "--timeout needs a duration between 1ms and 24h, not '%s'",
                             arg);
        }
        return -1;
    case OPT_DELAY:
        rc = cli_parse_duration_ns(arg, &a->delay_ns);
        if (rc < 0 || a->delay_ns > 3650ull * 86400ull * 1000000000ull) {
            return cli_usage(a->cmd, "--delay needs a duration of at most 3650d, not '%s'", arg);
        }
        return -1;
    case OPT_TTL:
        rc = cli_parse_duration_ns(arg, &a->ttl_ns);
        if (rc < 0 || a->ttl_ns < 1000000 || a->ttl_ns > 3650ull * 86400ull * 1000000000ull) {
            return cli_usage(a->cmd, "--ttl needs a duration between 1ms and 3650d, not '%s'",
                             arg);
        }
        return -1;
    default:
        return cli_usage(a->cmd, "unexpected option");
    }
}

static void on_pub_done(ferry_client *c, int status, uint64_t sequence, void *userdata)
{
    (void)c;
    (void)sequence;
    struct pub_state *st = userdata;
    if (status == 0) {
        __atomic_fetch_add(&st->acked, 1, __ATOMIC_RELAXED);
        return;
    }
    int zero = 0;
    __atomic_compare_exchange_n(&st->first_error, &zero, status, false, __ATOMIC_RELAXED,
                                __ATOMIC_RELAXED);
    uint64_t n = __atomic_fetch_add(&st->failed, 1, __ATOMIC_RELAXED);
    if (n < 5) {
        char text[512] = "";
        if (ferry_client_last_error(c, text, sizeof(text)) != status) {
            text[0] = '\0';
        }
        cli_err("publish failed: %s", text[0] ? text : ferry_strerror(status));
    } else if (n == 5) {
        cli_err("more publishes failed (reporting only the first 5)");
    }
}

/* Read a whole file (or stdin for "-") into *out. */
static int read_file(const char *path, struct cli_buf *out)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        int err = errno;
        cli_err("%s: %s", path, strerror(err));
        return -err;
    }
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        cli_buf_add(out, chunk, n);
    }
    int err = ferror(f) ? errno : 0;
    if (f != stdin) {
        fclose(f);
    }
    if (err) {
        cli_err("%s: %s", path, strerror(err ? err : EIO));
        return -(err ? err : EIO);
    }
    return 0;
}

/* Publish one message as the options say. Returns 0 or the error (printed). */
static int publish_one(ferry_client *c, const struct pub_args *a, struct pub_state *st,
                       const char *topic, const void *data, size_t len)
{
    ferry_pub m = {
        .topic = topic,
        .payload = data,
        .payload_len = len,
        .key = a->key,
        .key_len = a->key ? strlen(a->key) : 0,
        .headers = a->n_headers ? a->headers : NULL,
        .n_headers = a->n_headers,
        .deliver_at = a->deliver_at,
        .ttl_ms = a->ttl_ns / 1000000u,
    };
    int rc =
        a->ack ? ferry_publish_async(c, &m, on_pub_done, st, NULL) : ferry_publish_msg(c, &m, NULL);
    if (rc == -EINVAL) {
        cli_err("cannot publish to '%s': invalid topic, header or key (topics are "
                "dot-separated non-empty tokens without '*', '>' or spaces; text must be "
                "UTF-8)",
                topic);
    } else if (rc == FERRY_EFRAMETOOLARGE) {
        ferry_server_info info;
        if (ferry_client_server_info(c, &info) == 0) {
            cli_err("cannot publish to '%s': %zu bytes of payload is more than the broker's "
                    "frame limit of %u bytes",
                    topic, len, (unsigned)info.max_frame_len);
        } else {
            cli_fail(c, rc, "cannot publish to '%s'", topic);
        }
    } else if (rc < 0) {
        cli_fail(c, rc, "cannot publish to '%s'", topic);
    }
    return rc;
}

int cmd_pub(struct cli_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"ack", no_argument, NULL, 'a'},
        {"count", required_argument, NULL, 'c'},
        {"header", required_argument, NULL, 'H'},
        {"key", required_argument, NULL, 'k'},
        {"file", required_argument, NULL, 'f'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"delay", required_argument, NULL, OPT_DELAY},
        {"ttl", required_argument, NULL, OPT_TTL},
        {NULL, 0, NULL, 0},
    };
    struct pub_args a = {.cmd = o->cmd, .count = 1, .timeout_ns = 30ull * 1000000000ull};
    struct pub_state st = {0};
    struct cli_buf filebuf = {0};
    ferry_client *c = NULL;
    int first, status = CLI_EXIT_OK;

    int rc = cli_getopt(o, argc, argv, "ac:H:k:f:", longopts, pub_help, pub_opt, &a, &first);
    if (rc != -1) {
        status = rc;
        goto out;
    }
    int n_args = argc - first;
    if (n_args < 1) {
        status = cli_usage(o->cmd, "missing TOPIC");
        goto out;
    }
    if (n_args > 2) {
        status = cli_usage(o->cmd, "too many arguments: quote a MESSAGE that has spaces");
        goto out;
    }
    const char *topic = argv[first];
    const char *message = n_args == 2 ? argv[first + 1] : NULL;
    if (message && a.file) {
        status = cli_usage(o->cmd, "give MESSAGE or --file, not both");
        goto out;
    }
    bool from_lines = !message && !a.file;
    if (from_lines && a.has_count) {
        status = cli_usage(o->cmd, "--count repeats MESSAGE or --file; stdin lines are "
                                   "published once each");
        goto out;
    }
    cli_opts_finish(o);

    if (a.file && read_file(a.file, &filebuf) < 0) {
        status = CLI_EXIT_ERROR;
        goto out;
    }

    if (a.delay_ns > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        a.deliver_at = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + (int64_t)a.delay_ns;
    }
    uint32_t timeout_ms = (uint32_t)(a.timeout_ns / 1000000u);
    struct cli_conn_cfg cfg = {
        .name = "ferry pub",
        .thread_mode = true,
        .reconnect_attempts = 5,
        .max_inflight = 1024,
        .ack_timeout_ms = a.ack ? timeout_ms : 0,
        .window_blocks = true,
    };
    if (cli_connect(o, &cfg, &c) < 0) {
        status = CLI_EXIT_ERROR;
        goto out;
    }

    uint64_t sent = 0;
    if (from_lines) {
        char *line = NULL;
        size_t line_cap = 0;
        ssize_t n;
        while (!cli_interrupted && (n = getline(&line, &line_cap, stdin)) >= 0) {
            if (n > 0 && line[n - 1] == '\n') {
                n--;
            }
            if (publish_one(c, &a, &st, topic, line, (size_t)n) < 0) {
                status = CLI_EXIT_ERROR;
                break;
            }
            sent++;
        }
        if (status == CLI_EXIT_OK && !cli_interrupted && ferror(stdin)) {
            cli_err("reading standard input: %s", strerror(errno));
            status = CLI_EXIT_ERROR;
        }
        free(line);
    } else {
        const void *data = message ? (const void *)message : (const void *)filebuf.data;
        size_t len = message ? strlen(message) : filebuf.len;
        for (uint64_t i = 0; i < a.count && !cli_interrupted; i++) {
            if (publish_one(c, &a, &st, topic, data, len) < 0) {
                status = CLI_EXIT_ERROR;
                break;
            }
            sent++;
        }
    }

    /* Flush what is pending (also after Ctrl-C), then judge the outcome. */
    rc = cli_close(c, (int)timeout_ms, status == CLI_EXIT_OK);
    c = NULL;
    if (rc < 0) {
        status = CLI_EXIT_ERROR;
    }
    uint64_t failed = __atomic_load_n(&st.failed, __ATOMIC_RELAXED);
    uint64_t acked = __atomic_load_n(&st.acked, __ATOMIC_RELAXED);
    if (a.ack && status == CLI_EXIT_OK && acked + failed < sent) {
        cli_err("%llu of %llu messages were not acknowledged",
                (unsigned long long)(sent - acked - failed), (unsigned long long)sent);
        status = CLI_EXIT_ERROR;
    }
    if (failed > 0) {
        if (a.ack) {
            cli_err("%llu of %llu messages failed", (unsigned long long)failed,
                    (unsigned long long)sent);
        }
        status = CLI_EXIT_ERROR;
    }
    if (__atomic_load_n(&cli_async_errors, __ATOMIC_RELAXED) > 0) {
        status = CLI_EXIT_ERROR;
    }
    if (cli_interrupted && status == CLI_EXIT_OK) {
        status = cli_interrupt_status();
    }

out:
    for (size_t i = 0; i < a.n_headers; i++) {
        free(a.header_bufs[i]);
    }
    cli_buf_free(&filebuf);
    return status;
}
