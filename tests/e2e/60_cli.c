/*
 * 60_cli.c - end-to-end tests of the `ferry` command-line tool: the real
 * binary (FERRY_CLI_PATH), run with pipes against a real ferryd.
 *
 * Synchronisation is by output, never by sleeping: a subscriber started
 * with --verbose reports "ferry: subscribed to PATTERN" on stderr once the
 * broker has acknowledged the subscription (after which every publish
 * reaches it); tests wait for that line, with a generous timeout.
 */
#include "cli_spawn.h"
#include "ferryd_proc.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef FERRY_CLI_PATH
#error "FERRY_CLI_PATH must name the ferry binary"
#endif

Suite *test_suite(void);

#define WAIT_MS 30000 /* generous: a slow, noisy 2-core machine */

static struct ferryd_proc broker;
static char server[64];

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void broker_up(void)
{
    ck_assert_int_eq(ferryd_start(&broker, NULL, NULL), 0);
    snprintf(server, sizeof(server), "127.0.0.1:%d", broker.port);
}

static void broker_down(void)
{
    if (broker.pid) {
        ferryd_stop(&broker);
    }
}

/* ---- running the CLI ---------------------------------------------------- */

struct proc {
    pid_t pid;
    int in;  /* its stdin (write end), -1 when closed */
    int out; /* its stdout (read end) */
    int err; /* its stderr (read end) */
    char *out_buf, *err_buf;
    size_t out_len, err_len;
    int status; /* exit code, 128 + signal, or -1 while running */
};

/* Start ferry with argv (NULL-terminated, without argv[0]); -s is added. */
static void proc_start(struct proc *p, const char *const *args)
{
    const char *const pre[] = {"-s", server, NULL};
    int fds[3];
    pid_t pid = cli_spawn(FERRY_CLI_PATH, pre, args, NULL, fds);
    ck_assert_int_gt(pid, 0);
    memset(p, 0, sizeof(*p));
    p->pid = pid;
    p->in = fds[0];
    p->out = fds[1];
    p->err = fds[2];
    p->status = -1;
    fcntl(p->out, F_SETFL, O_NONBLOCK);
    fcntl(p->err, F_SETFL, O_NONBLOCK);
}

static void append(char **buf, size_t *len, const char *p, size_t n)
{
    *buf = realloc(*buf, *len + n + 1);
    ck_assert_ptr_nonnull(*buf);
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* Read what is available on stdout/stderr, waiting up to wait_ms for some.
 * Returns 0 when both are at EOF, 1 otherwise. */
static int proc_pump(struct proc *p, int wait_ms)
{
    struct pollfd fds[2] = {{.fd = p->out, .events = POLLIN}, {.fd = p->err, .events = POLLIN}};
    if (p->out < 0 && p->err < 0) {
        return 0;
    }
    int n = poll(fds, 2, wait_ms);
    if (n < 0 && errno != EINTR) {
        ck_abort_msg("poll: %s", strerror(errno));
    }
    char tmp[4096];
    int *fdp[2] = {&p->out, &p->err};
    char **bufs[2] = {&p->out_buf, &p->err_buf};
    size_t *lens[2] = {&p->out_len, &p->err_len};
    for (int i = 0; i < 2; i++) {
        if (*fdp[i] < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
            continue;
        }
        ssize_t r = read(*fdp[i], tmp, sizeof(tmp));
        if (r > 0) {
            append(bufs[i], lens[i], tmp, (size_t)r);
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
            close(*fdp[i]);
            *fdp[i] = -1;
        }
    }
    return (p->out >= 0 || p->err >= 0) ? 1 : 0;
}

/* Wait until stderr (or stdout) contains needle. */
static int proc_wait_for(struct proc *p, bool on_stderr, const char *needle, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    for (;;) {
        const char *buf = on_stderr ? p->err_buf : p->out_buf;
        if (buf && strstr(buf, needle)) {
            return 0;
        }
        long long left = end - now_ms();
        if (left <= 0) {
            return -ETIMEDOUT;
        }
        if (proc_pump(p, (int)(left > 200 ? 200 : left)) == 0) {
            buf = on_stderr ? p->err_buf : p->out_buf;
            return buf && strstr(buf, needle) ? 0 : -EPIPE;
        }
    }
}

static void proc_close_stdin(struct proc *p)
{
    if (p->in >= 0) {
        close(p->in);
        p->in = -1;
    }
}

/* Collect all output and the exit status; kill after timeout_ms. */
static int proc_wait(struct proc *p, int timeout_ms)
{
    proc_close_stdin(p);
    long long end = now_ms() + timeout_ms;
    int status;
    for (;;) {
        proc_pump(p, 100);
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            break;
        }
        if (now_ms() > end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
            ck_abort_msg("ferry did not exit in %d ms; stderr: %s", timeout_ms,
                         p->err_buf ? p->err_buf : "");
        }
    }
    while (proc_pump(p, 1000)) {
    }
    p->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return p->status;
}

static void proc_free(struct proc *p)
{
    if (p->in >= 0) {
        close(p->in);
    }
    if (p->out >= 0) {
        close(p->out);
    }
    if (p->err >= 0) {
        close(p->err);
    }
    free(p->out_buf);
    free(p->err_buf);
    memset(p, 0, sizeof(*p));
}

/* Run to completion with optional stdin text; returns the exit status. */
static int run(struct proc *p, const char *input, const char *const *args)
{
    proc_start(p, args);
    if (input) {
        size_t n = strlen(input);
        ck_assert_int_eq(write(p->in, input, n), (ssize_t)n);
    }
    return proc_wait(p, WAIT_MS);
}

