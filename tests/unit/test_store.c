/*
 * test_store.c - the LMDB store: appends, sequences, reads, time index,
 * topics, integrity, durable consumer records, refusal of foreign
 * directories, and the offline verifier. Map growth, map full and injected
 * faults are in test_store_map.c. Every test works in its own mkdtemp
 * directory, removed in teardown.
 */
#include "store_test.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- append and read ---------------------------------------------------- */

struct full_check {
    size_t n;
};

static enum store_read_verdict check_full_cb(void *ctx, const struct store_msg *m)
{
    struct full_check *fc = ctx;
    char want[64];
    snprintf(want, sizeof(want), "payload-%" PRIu64, m->seq);
    ck_assert_uint_eq(m->payload_len, strlen(want));
    ck_assert(memcmp(m->payload, want, m->payload_len) == 0);
    ck_assert_int_eq(m->publish_time, (int64_t)(1000 + m->seq));
    ck_assert_uint_eq(m->key_len, 3);
    ck_assert(memcmp(m->key, "key", 3) == 0);
    ck_assert_uint_eq(m->n_headers, 2);
    size_t pos = 0;
    struct store_kv kv;
    ck_assert_int_eq(store_msg_header_next(m, &pos, &kv), 1);
    ck_assert(kv.key_len == 4 && memcmp(kv.key, "type", 4) == 0);
    ck_assert(kv.value_len == 5 && memcmp(kv.value, "order", 5) == 0);
    ck_assert_int_eq(store_msg_header_next(m, &pos, &kv), 1);
    ck_assert(kv.key_len == 2 && memcmp(kv.key, "id", 2) == 0);
    ck_assert_uint_eq(kv.value_len, 0);
    ck_assert_int_eq(store_msg_header_next(m, &pos, &kv), 0);
    ck_assert_uint_eq(m->seq, fc->n + 1);
    fc->n++;
    return STORE_READ_CONTINUE;
}

START_TEST(test_store_append_and_read_back_in_order)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    struct store_kv hdrs[2] = {{"type", 4, "order", 5}, {"id", 2, "", 0}};
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    for (int i = 1; i <= 100; i++) {
        char p[64];
        snprintf(p, sizeof(p), "payload-%d", i);
        struct store_msg_in m = msg_text(p, 1000 + i);
        m.key = "key";
        m.key_len = 3;
        m.headers = hdrs;
        m.n_headers = 2;
        struct store_append_result ar;
        ck_assert_int_eq(store_batch_append(b, "orders.eu", 9, &m, &ar), 0);
        ck_assert_uint_eq(ar.seq, (uint64_t)i);
    }
    ck_assert_uint_eq(store_batch_count(b), 100);
    ck_assert_int_eq(store_batch_commit(b), 0);

    struct full_check fc = {0};
    struct store_read_result r;
    uint32_t id = topic_id(s, "orders.eu");
    ck_assert_int_eq(store_read(s, id, 1, 1000, SIZE_MAX, check_full_cb, &fc, &r), 0);
    ck_assert_uint_eq(fc.n, 100);
    ck_assert_uint_eq(r.n_msgs, 100);
    ck_assert_uint_eq(r.next_seq, 101);
    ck_assert_uint_eq(r.last_seq, 100);
    ck_assert(r.is_end);
    ck_assert_uint_eq(r.n_corrupt, 0);

    /* An empty payload and an unknown topic id. */
    put1(s, "empty", "", 5);
    struct collect *c = calloc(1, sizeof(*c));
    read_all(s, topic_id(s, "empty"), 1, 10, 100, c, NULL);
    ck_assert_uint_eq(c->n, 1);
    ck_assert_int_eq(store_read(s, 9999, 1, 10, 100, collect_cb, c, &r), 0);
    ck_assert(r.is_end);
    ck_assert_uint_eq(r.n_msgs, 0);
    free(c);
    store_close(s);
}
END_TEST

START_TEST(test_store_sequences_gapless_across_many_topics)
{
    struct store *s = open_store(NULL);
    enum { N_TOPICS = 37, N_BATCHES = 20, PER_BATCH = 50 };
    uint64_t expect[N_TOPICS] = {0};
    unsigned seed = 1;
    for (int bi = 0; bi < N_BATCHES; bi++) {
        struct store_batch *b;
        ck_assert_int_eq(store_batch_begin(s, &b), 0);
        for (int i = 0; i < PER_BATCH; i++) {
            int t = (int)(rand_r(&seed) % N_TOPICS);
            char topic[32];
            snprintf(topic, sizeof(topic), "t.%d", t);
            char p[32];
            snprintf(p, sizeof(p), "%d/%" PRIu64, t, expect[t] + 1);
            struct store_msg_in m = msg_text(p, bi);
            struct store_append_result ar;
            ck_assert_int_eq(store_batch_append(b, topic, strlen(topic), &m, &ar), 0);
            ck_assert_uint_eq(ar.seq, ++expect[t]);
        }
        ck_assert_int_eq(store_batch_commit(b), 0);
    }
    struct collect *c = calloc(1, sizeof(*c));
    for (int t = 0; t < N_TOPICS; t++) {
        char topic[32];
        snprintf(topic, sizeof(topic), "t.%d", t);
        struct store_topic_info info;
        int rc = store_topic_info(s, topic, strlen(topic), &info);
        if (expect[t] == 0) {
            ck_assert_int_eq(rc, FERRY_ENOTOPIC);
            continue;
        }
        ck_assert_int_eq(rc, 0);
        ck_assert_uint_eq(info.first_seq, 1);
        ck_assert_uint_eq(info.last_seq, expect[t]);
        ck_assert_uint_eq(info.n_msgs, expect[t]);
        c->n = 0;
        read_all(s, info.id, 1, 1000, SIZE_MAX, c, NULL);
        ck_assert_uint_eq(c->n, expect[t]);
        for (size_t i = 0; i < c->n; i++) {
            ck_assert_uint_eq(c->seqs[i], i + 1);
        }
    }
    free(c);
    store_close(s);
    struct store_verify_result vr;
    ck_assert_int_eq(store_verify(g_dir, NULL, &vr), 0);
    ck_assert_uint_eq(vr.n_msgs, N_BATCHES * PER_BATCH);
}
END_TEST

