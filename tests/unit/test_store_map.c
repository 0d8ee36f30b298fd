/*
 * test_store_map.c - the store under pressure: the map growing (at once,
 * in steps, under concurrent readers), the map full, a failing fsync
 * (fail-stop) and a full disk, the last two injected below.
 */
#include "store_test.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/*
 * Fault injection. The test program defines fdatasync, pwrite and writev
 * itself; the dynamic linker binds liblmdb's calls to these definitions, so
 * a test can make LMDB's sync fail with EIO or its writes with ENOSPC.
 */
static volatile int g_fail_fsync; /* errno to fail fdatasync with, 0: pass */
static volatile int g_fail_write; /* errno to fail pwrite/writev with */

int fdatasync(int fd)
{
    if (g_fail_fsync) {
        errno = g_fail_fsync;
        return -1;
    }
    return (int)syscall(SYS_fdatasync, fd);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (g_fail_write) {
        errno = g_fail_write;
        return -1;
    }
    return (ssize_t)syscall(SYS_pwrite64, fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
    if (g_fail_write) {
        errno = g_fail_write;
        return -1;
    }
    return (ssize_t)syscall(SYS_writev, fd, iov, n);
}

/* ---- map size ------------------------------------------------------------ */

START_TEST(test_store_map_full_refuses_then_recovers)
{
    struct store_options o;
    store_options_init(&o);
    o.map_size_initial = 256 << 10;
    o.map_size_max = 512 << 10;
    struct store *s = open_store(&o);
    char p[1000];
    memset(p, 'm', sizeof(p) - 1);
    p[sizeof(p) - 1] = '\0';
    uint64_t committed = 0;
    int rc = 0;
    for (int round = 0; round < 10000 && rc == 0; round++) {
        struct store_batch *b;
        ck_assert_int_eq(store_batch_begin(s, &b), 0);
        uint64_t n = 0;
        for (int i = 0; i < 10; i++) {
            struct store_msg_in m = msg_text(p, round);
            rc = store_batch_append(b, "fill", 4, &m, NULL);
            if (rc != 0) {
                break;
            }
            n++;
        }
        if (rc == FERRY_ESTORAGEFULL) {
            ck_assert_int_eq(store_batch_commit(b), 0); /* what fitted goes in */
            committed += n;
            break;
        }
        ck_assert_int_eq(rc, 0);
        rc = store_batch_commit(b);
        if (rc == 0) {
            committed += n;
        }
    }
    ck_assert_int_eq(rc, FERRY_ESTORAGEFULL);
    ck_assert_uint_gt(committed, 100);
    struct store_stats st;
    store_stats(s, &st);
    ck_assert(!st.is_failed);
    ck_assert_uint_eq(st.map_size, 512 << 10);
    ck_assert_uint_ge(st.n_full_errors, 1);

    /* Still full: a further append is refused, nothing is harmed. */
    struct store_batch *b;
    struct store_msg_in m = msg_text(p, 0);
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    int rc2 = store_batch_append(b, "fill", 4, &m, NULL);
    if (rc2 == 0) {
        rc2 = store_batch_commit(b);
        if (rc2 == 0) {
            committed++;
        }
    } else {
        store_batch_abort(b);
    }
    ck_assert(rc2 == 0 || rc2 == FERRY_ESTORAGEFULL);

    struct store_topic_info info;
    ck_assert_int_eq(store_topic_info(s, "fill", 4, &info), 0);
    ck_assert_uint_eq(info.last_seq, committed);
    struct collect *c = calloc(1, sizeof(*c));
    read_all(s, info.id, 1, 100, SIZE_MAX, c, NULL);
    ck_assert_uint_eq(c->n, committed);

    /* A purge frees the space; appends work again. */
    uint64_t removed;
    ck_assert_int_eq(store_topic_purge(s, "fill", 4, &removed), 0);
    ck_assert_uint_eq(removed, committed);
    ck_assert_uint_eq(put1(s, "fill", p, 1), committed + 1);
    for (int i = 0; i < 50; i++) {
        put1(s, "fill", p, 2);
    }
    store_close(s);
    ck_assert_int_eq(store_verify(g_dir, NULL, NULL), 0);

    /* Fill again, then a reopen with a larger maximum lets writes go on. */
    s = open_store(&o);
    for (rc = 0; rc == 0;) {
        ck_assert_int_eq(store_batch_begin(s, &b), 0);
        rc = store_batch_append(b, "fill", 4, &m, NULL);
        int crc = store_batch_commit(b);
        ck_assert(crc == 0 || crc == FERRY_ESTORAGEFULL);
        if (rc == 0) {
            rc = crc;
        }
    }
    ck_assert_int_eq(rc, FERRY_ESTORAGEFULL);
    store_close(s);
    o.map_size_max = 4 << 20;
    s = open_store(&o);
    for (int i = 0; i < 200; i++) {
        put1(s, "fill", p, 3);
    }
    free(c);
    store_close(s);
    ck_assert_int_eq(store_verify(g_dir, NULL, NULL), 0);
}
END_TEST

START_TEST(test_store_map_grows_transparently)
{
    struct store_options o;
    store_options_init(&o);
    o.map_size_initial = 128 << 10;
    o.map_size_max = 256 << 20;
    struct store *s = open_store(&o);
    char p[4000];
    memset(p, 'g', sizeof(p) - 1);
    p[sizeof(p) - 1] = '\0';
    uint64_t want = 0;
    for (int round = 0; round < 20; round++) {
        struct store_batch *b;
        ck_assert_int_eq(store_batch_begin(s, &b), 0);
        for (int i = 0; i < 100; i++) {
            struct store_msg_in m = msg_text(p, round);
            struct store_append_result ar;
            const char *topic = (i % 3) ? "grow.a" : "grow.b"; /* append and plain puts */
            ck_assert_int_eq(store_batch_append(b, topic, 6, &m, &ar), 0);
            if (i % 3) {
                ck_assert_uint_eq(ar.seq, ++want);
            }
        }
        ck_assert_int_eq(store_batch_commit(b), 0);
    }
    struct store_stats st;
    store_stats(s, &st);
    ck_assert_uint_ge(st.n_map_grows, 3);
    ck_assert_uint_ge(st.n_batch_replays, 1);
    ck_assert_uint_gt(st.map_size, 128 << 10);
    ck_assert_uint_eq(st.n_appends, 2000);
    struct collect *c = calloc(1, sizeof(*c));
    read_all(s, topic_id(s, "grow.a"), 1, 50, SIZE_MAX, c, NULL);
    ck_assert_uint_eq(c->n, want);
    free(c);
    store_close(s);
    ck_assert_int_eq(store_verify(g_dir, NULL, NULL), 0);
}
END_TEST

/* Past map_grow_step_max the map grows in steps of it, not by doubling:
 * the disk reserved for the map stays within a step of the data. */
START_TEST(test_store_map_grows_in_steps)
{
    struct store_options o;
    store_options_init(&o);
    o.map_size_initial = 1 << 20;
    o.map_size_max = 256 << 20;
    o.map_grow_step_max = 1 << 20;
    struct store *s = open_store(&o);
    char p[4000];
    memset(p, 's', sizeof(p) - 1);
    p[sizeof(p) - 1] = '\0';
    put_40x100(s, "steps", p);
    struct store_stats st;
    store_stats(s, &st);
    /* 16 MB of messages: doubling from 1 MiB would have reached 32 MiB. */
    ck_assert_uint_ge(st.n_map_grows, 10);
    ck_assert_msg(st.map_size <= st.map_used + (2u << 20), "map %zu for %zu used", st.map_size,
                  st.map_used);
    struct stat sb;
    char path[600];
    snprintf(path, sizeof(path), "%s/data.mdb", g_dir);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_msg((size_t)sb.st_blocks * 512 <= st.map_size + (1u << 20),
                  "%lld bytes on disk for a map of %zu", (long long)sb.st_blocks * 512,
                  st.map_size);
    store_close(s);
}
END_TEST

/* Readers in another thread while the writer grows the map. */
struct reader_arg {
    struct store *s;
    volatile int stop;
    uint64_t reads;
};

static enum store_read_verdict noop_cb(void *ctx, const struct store_msg *m)
{
    (void)ctx;
    (void)m;
    return STORE_READ_CONTINUE;
}

static void *reader_main(void *p)
{
    struct reader_arg *a = p;
    while (!__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE)) {
        struct store_topic_info info;
        if (store_topic_info(a->s, "conc", 4, &info) != 0) {
            continue;
        }
        struct store_read_result r;
        uint64_t from = 1;
        do {
            ck_assert_int_eq(store_read(a->s, info.id, from, 64, SIZE_MAX, noop_cb, NULL, &r), 0);
            ck_assert_uint_eq(r.n_corrupt, 0);
            from = r.next_seq;
            __atomic_fetch_add(&a->reads, 1, __ATOMIC_RELAXED);
        } while (!r.is_end && !__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE));
    }
    return NULL;
}