/* Start `ferry sub --verbose ARGS...` and wait until it is subscribed. */
static void sub_start(struct proc *p, const char *const *args)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = "sub";
    argv[n++] = "--verbose";
    for (int i = 0; args[i]; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    proc_start(p, argv);
    int rc = proc_wait_for(p, true, "ferry: subscribed to", WAIT_MS);
    ck_assert_msg(rc == 0, "sub never reported its subscription (%d); stderr: %s", rc,
                  p->err_buf ? p->err_buf : "");
}

/* ---- a minimal JSON reader (objects, arrays, strings, numbers, literals) -- */

struct jv {
    enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } type;
    double num;
    int boolean;
    char *str; /* J_STR: decoded bytes (NUL-terminated), str_len bytes */
    size_t str_len;
    struct jv *items; /* J_ARR / J_OBJ values */
    char **keys;      /* J_OBJ */
    size_t n;
};

static void jv_free(struct jv *v)
{
    free(v->str);
    for (size_t i = 0; i < v->n; i++) {
        jv_free(&v->items[i]);
        if (v->keys) {
            free(v->keys[i]);
        }
    }
    free(v->items);
    free(v->keys);
}

static const char *j_ws(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') {
        s++;
    }
    return s;
}

static const char *j_parse(const char *s, struct jv *out);

static const char *j_string(const char *s, char **out, size_t *out_len)
{
    if (*s != '"') {
        return NULL;
    }
    s++;
    char *buf = NULL;
    size_t len = 0;
    while (*s && *s != '"') {
        char c = *s++;
        if ((unsigned char)c < 0x20) {
            free(buf);
            return NULL; /* raw control characters are not allowed */
        }
        if (c == '\\') {
            char e = *s++;
            switch (e) {
            case '"':
                c = '"';
                break;
            case '\\':
                c = '\\';
                break;
            case '/':
                c = '/';
                break;
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = '\f';
                break;
            case 'u': {
                unsigned v = 0;
                for (int k = 0; k < 4; k++) {
                    char h = *s++;
                    v <<= 4;
                    if (h >= '0' && h <= '9') {
                        v |= (unsigned)(h - '0');
                    } else if (h >= 'a' && h <= 'f') {
                        v |= (unsigned)(h - 'a' + 10);
                    } else if (h >= 'A' && h <= 'F') {
                        v |= (unsigned)(h - 'A' + 10);
                    } else {
                        free(buf);
                        return NULL;
                    }
                }
                if (v > 0x7f) {
                    free(buf);
                    return NULL; /* our writer escapes only control bytes */
                }
                c = (char)v;
                break;
            }
            default:
                free(buf);
                return NULL;
            }
        }
        append(&buf, &len, &c, 1);
    }
    if (*s != '"') {
        free(buf);
        return NULL;
    }
    if (!buf) {
        append(&buf, &len, "", 0);
    }
    *out = buf;
    *out_len = len;
    return s + 1;
}

static const char *j_parse(const char *s, struct jv *out)
{
    memset(out, 0, sizeof(*out));
    s = j_ws(s);
    if (*s == '{' || *s == '[') {
        int is_obj = *s == '{';
        char close = is_obj ? '}' : ']';
        out->type = is_obj ? J_OBJ : J_ARR;
        s = j_ws(s + 1);
        if (*s == close) {
            return s + 1;
        }
        for (;;) {
            out->items = realloc(out->items, (out->n + 1) * sizeof(*out->items));
            if (is_obj) {
                out->keys = realloc(out->keys, (out->n + 1) * sizeof(*out->keys));
                size_t kl;
                s = j_string(j_ws(s), &out->keys[out->n], &kl);
                if (!s) {
                    return NULL;
                }
                s = j_ws(s);
                if (*s++ != ':') {
                    free(out->keys[out->n]);
                    return NULL;
                }
            }
            s = j_parse(s, &out->items[out->n]);
            out->n++;
            if (!s) {
                return NULL;
            }
            s = j_ws(s);
            if (*s == ',') {
                s++;
                continue;
            }
            if (*s == close) {
                return s + 1;
            }
            return NULL;
        }
    }
    if (*s == '"') {
        out->type = J_STR;
        return j_string(s, &out->str, &out->str_len);
    }
    if (strncmp(s, "true", 4) == 0 || strncmp(s, "false", 5) == 0) {
        out->type = J_BOOL;
        out->boolean = *s == 't';
        return s + (*s == 't' ? 4 : 5);
    }
    if (strncmp(s, "null", 4) == 0) {
        out->type = J_NULL;
        return s + 4;
    }
    char *end;
    out->type = J_NUM;
    out->num = strtod(s, &end);
    return end == s ? NULL : end;
}

/* Parse one complete JSON text (trailing whitespace allowed). */
static void json_parse(const char *text, struct jv *out)
{
    const char *end = j_parse(text, out);
    ck_assert_msg(end != NULL, "not JSON: %s", text);
    ck_assert_msg(*j_ws(end) == '\0', "trailing text after JSON: %s", end);
}

static const struct jv *jget(const struct jv *o, const char *key)
{
    ck_assert_int_eq(o->type, J_OBJ);
    for (size_t i = 0; i < o->n; i++) {
        if (strcmp(o->keys[i], key) == 0) {
            return &o->items[i];
        }
    }
    return NULL;
}

static const char *jstr(const struct jv *o, const char *key)
{
    const struct jv *v = jget(o, key);
    ck_assert_msg(v && v->type == J_STR, "member '%s' missing or not a string", key);
    return v->str;
}

