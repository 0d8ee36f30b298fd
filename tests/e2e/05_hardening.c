/*
 * 05_hardening.c - regressions from the hardening review: frame limits on
 * what the broker sends, subscription identity across sub_id reuse, SubAck
 * before Deliver, keepalive of connections the broker is not reading, bounded
 * replies.
 */
#include "e2e_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

Suite *test_suite(void);

/* Connect asking for max_frame_len; returns what Connected said. */
static uint32_t connect_max_frame(struct rawc *c, int port, uint32_t max_frame_len)
{
    ck_assert_int_eq(rawc_open(c, port), 0);
    Ferry__Connect m = FERRY__CONNECT__INIT;
    m.protocol_version = 1;
    m.client_name = (char *)"hardening";
    m.max_frame_len = max_frame_len;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_CONNECT;
    f.connect = &m;
    ck_assert_int_eq(rawc_send(c, &f), 0);
    Ferry__Frame *r;
    ck_assert_int_eq(rawc_recv(c, T_WAIT, &r), 0);
    ck_assert_int_eq(r->body_case, FERRY__FRAME__BODY_CONNECTED);
    return r->connected->max_frame_len;
}

static void subscribe_start(struct rawc *c, uint64_t sub_id, const char *topic,
                            Ferry__StartPosition start)
{
    Ferry__Subscribe m = FERRY__SUBSCRIBE__INIT;
    m.sub_id = sub_id;
    m.pattern = (char *)topic;
    m.start = start;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &m;
    ck_assert_int_eq(rawc_send(c, &f), 0);
    Ferry__Frame *r;
    ck_assert_int_eq(rawc_recv(c, T_WAIT, &r), 0);
    ck_assert_msg(r->body_case == FERRY__FRAME__BODY_SUB_ACK, "expected SubAck, got %s",
                  codec_frame_name(r));
    ck_assert_int_eq(r->sub_ack->sub_id, sub_id);
    ck_assert_int_eq(r->sub_ack->code, 0);
}

/* Receive the next frame, which must be a non-fatal Error of code about
 * ref_id. */
static void expect_error(struct rawc *c, int code, uint64_t ref_id, int ref_kind)
{
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv(c, T_WAIT, &f), 0);
    ck_assert_msg(f->body_case == FERRY__FRAME__BODY_ERROR, "expected Error, got %s",
                  codec_frame_name(f));
    ck_assert_int_eq(f->error->code, code);
    ck_assert_int_eq(f->error->ref_id, ref_id);
    ck_assert_int_eq(f->error->ref_kind, ref_kind);
    ck_assert_int_eq(f->error->is_fatal, 0);
}

/* Connected answers min(client, server) exactly, even below 4 KiB. */
START_TEST(test_connected_reports_min_of_both_limits)
{
    struct ferryd_proc d;
    START(&d, "--max-frame-len", "8192", NULL);
    struct rawc a, b, c;
    ck_assert_uint_eq(connect_max_frame(&a, d.port, 1000), 1000);
    ck_assert_uint_eq(connect_max_frame(&b, d.port, 100000), 8192);
    ck_assert_uint_eq(connect_max_frame(&c, d.port, 0), 8192);
    ck_assert_int_eq(rawc_ping(&a, 1, T_WAIT), 0);
    rawc_close(&a);
    rawc_close(&b);
    rawc_close(&c);
    STOP(&d);
}
END_TEST

/* A Publish whose frame is exactly the server's limit would make a larger
 * Deliver: it is refused with ERROR_FRAME_TOO_LARGE, the connection stays,
 * and no subscriber ever gets a frame above the limit. */
