/*
 * test_store_lastval.c - the last-value index (store_lastval.c): a key's
 * newest message replaces its older one, a tombstone removes the key,
 * messages without a key or outside last-value topics are not indexed,
 * the list comes in sequence order in bounded chunks, the index survives
 * a crash that left only the log and a map resize, holds retention back,
 * and goes with a purge.
 */
#include "store_test.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Append key (NULL: none) = value ("" : a tombstone) to a last-value
 * topic (is_lv) ; returns its seq. */
static uint64_t put_lv(struct store_batch *b, const char *topic, const char *key, const char *value,
                       bool is_lv)
{
    struct store_msg_in m = {.publish_time = 1000,
                             .payload = value,
                             .payload_len = strlen(value),
                             .key = key,
                             .key_len = key ? strlen(key) : 0,
                             .is_last_value = is_lv};
    struct store_append_result ar;
    ck_assert_int_eq(store_batch_append(b, topic, strlen(topic), &m, &ar), 0);
    return ar.seq;
}

static uint64_t put(struct store_batch *b, const char *topic, const char *key, const char *value)
{
    return put_lv(b, topic, key, value, true);
}

/* What store_lastval_read passed: "seq:key=value " each. */
struct got {
    char text[8192];
    size_t n;
    size_t refuse_after; /* refuse the message after this many (0: never) */
};

static enum store_read_verdict on_msg(void *ctx, const struct store_msg *m)
{
    struct got *g = ctx;
    if (g->refuse_after && g->n == g->refuse_after) {
        return STORE_READ_REFUSE;
    }
    size_t len = strlen(g->text);
    snprintf(g->text + len, sizeof(g->text) - len, "%llu:%.*s=%.*s ", (unsigned long long)m->seq,
             (int)m->key_len, (const char *)m->key, (int)m->payload_len, (const char *)m->payload);
    g->n++;
    return STORE_READ_CONTINUE;
}

/* The seqs store_lastval_read passed, with each payload checked. */
struct seqs {
    uint64_t v[16];
    size_t n;
};

static enum store_read_verdict on_seq(void *ctx, const struct store_msg *m)
{
    struct seqs *q = ctx;
    const char *key = m->key;
    ck_assert_uint_gt(m->payload_len, 0);
    ck_assert_int_eq(((const char *)m->payload)[0], 'a' + (key[1] - '0'));
    if (q->n < 16) {
        q->v[q->n] = m->seq;
    }
    q->n++;
    return STORE_READ_CONTINUE;
}

/* ferryd --verify finds nothing wrong, the last-value index included. */
static void verify_clean(void)
{
    struct store_verify_result r;
    int rc = store_verify(g_dir, stderr, &r);
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(r.n_problems, 0);
}

/* The whole list, from seq 1 to the end, in one call. */
static const char *list(struct store *s, const char *topic, struct got *g)
{
    memset(g, 0, sizeof(*g));
    struct store_read_result res;
    ck_assert_int_eq(
        store_lastval_read(s, topic_id(s, topic), 1, UINT64_MAX, 1000, 1 << 20, on_msg, g, &res),
        0);
    ck_assert(res.is_end);
    return g->text;
}

START_TEST(test_lastval_newest_per_key_and_tombstones)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    struct got g;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_uint_eq(put(b, "lv.a", "k1", "one"), 1);
    ck_assert_uint_eq(put(b, "lv.a", "k2", "two"), 2);
    ck_assert_uint_eq(put(b, "lv.a", "k1", "ONE"), 3); /* newer k1, same batch */
    ck_assert_uint_eq(put(b, "lv.a", NULL, "nokey"), 4);
    ck_assert_uint_eq(put(b, "lv.a", "k3", "three"), 5);
    ck_assert_int_eq(store_batch_commit(b), 0);
    ck_assert_str_eq(list(s, "lv.a", &g), "2:k2=two 3:k1=ONE 5:k3=three ");
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_uint_eq(put(b, "lv.a", "k3", ""), 6);    /* tombstone */
    ck_assert_uint_eq(put(b, "lv.a", "k9", ""), 7);    /* tombstone of nothing */
    ck_assert_uint_eq(put(b, "lv.a", "k2", "TWO"), 8); /* newer k2, next batch */
    /* Another topic, and a keyed message of a topic that is not last-value. */
    ck_assert_uint_eq(put(b, "lv.b", "k1", "b1"), 1);
    ck_assert_uint_eq(put_lv(b, "plain", "k1", "p1", false), 1);
    ck_assert_int_eq(store_batch_commit(b), 0);
    ck_assert_str_eq(list(s, "lv.a", &g), "3:k1=ONE 8:k2=TWO ");
    ck_assert_str_eq(list(s, "lv.b", &g), "1:k1=b1 ");
    ck_assert_str_eq(list(s, "plain", &g), "");
    /* Every message is still stored, tombstones too (gapless). */
    struct store_topic_info info;
    ck_assert_int_eq(store_topic_info(s, "lv.a", 4, &info), 0);
    ck_assert_uint_eq(info.n_msgs, 8);
    /* An aborted batch leaves the index as it was. */
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    put(b, "lv.a", "k1", "");
    put(b, "lv.a", "k4", "four");
    store_batch_abort(b);
    ck_assert_str_eq(list(s, "lv.a", &g), "3:k1=ONE 8:k2=TWO ");
    /* A key too long for the index is refused, and only in such a topic. */
    static char long_key[STORE_LASTVAL_KEY_MAX + 2];
    memset(long_key, 'x', sizeof(long_key) - 1);
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    struct store_msg_in m = {.payload = "v", .payload_len = 1, .key = long_key};
    m.key_len = STORE_LASTVAL_KEY_MAX + 1;
    m.is_last_value = true;
    ck_assert_int_eq(store_batch_append(b, "lv.a", 4, &m, NULL), FERRY_EINVAL);
    m.key_len = STORE_LASTVAL_KEY_MAX;
    ck_assert_int_eq(store_batch_append(b, "lv.a", 4, &m, NULL), 0);
    m.key_len = STORE_LASTVAL_KEY_MAX + 1;
    m.is_last_value = false;
    ck_assert_int_eq(store_batch_append(b, "plain", 5, &m, NULL), 0);
    ck_assert_int_eq(store_batch_commit(b), 0);
    const char *text = list(s, "lv.a", &g);
    ck_assert_int_eq(strncmp(text, "3:k1=ONE 8:k2=TWO 9:xxx", 23), 0);
    ck_assert_int_eq((int)strlen(text), 23 + STORE_LASTVAL_KEY_MAX);
    store_close(s);
    verify_clean();
}
END_TEST