static double jnum(const struct jv *o, const char *key)
{
    const struct jv *v = jget(o, key);
    ck_assert_msg(v && v->type == J_NUM, "member '%s' missing or not a number", key);
    return v->num;
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(test_cli_pub_sub_round_trip_through_pipes)
{
    struct proc sub, pub;
    sub_start(&sub, (const char *const[]){"--count", "3", "cli.rt", NULL});
    ck_assert_int_eq(run(&pub, "one\ntwo\nthree\n", (const char *const[]){"pub", "cli.rt", NULL}),
                     0);
    ck_assert_int_eq(proc_wait(&sub, WAIT_MS), 0);
    ck_assert_str_eq(sub.out_buf ? sub.out_buf : "", "one\ntwo\nthree\n");
    proc_free(&sub);
    proc_free(&pub);
}
END_TEST

START_TEST(test_cli_pub_message_count_and_ack)
{
    struct proc sub, pub;
    sub_start(&sub, (const char *const[]){"--count", "4", "--timeout", "60s", "cli.count", NULL});
    ck_assert_int_eq(run(&pub, NULL,
                         (const char *const[]){"pub", "--ack", "--count", "4", "cli.count",
                                               "hello world", NULL}),
                     0);
    ck_assert_int_eq(proc_wait(&sub, WAIT_MS), 0);
    ck_assert_str_eq(sub.out_buf ? sub.out_buf : "",
                     "hello world\nhello world\nhello world\nhello world\n");
    proc_free(&sub);
    proc_free(&pub);
}
END_TEST

START_TEST(test_cli_sub_json_has_metadata_headers_and_base64)
{
    struct proc sub, pub;
    char path[] = "/tmp/ferry-cli-bin-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const unsigned char bin[] = {0x00, 0xff, 0x10, 'a', 0x80};
    ck_assert_int_eq(write(fd, bin, sizeof(bin)), (ssize_t)sizeof(bin));
    close(fd);

    sub_start(&sub, (const char *const[]){"--json", "--count", "2", "cli.json.*", NULL});
    ck_assert_int_eq(
        run(&pub, NULL,
            (const char *const[]){"pub", "--header", "source=test", "--header", "q=\"x\"", "--key",
                                  "k1", "cli.json.text", "line \"one\"\ttab", NULL}),
        0);
    proc_free(&pub);
    ck_assert_int_eq(
        run(&pub, NULL, (const char *const[]){"pub", "--file", path, "cli.json.bin", NULL}), 0);
    ck_assert_int_eq(proc_wait(&sub, WAIT_MS), 0);
    unlink(path);

    char *nl = strchr(sub.out_buf, '\n');
    ck_assert_ptr_nonnull(nl);
    *nl = '\0';
    struct jv a, b;
    json_parse(sub.out_buf, &a);
    json_parse(nl + 1, &b);

    ck_assert_str_eq(jstr(&a, "topic"), "cli.json.text");
    ck_assert_str_eq(jstr(&a, "payload"), "line \"one\"\ttab");
    ck_assert_ptr_null(jget(&a, "encoding"));
    ck_assert_str_eq(jstr(&a, "key"), "k1");
    ck_assert(jnum(&a, "seq") >= 0);
    ck_assert(jnum(&a, "time_ns") > 1.7e18);
    ck_assert_int_eq(strlen(jstr(&a, "time")), strlen("2026-11-29T20:15:00.000000000Z"));
    const struct jv *h = jget(&a, "headers");
    ck_assert_ptr_nonnull(h);
    ck_assert_str_eq(jstr(h, "source"), "test");
    ck_assert_str_eq(jstr(h, "q"), "\"x\"");

    ck_assert_str_eq(jstr(&b, "topic"), "cli.json.bin");
    ck_assert_str_eq(jstr(&b, "encoding"), "base64");
    ck_assert_str_eq(jstr(&b, "payload"), "AP8QYYA=");
    h = jget(&b, "headers");
    ck_assert(h && h->type == J_OBJ && h->n == 0);
    ck_assert_ptr_null(jget(&b, "key"));
    jv_free(&a);
    jv_free(&b);
    proc_free(&sub);
    proc_free(&pub);
}
END_TEST

START_TEST(test_cli_pub_ack_fails_with_exit_1_when_broker_is_down)
{
    /* A port where nothing listens: the broker's, after it stopped. */
    ck_assert_int_eq(ferryd_stop(&broker) >= 0, 1);
    broker.pid = 0;
    struct proc pub;
    ck_assert_int_eq(run(&pub, NULL, (const char *const[]){"pub", "--ack", "cli.down", "x", NULL}),
                     1);
    ck_assert_ptr_nonnull(pub.err_buf);
    ck_assert_msg(strncmp(pub.err_buf, "ferry: ", 7) == 0, "stderr: %s", pub.err_buf);
    ck_assert_ptr_nonnull(strstr(pub.err_buf, server));
    proc_free(&pub);
}
END_TEST

/* The broker dies while `pub --ack` streams stdin: what it cannot get
 * acknowledged fails, with the reason, and the exit status is 1. */
START_TEST(test_cli_pub_ack_fails_with_exit_1_when_broker_dies)
{
    struct proc sub, pub;
    sub_start(&sub, (const char *const[]){"cli.dies", NULL});
    proc_start(&pub, (const char *const[]){"pub", "--ack", "cli.dies", NULL});
    ck_assert_int_eq(write(pub.in, "l1\n", 3), 3);
    ck_assert_int_eq(proc_wait_for(&sub, false, "l1\n", WAIT_MS), 0);
    ck_assert_int_eq(ferryd_kill9(&broker), 0);
    kill(sub.pid, SIGKILL);
    proc_wait(&sub, WAIT_MS);
    ck_assert_int_eq(write(pub.in, "l2\nl3\n", 6), 6);
    ck_assert_int_eq(proc_wait(&pub, WAIT_MS), 1);
    ck_assert_msg(pub.err_buf && strstr(pub.err_buf, "ferry: "), "stderr: %s",
                  pub.err_buf ? pub.err_buf : "");
    proc_free(&sub);
    proc_free(&pub);
    /* ferryd_kill9 keeps the data dir for a restart; remove it. */
    ck_assert_int_eq(ferryd_restart(&broker, NULL), 0);
}
END_TEST

START_TEST(test_cli_usage_errors_exit_2_and_help_exits_0)
{
    struct proc p;
    static const char *const cases[][6] = {
        {"pub", NULL},
        {"--bogus", NULL},
        {"nosuch", NULL},
        {"sub", "--count", "x", "t", NULL},
        {"sub", "--all", "--last", "3", "t", NULL},
        {"pub", "--count", "2", "t", NULL}, /* --count needs MESSAGE */
        {"bench", "--count", "1", "--duration", "1s", NULL},
        {"topic", "frobnicate", "t", NULL},
        {"sub", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ck_assert_msg(run(&p, NULL, cases[i]) == 2, "case %zu (%s %s) exited %d", i, cases[i][0],
                      cases[i][1] ? cases[i][1] : "", p.status);
        ck_assert_msg(p.err_buf && strncmp(p.err_buf, "ferry", 5) == 0, "case %zu stderr: %s", i,
                      p.err_buf ? p.err_buf : "");
        ck_assert_msg(!p.out_buf, "case %zu wrote to stdout", i);
        proc_free(&p);
    }
    static const char *const helps[][3] = {
        {"--help", NULL},    {"pub", "--help"},    {"sub", "--help"},   {"bench", "--help"},
        {"stats", "--help"}, {"topics", "--help"}, {"topic", "--help"}, {"help", "sub"},
    };
    for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
        ck_assert_int_eq(run(&p, NULL, helps[i]), 0);
        ck_assert_msg(p.out_buf && strstr(p.out_buf, "Usage: ferry"), "help %zu", i);
        ck_assert_msg(strstr(p.out_buf, "Example"), "help %zu has no examples", i);
        ck_assert_msg(strstr(p.out_buf, "Exit status"), "help %zu lacks exit codes", i);
        proc_free(&p);
    }
}
END_TEST

START_TEST(test_cli_sub_timeout_exits_1_when_count_not_reached)
{
    struct proc p;
    ck_assert_int_eq(run(&p, NULL,
                         (const char *const[]){"sub", "--count", "1", "--timeout", "300ms",
                                               "cli.nothing", NULL}),
                     1);
    ck_assert_ptr_nonnull(strstr(p.err_buf, "received 0 of 1"));
    proc_free(&p);
}
END_TEST

static void check_bench(const char *const *args, double want_pub, double want_recv)
{
    struct proc p;
    ck_assert_int_eq(run(&p, NULL, args), 0);
    struct jv r;
    json_parse(p.out_buf, &r);
    ck_assert_int_eq((long)jnum(&r, "published"), (long)want_pub);
    ck_assert_int_eq((long)jnum(&r, "received"), (long)want_recv);
    ck_assert_int_eq((long)jnum(&r, "expected"), (long)want_recv);
    ck_assert(jnum(&r, "pub_msgs_per_s") > 0);
    ck_assert(jnum(&r, "sub_msgs_per_s") > 0);
    const struct jv *lat = jget(&r, "latency_ns");
    ck_assert(lat && lat->type == J_OBJ);
    ck_assert_int_eq((long)jnum(lat, "samples"), (long)want_recv);
    ck_assert(jnum(lat, "p50") <= jnum(lat, "p99"));
    ck_assert(jnum(lat, "p99") <= jnum(lat, "max"));
    ck_assert(jnum(lat, "max") > 0);
    const struct jv *ok = jget(&r, "ok");
    ck_assert(ok && ok->type == J_BOOL && ok->boolean);
    /* A fresh stored topic is emptied after the run (no --keep). */
    const struct jv *eph = jget(&r, "ephemeral");
    ck_assert(eph && eph->type == J_BOOL);
    if (!eph->boolean) {
        ck_assert_int_eq((long)jnum(&r, "purged"), (long)want_pub);
    }
    jv_free(&r);
    proc_free(&p);
}

START_TEST(test_cli_bench_counts_match)
{
    check_bench((const char *const[]){"bench", "--json", "--pubs", "2", "--subs", "2", "--count",
                                      "5001", "--size", "64", "--topic", "cli.bench", NULL},
                5001, 10002);
}
END_TEST

START_TEST(test_cli_bench_with_ack_window_counts_acks)
{
    struct proc p;
    ck_assert_int_eq(
        run(&p, NULL,
            (const char *const[]){"bench", "--json", "--subs", "1", "--count", "3000",
                                  "--ack-window", "64", "--topic", "cli.bench.ack", NULL}),
        0);
    struct jv r;
    json_parse(p.out_buf, &r);
    ck_assert_int_eq((long)jnum(&r, "published"), 3000);
    ck_assert_int_eq((long)jnum(&r, "acked"), 3000);
    ck_assert_int_eq((long)jnum(&r, "failed"), 0);
    ck_assert_int_eq((long)jnum(&r, "received"), 3000);
    /* The broker's store figures for the run: every acked message was in
     * some commit, a commit holds at least one, the percentiles are in
     * order. */
    const struct jv *st = jget(&r, "store");
    ck_assert(st && st->type == J_OBJ);
    double commits = jnum(st, "commits"), msgs = jnum(st, "messages");
    ck_assert_msg(msgs >= 3000 && commits >= 1 && commits <= msgs, "%g commits, %g messages",
                  commits, msgs);
    ck_assert(jnum(st, "msgs_per_commit") >= 1);
    double p50 = jnum(st, "commit_p50_us"), p99 = jnum(st, "commit_p99_us");
    ck_assert_msg(p50 >= 1 && p50 <= p99 && p99 <= jnum(st, "commit_p999_us"), "%g %g", p50, p99);
    jv_free(&r);
    proc_free(&p);
}
END_TEST

/* --duration with --rate: a paced run publishes about rate x duration
 * messages, and each subscriber gets every one. */
START_TEST(test_cli_bench_duration_and_rate)
{
    struct proc p;
    ck_assert_int_eq(
        run(&p, NULL,
            (const char *const[]){"bench", "--json", "--subs", "2", "--rate", "4000", "--duration",
                                  "500ms", "--topic", "cli.bench.rate", NULL}),
        0);
    struct jv r;
    json_parse(p.out_buf, &r);
    double published = jnum(&r, "published");
    /* A loaded machine may fall behind the pace, never ahead of it. */
    ck_assert_msg(published >= 100 && published <= 2001, "published %g", published);
    ck_assert(jnum(&r, "received") == 2 * published);
    ck_assert(jnum(&r, "pub_seconds") >= 0.5);
    jv_free(&r);
    proc_free(&p);
}
END_TEST

/* ferryd decides which topics are ephemeral (--ephemeral PATTERN); bench
 * reports what it saw and warns when --persistent/--ephemeral disagree. */
START_TEST(test_cli_bench_reports_ephemeral_or_persistent)
{
    ck_assert_int_ge(ferryd_stop(&broker), 0);
    static const char *const args[] = {"--ephemeral", "eph.>", NULL};
    ck_assert_int_eq(ferryd_start(&broker, NULL, args), 0);
    snprintf(server, sizeof(server), "127.0.0.1:%d", broker.port);

    struct {
        const char *mode, *topic;
        int want_ephemeral, want_warning;
    } cases[] = {
        {"--ephemeral", "eph.bench", 1, 0},
        {"--persistent", "cli.stored", 0, 0},
        {"--ephemeral", "cli.stored2", 0, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct proc p;
        ck_assert_int_eq(
            run(&p, NULL,
                (const char *const[]){"bench", "--json", cases[i].mode, "--ack-window", "16",
                                      "--count", "500", "--topic", cases[i].topic, NULL}),
            0);
        struct jv r;
        json_parse(p.out_buf, &r);
        const struct jv *e = jget(&r, "ephemeral");
        ck_assert_msg(e && e->type == J_BOOL && e->boolean == cases[i].want_ephemeral, "case %zu",
                      i);
        ck_assert_int_eq((long)jnum(&r, "acked"), 500);
        bool warned = p.err_buf && strstr(p.err_buf, "warning: topic");
        ck_assert_msg(warned == (bool)cases[i].want_warning, "case %zu stderr: %s", i,
                      p.err_buf ? p.err_buf : "");
        jv_free(&r);
        proc_free(&p);
    }
}
END_TEST

/* --topics spreads publishers and subscribers over TOPIC.0 .. TOPIC.N-1;
 * each subscriber gets exactly what was published to its topic. */
START_TEST(test_cli_bench_topics_split_the_streams)
{
    struct proc p;
    ck_assert_int_eq(
        run(&p, NULL,
            (const char *const[]){"bench", "--json", "--pubs", "2", "--subs", "4", "--topics", "2",
                                  "--count", "2001", "--topic", "cli.multi", NULL}),
        0);
    struct jv r;
    json_parse(p.out_buf, &r);
    ck_assert_int_eq((long)jnum(&r, "topics"), 2);
    ck_assert_int_eq((long)jnum(&r, "published"), 2001);
    /* subscribers 0, 2 read cli.multi.0 (1001), 1, 3 read cli.multi.1 (1000) */
    ck_assert_int_eq((long)jnum(&r, "expected"), 4002);
    ck_assert_int_eq((long)jnum(&r, "received"), 4002);
    jv_free(&r);
    proc_free(&p);
}
END_TEST

START_TEST(test_cli_bench_human_output)
{
    struct proc p;
    ck_assert_int_eq(
        run(&p, NULL,
            (const char *const[]){"bench", "--count", "1000", "--topic", "cli.bench.text", NULL}),
        0);
    ck_assert_ptr_nonnull(strstr(p.out_buf, "publish "));
    ck_assert_ptr_nonnull(strstr(p.out_buf, "msgs/s"));
    ck_assert_ptr_nonnull(strstr(p.out_buf, "p99.9"));
    ck_assert_ptr_null(strstr(p.out_buf, "\r")); /* no progress line into a pipe */
    proc_free(&p);
}
END_TEST

START_TEST(test_cli_pub_refusal_reports_reason_and_exit_1)
{
    struct proc p;
    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"pub", "--ack", "bad..topic", "x", NULL}),
                     1);
    ck_assert_msg(p.err_buf && strncmp(p.err_buf, "ferry: ", 7) == 0, "stderr: %s",
                  p.err_buf ? p.err_buf : "");
    ck_assert_ptr_nonnull(strstr(p.err_buf, "topic"));
    proc_free(&p);
}
END_TEST

