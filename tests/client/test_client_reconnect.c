/*
 * test_client_reconnect.c - libferry when the broker goes away: reconnecting, resending,
 * keepalive, timeouts and closing.
 *
 * Every test case starts its own broker (ferryd_start: port 0, fresh data
 * dir) so that cases are independent and can run in parallel. Nothing
 * waits for a fixed time: waits are for a condition, with generous
 * deadlines (the machine is small and busy). Helpers: client_test.h.
 *
 * Test cases (each a ctest entry test_client_reconnect.<case>):
 *   reconnect_resend         broker killed mid-stream and restarted on the
 *   reconnect_fail_unacked   same, with unacked publishes failed by option
 *   reconnect_loop           the same in event-loop mode, one client
 *   reconnect_stress         three kills under a continuous async stream:
 *   reconnect_gives_up       event-loop mode, broker gone for good
 *   keepalive                a frozen broker is detected by the keepalive
 *   timeouts                 ack timeout, and every blocking call's timeout
 *   close_flush              close waits for acks, then everything is ECLOSED
 */
#include "client_test.h"

#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void wait_state(ferry_client *c, enum ferry_state want)
{
    int64_t deadline = now_ms() + WAIT_MS;
    while (ferry_client_state(c) != want && now_ms() < deadline) {
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL); /* polling a state, bounded by the deadline */
    }
    ck_assert_int_eq(ferry_client_state(c), want);
}

static void reconnect_case(int resend)
{
    struct evlog pl, sl;
    evlog_init(&pl);
    evlog_init(&sl);
    struct copts co = DEFAULT_THREAD;
    co.resend = resend;
    ferry_client *pc = client_connect(&co, &pl);
    ferry_client *sc = client_connect(&co, &sl);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(sc, "rc.>", NULL, on_msg, &sl, WAIT_MS, &s), 0);
    ferry_pub m = text_pub("rc.a", "before");
    ck_assert_int_eq(ferry_publish_sync(pc, &m, WAIT_MS, NULL), 0);
    ck_assert(evlog_wait(&sl, &sl.n_msgs, 1, WAIT_MS));

    /* Freeze the broker so that these publishes stay unacked, then kill
     * it mid-stream. */
    broker_freeze();
    for (int i = 0; i < 10; i++) {
        ferry_pub p = text_pub("rc.a", "inflight");
        ck_assert_int_eq(ferry_publish_async(pc, &p, on_pub_done, &pl, NULL), 0);
    }
    ck_assert_uint_eq(ferry_client_inflight(pc), 10);
    ck_assert_int_eq(ferryd_kill9(&g_broker), 0);
    ck_assert(evlog_wait(&pl, &pl.n[FERRY_EVENT_DISCONNECTED], 1, WAIT_MS));
    ck_assert(evlog_wait(&sl, &sl.n[FERRY_EVENT_DISCONNECTED], 1, WAIT_MS));
    if (!resend) {
        ck_assert(evlog_wait(&pl, &pl.n_pub_fail, 10, WAIT_MS));
        ck_assert_int_eq(pl.last_pub_status, FERRY_EDISCONNECTED);
        ck_assert_uint_eq(ferry_client_inflight(pc), 0);
    } else {
        ck_assert_uint_eq(ferry_client_inflight(pc), 10);
    }
    ck_assert_int_eq(ferry_client_state(pc), FERRY_STATE_RECONNECTING);
    /* A fire-and-forget publish while disconnected is refused, not lost. */
    ck_assert_int_eq(ferry_publish(pc, "rc.a", "x", 1), FERRY_ENOTREADY);

    broker_restart_same_port();
    ck_assert(evlog_wait(&pl, &pl.n[FERRY_EVENT_RECONNECTED], 1, WAIT_MS));
    ck_assert(evlog_wait(&sl, &sl.n[FERRY_EVENT_RECONNECTED], 1, WAIT_MS));
    wait_state(pc, FERRY_STATE_CONNECTED);
    if (resend) {
        ck_assert(evlog_wait(&pl, &pl.n_pub_ok, 10, WAIT_MS));
        ck_assert_int_eq(evlog_get(&pl, &pl.n_pub_fail), 0);
    }
    /* The subscription was re-sent: the subscriber's SubAck was processed
     * before its RECONNECTED event? Not necessarily, so flush the
     * subscriber (its Ping is answered after its Subscribe). */
    ck_assert_int_eq(ferry_flush(sc, WAIT_MS), 0);
    int before = evlog_get(&sl, &sl.n_msgs);
    ferry_pub m2 = text_pub("rc.b", "after");
    ck_assert_int_eq(ferry_publish_sync(pc, &m2, WAIT_MS, NULL), 0);
    ck_assert(evlog_wait(&sl, &sl.n_msgs, before + 1, WAIT_MS));
    ck_assert_int_eq(ferry_client_close(pc, WAIT_MS), 0);
    ck_assert_int_eq(ferry_client_close(sc, WAIT_MS), 0);
    ferry_client_destroy(pc);
    ferry_client_destroy(sc);
    evlog_deinit(&pl);
    evlog_deinit(&sl);
}

