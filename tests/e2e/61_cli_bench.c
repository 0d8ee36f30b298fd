/*
 * 61_cli_bench.c - end-to-end tests of the `ferry` command-line tool (the real
 * binary, FERRY_CLI_PATH, run with pipes against a real ferryd): ferry bench.
 * Helpers and how tests synchronise: cli_e2e.h.
 */
#include "cli_e2e.h"

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

Suite *test_suite(void);

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

Suite *test_suite(void)
{
    Suite *s = suite_create("cli_bench");
    cli_add_case(s, tcase_create("cli_bench_counts"), test_cli_bench_counts_match);
    cli_add_case(s, tcase_create("cli_bench_acks"), test_cli_bench_with_ack_window_counts_acks);
    cli_add_case(s, tcase_create("cli_bench_text"), test_cli_bench_human_output);
    cli_add_case(s, tcase_create("cli_bench_rate"), test_cli_bench_duration_and_rate);
    cli_add_case(s, tcase_create("cli_bench_topics"), test_cli_bench_topics_split_the_streams);
    cli_add_case(s, tcase_create("cli_bench_modes"),
                 test_cli_bench_reports_ephemeral_or_persistent);
    return s;
}