START_TEST(test_cli_stats_json_reports_counters)
{
    struct proc p, pub;
    ck_assert_int_eq(run(&pub, NULL, (const char *const[]){"pub", "cli.stats", "x", NULL}), 0);
    proc_free(&pub);
    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"stats", "--json", NULL}), 0);
    struct jv r;
    json_parse(p.out_buf, &r);
    ck_assert(jnum(&r, "connections") >= 1); /* ours */
    ck_assert(jnum(&r, "connections_total") >= 2);
    ck_assert(jnum(&r, "msgs_in") >= 1);
    ck_assert(jnum(&r, "bytes_in") > 0);
    ck_assert(jnum(&r, "uptime_ms") >= 0);
    ck_assert(jnum(&r, "slow_consumers") >= 0);
    ck_assert(strlen(jstr(&r, "server_version")) > 0);
    jv_free(&r);
    proc_free(&p);
    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"stats", NULL}), 0);
    ck_assert_ptr_nonnull(strstr(p.out_buf, "connections"));
    ck_assert_ptr_nonnull(strstr(p.out_buf, "slow consumers"));
    proc_free(&p);
}
END_TEST

/*
 * Topic administration: with a broker that stores topics, a topic published
 * with acks is listed with its sequence range, shown by `topic info`, and
 * emptied by `topic purge`. A broker that cannot (no store) refuses: then
 * the CLI must exit 1 and pass the broker's reason on.
 */
