/*
 * 78_topic_subscribers.c - TopicInfo.subscribers (ferry topic info) counts
 * the live subscriptions matching the topic: exact names, wildcards, every
 * member of a queue group, durables; each on its own connection, through
 * the admin API of libferry. The count goes down when subscribers
 * unsubscribe, close, or simply drop their connection.
 *
 * A subscription whose SubAck came is counted at once (its change reached
 * every worker before the SubAck left); a removal is waited for, with a
 * deadline, since nothing tells a third connection when the broker has
 * processed a close.
 */
#include "ferry.h"
#include "ferryd_proc.h"
#include "rawclient.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define WAIT_MS 20000 /* generous: a slow, shared 2-core machine */

Suite *test_suite(void);

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static ferry_client *client(const struct ferryd_proc *d)
{
    ferry_options *o;
    ck_assert_int_eq(ferry_options_create(&o), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", d->port);
    ck_assert_int_eq(ferry_options_set_servers(o, addr), 0);
    ck_assert_int_eq(ferry_options_set_reconnect(o, 0, 0, 100, 100, 0), 0);
    ferry_client *c;
    ck_assert_int_eq(ferry_client_create(o, &c), 0);
    ferry_options_destroy(o);
    ck_assert_int_eq(ferry_client_start_thread(c), 0);
    int rc = ferry_client_connect(c, WAIT_MS);
    ck_assert_msg(rc == 0, "connect: %s", ferry_strerror(rc));
    return c;
}

/* A client with one subscription (group: queue group or NULL). */
static ferry_client *subscriber(const struct ferryd_proc *d, const char *pattern, const char *group,
                                const char *durable, ferry_sub **out)
{
    ferry_client *c = client(d);
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    if (group != NULL) {
        ck_assert_int_eq(ferry_sub_options_set_queue_group(so, group), 0);
    }
    if (durable != NULL) {
        ck_assert_int_eq(ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT), 0);
        ck_assert_int_eq(ferry_sub_options_set_durable(so, durable), 0);
    }
    int rc = ferry_subscribe(c, pattern, so, NULL, NULL, WAIT_MS, out);
    ck_assert_msg(rc == 0, "subscribe %s: %s", pattern, ferry_strerror(rc));
    ferry_sub_options_destroy(so);
    return c;
}

static ferry_topic_info info(ferry_client *ac, const char *topic)
{
    ferry_topic_info ti;
    int rc = ferry_admin_topic_info(ac, topic, WAIT_MS, &ti);
    ck_assert_msg(rc == 0, "topic info %s: %s", topic, ferry_strerror(rc));
    ck_assert_str_eq(ti.name, topic);
    return ti;
}

static uint64_t subscribers(ferry_client *ac, const char *topic)
{
    return info(ac, topic).subscribers;
}

/* Wait until the topic has `want` subscribers. */
static void wait_subscribers(ferry_client *ac, const char *topic, uint64_t want)
{
    int64_t deadline = now_ms() + WAIT_MS;
    uint64_t n;
    while ((n = subscribers(ac, topic)) != want && now_ms() < deadline) {
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL); /* polling pace; the condition is checked */
    }
    ck_assert_msg(n == want, "%s: %llu subscribers, expected %llu", topic, (unsigned long long)n,
                  (unsigned long long)want);
}

static void publish(ferry_client *c, const char *topic)
{
    ferry_pub m = {.topic = topic, .payload = "x", .payload_len = 1};
    ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, NULL), 0);
}