START_TEST(test_publish_at_limit_refused_deliver_never_exceeds)
{
    struct ferryd_proc d;
    START(&d, "--max-frame-len", "8192", NULL);
    struct rawc pub, sub;
    CONNECT(&pub, d.port);
    CONNECT(&sub, d.port);
    ck_assert_int_eq(rawc_subscribe(&sub, 5, "big", NULL), 0);
    static uint8_t payload[8192];
    memset(payload, 'q', sizeof(payload));
    /* The payload length that makes the Publish frame exactly 8192 bytes. */
    size_t len = 0;
    for (size_t n = 8000; n < 8192; n++) {
        Ferry__Publish m = FERRY__PUBLISH__INIT;
        m.id = 1;
        m.topic = (char *)"big";
        m.payload.data = payload;
        m.payload.len = n;
        m.want_ack = 1;
        Ferry__Frame f = FERRY__FRAME__INIT;
        f.body_case = FERRY__FRAME__BODY_PUBLISH;
        f.publish = &m;
        if (codec_frame_size(&f) - FRAME_HDR_LEN == 8192) {
            len = n;
            break;
        }
    }
    ck_assert_uint_gt(len, 0);
    ck_assert_int_eq(rawc_publish(&pub, 1, "big", payload, len, 1), 0);
    expect_error(&pub, FERRY__ERROR_CODE__ERROR_FRAME_TOO_LARGE, 1,
                 FERRY__ERROR__REF_KIND__REF_PUBLISH);
    ck_assert_int_eq(rawc_ping(&pub, 2, T_WAIT), 0);
    /* A message that fits still flows, and it is the first thing the
     * subscriber gets. */
    ck_assert_int_eq(rawc_publish(&pub, 3, "big", payload, 1000, 1), 0);
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(&pub, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &f, NULL), 0);
    ck_assert_int_eq(f->pub_ack->code, 0);
    ck_assert_int_eq(rawc_recv(&sub, T_WAIT, &f), 0);
    ck_assert_int_eq(f->body_case, FERRY__FRAME__BODY_DELIVER);
    ck_assert_uint_le(codec_frame_size(f) - FRAME_HDR_LEN, 8192);
    ck_assert_uint_eq(f->deliver->payload.len, 1000);
    rawc_close(&pub);
    rawc_close(&sub);
    STOP(&d);
}
END_TEST

/* A client that negotiated a small limit gets no Deliver above it, live or
 * from the store: an Error naming the subscription instead, and the
 * connection goes on. */
START_TEST(test_small_limit_client_gets_error_not_oversized_deliver)
{
    struct ferryd_proc d;
    START(&d, NULL);
    struct rawc pub, sub;
    CONNECT(&pub, d.port);
    ck_assert_uint_eq(connect_max_frame(&sub, d.port, 4096), 4096);
    ck_assert_int_eq(rawc_subscribe(&sub, 7, "lim", NULL), 0);
    static uint8_t payload[6000];
    memset(payload, 'z', sizeof(payload));
    ck_assert_int_eq(rawc_publish(&pub, 1, "lim", payload, sizeof(payload), 1), 0);
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(&pub, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &f, NULL), 0);
    ck_assert_int_eq(f->pub_ack->code, 0);
    expect_error(&sub, FERRY__ERROR_CODE__ERROR_FRAME_TOO_LARGE, 7,
                 FERRY__ERROR__REF_KIND__REF_SUBSCRIPTION);
    /* From the store (catch-up) too. */
    subscribe_start(&sub, 8, "lim", FERRY__START_POSITION__START_ALL);
    expect_error(&sub, FERRY__ERROR_CODE__ERROR_FRAME_TOO_LARGE, 8,
                 FERRY__ERROR__REF_KIND__REF_SUBSCRIPTION);
    ck_assert_int_eq(rawc_publish(&pub, 2, "lim", payload, 100, 0), 0);
    ck_assert_int_eq(rawc_recv(&sub, T_WAIT, &f), 0);
    ck_assert_msg(f->body_case == FERRY__FRAME__BODY_DELIVER, "got %s", codec_frame_name(f));
    ck_assert_uint_eq(f->deliver->payload.len, 100);
    ck_assert_uint_eq(f->deliver->sequence, 2);
    rawc_close(&pub);
    rawc_close(&sub);
    STOP(&d);
}
END_TEST

/* Pre-encoded Publish frames on topic, as many as fit in buf. */
static size_t publish_chunk(uint8_t *buf, size_t cap, const char *topic, size_t payload_len)
{
    static char payload[256];
    Ferry__Publish m = FERRY__PUBLISH__INIT;
    m.topic = (char *)topic;
    m.payload.data = (uint8_t *)payload;
    m.payload.len = payload_len;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PUBLISH;
    f.publish = &m;
    size_t len = 0, one;
    while (codec_frame_encode(&f, buf + len, cap - len, &one) == 0) {
        len += one;
    }
    return len;
}