START_TEST(test_cli_topics_info_purge)
{
    struct proc p, pub;
    ck_assert_int_eq(run(&pub, "a\nb\nc\n", (const char *const[]){"pub", "--ack", "cli.adm", NULL}),
                     0);
    proc_free(&pub);
    int rc = run(&p, NULL, (const char *const[]){"topics", "--json", NULL});
    if (rc == 1) {
        ck_assert_msg(p.err_buf && strncmp(p.err_buf, "ferry: topics: ", 15) == 0 &&
                          strlen(p.err_buf) > 16,
                      "refusal without a reason: %s", p.err_buf ? p.err_buf : "");
        proc_free(&p);
        ck_assert_int_eq(run(&p, NULL, (const char *const[]){"topic", "info", "cli.adm", NULL}), 1);
        ck_assert_ptr_nonnull(strstr(p.err_buf, "ferry: topic info cli.adm: "));
        proc_free(&p);
        return;
    }
    ck_assert_int_eq(rc, 0);
    struct jv r;
    json_parse(p.out_buf, &r);
    ck_assert_int_eq(r.type, J_ARR);
    const struct jv *t = NULL;
    for (size_t i = 0; i < r.n; i++) {
        if (strcmp(jstr(&r.items[i], "name"), "cli.adm") == 0) {
            t = &r.items[i];
        }
    }
    ck_assert_msg(t != NULL, "cli.adm not listed: %s", p.out_buf);
    ck_assert_int_eq((long)jnum(t, "messages"), 3);
    ck_assert_int_eq((long)jnum(t, "first_seq"), 1);
    ck_assert_int_eq((long)jnum(t, "last_seq"), 3);
    jv_free(&r);
    proc_free(&p);

    ck_assert_int_eq(
        run(&p, NULL, (const char *const[]){"topic", "info", "--json", "cli.adm", NULL}), 0);
    json_parse(p.out_buf, &r);
    ck_assert_str_eq(jstr(&r, "name"), "cli.adm");
    ck_assert_int_eq((long)jnum(&r, "last_seq"), 3);
    jv_free(&r);
    proc_free(&p);

    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"topic", "purge", "cli.adm", NULL}), 0);
    ck_assert_ptr_nonnull(strstr(p.out_buf, "purged 3 messages"));
    proc_free(&p);
    ck_assert_int_eq(
        run(&p, NULL, (const char *const[]){"topic", "info", "--json", "cli.adm", NULL}), 0);
    json_parse(p.out_buf, &r);
    ck_assert_int_eq((long)jnum(&r, "messages"), 0);
    ck_assert_int_eq((long)jnum(&r, "last_seq"), 3);
    jv_free(&r);
    proc_free(&p);
}
END_TEST

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++) {
        n += *s == '\n';
    }
    return n;
}

