/*
 * test_store_offline.c - the store seen from outside a broker
 * (store_offline.c): a read-only open beside an open store sees its
 * commits, refuses writes; a compacted copy of it is a store that opens,
 * verifies and holds the same topics; recovery on demand says -EBUSY while
 * the store is open.
 */
#include "store.h"
#include "tmpdir.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char g_dir[64], g_copy[64];
static char g_err[512];

static void setup(void)
{
    tmpdir_make(g_dir, sizeof(g_dir), "ferry-offline");
    tmpdir_make(g_copy, sizeof(g_copy), "ferry-offline-copy");
    g_err[0] = '\0';
}

static void teardown(void)
{
    tmpdir_remove(g_dir);
    tmpdir_remove(g_copy);
}

/* n messages "m<i>" appended to topic and committed. */
static void append_n(struct store *s, const char *topic, int n)
{
    struct store_batch *b;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    for (int i = 0; i < n; i++) {
        char text[32];
        int len = snprintf(text, sizeof(text), "m%d", i);
        struct store_msg_in m = {
            .publish_time = 1000 + i, .payload = text, .payload_len = (size_t)len};
        ck_assert_int_eq(store_batch_append(b, topic, strlen(topic), &m, NULL), 0);
    }
    ck_assert_int_eq(store_batch_commit(b), 0);
}

static uint64_t last_seq(struct store *s, const char *topic)
{
    struct store_topic_info ti;
    ck_assert_int_eq(store_topic_info(s, topic, strlen(topic), &ti), 0);
    return ti.last_seq;
}

START_TEST(test_store_readonly_beside_an_open_store)
{
    struct store *s, *ro;
    ck_assert_int_eq(store_open(g_dir, NULL, &s, g_err, sizeof(g_err)), 0);
    append_n(s, "a", 10);
    ck_assert_int_eq(store_open_readonly(g_dir, &ro, g_err, sizeof(g_err)), 0);
    ck_assert_uint_eq(last_seq(ro, "a"), 10);
    /* Each call sees the commits made before it. */
    append_n(s, "a", 5);
    append_n(s, "b", 1);
    ck_assert_uint_eq(last_seq(ro, "a"), 15);
    ck_assert_uint_eq(last_seq(ro, "b"), 1);
    /* Readers only; the recovery of an open store is not ours to do. */
    struct store_batch *b;
    ck_assert_int_eq(store_batch_begin(ro, &b), FERRY_ESTORAGE);
    ck_assert_int_eq(store_is_failed(ro), 1);
    ck_assert_int_eq(store_recover(g_dir, NULL, g_err, sizeof(g_err)), -EBUSY);
    ck_assert_int_eq(store_copy(s, 1, g_err, sizeof(g_err)), FERRY_EINVAL);
    store_close(ro);
    store_close(s);
    uint64_t n = 99;
    ck_assert_int_eq(store_recover(g_dir, &n, g_err, sizeof(g_err)), 0);
    ck_assert_uint_eq(n, 0); /* closed cleanly: nothing left in the log */
    /* No store, nothing opened or made. */
    ck_assert_int_eq(store_open_readonly(g_copy, &ro, g_err, sizeof(g_err)), -ENOENT);
    ck_assert_int_eq(store_recover(g_copy, NULL, g_err, sizeof(g_err)), -ENOENT);
    ck_assert_int_eq(access(g_copy, F_OK), 0);
}
END_TEST

START_TEST(test_store_copy_is_a_compacted_store)
{
    struct store *s, *ro;
    ck_assert_int_eq(store_open(g_dir, NULL, &s, g_err, sizeof(g_err)), 0);
    for (int i = 0; i < 20; i++) {
        append_n(s, "a", 500);
    }
    append_n(s, "b", 3);
    uint64_t purged;
    ck_assert_int_eq(store_topic_purge(s, "a", 1, &purged), 0); /* free pages to leave out */
    append_n(s, "a", 2);
    ck_assert_int_eq(store_open_readonly(g_dir, &ro, g_err, sizeof(g_err)), 0);
    char path[128];
    snprintf(path, sizeof(path), "%s/data.mdb", g_copy);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(fd, 0);
    int rc = store_copy(ro, fd, g_err, sizeof(g_err));
    ck_assert_msg(rc == 0, "store_copy: %s", g_err);
    close(fd);
    store_close(ro);
    struct store_stats st;
    store_stats(s, &st);
    store_close(s);
    /* Smaller than the source's used part, and a whole store. */
    ck_assert_int_ge(access(path, F_OK), 0);
    struct store_verify_result vr;
    ck_assert_int_eq(store_verify(g_copy, NULL, &vr), 0);
    ck_assert_uint_eq(vr.n_topics, 2);
    ck_assert_uint_eq(vr.n_msgs, 5);
    ck_assert_int_eq(store_open(g_copy, NULL, &s, g_err, sizeof(g_err)), 0);
    struct store_stats cst;
    store_stats(s, &cst);
    ck_assert_uint_lt(cst.map_used, st.map_used);
    ck_assert_uint_eq(last_seq(s, "a"), 10002);
    ck_assert_uint_eq(last_seq(s, "b"), 3);
    append_n(s, "a", 1); /* and it takes writes where the source stopped */
    ck_assert_uint_eq(last_seq(s, "a"), 10003);
    store_close(s);
}
END_TEST

/* A descriptor nobody reads any more: an error, not a signal. */
START_TEST(test_store_copy_to_a_closed_pipe_fails)
{
    struct store *s, *ro;
    ck_assert_int_eq(store_open(g_dir, NULL, &s, g_err, sizeof(g_err)), 0);
    append_n(s, "a", 10);
    store_close(s);
    ck_assert_int_eq(store_open_readonly(g_dir, &ro, g_err, sizeof(g_err)), 0);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(store_copy(ro, p[1], g_err, sizeof(g_err)), -EPIPE);
    close(p[1]);
    store_close(ro);
}
END_TEST

static void add(Suite *s, TCase *tc, const TTest *test)
{
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

Suite *test_suite(void);
Suite *test_suite(void)
{
    Suite *s = suite_create("store_offline");
    add(s, tcase_create("store_readonly_beside_an_open_store"),
        test_store_readonly_beside_an_open_store);
    add(s, tcase_create("store_copy_is_a_compacted_store"), test_store_copy_is_a_compacted_store);
    add(s, tcase_create("store_copy_to_a_closed_pipe_fails"),
        test_store_copy_to_a_closed_pipe_fails);
    return s;
}
