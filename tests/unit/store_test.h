/*
 * store_test.h - what the store's unit tests share: a fresh directory per
 * test (setup/teardown), opening, small appends and whole-topic reads.
 */
#ifndef FERRY_STORE_TEST_H
#define FERRY_STORE_TEST_H

#include "store.h"
#include "tmpdir.h"

#include <check.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[64];
static char g_err[512];

static inline void setup(void)
{
    tmpdir_make(g_dir, sizeof(g_dir), "ferry-store");
    g_err[0] = '\0';
}

static inline void teardown(void)
{
    tmpdir_remove(g_dir);
}

static inline struct store *open_store(const struct store_options *o)
{
    struct store *s = NULL;
    int rc = store_open(g_dir, o, &s, g_err, sizeof(g_err));
    ck_assert_msg(rc == 0, "store_open: %d %s", rc, g_err);
    return s;
}

static inline struct store_msg_in msg_text(const char *payload, int64_t t)
{
    struct store_msg_in m = {0};
    m.publish_time = t;
    m.payload = payload;
    m.payload_len = strlen(payload);
    return m;
}

/* 40 batches of 100 copies of payload to topic (publish time: the
 * batch's number). */
static inline void put_40x100(struct store *s, const char *topic, const char *payload)
{
    for (int round = 0; round < 40; round++) {
        struct store_batch *b;
        ck_assert_int_eq(store_batch_begin(s, &b), 0);
        for (int i = 0; i < 100; i++) {
            struct store_msg_in m = msg_text(payload, round);
            ck_assert_int_eq(store_batch_append(b, topic, strlen(topic), &m, NULL), 0);
        }
        ck_assert_int_eq(store_batch_commit(b), 0);
    }
}

/* Append one text message in its own batch; returns the seq. */
static inline uint64_t put1(struct store *s, const char *topic, const char *payload, int64_t t)
{
    struct store_batch *b;
    struct store_append_result ar;
    struct store_msg_in m = msg_text(payload, t);
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(store_batch_append(b, topic, strlen(topic), &m, &ar), 0);
    ck_assert_int_eq(store_batch_commit(b), 0);
    return ar.seq;
}

static inline uint32_t topic_id(struct store *s, const char *topic)
{
    struct store_topic_info info;
    ck_assert_int_eq(store_topic_info(s, topic, strlen(topic), &info), 0);
    return info.id;
}

/* Collects what a read delivers. */
struct collect {
    uint64_t seqs[20000];
    size_t n;
    size_t bytes;
    char last_payload[256];
    int64_t last_time;
    size_t stop_after; /* 0: never */
};

static inline enum store_read_verdict collect_cb(void *ctx, const struct store_msg *m)
{
    struct collect *c = ctx;
    ck_assert_uint_lt(c->n, 20000);
    c->seqs[c->n++] = m->seq;
    c->bytes += m->payload_len;
    size_t n = m->payload_len < 255 ? m->payload_len : 255;
    memcpy(c->last_payload, m->payload, n);
    c->last_payload[n] = '\0';
    c->last_time = m->publish_time;
    if (c->stop_after && c->n >= c->stop_after) {
        return STORE_READ_STOP;
    }
    return STORE_READ_CONTINUE;
}

/* Read a whole topic in chunks; returns the number of chunks used. */
static inline size_t read_all(struct store *s, uint32_t id, uint64_t from, size_t max_msgs,
                              size_t max_bytes, struct collect *c, struct store_read_result *last)
{
    size_t chunks = 0;
    struct store_read_result r;
    do {
        ck_assert_int_eq(store_read(s, id, from, max_msgs, max_bytes, collect_cb, c, &r), 0);
        ck_assert_uint_ge(r.next_seq, from);
        from = r.next_seq;
        chunks++;
        ck_assert_uint_lt(chunks, 100000);
    } while (!r.is_end);
    if (last != NULL) {
        *last = r;
    }
    return chunks;
}

/* A writer that dies after its log write: a child opens the store with o,
 * begins a batch, lets fill append to it (0, or the child fails), logs the
 * batch and exits without committing or closing. Fails the test unless the
 * child got that far. */
static inline void crash_after_log(const struct store_options *o,
                                   int (*fill)(struct store_batch *b))
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct store *s;
        struct store_batch *b;
        if (store_open(g_dir, o, &s, g_err, sizeof(g_err)) != 0 || store_batch_begin(s, &b) != 0) {
            _exit(2);
        }
        if (fill(b) != 0) {
            _exit(3);
        }
        if (store_batch_log(b) != 0) {
            _exit(4);
        }
        _exit(0); /* the crash: logged, never committed */
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
}

static inline void add_case(Suite *s, TCase *tc, const TTest *test)
{
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

#endif
