/*
 * 71_store_catchup.c - start positions on Subscribe (all, sequence, time,
 * last N, new) and the seam from catch-up reading to live delivery: every
 * sequence exactly once, in order, while a publisher keeps writing.
 */
#include "rawclient.h"
#include "store_e2e.h"

#include <pthread.h>
#include <stdatomic.h>

/* Expect sequences from..to with payloads "m<seq>", then nothing more. */
static void expect_range(ferry_sub *s, uint64_t from, uint64_t to)
{
    char buf[64], want[64];
    for (uint64_t q = from; q <= to; q++) {
        uint64_t seq;
        s_next(s, &seq, buf, sizeof(buf));
        ck_assert_uint_eq(seq, q);
        snprintf(want, sizeof(want), "m%llu", (unsigned long long)q);
        ck_assert_str_eq(buf, want);
    }
}

static void pub_m(ferry_client *c, const char *topic, uint64_t q)
{
    char text[64];
    snprintf(text, sizeof(text), "m%llu", (unsigned long long)q);
    ck_assert_uint_eq(s_pub(c, topic, text), q);
}

START_TEST(test_every_start_position_then_live)
{
    struct ferryd_proc d;
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
    ferry_client *c = s_client(&d, 0);
    for (uint64_t q = 1; q <= 10; q++) {
        pub_m(c, "sp.a", q);
    }
    /* All, then live. */
    ferry_sub *all = s_sub(c, "sp.a", FERRY_START_ALL, 0);
    expect_range(all, 1, 10);
    /* The publish time of message 6, for "from time". */
    ferry_sub *t6 = s_sub(c, "sp.a", FERRY_START_SEQUENCE, 6);
    ferry_msg *m;
    ck_assert_int_eq(ferry_sub_next(t6, S_WAIT, &m), 0);
    ck_assert_uint_eq(ferry_msg_sequence(m), 6);
    int64_t time6 = ferry_msg_time(m);
    ck_assert_int_gt(time6, 0);
    ferry_msg_destroy(m);
    ferry_unsubscribe(t6);

    ferry_sub *seq4 = s_sub(c, "sp.a", FERRY_START_SEQUENCE, 4);
    ferry_sub *bytime = s_sub(c, "sp.a", FERRY_START_TIME, time6);
    ferry_sub *last3 = s_sub(c, "sp.a", FERRY_START_LAST, 3);
    ferry_sub *fresh = s_sub(c, "sp.a", FERRY_START_NEW, 0);
    ferry_sub *ahead = s_sub(c, "sp.a", FERRY_START_SEQUENCE, 12);
    ferry_sub *empty = s_sub(c, "sp.none", FERRY_START_ALL, 0);
    expect_range(seq4, 4, 10);
    expect_range(bytime, 6, 10);
    expect_range(last3, 8, 10);
    /* Live after the seam, for every one of them. */
    pub_m(c, "sp.a", 11);
    pub_m(c, "sp.a", 12);
    ck_assert_uint_eq(s_pub(c, "sp.none", "m1"), 1);
    expect_range(all, 11, 12);
    expect_range(seq4, 11, 12);
    expect_range(bytime, 11, 12);
    expect_range(last3, 11, 12);
    expect_range(fresh, 11, 12);
    expect_range(ahead, 12, 12); /* 11 is before its start */
    expect_range(empty, 1, 1);
    ferry_sub *subs[] = {all, seq4, bytime, last3, fresh, ahead, empty};
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        s_no_more(subs[i], i == 0 ? 200 : 10);
        ferry_unsubscribe(subs[i]);
    }
    /* Start positions are refused for patterns with wildcards. */
    ferry_sub_options *so;
    ferry_sub *s;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_start(so, FERRY_START_ALL, 0), 0);
    ck_assert_int_eq(ferry_subscribe(c, "sp.*", so, NULL, NULL, S_WAIT, &s), FERRY_EINVAL);
    ferry_sub_options_destroy(so);
    /* After a purge, "all" starts at the first message still stored. */
    uint64_t purged;
    ck_assert_int_eq(ferry_admin_topic_purge(c, "sp.a", S_WAIT, &purged), 0);
    ck_assert_uint_eq(purged, 12);
    pub_m(c, "sp.a", 13);
    s = s_sub(c, "sp.a", FERRY_START_ALL, 0);
    expect_range(s, 13, 13);
    ferry_unsubscribe(s);
    s_close(c);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/* ---- the seam under load ------------------------------------------------ */

