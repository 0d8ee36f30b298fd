/*
 * 86_backup.c - hot backup end to end (issue 15, item 5): `ferry backup`
 * while a publisher goes on publishing with acks; the copy verifies, its
 * manifest's CRC matches, and a ferryd started on it serves every message
 * acked before the backup began (sequences and payloads) and the durable
 * positions confirmed before it. One backup at a time (a second one is
 * refused while the first is held by a slow reader); the admin right is
 * needed; a reader that goes away cancels the backup and frees the slot; a
 * broker that stops ends a running backup and still exits cleanly.
 */
#include "auth_e2e.h"
#include "backup_e2e.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef FERRY_CLI_PATH
#error "FERRY_CLI_PATH must name the ferry binary"
#endif

Suite *test_suite(void);

static struct ferryd_proc d;
static char out_dir[128]; /* the backup's directory: /tmp/ferry-bk-XXXXXX/out */
static char parent[64];

static void setup(void)
{
    snprintf(parent, sizeof(parent), "/tmp/ferry-bk-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(parent));
    snprintf(out_dir, sizeof(out_dir), "%s/out", parent);
}

static void teardown(void)
{
    if (d.pid) {
        ck_assert_int_eq(ferryd_stop(&d), 0); /* a clean exit: no sanitizer report either */
    }
    s_rm_rf(parent);
}

/* ---- a publisher that goes on publishing with acks ---------------------- */

struct loader {
    ferry_client *c;
    pthread_t thread;
    atomic_int stop;
    atomic_ullong last_acked; /* the highest sequence whose PubAck arrived */
    atomic_int err;           /* the first failure (a code), or a wrong sequence (1) */
};

static void *load_main(void *arg)
{
    struct loader *l = arg;
    char buf[B_PAYLOAD];
    for (uint64_t seq = atomic_load(&l->last_acked) + 1; !atomic_load(&l->stop); seq++) {
        b_payload(seq, buf);
        ferry_pub m = {.topic = "load", .payload = buf, .payload_len = B_PAYLOAD};
        uint64_t got = 0;
        int rc = ferry_publish_sync(l->c, &m, S_WAIT, &got);
        if (rc != 0 || got != seq) {
            atomic_store(&l->err, rc != 0 ? rc : 1);
            break;
        }
        atomic_store(&l->last_acked, got);
    }
    return NULL;
}

/* The copy's manifest says size and CRC-32C; the file has them. */
static void check_manifest(const char *dir)
{
    char path[256], line[256];
    snprintf(path, sizeof(path), "%s/BACKUP", dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    unsigned long long size = 0;
    unsigned crc = 0;
    int n_files = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "file data.mdb size %llu crc32c %x", &size, &crc) == 2) {
            n_files++;
        }
    }
    fclose(f);
    ck_assert_int_eq(n_files, 1);
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    static char buf[1 << 16];
    uint32_t c = 0;
    uint64_t total = 0;
    ssize_t r;
    while ((r = read(fd, buf, sizeof(buf))) > 0) {
        c = ferry_crc32c(c, buf, (size_t)r);
        total += (uint64_t)r;
    }
    close(fd);
    ck_assert_uint_eq(total, size);
    ck_assert_uint_eq(c, crc);
}

