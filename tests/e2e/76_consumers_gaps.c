/*
 * 76_consumers_gaps.c - consumer semantics at the edges (issue 11): a
 * Publish sent just before a START_NEW Subscribe on the same connection does
 * not reach the new subscription, on stored and ephemeral topics, for exact,
 * wildcard and queue-group subscriptions; explicit acks on subscriptions
 * without a durable: redelivery after ack_wait with attempt counts,
 * max_in_flight, max_deliver, queue groups sharing the acks, and the
 * refusals where no redelivery is possible.
 *
 * Every wait is bounded; nothing is synchronised by sleeping.
 */
#include "rawclient.h"
#include "store_e2e.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* A Ping round trip during which nothing but the Pong arrives: nothing
 * else was queued for c. */
static void ping_nothing_else(struct rawc *c, uint64_t nonce)
{
    int skipped = -1;
    ck_assert_int_eq(rawc_ping_alone(c, nonce, S_WAIT, &skipped), 0);
    ck_assert_int_eq(skipped, 0);
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
    ping_nothing_else(&c, 99);
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

struct aopts {
    const char *group;
    uint32_t max_in_flight, ack_wait_ms, max_deliver;
};

/* A subscription with explicit acks and no durable. */
static int asub_rc(ferry_client *c, const char *topic, const struct aopts *o, ferry_sub **out)
{
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT), 0);
    ck_assert_int_eq(ferry_sub_options_set_queue_max(so, 1u << 20), 0);
    if (o->group) {
        ck_assert_int_eq(ferry_sub_options_set_queue_group(so, o->group), 0);
    }
    if (o->max_in_flight) {
        ck_assert_int_eq(ferry_sub_options_set_max_in_flight(so, o->max_in_flight), 0);
    }
    if (o->ack_wait_ms) {
        ck_assert_int_eq(ferry_sub_options_set_ack_wait_ms(so, o->ack_wait_ms), 0);
    }
    if (o->max_deliver) {
        ck_assert_int_eq(ferry_sub_options_set_max_deliver(so, o->max_deliver), 0);
    }
    int rc = ferry_subscribe(c, topic, so, NULL, NULL, S_WAIT, out);
    ferry_sub_options_destroy(so);
    return rc;
}

static ferry_sub *asub(ferry_client *c, const char *topic, const struct aopts *o)
{
    ferry_sub *s = NULL;
    int rc = asub_rc(c, topic, o, &s);
    ck_assert_msg(rc == 0, "subscribe %s with acks: %s", topic, ferry_strerror(rc));
    return s;
}

static ferry_msg *next(ferry_sub *s)
{
    ferry_msg *m;
    int rc = ferry_sub_next(s, S_WAIT, &m);
    ck_assert_msg(rc == 0, "next message: %s", ferry_strerror(rc));
    return m;
}

static void ack(ferry_msg *m)
{
    int rc = ferry_msg_ack(m, FERRY_ACK);
    ck_assert_msg(rc == 0, "ack: %s", ferry_strerror(rc));
}

START_TEST(test_acks_without_durable_redeliver_after_ack_wait)
{
    ferry_client *c = s_client(&d, 0);
    struct aopts o = {.ack_wait_ms = 200, .max_deliver = 3};
    ferry_sub *s = asub(c, "ack.r", &o);
    uint64_t s1 = s_pub(c, "ack.r", "one");
    uint64_t s2 = s_pub(c, "ack.r", "two");
    ferry_msg *m = next(s);
    ck_assert_uint_eq(ferry_msg_sequence(m), s1);
    ck_assert_uint_eq(ferry_msg_attempt(m), 1);
    ferry_msg_destroy(m); /* not acked */
    m = next(s);
    ck_assert_uint_eq(ferry_msg_sequence(m), s2);
    ack(m);
    ferry_msg_destroy(m);
    /* "one" again after the ack wait, with its attempt count; "two" never. */
    for (uint32_t a = 2; a <= 3; a++) {
        m = next(s);
        ck_assert_uint_eq(ferry_msg_sequence(m), s1);
        ck_assert_uint_eq(ferry_msg_attempt(m), a);
        ferry_msg_destroy(m);
    }
    /* max_deliver reached: dropped (no dead-letter topic without a durable). */
    s_no_more(s, 700);
    uint64_t s3 = s_pub(c, "ack.r", "three");
    m = next(s);
    ck_assert_uint_eq(ferry_msg_sequence(m), s3);
    ack(m);
    ferry_msg_destroy(m);
    s_no_more(s, 500);
    s_close(c);
}
END_TEST