#define BULK_SIZE 20000

struct streamer {
    ferry_client *c;
    const char *topic;
    int n;
    size_t size; /* payload bytes: "m<i>", a NUL, filler; 0: just "m<i>" */
    atomic_int n_sent;
    atomic_int n_failed;
};

static void on_ack(ferry_client *c, int status, uint64_t seq, void *userdata)
{
    (void)c;
    (void)seq;
    struct streamer *p = userdata;
    if (status != 0) {
        atomic_fetch_add(&p->n_failed, 1);
    }
}

static void *stream_main(void *arg)
{
    struct streamer *p = arg;
    char text[BULK_SIZE]; /* one per streaming thread */
    for (int i = 1; i <= p->n; i++) {
        int n = snprintf(text, sizeof(text), "m%d", i);
        size_t len = p->size > (size_t)n ? p->size : (size_t)n;
        memset(text + n + 1, 'a' + i % 26, len > (size_t)n + 1 ? len - (size_t)n - 1 : 0);
        ferry_pub m = {.topic = p->topic, .payload = text, .payload_len = len};
        if (ferry_publish_async(p->c, &m, on_ack, p, NULL) < 0) {
            atomic_fetch_add(&p->n_failed, 1);
            break;
        }
        atomic_store(&p->n_sent, i);
    }
    return NULL;
}

static void wait_sent(struct streamer *p, int n)
{
    int64_t end = s_now_ms() + S_WAIT;
    while (atomic_load(&p->n_sent) < n) {
        ck_assert_msg(s_now_ms() < end, "publisher stuck at %d", atomic_load(&p->n_sent));
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
    }
}

START_TEST(test_seam_under_concurrent_publishing)
{
    enum { N = 40000, NSUB = 6 };
    struct ferryd_proc d;
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
    struct streamer p = {.c = s_client(&d, 256), .topic = "seam.a", .n = N};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, stream_main, &p), 0);
    ferry_client *sc[NSUB];
    ferry_sub *subs[NSUB];
    uint64_t first[NSUB];
    /* Subscribe at several moments while the stream runs; some from the
     * start, one from a sequence, one "last 100". */
    const int at[NSUB] = {1, 3000, 9000, 16000, 24000, 33000};
    for (int i = 0; i < NSUB; i++) {
        wait_sent(&p, at[i]);
        sc[i] = s_client(&d, 0);
        if (i == 2) {
            subs[i] = s_sub(sc[i], "seam.a", FERRY_START_SEQUENCE, 500);
            first[i] = 500;
        } else if (i == 4) {
            subs[i] = s_sub(sc[i], "seam.a", FERRY_START_LAST, 100);
            first[i] = 0; /* whatever was last then */
        } else {
            subs[i] = s_sub(sc[i], "seam.a", FERRY_START_ALL, 0);
            first[i] = 1;
        }
    }
    pthread_join(th, NULL);
    ck_assert_int_eq(ferry_flush(p.c, S_WAIT), 0);
    ck_assert_int_eq(atomic_load(&p.n_failed), 0);
    for (int i = 0; i < NSUB; i++) {
        uint64_t seq;
        char buf[64], want[64];
        s_next(subs[i], &seq, buf, sizeof(buf));
        if (first[i] == 0) {
            ck_assert_uint_ge(seq, 1);
            first[i] = seq;
        }
        ck_assert_msg(seq == first[i], "subscriber %d starts at %llu, not %llu", i,
                      (unsigned long long)seq, (unsigned long long)first[i]);
        for (uint64_t q = first[i] + 1; q <= N; q++) {
            s_next(subs[i], &seq, buf, sizeof(buf));
            ck_assert_msg(seq == q, "subscriber %d: sequence %llu after %llu", i,
                          (unsigned long long)seq, (unsigned long long)(q - 1));
            snprintf(want, sizeof(want), "m%llu", (unsigned long long)q);
            ck_assert_str_eq(buf, want);
        }
        s_no_more(subs[i], i == 0 ? 300 : 20);
        ferry_unsubscribe(subs[i]);
        s_close(sc[i]);
    }
    s_close(p.c);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/* The seam when the stream stops right after it: the messages routed
 * before the subscription reached its worker may not be readable yet (the
 * writer commits LMDB after routing: here within 300 ms, for a wide
 * window), and no later live message comes to show they are missing. The
 * catch-up must wait for them, not end at what the store holds now. */