START_TEST(test_store_sequences_continue_after_reopen)
{
    struct store *s = open_store(NULL);
    for (int i = 1; i <= 10; i++) {
        ck_assert_uint_eq(put1(s, "a", "x", i), (uint64_t)i);
    }
    ck_assert_uint_eq(put1(s, "b", "y", 1), 1);
    store_close(s);
    s = open_store(NULL);
    ck_assert_uint_eq(put1(s, "a", "x", 11), 11);
    ck_assert_uint_eq(put1(s, "b", "y", 2), 2);
    ck_assert_uint_eq(put1(s, "c", "z", 2), 1);
    uint32_t ida = topic_id(s, "a");
    uint32_t idb = topic_id(s, "b");
    uint32_t idc = topic_id(s, "c");
    ck_assert(ida != idb && idb != idc && ida != idc);
    store_close(s);
    s = open_store(NULL);
    ck_assert_uint_eq(put1(s, "a", "x", 12), 12);
    ck_assert_uint_eq(topic_id(s, "c"), idc);
    struct store_stats st;
    store_stats(s, &st);
    ck_assert_uint_eq(st.n_topics, 3);
    store_close(s);
}
END_TEST

START_TEST(test_store_aborted_batch_does_not_consume_sequences)
{
    struct store *s = open_store(NULL);
    for (int i = 0; i < 5; i++) {
        put1(s, "a", "keep", i);
    }
    struct store_batch *b;
    struct store_append_result ar;
    struct store_msg_in m = msg_text("drop", 99);
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(store_batch_append(b, "a", 1, &m, &ar), 0);
        ck_assert_uint_eq(ar.seq, (uint64_t)6 + i);
    }
    ck_assert_int_eq(store_batch_append(b, "newtopic", 8, &m, &ar), 0);
    ck_assert_uint_eq(ar.seq, 1);
    uint32_t aborted_id = ar.topic_id;
    store_batch_abort(b);

    struct store_topic_info info;
    ck_assert_int_eq(store_topic_info(s, "newtopic", 8, &info), FERRY_ENOTOPIC);
    ck_assert_int_eq(store_topic_info(s, "a", 1, &info), 0);
    ck_assert_uint_eq(info.last_seq, 5);
    ck_assert_uint_eq(put1(s, "a", "after", 100), 6);
    ck_assert_uint_eq(put1(s, "newtopic", "n", 100), 1);
    /* The aborted topic's id is handed out again: ids have no holes either. */
    ck_assert_uint_eq(topic_id(s, "newtopic"), aborted_id);

    struct collect *c = calloc(1, sizeof(*c));
    read_all(s, topic_id(s, "a"), 1, 100, SIZE_MAX, c, NULL);
    ck_assert_uint_eq(c->n, 6);
    ck_assert_str_eq(c->last_payload, "after");
    free(c);
    store_close(s);
    s = open_store(NULL);
    ck_assert_uint_eq(put1(s, "a", "again", 101), 7);
    store_close(s);
    ck_assert_int_eq(store_verify(g_dir, NULL, NULL), 0);
}
END_TEST

START_TEST(test_store_chunked_read_returns_everything_once)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    char p[2048];
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    for (int i = 1; i <= 3000; i++) {
        size_t len = (size_t)(i * 37) % 1500;
        memset(p, 'a' + i % 26, len);
        p[len] = '\0';
        struct store_msg_in m = msg_text(p, i);
        ck_assert_int_eq(store_batch_append(b, "chunky", 6, &m, NULL), 0);
    }
    ck_assert_int_eq(store_batch_commit(b), 0);
    uint32_t id = topic_id(s, "chunky");
    const size_t limits[][2] = {{1, SIZE_MAX}, {7, 500}, {1000, 1}, {64, 65536}, {5000, SIZE_MAX}};
    struct collect *c = calloc(1, sizeof(*c));
    for (size_t li = 0; li < sizeof(limits) / sizeof(limits[0]); li++) {
        memset(c, 0, sizeof(*c));
        struct store_read_result last;
        size_t chunks = read_all(s, id, 1, limits[li][0], limits[li][1], c, &last);
        ck_assert_uint_eq(c->n, 3000);
        for (size_t i = 0; i < c->n; i++) {
            ck_assert_uint_eq(c->seqs[i], i + 1);
        }
        ck_assert_uint_eq(last.next_seq, 3001);
        if (limits[li][0] == 1 || limits[li][1] == 1) {
            ck_assert_uint_ge(chunks, 3000);
        }
    }
    /* A read from the middle, and STOP / REFUSE verdicts. */
    memset(c, 0, sizeof(*c));
    c->stop_after = 3;
    struct store_read_result r;
    ck_assert_int_eq(store_read(s, id, 100, 50, SIZE_MAX, collect_cb, c, &r), 0);
    ck_assert_uint_eq(c->n, 3);
    ck_assert_uint_eq(c->seqs[0], 100);
    ck_assert_uint_eq(r.next_seq, 103);
    ck_assert(!r.is_end);
    ck_assert_int_eq(store_read(s, id, 3001, 50, SIZE_MAX, collect_cb, c, &r), 0);
    ck_assert(r.is_end);
    ck_assert_uint_eq(r.next_seq, 3001);
    ck_assert_int_eq(store_read(s, id, 1, 0, 1, collect_cb, c, &r), FERRY_EINVAL);
    free(c);
    store_close(s);
}
END_TEST