START_TEST(test_acks_without_durable_max_in_flight)
{
    ferry_client *c = s_client(&d, 0);
    struct aopts o = {.max_in_flight = 3, .ack_wait_ms = 60000};
    ferry_sub *s = asub(c, "ack.f", &o);
    uint64_t first = 0;
    for (int i = 0; i < 10; i++) {
        uint64_t seq = s_pub(c, "ack.f", "x");
        first = first ? first : seq;
    }
    ferry_msg *held[3];
    for (int i = 0; i < 3; i++) {
        held[i] = next(s);
        ck_assert_uint_eq(ferry_msg_sequence(held[i]), first + (uint64_t)i);
    }
    s_no_more(s, 400); /* three in flight: nothing more until an ack */
    ack(held[1]);
    ferry_msg *m = next(s);
    ck_assert_uint_eq(ferry_msg_sequence(m), first + 3);
    s_no_more(s, 200);
    ferry_msg_destroy(m);
    for (int i = 0; i < 3; i++) {
        ferry_msg_destroy(held[i]);
    }
    s_close(c);
}
END_TEST

/* A queue group shares its acks: what a member leaves unacked goes to
 * another member after the ack wait; every message goes to one member. */
START_TEST(test_acks_without_durable_queue_group_shares)
{
    ferry_client *a = s_client(&d, 0);
    ferry_client *b = s_client(&d, 0);
    struct aopts o = {.group = "g", .ack_wait_ms = 300, .max_in_flight = 1};
    ferry_sub *sa = asub(a, "ack.g", &o);
    ferry_sub *sb = asub(b, "ack.g", &o);
    ferry_client *p = s_client(&d, 0);
    uint64_t s1 = s_pub(p, "ack.g", "one");
    /* One member gets it (max_in_flight 1 for the group's shared acks). */
    ferry_msg *m = NULL;
    ferry_sub *got = NULL, *other = NULL;
    int64_t end = s_now_ms() + S_WAIT;
    while (m == NULL && s_now_ms() < end) {
        if (ferry_sub_next(sa, 20, &m) == 0) {
            got = sa, other = sb;
        } else if (ferry_sub_next(sb, 20, &m) == 0) {
            got = sb, other = sa;
        }
    }
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(ferry_msg_sequence(m), s1);
    ferry_msg_destroy(m); /* not acked: the holder leaves */
    ferry_unsubscribe(got);
    m = next(other);
    ck_assert_uint_eq(ferry_msg_sequence(m), s1);
    ck_assert_uint_eq(ferry_msg_attempt(m), 2);
    ack(m);
    ferry_msg_destroy(m);
    uint64_t s2 = s_pub(p, "ack.g", "two");
    m = next(other);
    ck_assert_uint_eq(ferry_msg_sequence(m), s2);
    ack(m);
    ferry_msg_destroy(m);
    s_no_more(other, 600);
    s_close(p);
    s_close(b);
    s_close(a);
}
END_TEST

START_TEST(test_acks_without_durable_refused_where_nothing_redelivers)
{
    ferry_client *c = s_client(&d, 0);
    struct aopts o = {0};
    ferry_sub *s = NULL;
    ck_assert_int_eq(asub_rc(c, "ack.*", &o, &s), FERRY_EINVAL);
    ck_assert_int_eq(asub_rc(c, "eph.acks", &o, &s), FERRY_EINVAL);
    s_close(c);
}
END_TEST

/*
 * Dead letters exactly once across kill -9: a durable that never acks, with
 * max_deliver 1 and a short ack wait, dead-letters every message of its
 * topic while the broker is killed at random moments. At the end the
 * dead-letter topic holds each original sequence exactly once (the dead
 * letter and the durable's state that lets its message go are committed in
 * one transaction).
 */