START_TEST(test_subscribers_counts_exact_wildcard_group_and_durable)
{
    signal(SIGPIPE, SIG_IGN);
    struct ferryd_proc d;
    const char *const args[] = {"--workers", "3", "--io-threads", "2", NULL};
    ck_assert_int_eq(ferryd_start(&d, NULL, args), 0);
    ferry_client *ac = client(&d);
    publish(ac, "ts.a.b");
    publish(ac, "ts.a.c");
    publish(ac, "ts.z");
    ck_assert_uint_eq(subscribers(ac, "ts.a.b"), 0);

    ferry_sub *s_exact, *s_star, *s_gt, *s_g1, *s_g2, *s_dur, *s_other;
    ferry_client *c_exact = subscriber(&d, "ts.a.b", NULL, NULL, &s_exact);
    ferry_client *c_star = subscriber(&d, "ts.a.*", NULL, NULL, &s_star);
    ferry_client *c_gt = subscriber(&d, "ts.>", NULL, NULL, &s_gt);
    ferry_client *c_g1 = subscriber(&d, "ts.a.b", "workers", NULL, &s_g1);
    ferry_client *c_g2 = subscriber(&d, "ts.a.b", "workers", NULL, &s_g2);
    ferry_client *c_dur = subscriber(&d, "ts.a.b", NULL, "keeper", &s_dur);
    ferry_client *c_other = subscriber(&d, "ts.q.b", NULL, NULL, &s_other);

    /* exact + ts.a.* + ts.> + two group members + the durable */
    ck_assert_uint_eq(subscribers(ac, "ts.a.b"), 6);
    ck_assert_uint_eq(subscribers(ac, "ts.a.c"), 2); /* ts.a.*, ts.> */
    ck_assert_uint_eq(subscribers(ac, "ts.z"), 1);   /* ts.> */
    ferry_topic_info ti = info(ac, "ts.a.b");
    ck_assert_uint_eq(ti.last_seq, 1);
    ck_assert_uint_eq(ti.messages, 1);
    ck_assert(!ti.is_ephemeral);

    /* Unsubscribe: the exact one, then a group member. */
    ck_assert_int_eq(ferry_unsubscribe(s_exact), 0);
    wait_subscribers(ac, "ts.a.b", 5);
    ck_assert_int_eq(ferry_unsubscribe(s_g1), 0);
    wait_subscribers(ac, "ts.a.b", 4);
    /* An orderly close, and a connection simply dropped (no Unsubscribe,
     * no Disconnect: destroy without close). */
    ck_assert_int_eq(ferry_client_close(c_star, WAIT_MS), 0);
    wait_subscribers(ac, "ts.a.b", 3);
    ck_assert_uint_eq(subscribers(ac, "ts.a.c"), 1);
    ferry_client_destroy(c_g2); /* frees s_g2 too */
    wait_subscribers(ac, "ts.a.b", 2);
    ck_assert_int_eq(ferry_client_close(c_dur, WAIT_MS), 0);
    wait_subscribers(ac, "ts.a.b", 1);
    ck_assert_int_eq(ferry_client_close(c_gt, WAIT_MS), 0);
    wait_subscribers(ac, "ts.a.b", 0);
    wait_subscribers(ac, "ts.z", 0);
    ck_assert_uint_eq(subscribers(ac, "ts.a.c"), 0);

    ferry_unsubscribe(s_star);
    ferry_unsubscribe(s_gt);
    ferry_unsubscribe(s_dur);
    ferry_unsubscribe(s_other);
    ferry_client_destroy(c_exact);
    ferry_client_destroy(c_star);
    ferry_client_destroy(c_gt);
    ferry_client_destroy(c_g1);
    ferry_client_destroy(c_dur);
    ferry_client_destroy(c_other);
    ck_assert_int_eq(ferry_client_close(ac, WAIT_MS), 0);
    ferry_client_destroy(ac);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

START_TEST(test_subscribers_on_an_ephemeral_topic)
{
    signal(SIGPIPE, SIG_IGN);
    struct ferryd_proc d;
    const char *const args[] = {"--ephemeral", "eph.>", NULL};
    ck_assert_int_eq(ferryd_start(&d, NULL, args), 0);
    ferry_client *ac = client(&d);
    ferry_sub *s1, *s2;
    ferry_client *c1 = subscriber(&d, "eph.x", NULL, NULL, &s1);
    ferry_client *c2 = subscriber(&d, "eph.*", NULL, NULL, &s2);
    ferry_topic_info ti = info(ac, "eph.x");
    ck_assert(ti.is_ephemeral);
    ck_assert_uint_eq(ti.messages, 0);
    ck_assert_uint_eq(ti.subscribers, 2);
    ck_assert_uint_eq(subscribers(ac, "eph.y"), 1);
    ck_assert_int_eq(ferry_client_close(c2, WAIT_MS), 0);
    wait_subscribers(ac, "eph.x", 1);
    wait_subscribers(ac, "eph.y", 0);
    ferry_unsubscribe(s1);
    ferry_unsubscribe(s2);
    ferry_client_destroy(c1);
    ferry_client_destroy(c2);
    ck_assert_int_eq(ferry_client_close(ac, WAIT_MS), 0);
    ferry_client_destroy(ac);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/* Many TopicInfoRequests pipelined, through a tiny worker queue: each is
 * answered, in order, with its count; none is refused as busy (the
 * requests wait in the IO thread's queue for the worker, and the
 * connection is not read meanwhile). */
START_TEST(test_subscribers_pipelined_requests_all_answered)
{
    signal(SIGPIPE, SIG_IGN);
    struct ferryd_proc d;
    const char *const args[] = {"--workers", "1", "--worker-queue", "4", NULL};
    ck_assert_int_eq(ferryd_start(&d, NULL, args), 0);
    ferry_client *ac = client(&d);
    publish(ac, "pp.a");
    ferry_sub *s1, *s2;
    ferry_client *c1 = subscriber(&d, "pp.a", NULL, NULL, &s1);
    ferry_client *c2 = subscriber(&d, "pp.*", "g", NULL, &s2);
    struct rawc rc;
    ck_assert_int_eq(rawc_connect(&rc, d.port, 0), 0);
    enum { N_REQ = 2000 };
    static uint8_t reqs[N_REQ * 32];
    size_t len = 0;
    for (int i = 0; i < N_REQ; i++) {
        Ferry__TopicInfoRequest tr = FERRY__TOPIC_INFO_REQUEST__INIT;
        tr.topic = (char *)"pp.a";
        Ferry__AdminRequest ar = FERRY__ADMIN_REQUEST__INIT;
        ar.id = (uint64_t)i + 1;
        ar.request_case = FERRY__ADMIN_REQUEST__REQUEST_TOPIC_INFO;
        ar.topic_info = &tr;
        Ferry__Frame f = FERRY__FRAME__INIT;
        f.body_case = FERRY__FRAME__BODY_ADMIN_REQUEST;
        f.admin_request = &ar;
        size_t one;
        ck_assert_int_eq(codec_frame_encode(&f, reqs + len, sizeof(reqs) - len, &one), 0);
        len += one;
    }
    ck_assert_int_eq(rawc_send_raw(&rc, reqs, len), 0);
    for (int i = 0; i < N_REQ; i++) {
        Ferry__Frame *f;
        ck_assert_int_eq(rawc_recv(&rc, WAIT_MS, &f), 0);
        ck_assert_msg(f->body_case == FERRY__FRAME__BODY_ADMIN_REPLY, "reply %d: %s", i,
                      codec_frame_name(f));
        Ferry__AdminReply *r = f->admin_reply;
        ck_assert_msg(r->code == 0, "reply %d: code %d: %s", i, r->code, r->text);
        ck_assert_uint_eq(r->id, (uint64_t)i + 1);
        ck_assert_uint_eq(r->n_topics, 1);
        ck_assert_uint_eq(r->topics[0]->subscribers, 2);
    }
    rawc_close(&rc);
    ferry_unsubscribe(s1);
    ferry_unsubscribe(s2);
    ferry_client_destroy(c1);
    ferry_client_destroy(c2);
    ck_assert_int_eq(ferry_client_close(ac, WAIT_MS), 0);
    ferry_client_destroy(ac);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("topic_subscribers");
    TCase *t = tcase_create("stored");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_subscribers_counts_exact_wildcard_group_and_durable);
    suite_add_tcase(s, t);
    t = tcase_create("ephemeral");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_subscribers_on_an_ephemeral_topic);
    suite_add_tcase(s, t);
    t = tcase_create("pipelined");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_subscribers_pipelined_requests_all_answered);
    suite_add_tcase(s, t);
    return s;
}
