/*
 * test_store_wal.c - the store's write-ahead log (broker/store_wal.c) and
 * what the store builds on it: records, generations, torn and stale
 * records, checkpoint slots, and acked parts of a batch surviving a crash.
 */
#include "store.h"
#include "store_wal.h"
#include "tmpdir.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[64];
static char g_err[512];

static void setup(void)
{
    tmpdir_make(g_dir, sizeof(g_dir), "ferry-wal");
    g_err[0] = '\0';
}

static void teardown(void)
{
    tmpdir_remove(g_dir);
}

static struct wal *wal_make(void)
{
    struct wal *w = NULL;
    int rc = wal_open(g_dir, 256 << 10, 0600, &w, g_err, sizeof(g_err));
    ck_assert_msg(rc == 0, "wal_open: %d %s", rc, g_err);
    return w;
}

static void put_text(struct wal *w, const char *text)
{
    struct iovec v = {(void *)text, strlen(text)};
    ck_assert_int_eq(wal_append(w, WAL_BATCH, &v, 1), 0);
}

/* What a replay gives: the payloads, joined by '|'. */
struct seen {
    char text[4096];
    int n;
};

static int collect(void *ctx, const unsigned char *p, size_t len)
{
    struct seen *s = ctx;
    size_t at = strlen(s->text);
    ck_assert_uint_lt(at + len + 2, sizeof(s->text));
    if (s->n++ > 0) {
        s->text[at++] = '|';
    }
    memcpy(s->text + at, p, len);
    s->text[at + len] = '\0';
    return 0;
}

static struct seen replay_from(struct wal *w, uint64_t gen, uint64_t *last_gen)
{
    struct seen s;
    memset(&s, 0, sizeof(s));
    uint64_t n = 0;
    uint64_t last = 0;
    ck_assert_int_eq(wal_replay(w, gen, collect, &s, &n, &last), 0);
    ck_assert_uint_eq(n, (uint64_t)s.n);
    if (last_gen != NULL) {
        *last_gen = last;
    }
    return s;
}

/* Change the byte at off from the middle of the data dir's file name (the
 * start of its second half or slot) from was to now. */
static void damage(const char *name, off_t off, char was, char now)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    off_t at = st.st_size / 2 + off;
    char c;
    ck_assert_int_eq(pread(fd, &c, 1, at), 1);
    ck_assert_int_eq(c, was);
    ck_assert_int_eq(pwrite(fd, &now, 1, at), 1);
    close(fd);
}

/* Records come back in order; a generation closed with WAL_END leads on to
 * the next one, an open one ends the replay. */
START_TEST(test_wal_generations_chain_through_their_end)
{
    struct wal *w = wal_make();
    ck_assert_int_eq(wal_start(w, 1), 0);
    put_text(w, "a");
    put_text(w, "bb");
    put_text(w, "ccc");
    ck_assert_int_eq(wal_start(w, 2), 0); /* writes gen 1's WAL_END */
    put_text(w, "d");
    put_text(w, "e");
    ck_assert_int_eq(wal_sync(w), 0);
    uint64_t last;
    struct seen s = replay_from(w, 1, &last);
    ck_assert_str_eq(s.text, "a|bb|ccc|d|e");
    ck_assert_uint_eq(last, 2);
    s = replay_from(w, 2, &last);
    ck_assert_str_eq(s.text, "d|e");
    ck_assert_uint_eq(last, 2);
    wal_close(w);

    /* Reopened: the same records, from the file. */
    w = wal_make();
    s = replay_from(w, 1, NULL);
    ck_assert_str_eq(s.text, "a|bb|ccc|d|e");
    wal_close(w);
}
END_TEST

/* A damaged record ends the replay there: nothing after it is trusted. */
START_TEST(test_wal_torn_record_ends_replay)
{
    struct wal *w = wal_make();
    ck_assert_int_eq(wal_start(w, 7), 0);
    put_text(w, "first");
    put_text(w, "second");
    put_text(w, "third");
    wal_close(w);
    /* Gen 7 is in half 1. Record 1 ("first") takes 32 + 8 bytes; flip a
     * byte of "second"'s payload. */
    damage("wal", 40 + 32 + 2, 'c', 'X');
    w = wal_make();
    struct seen s = replay_from(w, 7, NULL);
    ck_assert_str_eq(s.text, "first");
    wal_close(w);
}
END_TEST

/* A generation reuses its half from offset 0: the longer records of an
 * earlier lap, still in the file behind it, are never read as its own. */
