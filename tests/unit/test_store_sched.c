/*
 * test_store_sched.c - scheduled messages and expiry in the store
 * (store_sched.c, the value's expiry flag): stored apart from their topic,
 * moved into it exactly once in due order, kept through a crash that left
 * only the log (both the schedule and the move) and through a map resize.
 */
#include "store_test.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *g_buf;
static size_t g_cap;

/* Schedule payload for topic at due. */
static void sched(struct store_batch *b, const char *topic, const char *payload, int64_t due)
{
    struct store_msg_in m = msg_text(payload, 42);
    ck_assert_int_eq(store_batch_schedule(b, topic, strlen(topic), &m, due, NULL), 0);
}

/* Pop what is due at now and append it to its topic: 1 (and its payload
 * in out), or 0 with *next. */
static int move(struct store_batch *b, int64_t now, char *out, size_t out_len, int64_t *next)
{
    struct store_sched_item it;
    int rc = store_batch_sched_pop(b, now, &g_buf, &g_cap, &it, next);
    ck_assert_int_ge(rc, 0);
    if (rc == 1) {
        ck_assert_int_le(it.in.unsched_due, now);
        ck_assert_uint_ne(it.in.unsched_id, 0);
        snprintf(out, out_len, "%.*s", (int)it.msg.payload_len, (const char *)it.msg.payload);
        ck_assert_int_eq(store_batch_append(b, it.topic, it.topic_len, &it.in, NULL), 0);
    }
    return rc;
}

static int64_t next_due(struct store *s)
{
    int64_t due = 0;
    ck_assert_int_eq(store_sched_next(s, &due), 0);
    return due;
}

static void teardown_buf(void)
{
    free(g_buf);
    g_buf = NULL;
    g_cap = 0;
}

START_TEST(test_sched_moves_in_due_order_once)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    ck_assert_int_eq(next_due(s), INT64_MAX);
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    sched(b, "s.a", "third", 3000);
    sched(b, "s.a", "first", 1000);
    sched(b, "s.b", "second", 2000);
    ck_assert_int_eq(store_batch_commit(b), 0);
    ck_assert_int_eq(next_due(s), 1000);
    /* The topic exists, with nothing in it yet. */
    struct store_topic_info info;
    ck_assert_int_eq(store_topic_info(s, "s.a", 3, &info), 0);
    ck_assert_uint_eq(info.n_msgs, 0);

    char text[32];
    int64_t next = 0;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(move(b, 999, text, sizeof(text), &next), 0);
    ck_assert_int_eq(next, 1000);
    ck_assert_int_eq(move(b, 2500, text, sizeof(text), &next), 1);
    ck_assert_str_eq(text, "first");
    ck_assert_int_eq(move(b, 2500, text, sizeof(text), &next), 1);
    ck_assert_str_eq(text, "second");
    ck_assert_int_eq(move(b, 2500, text, sizeof(text), &next), 0);
    ck_assert_int_eq(next, 3000);
    ck_assert_int_eq(store_batch_commit(b), 0);
    ck_assert_int_eq(next_due(s), 3000);
    ck_assert_int_eq(store_topic_info(s, "s.a", 3, &info), 0);
    ck_assert_uint_eq(info.n_msgs, 1);
    ck_assert_uint_eq(info.last_seq, 1);
    struct collect c = {0};
    read_all(s, info.id, 1, 100, 1 << 20, &c, NULL);
    ck_assert_uint_eq(c.n, 1);
    ck_assert_str_eq(c.last_payload, "first");
    ck_assert_int_eq(c.last_time, 42); /* the publish time, not the due time */

    /* Aborted: the move is undone with the batch, and is there again. */
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(move(b, INT64_MAX - 1, text, sizeof(text), &next), 1);
    ck_assert_str_eq(text, "third");
    store_batch_abort(b);
    ck_assert_int_eq(next_due(s), 3000);
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(move(b, 3000, text, sizeof(text), &next), 1);
    ck_assert_int_eq(move(b, 3000, text, sizeof(text), &next), 0);
    ck_assert_int_eq(next, INT64_MAX);
    ck_assert_int_eq(store_batch_commit(b), 0);
    ck_assert_int_eq(store_topic_info(s, "s.a", 3, &info), 0);
    ck_assert_uint_eq(info.last_seq, 2);
    store_close(s);
}
END_TEST