START_TEST(test_dead_letters_exactly_once_across_kill9)
{
    enum { N = 400, ROUNDS = 15 };
    unsigned seed = (unsigned)time(NULL);
    printf("dead letters across kill -9: seed %u\n", seed);
    ferry_client *c = s_client(&d, 0);
    for (int i = 0; i < N; i++) {
        s_pub(c, "dlx.t", "poison");
    }
    s_close(c);
    const char *const args[] = {"--ephemeral", "eph.>", NULL};
    struct aopts o = {.ack_wait_ms = 30, .max_deliver = 1, .max_in_flight = 64};
    for (int round = 0; round <= ROUNDS; round++) {
        ferry_client *k = s_client(&d, 0);
        ferry_sub_options *so;
        ck_assert_int_eq(ferry_sub_options_create(&so), 0);
        ck_assert_int_eq(ferry_sub_options_set_durable(so, "dx"), 0);
        ck_assert_int_eq(ferry_sub_options_set_ack_wait_ms(so, o.ack_wait_ms), 0);
        ck_assert_int_eq(ferry_sub_options_set_max_deliver(so, o.max_deliver), 0);
        ck_assert_int_eq(ferry_sub_options_set_max_in_flight(so, o.max_in_flight), 0);
        ck_assert_int_eq(ferry_sub_options_set_queue_max(so, 1u << 20), 0);
        ck_assert_int_eq(ferry_sub_options_set_start(so, FERRY_START_ALL, 0), 0);
        ferry_sub *s = NULL;
        int rc = ferry_subscribe(k, "dlx.t", so, NULL, NULL, S_WAIT, &s);
        ferry_sub_options_destroy(so);
        ck_assert_msg(rc == 0, "durable subscribe: %s", ferry_strerror(rc));
        if (round == ROUNDS) {
            /* the last round runs to the end: every message dead-lettered */
            ferry_topic_info ti = {0};
            int64_t end = s_now_ms() + S_WAIT;
            while (s_now_ms() < end) {
                rc = ferry_admin_topic_info(k, "$DLQ.dlx.t.dx", S_WAIT, &ti);
                if (rc == 0 && ti.last_seq >= N) {
                    break;
                }
                struct timespec ts = {0, 20 * 1000 * 1000};
                nanosleep(&ts, NULL); /* poll interval */
            }
            ck_assert_msg(ti.last_seq >= N, "only %llu dead letters of %d",
                          (unsigned long long)ti.last_seq, N);
            s_close(k);
            break;
        }
        struct timespec ts = {0, (long)(5 + rand_r(&seed) % 100) * 1000 * 1000};
        nanosleep(&ts, NULL); /* a random moment to crash at: the point of the test */
        ck_assert_int_eq(ferryd_kill9(&d), 0);
        ferry_client_close(k, 0);
        ferry_client_destroy(k);
        ck_assert_int_eq(ferryd_restart(&d, args), 0);
    }
    /* Read the dead-letter topic from the start: each sequence once. */
    c = s_client(&d, 0);
    ferry_sub *all = s_sub(c, "$DLQ.dlx.t.dx", FERRY_START_ALL, 0);
    int seen[N + 1] = {0};
    for (int i = 0; i < N; i++) {
        ferry_msg *m = next(all);
        const char *v = ferry_msg_header(m, "ferry-dlq-sequence");
        ck_assert_ptr_nonnull(v);
        int seq = atoi(v);
        ck_assert_int_ge(seq, 1);
        ck_assert_int_le(seq, N);
        ck_assert_msg(seen[seq] == 0, "sequence %d dead-lettered twice", seq);
        seen[seq] = 1;
        ferry_msg_destroy(m);
    }
    s_no_more(all, 300);
    ferry_topic_info ti;
    ck_assert_int_eq(ferry_admin_topic_info(c, "$DLQ.dlx.t.dx", S_WAIT, &ti), 0);
    ck_assert_uint_eq(ti.last_seq, N);
    s_close(c);
}
END_TEST