START_TEST(test_wal_stale_records_of_an_earlier_lap_are_not_replayed)
{
    struct wal *w = wal_make();
    ck_assert_int_eq(wal_start(w, 1), 0);
    for (int i = 0; i < 20; i++) {
        put_text(w, "old-record");
    }
    ck_assert_int_eq(wal_start(w, 2), 0);
    ck_assert_int_eq(wal_start(w, 3), 0); /* half 1 again */
    put_text(w, "new");
    uint64_t last;
    struct seen s = replay_from(w, 3, &last);
    ck_assert_str_eq(s.text, "new");
    ck_assert_uint_eq(last, 3);
    /* Gen 1 is overwritten at its start: nothing of it replays. */
    s = replay_from(w, 1, NULL);
    ck_assert_int_eq(s.n, 0);
    wal_close(w);
}
END_TEST

/* The newest valid checkpoint slot wins; a damaged one falls back. */
START_TEST(test_wal_checkpoint_slots)
{
    struct wal *w = wal_make();
    uint64_t gen = 0;
    unsigned char *m = NULL;
    size_t len = 0;
    ck_assert_int_eq(wal_ckpt_read(w, &gen, &m, &len), -ENOENT);
    unsigned char a[8192], b[8192];
    memset(a, 'A', sizeof(a));
    memset(b, 'B', sizeof(b));
    ck_assert_int_eq(wal_ckpt_write(w, 4, a, sizeof(a)), 0);
    ck_assert_int_eq(wal_ckpt_write(w, 5, b, sizeof(b)), 0);
    ck_assert_int_eq(wal_ckpt_read(w, &gen, &m, &len), 0);
    ck_assert_uint_eq(gen, 5);
    ck_assert_uint_eq(len, sizeof(b));
    ck_assert_int_eq(memcmp(m, b, len), 0);
    free(m);
    wal_close(w);
    /* Damage gen 5's slot (slot 1, a meta byte): gen 4 is read. */
    damage("checkpoint", 100, 'B', 'Z');
    w = wal_make();
    ck_assert_int_eq(wal_ckpt_read(w, &gen, &m, &len), 0);
    ck_assert_uint_eq(gen, 4);
    ck_assert_int_eq(memcmp(m, a, len), 0);
    free(m);
    wal_close(w);
}
END_TEST

/* ---- the store on the log ------------------------------------------------ */

#define PAYLOAD_LEN 900

static void payload_of(uint64_t seq, char *p)
{
    memset(p, 'a' + (int)(seq % 26), PAYLOAD_LEN);
    snprintf(p, 24, "seq %" PRIu64 ";", seq);
}

struct check_ctx {
    uint64_t next;
    int bad;
};

static enum store_read_verdict check_msg(void *ctx, const struct store_msg *m)
{
    struct check_ctx *x = ctx;
    char want[PAYLOAD_LEN];
    payload_of(m->seq, want);
    if (m->seq != x->next || m->payload_len != PAYLOAD_LEN ||
        memcmp(m->payload, want, PAYLOAD_LEN) != 0) {
        x->bad++;
    }
    x->next = m->seq + 1;
    return STORE_READ_CONTINUE;
}

/*
 * A writer that logs parts of open batches (store_batch_log: what a PubAck
 * promises) and commits now and then, with a log so small that its halves
 * fill up mid-batch again and again (each time a checkpoint starts and the
 * open batch is logged again into the new generation), dies at a random
 * moment without closing. Every promised message is there after a reopen,
 * exact and in order, and the store verifies clean. Twenty crashes in a row.
 */
