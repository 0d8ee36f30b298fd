/*
 * cmd_top.c - `ferry top`: a live view of a broker, refreshed every
 * interval, in plain text (like `nats top` or `redis-cli --stat`).
 *
 * Each frame comes from two snapshots of the admin answers (stats, topics,
 * consumers) an interval apart: rates are their differences. On a terminal
 * the screen is redrawn in place and q quits; --once prints one frame (two
 * snapshots, one interval apart) and exits, for scripts and tests.
 */
#include "cli.h"
#include "cli_util.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define TOP_TIMEOUT_MS 10000
#define TOP_LIST_MAX 10000u /* topics and durables asked for (the broker's most) */

static const char top_help[] =
    "usage: ferry top [--once] [--interval DURATION] [--topics N] [--durables N] [PATTERN]\n"
    "\n"
    "A live view of the broker, refreshed every interval: message and byte rates\n"
    "in and out, connections, the store's commits and syncs, the busiest topics\n"
    "(by messages per second) and the durable consumers with the most lag.\n"
    "PATTERN narrows the topics and durables shown (default: all). On a terminal\n"
    "the screen is redrawn in place; q or Ctrl-C quits.\n"
    "\n"
    "Options:\n"
    "  -1, --once           print one frame (rates over one interval) and exit\n"
    "  -i, --interval DUR   time between frames (default 1s; 100ms to 10s)\n"
    "  -t, --topics N       busiest topics shown (default 10; 0: none)\n"
    "  -d, --durables N     most lagging durables shown (default 10; 0: none)\n"
    "\n"
    "Examples:\n"
    "  ferry top\n"
    "  ferry top --once --interval 2s 'orders.>'\n";

struct top_args {
    const char *cmd;
    bool once;
    uint64_t interval_ns;
    uint32_t n_topics, n_durables;
};

/* One snapshot of what the broker says. */
struct snap {
    ferry_stats st;
    ferry_topic_info *topics;
    size_t n_topics;
    ferry_consumer_info *cons;
    size_t n_cons;
    uint64_t at_ns; /* our monotonic clock when it was taken */
};

static int top_opt(int opt, const char *arg, void *ctx)
{
    struct top_args *a = ctx;
    uint64_t v;
    switch (opt) {
    case '1':
        a->once = true;
        return -1;
    case 'i':
        /* at most 10 s: no request in between, and the keepalive is 30 s */
        if (cli_parse_duration_ns(arg, &a->interval_ns) < 0 || a->interval_ns < 100000000 ||
            a->interval_ns > 10000000000ull) {
            return cli_usage(a->cmd, "--interval needs a duration from 100ms to 10s, not '%s'",
                             arg);
        }
        return -1;
    case 't':
    case 'd':
        if (cli_parse_u64(arg, &v) < 0 || v > 1000) {
            return cli_usage(a->cmd, "--%s needs a number from 0 to 1000, not '%s'",
                             opt == 't' ? "topics" : "durables", arg);
        }
        *(opt == 't' ? &a->n_topics : &a->n_durables) = (uint32_t)v;
        return -1;
    default:
        return cli_usage(a->cmd, "unexpected option");
    }
}

static void snap_free(struct snap *s)
{
    ferry_free(s->topics);
    ferry_free(s->cons);
    memset(s, 0, sizeof(*s));
}

static int snap_take(ferry_client *c, const char *pattern, struct snap *s)
{
    memset(s, 0, sizeof(*s));
    int rc = ferry_admin_stats(c, TOP_TIMEOUT_MS, &s->st);
    if (rc == 0) {
        rc = ferry_admin_topics(c, pattern, TOP_LIST_MAX, TOP_TIMEOUT_MS, &s->topics, &s->n_topics);
    }
    if (rc == 0) {
        rc = ferry_admin_consumers(c, pattern, TOP_LIST_MAX, TOP_TIMEOUT_MS, &s->cons, &s->n_cons);
    }
    s->at_ns = cli_now_mono_ns();
    return rc;
}