/* Which of topics[0..n) t is; fails the test if none. */
static int topic_index(const char *const *topics, int n, const char *t)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(topics[i], t) == 0) {
            return i;
        }
    }
    ck_abort_msg("a message of topic %s", t);
    return -1;
}

/*
 * A queue group member that stops reading, on stored topics (one, or several
 * under a wildcard pattern): it is never disconnected, and the group as a
 * whole gets every message exactly once (what the stalled member could not
 * take, another member, or itself once it reads again, takes from the log).
 */
static void queue_group_lagging(const char *pattern, const char *const *topics, int n_topics)
{
    struct rawc a; /* reads nothing until the publishing is done */
    ck_assert_int_eq(rawc_connect(&a, d.port, 600000), 0); /* silent for long: no keepalive close */
    ck_assert_int_eq(rawc_subscribe(&a, 3, pattern, "g"), 0);
    ferry_client *b = s_client(&d, 0);
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_queue_group(so, "g"), 0);
    ck_assert_int_eq(ferry_sub_options_set_queue_max(so, 1u << 22), 0);
    ferry_sub *sb = NULL;
    ck_assert_int_eq(ferry_subscribe(b, pattern, so, NULL, NULL, S_WAIT, &sb), 0);
    ferry_sub_options_destroy(so);

    ferry_client *p = s_client(&d, 256);
    enum { N = 30000, SIZE = 2048, TOPICS_MAX = 4 };
    ck_assert_int_le(n_topics, TOPICS_MAX);
    static char payload[SIZE];
    memset(payload, 'q', sizeof(payload));
    for (int i = 0; i < N; i++) {
        int rc = ferry_publish(p, topics[i % n_topics], payload, SIZE);
        ck_assert_msg(rc == 0, "publish: %s", ferry_strerror(rc));
    }
    uint64_t last[TOPICS_MAX], total = 0;
    for (int k = 0; k < n_topics; k++) {
        last[k] = s_pub(p, topics[k], "end");
        ck_assert_uint_ge(last[k], N / n_topics + 1);
        total += last[k];
    }

    static uint8_t seen[TOPICS_MAX][N + 2];
    memset(seen, 0, sizeof(seen));
    uint64_t n_seen = 0, from_a = 0;
    int64_t end = s_now_ms() + 3 * S_WAIT;
    while (n_seen < total && s_now_ms() < end) {
        ferry_msg *m;
        while (ferry_sub_next(sb, 0, &m) == 0) {
            int k = topic_index(topics, n_topics, ferry_msg_topic(m));
            uint64_t q = ferry_msg_sequence(m);
            ck_assert_uint_le(q, last[k]);
            ck_assert_msg(seen[k][q] == 0, "%s sequence %llu delivered twice", topics[k],
                          (unsigned long long)q);
            seen[k][q] = 1;
            n_seen++;
            ferry_msg_destroy(m);
        }
        Ferry__Frame *f;
        int rc = rawc_recv(&a, 10, &f);
        if (rc == -ETIMEDOUT) {
            continue;
        }
        ck_assert_msg(rc == 0, "member a: %d (disconnected?)", rc);
        ck_assert_msg(f->body_case == FERRY__FRAME__BODY_DELIVER, "member a got frame %d",
                      (int)f->body_case);
        int k = topic_index(topics, n_topics, f->deliver->topic);
        uint64_t q = f->deliver->sequence;
        ck_assert_uint_le(q, last[k]);
        ck_assert_msg(seen[k][q] == 0, "%s sequence %llu delivered twice", topics[k],
                      (unsigned long long)q);
        seen[k][q] = 1;
        n_seen++;
        from_a++;
    }
    ck_assert_msg(n_seen == total, "the group got %llu of %llu messages (%llu by the stalled one)",
                  (unsigned long long)n_seen, (unsigned long long)total,
                  (unsigned long long)from_a);
    printf("queue group on %s: %llu of %llu messages went to the stalled member\n", pattern,
           (unsigned long long)from_a, (unsigned long long)total);
    ping_nothing_else(&a, 1); /* never disconnected, nothing more for it */
    rawc_close(&a);
    s_close(p);
    s_close(b);
}

