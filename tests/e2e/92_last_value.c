/*
 * 92_last_value.c - last-value topics end to end (ferryd --last-value):
 * a START_LAST_PER_KEY subscriber gets the current value of every key in
 * sequence order (overwritten values and deleted keys left out), then live
 * messages, tombstones included; the same after a kill -9; retention keeps
 * the newest message of each key; the refusals; and `ferry sub
 * --last-per-key` printing the values.
 */
#include "cli_e2e.h"
#include "e2e_util.h"
#include "store_e2e.h"

static struct ferryd_proc *d = &broker; /* cli_e2e.c's, so that the CLI finds it */

static void teardown(void)
{
    broker_down();
}

static void start(const char *const *extra)
{
    const char *const base[] = {"--last-value", "lv.>", NULL};
    ck_assert_int_eq(ferryd_start(d, NULL, extra ? extra : base), 0);
    snprintf(server, sizeof(server), "127.0.0.1:%d", d->port);
}

/* Publish key (NULL: none) = text ("": a tombstone) with an ack; the
 * sequence. */
static uint64_t kpub(ferry_client *c, const char *topic, const char *key, const char *text)
{
    ferry_pub m = {.topic = topic,
                   .payload = text,
                   .payload_len = strlen(text),
                   .key = key,
                   .key_len = key ? strlen(key) : 0};
    uint64_t seq = 0;
    int rc = ferry_publish_sync(c, &m, S_WAIT, &seq);
    ck_assert_msg(rc == 0, "publish to %s: %s", topic, ferry_strerror(rc));
    return seq;
}

/* The next message is (seq, key, text). */
static void expect(ferry_sub *s, uint64_t seq, const char *key, const char *text)
{
    ferry_msg *m;
    int rc = ferry_sub_next(s, S_WAIT, &m);
    ck_assert_msg(rc == 0, "waiting for sequence %llu: %s", (unsigned long long)seq,
                  ferry_strerror(rc));
    ck_assert_uint_eq(ferry_msg_sequence(m), seq);
    size_t len, klen;
    const void *p = ferry_msg_data(m, &len);
    const void *k = ferry_msg_key(m, &klen);
    ck_assert_uint_eq(len, strlen(text));
    ck_assert_int_eq(memcmp(p, text, len), 0);
    ck_assert_uint_eq(klen, strlen(key));
    ck_assert_int_eq(memcmp(k, key, klen), 0);
    ferry_msg_destroy(m);
}

START_TEST(test_current_values_then_live_and_after_kill9)
{
    start(NULL);
    ferry_client *c = s_client(d, 0);
    ck_assert_uint_eq(kpub(c, "lv.state", "k1", "a1"), 1);
    ck_assert_uint_eq(kpub(c, "lv.state", "k2", "b"), 2);
    ck_assert_uint_eq(kpub(c, "lv.state", "k1", "a2"), 3); /* newer k1 */
    ck_assert_uint_eq(kpub(c, "lv.state", "k3", "c"), 4);
    ck_assert_uint_eq(kpub(c, "lv.state", NULL, "nokey"), 5); /* not indexed */
    ck_assert_uint_eq(kpub(c, "lv.state", "k3", ""), 6);      /* k3's tombstone */
    ferry_sub *s = s_sub(c, "lv.state", FERRY_START_LAST_PER_KEY, 0);
    expect(s, 2, "k2", "b");
    expect(s, 3, "k1", "a2");
    /* Then live, from the snapshot on: a new key, and a tombstone (which
     * a live subscriber gets, as Kafka's consumers do). */
    ck_assert_uint_eq(kpub(c, "lv.state", "k4", "d"), 7);
    expect(s, 7, "k4", "d");
    ck_assert_uint_eq(kpub(c, "lv.state", "k2", ""), 8);
    expect(s, 8, "k2", "");
    s_no_more(s, 100);
    ferry_unsubscribe(s);
    /* Every message is stored: the sequence is gapless, tombstones too. */
    s = s_sub(c, "lv.state", FERRY_START_ALL, 0);
    for (uint64_t i = 1; i <= 8; i++) {
        uint64_t seq;
        char buf[16];
        s_next(s, &seq, buf, sizeof(buf));
        ck_assert_uint_eq(seq, i);
    }
    ferry_unsubscribe(s);
    s_close(c);

    /* The index survives a crash exactly as the messages do. */
    ck_assert_int_eq(ferryd_kill9(d), 0);
    ck_assert_int_eq(ferryd_restart(d, (const char *const[]){"--last-value", "lv.>", NULL}), 0);
    snprintf(server, sizeof(server), "127.0.0.1:%d", d->port);
    c = s_client(d, 0);
    s = s_sub(c, "lv.state", FERRY_START_LAST_PER_KEY, 0);
    expect(s, 3, "k1", "a2");
    expect(s, 7, "k4", "d");
    ck_assert_uint_eq(kpub(c, "lv.state", "k1", "a3"), 9);
    expect(s, 9, "k1", "a3");
    s_no_more(s, 100);
    ferry_unsubscribe(s);
    /* And what was published after the restart is indexed too. */
    s = s_sub(c, "lv.state", FERRY_START_LAST_PER_KEY, 0);
    expect(s, 7, "k4", "d");
    expect(s, 9, "k1", "a3");
    s_no_more(s, 100);
    ferry_unsubscribe(s);
    s_close(c);
}
END_TEST

