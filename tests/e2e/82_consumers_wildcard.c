/*
 * 82_consumers_wildcard.c - wildcard durables (issue 11): one durable name
 * on a pattern keeps one position per matching stored topic, created when
 * it first meets the topic (in the store or live), resumed across client
 * reconnects and kill -9 of the broker, listed under its pattern with its
 * topics, deleted with them; the refusals (per-topic start positions, an
 * Ack without its topic, a second holder); and the seam: with topics
 * created while the durable subscribes, every message of every matching
 * topic arrives exactly once.
 *
 * Every wait is bounded; nothing is synchronised by sleeping.
 */
#include "rawclient.h"
#include "store_e2e.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static struct ferryd_proc d;
static const char *const args[] = {"--ephemeral", "eph.>", NULL};

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(ferryd_start(&d, NULL, args), 0);
}

static void teardown(void)
{
    ferryd_stop(&d);
}

/* A wildcard durable subscription (explicit acks), or the error code. */
static int wsub(ferry_client *c, const char *pattern, const char *name, enum ferry_start start,
                int64_t arg, ferry_sub **out)
{
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_durable(so, name), 0);
    ck_assert_int_eq(ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT), 0);
    ck_assert_int_eq(ferry_sub_options_set_start(so, start, arg), 0);
    ck_assert_int_eq(ferry_sub_options_set_queue_max(so, 1u << 20), 0);
    int rc = ferry_subscribe(c, pattern, so, NULL, NULL, S_WAIT, out);
    ferry_sub_options_destroy(so);
    return rc;
}

/* As wsub, expecting success: retries (bounded) while the broker has not yet
 * seen the previous holder's connection close (FERRY_EDURABLEINUSE). */
static void wsub_ok(ferry_client *c, const char *pattern, const char *name, enum ferry_start start,
                    int64_t arg, ferry_sub **out)
{
    int64_t end = s_now_ms() + S_WAIT;
    int rc;
    while ((rc = wsub(c, pattern, name, start, arg, out)) == FERRY_EDURABLEINUSE &&
           s_now_ms() < end) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL); /* poll interval, not a synchronisation */
    }
    ck_assert_msg(rc == 0, "durable subscribe %s/%s: %s", pattern, name, ferry_strerror(rc));
}

/* One received message: topic, sequence, attempt, payload. */
struct got {
    char topic[64];
    uint64_t seq;
    uint32_t attempt;
    char text[64];
};

/* Receive one message (or fail); ack it when ack. */
static void next(ferry_sub *s, int ack, struct got *g)
{
    ferry_msg *m;
    int rc = ferry_sub_next(s, S_WAIT, &m);
    ck_assert_msg(rc == 0, "next message: %s", ferry_strerror(rc));
    snprintf(g->topic, sizeof(g->topic), "%s", ferry_msg_topic(m));
    g->seq = ferry_msg_sequence(m);
    g->attempt = ferry_msg_attempt(m);
    size_t len;
    const char *p = ferry_msg_data(m, &len);
    snprintf(g->text, sizeof(g->text), "%.*s", (int)len, p);
    if (ack) {
        ck_assert_int_eq(ferry_msg_ack(m, FERRY_ACK), 0);
    }
    ferry_msg_destroy(m);
}

/* Receive n messages into g[] and sort them by text (arrival order across
 * topics is not defined; within a topic it is checked by the caller). */
static int got_cmp(const void *a, const void *b)
{
    return strcmp(((const struct got *)a)->text, ((const struct got *)b)->text);
}

static void next_n(ferry_sub *s, int ack, struct got *g, int n)
{
    uint64_t last[8] = {0};
    char topics[8][64] = {{0}};
    for (int i = 0; i < n; i++) {
        next(s, ack, &g[i]);
        /* In order within each topic. */
        int k = 0;
        while (k < 8 && topics[k][0] && strcmp(topics[k], g[i].topic) != 0) {
            k++;
        }
        ck_assert_int_lt(k, 8);
        memcpy(topics[k], g[i].topic, sizeof(topics[k])); /* same size */
        ck_assert_msg(g[i].seq > last[k], "%s: sequence %llu after %llu", g[i].topic,
                      (unsigned long long)g[i].seq, (unsigned long long)last[k]);
        last[k] = g[i].seq;
    }
    qsort(g, (size_t)n, sizeof(*g), got_cmp);
}

