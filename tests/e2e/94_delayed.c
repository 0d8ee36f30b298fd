/*
 * 94_delayed.c - delayed delivery and expiry end to end (Publish.deliver_at,
 * Publish.ttl_ms): a delayed message is acked at once as scheduled, reaches
 * live subscribers no earlier than its time, with the topic's next sequence
 * then, without holding back messages published meanwhile; one due while
 * the broker was down (killed -9) comes at start; expired messages are
 * never delivered (catch-up, durables) and retention removes them; the
 * refusals; `ferry pub --delay/--ttl`.
 */
#include "cli_e2e.h"
#include "e2e_util.h"
#include "store_e2e.h"

#include <time.h>

static struct ferryd_proc *d = &broker; /* cli_e2e.c's, so that the CLI finds it */

static void teardown(void)
{
    broker_down();
}

static void start(const char *const *extra)
{
    ck_assert_int_eq(ferryd_start(d, NULL, extra), 0);
    snprintf(server, sizeof(server), "127.0.0.1:%d", d->port);
}

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Publish text with an ack, due at deliver_at (0: now), expiring ttl_ms
 * after; the PubAck's sequence. */
static uint64_t dpub(ferry_client *c, const char *topic, const char *text, int64_t deliver_at,
                     uint64_t ttl_ms)
{
    ferry_pub m = {.topic = topic,
                   .payload = text,
                   .payload_len = strlen(text),
                   .deliver_at = deliver_at,
                   .ttl_ms = ttl_ms};
    uint64_t seq = UINT64_MAX;
    int rc = ferry_publish_sync(c, &m, S_WAIT, &seq);
    ck_assert_msg(rc == 0, "publish to %s: %s", topic, ferry_strerror(rc));
    return seq;
}

/* The next message is (seq, text); returns when it arrived (wall ns). */
static int64_t expect(ferry_sub *s, uint64_t seq, const char *text)
{
    char buf[64];
    uint64_t got;
    s_next(s, &got, buf, sizeof(buf));
    int64_t now = wall_ns();
    ck_assert_msg(got == seq && strcmp(buf, text) == 0, "got %llu '%s', want %llu '%s'",
                  (unsigned long long)got, buf, (unsigned long long)seq, text);
    return now;
}

/* Wait until the wall clock passes t (waiting for time itself to pass). */
static void wait_past(int64_t t)
{
    while (wall_ns() <= t) {
        usleep(10000);
    }
}

START_TEST(test_delayed_in_due_order_without_holding_back)
{
    start(NULL);
    ferry_client *c = s_client(d, 0);
    ferry_sub *s = s_sub(c, "dl.a", FERRY_START_NEW, 0);
    int64_t t0 = wall_ns();
    int64_t late = t0 + 1500 * 1000000LL, early = t0 + 700 * 1000000LL;
    ck_assert_uint_eq(dpub(c, "dl.a", "late", late, 0), 0); /* scheduled: no sequence yet */
    ck_assert_uint_eq(dpub(c, "dl.a", "early", early, 0), 0);
    ck_assert_uint_eq(dpub(c, "dl.a", "now", 0, 0), 1); /* not held back */
    expect(s, 1, "now");
    ferry_stats st;
    ck_assert_int_eq(ferry_admin_stats(c, S_WAIT, &st), 0);
    ck_assert_uint_le(st.store_scheduled, 2);
    ck_assert_int_ge(expect(s, 2, "early"), early);
    ck_assert_int_ge(expect(s, 3, "late"), late);
    ck_assert_uint_eq(dpub(c, "dl.a", "after", 0, 0), 4);
    expect(s, 4, "after");
    ck_assert_int_eq(ferry_admin_stats(c, S_WAIT, &st), 0);
    ck_assert_uint_eq(st.store_scheduled, 0); /* both moved */
    s_no_more(s, 100);
    ferry_unsubscribe(s);
    /* Stored in that order: a replay shows the same sequence. */
    s = s_sub(c, "dl.a", FERRY_START_ALL, 0);
    expect(s, 1, "now");
    expect(s, 2, "early");
    expect(s, 3, "late");
    expect(s, 4, "after");
    ferry_unsubscribe(s);
    s_close(c);
}
END_TEST