/* Write what the socket takes now, cycling through chunk. */
static void push_nonblocking(int fd, const uint8_t *chunk, size_t chunk_len, size_t *off)
{
    for (int k = 0; k < 64; k++) {
        ssize_t w = write(fd, chunk + *off, chunk_len - *off);
        if (w <= 0) {
            break;
        }
        *off = (*off + (size_t)w) % chunk_len;
    }
}

/* Unsubscribe, then Subscribe with the same sub_id to another topic, while
 * the first topic's messages are in flight: after the SubAck answering the
 * Unsubscribe, no Deliver of the old topic may carry that sub_id. */
START_TEST(test_reused_sub_id_gets_no_stale_deliveries)
{
    struct ferryd_proc d;
    START(&d, "--io-threads", "1", "--ephemeral", ">", NULL);
    struct rawc pub, sub;
    CONNECT(&pub, d.port);
    CONNECT(&sub, d.port);
    static uint8_t chunk[64 * 1024];
    size_t chunk_len = publish_chunk(chunk, sizeof(chunk), "old.t", 16);
    int n_stale = 0;
    for (int round = 0; round < 30; round++) {
        ck_assert_int_eq(rawc_subscribe(&sub, 1, "old.t", NULL), 0);
        ck_assert_int_eq(rawc_send_raw(&pub, chunk, chunk_len), 0);
        /* Unsubscribe and Subscribe(1, new topic) in one write. */
        uint8_t two[128];
        size_t l1, l2;
        Ferry__Unsubscribe u = FERRY__UNSUBSCRIBE__INIT;
        u.sub_id = 1;
        Ferry__Frame f = FERRY__FRAME__INIT;
        f.body_case = FERRY__FRAME__BODY_UNSUBSCRIBE;
        f.unsubscribe = &u;
        ck_assert_int_eq(codec_frame_encode(&f, two, sizeof(two), &l1), 0);
        Ferry__Subscribe s = FERRY__SUBSCRIBE__INIT;
        s.sub_id = 1;
        s.pattern = (char *)"new.t";
        Ferry__Frame g = FERRY__FRAME__INIT;
        g.body_case = FERRY__FRAME__BODY_SUBSCRIBE;
        g.subscribe = &s;
        ck_assert_int_eq(codec_frame_encode(&g, two + l1, sizeof(two) - l1, &l2), 0);
        ck_assert_int_eq(rawc_send_raw(&sub, two, l1 + l2), 0);
        /* Until the first SubAck (the Unsubscribe's) old deliveries are
         * fine; after it, none of the old topic. */
        int n_acks = 0;
        while (n_acks < 2) {
            Ferry__Frame *r;
            ck_assert_int_eq(rawc_recv(&sub, T_WAIT, &r), 0);
            if (r->body_case == FERRY__FRAME__BODY_SUB_ACK) {
                ck_assert_int_eq(r->sub_ack->code, 0);
                n_acks++;
            } else if (r->body_case == FERRY__FRAME__BODY_DELIVER && n_acks > 0) {
                n_stale += strcmp(r->deliver->topic, "old.t") == 0;
            }
        }
        /* Let the old topic's messages drain, then check the new
         * subscription works and nothing old arrives. */
        ck_assert_int_eq(rawc_publish(&pub, 1, "new.t", "m", 1, 1), 0);
        Ferry__Frame *r;
        ck_assert_int_eq(rawc_recv_kind(&pub, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &r, NULL), 0);
        for (;;) {
            ck_assert_int_eq(rawc_recv(&sub, T_WAIT, &r), 0);
            ck_assert_int_eq(r->body_case, FERRY__FRAME__BODY_DELIVER);
            if (strcmp(r->deliver->topic, "new.t") == 0) {
                break;
            }
            n_stale++;
        }
        ck_assert_int_eq(rawc_unsubscribe(&sub, 1), 0);
        ck_assert_int_eq(n_stale, 0);
    }
    rawc_close(&pub);
    rawc_close(&sub);
    STOP(&d);
}
END_TEST