static void expect_texts(const struct got *g, int n, const char *const *want)
{
    for (int i = 0; i < n; i++) {
        ck_assert_msg(strcmp(g[i].text, want[i]) == 0, "message %d: got '%s' (%s #%llu), want '%s'",
                      i, g[i].text, g[i].topic, (unsigned long long)g[i].seq, want[i]);
    }
}

/* The listing of durables named name: the wildcard durable's line and its
 * positions. Returns how many entries; *root_pending and the positions'
 * topics (sorted, joined by spaces) for the caller to check. */
static size_t listing(ferry_client *c, const char *name, uint64_t *root_pending, char *topics,
                      size_t cap)
{
    ferry_consumer_info *v = NULL;
    size_t n = 0;
    ck_assert_int_eq(ferry_admin_consumers(c, NULL, 0, S_WAIT, &v, &n), 0);
    size_t k = 0, used = 0;
    topics[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].name, name) != 0) {
            continue;
        }
        k++;
        if (v[i].pattern[0] == '\0') {
            *root_pending = v[i].pending;
            ck_assert_uint_eq(v[i].ack_floor, 0);
            ck_assert_uint_eq(v[i].next_seq, 0);
        } else {
            used +=
                (size_t)snprintf(topics + used, cap - used, "%s%s", used ? " " : "", v[i].topic);
        }
    }
    ferry_free(v);
    return k;
}

START_TEST(test_positions_per_topic_resume)
{
    ferry_client *c = s_client(&d, 0);
    s_pub(c, "orders.eu.created", "eu1");
    s_pub(c, "orders.eu.created", "eu2");
    s_pub(c, "orders.eu.created", "eu3");
    s_pub(c, "orders.us.created", "us1");
    s_pub(c, "orders.us.created", "us2");
    s_pub(c, "orders.eu.deleted", "deleted"); /* does not match */
    s_pub(c, "eph.orders.x", "ephemeral");

    ferry_sub *s;
    wsub_ok(c, "orders.*.created", "billing", FERRY_START_ALL, 0, &s);
    struct got g[8];
    next_n(s, 0, g, 5); /* not acked */
    expect_texts(g, 5, (const char *const[]){"eu1", "eu2", "eu3", "us1", "us2"});
    ck_assert_uint_eq(g[0].attempt, 1);
    s_no_more(s, 200);
    s_close(c);

    c = s_client(&d, 0);
    wsub_ok(c, "orders.*.created", "billing", FERRY_START_ALL, 0, &s);
    next_n(s, 0, g, 5); /* everything again: nothing was acked */
    for (int i = 0; i < 5; i++) {
        ck_assert_uint_eq(g[i].attempt, 2);
    }
    s_close(c);

    c = s_client(&d, 0);
    wsub_ok(c, "orders.*.created", "billing", FERRY_START_NEW, 0, &s);
    /* Acks name their topic (libferry sends it): eu's sequences 1..3 and
     * us's 1..2 are told apart. */
    for (int i = 0; i < 5; i++) {
        ferry_msg *m;
        ck_assert_int_eq(ferry_sub_next(s, S_WAIT, &m), 0);
        ck_assert_uint_eq(ferry_msg_attempt(m), 3);
        if (strncmp(ferry_msg_topic(m), "orders.eu.", 10) == 0) {
            ck_assert_int_eq(ferry_msg_ack(m, FERRY_ACK), 0);
        }
        ferry_msg_destroy(m);
    }
    ck_assert_int_eq(ferry_flush(c, S_WAIT), 0);
    s_close(c);

    /* A topic created since, and more on a known one. */
    c = s_client(&d, 0);
    s_pub(c, "orders.asia.created", "asia1");
    s_pub(c, "orders.eu.created", "eu4");
    wsub_ok(c, "orders.*.created", "billing", FERRY_START_ALL, 0, &s);
    next_n(s, 1, g, 4);
    expect_texts(g, 4, (const char *const[]){"asia1", "eu4", "us1", "us2"});
    ck_assert_uint_eq(g[0].attempt, 1);
    ck_assert_uint_eq(g[2].attempt, 4);
    s_no_more(s, 200);
    ck_assert_int_eq(ferry_flush(c, S_WAIT), 0);

    uint64_t pending = 99;
    char topics[256];
    ck_assert_uint_eq(listing(c, "billing", &pending, topics, sizeof(topics)), 4);
    ck_assert_uint_eq(pending, 0);
    ck_assert_str_eq(topics, "orders.asia.created orders.eu.created orders.us.created");

    /* Live: a new topic while it is held. */
    s_pub(c, "orders.latam.created", "latam1");
    next(s, 1, &g[0]);
    ck_assert_str_eq(g[0].text, "latam1");
    ck_assert_str_eq(g[0].topic, "orders.latam.created");
    s_close(c);
}
END_TEST