START_TEST(test_reconnect_resends_unacked)
{
    reconnect_case(1);
}
END_TEST

START_TEST(test_reconnect_fails_unacked_by_option)
{
    reconnect_case(0);
}
END_TEST

START_TEST(test_reconnect_loop_mode)
{
    struct evlog l;
    evlog_init(&l);
    ferry_client *c = client_connect(&DEFAULT_LOOP, &l);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(c, "rl.>", NULL, on_msg, &l, WAIT_MS, &s), 0);
    ferry_pub m = text_pub("rl.a", "P0:0");
    ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, NULL), 0);
    ck_assert(loop_until(c, &l, &l.n_msgs, 1, WAIT_MS));
    broker_freeze();
    for (int i = 1; i <= 5; i++) {
        char t[16];
        snprintf(t, sizeof(t), "P0:%d", i);
        ferry_pub p = text_pub("rl.a", t);
        ck_assert_int_eq(ferry_publish_async(c, &p, on_pub_done, &l, NULL), 0);
    }
    ck_assert_int_eq(ferryd_kill9(&g_broker), 0);
    ck_assert(loop_until(c, &l, &l.n[FERRY_EVENT_DISCONNECTED], 1, WAIT_MS));
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_RECONNECTING);
    broker_restart_same_port();
    ck_assert(loop_until(c, &l, &l.n[FERRY_EVENT_RECONNECTED], 1, WAIT_MS));
    /* Re-subscribed first, then the 5 unacked publishes were re-sent. */
    ck_assert(loop_until(c, &l, &l.n_pub_ok, 5, WAIT_MS));
    ferry_pub m2 = text_pub("rl.a", "P0:6");
    ck_assert_int_eq(ferry_publish_sync(c, &m2, WAIT_MS, NULL), 0);
    ck_assert(loop_until(c, &l, &l.n_msgs, 7, WAIT_MS));
    ck_assert_str_eq(l.last_payload, "P0:6");
    ck_assert_msg(l.order_ok, "re-sent publishes arrived out of order");
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}
END_TEST

struct stress_pub {
    ferry_client *c;
    struct evlog *l;
    int stop; /* guarded by l->mu */
    int n;    /* publishes accepted */
    int rc;
};

static void *stress_publisher(void *arg)
{
    struct stress_pub *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->l->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->l->mu);
        if (stop) {
            break;
        }
        ferry_pub m = text_pub("rs.a", "x");
        int rc = ferry_publish_async(p->c, &m, on_pub_done, p->l, NULL);
        if (rc != 0) {
            p->rc = rc;
            break;
        }
        p->n++;
    }
    return NULL;
}

START_TEST(test_reconnect_stress_no_publish_lost)
{
    struct evlog l;
    evlog_init(&l);
    struct copts co = DEFAULT_THREAD;
    co.max_inflight = 64;
    ferry_client *c = client_connect(&co, &l);
    struct stress_pub sp = {.c = c, .l = &l};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, stress_publisher, &sp), 0);
    for (int round = 1; round <= 3; round++) {
        /* Let some publishes through, then kill the broker mid-stream. */
        ck_assert(evlog_wait(&l, &l.n_pub_ok, round * 200, WAIT_MS));
        ck_assert_int_eq(ferryd_kill9(&g_broker), 0);
        ck_assert(evlog_wait(&l, &l.n[FERRY_EVENT_DISCONNECTED], round, WAIT_MS));
        broker_restart_same_port();
        ck_assert(evlog_wait(&l, &l.n[FERRY_EVENT_RECONNECTED], round, WAIT_MS));
    }
    pthread_mutex_lock(&l.mu);
    sp.stop = 1;
    pthread_mutex_unlock(&l.mu);
    pthread_join(th, NULL);
    ck_assert_msg(sp.rc == 0, "publisher: %s", ferry_strerror(sp.rc));
    ck_assert_int_eq(ferry_flush(c, WAIT_MS), 0);
    /* Every accepted publish completed exactly once, and with resend on,
     * successfully (at-least-once). */
    ck_assert_int_eq(evlog_get(&l, &l.n_pub_fail), 0);
    ck_assert_int_eq(evlog_get(&l, &l.n_pub_ok), sp.n);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}