/* While a flood keeps the worker queue full, SubAcks are held; a
 * subscription to the flooded topics must still see its SubAck before any
 * Deliver. */
START_TEST(test_no_deliver_before_held_suback)
{
    struct ferryd_proc d;
    START(&d, "--workers", "1", "--io-threads", "1", "--worker-queue", "2", "--ephemeral", ">",
          NULL);
    struct rawc flood;
    CONNECT(&flood, d.port);
    /* Connected before the flood: under load a full IO thread may refuse
     * new connections, which is not what this test is about. */
    enum { N_SUBS = 60 };
    static struct rawc subs[N_SUBS];
    for (int i = 0; i < N_SUBS; i++) {
        CONNECT(&subs[i], d.port);
    }
    static uint8_t chunk[256 * 1024];
    size_t chunk_len = publish_chunk(chunk, sizeof(chunk), "f.x", 100);
    fcntl(flood.fd, F_SETFL, fcntl(flood.fd, F_GETFL) | O_NONBLOCK);
    size_t off = 0;
    for (int i = 0; i < N_SUBS; i++) {
        struct rawc sub = subs[i];
        push_nonblocking(flood.fd, chunk, chunk_len, &off);
        ck_assert_int_eq(rawc_subscribe_nowait(&sub, (uint64_t)i, "f.>", NULL), 0);
        push_nonblocking(flood.fd, chunk, chunk_len, &off);
        Ferry__Frame *r;
        ck_assert_int_eq(rawc_recv(&sub, T_WAIT, &r), 0);
        ck_assert_msg(r->body_case == FERRY__FRAME__BODY_SUB_ACK, "round %d: %s before the SubAck",
                      i, codec_frame_name(r));
        rawc_close(&sub);
    }
    rawc_close(&flood);
    STOP(&d);
}
END_TEST

/* One connection with many subscriptions matching one topic: routing a
 * message to it must not cost (subscriptions)^2 on its IO thread, where a
 * bystander waits for its Pong. (Before: 16384^2 / 2 comparisons per
 * message, seconds for a few messages.) */
START_TEST(test_many_subs_one_topic_do_not_stall_io_thread)
{
    struct ferryd_proc d;
    START(&d, "--io-threads", "1", "--ephemeral", ">", "--max-subscriptions", "16384",
          "--max-outbound-bytes", "256m", NULL);
    struct rawc pub, sub, by;
    CONNECT(&pub, d.port);
    CONNECT(&sub, d.port);
    CONNECT(&by, d.port);
    enum { N_SUBS = 16384, N_MSGS = 200 };
    for (int i = 0; i < N_SUBS; i++) {
        ck_assert_int_eq(
            rawc_subscribe_nowait(&sub, (uint64_t)i, i % 2 ? "many.*" : "many.t", NULL), 0);
        if (i % 1024 == 1023) {
            ck_assert_int_eq(rawc_ping(&sub, (uint64_t)i, T_WAIT), 0); /* SubAcks skipped */
        }
    }
    ck_assert_int_eq(rawc_ping(&sub, 1, T_WAIT), 0);
    for (int i = 0; i < N_MSGS; i++) {
        ck_assert_int_eq(rawc_publish(&pub, (uint64_t)i, "many.t", "x", 1, 0), 0);
    }
    ck_assert_int_eq(rawc_ping(&pub, 2, T_WAIT), 0); /* all read by the broker */
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(rawc_ping(&by, 3, 3000), 0);
    }
    /* Draining 200 deliveries of 16,384 ids each (about 8 MB) is slow under
     * TSan on a loaded machine: a wait of its own, not T_WAIT. */
    for (int i = 0; i < N_MSGS; i++) {
        Ferry__Frame *f;
        ck_assert_int_eq(rawc_recv(&sub, 90000, &f), 0);
        ck_assert_msg(f->body_case == FERRY__FRAME__BODY_DELIVER, "expected Deliver, got %s",
                      codec_frame_name(f));
        ck_assert_uint_eq(f->deliver->n_sub_ids, N_SUBS);
    }
    rawc_close(&pub);
    rawc_close(&sub);
    rawc_close(&by);
    STOP(&d);
}
END_TEST