static enum store_read_verdict refuse_cb(void *ctx, const struct store_msg *m)
{
    (void)m;
    int *calls = ctx;
    return ++*calls == 2 ? STORE_READ_REFUSE : STORE_READ_CONTINUE;
}

START_TEST(test_store_read_refuse_keeps_position)
{
    struct store *s = open_store(NULL);
    for (int i = 0; i < 5; i++) {
        put1(s, "r", "m", i);
    }
    int calls = 0;
    struct store_read_result r;
    ck_assert_int_eq(store_read(s, topic_id(s, "r"), 1, 10, SIZE_MAX, refuse_cb, &calls, &r), 0);
    ck_assert_int_eq(calls, 2);
    ck_assert_uint_eq(r.n_msgs, 1);
    ck_assert_uint_eq(r.next_seq, 2);
    store_close(s);
}
END_TEST

START_TEST(test_store_seek_by_time)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    /* seq i published at 1000 * i; seqs 6 and 7 share a time; seq 9 comes
     * from a clock that stepped back. */
    const int64_t times[] = {1000, 2000, 3000, 4000, 5000, 6000, 6000, 8000, 7500, 10000};
    for (size_t i = 0; i < 10; i++) {
        struct store_msg_in m = msg_text("t", times[i]);
        ck_assert_int_eq(store_batch_append(b, "timed", 5, &m, NULL), 0);
    }
    ck_assert_int_eq(store_batch_commit(b), 0);
    put1(s, "other", "o", 500); /* another topic's index must not leak in */
    uint32_t id = topic_id(s, "timed");
    uint64_t seq;
    ck_assert_int_eq(store_seek_time(s, id, 0, &seq), 0);
    ck_assert_uint_eq(seq, 1);
    ck_assert_int_eq(store_seek_time(s, id, -5, &seq), 0);
    ck_assert_uint_eq(seq, 1);
    ck_assert_int_eq(store_seek_time(s, id, 1000, &seq), 0);
    ck_assert_uint_eq(seq, 1);
    ck_assert_int_eq(store_seek_time(s, id, 1001, &seq), 0);
    ck_assert_uint_eq(seq, 2);
    ck_assert_int_eq(store_seek_time(s, id, 5500, &seq), 0);
    ck_assert_uint_eq(seq, 6);
    ck_assert_int_eq(store_seek_time(s, id, 6000, &seq), 0);
    ck_assert_uint_eq(seq, 6);
    ck_assert_int_eq(store_seek_time(s, id, 7600, &seq), 0);
    ck_assert_uint_eq(seq, 8);
    ck_assert_int_eq(store_seek_time(s, id, 9000, &seq), 0);
    ck_assert_uint_eq(seq, 10);
    ck_assert_int_eq(store_seek_time(s, id, 10001, &seq), 0);
    ck_assert_uint_eq(seq, 11); /* nothing that recent: new messages only */
    ck_assert_int_eq(store_seek_time(s, 4242, 0, &seq), FERRY_ENOTOPIC);
    /* The message keeps its own publish time even though its index entry
     * was clamped. */
    struct collect c1 = {0};
    struct store_read_result r;
    ck_assert_int_eq(store_read(s, id, 9, 1, SIZE_MAX, collect_cb, &c1, &r), 0);
    ck_assert_int_eq(c1.last_time, 7500);
    store_close(s);
    ck_assert_int_eq(store_verify(g_dir, NULL, NULL), 0);
}
END_TEST

START_TEST(test_store_seek_by_time_across_index_buckets)
{
    struct store *s = open_store(NULL);
    enum { N = 400 };
    int64_t times[N + 1];
    int64_t run_max[N + 1];
    struct store_batch *b;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    for (int i = 1; i <= N; i++) {
        /* 0.4 ms apart, from -60 ms across zero, with some steps back. */
        times[i] = INT64_C(-60000000) + (int64_t)i * 400000 - (i % 50 == 0 ? 3000000 : 0);
        run_max[i] = i == 1 || times[i] > run_max[i - 1] ? times[i] : run_max[i - 1];
        struct store_msg_in m = msg_text("b", times[i]);
        ck_assert_int_eq(store_batch_append(b, "buckets", 7, &m, NULL), 0);
    }
    ck_assert_int_eq(store_batch_commit(b), 0);
    uint32_t id = topic_id(s, "buckets");
    for (int64_t t = INT64_C(-61000000); t <= INT64_C(101000000); t += 77777) {
        uint64_t want = N + 1;
        for (int i = 1; i <= N; i++) {
            if (run_max[i] >= t) {
                want = (uint64_t)i;
                break;
            }
        }
        uint64_t got;
        ck_assert_int_eq(store_seek_time(s, id, t, &got), 0);
        ck_assert_msg(got == want, "t=%" PRId64 ": got %" PRIu64 " want %" PRIu64, t, got, want);
    }
    store_close(s);
    struct store_verify_result vr;
    ck_assert_int_eq(store_verify(g_dir, NULL, &vr), 0);
    ck_assert_uint_lt(vr.n_index, N); /* sparse: fewer entries than messages */
}
END_TEST

