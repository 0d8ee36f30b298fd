/*
 * test_client_resume.c - after a reconnect, libferry resumes a subscription
 * to one stored topic (not durable, no wildcard, no queue group) at the
 * next sequence it had not received: every message published while it was
 * away arrives, none twice, in order.
 *
 * The subscriber runs in event-loop mode: it does nothing between our
 * calls, so "while it is away" is exact: the broker is restarted (or has
 * cut the connection) and messages are published before the subscriber's
 * loop is driven again. Its blocking ferry_sub_next() drives the IO, the
 * reconnect included. The publisher runs in thread mode and reconnects by
 * itself. A restarted broker listens on the port it had, so both clients
 * reconnect to the address they know.
 *
 * Test cases (each a ctest entry test_client_resume.<case>):
 *   after_kill        messages received (some still queued, unread) before
 *                     a kill -9 and restart of the broker; more published
 *                     while the subscriber is away
 *   before_first_msg  nothing received before the kill -9, on a topic with
 *                     stored messages and on one never published: resumes
 *                     where the server said it started (next_sequence)
 *   connection_cut    the broker stays up and drops the subscriber's
 *                     connection (keepalive timeout)
 */
#include "ferry.h"
#include "ferryd_proc.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_MS 20000 /* generous: a slow, shared 2-core machine */

static struct ferryd_proc g_broker;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    int rc = ferryd_start(&g_broker, NULL, NULL);
    ck_assert_msg(rc == 0, "ferryd_start: %s", strerror(-rc));
}

static void teardown(void)
{
    if (g_broker.pid != 0) {
        ferryd_stop(&g_broker);
    }
}

/* Restart the killed broker on the port it had. */
static void broker_restart_same_port(void)
{
    int rc = ferryd_restart_same_port(&g_broker, NULL);
    ck_assert_msg(rc == 0, "ferryd_restart_same_port: %s", strerror(-rc));
}

/* thread: thread mode (else event-loop mode); keepalive_ms 0: default. */
static ferry_client *client_connect(int thread, uint32_t keepalive_ms)
{
    ferry_options *o;
    ck_assert_int_eq(ferry_options_create(&o), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", g_broker.port);
    ck_assert_int_eq(ferry_options_set_servers(o, addr), 0);
    ck_assert_int_eq(ferry_options_set_name(o, "test_client_resume"), 0);
    ck_assert_int_eq(ferry_options_set_resend_unacked(o, 1), 0);
    ck_assert_int_eq(ferry_options_set_reconnect(o, 1, 0, 20, 200, 20), 0);
    if (keepalive_ms) {
        ck_assert_int_eq(ferry_options_set_keepalive_ms(o, keepalive_ms), 0);
    }
    ferry_client *c = NULL;
    ck_assert_int_eq(ferry_client_create(o, &c), 0);
    ferry_options_destroy(o);
    if (thread) {
        ck_assert_int_eq(ferry_client_start_thread(c), 0);
    }
    int rc = ferry_client_connect(c, WAIT_MS);
    ck_assert_msg(rc == 0, "connect: %s", ferry_strerror(rc));
    return c;
}

/* Publish "<topic>:<n>" and check the sequence the topic gave it. */
static void publish_seq(ferry_client *pc, const char *topic, uint64_t want_seq)
{
    char text[64];
    snprintf(text, sizeof(text), "%s:%llu", topic, (unsigned long long)want_seq);
    ferry_pub m = {.topic = topic, .payload = text, .payload_len = strlen(text)};
    uint64_t seq = 0;
    int rc = ferry_publish_sync(pc, &m, WAIT_MS, &seq);
    ck_assert_msg(rc == 0, "publish to %s: %s", topic, ferry_strerror(rc));
    ck_assert_uint_eq(seq, want_seq);
}

/* The next message of s must be sequence `want` of its topic: a gap or a
 * duplicate shows as another sequence here. */
static void expect_next(ferry_sub *s, const char *topic, uint64_t want)
{
    ferry_msg *m = NULL;
    int rc = ferry_sub_next(s, WAIT_MS, &m);
    ck_assert_msg(rc == 0, "%s: waiting for sequence %llu: %s", topic, (unsigned long long)want,
                  ferry_strerror(rc));
    ck_assert_msg(ferry_msg_sequence(m) == want, "%s: got sequence %llu, expected %llu", topic,
                  (unsigned long long)ferry_msg_sequence(m), (unsigned long long)want);
    char text[64];
    snprintf(text, sizeof(text), "%s:%llu", topic, (unsigned long long)want);
    size_t len = 0;
    const char *p = ferry_msg_data(m, &len);
    ck_assert_uint_eq(len, strlen(text));
    ck_assert(memcmp(p, text, len) == 0);
    ck_assert_str_eq(ferry_msg_topic(m), topic);
    ferry_msg_destroy(m);
}

/* Drive an event-loop client until cond(c, arg) holds. */
static int loop_until(ferry_client *c, int (*cond)(ferry_client *, void *), void *arg,
                      int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    while (!cond(c, arg)) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            return 0;
        }
        int fd = ferry_client_fd(c);
        int events = ferry_client_events(c);
        int t = ferry_client_timeout_ms(c);
        ck_assert_int_ge(events, 0);
        if (t < 0 || t > left) {
            t = (int)left;
        }
        if (t > 50) {
            t = 50; /* re-check the condition now and then */
        }
        struct pollfd p = {.fd = fd, .events = (short)events};
        ck_assert_int_ge(poll(&p, fd >= 0 ? 1 : 0, t), 0);
        ck_assert_int_eq(ferry_client_process(c, p.revents), 0);
    }
    return 1;
}