START_TEST(test_new_starts_at_creation)
{
    ferry_client *c = s_client(&d, 0);
    s_pub(c, "w.a.x", "old");
    ferry_sub *s;
    wsub_ok(c, "w.*.x", "fresh", FERRY_START_NEW, 0, &s);
    s_pub(c, "w.a.x", "a-new");
    s_pub(c, "w.b.x", "b-new"); /* a topic created after the durable */
    struct got g[2];
    next_n(s, 1, g, 2);
    expect_texts(g, 2, (const char *const[]){"a-new", "b-new"});
    ck_assert_int_eq(ferry_flush(c, S_WAIT), 0);
    s_close(c);

    /* Both positions are kept: a topic published while nobody held the
     * durable, and one it never met, come with the next holder. */
    c = s_client(&d, 0);
    s_pub(c, "w.a.x", "a-away");
    s_pub(c, "w.c.x", "c-away");
    wsub_ok(c, "w.*.x", "fresh", FERRY_START_NEW, 0, &s);
    next_n(s, 1, g, 2);
    expect_texts(g, 2, (const char *const[]){"a-away", "c-away"});
    s_no_more(s, 200);
    s_close(c);
}
END_TEST

START_TEST(test_survives_kill9)
{
    ferry_client *c = s_client(&d, 0);
    for (int i = 1; i <= 20; i++) {
        char text[16];
        snprintf(text, sizeof(text), "k%02d", i);
        s_pub(c, i % 2 ? "kill.odd.t" : "kill.even.t", text);
    }
    ferry_sub *s;
    wsub_ok(c, "kill.*.t", "k9", FERRY_START_ALL, 0, &s);
    /* Ack the first 12 that come, confirm, then take the rest unacked. */
    struct got g[20];
    for (int i = 0; i < 20; i++) {
        next(s, i < 12, &g[i]);
        if (i == 11) {
            ck_assert_int_eq(ferry_flush(c, S_WAIT), 0);
        }
    }
    char acked[12][8];
    for (int i = 0; i < 12; i++) {
        snprintf(acked[i], sizeof(acked[i]), "%s", g[i].text);
    }
    ck_assert_int_eq(ferryd_kill9(&d), 0);
    ferry_client_destroy(c);
    ck_assert_int_eq(ferryd_restart(&d, args), 0);

    c = s_client(&d, 0);
    wsub_ok(c, "kill.*.t", "k9", FERRY_START_ALL, 0, &s);
    next_n(s, 1, g, 8);
    for (int i = 0; i < 8; i++) {
        ck_assert_uint_eq(g[i].attempt, 2);
        for (int k = 0; k < 12; k++) {
            ck_assert_msg(strcmp(g[i].text, acked[k]) != 0, "%s came again after its ack",
                          g[i].text);
        }
    }
    s_no_more(s, 300);
    ck_assert_int_eq(ferry_flush(c, S_WAIT), 0);
    s_close(c);

    char dir[512], out[4096];
    snprintf(dir, sizeof(dir), "%s", d.data_dir);
    ck_assert_int_eq(ferryd_kill9(&d), 0);
    int rc = s_verify(dir, out, sizeof(out));
    ck_assert_msg(rc == 0 && strstr(out, "3 consumers"), "verify: %d %s", rc, out);
    ck_assert_int_eq(ferryd_restart(&d, args), 0);
}
END_TEST