START_TEST(test_store_promised_parts_of_open_batches_survive_a_crash)
{
    struct store_options o;
    store_options_init(&o);
    o.wal_half_size = 256 << 10;
    uint64_t promised = 0;
    for (int crash = 0; crash < 20; crash++) {
        int fds[2];
        ck_assert_int_eq(pipe(fds), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            struct store *s = NULL;
            if (store_open(g_dir, &o, &s, g_err, sizeof(g_err)) != 0) {
                _exit(2);
            }
            srand((unsigned)getpid());
            int stop_after = 200 + rand() % 1500;
            struct store_batch *b = NULL;
            struct store_topic_info ti;
            uint64_t last = store_topic_info(s, "wal.t", 5, &ti) == 0 ? ti.last_seq : 0;
            for (int i = 0; i < stop_after; i++) {
                if (b == NULL && store_batch_begin(s, &b) != 0) {
                    _exit(3);
                }
                char p[PAYLOAD_LEN];
                struct store_append_result ar;
                struct store_msg_in m = {.publish_time = i};
                payload_of(last + 1, p);
                m.payload = p;
                m.payload_len = PAYLOAD_LEN;
                int rc = store_batch_append(b, "wal.t", 5, &m, &ar);
                if (rc == FERRY_ELIMIT) {
                    if (store_batch_commit(b) != 0) {
                        _exit(4);
                    }
                    b = NULL;
                    continue;
                }
                if (rc != 0 || ar.seq != last + 1) {
                    _exit(5);
                }
                last = ar.seq;
                if (i % 3 == 2) {
                    if (store_batch_log(b) != 0) {
                        _exit(6);
                    }
                    if (write(fds[1], &last, sizeof(last)) != (ssize_t)sizeof(last)) {
                        _exit(7);
                    }
                }
                if (rand() % 60 == 0) {
                    if (store_batch_commit(b) != 0) {
                        _exit(8);
                    }
                    b = NULL;
                }
            }
            _exit(0); /* the crash: no commit, no close */
        }
        close(fds[1]);
        uint64_t v;
        while (read(fds[0], &v, sizeof(v)) == (ssize_t)sizeof(v)) {
            promised = v;
        }
        close(fds[0]);
        int status = 0;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);

        struct store *s = NULL;
        int rc = store_open(g_dir, &o, &s, g_err, sizeof(g_err));
        ck_assert_msg(rc == 0, "reopen after crash %d: %d %s", crash, rc, g_err);
        struct store_topic_info info;
        ck_assert_int_eq(store_topic_info(s, "wal.t", 5, &info), 0);
        ck_assert_uint_ge(info.last_seq, promised);
        struct check_ctx x = {.next = 1};
        for (uint64_t from = 1; from <= info.last_seq;) {
            struct store_read_result res;
            ck_assert_int_eq(store_read(s, info.id, from, 1000, SIZE_MAX, check_msg, &x, &res), 0);
            ck_assert_uint_gt(res.next_seq, from);
            from = res.next_seq;
        }
        ck_assert_int_eq(x.bad, 0);
        ck_assert_uint_eq(x.next, info.last_seq + 1);
        store_close(s);
        /* What this round's writer left (unpromised or not) is the next
         * round's start: it appends after it. */
        promised = info.last_seq;
        ck_assert_int_eq(store_verify(g_dir, NULL, NULL), 0);
    }
}
END_TEST

/*
 * Large messages skip the log (store_write.c, is_bulk): a batch of them is
 * not logged (store_batch_log says 1), and its commit makes it durable with
 * a checkpoint before it returns; a batch of small ones is logged. A crash
 * right after both commits loses nothing of either.
 */
#define BULK_LEN 16384

static void sized_payload(uint64_t seq, char *p, size_t len)
{
    memset(p, 'A' + (int)(seq % 26), len);
    snprintf(p, 24, "seq %" PRIu64 ";", seq);
}

/* n messages of len bytes to topic: 0, or the step that failed. */
static int append_sized(struct store_batch *b, const char *topic, int n, size_t len)
{
    static char p[BULK_LEN];
    for (int i = 0; i < n; i++) {
        struct store_append_result ar;
        struct store_msg_in m = {.publish_time = i};
        sized_payload((uint64_t)i + 1, p, len);
        m.payload = p;
        m.payload_len = len;
        if (store_batch_append(b, topic, strlen(topic), &m, &ar) != 0 ||
            ar.seq != (uint64_t)i + 1) {
            return 1;
        }
    }
    return 0;
}

struct sized_ctx {
    size_t len;
    uint64_t next;
    int bad;
};

static enum store_read_verdict check_sized(void *ctx, const struct store_msg *m)
{
    struct sized_ctx *x = ctx;
    static char want[BULK_LEN];
    sized_payload(m->seq, want, x->len);
    if (m->seq != x->next || m->payload_len != x->len || memcmp(m->payload, want, x->len) != 0) {
        x->bad++;
    }
    x->next = m->seq + 1;
    return STORE_READ_CONTINUE;
}

static void check_sized_topic(struct store *s, const char *topic, size_t len, uint64_t n)
{
    struct store_topic_info info;
    ck_assert_int_eq(store_topic_info(s, topic, strlen(topic), &info), 0);
    ck_assert_uint_eq(info.last_seq, n);
    struct sized_ctx x = {.len = len, .next = 1};
    struct store_read_result res;
    ck_assert_int_eq(store_read(s, info.id, 1, 1000, SIZE_MAX, check_sized, &x, &res), 0);
    ck_assert_int_eq(x.bad, 0);
    ck_assert_uint_eq(x.next, n + 1);
}

