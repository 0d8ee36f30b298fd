/*
 * 70_store_durability.c - what a PubAck promises, end to end: acked messages
 * survive kill -9 (also at random moments, in a loop), sequences continue
 * across restarts, a failing fsync stops the broker without an ack, a full
 * map or disk refuses publishes with "storage full" and recovers, a flipped
 * byte in the store is caught and never delivered, ephemeral patterns are
 * not stored, and a foreign data directory is refused.
 */
#include "store_e2e.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mount.h>
#include <sys/stat.h>

/* ---- kill -9 and replay -------------------------------------------------- */

/* Async publishing with acks recorded by index (userdata = index). */
struct pubctx {
    ferry_client *c;
    const char *topic;
    int round;
    uint64_t *seq; /* seq[i]: ack of message i, 0 if none */
    atomic_int n_acked;
    atomic_int n_sent;
    atomic_int stop;
    int max;
    int slot; /* its index in g_ctx */
};

static struct pubctx *g_ctx[4];

static void on_pub(ferry_client *c, int status, uint64_t sequence, void *userdata)
{
    (void)c;
    uintptr_t v = (uintptr_t)userdata;
    struct pubctx *p = g_ctx[v >> 28];
    size_t i = v & ((1u << 28) - 1);
    if (status == 0) {
        __atomic_store_n(&p->seq[i], sequence, __ATOMIC_RELEASE);
        atomic_fetch_add(&p->n_acked, 1);
    }
}

static void *pub_main(void *arg)
{
    struct pubctx *p = arg;
    uintptr_t slot = (uintptr_t)p->slot;
    char text[64];
    for (int i = 0; i < p->max && !atomic_load(&p->stop); i++) {
        snprintf(text, sizeof(text), "r%d-%d", p->round, i);
        ferry_pub m = {.topic = p->topic, .payload = text, .payload_len = strlen(text)};
        int rc = ferry_publish_async(p->c, &m, on_pub, (void *)((slot << 28) | (uintptr_t)i), NULL);
        if (rc < 0) {
            break; /* the broker is gone */
        }
        atomic_fetch_add(&p->n_sent, 1);
    }
    return NULL;
}