START_TEST(test_refusals)
{
    ferry_client *c = s_client(&d, 0);
    s_pub(c, "ref.a.x", "a");
    ferry_sub *s;
    ck_assert_int_eq(wsub(c, "ref.*.x", "r", FERRY_START_SEQUENCE, 1, &s), FERRY_EINVAL);
    ck_assert_int_eq(wsub(c, "ref.*.x", "r", FERRY_START_LAST, 1, &s), FERRY_EINVAL);
    wsub_ok(c, "ref.*.x", "r", FERRY_START_ALL, 0, &s);
    ferry_client *c2 = s_client(&d, 0);
    ferry_sub *s2;
    ck_assert_int_eq(wsub(c2, "ref.*.x", "r", FERRY_START_ALL, 0, &s2), FERRY_EDURABLEINUSE);
    s_close(c2);
    struct got g;
    next(s, 0, &g);
    ck_assert_str_eq(g.text, "a");
    s_close(c);

    /* An Ack without its topic: a non-fatal error naming the subscription. */
    struct rawc r;
    ck_assert_int_eq(rawc_connect(&r, d.port, 0), 0);
    Ferry__Subscribe sb = FERRY__SUBSCRIBE__INIT;
    sb.sub_id = 5;
    sb.pattern = (char *)"ref.*.x";
    sb.durable_name = (char *)"r";
    sb.ack_mode = FERRY__ACK_MODE__ACK_EXPLICIT;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &sb;
    ck_assert_int_eq(rawc_send(&r, &f), 0);
    Ferry__Frame *rf;
    ck_assert_int_eq(rawc_recv_kind(&r, S_WAIT, FERRY__FRAME__BODY_SUB_ACK, &rf, NULL), 0);
    ck_assert_int_eq(rf->sub_ack->code, 0);
    ck_assert_int_eq(rawc_recv_kind(&r, S_WAIT, FERRY__FRAME__BODY_DELIVER, &rf, NULL), 0);
    uint64_t seq = rf->deliver->sequence;
    Ferry__Ack a = FERRY__ACK__INIT;
    a.sub_id = 5;
    a.sequence = seq;
    f.body_case = FERRY__FRAME__BODY_ACK;
    f.ack = &a;
    ck_assert_int_eq(rawc_send(&r, &f), 0);
    ck_assert_int_eq(rawc_recv_kind(&r, S_WAIT, FERRY__FRAME__BODY_ERROR, &rf, NULL), 0);
    ck_assert_int_eq(rf->error->code, FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT);
    ck_assert_int_eq(rf->error->ref_id, 5);
    ck_assert(!rf->error->is_fatal);
    /* With its topic it is taken: the next holder does not get it again. */
    a.topic = (char *)"ref.a.x";
    ck_assert_int_eq(rawc_send(&r, &f), 0);
    int skipped = -1;
    ck_assert_int_eq(rawc_ping_alone(&r, 9, S_WAIT, &skipped), 0);
    ck_assert_int_eq(skipped, 0);
    rawc_close(&r);

    c = s_client(&d, 0);
    wsub_ok(c, "ref.*.x", "r", FERRY_START_ALL, 0, &s);
    s_no_more(s, 300);
    s_close(c);
}
END_TEST