/* Ctrl-C: a subscriber ends cleanly with 130; a publisher reading stdin
 * flushes what it read and ends with 130; a subscriber whose reader went
 * away (ferry sub | head -1) ends quietly with 0. */
START_TEST(test_cli_interrupt_and_closed_stdout_end_cleanly)
{
    struct proc sub, pub;
    sub_start(&sub, (const char *const[]){"cli.int", NULL});
    proc_start(&pub, (const char *const[]){"pub", "--ack", "cli.int", NULL});
    ck_assert_int_eq(write(pub.in, "l1\nl2\n", 6), 6); /* stdin stays open */
    ck_assert_int_eq(proc_wait_for(&sub, false, "l1\nl2\n", WAIT_MS), 0);
    kill(pub.pid, SIGINT);
    ck_assert_int_eq(proc_wait(&pub, WAIT_MS), 130);
    ck_assert_msg(!pub.err_buf, "pub stderr: %s", pub.err_buf);
    kill(sub.pid, SIGINT);
    ck_assert_int_eq(proc_wait(&sub, WAIT_MS), 130);
    proc_free(&sub);
    proc_free(&pub);

    sub_start(&sub, (const char *const[]){"cli.epipe", NULL});
    close(sub.out);
    sub.out = -1;
    /* Publish until the subscriber notices its reader is gone. */
    long long end = now_ms() + WAIT_MS;
    int status = -1;
    while (now_ms() < end) {
        ck_assert_int_eq(run(&pub, NULL, (const char *const[]){"pub", "cli.epipe", "x", NULL}), 0);
        proc_free(&pub);
        int st;
        if (waitpid(sub.pid, &st, WNOHANG) == sub.pid) {
            status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        proc_pump(&sub, 50);
    }
    ck_assert_int_eq(status, 0);
    sub.pid = 0;
    proc_free(&sub);
}
END_TEST

/* Two members of a queue group share ten messages: each message is printed
 * by exactly one of them. */
START_TEST(test_cli_queue_group_members_share_messages)
{
    struct proc g1, g2, all, pub;
    sub_start(&g1, (const char *const[]){"--group", "workers", "cli.jobs", NULL});
    sub_start(&g2, (const char *const[]){"--group", "workers", "cli.jobs", NULL});
    sub_start(&all, (const char *const[]){"--count", "10", "cli.jobs", NULL});
    ck_assert_int_eq(run(&pub, "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n",
                         (const char *const[]){"pub", "--ack", "cli.jobs", NULL}),
                     0);
    ck_assert_int_eq(proc_wait(&all, WAIT_MS), 0);
    ck_assert_int_eq(count_lines(all.out_buf), 10);
    long long end = now_ms() + WAIT_MS;
    while (count_lines(g1.out_buf) + count_lines(g2.out_buf) < 10 && now_ms() < end) {
        proc_pump(&g1, 50);
        proc_pump(&g2, 50);
    }
    kill(g1.pid, SIGINT);
    kill(g2.pid, SIGINT);
    ck_assert_int_eq(proc_wait(&g1, WAIT_MS), 130);
    ck_assert_int_eq(proc_wait(&g2, WAIT_MS), 130);
    ck_assert_int_eq(count_lines(g1.out_buf) + count_lines(g2.out_buf), 10);
    int seen[10] = {0};
    const char *bufs[2] = {g1.out_buf, g2.out_buf};
    for (int k = 0; k < 2; k++) {
        for (const char *p = bufs[k]; p && *p; p = strchr(p, '\n') + 1) {
            ck_assert(*p >= '0' && *p <= '9' && p[1] == '\n');
            seen[*p - '0']++;
        }
    }
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(seen[i], 1);
    }
    proc_free(&g1);
    proc_free(&g2);
    proc_free(&all);
    proc_free(&pub);
}
END_TEST

