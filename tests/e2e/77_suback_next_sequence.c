/*
 * 77_suback_next_sequence.c - SubAck.next_sequence on the wire: the first
 * sequence a subscription to one stored topic (not durable, no queue group)
 * gets, for each start position; 0 wherever it does not apply (wildcards,
 * queue groups, durables, ephemeral topics, refusals, Unsubscribe answers).
 */
#include "e2e_util.h"

#include <signal.h>

Suite *test_suite(void);

struct sub_req {
    const char *pattern;
    const char *group;
    const char *durable;
    Ferry__StartPosition start;
    uint64_t arg; /* start_sequence or start_last */
};

/* Subscribe and return the SubAck's next_sequence; the SubAck's code must
 * be want_code. Deliveries before it are skipped. */
static uint64_t subscribe(struct rawc *c, uint64_t sub_id, const struct sub_req *r,
                          Ferry__ErrorCode want_code)
{
    Ferry__Subscribe m = FERRY__SUBSCRIBE__INIT;
    m.sub_id = sub_id;
    m.pattern = (char *)r->pattern;
    m.queue_group = (char *)(r->group ? r->group : "");
    m.durable_name = (char *)(r->durable ? r->durable : "");
    m.ack_mode = r->durable ? FERRY__ACK_MODE__ACK_EXPLICIT : FERRY__ACK_MODE__ACK_NONE;
    m.start = r->start;
    if (r->start == FERRY__START_POSITION__START_SEQUENCE) {
        m.start_sequence = r->arg;
    } else if (r->start == FERRY__START_POSITION__START_LAST) {
        m.start_last = r->arg;
    }
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &m;
    ck_assert_int_eq(rawc_send(c, &f), 0);
    Ferry__Frame *a;
    ck_assert_int_eq(rawc_recv_kind(c, T_WAIT, FERRY__FRAME__BODY_SUB_ACK, &a, NULL), 0);
    ck_assert_uint_eq(a->sub_ack->sub_id, sub_id);
    ck_assert_msg(a->sub_ack->code == want_code, "%s: SubAck code %d (%s), expected %d", r->pattern,
                  a->sub_ack->code, a->sub_ack->text, want_code);
    return a->sub_ack->next_sequence;
}

static uint64_t next_seq(struct rawc *c, uint64_t sub_id, const struct sub_req *r)
{
    return subscribe(c, sub_id, r, FERRY__ERROR_CODE__ERROR_NONE);
}

static void publish_acked(struct rawc *c, const char *topic, uint64_t want_seq)
{
    ck_assert_int_eq(rawc_publish(c, want_seq, topic, "x", 1, 1), 0);
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(c, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &f, NULL), 0);
    ck_assert_int_eq(f->pub_ack->code, 0);
    ck_assert_uint_eq(f->pub_ack->sequence, want_seq);
}

START_TEST(test_next_sequence_per_start_position)
{
    signal(SIGPIPE, SIG_IGN);
    struct ferryd_proc d;
    START(&d, "--ephemeral", "eph.>", NULL);
    struct rawc p, c;
    CONNECT(&p, d.port);
    CONNECT(&c, d.port);
    for (uint64_t i = 1; i <= 5; i++) {
        publish_acked(&p, "ns.a", i);
    }
    const Ferry__StartPosition NEW = FERRY__START_POSITION__START_NEW;
    /* One stored topic: where each start position begins. */
    ck_assert_uint_eq(next_seq(&c, 1, &(struct sub_req){"ns.a", NULL, NULL, NEW, 0}), 6);
    ck_assert_uint_eq(next_seq(&c, 2, &(struct sub_req){"ns.fresh", NULL, NULL, NEW, 0}), 1);
    ck_assert_uint_eq(
        next_seq(&c, 3, &(struct sub_req){"ns.a", NULL, NULL, FERRY__START_POSITION__START_ALL, 0}),
        1);
    ck_assert_uint_eq(
        next_seq(&c, 4,
                 &(struct sub_req){"ns.a", NULL, NULL, FERRY__START_POSITION__START_SEQUENCE, 3}),
        3);
    ck_assert_uint_eq(
        next_seq(&c, 5,
                 &(struct sub_req){"ns.a", NULL, NULL, FERRY__START_POSITION__START_LAST, 2}),
        4);
    /* Not applicable: 0. */
    ck_assert_uint_eq(next_seq(&c, 6, &(struct sub_req){"ns.*", NULL, NULL, NEW, 0}), 0);
    ck_assert_uint_eq(next_seq(&c, 7, &(struct sub_req){"ns.>", NULL, NULL, NEW, 0}), 0);
    ck_assert_uint_eq(next_seq(&c, 8, &(struct sub_req){"ns.a", "grp", NULL, NEW, 0}), 0);
    ck_assert_uint_eq(next_seq(&c, 9, &(struct sub_req){"ns.a", NULL, "dur", NEW, 0}), 0);
    ck_assert_uint_eq(next_seq(&c, 10, &(struct sub_req){"eph.a", NULL, NULL, NEW, 0}), 0);
    ck_assert_uint_eq(subscribe(&c, 11, &(struct sub_req){"ns..a", NULL, NULL, NEW, 0},
                                FERRY__ERROR_CODE__ERROR_INVALID_PATTERN),
                      0);
    Ferry__Unsubscribe u = FERRY__UNSUBSCRIBE__INIT;
    u.sub_id = 1;
    Ferry__Frame uf = FERRY__FRAME__INIT;
    uf.body_case = FERRY__FRAME__BODY_UNSUBSCRIBE;
    uf.unsubscribe = &u;
    ck_assert_int_eq(rawc_send(&c, &uf), 0);
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_SUB_ACK, &f, NULL), 0);
    ck_assert_uint_eq(f->sub_ack->sub_id, 1);
    ck_assert_uint_eq(f->sub_ack->next_sequence, 0);

    /* The promise: a new-only subscriber gets next_sequence first. */
    struct rawc s;
    CONNECT(&s, d.port);
    ck_assert_uint_eq(next_seq(&s, 1, &(struct sub_req){"ns.a", NULL, NULL, NEW, 0}), 6);
    publish_acked(&p, "ns.a", 6);
    Ferry__Deliver *dv = recv_deliver(&s);
    ck_assert_uint_eq(dv->sequence, 6);
    rawc_close(&s);
    rawc_close(&c);
    rawc_close(&p);
    STOP(&d);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("suback_next_sequence");
    TCase *t = tcase_create("next_sequence");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_next_sequence_per_start_position);
    suite_add_tcase(s, t);
    return s;
}
