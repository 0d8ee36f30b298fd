/*
 * 60_cli.c - end-to-end tests of the `ferry` command-line tool (the real
 * binary, FERRY_CLI_PATH, run with pipes against a real ferryd): publishing and subscribing, exit
 * codes, usage, interrupts. Helpers and how tests synchronise: cli_e2e.h.
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

Suite *test_suite(void)
{
    Suite *s = suite_create("cli");
    cli_add_case(s, tcase_create("cli_round_trip"), test_cli_pub_sub_round_trip_through_pipes);
    cli_add_case(s, tcase_create("cli_count_ack"), test_cli_pub_message_count_and_ack);
    cli_add_case(s, tcase_create("cli_json"), test_cli_sub_json_has_metadata_headers_and_base64);
    cli_add_case(s, tcase_create("cli_ack_broker_down"),
                 test_cli_pub_ack_fails_with_exit_1_when_broker_is_down);
    cli_add_case(s, tcase_create("cli_ack_broker_dies"),
                 test_cli_pub_ack_fails_with_exit_1_when_broker_dies);
    cli_add_case(s, tcase_create("cli_usage"), test_cli_usage_errors_exit_2_and_help_exits_0);
    cli_add_case(s, tcase_create("cli_sub_timeout"),
                 test_cli_sub_timeout_exits_1_when_count_not_reached);
    cli_add_case(s, tcase_create("cli_pub_refused"),
                 test_cli_pub_refusal_reports_reason_and_exit_1);
    cli_add_case(s, tcase_create("cli_interrupt"),
                 test_cli_interrupt_and_closed_stdout_end_cleanly);
    cli_add_case(s, tcase_create("cli_queue_group"), test_cli_queue_group_members_share_messages);
    return s;
}