START_TEST(test_store_last_n_start_positions)
{
    struct store *s = open_store(NULL);
    for (int i = 0; i < 10; i++) {
        put1(s, "ln", "m", i);
    }
    struct store_topic_info info;
    ck_assert_int_eq(store_topic_info(s, "ln", 2, &info), 0);
    ck_assert_uint_eq(store_topic_seq_last_n(&info, 0), 11);
    ck_assert_uint_eq(store_topic_seq_last_n(&info, 1), 10);
    ck_assert_uint_eq(store_topic_seq_last_n(&info, 3), 8);
    ck_assert_uint_eq(store_topic_seq_last_n(&info, 10), 1);
    ck_assert_uint_eq(store_topic_seq_last_n(&info, 1000), 1);
    struct collect c = {0};
    read_all(s, info.id, store_topic_seq_last_n(&info, 3), 100, SIZE_MAX, &c, NULL);
    ck_assert_uint_eq(c.n, 3);
    ck_assert_uint_eq(c.seqs[0], 8);
    uint64_t removed;
    ck_assert_int_eq(store_topic_purge(s, "ln", 2, &removed), 0);
    for (int i = 0; i < 2; i++) {
        put1(s, "ln", "m", 20 + i);
    }
    ck_assert_int_eq(store_topic_info(s, "ln", 2, &info), 0);
    ck_assert_uint_eq(store_topic_seq_last_n(&info, 5), 11); /* clipped at first_seq */
    store_close(s);
}
END_TEST

/* ---- topics -------------------------------------------------------------- */

struct list_ctx {
    char names[16][64];
    uint64_t last[16];
    int n;
};

static int list_cb(void *ctx, const char *name, size_t name_len,
                   const struct store_topic_info *info)
{
    struct list_ctx *l = ctx;
    ck_assert_int_lt(l->n, 16);
    memcpy(l->names[l->n], name, name_len);
    l->names[l->n][name_len] = '\0';
    l->last[l->n] = info->last_seq;
    l->n++;
    return 0;
}

static int count_cb(void *ctx, const char *name, size_t name_len,
                    const struct store_topic_info *info)
{
    (void)name;
    (void)name_len;
    (void)info;
    (*(int *)ctx)++;
    return 0;
}

START_TEST(test_store_topic_info_list_and_purge)
{
    struct store *s = open_store(NULL);
    for (int i = 0; i < 3; i++) {
        put1(s, "a.x", "1", i);
    }
    put1(s, "a.y", "2", 1);
    put1(s, "b.z", "3", 1);
    struct list_ctx l = {0};
    ck_assert_int_eq(store_topic_list(s, "a.", 2, list_cb, &l), 2);
    ck_assert_int_eq(l.n, 2);
    ck_assert_str_eq(l.names[0], "a.x");
    ck_assert_uint_eq(l.last[0], 3);
    ck_assert_str_eq(l.names[1], "a.y");
    memset(&l, 0, sizeof(l));
    ck_assert_int_eq(store_topic_list(s, NULL, 0, list_cb, &l), 3);
    ck_assert_str_eq(l.names[2], "b.z");
    memset(&l, 0, sizeof(l));
    ck_assert_int_eq(store_topic_list(s, "c", 1, list_cb, &l), 0);

    uint64_t removed = 0;
    ck_assert_int_eq(store_topic_purge(s, "a.x", 3, &removed), 0);
    ck_assert_uint_eq(removed, 3);
    struct store_topic_info info;
    ck_assert_int_eq(store_topic_info(s, "a.x", 3, &info), 0);
    ck_assert_uint_eq(info.n_msgs, 0);
    ck_assert_uint_eq(info.n_bytes, 0);
    ck_assert_uint_eq(info.last_seq, 3);
    ck_assert_uint_eq(info.first_seq, 4);
    ck_assert_int_eq(store_topic_purge(s, "nope", 4, &removed), FERRY_ENOTOPIC);

    /* Reading from the start of a purged topic: nothing, and told where new
     * messages will begin. */
    struct collect c = {0};
    struct store_read_result r;
    ck_assert_int_eq(store_read(s, info.id, 1, 10, SIZE_MAX, collect_cb, &c, &r), 0);
    ck_assert_uint_eq(r.n_msgs, 0);
    ck_assert(r.is_end);
    ck_assert_uint_eq(r.next_seq, 4);
    uint64_t seq;
    ck_assert_int_eq(store_seek_time(s, info.id, 0, &seq), 0);
    ck_assert_uint_eq(seq, 4);

    /* The counter survives the purge, and a reopen. */
    ck_assert_uint_eq(put1(s, "a.x", "new", 50), 4);
    store_close(s);
    ck_assert_int_eq(store_verify(g_dir, NULL, NULL), 0);
    s = open_store(NULL);
    ck_assert_uint_eq(put1(s, "a.x", "newer", 51), 5);
    read_all(s, info.id, 1, 10, SIZE_MAX, &c, NULL);
    ck_assert_uint_eq(c.n, 2);
    ck_assert_uint_eq(c.seqs[0], 4);
    ck_assert_int_eq(store_seek_time(s, info.id, 0, &seq), 0);
    ck_assert_uint_eq(seq, 4);
    store_close(s);
}
END_TEST