START_TEST(test_backup_during_load_restores_every_acked_message)
{
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%d", d.port);
    ferry_client *pre = s_client(&d, 256);
    b_preload(pre, "load", 1, 3000);
    /* A durable with a confirmed position: 5 of its first 10 acked. */
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_durable(so, "billing"), 0);
    ck_assert_int_eq(ferry_sub_options_set_start(so, FERRY_START_ALL, 0), 0);
    ck_assert_int_eq(ferry_sub_options_set_max_in_flight(so, 10), 0);
    ferry_sub *ds;
    ck_assert_int_eq(ferry_subscribe(pre, "load", so, NULL, NULL, S_WAIT, &ds), 0);
    ferry_sub_options_destroy(so);
    for (int i = 0; i < 10; i++) {
        ferry_msg *m;
        ck_assert_int_eq(ferry_sub_next(ds, S_WAIT, &m), 0);
        if (i < 5) {
            ck_assert_int_eq(ferry_msg_ack(m, FERRY_ACK), 0);
        }
        ferry_msg_destroy(m);
    }
    ck_assert_int_eq(ferry_flush(pre, S_WAIT), 0); /* the acks are stored */

    struct loader l = {.c = s_client(&d, 0)};
    atomic_store(&l.last_acked, 3000);
    ck_assert_int_eq(pthread_create(&l.thread, NULL, load_main, &l), 0);
    while (atomic_load(&l.last_acked) < 3100 && !atomic_load(&l.err)) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling the publisher's progress */
    }
    uint64_t before = atomic_load(&l.last_acked);
    static char out[8192];
    int st =
        b_run(out, sizeof(out), "'%s' -s %s backup '%s' 2>&1", FERRY_CLI_PATH, server, out_dir);
    uint64_t after = atomic_load(&l.last_acked);
    atomic_store(&l.stop, 1);
    pthread_join(l.thread, NULL);
    ck_assert_msg(st == 0, "ferry backup: %s", out);
    ck_assert_msg(atomic_load(&l.err) == 0, "the publisher failed: %d", atomic_load(&l.err));
    fprintf(stderr, "86_backup: %s(%llu publishes acked while it ran)\n", out,
            (unsigned long long)(after - before));
    ck_assert_msg(after > before, "nothing was published while the backup ran");
    s_close(l.c);
    s_close(pre);

    static char report[16384];
    st = b_run(report, sizeof(report), "'%s' backup --check '%s' 2>&1", FERRY_CLI_PATH, out_dir);
    ck_assert_msg(st == 0, "ferry backup --check: %s", report);
    check_manifest(out_dir);
    st = s_verify(out_dir, report, sizeof(report));
    ck_assert_msg(st == 0, "ferryd --verify of the copy: %s", report);
    check_manifest(out_dir); /* verifying does not change the copy */

    /* A broker on the copy serves every message acked before the backup. */
    struct ferryd_proc r = {0};
    ck_assert_int_eq(ferryd_start(&r, out_dir, NULL), 0);
    ferry_client *c = s_client(&r, 0);
    ferry_topic_info ti;
    ck_assert_int_eq(ferry_admin_topic_info(c, "load", S_WAIT, &ti), 0);
    ck_assert_uint_ge(ti.last_seq, before);
    ck_assert_uint_le(ti.last_seq, after + 1);
    ck_assert_uint_eq(ti.first_seq, 1);
    ferry_sub *s = s_sub(c, "load", FERRY_START_ALL, 0);
    char want[B_PAYLOAD];
    for (uint64_t seq = 1; seq <= before; seq++) {
        ferry_msg *m;
        ck_assert_int_eq(ferry_sub_next(s, S_WAIT, &m), 0);
        ck_assert_uint_eq(ferry_msg_sequence(m), seq);
        size_t len;
        const void *p = ferry_msg_data(m, &len);
        b_payload(seq, want);
        ck_assert_uint_eq(len, B_PAYLOAD);
        ck_assert_msg(memcmp(p, want, B_PAYLOAD) == 0, "payload of %llu differs",
                      (unsigned long long)seq);
        ferry_msg_destroy(m);
    }
    ferry_consumer_info *ci;
    size_t n_ci;
    ck_assert_int_eq(ferry_admin_consumers(c, "load", 0, S_WAIT, &ci, &n_ci), 0);
    ck_assert_uint_eq(n_ci, 1);
    ck_assert_str_eq(ci[0].name, "billing");
    ck_assert_uint_eq(ci[0].ack_floor, 5);
    ferry_free(ci);
    s_close(c);
    ck_assert_int_eq(ferryd_stop(&r), 0);

    /* A damaged copy fails its check. */
    char path[256];
    snprintf(path, sizeof(path), "%s/data.mdb", out_dir);
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    unsigned char b;
    ck_assert_int_eq(pread(fd, &b, 1, 8192 + 100), 1);
    b ^= 0x40;
    ck_assert_int_eq(pwrite(fd, &b, 1, 8192 + 100), 1);
    close(fd);
    st = b_run(report, sizeof(report), "'%s' backup --check '%s' 2>&1", FERRY_CLI_PATH, out_dir);
    ck_assert_int_eq(st, 1);
    ck_assert_ptr_nonnull(strstr(report, "the manifest says"));
}
END_TEST

/* ---- a reader that holds a backup --------------------------------------- */

/* A backup in its own thread whose callback stops at the first piece until
 * released (then fails or goes on, by choice). */