START_TEST(test_lastval_read_in_chunks_from_a_position)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    for (int i = 0; i < 100; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i % 10);
        put(b, "lv.c", key, i % 2 ? "odd" : "even"); /* seqs 91..100 are current */
    }
    ck_assert_int_eq(store_batch_commit(b), 0);
    uint32_t id = topic_id(s, "lv.c");
    struct got g;
    memset(&g, 0, sizeof(g));
    struct store_read_result res;
    /* Bounded by max_msgs. */
    ck_assert_int_eq(store_lastval_read(s, id, 1, UINT64_MAX, 3, 1 << 20, on_msg, &g, &res), 0);
    ck_assert_uint_eq(res.n_msgs, 3);
    ck_assert_uint_eq(res.next_seq, 94);
    ck_assert(!res.is_end);
    /* From there, with an upper bound: 94..97, then the end at 98. */
    ck_assert_int_eq(store_lastval_read(s, id, res.next_seq, 97, 100, 1 << 20, on_msg, &g, &res),
                     0);
    ck_assert_uint_eq(res.n_msgs, 4);
    ck_assert(res.is_end);
    ck_assert_uint_eq(res.next_seq, 98);
    ck_assert_str_eq(g.text, "91:k0=even 92:k1=odd 93:k2=even 94:k3=odd 95:k4=even 96:k5=odd "
                             "97:k6=even ");
    /* A refusal leaves the position on the refused one. */
    memset(&g, 0, sizeof(g));
    g.refuse_after = 2;
    ck_assert_int_eq(store_lastval_read(s, id, 1, UINT64_MAX, 100, 1 << 20, on_msg, &g, &res), 0);
    ck_assert_uint_eq(res.next_seq, 93);
    ck_assert(!res.is_end);
    /* An unknown topic, a bound below everything: empty, at the end. */
    ck_assert_int_eq(store_lastval_read(s, 999, 1, UINT64_MAX, 10, 1 << 20, on_msg, &g, &res), 0);
    ck_assert(res.is_end);
    ck_assert_int_eq(store_lastval_read(s, id, 1, 90, 10, 1 << 20, on_msg, &g, &res), 0);
    ck_assert(res.is_end);
    ck_assert_uint_eq(res.next_seq, 91);
    ck_assert_int_eq(store_lastval_read(s, id, 1, 90, 0, 1 << 20, on_msg, &g, &res), FERRY_EINVAL);
    store_close(s);
}
END_TEST