START_TEST(test_sched_keeps_headers_key_and_expiry)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    struct store_kv h[2] = {{"a", 1, "1", 1}, {"bb", 2, "", 0}};
    struct store_msg_in m = msg_text("body", 7);
    m.headers = h;
    m.n_headers = 2;
    m.key = "k1";
    m.key_len = 2;
    m.expire_time = 123456789;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(store_batch_schedule(b, "s.h", 3, &m, 50, NULL), 0);
    m.unsched_id = 5; /* not something a schedule may carry */
    ck_assert_int_eq(store_batch_schedule(b, "s.h", 3, &m, 50, NULL), FERRY_EINVAL);
    ck_assert_int_eq(store_batch_commit(b), 0);

    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    struct store_sched_item it;
    int64_t next;
    ck_assert_int_eq(store_batch_sched_pop(b, 60, &g_buf, &g_cap, &it, &next), 1);
    ck_assert_int_eq((int)it.topic_len, 3);
    ck_assert_int_eq(memcmp(it.topic, "s.h", 3), 0);
    ck_assert_uint_eq(it.in.n_headers, 2);
    ck_assert_int_eq(memcmp(it.in.headers[1].key, "bb", 2), 0);
    ck_assert_uint_eq(it.in.key_len, 2);
    ck_assert_int_eq(it.in.expire_time, 123456789);
    ck_assert_int_eq(store_batch_append(b, it.topic, it.topic_len, &it.in, NULL), 0);
    ck_assert_int_eq(store_batch_commit(b), 0);
    put1(s, "s.h", "plain", 8);
    struct collect c = {0};
    read_all(s, topic_id(s, "s.h"), 1, 100, 1 << 20, &c, NULL);
    ck_assert_uint_eq(c.n, 2);
    store_close(s);
}
END_TEST

struct expiry_seen {
    int64_t t[4];
    size_t n;
};

static enum store_read_verdict expiry_cb(void *ctx, const struct store_msg *m)
{
    struct expiry_seen *x = ctx;
    ck_assert_uint_lt(x->n, 4);
    x->t[x->n++] = m->expire_time;
    return STORE_READ_CONTINUE;
}

START_TEST(test_expiry_round_trip)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    struct store_msg_in m = msg_text("x", 1);
    ck_assert_int_eq(store_batch_append(b, "e.a", 3, &m, NULL), 0);
    m.expire_time = 5000;
    ck_assert_int_eq(store_batch_append(b, "e.a", 3, &m, NULL), 0);
    ck_assert_int_eq(store_batch_commit(b), 0);
    struct expiry_seen x = {{0}, 0};
    struct store_read_result r;
    ck_assert_int_eq(store_read(s, topic_id(s, "e.a"), 1, 10, 1 << 20, expiry_cb, &x, &r), 0);
    ck_assert_uint_eq(x.n, 2);
    ck_assert_int_eq(x.t[0], 0);
    ck_assert_int_eq(x.t[1], 5000);
    struct store_msg sm = {.expire_time = 5000};
    ck_assert(!store_msg_is_expired(&sm, 4999));
    ck_assert(store_msg_is_expired(&sm, 5000));
    sm.expire_time = 0;
    ck_assert(!store_msg_is_expired(&sm, INT64_MAX));
    store_close(s);
    struct store_verify_result vr;
    ck_assert_int_eq(store_verify(g_dir, NULL, &vr), 0);
    ck_assert_uint_eq(vr.n_problems, 0); /* the flagged value checks out */
    ck_assert_uint_eq(vr.n_msgs, 2);
}
END_TEST