static int is_reconnecting(ferry_client *c, void *arg)
{
    (void)arg;
    return ferry_client_state(c) == FERRY_STATE_RECONNECTING;
}

struct pending_arg {
    ferry_sub *s;
    size_t n;
};

static int has_pending(ferry_client *c, void *arg)
{
    (void)c;
    const struct pending_arg *a = arg;
    return ferry_sub_pending(a->s) >= a->n;
}

/* Kill the broker, let the (event-loop) subscriber notice, restart it. */
static void kill_and_restart(ferry_client *sc)
{
    ck_assert_int_eq(ferryd_kill9(&g_broker), 0);
    ck_assert(loop_until(sc, is_reconnecting, NULL, WAIT_MS));
    broker_restart_same_port();
}

START_TEST(test_resume_after_kill_no_gap_no_duplicate)
{
    ferry_client *pc = client_connect(1, 0);
    ferry_client *sc = client_connect(0, 0);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(sc, "ra.t", NULL, NULL, NULL, WAIT_MS, &s), 0);
    for (uint64_t i = 1; i <= 5; i++) {
        publish_seq(pc, "ra.t", i);
    }
    /* Read 1..3; 4 and 5 stay queued in the library, unread: they were
     * received, and must neither be lost nor come again. */
    for (uint64_t i = 1; i <= 3; i++) {
        expect_next(s, "ra.t", i);
    }
    struct pending_arg two = {s, 2};
    ck_assert(loop_until(sc, has_pending, &two, WAIT_MS));

    kill_and_restart(sc);
    /* Published while the subscriber is away (its loop is not driven). */
    for (uint64_t i = 6; i <= 10; i++) {
        publish_seq(pc, "ra.t", i);
    }
    for (uint64_t i = 4; i <= 10; i++) {
        expect_next(s, "ra.t", i);
    }
    /* And live again: the next one is 11, nothing repeated before it. */
    publish_seq(pc, "ra.t", 11);
    expect_next(s, "ra.t", 11);

    /* A second break, right after messages that were read to the end. */
    kill_and_restart(sc);
    for (uint64_t i = 12; i <= 14; i++) {
        publish_seq(pc, "ra.t", i);
    }
    for (uint64_t i = 12; i <= 14; i++) {
        expect_next(s, "ra.t", i);
    }
    ck_assert_int_eq(ferry_unsubscribe(s), 0);
    ck_assert_int_eq(ferry_client_close(pc, WAIT_MS), 0);
    ck_assert_int_eq(ferry_client_close(sc, WAIT_MS), 0);
    ferry_client_destroy(pc);
    ferry_client_destroy(sc);
}
END_TEST