/* ---- the frame ------------------------------------------------------------- */

struct topic_rate {
    const ferry_topic_info *t;
    double rate; /* messages per second over the interval */
};

static int by_rate(const void *a, const void *b)
{
    const struct topic_rate *x = a, *y = b;
    if (x->rate != y->rate) {
        return x->rate < y->rate ? 1 : -1;
    }
    return x->t->messages < y->t->messages ? 1 : x->t->messages > y->t->messages ? -1 : 0;
}

static int by_lag(const void *a, const void *b)
{
    const ferry_consumer_info *x = *(const ferry_consumer_info *const *)a;
    const ferry_consumer_info *y = *(const ferry_consumer_info *const *)b;
    if (x->lag_messages != y->lag_messages) {
        return x->lag_messages < y->lag_messages ? 1 : -1;
    }
    return x->lag_ms < y->lag_ms ? 1 : x->lag_ms > y->lag_ms ? -1 : 0;
}

/* The previous snapshot's last sequence of topic name (both lists are
 * sorted by name: i walks a forward), or UINT64_MAX when it was not there. */
static uint64_t prev_seq(const struct snap *a, size_t *i, const char *name)
{
    while (*i < a->n_topics && strcmp(a->topics[*i].name, name) < 0) {
        (*i)++;
    }
    return *i < a->n_topics && strcmp(a->topics[*i].name, name) == 0 ? a->topics[*i].last_seq
                                                                     : UINT64_MAX;
}

/* A rate as "12.3k/s". */
static void fmt_rate(char *out, size_t cap, double per_s)
{
    char n[24];
    cli_fmt_count(n, sizeof(n), per_s);
    snprintf(out, cap, "%s/s", n);
}

static void frame_header(struct cli_buf *b, const struct snap *a, const struct snap *z, double secs)
{
    const ferry_stats *s0 = &a->st, *s1 = &z->st;
    char up[64], r1[32], r2[32], r3[32], r4[32], b1[32], b2[32], sz[32], mx[32];
    cli_fmt_uptime(up, sizeof(up), s1->uptime_ms);
    fmt_rate(r1, sizeof(r1), (double)(s1->msgs_in - s0->msgs_in) / secs);
    fmt_rate(r2, sizeof(r2), (double)(s1->msgs_out - s0->msgs_out) / secs);
    cli_fmt_bytes(b1, sizeof(b1), (uint64_t)((double)(s1->bytes_in - s0->bytes_in) / secs));
    cli_fmt_bytes(b2, sizeof(b2), (uint64_t)((double)(s1->bytes_out - s0->bytes_out) / secs));
    fmt_rate(r3, sizeof(r3), (double)(s1->connections_total - s0->connections_total) / secs);
    cli_fmt_bytes(sz, sizeof(sz), s1->store_bytes);
    cli_fmt_bytes(mx, sizeof(mx), s1->store_map_size_max);
    cli_buf_addf(b, "ferry top - ferryd %s (id %s), up %s, every %.1fs\n\n", s1->server_version,
                 s1->server_id, up, secs);
    cli_buf_addf(b, "messages   in %10s  %9s/s     out %10s  %9s/s\n", r1, b1, r2, b2);
    cli_buf_addf(b,
                 "clients    %" PRIu64 " connected (%s new), %" PRIu64 " subscriptions, %" PRIu64
                 " slow consumers\n",
                 s1->connections, r3, s1->subscriptions, s1->slow_consumers);
    uint64_t commits = s1->store_commits - s0->store_commits;
    uint64_t refused = 0;
    for (int i = 1; i < FERRY_REFUSED_CODES; i++) {
        refused += s1->publish_refused[i] - s0->publish_refused[i];
    }
    fmt_rate(r4, sizeof(r4), (double)commits / secs);
    cli_buf_addf(b, "store      %s used of %s, %" PRIu64 " topics, commits %s", sz, mx, s1->topics,
                 r4);
    if (commits > 0) {
        uint64_t sync[FERRY_COMMIT_HIST_BUCKETS];
        for (int i = 0; i < FERRY_COMMIT_HIST_BUCKETS; i++) {
            sync[i] = s1->sync_hist[i] - s0->sync_hist[i];
        }
        cli_buf_addf(b, " of %.1f msgs, sync p99 %.0f us",
                     (double)(s1->store_messages - s0->store_messages) / (double)commits,
                     ferry_stats_commit_percentile(sync, 99));
    }
    cli_buf_addf(b,
                 "\nrefusals   %" PRIu64 " publishes, %" PRIu64 " logins, %" PRIu64
                 " permissions (this interval)\n",
                 refused, s1->auth_failures - s0->auth_failures,
                 s1->permission_denials - s0->permission_denials);
}