START_TEST(test_store_readers_run_during_map_growth)
{
    struct store_options o;
    store_options_init(&o);
    o.map_size_initial = 128 << 10;
    o.map_size_max = 128 << 20;
    o.sync_mode = STORE_SYNC_NONE;
    struct store *s = open_store(&o);
    struct reader_arg a = {.s = s};
    pthread_t th[2];
    put1(s, "conc", "first", 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, reader_main, &a), 0);
    }
    char p[2000];
    memset(p, 'c', sizeof(p) - 1);
    p[sizeof(p) - 1] = '\0';
    put_40x100(s, "conc", p);
    while (__atomic_load_n(&a.reads, __ATOMIC_RELAXED) < 2) {
        usleep(1000); /* on a loaded machine the readers may start late */
    }
    __atomic_store_n(&a.stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    ck_assert_uint_gt(a.reads, 0);
    struct store_stats st;
    store_stats(s, &st);
    ck_assert_uint_ge(st.n_map_grows, 3);
    ck_assert_int_eq(store_sync(s), 0);
    store_close(s);
    ck_assert_int_eq(store_verify(g_dir, NULL, NULL), 0);
}
END_TEST

/* ---- faults -------------------------------------------------------------- */

START_TEST(test_store_failed_fsync_fail_stops)
{
    struct store *s = open_store(NULL);
    for (int i = 0; i < 5; i++) {
        put1(s, "fs", "durable", i);
    }
    struct store_batch *b;
    struct store_msg_in m = msg_text("never acked", 9);
    struct store_append_result ar;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(store_batch_append(b, "fs", 2, &m, &ar), 0);
    ck_assert_uint_eq(ar.seq, 6);
    g_fail_fsync = EIO;
    ck_assert_int_eq(store_batch_commit(b), FERRY_ESTORAGE);
    g_fail_fsync = 0;
    /* Fail-stop: no more writes, even though the disk "works" again. */
    ck_assert_int_eq(store_is_failed(s), 1);
    ck_assert_int_eq(store_batch_begin(s, &b), FERRY_ESTORAGE);
    ck_assert_int_eq(store_topic_purge(s, "fs", 2, NULL), FERRY_ESTORAGE);
    struct store_stats st;
    store_stats(s, &st);
    ck_assert(st.is_failed);
    ck_assert_ptr_nonnull(st.fail_reason);
    /* Reads of what was committed keep working. */
    struct store_topic_info info;
    ck_assert_int_eq(store_topic_info(s, "fs", 2, &info), 0);
    ck_assert_uint_eq(info.last_seq, 5);
    struct collect c = {0};
    read_all(s, info.id, 1, 100, SIZE_MAX, &c, NULL);
    ck_assert_uint_eq(c.n, 5);
    store_close(s);

    /* A restart sees exactly what was acked. */
    s = open_store(NULL);
    ck_assert_int_eq(store_topic_info(s, "fs", 2, &info), 0);
    ck_assert_uint_eq(info.last_seq, 5);
    ck_assert_uint_eq(put1(s, "fs", "after restart", 10), 6);
    store_close(s);
    ck_assert_int_eq(store_verify(g_dir, NULL, NULL), 0);

    /* Under sync interval, a failed store_sync() fail-stops too. */
    struct store_options o;
    store_options_init(&o);
    o.sync_mode = STORE_SYNC_INTERVAL;
    s = open_store(&o);
    put1(s, "fs", "interval", 11);
    g_fail_fsync = EIO;
    ck_assert_int_eq(store_sync(s), FERRY_ESTORAGE);
    g_fail_fsync = 0;
    ck_assert_int_eq(store_sync(s), FERRY_ESTORAGE);
    ck_assert_int_eq(store_batch_begin(s, &b), FERRY_ESTORAGE);
    store_close(s);
}
END_TEST