START_TEST(test_store_purge_and_list_span_many_chunks)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    for (int i = 0; i < 600; i++) {
        char topic[32];
        snprintf(topic, sizeof(topic), "many.%04d", i);
        struct store_msg_in m = msg_text("x", i);
        ck_assert_int_eq(store_batch_append(b, topic, strlen(topic), &m, NULL), 0);
    }
    for (int i = 0; i < 5000; i++) {
        struct store_msg_in m = msg_text("big topic message", i);
        ck_assert_int_eq(store_batch_append(b, "big", 3, &m, NULL), 0);
    }
    ck_assert_int_eq(store_batch_commit(b), 0);
    int n = 0;
    ck_assert_int_eq(store_topic_list(s, "many.", 5, count_cb, &n), 600);
    ck_assert_int_eq(n, 600);
    uint64_t removed;
    ck_assert_int_eq(store_topic_purge(s, "big", 3, &removed), 0);
    ck_assert_uint_eq(removed, 5000);
    ck_assert_uint_eq(put1(s, "big", "after", 9999), 5001);
    store_close(s);
    struct store_verify_result vr;
    ck_assert_int_eq(store_verify(g_dir, NULL, &vr), 0);
    ck_assert_uint_eq(vr.n_msgs, 601);
    ck_assert_uint_eq(vr.n_topics, 601);
}
END_TEST

START_TEST(test_store_purge_of_exactly_one_chunk_at_the_end)
{
    /* A purge whose last chunk deletes the last entries of the database
     * (1024 and 2048 messages: whole chunks) completes and keeps working. */
    struct store *s = open_store(NULL);
    for (int round = 1; round <= 2; round++) {
        struct store_batch *b;
        ck_assert_int_eq(store_batch_begin(s, &b), 0);
        for (int i = 0; i < 1024 * round; i++) {
            struct store_msg_in m = msg_text("chunk", i);
            ck_assert_int_eq(store_batch_append(b, "t1", 2, &m, NULL), 0);
        }
        ck_assert_int_eq(store_batch_commit(b), 0);
        uint64_t removed = 0;
        ck_assert_int_eq(store_topic_purge(s, "t1", 2, &removed), 0);
        ck_assert_uint_eq(removed, 1024u * (unsigned)round);
        ck_assert_int_eq(store_is_failed(s), 0);
    }
    ck_assert_uint_eq(put1(s, "t1", "after", 1), 1024 + 2048 + 1);
    store_close(s);
}
END_TEST

/* ---- integrity ----------------------------------------------------------- */

/* Flip one byte in every copy of needle inside dir/data.mdb (old page
 * copies may still hold it; flipping those too is harmless). */
static int flip_in_file(const char *needle)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/data.mdb", g_dir);
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    unsigned char *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    size_t nl = strlen(needle);
    int hits = 0;
    for (size_t i = 0; i + nl <= (size_t)st.st_size; i++) {
        if (memcmp(p + i, needle, nl) == 0) {
            p[i + nl / 2] ^= 0x20;
            hits++;
        }
    }
    msync(p, (size_t)st.st_size, MS_SYNC);
    munmap(p, (size_t)st.st_size);
    close(fd);
    return hits;
}

START_TEST(test_store_flipped_byte_is_detected_and_never_delivered)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    for (int i = 1; i <= 50; i++) {
        char p[64];
        if (i == 17) {
            snprintf(p, sizeof(p), "UNIQUE-NEEDLE-PAYLOAD-7f3a");
        } else {
            snprintf(p, sizeof(p), "ordinary payload %d", i);
        }
        struct store_msg_in m = msg_text(p, i);
        ck_assert_int_eq(store_batch_append(b, "crc", 3, &m, NULL), 0);
    }
    ck_assert_int_eq(store_batch_commit(b), 0);
    store_close(s);
    ck_assert_int_eq(store_verify(g_dir, NULL, NULL), 0);
    ck_assert_int_ge(flip_in_file("UNIQUE-NEEDLE-PAYLOAD-7f3a"), 1);

    s = open_store(NULL);
    struct collect *c = calloc(1, sizeof(*c));
    struct store_read_result r;
    uint32_t id = topic_id(s, "crc");
    ck_assert_int_eq(store_read(s, id, 1, 1000, SIZE_MAX, collect_cb, c, &r), 0);
    ck_assert_uint_eq(c->n, 49);
    ck_assert_uint_eq(r.n_corrupt, 1);
    ck_assert_uint_eq(r.corrupt_seq, 17);
    ck_assert(r.is_end);
    for (size_t i = 0; i < c->n; i++) {
        ck_assert_uint_ne(c->seqs[i], 17);
    }
    /* Reading exactly at the bad one skips it and goes on. */
    c->n = 0;
    ck_assert_int_eq(store_read(s, id, 17, 2, SIZE_MAX, collect_cb, c, &r), 0);
    ck_assert_uint_eq(r.n_corrupt, 1);
    ck_assert_uint_eq(c->n, 1);
    ck_assert_uint_eq(c->seqs[0], 18);
    struct store_stats st;
    store_stats(s, &st);
    ck_assert_uint_eq(st.n_crc_errors, 2);
    free(c);
    store_close(s);

    char *buf = NULL;
    size_t len = 0;
    FILE *rep = open_memstream(&buf, &len);
    struct store_verify_result vr;
    ck_assert_int_eq(store_verify(g_dir, rep, &vr), FERRY_ESTORAGE);
    fclose(rep);
    ck_assert_uint_eq(vr.n_crc_errors, 1);
    ck_assert_uint_eq(vr.n_gaps, 0);
    ck_assert_uint_eq(vr.n_msgs, 50);
    ck_assert_ptr_nonnull(strstr(buf, "seq 17: CRC mismatch"));
    free(buf);
}
END_TEST