START_TEST(test_store_bulk_batches_skip_the_log)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct store *s = NULL;
        struct store_batch *b = NULL;
        if (store_open(g_dir, NULL, &s, g_err, sizeof(g_err)) != 0) {
            _exit(2);
        }
        if (store_batch_begin(s, &b) != 0 || append_sized(b, "small.t", 50, 900) != 0) {
            _exit(3);
        }
        if (store_batch_log(b) != 0 || store_batch_commit(b) != 0) {
            _exit(4); /* small: logged */
        }
        struct store_stats before, after;
        store_stats(s, &before);
        if (store_batch_begin(s, &b) != 0 || append_sized(b, "bulk.t", 40, BULK_LEN) != 0) {
            _exit(5);
        }
        if (store_batch_log(b) != 1) {
            _exit(6); /* large: not logged */
        }
        if (store_batch_commit(b) != 0) {
            _exit(7);
        }
        store_stats(s, &after);
        if (after.n_checkpoints <= before.n_checkpoints) {
            _exit(8); /* durable when the commit returns: checkpointed */
        }
        _exit(0); /* the crash: no close */
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    struct store *s = NULL;
    int rc = store_open(g_dir, NULL, &s, g_err, sizeof(g_err));
    ck_assert_msg(rc == 0, "reopen after the crash: %d %s", rc, g_err);
    check_sized_topic(s, "small.t", 900, 50);
    check_sized_topic(s, "bulk.t", BULK_LEN, 40);
    store_close(s);
    ck_assert_int_eq(store_verify(g_dir, NULL, NULL), 0);
}
END_TEST

/* A reader in another thread never sees a bulk batch before it is durable:
 * when its read first shows the batch, the checkpoint that makes it
 * durable is already counted. */
struct watcher {
    struct store *s;
    char topic[16];
    uint64_t ckpts_before;
    atomic_int stop;
    int seen;
    int early;
};

static void *watch_main(void *arg)
{
    struct watcher *w = arg;
    for (int last = 0; !last;) {
        last = atomic_load(&w->stop);
        struct store_topic_info info;
        if (store_topic_info(w->s, w->topic, strlen(w->topic), &info) == 0 && info.last_seq > 0) {
            struct store_stats st;
            store_stats(w->s, &st);
            w->early += st.n_checkpoints <= w->ckpts_before;
            w->seen = 1;
            break;
        }
    }
    return NULL;
}

START_TEST(test_store_bulk_batch_is_read_only_when_durable)
{
    struct store *s = NULL;
    ck_assert_int_eq(store_open(g_dir, NULL, &s, g_err, sizeof(g_err)), 0);
    for (int round = 0; round < 5; round++) {
        struct store_stats st;
        store_stats(s, &st);
        struct watcher w = {.s = s, .ckpts_before = st.n_checkpoints};
        snprintf(w.topic, sizeof(w.topic), "bulk.w%d", round);
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, watch_main, &w), 0);
        struct store_batch *b = NULL;
        ck_assert_int_eq(store_batch_begin(s, &b), 0);
        ck_assert_int_eq(append_sized(b, w.topic, 40, BULK_LEN), 0);
        ck_assert_int_eq(store_batch_log(b), 1);
        ck_assert_int_eq(store_batch_commit(b), 0);
        atomic_store(&w.stop, 1);
        pthread_join(th, NULL);
        ck_assert_int_eq(w.seen, 1);
        ck_assert_int_eq(w.early, 0);
    }
    store_close(s);
}
END_TEST

static void add_case(Suite *s, TCase *tc, const TTest *test)
{
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("store_wal");
    add_case(s, tcase_create("wal_generations_chain_through_their_end"),
             test_wal_generations_chain_through_their_end);
    add_case(s, tcase_create("wal_torn_record_ends_replay"), test_wal_torn_record_ends_replay);
    add_case(s, tcase_create("wal_stale_records_of_an_earlier_lap_are_not_replayed"),
             test_wal_stale_records_of_an_earlier_lap_are_not_replayed);
    add_case(s, tcase_create("wal_checkpoint_slots"), test_wal_checkpoint_slots);
    add_case(s, tcase_create("store_bulk_batches_skip_the_log"),
             test_store_bulk_batches_skip_the_log);
    add_case(s, tcase_create("store_bulk_batch_is_read_only_when_durable"),
             test_store_bulk_batch_is_read_only_when_durable);
    add_case(s, tcase_create("store_promised_parts_of_open_batches_survive_a_crash"),
             test_store_promised_parts_of_open_batches_survive_a_crash);
    return s;
}