struct holder {
    ferry_client *c;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int is_started;  /* the first piece arrived */
    int is_released; /* go on */
    int is_fail;     /* after the release, stop the backup (callback error) */
    int rc;
    ferry_backup_result res;
    uint64_t n_bytes;
};

static int hold_cb(ferry_client *c, uint64_t offset, const void *data, size_t len, void *ud)
{
    (void)c;
    (void)offset;
    (void)data;
    struct holder *h = ud;
    pthread_mutex_lock(&h->mu);
    h->is_started = 1;
    pthread_cond_broadcast(&h->cv);
    while (!h->is_released) {
        pthread_cond_wait(&h->cv, &h->mu);
    }
    int is_fail = h->is_fail;
    h->n_bytes += len;
    pthread_mutex_unlock(&h->mu);
    return is_fail ? -ECANCELED : 0;
}

static void *hold_main(void *arg)
{
    struct holder *h = arg;
    h->rc = ferry_admin_backup(h->c, hold_cb, h, S_WAIT, &h->res);
    return NULL;
}

static void hold_start(struct holder *h, const struct ferryd_proc *p)
{
    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->c = s_client(p, 0);
    ck_assert_int_eq(pthread_create(&h->thread, NULL, hold_main, h), 0);
    pthread_mutex_lock(&h->mu);
    while (!h->is_started) {
        pthread_cond_wait(&h->cv, &h->mu);
    }
    pthread_mutex_unlock(&h->mu);
}

static void hold_release(struct holder *h, int is_fail)
{
    pthread_mutex_lock(&h->mu);
    h->is_released = 1;
    h->is_fail = is_fail;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
}

/* A broker whose backup stops early for a reader that does not read: a
 * small outbound bound, and a store larger than the socket buffers. */
static void slow_broker(void)
{
    const char *const args[] = {"--max-outbound-bytes", "64k", NULL};
    ck_assert_int_eq(ferryd_start(&d, NULL, args), 0);
    ferry_client *c = s_client(&d, 256);
    b_preload(c, "big", 1, 20000); /* 20 MB */
    s_close(c);
}

static int discard_cb(ferry_client *c, uint64_t offset, const void *data, size_t len, void *ud)
{
    (void)c;
    (void)offset;
    (void)data;
    *(uint64_t *)ud += len;
    return 0;
}

START_TEST(test_backup_second_one_refused_while_one_runs)
{
    slow_broker();
    struct holder h;
    hold_start(&h, &d);
    ferry_client *c = s_client(&d, 0);
    uint64_t n = 0;
    ck_assert_int_eq(ferry_admin_backup(c, discard_cb, &n, S_WAIT, NULL), FERRY_EBUSY);
    char text[256];
    ferry_client_last_error(c, text, sizeof(text));
    ck_assert_msg(strstr(text, "one at a time") != NULL, "%s", text);
    ck_assert_uint_eq(n, 0);
    /* The CLI says so, and leaves no directory behind. */
    static char out[4096];
    int st = b_run(out, sizeof(out), "'%s' -s 127.0.0.1:%d backup '%s' 2>&1", FERRY_CLI_PATH,
                   d.port, out_dir);
    ck_assert_int_eq(st, 1);
    ck_assert_msg(strstr(out, "running already") != NULL, "%s", out);
    ck_assert_int_ne(access(out_dir, F_OK), 0);
    /* The first one completes, checked by size and CRC-32C. */
    hold_release(&h, 0);
    ck_assert_msg(h.rc == 0, "held backup: %s", ferry_strerror(h.rc));
    ck_assert_uint_eq(h.n_bytes, h.res.size);
    ck_assert_uint_gt(h.res.size, 16u << 20);
    ck_assert_str_eq(h.res.file, "data.mdb");
    s_close(h.c);
    /* Then the slot is free. */
    ck_assert_int_eq(ferry_admin_backup(c, discard_cb, &n, S_WAIT, NULL), 0);
    ck_assert_uint_eq(n, h.res.size);
    s_close(c);
}
END_TEST

/* Processes whose command line holds both words (the backup's child). */
static int count_children(const char *dir)
{
    DIR *pd = opendir("/proc");
    ck_assert_ptr_nonnull(pd);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(pd)) != NULL) {
        char path[300], buf[1024];
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) {
            continue;
        }
        ssize_t r = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (r <= 0) {
            continue;
        }
        for (ssize_t i = 0; i < r; i++) {
            buf[i] = buf[i] ? buf[i] : ' ';
        }
        buf[r] = '\0';
        n += strstr(buf, "--backup-child") != NULL && strstr(buf, dir) != NULL;
    }
    closedir(pd);
    return n;
}