/* Values published while a snapshot is being delivered: a key changed
 * behind the position comes with its new value after the snapshot, each
 * sequence at most once and in order. */
START_TEST(test_a_large_snapshot_meets_concurrent_publishes)
{
    start(NULL);
    ferry_client *c = s_client(d, 0);
    enum { N_KEYS = 2000 };
    char key[16], text[32];
    for (int i = 0; i < N_KEYS; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(text, sizeof(text), "v%d.0", i);
        ferry_pub m = {.topic = "lv.big",
                       .payload = text,
                       .payload_len = strlen(text),
                       .key = key,
                       .key_len = strlen(key)};
        ck_assert_int_eq(ferry_publish_msg(c, &m, NULL), 0);
    }
    ck_assert_int_eq(ferry_flush(c, S_WAIT), 0);
    ck_assert_uint_eq(kpub(c, "lv.big", "k0", "v0.1"), N_KEYS + 1); /* k0 moves to the end */
    ferry_sub *s = s_sub(c, "lv.big", FERRY_START_LAST_PER_KEY, 0);
    /* Meanwhile every tenth key gets a new value. */
    for (int i = 0; i < N_KEYS; i += 10) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(text, sizeof(text), "v%d.2", i);
        kpub(c, "lv.big", key, text);
    }
    uint64_t last = 0, n = 0;
    const uint64_t final = N_KEYS + 1 + N_KEYS / 10; /* the last update's sequence */
    int has_new[N_KEYS] = {0};
    while (last < final) {
        ferry_msg *m;
        int rc = ferry_sub_next(s, S_WAIT, &m);
        ck_assert_msg(rc == 0, "after sequence %llu: %s", (unsigned long long)last,
                      ferry_strerror(rc));
        uint64_t seq = ferry_msg_sequence(m);
        ck_assert_uint_gt(seq, last);
        last = seq;
        size_t klen;
        const char *k = ferry_msg_key(m, &klen);
        int i = atoi(k + 1);
        size_t len;
        const char *p = ferry_msg_data(m, &len);
        if (len >= 2 && p[len - 1] == '2') {
            has_new[i] = 1;
        }
        ferry_msg_destroy(m);
        n++;
    }
    s_no_more(s, 100);
    /* Each key's first value at most once (or its newer one), and every
     * new value after the snapshot. */
    ck_assert_uint_le(n, N_KEYS + N_KEYS / 10);
    ck_assert_uint_ge(n, N_KEYS);
    for (int i = 0; i < N_KEYS; i += 10) {
        ck_assert_msg(has_new[i], "key k%d: its new value never came", i);
    }
    ferry_unsubscribe(s);
    s_close(c);
}
END_TEST

static uint64_t topic_first_seq(ferry_client *c, const char *topic, uint64_t *n_msgs)
{
    ferry_topic_info ti;
    ck_assert_int_eq(ferry_admin_topic_info(c, topic, S_WAIT, &ti), 0);
    *n_msgs = ti.messages;
    return ti.first_seq;
}

/* Publish two messages to zz.plain (max-msgs 1, not last-value) and wait
 * until retention trimmed it: a pass ran over every topic since. */
static void retention_pass(ferry_client *c)
{
    s_pub(c, "zz.plain", "x");
    s_pub(c, "zz.plain", "y");
    int64_t end = s_now_ms() + S_WAIT;
    uint64_t n = 0;
    while (topic_first_seq(c, "zz.plain", &n), n != 1) {
        ck_assert_msg(s_now_ms() < end, "retention never trimmed zz.plain");
        usleep(20000); /* polling, bounded by the deadline */
    }
}