START_TEST(test_seam_when_the_stream_stops)
{
    enum { ROUNDS = 10, N = 5000 };
    struct ferryd_proc d;
    ck_assert_int_eq(
        ferryd_start(&d, NULL, (const char *const[]){"--commit-interval-ms", "300", NULL}), 0);
    ferry_client *pc = s_client(&d, 256);
    ferry_client *sc = s_client(&d, 0);
    for (int r = 0; r < ROUNDS; r++) {
        char topic[32];
        snprintf(topic, sizeof(topic), "stop.%d", r);
        struct streamer p = {.c = pc, .topic = topic, .n = N};
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, stream_main, &p), 0);
        wait_sent(&p, N / 5 + r * (N / 2) / ROUNDS);
        ferry_sub *s = s_sub(sc, topic, r % 2 ? FERRY_START_ALL : FERRY_START_SEQUENCE, 1);
        pthread_join(th, NULL);
        ck_assert_int_eq(ferry_flush(pc, S_WAIT), 0);
        ck_assert_int_eq(atomic_load(&p.n_failed), 0);
        expect_range(s, 1, N);
        s_no_more(s, 20);
        ferry_unsubscribe(s);
    }
    s_close(sc);
    s_close(pc);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/* The same with large messages, which the store writes straight to LMDB
 * and checkpoints instead of logging them (store_write.c, is_bulk): their
 * commit comes before their routing, and a read waits until the commit is
 * durable. Subscribers that start while the stream runs still get every
 * sequence once, in order. */
START_TEST(test_seam_with_large_messages)
{
    enum { N = 2000, NSUB = 3 };
    struct ferryd_proc d;
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
    struct streamer p = {.c = s_client(&d, 256), .topic = "bulk.a", .n = N, .size = BULK_SIZE};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, stream_main, &p), 0);
    ferry_client *sc[NSUB];
    ferry_sub *subs[NSUB];
    const int at[NSUB] = {1, 600, 1400};
    for (int i = 0; i < NSUB; i++) {
        wait_sent(&p, at[i]);
        sc[i] = s_client(&d, 0);
        subs[i] = s_sub(sc[i], "bulk.a", FERRY_START_ALL, 0);
    }
    pthread_join(th, NULL);
    ck_assert_int_eq(ferry_flush(p.c, S_WAIT), 0);
    ck_assert_int_eq(atomic_load(&p.n_failed), 0);
    for (int i = 0; i < NSUB; i++) {
        expect_range(subs[i], 1, N);
        s_no_more(subs[i], 20);
        ferry_unsubscribe(subs[i]);
        s_close(sc[i]);
    }
    s_close(p.c);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/* A catch-up far larger than the connection's outbound bound is read in
 * chunks as the subscriber drains, never overflowing it. */