/* Run `ferry sub ARGS` to completion and check its exact output. */
static void expect_sub_output(const char *const *args, const char *want)
{
    struct proc p;
    int rc = run(&p, NULL, args);
    ck_assert_msg(rc == 0, "sub %s %s exited %d: %s", args[1], args[2], rc,
                  p.err_buf ? p.err_buf : "");
    ck_assert_str_eq(p.out_buf ? p.out_buf : "", want);
    proc_free(&p);
}

/*
 * Start positions and durable consumers need a broker that stores topics.
 * A store-less broker (PubAck sequence 0) must refuse a durable consumer
 * with its reason; a storing one replays from every start position and
 * resumes a durable consumer after its last ack.
 */
START_TEST(test_cli_sub_start_positions_and_durable_resume)
{
    struct proc sub, pub;
    sub_start(&sub, (const char *const[]){"--json", "--count", "1", "cli.replay", NULL});
    ck_assert_int_eq(
        run(&pub, NULL, (const char *const[]){"pub", "--ack", "cli.replay", "a", NULL}), 0);
    proc_free(&pub);
    ck_assert_int_eq(proc_wait(&sub, WAIT_MS), 0);
    struct jv first;
    json_parse(sub.out_buf, &first);
    double seq = jnum(&first, "seq");
    char from_time[64];
    snprintf(from_time, sizeof(from_time), "%s", jstr(&first, "time"));
    jv_free(&first);
    proc_free(&sub);

    if (seq == 0) {
        /* Ephemeral: nothing to replay, and no durable consumers. */
        ck_assert_int_eq(
            run(&sub, NULL, (const char *const[]){"sub", "--durable", "d1", "cli.replay", NULL}),
            1);
        ck_assert_msg(sub.err_buf &&
                          strstr(sub.err_buf, "ferry: cannot subscribe to 'cli.replay': "),
                      "stderr: %s", sub.err_buf ? sub.err_buf : "");
        proc_free(&sub);
        return;
    }
    ck_assert(seq == 1);
    ck_assert_int_eq(run(&pub, "b\nc\n", (const char *const[]){"pub", "--ack", "cli.replay", NULL}),
                     0);
    proc_free(&pub);

    expect_sub_output((const char *const[]){"sub", "--all", "--count", "3", "cli.replay", NULL},
                      "a\nb\nc\n");
    expect_sub_output(
        (const char *const[]){"sub", "--from-seq", "2", "--count", "2", "cli.replay", NULL},
        "b\nc\n");
    expect_sub_output(
        (const char *const[]){"sub", "--last", "1", "--count", "1", "cli.replay", NULL}, "c\n");
    expect_sub_output(
        (const char *const[]){"sub", "--from-time", from_time, "--count", "3", "cli.replay", NULL},
        "a\nb\nc\n");
    expect_sub_output((const char *const[]){"sub", "--ack", "--max-in-flight", "1", "--all",
                                            "--count", "3", "cli.replay", NULL},
                      "a\nb\nc\n");
    /* A durable consumer acks a and b, leaves, and comes back: the first
     * message it gets is c (what it acked is not sent again). */
    const char *const durable1[] = {"sub",     "--durable", "d1",         "--all",
                                    "--count", "2",         "cli.replay", NULL};
    int rc = run(&sub, NULL, durable1);
    ck_assert_msg(rc == 0, "durable sub exited %d: %s", rc, sub.err_buf ? sub.err_buf : "");
    ck_assert_str_eq(sub.out_buf ? sub.out_buf : "", "a\nb\n");
    proc_free(&sub);
    expect_sub_output(
        (const char *const[]){"sub", "--durable", "d1", "--count", "1", "cli.replay", NULL}, "c\n");
}
END_TEST

/* The durable w of cli.cons as `ferry consumers --json` lists it, polled
 * (bounded) until its ack floor is want_floor: the acks of a `ferry sub` that
 * just exited may still be on their way through the broker. */
static void consumer_listed(struct jv *r, const struct jv **w, double want_floor)
{
    long long end = now_ms() + WAIT_MS;
    for (;;) {
        struct proc p;
        int rc = run(&p, NULL, (const char *const[]){"consumers", "--json", "cli.cons", NULL});
        ck_assert_msg(rc == 0, "consumers exited %d: %s", rc, p.err_buf ? p.err_buf : "");
        json_parse(p.out_buf, r);
        proc_free(&p);
        ck_assert_int_eq(r->type, J_ARR);
        *w = NULL;
        for (size_t i = 0; i < r->n; i++) {
            if (strcmp(jstr(&r->items[i], "name"), "w") == 0) {
                *w = &r->items[i];
            }
        }
        if (*w != NULL && jnum(*w, "ack_floor") == want_floor) {
            return;
        }
        ck_assert_msg(now_ms() < end, "durable w never reached ack floor %g", want_floor);
        jv_free(r);
    }
}