static int send_topic_list(struct rawc *c, uint64_t id, uint32_t limit)
{
    Ferry__TopicListRequest tl = FERRY__TOPIC_LIST_REQUEST__INIT;
    tl.pattern = (char *)"";
    tl.limit = limit;
    Ferry__AdminRequest ar = FERRY__ADMIN_REQUEST__INIT;
    ar.id = id;
    ar.request_case = FERRY__ADMIN_REQUEST__REQUEST_TOPICS;
    ar.topics = &tl;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ADMIN_REQUEST;
    f.admin_request = &ar;
    return rawc_send(c, &f);
}

static void make_topics(struct rawc *pub, int n)
{
    char topic[64];
    for (int i = 0; i < n; i++) {
        snprintf(topic, sizeof(topic), "listed.topic.number.%05d", i);
        ck_assert_int_eq(rawc_publish(pub, (uint64_t)i, topic, "x", 1, 0), 0);
    }
    ck_assert_int_eq(rawc_publish(pub, 999999, "listed.last", "x", 1, 1), 0);
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(pub, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &f, NULL), 0);
}

/* A topic list fits the client's frame limit and says when it is cut
 * short. */
START_TEST(test_topic_list_fits_negotiated_frame)
{
    struct ferryd_proc d;
    START(&d, NULL);
    struct rawc pub, adm;
    CONNECT(&pub, d.port);
    make_topics(&pub, 400);
    ck_assert_uint_eq(connect_max_frame(&adm, d.port, 4096), 4096);
    ck_assert_int_eq(send_topic_list(&adm, 1, 0), 0);
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv(&adm, T_WAIT, &f), 0);
    ck_assert_int_eq(f->body_case, FERRY__FRAME__BODY_ADMIN_REPLY);
    ck_assert_uint_le(codec_frame_size(f) - FRAME_HDR_LEN, 4096);
    ck_assert_int_eq(f->admin_reply->code, 0);
    ck_assert_uint_gt(f->admin_reply->n_topics, 10);
    ck_assert_uint_lt(f->admin_reply->n_topics, 401);
    ck_assert_ptr_nonnull(strstr(f->admin_reply->text, "truncated"));
    /* An explicit small limit: also said. */
    ck_assert_int_eq(send_topic_list(&adm, 2, 5), 0);
    ck_assert_int_eq(rawc_recv(&adm, T_WAIT, &f), 0);
    ck_assert_uint_eq(f->admin_reply->n_topics, 5);
    ck_assert_ptr_nonnull(strstr(f->admin_reply->text, "truncated"));
    rawc_close(&pub);
    rawc_close(&adm);
    STOP(&d);
}
END_TEST

/* Pipelined admin requests whose replies exceed the outbound bound: the
 * broker stops reading the client until it reads, instead of buffering
 * without bound or cutting it off as a slow consumer. */
START_TEST(test_pipelined_requests_pause_not_disconnect)
{
    struct ferryd_proc d;
    START(&d, "--max-outbound-bytes", "1m", NULL);
    struct rawc pub, adm;
    CONNECT(&pub, d.port);
    make_topics(&pub, 400);
    CONNECT(&adm, d.port);
    enum { N_REQ = 1500 }; /* ~30 KiB each: ~45 MiB of replies */
    static uint8_t reqs[N_REQ * 64];
    size_t len = 0;
    for (int i = 0; i < N_REQ; i++) {
        Ferry__TopicListRequest tl = FERRY__TOPIC_LIST_REQUEST__INIT;
        tl.pattern = (char *)"";
        Ferry__AdminRequest ar = FERRY__ADMIN_REQUEST__INIT;
        ar.id = (uint64_t)i + 1;
        ar.request_case = FERRY__ADMIN_REQUEST__REQUEST_TOPICS;
        ar.topics = &tl;
        Ferry__Frame f = FERRY__FRAME__INIT;
        f.body_case = FERRY__FRAME__BODY_ADMIN_REQUEST;
        f.admin_request = &ar;
        size_t one;
        ck_assert_int_eq(codec_frame_encode(&f, reqs + len, sizeof(reqs) - len, &one), 0);
        len += one;
    }
    ck_assert_int_eq(rawc_send_raw(&adm, reqs, len), 0);
    for (int i = 0; i < N_REQ; i++) {
        Ferry__Frame *f;
        ck_assert_int_eq(rawc_recv(&adm, T_WAIT, &f), 0);
        ck_assert_msg(f->body_case == FERRY__FRAME__BODY_ADMIN_REPLY, "reply %d: %s", i,
                      codec_frame_name(f));
        ck_assert_uint_eq(f->admin_reply->id, (uint64_t)i + 1);
        ck_assert_uint_eq(f->admin_reply->n_topics, 401);
    }
    rawc_close(&adm);
    CONNECT(&adm, d.port);
    Ferry__Stats s = stats_get(&adm, 1);
    ck_assert_int_eq(s.slow_consumers, 0);
    rawc_close(&pub);
    rawc_close(&adm);
    STOP(&d);
}
END_TEST