START_TEST(test_queue_group_member_lagging_catches_up_from_log)
{
    queue_group_lagging("qg.t", (const char *const[]){"qg.t"}, 1);
}
END_TEST

START_TEST(test_wildcard_queue_group_member_lagging_catches_up_from_log)
{
    queue_group_lagging("qgw.*.t", (const char *const[]){"qgw.a.t", "qgw.b.t", "qgw.c.t"}, 3);
}
END_TEST

/*
 * An Ack sent on a connection that is lost before a flush confirmed it
 * cannot be confirmed: the next ferry_flush() says so (FERRY_EDISCONNECTED,
 * once), and the durable indeed delivers the message again.
 */
START_TEST(test_flush_reports_acks_lost_with_connection)
{
    ferry_options *o;
    ck_assert_int_eq(ferry_options_create(&o), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", d.port);
    ck_assert_int_eq(ferry_options_set_servers(o, addr), 0);
    ck_assert_int_eq(ferry_options_set_reconnect(o, 1, 0, 20, 200, 0), 0);
    ferry_client *k;
    ck_assert_int_eq(ferry_client_create(o, &k), 0);
    ferry_options_destroy(o);
    ck_assert_int_eq(ferry_client_start_thread(k), 0);
    ck_assert_int_eq(ferry_client_connect(k, S_WAIT), 0);
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_durable(so, "lost"), 0);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(k, "lost.t", so, NULL, NULL, S_WAIT, &s), 0);
    ferry_sub_options_destroy(so);
    ferry_client *p = s_client(&d, 0);
    uint64_t seq = s_pub(p, "lost.t", "one");
    ferry_client_close(p, 0);
    ferry_client_destroy(p);
    ferry_msg *m = next(s);
    ck_assert_uint_eq(ferry_msg_sequence(m), seq);
    /* The broker stops before it can read the Ack, then dies. */
    ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
    ack(m);
    ferry_msg_destroy(m);
    ck_assert_int_eq(ferryd_kill9(&d), 0);
    ck_assert_int_eq(
        ferryd_restart_same_port(&d, (const char *const[]){"--ephemeral", "eph.>", NULL}), 0);
    int rc = ferry_flush(k, S_WAIT);
    ck_assert_msg(rc == FERRY_EDISCONNECTED, "flush: %s", ferry_strerror(rc));
    ck_assert_int_eq(ferry_flush(k, S_WAIT), 0); /* said once */
    m = next(s); /* the unconfirmed ack did not count: it comes again */
    ck_assert_uint_eq(ferry_msg_sequence(m), seq);
    ack(m);
    ferry_msg_destroy(m);
    ck_assert_int_eq(ferry_flush(k, S_WAIT), 0);
    ck_assert_int_eq(ferry_client_close(k, S_WAIT), 0);
    ferry_client_destroy(k);
}
END_TEST

Suite *test_suite(void);

static void add(Suite *s, TCase *t, const TTest *test)
{
    s_add_case(s, t, test, setup, teardown);
}

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_consumer_gaps");
    add(s, tcase_create("publish_then_subscribe"), test_publish_before_new_subscribe_not_delivered);
    add(s, tcase_create("acks_redelivery"), test_acks_without_durable_redeliver_after_ack_wait);
    add(s, tcase_create("acks_max_in_flight"), test_acks_without_durable_max_in_flight);
    add(s, tcase_create("acks_queue_group"), test_acks_without_durable_queue_group_shares);
    add(s, tcase_create("dlq_exactly_once"), test_dead_letters_exactly_once_across_kill9);
    add(s, tcase_create("queue_group_lagging"),
        test_queue_group_member_lagging_catches_up_from_log);
    add(s, tcase_create("wildcard_queue_group_lagging"),
        test_wildcard_queue_group_member_lagging_catches_up_from_log);
    add(s, tcase_create("flush_lost_acks"), test_flush_reports_acks_lost_with_connection);
    add(s, tcase_create("acks_refused"),
        test_acks_without_durable_refused_where_nothing_redelivers);
    return s;
}