START_TEST(test_cli_consumers_list_and_delete)
{
    struct proc p, sub;
    ck_assert_int_eq(run(&p, "a\nb\nc\n", (const char *const[]){"pub", "--ack", "cli.cons", NULL}),
                     0);
    proc_free(&p);
    /* A durable that acks a and b, then leaves. */
    expect_sub_output(
        (const char *const[]){"sub", "--durable", "w", "--all", "--count", "2", "cli.cons", NULL},
        "a\nb\n");
    struct jv r;
    const struct jv *w;
    consumer_listed(&r, &w, 2);
    ck_assert_str_eq(jstr(w, "topic"), "cli.cons");
    ck_assert_int_eq((long)jnum(w, "next_seq"), 4);
    ck_assert_int_eq((long)jnum(w, "pending"), 1);
    ck_assert_int_eq((long)jnum(w, "lag_messages"), 1);
    ck_assert_int_eq((long)jnum(w, "holders"), 0);
    jv_free(&r);

    /* The table: a header and one row with topic, name, floor, next. */
    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"consumers", "cli.>", NULL}), 0);
    ck_assert_msg(strstr(p.out_buf, "ACK FLOOR") && strstr(p.out_buf, "HELD BY"), "table: %s",
                  p.out_buf);
    ck_assert_int_eq(count_lines(p.out_buf), 2);
    char *row = strchr(p.out_buf, '\n') + 1;
    char topic[64], name[64];
    unsigned long floor_, next;
    ck_assert_int_eq(sscanf(row, "%63s %63s %lu %lu", topic, name, &floor_, &next), 4);
    ck_assert_str_eq(topic, "cli.cons");
    ck_assert_str_eq(name, "w");
    ck_assert_uint_eq(floor_, 2);
    ck_assert_uint_eq(next, 4);
    proc_free(&p);

    /* Held: refused (exit 1, with the reason); --force ends the holder. */
    sub_start(&sub, (const char *const[]){"--durable", "w", "--count", "100", "cli.cons", NULL});
    ck_assert_int_eq(
        run(&p, NULL, (const char *const[]){"consumer", "delete", "cli.cons", "w", NULL}), 1);
    ck_assert_msg(p.err_buf && strstr(p.err_buf, "held"), "stderr: %s", p.err_buf ? p.err_buf : "");
    proc_free(&p);
    ck_assert_int_eq(
        run(&p, NULL,
            (const char *const[]){"consumer", "delete", "--force", "cli.cons", "w", NULL}),
        0);
    ck_assert_ptr_nonnull(strstr(p.out_buf, "deleted durable consumer w on cli.cons"));
    proc_free(&p);
    ck_assert_int_eq(proc_wait(&sub, WAIT_MS), 1);
    ck_assert_msg(sub.err_buf && strstr(sub.err_buf, "deleted"), "holder's stderr: %s",
                  sub.err_buf ? sub.err_buf : "");
    proc_free(&sub);

    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"consumers", "--json", "cli.cons", NULL}),
                     0);
    ck_assert_str_eq(p.out_buf, "[]\n");
    proc_free(&p);
    ck_assert_int_eq(
        run(&p, NULL, (const char *const[]){"consumer", "delete", "cli.cons", "w", NULL}), 1);
    ck_assert_ptr_nonnull(strstr(p.err_buf, "no such durable consumer"));
    proc_free(&p);
    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"consumer", "delete", "cli.cons", NULL}),
                     2);
    proc_free(&p);
    /* A new durable of that name starts afresh (from a, not after b). */
    expect_sub_output(
        (const char *const[]){"sub", "--durable", "w", "--all", "--count", "1", "cli.cons", NULL},
        "a\n");
}
END_TEST

static void add_case(Suite *s, TCase *tc, const TTest *t)
{
    tcase_add_checked_fixture(tc, broker_up, broker_down);
    tcase_add_test(tc, t);
    suite_add_tcase(s, tc);
}

Suite *test_suite(void)
{
    Suite *s = suite_create("cli");
    add_case(s, tcase_create("cli_round_trip"), test_cli_pub_sub_round_trip_through_pipes);
    add_case(s, tcase_create("cli_count_ack"), test_cli_pub_message_count_and_ack);
    add_case(s, tcase_create("cli_json"), test_cli_sub_json_has_metadata_headers_and_base64);
    add_case(s, tcase_create("cli_ack_broker_down"),
             test_cli_pub_ack_fails_with_exit_1_when_broker_is_down);
    add_case(s, tcase_create("cli_ack_broker_dies"),
             test_cli_pub_ack_fails_with_exit_1_when_broker_dies);
    add_case(s, tcase_create("cli_usage"), test_cli_usage_errors_exit_2_and_help_exits_0);
    add_case(s, tcase_create("cli_sub_timeout"),
             test_cli_sub_timeout_exits_1_when_count_not_reached);
    add_case(s, tcase_create("cli_bench_counts"), test_cli_bench_counts_match);
    add_case(s, tcase_create("cli_bench_acks"), test_cli_bench_with_ack_window_counts_acks);
    add_case(s, tcase_create("cli_bench_text"), test_cli_bench_human_output);
    add_case(s, tcase_create("cli_bench_rate"), test_cli_bench_duration_and_rate);
    add_case(s, tcase_create("cli_bench_topics"), test_cli_bench_topics_split_the_streams);
    add_case(s, tcase_create("cli_bench_modes"), test_cli_bench_reports_ephemeral_or_persistent);
    add_case(s, tcase_create("cli_pub_refused"), test_cli_pub_refusal_reports_reason_and_exit_1);
    add_case(s, tcase_create("cli_stats"), test_cli_stats_json_reports_counters);
    add_case(s, tcase_create("cli_topics"), test_cli_topics_info_purge);
    add_case(s, tcase_create("cli_interrupt"), test_cli_interrupt_and_closed_stdout_end_cleanly);
    add_case(s, tcase_create("cli_queue_group"), test_cli_queue_group_members_share_messages);
    add_case(s, tcase_create("cli_replay"), test_cli_sub_start_positions_and_durable_resume);
    add_case(s, tcase_create("cli_consumers"), test_cli_consumers_list_and_delete);
    return s;
}