START_TEST(test_acked_messages_replay_after_kill9)
{
    enum { N = 3000 };
    struct ferryd_proc d;
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
    ferry_client *c = s_client(&d, 256);
    ferry_server_info info;
    ck_assert_int_eq(ferry_client_server_info(c, &info), 0);
    ck_assert_int_eq(info.sync_policy, FERRY_SYNC_ALWAYS);
    static uint64_t seqs[N];
    memset(seqs, 0, sizeof(seqs));
    struct pubctx p = {.c = c, .topic = "dur.a", .round = 0, .seq = seqs, .max = N};
    g_ctx[0] = &p;
    pub_main(&p);
    ck_assert_int_eq(ferry_flush(c, S_WAIT), 0);
    ck_assert_int_eq(atomic_load(&p.n_acked), N);
    for (int i = 0; i < N; i++) {
        ck_assert_uint_eq(seqs[i], (uint64_t)i + 1); /* one connection: its order */
    }
    ferry_client_destroy(c);
    ck_assert_int_eq(ferryd_kill9(&d), 0);

    ck_assert_int_eq(ferryd_restart(&d, NULL), 0);
    c = s_client(&d, 0);
    ferry_sub *s = s_sub(c, "dur.a", FERRY_START_ALL, 0);
    char buf[64], want[64];
    for (int i = 0; i < N; i++) {
        uint64_t seq;
        s_next(s, &seq, buf, sizeof(buf));
        snprintf(want, sizeof(want), "r0-%d", i);
        ck_assert_uint_eq(seq, (uint64_t)i + 1);
        ck_assert_str_eq(buf, want);
    }
    s_no_more(s, 200);
    ferry_unsubscribe(s);
    /* Sequences go on after kill -9 ... */
    ck_assert_uint_eq(s_pub(c, "dur.a", "after-kill"), N + 1);
    ferry_client_destroy(c);
    /* ... and after a clean stop. */
    ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
    ck_assert_int_eq(s_wait_exit(&d, S_WAIT), 0);
    ck_assert_int_eq(ferryd_restart(&d, NULL), 0);
    c = s_client(&d, 0);
    ck_assert_uint_eq(s_pub(c, "dur.a", "after-stop"), N + 2);
    ck_assert_uint_eq(s_pub(c, "dur.b", "other"), 1);
    ferry_topic_info ti;
    ck_assert_int_eq(ferry_admin_topic_info(c, "dur.a", S_WAIT, &ti), 0);
    ck_assert_uint_eq(ti.first_seq, 1);
    ck_assert_uint_eq(ti.last_seq, N + 2);
    ck_assert_uint_eq(ti.messages, N + 2);
    s_close(c);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/*
 * The crash loop: two publishers stream with up to 128 publishes waiting for
 * their acks; ferryd is killed with SIGKILL at a random moment; after the
 * restart every acked message must be stored exactly once, at the sequence
 * its ack named, and the topic's sequences must have no gap. Unacked
 * messages may or may not be there (at most once: no resend).
 */
#define ROUNDS 20
#define PER_ROUND 40000

START_TEST(test_crash_loop_keeps_every_acked_message)
{
    static uint64_t seqs[2][ROUNDS][PER_ROUND];
    memset(seqs, 0, sizeof(seqs));
    const char *topics[2] = {"crash.a", "crash.b"};
    struct ferryd_proc d;
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "crash loop: seed %u\n", seed);
    srand(seed);
    long total_acked = 0;
    for (int r = 0; r < ROUNDS; r++) {
        if (r > 0) {
            ck_assert_int_eq(ferryd_restart(&d, NULL), 0);
        }
        struct pubctx p[2];
        pthread_t th[2];
        for (int k = 0; k < 2; k++) {
            memset(&p[k], 0, sizeof(p[k]));
            p[k].c = s_client(&d, 128);
            p[k].topic = topics[k];
            p[k].round = r;
            p[k].seq = seqs[k][r];
            p[k].max = PER_ROUND;
            p[k].slot = k;
            g_ctx[k] = &p[k];
        }
        for (int k = 0; k < 2; k++) {
            ck_assert_int_eq(pthread_create(&th[k], NULL, pub_main, &p[k]), 0);
        }
        /* Wait until something was acked (bounded), then a random moment. */
        int64_t end = s_now_ms() + S_WAIT;
        while (atomic_load(&p[0].n_acked) + atomic_load(&p[1].n_acked) == 0 && s_now_ms() < end) {
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        struct timespec ts = {0, (long)(rand() % 150) * 1000 * 1000};
        nanosleep(&ts, NULL); /* the random kill moment, not a synchronisation */
        ck_assert_int_eq(ferryd_kill9(&d), 0);
        for (int k = 0; k < 2; k++) {
            atomic_store(&p[k].stop, 1);
            pthread_join(th[k], NULL);
            ferry_client_destroy(p[k].c); /* fails what still waits */
            g_ctx[k] = NULL;
            total_acked += atomic_load(&p[k].n_acked);
        }
    }
    fprintf(stderr, "crash loop: %d rounds, %ld acked messages\n", ROUNDS, total_acked);

    /* Read both topics back from the start. */
    ck_assert_int_eq(ferryd_restart(&d, NULL), 0);
    ferry_client *c = s_client(&d, 0);
    for (int k = 0; k < 2; k++) {
        ferry_topic_info ti;
        ck_assert_int_eq(ferry_admin_topic_info(c, topics[k], S_WAIT, &ti), 0);
        ck_assert_uint_eq(ti.first_seq, 1);
        ck_assert_uint_eq(ti.messages, ti.last_seq);
        static uint8_t seen[ROUNDS][PER_ROUND];
        memset(seen, 0, sizeof(seen));
        ferry_sub *s = s_sub(c, topics[k], FERRY_START_ALL, 0);
        char buf[64];
        for (uint64_t want = 1; want <= ti.last_seq; want++) {
            uint64_t seq;
            s_next(s, &seq, buf, sizeof(buf));
            ck_assert_uint_eq(seq, want); /* gapless, in order */
            int r, i;
            ck_assert_int_eq(sscanf(buf, "r%d-%d", &r, &i), 2);
            ck_assert(r >= 0 && r < ROUNDS && i >= 0 && i < PER_ROUND);
            ck_assert_msg(!seen[r][i], "%s stored twice", buf);
            seen[r][i] = 1;
            uint64_t acked = seqs[k][r][i];
            ck_assert_msg(acked == 0 || acked == seq, "%s acked as %llu, stored as %llu", buf,
                          (unsigned long long)acked, (unsigned long long)seq);
        }
        s_no_more(s, 100);
        ferry_unsubscribe(s);
        for (int r = 0; r < ROUNDS; r++) {
            for (int i = 0; i < PER_ROUND; i++) {
                ck_assert_msg(seqs[k][r][i] == 0 || seen[r][i], "r%d-%d acked (seq %llu) but lost",
                              r, i, (unsigned long long)seqs[k][r][i]);
            }
        }
    }
    s_close(c);
    char dir[256];
    snprintf(dir, sizeof(dir), "%s", d.data_dir);
    ck_assert_int_eq(ferryd_kill9(&d), 0);
    char report[8192];
    int st = s_verify(dir, report, sizeof(report));
    ck_assert_msg(st == 0, "verify after the crash loop: %s", report);
    s_rm_rf(dir);
}
END_TEST

/* SIGTERM while publishes stream in: what ferryd read is committed and
 * acked before it exits 0; so after a restart the stored messages are
 * exactly the acked ones. */
START_TEST(test_sigterm_commits_and_acks_what_is_queued)
{
    enum { N = 200000 };
    static uint64_t seqs[N];
    memset(seqs, 0, sizeof(seqs));
    struct ferryd_proc d;
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
    struct pubctx p = {.c = s_client(&d, 256), .topic = "term.a", .seq = seqs, .max = N};
    g_ctx[0] = &p;
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, pub_main, &p), 0);
    int64_t end = s_now_ms() + S_WAIT;
    while (atomic_load(&p.n_acked) < 2000 && s_now_ms() < end) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
    ck_assert_int_eq(s_wait_exit(&d, S_WAIT), 0);
    atomic_store(&p.stop, 1);
    pthread_join(th, NULL);
    ferry_client_destroy(p.c);
    g_ctx[0] = NULL;
    int n_acked = atomic_load(&p.n_acked);
    ck_assert_int_ge(n_acked, 2000);

    ck_assert_int_eq(ferryd_restart(&d, NULL), 0);
    ferry_client *c = s_client(&d, 0);
    ferry_topic_info ti;
    ck_assert_int_eq(ferry_admin_topic_info(c, "term.a", S_WAIT, &ti), 0);
    ck_assert_msg(ti.last_seq == (uint64_t)n_acked, "%llu stored, %d acked",
                  (unsigned long long)ti.last_seq, n_acked);
    for (int i = 0; i < n_acked; i++) {
        ck_assert_uint_eq(seqs[i], (uint64_t)i + 1);
    }
    s_close(c);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/* ---- fail-stop on a failed fsync ---------------------------------------- */