START_TEST(test_lastval_holds_retention_back_and_goes_with_a_purge)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    struct got g;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    put(b, "lv.r", "k1", "a"); /* 1 */
    put(b, "lv.r", "k2", "b"); /* 2 */
    put(b, "lv.r", "k1", "c"); /* 3 */
    put(b, "lv.r", NULL, "d"); /* 4 */
    put(b, "lv.r", "k2", "e"); /* 5 */
    put(b, "lv.r", "k1", "");  /* 6: k1 gone */
    put(b, "lv.r", "k3", "f"); /* 7 */
    put(b, "lv.r", NULL, "g"); /* 8 */
    put(b, "lv.r", "k3", "h"); /* 9 */
    ck_assert_int_eq(store_batch_commit(b), 0);
    ck_assert_str_eq(list(s, "lv.r", &g), "5:k2=e 9:k3=h ");
    uint64_t n = 0;
    bool is_done = false;
    /* Asked to keep one: it keeps everything from 5 (k2's current) on. */
    ck_assert_int_eq(store_topic_trim(s, "lv.r", 4, 8, &n, &is_done), 0);
    ck_assert_uint_eq(n, 4);
    ck_assert(is_done);
    struct store_topic_info info;
    ck_assert_int_eq(store_topic_info(s, "lv.r", 4, &info), 0);
    ck_assert_uint_eq(info.first_seq, 5);
    ck_assert_str_eq(list(s, "lv.r", &g), "5:k2=e 9:k3=h ");
    ck_assert_int_eq(store_topic_trim(s, "lv.r", 4, 8, &n, &is_done), 0);
    ck_assert_uint_eq(n, 0);
    /* A tombstone of k2 lets the trim go up to k3's current. */
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    put(b, "lv.r", "k2", ""); /* 10 */
    ck_assert_int_eq(store_batch_commit(b), 0);
    ck_assert_int_eq(store_topic_trim(s, "lv.r", 4, 9, &n, &is_done), 0);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(store_topic_info(s, "lv.r", 4, &info), 0);
    ck_assert_uint_eq(info.first_seq, 9);
    ck_assert_str_eq(list(s, "lv.r", &g), "9:k3=h ");
    /* A purge takes the index with the messages. */
    ck_assert_int_eq(store_topic_purge(s, "lv.r", 4, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(list(s, "lv.r", &g), "");
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_uint_eq(put(b, "lv.r", "k3", "i"), 11);
    ck_assert_int_eq(store_batch_commit(b), 0);
    ck_assert_str_eq(list(s, "lv.r", &g), "11:k3=i ");
    store_close(s);
    verify_clean();
}
END_TEST

/* The crashed writer's batch: 2,000 large messages over keys k0..k6, k1's
 * last one a tombstone. */
static int fill_lastval(struct store_batch *b)
{
    static char big[2000];
    for (int i = 0; i < 2000; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i % 7);
        memset(big, 'a' + i % 7, sizeof(big));
        struct store_msg_in m = {.publish_time = i,
                                 .payload = big,
                                 .payload_len = sizeof(big),
                                 .key = key,
                                 .key_len = strlen(key),
                                 .is_last_value = true};
        if (i == 1996) {
            m.payload_len = 0; /* k1's tombstone (1996 % 7 == 1) */
        }
        if (store_batch_append(b, "lv.x", 4, &m, NULL) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Entries written by batches that were only logged come back with their
 * messages when the log is replayed, overwrites and tombstones included;
 * so do entries written while the map grew under the batch. */
START_TEST(test_lastval_survives_a_crash_and_a_map_resize)
{
    struct store_options o;
    store_options_init(&o);
    o.map_size_initial = 1 << 20; /* small: the batch below grows it */
    crash_after_log(&o, fill_lastval);
    struct store *s = open_store(&o);
    struct store_stats stats;
    store_stats(s, &stats);
    ck_assert_uint_gt(stats.n_replayed, 0);
    ck_assert_uint_gt(stats.n_map_grows + stats.n_batch_replays, 0);
    struct seqs q = {0};
    struct store_read_result res;
    for (uint64_t from = 1;;) {
        size_t before = q.n;
        ck_assert_int_eq(store_lastval_read(s, topic_id(s, "lv.x"), from, UINT64_MAX, 2, 1 << 20,
                                            on_seq, &q, &res),
                         0);
        ck_assert_uint_le(q.n - before, 2);
        from = res.next_seq;
        if (res.is_end) {
            break;
        }
    }
    /* Current: seqs 1994..2000 but k1's (1997, i == 1996) is a tombstone. */
    uint64_t *seqs = q.v;
    size_t n = q.n;
    ck_assert_uint_eq(n, 6);
    ck_assert_uint_eq(seqs[0], 1994);
    ck_assert_uint_eq(seqs[1], 1995);
    ck_assert_uint_eq(seqs[2], 1996);
    ck_assert_uint_eq(seqs[3], 1998);
    ck_assert_uint_eq(seqs[5], 2000);
    store_close(s);
    verify_clean();
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("store_lastval");
    add_case(s, tcase_create("lastval_newest_per_key_and_tombstones"),
             test_lastval_newest_per_key_and_tombstones);
    add_case(s, tcase_create("lastval_read_in_chunks_from_a_position"),
             test_lastval_read_in_chunks_from_a_position);
    add_case(s, tcase_create("lastval_holds_retention_back_and_goes_with_a_purge"),
             test_lastval_holds_retention_back_and_goes_with_a_purge);
    add_case(s, tcase_create("lastval_survives_a_crash_and_a_map_resize"),
             test_lastval_survives_a_crash_and_a_map_resize);
    return s;
}