END_TEST

START_TEST(test_reconnect_gives_up)
{
    struct copts co = DEFAULT_LOOP;
    co.max_attempts = 3;
    struct evlog l;
    evlog_init(&l);
    ferry_client *c = client_connect(&co, &l);
    ck_assert_int_eq(ferryd_kill9(&g_broker), 0);
    ferry_pub m = text_pub("gu.a", "x");
    /* Queued while (re)connecting, failed when the client gives up. */
    ck_assert(loop_until(c, &l, &l.n[FERRY_EVENT_DISCONNECTED], 1, WAIT_MS));
    ck_assert_int_eq(ferry_publish_async(c, &m, on_pub_done, &l, NULL), 0);
    ck_assert(loop_until(c, &l, &l.n[FERRY_EVENT_CLOSED], 1, WAIT_MS));
    ck_assert_int_eq(l.last_code[FERRY_EVENT_CLOSED], FERRY_ERECONNECTFAILED);
    ck_assert_int_eq(l.n_pub_fail, 1);
    ck_assert_int_eq(l.last_pub_status, FERRY_EDISCONNECTED);
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_CLOSED);
    ck_assert_int_eq(ferry_client_process(c, 0), FERRY_ECLOSED);
    ck_assert_int_eq(ferry_publish_async(c, &m, on_pub_done, &l, NULL), FERRY_ECLOSED);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}
END_TEST

START_TEST(test_keepalive_detects_frozen_broker)
{
    struct copts co = DEFAULT_THREAD;
    co.keepalive_ms = 200;
    co.reconnect = 0;
    struct evlog l;
    evlog_init(&l);
    ferry_client *c = client_connect(&co, &l);
    ferry_server_info info;
    ck_assert_int_eq(ferry_client_server_info(c, &info), 0);
    ck_assert_uint_eq(info.keepalive_ms, 200);
    broker_freeze();
    ck_assert(evlog_wait(&l, &l.n[FERRY_EVENT_DISCONNECTED], 1, WAIT_MS));
    ck_assert_int_eq(l.last_code[FERRY_EVENT_DISCONNECTED], FERRY_EKEEPALIVE);
    ck_assert(evlog_wait(&l, &l.n[FERRY_EVENT_CLOSED], 1, WAIT_MS)); /* reconnect off */
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_CLOSED);
    kill(g_broker.pid, SIGCONT);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Timeouts against a frozen broker                                         */

START_TEST(test_timeouts_with_frozen_broker)
{
    struct evlog l;
    evlog_init(&l);
    ferry_options *o;
    ck_assert_int_eq(ferry_options_create(&o), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", g_broker.port);
    ck_assert_int_eq(ferry_options_set_servers(o, addr), 0);
    ck_assert_int_eq(ferry_options_set_ack_timeout_ms(o, 200), 0);
    ferry_client *c;
    ck_assert_int_eq(ferry_client_create(o, &c), 0);
    ferry_options_destroy(o);
    ck_assert_int_eq(ferry_client_start_thread(c), 0);
    ck_assert_int_eq(ferry_client_connect(c, WAIT_MS), 0);
    broker_freeze();
    ferry_pub m = text_pub("to.a", "x");
    /* The ack timeout option fails an async publish... */
    ck_assert_int_eq(ferry_publish_async(c, &m, on_pub_done, &l, NULL), 0);
    ck_assert(evlog_wait(&l, &l.n_pub_fail, 1, WAIT_MS));
    ck_assert_int_eq(l.last_pub_status, -ETIMEDOUT);
    ck_assert_uint_eq(ferry_client_inflight(c), 0);
    /* ...and each blocking call has its own timeout. */
    int64_t t0 = now_ms();
    ck_assert_int_eq(ferry_publish_sync(c, &m, 150, NULL), -ETIMEDOUT);
    ck_assert_int_ge(now_ms() - t0, 150);
    ferry_sub *s = NULL;
    ck_assert_int_eq(ferry_subscribe(c, "to.>", NULL, NULL, NULL, 150, &s), -ETIMEDOUT);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(ferry_flush(c, 150), -ETIMEDOUT);
    ferry_stats st;
    ck_assert_int_eq(ferry_admin_stats(c, 150, &st), -ETIMEDOUT);
    char why[256];
    ck_assert_int_eq(ferry_client_last_error(c, why, sizeof(why)), -ETIMEDOUT);
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_CONNECTED);
    kill(g_broker.pid, SIGCONT);
    /* Thawed, the connection works again; late answers are ignored. */
    ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, NULL), 0);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Close                                                                    */