/* ---- durable consumer records -------------------------------------------- */

struct crec_seen {
    int n;
    char keys[8][32];
};

static int crec_collect(void *ctx, const char *key, size_t key_len, const void *value,
                        size_t value_len)
{
    struct crec_seen *c = ctx;
    (void)value;
    (void)value_len;
    ck_assert_uint_lt(key_len, sizeof(c->keys[0]));
    ck_assert_int_lt(c->n, 8);
    memcpy(c->keys[c->n], key, key_len);
    c->keys[c->n][key_len] = '\0'; /* the topic part, up to the key's NUL */
    c->n++;
    return 0;
}

/* Stands in for consumer.c's check: "BAD" records are refused, and a
 * record on a topic the store lacks must say "new". */
static int crec_check(void *ctx, const char *key, size_t key_len, const void *value,
                      size_t value_len, const struct store_topic_info *topic, char *why,
                      size_t why_len)
{
    int *n_calls = ctx;
    (*n_calls)++;
    (void)key;
    (void)key_len;
    if (value_len == 3 && memcmp(value, "BAD", 3) == 0) {
        snprintf(why, why_len, "bad record");
        return 1;
    }
    if (topic == NULL && !(value_len == 3 && memcmp(value, "new", 3) == 0)) {
        snprintf(why, why_len, "no topic");
        return 1;
    }
    if (topic != NULL && topic->last_seq != 3) {
        snprintf(why, why_len, "wrong topic counters");
        return 1;
    }
    return 0;
}

START_TEST(test_store_consumer_records_listed_and_verified)
{
    struct store *s = open_store(NULL);
    for (int i = 0; i < 3; i++) {
        put1(s, "orders", "x", 1000 + i);
    }
    struct store_kv recs[] = {
        {"orders\0good", 11, "ok!", 3}, {"orders\0broken", 13, "BAD", 3},
        {"ghost\0waits", 11, "new", 3}, {"ghost\0lost", 10, "ok!", 3},
        {"nonul", 5, "ok!", 3},
    };
    ck_assert_int_eq(store_consumers_put(s, recs, 5), 0);
    struct crec_seen seen = {0};
    ck_assert_int_eq(store_consumers_foreach(s, "orders", 7, crec_collect, &seen), 2);
    ck_assert_int_eq(seen.n, 2);
    ck_assert_str_eq(seen.keys[0], "orders");
    memset(&seen, 0, sizeof(seen));
    ck_assert_int_eq(store_consumers_foreach(s, NULL, 0, crec_collect, &seen), 5);
    /* A deleted record is gone from the walk. */
    struct store_kv del = {"ghost\0lost", 10, NULL, 0};
    ck_assert_int_eq(store_consumers_put(s, &del, 1), 0);
    memset(&seen, 0, sizeof(seen));
    ck_assert_int_eq(store_consumers_foreach(s, NULL, 0, crec_collect, &seen), 4);
    store_close(s);

    char *buf = NULL;
    size_t len = 0;
    FILE *rep = open_memstream(&buf, &len);
    struct store_verify_result vr;
    int n_calls = 0;
    ck_assert_int_eq(store_verify_ex(g_dir, rep, crec_check, &n_calls, &vr), FERRY_ESTORAGE);
    fclose(rep);
    ck_assert_int_eq(n_calls, 3); /* the key without a NUL never reaches the check */
    ck_assert_uint_eq(vr.n_consumers, 4);
    ck_assert_uint_eq(vr.n_consumer_errors, 2);
    ck_assert_uint_eq(vr.n_problems, 2);
    ck_assert_ptr_nonnull(strstr(buf, "consumer 'broken' on 'orders': bad record"));
    ck_assert_ptr_nonnull(strstr(buf, "consumer key 'nonul'"));
    ck_assert_ptr_null(strstr(buf, "'good'"));
    ck_assert_ptr_null(strstr(buf, "'waits'"));
    free(buf);

    /* Without a check only the key shapes are judged. */
    ck_assert_int_eq(store_verify(g_dir, NULL, &vr), FERRY_ESTORAGE);
    ck_assert_uint_eq(vr.n_consumer_errors, 1);

    /* Healthy again once the two are deleted. */
    s = open_store(NULL);
    struct store_kv dels[] = {{"orders\0broken", 13, NULL, 0}, {"nonul", 5, NULL, 0}};
    ck_assert_int_eq(store_consumers_put(s, dels, 2), 0);
    store_close(s);
    n_calls = 0;
    ck_assert_int_eq(store_verify_ex(g_dir, NULL, crec_check, &n_calls, &vr), 0);
    ck_assert_int_eq(n_calls, 2);
    ck_assert_uint_eq(vr.n_consumers, 2);
}
END_TEST

/* ---- open ---------------------------------------------------------------- */