START_TEST(test_resume_before_first_message_uses_next_sequence)
{
    ferry_client *pc = client_connect(1, 0);
    ferry_client *sc = client_connect(0, 0);
    for (uint64_t i = 1; i <= 3; i++) {
        publish_seq(pc, "rb.old", i);
    }
    /* New messages only: rb.old starts at 4, rb.new (never published) at
     * 1. Neither receives anything before the break. */
    ferry_sub *so, *sn;
    ck_assert_int_eq(ferry_subscribe(sc, "rb.old", NULL, NULL, NULL, WAIT_MS, &so), 0);
    ck_assert_int_eq(ferry_subscribe(sc, "rb.new", NULL, NULL, NULL, WAIT_MS, &sn), 0);

    kill_and_restart(sc);
    for (uint64_t i = 4; i <= 6; i++) {
        publish_seq(pc, "rb.old", i);
    }
    for (uint64_t i = 1; i <= 3; i++) {
        publish_seq(pc, "rb.new", i);
    }
    for (uint64_t i = 4; i <= 6; i++) {
        expect_next(so, "rb.old", i);
    }
    for (uint64_t i = 1; i <= 3; i++) {
        expect_next(sn, "rb.new", i);
    }
    publish_seq(pc, "rb.old", 7);
    publish_seq(pc, "rb.new", 4);
    expect_next(so, "rb.old", 7);
    expect_next(sn, "rb.new", 4);
    ck_assert_int_eq(ferry_unsubscribe(so), 0);
    ck_assert_int_eq(ferry_unsubscribe(sn), 0);
    ck_assert_int_eq(ferry_client_close(pc, WAIT_MS), 0);
    ck_assert_int_eq(ferry_client_close(sc, WAIT_MS), 0);
    ferry_client_destroy(pc);
    ferry_client_destroy(sc);
}
END_TEST

static uint64_t connections_now(ferry_client *c)
{
    ferry_stats st;
    int rc = ferry_admin_stats(c, WAIT_MS, &st);
    ck_assert_msg(rc == 0, "admin stats: %s", ferry_strerror(rc));
    return st.connections;
}

START_TEST(test_resume_after_connection_cut)
{
    ferry_client *pc = client_connect(1, 0);
    /* A short keepalive: while its loop is not driven, the subscriber is
     * silent and the broker drops it after 1.5 x 200 ms. */
    ferry_client *sc = client_connect(0, 200);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(sc, "rc.t", NULL, NULL, NULL, WAIT_MS, &s), 0);
    for (uint64_t i = 1; i <= 3; i++) {
        publish_seq(pc, "rc.t", i);
    }
    for (uint64_t i = 1; i <= 3; i++) {
        expect_next(s, "rc.t", i);
    }
    /* Wait until the broker has dropped the subscriber's connection. */
    int64_t deadline = now_ms() + WAIT_MS;
    while (connections_now(pc) > 1 && now_ms() < deadline) {
        pause_ms(20); /* polling pace; the condition is checked */
    }
    ck_assert_uint_eq(connections_now(pc), 1);
    for (uint64_t i = 4; i <= 8; i++) {
        publish_seq(pc, "rc.t", i);
    }
    /* The subscriber finds its connection closed, reconnects, resumes. */
    for (uint64_t i = 4; i <= 8; i++) {
        expect_next(s, "rc.t", i);
    }
    publish_seq(pc, "rc.t", 9);
    expect_next(s, "rc.t", 9);
    ck_assert_int_eq(ferry_unsubscribe(s), 0);
    ck_assert_int_eq(ferry_client_close(pc, WAIT_MS), 0);
    ck_assert_int_eq(ferry_client_close(sc, WAIT_MS), 0);
    ferry_client_destroy(pc);
    ferry_client_destroy(sc);
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("client_resume");
    TCase *t = tcase_create("after_kill");
    tcase_set_timeout(t, 120);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_resume_after_kill_no_gap_no_duplicate);
    suite_add_tcase(s, t);
    t = tcase_create("before_first_msg");
    tcase_set_timeout(t, 120);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_resume_before_first_message_uses_next_sequence);
    suite_add_tcase(s, t);
    t = tcase_create("connection_cut");
    tcase_set_timeout(t, 120);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_resume_after_connection_cut);
    suite_add_tcase(s, t);
    return s;
}