START_TEST(test_retention_keeps_the_newest_of_each_key)
{
    start((const char *const[]){"--last-value", "lv.>", "--retention", "lv.> max-msgs 1",
                                "--retention", "zz.> max-msgs 1", "--retention-interval-ms", "20",
                                NULL});
    ferry_client *c = s_client(d, 0);
    kpub(c, "lv.ret", "k1", "a1"); /* 1 */
    kpub(c, "lv.ret", "k2", "b1"); /* 2 */
    kpub(c, "lv.ret", "k1", "a2"); /* 3 */
    kpub(c, "lv.ret", NULL, "x");  /* 4 */
    kpub(c, "lv.ret", "k3", "c1"); /* 5 */
    kpub(c, "lv.ret", "k2", "b2"); /* 6 */
    kpub(c, "lv.ret", "k3", "");   /* 7: k3 gone */
    kpub(c, "lv.ret", "k4", "d1"); /* 8 */
    retention_pass(c);
    retention_pass(c); /* the second began after the first was seen */
    uint64_t n;
    /* k1's current (3) holds the trim back: 1 and 2 went. */
    ck_assert_uint_eq(topic_first_seq(c, "lv.ret", &n), 3);
    ck_assert_uint_eq(n, 6);
    ferry_sub *s = s_sub(c, "lv.ret", FERRY_START_LAST_PER_KEY, 0);
    expect(s, 3, "k1", "a2");
    expect(s, 6, "k2", "b2");
    expect(s, 8, "k4", "d1");
    s_no_more(s, 100);
    ferry_unsubscribe(s);
    /* k1's newer value frees up to k2's current. */
    kpub(c, "lv.ret", "k1", "a3"); /* 9 */
    retention_pass(c);
    retention_pass(c);
    ck_assert_uint_eq(topic_first_seq(c, "lv.ret", &n), 6);
    s = s_sub(c, "lv.ret", FERRY_START_LAST_PER_KEY, 0);
    expect(s, 6, "k2", "b2");
    expect(s, 8, "k4", "d1");
    expect(s, 9, "k1", "a3");
    s_no_more(s, 100);
    ferry_unsubscribe(s);
    s_close(c);
}
END_TEST

/* ferry_subscribe's refusal text contains want. */
static void refused(ferry_client *c, const char *topic, const char *durable, int ack,
                    const char *want)
{
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_start(so, FERRY_START_LAST_PER_KEY, 0), 0);
    if (durable) {
        ck_assert_int_eq(ferry_sub_options_set_durable(so, durable), 0);
    }
    if (ack) {
        ck_assert_int_eq(ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT), 0);
    }
    ferry_sub *s = NULL;
    int rc = ferry_subscribe(c, topic, so, NULL, NULL, S_WAIT, &s);
    ferry_sub_options_destroy(so);
    ck_assert_msg(rc != 0, "subscribe %s with START_LAST_PER_KEY was accepted", topic);
    char text[512];
    ferry_client_last_error(c, text, sizeof(text));
    ck_assert_msg(strstr(text, want) != NULL, "refusal text: %s", text);
}

START_TEST(test_refusals)
{
    start(NULL);
    ferry_client *c = s_client(d, 0);
    kpub(c, "plain.t", "k1", "v");
    refused(c, "plain.t", NULL, 0, "not a last-value topic");
    refused(c, "lv.t", "dur", 0, "without a durable name");
    refused(c, "lv.t", NULL, 1, "explicit acks");
    refused(c, "lv.*", NULL, 0, "without wildcards");
    /* A key too long for the index: refused with a reason, on the
     * last-value topic only. */
    struct rawc r;
    ck_assert_int_eq(rawc_connect(&r, d->port, 0), 0);
    static char long_key[507];
    memset(long_key, 'k', sizeof(long_key));
    Ferry__Publish p = FERRY__PUBLISH__INIT;
    p.id = 7;
    p.topic = (char *)"lv.t";
    p.payload.data = (uint8_t *)"v";
    p.payload.len = 1;
    p.key.data = (uint8_t *)long_key;
    p.key.len = sizeof(long_key);
    p.want_ack = 1;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PUBLISH;
    f.publish = &p;
    ck_assert_int_eq(rawc_send(&r, &f), 0);
    Ferry__Frame *a;
    ck_assert_int_eq(rawc_recv_kind(&r, S_WAIT, FERRY__FRAME__BODY_ERROR, &a, NULL), 0);
    ck_assert_int_eq(a->error->code, FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT);
    ck_assert_uint_eq(a->error->ref_id, 7);
    ck_assert_ptr_nonnull(strstr(a->error->text, "key too long for a last-value topic"));
    p.id = 8;
    p.key.len = 506; /* the most that fits */
    ck_assert_int_eq(rawc_send(&r, &f), 0);
    ck_assert_int_eq(rawc_recv_kind(&r, S_WAIT, FERRY__FRAME__BODY_PUB_ACK, &a, NULL), 0);
    ck_assert_uint_eq(a->pub_ack->id, 8);
    ck_assert_int_eq(a->pub_ack->code, 0);
    p.id = 9;
    p.topic = (char *)"plain.t";
    p.key.len = sizeof(long_key);
    ck_assert_int_eq(rawc_send(&r, &f), 0);
    ck_assert_int_eq(rawc_recv_kind(&r, S_WAIT, FERRY__FRAME__BODY_PUB_ACK, &a, NULL), 0);
    ck_assert_uint_eq(a->pub_ack->id, 9);
    ck_assert_int_eq(a->pub_ack->code, 0);
    rawc_close(&r);
    s_close(c);
}
END_TEST