START_TEST(test_due_during_downtime_comes_at_start)
{
    start(NULL);
    ferry_client *c = s_client(d, 0);
    int64_t due = wall_ns() + 800 * 1000000LL;
    ck_assert_uint_eq(dpub(c, "dl.b", "while-down", due, 0), 0);
    ck_assert_uint_eq(dpub(c, "dl.b", "far", wall_ns() + 3600 * 1000000000LL, 0), 0);
    s_close(c);
    ck_assert_int_eq(ferryd_kill9(d), 0); /* the schedule is durable: acked means stored */
    wait_past(due);
    ck_assert_int_eq(ferryd_restart(d, NULL), 0);
    snprintf(server, sizeof(server), "127.0.0.1:%d", d->port);
    c = s_client(d, 0);
    ferry_sub *s = s_sub(c, "dl.b", FERRY_START_ALL, 0);
    expect(s, 1, "while-down");
    s_no_more(s, 300); /* the one due in an hour stays scheduled */
    ferry_unsubscribe(s);
    /* and is counted as such (counted afresh at start, after the replay) */
    ferry_stats st;
    ck_assert_int_eq(ferry_admin_stats(c, S_WAIT, &st), 0);
    ck_assert_uint_eq(st.store_scheduled, 1);
    s_close(c);
}
END_TEST

START_TEST(test_expired_never_delivered_and_retention_removes_them)
{
    start((const char *const[]){"--retention-interval-ms", "20", NULL});
    ferry_client *c = s_client(d, 0);
    ferry_sub *live = s_sub(c, "ex.a", FERRY_START_NEW, 0);
    ck_assert_uint_eq(dpub(c, "ex.a", "short1", 0, 300), 1);
    ck_assert_uint_eq(dpub(c, "ex.a", "short2", 0, 300), 2);
    ck_assert_uint_eq(dpub(c, "ex.a", "keep", 0, 0), 3);
    ck_assert_uint_eq(dpub(c, "ex.a", "hour", 0, 3600 * 1000), 4);
    /* Live, before expiry: all of them. */
    expect(live, 1, "short1");
    expect(live, 2, "short2");
    expect(live, 3, "keep");
    expect(live, 4, "hour");
    ferry_unsubscribe(live);
    /* A delayed message counts its ttl from its due time. */
    int64_t due = wall_ns() + 400 * 1000000LL;
    ck_assert_uint_eq(dpub(c, "ex.b", "due-then-lives", due, 60000), 0);
    wait_past(wall_ns() + 400 * 1000000LL);
    /* Catch-up: the expired ones are skipped. */
    ferry_sub *s = s_sub(c, "ex.a", FERRY_START_ALL, 0);
    expect(s, 3, "keep");
    expect(s, 4, "hour");
    s_no_more(s, 100);
    ferry_unsubscribe(s);
    s = s_sub(c, "ex.b", FERRY_START_ALL, 0);
    expect(s, 1, "due-then-lives");
    ferry_unsubscribe(s);
    /* A durable with explicit acks: never gets them, counts them done. */
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_start(so, FERRY_START_ALL, 0), 0);
    ck_assert_int_eq(ferry_sub_options_set_durable(so, "dur"), 0);
    ck_assert_int_eq(ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT), 0);
    ck_assert_int_eq(ferry_sub_options_set_ack_wait_ms(so, 200), 0);
    ck_assert_int_eq(ferry_subscribe(c, "ex.a", so, NULL, NULL, S_WAIT, &s), 0);
    ferry_msg *m;
    for (uint64_t want = 3; want <= 4; want++) {
        ck_assert_int_eq(ferry_sub_next(s, S_WAIT, &m), 0);
        ck_assert_uint_eq(ferry_msg_sequence(m), want);
        ck_assert_int_eq(ferry_msg_ack(m, FERRY_ACK), 0);
        ferry_msg_destroy(m);
    }
    s_no_more(s, 600); /* past the ack wait: nothing redelivered */
    ferry_unsubscribe(s);
    /* Retention: the expired head goes (no rule needed). */
    ferry_topic_info ti;
    int64_t end = s_now_ms() + S_WAIT;
    for (;;) {
        ck_assert_int_eq(ferry_admin_topic_info(c, "ex.a", S_WAIT, &ti), 0);
        if (ti.first_seq == 3) {
            break;
        }
        ck_assert_msg(s_now_ms() < end, "expired messages never removed (first_seq %llu)",
                      (unsigned long long)ti.first_seq);
        usleep(20000); /* polling, bounded by the deadline */
    }
    ck_assert_uint_eq(ti.messages, 2);
    ferry_sub_options_destroy(so);
    s_close(c);
}
END_TEST