START_TEST(test_store_refuses_foreign_directories)
{
    struct store *s = NULL;
    char path[128];

    /* A random file named data.mdb. */
    snprintf(path, sizeof(path), "%s/data.mdb", g_dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 20000; i++) {
        fputc((i * 7919) & 0xff, f);
    }
    fclose(f);
    ck_assert_int_eq(store_open(g_dir, NULL, &s, g_err, sizeof(g_err)), FERRY_ESTORAGE);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(g_err, "not an LMDB file"));
    ck_assert_int_eq(store_verify(g_dir, NULL, NULL), FERRY_ESTORAGE);
    unlink(path);

    /* A directory holding someone else's files. */
    snprintf(path, sizeof(path), "%s/notes.txt", g_dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("hello\n", f);
    fclose(f);
    ck_assert_int_eq(store_open(g_dir, NULL, &s, g_err, sizeof(g_err)), FERRY_ESTORAGE);
    ck_assert_ptr_nonnull(strstr(g_err, "not empty"));
    unlink(path);

    /* An LMDB environment whose format record lacks our magic. */
    s = open_store(NULL);
    put1(s, "t", "m", 1);
    store_close(s);
    ck_assert_int_ge(flip_in_file("FERRYSTO"), 1);
    s = NULL;
    ck_assert_int_eq(store_open(g_dir, NULL, &s, g_err, sizeof(g_err)), FERRY_ESTORAGE);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(g_err, "not a ferry store"));
    ck_assert_int_eq(store_verify(g_dir, NULL, NULL), FERRY_ESTORAGE);

    /* Not a directory at all, and a missing parent. */
    ck_assert_int_eq(store_open("/dev/null", NULL, &s, g_err, sizeof(g_err)), -ENOTDIR);
    ck_assert_int_eq(store_open("/nonexistent-ferry/x", NULL, &s, g_err, sizeof(g_err)), -ENOENT);
    ck_assert_int_eq(store_verify("/nonexistent-ferry", NULL, NULL), -ENOENT);
}
END_TEST

START_TEST(test_store_creates_missing_dir_and_refuses_second_opener)
{
    char sub[128];
    snprintf(sub, sizeof(sub), "%s/sub", g_dir);
    struct store *s = NULL;
    ck_assert_int_eq(store_open(sub, NULL, &s, g_err, sizeof(g_err)), 0);
    struct store *s2 = NULL;
    ck_assert_int_eq(store_open(sub, NULL, &s2, g_err, sizeof(g_err)), -EBUSY);
    ck_assert_ptr_null(s2);
    ck_assert_ptr_nonnull(strstr(g_err, "in use"));
    /* The verifier may look while the broker runs. */
    ck_assert_int_eq(store_verify(sub, NULL, NULL), 0);
    store_close(s);
    ck_assert_int_eq(store_open(sub, NULL, &s, g_err, sizeof(g_err)), 0);
    store_close(s);
    struct store_options o;
    store_options_init(&o);
    o.map_size_max = 1;
    ck_assert_int_eq(store_open(sub, &o, &s, g_err, sizeof(g_err)), FERRY_EINVAL);
}
END_TEST

START_TEST(test_store_open_reads_only_the_topic_table)
{
    struct store *s = open_store(NULL);
    for (int round = 0; round < 10; round++) {
        struct store_batch *b;
        ck_assert_int_eq(store_batch_begin(s, &b), 0);
        for (int i = 0; i < 1500; i++) {
            char topic[16];
            snprintf(topic, sizeof(topic), "s.%d", i % 4);
            struct store_msg_in m = msg_text("some stored message", round * 10000 + i);
            ck_assert_int_eq(store_batch_append(b, topic, strlen(topic), &m, NULL), 0);
        }
        ck_assert_int_eq(store_batch_commit(b), 0);
    }
    store_close(s);
    s = open_store(NULL);
    struct store_stats st;
    store_stats(s, &st);
    /* meta record + 4 topic records + the last key of msgs and of tidx,
     * while 15000 messages are stored. */
    ck_assert_uint_eq(st.n_topics, 4);
    ck_assert_uint_le(st.n_open_reads, 1 + 4 + 2);
    ck_assert_uint_eq(put1(s, "s.0", "next", 1), 3751);
    store_close(s);
}
END_TEST

/* store_verify() writes its report while its read transaction is open, so
 * a report stream can stop a verifier right there: these cookies either
 * park it (env open, reader slot held) or kill it (slot left behind). */
static int g_ready_fd = -1;
static int g_go_fd = -1;

static ssize_t park_write(void *c, const char *buf, size_t n)
{
    (void)c;
    (void)buf;
    static int is_parked; /* park on the first write only */
    char x = 'r';
    if (is_parked++) {
        return (ssize_t)n;
    }
    if (write(g_ready_fd, &x, 1) != 1) {
        _exit(2);
    }
    if (read(g_go_fd, &x, 1) < 0) {
        _exit(2);
    }
    return (ssize_t)n;
}

static ssize_t kill_write(void *c, const char *buf, size_t n)
{
    (void)c;
    (void)buf;
    (void)n;
    kill(getpid(), SIGKILL);
    return -1;
}

static pid_t spawn_verifier(cookie_write_function_t *fn)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        cookie_io_functions_t io = {.write = fn};
        FILE *f = fopencookie(NULL, "w", io);
        setvbuf(f, NULL, _IONBF, 0);
        store_verify(g_dir, f, NULL);
        _exit(0);
    }
    return pid;
}