/* The Publish fast path rejects what the full decoder rejects: a topic field
 * repeated, its first copy invalid UTF-8 (or with a NUL), is a protocol
 * error, not a PubAck. */
START_TEST(test_publish_repeated_bad_topic_rejected)
{
    struct ferryd_proc d;
    START(&d, NULL);
    static const uint8_t bad[][2] = {{0xff, 't'}, {0x00, 't'}};
    for (int i = 0; i < 2; i++) {
        struct rawc c;
        CONNECT(&c, d.port);
        /* Publish{id=5, topic=<bad>, topic="t", payload="x", want_ack} */
        uint8_t pub[] = {0x08, 5, 0x12, 1, bad[i][0], 0x12, 1, bad[i][1], 0x1a, 1, 'x', 0x30, 1};
        uint8_t frame[4 + 2 + sizeof(pub)];
        frame[0] = frame[1] = frame[2] = 0;
        frame[3] = (uint8_t)(2 + sizeof(pub));
        frame[4] = 0x1a; /* Frame.publish */
        frame[5] = (uint8_t)sizeof(pub);
        memcpy(frame + 6, pub, sizeof(pub));
        ck_assert_int_eq(rawc_send_raw(&c, frame, sizeof(frame)), 0);
        int code = -1;
        ck_assert_int_eq(rawc_wait_closed(&c, T_WAIT, &code), 0);
        ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_PROTOCOL);
        rawc_close(&c);
    }
    STOP(&d);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_hardening");
    TCase *tc;
    tc = tcase_create("connected_max_frame_min");
    tcase_add_test(tc, test_connected_reports_min_of_both_limits);
    suite_add_tcase(s, tc);
    tc = tcase_create("publish_at_frame_limit");
    tcase_add_test(tc, test_publish_at_limit_refused_deliver_never_exceeds);
    suite_add_tcase(s, tc);
    tc = tcase_create("small_limit_no_oversized_deliver");
    tcase_add_test(tc, test_small_limit_client_gets_error_not_oversized_deliver);
    suite_add_tcase(s, tc);
    tc = tcase_create("reused_sub_id_no_stale");
    tcase_add_test(tc, test_reused_sub_id_gets_no_stale_deliveries);
    suite_add_tcase(s, tc);
    tc = tcase_create("no_deliver_before_held_suback");
    tcase_add_test(tc, test_no_deliver_before_held_suback);
    suite_add_tcase(s, tc);
    tc = tcase_create("topic_list_fits_frame");
    tcase_add_test(tc, test_topic_list_fits_negotiated_frame);
    suite_add_tcase(s, tc);
    tc = tcase_create("pipelined_requests_pause");
    tcase_add_test(tc, test_pipelined_requests_pause_not_disconnect);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    tc = tcase_create("publish_repeated_bad_topic");
    tcase_add_test(tc, test_publish_repeated_bad_topic_rejected);
    suite_add_tcase(s, tc);
    tc = tcase_create("many_subs_no_stall");
    tcase_add_test(tc, test_many_subs_one_topic_do_not_stall_io_thread);
    tcase_set_timeout(tc, 240);
    suite_add_tcase(s, tc);
    return s;
}