START_TEST(test_refusals_and_the_scheduled_flag)
{
    start((const char *const[]){"--ephemeral", "eph.>", NULL});
    struct rawc r;
    ck_assert_int_eq(rawc_connect(&r, d->port, 0), 0);
    Ferry__Publish p = FERRY__PUBLISH__INIT;
    p.id = 7;
    p.topic = (char *)"eph.t";
    p.payload.data = (uint8_t *)"v";
    p.payload.len = 1;
    p.want_ack = 1;
    p.deliver_at = wall_ns() + 60 * 1000000000LL;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PUBLISH;
    f.publish = &p;
    ck_assert_int_eq(rawc_send(&r, &f), 0);
    Ferry__Frame *a;
    ck_assert_int_eq(rawc_recv_kind(&r, S_WAIT, FERRY__FRAME__BODY_ERROR, &a, NULL), 0);
    ck_assert_int_eq(a->error->code, FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT);
    ck_assert_uint_eq(a->error->ref_id, 7);
    ck_assert_ptr_nonnull(strstr(a->error->text, "deliver_at needs a stored topic"));
    /* Stored: acked as scheduled, sequence 0. */
    p.id = 8;
    p.topic = (char *)"st.t";
    ck_assert_int_eq(rawc_send(&r, &f), 0);
    ck_assert_int_eq(rawc_recv_kind(&r, S_WAIT, FERRY__FRAME__BODY_PUB_ACK, &a, NULL), 0);
    ck_assert_uint_eq(a->pub_ack->id, 8);
    ck_assert_int_eq(a->pub_ack->code, 0);
    ck_assert(a->pub_ack->scheduled);
    ck_assert_uint_eq(a->pub_ack->sequence, 0);
    /* A time already past is now: a sequence, not scheduled. */
    p.id = 9;
    p.deliver_at = 1;
    ck_assert_int_eq(rawc_send(&r, &f), 0);
    ck_assert_int_eq(rawc_recv_kind(&r, S_WAIT, FERRY__FRAME__BODY_PUB_ACK, &a, NULL), 0);
    ck_assert_uint_eq(a->pub_ack->id, 9);
    ck_assert(!a->pub_ack->scheduled);
    ck_assert_uint_eq(a->pub_ack->sequence, 1);
    /* An ephemeral topic takes a ttl (it is routed at once anyway). */
    p.id = 10;
    p.topic = (char *)"eph.t";
    p.deliver_at = 0;
    p.ttl_ms = 1000;
    ck_assert_int_eq(rawc_send(&r, &f), 0);
    ck_assert_int_eq(rawc_recv_kind(&r, S_WAIT, FERRY__FRAME__BODY_PUB_ACK, &a, NULL), 0);
    ck_assert_uint_eq(a->pub_ack->id, 10);
    ck_assert_int_eq(a->pub_ack->code, 0);
    rawc_close(&r);
}
END_TEST

START_TEST(test_cli_pub_delay_and_ttl)
{
    start(NULL);
    struct proc p;
    long long t0 = now_ms();
    ck_assert_int_eq(
        run(&p, NULL,
            (const char *const[]){"pub", "--ack", "--delay", "700ms", "dl.cli", "later", NULL}),
        0);
    proc_free(&p);
    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"pub", "--ack", "dl.cli", "first", NULL}),
                     0);
    proc_free(&p);
    ck_assert_int_eq(run(&p, NULL,
                         (const char *const[]){"sub", "--all", "--count", "2", "--timeout", "20s",
                                               "dl.cli", NULL}),
                     0);
    ck_assert_str_eq(p.out_buf, "first\nlater\n");
    ck_assert_int_ge(now_ms() - t0, 700);
    proc_free(&p);
    ck_assert_int_eq(
        run(&p, NULL,
            (const char *const[]){"pub", "--ack", "--ttl", "100ms", "ex.cli", "gone", NULL}),
        0);
    proc_free(&p);
    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"pub", "--ack", "ex.cli", "kept", NULL}),
                     0);
    proc_free(&p);
    usleep(200000); /* the ttl itself must pass */
    ck_assert_int_eq(run(&p, NULL,
                         (const char *const[]){"sub", "--all", "--count", "1", "--timeout", "20s",
                                               "ex.cli", NULL}),
                     0);
    ck_assert_str_eq(p.out_buf, "kept\n");
    proc_free(&p);
    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"pub", "--ttl", "soon", "x", "y", NULL}),
                     2);
    ck_assert_ptr_nonnull(strstr(p.err_buf, "--ttl needs a duration"));
    proc_free(&p);
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_94_delayed");
    s_add_case(s, tcase_create("delayed_in_due_order_without_holding_back"),
               test_delayed_in_due_order_without_holding_back, NULL, teardown);
    s_add_case(s, tcase_create("due_during_downtime_comes_at_start"),
               test_due_during_downtime_comes_at_start, NULL, teardown);
    s_add_case(s, tcase_create("expired_never_delivered_and_retention_removes_them"),
               test_expired_never_delivered_and_retention_removes_them, NULL, teardown);
    s_add_case(s, tcase_create("refusals_and_the_scheduled_flag"),
               test_refusals_and_the_scheduled_flag, NULL, teardown);
    s_add_case(s, tcase_create("cli_pub_delay_and_ttl"), test_cli_pub_delay_and_ttl, NULL,
               teardown);
    return s;
}