START_TEST(test_large_catchup_respects_outbound_bound)
{
    enum { N = 30000, SIZE = 300 };
    struct ferryd_proc d;
    ck_assert_int_eq(
        ferryd_start(&d, NULL, (const char *const[]){"--max-outbound-bytes", "256k", NULL}), 0);
    ferry_client *c = s_client(&d, 256);
    static char payload[SIZE];
    memset(payload, 'c', sizeof(payload));
    for (int i = 0; i < N; i++) {
        ferry_pub m = {.topic = "big.a", .payload = payload, .payload_len = SIZE};
        ck_assert_int_eq(ferry_publish_async(c, &m, NULL, NULL, NULL), 0);
    }
    ck_assert_int_eq(ferry_flush(c, S_WAIT), 0);
    ferry_sub *s = s_sub(c, "big.a", FERRY_START_ALL, 0);
    for (uint64_t q = 1; q <= N; q++) {
        ferry_msg *m;
        int rc = ferry_sub_next(s, S_WAIT, &m);
        ck_assert_msg(rc == 0, "message %llu: %s", (unsigned long long)q, ferry_strerror(rc));
        ck_assert_uint_eq(ferry_msg_sequence(m), q);
        ferry_msg_destroy(m);
    }
    ferry_unsubscribe(s);
    ferry_stats st;
    ck_assert_int_eq(ferry_admin_stats(c, S_WAIT, &st), 0);
    ck_assert_uint_eq(st.slow_consumers, 0);
    ck_assert_uint_eq(st.topics, 1);
    ck_assert_uint_gt(st.store_bytes, (uint64_t)N * SIZE);
    s_close(c);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/* A subscriber of a stored topic that stops reading is not disconnected:
 * once far behind it gets no more live deliveries and, when it reads again,
 * catches up from the store: every message, in order. */
START_TEST(test_lagging_subscriber_falls_back_to_the_store)
{
    enum { N = 20000, SIZE = 1024 };
    struct ferryd_proc d;
    ck_assert_int_eq(
        ferryd_start(&d, NULL, (const char *const[]){"--max-outbound-bytes", "256k", NULL}), 0);
    struct rawc sub;
    ck_assert_int_eq(rawc_connect(&sub, d.port, 0), 0);
    ck_assert_int_eq(rawc_subscribe(&sub, 7, "lag.a", NULL), 0);
    ferry_client *c = s_client(&d, 256);
    static char payload[SIZE];
    memset(payload, 'x', sizeof(payload));
    for (int i = 1; i <= N; i++) {
        int n = snprintf(payload, sizeof(payload), "m%d.", i);
        payload[n] = 'x';
        ferry_pub m = {.topic = "lag.a", .payload = payload, .payload_len = SIZE};
        ck_assert_int_eq(ferry_publish_async(c, &m, NULL, NULL, NULL), 0);
    }
    ck_assert_int_eq(ferry_flush(c, S_WAIT), 0);
    /* Now read everything. */
    for (uint64_t q = 1; q <= N; q++) {
        Ferry__Frame *f;
        int rc = rawc_recv(&sub, S_WAIT, &f);
        ck_assert_msg(rc == 0, "message %llu: %d", (unsigned long long)q, rc);
        ck_assert_msg(f->body_case == FERRY__FRAME__BODY_DELIVER, "got %s instead of message %llu",
                      codec_frame_name(f), (unsigned long long)q);
        ck_assert_uint_eq(f->deliver->sequence, q);
        ck_assert_uint_eq(f->deliver->payload.len, SIZE);
        unsigned long long got = 0;
        ck_assert_int_eq(sscanf((const char *)f->deliver->payload.data, "m%llu.", &got), 1);
        ck_assert_uint_eq(got, q);
    }
    ck_assert_int_eq(rawc_ping(&sub, 1, S_WAIT), 0);
    ferry_stats st;
    ck_assert_int_eq(ferry_admin_stats(c, S_WAIT, &st), 0);
    ck_assert_uint_eq(st.slow_consumers, 0);
    rawc_close(&sub);
    s_close(c);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/* A stored message comes back from the store with its key and headers (the
 * catch-up encoder writes the same Deliver body as the live path), and a
 * topic too long for the store is refused with the limit named, while an
 * ephemeral one of that length is routed. */
START_TEST(test_catchup_keeps_key_and_headers_and_long_topics_are_explained)
{
    struct ferryd_proc d;
    ck_assert_int_eq(ferryd_start(&d, NULL,
                                  (const char *const[]){"--max-topic-len", "1000", "--ephemeral",
                                                        "eph.>", NULL}),
                     0);
    ferry_client *c = s_client(&d, 0);
    const ferry_header hs[] = {{"trace", "t-1"}, {"empty", ""}};
    ferry_pub m = {.topic = "kh.a",
                   .payload = "body",
                   .payload_len = 4,
                   .key = "k9",
                   .key_len = 2,
                   .headers = hs,
                   .n_headers = 2};
    uint64_t seq = 0;
    ck_assert_int_eq(ferry_publish_sync(c, &m, S_WAIT, &seq), 0);
    ck_assert_uint_eq(seq, 1);
    ferry_sub *s = s_sub(c, "kh.a", FERRY_START_ALL, 0);
    ferry_msg *got;
    ck_assert_int_eq(ferry_sub_next(s, S_WAIT, &got), 0);
    ck_assert_uint_eq(ferry_msg_sequence(got), 1);
    size_t len;
    const void *p = ferry_msg_key(got, &len);
    ck_assert_uint_eq(len, 2);
    ck_assert_mem_eq(p, "k9", 2);
    p = ferry_msg_data(got, &len);
    ck_assert_uint_eq(len, 4);
    ck_assert_mem_eq(p, "body", 4);
    ck_assert_uint_eq(ferry_msg_n_headers(got), 2);
    ck_assert_str_eq(ferry_msg_header(got, "trace"), "t-1");
    ck_assert_str_eq(ferry_msg_header(got, "empty"), "");
    ferry_msg_destroy(got);

    char topic[400];
    memset(topic, 'x', sizeof(topic) - 1);
    topic[sizeof(topic) - 1] = '\0';
    ferry_pub lm = {.topic = topic, .payload = "x", .payload_len = 1};
    ck_assert_int_eq(ferry_publish_sync(c, &lm, S_WAIT, &seq), FERRY_EINVALIDTOPIC);
    char err[512];
    ferry_client_last_error(c, err, sizeof(err));
    ck_assert_msg(strstr(err, "at most 255 bytes") != NULL, "error text: %s", err);
    memcpy(topic, "eph.", 4);
    ferry_sub *es = s_sub(c, topic, FERRY_START_NEW, 0);
    ck_assert_int_eq(ferry_publish_sync(c, &lm, S_WAIT, &seq), 0);
    ck_assert_int_eq(ferry_sub_next(es, S_WAIT, &got), 0);
    ck_assert_str_eq(ferry_msg_topic(got), topic);
    ferry_msg_destroy(got);
    s_close(c);
    ferryd_stop(&d);
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_store_catchup");
    TCase *tc = tcase_create("start_positions");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_every_start_position_then_live);
    suite_add_tcase(s, tc);
    tc = tcase_create("seam_under_load");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_seam_under_concurrent_publishing);
    suite_add_tcase(s, tc);
    tc = tcase_create("seam_stream_stops");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_seam_when_the_stream_stops);
    suite_add_tcase(s, tc);
    tc = tcase_create("seam_large_messages");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_seam_with_large_messages);
    suite_add_tcase(s, tc);
    tc = tcase_create("lagging_subscriber");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_lagging_subscriber_falls_back_to_the_store);
    suite_add_tcase(s, tc);
    tc = tcase_create("large_catchup");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_large_catchup_respects_outbound_bound);
    suite_add_tcase(s, tc);
    tc = tcase_create("key_headers_long_topics");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_catchup_keeps_key_and_headers_and_long_topics_are_explained);
    suite_add_tcase(s, tc);
    return s;
}