START_TEST(test_store_open_clears_stale_reader_slots)
{
    struct store *s = open_store(NULL);
    put1(s, "stale", "m", 1);
    store_close(s);
    int ready[2];
    int go[2];
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    g_ready_fd = ready[1];
    g_go_fd = go[0];
    /* A parked verifier keeps the environment open, so LMDB does not reset
     * its reader table when the next process opens it. */
    pid_t parked = spawn_verifier(park_write);
    char x;
    ck_assert_int_eq(read(ready[0], &x, 1), 1);
    pid_t killed = spawn_verifier(kill_write);
    int status = 0;
    ck_assert_int_eq(waitpid(killed, &status, 0), killed);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    s = open_store(NULL);
    struct store_stats st;
    store_stats(s, &st);
    ck_assert_int_eq(st.n_stale_readers, 1);
    ck_assert_uint_eq(put1(s, "stale", "m", 2), 2);
    store_close(s);
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    ck_assert_int_eq(waitpid(parked, &status, 0), parked);
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
}
END_TEST

START_TEST(test_store_sync_modes_store_and_reopen)
{
    const enum store_sync_mode modes[] = {STORE_SYNC_ALWAYS, STORE_SYNC_INTERVAL, STORE_SYNC_NONE};
    uint64_t n = 0;
    for (size_t i = 0; i < 3; i++) {
        struct store_options o;
        store_options_init(&o);
        o.sync_mode = modes[i];
        struct store *s = open_store(&o);
        for (int k = 0; k < 10; k++) {
            ck_assert_uint_eq(put1(s, "sync", "m", k), ++n);
        }
        ck_assert_int_eq(store_sync(s), 0);
        struct store_stats st;
        store_stats(s, &st);
        ck_assert_int_eq(st.sync_mode, modes[i]);
        store_close(s);
    }
    ck_assert_int_eq(store_verify(g_dir, NULL, NULL), 0);
}
END_TEST

START_TEST(test_store_rejects_bad_arguments)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    struct store_msg_in m = msg_text("x", 1);
    char longname[STORE_TOPIC_MAX + 2];
    memset(longname, 'n', sizeof(longname));
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(store_batch_append(b, "", 0, &m, NULL), FERRY_EINVAL);
    ck_assert_int_eq(store_batch_append(b, longname, sizeof(longname), &m, NULL), FERRY_EINVAL);
    ck_assert_int_eq(store_batch_append(b, longname, STORE_TOPIC_MAX, &m, NULL), 0);
    ck_assert_int_eq(store_batch_commit(b), 0);
    /* An empty batch commits as a no-op. */
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(store_batch_commit(b), 0);
    struct store_topic_info info;
    char name[STORE_TOPIC_MAX + 1];
    ck_assert_int_eq(store_topic_info(s, longname, STORE_TOPIC_MAX, &info), 0);
    ck_assert_int_eq(store_topic_info_by_id(s, info.id, &info, name), 0);
    ck_assert_uint_eq(strlen(name), STORE_TOPIC_MAX);
    ck_assert_int_eq(store_topic_info_by_id(s, 777, &info, name), FERRY_ENOTOPIC);
    store_close(s);
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("store");
    add_case(s, tcase_create("store_append_and_read_back_in_order"),
             test_store_append_and_read_back_in_order);
    add_case(s, tcase_create("store_sequences_gapless_across_many_topics"),
             test_store_sequences_gapless_across_many_topics);
    add_case(s, tcase_create("store_sequences_continue_after_reopen"),
             test_store_sequences_continue_after_reopen);
    add_case(s, tcase_create("store_aborted_batch_does_not_consume_sequences"),
             test_store_aborted_batch_does_not_consume_sequences);
    add_case(s, tcase_create("store_chunked_read_returns_everything_once"),
             test_store_chunked_read_returns_everything_once);
    add_case(s, tcase_create("store_read_refuse_keeps_position"),
             test_store_read_refuse_keeps_position);
    add_case(s, tcase_create("store_seek_by_time"), test_store_seek_by_time);
    add_case(s, tcase_create("store_seek_by_time_across_index_buckets"),
             test_store_seek_by_time_across_index_buckets);
    add_case(s, tcase_create("store_last_n_start_positions"), test_store_last_n_start_positions);
    add_case(s, tcase_create("store_topic_info_list_and_purge"),
             test_store_topic_info_list_and_purge);
    add_case(s, tcase_create("store_purge_and_list_span_many_chunks"),
             test_store_purge_and_list_span_many_chunks);
    add_case(s, tcase_create("store_purge_of_exactly_one_chunk_at_the_end"),
             test_store_purge_of_exactly_one_chunk_at_the_end);
    add_case(s, tcase_create("store_flipped_byte_is_detected_and_never_delivered"),
             test_store_flipped_byte_is_detected_and_never_delivered);
    add_case(s, tcase_create("store_consumer_records_listed_and_verified"),
             test_store_consumer_records_listed_and_verified);
    add_case(s, tcase_create("store_refuses_foreign_directories"),
             test_store_refuses_foreign_directories);
    add_case(s, tcase_create("store_creates_missing_dir_and_refuses_second_opener"),
             test_store_creates_missing_dir_and_refuses_second_opener);
    add_case(s, tcase_create("store_open_reads_only_the_topic_table"),
             test_store_open_reads_only_the_topic_table);
    add_case(s, tcase_create("store_open_clears_stale_reader_slots"),
             test_store_open_clears_stale_reader_slots);
    add_case(s, tcase_create("store_sync_modes_store_and_reopen"),
             test_store_sync_modes_store_and_reopen);
    add_case(s, tcase_create("store_rejects_bad_arguments"), test_store_rejects_bad_arguments);
    return s;
}