START_TEST(test_store_disk_full_refuses_then_resumes)
{
    struct store *s = open_store(NULL);
    for (int i = 0; i < 3; i++) {
        put1(s, "df", "before", i);
    }
    struct store_batch *b;
    struct store_msg_in m = msg_text("refused", 9);
    struct store_append_result ar;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(store_batch_append(b, "df", 2, &m, &ar), 0);
    ck_assert_int_eq(store_batch_append(b, "df.new", 6, &m, &ar), 0);
    g_fail_write = ENOSPC;
    ck_assert_int_eq(store_batch_commit(b), FERRY_ESTORAGEFULL);
    g_fail_write = 0;
    ck_assert_int_eq(store_is_failed(s), 0);
    struct store_topic_info info;
    ck_assert_int_eq(store_topic_info(s, "df.new", 6, &info), FERRY_ENOTOPIC);
    /* Space is back: the refused batch's sequence is handed out again. */
    ck_assert_uint_eq(put1(s, "df", "after", 10), 4);
    ck_assert_uint_eq(put1(s, "df.new", "after", 10), 1);
    store_close(s);
    ck_assert_int_eq(store_verify(g_dir, NULL, NULL), 0);
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("store_map");
    add_case(s, tcase_create("store_map_full_refuses_then_recovers"),
             test_store_map_full_refuses_then_recovers);
    add_case(s, tcase_create("store_map_grows_transparently"), test_store_map_grows_transparently);
    add_case(s, tcase_create("store_map_grows_in_steps"), test_store_map_grows_in_steps);
    add_case(s, tcase_create("store_readers_run_during_map_growth"),
             test_store_readers_run_during_map_growth);
    add_case(s, tcase_create("store_failed_fsync_fail_stops"), test_store_failed_fsync_fail_stops);
    add_case(s, tcase_create("store_disk_full_refuses_then_resumes"),
             test_store_disk_full_refuses_then_resumes);
    return s;
}