static void frame_topics(struct cli_buf *b, const struct snap *a, const struct snap *z, double secs,
                         uint32_t max)
{
    if (max == 0) {
        return;
    }
    struct topic_rate *v = calloc(z->n_topics ? z->n_topics : 1, sizeof(*v));
    if (v == NULL) {
        return;
    }
    size_t j = 0;
    for (size_t i = 0; i < z->n_topics; i++) {
        uint64_t before = prev_seq(a, &j, z->topics[i].name);
        uint64_t d = before == UINT64_MAX || before > z->topics[i].last_seq
                         ? 0
                         : z->topics[i].last_seq - before;
        v[i] = (struct topic_rate){&z->topics[i], (double)d / secs};
    }
    qsort(v, z->n_topics, sizeof(*v), by_rate);
    cli_buf_addf(b, "\n%-40s %10s %12s %10s %12s\n", "TOPIC", "MSGS/S", "STORED", "BYTES",
                 "LAST SEQ");
    for (size_t i = 0; i < z->n_topics && i < max; i++) {
        char r[32], by[32];
        cli_fmt_count(r, sizeof(r), v[i].rate);
        cli_fmt_bytes(by, sizeof(by), v[i].t->bytes);
        cli_buf_addf(b, "%-40.40s %10s %12" PRIu64 " %10s %12" PRIu64 "\n", v[i].t->name, r,
                     v[i].t->messages, by, v[i].t->last_seq);
    }
    if (z->n_topics == 0) {
        cli_buf_adds(b, "(no stored topics)\n");
    }
    free(v);
}

static void frame_durables(struct cli_buf *b, const struct snap *z, uint32_t max)
{
    if (max == 0) {
        return;
    }
    const ferry_consumer_info **v = calloc(z->n_cons ? z->n_cons : 1, sizeof(*v));
    if (v == NULL) {
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < z->n_cons; i++) {
        /* a wildcard durable's own entry sums its positions, listed too */
        if (z->cons[i].pattern[0] != '\0' || z->cons[i].next_seq != 0) {
            v[n++] = &z->cons[i];
        }
    }
    qsort(v, n, sizeof(*v), by_lag);
    cli_buf_addf(b, "\n%-20s %-30s %10s %9s %9s %7s\n", "DURABLE", "TOPIC", "LAG MSGS", "LAG",
                 "PENDING", "HOLDERS");
    for (size_t i = 0; i < n && i < max; i++) {
        char lag[32];
        cli_fmt_duration_ns(lag, sizeof(lag), v[i]->lag_ms * 1000000ull);
        cli_buf_addf(b, "%-20.20s %-30.30s %10" PRIu64 " %9s %9" PRIu64 " %7u\n", v[i]->name,
                     v[i]->topic, v[i]->lag_messages, v[i]->lag_ms ? lag : "-", v[i]->pending,
                     v[i]->holders);
    }
    if (n == 0) {
        cli_buf_adds(b, "(no durable consumers)\n");
    }
    free(v);
}