/* 600 entries of 3 KiB: more than the 1 MiB map holds, and small enough
 * that the batch is logged (large messages skip the log: store_write.c). */
#define FILL_N 600

static int fill_sched(struct store_batch *b)
{
    for (int i = 0; i < FILL_N; i++) {
        static char big[3072];
        memset(big, 'a' + i % 26, sizeof(big) - 1);
        struct store_msg_in m = msg_text(big, i);
        m.producer_id = 9;
        m.producer_seq = (uint64_t)i + 1;
        if (store_batch_schedule(b, "s.c", 3, &m, 1000 + i, NULL) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Scheduled in a batch whose map grew (a redo), logged, then a crash
 * before the commit: the log brings every entry back. */
START_TEST(test_sched_survives_a_crash_and_a_map_resize)
{
    struct store_options o;
    store_options_init(&o);
    o.map_size_initial = 1 << 20;
    crash_after_log(&o, fill_sched);
    struct store *s = open_store(&o);
    ck_assert_int_eq(next_due(s), 1000);
    struct store_batch *b;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    uint64_t seq = 1;
    ck_assert_int_eq(store_batch_dedupe_find(b, "s.c", 3, 9, 17, &seq), 1);
    ck_assert_uint_eq(seq, 0); /* seen; no topic sequence yet */
    char text[16];
    int64_t next;
    int n = 0;
    while (move(b, 5000, text, sizeof(text), &next) == 1) {
        ck_assert_int_eq(text[0], 'a' + n % 26);
        n++;
    }
    ck_assert_int_eq(n, FILL_N);
    ck_assert_int_eq(store_batch_commit(b), 0);
    struct store_topic_info info;
    ck_assert_int_eq(store_topic_info(s, "s.c", 3, &info), 0);
    ck_assert_uint_eq(info.n_msgs, FILL_N);
    store_close(s);
}
END_TEST

static int fill_move(struct store_batch *b)
{
    char text[32];
    int64_t next;
    return move(b, 10000, text, sizeof(text), &next) == 1 ? 0 : -1;
}

/* A move logged, then a crash: after the replay the message is in its
 * topic and no longer scheduled (never both, never neither). */
START_TEST(test_sched_move_survives_a_crash)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    sched(b, "s.d", "later", 500);
    ck_assert_int_eq(store_batch_commit(b), 0);
    store_close(s);
    crash_after_log(NULL, fill_move);
    s = open_store(NULL);
    ck_assert_int_eq(next_due(s), INT64_MAX);
    struct store_topic_info info;
    ck_assert_int_eq(store_topic_info(s, "s.d", 3, &info), 0);
    ck_assert_uint_eq(info.n_msgs, 1);
    struct collect c = {0};
    read_all(s, info.id, 1, 100, 1 << 20, &c, NULL);
    ck_assert_str_eq(c.last_payload, "later");
    store_close(s);
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("store_sched");
    TCase *tc;
    tc = tcase_create("sched_moves_in_due_order_once");
    tcase_add_checked_fixture(tc, NULL, teardown_buf);
    add_case(s, tc, test_sched_moves_in_due_order_once);
    tc = tcase_create("sched_keeps_headers_key_and_expiry");
    tcase_add_checked_fixture(tc, NULL, teardown_buf);
    add_case(s, tc, test_sched_keeps_headers_key_and_expiry);
    add_case(s, tcase_create("expiry_round_trip"), test_expiry_round_trip);
    tc = tcase_create("sched_survives_a_crash_and_a_map_resize");
    tcase_add_checked_fixture(tc, NULL, teardown_buf);
    add_case(s, tc, test_sched_survives_a_crash_and_a_map_resize);
    tc = tcase_create("sched_move_survives_a_crash");
    tcase_add_checked_fixture(tc, NULL, teardown_buf);
    add_case(s, tc, test_sched_move_survives_a_crash);
    return s;
}
