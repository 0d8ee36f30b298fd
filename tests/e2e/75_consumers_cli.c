/*
 * 75_consumers_cli.c - a durable consumer through the real `ferry` CLI
 * (FERRY_CLI_PATH) across kill -9 of the broker.
 *
 * The regression (fixed by 9d36bda): the broker saved a durable's state only
 * when a publication came, so after
 *     seq 1 1000 | ferry pub c.t --ack
 *     ferry sub c.t --durable d1 --ack --from-seq 1 --count 100
 *     kill -9 ferryd; restart it on the same data dir
 *     ferry sub c.t --durable d1 --ack --count 100
 * the second sub printed nothing (the durable had lost its acks and its
 * position). It must print 101..200, promptly: `ferry sub` closes with a
 * flush after --count, and a flush confirms the acks sent before it (the
 * Pong of its Ping comes after they are committed), so the kill -9 right
 * after the first sub exits must not lose them.
 *
 * Every run is bounded (sub's --timeout, and a kill after a deadline);
 * nothing sleeps to synchronise.
 */
#include "cli_spawn.h"
#include "ferryd_proc.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef FERRY_CLI_PATH
#error "FERRY_CLI_PATH must name the ferry binary"
#endif

#define RUN_WAIT_MS 60000 /* a run's hard bound, beyond its own --timeout */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What a finished run of the CLI left. */
struct run {
    int status; /* exit code, or 128 + signal */
    char *out, *err;
    size_t out_len, err_len;
    long long ms; /* how long it ran */
};

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