static int frame_print(const struct snap *a, const struct snap *z, const struct top_args *args,
                       bool redraw)
{
    double secs = (double)(z->at_ns - a->at_ns) / 1e9;
    if (secs <= 0) {
        secs = 1e-9;
    }
    struct cli_buf b = {0};
    if (redraw) {
        cli_buf_adds(&b, "\033[H\033[2J"); /* home, clear */
    }
    frame_header(&b, a, z, secs);
    frame_topics(&b, a, z, secs, args->n_topics);
    frame_durables(&b, z, args->n_durables);
    if (redraw) {
        cli_buf_adds(&b, "\n(q quits)\n");
    }
    fwrite(b.data, 1, b.len, stdout);
    cli_buf_free(&b);
    return fflush(stdout) == 0 ? 0 : -EIO;
}

/* ---- the loop -------------------------------------------------------------- */

/* Wait until mono time end, or a q on the terminal (1), or a signal. */
static int wait_until(uint64_t end, bool keys)
{
    for (;;) {
        uint64_t now = cli_now_mono_ns();
        if (cli_interrupted || now >= end) {
            return 0;
        }
        int ms = (int)((end - now) / 1000000) + 1;
        struct pollfd p = {STDIN_FILENO, POLLIN, 0};
        if (!keys) {
            struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
            nanosleep(&ts, NULL); /* EINTR on Ctrl-C: checked above */
            continue;
        }
        if (poll(&p, 1, ms) == 1) {
            char ch;
            ssize_t r = read(STDIN_FILENO, &ch, 1);
            if (r == 0 || (r == 1 && (ch == 'q' || ch == 'Q'))) {
                return 1;
            }
        }
    }
}

int cmd_top(struct cli_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"once", no_argument, NULL, '1'},
        {"interval", required_argument, NULL, 'i'},
        {"topics", required_argument, NULL, 't'},
        {"durables", required_argument, NULL, 'd'},
        {NULL, 0, NULL, 0},
    };
    struct top_args a = {
        .cmd = o->cmd, .interval_ns = 1000000000ull, .n_topics = 10, .n_durables = 10};
    int first;
    int rc = cli_getopt(o, argc, argv, "1i:t:d:", longopts, top_help, top_opt, &a, &first);
    if (rc != -1) {
        return rc;
    }
    if (first + 1 < argc) {
        return cli_usage(o->cmd, "unexpected argument '%s'", argv[first + 1]);
    }
    const char *pattern = first < argc ? argv[first] : NULL;
    ferry_client *c;
    if (cli_admin_connect(o, "ferry top", &c) < 0) {
        return CLI_EXIT_ERROR;
    }
    bool live = !a.once && isatty(STDOUT_FILENO);
    bool keys = live && isatty(STDIN_FILENO);
    struct termios saved;
    if (keys && tcgetattr(STDIN_FILENO, &saved) == 0) {
        struct termios raw = saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    } else {
        keys = false;
    }
    struct snap prev, cur;
    rc = snap_take(c, pattern, &prev);
    int status = CLI_EXIT_OK;
    while (rc == 0) {
        if (wait_until(prev.at_ns + a.interval_ns, keys) || cli_interrupted) {
            break;
        }
        if ((rc = snap_take(c, pattern, &cur)) < 0) {
            snap_free(&cur);
            break;
        }
        if (frame_print(&prev, &cur, &a, live) < 0) {
            status = CLI_EXIT_ERROR;
            snap_free(&cur);
            break;
        }
        snap_free(&prev);
        prev = cur;
        if (a.once) {
            break;
        }
    }
    snap_free(&prev);
    if (keys) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    }
    if (rc < 0) {
        status = cli_fail(c, rc, "top");
    } else if (cli_interrupted && a.once) {
        status = cli_interrupt_status();
    }
    ferry_client_close(c, 1000);
    ferry_client_destroy(c);
    return status;
}