static void close_case(int thread)
{
    struct evlog l;
    evlog_init(&l);
    ferry_client *c = client_connect(thread ? &DEFAULT_THREAD : &DEFAULT_LOOP, &l);
    ck_assert_int_eq(ferry_flush(c, 0), 0); /* nothing outstanding */
    for (int i = 0; i < 300; i++) {
        ferry_pub m = text_pub("cl.a", "x");
        ck_assert_int_eq(ferry_publish_async(c, &m, on_pub_done, &l, NULL), 0);
    }
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    /* Every callback ran before close returned. */
    ck_assert_int_eq(l.n_pub_ok, 300);
    ck_assert_int_eq(l.n[FERRY_EVENT_CLOSED], 1);
    ferry_pub m = text_pub("cl.a", "x");
    ferry_sub *s;
    ck_assert_int_eq(ferry_publish(c, "cl.a", "x", 1), FERRY_ECLOSED);
    ck_assert_int_eq(ferry_publish_sync(c, &m, 100, NULL), FERRY_ECLOSED);
    ck_assert_int_eq(ferry_publish_async(c, &m, NULL, NULL, NULL), FERRY_ECLOSED);
    ck_assert_int_eq(ferry_subscribe(c, "cl.a", NULL, NULL, NULL, 0, &s), FERRY_ECLOSED);
    ck_assert_int_eq(ferry_flush(c, 100), FERRY_ECLOSED);
    ferry_stats st;
    ck_assert_int_eq(ferry_admin_stats(c, 100, &st), FERRY_ECLOSED);
    ferry_client_destroy(c);
    /* No callback after destroy: the counters are final. */
    ck_assert_int_eq(l.n_pub_ok + l.n_pub_fail, 300);
    evlog_deinit(&l);
}

struct blocked_next {
    ferry_sub *s;
    int rc;
};

static void *block_in_next(void *arg)
{
    struct blocked_next *b = arg;
    ferry_msg *m = NULL;
    b->rc = ferry_sub_next(b->s, -1, &m); /* forever, until close */
    return NULL;
}

START_TEST(test_close_wakes_blocked_callers)
{
    ferry_client *c = client_connect(&DEFAULT_THREAD, NULL);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(c, "cw.a", NULL, NULL, NULL, WAIT_MS, &s), 0);
    struct blocked_next b = {.s = s, .rc = 1};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, block_in_next, &b), 0);
    /* Whether or not the thread is already waiting, close must end it. */
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(b.rc, FERRY_ECLOSED);
    ferry_client_destroy(c);
}
END_TEST

START_TEST(test_close_flushes_thread_mode)
{
    close_case(1);
}
END_TEST

START_TEST(test_close_flushes_loop_mode)
{
    close_case(0);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Acks, copies, admin                                                      */

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("client_reconnect");
    TCase *t;
    t = client_tcase(s, tcase_create("reconnect_resend"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_reconnect_resends_unacked);
    t = client_tcase(s, tcase_create("reconnect_fail_unacked"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_reconnect_fails_unacked_by_option);
    t = client_tcase(s, tcase_create("reconnect_loop"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_reconnect_loop_mode);
    t = client_tcase(s, tcase_create("reconnect_stress"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_reconnect_stress_no_publish_lost);
    t = client_tcase(s, tcase_create("reconnect_gives_up"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_reconnect_gives_up);
    t = client_tcase(s, tcase_create("keepalive"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_keepalive_detects_frozen_broker);
    t = client_tcase(s, tcase_create("timeouts"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_timeouts_with_frozen_broker);
    t = client_tcase(s, tcase_create("close_flush"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_close_flushes_thread_mode);
    tcase_add_test(t, test_close_flushes_loop_mode);
    tcase_add_test(t, test_close_wakes_blocked_callers);
    return s;
}