static void buf_add(char **buf, size_t *len, const char *p, size_t n)
{
    *buf = realloc(*buf, *len + n + 1);
    ck_assert_ptr_nonnull(*buf);
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* Run `ferry -s 127.0.0.1:port ARGS` with input on its stdin (may be NULL),
 * collect stdout and stderr until it exits; killed (and the test failed)
 * after RUN_WAIT_MS. */
static void cli_run(int port, const char *input, const char *const *args, struct run *r)
{
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%d", port);
    const char *const pre[] = {"-s", server, NULL};
    int fds[3];
    memset(r, 0, sizeof(*r));
    long long t0 = now_ms();
    pid_t pid = cli_spawn(FERRY_CLI_PATH, pre, args, NULL, fds);
    ck_assert_int_gt(pid, 0);
    if (input) {
        /* Small enough for the pipe's buffer: no deadlock with its output. */
        size_t n = strlen(input);
        ck_assert_int_lt(n, 65536);
        ck_assert_int_eq(write(fds[0], input, n), (ssize_t)n);
    }
    close(fds[0]);
    buf_add(&r->out, &r->out_len, "", 0);
    buf_add(&r->err, &r->err_len, "", 0);
    struct pollfd pf[2] = {{.fd = fds[1], .events = POLLIN}, {.fd = fds[2], .events = POLLIN}};
    char **bufs[2] = {&r->out, &r->err};
    size_t *lens[2] = {&r->out_len, &r->err_len};
    long long end = t0 + RUN_WAIT_MS;
    while (pf[0].fd >= 0 || pf[1].fd >= 0) {
        long long left = end - now_ms();
        if (left <= 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            ck_abort_msg("ferry %s did not finish in %d ms; stderr: %s", args[0], RUN_WAIT_MS,
                         r->err);
        }
        int n = poll(pf, 2, (int)left);
        if (n < 0 && errno != EINTR) {
            ck_abort_msg("poll: %s", strerror(errno));
        }
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            char tmp[4096];
            ssize_t got = read(pf[i].fd, tmp, sizeof(tmp));
            if (got > 0) {
                buf_add(bufs[i], lens[i], tmp, (size_t)got);
            } else if (got == 0 || errno != EINTR) {
                close(pf[i].fd);
                pf[i].fd = -1;
            }
        }
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r->ms = now_ms() - t0;
}

/* "from\n...to\n" */
static char *numbers(int from, int to)
{
    size_t cap = (size_t)(to - from + 1) * 12 + 1;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    size_t len = 0;
    s[0] = '\0';
    for (int i = from; i <= to; i++) {
        len += (size_t)snprintf(s + len, cap - len, "%d\n", i);
    }
    return s;
}

/* "N lines, 'first' .. 'last'" of a text, for failure messages. */
static void describe(const char *text, char *out, size_t cap)
{
    int n = 0;
    const char *first = text, *last = text;
    for (const char *p = text; *p; p++) {
        if (*p == '\n') {
            n++;
            if (p[1]) {
                last = p + 1;
            }
        }
    }
    snprintf(out, cap, "%d lines, '%.*s' .. '%.*s'", n, (int)strcspn(first, "\n"), first,
             (int)strcspn(last, "\n"), last);
}

static void expect_output(const struct run *r, const char *want, const char *what)
{
    ck_assert_msg(r->status == 0, "%s exited %d; stderr: %s", what, r->status, r->err);
    char got_d[128], want_d[128];
    describe(r->out, got_d, sizeof(got_d));
    describe(want, want_d, sizeof(want_d));
    ck_assert_msg(strcmp(r->out, want) == 0, "%s printed %s; want %s; stderr: %s", what, got_d,
                  want_d, r->err);
}

static void publish_1_to_1000(int port)
{
    struct run r;
    char *input = numbers(1, 1000);
    cli_run(port, input, (const char *const[]){"pub", "c.t", "--ack", NULL}, &r);
    free(input);
    ck_assert_msg(r.status == 0, "pub exited %d; stderr: %s", r.status, r.err);
    run_free(&r);
}

START_TEST(test_cli_durable_resumes_after_broker_kill9)
{
    struct ferryd_proc d;
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
    publish_1_to_1000(d.port);

    struct run r;
    cli_run(d.port, NULL,
            (const char *const[]){"sub", "c.t", "--durable", "d1", "--ack", "--from-seq", "1",
                                  "--count", "100", "--timeout", "30s", NULL},
            &r);
    char *want = numbers(1, 100);
    expect_output(&r, want, "the first durable sub");
    free(want);
    run_free(&r);

    /* At once: the sub's closing flush confirmed its acks. */
    ck_assert_int_eq(ferryd_kill9(&d), 0);
    ck_assert_int_eq(ferryd_restart(&d, NULL), 0);

    /* Promptly: what was delivered but not acked comes again at once, not
     * after the ack wait (30 s). */
    cli_run(d.port, NULL,
            (const char *const[]){"sub", "c.t", "--durable", "d1", "--ack", "--count", "100",
                                  "--timeout", "10s", NULL},
            &r);
    want = numbers(101, 200);
    expect_output(&r, want, "the durable sub after kill -9 and restart");
    free(want);
    fprintf(stderr, "second sub: 101..200 in %lld ms\n", r.ms);
    run_free(&r);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/*
 * The same, eight times over: each sub takes the next 100 and exits, the
 * broker is killed -9 right after it, and the next sub must begin exactly
 * where the last one stopped. A closing flush that returned before the
 * acks were committed shows up here as a sub that starts too early.
 */
START_TEST(test_cli_durable_kill9_after_every_sub)
{
    struct ferryd_proc d;
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
    publish_1_to_1000(d.port);
    for (int i = 0; i < 8; i++) {
        struct run r;
        if (i == 0) {
            cli_run(d.port, NULL,
                    (const char *const[]){"sub", "c.t", "--durable", "d2", "--from-seq", "1",
                                          "--count", "100", "--timeout", "30s", NULL},
                    &r);
        } else {
            cli_run(d.port, NULL,
                    (const char *const[]){"sub", "c.t", "--durable", "d2", "--count", "100",
                                          "--timeout", "10s", NULL},
                    &r);
        }
        char *want = numbers(100 * i + 1, 100 * i + 100);
        char what[64];
        snprintf(what, sizeof(what), "durable sub %d (after %d kills)", i + 1, i);
        expect_output(&r, want, what);
        free(want);
        run_free(&r);
        ck_assert_int_eq(ferryd_kill9(&d), 0);
        ck_assert_int_eq(ferryd_restart(&d, NULL), 0);
    }
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/*
 * A wildcard durable through the CLI: 'ferry sub --durable billing
 * "orders.*.created"' takes messages of two topics, the broker is killed
 * -9, and the next sub with the same name prints exactly the rest (the
 * topics' positions are kept apart: both have sequences 1..N), then
 * `ferry consumers` lists the durable under its pattern with one indented
 * line per topic.
 */
START_TEST(test_cli_wildcard_durable_kill9)
{
    struct ferryd_proc d;
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
    const char *topics[2] = {"orders.eu.created", "orders.us.created"};
    for (int k = 0; k < 2; k++) {
        char input[256];
        size_t len = 0;
        for (int i = 1; i <= 10; i++) {
            len += (size_t)snprintf(input + len, sizeof(input) - len, "%c%d\n", "eu"[k], i);
        }
        struct run r;
        cli_run(d.port, input, (const char *const[]){"pub", topics[k], "--ack", NULL}, &r);
        ck_assert_msg(r.status == 0, "pub exited %d; stderr: %s", r.status, r.err);
        run_free(&r);
    }
    /* Sequences collide across topics: e5 and u5 are both sequence 5. */
    struct run r1;
    cli_run(d.port, NULL,
            (const char *const[]){"sub", "orders.*.created", "--durable", "billing", "--all",
                                  "--count", "12", "--timeout", "30s", NULL},
            &r1);
    ck_assert_msg(r1.status == 0, "first sub exited %d; stderr: %s", r1.status, r1.err);
    ck_assert_int_eq(ferryd_kill9(&d), 0);
    ck_assert_int_eq(ferryd_restart(&d, NULL), 0);

    struct run r2;
    cli_run(d.port, NULL,
            (const char *const[]){"sub", "orders.*.created", "--durable", "billing", "--count", "8",
                                  "--timeout", "10s", NULL},
            &r2);
    ck_assert_msg(r2.status == 0, "second sub exited %d; stderr: %s", r2.status, r2.err);
    /* Together: each of the 20 exactly once. */
    char *all = malloc(r1.out_len + r2.out_len + 1);
    ck_assert_ptr_nonnull(all);
    memcpy(all, r1.out, r1.out_len);
    memcpy(all + r1.out_len, r2.out, r2.out_len + 1);
    int n_lines = 0;
    for (const char *p = all; *p; p++) {
        n_lines += *p == '\n';
    }
    ck_assert_msg(n_lines == 20, "20 lines expected; first: %s second: %s", r1.out, r2.out);
    for (int k = 0; k < 2; k++) {
        for (int i = 1; i <= 10; i++) {
            char line[16];
            snprintf(line, sizeof(line), "\n%c%d\n", "eu"[k], i);
            char *hay = malloc(strlen(all) + 2);
            ck_assert_ptr_nonnull(hay);
            hay[0] = '\n';
            strcpy(hay + 1, all);
            char *hit = strstr(hay, line);
            ck_assert_msg(hit != NULL, "%c%d missing; first: %s second: %s", "eu"[k], i, r1.out,
                          r2.out);
            ck_assert_msg(strstr(hit + 1, line) == NULL, "%c%d twice", "eu"[k], i);
            free(hay);
        }
    }
    free(all);
    run_free(&r1);
    run_free(&r2);

    struct run r;
    cli_run(d.port, NULL, (const char *const[]){"consumers", NULL}, &r);
    ck_assert_msg(r.status == 0, "consumers exited %d; stderr: %s", r.status, r.err);
    ck_assert_msg(strstr(r.out, "\norders.*.created ") != NULL &&
                      strstr(r.out, "\n  orders.eu.created ") != NULL &&
                      strstr(r.out, "\n  orders.us.created ") != NULL,
                  "listing: %s", r.out);
    run_free(&r);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/* `ferry top --once`: one frame, whose figures are the broker's: the
 * topic with its count and last sequence, the durable that read 100 of
 * 1000 with its lag, and the header lines. */
START_TEST(test_cli_top_once)
{
    struct ferryd_proc d;
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
    publish_1_to_1000(d.port);
    struct run r;
    cli_run(d.port, NULL,
            (const char *const[]){"sub", "c.t", "--durable", "lagger", "--ack", "--from-seq", "1",
                                  "--count", "100", "--timeout", "30s", NULL},
            &r);
    ck_assert_msg(r.status == 0, "sub exited %d; stderr: %s", r.status, r.err);
    run_free(&r);
    cli_run(d.port, NULL, (const char *const[]){"top", "--once", "--interval", "200ms", NULL}, &r);
    ck_assert_msg(r.status == 0, "top exited %d; stderr: %s", r.status, r.err);
    ck_assert_msg(strstr(r.out, "ferry top - ferryd ") != NULL, "no header: %s", r.out);
    ck_assert_msg(strstr(r.out, "\033[") == NULL, "--once redraws the screen: %s", r.out);
    char want[128];
    snprintf(want, sizeof(want), "%-40s %10s %12d %10s %12d\n", "c.t", "0", 1000, "2.8 KiB", 1000);
    ck_assert_msg(strstr(r.out, want) != NULL, "no topic line \"%s\" in:\n%s", want, r.out);
    ck_assert_msg(strstr(r.out, "lagger") != NULL && strstr(r.out, "       900 ") != NULL,
                  "no durable with lag 900 in:\n%s", r.out);
    run_free(&r);
    /* a pattern that matches nothing shows nothing */
    cli_run(d.port, NULL,
            (const char *const[]){"top", "--once", "--interval", "100ms", "none.>", NULL}, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strstr(r.out, "(no stored topics)") && strstr(r.out, "(no durable consumers)"),
                  "pattern none.> listed: %s", r.out);
    run_free(&r);
    /* a bad interval is a usage error */
    cli_run(d.port, NULL, (const char *const[]){"top", "--interval", "1h", NULL}, &r);
    ck_assert_int_eq(r.status, 2);
    run_free(&r);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_consumers_cli");
    TCase *tc = tcase_create("cli_durable_kill9");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_cli_durable_resumes_after_broker_kill9);
    suite_add_tcase(s, tc);
    tc = tcase_create("cli_durable_kill9_repeat");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_cli_durable_kill9_after_every_sub);
    suite_add_tcase(s, tc);
    tc = tcase_create("cli_wildcard_durable_kill9");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_cli_wildcard_durable_kill9);
    suite_add_tcase(s, tc);
    tc = tcase_create("cli_top_once");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_cli_top_once);
    suite_add_tcase(s, tc);
    return s;
}
