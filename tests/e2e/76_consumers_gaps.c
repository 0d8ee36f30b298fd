/*
 * 76_consumers_gaps.c - consumer semantics at the edges (issue 11): a
 * Publish sent just before a START_NEW Subscribe on the same connection does
 * not reach the new subscription, on stored and ephemeral topics, for exact,
 * wildcard and queue-group subscriptions.
 *
 * Every wait is bounded; nothing is synchronised by sleeping.
 */
#include "rawclient.h"
#include "store_e2e.h"

#include <stdlib.h>
#include <string.h>

static struct ferryd_proc d;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(ferryd_start(&d, NULL, (const char *const[]){"--ephemeral", "eph.>", NULL}),
                     0);
}

static void teardown(void)
{
    ferryd_stop(&d);
}

/* Append one encoded frame to buf (malloc'd, grown). */
static void frame_append(uint8_t **buf, size_t *len, const Ferry__Frame *f)
{
    uint8_t *one;
    size_t n;
    ck_assert_int_eq(codec_frame_encode_alloc(f, &one, &n), 0);
    *buf = realloc(*buf, *len + n);
    ck_assert_ptr_nonnull(*buf);
    memcpy(*buf + *len, one, n);
    *len += n;
    free(one);
}

/*
 * Publish "before" to topic, then Subscribe to pattern (START_NEW), in one
 * write: the broker reads both in one go. Then publish "after" (acked). The
 * subscription gets "after" and never "before".
 */
static void check_publish_then_subscribe(const char *topic, const char *pattern, const char *group)
{
    struct rawc c;
    ck_assert_int_eq(rawc_connect(&c, d.port, 0), 0);
    uint8_t *buf = NULL;
    size_t len = 0;

    Ferry__Publish p = FERRY__PUBLISH__INIT;
    p.id = 1;
    p.topic = (char *)topic;
    p.payload.data = (uint8_t *)"before";
    p.payload.len = 6;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PUBLISH;
    f.publish = &p;
    frame_append(&buf, &len, &f);

    Ferry__Subscribe s = FERRY__SUBSCRIBE__INIT;
    s.sub_id = 7;
    s.pattern = (char *)pattern;
    s.queue_group = (char *)(group ? group : "");
    f.body_case = FERRY__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &s;
    frame_append(&buf, &len, &f);
    ck_assert_int_eq(rawc_send_raw(&c, buf, len), 0);
    free(buf);

    Ferry__Frame *r;
    int skipped = 0;
    ck_assert_int_eq(rawc_recv_kind(&c, S_WAIT, FERRY__FRAME__BODY_SUB_ACK, &r, &skipped), 0);
    ck_assert_int_eq(r->sub_ack->sub_id, 7);
    ck_assert_int_eq(r->sub_ack->code, 0);
    ck_assert_int_eq(skipped, 0); /* no Deliver before the SubAck */

    ck_assert_int_eq(rawc_publish(&c, 2, topic, "after", 5, 1), 0);
    /* The PubAck and the Deliver of "after" come in either order; before
     * them, nothing else may arrive. */
    int has_ack = 0, has_after = 0;
    while (!(has_ack && has_after)) {
        ck_assert_int_eq(rawc_recv(&c, S_WAIT, &r), 0);
        if (r->body_case == FERRY__FRAME__BODY_PUB_ACK) {
            ck_assert_int_eq(r->pub_ack->id, 2);
            ck_assert_int_eq(r->pub_ack->code, 0);
            has_ack = 1;
            continue;
        }
        ck_assert_int_eq(r->body_case, FERRY__FRAME__BODY_DELIVER);
        ck_assert_msg(r->deliver->payload.len == 5 &&
                          memcmp(r->deliver->payload.data, "after", 5) == 0,
                      "%s on %s: the subscription got '%.*s', published before it", pattern, topic,
                      (int)r->deliver->payload.len, (const char *)r->deliver->payload.data);
        has_after = 1;
    }
    /* A Ping round trip: nothing else was queued for us. */
    ck_assert_int_eq(rawc_ping(&c, 99, S_WAIT), 0);
    rawc_close(&c);
}

START_TEST(test_publish_before_new_subscribe_not_delivered)
{
    /* Many rounds: the race it closes is between the store writer and the
     * workers, and one round may pass by luck. */
    for (int i = 0; i < 30; i++) {
        char topic[64];
        snprintf(topic, sizeof(topic), "gap.t%d", i);
        check_publish_then_subscribe(topic, topic, NULL); /* stored, exact */
        snprintf(topic, sizeof(topic), "gap.w%d.x", i);
        check_publish_then_subscribe(topic, "gap.*.x", NULL); /* stored, wildcard */
        snprintf(topic, sizeof(topic), "gap.g%d", i);
        check_publish_then_subscribe(topic, topic, "workers"); /* stored, queue group */
        snprintf(topic, sizeof(topic), "eph.t%d", i);
        check_publish_then_subscribe(topic, topic, NULL); /* ephemeral */
    }
}
END_TEST

Suite *test_suite(void);

static void add(Suite *s, TCase *t, const TTest *test)
{
    tcase_set_timeout(t, 120);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test);
    suite_add_tcase(s, t);
}

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_consumer_gaps");
    add(s, tcase_create("publish_then_subscribe"), test_publish_before_new_subscribe_not_delivered);
    return s;
}