START_TEST(test_cli_sub_last_per_key_prints_the_values)
{
    start(NULL);
    struct proc p;
    const char *const pubs[][6] = {
        {"pub", "--ack", "--key", "k1", "lv.cli", "one"},
        {"pub", "--ack", "--key", "k2", "lv.cli", "two"},
        {"pub", "--ack", "--key", "k1", "lv.cli", "ONE"},
        {"pub", "--ack", "--key", "k3", "lv.cli", "three"},
        {"pub", "--ack", "--key", "k3", "lv.cli", ""},
    };
    for (size_t i = 0; i < sizeof(pubs) / sizeof(pubs[0]); i++) {
        const char *const args[] = {pubs[i][0], pubs[i][1], pubs[i][2], pubs[i][3],
                                    pubs[i][4], pubs[i][5], NULL};
        ck_assert_int_eq(run(&p, NULL, args), 0);
        proc_free(&p);
    }
    ck_assert_int_eq(
        run(&p, NULL,
            (const char *const[]){"sub", "lv.cli", "--last-per-key", "--count", "2", NULL}),
        0);
    ck_assert_str_eq(p.out_buf, "two\nONE\n");
    proc_free(&p);
    /* k3's tombstone left it out: after a new key, three values. */
    ck_assert_int_eq(
        run(&p, NULL, (const char *const[]){"pub", "--ack", "--key", "k4", "lv.cli", "four", NULL}),
        0);
    proc_free(&p);
    ck_assert_int_eq(
        run(&p, NULL,
            (const char *const[]){"sub", "lv.cli", "--last-per-key", "--count", "3", NULL}),
        0);
    ck_assert_str_eq(p.out_buf, "two\nONE\nfour\n");
    proc_free(&p);
    ck_assert_int_ne(
        run(&p, NULL,
            (const char *const[]){"sub", "lv.cli", "--last-per-key", "--last", "2", NULL}),
        0);
    ck_assert_ptr_nonnull(strstr(p.err_buf, "exclude each other"));
    proc_free(&p);
    ck_assert_int_eq(
        run(&p, NULL, (const char *const[]){"pub", "--ack", "--key", "k", "other.cli", "v", NULL}),
        0);
    proc_free(&p);
    ck_assert_int_ne(
        run(&p, NULL,
            (const char *const[]){"sub", "other.cli", "--last-per-key", "--count", "1", NULL}),
        0);
    ck_assert_ptr_nonnull(strstr(p.err_buf, "not a last-value topic"));
    proc_free(&p);
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("last_value");
    s_add_case(s, tcase_create("current_values_then_live_and_after_kill9"),
               test_current_values_then_live_and_after_kill9, NULL, teardown);
    s_add_case(s, tcase_create("a_large_snapshot_meets_concurrent_publishes"),
               test_a_large_snapshot_meets_concurrent_publishes, NULL, teardown);
    s_add_case(s, tcase_create("retention_keeps_the_newest_of_each_key"),
               test_retention_keeps_the_newest_of_each_key, NULL, teardown);
    s_add_case(s, tcase_create("refusals"), test_refusals, NULL, teardown);
    s_add_case(s, tcase_create("cli_sub_last_per_key_prints_the_values"),
               test_cli_sub_last_per_key_prints_the_values, NULL, teardown);
    return s;
}