START_TEST(test_delete_with_positions)
{
    ferry_client *c = s_client(&d, 0);
    s_pub(c, "del.a.x", "a");
    s_pub(c, "del.b.x", "b");
    ferry_sub *s;
    wsub_ok(c, "del.*.x", "gone", FERRY_START_ALL, 0, &s);
    struct got g[2];
    next_n(s, 1, g, 2);
    ck_assert_int_eq(ferry_flush(c, S_WAIT), 0);

    ferry_client *adm = s_client(&d, 0);
    ck_assert_int_eq(ferry_admin_consumer_delete(adm, "del.*.x", "gone", 0, S_WAIT),
                     FERRY_EDURABLEINUSE);
    ck_assert_int_eq(ferry_admin_consumer_delete(adm, "del.*.x", "gone", 1, S_WAIT), 0);
    ferry_msg *m;
    ck_assert_int_eq(ferry_sub_next(s, S_WAIT, &m), FERRY_ECONSUMERDELETED);
    s_close(c);
    uint64_t pending;
    char topics[128];
    ck_assert_uint_eq(listing(adm, "gone", &pending, topics, sizeof(topics)), 0);

    /* The name starts afresh: everything again, from attempt 1. */
    c = s_client(&d, 0);
    wsub_ok(c, "del.*.x", "gone", FERRY_START_ALL, 0, &s);
    next_n(s, 1, g, 2);
    expect_texts(g, 2, (const char *const[]){"a", "b"});
    ck_assert_uint_eq(g[0].attempt, 1);
    ck_assert_int_eq(ferry_flush(c, S_WAIT), 0);
    s_close(c);

    /* Deleted while only in the store (after a restart; the flush above
     * confirmed the acks): positions too. */
    ferry_client_destroy(adm);
    ck_assert_int_eq(ferryd_kill9(&d), 0);
    ck_assert_int_eq(ferryd_restart(&d, args), 0);
    adm = s_client(&d, 0);
    ck_assert_uint_eq(listing(adm, "gone", &pending, topics, sizeof(topics)), 3);
    ck_assert_str_eq(topics, "del.a.x del.b.x");
    ck_assert_int_eq(ferry_admin_consumer_delete(adm, "del.*.x", "gone", 0, S_WAIT), 0);
    ck_assert_uint_eq(listing(adm, "gone", &pending, topics, sizeof(topics)), 0);
    s_close(adm);
}
END_TEST

/* The seam: topics are created and published while the durable
 * subscribes; every message of every matching topic arrives exactly once. */
struct seam_pub {
    int port;
    int n_topics, per_topic;
    atomic_int is_started;
};

static void *seam_publisher(void *arg)
{
    struct seam_pub *p = arg;
    struct ferryd_proc dp = {.port = p->port};
    ferry_client *c = s_client(&dp, 64);
    atomic_store(&p->is_started, 1);
    for (int k = 0; k < p->per_topic; k++) {
        for (int i = 0; i < p->n_topics; i++) {
            char topic[32], text[32];
            snprintf(topic, sizeof(topic), "seam.t%02d.x", i);
            snprintf(text, sizeof(text), "%02d-%04d", i, k);
            s_pub(c, topic, text);
        }
    }
    s_close(c);
    return NULL;
}

START_TEST(test_seam_exactly_once)
{
    enum { TOPICS = 12, PER = 40 };
    struct seam_pub p = {.port = d.port, .n_topics = TOPICS, .per_topic = PER};
    atomic_init(&p.is_started, 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, seam_publisher, &p), 0);
    int64_t end = s_now_ms() + S_WAIT;
    while (!atomic_load(&p.is_started) && s_now_ms() < end) {
        sched_yield();
    }
    ferry_client *c = s_client(&d, 0);
    ferry_sub *s;
    wsub_ok(c, "seam.*.x", "seam", FERRY_START_ALL, 0, &s);
    static unsigned char seen[TOPICS][PER];
    memset(seen, 0, sizeof(seen));
    for (int n = 0; n < TOPICS * PER; n++) {
        struct got g;
        next(s, 1, &g);
        int i, k;
        ck_assert_int_eq(sscanf(g.text, "%d-%d", &i, &k), 2);
        ck_assert_msg(!seen[i][k], "%s came twice", g.text);
        ck_assert_uint_eq(g.seq, (uint64_t)k + 1); /* in order, no gap */
        seen[i][k] = 1;
    }
    pthread_join(th, NULL);
    s_no_more(s, 300);
    s_close(c);
}
END_TEST

Suite *test_suite(void);

static void add(Suite *s, TCase *t, const TTest *test)
{
    s_add_case(s, t, test, setup, teardown);
}

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_consumers_wildcard");
    add(s, tcase_create("positions_per_topic"), test_positions_per_topic_resume);
    add(s, tcase_create("new_starts_at_creation"), test_new_starts_at_creation);
    add(s, tcase_create("survives_kill9"), test_survives_kill9);
    add(s, tcase_create("refusals"), test_refusals);
    add(s, tcase_create("delete_with_positions"), test_delete_with_positions);
    add(s, tcase_create("seam_exactly_once"), test_seam_exactly_once);
    return s;
}