START_TEST(test_backup_cancelled_when_its_reader_leaves)
{
    slow_broker();
    struct holder h;
    hold_start(&h, &d);
    ck_assert_int_eq(count_children(d.data_dir), 1);
    hold_release(&h, 1); /* the callback gives up: the call returns at once */
    ck_assert_int_eq(h.rc, -ECANCELED);
    s_close(h.c); /* the connection closes: the broker cancels */
    /* The slot comes free, and the copying process goes. */
    ferry_client *c = s_client(&d, 0);
    int64_t end = s_now_ms() + S_WAIT;
    uint64_t n = 0;
    int rc;
    while ((rc = ferry_admin_backup(c, discard_cb, &n, S_WAIT, NULL)) == FERRY_EBUSY &&
           s_now_ms() < end) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling for the cancel, bounded */
    }
    ck_assert_msg(rc == 0, "backup after a cancelled one: %s", ferry_strerror(rc));
    ck_assert_uint_gt(n, 16u << 20);
    while (count_children(d.data_dir) > 0 && s_now_ms() < end) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL); /* its last waitpid, bounded */
    }
    ck_assert_int_eq(count_children(d.data_dir), 0);
    s_close(c);
}
END_TEST

START_TEST(test_backup_ended_by_a_stopping_broker)
{
    slow_broker();
    struct holder h;
    hold_start(&h, &d);
    char data_dir[sizeof(d.data_dir)];
    memcpy(data_dir, d.data_dir, sizeof(data_dir));
    ck_assert_int_eq(count_children(data_dir), 1);
    ck_assert_int_eq(ferryd_stop(&d), 0); /* exits 0 within its shutdown time */
    ck_assert_int_eq(count_children(data_dir), 0);
    hold_release(&h, 0);
    ck_assert_msg(h.rc == FERRY_ESHUTDOWN || h.rc == FERRY_EDISCONNECTED, "%s",
                  ferry_strerror(h.rc));
    s_close(h.c);
}
END_TEST

START_TEST(test_backup_needs_the_admin_right)
{
    struct e2e_auth_dir ad;
    e2e_auth_dir_make(&ad, "bkauth");
    char *h_alice = e2e_hash("alice", "$6$", 1000);
    char *h_root = e2e_hash("root", "$6$", 1000);
    FILE *f = fopen(ad.path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "user alice %s\nallow alice publish >\nallow alice subscribe >\n"
            "user root %s\nallow root admin\n",
            h_alice, h_root);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(ad.path, 0600), 0);
    const char *const args[] = {"--auth-file", ad.path, NULL};
    ck_assert_int_eq(ferryd_start(&d, NULL, args), 0);
    static char out[4096];
    int st = b_run(out, sizeof(out),
                   "'%s' -s 127.0.0.1:%d --user alice --password alice backup '%s' 2>&1",
                   FERRY_CLI_PATH, d.port, out_dir);
    ck_assert_int_eq(st, 1);
    ck_assert_msg(strstr(out, "permission denied") != NULL, "%s", out);
    ck_assert_int_ne(access(out_dir, F_OK), 0);
    st =
        b_run(out, sizeof(out), "'%s' -s 127.0.0.1:%d --user root --password root backup '%s' 2>&1",
              FERRY_CLI_PATH, d.port, out_dir);
    ck_assert_msg(st == 0, "%s", out);
    char report[8192];
    ck_assert_int_eq(s_verify(out_dir, report, sizeof(report)), 0);
    free(h_alice);
    free(h_root);
    e2e_auth_dir_remove(&ad);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("backup");
    s_add_case(s, tcase_create("during_load"), test_backup_during_load_restores_every_acked_message,
               setup, teardown);
    s_add_case(s, tcase_create("second_refused"), test_backup_second_one_refused_while_one_runs,
               setup, teardown);
    s_add_case(s, tcase_create("reader_leaves"), test_backup_cancelled_when_its_reader_leaves,
               setup, teardown);
    s_add_case(s, tcase_create("broker_stops"), test_backup_ended_by_a_stopping_broker, setup,
               teardown);
    s_add_case(s, tcase_create("needs_admin"), test_backup_needs_the_admin_right, setup, teardown);
    return s;
}