START_TEST(test_failed_fsync_is_fail_stop_without_ack)
{
    char flag[] = "/tmp/ferry-failsync-XXXXXX";
    int fd = mkstemp(flag);
    ck_assert_int_ge(fd, 0);
    close(fd);
    unlink(flag); /* armed when it exists */
    setenv("LD_PRELOAD", FAILSYNC_PATH, 1);
    setenv("FERRY_FAILSYNC_FLAG", flag, 1);
    /* Sanitizer runtimes want to come first; the shim needs no checking. */
    setenv("ASAN_OPTIONS", "verify_asan_link_order=0", 1);
    struct ferryd_proc d;
    int rc = ferryd_start(&d, NULL, NULL);
    unsetenv("LD_PRELOAD");
    unsetenv("FERRY_FAILSYNC_FLAG");
    ck_assert_int_eq(rc, 0);
    ferry_client *c = s_client(&d, 0);
    for (int i = 1; i <= 3; i++) {
        ck_assert_uint_eq(s_pub(c, "fs.a", "fine"), (uint64_t)i);
    }
    fd = open(flag, O_CREAT | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ferry_pub m = {.topic = "fs.a", .payload = "doomed", .payload_len = 6};
    uint64_t seq = 0;
    rc = ferry_publish_sync(c, &m, S_WAIT, &seq);
    ck_assert_msg(rc != 0, "a publish whose fsync failed was acked (sequence %llu)",
                  (unsigned long long)seq);
    ck_assert_int_ne(rc, -ETIMEDOUT); /* the broker stopped, it did not hang */
    int st = s_wait_exit(&d, S_WAIT);
    unlink(flag);
    ck_assert_msg(st != 0 && st < 128, "ferryd exit status %d: want a non-zero exit", st);
    ferry_client_destroy(c);
    /* Restart without the fault: what was acked is there. */
    ck_assert_int_eq(ferryd_restart(&d, NULL), 0);
    c = s_client(&d, 0);
    ferry_topic_info ti;
    ck_assert_int_eq(ferry_admin_topic_info(c, "fs.a", S_WAIT, &ti), 0);
    ck_assert_uint_ge(ti.last_seq, 3);
    ferry_sub *s = s_sub(c, "fs.a", FERRY_START_ALL, 0);
    char buf[64];
    for (uint64_t i = 1; i <= 3; i++) {
        s_next(s, &seq, buf, sizeof(buf));
        ck_assert_uint_eq(seq, i);
        ck_assert_str_eq(buf, "fine");
    }
    ferry_unsubscribe(s);
    s_close(c);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/* ---- storage full ------------------------------------------------------- */

/* Fill until "storage full"; returns how many were acked. */
static int fill(ferry_client *c, const char *topic, size_t size, int max)
{
    char *payload = malloc(size);
    ck_assert_ptr_nonnull(payload);
    int acked = 0;
    for (int i = 0; i < max; i++) {
        snprintf(payload, size, "fill-%d-", i);
        memset(payload + strlen(payload), 'f', size - strlen(payload));
        ferry_pub m = {.topic = topic, .payload = payload, .payload_len = size};
        uint64_t seq;
        int rc = ferry_publish_sync(c, &m, S_WAIT, &seq);
        if (rc == FERRY_ESTORAGEFULL) {
            free(payload);
            return acked;
        }
        ck_assert_msg(rc == 0, "publish %d: %s", i, ferry_strerror(rc));
        ck_assert_uint_eq(seq, (uint64_t)acked + 1);
        acked++;
    }
    free(payload);
    ck_abort_msg("never reached storage full after %d messages", max);
    return -1;
}

static void check_filled(ferry_client *c, const char *topic, int n, size_t size)
{
    ferry_sub *s = s_sub(c, topic, FERRY_START_ALL, 0);
    for (int i = 0; i < n; i++) {
        ferry_msg *m;
        ck_assert_int_eq(ferry_sub_next(s, S_WAIT, &m), 0);
        ck_assert_uint_eq(ferry_msg_sequence(m), (uint64_t)i + 1);
        size_t len;
        const char *p = ferry_msg_data(m, &len);
        char want[32];
        snprintf(want, sizeof(want), "fill-%d-", i);
        ck_assert_uint_eq(len, size);
        ck_assert(memcmp(p, want, strlen(want)) == 0);
        ferry_msg_destroy(m);
    }
    s_no_more(s, 100);
    ferry_unsubscribe(s);
}

START_TEST(test_map_full_refuses_then_recovers_after_purge)
{
    struct ferryd_proc d;
    ck_assert_int_eq(ferryd_start(&d, NULL,
                                  (const char *const[]){"--max-store-size", "1m",
                                                        "--initial-store-size", "256k", NULL}),
                     0);
    ferry_client *c = s_client(&d, 0);
    int n = fill(c, "full.a", 8192, 1000);
    ck_assert_int_gt(n, 10);
    /* Refused again, also for another topic; what was acked is intact. */
    ferry_pub m = {.topic = "full.b", .payload = "x", .payload_len = 1};
    char big[8192];
    memset(big, 'b', sizeof(big));
    m.payload = big;
    m.payload_len = sizeof(big);
    ck_assert_int_eq(ferry_publish_sync(c, &m, S_WAIT, NULL), FERRY_ESTORAGEFULL);
    check_filled(c, "full.a", n, 8192);
    /* Free space: publishing resumes by itself. */
    uint64_t purged = 0;
    ck_assert_int_eq(ferry_admin_topic_purge(c, "full.a", S_WAIT, &purged), 0);
    ck_assert_uint_eq(purged, (uint64_t)n);
    uint64_t seq = 0;
    ck_assert_int_eq(ferry_publish_sync(c, &m, S_WAIT, &seq), 0);
    ck_assert_uint_eq(seq, 1);
    ck_assert_uint_eq(s_pub(c, "full.a", "again"), (uint64_t)n + 1); /* the counter kept */
    s_close(c);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/* A real full disk: the store on a 4 MiB tmpfs (needs root to mount). */
START_TEST(test_disk_full_refuses_then_recovers)
{
    char mnt[] = "/tmp/ferry-tmpfs-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(mnt));
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=4m") != 0) {
        printf("SKIP disk_full: cannot mount a tmpfs on %s: %s (needs root)\n", mnt,
               strerror(errno));
        fflush(stdout);
        rmdir(mnt);
        exit(77);
    }
    /* Ballast to delete later, so that space can be freed. */
    char ballast[300], dir[300];
    snprintf(ballast, sizeof(ballast), "%s/ballast", mnt);
    snprintf(dir, sizeof(dir), "%s/data", mnt);
    int fd = open(ballast, O_CREAT | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    static char chunk[65536];
    memset(chunk, 'z', sizeof(chunk));
    for (int i = 0; i < 16; i++) {
        ck_assert_int_eq(write(fd, chunk, sizeof(chunk)), (ssize_t)sizeof(chunk));
    }
    close(fd);
    struct ferryd_proc d;
    int rc = ferryd_start(&d, dir, (const char *const[]){"--initial-store-size", "64k", NULL});
    if (rc != 0) {
        umount2(mnt, MNT_DETACH);
        rmdir(mnt);
    }
    ck_assert_int_eq(rc, 0);
    ferry_client *c = s_client(&d, 0);
    int n = fill(c, "disk.a", 16384, 1000);
    ck_assert_int_gt(n, 10);
    check_filled(c, "disk.a", n, 16384);
    ck_assert_int_eq(unlink(ballast), 0);
    /* Space is free again: publishing resumes without a restart. */
    uint64_t seq = 0;
    char big[16384];
    memset(big, 'n', sizeof(big));
    ferry_pub m = {.topic = "disk.a", .payload = big, .payload_len = sizeof(big)};
    ck_assert_int_eq(ferry_publish_sync(c, &m, S_WAIT, &seq), 0);
    ck_assert_uint_eq(seq, (uint64_t)n + 1);
    s_close(c);
    int st = ferryd_stop(&d);
    umount2(mnt, MNT_DETACH);
    rmdir(mnt);
    ck_assert_int_eq(st, 0);
}
END_TEST

/* ---- integrity ---------------------------------------------------------- */

START_TEST(test_flipped_byte_is_detected_never_delivered)
{
    struct ferryd_proc d;
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
    ferry_client *c = s_client(&d, 0);
    ck_assert_uint_eq(s_pub(c, "crc.a", "before"), 1);
    ck_assert_uint_eq(s_pub(c, "crc.a", "UNIQUE-PATTERN-7c1f9a-payload"), 2);
    ck_assert_uint_eq(s_pub(c, "crc.a", "after"), 3);
    s_close(c);
    ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
    ck_assert_int_eq(s_wait_exit(&d, S_WAIT), 0);

    /* Flip one byte inside the payload in data.mdb. */
    char path[400];
    snprintf(path, sizeof(path), "%s/data.mdb", d.data_dir);
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    char *buf = malloc((size_t)size);
    ck_assert_ptr_nonnull(buf);
    fseek(f, 0, SEEK_SET);
    ck_assert_int_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    /* Copy-on-write leaves older copies of a page in the file: flip the
     * byte in every copy, so the live one is surely hit. */
    const char *pat = "UNIQUE-PATTERN-7c1f9a";
    int n_hits = 0;
    for (char *hit = buf; (hit = memmem(hit, (size_t)(buf + size - hit), pat, strlen(pat)));
         hit++) {
        long off = (long)(hit - buf) + 8;
        fseek(f, off, SEEK_SET);
        fputc(buf[off] ^ 0x20, f);
        n_hits++;
    }
    ck_assert_int_gt(n_hits, 0);
    fclose(f);
    free(buf);

    char report[8192];
    int st = s_verify(d.data_dir, report, sizeof(report));
    ck_assert_msg(st == 1, "verify exited %d: %s", st, report);
    ck_assert_msg(strstr(report, "crc") || strstr(report, "CRC"), "report: %s", report);

    ck_assert_int_eq(ferryd_restart(&d, NULL), 0);
    c = s_client(&d, 0);
    ferry_sub *s = s_sub(c, "crc.a", FERRY_START_ALL, 0);
    uint64_t seq;
    char text[64];
    s_next(s, &seq, text, sizeof(text));
    ck_assert_uint_eq(seq, 1);
    s_next(s, &seq, text, sizeof(text));
    ck_assert_uint_eq(seq, 3); /* 2 is skipped, never delivered */
    ck_assert_str_eq(text, "after");
    s_no_more(s, 100);
    ferry_unsubscribe(s);
    ferry_stats fs;
    ck_assert_int_eq(ferry_admin_stats(c, S_WAIT, &fs), 0);
    ck_assert_uint_ge(fs.crc_errors, 1);
    s_close(c);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/* ---- configuration ------------------------------------------------------ */

START_TEST(test_ephemeral_patterns_route_without_storing)
{
    struct ferryd_proc d;
    ck_assert_int_eq(ferryd_start(&d, NULL,
                                  (const char *const[]){"--ephemeral", "eph.>", "--ephemeral",
                                                        "*.tmp", "--sync", "interval:50", NULL}),
                     0);
    ferry_client *c = s_client(&d, 0);
    ferry_server_info info;
    ck_assert_int_eq(ferry_client_server_info(c, &info), 0);
    ck_assert_int_eq(info.sync_policy, FERRY_SYNC_INTERVAL);
    ck_assert_uint_eq(info.sync_interval_ms, 50);
    ferry_sub *s = s_sub(c, "eph.a", FERRY_START_NEW, 0);
    ck_assert_uint_eq(s_pub(c, "eph.a", "x"), 0);
    ck_assert_uint_eq(s_pub(c, "eph.a", "y"), 0);
    ck_assert_uint_eq(s_pub(c, "x.tmp", "z"), 0);
    ck_assert_uint_eq(s_pub(c, "stored.a", "s"), 1);
    uint64_t seq;
    char text[16];
    s_next(s, &seq, text, sizeof(text));
    ck_assert_uint_eq(seq, 0);
    ck_assert_str_eq(text, "x");
    ferry_unsubscribe(s);
    ferry_topic_info *list = NULL;
    size_t n = 0;
    ck_assert_int_eq(ferry_admin_topics(c, NULL, 0, S_WAIT, &list, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(list[0].name, "stored.a");
    ferry_free(list);
    ferry_topic_info ti;
    ck_assert_int_eq(ferry_admin_topic_info(c, "eph.a", S_WAIT, &ti), 0);
    ck_assert_int_eq(ti.is_ephemeral, 1);
    /* Start positions need a stored topic. */
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_start(so, FERRY_START_ALL, 0), 0);
    ck_assert_int_eq(ferry_subscribe(c, "eph.a", so, NULL, NULL, S_WAIT, &s), FERRY_EINVAL);
    ferry_sub_options_destroy(so);
    s_close(c);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/* The same keys from a config file, "sync interval MS" in two words. */
START_TEST(test_store_keys_from_config_file)
{
    char path[] = "/tmp/ferryd-conf-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *text = "# store settings\n"
                       "sync interval 250   # fsync every 250 ms\n"
                       "ephemeral cfg.>\n"
                       "ephemeral *.beat\n"
                       "max-store-size 1g\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct ferryd_proc d;
    int rc = ferryd_start(&d, NULL, (const char *const[]){"--config", path, NULL});
    unlink(path);
    ck_assert_int_eq(rc, 0);
    ferry_client *c = s_client(&d, 0);
    ferry_server_info info;
    ck_assert_int_eq(ferry_client_server_info(c, &info), 0);
    ck_assert_int_eq(info.sync_policy, FERRY_SYNC_INTERVAL);
    ck_assert_uint_eq(info.sync_interval_ms, 250);
    ck_assert_uint_eq(s_pub(c, "cfg.a.b", "x"), 0);
    ck_assert_uint_eq(s_pub(c, "host.beat", "x"), 0);
    ck_assert_uint_eq(s_pub(c, "host.beat.x", "x"), 1); /* '*' is one token */
    ck_assert_uint_eq(s_pub(c, "cfg", "x"), 1);         /* '>' needs one or more */
    s_close(c);
    ck_assert_int_eq(ferryd_stop(&d), 0);
    /* The command line wins over the file. */
    fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "sync none\n", 10), 10);
    close(fd);
    rc = ferryd_start(&d, NULL, (const char *const[]){"--config", path, "--sync", "always", NULL});
    unlink(path);
    ck_assert_int_eq(rc, 0);
    c = s_client(&d, 0);
    ck_assert_int_eq(ferry_client_server_info(c, &info), 0);
    ck_assert_int_eq(info.sync_policy, FERRY_SYNC_ALWAYS);
    s_close(c);
    ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

START_TEST(test_foreign_data_dir_refused)
{
    char dir[] = "/tmp/ferry-foreign-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[300];
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 4096; i++) {
        fputs("this is not an LMDB file ", f);
    }
    fclose(f);
    struct ferryd_proc d;
    int rc = ferryd_start(&d, dir, NULL);
    ck_assert_int_eq(rc, -ECHILD); /* exited before its ready line */
    char report[4096];
    ck_assert_int_eq(s_verify(dir, report, sizeof(report)), 1);
    s_rm_rf(dir);
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_store_durability");
    TCase *tc;
    tc = tcase_create("kill9_replay");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_acked_messages_replay_after_kill9);
    suite_add_tcase(s, tc);
    tc = tcase_create("crash_loop");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_crash_loop_keeps_every_acked_message);
    suite_add_tcase(s, tc);
    tc = tcase_create("sigterm_acks");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_sigterm_commits_and_acks_what_is_queued);
    suite_add_tcase(s, tc);
    tc = tcase_create("failsync");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_failed_fsync_is_fail_stop_without_ack);
    suite_add_tcase(s, tc);
    tc = tcase_create("map_full");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_map_full_refuses_then_recovers_after_purge);
    suite_add_tcase(s, tc);
    tc = tcase_create("disk_full");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_disk_full_refuses_then_recovers);
    suite_add_tcase(s, tc);
    tc = tcase_create("crc");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_flipped_byte_is_detected_never_delivered);
    suite_add_tcase(s, tc);
    tc = tcase_create("ephemeral");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_ephemeral_patterns_route_without_storing);
    suite_add_tcase(s, tc);
    tc = tcase_create("config_file");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_store_keys_from_config_file);
    suite_add_tcase(s, tc);
    tc = tcase_create("foreign_dir");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_foreign_data_dir_refused);
    suite_add_tcase(s, tc);
    return s;
}
